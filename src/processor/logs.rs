//! Logs → `logs` (reference §3.1): ServiceRadar's JSON log shapes (syslog/GELF, SNMP traps, OTel-as-JSON, WAF
//! findings, internal logs) and OTLP `ExportLogsServiceRequest` protobuf.
//!
//! Each row's `id` is derived from the message's JetStream stream, sequence and the record's index in the
//! message, so a redelivered message hits the `(timestamp, id)` key instead of becoming new rows (ServiceRadar
//! used a random UUID, so every redelivery doubled its logs).

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use md5::{Digest, Md5};
use prost::Message as _;
use serde_json::{Map, Value};

use crate::sql::{UuidText, copy_or_insert};

use super::json::{clean_jsonb, clean_text, each_object};
use super::proto::common::{AnyValue, KeyValue, any_value};
use super::proto::logs::ExportLogsServiceRequest;
use super::{BatchDefaults, DecodeError, Incoming, Processor, RowSize, Rows};
use crate::sql::qualified;

/// One row of `logs`. Text columns are `""` when absent, as the Go writer stores them.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRow {
    /// Record time.
    pub timestamp: DateTime<Utc>,
    /// Deterministic UUID (stream, sequence, record index).
    pub id: String,
    /// Trace id (hex for protobuf input).
    pub trace_id: String,
    /// Span id.
    pub span_id: String,
    /// `FATAL`/`ERROR`/`WARN`/`INFO`/`DEBUG` (lower-case names for WAF findings).
    pub severity_text: String,
    /// Severity number (INFO = 11, as ServiceRadar stores it).
    pub severity_number: i32,
    /// Body text.
    pub body: String,
    /// `service.name` (shared by the records of one OTLP resource, like the other resource and scope fields).
    pub service_name: Arc<str>,
    /// `service.version`.
    pub service_version: Arc<str>,
    /// `service.instance.id`.
    pub service_instance: Arc<str>,
    /// Instrumentation scope name.
    pub scope_name: Arc<str>,
    /// Instrumentation scope version.
    pub scope_version: Arc<str>,
    /// Attributes: JSON text for JSON input, `k=v,...` for protobuf input; `""` when none.
    pub attributes: String,
    /// Resource attributes, same encoding.
    pub resource_attributes: Arc<str>,
    /// Observation time.
    pub observed_timestamp: Option<DateTime<Utc>>,
    /// W3C trace flags.
    pub trace_flags: Option<i32>,
    /// OTel event name.
    pub event_name: String,
    /// Scope attributes, same encoding.
    pub scope_attributes: Arc<str>,
    /// Where the log came from (`syslog`, `snmp`, `otel`, `internal`, ...).
    pub source: String,
}

impl RowSize for LogRow {
    fn size(&self) -> usize {
        // timestamp, id, severity, observed, flags
        56 + self.trace_id.len()
            + self.span_id.len()
            + self.severity_text.len()
            + self.body.len()
            + self.service_name.len()
            + self.service_version.len()
            + self.service_instance.len()
            + self.scope_name.len()
            + self.scope_version.len()
            + self.attributes.len()
            + self.resource_attributes.len()
            + self.event_name.len()
            + self.scope_attributes.len()
            + self.source.len()
    }
}

/// The logs processor.
#[derive(Debug, Clone)]
pub struct Logs {
    copy_sql: String,
    insert_sql: String,
}

impl Logs {
    /// 5,000 rows, flushed after 1 s as the design this replaces. Logs are the other high-volume stream and
    /// COPY-written like telemetry: in the benchmark 5,000-row batches run ~10% faster than 1,000-row ones and
    /// cost PostgreSQL ~12% less CPU per row, for ~60–75 MiB of peak RSS instead of ~30.
    pub const BATCH_DEFAULTS: BatchDefaults = BatchDefaults { size: 5000, timeout: Duration::from_secs(1) };
    /// The table written.
    pub const TABLE: &str = "logs";

