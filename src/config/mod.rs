//! `streams.toml`: the validated configuration the daemon runs with, in types that cannot be invalid. The raw
//! serde shape is [`raw`], its validation [`validate`] (every error names file, line and key), secrets and
//! `${VAR}` interpolation [`secret`]; every secret the configuration holds is remembered for scrubbing
//! ([`Config::remember_secrets`]).
//!
//! Uses nothing of the project but the [`crate::redact`] leaf: what depends on a processor (its batch defaults,
//! the retention of its tables) comes in a [`Defaults`] table that the processors supply
//! ([`crate::processor::defaults`]).

mod locate;
pub mod nats_url;
mod raw;
mod secret;
mod stream;
#[cfg(test)]
mod tests;
mod types;
mod validate;

use std::path::Path;

pub use crate::redact::redact_url;
pub use secret::{Secret, interpolate};
pub use stream::{check_name, check_subject_filter, subject_matches};
pub use types::*;

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
            // The file's own credentials were taken out of its URL; the variable's come out the same way.
            let (url, auth) = nats_url::take_credentials(&url, &config.nats.auth)
                .map_err(|message| ConfigError::Environment { name: ENV_NATS_URL, message })?;
            (config.nats.url, config.nats.auth) = (url, auth);
        }
        if let Some(url) = std::env::var(ENV_DATABASE_URL).ok().filter(|v| !v.is_empty()) {
            config.database.url = url;
        }
        Ok(config)
    }

    /// Remembers every secret this configuration holds ([`crate::redact::remember`]), so that nothing printed
    /// shows it: the passwords of the database and NATS URLs, the NATS password or token (also from their files),
    /// what the nkey seed, creds and database password files hold, the OTLP exporter's header values.
    pub fn remember_secrets(&self) {
        use crate::redact::{remember, secrets_of_url};
        for s in secrets_of_url(&self.database.url).iter().chain(&secrets_of_url(&self.nats.url)) {
            remember(s);
        }
        let file_lines = |path: &Path| {
            // Each line of a secret file (a creds file holds a JWT and a seed between marker lines).
            for line in std::fs::read_to_string(path).unwrap_or_default().lines() {
                if !line.trim().is_empty() && !line.contains("-----") {
                    remember(line);
                }
            }
        };
        match &self.nats.auth {
            NatsAuth::UserPassword { password, .. } => drop(password.read()),
            NatsAuth::Token(token) => drop(token.read()),
            NatsAuth::Creds(path) | NatsAuth::NkeySeed(path) => file_lines(path),
            NatsAuth::None => {}
        }
        if let Some(file) = &self.database.password_file {
            drop(Secret::File(file.clone()).read());
        }
        for (_, value) in self.otel.iter().flat_map(|o| &o.headers) {
            if let Ok(v) = value.to_str() {
                remember(v);
                // "Bearer <token>": the token alone too.
                if let Some((_, token)) = v.split_once(' ') {
                    remember(token);
                }
            }
        }
    }

    /// Parses and validates `text` (read from `path`, named in errors). No environment is consulted.
    pub fn parse(path: &Path, text: &str, defaults: &Defaults) -> Result<Config, ConfigError> {
        validate::parse(path, text, defaults)
    }
}
