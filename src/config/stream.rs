//! The `[[stream]]`s: each pipeline's settings validated (names, subjects, batch, acknowledgement, limits), and
//! the checks of NATS names and subject filters other files use too.
//!
//! Uses the config types and [`super::locate`].

use std::collections::HashMap;

use toml::Spanned;

use super::locate::{Locator, opt_duration, positive};
use super::raw::*;
use super::types::*;

pub(super) fn streams_config(
    raw: Vec<Spanned<RawStream>>,
    at: &Locator<'_>,
    defaults: &Defaults,
) -> Result<Vec<StreamConfig>, ConfigError> {
    if raw.is_empty() {
        return Err(at.err(0..0, "stream", "no [[stream]] is configured; the daemon would do nothing"));
    }
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut consumers: HashMap<(String, String), usize> = HashMap::new();
    let mut streams = Vec::with_capacity(raw.len());
    for (i, s) in raw.into_iter().enumerate() {
        let s = s.into_inner();
        let k = |field: &str| format!("stream[{i}].{field}");
        check_name(s.name.get_ref()).map_err(|m| at.err(s.name.span(), k("name"), m))?;
        if let Some(first) = names.insert(s.name.get_ref().clone(), i) {
            return Err(at.err(
                s.name.span(),
                k("name"),
                format!("duplicate stream name {:?} (also stream[{first}])", s.name.get_ref()),
            ));
        }
        check_name(s.jetstream.get_ref()).map_err(|m| at.err(s.jetstream.span(), k("jetstream"), m))?;
        check_name(s.consumer.get_ref()).map_err(|m| at.err(s.consumer.span(), k("consumer"), m))?;
        let pair = (s.jetstream.get_ref().clone(), s.consumer.get_ref().clone());
        if let Some(first) = consumers.insert(pair, i) {
            return Err(at.err(
                s.consumer.span(),
                k("consumer"),
                format!(
                    "duplicate consumer {:?} on JetStream stream {:?} (also stream[{first}]); two pipelines would share one cursor",
                    s.consumer.get_ref(),
                    s.jetstream.get_ref()
                ),
            ));
        }
        streams.push(stream_config(i, s, at, defaults)?);
    }
    Ok(streams)
}

