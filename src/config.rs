//! `streams.toml`: the raw serde shape, its defaults, and `validate()` into types that cannot be invalid.
//!
//! Every error names the file, the line and the key (`streams.toml:14: stream[1].batch_size: ...`), so a typo is
//! never a silent default.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::processor::ProcessorKind;

/// Environment variable that overrides `[nats] url`.
pub const ENV_NATS_URL: &str = "NATS_URL";
/// Environment variable that overrides `[database] url`.
pub const ENV_DATABASE_URL: &str = "DATABASE_URL";

/// A configuration error: where it is and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid, at a known place.
    #[error("{file}:{line}: {key}: {message}")]
    Invalid {
        /// The file.
        file: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The dotted key path, e.g. `stream[0].batch_size`.
        key: String,
        /// What is wrong.
        message: String,
    },
}

// ---------------------------------------------------------------------------------------------------------------
// Raw serde shape: what the operator writes.
// ---------------------------------------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    /// NATS connection.
    nats: Spanned<RawNats>,
    /// PostgreSQL connection and schema.
    database: Spanned<RawDatabase>,
    /// Daemon-wide settings.
    #[serde(default)]
    daemon: RawDaemon,
    /// Dead-letter queue.
    #[serde(default)]
    dlq: RawDlq,
    /// Circuit breaker in front of the database.
    #[serde(default)]
    breaker: RawBreaker,
    /// The operator's HTTP listener (metrics, health).
    #[serde(default)]
    http: RawHttp,
    /// Log format and level.
    #[serde(default)]
    log: RawLog,
    /// OpenTelemetry traces of our own batches.
    #[serde(default)]
    otel: Option<Spanned<RawOtel>>,
    /// The HTTP ingest front.
    #[serde(default)]
    ingest: Option<Spanned<RawIngest>>,
    /// One pipeline per `[[stream]]`.
    #[serde(default)]
    stream: Vec<Spanned<RawStream>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNats {
    /// Server URL; env `NATS_URL` overrides.
    url: Spanned<String>,
    /// Credentials file (JWT + nkey seed), as `nsc` writes it.
    #[serde(default)]
    creds_file: Option<Spanned<String>>,
    /// File holding an nkey seed (`SU...`).
    #[serde(default)]
    nkey_seed_file: Option<Spanned<String>>,
    /// User for user/password authentication.
    #[serde(default)]
    user: Option<Spanned<String>>,
    /// Password (prefer `password_file`).
    #[serde(default)]
    password: Option<Spanned<String>>,
    /// File holding the password.
    #[serde(default)]
    password_file: Option<Spanned<String>>,
    /// Token (prefer `token_file`).
    #[serde(default)]
    token: Option<Spanned<String>>,
    /// File holding the token.
    #[serde(default)]
    token_file: Option<Spanned<String>>,
    /// TLS: CA, client certificate.
    #[serde(default)]
    tls: Option<Spanned<RawTls>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    /// CA bundle (PEM) that signed the server's certificate; absent: the system roots.
    #[serde(default)]
    ca_file: Option<Spanned<String>>,
    /// Client certificate (PEM) for mutual TLS.
    #[serde(default)]
    cert_file: Option<Spanned<String>>,
    /// Its private key (PEM).
    #[serde(default)]
    key_file: Option<Spanned<String>>,
    /// Name the server's certificate must carry, when it differs from the host in the URL.
    #[serde(default)]
    server_name: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDbTls {
    /// `disable`, `prefer`, `require`, `verify-ca` or `verify-full` (the default when this section is present).
    #[serde(default)]
    mode: Option<Spanned<String>>,
    /// CA bundle (PEM) that signed the server's certificate; absent: the system roots.
    #[serde(default)]
    ca_file: Option<Spanned<String>>,
    /// Client certificate (PEM), for `cert` authentication.
    #[serde(default)]
    cert_file: Option<Spanned<String>>,
    /// Its private key (PEM).
    #[serde(default)]
    key_file: Option<Spanned<String>>,
    /// Name the server's certificate must carry, when it differs from the host in the URL.
    #[serde(default)]
    server_name: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDatabase {
    /// PostgreSQL URL; env `DATABASE_URL` overrides.
    url: Spanned<String>,
    /// Schema the tables live in.
    #[serde(default)]
    schema: Option<Spanned<String>>,
    /// Connections shared by all streams.
    #[serde(default)]
    pool_size: Option<Spanned<i64>>,
    /// How long to wait for a new connection.
    #[serde(default)]
    connect_timeout: Option<Spanned<String>>,
    /// Retention per table (TimescaleDB only), e.g. `timeseries_metrics = "7d"`.
    #[serde(default)]
    retention: BTreeMap<String, Spanned<String>>,
    /// How long the idempotency ledger remembers a committed message.
    #[serde(default)]
    ledger_retention: Option<Spanned<String>>,
    /// File holding the password (overrides one in the URL); re-read every `password_check`.
    #[serde(default)]
    password_file: Option<Spanned<String>>,
    /// How often `password_file` is re-read.
    #[serde(default)]
    password_check: Option<Spanned<String>>,
    /// TLS: mode, CA, client certificate.
    #[serde(default)]
    tls: Option<Spanned<RawDbTls>>,
    /// `statement_timeout` of the daemon's sessions ("0s": none).
    #[serde(default)]
    statement_timeout: Option<Spanned<String>>,
    /// A write taking longer than this logs one warning saying what it waits on.
    #[serde(default)]
    stall_warning: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    /// Upper bound on a graceful shutdown.
    #[serde(default)]
    shutdown_timeout: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDlq {
    /// Dead letters go to `<subject_prefix>.<stream name>`.
    #[serde(default)]
    subject_prefix: Option<Spanned<String>>,
    /// The JetStream stream capturing them (created if missing).
    #[serde(default)]
    stream: Option<Spanned<String>>,
    /// How long dead letters are kept.
    #[serde(default)]
    max_age: Option<Spanned<String>>,
    /// Most bytes kept (oldest dropped beyond).
    #[serde(default)]
    max_bytes: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBreaker {
    /// Consecutive connection-class failures that open it.
    #[serde(default)]
    failures: Option<Spanned<i64>>,
    /// How long it stays open before a probe.
    #[serde(default)]
    cooldown: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    /// `host:port` for /metrics, /healthz and /readyz; absent: no listener.
    #[serde(default)]
    listen: Option<Spanned<String>>,
    /// How often consumer lag gauges are refreshed from JetStream.
    #[serde(default)]
    refresh: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    /// `text` (the default) or `json`.
    #[serde(default)]
    format: Option<Spanned<String>>,
    /// A tracing filter such as `info` or `info,db_event_writer=debug`; `RUST_LOG` overrides it.
    #[serde(default)]
    level: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIngest {
    /// Address of the ingest listener, e.g. `127.0.0.1:8080`.
    listen: Spanned<String>,
    /// Largest request body in bytes.
    #[serde(default)]
    max_body: Option<Spanned<i64>>,
    /// 429 while the consumer of the posted subject has more messages pending than this (0: no limit).
    #[serde(default)]
    max_lag: Option<Spanned<i64>>,
    /// How long the fate of a posted message stays queryable.
    #[serde(default)]
    status_ttl: Option<Spanned<String>>,
    /// Bearer tokens (SHA-256 hashes, subjects, rate limits); re-read when it changes. Absent: no authentication.
    #[serde(default)]
    tokens_file: Option<Spanned<String>>,
    /// TLS on the listener: certificate, key, and a CA for client certificates.
    #[serde(default)]
    tls: Option<Spanned<RawServerTls>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServerTls {
    /// The listener's certificate chain (PEM).
    cert_file: Spanned<String>,
    /// Its private key (PEM).
    key_file: Spanned<String>,
    /// When set, clients must present a certificate signed by this CA.
    #[serde(default)]
    client_ca_file: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOtel {
    /// Collector URL: `http://host:4318` (OTLP/HTTP; `/v1/traces` is added when no path is given) or, with
    /// `protocol = "grpc"`, `http://host:4317`; `https://` for TLS.
    endpoint: Spanned<String>,
    /// `http/protobuf` (the default) or `grpc`.
    #[serde(default)]
    protocol: Option<Spanned<String>>,
    /// `service.name` of the spans.
    #[serde(default)]
    service_name: Option<Spanned<String>>,
    /// Extra request headers (e.g. an authorization token); values are never printed.
    #[serde(default)]
    headers: BTreeMap<String, Spanned<String>>,
    /// Upper bound on one export request.
    #[serde(default)]
    timeout: Option<Spanned<String>>,
    /// How often queued spans are sent.
    #[serde(default)]
    export_interval: Option<Spanned<String>>,
    /// TLS for `https://` endpoints: CA, client certificate, server name.
    #[serde(default)]
    tls: Option<Spanned<RawTls>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStream {
    name: Spanned<String>,
    jetstream: Spanned<String>,
    consumer: Spanned<String>,
    subjects: Spanned<Vec<Spanned<String>>>,
    processor: Spanned<ProcessorKind>,
    #[serde(default)]
    batch_size: Option<Spanned<i64>>,
    #[serde(default)]
    batch_timeout: Option<Spanned<String>>,
    #[serde(default)]
    ack_wait: Option<Spanned<String>>,
    #[serde(default)]
    max_ack_pending: Option<Spanned<i64>>,
    #[serde(default)]
    max_deliver: Option<Spanned<i64>>,
    #[serde(default)]
    nak_delay: Option<Spanned<String>>,
    #[serde(default)]
    nak_delay_max: Option<Spanned<String>>,
    #[serde(default)]
    batches_in_flight: Option<Spanned<i64>>,
    #[serde(default)]
    writers: Option<Spanned<i64>>,
    #[serde(default)]
    validate: Option<Spanned<bool>>,
    #[serde(default)]
    max_rows_per_message: Option<Spanned<i64>>,
    #[serde(default)]
    max_expansion: Option<Spanned<i64>>,
    #[serde(default)]
    max_bytes_in_flight: Option<Spanned<i64>>,
}

// ---------------------------------------------------------------------------------------------------------------
// Validated types: what the daemon runs with.
// ---------------------------------------------------------------------------------------------------------------

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from (for messages).
    pub source: PathBuf,
    /// NATS connection.
    pub nats: NatsConfig,
    /// PostgreSQL connection.
    pub database: DatabaseConfig,
    /// Daemon-wide settings.
    pub daemon: DaemonConfig,
    /// Dead-letter queue.
    pub dlq: DlqConfig,
    /// Circuit breaker.
    pub breaker: BreakerConfig,
    /// HTTP listener.
    pub http: HttpConfig,
    /// Logging.
    pub log: LogConfig,
    /// OpenTelemetry trace export; `None`: off.
    pub otel: Option<OtelConfig>,
    /// The HTTP ingest front; `None`: off.
    pub ingest: Option<IngestConfig>,
    /// One entry per `[[stream]]`, in file order.
    pub streams: Vec<StreamConfig>,
}

/// `[nats]`.
#[derive(Clone, PartialEq)]
pub struct NatsConfig {
    /// Server URL (may carry credentials, so it is never printed whole).
    pub url: String,
    /// How the daemon authenticates.
    pub auth: NatsAuth,
    /// TLS files; `Some` requires TLS.
    pub tls: Option<TlsFiles>,
}

impl fmt::Debug for NatsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsConfig")
            .field("url", &redact_url(&self.url))
            .field("auth", &self.auth)
            .field("tls", &self.tls)
            .finish()
    }
}

/// A secret written in the file or kept in a file of its own (re-read at each use). Never printed.
#[derive(Clone, PartialEq)]
pub enum Secret {
    /// The value itself.
    Value(String),
    /// A file holding it (trailing whitespace trimmed).
    File(PathBuf),
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Value(_) => f.write_str("<redacted>"),
            Secret::File(p) => write!(f, "<from {}>", p.display()),
        }
    }
}

impl Secret {
    /// The secret's current value.
    pub fn read(&self) -> Result<String, String> {
        match self {
            Secret::Value(v) => Ok(v.clone()),
            Secret::File(p) => {
                let v = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
                let v = v.trim_end().to_owned();
                if v.is_empty() { Err(format!("{}: is empty", p.display())) } else { Ok(v) }
            }
        }
    }
}

/// How the daemon authenticates to NATS.
#[derive(Debug, Clone, PartialEq)]
pub enum NatsAuth {
    /// No credentials (or only what the URL carries).
    None,
    /// A `.creds` file (JWT and nkey seed).
    Creds(PathBuf),
    /// An nkey seed file.
    NkeySeed(PathBuf),
    /// User and password.
    UserPassword {
        /// User name.
        user: String,
        /// Password.
        password: Secret,
    },
    /// A token.
    Token(Secret),
}

/// PEM files for TLS.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TlsFiles {
    /// CA bundle; `None`: the system roots.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (mutual TLS).
    pub client: Option<(PathBuf, PathBuf)>,
    /// Name to verify the server's certificate against instead of the host connected to.
    pub server_name: Option<String>,
}

/// PostgreSQL's `sslmode`, as libpq spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP.
    Disable,
    /// TLS when the server offers it, without checking its certificate (unless a CA file is given).
    Prefer,
    /// TLS always, without checking the certificate (unless a CA file is given, as libpq does).
    Require,
    /// TLS, the certificate signed by a trusted CA.
    VerifyCa,
    /// TLS, the certificate signed by a trusted CA and naming the host.
    VerifyFull,
}

impl SslMode {
    /// The libpq spelling (`allow` is taken as `prefer`).
    pub fn parse(text: &str) -> Result<SslMode, String> {
        Ok(match text {
            "disable" => SslMode::Disable,
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(format!(
                    "unknown sslmode {other:?}; use disable, prefer, require, verify-ca or verify-full"
                ));
            }
        })
    }
}

