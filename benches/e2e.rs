//! `make bench`: the release daemon end to end, against real nats-server and PostgreSQL on this machine, and
//! PostgreSQL's own ceiling for the same rows. Writes BENCHMARKS.md.
//!
//! For each processor: a fresh nats-server and database; N messages published first; the daemon started and
//! timed until every row is committed and every message acked (consumer drained). Daemon CPU and peak RSS come
//! from /proc. For telemetry also: the same rows loaded with binary COPY in 50,000-row statements (the ceiling),
//! one INSERT per row in one transaction (the Go writer's method), and a rate-limited run at 20% of the measured
//! rate for publish → commit latency.
//!
//! Options (after `--`): `--messages N` (telemetry; other processors N/4), `--processors a,b,...`,
//! `--batch-size N`, `--latency-secs N`.

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
}

fn options() -> Options {
    let mut o = Options {
        messages: 200_000,
        processors: ["telemetry", "logs", "events", "otel", "netflow", "sweep"].map(String::from).to_vec(),
        batch_size: None,
        latency_secs: 20,
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
    processor: String,
    messages: usize,
    rows: i64,
    seconds: f64,
    cpu_seconds: f64,
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

fn table_of(processor: &str) -> &'static str {
    match processor {
        "telemetry" => "timeseries_metrics",
        "logs" => "logs",
        "events" => "ocsf_events",
        "sweep" => "sweep_results",
        "netflow" => "ocsf_network_activity",
        "otel" => "otel_metrics",
        _ => unreachable!(),
    }
}

async fn end_to_end(processor: &str, n: usize, batch_size: Option<usize>) -> Run {
    let nats = NatsServer::start();
    let db = TestDb::create().await;
    let dir = TempDir::new("bench");
    let mut stream = TestStream::of(
        match processor {
            "telemetry" => "telemetry",
            "logs" => "logs",
            "events" => "events",
            "sweep" => "sweep",
            "netflow" => "netflow",
            _ => "otel",
        },
        "bench",
    );
    stream.batch_timeout = "1s";
    stream.batch_size = batch_size.unwrap_or(match processor {
        "telemetry" | "netflow" => 5_000,
        "otel" => 10_000,
        _ => 2_000,
    });
    let path = dir.path().join("streams.toml");
    std::fs::write(&path, config_text(&nats.url, &db.url, std::slice::from_ref(&stream))).unwrap();
    migrate(&db_event_writer::config::Config::load(&path).unwrap()).await;
    let js = nats.jetstream().await;
    create_stream(&js, &stream).await;
    let (items, rows) = payloads(processor, n);
    publish_all(&js, items).await;

    let started = Instant::now();
    let daemon = Daemon::spawn_logging(&path, dir.path().join("daemon.log"), "info");
    let pid = daemon.child.id();
    let table = table_of(processor);
    wait_until(Duration::from_secs(600), "all rows", || async { db.count(table).await >= rows }).await;
    wait_drained(&js, &stream, Duration::from_secs(120)).await;
    let seconds = started.elapsed().as_secs_f64();
    let (cpu_seconds, peak_rss_mib) = usage(pid);
    daemon.signal("TERM");
    Run { processor: processor.to_owned(), messages: n, rows, seconds, cpu_seconds, peak_rss_mib }
}

/// The telemetry rows, decoded once (the ceiling and baseline load exactly these).
fn telemetry_rows(n: usize) -> Vec<db_event_writer::processor::telemetry::MetricRow> {
    let p = Telemetry::new("platform");
    let mut rows = Vec::with_capacity(n);
    let published = chrono::Utc::now();
    for i in 0..n {
        let payload = metric(i);
        let msg = Incoming { subject: "bench", payload: &payload, published, stream: "bench", sequence: i as u64 };
        p.decode(&msg, &mut rows).unwrap();
    }
    rows
}

/// Binary COPY in 50,000-row statements, each committed (the daemon's own COPY encoding, no NATS): rows/s.
async fn copy_ceiling(n: usize) -> f64 {
    let db = TestDb::create().await;
    migrate(&config("nats://127.0.0.1:1", &db.url, &[TestStream::telemetry("x")])).await;
    let rows = telemetry_rows(n);
    let mut client = db.client().await;
    let telemetry = Telemetry::new("platform");
    let started = Instant::now();
    for chunk in rows.chunks(50_000) {
        let tx = client.transaction().await.unwrap();
        telemetry.copy_rows(&tx, chunk).await.unwrap();
        tx.commit().await.unwrap();
    }
    n as f64 / started.elapsed().as_secs_f64()
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
    stream.batch_size = 5_000;
    stream.batch_timeout = "1s";
    let path = dir.path().join("streams.toml");
    std::fs::write(&path, config_text(&nats.url, &db.url, std::slice::from_ref(&stream))).unwrap();
    migrate(&db_event_writer::config::Config::load(&path).unwrap()).await;
    let js = nats.jetstream().await;
    create_stream(&js, &stream).await;
    let daemon = Daemon::spawn_logging(&path, dir.path().join("daemon.log"), "info");
    tokio::time::sleep(Duration::from_secs(1)).await;
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
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY ms), percentile_cont(0.99) WITHIN GROUP (ORDER BY ms) \
             FROM (SELECT extract(epoch FROM created_at - timestamp) * 1000 AS ms FROM platform.timeseries_metrics) t",
            &[],
        )
        .await
        .unwrap();
    (row.get::<_, f64>(0), row.get::<_, f64>(1))
}

