//! Processors: a closed set, named by `processor = "..."` in streams.toml and dispatched from one `match`
//! (see [`crate::consumer::run_stream`]). Each one decodes a message into rows and writes a slice of rows inside
//! the caller's transaction.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;

pub mod events;
#[cfg(test)]
mod fuzz_tests;
pub mod json;
pub mod logs;
pub mod netflow;
pub mod otel;
pub mod proto;
pub mod sweep;
pub mod telemetry;

/// The processors `streams.toml` can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProcessorKind {
    /// Telemetry JSON → `timeseries_metrics`.
    Telemetry,
    /// Log JSON and OTLP logs → `logs`.
    Logs,
    /// OCSF event JSON → `ocsf_events`.
    Events,
    /// Sweep result JSON → `sweep_results`.
    Sweep,
    /// OTLP traces and metrics (protobuf or JSON) → `otel_traces` / `otel_metrics`.
    Otel,
    /// flowpb.FlowMessage protobuf (or legacy JSON) → `ocsf_network_activity`.
    Netflow,
}

impl ProcessorKind {
    /// Every kind, for help texts.
    pub const ALL: &[ProcessorKind] = &[
        ProcessorKind::Telemetry,
        ProcessorKind::Logs,
        ProcessorKind::Events,
        ProcessorKind::Sweep,
        ProcessorKind::Otel,
    ];

    /// The name used in streams.toml.
    pub const fn name(self) -> &'static str {
        match self {
            ProcessorKind::Telemetry => "telemetry",
            ProcessorKind::Logs => "logs",
            ProcessorKind::Events => "events",
            ProcessorKind::Sweep => "sweep",
            ProcessorKind::Otel => "otel",
            ProcessorKind::Netflow => "netflow",
        }
    }

    /// The tables its rows go to.
    pub const fn tables(self) -> &'static [&'static str] {
        match self {
            ProcessorKind::Telemetry => &[telemetry::Telemetry::TABLE],
            ProcessorKind::Logs => &[logs::Logs::TABLE],
            ProcessorKind::Events => &[events::Events::TABLE],
            ProcessorKind::Sweep => &[sweep::Sweep::TABLE],
            ProcessorKind::Otel => &[otel::Otel::TRACES, otel::Otel::METRICS],
            ProcessorKind::Netflow => &[netflow::Netflow::TABLE],
        }
    }

    /// Whether its idempotency comes from the ledger (its table has no key of its own).
    pub const fn uses_ledger(self) -> bool {
        matches!(self, ProcessorKind::Netflow)
    }

    /// Batch size and timeout used when a `[[stream]]` sets none.
    pub const fn batch_defaults(self) -> BatchDefaults {
        match self {
            ProcessorKind::Telemetry => telemetry::Telemetry::BATCH_DEFAULTS,
            ProcessorKind::Logs => logs::Logs::BATCH_DEFAULTS,
            ProcessorKind::Events => events::Events::BATCH_DEFAULTS,
            ProcessorKind::Sweep => sweep::Sweep::BATCH_DEFAULTS,
            ProcessorKind::Otel => otel::Otel::BATCH_DEFAULTS,
            ProcessorKind::Netflow => netflow::Netflow::BATCH_DEFAULTS,
        }
    }
}

impl fmt::Display for ProcessorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A processor's default batch settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchDefaults {
    /// Rows per batch.
    pub size: usize,
    /// Longest wait after a batch's first message.
    pub timeout: Duration,
}

/// What a processor sees of one JetStream message.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    /// The subject it was published on.
    pub subject: &'a str,
    /// The payload bytes.
    pub payload: &'a [u8],
    /// When JetStream stored it: the same on every redelivery, so a usable default timestamp.
    pub published: DateTime<Utc>,
    /// The JetStream stream it was stored in.
    pub stream: &'a str,
    /// Its sequence in that stream: with `stream`, an identity that survives redelivery.
    pub sequence: u64,
}

/// Why a payload can never become rows. Never retried: the message is terminated (and later dead-lettered).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);

impl DecodeError {
    /// Builds an error from anything printable.
    pub fn new(message: impl Into<String>) -> Self {
        DecodeError(message.into())
    }
}

/// One processor: decode messages into rows, write a slice of rows.
pub trait Processor: Send + Sync + 'static {
    /// One table row (or a row for one of the processor's tables).
    type Row: Send + Sync + 'static;

    /// Which of the kind's [`ProcessorKind::tables`] a row goes to (for metrics).
    fn table_of(_row: &Self::Row) -> usize {
        0
    }

    /// Appends the message's rows to `rows`. On error, whatever it appended is discarded by the caller.
    fn decode(&self, msg: &Incoming<'_>, rows: &mut Vec<Self::Row>) -> Result<(), DecodeError>;

    /// Writes `rows` inside `tx`, idempotently: rows already present (a redelivery) are skipped, not doubled.
    /// Returns the number of rows inserted.
    fn write<'a>(
        &'a self,
        tx: &'a deadpool_postgres::Transaction<'a>,
        rows: &'a [Self::Row],
    ) -> impl Future<Output = Result<u64, tokio_postgres::Error>> + Send + 'a;
}

/// Runs `kind`'s decoder on a payload without keeping the rows (the HTTP ingest front's `validate`).
pub fn validate(kind: ProcessorKind, subject: &str, payload: &[u8], stream: &str) -> Result<(), DecodeError> {
    fn check<P: Processor>(p: P, msg: &Incoming<'_>) -> Result<(), DecodeError> {
        p.decode(msg, &mut Vec::new())
    }
    let msg = Incoming { subject, payload, published: chrono::Utc::now(), stream, sequence: 1 };
    // The schema only names tables in SQL, which decoding never touches.
    match kind {
        ProcessorKind::Telemetry => check(telemetry::Telemetry::new("platform"), &msg),
        ProcessorKind::Logs => check(logs::Logs::new("platform"), &msg),
        ProcessorKind::Events => check(events::Events::new("platform"), &msg),
        ProcessorKind::Sweep => check(sweep::Sweep::new("platform"), &msg),
        ProcessorKind::Otel => check(otel::Otel::new("platform"), &msg),
        ProcessorKind::Netflow => check(netflow::Netflow::new("platform", stream), &msg),
    }
}

/// `"schema"."table"`, quoted for SQL.
pub fn qualified(schema: &str, table: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(table))
}

/// Quotes a PostgreSQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
