//! Validation: the raw shape ([`super::raw`]) into the types of [`super`], which cannot be invalid. Every error
//! names the file, the line and the key (`streams.toml:14: stream[1].batch_size: ...`), so a typo is never a
//! silent default. Defaults that belong to a processor come from the table the processors supply
//! ([`super::Defaults`]).
//!
//! Uses the config types, [`super::locate`] (errors naming file and line) and [`super::stream`] (the
//! `[[stream]]`s and subject checks).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::locate::{Locator, duration, opt_duration, positive};
use super::raw::*;
use super::secret::Secret;
use super::stream::{check_name, check_subject, streams_config};
use super::types::*;

/// Parses and validates `text` (read from `path`, named in errors) with the processors' `defaults`.
pub(super) fn parse(path: &Path, text: &str, defaults: &Defaults) -> Result<Config, ConfigError> {
    let at = Locator::new(path, text);
    let de = toml::Deserializer::parse(text).map_err(|e| at.toml_error(&e, String::new()))?;
    let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
        // Spanned<T> shows up in the path as a private field; the operator's key is the rest.
        let key = e
            .path()
            .to_string()
            .replace(".$__serde_spanned_private_value", "")
            .replace("$__serde_spanned_private_value", "");
        let key = key.trim_matches('.').to_owned();
        at.toml_error(e.inner(), key)
    })?;
    validate(raw, &at, defaults)
}

fn validate(raw: RawConfig, at: &Locator<'_>, defaults: &Defaults) -> Result<Config, ConfigError> {
    let shutdown_timeout = opt_duration(at, raw.daemon.shutdown_timeout.as_ref(), "daemon.shutdown_timeout")?
        .unwrap_or(DaemonConfig::DEFAULT_SHUTDOWN_TIMEOUT);
    let otel = match raw.otel {
        Some(o) => Some(otel_config(o.into_inner(), at)?),
        None => None,
    };
    let ingest = match raw.ingest {
        Some(i) => Some(ingest_config(i.into_inner(), at)?),
        None => None,
    };
    let nats = nats_config(raw.nats.into_inner(), at)?;
    Ok(Config {
        source: at.file.to_owned(),
        dlq: dlq_config(&raw.dlq, at, nats.replicas)?,
        nats,
        database: database_config(raw.database.into_inner(), at, defaults)?,
        daemon: DaemonConfig { shutdown_timeout, watch_config: raw.daemon.watch_config.unwrap_or(false) },
        breaker: breaker_config(&raw.breaker, at)?,
        http: http_config(&raw.http, at)?,
        log: log_config(&raw.log, at)?,
        otel,
        ingest,
        jetstream: jetstream_config(&raw.jetstream, &raw.stream, at)?,
        streams: streams_config(raw.stream, at, defaults)?,
    })
}

/// `[jetstream.<name>]`: only for JetStream streams a `[[stream]]` names.
fn jetstream_config(
    raw: &BTreeMap<String, Spanned<RawJetStream>>,
    streams: &[Spanned<RawStream>],
    at: &Locator<'_>,
) -> Result<BTreeMap<String, JetStreamShape>, ConfigError> {
    let mut out = BTreeMap::new();
    for (name, shape) in raw {
        let key = |k: &str| format!("jetstream.{name}{k}");
        if !streams.iter().any(|s| s.get_ref().jetstream.get_ref() == name) {
            return Err(at.err(shape.span(), key(""), "no [[stream]] names this JetStream stream"));
        }
        let s = shape.get_ref();
        let max_bytes = s
            .max_bytes
            .as_ref()
            .map(|b| positive(b, 1, i64::MAX).map_err(|m| at.err(b.span(), key(".max_bytes"), m)))
            .transpose()?;
        let discard_new = match &s.discard {
            None => false,
            Some(d) if d.get_ref() == "old" => false,
            Some(d) if d.get_ref() == "new" => true,
            Some(d) => {
                return Err(at.err(d.span(), key(".discard"), format!("{:?}: write \"old\" or \"new\"", d.get_ref())));
            }
        };
        out.insert(
            name.clone(),
            JetStreamShape {
                max_age: opt_duration(at, s.max_age.as_ref(), &key(".max_age"))?,
                max_bytes,
                duplicate_window: opt_duration(at, s.duplicate_window.as_ref(), &key(".duplicate_window"))?,
                discard_new,
                replicas: replicas(at, s.replicas.as_ref(), &key(".replicas"))?,
            },
        );
    }
    Ok(out)
}

