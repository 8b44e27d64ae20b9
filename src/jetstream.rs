//! NATS side of the daemon: connect (and keep reconnecting), check the server can do what streams.toml asks,
//! make sure each JetStream stream and durable pull consumer exists. An existing stream is never modified or
//! deleted; an existing consumer is reused and updated in place, never deleted and recreated.
//!
//! Uses the config types and [`crate::tls`].

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::consumer::{self, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::{self, stream};
use async_nats::{Client, ConnectOptions, Event};
use tokio_util::sync::CancellationToken;

use crate::config::nats_url::servers;
use crate::config::{Config, JetStreamShape, NatsAuth, NatsConfig, Secret, StreamConfig, redact_url};

/// JetStream API error code: stream not found.
const STREAM_NOT_FOUND: u64 = 10059;

/// NATS failures.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    /// Credentials or TLS files are unusable.
    #[error("NATS {0}")]
    Setup(String),
    /// The server could not be reached or refused us.
    #[error("cannot connect to NATS at {url}: {message}")]
    Connect {
        /// Server URL (redacted).
        url: String,
        /// Why.
        message: String,
    },
    /// The server is too old for the configuration.
    #[error(
        "nats-server {version} at {url} is too old for stream {stream:?}: it asks for {filters} filter subjects on one \
         consumer, which needs nats-server 2.10 or newer (2.9 silently ignores all but one). Upgrade the server, or \
         split the subjects over several [[stream]] entries with one subject each"
    )]
    ServerTooOld {
        /// Server version.
        version: String,
        /// Server URL (redacted).
        url: String,
        /// The stream asking.
        stream: String,
        /// How many filter subjects it asks for.
        filters: usize,
    },
    /// A JetStream stream could not be looked up or created.
    #[error("JetStream stream {name:?}: {message}")]
    Stream {
        /// Stream name.
        name: String,
        /// What went wrong.
        message: String,
    },
    /// The consumer could not be looked up, created or updated.
    #[error("consumer {consumer:?} on JetStream stream {jetstream:?}: {message}")]
    Consumer {
        /// JetStream stream.
        jetstream: String,
        /// Consumer name.
        consumer: String,
        /// What went wrong.
        message: String,
    },
}

