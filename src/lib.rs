//! # db-event-writer
//!
//! Moves events from NATS JetStream into PostgreSQL/TimescaleDB. A message is acked only after the transaction
//! holding its rows commits; writes are idempotent, so a redelivery never becomes a second row.
//!
//! # Layout
//! - [`config`]: streams.toml types, defaults, `validate()` (errors name file, line and key).
//! - [`supervisor`]: one task per `[[stream]]`, restarted with backoff when it fails.
//! - [`pipeline`]: a stream's pipeline: reader (pull, decode, batch) → writers (commit, bisect) → settler (the
//!   only owner of delivered messages: ack after commit, progress, NAK, Term after the dead letter is stored).
//! - [`dlq`]: dead letters (publish with reasons; list; replay exactly once).
//! - [`ledger`]: the idempotency ledger and the incarnations of JetStream streams (message identity).
//! - [`sql`]: identifier quoting, COPY column types, the COPY-then-INSERT write.
//! - [`breaker`]: the database circuit breaker (Closed / Open / HalfOpen).
//! - [`processor`]: the closed set of processors (decode a message into rows; write rows).
//! - [`jetstream`]: NATS connection, server checks, stream and durable consumer set-up.
//! - [`db`]: the shared pool and the class of each database error.
//! - [`tls`]: rustls client configs for NATS and PostgreSQL (CA, client certificate, how much is verified).
//! - [`metrics`], [`http`]: Prometheus metrics; /metrics, /healthz and /readyz.
//! - [`ingest`]: the HTTP ingest front (POST events, 202 once in JetStream, status by message id).
//! - [`traces`]: our own OpenTelemetry spans (one per batch, linked to the publishers' `traceparent`), OTLP export.
//! - [`legacy`]: `import-legacy`, the Go writer's JSON config → streams.toml.
//! - [`status`]: the `status` command's report.
//! - [`migrate`]: embedded schema migrations and retention policies.

pub mod breaker;
pub mod config;
pub mod db;
pub mod dlq;
pub mod http;
pub mod ingest;
pub mod jetstream;
pub mod ledger;
pub mod legacy;
pub mod metrics;
pub mod migrate;
pub mod pipeline;
pub mod processor;
pub mod sql;
pub mod status;
pub mod supervisor;
pub mod tls;
pub mod traces;

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::mpsc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, StreamConfig};
use crate::pipeline::Shared;
use crate::sql::qualified;

