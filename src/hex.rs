//! Lower-case hexadecimal, the one encoder the daemon has: trace and span ids, md5 keys, UUIDs, token hashes.
//! By table, not `format!("{:02x}")`: some of this runs once per row.
//!
//! Uses nothing of the project.

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Appends `bytes` as lower-case hex.
pub fn push(out: &mut String, bytes: &[u8]) {
    out.reserve(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
}

/// `bytes` as lower-case hex (`""` for none).
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    push(&mut out, bytes);
    out
}

/// Exactly `2 × N` hex digits (either case) as `N` bytes.
pub fn decode<const N: usize>(text: &str) -> Option<[u8; N]> {
    let t = text.as_bytes();
    if t.len() != 2 * N {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, b) in out.iter_mut().enumerate() {
        *b = (nibble(t[2 * i])? << 4) | nibble(t[2 * i + 1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        assert_eq!(encode(&[0x00, 0xab, 0x10, 0xff]), "00ab10ff");
        assert_eq!(encode(&[]), "");
        assert_eq!(decode::<4>("00AB10ff"), Some([0x00, 0xab, 0x10, 0xff]));
        assert_eq!(decode::<2>("00ab10"), None);
        assert_eq!(decode::<2>("zzzz"), None);
    }
}
