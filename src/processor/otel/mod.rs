//! OpenTelemetry (reference §3.2, §3.3): traces → `otel_traces`, metrics → `otel_metrics`, chosen by subject
//! (`traces` / `metrics` in it). OTLP protobuf export requests, and the JSON shapes ServiceRadar publishes
//! (span objects; `PerformanceMetric` objects or arrays on `otel.metrics.derived`).
//!
//! Fixed against the Go writer: exponential histograms and summaries become rows (their `sum`); `unit` is
//! stored; OTLP data points of one metric that differ only in attributes get distinct keys (`span_id` holds a
//! short hash of the point's attributes, which OTLP metric rows otherwise leave empty); JSON spans are accepted.
//!
//! [`traces`] and [`metrics`] decode into [`row`]s; [`write`] holds the SQL.
//!
//! Uses the processor api, its own rooms and the prost messages.

use std::time::Duration;

use prost::Message as _;

pub mod metrics;
pub mod row;
#[cfg(test)]
mod tests;
pub mod traces;
mod write;

pub use metrics::attributes_key;
pub use row::{METRICS, TRACES};
pub use row::{MetricRow, OtelRow, SpanRow};

use crate::processor::api::{BatchDefaults, DatabaseConfig, DecodeError, Incoming, Processor, Rows};
use crate::processor::proto::metrics::ExportMetricsServiceRequest;
use crate::processor::proto::trace::ExportTraceServiceRequest;

/// The otel processor.
#[derive(Debug, Clone)]
pub struct Otel {
    sql: write::Sql,
}

impl Processor for Otel {
    const NAME: &'static str = "otel";
    const TABLES: &'static [&'static str] = &[TRACES, METRICS];
    /// 1,000 rows (sized by the benchmark, as telemetry), flushed after 1 s as the design this replaces.
    const BATCH: BatchDefaults = BatchDefaults { size: 1000, timeout: Duration::from_secs(1) };
    /// ServiceRadar's: traces 3 days, metrics 30.
    const RETENTION: &'static [(&'static str, Duration)] =
        &[(TRACES, Duration::from_secs(3 * 86_400)), (METRICS, Duration::from_secs(30 * 86_400))];
    /// ServiceRadar's (its DataRetentionWorker's defaults).
    const CHUNK_INTERVAL: &'static [(&'static str, Duration)] =
        &[(TRACES, Duration::from_secs(3600)), (METRICS, Duration::from_secs(24 * 3600))];

    type Row = OtelRow;

    fn new(database: &DatabaseConfig) -> Self {
        Otel { sql: write::Sql::new(&database.schema) }
    }

    fn table_of(row: &OtelRow) -> usize {
        match row {
            OtelRow::Span(_) => 0,
            OtelRow::Metric(_) => 1,
        }
    }

    fn decode(&self, msg: &Incoming<'_>, rows: &mut Rows<'_, OtelRow>) -> Result<(), DecodeError> {
        let json = matches!(msg.payload.iter().find(|b| !b.is_ascii_whitespace()), Some(b'{' | b'['));
        if msg.subject.contains("traces") {
            if json {
                traces::decode_json_spans(msg, rows)
            } else {
                let request = ExportTraceServiceRequest::decode(msg.payload)
                    .map_err(|e| DecodeError::new(format!("not an OTLP ExportTraceServiceRequest: {e}")))?;
                traces::decode_otlp_spans(&request, msg, rows)
            }
        } else if msg.subject.contains("metrics") {
            if json {
                metrics::decode_json_metrics(msg, rows)
            } else {
                let request = ExportMetricsServiceRequest::decode(msg.payload)
                    .map_err(|e| DecodeError::new(format!("not an OTLP ExportMetricsServiceRequest: {e}")))?;
                metrics::decode_otlp_metrics(&request, msg, rows)
            }
        } else {
            Err(DecodeError::new(format!(
                "subject {:?} names neither traces nor metrics; the otel processor cannot tell the table",
                msg.subject
            )))
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
