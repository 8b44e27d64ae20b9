//! Nothing lost, for real (the settle issue): each way a message used to end in silence, in the wrong place or
//! twice, reproduced against real servers. Every test publishes known good and bad messages, breaks something,
//! and asserts that every good message is once in its table, every bad one is in the DLQ with a reason naming
//! what went wrong, the consumer has nothing pending or awaiting ack, and the daemon still runs (or, for the
//! crash loop, was restarted and ended clean).

mod common;

use std::time::{Duration, Instant};

use common::*;
use db_event_writer::dlq::{H_CLASS, H_ORIGIN, H_REASON, H_SIZE, H_TRUNCATED};

const LIMIT: Duration = Duration::from_secs(90);

fn dlq_config() -> db_event_writer::config::DlqConfig {
    db_event_writer::config::DlqConfig {
        subject_prefix: "dlq".into(),
        stream: "DLQ".into(),
        max_age: Duration::from_secs(3600),
        max_bytes: 1 << 30,
        replicas: 1,
    }
}

fn parse(text: &str) -> db_event_writer::config::Config {
    db_event_writer::parse_config(std::path::Path::new("t.toml"), text).expect("valid test config")
}

/// An OTLP logs request of `records` records under one resource with a `service.name` of `service` bytes.
fn otlp_logs(records: usize, service: usize) -> Vec<u8> {
    use db_event_writer::processor::proto::common::{AnyValue, KeyValue, Resource, any_value};
    use db_event_writer::processor::proto::logs::{ExportLogsServiceRequest, LogRecord, ResourceLogs, ScopeLogs};
    use prost::Message as _;
    let name = KeyValue {
        key: "service.name".into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue("s".repeat(service))) }),
    };
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource { attributes: vec![name] }),
            scope_logs: vec![ScopeLogs { scope: None, log_records: vec![LogRecord::default(); records] }],
        }],
    }
    .encode_to_vec()
}

fn log(i: usize, service: &str) -> Vec<u8> {
    format!(r#"{{"timestamp": "2024-01-01T00:00:00Z", "message": "log {i}", "service_name": "{service}"}}"#)
        .into_bytes()
}

/// Scenario 2: a dead letter bigger than the server's max_payload is stored cut, with its size, never lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_over_max_payload_is_stored_cut_and_says_so() {
    let nats = NatsServer::start_with("max_payload: 65536");
    let db = TestDb::create().await;
    let stream = TestStream::telemetry(&unique("big"));
    let config = config(&nats.url, &db.url, std::slice::from_ref(&stream));
    migrate(&config).await;
    let js = nats.jetstream().await;
    create_stream(&js, &stream).await;
    // Undecodable and just under the limit: stored in the source stream, but its dead letter (payload and the
    // Dlq-* headers) would be over it.
    let payload = vec![b'x'; 65536 - 200];
    publish_all(&js, [(stream.subject("x"), payload.clone()), (stream.subject("x"), metric(1))]).await;
    let daemon = InProcess::start(config);
    wait_drained(&js, &stream, LIMIT).await;
    assert_eq!(db.count("timeseries_metrics").await, 1);
    let letters = dead_letters(&js, &stream.name).await;
    assert_eq!(letters.len(), 1);
    let l = &letters[0];
    assert_eq!(l.header(H_CLASS), "decode");
    assert_eq!(l.header(H_TRUNCATED), "reason,payload");
    assert_eq!(l.header(H_SIZE), payload.len().to_string());
    assert!(l.payload.is_empty());
    assert!(!l.header(H_REASON).is_empty());
    daemon.stop().await;
}

