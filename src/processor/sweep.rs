//! Sweep results (reference §8.4) → `sweep_results`, this project's own table: one row per
//! `(time, host_ip, execution_id, agent_id)`, so a redelivered result is not a second row.
//!
//! Uses the processor api and the shared JSON helpers only.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::processor::api::{BatchDefaults, DatabaseConfig, DecodeError, Incoming, Processor, RowSize, Rows};
use crate::processor::json::{clean_jsonb, each_object, parse_timestamp, trimmed_text};
use crate::sql::qualified;

/// One row of `sweep_results`.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepRow {
    /// When the host was swept (`last_sweep_time`, else the message's JetStream time).
    pub time: DateTime<Utc>,
    /// Swept address.
    pub host_ip: String,
    /// Gateway.
    pub gateway_id: Option<String>,
    /// Agent (`""` when absent: part of the key).
    pub agent_id: String,
    /// Partition.
    pub partition: Option<String>,
    /// Network swept.
    pub network_cidr: Option<String>,
    /// Host name.
    pub hostname: Option<String>,
    /// MAC address.
    pub mac: Option<String>,
    /// ICMP answered.
    pub icmp_available: Option<bool>,
    /// ICMP round trip.
    pub icmp_response_time_ns: Option<i64>,
    /// TCP ports probed.
    pub tcp_ports_scanned: Vec<i32>,
    /// TCP ports open.
    pub tcp_ports_open: Vec<i32>,
    /// Sweep execution (`""` when absent: part of the key).
    pub execution_id: String,
    /// Sweep group.
    pub sweep_group_id: Option<String>,
    /// Configuration hash.
    pub config_hash: Option<String>,
    /// The result as received.
    pub raw: String,
}

impl RowSize for SweepRow {
    fn size(&self) -> usize {
        let opt = |s: &Option<String>| s.as_ref().map_or(0, String::len);
        32 + self.host_ip.len()
            + opt(&self.gateway_id)
            + self.agent_id.len()
            + opt(&self.partition)
            + opt(&self.network_cidr)
            + opt(&self.hostname)
            + opt(&self.mac)
            // As JSON text: up to 6 bytes a port.
            + 6 * (self.tcp_ports_scanned.len() + self.tcp_ports_open.len())
            + self.execution_id.len()
            + opt(&self.sweep_group_id)
            + opt(&self.config_hash)
            + self.raw.len()
    }
}

/// The sweep processor.
#[derive(Debug, Clone)]
pub struct Sweep {
    insert_sql: String,
}

/// The table written.
pub const TABLE: &str = "sweep_results";

