//! The attacks of the hostile-clients issue, each against a running release daemon with its own nats-server and
//! database, asserting the safe outcome: secrets appear in no output; over-long subjects and ids are refused
//! without the daemon's NATS connection dropping; slow clients under a small descriptor limit neither stop writes
//! nor stay open; a body over what JetStream stores is 413 without Retry-After; batches are bounded in items and
//! memory; a deep payload is a 400, not an abort; no key names another request's message.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(60);

/// A nats-server (with `nats_extra` in its configuration), a fresh database, a migrated telemetry stream (with
/// `stream_extra` keys) and the daemon with its ingest front (`[ingest]` keys `ingest_extra`) answering.
struct Front {
    nats: NatsServer,
    db: TestDb,
    stream: TestStream,
    port: u16,
    daemon: Daemon,
    _dir: TempDir,
}

impl Front {
    async fn start(nats_extra: &str, stream_extra: &str, ingest_extra: &str) -> Front {
        let nats = NatsServer::start_with(nats_extra);
        let db = TestDb::create().await;
        let dir = TempDir::new("front");
        let mut stream = TestStream::telemetry(&unique("front"));
        stream.extra = stream_extra.to_owned();
        let port = free_port();
        migrate(&common::config(&nats.url, &db.url, std::slice::from_ref(&stream))).await;
        let text = config_text(&nats.url, &db.url, std::slice::from_ref(&stream)) + &ingest_section(port, ingest_extra);
        let path = dir.path().join("streams.toml");
        std::fs::write(&path, text).unwrap();
        let daemon = Daemon::spawn(&path, dir.path().join("daemon.log"));
        wait_until(LIMIT, "the ingest listener", || async {
            http_get(port, "/v1/openapi.json").await.is_some_and(|(s, _)| s == 200)
        })
        .await;
        Front { nats, db, stream, port, daemon, _dir: dir }
    }
}

/// A breaker that opens after two failures and connections that give up after a second: outages show quickly.
fn quick_breaker(text: String) -> String {
    text.replace("[daemon]", "[breaker]\nfailures = 2\ncooldown = \"1s\"\n\n[daemon]")
        .replace("pool_size = 4", "pool_size = 4\nconnect_timeout = \"1s\"")
}

/// A JetStream context of a client logged in as `user`.
async fn jetstream_as(nats: &NatsServer, user: &str, password: &str) -> async_nats::jetstream::Context {
    let client = async_nats::ConnectOptions::with_user_and_password(user.into(), password.into())
        .connect(nats.url.as_str())
        .await
        .expect("connect with a password");
    async_nats::jetstream::new(client)
}

fn ingest_section(port: u16, extra: &str) -> String {
    format!("\n[ingest]\nlisten = \"127.0.0.1:{port}\"\n{extra}\n")
}