    /// A processor writing to `schema`.
    pub fn new(schema: &str) -> Self {
        let table = qualified(schema, Self::TABLE);
        let insert_sql = format!(
            "INSERT INTO {table} (timestamp, id, trace_id, span_id, severity_text, severity_number, body, service_name, \
             service_version, service_instance, scope_name, scope_version, attributes, resource_attributes, \
             observed_timestamp, trace_flags, event_name, scope_attributes, source) \
             SELECT t.ts, t.id::uuid, t.tr, t.sp, t.st, t.sn, t.body, t.svc, t.sv, t.si, t.scn, t.scv, t.attrs, t.res, \
             t.obs, t.fl, t.ev, t.sca, t.src \
             FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int4[], \
             $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], \
             $15::timestamptz[], $16::int4[], $17::text[], $18::text[], $19::text[]) \
             AS t(ts, id, tr, sp, st, sn, body, svc, sv, si, scn, scv, attrs, res, obs, fl, ev, sca, src) \
             ON CONFLICT (timestamp, id) DO NOTHING"
        );
        let copy_sql = format!(
            "COPY {table} (timestamp, id, trace_id, span_id, severity_text, severity_number, body, service_name, \
             service_version, service_instance, scope_name, scope_version, attributes, resource_attributes, \
             observed_timestamp, trace_flags, event_name, scope_attributes, source) FROM STDIN BINARY"
        );
        Logs { copy_sql, insert_sql }
    }

    /// Binary COPY of the rows (fails whole with 23505 if one exists).
    async fn copy_rows(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        rows: &[LogRow],
    ) -> Result<u64, tokio_postgres::Error> {
        use tokio_postgres::binary_copy::BinaryCopyInWriter;
        use tokio_postgres::types::Type;
        const TYPES: [Type; 19] = [
            Type::TIMESTAMPTZ,
            Type::UUID,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::INT4,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TIMESTAMPTZ,
            Type::INT4,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
        ];
        let sink = tx.copy_in(&self.copy_sql).await?;
        let writer = BinaryCopyInWriter::new(sink, &TYPES);
        tokio::pin!(writer);
        for r in rows {
            writer
                .as_mut()
                .write(&[
                    &r.timestamp,
                    &UuidText(&r.id),
                    &r.trace_id,
                    &r.span_id,
                    &r.severity_text,
                    &r.severity_number,
                    &r.body,
                    &&*r.service_name,
                    &&*r.service_version,
                    &&*r.service_instance,
                    &&*r.scope_name,
                    &&*r.scope_version,
                    &r.attributes,
                    &&*r.resource_attributes,
                    &r.observed_timestamp,
                    &r.trace_flags,
                    &r.event_name,
                    &&*r.scope_attributes,
                    &r.source,
                ])
                .await?;
        }
        writer.finish().await
    }

    /// The conflict-tolerant path: rows already present (a redelivery) are skipped.
    async fn insert(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        rows: &[LogRow],
    ) -> Result<u64, tokio_postgres::Error> {
        let stmt = tx.prepare_cached(&self.insert_sql).await?;
        let text = |f: fn(&LogRow) -> &str| rows.iter().map(f).collect::<Vec<&str>>();
        let timestamps: Vec<DateTime<Utc>> = rows.iter().map(|r| r.timestamp).collect();
        let ids = text(|r| &r.id);
        let trace = text(|r| &r.trace_id);
        let span = text(|r| &r.span_id);
        let sev_text = text(|r| &r.severity_text);
        let sev_num: Vec<i32> = rows.iter().map(|r| r.severity_number).collect();
        let body = text(|r| &r.body);
        let svc = text(|r| &r.service_name);
        let svc_ver = text(|r| &r.service_version);
        let svc_inst = text(|r| &r.service_instance);
        let scope = text(|r| &r.scope_name);
        let scope_ver = text(|r| &r.scope_version);
        let attrs = text(|r| &r.attributes);
        let res_attrs = text(|r| &r.resource_attributes);
        let observed: Vec<Option<DateTime<Utc>>> = rows.iter().map(|r| r.observed_timestamp).collect();
        let flags: Vec<Option<i32>> = rows.iter().map(|r| r.trace_flags).collect();
        let event = text(|r| &r.event_name);
        let scope_attrs = text(|r| &r.scope_attributes);
        let source = text(|r| &r.source);
        tx.execute(
            &stmt,
            &[
                &timestamps,
                &ids,
                &trace,
                &span,
                &sev_text,
                &sev_num,
                &body,
                &svc,
                &svc_ver,
                &svc_inst,
                &scope,
                &scope_ver,
                &attrs,
                &res_attrs,
                &observed,
                &flags,
                &event,
                &scope_attrs,
                &source,
            ],
        )
        .await
    }
}

impl Processor for Logs {
    type Row = LogRow;

