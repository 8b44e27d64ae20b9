//! `make soak`: the release daemon under a steady publish rate for SOAK_SECS (default 300) seconds. Reports its
//! RSS after warm-up and at the end, and fails if memory grew, a row is missing or doubled, or the consumer does
//! not drain. Not part of `make test` (it is `#[ignore]`d there).

mod common;

use std::time::{Duration, Instant};

use common::*;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a five-minute soak: run it with `make soak`"]
async fn steady_load_keeps_memory_flat_and_loses_nothing() {
    let secs: u64 = std::env::var("SOAK_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(300);
    let rate: u64 = std::env::var("SOAK_RATE").ok().and_then(|s| s.parse().ok()).unwrap_or(2_000);
    let nats = NatsServer::start();
    let db = TestDb::create().await;
    let dir = TempDir::new("soak");
    let mut stream = TestStream::telemetry(&unique("soak"));
    stream.batch_size = 1_000;
    stream.batch_timeout = "200ms";
    let path = dir.path().join("streams.toml");
    std::fs::write(&path, config_text(&nats.url, &db.url, std::slice::from_ref(&stream))).unwrap();
    migrate(&db_event_writer::load_config(&path).unwrap()).await;
    let js = nats.jetstream().await;
    create_stream(&js, &stream).await;
    let mut daemon = Daemon::spawn(&path, dir.path().join("daemon.log"));
    let pid = daemon.child.id();
    let subject = stream.subject("x");

    let start = Instant::now();
    let mut sent = 0usize;
    let mut rss_start = 0;
    while start.elapsed() < Duration::from_secs(secs) {
        let second = Instant::now();
        publish_all(&js, (sent..sent + rate as usize).map(|i| (subject.clone(), metric(i)))).await;
        sent += rate as usize;
        if rss_start == 0 && start.elapsed() >= Duration::from_secs(secs.min(30) / 3) {
            rss_start = rss_kib(pid);
        }
        if let Some(rest) = Duration::from_secs(1).checked_sub(second.elapsed()) {
            tokio::time::sleep(rest).await;
        }
    }
    wait_until(Duration::from_secs(120), "every row", || async { db.count("timeseries_metrics").await >= sent as i64 })
        .await;
    wait_drained(&js, &stream, Duration::from_secs(60)).await;
    let rss_end = rss_kib(pid);
    println!(
        "soak: {sent} messages over {secs} s at {rate}/s; daemon RSS {} MiB after warm-up, {} MiB at the end",
        rss_start / 1024,
        rss_end / 1024
    );
    assert_eq!(db.count("timeseries_metrics").await, sent as i64, "exactly once");
    assert!(rss_end <= rss_start + rss_start / 4 + 8 * 1024, "memory grew from {rss_start} KiB to {rss_end} KiB");
    daemon.signal("TERM");
    assert!(daemon.wait_exit(Duration::from_secs(30)).success(), "{}", daemon.log_text());
}
