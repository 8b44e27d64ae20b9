//! Where a configuration error is: byte spans turned into `file:line: key: message` errors, and the value checks
//! every section shares (ranges, durations).
//!
//! Uses the config types only.

use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use super::types::ConfigError;

/// Turns byte spans into `file:line: key: message` errors.
pub(super) struct Locator<'a> {
    pub(super) file: &'a Path,
    text: &'a str,
}

impl<'a> Locator<'a> {
    /// Errors for `text`, read from `file`.
    pub(super) fn new(file: &'a Path, text: &'a str) -> Self {
        Locator { file, text }
    }

    fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end].iter().filter(|&&b| b == b'\n').count() + 1
    }

    pub(super) fn err(
        &self,
        span: std::ops::Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_owned(),
            line: self.line_of(span.start),
            key: key.into(),
            message: message.into(),
        }
    }

    pub(super) fn toml_error(&self, e: &toml::de::Error, key: String) -> ConfigError {
        let message = e.message().trim().to_owned();
        // serde names an unknown key only in its message; lift it into the key path.
        let key = match unknown_field(&message) {
            Some(field) if key.is_empty() => field.to_owned(),
            Some(field) if !key.ends_with(field) => format!("{key}.{field}"),
            _ if key.is_empty() => "(file)".to_owned(),
            _ => key,
        };
        self.err(e.span().unwrap_or(0..0), key, message)
    }
}

fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split('`').next()
}

pub(super) fn positive(v: &Spanned<i64>, min: i64, max: i64) -> Result<i64, String> {
    let v = *v.get_ref();
    if (min..=max).contains(&v) { Ok(v) } else { Err(format!("{v} is out of range {min}..={max}")) }
}

pub(super) fn duration(at: &Locator<'_>, value: &Spanned<String>, key: &str) -> Result<Duration, ConfigError> {
    let d = humantime::parse_duration(value.get_ref().trim()).map_err(|e| {
        at.err(
            value.span(),
            key,
            format!("bad duration {:?}: {e} (write e.g. \"500ms\", \"1s\", \"7d\")", value.get_ref()),
        )
    })?;
    if d.is_zero() {
        return Err(at.err(value.span(), key, "must be greater than zero"));
    }
    Ok(d)
}

pub(super) fn opt_duration(
    at: &Locator<'_>,
    value: Option<&Spanned<String>>,
    key: &str,
) -> Result<Option<Duration>, ConfigError> {
    value.map(|v| duration(at, v, key)).transpose()
}
