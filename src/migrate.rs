//! Schema migrations, embedded in the binary: applied in order, each in its own transaction, recorded in
//! `<schema>.db_event_writer_migrations`; running `migrate` twice is a no-op. Then retention policies from
//! `[database.retention]` when TimescaleDB is installed.
//!
//! Uses the config types, the pool's connection settings, SQL quoting and the ledger's table names.

use std::time::Duration;

use tokio_postgres::Client;

use crate::config::{Config, DatabaseConfig};
use crate::db::{DbSetupError, pg_config};
use crate::sql::{qualified, quote_ident};

/// One embedded migration.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Applied in increasing order.
    pub version: i64,
    /// File name, for the record.
    pub name: &'static str,
    /// SQL with `@schema@` standing for the quoted schema.
    pub sql: &'static str,
}

/// Every migration in `migrations/`, in version order (listed by `build.rs`: a new file is all it takes).
pub const MIGRATIONS: &[Migration] = include!(concat!(env!("OUT_DIR"), "/migrations.rs"));

/// Errors of `migrate`.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// Bad settings.
    #[error(transparent)]
    Setup(#[from] DbSetupError),
    /// The database failed a statement.
    #[error("{context}: {}", crate::db::describe(source))]
    Sql {
        /// What was being done.
        context: String,
        /// The error.
        source: tokio_postgres::Error,
    },
    /// A recorded migration differs from the embedded one.
    #[error(
        "migration {version} ({name}) was applied with different content (checksum {recorded}, now {embedded}); refusing to continue"
    )]
    Changed {
        /// Version.
        version: i64,
        /// File name.
        name: &'static str,
        /// Checksum in the database.
        recorded: String,
        /// Checksum of the embedded file.
        embedded: String,
    },
}

/// What `migrate` did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MigrateReport {
    /// Migrations applied now (names).
    pub applied: Vec<&'static str>,
    /// Whether TimescaleDB is installed in the database.
    pub timescaledb: bool,
    /// Retention policies added or changed now (tables).
    pub retention_changed: Vec<String>,
    /// Chunk intervals changed now (tables; new chunks only).
    pub chunk_interval_changed: Vec<String>,
    /// Whether the series key's SQL function was (re)installed now, for `[database.series_key]`.
    pub series_key_changed: bool,
}

fn sql_err(context: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> MigrateError {
    let context = context.into();
    move |source| MigrateError::Sql { context, source }
}

/// Connects (one connection, not the pool) and migrates.
pub async fn migrate(db: &DatabaseConfig) -> Result<MigrateReport, MigrateError> {
    let (pg, tls) = pg_config(db)?;
    let (client, connection) = pg.connect(tls).await.map_err(sql_err("connect"))?;
    let conn = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "migration connection ended with an error");
        }
    });
    let result = migrate_with(&client, db).await;
    drop(client);
    let _ = conn.await;
    result
}

/// Migrates through an open connection.
pub async fn migrate_with(client: &Client, db: &DatabaseConfig) -> Result<MigrateReport, MigrateError> {
    let schema = quote_ident(&db.schema);
    // One migrator at a time per database (two replicas starting together, or `make run` beside a test).
    client
        .execute("SELECT pg_advisory_lock(hashtext('db-event-writer migrate'))", &[])
        .await
        .map_err(sql_err("take the migration lock"))?;
    let result = apply(client, db, &schema).await;
    let _ = client.execute("SELECT pg_advisory_unlock(hashtext('db-event-writer migrate'))", &[]).await;
    result
}

