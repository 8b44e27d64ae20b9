//! Telemetry JSON (May 2026's format, still taken from older publishers) as publishers send it (reference §8.3): one metric object or an array of them, with
//! ServiceRadar's camelCase aliases, numbers that may be strings, flexible timestamps, and tags that may be a
//! string holding JSON.
//!
//! Uses the telemetry row and series key, the processor api and the shared JSON helpers.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::row::MetricRow;
use super::series_key::{SeriesIdentity, Volatile, series_key};
use crate::processor::api::{DecodeError, Incoming, Rows};
use crate::processor::json::{clean_jsonb, clean_text, jsonb_each_text, parse_f64, parse_timestamp};

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

/// Appends the rows of one message.
pub fn decode(msg: &Incoming<'_>, rows: &mut Rows<'_, MetricRow>, volatile: &Volatile) -> Result<(), DecodeError> {
    let text = std::str::from_utf8(msg.payload).map_err(|e| DecodeError::new(format!("payload is not UTF-8: {e}")))?;
    let first = text.trim_start().as_bytes().first().copied();
    match first {
        Some(b'{') => rows.push(decode_metric(text, msg, volatile)?)?,
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_str(text).map_err(json_error)?;
            rows.reserve(items.len());
            for (i, item) in items.into_iter().enumerate() {
                let row = decode_metric(item.get(), msg, volatile).map_err(|e| e.prefixed(format_args!("[{i}]: ")))?;
                rows.push(row)?;
            }
        }
        _ => return Err(DecodeError::new("payload is not a JSON object or array")),
    }
    Ok(())
}

fn json_error(e: serde_json::Error) -> DecodeError {
    DecodeError::new(format!("bad JSON: {e}"))
}

fn decode_metric(text: &str, msg: &Incoming<'_>, volatile: &Volatile) -> Result<MetricRow, DecodeError> {
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
        counter_width: None,
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
    let identity = SeriesIdentity {
        metric_type: Some(&row.metric_type),
        metric_name: Some(&row.metric_name),
        partition: row.partition.as_deref(),
        agent_id: row.agent_id.as_deref(),
        device_id: row.device_id.as_deref(),
        target_device_ip: row.target_device_ip.as_deref(),
        if_index: row.if_index,
    };
    let tag_texts = tags.iter().flat_map(|t| t.texts.iter()).map(|(k, v)| (k.as_str(), v.as_deref()));
    let series_key = series_key(&identity, tag_texts, volatile);
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
