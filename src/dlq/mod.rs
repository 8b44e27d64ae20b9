//! The dead-letter queue: messages that can never be written are published to `<prefix>.<stream name>` with the
//! original payload and headers plus `Dlq-*` reason headers, captured by a JetStream stream (`DLQ`, discard-new:
//! a full DLQ refuses new letters rather than silently dropping old ones). The settler terminates the original
//! only after JetStream acknowledged its dead letter ([`DeadLetters::publish`] says whether it did).
//! [`tools`] reads that stream back for the `dlq` commands (list, show, replay exactly once, purge).
//!
//! Uses [`crate::jetstream`] (stream set-up), the validated [`crate::config::DlqConfig`] and [`crate::redact`] (reasons
//! are scrubbed of secrets).

use std::fmt;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, stream};
use bytes::Bytes;

use crate::config::DlqConfig;

pub mod tools;

/// Pipeline name.
pub const H_STREAM: &str = "Dlq-Stream";
/// Original subject.
pub const H_SUBJECT: &str = "Dlq-Subject";
/// Original stream sequence.
pub const H_SEQUENCE: &str = "Dlq-Sequence";
/// Delivery count when dead-lettered.
pub const H_DELIVERED: &str = "Dlq-Delivered";
/// `decode`, `limit`, `rejected` or `max_deliver`.
pub const H_CLASS: &str = "Dlq-Class";
/// The error, one line.
pub const H_REASON: &str = "Dlq-Reason";
/// The original message's identity: `<stream identity>:<sequence>:<published, ns>`. A replayed message carries
/// it, so its rows get the identity the original would have given them (see [`Origin`]).
pub const H_ORIGIN: &str = "Dlq-Origin";
/// What was cut to fit the server's `max_payload`: `reason`, `payload`, `headers` (comma-separated).
pub const H_TRUNCATED: &str = "Dlq-Truncated";
/// The original payload's size in bytes, when the payload was cut.
pub const H_SIZE: &str = "Dlq-Size";
/// NATS control headers of the original (`Nats-Msg-Id`, `Nats-Expected-*`, ...) are kept under this prefix: as
/// themselves they would steer the dead letter's own publish (deduplicate it, or make it fail).
pub const H_ORIGINAL_PREFIX: &str = "Dlq-Original-";

/// Why a message was dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DlqClass {
    /// The payload cannot be decoded (or has no JetStream metadata).
    Decode,
    /// The payload decodes into more than a per-message limit allows (rows, bytes, nesting, number size).
    Limit,
    /// The database refused its rows permanently (SQLSTATE 22xxx, 23xxx, 54xxx, P0xxx).
    Rejected,
    /// It was delivered `max_deliver` times without being settled: transient failures, or a crash loop.
    MaxDeliver,
}