async fn apply(client: &Client, db: &DatabaseConfig, schema: &str) -> Result<MigrateReport, MigrateError> {
    client
        .batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {schema};
             CREATE TABLE IF NOT EXISTS {schema}.db_event_writer_migrations (
               version    BIGINT      PRIMARY KEY,
               name       TEXT        NOT NULL,
               checksum   TEXT        NOT NULL,
               applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
             )"
        ))
        .await
        .map_err(sql_err(format!("create schema {schema}")))?;
    let recorded = client
        .query(&format!("SELECT version, checksum FROM {schema}.db_event_writer_migrations"), &[])
        .await
        .map_err(sql_err("read applied migrations"))?;
    let mut report = MigrateReport::default();
    for m in MIGRATIONS {
        let sql = m.sql.replace("@schema@", schema);
        let checksum = checksum(m.sql);
        if let Some(row) = recorded.iter().find(|r| r.get::<_, i64>(0) == m.version) {
            let was: String = row.get(1);
            if was != checksum {
                return Err(MigrateError::Changed {
                    version: m.version,
                    name: m.name,
                    recorded: was,
                    embedded: checksum,
                });
            }
            continue;
        }
        let body = format!(
            "BEGIN;\n{sql}\n;INSERT INTO {schema}.db_event_writer_migrations (version, name, checksum) VALUES ({}, '{}', '{}');\nCOMMIT;",
            m.version, m.name, checksum
        );
        if let Err(e) = client.batch_execute(&body).await {
            let _ = client.batch_execute("ROLLBACK").await;
            return Err(MigrateError::Sql { context: format!("apply {}", m.name), source: e });
        }
        tracing::info!(migration = m.name, "applied migration");
        report.applied.push(m.name);
    }
    report.series_key_changed = install_series_key(client, &db.schema, &db.volatile_tag_keys).await?;
    report.timescaledb = client
        .query_one("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'timescaledb')", &[])
        .await
        .map_err(sql_err("look for timescaledb"))?
        .get(0);
    if report.timescaledb {
        for (table, keep) in &db.retention {
            if set_retention(client, &db.schema, table, *keep).await? {
                report.retention_changed.push(table.clone());
            }
        }
        for (table, every) in &db.chunk_interval {
            if set_chunk_interval(client, &db.schema, table, *every).await? {
                report.chunk_interval_changed.push(table.clone());
            }
        }
    }
    Ok(report)
}

/// Makes the table's retention policy `keep`; returns whether anything changed.
async fn set_retention(client: &Client, schema: &str, table: &str, keep: Duration) -> Result<bool, MigrateError> {
    let relation = format!("{}.{}", quote_ident(schema), quote_ident(table));
    let interval = interval_text(keep);
    let current = client
        .query_opt(
            "SELECT (config->>'drop_after')::interval = $3::text::interval
               FROM timescaledb_information.jobs
              WHERE proc_name = 'policy_retention' AND hypertable_schema = $1 AND hypertable_name = $2",
            &[&schema, &table, &interval],
        )
        .await
        .map_err(sql_err(format!("read the retention policy of {relation}")))?;
    if let Some(row) = current {
        if row.get::<_, Option<bool>>(0) == Some(true) {
            return Ok(false);
        }
        client
            .execute("SELECT remove_retention_policy($1::text::regclass, if_exists => true)", &[&relation])
            .await
            .map_err(sql_err(format!("remove the retention policy of {relation}")))?;
    }
    client
        .execute("SELECT add_retention_policy($1::text::regclass, $2::text::interval)", &[&relation, &interval])
        .await
        .map_err(sql_err(format!("add a retention policy to {relation}")))?;
    tracing::info!(table = %relation, keep = %humantime::format_duration(keep), "retention policy set");
    Ok(true)
}

/// The body of `timeseries_series_stable_tags` leaving out `keys` (ServiceRadar's definition, with tag keys
/// ordered by bytes, `COLLATE "C"`, so the key does not depend on the database's locale).
pub fn stable_tags_body(schema: &str, keys: &[String]) -> String {
    let mut sorted: Vec<&String> = keys.iter().collect();
    sorted.sort();
    let excluded = if sorted.is_empty() {
        String::new()
    } else {
        let list: Vec<String> = sorted.iter().map(|k| format!("'{}'", k.replace('\'', "''"))).collect();
        format!("\n    AND entry.key NOT IN ({})", list.join(", "))
    };
    format!(
        "\n  SELECT string_agg(\n    {schema}.timeseries_series_component('tag:' || entry.key, entry.value),\n    '|' \
         ORDER BY entry.key COLLATE \"C\"\n  )\n  FROM jsonb_each_text(COALESCE(p_tags, '{{}}'::jsonb)) AS entry(key, \
         value)\n  WHERE COALESCE(btrim(entry.value), '') <> ''{excluded}\n"
    )
}

