//! Logs as ServiceRadar's JSON shapes (reference §3.1): syslog/GELF, SNMP traps, OTel-as-JSON, WAF findings,
//! internal logs, with every rule of the Go writer's normalisation (timestamp keys, body fallbacks, severity
//! table, reserved keys kept out of `attributes`, service and scope fields, `source` from the subject), and what
//! ServiceRadar's Elixir writer adds today (reference-today §8): canonical trace and span ids, `source_ip`, the
//! severity of a bare numeric `level`, its service-name fallbacks, the `serviceradar.ingest` block, redaction,
//! and the `snmp_severity` normalisation of traps on `logs.snmp`.
//!
//! Uses the logs row and its rooms (redaction, source, SNMP), the processor api, the shared JSON helpers and the
//! OTLP ids.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::redact::{redact_object, redact_text};
use super::row::{LogRow, clean_row, record_id, severity_name};
use super::source::{attach_ingest, ingest_block, source_ip};
use crate::processor::api::{DecodeError, Incoming, IngestColumns, Rows};
use crate::processor::json::each_object;
use crate::processor::otlp::id;

/// Top-level keys that are columns (or inputs to them), never merged into `attributes` (reference §8.1).
pub(super) const RESERVED: &[&str] = &[
    "@timestamp",
    "attributes",
    "body",
    "community",
    "event",
    "eventName",
    "event_name",
    "full_message",
    "host",
    "hostname",
    "ip",
    "ip_address",
    "level",
    "log",
    "message",
    "msg",
    "observedTimeUnixNano",
    "observedTimestamp",
    "observed_time_unix_nano",
    "observed_timestamp",
    "remote_addr",
    "resource",
    "resourceAttributes",
    "resource_attributes",
    "scope",
    "scope.name",
    "scope.version",
    "scopeAttributes",
    "scopeName",
    "scopeVersion",
    "scope_attributes",
    "scope_name",
    "scope_version",
    "service.instance",
    "service.instance.id",
    "service.name",
    "service.version",
    "service_instance",
    "service_instance_id",
    "service_name",
    "service_version",
    "severity",
    "severity_number",
    "severity_text",
    "short_message",
    "source",
    "spanId",
    "span_id",
    "summary",
    "time",
    "timestamp",
    "traceFlags",
    "traceId",
    "trace_flags",
    "trace_id",
    "ts",
];

pub fn decode_json(msg: &Incoming<'_>, rows: &mut Rows<'_, LogRow>) -> Result<(), DecodeError> {
    let ingest = msg.attribution().columns();
    let snmp = super::snmp::applies(msg.subject);
    each_object(msg.payload, "log", |i, map, _| {
        let row = if snmp {
            json_row(&super::snmp::normalize(map), msg, i, &ingest)?
        } else {
            json_row(map, msg, i, &ingest)?
        };
        rows.push(row)
    })
}

/// A message's top-level object with a 64-bit signature of its keys (length and end bytes): json_row asks for
/// ~60 alternative keys of which a message has a handful, and the signature answers most misses without a
/// string comparison. No false negatives: a key present always has its bit set.
pub(super) struct Fields<'a> {
    map: &'a Map<String, Value>,
    signature: u64,
}

impl<'a> Fields<'a> {
    pub(super) fn new(map: &'a Map<String, Value>) -> Self {
        Fields { map, signature: map.keys().fold(0, |s, k| s | Self::bit(k)) }
    }

    fn bit(key: &str) -> u64 {
        let b = key.as_bytes();
        let (first, last) = (b.first().copied().unwrap_or(0), b.last().copied().unwrap_or(0));
        1 << ((b.len() * 7 + usize::from(first) * 3 + usize::from(last)) % 64)
    }

    pub(super) fn get(&self, key: &str) -> Option<&'a Value> {
        if self.signature & Self::bit(key) == 0 { None } else { self.map.get(key) }
    }
}

fn str_of<'a>(map: &Fields<'a>, keys: &[&str]) -> Option<&'a str> {
    keys.iter().find_map(|k| map.get(k).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty()))
}

fn time_of(map: &Fields<'_>, keys: &[&str]) -> Option<DateTime<Utc>> {
    keys.iter().find_map(|k| crate::processor::json::parse_timestamp_value(map.get(k)?))
}

