//! OCSF events (reference §3.4) → `ocsf_events`, idempotent on `(time, id)`.
//!
//! Unlike the Go writer: a missing JSON sub-object defaults to `{}`/`[]` instead of violating NOT NULL (which
//! made the Go writer NAK the batch forever), and a missing required field or a non-UUID `id` is a decode error
//! that names the field (the Go writer skipped such events silently).
//!
//! Uses the processor api and the shared JSON helpers only.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::processor::api::{BatchDefaults, DatabaseConfig, DecodeError, Incoming, Processor, RowSize, Rows};
use crate::processor::json::{clean_jsonb, clean_text, each_object, parse_timestamp, text_or_number};
use crate::sql::qualified;

/// One row of `ocsf_events`.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    /// Event UUID (text, canonical lower-case).
    pub id: String,
    /// Event time.
    pub time: DateTime<Utc>,
    /// OCSF class.
    pub class_uid: i32,
    /// OCSF category.
    pub category_uid: i32,
    /// OCSF type.
    pub type_uid: i32,
    /// OCSF activity.
    pub activity_id: i32,
    /// Activity name.
    pub activity_name: Option<String>,
    /// Severity id (0 or absent → 1).
    pub severity_id: i32,
    /// Severity name.
    pub severity: Option<String>,
    /// Message.
    pub message: Option<String>,
    /// Status id.
    pub status_id: Option<i32>,
    /// Status.
    pub status: Option<String>,
    /// Status code.
    pub status_code: Option<String>,
    /// Status detail.
    pub status_detail: Option<String>,
    /// JSON sub-objects, as JSON text: metadata, observables, actor, device, src_endpoint, dst_endpoint, unmapped.
    pub objects: [String; 7],
    /// Trace id.
    pub trace_id: Option<String>,
    /// Span id.
    pub span_id: Option<String>,
    /// Log name.
    pub log_name: Option<String>,
    /// Log provider.
    pub log_provider: Option<String>,
    /// Log level.
    pub log_level: Option<String>,
    /// Log version.
    pub log_version: Option<String>,
    /// `raw_data` from the payload, else the whole payload.
    pub raw_data: String,
}

impl RowSize for EventRow {
    fn size(&self) -> usize {
        let opt = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        64 + self.id.len()
            + opt(&self.activity_name)
            + opt(&self.severity)
            + opt(&self.message)
            + opt(&self.status)
            + opt(&self.status_code)
            + opt(&self.status_detail)
            + self.objects.iter().map(String::len).sum::<usize>()
            + opt(&self.trace_id)
            + opt(&self.span_id)
            + opt(&self.log_name)
            + opt(&self.log_provider)
            + opt(&self.log_level)
            + opt(&self.log_version)
            + self.raw_data.len()
    }
}

/// The JSON sub-objects and what each defaults to.
const OBJECTS: [(&str, &str); 7] = [
    ("metadata", "{}"),
    ("observables", "[]"),
    ("actor", "{}"),
    ("device", "{}"),
    ("src_endpoint", "{}"),
    ("dst_endpoint", "{}"),
    ("unmapped", "{}"),
];

/// The events processor.
#[derive(Debug, Clone)]
pub struct Events {
    insert_sql: String,
}

/// The table written.
pub const TABLE: &str = "ocsf_events";

