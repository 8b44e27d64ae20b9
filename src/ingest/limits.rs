//! Subjects (filter matching) and everything a client controls, bounded and checked before anything reaches NATS: the subject (length, tokens,
//! characters), the `Idempotency-Key`, message ids, the items of a batch, and the size of the message the daemon
//! would publish (payload and headers). Nothing a client sends can make the daemon write a protocol line the
//! server refuses (its `max_control_line` is 4 KiB: a subject of at most 256 bytes leaves room for the reply
//! inbox), and the JetStream message id of every request is built so no key can produce another request's.
//!
//! Pure functions (fuzzed by `make fuzz`, target `ingest`). Uses nothing of the project.

use bytes::Bytes;

/// Longest subject a client may post to (bytes).
pub const MAX_SUBJECT: usize = 256;
/// Most tokens in such a subject.
pub const MAX_TOKENS: usize = 16;
/// Longest `Idempotency-Key`.
pub const MAX_KEY: usize = 200;
/// Longest message id asked about (`<stream>.<sequence>`: a JetStream stream name is at most 255 bytes).
pub const MAX_MESSAGE_ID: usize = 300;
/// Most request headers.
pub const MAX_HEADERS: usize = 64;
/// Most bytes of request headers.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Publishes of one batch in flight at once (their acknowledgements overlap; the rest wait their turn).
pub const PUBLISH_CONCURRENCY: usize = 64;

pub use crate::config::subject_matches;

/// A subject a client may publish to: at most [`MAX_SUBJECT`] bytes and [`MAX_TOKENS`] tokens, tokens non-empty,
/// printable, without wildcards or white space. The error names the limit.
pub fn check_subject(subject: &str) -> Result<(), String> {
    if subject.len() > MAX_SUBJECT {
        return Err(format!("the subject is {} bytes long; at most {MAX_SUBJECT} are accepted", subject.len()));
    }
    let tokens = subject.split('.').count();
    if tokens > MAX_TOKENS {
        return Err(format!("the subject has {tokens} tokens; at most {MAX_TOKENS} tokens are accepted"));
    }
    let valid = !subject.is_empty()
        && subject.split('.').all(|t| {
            !t.is_empty() && !t.contains(['*', '>']) && !t.chars().any(|c| c.is_whitespace() || c.is_control())
        });
    if !valid {
        return Err(format!("{subject:?} is not a NATS subject to publish to"));
    }
    Ok(())
}

/// The `Idempotency-Key` header: absent, or 1 to [`MAX_KEY`] printable ASCII characters (trimmed).
pub fn idempotency_key(value: Option<&[u8]>) -> Result<Option<String>, String> {
    let Some(raw) = value else { return Ok(None) };
    let text = std::str::from_utf8(raw)
        .ok()
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= MAX_KEY && k.bytes().all(|b| b.is_ascii_graphic() || b == b' '));
    match text {
        Some(k) => Ok(Some(k.to_owned())),
        None => Err(format!("Idempotency-Key must be 1 to {MAX_KEY} printable ASCII characters")),
    }
}

/// The JetStream message id (`Nats-Msg-Id`) of a single event posted with `key`: `e:<key>`.
pub fn event_id(key: &str) -> String {
    format!("e:{key}")
}

/// The JetStream message id of item `index` of a batch posted with `key`: `b:<index>:<key>`. A single event's
/// id starts `e:`, an item's `b:` followed by digits and `:`, so no key of one request can name another's.
pub fn item_id(key: &str, index: usize) -> String {
    format!("b:{index}:{key}")
}

/// Why a batch body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchError {
    /// More items than allowed (the count seen so far, which is over the limit).
    TooMany(usize),
    /// Not a JSON array or NDJSON.
    Bad(String),
}