fn json_row(
    object: &Map<String, Value>,
    msg: &Incoming<'_>,
    index: usize,
    ingest: &IngestColumns,
) -> Result<LogRow, DecodeError> {
    let map = &Fields::new(object);
    // Unparseable times fall back to the message's JetStream time: a log is never dropped for its clock.
    let timestamp = time_of(map, &["timestamp", "time", "ts", "@timestamp"]).unwrap_or(msg.published);
    let observed =
        time_of(map, &["observed_timestamp", "observedTimestamp", "observed_time_unix_nano", "observedTimeUnixNano"])
            .unwrap_or(msg.published);
    let attributes_in = object_of(map, &["attributes"]);
    let event_name = str_of(map, &["event_name", "eventName"]).unwrap_or("").to_owned();
    let waf = event_name == "waf.finding"
        || attributes_in.as_ref().and_then(|a| a.get("event_type")).and_then(Value::as_str) == Some("waf.finding");
    let (severity_text, severity_number) = severity(map, waf);

    let mut resource = resource_attributes(map);
    let from_resource = |key: &str| resource.get(key).and_then(Value::as_str).filter(|s| !s.trim().is_empty());
    // The Go writer's own keys, then the Elixir writer's fallbacks in its order.
    let service_name = str_of(map, &["service.name", "service_name", "service", "serviceName"])
        .or_else(|| from_resource("service.name"))
        .or_else(|| str_of(map, &["application_name", "applicationName", "app_name", "appName"]))
        .or_else(|| str_of(map, &["host", "hostname"]))
        .or_else(|| from_resource("host.name"))
        .or_else(|| from_resource("host_name"))
        .unwrap_or("")
        .to_owned();
    let from_resource = |key: &str| resource.get(key).and_then(Value::as_str).unwrap_or("");
    let service_version = str_of(map, &["service.version", "service_version", "serviceVersion"])
        .unwrap_or_else(|| from_resource("service.version"))
        .to_owned();
    let service_instance = str_of(
        map,
        &["service.instance.id", "service.instance", "service_instance", "service_instance_id", "serviceInstance"],
    )
    .unwrap_or_else(|| from_resource("service.instance.id"))
    .to_owned();

    let scope_obj = map.get("scope");
    let scope_name = str_of(map, &["scope.name", "scope_name", "scopeName"])
        .or_else(|| scope_obj.and_then(|s| s.as_str().or_else(|| s.get("name").and_then(Value::as_str))))
        .unwrap_or("");
    let scope_version = str_of(map, &["scope.version", "scope_version", "scopeVersion"])
        .or_else(|| scope_obj.and_then(|s| s.get("version")).and_then(Value::as_str))
        .unwrap_or("");

    // The Go writer's attributes (the payload's, then every top-level key that is no column), with the ingest
    // block and secrets redacted.
    let mut attributes: Map<String, Value> = attributes_in.map(std::borrow::Cow::into_owned).unwrap_or_default();
    for (k, v) in object {
        // Sorted (a test checks): a binary search, not ~60 string comparisons per key.
        if RESERVED.binary_search(&k.as_str()).is_ok() || is_empty(v) {
            continue;
        }
        attributes.insert(k.clone(), v.clone());
    }
    attach_ingest(&mut attributes, ingest_block(msg));
    redact_object(&mut attributes);
    redact_object(&mut resource);
    let mut scope_attributes =
        object_of(map, &["scope_attributes", "scopeAttributes"]).map(std::borrow::Cow::into_owned);
    if let Some(s) = scope_attributes.as_mut() {
        redact_object(s);
    }
    let id_of = |keys: &[&str], len| id::normalize(str_of(map, keys).unwrap_or("").as_bytes(), len).text();
    let source = source_of(msg.subject, map, waf);
    let mut body = body_of(map, msg.subject);
    if let std::borrow::Cow::Owned(redacted) = redact_text(&body) {
        body = redacted;
    }
    let mut row = LogRow {
        timestamp,
        id: record_id(msg.stream, msg.sequence, index),
        trace_id: id_of(&["trace_id", "traceId"], id::TRACE),
        span_id: id_of(&["span_id", "spanId"], id::SPAN),
        severity_text,
        severity_number,
        body,
        service_name: service_name.into(),
        service_version: service_version.into(),
        service_instance: service_instance.into(),
        scope_name: scope_name.into(),
        scope_version: scope_version.into(),
        attributes: json_text(&attributes),
        resource_attributes: json_text(&resource).into(),
        observed_timestamp: Some(observed),
        trace_flags: map
            .get("trace_flags")
            .or_else(|| map.get("traceFlags"))
            .or_else(|| map.get("flags"))
            .and_then(Value::as_i64)
            .and_then(|f| i32::try_from(f).ok()),
        event_name,
        scope_attributes: scope_attributes.map_or_else(String::new, |o| json_text(&o)).into(),
        source,
        source_ip: source_ip(object),
        ingest: ingest.clone(),
    };
    clean_row(&mut row);
    Ok(row)
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

fn json_text(map: &Map<String, Value>) -> String {
    // Serializing a map of JSON values cannot fail; no copy of the map is made.
    if map.is_empty() { String::new() } else { serde_json::to_string(map).unwrap_or_default() }
}

/// An object under one of `keys` (borrowed), or a string holding a JSON object (parsed).
fn object_of<'a>(map: &Fields<'a>, keys: &[&str]) -> Option<std::borrow::Cow<'a, Map<String, Value>>> {
    keys.iter().find_map(|k| match map.get(k)? {
        Value::Object(o) => Some(std::borrow::Cow::Borrowed(o)),
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(o)) => Some(std::borrow::Cow::Owned(o)),
            _ => None,
        },
        _ => None,
    })
}