fn database_config(db: RawDatabase, at: &Locator<'_>, defaults: &Defaults) -> Result<DatabaseConfig, ConfigError> {
    if db.url.get_ref().trim().is_empty() {
        return Err(at.err(db.url.span(), "database.url", "must not be empty"));
    }
    let url = db.url.get_ref();
    if let Some((scheme, _)) = url.split_once("://").filter(|(s, _)| !s.contains(['=', ' ']))
        && !matches!(scheme, "postgres" | "postgresql")
    {
        return Err(at.err(
            db.url.span(),
            "database.url",
            format!("scheme {scheme:?}: use postgres:// or postgresql://"),
        ));
    }
    let schema = match db.schema {
        Some(s) => {
            check_identifier(s.get_ref()).map_err(|m| at.err(s.span(), "database.schema", m))?;
            s.into_inner()
        }
        None => DatabaseConfig::DEFAULT_SCHEMA.to_owned(),
    };
    let pool_size = match db.pool_size {
        Some(p) => positive(&p, 1, 1024).map_err(|m| at.err(p.span(), "database.pool_size", m))? as usize,
        None => DatabaseConfig::DEFAULT_POOL_SIZE,
    };
    let connect_timeout = opt_duration(at, db.connect_timeout.as_ref(), "database.connect_timeout")?
        .unwrap_or(DatabaseConfig::DEFAULT_CONNECT_TIMEOUT);
    let mut retention: BTreeMap<String, Duration> =
        defaults.retention.iter().map(|(t, d)| ((*t).to_owned(), *d)).collect();
    for (table, value) in &db.retention {
        let key = format!("database.retention.{table}");
        if !retention.contains_key(table) {
            let known: Vec<&str> = defaults.retention.iter().map(|(t, _)| *t).collect();
            return Err(at.err(value.span(), key, format!("unknown table; known: {}", known.join(", "))));
        }
        retention.insert(table.clone(), duration(at, value, &key)?);
    }
    let mut chunk_interval: BTreeMap<String, Duration> =
        defaults.chunk_interval.iter().map(|(t, d)| ((*t).to_owned(), *d)).collect();
    for (table, value) in &db.chunk_interval {
        let key = format!("database.chunk_interval.{table}");
        if !chunk_interval.contains_key(table) {
            let known: Vec<&str> = defaults.chunk_interval.iter().map(|(t, _)| *t).collect();
            return Err(at.err(value.span(), key, format!("unknown table; known: {}", known.join(", "))));
        }
        chunk_interval.insert(table.clone(), duration(at, value, &key)?);
    }
    let volatile_tag_keys = match db.series_key.and_then(|k| k.volatile_tag_keys) {
        Some(keys) => {
            let mut seen = std::collections::BTreeSet::new();
            for k in &keys {
                let key = "database.series_key.volatile_tag_keys";
                if k.get_ref().is_empty() {
                    return Err(at.err(k.span(), key, "an empty tag key"));
                }
                if !seen.insert(k.get_ref().as_str()) {
                    return Err(at.err(k.span(), key, format!("{:?} is listed twice", k.get_ref())));
                }
            }
            keys.into_iter().map(Spanned::into_inner).collect()
        }
        None => DatabaseConfig::DEFAULT_VOLATILE_TAG_KEYS.iter().map(|k| (*k).to_owned()).collect(),
    };
    let password_check = opt_duration(at, db.password_check.as_ref(), "database.password_check")?
        .unwrap_or(DatabaseConfig::DEFAULT_PASSWORD_CHECK);
    let ledger_retention = opt_duration(at, db.ledger_retention.as_ref(), "database.ledger_retention")?
        .unwrap_or(DatabaseConfig::DEFAULT_LEDGER_RETENTION);
    let statement_timeout = opt_duration(at, db.statement_timeout.as_ref(), "database.statement_timeout")?
        .unwrap_or(DatabaseConfig::DEFAULT_STATEMENT_TIMEOUT);
    let stall_warning = opt_duration(at, db.stall_warning.as_ref(), "database.stall_warning")?
        .unwrap_or(DatabaseConfig::DEFAULT_STALL_WARNING);
    Ok(DatabaseConfig {
        url: db.url.into_inner(),
        schema,
        pool_size,
        connect_timeout,
        retention,
        chunk_interval,
        volatile_tag_keys,
        ledger_retention,
        password_file: db.password_file.map(|p| PathBuf::from(p.into_inner())),
        password_check,
        tls: database_tls(db.tls, at)?,
        statement_timeout,
        stall_warning,
    })
}

