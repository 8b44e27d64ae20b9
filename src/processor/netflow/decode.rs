//! Flows as `flowpb.FlowMessage` protobuf (and the legacy JSON with the same field names) with the Elixir
//! `Flows` mapping, and the OCSF document each row carries.
//!
//! Uses the flow row, the processor api, the shared JSON and OTLP helpers and the prost messages.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use prost::Message as _;
use serde_json::{Value, json};

use super::row::FlowRow;
use crate::processor::api::{DecodeError, Incoming, Rows};
use crate::processor::json::clean_text;
use crate::processor::otlp::nanos;
use crate::processor::proto::flow::{FlowMessage, flow_source};

/// Appends the rows of one message.
pub fn decode(msg: &Incoming<'_>, rows: &mut Rows<'_, FlowRow>) -> Result<(), DecodeError> {
    let sequence = i64::try_from(msg.sequence).map_err(|_| DecodeError::new("stream sequence out of range"))?;
    let stream: Arc<str> = Arc::from(msg.stream);
    match msg.payload.iter().find(|b| !b.is_ascii_whitespace()) {
        None => return Err(DecodeError::new("empty payload")),
        Some(b'{' | b'[') => {
            let value: Value =
                serde_json::from_slice(msg.payload).map_err(|e| DecodeError::new(format!("bad JSON: {e}")))?;
            let items = match value {
                Value::Array(items) => items,
                other => vec![other],
            };
            for (i, item) in items.iter().enumerate() {
                let flow = flow_from_json(item).map_err(|e| e.prefixed(format_args!("[{i}]: ")))?;
                rows.push(flow_row(&flow, &stream, sequence, msg)?)?;
            }
        }
        Some(_) => {
            let flow = FlowMessage::decode(msg.payload)
                .map_err(|e| DecodeError::new(format!("not a flowpb.FlowMessage: {e}")))?;
            rows.push(flow_row(&flow, &stream, sequence, msg)?)?;
        }
    }
    Ok(())
}

/// 4 or 16 raw bytes as an address; anything else is no address.
pub fn ip_text(bytes: &[u8]) -> Option<String> {
    match bytes.len() {
        4 => Some(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]).to_string()),
        16 => {
            let octets: [u8; 16] = bytes.try_into().ok()?;
            let v6 = Ipv6Addr::from(octets);
            // IPv4-mapped addresses read as IPv4.
            Some(v6.to_ipv4_mapped().map_or_else(|| v6.to_string(), |v4| v4.to_string()))
        }
        _ => None,
    }
}

/// A MAC held in the low 48 bits; 0 is none.
pub fn mac_text(mac: u64) -> Option<String> {
    if mac == 0 {
        return None;
    }
    let b = mac.to_be_bytes();
    let mut s = String::with_capacity(17);
    for (i, byte) in b[2..].iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        crate::hex::push(&mut s, std::slice::from_ref(byte));
    }
    Some(s)
}

/// IANA protocol names for the common numbers.
pub fn protocol_name(num: u32) -> Option<&'static str> {
    Some(match num {
        1 => "ICMP",
        2 => "IGMP",
        6 => "TCP",
        17 => "UDP",
        41 => "IPv6",
        47 => "GRE",
        50 => "ESP",
        51 => "AH",
        58 => "ICMPv6",
        89 => "OSPF",
        132 => "SCTP",
        _ => return None,
    })
}

fn nonzero(v: u32) -> Option<i32> {
    if v == 0 { None } else { i32::try_from(v).ok() }
}

