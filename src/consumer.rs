//! One stream's pipeline: pull → decode → batch → write in one transaction → ack after commit.
//!
//! Two tasks per stream joined by a bounded channel: the reader fetches, decodes and batches; the writer
//! commits batches and only then acks their messages. While one batch is written the next is fetched and
//! decoded; when the writer falls behind, the full channel stops the reader, so a slow database slows fetching
//! instead of growing memory (and JetStream's `max_ack_pending` bounds what is delivered but unacked).

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::consumer::pull::MessagesErrorKind;
use async_nats::jetstream::message::{AckKind, Acker};
use async_nats::jetstream::{self, Message};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::batch::{Batch, Batcher, Entry};
use crate::breaker::{Breaker, State};
use crate::config::StreamConfig;
use crate::db::{ErrorClass, SharedPool, WriteError};
use crate::dlq::{DeadLetter, DeadLetters, DlqClass};
use crate::jetstream::{NatsError, ensure_consumer, ensure_stream};
use crate::metrics::{Metrics, StreamMetrics};
use crate::processor::events::Events;
use crate::processor::logs::Logs;
use crate::processor::netflow::Netflow;
use crate::processor::otel::Otel;
use crate::processor::sweep::Sweep;
use crate::processor::telemetry::Telemetry;
use crate::processor::{Incoming, Processor, ProcessorKind};

/// What every stream task shares: the JetStream context, the one pool, and where tables live.
#[derive(Debug, Clone)]
pub struct Shared {
    /// JetStream context on the daemon's one NATS connection.
    pub js: jetstream::Context,
    /// The one PostgreSQL pool.
    pub pool: SharedPool,
    /// Schema of the tables.
    pub schema: String,
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
    /// The message stream ended.
    #[error("the pull subscription ended")]
    Ended,
    /// The writer task died (a bug: it handles every error itself).
    #[error("the writer task stopped unexpectedly: {0}")]
    WriterDied(String),
}

/// Runs the pipeline of one `[[stream]]` until `shutdown`, then flushes, commits and acks what it holds.
pub async fn run_stream(cfg: &StreamConfig, shared: &Shared, shutdown: &CancellationToken) -> Result<(), StreamError> {
    // The closed set of processors, dispatched once per stream task: the pipeline is monomorphised per kind.
    match cfg.processor {
        ProcessorKind::Telemetry => pipeline(Telemetry::new(&shared.schema), cfg, shared, shutdown).await,
        ProcessorKind::Logs => pipeline(Logs::new(&shared.schema), cfg, shared, shutdown).await,
        ProcessorKind::Events => pipeline(Events::new(&shared.schema), cfg, shared, shutdown).await,
        ProcessorKind::Sweep => pipeline(Sweep::new(&shared.schema), cfg, shared, shutdown).await,
        ProcessorKind::Otel => pipeline(Otel::new(&shared.schema), cfg, shared, shutdown).await,
        ProcessorKind::Netflow => pipeline(Netflow::new(&shared.schema, &cfg.jetstream), cfg, shared, shutdown).await,
    }
}

/// A message waiting in a batch: its acker, and what a dead letter needs of it.
pub struct Pending {
    acker: Acker,
    subject: async_nats::Subject,
    payload: bytes::Bytes,
    headers: Option<async_nats::HeaderMap>,
    sequence: u64,
    delivered: i64,
    published: DateTime<Utc>,
}

type RowBatch<P> = Batch<<P as Processor>::Row, Pending>;

/// What a stream's reader and writer share.
struct Ctx {
    cfg: StreamConfig,
    dlq: DeadLetters,
    breaker: Arc<Breaker>,
    metrics: StreamMetrics,
    tracer: crate::traces::Tracer,
    ingest_status: Option<async_nats::jetstream::kv::Store>,
}

