//! One stream's pipeline: reader → writers → settler.
//!
//! - [`reader`]: pulls only what the stream may still hold, hands each message to the settler at once, decodes it
//!   into the open batch and queues full batches;
//! - [`writer`]: `writers` tasks commit batches (one transaction each), bisect refused ones, hold them while the
//!   database is down, and report every message's outcome;
//! - [`settler`]: the only owner of every delivered message: ack after commit, in-progress acks while held,
//!   NAK with delay, Term after the dead letter is stored.
//!
//! The queue between reader and writers is unbounded in itself: what bounds memory is the settler's room (held
//! messages ≤ `max_ack_pending`, bytes ≤ `max_bytes_in_flight`) and `batches_in_flight` queued batches, checked
//! before every pull. A slow database therefore slows fetching, and every delivered message is always held.
//!
//! Uses the processors, [`crate::jetstream`] (stream and consumer set-up), [`crate::ledger`] (the stream's
//! incarnation), [`crate::db`], [`crate::breaker`], [`crate::dlq`], [`crate::metrics`], [`crate::traces`].

pub mod batch;
mod pull;
mod reader;
pub mod settler;
pub mod writer;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::{self};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::breaker::Breaker;
use crate::config::{DatabaseConfig, StreamConfig};
use crate::db::SharedPool;
use crate::dlq::DeadLetters;
use crate::jetstream::{NatsError, ensure_consumer, ensure_stream};
use crate::metrics::{Metrics, StreamMetrics};
use crate::processor::events::Events;
use crate::processor::logs::Logs;
use crate::processor::netflow::Netflow;
use crate::processor::otel::Otel;
use crate::processor::sweep::Sweep;
use crate::processor::telemetry::Telemetry;
use crate::processor::{Processor, ProcessorKind};
use settler::{Rules, Settler};
use writer::Writer;

