//! The one shared PostgreSQL pool, and the class of every database error: retry, permanent or breaker.

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

/// Asks the database through `pool` (see [`Answer`]).
pub async fn answers(pool: &Pool, limit: std::time::Duration) -> Answer {
    let check = async {
        let client = pool.get().await?;
        client.simple_query("SELECT 1").await.map_err(PoolError::Backend)?;
        Ok::<_, PoolError>(())
    };
    match tokio::time::timeout(limit, check).await {
        Ok(Ok(())) => Answer::Ok,
        Ok(Err(PoolError::Timeout(deadpool_postgres::TimeoutType::Wait))) => Answer::Busy,
        Ok(Err(e)) => Answer::Down(format!("unreachable: {}", describe_pool(&e))),
        Err(_) => {
            let s = pool.status();
            if s.available == 0 && s.size == s.max_size {
                Answer::Busy
            } else {
                Answer::Down(format!("no answer within {limit:?}"))
            }
        }
    }
}

/// Builds the shared pool. Connections are made lazily, so this succeeds while the database is down.
pub fn pool(db: &DatabaseConfig) -> Result<Pool, DbSetupError> {
    let (pg, tls) = pg_config(db)?;
    let manager = Manager::from_config(pg, tls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    Pool::builder(manager)
        .max_size(db.pool_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(db.connect_timeout))
        .create_timeout(Some(db.connect_timeout))
        .recycle_timeout(Some(db.connect_timeout))
        .build()
        .map_err(|e| DbSetupError::Build(e.to_string()))
}

/// JSON text sent as binary `jsonb` (format version 1, then the text), for binary COPY.
#[derive(Debug, Clone, Copy)]
pub struct JsonbText<'a>(pub &'a str);

impl tokio_postgres::types::ToSql for JsonbText<'_> {
    fn to_sql(
        &self,
        _: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(&[1]);
        out.extend_from_slice(self.0.as_bytes());
        Ok(tokio_postgres::types::IsNull::No)
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        *ty == tokio_postgres::types::Type::JSONB
    }

    tokio_postgres::types::to_sql_checked!();
}

/// A UUID in its text form, sent as binary `uuid` (16 bytes), for binary COPY. Non-hex text is an encode error.
#[derive(Debug, Clone, Copy)]
pub struct UuidText<'a>(pub &'a str);

impl tokio_postgres::types::ToSql for UuidText<'_> {
    fn to_sql(
        &self,
        _: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        // Decoded in place (no allocation): this runs once per row of the tables keyed by UUID.
        let not_uuid = || format!("{:?} is not a UUID", self.0);
        let nibble = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        };
        let mut bytes = [0u8; 16];
        let mut n = 0usize;
        for c in self.0.bytes().filter(|b| *b != b'-') {
            let v = nibble(c).ok_or_else(not_uuid)?;
            let slot = bytes.get_mut(n / 2).ok_or_else(not_uuid)?;
            *slot = (*slot << 4) | v;
            n += 1;
        }
        if n != 32 {
            return Err(not_uuid().into());
        }
        out.extend_from_slice(&bytes);
        Ok(tokio_postgres::types::IsNull::No)
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        *ty == tokio_postgres::types::Type::UUID
    }

    tokio_postgres::types::to_sql_checked!();
}

/// Writes a batch by binary COPY, PostgreSQL's fastest path; if any row already exists (a redelivery: the COPY
/// fails whole with 23505) the savepoint undoes it and `insert` (an `ON CONFLICT DO NOTHING` statement) writes
/// the batch instead. A concurrent instance writing the same rows blocks on the key, then falls back the same way.
pub async fn copy_or_insert<C, CF, I, IF>(
    tx: &tokio_postgres::Transaction<'_>,
    copy: C,
    insert: I,
) -> Result<u64, tokio_postgres::Error>
where
    C: FnOnce() -> CF,
    CF: std::future::Future<Output = Result<u64, tokio_postgres::Error>>,
    I: FnOnce() -> IF,
    IF: std::future::Future<Output = Result<u64, tokio_postgres::Error>>,
{
    tx.batch_execute("SAVEPOINT dbew_copy").await?;
    match copy().await {
        Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
            tx.batch_execute("ROLLBACK TO SAVEPOINT dbew_copy").await?;
            insert().await
        }
        other => other,
    }
}

/// What to do about a failed write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Transient (deadlock, serialization, lock or statement timeout): the same write may succeed soon.
    Retry,
    /// The rows themselves are refused (22xxx data, 23xxx constraint): retrying cannot help.
    Permanent,
    /// The database is unreachable or going away (08xxx, 57P0x, 53xxx, closed connection, pool timeout).
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
}

