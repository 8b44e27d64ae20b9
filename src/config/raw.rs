//! The raw serde shape of `streams.toml`: what the operator writes, every value wrapped in `Spanned` so that
//! validation ([`super::validate`]) can name the line of a mistake. Nothing here is used past validation.
//!
//! Uses only serde and toml.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::types::ProcessorKind;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    /// NATS connection.
    pub(super) nats: Spanned<RawNats>,
    /// PostgreSQL connection and schema.
    pub(super) database: Spanned<RawDatabase>,
    /// Daemon-wide settings.
    #[serde(default)]
    pub(super) daemon: RawDaemon,
    /// Dead-letter queue.
    #[serde(default)]
    pub(super) dlq: RawDlq,
    /// Circuit breaker in front of the database.
    #[serde(default)]
    pub(super) breaker: RawBreaker,
    /// The operator's HTTP listener (metrics, health).
    #[serde(default)]
    pub(super) http: RawHttp,
    /// Log format and level.
    #[serde(default)]
    pub(super) log: RawLog,
    /// OpenTelemetry traces of our own batches.
    #[serde(default)]
    pub(super) otel: Option<Spanned<RawOtel>>,
    /// The HTTP ingest front.
    #[serde(default)]
    pub(super) ingest: Option<Spanned<RawIngest>>,
    /// How to create each JetStream stream a `[[stream]]` names, when it is missing.
    #[serde(default)]
    pub(super) jetstream: BTreeMap<String, Spanned<RawJetStream>>,
    /// One pipeline per `[[stream]]`.
    #[serde(default)]
    pub(super) stream: Vec<Spanned<RawStream>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJetStream {
    /// Oldest message kept.
    #[serde(default)]
    pub(super) max_age: Option<Spanned<String>>,
    /// Most bytes kept.
    #[serde(default)]
    pub(super) max_bytes: Option<Spanned<i64>>,
    /// JetStream's de-duplication window on `Nats-Msg-Id`.
    #[serde(default)]
    pub(super) duplicate_window: Option<Spanned<String>>,
    /// `old` (drop the oldest when full) or `new` (refuse new messages).
    #[serde(default)]
    pub(super) discard: Option<Spanned<String>>,
    /// Copies a cluster keeps.
    #[serde(default)]
    pub(super) replicas: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNats {
    /// Server URL; env `NATS_URL` overrides.
    pub(super) url: Spanned<String>,
    /// Copies a cluster keeps of what the daemon creates.
    #[serde(default)]
    pub(super) replicas: Option<Spanned<i64>>,
    /// Credentials file (JWT + nkey seed), as `nsc` writes it.
    #[serde(default)]
    pub(super) creds_file: Option<Spanned<String>>,
    /// File holding an nkey seed (`SU...`).
    #[serde(default)]
    pub(super) nkey_seed_file: Option<Spanned<String>>,
    /// User for user/password authentication.
    #[serde(default)]
    pub(super) user: Option<Spanned<String>>,
    /// Password (prefer `password_file`).
    #[serde(default)]
    pub(super) password: Option<Spanned<String>>,
    /// File holding the password.
    #[serde(default)]
    pub(super) password_file: Option<Spanned<String>>,
    /// Token (prefer `token_file`).
    #[serde(default)]
    pub(super) token: Option<Spanned<String>>,
    /// File holding the token.
    #[serde(default)]
    pub(super) token_file: Option<Spanned<String>>,
    /// TLS: CA, client certificate.
    #[serde(default)]
    pub(super) tls: Option<Spanned<RawTls>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    /// CA bundle (PEM) that signed the server's certificate; absent: the system roots.
    #[serde(default)]
    pub(super) ca_file: Option<Spanned<String>>,
    /// Client certificate (PEM) for mutual TLS.
    #[serde(default)]
    pub(super) cert_file: Option<Spanned<String>>,
    /// Its private key (PEM).
    #[serde(default)]
    pub(super) key_file: Option<Spanned<String>>,
    /// Name the server's certificate must carry, when it differs from the host in the URL.
    #[serde(default)]
    pub(super) server_name: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDbTls {
    /// `disable`, `prefer`, `require`, `verify-ca` or `verify-full` (the default when this section is present).
    #[serde(default)]
    pub(super) mode: Option<Spanned<String>>,
    /// CA bundle (PEM) that signed the server's certificate; absent: the system roots.
    #[serde(default)]
    pub(super) ca_file: Option<Spanned<String>>,
    /// Client certificate (PEM), for `cert` authentication.
    #[serde(default)]
    pub(super) cert_file: Option<Spanned<String>>,
    /// Its private key (PEM).
    #[serde(default)]
    pub(super) key_file: Option<Spanned<String>>,
    /// Name the server's certificate must carry, when it differs from the host in the URL.
    #[serde(default)]
    pub(super) server_name: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSeriesKey {
    /// Tag keys left out of the series key.
    #[serde(default)]
    pub(super) volatile_tag_keys: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDatabase {
    /// PostgreSQL URL; env `DATABASE_URL` overrides.
    pub(super) url: Spanned<String>,
    /// Schema the tables live in.
    #[serde(default)]
    pub(super) schema: Option<Spanned<String>>,
    /// Connections shared by all streams.
    #[serde(default)]
    pub(super) pool_size: Option<Spanned<i64>>,
    /// How long to wait for a new connection.
    #[serde(default)]
    pub(super) connect_timeout: Option<Spanned<String>>,
    /// Retention per table (TimescaleDB only), e.g. `timeseries_metrics = "7d"`.
    #[serde(default)]
    pub(super) retention: BTreeMap<String, Spanned<String>>,
    /// Chunk interval per table (TimescaleDB only), e.g. `logs = "6h"`.
    #[serde(default)]
    pub(super) chunk_interval: BTreeMap<String, Spanned<String>>,
    /// The series identity of `timeseries_metrics`.
    #[serde(default)]
    pub(super) series_key: Option<RawSeriesKey>,
    /// How long the idempotency ledger remembers a committed message.
    #[serde(default)]
    pub(super) ledger_retention: Option<Spanned<String>>,
    /// File holding the password (overrides one in the URL); re-read every `password_check`.
    #[serde(default)]
    pub(super) password_file: Option<Spanned<String>>,
    /// How often `password_file` is re-read.
    #[serde(default)]
    pub(super) password_check: Option<Spanned<String>>,
    /// TLS: mode, CA, client certificate.
    #[serde(default)]
    pub(super) tls: Option<Spanned<RawDbTls>>,
    /// `statement_timeout` of the daemon's sessions ("0s": none).
    #[serde(default)]
    pub(super) statement_timeout: Option<Spanned<String>>,
    /// A write taking longer than this logs one warning saying what it waits on.
    #[serde(default)]
    pub(super) stall_warning: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDaemon {
    /// Upper bound on a graceful shutdown.
    #[serde(default)]
    pub(super) shutdown_timeout: Option<Spanned<String>>,
    /// Reload when the file changes.
    #[serde(default)]
    pub(super) watch_config: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDlq {
    /// Dead letters go to `<subject_prefix>.<stream name>`.
    #[serde(default)]
    pub(super) subject_prefix: Option<Spanned<String>>,
    /// The JetStream stream capturing them (created if missing).
    #[serde(default)]
    pub(super) stream: Option<Spanned<String>>,
    /// How long dead letters are kept.
    #[serde(default)]
    pub(super) max_age: Option<Spanned<String>>,
    /// Most bytes kept (oldest dropped beyond).
    #[serde(default)]
    pub(super) max_bytes: Option<Spanned<i64>>,
    /// Copies a cluster keeps.
    #[serde(default)]
    pub(super) replicas: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBreaker {
    /// Consecutive connection-class failures that open it.
    #[serde(default)]
    pub(super) failures: Option<Spanned<i64>>,
    /// How long it stays open before a probe.
    #[serde(default)]
    pub(super) cooldown: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    /// `host:port` for /metrics, /healthz and /readyz; absent: no listener.
    #[serde(default)]
    pub(super) listen: Option<Spanned<String>>,
    /// How often consumer lag gauges are refreshed from JetStream.
    #[serde(default)]
    pub(super) refresh: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    /// `text` (the default) or `json`.
    #[serde(default)]
    pub(super) format: Option<Spanned<String>>,
    /// A tracing filter such as `info` or `info,db_event_writer=debug`; `RUST_LOG` overrides it.
    #[serde(default)]
    pub(super) level: Option<Spanned<String>>,
    /// Dead letters logged one by one per stream and interval.
    #[serde(default)]
    pub(super) dead_letter_lines: Option<Spanned<i64>>,
    /// That interval.
    #[serde(default)]
    pub(super) dead_letter_every: Option<Spanned<String>>,
    /// The rows-written summary's interval ("0s": off).
    #[serde(default)]
    pub(super) summary_every: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIngest {
    /// Address of the ingest listener, e.g. `127.0.0.1:8080`.
    pub(super) listen: Spanned<String>,
    /// Largest request body in bytes.
    #[serde(default)]
    pub(super) max_body: Option<Spanned<i64>>,
    /// 429 while the consumer of the posted subject has more messages pending than this (0: no limit).
    #[serde(default)]
    pub(super) max_lag: Option<Spanned<i64>>,
    /// How long the fate of a posted message stays queryable.
    #[serde(default)]
    pub(super) status_ttl: Option<Spanned<String>>,
    /// Bearer tokens (SHA-256 hashes, subjects, rate limits); re-read when it changes. Absent: no authentication.
    #[serde(default)]
    pub(super) tokens_file: Option<Spanned<String>>,
    /// TLS on the listener: certificate, key, and a CA for client certificates.
    #[serde(default)]
    pub(super) tls: Option<Spanned<RawServerTls>>,
    /// Most connections open at once.
    #[serde(default)]
    pub(super) max_connections: Option<Spanned<i64>>,
    /// Time for a request's headers (and of keep-alive idleness).
    #[serde(default)]
    pub(super) header_timeout: Option<Spanned<String>>,
    /// Time for a request's body and answer.
    #[serde(default)]
    pub(super) request_timeout: Option<Spanned<String>>,
    /// Most items in one batch request.
    #[serde(default)]
    pub(super) max_batch_items: Option<Spanned<i64>>,
    /// How long `?wait=persisted` waits for the commit.
    #[serde(default)]
    pub(super) wait_timeout: Option<Spanned<String>>,
    /// The longest wait a request may ask for (`Prefer: wait=N`).
    #[serde(default)]
    pub(super) max_wait: Option<Spanned<String>>,
    /// Most requests waiting at once.
    #[serde(default)]
    pub(super) max_waiters: Option<Spanned<i64>>,
    /// How long a batch holding a waited-for message may still wait for more messages.
    #[serde(default)]
    pub(super) wait_flush: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServerTls {
    /// The listener's certificate chain (PEM).
    pub(super) cert_file: Spanned<String>,
    /// Its private key (PEM).
    pub(super) key_file: Spanned<String>,
    /// When set, clients must present a certificate signed by this CA.
    #[serde(default)]
    pub(super) client_ca_file: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOtel {
    /// Collector URL: `http://host:4318` (OTLP/HTTP; `/v1/traces` is added when no path is given) or, with
    /// `protocol = "grpc"`, `http://host:4317`; `https://` for TLS.
    pub(super) endpoint: Spanned<String>,
    /// `http/protobuf` (the default) or `grpc`.
    #[serde(default)]
    pub(super) protocol: Option<Spanned<String>>,
    /// `service.name` of the spans.
    #[serde(default)]
    pub(super) service_name: Option<Spanned<String>>,
    /// Extra request headers (e.g. an authorization token); values are never printed.
    #[serde(default)]
    pub(super) headers: BTreeMap<String, Spanned<String>>,
    /// Upper bound on one export request.
    #[serde(default)]
    pub(super) timeout: Option<Spanned<String>>,
    /// How often queued spans are sent.
    #[serde(default)]
    pub(super) export_interval: Option<Spanned<String>>,
    /// TLS for `https://` endpoints: CA, client certificate, server name.
    #[serde(default)]
    pub(super) tls: Option<Spanned<RawTls>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStream {
    pub(super) name: Spanned<String>,
    pub(super) jetstream: Spanned<String>,
    pub(super) consumer: Spanned<String>,
    pub(super) subjects: Spanned<Vec<Spanned<String>>>,
    pub(super) processor: Spanned<ProcessorKind>,
    #[serde(default)]
    pub(super) batch_size: Option<Spanned<i64>>,
    #[serde(default)]
    pub(super) batch_timeout: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) ack_wait: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) max_ack_pending: Option<Spanned<i64>>,
    #[serde(default)]
    pub(super) max_deliver: Option<Spanned<i64>>,
    #[serde(default)]
    pub(super) nak_delay: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) nak_delay_max: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) batches_in_flight: Option<Spanned<i64>>,
    #[serde(default)]
    pub(super) writers: Option<Spanned<i64>>,
    #[serde(default)]
    pub(super) validate: Option<Spanned<bool>>,
    #[serde(default)]
    pub(super) max_rows_per_message: Option<Spanned<i64>>,
    #[serde(default)]
    pub(super) max_expansion: Option<Spanned<i64>>,
    #[serde(default)]
    pub(super) max_bytes_in_flight: Option<Spanned<i64>>,
}
