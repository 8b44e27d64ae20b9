//! The writers of one stream: each takes a batch from the queue, writes it in one transaction and reports an
//! outcome for every message to the settler. A permanent error (a refused row) bisects the batch until the
//! refused messages are alone; a timeout retries the batch in smaller parts; a database failure (breaker class)
//! holds the batch and retries it once the breaker is closed, spending no delivery. Writers never ack: they tell
//! the settler what happened ([`Plan`] decides the parts, pure and property-tested).
//!
//! Uses [`crate::db`] (pool, deadlines, error classes), [`crate::breaker`], the processor's write, and the
//! settler.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::context::{Ctx, RowBatch};
use super::queue::Queue;
use super::settler::Settler;
use crate::breaker::State;
use crate::db::{ErrorClass, SharedPool, WriteError};
use crate::dlq::DlqClass;
use crate::processor::Processor;

/// A batch timed out at most this many times is split again; past it its parts are retried as they are.
const TIMEOUT_SPLITS: u8 = 2;

/// One part of a batch to write: a range of its messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// Message indexes.
    pub range: Range<usize>,
    /// How many times this part's batch has been split after a timeout.
    pub splits: u8,
}

/// What became of a part's write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Committed.
    Committed,
    /// A row was refused for good (bisect; a lone message is dead-lettered).
    Refused,
    /// The statement ran out of time (retry in halves, a bounded number of times).
    TimedOut,
    /// A transient failure (NAK with a delay, or a dead letter on the last delivery).
    Failed,
    /// The database cannot take writes (hold and retry the same part).
    Down,
}

/// What to do with a part's messages after its verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settle {
    /// Ack them.
    Commit(Range<usize>),
    /// Dead-letter this one message.
    DeadLetter(usize),
    /// NAK them (or dead-letter those out of deliveries).
    Retry(Range<usize>),
    /// Nothing yet: the part was split or will be retried.
    Pending,
}

/// The parts of one batch still to write; bisection and timeout splits push halves.
#[derive(Debug)]
pub struct Plan {
    todo: Vec<Part>,
}

impl Plan {
    /// A plan writing all `messages` of a batch at once.
    pub fn new(messages: usize) -> Self {
        Plan { todo: if messages == 0 { Vec::new() } else { vec![Part { range: 0..messages, splits: 0 }] } }
    }

    /// The next part to write.
    pub fn next_part(&mut self) -> Option<Part> {
        self.todo.pop()
    }

    /// Records `verdict` for `part` (taken from [`Plan::next`]) and says what to do with its messages.
    pub fn report(&mut self, part: Part, verdict: Verdict) -> Settle {
        match verdict {
            Verdict::Committed => Settle::Commit(part.range),
            Verdict::Refused if part.range.len() > 1 => {
                self.split(&part, part.splits);
                Settle::Pending
            }
            Verdict::Refused => Settle::DeadLetter(part.range.start),
            Verdict::TimedOut if part.range.len() > 1 && part.splits < TIMEOUT_SPLITS => {
                self.split(&part, part.splits + 1);
                Settle::Pending
            }
            Verdict::TimedOut | Verdict::Failed => Settle::Retry(part.range),
            Verdict::Down => {
                self.todo.push(part);
                Settle::Pending
            }
        }
    }

    fn split(&mut self, part: &Part, splits: u8) {
        let mid = part.range.start + part.range.len() / 2;
        self.todo.push(Part { range: mid..part.range.end, splits });
        self.todo.push(Part { range: part.range.start..mid, splits });
    }

    /// Every message not yet settled (what a writer gives back when it stops mid-batch).
    pub fn abandon(&mut self) -> impl Iterator<Item = usize> + '_ {
        self.todo.drain(..).flat_map(|p| p.range)
    }
}

impl From<ErrorClass> for Verdict {
    fn from(class: ErrorClass) -> Self {
        match class {
            ErrorClass::Permanent => Verdict::Refused,
            ErrorClass::Timeout => Verdict::TimedOut,
            ErrorClass::Retry => Verdict::Failed,
            ErrorClass::Breaker => Verdict::Down,
        }
    }
}

