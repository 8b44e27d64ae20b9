//! How flows are written: one statement that records each message's identity in the ledger and inserts rows
//! only for messages that were not there yet, in the same transaction.
//!
//! Uses the flow row, [`crate::sql`] and the ledger's table name.

use chrono::{DateTime, Utc};

use super::row::FlowRow;
use crate::sql::qualified;

/// The statement, built once for the configured schema.
#[derive(Debug, Clone)]
pub struct Sql {
    insert_sql: String,
}

impl Sql {
    /// The statement for tables in `schema`.
    pub fn new(schema: &str) -> Self {
        let table = qualified(schema, super::row::TABLE);
        let ledger = qualified(schema, crate::ledger::LEDGER);
        let insert_sql = format!(
            "WITH fresh AS ( \
               INSERT INTO {ledger} (jetstream, table_name, sequence) \
               SELECT DISTINCT l.js, '{}', l.seq FROM unnest($1::text[], $2::int8[]) AS l(js, seq) \
               ON CONFLICT DO NOTHING RETURNING jetstream, sequence) \
             INSERT INTO {table} (time, start_time, end_time, src_endpoint_ip, src_endpoint_port, src_as_number, \
               dst_endpoint_ip, dst_endpoint_port, dst_as_number, protocol_num, protocol_name, tcp_flags, bytes_total, \
               packets_total, bytes_in, bytes_out, packets_in, packets_out, sampler_address, src_mac, dst_mac, \
               ocsf_payload, partition, sampling_rate) \
             SELECT t.time, t.st, t.et, t.sip, t.sp, t.sas, t.dip, t.dp, t.das, t.pn, t.pname, t.tf, t.bt, t.pt, \
               t.bi, t.bo, t.pi, t.po, t.sa, t.smac, t.dmac, t.payload::jsonb, t.part, t.rate \
             FROM unnest($1::text[], $2::int8[], $3::timestamptz[], $4::timestamptz[], $5::timestamptz[], $6::text[], $7::int4[], \
               $8::int4[], $9::text[], $10::int4[], $11::int4[], $12::int4[], $13::text[], $14::int4[], $15::int8[], \
               $16::int8[], $17::int8[], $18::int8[], $19::int8[], $20::int8[], $21::text[], $22::text[], $23::text[], \
               $24::text[], $25::text[], $26::int8[]) \
             AS t(js, seq, time, st, et, sip, sp, sas, dip, dp, das, pn, pname, tf, bt, pt, bi, bo, pi, po, sa, smac, \
               dmac, payload, part, rate) \
             WHERE (t.js, t.seq) IN (SELECT jetstream, sequence FROM fresh)",
            super::row::TABLE
        );
        Sql { insert_sql }
    }

    pub async fn write(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        rows: &[FlowRow],
    ) -> Result<u64, tokio_postgres::Error> {
        let stmt = tx.prepare_cached(&self.insert_sql).await?;
        let opt_t = |f: fn(&FlowRow) -> Option<&str>| rows.iter().map(f).collect::<Vec<_>>();
        let opt_i = |f: fn(&FlowRow) -> Option<i32>| rows.iter().map(f).collect::<Vec<_>>();
        let big = |f: fn(&FlowRow) -> i64| rows.iter().map(f).collect::<Vec<_>>();
        let opt_big = |f: fn(&FlowRow) -> Option<i64>| rows.iter().map(f).collect::<Vec<_>>();
        let opt_time = |f: fn(&FlowRow) -> Option<DateTime<Utc>>| rows.iter().map(f).collect::<Vec<_>>();
        let times: Vec<DateTime<Utc>> = rows.iter().map(|r| r.time).collect();
        let payload: Vec<&str> = rows.iter().map(|r| r.ocsf_payload.as_str()).collect();
        tx.execute(
            &stmt,
            &[
                &rows.iter().map(|r| &*r.stream).collect::<Vec<&str>>(),
                &big(|r| r.sequence),
                &times,
                &opt_time(|r| r.start_time),
                &opt_time(|r| r.end_time),
                &opt_t(|r| r.src_ip.as_deref()),
                &opt_i(|r| r.src_port),
                &opt_i(|r| r.src_as),
                &opt_t(|r| r.dst_ip.as_deref()),
                &opt_i(|r| r.dst_port),
                &opt_i(|r| r.dst_as),
                &opt_i(|r| r.protocol_num),
                &opt_t(|r| r.protocol_name.as_deref()),
                &opt_i(|r| r.tcp_flags),
                &big(|r| r.bytes_total),
                &big(|r| r.packets_total),
                &opt_big(|r| r.bytes_in),
                &opt_big(|r| r.bytes_out),
                &opt_big(|r| r.packets_in),
                &opt_big(|r| r.packets_out),
                &opt_t(|r| r.sampler_address.as_deref()),
                &opt_t(|r| r.src_mac.as_deref()),
                &opt_t(|r| r.dst_mac.as_deref()),
                &payload,
                &rows.iter().map(|r| &*r.partition).collect::<Vec<&str>>(),
                &big(|r| r.sampling_rate),
            ],
        )
        .await
    }
}
