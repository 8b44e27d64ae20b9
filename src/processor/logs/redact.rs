//! Secrets kept out of stored logs, as ServiceRadar's Elixir writer redacts them (reference-today §8.5): in the
//! attribute maps (attributes, resource and scope attributes) the value of a sensitive key becomes `[REDACTED]`
//! whatever it was, other strings get the text rules; the body gets the text rules. A key is sensitive when,
//! lower-cased with every run of characters outside `[a-z0-9_]` turned into `_`, it is one of the listed keys or
//! ends with `_` and one (`X-Api-Key` → `x_api_key`). The text rules, in order, case-insensitive:
//! 1. `nkey_seed => <<"…">>`, `jwt => <<"…">>` (Erlang terms in crash reports);
//! 2. `"nkey_seed": "…"` and the same for `jwt`, `token`, `password`, `secret`, `api_key` (JSON);
//! 3. `authorization=…`, `token: …` and the same for `password`, `secret`, `api_key`: the first run after the
//!    separator that holds no whitespace, `,`, `}` or `]` (so `authorization: Bearer abc` keeps `abc`, as there).
//!
//! Uses the OTLP attribute tree and serde_json values.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

use crate::processor::otlp::tree::{Map, Tree};

/// What a secret becomes.
pub const REDACTED: &str = "[REDACTED]";

const SENSITIVE_KEYS: &[&str] = &[
    "authorization",
    "api_key",
    "apikey",
    "bearer",
    "cookie",
    "credential",
    "credentials",
    "jwt",
    "password",
    "private_key",
    "secret",
    "secret_key",
    "seed",
    "signing_key",
    "token",
    "nkey_seed",
    "nkey",
];

/// PCRE's `\s` without Unicode: the ASCII white space.
const WS: &str = r"[\t\n\x0B\x0C\r ]";

struct Rule {
    regex: Regex,
    /// Whether the text after the secret is kept (rules 1 and 2 close a quote).
    closes: bool,
}

