//! `make bench`: the release daemon end to end, against real nats-server and PostgreSQL on this machine, and
//! PostgreSQL's own ceiling for the same rows. Writes BENCHMARKS.md.
//!
//! For each processor: a fresh nats-server and database; N messages published first; the daemon started and
//! timed until every row is committed and every message acked (consumer drained). CPU of the daemon, of the
//! nats-server and of every PostgreSQL process, and the daemon's peak RSS, come from /proc. The ceiling: the
//! same rows, decoded once, written by the processor's own write path (binary COPY for telemetry and logs) in
//! 50,000-row transactions, no NATS. For telemetry also one INSERT per row in one transaction (the Go writer's
//! method), and a rate-limited run at 20% of the measured rate for publish → commit latency. Each measurement
//! is repeated and the median reported, with the spread.
//!
//! `ingest` (in `--processors`, by default) runs the HTTP ingest front at a steady 1,000 requests/s for
//! `--ingest-secs` (default 10) for the latency of its 202s, then closed-loop for its maximum rate.
//! `instances` (by default too) drains a telemetry backlog of `--messages` with 1, 2 and 3 daemons on one
//! durable consumer.
//!
//! Options (after `--`): `--messages N` (telemetry; otel N/8 messages of ten rows; the others N/2), `--processors a,b,...`,
//! `--batch-size N`, `--latency-secs N`, `--repeat N` (default 3).

#[path = "../tests/common/mod.rs"]
mod common;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use common::*;
use db_event_writer::processor::telemetry::Telemetry;
use db_event_writer::processor::{Incoming, Processor};
use prost::Message as _;

struct Options {
    messages: usize,
    processors: Vec<String>,
    batch_size: Option<usize>,
    latency_secs: u64,
    repeat: usize,
    ingest_secs: u64,
    flood: usize,
}

fn options() -> Options {
    let mut o = Options {
        messages: 200_000,
        processors: [
            "telemetry",
            "metrics",
            "logs",
            "events",
            "otel",
            "netflow",
            "sweep",
            "ingest",
            "instances",
            "isolation",
        ]
        .map(String::from)
        .to_vec(),
        batch_size: None,
        latency_secs: 20,
        repeat: 3,
        ingest_secs: 10,
        flood: 1_000_000,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--messages" => o.messages = value.parse().expect("--messages N"),
            "--processors" => o.processors = value.split(',').map(String::from).collect(),
            "--batch-size" => o.batch_size = Some(value.parse().expect("--batch-size N")),
            "--latency-secs" => o.latency_secs = value.parse().expect("--latency-secs N"),
            "--repeat" => o.repeat = value.parse::<usize>().expect("--repeat N").max(1),
            "--ingest-secs" => o.ingest_secs = value.parse().expect("--ingest-secs N"),
            "--flood" => o.flood = value.parse().expect("--flood N"),
            "--bench" => {
                i += 1;
                continue;
            }
            other => panic!("unknown option {other}"),
        }
        i += 2;
    }
    o
}

/// One processor's end-to-end result.
struct Run {
    batch_size: usize,
    messages: usize,
    rows: i64,
    seconds: f64,
    cpu_seconds: f64,
    nats_cpu_seconds: f64,
    pg_cpu_seconds: f64,
    peak_rss_mib: f64,
}

impl Run {
    fn msgs_per_sec(&self) -> f64 {
        self.messages as f64 / self.seconds
    }
    fn rows_per_sec(&self) -> f64 {
        self.rows as f64 / self.seconds
    }
    fn cpu_us_per_msg(&self) -> f64 {
        self.cpu_seconds * 1e6 / self.messages as f64
    }
    fn nats_us_per_msg(&self) -> f64 {
        self.nats_cpu_seconds * 1e6 / self.messages as f64
    }
    fn pg_us_per_msg(&self) -> f64 {
        self.pg_cpu_seconds * 1e6 / self.messages as f64
    }
}

/// The median of `values` (sorted copy), with min and max.
fn median(values: &[f64]) -> (f64, f64, f64) {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

/// CPU seconds used so far by every live process whose command name is `comm` (PostgreSQL's backends; a backend
/// that exits takes its CPU with it, so measure with connections that stay open).
fn cpu_of_command(comm: &str) -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0.0 };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == comm))
        .map(|pid| usage(pid).0)
        .sum()
}

fn clock_ticks() -> f64 {
    100.0 // USER_HZ on Linux
}

/// (CPU seconds, peak RSS MiB) of a process.
fn usage(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(") ").next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let cpu = (ticks(11) + ticks(12)) / clock_ticks();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    (cpu, hwm / 1024.0)
}

