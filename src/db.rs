//! The one shared PostgreSQL pool (sessions with a `statement_timeout` and TCP keepalives), and the class of
//! every database error: retry, timeout (retry smaller), permanent or breaker.

use std::str::FromStr;

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use tokio_postgres::error::SqlState;

use crate::config::{DatabaseConfig, DatabaseTls, SslMode, TlsFiles, redact_url};
use crate::tls::{MakeRustlsConnect, Verify};

/// Errors building the pool.
#[derive(Debug, thiserror::Error)]
pub enum DbSetupError {
    /// The URL does not parse.
    #[error("database.url {url}: {source}")]
    BadUrl {
        /// The URL, password redacted.
        url: String,
        /// Why.
        source: tokio_postgres::Error,
    },
    /// The password file cannot be used.
    #[error("database.password_file {0}")]
    PasswordFile(String),
    /// TLS settings that cannot be used (a bad mode, an unreadable certificate, set twice).
    #[error("database TLS: {0}")]
    Tls(String),
    /// deadpool refused the settings.
    #[error("cannot build the connection pool: {0}")]
    Build(String),
}

/// The parsed connection settings (with our connect timeout, application name and `sslmode`) and the TLS
/// connector that goes with them. TLS comes from `[database.tls]` or from libpq's URL parameters (`sslmode`,
/// `sslrootcert`, `sslcert`, `sslkey`), not both.
pub fn pg_config(db: &DatabaseConfig) -> Result<(tokio_postgres::Config, MakeRustlsConnect), DbSetupError> {
    let (url, from_url) = split_tls_params(&db.url).map_err(DbSetupError::Tls)?;
    let tls = match (&db.tls, from_url) {
        (Some(_), Some(_)) => {
            return Err(DbSetupError::Tls(
                "set both in the URL (sslmode/sslrootcert/sslcert/sslkey) and in [database.tls]; keep one".into(),
            ));
        }
        (Some(tls), None) => tls.clone(),
        (None, Some(tls)) => tls,
        (None, None) => DatabaseTls { mode: SslMode::Disable, files: TlsFiles::default() },
    };
    let mut pg = tokio_postgres::Config::from_str(&url)
        .map_err(|source| DbSetupError::BadUrl { url: redact_url(&db.url), source })?;
    let verify = match tls.mode {
        SslMode::Disable | SslMode::Prefer | SslMode::Require if tls.files.ca_file.is_none() => Verify::Nothing,
        SslMode::Disable | SslMode::Prefer | SslMode::Require | SslMode::VerifyCa => Verify::Chain,
        SslMode::VerifyFull => Verify::Full,
    };
    pg.ssl_mode(match tls.mode {
        SslMode::Disable => tokio_postgres::config::SslMode::Disable,
        SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => tokio_postgres::config::SslMode::Require,
    });
    let connector = crate::tls::client_config(&tls.files, verify, "database.tls").map_err(DbSetupError::Tls)?;
    if pg.get_connect_timeout().is_none() {
        pg.connect_timeout(db.connect_timeout);
    }
    if pg.get_application_name().is_none() {
        pg.application_name("db-event-writer");
    }
    // A peer that vanishes without a FIN (a dead host, a cut network) is noticed by the kernel within about
    // idle + interval × retries (10 + 5 × 3 s), and data the peer never acknowledges by the user timeout. A peer
    // that acknowledges but never answers (a stuck proxy) is what the write deadline is for.
    pg.keepalives(true)
        .keepalives_idle(std::time::Duration::from_secs(10))
        .keepalives_interval(std::time::Duration::from_secs(5))
        .keepalives_retries(3)
        .tcp_user_timeout(std::time::Duration::from_secs(30));
    if let Some(file) = &db.password_file {
        let password = crate::config::Secret::File(file.clone()).read().map_err(DbSetupError::PasswordFile)?;
        pg.password(password);
    }
    Ok((pg, MakeRustlsConnect::new(connector)))
}