/// Scenario 3: a crash loop. Instances killed while they hold messages spend deliveries; the daemon, not
/// JetStream, counts them, so the messages end in the DLQ with the reason (never in silence), and a replay
/// then writes each row exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_loop_dead_letters_what_it_could_not_settle_and_a_replay_writes_each_row_once() {
    let nats = NatsServer::start();
    let db = TestDb::create().await;
    let dir = TempDir::new("crashloop");
    let mut stream = TestStream::telemetry(&unique("crash"));
    stream.batch_size = 500;
    stream.batch_timeout = "100ms";
    stream.extra = "ack_wait = \"1s\"\nmax_deliver = 5\n".to_owned();
    let config_path = dir.path().join("streams.toml");
    std::fs::write(&config_path, config_text(&nats.url, &db.url, std::slice::from_ref(&stream))).unwrap();
    migrate(&db_event_writer::load_config(&config_path).unwrap()).await;
    let js = nats.jetstream().await;
    create_stream(&js, &stream).await;
    const N: usize = 2000;
    publish_all(&js, (0..N).map(|i| (stream.subject("x"), metric(i)))).await;
    // The writes cannot finish while the test holds the table: every instance holds the messages and dies.
    let mut locker = db.client().await;
    let lock = locker.transaction().await.unwrap();
    lock.batch_execute("LOCK TABLE platform.timeseries_metrics IN ACCESS EXCLUSIVE MODE").await.unwrap();
    // Five kills: with JetStream counting (max_deliver 5) the sixth delivery would never come.
    for round in 1..=5 {
        let mut daemon = Daemon::spawn(&config_path, dir.path().join(format!("run{round}.log")));
        // Delivered to this instance: the consumer has made `round` deliveries of each message.
        wait_until(LIMIT, "every message delivered to this instance", || async {
            try_consumer_info(&js, &stream)
                .await
                .is_some_and(|i| i.num_ack_pending == N && i.delivered.consumer_sequence >= (N * round) as u64)
        })
        .await;
        daemon.signal("KILL");
        daemon.wait_exit(Duration::from_secs(10));
        // What the dead instance held comes back after ack_wait.
        tokio::time::sleep(Duration::from_millis(1200)).await;
    }
    lock.rollback().await.unwrap();
    let mut daemon = Daemon::spawn(&config_path, dir.path().join("clean.log"));
    wait_drained(&js, &stream, LIMIT).await;
    let letters = dead_letters(&js, &stream.name).await;
    let rows = db.count("timeseries_metrics").await;
    assert_eq!(rows + letters.len() as i64, N as i64, "every message is in the table or the DLQ: {rows} rows");
    assert!(!letters.is_empty(), "after five kills the messages were out of deliveries");
    for l in &letters {
        assert_eq!(l.header(H_CLASS), "max_deliver");
        assert!(l.header(H_REASON).contains("without being settled"), "{}", l.header(H_REASON));
    }
    // The operator replays them: each lands once, the DLQ empties, nothing is doubled.
    let done = db_event_writer::dlq::tools::replay(
        &js,
        &dlq_config(),
        &db_event_writer::dlq::tools::Filter::of(Some(&stream.name), 10_000),
        false,
    )
    .await
    .unwrap();
    assert_eq!(done.replayed, letters.len());
    wait_until(LIMIT, "every row", || async { db.count("timeseries_metrics").await == N as i64 }).await;
    wait_drained(&js, &stream, LIMIT).await;
    let distinct: i64 = db
        .client()
        .await
        .query_one("SELECT count(DISTINCT device_id) FROM platform.timeseries_metrics", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(distinct, N as i64);
    assert!(dead_letters(&js, &stream.name).await.is_empty());
    daemon.signal("TERM");
    assert!(daemon.wait_exit(Duration::from_secs(30)).success(), "{}", daemon.log_text());
}

/// Scenario 4: a telemetry message whose tag is 10,000 nested arrays used to overflow a worker's stack and abort
/// the daemon on every redelivery. Now it is a dead letter naming the limit, and the daemon keeps going.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deeply_nested_payload_is_a_dead_letter_and_the_daemon_keeps_running() {
    let nats = NatsServer::start();
    let db = TestDb::create().await;
    let stream = TestStream::telemetry(&unique("deep"));
    let config = config(&nats.url, &db.url, std::slice::from_ref(&stream));
    migrate(&config).await;
    let js = nats.jetstream().await;
    create_stream(&js, &stream).await;
    let deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
    let poison = format!(r#"{{"value": 1, "tags": {{"t": {deep}}}}}"#).into_bytes();
    assert!(poison.len() > 20_000);
    let items = (0..50).map(|i| (stream.subject("x"), metric(i))).chain([(stream.subject("x"), poison)]);
    publish_all(&js, items).await;
    let daemon = InProcess::start(config);
    wait_drained(&js, &stream, LIMIT).await;
    assert_eq!(db.count("timeseries_metrics").await, 50);
    let letters = dead_letters(&js, &stream.name).await;
    assert_eq!(letters.len(), 1);
    assert!(letters[0].header(H_REASON).contains("nested deeper than 128"), "{}", letters[0].header(H_REASON));
    daemon.stop().await;
}