/// `resource_attributes|resourceAttributes|resource` as an object, a JSON string or `k=v,k=v`; else built from
/// the top-level host fields.
fn resource_attributes(map: &Fields<'_>) -> Map<String, Value> {
    for key in ["resource_attributes", "resourceAttributes", "resource"] {
        match map.get(key) {
            Some(Value::Object(o)) if !o.is_empty() => return o.clone(),
            Some(Value::String(s)) if !s.trim().is_empty() => {
                if let Ok(Value::Object(o)) = serde_json::from_str::<Value>(s) {
                    return o;
                }
                let pairs: Map<String, Value> = s
                    .split(',')
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.trim().to_owned(), Value::String(v.trim().to_owned())))
                    .filter(|(k, _)| !k.is_empty())
                    .collect();
                if !pairs.is_empty() {
                    return pairs;
                }
            }
            _ => {}
        }
    }
    ["host", "hostname", "remote_addr", "source", "ip", "ip_address"]
        .iter()
        .filter_map(|k| map.get(k).and_then(Value::as_str).filter(|s| !s.trim().is_empty()).map(|v| (k, v)))
        .map(|(k, v)| ((*k).to_owned(), Value::String(v.to_owned())))
        .collect()
}

/// First non-empty text (or char-code array) of the body keys; else the first SNMP varbind's value after its
/// type prefix; else the subject.
fn body_of(map: &Fields<'_>, subject: &str) -> String {
    for key in ["body", "message", "msg", "summary", "short_message", "event", "log"] {
        match map.get(key) {
            Some(Value::String(s)) if !s.trim().is_empty() => return s.clone(),
            Some(Value::Array(codes)) if !codes.is_empty() => {
                let text: Option<String> =
                    codes.iter().map(|c| c.as_u64().and_then(|c| char::from_u32(u32::try_from(c).ok()?))).collect();
                if let Some(text) = text.filter(|t| !t.is_empty()) {
                    return text;
                }
            }
            _ => {}
        }
    }
    // The first varbind that is not sysUpTime or the trap OID (those are no message: the Go writer's fallback
    // took sysUpTime, a bare tick count).
    const NOT_A_MESSAGE: [&str; 4] =
        ["1.3.6.1.2.1.1.3.0", ".1.3.6.1.2.1.1.3.0", "1.3.6.1.6.3.1.1.4.1.0", ".1.3.6.1.6.3.1.1.4.1.0"];
    let varbind = map.get("varbinds").and_then(Value::as_array).and_then(|vbs| {
        vbs.iter()
            .filter(|vb| !NOT_A_MESSAGE.contains(&vb.get("oid").and_then(Value::as_str).unwrap_or("")))
            .find_map(|vb| vb.get("value").and_then(Value::as_str).filter(|v| !v.trim().is_empty()))
    });
    if let Some(value) = varbind {
        return value.split_once(':').map_or(value, |(_, rest)| rest).trim().to_owned();
    }
    subject.to_owned()
}

