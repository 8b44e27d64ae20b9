//! The settler: the one owner of every delivered message of a stream, from the moment the reader receives it to
//! its final ack, NAK or Term, wherever its rows are (the open batch, the writers' queue, a write, a bisection
//! half waiting, a dead letter being published). It is the only code that answers JetStream about a message:
//!
//! - **ack** only after the transaction holding the message's rows committed ([`Settler::commit`]);
//! - **in-progress** for every held message every half `ack_wait`, so JetStream redelivers nothing we hold;
//! - **Term** only after the message's dead letter is stored; a dead letter that cannot be stored (the DLQ
//!   stream gone, full, the server refusing it) keeps the message held and is retried with backoff;
//! - **NAK** with a delay for a transient failure, or a dead letter (`max_deliver`) on the last allowed delivery;
//!   nothing is ever NAKed to death or terminated without its dead letter stored.
//!
//! [`book`] is the bookkeeping, pure and property-tested: calls queue [`Action`]s. [`Settler`] shares a book
//! between the stream's reader and writers (a mutex held for microseconds, never across an await) and its task,
//! [`Settler::run`], performs the actions on the NATS connection and publishes dead letters, logging them through
//! [`flood`]'s limiter.
//!
//! Uses [`crate::dlq`] (publishing), [`crate::metrics`] and [`crate::ingest`] (recording the fate of messages
//! posted to the HTTP front).

mod book;
mod flood;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use book::{Action, Arrival, Book, Letter, Room, Rules, Ticket};

use crate::dlq::{DeadLetter, DeadLetters};
use crate::metrics::StreamMetrics;

/// A stream's settler: its [`Book`], shared by the reader, the writers and the task that performs its actions.
#[derive(Debug)]
pub struct Settler {
    book: Mutex<Book>,
    /// Wakes the task: actions are queued.
    work: Notify,
    /// Wakes the reader: room was freed, or a writer took a batch.
    room: Notify,
}

impl Settler {
    /// A settler applying `rules`.
    pub fn new(rules: Rules) -> Arc<Self> {
        Arc::new(Settler { book: Mutex::new(Book::new(rules)), work: Notify::new(), room: Notify::new() })
    }

    /// Runs `f` on the book (briefly: never across an await) and wakes the task when it queued actions.
    pub fn with<T>(&self, f: impl FnOnce(&mut Book) -> T) -> T {
        let mut book = self.book.lock().unwrap_or_else(|e| e.into_inner());
        let before = book.actions.len();
        let out = f(&mut book);
        let queued = book.actions.len() > before;
        drop(book);
        if queued {
            self.work.notify_one();
        }
        out
    }

    /// How much more the stream may take in.
    pub fn room(&self) -> Room {
        self.with(|b| b.room())
    }

    /// Resolves when room may have been freed (a message settled) or a writer took a batch.
    pub async fn room_changed(&self) {
        self.room.notified().await
    }

    /// Tells the reader a writer took a batch from the queue.
    pub fn batch_taken(&self) {
        self.room.notify_one();
    }