impl Ctx {
    /// Dead-letters `p` and terminates it once the dead letter is stored; if it cannot be stored, NAKs it with a
    /// delay instead, so it is never dropped.
    async fn dead_letter(&self, p: &Pending, class: DlqClass, reason: &str) {
        let letter = DeadLetter {
            stream: &self.cfg.name,
            subject: p.subject.as_str(),
            sequence: p.sequence,
            delivered: p.delivered,
            class,
            reason,
            payload: p.payload.clone(),
            headers: p.headers.as_ref(),
        };
        match self.dlq.publish(&letter).await {
            Ok(()) => {
                self.metrics.dead_lettered(class);
                tracing::error!(
                    stream = %self.cfg.name, subject = %p.subject, sequence = p.sequence, delivered = p.delivered,
                    class = %class, reason, "message dead-lettered"
                );
                // Why Term only now: the dead letter is stored; terminating earlier could lose the message.
                match p.acker.ack_with(AckKind::Term).await {
                    Ok(()) => {
                        self.metrics.terminated.inc();
                    }
                    Err(e) => {
                        tracing::warn!(sequence = p.sequence, error = %e, "could not terminate a dead-lettered message; it may come back and be dead-lettered twice")
                    }
                }
                if let Some(status) = &self.ingest_status
                    && crate::ingest::is_ingested(p.headers.as_ref())
                {
                    let fate =
                        crate::ingest::Fate::DeadLettered { class: class.to_string(), reason: reason.to_owned() };
                    crate::ingest::record(status, &self.cfg.jetstream, p.sequence, &fate).await;
                }
            }
            Err(e) => {
                let delay = self.cfg.nak_delay_for(p.delivered);
                tracing::error!(
                    stream = %self.cfg.name, sequence = p.sequence, class = %class, reason, error = %e, retry_in = ?delay,
                    "could not dead-letter; message NAKed instead"
                );
                if p.acker.ack_with(AckKind::Nak(Some(delay))).await.is_ok() {
                    self.metrics.naked.inc();
                }
            }
        }
    }

    /// Tells JetStream these messages are still being worked on (resets their ack_wait).
    async fn progress<'a>(&self, msgs: impl Iterator<Item = &'a Pending>) {
        for p in msgs {
            let _ = p.acker.ack_with(AckKind::Progress).await;
        }
    }

    /// Half of ack_wait: how long a message may wait before an in-progress ack.
    fn progress_every(&self) -> Duration {
        (self.cfg.ack_wait / 2).max(Duration::from_millis(100))
    }
}

async fn pipeline<P: Processor>(
    processor: P,
    cfg: &StreamConfig,
    shared: &Shared,
    shutdown: &CancellationToken,
) -> Result<(), StreamError> {
    let subjects = shared.jetstream_subjects.get(&cfg.jetstream).map(Vec::as_slice).unwrap_or(&cfg.subjects);
    let js_stream = ensure_stream(&shared.js, &cfg.jetstream, subjects).await?;
    let consumer = ensure_consumer(&js_stream, cfg).await?;
    tracing::info!(stream = %cfg.name, consumer = %cfg.consumer, jetstream = %cfg.jetstream, "consuming");

    let metrics = shared.metrics.stream(&cfg.name, cfg.processor);
    let ctx = Arc::new(Ctx {
        cfg: cfg.clone(),
        dlq: shared.dlq.clone(),
        breaker: Arc::clone(&shared.breaker),
        metrics: metrics.clone(),
        tracer: shared.tracer.clone(),
        ingest_status: shared.ingest_status.clone(),
    });
    // Aborted when this function returns or unwinds, so a restarted stream never leaves one behind.
    let _lag =
        tokio_util::task::AbortOnDropHandle::new(tokio::spawn(refresh_lag(consumer.clone(), metrics, shared.refresh)));
    let processor = Arc::new(processor);
    let (tx, rx) = mpsc::channel::<RowBatch<P>>(cfg.batches_in_flight);
    // Several writers share the queue: while one batch is inside PostgreSQL the next is encoded and sent. Each
    // batch is its own transaction and acks only its own messages, so their order does not matter.
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let writers: Vec<_> = (0..cfg.writers)
        .map(|i| {
            let writer = Writer {
                processor: Arc::clone(&processor),
                pool: shared.pool.clone(),
                ctx: Arc::clone(&ctx),
                status_records: tokio_util::task::TaskTracker::new(),
            };
            tokio::spawn(writer.run(Arc::clone(&rx)).instrument(tracing::info_span!("writer", stream = %cfg.name, i)))
        })
        .collect();

    let result = read(&*processor, &consumer, &ctx, &tx, shutdown).await;
    // Closing the channel lets the writers finish the queued batches (commit, then ack) and stop.
    drop(tx);
    let mut written = Ok(());
    for w in writers {
        if let Err(e) = w.await {
            written = Err(StreamError::WriterDied(e.to_string()));
        }
    }
    result.and(written)
}

