//! Telemetry JSON (reference §8.3) → `timeseries_metrics`, keyed by `(timestamp, gateway_id, series_key)`.
//!
//! A message is one metric object or an array of them. `series_key` is computed here exactly as ServiceRadar's
//! `build_timeseries_series_key` computes it in SQL (reference §8.2), so a redelivered sample hits the primary key.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use md5::{Digest, Md5};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::sql::{JsonbText, copy_or_insert};

use super::json::{clean_jsonb, clean_text, jsonb_each_text, parse_f64, parse_timestamp};
use super::{BatchDefaults, DecodeError, Incoming, Processor, RowSize, Rows};
use crate::sql::qualified;

/// One row of `timeseries_metrics`.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricRow {
    /// Sample time (the message's JetStream time when the payload has none, so redeliveries agree).
    pub timestamp: DateTime<Utc>,
    /// Gateway; `unknown` when absent.
    pub gateway_id: String,
    /// Agent.
    pub agent_id: Option<String>,
    /// Metric name; `unknown` when absent.
    pub metric_name: String,
    /// Metric type; `gauge` when absent.
    pub metric_type: String,
    /// Device.
    pub device_id: Option<String>,
    /// Sample value.
    pub value: f64,
    /// Unit.
    pub unit: Option<String>,
    /// Tags as JSON object text.
    pub tags: Option<String>,
    /// Partition.
    pub partition: Option<String>,
    /// Scale.
    pub scale: Option<f64>,
    /// Counter delta.
    pub is_delta: bool,
    /// Target device IP.
    pub target_device_ip: Option<String>,
    /// Interface index.
    pub if_index: Option<i32>,
    /// Metadata as JSON text.
    pub metadata: Option<String>,
    /// md5 series identity (reference §8.2).
    pub series_key: String,
}

impl RowSize for MetricRow {
    fn size(&self) -> usize {
        let opt = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        // timestamp, value, scale, is_delta, if_index
        40 + self.gateway_id.len()
            + opt(&self.agent_id)
            + self.metric_name.len()
            + self.metric_type.len()
            + opt(&self.device_id)
            + opt(&self.unit)
            + opt(&self.tags)
            + opt(&self.partition)
            + opt(&self.target_device_ip)
            + opt(&self.metadata)
            + self.series_key.len()
    }
}

/// The telemetry processor; holds its SQL, built once for the configured schema.
#[derive(Debug, Clone)]
pub struct Telemetry {
    copy_sql: String,
    insert_sql: String,
}

impl Telemetry {
    /// 5,000 rows, flushed after 1 s as the design this replaces. The benchmark (BENCHMARKS.md): 100-row batches
    /// run at ~60% of the 1,000-row rate; 5,000-row ones ~15% faster still and cost PostgreSQL ~25% less CPU
    /// per row, for ~60 MiB of peak RSS instead of ~25. Telemetry is the high-volume stream.
    pub const BATCH_DEFAULTS: BatchDefaults = BatchDefaults { size: 5000, timeout: Duration::from_secs(1) };
    /// The table written.
    pub const TABLE: &str = "timeseries_metrics";

