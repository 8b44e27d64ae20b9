//! The row a flow becomes.
//!
//! Uses the processor api.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::processor::api::RowSize;

/// The table written.
pub const TABLE: &str = "ocsf_network_activity";

/// One row of `ocsf_network_activity`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FlowRow {
    /// The message's stream identity (the ledger key, with `sequence`), shared by its rows.
    pub stream: Arc<str>,
    /// The message's stream sequence (the ledger key).
    pub sequence: i64,
    /// Flow time: end, else received, else start.
    pub time: DateTime<Utc>,
    /// Flow start.
    pub start_time: Option<DateTime<Utc>>,
    /// Flow end.
    pub end_time: Option<DateTime<Utc>>,
    /// Source address.
    pub src_ip: Option<String>,
    /// Source port (0 → NULL).
    pub src_port: Option<i32>,
    /// Source AS (0 → NULL).
    pub src_as: Option<i32>,
    /// Destination address.
    pub dst_ip: Option<String>,
    /// Destination port.
    pub dst_port: Option<i32>,
    /// Destination AS.
    pub dst_as: Option<i32>,
    /// IP protocol number.
    pub protocol_num: Option<i32>,
    /// Protocol name.
    pub protocol_name: Option<String>,
    /// TCP flags.
    pub tcp_flags: Option<i32>,
    /// Bytes.
    pub bytes_total: i64,
    /// Packets.
    pub packets_total: i64,
    /// Bytes in; `None` (NULL) when the exporter did not say (0).
    pub bytes_in: Option<i64>,
    /// Bytes out; `None` when unknown.
    pub bytes_out: Option<i64>,
    /// Packets in; `None` when unknown.
    pub packets_in: Option<i64>,
    /// Packets out; `None` when unknown.
    pub packets_out: Option<i64>,
    /// 1 in N packets sampled (1: unsampled, also when the exporter did not say).
    pub sampling_rate: i64,
    /// `default`, or the partition of an attributed flow.
    pub partition: Arc<str>,
    /// Exporter address.
    pub sampler_address: Option<String>,
    /// Source MAC.
    pub src_mac: Option<String>,
    /// Destination MAC.
    pub dst_mac: Option<String>,
    /// The OCSF document.
    pub ocsf_payload: String,
}

impl RowSize for FlowRow {
    fn size(&self) -> usize {
        let opt = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        136 + self.stream.len()
            + self.partition.len()
            + opt(&self.src_ip)
            + opt(&self.dst_ip)
            + opt(&self.protocol_name)
            + opt(&self.sampler_address)
            + opt(&self.src_mac)
            + opt(&self.dst_mac)
            + self.ocsf_payload.len()
    }
}