/// Connects, retrying with capped backoff until it works or `shutdown` fires (then `None`); each failure is told
/// to `waiting` (for `/readyz`). After the first connection the client reconnects by itself, forever.
pub async fn connect(
    config: &Config,
    shutdown: &CancellationToken,
    waiting: &(dyn Fn(String) + Sync),
) -> Option<Client> {
    let url = redact_url(&config.nats.url);
    let mut delay = Duration::from_millis(250);
    loop {
        // Pull subscriptions re-issue their requests by themselves after a reconnection (async-nats checks the
        // consumer's waiting requests), so these events are only logged.
        let setup = options(&config.nats).and_then(|o| Ok((o, servers(&config.nats.url).map_err(NatsError::Setup)?)));
        let (options, servers) = match setup {
            Ok(o) => o,
            Err(e) => {
                // A missing or unreadable credentials file may be mounted late (containers): keep trying.
                tracing::error!(error = %e, retry_in = ?delay, "cannot set up the NATS connection");
                waiting(format!("setting up the NATS connection: {e}"));
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => return None,
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        let options = options
            .name("db-event-writer")
            .connection_timeout(Duration::from_secs(5))
            .max_reconnects(None)
            .event_callback(|event| async move {
                match event {
                    Event::Connected => tracing::info!("NATS connected"),
                    Event::Disconnected => tracing::warn!("NATS disconnected; reconnecting"),
                    Event::LameDuckMode => tracing::warn!("NATS server entered lame duck mode"),
                    // Our own clean stop.
                    Event::Draining | Event::Closed => tracing::debug!(event = %event, "NATS connection closing"),
                    // Every failed reconnect attempt: the Disconnected warning already said it.
                    Event::ClientError(e) => tracing::debug!(error = %e, "NATS client error"),
                    other => tracing::warn!(event = %other, "NATS event"),
                }
            });
        match options.connect(servers).await {
            Ok(client) => {
                tracing::info!(url = %url, server_version = %client.server_info().version, "connected to NATS");
                return Some(client);
            }
            Err(e) => {
                tracing::warn!(url = %url, error = %e, retry_in = ?delay, "cannot connect to NATS");
                waiting(format!("connecting to NATS at {url}: {e}"));
            }
        }
        // Why select: a daemon started before NATS must still stop at once on SIGTERM.
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

/// Connection options with the configured authentication and TLS. Secret files are read now, so a rotated file
/// is used at the next connection.
pub fn options(nats: &NatsConfig) -> Result<ConnectOptions, NatsError> {
    let setup = |message: String| NatsError::Setup(message);
    let mut options = match &nats.auth {
        NatsAuth::None => ConnectOptions::new(),
        NatsAuth::Creds(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| setup(format!("creds_file {}: {e}", path.display())))?;
            ConnectOptions::with_credentials(&text)
                .map_err(|e| setup(format!("creds_file {}: not a credentials file: {e}", path.display())))?
        }
        NatsAuth::NkeySeed(path) => {
            let seed = Secret::File(path.clone()).read().map_err(|e| setup(format!("nkey_seed_file {e}")))?;
            ConnectOptions::with_nkey(seed)
        }
        NatsAuth::UserPassword { user, password } => {
            let password = password.read().map_err(|e| setup(format!("password_file {e}")))?;
            ConnectOptions::with_user_and_password(user.clone(), password)
        }
        NatsAuth::Token(token) => {
            ConnectOptions::with_token(token.read().map_err(|e| setup(format!("token_file {e}")))?)
        }
    };
    if let Some(tls) = &nats.tls {
        // Our own rustls config, so that `server_name` can replace the URL's host in the certificate check and
        // errors name the key of the file that is wrong.
        let config = crate::tls::client_config(tls, crate::tls::Verify::Full, "nats.tls").map_err(NatsError::Setup)?;
        options = options.require_tls(true).tls_client_config(config);
    }
    Ok(options)
}

/// One connection attempt (for the CLI's commands), failing fast instead of retrying.
pub async fn connect_once(nats: &NatsConfig) -> Result<Client, NatsError> {
    let client = options(nats)?
        .name("db-event-writer-cli")
        .connection_timeout(Duration::from_secs(5))
        .connect(servers(&nats.url).map_err(NatsError::Setup)?)
        .await
        .map_err(|e| NatsError::Connect { url: redact_url(&nats.url), message: e.to_string() })?;
    Ok(client)
}

/// Parses `major.minor.patch` (ignoring any `-suffix`).
pub fn parse_version(v: &str) -> Option<(u64, u64, u64)> {
    let core = v.trim().trim_start_matches('v').split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
    Some((parts.next()??, parts.next()??, parts.next().flatten().unwrap_or(0)))
}

/// Refuses streams the server cannot serve correctly: several filter subjects need 2.10+.
pub fn check_server(version: &str, url: &str, streams: &[StreamConfig]) -> Result<(), NatsError> {
    let supports_multi_filter = parse_version(version).is_some_and(|v| v >= (2, 10, 0));
    match streams.iter().find(|s| s.subjects.len() > 1) {
        Some(s) if !supports_multi_filter => Err(NatsError::ServerTooOld {
            version: version.to_owned(),
            url: redact_url(url),
            stream: s.name.clone(),
            filters: s.subjects.len(),
        }),
        _ => Ok(()),
    }
}

/// How a missing JetStream stream is created: its subjects and its `[jetstream.<name>]` limits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamSpec {
    /// The union of the subjects of the `[[stream]]`s naming it.
    pub subjects: Vec<String>,
    /// Its limits.
    pub shape: JetStreamShape,
}

/// The spec of each JetStream stream the configuration names.
pub fn stream_specs(config: &Config) -> BTreeMap<String, StreamSpec> {
    let mut by_stream: BTreeMap<String, StreamSpec> = BTreeMap::new();
    for s in &config.streams {
        let spec = by_stream.entry(s.jetstream.clone()).or_insert_with(|| StreamSpec {
            subjects: Vec::new(),
            shape: config.jetstream.get(&s.jetstream).cloned().unwrap_or_default(),
        });
        spec.shape.replicas = spec.shape.replicas.or(Some(config.nats.replicas));
        for subject in &s.subjects {
            if !spec.subjects.contains(subject) {
                spec.subjects.push(subject.clone());
            }
        }
    }
    by_stream
}

/// Returns the JetStream stream named by `config`, creating it with `config` only when it does not exist. An
/// existing stream is returned as it is: the one place streams are made (source streams, the DLQ, the ingest
/// status bucket's), and none of them is ever modified here.
pub async fn get_or_create_stream(
    js: &jetstream::Context,
    config: stream::Config,
) -> Result<stream::Stream, NatsError> {
    let name = config.name.clone();
    let err = |message: String| NatsError::Stream { name: name.clone(), message };
    match js.get_stream(&name).await {
        Ok(s) => Ok(s),
        Err(e) if matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(ref j) if j.error_code().0 == STREAM_NOT_FOUND) =>
        {
            let subjects = config.subjects.clone();
            match js.create_stream(config).await {
                Ok(s) => {
                    tracing::info!(jetstream = %name, subjects = ?subjects, "created JetStream stream");
                    Ok(s)
                }
                // Another stream task (or replica) created it first.
                Err(created) => js.get_stream(&name).await.map_err(|_| err(created.to_string())),
            }
        }
        Err(e) => Err(err(e.to_string())),
    }
}

/// Returns the JetStream stream a `[[stream]]` consumes, creating it (file storage, the spec's subjects and
/// limits) only when it does not exist.
pub async fn ensure_stream(
    js: &jetstream::Context,
    name: &str,
    spec: &StreamSpec,
) -> Result<stream::Stream, NatsError> {
    let shape = &spec.shape;
    let config = stream::Config {
        name: name.to_owned(),
        subjects: spec.subjects.clone(),
        storage: stream::StorageType::File,
        description: Some("created by db-event-writer".to_owned()),
        max_age: shape.max_age.unwrap_or_default(),
        max_bytes: shape.max_bytes.unwrap_or(-1),
        duplicate_window: shape.duplicate_window.unwrap_or_default(),
        discard: if shape.discard_new { stream::DiscardPolicy::New } else { stream::DiscardPolicy::Old },
        num_replicas: shape.replicas.unwrap_or(1),
        ..Default::default()
    };
    get_or_create_stream(js, config).await
}

/// The consumer settings this daemon wants for a stream. `max_deliver` is unlimited on the server: the daemon
/// counts deliveries itself and dead-letters a message that ran out of them, where JetStream would stop offering
/// it in silence.
pub fn desired_consumer(s: &StreamConfig) -> consumer::pull::Config {
    let (filter_subject, filter_subjects) = match s.subjects.as_slice() {
        [one] => (one.clone(), Vec::new()),
        many => (String::new(), many.to_vec()),
    };
    consumer::pull::Config {
        durable_name: Some(s.consumer.clone()),
        description: Some(format!("db-event-writer stream {}", s.name)),
        deliver_policy: DeliverPolicy::All,
        ack_policy: AckPolicy::Explicit,
        ack_wait: s.ack_wait,
        max_deliver: -1,
        max_ack_pending: s.max_ack_pending,
        filter_subject,
        filter_subjects,
        ..Default::default()
    }
}

/// The settings of `existing` that differ from `want`, by name (empty when it can be used as it is).
pub fn consumer_differences(existing: &consumer::Config, want: &consumer::pull::Config) -> Vec<&'static str> {
    let mut diffs = Vec::new();
    if existing.ack_policy != want.ack_policy {
        diffs.push("ack_policy");
    }
    if existing.ack_wait != want.ack_wait {
        diffs.push("ack_wait");
    }
    if existing.max_deliver != want.max_deliver && !(existing.max_deliver <= 0 && want.max_deliver <= 0) {
        diffs.push("max_deliver");
    }
    if existing.max_ack_pending != want.max_ack_pending {
        diffs.push("max_ack_pending");
    }
    let filters = |single: &str, many: &[String]| {
        let mut all: Vec<String> = many.to_vec();
        if !single.is_empty() {
            all.push(single.to_owned());
        }
        all.sort();
        all
    };
    if filters(&existing.filter_subject, &existing.filter_subjects)
        != filters(&want.filter_subject, &want.filter_subjects)
    {
        diffs.push("filter_subjects");
    }
    diffs
}

