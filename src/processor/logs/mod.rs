//! Logs → `logs` (reference §3.1): ServiceRadar's JSON log shapes (syslog/GELF, SNMP traps, OTel-as-JSON, WAF
//! findings, internal logs) and OTLP `ExportLogsServiceRequest` protobuf.
//!
//! Each row's `id` is derived from the message's JetStream stream, sequence and the record's index in the
//! message, so a redelivered message hits the `(timestamp, id)` key instead of becoming new rows (ServiceRadar
//! used a random UUID, so every redelivery doubled its logs).
//!
//! [`json`] and [`otlp`] decode the two formats into [`row::LogRow`]s; [`write`] holds the SQL.
//!
//! Uses the processor api, its own rooms, the prost messages and the COPY helpers of [`crate::sql`].

use std::time::Duration;

use prost::Message as _;

pub mod json;
pub mod otlp;
pub mod redact;
pub mod row;
pub mod snmp;
pub mod source;
#[cfg(test)]
mod tests;
mod write;

pub use row::TABLE;
pub use row::{LogRow, record_id};

use crate::processor::api::{BatchDefaults, DatabaseConfig, DecodeError, Incoming, Processor, Rows};
use crate::processor::proto::logs::ExportLogsServiceRequest;
use crate::sql::copy_or_insert;

/// The logs processor.
#[derive(Debug, Clone)]
pub struct Logs {
    sql: write::Sql,
}

impl Processor for Logs {
    const NAME: &'static str = "logs";
    const TABLES: &'static [&'static str] = &[TABLE];
    /// 5,000 rows, flushed after 1 s as the design this replaces. Logs are the other high-volume stream and
    /// COPY-written like telemetry: in the benchmark 5,000-row batches run ~10% faster than 1,000-row ones and
    /// cost PostgreSQL ~12% less CPU per row, for ~60–75 MiB of peak RSS instead of ~30.
    const BATCH: BatchDefaults = BatchDefaults { size: 5000, timeout: Duration::from_secs(1) };
    /// ServiceRadar's: 30 days.
    const RETENTION: &'static [(&'static str, Duration)] = &[(TABLE, Duration::from_secs(30 * 86_400))];
    /// ServiceRadar's (its DataRetentionWorker's defaults).
    const CHUNK_INTERVAL: &'static [(&'static str, Duration)] = &[(TABLE, Duration::from_secs(6 * 3600))];

    type Row = LogRow;

    fn new(database: &DatabaseConfig) -> Self {
        Logs { sql: write::Sql::new(&database.schema) }
    }

    fn decode(&self, msg: &Incoming<'_>, rows: &mut Rows<'_, LogRow>) -> Result<(), DecodeError> {
        let first = msg.payload.iter().find(|b| !b.is_ascii_whitespace()).copied();
        match first {
            None => Err(DecodeError::new("empty payload")),
            // JSON first when it looks like JSON: a serialized OTLP request starts with 0x0A, never '{' or '['.
            Some(b'{' | b'[') => json::decode_json(msg, rows),
            Some(_) => match ExportLogsServiceRequest::decode(msg.payload) {
                Ok(request) => otlp::decode_otlp(&request, msg, rows),
                Err(e) => Err(DecodeError::new(format!("neither JSON nor an OTLP ExportLogsServiceRequest: {e}"))),
            },
        }
    }

    async fn write(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        rows: &[LogRow],
    ) -> Result<u64, tokio_postgres::Error> {
        // COPY first; a redelivered message (same ids) falls back to INSERT ... ON CONFLICT DO NOTHING.
        copy_or_insert(tx, || self.sql.copy_rows(tx, rows), || self.sql.insert(tx, rows)).await
    }
}
