//! Running it as a production service: metrics and health endpoints, reload, status, legacy import, secrets.

mod common;

use std::time::Duration;

use common::*;

const LIMIT: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_every_outcome_and_readyz_names_the_part_that_is_down() {
    let nats = NatsServer::start();
    let db = TestDb::create().await;
    let proxy = Proxy::start(5432).await;
    let dir = TempDir::new("metrics");
    let stream = TestStream::telemetry(&unique("metrics"));
    let port = free_port();
    let mut text = config_text(&nats.url, &proxy.url_for(&db.url), std::slice::from_ref(&stream));
    text = text.replacen(
        "[daemon]",
        &format!("[http]\nlisten = \"127.0.0.1:{port}\"\nrefresh = \"200ms\"\n\n[breaker]\nfailures = 1\ncooldown = \"500ms\"\n\n[daemon]"),
        1,
    );
    let config_path = dir.path().join("streams.toml");
    std::fs::write(&config_path, &text).unwrap();
    migrate(&common::config(&nats.url, &db.url, std::slice::from_ref(&stream))).await;
    let js = nats.jetstream().await;
    create_stream(&js, &stream).await;
    let daemon = Daemon::spawn(&config_path, dir.path().join("daemon.log"));

    wait_until(LIMIT, "/readyz 200", || async { matches!(http_get(port, "/readyz").await, Some((200, _))) }).await;
    let (status, body) = http_get(port, "/healthz").await.unwrap();
    assert_eq!((status, body.trim()), (200, "ok"));
    let (_, ready) = http_get(port, "/readyz").await.unwrap();
    assert_eq!(ready, r#"{"ready":true,"nats":"connected","database":"ok","breaker":"closed"}"#);

    let subject = stream.subject("host");
    let mut items: Vec<(String, Vec<u8>)> = (0..100).map(|i| (subject.clone(), metric(i))).collect();
    items.push((subject.clone(), b"{not json".to_vec()));
    publish_all(&js, items).await;
    wait_until(LIMIT, "100 rows", || async { db.count("timeseries_metrics").await == 100 }).await;

    let labels = format!(r#"{{stream="{}",processor="telemetry"}}"#, stream.name);
    let series = |name: &str| format!("db_event_writer_{name}{labels}");
    let (acked, pending) = (series("messages_acked_total"), series("consumer_ack_pending"));
    wait_until(LIMIT, "counters after the batch and a lag refresh", || async {
        let Some((200, text)) = http_get(port, "/metrics").await else { return false };
        sample(&text, &acked) == Some(100.0) && sample(&text, &pending) == Some(0.0)
    })
    .await;
    let scraped = http_get(port, "/metrics").await.unwrap().1;
    let m = &scraped;
    assert_eq!(sample(m, &series("messages_received_total")), Some(101.0), "{m}");
    assert_eq!(sample(m, &series("messages_redelivered_total")), Some(0.0), "{m}");
    assert_eq!(sample(m, &series("messages_terminated_total")), Some(1.0), "{m}");
    assert_eq!(sample(m, &series("rows_inserted_total")), Some(100.0), "{m}");
    assert_eq!(sample(m, &series("end_to_end_latency_seconds_count")), Some(100.0), "{m}");
    assert_eq!(sample(m, &series("consumer_pending")), Some(0.0), "{m}");
    let dead = format!(
        r#"db_event_writer_messages_dead_lettered_total{{stream="{}",processor="telemetry",class="decode"}}"#,
        stream.name
    );
    assert_eq!(sample(m, &dead), Some(1.0), "{m}");
    let rows = format!(
        r#"db_event_writer_rows_committed_total{{stream="{}",processor="telemetry",table="timeseries_metrics"}}"#,
        stream.name
    );
    assert_eq!(sample(m, &rows), Some(100.0), "{m}");
    assert_eq!(sample(m, "db_event_writer_breaker_state"), Some(0.0), "{m}");
    assert_eq!(sample(m, "db_event_writer_nats_connected"), Some(1.0), "{m}");
    assert!(m.contains("db_event_writer_build_info{version=\""), "{m}");
    assert!(m.contains("# TYPE db_event_writer_batch_write_seconds histogram"), "{m}");
    // Never a subject or payload in a label.
    assert!(!m.contains(&subject), "a subject leaked into a label:\n{m}");

    // The database goes away: /readyz says so (503, naming the database), /healthz stays 200.
    proxy.cut();
    publish_all(&js, [(subject.clone(), metric(1000))]).await;
    wait_until(LIMIT, "/readyz 503", || async { matches!(http_get(port, "/readyz").await, Some((503, _))) }).await;
    let (_, body) = http_get(port, "/readyz").await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["ready"], false, "{body}");
    assert_eq!(v["nats"], "connected", "{body}");
    assert!(v["database"].as_str().unwrap().starts_with("unreachable"), "{body}");
    assert_eq!(http_get(port, "/healthz").await.map(|r| r.0), Some(200));
    wait_until(LIMIT, "breaker_state open in /metrics", || async {
        let Some((_, text)) = http_get(port, "/metrics").await else { return false };
        sample(&text, "db_event_writer_breaker_state").is_some_and(|v| v >= 1.0)
    })
    .await;

    proxy.restore();
    wait_until(LIMIT, "/readyz 200 again", || async { matches!(http_get(port, "/readyz").await, Some((200, _))) })
        .await;
    wait_until(LIMIT, "the message sent during the outage", || async { db.count("timeseries_metrics").await == 101 })
        .await;
    daemon.signal("TERM");
    drop(daemon);
}
