//! Traces → `otel_traces` rows as ServiceRadar's Go writer stores them today (reference-today §5, §6.1): OTLP
//! `ExportTraceServiceRequest` protobuf, and JSON span objects (the Elixir writer's field names, camelCase too).
//!
//! Attributes, resource and scope attributes, events and links are typed JSON (`json.Marshal` text); trace and
//! span ids canonical hex. A span whose trace or span id is absent or invalid cannot be keyed: it is skipped and
//! counted (`rows_skipped_total{reason="no_id"}`), as ServiceRadar drops it, and the message's other spans are
//! written; a message none of whose spans can be keyed is dead-lettered with that reason instead (it would
//! otherwise end in silence). A span without a start time takes its end time, else the message's JetStream time (the Go writer
//! stored 1970-01-01).
//!
//! Uses the otel rows, the processor api, the shared JSON and OTLP helpers and the prost messages.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::row::{OtelRow, SpanRow, shared};
use crate::processor::api::{DecodeError, Incoming, Rows};
use crate::processor::json::{clean_text, each_object, time_field};
use crate::processor::otlp::id::{self, Id};
use crate::processor::otlp::tree::{self, NotFinite, Style, map_of, marshal_or_empty, string_attr};
use crate::processor::otlp::{capped_i32, capped_i64, nanos};
use crate::processor::proto::trace::{ExportTraceServiceRequest, Span, span};

/// Why a span becomes no row.
pub const NO_ID: &str = "no_id";

/// What the spans of one resource and scope share, made once.
struct Context {
    service_name: Arc<str>,
    service_version: Arc<str>,
    service_instance: Arc<str>,
    service_namespace: Arc<str>,
    deployment_environment: Arc<str>,
    resource_attributes: Arc<str>,
    scope_name: Arc<str>,
    scope_version: Arc<str>,
    scope_attributes: Option<Arc<str>>,
}

pub fn decode_otlp_spans(
    request: &ExportTraceServiceRequest,
    msg: &Incoming<'_>,
    rows: &mut Rows<'_, OtelRow>,
) -> Result<(), DecodeError> {
    let ingest = msg.attribution().columns();
    let (mut seen, mut kept) = (0usize, 0usize);
    for rs in &request.resource_spans {
        // A nil resource is valid OTLP: its spans are kept, service "unknown" (the Go writer today).
        let resource = rs.resource.as_ref().map(|r| map_of(&r.attributes));
        let attr = |keys: &[&str]| shared(resource.as_ref().map_or("", |m| string_attr(m, keys)).to_owned());
        let service_name = match &resource {
            None => Arc::from("unknown"),
            Some(m) => shared(string_attr(m, &["service.name", "service_name"]).to_owned()),
        };
        let (service_version, service_instance) =
            (attr(&["service.version", "service_version"]), attr(&["service.instance.id", "service_instance"]));
        let service_namespace = attr(&["service.namespace"]);
        let deployment_environment = attr(&["deployment.environment.name", "deployment.environment"]);
        let resource_attributes = shared(resource.as_ref().map_or_else(|| "{}".to_owned(), marshal_or_empty));
        for ss in &rs.scope_spans {
            let (scope_name, scope_version, scope_attributes) = match &ss.scope {
                None => (Arc::from(""), Arc::from(""), None),
                Some(s) => {
                    let attrs = map_of(&s.attributes);
                    let text = (!attrs.is_empty()).then(|| shared(marshal_or_empty(&attrs)));
                    (shared(s.name.clone()), shared(s.version.clone()), text)
                }
            };
            let ctx = Context {
                service_name: service_name.clone(),
                service_version: service_version.clone(),
                service_instance: service_instance.clone(),
                service_namespace: service_namespace.clone(),
                deployment_environment: deployment_environment.clone(),
                resource_attributes: resource_attributes.clone(),
                scope_name,
                scope_version,
                scope_attributes,
            };
            rows.reserve(ss.spans.len());
            for s in &ss.spans {
                seen += 1;
                let (Id::Valid(trace_id), Id::Valid(span_id)) =
                    (id::normalize(&s.trace_id, id::TRACE), id::normalize(&s.span_id, id::SPAN))
                else {
                    rows.skip(NO_ID);
                    continue;
                };
                let mut row = span_row(s, trace_id, span_id, &ctx, msg);
                row.ingest = ingest.clone();
                clean_span(&mut row);
                rows.push(OtelRow::Span(row))?;
                kept += 1;
            }
        }
    }
    none_keyed(seen, kept)
}

/// The error of a message with spans of which none has a valid trace and span id.
fn none_keyed(seen: usize, kept: usize) -> Result<(), DecodeError> {
    if seen > 0 && kept == 0 {
        return Err(DecodeError::new(format!(
            "none of its {seen} span(s) has a valid trace_id and span_id (16 and 8 bytes, or their hex or base64)"
        )));
    }
    Ok(())
}

