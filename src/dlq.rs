//! The dead-letter queue: messages that can never be written are published to `<prefix>.<stream name>` with the
//! original payload and headers plus `Dlq-*` reason headers, captured by a JetStream stream (`DLQ`). The publish
//! is acknowledged by JetStream before the original is terminated; if it fails the original is NAKed instead.
//! `dlq list` and `dlq replay` read that stream back.

use std::fmt;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, stream};
use bytes::Bytes;

use crate::config::DlqConfig;

/// Pipeline name.
pub const H_STREAM: &str = "Dlq-Stream";
/// Original subject.
pub const H_SUBJECT: &str = "Dlq-Subject";
/// Original stream sequence.
pub const H_SEQUENCE: &str = "Dlq-Sequence";
/// Delivery count when dead-lettered.
pub const H_DELIVERED: &str = "Dlq-Delivered";
/// `decode`, `rejected` or `max_deliver`.
pub const H_CLASS: &str = "Dlq-Class";
/// The error, one line.
pub const H_REASON: &str = "Dlq-Reason";

/// Why a message was dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DlqClass {
    /// The payload cannot be decoded.
    Decode,
    /// The database refused its rows permanently (SQLSTATE 22xxx/23xxx).
    Rejected,
    /// It failed on its last allowed delivery for transient reasons.
    MaxDeliver,
}

impl DlqClass {
    /// The header value.
    pub const fn as_str(self) -> &'static str {
        match self {
            DlqClass::Decode => "decode",
            DlqClass::Rejected => "rejected",
            DlqClass::MaxDeliver => "max_deliver",
        }
    }
}

impl fmt::Display for DlqClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message to dead-letter.
#[derive(Debug, Clone)]
pub struct DeadLetter<'a> {
    /// Pipeline name.
    pub stream: &'a str,
    /// Original subject.
    pub subject: &'a str,
    /// Original stream sequence.
    pub sequence: u64,
    /// Delivery count.
    pub delivered: i64,
    /// Why.
    pub class: DlqClass,
    /// The error.
    pub reason: &'a str,
    /// Original payload.
    pub payload: Bytes,
    /// Original headers.
    pub headers: Option<&'a HeaderMap>,
}

/// DLQ failures.
#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    /// The DLQ stream could not be made or read.
    #[error("dead-letter stream {stream:?}: {message}")]
    Stream {
        /// Stream name.
        stream: String,
        /// What went wrong.
        message: String,
    },
    /// JetStream did not store the dead letter.
    #[error("dead letter not stored on {subject}: {message}")]
    Publish {
        /// The DLQ subject.
        subject: String,
        /// Why.
        message: String,
    },
}

/// Publishes dead letters.
#[derive(Debug, Clone)]
pub struct DeadLetters {
    js: jetstream::Context,
    config: DlqConfig,
}

impl DeadLetters {
    /// Dead letters through `js` as `config` says.
    pub fn new(js: jetstream::Context, config: DlqConfig) -> Self {
        DeadLetters { js, config }
    }

    /// Creates the DLQ stream (file storage, `<prefix>.>`, max age/bytes) when it does not exist.
    pub async fn ensure_stream(&self) -> Result<(), DlqError> {
        let subjects = vec![format!("{}.>", self.config.subject_prefix)];
        let config = stream::Config {
            name: self.config.stream.clone(),
            subjects,
            storage: stream::StorageType::File,
            max_age: self.config.max_age,
            max_bytes: self.config.max_bytes,
            description: Some("db-event-writer dead letters".to_owned()),
            ..Default::default()
        };
        if self.js.get_stream(&self.config.stream).await.is_ok() {
            return Ok(());
        }
        match self.js.create_stream(config).await {
            Ok(_) => {
                tracing::info!(stream = %self.config.stream, "created the dead-letter stream");
                Ok(())
            }
            // Raced by another instance: fine if it exists now.
            Err(e) if self.js.get_stream(&self.config.stream).await.is_err() => {
                Err(DlqError::Stream { stream: self.config.stream.clone(), message: e.to_string() })
            }
            Err(_) => Ok(()),
        }
    }

    /// Publishes and waits for JetStream's acknowledgement: only then may the original be terminated.
    pub async fn publish(&self, dl: &DeadLetter<'_>) -> Result<(), DlqError> {
        let subject = self.config.subject_for(dl.stream);
        let mut headers = dl.headers.cloned().unwrap_or_default();
        headers.insert(H_STREAM, dl.stream);
        headers.insert(H_SUBJECT, dl.subject);
        headers.insert(H_SEQUENCE, dl.sequence.to_string().as_str());
        headers.insert(H_DELIVERED, dl.delivered.to_string().as_str());
        headers.insert(H_CLASS, dl.class.as_str());
        headers.insert(H_REASON, one_line(dl.reason).as_str());
        let err = |message: String| DlqError::Publish { subject: subject.clone(), message };
        let ack = self
            .js
            .publish_with_headers(subject.clone(), headers, dl.payload.clone())
            .await
            .map_err(|e| err(e.to_string()))?;
        ack.await.map_err(|e| err(e.to_string()))?;
        Ok(())
    }
}