    /// A processor writing to `schema`.
    pub fn new(schema: &str) -> Self {
        let table = qualified(schema, Self::TABLE);
        // One statement per batch: column arrays unnested server-side; the primary key makes it idempotent.
        let insert_sql = format!(
            "INSERT INTO {table} (timestamp, gateway_id, agent_id, metric_name, metric_type, device_id, value, unit, \
             tags, partition, scale, is_delta, target_device_ip, if_index, metadata, series_key) \
             SELECT t.ts, t.gw, t.agent, t.name, t.kind, t.device, t.value, t.unit, t.tags::jsonb, t.part, t.scale, \
             t.delta, t.ip, t.ifx, t.meta::jsonb, t.sk \
             FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
             $7::float8[], $8::text[], $9::text[], $10::text[], $11::float8[], $12::bool[], $13::text[], \
             $14::int4[], $15::text[], $16::text[]) \
             AS t(ts, gw, agent, name, kind, device, value, unit, tags, part, scale, delta, ip, ifx, meta, sk) \
             ON CONFLICT (timestamp, gateway_id, series_key) DO NOTHING"
        );
        let copy_sql = format!(
            "COPY {table} (timestamp, gateway_id, agent_id, metric_name, metric_type, device_id, value, unit, tags, \
             partition, scale, is_delta, target_device_ip, if_index, metadata, series_key) FROM STDIN BINARY"
        );
        Telemetry { copy_sql, insert_sql }
    }

    /// Binary COPY of the rows: PostgreSQL's fastest path, but it fails whole (23505) if any row exists.
    /// (Public for the benchmark, whose ceiling is this same encoding without NATS.)
    pub async fn copy_rows(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        rows: &[MetricRow],
    ) -> Result<u64, tokio_postgres::Error> {
        use tokio_postgres::binary_copy::BinaryCopyInWriter;
        use tokio_postgres::types::Type;
        const TYPES: [Type; 16] = [
            Type::TIMESTAMPTZ,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::FLOAT8,
            Type::TEXT,
            Type::JSONB,
            Type::TEXT,
            Type::FLOAT8,
            Type::BOOL,
            Type::TEXT,
            Type::INT4,
            Type::JSONB,
            Type::TEXT,
        ];
        let sink = tx.copy_in(&self.copy_sql).await?;
        let writer = BinaryCopyInWriter::new(sink, &TYPES);
        tokio::pin!(writer);
        for r in rows {
            let tags = r.tags.as_deref().map(JsonbText);
            let metadata = r.metadata.as_deref().map(JsonbText);
            writer
                .as_mut()
                .write(&[
                    &r.timestamp,
                    &r.gateway_id,
                    &r.agent_id,
                    &r.metric_name,
                    &r.metric_type,
                    &r.device_id,
                    &r.value,
                    &r.unit,
                    &tags,
                    &r.partition,
                    &r.scale,
                    &r.is_delta,
                    &r.target_device_ip,
                    &r.if_index,
                    &metadata,
                    &r.series_key,
                ])
                .await?;
        }
        writer.finish().await
    }

    /// The conflict-tolerant path: rows already present (a redelivery) are skipped.
    async fn insert(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        rows: &[MetricRow],
    ) -> Result<u64, tokio_postgres::Error> {
        let stmt = tx.prepare_cached(&self.insert_sql).await?;
        let col = |f: fn(&MetricRow) -> Option<&str>| rows.iter().map(f).collect::<Vec<_>>();
        let timestamps: Vec<DateTime<Utc>> = rows.iter().map(|r| r.timestamp).collect();
        let gateway = col(|r| Some(&r.gateway_id));
        let agent = col(|r| r.agent_id.as_deref());
        let name = col(|r| Some(&r.metric_name));
        let kind = col(|r| Some(&r.metric_type));
        let device = col(|r| r.device_id.as_deref());
        let values: Vec<f64> = rows.iter().map(|r| r.value).collect();
        let unit = col(|r| r.unit.as_deref());
        let tags = col(|r| r.tags.as_deref());
        let partition = col(|r| r.partition.as_deref());
        let scale: Vec<Option<f64>> = rows.iter().map(|r| r.scale).collect();
        let delta: Vec<bool> = rows.iter().map(|r| r.is_delta).collect();
        let ip = col(|r| r.target_device_ip.as_deref());
        let if_index: Vec<Option<i32>> = rows.iter().map(|r| r.if_index).collect();
        let metadata = col(|r| r.metadata.as_deref());
        let series = col(|r| Some(&r.series_key));
        tx.execute(
            &stmt,
            &[
                &timestamps,
                &gateway,
                &agent,
                &name,
                &kind,
                &device,
                &values,
                &unit,
                &tags,
                &partition,
                &scale,
                &delta,
                &ip,
                &if_index,
                &metadata,
                &series,
            ],
        )
        .await
    }
}