/// Scenario 5: small payloads that would expand into gigabytes are refused at their limit, and the daemon's
/// memory stays under 300 MiB (its peak, VmHWM) for each of them and for a backlog of valid 1 MB messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amplifying_payloads_are_refused_at_their_limits_and_memory_stays_bounded() {
    use db_event_writer::processor::proto::common::{AnyValue, KeyValue, Resource, any_value};
    use db_event_writer::processor::proto::metrics::{
        ExportMetricsServiceRequest, Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric,
    };
    use db_event_writer::processor::proto::trace::{ExportTraceServiceRequest, ResourceSpans, ScopeSpans, Span};
    use prost::Message as _;
    let nats = NatsServer::start();
    let db = TestDb::create().await;
    let dir = TempDir::new("amplify");
    let prefix = unique("amp");
    let mut logs = TestStream::of("logs", &format!("{prefix}_logs"));
    logs.batch_size = 200;
    let mut otel = TestStream::of("otel", &format!("{prefix}_otel"));
    otel.batch_size = 200;
    let mut telemetry = TestStream::telemetry(&format!("{prefix}_tel"));
    telemetry.batch_size = 200;
    let streams = [logs.clone(), otel.clone(), telemetry.clone()];
    let config_path = dir.path().join("streams.toml");
    std::fs::write(&config_path, config_text(&nats.url, &db.url, &streams)).unwrap();
    migrate(&db_event_writer::load_config(&config_path).unwrap()).await;
    let js = nats.jetstream().await;
    for s in &streams {
        create_stream(&js, s).await;
    }
    let big = |n: usize| KeyValue {
        key: "service.name".into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue("r".repeat(n))) }),
    };
    // ~1 MiB each: at 64 KiB of resource copied into every row these were tens of gigabytes.
    let logs_bomb = otlp_logs(40_000, 64 * 1024);
    let points = (0..40_000).map(|i| NumberDataPoint { time_unix_nano: i + 1, ..Default::default() }).collect();
    let metrics_bomb = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource { attributes: vec![big(64 * 1024)] }),
            scope_metrics: vec![ScopeMetrics {
                scope: None,
                metrics: vec![Metric {
                    name: "m".repeat(64 * 1024),
                    data: Some(metric::Data::Gauge(Gauge { data_points: points })),
                    ..Default::default()
                }],
            }],
        }],
    }
    .encode_to_vec();
    let spans = (0..25_000u32)
        .map(|i| Span { span_id: i.to_be_bytes().repeat(2), trace_id: vec![1; 16], ..Default::default() })
        .collect();
    let traces_bomb = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource { attributes: vec![big(64 * 1024)] }),
            scope_spans: vec![ScopeSpans { scope: None, spans }],
        }],
    }
    .encode_to_vec();
    let tags: Vec<String> = (0..4000).map(|i| format!("\"t{i}\": 1e99999")).collect();
    let numbers_bomb = format!(r#"{{"value": 1, "tags": {{{}}}}}"#, tags.join(", ")).into_bytes();
    for (name, p) in [("logs", &logs_bomb), ("metrics", &metrics_bomb), ("traces", &traces_bomb)] {
        assert!(p.len() < 1024 * 1024, "{name}: {}", p.len());
    }
    // And a backlog of valid messages near 1 MB each (a long log body).
    let body = "b".repeat(900_000);
    let valid: Vec<(String, Vec<u8>)> =
        (0..150).map(|i| (logs.subject("x"), format!(r#"{{"message": "{i} {body}"}}"#).into_bytes())).collect();
    publish_all(
        &js,
        [
            (logs.subject("x"), logs_bomb),
            (format!("{}.metrics", otel.subjects[0].trim_end_matches(".>")), metrics_bomb),
            (format!("{}.traces", otel.subjects[0].trim_end_matches(".>")), traces_bomb),
            (telemetry.subject("x"), numbers_bomb),
        ],
    )
    .await;
    publish_all(&js, valid).await;
    let mut daemon = Daemon::spawn_logging(&config_path, dir.path().join("daemon.log"), "info");
    for s in &streams {
        wait_drained(&js, s, LIMIT).await;
    }
    let peak = peak_rss_mib(daemon.child.id());
    assert!(peak < 300.0, "peak RSS {peak:.0} MiB");
    assert_eq!(db.count("logs").await, 150, "the valid 1 MB logs are stored");
    for (s, bombs) in streams.iter().zip([1, 2, 1]) {
        let letters = dead_letters(&js, &s.name).await;
        assert_eq!(letters.len(), bombs, "{}", s.name);
        for l in &letters {
            assert_eq!(l.header(H_CLASS), "limit", "{}: {}", s.name, l.header(H_REASON));
        }
    }
    daemon.signal("TERM");
    assert!(daemon.wait_exit(Duration::from_secs(30)).success(), "{}", daemon.log_text());
}

/// Scenario 6: a log whose indexed `service_name` is 16 KB is refused by PostgreSQL (SQLSTATE 54000, index row
/// too large): a row error, bisected, so the 50 good logs of its batch are stored and only it is dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_row_too_wide_for_its_index_is_refused_alone() {
    let nats = NatsServer::start();
    let db = TestDb::create().await;
    let mut stream = TestStream::of("logs", &unique("wide"));
    stream.batch_size = 100;
    stream.batch_timeout = "300ms";
    let config = config(&nats.url, &db.url, std::slice::from_ref(&stream));
    migrate(&config).await;
    let js = nats.jetstream().await;
    create_stream(&js, &stream).await;
    // Incompressible, so the index entry cannot shrink under its 2,704-byte limit.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let wide: String = (0..16_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"[(x % 62) as usize])
        })
        .collect();
    let mut items: Vec<(String, Vec<u8>)> = (0..50).map(|i| (stream.subject("x"), log(i, "svc"))).collect();
    items.insert(25, (stream.subject("x"), log(999, &wide)));
    publish_all(&js, items).await;
    let daemon = InProcess::start(config);
    wait_drained(&js, &stream, LIMIT).await;
    assert_eq!(db.count("logs").await, 50);
    let letters = dead_letters(&js, &stream.name).await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].header(H_CLASS), "rejected");
    assert!(letters[0].header(H_REASON).contains("54000"), "{}", letters[0].header(H_REASON));
    daemon.stop().await;
}

