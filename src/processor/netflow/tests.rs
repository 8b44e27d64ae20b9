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
    decode_on("flows.raw.netflow", payload)
}

fn decode_on(subject: &str, payload: &[u8]) -> Result<Vec<FlowRow>, DecodeError> {
    let msg = Incoming {
        subject,
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
    assert_eq!(
        (r.bytes_total, r.packets_total, r.bytes_in, r.bytes_out),
        (1_500_000, 1000, Some(900_000), Some(600_000))
    );
    assert_eq!((r.packets_in, r.packets_out), (Some(600), Some(400)));
    assert_eq!((r.sampling_rate, &*r.partition), (1, "default"), "unsampled unless the exporter says");
    assert_eq!(r.sampler_address.as_deref(), Some("10.1.0.1"));
    let p: Value = serde_json::from_str(&r.ocsf_payload).unwrap();
    assert_eq!(p["message"], "TCP traffic: 10.1.0.100:49876 -> 198.51.100.50:443 (1000 pkts, 1.5 MB)");
    assert_eq!(p["flow_source"], "NetFlow v9");
    assert_eq!(p["connection_info"], serde_json::json!({"protocol_name": "TCP", "input_snmp": 10, "output_snmp": 20}));
    assert_eq!(p["src_endpoint"], serde_json::json!({"ip": "10.1.0.100", "port": 49876}));
    assert_eq!(p["traffic"], serde_json::json!({"bytes": 1_500_000, "packets": 1000, "sampling_rate": 1}));
    assert_eq!(p["unmapped"], serde_json::json!({"ip_tos": null, "src_as": 64512, "dst_as": 64515}));
    assert_eq!(p["metadata"]["product"]["name"], "FlowCollector");
    assert_eq!(p["metadata"]["correlation_uid"], "flows.raw.netflow");
    assert_eq!((p["class_uid"].as_i64(), p["protocol_num"].as_i64()), (Some(4001), Some(6)));
}

#[test]
fn the_traffic_message_formats_bytes_as_serviceradar_does() {
    let message = |bytes: u64| {
        let f = FlowMessage { bytes, packets: 2, proto: 17, src_addr: vec![10, 0, 0, 1], ..Default::default() };
        let r = &decode(&f.encode_to_vec()).unwrap()[0];
        serde_json::from_str::<Value>(&r.ocsf_payload).unwrap()["message"].as_str().unwrap().to_owned()
    };
    assert_eq!(message(42), "UDP traffic: 10.0.0.1 ->  (2 pkts, 42 B)", "no port, no address: as written there");
    assert_eq!(message(1000), "UDP traffic: 10.0.0.1 ->  (2 pkts, 1.0 KB)");
    assert_eq!(message(1_234_567), "UDP traffic: 10.0.0.1 ->  (2 pkts, 1.23 MB)");
    assert_eq!(message(1_005_000), "UDP traffic: 10.0.0.1 ->  (2 pkts, 1.0 MB)", "half-up on the exact value");
    assert_eq!(message(1_125_000), "UDP traffic: 10.0.0.1 ->  (2 pkts, 1.13 MB)");
    assert_eq!(message(2_500_000_000), "UDP traffic: 10.0.0.1 ->  (2 pkts, 2.5 GB)");
}

#[test]
fn sampling_and_unknown_directions() {
    let f = FlowMessage { sampling_rate: 512, bytes: 10, ..sample_17() };
    let f = FlowMessage { bytes_in: 0, packets_out: 0, ..f };
    let r = &decode(&f.encode_to_vec()).unwrap()[0];
    assert_eq!(r.sampling_rate, 512);
    assert_eq!((r.bytes_in, r.packets_out), (None, None), "not reported is NULL, not 0");
    assert_eq!((r.bytes_out, r.packets_in), (Some(600_000), Some(600)));
}

#[test]
fn attributed_flows_carry_their_partition_and_process() {
    use crate::processor::proto::flow::{AttributedFlowMessage, FlowAttribution};
    let m = AttributedFlowMessage {
        event_type: "attributed_flow".into(),
        flow: Some(sample_17()),
        attribution: Some(FlowAttribution {
            pid: 4242,
            comm: "a-very-long-process-name".into(),
            cmdline: "/usr/bin/curl [redacted 2 arg(s)]".into(),
            uid: 0,
            container_id: String::new(),
        }),
        agent_id: "agent-7".into(),
        partition: "body-partition".into(),
    };
    let r = &decode_on("flow.attributed.site-a", &m.encode_to_vec()).unwrap()[0];
    assert_eq!(&*r.partition, "site-a", "the subject's partition wins");
    let p: Value = serde_json::from_str(&r.ocsf_payload).unwrap();
    assert_eq!(p["event_type"], "attributed_flow");
    assert_eq!((p["agent_id"].as_str(), p["partition"].as_str()), (Some("agent-7"), Some("site-a")));
    assert_eq!(
        p["attribution"],
        serde_json::json!({"pid": 4242, "comm": "a-very-long-proc", "redacted_cmdline": "/usr/bin/curl [redacted 2 arg(s)]"})
    );
    assert_eq!(r.bytes_total, 1_500_000, "the flow's own columns");
    // On another subject it is still an attributed flow; without a partition anywhere, "default".
    let m = AttributedFlowMessage { partition: String::new(), ..m };
    assert_eq!(&*decode_on("flows.raw.netflow", &m.encode_to_vec()).unwrap()[0].partition, "default");
    let m = AttributedFlowMessage { event_type: "other".into(), ..m };
    let e = decode_on("flow.attributed.x", &m.encode_to_vec()).unwrap_err();
    assert!(e.message.contains("attributed_flow"), "{e}");
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
    let f2 = FlowMessage { src_mac: 0x0011_22aa_bbcc, ..f.clone() };
    assert_eq!(decode(&f2.encode_to_vec()).unwrap()[0].src_mac.as_deref(), Some("00:11:22:AA:BB:CC"));
    assert_eq!((r.src_port, r.src_as, r.dst_ip.as_deref()), (None, None, None));
    assert_eq!(r.protocol_name.as_deref(), Some("UDP"), "OCSF's name for the number");
    assert_eq!(ip_text(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1]).as_deref(), Some("::ffff:192.0.2.1"));
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