/// libpq's TLS parameters, which tokio-postgres does not know, taken out of a URL (`postgres://…?sslmode=…`) or a
/// key=value string: the rest, and the TLS settings they make when any is present.
fn split_tls_params(url: &str) -> Result<(String, Option<DatabaseTls>), String> {
    const KEYS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];
    let mut found: Vec<(String, String)> = Vec::new();
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        match url.split_once('?') {
            None => url.to_owned(),
            Some((base, query)) => {
                let mut kept = Vec::new();
                for pair in query.split('&') {
                    match pair.split_once('=') {
                        Some((k, v)) if KEYS.contains(&k) => found.push((k.to_owned(), percent_decode(v)?)),
                        _ => kept.push(pair),
                    }
                }
                if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) }
            }
        }
    } else {
        let mut kept = Vec::new();
        for token in url.split_whitespace() {
            match token.split_once('=') {
                Some((k, v)) if KEYS.contains(&k.trim()) => found.push((k.trim().to_owned(), v.trim().to_owned())),
                _ => kept.push(token),
            }
        }
        kept.join(" ")
    };
    if found.is_empty() {
        return Ok((rest, None));
    }
    let (mut mode, mut files) = (None, TlsFiles::default());
    let mut client = (None, None);
    for (k, v) in found {
        match k.as_str() {
            "sslmode" => mode = Some(SslMode::parse(&v)?),
            // libpq's "system" means the system's roots, which is what no file means here.
            "sslrootcert" if v == "system" => {}
            "sslrootcert" => files.ca_file = Some(v.into()),
            "sslcert" => client.0 = Some(std::path::PathBuf::from(v)),
            _ => client.1 = Some(std::path::PathBuf::from(v)),
        }
    }
    files.client = match client {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => return Err("sslcert and sslkey go together".into()),
    };
    // As libpq: a URL naming files but no mode means prefer.
    Ok((rest, Some(DatabaseTls { mode: mode.unwrap_or(SslMode::Prefer), files })))
}

fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok());
            out.push(hex.ok_or_else(|| format!("bad percent escape in {text:?}"))?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{text:?} is not UTF-8 once decoded"))
}

/// The pool every task uses, replaceable as a whole when the password file changes: tasks take the current pool
/// for each batch, so a swap never interrupts a transaction (connections of the old pool finish theirs and go).
#[derive(Clone)]
pub struct SharedPool {
    inner: std::sync::Arc<std::sync::RwLock<Pool>>,
}

impl std::fmt::Debug for SharedPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedPool").field("status", &self.current().status()).finish()
    }
}

impl SharedPool {
    /// Wraps `pool`.
    pub fn new(pool: Pool) -> Self {
        SharedPool { inner: std::sync::Arc::new(std::sync::RwLock::new(pool)) }
    }

    /// The pool to use now.
    pub fn current(&self) -> Pool {
        self.inner.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Puts `pool` in place and closes the old one (its busy connections finish their work first).
    pub fn replace(&self, pool: Pool) {
        let old = std::mem::replace(&mut *self.inner.write().unwrap_or_else(|e| e.into_inner()), pool);
        old.close();
    }
}

/// Re-reads `[database] password_file` every `every`; when its content changes, new connections use the new
/// password (the pool is rebuilt; transactions in progress finish on their old connections).
pub async fn watch_password(
    db: DatabaseConfig,
    pool: SharedPool,
    every: std::time::Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let Some(file) = db.password_file.clone() else { return };
    let secret = crate::config::Secret::File(file.clone());
    let mut last = secret.read().ok();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        match secret.read() {
            Ok(now) if last.as_ref() != Some(&now) => match self::pool(&db) {
                Ok(new) => {
                    pool.replace(new);
                    last = Some(now);
                    tracing::info!(file = %file.display(), "database password changed: the pool was rebuilt");
                }
                Err(e) => tracing::warn!(error = %e, "database password changed but the pool could not be rebuilt"),
            },
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read the database password file; keeping the current one"),
        }
    }
}

/// Whether the database answers one `SELECT 1` through `pool` within `limit`: for the breaker's probe, /readyz
/// and `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// It answered.
    Ok,
    /// Every connection is busy with our own writers: it answers, we are just using all of it.
    Busy,
    /// It did not answer; why.
    Down(String),
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Answer::Ok => f.write_str("ok"),
            Answer::Busy => f.write_str("busy"),
            Answer::Down(why) => f.write_str(why),
        }
    }
}

/// Asks the database through `pool` (see [`Answer`]). A connection that takes the query but does not answer in
/// time is given up, not put back: it may be half-open, and the next probe would get it again.
pub async fn answers(pool: &Pool, limit: std::time::Duration) -> Answer {
    let started = tokio::time::Instant::now();
    let client = match tokio::time::timeout(limit, pool.get()).await {
        Ok(Ok(client)) => client,
        Ok(Err(PoolError::Timeout(deadpool_postgres::TimeoutType::Wait))) => return Answer::Busy,
        Ok(Err(e)) => return Answer::Down(format!("unreachable: {}", describe_pool(&e))),
        Err(_) => {
            let s = pool.status();
            return if s.available == 0 && s.size == s.max_size {
                Answer::Busy
            } else {
                Answer::Down(format!("no answer within {limit:?}"))
            };
        }
    };
    let left = limit.saturating_sub(started.elapsed()).max(std::time::Duration::from_millis(100));
    match tokio::time::timeout(left, client.simple_query("SELECT 1")).await {
        Ok(Ok(_)) => Answer::Ok,
        Ok(Err(e)) => Answer::Down(format!("unreachable: {}", describe(&e))),
        Err(_) => {
            drop(deadpool_postgres::Object::take(client));
            Answer::Down(format!("no answer within {limit:?}"))
        }
    }
}

