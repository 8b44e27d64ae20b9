//! The row a log becomes, what both decoders share to make one: its deterministic id, the severity names, and
//! the NUL cleaning of its text.
//!
//! Uses the processor api and the shared JSON helpers.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use md5::{Digest, Md5};

use crate::processor::api::{IngestColumns, RowSize};
use crate::processor::json::{clean_jsonb, clean_text};

/// The table written.
pub const TABLE: &str = "logs";

/// One row of `logs`. Text columns are `""` when absent, as the Go writer stores them.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRow {
    /// Record time.
    pub timestamp: DateTime<Utc>,
    /// Deterministic UUID (stream, sequence, record index).
    pub id: String,
    /// Trace id, canonical hex; `None` (NULL) when absent or invalid.
    pub trace_id: Option<String>,
    /// Span id, canonical hex; `None` (NULL) when absent or invalid.
    pub span_id: Option<String>,
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
    /// Attributes as JSON (with the `serviceradar.ingest` block, secrets redacted).
    pub attributes: String,
    /// Resource attributes as JSON.
    pub resource_attributes: Arc<str>,
    /// Observation time.
    pub observed_timestamp: Option<DateTime<Utc>>,
    /// W3C trace flags.
    pub trace_flags: Option<i32>,
    /// OTel event name.
    pub event_name: String,
    /// Scope attributes as JSON (`""` for an OTLP record without a scope, as the Go writer stores it).
    pub scope_attributes: Arc<str>,
    /// Where the log came from (`syslog`, `snmp`, `otel`, `internal`, ...).
    pub source: String,
    /// The sender's address found in a JSON log.
    pub source_ip: Option<String>,
    /// From the message's `Sr-*` headers.
    pub ingest: IngestColumns,
}

impl RowSize for LogRow {
    fn size(&self) -> usize {
        // timestamp, id, severity, observed, flags
        56 + self.trace_id.as_ref().map_or(0, String::len)
            + self.span_id.as_ref().map_or(0, String::len)
            + self.source_ip.as_ref().map_or(0, String::len)
            + self.ingest.len()
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
    let mut s = String::with_capacity(36);
    for (i, part) in [&b[..4], &b[4..6], &b[6..8], &b[8..10], &b[10..]].into_iter().enumerate() {
        if i > 0 {
            s.push('-');
        }
        crate::hex::push(&mut s, part);
    }
    s
}

/// OTel severity number → its short name.
pub fn severity_name(n: i32) -> &'static str {
    match n {
        21.. => "FATAL",
        17.. => "ERROR",
        13.. => "WARN",
        9.. => "INFO",
        5.. => "DEBUG",
        _ => "TRACE",
    }
}

/// NULs replaced (see [`crate::processor::json::NUL_REPLACEMENT`]): in text, and, in the JSON columns of a JSON log, the
/// `\u0000` escapes serde_json writes for them. (Shared OTLP fields are cleaned once, by [`shared`].)
pub fn clean_row(row: &mut LogRow) {
    for v in [&mut row.body, &mut row.event_name, &mut row.source] {
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
pub fn shared(mut text: String) -> Arc<str> {
    clean_text(&mut text);
    Arc::from(text)
}
