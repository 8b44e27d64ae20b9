//! # db-event-writer
//!
//! Moves events from NATS JetStream into PostgreSQL/TimescaleDB. A message is acked only after the transaction
//! holding its rows commits; writes are idempotent, so a redelivery never becomes a second row.
//!
//! # Layout
//! - [`config`]: streams.toml types, defaults, `validate()` (errors name file, line and key).
//! - [`supervisor`]: one task per `[[stream]]`, restarted with backoff when it fails.
//! - [`consumer`]: a stream's pipeline: pull → decode → batch → write → ack after commit.
//! - [`batch`]: the size/timeout batcher.
//! - [`dlq`]: dead letters (publish with reasons; list; replay).
//! - [`breaker`]: the database circuit breaker (Closed / Open / HalfOpen).
//! - [`processor`]: the closed set of processors (decode a message into rows; write rows).
//! - [`jetstream`]: NATS connection, server checks, stream and durable consumer set-up.
//! - [`db`]: the shared pool and the class of each database error.
//! - [`metrics`], [`http`]: Prometheus metrics; /metrics, /healthz and /readyz.
//! - [`migrate`]: embedded schema migrations and retention policies.

pub mod batch;
pub mod breaker;
pub mod config;
pub mod consumer;
pub mod db;
pub mod dlq;
pub mod http;
pub mod jetstream;
pub mod metrics;
pub mod migrate;
pub mod processor;
pub mod supervisor;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::consumer::Shared;
use crate::processor::qualified;

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
    /// Shutdown did not finish in time; unacked messages will be redelivered (and deduplicated).
    #[error("shutdown did not finish within {0:?}; messages not yet acked will be redelivered")]
    ShutdownTimedOut(std::time::Duration),
}

/// Runs the daemon until `shutdown` is cancelled, then stops fetching, flushes and commits every open batch,
/// acks, closes the pool and returns, within `[daemon] shutdown_timeout`.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), RunError> {
    for s in &config.streams {
        tracing::info!("{}", s.summary());
    }
    let Some(client) = jetstream::connect(&config, &shutdown).await else {
        return Ok(());
    };
    jetstream::check_server(&client.server_info().version, &config.nats.url, &config.streams)?;
    let pool = db::pool(&config.database)?;
    check_tables(&pool, &config).await?;

    let js = async_nats::jetstream::new(client.clone());
    let dlq = dlq::DeadLetters::new(js.clone(), config.dlq.clone());
    if let Err(e) = dlq.ensure_stream().await {
        // Not fatal: dead letters that cannot be stored are NAKed, never dropped.
        tracing::warn!(error = %e, "dead-letter stream not available; undeliverable messages will be NAKed until it is");
    }
    let breaker = Arc::new(breaker::Breaker::new(config.breaker.clone()));
    let metrics = Arc::new(metrics::Metrics::new());
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
        schema: config.database.schema.clone(),
        jetstream_subjects: Arc::new(jetstream::stream_subjects(&config.streams)),
        dlq,
        breaker: Arc::clone(&breaker),
        metrics,
        refresh: config.http.refresh,
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
        async move { breaker.run_prober(|| breaker::probe_database(&pool, limit), shutdown).await }
    });
    for s in &config.streams {
        tracker.spawn(supervisor::supervise(s.clone(), Arc::clone(&shared), shutdown.clone()));
    }
    if config.streams.iter().any(|s| s.processor.uses_ledger()) {
        tracker.spawn(prune_ledger(pool.clone(), config.database.clone(), shutdown.clone()));
    }
    tracker.close();

    shutdown.cancelled().await;
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
    pool.close();
    if let Some(http) = http {
        let _ = http.await;
    }
    match drained {
        Ok(()) => {
            tracing::info!("stopped cleanly");
            Ok(())
        }
        Err(_) => Err(RunError::ShutdownTimedOut(deadline)),
    }
}

/// Keeps the idempotency ledger bounded: every 10 minutes, forget messages committed longer ago than
/// `ledger_retention`.
async fn prune_ledger(pool: deadpool_postgres::Pool, db: config::DatabaseConfig, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(600));
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        match db::prune_ledger(&pool, &db.schema, db.ledger_retention).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "pruned the idempotency ledger"),
            Err(e) => tracing::warn!(error = %e, "could not prune the idempotency ledger; will retry"),
        }
    }
}

/// Fails fast when the database answers but a table is missing; only warns when it does not answer (the
/// streams then NAK and retry until it does).
async fn check_tables(pool: &deadpool_postgres::Pool, config: &Config) -> Result<(), RunError> {
    let client = match pool.get().await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "database not reachable at start-up; messages wait in JetStream until it is");
            return Ok(());
        }
    };
    for s in &config.streams {
        for table in s.processor.tables() {
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
