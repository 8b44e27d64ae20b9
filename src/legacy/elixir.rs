//! `db-event-writer import-legacy --elixir-env [FILE|-]`: ServiceRadar's Elixir EventWriter, configured by
//! environment variables (`EVENT_WRITER_*`, its NATS TLS and credentials, the core's `DATABASE_URL`/`CNPG_*`),
//! → an equivalent streams.toml.
//!
//! The Elixir writer's stream list is code (`runtime.exs`, `config.ex`), not environment: it is carried here as
//! [`STREAMS`], each entry mapped to this daemon's processor or, when it has none, named in a note. Each stream
//! keeps the Elixir writer's durable consumer (`<EVENT_WRITER_CONSUMER_NAME>-<stream name, lower-case, runs of
//! other characters as '-'>`), so the switch resumes where the Elixir writer stopped instead of re-reading the
//! streams. What has no equivalent is said in a comment at the top of the output, never dropped silently.
//!
//! Input: `KEY=VALUE` lines (an env file, `export` allowed, quotes removed), compose's `- KEY=VALUE` and
//! `KEY: value`, and Kubernetes' `- name: KEY` / `value: "…"` pairs, so a Helm values or compose excerpt
//! pastes as it is. Uses the parent's quoting helpers and the processors' names.

use std::collections::BTreeMap;

use super::{join_dir, percent, quote};
use crate::processor::ProcessorKind;

/// One stream of the Elixir writer's list.
struct ElixirStream {
    /// Its name there (the consumer key).
    name: &'static str,
    /// The JetStream stream it binds to.
    jetstream: &'static str,
    subject: &'static str,
    /// This daemon's processor, or why there is none.
    processor: Result<ProcessorKind, &'static str>,
    batch_size: usize,
    batch_timeout_ms: u64,
    /// A per-stream `consumer_max_deliver`.
    max_deliver: Option<i64>,
    /// A raw-flow stream (its own pipeline with the `EVENT_WRITER_FLOW_*` tuning).
    flow: bool,
}

const fn stream(
    name: &'static str,
    jetstream: &'static str,
    subject: &'static str,
    processor: Result<ProcessorKind, &'static str>,
    batch: (usize, u64),
) -> ElixirStream {
    ElixirStream {
        name,
        jetstream,
        subject,
        processor,
        batch_size: batch.0,
        batch_timeout_ms: batch.1,
        max_deliver: None,
        flow: false,
    }
}

const NONE_HERE: &str = "has no processor in db-event-writer; keep the Elixir writer for it or leave it unconsumed";

/// The Elixir writer's streams when `EVENT_WRITER_ENABLED` (runtime.exs), then its raw-flow streams
/// (`default_flow_streams/0`).
const STREAMS: &[ElixirStream] = &[
    stream("EVENTS", "events", "events.>", Ok(ProcessorKind::Events), (100, 1000)),
    stream("PDNS_OCSF", "events", "pdns.ocsf", Ok(ProcessorKind::Events), (100, 1000)),
    stream("FALCO", "events", "falco.logs", Err(NONE_HERE), (100, 1000)),
    stream("TRIVY", "trivy_reports", "trivy.report.>", Err(NONE_HERE), (100, 1000)),
    stream("K8S_INVENTORY", "k8s_inventory", "inventory.k8s.public_endpoints", Err(NONE_HERE), (1, 2000)),
    stream("K8S_NODES", "k8s_inventory", "inventory.k8s.nodes", Err(NONE_HERE), (1, 2000)),
    stream("OTEL_METRICS", "events", "otel.metrics.>", Ok(ProcessorKind::Otel), (100, 1000)),
    stream("OTEL_TRACES", "events", "otel.traces.>", Ok(ProcessorKind::Otel), (100, 1000)),
    stream("LOGS", "events", "logs.>", Ok(ProcessorKind::Logs), (100, 1000)),
    ElixirStream {
        max_deliver: Some(5),
        ..stream("METRICS", "metrics", "metrics.>", Ok(ProcessorKind::Telemetry), (500, 500))
    },
    stream("SCAN_RESULTS", "scan_results", "scans.results.>", Err(NONE_HERE), (200, 500)),
    stream("BMP_CAUSAL", "events", "bmp.events.>", Err(NONE_HERE), (100, 1000)),
    stream("ARANCINI_CAUSAL", "ARANCINI_CAUSAL", "arancini.updates.>", Err(NONE_HERE), (100, 1000)),
    stream("SIEM_CAUSAL", "events", "siem.events.>", Err(NONE_HERE), (100, 1000)),
    stream(
        "ANALYTICS_PREDICTIONS",
        "analytics_predictions",
        "signals.analytics.predictions.>",
        Err(NONE_HERE),
        (100, 1000),
    ),
    ElixirStream {
        flow: true,
        ..stream("SFLOW_RAW", "flows", "flows.raw.sflow", Ok(ProcessorKind::Netflow), (100, 500))
    },
    ElixirStream {
        flow: true,
        ..stream("NETFLOW_RAW", "flows", "flows.raw.netflow", Ok(ProcessorKind::Netflow), (100, 500))
    },
];