impl Processor for Events {
    const NAME: &'static str = "events";
    const TABLES: &'static [&'static str] = &[TABLE];
    /// 1,000 rows (sized by the benchmark, as telemetry), flushed after 1 s as the design this replaces.
    const BATCH: BatchDefaults = BatchDefaults { size: 1000, timeout: Duration::from_secs(1) };
    /// ServiceRadar's: 14 days.
    const RETENTION: &'static [(&'static str, Duration)] = &[(TABLE, Duration::from_secs(14 * 86_400))];
    /// ServiceRadar's (its DataRetentionWorker's defaults).
    const CHUNK_INTERVAL: &'static [(&'static str, Duration)] = &[(TABLE, Duration::from_secs(6 * 3600))];

    type Row = EventRow;

    fn new(database: &DatabaseConfig) -> Self {
        let table = qualified(&database.schema, TABLE);
        let insert_sql = format!(
            "INSERT INTO {table} (id, time, class_uid, category_uid, type_uid, activity_id, activity_name, severity_id, \
             severity, message, status_id, status, status_code, status_detail, metadata, observables, trace_id, span_id, \
             actor, device, src_endpoint, dst_endpoint, log_name, log_provider, log_level, log_version, unmapped, raw_data) \
             SELECT t.id::uuid, t.time, t.cls, t.cat, t.typ, t.act, t.actn, t.sevid, t.sev, t.msg, t.stid, t.st, t.stc, \
             t.std, t.md::jsonb, t.obs::jsonb, t.tr, t.sp, t.actor::jsonb, t.dev::jsonb, t.src::jsonb, t.dst::jsonb, \
             t.ln, t.lp, t.ll, t.lv, t.um::jsonb, t.raw \
             FROM unnest($1::text[], $2::timestamptz[], $3::int4[], $4::int4[], $5::int4[], $6::int4[], $7::text[], \
             $8::int4[], $9::text[], $10::text[], $11::int4[], $12::text[], $13::text[], $14::text[], $15::text[], \
             $16::text[], $17::text[], $18::text[], $19::text[], $20::text[], $21::text[], $22::text[], $23::text[], \
             $24::text[], $25::text[], $26::text[], $27::text[], $28::text[]) \
             AS t(id, time, cls, cat, typ, act, actn, sevid, sev, msg, stid, st, stc, std, md, obs, tr, sp, actor, dev, \
             src, dst, ln, lp, ll, lv, um, raw) \
             ON CONFLICT (time, id) DO NOTHING"
        );
        Events { insert_sql }
    }

    fn decode(&self, msg: &Incoming<'_>, rows: &mut Rows<'_, EventRow>) -> Result<(), DecodeError> {
        each_object(msg.payload, "event", |_, map, whole| rows.push(event_row(map, msg, whole)?))
    }

    async fn write(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        rows: &[EventRow],
    ) -> Result<u64, tokio_postgres::Error> {
        let stmt = tx.prepare_cached(&self.insert_sql).await?;
        let opt = |f: fn(&EventRow) -> Option<&str>| rows.iter().map(f).collect::<Vec<Option<&str>>>();
        let int = |f: fn(&EventRow) -> i32| rows.iter().map(f).collect::<Vec<i32>>();
        let obj = |i: usize| rows.iter().map(|r| r.objects[i].as_str()).collect::<Vec<&str>>();
        let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        let times: Vec<DateTime<Utc>> = rows.iter().map(|r| r.time).collect();
        let status_id: Vec<Option<i32>> = rows.iter().map(|r| r.status_id).collect();
        let raw: Vec<&str> = rows.iter().map(|r| r.raw_data.as_str()).collect();
        tx.execute(
            &stmt,
            &[
                &ids,
                &times,
                &int(|r| r.class_uid),
                &int(|r| r.category_uid),
                &int(|r| r.type_uid),
                &int(|r| r.activity_id),
                &opt(|r| r.activity_name.as_deref()),
                &int(|r| r.severity_id),
                &opt(|r| r.severity.as_deref()),
                &opt(|r| r.message.as_deref()),
                &status_id,
                &opt(|r| r.status.as_deref()),
                &opt(|r| r.status_code.as_deref()),
                &opt(|r| r.status_detail.as_deref()),
                &obj(0),
                &obj(1),
                &opt(|r| r.trace_id.as_deref()),
                &opt(|r| r.span_id.as_deref()),
                &obj(2),
                &obj(3),
                &obj(4),
                &obj(5),
                &opt(|r| r.log_name.as_deref()),
                &opt(|r| r.log_provider.as_deref()),
                &opt(|r| r.log_level.as_deref()),
                &opt(|r| r.log_version.as_deref()),
                &obj(6),
                &raw,
            ],
        )
        .await
    }
}

/// An OCSF integer: a JSON number or a numeric string.
fn int_of(map: &Map<String, Value>, key: &str) -> Result<Option<i32>, DecodeError> {
    let bad = || DecodeError::new(format!("{key}: not a 32-bit integer"));
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_i64().and_then(|i| i32::try_from(i).ok()).map(Some).ok_or_else(bad),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => s.trim().parse::<i32>().map(Some).map_err(|_| bad()),
        Some(_) => Err(bad()),
    }
}