/// A replica count: 1 to 5, as JetStream allows.
fn replicas(at: &Locator<'_>, v: Option<&Spanned<i64>>, key: &str) -> Result<Option<usize>, ConfigError> {
    v.map(|r| positive(r, 1, 5).map(|n| n as usize).map_err(|m| at.err(r.span(), key, m))).transpose()
}

fn dlq_config(d: &RawDlq, at: &Locator<'_>, default_replicas: usize) -> Result<DlqConfig, ConfigError> {
    let subject_prefix = match &d.subject_prefix {
        Some(p) => {
            check_subject(p.get_ref())
                .and_then(|()| {
                    if p.get_ref().contains(['*', '>']) { Err("must not contain wildcards".into()) } else { Ok(()) }
                })
                .map_err(|m| at.err(p.span(), "dlq.subject_prefix", m))?;
            p.get_ref().clone()
        }
        None => DlqConfig::DEFAULT_SUBJECT_PREFIX.to_owned(),
    };
    let stream = match &d.stream {
        Some(s) => {
            check_name(s.get_ref()).map_err(|m| at.err(s.span(), "dlq.stream", m))?;
            s.get_ref().clone()
        }
        None => DlqConfig::DEFAULT_STREAM.to_owned(),
    };
    let max_age = opt_duration(at, d.max_age.as_ref(), "dlq.max_age")?.unwrap_or(DlqConfig::DEFAULT_MAX_AGE);
    let max_bytes = match &d.max_bytes {
        Some(b) => positive(b, 1024, i64::MAX).map_err(|m| at.err(b.span(), "dlq.max_bytes", m))?,
        None => DlqConfig::DEFAULT_MAX_BYTES,
    };
    let replicas = replicas(at, d.replicas.as_ref(), "dlq.replicas")?.unwrap_or(default_replicas);
    Ok(DlqConfig { subject_prefix, stream, max_age, max_bytes, replicas })
}

fn breaker_config(b: &RawBreaker, at: &Locator<'_>) -> Result<BreakerConfig, ConfigError> {
    Ok(BreakerConfig {
        failures: match &b.failures {
            Some(f) => positive(f, 1, 1000).map_err(|m| at.err(f.span(), "breaker.failures", m))? as u32,
            None => BreakerConfig::DEFAULT_FAILURES,
        },
        cooldown: opt_duration(at, b.cooldown.as_ref(), "breaker.cooldown")?.unwrap_or(BreakerConfig::DEFAULT_COOLDOWN),
    })
}

