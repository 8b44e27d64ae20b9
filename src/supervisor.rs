//! One supervised task per `[[stream]]`: a failed (or panicked) stream restarts with capped exponential backoff
//! while the other streams keep running.
//!
//! Uses the pipeline, and the metrics for each stream's state (`stream_up`, `stream_restarts`, why it fails).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::StreamConfig;
use crate::pipeline::{Shared, run_stream};

/// Capped exponential backoff.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Starts at `first`, doubles, never exceeds `max`.
    pub fn new(first: Duration, max: Duration) -> Self {
        Backoff { first, max, next: first }
    }

    /// The delay to wait now.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    /// Back to the first delay (after a stretch of healthy running).
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

/// One line about a stream's settings, for `validate` and the start-up log.
pub fn describe(s: &StreamConfig) -> String {
    format!(
        "stream {}: processor={} jetstream={} consumer={} subjects=[{}] batch={} rows/{} ack_wait={} max_ack_pending={} max_deliver={}",
        s.name,
        s.processor,
        s.jetstream,
        s.consumer,
        s.subjects.join(", "),
        s.batch_size,
        humantime::format_duration(s.batch_timeout),
        humantime::format_duration(s.ack_wait),
        s.max_ack_pending,
        s.max_deliver,
    )
}

/// A stream that ran this long before failing is considered to have been healthy.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// Runs one stream until `shutdown`, restarting it when it fails.
pub async fn supervise(cfg: StreamConfig, shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
    let processor = cfg.processor.name();
    shared.metrics.stream_starting(&cfg.name, processor);
    loop {
        let started = Instant::now();
        // Spawned so that a panic is caught here (as a JoinError) instead of taking the supervisor down.
        let task = tokio::spawn({
            let (cfg, shared, shutdown) = (cfg.clone(), Arc::clone(&shared), shutdown.clone());
            async move { run_stream(&cfg, &shared, &shutdown).await }
        });
        let outcome = task.await;
        let (class, why) = match outcome {
            Ok(Ok(())) if shutdown.is_cancelled() => {
                tracing::info!(stream = %cfg.name, "stream stopped");
                return;
            }
            Ok(Ok(())) => {
                tracing::error!(stream = %cfg.name, "stream task returned without being asked to; restarting");
                ("returned", "the stream task returned without being asked to".to_owned())
            }
            Ok(Err(e)) => {
                tracing::error!(stream = %cfg.name, error = %e, "stream task failed");
                (e.class(), e.to_string())
            }
            Err(e) if e.is_panic() => {
                tracing::error!(stream = %cfg.name, error = %e, "BUG: stream task panicked; please report it");
                ("panic", format!("the stream task panicked: {e}"))
            }
            Err(e) => {
                tracing::error!(stream = %cfg.name, error = %e, "stream task was cancelled");
                ("panic", format!("the stream task was cancelled: {e}"))
            }
        };
        if shutdown.is_cancelled() {
            return;
        }
        // What /readyz and status show until the task runs again (secrets masked, as in the log).
        shared.metrics.stream_failed(&cfg.name, processor, class, &crate::redact::scrub(&why));
        if started.elapsed() >= HEALTHY_RUN {
            backoff.reset();
        }
        let delay = backoff.next_delay();
        tracing::info!(stream = %cfg.name, retry_in = ?delay, "restarting stream");
        // Why select: shutdown must not wait out a 60 s backoff.
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(5));
        let delays: Vec<u64> = (0..5).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 5, 5]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_secs(1));
    }
}