/// `n` messages of a processor, and the rows they make.
fn payloads(processor: &str, n: usize) -> (Vec<(String, Vec<u8>)>, i64) {
    match processor {
        "telemetry" => ((0..n).map(|i| ("bench.telemetry".to_owned(), metric(i))).collect(), n as i64),
        "metrics" => {
            // ServiceRadar's metric envelope as an agent's sysmon collector sends it: one MetricBatch of
            // METRICS_PER_BATCH gauges (per CPU core, per mount) with their tags, one point each.
            use db_event_writer::processor::proto::metric::*;
            let e = |k: &str, v: String| StringMapEntry { key: k.into(), value: v };
            let items = (0..n)
                .map(|i| {
                    let metrics = (0..METRICS_PER_BATCH)
                        .map(|j| Metric {
                            name: if j < 16 { "cpu.usage_percent".into() } else { "disk.used_percent".into() },
                            metric_type: "sysmon".into(),
                            kind: 1,
                            unit: "%".into(),
                            tags: vec![e("core", (j % 16).to_string()), e("mount", format!("/m{}", j / 16)), e("host_id", format!("host-{}", i % 50))],
                            points: vec![MetricPoint {
                                value: (i * j % 100) as f64,
                                raw_value: (i * j % 100).to_string(),
                                raw_value_type: 1,
                                observed_at_unix_nano: 1_781_222_400_000_000_000 + i as u64 * 1000,
                                ..Default::default()
                            }],
                            ..Default::default()
                        })
                        .collect();
                    let batch = MetricBatch {
                        schema_version: SCHEMA_VERSION.into(),
                        resource: Some(MetricResource {
                            agent_id: format!("agent-{}", i % 50),
                            gateway_id: "gw-1".into(),
                            partition: "default".into(),
                            host_ip: format!("10.0.0.{}", i % 50),
                            ..Default::default()
                        }),
                        ingest_identity: Some(IngestIdentity {
                            source: "sysmon".into(),
                            payload_kind: SCHEMA_VERSION.into(),
                            producer_id: format!("agent-{}", i % 50),
                            producer_kind: "agent".into(),
                            ..Default::default()
                        }),
                        metrics,
                        ..Default::default()
                    };
                    ("bench.metrics.sysmon".to_owned(), batch.encode_to_vec())
                })
                .collect();
            (items, (n * METRICS_PER_BATCH) as i64)
        }
        "logs" => (
            (0..n)
                .map(|i| {
                    let p = format!(
                        r#"{{"message":"connection from 10.0.{}.{} refused","severity":"High","timestamp":{},"host":"device-{}","facility":"auth"}}"#,
                        i % 250,
                        i % 200,
                        1_700_000_000 + i,
                        i % 50
                    );
                    ("bench.logs.syslog.processed".to_owned(), p.into_bytes())
                })
                .collect(),
            n as i64,
        ),
        "events" => (
            (0..n)
                .map(|i| {
                    let p = format!(
                        r#"{{"id":"00000000-0000-4000-8000-{i:012x}","time":"2026-05-01T12:00:00Z","class_uid":1008,"category_uid":1,"type_uid":100801,"activity_id":1,"severity_id":2,"message":"event {i}","metadata":{{"version":"1.7.0"}},"device":{{"hostname":"h{}"}}}}"#,
                        i % 100
                    );
                    ("bench.events.ocsf.processed".to_owned(), p.into_bytes())
                })
                .collect(),
            n as i64,
        ),
        "sweep" => (
            (0..n)
                .map(|i| {
                    let p = format!(
                        r#"{{"host_ip":"10.{}.{}.{}","gateway_id":"gw","agent_id":"a1","partition":"default","icmp_available":true,"icmp_response_time_ns":1500000,"last_sweep_time":"2024-01-01T00:00:00Z","execution_id":"e1","tcp_ports_scanned":[22,80,443],"tcp_ports_open":[22]}}"#,
                        i / 65536 % 256,
                        i / 256 % 256,
                        i % 256
                    );
                    ("bench.sweep.results".to_owned(), p.into_bytes())
                })
                .collect(),
            n as i64,
        ),
        "netflow" => (
            (0..n)
                .map(|i| {
                    let f = db_event_writer::processor::proto::flow::FlowMessage {
                        r#type: 3,
                        time_received_ns: 1_705_363_200_000_000_000 + i as u64,
                        src_addr: vec![10, 1, (i / 256 % 256) as u8, (i % 256) as u8],
                        dst_addr: vec![198, 51, 100, 50],
                        src_port: 40_000 + (i % 20_000) as u32,
                        dst_port: 443,
                        proto: 6,
                        bytes: 1500,
                        packets: 3,
                        ..Default::default()
                    };
                    ("bench.flows.raw.netflow".to_owned(), f.encode_to_vec())
                })
                .collect(),
            n as i64,
        ),
        "otel" => {
            use db_event_writer::processor::proto::common::{AnyValue, KeyValue, Resource, any_value};
            use db_event_writer::processor::proto::metrics::*;
            let points = 10;
            let items = (0..n)
                .map(|i| {
                    let point = |j: usize| NumberDataPoint {
                        attributes: vec![KeyValue {
                            key: "http.route".into(),
                            value: Some(AnyValue { value: Some(any_value::Value::StringValue(format!("/r{j}"))) }),
                        }],
                        time_unix_nano: 1_700_000_000_000_000_000 + i as u64 * 1000,
                        value: Some(number_data_point::Value::AsDouble(j as f64)),
                        ..Default::default()
                    };
                    let request = ExportMetricsServiceRequest {
                        resource_metrics: vec![ResourceMetrics {
                            resource: Some(Resource {
                                attributes: vec![KeyValue {
                                    key: "service.name".into(),
                                    value: Some(AnyValue { value: Some(any_value::Value::StringValue("api".into())) }),
                                }],
                            }),
                            scope_metrics: vec![ScopeMetrics {
                                scope: None,
                                metrics: vec![Metric {
                                    name: "http.server.duration".into(),
                                    unit: "ms".into(),
                                    data: Some(metric::Data::Gauge(Gauge { data_points: (0..points).map(point).collect() })),
                                    ..Default::default()
                                }],
                            }],
                        }],
                    };
                    ("bench.otel.metrics.raw".to_owned(), request.encode_to_vec())
                })
                .collect();
            (items, (n * points) as i64)
        }
        other => panic!("unknown processor {other}"),
    }
}

/// Metrics in one MetricBatch of the "metrics" benchmark.
const METRICS_PER_BATCH: usize = 20;

fn table_of(processor: &str) -> &'static str {
    match processor {
        "telemetry" | "metrics" => "timeseries_metrics",
        "logs" => "logs",
        "events" => "ocsf_events",
        "sweep" => "sweep_results",
        "netflow" => "ocsf_network_activity",
        "otel" => "otel_metric_points",
        _ => unreachable!(),
    }
}

