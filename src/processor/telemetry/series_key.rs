//! `series_key`: the md5 identity of a series, computed exactly as the SQL `build_timeseries_series_key` that
//! `migrate` installs computes it (reference §8.2, reference-today §3.2), so a redelivered sample hits the
//! primary key. Which tag keys never identify a series is configuration ([`Volatile`], from
//! `[database.series_key] volatile_tag_keys`); the SQL function is installed from the same list.
//!
//! Uses nothing of the project but [`crate::hex`].

use md5::{Digest, Md5};

/// The inputs of ServiceRadar's `build_timeseries_series_key`.
#[derive(Debug, Default, Clone, Copy)]
pub struct SeriesIdentity<'a> {
    /// `metric_type`.
    pub metric_type: Option<&'a str>,
    /// `metric_name`.
    pub metric_name: Option<&'a str>,
    /// `partition`.
    pub partition: Option<&'a str>,
    /// `agent_id`.
    pub agent_id: Option<&'a str>,
    /// `device_id`.
    pub device_id: Option<&'a str>,
    /// `target_device_ip`.
    pub target_device_ip: Option<&'a str>,
    /// `if_index`.
    pub if_index: Option<i32>,
}

/// The tag keys left out of the key, sorted for binary search.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Volatile(Vec<String>);

impl Volatile {
    /// From the configured list.
    pub fn new(keys: &[String]) -> Self {
        let mut keys = keys.to_vec();
        keys.sort();
        keys.dedup();
        Volatile(keys)
    }

    /// Whether `key` is left out.
    pub fn contains(&self, key: &str) -> bool {
        self.0.binary_search_by(|k| k.as_str().cmp(key)).is_ok()
    }
}

/// `<len(prefix+name)>:<prefix><name>=<len(value)>:<value>`, without `write!` (once per component of every row).
fn push_item(out: &mut String, prefix: &str, name: &str, value: &str) {
    push_decimal(out, prefix.len() + name.len());
    out.push(':');
    out.push_str(prefix);
    out.push_str(name);
    out.push('=');
    push_decimal(out, value.len());
    out.push(':');
    out.push_str(value);
}

fn push_decimal(out: &mut String, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend(digits[i..].iter().map(|d| char::from(*d)));
}

/// md5 (lower-case hex) of the `|`-joined non-NULL components, as in reference §8.2. Blank means empty after
/// trimming spaces only (SQL `btrim`). `tags` are each tag's key and value as `jsonb_each_text` gives it (None for
/// JSON null), **ordered by key bytes** (`COLLATE "C"`), as a `BTreeMap` iterates.
pub fn series_key<'t>(
    id: &SeriesIdentity<'_>,
    tags: impl IntoIterator<Item = (&'t str, Option<&'t str>)>,
    volatile: &Volatile,
) -> String {
    let mut key = String::with_capacity(128);
    let mut push = |name: &str, value: Option<&str>| {
        if let Some(v) = value.filter(|v| !v.trim_matches(' ').is_empty()) {
            if !key.is_empty() {
                key.push('|');
            }
            push_item(&mut key, "", name, v);
        }
    };
    push("metric_type", id.metric_type);
    push("metric_name", id.metric_name);
    push("partition", id.partition);
    push("agent_id", id.agent_id);
    push("device_id", id.device_id);
    push("target_device_ip", id.target_device_ip);
    push("if_index", id.if_index.map(|i| i.to_string()).as_deref());
    // stable_tags: one component per kept tag, '|'-joined, as a single (possibly absent) item.
    let mut stable = String::new();
    for (k, v) in tags {
        let Some(v) = v.filter(|v| !v.trim_matches(' ').is_empty()) else {
            continue;
        };
        if volatile.contains(k) {
            continue;
        }
        if !stable.is_empty() {
            stable.push('|');
        }
        push_item(&mut stable, "tag:", k, v);
    }
    if !stable.is_empty() {
        if !key.is_empty() {
            key.push('|');
        }
        key.push_str(&stable);
    }
    crate::hex::encode(&Md5::digest(key.as_bytes()))
}
