//! ServiceRadar's flow messages (`proto/flow/flow.proto`, reference §3.6 and reference-today §9.4): the
//! collector's `FlowMessage` and the netprobe joiner's `AttributedFlowMessage`.
//!
//! Uses nothing of the project.
#![allow(missing_docs)]

#[derive(Clone, PartialEq, prost::Message)]
pub struct FlowMessage {
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    #[prost(uint64, tag = "110")]
    pub time_received_ns: u64,
    #[prost(uint32, tag = "4")]
    pub sequence_num: u32,
    #[prost(uint64, tag = "3")]
    pub sampling_rate: u64,
    #[prost(bytes = "vec", tag = "11")]
    pub sampler_address: Vec<u8>,
    #[prost(uint64, tag = "111")]
    pub time_flow_start_ns: u64,
    #[prost(uint64, tag = "112")]
    pub time_flow_end_ns: u64,
    #[prost(uint64, tag = "113")]
    pub bytes_in: u64,
    #[prost(uint64, tag = "114")]
    pub bytes_out: u64,
    #[prost(uint64, tag = "115")]
    pub packets_in: u64,
    #[prost(uint64, tag = "116")]
    pub packets_out: u64,
    #[prost(uint64, tag = "9")]
    pub bytes: u64,
    #[prost(uint64, tag = "10")]
    pub packets: u64,
    #[prost(bytes = "vec", tag = "6")]
    pub src_addr: Vec<u8>,
    #[prost(bytes = "vec", tag = "7")]
    pub dst_addr: Vec<u8>,
    #[prost(uint32, tag = "30")]
    pub etype: u32,
    #[prost(uint32, tag = "20")]
    pub proto: u32,
    #[prost(uint32, tag = "21")]
    pub src_port: u32,
    #[prost(uint32, tag = "22")]
    pub dst_port: u32,
    #[prost(uint32, tag = "18")]
    pub in_if: u32,
    #[prost(uint32, tag = "19")]
    pub out_if: u32,
    #[prost(uint64, tag = "27")]
    pub src_mac: u64,
    #[prost(uint64, tag = "28")]
    pub dst_mac: u64,
    #[prost(uint32, tag = "33")]
    pub src_vlan: u32,
    #[prost(uint32, tag = "34")]
    pub dst_vlan: u32,
    #[prost(uint32, tag = "29")]
    pub vlan_id: u32,
    #[prost(uint32, tag = "23")]
    pub ip_tos: u32,
    #[prost(uint32, tag = "24")]
    pub forwarding_status: u32,
    #[prost(uint32, tag = "25")]
    pub ip_ttl: u32,
    #[prost(uint32, tag = "38")]
    pub ip_flags: u32,
    #[prost(uint32, tag = "26")]
    pub tcp_flags: u32,
    #[prost(uint32, tag = "31")]
    pub icmp_type: u32,
    #[prost(uint32, tag = "32")]
    pub icmp_code: u32,
    #[prost(uint32, tag = "37")]
    pub ipv6_flow_label: u32,
    #[prost(uint32, tag = "35")]
    pub fragment_id: u32,
    #[prost(uint32, tag = "36")]
    pub fragment_offset: u32,
    #[prost(uint32, tag = "14")]
    pub src_as: u32,
    #[prost(uint32, tag = "15")]
    pub dst_as: u32,
    #[prost(bytes = "vec", tag = "12")]
    pub next_hop: Vec<u8>,
    #[prost(uint32, tag = "13")]
    pub next_hop_as: u32,
    #[prost(uint32, tag = "16")]
    pub src_net: u32,
    #[prost(uint32, tag = "17")]
    pub dst_net: u32,
    #[prost(bytes = "vec", tag = "100")]
    pub bgp_next_hop: Vec<u8>,
    #[prost(uint32, repeated, tag = "101")]
    pub bgp_communities: Vec<u32>,
    #[prost(uint32, repeated, tag = "102")]
    pub as_path: Vec<u32>,
    #[prost(uint32, tag = "70")]
    pub observation_domain_id: u32,
    #[prost(uint32, tag = "71")]
    pub observation_point_id: u32,
    #[prost(string, tag = "107")]
    pub protocol_name: String,
}

/// `FlowMessage.FlowType`.
pub fn flow_source(kind: i32) -> &'static str {
    match kind {
        1 => "sFlow v5",
        2 => "NetFlow v5",
        3 => "NetFlow v9",
        4 => "IPFIX",
        _ => "Unknown",
    }
}

/// `flowpb.FlowAttribution`: the process behind a flow (netprobe).
#[derive(Clone, PartialEq, prost::Message)]
pub struct FlowAttribution {
    #[prost(uint32, tag = "1")]
    pub pid: u32,
    #[prost(string, tag = "2")]
    pub comm: String,
    /// The command line as the joiner publishes it (already redacted by netprobe).
    #[prost(string, tag = "3")]
    pub cmdline: String,
    #[prost(uint32, tag = "4")]
    pub uid: u32,
    #[prost(string, tag = "5")]
    pub container_id: String,
}

/// `flowpb.AttributedFlowMessage`, published on `flow.attributed.<partition>`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AttributedFlowMessage {
    /// Must be `attributed_flow`.
    #[prost(string, tag = "1")]
    pub event_type: String,
    #[prost(message, optional, tag = "2")]
    pub flow: Option<FlowMessage>,
    #[prost(message, optional, tag = "3")]
    pub attribution: Option<FlowAttribution>,
    #[prost(string, tag = "4")]
    pub agent_id: String,
    #[prost(string, tag = "5")]
    pub partition: String,
}