/// Logs one warning about a write that has taken `after` already (which stream, how many rows, and what
/// PostgreSQL says our slow sessions wait on and who blocks them), asked on another connection, briefly.
pub async fn report_stall(pool: Pool, stream: String, rows: usize, after: std::time::Duration) {
    let ask = async {
        let client = pool.get().await.ok()?;
        let sql = "SELECT a.pid, coalesce(a.wait_event_type, ''), coalesce(a.wait_event, ''), \
                   extract(epoch FROM now() - a.query_start)::float8, \
                   coalesce(array_to_string(pg_blocking_pids(a.pid), ','), ''), \
                   coalesce((SELECT left(b.query, 120) FROM pg_stat_activity b \
                             WHERE b.pid = (pg_blocking_pids(a.pid))[1]), '') \
                   FROM pg_stat_activity a \
                   WHERE a.application_name = current_setting('application_name') AND a.pid <> pg_backend_pid() \
                   AND a.state = 'active' AND a.query_start < now() - make_interval(secs => $1) \
                   ORDER BY a.query_start LIMIT 3";
        let found = client.query(sql, &[&after.as_secs_f64()]).await.ok()?;
        let said: Vec<String> = found
            .iter()
            .map(|r| {
                let (pid, kind, event, secs): (i32, String, String, f64) = (r.get(0), r.get(1), r.get(2), r.get(3));
                let (blockers, query): (String, String) = (r.get(4), r.get(5));
                let waits = if kind.is_empty() { "running".to_owned() } else { format!("waiting on {kind}/{event}") };
                let blocked =
                    if blockers.is_empty() { String::new() } else { format!(", blocked by pid {blockers} ({query})") };
                format!("pid {pid} {waits} for {secs:.1} s{blocked}")
            })
            .collect();
        Some(said.join("; "))
    };
    let postgres = tokio::time::timeout(std::time::Duration::from_secs(2), ask).await.ok().flatten();
    tracing::warn!(
        stream, rows, after = ?after, postgres = postgres.as_deref().unwrap_or("(pg_stat_activity did not answer)"),
        "write stall: a batch has been writing for a long time"
    );
}

/// Builds the shared pool. Connections are made lazily, so this succeeds while the database is down. Every
/// session gets `[database] statement_timeout` (unless it is 0), so no statement of ours waits for ever.
pub fn pool(db: &DatabaseConfig) -> Result<Pool, DbSetupError> {
    let (pg, tls) = pg_config(db)?;
    let manager = Manager::from_config(pg, tls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    let mut builder = Pool::builder(manager)
        .max_size(db.pool_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(db.connect_timeout))
        .create_timeout(Some(db.connect_timeout))
        .recycle_timeout(Some(db.connect_timeout));
    if !db.statement_timeout.is_zero() {
        // A SET once per new connection rather than a startup option: it works behind poolers too.
        let set = format!("SET statement_timeout = {}", db.statement_timeout.as_millis());
        builder = builder.post_create(deadpool_postgres::Hook::async_fn(move |client, _| {
            let set = set.clone();
            Box::pin(async move {
                client.batch_execute(&set).await.map_err(deadpool_postgres::HookError::Backend)?;
                Ok(())
            })
        }));
    }
    builder.build().map_err(|e| DbSetupError::Build(e.to_string()))
}

/// How long one write (a batch's transaction, from taking a connection to COMMIT) may take before its
/// connection is given up and the batch retried on another: two statements at the statement timeout and a
/// connect. A connection that stopped answering (a half-open TCP connection, a proxy that stopped forwarding)
/// is found out by this, not by the server.
pub fn write_deadline(db: &DatabaseConfig) -> std::time::Duration {
    let statements =
        if db.statement_timeout.is_zero() { std::time::Duration::from_secs(300) } else { db.statement_timeout };
    statements * 2 + db.connect_timeout
}

/// What to do about a failed write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Transient (deadlock, serialization) or an operator's problem (a missing table, a permission): the same
    /// write may succeed later. The messages are NAKed with a delay (spending a delivery).
    Retry,
    /// The statement ran out of time (57014 statement timeout, 55P03 lock timeout): retried in smaller parts,
    /// then as [`ErrorClass::Retry`].
    Timeout,
    /// The rows themselves are refused (22xxx data, 23xxx constraint, 54xxx program limit such as an index row
    /// too large, P0xxx raised by a trigger): retrying cannot help; bisection finds the refused messages.
    Permanent,
    /// The database cannot take writes now (08xxx connection, 53xxx disk full / out of memory / too many
    /// connections, 57P0x shutting down, 58xxx I/O, 25006 read-only, a closed or stuck connection, no connection
    /// from the pool): the database's fault. Never spends a delivery: the batch is held and retried.
    Breaker,
}