/// Keeps the consumer's lag gauges fresh (JetStream's own counts: pending, awaiting ack, redelivered).
async fn refresh_lag(consumer: PullConsumer, metrics: StreamMetrics, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Ok(info) = consumer.get_info().await {
            metrics.pending.set(i64::try_from(info.num_pending).unwrap_or(i64::MAX));
            metrics.ack_pending.set(info.num_ack_pending as i64);
            metrics.consumer_redelivered.set(info.num_redelivered as i64);
        }
    }
}

/// Fetches, decodes and batches until shutdown or a pull error; always hands the open batch to the writer.
/// While the breaker is not closed it holds no pull subscription at all.
async fn read<P: Processor>(
    processor: &P,
    consumer: &PullConsumer,
    ctx: &Ctx,
    tx: &mpsc::Sender<RowBatch<P>>,
    shutdown: &CancellationToken,
) -> Result<(), StreamError> {
    let cfg = &ctx.cfg;
    let per_pull = cfg.batch_size.min(usize::try_from(cfg.max_ack_pending).unwrap_or(usize::MAX)).max(1);
    let subscribe = || async {
        consumer
            .stream()
            .max_messages_per_batch(per_pull)
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await
            .map_err(|e| StreamError::Pull(e.to_string()))
    };
    let mut breaker = ctx.breaker.watch();
    let mut messages = None;
    let mut batcher: Batcher<P::Row, Pending> = Batcher::new(cfg.batch_size, cfg.batch_timeout);
    let mut next_progress: Option<Instant> = None;
    let far_future = Instant::now() + Duration::from_secs(86_400 * 365);

    let result = loop {
        if *breaker.borrow_and_update() != State::Closed {
            // Why drop the subscription: messages stay in JetStream rather than piling up unacked in our buffer.
            if messages.take().is_some() {
                tracing::warn!(stream = %cfg.name, "breaker open: fetching paused");
            }
            if let Some(batch) = batcher.take()
                && tx.send(batch).await.is_err()
            {
                break Err(StreamError::WriterDied("channel closed".into()));
            }
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break Ok(()),
                changed = breaker.changed() => if changed.is_err() { break Ok(()) },
            }
            continue;
        }
        let stream = match messages.as_mut() {
            Some(stream) => stream,
            None => messages.insert(subscribe().await?),
        };
        let deadline = batcher.deadline();
        let progress_at = next_progress.or_else(|| batcher.started().map(|s| s + ctx.progress_every()));
        tokio::select! {
            // Why biased, shutdown first: once asked to stop, fetch nothing more; the open batch is flushed below.
            biased;
            _ = shutdown.cancelled() => break Ok(()),
            // Why: the breaker opened; the loop top pauses fetching.
            _ = breaker.changed() => {}
            // Why: a partial batch must not wait for more traffic longer than batch_timeout.
            _ = tokio::time::sleep_until(deadline.unwrap_or(far_future)), if deadline.is_some() => {
                next_progress = None;
                if let Some(batch) = batcher.take()
                    && tx.send(batch).await.is_err()
                {
                    break Err(StreamError::WriterDied("channel closed".into()));
                }
            }
            // Why: an open batch held longer than half of ack_wait would be redelivered to us while we hold it.
            _ = tokio::time::sleep_until(progress_at.unwrap_or(far_future)), if progress_at.is_some() && !batcher.is_empty() => {
                ctx.progress(batcher.entries().iter().map(|e: &Entry<Pending>| &e.msg)).await;
                next_progress = Some(Instant::now() + ctx.progress_every());
            }
            next = stream.next() => match next {
                Some(Ok(msg)) => {
                    if let Some(batch) = accept(processor, msg, &mut batcher, ctx).await {
                        next_progress = None;
                        // Why await: a full channel is the backpressure that keeps memory flat.
                        if tx.send(batch).await.is_err() {
                            break Err(StreamError::WriterDied("channel closed".into()));
                        }
                    }
                }
                Some(Err(e)) if matches!(e.kind(), MessagesErrorKind::MissingHeartbeat) => {
                    tracing::warn!(stream = %cfg.name, "missed JetStream heartbeats (NATS unreachable?); still pulling");
                }
                Some(Err(e)) => break Err(StreamError::Pull(e.to_string())),
                None => break Err(StreamError::Ended),
            },
        }
    };
    // Whatever stopped us, what was already decoded is committed and acked rather than left to ack_wait.
    if let Some(batch) = batcher.take() {
        tracing::debug!(stream = %cfg.name, messages = batch.msgs.len(), "flushing the open batch");
        let _ = tx.send(batch).await;
    }
    result
}