async fn end_to_end(processor: &str, n: usize, batch_size: Option<usize>) -> Run {
    let nats = NatsServer::start();
    let db = TestDb::create().await;
    let dir = TempDir::new("bench");
    let mut stream = TestStream::of(
        match processor {
            "telemetry" | "metrics" => "telemetry",
            "logs" => "logs",
            "events" => "events",
            "sweep" => "sweep",
            "netflow" => "netflow",
            _ => "otel",
        },
        "bench",
    );
    // The processor's default batch settings unless --batch-size says otherwise.
    use db_event_writer::processor::ProcessorKind as K;
    let kind = match processor {
        "telemetry" | "metrics" => K::Telemetry,
        "logs" => K::Logs,
        "events" => K::Events,
        "sweep" => K::Sweep,
        "netflow" => K::Netflow,
        _ => K::Otel,
    };
    let defaults = db_event_writer::processor::info(kind).batch;
    stream.batch_size = batch_size.unwrap_or(defaults.size);
    stream.batch_timeout = humantime::format_duration(defaults.timeout).to_string().leak();
    let path = dir.path().join("streams.toml");
    std::fs::write(&path, config_text(&nats.url, &db.url, std::slice::from_ref(&stream))).unwrap();
    migrate(&db_event_writer::load_config(&path).unwrap()).await;
    let js = nats.jetstream().await;
    create_stream(&js, &stream).await;
    let (items, rows) = payloads(processor, n);
    publish_all(&js, items).await;

    // Done = the consumer drained: every message acked, and a message is acked only after its rows committed.
    // Asking JetStream is cheap; counting a growing table 20 times a second would cost PostgreSQL a good part
    // of the load being measured. The rows are counted once, at the end.
    let (nats0, pg0) = (usage(nats.pid()).0, cpu_of_command("postgres"));
    let started = Instant::now();
    let daemon = Daemon::spawn_logging(&path, dir.path().join("daemon.log"), "info");
    let pid = daemon.child.id();
    wait_drained(&js, &stream, Duration::from_secs(600)).await;
    let seconds = started.elapsed().as_secs_f64();
    let (cpu_seconds, peak_rss_mib) = usage(pid);
    let (nats_cpu_seconds, pg_cpu_seconds) = (usage(nats.pid()).0 - nats0, cpu_of_command("postgres") - pg0);
    assert_eq!(db.count(table_of(processor)).await, rows, "{processor}: every row, once");
    daemon.signal("TERM");
    Run {
        batch_size: stream.batch_size,
        messages: n,
        rows,
        seconds,
        cpu_seconds,
        nats_cpu_seconds,
        pg_cpu_seconds,
        peak_rss_mib,
    }
}

/// A telemetry backlog of `n` messages drained by `instances` release daemons on one durable consumer: msgs/s.
async fn drain_with(instances: usize, n: usize) -> f64 {
    let nats = NatsServer::start();
    let db = TestDb::create().await;
    let dir = TempDir::new("bench-instances");
    let mut stream = TestStream::of("telemetry", "bench");
    let defaults = db_event_writer::processor::info(db_event_writer::processor::ProcessorKind::Telemetry).batch;
    stream.batch_size = defaults.size;
    stream.batch_timeout = humantime::format_duration(defaults.timeout).to_string().leak();
    let path = dir.path().join("streams.toml");
    std::fs::write(&path, config_text(&nats.url, &db.url, std::slice::from_ref(&stream))).unwrap();
    migrate(&db_event_writer::load_config(&path).unwrap()).await;
    let js = nats.jetstream().await;
    create_stream(&js, &stream).await;
    let (items, rows) = payloads("telemetry", n);
    publish_all(&js, items).await;
    let started = Instant::now();
    let daemons: Vec<Daemon> = (0..instances)
        .map(|i| Daemon::spawn_logging(&path, dir.path().join(format!("daemon-{i}.log")), "info"))
        .collect();
    wait_drained(&js, &stream, Duration::from_secs(600)).await;
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(db.count(table_of("telemetry")).await, rows, "{instances} instances: every row, once");
    for d in &daemons {
        d.signal("TERM");
    }
    n as f64 / seconds
}

/// The processor's rows written straight into its table by its own write path, 50,000 rows per transaction, no
/// NATS: (rows/s, PostgreSQL CPU µs per row).
async fn ceiling(processor: &str, items: &[(String, Vec<u8>)]) -> (f64, f64) {
    use db_event_writer::processor::{events::Events, logs::Logs, netflow::Netflow, otel::Otel, sweep::Sweep};
    match processor {
        "telemetry" | "metrics" => {
            ceiling_of(Telemetry::new(&db_event_writer::config::DatabaseConfig::for_schema("platform")), items).await
        }
        "logs" => ceiling_of(Logs::new(&db_event_writer::config::DatabaseConfig::for_schema("platform")), items).await,
        "events" => {
            ceiling_of(Events::new(&db_event_writer::config::DatabaseConfig::for_schema("platform")), items).await
        }
        "sweep" => {
            ceiling_of(Sweep::new(&db_event_writer::config::DatabaseConfig::for_schema("platform")), items).await
        }
        "netflow" => {
            ceiling_of(Netflow::new(&db_event_writer::config::DatabaseConfig::for_schema("platform")), items).await
        }
        "otel" => ceiling_of(Otel::new(&db_event_writer::config::DatabaseConfig::for_schema("platform")), items).await,
        other => panic!("unknown processor {other}"),
    }
}

