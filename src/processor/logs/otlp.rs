//! Logs as OTLP `ExportLogsServiceRequest` protobuf, as ServiceRadar's Go writer stores them today
//! (reference-today §5, §6.3): one row per log record, attributes and resource and scope attributes as typed JSON,
//! trace and span ids canonical (NULL when absent or invalid), a record without a resource kept with service
//! `unknown`; plus what its Elixir writer adds: the `serviceradar.ingest` block in `attributes` and redaction.
//! A resource's (and scope's) fields are made once and shared by its records.
//!
//! Uses the logs row and its rooms (redaction, source), the processor api and the shared OTLP helpers.

use std::borrow::Cow;
use std::sync::Arc;

use super::json::source_from_subject;
use super::redact::{redact_map, redact_text};
use super::row::{LogRow, record_id, severity_name, shared};
use super::source::{INGEST_KEY, ingest_block};
use crate::processor::api::{DecodeError, Incoming, Rows};
use crate::processor::json::clean_text;
use crate::processor::otlp::id;
use crate::processor::otlp::tree::{Map, Tree, map_of, marshal_or_empty, string_attr};
use crate::processor::otlp::{any_text, nanos};
use crate::processor::proto::logs::ExportLogsServiceRequest;

/// The ingest block as a tree, merged into a record's attributes the way [`super::source::attach_ingest`] merges
/// it into a JSON log's.
fn attach_ingest<'a>(attrs: &mut Map<'a>, block: &Map<'a>) {
    match attrs.get_mut(INGEST_KEY) {
        Some(Tree::Map(existing)) => existing.extend(block.iter().map(|(k, v)| (k.clone(), v.clone()))),
        _ => {
            attrs.insert(Cow::Borrowed(INGEST_KEY), Tree::Map(block.clone()));
        }
    }
}

pub fn decode_otlp(
    request: &ExportLogsServiceRequest,
    msg: &Incoming<'_>,
    rows: &mut Rows<'_, LogRow>,
) -> Result<(), DecodeError> {
    let source = source_from_subject(msg.subject).unwrap_or("otel");
    let ingest = msg.attribution().columns();
    let block: Map<'static> = ingest_block(msg)
        .into_iter()
        .map(|(k, v)| (Cow::Owned(k), Tree::Str(Cow::Owned(v.as_str().unwrap_or_default().to_owned()))))
        .collect();
    let mut index = 0;
    for rl in &request.resource_logs {
        // A record without a resource is still a record: service "unknown", resource attributes {} (Go today).
        let mut resource = rl.resource.as_ref().map(|r| map_of(&r.attributes));
        let res = |keys: &[&str]| shared(resource.as_ref().map_or("", |m| string_attr(m, keys)).to_owned());
        let service_name = match &resource {
            None => Arc::from("unknown"),
            Some(m) => shared(string_attr(m, &["service.name", "service_name"]).to_owned()),
        };
        let (service_version, service_instance) =
            (res(&["service.version", "service_version"]), res(&["service.instance.id", "service_instance"]));
        if let Some(m) = resource.as_mut() {
            redact_map(m);
        }
        // Made once per resource and shared by its records: one 64 KiB attribute must not be copied per record.
        let resource_attributes = shared(resource.as_ref().map_or_else(|| "{}".to_owned(), marshal_or_empty));
        for sl in &rl.scope_logs {
            let (scope_name, scope_version, scope_attributes) = match &sl.scope {
                Some(s) => {
                    let mut attrs = map_of(&s.attributes);
                    redact_map(&mut attrs);
                    (shared(s.name.clone()), shared(s.version.clone()), shared(marshal_or_empty(&attrs)))
                }
                // No scope: empty scope fields, scope_attributes "" (not NULL), as the Go writer stores them.
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
                let mut attributes = map_of(&record.attributes);
                attach_ingest(&mut attributes, &block);
                redact_map(&mut attributes);
                let mut body = record.body.as_ref().map(any_text).unwrap_or_default();
                if let Cow::Owned(redacted) = redact_text(&body) {
                    body = redacted;
                }
                let mut row = LogRow {
                    timestamp: nanos(record.time_unix_nano).or(observed).unwrap_or(msg.published),
                    id: record_id(msg.stream, msg.sequence, index),
                    trace_id: id::normalize(&record.trace_id, id::TRACE).text(),
                    span_id: id::normalize(&record.span_id, id::SPAN).text(),
                    severity_text,
                    severity_number: record.severity_number,
                    body,
                    service_name: service_name.clone(),
                    service_version: service_version.clone(),
                    service_instance: service_instance.clone(),
                    scope_name: scope_name.clone(),
                    scope_version: scope_version.clone(),
                    attributes: marshal_or_empty(&attributes),
                    resource_attributes: resource_attributes.clone(),
                    observed_timestamp: observed,
                    trace_flags: Some((record.flags & 0xff) as i32).filter(|f| *f != 0),
                    event_name: record.event_name.clone(),
                    scope_attributes: scope_attributes.clone(),
                    source: source.to_owned(),
                    source_ip: None,
                    ingest: ingest.clone(),
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
