//! OTLP attributes as ServiceRadar stores them today (reference-today §4.3, §4.4, §5.1): the typed value tree of
//! its `attrsToMap` (empty keys skipped, the last duplicate wins, bytes kept as bytes), and the three texts made
//! from it, byte for byte as its Go writer makes them:
//! - [`marshal`]: `json.Marshal` (logs and traces columns): keys sorted at every level, HTML escaping,
//!   `encoding/json` floats (`42`, `1e-7`, `1e+21`), bytes as base64; a NaN or infinity fails the whole text;
//! - [`display`]: `canonicalAttributesJSON` (`otel_metric_points.attributes`): no HTML escaping, floats with one
//!   decimal when integral (`42.0`), else Go's shortest `g`; NaN and infinities as `null`;
//! - [`hash_v2`]: the recipe-v2 `attributes_hash` (md5 of a type-tagged canonical encoding).
//!
//! Uses the prost messages and [`crate::hex`].

use std::borrow::Cow;
use std::collections::BTreeMap;

use base64::Engine as _;
use md5::{Digest, Md5};

use crate::processor::proto::common::{AnyValue, KeyValue, any_value};

/// An OTLP `AnyValue` as a tree (what Go's `anyValueToInterface` / `anyValueToCanonical` give).
#[derive(Debug, Clone, PartialEq)]
pub enum Tree<'a> {
    /// Unset, or a `KeyValue` without a value.
    Null,
    /// `string_value` (owned when a writer changed it, e.g. redaction).
    Str(Cow<'a, str>),
    /// `bool_value`.
    Bool(bool),
    /// `int_value`.
    Int(i64),
    /// `double_value`.
    Double(f64),
    /// `bytes_value`.
    Bytes(Cow<'a, [u8]>),
    /// `array_value`.
    Array(Vec<Tree<'a>>),
    /// `kvlist_value`.
    Map(Map<'a>),
}

/// Attributes by key, in key-byte order (Go sorts map keys bytewise).
pub type Map<'a> = BTreeMap<Cow<'a, str>, Tree<'a>>;

/// `attrsToMap`: entries with an empty key skipped, the last of a duplicate key wins.
pub fn map_of(attrs: &[KeyValue]) -> Map<'_> {
    let mut map = Map::new();
    for kv in attrs {
        if kv.key.is_empty() {
            continue;
        }
        map.insert(Cow::Borrowed(kv.key.as_str()), value_of(kv.value.as_ref()));
    }
    map
}

/// One `AnyValue` as a tree.
pub fn value_of(v: Option<&AnyValue>) -> Tree<'_> {
    match v.and_then(|v| v.value.as_ref()) {
        None => Tree::Null,
        Some(any_value::Value::StringValue(s)) => Tree::Str(Cow::Borrowed(s)),
        Some(any_value::Value::BoolValue(b)) => Tree::Bool(*b),
        Some(any_value::Value::IntValue(i)) => Tree::Int(*i),
        Some(any_value::Value::DoubleValue(d)) => Tree::Double(*d),
        Some(any_value::Value::BytesValue(b)) => Tree::Bytes(Cow::Borrowed(b)),
        Some(any_value::Value::ArrayValue(a)) => Tree::Array(a.values.iter().map(|v| value_of(Some(v))).collect()),
        Some(any_value::Value::KvlistValue(kvs)) => Tree::Map(map_of(&kvs.values)),
    }
}

/// Go's `stringAttr`: the first of `keys` whose value is a non-empty string (`""` when none is).
pub fn string_attr<'m>(map: &'m Map<'_>, keys: &[&str]) -> &'m str {
    keys.iter()
        .find_map(|k| match map.get(*k) {
            Some(Tree::Str(s)) if !s.is_empty() => Some(s.as_ref()),
            _ => None,
        })
        .unwrap_or("")
}

/// A number `json.Marshal` cannot write (it fails the whole value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotFinite;

/// `json.Marshal` of a map, or [`NotFinite`] when one of its numbers is NaN or infinite.
pub fn marshal(map: &Map<'_>) -> Result<String, NotFinite> {
    let mut out = String::with_capacity(64);
    write_map(&mut out, map, Style::Marshal)?;
    Ok(out)
}

/// `json.Marshal` of a map, `{}` when it cannot be written (as the Go writer stores it).
pub fn marshal_or_empty(map: &Map<'_>) -> String {
    marshal(map).unwrap_or_else(|NotFinite| "{}".to_owned())
}

/// `canonicalAttributesJSON`: the display JSON of a metric point's attributes.
pub fn display(map: &Map<'_>) -> String {
    let mut out = String::with_capacity(64);
    // Display writes non-finite numbers as null: it cannot fail.
    let _ = write_map(&mut out, map, Style::Display);
    out
}

/// The recipe-v2 `attributes_hash`: lower-case hex md5 of the canonical bytes of the point's attributes, a newline,
/// `service_instance_id`, a newline, `scope_name`.
pub fn hash_v2(map: &Map<'_>, service_instance_id: &str, scope_name: &str) -> String {
    let mut out = String::with_capacity(64);
    canonical_map(&mut out, map);
    out.push('\n');
    out.push_str(service_instance_id);
    out.push('\n');
    out.push_str(scope_name);
    crate::hex::encode(&Md5::digest(out.as_bytes()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// `json.Marshal`.
    Marshal,
    /// `json.Encoder` with `SetEscapeHTML(false)` and `canonicalJSONFloat`.
    Display,
}

pub fn write_map(out: &mut String, map: &Map<'_>, style: Style) -> Result<(), NotFinite> {
    out.push('{');
    for (i, (k, v)) in map.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(out, k, style);
        out.push(':');
        write_tree(out, v, style)?;
    }
    out.push('}');
    Ok(())
}

pub fn write_tree(out: &mut String, t: &Tree<'_>, style: Style) -> Result<(), NotFinite> {
    match t {
        Tree::Null => out.push_str("null"),
        Tree::Str(s) => write_str(out, s, style),
        Tree::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Tree::Int(i) => out.push_str(&i.to_string()),
        Tree::Double(d) => match style {
            Style::Marshal if !d.is_finite() => return Err(NotFinite),
            Style::Marshal => out.push_str(&marshal_float(*d)),
            Style::Display => out.push_str(&display_float(*d)),
        },
        Tree::Bytes(b) => write_str(out, &base64::engine::general_purpose::STANDARD.encode(b), style),
        Tree::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_tree(out, item, style)?;
            }
            out.push(']');
        }
        Tree::Map(m) => write_map(out, m, style)?,
    }
    Ok(())
}