/// Decodes one message into the open batch; an undecodable one is dead-lettered at once (it can never succeed).
async fn accept<P: Processor>(
    processor: &P,
    msg: Message,
    batcher: &mut Batcher<P::Row, Pending>,
    ctx: &Ctx,
) -> Option<RowBatch<P>> {
    let (sequence, delivered, published) = match msg.info() {
        Ok(info) => (info.stream_sequence, info.delivered, published_at(info.published.unix_timestamp_nanos())),
        Err(_) => (0, 1, Utc::now()),
    };
    let (message, acker) = msg.split();
    ctx.metrics.received.inc();
    if delivered > 1 {
        ctx.metrics.redelivered.inc();
    }
    let incoming = Incoming {
        subject: message.subject.as_str(),
        payload: &message.payload,
        published,
        stream: &ctx.cfg.jetstream,
        sequence,
    };
    let before = batcher.row_count();
    let decoded = processor.decode(&incoming, batcher.rows_mut());
    let pending = Pending {
        acker,
        subject: message.subject,
        payload: message.payload,
        headers: message.headers,
        sequence,
        delivered,
        published,
    };
    match decoded {
        Ok(()) => batcher.push(pending, before, Instant::now()),
        Err(e) => {
            batcher.rows_mut().truncate(before);
            // Why not NAK: a payload that cannot decode never will; NAKing it would loop forever.
            ctx.dead_letter(&pending, DlqClass::Decode, &e.to_string()).await;
            None
        }
    }
}

fn published_at(nanos: i128) -> DateTime<Utc> {
    let secs = nanos.div_euclid(1_000_000_000) as i64;
    DateTime::from_timestamp(secs, nanos.rem_euclid(1_000_000_000) as u32).unwrap_or_else(Utc::now)
}

/// Commits batches and settles their messages: ack after commit; bisection on a permanent error so only the
/// refused messages are dead-lettered; NAK with delay on a transient one, or dead-letter on the last delivery.
struct Writer<P> {
    processor: Arc<P>,
    pool: SharedPool,
    ctx: Arc<Ctx>,
    /// Recording the fate of ingested messages runs beside the writes; awaited before the writer ends, so a
    /// shutdown does not leave committed messages marked `accepted`.
    status_records: tokio_util::task::TaskTracker,
}

impl<P: Processor> Writer<P> {
    async fn run(self, rx: Arc<tokio::sync::Mutex<mpsc::Receiver<RowBatch<P>>>>) {
        loop {
            // Why the lock only around recv: the next writer may take a batch while this one writes.
            let Some(batch) = rx.lock().await.recv().await else { break };
            // Why: a batch that queued behind a slow write may be near its ack_wait already.
            if batch.started.elapsed() >= self.ctx.progress_every() {
                self.ctx.progress(batch.msgs.iter().map(|e| &e.msg)).await;
            }
            self.write_batch(batch).await;
        }
        self.status_records.close();
        self.status_records.wait().await;
    }

