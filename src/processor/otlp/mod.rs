//! OTLP helpers the OTLP processors (logs, otel) and flows share: timestamps, ids ([`id`]), and attributes as the
//! typed tree ServiceRadar's writers store today with its texts ([`tree`]).
//!
//! Uses the prost messages of [`super::proto`].

pub mod id;
#[cfg(test)]
mod tests;
pub mod tree;

use chrono::{DateTime, Utc};

use super::proto::common::{AnyValue, KeyValue, any_value};

/// Epoch nanoseconds; 0 is "not set".
pub fn nanos(n: u64) -> Option<DateTime<Utc>> {
    if n == 0 {
        return None;
    }
    DateTime::from_timestamp((n / 1_000_000_000) as i64, (n % 1_000_000_000) as u32)
}

/// Epoch nanoseconds truncated to the microsecond (as ServiceRadar's writers key metric points); 0 is "not set".
pub fn micros(n: u64) -> Option<DateTime<Utc>> {
    nanos(n / 1000 * 1000)
}

/// An unsigned count as the signed column stores it, capped (Go's `safeUint64ToInt64`).
pub fn capped_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// An unsigned 32-bit count as an `INTEGER` column stores it, capped (Go's `safeUint32ToInt32`).
pub fn capped_i32(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// A log body as text: a string as it is, any other value as its JSON (ServiceRadar's Elixir writer; the Go one
/// stored `""` for structured bodies, losing them), `""` when unset.
pub fn any_text(v: &AnyValue) -> String {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        None => String::new(),
        Some(_) => {
            let mut out = String::new();
            // Display writes every value (non-finite numbers as null): it cannot fail.
            let _ = tree::write_tree(&mut out, &tree::value_of(Some(v)), tree::Style::Display);
            out
        }
    }
}

/// A scalar attribute as text for a scalar column (Go's `extractAttributeValue`): strings as they are, `true` /
/// `false`, integers, doubles shortest (`'f'`); zero, false and empty kept; arrays, maps and bytes as `""`.
pub fn scalar_text(kv: &KeyValue) -> String {
    match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) if d.is_finite() => tree::plain_float(*d),
        _ => String::new(),
    }
}