/// Scenario 8: a trigger refusing one row (P0001) and metadata nested deeper than PostgreSQL parses (54001) are
/// row errors: bisected, only the refused messages dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_refusing_a_row_and_too_deep_jsonb_sink_only_their_own_message() {
    let nats = NatsServer::start();
    let db = TestDb::create().await;
    let mut stream = TestStream::telemetry(&unique("trig"));
    stream.batch_size = 500;
    stream.batch_timeout = "300ms";
    let config = config(&nats.url, &db.url, std::slice::from_ref(&stream));
    migrate(&config).await;
    db.client()
        .await
        .batch_execute(
            "CREATE FUNCTION platform.no_poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
               IF NEW.metric_name = 'poison' THEN RAISE EXCEPTION 'poison refused by a trigger'; END IF; \
               RETURN NEW; END $$; \
             CREATE TRIGGER no_poison BEFORE INSERT ON platform.timeseries_metrics \
               FOR EACH ROW EXECUTE FUNCTION platform.no_poison();",
        )
        .await
        .unwrap();
    let js = nats.jetstream().await;
    create_stream(&js, &stream).await;
    let deep = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
    let mut items: Vec<(String, Vec<u8>)> = (0..100).map(|i| (stream.subject("x"), metric(i))).collect();
    items.insert(40, (stream.subject("x"), br#"{"metric_name": "poison", "value": 1, "device_id": "p"}"#.to_vec()));
    items.insert(
        70,
        (stream.subject("x"), format!(r#"{{"metric_name": "deep", "value": 1, "metadata": {deep}}}"#).into_bytes()),
    );
    publish_all(&js, items).await;
    let daemon = InProcess::start(config);
    wait_drained(&js, &stream, LIMIT).await;
    assert_eq!(db.count("timeseries_metrics").await, 100);
    let letters = dead_letters(&js, &stream.name).await;
    let mut reasons: Vec<&str> = letters.iter().map(|l| l.header(H_REASON)).collect();
    reasons.sort_by_key(|r| !r.contains("P0001"));
    assert_eq!(letters.len(), 2, "{reasons:?}");
    assert!(letters.iter().all(|l| l.header(H_CLASS) == "rejected"));
    assert!(reasons[0].contains("P0001") && reasons[0].contains("poison refused"), "{}", reasons[0]);
    assert!(reasons[1].contains("54001"), "{}", reasons[1]);
    daemon.stop().await;
}

/// Scenario 9: a full disk (every INSERT fails with 53100 while reads work, here from a trigger for 10 s) is the
/// database's failure: messages are held and written once it passes; nothing is dead-lettered or NAKed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_holds_messages_and_dead_letters_nothing() {
    let nats = NatsServer::start();
    let db = TestDb::create().await;
    let mut stream = TestStream::telemetry(&unique("full"));
    stream.batch_size = 50;
    stream.extra = "ack_wait = \"2s\"\nmax_deliver = 3\n".to_owned();
    let text = config_text(&nats.url, &db.url, std::slice::from_ref(&stream))
        .replace("[daemon]", "[breaker]\nfailures = 2\ncooldown = \"500ms\"\n\n[daemon]");
    let config = parse(&text);
    migrate(&config).await;
    let js = nats.jetstream().await;
    create_stream(&js, &stream).await;
    let daemon = InProcess::start(config);
    wait_for_consumer(&js, &stream, LIMIT).await;
    db.client()
        .await
        .batch_execute(
            "CREATE FUNCTION platform.disk_full() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
               RAISE EXCEPTION 'could not extend file: No space left on device' USING ERRCODE = '53100'; END $$; \
             CREATE TRIGGER disk_full BEFORE INSERT ON platform.timeseries_metrics \
               FOR EACH ROW EXECUTE FUNCTION platform.disk_full();",
        )
        .await
        .unwrap();
    publish_all(&js, (0..300).map(|i| (stream.subject("x"), metric(i)))).await;
    // Ten seconds of a full disk: many breaker cycles (its probe, a SELECT, succeeds each time).
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(db.count("timeseries_metrics").await, 0);
    db.client().await.batch_execute("DROP TRIGGER disk_full ON platform.timeseries_metrics").await.unwrap();
    wait_drained(&js, &stream, LIMIT).await;
    assert_eq!(db.count("timeseries_metrics").await, 300);
    assert!(dead_letters(&js, &stream.name).await.is_empty(), "a full disk dead-letters nothing");
    let info = consumer_info(&js, &stream).await;
    assert_eq!(info.num_redelivered, 0, "held, never NAKed, never redelivered: {info:?}");
    daemon.stop().await;
}

/// Scenario 10: an escaped backslash before `u0000` (a Windows path) is plain text and stored as it is; a real
/// NUL character, which PostgreSQL cannot store, becomes U+FFFD and the row lands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_characters_and_escaped_backslashes_are_stored() {
    let nats = NatsServer::start();
    let db = TestDb::create().await;
    let prefix = unique("nul");
    let telemetry = TestStream::telemetry(&format!("{prefix}_t"));
    let logs = TestStream::of("logs", &format!("{prefix}_l"));
    let config = config(&nats.url, &db.url, &[telemetry.clone(), logs.clone()]);
    migrate(&config).await;
    let js = nats.jetstream().await;
    create_stream(&js, &telemetry).await;
    create_stream(&js, &logs).await;
    publish_all(
        &js,
        [
            (
                telemetry.subject("x"),
                br#"{"value": 1, "device_id": "d\u0000x", "tags": {"path": "C:\\u0000dir", "nul": "a\u0000"}, "metadata": {"p": "\\u0000", "n": "\u0000"}}"#.to_vec(),
            ),
            (logs.subject("x"), br#"{"message": "C:\\u0000 and a\u0000b", "extra": "\u0000"}"#.to_vec()),
        ],
    )
    .await;
    let daemon = InProcess::start(config);
    wait_drained(&js, &telemetry, LIMIT).await;
    wait_drained(&js, &logs, LIMIT).await;
    assert!(dead_letters(&js, &telemetry.name).await.is_empty());
    assert!(dead_letters(&js, &logs.name).await.is_empty());
    let client = db.client().await;
    let row = client
        .query_one(
            "SELECT device_id, tags->>'path', tags->>'nul', metadata->>'p', metadata->>'n' FROM platform.timeseries_metrics",
            &[],
        )
        .await
        .unwrap();
    let (device, path, nul, p, n): (String, String, String, String, String) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    assert_eq!(device, "d\u{FFFD}x");
    assert_eq!(path, "C:\\u0000dir");
    assert_eq!(nul, "a\u{FFFD}");
    assert_eq!((p.as_str(), n.as_str()), ("\\u0000", "\u{FFFD}"));
    let row = client.query_one("SELECT body, attributes FROM platform.logs", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), "C:\\u0000 and a\u{FFFD}b");
    let attributes: serde_json::Value = serde_json::from_str(&row.get::<_, String>(1)).unwrap();
    assert_eq!(attributes["extra"], "\u{FFFD}", "{attributes}");
    daemon.stop().await;
}

/// Scenario 11: a JetStream stream deleted and created again numbers its messages from 1 again. Its new logs
/// (same content and timestamps) and new flows are new messages, not redeliveries of the old ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_stream_is_not_mistaken_for_the_old_one() {
    use db_event_writer::processor::proto::flow::FlowMessage;
    use prost::Message as _;
    let nats = NatsServer::start();
    let db = TestDb::create().await;
    let prefix = unique("again");
    let mut flows = TestStream::of("netflow", &format!("{prefix}_f"));
    let mut logs = TestStream::of("logs", &format!("{prefix}_l"));
    // One JetStream stream for both, so deleting it takes both consumers.
    logs.jetstream = flows.jetstream.clone();
    flows.extra = "ack_wait = \"2s\"\n".to_owned();
    let config = config(&nats.url, &db.url, &[flows.clone(), logs.clone()]);
    migrate(&config).await;
    let js = nats.jetstream().await;
    let flow = |i: u64| {
        FlowMessage {
            src_addr: vec![10, 0, 0, 1],
            bytes: i,
            time_flow_end_ns: 1_700_000_000_000_000_000 + i,
            ..Default::default()
        }
        .encode_to_vec()
    };
    let (flow_subject, log_subject) = (flows.subject("x"), logs.subject("x"));
    let round = |base: u64| {
        let mut items: Vec<(String, Vec<u8>)> = (0..20u64).map(|i| (flow_subject.clone(), flow(base + i))).collect();
        items.extend((0..10).map(|i| (log_subject.clone(), log(i, "same"))));
        items
    };
    let daemon = InProcess::start(config);
    wait_for_consumer(&js, &flows, LIMIT).await;
    wait_for_consumer(&js, &logs, LIMIT).await;
    publish_all(&js, round(0)).await;
    wait_drained(&js, &flows, LIMIT).await;
    wait_drained(&js, &logs, LIMIT).await;
    assert_eq!(db.count("ocsf_network_activity").await, 20);
    assert_eq!(db.count("logs").await, 10);
    // Wiped: the daemon's streams fail, restart, and create stream and consumers again.
    js.delete_stream(&flows.jetstream).await.unwrap();
    wait_for_consumer(&js, &flows, LIMIT).await;
    wait_for_consumer(&js, &logs, LIMIT).await;
    publish_all(&js, round(100)).await;
    wait_until(LIMIT, "the new flows and logs", || async {
        db.count("ocsf_network_activity").await == 40 && db.count("logs").await == 20
    })
    .await;
    wait_drained(&js, &flows, LIMIT).await;
    wait_drained(&js, &logs, LIMIT).await;
    let epochs: i64 = db
        .client()
        .await
        .query_one(
            "SELECT count(*) FROM platform.db_event_writer_incarnations WHERE jetstream = $1",
            &[&flows.jetstream],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(epochs, 2, "two incarnations of the stream were read");
    daemon.stop().await;
}

/// Scenario 12: replay is exactly once. A dead letter whose original carried a Nats-Msg-Id is replayed within the
/// duplicate window and stored; two replays at once, and a replay re-run after an interrupted one, write each
/// row once and empty the DLQ.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_stores_each_dead_letter_once_however_often_it_runs() {
    use db_event_writer::processor::proto::flow::FlowMessage;
    use prost::Message as _;
    let nats = NatsServer::start();
    let db = TestDb::create().await;
    let prefix = unique("replay");
    let flows = TestStream::of("netflow", &format!("{prefix}_f"));
    let logs = TestStream::of("logs", &format!("{prefix}_l"));
    let config = config(&nats.url, &db.url, &[flows.clone(), logs.clone()]);
    migrate(&config).await;
    // Both tables refuse everything for now: every message becomes a dead letter (class rejected).
    let client = db.client().await;
    client
        .batch_execute(
            "ALTER TABLE platform.logs ADD CONSTRAINT closed CHECK (false) NOT VALID; \
             ALTER TABLE platform.ocsf_network_activity ADD CONSTRAINT closed CHECK (false) NOT VALID;",
        )
        .await
        .unwrap();
    let js = nats.jetstream().await;
    create_stream(&js, &flows).await;
    create_stream(&js, &logs).await;
    for i in 0..10u64 {
        let mut h = async_nats::HeaderMap::new();
        h.insert("Nats-Msg-Id", format!("gw-{i}").as_str());
        let flow = FlowMessage { src_addr: vec![10, 0, 0, 1], bytes: i + 1, ..Default::default() }.encode_to_vec();
        js.publish_with_headers(flows.subject("x"), h.clone(), flow.into()).await.unwrap().await.unwrap();
        js.publish_with_headers(logs.subject("x"), h, log(i as usize, "svc").into()).await.unwrap().await.unwrap();
    }
    let daemon = InProcess::start(config.clone());
    wait_drained(&js, &flows, LIMIT).await;
    wait_drained(&js, &logs, LIMIT).await;
    let letters = dead_letters(&js, &flows.name).await;
    assert_eq!(letters.len(), 10);
    assert_eq!(letters[0].header("Dlq-Original-Nats-Msg-Id"), "gw-0", "the control header is kept, renamed");
    assert!(letters[0].header("Nats-Msg-Id").starts_with(&flows.jetstream), "the letter's own id");
    assert!(!letters[0].header(H_ORIGIN).is_empty());
    client
        .batch_execute(
            "ALTER TABLE platform.logs DROP CONSTRAINT closed; \
             ALTER TABLE platform.ocsf_network_activity DROP CONSTRAINT closed;",
        )
        .await
        .unwrap();
    // An interrupted earlier run: it republished the first flow letter, then died before deleting it.
    let first = &letters[0];
    let mut h = async_nats::HeaderMap::new();
    h.insert("Nats-Msg-Id", db_event_writer::dlq::tools::replay_id("DLQ", first.dlq_sequence).as_str());
    h.insert(H_ORIGIN, first.header(H_ORIGIN));
    js.publish_with_headers(flows.subject("x"), h, first.payload.clone()).await.unwrap().await.unwrap();
    // Two operators replay at once, within the original Nats-Msg-Id's duplicate window (2 minutes).
    let dlq = dlq_config();
    let all = db_event_writer::dlq::tools::Filter::of(None, 100);
    let (a, b) = tokio::join!(
        db_event_writer::dlq::tools::replay(&js, &dlq, &all, false),
        db_event_writer::dlq::tools::replay(&js, &dlq, &all, false)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.kept + b.kept, 0, "{a:?} {b:?}");
    assert_eq!(a.replayed.max(b.replayed), 20, "{a:?} {b:?}");
    wait_until(LIMIT, "each replayed row", || async {
        db.count("ocsf_network_activity").await >= 10 && db.count("logs").await >= 10
    })
    .await;
    wait_drained(&js, &flows, LIMIT).await;
    wait_drained(&js, &logs, LIMIT).await;
    // Once more for good measure, after the replays' duplicate window would have let copies through.
    db_event_writer::dlq::tools::replay(&js, &dlq, &db_event_writer::dlq::tools::Filter::of(None, 100), false)
        .await
        .unwrap();
    wait_drained(&js, &flows, LIMIT).await;
    wait_drained(&js, &logs, LIMIT).await;
    assert_eq!(db.count("ocsf_network_activity").await, 10, "each flow once");
    assert_eq!(db.count("logs").await, 10, "each log once");
    assert!(dead_letters(&js, &flows.name).await.is_empty());
    assert!(dead_letters(&js, &logs.name).await.is_empty());
    daemon.stop().await;
}

