//! ServiceRadar's metric envelope, a `serviceradar.metric.v1` `MetricBatch` (reference-today §2), → one
//! `timeseries_metrics` row per point, with ServiceRadar's `MetricEnvelope` mapping: the merge order of tags
//! (metric tags, then the batch's ingest identity where absent, then the point's attributes, then
//! `interface_uid` where absent) and of metadata, `counter_width`, `is_delta`, the `target_device_ip`
//! precedence, and points marked `non_numeric` left out (counted as skipped).
//!
//! Two choices differ from ServiceRadar's writer: a point without `observed_at_unix_nano` takes the message's
//! JetStream time rather than "now" (so a redelivery meets its first row), and `device_id` is never looked up by
//! IP (ServiceRadar's backfill needs its device inventory); the series key is computed before any backfill there
//! too, so the keys agree.
//!
//! Uses the telemetry row and series key, the processor api, the prost messages and the shared JSON helpers.

use std::borrow::Cow;
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::row::MetricRow;
use super::series_key::{SeriesIdentity, Volatile, series_key};
use crate::processor::api::{DecodeError, Incoming, Rows};
use crate::processor::json::{NUL_REPLACEMENT, clean_text};
use crate::processor::proto::metric::{MetricBatch, StringMapEntry, kind, temporality, value_type_name};

/// Why a point becomes no row: ServiceRadar keeps non-numeric points out of `timeseries_metrics`.
pub const NON_NUMERIC: &str = "non_numeric";

type Text<'a> = Cow<'a, str>;

/// A metadata value as ServiceRadar stores it in the JSONB column: strings, counts, flags.
#[derive(Debug, Clone, PartialEq)]
enum Meta<'a> {
    Str(Text<'a>),
    Int(u64),
    Bool(bool),
}

impl serde::Serialize for Meta<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Meta::Str(t) => s.serialize_str(t),
            Meta::Int(n) => s.serialize_u64(*n),
            Meta::Bool(b) => s.serialize_bool(*b),
        }
    }
}

/// The text as PostgreSQL will hold it (NUL → U+FFFD), borrowed when it has no NUL.
fn text(s: &str) -> Text<'_> {
    if s.contains('\0') { Cow::Owned(s.replace('\0', &NUL_REPLACEMENT.to_string())) } else { Cow::Borrowed(s) }
}

/// ServiceRadar's `non_empty`: `None` for `""` (a blank string is kept, as there).
fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// `entries_to_map`, merged over `map`: later entries win.
fn merge_entries<'a>(map: &mut BTreeMap<Text<'a>, Text<'a>>, entries: &'a [StringMapEntry]) {
    for e in entries {
        map.insert(text(&e.key), text(&e.value));
    }
}

fn merge_meta<'a>(map: &mut BTreeMap<Text<'a>, Meta<'a>>, entries: &'a [StringMapEntry]) {
    for e in entries {
        map.insert(text(&e.key), Meta::Str(text(&e.value)));
    }
}

/// ServiceRadar's `maybe_put`: only when the key is absent and the value is not `""`, nil or 0.
fn put_new<'a, V>(map: &mut BTreeMap<Text<'a>, V>, key: &'static str, value: Option<V>) {
    if let Some(v) = value {
        map.entry(Cow::Borrowed(key)).or_insert(v);
    }
}

fn put_str<'a>(map: &mut BTreeMap<Text<'a>, Meta<'a>>, key: &'static str, value: &'a str) {
    put_new(map, key, non_empty(value).map(|v| Meta::Str(text(v))));
}

fn positive(n: u64) -> Option<u64> {
    (n > 0).then_some(n)
}

fn time_of(ns: u64) -> Option<DateTime<Utc>> {
    if ns == 0 {
        return None;
    }
    DateTime::from_timestamp((ns / 1_000_000_000) as i64, (ns % 1_000_000_000) as u32)
}

