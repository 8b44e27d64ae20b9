//! What an operator sees, against real servers: a real Prometheus (Debian's `prometheus`) scrapes the daemon and
//! reads back its counters, `promtool check metrics` accepts the classic exposition, and a stream whose task
//! cannot start shows in `/readyz`, `status` and `stream_up` while the other streams run.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(60);

/// A Prometheus server of the test's own (free port, temporary storage), scraping `targets` every second.
struct Prometheus {
    child: Child,
    port: u16,
    _dir: TempDir,
}

impl Prometheus {
    fn start(targets: &[String]) -> Prometheus {
        let dir = TempDir::new("prometheus");
        let port = free_port();
        let list: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: dbew\n    \
             static_configs:\n      - targets: [{}]\n",
            list.join(", ")
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("prometheus.log")).unwrap())
            .spawn()
            .expect("start prometheus (Debian's package; make test installs it)");
        Prometheus { child, port, _dir: dir }
    }

    async fn api(&self, path: &str) -> Value {
        let (status, body) = http_get(self.port, path).await.unwrap_or((0, String::new()));
        if status != 200 {
            return Value::Null;
        }
        serde_json::from_str(&body).unwrap_or(Value::Null)
    }

    /// The value of an instant query with one result.
    async fn query(&self, expr: &str) -> Option<f64> {
        let encoded: String = expr
            .bytes()
            .map(|b| if b.is_ascii_alphanumeric() || b == b'_' { (b as char).to_string() } else { format!("%{b:02X}") })
            .collect();
        let v = self.api(&format!("/api/v1/query?query={encoded}")).await;
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_the_daemon_and_reads_back_its_work() {
    let nats = NatsServer::start();
    let db = TestDb::create().await;
    let dir = TempDir::new("scrape");
    let stream = TestStream::telemetry(&unique("prom"));
    let port = free_port();
    let text = config_text(&nats.url, &db.url, std::slice::from_ref(&stream))
        + &format!("\n[http]\nlisten = \"127.0.0.1:{port}\"\n");
    migrate(&common::config(&nats.url, &db.url, std::slice::from_ref(&stream))).await;
    let path = dir.path().join("streams.toml");
    std::fs::write(&path, text).unwrap();
    let js = nats.jetstream().await;
    create_stream(&js, &stream).await;
    let _daemon = Daemon::spawn(&path, dir.path().join("daemon.log"));
    publish_all(&js, (0..120).map(|i| (stream.subject("h"), metric(i)))).await;
    wait_until(LIMIT, "120 rows", || async { db.count("timeseries_metrics").await == 120 }).await;

    // The classic text (no Accept) passes promtool's checks; OpenMetrics is served to who asks for it.
    let (status, headers, classic) = http_request(port, "GET", "/metrics", &[], Vec::new()).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    assert!(classic.contains("# TYPE db_event_writer_build_info gauge"), "{classic}");
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    std::io::Write::write_all(&mut promtool.stdin.take().unwrap(), classic.as_bytes()).unwrap();
    let checked = promtool.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    let (_, headers, open) =
        http_request(port, "GET", "/metrics", &[("accept", "application/openmetrics-text;version=1.0.0")], Vec::new())
            .await;
    assert!(headers["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    assert!(open.trim_end().ends_with("# EOF"), "{open}");

    // Prometheus itself: the target is up and the counters it stored are the daemon's work.
    let prometheus = Prometheus::start(&[format!("127.0.0.1:{port}")]);
    wait_until(LIMIT, "the target up", || async {
        let targets = prometheus.api("/api/v1/targets").await;
        targets["data"]["activeTargets"][0]["health"].as_str() == Some("up")
    })
    .await;
    let committed = format!(r#"db_event_writer_rows_committed_total{{stream="{}"}}"#, stream.name);
    wait_until(LIMIT, "the committed rows through Prometheus", || async {
        prometheus.query(&committed).await == Some(120.0)
    })
    .await;
    let up = format!(r#"db_event_writer_stream_up{{stream="{}"}}"#, stream.name);
    assert_eq!(prometheus.query(&up).await, Some(1.0));
    assert_eq!(prometheus.query("db_event_writer_build_info").await, Some(1.0));
    let first_letters =
        format!(r#"db_event_writer_messages_dead_lettered_total{{stream="{}",class="decode"}}"#, stream.name);
    assert_eq!(prometheus.query(&first_letters).await, Some(0.0), "dead-letter counters exist before the first one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_cannot_start_shows_in_readyz_status_and_stream_up() {
    let nats = NatsServer::start();
    let db = TestDb::create().await;
    let dir = TempDir::new("failing");
    let good = TestStream::telemetry(&unique("good"));
    let bad = TestStream::telemetry(&unique("bad"));
    let port = free_port();
    let streams = [good.clone(), bad.clone()];
    let text = config_text(&nats.url, &db.url, &streams) + &format!("\n[http]\nlisten = \"127.0.0.1:{port}\"\n");
    migrate(&common::config(&nats.url, &db.url, &streams)).await;
    let path = dir.path().join("streams.toml");
    std::fs::write(&path, text).unwrap();
    let js = nats.jetstream().await;
    create_stream(&js, &good).await;
    create_stream(&js, &bad).await;
    // The bad stream's durable consumer already exists as a push consumer.
    js.get_stream(&bad.jetstream)
        .await
        .unwrap()
        .create_consumer(async_nats::jetstream::consumer::push::Config {
            durable_name: Some(bad.consumer.clone()),
            deliver_subject: "somewhere.else".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let daemon = Daemon::spawn(&path, dir.path().join("daemon.log"));
    publish_all(&js, (0..10).map(|i| (good.subject("h"), metric(i)))).await;
    wait_until(LIMIT, "the good stream's rows", || async { db.count("timeseries_metrics").await == 10 }).await;

    wait_until(LIMIT, "/readyz names the failing stream", || async {
        let Some((status, body)) = http_get(port, "/readyz").await else { return false };
        status == 503 && body.contains(&bad.name)
    })
    .await;
    let (_, body) = http_get(port, "/readyz").await.unwrap();
    let ready: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["ready"], false);
    let why = ready["failing"][&bad.name].as_str().unwrap();
    assert!(why.contains(&bad.consumer), "{why}");
    assert!(ready["failing"].get(&good.name).is_none(), "{body}");

    let (_, m) = http_get(port, "/metrics").await.unwrap();
    let labels = |s: &TestStream| format!(r#"{{stream="{}",processor="telemetry"}}"#, s.name);
    assert_eq!(sample(&m, &format!("db_event_writer_stream_up{}", labels(&good))), Some(1.0), "{m}");
    assert_eq!(sample(&m, &format!("db_event_writer_stream_up{}", labels(&bad))), Some(0.0), "{m}");
    let restarts = format!(
        r#"db_event_writer_stream_restarts_total{{stream="{}",processor="telemetry",class="setup"}}"#,
        bad.name
    );
    assert!(sample(&m, &restarts).is_some_and(|n| n >= 1.0), "{m}");
    let never = format!(
        r#"db_event_writer_stream_restarts_total{{stream="{}",processor="telemetry",class="setup"}}"#,
        good.name
    );
    assert_eq!(sample(&m, &never), Some(0.0), "{m}");

    let config = path.to_str().unwrap();
    let (code, out, _) = run_cli(&["status", "--config", config]);
    assert_ne!(code, 0, "a failing stream is not healthy: {out}");
    let line =
        |name: &str| out.lines().find(|l| l.starts_with(&format!("stream {name}:"))).unwrap_or_default().to_owned();
    assert!(line(&good.name).contains("task=running"), "{out}");
    assert!(line(&bad.name).contains("task=failing: "), "{out}");
    let (_, json, _) = run_cli(&["status", "--json", "--config", config]);
    let json: Value = serde_json::from_str(&json).unwrap();
    let task =
        json["streams"].as_array().unwrap().iter().find(|s| s["name"] == bad.name.as_str()).unwrap()["task"].clone();
    assert!(task.as_str().unwrap().starts_with("failing: "), "{json}");
    let mut daemon = daemon;
    daemon.signal("TERM");
    assert!(daemon.wait_exit(LIMIT).success());
    // A clean stop warns about nothing of NATS.
    let log = daemon.log_text();
    let tail = log.rsplit_once("shutting down").map_or(log.as_str(), |(_, t)| t);
    assert!(!tail.lines().any(|l| l.contains(" WARN ") && l.contains("NATS")), "{tail}");
}

/// `validate | head -c 10`: the reader goes away long before the 600 streams' lines are written; the command
/// ends quietly with status 0 instead of panicking on the broken pipe.
#[test]
fn a_closed_pipe_ends_the_command_quietly() {
    let dir = TempDir::new("pipe");
    let streams: Vec<TestStream> = (0..600).map(|i| TestStream::telemetry(&format!("p{i}"))).collect();
    let path = dir.path().join("streams.toml");
    std::fs::write(&path, config_text("nats://127.0.0.1:4222", "postgres://postgres@127.0.0.1/x", &streams)).unwrap();
    let script = format!(
        "set -o pipefail; \"{}\" validate --config \"{}\" | head -c 10 >/dev/null",
        daemon_bin(),
        path.display()
    );
    let out = Command::new("bash").args(["-c", &script]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status.code());
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// The operator's listener is up before NATS: `/healthz` answers, `/readyz` is 503 and says what start-up waits
/// for (with the connection error), `stream_up` is 0 for every stream; once NATS comes, the daemon is ready and
/// writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_and_readyz_says_why_while_nats_is_not_there_yet() {
    let db = TestDb::create().await;
    let dir = TempDir::new("early");
    let stream = TestStream::telemetry(&unique("early"));
    let (nats_port, port) = (free_port(), free_port());
    let nats_url = format!("nats://127.0.0.1:{nats_port}");
    migrate(&common::config(&nats_url, &db.url, std::slice::from_ref(&stream))).await;
    let text = config_text(&nats_url, &db.url, std::slice::from_ref(&stream))
        + &format!("\n[http]\nlisten = \"127.0.0.1:{port}\"\n");
    let path = dir.path().join("streams.toml");
    std::fs::write(&path, text).unwrap();
    let mut daemon = Daemon::spawn(&path, dir.path().join("daemon.log"));

    wait_until(LIMIT, "/healthz 200 without NATS", || async {
        http_get(port, "/healthz").await.is_some_and(|(status, _)| status == 200)
    })
    .await;
    wait_until(LIMIT, "/readyz naming the NATS connection error", || async {
        let Some((503, body)) = http_get(port, "/readyz").await else { return false };
        body.contains("connecting to NATS at") && body.contains(&nats_port.to_string())
    })
    .await;
    let (_, body) = http_get(port, "/readyz").await.unwrap();
    let ready: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["ready"], false, "{body}");
    assert_eq!(ready["nats"], "not connected yet", "{body}");
    assert_eq!(http_get(port, "/livez").await.map(|r| r.0), Some(200));
    let (_, m) = http_get(port, "/metrics").await.unwrap();
    let up = format!(r#"db_event_writer_stream_up{{stream="{}",processor="telemetry"}}"#, stream.name);
    assert_eq!(sample(&m, &up), Some(0.0), "stream_up exists from the first second: {m}");

    let nats = NatsServer::start_on(nats_port, "");
    wait_until(LIMIT, "/readyz 200 once NATS is there", || async {
        http_get(port, "/readyz").await.is_some_and(|(status, _)| status == 200)
    })
    .await;
    let js = nats.jetstream().await;
    wait_for_consumer(&js, &stream, LIMIT).await;
    publish_all(&js, (0..5).map(|i| (stream.subject("h"), metric(i)))).await;
    wait_until(LIMIT, "5 rows", || async { db.count("timeseries_metrics").await == 5 }).await;
    daemon.signal("TERM");
    assert!(daemon.wait_exit(LIMIT).success(), "{}", daemon.log_text());
}

/// `validate` checks what the file names: NATS (and its existing consumers), the database (access, tables) and
/// every referenced file; `--offline` the file alone. A database that does not exist stops `run` at once with
/// its SQLSTATE instead of being retried as an outage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_checks_the_world_and_offline_only_the_file() {
    let nats = NatsServer::start();
    let db = TestDb::create().await;
    let dir = TempDir::new("world");
    let stream = TestStream::telemetry(&unique("world"));
    let write = |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let good_text = config_text(&nats.url, &db.url, std::slice::from_ref(&stream));
    let good = write("good.toml", good_text.clone());
    let validate = |path: &str, offline: bool| {
        let mut args = vec!["validate", "--config", path];
        if offline {
            args.push("--offline");
        }
        run_cli(&args)
    };

    // Not migrated yet: the table is missing.
    let (code, out, err) = validate(&good, false);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("does not exist") && err.contains("migrate"), "{err}");
    assert!(out.contains("ok: nats ") && out.contains("JetStream enabled"), "{out}");
    assert_eq!(validate(&good, true).0, 0);
    migrate(&common::config(&nats.url, &db.url, std::slice::from_ref(&stream))).await;
    let (code, out, err) = validate(&good, false);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ok: database ") && out.contains("has every table"), "{out}");
    assert!(out.contains(&format!("ok: stream {}: ", stream.name)) && out.contains("does not exist yet"), "{out}");

    // A credentials file that is not there.
    let missing = dir.path().join("nowhere.creds");
    let creds = write(
        "creds.toml",
        good_text.replacen("[database]", &format!("creds_file = \"{}\"\n\n[database]", missing.display()), 1),
    );
    let (code, out, err) = validate(&creds, false);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("creds_file") && err.contains(&missing.display().to_string()), "{err}");
    assert_eq!(validate(&creds, true).0, 0, "offline does not read it");

    // A database nobody answers for, and one that does not exist.
    let unreachable =
        write("down.toml", good_text.replace(&db.url, &format!("postgres://postgres@127.0.0.1:{}/x", free_port())));
    let (code, _, err) = validate(&unreachable, false);
    assert_eq!(code, 1);
    assert!(err.contains("error: database postgres://") && err.contains("127.0.0.1"), "{err}");
    assert_eq!(validate(&unreachable, true).0, 0);
    let nosuch_db = "postgres://postgres@127.0.0.1:5432/dbew_no_such_database";
    let nosuch = write("nosuch.toml", good_text.replace(&db.url, nosuch_db));
    let (code, _, err) = validate(&nosuch, false);
    assert_eq!(code, 1);
    assert!(err.contains("dbew_no_such_database") && err.contains("3D000"), "{err}");

    // A URL that is no NATS address is refused by the file check itself, with its line.
    let bad_url = write("url.toml", good_text.replace(&nats.url, "htp://nowhere"));
    let (code, _, err) = validate(&bad_url, true);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("url.toml:2:") && err.contains("nats.url") && err.contains("htp://nowhere"), "{err}");

    // `run` against the missing database: a start-up error naming it, not an outage retried forever.
    let started = std::time::Instant::now();
    let mut daemon = Daemon::spawn(Path::new(&nosuch), dir.path().join("run.log"));
    let status = daemon.wait_exit(LIMIT);
    assert!(!status.success() && started.elapsed() < LIMIT, "{}", daemon.log_text());
    let log = daemon.log_text();
    assert!(log.contains("dbew_no_such_database") && log.contains("does not exist"), "{log}");
    assert!(log.contains("3D000") && log.contains("refuses the connection"), "{log}");
}

/// A poison flood: per stream, `dead_letter_lines` letters are logged one by one per interval and the rest are
/// summed up, so the log tells every letter in a bounded number of lines. Then the DLQ as a tool: filters,
/// totals, capping, `show`, `purge` and `replay` with dry runs, and errors for what names nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_flood_is_a_few_log_lines_and_the_dlq_tools_filter_show_purge_and_replay() {
    let nats = NatsServer::start();
    let db = TestDb::create().await;
    let dir = TempDir::new("flood");
    let stream = TestStream::telemetry(&unique("flood"));
    migrate(&common::config(&nats.url, &db.url, std::slice::from_ref(&stream))).await;
    let text = config_text(&nats.url, &db.url, std::slice::from_ref(&stream)).replacen(
        "[daemon]",
        "[log]\ndead_letter_lines = 2\ndead_letter_every = \"1s\"\n\n[daemon]",
        1,
    );
    let path = dir.path().join("streams.toml");
    std::fs::write(&path, text).unwrap();
    let js = nats.jetstream().await;
    create_stream(&js, &stream).await;
    let mut daemon = Daemon::spawn(&path, dir.path().join("daemon.log"));
    let (one, two) = (stream.subject("one"), stream.subject("two"));
    let mut poison: Vec<(String, Vec<u8>)> =
        (0..300).map(|i| (one.clone(), format!("not json {i}").into_bytes())).collect();
    poison.extend((0..100).map(|i| (two.clone(), format!("not json either {i}").into_bytes())));
    publish_all(&js, poison).await;
    wait_until(LIMIT, "the DLQ stream", || async { js.get_stream("DLQ").await.is_ok() }).await;
    wait_until(LIMIT, "400 dead letters", || async { dead_letters(&js, &stream.name).await.len() == 400 }).await;

    // Every letter is told, one by one or counted in a summary, in a few lines.
    let told = |log: &str| {
        let single = log.lines().filter(|l| l.contains("dead-lettering a message")).count() as u64;
        let summaries: Vec<u64> = log
            .lines()
            .filter(|l| l.contains("more messages dead-lettered than"))
            .filter_map(|l| l.split("count=").nth(1)?.split_whitespace().next()?.parse().ok())
            .collect();
        (single, summaries)
    };
    wait_until(LIMIT, "the summaries to tell all 400", || async {
        let (single, summaries) = told(&daemon.log_text());
        single + summaries.iter().sum::<u64>() == 400
    })
    .await;
    let (single, summaries) = told(&daemon.log_text());
    assert!(single <= 2 * (summaries.len() as u64 + 1), "{single} single lines, {} summaries", summaries.len());
    assert!(single + summaries.len() as u64 <= 40, "400 letters took {single} + {} lines", summaries.len());

    let config = path.to_str().unwrap();
    let dlq = |args: &[&str]| {
        let mut all = vec!["dlq"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--config", config]);
        run_cli(&all)
    };
    // list: filters, the total, and a cap that says so.
    let (code, out, err) = dlq(&["list", "--stream", &stream.name, "--limit", "3"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(err.contains("400 dead letter(s) matched of 400") && err.contains("showing the first 3"), "{err}");
    let first = out.lines().next().unwrap();
    let time = first.split('\t').nth(1).unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(time).is_ok() && time.ends_with('Z'), "RFC 3339: {time}");
    let (_, out, err) = dlq(&["list", "--subject", &two, "--limit", "1000"]);
    assert_eq!(out.lines().count(), 100, "{err}");
    assert!(out.lines().all(|l| l.contains(&format!("subject={two} ")) && l.contains("class=decode")), "{out}");
    let (_, out, _) = dlq(&["list", "--class", "rejected"]);
    assert_eq!(out.lines().count(), 0);
    let (_, out, err) = dlq(&["list", "--since", "1h", "--limit", "1000"]);
    assert_eq!(out.lines().count(), 400, "{err}");
    let (_, out, _) = dlq(&["list", "--since", "2999-01-01T00:00:00Z"]);
    assert_eq!(out.lines().count(), 0);
    for (args, says) in [
        (vec!["list", "--stream", "nosuch"], "no [[stream]] is named \"nosuch\""),
        (vec!["list", "--class", "bogus"], "--class \"bogus\""),
        (vec!["list", "--since", "100000000years"], "too long ago"),
        (vec!["purge"], "--all"),
        (vec!["show", "999999"], "no dead letter at sequence 999999"),
    ] {
        let (code, out, err) = dlq(&args);
        assert_eq!(code, 1, "{args:?}: {out}{err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }

    // show: every header, the reason, the payload; --payload the bytes alone.
    let seq: &str = first.split('\t').next().unwrap();
    let (code, out, _) = dlq(&["show", seq]);
    assert_eq!(code, 0);
    for header in ["Dlq-Stream: ", "Dlq-Subject: ", "Dlq-Class: decode", "Dlq-Reason: ", "Dlq-Sequence: "] {
        assert!(out.contains(header), "{header}: {out}");
    }
    let (_, payload, _) = dlq(&["show", seq, "--payload"]);
    assert!(payload.starts_with("not json "), "{payload}");
    assert!(out.ends_with(&format!("payload ({} bytes):\n{payload}\n", payload.len())), "{out}");

    // purge and replay: dry runs change nothing, then the filtered ones only.
    let (code, out, _) = dlq(&["purge", "--subject", &one, "--dry-run"]);
    assert_eq!((code, out.trim()), (0, "would purge 300 dead letter(s)"));
    assert_eq!(dead_letters(&js, &stream.name).await.len(), 400);
    let (code, out, _) = dlq(&["purge", "--subject", &one, "--limit", "250"]);
    assert_eq!(code, 0);
    assert_eq!(out, "purged 250 dead letter(s)\n50 more matched beyond --limit\n");
    assert_eq!(dead_letters(&js, &stream.name).await.len(), 150);
    let (_, out, _) = dlq(&["replay", "--subject", &two, "--dry-run"]);
    assert_eq!(out.trim(), "would replay 100 dead letter(s)");
    assert_eq!(dead_letters(&js, &stream.name).await.len(), 150);
    let (code, out, _) = dlq(&["purge", "--all"]);
    assert_eq!((code, out.trim()), (0, "purged 150 dead letter(s)"));
    assert!(dead_letters(&js, &stream.name).await.is_empty());
    daemon.signal("TERM");
    assert!(daemon.wait_exit(LIMIT).success());
}

/// `[daemon] watch_config = true`: a changed file is applied without SIGHUP (a Kubernetes ConfigMap update).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_config_file_is_reloaded_when_watched() {
    let nats = NatsServer::start();
    let db = TestDb::create().await;
    let dir = TempDir::new("watch");
    let (a, b) = (TestStream::telemetry(&unique("wa")), TestStream::telemetry(&unique("wb")));
    migrate(&common::config(&nats.url, &db.url, std::slice::from_ref(&a))).await;
    let write = |streams: &[TestStream]| {
        let text =
            config_text(&nats.url, &db.url, streams).replacen("[daemon]\n", "[daemon]\nwatch_config = true\n", 1);
        std::fs::write(dir.path().join("streams.toml"), text).unwrap();
    };
    write(std::slice::from_ref(&a));
    let js = nats.jetstream().await;
    create_stream(&js, &a).await;
    create_stream(&js, &b).await;
    let mut daemon = Daemon::spawn(&dir.path().join("streams.toml"), dir.path().join("daemon.log"));
    wait_for_consumer(&js, &a, LIMIT).await;
    assert!(try_consumer_info(&js, &b).await.is_none());
    write(&[a.clone(), b.clone()]);
    wait_for_consumer(&js, &b, LIMIT).await;
    publish_all(&js, (0..5).map(|i| (b.subject("h"), metric(i)))).await;
    wait_until(LIMIT, "the new stream's rows", || async { db.count("timeseries_metrics").await == 5 }).await;
    assert!(daemon.log_text().contains("configuration file changed"), "{}", daemon.log_text());
    daemon.signal("TERM");
    assert!(daemon.wait_exit(LIMIT).success());
}
