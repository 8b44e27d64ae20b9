//! What a stream's parts share: the daemon-wide [`Shared`] handles, the stream's own [`Ctx`], why a stream task
//! stops ([`StreamError`]), and what a batch entry carries ([`Slip`]).
//!
//! Uses the config types, the pool, the breaker, the DLQ, metrics and traces; nothing of the pipeline but the
//! settler's ticket.

use std::sync::Arc;

use async_nats::jetstream;

use super::batch::Batch;
use super::settler::Ticket;
use crate::breaker::Breaker;
use crate::config::{DatabaseConfig, StreamConfig};
use crate::db::SharedPool;
use crate::dlq::DeadLetters;
use crate::jetstream::NatsError;
use crate::metrics::{Metrics, StreamMetrics};
use crate::processor::Processor;

/// What every stream task shares: the JetStream context, the one pool, and where tables live.
#[derive(Debug, Clone)]
pub struct Shared {
    /// JetStream context on the daemon's one NATS connection.
    pub js: jetstream::Context,
    /// The one PostgreSQL pool.
    pub pool: SharedPool,
    /// `[database]`: the schema, statement timeout, stall warning.
    pub database: DatabaseConfig,
    /// How to create each missing JetStream stream (the union of its `[[stream]]`s' subjects, its limits).
    pub jetstreams: Arc<std::collections::BTreeMap<String, crate::jetstream::StreamSpec>>,
    /// Where messages that can never be written go.
    pub dlq: DeadLetters,
    /// The database's circuit breaker.
    pub breaker: Arc<Breaker>,
    /// Exported metrics.
    pub metrics: Arc<Metrics>,
    /// Our own batch spans (does nothing unless `[otel]` is set).
    pub tracer: crate::traces::Tracer,
    /// Where the fate of messages posted to the HTTP ingest front is recorded (`[ingest]` set).
    pub ingest_status: Option<async_nats::jetstream::kv::Store>,
    /// `[log]`: how many dead letters are logged one by one.
    pub log: crate::config::LogConfig,
}

/// Why a stream task stopped (the supervisor restarts it).
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// Setting up the JetStream stream or consumer failed.
    #[error(transparent)]
    Nats(#[from] NatsError),
    /// Pulling messages failed.
    #[error("pulling messages: {0}")]
    Pull(String),
    /// The consumer was created again under this task (its stream deleted and recreated, or the consumer
    /// replaced): the task restarts, to read the new incarnation with its own identity.
    #[error("the consumer was created again ({0}); starting over")]
    ConsumerChanged(String),
    /// A writer task died (a bug: it handles every error itself).
    #[error("a writer task stopped unexpectedly: {0}")]
    WriterDied(String),
}

impl StreamError {
    /// Its class in `stream_restarts` ([`crate::metrics::RESTART_CLASSES`]).
    pub fn class(&self) -> &'static str {
        match self {
            StreamError::Nats(_) => "setup",
            StreamError::Pull(_) => "pull",
            StreamError::ConsumerChanged(_) => "consumer_changed",
            StreamError::WriterDied(_) => "writer",
        }
    }
}

/// What a stream's reader and writers share.
pub(crate) struct Ctx {
    pub(super) cfg: StreamConfig,
    pub(super) database: DatabaseConfig,
    pub(super) breaker: Arc<Breaker>,
    pub(super) metrics: StreamMetrics,
    pub(super) tracer: crate::traces::Tracer,
}

/// What a batch entry carries besides its rows: its ticket with the settler, and what the writer needs of it.
#[derive(Debug)]
pub struct Slip {
    /// The message's ticket.
    pub ticket: Ticket,
    /// It came through the HTTP ingest front (the writer says which tables its rows went to).
    pub ingested: bool,
    /// Its W3C trace context, when batch spans are exported.
    pub link: Option<Box<crate::traces::Link>>,
}

/// A batch of rows and the slips of their messages.
pub type RowBatch<P> = Batch<<P as Processor>::Row, Slip>;
