//! JSON helpers shared by the processors: flexible timestamps, numbers that may be strings, and the text
//! PostgreSQL's `jsonb` gives a value (`jsonb_each_text`, `jsonb::text`), reproduced byte for byte.
//!
//! Uses the processor api only.

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use serde_json::value::RawValue;

use super::api::DecodeError;

/// Parses a timestamp: RFC 3339 / ISO 8601 text (UTC when no offset), or an epoch number (or numeric string)
/// whose unit is told by its size: > 1e18 nanoseconds, > 1e15 microseconds, > 1e12 milliseconds, else seconds.
pub fn parse_timestamp(raw: &RawValue) -> Result<Option<DateTime<Utc>>, DecodeError> {
    let text = raw.get().trim();
    if text == "null" {
        return Ok(None);
    }
    if text.starts_with('"') {
        let s: String = serde_json::from_str(text).map_err(|e| DecodeError::new(format!("timestamp: {e}")))?;
        let s = s.trim();
        if s.is_empty() {
            return Ok(None);
        }
        if s.bytes().all(|b| b.is_ascii_digit() || b == b'.' || b == b'-') {
            return epoch(s).map(Some);
        }
        return parse_iso8601(s).map(Some);
    }
    epoch(text).map(Some)
}

/// [`parse_timestamp`] of an already parsed value, without writing it out again: the same answers.
pub fn parse_timestamp_value(v: &serde_json::Value) -> Option<DateTime<Utc>> {
    use serde_json::Value;
    match v {
        Value::String(s) => {
            let s = s.trim();
            if s.is_empty() {
                None
            } else if s.bytes().all(|b| b.is_ascii_digit() || b == b'.' || b == b'-') {
                epoch(s).ok()
            } else {
                parse_iso8601(s).ok()
            }
        }
        Value::Number(n) => epoch(&n.to_string()).ok(),
        _ => None,
    }
}

fn parse_iso8601(s: &str) -> Result<DateTime<Utc>, DecodeError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f%#z", "%Y-%m-%d %H:%M:%S%.f%#z"] {
        if let Ok(t) = DateTime::parse_from_str(s, format) {
            return Ok(t.with_timezone(&Utc));
        }
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, format) {
            return Ok(Utc.from_utc_datetime(&t));
        }
    }
    Err(DecodeError::new(format!("timestamp {s:?} is neither RFC 3339 nor an epoch number")))
}

fn epoch(text: &str) -> Result<DateTime<Utc>, DecodeError> {
    let bad = || DecodeError::new(format!("timestamp {text} is not a valid epoch time"));
    // Integers are read exactly: nanosecond epochs do not fit an f64's 53 bits.
    let nanos: i128 = if let Ok(i) = text.parse::<i128>() {
        let a = i.unsigned_abs();
        if a > 1_000_000_000_000_000_000 {
            i
        } else if a > 1_000_000_000_000_000 {
            i * 1_000
        } else if a > 1_000_000_000_000 {
            i * 1_000_000
        } else {
            i * 1_000_000_000
        }
    } else {
        let f: f64 = text.parse().map_err(|_| bad())?;
        if !f.is_finite() {
            return Err(bad());
        }
        let a = f.abs();
        let scale = if a > 1e18 {
            1.0
        } else if a > 1e15 {
            1e3
        } else if a > 1e12 {
            1e6
        } else {
            1e9
        };
        (f * scale).round() as i128
    };
    let secs = nanos.div_euclid(1_000_000_000);
    let sub = nanos.rem_euclid(1_000_000_000) as u32;
    let secs = i64::try_from(secs).map_err(|_| bad())?;
    DateTime::<Utc>::from_timestamp(secs, sub).ok_or_else(bad)
}

/// A number given as a JSON number or a numeric string; must be finite.
pub fn parse_f64(field: &str, raw: &RawValue) -> Result<Option<f64>, DecodeError> {
    let text = raw.get().trim();
    let v = match text.as_bytes().first() {
        Some(b'"') => {
            let s: String = serde_json::from_str(text).map_err(|e| DecodeError::new(format!("{field}: {e}")))?;
            let s = s.trim();
            if s.is_empty() {
                return Ok(None);
            }
            // Rust would accept "NaN" and "inf"; PostgreSQL would store them; ServiceRadar would not.
            if !s.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E')) {
                return Err(DecodeError::new(format!("{field}: {s:?} is not a number")));
            }
            s.parse::<f64>().map_err(|_| DecodeError::new(format!("{field}: {s:?} is not a number")))?
        }
        Some(b'n') if text == "null" => return Ok(None),
        _ => text.parse::<f64>().map_err(|_| DecodeError::new(format!("{field}: {text} is not a number")))?,
    };
    if v.is_finite() { Ok(Some(v)) } else { Err(DecodeError::new(format!("{field}: {text} is out of range"))) }
}

