//! The daemon as an operator runs it: the real binary, real signals, a real nats-server and PostgreSQL.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

const LIMIT: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_then_restart_writes_every_message_exactly_once() {
    let nats = NatsServer::start();
    let db = TestDb::create().await;
    let dir = TempDir::new("kill");
    let mut stream = TestStream::telemetry(&unique("kill"));
    stream.batch_size = 200;
    stream.batch_timeout = "100ms";
    // A short ack_wait so what the killed process held comes back quickly.
    stream.extra = "ack_wait = \"2s\"\n".to_owned();
    let config_path = dir.path().join("streams.toml");
    std::fs::write(&config_path, config_text(&nats.url, &db.url, std::slice::from_ref(&stream))).unwrap();
    migrate(&db_event_writer::load_config(&config_path).unwrap()).await;
    let js = nats.jetstream().await;
    create_stream(&js, &stream).await;
    let subject = stream.subjects[0].replace('>', "x");
    const N: usize = 20_000;
    publish_all(&js, (0..N).map(|i| (subject.clone(), metric(i)))).await;

    let mut first = Daemon::spawn(&config_path, dir.path().join("first.log"));
    wait_until(LIMIT, "some rows written by the first process", || async {
        db.count("timeseries_metrics").await >= 2_000
    })
    .await;
    first.signal("KILL");
    first.wait_exit(Duration::from_secs(10));
    let at_kill = db.count("timeseries_metrics").await;
    assert!(at_kill < N as i64, "killed before the end ({at_kill} rows); raise N if this machine is that fast");

    let mut second = Daemon::spawn(&config_path, dir.path().join("second.log"));
    wait_until(LIMIT, "every row", || async { db.count("timeseries_metrics").await >= N as i64 }).await;
    wait_drained(&js, &stream, LIMIT).await;
    // Exactly once: N rows, one per distinct sample, none missing.
    let client = db.client().await;
    let row = client
        .query_one(
            "SELECT count(*), count(DISTINCT device_id), min(value), max(value) FROM platform.timeseries_metrics",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), N as i64);
    assert_eq!(row.get::<_, i64>(1), N as i64);
    assert_eq!(row.get::<_, f64>(2), 0.5);
    assert_eq!(row.get::<_, f64>(3), (N - 1) as f64 + 0.5);
    assert!(dead_letters(&js, &stream.name).await.is_empty(), "a crash dead-letters nothing");
    second.signal("TERM");
    assert!(second.wait_exit(Duration::from_secs(30)).success(), "{}", second.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_commits_and_acks_the_open_partial_batch_then_exits_zero() {
    let nats = NatsServer::start();
    let db = TestDb::create().await;
    let dir = TempDir::new("term");
    let mut stream = TestStream::telemetry(&unique("term"));
    // The batch would wait two minutes for more rows: shutdown must not.
    stream.batch_size = 1_000;
    stream.batch_timeout = "120s";
    let config_path = dir.path().join("streams.toml");
    std::fs::write(&config_path, config_text(&nats.url, &db.url, std::slice::from_ref(&stream))).unwrap();
    migrate(&db_event_writer::load_config(&config_path).unwrap()).await;
    let js = nats.jetstream().await;
    create_stream(&js, &stream).await;
    let subject = stream.subjects[0].replace('>', "x");
    publish_all(&js, (0..10).map(|i| (subject.clone(), metric(i)))).await;

    let mut daemon = Daemon::spawn(&config_path, dir.path().join("daemon.log"));
    // All ten delivered and held in the open batch: nothing pending, ten awaiting ack, no rows yet.
    wait_until(LIMIT, "ten messages delivered and awaiting ack", || async {
        match js.get_stream(&stream.jetstream).await {
            Ok(s) => {
                s.consumer_info(&stream.consumer).await.is_ok_and(|i| i.num_pending == 0 && i.num_ack_pending == 10)
            }
            Err(_) => false,
        }
    })
    .await;
    assert_eq!(db.count("timeseries_metrics").await, 0, "the batch is still open");

    let started = std::time::Instant::now();
    daemon.signal("TERM");
    let status = daemon.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "exit status {status:?}; log:\n{}", daemon.log_text());
    assert!(started.elapsed() < Duration::from_secs(20), "shutdown took {:?}", started.elapsed());
    assert_eq!(db.count("timeseries_metrics").await, 10, "the open batch was committed");
    let (pending, ack_pending) = consumer_state(&js, &stream).await;
    assert_eq!((pending, ack_pending), (0, 0), "and acked before exit");
}

#[test]
fn validate_names_the_misspelled_key_and_its_line() {
    let dir = TempDir::new("validate");
    let path = dir.path().join("streams.toml");
    let mut stream = TestStream::telemetry("tel");
    stream.extra = "batch_timout = \"2s\"\n".to_owned();
    let text = config_text("nats://127.0.0.1:4222", "postgres://postgres@127.0.0.1/x", &[stream]);
    let line = text.lines().position(|l| l.starts_with("batch_timout")).unwrap() + 1;
    std::fs::write(&path, text).unwrap();
    let out = Command::new(daemon_bin()).args(["validate", "--config"]).arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains(&format!("{}:{line}:", path.display())), "names file and line {line}: {stderr}");
    assert!(stderr.contains("stream[0].batch_timout"), "names the key: {stderr}");
}

