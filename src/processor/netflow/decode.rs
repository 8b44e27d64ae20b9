//! Flows as ServiceRadar's Elixir writer (the one that stores them) maps them today (reference-today §9.3,
//! §9.4): `flowpb.FlowMessage` protobuf on `flows.raw.*`, `flowpb.AttributedFlowMessage` on
//! `flow.attributed.<partition>` (the process behind the flow, its partition), and the legacy JSON with
//! FlowMessage's field names; each row with its OCSF document.
//!
//! Its columns: zero ports, AS numbers, flags and protocol are NULL; the directional counters NULL when the
//! exporter did not report them; `sampling_rate` 1 when unsampled or unsaid; the protocol named from its number
//! (OCSF's names). The enrichment columns (providers, MAC vendors, services, prefix tags) need ServiceRadar's
//! datasets and stay NULL. Timestamps keep their sub-second part (ServiceRadar's parser cuts it).
//!
//! Uses the flow row, the processor api, the shared JSON and OTLP helpers and the prost messages.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use prost::Message as _;
use serde_json::{Value, json};

use super::row::FlowRow;
use crate::processor::api::{DecodeError, Incoming, Rows};
use crate::processor::otlp::nanos;
use crate::processor::proto::flow::{AttributedFlowMessage, FlowAttribution, FlowMessage, flow_source};

/// Subjects of attributed flows.
const ATTRIBUTED: &str = "flow.attributed.";

/// Appends the rows of one message.
pub fn decode(msg: &Incoming<'_>, rows: &mut Rows<'_, FlowRow>) -> Result<(), DecodeError> {
    let sequence = i64::try_from(msg.sequence).map_err(|_| DecodeError::new("stream sequence out of range"))?;
    let stream: Arc<str> = Arc::from(msg.stream);
    let default: Arc<str> = Arc::from("default");
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
                rows.push(flow_row(&flow, &stream, sequence, msg, &default, None))?;
            }
        }
        Some(_) if msg.subject.starts_with(ATTRIBUTED) => {
            let m = AttributedFlowMessage::decode(msg.payload)
                .map_err(|e| DecodeError::new(format!("not a flowpb.AttributedFlowMessage: {e}")))?;
            rows.push(attributed_row(&m, &stream, sequence, msg)?)?;
        }
        Some(_) => {
            // An attributed flow on another subject is taken as one (ServiceRadar tries it first).
            if let Ok(m) = AttributedFlowMessage::decode(msg.payload)
                && m.event_type == "attributed_flow"
                && m.flow.is_some()
            {
                return rows.push(attributed_row(&m, &stream, sequence, msg)?);
            }
            let flow = FlowMessage::decode(msg.payload)
                .map_err(|e| DecodeError::new(format!("not a flowpb.FlowMessage: {e}")))?;
            rows.push(flow_row(&flow, &stream, sequence, msg, &default, None))?;
        }
    }
    Ok(())
}

/// The row of an attributed flow: the flow's, in its partition, its document telling whose traffic it was.
fn attributed_row(
    m: &AttributedFlowMessage,
    stream: &Arc<str>,
    sequence: i64,
    msg: &Incoming<'_>,
) -> Result<FlowRow, DecodeError> {
    if m.event_type != "attributed_flow" {
        return Err(DecodeError::new(format!("event_type {:?} is not \"attributed_flow\"", m.event_type)));
    }
    let flow = m.flow.as_ref().ok_or_else(|| DecodeError::new("flow: required and missing"))?;
    // The subject's partition wins over the body's (ServiceRadar logs a mismatch and trusts the subject).
    let from_subject =
        msg.subject.strip_prefix(ATTRIBUTED).and_then(|rest| rest.split('.').next()).filter(|p| !p.is_empty());
    let partition: Arc<str> =
        Arc::from(from_subject.or((!m.partition.is_empty()).then_some(m.partition.as_str())).unwrap_or("default"));
    let mut extra = serde_json::Map::new();
    extra.insert("event_type".into(), json!("attributed_flow"));
    if !m.agent_id.is_empty() {
        extra.insert("agent_id".into(), json!(m.agent_id));
    }
    extra.insert("partition".into(), json!(&*partition));
    if let Some(a) = m.attribution.as_ref().and_then(attribution) {
        extra.insert("attribution".into(), a);
    }
    Ok(flow_row(flow, stream, sequence, msg, &partition, Some(extra)))
}

