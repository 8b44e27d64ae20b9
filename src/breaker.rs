//! One circuit breaker per database: Closed → (N consecutive connection-class failures) → Open → (cool-down) →
//! HalfOpen: one probe query decides → Closed or Open again. While it is not Closed no stream fetches, so messages
//! wait in JetStream (and memory stays flat) instead of failing one batch after another. An outage is logged when it
//! starts and when it ends (with its length), with a reminder every [`REMIND_EVERY`] between, not at every probe.
//!
//! Uses the `[breaker]` settings and the pool (its probe).

use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::BreakerConfig;

/// Breaker state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Writes flow.
    Closed,
    /// The database is considered down; nothing is fetched.
    Open,
    /// One probe is deciding.
    HalfOpen,
}

/// The breaker shared by every stream.
#[derive(Debug)]
pub struct Breaker {
    consecutive: Mutex<u32>,
    state: watch::Sender<State>,
    config: BreakerConfig,
    /// When the breaker opened from Closed, and when the outage was last mentioned in the log.
    outage: Mutex<Option<(Instant, Instant)>>,
}

/// How often a continuing outage is mentioned again.
pub const REMIND_EVERY: Duration = Duration::from_secs(300);

impl State {
    /// The gauge's value: 0 closed, 1 open, 2 half-open.
    pub const fn code(self) -> i64 {
        match self {
            State::Closed => 0,
            State::Open => 1,
            State::HalfOpen => 2,
        }
    }

    /// `closed`, `open` or `half-open`.
    pub const fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half-open",
        }
    }
}

impl Breaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Self {
        Breaker {
            consecutive: Mutex::new(0),
            state: watch::Sender::new(State::Closed),
            config,
            outage: Mutex::new(None),
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        *self.state.borrow()
    }

    /// A receiver that sees every transition.
    pub fn watch(&self) -> watch::Receiver<State> {
        self.state.subscribe()
    }

    /// A write reached the database (committed, or refused by it): it is up.
    pub fn record_success(&self) {
        *self.consecutive.lock().unwrap_or_else(|e| e.into_inner()) = 0;
        if self.state() != State::Closed {
            self.set(State::Closed, "a write reached the database");
        }
    }

    /// A write failed because the database could not be reached.
    pub fn record_failure(&self) {
        let n = {
            let mut n = self.consecutive.lock().unwrap_or_else(|e| e.into_inner());
            *n += 1;
            *n
        };
        if n >= self.config.failures && self.state() == State::Closed {
            self.set(State::Open, "consecutive connection failures");
        }
    }

    fn set(&self, to: State, why: &str) {
        let from = self.state.send_replace(to);
        if from == to {
            return;
        }
        let mut outage = self.outage.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match (to, *outage) {
            (State::Open, None) => {
                *outage = Some((now, now));
                tracing::error!(why, cooldown = ?self.config.cooldown, "database outage: circuit breaker opened, fetching stops until a probe succeeds");
            }
            (State::Open, Some((since, said))) if now.duration_since(said) >= REMIND_EVERY => {
                *outage = Some((since, now));
                tracing::warn!(down_for = ?since.elapsed(), "database still unreachable; fetching stays stopped");
            }
            (State::Closed, Some((since, _))) => {
                *outage = None;
                tracing::info!(why, down_for = ?since.elapsed(), "database back: circuit breaker closed, fetching resumes");
            }
            _ => tracing::debug!(?from, ?to, why, "circuit breaker"),
        }
    }

    /// While the breaker is open: wait the cool-down, go half-open, run `probe` once; close on success,
    /// reopen on failure. Runs until `shutdown`.
    pub async fn run_prober<P, F>(&self, probe: P, shutdown: CancellationToken)
    where
        P: Fn() -> F,
        F: Future<Output = bool>,
    {
        let mut states = self.watch();
        loop {
            // Why select: the prober must not keep the daemon from stopping.
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                changed = states.wait_for(|s| *s == State::Open) => if changed.is_err() { return },
            }
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(self.config.cooldown) => {}
            }
            self.set(State::HalfOpen, "cool-down over");
            if probe().await {
                *self.consecutive.lock().unwrap_or_else(|e| e.into_inner()) = 0;
                self.set(State::Closed, "probe succeeded");
            } else {
                self.set(State::Open, "probe failed");
            }
        }
    }
}

/// The probe: one connection from the pool answers `SELECT 1` within `limit`.
pub async fn probe_database(pool: deadpool_postgres::Pool, limit: Duration) -> bool {
    crate::db::answers(&pool, limit).await == crate::db::Answer::Ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

    fn breaker() -> Arc<Breaker> {
        Arc::new(Breaker::new(BreakerConfig { failures: 3, cooldown: Duration::from_secs(5) }))
    }

    #[test]
    fn opens_after_n_consecutive_failures_only() {
        let b = breaker();
        b.record_failure();
        b.record_failure();
        b.record_success();
        b.record_failure();
        b.record_failure();
        assert_eq!(b.state(), State::Closed, "the success in between reset the count");
        b.record_failure();
        assert_eq!(b.state(), State::Open);
        b.record_success();
        assert_eq!(b.state(), State::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn the_prober_waits_the_cooldown_then_one_probe_decides() {
        let b = breaker();
        let up = Arc::new(AtomicBool::new(false));
        let probes = Arc::new(AtomicU32::new(0));
        let shutdown = CancellationToken::new();
        let prober = tokio::spawn({
            let (b, up, probes, shutdown) = (b.clone(), up.clone(), probes.clone(), shutdown.clone());
            async move {
                let probe = || {
                    probes.fetch_add(1, Ordering::SeqCst);
                    let ok = up.load(Ordering::SeqCst);
                    async move { ok }
                };
                b.run_prober(probe, shutdown).await
            }
        });
        for _ in 0..3 {
            b.record_failure();
        }
        assert_eq!(b.state(), State::Open);
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert_eq!(probes.load(Ordering::SeqCst), 0, "no probe before the cool-down");
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(probes.load(Ordering::SeqCst), 1);
        assert_eq!(b.state(), State::Open, "the database is still down");
        up.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert_eq!(probes.load(Ordering::SeqCst), 2);
        assert_eq!(b.state(), State::Closed);
        shutdown.cancel();
        prober.await.unwrap();
    }
}
