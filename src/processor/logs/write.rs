//! How log rows are written: binary COPY, and `INSERT … ON CONFLICT DO NOTHING` over unnested column arrays for
//! a batch that meets existing rows (a redelivery).
//!
//! Uses the logs row and [`crate::sql`].

use chrono::{DateTime, Utc};

use super::row::LogRow;
use crate::sql::{UuidText, qualified};

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
        let insert_sql = format!(
            "INSERT INTO {table} (timestamp, id, trace_id, span_id, severity_text, severity_number, body, service_name, \
             service_version, service_instance, scope_name, scope_version, attributes, resource_attributes, \
             observed_timestamp, trace_flags, event_name, scope_attributes, source, source_ip, ingest_identity, \
             ingest_agent_id, ingest_partition) \
             SELECT t.ts, t.id::uuid, t.tr, t.sp, t.st, t.sn, t.body, t.svc, t.sv, t.si, t.scn, t.scv, t.attrs, t.res, \
             t.obs, t.fl, t.ev, t.sca, t.src, t.sip, t.ii, t.ia, t.ip \
             FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int4[], \
             $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], \
             $15::timestamptz[], $16::int4[], $17::text[], $18::text[], $19::text[], $20::text[], $21::text[], \
             $22::text[], $23::text[]) \
             AS t(ts, id, tr, sp, st, sn, body, svc, sv, si, scn, scv, attrs, res, obs, fl, ev, sca, src, sip, ii, ia, \
             ip) \
             ON CONFLICT (timestamp, id) DO NOTHING"
        );
        let copy_sql = format!(
            "COPY {table} (timestamp, id, trace_id, span_id, severity_text, severity_number, body, service_name, \
             service_version, service_instance, scope_name, scope_version, attributes, resource_attributes, \
             observed_timestamp, trace_flags, event_name, scope_attributes, source, source_ip, ingest_identity, \
             ingest_agent_id, ingest_partition) FROM STDIN BINARY"
        );
        Sql { copy_sql, insert_sql }
    }

    /// Binary COPY of the rows (fails whole with 23505 if one exists).
    pub async fn copy_rows(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        rows: &[LogRow],
    ) -> Result<u64, tokio_postgres::Error> {
        use tokio_postgres::binary_copy::BinaryCopyInWriter;
        use tokio_postgres::types::Type;
        const TYPES: [Type; 23] = [
            Type::TIMESTAMPTZ,
            Type::UUID,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::INT4,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TIMESTAMPTZ,
            Type::INT4,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
        ];
        let sink = tx.copy_in(&self.copy_sql).await?;
        let writer = BinaryCopyInWriter::new(sink, &TYPES);
        tokio::pin!(writer);
        for r in rows {
            writer
                .as_mut()
                .write(&[
                    &r.timestamp,
                    &UuidText(&r.id),
                    &r.trace_id,
                    &r.span_id,
                    &r.severity_text,
                    &r.severity_number,
                    &r.body,
                    &&*r.service_name,
                    &&*r.service_version,
                    &&*r.service_instance,
                    &&*r.scope_name,
                    &&*r.scope_version,
                    &r.attributes,
                    &&*r.resource_attributes,
                    &r.observed_timestamp,
                    &r.trace_flags,
                    &r.event_name,
                    &&*r.scope_attributes,
                    &r.source,
                    &r.source_ip,
                    &&*r.ingest.identity,
                    &&*r.ingest.agent_id,
                    &&*r.ingest.partition,
                ])
                .await?;
        }
        writer.finish().await
    }

    /// The conflict-tolerant path: rows already present (a redelivery) are skipped.
    pub async fn insert(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        rows: &[LogRow],
    ) -> Result<u64, tokio_postgres::Error> {
        let stmt = tx.prepare_cached(&self.insert_sql).await?;
        let text = |f: fn(&LogRow) -> &str| rows.iter().map(f).collect::<Vec<&str>>();
        let timestamps: Vec<DateTime<Utc>> = rows.iter().map(|r| r.timestamp).collect();
        let ids = text(|r| &r.id);
        let optional = |f: fn(&LogRow) -> Option<&str>| rows.iter().map(f).collect::<Vec<Option<&str>>>();
        let trace = optional(|r| r.trace_id.as_deref());
        let span = optional(|r| r.span_id.as_deref());
        let sev_text = text(|r| &r.severity_text);
        let sev_num: Vec<i32> = rows.iter().map(|r| r.severity_number).collect();
        let body = text(|r| &r.body);
        let svc = text(|r| &r.service_name);
        let svc_ver = text(|r| &r.service_version);
        let svc_inst = text(|r| &r.service_instance);
        let scope = text(|r| &r.scope_name);
        let scope_ver = text(|r| &r.scope_version);
        let attrs = text(|r| &r.attributes);
        let res_attrs = text(|r| &r.resource_attributes);
        let observed: Vec<Option<DateTime<Utc>>> = rows.iter().map(|r| r.observed_timestamp).collect();
        let flags: Vec<Option<i32>> = rows.iter().map(|r| r.trace_flags).collect();
        let event = text(|r| &r.event_name);
        let scope_attrs = text(|r| &r.scope_attributes);
        let source = text(|r| &r.source);
        let source_ip = optional(|r| r.source_ip.as_deref());
        let (identity, agent, partition) =
            (text(|r| &r.ingest.identity), text(|r| &r.ingest.agent_id), text(|r| &r.ingest.partition));
        tx.execute(
            &stmt,
            &[
                &timestamps,
                &ids,
                &trace,
                &span,
                &sev_text,
                &sev_num,
                &body,
                &svc,
                &svc_ver,
                &svc_inst,
                &scope,
                &scope_ver,
                &attrs,
                &res_attrs,
                &observed,
                &flags,
                &event,
                &scope_attrs,
                &source,
                &source_ip,
                &identity,
                &agent,
                &partition,
            ],
        )
        .await
    }
}
