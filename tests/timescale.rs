//! TimescaleDB for real: PGlite with TimescaleDB 2.23 behind a small wire-protocol front (tests/pglite-timescale,
//! installed by `make test`). One connection at a time: the daemon runs with a pool of one, and the test reads
//! the database only after it stops.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use tokio_util::sync::CancellationToken;

/// A PGlite+TimescaleDB server on a free port; killed on drop.
struct Timescale {
    child: Child,
    url: String,
}

impl Timescale {
    fn start() -> Timescale {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pglite-timescale");
        assert!(
            dir.join("node_modules").exists(),
            "tests/pglite-timescale/node_modules is missing: run the tests with `make test` (it runs npm ci there)"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut child = Command::new(std::env::var("NODE").unwrap_or_else(|_| "node".into()))
            .arg("server.mjs")
            .current_dir(&dir)
            .env("PORT", port.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start node server.mjs");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("READY") {
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(60)).expect("PGlite+TimescaleDB printed READY within 60 s");
        // PGlite wants a password (any); no TLS.
        Timescale { child, url: format!("postgres://postgres:pglite@127.0.0.1:{port}/postgres?sslmode=disable") }
    }
}

impl Drop for Timescale {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_timescaledb_the_table_is_a_hypertable_with_retention_and_writes_are_idempotent() {
    let ts = Timescale::start();
    let nats = NatsServer::start();
    let mut stream = TestStream::telemetry(&unique("ts"));
    stream.batch_timeout = "50ms";
    let mut config = config(&nats.url, &ts.url, std::slice::from_ref(&stream));
    config.database.pool_size = 1;

    let first = db_event_writer::migrate::migrate(&config.database).await.expect("migrate on TimescaleDB");
    assert!(first.timescaledb, "{first:?}");
    let all: Vec<&str> = db_event_writer::migrate::MIGRATIONS.iter().map(|m| m.name).collect();
    assert_eq!(first.applied, all);
    assert!(first.retention_changed.contains(&"timeseries_metrics".to_owned()), "{first:?}");
    let second = db_event_writer::migrate::migrate(&config.database).await.unwrap();
    assert!(
        second.applied.is_empty() && second.retention_changed.is_empty() && second.chunk_interval_changed.is_empty(),
        "second migrate is a no-op: {second:?}"
    );