/// Why the daemon stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// NATS cannot serve the configuration.
    #[error(transparent)]
    Nats(#[from] jetstream::NatsError),
    /// The pool could not be built.
    #[error(transparent)]
    Db(#[from] db::DbSetupError),
    /// The database is reachable but lacks a table.
    #[error("table {table} does not exist (stream {stream:?} writes to it): run `db-event-writer migrate` first")]
    MissingTable {
        /// Qualified table name.
        table: String,
        /// A stream needing it.
        stream: String,
    },
    /// The HTTP listener could not bind.
    #[error("[http] listen = {listen}: {source}")]
    Listen {
        /// The address.
        listen: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// `[otel]` settings that cannot be used (an unreadable certificate).
    #[error("[otel]: {0}")]
    Otel(String),
    /// The ingest front's status bucket cannot be made.
    #[error("[ingest]: {0}")]
    Ingest(String),
    /// The ingest listener could not bind.
    #[error("[ingest] listen = {listen}: {source}")]
    IngestListen {
        /// The address.
        listen: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Shutdown did not finish in time; unacked messages will be redelivered (and deduplicated).
    #[error("shutdown did not finish within {0:?}; messages not yet acked will be redelivered")]
    ShutdownTimedOut(std::time::Duration),
}

/// Runs the daemon until `shutdown` is cancelled, then stops fetching, flushes and commits every open batch,
/// acks, closes the pool and returns, within `[daemon] shutdown_timeout`.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), RunError> {
    let (_keep, reloads) = mpsc::channel(1);
    run_reloadable(config, shutdown, reloads).await
}

/// [`run`], re-reading the configuration file each time `reloads` yields (SIGHUP): see [`reload`].
pub async fn run_reloadable(
    config: Config,
    shutdown: CancellationToken,
    mut reloads: mpsc::Receiver<()>,
) -> Result<(), RunError> {
    for s in &config.streams {
        tracing::info!("{}", s.summary());
    }
    let Some(client) = jetstream::connect(&config, &shutdown).await else {
        return Ok(());
    };
    jetstream::check_server(&client.server_info().version, &config.nats.url, &config.streams)?;
    let pool = db::SharedPool::new(db::pool(&config.database)?);
    check_tables(&pool.current(), &config).await?;

    let js = async_nats::jetstream::new(client.clone());
    let dlq = dlq::DeadLetters::new(js.clone(), config.dlq.clone());
    if let Err(e) = dlq.ensure_stream().await {
        // Not fatal: dead letters that cannot be stored are NAKed, never dropped.
        tracing::warn!(error = %e, "dead-letter stream not available; undeliverable messages will be NAKed until it is");
    }
    let breaker = Arc::new(breaker::Breaker::new(config.breaker.clone()));
    let metrics = Arc::new(metrics::Metrics::new());
    // The ingest front's status bucket first: the writers record into it.
    let ingest_status = match &config.ingest {
        Some(i) => Some(ingest::status_bucket(&js, i.status_ttl).await.map_err(RunError::Ingest)?),
        None => None,
    };
    let spans_done = CancellationToken::new();
    let (tracer, exporter) =
        traces::start(config.otel.as_ref(), metrics.spans.clone(), spans_done.clone()).map_err(RunError::Otel)?;
    let http = match config.http.listen {
        Some(listen) => {
            let health = http::Health {
                metrics: Arc::clone(&metrics),
                nats: client.clone(),
                pool: pool.clone(),
                breaker: Arc::clone(&breaker),
            };
            let served = http::serve(listen, health, shutdown.clone()).await;
            Some(served.map_err(|source| RunError::Listen { listen, source })?)
        }
        None => None,
    };
    let shared = Arc::new(Shared {
        js,
        pool: pool.clone(),
        database: config.database.clone(),
        jetstream_subjects: Arc::new(jetstream::stream_subjects(&config.streams)),
        dlq,
        breaker: Arc::clone(&breaker),
        metrics,
        refresh: config.http.refresh,
        tracer,
        ingest_status: ingest_status.clone(),
    });
    // Streams shared by several [[stream]]s are created once here rather than raced by their tasks (which still
    // ensure them, in case one disappears later).
    for (name, subjects) in shared.jetstream_subjects.iter() {
        if let Err(e) = jetstream::ensure_stream(&shared.js, name, subjects).await {
            tracing::warn!(error = %e, "JetStream stream not ready yet; its pipelines will retry");
        }
    }
    let tracker = TaskTracker::new();
    tracker.spawn({
        let (pool, shutdown, limit) = (pool.clone(), shutdown.clone(), config.database.connect_timeout);
        async move { breaker.run_prober(|| breaker::probe_database(pool.current(), limit), shutdown).await }
    });
    // Always running: a reload may add a stream that uses the ledger.
    tracker.spawn(prune_ledger(pool.clone(), config.database.clone(), shutdown.clone()));
    tracker.spawn(db::watch_password(
        config.database.clone(),
        pool.clone(),
        config.database.password_check,
        shutdown.clone(),
    ));
    let mut running = Running { streams: BTreeMap::new(), tracker: tracker.clone(), shutdown: shutdown.clone() };
    for s in &config.streams {
        running.start(s.clone(), &shared);
    }
    // The ingest front starts once the streams exist (created above), so a 202 always has a consumer behind it.
    let (ingest_front, ingest_task) = match (&config.ingest, &ingest_status) {
        (Some(i), Some(status)) => {
            let front = ingest::Ingest::new(
                client.clone(),
                status.clone(),
                i.clone(),
                &config.streams,
                Arc::clone(&shared.metrics),
            )
            .map_err(RunError::Ingest)?;
            let served = ingest::serve(i.listen, front.clone(), shutdown.clone()).await;
            let task = served.map_err(|source| RunError::IngestListen { listen: i.listen, source })?;
            (Some(front), Some(task))
        }
        _ => (None, None),
    };

    let mut current = config.clone();
    let mut shared = shared;
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            Some(()) = reloads.recv() => {
                let reloaded = tokio::select! {
                    biased;
                    // Why: a reload waits for the streams it stops to drain, and a stream whose write is blocked
                    // (a lock, a migration) may not drain soon; SIGTERM must start the shutdown at once anyway.
                    _ = shutdown.cancelled() => {
                        tracing::warn!("shutting down during a reload: the reload is abandoned");
                        break;
                    }
                    reloaded = reload(&current, &client, &pool, &shared, &mut running) => reloaded,
                };
                match reloaded {
                    Ok((next, next_shared)) => {
                        shared.metrics.reload("applied");
                        if let Some(front) = &ingest_front {
                            front.set_streams(&next.streams);
                        }
                        current = next;
                        shared = next_shared;
                    }
                    Err(e) => {
                        shared.metrics.reload("rejected");
                        tracing::error!(error = %e, "reload rejected; the running configuration is kept");
                    }
                }
            }
        }
    }
    tracker.close();
    tracing::info!(timeout = ?config.daemon.shutdown_timeout, "shutting down: stop fetching, flush, commit, ack");
    let deadline = config.daemon.shutdown_timeout;
    let drained = tokio::time::timeout(deadline, async {
        tracker.wait().await;
        // Acks are buffered by the client: make sure they reached the server before the process exits.
        if let Err(e) = client.flush().await {
            tracing::warn!(error = %e, "could not flush acks to NATS; those messages will be redelivered and skipped");
        }
    })
    .await;
    pool.current().close();
    // The streams have written their last batches: their spans go out now (bounded, like the rest of shutdown).
    spans_done.cancel();
    if let Some(exporter) = exporter {
        let _ = tokio::time::timeout(traces::SHUTDOWN_FLUSH, exporter).await;
    }
    if let Some(http) = http {
        let _ = http.await;
    }
    if let Some(task) = ingest_task {
        let _ = task.await;
    }
    match drained {
        Ok(()) => {
            tracing::info!("stopped cleanly");
            Ok(())
        }
        Err(_) => Err(RunError::ShutdownTimedOut(deadline)),
    }
}

