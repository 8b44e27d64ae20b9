//! ServiceRadar's own metric envelope, `serviceradar.metric.v1` (`proto/metric/v1/metric.proto`,
//! reference-today §2.1): what agents and gateways publish on `metrics.>` (and the collector on
//! `otel.metrics.derived`). Enums are kept as their numbers.
//!
//! Uses nothing of the project.
#![allow(missing_docs)]

/// The only `schema_version` a batch may carry.
pub const SCHEMA_VERSION: &str = "serviceradar.metric.v1";

/// `MetricKind`.
pub mod kind {
    pub const GAUGE: i32 = 1;
    pub const SUM: i32 = 2;
    pub const HISTOGRAM: i32 = 3;
}

/// `MetricTemporality`.
pub mod temporality {
    pub const DELTA: i32 = 1;
    pub const CUMULATIVE: i32 = 2;
}

/// `MetricValueType` by name (`None` for unspecified or unknown).
pub fn value_type_name(v: i32) -> Option<&'static str> {
    Some(match v {
        1 => "double",
        2 => "int64",
        3 => "uint64",
        4 => "bool",
        5 => "string",
        _ => return None,
    })
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StringMapEntry {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct MetricResource {
    #[prost(string, tag = "1")]
    pub agent_id: String,
    #[prost(string, tag = "2")]
    pub gateway_id: String,
    #[prost(string, tag = "3")]
    pub partition: String,
    #[prost(string, tag = "4")]
    pub service_name: String,
    #[prost(string, tag = "5")]
    pub service_type: String,
    #[prost(string, tag = "6")]
    pub host_id: String,
    #[prost(string, tag = "7")]
    pub host_ip: String,
    #[prost(string, tag = "8")]
    pub target_device_ip: String,
    #[prost(string, tag = "9")]
    pub device_id: String,
    #[prost(string, tag = "10")]
    pub kv_store_id: String,
    #[prost(message, repeated, tag = "20")]
    pub attributes: Vec<StringMapEntry>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct IngestIdentity {
    #[prost(string, tag = "1")]
    pub source: String,
    #[prost(string, tag = "2")]
    pub payload_kind: String,
    #[prost(string, tag = "3")]
    pub producer_id: String,
    #[prost(string, tag = "4")]
    pub producer_kind: String,
    #[prost(string, tag = "5")]
    pub attested_by: String,
    #[prost(message, repeated, tag = "20")]
    pub attributes: Vec<StringMapEntry>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct MetricPoint {
    #[prost(double, tag = "1")]
    pub value: f64,
    #[prost(string, tag = "2")]
    pub raw_value: String,
    #[prost(int32, tag = "3")]
    pub raw_value_type: i32,
    #[prost(uint64, tag = "4")]
    pub observed_at_unix_nano: u64,
    #[prost(uint64, tag = "5")]
    pub start_time_unix_nano: u64,
    #[prost(string, tag = "6")]
    pub reset_anchor: String,
    #[prost(int32, tag = "7")]
    pub if_index: i32,
    #[prost(string, tag = "8")]
    pub interface_uid: String,
    #[prost(string, tag = "9")]
    pub series_identity_hint: String,
    #[prost(message, repeated, tag = "20")]
    pub attributes: Vec<StringMapEntry>,
    #[prost(message, repeated, tag = "21")]
    pub metadata: Vec<StringMapEntry>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Metric {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub metric_type: String,
    #[prost(int32, tag = "3")]
    pub kind: i32,
    #[prost(int32, tag = "4")]
    pub temporality: i32,
    #[prost(bool, tag = "5")]
    pub is_monotonic: bool,
    #[prost(string, tag = "6")]
    pub unit: String,
    #[prost(double, tag = "7")]
    pub scale: f64,
    #[prost(uint32, tag = "8")]
    pub counter_width: u32,
    #[prost(message, repeated, tag = "20")]
    pub points: Vec<MetricPoint>,
    #[prost(message, repeated, tag = "30")]
    pub tags: Vec<StringMapEntry>,
    #[prost(message, repeated, tag = "31")]
    pub metadata: Vec<StringMapEntry>,
    #[prost(message, repeated, tag = "32")]
    pub thresholds: Vec<StringMapEntry>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct MetricBatch {
    #[prost(string, tag = "1")]
    pub schema_version: String,
    #[prost(message, optional, tag = "2")]
    pub resource: Option<MetricResource>,
    #[prost(message, optional, tag = "3")]
    pub ingest_identity: Option<IngestIdentity>,
    #[prost(string, tag = "4")]
    pub ingress_id: String,
    #[prost(uint64, tag = "5")]
    pub ingress_timestamp_unix_nano: u64,
    #[prost(uint64, tag = "6")]
    pub emitted_at_unix_nano: u64,
    #[prost(message, repeated, tag = "20")]
    pub metrics: Vec<Metric>,
}

impl MetricBatch {
    /// Decodes `payload` as a batch, `None` unless it is one (the protobuf parses and names this schema).
    pub fn decode_envelope(payload: &[u8]) -> Option<Result<MetricBatch, String>> {
        use prost::Message as _;
        match MetricBatch::decode(payload) {
            Ok(b) if b.schema_version == SCHEMA_VERSION => Some(Ok(b)),
            // Another version of the envelope: say which. (Other protobufs may parse too, e.g. an OTLP request,
            // whose first field lands in schema_version: those are not envelopes.)
            Ok(b) if b.schema_version.starts_with("serviceradar.metric.") => {
                Some(Err(format!("schema_version {:?} is not {SCHEMA_VERSION:?}", b.schema_version)))
            }
            _ => None,
        }
    }
}