/// `[database.tls]`.
#[derive(Debug, Clone, PartialEq)]
pub struct DatabaseTls {
    /// How TLS is used and how much is checked.
    pub mode: SslMode,
    /// CA, client certificate, server name.
    pub files: TlsFiles,
}

/// `[database]`.
#[derive(Clone, PartialEq)]
pub struct DatabaseConfig {
    /// PostgreSQL URL (may carry a password, so it is never printed whole).
    pub url: String,
    /// Schema the tables live in.
    pub schema: String,
    /// Connections shared by all streams.
    pub pool_size: usize,
    /// How long to wait for a new connection or a free one in the pool.
    pub connect_timeout: Duration,
    /// Retention per table, applied by `migrate` when TimescaleDB is installed.
    pub retention: BTreeMap<String, Duration>,
    /// How long the idempotency ledger (tables without a key of their own) remembers a committed message.
    pub ledger_retention: Duration,
    /// File holding the password; re-read every `password_check`, and the pool rebuilt when it changes.
    pub password_file: Option<PathBuf>,
    /// How often the password file is re-read.
    pub password_check: Duration,
    /// `[database.tls]`; `None`: whatever the URL says (`sslmode=` etc.), else no TLS.
    pub tls: Option<DatabaseTls>,
    /// `statement_timeout` set on every session of the daemon's pool (zero: none). A write's deadline follows from
    /// it ([`crate::db::write_deadline`]).
    pub statement_timeout: Duration,
    /// A write that takes longer than this logs one warning (which stream, how long, what it waits on).
    pub stall_warning: Duration,
}

impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &redact_url(&self.url))
            .field("schema", &self.schema)
            .field("pool_size", &self.pool_size)
            .field("connect_timeout", &self.connect_timeout)
            .field("retention", &self.retention)
            .field("ledger_retention", &self.ledger_retention)
            .field("password_file", &self.password_file)
            .field("tls", &self.tls)
            .field("statement_timeout", &self.statement_timeout)
            .field("stall_warning", &self.stall_warning)
            .finish()
    }
}

/// `[daemon]`.
#[derive(Debug, Clone, PartialEq)]
pub struct DaemonConfig {
    /// Upper bound on a graceful shutdown (stop fetching, flush, commit, ack).
    pub shutdown_timeout: Duration,
}

/// `[dlq]`: where messages that can never be written go.
#[derive(Debug, Clone, PartialEq)]
pub struct DlqConfig {
    /// Dead letters of stream `x` go to `<subject_prefix>.x`.
    pub subject_prefix: String,
    /// The JetStream stream capturing `<subject_prefix>.>`.
    pub stream: String,
    /// How long dead letters are kept.
    pub max_age: Duration,
    /// Most bytes kept.
    pub max_bytes: i64,
}

impl DlqConfig {
    /// `dlq`, so `dlq.telemetry`.
    pub const DEFAULT_SUBJECT_PREFIX: &str = "dlq";
    /// `DLQ`.
    pub const DEFAULT_STREAM: &str = "DLQ";
    /// Two weeks to look at and replay them.
    pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(14 * 86_400);
    /// 1 GiB.
    pub const DEFAULT_MAX_BYTES: i64 = 1 << 30;

    /// The subject a stream's dead letters go to.
    pub fn subject_for(&self, stream: &str) -> String {
        format!("{}.{stream}", self.subject_prefix)
    }
}

/// `[http]`: the operator's listener.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpConfig {
    /// Where /metrics, /healthz and /readyz are served; `None`: not served.
    pub listen: Option<std::net::SocketAddr>,
    /// How often consumer lag gauges are refreshed.
    pub refresh: Duration,
}

impl HttpConfig {
    /// Lag gauges every 10 s: cheap for JetStream, fresh enough for alerts.
    pub const DEFAULT_REFRESH: Duration = Duration::from_secs(10);
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human text (coloured on a terminal).
    Text,
    /// One JSON object per line.
    Json,
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// Text or JSON.
    pub format: LogFormat,
    /// Tracing filter; `RUST_LOG` overrides it.
    pub level: String,
}

impl LogConfig {
    /// async-nats logs every reconnect attempt at info; its warnings are enough.
    pub const DEFAULT_LEVEL: &str = "info,async_nats=warn";
}

/// `[ingest]`: the HTTP front for clients without NATS.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestConfig {
    /// Listener address.
    pub listen: std::net::SocketAddr,
    /// Largest request body in bytes.
    pub max_body: usize,
    /// 429 while the posted subject's consumer has more pending than this; 0: no limit.
    pub max_lag: u64,
    /// How long the fate of a posted message stays queryable.
    pub status_ttl: Duration,
    /// Bearer tokens file; `None`: no authentication (say so in the logs).
    pub tokens_file: Option<PathBuf>,
    /// TLS on the listener; `None`: plain HTTP.
    pub tls: Option<ServerTls>,
}

/// A TLS listener's files.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerTls {
    /// Certificate chain (PEM).
    pub cert_file: PathBuf,
    /// Private key (PEM).
    pub key_file: PathBuf,
    /// CA that client certificates must chain to; `None`: no client certificates asked for.
    pub client_ca_file: Option<PathBuf>,
}

impl IngestConfig {
    /// 1 MiB, NATS's default max_payload.
    pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;
    /// A day.
    pub const DEFAULT_STATUS_TTL: Duration = Duration::from_secs(86_400);
}

/// OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtelProtocol {
    /// OTLP/HTTP with protobuf bodies (POST `/v1/traces`).
    HttpProtobuf,
    /// OTLP/gRPC (`TraceService/Export` over HTTP/2).
    Grpc,
}

/// `[otel]`: where our own spans go.
#[derive(Clone, PartialEq)]
pub struct OtelConfig {
    /// The collector's URL, with the path requests go to (`/v1/traces` added for OTLP/HTTP when none is given).
    pub endpoint: http::Uri,
    /// HTTP/protobuf or gRPC.
    pub protocol: OtelProtocol,
    /// `service.name` resource attribute.
    pub service_name: String,
    /// Extra request headers (values may be secrets).
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// Upper bound on one export request.
    pub timeout: Duration,
    /// How often queued spans are sent.
    pub export_interval: Duration,
    /// TLS settings for `https://`.
    pub tls: TlsFiles,
}

impl fmt::Debug for OtelConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header_names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("OtelConfig")
            .field("endpoint", &self.endpoint)
            .field("protocol", &self.protocol)
            .field("service_name", &self.service_name)
            .field("headers", &header_names)
            .field("timeout", &self.timeout)
            .field("export_interval", &self.export_interval)
            .field("tls", &self.tls)
            .finish()
    }
}

impl OtelConfig {
    /// The OpenTelemetry SDKs' export timeout.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
    /// The SDKs' batch span processor delay.
    pub const DEFAULT_EXPORT_INTERVAL: Duration = Duration::from_secs(5);
    /// The service name spans carry unless told otherwise.
    pub const DEFAULT_SERVICE_NAME: &str = "db-event-writer";
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { format: LogFormat::Text, level: Self::DEFAULT_LEVEL.to_owned() }
    }
}

/// `[breaker]`: stop pulling while the database is unreachable.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerConfig {
    /// Consecutive connection-class failures that open it.
    pub failures: u32,
    /// How long it stays open before one probe decides.
    pub cooldown: Duration,
}

impl BreakerConfig {
    /// Three batches in a row.
    pub const DEFAULT_FAILURES: u32 = 3;
    /// Probe every 5 s while the database is down.
    pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(5);
}

/// One `[[stream]]`: a durable pull consumer feeding one processor.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamConfig {
    /// Pipeline name, used in logs (and metrics).
    pub name: String,
    /// JetStream stream consumed; created with the union of its streams' subjects when missing.
    pub jetstream: String,
    /// Durable pull consumer name (explicit ack).
    pub consumer: String,
    /// Filter subjects (at least one).
    pub subjects: Vec<String>,
    /// Which processor decodes and writes the messages.
    pub processor: ProcessorKind,
    /// Flush a batch at this many rows.
    pub batch_size: usize,
    /// ...or this long after the batch's first message.
    pub batch_timeout: Duration,
    /// JetStream redelivers a message not acked within this time.
    pub ack_wait: Duration,
    /// Most messages delivered and not yet acked.
    pub max_ack_pending: i64,
    /// Most deliveries of one message; -1 = unlimited.
    pub max_deliver: i64,
    /// NAK delay after the first failed delivery; doubles per delivery.
    pub nak_delay: Duration,
    /// Cap on the NAK delay.
    pub nak_delay_max: Duration,
    /// Full batches queued for the writer while the next one is fetched and decoded.
    pub batches_in_flight: usize,
    /// Batches written at once, each in its own transaction and connection.
    pub writers: usize,
    /// The HTTP ingest front runs the processor's decoder on a posted payload and answers 400 when it fails.
    pub validate: bool,
    /// Most rows one message may become; more is a dead letter (class `limit`).
    pub max_rows_per_message: usize,
    /// Most row bytes per payload byte one message may become (at least [`crate::processor::Limits::BYTES_FLOOR`]).
    pub max_expansion: usize,
    /// Most bytes (payloads and their rows) this stream holds at once, from delivery to settlement.
    pub max_bytes_in_flight: usize,
}