async fn ceiling_of<P: Processor>(p: P, items: &[(String, Vec<u8>)]) -> (f64, f64) {
    let db = TestDb::create().await;
    let config = config("nats://127.0.0.1:1", &db.url, &[TestStream::telemetry("x")]);
    migrate(&config).await;
    let mut rows = Vec::with_capacity(items.len());
    let published = chrono::Utc::now();
    for (i, (subject, payload)) in items.iter().enumerate() {
        let msg = Incoming::bare(subject, payload, published, "bench", i as u64 + 1);
        p.decode(&msg, &mut db_event_writer::processor::Rows::new(&mut rows, db_event_writer::processor::Limits::NONE))
            .unwrap();
    }
    let pool = db_event_writer::db::pool(&config.database).unwrap();
    let mut client = pool.get().await.unwrap();
    let pg0 = cpu_of_command("postgres");
    let started = Instant::now();
    for chunk in rows.chunks(50_000) {
        let tx = client.transaction().await.unwrap();
        p.write(&tx, chunk).await.unwrap();
        tx.commit().await.unwrap();
    }
    let seconds = started.elapsed().as_secs_f64();
    let pg_us = (cpu_of_command("postgres") - pg0) * 1e6 / rows.len() as f64;
    (rows.len() as f64 / seconds, pg_us)
}

/// The telemetry rows, decoded once (the INSERT baseline loads exactly these).
fn telemetry_rows(n: usize) -> Vec<db_event_writer::processor::telemetry::MetricRow> {
    let p = Telemetry::new(&db_event_writer::config::DatabaseConfig::for_schema("platform"));
    let mut rows = Vec::with_capacity(n);
    let published = chrono::Utc::now();
    for i in 0..n {
        let payload = metric(i);
        let msg = Incoming::bare("bench", &payload, published, "bench", i as u64);
        p.decode(&msg, &mut db_event_writer::processor::Rows::new(&mut rows, db_event_writer::processor::Limits::NONE))
            .unwrap();
    }
    rows
}

/// One INSERT per row in one transaction, awaited one by one (the Go writer's method): rows/s.
async fn insert_baseline(n: usize) -> f64 {
    let db = TestDb::create().await;
    migrate(&config("nats://127.0.0.1:1", &db.url, &[TestStream::telemetry("x")])).await;
    let rows = telemetry_rows(n);
    let mut client = db.client().await;
    let started = Instant::now();
    let tx = client.transaction().await.unwrap();
    let stmt = tx
        .prepare(
            "INSERT INTO platform.timeseries_metrics (timestamp, gateway_id, agent_id, metric_name, metric_type, \
             device_id, value, unit, tags, series_key) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::text::jsonb, $10) \
             ON CONFLICT DO NOTHING",
        )
        .await
        .unwrap();
    for r in &rows {
        tx.execute(
            &stmt,
            &[
                &r.timestamp,
                &r.gateway_id,
                &r.agent_id,
                &r.metric_name,
                &r.metric_type,
                &r.device_id,
                &r.value,
                &r.unit,
                &r.tags,
                &r.series_key,
            ],
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    n as f64 / started.elapsed().as_secs_f64()
}

/// Publishes telemetry at `rate`/s for `secs`, each sample stamped with its publish time; latency is the row's
/// `created_at` (its transaction's start, just before commit) minus that stamp. Returns (p50, p99) in ms.
async fn latency(rate: usize, secs: u64) -> (f64, f64) {
    let nats = NatsServer::start();
    let db = TestDb::create().await;
    let dir = TempDir::new("bench-latency");
    let mut stream = TestStream::telemetry("bench");
    // Telemetry's defaults (1 s timeout).
    let defaults = db_event_writer::processor::info(db_event_writer::processor::ProcessorKind::Telemetry).batch;
    stream.batch_size = defaults.size;
    stream.batch_timeout = humantime::format_duration(defaults.timeout).to_string().leak();
    let path = dir.path().join("streams.toml");
    std::fs::write(&path, config_text(&nats.url, &db.url, std::slice::from_ref(&stream))).unwrap();
    migrate(&db_event_writer::load_config(&path).unwrap()).await;
    let js = nats.jetstream().await;
    create_stream(&js, &stream).await;
    let daemon = Daemon::spawn_logging(&path, dir.path().join("daemon.log"), "info");
    // Steady-state latency: publishing starts once the daemon is pulling (its pull request waits at the server).
    wait_until(Duration::from_secs(30), "the daemon pulling", || async {
        consumer_state_waiting(&js, &stream).await > 0
    })
    .await;
    let tick = Duration::from_millis(10);
    let per_tick = (rate / 100).max(1);
    let start = Instant::now();
    let mut sent = 0;
    while start.elapsed() < Duration::from_secs(secs) {
        let t = Instant::now();
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let items = (sent..sent + per_tick).map(|i| {
            let p = format!(
                r#"{{"timestamp":"{now}","gateway_id":"gw","metric_name":"lat","device_id":"d{i}","value":1}}"#
            );
            ("bench.latency".to_owned(), p.into_bytes())
        });
        for (subject, payload) in items {
            let _ = js.publish(subject, payload.into()).await.unwrap();
        }
        sent += per_tick;
        if let Some(rest) = tick.checked_sub(t.elapsed()) {
            tokio::time::sleep(rest).await;
        }
    }
    wait_until(Duration::from_secs(60), "latency rows", || async {
        db.count("timeseries_metrics").await >= sent as i64
    })
    .await;
    daemon.signal("TERM");
    let row = db
        .client()
        .await
        .query_one(
            // The messages of the last batch_timeout wait out the timeout because the load stops (the last batch
            // never fills), which steady traffic never does: they are left out.
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms), percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) \
             FROM (SELECT extract(epoch FROM created_at - timestamp) * 1000 AS ms FROM platform.timeseries_metrics \
                   WHERE timestamp < (SELECT max(timestamp) FROM platform.timeseries_metrics) - interval '1 second') t",
            &[],
        )
        .await
        .unwrap();
    (row.get::<_, f64>(0), row.get::<_, f64>(1))
}

/// Pull requests waiting at the server for the consumer (0 while nobody pulls).
async fn consumer_state_waiting(js: &async_nats::jetstream::Context, s: &TestStream) -> usize {
    match js.get_stream(&s.jetstream).await {
        Ok(stream) => stream.consumer_info(&s.consumer).await.map_or(0, |i| i.num_waiting),
        Err(_) => 0,
    }
}