/// The attribution document: only what is present, text capped in bytes on a character boundary (comm 16,
/// command line 256, container id 64, as the contract says).
fn attribution(a: &FlowAttribution) -> Option<Value> {
    let cap = |s: &str, max: usize| {
        let mut end = s.len().min(max);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s[..end].to_owned()
    };
    let mut out = serde_json::Map::new();
    if a.pid != 0 {
        out.insert("pid".into(), json!(a.pid));
    }
    if !a.comm.is_empty() {
        out.insert("comm".into(), json!(cap(&a.comm, 16)));
    }
    if !a.cmdline.is_empty() {
        out.insert("redacted_cmdline".into(), json!(cap(&a.cmdline, 256)));
    }
    if a.uid != 0 {
        out.insert("uid".into(), json!(a.uid));
    }
    if !a.container_id.is_empty() {
        out.insert("container_id".into(), json!(cap(&a.container_id, 64)));
    }
    (!out.is_empty()).then_some(Value::Object(out))
}

/// 4 or 16 raw bytes as an address; anything else is no address.
pub fn ip_text(bytes: &[u8]) -> Option<String> {
    match bytes.len() {
        4 => Some(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]).to_string()),
        16 => {
            let octets: [u8; 16] = bytes.try_into().ok()?;
            // Compressed, lower-case; IPv4-mapped as ::ffff:a.b.c.d (Erlang's inet:ntoa writes them so too).
            Some(Ipv6Addr::from(octets).to_string())
        }
        _ => None,
    }
}

/// A MAC held in the low 48 bits, upper-case pairs as ServiceRadar writes them (`~2.16.0B`); 0 is none.
pub fn mac_text(mac: u64) -> Option<String> {
    if mac == 0 {
        return None;
    }
    let b = mac.to_be_bytes();
    let pairs: Vec<String> = b[2..].iter().map(|byte| format!("{byte:02X}")).collect();
    Some(pairs.join(":"))
}

/// OCSF's protocol names (ServiceRadar's `OCSF.protocol_name`); `Unknown` for the rest.
pub fn protocol_name(num: u32) -> &'static str {
    match num {
        1 => "ICMP",
        6 => "TCP",
        17 => "UDP",
        47 => "GRE",
        50 => "ESP",
        51 => "AH",
        58 => "ICMPv6",
        89 => "OSPF",
        132 => "SCTP",
        _ => "Unknown",
    }
}

/// Elixir's `to_string` of a float: the shortest text that reads back, always with a fraction (`1.0`, `1.5`).
fn elixir_float(f: f64) -> String {
    let s = format!("{f}");
    if s.contains('.') || s.contains('e') || s.contains("inf") || s.contains("NaN") { s } else { format!("{s}.0") }
}

/// `Float.round(n / unit, 2)`: half up on the exact value of the quotient, two decimals.
fn round2(n: u64, unit: f64) -> f64 {
    let q = n as f64 / unit;
    // The exact decimal expansion of q (a double this size has at most ~55 fractional digits).
    let exact = format!("{q:.60}");
    let (int, frac) = exact.split_once('.').unwrap_or((&exact, ""));
    let mut two: u64 = format!("{int}{}", &frac[..2]).parse().unwrap_or(0);
    if frac.as_bytes().get(2).is_some_and(|d| *d >= b'5') {
        two += 1;
    }
    two as f64 / 100.0
}

/// ServiceRadar's `format_bytes`: `1.5 MB`, `42 B`, decimal units.
fn format_bytes(n: u64) -> String {
    if n >= 1_000_000_000 {
        format!("{} GB", elixir_float(round2(n, 1e9)))
    } else if n >= 1_000_000 {
        format!("{} MB", elixir_float(round2(n, 1e6)))
    } else if n >= 1_000 {
        format!("{} KB", elixir_float(round2(n, 1e3)))
    } else {
        format!("{n} B")
    }
}

