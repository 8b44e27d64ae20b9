//! The `dlq` commands' side of the dead-letter stream: read letters back with a [`Filter`] (pipeline, class,
//! original subject, time) and tell how many matched beyond the limit ([`list`]); one letter whole ([`show`]);
//! republish letters to their original subjects exactly once ([`replay`]); delete them ([`purge`]). Replay and
//! purge take the same filter and can be dry runs.
//!
//! Uses the `Dlq-*` header names of [`super`] and the validated [`crate::config::DlqConfig`].

use async_nats::HeaderMap;
use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;

use super::{DlqError, H_CLASS, H_ORIGIN, H_ORIGINAL_PREFIX, H_STREAM, H_SUBJECT};
use crate::config::DlqConfig;

/// JetStream API error codes of a delete that found nothing to delete: "no message found", and a failed delete
/// (whose description then says "no message found").
const NO_MESSAGE: u64 = 10037;
const DELETE_FAILED: u64 = 10057;

/// One stored dead letter.
#[derive(Debug, Clone)]
pub struct Stored {
    /// Its sequence in the DLQ stream.
    pub dlq_sequence: u64,
    /// When it was dead-lettered.
    pub time: DateTime<Utc>,
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

    /// The time as RFC 3339 in UTC, to the millisecond.
    pub fn time_text(&self) -> String {
        self.time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    }
}

/// Which dead letters a command works on, oldest first, at most `limit`.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only this pipeline's (the `[[stream]]` name).
    pub stream: Option<String>,
    /// Only this class (`decode`, `limit`, `rejected`, `max_deliver`).
    pub class: Option<String>,
    /// Only letters whose original subject matches this NATS pattern (`*`, `>`).
    pub subject: Option<String>,
    /// Only letters dead-lettered at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// At most this many (`usize::MAX`: all).
    pub limit: usize,
}

impl Filter {
    /// Every letter of `stream` (or of every stream), at most `limit`.
    pub fn of(stream: Option<&str>, limit: usize) -> Self {
        Filter { stream: stream.map(str::to_owned), limit, ..Filter::default() }
    }

    /// Whether `letter` passes (the limit aside).
    pub fn matches(&self, letter: &Stored) -> bool {
        self.stream.as_deref().is_none_or(|s| letter.header(H_STREAM) == s)
            && self.class.as_deref().is_none_or(|c| letter.header(H_CLASS) == c)
            && self.subject.as_deref().is_none_or(|p| crate::config::subject_matches(p, letter.header(H_SUBJECT)))
            && self.since.is_none_or(|t| letter.time >= t)
    }
}

/// What [`list`] found.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    /// The first `limit` matching letters, oldest first.
    pub letters: Vec<Stored>,
    /// How many letters matched in all.
    pub matched: usize,
    /// Letters in the DLQ stream in all.
    pub total: u64,
}

impl Listing {
    /// More letters matched than were returned.
    pub fn capped(&self) -> bool {
        self.matched > self.letters.len()
    }
}

fn stream_error(config: &DlqConfig, e: impl std::fmt::Display) -> DlqError {
    DlqError::Stream { stream: config.stream.clone(), message: e.to_string() }
}

/// Reads the letters `filter` selects, oldest first, counting every match (so the caller can say it capped).
pub async fn list(js: &jetstream::Context, config: &DlqConfig, filter: &Filter) -> Result<Listing, DlqError> {
    let mut s = js.get_stream(&config.stream).await.map_err(|e| stream_error(config, e))?;
    let state = s.info().await.map_err(|e| stream_error(config, e))?.state.clone();
    let mut out = Listing { total: state.messages, ..Listing::default() };
    if state.messages == 0 {
        return Ok(out);
    }
    for seq in state.first_sequence..=state.last_sequence {
        // Deleted (replayed, purged) sequences are gaps.
        let Ok(m) = s.get_raw_message(seq).await else { continue };
        let time = DateTime::from_timestamp(m.time.unix_timestamp(), m.time.nanosecond()).unwrap_or_default();
        let stored = Stored { dlq_sequence: m.sequence, time, headers: m.headers, payload: m.payload };
        if filter.matches(&stored) {
            out.matched += 1;
            if out.letters.len() < filter.limit {
                out.letters.push(stored);
            }
        }
    }
    Ok(out)
}

/// The letter at DLQ sequence `seq`.
pub async fn show(js: &jetstream::Context, config: &DlqConfig, seq: u64) -> Result<Stored, DlqError> {
    let s = js.get_stream(&config.stream).await.map_err(|e| stream_error(config, e))?;
    let m = s
        .get_raw_message(seq)
        .await
        .map_err(|e| DlqError::Usage(format!("no dead letter at sequence {seq} of {}: {e}", config.stream)))?;
    let time = DateTime::from_timestamp(m.time.unix_timestamp(), m.time.nanosecond()).unwrap_or_default();
    Ok(Stored { dlq_sequence: m.sequence, time, headers: m.headers, payload: m.payload })
}

