//! One stream's pipeline: reader → writers → settler.
//!
//! - [`reader`]: pulls only what the stream may still hold ([`pull`]), hands each message to the settler at
//!   once, decodes it into the open batch ([`batch`]) and queues full batches ([`queue`]);
//! - [`writer`]: `writers` tasks commit batches (one transaction each), bisect refused ones, hold them while the
//!   database is down, and report every message's outcome;
//! - [`settler`]: the only owner of every delivered message: ack after commit, in-progress acks while held,
//!   NAK with delay, Term after the dead letter is stored.
//!
//! The queue between reader and writers is unbounded in itself: what bounds memory is the settler's room (held
//! messages ≤ `max_ack_pending`, bytes ≤ `max_bytes_in_flight`) and `batches_in_flight` queued batches, checked
//! before every pull. A slow database therefore slows fetching, and every delivered message is always held.
//!
//! This file wires a stream's parts ([`run_stream`]); what they share is in [`context`]. Uses the processors
//! (one [`crate::processor::dispatch`]), [`crate::jetstream`] (stream and consumer set-up), [`crate::ledger`]
//! (the stream's incarnation), the pool, the breaker, the DLQ, metrics, traces.

pub mod batch;
pub mod context;
mod pull;
mod queue;
mod reader;
pub mod settler;
pub mod writer;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::StreamConfig;
use crate::jetstream::{NatsError, ensure_consumer, ensure_stream};
use crate::processor::{Processor, Visit, dispatch};
use context::Ctx;
pub use context::{Shared, StreamError};
use queue::Queue;
use settler::{Rules, Settler};
use writer::Writer;

/// The metric series of a stream: its names, its processor's tables, every dead-letter class.
pub fn series(cfg: &StreamConfig) -> crate::metrics::StreamSeries<'_> {
    series_of(&cfg.name, cfg.processor.name(), cfg.processor.tables(), cfg.processor.skips())
}

fn series_of<'a>(
    stream: &'a str,
    processor: &'a str,
    tables: &'a [&'a str],
    skips: &'a [&'a str],
) -> crate::metrics::StreamSeries<'a> {
    crate::metrics::StreamSeries { stream, processor, tables, classes: &crate::dlq::DlqClass::NAMES, skips }
}

/// How often a stream checks that its consumer is still the one it set up (created again: the task restarts).
const CONSUMER_CHECK: Duration = Duration::from_secs(10);

/// Runs the pipeline of one `[[stream]]` until `shutdown`, then flushes, commits and acks what it holds.
pub async fn run_stream(cfg: &StreamConfig, shared: &Shared, shutdown: &CancellationToken) -> Result<(), StreamError> {
    struct Run<'a> {
        cfg: &'a StreamConfig,
        shared: &'a Shared,
        shutdown: &'a CancellationToken,
    }
    impl<'a> Visit for Run<'a> {
        type Output = BoxFuture<'a, Result<(), StreamError>>;
        fn visit<P: Processor>(self) -> Self::Output {
            // Monomorphised per processor: the pipeline knows its row type at compile time.
            Box::pin(pipeline(P::new(&self.shared.database), self.cfg, self.shared, self.shutdown))
        }
    }
    dispatch(cfg.processor, Run { cfg, shared, shutdown }).await
}

/// Runs `processor` as `cfg`'s pipeline, whatever `cfg.processor` names: how [`run_stream`] runs each kind, and
/// how a processor can be tried before it has a [`crate::config::ProcessorKind`] of its own (its name and tables
/// in logs and metrics are its constants).
pub async fn run_processor<P: Processor>(
    processor: P,
    cfg: &StreamConfig,
    shared: &Shared,
    shutdown: &CancellationToken,
) -> Result<(), StreamError> {
    pipeline(processor, cfg, shared, shutdown).await
}

async fn pipeline<P: Processor>(
    processor: P,
    cfg: &StreamConfig,
    shared: &Shared,
    shutdown: &CancellationToken,
) -> Result<(), StreamError> {
    let own = crate::jetstream::StreamSpec { subjects: cfg.subjects.clone(), shape: Default::default() };
    let spec = shared.jetstreams.get(&cfg.jetstream).unwrap_or(&own);
    let mut js_stream = ensure_stream(&shared.js, &cfg.jetstream, spec).await?;
    let consumer = ensure_consumer(&js_stream, cfg).await?;
    let created = js_stream
        .info()
        .await
        .map_err(|e| NatsError::Stream { name: cfg.jetstream.clone(), message: e.to_string() })?
        .created;
    let Some(epoch) = incarnation(shared, cfg, created.unix_timestamp_nanos(), shutdown).await else { return Ok(()) };
    let identity: Arc<str> = Arc::from(crate::ledger::identity(&cfg.jetstream, epoch));
    tracing::info!(stream = %cfg.name, consumer = %cfg.consumer, jetstream = %cfg.jetstream, identity = %identity, "consuming");
    shared.metrics.stream_running(&cfg.name, P::NAME);

    let metrics = shared.metrics.stream(series_of(&cfg.name, P::NAME, P::TABLES, P::SKIPS));
    let ctx = Arc::new(Ctx {
        cfg: cfg.clone(),
        database: shared.database.clone(),
        breaker: Arc::clone(&shared.breaker),
        metrics: metrics.clone(),
        tracer: shared.tracer.clone(),
    });
    // Stops the reader: shutdown, or the consumer found created again (the watch is aborted when this function
    // returns or unwinds).
    let stop = shutdown.child_token();
    let _watch = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(watch_consumer(consumer.clone(), stop.clone())));
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
    let fates = shared.ingest_status.as_ref().map(|s| crate::ingest::status::Fates::new(s.clone(), &cfg.jetstream));
    let settling = tokio::spawn(
        Arc::clone(&settler)
            .run(client.clone(), shared.dlq.clone(), metrics, fates, shared.log.clone(), closing.clone())
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
    // The reader stops on shutdown, or when the consumer is found created again (see `watch_consumer`).
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

/// Cancels `changed` when the consumer is found created again under this task (its creation time differs from
/// the one set up): a new incarnation must be read with its own identity.
async fn watch_consumer(consumer: PullConsumer, changed: CancellationToken) {
    let created = consumer.cached_info().created;
    let mut tick = tokio::time::interval(CONSUMER_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut consumer = consumer;
    loop {
        tick.tick().await;
        if let Ok(info) = consumer.info().await
            && info.created != created
        {
            changed.cancel();
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

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
            let full = b.push(context::Slip { ticket, ingested: false, link: None }, 0, 1, tokio::time::Instant::now());
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
