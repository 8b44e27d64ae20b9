//! The daemon's wiring and shutdown order: connect NATS, build the pool and check the tables, make the DLQ, the
//! breaker and its prober, metrics and the operator's HTTP endpoints, traces, the ingest front; start one task
//! per `[[stream]]`; apply reloads; and on shutdown stop fetching, let every stream flush, commit and ack, flush
//! the acks to NATS, close the pool, send the last spans, within `[daemon] shutdown_timeout`.
//!
//! Uses everything below it: [`crate::reload`], [`crate::supervisor`], [`crate::health`], the pool, JetStream,
//! the DLQ, the breaker, metrics, HTTP, ingest, traces, the ledger.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::pipeline::Shared;
use crate::reload::{Running, reload};
use crate::{breaker, db, dlq, health, http, ingest, jetstream, ledger, metrics, migrate, supervisor, traces};

/// Why the daemon stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// NATS cannot serve the configuration.
    #[error(transparent)]
    Nats(#[from] jetstream::NatsError),
    /// The pool could not be built.
    #[error(transparent)]
    Db(#[from] db::DbSetupError),
    /// The database is reachable but lacks a table, or its series key function disagrees with the configuration.
    #[error(transparent)]
    Schema(#[from] migrate::SchemaMismatch),
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

/// [`crate::run`], re-reading the configuration file each time `reloads` yields (SIGHUP): see [`reload`].
pub async fn run_reloadable(
    config: Config,
    shutdown: CancellationToken,
    mut reloads: mpsc::Receiver<()>,
) -> Result<(), RunError> {
    for s in &config.streams {
        tracing::info!("{}", supervisor::describe(s));
    }
    // The breaker, the metrics and the operator's listener first: /healthz answers and /readyz says what start-up
    // waits for while NATS or the database cannot be reached.
    let breaker = Arc::new(breaker::Breaker::new(config.breaker.clone()));
    let metrics = Arc::new(metrics::Metrics::new());
    for s in &config.streams {
        metrics.stream_starting(&s.name, s.processor.name());
    }
    if config.ingest.is_some() {
        metrics.ingest_on();
    }
    let health = http::Health::starting(Arc::clone(&metrics), Arc::clone(&breaker));
    let http = match config.http.listen {
        Some(listen) => {
            let served = http::serve(listen, health.clone(), shutdown.clone()).await;
            Some(served.map_err(|source| RunError::Listen { listen, source })?)
        }
        None => None,
    };
    let Some(client) = jetstream::connect(&config, &shutdown, &|why| health.waiting_for(why)).await else {
        return Ok(());
    };
    jetstream::check_server(&client.server_info().version, &config.nats.url, &config.streams)?;
    health.waiting_for("checking the database");
    let pool = db::SharedPool::new(db::pool(&config.database)?);
    migrate::check_tables(&pool.current(), &config).await?;
    health.started(client.clone(), pool.clone());

    let js = async_nats::jetstream::new(client.clone());
    let dlq = dlq::DeadLetters::new(js.clone(), config.dlq.clone());
    if let Err(e) = dlq.ensure_stream().await {
        // Not fatal: the DLQ is created again at the first dead letter, whose message is held until it is stored.
        tracing::warn!(error = %e, "dead-letter stream not available yet; dead letters will be held until it is");
    }
    // The ingest front's status bucket first: the settlers record into it.
    let ingest_status = match &config.ingest {
        Some(i) => {
            Some(ingest::status::bucket(&js, i.status_ttl, config.nats.replicas).await.map_err(RunError::Ingest)?)
        }
        None => None,
    };
    let spans_done = CancellationToken::new();
    let (tracer, exporter) =
        traces::start(config.otel.as_ref(), metrics.spans.clone(), spans_done.clone()).map_err(RunError::Otel)?;
    let shared = Arc::new(Shared {
        js,
        pool: pool.clone(),
        database: config.database.clone(),
        jetstreams: Arc::new(jetstream::stream_specs(&config)),
        dlq,
        breaker: Arc::clone(&breaker),
        metrics,
        tracer,
        ingest_status: ingest_status.clone(),
        log: config.log.clone(),
    });
    // Streams shared by several [[stream]]s are created once here rather than raced by their tasks (which still
    // ensure them, in case one disappears later).
    for (name, spec) in shared.jetstreams.iter() {
        if let Err(e) = jetstream::ensure_stream(&shared.js, name, spec).await {
            tracing::warn!(error = %e, "JetStream stream not ready yet; its pipelines will retry");
        }
    }
    let tracker = TaskTracker::new();
    let (streams_now, streams_seen) = tokio::sync::watch::channel(config.streams.clone());
    background(&tracker, &config, &shared, streams_seen, &shutdown);
    let mut running = Running::new(tracker.clone(), shutdown.clone());
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
                shutdown.clone(),
            )
            .map_err(RunError::Ingest)?;
            // The connections the descriptor limit leaves after the pool and NATS, at most max_connections.
            let limit = ingest::server::open_files_limit();
            let max_connections = ingest::server::budget(i.max_connections, limit, config.database.pool_size);
            if max_connections < i.max_connections {
                tracing::warn!(
                    configured = i.max_connections,
                    max_connections,
                    open_files = limit,
                    "[ingest] max_connections lowered to what the open-files limit leaves after the pool and NATS"
                );
            }
            let served = ingest::serve(i.listen, front.clone(), max_connections, shutdown.clone()).await;
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
                        streams_now.send_replace(next.streams.clone());
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

/// The daemon's own tasks beside the streams: the breaker's prober, ledger pruning, the password file watch, and
/// the per-stream health refresh (following reloads through `streams`).
fn background(
    tracker: &TaskTracker,
    config: &Config,
    shared: &Arc<Shared>,
    streams: tokio::sync::watch::Receiver<Vec<crate::config::StreamConfig>>,
    shutdown: &CancellationToken,
) {
    tracker.spawn({
        let (breaker, pool, shutdown, limit) =
            (Arc::clone(&shared.breaker), shared.pool.clone(), shutdown.clone(), config.database.connect_timeout);
        async move { breaker.run_prober(|| breaker::probe_database(pool.current(), limit), shutdown).await }
    });
    // Always running: a reload may add a stream that uses the ledger.
    tracker.spawn(prune_ledger(shared.pool.clone(), config.database.clone(), shutdown.clone()));
    tracker.spawn(db::watch_password(
        config.database.clone(),
        shared.pool.clone(),
        config.database.password_check,
        shutdown.clone(),
    ));
    tracker.spawn(health::summarize(Arc::clone(&shared.metrics), config.log.summary_every, shutdown.clone()));
    tracker.spawn(health::refresh(
        shared.js.clone(),
        streams,
        Arc::clone(&shared.metrics),
        config.http.refresh,
        shutdown.clone(),
    ));
}

/// Keeps the idempotency ledger bounded: every 10 minutes, forget messages committed longer ago than
/// `ledger_retention`.
async fn prune_ledger(pool: db::SharedPool, db: crate::config::DatabaseConfig, shutdown: CancellationToken) {
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
            Err(e) => {
                tracing::warn!(error = %crate::db::explain(&e), "could not prune the idempotency ledger; will retry")
            }
        }
    }
}