async fn post(port: u16, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, http::HeaderMap, Value) {
    let (status, headers, text) = http_request(port, "POST", path, headers, body.to_vec()).await;
    (status, headers, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Waits for `what`, failing with the end of the daemon's log.
async fn wait_logged<F, Fut>(daemon: &Daemon, what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    if !wait_for(LIMIT, check).await {
        let log = daemon.log_text();
        let tail: Vec<&str> = log.lines().rev().take(60).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        panic!("timed out after {LIMIT:?} waiting for {what}; the daemon's log ends:\n{}", tail.join("\n"));
    }
}

fn alive(daemon: &mut Daemon) -> bool {
    daemon.child.try_wait().expect("try_wait").is_none()
}

/// Every way a secret could be spelled in an output: as written and percent-encoded.
fn spellings(secret: &str) -> Vec<String> {
    let encoded: String = secret
        .bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect();
    vec![secret.to_owned(), encoded]
}

fn assert_no_secret(what: &str, text: &str, secrets: &[&str]) {
    for secret in secrets {
        for spelling in spellings(secret) {
            assert!(!text.contains(&spelling), "{what} shows the secret {spelling:?}:\n{text}");
        }
    }
}

/// Attack 1: secrets in every supported place (a PostgreSQL URL password with `/` and `?`, a libpq key=value
/// password, a NATS password with `/` and `?` in the second URL of a list), grepped out of `validate` (good and
/// broken files), `status`, `status --json`, the daemon's debug log through a NATS restart and a database outage,
/// `/metrics` and the dead letters' headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_output_shows_a_secret_through_reconnects_outages_and_dead_letters() {
    const PG: &str = "PgS3cr/et?Slash";
    const KV: &str = "KvS3cret";
    const NATS: &str = "N4ts/Pa?ss";
    let secrets = [PG, KV, NATS];
    let mut nats = NatsServer::start_with(&format!("authorization {{ user: dbew, password: \"{NATS}\" }}"));
    let db = TestDb::create().await;
    let dir = TempDir::new("secrets");
    let stream = TestStream::telemetry(&unique("sec"));
    let proxy = Proxy::start(5432).await;
    let pg_url = format!("postgres://postgres:{PG}@127.0.0.1:{}/{}", proxy.port, db.name);
    let kv_url = format!("host=127.0.0.1 port={} user=postgres password={KV} dbname={}", proxy.port, db.name);
    let dead_port = free_port();
    let nats_url = format!("nats://127.0.0.1:{dead_port},nats://dbew:{NATS}@127.0.0.1:{}", nats.port);
    let http_port = free_port();
    let text = quick_breaker(config_text(&nats_url, &pg_url, std::slice::from_ref(&stream)))
        + &format!("\n[http]\nlisten = \"127.0.0.1:{http_port}\"\n");
    migrate(&common::config(
        &nats.url.replace("nats://", &format!("nats://dbew:{NATS}@")),
        &db.url,
        std::slice::from_ref(&stream),
    ))
    .await;

    let path = dir.path().join("streams.toml");
    std::fs::write(&path, &text).unwrap();
    let kv_path = dir.path().join("kv.toml");
    std::fs::write(&kv_path, config_text(&nats_url, &kv_url, std::slice::from_ref(&stream))).unwrap();
    // A broken file: its error names the line of the secret URL's neighbour.
    let broken_path = dir.path().join("broken.toml");
    std::fs::write(&broken_path, text.replacen("pool_size = 4", "pool_sise = 4", 1)).unwrap();
    let mut outputs = Vec::new();
    for config in [&path, &kv_path, &broken_path] {
        let config = config.to_str().unwrap();
        let (code, out, err) = run_cli(&["validate", "--config", config]);
        outputs.push((format!("validate {config} (exit {code})"), out + &err));
    }
    assert!(outputs[2].1.contains("pool_sise"), "the broken file is refused: {}", outputs[2].1);

    let mut daemon = Daemon::spawn_logging(&path, dir.path().join("daemon.log"), "debug");
    let js = jetstream_as(&nats, "dbew", NATS).await;
    wait_logged(&daemon, "the consumer", || async { try_consumer_info(&js, &stream).await.is_some() }).await;
    publish_all(&js, (0..50).map(|i| (stream.subject("h"), metric(i)))).await;
    publish_all(&js, [(stream.subject("h"), b"not json".to_vec())]).await;
    wait_until(LIMIT, "50 rows", || async { db.count("timeseries_metrics").await == 50 }).await;
    for config in [&path, &kv_path] {
        let config = config.to_str().unwrap();
        for args in [vec!["status", "--config", config], vec!["status", "--json", "--config", config]] {
            let (code, out, err) = run_cli(&args);
            outputs.push((format!("{} (exit {code})", args.join(" ")), out + &err));
        }
    }
    assert!(outputs[3].1.contains(&stream.name), "status reports the stream: {}", outputs[3].1);

    // A NATS outage: the reconnect loop logs every attempt at debug level.
    nats.restart(Duration::from_secs(3));
    let js = jetstream_as(&nats, "dbew", NATS).await;
    publish_all(&js, (50..100).map(|i| (stream.subject("h"), metric(i)))).await;
    wait_until(LIMIT, "100 rows", || async { db.count("timeseries_metrics").await == 100 }).await;
    // A database outage: connection errors, the breaker, the prober.
    proxy.cut();
    publish_all(&js, (100..150).map(|i| (stream.subject("h"), metric(i)))).await;
    wait_logged(&daemon, "the breaker opens", || async { daemon.log_text().contains("breaker open") }).await;
    proxy.restore();
    wait_until(LIMIT, "150 rows", || async { db.count("timeseries_metrics").await == 150 }).await;

    let letters = dead_letters(&js, &stream.name).await;
    assert_eq!(letters.len(), 1);
    let headers: String = letters
        .iter()
        .flat_map(|l| {
            l.headers
                .iter()
                .map(|(k, v)| format!("{k}: {}\n", v.iter().map(|x| x.as_str()).collect::<Vec<_>>().join(", ")))
        })
        .collect();
    outputs.push(("the dead letter's headers".into(), headers));
    let (code, _, metrics) = http_request(http_port, "GET", "/metrics", &[], Vec::new()).await;
    assert!(metrics.contains("db_event_writer_rows_committed_total"), "{code}: {metrics}");
    outputs.push(("/metrics".into(), metrics));
    daemon.signal("TERM");
    assert!(daemon.wait_exit(LIMIT).success());
    let log = daemon.log_text();
    assert!(log.contains("NATS disconnected") && log.contains("breaker open"), "both outages are in the log:\n{log}");
    outputs.push(("the daemon's debug log".into(), log));
    for (what, text) in &outputs {
        assert_no_secret(what, text, &secrets);
    }
}

/// The server's connections named `db-event-writer` (its monitoring endpoint's `/connz`): their ids.
async fn daemon_connections(monitor: u16) -> Vec<u64> {
    let (_, body) = http_get(monitor, "/connz?limit=1024").await.expect("nats monitoring answers");
    let connz: Value = serde_json::from_str(&body).unwrap();
    connz["connections"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["name"].as_str() == Some("db-event-writer"))
        .filter_map(|c| c["cid"].as_u64())
        .collect()
}

/// Attack 2: subjects and message ids longer than the server's control line, many and huge headers, a long
/// key, each refused with a 4xx, again and again; the daemon's NATS connection stays the same one throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_long_subjects_and_ids_are_refused_and_the_nats_connection_never_drops() {
    let monitor = free_port();
    let Front { nats: _nats, db, stream, port, mut daemon, _dir } =
        Front::start(&format!("http: \"127.0.0.1:{monitor}\""), "", "").await;
    let before = daemon_connections(monitor).await;
    assert_eq!(before.len(), 1, "one connection: {before:?}");

    let long_subject = format!("/v1/events/{}", stream.subject(&"a".repeat(4070)));
    let long_id = format!("/v1/events/{}.1", "b".repeat(5000));
    let many_headers: Vec<(String, String)> = (0..100).map(|i| (format!("x-h{i}"), "v".into())).collect();
    let many: Vec<(&str, &str)> = many_headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let huge = "h".repeat(20_000);
    let long_key = "k".repeat(5_000);
    let good = format!("/v1/events/{}", stream.subject("h"));
    for _ in 0..5 {
        let (status, _, e) = post(port, &long_subject, &[], &metric(1)).await;
        assert_eq!(status, 400, "{e}");
        assert!(e["error"].as_str().unwrap().contains("at most 256"), "{e}");
        let (status, _, _) = http_request(port, "GET", &long_id, &[], Vec::new()).await;
        assert_eq!(status, 404);
        let (status, _, _) = http_request(port, "POST", &good, &many, metric(1)).await;
        assert_eq!(status, 431, "over {} headers", 64);
        let (status, _, _) = http_request(port, "POST", &good, &[("x-huge", &huge)], metric(1)).await;
        assert_eq!(status, 431, "over 16 KiB of headers");
        let (status, _, e) = post(port, &good, &[("idempotency-key", &long_key)], &metric(1)).await;
        assert_eq!(status, 400, "{e}");
        let batch = format!("/v1/events/{}/batch", stream.subject(&"a".repeat(4070)));
        let (status, _, _) = post(port, &batch, &[], b"[{}]").await;
        assert_eq!(status, 400);
    }
    // Still the same connection, and it still works.
    let (status, _, ok) = post(port, &good, &[], &metric(7)).await;
    assert_eq!(status, 202, "{ok}");
    wait_until(LIMIT, "the good event's row", || async { db.count("timeseries_metrics").await == 1 }).await;
    assert_eq!(daemon_connections(monitor).await, before, "the daemon's NATS connection was replaced");
    assert!(alive(&mut daemon));
    let log = daemon.log_text();
    assert!(!log.contains("NATS disconnected") && !log.contains("maximum control line"), "{log}");
}

