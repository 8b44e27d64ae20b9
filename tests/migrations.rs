//! `migrate` from the three databases an operator switching writers may have: an empty one, one ServiceRadar
//! left in May 2026, and one holding ServiceRadar's tables today. All three end with today's columns, defaults and
//! keys; today's is changed in nothing (its rows stay); and the series key's SQL function follows
//! `[database.series_key]`, which the daemon checks before it starts.

mod common;

use std::collections::BTreeSet;

use common::*;
use db_event_writer::migrate::migrate as run_migrations;

/// ServiceRadar's tables (those the daemon writes that ServiceRadar has).
const SERVICERADAR_TABLES: &[&str] = &[
    "logs",
    "ocsf_events",
    "ocsf_network_activity",
    "otel_metric_points",
    "otel_metrics",
    "otel_traces",
    "timeseries_metrics",
];

/// Every column of ServiceRadar's tables as (table, column, type, nullable, default), and their keys: the shape
/// two databases must share. Column order is left out (ADD COLUMN appends; no query here depends on it).
async fn shape(client: &tokio_postgres::Client) -> (BTreeSet<String>, BTreeSet<String>) {
    let tables: Vec<String> = SERVICERADAR_TABLES.iter().map(|t| (*t).to_owned()).collect();
    let columns = client
        .query(
            "SELECT table_name || '.' || column_name || ' ' || data_type || ' null=' || is_nullable || ' default=' \
             || coalesce(column_default, '-') FROM information_schema.columns \
             WHERE table_schema = 'platform' AND table_name = ANY($1)",
            &[&tables],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect();
    let keys = client
        .query(
            "SELECT c.conrelid::regclass::text || ' ' || pg_get_constraintdef(c.oid) FROM pg_constraint c \
             JOIN pg_class t ON t.oid = c.conrelid \
             WHERE c.connamespace = 'platform'::regnamespace AND c.contype IN ('p', 'u') AND t.relname = ANY($1)",
            &[&tables],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect();
    (columns, keys)
}

fn difference(a: &BTreeSet<String>, b: &BTreeSet<String>) -> String {
    let only_a: Vec<&String> = a.difference(b).collect();
    let only_b: Vec<&String> = b.difference(a).collect();
    format!("only in the first: {only_a:#?}\nonly in the second: {only_b:#?}")
}

async fn migrated(fixture: Option<&str>) -> (TestDb, tokio_postgres::Client) {
    let db = TestDb::create().await;
    let client = db.client().await;
    if let Some(sql) = fixture {
        client.batch_execute(sql).await.unwrap();
    }
    let config = config("nats://127.0.0.1:1", &db.url, &[TestStream::telemetry("x")]);
    run_migrations(&config.database).await.expect("migrate");
    (db, client)
}

const MAY: &str = include_str!("fixtures/serviceradar_schema.sql");
const TODAY: &str = include_str!("fixtures/serviceradar_today_schema.sql");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_may_and_today_databases_all_end_with_todays_tables() {
    // What ServiceRadar's migrations leave today, built from the reference DDL (not from ours).
    let reference = TestDb::create().await;
    let reference_client = reference.client().await;
    reference_client.batch_execute(TODAY).await.unwrap();
    let (want_columns, want_keys) = shape(&reference_client).await;
    assert_eq!(want_keys.len(), SERVICERADAR_TABLES.len() - 1, "every table but the flows has a key: {want_keys:#?}");

    for (start, fixture) in [("an empty database", None), ("May 2026's", Some(MAY)), ("today's", Some(TODAY))] {
        let (db, client) = migrated(fixture).await;
        let (columns, keys) = shape(&client).await;
        assert!(columns == want_columns, "from {start}: columns differ\n{}", difference(&columns, &want_columns));
        assert!(keys == want_keys, "from {start}: keys differ\n{}", difference(&keys, &want_keys));
        // Twice is a no-op, from anywhere.
        let config = config("nats://127.0.0.1:1", &db.url, &[TestStream::telemetry("x")]);
        let again = run_migrations(&config.database).await.unwrap();
        assert!(again.applied.is_empty() && !again.series_key_changed, "from {start}: {again:?}");
        if fixture.is_some() {
            assert_eq!(db.count("logs").await, 1, "from {start}: ServiceRadar's rows stay");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn todays_database_keeps_its_rows_and_values() {
    let (db, client) = migrated(Some(TODAY)).await;
    let row = client.query_one("SELECT body, source_ip, ingest_identity FROM platform.logs", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "written by ServiceRadar today");
    assert_eq!(row.get::<_, String>(1), "10.0.0.1");
    assert_eq!(row.get::<_, String>(2), "");
    let width: i32 =
        client.query_one("SELECT counter_width FROM platform.timeseries_metrics", &[]).await.unwrap().get(0);
    assert_eq!(width, 64);
    assert_eq!(db.count("timeseries_metrics").await, 1);
}

/// The key `build_timeseries_series_key` gives tags `tags` (JSON) for a fixed identity.
async fn sql_key(client: &tokio_postgres::Client, tags: &str) -> String {
    client
        .query_one(
            "SELECT platform.build_timeseries_series_key('gauge', 'm', NULL, NULL, NULL, NULL, NULL, $1::text::jsonb)",
            &[&tags],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_series_key_function_follows_the_configured_volatile_keys_and_the_daemon_checks_it() {
    use db_event_writer::processor::telemetry::{SeriesIdentity, Volatile, series_key};
    let db = TestDb::create().await;
    let client = db.client().await;
    let stream = TestStream::telemetry("x");
    let with_keys = |keys: &str| {
        let text = config_text("nats://127.0.0.1:1", &db.url, std::slice::from_ref(&stream)).replacen(
            "[daemon]",
            &format!("[database.series_key]\nvolatile_tag_keys = {keys}\n\n[daemon]"),
            1,
        );
        db_event_writer::parse_config(std::path::Path::new("t.toml"), &text).unwrap()
    };
    let ours = |tags: &[(&str, &str)], keys: &[String]| {
        let id = SeriesIdentity { metric_type: Some("gauge"), metric_name: Some("m"), ..Default::default() };
        // series_key takes the tags in key-byte order, as a BTreeMap gives them.
        let sorted: std::collections::BTreeMap<&str, &str> = tags.iter().copied().collect();
        series_key(&id, sorted.into_iter().map(|(k, v)| (k, Some(v))), &Volatile::new(keys))
    };

    // ServiceRadar's list by default: used_bytes never identifies a series, host does.
    let default = with_keys(
        "[\"available\", \"available_bytes\", \"buffered_bytes\", \"cached_bytes\", \"execution_id\", \"free_bytes\", \"metric\", \"packet_loss\", \"payload_kind\", \"producer_id\", \"producer_kind\", \"source\", \"status\", \"sweep_group_id\", \"swap_total_bytes\", \"swap_used_bytes\", \"total_bytes\", \"used_bytes\", \"value\"]",
    );
    let implicit = config("nats://127.0.0.1:1", &db.url, std::slice::from_ref(&stream));
    assert!(run_migrations(&implicit.database).await.unwrap().series_key_changed, "a fresh database gets it");
    let report = run_migrations(&default.database).await.unwrap();
    assert!(!report.series_key_changed, "ServiceRadar's list written out is the default");
    let tags = [("host", "h1"), ("used_bytes", "5"), ("Zone", "a")];
    let json = r#"{"host": "h1", "used_bytes": "5", "Zone": "a"}"#;
    assert_eq!(sql_key(&client, json).await, ours(&tags, &default.database.volatile_tag_keys));
    assert_eq!(
        sql_key(&client, json).await,
        sql_key(&client, r#"{"host": "h1", "used_bytes": "6", "Zone": "a"}"#).await
    );

    // An operator's own list: `migrate` installs it, and SQL and the daemon agree again.
    let custom = with_keys("[\"host\", \"it's\"]");
    let report = run_migrations(&custom.database).await.unwrap();
    assert!(report.series_key_changed);
    let tags = [("host", "h1"), ("used_bytes", "5"), ("it's", "x")];
    let json = r#"{"host": "h1", "used_bytes": "5", "it's": "x"}"#;
    assert_eq!(sql_key(&client, json).await, ours(&tags, &custom.database.volatile_tag_keys));
    assert_ne!(
        sql_key(&client, json).await,
        sql_key(&client, r#"{"host": "h1", "used_bytes": "6", "it's": "x"}"#).await
    );

    // The daemon started with the default list against the custom function refuses, naming the fix.
    let pool = db_event_writer::db::pool(&default.database).unwrap();
    let err = db_event_writer::migrate::check_tables(&pool, &default).await.unwrap_err().to_string();
    assert!(err.contains("volatile_tag_keys") && err.contains("run `db-event-writer migrate`"), "{err}");
    db_event_writer::migrate::check_tables(&pool, &custom).await.expect("the configuration it was migrated with");
}

#[test]
fn a_bad_volatile_key_list_names_its_line() {
    let text = config_text("nats://x", "postgres://x/y", &[TestStream::telemetry("x")]).replacen(
        "[daemon]",
        "[database.series_key]\nvolatile_tag_keys = [\"a\", \"a\"]\n\n[daemon]",
        1,
    );
    let err = db_event_writer::parse_config(std::path::Path::new("t.toml"), &text).unwrap_err().to_string();
    assert!(
        err.contains("t.toml:") && err.contains("database.series_key.volatile_tag_keys") && err.contains("twice"),
        "{err}"
    );
}
