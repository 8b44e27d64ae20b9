//! Size/timeout batcher: rows of many messages, and each message's slip (its ticket with the settler) beside the
//! range of rows it produced.
//!
//! A batch is handed over when it holds `max_rows` rows or `max_bytes` bytes, or when `timeout` has passed since
//! its first message; the caller also takes whatever is open on shutdown. Pure data structure: the clock is
//! passed in.
//!
//! Uses nothing of the project.

use std::ops::Range;
use std::time::Duration;

use tokio::time::Instant;

/// Rows plus the messages they came from, in order. `msgs[i].rows` are that message's rows.
#[derive(Debug)]
pub struct Batch<R, M> {
    /// All rows of the batch.
    pub rows: Vec<R>,
    /// One entry per message (including messages that produced no rows: they are acked with the batch).
    pub msgs: Vec<Entry<M>>,
    /// When its first message arrived (how long its messages have been waiting for their ack).
    pub started: Instant,
}

/// One message of a batch.
#[derive(Debug)]
pub struct Entry<M> {
    /// The message's handle (its acker and what to log about it).
    pub msg: M,
    /// Its rows in [`Batch::rows`].
    pub rows: Range<usize>,
}

impl<R, M> Batch<R, M> {
    /// The rows of messages `msgs` (a contiguous range of message indexes).
    pub fn rows_of(&self, msgs: Range<usize>) -> &[R] {
        if msgs.is_empty() {
            return &[];
        }
        let start = self.msgs[msgs.start].rows.start;
        let end = self.msgs[msgs.end - 1].rows.end;
        &self.rows[start..end]
    }
}

/// Accumulates messages into batches.
#[derive(Debug)]
pub struct Batcher<R, M> {
    rows: Vec<R>,
    msgs: Vec<Entry<M>>,
    bytes: usize,
    max_rows: usize,
    max_bytes: usize,
    timeout: Duration,
    started: Option<Instant>,
    /// An earlier flush asked for by a message somebody waits for.
    hurry: Option<Instant>,
}

impl<R, M> Batcher<R, M> {
    /// A batcher flushing at `max_rows` rows, `max_bytes` bytes, or `timeout` after a batch's first message.
    pub fn new(max_rows: usize, max_bytes: usize, timeout: Duration) -> Self {
        let max_rows = max_rows.max(1);
        Batcher {
            rows: Vec::with_capacity(max_rows),
            msgs: Self::messages(max_rows),
            bytes: 0,
            max_rows,
            max_bytes,
            timeout,
            started: None,
            hurry: None,
        }
    }

    /// Where a decoder appends the next message's rows.
    pub fn rows_mut(&mut self) -> &mut Vec<R> {
        &mut self.rows
    }

    /// The row count so far (a decoder notes it before appending, to roll back on error).
    pub fn row_count(&self) -> usize {
        self.rows.len()
    }

    /// Records a message whose rows (of `bytes` bytes) were appended since `rows_before`. Starts the timer on a
    /// batch's first message; returns the batch if it is now full.
    pub fn push(&mut self, msg: M, rows_before: usize, bytes: usize, now: Instant) -> Option<Batch<R, M>> {
        if self.msgs.is_empty() {
            self.started = Some(now);
        }
        self.msgs.push(Entry { msg, rows: rows_before..self.rows.len() });
        self.bytes += bytes;
        if self.rows.len() >= self.max_rows || self.bytes >= self.max_bytes { self.take() } else { None }
    }

    /// When the open batch must be flushed, if one is open.
    pub fn deadline(&self) -> Option<Instant> {
        let due = self.started.map(|s| s + self.timeout)?;
        Some(self.hurry.map_or(due, |h| h.min(due)))
    }

    /// Flushes the open batch by `at` at the latest (a message in it is waited for); no open batch: nothing.
    pub fn hurry(&mut self, at: Instant) {
        if self.started.is_some() {
            self.hurry = Some(self.hurry.map_or(at, |h| h.min(at)));
        }
    }

    /// When the open batch's first message arrived.
    pub fn started(&self) -> Option<Instant> {
        self.started
    }

    /// The open batch's messages.
    pub fn entries(&self) -> &[Entry<M>] {
        &self.msgs
    }

    /// Number of messages in the open batch.
    pub fn len(&self) -> usize {
        self.msgs.len()
    }

    /// Whether no message is waiting.
    pub fn is_empty(&self) -> bool {
        self.msgs.is_empty()
    }

    /// Takes the open batch (after its deadline, or on shutdown). `None` when nothing is open.
    pub fn take(&mut self) -> Option<Batch<R, M>> {
        let started = self.started.take()?;
        self.hurry = None;
        self.bytes = 0;
        let rows = std::mem::replace(&mut self.rows, Vec::with_capacity(self.max_rows));
        let msgs = std::mem::replace(&mut self.msgs, Self::messages(self.max_rows));
        Some(Batch { rows, msgs, started })
    }

