//! The one shared PostgreSQL pool, and the class of every database error: retry, permanent or breaker.

use std::str::FromStr;

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

use crate::config::{DatabaseConfig, redact_url};

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
    /// deadpool refused the settings.
    #[error("cannot build the connection pool: {0}")]
    Build(String),
}

/// The parsed connection settings (with our connect timeout and application name).
pub fn pg_config(db: &DatabaseConfig) -> Result<tokio_postgres::Config, DbSetupError> {
    let mut pg = tokio_postgres::Config::from_str(&db.url)
        .map_err(|source| DbSetupError::BadUrl { url: redact_url(&db.url), source })?;
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
    Ok(pg)
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
        Ok(Err(e)) => Answer::Down(format!("unreachable: {e}")),
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
    let manager =
        Manager::from_config(pg_config(db)?, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
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
        let hex: Vec<u8> = self.0.bytes().filter(|b| *b != b'-').collect();
        if hex.len() != 32 {
            return Err(format!("{:?} is not a UUID", self.0).into());
        }
        for pair in hex.chunks(2) {
            let text = std::str::from_utf8(pair)?;
            out.extend_from_slice(&[u8::from_str_radix(text, 16)?]);
        }
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
    #[error("no database connection: {0}")]
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
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => e.to_string(),
    }
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
        assert_eq!(out.len(), 16);
        assert_eq!(out[0], 0xc0);
        assert!(UuidText("nope").to_sql(&Type::UUID, &mut bytes::BytesMut::new()).is_err());
    }

    #[test]
    fn a_busy_pool_is_not_a_database_outage() {
        use deadpool_postgres::TimeoutType;
        assert_eq!(WriteError::Pool(PoolError::Timeout(TimeoutType::Wait)).class(), ErrorClass::Retry);
        assert_eq!(WriteError::Pool(PoolError::Timeout(TimeoutType::Create)).class(), ErrorClass::Breaker);
        assert_eq!(WriteError::Pool(PoolError::Closed).class(), ErrorClass::Breaker);
    }
}
