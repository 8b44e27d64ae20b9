//! Reloading `streams.toml` (SIGHUP): which streams start, drain and stop, or restart, and the stream tasks
//! running now ([`Running`]). An invalid file changes nothing; sections other than `[[stream]]` take effect at
//! the next restart (logged).
//!
//! Uses the config, the supervisor (one task per stream), JetStream set-up and the daemon's table check.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Config, StreamConfig};
use crate::pipeline::Shared;
use crate::{db, jetstream, supervisor};

/// The stream tasks running now, by `[[stream]]` name, each with its own stop token (a child of shutdown).
pub(crate) struct Running {
    pub(crate) streams: BTreeMap<String, (StreamConfig, CancellationToken, tokio::task::JoinHandle<()>)>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

impl Running {
    /// No stream yet; streams started later are tracked by `tracker` and stop with `shutdown`.
    pub(crate) fn new(tracker: TaskTracker, shutdown: CancellationToken) -> Self {
        Running { streams: BTreeMap::new(), tracker, shutdown }
    }

    pub(crate) fn start(&mut self, cfg: StreamConfig, shared: &Arc<Shared>) {
        let stop = self.shutdown.child_token();
        let task = self.tracker.spawn(supervisor::supervise(cfg.clone(), Arc::clone(shared), stop.clone()));
        self.streams.insert(cfg.name.clone(), (cfg, stop, task));
    }

    /// Stops the named streams and waits until each has flushed, committed and acked what it held.
    pub(crate) async fn drain(&mut self, names: &[String]) {
        let mut tasks = Vec::with_capacity(names.len());
        for name in names {
            if let Some((_, stop, task)) = self.streams.remove(name) {
                stop.cancel();
                tasks.push(task);
            }
        }
        for task in tasks {
            let _ = task.await;
        }
    }
}

/// Why a reload was refused (the running configuration stays).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// NATS cannot serve it.
    #[error(transparent)]
    Nats(#[from] jetstream::NatsError),
    /// A table it needs is missing, or the series key function disagrees with the configuration.
    #[error(transparent)]
    Schema(#[from] crate::migrate::SchemaMismatch),
}

/// Re-reads the configuration file and applies its `[[stream]]`s: added streams start, removed ones drain (flush,
/// commit, ack) and stop, changed ones drain and start again with the new settings; untouched streams are not
/// paused. Other sections need a restart (logged). An invalid file changes nothing.
pub(crate) async fn reload(
    current: &Config,
    client: &async_nats::Client,
    pool: &db::SharedPool,
    shared: &Arc<Shared>,
    running: &mut Running,
) -> Result<(Config, Arc<Shared>), ReloadError> {
    tracing::info!(file = %current.source.display(), "reloading the configuration");
    let next = crate::load_config(&current.source)?;
    jetstream::check_server(&client.server_info().version, &next.nats.url, &next.streams)?;
    crate::migrate::check_tables(&pool.current(), &next).await?;
    let ignored: Vec<&str> = [
        ("nats", current.nats != next.nats),
        ("database", current.database != next.database),
        ("daemon", current.daemon != next.daemon),
        ("dlq", current.dlq != next.dlq),
        ("breaker", current.breaker != next.breaker),
        ("http", current.http != next.http),
        ("log", current.log != next.log),
    ]
    .into_iter()
    .filter_map(|(section, changed)| changed.then_some(section))
    .collect();
    if !ignored.is_empty() {
        tracing::warn!(sections = ?ignored, "these sections changed and take effect only after a restart");
    }

    let wanted: BTreeMap<&str, &StreamConfig> = next.streams.iter().map(|s| (s.name.as_str(), s)).collect();
    let removed: Vec<String> = running.streams.keys().filter(|n| !wanted.contains_key(n.as_str())).cloned().collect();
    let changed: Vec<String> = running
        .streams
        .iter()
        .filter(|(n, (cfg, _, _))| wanted.get(n.as_str()).is_some_and(|w| *w != cfg))
        .map(|(n, _)| n.clone())
        .collect();
    let added: Vec<String> =
        next.streams.iter().filter(|s| !running.streams.contains_key(&s.name)).map(|s| s.name.clone()).collect();

    let next_shared = Arc::new(Shared { jetstreams: Arc::new(jetstream::stream_specs(&next)), ..(**shared).clone() });
    for (name, spec) in next_shared.jetstreams.iter() {
        if !shared.jetstreams.contains_key(name)
            && let Err(e) = jetstream::ensure_stream(&next_shared.js, name, spec).await
        {
            tracing::warn!(error = %e, "JetStream stream not ready yet; its pipelines will retry");
        }
    }
    let stopping: Vec<String> = removed.iter().chain(&changed).cloned().collect();
    // Series of removed streams (or of a stream's former processor) go; the others keep counting.
    let gone: Vec<StreamConfig> = running
        .streams
        .iter()
        .filter(|(n, (cfg, _, _))| wanted.get(n.as_str()).is_none_or(|w| w.processor != cfg.processor))
        .map(|(_, (cfg, _, _))| cfg.clone())
        .collect();
    running.drain(&stopping).await;
    for cfg in &gone {
        shared.metrics.forget_stream(crate::pipeline::series(cfg));
    }
    for s in next.streams.iter().filter(|s| added.contains(&s.name) || changed.contains(&s.name)) {
        tracing::info!("{}", crate::supervisor::describe(s));
        running.start(s.clone(), &next_shared);
    }
    tracing::info!(
        ?added, ?removed, restarted = ?changed, unchanged = next.streams.len() - added.len() - changed.len(),
        "reload applied"
    );
    // Only the streams changed: the other sections stay as running, so the next reload warns again if they differ.
    Ok((Config { streams: next.streams, ..current.clone() }, next_shared))
}
