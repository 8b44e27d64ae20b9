//! Metrics → `timeseries_metrics`, keyed by `(timestamp, gateway_id, series_key)`: ServiceRadar's metric
//! envelope, a protobuf `serviceradar.metric.v1` `MetricBatch` ([`envelope`], what agents and gateways publish on
//! `metrics.>` today), and the telemetry JSON of older publishers ([`decode`]: one metric object or an array).
//! `series_key` is computed here exactly as `build_timeseries_series_key` computes it in SQL (reference §8.2), so a
//! redelivered sample hits the primary key.
//!
//! [`envelope`] and [`decode`] read the payload, [`series_key`] computes the series identity, [`write`] holds the
//! SQL; [`row`] is the row they share.
//!
//! Uses the processor api, its own rooms and [`crate::sql`].

use std::time::Duration;

mod decode;
pub mod envelope;
pub mod row;
pub mod series_key;
#[cfg(test)]
mod tests;
mod write;

pub use row::MetricRow;
pub use row::TABLE;
pub use series_key::{SeriesIdentity, Volatile, series_key};

use crate::processor::api::{BatchDefaults, DatabaseConfig, DecodeError, Incoming, Processor, Rows};
use crate::processor::proto::metric::MetricBatch;
use crate::sql::copy_or_insert;

/// The telemetry processor.
#[derive(Debug, Clone)]
pub struct Telemetry {
    sql: write::Sql,
    volatile: Volatile,
}

impl Telemetry {
    /// Binary COPY of the rows, the benchmark's ceiling (this same encoding without NATS).
    pub async fn copy_rows(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        rows: &[MetricRow],
    ) -> Result<u64, tokio_postgres::Error> {
        self.sql.copy_rows(tx, rows).await
    }
}

impl Processor for Telemetry {
    const NAME: &'static str = "telemetry";
    const TABLES: &'static [&'static str] = &[TABLE];
    /// 5,000 rows, flushed after 1 s as the design this replaces. The benchmark (BENCHMARKS.md): 100-row batches
    /// run at ~60% of the 1,000-row rate; 5,000-row ones ~15% faster still and cost PostgreSQL ~25% less CPU
    /// per row, for ~60 MiB of peak RSS instead of ~25. Telemetry is the high-volume stream.
    const BATCH: BatchDefaults = BatchDefaults { size: 5000, timeout: Duration::from_secs(1) };
    /// ServiceRadar's: points marked `non_numeric` stay out of the table.
    const SKIPS: &'static [&'static str] = &[envelope::NON_NUMERIC];
    /// ServiceRadar's: 7 days.
    const RETENTION: &'static [(&'static str, Duration)] = &[(TABLE, Duration::from_secs(7 * 86_400))];
    /// ServiceRadar's (its DataRetentionWorker's defaults).
    const CHUNK_INTERVAL: &'static [(&'static str, Duration)] = &[(TABLE, Duration::from_secs(24 * 3600))];

    type Row = MetricRow;

    fn new(database: &DatabaseConfig) -> Self {
        Telemetry { sql: write::Sql::new(&database.schema), volatile: Volatile::new(&database.volatile_tag_keys) }
    }

    fn decode(&self, msg: &Incoming<'_>, rows: &mut Rows<'_, MetricRow>) -> Result<(), DecodeError> {
        // JSON starts with '{' or '['; a MetricBatch with its schema_version first starts with 0x0A.
        match msg.payload.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{' | b'[') => decode::decode(msg, rows, &self.volatile),
            _ => match MetricBatch::decode_envelope(msg.payload) {
                Some(Ok(batch)) => envelope::decode(&batch, msg, rows, &self.volatile),
                Some(Err(why)) => Err(DecodeError::new(format!("not a serviceradar.metric.v1 MetricBatch: {why}"))),
                None => Err(DecodeError::new(
                    "neither telemetry JSON (an object or an array) nor a serviceradar.metric.v1 MetricBatch",
                )),
            },
        }
    }

    async fn write(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        rows: &[MetricRow],
    ) -> Result<u64, tokio_postgres::Error> {
        // Why COPY first: it is several times faster than a conflict-checking INSERT, and a redelivery (the only
        // source of existing rows) is rare. If any row exists, the COPY fails whole with 23505; the savepoint
        // undoes it and the batch goes through INSERT ... ON CONFLICT DO NOTHING instead. A concurrent instance
        // writing the same rows blocks on the key, then takes the same fallback: never a second row.
        copy_or_insert(tx, || self.sql.copy_rows(tx, rows), || self.sql.insert(tx, rows)).await
    }
}
