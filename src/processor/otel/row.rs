//! The rows OpenTelemetry data becomes: spans for `otel_traces`, data points for `otel_metrics`; a value the
//! rows of one resource, scope or metric share is made once ([`shared`]).
//!
//! Uses the processor api and the shared JSON helpers.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::processor::api::RowSize;
use crate::processor::json::clean_text;

/// Spans go here.
pub const TRACES: &str = "otel_traces";
/// Metric points go here.
pub const METRICS: &str = "otel_metrics";

/// A row for one of the two tables.
#[derive(Debug, Clone, PartialEq)]
pub enum OtelRow {
    /// `otel_traces`.
    Span(SpanRow),
    /// `otel_metrics`.
    Metric(MetricRow),
}

/// One row of `otel_traces`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SpanRow {
    /// Span start.
    pub timestamp: DateTime<Utc>,
    /// Trace id (hex).
    pub trace_id: String,
    /// Span id (hex).
    pub span_id: String,
    /// Parent span id (hex, `""` for a root).
    pub parent_span_id: String,
    /// Span name.
    pub name: String,
    /// Span kind (OTLP enum number).
    pub kind: i32,
    /// Start, epoch ns.
    pub start_time_unix_nano: i64,
    /// End, epoch ns.
    pub end_time_unix_nano: i64,
    /// `service.name` (shared by the spans of one resource, like the other resource and scope fields).
    pub service_name: Arc<str>,
    /// `service.version`.
    pub service_version: Arc<str>,
    /// `service.instance.id`.
    pub service_instance: Arc<str>,
    /// Scope name.
    pub scope_name: Arc<str>,
    /// Scope version.
    pub scope_version: Arc<str>,
    /// Status code (OTLP enum number).
    pub status_code: i32,
    /// Status message.
    pub status_message: String,
    /// Attributes text.
    pub attributes: String,
    /// Resource attributes text.
    pub resource_attributes: Arc<str>,
    /// Events as JSON text.
    pub events: String,
    /// Links as JSON text.
    pub links: String,
}

/// One row of `otel_metrics`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MetricRow {
    /// Data point time.
    pub timestamp: DateTime<Utc>,
    /// Trace id (JSON input only).
    pub trace_id: String,
    /// Span id; for OTLP points a short hash of the point's attributes.
    pub span_id: String,
    /// `service.name` (shared by the points of one resource).
    pub service_name: Arc<str>,
    /// Metric (or span) name (shared by the points of one metric).
    pub span_name: Arc<str>,
    /// Span kind.
    pub span_kind: String,
    /// Value (or duration) in ms.
    pub duration_ms: Option<f64>,
    /// The same in seconds (ms / 1000, as ServiceRadar stores it).
    pub duration_seconds: Option<f64>,
    /// gauge | sum | histogram | exponential_histogram | summary (OTLP), or the JSON's type.
    pub metric_type: String,
    /// `http.method`.
    pub http_method: String,
    /// `http.route`.
    pub http_route: String,
    /// `http.status_code`.
    pub http_status_code: String,
    /// `rpc.service`.
    pub grpc_service: String,
    /// `rpc.method`.
    pub grpc_method: String,
    /// `rpc.grpc.status_code`.
    pub grpc_status_code: String,
    /// Slow span flag.
    pub is_slow: bool,
    /// Component.
    pub component: String,
    /// Level.
    pub level: String,
    /// Unit (shared by the points of one metric).
    pub unit: Arc<str>,
}

impl RowSize for OtelRow {
    fn size(&self) -> usize {
        match self {
            OtelRow::Span(r) => {
                48 + r.trace_id.len()
                    + r.span_id.len()
                    + r.parent_span_id.len()
                    + r.name.len()
                    + r.service_name.len()
                    + r.service_version.len()
                    + r.service_instance.len()
                    + r.scope_name.len()
                    + r.scope_version.len()
                    + r.status_message.len()
                    + r.attributes.len()
                    + r.resource_attributes.len()
                    + r.events.len()
                    + r.links.len()
            }
            OtelRow::Metric(r) => {
                32 + r.trace_id.len()
                    + r.span_id.len()
                    + r.service_name.len()
                    + r.span_name.len()
                    + r.span_kind.len()
                    + r.metric_type.len()
                    + r.http_method.len()
                    + r.http_route.len()
                    + r.http_status_code.len()
                    + r.grpc_service.len()
                    + r.grpc_method.len()
                    + r.grpc_status_code.len()
                    + r.component.len()
                    + r.level.len()
                    + r.unit.len()
            }
        }
    }
}

/// A text value that many rows share (a resource's, a scope's, a metric's), NUL-free, made once.
pub fn shared(mut text: String) -> Arc<str> {
    clean_text(&mut text);
    Arc::from(text)
}
