//! What a processor is: the [`Processor`] trait (its name, tables and defaults as constants; decode a message into
//! rows; write rows), and what its decoder sees and produces: [`Incoming`], [`Rows`] within [`Limits`],
//! [`DecodeError`]. Every processor implements this and imports nothing from its siblings but the shared helpers
//! ([`super::json`], [`super::otlp`], [`super::proto`]).
//!
//! Uses the config types only (and async-nats' header map, read through [`Headers`]).

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};

pub use crate::config::{BatchDefaults, DatabaseConfig};

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
    /// Its NATS headers.
    pub headers: Headers<'a>,
    /// The JetStream reply (ack) subject of this delivery (`""` outside a delivery).
    pub reply: &'a str,
}

impl<'a> Incoming<'a> {
    /// A message with no headers and no reply subject (tests, the ingest front's validation).
    pub fn bare(subject: &'a str, payload: &'a [u8], published: DateTime<Utc>, stream: &'a str, sequence: u64) -> Self {
        Incoming { subject, payload, published, stream, sequence, headers: Headers::NONE, reply: "" }
    }

    /// Who ingested it, from ServiceRadar's `Sr-*` headers (reference-today §7): `""` for each one absent.
    pub fn attribution(&self) -> Attribution<'a> {
        Attribution {
            identity: self.headers.get("Sr-Ingest-Identity").unwrap_or(""),
            agent_id: self.headers.get("Sr-Agent-Id").unwrap_or(""),
            partition: self.headers.get("Sr-Partition").unwrap_or(""),
        }
    }
}

/// A message's NATS headers, as a processor reads them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Headers<'a>(Option<&'a async_nats::HeaderMap>);

impl<'a> Headers<'a> {
    /// No headers.
    pub const NONE: Headers<'static> = Headers(None);

    /// The headers of a delivered message.
    pub fn of(map: Option<&'a async_nats::HeaderMap>) -> Self {
        Headers(map)
    }

    /// The first value of `name`: an exact match, else one that differs only in ASCII case (the Go writer reads
    /// headers exactly, the Elixir writer ignoring case; a publisher spelling `sr-agent-id` is still heard).
    pub fn get(&self, name: &str) -> Option<&'a str> {
        let map = self.0?;
        if let Some(v) = map.get(name) {
            return Some(v.as_str());
        }
        map.iter()
            .find(|(k, _)| AsRef::<str>::as_ref(k).eq_ignore_ascii_case(name))
            .and_then(|(_, values)| values.first())
            .map(|v| v.as_str())
    }
}

/// [`Attribution`] owned, made once per message and shared by its rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestColumns {
    /// `ingest_identity`.
    pub identity: std::sync::Arc<str>,
    /// `ingest_agent_id`.
    pub agent_id: std::sync::Arc<str>,
    /// `ingest_partition`.
    pub partition: std::sync::Arc<str>,
}

impl IngestColumns {
    /// Bytes they add to a row.
    pub fn len(&self) -> usize {
        self.identity.len() + self.agent_id.len() + self.partition.len()
    }

    /// Whether all three are empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Attribution<'_> {
    /// The columns, NUL-free, for the rows of this message.
    pub fn columns(&self) -> IngestColumns {
        // NUL → U+FFFD, as every text column (json::clean_text, which depends on this module).
        let col = |s: &str| -> std::sync::Arc<str> { std::sync::Arc::from(s.replace('\0', "\u{FFFD}")) };
        IngestColumns { identity: col(self.identity), agent_id: col(self.agent_id), partition: col(self.partition) }
    }
}

/// The `Sr-Ingest-Identity`, `Sr-Agent-Id` and `Sr-Partition` headers of a message, for the `ingest_identity`,
/// `ingest_agent_id` and `ingest_partition` columns (`""` when absent, as the columns' defaults).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Attribution<'a> {
    /// `Sr-Ingest-Identity`.
    pub identity: &'a str,
    /// `Sr-Agent-Id`.
    pub agent_id: &'a str,
    /// `Sr-Partition`.
    pub partition: &'a str,
}

/// Why a payload can never become rows. Never retried: the message is dead-lettered (class `decode`, or `limit`
/// when it is well-formed but over one of the stream's per-message limits).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct DecodeError {
    /// What is wrong, naming the field or the limit.
    pub message: String,
    /// True when the payload is refused for its size (rows, bytes), not its content.
    pub over_limit: bool,
}

impl DecodeError {
    /// A payload that cannot be decoded; the message names the field.
    pub fn new(message: impl Into<String>) -> Self {
        DecodeError { message: message.into(), over_limit: false }
    }

    /// A payload that decodes, but into more than a limit allows; the message names the limit.
    pub fn limit(message: impl Into<String>) -> Self {
        DecodeError { message: message.into(), over_limit: true }
    }

    /// The same error with `prefix` (e.g. `[3]: `) in front of its message.
    pub fn prefixed(self, prefix: impl std::fmt::Display) -> Self {
        DecodeError { message: format!("{prefix}{}", self.message), ..self }
    }
}

/// How much one message may expand into: a payload of a few kilobytes must not become gigabytes of rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most rows one message may produce.
    pub max_rows: usize,
    /// Most row bytes (as sent to PostgreSQL, see [`RowSize`]) one message may produce.
    pub max_bytes: usize,
}

impl Limits {
    /// The default cap on rows per message.
    pub const DEFAULT_MAX_ROWS: usize = crate::config::StreamConfig::DEFAULT_MAX_ROWS_PER_MESSAGE;
    /// The default cap on row bytes per payload byte.
    pub const DEFAULT_EXPANSION: usize = crate::config::StreamConfig::DEFAULT_MAX_EXPANSION;
    /// Row bytes every message may produce whatever its size (a 100-byte payload may still become a 4 KiB row).
    pub const BYTES_FLOOR: usize = 4 << 20;

