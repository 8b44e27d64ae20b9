//! What must never be printed, in two layers:
//! - [`redact_url`] removes credentials from connection strings by parsing them: URLs whose password holds any
//!   character (`/`, `?`, `#`, `@`), comma-separated URL lists, secret query parameters (`?password=…`), and libpq
//!   `key=value` strings (`password=… `, quoted or not);
//! - the secret values the configuration holds (passwords, tokens, nkey seeds, what password and token files
//!   hold) are [`remember`]ed, and [`scrub`] replaces them in any text before it is printed: every log line
//!   ([`ScrubWriter`]), every CLI output and error, the metrics, the reasons of dead letters.
//!
//! A secret shorter than [`MIN_SCRUBBED`] characters is not scrubbed by value (it would erase ordinary words from
//! every line); the parsing layer still removes it from connection strings.
//!
//! Uses nothing of the project.

use std::borrow::Cow;
use std::io::Write;
use std::sync::RwLock;

/// What a secret becomes.
pub const MASK: &str = "***";

/// Shortest secret scrubbed by value.
pub const MIN_SCRUBBED: usize = 4;

/// Query and `key=value` parameters whose values are secrets.
const SECRET_PARAMS: &[&str] =
    &["password", "pass", "pwd", "sslpassword", "token", "secret", "api_key", "apikey", "access_token", "auth_token"];

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

fn is_secret_param(key: &str) -> bool {
    SECRET_PARAMS.iter().any(|p| key.trim().eq_ignore_ascii_case(p))
}

/// Credentials removed from a connection string (or a comma-separated list of URLs, or libpq `key=value`s).
pub fn redact_url(text: &str) -> String {
    if text.contains("://") {
        // A list `nats://a:b@h1:4222,nats://c:d@h2:4222`: every element is a URL of its own.
        return split_urls(text).iter().map(|u| redact_one(u)).collect::<Vec<_>>().join(",");
    }
    if text.contains('=') {
        return redact_key_values(text);
    }
    text.to_owned()
}

/// Splits a URL list at the commas that start another URL (`,scheme://`, white space allowed after the comma);
/// a comma inside a password stays.
pub fn split_urls(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    for (at, _) in text.match_indices(',') {
        let next = text[at + 1..].trim_start();
        let scheme_len =
            next.bytes().take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')).count();
        if scheme_len > 0 && next[scheme_len..].starts_with("://") {
            parts.push(&text[start..at]);
            start = at + 1;
        }
    }
    parts.push(&text[start..]);
    parts
}

/// One URL: the user info up to the **last** `@` is the credential (a password may hold `/`, `?` or `@`
/// unencoded; hiding too much is the safe error), then secret query parameters.
fn redact_one(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return redact_key_values(url) };
    let (authority, tail) = match rest.rfind('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            let user = userinfo.split_once(':').map(|(u, _)| u);
            let masked = match user {
                Some(u) => format!("{u}:{MASK}@"),
                None => format!("{MASK}@"),
            };
            (masked, &rest[at + 1..])
        }
        None => (String::new(), rest),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if is_secret_param(k) => format!("{k}={MASK}"),
                    _ => kv.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

/// The `key=value` pairs of a libpq string as (key, value span); a value is quoted (`'…'`, `\'` escaping) or runs
/// to the next white space.
fn key_values(text: &str) -> Vec<(&str, std::ops::Range<usize>)> {
    let mut pairs = Vec::new();
    let mut from = 0;
    while let Some(eq) = text[from..].find('=').map(|e| from + e) {
        let key = text[from..eq].trim().rsplit(char::is_whitespace).next().unwrap_or("");
        let mut start = eq + 1;
        while text[start..].starts_with(char::is_whitespace) {
            start += 1;
        }
        let end = if text[start..].starts_with('\'') {
            let mut escaped = false;
            let mut end = text.len();
            for (i, c) in text[start + 1..].char_indices() {
                match c {
                    '\\' if !escaped => escaped = true,
                    '\'' if !escaped => {
                        end = start + 1 + i + 1;
                        break;
                    }
                    _ => escaped = false,
                }
            }
            end
        } else {
            text[start..].find(char::is_whitespace).map_or(text.len(), |w| start + w)
        };
        pairs.push((key, start..end));
        from = end.max(eq + 1);
    }
    pairs
}

/// libpq `key=value key='quoted value'`: secret values masked.
fn redact_key_values(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (key, span) in key_values(text) {
        if is_secret_param(key) {
            out.push_str(&text[last..span.start]);
            out.push_str(MASK);
            last = span.end;
        }
    }
    out.push_str(&text[last..]);
    out
}