    /// Room for a full batch of one-row messages (bounded), so pushing never reallocates and copies the entries.
    fn messages(max_rows: usize) -> Vec<Entry<M>> {
        Vec::with_capacity(max_rows.min(16_384))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push_rows(b: &mut Batcher<u32, &'static str>, msg: &'static str, n: u32) -> Option<Batch<u32, &'static str>> {
        let before = b.row_count();
        b.rows_mut().extend(0..n);
        b.push(msg, before, 8 * n as usize, Instant::now())
    }

    #[tokio::test(start_paused = true)]
    async fn flushes_when_full() {
        let mut b = Batcher::new(3, usize::MAX, Duration::from_secs(1));
        assert!(push_rows(&mut b, "a", 1).is_none());
        assert!(push_rows(&mut b, "b", 1).is_none());
        let batch = push_rows(&mut b, "c", 1).expect("third row fills the batch");
        assert_eq!(batch.rows.len(), 3);
        assert_eq!(batch.msgs.iter().map(|e| e.msg).collect::<Vec<_>>(), ["a", "b", "c"]);
        assert!(b.is_empty());
        assert_eq!(b.deadline(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_with_many_rows_can_overfill() {
        let mut b = Batcher::new(3, usize::MAX, Duration::from_secs(1));
        let batch = push_rows(&mut b, "big", 5).expect("full");
        assert_eq!(batch.rows.len(), 5);
        assert_eq!(batch.msgs[0].rows, 0..5);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waited_for_message_brings_the_deadline_forward_until_the_batch_is_taken() {
        let mut b: Batcher<u32, ()> = Batcher::new(10, 1 << 20, Duration::from_secs(1));
        let start = Instant::now();
        b.hurry(start);
        assert_eq!(b.deadline(), None, "no open batch, nothing to hurry");
        b.rows_mut().push(1);
        assert!(b.push((), 0, 1, start).is_none());
        b.hurry(start + Duration::from_millis(5));
        b.hurry(start + Duration::from_millis(50));
        assert_eq!(b.deadline(), Some(start + Duration::from_millis(5)), "the earliest wins");
        b.hurry(start + Duration::from_secs(5));
        assert_eq!(b.deadline(), Some(start + Duration::from_millis(5)), "never later than asked or the timeout");
        assert!(b.take().is_some());
        b.rows_mut().push(2);
        assert!(b.push((), 0, 1, start).is_none());
        assert_eq!(b.deadline(), Some(start + Duration::from_secs(1)), "the next batch has its own timeout");
    }

    #[tokio::test(start_paused = true)]
    async fn deadline_runs_from_the_first_message() {
        let mut b = Batcher::new(100, usize::MAX, Duration::from_secs(1));
        let start = Instant::now();
        push_rows(&mut b, "a", 1);
        tokio::time::advance(Duration::from_millis(700)).await;
        push_rows(&mut b, "b", 1);
        assert_eq!(b.deadline(), Some(start + Duration::from_secs(1)), "a later message does not move the deadline");
        tokio::time::sleep_until(b.deadline().unwrap()).await;
        let batch = b.take().unwrap();
        assert_eq!(batch.msgs.len(), 2);
        assert_eq!(b.deadline(), None);
        assert!(b.take().is_none());
        // The next batch's timer starts at its own first message.
        push_rows(&mut b, "c", 1);
        assert_eq!(b.deadline(), Some(Instant::now() + Duration::from_secs(1)));
    }

    #[tokio::test(start_paused = true)]
    async fn messages_without_rows_are_kept_for_their_ack() {
        let mut b = Batcher::new(2, usize::MAX, Duration::from_secs(1));
        push_rows(&mut b, "empty", 0);
        push_rows(&mut b, "one", 1);
        let batch = push_rows(&mut b, "two", 1).unwrap();
        assert_eq!(batch.msgs.iter().map(|e| e.rows.clone()).collect::<Vec<_>>(), [0..0, 0..1, 1..2]);
        assert_eq!(batch.rows_of(0..1), &[] as &[u32]);
        assert_eq!(batch.rows_of(1..3).len(), 2);
        assert_eq!(batch.rows_of(2..2).len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn rolled_back_rows_are_not_attributed() {
        let mut b = Batcher::<u32, &str>::new(10, usize::MAX, Duration::from_secs(1));
        push_rows(&mut b, "a", 2);
        // A decoder that fails truncates back to the count it noted; no entry is pushed.
        let before = b.row_count();
        b.rows_mut().extend([9, 9]);
        b.rows_mut().truncate(before);
        push_rows(&mut b, "b", 1);
        let batch = b.take().unwrap();
        assert_eq!(batch.rows.len(), 3);
        assert_eq!(batch.msgs[1].rows, 2..3);
    }

    #[tokio::test(start_paused = true)]
    async fn flushes_at_the_byte_limit_too() {
        let mut b = Batcher::new(1000, 20, Duration::from_secs(1));
        assert!(push_rows(&mut b, "a", 2).is_none(), "16 bytes");
        let batch = push_rows(&mut b, "b", 1).expect("24 bytes is over 20");
        assert_eq!(batch.msgs.len(), 2);
        assert!(push_rows(&mut b, "c", 2).is_none(), "the count starts again");
    }
}
