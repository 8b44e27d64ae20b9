//! The settler's bookkeeping, pure: every held message by [`Ticket`], where it is ([`Stage`]: in the pipeline,
//! or its dead letter being published), and the rules ([`Rules`]) that decide its end. Calls queue
//! [`Action`]s for the settler's task to perform; no I/O, the clock passed in, so it is property-tested.
//!
//! Uses the DLQ's classes and origins only.

use std::sync::Arc;
use std::time::Duration;

use async_nats::{HeaderMap, Subject};
use bytes::Bytes;
use tokio::time::Instant;

use crate::dlq::{DlqClass, Origin};

/// A held message's handle: what the reader puts in a batch and the writers report outcomes with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ticket {
    index: u32,
    generation: u32,
}

/// A message as it arrives, for the settler to hold.
#[derive(Debug, Clone)]
pub struct Arrival {
    /// Where JetStream takes acks for this delivery.
    pub reply: Subject,
    /// Its subject.
    pub subject: Subject,
    /// Its payload (kept for a dead letter).
    pub payload: Bytes,
    /// Its headers (kept for a dead letter).
    pub headers: Option<HeaderMap>,
    /// Its stream sequence.
    pub sequence: u64,
    /// How many times JetStream has delivered it.
    pub delivered: i64,
    /// When JetStream stored it, ns since the epoch.
    pub published_ns: i128,
    /// The original's identity when this message is a replay of a dead letter.
    pub replay_of: Option<Box<Origin>>,
    /// It came through the HTTP ingest front (its fate is recorded for `GET /v1/events/{id}`).
    pub ingested: bool,
}

/// The rules a stream's settler applies.
#[derive(Debug, Clone)]
pub struct Rules {
    /// The pipeline (`[[stream]]`) name: the dead-letter subject and the metrics' label.
    pub stream: String,
    /// The stream's identity in its current incarnation (see [`crate::ledger::identity`]).
    pub identity: Arc<str>,
    /// JetStream's ack wait: in-progress acks go out every half of it.
    pub ack_wait: Duration,
    /// Deliveries a message may have before it is dead-lettered; -1: unlimited.
    pub max_deliver: i64,
    /// First NAK delay (doubles per delivery).
    pub nak_delay: Duration,
    /// Cap on the NAK delay.
    pub nak_delay_max: Duration,
    /// Most messages held at once.
    pub max_messages: usize,
    /// Most bytes held at once.
    pub max_bytes: usize,
}

impl Rules {
    /// `nak_delay × 2^(delivered−1)`, capped.
    pub fn nak_delay_for(&self, delivered: i64) -> Duration {
        let doublings = delivered.saturating_sub(1).clamp(0, 20) as u32;
        self.nak_delay.saturating_mul(1u32 << doublings).min(self.nak_delay_max)
    }

    pub(super) fn progress_every(&self) -> Duration {
        (self.ack_wait / 2).max(Duration::from_millis(100))
    }
}

/// What the settler's task does next, in order.
#[derive(Debug)]
pub enum Action {
    /// The message's rows are committed: ack it.
    Ack {
        /// Its reply subject.
        reply: Subject,
        /// Publish → commit, seconds.
        latency: f64,
        /// For an ingested message: its sequence and the tables its rows went to.
        persisted: Option<(u64, String)>,
    },
    /// Offer it again after `delay`.
    Nak {
        /// Its reply subject.
        reply: Subject,
        /// The delay.
        delay: Duration,
    },
    /// Still being worked on: reset its ack wait.
    Progress {
        /// Its reply subject.
        reply: Subject,
    },
    /// Store its dead letter; report back with [`Book::letter_stored`] or [`Book::letter_failed`].
    Publish {
        /// Which message.
        ticket: Ticket,
        /// What to publish.
        letter: Box<Letter>,
    },
    /// Its dead letter is stored: JetStream may forget it.
    Term {
        /// Its reply subject.
        reply: Subject,
        /// Why it was dead-lettered.
        class: DlqClass,
        /// The reason.
        reason: String,
        /// For an ingested message: its sequence.
        ingested: Option<u64>,
    },
}