/// The items of a batch body, a JSON array's elements or NDJSON lines, at most `max_items` (counted before any
/// item is copied).
pub fn batch_items(body: &[u8], max_items: usize) -> Result<Vec<Bytes>, BatchError> {
    let text = std::str::from_utf8(body).map_err(|_| BatchError::Bad("the body is not UTF-8".to_owned()))?;
    if text.trim_start().starts_with('[') {
        let items: Vec<&serde_json::value::RawValue> =
            serde_json::from_str(text).map_err(|e| BatchError::Bad(format!("not a JSON array: {e}")))?;
        if items.len() > max_items {
            return Err(BatchError::TooMany(items.len()));
        }
        return Ok(items.into_iter().map(|v| Bytes::copy_from_slice(v.get().as_bytes())).collect());
    }
    let lines = text.lines().filter(|l| !l.trim().is_empty());
    let count = lines.clone().take(max_items + 1).count();
    if count > max_items {
        return Err(BatchError::TooMany(count));
    }
    Ok(lines.map(|l| Bytes::copy_from_slice(l.as_bytes())).collect())
}

/// Bytes NATS counts for a message's headers: `NATS/1.0\r\n`, `name: value\r\n` each, `\r\n`.
pub fn headers_len<'a>(headers: impl IntoIterator<Item = (&'a str, &'a str)>) -> usize {
    let fields: usize = headers.into_iter().map(|(n, v)| n.len() + 2 + v.len() + 2).sum();
    "NATS/1.0\r\n".len() + fields + 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_bounded_and_named_when_refused() {
        assert!(check_subject("telemetry.host-1").is_ok());
        assert!(check_subject(&format!("telemetry.{}", "a".repeat(4070))).unwrap_err().contains("at most 256"));
        assert!(check_subject("a.".repeat(20).trim_end_matches('.')).unwrap_err().contains("at most 16 tokens"));
        for bad in ["", "a.*", "a.>", "a..b", "a b", "a\u{1}b"] {
            assert!(check_subject(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn keys_are_printable_and_bounded() {
        assert_eq!(idempotency_key(None), Ok(None));
        assert_eq!(idempotency_key(Some(b" k-1 ")), Ok(Some("k-1".into())));
        for bad in [&b""[..], b"  ", b"a\tb", &[0xff], &[b'a'; 201]] {
            assert!(idempotency_key(Some(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn no_key_names_another_requests_message() {
        // The attack: a batch with key k stored item 1 as "k-1"; a single event with key "k-1" was a duplicate.
        assert_ne!(event_id("k-1"), item_id("k", 1));
        assert_ne!(item_id("k:1", 2), item_id("k", 1));
        assert_ne!(item_id("1:k", 2), item_id("k", 21));
        // Prefixes are fixed, indexes are digits ended by ':': an item's id parses back to one (index, key).
        let id = item_id("x:y", 12);
        let rest = id.strip_prefix("b:").unwrap();
        let (index, key) = rest.split_once(':').unwrap();
        assert_eq!((index, key), ("12", "x:y"));
    }

    #[test]
    fn batches_are_counted_before_they_are_copied() {
        assert_eq!(
            batch_items(br#"[{"a":1}, {"b":[2,3]}]"#, 10).unwrap(),
            vec![Bytes::from(r#"{"a":1}"#), Bytes::from(r#"{"b":[2,3]}"#)]
        );
        assert_eq!(batch_items(b"{\"a\":1}\n\n{\"b\":2}\n", 10).unwrap().len(), 2);
        assert_eq!(batch_items(&b"{}\n".repeat(5000), 1000), Err(BatchError::TooMany(1001)));
        assert_eq!(
            batch_items(format!("[{}]", vec!["{}"; 1001].join(",")).as_bytes(), 1000),
            Err(BatchError::TooMany(1001))
        );
        assert!(matches!(batch_items(b"[1,", 10), Err(BatchError::Bad(m)) if m.contains("not a JSON array")));
        assert!(matches!(batch_items(&[0xff], 10), Err(BatchError::Bad(m)) if m.contains("UTF-8")));
    }

    #[test]
    fn header_bytes_are_counted_as_nats_counts_them() {
        assert_eq!(headers_len([]), 12);
        assert_eq!(headers_len([("Nats-Msg-Id", "e:k")]), 12 + 11 + 2 + 3 + 2);
    }
}
