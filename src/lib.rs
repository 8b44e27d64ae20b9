//! # db-event-writer
//!
//! Moves events from NATS JetStream into PostgreSQL/TimescaleDB. A message is acked only after the transaction
//! holding its rows commits; writes are idempotent, so a redelivery never becomes a second row.
//!
//! # Layout
//! Dependencies point down this list, never up (`make test` checks there is no cycle):
//! - `main.rs`: the command line (run, validate, migrate, status, dlq, publish, import-legacy, hash-token).
//! - this file: the map, [`run`], and the configuration with the processors' defaults ([`load_config`]).
//! - [`daemon`]: wiring and shutdown order; [`reload`]: SIGHUP, which streams start, drain, restart.
//! - [`http`], [`metrics`], [`health`]: the operator's endpoints, Prometheus metrics, per-stream consumer state;
//!   [`ingest`]: the HTTP ingest front (its [`ingest::status`] records fates, used by the settler);
//!   [`traces`]: our own OpenTelemetry spans; [`status`], [`check`], [`legacy`], [`migrate`]: commands.
//! - [`supervisor`]: one task per `[[stream]]`, restarted with backoff when it fails.
//! - [`pipeline`]: a stream's pipeline: reader (pull, decode, batch) → writers (commit, bisect) → settler (the
//!   only owner of delivered messages: ack after commit, progress, NAK, Term after the dead letter is stored).
//! - [`processor`]: the closed set of processors (one [`processor::dispatch`]; each processor's name, tables and
//!   defaults are constants of its [`processor::Processor`] implementation).
//! - [`dlq`]: dead letters (publish with reasons; list; replay exactly once); [`breaker`]: the database's
//!   circuit breaker; [`jetstream`]: NATS connection, server checks, stream and consumer set-up.
//! - [`ledger`]: the idempotency ledger and stream incarnations; [`sql`]: quoting, COPY column types,
//!   COPY-then-INSERT, unnest columns; [`hex`]: the one hex encoder.
//! - [`db`]: the shared pool and the class of each database error; [`tls`]: rustls client configs.
//! - [`redact`]: credentials removed from connection strings, and every configured secret scrubbed from output.
//! - [`config`]: streams.toml's validated types (raw shapes, validation with file:line: key errors, secrets).
//!
//! # Adding a processor
//! 1. Its module under `src/processor/` (a folder when it grows past ~400 lines: `mod.rs`, `decode.rs`,
//!    `write.rs`, `tests.rs`) with a type implementing [`processor::Processor`]: `NAME`, `TABLES`, `BATCH`,
//!    `RETENTION` (and `LEDGER` for a table without a key), `new`, `decode`, `write`.
//! 2. One [`config::ProcessorKind`] variant (and its place in `ProcessorKind::ALL`) and one arm in
//!    [`processor::dispatch`].
//! 3. Its migration, `migrations/NNNN_name.sql` (embedded and applied in order by `migrate`).
//!
//! Nothing else names processors: the pipeline, metrics, defaults, validation and the fuzz tests ask the trait.

pub mod breaker;
pub mod check;
pub mod config;
pub mod daemon;
pub mod db;
pub mod dlq;
pub mod health;
pub mod hex;
pub mod http;
pub mod ingest;
pub mod jetstream;
pub mod ledger;
pub mod legacy;
pub mod metrics;
pub mod migrate;
pub mod pipeline;
pub mod processor;
pub mod redact;
pub mod reload;
pub mod sql;
pub mod status;
pub mod supervisor;
pub mod tls;
pub mod traces;

use std::path::Path;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use daemon::{RunError, run_reloadable};
pub use reload::ReloadError;

use crate::config::{Config, ConfigError};

/// Runs the daemon until `shutdown` is cancelled, then stops fetching, flushes and commits every open batch,
/// acks, closes the pool and returns, within `[daemon] shutdown_timeout`.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), RunError> {
    let (_keep, reloads) = mpsc::channel(1);
    run_reloadable(config, shutdown, reloads).await
}

/// Reads and validates `path` (with `${VAR}` interpolation and the `NATS_URL` / `DATABASE_URL` overrides), the
/// processors supplying their defaults, and remembers its secrets for scrubbing.
pub fn load_config(path: &Path) -> Result<Config, ConfigError> {
    let config = Config::load(path, &processor::defaults())?;
    config.remember_secrets();
    Ok(config)
}

/// Validates `text` as if read from `path` (no environment consulted), the processors supplying their defaults.
pub fn parse_config(path: &Path, text: &str) -> Result<Config, ConfigError> {
    Config::parse(path, text, &processor::defaults())
}