    #[tracing::instrument(skip_all, fields(stream = %self.ctx.cfg.name, batch_rows = batch.rows.len(), batch_msgs = batch.msgs.len()))]
    async fn write_batch(&self, batch: RowBatch<P>) {
        // Message ranges still to write; bisection pushes halves of a refused range.
        let mut todo: Vec<Range<usize>> = Vec::with_capacity(8);
        todo.push(0..batch.msgs.len());
        // For the batch's span: what became of its messages, and the last error.
        let start = std::time::SystemTime::now();
        let (mut committed, mut rejected, mut retried, mut inserted_rows) = (0usize, 0usize, 0usize, 0u64);
        let mut last_error: Option<String> = None;
        while let Some(range) = todo.pop() {
            let entries = &batch.msgs[range.clone()];
            let rows = batch.rows_of(range.clone());
            let began = Instant::now();
            let outcome = self.commit_with_progress(rows, entries).await;
            let m = &self.ctx.metrics;
            match &outcome {
                Err(e) if e.class() == ErrorClass::Breaker => self.ctx.breaker.record_failure(),
                _ => self.ctx.breaker.record_success(),
            }
            match outcome {
                Ok(inserted) => {
                    tracing::debug!(messages = range.len(), inserted, "committed");
                    (committed, inserted_rows) = (committed + range.len(), inserted_rows + inserted);
                    m.commit_seconds.observe(began.elapsed().as_secs_f64());
                    m.committed.inc();
                    m.batch_rows.observe(rows.len() as f64);
                    m.rows_inserted.inc_by(inserted);
                    if self.ctx.cfg.processor.tables().len() == 1 {
                        m.rows_committed(0, rows.len() as u64);
                    } else {
                        for row in rows {
                            m.rows_committed(P::table_of(row), 1);
                        }
                    }
                    let committed_at = Utc::now();
                    self.record_persisted(&batch, range.clone(), committed_at);
                    // Why here: the transaction holding these rows has committed; only now may JetStream forget them.
                    for entry in entries {
                        let latency = (committed_at - entry.msg.published).num_microseconds().unwrap_or(0);
                        m.latency.observe(latency.max(0) as f64 / 1e6);
                        match entry.msg.acker.ack().await {
                            Ok(()) => {
                                m.acked.inc();
                            }
                            Err(e) => {
                                tracing::warn!(sequence = entry.msg.sequence, error = %e, "ack failed after commit; the redelivery will be skipped as a duplicate")
                            }
                        }
                    }
                }
                Err(e) if e.class() == ErrorClass::Permanent && range.len() > 1 => {
                    // One bad row must not sink the batch: split until the refused messages are alone.
                    let mid = range.start + range.len() / 2;
                    todo.push(mid..range.end);
                    todo.push(range.start..mid);
                }
                Err(e) if e.class() == ErrorClass::Permanent => {
                    (rejected, last_error) = (rejected + 1, Some(e.to_string()));
                    m.rejected.inc();
                    self.ctx.dead_letter(&entries[0].msg, DlqClass::Rejected, &e.to_string()).await;
                }
                Err(e) => {
                    (retried, last_error) = (retried + range.len(), Some(e.to_string()));
                    m.failed_seconds.observe(began.elapsed().as_secs_f64());
                    m.retried.inc();
                    tracing::warn!(
                        messages = range.len(), class = ?e.class(), sqlstate = e.sqlstate().unwrap_or(""), error = %e,
                        "batch not written; messages NAKed with a delay"
                    );
                    let max = self.ctx.cfg.max_deliver;
                    for entry in entries {
                        let p = &entry.msg;
                        if max > 0 && p.delivered >= max {
                            // JetStream will not deliver it again: keep it in the DLQ rather than lose it.
                            self.ctx.dead_letter(p, DlqClass::MaxDeliver, &e.to_string()).await;
                            continue;
                        }
                        // Why a delay: an immediate NAK would redeliver at once and spin against a failing database.
                        let delay = self.ctx.cfg.nak_delay_for(p.delivered);
                        match p.acker.ack_with(AckKind::Nak(Some(delay))).await {
                            Ok(()) => {
                                m.naked.inc();
                            }
                            Err(e) => {
                                tracing::warn!(sequence = p.sequence, error = %e, "NAK failed; the message returns after ack_wait")
                            }
                        }
                    }
                }
            }
        }
        if self.ctx.tracer.is_on() {
            let cfg = &self.ctx.cfg;
            let span = crate::traces::BatchSpan {
                stream: &cfg.name,
                processor: cfg.processor.name(),
                jetstream: &cfg.jetstream,
                consumer: &cfg.consumer,
                table: &cfg.processor.tables().join(","),
                messages: batch.msgs.len(),
                rows: batch.rows.len(),
                inserted: inserted_rows,
                outcome: match (committed, rejected, retried) {
                    (_, 0, 0) => "committed",
                    (0, _, 0) => "rejected",
                    (_, _, 0) => "partial",
                    _ => "retry",
                },
                error: last_error.as_deref(),
                start,
                end: std::time::SystemTime::now(),
            };
            self.ctx.tracer.record(&span, batch.msgs.iter().map(|e| e.msg.headers.as_ref()));
        }
    }

