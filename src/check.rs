//! `db-event-writer validate` beyond the file: every file the configuration names (credentials, nkey seeds,
//! password and token files, certificates, the ingest tokens) exists and parses; NATS answers, has JetStream and
//! is new enough for the streams' subjects; the database answers, lets us in and holds the migrated tables; and
//! each durable consumer that already exists can be used (a pull consumer whose settings can be updated in
//! place). One [`Check`] per part, so `ExecStartPre=validate` fails on what `run` would otherwise retry forever.
//!
//! Uses the config types, [`crate::jetstream`], [`crate::db`], [`crate::migrate`], [`crate::tls`] and the ingest
//! front's token loader.

use std::time::Duration;

use crate::config::{Config, redact_url};
use crate::{db, jetstream, migrate};

/// One checked part of the world.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked (`nats nats://…`, `database …`, `stream telemetry`, `file …`).
    pub what: String,
    /// `Ok` with what was found, or why it cannot be used.
    pub outcome: Result<String, String>,
}

impl Check {
    fn new(what: impl Into<String>, outcome: Result<String, String>) -> Self {
        Check { what: what.into(), outcome }
    }
}

/// How long each server may take to answer.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Checks the referenced files, NATS and its consumers, and the database.
pub async fn world(config: &Config) -> Vec<Check> {
    let mut checks = files(config);
    checks.extend(nats(config).await);
    checks.push(database(config).await);
    checks
}

/// The files the configuration names, each read and parsed as its user would.
fn files(config: &Config) -> Vec<Check> {
    let mut checks = vec![Check::new(
        "nats credentials and TLS files",
        jetstream::options(&config.nats).map(|_| "readable".to_owned()).map_err(|e| e.to_string()),
    )];
    // The password file and the TLS files are read by building the connection settings, as `run` does.
    checks.push(Check::new(
        "database connection settings, password and TLS files",
        db::pg_config(&config.database).map(|_| "usable".to_owned()).map_err(|e| e.to_string()),
    ));
    if let Some(otel) = &config.otel
        && (otel.tls.ca_file.is_some() || otel.tls.client.is_some())
    {
        let read = crate::tls::client_config(&otel.tls, crate::tls::Verify::Full, "otel.tls");
        checks.push(Check::new("otel.tls files", read.map(|_| "readable".to_owned())));
    }
    if let Some(ingest) = &config.ingest {
        if let Some(path) = &ingest.tokens_file {
            let tokens = crate::ingest::tokens::load(path).map(|t| format!("{} token(s)", t.len()));
            checks.push(Check::new(format!("ingest.tokens_file {}", path.display()), tokens));
        }
        if let Some(t) = &ingest.tls {
            let read = crate::tls::server_config(&t.cert_file, &t.key_file, t.client_ca_file.as_deref(), "ingest.tls");
            checks.push(Check::new("ingest.tls files", read.map(|_| "readable".to_owned())));
        }
    }
    checks
}

/// NATS answers with JetStream, is new enough, and each existing consumer can be used.
async fn nats(config: &Config) -> Vec<Check> {
    let what = format!("nats {}", redact_url(&config.nats.url));
    let client = match tokio::time::timeout(TIMEOUT, jetstream::connect_once(&config.nats)).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return vec![Check::new(what, Err(e.to_string()))],
        Err(_) => return vec![Check::new(what, Err(format!("no answer within {TIMEOUT:?}")))],
    };
    let version = client.server_info().version.clone();
    let js = async_nats::jetstream::new(client.clone());
    let server = match jetstream::check_server(&version, &config.nats.url, &config.streams) {
        Err(e) => Err(e.to_string()),
        Ok(()) => match tokio::time::timeout(TIMEOUT, js.query_account()).await {
            Ok(Ok(_)) => Ok(format!("nats-server {version}, JetStream enabled")),
            Ok(Err(e)) => Err(format!("nats-server {version} answers but JetStream does not: {e}")),
            Err(_) => Err(format!("nats-server {version}: JetStream did not answer within {TIMEOUT:?}")),
        },
    };
    let reachable = server.is_ok();
    let mut checks = vec![Check::new(what, server)];
    if reachable {
        for s in &config.streams {
            checks.push(Check::new(format!("stream {}", s.name), consumer(&js, s).await));
        }
    }
    checks
}

/// Whether the stream's durable consumer, when it exists, can be used as it is or updated in place.
async fn consumer(js: &async_nats::jetstream::Context, s: &crate::config::StreamConfig) -> Result<String, String> {
    let name = format!("consumer {}/{}", s.jetstream, s.consumer);
    let Ok(stream) = js.get_stream(&s.jetstream).await else {
        return Ok(format!("JetStream stream {:?} does not exist yet: run creates it and {name}", s.jetstream));
    };
    let info = match stream.consumer_info(&s.consumer).await {
        Ok(info) => info,
        Err(e) if e.kind() == async_nats::jetstream::context::ConsumerInfoErrorKind::NotFound => {
            return Ok(format!("{name} does not exist yet: run creates it"));
        }
        Err(e) => return Err(format!("{name}: {e}")),
    };
    if info.config.deliver_subject.is_some() {
        return Err(format!(
            "{name} exists as a push consumer; db-event-writer needs a pull consumer and never deletes one: remove \
             it or choose another consumer name"
        ));
    }
    let want = jetstream::desired_consumer(s);
    if info.config.ack_policy != want.ack_policy {
        return Err(format!(
            "{name} has ack policy {:?}; JetStream cannot change it in place: remove the consumer or choose another \
             name",
            info.config.ack_policy
        ));
    }
    match jetstream::consumer_differences(&info.config, &want).as_slice() {
        [] => Ok(format!("{name}: pull consumer as configured, {} pending", info.num_pending)),
        diffs => Ok(format!("{name}: pull consumer; run updates {} in place", diffs.join(", "))),
    }
}

/// The database answers, lets us in, and holds every table the streams write.
async fn database(config: &Config) -> Check {
    let what = format!("database {}", redact_url(&config.database.url));
    let settings = crate::config::DatabaseConfig { pool_size: 1, ..config.database.clone() };
    let pool = match db::pool(&settings) {
        Ok(p) => p,
        Err(e) => return Check::new(what, Err(e.to_string())),
    };
    let outcome = match tokio::time::timeout(TIMEOUT, pool.get()).await {
        Err(_) => Err(format!("no answer within {TIMEOUT:?}")),
        Ok(Err(e)) => Err(db::describe_pool(&e)),
        Ok(Ok(client)) => {
            drop(client);
            match migrate::check_tables(&pool, config).await {
                Ok(()) => Ok(format!("answers; schema {} has every table the streams write", config.database.schema)),
                Err(e) => Err(e.to_string()),
            }
        }
    };
    pool.close();
    Check::new(what, outcome)
}