/// Appends one row per point of `batch` (already known to name `serviceradar.metric.v1`).
pub fn decode(
    batch: &MetricBatch,
    msg: &Incoming<'_>,
    rows: &mut Rows<'_, MetricRow>,
    volatile: &Volatile,
) -> Result<(), DecodeError> {
    let resource = batch.resource.clone().unwrap_or_default();
    let identity = batch.ingest_identity.clone().unwrap_or_default();
    let owned = |s: &str| {
        let mut s = s.to_owned();
        clean_text(&mut s);
        s
    };
    let gateway_id = owned(non_empty(&resource.gateway_id).unwrap_or("unknown"));
    let agent_id = non_empty(&resource.agent_id).map(owned);
    let device_id = non_empty(&resource.device_id).map(owned);
    let partition = non_empty(&resource.partition).map(owned);
    for metric in &batch.metrics {
        let mut metric_tags: BTreeMap<Text<'_>, Text<'_>> = BTreeMap::new();
        merge_entries(&mut metric_tags, &metric.tags);
        for (key, value) in [
            ("source", &identity.source),
            ("payload_kind", &identity.payload_kind),
            ("producer_id", &identity.producer_id),
            ("producer_kind", &identity.producer_kind),
        ] {
            put_new(&mut metric_tags, key, non_empty(value).map(text));
        }
        let mut metric_meta: BTreeMap<Text<'_>, Meta<'_>> = BTreeMap::new();
        merge_meta(&mut metric_meta, &metric.metadata);
        put_str(&mut metric_meta, "schema", &batch.schema_version);
        let kind_name = match metric.kind {
            kind::GAUGE => Some("gauge"),
            kind::SUM => Some("sum"),
            kind::HISTOGRAM => Some("histogram"),
            _ => None,
        };
        put_new(&mut metric_meta, "kind", kind_name.map(|k| Meta::Str(Cow::Borrowed(k))));
        let temporality_name = match metric.temporality {
            temporality::DELTA => Some("delta"),
            temporality::CUMULATIVE => Some("cumulative"),
            _ => None,
        };
        put_new(&mut metric_meta, "temporality", temporality_name.map(|t| Meta::Str(Cow::Borrowed(t))));
        put_new(&mut metric_meta, "is_monotonic", Some(Meta::Bool(metric.is_monotonic)));
        put_new(&mut metric_meta, "counter_width", positive(u64::from(metric.counter_width)).map(Meta::Int));
        put_str(&mut metric_meta, "ingress_id", &batch.ingress_id);
        put_new(
            &mut metric_meta,
            "ingress_timestamp_unix_nano",
            positive(batch.ingress_timestamp_unix_nano).map(Meta::Int),
        );

        let metric_name = owned(non_empty(&metric.name).unwrap_or("unknown"));
        let metric_type = owned(non_empty(&metric.metric_type).unwrap_or(match metric.kind {
            kind::SUM => "sum",
            kind::HISTOGRAM => "histogram",
            _ => "gauge",
        }));
        let unit = non_empty(&metric.unit).map(owned);
        let counter_width = i32::try_from(metric.counter_width).ok().filter(|w| *w > 0);
        let scale = (metric.scale != 0.0).then_some(metric.scale);
        rows.reserve(metric.points.len());
        let last = metric.points.len().saturating_sub(1);
        for (i, point) in metric.points.iter().enumerate() {
            // The metric's maps are the last point's own (most metrics have one point): copied only before.
            let (mut tags, mut meta) = if i == last {
                (std::mem::take(&mut metric_tags), std::mem::take(&mut metric_meta))
            } else {
                (metric_tags.clone(), metric_meta.clone())
            };
            merge_entries(&mut tags, &point.attributes);
            put_new(&mut tags, "interface_uid", non_empty(&point.interface_uid).map(text));
            merge_meta(&mut meta, &point.metadata);
            put_str(&mut meta, "raw_value", &point.raw_value);
            put_new(
                &mut meta,
                "raw_value_type",
                value_type_name(point.raw_value_type).map(|t| Meta::Str(Cow::Borrowed(t))),
            );
            put_new(&mut meta, "start_time_unix_nano", positive(point.start_time_unix_nano).map(Meta::Int));
            put_str(&mut meta, "reset_anchor", &point.reset_anchor);
            if meta.get("non_numeric") == Some(&Meta::Str(Cow::Borrowed("true"))) {
                rows.skip(NON_NUMERIC);
                continue;
            }
            let tag = |k: &str| tags.get(k).map(|v| v.as_ref()).filter(|v| !v.is_empty());
            let meta_text = |k: &str| match meta.get(k) {
                Some(Meta::Str(v)) if !v.is_empty() => Some(v.as_ref()),
                _ => None,
            };
            let target_device_ip = non_empty(&resource.target_device_ip)
                .or_else(|| non_empty(&resource.host_ip))
                .or_else(|| tag("host"))
                .or_else(|| meta_text("target_device_ip"))
                .or_else(|| tag("target"))
                .map(owned);
            let if_index = (point.if_index > 0).then_some(point.if_index);
            let key = series_key(
                &SeriesIdentity {
                    metric_type: Some(&metric_type),
                    metric_name: Some(&metric_name),
                    partition: partition.as_deref(),
                    agent_id: agent_id.as_deref(),
                    device_id: device_id.as_deref(),
                    target_device_ip: target_device_ip.as_deref(),
                    if_index,
                },
                tags.iter().map(|(k, v)| (k.as_ref(), Some(v.as_ref()))),
                volatile,
            );
            // Kept for debugging only, never the key: a producer's hint is not attested.
            put_str(&mut meta, "series_identity_hint", &point.series_identity_hint);
            let row = MetricRow {
                timestamp: time_of(point.observed_at_unix_nano).unwrap_or(msg.published),
                gateway_id: gateway_id.clone(),
                agent_id: agent_id.clone(),
                metric_name: metric_name.clone(),
                metric_type: metric_type.clone(),
                device_id: device_id.clone(),
                value: point.value,
                unit: unit.clone(),
                // Serializing maps of strings, numbers and flags cannot fail.
                tags: Some(serde_json::to_string(&tags).unwrap_or_else(|_| "{}".to_owned())),
                partition: partition.clone(),
                scale,
                is_delta: metric.temporality == temporality::DELTA,
                counter_width,
                target_device_ip,
                if_index,
                metadata: Some(serde_json::to_string(&meta).unwrap_or_else(|_| "{}".to_owned())),
                series_key: key,
            };
            rows.push(row)?;
        }
    }
    Ok(())
}