    /// Performs the book's actions until `closing` is cancelled and everything held is settled. Dead letters
    /// are published concurrently (up to 32 at once); acks, NAKs and progress go out in order as they come.
    pub async fn run(
        self: Arc<Self>,
        client: async_nats::Client,
        dlq: DeadLetters,
        metrics: StreamMetrics,
        fates: Option<crate::ingest::status::Fates>,
        log: crate::config::LogConfig,
        closing: CancellationToken,
    ) {
        let (stream, every) = self.with(|b| (b.rules.stream.clone(), b.rules.progress_every()));
        let mut flood = flood::Flood::new(log.dead_letter_lines, log.dead_letter_every);
        let mut tick = tokio::time::interval((every / 2).max(Duration::from_millis(50)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut publishing: JoinSet<(Ticket, Result<(), String>)> = JoinSet::new();
        let mut blocked = false;
        let mut closed = false;
        loop {
            tokio::select! {
                // Why biased, results first: a stored dead letter is terminated before anything new is taken on.
                biased;
                Some(done) = publishing.join_next(), if !publishing.is_empty() => {
                    let Ok((ticket, result)) = done else { continue };
                    let now = Instant::now();
                    match result {
                        Ok(()) => {
                            if std::mem::take(&mut blocked) {
                                tracing::info!(stream = %stream, "dead letters are stored again");
                            }
                            self.with(|b| b.letter_stored(ticket, now));
                        }
                        Err(e) => {
                            metrics.dlq_failures.inc();
                            if !std::mem::replace(&mut blocked, true) {
                                tracing::error!(
                                    stream = %stream, error = %e,
                                    "dead letters cannot be stored; their messages are held (not terminated) and retried"
                                );
                            }
                            self.with(|b| b.letter_failed(ticket, now));
                        }
                    }
                }
                _ = closing.cancelled(), if !closed => {
                    closed = true;
                    self.with(Book::close);
                }
                _ = self.work.notified() => {}
                _ = tick.tick() => {
                    let now = Instant::now();
                    self.with(|b| b.tick(now));
                    if let Some(unsaid) = flood.tick(now.into_std()) {
                        say_unsaid(&stream, &unsaid);
                    }
                }
            }
            let (actions, held, letters) = self.with(|b| (b.take_actions(), b.held(), b.letters()));
            metrics.held.set(held as i64);
            metrics.letters_held.set(letters as i64);
            let freed =
                actions.iter().any(|a| matches!(a, Action::Ack { .. } | Action::Nak { .. } | Action::Term { .. }));
            for action in actions {
                if let Action::Publish { letter, .. } = &action {
                    let (log, unsaid) = flood.letter(Instant::now().into_std(), || {
                        format!(
                            "{} at {} sequence {}: {}",
                            letter.class, letter.subject, letter.sequence, letter.reason
                        )
                    });
                    if let Some(unsaid) = unsaid {
                        say_unsaid(&stream, &unsaid);
                    }
                    if log {
                        tracing::warn!(
                            stream = %stream, subject = %letter.subject, sequence = letter.sequence,
                            delivered = letter.delivered, class = %letter.class, reason = %letter.reason,
                            "dead-lettering a message"
                        );
                    }
                }
                perform(action, &stream, &client, &dlq, &metrics, fates.as_ref(), &mut publishing).await;
            }
            if freed {
                self.room.notify_one();
            }
            if closed && publishing.is_empty() && self.with(|b| b.is_empty()) {
                break;
            }
        }
        // The fates of ingested messages are recorded before the stream reports itself stopped.
        if let Some(fates) = fates {
            fates.wait().await;
        }
    }
}

/// The line standing for the dead letters an interval did not log one by one.
fn say_unsaid(stream: &str, unsaid: &flood::Unsaid) {
    tracing::warn!(
        stream, count = unsaid.count, interval = ?unsaid.every, first = %unsaid.first,
        "more messages dead-lettered than [log] dead_letter_lines logs one by one (see `dlq list`)"
    );
}

/// Does one action on the NATS connection. Acks, NAKs and progress are fire-and-forget publishes (a lost one
/// means a redelivery, which the writes skip); the client buffers them, so these awaits only wait when its
/// outgoing buffer is full.
async fn perform(
    action: Action,
    stream: &str,
    client: &async_nats::Client,
    dlq: &DeadLetters,
    metrics: &StreamMetrics,
    fates: Option<&crate::ingest::status::Fates>,
    publishing: &mut JoinSet<(Ticket, Result<(), String>)>,
) {
    match action {
        Action::Ack { reply, latency, persisted } => {
            if client.publish(reply, Bytes::new()).await.is_ok() {
                metrics.acked.inc();
            }
            metrics.latency.observe(latency);
            if let (Some(fates), Some((sequence, tables))) = (fates, persisted) {
                fates.persisted(sequence, tables);
            }
        }
        Action::Nak { reply, delay } => {
            let body = format!("-NAK {{\"delay\":{}}}", delay.as_nanos());
            if client.publish(reply, body.into()).await.is_ok() {
                metrics.naked.inc();
            }
        }
        Action::Progress { reply } => {
            let _ = client.publish(reply, Bytes::from_static(b"+WPI")).await;
        }
        Action::Term { reply, class, reason, ingested } => {
            // Why Term only now: the dead letter is stored; terminating earlier could lose the message.
            if client.publish(reply, Bytes::from_static(b"+TERM")).await.is_ok() {
                metrics.terminated.inc();
            }
            metrics.dead_lettered(class.as_str());
            if let (Some(fates), Some(sequence)) = (fates, ingested) {
                fates.dead_lettered(sequence, class, reason);
            }
        }
        Action::Publish { ticket, letter } => {
            let (dlq, stream) = (dlq.clone(), stream.to_owned());
            publishing.spawn(async move {
                let dl = DeadLetter {
                    stream: &stream,
                    subject: letter.subject.as_str(),
                    sequence: letter.sequence,
                    delivered: letter.delivered,
                    class: letter.class,
                    reason: &letter.reason,
                    payload: letter.payload.clone(),
                    headers: letter.headers.as_ref(),
                    origin: &letter.origin,
                    msg_id: &letter.msg_id,
                };
                (ticket, dlq.publish(&dl).await.map_err(|e| e.to_string()))
            });
        }
    }
}