impl Processor for Sweep {
    const NAME: &'static str = "sweep";
    const TABLES: &'static [&'static str] = &[TABLE];
    /// 1,000 rows (sized by the benchmark, as telemetry), flushed after 2 s as the design this replaces.
    const BATCH: BatchDefaults = BatchDefaults { size: 1000, timeout: Duration::from_secs(2) };
    /// 30 days, as ServiceRadar keeps its sweep results.
    const RETENTION: &'static [(&'static str, Duration)] = &[(TABLE, Duration::from_secs(30 * 86_400))];

    type Row = SweepRow;

    fn new(database: &DatabaseConfig) -> Self {
        let table = qualified(&database.schema, TABLE);
        // Port lists go as JSON text: unnest would flatten an int[][] parameter.
        let insert_sql = format!(
            "INSERT INTO {table} (time, host_ip, gateway_id, agent_id, partition, network_cidr, hostname, mac, \
             icmp_available, icmp_response_time_ns, tcp_ports_scanned, tcp_ports_open, execution_id, sweep_group_id, \
             config_hash, raw) \
             SELECT t.time, t.ip, t.gw, t.agent, t.part, t.cidr, t.host, t.mac, t.icmp, t.rtt, \
             ARRAY(SELECT jsonb_array_elements_text(t.scanned::jsonb)::int), \
             ARRAY(SELECT jsonb_array_elements_text(t.open::jsonb)::int), t.exec, t.grp, t.hash, t.raw::jsonb \
             FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], \
             $8::text[], $9::bool[], $10::int8[], $11::text[], $12::text[], $13::text[], $14::text[], $15::text[], \
             $16::text[]) \
             AS t(time, ip, gw, agent, part, cidr, host, mac, icmp, rtt, scanned, open, exec, grp, hash, raw) \
             ON CONFLICT (time, host_ip, execution_id, agent_id) DO NOTHING"
        );
        Sweep { insert_sql }
    }

    fn decode(&self, msg: &Incoming<'_>, rows: &mut Rows<'_, SweepRow>) -> Result<(), DecodeError> {
        each_object(msg.payload, "sweep result", |_, map, _| rows.push(sweep_row(map, msg)?))
    }

    async fn write(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        rows: &[SweepRow],
    ) -> Result<u64, tokio_postgres::Error> {
        let stmt = tx.prepare_cached(&self.insert_sql).await?;
        let opt = |f: fn(&SweepRow) -> Option<&str>| rows.iter().map(f).collect::<Vec<Option<&str>>>();
        let text = |f: fn(&SweepRow) -> &str| rows.iter().map(f).collect::<Vec<&str>>();
        let ports = |f: fn(&SweepRow) -> &Vec<i32>| {
            rows.iter().map(|r| Value::from(f(r).clone()).to_string()).collect::<Vec<_>>()
        };
        let times: Vec<DateTime<Utc>> = rows.iter().map(|r| r.time).collect();
        let icmp: Vec<Option<bool>> = rows.iter().map(|r| r.icmp_available).collect();
        let rtt: Vec<Option<i64>> = rows.iter().map(|r| r.icmp_response_time_ns).collect();
        tx.execute(
            &stmt,
            &[
                &times,
                &text(|r| &r.host_ip),
                &opt(|r| r.gateway_id.as_deref()),
                &text(|r| &r.agent_id),
                &opt(|r| r.partition.as_deref()),
                &opt(|r| r.network_cidr.as_deref()),
                &opt(|r| r.hostname.as_deref()),
                &opt(|r| r.mac.as_deref()),
                &icmp,
                &rtt,
                &ports(|r| &r.tcp_ports_scanned),
                &ports(|r| &r.tcp_ports_open),
                &text(|r| &r.execution_id),
                &opt(|r| r.sweep_group_id.as_deref()),
                &opt(|r| r.config_hash.as_deref()),
                &text(|r| &r.raw),
            ],
        )
        .await
    }
}

fn ports_of(map: &Map<String, Value>, keys: &[&str]) -> Result<Vec<i32>, DecodeError> {
    let Some((key, value)) = keys.iter().find_map(|k| map.get(*k).filter(|v| !v.is_null()).map(|v| (*k, v))) else {
        return Ok(Vec::new());
    };
    let bad = || DecodeError::new(format!("{key}: must be an array of port numbers (0-65535)"));
    value
        .as_array()
        .ok_or_else(bad)?
        .iter()
        .map(|p| p.as_u64().filter(|p| *p <= 65_535).map(|p| p as i32).ok_or_else(bad))
        .collect()
}

