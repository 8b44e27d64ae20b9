//! `db-event-writer import-legacy PATH.json`: the Go writer's JSON configuration → an equivalent streams.toml
//! ([`elixir`]: the same for the Elixir EventWriter's environment variables).
//!
//! Subjects are grouped by the processor their table implies (the Go writer's rule: table name contains `logs`,
//! `traces`, `metrics`, `ocsf_events`, `ocsf_network_activity`), expanded as the Go writer expands them
//! (`otel.traces` ↔ `otel.traces.raw`, `otel.metrics[.raw]` → `otel.metrics` + `otel.metrics.>`, `pdns.ocsf` →
//! `pdns.ocsf` + `pdns.ocsf.>`). Each group
//! becomes one `[[stream]]` with its own durable consumer `<consumer_name>-<processor>` on the same JetStream
//! stream. What has no equivalent is said in a comment at the top of the output, never dropped silently.
//!
//! Uses the config types (the processors' names) and, in its tests, config parsing.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::processor::ProcessorKind;

pub mod elixir;

/// Why a legacy file could not be converted.
#[derive(Debug, thiserror::Error)]
pub enum LegacyError {
    /// Unreadable.
    #[error("{file}: cannot read: {message}")]
    Read {
        /// The file.
        file: String,
        /// Why.
        message: String,
    },
    /// Not the Go writer's JSON, or a value it would refuse too.
    #[error("{file}: {message}")]
    Invalid {
        /// The file.
        file: String,
        /// What is wrong.
        message: String,
    },
}

#[derive(Debug, Default, Deserialize)]
struct Legacy {
    #[serde(default)]
    nats_url: String,
    #[serde(default)]
    nats_creds_file: String,
    #[serde(default)]
    stream_name: String,
    #[serde(default)]
    consumer_name: String,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    table: String,
    #[serde(default)]
    streams: Vec<LegacyStream>,
    #[serde(default)]
    nats_security: Option<Security>,
    #[serde(default)]
    cnpg: Option<Cnpg>,
    #[serde(default)]
    logging: Option<Logging>,
    #[serde(default)]
    listen_addr: String,
}

#[derive(Debug, Default, Deserialize)]
struct LegacyStream {
    #[serde(default)]
    subject: String,
    #[serde(default)]
    table: String,
}

#[derive(Debug, Default, Deserialize)]
struct Security {
    #[serde(default)]
    mode: String,
    #[serde(default)]
    cert_dir: String,
    #[serde(default)]
    server_name: String,
    #[serde(default)]
    tls: Option<Tls>,
}

#[derive(Debug, Default, Deserialize)]
struct Tls {
    #[serde(default)]
    cert_file: String,
    #[serde(default)]
    key_file: String,
    #[serde(default)]
    ca_file: String,
}

#[derive(Debug, Default, Deserialize)]
struct Cnpg {
    #[serde(default)]
    host: String,
    #[serde(default)]
    port: u16,
    #[serde(default)]
    database: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    ssl_mode: String,
    #[serde(default)]
    cert_dir: String,
    #[serde(default)]
    max_connections: i64,
    #[serde(default)]
    runtime_params: BTreeMap<String, String>,
    #[serde(default)]
    tls: Option<Tls>,
}

#[derive(Debug, Default, Deserialize)]
struct Logging {
    #[serde(default)]
    level: String,
}

/// Reads `path` and returns the streams.toml text.
pub fn import(path: &Path) -> Result<String, LegacyError> {
    let file = path.display().to_string();
    let text =
        std::fs::read_to_string(path).map_err(|e| LegacyError::Read { file: file.clone(), message: e.to_string() })?;
    convert(&text).map_err(|message| LegacyError::Invalid { file, message })
}

/// The Go writer's processor for a table name, by its own substring rule and order (today's: metric points first).
fn processor_for(table: &str) -> Option<ProcessorKind> {
    let t = table.rsplit('.').next().unwrap_or(table);
    if t.contains("otel_metric_points") {
        Some(ProcessorKind::Otel)
    } else if t.contains("logs") {
        Some(ProcessorKind::Logs)
    } else if t.contains("traces") || (t.contains("metrics") && t.contains("otel")) {
        Some(ProcessorKind::Otel)
    } else if t == "timeseries_metrics" {
        Some(ProcessorKind::Telemetry)
    } else if t.contains("metrics") {
        Some(ProcessorKind::Otel)
    } else if t.contains("ocsf_events") {
        Some(ProcessorKind::Events)
    } else if t.contains("ocsf_network_activity") {
        Some(ProcessorKind::Netflow)
    } else {
        None
    }
}