/// One `[[stream]]` (its name and consumer already checked for duplicates).
fn stream_config(i: usize, s: RawStream, at: &Locator<'_>, defaults: &Defaults) -> Result<StreamConfig, ConfigError> {
    let k = |field: &str| format!("stream[{i}].{field}");
    if s.subjects.get_ref().is_empty() {
        return Err(at.err(s.subjects.span(), k("subjects"), "must list at least one subject"));
    }
    let mut subjects = Vec::new();
    for subject in s.subjects.get_ref() {
        check_subject(subject.get_ref()).map_err(|m| at.err(subject.span(), k("subjects"), m))?;
        if subjects.contains(subject.get_ref()) {
            return Err(at.err(subject.span(), k("subjects"), format!("subject {:?} listed twice", subject.get_ref())));
        }
        subjects.push(subject.get_ref().clone());
    }
    let processor = *s.processor.get_ref();
    let batch = defaults.batch_of(processor);
    let batch_size = match &s.batch_size {
        Some(b) => positive(b, 1, 100_000).map_err(|m| at.err(b.span(), k("batch_size"), m))? as usize,
        None => batch.size,
    };
    let batch_timeout = opt_duration(at, s.batch_timeout.as_ref(), &k("batch_timeout"))?.unwrap_or(batch.timeout);
    let ack_wait = opt_duration(at, s.ack_wait.as_ref(), &k("ack_wait"))?.unwrap_or(StreamConfig::DEFAULT_ACK_WAIT);
    let batches_in_flight = match &s.batches_in_flight {
        Some(b) => positive(b, 1, 16).map_err(|m| at.err(b.span(), k("batches_in_flight"), m))? as usize,
        None => StreamConfig::DEFAULT_BATCHES_IN_FLIGHT,
    };
    let writers = match &s.writers {
        Some(w) => positive(w, 1, 16).map_err(|m| at.err(w.span(), k("writers"), m))? as usize,
        None => StreamConfig::DEFAULT_WRITERS,
    };
    // Open batch + queued batches + the ones being written must fit, or the pipeline starves.
    let needed = (batch_size * (batches_in_flight + writers + 1)) as i64;
    let max_ack_pending = match &s.max_ack_pending {
        Some(m) => {
            let v = positive(m, 1, i64::from(i32::MAX)).map_err(|e| at.err(m.span(), k("max_ack_pending"), e))?;
            if v < batch_size as i64 {
                return Err(at.err(
                    m.span(),
                    k("max_ack_pending"),
                    format!("{v} is below batch_size {batch_size}: a batch could never fill"),
                ));
            }
            v
        }
        None => needed.max(StreamConfig::MIN_DEFAULT_MAX_ACK_PENDING),
    };
    let max_deliver = match &s.max_deliver {
        Some(m) if *m.get_ref() == -1 || *m.get_ref() >= 1 => *m.get_ref(),
        Some(m) => {
            return Err(at.err(m.span(), k("max_deliver"), "must be -1 (unlimited) or at least 1"));
        }
        None => StreamConfig::DEFAULT_MAX_DELIVER,
    };
    let nak_delay = opt_duration(at, s.nak_delay.as_ref(), &k("nak_delay"))?.unwrap_or(StreamConfig::DEFAULT_NAK_DELAY);
    let nak_delay_max =
        opt_duration(at, s.nak_delay_max.as_ref(), &k("nak_delay_max"))?.unwrap_or(StreamConfig::DEFAULT_NAK_DELAY_MAX);
    let max_rows_per_message = match &s.max_rows_per_message {
        Some(m) => positive(m, 1, 100_000_000).map_err(|e| at.err(m.span(), k("max_rows_per_message"), e))? as usize,
        None => StreamConfig::DEFAULT_MAX_ROWS_PER_MESSAGE,
    };
    let max_expansion = match &s.max_expansion {
        Some(m) => positive(m, 1, 1_000_000).map_err(|e| at.err(m.span(), k("max_expansion"), e))? as usize,
        None => StreamConfig::DEFAULT_MAX_EXPANSION,
    };
    let max_bytes_in_flight = match &s.max_bytes_in_flight {
        Some(m) => positive(m, 1 << 20, 1 << 40).map_err(|e| at.err(m.span(), k("max_bytes_in_flight"), e))? as usize,
        None => StreamConfig::DEFAULT_MAX_BYTES_IN_FLIGHT,
    };
    if nak_delay_max < nak_delay {
        let span = s.nak_delay_max.as_ref().map(|d| d.span()).unwrap_or(0..0);
        return Err(at.err(span, k("nak_delay_max"), "must not be below nak_delay"));
    }
    Ok(StreamConfig {
        name: s.name.into_inner(),
        jetstream: s.jetstream.into_inner(),
        consumer: s.consumer.into_inner(),
        subjects,
        processor,
        batch_size,
        batch_timeout,
        ack_wait,
        max_ack_pending,
        max_deliver,
        nak_delay,
        nak_delay_max,
        batches_in_flight,
        writers,
        validate: s.validate.as_ref().is_some_and(|v| *v.get_ref()),
        max_rows_per_message,
        max_expansion,
        max_bytes_in_flight,
    })
}

/// JetStream stream and consumer names, and pipeline names: no whitespace, dots, wildcards or path separators.
/// Checks a JetStream stream or consumer name (no whitespace, '.', '*', '>', '/', '\\').
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > 255 {
        return Err("longer than 255 bytes".into());
    }
    if let Some(c) =
        name.chars().find(|c| c.is_whitespace() || c.is_control() || matches!(c, '.' | '*' | '>' | '/' | '\\'))
    {
        return Err(format!("{name:?} contains {c:?}; names may not contain whitespace, '.', '*', '>', '/' or '\\'"));
    }
    Ok(())
}

/// A NATS subject filter (for other modules' files: the ingest tokens' `subjects`).
pub fn check_subject_filter(subject: &str) -> Result<(), String> {
    check_subject(subject)
}

/// A NATS subject filter: non-empty tokens, `*` only as a whole token, `>` only as the last token.
pub(super) fn check_subject(subject: &str) -> Result<(), String> {
    if subject.is_empty() {
        return Err("empty subject".into());
    }
    let tokens: Vec<&str> = subject.split('.').collect();
    for (i, t) in tokens.iter().enumerate() {
        if t.is_empty() {
            return Err(format!("subject {subject:?} has an empty token"));
        }
        if t.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("subject {subject:?} contains whitespace"));
        }
        if (t.contains('*') && *t != "*") || (t.contains('>') && *t != ">") {
            return Err(format!("subject {subject:?}: a wildcard must be a whole token"));
        }
        if *t == ">" && i + 1 != tokens.len() {
            return Err(format!("subject {subject:?}: '>' must be the last token"));
        }
    }
    Ok(())
}

/// NATS subject filter matching (`*` one token, `>` the rest).
pub fn subject_matches(filter: &str, subject: &str) -> bool {
    let mut f = filter.split('.');
    let mut s = subject.split('.');
    loop {
        match (f.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}