static RULES: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    let mut rules = Vec::new();
    for key in ["nkey_seed", "jwt"] {
        rules.push(Rule { regex: regex(&format!(r#"((?i-u:{key}){WS}*=>{WS}*<<")[^"]*(">>)"#)), closes: true });
    }
    for key in ["nkey_seed", "jwt", "token", "password", "secret", "api_key"] {
        rules.push(Rule { regex: regex(&format!(r#"("(?i-u:{key})"{WS}*:{WS}*")[^"]*(")"#)), closes: true });
    }
    for key in ["authorization", "token", "password", "secret", "api_key"] {
        rules.push(Rule {
            regex: regex(&format!(r"((?i-u:{key}){WS}*[=:]{WS}*)[^\t\n\x0B\x0C\r ,}}\]]+")),
            closes: false,
        });
    }
    rules
});

fn regex(pattern: &str) -> Regex {
    // The patterns are constants of this file: a typo fails every test at once.
    Regex::new(pattern).unwrap_or_else(|e| panic!("redaction pattern {pattern}: {e}"))
}

/// Whether the text could hold anything a rule matches (each rule needs one of these words), without lower-casing
/// the whole text.
fn may_hold_secret(text: &str) -> bool {
    const WORDS: [&[u8]; 6] = [b"nkey_seed", b"jwt", b"token", b"password", b"secret", b"api_key"];
    let bytes = text.as_bytes();
    let has = |word: &[u8]| bytes.windows(word.len()).any(|w| w.eq_ignore_ascii_case(word));
    WORDS.iter().any(|w| has(w)) || has(b"authorization")
}

/// The text rules applied to `text`; borrowed when nothing matched.
pub fn redact_text(text: &str) -> Cow<'_, str> {
    if !may_hold_secret(text) {
        return Cow::Borrowed(text);
    }
    let mut out = Cow::Borrowed(text);
    for rule in RULES.iter() {
        let replaced = if rule.closes {
            rule.regex.replace_all(&out, format!("${{1}}{REDACTED}${{2}}").as_str())
        } else {
            rule.regex.replace_all(&out, format!("${{1}}{REDACTED}").as_str())
        };
        if let Cow::Owned(s) = replaced {
            out = Cow::Owned(s);
        }
    }
    out
}

/// Whether values under `key` are secrets.
pub fn sensitive_key(key: &str) -> bool {
    let lower = key.to_lowercase();
    let mut normalized = String::with_capacity(lower.len());
    let mut in_run = false;
    for c in lower.chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
            normalized.push(c);
            in_run = false;
        } else if !in_run {
            normalized.push('_');
            in_run = true;
        }
    }
    SENSITIVE_KEYS.iter().any(|k| {
        normalized == *k
            || (normalized.len() > k.len()
                && normalized.ends_with(k)
                && normalized.as_bytes()[normalized.len() - k.len() - 1] == b'_')
    })
}

/// Redacts a JSON value in place (maps: sensitive keys; strings: the text rules).
pub fn redact_value(v: &mut Value) {
    match v {
        Value::Object(map) => redact_object(map),
        Value::Array(items) => items.iter_mut().for_each(redact_value),
        Value::String(s) => {
            if let Cow::Owned(r) = redact_text(s) {
                *s = r;
            }
        }
        _ => {}
    }
}

/// Redacts a JSON object in place.
pub fn redact_object(map: &mut serde_json::Map<String, Value>) {
    for (k, v) in map.iter_mut() {
        if sensitive_key(k) {
            *v = Value::String(REDACTED.to_owned());
        } else {
            redact_value(v);
        }
    }
}

/// Redacts an OTLP attribute map in place.
pub fn redact_map(map: &mut Map<'_>) {
    for (k, v) in map.iter_mut() {
        if sensitive_key(k) {
            *v = Tree::Str(Cow::Borrowed(REDACTED));
        } else {
            redact_tree(v);
        }
    }
}

fn redact_tree(t: &mut Tree<'_>) {
    match t {
        Tree::Map(m) => redact_map(m),
        Tree::Array(items) => items.iter_mut().for_each(redact_tree),
        Tree::Str(s) => {
            if let Cow::Owned(r) = redact_text(s) {
                *s = Cow::Owned(r);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_sensitive_by_their_normalized_tail() {
        for k in ["jwt", "X-Api-Key", "x_api_key", "Authorization", "user.password", "db password", "NKEY_SEED", "seed"]
        {
            assert!(sensitive_key(k), "{k}");
        }
        for k in ["safe", "tokens", "passwords_count", "mytoken", "api_keys", "seedling", "keyword"] {
            assert!(!sensitive_key(k), "{k}");
        }
    }

    // Ported from ServiceRadar's `logs_test.exs` (index id 67632486080), "redacts sensitive NATS credentials".
    #[test]
    fn erlang_terms_in_a_crash_report_are_redacted() {
        let body = r#"#{label => {gen_server,terminate},state => #{nkey_seed => <<"SENSITIVE_NKEY">>,jwt => <<"SENSITIVE_JWT">>}}"#;
        let out = redact_text(body);
        assert!(out.contains(r#"nkey_seed => <<"[REDACTED]">>"#), "{out}");
        assert!(out.contains(r#"jwt => <<"[REDACTED]">>"#), "{out}");
        assert!(!out.contains("SENSITIVE"), "{out}");
    }

    #[test]
    fn json_and_assignment_secrets_are_redacted_as_there() {
        assert_eq!(
            redact_text(r#"{"Password" : "hunter2", "user": "a"}"#),
            r#"{"Password" : "[REDACTED]", "user": "a"}"#
        );
        assert_eq!(redact_text("token=abc123,next=1"), "token=[REDACTED],next=1");
        assert_eq!(redact_text("authorization: Bearer abc"), "authorization: [REDACTED] abc");
        assert_eq!(redact_text("mytoken=x"), "mytoken=[REDACTED]", "keys are not word-bounded");
        assert_eq!(redact_text("API_KEY:  k-1}"), "API_KEY:  [REDACTED]}");
        assert!(matches!(redact_text("nothing to see"), Cow::Borrowed(_)));
    }

    #[test]
    fn maps_redact_sensitive_keys_whatever_their_value() {
        let mut v: Value = serde_json::json!({"jwt": "SENSITIVE_ATTR_JWT", "nested": {"nkey_seed": {"deep": 1}},
            "safe": "kept", "list": ["password=p"]});
        redact_value(&mut v);
        assert_eq!(
            v,
            serde_json::json!({"jwt": "[REDACTED]", "nested": {"nkey_seed": "[REDACTED]"}, "safe": "kept",
                "list": ["password=[REDACTED]"]})
        );
    }
}
