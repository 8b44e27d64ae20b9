//! How telemetry rows are written: binary COPY, and `INSERT … ON CONFLICT DO NOTHING` over unnested column
//! arrays for a batch that meets existing rows (a redelivery).
//!
//! Uses the telemetry row and [`crate::sql`].

use chrono::{DateTime, Utc};

use super::row::MetricRow;
use crate::sql::{JsonbText, qualified};

/// The statements, built once for the configured schema.
#[derive(Debug, Clone)]
pub struct Sql {
    copy_sql: String,
    insert_sql: String,
}

impl Sql {
    /// The statements for tables in `schema`.
    pub fn new(schema: &str) -> Self {
        let table = qualified(schema, super::row::TABLE);
        // One statement per batch: column arrays unnested server-side; the primary key makes it idempotent.
        let insert_sql = format!(
            "INSERT INTO {table} (timestamp, gateway_id, agent_id, metric_name, metric_type, device_id, value, unit, \
             tags, partition, scale, is_delta, target_device_ip, if_index, metadata, series_key, counter_width) \
             SELECT t.ts, t.gw, t.agent, t.name, t.kind, t.device, t.value, t.unit, t.tags::jsonb, t.part, t.scale, \
             t.delta, t.ip, t.ifx, t.meta::jsonb, t.sk, t.width \
             FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
             $7::float8[], $8::text[], $9::text[], $10::text[], $11::float8[], $12::bool[], $13::text[], \
             $14::int4[], $15::text[], $16::text[], $17::int4[]) \
             AS t(ts, gw, agent, name, kind, device, value, unit, tags, part, scale, delta, ip, ifx, meta, sk, width) \
             ON CONFLICT (timestamp, gateway_id, series_key) DO NOTHING"
        );
        let copy_sql = format!(
            "COPY {table} (timestamp, gateway_id, agent_id, metric_name, metric_type, device_id, value, unit, tags, \
             partition, scale, is_delta, target_device_ip, if_index, metadata, series_key, counter_width) FROM STDIN BINARY"
        );
        Sql { copy_sql, insert_sql }
    }

    /// Binary COPY of the rows: PostgreSQL's fastest path, but it fails whole (23505) if any row exists.
    /// (Public for the benchmark, whose ceiling is this same encoding without NATS.)
    pub async fn copy_rows(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        rows: &[MetricRow],
    ) -> Result<u64, tokio_postgres::Error> {
        use tokio_postgres::binary_copy::BinaryCopyInWriter;
        use tokio_postgres::types::Type;
        const TYPES: [Type; 17] = [
            Type::TIMESTAMPTZ,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::FLOAT8,
            Type::TEXT,
            Type::JSONB,
            Type::TEXT,
            Type::FLOAT8,
            Type::BOOL,
            Type::TEXT,
            Type::INT4,
            Type::JSONB,
            Type::TEXT,
            Type::INT4,
        ];
        let sink = tx.copy_in(&self.copy_sql).await?;
        let writer = BinaryCopyInWriter::new(sink, &TYPES);
        tokio::pin!(writer);
        for r in rows {
            let tags = r.tags.as_deref().map(JsonbText);
            let metadata = r.metadata.as_deref().map(JsonbText);
            writer
                .as_mut()
                .write(&[
                    &r.timestamp,
                    &r.gateway_id,
                    &r.agent_id,
                    &r.metric_name,
                    &r.metric_type,
                    &r.device_id,
                    &r.value,
                    &r.unit,
                    &tags,
                    &r.partition,
                    &r.scale,
                    &r.is_delta,
                    &r.target_device_ip,
                    &r.if_index,
                    &metadata,
                    &r.series_key,
                    &r.counter_width,
                ])
                .await?;
        }
        writer.finish().await
    }

    /// The conflict-tolerant path: rows already present (a redelivery) are skipped.
    pub async fn insert(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        rows: &[MetricRow],
    ) -> Result<u64, tokio_postgres::Error> {
        let stmt = tx.prepare_cached(&self.insert_sql).await?;
        let col = |f: fn(&MetricRow) -> Option<&str>| rows.iter().map(f).collect::<Vec<_>>();
        let timestamps: Vec<DateTime<Utc>> = rows.iter().map(|r| r.timestamp).collect();
        let gateway = col(|r| Some(&r.gateway_id));
        let agent = col(|r| r.agent_id.as_deref());
        let name = col(|r| Some(&r.metric_name));
        let kind = col(|r| Some(&r.metric_type));
        let device = col(|r| r.device_id.as_deref());
        let values: Vec<f64> = rows.iter().map(|r| r.value).collect();
        let unit = col(|r| r.unit.as_deref());
        let tags = col(|r| r.tags.as_deref());
        let partition = col(|r| r.partition.as_deref());
        let scale: Vec<Option<f64>> = rows.iter().map(|r| r.scale).collect();
        let delta: Vec<bool> = rows.iter().map(|r| r.is_delta).collect();
        let ip = col(|r| r.target_device_ip.as_deref());
        let if_index: Vec<Option<i32>> = rows.iter().map(|r| r.if_index).collect();
        let metadata = col(|r| r.metadata.as_deref());
        let series = col(|r| Some(&r.series_key));
        let width: Vec<Option<i32>> = rows.iter().map(|r| r.counter_width).collect();
        tx.execute(
            &stmt,
            &[
                &timestamps,
                &gateway,
                &agent,
                &name,
                &kind,
                &device,
                &values,
                &unit,
                &tags,
                &partition,
                &scale,
                &delta,
                &ip,
                &if_index,
                &metadata,
                &series,
                &width,
            ],
        )
        .await
    }
}