impl StreamConfig {
    /// One line for `validate` and the start-up log.
    pub fn summary(&self) -> String {
        format!(
            "stream {}: processor={} jetstream={} consumer={} subjects=[{}] batch={} rows/{} ack_wait={} max_ack_pending={} max_deliver={}",
            self.name,
            self.processor,
            self.jetstream,
            self.consumer,
            self.subjects.join(", "),
            self.batch_size,
            humantime::format_duration(self.batch_timeout),
            humantime::format_duration(self.ack_wait),
            self.max_ack_pending,
            self.max_deliver,
        )
    }

    /// The delay before a failed message is offered again: `nak_delay * 2^(delivered-1)`, capped.
    pub fn nak_delay_for(&self, delivered: i64) -> Duration {
        let doublings = delivered.saturating_sub(1).clamp(0, 20) as u32;
        self.nak_delay.saturating_mul(1u32 << doublings).min(self.nak_delay_max)
    }
}

/// Defaults that are not per processor.
impl StreamConfig {
    /// JetStream's own default, and the Go writer's.
    pub const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(30);
    /// After five deliveries that failed for transient reasons a message is dead-lettered (class `max_deliver`).
    pub const DEFAULT_MAX_DELIVER: i64 = 5;
    /// First NAK delay.
    pub const DEFAULT_NAK_DELAY: Duration = Duration::from_secs(1);
    /// NAK delay cap.
    pub const DEFAULT_NAK_DELAY_MAX: Duration = Duration::from_secs(60);
    /// One batch written while one more is fetched.
    pub const DEFAULT_BATCHES_IN_FLIGHT: usize = 2;
    /// Two: while one batch is in PostgreSQL the next is being encoded and sent.
    pub const DEFAULT_WRITERS: usize = 2;
    /// Floor for max_ack_pending (the Go writer's value).
    pub const MIN_DEFAULT_MAX_ACK_PENDING: i64 = 1000;
    /// 32 MiB per stream: the six shipped streams stay within 192 MiB together, inside the shipped 256 Mi
    /// container limit with the daemon's own ~20 MiB.
    pub const DEFAULT_MAX_BYTES_IN_FLIGHT: usize = 32 << 20;
}

impl DatabaseConfig {
    /// ServiceRadar keeps its tables in `platform`.
    pub const DEFAULT_SCHEMA: &str = "platform";
    /// The Go writer's `max_connections`.
    pub const DEFAULT_POOL_SIZE: usize = 8;
    /// Connect and pool-wait timeout.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
    /// Twice as often as ServiceRadar's Go writer (every minute).
    pub const DEFAULT_PASSWORD_CHECK: Duration = Duration::from_secs(30);
    /// Far beyond any redelivery window (ServiceRadar's `events` stream keeps messages 30 minutes).
    pub const DEFAULT_LEDGER_RETENTION: Duration = Duration::from_secs(7 * 86_400);
    /// 30 s: a 5,000-row batch takes milliseconds; the write deadline (2 × this + connect_timeout = 65 s) stays
    /// well under what JetStream allows a message (ack_wait 30 s × max_deliver 5).
    pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);
    /// Ten seconds of a single write is worth a line in the log.
    pub const DEFAULT_STALL_WARNING: Duration = Duration::from_secs(10);
}

impl DaemonConfig {
    /// Shutdown must finish well inside systemd's default 90 s stop timeout.
    pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
}

/// Tables whose retention `[database.retention]` may set, with ServiceRadar's defaults.
pub const RETENTION_DEFAULTS: &[(&str, Duration)] = &[
    ("logs", Duration::from_secs(30 * 86_400)),
    ("ocsf_events", Duration::from_secs(14 * 86_400)),
    ("ocsf_network_activity", Duration::from_secs(90 * 86_400)),
    ("otel_metrics", Duration::from_secs(30 * 86_400)),
    ("otel_traces", Duration::from_secs(3 * 86_400)),
    ("sweep_results", Duration::from_secs(30 * 86_400)),
    ("timeseries_metrics", Duration::from_secs(7 * 86_400)),
];

impl Config {
    /// Reads `path`, replaces `${VAR}` / `${VAR:-default}` with the environment's values (outside comments),
    /// parses and validates it, then applies the environment overrides (`NATS_URL`, `DATABASE_URL`).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { file: path.to_owned(), source })?;
        let text = interpolate(&text, |name| std::env::var(name).ok())
            .map_err(|(line, key, message)| ConfigError::Invalid { file: path.to_owned(), line, key, message })?;
        let mut config = Config::parse(path, &text)?;
        if let Some(url) = std::env::var(ENV_NATS_URL).ok().filter(|v| !v.is_empty()) {
            config.nats.url = url;
        }
        if let Some(url) = std::env::var(ENV_DATABASE_URL).ok().filter(|v| !v.is_empty()) {
            config.database.url = url;
        }
        Ok(config)
    }

    /// Parses and validates `text` (read from `path`, named in errors). No environment is consulted.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let at = Locator { file: path, text };
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
        validate(raw, &at)
    }
}

/// Replaces `${NAME}` and `${NAME:-default}` on every line that is not a comment. A variable that is unset (or
/// empty) without a default is an error naming its line: `(line, "${NAME}", message)`. Values are inserted as
/// they are, so secrets belong in `*_file` settings rather than in variables holding quotes.
pub fn interpolate(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, (usize, String, String)> {
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if line.trim_start().starts_with('#') || !line.contains("${") {
            out.push_str(line);
            continue;
        }
        let mut rest = line;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let Some(len) = rest[start..].find('}') else {
                return Err((i + 1, rest[start..].trim_end().to_owned(), "unclosed ${".to_owned()));
            };
            let inner = &rest[start + 2..start + len];
            let (name, default) = match inner.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (inner, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err((i + 1, format!("${{{inner}}}"), "not a variable name".to_owned()));
            }
            match (lookup(name).filter(|v| !v.is_empty()), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(d)) => out.push_str(d),
                (None, None) => {
                    return Err((
                        i + 1,
                        format!("${{{name}}}"),
                        format!("environment variable {name} is not set (write ${{{name}:-default}} for a default)"),
                    ));
                }
            }
            rest = &rest[start + len + 1..];
        }
        out.push_str(rest);
    }
    Ok(out)
}

/// Turns byte spans into `file:line: key: message` errors.
struct Locator<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Locator<'_> {
    fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end].iter().filter(|&&b| b == b'\n').count() + 1
    }

    fn err(&self, span: std::ops::Range<usize>, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_owned(),
            line: self.line_of(span.start),
            key: key.into(),
            message: message.into(),
        }
    }

    fn toml_error(&self, e: &toml::de::Error, key: String) -> ConfigError {
        let message = e.message().trim().to_owned();
        // serde names an unknown key only in its message; lift it into the key path.
        let key = match unknown_field(&message) {
            Some(field) if key.is_empty() => field.to_owned(),
            Some(field) if !key.ends_with(field) => format!("{key}.{field}"),
            _ if key.is_empty() => "(file)".to_owned(),
            _ => key,
        };
        self.err(e.span().unwrap_or(0..0), key, message)
    }
}

fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split('`').next()
}

