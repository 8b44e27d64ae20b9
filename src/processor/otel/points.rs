//! OTLP metric data points → `otel_metric_points` rows (reference-today §4), as ServiceRadar's Go writer and its
//! Elixir writer both make them, so the two and this daemon key identical input identically and a double ingest
//! is one row: the timestamp truncated to the microsecond, `service_name` / `service_instance_id` / `scope_name`
//! `""` when absent, the display JSON of the attributes and their recipe-v2 hash.
//!
//! Where ServiceRadar drops data this keeps it: exponential histograms and summaries, which it only counts, become
//! rows of their own `metric_type` with their `count` and `sum` (their buckets and quantiles have no column); a
//! point without a time takes its start time, else the message's JetStream time (ServiceRadar: now, so a
//! redelivery would have been a second row).
//!
//! Uses the otel rows, the processor api, the shared OTLP helpers and the prost messages.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::row::{OtelRow, PointRow, shared};
use crate::processor::api::{DecodeError, Incoming, IngestColumns, Rows};
use crate::processor::otlp::tree::{display, display_float, hash_v2, map_of, string_attr};
use crate::processor::otlp::{capped_i64, micros};
use crate::processor::proto::common::KeyValue;
use crate::processor::proto::metrics::{ExportMetricsServiceRequest, metric, number_data_point};

/// What the points of one metric share.
struct Shared {
    metric_name: Arc<str>,
    unit: Option<Arc<str>>,
    service_name: Arc<str>,
    service_instance_id: Arc<str>,
    scope_name: Arc<str>,
    ingest: IngestColumns,
}

/// The kind-independent part of a point.
struct Point<'a> {
    metric_type: &'static str,
    temporality: Option<&'static str>,
    is_monotonic: Option<bool>,
    attrs: &'a [KeyValue],
    time: u64,
    start: u64,
}

fn temporality(t: i32) -> &'static str {
    match t {
        1 => "delta",
        2 => "cumulative",
        _ => "unspecified",
    }
}

fn row(s: &Shared, p: &Point<'_>, published: DateTime<Utc>) -> PointRow {
    let attrs = map_of(p.attrs);
    let mut attributes = display(&attrs);
    crate::processor::json::clean_text(&mut attributes);
    PointRow {
        timestamp: micros(p.time).or_else(|| micros(p.start)).unwrap_or(published),
        metric_name: s.metric_name.clone(),
        metric_type: p.metric_type,
        unit: s.unit.clone(),
        temporality: p.temporality,
        is_monotonic: p.is_monotonic,
        service_name: s.service_name.clone(),
        service_instance_id: s.service_instance_id.clone(),
        scope_name: s.scope_name.clone(),
        start_time_unix_nano: (p.start != 0).then(|| capped_i64(p.start)),
        attributes_hash: hash_v2(&attrs, &s.service_instance_id, &s.scope_name),
        attributes,
        value: None,
        count: None,
        sum: None,
        bucket_counts: None,
        explicit_bounds: None,
        ingest: s.ingest.clone(),
    }
}

fn list<T>(items: &[T], each: impl Fn(&T) -> String) -> String {
    let parts: Vec<String> = items.iter().map(each).collect();
    format!("[{}]", parts.join(","))
}

pub fn decode_points(
    request: &ExportMetricsServiceRequest,
    msg: &Incoming<'_>,
    rows: &mut Rows<'_, OtelRow>,
) -> Result<(), DecodeError> {
    let ingest = msg.attribution().columns();
    for rm in &request.resource_metrics {
        let resource = rm.resource.as_ref().map(|r| map_of(&r.attributes)).unwrap_or_default();
        let service_name = shared(string_attr(&resource, &["service.name", "service_name"]).to_owned());
        let service_instance_id = shared(string_attr(&resource, &["service.instance.id"]).to_owned());
        for sm in &rm.scope_metrics {
            let scope_name = shared(sm.scope.as_ref().map(|s| s.name.clone()).unwrap_or_default());
            for m in &sm.metrics {
                let s = Shared {
                    metric_name: shared(m.name.clone()),
                    unit: (!m.unit.is_empty()).then(|| shared(m.unit.clone())),
                    service_name: service_name.clone(),
                    service_instance_id: service_instance_id.clone(),
                    scope_name: scope_name.clone(),
                    ingest: ingest.clone(),
                };
                let point = |metric_type, temporality, is_monotonic, attrs, time, start| Point {
                    metric_type,
                    temporality,
                    is_monotonic,
                    attrs,
                    time,
                    start,
                };
                let number = |v: &Option<number_data_point::Value>| match v {
                    Some(number_data_point::Value::AsDouble(d)) => Some(*d),
                    Some(number_data_point::Value::AsInt(i)) => Some(*i as f64),
                    None => None,
                };
                match &m.data {
                    Some(metric::Data::Sum(sum)) => {
                        let t = Some(temporality(sum.aggregation_temporality));
                        for p in &sum.data_points {
                            let pt = point(
                                "sum",
                                t,
                                Some(sum.is_monotonic),
                                &p.attributes,
                                p.time_unix_nano,
                                p.start_time_unix_nano,
                            );
                            rows.push(OtelRow::Point(PointRow {
                                value: number(&p.value),
                                ..row(&s, &pt, msg.published)
                            }))?;
                        }
                    }
                    Some(metric::Data::Gauge(g)) => {
                        for p in &g.data_points {
                            let pt =
                                point("gauge", None, None, &p.attributes, p.time_unix_nano, p.start_time_unix_nano);
                            rows.push(OtelRow::Point(PointRow {
                                value: number(&p.value),
                                ..row(&s, &pt, msg.published)
                            }))?;
                        }
                    }
                    Some(metric::Data::Histogram(h)) => {
                        let t = Some(temporality(h.aggregation_temporality));
                        for p in &h.data_points {
                            let pt =
                                point("histogram", t, None, &p.attributes, p.time_unix_nano, p.start_time_unix_nano);
                            rows.push(OtelRow::Point(PointRow {
                                count: Some(capped_i64(p.count)),
                                sum: p.sum,
                                bucket_counts: Some(list(&p.bucket_counts, u64::to_string)),
                                explicit_bounds: Some(list(&p.explicit_bounds, |b| display_float(*b))),
                                ..row(&s, &pt, msg.published)
                            }))?;
                        }
                    }
                    Some(metric::Data::ExponentialHistogram(h)) => {
                        let t = Some(temporality(h.aggregation_temporality));
                        for p in &h.data_points {
                            let pt = point(
                                "exponential_histogram",
                                t,
                                None,
                                &p.attributes,
                                p.time_unix_nano,
                                p.start_time_unix_nano,
                            );
                            rows.push(OtelRow::Point(PointRow {
                                count: Some(capped_i64(p.count)),
                                sum: p.sum,
                                ..row(&s, &pt, msg.published)
                            }))?;
                        }
                    }
                    Some(metric::Data::Summary(sm)) => {
                        for p in &sm.data_points {
                            let pt =
                                point("summary", None, None, &p.attributes, p.time_unix_nano, p.start_time_unix_nano);
                            rows.push(OtelRow::Point(PointRow {
                                count: Some(capped_i64(p.count)),
                                sum: Some(p.sum),
                                ..row(&s, &pt, msg.published)
                            }))?;
                        }
                    }
                    None => {}
                }
            }
        }
    }
    Ok(())
}
