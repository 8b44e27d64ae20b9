//! The core pipeline against a real nats-server and a real PostgreSQL: rows land once, acks follow commits,
//! bad input never blocks a stream, restarts and shutdowns lose nothing.

mod common;

use std::time::Duration;

use common::*;
use db_event_writer::migrate::migrate as run_migrations;
use tokio_util::sync::CancellationToken;

const LIMIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n_messages_become_n_rows_and_the_consumer_drains() {
    let nats = NatsServer::start();
    let db = TestDb::create().await;
    let stream = TestStream::telemetry(&unique("tel"));
    let config = config(&nats.url, &db.url, std::slice::from_ref(&stream));
    migrate(&config).await;
    let js = nats.jetstream().await;
    create_stream(&js, &stream).await;
    let prefix = stream.subjects[0].trim_end_matches(".>").to_owned();
    const N: usize = 2_000;
    publish_all(&js, (0..N).map(|i| (format!("{prefix}.cpu"), metric(i)))).await;

    let daemon = InProcess::start(config);
    wait_until(LIMIT, "N rows", || async { db.count("timeseries_metrics").await == N as i64 }).await;
    wait_drained(&js, &stream, LIMIT).await;

    // The rows are the payloads, not just their number.
    let client = db.client().await;
    let row = client
        .query_one(
            "SELECT gateway_id, metric_name, value, unit, tags::text, timestamp = '2024-01-01T00:00:00Z' \
             FROM platform.timeseries_metrics WHERE device_id = 'device-7'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "gw-1");
    assert_eq!(row.get::<_, String>(1), "cpu_usage");
    assert_eq!(row.get::<_, f64>(2), 7.5);
    assert_eq!(row.get::<_, String>(3), "percent");
    assert_eq!(row.get::<_, String>(4), r#"{"host": "h7"}"#);
    assert!(row.get::<_, bool>(5));
    daemon.stop().await;
    let (pending, ack_pending) = consumer_state(&js, &stream).await;
    assert_eq!((pending, ack_pending), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_published_three_times_is_one_row() {
    let nats = NatsServer::start();
    let db = TestDb::create().await;
    let stream = TestStream::telemetry(&unique("dup"));
    let config = config(&nats.url, &db.url, std::slice::from_ref(&stream));
    migrate(&config).await;
    let js = nats.jetstream().await;
    create_stream(&js, &stream).await;
    let subject = stream.subjects[0].replace('>', "x");
    publish_all(&js, (0..3).map(|_| (subject.clone(), metric(42)))).await;
    // A different sample after the duplicates, so "drained" means the duplicates were handled too.
    publish_all(&js, [(subject.clone(), metric(43))]).await;

    let daemon = InProcess::start(config);
    wait_drained(&js, &stream, LIMIT).await;
    assert_eq!(db.count("timeseries_metrics").await, 2, "three copies of one sample are one row");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_among_good_messages_is_terminated_and_the_stream_keeps_going() {
    let nats = NatsServer::start();
    let db = TestDb::create().await;
    let stream = TestStream::telemetry(&unique("bad"));
    let config = config(&nats.url, &db.url, std::slice::from_ref(&stream));
    migrate(&config).await;
    let js = nats.jetstream().await;
    create_stream(&js, &stream).await;
    let subject = stream.subjects[0].replace('>', "x");
    let mut items = Vec::new();
    for i in 0..300 {
        items.push((subject.clone(), metric(i)));
        match i % 50 {
            0 => items.push((subject.clone(), vec![0xff, 0x00, 0x13, 0x37])),
            10 => items.push((subject.clone(), b"{\"value\": ".to_vec())),
            20 => items.push((subject.clone(), b"{\"metric_name\": \"no value\"}".to_vec())),
            30 => items.push((subject.clone(), b"[1, 2, 3]".to_vec())),
            _ => {}
        }
    }
    publish_all(&js, items).await;

    let daemon = InProcess::start(config);
    wait_drained(&js, &stream, LIMIT).await;
    assert_eq!(db.count("timeseries_metrics").await, 300);
    assert!(daemon.running(), "the daemon keeps running after bad input");
    // And it still consumes what comes next.
    publish_all(&js, [(subject.clone(), metric(1000))]).await;
    wait_until(LIMIT, "row after the garbage", || async { db.count("timeseries_metrics").await == 301 }).await;
    wait_drained(&js, &stream, LIMIT).await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_error_naks_with_a_delay_and_the_rows_land_once_it_is_fixed() {
    let nats = NatsServer::start();
    let db = TestDb::create().await;
    let mut stream = TestStream::telemetry(&unique("nak"));
    stream.extra = "nak_delay = \"1s\"\nnak_delay_max = \"1s\"\n".to_owned();
    let config = config(&nats.url, &db.url, std::slice::from_ref(&stream));
    migrate(&config).await;
    let js = nats.jetstream().await;
    create_stream(&js, &stream).await;
    let daemon = InProcess::start(config);
    wait_until(LIMIT, "consumer created", || async {
        match js.get_stream(&stream.jetstream).await {
            Ok(s) => s.consumer_info(&stream.consumer).await.is_ok(),
            Err(_) => false,
        }
    })
    .await;

    // Break the table under the running daemon: every write now fails (42P01, not the rows' fault).
    let client = db.client().await;
    client.batch_execute("ALTER TABLE platform.timeseries_metrics RENAME TO broken").await.unwrap();
    let subject = stream.subjects[0].replace('>', "x");
    publish_all(&js, [(subject.clone(), metric(1))]).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let info = js.get_stream(&stream.jetstream).await.unwrap().consumer_info(&stream.consumer).await.unwrap();
    assert!(info.num_ack_pending == 1, "the message is held, not acked or dropped: {info:?}");
    // With a 1 s NAK delay, 3 s allow about 3 deliveries; an immediate-NAK loop would make thousands.
    assert!(info.delivered.stream_sequence == 1, "{info:?}");
    assert!(info.delivered.consumer_sequence <= 6, "redelivered too fast: {info:?}");

    client.batch_execute("ALTER TABLE platform.broken RENAME TO timeseries_metrics").await.unwrap();
    wait_until(LIMIT, "row after the table is back", || async { db.count("timeseries_metrics").await == 1 }).await;
    wait_drained(&js, &stream, LIMIT).await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_with_two_filter_subjects_consumes_both() {
    let nats = NatsServer::start();
    let db = TestDb::create().await;
    let mut stream = TestStream::telemetry(&unique("multi"));
    let a = unique("a");
    let b = unique("b");
    stream.subjects = vec![format!("{a}.>"), format!("{b}.>")];
    let config = config(&nats.url, &db.url, std::slice::from_ref(&stream));
    migrate(&config).await;
    let daemon = InProcess::start(config);
    let js = nats.jetstream().await;
    // The daemon creates the JetStream stream with both subjects.
    wait_until(LIMIT, "stream created by the daemon", || async {
        match js.get_stream(&stream.jetstream).await {
            Ok(s) => s.consumer_info(&stream.consumer).await.is_ok(),
            Err(_) => false,
        }
    })
    .await;
    publish_all(&js, (0..50).map(|i| (format!("{}.x", if i % 2 == 0 { &a } else { &b }), metric(i)))).await;
    wait_until(LIMIT, "rows from both subjects", || async { db.count("timeseries_metrics").await == 50 }).await;
    wait_drained(&js, &stream, LIMIT).await;
    let info = js.get_stream(&stream.jetstream).await.unwrap().consumer_info(&stream.consumer).await.unwrap();
    let mut filters = info.config.filter_subjects.clone();
    filters.sort();
    let mut want = stream.subjects.clone();
    want.sort();
    assert_eq!(filters, want);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_stream_is_left_alone_and_an_existing_consumer_is_updated_in_place() {
    use async_nats::jetstream::consumer::{AckPolicy, pull};
    let nats = NatsServer::start();
    let db = TestDb::create().await;
    let stream = TestStream::telemetry(&unique("keep"));
    let config = config(&nats.url, &db.url, std::slice::from_ref(&stream));
    migrate(&config).await;
    let js = nats.jetstream().await;
    // An operator's stream with more subjects and a limit, and a consumer with other settings.
    let mut subjects = stream.subjects.clone();
    subjects.push(unique("other") + ".>");
    js.create_stream(async_nats::jetstream::stream::Config {
        name: stream.jetstream.clone(),
        subjects: subjects.clone(),
        max_messages: 1_000_000,
        ..Default::default()
    })
    .await
    .unwrap();
    let js_stream = js.get_stream(&stream.jetstream).await.unwrap();
    js_stream
        .create_consumer(pull::Config {
            durable_name: Some(stream.consumer.clone()),
            ack_policy: AckPolicy::Explicit,
            ack_wait: Duration::from_secs(5),
            filter_subject: stream.subjects[0].clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let created = js_stream.consumer_info(&stream.consumer).await.unwrap().created;
    let subject = stream.subjects[0].replace('>', "x");
    publish_all(&js, (0..10).map(|i| (subject.clone(), metric(i)))).await;

    let daemon = InProcess::start(config);
    wait_until(LIMIT, "rows", || async { db.count("timeseries_metrics").await == 10 }).await;
    wait_drained(&js, &stream, LIMIT).await;
    let info = js.get_stream(&stream.jetstream).await.unwrap().consumer_info(&stream.consumer).await.unwrap();
    assert_eq!(info.config.ack_wait, Duration::from_secs(30), "updated to streams.toml's ack_wait");
    assert_eq!(info.created, created, "the same consumer, not a recreated one");
    let stream_info = js.get_stream(&stream.jetstream).await.unwrap().get_info().await.unwrap();
    assert_eq!(stream_info.config.subjects, subjects, "the stream's subjects are untouched");
    assert_eq!(stream_info.config.max_messages, 1_000_000, "the stream's limits are untouched");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_refuses_to_start_when_a_table_is_missing() {
    let nats = NatsServer::start();
    let db = TestDb::create().await;
    let stream = TestStream::telemetry(&unique("nomig"));
    let config = config(&nats.url, &db.url, std::slice::from_ref(&stream));
    let token = CancellationToken::new();
    let err = tokio::time::timeout(LIMIT, db_event_writer::run(config, token)).await.expect("returns").unwrap_err();
    assert!(err.to_string().contains("db-event-writer migrate"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_twice_is_a_no_op() {
    let db = TestDb::create().await;
    let config = config("nats://127.0.0.1:1", &db.url, &[TestStream::telemetry("x")]);
    let first = run_migrations(&config.database).await.unwrap();
    let all: Vec<&str> = db_event_writer::migrate::MIGRATIONS.iter().map(|m| m.name).collect();
    assert_eq!(first.applied, all);
    let second = run_migrations(&config.database).await.unwrap();
    assert!(second.applied.is_empty(), "{second:?}");
    let client = db.client().await;
    let recorded: i64 =
        client.query_one("SELECT count(*) FROM platform.db_event_writer_migrations", &[]).await.unwrap().get(0);
    assert_eq!(recorded, all.len() as i64);
    // Plain PostgreSQL: the table works without TimescaleDB.
    assert!(!second.timescaledb);
    assert_eq!(db.count("timeseries_metrics").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_key_matches_the_sql_definition() {
    use db_event_writer::processor::telemetry::Telemetry;
    use db_event_writer::processor::{Incoming, Processor};
    let db = TestDb::create().await;
    let config = config("nats://127.0.0.1:1", &db.url, &[TestStream::telemetry("x")]);
    migrate(&config).await;
    let client = db.client().await;
    let cases = [
        r#"{"value": 1}"#,
        r#"{"value": 1, "metric_name": "cpu", "metric_type": "gauge", "agent_id": "a", "device_id": "d"}"#,
        r#"{"value": 1, "partition": "p", "target_device_ip": "10.0.0.1", "if_index": 0}"#,
        r#"{"value": 1, "if_index": -7, "agent_id": "   ", "device_id": ""}"#,
        r#"{"value": 1, "agent_id": "\t", "device_id": " x "}"#,
        r#"{"value": 1, "tags": {"host": "h", "available": true, "metric": "m", "packet_loss": 0.5}}"#,
        r#"{"value": 1, "tags": {"blank": "  ", "empty": "", "null": null, "tab": "\t"}}"#,
        r#"{"value": 1, "tags": {"Zeta": "1", "alpha": "2", "Alpha": "3", "_x": "4", "ä": "5", "z": "6"}}"#,
        r#"{"value": 1, "tags": {"n1": 1.50, "n2": 1e2, "n3": -0, "n4": 1.5e-3, "b": false, "o": {"b": [1, "x"], "a": {}}}}"#,
        r#"{"value": 1, "metric_name": "überwachung", "device_id": "日本語", "tags": {"ключ": "значение", "emoji": "🚀"}}"#,
        r#"{"value": 1, "tags": "{\"from\": \"a string\"}"}"#,
        r#"{"value": 1, "tags": {"dup": "first", "dup": "second"}}"#,
        r#"{"value": 1, "tags": {"quote\"d": "back\\slash", "nl": "a\nb"}}"#,
        r#"{"value": 1, "tags": {}}"#,
        r#"{"value": 1, "tags": {"used_bytes": "1", "status": "up", "source": "x", "execution_id": "e", "disk": "/"}}"#,
    ];
    // ServiceRadar's metric envelope, built as its publishers build it: the rows' tags are merged from the
    // metric, the ingest identity and the point (the identity's producer stamps are volatile keys).
    let envelope = {
        use db_event_writer::processor::proto::metric::*;
        use prost::Message as _;
        let e = |k: &str, v: &str| StringMapEntry { key: k.into(), value: v.into() };
        MetricBatch {
            schema_version: SCHEMA_VERSION.into(),
            resource: Some(MetricResource {
                agent_id: "agent-1".into(),
                gateway_id: "gw".into(),
                partition: "default".into(),
                host_ip: "10.0.0.9".into(),
                ..Default::default()
            }),
            ingest_identity: Some(IngestIdentity {
                source: "snmp".into(),
                producer_id: "agent-1".into(),
                ..Default::default()
            }),
            metrics: vec![Metric {
                name: "ifHCInOctets".into(),
                metric_type: "snmp".into(),
                kind: 2,
                tags: vec![e("ifName", "eth0"), e("Zone", "b"), e("status", "up"), e("target", "router")],
                points: vec![
                    MetricPoint { value: 1.0, if_index: 3, attributes: vec![e("lane", " 1 ")], ..Default::default() },
                    MetricPoint {
                        value: 2.0,
                        attributes: vec![e("ifName", "eth1"), e("blank", " ")],
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        }
        .encode_to_vec()
    };
    let sql = "SELECT platform.build_timeseries_series_key($1, $2, $3, $4, $5, $6, $7, $8::text::jsonb)";
    let processor = Telemetry::new(&db_event_writer::config::DatabaseConfig::for_schema("platform"));
    let payloads: Vec<(String, Vec<u8>)> = cases
        .iter()
        .map(|c| (c.to_string(), c.as_bytes().to_vec()))
        .chain([("a MetricBatch".to_owned(), envelope)])
        .collect();
    let mut checked = 0;
    for (payload, bytes) in &payloads {
        let mut rows = Vec::new();
        let msg = Incoming::bare("telemetry.x", bytes, chrono::Utc::now(), "events", 1);
        processor
            .decode(
                &msg,
                &mut db_event_writer::processor::Rows::new(&mut rows, db_event_writer::processor::Limits::NONE),
            )
            .unwrap_or_else(|e| panic!("{payload}: {e}"));
        for r in &rows {
            checked += 1;
            let from_sql: String = client
                .query_one(
                    sql,
                    &[
                        &r.metric_type,
                        &r.metric_name,
                        &r.partition,
                        &r.agent_id,
                        &r.device_id,
                        &r.target_device_ip,
                        &r.if_index,
                        &r.tags,
                    ],
                )
                .await
                .unwrap()
                .get(0);
            assert_eq!(r.series_key, from_sql, "series_key differs from SQL for {payload}");
        }
    }
    assert_eq!(checked, cases.len() + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_stream_restarts_while_the_other_stream_keeps_running() {
    let nats = NatsServer::start();
    let db = TestDb::create().await;
    let a = TestStream::telemetry(&unique("a"));
    let b = TestStream::telemetry(&unique("b"));
    let config = config(&nats.url, &db.url, &[a.clone(), b.clone()]);
    migrate(&config).await;
    let js = nats.jetstream().await;
    let daemon = InProcess::start(config);
    for s in [&a, &b] {
        wait_until(LIMIT, "consumers created", || async {
            match js.get_stream(&s.jetstream).await {
                Ok(st) => st.consumer_info(&s.consumer).await.is_ok(),
                Err(_) => false,
            }
        })
        .await;
    }
    // Pull the rug from under stream a: its consumer disappears; its task fails and must come back.
    js.get_stream(&a.jetstream).await.unwrap().delete_consumer(&a.consumer).await.unwrap();
    let (sa, sb) = (a.subjects[0].replace('>', "x"), b.subjects[0].replace('>', "x"));
    publish_all(&js, (0..20).map(|i| (sb.clone(), metric(i)))).await;
    wait_until(LIMIT, "stream b unaffected", || async { db.count("timeseries_metrics").await == 20 }).await;
    publish_all(&js, (100..120).map(|i| (sa.clone(), metric(i)))).await;
    wait_until(LIMIT, "stream a back after its restart", || async { db.count("timeseries_metrics").await == 40 }).await;
    wait_drained(&js, &a, LIMIT).await;
    wait_drained(&js, &b, LIMIT).await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_outage_is_survived_without_loss() {
    let mut nats = NatsServer::start();
    let db = TestDb::create().await;
    let mut stream = TestStream::telemetry(&unique("outage"));
    // A killed nats-server can come back believing some acked messages are still out (its consumer state is
    // written lazily); they return after ack_wait and are skipped as duplicates. Keep that wait short.
    stream.extra = "ack_wait = \"2s\"\n".to_owned();
    let config = config(&nats.url, &db.url, std::slice::from_ref(&stream));
    migrate(&config).await;
    let subject = stream.subjects[0].replace('>', "x");
    {
        let js = nats.jetstream().await;
        create_stream(&js, &stream).await;
        publish_all(&js, (0..100).map(|i| (subject.clone(), metric(i)))).await;
    }
    let daemon = InProcess::start(config);
    wait_until(LIMIT, "first rows", || async { db.count("timeseries_metrics").await == 100 }).await;

    nats.restart(Duration::from_secs(2));
    let js = nats.jetstream().await;
    publish_all(&js, (100..200).map(|i| (subject.clone(), metric(i)))).await;
    wait_until(LIMIT, "rows published after the outage", || async { db.count("timeseries_metrics").await == 200 })
        .await;
    wait_drained(&js, &stream, LIMIT).await;
    assert!(dead_letters(&js, &stream.name).await.is_empty(), "an outage dead-letters nothing");
    assert!(daemon.running());
    daemon.stop().await;
}

/// Shard isolation, the loose version (`make bench` measures it): while one stream drains a flood with more
/// writers than the pool has turns, a quiet stream on the same pool still commits each message within seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_stream_keeps_committing_while_a_hot_stream_drains_a_flood() {
    let nats = NatsServer::start();
    let db = TestDb::create().await;
    let mut hot = TestStream::telemetry(&unique("hot"));
    hot.batch_size = 1000;
    hot.extra = "writers = 4\nbatches_in_flight = 4\n".into();
    let quiet = TestStream::telemetry(&unique("quiet"));
    let streams = [hot.clone(), quiet.clone()];
    let config = config(&nats.url, &db.url, &streams);
    assert_eq!(config.database.pool_size, 4, "three turns for the hot stream's four writers");
    migrate(&config).await;
    let js = nats.jetstream().await;
    create_stream(&js, &hot).await;
    create_stream(&js, &quiet).await;
    const FLOOD: usize = 150_000;
    let subject = hot.subject("flood");
    publish_all(&js, (0..FLOOD).map(|i| (subject.clone(), metric(i)))).await;
    let daemon = InProcess::start(config);
    wait_until(LIMIT, "the flood started", || async { db.count("timeseries_metrics").await > 0 }).await;

    let quiet_rows = || async {
        db.client()
            .await
            .query_one("SELECT count(*) FROM platform.timeseries_metrics WHERE device_id LIKE 'quiet-%'", &[])
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    let (mut during, mut n) = (0, 0i64);
    let mut slowest = Duration::ZERO;
    while during < 3 {
        let payload = String::from_utf8(metric(n as usize)).unwrap().replace("device-", "quiet-");
        let sent = std::time::Instant::now();
        publish_all(&js, [(quiet.subject("q"), payload.into_bytes())]).await;
        n += 1;
        wait_until(Duration::from_secs(5), "the quiet stream's row during the flood", || async {
            quiet_rows().await == n
        })
        .await;
        slowest = slowest.max(sent.elapsed());
        let (pending, ack_pending) = consumer_state(&js, &hot).await;
        if pending + ack_pending as u64 > 0 {
            during += 1;
        } else {
            panic!(
                "the flood drained before the quiet stream committed 3 messages during it ({during}); make it larger"
            );
        }
        assert!(n < 100, "{n} quiet messages");
    }
    wait_drained(&js, &hot, LIMIT).await;
    wait_drained(&js, &quiet, LIMIT).await;
    assert_eq!(
        db.count("timeseries_metrics").await,
        FLOOD as i64 + n,
        "every message once (slowest quiet {slowest:?})"
    );
    daemon.stop().await;
}