/// Installs `timeseries_series_stable_tags` for the configured volatile keys unless the database's is already
/// this text; returns whether it changed.
async fn install_series_key(client: &Client, schema: &str, keys: &[String]) -> Result<bool, MigrateError> {
    let quoted = quote_ident(schema);
    let body = stable_tags_body(&quoted, keys);
    let current: Option<String> = client
        .query_opt(
            "SELECT p.prosrc FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
             WHERE n.nspname = $1 AND p.proname = 'timeseries_series_stable_tags'",
            &[&schema],
        )
        .await
        .map_err(sql_err("read the series key function"))?
        .map(|r| r.get(0));
    if current.as_deref() == Some(body.as_str()) {
        return Ok(false);
    }
    client
        .batch_execute(&format!(
            "CREATE OR REPLACE FUNCTION {quoted}.timeseries_series_stable_tags(p_tags jsonb)\n\
             RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $series_key${body}$series_key$"
        ))
        .await
        .map_err(sql_err("install the series key function"))?;
    tracing::info!(volatile_tag_keys = keys.len(), "series key function installed");
    Ok(true)
}

/// Makes the table's chunk interval `every` (TimescaleDB applies it to new chunks); returns whether it changed.
async fn set_chunk_interval(client: &Client, schema: &str, table: &str, every: Duration) -> Result<bool, MigrateError> {
    let relation = format!("{}.{}", quote_ident(schema), quote_ident(table));
    let interval = interval_text(every);
    let current = client
        .query_opt(
            "SELECT time_interval = $3::text::interval FROM timescaledb_information.dimensions \
              WHERE hypertable_schema = $1 AND hypertable_name = $2 AND time_interval IS NOT NULL",
            &[&schema, &table, &interval],
        )
        .await
        .map_err(sql_err(format!("read the chunk interval of {relation}")))?;
    match current {
        // Not a hypertable (TimescaleDB could not make it one): nothing to set.
        None => Ok(false),
        Some(row) if row.get::<_, Option<bool>>(0) == Some(true) => Ok(false),
        Some(_) => {
            client
                .execute(
                    "SELECT set_chunk_time_interval($1::text::regclass, $2::text::interval)",
                    &[&relation, &interval],
                )
                .await
                .map_err(sql_err(format!("set the chunk interval of {relation}")))?;
            tracing::info!(table = %relation, every = %humantime::format_duration(every), "chunk interval set");
            Ok(true)
        }
    }
}

/// `7 days` rather than `604800 seconds`, so the policy reads as it was written.
fn interval_text(d: Duration) -> String {
    let secs = d.as_secs().max(1);
    if secs % 86_400 == 0 {
        format!("{} days", secs / 86_400)
    } else if secs % 3600 == 0 {
        format!("{} hours", secs / 3600)
    } else {
        format!("{secs} seconds")
    }
}

/// A stable fingerprint of a migration's text (FNV-1a 64, hex): detects edits, not attacks.
fn checksum(sql: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in sql.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The database answers but is not what the configured streams need: run `migrate`.
#[derive(Debug, thiserror::Error)]
pub enum SchemaMismatch {
    /// A table a stream writes to does not exist.
    #[error("table {table} does not exist (stream {stream:?} writes to it): run `db-event-writer migrate` first")]
    MissingTable {
        /// Qualified table name.
        table: String,
        /// A stream needing it.
        stream: String,
    },
    /// The server answers but refuses us for good: the database or the role does not exist, or the password is
    /// wrong (SQLSTATE 3D000, 28000, 28P01). Retrying would not help.
    #[error("the database refuses the connection: {why}; check [database] url (database name, user, password)")]
    Refused {
        /// The server's message and SQLSTATE.
        why: String,
    },
    /// The database's `build_timeseries_series_key` leaves out other tag keys than `[database.series_key]`.
    #[error(
        "{function} does not agree with [database.series_key] volatile_tag_keys ({why}): run `db-event-writer migrate` \
         to install it from the configuration"
    )]
    SeriesKey {
        /// Qualified function name.
        function: String,
        /// What the probe found.
        why: String,
    },
}

/// Fails fast when the database answers but refuses us (no such database or role, wrong password) or a table is
/// missing; only warns when it does not answer, or not within twice `connect_timeout` (the streams then wait for
/// it: messages stay in JetStream).
pub async fn check_tables(pool: &deadpool_postgres::Pool, config: &Config) -> Result<(), SchemaMismatch> {
    let limit = config.database.connect_timeout * 2;
    match tokio::time::timeout(limit, look_for_tables(pool, config)).await {
        Ok(result) => result,
        Err(_) => {
            tracing::warn!(timeout = ?limit, "the database did not answer the table check in time; not checked");
            Ok(())
        }
    }
}

