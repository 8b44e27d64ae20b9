//! SNMP traps on `logs.snmp` as ServiceRadar normalises them before storing (its bundled Zen rule
//! `snmp_severity`, reference-today §8.7, index id 67511881612), written out here: the trap OID and the first
//! varbind that says something (not `sysUpTime`, not the trap OID, not a bare counter or number) make the body
//! (`SNMP trap <oid> from <ip>: <detail>` and its shorter forms), the sender's address becomes `source_ip`, the
//! trap's fields go under `attributes.snmp`, and `source` and `service_name` become `snmp`. Without it a trap's
//! body was its first varbind, `sysUpTime`: a bare tick count.
//!
//! The other Zen rules (syslog, CEF, WAF) live in ServiceRadar's database and are not reproduced: their payloads
//! are stored as they arrive.
//!
//! Uses serde_json values.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Map, Value};

const SYS_UPTIME: [&str; 2] = ["1.3.6.1.2.1.1.3.0", ".1.3.6.1.2.1.1.3.0"];
const TRAP_OID: [&str; 2] = ["1.3.6.1.6.3.1.1.4.1.0", ".1.3.6.1.6.3.1.1.4.1.0"];

static TYPED: LazyLock<Regex> = LazyLock::new(|| re(r"^[^:]+:[\t\n\x0B\x0C\r ]*(.+)$"));
static NOT_DETAIL: LazyLock<Regex> =
    LazyLock::new(|| re(r"^(TIMETICKS|COUNTER32|COUNTER64|INTEGER|UNSIGNED32|BOOLEAN|NULL)\b"));
static BRACKETED: LazyLock<Regex> = LazyLock::new(|| re(r"^\[([^\]]+)\]"));
static IPV4: LazyLock<Regex> = LazyLock::new(|| re(r"([0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3})"));

fn re(pattern: &str) -> Regex {
    // Constants of this file: a typo fails every test at once.
    Regex::new(pattern).unwrap_or_else(|e| panic!("snmp pattern {pattern}: {e}"))
}

/// Whether ServiceRadar applies the rule to `subject` (its key: trimmed, a trailing `.processed` removed).
pub fn applies(subject: &str) -> bool {
    let key = subject.trim();
    key.strip_suffix(".processed").unwrap_or(key) == "logs.snmp"
}

/// `extract(raw, '^[^:]+:\s*(.+)$')[1] ?? raw`: a typed varbind value without its type.
fn untyped(raw: &str) -> &str {
    TYPED.captures(raw).and_then(|c| c.get(1)).map_or(raw, |m| m.as_str())
}

fn value_of(vb: &Value) -> &str {
    vb.get("value").and_then(Value::as_str).unwrap_or("")
}

fn oid_of(vb: &Value) -> &str {
    vb.get("oid").and_then(Value::as_str).unwrap_or("")
}