impl DlqClass {
    /// Every class.
    pub const ALL: [DlqClass; 4] = [DlqClass::Decode, DlqClass::Limit, DlqClass::Rejected, DlqClass::MaxDeliver];
    /// Their names (metrics start every class's counter at 0).
    pub const NAMES: [&'static str; 4] = ["decode", "limit", "rejected", "max_deliver"];

    /// The header value.
    pub const fn as_str(self) -> &'static str {
        match self {
            DlqClass::Decode => "decode",
            DlqClass::Limit => "limit",
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

/// The identity of a message for its rows: its stream's incarnation ([`crate::ledger::identity`]), its sequence
/// and its publish time. A replayed message takes its original's, from the [`H_ORIGIN`] header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The stream identity.
    pub stream: String,
    /// The stream sequence.
    pub sequence: u64,
    /// When JetStream stored it, in nanoseconds since the epoch.
    pub published_ns: i128,
}

impl Origin {
    /// The header value.
    pub fn header(&self) -> String {
        format!("{}:{}:{}", self.stream, self.sequence, self.published_ns)
    }

    /// Reads a header value; `None` when it is not one.
    pub fn parse(text: &str) -> Option<Origin> {
        let (rest, published) = text.rsplit_once(':')?;
        let (stream, sequence) = rest.rsplit_once(':')?;
        if stream.is_empty() {
            return None;
        }
        Some(Origin {
            stream: stream.to_owned(),
            sequence: sequence.parse().ok()?,
            published_ns: published.parse().ok()?,
        })
    }

    /// The origin a message's headers carry (it is a replay), if any.
    pub fn of(headers: Option<&HeaderMap>) -> Option<Origin> {
        headers?.get(H_ORIGIN).and_then(|v| Origin::parse(v.as_str()))
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
    /// The identity its rows would have had.
    pub origin: &'a Origin,
    /// `<stream identity>:<sequence>` of this very delivery: the dead letter's `Nats-Msg-Id`, so dead-lettering
    /// the same message twice (its Term lost) within the DLQ's duplicate window stores it once.
    pub msg_id: &'a str,
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
    /// A `dlq` command's argument names nothing.
    #[error("{0}")]
    Usage(String),
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

    /// Creates the DLQ stream (file storage, `<prefix>.>`, max age/bytes, discard new) when it does not exist,
    /// and makes an existing one discard new letters rather than old ones (it is this daemon's own stream).
    pub async fn ensure_stream(&self) -> Result<(), DlqError> {
        let err = |message: String| DlqError::Stream { stream: self.config.stream.clone(), message };
        let want = stream::Config {
            name: self.config.stream.clone(),
            subjects: vec![format!("{}.>", self.config.subject_prefix)],
            storage: stream::StorageType::File,
            max_age: self.config.max_age,
            max_bytes: self.config.max_bytes,
            discard: stream::DiscardPolicy::New,
            num_replicas: self.config.replicas,
            description: Some("db-event-writer dead letters".to_owned()),
            ..Default::default()
        };
        let mut existing =
            crate::jetstream::get_or_create_stream(&self.js, want).await.map_err(|e| err(e.to_string()))?;
        let info = existing.info().await.map_err(|e| err(e.to_string()))?;
        if info.config.discard != stream::DiscardPolicy::New {
            let config = stream::Config { discard: stream::DiscardPolicy::New, ..info.config.clone() };
            self.js.update_stream(config).await.map_err(|e| err(format!("cannot make it discard new letters: {e}")))?;
            tracing::info!(stream = %self.config.stream, "the dead-letter stream now refuses new letters when full, instead of dropping old ones");
        }
        Ok(())
    }

    /// Publishes and waits for JetStream's acknowledgement: only then may the original be terminated. A letter
    /// that would exceed the server's `max_payload` is cut to fit (see [`H_TRUNCATED`]); a missing DLQ stream is
    /// created again and the publish retried once.
    pub async fn publish(&self, dl: &DeadLetter<'_>) -> Result<(), DlqError> {
        let subject = self.config.subject_for(dl.stream);
        let max_payload = self.js.client().server_info().max_payload;
        let (headers, payload) = letter(dl, max_payload);
        let err = |message: String| DlqError::Publish { subject: subject.clone(), message };
        let mut recreated = false;
        loop {
            let sent = self.js.publish_with_headers(subject.clone(), headers.clone(), payload.clone()).await;
            let result = match sent {
                Ok(ack) => ack.await,
                Err(e) => Err(e),
            };
            match result {
                // `duplicate`: this very delivery's letter is stored already (an earlier Term was lost).
                Ok(_) => return Ok(()),
                Err(e)
                    if !recreated && e.kind() == async_nats::jetstream::context::PublishErrorKind::StreamNotFound =>
                {
                    tracing::warn!(stream = %self.config.stream, "the dead-letter stream is gone; creating it again");
                    self.ensure_stream().await?;
                    recreated = true;
                }
                Err(e) => return Err(err(e.to_string())),
            }
        }
    }
}

/// Header block size on the wire: `NATS/1.0\r\n`, `Name: value\r\n` each, `\r\n`.
fn headers_size(headers: &HeaderMap) -> usize {
    12 + headers
        .iter()
        .map(|(name, values)| {
            values.iter().map(|v| AsRef::<str>::as_ref(name).len() + v.as_str().len() + 4).sum::<usize>()
        })
        .sum::<usize>()
}

/// The dead letter's headers and payload, cut to fit `max_payload`: first the reason, then the payload, then the
/// original headers; what was cut is said in [`H_TRUNCATED`].
fn letter(dl: &DeadLetter<'_>, max_payload: usize) -> (HeaderMap, Bytes) {
    let ours = |reason: &str| {
        let mut h = HeaderMap::new();
        h.insert("Nats-Msg-Id", dl.msg_id);
        h.insert(H_STREAM, dl.stream);
        h.insert(H_SUBJECT, dl.subject);
        h.insert(H_SEQUENCE, dl.sequence.to_string().as_str());
        h.insert(H_DELIVERED, dl.delivered.to_string().as_str());
        h.insert(H_CLASS, dl.class.as_str());
        h.insert(H_REASON, one_line(&crate::redact::scrub(reason), 1000).as_str());
        h.insert(H_ORIGIN, dl.origin.header().as_str());
        h
    };
    let with_original = |mut h: HeaderMap| {
        for (name, values) in dl.headers.iter().flat_map(|h| h.iter()) {
            let name: &str = name.as_ref();
            // The original's own Dlq-* headers (it is a replay) are replaced by ours; control headers are renamed.
            let renamed = if name.len() >= 4 && name[..4].eq_ignore_ascii_case("dlq-") {
                if !name.starts_with(H_ORIGINAL_PREFIX) {
                    continue;
                }
                name.to_owned()
            } else if name.len() >= 5 && name[..5].eq_ignore_ascii_case("nats-") {
                format!("{H_ORIGINAL_PREFIX}{name}")
            } else {
                name.to_owned()
            };
            for v in values {
                h.append(renamed.as_str(), v.as_str());
            }
        }
        h
    };
    let fits = |h: &HeaderMap, payload: usize| headers_size(h) + payload <= max_payload;
    let full = with_original(ours(dl.reason));
    if fits(&full, dl.payload.len()) {
        return (full, dl.payload.clone());
    }
    let short_reason = one_line(dl.reason, 200);
    let mut cut = with_original(ours(&short_reason));
    cut.insert(H_TRUNCATED, "reason");
    if fits(&cut, dl.payload.len()) {
        return (cut, dl.payload.clone());
    }
    // The payload itself does not fit beside the headers: keep what identifies it, say its size.
    cut.insert(H_TRUNCATED, "reason,payload");
    cut.insert(H_SIZE, dl.payload.len().to_string().as_str());
    if fits(&cut, 0) {
        return (cut, Bytes::new());
    }
    let mut bare = ours(&short_reason);
    bare.insert(H_TRUNCATED, "reason,payload,headers");
    bare.insert(H_SIZE, dl.payload.len().to_string().as_str());
    (bare, Bytes::new())
}

/// Header values are one line; long reasons are cut at `max` bytes.
fn one_line(reason: &str, max: usize) -> String {
    let line: String = reason.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    if line.len() > max {
        let mut cut = max;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}…", &line[..cut])
    } else {
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_one_line_and_bounded() {
        assert_eq!(one_line("a\nb\tc", 1000), "a b c");
        let long = "é".repeat(2000);
        let cut = one_line(&long, 1000);
        assert!(cut.len() <= 1004 && cut.ends_with('…'));
    }

    #[test]
    fn classes_name_themselves() {
        assert_eq!(DlqClass::ALL.map(DlqClass::as_str), DlqClass::NAMES);
        assert_eq!(DlqClass::Decode.to_string(), "decode");
        assert_eq!(DlqClass::Limit.as_str(), "limit");
        assert_eq!(DlqClass::Rejected.as_str(), "rejected");
        assert_eq!(DlqClass::MaxDeliver.as_str(), "max_deliver");
    }

    #[test]
    fn origins_read_back_what_they_write_even_with_colons_in_the_name() {
        let o = Origin { stream: "a:b.1".into(), sequence: 42, published_ns: 1_700_000_000_123_456_789 };
        assert_eq!(Origin::parse(&o.header()), Some(o));
        for bad in ["", "x", "s:1", ":1:2", "s:x:2", "s:1:y"] {
            assert_eq!(Origin::parse(bad), None, "{bad}");
        }
    }

    fn dead_letter<'a>(payload: usize, headers: &'a HeaderMap, origin: &'a Origin, reason: &'a str) -> DeadLetter<'a> {
        DeadLetter {
            stream: "telemetry",
            subject: "telemetry.x",
            sequence: 7,
            delivered: 1,
            class: DlqClass::Decode,
            reason,
            payload: Bytes::from(vec![b'x'; payload]),
            headers: Some(headers),
            origin,
            msg_id: "events:7",
        }
    }

    #[test]
    fn control_headers_are_renamed_and_our_headers_replace_a_replays() {
        let mut original = HeaderMap::new();
        original.insert("Nats-Msg-Id", "gw-1");
        original.insert("Nats-Expected-Stream", "events");
        original.insert("traceparent", "00-abc");
        original.insert(H_CLASS, "stale");
        original.insert("Dlq-Original-Nats-Rollup", "sub");
        let origin = Origin { stream: "events".into(), sequence: 7, published_ns: 1 };
        let (h, payload) = letter(&dead_letter(10, &original, &origin, "bad"), 1 << 20);
        assert_eq!(payload.len(), 10);
        assert_eq!(h.get("Nats-Msg-Id").unwrap().as_str(), "events:7", "the letter's own id");
        assert_eq!(h.get("Dlq-Original-Nats-Msg-Id").unwrap().as_str(), "gw-1");
        assert_eq!(h.get("Dlq-Original-Nats-Expected-Stream").unwrap().as_str(), "events");
        assert!(h.get("Nats-Expected-Stream").is_none());
        assert_eq!(h.get("traceparent").unwrap().as_str(), "00-abc");
        assert_eq!(h.get(H_CLASS).unwrap().as_str(), "decode");
        assert_eq!(h.get("Dlq-Original-Nats-Rollup").unwrap().as_str(), "sub");
        assert_eq!(h.get(H_ORIGIN).unwrap().as_str(), "events:7:1");
    }

    #[test]
    fn letters_are_cut_to_fit_max_payload_reason_first_then_payload_then_headers() {
        let mut original = HeaderMap::new();
        original.insert("big", "y".repeat(3000).as_str());
        let origin = Origin { stream: "events".into(), sequence: 7, published_ns: 1 };
        let long_reason = "r".repeat(900);
        let max = 8192;
        // Fits as it is.
        let (h, p) = letter(&dead_letter(1000, &original, &origin, "short"), max);
        assert!(h.get(H_TRUNCATED).is_none() && p.len() == 1000);
        // Fits once the reason is short.
        let dl = dead_letter(max - 3000 - 700, &original, &origin, &long_reason);
        let (h, p) = letter(&dl, max);
        assert_eq!(h.get(H_TRUNCATED).unwrap().as_str(), "reason");
        assert!(headers_size(&h) + p.len() <= max);
        // The payload alone is over: cut, its size said.
        let (h, p) = letter(&dead_letter(max, &original, &origin, "bad"), max);
        assert_eq!(h.get(H_TRUNCATED).unwrap().as_str(), "reason,payload");
        assert_eq!(h.get(H_SIZE).unwrap().as_str(), max.to_string());
        assert!(p.is_empty() && headers_size(&h) <= max);
        assert_eq!(h.get("big").unwrap().as_str().len(), 3000);
        // Even the original headers are over: only ours are left.
        let (h, p) = letter(&dead_letter(max, &original, &origin, "bad"), 2048);
        assert_eq!(h.get(H_TRUNCATED).unwrap().as_str(), "reason,payload,headers");
        assert!(p.is_empty() && h.get("big").is_none() && headers_size(&h) <= 2048);
        assert_eq!(h.get(H_SEQUENCE).unwrap().as_str(), "7");
    }
}