fn count(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn flow_row(f: &FlowMessage, stream: &Arc<str>, sequence: i64, msg: &Incoming<'_>) -> Result<FlowRow, DecodeError> {
    let time = [f.time_flow_end_ns, f.time_received_ns, f.time_flow_start_ns]
        .into_iter()
        .find_map(nanos)
        .unwrap_or(msg.published);
    let src_ip = ip_text(&f.src_addr);
    let dst_ip = ip_text(&f.dst_addr);
    let name = if f.protocol_name.is_empty() {
        protocol_name(f.proto).map(str::to_owned)
    } else {
        let mut name = f.protocol_name.clone();
        clean_text(&mut name);
        Some(name)
    };
    let sampler = ip_text(&f.sampler_address);
    let endpoint = |ip: &Option<String>, port: u32, asn: u32, mac: u64| {
        let mut e = serde_json::Map::new();
        if let Some(ip) = ip {
            e.insert("ip".into(), json!(ip));
        }
        if port != 0 {
            e.insert("port".into(), json!(port));
        }
        if asn != 0 {
            e.insert("autonomous_system".into(), json!({"number": asn}));
        }
        if let Some(mac) = mac_text(mac) {
            e.insert("mac".into(), json!(mac));
        }
        Value::Object(e)
    };
    let show = |ip: &Option<String>, port: u32| match (ip, port) {
        (Some(ip), 0) => ip.clone(),
        (Some(ip), p) => format!("{ip}:{p}"),
        (None, _) => "?".to_owned(),
    };
    let payload = json!({
        "class_uid": 4001, "category_uid": 4, "activity_id": 6, "type_uid": 400106, "severity_id": 1,
        "time": time.timestamp_millis(),
        "message": format!(
            "{} traffic: {} -> {} ({} pkts, {} B)",
            name.as_deref().unwrap_or("IP"), show(&src_ip, f.src_port), show(&dst_ip, f.dst_port), f.packets, f.bytes
        ),
        "src_endpoint": endpoint(&src_ip, f.src_port, f.src_as, f.src_mac),
        "dst_endpoint": endpoint(&dst_ip, f.dst_port, f.dst_as, f.dst_mac),
        "traffic": {
            "bytes": f.bytes, "packets": f.packets, "bytes_in": f.bytes_in, "bytes_out": f.bytes_out,
            "packets_in": f.packets_in, "packets_out": f.packets_out,
        },
        "connection_info": {
            "protocol_num": f.proto, "protocol_name": name, "tcp_flags": f.tcp_flags,
            "input_snmp": f.in_if, "output_snmp": f.out_if,
        },
        "flow_source": flow_source(f.r#type),
        "sampler_address": sampler,
        "metadata": {"product": {"name": "db-event-writer"}, "version": "1.7.0"},
        "unmapped": {
            "sampling_rate": f.sampling_rate, "sequence_num": f.sequence_num, "etype": f.etype,
            "src_vlan": f.src_vlan, "dst_vlan": f.dst_vlan, "ip_tos": f.ip_tos, "as_path": f.as_path,
            "next_hop": ip_text(&f.next_hop), "observation_domain_id": f.observation_domain_id,
        },
    });
    Ok(FlowRow {
        stream: Arc::clone(stream),
        sequence,
        time,
        start_time: nanos(f.time_flow_start_ns),
        end_time: nanos(f.time_flow_end_ns),
        src_port: nonzero(f.src_port),
        src_as: nonzero(f.src_as),
        dst_port: nonzero(f.dst_port),
        dst_as: nonzero(f.dst_as),
        protocol_num: nonzero(f.proto),
        protocol_name: name,
        tcp_flags: nonzero(f.tcp_flags),
        bytes_total: count(f.bytes),
        packets_total: count(f.packets),
        bytes_in: count(f.bytes_in),
        bytes_out: count(f.bytes_out),
        packets_in: count(f.packets_in),
        packets_out: count(f.packets_out),
        sampler_address: sampler,
        src_mac: mac_text(f.src_mac),
        dst_mac: mac_text(f.dst_mac),
        src_ip,
        dst_ip,
        ocsf_payload: crate::processor::json::clean_jsonb(&payload.to_string()).into_owned(),
    })
}

/// The legacy JSON shape: FlowMessage's field names, addresses as text, `type` as a name or number.
fn flow_from_json(v: &Value) -> Result<FlowMessage, DecodeError> {
    let map = v.as_object().ok_or_else(|| DecodeError::new("a flow must be a JSON object"))?;
    let u = |key: &str| -> Result<u64, DecodeError> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(0),
            Some(Value::Number(n)) => {
                n.as_u64().ok_or_else(|| DecodeError::new(format!("{key}: not an unsigned integer")))
            }
            Some(Value::String(s)) => {
                s.trim().parse().map_err(|_| DecodeError::new(format!("{key}: not an unsigned integer")))
            }
            Some(_) => Err(DecodeError::new(format!("{key}: not an unsigned integer"))),
        }
    };
    let u32_of = |key: &str| -> Result<u32, DecodeError> {
        u32::try_from(u(key)?).map_err(|_| DecodeError::new(format!("{key}: out of range")))
    };
    let addr = |key: &str| -> Result<Vec<u8>, DecodeError> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::String(s)) if s.is_empty() => Ok(Vec::new()),
            Some(Value::String(s)) => match s.parse::<std::net::IpAddr>() {
                Ok(std::net::IpAddr::V4(a)) => Ok(a.octets().to_vec()),
                Ok(std::net::IpAddr::V6(a)) => Ok(a.octets().to_vec()),
                Err(_) => Err(DecodeError::new(format!("{key}: {s:?} is not an IP address"))),
            },
            Some(_) => Err(DecodeError::new(format!("{key}: must be an IP address string"))),
        }
    };
    let kind = match map.get("type") {
        Some(Value::String(s)) => match s.as_str() {
            "SFLOW_5" => 1,
            "NETFLOW_V5" => 2,
            "NETFLOW_V9" => 3,
            "IPFIX" => 4,
            _ => 0,
        },
        Some(Value::Number(n)) => n.as_i64().and_then(|n| i32::try_from(n).ok()).unwrap_or(0),
        _ => 0,
    };
    Ok(FlowMessage {
        r#type: kind,
        time_received_ns: u("time_received_ns")?,
        time_flow_start_ns: u("time_flow_start_ns")?,
        time_flow_end_ns: u("time_flow_end_ns")?,
        sampler_address: addr("sampler_address")?,
        src_addr: addr("src_addr")?,
        dst_addr: addr("dst_addr")?,
        src_port: u32_of("src_port")?,
        dst_port: u32_of("dst_port")?,
        proto: u32_of("proto")?,
        bytes: u("bytes")?,
        packets: u("packets")?,
        bytes_in: u("bytes_in")?,
        bytes_out: u("bytes_out")?,
        packets_in: u("packets_in")?,
        packets_out: u("packets_out")?,
        in_if: u32_of("in_if")?,
        out_if: u32_of("out_if")?,
        src_as: u32_of("src_as")?,
        dst_as: u32_of("dst_as")?,
        tcp_flags: u32_of("tcp_flags")?,
        src_mac: u("src_mac")?,
        dst_mac: u("dst_mac")?,
        sampling_rate: u("sampling_rate")?,
        sequence_num: u32_of("sequence_num")?,
        protocol_name: map.get("protocol_name").and_then(Value::as_str).unwrap_or("").to_owned(),
        ..Default::default()
    })
}