/// Header values are one line; long reasons are cut.
fn one_line(reason: &str) -> String {
    let line: String = reason.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if line.len() > 1000 {
        let mut cut = 1000;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}…", &line[..cut])
    } else {
        line
    }
}

/// One stored dead letter.
#[derive(Debug, Clone)]
pub struct Stored {
    /// Its sequence in the DLQ stream.
    pub dlq_sequence: u64,
    /// When it was dead-lettered.
    pub time: String,
    /// The `Dlq-*` and original headers.
    pub headers: HeaderMap,
    /// The original payload.
    pub payload: Bytes,
}

impl Stored {
    /// A `Dlq-*` header's value (`""` when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(|v| v.as_str()).unwrap_or("")
    }
}

/// Reads up to `limit` dead letters, oldest first, optionally of one pipeline.
pub async fn list(
    js: &jetstream::Context,
    config: &DlqConfig,
    pipeline: Option<&str>,
    limit: usize,
) -> Result<Vec<Stored>, DlqError> {
    let err = |message: String| DlqError::Stream { stream: config.stream.clone(), message };
    let mut s = js.get_stream(&config.stream).await.map_err(|e| err(e.to_string()))?;
    let state = s.info().await.map_err(|e| err(e.to_string()))?.state.clone();
    let mut out = Vec::new();
    if state.messages == 0 {
        return Ok(out);
    }
    for seq in state.first_sequence..=state.last_sequence {
        if out.len() >= limit {
            break;
        }
        // Deleted (replayed) sequences are gaps.
        let Ok(m) = s.get_raw_message(seq).await else { continue };
        let stored =
            Stored { dlq_sequence: m.sequence, time: m.time.to_string(), headers: m.headers, payload: m.payload };
        if pipeline.is_none_or(|p| stored.header(H_STREAM) == p) {
            out.push(stored);
        }
    }
    Ok(out)
}

/// Republishes dead letters to their original subjects (original headers, without the `Dlq-*` ones) and
/// deletes each from the DLQ only after JetStream acknowledged its republish. Returns how many were replayed.
pub async fn replay(
    js: &jetstream::Context,
    config: &DlqConfig,
    pipeline: Option<&str>,
    limit: usize,
) -> Result<usize, DlqError> {
    let letters = list(js, config, pipeline, limit).await?;
    let s = js
        .get_stream(&config.stream)
        .await
        .map_err(|e| DlqError::Stream { stream: config.stream.clone(), message: e.to_string() })?;
    let mut replayed = 0;
    for letter in letters {
        let subject = letter.header(H_SUBJECT).to_owned();
        if subject.is_empty() {
            tracing::warn!(dlq_sequence = letter.dlq_sequence, "dead letter without Dlq-Subject; left in place");
            continue;
        }
        let mut headers = HeaderMap::new();
        for (name, values) in letter.headers.iter() {
            if AsRef::<str>::as_ref(name).starts_with("Dlq-") {
                continue;
            }
            for v in values {
                headers.append(name.clone(), v.clone());
            }
        }
        let err = |message: String| DlqError::Publish { subject: subject.clone(), message };
        let ack = js
            .publish_with_headers(subject.clone(), headers, letter.payload.clone())
            .await
            .map_err(|e| err(e.to_string()))?;
        ack.await.map_err(|e| err(e.to_string()))?;
        // Why after the ack: until the republish is stored, the DLQ copy is the only one.
        s.delete_message(letter.dlq_sequence)
            .await
            .map_err(|e| DlqError::Stream { stream: config.stream.clone(), message: e.to_string() })?;
        replayed += 1;
    }
    Ok(replayed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_one_line_and_bounded() {
        assert_eq!(one_line("a\nb\tc"), "a b c");
        let long = "é".repeat(2000);
        let cut = one_line(&long);
        assert!(cut.len() <= 1004 && cut.ends_with('…'));
    }

    #[test]
    fn classes_name_themselves() {
        assert_eq!(DlqClass::Decode.to_string(), "decode");
        assert_eq!(DlqClass::Rejected.as_str(), "rejected");
        assert_eq!(DlqClass::MaxDeliver.as_str(), "max_deliver");
    }
}
