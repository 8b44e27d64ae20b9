//! `streams.toml`: the validated configuration the daemon runs with, in types that cannot be invalid. The raw
//! serde shape is [`raw`], its validation [`validate`] (every error names file, line and key), secrets,
//! `${VAR}` interpolation and redaction [`secret`].
//!
//! Uses nothing of the project: what depends on a processor (its batch defaults, the retention of its tables)
//! comes in a [`Defaults`] table that the processors supply ([`crate::processor::defaults`]).

mod raw;
mod secret;
#[cfg(test)]
mod tests;
mod types;
mod validate;

use std::path::Path;

pub use secret::{Secret, interpolate, redact_url};
pub use types::*;
pub use validate::{check_name, check_subject_filter};

impl Config {
    /// Reads `path`, replaces `${VAR}` / `${VAR:-default}` with the environment's values (outside comments),
    /// parses and validates it with `defaults`, then applies the environment overrides (`NATS_URL`,
    /// `DATABASE_URL`). (`crate::load_config` passes the processors' defaults.)
    pub fn load(path: &Path, defaults: &Defaults) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { file: path.to_owned(), source })?;
        let text = interpolate(&text, |name| std::env::var(name).ok())
            .map_err(|(line, key, message)| ConfigError::Invalid { file: path.to_owned(), line, key, message })?;
        let mut config = Config::parse(path, &text, defaults)?;
        if let Some(url) = std::env::var(ENV_NATS_URL).ok().filter(|v| !v.is_empty()) {
            config.nats.url = url;
        }
        if let Some(url) = std::env::var(ENV_DATABASE_URL).ok().filter(|v| !v.is_empty()) {
            config.database.url = url;
        }
        Ok(config)
    }

    /// Parses and validates `text` (read from `path`, named in errors). No environment is consulted.
    pub fn parse(path: &Path, text: &str, defaults: &Defaults) -> Result<Config, ConfigError> {
        validate::parse(path, text, defaults)
    }
}