/// A dead letter to publish (owned: it is published from another task).
#[derive(Debug, Clone)]
pub struct Letter {
    /// Why.
    pub class: DlqClass,
    /// The reason.
    pub reason: String,
    /// The original subject.
    pub subject: Subject,
    /// The original payload.
    pub payload: Bytes,
    /// The original headers.
    pub headers: Option<HeaderMap>,
    /// Its stream sequence.
    pub sequence: u64,
    /// Its delivery count.
    pub delivered: i64,
    /// The identity its rows would have had.
    pub origin: Origin,
    /// `<identity>:<sequence>`: the letter's own `Nats-Msg-Id`.
    pub msg_id: String,
}

/// Where a held message is.
#[derive(Debug)]
enum Stage {
    /// Decoded into a batch, queued, being written, or waiting for the database.
    Pipeline,
    /// Its dead letter is being published (`in_flight`) or waits to be retried at `next_try`.
    Lettering { class: DlqClass, reason: String, attempts: u32, next_try: Instant, in_flight: bool },
}

#[derive(Debug)]
struct Held {
    arrival: Arrival,
    bytes: usize,
    touched: Instant,
    stage: Stage,
}

#[derive(Debug, Default)]
struct Slot {
    generation: u32,
    held: Option<Held>,
}

/// How much more the stream may take in: what the reader asks JetStream for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Room {
    /// Messages.
    pub messages: usize,
    /// Bytes.
    pub bytes: usize,
}

/// The bookkeeping of every held message. Pure: no I/O, the clock passed in, actions queued for the caller.
#[derive(Debug)]
pub struct Book {
    pub(super) rules: Rules,
    slots: Vec<Slot>,
    free: Vec<u32>,
    held: usize,
    bytes: usize,
    letters: usize,
    in_flight: usize,
    pub(super) actions: Vec<Action>,
    closed: bool,
}

/// Dead letters published at once: a slow DLQ must not pile up tasks.
const LETTERS_IN_FLIGHT: usize = 32;

impl Book {
    /// An empty book.
    pub fn new(rules: Rules) -> Self {
        Book {
            rules,
            slots: Vec::new(),
            free: Vec::new(),
            held: 0,
            bytes: 0,
            letters: 0,
            in_flight: 0,
            actions: Vec::new(),
            closed: false,
        }
    }

    /// Messages held.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Messages held whose dead letter is not stored yet.
    pub fn letters(&self) -> usize {
        self.letters
    }

    /// How much more may be taken in.
    pub fn room(&self) -> Room {
        Room {
            messages: self.rules.max_messages.saturating_sub(self.held),
            bytes: self.rules.max_bytes.saturating_sub(self.bytes),
        }
    }

    /// The actions queued since the last call.
    pub fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    /// Holds a message that went into a batch; `bytes` is what it costs (payload and rows).
    pub fn hold(&mut self, arrival: Arrival, bytes: usize, now: Instant) -> Ticket {
        self.insert(Held { arrival, bytes, touched: now, stage: Stage::Pipeline })
    }

    /// Holds a message that will never be written (undecodable, over a limit, out of deliveries): its dead
    /// letter is published at once.
    pub fn hold_letter(&mut self, arrival: Arrival, class: DlqClass, reason: String, now: Instant) -> Ticket {
        let bytes = arrival.payload.len();
        let ticket = self.insert(Held { arrival, bytes, touched: now, stage: Stage::Pipeline });
        self.dead_letter(ticket, class, reason, now);
        ticket
    }