/// The variables this importer reads (others with the `EVENT_WRITER_` prefix are named in a note).
const KNOWN: &[&str] = &[
    "EVENT_WRITER_ENABLED",
    "EVENT_WRITER_NATS_URL",
    "EVENT_WRITER_NATS_TLS",
    "SPIFFE_CERT_DIR",
    "EVENT_WRITER_NATS_CREDS_FILE",
    "EVENT_WRITER_NATS_USER",
    "EVENT_WRITER_NATS_PASSWORD",
    "EVENT_WRITER_BATCH_SIZE",
    "EVENT_WRITER_BATCH_TIMEOUT",
    "EVENT_WRITER_CONSUMER_NAME",
    "EVENT_WRITER_NATS_CONSUMER",
    "EVENT_WRITER_NATS_STREAM",
    "EVENT_WRITER_CONSUMER_PULL_BATCH_SIZE",
    "EVENT_WRITER_CONSUMER_LAG_POLL_INTERVAL_MS",
    "EVENT_WRITER_MAX_ACK_PENDING",
    "EVENT_WRITER_PROCESSOR_CONCURRENCY",
    "EVENT_WRITER_ACK_WAIT_SECONDS",
    "EVENT_WRITER_MAX_DELIVER",
    "EVENT_WRITER_FLOW_CONSUMER_PULL_BATCH_SIZE",
    "EVENT_WRITER_FLOW_MAX_ACK_PENDING",
    "EVENT_WRITER_FLOW_PULL_EXPIRES_NS",
    "EVENT_WRITER_FLOW_EXTRA_SUBJECTS",
    "EVENT_WRITER_FLOW_DRAIN_EXTRA_SUBJECTS",
    "EVENT_WRITER_FLOW_DRAIN_EVENTS",
    "EVENT_WRITER_HOST_SLICE_SUBSCRIBER_ENABLED",
];

/// Reads the variables from `source` (a file, `-` for standard input, `None` for this process's environment)
/// and returns the streams.toml text.
pub fn import(source: Option<&std::path::Path>) -> Result<String, super::LegacyError> {
    let (file, vars) = match source {
        None => ("the environment".to_owned(), std::env::vars().collect()),
        Some(path) => {
            let file = path.display().to_string();
            let text =
                if file == "-" { std::io::read_to_string(std::io::stdin()) } else { std::fs::read_to_string(path) }
                    .map_err(|e| super::LegacyError::Read { file: file.clone(), message: e.to_string() })?;
            (file, parse_env(&text))
        }
    };
    convert(&vars).map_err(|message| super::LegacyError::Invalid { file, message })
}

