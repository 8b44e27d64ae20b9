//! Full batches waiting for a writer: pushed by the reader, taken by whichever writer is free. Unbounded in
//! itself: the reader checks its length (and the settler's room) before every pull.
//!
//! Uses the batch and the settler (told when a batch is taken, so the reader may pull again).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

use super::batch::Batch;
use super::context::Slip;
use super::settler::Settler;

/// Full batches waiting for a writer.
pub(crate) struct Queue<R> {
    batches: std::sync::Mutex<VecDeque<Batch<R, Slip>>>,
    ready: Notify,
    closed: AtomicBool,
}

impl<R> Queue<R> {
    pub(super) fn new() -> Self {
        Queue { batches: std::sync::Mutex::new(VecDeque::new()), ready: Notify::new(), closed: AtomicBool::new(false) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Batch<R, Slip>>> {
        self.batches.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a full batch for the next free writer.
    pub(super) fn push(&self, batch: Batch<R, Slip>) {
        self.lock().push_back(batch);
        self.ready.notify_one();
    }

    /// Batches waiting.
    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }

    /// No more batches will come: writers finish what is queued and stop.
    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.ready.notify_waiters();
    }

    /// The next batch, or `None` once the queue is closed and empty. Tells the settler (and so the reader) that
    /// a batch was taken: the queue has room again.
    pub(super) async fn pop(&self, settler: &Settler) -> Option<Batch<R, Slip>> {
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
