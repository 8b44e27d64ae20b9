//! Flows (reference §3.6): `flowpb.FlowMessage` protobuf (and the legacy JSON shape) → `ocsf_network_activity`
//! with the Elixir `Flows` mapping.
//!
//! `ocsf_network_activity` has no key in ServiceRadar's schema, so idempotency comes from the ledger: the
//! message's identity (its JetStream stream's incarnation, see [`crate::ledger`], and stream sequence) is inserted
//! into `db_event_writer_ledger` in the same statement and transaction as the rows, and rows are inserted only
//! for messages that were not there yet. A redelivered (or replayed) message inserts nothing; two instances
//! writing the same message serialize on the ledger's primary key.
//!
//! [`decode`] maps a flow to its [`row`]; [`write`] holds the ledger-guarded SQL.
//!
//! Uses the processor api and its own rooms.

use std::time::Duration;

pub mod decode;
pub mod row;
#[cfg(test)]
mod tests;
mod write;

pub use decode::{ip_text, mac_text, protocol_name};
pub use row::FlowRow;
pub use row::TABLE;

use crate::processor::api::{BatchDefaults, DatabaseConfig, DecodeError, Incoming, Processor, Rows};

/// The netflow processor.
#[derive(Debug, Clone)]
pub struct Netflow {
    sql: write::Sql,
}

impl Processor for Netflow {
    const NAME: &'static str = "netflow";
    const TABLES: &'static [&'static str] = &[TABLE];
    /// 1,000 rows (sized by the benchmark, as telemetry), flushed after 500 ms as the design this replaces.
    const BATCH: BatchDefaults = BatchDefaults { size: 1000, timeout: Duration::from_millis(500) };
    /// ServiceRadar's: 90 days.
    const RETENTION: &'static [(&'static str, Duration)] = &[(TABLE, Duration::from_secs(90 * 86_400))];
    /// ServiceRadar's (its DataRetentionWorker's defaults).
    const CHUNK_INTERVAL: &'static [(&'static str, Duration)] = &[(TABLE, Duration::from_secs(24 * 3600))];
    /// `ocsf_network_activity` has no key of its own.
    const LEDGER: bool = true;

    type Row = FlowRow;

    fn new(database: &DatabaseConfig) -> Self {
        Netflow { sql: write::Sql::new(&database.schema) }
    }

    fn decode(&self, msg: &Incoming<'_>, rows: &mut Rows<'_, FlowRow>) -> Result<(), DecodeError> {
        decode::decode(msg, rows)
    }

    async fn write(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        rows: &[FlowRow],
    ) -> Result<u64, tokio_postgres::Error> {
        self.sql.write(tx, rows).await
    }
}
