//! Flow decoding: sample 17 and its sflow sibling, addresses, MACs, protocol names, the OCSF document, refusals.

use chrono::{TimeZone, Utc};
use prost::Message as _;

use super::decode::ip_text;
use super::*;
use crate::processor::api::{DecodeError, Incoming, Processor, Rows};
use crate::processor::proto::flow::FlowMessage;
use serde_json::Value;

/// Reference sample 17 as a protobuf.
pub fn sample_17() -> FlowMessage {
    FlowMessage {
        r#type: 3,
        time_received_ns: 1_705_363_200_000_000_000,
        time_flow_start_ns: 1_705_363_100_000_000_000,
        time_flow_end_ns: 1_705_363_210_000_000_000,
        sampler_address: vec![10, 1, 0, 1],
        src_addr: vec![10, 1, 0, 100],
        dst_addr: vec![198, 51, 100, 50],
        src_port: 49876,
        dst_port: 443,
        proto: 6,
        bytes: 1_500_000,
        packets: 1000,
        bytes_in: 900_000,
        bytes_out: 600_000,
        packets_in: 600,
        packets_out: 400,
        in_if: 10,
        out_if: 20,
        src_as: 64512,
        dst_as: 64515,
        tcp_flags: 18,
        protocol_name: "TCP".into(),
        ..Default::default()
    }
}

fn decode(payload: &[u8]) -> Result<Vec<FlowRow>, DecodeError> {
    let msg = Incoming {
        subject: "flows.raw.netflow",
        payload,
        published: Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap(),
        stream: "events",
        sequence: 9,
        headers: crate::processor::api::Headers::NONE,
        reply: "",
    };
    let mut rows = Vec::new();
    Netflow::new(&crate::config::DatabaseConfig::for_schema("platform"))
        .decode(&msg, &mut Rows::new(&mut rows, crate::processor::api::Limits::NONE))
        .map(|()| rows)
}

#[test]
fn sample_17_maps_like_the_elixir_processor() {
    let r = &decode(&sample_17().encode_to_vec()).unwrap()[0];
    assert_eq!(r.sequence, 9);
    assert_eq!(r.time, Utc.timestamp_opt(1_705_363_210, 0).unwrap(), "time: the flow's end");
    assert_eq!(r.start_time, Some(Utc.timestamp_opt(1_705_363_100, 0).unwrap()));
    assert_eq!((r.src_ip.as_deref(), r.src_port, r.src_as), (Some("10.1.0.100"), Some(49876), Some(64512)));
    assert_eq!((r.dst_ip.as_deref(), r.dst_port, r.dst_as), (Some("198.51.100.50"), Some(443), Some(64515)));
    assert_eq!((r.protocol_num, r.protocol_name.as_deref(), r.tcp_flags), (Some(6), Some("TCP"), Some(18)));
    assert_eq!((r.bytes_total, r.packets_total, r.bytes_in, r.bytes_out), (1_500_000, 1000, 900_000, 600_000));
    assert_eq!((r.packets_in, r.packets_out), (600, 400));
    assert_eq!(r.sampler_address.as_deref(), Some("10.1.0.1"));
    let p: Value = serde_json::from_str(&r.ocsf_payload).unwrap();
    assert_eq!(p["message"], "TCP traffic: 10.1.0.100:49876 -> 198.51.100.50:443 (1000 pkts, 1500000 B)");
    assert_eq!(p["flow_source"], "NetFlow v9");
    assert_eq!(p["connection_info"]["input_snmp"], 10);
    assert_eq!(p["connection_info"]["output_snmp"], 20);
    assert_eq!(p["src_endpoint"]["autonomous_system"]["number"], 64512);
    assert_eq!(p["class_uid"], 4001);
}

#[test]
fn zeros_are_nulls_and_addresses_and_macs_render() {
    let f = FlowMessage {
        src_addr: vec![0; 15].into_iter().chain([1]).collect(),
        src_mac: 0x0011_2233_4455,
        proto: 17,
        time_received_ns: 5,
        ..Default::default()
    };
    let r = &decode(&f.encode_to_vec()).unwrap()[0];
    assert_eq!(r.src_ip.as_deref(), Some("::1"));
    assert_eq!(r.src_mac.as_deref(), Some("00:11:22:33:44:55"));
    assert_eq!((r.src_port, r.src_as, r.dst_ip.as_deref()), (None, None, None));
    assert_eq!(r.protocol_name.as_deref(), Some("UDP"), "named from the number when the message has no name");
    assert_eq!(ip_text(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1]).as_deref(), Some("192.0.2.1"));
    assert_eq!(ip_text(&[1, 2, 3]), None);
}

#[test]
fn legacy_json() {
    let rows = decode(
        br#"{"type": "SFLOW_5", "time_received_ns": 1705363200000000000, "src_addr": "10.0.0.1",
             "dst_addr": "2001:db8::1", "src_port": 1234, "dst_port": 53, "proto": 17, "bytes": 80, "packets": 1}"#,
    )
    .unwrap();
    let r = &rows[0];
    assert_eq!((r.src_ip.as_deref(), r.dst_ip.as_deref()), (Some("10.0.0.1"), Some("2001:db8::1")));
    let p: Value = serde_json::from_str(&r.ocsf_payload).unwrap();
    assert_eq!(p["flow_source"], "sFlow v5");
    assert!(decode(br#"{"src_addr": "not-an-ip"}"#).unwrap_err().message.contains("src_addr"));
    assert!(decode(br#"{"bytes": -1}"#).unwrap_err().message.contains("bytes"));
}

#[test]
fn garbage_is_a_decode_error() {
    assert!(decode(b"").unwrap_err().message.contains("empty"));
    assert!(decode(&[0x0a, 0xff, 0xff]).unwrap_err().message.contains("FlowMessage"));
}