/// The payload as sent (snake_case, with ServiceRadar's camelCase aliases).
#[derive(Deserialize)]
struct RawMetric<'a> {
    #[serde(default, borrow)]
    timestamp: Option<&'a RawValue>,
    #[serde(default, alias = "gatewayId")]
    gateway_id: Option<String>,
    #[serde(default, alias = "agentId")]
    agent_id: Option<String>,
    #[serde(default, alias = "metricName")]
    metric_name: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default, alias = "metricType")]
    metric_type: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default, alias = "deviceId")]
    device_id: Option<String>,
    #[serde(default, borrow)]
    value: Option<&'a RawValue>,
    #[serde(default)]
    unit: Option<String>,
    #[serde(default, borrow)]
    tags: Option<&'a RawValue>,
    #[serde(default)]
    partition: Option<String>,
    #[serde(default, borrow)]
    scale: Option<&'a RawValue>,
    #[serde(default, alias = "isDelta")]
    is_delta: Option<bool>,
    #[serde(default, alias = "targetDeviceIp")]
    target_device_ip: Option<String>,
    #[serde(default, alias = "ifIndex")]
    if_index: Option<i64>,
    #[serde(default, borrow)]
    metadata: Option<&'a RawValue>,
}

impl Processor for Telemetry {
    type Row = MetricRow;

    fn decode(&self, msg: &Incoming<'_>, rows: &mut Rows<'_, MetricRow>) -> Result<(), DecodeError> {
        let text =
            std::str::from_utf8(msg.payload).map_err(|e| DecodeError::new(format!("payload is not UTF-8: {e}")))?;
        let first = text.trim_start().as_bytes().first().copied();
        match first {
            Some(b'{') => rows.push(decode_metric(text, msg)?)?,
            Some(b'[') => {
                let items: Vec<&RawValue> = serde_json::from_str(text).map_err(json_error)?;
                rows.reserve(items.len());
                for (i, item) in items.into_iter().enumerate() {
                    let row = decode_metric(item.get(), msg).map_err(|e| e.prefixed(format_args!("[{i}]: ")))?;
                    rows.push(row)?;
                }
            }
            _ => return Err(DecodeError::new("payload is not a JSON object or array")),
        }
        Ok(())
    }

    async fn write(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        rows: &[MetricRow],
    ) -> Result<u64, tokio_postgres::Error> {
        // Why COPY first: it is several times faster than a conflict-checking INSERT, and a redelivery (the only
        // source of existing rows) is rare. If any row exists, the COPY fails whole with 23505; the savepoint
        // undoes it and the batch goes through INSERT ... ON CONFLICT DO NOTHING instead. A concurrent instance
        // writing the same rows blocks on the key, then takes the same fallback: never a second row.
        copy_or_insert(tx, || self.copy_rows(tx, rows), || self.insert(tx, rows)).await
    }
}

fn json_error(e: serde_json::Error) -> DecodeError {
    DecodeError::new(format!("bad JSON: {e}"))
}

fn decode_metric(text: &str, msg: &Incoming<'_>) -> Result<MetricRow, DecodeError> {
    let raw: RawMetric<'_> = match serde_json::from_str(text) {
        Ok(raw) => raw,
        // Only on the error path: run again with path tracking so the message names the field.
        Err(e) => {
            let mut de = serde_json::Deserializer::from_str(text);
            return Err(match serde_path_to_error::deserialize::<_, RawMetric<'_>>(&mut de) {
                Err(pe) if pe.path().to_string() != "." => DecodeError::new(format!("{}: {}", pe.path(), pe.inner())),
                _ => json_error(e),
            });
        }
    };
    let timestamp = match raw.timestamp {
        Some(t) => parse_timestamp(t)?.unwrap_or(msg.published),
        None => msg.published,
    };
    let value = match raw.value {
        Some(v) => parse_f64("value", v)?,
        None => None,
    }
    .ok_or_else(|| DecodeError::new("value: missing; a sample needs a value"))?;
    let scale = match raw.scale {
        Some(v) => parse_f64("scale", v)?,
        None => None,
    };
    let if_index = raw
        .if_index
        .map(|i| i32::try_from(i).map_err(|_| DecodeError::new(format!("if_index: {i} does not fit an int4"))))
        .transpose()?;
    let tags = match raw.tags {
        Some(t) => Tags::parse(t)?,
        None => None,
    };
    let metadata = match raw.metadata {
        Some(m) if m.get().trim() != "null" => Some(clean_jsonb(m.get()).into_owned()),
        _ => None,
    };
    let present = |s: Option<String>| s.filter(|v| !v.trim().is_empty());
    let row = MetricRow {
        timestamp,
        gateway_id: present(raw.gateway_id).unwrap_or_else(|| "unknown".to_owned()),
        agent_id: raw.agent_id,
        metric_name: present(raw.metric_name).or_else(|| present(raw.name)).unwrap_or_else(|| "unknown".to_owned()),
        metric_type: present(raw.metric_type).or_else(|| present(raw.kind)).unwrap_or_else(|| "gauge".to_owned()),
        device_id: raw.device_id,
        value,
        unit: raw.unit,
        series_key: String::new(),
        tags: tags.as_ref().map(|t| t.json.clone()),
        partition: raw.partition,
        scale,
        is_delta: raw.is_delta.unwrap_or(false),
        target_device_ip: raw.target_device_ip,
        if_index,
        metadata,
    };
    let mut row = row;
    for value in [
        Some(&mut row.gateway_id),
        row.agent_id.as_mut(),
        Some(&mut row.metric_name),
        Some(&mut row.metric_type),
        row.device_id.as_mut(),
        row.unit.as_mut(),
        row.partition.as_mut(),
        row.target_device_ip.as_mut(),
    ]
    .into_iter()
    .flatten()
    {
        clean_text(value);
    }
    let series_key = series_key(&SeriesIdentity {
        metric_type: Some(&row.metric_type),
        metric_name: Some(&row.metric_name),
        partition: row.partition.as_deref(),
        agent_id: row.agent_id.as_deref(),
        device_id: row.device_id.as_deref(),
        target_device_ip: row.target_device_ip.as_deref(),
        if_index: row.if_index,
        tag_texts: tags.as_ref().map(|t| &t.texts),
    });
    Ok(MetricRow { series_key, ..row })
}

