//! Logs as OTLP `ExportLogsServiceRequest` protobuf: one row per log record; a resource's (and scope's) fields
//! are made once and shared by its records.
//!
//! Uses the logs row, the processor api and the shared OTLP helpers.

use std::sync::Arc;

use super::json::source_from_subject;
use super::row::{LogRow, record_id, severity_name, shared};
use crate::processor::api::{DecodeError, Incoming, Rows};
use crate::processor::json::clean_text;
use crate::processor::otlp::{any_text, attr_str, hex, kv_text, nanos};
use crate::processor::proto::common::KeyValue;
use crate::processor::proto::logs::ExportLogsServiceRequest;

pub fn decode_otlp(
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