    /// The limits of a message of `payload_len` bytes under a stream's settings.
    pub fn for_payload(payload_len: usize, max_rows: usize, expansion: usize) -> Limits {
        Limits { max_rows, max_bytes: payload_len.saturating_mul(expansion).max(Self::BYTES_FLOOR) }
    }

    /// No limit: tests, and callers that keep no rows.
    pub const NONE: Limits = Limits { max_rows: usize::MAX, max_bytes: usize::MAX };
}

/// The size of a row as it will be sent to PostgreSQL: the bytes of its text, plus 8 per other column. A value
/// shared by many rows (`Arc<str>`) is counted in every row, because every row carries it to the database.
pub trait RowSize {
    /// Approximate bytes.
    fn size(&self) -> usize;
}

/// Where a decoder appends one message's rows, within the message's [`Limits`]. Pushing past a limit is an
/// error naming it, so a hostile payload stops expanding at the limit rather than after.
pub struct Rows<'a, R> {
    rows: &'a mut Vec<R>,
    start: usize,
    bytes: usize,
    limits: Limits,
    skipped: Vec<(&'static str, u64)>,
}

impl<'a, R: RowSize> Rows<'a, R> {
    /// This message's rows go after what `rows` holds already (the open batch).
    pub fn new(rows: &'a mut Vec<R>, limits: Limits) -> Self {
        let start = rows.len();
        Rows { rows, start, bytes: 0, limits, skipped: Vec::new() }
    }

    /// Records that part of the message becomes no row by the processor's rules (`reason`, one of
    /// [`Processor::SKIPS`]); the pipeline counts it in `rows_skipped_total` and the message's other rows go on.
    pub fn skip(&mut self, reason: &'static str) {
        match self.skipped.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, n)) => *n += 1,
            None => self.skipped.push((reason, 1)),
        }
    }

    /// What [`Rows::skip`] recorded for this message.
    pub fn skipped(&self) -> &[(&'static str, u64)] {
        &self.skipped
    }

    /// Appends one row, or refuses it when the message would exceed a limit.
    pub fn push(&mut self, row: R) -> Result<(), DecodeError> {
        let n = self.rows.len() - self.start;
        if n >= self.limits.max_rows {
            return Err(DecodeError::limit(format!(
                "more than {} rows in one message (max_rows_per_message)",
                self.limits.max_rows
            )));
        }
        self.bytes = self.bytes.saturating_add(row.size());
        if self.bytes > self.limits.max_bytes {
            return Err(DecodeError::limit(format!(
                "its rows would exceed {} bytes (max_expansion × payload size)",
                self.limits.max_bytes
            )));
        }
        self.rows.push(row);
        Ok(())
    }

    /// Room for `n` more rows (bounded by the row limit, so a lying count reserves nothing huge).
    pub fn reserve(&mut self, n: usize) {
        self.rows.reserve(n.min(self.limits.max_rows).min(65_536));
    }

    /// This message's rows so far.
    pub fn added(&self) -> &[R] {
        &self.rows[self.start..]
    }

    /// Row bytes of this message so far.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Forgets this message's rows (its decoding failed).
    pub fn discard(self) {
        self.rows.truncate(self.start);
    }
}

/// One processor: what it is (constants the rest of the daemon asks, through [`super::info`]) and what it does
/// (decode messages into rows, write a slice of rows).
pub trait Processor: Send + Sync + Sized + 'static {
    /// Its name in streams.toml (`processor = "..."`): the lower-case name of its [`crate::config::ProcessorKind`]
    /// variant (a test checks they agree).
    const NAME: &'static str;
    /// The tables its rows go to, in the order [`Processor::table_of`] numbers them.
    const TABLES: &'static [&'static str];
    /// Batch size and timeout used when a `[[stream]]` sets none.
    const BATCH: BatchDefaults;
    /// Default retention (TimescaleDB) of each of its tables, for `[database.retention]`.
    const RETENTION: &'static [(&'static str, Duration)];
    /// Whether its idempotency comes from the ledger (its table has no key of its own).
    const LEDGER: bool = false;
    /// Default TimescaleDB chunk interval of each of its tables, for `[database.chunk_interval]` (ServiceRadar's).
    const CHUNK_INTERVAL: &'static [(&'static str, Duration)] = &[];
    /// Why it may turn part of a message into no row ([`Rows::skip`]), for `rows_skipped_total`.
    const SKIPS: &'static [&'static str] = &[];

    /// One table row (or a row for one of its tables).
    type Row: RowSize + Send + Sync + 'static;

    /// The processor, for the tables of `database` (their schema, the series-key rules).
    fn new(database: &DatabaseConfig) -> Self;

    /// Which of [`Processor::TABLES`] a row goes to (for metrics).
    fn table_of(_row: &Self::Row) -> usize {
        0
    }

    /// Appends the message's rows to `rows`. On error, whatever it appended is discarded by the caller.
    fn decode(&self, msg: &Incoming<'_>, rows: &mut Rows<'_, Self::Row>) -> Result<(), DecodeError>;

    /// Writes `rows` inside `tx`, idempotently: rows already present (a redelivery) are skipped, not doubled.
    /// Returns the number of rows inserted.
    fn write<'a>(
        &'a self,
        tx: &'a deadpool_postgres::Transaction<'a>,
        rows: &'a [Self::Row],
    ) -> impl Future<Output = Result<u64, tokio_postgres::Error>> + Send + 'a;
}
