//! Flows (reference §3.6): `flowpb.FlowMessage` protobuf (and the legacy JSON shape) → `ocsf_network_activity`
//! with the Elixir `Flows` mapping.
//!
//! `ocsf_network_activity` has no key in ServiceRadar's schema, so idempotency comes from the ledger: the
//! message's identity (its JetStream stream's incarnation, see [`crate::ledger`], and stream sequence) is inserted
//! into `db_event_writer_ledger` in the same statement and transaction as the rows, and rows are inserted only
//! for messages that were not there yet. A redelivered (or replayed) message inserts nothing; two instances
//! writing the same message serialize on the ledger's primary key.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use prost::Message as _;
use serde_json::{Value, json};

use super::json::clean_text;
use super::logs::nanos;
use super::proto::flow::{FlowMessage, flow_source};
use super::{BatchDefaults, DecodeError, Incoming, Processor, RowSize, Rows};
use crate::sql::qualified;

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
    /// Bytes in.
    pub bytes_in: i64,
    /// Bytes out.
    pub bytes_out: i64,
    /// Packets in.
    pub packets_in: i64,
    /// Packets out.
    pub packets_out: i64,
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
        120 + self.stream.len()
            + opt(&self.src_ip)
            + opt(&self.dst_ip)
            + opt(&self.protocol_name)
            + opt(&self.sampler_address)
            + opt(&self.src_mac)
            + opt(&self.dst_mac)
            + self.ocsf_payload.len()
    }
}

/// The netflow processor.
#[derive(Debug, Clone)]
pub struct Netflow {
    insert_sql: String,
}

impl Netflow {
    /// 1,000 rows (sized by the benchmark, as telemetry), flushed after 500 ms as the design this replaces.
    pub const BATCH_DEFAULTS: BatchDefaults = BatchDefaults { size: 1000, timeout: Duration::from_millis(500) };
    /// The table written.
    pub const TABLE: &str = "ocsf_network_activity";

    /// A processor writing to `schema`.
    pub fn new(schema: &str) -> Self {
        let table = qualified(schema, Self::TABLE);
        let ledger = qualified(schema, "db_event_writer_ledger");
        let insert_sql = format!(
            "WITH fresh AS ( \
               INSERT INTO {ledger} (jetstream, table_name, sequence) \
               SELECT DISTINCT l.js, '{}', l.seq FROM unnest($1::text[], $2::int8[]) AS l(js, seq) \
               ON CONFLICT DO NOTHING RETURNING jetstream, sequence) \
             INSERT INTO {table} (time, start_time, end_time, src_endpoint_ip, src_endpoint_port, src_as_number, \
               dst_endpoint_ip, dst_endpoint_port, dst_as_number, protocol_num, protocol_name, tcp_flags, bytes_total, \
               packets_total, bytes_in, bytes_out, packets_in, packets_out, sampler_address, src_mac, dst_mac, \
               ocsf_payload, partition) \
             SELECT t.time, t.st, t.et, t.sip, t.sp, t.sas, t.dip, t.dp, t.das, t.pn, t.pname, t.tf, t.bt, t.pt, \
               t.bi, t.bo, t.pi, t.po, t.sa, t.smac, t.dmac, t.payload::jsonb, 'default' \
             FROM unnest($1::text[], $2::int8[], $3::timestamptz[], $4::timestamptz[], $5::timestamptz[], $6::text[], $7::int4[], \
               $8::int4[], $9::text[], $10::int4[], $11::int4[], $12::int4[], $13::text[], $14::int4[], $15::int8[], \
               $16::int8[], $17::int8[], $18::int8[], $19::int8[], $20::int8[], $21::text[], $22::text[], $23::text[], \
               $24::text[]) \
             AS t(js, seq, time, st, et, sip, sp, sas, dip, dp, das, pn, pname, tf, bt, pt, bi, bo, pi, po, sa, smac, \
               dmac, payload) \
             WHERE (t.js, t.seq) IN (SELECT jetstream, sequence FROM fresh)",
            Self::TABLE
        );
        Netflow { insert_sql }
    }
}

impl Processor for Netflow {
    type Row = FlowRow;

    fn decode(&self, msg: &Incoming<'_>, rows: &mut Rows<'_, FlowRow>) -> Result<(), DecodeError> {
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

    async fn write(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        rows: &[FlowRow],
    ) -> Result<u64, tokio_postgres::Error> {
        let stmt = tx.prepare_cached(&self.insert_sql).await?;
        let opt_t = |f: fn(&FlowRow) -> Option<&str>| rows.iter().map(f).collect::<Vec<_>>();
        let opt_i = |f: fn(&FlowRow) -> Option<i32>| rows.iter().map(f).collect::<Vec<_>>();
        let big = |f: fn(&FlowRow) -> i64| rows.iter().map(f).collect::<Vec<_>>();
        let opt_time = |f: fn(&FlowRow) -> Option<DateTime<Utc>>| rows.iter().map(f).collect::<Vec<_>>();
        let times: Vec<DateTime<Utc>> = rows.iter().map(|r| r.time).collect();
        let payload: Vec<&str> = rows.iter().map(|r| r.ocsf_payload.as_str()).collect();
        tx.execute(
            &stmt,
            &[
                &rows.iter().map(|r| &*r.stream).collect::<Vec<&str>>(),
                &big(|r| r.sequence),
                &times,
                &opt_time(|r| r.start_time),
                &opt_time(|r| r.end_time),
                &opt_t(|r| r.src_ip.as_deref()),
                &opt_i(|r| r.src_port),
                &opt_i(|r| r.src_as),
                &opt_t(|r| r.dst_ip.as_deref()),
                &opt_i(|r| r.dst_port),
                &opt_i(|r| r.dst_as),
                &opt_i(|r| r.protocol_num),
                &opt_t(|r| r.protocol_name.as_deref()),
                &opt_i(|r| r.tcp_flags),
                &big(|r| r.bytes_total),
                &big(|r| r.packets_total),
                &big(|r| r.bytes_in),
                &big(|r| r.bytes_out),
                &big(|r| r.packets_in),
                &big(|r| r.packets_out),
                &opt_t(|r| r.sampler_address.as_deref()),
                &opt_t(|r| r.src_mac.as_deref()),
                &opt_t(|r| r.dst_mac.as_deref()),
                &payload,
            ],
        )
        .await
    }
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
        let _ = write!(s, "{byte:02x}");
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
        ocsf_payload: super::json::clean_jsonb(&payload.to_string()).into_owned(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

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
        };
        let mut rows = Vec::new();
        Netflow::new("platform").decode(&msg, &mut Rows::new(&mut rows, crate::processor::Limits::NONE)).map(|()| rows)
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
}
