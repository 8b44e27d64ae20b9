//! Who may post: bearer tokens from a file of SHA-256 hashes (never the tokens themselves), each with the subject
//! patterns it may post to and its own rate limit (a token bucket). The file is re-read when it changes.
//!
//! ```toml
//! [[token]]
//! name = "webhooks"                  # for logs and metrics; never the token
//! sha256 = "9f86d081884c7d65..."     # `db-event-writer hash-token < token` prints it
//! subjects = ["events.>"]            # what it may post to (default: every subject a [[stream]] consumes)
//! rate = 100                         # requests (batch items) per second (default: no limit)
//! burst = 200                        # default: rate
//! ```
//!
//! Uses nothing of the project but [`crate::hex`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;

/// SHA-256 of a token, lower-case hex (what the file stores).
pub fn hash(token: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    crate::hex::encode(digest.as_ref())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    token: Vec<RawToken>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    name: String,
    sha256: String,
    #[serde(default)]
    subjects: Option<Vec<String>>,
    #[serde(default)]
    rate: Option<f64>,
    #[serde(default)]
    burst: Option<f64>,
}

/// One token's rights.
#[derive(Debug)]
pub struct Token {
    /// Its name (safe to log).
    pub name: String,
    hash: [u8; 32],
    /// Subject patterns it may post to; `None`: any a `[[stream]]` consumes.
    pub subjects: Option<Vec<String>>,
    limit: Option<Limit>,
}

/// A token bucket.
#[derive(Debug)]
struct Limit {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

/// Why a request may not go on.
#[derive(Debug, PartialEq)]
pub enum Denied {
    /// No token, or not one of ours.
    Unauthenticated,
    /// Over its rate: (rate, burst, seconds until it may retry).
    RateLimited(f64, f64, u64),
}

impl Token {
    /// May it post to `subject`?
    pub fn allows(&self, subject: &str) -> bool {
        self.subjects.as_ref().is_none_or(|s| s.iter().any(|f| super::limits::subject_matches(f, subject)))
    }

    /// Takes `n` requests from its bucket.
    pub fn take(&self, n: usize) -> Result<(), Denied> {
        let Some(limit) = &self.limit else { return Ok(()) };
        let Ok(mut state) = limit.state.lock() else { return Ok(()) };
        let now = Instant::now();
        let (tokens, last) = *state;
        let tokens = (tokens + now.duration_since(last).as_secs_f64() * limit.rate).min(limit.burst);
        let need = n as f64;
        if tokens >= need {
            *state = (tokens - need, now);
            Ok(())
        } else {
            *state = (tokens, now);
            let wait = ((need - tokens) / limit.rate).ceil().max(1.0) as u64;
            Err(Denied::RateLimited(limit.rate, limit.burst, wait))
        }
    }
}

/// The tokens in force, swapped whole when the file changes.
#[derive(Clone, Default)]
pub struct Tokens {
    current: Arc<RwLock<Arc<Vec<Token>>>>,
}

fn parse_hex(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Reads and checks a tokens file; errors name the file and the token.
pub fn load(path: &Path) -> Result<Vec<Token>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let raw: RawFile = toml::from_str(&text).map_err(|e| format!("{}: {}", path.display(), e.message()))?;
    let mut tokens = Vec::with_capacity(raw.token.len());
    for (i, t) in raw.token.into_iter().enumerate() {
        let at = format!("{}: token[{i}] ({})", path.display(), t.name);
        let hash = parse_hex(&t.sha256).ok_or_else(|| format!("{at}: sha256 must be 64 hex digits"))?;
        if let Some(subjects) = &t.subjects {
            for s in subjects {
                crate::config::check_subject_filter(s).map_err(|e| format!("{at}: subjects: {e}"))?;
            }
        }
        let limit = match (t.rate, t.burst) {
            (None, None) => None,
            (None, Some(_)) => return Err(format!("{at}: burst needs rate")),
            (Some(rate), burst) => {
                let burst = burst.unwrap_or(rate);
                if !(rate > 0.0 && rate.is_finite() && burst >= 1.0 && burst.is_finite()) {
                    return Err(format!("{at}: rate must be > 0 and burst ≥ 1"));
                }
                Some(Limit { rate, burst, state: Mutex::new((burst, Instant::now())) })
            }
        };
        tokens.push(Token { name: t.name, hash, subjects: t.subjects, limit });
    }
    Ok(tokens)
}

impl Tokens {
    /// Tokens from `path` (failing when it is unusable: the daemon does not start without its guard).
    pub fn from_file(path: &Path) -> Result<Tokens, String> {
        let tokens = Tokens::default();
        tokens.set(load(path)?);
        Ok(tokens)
    }

    fn set(&self, tokens: Vec<Token>) {
        if let Ok(mut c) = self.current.write() {
            *c = Arc::new(tokens);
        }
    }