/// Refuses a `--stream` that names no configured `[[stream]]` and has no letter in the DLQ (a typo would
/// otherwise answer "0 dead letters").
pub async fn check_stream(
    js: &jetstream::Context,
    config: &DlqConfig,
    configured: &[&str],
    name: &str,
) -> Result<(), DlqError> {
    if configured.contains(&name) {
        return Ok(());
    }
    let unknown =
        || DlqError::Usage(format!("no [[stream]] is named {name:?} (configured: {})", configured.join(", ")));
    let Ok(s) = js.get_stream(&config.stream).await else { return Err(unknown()) };
    let subject = config.subject_for(name);
    let found = match s.info_with_subjects(subject.clone()).await {
        Ok(subjects) => subjects.try_fold(0u64, |n, (_, count)| async move { Ok(n + count as u64) }).await.unwrap_or(0),
        Err(_) => 0,
    };
    if found > 0 { Ok(()) } else { Err(unknown()) }
}

/// What a replay or purge did (or, in a dry run, would do).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Republished (or found republished by a concurrent replay) and removed from the DLQ; purged.
    pub replayed: usize,
    /// Left in the DLQ: JetStream called the republish a duplicate of another message, or it cannot be replayed.
    pub kept: usize,
    /// Matched the filter beyond its limit (left for another run).
    pub beyond_limit: usize,
}

/// The `Nats-Msg-Id` of a dead letter's replay: one per dead letter, so two replays of it (concurrent, or a
/// re-run after an interruption) are stored once within the target stream's duplicate window.
pub fn replay_id(dlq_stream: &str, dlq_sequence: u64) -> String {
    format!("dlq:{dlq_stream}:{dlq_sequence}")
}

/// What a replay or purge works on.
enum Selected {
    /// A dry run: what it would do.
    DryRun(Replayed),
    /// The letters, and the count of those beyond the limit.
    Letters(Listing, Replayed),
}

/// The letters `filter` selects for a replay or purge, or (`dry_run`) how many it would touch.
async fn selected(
    js: &jetstream::Context,
    config: &DlqConfig,
    filter: &Filter,
    dry_run: bool,
) -> Result<Selected, DlqError> {
    let listing = list(js, config, filter).await?;
    let mut done = Replayed { beyond_limit: listing.matched - listing.letters.len(), ..Replayed::default() };
    if dry_run {
        done.replayed = listing.letters.len();
        return Ok(Selected::DryRun(done));
    }
    Ok(Selected::Letters(listing, done))
}

/// Republishes the letters `filter` selects to their original subjects and deletes each from the DLQ only once
/// its republish is stored (`dry_run`: counts them and touches nothing). The republished message carries the
/// original's headers (control headers stay under [`H_ORIGINAL_PREFIX`]), a `Nats-Msg-Id` of its own
/// ([`replay_id`]) and the original's identity ([`H_ORIGIN`]), so its rows are the rows the original would have
/// written: replaying twice, concurrently or after an interrupted run writes each row once. A republish that
/// JetStream answers "duplicate" of a message that is not this letter's replay keeps the letter.
pub async fn replay(
    js: &jetstream::Context,
    config: &DlqConfig,
    filter: &Filter,
    dry_run: bool,
) -> Result<Replayed, DlqError> {
    let (listing, mut done) = match selected(js, config, filter, dry_run).await? {
        Selected::DryRun(done) => return Ok(done),
        Selected::Letters(listing, done) => (listing, done),
    };
    let s = js.get_stream(&config.stream).await.map_err(|e| stream_error(config, e))?;
    for letter in listing.letters {
        let subject = letter.header(H_SUBJECT).to_owned();
        if subject.is_empty() {
            tracing::warn!(dlq_sequence = letter.dlq_sequence, "dead letter without Dlq-Subject; left in place");
            done.kept += 1;
            continue;
        }
        let id = replay_id(&config.stream, letter.dlq_sequence);
        let mut headers = HeaderMap::new();
        for (name, values) in letter.headers.iter() {
            let name: &str = name.as_ref();
            // Our own headers go, except the renamed control headers (kept as they are: informative only).
            if (name.starts_with("Dlq-") && !name.starts_with(H_ORIGINAL_PREFIX)) || name == "Nats-Msg-Id" {
                continue;
            }
            for v in values {
                headers.append(name, v.as_str());
            }
        }
        headers.insert("Nats-Msg-Id", id.as_str());
        if !letter.header(H_ORIGIN).is_empty() {
            headers.insert(H_ORIGIN, letter.header(H_ORIGIN));
        }
        let err = |message: String| DlqError::Publish { subject: subject.clone(), message };
        let ack = js
            .publish_with_headers(subject.clone(), headers, letter.payload.clone())
            .await
            .map_err(|e| err(e.to_string()))?;
        let ack = ack.await.map_err(|e| err(e.to_string()))?;
        if ack.duplicate && !is_replay_of(js, &ack, &id).await {
            tracing::warn!(
                dlq_sequence = letter.dlq_sequence, stream = %ack.stream, sequence = ack.sequence,
                "JetStream called the replay a duplicate of another message; the dead letter is kept"
            );
            done.kept += 1;
            continue;
        }
        // Why after the ack: until the republish is stored, the DLQ copy is the only one.
        delete(&s, config, letter.dlq_sequence).await?;
        done.replayed += 1;
    }
    Ok(done)
}