/// A failed write: the pool or PostgreSQL.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// No connection could be had.
    #[error("no database connection: {}", describe_pool(.0))]
    Pool(#[from] PoolError),
    /// PostgreSQL (or the connection to it) failed the statement.
    #[error("{}", describe(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// The write did not finish within its deadline; its connection was given up.
    #[error("no answer from the database within {0:?}; the connection was dropped")]
    Deadline(std::time::Duration),
}

impl WriteError {
    /// How to react to it.
    pub fn class(&self) -> ErrorClass {
        match self {
            // No connection within the wait: either our own writers hold them all (then their commits keep
            // closing the breaker, so this alone never opens it) or every connection is stuck (an outage that
            // shows only this way, which must open it).
            WriteError::Pool(_) => ErrorClass::Breaker,
            WriteError::Postgres(e) => classify(e),
            WriteError::Deadline(_) => ErrorClass::Breaker,
        }
    }

    /// The SQLSTATE, when PostgreSQL gave one.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            WriteError::Postgres(e) => e.code().map(SqlState::code),
            WriteError::Pool(_) | WriteError::Deadline(_) => None,
        }
    }
}

/// Classifies a tokio-postgres error by SQLSTATE and connection state.
pub fn classify(e: &tokio_postgres::Error) -> ErrorClass {
    if let Some(code) = e.code() {
        return classify_sqlstate(code.code());
    }
    if e.is_closed() || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>()) {
        return ErrorClass::Breaker;
    }
    // A value the client could not encode for its column (e.g. out of range): retrying cannot help; bisection
    // finds the message that carries it. tokio-postgres does not expose this kind, only its message.
    if e.to_string().starts_with("error serializing parameter") {
        return ErrorClass::Permanent;
    }
    // Anything else without a SQLSTATE is a connection or protocol failure.
    ErrorClass::Breaker
}

/// Classifies a SQLSTATE code.
pub fn classify_sqlstate(code: &str) -> ErrorClass {
    match code {
        "40001" | "40P01" => ErrorClass::Retry,
        "55P03" | "57014" => ErrorClass::Timeout,
        // Read-only: a standby (after a failover this connection now points at): the database's state, not ours.
        "25006" => ErrorClass::Breaker,
        c if c.starts_with("22") || c.starts_with("23") || c.starts_with("54") || c.starts_with("P0") => {
            ErrorClass::Permanent
        }
        c if c.starts_with("08") || c.starts_with("53") || c.starts_with("57P") || c.starts_with("58") => {
            ErrorClass::Breaker
        }
        // Anything else (a missing table, a permission) is an operator problem: retry with backoff, never drop.
        _ => ErrorClass::Retry,
    }
}

/// The server's message with its SQLSTATE, or the client error.
/// A PostgreSQL error as one line: the server's message and SQLSTATE, or the client's error with its causes
/// (tokio-postgres keeps them out of its own Display: "error performing TLS handshake" alone says little).
pub fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {} (SQLSTATE {})", db.severity(), db.message(), db.code().code()),
        None => explain(e),
    }
}

/// A pool error, its backend error described as [`describe`] does.
pub fn describe_pool(e: &PoolError) -> String {
    match e {
        PoolError::Backend(e) => describe(e),
        other => explain(other),
    }
}