fn command_output(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let o = options();
    let mut runs = Vec::new();
    for p in &o.processors {
        let n = if p == "telemetry" { o.messages } else { (o.messages / 4).max(1000) };
        eprintln!("bench: {p}: {n} messages end to end ...");
        let run = end_to_end(p, n, o.batch_size).await;
        eprintln!(
            "bench: {p}: {:.0} msgs/s, {:.0} rows/s, {:.1} µs CPU/msg, peak RSS {:.0} MiB",
            run.msgs_per_sec(),
            run.rows_per_sec(),
            run.cpu_us_per_msg(),
            run.peak_rss_mib
        );
        runs.push(run);
    }
    let telemetry = runs.iter().find(|r| r.processor == "telemetry");
    let (ceiling, baseline, lat) = if let Some(t) = telemetry {
        eprintln!("bench: telemetry ceiling (binary COPY) ...");
        let ceiling = copy_ceiling(o.messages).await;
        eprintln!("bench: telemetry baseline (one INSERT per row) ...");
        let baseline = insert_baseline((o.messages / 10).max(1000)).await;
        let rate = (t.msgs_per_sec() * 0.2) as usize;
        eprintln!("bench: latency at {rate} msgs/s for {} s ...", o.latency_secs);
        let lat = latency(rate, o.latency_secs).await;
        (Some(ceiling), Some(baseline), Some((rate, lat)))
    } else {
        (None, None, None)
    };

    let pg = db_event_writer_pg_version().await;
    let nats = command_output(nats_server_bin().to_str().unwrap_or("nats-server"), &["--version"]);
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
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
        "End to end: messages published first, then the release daemon started and timed until every row is committed and every message acked (the consumer drained); start-up included. Every guarantee on: ack after commit, idempotent writes, the ledger for netflow.\n"
    );
    let _ = writeln!(md, "| processor | messages | rows | msgs/s | rows/s | daemon CPU µs/msg | peak RSS MiB |");
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|");
    for r in &runs {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.0} | {:.0} | {:.1} | {:.0} |",
            r.processor,
            r.messages,
            r.rows,
            r.msgs_per_sec(),
            r.rows_per_sec(),
            r.cpu_us_per_msg(),
            r.peak_rss_mib
        );
    }
    if let (Some(t), Some(ceiling), Some(baseline)) = (telemetry, ceiling, baseline) {
        let _ = writeln!(md, "\nTelemetry against PostgreSQL's own speed for the same rows into the same table:\n");
        let _ = writeln!(md, "| path | rows/s | daemon end to end as a ratio |");
        let _ = writeln!(md, "|---|---:|---:|");
        let _ = writeln!(
            md,
            "| binary COPY, 50,000-row statements, no NATS (the ceiling) | {ceiling:.0} | {:.2} |",
            t.rows_per_sec() / ceiling
        );
        let _ = writeln!(
            md,
            "| one INSERT per row in one transaction (the Go writer's method) | {baseline:.0} | {:.1}× |",
            t.rows_per_sec() / baseline
        );
    }
    if let Some((rate, (p50, p99))) = lat {
        let _ = writeln!(
            md,
            "\nLatency, publish → commit, telemetry at {rate} msgs/s (20% of the measured rate) for {} s with batch_timeout 1 s: p50 {p50:.0} ms, p99 {p99:.0} ms.",
            o.latency_secs
        );
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("BENCHMARKS.md");
    let previous = std::fs::read_to_string(&path).unwrap_or_default();
    let notes = previous.split_once("\n## Notes").map(|(_, rest)| format!("\n## Notes{rest}")).unwrap_or_default();
    std::fs::write(&path, format!("{md}{notes}")).unwrap();
    println!("{md}");
    eprintln!("bench: wrote {}", path.display());
}

async fn db_event_writer_pg_version() -> String {
    let client = connect(&admin_url()).await;
    let v: String = client.query_one("SHOW server_version", &[]).await.unwrap().get(0);
    format!("PostgreSQL {v}")
}
