//! Trace and span ids in ServiceRadar's canonical form (reference-today §5.2): 32 (trace) or 16 (span)
//! lower-case hex characters, from whatever shape a producer sent: raw protobuf bytes, ASCII hex (also inside
//! a bytes field, as the Erlang exporter sends it: never hex-encoded twice), legacy double hex, standard base64.
//! Absent and all-zero ids are no id; anything else is invalid.
//!
//! Uses nothing of the project but [`crate::hex`].

use base64::Engine as _;

/// Bytes of a trace id.
pub const TRACE: usize = 16;
/// Bytes of a span (or parent span) id.
pub const SPAN: usize = 8;

/// What an id normalises to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Id {
    /// Canonical lower-case hex.
    Valid(String),
    /// Empty or all zeros: no id (a root span's parent, a log outside a trace).
    Absent,
    /// Not an id in any known shape.
    Invalid,
}

impl Id {
    /// The canonical text, `None` unless valid.
    pub fn text(self) -> Option<String> {
        match self {
            Id::Valid(s) => Some(s),
            _ => None,
        }
    }
}

fn is_hex(b: &[u8]) -> bool {
    !b.is_empty() && b.iter().all(u8::is_ascii_hexdigit)
}

fn unhex(b: &[u8]) -> Option<Vec<u8>> {
    let nibble = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    b.chunks(2).map(|p| Some(nibble(p[0])? << 4 | nibble(*p.get(1)?)?)).collect()
}

/// Go's `normalizeOTELID`: raw bytes, ASCII hex, double hex, then base64; all-zero is [`Id::Absent`].
pub fn normalize(raw: &[u8], byte_len: usize) -> Id {
    // Zeros in any length are no id (ServiceRadar's Elixir writer: nil; its Go writer: "", counted rejected
    // for lengths it does not decode).
    if raw.is_empty() || raw.iter().all(|b| *b == 0) || raw.iter().all(|b| *b == b'0') {
        return Id::Absent;
    }
    let hex_len = byte_len * 2;
    let mut canonical = None;
    if raw.len() == byte_len {
        canonical = Some(crate::hex::encode(raw));
    } else if raw.len() == hex_len && is_hex(raw) {
        canonical = Some(String::from_utf8_lossy(raw).to_ascii_lowercase());
    } else if raw.len() == hex_len * 2 && is_hex(raw) {
        canonical =
            unhex(raw).filter(|inner| is_hex(inner)).map(|inner| String::from_utf8_lossy(&inner).to_ascii_lowercase());
    }
    if canonical.is_none() {
        canonical = base64::engine::general_purpose::STANDARD
            .decode(raw)
            .ok()
            .filter(|d| d.len() == byte_len)
            .map(|d| crate::hex::encode(&d));
    }
    match canonical {
        None => Id::Invalid,
        Some(c) if c.bytes().all(|b| b == b'0') => Id::Absent,
        Some(c) => Id::Valid(c),
    }
}
