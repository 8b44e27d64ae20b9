//! OpenTelemetry (reference §3.2, §3.3, reference-today §4–§7), the table chosen by subject as ServiceRadar's Go
//! writer chooses it: `…traces…` → `otel_traces`; `…metrics.raw` (`otel.metrics.raw`, also namespaced) →
//! `otel_metric_points` (OTLP data points); any other `…metrics…` → `otel_metrics` (OTLP on `otel.metrics`, the
//! collector's derived span metrics as a `MetricBatch` or as the older JSON). Every row carries the message's
//! `Sr-*` attribution.
//!
//! Fixed against the Go writer: exponential histograms and summaries become rows (their `sum`, in
//! `otel_metric_points` their `count` and `sum`); `unit` is stored in `otel_metrics`; OTLP data points of one
//! metric that differ only in attributes get distinct `otel_metrics` keys (`span_id` holds a short hash of the
//! point's attributes, which OTLP metric rows otherwise leave empty); JSON spans are accepted.
//!
//! [`traces`], [`metrics`] and [`points`] decode into [`row`]s; [`write`] holds the SQL.
//!
//! Uses the processor api, its own rooms and the prost messages.

use std::time::Duration;

use prost::Message as _;

pub mod metrics;
pub mod points;
pub mod row;
#[cfg(test)]
mod tests;
pub mod traces;
mod write;

pub use metrics::attributes_key;
pub use row::{METRICS, POINTS, TRACES};
pub use row::{MetricRow, OtelRow, PointRow, SpanRow};

use crate::processor::api::{BatchDefaults, DatabaseConfig, DecodeError, Incoming, Processor, Rows};
use crate::processor::proto::metric::MetricBatch;
use crate::processor::proto::metrics::ExportMetricsServiceRequest;
use crate::processor::proto::trace::ExportTraceServiceRequest;

/// Which table a subject's payloads go to (the Go writer's routing of ServiceRadar's subjects).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// `otel_traces`.
    Traces,
    /// `otel_metric_points`: `otel.metrics.raw`, also namespaced (`demo.otel.metrics.raw`).
    Points,
    /// `otel_metrics`: `otel.metrics`, `otel.metrics.derived`, other metrics subjects.
    Samples,
}

impl Signal {
    /// The signal `subject` carries, if it names one.
    pub fn of(subject: &str) -> Option<Signal> {
        if subject.contains("traces") {
            Some(Signal::Traces)
        } else if subject == "metrics.raw" || subject.ends_with(".metrics.raw") {
            Some(Signal::Points)
        } else if subject.contains("metrics") {
            Some(Signal::Samples)
        } else {
            None
        }
    }
}

/// The otel processor.
#[derive(Debug, Clone)]
pub struct Otel {
    sql: write::Sql,
}

impl Processor for Otel {
    const NAME: &'static str = "otel";
    const TABLES: &'static [&'static str] = &[TRACES, METRICS, POINTS];
    /// 1,000 rows (sized by the benchmark, as telemetry), flushed after 1 s as the design this replaces.
    const BATCH: BatchDefaults = BatchDefaults { size: 1000, timeout: Duration::from_secs(1) };
    /// ServiceRadar's: traces 3 days, metrics and points 30.
    const RETENTION: &'static [(&'static str, Duration)] = &[
        (TRACES, Duration::from_secs(3 * 86_400)),
        (METRICS, Duration::from_secs(30 * 86_400)),
        (POINTS, Duration::from_secs(30 * 86_400)),
    ];
    /// ServiceRadar's (its DataRetentionWorker's defaults).
    const CHUNK_INTERVAL: &'static [(&'static str, Duration)] = &[
        (TRACES, Duration::from_secs(3600)),
        (METRICS, Duration::from_secs(24 * 3600)),
        (POINTS, Duration::from_secs(6 * 3600)),
    ];
    /// ServiceRadar's: a span without a valid trace and span id cannot be keyed.
    const SKIPS: &'static [&'static str] = &[traces::NO_ID];

    type Row = OtelRow;

    fn new(database: &DatabaseConfig) -> Self {
        Otel { sql: write::Sql::new(&database.schema) }
    }

    fn table_of(row: &OtelRow) -> usize {
        match row {
            OtelRow::Span(_) => 0,
            OtelRow::Metric(_) => 1,
            OtelRow::Point(_) => 2,
        }
    }

    fn decode(&self, msg: &Incoming<'_>, rows: &mut Rows<'_, OtelRow>) -> Result<(), DecodeError> {
        let json = matches!(msg.payload.iter().find(|b| !b.is_ascii_whitespace()), Some(b'{' | b'['));
        match Signal::of(msg.subject) {
            Some(Signal::Traces) if json => traces::decode_json_spans(msg, rows),
            Some(Signal::Traces) => {
                let request = ExportTraceServiceRequest::decode(msg.payload)
                    .map_err(|e| DecodeError::new(format!("not an OTLP ExportTraceServiceRequest: {e}")))?;
                traces::decode_otlp_spans(&request, msg, rows)
            }
            Some(Signal::Points) => {
                if json {
                    return Err(DecodeError::new(format!(
                        "{} carries OTLP data points (protobuf ExportMetricsServiceRequest), not JSON",
                        msg.subject
                    )));
                }
                let request = ExportMetricsServiceRequest::decode(msg.payload)
                    .map_err(|e| DecodeError::new(format!("not an OTLP ExportMetricsServiceRequest: {e}")))?;
                points::decode_points(&request, msg, rows)
            }
            Some(Signal::Samples) if json => metrics::decode_json_metrics(msg, rows),
            Some(Signal::Samples) => match MetricBatch::decode_envelope(msg.payload) {
                Some(Ok(batch)) => metrics::decode_derived(&batch, msg, rows),
                Some(Err(why)) => Err(DecodeError::new(format!("not a serviceradar.metric.v1 MetricBatch: {why}"))),
                None => {
                    let request = ExportMetricsServiceRequest::decode(msg.payload).map_err(|e| {
                        DecodeError::new(format!(
                            "neither an OTLP ExportMetricsServiceRequest nor a serviceradar.metric.v1 MetricBatch: {e}"
                        ))
                    })?;
                    metrics::decode_otlp_metrics(&request, msg, rows)
                }
            },
            None => Err(DecodeError::new(format!(
                "subject {:?} names neither traces nor metrics; the otel processor cannot tell the table",
                msg.subject
            ))),
        }
    }

    async fn write(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        rows: &[OtelRow],
    ) -> Result<u64, tokio_postgres::Error> {
        self.sql.write(tx, rows).await
    }
}