/// Deletes the letters `filter` selects (`dry_run`: counts them and touches nothing).
pub async fn purge(
    js: &jetstream::Context,
    config: &DlqConfig,
    filter: &Filter,
    dry_run: bool,
) -> Result<Replayed, DlqError> {
    let (listing, mut done) = match selected(js, config, filter, dry_run).await? {
        Selected::DryRun(done) => return Ok(done),
        Selected::Letters(listing, done) => (listing, done),
    };
    let s = js.get_stream(&config.stream).await.map_err(|e| stream_error(config, e))?;
    for letter in &listing.letters {
        delete(&s, config, letter.dlq_sequence).await?;
        done.replayed += 1;
    }
    Ok(done)
}

/// Deletes one letter; one deleted already (by a concurrent replay or purge) is gone all the same.
async fn delete(s: &stream::Stream, config: &DlqConfig, seq: u64) -> Result<(), DlqError> {
    match s.delete_message(seq).await {
        Ok(_) => Ok(()),
        Err(e) if already_deleted(&e) => Ok(()),
        Err(e) => Err(stream_error(config, e)),
    }
}

/// A delete that found nothing to delete: a concurrent replay deleted the letter first.
fn already_deleted(e: &stream::DeleteMessageError) -> bool {
    match e.kind() {
        stream::DeleteMessageErrorKind::JetStream(j) => {
            j.error_code().0 == NO_MESSAGE
                || (j.error_code().0 == DELETE_FAILED && j.to_string().contains("no message found"))
        }
        _ => false,
    }
}

/// Whether the message a duplicate acknowledgement points at is this letter's replay (by another run).
async fn is_replay_of(js: &jetstream::Context, ack: &jetstream::publish::PublishAck, id: &str) -> bool {
    let Ok(stream) = js.get_stream(&ack.stream).await else { return false };
    match stream.get_raw_message(ack.sequence).await {
        Ok(m) => m.headers.get("Nats-Msg-Id").is_some_and(|v| v.as_str() == id),
        // Gone already (acked from a work queue, aged out): it was stored, so it was the replay.
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(stream: &str, class: &str, subject: &str, secs: i64) -> Stored {
        let mut headers = HeaderMap::new();
        headers.insert(H_STREAM, stream);
        headers.insert(H_CLASS, class);
        headers.insert(H_SUBJECT, subject);
        Stored { dlq_sequence: 1, time: DateTime::from_timestamp(secs, 0).unwrap(), headers, payload: Bytes::new() }
    }

    #[test]
    fn a_filter_selects_by_every_field_it_has() {
        let l = letter("telemetry", "decode", "telemetry.host.cpu", 1000);
        assert!(Filter::of(None, 10).matches(&l));
        assert!(Filter::of(Some("telemetry"), 10).matches(&l));
        assert!(!Filter::of(Some("logs"), 10).matches(&l));
        let f = |class: Option<&str>, subject: Option<&str>, since: Option<i64>| Filter {
            class: class.map(str::to_owned),
            subject: subject.map(str::to_owned),
            since: since.map(|s| DateTime::from_timestamp(s, 0).unwrap()),
            ..Filter::of(None, 10)
        };
        assert!(f(Some("decode"), None, None).matches(&l));
        assert!(!f(Some("rejected"), None, None).matches(&l));
        assert!(f(None, Some("telemetry.>"), None).matches(&l));
        assert!(f(None, Some("telemetry.*.cpu"), None).matches(&l));
        assert!(!f(None, Some("telemetry.*"), None).matches(&l));
        assert!(f(None, None, Some(1000)).matches(&l));
        assert!(!f(None, None, Some(1001)).matches(&l));
        assert!(!f(Some("decode"), Some("logs.>"), None).matches(&l), "every field must pass");
    }

    #[test]
    fn times_print_as_rfc3339_utc() {
        let mut l = letter("s", "decode", "a", 1_700_000_000);
        l.time += chrono::Duration::milliseconds(179);
        assert_eq!(l.time_text(), "2023-11-14T22:13:20.179Z");
    }
}
