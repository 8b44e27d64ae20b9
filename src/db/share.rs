//! Fair shares of the one pool between streams: a writer takes a [`Turn`] before it takes a connection. While
//! connections are free anyone takes one; when none is, the next one freed goes to the waiting stream that holds
//! the fewest (the earliest waiter among equals), so a quiet stream's writer waits for at most one transaction of
//! a hot stream, never behind its queue. A stream never holds more than its `writers` (each writer holds one
//! connection at a time). One connection of the pool stays outside the turns (when it has more than one), for the
//! breaker's probe, the ledger's pruning and the health checks.
//!
//! Pure bookkeeping under a mutex (no I/O); property-tested.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// The turns of one pool.
#[derive(Debug)]
pub struct Shares {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    free: usize,
    held: HashMap<String, usize>,
    waiting: VecDeque<(String, oneshot::Sender<()>)>,
}

/// One connection's worth of the pool, for one stream; given back when dropped.
#[derive(Debug)]
pub struct Turn {
    shares: Arc<Shares>,
    stream: String,
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.shares.release(&self.stream);
    }
}

/// A turn being waited for: if the wait is abandoned after the turn was granted, the turn is given back.
struct Waiting {
    rx: oneshot::Receiver<()>,
    shares: Arc<Shares>,
    stream: String,
    granted: bool,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if !self.granted {
            self.rx.close();
            if self.rx.try_recv().is_ok() {
                self.shares.release(&self.stream);
            }
        }
    }
}

impl Shares {
    /// Turns for a pool of `pool_size` connections (one kept out of the turns when there are several).
    pub fn new(pool_size: usize) -> Arc<Self> {
        let free = if pool_size > 1 { pool_size - 1 } else { 1 };
        Arc::new(Shares { state: Mutex::new(State { free, held: HashMap::new(), waiting: VecDeque::new() }) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for a turn of `stream`.
    pub async fn turn(self: &Arc<Self>, stream: &str) -> Turn {
        let rx = {
            let mut s = self.lock();
            if s.free > 0 {
                s.free -= 1;
                *s.held.entry(stream.to_owned()).or_default() += 1;
                return Turn { shares: Arc::clone(self), stream: stream.to_owned() };
            }
            let (tx, rx) = oneshot::channel();
            s.waiting.push_back((stream.to_owned(), tx));
            rx
        };
        let mut waiting = Waiting { rx, shares: Arc::clone(self), stream: stream.to_owned(), granted: false };
        // The sender is only dropped unsent by `release` skipping a closed receiver, which this one is not.
        let _ = (&mut waiting.rx).await;
        waiting.granted = true;
        Turn { shares: Arc::clone(self), stream: stream.to_owned() }
    }

    fn release(&self, stream: &str) {
        let mut s = self.lock();
        if let Some(h) = s.held.get_mut(stream) {
            *h = h.saturating_sub(1);
        }
        s.free += 1;
        s.hand_out();
    }

    /// Connections held by `stream` now (for tests and status).
    pub fn held(&self, stream: &str) -> usize {
        self.lock().held.get(stream).copied().unwrap_or(0)
    }
}

impl State {
    /// Gives free turns to waiters: each to the waiting stream holding the fewest, the earliest among equals.
    fn hand_out(&mut self) {
        while self.free > 0 && !self.waiting.is_empty() {
            self.waiting.retain(|(_, tx)| !tx.is_closed());
            let held = &self.held;
            let Some(at) =
                (0..self.waiting.len()).min_by_key(|&i| (held.get(&self.waiting[i].0).copied().unwrap_or(0), i))
            else {
                return;
            };
            let Some((stream, tx)) = self.waiting.remove(at) else { return };
            if tx.send(()).is_ok() {
                self.free -= 1;
                *self.held.entry(stream).or_default() += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[tokio::test]
    async fn a_quiet_stream_gets_the_next_connection_ahead_of_a_hot_streams_queue() {
        let shares = Shares::new(3); // two turns
        let a1 = shares.turn("hot").await;
        let a2 = shares.turn("hot").await;
        // The hot stream queues two more writers, then the quiet one arrives.
        let s = Arc::clone(&shares);
        let hot3 = tokio::spawn(async move { s.turn("hot").await });
        let s = Arc::clone(&shares);
        let hot4 = tokio::spawn(async move { s.turn("hot").await });
        tokio::task::yield_now().await;
        while shares.lock().waiting.len() < 2 {
            tokio::task::yield_now().await;
        }
        let s = Arc::clone(&shares);
        let quiet = tokio::spawn(async move { s.turn("quiet").await });
        while shares.lock().waiting.len() < 3 {
            tokio::task::yield_now().await;
        }
        drop(a1);
        let q = quiet.await.unwrap();
        assert_eq!((shares.held("quiet"), shares.held("hot")), (1, 1), "the quiet stream went first");
        drop(q);
        drop(a2);
        let (h3, h4) = (hot3.await.unwrap(), hot4.await.unwrap());
        assert_eq!(shares.held("hot"), 2);
        drop((h3, h4));
        assert_eq!(shares.lock().free, 2);
    }

    #[tokio::test]
    async fn an_abandoned_wait_gives_its_turn_back() {
        let shares = Shares::new(2); // one turn
        let first = shares.turn("a").await;
        let s = Arc::clone(&shares);
        let abandoned = tokio::spawn(async move { s.turn("b").await });
        while shares.lock().waiting.is_empty() {
            tokio::task::yield_now().await;
        }
        abandoned.abort();
        let _ = abandoned.await;
        drop(first);
        let _again = tokio::time::timeout(std::time::Duration::from_secs(1), shares.turn("c")).await.unwrap();
        assert_eq!(shares.lock().free, 0);
    }

    proptest! {
        /// Any order of takes and releases by any streams: the turns in use plus the free ones are always the
        /// total, and nobody waits while a turn is free.
        #[test]
        fn turns_are_conserved(ops in proptest::collection::vec((0usize..3, any::<bool>()), 1..60)) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let shares = Shares::new(3);
                let names = ["a", "b", "c"];
                let mut held: Vec<Turn> = Vec::new();
                let mut pending = Vec::new();
                for (who, take) in ops {
                    if take {
                        let s = Arc::clone(&shares);
                        pending.push(tokio::spawn(async move { s.turn(names[who]).await }));
                    } else if !held.is_empty() {
                        held.remove(who % held.len());
                    }
                    tokio::task::yield_now().await;
                    let mut still = Vec::new();
                    for p in pending.drain(..) {
                        if p.is_finished() { held.push(p.await.unwrap()) } else { still.push(p) }
                    }
                    pending = still;
                    let s = shares.lock();
                    let in_use: usize = s.held.values().sum();
                    assert_eq!(in_use + s.free, 2);
                    assert!(s.free == 0 || s.waiting.is_empty());
                }
            });
        }
    }
}
