//! OTLP helpers the OTLP processors (logs, otel) and flows share: timestamps, ids, attribute lookups, and the
//! text the Go writer gives attributes and `AnyValue`s.
//!
//! Uses the prost messages of [`super::proto`].

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::proto::common::{AnyValue, KeyValue, any_value};

/// Epoch nanoseconds; 0 is "not set".
pub fn nanos(n: u64) -> Option<DateTime<Utc>> {
    if n == 0 {
        return None;
    }
    DateTime::from_timestamp((n / 1_000_000_000) as i64, (n % 1_000_000_000) as u32)
}

/// Lower-case hex, `""` for empty.
pub fn hex(bytes: &[u8]) -> String {
    crate::hex::encode(bytes)
}

/// A string attribute's value (`""` when absent or not a string).
pub fn attr_str(attrs: &[KeyValue], key: &str) -> String {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

/// The Go writer's attribute text: `k=v` joined by commas; strings as-is, `true`, integers, doubles with six
/// decimals; false, zero and empty values left out.
pub fn kv_text(attrs: &[KeyValue]) -> String {
    let mut out = String::new();
    for kv in attrs {
        let Some(value) = kv.value.as_ref().and_then(|v| v.value.as_ref()) else { continue };
        let text = match value {
            any_value::Value::StringValue(s) if !s.is_empty() => s.clone(),
            any_value::Value::BoolValue(true) => "true".to_owned(),
            any_value::Value::IntValue(i) if *i != 0 => i.to_string(),
            any_value::Value::DoubleValue(d) if *d != 0.0 => format!("{d:.6}"),
            any_value::Value::ArrayValue(_) | any_value::Value::KvlistValue(_) | any_value::Value::BytesValue(_) => {
                let t = any_text(kv.value.as_ref().unwrap_or(&AnyValue::default()));
                if t.is_empty() {
                    continue;
                }
                t
            }
            _ => continue,
        };
        if !out.is_empty() {
            out.push(',');
        }
        let _ = write!(out, "{}={}", kv.key, text);
    }
    out
}

/// An AnyValue as text: strings as they are; other kinds as JSON (the Go writer kept only strings and
/// stored `""` for structured bodies, losing them).
pub fn any_text(v: &AnyValue) -> String {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(_) => any_json(v).to_string(),
        None => String::new(),
    }
}

fn any_json(v: &AnyValue) -> Value {
    match &v.value {
        None => Value::Null,
        Some(any_value::Value::StringValue(s)) => Value::String(s.clone()),
        Some(any_value::Value::BoolValue(b)) => Value::Bool(*b),
        Some(any_value::Value::IntValue(i)) => Value::from(*i),
        Some(any_value::Value::DoubleValue(d)) => serde_json::Number::from_f64(*d).map_or(Value::Null, Value::Number),
        Some(any_value::Value::ArrayValue(a)) => Value::Array(a.values.iter().map(any_json).collect()),
        Some(any_value::Value::KvlistValue(kvs)) => Value::Object(
            kvs.values.iter().map(|kv| (kv.key.clone(), kv.value.as_ref().map_or(Value::Null, any_json))).collect(),
        ),
        Some(any_value::Value::BytesValue(b)) => Value::String(hex(b)),
    }
}

/// An AnyValue as plain text (strings unquoted).
pub fn any_plain(v: &AnyValue) -> String {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => format!("{d:.6}"),
        _ => any_text(v),
    }
}
