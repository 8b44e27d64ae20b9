//! The row telemetry becomes, and its size as sent to PostgreSQL.
//!
//! Uses the processor api.

use chrono::{DateTime, Utc};

use crate::processor::api::RowSize;

/// The table written.
pub const TABLE: &str = "timeseries_metrics";

/// One row of `timeseries_metrics`.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricRow {
    /// Sample time (the message's JetStream time when the payload has none, so redeliveries agree).
    pub timestamp: DateTime<Utc>,
    /// Gateway; `unknown` when absent.
    pub gateway_id: String,
    /// Agent.
    pub agent_id: Option<String>,
    /// Metric name; `unknown` when absent.
    pub metric_name: String,
    /// Metric type; `gauge` when absent.
    pub metric_type: String,
    /// Device.
    pub device_id: Option<String>,
    /// Sample value.
    pub value: f64,
    /// Unit.
    pub unit: Option<String>,
    /// Tags as JSON object text.
    pub tags: Option<String>,
    /// Partition.
    pub partition: Option<String>,
    /// Scale.
    pub scale: Option<f64>,
    /// Counter delta.
    pub is_delta: bool,
    /// SNMP counter width in bits (32, 64), for wrap-aware rates.
    pub counter_width: Option<i32>,
    /// Target device IP.
    pub target_device_ip: Option<String>,
    /// Interface index.
    pub if_index: Option<i32>,
    /// Metadata as JSON text.
    pub metadata: Option<String>,
    /// md5 series identity (reference §8.2).
    pub series_key: String,
}

impl RowSize for MetricRow {
    fn size(&self) -> usize {
        let opt = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        // timestamp, value, scale, is_delta, if_index, counter_width
        48 + self.gateway_id.len()
            + opt(&self.agent_id)
            + self.metric_name.len()
            + self.metric_type.len()
            + opt(&self.device_id)
            + opt(&self.unit)
            + opt(&self.tags)
            + opt(&self.partition)
            + opt(&self.target_device_ip)
            + opt(&self.metadata)
            + self.series_key.len()
    }
}