/// A write blocked for three times ack_wait, with five batches in flight and a bisection waiting behind the
/// lock: the settler keeps every held message alive, so JetStream redelivers nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_for_three_ack_waits_with_batches_in_flight_and_a_bisection_redelivers_nothing() {
    let nats = NatsServer::start();
    let db = TestDb::create().await;
    let mut stream = TestStream::telemetry(&unique("inflight"));
    stream.batch_size = 20;
    stream.batch_timeout = "100ms";
    stream.extra = "ack_wait = \"2s\"\nwriters = 2\nbatches_in_flight = 2\n".to_owned();
    let config = config(&nats.url, &db.url, std::slice::from_ref(&stream));
    migrate(&config).await;
    // The poison row fails at once (before taking the lock); every other row waits for the test's lock.
    db.client()
        .await
        .batch_execute(
            "CREATE FUNCTION platform.gate() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
               IF NEW.metric_name = 'poison' THEN RAISE EXCEPTION 'poison'; END IF; \
               PERFORM pg_advisory_xact_lock_shared(4242); RETURN NEW; END $$; \
             CREATE TRIGGER gate BEFORE INSERT ON platform.timeseries_metrics \
               FOR EACH ROW EXECUTE FUNCTION platform.gate();",
        )
        .await
        .unwrap();
    let locker = db.client().await;
    locker.execute("SELECT pg_advisory_lock(4242)", &[]).await.unwrap();
    let js = nats.jetstream().await;
    create_stream(&js, &stream).await;
    let mut items = vec![(stream.subject("x"), br#"{"metric_name": "poison", "value": 1}"#.to_vec())];
    items.extend((0..199).map(|i| (stream.subject("x"), metric(i))));
    publish_all(&js, items).await;
    let daemon = InProcess::start(config);
    // Three times ack_wait under the lock.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let info = consumer_info(&js, &stream).await;
    assert!(info.num_ack_pending >= 60, "batches are in flight, held: {info:?}");
    assert_eq!(db.count("timeseries_metrics").await, 0);
    locker.execute("SELECT pg_advisory_unlock(4242)", &[]).await.unwrap();
    wait_drained(&js, &stream, LIMIT).await;
    assert_eq!(db.count("timeseries_metrics").await, 199);
    assert_eq!(dead_letters(&js, &stream.name).await.len(), 1);
    let info = consumer_info(&js, &stream).await;
    assert_eq!(info.num_redelivered, 0, "in-progress acks reached every held message: {info:?}");
    assert_eq!(info.delivered.consumer_sequence, 200, "each delivered once: {info:?}");
    daemon.stop().await;
}

/// A connection that stops answering without closing (a proxy that stops forwarding): the write's deadline gives
/// it up, and the batch is written on a new connection; nothing is NAKed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_open_connection_is_given_up_at_the_deadline_and_the_batch_written_on_a_new_one() {
    let nats = NatsServer::start();
    let db = TestDb::create().await;
    let proxy = Proxy::start(5432).await;
    let mut stream = TestStream::telemetry(&unique("halfopen"));
    stream.batch_size = 50;
    stream.extra = "ack_wait = \"2s\"\nwriters = 1\n".to_owned();
    // Deadline: 2 × statement_timeout + connect_timeout = 3 s.
    let text = config_text(&nats.url, &proxy.url_for(&db.url), std::slice::from_ref(&stream))
        .replace("pool_size = 4", "pool_size = 4\nconnect_timeout = \"1s\"\nstatement_timeout = \"1s\"");
    let config = parse(&text);
    migrate(&config).await;
    let js = nats.jetstream().await;
    create_stream(&js, &stream).await;
    publish_all(&js, (0..50).map(|i| (stream.subject("x"), metric(i)))).await;
    let daemon = InProcess::start(config);
    wait_until(LIMIT, "first rows", || async { db.count("timeseries_metrics").await == 50 }).await;
    proxy.stall();
    let before = proxy.connections();
    let started = Instant::now();
    publish_all(&js, (50..100).map(|i| (stream.subject("x"), metric(i)))).await;
    wait_until(LIMIT, "rows written on a new connection", || async { db.count("timeseries_metrics").await == 100 })
        .await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(15), "retried within the deadline and a backoff: {took:?}");
    assert!(proxy.connections() > before, "a new connection was made");
    wait_drained(&js, &stream, LIMIT).await;
    assert_eq!(consumer_info(&js, &stream).await.num_redelivered, 0, "held, not NAKed");
    assert!(dead_letters(&js, &stream.name).await.is_empty());
    daemon.stop().await;
}