/// Returns the durable pull consumer: created when missing, updated in place when its settings differ.
pub async fn ensure_consumer(js_stream: &stream::Stream, s: &StreamConfig) -> Result<PullConsumer, NatsError> {
    let err =
        |message: String| NatsError::Consumer { jetstream: s.jetstream.clone(), consumer: s.consumer.clone(), message };
    let want = desired_consumer(s);
    match js_stream.consumer_info(&s.consumer).await {
        Ok(info) => {
            if info.config.deliver_subject.is_some() {
                return Err(err(
                    "exists as a push consumer; db-event-writer needs a pull consumer and never deletes one: \
                                remove it yourself or choose another consumer name"
                        .to_owned(),
                ));
            }
            let diffs = consumer_differences(&info.config, &want);
            if diffs.is_empty() {
                return js_stream.get_consumer(&s.consumer).await.map_err(|e| err(e.to_string()));
            }
            tracing::info!(stream = %s.name, consumer = %s.consumer, changed = ?diffs, "updating consumer in place");
            js_stream.create_consumer(want).await.map_err(|e| {
                err(format!(
                    "exists with different {} and JetStream refused to update it in place ({e}); it is never deleted \
                     by db-event-writer: change streams.toml to match, or remove the consumer yourself",
                    diffs.join(", ")
                ))
            })
        }
        Err(e) if e.kind() == jetstream::context::ConsumerInfoErrorKind::NotFound => {
            let consumer = js_stream.create_consumer(want).await.map_err(|e| err(format!("cannot create: {e}")))?;
            tracing::info!(stream = %s.name, consumer = %s.consumer, jetstream = %s.jetstream, "created durable consumer");
            Ok(consumer)
        }
        Err(e) => Err(err(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::processor::ProcessorKind;

    fn stream(subjects: &[&str]) -> StreamConfig {
        StreamConfig {
            name: "s".into(),
            jetstream: "events".into(),
            consumer: "c".into(),
            subjects: subjects.iter().map(|s| s.to_string()).collect(),
            processor: ProcessorKind::Telemetry,
            batch_size: 100,
            batch_timeout: Duration::from_secs(1),
            ack_wait: Duration::from_secs(30),
            max_ack_pending: 1000,
            max_deliver: -1,
            nak_delay: Duration::from_secs(1),
            nak_delay_max: Duration::from_secs(60),
            batches_in_flight: 2,
            writers: 2,
            validate: false,
            max_rows_per_message: 100_000,
            max_expansion: 32,
            max_bytes_in_flight: 32 << 20,
        }
    }

    #[test]
    fn versions_parse() {
        assert_eq!(parse_version("2.9.10"), Some((2, 9, 10)));
        assert_eq!(parse_version("2.10.0-beta.1"), Some((2, 10, 0)));
        assert_eq!(parse_version("v2.11"), Some((2, 11, 0)));
        assert_eq!(parse_version("garbage"), None);
    }

    #[test]
    fn an_old_server_is_refused_only_for_multi_filter_streams() {
        let e = check_server("2.9.10", "nats://u:pw@h:4222", &[stream(&["a.>"]), stream(&["b.>", "c.>"])]).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("2.9.10") && text.contains("2.10 or newer") && !text.contains("pw"), "{text}");
        assert!(check_server("2.9.10", "nats://h", &[stream(&["a.>"])]).is_ok());
        assert!(check_server("2.10.3", "nats://h", &[stream(&["b.>", "c.>"])]).is_ok());
        assert!(check_server("bogus", "nats://h", &[stream(&["b.>", "c.>"])]).is_err());
    }

    #[test]
    fn streams_get_the_union_of_their_subjects_and_their_limits() {
        let text = "[nats]\nurl = \"nats://x\"\n[database]\nurl = \"postgres://x/y\"\n\
            [jetstream.metrics]\nmax_age = \"30m\"\nmax_bytes = 1073741824\nduplicate_window = \"2m\"\n\
            [[stream]]\nname = \"a\"\njetstream = \"events\"\nconsumer = \"a\"\nsubjects = [\"a.>\"]\nprocessor = \"logs\"\n\
            [[stream]]\nname = \"b\"\njetstream = \"events\"\nconsumer = \"b\"\nsubjects = [\"b.>\", \"a.>\"]\nprocessor = \"logs\"\n\
            [[stream]]\nname = \"m\"\njetstream = \"metrics\"\nconsumer = \"m\"\nsubjects = [\"metrics.>\"]\nprocessor = \"telemetry\"\n";
        let config = crate::parse_config(std::path::Path::new("t.toml"), text).unwrap();
        let specs = stream_specs(&config);
        assert_eq!(specs["events"].subjects, ["a.>", "b.>"]);
        assert_eq!(specs["events"].shape, JetStreamShape { replicas: Some(1), ..JetStreamShape::default() });
        assert_eq!(specs["metrics"].subjects, ["metrics.>"]);
        let shape = &specs["metrics"].shape;
        assert_eq!(
            (shape.max_age, shape.duplicate_window),
            (Some(Duration::from_secs(1800)), Some(Duration::from_secs(120)))
        );
        assert_eq!((shape.max_bytes, shape.discard_new), (Some(1 << 30), false));
        let orphan = text.replace("[jetstream.metrics]", "[jetstream.nobody]");
        let e = crate::parse_config(std::path::Path::new("t.toml"), &orphan).unwrap_err().to_string();
        assert!(e.contains("t.toml:5") && e.contains("jetstream.nobody") && e.contains("no [[stream]]"), "{e}");
    }

    #[test]
    fn consumer_settings_are_compared_order_insensitively() {
        let want = desired_consumer(&stream(&["a", "b"]));
        let mut existing: consumer::Config = consumer::IntoConsumerConfig::into_consumer_config(want.clone());
        existing.filter_subjects = vec!["b".into(), "a".into()];
        assert!(consumer_differences(&existing, &want).is_empty());
        existing.ack_wait = Duration::from_secs(5);
        existing.filter_subjects = vec!["a".into()];
        assert_eq!(consumer_differences(&existing, &want), ["ack_wait", "filter_subjects"]);
        // A consumer made by an earlier version (JetStream counting deliveries) is updated to unlimited.
        let mut old: consumer::Config = consumer::IntoConsumerConfig::into_consumer_config(want.clone());
        old.max_deliver = 5;
        assert_eq!(consumer_differences(&old, &want), ["max_deliver"]);
        assert_eq!(want.max_deliver, -1);
        let single = desired_consumer(&stream(&["a"]));
        assert_eq!(single.filter_subject, "a");
        assert!(single.filter_subjects.is_empty());
    }
}