/// The trap with the rule applied.
pub fn normalize(json: &Map<String, Value>) -> Map<String, Value> {
    let mut out = json.clone();
    let varbinds: &[Value] = json.get("varbinds").and_then(Value::as_array).map_or(&[], Vec::as_slice);
    let source = json.get("source").and_then(Value::as_str).unwrap_or("");
    let source_ip = json
        .get("source_ip")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| BRACKETED.captures(source).and_then(|c| Some(c.get(1)?.as_str().to_owned())))
        .or_else(|| IPV4.captures(source).and_then(|c| Some(c.get(1)?.as_str().to_owned())));
    let trap_oid = untyped(varbinds.iter().find(|vb| TRAP_OID.contains(&oid_of(vb))).map_or("", value_of));
    let detail = untyped(
        varbinds
            .iter()
            .find(|vb| {
                let (oid, v) = (oid_of(vb), value_of(vb));
                let bare_number = !v.trim().is_empty() && v.trim().bytes().all(|b| b.is_ascii_digit());
                let not_detail = SYS_UPTIME.contains(&oid) || TRAP_OID.contains(&oid) || NOT_DETAIL.is_match(v);
                !not_detail && !bare_number
            })
            .map_or("", value_of),
    );
    let ip = source_ip.as_deref().unwrap_or("");
    if !varbinds.is_empty() {
        let body = match (!trap_oid.is_empty(), !detail.is_empty(), !ip.is_empty()) {
            (true, true, true) => Some(format!("SNMP trap {trap_oid} from {ip}: {detail}")),
            (true, true, false) => Some(format!("SNMP trap {trap_oid}: {detail}")),
            (false, true, true) => Some(format!("SNMP trap from {ip}: {detail}")),
            (false, true, false) => Some(detail.to_owned()),
            (true, false, true) => Some(format!("SNMP trap {trap_oid} from {ip}")),
            (true, false, false) => Some(format!("SNMP trap {trap_oid}")),
            (false, false, true) => Some(format!("SNMP trap from {ip}")),
            (false, false, false) => None,
        };
        if let Some(body) = body {
            out.insert("body".into(), Value::String(body));
        }
    }
    if let Some(ip) = source_ip {
        out.insert("source_ip".into(), Value::String(ip));
    }
    let mut snmp = Map::new();
    for key in ["source", "version", "community", "varbinds"] {
        if let Some(v) = json.get(key).filter(|v| !v.is_null()) {
            snmp.insert(key.into(), v.clone());
        }
    }
    snmp.insert("trap_oid".into(), Value::String(trap_oid.to_owned()));
    snmp.insert("detail".into(), Value::String(detail.to_owned()));
    // Deep-merged into attributes, as Zen merges its results.
    let attributes = out.entry("attributes").or_insert_with(|| Value::Object(Map::new()));
    if !attributes.is_object() {
        *attributes = Value::Object(Map::new());
    }
    if let Value::Object(a) = attributes {
        match a.get_mut("snmp") {
            Some(Value::Object(existing)) => existing.extend(snmp),
            _ => {
                a.insert("snmp".into(), Value::Object(snmp));
            }
        }
    }
    out.insert("source".into(), Value::String("snmp".into()));
    out.insert("service_name".into(), Value::String("snmp".into()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trap(json: serde_json::Value) -> Map<String, Value> {
        normalize(json.as_object().unwrap())
    }

    // Ported from ServiceRadar's `logs_test.exs` (index id 67632486080): the trap tests on `logs.snmp`.
    #[test]
    fn the_trap_body_is_its_oid_sender_and_detail_not_sys_uptime() {
        let t = trap(serde_json::json!({
        "source": "192.168.1.10:4161", "source_ip": "192.168.1.10", "version": "V2C", "community": "public",
        "varbinds": [
            {"oid": "1.3.6.1.2.1.1.3.0", "value": "TIMETICKS: 38611538"},
            {"oid": "1.3.6.1.6.3.1.1.4.1.0", "value": "OBJECT IDENTIFIER: 1.3.6.1.4.1.9.9.41.2.0.1"},
            {"oid": "1.3.6.1.4.1.9.9.41.1.2.3.1.5.1",
             "value": "OCTET STRING: I 03/08/26 20:28:41 04911 ntp: The NTP Server 162.159.200.1 is unreachable."}
        ]}));
        assert_eq!(
            t["body"],
            "SNMP trap 1.3.6.1.4.1.9.9.41.2.0.1 from 192.168.1.10: I 03/08/26 20:28:41 04911 ntp: The NTP Server \
             162.159.200.1 is unreachable."
        );
        assert_eq!(t["source_ip"], "192.168.1.10");
        assert_eq!(t["attributes"]["snmp"]["trap_oid"], "1.3.6.1.4.1.9.9.41.2.0.1");
        assert_eq!(t["attributes"]["snmp"]["community"], "public");
        assert_eq!((t["source"].as_str(), t["service_name"].as_str()), (Some("snmp"), Some("snmp")));
    }

    #[test]
    fn a_copied_tick_count_is_replaced_and_the_sender_found_in_source() {
        let t = trap(serde_json::json!({"source": "10.0.0.8:162", "source_ip": "10.0.0.8", "body": "38611538",
            "varbinds": [{"oid": "1.3.6.1.2.1.1.3.0", "value": "TIMETICKS: 38611538"},
                         {"oid": "1.3.6.1.6.3.1.1.4.1.0", "value": "OBJECT IDENTIFIER: 1.3.6.1.6.3.1.1.5.3"}]}));
        assert_eq!(t["body"], "SNMP trap 1.3.6.1.6.3.1.1.5.3 from 10.0.0.8");
        let t = trap(serde_json::json!({"source": "192.168.2.55:32768",
            "varbinds": [{"oid": "1.3.6.1.2.1.1.3.0", "value": "TIMETICKS: 12"},
                         {"oid": "1.3.6.1.6.3.1.1.4.1.0", "value": "OBJECT IDENTIFIER: 1.3.6.1.6.3.1.1.5.1"}]}));
        assert_eq!(t["source_ip"], "192.168.2.55");
        assert_eq!(t["body"], "SNMP trap 1.3.6.1.6.3.1.1.5.1 from 192.168.2.55");
    }

    #[test]
    fn only_logs_snmp_is_normalised() {
        assert!(applies("logs.snmp") && applies(" logs.snmp.processed "));
        assert!(!applies("logs.syslog") && !applies("logs.snmp.other"));
        let t = trap(serde_json::json!({"body": "kept"}));
        assert_eq!(t["body"], "kept", "no varbinds: the body stays");
    }
}