/// An outage that shows only as "no connection from the pool" (every connection stuck) opens the breaker: waits
/// are the database's failure, not a reason to close it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_seen_only_as_pool_waits_opens_the_breaker() {
    let nats = NatsServer::start();
    let db = TestDb::create().await;
    let proxy = Proxy::start(5432).await;
    let prefix = unique("poolwait");
    let mut a = TestStream::telemetry(&format!("{prefix}_a"));
    let mut b = TestStream::telemetry(&format!("{prefix}_b"));
    a.extra = "writers = 2\n".to_owned();
    b.extra = "writers = 2\n".to_owned();
    let port = free_port();
    // Two connections for four writers; a statement timeout long enough that the stuck ones are held meanwhile.
    let text = config_text(&nats.url, &proxy.url_for(&db.url), &[a.clone(), b.clone()])
        .replace("pool_size = 4", "pool_size = 2\nconnect_timeout = \"500ms\"\nstatement_timeout = \"8s\"")
        .replace(
            "[daemon]",
            &format!("[breaker]\nfailures = 3\ncooldown = \"1s\"\n\n[http]\nlisten = \"127.0.0.1:{port}\"\n\n[daemon]"),
        );
    let config = parse(&text);
    migrate(&config).await;
    let js = nats.jetstream().await;
    create_stream(&js, &a).await;
    create_stream(&js, &b).await;
    let daemon = InProcess::start(config);
    publish_all(&js, (0..20).map(|i| (a.subject("x"), metric(i)))).await;
    wait_until(LIMIT, "first rows", || async { db.count("timeseries_metrics").await == 20 }).await;
    proxy.stall();
    publish_all(
        &js,
        (20..200).map(|i| (a.subject("x"), metric(i))).chain((200..400).map(|i| (b.subject("x"), metric(i)))),
    )
    .await;
    wait_until(Duration::from_secs(30), "the breaker open", || async {
        let Some((_, text)) = http_get(port, "/metrics").await else { return false };
        sample(&text, "db_event_writer_breaker_state") == Some(1.0)
    })
    .await;
    // The stuck connections are given up at their deadline; the breaker closes; everything lands once.
    wait_drained(&js, &a, LIMIT).await;
    wait_drained(&js, &b, LIMIT).await;
    assert_eq!(db.count("timeseries_metrics").await, 400);
    assert!(dead_letters(&js, &a.name).await.is_empty() && dead_letters(&js, &b.name).await.is_empty());
    daemon.stop().await;
}

