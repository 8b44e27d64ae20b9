//! `series_key`: the md5 identity of a series, computed exactly as ServiceRadar's SQL
//! `build_timeseries_series_key` computes it (reference §8.2), so a redelivered sample hits the primary key.
//!
//! Uses nothing of the project but [`crate::hex`].

use std::collections::BTreeMap;

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
    /// Each tag's value as `jsonb_each_text` gives it (None for JSON null).
    pub tag_texts: Option<&'a BTreeMap<String, Option<String>>>,
}

/// Tag keys that never identify a series.
const UNSTABLE_TAGS: [&str; 3] = ["available", "metric", "packet_loss"];

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
/// trimming spaces only (SQL `btrim`); tags are ordered by key bytes (`COLLATE "C"`).
pub fn series_key(id: &SeriesIdentity<'_>) -> String {
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
    let mut tags = String::new();
    for (k, v) in id.tag_texts.into_iter().flatten() {
        let Some(v) = v.as_deref().filter(|v| !v.trim_matches(' ').is_empty()) else {
            continue;
        };
        if UNSTABLE_TAGS.contains(&k.as_str()) {
            continue;
        }
        if !tags.is_empty() {
            tags.push('|');
        }
        push_item(&mut tags, "tag:", k, v);
    }
    if !tags.is_empty() {
        if !key.is_empty() {
            key.push('|');
        }
        key.push_str(&tags);
    }
    crate::hex::encode(&Md5::digest(key.as_bytes()))
}
