//! The rows OpenTelemetry data becomes: spans for `otel_traces`, span samples for `otel_metrics`, data points for
//! `otel_metric_points`; a value the rows of one resource, scope, metric or message share is made once
//! ([`shared`]).
//!
//! Uses the processor api and the shared JSON helpers.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::processor::api::{IngestColumns, RowSize};
use crate::processor::json::clean_text;

/// Spans go here.
pub const TRACES: &str = "otel_traces";
/// Span samples (derived metrics, OTLP metrics on `otel.metrics`) go here.
pub const METRICS: &str = "otel_metrics";
/// OTLP data points (`otel.metrics.raw`) go here.
pub const POINTS: &str = "otel_metric_points";

/// A row for one of the three tables.
#[derive(Debug, Clone, PartialEq)]
pub enum OtelRow {
    /// `otel_traces`.
    Span(SpanRow),
    /// `otel_metrics`.
    Metric(MetricRow),
    /// `otel_metric_points`.
    Point(PointRow),
}

/// One row of `otel_traces`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SpanRow {
    /// Span start.
    pub timestamp: DateTime<Utc>,
    /// Trace id (canonical hex).
    pub trace_id: String,
    /// Span id (canonical hex).
    pub span_id: String,
    /// Parent span id (canonical hex; `None` for a root, stored NULL).
    pub parent_span_id: Option<String>,
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
    /// `service.namespace`.
    pub service_namespace: Arc<str>,
    /// `deployment.environment.name` (or the older `deployment.environment`).
    pub deployment_environment: Arc<str>,
    /// Scope name.
    pub scope_name: Arc<str>,
    /// Scope version.
    pub scope_version: Arc<str>,
    /// Scope attributes as JSON; `None` (NULL) when the scope has none.
    pub scope_attributes: Option<Arc<str>>,
    /// Status code (OTLP enum number).
    pub status_code: i32,
    /// Status message.
    pub status_message: String,
    /// W3C trace state; `None` (NULL) when empty.
    pub trace_state: Option<String>,
    /// Attributes as JSON.
    pub attributes: String,
    /// Resource attributes as JSON.
    pub resource_attributes: Arc<str>,
    /// Events as JSON.
    pub events: String,
    /// Links as JSON.
    pub links: String,
    /// Attributes the producer dropped.
    pub dropped_attributes_count: i32,
    /// Events the producer dropped.
    pub dropped_events_count: i32,
    /// Links the producer dropped.
    pub dropped_links_count: i32,
    /// From the message's `Sr-*` headers.
    pub ingest: IngestColumns,
}

/// One row of `otel_metrics`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MetricRow {
    /// Data point time.
    pub timestamp: DateTime<Utc>,
    /// Trace id (JSON and derived samples).
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
    /// gauge | sum | histogram | exponential_histogram | summary (OTLP), or the sample's type.
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
    /// From the message's `Sr-*` headers.
    pub ingest: IngestColumns,
}

/// One row of `otel_metric_points`, keyed by `(timestamp, metric_name, service_name, attributes_hash)`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PointRow {
    /// Point time, truncated to the microsecond.
    pub timestamp: DateTime<Utc>,
    /// Metric name (shared by its points).
    pub metric_name: Arc<str>,
    /// sum | gauge | histogram | exponential_histogram | summary.
    pub metric_type: &'static str,
    /// Unit; `None` when empty.
    pub unit: Option<Arc<str>>,
    /// delta | cumulative | unspecified (sums, histograms); `None` for gauges.
    pub temporality: Option<&'static str>,
    /// For sums.
    pub is_monotonic: Option<bool>,
    /// Resource `service.name` (or `service_name`), `""` when absent.
    pub service_name: Arc<str>,
    /// Resource `service.instance.id`, `""` when absent (in the hash).
    pub service_instance_id: Arc<str>,
    /// Scope name, `""` when absent (in the hash).
    pub scope_name: Arc<str>,
    /// Point start, epoch ns; `None` when 0.
    pub start_time_unix_nano: Option<i64>,
    /// The point's attributes, display JSON.
    pub attributes: String,
    /// Recipe-v2 hash of the attributes, the instance and the scope.
    pub attributes_hash: String,
    /// Number points: the value.
    pub value: Option<f64>,
    /// Histograms, summaries: the count.
    pub count: Option<i64>,
    /// Histograms, summaries: the sum.
    pub sum: Option<f64>,
    /// Histograms: `[n,n,…]`.
    pub bucket_counts: Option<String>,
    /// Histograms: `[b,b,…]`.
    pub explicit_bounds: Option<String>,
    /// From the message's `Sr-*` headers.
    pub ingest: IngestColumns,
}

fn opt(s: &Option<String>) -> usize {
    s.as_ref().map_or(0, String::len)
}

impl RowSize for OtelRow {
    fn size(&self) -> usize {
        match self {
            OtelRow::Span(r) => {
                72 + r.trace_id.len()
                    + r.span_id.len()
                    + opt(&r.parent_span_id)
                    + r.name.len()
                    + r.service_name.len()
                    + r.service_version.len()
                    + r.service_instance.len()
                    + r.service_namespace.len()
                    + r.deployment_environment.len()
                    + r.scope_name.len()
                    + r.scope_version.len()
                    + r.scope_attributes.as_ref().map_or(0, |s| s.len())
                    + r.status_message.len()
                    + opt(&r.trace_state)
                    + r.attributes.len()
                    + r.resource_attributes.len()
                    + r.events.len()
                    + r.links.len()
                    + r.ingest.len()
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
                    + r.ingest.len()
            }
            OtelRow::Point(r) => {
                56 + r.metric_name.len()
                    + r.metric_type.len()
                    + r.unit.as_ref().map_or(0, |u| u.len())
                    + r.service_name.len()
                    + r.service_instance_id.len()
                    + r.scope_name.len()
                    + r.attributes.len()
                    + r.attributes_hash.len()
                    + opt(&r.bucket_counts)
                    + opt(&r.explicit_bounds)
                    + r.ingest.len()
            }
        }
    }
}

/// A text value that many rows share (a resource's, a scope's, a metric's), NUL-free, made once.
pub fn shared(mut text: String) -> Arc<str> {
    clean_text(&mut text);
    Arc::from(text)
}