fn nonzero(v: u32) -> Option<i32> {
    if v == 0 { None } else { i32::try_from(v).ok() }
}

fn count(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn unknown_if_zero(v: u64) -> Option<i64> {
    (v != 0).then(|| count(v))
}

fn flow_row(
    f: &FlowMessage,
    stream: &Arc<str>,
    sequence: i64,
    msg: &Incoming<'_>,
    partition: &Arc<str>,
    extra: Option<serde_json::Map<String, Value>>,
) -> FlowRow {
    let time = [f.time_flow_end_ns, f.time_received_ns, f.time_flow_start_ns]
        .into_iter()
        .find_map(nanos)
        .unwrap_or(msg.published);
    let src_ip = ip_text(&f.src_addr);
    let dst_ip = ip_text(&f.dst_addr);
    let name = protocol_name(f.proto);
    let sampler = ip_text(&f.sampler_address);
    let sampling_rate = if f.sampling_rate > 0 { count(f.sampling_rate) } else { 1 };
    let zero_null = |v: u32| if v == 0 { Value::Null } else { json!(v) };
    let show = |ip: &Option<String>, port: u32| {
        let ip = ip.as_deref().unwrap_or("");
        if port == 0 { ip.to_owned() } else { format!("{ip}:{port}") }
    };
    let mut payload = json!({
        "class_uid": 4001, "category_uid": 4, "activity_id": 6, "type_uid": 400106, "severity_id": 1,
        "message": format!(
            "{name} traffic: {} -> {} ({} pkts, {})",
            show(&src_ip, f.src_port), show(&dst_ip, f.dst_port), f.packets, format_bytes(f.bytes)
        ),
        "src_endpoint": {"ip": src_ip, "port": zero_null(f.src_port)},
        "dst_endpoint": {"ip": dst_ip, "port": zero_null(f.dst_port)},
        "traffic": {"bytes": f.bytes, "packets": f.packets, "sampling_rate": sampling_rate},
        "connection_info": {
            "protocol_name": name, "input_snmp": zero_null(f.in_if), "output_snmp": zero_null(f.out_if),
        },
        "protocol_name": name,
        "protocol_num": zero_null(f.proto),
        "flow_source": flow_source(f.r#type),
        "enrichment": {
            "protocol_source": null, "tcp_flags_labels": null, "dst_service_label": null, "direction_label": null,
            "src_hosting_provider": null, "dst_hosting_provider": null, "src_mac_vendor": null,
            "dst_mac_vendor": null,
        },
        "metadata": {
            "version": "1.7.0",
            "product": {"vendor_name": "ServiceRadar", "name": "FlowCollector", "version": "1.0.0"},
            "logged_time": msg.published.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "correlation_uid": msg.subject,
        },
        "sampler_address": sampler,
        "unmapped": {"ip_tos": zero_null(f.ip_tos), "src_as": zero_null(f.src_as), "dst_as": zero_null(f.dst_as)},
    });
    if let (Some(extra), Value::Object(p)) = (extra, &mut payload) {
        p.extend(extra);
    }
    FlowRow {
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
        protocol_name: Some(name.to_owned()),
        tcp_flags: nonzero(f.tcp_flags),
        bytes_total: count(f.bytes),
        packets_total: count(f.packets),
        bytes_in: unknown_if_zero(f.bytes_in),
        bytes_out: unknown_if_zero(f.bytes_out),
        packets_in: unknown_if_zero(f.packets_in),
        packets_out: unknown_if_zero(f.packets_out),
        sampling_rate,
        partition: Arc::clone(partition),
        sampler_address: sampler,
        src_mac: mac_text(f.src_mac),
        dst_mac: mac_text(f.dst_mac),
        src_ip,
        dst_ip,
        ocsf_payload: crate::processor::json::clean_jsonb(&payload.to_string()).into_owned(),
    }
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