    /// Records `persisted` for the messages of `range` that came in through the HTTP ingest front, in the
    /// background (the JetStream path pays nothing; a failure leaves them `accepted`, and is logged).
    fn record_persisted(&self, batch: &RowBatch<P>, range: Range<usize>, committed_at: DateTime<Utc>) {
        let Some(status) = &self.ctx.ingest_status else { return };
        let tables = self.ctx.cfg.processor.tables();
        let fates: Vec<(u64, crate::ingest::Fate)> = range
            .filter(|&i| crate::ingest::is_ingested(batch.msgs[i].msg.headers.as_ref()))
            .map(|i| {
                let mut written: Vec<&str> = batch.rows_of(i..i + 1).iter().map(|r| tables[P::table_of(r)]).collect();
                written.dedup();
                let fate = crate::ingest::Fate::Persisted {
                    table: written.join(","),
                    committed_at: committed_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                };
                (batch.msgs[i].msg.sequence, fate)
            })
            .collect();
        if fates.is_empty() {
            return;
        }
        let (status, jetstream) = (status.clone(), self.ctx.cfg.jetstream.clone());
        self.status_records.spawn(async move {
            // Together, so the key-value acknowledgements overlap rather than cost a round trip each.
            let records =
                fates.iter().map(|(sequence, fate)| crate::ingest::record(&status, &jetstream, *sequence, fate));
            futures::future::join_all(records).await;
        });
    }

    /// Commits, sending in-progress acks for `entries` every half ack_wait while the write takes (a lock, a slow
    /// disk), so JetStream does not redeliver what is being written.
    async fn commit_with_progress(&self, rows: &[P::Row], entries: &[Entry<Pending>]) -> Result<u64, WriteError> {
        let commit = self.commit(rows);
        tokio::pin!(commit);
        let every = self.ctx.progress_every();
        let mut tick = tokio::time::interval_at(Instant::now() + every, every);
        loop {
            tokio::select! {
                result = &mut commit => return result,
                _ = tick.tick() => self.ctx.progress(entries.iter().map(|e| &e.msg)).await,
            }
        }
    }

    /// Writes rows in one transaction. Messages without rows need no write.
    async fn commit(&self, rows: &[P::Row]) -> Result<u64, WriteError> {
        if rows.is_empty() {
            return Ok(0);
        }
        let mut client = self.pool.current().get().await?;
        let tx = client.transaction().await?;
        let inserted = self.processor.write(&tx, rows).await?;
        tx.commit().await?;
        Ok(inserted)
    }
}