#[test]
fn validate_accepts_the_shipped_file_and_prints_one_line_per_stream() {
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("streams.toml");
    let out = Command::new(daemon_bin()).args(["validate", "--offline", "--config"]).arg(&shipped).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let config = db_event_writer::load_config(&shipped).unwrap();
    let stream_lines = stdout.lines().filter(|l| l.starts_with("stream ")).count();
    assert_eq!(stream_lines, config.streams.len(), "{stdout}");
}

#[test]
fn validate_reads_the_path_from_the_environment() {
    let out = Command::new(daemon_bin())
        .arg("validate")
        .env("DB_EVENT_WRITER_CONFIG", "/nonexistent/streams.toml")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/streams.toml"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_the_work_and_killing_one_loses_nothing() {
    let nats = NatsServer::start();
    let db = TestDb::create().await;
    let dir = TempDir::new("two");
    let mut stream = TestStream::telemetry(&unique("two"));
    stream.batch_size = 200;
    stream.batch_timeout = "100ms";
    stream.extra = "ack_wait = \"2s\"\n".to_owned();
    let config_path = dir.path().join("streams.toml");
    std::fs::write(&config_path, config_text(&nats.url, &db.url, std::slice::from_ref(&stream))).unwrap();
    migrate(&db_event_writer::load_config(&config_path).unwrap()).await;
    let js = nats.jetstream().await;
    create_stream(&js, &stream).await;
    let subject = stream.subject("x");
    const N: usize = 20_000;
    publish_all(&js, (0..N).map(|i| (subject.clone(), metric(i)))).await;

    let mut a = Daemon::spawn(&config_path, dir.path().join("a.log"));
    let mut b = Daemon::spawn(&config_path, dir.path().join("b.log"));
    wait_until(LIMIT, "both instances writing", || async { db.count("timeseries_metrics").await >= 2_000 }).await;
    a.signal("KILL");
    a.wait_exit(Duration::from_secs(10));
    assert!(db.count("timeseries_metrics").await < N as i64, "killed mid-stream");
    wait_until(LIMIT, "every row", || async { db.count("timeseries_metrics").await >= N as i64 }).await;
    wait_drained(&js, &stream, LIMIT).await;
    let client = db.client().await;
    let row = client
        .query_one("SELECT count(*), count(DISTINCT device_id) FROM platform.timeseries_metrics", &[])
        .await
        .unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (N as i64, N as i64), "exactly once");
    // JetStream spread the messages: each instance committed batches of its own.
    assert!(a.log_text().contains("committed"), "instance a wrote:\n{}", a.log_text());
    assert!(b.log_text().contains("committed"), "instance b wrote:\n{}", b.log_text());
    b.signal("TERM");
    assert!(b.wait_exit(Duration::from_secs(30)).success(), "{}", b.log_text());
}

/// Many instances on one consumer: one instance drains a backlog, two more join (a scale-up), one is SIGKILLed and
/// one SIGTERMed mid-stream; every message is written exactly once and the consumer ends drained.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_scale_up_lose_two_and_write_everything_once() {
    let nats = NatsServer::start();
    let db = TestDb::create().await;
    let dir = TempDir::new("three");
    let mut stream = TestStream::telemetry(&unique("three"));
    stream.batch_size = 200;
    stream.batch_timeout = "100ms";
    stream.extra = "ack_wait = \"2s\"\n".to_owned();
    let config_path = dir.path().join("streams.toml");
    std::fs::write(&config_path, config_text(&nats.url, &db.url, std::slice::from_ref(&stream))).unwrap();
    migrate(&db_event_writer::load_config(&config_path).unwrap()).await;
    let js = nats.jetstream().await;
    create_stream(&js, &stream).await;
    let subject = stream.subject("x");
    const N: i64 = 60_000;
    publish_all(&js, (0..N as usize).map(|i| (subject.clone(), metric(i)))).await;
    let rows = || async { db.count("timeseries_metrics").await };

    let mut a = Daemon::spawn(&config_path, dir.path().join("a.log"));
    wait_until(LIMIT, "one instance writing", || async { rows().await >= 2_000 }).await;
    let mut b = Daemon::spawn(&config_path, dir.path().join("b.log"));
    let mut c = Daemon::spawn(&config_path, dir.path().join("c.log"));
    wait_until(LIMIT, "the new instances writing", || async {
        b.log_text().contains("first batch committed") && c.log_text().contains("first batch committed")
    })
    .await;
    a.signal("KILL");
    a.wait_exit(Duration::from_secs(10));
    assert!(rows().await < N, "a was killed mid-stream");
    let after_kill = rows().await;
    wait_until(LIMIT, "progress after the kill", || async { rows().await >= after_kill + 1_000 }).await;
    b.signal("TERM");
    assert!(b.wait_exit(Duration::from_secs(30)).success(), "{}", b.log_text());
    assert!(rows().await < N, "b was stopped mid-stream");
    wait_until(LIMIT, "every row", || async { rows().await >= N }).await;
    wait_drained(&js, &stream, LIMIT).await;
    let row = db
        .client()
        .await
        .query_one("SELECT count(*), count(DISTINCT device_id) FROM platform.timeseries_metrics", &[])
        .await
        .unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (N, N), "exactly once");
    c.signal("TERM");
    assert!(c.wait_exit(Duration::from_secs(30)).success(), "{}", c.log_text());
}