/// The Go writer's filter-subject expansion (`consumerFilterSubjects`, today's).
fn expand(subject: &str) -> Vec<&str> {
    match subject {
        "otel.traces" | "otel.traces.raw" => vec!["otel.traces", "otel.traces.raw"],
        "otel.metrics" | "otel.metrics.raw" => vec!["otel.metrics", "otel.metrics.>"],
        "pdns.ocsf" => vec!["pdns.ocsf", "pdns.ocsf.>"],
        other => vec![other],
    }
}

fn quote(s: &str) -> String {
    // TOML basic strings share JSON's escapes for everything a path or URL holds.
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}

fn join_dir(dir: &str, file: &str) -> String {
    if file.is_empty() || file.starts_with('/') || dir.is_empty() {
        file.to_owned()
    } else {
        format!("{}/{file}", dir.trim_end_matches('/'))
    }
}

fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// What both importers print after their header: the notes as comments, `[nats]`, `[database]` and `[http]`.
fn sections(out: &mut String, notes: &[String], nats: &str, database: &str) {
    if !notes.is_empty() {
        out.push_str("#\n# Notes:\n");
        for n in notes {
            out.push_str(&format!("# - {n}\n"));
        }
    }
    out.push('\n');
    out.push_str(nats);
    out.push('\n');
    out.push_str(database);
    out.push_str("\n[http]\nlisten = \"0.0.0.0:9464\"\n");
}