async fn look_for_tables(pool: &deadpool_postgres::Pool, config: &Config) -> Result<(), SchemaMismatch> {
    let client = match pool.get().await {
        Ok(c) => c,
        Err(deadpool_postgres::PoolError::Backend(e)) if refuses_for_good(&e) => {
            return Err(SchemaMismatch::Refused { why: crate::db::describe(&e) });
        }
        Err(e) => {
            tracing::warn!(
                error = %crate::db::describe_pool(&e),
                "database not reachable at start-up; messages wait in JetStream until it is"
            );
            return Ok(());
        }
    };
    let ours: &[&str] = &[crate::ledger::INCARNATIONS];
    for s in &config.streams {
        for table in s.processor.tables().iter().chain(ours) {
            let name = qualified(&config.database.schema, table);
            match client.query_one("SELECT to_regclass($1) IS NOT NULL", &[&name]).await {
                Ok(row) if row.get::<_, bool>(0) => {}
                Ok(_) => {
                    return Err(SchemaMismatch::MissingTable { table: name, stream: s.name.clone() });
                }
                Err(e) => tracing::warn!(table = %name, error = %e, "could not check the table"),
            }
        }
    }
    let series = crate::processor::telemetry::TABLE;
    if config.streams.iter().any(|s| s.processor.tables().contains(&series)) {
        check_series_key(&client, &config.database).await?;
    }
    Ok(())
}

/// The server refused the connection in a way waiting does not mend: no such database, no such role, bad password.
pub fn refuses_for_good(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| matches!(c.code(), "3D000" | "28000" | "28P01"))
}

/// Asks the database's `build_timeseries_series_key` for the key of a probe carrying every volatile key (the
/// configured ones and ServiceRadar's) and one stable tag, and compares it with the daemon's: a key computed two
/// ways must be one key, or SQL backfills and checks would see other series than the daemon writes.
async fn check_series_key(client: &Client, db: &DatabaseConfig) -> Result<(), SchemaMismatch> {
    use crate::processor::telemetry::{SeriesIdentity, Volatile, series_key};
    let function = format!("{}.build_timeseries_series_key", quote_ident(&db.schema));
    let mut probe: std::collections::BTreeMap<String, String> = db
        .volatile_tag_keys
        .iter()
        .map(String::as_str)
        .chain(DatabaseConfig::DEFAULT_VOLATILE_TAG_KEYS.iter().copied())
        .map(|k| (k.to_owned(), "probe".to_owned()))
        .collect();
    probe.insert("db_event_writer_stable_probe".to_owned(), "probe".to_owned());
    let tags = serde_json::to_string(&probe).unwrap_or_default();
    let sql = format!("SELECT {function}('gauge', 'probe', NULL, NULL, NULL, NULL, NULL, $1::text::jsonb)");
    let theirs: String = match client.query_one(&sql, &[&tags]).await {
        Ok(row) => row.get(0),
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_FUNCTION) => {
            return Err(SchemaMismatch::SeriesKey { function, why: "it does not exist".into() });
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not check the series key function");
            return Ok(());
        }
    };
    let id = SeriesIdentity { metric_type: Some("gauge"), metric_name: Some("probe"), ..Default::default() };
    let ours = series_key(
        &id,
        probe.iter().map(|(k, v)| (k.as_str(), Some(v.as_str()))),
        &Volatile::new(&db.volatile_tag_keys),
    );
    if theirs == ours {
        Ok(())
    } else {
        Err(SchemaMismatch::SeriesKey { function, why: "it keeps or drops other tag keys".into() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_ordered_and_use_the_schema_placeholder() {
        let mut last = 0;
        for m in MIGRATIONS {
            assert!(m.version > last, "{} out of order", m.name);
            last = m.version;
            assert!(m.name.starts_with(&format!("{:04}_", m.version)), "{}", m.name);
            assert!(!m.sql.contains("platform."), "{} hard-codes the schema", m.name);
            assert!(m.sql.contains("@schema@"), "{}", m.name);
        }
    }

    #[test]
    fn intervals_read_as_written() {
        assert_eq!(interval_text(Duration::from_secs(7 * 86_400)), "7 days");
        assert_eq!(interval_text(Duration::from_secs(90)), "90 seconds");
    }

    #[test]
    fn checksum_is_stable() {
        assert_eq!(checksum(""), "cbf29ce484222325");
        assert_ne!(checksum("a"), checksum("b"));
    }
}