/// One writer of a stream.
pub(super) struct Writer<P> {
    pub(super) processor: Arc<P>,
    pub(super) pool: SharedPool,
    pub(super) ctx: Arc<Ctx>,
    pub(super) settler: Arc<Settler>,
}

impl<P: Processor> Writer<P> {
    /// Writes batches from `queue` until it is closed and empty (the reader stopped), or, once `shutdown` is
    /// cancelled, gives back what it cannot write because the database is down.
    pub(super) async fn run(self, queue: Arc<Queue<P::Row>>, shutdown: CancellationToken) {
        while let Some(batch) = queue.pop(&self.settler).await {
            self.write_batch(batch, &shutdown).await;
        }
    }

    #[tracing::instrument(skip_all, fields(stream = %self.ctx.cfg.name, batch_rows = batch.rows.len(), batch_msgs = batch.msgs.len()))]
    async fn write_batch(&self, batch: RowBatch<P>, shutdown: &CancellationToken) {
        let mut plan = Plan::new(batch.msgs.len());
        let start = std::time::SystemTime::now();
        let (mut committed, mut rejected, mut retried, mut inserted_rows) = (0usize, 0usize, 0usize, 0u64);
        let mut last_error: Option<String> = None;
        let mut backoff = Duration::from_millis(250);
        while let Some(part) = plan.next_part() {
            let entries = &batch.msgs[part.range.clone()];
            let rows = batch.rows_of(part.range.clone());
            let began = Instant::now();
            let outcome = self.commit(rows).await;
            let m = &self.ctx.metrics;
            // Only a real round trip moves the breaker: a part without rows never reached the database.
            if !rows.is_empty() {
                match &outcome {
                    Err(e) if e.class() == ErrorClass::Breaker => self.ctx.breaker.record_failure(),
                    _ => self.ctx.breaker.record_success(),
                }
            }
            let verdict = match &outcome {
                Ok(_) => Verdict::Committed,
                Err(e) => Verdict::from(e.class()),
            };
            if let Err(e) = &outcome {
                last_error = Some(e.to_string());
                m.failed_seconds.observe(began.elapsed().as_secs_f64());
                if verdict != Verdict::Refused {
                    tracing::warn!(
                        messages = part.range.len(), class = ?e.class(), sqlstate = e.sqlstate().unwrap_or(""), error = %e,
                        "batch not written"
                    );
                }
            }
            let reason = last_error.clone().unwrap_or_default();
            match plan.report(part, verdict) {
                Settle::Commit(range) => {
                    let inserted = outcome.unwrap_or(0);
                    tracing::debug!(messages = range.len(), inserted, "committed");
                    (committed, inserted_rows) = (committed + range.len(), inserted_rows + inserted);
                    m.commit_seconds.observe(began.elapsed().as_secs_f64());
                    m.committed.inc();
                    m.batch_rows.observe(rows.len() as f64);
                    m.rows_inserted.inc_by(inserted);
                    self.count_rows(rows);
                    backoff = Duration::from_millis(250);
                    let now_ns = chrono::Utc::now().timestamp_nanos_opt().map_or(0, i128::from);
                    if m.last_commit.get() == 0 {
                        tracing::info!(messages = range.len(), inserted, "first batch committed");
                    }
                    m.last_commit.set((now_ns / 1_000_000_000) as i64);
                    // Why here: the transaction holding these rows has committed; only now may they be acked.
                    self.settler.with(|book| {
                        for (i, e) in range.clone().zip(entries) {
                            let tables = e.msg.ingested.then(|| self.tables_of(&batch, i));
                            book.commit(e.msg.ticket, tables, now_ns);
                        }
                    });
                }
                Settle::DeadLetter(i) => {
                    rejected += 1;
                    m.rejected.inc();
                    let ticket = batch.msgs[i].msg.ticket;
                    self.settler.with(|b| b.dead_letter(ticket, DlqClass::Rejected, reason, Instant::now()));
                }
                Settle::Retry(range) => {
                    retried += range.len();
                    m.retried.inc();
                    let now = Instant::now();
                    self.settler.with(|book| {
                        for e in &batch.msgs[range] {
                            book.retry(e.msg.ticket, &reason, now);
                        }
                    });
                }
                Settle::Pending if verdict == Verdict::Down => {
                    // The database's failure: wait for it (the settler keeps the messages alive), never NAK.
                    if !self.wait_for_database(&mut backoff, shutdown).await {
                        let abandoned: Vec<usize> = plan.abandon().collect();
                        tracing::info!(
                            messages = abandoned.len(),
                            "stopping while the database is down; messages go back to JetStream"
                        );
                        self.settler.with(|book| {
                            for i in abandoned {
                                book.release(batch.msgs[i].msg.ticket);
                            }
                        });
                    }
                }
                Settle::Pending => {}
            }
        }
        if self.ctx.tracer.is_on() {
            let cfg = &self.ctx.cfg;
            let span = crate::traces::BatchSpan {
                stream: &cfg.name,
                processor: P::NAME,
                jetstream: &cfg.jetstream,
                consumer: &cfg.consumer,
                table: &P::TABLES.join(","),
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
            self.ctx.tracer.record(&span, batch.msgs.iter().filter_map(|e| e.msg.link.as_deref()));
        }
    }

    /// Waits until the breaker is closed and a backoff has passed; false when the daemon is stopping meanwhile.
    async fn wait_for_database(&self, backoff: &mut Duration, shutdown: &CancellationToken) -> bool {
        let mut state = self.ctx.breaker.watch();
        let delay = *backoff;
        *backoff = (*backoff * 2).min(Duration::from_secs(5));
        // Why select: shutdown must not wait for a database that may never come back.
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return false,
            _ = tokio::time::sleep(delay) => {}
        }
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => false,
            closed = state.wait_for(|s| *s == State::Closed) => closed.is_ok(),
        }
    }

    fn count_rows(&self, rows: &[P::Row]) {
        let m = &self.ctx.metrics;
        if P::TABLES.len() == 1 {
            m.rows_committed(0, rows.len() as u64);
        } else {
            for row in rows {
                m.rows_committed(P::table_of(row), 1);
            }
        }
    }

    /// The tables message `i`'s rows went to, comma-separated (for an ingested message's fate).
    fn tables_of(&self, batch: &RowBatch<P>, i: usize) -> String {
        let tables = P::TABLES;
        let mut written: Vec<&str> = batch.rows_of(i..i + 1).iter().map(|r| tables[P::table_of(r)]).collect();
        written.dedup();
        written.join(",")
    }

    /// Writes rows in one transaction within the write deadline; past it the connection is dropped (it may be
    /// half-open: a stuck proxy, a dead peer) and the write fails as the database's fault. A write slower than
    /// `stall_warning` logs once what PostgreSQL says it waits on.
    async fn commit(&self, rows: &[P::Row]) -> Result<u64, WriteError> {
        if rows.is_empty() {
            return Ok(0);
        }
        let db = &self.ctx.database;
        // Why a turn first: a hot stream's writers must not queue ahead of a quiet stream's for the shared pool.
        // Bounded like the pool's own wait: turns stuck behind hung connections are a pool timeout (breaker class).
        let Ok(_turn) = tokio::time::timeout(db.connect_timeout, self.pool.turn(&self.ctx.cfg.name)).await else {
            return Err(WriteError::Pool(deadpool_postgres::PoolError::Timeout(deadpool_postgres::TimeoutType::Wait)));
        };
        let pool = self.pool.current();
        let mut client = pool.get().await?;
        let deadline = crate::db::write_deadline(db);
        let result = {
            let write = async {
                let tx = client.transaction().await?;
                let inserted = self.processor.write(&tx, rows).await?;
                tx.commit().await?;
                Ok::<u64, WriteError>(inserted)
            };
            tokio::pin!(write);
            let stall = tokio::time::sleep(db.stall_warning);
            tokio::pin!(stall);
            let mut warned = false;
            let until = Instant::now() + deadline;
            loop {
                // Why select: the write must end by its deadline, and a slow one says why it is slow once.
                tokio::select! {
                    result = &mut write => break Some(result),
                    _ = &mut stall, if !warned => {
                        warned = true;
                        tokio::spawn(crate::db::report_stall(
                            pool.clone(),
                            self.ctx.cfg.name.clone(),
                            rows.len(),
                            db.stall_warning,
                        ));
                    }
                    _ = tokio::time::sleep_until(until) => break None,
                }
            }
        };
        match result {
            Some(Ok(inserted)) => Ok(inserted),
            Some(Err(e)) => {
                // A connection that failed as the database's fault (closed, read-only, shutting down) is not
                // given back to the pool for the next batch.
                if e.class() == ErrorClass::Breaker {
                    drop(deadpool_postgres::Object::take(client));
                }
                Err(e)
            }
            None => {
                drop(deadpool_postgres::Object::take(client));
                Err(WriteError::Deadline(deadline))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn verdict() -> impl Strategy<Value = Verdict> {
        prop_oneof![
            Just(Verdict::Committed),
            Just(Verdict::Refused),
            Just(Verdict::TimedOut),
            Just(Verdict::Failed),
            Just(Verdict::Down),
        ]
    }

    proptest! {
        /// Whatever the database answers, every message of a batch ends settled exactly once (committed, dead-
        /// lettered or retried), and the plan ends.
        #[test]
        fn every_message_gets_exactly_one_outcome(messages in 0usize..40, verdicts in prop::collection::vec(verdict(), 0..400)) {
            let mut plan = Plan::new(messages);
            let mut outcomes = vec![0u32; messages];
            let mut verdicts = verdicts.into_iter();
            let mut downs = 0;
            while let Some(part) = plan.next_part() {
                prop_assert!(!part.range.is_empty() && part.range.end <= messages);
                // The database comes back eventually; once the scripted answers run out, everything commits.
                let mut v = verdicts.next().unwrap_or(Verdict::Committed);
                if v == Verdict::Down {
                    downs += 1;
                    if downs > 50 { v = Verdict::Committed; }
                }
                match plan.report(part, v) {
                    Settle::Commit(r) | Settle::Retry(r) => for i in r { outcomes[i] += 1 },
                    Settle::DeadLetter(i) => outcomes[i] += 1,
                    Settle::Pending => {}
                }
            }
            prop_assert!(outcomes.iter().all(|n| *n == 1), "{outcomes:?}");
        }

        /// Abandoning mid-way hands back exactly the messages not yet settled.
        #[test]
        fn abandoning_gives_back_exactly_the_unsettled(messages in 1usize..40, verdicts in prop::collection::vec(verdict(), 0..20)) {
            let mut plan = Plan::new(messages);
            let mut settled = vec![false; messages];
            for v in verdicts {
                let Some(part) = plan.next_part() else { break };
                match plan.report(part, v) {
                    Settle::Commit(r) | Settle::Retry(r) => for i in r { settled[i] = true },
                    Settle::DeadLetter(i) => settled[i] = true,
                    Settle::Pending => {}
                }
            }
            let mut back: Vec<usize> = plan.abandon().collect();
            back.sort();
            let unsettled: Vec<usize> = (0..messages).filter(|i| !settled[*i]).collect();
            prop_assert_eq!(back, unsettled);
        }
    }

    #[test]
    fn one_refused_row_in_a_thousand_costs_about_twenty_writes() {
        let mut plan = Plan::new(1000);
        let mut writes = 0;
        let mut dead = Vec::new();
        while let Some(part) = plan.next_part() {
            writes += 1;
            let v = if part.range.contains(&500) { Verdict::Refused } else { Verdict::Committed };
            if let Settle::DeadLetter(i) = plan.report(part, v) {
                dead.push(i);
            }
        }
        assert_eq!(dead, [500]);
        assert!(writes <= 21, "{writes}");
    }

    #[test]
    fn timeouts_split_a_bounded_number_of_times_then_retry() {
        let mut plan = Plan::new(8);
        let mut retried = Vec::new();
        let mut writes = 0;
        while let Some(part) = plan.next_part() {
            writes += 1;
            if let Settle::Retry(r) = plan.report(part, Verdict::TimedOut) {
                retried.push(r);
            }
        }
        // 8 → 4 + 4 → 2 + 2 + 2 + 2, each retried: 1 + 2 + 4 writes.
        assert_eq!(writes, 7);
        assert_eq!(retried, [0..2, 2..4, 4..6, 6..8]);
    }
}