fn command_output(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// One processor's repetitions: end to end, and the ceiling measured right after each.
struct Measured {
    runs: Vec<Run>,
    ceilings: Vec<(f64, f64)>,
}

impl Measured {
    fn rows_per_sec(&self) -> (f64, f64, f64) {
        median(&self.runs.iter().map(Run::rows_per_sec).collect::<Vec<_>>())
    }
    fn ceiling(&self) -> (f64, f64, f64) {
        median(&self.ceilings.iter().map(|c| c.0).collect::<Vec<_>>())
    }
    fn of(&self, f: impl Fn(&Run) -> f64) -> f64 {
        median(&self.runs.iter().map(f).collect::<Vec<_>>()).0
    }
    /// Each repetition's end-to-end rate over the ceiling measured right after it.
    fn ratios(&self) -> Vec<f64> {
        self.runs.iter().zip(&self.ceilings).map(|(r, c)| r.rows_per_sec() / c.0).collect()
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let o = options();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mut results: Vec<(String, Measured)> = Vec::new();
    for p in o.processors.iter().filter(|p| !["ingest", "instances", "isolation"].contains(&p.as_str())) {
        let n = match p.as_str() {
            "telemetry" => o.messages,
            // Ten points (rows) per message.
            "otel" => (o.messages / 8).max(1000),
            // Twenty metrics (rows) per message.
            "metrics" => (o.messages / 10).max(1000),
            _ => (o.messages / 2).max(1000),
        };
        let mut m = Measured { runs: Vec::new(), ceilings: Vec::new() };
        for k in 1..=o.repeat {
            eprintln!("bench: {p} ({k}/{}): {n} messages end to end ...", o.repeat);
            let run = end_to_end(p, n, o.batch_size).await;
            let (items, _) = payloads(p, n);
            let c = ceiling(p, &items).await;
            eprintln!(
                "bench: {p}: {:.0} msgs/s, {:.0} rows/s (ceiling {:.0} rows/s), CPU µs/msg daemon {:.1} nats {:.1} pg {:.1}, RSS {:.0} MiB",
                run.msgs_per_sec(),
                run.rows_per_sec(),
                c.0,
                run.cpu_us_per_msg(),
                run.nats_us_per_msg(),
                run.pg_us_per_msg(),
                run.peak_rss_mib
            );
            m.runs.push(run);
            m.ceilings.push(c);
        }
        results.push((p.clone(), m));
    }
    let telemetry = results.iter().find(|(p, _)| p == "telemetry").map(|(_, m)| m);
    let (baseline, lat) = if let Some(t) = telemetry {
        eprintln!("bench: telemetry baseline (one INSERT per row) ...");
        let baseline = insert_baseline((o.messages / 10).max(1000)).await;
        let rate = (t.of(Run::msgs_per_sec) * 0.2) as usize;
        eprintln!("bench: latency at {rate} msgs/s for {} s ...", o.latency_secs);
        let lat = latency(rate, o.latency_secs).await;
        (Some(baseline), Some((rate, lat)))
    } else {
        (None, None)
    };

    let ingest = if o.processors.iter().any(|p| p == "ingest") {
        eprintln!("bench: HTTP ingest: 1,000 requests/s for {} s, then the maximum rate ...", o.ingest_secs);
        Some(ingest_load(o.ingest_secs).await)
    } else {
        None
    };

    let isolation = if o.processors.iter().any(|p| p == "isolation") {
        eprintln!(
            "bench: isolation: events at {EVENTS_RATE}/s alone and beside a {}-message telemetry drain ...",
            o.flood
        );
        Some(isolation(o.flood).await)
    } else {
        None
    };

    let instances: Vec<(usize, f64)> = if o.processors.iter().any(|p| p == "instances") {
        let mut rates = Vec::new();
        for k in 1..=3 {
            eprintln!("bench: telemetry backlog of {} messages drained by {k} instance(s) ...", o.messages);
            let mut runs: Vec<f64> = Vec::new();
            for _ in 0..o.repeat {
                runs.push(drain_with(k, o.messages).await);
            }
            let rate = median(&runs).0;
            eprintln!("bench: {k} instance(s): {rate:.0} msgs/s");
            rates.push((k, rate));
        }
        rates
    } else {
        Vec::new()
    };

    let pg = db_event_writer_pg_version().await;
    let nats = command_output(nats_server_bin().to_str().unwrap_or("nats-server"), &["--version"]);
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let mut md = String::new();
    let _ = writeln!(md, "# Benchmarks\n");
    let _ = writeln!(
        md,
        "Measured {} on this project's machine: {cores} cores, {pg}, {nats}; PostgreSQL and nats-server on the same box.",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")
    );
    let _ = writeln!(
        md,
        "Command: `make bench{}`\n",
        if args.is_empty() { String::new() } else { format!(" BENCH_ARGS=\"{}\"", args.join(" ")) }
    );
    let _ = writeln!(
        md,
        "End to end: messages published first, then the release daemon started and timed until every row is committed and every message acked (the consumer drained); start-up included. Every guarantee on: ack after commit, idempotent writes, the ledger for netflow. Ceiling: the same rows, decoded once, written by the processor's own write path (binary COPY for telemetry and logs, `unnest` INSERT … ON CONFLICT for the others) in 50,000-row transactions, no NATS, measured right after each end-to-end run. Each measurement {} times; medians, with min–max.\n",
        o.repeat
    );
    let _ = writeln!(
        md,
        "| processor | batch | messages | rows | msgs/s | rows/s (min–max) | ceiling rows/s (min–max) | ratio | ratio per run |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|---|");
    for (p, m) in &results {
        let (rows, rmin, rmax) = m.rows_per_sec();
        let (ceiling, cmin, cmax) = m.ceiling();
        let ratios: Vec<String> = m.ratios().iter().map(|r| format!("{r:.2}")).collect();
        let _ = writeln!(
            md,
            "| {p} | {} | {} | {} | {:.0} | {rows:.0} ({rmin:.0}–{rmax:.0}) | {ceiling:.0} ({cmin:.0}–{cmax:.0}) | {:.2} | {} |",
            m.runs[0].batch_size,
            m.runs[0].messages,
            m.runs[0].rows,
            m.of(Run::msgs_per_sec),
            rows / ceiling,
            ratios.join(", ")
        );
    }
    let _ = writeln!(
        md,
        "\nWhere the CPU goes, per message end to end (medians). \"CPU bound\" is the rate {cores} cores would give if they did nothing but this work, perfectly overlapped: the end-to-end rate cannot exceed it.\n"
    );
    let _ = writeln!(
        md,
        "| processor | daemon µs/msg | nats-server µs/msg | PostgreSQL µs/msg | total | CPU bound msgs/s | achieved / bound | PostgreSQL µs/row at the ceiling | daemon peak RSS MiB |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (p, m) in &results {
        let (d, n, g) = (m.of(Run::cpu_us_per_msg), m.of(Run::nats_us_per_msg), m.of(Run::pg_us_per_msg));
        let bound = cores as f64 * 1e6 / (d + n + g);
        let pg_at_ceiling = median(&m.ceilings.iter().map(|c| c.1).collect::<Vec<_>>()).0;
        let rss = m.runs.iter().map(|r| r.peak_rss_mib).fold(0.0, f64::max);
        let _ = writeln!(
            md,
            "| {p} | {d:.1} | {n:.1} | {g:.1} | {:.1} | {bound:.0} | {:.2} | {pg_at_ceiling:.1} | {rss:.0} |",
            d + n + g,
            m.of(Run::msgs_per_sec) / bound
        );
    }
    if let (Some(t), Some(baseline)) = (telemetry, baseline) {
        let _ = writeln!(
            md,
            "\nTelemetry against one INSERT per row in one transaction (the Go writer's method): {baseline:.0} rows/s; the daemon end to end is {:.1}× that.",
            t.rows_per_sec().0 / baseline
        );
    }
    if let Some((rate, (p50, p99))) = lat {
        let _ = writeln!(
            md,
            "\nLatency, publish → commit, telemetry at {rate} msgs/s (20% of the measured rate) for {} s with batch_timeout 1 s, from the moment the daemon is pulling, leaving out the messages of the last second (the last batch waits out its timeout because the load stops): p50 {p50:.0} ms, p99 {p99:.0} ms.",
            o.latency_secs
        );
    }
    if let Some(l) = &ingest {
        let _ = writeln!(
            md,
            "\nHTTP ingest (`POST /v1/events/{{subject}}`, one telemetry event per request, HTTP/1.1 keep-alive, the daemon writing them as they come): at a steady 1,000 requests/s for {} s, {} requests, 202 in p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (measured from each request's scheduled time; target p99 < 10 ms); maximum sustained rate with {} concurrent connections for 5 s: {:.0} requests/s. Every 202 became exactly one row.",
            o.ingest_secs, l.steady_requests, l.p50_ms, l.p99_ms, l.max_ms, LOAD_CONNECTIONS, l.max_rate
        );
        let _ = writeln!(
            md,
            "\nHTTP ingest waiting for the commit (`?wait=persisted`, the same stream with batch_timeout 200 ms): at a steady 200 requests/s for {} s, {} requests, every one 200 `persisted`, in p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (from each request's scheduled time; target p99 ≤ 50 ms).",
            o.ingest_secs, l.wait_requests, l.wait_p50_ms, l.wait_p99_ms, l.wait_max_ms
        );
    }
    if !instances.is_empty() {
        let one = instances[0].1;
        let cells: Vec<String> =
            instances.iter().map(|(k, r)| format!("{k} instance(s) {r:.0} msgs/s ({:.2}× one)", r / one)).collect();
        let _ = writeln!(
            md,
            "\nMany instances on one durable consumer (telemetry, {} messages published first, the release daemons started together, timed until the consumer drained; every row once): {}. On {cores} cores shared with nats-server and PostgreSQL more instances add no CPU, so the point is that the rate holds (no collapse from redeliveries or contention), not that it grows.",
            o.messages,
            cells.join(", ")
        );
    }
    if let Some(i) = &isolation {
        let _ = writeln!(
            md,
            "\nShard isolation (one daemon, the shipped pool of 8, each stream with its processor's batch settings): events at a steady {} msgs/s, publish → commit p50 {:.0} ms, p99 {:.0} ms alone; while telemetry drains a backlog of {} messages p50 {:.0} ms, p99 {:.0} ms (target p99 ≤ events' batch_timeout {} ms + 200 ms). Telemetry drains at {:.0} msgs/s alone and {:.0} msgs/s beside the events ({:+.1}%; target within 10%). Every message once.",
            EVENTS_RATE,
            i.alone.0,
            i.alone.1,
            o.flood,
            i.flooded.0,
            i.flooded.1,
            i.events_timeout_ms,
            i.drain_alone,
            i.drain_flooded,
            (i.drain_flooded / i.drain_alone - 1.0) * 100.0
        );
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md");
    let previous = std::fs::read_to_string(&path).unwrap_or_default();
    let notes = previous.split_once("\n## Notes").map(|(_, rest)| format!("\n## Notes{rest}")).unwrap_or_default();
    std::fs::write(&path, format!("{md}{notes}")).unwrap();
    println!("{md}");
    eprintln!("bench: wrote {}", path.display());
}

/// Concurrent connections of the maximum-rate run.
const LOAD_CONNECTIONS: usize = 16;

struct IngestLoad {
    steady_requests: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    max_rate: f64,
    wait_requests: usize,
    wait_p50_ms: f64,
    wait_p99_ms: f64,
    wait_max_ms: f64,
}

type Sender = hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>;

async fn connection(port: u16) -> Sender {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let _ = tcp.set_nodelay(true);
    let (send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    send
}

/// POSTs one payload on `send`; the status.
async fn post(send: &mut Sender, path: &str, body: Vec<u8>) -> u16 {
    send.ready().await.unwrap();
    let request = http::Request::post(path)
        .header("host", "127.0.0.1")
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let response = send.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let _ = http_body_util::BodyExt::collect(response.into_body()).await;
    status
}

/// The ingest front under a steady 1,000 requests/s (latency of each 202 from its scheduled time, so a stall
/// counts against every request it delays), then closed-loop on 16 connections for the maximum rate.
async fn ingest_load(steady_secs: u64) -> IngestLoad {
    let nats = NatsServer::start();
    let db = TestDb::create().await;
    let dir = TempDir::new("bench-ingest");
    let stream = TestStream::telemetry("bench");
    let port = free_port();
    let text = config_text(&nats.url, &db.url, std::slice::from_ref(&stream))
        + &format!("\n[ingest]\nlisten = \"127.0.0.1:{port}\"\n");
    let path = dir.path().join("streams.toml");
    std::fs::write(&path, text).unwrap();
    migrate(&db_event_writer::load_config(&path).unwrap()).await;
    let daemon = Daemon::spawn_logging(&path, dir.path().join("daemon.log"), "warn");
    wait_until(Duration::from_secs(30), "the ingest listener", || async {
        http_get(port, "/v1/openapi.json").await.is_some_and(|(s, _)| s == 200)
    })
    .await;
    let url = format!("/v1/events/{}", stream.subject("load"));
    let counter = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let body = {
        let counter = counter.clone();
        move || metric(counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
    };

    let (p50_ms, p99_ms, max_ms) = steady(port, &url, 1000, steady_secs, 202, &body).await;
    let total = (steady_secs * 1000) as usize;
    // Waiting for the commit: 200 requests/s with ?wait=persisted, each answered 200 once its row is committed.
    let waited = format!("{url}?wait=persisted");
    let (wait_p50_ms, wait_p99_ms, wait_max_ms) = steady(port, &waited, 200, steady_secs, 200, &body).await;

    // Maximum: closed loop, each connection sending its next request as soon as the last is answered.
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let until = Instant::now() + Duration::from_secs(5);
    let workers: Vec<_> = (0..LOAD_CONNECTIONS)
        .map(|_| {
            let (accepted, url, body) = (accepted.clone(), url.clone(), body.clone());
            tokio::spawn(async move {
                let mut send = connection(port).await;
                while Instant::now() < until {
                    if post(&mut send, &url, body()).await == 202 {
                        accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let began = Instant::now();
    for w in workers {
        w.await.unwrap();
    }
    let max_rate = accepted.load(std::sync::atomic::Ordering::Relaxed) as f64 / began.elapsed().as_secs_f64();

    let posted = counter.load(std::sync::atomic::Ordering::Relaxed) as i64;
    wait_drained(&nats.jetstream().await, &stream, Duration::from_secs(120)).await;
    assert_eq!(db.count("timeseries_metrics").await, posted, "every accepted request is one row");
    daemon.signal("TERM");
    IngestLoad {
        steady_requests: total,
        p50_ms,
        p99_ms,
        max_ms,
        max_rate,
        wait_requests: (steady_secs * 200) as usize,
        wait_p50_ms,
        wait_p99_ms,
        wait_max_ms,
    }
}

/// `rate` requests/s for `secs` on a pool of keep-alive connections, each request on a free connection; every
/// answer must be `expected`. Latency p50, p99 and max in ms, from each request's scheduled time (so a stall
/// counts against every request it delays).
async fn steady(
    port: u16,
    url: &str,
    rate: u64,
    secs: u64,
    expected: u16,
    body: &(impl Fn() -> Vec<u8> + Clone + Send + 'static),
) -> (f64, f64, f64) {
    let pool = std::sync::Arc::new(tokio::sync::Mutex::new(Vec::new()));
    for _ in 0..32 {
        pool.lock().await.push(connection(port).await);
    }
    let start = Instant::now();
    let total = (secs * rate) as usize;
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        let due = start + Duration::from_micros(i as u64 * 1_000_000 / rate);
        tokio::time::sleep_until(due.into()).await;
        let (pool, url, payload) = (pool.clone(), url.to_owned(), body());
        tasks.push(tokio::spawn(async move {
            let mut send = match pool.lock().await.pop() {
                Some(s) => s,
                None => connection(port).await,
            };
            let status = post(&mut send, &url, payload).await;
            let took = due.elapsed().as_secs_f64() * 1000.0;
            pool.lock().await.push(send);
            (status, took)
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    for t in tasks {
        let (status, ms) = t.await.unwrap();
        assert_eq!(status, expected, "a steady-load request to {url} was answered {status}");
        latencies.push(ms);
    }
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    (pct(0.5), pct(0.99), latencies[latencies.len() - 1])
}

async fn db_event_writer_pg_version() -> String {
    let client = connect(&admin_url()).await;
    let v: String = client.query_one("SHOW server_version", &[]).await.unwrap().get(0);
    format!("PostgreSQL {v}")
}

/// Events per second of the quiet stream in the isolation run.
const EVENTS_RATE: u64 = 100;

struct Isolation {
    /// Events' publish → commit p50, p99 (ms), alone and during the flood.
    alone: (f64, f64),
    flooded: (f64, f64),
    drain_alone: f64,
    drain_flooded: f64,
    events_timeout_ms: u128,
}

/// An OCSF event whose `time` is now, id `n` (unique across the run).
fn timed_event(n: u64) -> Vec<u8> {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    format!(
        r#"{{"id":"00000000-0000-4000-8000-{n:012x}","time":"{now}","class_uid":1008,"category_uid":1,"type_uid":100801,"activity_id":1,"severity_id":2,"message":"quiet {n}","metadata":{{"version":"1.7.0"}}}}"#
    )
    .into_bytes()
}

/// Publishes events at EVENTS_RATE from id `first` until `stop`; how many.
async fn publish_events(
    js: async_nats::jetstream::Context,
    subject: String,
    first: u64,
    stop: tokio_util::sync::CancellationToken,
) -> u64 {
    let start = Instant::now();
    let mut n = 0;
    while !stop.is_cancelled() {
        let due = start + Duration::from_micros(n * 1_000_000 / EVENTS_RATE);
        tokio::time::sleep_until(due.into()).await;
        let ack = js.publish(subject.clone(), timed_event(first + n).into()).await.unwrap();
        ack.await.unwrap();
        n += 1;
    }
    n
}

/// Events' latency (p50, p99 ms) over the ids in `ids`: commit (`created_at`, the transaction's time) − `time`.
async fn events_latency(db: &TestDb, ids: std::ops::Range<u64>) -> (f64, f64) {
    let id = |n: u64| format!("00000000-0000-4000-8000-{n:012x}");
    let row = db
        .client()
        .await
        .query_one(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms), percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) \
             FROM (SELECT extract(epoch FROM created_at - time) * 1000 AS ms FROM platform.ocsf_events \
                   WHERE id::text >= $1 AND id::text < $2) t",
            &[&id(ids.start), &id(ids.end)],
        )
        .await
        .unwrap();
    (row.get::<_, f64>(0), row.get::<_, f64>(1))
}

/// The quiet-stream run: events alone, a telemetry backlog of `flood` drained alone, then the two together.
async fn isolation(flood: usize) -> Isolation {
    let nats = NatsServer::start();
    let db = TestDb::create().await;
    let dir = TempDir::new("bench-isolation");
    let with_defaults = |mut s: TestStream, kind| {
        let d = db_event_writer::processor::info(kind).batch;
        s.batch_size = d.size;
        s.batch_timeout = humantime::format_duration(d.timeout).to_string().leak();
        (s, d.timeout)
    };
    use db_event_writer::processor::ProcessorKind;
    let (hot, _) = with_defaults(TestStream::telemetry("flood"), ProcessorKind::Telemetry);
    let (quiet, events_timeout) = with_defaults(TestStream::of("events", "quiet"), ProcessorKind::Events);
    let streams = [hot.clone(), quiet.clone()];
    let text = config_text(&nats.url, &db.url, &streams).replace("pool_size = 4", "pool_size = 8");
    let path = dir.path().join("streams.toml");
    std::fs::write(&path, text).unwrap();
    migrate(&db_event_writer::load_config(&path).unwrap()).await;
    let js = nats.jetstream().await;
    create_stream(&js, &hot).await;
    create_stream(&js, &quiet).await;
    let events_subject = quiet.subject("events.ocsf.processed");
    let run = |log: &str| Daemon::spawn_logging(&path, dir.path().join(log), "warn");
    let pulling = |s: &TestStream| {
        let (js, s) = (js.clone(), s.clone());
        async move {
            wait_until(Duration::from_secs(30), "the daemon pulling", || async {
                consumer_state_waiting(&js, &s).await > 0
            })
            .await
        }
    };

    // Events alone, 10 s.
    let mut daemon = run("alone.log");
    pulling(&quiet).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let publisher = tokio::spawn(publish_events(js.clone(), events_subject.clone(), 0, stop.clone()));
    tokio::time::sleep(Duration::from_secs(10)).await;
    stop.cancel();
    let alone_n = publisher.await.unwrap();
    wait_drained(&js, &quiet, Duration::from_secs(60)).await;
    daemon.signal("TERM");
    daemon.wait_exit(Duration::from_secs(60));
    let alone = events_latency(&db, 0..alone_n).await;

    // Telemetry's backlog drained alone.
    let drain = |offset: usize, log: &'static str| {
        let (js, hot, db, run) = (js.clone(), hot.clone(), &db, &run);
        async move {
            let subject = hot.subject("flood");
            publish_all(&js, (offset..offset + flood).map(|i| (subject.clone(), metric(i)))).await;
            let daemon = run(log);
            let started = Instant::now();
            wait_drained(&js, &hot, Duration::from_secs(900)).await;
            let rate = flood as f64 / started.elapsed().as_secs_f64();
            let _ = db;
            (daemon, rate)
        }
    };
    let (mut daemon, drain_alone) = drain(0, "drain.log").await;
    daemon.signal("TERM");
    daemon.wait_exit(Duration::from_secs(60));

    // Both: the events published from the moment the backlog's daemon starts until the backlog is drained.
    let stop = tokio_util::sync::CancellationToken::new();
    let first = 1_000_000_000u64;
    let subject = hot.subject("flood");
    publish_all(&js, (flood..2 * flood).map(|i| (subject.clone(), metric(i)))).await;
    let daemon = run("both.log");
    let started = Instant::now();
    let publisher = tokio::spawn(publish_events(js.clone(), events_subject, first, stop.clone()));
    wait_drained(&js, &hot, Duration::from_secs(900)).await;
    let drain_flooded = flood as f64 / started.elapsed().as_secs_f64();
    stop.cancel();
    let flooded_n = publisher.await.unwrap();
    wait_drained(&js, &quiet, Duration::from_secs(60)).await;
    daemon.signal("TERM");
    assert_eq!(db.count("timeseries_metrics").await, 2 * flood as i64, "every telemetry message once");
    assert_eq!(db.count("ocsf_events").await, (alone_n + flooded_n) as i64, "every event once");
    let flooded = events_latency(&db, first..first + flooded_n).await;
    Isolation { alone, flooded, drain_alone, drain_flooded, events_timeout_ms: events_timeout.as_millis() }
}