fn http_config(h: &RawHttp, at: &Locator<'_>) -> Result<HttpConfig, ConfigError> {
    Ok(HttpConfig {
        listen: match &h.listen {
            Some(l) => Some(l.get_ref().parse().map_err(|_| {
                at.err(l.span(), "http.listen", format!("{:?} is not host:port, e.g. \"127.0.0.1:9464\"", l.get_ref()))
            })?),
            None => None,
        },
        refresh: opt_duration(at, h.refresh.as_ref(), "http.refresh")?.unwrap_or(HttpConfig::DEFAULT_REFRESH),
    })
}

fn log_config(l: &RawLog, at: &Locator<'_>) -> Result<LogConfig, ConfigError> {
    Ok(LogConfig {
        format: match l.format.as_ref().map(|f| (f, f.get_ref().as_str())) {
            None | Some((_, "text")) => LogFormat::Text,
            Some((_, "json")) => LogFormat::Json,
            Some((f, other)) => {
                return Err(at.err(f.span(), "log.format", format!("{other:?}: expected \"text\" or \"json\"")));
            }
        },
        level: match &l.level {
            Some(l) => {
                tracing_subscriber::EnvFilter::try_new(l.get_ref())
                    .map_err(|e| at.err(l.span(), "log.level", format!("not a log filter: {e}")))?;
                l.get_ref().clone()
            }
            None => LogConfig::DEFAULT_LEVEL.to_owned(),
        },
        dead_letter_lines: match &l.dead_letter_lines {
            Some(n) => positive(n, 0, 1_000_000).map_err(|m| at.err(n.span(), "log.dead_letter_lines", m))? as u32,
            None => LogConfig::DEFAULT_DEAD_LETTER_LINES,
        },
        dead_letter_every: opt_duration(at, l.dead_letter_every.as_ref(), "log.dead_letter_every")?
            .filter(|d| !d.is_zero())
            .unwrap_or(LogConfig::DEFAULT_DEAD_LETTER_EVERY),
        summary_every: opt_duration(at, l.summary_every.as_ref(), "log.summary_every")?
            .unwrap_or(LogConfig::DEFAULT_SUMMARY_EVERY),
    })
}

