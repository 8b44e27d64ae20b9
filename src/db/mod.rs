//! The one shared PostgreSQL pool (sessions with a `statement_timeout` and TCP keepalives), how it connects
//! ([`connect`]), whether the database answers, the class of every database error ([`error`]), and the streams'
//! fair [`share`]s of it.
//!
//! Uses the config types and [`crate::tls`] (the resolved TLS settings); nothing above them.

mod connect;
mod error;
pub mod share;

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};

pub use connect::{DbSetupError, pg_config};
pub use error::{ErrorClass, WriteError, classify, classify_sqlstate, describe, describe_pool, explain};

use crate::config::DatabaseConfig;

/// The pool every task uses, replaceable as a whole when the password file changes: tasks take the current pool
/// for each batch, so a swap never interrupts a transaction (connections of the old pool finish theirs and go).
#[derive(Clone)]
pub struct SharedPool {
    inner: std::sync::Arc<std::sync::RwLock<Pool>>,
    /// The streams' writers take turns for its connections.
    shares: std::sync::Arc<share::Shares>,
}

impl std::fmt::Debug for SharedPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedPool").field("status", &self.current().status()).finish()
    }
}

impl SharedPool {
    /// Wraps `pool`.
    pub fn new(pool: Pool) -> Self {
        let shares = share::Shares::new(pool.status().max_size);
        SharedPool { inner: std::sync::Arc::new(std::sync::RwLock::new(pool)), shares }
    }

    /// Waits for `stream`'s fair turn at a connection (see [`share`]); hold it while using one.
    pub async fn turn(&self, stream: &str) -> share::Turn {
        self.shares.turn(stream).await
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