/// Scenario 7: SIGTERM while a reload waits for a stream that cannot drain (its write blocked by a lock) starts
/// the shutdown at once; the daemon exits within its shutdown timeout, and nothing it held is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_blocked_reload_stops_the_daemon_in_bounded_time() {
    let nats = NatsServer::start();
    let db = TestDb::create().await;
    let dir = TempDir::new("reloadterm");
    let mut stream = TestStream::telemetry(&unique("rterm"));
    stream.batch_size = 10;
    stream.batch_timeout = "100ms";
    // What the stopped daemon held comes back to the next one quickly.
    stream.extra = "ack_wait = \"2s\"\n".to_owned();
    let config_path = dir.path().join("streams.toml");
    let text = config_text(&nats.url, &db.url, std::slice::from_ref(&stream))
        .replace("shutdown_timeout = \"20s\"", "shutdown_timeout = \"3s\"");
    std::fs::write(&config_path, &text).unwrap();
    migrate(&db_event_writer::load_config(&config_path).unwrap()).await;
    let js = nats.jetstream().await;
    create_stream(&js, &stream).await;
    let mut locker = db.client().await;
    let lock = locker.transaction().await.unwrap();
    lock.batch_execute("LOCK TABLE platform.timeseries_metrics IN ACCESS EXCLUSIVE MODE").await.unwrap();
    publish_all(&js, (0..30).map(|i| (stream.subject("x"), metric(i)))).await;
    let mut daemon = Daemon::spawn(&config_path, dir.path().join("daemon.log"));
    wait_until(LIMIT, "messages held behind the lock", || async {
        try_consumer_info(&js, &stream).await.is_some_and(|i| i.num_ack_pending == 30)
    })
    .await;
    // A changed stream: the reload drains it, which waits for the blocked write.
    std::fs::write(&config_path, text.replace("batch_size = 10", "batch_size = 11")).unwrap();
    daemon.signal("HUP");
    wait_until(LIMIT, "the reload under way", || async { daemon.log_text().contains("reloading the configuration") })
        .await;
    let asked = Instant::now();
    daemon.signal("TERM");
    daemon.wait_exit(Duration::from_secs(15));
    assert!(asked.elapsed() < Duration::from_secs(10), "stopped in {:?}", asked.elapsed());
    assert!(daemon.log_text().contains("shutting down during a reload"), "{}", daemon.log_text());
    lock.rollback().await.unwrap();
    // What it held comes back to the next run: every row once.
    let mut again = Daemon::spawn(&config_path, dir.path().join("again.log"));
    wait_drained(&js, &stream, LIMIT).await;
    assert_eq!(db.count("timeseries_metrics").await, 30);
    again.signal("TERM");
    assert!(again.wait_exit(Duration::from_secs(30)).success(), "{}", again.log_text());
}