/// Tags: the JSON object stored in the `tags` column, and each value as `jsonb_each_text` would give it.
struct Tags {
    json: String,
    texts: BTreeMap<String, Option<String>>,
}

impl Tags {
    /// Accepts an object, or a string holding one (decoded first, as ServiceRadar does); null or "" is none.
    fn parse(raw: &RawValue) -> Result<Option<Tags>, DecodeError> {
        let text = raw.get().trim();
        let inner: String;
        let object = match text.as_bytes().first() {
            Some(b'n') => return Ok(None),
            Some(b'"') => {
                inner = serde_json::from_str(text).map_err(|e| DecodeError::new(format!("tags: {e}")))?;
                if inner.trim().is_empty() {
                    return Ok(None);
                }
                inner.trim()
            }
            _ => text,
        };
        if !object.starts_with('{') {
            return Err(DecodeError::new("tags: must be a JSON object (or a string holding one)"));
        }
        // NULs become U+FFFD first, so the series key is computed from what the database will hold.
        let object = clean_jsonb(object);
        let map: BTreeMap<String, &RawValue> =
            serde_json::from_str(&object).map_err(|e| DecodeError::new(format!("tags: {e}")))?;
        let mut texts = BTreeMap::new();
        for (k, v) in map {
            texts.insert(k, jsonb_each_text(v).map_err(|e| e.prefixed("tags: "))?);
        }
        Ok(Some(Tags { json: object.into_owned(), texts }))
    }
}

/// The inputs of ServiceRadar's `build_timeseries_series_key`.
#[derive(Debug, Default, Clone, Copy)]
pub struct SeriesIdentity<'a> {
    /// `metric_type`.
    pub metric_type: Option<&'a str>,
    /// `metric_name`.
    pub metric_name: Option<&'a str>,
    /// `partition`.
    pub partition: Option<&'a str>,
    /// `agent_id`.
    pub agent_id: Option<&'a str>,
    /// `device_id`.
    pub device_id: Option<&'a str>,
    /// `target_device_ip`.
    pub target_device_ip: Option<&'a str>,
    /// `if_index`.
    pub if_index: Option<i32>,
    /// Each tag's value as `jsonb_each_text` gives it (None for JSON null).
    pub tag_texts: Option<&'a BTreeMap<String, Option<String>>>,
}

/// Tag keys that never identify a series.
const UNSTABLE_TAGS: [&str; 3] = ["available", "metric", "packet_loss"];

