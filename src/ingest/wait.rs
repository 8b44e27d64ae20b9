//! Waiting for an ingested message's fate before answering (`?wait=persisted`, or RFC 7240's `Prefer: wait=N`):
//! the request registers its message's status key, and one watch on the status bucket wakes it when the writer
//! records `persisted` (after the commit) or `dead_lettered`. No polling; a key recorded before the request
//! registered is found by one read after registering. Bounded: at most `max_waiters` at once (a request over it
//! answers 202 at once), and every waiter is released (202) on shutdown.
//!
//! Published messages someone waits for carry [`WAIT_HEADER`] (the flush delay in milliseconds), so the reader
//! flushes their batch without waiting out `batch_timeout`.
//!
//! Uses JetStream's key-value watch and [`super::status`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::kv;
use futures::StreamExt as _;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::status::Fate;

/// Marks a message somebody waits for; its value is how many milliseconds its batch may still wait for company.
pub const WAIT_HEADER: &str = "Db-Event-Writer-Wait";

/// How long a request asks to wait, from its query (`wait=persisted`: `default`) and its `Prefer` header
/// (`wait=N` seconds, capped at `max`); `None`: answer at once. Preferences a server does not understand are
/// ignored (RFC 7240), but `?wait=` with another value is the client's mistake: an error.
pub fn requested(
    query: Option<&str>,
    prefer: Option<&str>,
    default: Duration,
    max: Duration,
) -> Result<Option<Duration>, String> {
    let mut wanted = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key == "wait" {
            if value != "persisted" {
                return Err(format!("wait={value:?}: the only wait is wait=persisted"));
            }
            wanted = Some(default);
        }
    }
    let preferred = prefer.unwrap_or("").split([',', ';']).map(str::trim).find_map(|p| {
        let (key, value) = p.split_once('=')?;
        (key.trim().eq_ignore_ascii_case("wait")).then(|| value.trim().trim_matches('"').parse::<u64>().ok())?
    });
    if let Some(secs) = preferred {
        wanted = Some(Duration::from_secs(secs));
    }
    Ok(wanted.map(|w| w.min(max)).filter(|w| !w.is_zero()))
}

/// The requests waiting for fates, by status key.
#[derive(Debug)]
pub struct Waiters {
    waiting: Mutex<HashMap<String, Vec<oneshot::Sender<Fate>>>>,
    count: AtomicUsize,
    max: usize,
}

/// Room for `n` waits, given back when dropped.
#[derive(Debug)]
pub struct Slots {
    waiters: Arc<Waiters>,
    n: usize,
}

impl Drop for Slots {
    fn drop(&mut self) {
        self.waiters.count.fetch_sub(self.n, Ordering::AcqRel);
    }
}