    /// The token presented in an `Authorization: Bearer …` header, compared in constant time against every hash.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<(Arc<Vec<Token>>, usize), Denied> {
        let presented = authorization
            .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(Denied::Unauthenticated)?;
        let digest = ring::digest::digest(&ring::digest::SHA256, presented.as_bytes());
        let tokens = self.current.read().map(|c| Arc::clone(&c)).unwrap_or_default();
        // Every hash is compared in full, whichever matches: the time taken says nothing about the tokens.
        let mut found = None;
        for (i, t) in tokens.iter().enumerate() {
            let diff = t.hash.iter().zip(digest.as_ref()).fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if diff == 0 && found.is_none() {
                found = Some(i);
            }
        }
        found.map(|i| (tokens, i)).ok_or(Denied::Unauthenticated)
    }

    /// Re-reads `path` whenever its modification time or size changes; a bad file is logged and the tokens in
    /// force are kept.
    pub async fn watch(self, path: PathBuf, every: Duration, shutdown: tokio_util::sync::CancellationToken) {
        let stamp =
            |p: &Path| std::fs::metadata(p).ok().map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()));
        let mut seen = stamp(&path);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let now = stamp(&path);
            if now == seen {
                continue;
            }
            seen = now;
            match load(&path) {
                Ok(tokens) => {
                    let names: Vec<&str> = tokens.iter().map(|t| t.name.as_str()).collect();
                    tracing::info!(file = %path.display(), tokens = ?names, "ingest tokens reloaded");
                    self.set(tokens);
                }
                Err(e) => tracing::error!(error = %e, "ingest tokens file rejected; the tokens in force are kept"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> (crate::ingest::tokens::Tokens, PathBuf) {
        let path = std::env::temp_dir().join(format!("dbew-tokens-{}-{}.toml", std::process::id(), text.len()));
        std::fs::write(&path, text).unwrap();
        (Tokens::from_file(&path).unwrap(), path)
    }

    #[test]
    fn tokens_authenticate_by_hash_and_carry_their_rights() {
        let text = format!(
            "[[token]]\nname = \"all\"\nsha256 = \"{}\"\n\n[[token]]\nname = \"events\"\nsha256 = \"{}\"\nsubjects = [\"events.>\"]\nrate = 1\nburst = 2\n",
            hash("s3cret-all"),
            hash("s3cret-ev")
        );
        let (tokens, path) = file(&text);
        assert_eq!(tokens.authenticate(None).unwrap_err(), Denied::Unauthenticated);
        assert_eq!(tokens.authenticate(Some("Bearer nope")).unwrap_err(), Denied::Unauthenticated);
        assert_eq!(tokens.authenticate(Some("Basic s3cret-all")).unwrap_err(), Denied::Unauthenticated);
        let (all, i) = tokens.authenticate(Some("Bearer s3cret-all")).unwrap();
        assert!(all[i].allows("anything.at.all") && all[i].take(1000).is_ok());
        let (ts, i) = tokens.authenticate(Some("Bearer s3cret-ev")).unwrap();
        let ev = &ts[i];
        assert_eq!(ev.name, "events");
        assert!(ev.allows("events.ocsf.processed") && !ev.allows("telemetry.h"));
        assert!(ev.take(1).is_ok() && ev.take(1).is_ok());
        assert!(matches!(ev.take(1), Err(Denied::RateLimited(r, b, 1)) if r == 1.0 && b == 2.0));
        assert!(matches!(ev.take(5), Err(Denied::RateLimited(_, _, s)) if s >= 3));
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn bad_files_name_the_token_and_the_problem() {
        let dir = std::env::temp_dir().join(format!("dbew-tokens-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (text, expect) in [
            ("[[token]]\nname = \"a\"\nsha256 = \"abc\"\n", "token[0] (a): sha256 must be 64 hex digits"),
            (
                &format!("[[token]]\nname = \"b\"\nsha256 = \"{}\"\nsubjects = [\"a..b\"]\n", hash("x")),
                "token[0] (b): subjects:",
            ),
            (&format!("[[token]]\nname = \"c\"\nsha256 = \"{}\"\nburst = 3\n", hash("x")), "burst needs rate"),
            (&format!("[[token]]\nname = \"d\"\nsha256 = \"{}\"\nrate = 0\n", hash("x")), "rate must be > 0"),
            ("[[token]]\nname = \"e\"\nsha256 = \"x\"\nextra = 1\n", "unknown field"),
        ] {
            let path = dir.join("t.toml");
            std::fs::write(&path, text).unwrap();
            let e = load(&path).unwrap_err();
            assert!(e.contains(expect), "{e}");
        }
        assert!(load(&dir.join("absent.toml")).unwrap_err().contains("absent.toml"));
        let _ = std::fs::remove_dir_all(dir);
    }
}