/// A JSON payload holding one object or an array of objects: calls `each(index, object, whole)` for every
/// object (`whole` when the payload is that single object). An item's error is prefixed with `[index]: `.
pub fn each_object(
    payload: &[u8],
    what: &str,
    mut each: impl FnMut(usize, &serde_json::Map<String, serde_json::Value>, bool) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    use serde_json::Value;
    match serde_json::from_slice::<Value>(payload).map_err(|e| DecodeError::new(format!("bad JSON: {e}")))? {
        Value::Object(map) => each(0, &map, true),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let Value::Object(map) = item else {
                    return Err(DecodeError::new(format!("[{i}]: a {what} must be a JSON object")));
                };
                each(i, map, false).map_err(|e| DecodeError::new(format!("[{i}]: {e}")))?;
            }
            Ok(())
        }
        _ => Err(DecodeError::new("payload is not a JSON object or array")),
    }
}

/// Deepest nesting of arrays and objects this code walks (serde_json's own limit for parsed values). Deeper
/// JSON is a decode error rather than a stack overflow.
pub const MAX_DEPTH: usize = 128;

/// Largest decimal exponent of a JSON number written out as PostgreSQL `numeric` text: `1e99999` would be a
/// 100,001-digit string. Far beyond any double (±308).
pub const MAX_EXPONENT: i64 = 1000;

/// What a real NUL character (U+0000) becomes: PostgreSQL `text` cannot hold it and `jsonb` refuses `\u0000`,
/// so the row lands with U+FFFD (the replacement character) in its place rather than failing for ever.
pub const NUL_REPLACEMENT: char = '\u{FFFD}';

/// Replaces NUL characters in a text column's value (see [`NUL_REPLACEMENT`]); the common case costs one scan.
pub fn clean_text(s: &mut String) {
    if s.contains('\0') {
        *s = s.replace('\0', "\u{FFFD}");
    }
}

/// JSON text that `jsonb` accepts: every `\u0000` escape becomes `\ufffd`. An escaped backslash followed by
/// `u0000` (the text `\\u0000`, a Windows path say) is not an escape of NUL and is kept as it is.
pub fn clean_jsonb(raw: &str) -> std::borrow::Cow<'_, str> {
    if !raw.contains("u0000") {
        return std::borrow::Cow::Borrowed(raw);
    }
    let b = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let (mut i, mut copied) = (0, 0);
    while i < b.len() {
        if b[i] == b'\\' {
            if b.get(i + 1) == Some(&b'u') && b.get(i + 2..i + 6) == Some(&b"0000"[..]) {
                out.push_str(&raw[copied..i]);
                out.push_str("\\ufffd");
                i += 6;
                copied = i;
            } else {
                // Any other escape (including `\\`): skip the escaped character with it.
                i += 2;
            }
        } else {
            i += 1;
        }
    }
    out.push_str(&raw[copied.min(raw.len())..]);
    std::borrow::Cow::Owned(out)
}

/// What `jsonb_each_text` yields for a value: `None` for JSON null, the unescaped text of a string, and the
/// `jsonb` output form of anything else (numbers as PostgreSQL `numeric` prints them, containers with sorted keys).
pub fn jsonb_each_text(raw: &RawValue) -> Result<Option<String>, DecodeError> {
    let text = raw.get().trim();
    match text.as_bytes().first() {
        Some(b'n') => Ok(None),
        Some(b'"') => serde_json::from_str::<String>(text).map(Some).map_err(|e| DecodeError::new(e.to_string())),
        _ => {
            let mut out = String::new();
            write_jsonb(raw, &mut out, 0)?;
            Ok(Some(out))
        }
    }
}

/// Writes `raw` as PostgreSQL prints a `jsonb` value; `depth` is how deep `raw` sits (0 at the top).
pub fn write_jsonb(raw: &RawValue, out: &mut String, depth: usize) -> Result<(), DecodeError> {
    if depth >= MAX_DEPTH {
        return Err(DecodeError::new(format!("JSON nested deeper than {MAX_DEPTH} levels")));
    }
    let text = raw.get().trim();
    let bad = |e: serde_json::Error| DecodeError::new(format!("bad JSON: {e}"));
    match text.as_bytes().first() {
        Some(b'{') => {
            // jsonb keeps the last of duplicate keys and orders keys by length, then bytes.
            let map: std::collections::BTreeMap<String, &RawValue> = serde_json::from_str(text).map_err(bad)?;
            let mut entries: Vec<(&String, &&RawValue)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.len().cmp(&b.0.len()).then_with(|| a.0.as_bytes().cmp(b.0.as_bytes())));
            out.push('{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_json_string(k, out);
                out.push_str(": ");
                write_jsonb(v, out, depth + 1)?;
            }
            out.push('}');
        }
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_str(text).map_err(bad)?;
            out.push('[');
            for (i, v) in items.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_jsonb(v, out, depth + 1)?;
            }
            out.push(']');
        }
        Some(b'"') => {
            let s: String = serde_json::from_str(text).map_err(bad)?;
            write_json_string(&s, out);
        }
        Some(b't' | b'f' | b'n') => out.push_str(text),
        _ => match pg_numeric_text(text) {
            Some(n) => out.push_str(&n),
            None if exponent_of(text).is_some_and(|e| e.abs() > MAX_EXPONENT) => {
                let shown: String = text.chars().take(40).collect();
                return Err(DecodeError::limit(format!("number {shown} has an exponent beyond ±{MAX_EXPONENT}")));
            }
            None => return Err(DecodeError::new(format!("bad JSON number {text}"))),
        },
    }
    Ok(())
}

