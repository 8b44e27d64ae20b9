//! The validated configuration: every section's types, their defaults as associated constants, and the names of
//! the processors ([`ProcessorKind`]). Values of these types are valid by construction ([`super::validate`]).
//!
//! Uses nothing of the project but [`super::secret`].

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::secret::Secret;
use crate::redact::redact_url;

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
    /// An environment variable overriding the file is not valid.
    #[error("environment variable {name}: {message}")]
    Environment {
        /// The variable.
        name: &'static str,
        /// What is wrong.
        message: String,
    },
}

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
    /// `[jetstream.<name>]`: how the daemon creates a missing JetStream stream (an existing one is never changed).
    pub jetstream: BTreeMap<String, JetStreamShape>,
    /// One entry per `[[stream]]`, in file order.
    pub streams: Vec<StreamConfig>,
}

/// `[jetstream.<name>]`: limits a JetStream stream is created with (JetStream's defaults for what is unset).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JetStreamShape {
    /// Oldest message kept.
    pub max_age: Option<Duration>,
    /// Most bytes kept.
    pub max_bytes: Option<i64>,
    /// De-duplication window on `Nats-Msg-Id`.
    pub duplicate_window: Option<Duration>,
    /// Refuse new messages when full, instead of dropping the oldest.
    pub discard_new: bool,
    /// Copies kept by a JetStream cluster; `None`: `[nats] replicas`.
    pub replicas: Option<usize>,
}

/// `[nats]`.
#[derive(Clone, PartialEq)]
pub struct NatsConfig {
    /// Server URLs, comma-separated, without credentials (those written in the URL are in `auth`).
    pub url: String,
    /// How the daemon authenticates.
    pub auth: NatsAuth,
    /// TLS files; `Some` requires TLS.
    pub tls: Option<TlsFiles>,
    /// Copies a JetStream cluster keeps of each stream the daemon creates (source streams, the DLQ, the ingest
    /// status bucket): 1 on a single server, 3 on a cluster.
    pub replicas: usize,
}

impl fmt::Debug for NatsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsConfig")
            .field("url", &redact_url(&self.url))
            .field("auth", &self.auth)
            .field("tls", &self.tls)
            .field("replicas", &self.replicas)
            .finish()
    }
}

/// How the daemon authenticates to NATS.
#[derive(Debug, Clone, PartialEq)]
pub enum NatsAuth {
    /// No credentials.
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
    /// Chunk interval per table, applied by `migrate` when TimescaleDB is installed (new chunks only).
    pub chunk_interval: BTreeMap<String, Duration>,
    /// `[database.series_key] volatile_tag_keys`: tag keys that never identify a series in `timeseries_metrics`
    /// (measured values riding as tags); the daemon's key and the SQL function `migrate` installs both use it.
    pub volatile_tag_keys: Vec<String>,
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
            .field("chunk_interval", &self.chunk_interval)
            .field("volatile_tag_keys", &self.volatile_tag_keys)
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
    /// Reload when the configuration file's content changes (a Kubernetes ConfigMap update), besides SIGHUP.
    pub watch_config: bool,
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
    /// Copies a JetStream cluster keeps (`[dlq] replicas`, else `[nats] replicas`).
    pub replicas: usize,
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
    /// Dead letters logged one by one per stream and `dead_letter_every`; the rest are counted and summed up in
    /// one line at the end of the interval (with the first reason).
    pub dead_letter_lines: u32,
    /// The interval of `dead_letter_lines`.
    pub dead_letter_every: Duration,
    /// How often an info line sums up the rows written per stream (0: never).
    pub summary_every: Duration,
}