/// `KEY=VALUE` pairs from an env file, a compose `environment:` block or a Kubernetes `env:` list. Later
/// assignments win, as in a shell.
pub fn parse_env(text: &str) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    let mut pending_name: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let item = line.strip_prefix("- ").map(str::trim_start).unwrap_or(line);
        let item = item.strip_prefix("export ").map(str::trim_start).unwrap_or(item);
        // Kubernetes: `- name: KEY` then `value: "…"`.
        if let Some(name) = item.strip_prefix("name:") {
            pending_name = Some(unquote(name.trim()).to_owned()).filter(|n| is_name(n));
            continue;
        }
        if let Some(value) = item.strip_prefix("value:")
            && let Some(name) = pending_name.take()
        {
            vars.insert(name, unquote(value.trim()).to_owned());
            continue;
        }
        let split = match (item.find('='), item.find(':')) {
            (Some(eq), Some(colon)) if colon < eq => Some((colon, 1)),
            (Some(eq), _) => Some((eq, 1)),
            (None, Some(colon)) => Some((colon, 1)),
            (None, None) => None,
        };
        if let Some((at, len)) = split {
            let (key, value) = (item[..at].trim(), item[at + len..].trim());
            let key = unquote(key);
            if is_name(key) {
                vars.insert(key.to_owned(), unquote(strip_comment(value)).to_owned());
            }
        }
    }
    vars
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_uppercase() || c == '_')
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

fn unquote(s: &str) -> &str {
    for q in ['"', '\''] {
        if s.len() >= 2 && s.starts_with(q) && s.ends_with(q) {
            return &s[1..s.len() - 1];
        }
    }
    s
}

/// An unquoted value's ` # comment`.
fn strip_comment(value: &str) -> &str {
    if value.starts_with('"') || value.starts_with('\'') {
        return value;
    }
    value.find(" #").map_or(value, |at| value[..at].trim_end())
}

/// The Elixir writer's `durable_name/2` for names within NATS's 255 bytes.
fn durable_name(base: &str, stream: &str) -> String {
    format!("{base}-{}", slug(stream))
}

/// A stream name as `durable_name/2` suffixes it: lower-case, runs of other characters as '-', trimmed.
fn slug(stream: &str) -> String {
    let mut slug = String::new();
    for c in stream.to_lowercase().chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            slug.push(c);
        } else if !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let slug = slug.trim_matches('-');
    if slug.is_empty() { "stream".to_owned() } else { slug.to_owned() }
}

fn truthy(v: Option<&String>) -> Option<bool> {
    v.map(|v| matches!(v.as_str(), "true" | "1" | "yes"))
}

fn number<T: std::str::FromStr>(vars: &BTreeMap<String, String>, key: &str) -> Result<Option<T>, String> {
    match vars.get(key).map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => {
            v.parse().map(Some).map_err(|_| format!("{key}={v:?} is not a number (the Elixir writer refuses it too)"))
        }
    }
}