/// Converts the JSON text.
pub fn convert(json: &str) -> Result<String, String> {
    let legacy: Legacy = serde_json::from_str(json).map_err(|e| format!("not the Go writer's JSON config: {e}"))?;
    let mut notes: Vec<String> = Vec::new();
    if legacy.nats_url.is_empty() {
        return Err("nats_url is missing".to_owned());
    }
    if legacy.stream_name.is_empty() || legacy.consumer_name.is_empty() {
        return Err("stream_name and consumer_name are required".to_owned());
    }
    let mut pairs: Vec<(String, String)> =
        legacy.streams.iter().map(|s| (s.subject.trim().to_owned(), s.table.trim().to_owned())).collect();
    if pairs.is_empty() && !legacy.subject.is_empty() {
        pairs.push((legacy.subject.trim().to_owned(), legacy.table.trim().to_owned()));
    }
    if pairs.is_empty() {
        return Err("no streams[] (and no legacy subject/table)".to_owned());
    }
    // Processor → subjects, in first-seen order.
    let mut groups: Vec<(ProcessorKind, Vec<String>)> = Vec::new();
    for (i, (subject, table)) in pairs.iter().enumerate() {
        if subject.is_empty() || table.is_empty() {
            return Err(format!("streams[{i}] needs subject and table"));
        }
        let Some(kind) = processor_for(table) else {
            return Err(format!("streams[{i}]: table {table:?} has no processor (the Go writer refuses it too)"));
        };
        // The otel processor chooses the table by subject, as the Go writer's shipped mapping does today.
        if kind == ProcessorKind::Otel && subject.ends_with("metrics.raw") && !table.contains("otel_metric_points") {
            notes.push(format!(
                "streams[{i}]: {subject} was mapped to {table}; it now goes to otel_metric_points (OTLP data points), \
                 as ServiceRadar's Go writer maps it today"
            ));
        }
        let at = match groups.iter().position(|(k, _)| *k == kind) {
            Some(at) => at,
            None => {
                groups.push((kind, Vec::new()));
                groups.len() - 1
            }
        };
        for s in expand(subject) {
            if !groups[at].1.iter().any(|x| x == s) {
                groups[at].1.push(s.to_owned());
            }
        }
    }

    let mut out = String::new();
    out.push_str("# Generated by `db-event-writer import-legacy` from the Go db-event-writer's JSON configuration.\n");
    out.push_str("# Check it with `db-event-writer validate --config <this file>`.\n");

    // [nats]
    let mut nats = format!("[nats]\nurl = {}\n", quote(&legacy.nats_url));
    if !legacy.nats_creds_file.is_empty() {
        nats.push_str(&format!("creds_file = {}\n", quote(&legacy.nats_creds_file)));
    }
    if let Some(sec) = &legacy.nats_security
        && sec.mode == "mtls"
    {
        let tls = sec.tls.as_ref().map(|t| (t.ca_file.as_str(), t.cert_file.as_str(), t.key_file.as_str()));
        let (ca, cert, key) = tls.unwrap_or(("", "", ""));
        nats.push_str("\n[nats.tls]\n");
        if !ca.is_empty() {
            nats.push_str(&format!("ca_file = {}\n", quote(&join_dir(&sec.cert_dir, ca))));
        }
        if !cert.is_empty() && !key.is_empty() {
            nats.push_str(&format!("cert_file = {}\n", quote(&join_dir(&sec.cert_dir, cert))));
            nats.push_str(&format!("key_file = {}\n", quote(&join_dir(&sec.cert_dir, key))));
        }
        if !sec.server_name.is_empty() {
            nats.push_str(&format!("server_name = {}\n", quote(&sec.server_name)));
        }
    } else if let Some(sec) = &legacy.nats_security
        && sec.mode == "spiffe"
    {
        notes.push("nats_security.mode \"spiffe\" has no equivalent: use mTLS files ([nats.tls])".to_owned());
    }

    // [database]
    let cnpg = legacy.cnpg.unwrap_or_default();
    if cnpg.host.is_empty() || cnpg.username.is_empty() || cnpg.database.is_empty() {
        return Err("cnpg.host, cnpg.username and cnpg.database are required".to_owned());
    }
    let port = if cnpg.port == 0 { 5432 } else { cnpg.port };
    let user = percent(&cnpg.username);
    let auth = if cnpg.password.is_empty() { user } else { format!("{user}:{}", percent(&cnpg.password)) };
    let url = format!("postgres://{auth}@{}:{port}/{}", cnpg.host, percent(&cnpg.database));
    let schema = cnpg
        .runtime_params
        .get("search_path")
        .and_then(|p| p.split(',').map(str::trim).find(|s| !s.is_empty()))
        .unwrap_or("platform");
    let mut database = format!("[database]\nurl = {}\nschema = {}\n", quote(&url), quote(schema));
    if cnpg.max_connections > 0 {
        database.push_str(&format!("pool_size = {}\n", cnpg.max_connections.min(1024)));
    }
    if !cnpg.password.is_empty() {
        notes.push("the database password is in [database] url; prefer DATABASE_URL from a secret".to_owned());
    }
    // The Go writer: verify-full when tls is set and ssl_mode is not, disable when neither; tls with disable is an
    // error; relative paths are joined to cert_dir.
    let ssl_mode = match (cnpg.ssl_mode.as_str(), &cnpg.tls) {
        ("", Some(_)) => "verify-full",
        ("", None) => "disable",
        (mode, _) => mode,
    };
    crate::config::SslMode::parse(ssl_mode).map_err(|e| format!("cnpg.ssl_mode: {e}"))?;
    if ssl_mode == "disable" && cnpg.tls.is_some() {
        return Err("cnpg.ssl_mode \"disable\" with cnpg.tls set (the Go writer refuses it too)".to_owned());
    }
    if ssl_mode != "disable" {
        database.push_str(&format!("\n[database.tls]\nmode = {}\n", quote(ssl_mode)));
        if let Some(tls) = &cnpg.tls {
            if !tls.ca_file.is_empty() {
                database.push_str(&format!("ca_file = {}\n", quote(&join_dir(&cnpg.cert_dir, &tls.ca_file))));
            }
            if !tls.cert_file.is_empty() && !tls.key_file.is_empty() {
                database.push_str(&format!("cert_file = {}\n", quote(&join_dir(&cnpg.cert_dir, &tls.cert_file))));
                database.push_str(&format!("key_file = {}\n", quote(&join_dir(&cnpg.cert_dir, &tls.key_file))));
            }
        }
    }
    if !legacy.listen_addr.is_empty() {
        notes.push(format!(
            "listen_addr {:?} (the Go writer's gRPC status port) is replaced by [http] listen (metrics, health)",
            legacy.listen_addr
        ));
    }
    notes.push(format!(
        "the Go writer's single consumer {:?} is not reused: each [[stream]] below has its own durable consumer, \
         which starts at the beginning of the stream (rows already written are skipped as duplicates). Delete the \
         old consumer once the Go writer is stopped",
        legacy.consumer_name
    ));

    sections(&mut out, &notes, &nats, &database);
    if let Some(level) = legacy.logging.as_ref().map(|l| l.level.trim()).filter(|l| !l.is_empty()) {
        let level = level.to_ascii_lowercase();
        if matches!(level.as_str(), "trace" | "debug" | "info" | "warn" | "error") {
            out.push_str(&format!("\n[log]\nlevel = {}\n", quote(&format!("{level},async_nats=warn"))));
        }
    }
    for (kind, subjects) in &groups {
        let subjects: Vec<String> = subjects.iter().map(|s| quote(s)).collect();
        out.push_str(&format!(
            "\n[[stream]]\nname = {}\njetstream = {}\nconsumer = {}\nsubjects = [{}]\nprocessor = {}\n",
            quote(kind.name()),
            quote(&legacy.stream_name),
            quote(&format!("{}-{}", legacy.consumer_name, kind.name())),
            subjects.join(", "),
            quote(kind.name()),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NatsAuth;

    /// ServiceRadar's shipped docker-compose configuration (reference §2), Helm's extra subject included.
    const SHIPPED: &str = r#"{
      "listen_addr": "0.0.0.0:50041",
      "nats_url": "tls://nats:4222",
      "nats_creds_file": "/etc/serviceradar/creds/platform.creds",
      "stream_name": "events",
      "consumer_name": "db-event-writer",
      "partition": "default",
      "nats_security": { "mode": "mtls", "cert_dir": "/etc/serviceradar/certs", "server_name": "nats", "role": "client",
        "tls": { "cert_file": "db-event-writer.pem", "key_file": "/etc/serviceradar/certs/db-event-writer-key.pem",
                 "ca_file": "/etc/serviceradar/certs/root.pem" } },
      "streams": [
        {"subject": "events.ocsf.processed", "table": "ocsf_events"},
        {"subject": "logs.syslog.processed", "table": "logs"},
        {"subject": "logs.snmp.processed", "table": "logs"},
        {"subject": "logs.otel.processed", "table": "logs"},
        {"subject": "logs.internal.processed", "table": "logs"},
        {"subject": "falco.logs.processed", "table": "logs"},
        {"subject": "otel.traces", "table": "otel_traces"},
        {"subject": "otel.metrics", "table": "otel_metrics"},
        {"subject": "otel.metrics.raw", "table": "otel_metrics"}
      ],
      "cnpg": { "host": "cnpg", "port": 5432, "database": "serviceradar", "username": "serviceradar",
        "password": "p@ss word", "ssl_mode": "disable", "max_connections": 8,
        "runtime_params": { "search_path": "platform,ag_catalog" } },
      "logging": { "level": "INFO" }
    }"#;

    #[test]
    fn shipped_config_becomes_an_equivalent_valid_streams_toml() {
        let text = convert(SHIPPED).unwrap();
        let config = crate::parse_config(Path::new("imported.toml"), &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(config.nats.url, "tls://nats:4222");
        assert_eq!(config.nats.auth, NatsAuth::Creds("/etc/serviceradar/creds/platform.creds".into()));
        let tls = config.nats.tls.as_ref().unwrap();
        assert_eq!(tls.ca_file.as_deref(), Some(Path::new("/etc/serviceradar/certs/root.pem")));
        let (cert, key) = tls.client.clone().unwrap();
        assert_eq!(cert, Path::new("/etc/serviceradar/certs/db-event-writer.pem"), "relative paths join cert_dir");
        assert_eq!(key, Path::new("/etc/serviceradar/certs/db-event-writer-key.pem"));
        assert_eq!(config.database.url, "postgres://serviceradar:p%40ss%20word@cnpg:5432/serviceradar");
        assert_eq!(config.database.schema, "platform");
        assert_eq!(config.database.pool_size, 8);
        assert_eq!(config.log.level, "info,async_nats=warn");
        let streams: Vec<(&str, &str, Vec<&str>)> = config
            .streams
            .iter()
            .map(|s| (s.name.as_str(), s.consumer.as_str(), s.subjects.iter().map(String::as_str).collect()))
            .collect();
        assert_eq!(
            streams,
            [
                ("events", "db-event-writer-events", vec!["events.ocsf.processed"]),
                (
                    "logs",
                    "db-event-writer-logs",
                    vec![
                        "logs.syslog.processed",
                        "logs.snmp.processed",
                        "logs.otel.processed",
                        "logs.internal.processed",
                        "falco.logs.processed"
                    ]
                ),
                (
                    "otel",
                    "db-event-writer-otel",
                    vec!["otel.traces", "otel.traces.raw", "otel.metrics", "otel.metrics.>"]
                ),
            ]
        );
        assert!(config.streams.iter().all(|s| s.jetstream == "events"));
        // What has no equivalent is said, not dropped.
        assert_eq!(tls.server_name.as_deref(), Some("nats"));
        assert!(text.contains("listen_addr"), "{text}");
        assert!(text.contains("consumer \"db-event-writer\" is not reused"), "{text}");
        assert!(
            text.contains("otel.metrics.raw was mapped to otel_metrics; it now goes to otel_metric_points"),
            "{text}"
        );
    }

    /// ServiceRadar's Helm configuration today (reference-today §1.1).
    #[test]
    fn todays_helm_config_routes_pdns_and_metric_points() {
        let helm = SHIPPED.replace(
            r#"{"subject": "otel.traces", "table": "otel_traces"},
        {"subject": "otel.metrics", "table": "otel_metrics"},
        {"subject": "otel.metrics.raw", "table": "otel_metrics"}"#,
            r#"{"subject": "pdns.ocsf", "table": "ocsf_events"},
        {"subject": "otel.traces.raw", "table": "otel_traces"},
        {"subject": "otel.metrics.raw", "table": "otel_metric_points"},
        {"subject": "otel.metrics", "table": "otel_metrics"}"#,
        );
        assert_ne!(helm, SHIPPED);
        let text = convert(&helm).unwrap();
        let config = crate::parse_config(Path::new("imported.toml"), &text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let subjects = |name: &str| config.streams.iter().find(|s| s.name == name).unwrap().subjects.clone();
        assert_eq!(subjects("events"), ["events.ocsf.processed", "pdns.ocsf", "pdns.ocsf.>"]);
        assert_eq!(subjects("otel"), ["otel.traces", "otel.traces.raw", "otel.metrics", "otel.metrics.>"]);
        assert!(!text.contains("now goes to otel_metric_points"), "{text}");
    }

    #[test]
    fn legacy_single_subject_and_refusals() {
        let one = r#"{"nats_url":"nats://n:4222","stream_name":"events","consumer_name":"w","subject":"events.ocsf.processed",
            "table":"ocsf_events","cnpg":{"host":"db","username":"u","database":"d"}}"#;
        let config = crate::parse_config(Path::new("x.toml"), &convert(one).unwrap()).unwrap();
        assert_eq!(config.streams.len(), 1);
        assert_eq!(config.database.url, "postgres://u@db:5432/d");
        let bad_table = one.replace("ocsf_events", "devices");
        assert!(convert(&bad_table).unwrap_err().contains("table \"devices\" has no processor"));
        assert!(convert("[1]").unwrap_err().contains("not the Go writer's JSON"));
        let no_db = r#"{"nats_url":"nats://n","stream_name":"s","consumer_name":"c","subject":"a","table":"logs"}"#;
        assert!(convert(no_db).unwrap_err().contains("cnpg.host"));
        let tls_db = one.replace(
            r#""database":"d""#,
            r#""database":"d","cert_dir":"/certs","tls":{"ca_file":"root.pem","cert_file":"c.pem","key_file":"/k.pem"}"#,
        );
        let config = crate::parse_config(Path::new("x.toml"), &convert(&tls_db).unwrap()).unwrap();
        let files = crate::config::TlsFiles {
            ca_file: Some("/certs/root.pem".into()),
            client: Some(("/certs/c.pem".into(), "/k.pem".into())),
            server_name: None,
        };
        assert_eq!(
            config.database.tls,
            Some(crate::config::DatabaseTls { mode: crate::config::SslMode::VerifyFull, files })
        );
        let refused = tls_db.replace(r#""cert_dir""#, r#""ssl_mode":"disable","cert_dir""#);
        assert!(convert(&refused).unwrap_err().contains("disable"));
        let required = one.replace(r#""database":"d""#, r#""database":"d","ssl_mode":"require""#);
        let config = crate::parse_config(Path::new("x.toml"), &convert(&required).unwrap()).unwrap();
        assert_eq!(config.database.tls.unwrap().mode, crate::config::SslMode::Require);
    }
}
