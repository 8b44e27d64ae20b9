//! How OpenTelemetry rows are written: one `INSERT … ON CONFLICT DO NOTHING` over unnested column arrays per
//! table (spans, points), in the caller's transaction.
//!
//! Uses the otel rows and [`crate::sql`].

use super::row::{MetricRow, OtelRow, SpanRow};
use crate::sql::{column, qualified};

/// The statements, built once for the configured schema.
#[derive(Debug, Clone)]
pub struct Sql {
    traces: String,
    metrics: String,
}

impl Sql {
    /// The statements for tables in `schema`.
    pub fn new(schema: &str) -> Self {
        let traces = qualified(schema, super::row::TRACES);
        let metrics = qualified(schema, super::row::METRICS);
        Sql {
            traces: format!(
                "INSERT INTO {traces} (timestamp, trace_id, span_id, parent_span_id, name, kind, start_time_unix_nano, \
                 end_time_unix_nano, service_name, service_version, service_instance, scope_name, scope_version, \
                 status_code, status_message, attributes, resource_attributes, events, links) \
                 SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int4[], \
                 $7::int8[], $8::int8[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::int4[], \
                 $15::text[], $16::text[], $17::text[], $18::text[], $19::text[]) \
                 ON CONFLICT (timestamp, trace_id, span_id) DO NOTHING"
            ),
            metrics: format!(
                "INSERT INTO {metrics} (timestamp, trace_id, span_id, service_name, span_name, span_kind, duration_ms, \
                 duration_seconds, metric_type, http_method, http_route, http_status_code, grpc_service, grpc_method, \
                 grpc_status_code, is_slow, component, level, unit) \
                 SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
                 $7::float8[], $8::float8[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], \
                 $14::text[], $15::text[], $16::bool[], $17::text[], $18::text[], $19::text[]) \
                 ON CONFLICT (timestamp, span_name, service_name, span_id) DO NOTHING"
            ),
        }
    }

    /// Writes the batch's spans and points; returns the rows inserted.
    pub async fn write(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        rows: &[OtelRow],
    ) -> Result<u64, tokio_postgres::Error> {
        let spans: Vec<&SpanRow> =
            rows.iter().filter_map(|r| if let OtelRow::Span(s) = r { Some(s) } else { None }).collect();
        let points: Vec<&MetricRow> =
            rows.iter().filter_map(|r| if let OtelRow::Metric(m) = r { Some(m) } else { None }).collect();
        let mut inserted = 0;
        if !spans.is_empty() {
            let stmt = tx.prepare_cached(&self.traces).await?;
            let s = spans.iter().copied();
            inserted += tx
                .execute(
                    &stmt,
                    &[
                        &column(s.clone(), |r| r.timestamp),
                        &column(s.clone(), |r| r.trace_id.as_str()),
                        &column(s.clone(), |r| r.span_id.as_str()),
                        &column(s.clone(), |r| r.parent_span_id.as_str()),
                        &column(s.clone(), |r| r.name.as_str()),
                        &column(s.clone(), |r| r.kind),
                        &column(s.clone(), |r| r.start_time_unix_nano),
                        &column(s.clone(), |r| r.end_time_unix_nano),
                        &column(s.clone(), |r| &*r.service_name),
                        &column(s.clone(), |r| &*r.service_version),
                        &column(s.clone(), |r| &*r.service_instance),
                        &column(s.clone(), |r| &*r.scope_name),
                        &column(s.clone(), |r| &*r.scope_version),
                        &column(s.clone(), |r| r.status_code),
                        &column(s.clone(), |r| r.status_message.as_str()),
                        &column(s.clone(), |r| r.attributes.as_str()),
                        &column(s.clone(), |r| &*r.resource_attributes),
                        &column(s.clone(), |r| r.events.as_str()),
                        &column(s, |r| r.links.as_str()),
                    ],
                )
                .await?;
        }
        if !points.is_empty() {
            let stmt = tx.prepare_cached(&self.metrics).await?;
            let p = points.iter().copied();
            inserted += tx
                .execute(
                    &stmt,
                    &[
                        &column(p.clone(), |r| r.timestamp),
                        &column(p.clone(), |r| r.trace_id.as_str()),
                        &column(p.clone(), |r| r.span_id.as_str()),
                        &column(p.clone(), |r| &*r.service_name),
                        &column(p.clone(), |r| &*r.span_name),
                        &column(p.clone(), |r| r.span_kind.as_str()),
                        &column(p.clone(), |r| r.duration_ms),
                        &column(p.clone(), |r| r.duration_seconds),
                        &column(p.clone(), |r| r.metric_type.as_str()),
                        &column(p.clone(), |r| r.http_method.as_str()),
                        &column(p.clone(), |r| r.http_route.as_str()),
                        &column(p.clone(), |r| r.http_status_code.as_str()),
                        &column(p.clone(), |r| r.grpc_service.as_str()),
                        &column(p.clone(), |r| r.grpc_method.as_str()),
                        &column(p.clone(), |r| r.grpc_status_code.as_str()),
                        &column(p.clone(), |r| r.is_slow),
                        &column(p.clone(), |r| r.component.as_str()),
                        &column(p.clone(), |r| r.level.as_str()),
                        &column(p, |r| &*r.unit),
                    ],
                )
                .await?;
        }
        Ok(inserted)
    }
}