/// Converts the variables to streams.toml text.
pub fn convert(vars: &BTreeMap<String, String>) -> Result<String, String> {
    let mut notes: Vec<String> = Vec::new();
    let get = |k: &str| vars.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let creds = get("EVENT_WRITER_NATS_CREDS_FILE");
    // runtime.exs: on by default when credentials are configured.
    let enabled = truthy(vars.get("EVENT_WRITER_ENABLED")).unwrap_or(creds.is_some());
    if !enabled {
        notes.push(
            "EVENT_WRITER_ENABLED is not true (and no EVENT_WRITER_NATS_CREDS_FILE): the Elixir writer is off in \
             this environment; the streams below are the ones it runs when it is on"
                .to_owned(),
        );
    }
    let consumer_base = get("EVENT_WRITER_CONSUMER_NAME").unwrap_or("serviceradar-event-writer");
    for (old, what) in [("EVENT_WRITER_NATS_CONSUMER", "consumer"), ("EVENT_WRITER_NATS_STREAM", "stream")] {
        if let Some(v) = get(old) {
            notes.push(format!(
                "{old}={v:?} is read by no Elixir writer release (the design document's single {what}); the \
                 writer's per-stream {what}s below are used"
            ));
        }
    }

    // [nats]
    let url = get("EVENT_WRITER_NATS_URL").unwrap_or("nats://localhost:4222");
    let mut nats = format!("[nats]\nurl = {}\n", quote(url));
    match (creds, get("EVENT_WRITER_NATS_USER")) {
        (Some(creds), user) => {
            nats.push_str(&format!("creds_file = {}\n", quote(creds)));
            if user.is_some() {
                notes.push("EVENT_WRITER_NATS_USER/PASSWORD are ignored: the creds file authenticates".to_owned());
            }
        }
        (None, Some(user)) => {
            nats.push_str(&format!("user = {}\n", quote(user)));
            if let Some(password) = get("EVENT_WRITER_NATS_PASSWORD") {
                nats.push_str(&format!("password = {}\n", quote(password)));
                notes.push("the NATS password is written in [nats]; prefer password_file".to_owned());
            }
        }
        (None, None) => {}
    }
    if truthy(vars.get("EVENT_WRITER_NATS_TLS")).unwrap_or(false) {
        // runtime.exs: SPIFFE_CERT_DIR's root.pem, core.pem, core-key.pem; SNI nats.serviceradar.
        let dir = get("SPIFFE_CERT_DIR").unwrap_or("/etc/serviceradar/certs");
        nats.push_str("\n[nats.tls]\n");
        nats.push_str(&format!("ca_file = {}\n", quote(&join_dir(dir, "root.pem"))));
        nats.push_str(&format!("cert_file = {}\n", quote(&join_dir(dir, "core.pem"))));
        nats.push_str(&format!("key_file = {}\n", quote(&join_dir(dir, "core-key.pem"))));
        nats.push_str("server_name = \"nats.serviceradar\"\n");
    }

    let database = database(vars, &mut notes)?;

    // Consumer settings (global, then the flow pipeline's).
    let max_ack_pending: i64 = number(vars, "EVENT_WRITER_MAX_ACK_PENDING")?.unwrap_or(256);
    let ack_wait: u64 = number(vars, "EVENT_WRITER_ACK_WAIT_SECONDS")?.unwrap_or(120);
    let max_deliver: i64 = number(vars, "EVENT_WRITER_MAX_DELIVER")?.unwrap_or(5);
    let flow_max_ack_pending: i64 = number(vars, "EVENT_WRITER_FLOW_MAX_ACK_PENDING")?.unwrap_or(1024);
    for key in ["EVENT_WRITER_BATCH_SIZE", "EVENT_WRITER_BATCH_TIMEOUT"] {
        if let Some(v) = number::<u64>(vars, key)? {
            notes.push(format!(
                "{key}={v} is the Elixir writer's default for streams without their own batch size; every stream \
                 of its list sets one, so the per-stream values below are used (as there)"
            ));
        }
    }
    for (key, why) in [
        ("EVENT_WRITER_CONSUMER_PULL_BATCH_SIZE", "pulls are sized by batch_size and max_ack_pending"),
        ("EVENT_WRITER_FLOW_CONSUMER_PULL_BATCH_SIZE", "pulls are sized by batch_size and max_ack_pending"),
        ("EVENT_WRITER_FLOW_PULL_EXPIRES_NS", "pulls wait for messages as long as the batch timeout allows"),
        ("EVENT_WRITER_PROCESSOR_CONCURRENCY", "decoding runs in each stream's reader; see writers per stream"),
        ("EVENT_WRITER_CONSUMER_LAG_POLL_INTERVAL_MS", "the lag gauges refresh every [http] refresh"),
        ("EVENT_WRITER_HOST_SLICE_SUBSCRIBER_ENABLED", "host slices are not written by db-event-writer"),
    ] {
        if let Some(v) = get(key) {
            notes.push(format!("{key}={v:?} has no equivalent: {why}"));
        }
    }
    if truthy(vars.get("EVENT_WRITER_FLOW_DRAIN_EVENTS")).unwrap_or(true) {
        notes.push(
            "the Elixir writer's flow drain consumers (<NAME>_EVENTS_DRAIN on stream events, for flows older \
             collectors published there) are not carried over; add a [[stream]] on jetstream events with those \
             flows.raw.* subjects if any are still published there"
                .to_owned(),
        );
    }
    let extras = flow_extras(vars)?;
    for (key, value) in vars {
        if key.starts_with("EVENT_WRITER_") && !KNOWN.contains(&key.as_str()) {
            notes.push(format!("{key}={value:?} is not known to this importer and was not carried over"));
        }
    }

    let mut streams = String::new();
    for s in STREAMS {
        let kind = match s.processor {
            Ok(kind) => kind,
            Err(why) => {
                notes.push(format!("{} ({} on {}) {why}", s.name, s.subject, s.jetstream));
                continue;
            }
        };
        let (mut max_ack, deliver) = if s.flow {
            (flow_max_ack_pending, max_deliver)
        } else {
            (max_ack_pending, s.max_deliver.unwrap_or(max_deliver))
        };
        if max_ack < s.batch_size as i64 {
            // There a batch of 500 under a bound of 256 never fills and waits out its timeout; here it is refused.
            notes.push(format!(
                "{}: max_ack_pending {max_ack} is below its batch size {}, so a batch could never fill; raised to {}",
                s.name, s.batch_size, s.batch_size
            ));
            max_ack = s.batch_size as i64;
        }
        streams.push_str(&stream_toml(
            &slug(s.name),
            s.jetstream,
            &durable_name(consumer_base, s.name),
            &[s.subject.to_owned()],
            kind,
            (s.batch_size, s.batch_timeout_ms),
            (ack_wait, max_ack, deliver),
        ));
    }
    for subject in &extras {
        let tail = subject.trim_start_matches("flows.raw.");
        let name = durable_name("flow", tail);
        streams.push_str(&stream_toml(
            &name,
            "flows",
            &format!("{consumer_base}-{name}"),
            std::slice::from_ref(subject),
            ProcessorKind::Netflow,
            (100, 500),
            (ack_wait, flow_max_ack_pending, max_deliver),
        ));
    }
    if !extras.is_empty() {
        notes.push(
            "EVENT_WRITER_FLOW_EXTRA_SUBJECTS: each extra subject gets a new durable consumer here (flow-<subject>), \
             which starts at the beginning of stream flows; rows already written are skipped as duplicates"
                .to_owned(),
        );
    }
    if get("EVENT_WRITER_MAX_DELIVER").is_none() {
        notes.push(
            "max_deliver 5 is the Elixir writer's default: past it a message is dead-lettered here (stream DLQ) \
             where the Elixir writer terminated it with a telemetry event"
                .to_owned(),
        );
    }
    notes.push(
        "events.syslog.* and events.snmp.*, which the Elixir writer acknowledges without writing, reach the events \
         processor here and are dead-lettered when they are not OCSF events; narrow EVENTS' subjects if they carry \
         raw syslog or SNMP"
            .to_owned(),
    );
    notes.push(format!(
        "the durable consumers are the Elixir writer's ({consumer_base}-<stream>): stop the Elixir writer \
         (EVENT_WRITER_ENABLED=false) before starting db-event-writer, which then resumes where it stopped; their \
         settings are updated in place to the values below"
    ));

    let mut out = String::new();
    out.push_str(
        "# Generated by `db-event-writer import-legacy --elixir-env` from the Elixir EventWriter's environment.\n",
    );
    out.push_str("# Check it with `db-event-writer validate --config <this file>`.\n");
    super::sections(&mut out, &notes, &nats, &database);
    out.push_str(&streams);
    Ok(out)
}