    fn decode(&self, msg: &Incoming<'_>, rows: &mut Rows<'_, LogRow>) -> Result<(), DecodeError> {
        let first = msg.payload.iter().find(|b| !b.is_ascii_whitespace()).copied();
        match first {
            None => Err(DecodeError::new("empty payload")),
            // JSON first when it looks like JSON: a serialized OTLP request starts with 0x0A, never '{' or '['.
            Some(b'{' | b'[') => decode_json(msg, rows),
            Some(_) => match ExportLogsServiceRequest::decode(msg.payload) {
                Ok(request) => decode_otlp(&request, msg, rows),
                Err(e) => Err(DecodeError::new(format!("neither JSON nor an OTLP ExportLogsServiceRequest: {e}"))),
            },
        }
    }

    async fn write(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        rows: &[LogRow],
    ) -> Result<u64, tokio_postgres::Error> {
        // COPY first; a redelivered message (same ids) falls back to INSERT ... ON CONFLICT DO NOTHING.
        copy_or_insert(tx, || self.copy_rows(tx, rows), || self.insert(tx, rows)).await
    }
}

/// A UUID (version 3 layout) from the message's identity and the record's index in it.
pub fn record_id(stream: &str, sequence: u64, index: usize) -> String {
    let mut h = Md5::new();
    h.update(stream.as_bytes());
    h.update([0]);
    h.update(sequence.to_be_bytes());
    h.update((index as u64).to_be_bytes());
    let mut b: [u8; 16] = h.finalize().into();
    b[6] = (b[6] & 0x0f) | 0x30;
    b[8] = (b[8] & 0x3f) | 0x80;
    // By table rather than `write!("{:02x}")`: once per row, and formatting showed in the profile.
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push(HEX[usize::from(byte >> 4)] as char);
        s.push(HEX[usize::from(byte & 15)] as char);
    }
    s
}

// --------------------------------------------------------------------------------------------------------------
// JSON
// --------------------------------------------------------------------------------------------------------------

/// Top-level keys that are columns (or inputs to them), never merged into `attributes` (reference §8.1).
const RESERVED: &[&str] = &[
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

fn decode_json(msg: &Incoming<'_>, rows: &mut Rows<'_, LogRow>) -> Result<(), DecodeError> {
    each_object(msg.payload, "log", |i, map, _| rows.push(json_row(map, msg, i)?))
}

/// A message's top-level object with a 64-bit signature of its keys (length and end bytes): json_row asks for
/// ~60 alternative keys of which a message has a handful, and the signature answers most misses without a
/// string comparison. No false negatives: a key present always has its bit set.
struct Fields<'a> {
    map: &'a Map<String, Value>,
    signature: u64,
}

impl<'a> Fields<'a> {
    fn new(map: &'a Map<String, Value>) -> Self {
        Fields { map, signature: map.keys().fold(0, |s, k| s | Self::bit(k)) }
    }

    fn bit(key: &str) -> u64 {
        let b = key.as_bytes();
        let (first, last) = (b.first().copied().unwrap_or(0), b.last().copied().unwrap_or(0));
        1 << ((b.len() * 7 + usize::from(first) * 3 + usize::from(last)) % 64)
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        if self.signature & Self::bit(key) == 0 { None } else { self.map.get(key) }
    }
}

fn str_of<'a>(map: &Fields<'a>, keys: &[&str]) -> Option<&'a str> {
    keys.iter().find_map(|k| map.get(k).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty()))
}

fn time_of(map: &Fields<'_>, keys: &[&str]) -> Option<DateTime<Utc>> {
    keys.iter().find_map(|k| crate::processor::json::parse_timestamp_value(map.get(k)?))
}