fn ingest_config(i: RawIngest, at: &Locator<'_>) -> Result<IngestConfig, ConfigError> {
    let request_timeout = opt_duration(at, i.request_timeout.as_ref(), "ingest.request_timeout")?
        .unwrap_or(IngestConfig::DEFAULT_REQUEST_TIMEOUT);
    // A waiting request must answer (202 at worst) before the request timeout cuts it off with a 408.
    let max_wait = opt_duration(at, i.max_wait.as_ref(), "ingest.max_wait")?
        .unwrap_or(IngestConfig::DEFAULT_MAX_WAIT.min(request_timeout.saturating_sub(Duration::from_secs(1))));
    if let Some(m) = &i.max_wait
        && max_wait >= request_timeout
    {
        return Err(at.err(
            m.span(),
            "ingest.max_wait",
            format!(
                "{max_wait:?} is not below ingest.request_timeout ({request_timeout:?}): the wait would be cut off"
            ),
        ));
    }
    let wait_timeout = opt_duration(at, i.wait_timeout.as_ref(), "ingest.wait_timeout")?
        .unwrap_or(IngestConfig::DEFAULT_WAIT_TIMEOUT.min(max_wait));
    if let Some(w) = &i.wait_timeout
        && wait_timeout > max_wait
    {
        return Err(at.err(
            w.span(),
            "ingest.wait_timeout",
            format!("{wait_timeout:?} is over ingest.max_wait ({max_wait:?})"),
        ));
    }
    let wait_flush =
        opt_duration(at, i.wait_flush.as_ref(), "ingest.wait_flush")?.unwrap_or(IngestConfig::DEFAULT_WAIT_FLUSH);
    Ok(IngestConfig {
        listen: i.listen.get_ref().parse().map_err(|_| {
            at.err(
                i.listen.span(),
                "ingest.listen",
                format!("{:?} is not host:port, e.g. \"127.0.0.1:8080\"", i.listen.get_ref()),
            )
        })?,
        max_body: match &i.max_body {
            Some(m) => positive(m, 1, 64 * 1024 * 1024).map_err(|e| at.err(m.span(), "ingest.max_body", e))? as usize,
            None => IngestConfig::DEFAULT_MAX_BODY,
        },
        max_lag: match &i.max_lag {
            Some(m) => positive(m, 0, i64::MAX).map_err(|e| at.err(m.span(), "ingest.max_lag", e))? as u64,
            None => 0,
        },
        status_ttl: opt_duration(at, i.status_ttl.as_ref(), "ingest.status_ttl")?
            .unwrap_or(IngestConfig::DEFAULT_STATUS_TTL),
        max_connections: match &i.max_connections {
            Some(m) => positive(m, 1, 65_536).map_err(|e| at.err(m.span(), "ingest.max_connections", e))? as usize,
            None => IngestConfig::DEFAULT_MAX_CONNECTIONS,
        },
        header_timeout: opt_duration(at, i.header_timeout.as_ref(), "ingest.header_timeout")?
            .unwrap_or(IngestConfig::DEFAULT_HEADER_TIMEOUT),
        request_timeout,
        max_batch_items: match &i.max_batch_items {
            Some(m) => positive(m, 1, 100_000).map_err(|e| at.err(m.span(), "ingest.max_batch_items", e))? as usize,
            None => IngestConfig::DEFAULT_MAX_BATCH_ITEMS,
        },
        wait_timeout,
        max_wait,
        max_waiters: match &i.max_waiters {
            Some(m) => positive(m, 0, 1_000_000).map_err(|e| at.err(m.span(), "ingest.max_waiters", e))? as usize,
            None => IngestConfig::DEFAULT_MAX_WAITERS,
        },
        wait_flush,
        tokens_file: i.tokens_file.map(|f| PathBuf::from(f.into_inner())),
        tls: i.tls.map(|t| {
            let t = t.into_inner();
            ServerTls {
                cert_file: t.cert_file.into_inner().into(),
                key_file: t.key_file.into_inner().into(),
                client_ca_file: t.client_ca_file.map(|c| c.into_inner().into()),
            }
        }),
    })
}