/// Attack 3: 300 connections that send a request line and then a byte every 10 s, against a daemon whose
/// descriptor limit is 256, while the database connections are cut and must be opened again: telemetry published
/// meanwhile is written, and every slow connection is closed within 60 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_under_a_small_descriptor_limit_neither_stop_writes_nor_stay_open() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let nats = NatsServer::start();
    let db = TestDb::create().await;
    let dir = TempDir::new("slowloris");
    let stream = TestStream::telemetry(&unique("slow"));
    let proxy = Proxy::start(5432).await;
    let port = free_port();
    migrate(&common::config(&nats.url, &db.url, std::slice::from_ref(&stream))).await;
    let text =
        config_text(&nats.url, &proxy.url_for(&db.url), std::slice::from_ref(&stream)) + &ingest_section(port, "");
    let path = dir.path().join("streams.toml");
    std::fs::write(&path, text).unwrap();
    let log = dir.path().join("daemon.log");
    let child = Command::new("sh")
        .args(["-c", "ulimit -n 256 && exec \"$0\" run --config \"$1\""])
        .arg(daemon_bin())
        .arg(&path)
        .env("RUST_LOG", "info,db_event_writer=debug")
        .env_remove("NATS_URL")
        .env_remove("DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut daemon = Daemon { child, log };
    wait_until(LIMIT, "the ingest listener", || async {
        http_get(port, "/v1/openapi.json").await.is_some_and(|(s, _)| s == 200)
    })
    .await;
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", daemon.child.id())).unwrap();
    assert!(limits.lines().any(|l| l.starts_with("Max open files") && l.contains(" 256 ")), "{limits}");

    let js = nats.jetstream().await;
    wait_for_consumer(&js, &stream, LIMIT).await;
    publish_all(&js, (0..10).map(|i| (stream.subject("h"), metric(i)))).await;
    wait_until(LIMIT, "the first rows", || async { db.count("timeseries_metrics").await == 10 }).await;

    let started = Instant::now();
    let slow: Vec<_> = (0..300)
        .map(|_| {
            tokio::spawn(async move {
                let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
                conn.write_all(b"POST /v1/events/x HTTP/1.1\r\nHost: 127.0.0.1\r\n").await.unwrap();
                let mut buf = [0u8; 1024];
                loop {
                    tokio::select! {
                        read = conn.read(&mut buf) => match read {
                            Ok(0) | Err(_) => return started.elapsed(),
                            Ok(_) => {}
                        },
                        _ = tokio::time::sleep(Duration::from_secs(10)) => {
                            if conn.write_all(b"X").await.is_err() {
                                return started.elapsed();
                            }
                        }
                    }
                }
            })
        })
        .collect();
    // The pool must open new connections while the slow clients hold theirs.
    proxy.cut();
    let js = nats.jetstream().await;
    wait_logged(&daemon, "the consumer", || async { try_consumer_info(&js, &stream).await.is_some() }).await;
    publish_all(&js, (0..500).map(|i| (stream.subject("h"), metric(i)))).await;
    wait_logged(&daemon, "the breaker opens", || async { daemon.log_text().contains("breaker open") }).await;
    proxy.restore();
    wait_until(LIMIT, "500 rows", || async { db.count("timeseries_metrics").await == 500 }).await;
    let mut longest = Duration::ZERO;
    for task in slow {
        let closed = tokio::time::timeout(Duration::from_secs(90), task).await.expect("closed by the daemon").unwrap();
        longest = longest.max(closed);
    }
    assert!(longest < Duration::from_secs(60), "the last slow connection was closed after {longest:?}");
    assert!(alive(&mut daemon));
    let log = daemon.log_text();
    assert!(!log.contains("os error 24"), "no descriptor ran out:\n{log}");
    // And the front still answers.
    let (status, _, ok) = post(port, &format!("/v1/events/{}", stream.subject("h")), &[], &metric(900)).await;
    assert_eq!(status, 202, "{ok}");
}