    {
        let client = connect(&ts.url).await;
        for (table, keep) in db_event_writer::processor::defaults().retention {
            let hypertable: i64 = client
                .query_one(
                    "SELECT count(*) FROM timescaledb_information.hypertables \
                     WHERE hypertable_schema = 'platform' AND hypertable_name = $1",
                    &[&table],
                )
                .await
                .unwrap()
                .get(0);
            assert_eq!(hypertable, 1, "{table} is a hypertable");
            let drop_after: String = client
                .query_one(
                    "SELECT (config->>'drop_after') FROM timescaledb_information.jobs \
                     WHERE proc_name = 'policy_retention' AND hypertable_name = $1",
                    &[&table],
                )
                .await
                .unwrap()
                .get(0);
            assert_eq!(drop_after, format!("{} days", keep.as_secs() / 86_400), "{table}");
        }
        for (table, every) in db_event_writer::processor::defaults().chunk_interval {
            let (is, interval): (bool, String) = client
                .query_one(
                    "SELECT time_interval = make_interval(secs => $2), time_interval::text \
                     FROM timescaledb_information.dimensions WHERE hypertable_schema = 'platform' \
                     AND hypertable_name = $1",
                    &[&table, &(every.as_secs() as f64)],
                )
                .await
                .map(|r| (r.get(0), r.get(1)))
                .unwrap();
            assert!(is, "{table}: chunk interval {interval}, want {every:?}");
        }
        // The retention job really drops old data when it runs (PGlite has no scheduler: run it by hand).
        client
            .batch_execute(
                "INSERT INTO platform.timeseries_metrics (timestamp, gateway_id, metric_name, metric_type, value, series_key) \
                 VALUES (now() - interval '60 days', 'g', 'old', 'gauge', 1, 'a'), (now(), 'g', 'new', 'gauge', 1, 'b')",
            )
            .await
            .unwrap();
        let job: i32 = client
            .query_one(
                "SELECT job_id FROM timescaledb_information.jobs \
                 WHERE proc_name = 'policy_retention' AND hypertable_name = 'timeseries_metrics'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        client.batch_execute(&format!("CALL run_job({job})")).await.unwrap();
        let names: Vec<String> = client
            .query("SELECT metric_name FROM platform.timeseries_metrics", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(names, ["new"], "the 60-day-old row was dropped with its chunk");
        client.batch_execute("DELETE FROM platform.timeseries_metrics").await.unwrap();
    } // the connection closes: PGlite serves one client at a time

    let js = nats.jetstream().await;
    create_stream(&js, &stream).await;
    let subject = stream.subjects[0].replace('>', "x");
    publish_all(&js, [(subject.clone(), metric(1)), (subject.clone(), metric(2)), (subject.clone(), metric(1))]).await;
    init_logs();
    let token = CancellationToken::new();
    let daemon = tokio::spawn(db_event_writer::run(config, token.clone()));
    wait_drained(&js, &stream, Duration::from_secs(60)).await;
    token.cancel();
    tokio::time::timeout(Duration::from_secs(30), daemon).await.unwrap().unwrap().unwrap();

    let client = connect(&ts.url).await;
    let rows: i64 = client.query_one("SELECT count(*) FROM platform.timeseries_metrics", &[]).await.unwrap().get(0);
    assert_eq!(rows, 2, "three messages, one a duplicate: two rows");
    let chunks: i64 = client
        .query_one(
            "SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_name = 'timeseries_metrics'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(chunks >= 1, "rows live in hypertable chunks");
}

/// Today's ServiceRadar database on TimescaleDB: its tables are hypertables with ServiceRadar's chunk intervals
/// and retention already; `migrate` over it adds its own bookkeeping and changes nothing of theirs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_timescaledb_todays_serviceradar_tables_are_left_as_they_are() {
    let ts = Timescale::start();
    let schema = "today";
    let tables: [(&str, &str, u64, u64); 7] = [
        // (table, time column, chunk hours, retention days): ServiceRadar's (reference-today §11).
        ("timeseries_metrics", "timestamp", 24, 7),
        ("logs", "timestamp", 6, 30),
        ("otel_traces", "timestamp", 1, 3),
        ("otel_metrics", "timestamp", 24, 30),
        ("otel_metric_points", "timestamp", 6, 30),
        ("ocsf_events", "time", 6, 14),
        ("ocsf_network_activity", "time", 24, 90),
    ];
    let shape = "SELECT table_name || '.' || column_name || ' ' || data_type || ' ' || is_nullable || ' ' || \
                 coalesce(column_default, '-') FROM information_schema.columns WHERE table_schema = 'today' \
                 ORDER BY 1";
    let intervals = "SELECT hypertable_name || ' ' || time_interval::text FROM timescaledb_information.dimensions \
                     WHERE hypertable_schema = 'today' ORDER BY 1";
    let policies = "SELECT hypertable_name || ' ' || (config->>'drop_after') FROM timescaledb_information.jobs \
                    WHERE proc_name = 'policy_retention' AND hypertable_schema = 'today' ORDER BY 1";
    let texts = |rows: Vec<tokio_postgres::Row>| rows.iter().map(|r| r.get::<_, String>(0)).collect::<Vec<_>>();
    let before = {
        let client = connect(&ts.url).await;
        client.batch_execute("CREATE EXTENSION IF NOT EXISTS timescaledb").await.unwrap();
        let fixture = include_str!("fixtures/serviceradar_today_schema.sql")
            .replace("platform.", "today.")
            .replace("CREATE SCHEMA IF NOT EXISTS platform", "CREATE SCHEMA IF NOT EXISTS today");
        client.batch_execute(&fixture).await.unwrap();
        for (table, time, hours, days) in tables {
            client
                .batch_execute(&format!(
                    "SELECT create_hypertable('{schema}.{table}', '{time}', chunk_time_interval => INTERVAL '{hours} \
                     hours', migrate_data => TRUE); \
                     SELECT add_retention_policy('{schema}.{table}', INTERVAL '{days} days');"
                ))
                .await
                .unwrap_or_else(|e| panic!("{table}: {e}"));
        }
        (
            texts(client.query(shape, &[]).await.unwrap()),
            texts(client.query(intervals, &[]).await.unwrap()),
            texts(client.query(policies, &[]).await.unwrap()),
        )
    };
    assert_eq!(before.1.len(), tables.len());
    assert_eq!(before.2.len(), tables.len());

    let nats_url = "nats://127.0.0.1:1";
    let text = config_text(nats_url, &ts.url, &[TestStream::telemetry("x")])
        .replace("schema = \"platform\"", "schema = \"today\"");
    let mut config = db_event_writer::parse_config(Path::new("t.toml"), &text).unwrap();
    config.database.pool_size = 1;
    let report = db_event_writer::migrate::migrate(&config.database).await.expect("migrate over today's tables");
    assert!(report.timescaledb);
    assert!(
        report.retention_changed.iter().all(|t| t == "sweep_results"),
        "their retention is already ServiceRadar's (sweep_results is ours, new): {report:?}"
    );
    assert!(report.chunk_interval_changed.is_empty(), "their chunk intervals too: {report:?}");

    let client = connect(&ts.url).await;
    let after_shape: Vec<String> = texts(client.query(shape, &[]).await.unwrap())
        .into_iter()
        .filter(|c| !c.starts_with("db_event_writer_") && !c.starts_with("sweep_results."))
        .collect();
    assert_eq!(after_shape, before.0, "their columns are untouched");
    let after_intervals: Vec<String> = texts(client.query(intervals, &[]).await.unwrap())
        .into_iter()
        .filter(|c| !c.starts_with("sweep_results"))
        .collect();
    assert_eq!(after_intervals, before.1);
    let after_policies: Vec<String> = texts(client.query(policies, &[]).await.unwrap())
        .into_iter()
        .filter(|c| !c.starts_with("sweep_results"))
        .collect();
    assert_eq!(after_policies, before.2);
    let rows: i64 = client.query_one("SELECT count(*) FROM today.logs", &[]).await.unwrap().get(0);
    assert_eq!(rows, 1, "their rows stay");
}