fn stream_toml(
    name: &str,
    jetstream: &str,
    consumer: &str,
    subjects: &[String],
    kind: ProcessorKind,
    (batch, timeout_ms): (usize, u64),
    (ack_wait, max_ack_pending, max_deliver): (u64, i64, i64),
) -> String {
    let subjects: Vec<String> = subjects.iter().map(|s| quote(s)).collect();
    format!(
        "\n[[stream]]\nname = {}\njetstream = {}\nconsumer = {}\nsubjects = [{}]\nprocessor = {}\nbatch_size = {batch}\n\
         batch_timeout = \"{timeout_ms}ms\"\nack_wait = \"{ack_wait}s\"\nmax_ack_pending = {max_ack_pending}\n\
         max_deliver = {max_deliver}\n",
        quote(name),
        quote(jetstream),
        quote(consumer),
        subjects.join(", "),
        quote(kind.name()),
    )
}

/// `[database]` from the core's `DATABASE_URL`, else its `CNPG_*` variables.
fn database(vars: &BTreeMap<String, String>, notes: &mut Vec<String>) -> Result<String, String> {
    let get = |k: &str| vars.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let mut out = String::from("[database]\n");
    if let Some(url) = get("DATABASE_URL") {
        out.push_str(&format!("url = {}\n", quote(url)));
        notes.push(
            "[database] url is DATABASE_URL's; keep it in the environment (DATABASE_URL) rather than here".into(),
        );
    } else if let Some(host) = get("CNPG_HOST") {
        let port: u16 = number(vars, "CNPG_PORT")?.unwrap_or(5432);
        let user = percent(get("CNPG_USERNAME").unwrap_or("serviceradar"));
        let db = percent(get("CNPG_DATABASE").unwrap_or("serviceradar"));
        let auth = match get("CNPG_PASSWORD") {
            Some(pw) => {
                notes.push("the database password is in [database] url; prefer DATABASE_URL from a secret".into());
                format!("{user}:{}", percent(pw))
            }
            None => user,
        };
        out.push_str(&format!("url = {}\n", quote(&format!("postgres://{auth}@{host}:{port}/{db}"))));
    } else {
        out.push_str("url = \"postgres://serviceradar@localhost:5432/serviceradar\"\n");
        notes.push(
            "no DATABASE_URL or CNPG_HOST in this environment (the Elixir writer writes through the core's Repo): \
             set [database] url or DATABASE_URL"
                .into(),
        );
    }
    out.push_str("schema = \"platform\"\n");
    let mode = get("CNPG_SSL_MODE").unwrap_or(if get("CNPG_CA_FILE").is_some() { "verify-full" } else { "disable" });
    crate::config::SslMode::parse(mode).map_err(|e| format!("CNPG_SSL_MODE: {e}"))?;
    if mode != "disable" {
        out.push_str(&format!("\n[database.tls]\nmode = {}\n", quote(mode)));
        if let Some(ca) = get("CNPG_CA_FILE") {
            out.push_str(&format!("ca_file = {}\n", quote(ca)));
        }
        if let Some(name) = get("CNPG_TLS_SERVER_NAME") {
            out.push_str(&format!("server_name = {}\n", quote(name)));
        }
    }
    Ok(out)
}

/// `EVENT_WRITER_FLOW_EXTRA_SUBJECTS` (or its legacy name): concrete `flows.raw.*` subjects, comma-separated.
fn flow_extras(vars: &BTreeMap<String, String>) -> Result<Vec<String>, String> {
    let raw = vars
        .get("EVENT_WRITER_FLOW_EXTRA_SUBJECTS")
        .or_else(|| vars.get("EVENT_WRITER_FLOW_DRAIN_EXTRA_SUBJECTS"))
        .map(String::as_str)
        .unwrap_or("");
    let mut out: Vec<String> = Vec::new();
    for s in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if s.contains('*') || s.contains('>') || !s.starts_with("flows.raw.") || s == "flows.raw." {
            return Err(format!(
                "EVENT_WRITER_FLOW_EXTRA_SUBJECTS: {s:?} is not a concrete flows.raw.* subject (the Elixir writer \
                 refuses it too)"
            ));
        }
        if ["flows.raw.sflow", "flows.raw.netflow"].contains(&s) || out.iter().any(|x| x == s) {
            continue;
        }
        out.push(s.to_owned());
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
