//! What an operator sees, against real servers: a real Prometheus (Debian's `prometheus`) scrapes the daemon and
//! reads back its counters, `promtool check metrics` accepts the classic exposition, and a stream whose task
//! cannot start shows in `/readyz`, `status` and `stream_up` while the other streams run.

mod common;

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
