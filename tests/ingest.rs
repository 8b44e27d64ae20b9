//! The HTTP ingest front against a real nats-server and PostgreSQL: 202 only once stored, idempotent retries,
//! routing and validation refusals, body limits, batches with partial failures, status from accepted to persisted
//! or dead-lettered, and 503 while NATS is away.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(60);

struct Front {
    port: u16,
}

impl Front {
    /// Writes `text` as streams.toml in `dir`, starts the daemon and waits until the front answers.
    async fn start(dir: &TempDir, text: &str, port: u16) -> (Daemon, Front) {
        let path = dir.path().join(format!("{port}.toml"));
        std::fs::write(&path, text).unwrap();
        let daemon = Daemon::spawn(&path, dir.path().join(format!("{port}.log")));
        wait_until(LIMIT, "the ingest listener", || async {
            http_get(port, "/v1/openapi.json").await.is_some_and(|(s, _)| s == 200)
        })
        .await;
        (daemon, Front { port })
    }

    async fn post(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, Value) {
        let (status, _, text) = http_request(self.port, "POST", path, headers, body.to_vec()).await;
        (status, serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text}")))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let (status, _, text) = http_request(self.port, "GET", path, &[], Vec::new()).await;
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn status_of(&self, id: &str) -> String {
        let (_, v) = self.get(&format!("/v1/events/{id}")).await;
        v["status"].as_str().unwrap_or_default().to_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posted_events_are_stored_once_refused_clearly_and_can_be_followed_to_their_row() {
    let mut nats = NatsServer::start();
    let db = TestDb::create().await;
    let dir = TempDir::new("ingest");
    let mut telemetry = TestStream::telemetry(&unique("in"));
    telemetry.extra = "validate = true\n".into();
    let events = TestStream::of("events", &unique("ev"));
    let streams = [telemetry.clone(), events.clone()];
    migrate(&common::config(&nats.url, &db.url, &streams)).await;
    let port = free_port();
    let text = config_text(&nats.url, &db.url, &streams)
        + &format!("\n[ingest]\nlisten = \"127.0.0.1:{port}\"\nmax_body = 4096\n");
    let (daemon, front) = Front::start(&dir, &text, port).await;
    let subject = telemetry.subject("host1");
    let url = format!("/v1/events/{subject}");

    // One event: 202 with where it was stored; the same Idempotency-Key again is the same message, not a new one.
    let (status, first) = front.post(&url, &[("idempotency-key", "order-17")], &metric(1)).await;
    assert_eq!(status, 202, "{first}");
    assert_eq!(
        (first["stream"].as_str(), first["duplicate"].as_bool()),
        (Some(telemetry.jetstream.as_str()), Some(false))
    );
    let id = first["message_id"].as_str().unwrap().to_owned();
    assert_eq!(id, format!("{}.{}", telemetry.jetstream, first["sequence"]));
    let (status, again) = front.post(&url, &[("idempotency-key", "order-17")], &metric(1)).await;
    assert_eq!(status, 202);
    assert_eq!((again["sequence"].clone(), again["duplicate"].as_bool()), (first["sequence"].clone(), Some(true)));
    let (status, second) = front.post(&url, &[], &metric(2)).await;
    assert_eq!(status, 202, "{second}");
    wait_until(LIMIT, "2 rows", || async { db.count("timeseries_metrics").await == 2 }).await;
    wait_until(LIMIT, "persisted", || async { front.status_of(&id).await == "persisted" }).await;
    let (status, fate) = front.get(&format!("/v1/events/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!((fate["message_id"].as_str(), fate["table"].as_str()), (Some(id.as_str()), Some("timeseries_metrics")));
    assert!(fate["committed_at"].as_str().is_some_and(|t| t.ends_with('Z')), "{fate}");

    // Refusals: a subject no stream consumes (naming what is allowed), a wildcard, a payload the validating
    // stream's processor refuses, a body over max_body, a malformed Idempotency-Key.
    let (status, e) = front.post("/v1/events/nowhere.at.all", &[], b"{}").await;
    assert_eq!(status, 400);
    let e = e["error"].as_str().unwrap();
    assert!(e.contains("no [[stream]] consumes \"nowhere.at.all\"") && e.contains(&telemetry.subjects[0]), "{e}");
    assert_eq!(
        front.post(&format!("/v1/events/{}.*", telemetry.subjects[0].trim_end_matches(".>")), &[], b"{}").await.0,
        400
    );
    let (status, e) = front.post(&url, &[], b"not json").await;
    assert_eq!(status, 400);
    assert!(e["error"].as_str().unwrap().contains("the telemetry processor refuses it"), "{e}");
    let (status, _, _) = http_request(port, "POST", &url, &[], vec![b' '; 5000]).await;
    assert_eq!(status, 413);
    let long_key = "k".repeat(201);
    assert_eq!(front.post(&url, &[("idempotency-key", &long_key)], &metric(3)).await.0, 400);

    // Without validation a bad payload is accepted, then dead-lettered: the status says so, with the reason.
    let (status, bad) = front.post(&format!("/v1/events/{}", events.subject("x")), &[], b"[1,2]").await;
    assert_eq!(status, 202, "{bad}");
    let bad_id = bad["message_id"].as_str().unwrap().to_owned();
    wait_until(LIMIT, "dead-lettered", || async { front.status_of(&bad_id).await == "dead_lettered" }).await;
    let (_, fate) = front.get(&format!("/v1/events/{bad_id}")).await;
    assert_eq!(fate["class"].as_str(), Some("decode"));
    assert!(!fate["reason"].as_str().unwrap_or_default().is_empty(), "{fate}");

    // A batch: one result per item, the refused one with its own status; the rest stored.
    let batch_url = format!("/v1/events/{subject}/batch");
    let body =
        format!("[{}, \"nope\", {}]", String::from_utf8(metric(10)).unwrap(), String::from_utf8(metric(11)).unwrap());
    let (status, result) = front.post(&batch_url, &[("idempotency-key", "batch-1")], body.as_bytes()).await;
    assert_eq!(status, 202, "{result}");
    assert_eq!((result["accepted"].as_u64(), result["rejected"].as_u64()), (Some(2), Some(1)));
    assert_eq!(result["items"][1]["status"].as_u64(), Some(400));
    assert_eq!(result["items"][2]["duplicate"].as_bool(), Some(false));
    // The same batch again (NDJSON this time, same key): every item a duplicate, nothing new.
    let line = |i: usize| serde_json::from_slice::<Value>(&metric(i)).unwrap().to_string();
    let ndjson = format!("{}\n\"nope\"\n{}\n", line(10), line(11));
    let (_, again) = front.post(&batch_url, &[("idempotency-key", "batch-1")], ndjson.as_bytes()).await;
    assert_eq!(again["items"][0]["duplicate"].as_bool(), Some(true), "{again}");
    assert_eq!(again["items"][2]["sequence"], result["items"][2]["sequence"]);
    assert_eq!(front.post(&batch_url, &[], b"[]").await.0, 400);
    wait_until(LIMIT, "4 rows", || async { db.count("timeseries_metrics").await == 4 }).await;

    // Status of what this front never saw: 404, whether nonsense or a message published straight to NATS.
    assert_eq!(front.get("/v1/events/nonsense").await.0, 404);
    assert_eq!(front.get(&format!("/v1/events/{}.999999", telemetry.jetstream)).await.0, 404);
    let js = nats.jetstream().await;
    let direct = js.publish(telemetry.subject("direct"), metric(50).into()).await.unwrap().await.unwrap();
    assert_eq!(front.get(&format!("/v1/events/{}.{}", direct.stream, direct.sequence)).await.0, 404);

    // The description served is the one in the source.
    let (status, doc) = front.get("/v1/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(doc, serde_json::from_str::<Value>(db_event_writer::ingest::OPENAPI).unwrap());

    // NATS away: 503 (never 202); back: 202 again.
    let outage = tokio::task::spawn_blocking(move || {
        nats.restart(Duration::from_secs(3));
        nats
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (status, e) = front.post(&url, &[], &metric(60)).await;
    assert_eq!(status, 503, "{e}");
    let _nats = outage.await.unwrap();
    wait_until(LIMIT, "202 after NATS is back", || async { front.post(&url, &[], &metric(61)).await.0 == 202 }).await;
    wait_until(LIMIT, "the rows of the direct and the last messages", || async {
        db.count("timeseries_metrics").await == 6
    })
    .await;
    daemon.signal("TERM");
    let mut daemon = daemon;
    assert!(daemon.wait_exit(Duration::from_secs(30)).success(), "{}", daemon.log_text());
}

/// `db-event-writer hash-token`, fed `token` on standard input.
fn hash_token(token: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new(daemon_bin())
        .arg("hash-token")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(format!("{token}\n").as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_tokens_limit_who_posts_where_and_how_fast_and_reload_without_a_restart() {
    const ADMIN: &str = "adm-t0ken-4471";
    const EVENTS_ONLY: &str = "evt-t0ken-9902";
    const LATER: &str = "new-t0ken-1288";
    let nats = NatsServer::start();
    let db = TestDb::create().await;
    let dir = TempDir::new("ingest_auth");
    let telemetry = TestStream::telemetry(&unique("auth"));
    let events = TestStream::of("events", &unique("aev"));
    let streams = [telemetry.clone(), events.clone()];
    migrate(&common::config(&nats.url, &db.url, &streams)).await;
    let tokens_file = dir.path().join("tokens.toml");
    let write_tokens = |entries: &[(&str, &str, &str)]| {
        let text: String = entries
            .iter()
            .map(|(name, token, rest)| {
                format!("[[token]]\nname = \"{name}\"\nsha256 = \"{}\"\n{rest}\n", hash_token(token))
            })
            .collect();
        std::fs::write(&tokens_file, text).unwrap();
    };
    let events_rights = format!("subjects = [\"{}\"]\nrate = 0.5\nburst = 2\n", events.subjects[0]);
    write_tokens(&[("admin", ADMIN, ""), ("events-feed", EVENTS_ONLY, &events_rights)]);
    let (port, metrics_port) = (free_port(), free_port());
    let text = config_text(&nats.url, &db.url, &streams).replacen(
        "[daemon]",
        &format!("[http]\nlisten = \"127.0.0.1:{metrics_port}\"\n\n[daemon]"),
        1,
    ) + &format!("\n[ingest]\nlisten = \"127.0.0.1:{port}\"\ntokens_file = \"{}\"\n", tokens_file.display());
    let (daemon, front) = Front::start(&dir, &text, port).await;
    let bearer = |t: &str| format!("Bearer {t}");
    let telemetry_url = format!("/v1/events/{}", telemetry.subject("h"));
    let events_url = format!("/v1/events/{}", events.subject("x"));
    let event = |i: usize| {
        format!(
            r#"{{"id":"00000000-0000-4000-8000-{i:012x}","time":"2026-05-01T12:00:00Z","class_uid":1008,"category_uid":1,"type_uid":100801,"activity_id":1,"severity_id":2,"message":"e","metadata":{{"version":"1.7.0"}}}}"#
        )
        .into_bytes()
    };

    // No token, a wrong one: 401 with the challenge.
    let (status, headers, _) = http_request(port, "POST", &telemetry_url, &[], metric(1)).await;
    assert_eq!((status, headers.get("www-authenticate").map(|v| v.to_str().unwrap())), (401, Some("Bearer")));
    assert_eq!(front.post(&telemetry_url, &[("authorization", &bearer("nope"))], &metric(1)).await.0, 401);
    assert_eq!(front.get("/v1/events/x.1").await.0, 401);
    // The admin token posts anywhere; the events token only to its subjects (403 names them).
    let (status, v) = front.post(&telemetry_url, &[("authorization", &bearer(ADMIN))], &metric(1)).await;
    assert_eq!(status, 202, "{v}");
    let (status, e) = front.post(&telemetry_url, &[("authorization", &bearer(EVENTS_ONLY))], &metric(2)).await;
    assert_eq!(status, 403);
    assert!(e["error"].as_str().unwrap().contains(&events.subjects[0]), "{e}");
    // Its rate: a burst of 2, then 429 with the limit in the body and Retry-After.
    for i in 0..2 {
        let (status, v) = front.post(&events_url, &[("authorization", &bearer(EVENTS_ONLY))], &event(i)).await;
        assert_eq!(status, 202, "{v}");
    }
    let (status, headers, body) =
        http_request(port, "POST", &events_url, &[("authorization", &bearer(EVENTS_ONLY))], event(3)).await;
    assert_eq!(status, 429, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((v["limit"]["rate_per_second"].as_f64(), v["limit"]["burst"].as_f64()), (Some(0.5), Some(2.0)));
    assert!(headers.get("retry-after").is_some());
    // A batch counts each item.
    let batch = format!("[{}, {}]", String::from_utf8(event(4)).unwrap(), String::from_utf8(event(5)).unwrap());
    let batch_url = format!("{events_url}/batch");
    assert_eq!(front.post(&batch_url, &[("authorization", &bearer(EVENTS_ONLY))], batch.as_bytes()).await.0, 429);
    wait_until(LIMIT, "3 rows", || async {
        db.count("timeseries_metrics").await == 1 && db.count("ocsf_events").await == 2
    })
    .await;

    // The file changes: the old admin token stops working and the new one works, without a restart.
    write_tokens(&[("admin", LATER, "")]);
    wait_until(LIMIT, "the new token in force", || async {
        front.post(&telemetry_url, &[("authorization", &bearer(LATER))], &metric(7)).await.0 == 202
    })
    .await;
    assert_eq!(front.post(&telemetry_url, &[("authorization", &bearer(ADMIN))], &metric(8)).await.0, 401);
    // A broken file is refused and the tokens in force kept.
    std::fs::write(&tokens_file, "[[token]]\nname = \"x\"\nsha256 = \"short\"\n").unwrap();
    wait_until(LIMIT, "the broken file reported", || async {
        daemon.log_text().contains("ingest tokens file rejected")
    })
    .await;
    assert_eq!(front.post(&telemetry_url, &[("authorization", &bearer(LATER))], &metric(9)).await.0, 202);

    // Every answer is counted by route and status.
    let (_, metrics) = http_get(metrics_port, "/metrics").await.unwrap();
    let count = |route: &str, status: u16| {
        sample(&metrics, &format!("db_event_writer_ingest_requests_total{{route=\"{route}\",status=\"{status}\"}}"))
    };
    // (401s: the two refusals above, the old token after the reload, and the new one until the reload.)
    assert!(count("event", 401).is_some_and(|n| n >= 3.0), "{metrics}");
    assert_eq!((count("status", 401), count("event", 403), count("batch", 429)), (Some(1.0), Some(1.0), Some(1.0)));
    assert!(count("event", 202).is_some_and(|n| n >= 5.0), "{metrics}");

    daemon.signal("TERM");
    let mut daemon = daemon;
    assert!(daemon.wait_exit(Duration::from_secs(30)).success());
    let log = daemon.log_text();
    for secret in [ADMIN, EVENTS_ONLY, LATER] {
        assert!(!log.contains(secret), "a token reached the log:\n{log}");
    }
}

/// A POST over TLS trusting `ca`, with a client certificate when given: the status, or the handshake's error.
async fn https_post(
    port: u16,
    ca: &std::path::Path,
    client: Option<(&std::path::Path, &std::path::Path)>,
    path: &str,
    body: Vec<u8>,
) -> Result<u16, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(cert).unwrap().map(Result::unwrap).collect(),
                PrivateKeyDer::from_pem_file(key).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| e.to_string())?;
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tls = connector.connect(ServerName::try_from("127.0.0.1").unwrap(), tcp).await.map_err(|e| e.to_string())?;
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await.map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let request = http::Request::post(path)
        .header("host", "127.0.0.1")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    // With TLS 1.3 a refused client certificate shows up at the first read, not in the handshake.
    send.send_request(request).await.map(|r| r.status().as_u16()).map_err(|e| format!("{e:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_speaks_tls_and_can_require_client_certificates() {
    let nats = NatsServer::start();
    let db = TestDb::create().await;
    let dir = TempDir::new("ingest_tls");
    let pki = Pki::generate(dir.path(), "in");
    let other = Pki::generate(dir.path(), "other");
    let telemetry = TestStream::telemetry(&unique("tls"));
    migrate(&common::config(&nats.url, &db.url, std::slice::from_ref(&telemetry))).await;
    let url = format!("/v1/events/{}", telemetry.subject("h"));
    for (case, client_ca) in [("server certificate only", None), ("client certificates required", Some(&pki.ca))] {
        let port = free_port();
        let mut tls = format!(
            "\n[ingest.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            pki.server_cert.display(),
            pki.server_key.display()
        );
        if let Some(ca) = client_ca {
            tls.push_str(&format!("client_ca_file = \"{}\"\n", ca.display()));
        }
        let text = config_text(&nats.url, &db.url, std::slice::from_ref(&telemetry))
            + &format!("\n[ingest]\nlisten = \"127.0.0.1:{port}\"\n{tls}");
        let path = dir.path().join(format!("{port}.toml"));
        std::fs::write(&path, text).unwrap();
        let daemon = Daemon::spawn(&path, dir.path().join(format!("{port}.log")));
        let client = Some((pki.client_cert.as_path(), pki.client_key.as_path()));
        wait_until(LIMIT, "the TLS listener", || async {
            https_post(port, &pki.ca, client, &url, metric(0)).await.is_ok_and(|s| s == 202)
        })
        .await;
        // Plain HTTP to a TLS port gets no HTTP answer.
        assert!(http_get(port, "/v1/openapi.json").await.is_none_or(|(s, _)| s != 200), "{case}");
        // A client that does not trust the server's CA refuses it.
        assert!(https_post(port, &other.ca, client, &url, metric(1)).await.is_err(), "{case}");
        let without = https_post(port, &pki.ca, None, &url, metric(2)).await;
        let foreign = https_post(port, &pki.ca, Some((&other.client_cert, &other.client_key)), &url, metric(3)).await;
        if client_ca.is_some() {
            assert!(without.is_err(), "{case}: no client certificate: {without:?}");
            assert!(foreign.is_err(), "{case}: another CA's certificate: {foreign:?}");
        } else {
            assert_eq!((without, foreign), (Ok(202), Ok(202)), "{case}");
        }
        daemon.signal("TERM");
        let mut daemon = daemon;
        assert!(daemon.wait_exit(Duration::from_secs(30)).success(), "{case}: {}", daemon.log_text());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_answer_outside_the_openapi_description() {
    const TOKEN: &str = "fuzz-t0ken-3310";
    let nats = NatsServer::start();
    let db = TestDb::create().await;
    let dir = TempDir::new("ingest_fuzz");
    let mut telemetry = TestStream::telemetry(&unique("fz"));
    telemetry.extra = "validate = true\n".into();
    let events = TestStream::of("events", &unique("fe"));
    let streams = [telemetry.clone(), events.clone()];
    migrate(&common::config(&nats.url, &db.url, &streams)).await;
    let tokens = dir.path().join("tokens.toml");
    let hash = db_event_writer::ingest::tokens::hash(TOKEN);
    std::fs::write(&tokens, format!("[[token]]\nname = \"fuzz\"\nsha256 = \"{hash}\"\n")).unwrap();
    let port = free_port();
    let text = config_text(&nats.url, &db.url, &streams)
        + &format!(
            "\n[ingest]\nlisten = \"127.0.0.1:{port}\"\nmax_body = 65536\ntokens_file = \"{}\"\n",
            tokens.display()
        );
    let (daemon, _front) = Front::start(&dir, &text, port).await;
    let schemathesis = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/schemathesis");
    assert!(schemathesis.exists(), "schemathesis is missing: run the tests with `make test` (it installs it)");
    let out = tokio::process::Command::new(&schemathesis)
        .args(["run", &format!("http://127.0.0.1:{port}/v1/openapi.json")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ])
        .args(["--max-examples", "60", "--seed", "7", "--workers", "1"])
        .args(["-H", &format!("Authorization: Bearer {TOKEN}")])
        .env("NO_COLOR", "1")
        .output()
        .await
        .unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    daemon.signal("TERM");
    assert!(out.status.success(), "schemathesis:\n{report}");
    assert!(!report.contains("FAILED"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_stream_or_a_consumer_far_behind_answers_429_with_retry_after() {
    use async_nats::jetstream::stream::{Config as StreamCfg, DiscardPolicy};
    let nats = NatsServer::start();
    let db = TestDb::create().await;
    let proxy = Proxy::start(5432).await;
    let dir = TempDir::new("ingest_429");
    let telemetry = TestStream::telemetry(&unique("lag"));
    let small = TestStream::telemetry(&unique("full"));
    let streams = [telemetry.clone(), small.clone()];
    let port = free_port();
    let text = config_text(&nats.url, &proxy.url_for(&db.url), &streams)
        .replace("[daemon]", "[breaker]\nfailures = 1\ncooldown = \"1s\"\n\n[daemon]")
        .replace("pool_size = 4", "pool_size = 4\nconnect_timeout = \"1s\"")
        + &format!("\n[ingest]\nlisten = \"127.0.0.1:{port}\"\nmax_lag = 5\n");
    migrate(&db_event_writer::parse_config(std::path::Path::new("t.toml"), &text).unwrap()).await;
    let js = nats.jetstream().await;
    create_stream(&js, &telemetry).await;
    // Three messages at most, new ones refused: a stream at its limits (the daemon never changes a stream).
    let full = StreamCfg {
        name: small.jetstream.clone(),
        subjects: small.subjects.clone(),
        max_messages: 3,
        discard: DiscardPolicy::New,
        ..Default::default()
    };
    js.create_stream(full).await.unwrap();
    let (daemon, front) = Front::start(&dir, &text, port).await;

    let small_url = format!("/v1/events/{}", small.subject("h"));
    for i in 0..3 {
        assert_eq!(front.post(&small_url, &[], &metric(i)).await.0, 202);
    }
    let (status, headers, body) = http_request(port, "POST", &small_url, &[], metric(3)).await;
    assert_eq!(status, 429, "{body}");
    assert!(headers.get("retry-after").is_some() && body.contains("maximum"), "{body}");

    // The database away: the breaker stops fetching, messages pile up in JetStream, the front says 429.
    let url = format!("/v1/events/{}", telemetry.subject("h"));
    proxy.cut();
    let subject = telemetry.subject("direct");
    publish_all(&js, (10..30).map(|i| (subject.clone(), metric(i)))).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    publish_all(&js, (30..80).map(|i| (subject.clone(), metric(i)))).await;
    // Until the lag shows (refreshed every second) a post may still be accepted: it is one more row then.
    let early = std::sync::atomic::AtomicBool::new(false);
    wait_until(LIMIT, "429 while the consumer is behind", || async {
        let (status, headers, body) = http_request(port, "POST", &url, &[], metric(100)).await;
        if status == 202 {
            early.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        status == 429 && headers.get("retry-after").is_some() && body.contains("messages behind (limit 5)")
    })
    .await;
    proxy.restore();
    wait_until(LIMIT, "202 once it caught up", || async { front.post(&url, &[], &metric(101)).await.0 == 202 }).await;
    let expected = 3 + 70 + 1 + i64::from(early.load(std::sync::atomic::Ordering::Relaxed));
    wait_until(LIMIT, "every row", || async { db.count("timeseries_metrics").await == expected }).await;
    daemon.signal("TERM");
}

/// `?wait=persisted` / `Prefer: wait=N`: one round trip to the committed row (without waiting out a 10 s
/// batch_timeout), 422 for a dead letter, the 202 at the timeout while the table is broken, every waiter released
/// with a 202 on shutdown, and 202 at once when no waiting slot is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_post_answers_once_its_row_is_committed_or_with_the_202_it_would_have_had() {
    let nats = NatsServer::start();
    let db = TestDb::create().await;
    let dir = TempDir::new("wait");
    let mut telemetry = TestStream::telemetry(&unique("wt"));
    telemetry.batch_timeout = "10s";
    let events = TestStream::of("events", &unique("we"));
    let streams = [telemetry.clone(), events.clone()];
    migrate(&common::config(&nats.url, &db.url, &streams)).await;
    let port = free_port();
    let text = config_text(&nats.url, &db.url, &streams)
        + &format!("\n[ingest]\nlisten = \"127.0.0.1:{port}\"\nwait_timeout = \"5s\"\nmax_wait = \"15s\"\n");
    let (mut daemon, front) = Front::start(&dir, &text, port).await;
    let url = format!("/v1/events/{}", telemetry.subject("host"));

    // Committed within the wait, though the batch would have waited 10 s: 200 with the table, and the row is there.
    let (status, v) = front.post(&format!("{url}?wait=persisted"), &[], &metric(1)).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!((v["status"].as_str(), v["table"].as_str()), (Some("persisted"), Some("timeseries_metrics")), "{v}");
    assert!(v["committed_at"].as_str().is_some_and(|t| t.ends_with('Z')) && v["sequence"].as_u64() == Some(1), "{v}");
    assert_eq!(db.count("timeseries_metrics").await, 1, "answered before the commit");
    // A retry of it (same key) answers from the recorded fate.
    let (status, _) = front.post(&format!("{url}?wait=persisted"), &[("idempotency-key", "w-1")], &metric(2)).await;
    assert_eq!(status, 200);
    let (status, again) = front.post(&url, &[("idempotency-key", "w-1"), ("prefer", "wait=5")], &metric(2)).await;
    assert_eq!((status, again["duplicate"].as_bool(), again["status"].as_str()), (200, Some(true), Some("persisted")));
    assert_eq!(front.post(&format!("{url}?wait=soon"), &[], &metric(3)).await.0, 400, "a wait it cannot have");

    // Dead-lettered while the client waits: 422 with the class and reason.
    let (status, v) = front.post(&format!("/v1/events/{}", events.subject("x")), &[("prefer", "wait=5")], b"[1]").await;
    assert_eq!(
        (status, v["status"].as_str(), v["class"].as_str()),
        (422, Some("dead_lettered"), Some("decode")),
        "{v}"
    );
    assert!(!v["reason"].as_str().unwrap_or_default().is_empty(), "{v}");

    // A batch waits for every item: 200 when all are committed, 422 when one was dead-lettered.
    let batch = |items: &[Vec<u8>]| {
        let items: Vec<String> = items.iter().map(|i| String::from_utf8(i.clone()).unwrap()).collect();
        format!("[{}]", items.join(","))
    };
    let (status, v) =
        front.post(&format!("{url}/batch?wait=persisted"), &[], batch(&[metric(4), metric(5)]).as_bytes()).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["items"][1]["status"].as_str(), Some("persisted"), "{v}");
    let (status, v) = front
        .post(&format!("{url}/batch?wait=persisted"), &[], batch(&[metric(6), b"[1,2,3]".to_vec()]).as_bytes())
        .await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(
        (v["items"][0]["status"].as_str(), v["items"][1]["status"].as_str()),
        (Some("persisted"), Some("dead_lettered"))
    );
    assert_eq!(db.count("timeseries_metrics").await, 5);

    // The table broken: the wait runs out, and the answer is the 202 (the event is stored; it lands later).
    let client = db.client().await;
    client.batch_execute("ALTER TABLE platform.timeseries_metrics RENAME TO broken").await.unwrap();
    let (status, v) = front.post(&url, &[("prefer", "wait=1")], &metric(7)).await;
    assert_eq!((status, v["status"].as_str()), (202, Some("accepted")), "{v}");
    let id = v["message_id"].as_str().unwrap().to_owned();
    client.batch_execute("ALTER TABLE platform.broken RENAME TO timeseries_metrics").await.unwrap();
    wait_until(LIMIT, "the timed-out event lands", || async { front.status_of(&id).await == "persisted" }).await;

    // Shutdown releases a waiter with its 202 at once rather than holding the stop for its 12 s.
    client.batch_execute("ALTER TABLE platform.timeseries_metrics RENAME TO broken").await.unwrap();
    let js = nats.jetstream().await;
    let stored =
        || async { js.get_stream(&telemetry.jetstream).await.map(|s| s.cached_info().state.messages).unwrap_or(0) };
    let before = stored().await;
    let waiting = tokio::spawn(async move {
        let started = std::time::Instant::now();
        let answer = http_request(port, "POST", &url, &[("prefer", "wait=12")], metric(8)).await;
        (answer, started.elapsed())
    });
    wait_until(LIMIT, "the waiting event stored", || async { stored().await > before }).await;
    daemon.signal("TERM");
    let ((status, _, body), took) = waiting.await.unwrap();
    assert_eq!(status, 202, "{body}");
    assert!(body.contains("\"accepted\""), "{body}");
    assert!(took < Duration::from_secs(10), "the waiter held the shutdown for {took:?}");
    assert!(daemon.wait_exit(LIMIT).success(), "{}", daemon.log_text());
    client.batch_execute("ALTER TABLE platform.broken RENAME TO timeseries_metrics").await.unwrap();

    // No waiting slot (max_waiters = 0): the 202 at once, and the event still lands.
    let text = text.replace("max_wait = \"15s\"\n", "max_wait = \"15s\"\nmax_waiters = 0\n");
    let (_daemon, front) = Front::start(&dir, &text, port).await;
    let (status, v) =
        front.post(&format!("/v1/events/{}?wait=persisted", telemetry.subject("host")), &[], &metric(9)).await;
    assert_eq!((status, v["status"].as_str()), (202, Some("accepted")), "{v}");
    wait_until(LIMIT, "every event written once", || async { db.count("timeseries_metrics").await == 8 }).await;
}
