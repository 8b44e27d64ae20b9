//! Running it as a production service: metrics and health endpoints, reload, status, legacy import, secrets.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

const LIMIT: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_every_outcome_and_readyz_names_the_part_that_is_down_without_going_unready() {
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
    let (_, m) = http_get(port, "/metrics").await.unwrap();
    assert!(m.contains("db_event_writer_last_commit_timestamp_seconds{"), "{m}");

    let subject = stream.subject("host");
    let mut items: Vec<(String, Vec<u8>)> = (0..100).map(|i| (subject.clone(), metric(i))).collect();
    items.push((subject.clone(), b"{not json".to_vec()));
    publish_all(&js, items).await;
    wait_until(LIMIT, "100 rows", || async { db.count("timeseries_metrics").await == 100 }).await;

    let labels = format!(r#"{{stream="{}",processor="telemetry"}}"#, stream.name);
    let series = |name: &str| format!("db_event_writer_{name}{labels}");
    let (acked, ack_pending, pending) =
        (series("messages_acked_total"), series("consumer_ack_pending"), series("consumer_pending"));
    // The lag gauges are refreshed on their own clock: wait for a refresh after the acks.
    wait_until(LIMIT, "counters after the batch and a lag refresh", || async {
        let Some((200, text)) = http_get(port, "/metrics").await else { return false };
        sample(&text, &acked) == Some(100.0)
            && sample(&text, &ack_pending) == Some(0.0)
            && sample(&text, &pending) == Some(0.0)
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

    // The database goes away: /readyz names it as degraded but stays 200 (an outage every replica shares must not
    // make them all unready and block node drains); /healthz stays 200.
    proxy.cut();
    publish_all(&js, [(subject.clone(), metric(1000))]).await;
    wait_until(LIMIT, "/readyz naming the database", || async {
        matches!(http_get(port, "/readyz").await, Some((200, body)) if body.contains(r#""degraded":["database""#))
    })
    .await;
    let (_, body) = http_get(port, "/readyz").await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["ready"], true, "{body}");
    assert_eq!(v["nats"], "connected", "{body}");
    assert!(v["database"].as_str().unwrap().starts_with("unreachable"), "{body}");
    assert_eq!(http_get(port, "/healthz").await.map(|r| r.0), Some(200));
    wait_until(LIMIT, "breaker_state open in /metrics", || async {
        let Some((_, text)) = http_get(port, "/metrics").await else { return false };
        sample(&text, "db_event_writer_breaker_state").is_some_and(|v| v >= 1.0)
    })
    .await;
    // Several probes fail during the outage (cool-down 500 ms); the log says when it started, not each probe.
    tokio::time::sleep(Duration::from_secs(3)).await;

    proxy.restore();
    wait_until(LIMIT, "/readyz without degradation", || async {
        matches!(http_get(port, "/readyz").await, Some((200, body)) if !body.contains("degraded"))
    })
    .await;
    wait_until(LIMIT, "the message sent during the outage", || async { db.count("timeseries_metrics").await == 101 })
        .await;
    wait_until(LIMIT, "the outage's end in the log", || async { daemon.log_text().contains("database back") }).await;
    let log = daemon.log_text();
    assert_eq!(log.matches("database outage: circuit breaker opened").count(), 1, "{log}");
    assert_eq!(log.matches("database back: circuit breaker closed").count(), 1, "{log}");
    assert!(!log.lines().any(|l| l.contains("probe failed") && !l.contains("DEBUG")), "probes are debug: {log}");
    assert_eq!(log.matches("first batch committed").count(), 1, "one stream, one first batch: {log}");
    daemon.signal("TERM");
    drop(daemon);
}

/// Config text with an `[http]` listener on `port`.
fn with_http(text: String, port: u16) -> String {
    text.replacen("[daemon]", &format!("[http]\nlisten = \"127.0.0.1:{port}\"\nrefresh = \"200ms\"\n\n[daemon]"), 1)
}

fn reloads_logged(daemon: &Daemon, what: &str) -> usize {
    daemon.log_text().matches(what).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_stream_changes_under_traffic_without_losing_or_doubling() {
    let nats = NatsServer::start();
    let db = TestDb::create().await;
    let dir = TempDir::new("reload");
    let mut a = TestStream::telemetry(&unique("ra"));
    let b = TestStream::telemetry(&unique("rb"));
    let port = free_port();
    let write = |streams: &[TestStream]| {
        let path = dir.path().join("streams.toml");
        std::fs::write(&path, with_http(config_text(&nats.url, &db.url, streams), port)).unwrap();
        path
    };
    let config_path = write(std::slice::from_ref(&a));
    migrate(&common::config(&nats.url, &db.url, std::slice::from_ref(&a))).await;
    let js = nats.jetstream().await;
    create_stream(&js, &a).await;
    create_stream(&js, &b).await;
    let daemon = Daemon::spawn(&config_path, dir.path().join("daemon.log"));

    // Traffic on both streams for the whole test: A's rows are values 0..N, B's N..2N.
    const N: usize = 3_000;
    let traffic = tokio::spawn({
        let (js, sa, sb) = (js.clone(), a.subject("host"), b.subject("host"));
        async move {
            for chunk in 0..N / 50 {
                let items =
                    (chunk * 50..(chunk + 1) * 50).flat_map(|i| [(sa.clone(), metric(i)), (sb.clone(), metric(N + i))]);
                publish_all(&js, items).await;
                tokio::time::sleep(Duration::from_millis(60)).await;
            }
        }
    });
    wait_until(LIMIT, "A consuming", || async { db.count("timeseries_metrics").await > 100 }).await;

    // 1. B added, A changed (smaller batches): A drains and restarts, B starts.
    a.batch_size = 50;
    write(&[a.clone(), b.clone()]);
    daemon.signal("HUP");
    wait_until(LIMIT, "reload 1 applied", || async { reloads_logged(&daemon, "reload applied") == 1 }).await;
    let log = daemon.log_text();
    let applied = log.lines().find(|l| l.contains("reload applied")).unwrap();
    assert!(applied.contains(&format!("added=[\"{}\"]", b.name)), "{applied}");
    assert!(applied.contains(&format!("restarted=[\"{}\"]", a.name)), "{applied}");

    // 2. An invalid file: rejected, named, nothing stops.
    let path = dir.path().join("streams.toml");
    let good = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, good.replacen("batch_size = 50", "batch_sise = 50", 1)).unwrap();
    daemon.signal("HUP");
    wait_until(LIMIT, "reload 2 rejected", || async { reloads_logged(&daemon, "reload rejected") == 1 }).await;
    let log = daemon.log_text();
    let rejected = log.lines().find(|l| l.contains("reload rejected")).unwrap();
    assert!(rejected.contains("streams.toml:") && rejected.contains("stream[0].batch_sise"), "{rejected}");

    // 3. B removed while A is untouched: B drains and stops, A is not restarted.
    write(std::slice::from_ref(&a));
    daemon.signal("HUP");
    wait_until(LIMIT, "reload 3 applied", || async { reloads_logged(&daemon, "reload applied") == 2 }).await;
    let log = daemon.log_text();
    let applied = log.lines().filter(|l| l.contains("reload applied")).nth(1).unwrap();
    assert!(applied.contains(&format!("removed=[\"{}\"]", b.name)), "{applied}");
    assert!(applied.contains("restarted=[]") && applied.contains("added=[]"), "{applied}");
    let (_, m) = http_get(port, "/metrics").await.unwrap();
    assert!(!m.contains(&format!("stream=\"{}\"", b.name)), "a removed stream's series linger:\n{m}");
    assert!(m.contains(&format!("stream=\"{}\"", a.name)), "{m}");

    // 4. B back: it resumes from its durable consumer where it stopped.
    write(&[a.clone(), b.clone()]);
    daemon.signal("HUP");
    wait_until(LIMIT, "reload 4 applied", || async { reloads_logged(&daemon, "reload applied") == 3 }).await;

    traffic.await.unwrap();
    wait_until(LIMIT, "every row", || async { db.count("timeseries_metrics").await >= 2 * N as i64 }).await;
    wait_drained(&js, &a, LIMIT).await;
    wait_drained(&js, &b, LIMIT).await;
    let row = db
        .client()
        .await
        .query_one(
            "SELECT count(*), count(DISTINCT value), min(value), max(value) FROM platform.timeseries_metrics",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 2 * N as i64, "exactly once");
    assert_eq!(row.get::<_, i64>(1), 2 * N as i64, "none missing, none doubled");
    assert_eq!(row.get::<_, f64>(2), 0.5);
    assert_eq!(row.get::<_, f64>(3), (2 * N - 1) as f64 + 0.5);
    for s in [&a, &b] {
        assert_eq!(consumer_state(&js, s).await.0, 0, "nothing left pending on {}", s.name);
        assert!(dead_letters(&js, &s.name).await.is_empty());
    }
    let (_, m) = http_get(port, "/metrics").await.unwrap();
    assert_eq!(sample(&m, r#"db_event_writer_config_reloads_total{outcome="applied"}"#), Some(3.0), "{m}");
    assert_eq!(sample(&m, r#"db_event_writer_config_reloads_total{outcome="rejected"}"#), Some(1.0), "{m}");
    // Drained streams acked what they held: nothing was redelivered.
    let redelivered =
        format!(r#"db_event_writer_messages_redelivered_total{{stream="{}",processor="telemetry"}}"#, a.name);
    assert_eq!(sample(&m, &redelivered), Some(0.0), "{m}");
    daemon.signal("TERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_lag_awaiting_ack_and_dead_letters_per_stream() {
    let nats = NatsServer::start();
    let db = TestDb::create().await;
    let dir = TempDir::new("status");
    let stream = TestStream::telemetry(&unique("status"));
    let config_path = dir.path().join("streams.toml");
    std::fs::write(&config_path, config_text(&nats.url, &db.url, std::slice::from_ref(&stream))).unwrap();
    let config_arg = config_path.to_str().unwrap();
    migrate(&common::config(&nats.url, &db.url, std::slice::from_ref(&stream))).await;
    let js = nats.jetstream().await;
    create_stream(&js, &stream).await;

    // Before the daemon ever ran, the consumer does not exist: said, and the exit status is 1.
    let (code, out, _) = run_cli(&["status", "--config", config_arg]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("stream {}: ", stream.name)) && out.contains("error=consumer"), "{out}");

    let subject = stream.subject("host");
    let mut items: Vec<(String, Vec<u8>)> = (0..5).map(|i| (subject.clone(), metric(i))).collect();
    items.push((subject.clone(), b"not json".to_vec()));
    items.push((subject.clone(), b"[1]".to_vec()));
    publish_all(&js, items).await;
    let daemon = Daemon::spawn(&config_path, dir.path().join("daemon.log"));
    wait_until(LIMIT, "5 rows", || async { db.count("timeseries_metrics").await == 5 }).await;
    wait_until(LIMIT, "2 dead letters", || async { dead_letters(&js, &stream.name).await.len() == 2 }).await;
    wait_drained(&js, &stream, LIMIT).await;
    daemon.signal("TERM");
    let mut daemon = daemon;
    assert!(daemon.wait_exit(Duration::from_secs(30)).success());
    publish_all(&js, (5..8).map(|i| (subject.clone(), metric(i)))).await;

    let (code, out, err) = run_cli(&["status", "--config", config_arg]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(": ok (nats-server 2."), "{out}");
    assert!(out.contains("database postgres://***@127.0.0.1:5432/") && out.contains(": ok\n"), "{out}");
    let line = out.lines().find(|l| l.starts_with(&format!("stream {}:", stream.name))).unwrap();
    assert!(
        line.contains("lag=3 awaiting_ack=0 redelivered=0 dead_letters=2 pullers=0 (no instance is pulling)"),
        "{line}"
    );
    assert!(line.contains("delivered/s=0.0 acked/s=0.0"), "{line}");
    assert!(out.contains("dlq DLQ: ok (2 letters, "), "{out}");

    let (code, out, _) = run_cli(&["status", "--json", "--config", config_arg]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["nats"], "ok");
    assert_eq!(v["database"], "ok");
    assert_eq!(v["streams"][0]["name"], stream.name.as_str());
    assert_eq!(v["streams"][0]["lag"], 3);
    assert_eq!(v["streams"][0]["pullers"], 0);
    assert_eq!(v["streams"][0]["awaiting_ack"], 0);
    assert_eq!(v["streams"][0]["dead_letters"], 2);

    // The DLQ gone: dead letters could not be stored until the daemon makes it again: said, exit status 1.
    js.delete_stream("DLQ").await.unwrap();
    let (code, out, _) = run_cli(&["status", "--config", config_arg]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("dlq DLQ: missing: stream \"DLQ\" does not exist"), "{out}");

    // The database down: said, exit status 1, NATS still reported.
    let down = config_text(
        &nats.url,
        &format!("postgres://postgres@127.0.0.1:{}/x", free_port()),
        std::slice::from_ref(&stream),
    );
    std::fs::write(&config_path, down).unwrap();
    let (code, out, _) = run_cli(&["status", "--config", config_arg]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(": unreachable"), "{out}");
    assert!(out.contains("lag=3"), "{out}");
}

#[test]
fn import_legacy_prints_a_streams_toml_that_validates() {
    let dir = TempDir::new("legacy");
    let json = dir.path().join("db-event-writer.json");
    std::fs::write(
        &json,
        r#"{"listen_addr":"0.0.0.0:50041","nats_url":"nats://127.0.0.1:4222","stream_name":"events",
            "consumer_name":"db-event-writer",
            "streams":[{"subject":"events.ocsf.processed","table":"ocsf_events"},{"subject":"logs.syslog.processed","table":"logs"},
                       {"subject":"otel.metrics.raw","table":"otel_metrics"}],
            "cnpg":{"host":"127.0.0.1","port":5432,"database":"serviceradar","username":"serviceradar","password":"hunter2"}}"#,
    )
    .unwrap();
    let (code, toml, err) = run_cli(&["import-legacy", json.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let out = dir.path().join("streams.toml");
    std::fs::write(&out, &toml).unwrap();
    let (code, valid, err) = run_cli(&["validate", "--offline", "--config", out.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}\n{toml}");
    assert!(valid.contains("valid, 3 stream(s)"), "{valid}");
    assert!(valid.contains("subjects=[otel.metrics, otel.metrics.>]"), "{valid}");
    assert!(!valid.contains("hunter2"), "validate printed the password:\n{valid}");

    let (code, _, err) = run_cli(&["import-legacy", dir.path().join("missing.json").to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("missing.json: cannot read"), "{err}");
}

/// The switch from the Elixir EventWriter: its environment → streams.toml → the daemon resumes the Elixir
/// writer's durable consumer where it stopped (what it acked is not read again) and writes the rest once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_elixir_writers_environment_imports_and_the_daemon_resumes_its_durable() {
    use async_nats::jetstream::consumer::{AckPolicy, pull};
    use futures::StreamExt;
    let nats = NatsServer::start();
    let db = TestDb::create().await;
    let js = nats.jetstream().await;
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "metrics".into(),
        subjects: vec!["metrics.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    publish_all(&js, (0..10).map(|i| ("metrics.poller".to_owned(), metric(i)))).await;
    // The Elixir writer's METRICS durable (config.ex: pull, explicit acks, 120 s, 256, max_deliver 5), which has
    // processed the first four messages.
    let stream = js.get_stream("metrics").await.unwrap();
    let durable = "serviceradar-event-writer-metrics";
    let elixir = stream
        .create_consumer(pull::Config {
            durable_name: Some(durable.into()),
            filter_subject: "metrics.>".into(),
            ack_policy: AckPolicy::Explicit,
            ack_wait: Duration::from_secs(120),
            max_ack_pending: 256,
            max_deliver: 5,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut batch = elixir.fetch().max_messages(4).messages().await.unwrap();
    while let Some(m) = batch.next().await {
        m.unwrap().double_ack().await.unwrap();
    }
    let created = stream.consumer_info(durable).await.unwrap().created;

    let dir = TempDir::new("elixir");
    let env = dir.path().join("core-elx.env");
    std::fs::write(
        &env,
        format!("EVENT_WRITER_ENABLED=true\nEVENT_WRITER_NATS_URL={}\nDATABASE_URL={}\n", nats.url, db.url),
    )
    .unwrap();
    let (code, toml, err) = run_cli(&["import-legacy", "--elixir-env", env.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let port = free_port();
    let toml = toml.replace("listen = \"0.0.0.0:9464\"", &format!("listen = \"127.0.0.1:{port}\""));
    let config_path = dir.path().join("streams.toml");
    std::fs::write(&config_path, &toml).unwrap();
    let config_arg = config_path.to_str().unwrap();
    let (code, _, err) = run_cli(&["migrate", "--config", config_arg]);
    assert_eq!(code, 0, "{err}\n{toml}");
    let mut daemon = Daemon::spawn(&config_path, dir.path().join("daemon.log"));
    wait_until(LIMIT, "the six messages the Elixir writer had not acked", || async {
        db.count("timeseries_metrics").await == 6
    })
    .await;
    let metrics = TestStream {
        name: "metrics".into(),
        jetstream: "metrics".into(),
        consumer: durable.into(),
        subjects: vec!["metrics.>".into()],
        ..TestStream::telemetry("unused")
    };
    wait_drained(&js, &metrics, LIMIT).await;
    let info = stream.consumer_info(durable).await.unwrap();
    assert_eq!(info.created, created, "the Elixir writer's durable, resumed, not a new one");
    assert_eq!(db.count("timeseries_metrics").await, 6, "{}", daemon.log_text());
    daemon.signal("TERM");
    assert!(daemon.wait_exit(LIMIT).success(), "{}", daemon.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_mutual_tls_with_password_file_works_and_wrong_credentials_are_refused_clearly() {
    const NATS_PASSWORD: &str = "nats-s3cret-pass";
    const DB_PASSWORD: &str = "db-s3cret-pass";
    let dir = TempDir::new("tls");
    let pki = Pki::generate(dir.path(), "good");
    let other = Pki::generate(dir.path(), "other");
    let nats = NatsServer::start_with(&format!(
        "tls {{\n cert_file: \"{}\"\n key_file: \"{}\"\n ca_file: \"{}\"\n verify: true\n timeout: 3\n}}\n\
         authorization {{ user: dbew, password: \"{NATS_PASSWORD}\" }}\n",
        pki.server_cert.display(),
        pki.server_key.display(),
        pki.ca.display()
    ));
    let db = TestDb::create().await;
    // Trust authentication ignores the password: it is here to prove it is never printed.
    let db_url = db.url.replacen("postgres@", &format!("postgres:{DB_PASSWORD}@"), 1);
    let password_file = dir.path().join("nats-password");
    std::fs::write(&password_file, format!("{NATS_PASSWORD}\n")).unwrap();
    let stream = TestStream::telemetry(&unique("tls"));
    let tls_url = format!("tls://127.0.0.1:{}", nats.port);
    let nats_section = |ca: &Path, cert: &Path, key: &Path, pw: &Path| {
        format!(
            "[nats]\nurl = \"{tls_url}\"\nuser = \"dbew\"\npassword_file = \"{}\"\n\n[nats.tls]\nca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            pw.display(),
            ca.display(),
            cert.display(),
            key.display()
        )
    };
    let write_config = |name: &str, nats_part: String| {
        let text = config_text(&tls_url, &db_url, std::slice::from_ref(&stream));
        let rest = &text[text.find("[database]").unwrap()..];
        let path = dir.path().join(name);
        std::fs::write(&path, format!("{nats_part}\n{rest}")).unwrap();
        path
    };
    let good = write_config("good.toml", nats_section(&pki.ca, &pki.client_cert, &pki.client_key, &password_file));
    migrate(&common::config(&nats.url, &db.url, std::slice::from_ref(&stream))).await;

    // A test client with the same credentials creates the stream and publishes.
    let client = async_nats::ConnectOptions::with_user_and_password("dbew".into(), NATS_PASSWORD.into())
        .require_tls(true)
        .add_root_certificates(pki.ca.clone())
        .add_client_certificate(pki.client_cert.clone(), pki.client_key.clone())
        .connect(&tls_url)
        .await
        .expect("test client over mTLS");
    let js = async_nats::jetstream::new(client);
    create_stream(&js, &stream).await;
    publish_all(&js, (0..50).map(|i| (stream.subject("h"), metric(i)))).await;

    let daemon = Daemon::spawn(&good, dir.path().join("daemon.log"));
    wait_until(LIMIT, "50 rows over mutual TLS", || async { db.count("timeseries_metrics").await == 50 }).await;
    let (code, status, err) = run_cli(&["status", "--config", good.to_str().unwrap()]);
    assert_eq!(code, 0, "{status}{err}");
    // The certificate is checked against server_name instead of the URL's host when it is set.
    let named = write_config(
        "named.toml",
        nats_section(&pki.ca, &pki.client_cert, &pki.client_key, &password_file) + "server_name = \"localhost\"\n",
    );
    let (code, out, err) = run_cli(&["status", "--config", named.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, valid, err) = run_cli(&["validate", "--config", good.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    daemon.signal("TERM");
    let mut daemon = daemon;
    assert!(daemon.wait_exit(Duration::from_secs(30)).success());
    for (what, text) in [("status", &status), ("validate", &valid), ("daemon log", &daemon.log_text())] {
        assert!(!text.contains(NATS_PASSWORD) && !text.contains(DB_PASSWORD), "{what} printed a secret:\n{text}");
    }

    // Each wrong part is refused with an error that names it.
    let wrong_pw = dir.path().join("wrong-password");
    std::fs::write(&wrong_pw, "nope").unwrap();
    let cases = [
        ("wrong CA", nats_section(&other.ca, &pki.client_cert, &pki.client_key, &password_file), "certificate"),
        (
            "client cert from another CA",
            nats_section(&pki.ca, &other.client_cert, &other.client_key, &password_file),
            "",
        ),
        ("wrong password", nats_section(&pki.ca, &pki.client_cert, &pki.client_key, &wrong_pw), "authorization"),
        (
            "server_name the certificate does not carry",
            nats_section(&pki.ca, &pki.client_cert, &pki.client_key, &password_file)
                + "server_name = \"nats.elsewhere\"\n",
            "not valid for name \"nats.elsewhere\"",
        ),
        (
            "missing password file",
            nats_section(&pki.ca, &pki.client_cert, &pki.client_key, &dir.path().join("absent")),
            "password_file",
        ),
    ];
    for (i, (case, section, expect)) in cases.into_iter().enumerate() {
        let path = write_config(&format!("bad{i}.toml"), section);
        let (code, out, err) = run_cli(&["status", "--config", path.to_str().unwrap()]);
        assert_eq!(code, 1, "{case}: {out}{err}");
        let nats_line = out.lines().next().unwrap_or_default().to_ascii_lowercase();
        assert!(nats_line.contains("unreachable"), "{case}: {out}");
        assert!(nats_line.contains(expect), "{case}: expected {expect:?} in {nats_line}");
        assert!(!out.contains(NATS_PASSWORD) && !out.contains("nope"), "{case}: printed a secret: {out}");
    }

    // The daemon with a wrong password backs off instead of storming the server.
    let bad = write_config("storm.toml", nats_section(&pki.ca, &pki.client_cert, &pki.client_key, &wrong_pw));
    let daemon = Daemon::spawn(&bad, dir.path().join("storm.log"));
    tokio::time::sleep(Duration::from_secs(4)).await;
    let log = daemon.log_text();
    let attempts = log.matches("cannot connect to NATS").count();
    assert!((1..=6).contains(&attempts), "{attempts} attempts in 4 s:\n{log}");
    assert!(log.to_ascii_lowercase().contains("authorization"), "{log}");
    daemon.signal("TERM");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_spans_reach_an_otlp_collector_over_http_and_grpc_linked_to_the_publishers_traces() {
    use db_event_writer::processor::proto::common::any_value::Value;
    const TOKEN: &str = "otel-t0ken-5531";
    let db = TestDb::create().await;
    let nats = NatsServer::start();
    let js = nats.jetstream().await;
    let dir = TempDir::new("otel");
    let mut total_rows = 0i64;
    // A collector that is not there must cost nothing but a warning: rows still flow.
    for (k, (case, protocol)) in
        [("http", Some("http/protobuf")), ("grpc", Some("grpc")), ("absent", None)].into_iter().enumerate()
    {
        let collector = OtlpCollector::start(protocol == Some("grpc")).await;
        let port = if protocol.is_some() { collector.port } else { free_port() };
        let mut stream = TestStream::telemetry(&unique(case));
        stream.batch_size = 10;
        let otel = format!(
            "[otel]\nendpoint = \"http://127.0.0.1:{port}\"\nprotocol = \"{}\"\nexport_interval = \"100ms\"\n\
             service_name = \"dbew-test\"\nheaders = {{ \"x-collector-token\" = \"{TOKEN}\" }}\n",
            protocol.unwrap_or("http/protobuf")
        );
        let text = config_text(&nats.url, &db.url, std::slice::from_ref(&stream));
        let path = dir.path().join(format!("{case}.toml"));
        std::fs::write(&path, text.replacen("[daemon]", &format!("{otel}\n[daemon]"), 1)).unwrap();
        if case == "http" {
            migrate(&common::config(&nats.url, &db.url, std::slice::from_ref(&stream))).await;
        }
        create_stream(&js, &stream).await;
        // 30 traced messages (each its own publisher trace), 5 untraced, 1 undecodable (dead-lettered, no span).
        let mut published = std::collections::BTreeSet::new();
        for i in 0..36usize {
            let mut headers = async_nats::HeaderMap::new();
            let payload = if i == 35 { b"not json".to_vec() } else { metric(100 * k + i) };
            if i < 30 {
                let (trace, span) = (format!("{:032x}", 0xabc0_0000 + i), format!("{:016x}", 0x5100 + i));
                headers.insert("traceparent", format!("00-{trace}-{span}-01").as_str());
                published.insert((trace, span));
            }
            js.publish_with_headers(stream.subject("h"), headers, payload.into()).await.unwrap().await.unwrap();
        }
        let daemon = Daemon::spawn(&path, dir.path().join(format!("{case}.log")));
        total_rows += 35;
        if !wait_for(Duration::from_secs(20), || async { db.count("timeseries_metrics").await == total_rows }).await {
            panic!("{case}: {} rows, not {total_rows}\n{}", db.count("timeseries_metrics").await, daemon.log_text());
        }
        wait_drained(&js, &stream, LIMIT).await;
        if protocol.is_none() {
            wait_until(LIMIT, "the export failure logged", || async {
                daemon.log_text().contains("span export failed")
            })
            .await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            daemon.signal("TERM");
            let mut daemon = daemon;
            assert!(daemon.wait_exit(Duration::from_secs(30)).success());
            assert_eq!(daemon.log_text().matches("span export failed").count(), 1, "{}", daemon.log_text());
            continue;
        }
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        wait_until(LIMIT, "spans for all 35 messages", || async {
            let n: i64 = collector
                .spans()
                .iter()
                .flat_map(|s| &s.attributes)
                .filter(|a| a.key == "messaging.batch.message_count")
                .filter_map(|a| match a.value.as_ref()?.value {
                    Some(Value::IntValue(n)) => Some(n),
                    _ => None,
                })
                .sum();
            n == 35
        })
        .await;
        daemon.signal("TERM");
        let mut daemon = daemon;
        assert!(daemon.wait_exit(Duration::from_secs(30)).success());
        let spans = collector.spans();
        let mut linked = std::collections::BTreeSet::new();
        let mut rows = 0;
        for span in &spans {
            assert_eq!(span.name, format!("process {}", stream.name));
            assert_eq!(span.kind, 5, "a consumer span");
            assert!(span.end_time_unix_nano >= span.start_time_unix_nano && span.start_time_unix_nano > 0);
            assert_eq!((span.trace_id.len(), span.span_id.len()), (16, 8));
            let attr = |k: &str| span.attributes.iter().find(|a| a.key == k).and_then(|a| a.value.clone()?.value);
            assert_eq!(attr("db_event_writer.stream"), Some(Value::StringValue(stream.name.clone())));
            assert_eq!(attr("db_event_writer.processor"), Some(Value::StringValue("telemetry".into())));
            assert_eq!(attr("db.collection.name"), Some(Value::StringValue("timeseries_metrics".into())));
            assert_eq!(attr("db_event_writer.outcome"), Some(Value::StringValue("committed".into())));
            assert_eq!(span.status, None);
            if let Some(Value::IntValue(n)) = attr("db_event_writer.rows") {
                rows += n;
            }
            for link in &span.links {
                assert!(linked.insert((hex(&link.trace_id), hex(&link.span_id))), "a message linked twice");
            }
        }
        assert_eq!(rows, 35, "{case}");
        assert_eq!(linked, published, "{case}: every traced message linked, nothing else");
        let exports = collector.exports.lock().unwrap();
        for (headers, request) in exports.iter() {
            assert_eq!(headers.get("x-collector-token").unwrap(), TOKEN);
            let resource = request.resource_spans[0].resource.as_ref().unwrap();
            let service = resource.attributes.iter().find(|a| a.key == "service.name").unwrap();
            assert_eq!(service.value.clone().unwrap().value, Some(Value::StringValue("dbew-test".into())));
        }
        assert!(!daemon.log_text().contains(TOKEN), "the collector token reached the log");
    }
}

/// base64url without padding, as JWTs use it.
fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// A NATS JWT (decentralised auth) for `subject`, issued and signed by `issuer`.
fn nats_jwt(issuer: &nkeys::KeyPair, subject: &str, name: &str, nats: serde_json::Value) -> String {
    let header = b64url(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let claims = serde_json::json!({
        "jti": unique("jti").to_ascii_uppercase(), "iat": 1_700_000_000, "iss": issuer.public_key(),
        "name": name, "sub": subject, "nats": nats,
    });
    let body = b64url(claims.to_string().as_bytes());
    let signature = issuer.sign(format!("{header}.{body}").as_bytes()).unwrap();
    format!("{header}.{body}.{}", b64url(&signature))
}

fn creds_file(user_jwt: &str, user: &nkeys::KeyPair) -> String {
    format!(
        "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
         -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n",
        user.seed().unwrap()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nkey_token_and_credentials_file_accounts_authenticate_and_strangers_are_refused() {
    let db = TestDb::create().await;
    let dir = TempDir::new("nkey");
    let first = TestStream::telemetry(&unique("nkey"));
    migrate(&common::config("nats://unused", &db.url, std::slice::from_ref(&first))).await;
    let with_auth = |name: &str, url: &str, stream: &TestStream, auth: String| {
        let text = config_text(url, &db.url, std::slice::from_ref(stream));
        let path = dir.path().join(name);
        std::fs::write(&path, text.replacen("\n\n[database]", &format!("\n{auth}\n\n[database]"), 1)).unwrap();
        path
    };
    let write_secret = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    // Runs the daemon with `config` until `stream` has `rows` more rows, then stops it.
    let run_until = |config: std::path::PathBuf, rows: i64| {
        let db = &db;
        async move {
            let daemon = Daemon::spawn(&config, config.with_extension("log"));
            wait_until(LIMIT, "rows through an authenticated connection", || async {
                db.count("timeseries_metrics").await == rows
            })
            .await;
            daemon.signal("TERM");
            let mut daemon = daemon;
            assert!(daemon.wait_exit(Duration::from_secs(30)).success(), "{}", daemon.log_text());
        }
    };
    let refused = |config: &Path| {
        let (code, out, err) = run_cli(&["status", "--config", config.to_str().unwrap()]);
        assert_eq!(code, 1, "{out}{err}");
        let line = out.lines().next().unwrap_or_default().to_ascii_lowercase();
        assert!(line.contains("unreachable") && line.contains("authorization"), "{out}{err}");
    };

    // An nkey user.
    let user = nkeys::KeyPair::new_user();
    let nats =
        NatsServer::start_with(&format!("authorization {{ users = [ {{ nkey: \"{}\" }} ] }}\n", user.public_key()));
    let client = async_nats::ConnectOptions::with_nkey(user.seed().unwrap()).connect(&nats.url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    create_stream(&js, &first).await;
    publish_all(&js, (0..20).map(|i| (first.subject("h"), metric(i)))).await;
    let seed = write_secret("user.nk", &user.seed().unwrap());
    run_until(with_auth("nkey.toml", &nats.url, &first, format!("nkey_seed_file = \"{seed}\"")), 20).await;
    let stranger = write_secret("stranger.nk", &nkeys::KeyPair::new_user().seed().unwrap());
    refused(&with_auth("stranger.toml", &nats.url, &first, format!("nkey_seed_file = \"{stranger}\"")));
    drop(nats);

    // A token, from a file.
    let nats = NatsServer::start_with("authorization { token: \"t0ken-8812\" }\n");
    let client = async_nats::ConnectOptions::with_token("t0ken-8812".into()).connect(&nats.url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let by_token = TestStream::telemetry(&unique("token"));
    create_stream(&js, &by_token).await;
    publish_all(&js, (50..60).map(|i| (by_token.subject("h"), metric(i)))).await;
    let token = write_secret("token", "t0ken-8812\n");
    run_until(with_auth("token.toml", &nats.url, &by_token, format!("token_file = \"{token}\"")), 30).await;
    let wrong = write_secret("wrong-token", "nope");
    refused(&with_auth("wrong-token.toml", &nats.url, &by_token, format!("token_file = \"{wrong}\"")));
    drop(nats);

    // Decentralised auth: operator → account (JetStream enabled) → user, the user's JWT and seed in a .creds file.
    let operator = nkeys::KeyPair::new_operator();
    let account = nkeys::KeyPair::new_account();
    let unlimited = serde_json::json!({
        "subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "wildcards": true, "conn": -1,
        "leaf": -1, "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1
    });
    let operator_jwt = nats_jwt(
        &operator,
        &operator.public_key(),
        "test-operator",
        serde_json::json!({"type": "operator", "version": 2}),
    );
    let account_jwt = nats_jwt(
        &operator,
        &account.public_key(),
        "events",
        serde_json::json!({"limits": unlimited, "default_permissions": {"pub": {}, "sub": {}}, "type": "account", "version": 2}),
    );
    let user_claims =
        serde_json::json!({"pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1, "type": "user", "version": 2});
    let user = nkeys::KeyPair::new_user();
    let user_jwt = nats_jwt(&account, &user.public_key(), "db-event-writer", user_claims.clone());
    // JetStream needs a system account.
    let system = nkeys::KeyPair::new_account();
    let system_jwt =
        nats_jwt(&operator, &system.public_key(), "SYS", serde_json::json!({"type": "account", "version": 2}));
    let nats = NatsServer::start_with(&format!(
        "operator: \"{operator_jwt}\"\nsystem_account: {}\nresolver: MEMORY\n\
         resolver_preload: {{ {}: \"{account_jwt}\", {}: \"{system_jwt}\" }}\n",
        system.public_key(),
        account.public_key(),
        system.public_key()
    ));
    let creds = creds_file(&user_jwt, &user);
    let client = async_nats::ConnectOptions::with_credentials(&creds).unwrap().connect(&nats.url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let second = TestStream::telemetry(&unique("creds"));
    create_stream(&js, &second).await;
    publish_all(&js, (20..50).map(|i| (second.subject("h"), metric(i)))).await;
    let path = write_secret("user.creds", &creds);
    run_until(with_auth("creds.toml", &nats.url, &second, format!("creds_file = \"{path}\"")), 60).await;
    // A user of an account the server does not know.
    let other_account = nkeys::KeyPair::new_account();
    let stranger = nkeys::KeyPair::new_user();
    let stranger_jwt = nats_jwt(&other_account, &stranger.public_key(), "stranger", user_claims);
    let path = write_secret("stranger.creds", &creds_file(&stranger_jwt, &stranger));
    refused(&with_auth("stranger-creds.toml", &nats.url, &second, format!("creds_file = \"{path}\"")));
    let log = std::fs::read_to_string(dir.path().join("creds.log")).unwrap_or_default();
    assert!(!log.contains(&user.seed().unwrap()), "a seed reached the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_tls_modes_check_what_they_promise_and_a_client_certificate_authenticates() {
    let certs = TempDir::new("pgtls_certs");
    let pki = Pki::generate(certs.path(), "pg");
    let other = Pki::generate(certs.path(), "other");
    // The server's certificate names db.internal only, so connecting to 127.0.0.1 tells verify-ca from verify-full.
    let (server_cert, server_key) = pki.issue("db", &["db.internal"], "db.internal");
    let (user_cert, user_key) = pki.issue("certuser", &["certuser"], "certuser");
    let pg = TlsPostgres::start(&server_cert, &server_key, &pki.ca);
    let admin = pg.admin("postgres").await;
    admin.batch_execute("CREATE ROLE certuser LOGIN").await.unwrap();
    admin.batch_execute("CREATE DATABASE events OWNER certuser").await.unwrap();
    let nats = NatsServer::start();
    let stream = TestStream::telemetry(&unique("pgtls"));
    let url = |user: &str, query: &str| format!("postgres://{user}@127.0.0.1:{}/events{query}", pg.port);
    let tls = |mode: &str, ca: &Path, rest: &str| {
        format!("\n[database.tls]\nmode = \"{mode}\"\nca_file = \"{}\"\n{rest}", ca.display())
    };
    let client_cert =
        |cert: &Path, key: &Path| format!("cert_file = \"{}\"\nkey_file = \"{}\"\n", cert.display(), key.display());
    let write = |name: &str, db_url: &str, tls_section: &str| {
        let text = config_text(&nats.url, db_url, std::slice::from_ref(&stream));
        let text = text.replacen("pool_size = 4\n", &format!("pool_size = 4\n{tls_section}\n"), 1);
        let path = certs.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let database_line = |path: &Path| {
        let (_, out, err) = run_cli(&["status", "--config", path.to_str().unwrap()]);
        out.lines().find(|l| l.starts_with("database ")).map(str::to_owned).unwrap_or_else(|| format!("{out}{err}"))
    };

    // verify-full against server_name, authenticated by a client certificate alone: migrate, then rows flow.
    let good_tls =
        tls("verify-full", &pki.ca, &format!("server_name = \"db.internal\"\n{}", client_cert(&user_cert, &user_key)));
    let good = write("good.toml", &url("certuser", ""), &good_tls);
    let (code, out, err) = run_cli(&["migrate", "--config", good.to_str().unwrap()]);
    assert_eq!(code, 0, "migrate over TLS: {out}{err}");
    let js = nats.jetstream().await;
    create_stream(&js, &stream).await;
    publish_all(&js, (0..50).map(|i| (stream.subject("h"), metric(i)))).await;
    let daemon = Daemon::spawn(&good, certs.path().join("daemon.log"));
    let events = pg.admin("events").await;
    let count = || async {
        events
            .query_one("SELECT count(*) FROM platform.timeseries_metrics", &[])
            .await
            .map(|r| r.get::<_, i64>(0))
            .unwrap_or(0)
    };
    wait_until(LIMIT, "50 rows over TLS", || async { count().await == 50 }).await;
    wait_drained(&js, &stream, LIMIT).await;
    // The server's own view: every connection of the daemon is encrypted and carries the client certificate.
    let rows = events
        .query(
            "SELECT s.ssl, coalesce(s.client_dn, '') FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.application_name = 'db-event-writer'",
            &[],
        )
        .await
        .unwrap();
    assert!(!rows.is_empty(), "no connection of the daemon is open");
    for row in &rows {
        assert!(row.get::<_, bool>(0), "a daemon connection without TLS");
        assert_eq!(row.get::<_, String>(1), "/CN=certuser");
    }
    daemon.signal("TERM");
    let mut daemon = daemon;
    assert!(daemon.wait_exit(Duration::from_secs(30)).success(), "{}", daemon.log_text());
    assert!(database_line(&good).ends_with(": ok"), "{}", database_line(&good));

    // What each mode accepts and refuses, through `status` (the same pool the daemon uses).
    let cases = [
        ("plain TCP", url("postgres", ""), String::new(), "no encryption"),
        ("verify-full, the name differs", url("postgres", ""), tls("verify-full", &pki.ca, ""), "not valid for name"),
        ("verify-ca, the name differs", url("postgres", ""), tls("verify-ca", &pki.ca, ""), ""),
        ("verify-ca, another CA", url("postgres", ""), tls("verify-ca", &other.ca, ""), "unknownissuer"),
        ("require with a CA file checks it", url("postgres", ""), tls("require", &other.ca, ""), "unknownissuer"),
        ("require without a CA", url("postgres", ""), "\n[database.tls]\nmode = \"require\"\n".into(), ""),
        (
            "libpq parameters in the URL",
            url("postgres", &format!("?sslmode=verify-ca&sslrootcert={}", pki.ca.display())),
            String::new(),
            "",
        ),
        ("cert auth without a certificate", url("certuser", ""), tls("verify-ca", &pki.ca, ""), "certificate"),
        (
            "cert auth with another CA's certificate",
            url("certuser", ""),
            tls("verify-ca", &pki.ca, &client_cert(&other.client_cert, &other.client_key)),
            "unknownca",
        ),
    ];
    for (i, (case, db_url, section, expect)) in cases.into_iter().enumerate() {
        let line = database_line(&write(&format!("case{i}.toml"), &db_url, &section));
        let accepted = line.ends_with(": ok");
        if expect.is_empty() {
            assert!(accepted, "{case}: {line}");
        } else {
            assert!(!accepted && line.contains(": unreachable"), "{case}: {line}");
            assert!(line.to_ascii_lowercase().contains(expect), "{case}: expected {expect:?} in {line}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_password_file_rebuilds_the_pool_under_traffic_without_losing_or_doubling() {
    let nats = NatsServer::start();
    let db = TestDb::create().await;
    let dir = TempDir::new("password");
    let stream = TestStream::telemetry(&unique("pw"));
    let password_file = dir.path().join("pg-password");
    std::fs::write(&password_file, "pw-one-7731\n").unwrap();
    let text = config_text(&nats.url, &db.url, std::slice::from_ref(&stream)).replacen(
        "pool_size = 4\n",
        &format!("pool_size = 4\npassword_file = \"{}\"\npassword_check = \"200ms\"\n", password_file.display()),
        1,
    );
    let config_path = dir.path().join("streams.toml");
    std::fs::write(&config_path, text).unwrap();
    migrate(&common::config(&nats.url, &db.url, std::slice::from_ref(&stream))).await;
    let js = nats.jetstream().await;
    create_stream(&js, &stream).await;
    let daemon = Daemon::spawn(&config_path, dir.path().join("daemon.log"));

    const N: usize = 2_000;
    let traffic = tokio::spawn({
        let (js, subject) = (js.clone(), stream.subject("h"));
        async move {
            for chunk in 0..N / 50 {
                publish_all(&js, (chunk * 50..(chunk + 1) * 50).map(|i| (subject.clone(), metric(i)))).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
    wait_until(LIMIT, "rows flowing", || async { db.count("timeseries_metrics").await > 200 }).await;
    std::fs::write(&password_file, "pw-two-7731\n").unwrap();
    wait_until(LIMIT, "the pool rebuilt", || async { daemon.log_text().contains("the pool was rebuilt") }).await;
    traffic.await.unwrap();
    wait_until(LIMIT, "every row", || async { db.count("timeseries_metrics").await >= N as i64 }).await;
    wait_drained(&js, &stream, LIMIT).await;
    let row = db
        .client()
        .await
        .query_one("SELECT count(*), count(DISTINCT value) FROM platform.timeseries_metrics", &[])
        .await
        .unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i64>(1)), (N as i64, N as i64));
    assert!(dead_letters(&js, &stream.name).await.is_empty());
    let log = daemon.log_text();
    assert!(!log.contains("pw-one-7731") && !log.contains("pw-two-7731"), "a password reached the log:\n{log}");
    assert_eq!(log.matches("the pool was rebuilt").count(), 1, "{log}");
    daemon.signal("TERM");
}

/// Runs `program args`, returning (success, stdout + stderr); panics with a hint when the tool is missing.
fn tool(program: &str, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e} (run the tests with `make test`, which installs it)"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn deploy_files_pass_their_checkers_and_name_only_exported_metrics() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = TempDir::new("deploy");

    // systemd: the unit verifies cleanly (warnings count) once ExecStart points at a binary that exists here.
    let unit = std::fs::read_to_string(root.join("deploy/systemd/db-event-writer.service")).unwrap();
    for key in [
        "ExecStartPre=/usr/local/bin/db-event-writer validate",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "CapabilityBoundingSet=\n",
        "SystemCallFilter=@system-service",
        "TimeoutStopSec=60",
    ] {
        assert!(unit.contains(key), "unit lacks {key:?}");
    }
    let local = dir.path().join("db-event-writer.service");
    std::fs::write(&local, unit.replace("/usr/local/bin/db-event-writer", &daemon_bin())).unwrap();
    let (ok, out) = tool("systemd-analyze", &["verify", local.to_str().unwrap()]);
    assert!(ok && out.trim().is_empty(), "systemd-analyze verify:\n{out}");

    // Prometheus rules.
    let alerts = root.join("deploy/prometheus/alerts.yaml");
    let (ok, out) = tool("promtool", &["check", "rules", alerts.to_str().unwrap()]);
    assert!(ok && out.contains("SUCCESS"), "promtool:\n{out}");
    // Every rule has unit tests (it fires on its case, once per stream across replicas where it says so).
    let rule_tests = root.join("deploy/prometheus/alerts_test.yaml");
    let (ok, out) = tool("promtool", &["test", "rules", rule_tests.to_str().unwrap()]);
    assert!(ok && out.contains("SUCCESS"), "promtool test rules:\n{out}");
    let tested = std::fs::read_to_string(&rule_tests).unwrap();
    for rule in std::fs::read_to_string(&alerts).unwrap().lines().filter_map(|l| l.trim().strip_prefix("- alert: ")) {
        assert!(tested.contains(&format!("alertname: {rule}\n")), "{rule} has no test in alerts_test.yaml");
    }

    // The Dockerfile passes hadolint (warnings count); the Kubernetes objects pass their schemas (strict: no
    // unknown fields). KEDA's ScaledObject has no schema there; check.py checks its structure.
    let venv = root.join(".venv/bin");
    let dockerfile = root.join("deploy/docker/Dockerfile");
    let (ok, out) = tool(venv.join("hadolint").to_str().unwrap(), &["--no-color", dockerfile.to_str().unwrap()]);
    assert!(ok && out.trim().is_empty(), "hadolint:\n{out}");
    let manifests = root.join("deploy/kubernetes/db-event-writer.yaml");
    let (ok, out) =
        tool(venv.join("kubernetes-validate").to_str().unwrap(), &["--strict", manifests.to_str().unwrap()]);
    assert!(ok, "kubernetes-validate:\n{out}");
    for kind in ["configmap", "deployment", "service", "poddisruptionbudget"] {
        assert!(out.contains(&format!("passed for resource {kind}/")), "{kind} not validated:\n{out}");
    }

    // Kubernetes, compose, Dockerfile, dashboard: structure; the ConfigMap's streams.toml is valid.
    let python = root.join(".venv/bin/python");
    let configmap = dir.path().join("configmap.toml");
    let (ok, out) =
        tool(python.to_str().unwrap(), &[root.join("deploy/check.py").to_str().unwrap(), configmap.to_str().unwrap()]);
    assert!(ok, "deploy/check.py:\n{out}");
    let text = std::fs::read_to_string(&configmap).unwrap();
    let env = |name: &str| Some(format!("{name}-from-env"));
    let text = db_event_writer::config::interpolate(&text, env).unwrap();
    let config = db_event_writer::parse_config(&configmap, &text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.nats.url, "NATS_URL-from-env");
    for file in ["deploy/docker/streams.toml", "streams.toml"] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        db_event_writer::parse_config(Path::new(file), &text).unwrap_or_else(|e| panic!("{e}"));
    }

    // Every metric the alerts and the dashboard query is one the daemon exports.
    let metrics = std::sync::Arc::new(db_event_writer::metrics::Metrics::new());
    metrics.reload("applied");
    // Families appear once they have a series: one stream's handles create them all.
    let otel = db_event_writer::parse_config(
        Path::new("t.toml"),
        "[nats]\nurl = \"nats://x\"\n[database]\nurl = \"postgres://x\"\n[[stream]]\nname = \"s\"\njetstream = \"e\"\n\
         consumer = \"c\"\nsubjects = [\"otel.>\"]\nprocessor = \"otel\"\n",
    )
    .unwrap();
    metrics.stream(db_event_writer::pipeline::series(&otel.streams[0])).dead_lettered("decode");
    metrics.stream_starting("s", "otel");
    let exported = metrics.encode();
    let names: std::collections::BTreeSet<&str> =
        exported.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.split(' ').next()).collect();
    let dashboard = std::fs::read_to_string(root.join("deploy/grafana/db-event-writer.json")).unwrap();
    let rules = std::fs::read_to_string(&alerts).unwrap();
    let mut checked = 0;
    for text in [&dashboard, &rules] {
        for (at, _) in text.match_indices("db_event_writer_") {
            let name: String = text[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            let family = ["_bucket", "_count", "_sum", "_total", "_info"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|base| names.contains(base)))
                .unwrap_or(&name);
            assert!(names.contains(family), "{name} is queried but not exported (exported: {names:?})");
            checked += 1;
        }
    }
    assert!(checked > 15, "only {checked} metric references found");
}
