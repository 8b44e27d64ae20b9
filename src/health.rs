//! What the daemon tells about each configured stream besides its own counters: its consumer as JetStream sees
//! it (pending, awaiting ack, redelivered), refreshed every `[http] refresh` for every stream of the running
//! configuration, whether its task runs or not.
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
        }
    }
}