/// An error and its chain of causes, each said once.
pub fn explain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let message = c.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        cause = c.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(url: &str) -> DatabaseConfig {
        let text = format!(
            "[nats]\nurl = \"nats://x\"\n[database]\nurl = \"{url}\"\n[[stream]]\nname = \"t\"\njetstream = \"e\"\n\
             consumer = \"c\"\nsubjects = [\"t.>\"]\nprocessor = \"telemetry\"\n"
        );
        crate::parse_config(std::path::Path::new("t.toml"), &text).unwrap().database
    }

    #[test]
    fn libpq_tls_parameters_are_taken_out_of_the_url() {
        let (rest, tls) = split_tls_params(
            "postgres://u:p@db:5432/x?application_name=a&sslmode=verify-ca&sslrootcert=%2Fetc%2Fca.pem&sslcert=/c&sslkey=/k",
        )
        .unwrap();
        assert_eq!(rest, "postgres://u:p@db:5432/x?application_name=a");
        let files = TlsFiles {
            ca_file: Some("/etc/ca.pem".into()),
            client: Some(("/c".into(), "/k".into())),
            server_name: None,
        };
        assert_eq!(tls, Some(DatabaseTls { mode: SslMode::VerifyCa, files }));
        let (rest, tls) = split_tls_params("host=db user=u sslmode=require dbname=x").unwrap();
        assert_eq!((rest.as_str(), tls.unwrap().mode), ("host=db user=u dbname=x", SslMode::Require));
        let (rest, tls) = split_tls_params("postgres://db/x?sslrootcert=system").unwrap();
        assert_eq!((rest.as_str(), tls.map(|t| t.mode)), ("postgres://db/x", Some(SslMode::Prefer)));
        assert_eq!(split_tls_params("postgres://db/x").unwrap(), ("postgres://db/x".into(), None));
        assert!(split_tls_params("postgres://db/x?sslmode=maybe").unwrap_err().contains("unknown sslmode"));
        assert!(split_tls_params("postgres://db/x?sslcert=/c").unwrap_err().contains("together"));
        assert!(split_tls_params("postgres://db/x?sslrootcert=%zz").unwrap_err().contains("percent"));
    }

    #[test]
    fn tls_is_set_in_one_place_and_files_must_be_readable() {
        let mut config = db("postgres://u@db/x?sslmode=require");
        let (pg, _) = pg_config(&config).unwrap();
        assert_eq!(pg.get_ssl_mode(), tokio_postgres::config::SslMode::Require);
        assert_eq!(
            pg_config(&db("postgres://u@db/x")).unwrap().0.get_ssl_mode(),
            tokio_postgres::config::SslMode::Disable
        );
        config.tls = Some(DatabaseTls { mode: SslMode::Require, files: TlsFiles::default() });
        let e = pg_config(&config).unwrap_err().to_string();
        assert!(e.contains("both in the URL") && e.contains("[database.tls]"), "{e}");
        let e = pg_config(&db("postgres://u@db/x?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("database TLS: database.tls.ca_file /nonexistent/ca.pem: "), "{e}");
    }

    #[test]
    fn sqlstates_fall_into_their_classes() {
        for (code, class) in [
            ("40001", ErrorClass::Retry),
            ("40P01", ErrorClass::Retry),
            ("55P03", ErrorClass::Timeout),
            ("57014", ErrorClass::Timeout),
            ("22P02", ErrorClass::Permanent),
            ("22021", ErrorClass::Permanent),
            ("23505", ErrorClass::Permanent),
            ("23502", ErrorClass::Permanent),
            // index row size exceeds maximum; stack depth limit exceeded; RAISE EXCEPTION in a trigger
            ("54000", ErrorClass::Permanent),
            ("54001", ErrorClass::Permanent),
            ("P0001", ErrorClass::Permanent),
            ("08006", ErrorClass::Breaker),
            ("57P01", ErrorClass::Breaker),
            // too many connections; disk full; out of memory
            ("53300", ErrorClass::Breaker),
            ("53100", ErrorClass::Breaker),
            ("53200", ErrorClass::Breaker),
            ("25006", ErrorClass::Breaker),
            ("58030", ErrorClass::Breaker),
            ("42P01", ErrorClass::Retry),
            ("XX000", ErrorClass::Retry),
        ] {
            assert_eq!(classify_sqlstate(code), class, "{code}");
        }
    }

    #[test]
    fn no_connection_is_the_databases_failure_and_spends_no_delivery() {
        use deadpool_postgres::TimeoutType;
        // Held and retried rather than NAKed; the breaker counts it, and our own commits in between reset the
        // count when the pool is merely busy.
        assert_eq!(WriteError::Pool(PoolError::Timeout(TimeoutType::Wait)).class(), ErrorClass::Breaker);
        assert_eq!(WriteError::Pool(PoolError::Timeout(TimeoutType::Create)).class(), ErrorClass::Breaker);
        assert_eq!(WriteError::Pool(PoolError::Closed).class(), ErrorClass::Breaker);
        assert_eq!(WriteError::Deadline(std::time::Duration::from_secs(1)).class(), ErrorClass::Breaker);
    }
}