impl Waiters {
    /// Room for `max` waits at once.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Waiters { waiting: Mutex::new(HashMap::new()), count: AtomicUsize::new(0), max })
    }

    /// Room for `n` more waits, or `None` when that would pass the cap.
    pub fn slots(self: &Arc<Self>, n: usize) -> Option<Slots> {
        let taken = self.count.fetch_add(n, Ordering::AcqRel);
        let slots = Slots { waiters: Arc::clone(self), n };
        (taken + n <= self.max).then_some(slots)
    }

    /// Waits in progress.
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Whether nobody waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Wakes-up for the fate of `key` (call before reading the bucket, so no record falls between).
    pub fn register(&self, key: &str) -> oneshot::Receiver<Fate> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut w) = self.waiting.lock() {
            w.entry(key.to_owned()).or_default().push(tx);
        }
        rx
    }

    /// Drops the registrations of `key` whose requests stopped waiting.
    pub fn forget(&self, key: &str) {
        if let Ok(mut w) = self.waiting.lock()
            && let Some(list) = w.get_mut(key)
        {
            list.retain(|tx| !tx.is_closed());
            if list.is_empty() {
                w.remove(key);
            }
        }
    }

    /// Hands `fate` to everyone waiting for `key`.
    pub fn wake(&self, key: &str, fate: &Fate) {
        let woken = self.waiting.lock().ok().and_then(|mut w| w.remove(key));
        for tx in woken.into_iter().flatten() {
            let _ = tx.send(fate.clone());
        }
    }

    fn keys(&self) -> Vec<String> {
        self.waiting.lock().map(|w| w.keys().cloned().collect()).unwrap_or_default()
    }

    /// Watches `status` until `shutdown`, waking waiters as fates are recorded. A watch that breaks is opened
    /// again, and the keys waited for meanwhile are read once, so none is missed for long.
    pub async fn watch(self: Arc<Self>, status: kv::Store, shutdown: CancellationToken) {
        let mut broken = false;
        loop {
            let watch = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                w = status.watch_all() => w,
            };
            match watch {
                Ok(mut entries) => {
                    if broken {
                        for key in self.keys() {
                            if let Ok(Some(value)) = status.get(&key).await
                                && let Ok(fate) = serde_json::from_slice::<Fate>(&value)
                            {
                                self.wake(&key, &fate);
                            }
                        }
                    }
                    loop {
                        let next = tokio::select! {
                            biased;
                            _ = shutdown.cancelled() => return,
                            next = entries.next() => next,
                        };
                        match next {
                            Some(Ok(entry)) if entry.operation == kv::Operation::Put => {
                                if let Ok(fate) = serde_json::from_slice::<Fate>(&entry.value) {
                                    self.wake(&entry.key, &fate);
                                }
                            }
                            Some(Ok(_)) => {}
                            Some(Err(e)) => {
                                tracing::debug!(error = %e, "status bucket watch broke; watching again");
                                break;
                            }
                            None => break,
                        }
                    }
                }
                Err(e) => tracing::debug!(error = %e, "cannot watch the status bucket yet"),
            }
            broken = true;
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn the_query_and_prefer_header_ask_for_a_wait_capped_at_the_maximum() {
        assert_eq!(requested(None, None, S(5), S(20)), Ok(None));
        assert_eq!(requested(Some("wait=persisted"), None, S(5), S(20)), Ok(Some(S(5))));
        assert_eq!(requested(Some("x=1&wait=persisted"), None, S(5), S(20)), Ok(Some(S(5))));
        assert_eq!(requested(None, Some("wait=3"), S(5), S(20)), Ok(Some(S(3))));
        assert_eq!(requested(None, Some("respond-async, wait=100"), S(5), S(20)), Ok(Some(S(20))), "capped");
        assert_eq!(requested(Some("wait=persisted"), Some("wait=2"), S(5), S(20)), Ok(Some(S(2))));
        assert_eq!(requested(None, Some("wait=soon"), S(5), S(20)), Ok(None), "not understood: ignored");
        assert_eq!(requested(None, Some("wait=0"), S(5), S(20)), Ok(None));
        assert_eq!(requested(None, Some("handling=lenient"), S(5), S(20)), Ok(None));
        assert!(requested(Some("wait=committed"), None, S(5), S(20)).unwrap_err().contains("wait=persisted"));
    }

    #[tokio::test]
    async fn waiters_are_woken_by_key_bounded_and_forgotten() {
        let w = Waiters::new(3);
        let two = w.slots(2).unwrap();
        assert!(w.slots(2).is_none(), "over the cap");
        assert_eq!(w.len(), 2, "a refused request takes no room");
        let a = w.register("s.1");
        let b = w.register("s.1");
        let c = w.register("s.2");
        let fate = Fate::Persisted { table: "logs".into(), committed_at: "now".into() };
        w.wake("s.1", &fate);
        assert_eq!(a.await.unwrap(), fate);
        assert_eq!(b.await.unwrap(), fate);
        drop(c);
        w.forget("s.2");
        assert!(w.keys().is_empty());
        drop(two);
        assert!(w.is_empty());
        assert!(w.slots(3).is_some());
    }
}