fn otel_config(o: RawOtel, at: &Locator<'_>) -> Result<OtelConfig, ConfigError> {
    let protocol = match o.protocol.as_ref().map(|p| (p, p.get_ref().as_str())) {
        None | Some((_, "http/protobuf")) => OtelProtocol::HttpProtobuf,
        Some((_, "grpc")) => OtelProtocol::Grpc,
        Some((p, other)) => {
            return Err(at.err(
                p.span(),
                "otel.protocol",
                format!("{other:?}: expected \"http/protobuf\" or \"grpc\""),
            ));
        }
    };
    let bad = |why: &str| at.err(o.endpoint.span(), "otel.endpoint", format!("{:?}: {why}", o.endpoint.get_ref()));
    let uri: http::Uri = o.endpoint.get_ref().trim().parse().map_err(|_| bad("not a URL"))?;
    let scheme = match uri.scheme_str() {
        Some(s @ ("http" | "https")) => s.to_owned(),
        _ => return Err(bad("must start with http:// or https://")),
    };
    let host = uri.host().filter(|h| !h.is_empty()).ok_or_else(|| bad("has no host"))?;
    let port = uri.port_u16().unwrap_or(match protocol {
        OtelProtocol::HttpProtobuf => 4318,
        OtelProtocol::Grpc => 4317,
    });
    let path = match (protocol, uri.path()) {
        (OtelProtocol::Grpc, "" | "/") => "/opentelemetry.proto.collector.trace.v1.TraceService/Export".to_owned(),
        (OtelProtocol::Grpc, _) => return Err(bad("a gRPC endpoint has no path")),
        (OtelProtocol::HttpProtobuf, "" | "/") => "/v1/traces".to_owned(),
        (OtelProtocol::HttpProtobuf, p) => p.to_owned(),
    };
    let host = if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host.to_owned() };
    let endpoint: http::Uri = format!("{scheme}://{host}:{port}{path}").parse().map_err(|_| bad("not a URL"))?;
    let mut headers = Vec::with_capacity(o.headers.len());
    for (name, value) in &o.headers {
        let key = format!("otel.headers.{name}");
        let name = http::HeaderName::try_from(name.as_str())
            .map_err(|_| at.err(value.span(), key.clone(), "not an HTTP header name"))?;
        let mut value = http::HeaderValue::try_from(value.get_ref().as_str())
            .map_err(|_| at.err(value.span(), key, "not a valid HTTP header value"))?;
        value.set_sensitive(true);
        headers.push((name, value));
    }
    let tls = match o.tls {
        Some(t) => {
            let t = t.into_inner();
            tls_files(at, "otel.tls", [&t.ca_file, &t.cert_file, &t.key_file, &t.server_name])?
        }
        None => TlsFiles::default(),
    };
    Ok(OtelConfig {
        endpoint,
        protocol,
        service_name: match &o.service_name {
            Some(n) if n.get_ref().trim().is_empty() => {
                return Err(at.err(n.span(), "otel.service_name", "must not be empty"));
            }
            Some(n) => n.get_ref().clone(),
            None => OtelConfig::DEFAULT_SERVICE_NAME.to_owned(),
        },
        headers,
        timeout: opt_duration(at, o.timeout.as_ref(), "otel.timeout")?.unwrap_or(OtelConfig::DEFAULT_TIMEOUT),
        export_interval: opt_duration(at, o.export_interval.as_ref(), "otel.export_interval")?
            .unwrap_or(OtelConfig::DEFAULT_EXPORT_INTERVAL),
        tls,
    })
}

fn nats_config(n: RawNats, at: &Locator<'_>) -> Result<NatsConfig, ConfigError> {
    if n.url.get_ref().trim().is_empty() {
        return Err(at.err(n.url.span(), "nats.url", "must not be empty"));
    }
    let path = |v: &Spanned<String>| PathBuf::from(v.get_ref());
    let secret = |value: &Option<Spanned<String>>, file: &Option<Spanned<String>>, key: &str| match (value, file) {
        (Some(_), Some(f)) => {
            Err(at.err(f.span(), format!("nats.{key}_file"), format!("set {key} or {key}_file, not both")))
        }
        (Some(v), None) => Ok(Some(Secret::Value(v.get_ref().clone()))),
        (None, Some(f)) => Ok(Some(Secret::File(path(f)))),
        (None, None) => Ok(None),
    };
    let password = secret(&n.password, &n.password_file, "password")?;
    let token = secret(&n.token, &n.token_file, "token")?;
    let mut methods: Vec<(&str, std::ops::Range<usize>)> = Vec::new();
    if let Some(c) = &n.creds_file {
        methods.push(("creds_file", c.span()));
    }
    if let Some(c) = &n.nkey_seed_file {
        methods.push(("nkey_seed_file", c.span()));
    }
    if let Some(c) = &n.user {
        methods.push(("user", c.span()));
    }
    if let Some(c) = n.token.as_ref().or(n.token_file.as_ref()) {
        methods.push(("token", c.span()));
    }
    if methods.len() > 1 {
        let names: Vec<&str> = methods.iter().map(|m| m.0).collect();
        return Err(at.err(
            methods[1].1.clone(),
            format!("nats.{}", methods[1].0),
            format!("choose one way to authenticate, not {}", names.join(" and ")),
        ));
    }
    let auth = match (&n.creds_file, &n.nkey_seed_file, &n.user, token) {
        (Some(c), _, _, _) => NatsAuth::Creds(path(c)),
        (_, Some(k), _, _) => NatsAuth::NkeySeed(path(k)),
        (_, _, Some(u), _) => match password {
            Some(password) => NatsAuth::UserPassword { user: u.get_ref().clone(), password },
            None => return Err(at.err(u.span(), "nats.user", "needs password or password_file")),
        },
        (_, _, _, Some(t)) => NatsAuth::Token(t),
        _ => {
            if let Some(p) = n.password.as_ref().or(n.password_file.as_ref()) {
                return Err(at.err(p.span(), "nats.password", "a password needs a user"));
            }
            NatsAuth::None
        }
    };
    let tls = match n.tls {
        None => None,
        Some(t) => {
            let t = t.into_inner();
            Some(tls_files(at, "nats.tls", [&t.ca_file, &t.cert_file, &t.key_file, &t.server_name])?)
        }
    };
    let (url, auth) =
        super::nats_url::take_credentials(n.url.get_ref(), &auth).map_err(|m| at.err(n.url.span(), "nats.url", m))?;
    super::nats_url::servers(&url).map_err(|m| at.err(n.url.span(), "nats.url", m))?;
    let replicas = replicas(at, n.replicas.as_ref(), "nats.replicas")?.unwrap_or(1);
    Ok(NatsConfig { url, auth, tls, replicas })
}