/// The stream tasks running now, by `[[stream]]` name, each with its own stop token (a child of shutdown).
struct Running {
    streams: BTreeMap<String, (StreamConfig, CancellationToken, tokio::task::JoinHandle<()>)>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

impl Running {
    fn start(&mut self, cfg: StreamConfig, shared: &Arc<Shared>) {
        let stop = self.shutdown.child_token();
        let task = self.tracker.spawn(supervisor::supervise(cfg.clone(), Arc::clone(shared), stop.clone()));
        self.streams.insert(cfg.name.clone(), (cfg, stop, task));
    }

    /// Stops the named streams and waits until each has flushed, committed and acked what it held.
    async fn drain(&mut self, names: &[String]) {
        let mut tasks = Vec::with_capacity(names.len());
        for name in names {
            if let Some((_, stop, task)) = self.streams.remove(name) {
                stop.cancel();
                tasks.push(task);
            }
        }
        for task in tasks {
            let _ = task.await;
        }
    }
}

/// Why a reload was refused (the running configuration stays).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file is invalid.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// NATS cannot serve it.
    #[error(transparent)]
    Nats(#[from] jetstream::NatsError),
    /// A table it needs is missing.
    #[error(transparent)]
    Run(#[from] Box<RunError>),
}

/// Re-reads the configuration file and applies its `[[stream]]`s: added streams start, removed ones drain (flush,
/// commit, ack) and stop, changed ones drain and start again with the new settings; untouched streams are not
/// paused. Other sections need a restart (logged). An invalid file changes nothing.
async fn reload(
    current: &Config,
    client: &async_nats::Client,
    pool: &db::SharedPool,
    shared: &Arc<Shared>,
    running: &mut Running,
) -> Result<(Config, Arc<Shared>), ReloadError> {
    tracing::info!(file = %current.source.display(), "reloading the configuration");
    let next = Config::load(&current.source)?;
    jetstream::check_server(&client.server_info().version, &next.nats.url, &next.streams)?;
    check_tables(&pool.current(), &next).await.map_err(Box::new)?;
    let ignored: Vec<&str> = [
        ("nats", current.nats != next.nats),
        ("database", current.database != next.database),
        ("daemon", current.daemon != next.daemon),
        ("dlq", current.dlq != next.dlq),
        ("breaker", current.breaker != next.breaker),
        ("http", current.http != next.http),
        ("log", current.log != next.log),
    ]
    .into_iter()
    .filter_map(|(section, changed)| changed.then_some(section))
    .collect();
    if !ignored.is_empty() {
        tracing::warn!(sections = ?ignored, "these sections changed and take effect only after a restart");
    }

    let wanted: BTreeMap<&str, &StreamConfig> = next.streams.iter().map(|s| (s.name.as_str(), s)).collect();
    let removed: Vec<String> = running.streams.keys().filter(|n| !wanted.contains_key(n.as_str())).cloned().collect();
    let changed: Vec<String> = running
        .streams
        .iter()
        .filter(|(n, (cfg, _, _))| wanted.get(n.as_str()).is_some_and(|w| *w != cfg))
        .map(|(n, _)| n.clone())
        .collect();
    let added: Vec<String> =
        next.streams.iter().filter(|s| !running.streams.contains_key(&s.name)).map(|s| s.name.clone()).collect();

    let next_shared = Arc::new(Shared {
        jetstream_subjects: Arc::new(jetstream::stream_subjects(&next.streams)),
        ..(**shared).clone()
    });
    for (name, subjects) in next_shared.jetstream_subjects.iter() {
        if !shared.jetstream_subjects.contains_key(name)
            && let Err(e) = jetstream::ensure_stream(&next_shared.js, name, subjects).await
        {
            tracing::warn!(error = %e, "JetStream stream not ready yet; its pipelines will retry");
        }
    }
    let stopping: Vec<String> = removed.iter().chain(&changed).cloned().collect();
    // Series of removed streams (or of a stream's former processor) go; the others keep counting.
    let gone: Vec<(String, processor::ProcessorKind)> = running
        .streams
        .iter()
        .filter(|(n, (cfg, _, _))| wanted.get(n.as_str()).is_none_or(|w| w.processor != cfg.processor))
        .map(|(n, (cfg, _, _))| (n.clone(), cfg.processor))
        .collect();
    running.drain(&stopping).await;
    for (name, kind) in gone {
        shared.metrics.forget_stream(&name, kind);
    }
    for s in next.streams.iter().filter(|s| added.contains(&s.name) || changed.contains(&s.name)) {
        tracing::info!("{}", s.summary());
        running.start(s.clone(), &next_shared);
    }
    tracing::info!(
        ?added, ?removed, restarted = ?changed, unchanged = next.streams.len() - added.len() - changed.len(),
        "reload applied"
    );
    // Only the streams changed: the other sections stay as running, so the next reload warns again if they differ.
    Ok((Config { streams: next.streams, ..current.clone() }, next_shared))
}

/// Keeps the idempotency ledger bounded: every 10 minutes, forget messages committed longer ago than
/// `ledger_retention`.
async fn prune_ledger(pool: db::SharedPool, db: config::DatabaseConfig, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(600));
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        match ledger::prune(&pool.current(), &db.schema, db.ledger_retention).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "pruned the idempotency ledger"),
            Err(e) => tracing::warn!(error = %e, "could not prune the idempotency ledger; will retry"),
        }
    }
}