impl LogConfig {
    /// async-nats logs every reconnect attempt at info; its warnings are enough.
    pub const DEFAULT_LEVEL: &str = "info,async_nats=warn";
    /// Dead letters logged one by one per interval.
    pub const DEFAULT_DEAD_LETTER_LINES: u32 = 5;
    /// Their interval.
    pub const DEFAULT_DEAD_LETTER_EVERY: Duration = Duration::from_secs(10);
    /// The rows-written summary's interval.
    pub const DEFAULT_SUMMARY_EVERY: Duration = Duration::from_secs(300);
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
    /// Most connections open at once (lowered at start to what the descriptor limit leaves after the database
    /// pool and NATS); beyond it, new connections wait in the kernel's backlog.
    pub max_connections: usize,
    /// A request's headers must arrive within this (also the longest an idle keep-alive connection stays).
    pub header_timeout: Duration,
    /// A request's body must arrive, and its answer be ready, within this.
    pub request_timeout: Duration,
    /// Most items in one batch request.
    pub max_batch_items: usize,
    /// How long `?wait=persisted` holds the answer for the commit.
    pub wait_timeout: Duration,
    /// The longest wait a request may ask for (`Prefer: wait=N`); below `request_timeout`.
    pub max_wait: Duration,
    /// Most requests waiting at once; past it a waiting request answers 202 at once.
    pub max_waiters: usize,
    /// How long a batch holding a message somebody waits for may still wait for more messages.
    pub wait_flush: Duration,
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
    /// Connections at once.
    pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
    /// 10 s for a request's headers (and of keep-alive idleness).
    pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
    /// 30 s for a body and its answer: a 1 MiB body at 35 KiB/s; the answer waits at most 5 s for JetStream.
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
    /// 1,000 items per batch.
    pub const DEFAULT_MAX_BATCH_ITEMS: usize = 1000;
    /// A day.
    pub const DEFAULT_STATUS_TTL: Duration = Duration::from_secs(86_400);
    /// 5 s for `?wait=persisted`.
    pub const DEFAULT_WAIT_TIMEOUT: Duration = Duration::from_secs(5);
    /// 20 s, inside the default request timeout.
    pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(20);
    /// 1,000 requests waiting at once.
    pub const DEFAULT_MAX_WAITERS: usize = 1000;
    /// 5 ms: waiting requests arriving together share a transaction.
    pub const DEFAULT_WAIT_FLUSH: Duration = Duration::from_millis(5);
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
        LogConfig {
            format: LogFormat::Text,
            level: Self::DEFAULT_LEVEL.to_owned(),
            dead_letter_lines: Self::DEFAULT_DEAD_LETTER_LINES,
            dead_letter_every: Self::DEFAULT_DEAD_LETTER_EVERY,
            summary_every: Self::DEFAULT_SUMMARY_EVERY,
        }
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
    /// 100,000 rows: far more than any real message (an OTLP export of 8,192 records), far fewer than memory
    /// allows.
    pub const DEFAULT_MAX_ROWS_PER_MESSAGE: usize = 100_000;
    /// 32 row bytes per payload byte: an OTLP logs export whose resource attributes repeat in every row stays
    /// under it; a payload built to multiply does not.
    pub const DEFAULT_MAX_EXPANSION: usize = 32;
    /// 32 MiB per stream: the eight shipped streams stay within 256 MiB together, inside the shipped 384 Mi
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
    /// ServiceRadar's list today (migration `20260622183000_fix_timeseries_series_identity_cardinality`, the 19
    /// keys its BEAM writer and SQL function exclude): byte counters, execution ids, producer stamps, status.
    pub const DEFAULT_VOLATILE_TAG_KEYS: &[&str] = &[
        "available",
        "available_bytes",
        "buffered_bytes",
        "cached_bytes",
        "execution_id",
        "free_bytes",
        "metric",
        "packet_loss",
        "payload_kind",
        "producer_id",
        "producer_kind",
        "source",
        "status",
        "sweep_group_id",
        "swap_total_bytes",
        "swap_used_bytes",
        "total_bytes",
        "used_bytes",
        "value",
    ];

    /// Every default, for tables in `schema` (tests, and decoding without a database: the ingest front's checks).
    pub fn for_schema(schema: &str) -> Self {
        DatabaseConfig {
            url: String::new(),
            schema: schema.to_owned(),
            pool_size: Self::DEFAULT_POOL_SIZE,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            retention: BTreeMap::new(),
            chunk_interval: BTreeMap::new(),
            volatile_tag_keys: Self::DEFAULT_VOLATILE_TAG_KEYS.iter().map(|k| (*k).to_owned()).collect(),
            ledger_retention: Self::DEFAULT_LEDGER_RETENTION,
            password_file: None,
            password_check: Self::DEFAULT_PASSWORD_CHECK,
            tls: None,
            statement_timeout: Self::DEFAULT_STATEMENT_TIMEOUT,
            stall_warning: Self::DEFAULT_STALL_WARNING,
        }
    }
}

impl DaemonConfig {
    /// Shutdown must finish well inside systemd's default 90 s stop timeout.
    pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
}

/// The processors `streams.toml` can name (`processor = "..."`, the lower-case variant name). What a processor
/// is and does is its own ([`crate::processor`]: name, tables, defaults as its constants); here is only the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProcessorKind {
    /// Telemetry JSON → `timeseries_metrics`.
    Telemetry,
    /// Log JSON and OTLP logs → `logs`.
    Logs,
    /// OCSF event JSON → `ocsf_events`.
    Events,
    /// Sweep result JSON → `sweep_results`.
    Sweep,
    /// OTLP traces and metrics (protobuf or JSON) → `otel_traces` / `otel_metrics`.
    Otel,
    /// flowpb.FlowMessage protobuf (or legacy JSON) → `ocsf_network_activity`.
    Netflow,
}

impl ProcessorKind {
    /// Every kind (a test checks that none is missing).
    pub const ALL: [ProcessorKind; 6] = [
        ProcessorKind::Telemetry,
        ProcessorKind::Logs,
        ProcessorKind::Events,
        ProcessorKind::Sweep,
        ProcessorKind::Otel,
        ProcessorKind::Netflow,
    ];
}

/// A processor's default batch settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchDefaults {
    /// Rows per batch.
    pub size: usize,
    /// Longest wait after a batch's first message.
    pub timeout: Duration,
}

/// What `streams.toml` leaves to the processors, which this module does not know: each one's batch defaults and
/// the default retention of the tables they write. [`crate::processor::defaults`] builds it from them.
#[derive(Debug, Clone, Default)]
pub struct Defaults {
    /// Batch size and timeout per processor.
    pub batch: Vec<(ProcessorKind, BatchDefaults)>,
    /// Tables `[database.retention]` may set, with their default retention (ServiceRadar's).
    pub retention: Vec<(&'static str, Duration)>,
    /// Tables `[database.chunk_interval]` may set, with their default chunk interval (ServiceRadar's).
    pub chunk_interval: Vec<(&'static str, Duration)>,
}

impl Defaults {
    /// The batch defaults of `kind` (1,000 rows, 1 s if the table does not say).
    pub fn batch_of(&self, kind: ProcessorKind) -> BatchDefaults {
        self.batch
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(BatchDefaults { size: 1000, timeout: Duration::from_secs(1) }, |(_, d)| *d)
    }
}