fn span_row(s: &Span, trace_id: String, span_id: String, ctx: &Context, msg: &Incoming<'_>) -> SpanRow {
    SpanRow {
        timestamp: nanos(s.start_time_unix_nano).or_else(|| nanos(s.end_time_unix_nano)).unwrap_or(msg.published),
        trace_id,
        span_id,
        parent_span_id: id::normalize(&s.parent_span_id, id::SPAN).text(),
        name: s.name.clone(),
        kind: s.kind,
        start_time_unix_nano: capped_i64(s.start_time_unix_nano),
        end_time_unix_nano: capped_i64(s.end_time_unix_nano),
        service_name: ctx.service_name.clone(),
        service_version: ctx.service_version.clone(),
        service_instance: ctx.service_instance.clone(),
        service_namespace: ctx.service_namespace.clone(),
        deployment_environment: ctx.deployment_environment.clone(),
        scope_name: ctx.scope_name.clone(),
        scope_version: ctx.scope_version.clone(),
        scope_attributes: ctx.scope_attributes.clone(),
        status_code: s.status.as_ref().map_or(0, |st| st.code),
        status_message: s.status.as_ref().map(|st| st.message.clone()).unwrap_or_default(),
        trace_state: Some(s.trace_state.clone()).filter(|t| !t.is_empty()),
        attributes: marshal_or_empty(&map_of(&s.attributes)),
        resource_attributes: ctx.resource_attributes.clone(),
        events: events_json(&s.events).unwrap_or_else(|NotFinite| "[]".to_owned()),
        links: links_json(&s.links).unwrap_or_else(|NotFinite| "[]".to_owned()),
        dropped_attributes_count: capped_i32(s.dropped_attributes_count),
        dropped_events_count: capped_i32(s.dropped_events_count),
        dropped_links_count: capped_i32(s.dropped_links_count),
        ingest: Default::default(),
    }
}

/// `[{"attributes":…,"dropped_attributes_count":…,"name":…,"time_unix_nano":…}]` (keys sorted, as Go marshals a
/// map); fails as `json.Marshal` fails on a non-finite number.
fn events_json(events: &[span::Event]) -> Result<String, NotFinite> {
    let mut out = String::from("[");
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"attributes\":");
        tree::write_map(&mut out, &map_of(&e.attributes), Style::Marshal)?;
        out.push_str(&format!(",\"dropped_attributes_count\":{},\"name\":", e.dropped_attributes_count));
        tree::write_str(&mut out, &e.name, Style::Marshal);
        out.push_str(&format!(",\"time_unix_nano\":{}}}", e.time_unix_nano));
    }
    out.push(']');
    Ok(out)
}

/// `[{"attributes":…,"span_id":…,"trace_id":…,"trace_state":…}]`, ids canonical or `null`.
fn links_json(links: &[span::Link]) -> Result<String, NotFinite> {
    let mut out = String::from("[");
    let id_json = |out: &mut String, id: Option<String>| match id {
        Some(id) => tree::write_str(out, &id, Style::Marshal),
        None => out.push_str("null"),
    };
    for (i, l) in links.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"attributes\":");
        tree::write_map(&mut out, &map_of(&l.attributes), Style::Marshal)?;
        out.push_str(",\"span_id\":");
        id_json(&mut out, id::normalize(&l.span_id, id::SPAN).text());
        out.push_str(",\"trace_id\":");
        id_json(&mut out, id::normalize(&l.trace_id, id::TRACE).text());
        out.push_str(",\"trace_state\":");
        tree::write_str(&mut out, &l.trace_state, Style::Marshal);
        out.push('}');
    }
    out.push(']');
    Ok(out)
}

/// The first of `keys` present (`snake_case`, then `camelCase`).
fn field<'a>(map: &'a Map<String, Value>, keys: &[&str]) -> Option<&'a Value> {
    keys.iter().find_map(|k| map.get(*k).filter(|v| !v.is_null()))
}

fn text(map: &Map<String, Value>, keys: &[&str]) -> String {
    match field(map, keys) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => String::new(),
    }
}

fn int(map: &Map<String, Value>, keys: &[&str]) -> i64 {
    match field(map, keys) {
        Some(Value::Number(n)) => n.as_i64().or_else(|| n.as_u64().map(capped_i64)).unwrap_or(0),
        Some(Value::String(s)) => s.trim().parse().unwrap_or(0),
        _ => 0,
    }
}

/// An object (or a string holding JSON) as text; `empty` when absent.
fn json_text(map: &Map<String, Value>, keys: &[&str], empty: &str) -> String {
    match field(map, keys) {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => empty.to_owned(),
    }
}

