//! The reader of one stream: pulls only what the stream may still hold, hands every message to the settler the
//! moment it arrives, decodes it into the open batch (within its per-message limits) and queues full batches for
//! the writers. It never answers JetStream itself: a message that can never be written (undecodable, over a
//! limit, out of deliveries) is given to the settler as a dead letter. A message an HTTP client waits for
//! ([`WAIT_HEADER`]) brings its batch's flush forward.
//!
//! Uses the processor's decoder, [`super::pull`], the settler and the batcher.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::batch::Batcher;
use super::context::{Ctx, Slip, StreamError};
use super::pull::{Puller, parse_reply};
use super::queue::Queue;
use super::settler::{Arrival, Settler};
use crate::breaker::State;
use crate::dlq::{DlqClass, Origin};
use crate::ingest::wait::WAIT_HEADER;
use crate::processor::{Headers, Incoming, Limits, Processor, Rows};

/// Bytes a pull may overshoot the room by: one message at the server's limit always fits a request.
const HEADROOM: usize = 64 * 1024;
/// How long a stopping reader waits for the next message still on the wire of its last pull request.
const TRAILING_QUIET: Duration = Duration::from_millis(50);

pub(super) struct Reader<'a, P: Processor> {
    pub(super) processor: &'a P,
    pub(super) ctx: &'a Ctx,
    pub(super) settler: &'a Settler,
    pub(super) queue: &'a Queue<P::Row>,
    pub(super) puller: Puller,
    /// The server's `max_payload`.
    pub(super) max_payload: usize,
    /// The stream's identity in this incarnation (see [`crate::ledger::identity`]).
    pub(super) identity: Arc<str>,
}