    fn insert(&mut self, held: Held) -> Ticket {
        self.held += 1;
        self.bytes += held.bytes;
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot::default());
                (self.slots.len() - 1) as u32
            }
        };
        let slot = &mut self.slots[index as usize];
        slot.held = Some(held);
        Ticket { index, generation: slot.generation }
    }

    fn get(&mut self, t: Ticket) -> Option<&mut Held> {
        let slot = self.slots.get_mut(t.index as usize)?;
        if slot.generation != t.generation {
            return None;
        }
        slot.held.as_mut()
    }

    fn remove(&mut self, t: Ticket) -> Option<Held> {
        let slot = self.slots.get_mut(t.index as usize)?;
        if slot.generation != t.generation {
            return None;
        }
        let held = slot.held.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(t.index);
        self.held -= 1;
        self.bytes -= held.bytes;
        if let Stage::Lettering { in_flight, .. } = held.stage {
            self.letters -= 1;
            self.in_flight -= usize::from(in_flight);
        }
        Some(held)
    }

    /// Removes a message that is in the pipeline; a ticket that is not (settled already, or dead-lettering) is a
    /// bug in the caller, reported and ignored rather than settled twice.
    fn take_from_pipeline(&mut self, t: Ticket, what: &str) -> Option<Held> {
        match self.get(t).map(|h| matches!(h.stage, Stage::Pipeline)) {
            Some(true) => self.remove(t),
            Some(false) => {
                tracing::error!(what, "BUG: a message being dead-lettered was reported again; ignored");
                None
            }
            None => {
                tracing::error!(what, "BUG: a settled message was reported again; ignored");
                None
            }
        }
    }

    /// The message's rows are committed (`now_ns`: the commit time): ack it. `tables` are where its rows went,
    /// recorded for a message posted through the HTTP ingest front.
    pub fn commit(&mut self, t: Ticket, tables: Option<String>, now_ns: i128) {
        let Some(held) = self.take_from_pipeline(t, "commit") else { return };
        let latency = (now_ns - held.arrival.published_ns).max(0) as f64 / 1e9;
        let persisted = if held.arrival.ingested { tables.map(|t| (held.arrival.sequence, t)) } else { None };
        self.actions.push(Action::Ack { reply: held.arrival.reply, latency, persisted });
    }

    /// The database refused the message's rows, or it cannot be written at all: publish its dead letter.
    pub fn dead_letter(&mut self, t: Ticket, class: DlqClass, reason: String, now: Instant) {
        let Some(held) = self.get(t) else {
            tracing::error!("BUG: a settled message was dead-lettered; ignored");
            return;
        };
        if !matches!(held.stage, Stage::Pipeline) {
            tracing::error!("BUG: a message was dead-lettered twice; ignored");
            return;
        }
        held.stage = Stage::Lettering { class, reason, attempts: 0, next_try: now, in_flight: false };
        self.letters += 1;
        self.publish_due(now);
    }

    /// A transient failure: NAK with the delay its delivery count earns, or dead-letter it when this was its
    /// last allowed delivery (JetStream would offer it again; a message never runs out of deliveries unseen).
    pub fn retry(&mut self, t: Ticket, reason: &str, now: Instant) {
        let Some(delivered) = self.get(t).map(|h| h.arrival.delivered) else {
            tracing::error!("BUG: a settled message was retried; ignored");
            return;
        };
        let max = self.rules.max_deliver;
        if max > 0 && delivered >= max {
            let reason = format!("failed on its last allowed delivery ({delivered} of max_deliver {max}): {reason}");
            self.dead_letter(t, DlqClass::MaxDeliver, reason, now);
        } else if let Some(held) = self.take_from_pipeline(t, "retry") {
            let delay = self.rules.nak_delay_for(delivered);
            self.actions.push(Action::Nak { reply: held.arrival.reply, delay });
        }
    }

    /// Gives a message back to JetStream without a verdict (shutdown while it waited for the database).
    pub fn release(&mut self, t: Ticket) {
        if let Some(held) = self.take_from_pipeline(t, "release") {
            let delay = self.rules.nak_delay_for(held.arrival.delivered);
            self.actions.push(Action::Nak { reply: held.arrival.reply, delay });
        }
    }

    /// Queues the dead letters whose time has come, up to [`LETTERS_IN_FLIGHT`] being published at once.
    fn publish_due(&mut self, now: Instant) {
        let identity = self.rules.identity.clone();
        for (index, slot) in self.slots.iter_mut().enumerate() {
            if self.in_flight >= LETTERS_IN_FLIGHT {
                return;
            }
            let Some(held) = slot.held.as_mut() else { continue };
            let Stage::Lettering { class, reason, next_try, in_flight, .. } = &mut held.stage else { continue };
            if *in_flight || *next_try > now {
                continue;
            }
            *in_flight = true;
            self.in_flight += 1;
            let a = &held.arrival;
            let origin = match &a.replay_of {
                Some(o) => (**o).clone(),
                None => Origin { stream: identity.to_string(), sequence: a.sequence, published_ns: a.published_ns },
            };
            let letter = Letter {
                class: *class,
                reason: reason.clone(),
                subject: a.subject.clone(),
                payload: a.payload.clone(),
                headers: a.headers.clone(),
                sequence: a.sequence,
                delivered: a.delivered,
                origin,
                msg_id: format!("{identity}:{}", a.sequence),
            };
            let ticket = Ticket { index: index as u32, generation: slot.generation };
            self.actions.push(Action::Publish { ticket, letter: Box::new(letter) });
        }
    }

    /// The dead letter is stored: terminate the original.
    pub fn letter_stored(&mut self, t: Ticket, now: Instant) {
        let Some(held) = self.remove(t) else {
            tracing::error!("BUG: a dead letter was stored for a settled message");
            return;
        };
        if let Stage::Lettering { class, reason, .. } = held.stage {
            let ingested = held.arrival.ingested.then_some(held.arrival.sequence);
            self.actions.push(Action::Term { reply: held.arrival.reply, class, reason, ingested });
        }
        if !self.closed {
            self.publish_due(now);
        }
    }

    /// The dead letter could not be stored: keep the message and try again after a backoff (1 s doubling to
    /// 30 s). After [`Book::close`], the message is NAKed instead (another instance, or the next start, tries).
    pub fn letter_failed(&mut self, t: Ticket, now: Instant) {
        if self.closed {
            if let Some(held) = self.remove(t) {
                let delay = self.rules.nak_delay_for(held.arrival.delivered);
                self.actions.push(Action::Nak { reply: held.arrival.reply, delay });
            }
            return;
        }
        let Some(held) = self.get(t) else { return };
        if let Stage::Lettering { attempts, next_try, in_flight, .. } = &mut held.stage {
            *attempts += 1;
            let was = std::mem::replace(in_flight, false);
            let backoff =
                Duration::from_secs(1).saturating_mul(1 << (*attempts - 1).min(5)).min(Duration::from_secs(30));
            *next_try = now + backoff;
            self.in_flight -= usize::from(was);
        }
        // Room for another in flight.
        self.publish_due(now);
    }

    /// Every half ack_wait: in-progress acks for what has been held that long, and dead letters due again.
    pub fn tick(&mut self, now: Instant) {
        let every = self.rules.progress_every();
        for slot in &mut self.slots {
            let Some(held) = slot.held.as_mut() else { continue };
            if now.duration_since(held.touched) >= every {
                held.touched = now;
                self.actions.push(Action::Progress { reply: held.arrival.reply.clone() });
            }
        }
        if !self.closed {
            self.publish_due(now);
        }
    }

    /// The stream is stopping and nothing more will be reported: every message still in the pipeline, and every
    /// dead letter not being published right now, goes back to JetStream (NAK) for a later delivery.
    pub fn close(&mut self) {
        self.closed = true;
        let tickets: Vec<Ticket> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(index, slot)| {
                let held = slot.held.as_ref()?;
                let busy = matches!(held.stage, Stage::Lettering { in_flight: true, .. });
                (!busy).then_some(Ticket { index: index as u32, generation: slot.generation })
            })
            .collect();
        for t in tickets {
            if let Some(held) = self.remove(t) {
                let delay = self.rules.nak_delay_for(held.arrival.delivered);
                self.actions.push(Action::Nak { reply: held.arrival.reply, delay });
            }
        }
    }

    /// Nothing held any more.
    pub fn is_empty(&self) -> bool {
        self.held == 0
    }
}