fn json_row(object: &Map<String, Value>, msg: &Incoming<'_>, index: usize) -> Result<LogRow, DecodeError> {
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

    let resource = resource_attributes(map);
    let from_resource = |key: &str| resource.get(key).and_then(Value::as_str).unwrap_or("");
    let service_name = str_of(map, &["service.name", "service_name", "service", "serviceName"])
        .or_else(|| str_of(map, &["host", "hostname"]))
        .unwrap_or_else(|| from_resource("service.name"));
    let service_version = str_of(map, &["service.version", "service_version", "serviceVersion"])
        .unwrap_or_else(|| from_resource("service.version"));
    let service_instance = str_of(
        map,
        &["service.instance.id", "service.instance", "service_instance", "service_instance_id", "serviceInstance"],
    )
    .unwrap_or_else(|| from_resource("service.instance.id"));

    let scope_obj = map.get("scope");
    let scope_name = str_of(map, &["scope.name", "scope_name", "scopeName"])
        .or_else(|| scope_obj.and_then(|s| s.as_str().or_else(|| s.get("name").and_then(Value::as_str))))
        .unwrap_or("");
    let scope_version = str_of(map, &["scope.version", "scope_version", "scopeVersion"])
        .or_else(|| scope_obj.and_then(|s| s.get("version")).and_then(Value::as_str))
        .unwrap_or("");

    // References, not copies: the merged attributes are only written out. A BTreeMap of &str serializes in the
    // same key order as serde_json's Map, so the text is the same.
    let mut attributes: std::collections::BTreeMap<&str, &Value> =
        attributes_in.iter().flat_map(|a| a.iter()).map(|(k, v)| (k.as_str(), v)).collect();
    for (k, v) in object {
        // Sorted (a test checks): a binary search, not ~60 string comparisons per key.
        if RESERVED.binary_search(&k.as_str()).is_ok() || is_empty(v) {
            continue;
        }
        attributes.insert(k.as_str(), v);
    }
    let source = source_of(msg.subject, map, waf);
    let mut row = LogRow {
        timestamp,
        id: record_id(msg.stream, msg.sequence, index),
        trace_id: str_of(map, &["trace_id", "traceId"]).unwrap_or("").to_owned(),
        span_id: str_of(map, &["span_id", "spanId"]).unwrap_or("").to_owned(),
        severity_text,
        severity_number,
        body: body_of(map, msg.subject),
        service_name: service_name.into(),
        service_version: service_version.into(),
        service_instance: service_instance.into(),
        scope_name: scope_name.into(),
        scope_version: scope_version.into(),
        attributes: if attributes.is_empty() {
            String::new()
        } else {
            serde_json::to_string(&attributes).unwrap_or_default()
        },
        resource_attributes: json_text(&resource).into(),
        observed_timestamp: Some(observed),
        trace_flags: map
            .get("trace_flags")
            .or_else(|| map.get("traceFlags"))
            .or_else(|| map.get("flags"))
            .and_then(Value::as_i64)
            .and_then(|f| i32::try_from(f).ok()),
        event_name,
        scope_attributes: object_of(map, &["scope_attributes", "scopeAttributes"])
            .map_or_else(String::new, |o| json_text(&o))
            .into(),
        source,
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
    let varbind = map.get("varbinds").and_then(Value::as_array).and_then(|vbs| {
        vbs.iter().find_map(|vb| vb.get("value").and_then(Value::as_str).filter(|v| !v.trim().is_empty()))
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
    match map.get("level") {
        Some(Value::Number(n)) => {
            let (name, number) = match n.as_i64().unwrap_or(6) {
                0..=2 => ("FATAL", 23),
                3 => ("ERROR", 19),
                4 => ("WARN", 15),
                7 => ("DEBUG", 7),
                _ => ("INFO", 11),
            };
            return (cased(name, waf), number);
        }
        Some(Value::String(s)) if !s.trim().is_empty() => {
            if let Ok(n) = s.trim().parse::<i64>() {
                let mut m = Map::new();
                m.insert("level".into(), Value::from(n));
                return severity(&Fields::new(&m), waf);
            }
            return severity_from_text(s, waf);
        }
        _ => {}
    }
    if let Some(n) = given_number {
        return (cased(severity_name(n), waf), n);
    }
    (cased("INFO", waf), 11)
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

fn source_from_subject(subject: &str) -> Option<&str> {
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

/// NULs replaced (see [`super::json::NUL_REPLACEMENT`]): in text, and, in the JSON columns of a JSON log, the
/// `\u0000` escapes serde_json writes for them. (Shared OTLP fields are cleaned once, by [`shared`].)
fn clean_row(row: &mut LogRow) {
    for v in [&mut row.trace_id, &mut row.span_id, &mut row.body, &mut row.event_name, &mut row.source] {
        clean_text(v);
    }
    for v in [&mut row.service_name, &mut row.service_version, &mut row.service_instance, &mut row.scope_name] {
        if v.contains('\0') {
            *v = shared(v.to_string());
        }
    }
    if let std::borrow::Cow::Owned(clean) = clean_jsonb(&row.attributes) {
        row.attributes = clean;
    }
    for v in [&mut row.resource_attributes, &mut row.scope_attributes] {
        if let std::borrow::Cow::Owned(clean) = clean_jsonb(v) {
            *v = clean.into();
        }
    }
}

/// A text value that many rows share (an OTLP resource's or scope's), NUL-free, made once.
fn shared(mut text: String) -> Arc<str> {
    clean_text(&mut text);
    Arc::from(text)
}

// --------------------------------------------------------------------------------------------------------------
// OTLP protobuf
// --------------------------------------------------------------------------------------------------------------

fn decode_otlp(
    request: &ExportLogsServiceRequest,
    msg: &Incoming<'_>,
    rows: &mut Rows<'_, LogRow>,
) -> Result<(), DecodeError> {
    let source = source_from_subject(msg.subject).unwrap_or("otel");
    let mut index = 0;
    for rl in &request.resource_logs {
        // A record without a resource is still a record (the Go writer dropped these).
        let resource: &[KeyValue] = rl.resource.as_ref().map_or(&[], |r| &r.attributes);
        // Made once per resource and shared by its records: one 64 KiB attribute must not be copied per record.
        let res = |key: &str| shared(attr_str(resource, key));
        let (service_name, service_version, service_instance) =
            (res("service.name"), res("service.version"), res("service.instance.id"));
        let resource_attributes = shared(kv_text(resource));
        for sl in &rl.scope_logs {
            let (scope_name, scope_version, scope_attributes) = match &sl.scope {
                Some(s) => (shared(s.name.clone()), shared(s.version.clone()), shared(kv_text(&s.attributes))),
                None => (Arc::from(""), Arc::from(""), Arc::from("")),
            };
            rows.reserve(sl.log_records.len());
            for record in &sl.log_records {
                let observed = nanos(record.observed_time_unix_nano);
                let severity_text = if record.severity_text.is_empty() && record.severity_number > 0 {
                    severity_name(record.severity_number).to_owned()
                } else {
                    record.severity_text.clone()
                };
                let mut row = LogRow {
                    timestamp: nanos(record.time_unix_nano).or(observed).unwrap_or(msg.published),
                    id: record_id(msg.stream, msg.sequence, index),
                    trace_id: hex(&record.trace_id),
                    span_id: hex(&record.span_id),
                    severity_text,
                    severity_number: record.severity_number,
                    body: record.body.as_ref().map(any_text).unwrap_or_default(),
                    service_name: service_name.clone(),
                    service_version: service_version.clone(),
                    service_instance: service_instance.clone(),
                    scope_name: scope_name.clone(),
                    scope_version: scope_version.clone(),
                    attributes: kv_text(&record.attributes),
                    resource_attributes: resource_attributes.clone(),
                    observed_timestamp: observed,
                    trace_flags: Some((record.flags & 0xff) as i32).filter(|f| *f != 0),
                    event_name: record.event_name.clone(),
                    scope_attributes: scope_attributes.clone(),
                    source: source.to_owned(),
                };
                for v in [&mut row.severity_text, &mut row.body, &mut row.attributes, &mut row.event_name] {
                    clean_text(v);
                }
                rows.push(row)?;
                index += 1;
            }
        }
    }
    Ok(())
}

/// OTel severity number → its short name.
fn severity_name(n: i32) -> &'static str {
    match n {
        21.. => "FATAL",
        17.. => "ERROR",
        13.. => "WARN",
        9.. => "INFO",
        5.. => "DEBUG",
        _ => "TRACE",
    }
}

/// Epoch nanoseconds; 0 is "not set".
pub fn nanos(n: u64) -> Option<DateTime<Utc>> {
    if n == 0 {
        return None;
    }
    DateTime::from_timestamp((n / 1_000_000_000) as i64, (n % 1_000_000_000) as u32)
}

/// Lower-case hex, `""` for empty.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// A string attribute's value (`""` when absent or not a string).
pub fn attr_str(attrs: &[KeyValue], key: &str) -> String {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

/// The Go writer's attribute text: `k=v` joined by commas; strings as-is, `true`, integers, doubles with six
/// decimals; false, zero and empty values left out.
pub fn kv_text(attrs: &[KeyValue]) -> String {
    let mut out = String::new();
    for kv in attrs {
        let Some(value) = kv.value.as_ref().and_then(|v| v.value.as_ref()) else { continue };
        let text = match value {
            any_value::Value::StringValue(s) if !s.is_empty() => s.clone(),
            any_value::Value::BoolValue(true) => "true".to_owned(),
            any_value::Value::IntValue(i) if *i != 0 => i.to_string(),
            any_value::Value::DoubleValue(d) if *d != 0.0 => format!("{d:.6}"),
            any_value::Value::ArrayValue(_) | any_value::Value::KvlistValue(_) | any_value::Value::BytesValue(_) => {
                let t = any_text(kv.value.as_ref().unwrap_or(&AnyValue::default()));
                if t.is_empty() {
                    continue;
                }
                t
            }
            _ => continue,
        };
        if !out.is_empty() {
            out.push(',');
        }
        let _ = write!(out, "{}={}", kv.key, text);
    }
    out
}

/// An AnyValue as text: strings as they are; other kinds as JSON (the Go writer kept only strings and
/// stored `""` for structured bodies, losing them).
pub fn any_text(v: &AnyValue) -> String {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(_) => any_json(v).to_string(),
        None => String::new(),
    }
}

fn any_json(v: &AnyValue) -> Value {
    match &v.value {
        None => Value::Null,
        Some(any_value::Value::StringValue(s)) => Value::String(s.clone()),
        Some(any_value::Value::BoolValue(b)) => Value::Bool(*b),
        Some(any_value::Value::IntValue(i)) => Value::from(*i),
        Some(any_value::Value::DoubleValue(d)) => serde_json::Number::from_f64(*d).map_or(Value::Null, Value::Number),
        Some(any_value::Value::ArrayValue(a)) => Value::Array(a.values.iter().map(any_json).collect()),
        Some(any_value::Value::KvlistValue(kvs)) => Value::Object(
            kvs.values.iter().map(|kv| (kv.key.clone(), kv.value.as_ref().map_or(Value::Null, any_json))).collect(),
        ),
        Some(any_value::Value::BytesValue(b)) => Value::String(hex(b)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_signature_never_hides_a_present_key() {
        let keys = RESERVED.iter().copied().chain(["", "a", "é", "x.y", "timestamp", "trace_flags", "flags"]);
        let map: Map<String, Value> = keys.clone().map(|k| (k.to_owned(), Value::from(1))).collect();
        let fields = Fields::new(&map);
        for k in keys {
            assert!(fields.get(k).is_some(), "{k:?}");
        }
        let one: Map<String, Value> = [("message".to_owned(), Value::from("m"))].into_iter().collect();
        let fields = Fields::new(&one);
        assert!(fields.get("message").is_some() && fields.get("host").is_none());
    }

    #[test]
    fn reserved_keys_are_sorted_for_binary_search() {
        assert!(RESERVED.windows(2).all(|w| w[0] < w[1]), "RESERVED must stay sorted");
    }
    use crate::processor::proto::common::{InstrumentationScope, Resource};
    use crate::processor::proto::logs::{LogRecord, ResourceLogs, ScopeLogs};
    use chrono::TimeZone;

    const SAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/samples/");

    fn incoming<'a>(subject: &'a str, payload: &'a [u8]) -> Incoming<'a> {
        Incoming {
            subject,
            payload,
            published: Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap(),
            stream: "events",
            sequence: 42,
        }
    }

    fn decode(subject: &str, payload: &[u8]) -> Result<Vec<LogRow>, DecodeError> {
        let mut rows = Vec::new();
        Logs::new("platform")
            .decode(&incoming(subject, payload), &mut Rows::new(&mut rows, crate::processor::Limits::NONE))
            .map(|()| rows)
    }

    fn sample(name: &str) -> Vec<u8> {
        std::fs::read(format!("{SAMPLES}{name}")).unwrap_or_else(|e| panic!("sample {name}: {e}"))
    }

    #[test]
    fn sample_03_single_syslog_log() {
        let rows = decode("logs.syslog.processed", &sample("03_logs.syslog.processed__go_test_single.json")).unwrap();
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert_eq!(r.body, "test log");
        assert_eq!((r.severity_text.as_str(), r.severity_number), ("ERROR", 19));
        assert_eq!(&*r.service_name, "device-1");
        assert_eq!(r.source, "syslog");
        assert_eq!(r.timestamp, Utc.timestamp_opt(1_700_000_000, 0).unwrap());
        assert_eq!(&*r.resource_attributes, r#"{"host":"device-1"}"#);
        assert_eq!(r.attributes, "");
    }

    #[test]
    fn sample_04_array_gives_two_rows_with_distinct_ids() {
        let rows = decode("logs.syslog.processed", &sample("04_logs.syslog.processed__go_test_array.json")).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].body.as_str(), rows[0].severity_text.as_str(), rows[0].severity_number),
            ("first", "INFO", 11)
        );
        assert_eq!(
            (rows[1].body.as_str(), rows[1].severity_text.as_str(), rows[1].severity_number),
            ("second", "WARN", 15)
        );
        assert_ne!(rows[0].id, rows[1].id);
    }

    #[test]
    fn sample_05_char_code_body() {
        let r =
            &decode("logs.otel.processed", &sample("05_logs.otel.processed__go_test_charcode_body.json")).unwrap()[0];
        assert_eq!(r.body, "Test");
        assert_eq!((r.severity_text.as_str(), r.severity_number), ("INFO", 11));
        assert_eq!(&*r.service_name, "core-elx");
        assert_eq!(r.source, "otel");
    }

    #[test]
    fn sample_07_snmp_source_comes_from_the_subject_and_community_is_dropped() {
        let r = &decode("logs.snmp.processed", &sample("07_logs.snmp.processed__go_test_with_body.json")).unwrap()[0];
        assert_eq!(r.source, "snmp");
        assert!(r.body.starts_with("I 03/08/26 20:28:41 04911 ntp"));
        assert!(!r.attributes.contains("community") && !r.attributes.contains("public"), "{}", r.attributes);
        assert!(r.attributes.contains("varbinds"), "{}", r.attributes);
        assert_eq!(&*r.resource_attributes, r#"{"source":"192.168.10.154:161"}"#);
    }

    #[test]
    fn body_falls_back_to_the_varbind_then_the_subject() {
        let r = &decode("logs.snmp.processed", br#"{"varbinds": [{"oid": "1.3", "value": "OCTET STRING: hello"}]}"#)
            .unwrap()[0];
        assert_eq!(r.body, "hello");
        let r = &decode("logs.snmp.processed", br#"{"severity": "low"}"#).unwrap()[0];
        assert_eq!(r.body, "logs.snmp.processed");
    }

    #[test]
    fn sample_14_otel_json_keeps_the_given_fields() {
        let r = &decode("logs.otel.processed", &sample("14_logs__elixir_logs_test_otel_json.json")).unwrap()[0];
        assert_eq!(r.trace_id, "trace-123");
        assert_eq!(r.span_id, "span-456");
        assert_eq!((r.severity_text.as_str(), r.severity_number), ("INFO", 9));
        assert_eq!(r.body, "Application started successfully");
        assert_eq!((&*r.service_name, &*r.service_version), ("my-service", "1.0.0"));
        assert_eq!((&*r.service_instance, &*r.scope_name), ("instance-1", "my-scope"));
        assert_eq!(r.attributes, r#"{"key":"value"}"#);
        assert_eq!(&*r.resource_attributes, r#"{"host.name":"server1"}"#);
    }

    #[test]
    fn severity_table() {
        for (payload, text, number) in [
            (r#"{"severity": "Very High"}"#, "FATAL", 23),
            (r#"{"severity_text": "critical"}"#, "FATAL", 23),
            (r#"{"severity": "warning"}"#, "WARN", 15),
            (r#"{"severity": "notice"}"#, "INFO", 11),
            (r#"{"severity": "gibberish"}"#, "INFO", 11),
            (r#"{"severity": "trace"}"#, "DEBUG", 7),
            (r#"{"level": 3}"#, "ERROR", 19),
            (r#"{"level": 1}"#, "FATAL", 23),
            (r#"{"level": 6}"#, "INFO", 11),
            (r#"{"level": "4"}"#, "WARN", 15),
            (r#"{"level": "debug"}"#, "DEBUG", 7),
            (r#"{"severity_number": 18}"#, "ERROR", 18),
            (r#"{}"#, "INFO", 11),
            (r#"{"event_name": "waf.finding", "severity": "critical"}"#, "critical", 21),
            (r#"{"attributes": {"event_type": "waf.finding"}, "severity": "medium"}"#, "warning", 15),
            (r#"{"event_name": "waf.finding", "severity": "alert"}"#, "alert", 22),
        ] {
            let r = &decode("logs.syslog.processed", payload.as_bytes()).unwrap()[0];
            assert_eq!((r.severity_text.as_str(), r.severity_number), (text, number), "{payload}");
        }
    }

    #[test]
    fn waf_findings_keep_their_payload_source() {
        let r = &decode("logs.syslog.processed", br#"{"event_name": "waf.finding", "source": "waf", "msg": "x"}"#)
            .unwrap()[0];
        assert_eq!(r.source, "waf");
    }

    #[test]
    fn sources_from_subjects() {
        assert_eq!(source_from_subject("logs.syslog.processed"), Some("syslog"));
        assert_eq!(source_from_subject("demo.logs.otel.processed"), Some("otel"));
        assert_eq!(source_from_subject("logs.internal.core"), Some("internal"));
        assert_eq!(source_from_subject("falco.logs.processed"), Some("falco"));
        assert_eq!(source_from_subject("x.syslog.y"), Some("syslog"));
        assert_eq!(source_from_subject("other"), None);
    }

    #[test]
    fn unknown_keys_become_attributes_and_resource_strings_are_parsed() {
        let r = &decode(
            "logs.internal.processed",
            br#"{"msg": "m", "custom": 1, "empty": "", "attributes": {"a": "b"}, "resource": "k=v, x = y"}"#,
        )
        .unwrap()[0];
        assert_eq!(r.attributes, r#"{"a":"b","custom":1}"#);
        assert_eq!(&*r.resource_attributes, r#"{"k":"v","x":"y"}"#);
    }

    #[test]
    fn ids_are_stable_per_message_and_record() {
        assert_eq!(record_id("events", 42, 0), record_id("events", 42, 0));
        assert_ne!(record_id("events", 42, 0), record_id("events", 42, 1));
        assert_ne!(record_id("events", 42, 0), record_id("events", 43, 0));
        assert_ne!(record_id("events", 42, 0), record_id("other", 42, 0));
        let id = record_id("events", 1, 0);
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "3", "version 3 layout: {id}");
    }

    fn kv(key: &str, value: any_value::Value) -> KeyValue {
        KeyValue { key: key.into(), value: Some(AnyValue { value: Some(value) }) }
    }

    #[test]
    fn otlp_records_become_rows() {
        let request = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![
                        kv("service.name", any_value::Value::StringValue("api".into())),
                        kv("service.version", any_value::Value::StringValue("2.0".into())),
                        kv("pid", any_value::Value::IntValue(7)),
                        kv("debug", any_value::Value::BoolValue(false)),
                    ],
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope { name: "lib".into(), version: "1".into(), attributes: vec![] }),
                    log_records: vec![
                        LogRecord {
                            time_unix_nano: 1_700_000_000_123_456_789,
                            observed_time_unix_nano: 1_700_000_001_000_000_000,
                            severity_number: 17,
                            severity_text: String::new(),
                            body: Some(AnyValue { value: Some(any_value::Value::StringValue("boom".into())) }),
                            attributes: vec![kv("ratio", any_value::Value::DoubleValue(0.5))],
                            flags: 0x101,
                            trace_id: vec![0xab; 16],
                            span_id: vec![0x01, 0x02],
                            event_name: "ev".into(),
                        },
                        LogRecord::default(),
                    ],
                }],
            }],
        };
        let rows = decode("logs.otel", &request.encode_to_vec()).unwrap();
        assert_eq!(rows.len(), 2);
        let r = &rows[0];
        assert_eq!(r.timestamp.timestamp_nanos_opt(), Some(1_700_000_000_123_456_789));
        assert_eq!((r.severity_text.as_str(), r.severity_number), ("ERROR", 17));
        assert_eq!(r.body, "boom");
        assert_eq!(r.trace_id, "ab".repeat(16));
        assert_eq!(r.span_id, "0102");
        assert_eq!(r.trace_flags, Some(1));
        assert_eq!((&*r.service_name, &*r.service_version), ("api", "2.0"));
        assert_eq!(&*r.resource_attributes, "service.name=api,service.version=2.0,pid=7");
        assert_eq!(r.attributes, "ratio=0.500000");
        assert_eq!((&*r.scope_name, &*r.scope_version, r.event_name.as_str()), ("lib", "1", "ev"));
        assert_eq!(r.source, "otel");
        // An empty record: no time of its own, so the message's; no flags.
        assert_eq!(rows[1].timestamp, incoming("", b"").published);
        assert_eq!(rows[1].trace_flags, None);
        assert_ne!(rows[0].id, rows[1].id);
    }

    #[test]
    fn structured_bodies_are_kept_as_json() {
        let body = AnyValue {
            value: Some(any_value::Value::KvlistValue(crate::processor::proto::common::KeyValueList {
                values: vec![kv("a", any_value::Value::IntValue(1))],
            })),
        };
        assert_eq!(any_text(&body), r#"{"a":1}"#);
    }

    #[test]
    fn bad_payloads_say_why() {
        assert!(decode("logs.x", b"").unwrap_err().message.contains("empty"));
        assert!(decode("logs.x", b"{\"msg\": ").unwrap_err().message.contains("bad JSON"));
        assert!(decode("logs.x", b"[1, 2]").unwrap_err().message.contains("JSON object"));
        assert!(decode("logs.x", b"\x0a\xff\xff\xff").unwrap_err().message.contains("OTLP"));
        assert!(decode("logs.x", b"\"just a string\"").unwrap_err().message.contains("OTLP"));
    }
}