/// A DLQ that cannot take a letter (full, discarding new ones): the message stays held, never terminated, is
/// visible in the metrics and `status`, and lands in the DLQ once there is room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_dlq_keeps_the_message_held_and_visible_until_there_is_room() {
    let nats = NatsServer::start();
    let db = TestDb::create().await;
    let dir = TempDir::new("fulldlq");
    let stream = TestStream::telemetry(&unique("fulldlq"));
    let port = free_port();
    let text = config_text(&nats.url, &db.url, std::slice::from_ref(&stream))
        .replace("[daemon]", &format!("[http]\nlisten = \"127.0.0.1:{port}\"\n\n[daemon]"));
    let config_path = dir.path().join("streams.toml");
    std::fs::write(&config_path, &text).unwrap();
    let config = parse(&text);
    migrate(&config).await;
    let js = nats.jetstream().await;
    create_stream(&js, &stream).await;
    let dlq = async_nats::jetstream::stream::Config {
        name: "DLQ".into(),
        subjects: vec!["dlq.>".into()],
        max_bytes: 1024,
        discard: async_nats::jetstream::stream::DiscardPolicy::New,
        ..Default::default()
    };
    js.create_stream(dlq.clone()).await.unwrap();
    publish_all(&js, [(stream.subject("x"), vec![b'x'; 4096]), (stream.subject("x"), metric(1))]).await;
    let daemon = InProcess::start(config);
    wait_until(LIMIT, "the good row", || async { db.count("timeseries_metrics").await == 1 }).await;
    wait_until(LIMIT, "the held dead letter in the metrics", || async {
        let Some((_, text)) = http_get(port, "/metrics").await else { return false };
        sample(
            &text,
            &format!(r#"db_event_writer_dead_letters_held{{stream="{}",processor="telemetry"}}"#, stream.name),
        ) == Some(1.0)
    })
    .await;
    let info = consumer_info(&js, &stream).await;
    assert_eq!(info.num_ack_pending, 1, "held, not terminated: {info:?}");
    let (code, out, _) = run_cli(&["status", "--config", config_path.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("dead_letters_held=1"), "{out}");
    // Room in the DLQ: the next retry stores it and the message is terminated.
    js.update_stream(async_nats::jetstream::stream::Config { max_bytes: 1 << 20, ..dlq }).await.unwrap();
    wait_drained(&js, &stream, LIMIT).await;
    assert_eq!(dead_letters(&js, &stream.name).await.len(), 1);
    daemon.stop().await;
}
