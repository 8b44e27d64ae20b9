//! `db-event-writer status`: what JetStream says of each stream's consumer (lag, awaiting ack, redelivered), how
//! many dead letters it has, and whether NATS and the database answer. Reads only; works while the daemon runs.

use std::fmt;
use std::time::Duration;

use futures::TryStreamExt;
use serde::Serialize;

use crate::config::{Config, redact_url};
use crate::jetstream;

/// One `[[stream]]`'s consumer as JetStream sees it.
#[derive(Debug, Clone, Serialize)]
pub struct StreamStatus {
    /// `[[stream]] name`.
    pub name: String,
    /// Its processor.
    pub processor: String,
    /// JetStream stream.
    pub jetstream: String,
    /// Durable consumer.
    pub consumer: String,
    /// Messages not yet delivered (lag).
    pub pending: Option<u64>,
    /// Delivered, awaiting ack.
    pub awaiting_ack: Option<usize>,
    /// Redelivered and not yet acked.
    pub redelivered: Option<usize>,
    /// Dead letters kept for it.
    pub dead_letters: Option<u64>,
    /// Why some of the above is unknown.
    pub error: Option<String>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// `ok` or why not.
    pub nats: String,
    /// nats-server version, when connected.
    pub nats_version: Option<String>,
    /// `ok` or why not.
    pub database: String,
    /// One per `[[stream]]`.
    pub streams: Vec<StreamStatus>,
}

impl Status {
    /// NATS and the database answer and every consumer was found.
    pub fn healthy(&self) -> bool {
        self.nats == "ok" && self.database == "ok" && self.streams.iter().all(|s| s.error.is_none())
    }
}

const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Asks NATS and the database; never fails (what cannot be learned is reported as such).
pub async fn status(config: &Config) -> Status {
    let database = database(config).await;
    let mut streams: Vec<StreamStatus> = config
        .streams
        .iter()
        .map(|s| StreamStatus {
            name: s.name.clone(),
            processor: s.processor.name().to_owned(),
            jetstream: s.jetstream.clone(),
            consumer: s.consumer.clone(),
            pending: None,
            awaiting_ack: None,
            redelivered: None,
            dead_letters: None,
            error: None,
        })
        .collect();
    let client = match tokio::time::timeout(CHECK_TIMEOUT, jetstream::connect_once(&config.nats)).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return unreachable(format!("unreachable: {e}"), database, streams),
        Err(_) => return unreachable(format!("no answer within {CHECK_TIMEOUT:?}"), database, streams),
    };
    let js = async_nats::jetstream::new(client.clone());
    let dlq = js.get_stream(&config.dlq.stream).await.ok();
    for s in &mut streams {
        match js.get_stream(&s.jetstream).await {
            Ok(stream) => match stream.consumer_info(&s.consumer).await {
                Ok(info) => {
                    s.pending = Some(info.num_pending);
                    s.awaiting_ack = Some(info.num_ack_pending);
                    s.redelivered = Some(info.num_redelivered);
                }
                Err(e) => s.error = Some(format!("consumer {:?}: {e}", s.consumer)),
            },
            Err(e) => s.error = Some(format!("JetStream stream {:?}: {e}", s.jetstream)),
        }
        s.dead_letters = Some(match &dlq {
            Some(dlq) => match dlq.info_with_subjects(config.dlq.subject_for(&s.name)).await {
                Ok(subjects) => subjects.try_fold(0, |n, (_, count)| async move { Ok(n + count as u64) }).await.ok(),
                Err(_) => None,
            }
            .unwrap_or(0),
            None => 0,
        });
    }
    Status { nats: "ok".to_owned(), nats_version: Some(client.server_info().version.clone()), database, streams }
}

fn unreachable(nats: String, database: String, streams: Vec<StreamStatus>) -> Status {
    Status { nats, nats_version: None, database, streams }
}

async fn database(config: &Config) -> String {
    let pool = match crate::db::pool(&crate::config::DatabaseConfig { pool_size: 1, ..config.database.clone() }) {
        Ok(p) => p,
        Err(e) => return format!("unusable: {e}"),
    };
    let answer = crate::db::answers(&pool, CHECK_TIMEOUT).await.to_string();
    pool.close();
    answer
}

impl Status {
    /// The human report, with where it looked.
    pub fn render(&self, config: &Config) -> String {
        let mut out = String::new();
        let version = self.nats_version.as_deref().map(|v| format!(" (nats-server {v})")).unwrap_or_default();
        out.push_str(&format!("nats {}: {}{version}\n", redact_url(&config.nats.url), self.nats));
        out.push_str(&format!("database {}: {}\n", redact_url(&config.database.url), self.database));
        for s in &self.streams {
            out.push_str(&format!("{s}\n"));
        }
        out
    }
}

impl fmt::Display for StreamStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn n<T: fmt::Display>(v: &Option<T>) -> String {
            v.as_ref().map_or_else(|| "?".to_owned(), |v| v.to_string())
        }
        write!(
            f,
            "stream {}: processor={} consumer={}/{} lag={} awaiting_ack={} redelivered={} dead_letters={}",
            self.name,
            self.processor,
            self.jetstream,
            self.consumer,
            n(&self.pending),
            n(&self.awaiting_ack),
            n(&self.redelivered),
            n(&self.dead_letters),
        )?;
        if let Some(e) = &self.error {
            write!(f, " error={e}")?;
        }
        Ok(())
    }
}