fn validate(raw: RawConfig, at: &Locator<'_>) -> Result<Config, ConfigError> {
    let nats = nats_config(raw.nats.into_inner(), at)?;
    let db = raw.database.into_inner();
    if db.url.get_ref().trim().is_empty() {
        return Err(at.err(db.url.span(), "database.url", "must not be empty"));
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
        RETENTION_DEFAULTS.iter().map(|(t, d)| ((*t).to_owned(), *d)).collect();
    for (table, value) in &db.retention {
        let key = format!("database.retention.{table}");
        if !retention.contains_key(table) {
            let known: Vec<&str> = RETENTION_DEFAULTS.iter().map(|(t, _)| *t).collect();
            return Err(at.err(value.span(), key, format!("unknown table; known: {}", known.join(", "))));
        }
        retention.insert(table.clone(), duration(at, value, &key)?);
    }
    let password_check = opt_duration(at, db.password_check.as_ref(), "database.password_check")?
        .unwrap_or(DatabaseConfig::DEFAULT_PASSWORD_CHECK);
    let ledger_retention = opt_duration(at, db.ledger_retention.as_ref(), "database.ledger_retention")?
        .unwrap_or(DatabaseConfig::DEFAULT_LEDGER_RETENTION);
    let statement_timeout = opt_duration(at, db.statement_timeout.as_ref(), "database.statement_timeout")?
        .unwrap_or(DatabaseConfig::DEFAULT_STATEMENT_TIMEOUT);
    let stall_warning = opt_duration(at, db.stall_warning.as_ref(), "database.stall_warning")?
        .unwrap_or(DatabaseConfig::DEFAULT_STALL_WARNING);
    let shutdown_timeout = opt_duration(at, raw.daemon.shutdown_timeout.as_ref(), "daemon.shutdown_timeout")?
        .unwrap_or(DaemonConfig::DEFAULT_SHUTDOWN_TIMEOUT);

    let dlq = {
        let d = &raw.dlq;
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
        DlqConfig { subject_prefix, stream, max_age, max_bytes }
    };
    let breaker = BreakerConfig {
        failures: match &raw.breaker.failures {
            Some(f) => positive(f, 1, 1000).map_err(|m| at.err(f.span(), "breaker.failures", m))? as u32,
            None => BreakerConfig::DEFAULT_FAILURES,
        },
        cooldown: opt_duration(at, raw.breaker.cooldown.as_ref(), "breaker.cooldown")?
            .unwrap_or(BreakerConfig::DEFAULT_COOLDOWN),
    };

    let http = HttpConfig {
        listen: match &raw.http.listen {
            Some(l) => Some(l.get_ref().parse().map_err(|_| {
                at.err(l.span(), "http.listen", format!("{:?} is not host:port, e.g. \"127.0.0.1:9464\"", l.get_ref()))
            })?),
            None => None,
        },
        refresh: opt_duration(at, raw.http.refresh.as_ref(), "http.refresh")?.unwrap_or(HttpConfig::DEFAULT_REFRESH),
    };
    let log = LogConfig {
        format: match raw.log.format.as_ref().map(|f| (f, f.get_ref().as_str())) {
            None | Some((_, "text")) => LogFormat::Text,
            Some((_, "json")) => LogFormat::Json,
            Some((f, other)) => {
                return Err(at.err(f.span(), "log.format", format!("{other:?}: expected \"text\" or \"json\"")));
            }
        },
        level: match &raw.log.level {
            Some(l) => {
                tracing_subscriber::EnvFilter::try_new(l.get_ref())
                    .map_err(|e| at.err(l.span(), "log.level", format!("not a log filter: {e}")))?;
                l.get_ref().clone()
            }
            None => LogConfig::DEFAULT_LEVEL.to_owned(),
        },
    };

    let otel = match raw.otel {
        Some(o) => Some(otel_config(o.into_inner(), at)?),
        None => None,
    };
    let ingest = match raw.ingest {
        Some(i) => {
            let i = i.into_inner();
            Some(IngestConfig {
                listen: i.listen.get_ref().parse().map_err(|_| {
                    at.err(
                        i.listen.span(),
                        "ingest.listen",
                        format!("{:?} is not host:port, e.g. \"127.0.0.1:8080\"", i.listen.get_ref()),
                    )
                })?,
                max_body: match &i.max_body {
                    Some(m) => {
                        positive(m, 1, 64 * 1024 * 1024).map_err(|e| at.err(m.span(), "ingest.max_body", e))? as usize
                    }
                    None => IngestConfig::DEFAULT_MAX_BODY,
                },
                max_lag: match &i.max_lag {
                    Some(m) => positive(m, 0, i64::MAX).map_err(|e| at.err(m.span(), "ingest.max_lag", e))? as u64,
                    None => 0,
                },
                status_ttl: opt_duration(at, i.status_ttl.as_ref(), "ingest.status_ttl")?
                    .unwrap_or(IngestConfig::DEFAULT_STATUS_TTL),
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
        None => None,
    };

    if raw.stream.is_empty() {
        return Err(at.err(0..0, "stream", "no [[stream]] is configured; the daemon would do nothing"));
    }
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut consumers: HashMap<(String, String), usize> = HashMap::new();
    let mut streams = Vec::with_capacity(raw.stream.len());
    for (i, s) in raw.stream.into_iter().enumerate() {
        let s = s.into_inner();
        let k = |field: &str| format!("stream[{i}].{field}");

        check_name(s.name.get_ref()).map_err(|m| at.err(s.name.span(), k("name"), m))?;
        if let Some(first) = names.insert(s.name.get_ref().clone(), i) {
            return Err(at.err(
                s.name.span(),
                k("name"),
                format!("duplicate stream name {:?} (also stream[{first}])", s.name.get_ref()),
            ));
        }
        check_name(s.jetstream.get_ref()).map_err(|m| at.err(s.jetstream.span(), k("jetstream"), m))?;
        check_name(s.consumer.get_ref()).map_err(|m| at.err(s.consumer.span(), k("consumer"), m))?;
        let pair = (s.jetstream.get_ref().clone(), s.consumer.get_ref().clone());
        if let Some(first) = consumers.insert(pair, i) {
            return Err(at.err(
                s.consumer.span(),
                k("consumer"),
                format!(
                    "duplicate consumer {:?} on JetStream stream {:?} (also stream[{first}]); two pipelines would share one cursor",
                    s.consumer.get_ref(),
                    s.jetstream.get_ref()
                ),
            ));
        }
        if s.subjects.get_ref().is_empty() {
            return Err(at.err(s.subjects.span(), k("subjects"), "must list at least one subject"));
        }
        let mut subjects = Vec::new();
        for subject in s.subjects.get_ref() {
            check_subject(subject.get_ref()).map_err(|m| at.err(subject.span(), k("subjects"), m))?;
            if subjects.contains(subject.get_ref()) {
                return Err(at.err(
                    subject.span(),
                    k("subjects"),
                    format!("subject {:?} listed twice", subject.get_ref()),
                ));
            }
            subjects.push(subject.get_ref().clone());
        }
        let processor = *s.processor.get_ref();
        let defaults = processor.batch_defaults();
        let batch_size = match &s.batch_size {
            Some(b) => positive(b, 1, 100_000).map_err(|m| at.err(b.span(), k("batch_size"), m))? as usize,
            None => defaults.size,
        };
        let batch_timeout =
            opt_duration(at, s.batch_timeout.as_ref(), &k("batch_timeout"))?.unwrap_or(defaults.timeout);
        let ack_wait = opt_duration(at, s.ack_wait.as_ref(), &k("ack_wait"))?.unwrap_or(StreamConfig::DEFAULT_ACK_WAIT);
        let batches_in_flight = match &s.batches_in_flight {
            Some(b) => positive(b, 1, 16).map_err(|m| at.err(b.span(), k("batches_in_flight"), m))? as usize,
            None => StreamConfig::DEFAULT_BATCHES_IN_FLIGHT,
        };
        let writers = match &s.writers {
            Some(w) => positive(w, 1, 16).map_err(|m| at.err(w.span(), k("writers"), m))? as usize,
            None => StreamConfig::DEFAULT_WRITERS,
        };
        // Open batch + queued batches + the ones being written must fit, or the pipeline starves.
        let needed = (batch_size * (batches_in_flight + writers + 1)) as i64;
        let max_ack_pending = match &s.max_ack_pending {
            Some(m) => {
                let v = positive(m, 1, i64::from(i32::MAX)).map_err(|e| at.err(m.span(), k("max_ack_pending"), e))?;
                if v < batch_size as i64 {
                    return Err(at.err(
                        m.span(),
                        k("max_ack_pending"),
                        format!("{v} is below batch_size {batch_size}: a batch could never fill"),
                    ));
                }
                v
            }
            None => needed.max(StreamConfig::MIN_DEFAULT_MAX_ACK_PENDING),
        };
        let max_deliver = match &s.max_deliver {
            Some(m) if *m.get_ref() == -1 || *m.get_ref() >= 1 => *m.get_ref(),
            Some(m) => {
                return Err(at.err(m.span(), k("max_deliver"), "must be -1 (unlimited) or at least 1"));
            }
            None => StreamConfig::DEFAULT_MAX_DELIVER,
        };
        let nak_delay =
            opt_duration(at, s.nak_delay.as_ref(), &k("nak_delay"))?.unwrap_or(StreamConfig::DEFAULT_NAK_DELAY);
        let nak_delay_max = opt_duration(at, s.nak_delay_max.as_ref(), &k("nak_delay_max"))?
            .unwrap_or(StreamConfig::DEFAULT_NAK_DELAY_MAX);
        let max_rows_per_message = match &s.max_rows_per_message {
            Some(m) => {
                positive(m, 1, 100_000_000).map_err(|e| at.err(m.span(), k("max_rows_per_message"), e))? as usize
            }
            None => crate::processor::Limits::DEFAULT_MAX_ROWS,
        };
        let max_expansion = match &s.max_expansion {
            Some(m) => positive(m, 1, 1_000_000).map_err(|e| at.err(m.span(), k("max_expansion"), e))? as usize,
            None => crate::processor::Limits::DEFAULT_EXPANSION,
        };
        let max_bytes_in_flight = match &s.max_bytes_in_flight {
            Some(m) => {
                positive(m, 1 << 20, 1 << 40).map_err(|e| at.err(m.span(), k("max_bytes_in_flight"), e))? as usize
            }
            None => StreamConfig::DEFAULT_MAX_BYTES_IN_FLIGHT,
        };
        if nak_delay_max < nak_delay {
            let span = s.nak_delay_max.as_ref().map(|d| d.span()).unwrap_or(0..0);
            return Err(at.err(span, k("nak_delay_max"), "must not be below nak_delay"));
        }
        streams.push(StreamConfig {
            name: s.name.into_inner(),
            jetstream: s.jetstream.into_inner(),
            consumer: s.consumer.into_inner(),
            subjects,
            processor,
            batch_size,
            batch_timeout,
            ack_wait,
            max_ack_pending,
            max_deliver,
            nak_delay,
            nak_delay_max,
            batches_in_flight,
            writers,
            validate: s.validate.as_ref().is_some_and(|v| *v.get_ref()),
            max_rows_per_message,
            max_expansion,
            max_bytes_in_flight,
        });
    }
    Ok(Config {
        source: at.file.to_owned(),
        nats,
        database: DatabaseConfig {
            url: db.url.into_inner(),
            schema,
            pool_size,
            connect_timeout,
            retention,
            ledger_retention,
            password_file: db.password_file.map(|p| PathBuf::from(p.into_inner())),
            password_check,
            tls: database_tls(db.tls, at)?,
            statement_timeout,
            stall_warning,
        },
        daemon: DaemonConfig { shutdown_timeout },
        dlq,
        breaker,
        http,
        log,
        otel,
        ingest,
        streams,
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
    Ok(NatsConfig { url: n.url.into_inner(), auth, tls })
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

fn positive(v: &Spanned<i64>, min: i64, max: i64) -> Result<i64, String> {
    let v = *v.get_ref();
    if (min..=max).contains(&v) { Ok(v) } else { Err(format!("{v} is out of range {min}..={max}")) }
}

fn duration(at: &Locator<'_>, value: &Spanned<String>, key: &str) -> Result<Duration, ConfigError> {
    let d = humantime::parse_duration(value.get_ref().trim()).map_err(|e| {
        at.err(
            value.span(),
            key,
            format!("bad duration {:?}: {e} (write e.g. \"500ms\", \"1s\", \"7d\")", value.get_ref()),
        )
    })?;
    if d.is_zero() {
        return Err(at.err(value.span(), key, "must be greater than zero"));
    }
    Ok(d)
}

fn opt_duration(at: &Locator<'_>, value: Option<&Spanned<String>>, key: &str) -> Result<Option<Duration>, ConfigError> {
    value.map(|v| duration(at, v, key)).transpose()
}

/// JetStream stream and consumer names, and pipeline names: no whitespace, dots, wildcards or path separators.
/// Checks a JetStream stream or consumer name (no whitespace, '.', '*', '>', '/', '\\').
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > 255 {
        return Err("longer than 255 bytes".into());
    }
    if let Some(c) =
        name.chars().find(|c| c.is_whitespace() || c.is_control() || matches!(c, '.' | '*' | '>' | '/' | '\\'))
    {
        return Err(format!("{name:?} contains {c:?}; names may not contain whitespace, '.', '*', '>', '/' or '\\'"));
    }
    Ok(())
}

/// A NATS subject filter (for other modules' files: the ingest tokens' `subjects`).
pub fn check_subject_filter(subject: &str) -> Result<(), String> {
    check_subject(subject)
}

/// A NATS subject filter: non-empty tokens, `*` only as a whole token, `>` only as the last token.
fn check_subject(subject: &str) -> Result<(), String> {
    if subject.is_empty() {
        return Err("empty subject".into());
    }
    let tokens: Vec<&str> = subject.split('.').collect();
    for (i, t) in tokens.iter().enumerate() {
        if t.is_empty() {
            return Err(format!("subject {subject:?} has an empty token"));
        }
        if t.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("subject {subject:?} contains whitespace"));
        }
        if (t.contains('*') && *t != "*") || (t.contains('>') && *t != ">") {
            return Err(format!("subject {subject:?}: a wildcard must be a whole token"));
        }
        if *t == ">" && i + 1 != tokens.len() {
            return Err(format!("subject {subject:?}: '>' must be the last token"));
        }
    }
    Ok(())
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

/// `scheme://user:secret@host` → `scheme://user:***@host`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let redacted = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => format!("***@{host}"),
        },
        None => authority.to_owned(),
    };
    let tail = redact_query_password(tail);
    format!("{scheme}://{redacted}{tail}")
}

fn redact_query_password(tail: &str) -> String {
    let Some((path, query)) = tail.split_once('?') else {
        return tail.to_owned();
    };
    let query: Vec<String> = query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
            _ => kv.to_owned(),
        })
        .collect();
    format!("{path}?{}", query.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[nats]
url = "nats://127.0.0.1:4222"

[database]
url = "postgres://postgres@127.0.0.1:5432/serviceradar"

[[stream]]
name = "telemetry"
jetstream = "events"
consumer = "db-event-writer-telemetry"
subjects = ["telemetry.>"]
processor = "telemetry"
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("streams.toml"), text)
    }

    fn error_text(text: &str) -> String {
        parse(text).expect_err("config should be rejected").to_string()
    }

    #[test]
    fn shipped_streams_toml_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("streams.toml");
        let text = std::fs::read_to_string(&path).expect("streams.toml ships with the crate");
        let config = Config::parse(&path, &text).expect("shipped streams.toml is valid");
        assert!(!config.streams.is_empty());
        assert_eq!(config.database.schema, "platform");
    }

    #[test]
    fn defaults_come_from_the_processor() {
        let config = parse(MINIMAL).unwrap();
        let s = &config.streams[0];
        assert_eq!(s.batch_size, 5000);
        assert_eq!(s.batch_timeout, Duration::from_secs(1));
        assert_eq!(s.ack_wait, Duration::from_secs(30));
        assert_eq!(s.max_ack_pending, 25_000);
        assert_eq!(s.max_deliver, 5);
        assert_eq!(config.dlq.subject_for("telemetry"), "dlq.telemetry");
        assert_eq!(config.dlq.stream, "DLQ");
        assert_eq!(config.breaker.failures, 3);
        assert_eq!(config.database.pool_size, 8);
        assert_eq!(config.database.retention["timeseries_metrics"], Duration::from_secs(7 * 86_400));
        assert_eq!(config.database.retention["otel_traces"], Duration::from_secs(3 * 86_400));
        assert_eq!(config.database.retention["ocsf_network_activity"], Duration::from_secs(90 * 86_400));
    }

    #[test]
    fn http_and_log_sections_are_validated() {
        let config = parse(MINIMAL).unwrap();
        assert_eq!(config.http.listen, None, "no listener unless asked for");
        assert_eq!(config.log, LogConfig::default());
        let ok = format!("[http]\nlisten = \"127.0.0.1:9464\"\n[log]\nformat = \"json\"\nlevel = \"debug\"\n{MINIMAL}");
        let config = parse(&ok).unwrap();
        assert_eq!(config.http.listen, Some("127.0.0.1:9464".parse().unwrap()));
        assert_eq!(config.log.format, LogFormat::Json);
        let e = error_text(&format!("[http]\nlisten = \"localhost\"\n{MINIMAL}"));
        assert!(e.starts_with("streams.toml:2: http.listen: \"localhost\" is not host:port"), "{e}");
        let e = error_text(&format!("[log]\nformat = \"xml\"\n{MINIMAL}"));
        assert!(e.starts_with("streams.toml:2: log.format: \"xml\": expected"), "{e}");
        let e = error_text(&format!("[log]\nlevel = \"info,=[\"\n{MINIMAL}"));
        assert!(e.starts_with("streams.toml:2: log.level: not a log filter"), "{e}");
    }

    #[test]
    fn nats_credentials_are_checked_and_never_printed() {
        let with = |extra: &str| {
            MINIMAL.replacen("url = \"nats://127.0.0.1:4222\"", &format!("url = \"nats://127.0.0.1:4222\"\n{extra}"), 1)
        };
        let config = parse(&with("user = \"w\"\npassword = \"hunter2\"")).unwrap();
        assert_eq!(
            config.nats.auth,
            NatsAuth::UserPassword { user: "w".into(), password: Secret::Value("hunter2".into()) }
        );
        assert!(!format!("{config:?}").contains("hunter2"), "Debug shows a password");
        let e = error_text(&with("user = \"w\""));
        assert!(e.starts_with("streams.toml:4: nats.user: needs password"), "{e}");
        let e = error_text(&with("user = \"w\"\npassword = \"a\"\npassword_file = \"/p\""));
        assert!(e.starts_with("streams.toml:6: nats.password_file: set password or password_file"), "{e}");
        let e = error_text(&with("creds_file = \"/c\"\ntoken = \"t\""));
        assert!(e.starts_with("streams.toml:5: nats.token: choose one way"), "{e}");
        let e = error_text(&with("[nats.tls]\ncert_file = \"/c\""));
        assert!(e.starts_with("streams.toml:5: nats.tls.cert_file: needs key_file"), "{e}");
        let config = parse(&with("token_file = \"/run/secrets/t\"\n[nats.tls]\nca_file = \"/ca.pem\"")).unwrap();
        assert_eq!(config.nats.auth, NatsAuth::Token(Secret::File("/run/secrets/t".into())));
        assert_eq!(
            config.nats.tls,
            Some(TlsFiles { ca_file: Some("/ca.pem".into()), client: None, server_name: None })
        );
    }

    #[test]
    fn database_tls_defaults_to_verify_full_and_rejects_nonsense() {
        let with = |extra: &str| {
            MINIMAL.replacen("/serviceradar\"\n", &format!("/serviceradar\"\n[database.tls]\n{extra}"), 1)
        };
        let config = parse(&with("ca_file = \"/ca.pem\"\nserver_name = \"db.internal\"\n")).unwrap();
        let files = TlsFiles { ca_file: Some("/ca.pem".into()), client: None, server_name: Some("db.internal".into()) };
        assert_eq!(config.database.tls, Some(DatabaseTls { mode: SslMode::VerifyFull, files }));
        let config = parse(&with("mode = \"require\"\n")).unwrap();
        assert_eq!(config.database.tls.unwrap().mode, SslMode::Require);
        let e = error_text(&with("mode = \"verify-everything\"\n"));
        assert!(e.starts_with("streams.toml:8: database.tls.mode: unknown sslmode \"verify-everything\""), "{e}");
        let e = error_text(&with("mode = \"disable\"\nca_file = \"/ca.pem\"\n"));
        assert!(e.contains("database.tls.mode: is disable, yet files"), "{e}");
        let e = error_text(&with("key_file = \"/k.pem\"\n"));
        assert!(e.starts_with("streams.toml:8: database.tls.key_file: needs cert_file"), "{e}");
        let e = error_text(&with("server_name = \"not a name\"\n"));
        assert!(e.starts_with("streams.toml:8: database.tls.server_name:"), "{e}");
        let e = error_text(&with("sslmode = \"require\"\n"));
        assert!(e.starts_with("streams.toml:8: database.tls.sslmode: unknown field"), "{e}");
        assert_eq!(parse(MINIMAL).unwrap().database.tls, None);
    }

    #[test]
    fn otel_endpoint_gets_its_default_port_and_path_and_headers_stay_secret() {
        let with = |extra: &str| format!("[otel]\n{extra}\n{MINIMAL}");
        let config =
            parse(&with("endpoint = \"http://collector\"\nheaders = { authorization = \"Bearer s3cret\" }")).unwrap();
        let otel = config.otel.unwrap();
        assert_eq!(otel.endpoint.to_string(), "http://collector:4318/v1/traces");
        assert_eq!((otel.protocol, otel.service_name.as_str()), (OtelProtocol::HttpProtobuf, "db-event-writer"));
        assert!(!format!("{otel:?}").contains("s3cret"), "{otel:?}");
        let otel = parse(&with("endpoint = \"https://c.example:443/otlp/v1/traces\"")).unwrap().otel.unwrap();
        assert_eq!(otel.endpoint.to_string(), "https://c.example:443/otlp/v1/traces");
        let otel = parse(&with("endpoint = \"http://[::1]\"\nprotocol = \"grpc\"")).unwrap().otel.unwrap();
        assert_eq!(
            otel.endpoint.to_string(),
            "http://[::1]:4317/opentelemetry.proto.collector.trace.v1.TraceService/Export"
        );
        for (extra, expect) in [
            (
                "endpoint = \"collector:4318\"",
                "streams.toml:2: otel.endpoint: \"collector:4318\": must start with http",
            ),
            ("endpoint = \"http://c\"\nprotocol = \"thrift\"", "streams.toml:3: otel.protocol: \"thrift\": expected"),
            (
                "endpoint = \"http://c/x\"\nprotocol = \"grpc\"",
                "streams.toml:2: otel.endpoint: \"http://c/x\": a gRPC endpoint",
            ),
            (
                "endpoint = \"http://c\"\nheaders = { \"bad name\" = \"x\" }",
                "streams.toml:3: otel.headers.bad name: not an HTTP",
            ),
            ("endpoint = \"http://c\"\ntimeout = \"0s\"", "streams.toml:3: otel.timeout: must be greater than zero"),
            ("endpoint = \"http://c\"\nsampling = 1", "streams.toml:3: otel.sampling: unknown field"),
        ] {
            let e = error_text(&with(extra));
            assert!(e.starts_with(expect), "{e}");
        }
        assert_eq!(parse(MINIMAL).unwrap().otel, None);
    }

    #[test]
    fn ingest_section_and_stream_validate() {
        let config = parse(&format!("[ingest]\nlisten = \"127.0.0.1:8080\"\n{MINIMAL}validate = true\n")).unwrap();
        let ingest = config.ingest.unwrap();
        assert_eq!((ingest.max_body, ingest.max_lag), (IngestConfig::DEFAULT_MAX_BODY, 0));
        assert!(config.streams[0].validate);
        assert!(!parse(MINIMAL).unwrap().streams[0].validate);
        let e = error_text(&format!("[ingest]\nlisten = \"8080\"\n{MINIMAL}"));
        assert!(e.starts_with("streams.toml:2: ingest.listen: \"8080\" is not host:port"), "{e}");
        let e = error_text(&format!("[ingest]\nlisten = \"127.0.0.1:1\"\nmax_body = 0\n{MINIMAL}"));
        assert!(e.starts_with("streams.toml:3: ingest.max_body: 0 is out of range"), "{e}");
        let e = error_text(&format!("{MINIMAL}validate = \"yes\"\n"));
        assert!(e.contains("validate"), "{e}");
    }

    #[test]
    fn environment_variables_are_interpolated_outside_comments() {
        let env = |name: &str| match name {
            "NATS_HOST" => Some("nats.internal".to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        let text = "# ${IGNORED} in a comment\nurl = \"nats://${NATS_HOST}:${NATS_PORT:-4222}\"\nx = \"${EMPTY:-d}\"\n";
        assert_eq!(
            interpolate(text, env).unwrap(),
            "# ${IGNORED} in a comment\nurl = \"nats://nats.internal:4222\"\nx = \"d\"\n"
        );
        let (line, key, message) = interpolate("a = 1\nb = \"${MISSING}\"\n", env).unwrap_err();
        assert_eq!((line, key.as_str()), (2, "${MISSING}"));
        assert!(message.contains("MISSING is not set"), "{message}");
        assert_eq!(interpolate("c = \"${A B}\"", env).unwrap_err().2, "not a variable name");
        assert_eq!(interpolate("c = \"${OPEN", env).unwrap_err().2, "unclosed ${");
    }

    #[test]
    fn large_batches_raise_the_default_max_ack_pending() {
        let config = parse(&format!("{MINIMAL}batch_size = 5000\n")).unwrap();
        assert_eq!(config.streams[0].max_ack_pending, 5000 * 5);
    }

    #[test]
    fn misspelled_key_names_file_line_and_key() {
        let text = MINIMAL.replace("processor = \"telemetry\"", "processor = \"telemetry\"\nbatch_sise = 10");
        let e = error_text(&text);
        assert!(e.starts_with("streams.toml:14: "), "{e}");
        assert!(e.contains("batch_sise"), "{e}");
        assert!(e.contains("stream[0]"), "{e}");
    }

    #[test]
    fn wrong_type_names_the_key() {
        let e = error_text(&format!("{MINIMAL}batch_size = \"lots\"\n"));
        assert!(e.starts_with("streams.toml:14: stream[0].batch_size: "), "{e}");
    }

    #[test]
    fn unknown_processor_is_rejected() {
        let e = error_text(&MINIMAL.replace("processor = \"telemetry\"", "processor = \"telemetri\""));
        assert!(e.starts_with("streams.toml:13: stream[0].processor: "), "{e}");
        assert!(e.contains("telemetri"), "{e}");
    }

    #[test]
    fn duplicate_stream_name_is_rejected() {
        let second = MINIMAL.split("[[stream]]").nth(1).unwrap().replace("db-event-writer-telemetry", "other");
        let e = error_text(&format!("{MINIMAL}\n[[stream]]{second}"));
        assert!(e.contains("stream[1].name: duplicate stream name \"telemetry\""), "{e}");
        assert!(e.starts_with("streams.toml:16:"), "{e}");
    }

    #[test]
    fn duplicate_consumer_is_rejected() {
        let second = MINIMAL.split("[[stream]]").nth(1).unwrap().replace("name = \"telemetry\"", "name = \"t2\"");
        let e = error_text(&format!("{MINIMAL}\n[[stream]]{second}"));
        assert!(e.contains("stream[1].consumer: duplicate consumer"), "{e}");
    }

    #[test]
    fn empty_subjects_are_rejected() {
        let e = error_text(&MINIMAL.replace("[\"telemetry.>\"]", "[]"));
        assert!(e.starts_with("streams.toml:12: stream[0].subjects: must list"), "{e}");
    }

    #[test]
    fn bad_subjects_are_rejected() {
        for bad in ["telemetry..x", "a.>.b", "a.b*", "with space"] {
            let e = error_text(&MINIMAL.replace("telemetry.>", bad));
            assert!(e.contains("stream[0].subjects"), "{bad}: {e}");
        }
    }

    #[test]
    fn bad_duration_is_rejected() {
        let e = error_text(&format!("{MINIMAL}batch_timeout = \"1 fortnight\"\n"));
        assert!(e.starts_with("streams.toml:14: stream[0].batch_timeout: bad duration"), "{e}");
        let e = error_text(&format!("{MINIMAL}batch_timeout = \"0s\"\n"));
        assert!(e.contains("greater than zero"), "{e}");
    }

    #[test]
    fn missing_section_is_named() {
        let e = error_text("[nats]\nurl = \"nats://x\"\n");
        assert!(e.contains("database"), "{e}");
    }

    #[test]
    fn no_streams_is_an_error() {
        let text = MINIMAL.split("[[stream]]").next().unwrap();
        assert!(error_text(text).contains("no [[stream]]"));
    }

    #[test]
    fn syntax_error_names_the_line() {
        let e = error_text(&MINIMAL.replace("pool", "x").replace("[database]", "[database"));
        assert!(e.starts_with("streams.toml:5:"), "{e}");
    }

    #[test]
    fn unknown_retention_table_is_rejected() {
        let text = MINIMAL.replace(
            "[database]\nurl = \"postgres://postgres@127.0.0.1:5432/serviceradar\"",
            "[database]\nurl = \"postgres://x\"\nretention = { nope = \"1d\" }",
        );
        assert!(error_text(&text).contains("database.retention.nope: unknown table"));
    }

    #[test]
    fn max_ack_pending_below_batch_size_is_rejected() {
        let e = error_text(&format!("{MINIMAL}batch_size = 500\nmax_ack_pending = 100\n"));
        assert!(e.contains("stream[0].max_ack_pending"), "{e}");
    }

    #[test]
    fn nak_delay_doubles_and_caps() {
        let s = parse(MINIMAL).unwrap().streams.remove(0);
        assert_eq!(s.nak_delay_for(1), Duration::from_secs(1));
        assert_eq!(s.nak_delay_for(2), Duration::from_secs(2));
        assert_eq!(s.nak_delay_for(4), Duration::from_secs(8));
        assert_eq!(s.nak_delay_for(100), Duration::from_secs(60));
        assert_eq!(s.nak_delay_for(0), Duration::from_secs(1));
    }

    #[test]
    fn secrets_are_redacted() {
        assert_eq!(redact_url("postgres://u:pw@h:5432/db"), "postgres://u:***@h:5432/db");
        assert_eq!(redact_url("nats://tok@h:4222"), "nats://***@h:4222");
        assert_eq!(redact_url("postgres://h/db?user=u&password=pw"), "postgres://h/db?user=u&password=***");
        assert_eq!(redact_url("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
        let config = parse(&MINIMAL.replace("postgres@", "postgres:hunter2@")).unwrap();
        assert!(!format!("{config:?}").contains("hunter2"));
    }
}