impl<P: Processor> Reader<'_, P> {
    /// Reads until shutdown or a pull error; always hands the open batch to the writers.
    pub(super) async fn run(&self, shutdown: &CancellationToken) -> Result<(), StreamError> {
        let cfg = &self.ctx.cfg;
        let max_batch_bytes = (cfg.max_bytes_in_flight / 4).max(1 << 20);
        let mut batcher: Batcher<P::Row, Slip> = Batcher::new(cfg.batch_size, max_batch_bytes, cfg.batch_timeout);
        let mut breaker = self.ctx.breaker.watch();
        let mut last_delivery = 0u64;
        let mut paused = false;
        let far_future = Instant::now() + Duration::from_secs(86_400 * 365);
        let result = 'read: loop {
            let open = *breaker.borrow_and_update() == State::Closed;
            let room = self.settler.room();
            if open && paused {
                paused = false;
                tracing::info!(stream = %cfg.name, "breaker closed: fetching resumes");
            }
            if !open && !paused {
                paused = true;
                // Messages stay in JetStream rather than piling up in memory behind a database that is down.
                tracing::warn!(stream = %cfg.name, "breaker open: fetching paused");
            }
            if !open || room.messages == 0 || room.bytes == 0 || self.queue.len() >= cfg.batches_in_flight {
                let deadline = batcher.deadline();
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => break Ok(()),
                    changed = breaker.changed() => if changed.is_err() { break Ok(()) },
                    _ = self.settler.room_changed() => {}
                    // Why: a partial batch must not wait for room longer than batch_timeout.
                    _ = tokio::time::sleep_until(deadline.unwrap_or(far_future)), if deadline.is_some() => {
                        if let Some(batch) = batcher.take() {
                            self.queue.push(batch);
                        }
                    }
                }
                continue;
            }
            let want = room.messages.min(cfg.batch_size);
            let bytes = room.bytes.max(self.max_payload + HEADROOM);
            let mut pull = self.puller.request(want, bytes).await.map_err(|e| StreamError::Pull(e.to_string()))?;
            loop {
                let deadline = batcher.deadline();
                tokio::select! {
                    // Why biased, shutdown first: once asked to stop, take what already arrived and nothing more.
                    biased;
                    _ = shutdown.cancelled() => {
                        // Why: what JetStream already sent for this request may still be on the wire; taking what
                        // arrives within a short quiet gap spares it an ack_wait redelivery (a later one is
                        // redelivered, never lost).
                        while let Some(message) = pull.trailing(TRAILING_QUIET).await {
                            self.accept(message, &mut batcher, &mut last_delivery)?;
                        }
                        break 'read Ok(());
                    }
                    // Why: a partial batch must not wait for more traffic longer than batch_timeout.
                    _ = tokio::time::sleep_until(deadline.unwrap_or(far_future)), if deadline.is_some() => {
                        if let Some(batch) = batcher.take() {
                            self.queue.push(batch);
                        }
                    }
                    next = pull.next() => match next {
                        Ok(Some(message)) => {
                            if let Err(e) = self.accept(message, &mut batcher, &mut last_delivery) {
                                break 'read Err(e);
                            }
                        }
                        Ok(None) => break,
                        Err(e) => break 'read Err(StreamError::Pull(e.to_string())),
                    },
                }
            }
        };
        // Whatever stopped us, what was already decoded is committed and acked rather than left to ack_wait.
        if let Some(batch) = batcher.take() {
            tracing::debug!(stream = %cfg.name, messages = batch.msgs.len(), "flushing the open batch");
            self.queue.push(batch);
        }
        result
    }

    /// Holds one message with the settler and decodes it into the open batch (queueing the batch when it is
    /// full). A message that can never be written is held as a dead letter instead. Errs only when the consumer
    /// changed under us (its delivery sequence went backwards: it was created again), so the stream restarts.
    fn accept(
        &self,
        message: async_nats::Message,
        batcher: &mut Batcher<P::Row, Slip>,
        last_delivery: &mut u64,
    ) -> Result<(), StreamError> {
        let cfg = &self.ctx.cfg;
        let m = &self.ctx.metrics;
        let Some(reply) = message.reply.clone() else {
            // Not a JetStream delivery: nothing to ack, nothing JetStream would redeliver.
            tracing::error!(stream = %cfg.name, subject = %message.subject, "a message without a reply subject; ignored");
            return Ok(());
        };
        let now = Instant::now();
        let meta = parse_reply(&reply);
        if let Some(d) = meta {
            if d.consumer_sequence <= *last_delivery {
                return Err(StreamError::ConsumerChanged(format!(
                    "delivery sequence {} after {}",
                    d.consumer_sequence, *last_delivery
                )));
            }
            *last_delivery = d.consumer_sequence;
        }
        m.received.inc();
        let headers = message.headers;
        let replay_of = Origin::of(headers.as_ref()).map(Box::new);
        let arrival = Arrival {
            reply,
            subject: message.subject,
            payload: message.payload,
            ingested: crate::ingest::status::is_ingested(headers.as_ref()),
            headers,
            sequence: meta.map_or(0, |d| d.stream_sequence),
            delivered: meta.map_or(1, |d| d.delivered),
            published_ns: meta.map_or(0, |d| d.published_ns),
            replay_of,
        };
        if arrival.delivered > 1 {
            m.redelivered.inc();
        }
        let Some(meta) = meta else {
            // Without its stream sequence a message has no identity: never guess one (sequence 0 would collide).
            let reason = format!("the reply subject {:?} carries no JetStream metadata", arrival.reply.as_str());
            self.settler.with(|b| b.hold_letter(arrival, DlqClass::Decode, reason, now));
            return Ok(());
        };
        let max = cfg.max_deliver;
        if max > 0 && meta.delivered > max {
            // Delivered more often than allowed without being settled: instances dying while they held it (a
            // crash loop, a node flapping). Decoding it again could be what kills them: dead-letter it unread.
            let reason = format!(
                "delivered {} times without being settled (max_deliver {max}): the instances holding it stopped \
                 before settling it, e.g. a crash loop",
                meta.delivered
            );
            self.settler.with(|b| b.hold_letter(arrival, DlqClass::MaxDeliver, reason, now));
            return Ok(());
        }
        let (stream, sequence, published_ns) = match &arrival.replay_of {
            Some(o) => (o.stream.as_str(), o.sequence, o.published_ns),
            None => (&*self.identity, meta.stream_sequence, meta.published_ns),
        };
        let incoming = Incoming {
            subject: arrival.subject.as_str(),
            payload: &arrival.payload,
            published: published_at(published_ns),
            stream,
            sequence,
            headers: Headers::of(arrival.headers.as_ref()),
            reply: arrival.reply.as_str(),
        };
        let before = batcher.row_count();
        let limits = Limits::for_payload(arrival.payload.len(), cfg.max_rows_per_message, cfg.max_expansion);
        let mut rows = Rows::new(batcher.rows_mut(), limits);
        match self.processor.decode(&incoming, &mut rows) {
            Ok(()) => {
                for (reason, n) in rows.skipped() {
                    m.rows_skipped(reason, *n);
                }
                let row_bytes = rows.bytes();
                let link =
                    if self.ctx.tracer.is_on() { crate::traces::link_of(arrival.headers.as_ref()) } else { None };
                let ingested = arrival.ingested;
                let waited = waited_for(arrival.headers.as_ref(), cfg.batch_timeout);
                let cost = arrival.payload.len() + row_bytes;
                let ticket = self.settler.with(|b| b.hold(arrival, cost, now));
                if let Some(batch) = batcher.push(Slip { ticket, ingested, link }, before, cost, now) {
                    self.queue.push(batch);
                } else if let Some(delay) = waited {
                    // Why: an HTTP client holds its request open for this commit; it must not wait out
                    // batch_timeout (only the short wait_flush that lets waiters arriving together share it).
                    batcher.hurry(now + delay);
                }
            }
            Err(e) => {
                rows.discard();
                // Why no NAK: a payload that cannot decode never will; it goes to the DLQ at once.
                let class = if e.over_limit { DlqClass::Limit } else { DlqClass::Decode };
                self.settler.with(|b| b.hold_letter(arrival, class, e.message, now));
            }
        }
        Ok(())
    }
}

/// How soon a message somebody waits for wants its batch flushed ([`WAIT_HEADER`]'s milliseconds, at most
/// `batch_timeout`), or `None` when nobody waits for it.
fn waited_for(headers: Option<&async_nats::HeaderMap>, batch_timeout: Duration) -> Option<Duration> {
    let value = headers?.get(WAIT_HEADER)?.as_str();
    let ms = value.trim().parse::<u64>().unwrap_or(0);
    Some(Duration::from_millis(ms).min(batch_timeout))
}

fn published_at(nanos: i128) -> chrono::DateTime<chrono::Utc> {
    let secs = nanos.div_euclid(1_000_000_000) as i64;
    chrono::DateTime::from_timestamp(secs, nanos.rem_euclid(1_000_000_000) as u32).unwrap_or_else(chrono::Utc::now)
}