/// Fails fast when the database answers but a table is missing; only warns when it does not answer, or not
/// within twice `connect_timeout` (the streams then wait for it: messages stay in JetStream).
async fn check_tables(pool: &deadpool_postgres::Pool, config: &Config) -> Result<(), RunError> {
    let limit = config.database.connect_timeout * 2;
    match tokio::time::timeout(limit, look_for_tables(pool, config)).await {
        Ok(result) => result,
        Err(_) => {
            tracing::warn!(timeout = ?limit, "the database did not answer the table check in time; not checked");
            Ok(())
        }
    }
}

async fn look_for_tables(pool: &deadpool_postgres::Pool, config: &Config) -> Result<(), RunError> {
    let client = match pool.get().await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "database not reachable at start-up; messages wait in JetStream until it is");
            return Ok(());
        }
    };
    let ours: &[&str] = &[ledger::INCARNATIONS];
    for s in &config.streams {
        for table in s.processor.tables().iter().chain(ours) {
            let name = qualified(&config.database.schema, table);
            match client.query_one("SELECT to_regclass($1) IS NOT NULL", &[&name]).await {
                Ok(row) if row.get::<_, bool>(0) => {}
                Ok(_) => {
                    return Err(RunError::MissingTable { table: name, stream: s.name.clone() });
                }
                Err(e) => tracing::warn!(table = %name, error = %e, "could not check the table"),
            }
        }
    }
    Ok(())
}