fn required(map: &Map<String, Value>, key: &str) -> Result<i32, DecodeError> {
    match int_of(map, key)? {
        Some(v) if v != 0 => Ok(v),
        _ => Err(DecodeError::new(format!("{key}: required (non-zero) and missing"))),
    }
}

/// Parses a UUID in any case and returns it canonical (lower-case, hyphenated); `None` if it is not one.
pub fn canonical_uuid(s: &str) -> Option<String> {
    let hex: String = s.trim().trim_start_matches('{').trim_end_matches('}').chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let groups = [(0, 8), (8, 12), (12, 16), (16, 20), (20, 32)];
    let canonical: Vec<String> = groups.iter().map(|&(a, b)| hex[a..b].to_ascii_lowercase()).collect();
    let shaped = s.trim().trim_start_matches('{').trim_end_matches('}');
    // Hyphens, when present, must be where a UUID has them.
    if shaped.contains('-') && shaped.to_ascii_lowercase() != canonical.join("-") {
        return None;
    }
    Some(canonical.join("-"))
}

fn event_row(map: &Map<String, Value>, msg: &Incoming<'_>, whole: bool) -> Result<EventRow, DecodeError> {
    let id_text = match map.get("id") {
        Some(Value::String(s)) if !s.trim().is_empty() => s,
        _ => return Err(DecodeError::new("id: required and missing")),
    };
    let id = canonical_uuid(id_text).ok_or_else(|| DecodeError::new(format!("id: {id_text:?} is not a UUID")))?;
    let time = match map.get("time") {
        Some(v) => {
            let raw = serde_json::value::to_raw_value(v).map_err(|e| DecodeError::new(e.to_string()))?;
            parse_timestamp(&raw)?.unwrap_or(msg.published)
        }
        None => msg.published,
    };
    let mut objects: [String; 7] = Default::default();
    for (i, (key, default)) in OBJECTS.iter().enumerate() {
        objects[i] = match map.get(*key) {
            None | Some(Value::Null) => (*default).to_owned(),
            Some(v @ (Value::Object(_) | Value::Array(_))) => {
                let text = v.to_string();
                match clean_jsonb(&text) {
                    std::borrow::Cow::Owned(clean) => clean,
                    std::borrow::Cow::Borrowed(_) => text,
                }
            }
            Some(_) => return Err(DecodeError::new(format!("{key}: must be a JSON object or array"))),
        };
    }
    let mut raw_data = match map.get("raw_data") {
        Some(Value::String(s)) => s.clone(),
        _ if whole => String::from_utf8_lossy(msg.payload).into_owned(),
        _ => serde_json::to_string(map).unwrap_or_default(),
    };
    clean_text(&mut raw_data);
    Ok(EventRow {
        id,
        time,
        class_uid: required(map, "class_uid")?,
        category_uid: required(map, "category_uid")?,
        type_uid: required(map, "type_uid")?,
        activity_id: required(map, "activity_id")?,
        activity_name: text_or_number(map, &["activity_name"]),
        severity_id: int_of(map, "severity_id")?.filter(|s| *s != 0).unwrap_or(1),
        severity: text_or_number(map, &["severity"]),
        message: text_or_number(map, &["message"]),
        status_id: int_of(map, "status_id")?,
        status: text_or_number(map, &["status"]),
        status_code: text_or_number(map, &["status_code"]),
        status_detail: text_or_number(map, &["status_detail"]),
        objects,
        trace_id: text_or_number(map, &["trace_id", "traceId"]),
        span_id: text_or_number(map, &["span_id", "spanId"]),
        log_name: text_or_number(map, &["log_name"]),
        log_provider: text_or_number(map, &["log_provider"]),
        log_level: text_or_number(map, &["log_level"]),
        log_version: text_or_number(map, &["log_version"]),
        raw_data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn decode(payload: &str) -> Result<Vec<EventRow>, DecodeError> {
        let msg = Incoming {
            subject: "events.ocsf.processed",
            payload: payload.as_bytes(),
            published: Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap(),
            stream: "events",
            sequence: 1,
            headers: crate::processor::api::Headers::NONE,
            reply: "",
        };
        let mut rows = Vec::new();
        Events::new(&crate::config::DatabaseConfig::for_schema("platform"))
            .decode(&msg, &mut Rows::new(&mut rows, crate::processor::api::Limits::NONE))
            .map(|()| rows)
    }

    const SAMPLE_02: &str = r#"{"id":"c0b2f5af-7d5d-4c1a-8c5b-7c6a9f4c94b2","time":"2025-01-01T00:00:00Z","class_uid":1008,
        "category_uid":1,"type_uid":100800,"activity_id":1,"severity_id":2,"message":"test event"}"#;

    #[test]
    fn the_go_test_event_with_defaults_for_absent_objects() {
        let r = &decode(SAMPLE_02).unwrap()[0];
        assert_eq!(r.id, "c0b2f5af-7d5d-4c1a-8c5b-7c6a9f4c94b2");
        assert_eq!(r.time, Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap());
        assert_eq!((r.class_uid, r.category_uid, r.type_uid, r.activity_id, r.severity_id), (1008, 1, 100800, 1, 2));
        assert_eq!(r.message.as_deref(), Some("test event"));
        assert_eq!(r.objects, ["{}", "[]", "{}", "{}", "{}", "{}", "{}"].map(String::from));
        assert_eq!(r.raw_data, SAMPLE_02, "raw_data defaults to the whole payload");
    }

    #[test]
    fn numeric_strings_and_severity_default() {
        let r = &decode(
            r#"{"id":"C0B2F5AF-7D5D-4C1A-8C5B-7C6A9F4C94B2","class_uid":"1008","category_uid":"1","type_uid":"100801",
               "activity_id":1,"severity_id":0,"status_id":"3","raw_data":"raw","metadata":{"v":"1.7.0"}}"#,
        )
        .unwrap()[0];
        assert_eq!(r.id, "c0b2f5af-7d5d-4c1a-8c5b-7c6a9f4c94b2", "canonical lower case");
        assert_eq!((r.class_uid, r.severity_id, r.status_id), (1008, 1, Some(3)));
        assert_eq!(r.raw_data, "raw");
        assert_eq!(r.objects[0], r#"{"v":"1.7.0"}"#);
        assert_eq!(r.time, Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap(), "no time: the message's");
    }

    #[test]
    fn missing_required_fields_and_bad_ids_are_decode_errors() {
        for (payload, why) in [
            (r#"{"class_uid":1,"category_uid":1,"type_uid":1,"activity_id":1}"#, "id: required"),
            (r#"{"id":"not-a-uuid","class_uid":1,"category_uid":1,"type_uid":1,"activity_id":1}"#, "not a UUID"),
            (
                r#"{"id":"c0b2f5af-7d5d-4c1a-8c5b-7c6a9f4c94b2","category_uid":1,"type_uid":1,"activity_id":1}"#,
                "class_uid",
            ),
            (
                r#"{"id":"c0b2f5af-7d5d-4c1a-8c5b-7c6a9f4c94b2","class_uid":1,"category_uid":1,"type_uid":1,"activity_id":0}"#,
                "activity_id",
            ),
            (
                r#"{"id":"c0b2f5af-7d5d-4c1a-8c5b-7c6a9f4c94b2","class_uid":"x","category_uid":1,"type_uid":1,"activity_id":1}"#,
                "class_uid",
            ),
            (
                r#"{"id":"c0b2f5af-7d5d-4c1a-8c5b-7c6a9f4c94b2","class_uid":1,"category_uid":1,"type_uid":1,"activity_id":1,"device":"d"}"#,
                "device",
            ),
            ("[1]", "JSON object"),
            ("{", "bad JSON"),
        ] {
            let e = decode(payload).expect_err(payload);
            assert!(e.message.contains(why), "{payload}: {e}");
        }
    }

    #[test]
    fn uuids_are_recognised() {
        assert!(canonical_uuid("c0b2f5af-7d5d-4c1a-8c5b-7c6a9f4c94b2").is_some());
        assert!(canonical_uuid("{c0b2f5af-7d5d-4c1a-8c5b-7c6a9f4c94b2}").is_some());
        assert!(canonical_uuid("c0b2f5af7d5d4c1a8c5b7c6a9f4c94b2").is_some());
        assert!(canonical_uuid("c0b2f5af-7d5d4c1a-8c5b-7c6a9f4c94b2").is_none());
        assert!(canonical_uuid("g0b2f5af-7d5d-4c1a-8c5b-7c6a9f4c94b2").is_none());
        assert!(canonical_uuid("").is_none());
    }
}