fn sweep_row(map: &Map<String, Value>, msg: &Incoming<'_>) -> Result<SweepRow, DecodeError> {
    let host_ip = trimmed_text(map, &["host_ip", "hostIp", "ip"])
        .ok_or_else(|| DecodeError::new("host_ip: required and missing (also looked for hostIp, ip)"))?;
    let time = match map.get("last_sweep_time").or_else(|| map.get("lastSweepTime")) {
        Some(v) => {
            let raw = serde_json::value::to_raw_value(v).map_err(|e| DecodeError::new(e.to_string()))?;
            parse_timestamp(&raw)?.unwrap_or(msg.published)
        }
        None => msg.published,
    };
    let icmp_available = match map.get("icmp_available").or_else(|| map.get("icmpAvailable")) {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => return Err(DecodeError::new("icmp_available: must be true or false")),
    };
    let icmp_response_time_ns = match map.get("icmp_response_time_ns").or_else(|| map.get("icmpResponseTimeNs")) {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_i64().ok_or_else(|| DecodeError::new("icmp_response_time_ns: must be an integer"))?),
    };
    let raw = serde_json::to_string(map).unwrap_or_default();
    let raw = match clean_jsonb(&raw) {
        std::borrow::Cow::Owned(clean) => clean,
        std::borrow::Cow::Borrowed(_) => raw,
    };
    Ok(SweepRow {
        time,
        host_ip,
        gateway_id: trimmed_text(map, &["gateway_id", "gatewayId"]),
        agent_id: trimmed_text(map, &["agent_id", "agentId"]).unwrap_or_default(),
        partition: trimmed_text(map, &["partition"]),
        network_cidr: trimmed_text(map, &["network_cidr", "networkCidr"]),
        hostname: trimmed_text(map, &["hostname"]),
        mac: trimmed_text(map, &["mac"]),
        icmp_available,
        icmp_response_time_ns,
        tcp_ports_scanned: ports_of(map, &["tcp_ports_scanned", "tcpPortsScanned"])?,
        tcp_ports_open: ports_of(map, &["tcp_ports_open", "tcpPortsOpen"])?,
        execution_id: trimmed_text(map, &["execution_id", "executionId"]).unwrap_or_default(),
        sweep_group_id: trimmed_text(map, &["sweep_group_id", "sweepGroupId"]),
        config_hash: trimmed_text(map, &["config_hash", "configHash"]),
        raw,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn decode(payload: &str) -> Result<Vec<SweepRow>, DecodeError> {
        let msg = Incoming {
            subject: "sweep.results",
            payload: payload.as_bytes(),
            published: Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap(),
            stream: "events",
            sequence: 1,
            headers: crate::processor::api::Headers::NONE,
            reply: "",
        };
        let mut rows = Vec::new();
        Sweep::new(&crate::config::DatabaseConfig::for_schema("platform"))
            .decode(&msg, &mut Rows::new(&mut rows, crate::processor::api::Limits::NONE))
            .map(|()| rows)
    }

    /// Reference §8.4.
    pub const SAMPLE: &str = r#"{"host_ip": "192.168.1.100", "gateway_id": "gateway-1", "agent_id": "agent-1",
        "partition": "default", "network_cidr": "192.168.1.0/24", "hostname": "server1", "mac": "00:11:22:33:44:55",
        "icmp_available": true, "icmp_response_time_ns": 1500000, "last_sweep_time": "2024-01-01T00:00:00Z",
        "execution_id": "uuid-for-sweep-execution-tracking", "sweep_group_id": "uuid-for-sweep-group",
        "config_hash": "hash-for-change-detection", "tcp_ports_scanned": [22, 80, 443], "tcp_ports_open": [22]}"#;

    #[test]
    fn the_reference_result() {
        let r = &decode(SAMPLE).unwrap()[0];
        assert_eq!(r.host_ip, "192.168.1.100");
        assert_eq!(r.time, Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap());
        assert_eq!((r.icmp_available, r.icmp_response_time_ns), (Some(true), Some(1_500_000)));
        assert_eq!((r.tcp_ports_scanned.as_slice(), r.tcp_ports_open.as_slice()), (&[22, 80, 443][..], &[22][..]));
        assert_eq!(r.execution_id, "uuid-for-sweep-execution-tracking");
        assert_eq!(r.agent_id, "agent-1");
    }

    #[test]
    fn camel_case_and_the_ip_fallback() {
        let r = &decode(
            r#"{"ip": "10.0.0.1", "agentId": "a", "icmpAvailable": false, "tcpPortsOpen": [443],
            "lastSweepTime": 1704067200}"#,
        )
        .unwrap()[0];
        assert_eq!((r.host_ip.as_str(), r.agent_id.as_str(), r.icmp_available), ("10.0.0.1", "a", Some(false)));
        assert_eq!(r.tcp_ports_open, [443]);
        assert_eq!(r.execution_id, "");
    }

    #[test]
    fn bad_results_say_why() {
        for (payload, why) in [
            (r#"{"hostname": "x"}"#, "host_ip"),
            (r#"{"host_ip": "1.2.3.4", "tcp_ports_open": [70000]}"#, "tcp_ports_open"),
            (r#"{"host_ip": "1.2.3.4", "tcp_ports_open": "22"}"#, "tcp_ports_open"),
            (r#"{"host_ip": "1.2.3.4", "icmp_available": "yes"}"#, "icmp_available"),
            ("7", "JSON object"),
        ] {
            assert!(decode(payload).expect_err(payload).message.contains(why), "{payload}");
        }
    }
}
