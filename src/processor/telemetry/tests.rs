//! Telemetry decoding: the reference sample, aliases and fallbacks, defaults, arrays, refusals, series keys.

use chrono::{TimeZone, Utc};
use md5::{Digest, Md5};

use super::series_key::{SeriesIdentity, series_key};
use super::*;
use crate::processor::api::{DecodeError, Incoming, Processor, Rows};

fn incoming(payload: &str) -> Incoming<'_> {
    Incoming {
        subject: "telemetry.cpu",
        payload: payload.as_bytes(),
        published: Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap(),
        stream: "events",
        sequence: 1,
    }
}

fn decode(payload: &str) -> Result<Vec<MetricRow>, DecodeError> {
    let mut rows = Vec::new();
    Telemetry::new("platform")
        .decode(&incoming(payload), &mut Rows::new(&mut rows, crate::processor::api::Limits::NONE))
        .map(|()| rows)
}

const SAMPLE: &str = r#"{"timestamp": "2024-01-01T00:00:00Z", "gateway_id": "gateway-1", "agent_id": "agent-1",
    "metric_name": "cpu_usage", "metric_type": "gauge", "device_id": "device-1", "value": 45.5,
    "unit": "percent", "tags": {"host": "server1"}}"#;

#[test]
fn decodes_the_reference_sample() {
    let rows = decode(SAMPLE).unwrap();
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!(r.timestamp, Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap());
    assert_eq!(r.gateway_id, "gateway-1");
    assert_eq!(r.agent_id.as_deref(), Some("agent-1"));
    assert_eq!(r.metric_name, "cpu_usage");
    assert_eq!(r.device_id.as_deref(), Some("device-1"));
    assert_eq!(r.value, 45.5);
    assert_eq!(r.unit.as_deref(), Some("percent"));
    assert_eq!(r.tags.as_deref(), Some(r#"{"host": "server1"}"#));
    assert!(!r.is_delta);
    assert_eq!(r.series_key.len(), 32);
}

#[test]
fn camel_case_aliases_and_fallbacks() {
    let rows = decode(
        r#"{"gatewayId": "g", "agentId": "a", "name": "if_in", "type": "counter", "deviceId": "d",
            "isDelta": true, "targetDeviceIp": "10.0.0.1", "ifIndex": 3, "value": "12.5", "tags": "{\"x\": 1}"}"#,
    )
    .unwrap();
    let r = &rows[0];
    assert_eq!((r.gateway_id.as_str(), r.metric_name.as_str(), r.metric_type.as_str()), ("g", "if_in", "counter"));
    assert!(r.is_delta);
    assert_eq!(r.if_index, Some(3));
    assert_eq!(r.target_device_ip.as_deref(), Some("10.0.0.1"));
    assert_eq!(r.value, 12.5);
    assert_eq!(r.tags.as_deref(), Some(r#"{"x": 1}"#));
}

#[test]
fn defaults_apply_and_the_time_comes_from_jetstream() {
    let r = &decode(r#"{"value": 1}"#).unwrap()[0];
    assert_eq!(
        (r.gateway_id.as_str(), r.metric_name.as_str(), r.metric_type.as_str()),
        ("unknown", "unknown", "gauge")
    );
    assert_eq!(r.timestamp, incoming("").published);
}

#[test]
fn arrays_give_one_row_each() {
    assert_eq!(decode(r#"[{"value": 1}, {"value": 2}, {"value": 3}]"#).unwrap().len(), 3);
    assert_eq!(decode("[]").unwrap().len(), 0);
    let e = decode(r#"[{"value": 1}, {"nope": 2}]"#).unwrap_err();
    assert!(e.message.starts_with("[1]: value: missing"), "{e}");
}

#[test]
fn bad_payloads_say_why() {
    for (payload, why) in [
        ("\u{0}\u{1}garbage", "not a JSON object"),
        ("{\"value\": ", "EOF while parsing"),
        (r#"{"value": "abc"}"#, "value"),
        (r#"{"value": 1, "device_id": 7}"#, "device_id"),
        (r#"{"value": 1, "tags": [1]}"#, "tags: must be a JSON object"),
        (r#"{"value": 1, "if_index": 99999999999}"#, "if_index"),
        (r#"{"value": 1, "timestamp": "soon"}"#, "timestamp"),
        ("42", "not a JSON object"),
    ] {
        let e = decode(payload).expect_err(payload);
        assert!(e.message.contains(why), "{payload}: {e}");
    }
    let mut rows = Vec::new();
    let bytes = [0xff, 0xfe, b'{'];
    let msg = Incoming { payload: &bytes, ..incoming("") };
    let e =
        Telemetry::new("p").decode(&msg, &mut Rows::new(&mut rows, crate::processor::api::Limits::NONE)).unwrap_err();
    assert!(e.message.contains("UTF-8"));
}

#[test]
fn series_key_of_the_empty_identity_is_md5_of_nothing() {
    assert_eq!(series_key(&SeriesIdentity::default()), "d41d8cd98f00b204e9800998ecf8427e");
}

#[test]
fn series_key_ignores_unstable_and_blank_tags_and_the_value() {
    let a = &decode(r#"{"metric_name": "m", "value": 1, "tags": {"host": "h", "available": true, "blank": "  "}}"#)
        .unwrap()[0];
    let b = &decode(r#"{"metric_name": "m", "value": 2, "tags": {"host": "h", "packet_loss": 3}}"#).unwrap()[0];
    let c = &decode(r#"{"metric_name": "m", "value": 1, "tags": {"host": "other"}}"#).unwrap()[0];
    assert_eq!(a.series_key, b.series_key);
    assert_ne!(a.series_key, c.series_key);
}

#[test]
fn series_key_is_length_prefixed() {
    // Without length prefixes these two would collide ("a|b" vs "a" + "|b").
    let x = series_key(&SeriesIdentity { agent_id: Some("a|b"), ..Default::default() });
    let y = series_key(&SeriesIdentity { agent_id: Some("a"), device_id: Some("|b"), ..Default::default() });
    assert_ne!(x, y);
    // Known value: md5("11:metric_type=5:gauge").
    let z = series_key(&SeriesIdentity { metric_type: Some("gauge"), ..Default::default() });
    let expected = format!("{:x}", Md5::digest(b"11:metric_type=5:gauge"));
    assert_eq!(z, expected);
}