/// The secrets of a connection string, in every form [`redact_url`] removes them from (and percent-decoded).
pub fn secrets_of_url(text: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    if text.contains("://") {
        for url in split_urls(text) {
            let Some((scheme, rest)) = url.split_once("://") else { continue };
            let tail = match rest.rfind('@') {
                Some(at) => {
                    let userinfo = &rest[..at];
                    match userinfo.split_once(':') {
                        Some((_, password)) => found.push(password.to_owned()),
                        // A bare user name for PostgreSQL; for NATS a bare userinfo is a token.
                        None if scheme.starts_with("postgres") => {}
                        None => found.push(userinfo.to_owned()),
                    }
                    &rest[at + 1..]
                }
                None => rest,
            };
            if let Some((_, query)) = tail.split_once('?') {
                for kv in query.split('&') {
                    if let Some((k, v)) = kv.split_once('=')
                        && is_secret_param(k)
                    {
                        found.push(v.to_owned());
                    }
                }
            }
        }
    } else {
        for (key, span) in key_values(text) {
            if is_secret_param(key) {
                let v = &text[span];
                let v = v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')).unwrap_or(v);
                found.push(v.replace("\\'", "'"));
            }
        }
    }
    let decoded: Vec<String> = found.iter().filter_map(|s| percent_decode(s)).collect();
    found.extend(decoded);
    found.retain(|s| !s.is_empty());
    found.dedup();
    found
}

/// `s` with its `%XX` escapes decoded; `None` when it has none (or decodes to something that is not UTF-8).
pub fn percent_decode(s: &str) -> Option<String> {
    if !s.contains('%') {
        return None;
    }
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (b.get(i + 1).copied().and_then(hex), b.get(i + 2).copied().and_then(hex))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Remembers a secret value, so [`scrub`] removes it from whatever is printed from now on.
pub fn remember(secret: &str) {
    let secret = secret.trim();
    if secret.chars().count() < MIN_SCRUBBED {
        return;
    }
    if let Ok(mut all) = SECRETS.write()
        && !all.iter().any(|s| s == secret)
    {
        all.push(secret.to_owned());
        // Longest first: a secret containing another is masked whole.
        all.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }
}

/// `text` with every remembered secret masked; borrowed when it holds none.
pub fn scrub(text: &str) -> Cow<'_, str> {
    let Ok(all) = SECRETS.read() else { return Cow::Borrowed(text) };
    let mut out = Cow::Borrowed(text);
    for s in all.iter() {
        if out.contains(s.as_str()) {
            out = Cow::Owned(out.replace(s.as_str(), MASK));
        }
    }
    out
}

/// A log writer that scrubs each formatted line before it reaches stderr (tracing-subscriber formats an event
/// into one buffer and writes it with one call).
#[derive(Debug, Clone, Copy, Default)]
pub struct ScrubWriter;

impl Write for ScrubWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        std::io::stderr().write_all(scrub(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for ScrubWriter {
    type Writer = ScrubWriter;

    fn make_writer(&'a self) -> Self::Writer {
        ScrubWriter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_with_any_character_are_removed_from_urls() {
        for (url, want) in [
            ("postgres://u:pw@h:5432/db", "postgres://u:***@h:5432/db"),
            ("postgres://postgres:S3cr/etSlash@127.0.0.1/db", "postgres://postgres:***@127.0.0.1/db"),
            ("postgres://postgres:S3cr?et@127.0.0.1/db", "postgres://postgres:***@127.0.0.1/db"),
            ("postgres://u:p@ss#w@h/db", "postgres://u:***@h/db"),
            ("nats://tok@h:4222", "nats://***@h:4222"),
            ("postgres://h/db?user=u&password=pw", "postgres://h/db?user=u&password=***"),
            ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
            ("nats://a:S3cr/et1@h1:4222,nats://b:S3cr/et2@h2:4222", "nats://a:***@h1:4222,nats://b:***@h2:4222"),
            ("nats://a:x,y@h1:4222", "nats://a:***@h1:4222"),
        ] {
            assert_eq!(redact_url(url), want, "{url}");
        }
    }

    #[test]
    fn libpq_key_values_lose_their_password() {
        assert_eq!(redact_url("host=db password=KvS3cret dbname=x"), "host=db password=*** dbname=x");
        assert_eq!(redact_url("host=db password = 'a \\' secret' user=u"), "host=db password = *** user=u");
        assert_eq!(redact_url("host=db user=u"), "host=db user=u");
    }

    #[test]
    fn the_secrets_of_a_url_are_what_redaction_removes() {
        assert_eq!(secrets_of_url("postgres://postgres:S3cr/etSlash@127.0.0.1/db"), ["S3cr/etSlash"]);
        assert_eq!(secrets_of_url("postgres://u:p%40ss@h/db"), ["p%40ss", "p@ss"]);
        assert_eq!(secrets_of_url("host=db password=KvS3cret dbname=x"), ["KvS3cret"]);
        assert_eq!(secrets_of_url("host=db password='a \\' b' x=1"), ["a ' b"]);
        assert_eq!(secrets_of_url("nats://a:one1@h1,nats://b:two2@h2"), ["one1", "two2"]);
        assert_eq!(secrets_of_url("nats://tok3n@h"), ["tok3n"]);
        assert_eq!(secrets_of_url("nats://127.0.0.1:4222"), Vec::<String>::new());
        assert_eq!(
            secrets_of_url("postgres://postgres@127.0.0.1/db"),
            Vec::<String>::new(),
            "a user name is no secret"
        );
    }

    #[test]
    fn remembered_secrets_are_scrubbed_and_short_ones_are_not() {
        remember("hunter2-secret");
        remember("ab");
        assert_eq!(scrub("login with hunter2-secret failed"), "login with *** failed");
        assert_eq!(scrub("ab is fine"), "ab is fine");
        assert!(matches!(scrub("nothing here"), Cow::Borrowed(_)));
    }
}
