//! How OpenTelemetry rows are written: one `INSERT … ON CONFLICT DO NOTHING` over unnested column arrays per
//! table (spans, span samples, points), in the caller's transaction.
//!
//! Uses the otel rows and [`crate::sql`].

use super::row::{MetricRow, OtelRow, PointRow, SpanRow};
use crate::sql::{column, qualified};

/// The statements, built once for the configured schema.
#[derive(Debug, Clone)]
pub struct Sql {
    traces: String,
    metrics: String,
    points: String,
}

impl Sql {
    /// The statements for tables in `schema`.
    pub fn new(schema: &str) -> Self {
        let traces = qualified(schema, super::row::TRACES);
        let metrics = qualified(schema, super::row::METRICS);
        let points = qualified(schema, super::row::POINTS);
        Sql {
            traces: format!(
                "INSERT INTO {traces} (timestamp, trace_id, span_id, parent_span_id, name, kind, start_time_unix_nano, \
                 end_time_unix_nano, service_name, service_version, service_instance, scope_name, scope_version, \
                 status_code, status_message, attributes, resource_attributes, events, links, trace_state, \
                 scope_attributes, dropped_attributes_count, dropped_events_count, dropped_links_count, \
                 service_namespace, deployment_environment, ingest_identity, ingest_agent_id, ingest_partition) \
                 SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int4[], \
                 $7::int8[], $8::int8[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::int4[], \
                 $15::text[], $16::text[], $17::text[], $18::text[], $19::text[], $20::text[], $21::text[], \
                 $22::int4[], $23::int4[], $24::int4[], $25::text[], $26::text[], $27::text[], $28::text[], \
                 $29::text[]) \
                 ON CONFLICT (timestamp, trace_id, span_id) DO NOTHING"
            ),
            metrics: format!(
                "INSERT INTO {metrics} (timestamp, trace_id, span_id, service_name, span_name, span_kind, duration_ms, \
                 duration_seconds, metric_type, http_method, http_route, http_status_code, grpc_service, grpc_method, \
                 grpc_status_code, is_slow, component, level, unit, ingest_identity, ingest_agent_id, \
                 ingest_partition) \
                 SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
                 $7::float8[], $8::float8[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], \
                 $14::text[], $15::text[], $16::bool[], $17::text[], $18::text[], $19::text[], $20::text[], \
                 $21::text[], $22::text[]) \
                 ON CONFLICT (timestamp, span_name, service_name, span_id) DO NOTHING"
            ),
            points: format!(
                "INSERT INTO {points} (timestamp, metric_name, metric_type, unit, temporality, is_monotonic, \
                 service_name, service_instance_id, scope_name, start_time_unix_nano, attributes, attributes_hash, \
                 value, count, sum, bucket_counts, explicit_bounds, ingest_identity, ingest_agent_id, \
                 ingest_partition) \
                 SELECT * FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bool[], \
                 $7::text[], $8::text[], $9::text[], $10::int8[], $11::text[], $12::text[], $13::float8[], \
                 $14::int8[], $15::float8[], $16::text[], $17::text[], $18::text[], $19::text[], $20::text[]) \
                 ON CONFLICT (timestamp, metric_name, service_name, attributes_hash) DO NOTHING"
            ),
        }
    }

    /// Writes the batch's spans, samples and points; returns the rows inserted.
    pub async fn write(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        rows: &[OtelRow],
    ) -> Result<u64, tokio_postgres::Error> {
        let spans: Vec<&SpanRow> =
            rows.iter().filter_map(|r| if let OtelRow::Span(s) = r { Some(s) } else { None }).collect();
        let samples: Vec<&MetricRow> =
            rows.iter().filter_map(|r| if let OtelRow::Metric(m) = r { Some(m) } else { None }).collect();
        let points: Vec<&PointRow> =
            rows.iter().filter_map(|r| if let OtelRow::Point(p) = r { Some(p) } else { None }).collect();
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
                        &column(s.clone(), |r| r.parent_span_id.as_deref()),
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
                        &column(s.clone(), |r| r.links.as_str()),
                        &column(s.clone(), |r| r.trace_state.as_deref()),
                        &column(s.clone(), |r| r.scope_attributes.as_deref()),
                        &column(s.clone(), |r| r.dropped_attributes_count),
                        &column(s.clone(), |r| r.dropped_events_count),
                        &column(s.clone(), |r| r.dropped_links_count),
                        &column(s.clone(), |r| &*r.service_namespace),
                        &column(s.clone(), |r| &*r.deployment_environment),
                        &column(s.clone(), |r| &*r.ingest.identity),
                        &column(s.clone(), |r| &*r.ingest.agent_id),
                        &column(s, |r| &*r.ingest.partition),
                    ],
                )
                .await?;
        }
        if !samples.is_empty() {
            let stmt = tx.prepare_cached(&self.metrics).await?;
            let p = samples.iter().copied();
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
                        &column(p.clone(), |r| &*r.unit),
                        &column(p.clone(), |r| &*r.ingest.identity),
                        &column(p.clone(), |r| &*r.ingest.agent_id),
                        &column(p, |r| &*r.ingest.partition),
                    ],
                )
                .await?;
        }
        if !points.is_empty() {
            let stmt = tx.prepare_cached(&self.points).await?;
            let p = points.iter().copied();
            inserted += tx
                .execute(
                    &stmt,
                    &[
                        &column(p.clone(), |r| r.timestamp),
                        &column(p.clone(), |r| &*r.metric_name),
                        &column(p.clone(), |r| r.metric_type),
                        &column(p.clone(), |r| r.unit.as_deref()),
                        &column(p.clone(), |r| r.temporality),
                        &column(p.clone(), |r| r.is_monotonic),
                        &column(p.clone(), |r| &*r.service_name),
                        &column(p.clone(), |r| &*r.service_instance_id),
                        &column(p.clone(), |r| &*r.scope_name),
                        &column(p.clone(), |r| r.start_time_unix_nano),
                        &column(p.clone(), |r| r.attributes.as_str()),
                        &column(p.clone(), |r| r.attributes_hash.as_str()),
                        &column(p.clone(), |r| r.value),
                        &column(p.clone(), |r| r.count),
                        &column(p.clone(), |r| r.sum),
                        &column(p.clone(), |r| r.bucket_counts.as_deref()),
                        &column(p.clone(), |r| r.explicit_bounds.as_deref()),
                        &column(p.clone(), |r| &*r.ingest.identity),
                        &column(p.clone(), |r| &*r.ingest.agent_id),
                        &column(p, |r| &*r.ingest.partition),
                    ],
                )
                .await?;
        }
        Ok(inserted)
    }
}
