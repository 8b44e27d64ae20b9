//! Secrets: a value kept in the file or in a file of its own (remembered for scrubbing whenever read), and
//! `${VAR}` interpolation of the environment into the file.
//!
//! Uses [`crate::redact`] (a leaf).

use std::fmt;
use std::path::PathBuf;

/// A secret written in the file or kept in a file of its own (re-read at each use). Never printed.
#[derive(Clone, PartialEq)]
pub enum Secret {
    /// The value itself.
    Value(String),
    /// A file holding it (trailing whitespace trimmed).
    File(PathBuf),
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Value(_) => f.write_str("<redacted>"),
            Secret::File(p) => write!(f, "<from {}>", p.display()),
        }
    }
}

impl Secret {
    /// The secret's current value, remembered so that nothing printed from now on shows it
    /// ([`crate::redact::scrub`]).
    pub fn read(&self) -> Result<String, String> {
        let v = match self {
            Secret::Value(v) => v.clone(),
            Secret::File(p) => {
                let v = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
                let v = v.trim_end().to_owned();
                if v.is_empty() {
                    return Err(format!("{}: is empty", p.display()));
                }
                v
            }
        };
        crate::redact::remember(&v);
        Ok(v)
    }
}

/// Replaces `${NAME}` and `${NAME:-default}` on every line that is not a comment. A variable that is unset (or
/// empty) without a default is an error naming its line: `(line, "${NAME}", message)`. Values are inserted as
/// they are, so secrets belong in `*_file` settings rather than in variables holding quotes.
pub fn interpolate(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, (usize, String, String)> {
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if line.trim_start().starts_with('#') || !line.contains("${") {
            out.push_str(line);
            continue;
        }
        let mut rest = line;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let Some(len) = rest[start..].find('}') else {
                return Err((i + 1, rest[start..].trim_end().to_owned(), "unclosed ${".to_owned()));
            };
            let inner = &rest[start + 2..start + len];
            let (name, default) = match inner.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (inner, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err((i + 1, format!("${{{inner}}}"), "not a variable name".to_owned()));
            }
            match (lookup(name).filter(|v| !v.is_empty()), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => {
                    return Err((
                        i + 1,
                        format!("${{{name}}}"),
                        format!("environment variable {name} is not set (write ${{{name}:-default}} for a default)"),
                    ));
                }
            }
            rest = &rest[start + len + 1..];
        }
        out.push_str(rest);
    }
    Ok(out)
}
