//! Where a log came from, as ServiceRadar's Elixir writer records it (reference-today §8.2, §8.4): the sender's
//! address (`source_ip`) found in the payload, and the `serviceradar.ingest` attribute block (subject, reply
//! subject, when JetStream received it, the `logs.<kind>` of the subject).
//!
//! Uses the processor api and serde_json values.

use std::net::IpAddr;

use serde_json::{Map, Value};

use crate::processor::api::Incoming;

/// The key of the ingest block in `attributes` (one flat key, a dot in its name).
pub const INGEST_KEY: &str = "serviceradar.ingest";

/// `logs.<kind>…` → `<kind>` (the subject trimmed, split into at most three parts).
pub fn source_kind(subject: &str) -> Option<&str> {
    let mut parts = subject.trim().splitn(3, '.');
    match (parts.next(), parts.next()) {
        (Some("logs"), Some(kind)) if !kind.is_empty() => Some(kind),
        _ => None,
    }
}

/// The ingest block of a message: only the keys that have a value.
pub fn ingest_block(msg: &Incoming<'_>) -> Map<String, Value> {
    let mut block = Map::new();
    block.insert("subject".into(), Value::String(msg.subject.to_owned()));
    if !msg.reply.is_empty() {
        block.insert("reply_to".into(), Value::String(msg.reply.to_owned()));
    }
    block.insert(
        "received_at".into(),
        Value::String(msg.published.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
    );
    if let Some(kind) = source_kind(msg.subject) {
        block.insert("source_kind".into(), Value::String(kind.to_owned()));
    }
    block
}

/// Adds the ingest block to `attributes`, merged into one already there (the block's values win).
pub fn attach_ingest(attributes: &mut Map<String, Value>, block: Map<String, Value>) {
    match attributes.get_mut(INGEST_KEY) {
        Some(Value::Object(existing)) => existing.extend(block),
        _ => {
            attributes.insert(INGEST_KEY.into(), Value::Object(block));
        }
    }
}

/// `^\[([^\]]+)\](?::\d+)?$` → the part in brackets; else the text.
fn bracketless(v: &str) -> &str {
    if let Some(rest) = v.strip_prefix('[')
        && let Some(close) = rest.find(']')
    {
        let (inner, after) = (&rest[..close], &rest[close + 1..]);
        let port_ok = after.is_empty()
            || after.strip_prefix(':').is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        if !inner.is_empty() && port_ok {
            return inner;
        }
    }
    v
}

/// The candidates of one value, in ServiceRadar's order: the value, then split once at its first `:` (a
/// `partition:address` or `address:port`), each also without brackets.
fn candidates(value: &str) -> Vec<&str> {
    let v = value.trim();
    let b = bracketless(v);
    let mut out: Vec<&str> = Vec::new();
    for c in [v, b] {
        match c.split_once(':') {
            Some((prefix, address)) => out.extend([c, prefix, address, bracketless(address)]),
            None => out.push(c),
        }
    }
    let mut seen = Vec::with_capacity(out.len());
    out.retain(|c| {
        let new = !seen.contains(c);
        seen.push(*c);
        new
    });
    out
}

/// The sender's address: the first candidate that is an IPv4 or IPv6 address, as written, from
/// `source_ip|sourceIp`, `_remote_addr`, `source` (strings only). ServiceRadar's Erlang parser also takes short
/// IPv4 forms (`127.1`); this one takes the standard text forms only.
pub fn source_ip(json: &Map<String, Value>) -> Option<String> {
    let first =
        |keys: &[&str]| keys.iter().find_map(|k| json.get(*k).filter(|v| !v.is_null() && *v != &Value::Bool(false)));
    [first(&["source_ip", "sourceIp"]), json.get("_remote_addr"), json.get("source")]
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .find_map(|v| candidates(v).into_iter().find(|c| c.parse::<IpAddr>().is_ok()).map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(json: serde_json::Value) -> Option<String> {
        source_ip(json.as_object().unwrap())
    }

    // The examples of reference-today §8.2, and ServiceRadar's `logs_test.exs` (index id 67632486080) cases.
    #[test]
    fn the_sender_address_is_found_as_serviceradar_finds_it() {
        assert_eq!(ip(serde_json::json!({"_remote_addr": "default:10.208.254.4"})).as_deref(), Some("10.208.254.4"));
        assert_eq!(ip(serde_json::json!({"_remote_addr": "site-a:2001:db8::42"})).as_deref(), Some("2001:db8::42"));
        assert_eq!(ip(serde_json::json!({"source": "[2001:db8::1]:514"})).as_deref(), Some("2001:db8::1"));
        assert_eq!(ip(serde_json::json!({"source": "1.2.3.4:162"})).as_deref(), Some("1.2.3.4"));
        assert_eq!(ip(serde_json::json!({"source": "192.168.2.55:32768"})).as_deref(), Some("192.168.2.55"));
        assert_eq!(
            ip(serde_json::json!({"source_ip": "192.168.1.10", "source": "10.0.0.1:1"})).as_deref(),
            Some("192.168.1.10")
        );
        assert_eq!(ip(serde_json::json!({"sourceIp": " 10.0.0.9 "})).as_deref(), Some("10.0.0.9"));
        assert_eq!(ip(serde_json::json!({"_remote_addr": "not-an-ip"})), None);
        assert_eq!(ip(serde_json::json!({"source": "edge-router"})), None);
        assert_eq!(ip(serde_json::json!({"source_ip": 7})), None, "non-strings yield nothing");
    }

    #[test]
    fn source_kind_is_the_second_token_of_a_logs_subject() {
        assert_eq!(source_kind("logs.syslog.processed"), Some("syslog"));
        assert_eq!(source_kind(" logs.snmp "), Some("snmp"));
        assert_eq!(source_kind("logs."), None);
        assert_eq!(source_kind("falco.logs.processed"), None);
        assert_eq!(source_kind("events.logs"), None);
    }
}