/// A JSON string as Go's `encoding/json` writes it: `\"`, `\\`, `\b \f \n \r \t`, other controls as `\u00xx`,
/// U+2028 and U+2029 escaped; with [`Style::Marshal`] also `<`, `>` and `&` (HTML escaping).
pub fn write_str(out: &mut String, s: &str, style: Style) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            '<' | '>' | '&' if style == Style::Marshal => {
                let b = c as u8;
                out.push_str("\\u00");
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0xf)]));
            }
            c if (c as u32) < 0x20 => {
                let b = c as u8;
                out.push_str("\\u00");
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0xf)]));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A finite float's shortest round-trip digits and decimal exponent: `d.ddd × 10^exp` (Rust's `{:e}` and Go's
/// shortest formatting choose the same digits).
fn shortest(f: f64) -> (bool, String, i32) {
    let text = format!("{f:e}");
    let (mantissa, exp) = text.split_once('e').unwrap_or((&text, "0"));
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    (negative, digits, exp.parse().unwrap_or(0))
}

/// `strconv.FormatFloat(f, 'f', -1, 64)`.
fn format_f(negative: bool, digits: &str, exp: i32) -> String {
    let mut out = String::with_capacity(digits.len() + 8);
    if negative {
        out.push('-');
    }
    if exp >= 0 {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            out.push_str(digits);
            out.extend(std::iter::repeat_n('0', int_len - digits.len()));
        } else {
            out.push_str(&digits[..int_len]);
            out.push('.');
            out.push_str(&digits[int_len..]);
        }
    } else {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-exp - 1) as usize));
        out.push_str(digits);
    }
    out
}

/// `strconv.FormatFloat(f, 'e', -1, 64)`: at least two exponent digits (`1e+21`, `5e-05`).
fn format_e(negative: bool, digits: &str, exp: i32) -> String {
    let mut out = String::with_capacity(digits.len() + 8);
    if negative {
        out.push('-');
    }
    out.push_str(&digits[..1]);
    if digits.len() > 1 {
        out.push('.');
        out.push_str(&digits[1..]);
    }
    out.push('e');
    out.push(if exp < 0 { '-' } else { '+' });
    let abs = exp.unsigned_abs();
    if abs < 10 {
        out.push('0');
    }
    out.push_str(&abs.to_string());
    out
}

/// `strconv.FormatFloat(f, 'f', -1, 64)` of a finite float.
pub fn plain_float(f: f64) -> String {
    let (negative, digits, exp) = shortest(f);
    format_f(negative, &digits, exp)
}

/// How `encoding/json` writes a float64: `'f'` unless `|f| < 1e-6` or `|f| >= 1e21` (then `'e'`, with `e-07`
/// shortened to `e-7`). Finite values only.
pub fn marshal_float(f: f64) -> String {
    let (negative, digits, exp) = shortest(f);
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let mut s = format_e(negative, &digits, exp);
        if exp < 0 && exp > -10 {
            // "e-07" → "e-7", as encoding/json cleans it up.
            let n = s.len();
            s.remove(n - 2);
        }
        s
    } else {
        format_f(negative, &digits, exp)
    }
}

/// Go's `canonicalJSONFloat`: `null` for NaN and infinities; one decimal for integral values under 1e15
/// (`42.0`); else `strconv.FormatFloat(f, 'g', -1, 64)` (exponent form below 1e-4 or from 1e6 on).
pub fn display_float(f: f64) -> String {
    if !f.is_finite() {
        return "null".to_owned();
    }
    let (negative, digits, exp) = shortest(f);
    if f == f.trunc() && f.abs() < 1e15 {
        let mut s = format_f(negative, &digits, exp);
        s.push_str(".0");
        return s;
    }
    if !(-4..6).contains(&exp) { format_e(negative, &digits, exp) } else { format_f(negative, &digits, exp) }
}

fn canonical_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        if c == '\\' || c == '"' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

fn canonical_map(out: &mut String, map: &Map<'_>) {
    out.push('{');
    for (i, (k, v)) in map.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        canonical_str(out, k);
        out.push(':');
        canonical(out, v);
    }
    out.push('}');
}

fn canonical(out: &mut String, t: &Tree<'_>) {
    match t {
        Tree::Null => out.push_str("null"),
        Tree::Str(s) => canonical_str(out, s),
        Tree::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Tree::Int(i) => out.push_str(&i.to_string()),
        Tree::Double(d) => {
            out.push('f');
            out.push_str(&crate::hex::encode(&d.to_bits().to_be_bytes()));
        }
        Tree::Bytes(b) => {
            out.push('b');
            out.push_str(&base64::engine::general_purpose::STANDARD.encode(b));
        }
        Tree::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(out, item);
            }
            out.push(']');
        }
        Tree::Map(m) => canonical_map(out, m),
    }
}
