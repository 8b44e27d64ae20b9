//! The fate of messages posted to the HTTP ingest front, kept in a JetStream key-value bucket: the front writes
//! nothing there itself; the settler records `persisted` (after the commit) and `dead_lettered` (after the dead
//! letter is stored) for messages carrying [`INGEST_HEADER`], and `GET /v1/events/{id}` reads it. Messages
//! published straight to NATS cost nothing here.
//!
//! Uses JetStream's key-value store.

use std::time::Duration;

use async_nats::jetstream::{self, kv};

/// Marks a message that came in through this front: its fate is recorded for `GET /v1/events/{id}`.
pub const INGEST_HEADER: &str = "Db-Event-Writer-Ingest";
/// The key-value bucket holding the fate of ingested messages.
pub const STATUS_BUCKET: &str = "db_event_writer_ingest";

/// The fate of an ingested message, as stored in the status bucket.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Fate {
    /// Its rows committed.
    Persisted {
        /// Table(s) written.
        table: String,
        /// When the transaction committed (RFC 3339).
        committed_at: String,
    },
    /// It went to the dead-letter stream.
    DeadLettered {
        /// decode | rejected | max_deliver.
        class: String,
        /// Why.
        reason: String,
    },
}

/// The status bucket's key of a message: `<jetstream stream>.<sequence>`, which is also the message id (stream
/// names cannot contain '.', so the id splits unambiguously at its last '.').
pub fn message_id(jetstream: &str, sequence: u64) -> String {
    format!("{jetstream}.{sequence}")
}

pub fn status_key(id: &str) -> String {
    // Key-value keys allow [-/_=.a-zA-Z0-9]; stream names may hold other characters.
    id.chars().map(|c| if c.is_ascii_alphanumeric() || "-/_=.".contains(c) { c } else { '_' }).collect()
}

pub fn parse_message_id(id: &str) -> Option<(&str, u64)> {
    let (stream, sequence) = id.rsplit_once('.')?;
    let sequence = sequence.parse().ok().filter(|s| *s > 0)?;
    (!stream.is_empty()).then_some((stream, sequence))
}

/// Creates (or opens) the status bucket, entries kept `ttl`.
pub async fn bucket(js: &jetstream::Context, ttl: Duration, replicas: usize) -> Result<kv::Store, String> {
    match js.get_key_value(STATUS_BUCKET).await {
        Ok(store) => Ok(store),
        Err(_) => js
            .create_key_value(kv::Config {
                bucket: STATUS_BUCKET.to_owned(),
                description: "db-event-writer: the fate of messages posted to the HTTP ingest front".to_owned(),
                max_age: ttl,
                history: 1,
                storage: jetstream::stream::StorageType::File,
                num_replicas: replicas,
                ..Default::default()
            })
            .await
            .map_err(|e| format!("cannot create the key-value bucket {STATUS_BUCKET}: {e}")),
    }
}

/// Records the fate of an ingested message (best effort: a failure leaves it `accepted`, and is logged).
pub async fn record(status: &kv::Store, jetstream: &str, sequence: u64, fate: &Fate) {
    let value = serde_json::to_vec(fate).unwrap_or_default();
    if let Err(e) = status.put(status_key(&message_id(jetstream, sequence)), value.into()).await {
        tracing::warn!(jetstream, sequence, error = %e, "could not record an ingested message's status");
    }
}

/// Records the fate of one stream's ingested messages in the background (the settler never waits on the
/// bucket); [`Fates::wait`] lets the records in progress finish, so a shutdown does not leave committed messages
/// `accepted`.
#[derive(Debug, Clone)]
pub struct Fates {
    status: kv::Store,
    jetstream: String,
    tasks: tokio_util::task::TaskTracker,
}

impl Fates {
    /// Fates of messages of JetStream stream `jetstream`, recorded in `status`.
    pub fn new(status: kv::Store, jetstream: &str) -> Self {
        Fates { status, jetstream: jetstream.to_owned(), tasks: tokio_util::task::TaskTracker::new() }
    }

    /// Its rows committed, into `tables`.
    pub fn persisted(&self, sequence: u64, tables: String) {
        let committed_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        self.spawn(sequence, Fate::Persisted { table: tables, committed_at });
    }

    /// Its dead letter is stored.
    pub fn dead_lettered(&self, sequence: u64, class: crate::dlq::DlqClass, reason: String) {
        self.spawn(sequence, Fate::DeadLettered { class: class.to_string(), reason });
    }

    fn spawn(&self, sequence: u64, fate: Fate) {
        let (status, jetstream) = (self.status.clone(), self.jetstream.clone());
        self.tasks.spawn(async move { record(&status, &jetstream, sequence, &fate).await });
    }

    /// Waits for the records in progress.
    pub async fn wait(self) {
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// True when a message came in through the front.
pub fn is_ingested(headers: Option<&async_nats::HeaderMap>) -> bool {
    headers.is_some_and(|h| h.get(INGEST_HEADER).is_some())
}