/// Normalised severity text and number (ServiceRadar's table: INFO = 11; WAF findings lower-case).
fn severity(map: &Fields<'_>, waf: bool) -> (String, i32) {
    let given_number = map.get("severity_number").and_then(Value::as_i64).and_then(|n| i32::try_from(n).ok());
    if let Some(text) = str_of(map, &["severity_text", "severity"]) {
        let (name, number) = severity_from_text(text, waf);
        // An explicit number beside the text is the sender's own statement: keep it.
        return (name, given_number.filter(|n| (1..=24).contains(n)).unwrap_or(number));
    }
    // A bare numeric (syslog) level: ServiceRadar's `severity_from_level` today (an explicit severity_number
    // beside it wins).
    let numeric = match map.get("level") {
        Some(Value::Number(n)) => n.as_i64().or_else(|| n.as_f64().map(|f| f.round() as i64)),
        Some(Value::String(s)) => leading_integer(s),
        _ => None,
    };
    if let Some(level) = numeric {
        let (name, number) = match level {
            0..=2 => ("FATAL", 21),
            3 => ("ERROR", 19),
            4 => ("WARN", 15),
            7 => ("DEBUG", 5),
            _ => ("INFO", 9),
        };
        return (cased(name, waf), given_number.unwrap_or(number));
    }
    if let Some(Value::String(s)) = map.get("level")
        && !s.trim().is_empty()
    {
        let (name, number) = severity_from_text(s, waf);
        return (name, given_number.unwrap_or(number));
    }
    if let Some(n) = given_number {
        return (cased(severity_name(n), waf), n);
    }
    (cased("INFO", waf), 11)
}

/// The integer a text starts with (`"4"`, `" 6 warn"`), as Elixir's `Integer.parse`.
fn leading_integer(s: &str) -> Option<i64> {
    let t = s.trim_start();
    let digits = t.strip_prefix(['-', '+']).unwrap_or(t);
    let n = digits.bytes().take_while(u8::is_ascii_digit).count();
    if n == 0 {
        return None;
    }
    t[..t.len() - digits.len() + n].parse().ok()
}

fn cased(name: &str, waf: bool) -> String {
    if waf { name.to_ascii_lowercase() } else { name.to_owned() }
}

fn severity_from_text(text: &str, waf: bool) -> (String, i32) {
    let t = text.trim().to_ascii_lowercase();
    if waf {
        let (name, n) = match t.as_str() {
            "emergency" | "emerg" => ("emergency", 23),
            "alert" => ("alert", 22),
            "fatal" => ("fatal", 23),
            "critical" | "crit" | "very high" => ("critical", 21),
            "high" | "error" | "err" => ("error", 19),
            "medium" | "warn" | "warning" => ("warning", 15),
            "debug" | "trace" => ("debug", 7),
            _ => ("info", 11),
        };
        return (name.to_owned(), n);
    }
    let (name, n) = match t.as_str() {
        "fatal" | "critical" | "crit" | "emergency" | "emerg" | "alert" | "very high" => ("FATAL", 23),
        "high" | "error" | "err" => ("ERROR", 19),
        "medium" | "warn" | "warning" => ("WARN", 15),
        "debug" | "trace" => ("DEBUG", 7),
        _ => ("INFO", 11),
    };
    (name.to_owned(), n)
}

/// `logs.<x>...` → `<x>` (also namespaced, e.g. `demo.logs.otel.processed`; `falco.logs.processed` → `falco`);
/// else the known source named in the subject; WAF findings keep the payload's `source`; else the payload's.
fn source_of(subject: &str, map: &Fields<'_>, waf: bool) -> String {
    let payload_source = map.get("source").and_then(Value::as_str).filter(|s| !s.trim().is_empty());
    if waf && let Some(s) = payload_source {
        return s.to_owned();
    }
    if let Some(s) = source_from_subject(subject) {
        return s.to_owned();
    }
    payload_source.unwrap_or("").to_owned()
}

pub fn source_from_subject(subject: &str) -> Option<&str> {
    let tokens: Vec<&str> = subject.split('.').collect();
    if let Some(i) = tokens.iter().position(|t| *t == "logs") {
        match tokens.get(i + 1) {
            Some(next) if *next != "processed" => return Some(next),
            _ if i > 0 => return Some(tokens[i - 1]),
            _ => {}
        }
    }
    ["syslog", "snmp", "otel", "internal"].into_iter().find(|k| subject.contains(k))
}