/// `ca_file`, `cert_file` + `key_file`, `server_name` of a TLS section.
fn tls_files(at: &Locator<'_>, section: &str, keys: [&Option<Spanned<String>>; 4]) -> Result<TlsFiles, ConfigError> {
    let [ca_file, cert_file, key_file, server_name] = keys;
    let path = |v: &Spanned<String>| PathBuf::from(v.get_ref());
    let client = match (cert_file, key_file) {
        (Some(c), Some(k)) => Some((path(c), path(k))),
        (None, None) => None,
        (Some(c), None) => return Err(at.err(c.span(), format!("{section}.cert_file"), "needs key_file too")),
        (None, Some(k)) => return Err(at.err(k.span(), format!("{section}.key_file"), "needs cert_file too")),
    };
    if let Some(name) = server_name {
        rustls::pki_types::ServerName::try_from(name.get_ref().as_str())
            .map_err(|e| at.err(name.span(), format!("{section}.server_name"), e.to_string()))?;
    }
    Ok(TlsFiles {
        ca_file: ca_file.as_ref().map(path),
        client,
        server_name: server_name.as_ref().map(|n| n.get_ref().clone()),
    })
}

fn database_tls(raw: Option<Spanned<RawDbTls>>, at: &Locator<'_>) -> Result<Option<DatabaseTls>, ConfigError> {
    let Some(raw) = raw else { return Ok(None) };
    let span = raw.span();
    let t = raw.into_inner();
    let files = tls_files(at, "database.tls", [&t.ca_file, &t.cert_file, &t.key_file, &t.server_name])?;
    let mode = match &t.mode {
        Some(m) => SslMode::parse(m.get_ref()).map_err(|e| at.err(m.span(), "database.tls.mode", e))?,
        None => SslMode::VerifyFull,
    };
    if mode == SslMode::Disable && files != TlsFiles::default() {
        return Err(at.err(span, "database.tls.mode", "is disable, yet files or a server name are set"));
    }
    Ok(Some(DatabaseTls { mode, files }))
}

/// A PostgreSQL schema name: a plain identifier (letters, digits, `_`; not starting with a digit), at most 63
/// bytes. It is spliced into migrations, so nothing that needs escaping is allowed.
fn check_identifier(name: &str) -> Result<(), String> {
    let plain =
        name.bytes().enumerate().all(|(i, b)| b == b'_' || b.is_ascii_alphabetic() || (i > 0 && b.is_ascii_digit()));
    if name.is_empty() || name.len() > 63 || !plain {
        return Err(format!("{name:?} is not a plain identifier (letters, digits and '_', at most 63 bytes)"));
    }
    Ok(())
}
