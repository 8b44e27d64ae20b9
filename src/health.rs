//! What the daemon tells about each configured stream besides its own counters: its consumer as JetStream sees
//! it (pending, awaiting ack, redelivered, pull requests waiting), refreshed every `[http] refresh` for every
//! stream of the running configuration, whether its task runs or not; and the log's periodic summary of what each
//! stream wrote.
//!
//! Uses JetStream and the metrics registry.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::StreamConfig;
use crate::metrics::Metrics;

/// Refreshes the consumer gauges of every stream in `streams` (the running configuration, which reloads replace)
/// every `every`, until `shutdown`.
pub async fn refresh(
    js: async_nats::jetstream::Context,
    mut streams: watch::Receiver<Vec<StreamConfig>>,
    metrics: Arc<Metrics>,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
            // A reload: refresh the new set at once.
            changed = streams.changed() => if changed.is_err() { return },
        }
        let now: Vec<StreamConfig> = streams.borrow_and_update().clone();
        for s in &now {
            let Ok(stream) = js.get_stream(&s.jetstream).await else { continue };
            let Ok(info) = stream.consumer_info(&s.consumer).await else { continue };
            let m = metrics.stream(crate::pipeline::series(s));
            m.pending.set(i64::try_from(info.num_pending).unwrap_or(i64::MAX));
            m.ack_pending.set(info.num_ack_pending as i64);
            m.consumer_redelivered.set(info.num_redelivered as i64);
            m.consumer_waiting.set(info.num_waiting as i64);
        }
    }
}

/// Every `every` (0: never), one info line per stream that did something since the last: rows inserted, messages
/// acked and dead-lettered in the interval.
pub async fn summarize(metrics: Arc<Metrics>, every: Duration, shutdown: CancellationToken) {
    if every.is_zero() {
        return;
    }
    let mut last: std::collections::BTreeMap<String, [u64; 3]> = metrics.totals().into_iter().collect();
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        for (stream, now) in metrics.totals() {
            let before = last.insert(stream.clone(), now).unwrap_or_default();
            let [rows, acked, dead] = [0, 1, 2].map(|i| now[i].saturating_sub(before[i]));
            if rows + acked + dead > 0 {
                tracing::info!(stream = %stream, interval = ?every, rows, acked, dead_lettered = dead, "written");
            }
        }
    }
}