/// What every stream task shares: the JetStream context, the one pool, and where tables live.
#[derive(Debug, Clone)]
pub struct Shared {
    /// JetStream context on the daemon's one NATS connection.
    pub js: jetstream::Context,
    /// The one PostgreSQL pool.
    pub pool: SharedPool,
    /// `[database]`: the schema, statement timeout, stall warning.
    pub database: DatabaseConfig,
    /// Subjects to create each missing JetStream stream with (union over its `[[stream]]`s).
    pub jetstream_subjects: Arc<std::collections::BTreeMap<String, Vec<String>>>,
    /// Where messages that can never be written go.
    pub dlq: DeadLetters,
    /// The database's circuit breaker.
    pub breaker: Arc<Breaker>,
    /// Exported metrics.
    pub metrics: Arc<Metrics>,
    /// How often consumer lag gauges are refreshed.
    pub refresh: Duration,
    /// Our own batch spans (does nothing unless `[otel]` is set).
    pub tracer: crate::traces::Tracer,
    /// Where the fate of messages posted to the HTTP ingest front is recorded (`[ingest]` set).
    pub ingest_status: Option<async_nats::jetstream::kv::Store>,
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

/// What a stream's reader and writers share.
pub(crate) struct Ctx {
    cfg: StreamConfig,
    database: DatabaseConfig,
    breaker: Arc<Breaker>,
    metrics: StreamMetrics,
    tracer: crate::traces::Tracer,
}

/// Full batches waiting for a writer.
pub(crate) struct Queue<R> {
    batches: std::sync::Mutex<VecDeque<batch::Batch<R, writer::Slip>>>,
    ready: Notify,
    closed: AtomicBool,
}

impl<R> Queue<R> {
    fn new() -> Self {
        Queue { batches: std::sync::Mutex::new(VecDeque::new()), ready: Notify::new(), closed: AtomicBool::new(false) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<batch::Batch<R, writer::Slip>>> {
        self.batches.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a full batch for the next free writer.
    fn push(&self, batch: batch::Batch<R, writer::Slip>) {
        self.lock().push_back(batch);
        self.ready.notify_one();
    }

    /// Batches waiting.
    fn len(&self) -> usize {
        self.lock().len()
    }

    /// No more batches will come: writers finish what is queued and stop.
    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.ready.notify_waiters();
    }

    /// The next batch, or `None` once the queue is closed and empty. Tells the settler (and so the reader) that
    /// a batch was taken: the queue has room again.
    async fn pop(&self, settler: &Settler) -> Option<batch::Batch<R, writer::Slip>> {
        loop {
            let notified = self.ready.notified();
            tokio::pin!(notified);
            // Registered before looking, so a push or close between the look and the wait is not missed.
            notified.as_mut().enable();
            let next = {
                let mut batches = self.lock();
                let next = batches.pop_front();
                if next.is_some() && !batches.is_empty() {
                    // Another batch waits: pass the wake-up on to another writer.
                    self.ready.notify_one();
                }
                next
            };
            if let Some(batch) = next {
                settler.batch_taken();
                return Some(batch);
            }
            if self.closed.load(Ordering::SeqCst) {
                return None;
            }
            notified.await;
        }
    }
}

/// Runs the pipeline of one `[[stream]]` until `shutdown`, then flushes, commits and acks what it holds.
pub async fn run_stream(cfg: &StreamConfig, shared: &Shared, shutdown: &CancellationToken) -> Result<(), StreamError> {
    // The closed set of processors, dispatched once per stream task: the pipeline is monomorphised per kind.
    let schema = &shared.database.schema;
    match cfg.processor {
        ProcessorKind::Telemetry => pipeline(Telemetry::new(schema), cfg, shared, shutdown).await,
        ProcessorKind::Logs => pipeline(Logs::new(schema), cfg, shared, shutdown).await,
        ProcessorKind::Events => pipeline(Events::new(schema), cfg, shared, shutdown).await,
        ProcessorKind::Sweep => pipeline(Sweep::new(schema), cfg, shared, shutdown).await,
        ProcessorKind::Otel => pipeline(Otel::new(schema), cfg, shared, shutdown).await,
        ProcessorKind::Netflow => pipeline(Netflow::new(schema), cfg, shared, shutdown).await,
    }
}

async fn pipeline<P: Processor>(
    processor: P,
    cfg: &StreamConfig,
    shared: &Shared,
    shutdown: &CancellationToken,
) -> Result<(), StreamError> {
    let subjects = shared.jetstream_subjects.get(&cfg.jetstream).map(Vec::as_slice).unwrap_or(&cfg.subjects);
    let mut js_stream = ensure_stream(&shared.js, &cfg.jetstream, subjects).await?;
    let consumer = ensure_consumer(&js_stream, cfg).await?;
    let created = js_stream
        .info()
        .await
        .map_err(|e| NatsError::Stream { name: cfg.jetstream.clone(), message: e.to_string() })?
        .created;
    let Some(epoch) = incarnation(shared, cfg, created.unix_timestamp_nanos(), shutdown).await else { return Ok(()) };
    let identity: Arc<str> = Arc::from(crate::ledger::identity(&cfg.jetstream, epoch));
    tracing::info!(stream = %cfg.name, consumer = %cfg.consumer, jetstream = %cfg.jetstream, identity = %identity, "consuming");

    let metrics = shared.metrics.stream(&cfg.name, cfg.processor);
    let ctx = Arc::new(Ctx {
        cfg: cfg.clone(),
        database: shared.database.clone(),
        breaker: Arc::clone(&shared.breaker),
        metrics: metrics.clone(),
        tracer: shared.tracer.clone(),
    });
    // Stops the reader: shutdown, or the consumer found created again by the lag refresher (which is aborted
    // when this function returns or unwinds).
    let stop = shutdown.child_token();
    let _lag = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(refresh_lag(
        consumer.clone(),
        metrics.clone(),
        shared.refresh,
        stop.clone(),
    )));
    let client = shared.js.client();
    let settler = Settler::new(Rules {
        stream: cfg.name.clone(),
        identity: Arc::clone(&identity),
        ack_wait: cfg.ack_wait,
        max_deliver: cfg.max_deliver,
        nak_delay: cfg.nak_delay,
        nak_delay_max: cfg.nak_delay_max,
        max_messages: usize::try_from(cfg.max_ack_pending).unwrap_or(usize::MAX),
        max_bytes: cfg.max_bytes_in_flight,
    });
    let closing = CancellationToken::new();
    let fates = shared.ingest_status.as_ref().map(|s| crate::ingest::Fates::new(s.clone(), &cfg.jetstream));
    let settling = tokio::spawn(
        Arc::clone(&settler)
            .run(client.clone(), shared.dlq.clone(), metrics, fates, closing.clone())
            .instrument(tracing::info_span!("settler", stream = %cfg.name)),
    );
    let processor = Arc::new(processor);
    let queue = Arc::new(Queue::<P::Row>::new());
    // Several writers share the queue: while one batch is inside PostgreSQL the next is encoded and sent. Each
    // batch is its own transaction and settles only its own messages, so their order does not matter.
    let writers: Vec<_> = (0..cfg.writers)
        .map(|i| {
            let writer = Writer {
                processor: Arc::clone(&processor),
                pool: shared.pool.clone(),
                ctx: Arc::clone(&ctx),
                settler: Arc::clone(&settler),
            };
            tokio::spawn(
                writer
                    .run(Arc::clone(&queue), shutdown.clone())
                    .instrument(tracing::info_span!("writer", stream = %cfg.name, i)),
            )
        })
        .collect();

    let reader = reader::Reader {
        processor: &*processor,
        ctx: &ctx,
        settler: &settler,
        queue: &queue,
        puller: pull::Puller::new(client.clone(), &cfg.jetstream, &cfg.consumer),
        max_payload: client.server_info().max_payload,
        identity,
    };
    // The reader stops on shutdown, or when the consumer is found created again (see `refresh_lag`).
    let result = match reader.run(&stop).await {
        Ok(()) if !shutdown.is_cancelled() => {
            Err(StreamError::ConsumerChanged("its creation time changed since this task set it up".into()))
        }
        other => other,
    };
    // Closing the queue lets the writers finish the queued batches (commit; the settler acks) and stop.
    queue.close();
    let mut written = Ok(());
    for w in writers {
        if let Err(e) = w.await {
            written = Err(StreamError::WriterDied(e.to_string()));
        }
    }
    // Nothing more will be reported: the settler gives back whatever is still held and stops.
    closing.cancel();
    let _ = settling.await;
    result.and(written)
}

/// The epoch of the stream's current incarnation ([`crate::ledger::incarnation`]), waiting for the database
/// (with backoff) when it does not answer: without it the stream does not know its messages' identity, so it
/// reads nothing (messages wait in JetStream). `None` on shutdown.
async fn incarnation(
    shared: &Shared,
    cfg: &StreamConfig,
    created_ns: i128,
    shutdown: &CancellationToken,
) -> Option<i32> {
    let created_ns = i64::try_from(created_ns).unwrap_or(i64::MAX);
    let mut delay = Duration::from_secs(1);
    let mut warned = false;
    loop {
        match crate::ledger::incarnation(&shared.pool.current(), &shared.database.schema, &cfg.jetstream, created_ns)
            .await
        {
            Ok(epoch) => return Some(epoch),
            Err(e) => {
                if !std::mem::replace(&mut warned, true) {
                    tracing::warn!(stream = %cfg.name, error = %e, "cannot read the stream's incarnation from the database; waiting for it before reading messages");
                }
            }
        }
        // Why select: a stream waiting for the database must still stop at once.
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}

/// Keeps the consumer's lag gauges fresh (JetStream's own counts: pending, awaiting ack, redelivered), and
/// cancels `changed` when the consumer is found created again (its creation time differs).
async fn refresh_lag(consumer: PullConsumer, metrics: StreamMetrics, every: Duration, changed: CancellationToken) {
    let created = consumer.cached_info().created;
    let mut tick = tokio::time::interval(every.min(Duration::from_secs(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut consumer = consumer;
    loop {
        tick.tick().await;
        if let Ok(info) = consumer.info().await {
            if info.created != created {
                changed.cancel();
            }
            metrics.pending.set(i64::try_from(info.num_pending).unwrap_or(i64::MAX));
            metrics.ack_pending.set(info.num_ack_pending as i64);
            metrics.consumer_redelivered.set(info.num_redelivered as i64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_queue_hands_every_batch_to_one_writer_and_ends_when_closed() {
        let settler = Settler::new(Rules {
            stream: "s".into(),
            identity: Arc::from("events"),
            ack_wait: Duration::from_secs(30),
            max_deliver: 5,
            nak_delay: Duration::from_secs(1),
            nak_delay_max: Duration::from_secs(60),
            max_messages: 100,
            max_bytes: 1 << 20,
        });
        let queue = Arc::new(Queue::<u32>::new());
        let taken = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let writers: Vec<_> = (0..3)
            .map(|_| {
                let (queue, settler, taken) = (Arc::clone(&queue), Arc::clone(&settler), Arc::clone(&taken));
                tokio::spawn(async move {
                    while let Some(b) = queue.pop(&settler).await {
                        taken.fetch_add(b.rows.len(), Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for i in 0..50u32 {
            let mut b = batch::Batcher::new(1, usize::MAX, Duration::from_secs(1));
            b.rows_mut().push(i);
            let ticket = settler.with(|book| {
                book.hold(
                    settler::Arrival {
                        reply: "r".into(),
                        subject: "s".into(),
                        payload: bytes::Bytes::new(),
                        headers: None,
                        sequence: u64::from(i),
                        delivered: 1,
                        published_ns: 0,
                        replay_of: None,
                        ingested: false,
                    },
                    1,
                    tokio::time::Instant::now(),
                )
            });
            let full = b.push(writer::Slip { ticket, ingested: false, link: None }, 0, 1, tokio::time::Instant::now());
            queue.push(full.expect("one row fills it"));
        }
        queue.close();
        for w in writers {
            w.await.unwrap();
        }
        assert_eq!(taken.load(Ordering::SeqCst), 50);
        assert_eq!(queue.len(), 0);
    }
}