pub fn decode_json_spans(msg: &Incoming<'_>, rows: &mut Rows<'_, OtelRow>) -> Result<(), DecodeError> {
    let ingest = msg.attribution().columns();
    let (mut seen, mut kept) = (0usize, 0usize);
    each_object(msg.payload, "span", |_, map, _| {
        seen += 1;
        let id_of = |keys: &[&str], len| id::normalize(text(map, keys).as_bytes(), len);
        let (Id::Valid(trace_id), Id::Valid(span_id)) =
            (id_of(&["trace_id", "traceId"], id::TRACE), id_of(&["span_id", "spanId"], id::SPAN))
        else {
            rows.skip(NO_ID);
            return Ok(());
        };
        kept += 1;
        let start = int(map, &["start_time_unix_nano", "startTimeUnixNano"]);
        let end = int(map, &["end_time_unix_nano", "endTimeUnixNano"]);
        let resource: Option<Map<String, Value>> = match field(map, &["resource_attributes", "resourceAttributes"]) {
            Some(Value::Object(o)) => Some(o.clone()),
            Some(Value::String(s)) => serde_json::from_str(s).ok(),
            _ => None,
        };
        let from_resource = |keys: &[&str]| {
            keys.iter()
                .find_map(|k| resource.as_ref()?.get(*k)?.as_str().filter(|s| !s.is_empty()))
                .unwrap_or("")
                .to_owned()
        };
        let own_or = |keys: &[&str], resource_keys: &[&str]| {
            Some(text(map, keys)).filter(|s| !s.is_empty()).unwrap_or_else(|| from_resource(resource_keys))
        };
        let scope_attributes = match field(map, &["scope_attributes", "scopeAttributes"]) {
            Some(Value::Object(o)) if o.is_empty() => None,
            Some(Value::Object(o)) => Some(Value::Object(o.clone()).to_string()),
            Some(Value::String(s)) if !s.is_empty() && s != "{}" => Some(s.clone()),
            _ => None,
        };
        let service_name = Some(text(map, &["service_name", "serviceName"])).filter(|s| !s.is_empty());
        let mut row = SpanRow {
            timestamp: time_field(map, "timestamp")
                .or_else(|| nanos(start.max(0) as u64))
                .or_else(|| nanos(end.max(0) as u64))
                .unwrap_or(msg.published),
            trace_id,
            span_id,
            parent_span_id: id_of(&["parent_span_id", "parentSpanId"], id::SPAN).text(),
            name: text(map, &["name"]),
            kind: i32::try_from(int(map, &["kind"])).unwrap_or(0),
            start_time_unix_nano: start,
            end_time_unix_nano: end,
            service_name: shared(service_name.unwrap_or_else(|| "unknown".to_owned())),
            service_version: shared(text(map, &["service_version", "serviceVersion"])),
            service_instance: shared(text(map, &["service_instance", "serviceInstance"])),
            service_namespace: shared(own_or(&["service_namespace", "serviceNamespace"], &["service.namespace"])),
            deployment_environment: shared(own_or(
                &["deployment_environment", "deploymentEnvironment"],
                &["deployment.environment.name", "deployment.environment"],
            )),
            scope_name: shared(text(map, &["scope_name", "scopeName"])),
            scope_version: shared(text(map, &["scope_version", "scopeVersion"])),
            scope_attributes: scope_attributes.map(shared),
            status_code: i32::try_from(int(map, &["status_code", "statusCode"])).unwrap_or(0),
            status_message: text(map, &["status_message", "statusMessage"]),
            trace_state: Some(text(map, &["trace_state", "traceState"])).filter(|t| !t.is_empty()),
            attributes: json_text(map, &["attributes"], "{}"),
            resource_attributes: shared(json_text(map, &["resource_attributes", "resourceAttributes"], "{}")),
            events: json_text(map, &["events"], "[]"),
            links: json_text(map, &["links"], "[]"),
            dropped_attributes_count: i32::try_from(int(map, &["dropped_attributes_count", "droppedAttributesCount"]))
                .unwrap_or(0)
                .max(0),
            dropped_events_count: i32::try_from(int(map, &["dropped_events_count", "droppedEventsCount"]))
                .unwrap_or(0)
                .max(0),
            dropped_links_count: i32::try_from(int(map, &["dropped_links_count", "droppedLinksCount"]))
                .unwrap_or(0)
                .max(0),
            ingest: ingest.clone(),
        };
        clean_span(&mut row);
        rows.push(OtelRow::Span(row))
    })?;
    none_keyed(seen, kept)
}

/// NULs replaced (see [`crate::processor::json::NUL_REPLACEMENT`]) in the text a span owns; shared fields are
/// cleaned once by [`shared`]. These columns are `text`, so a raw NUL is all there is to replace.
fn clean_span(r: &mut SpanRow) {
    for v in [&mut r.name, &mut r.attributes, &mut r.events, &mut r.links, &mut r.status_message] {
        clean_text(v);
    }
    if let Some(t) = r.trace_state.as_mut() {
        clean_text(t);
    }
}