fn exponent_of(literal: &str) -> Option<i64> {
    let i = literal.find(['e', 'E'])?;
    // Saturating: an exponent too long for i64 is certainly beyond the limit.
    let digits = &literal[i + 1..];
    Some(digits.parse::<i64>().unwrap_or(if digits.starts_with('-') { i64::MIN } else { i64::MAX }))
}

/// PostgreSQL's `escape_json` (of a value whose NULs are replaced, as the row stores it).
fn write_json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '\0' => out.push(NUL_REPLACEMENT),
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// How PostgreSQL's `numeric` prints a JSON number literal: exponent applied, scale kept
/// (`1.50` → `1.50`, `1e2` → `100`, `1.5e-3` → `0.0015`, `-0` → `0`).
pub fn pg_numeric_text(literal: &str) -> Option<String> {
    let (negative, rest) = match literal.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, literal),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], rest[i + 1..].parse::<i64>().ok()?),
        None => (rest, 0),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if int_part.is_empty()
        || !int_part.bytes().all(|b| b.is_ascii_digit())
        || !frac_part.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    if exponent.abs() > MAX_EXPONENT {
        return None;
    }
    // All digits with the decimal point `point` digits from the left.
    let digits: String = format!("{int_part}{frac_part}");
    let point = int_part.len() as i64 + exponent;
    let scale = (frac_part.len() as i64 - exponent).max(0) as usize;
    let (int_digits, frac_digits): (String, String) = if point <= 0 {
        (String::new(), format!("{}{}", "0".repeat((-point) as usize), digits))
    } else if point as usize >= digits.len() {
        (format!("{}{}", digits, "0".repeat(point as usize - digits.len())), String::new())
    } else {
        (digits[..point as usize].to_owned(), digits[point as usize..].to_owned())
    };
    let int_digits = int_digits.trim_start_matches('0');
    let int_digits = if int_digits.is_empty() { "0" } else { int_digits };
    let mut frac: String = frac_digits.chars().take(scale).collect();
    while frac.len() < scale {
        frac.push('0');
    }
    let is_zero = int_digits == "0" && frac.bytes().all(|b| b == b'0');
    let mut out = String::new();
    if negative && !is_zero {
        out.push('-');
    }
    out.push_str(int_digits);
    if scale > 0 {
        out.push('.');
        out.push_str(&frac);
    }
    Some(out)
}

/// A field as text: a string as it is, a number or boolean as JSON writes it; `""` for anything else or none.
pub fn field_text(map: &serde_json::Map<String, serde_json::Value>, key: &str) -> String {
    use serde_json::Value;
    match map.get(key) {
        Some(Value::String(v)) => v.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => String::new(),
    }
}

/// A field as text: a string as it is, anything else as its JSON; `empty` when absent or null.
pub fn text_or_json(map: &serde_json::Map<String, serde_json::Value>, key: &str, empty: &str) -> String {
    use serde_json::Value;
    match map.get(key) {
        None | Some(Value::Null) => empty.to_owned(),
        Some(Value::String(v)) => v.clone(),
        Some(v) => v.to_string(),
    }
}

/// A field as a timestamp ([`parse_timestamp_value`]); `None` when absent or not one.
pub fn time_field(map: &serde_json::Map<String, serde_json::Value>, key: &str) -> Option<DateTime<Utc>> {
    parse_timestamp_value(map.get(key)?)
}

/// The first of `keys` holding a non-empty string (as it is) or a number (as JSON writes it), NUL-cleaned.
pub fn text_or_number(map: &serde_json::Map<String, serde_json::Value>, keys: &[&str]) -> Option<String> {
    use serde_json::Value;
    keys.iter().find_map(|key| match map.get(*key) {
        Some(Value::String(s)) if !s.is_empty() => {
            let mut s = s.clone();
            clean_text(&mut s);
            Some(s)
        }
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    })
}