/// `<len(prefix+name)>:<prefix><name>=<len(value)>:<value>`, without `write!` (once per component of every row).
fn push_item(out: &mut String, prefix: &str, name: &str, value: &str) {
    push_decimal(out, prefix.len() + name.len());
    out.push(':');
    out.push_str(prefix);
    out.push_str(name);
    out.push('=');
    push_decimal(out, value.len());
    out.push(':');
    out.push_str(value);
}

fn push_decimal(out: &mut String, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend(digits[i..].iter().map(|d| char::from(*d)));
}

/// md5 (lower-case hex) of the `|`-joined non-NULL components, as in reference §8.2. Blank means empty after
/// trimming spaces only (SQL `btrim`); tags are ordered by key bytes (`COLLATE "C"`).
pub fn series_key(id: &SeriesIdentity<'_>) -> String {
    let mut key = String::with_capacity(128);
    let mut push = |name: &str, value: Option<&str>| {
        if let Some(v) = value.filter(|v| !v.trim_matches(' ').is_empty()) {
            if !key.is_empty() {
                key.push('|');
            }
            push_item(&mut key, "", name, v);
        }
    };
    push("metric_type", id.metric_type);
    push("metric_name", id.metric_name);
    push("partition", id.partition);
    push("agent_id", id.agent_id);
    push("device_id", id.device_id);
    push("target_device_ip", id.target_device_ip);
    push("if_index", id.if_index.map(|i| i.to_string()).as_deref());
    // stable_tags: one component per kept tag, '|'-joined, as a single (possibly absent) item.
    let mut tags = String::new();
    for (k, v) in id.tag_texts.into_iter().flatten() {
        let Some(v) = v.as_deref().filter(|v| !v.trim_matches(' ').is_empty()) else {
            continue;
        };
        if UNSTABLE_TAGS.contains(&k.as_str()) {
            continue;
        }
        if !tags.is_empty() {
            tags.push('|');
        }
        push_item(&mut tags, "tag:", k, v);
    }
    if !tags.is_empty() {
        if !key.is_empty() {
            key.push('|');
        }
        key.push_str(&tags);
    }
    let digest = Md5::digest(key.as_bytes());
    // By table rather than `write!("{:02x}")`: this runs once per row and formatting showed in the profile.
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(32);
    for b in digest {
        hex.push(HEX[usize::from(b >> 4)] as char);
        hex.push(HEX[usize::from(b & 15)] as char);
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn incoming(payload: &str) -> Incoming<'_> {
        Incoming {
            subject: "telemetry.cpu",
            payload: payload.as_bytes(),
            published: Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap(),
            stream: "events",
            sequence: 1,
        }
    }

    fn decode(payload: &str) -> Result<Vec<MetricRow>, DecodeError> {
        let mut rows = Vec::new();
        Telemetry::new("platform")
            .decode(&incoming(payload), &mut Rows::new(&mut rows, crate::processor::Limits::NONE))
            .map(|()| rows)
    }

    const SAMPLE: &str = r#"{"timestamp": "2024-01-01T00:00:00Z", "gateway_id": "gateway-1", "agent_id": "agent-1",
        "metric_name": "cpu_usage", "metric_type": "gauge", "device_id": "device-1", "value": 45.5,
        "unit": "percent", "tags": {"host": "server1"}}"#;

    #[test]
    fn decodes_the_reference_sample() {
        let rows = decode(SAMPLE).unwrap();
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert_eq!(r.timestamp, Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap());
        assert_eq!(r.gateway_id, "gateway-1");
        assert_eq!(r.agent_id.as_deref(), Some("agent-1"));
        assert_eq!(r.metric_name, "cpu_usage");
        assert_eq!(r.device_id.as_deref(), Some("device-1"));
        assert_eq!(r.value, 45.5);
        assert_eq!(r.unit.as_deref(), Some("percent"));
        assert_eq!(r.tags.as_deref(), Some(r#"{"host": "server1"}"#));
        assert!(!r.is_delta);
        assert_eq!(r.series_key.len(), 32);
    }

    #[test]
    fn camel_case_aliases_and_fallbacks() {
        let rows = decode(
            r#"{"gatewayId": "g", "agentId": "a", "name": "if_in", "type": "counter", "deviceId": "d",
                "isDelta": true, "targetDeviceIp": "10.0.0.1", "ifIndex": 3, "value": "12.5", "tags": "{\"x\": 1}"}"#,
        )
        .unwrap();
        let r = &rows[0];
        assert_eq!((r.gateway_id.as_str(), r.metric_name.as_str(), r.metric_type.as_str()), ("g", "if_in", "counter"));
        assert!(r.is_delta);
        assert_eq!(r.if_index, Some(3));
        assert_eq!(r.target_device_ip.as_deref(), Some("10.0.0.1"));
        assert_eq!(r.value, 12.5);
        assert_eq!(r.tags.as_deref(), Some(r#"{"x": 1}"#));
    }

    #[test]
    fn defaults_apply_and_the_time_comes_from_jetstream() {
        let r = &decode(r#"{"value": 1}"#).unwrap()[0];
        assert_eq!(
            (r.gateway_id.as_str(), r.metric_name.as_str(), r.metric_type.as_str()),
            ("unknown", "unknown", "gauge")
        );
        assert_eq!(r.timestamp, incoming("").published);
    }

    #[test]
    fn arrays_give_one_row_each() {
        assert_eq!(decode(r#"[{"value": 1}, {"value": 2}, {"value": 3}]"#).unwrap().len(), 3);
        assert_eq!(decode("[]").unwrap().len(), 0);
        let e = decode(r#"[{"value": 1}, {"nope": 2}]"#).unwrap_err();
        assert!(e.message.starts_with("[1]: value: missing"), "{e}");
    }

    #[test]
    fn bad_payloads_say_why() {
        for (payload, why) in [
            ("\u{0}\u{1}garbage", "not a JSON object"),
            ("{\"value\": ", "EOF while parsing"),
            (r#"{"value": "abc"}"#, "value"),
            (r#"{"value": 1, "device_id": 7}"#, "device_id"),
            (r#"{"value": 1, "tags": [1]}"#, "tags: must be a JSON object"),
            (r#"{"value": 1, "if_index": 99999999999}"#, "if_index"),
            (r#"{"value": 1, "timestamp": "soon"}"#, "timestamp"),
            ("42", "not a JSON object"),
        ] {
            let e = decode(payload).expect_err(payload);
            assert!(e.message.contains(why), "{payload}: {e}");
        }
        let mut rows = Vec::new();
        let bytes = [0xff, 0xfe, b'{'];
        let msg = Incoming { payload: &bytes, ..incoming("") };
        let e =
            Telemetry::new("p").decode(&msg, &mut Rows::new(&mut rows, crate::processor::Limits::NONE)).unwrap_err();
        assert!(e.message.contains("UTF-8"));
    }

    #[test]
    fn series_key_of_the_empty_identity_is_md5_of_nothing() {
        assert_eq!(series_key(&SeriesIdentity::default()), "d41d8cd98f00b204e9800998ecf8427e");
    }

    #[test]
    fn series_key_ignores_unstable_and_blank_tags_and_the_value() {
        let a = &decode(r#"{"metric_name": "m", "value": 1, "tags": {"host": "h", "available": true, "blank": "  "}}"#)
            .unwrap()[0];
        let b = &decode(r#"{"metric_name": "m", "value": 2, "tags": {"host": "h", "packet_loss": 3}}"#).unwrap()[0];
        let c = &decode(r#"{"metric_name": "m", "value": 1, "tags": {"host": "other"}}"#).unwrap()[0];
        assert_eq!(a.series_key, b.series_key);
        assert_ne!(a.series_key, c.series_key);
    }

    #[test]
    fn series_key_is_length_prefixed() {
        // Without length prefixes these two would collide ("a|b" vs "a" + "|b").
        let x = series_key(&SeriesIdentity { agent_id: Some("a|b"), ..Default::default() });
        let y = series_key(&SeriesIdentity { agent_id: Some("a"), device_id: Some("|b"), ..Default::default() });
        assert_ne!(x, y);
        // Known value: md5("11:metric_type=5:gauge").
        let z = series_key(&SeriesIdentity { metric_type: Some("gauge"), ..Default::default() });
        let expected = format!("{:x}", Md5::digest(b"11:metric_type=5:gauge"));
        assert_eq!(z, expected);
    }
}