/// Attack 4: a body within `max_body` but over the server's `max_payload` once the daemon's headers are added,
/// and one plainly over it: 413 without Retry-After (retrying cannot help); a body that fits is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_what_jetstream_stores_is_413_without_retry_after() {
    let Front { nats: _nats, db, stream, port, mut daemon, _dir } =
        Front::start("max_payload: 65536", "", "max_body = 1048576").await;
    let url = format!("/v1/events/{}", stream.subject("h"));
    let padded = |len: usize| {
        let body = String::from_utf8(metric(1)).unwrap();
        let pad = len - body.len() - r#","pad":"""#.len();
        body.replacen('{', &format!(r#"{{"pad":"{}","#, "p".repeat(pad)), 1).into_bytes()
    };
    for len in [65_536 - 8, 65_536, 200_000] {
        let body = padded(len);
        assert_eq!(body.len(), len);
        let (status, headers, e) = post(port, &url, &[("idempotency-key", "big")], &body).await;
        assert_eq!(status, 413, "{len} bytes: {e}");
        assert!(headers.get("retry-after").is_none(), "{len} bytes: {headers:?}");
        assert!(e["error"].as_str().unwrap().contains("max_payload 65536"), "{e}");
    }
    let (status, _, ok) = post(port, &url, &[("idempotency-key", "fits")], &padded(60_000)).await;
    assert_eq!(status, 202, "{ok}");
    wait_until(LIMIT, "the row", || async { db.count("timeseries_metrics").await == 1 }).await;
    assert!(alive(&mut daemon));
}

/// Attack 7: a 1 MiB batch of 349,525 `{}` lines is refused before anything is published; a batch at the item
/// limit (1,000 items of ~1 KiB) is published, stored, and keeps the daemon's peak RSS under 300 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_bounded_in_items_and_memory() {
    let Front { nats, db, stream, port, mut daemon, _dir } = Front::start("", "", "max_body = 1048576").await;
    let url = format!("/v1/events/{}/batch", stream.subject("h"));
    let flood = "{}\n".repeat(349_525);
    let (status, headers, e) = post(port, &url, &[], flood.as_bytes()).await;
    assert_eq!(status, 413, "{e}");
    assert!(headers.get("retry-after").is_none());
    assert!(e["error"].as_str().unwrap().contains("max_batch_items is 1000"), "{e}");
    let over: String = (0..1001).map(|i| String::from_utf8(metric(i)).unwrap().replace('\n', " ") + "\n").collect();
    assert_eq!(post(port, &url, &[], over.as_bytes()).await.0, 413);
    let js = nats.jetstream().await;
    let info = js.get_stream(&stream.jetstream).await.unwrap().info().await.unwrap().state.messages;
    assert_eq!(info, 0, "nothing of a refused batch was published");

    let pad = "x".repeat(800);
    let full: String = (0..1000)
        .map(|i| {
            String::from_utf8(metric(i)).unwrap().replace('\n', " ").replacen('{', &format!(r#"{{"pad":"{pad}","#), 1)
                + "\n"
        })
        .collect();
    assert!(full.len() < 1 << 20);
    let (status, _, result) = post(port, &url, &[("idempotency-key", "full")], full.as_bytes()).await;
    assert_eq!(status, 202, "{result}");
    assert_eq!((result["accepted"].as_u64(), result["rejected"].as_u64()), (Some(1000), Some(0)));
    wait_until(LIMIT, "1,000 rows", || async { db.count("timeseries_metrics").await == 1000 }).await;
    let peak = peak_rss_mib(daemon.child.id());
    assert!(peak < 300.0, "peak RSS {peak:.0} MiB");
    assert!(alive(&mut daemon));
}

/// Attack 5: with `validate = true`, a 20 KB POST whose tag value is 10,000 nested arrays is a 400 (and so is the
/// same inside a batch); the daemon keeps running and takes the next event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deeply_nested_payload_is_400_and_the_daemon_keeps_running() {
    let Front { nats: _nats, db, stream, port, mut daemon, _dir } = Front::start("", "validate = true\n", "").await;
    let deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
    let body = String::from_utf8(metric(1)).unwrap().replace(r#""host": "h1""#, &format!(r#""host": {deep}"#));
    assert!(body.len() > 20_000);
    let url = format!("/v1/events/{}", stream.subject("h"));
    let (status, _, e) = post(port, &url, &[], body.as_bytes()).await;
    assert_eq!(status, 400, "{e}");
    let (status, _, _) = post(port, &format!("{url}/batch"), &[], body.replace('\n', " ").as_bytes()).await;
    assert!(status == 400 || status == 202, "a batch answers, per item or as a whole: {status}");
    assert!(alive(&mut daemon), "the daemon survived");
    let (status, _, ok) = post(port, &url, &[], &metric(2)).await;
    assert_eq!(status, 202, "{ok}");
    wait_until(LIMIT, "the good row", || async { db.count("timeseries_metrics").await == 1 }).await;
}

/// Attack 6: a batch posted with key `k`, then single events with keys `k-1` and `b:1:k` (the item's id as
/// written now): both stored as events of their own; retrying the batch with `k` is still a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_idempotency_key_names_another_requests_message() {
    let Front { nats: _nats, db, stream, port, mut daemon, _dir } = Front::start("", "", "").await;
    let url = format!("/v1/events/{}", stream.subject("h"));
    let batch = format!("[{}, {}]", String::from_utf8(metric(0)).unwrap(), String::from_utf8(metric(1)).unwrap());
    let (status, _, first) = post(port, &format!("{url}/batch"), &[("idempotency-key", "k")], batch.as_bytes()).await;
    assert_eq!((status, first["accepted"].as_u64()), (202, Some(2)), "{first}");
    for (i, key) in [(2, "k-1"), (3, "b:1:k"), (4, "k-0")] {
        let (status, _, single) = post(port, &url, &[("idempotency-key", key)], &metric(i)).await;
        assert_eq!(status, 202, "{single}");
        assert_eq!(single["duplicate"].as_bool(), Some(false), "key {key:?} named another request's message: {single}");
    }
    let (_, _, again) = post(port, &format!("{url}/batch"), &[("idempotency-key", "k")], batch.as_bytes()).await;
    assert_eq!(again["items"][0]["duplicate"].as_bool(), Some(true), "{again}");
    assert_eq!(again["items"][1]["sequence"], first["items"][1]["sequence"]);
    wait_until(LIMIT, "5 rows", || async { db.count("timeseries_metrics").await == 5 }).await;
    assert!(alive(&mut daemon));
}