/// The first of `keys` holding a string that is not blank, trimmed and NUL-cleaned (numbers do not count).
pub fn trimmed_text(map: &serde_json::Map<String, serde_json::Value>, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|key| {
        let mut s = map.get(*key)?.as_str().map(str::trim).filter(|s| !s.is_empty())?.to_owned();
        clean_text(&mut s);
        Some(s)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parsed_value_gives_the_same_timestamp_as_its_text() {
        for text in [
            "null",
            "true",
            "[1]",
            "{}",
            "\"\"",
            "\"  \"",
            "1700000000",
            "1700000000123",
            "1700000000123456",
            "1700000000123456789",
            "1.7e9",
            "1700000000.5",
            "-5",
            "\"1700000000\"",
            "\"2024-01-01T00:00:00Z\"",
            "\"2024-01-01 12:00:00.5+02:00\"",
            "\"2024-01-01T00:00:00\"",
            "\"yesterday\"",
            "\"1.2.3\"",
        ] {
            let raw: Box<RawValue> = serde_json::from_str(text).unwrap();
            let value: serde_json::Value = serde_json::from_str(text).unwrap();
            let again = serde_json::value::to_raw_value(&value).unwrap();
            assert_eq!(parse_timestamp_value(&value), parse_timestamp(&again).ok().flatten(), "{text}");
            if !text.contains('e') && !text.contains(".5") {
                assert_eq!(parse_timestamp_value(&value), parse_timestamp(&raw).ok().flatten(), "{text}");
            }
        }
    }

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap()
    }

    fn ts(s: &str) -> DateTime<Utc> {
        parse_timestamp(&raw(s)).unwrap().unwrap()
    }

    #[test]
    fn timestamps_in_every_accepted_form() {
        let expected = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        for form in [
            "\"2024-01-01T00:00:00Z\"",
            "\"2024-01-01T01:00:00+01:00\"",
            "\"2024-01-01 00:00:00Z\"",
            "\"2024-01-01T00:00:00\"",
            "\"2024-01-01T00:00:00.000Z\"",
            "1704067200",
            "1704067200.0",
            "1704067200000",
            "1704067200000000",
            "1704067200000000000",
            "\"1704067200\"",
        ] {
            assert_eq!(ts(form), expected, "{form}");
        }
        assert_eq!(ts("1704067200123456789").timestamp_subsec_nanos(), 123_456_789);
        assert_eq!(parse_timestamp(&raw("null")).unwrap(), None);
        assert_eq!(parse_timestamp(&raw("\"\"")).unwrap(), None);
        assert!(parse_timestamp(&raw("\"yesterday\"")).is_err());
        assert!(parse_timestamp(&raw("true")).is_err());
        assert!(parse_timestamp(&raw("1e400")).is_err());
    }

    #[test]
    fn numbers_may_be_strings() {
        assert_eq!(parse_f64("v", &raw("45.5")).unwrap(), Some(45.5));
        assert_eq!(parse_f64("v", &raw("\" 45.5 \"")).unwrap(), Some(45.5));
        assert_eq!(parse_f64("v", &raw("null")).unwrap(), None);
        assert!(parse_f64("v", &raw("\"NaN\"")).is_err());
        assert!(parse_f64("v", &raw("\"inf\"")).is_err());
        assert!(parse_f64("v", &raw("\"12abc\"")).is_err());
        assert!(parse_f64("v", &raw("true")).is_err());
        assert!(parse_f64("v", &raw("{}")).is_err());
    }

    #[test]
    fn numeric_text_matches_postgres() {
        for (literal, pg) in [
            ("1", "1"),
            ("1.50", "1.50"),
            ("1e2", "100"),
            ("1E+2", "100"),
            ("1.5e1", "15"),
            ("1.50e1", "15.0"),
            ("1.5e-3", "0.0015"),
            ("-0", "0"),
            ("-0.0", "0.0"),
            ("007", "7"),
            ("-12.340", "-12.340"),
            ("0.1", "0.1"),
            ("123e-2", "1.23"),
        ] {
            assert_eq!(pg_numeric_text(literal).as_deref(), Some(pg), "{literal}");
        }
        assert_eq!(pg_numeric_text("abc"), None);
    }

    #[test]
    fn jsonb_text_sorts_keys_by_length_then_bytes() {
        let v = raw(r#"{"bb": 1, "a": [1, 2.50, "x\ty"], "c": {"z": null, "y": true}, "a": "dup"}"#);
        assert_eq!(jsonb_each_text(&v).unwrap().unwrap(), r#"{"a": "dup", "c": {"y": true, "z": null}, "bb": 1}"#);
        assert_eq!(jsonb_each_text(&raw("\"plain\\u00e9\"")).unwrap().unwrap(), "plainé");
        assert_eq!(jsonb_each_text(&raw("null")).unwrap(), None);
        assert_eq!(jsonb_each_text(&raw("[\"\\u0001\"]")).unwrap().unwrap(), "[\"\\u0001\"]");
    }
}
