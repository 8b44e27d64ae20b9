//! Traces (reference §3.2): OTLP `ExportTraceServiceRequest` protobuf and ServiceRadar's JSON span objects
//! (sample 16) → `otel_traces` rows.
//!
//! Uses the otel rows, the processor api, the shared JSON and OTLP helpers and the prost messages.

use serde_json::Value;

use super::row::{OtelRow, SpanRow, shared};
use crate::processor::api::{DecodeError, Incoming, Rows};
use crate::processor::json::{clean_text, each_object, field_text as s, text_or_json, time_field as time_of};
use crate::processor::otlp::{any_plain, attr_str, hex, kv_text, nanos};
use crate::processor::proto::common::KeyValue;
use crate::processor::proto::trace::ExportTraceServiceRequest;

fn kv_list(attrs: &[KeyValue]) -> Vec<Value> {
    attrs
        .iter()
        .map(|kv| Value::String(format!("{}={}", kv.key, kv.value.as_ref().map(any_plain).unwrap_or_default())))
        .collect()
}

pub fn decode_otlp_spans(
    request: &ExportTraceServiceRequest,
    msg: &Incoming<'_>,
    rows: &mut Rows<'_, OtelRow>,
) -> Result<(), DecodeError> {
    for rs in &request.resource_spans {
        let resource: &[KeyValue] = rs.resource.as_ref().map_or(&[], |r| &r.attributes);
        // Made once per resource (and scope) and shared by its spans, never copied per span.
        let resource_text = shared(kv_text(resource));
        let res = |key: &str| shared(attr_str(resource, key));
        let (service_name, service_version, service_instance) =
            (res("service.name"), res("service.version"), res("service.instance.id"));
        for ss in &rs.scope_spans {
            let (scope_name, scope_version) =
                ss.scope.as_ref().map_or(("", ""), |s| (s.name.as_str(), s.version.as_str()));
            let (scope_name, scope_version) = (shared(scope_name.to_owned()), shared(scope_version.to_owned()));
            rows.reserve(ss.spans.len());
            for span in &ss.spans {
                let events: Vec<Value> = span
                    .events
                    .iter()
                    .map(|e| {
                        serde_json::json!({"time_unix_nano": e.time_unix_nano, "name": e.name, "attributes": kv_list(&e.attributes)})
                    })
                    .collect();
                let links: Vec<Value> = span
                    .links
                    .iter()
                    .map(|l| {
                        serde_json::json!({"trace_id": hex(&l.trace_id), "span_id": hex(&l.span_id), "attributes": kv_list(&l.attributes)})
                    })
                    .collect();
                let mut row = SpanRow {
                    timestamp: nanos(span.start_time_unix_nano).unwrap_or(msg.published),
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    name: span.name.clone(),
                    kind: span.kind,
                    start_time_unix_nano: i64::try_from(span.start_time_unix_nano).unwrap_or(i64::MAX),
                    end_time_unix_nano: i64::try_from(span.end_time_unix_nano).unwrap_or(i64::MAX),
                    service_name: service_name.clone(),
                    service_version: service_version.clone(),
                    service_instance: service_instance.clone(),
                    scope_name: scope_name.clone(),
                    scope_version: scope_version.clone(),
                    status_code: span.status.as_ref().map_or(0, |s| s.code),
                    status_message: span.status.as_ref().map(|s| s.message.clone()).unwrap_or_default(),
                    attributes: kv_text(&span.attributes),
                    resource_attributes: resource_text.clone(),
                    events: Value::Array(events).to_string(),
                    links: Value::Array(links).to_string(),
                };
                clean_span(&mut row);
                rows.push(OtelRow::Span(row))?;
            }
        }
    }
    Ok(())
}

pub fn decode_json_spans(msg: &Incoming<'_>, rows: &mut Rows<'_, OtelRow>) -> Result<(), DecodeError> {
    each_object(msg.payload, "span", |_, map, _| {
        let span_id = s(map, "span_id");
        if span_id.is_empty() {
            return Err(DecodeError::new("span_id: required and missing"));
        }
        let int = |key: &str| map.get(key).and_then(Value::as_i64).unwrap_or(0);
        let start = int("start_time_unix_nano");
        let mut row = SpanRow {
            timestamp: time_of(map, "timestamp").or_else(|| nanos(start.max(0) as u64)).unwrap_or(msg.published),
            trace_id: s(map, "trace_id"),
            span_id,
            parent_span_id: s(map, "parent_span_id"),
            name: s(map, "name"),
            kind: i32::try_from(int("kind")).unwrap_or(0),
            start_time_unix_nano: start,
            end_time_unix_nano: int("end_time_unix_nano"),
            service_name: shared(s(map, "service_name")),
            service_version: shared(s(map, "service_version")),
            service_instance: shared(s(map, "service_instance")),
            scope_name: shared(s(map, "scope_name")),
            scope_version: shared(s(map, "scope_version")),
            status_code: i32::try_from(int("status_code")).unwrap_or(0),
            status_message: s(map, "status_message"),
            attributes: text_or_json(map, "attributes", ""),
            resource_attributes: shared(text_or_json(map, "resource_attributes", "")),
            events: text_or_json(map, "events", "[]"),
            links: text_or_json(map, "links", "[]"),
        };
        clean_span(&mut row);
        rows.push(OtelRow::Span(row))
    })
}

/// NULs replaced (see [`crate::processor::json::NUL_REPLACEMENT`]) in the text a span owns; shared fields are cleaned once
/// by [`shared`]. These columns are `text`, so a raw NUL is all there is to replace.
fn clean_span(r: &mut SpanRow) {
    for v in [
        &mut r.trace_id,
        &mut r.span_id,
        &mut r.parent_span_id,
        &mut r.name,
        &mut r.attributes,
        &mut r.events,
        &mut r.links,
        &mut r.status_message,
    ] {
        clean_text(v);
    }
}