impl WriteError {
    /// How to react to it.
    pub fn class(&self) -> ErrorClass {
        match self {
            // Every connection busy with our own writes: the database is fine, this batch just waits its turn.
            WriteError::Pool(PoolError::Timeout(deadpool_postgres::TimeoutType::Wait)) => ErrorClass::Retry,
            WriteError::Pool(_) => ErrorClass::Breaker,
            WriteError::Postgres(e) => classify(e),
        }
    }

    /// The SQLSTATE, when PostgreSQL gave one.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            WriteError::Postgres(e) => e.code().map(SqlState::code),
            WriteError::Pool(_) => None,
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
        "40001" | "40P01" | "55P03" | "57014" => ErrorClass::Retry,
        c if c.starts_with("22") || c.starts_with("23") => ErrorClass::Permanent,
        c if c.starts_with("08") || c.starts_with("53") || c.starts_with("57P") => ErrorClass::Breaker,
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

/// Deletes ledger entries older than `keep`, in slices so no statement holds locks for long.
/// Returns how many were removed.
pub async fn prune_ledger(pool: &Pool, schema: &str, keep: std::time::Duration) -> Result<u64, WriteError> {
    let ledger = crate::processor::qualified(schema, "db_event_writer_ledger");
    let client = pool.get().await?;
    let sql = format!(
        "DELETE FROM {ledger} WHERE ctid IN \
         (SELECT ctid FROM {ledger} WHERE committed_at < now() - make_interval(secs => $1) LIMIT 10000)"
    );
    let mut removed = 0;
    loop {
        let n = client.execute(&sql, &[&keep.as_secs_f64()]).await?;
        removed += n;
        if n < 10_000 {
            return Ok(removed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(url: &str) -> DatabaseConfig {
        let text = format!(
            "[nats]\nurl = \"nats://x\"\n[database]\nurl = \"{url}\"\n[[stream]]\nname = \"t\"\njetstream = \"e\"\n\
             consumer = \"c\"\nsubjects = [\"t.>\"]\nprocessor = \"telemetry\"\n"
        );
        crate::config::Config::parse(std::path::Path::new("t.toml"), &text).unwrap().database
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
            ("55P03", ErrorClass::Retry),
            ("22P02", ErrorClass::Permanent),
            ("22021", ErrorClass::Permanent),
            ("23505", ErrorClass::Permanent),
            ("23502", ErrorClass::Permanent),
            ("08006", ErrorClass::Breaker),
            ("57P01", ErrorClass::Breaker),
            ("53300", ErrorClass::Breaker),
            ("42P01", ErrorClass::Retry),
        ] {
            assert_eq!(classify_sqlstate(code), class, "{code}");
        }
    }

    #[test]
    fn uuids_encode_to_sixteen_bytes() {
        use tokio_postgres::types::{ToSql, Type};
        let mut out = bytes::BytesMut::new();
        UuidText("c0b2f5af-7d5d-4c1a-8c5b-7c6a9f4c94b2").to_sql(&Type::UUID, &mut out).unwrap();
        assert_eq!(
            &out[..],
            &[0xc0, 0xb2, 0xf5, 0xaf, 0x7d, 0x5d, 0x4c, 0x1a, 0x8c, 0x5b, 0x7c, 0x6a, 0x9f, 0x4c, 0x94, 0xb2]
        );
        let mut upper = bytes::BytesMut::new();
        UuidText("C0B2F5AF7D5D4C1A8C5B7C6A9F4C94B2").to_sql(&Type::UUID, &mut upper).unwrap();
        assert_eq!(upper, out);
        for bad in [
            "nope",
            "c0b2f5af-7d5d-4c1a-8c5b-7c6a9f4c94b",
            "c0b2f5af-7d5d-4c1a-8c5b-7c6a9f4c94b2a",
            "g0b2f5af7d5d4c1a8c5b7c6a9f4c94b2",
        ] {
            assert!(UuidText(bad).to_sql(&Type::UUID, &mut bytes::BytesMut::new()).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_busy_pool_is_not_a_database_outage() {
        use deadpool_postgres::TimeoutType;
        assert_eq!(WriteError::Pool(PoolError::Timeout(TimeoutType::Wait)).class(), ErrorClass::Retry);
        assert_eq!(WriteError::Pool(PoolError::Timeout(TimeoutType::Create)).class(), ErrorClass::Breaker);
        assert_eq!(WriteError::Pool(PoolError::Closed).class(), ErrorClass::Breaker);
    }
}
