//! Fault injection against real servers: each test publishes a known set of messages, breaks something, and
//! checks afterwards that every good message is in its table exactly once, the DLQ holds exactly the poison,
//! the consumer has nothing pending or awaiting ack, and the daemon still runs.

mod common;

use std::time::Duration;

use common::*;
use db_event_writer::dlq::{H_CLASS, H_DELIVERED, H_REASON, H_SEQUENCE, H_STREAM, H_SUBJECT};

const LIMIT: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_of_every_kind_goes_to_the_dlq_with_its_reason_and_one_bad_row_does_not_sink_its_batch() {
    let nats = NatsServer::start();
    let db = TestDb::create().await;
    let mut stream = TestStream::telemetry(&unique("poison"));
    stream.batch_size = 1_000;
    stream.batch_timeout = "500ms";
    let config = config(&nats.url, &db.url, std::slice::from_ref(&stream));
    migrate(&config).await;
    // The database will refuse one sample: a CHECK violation (SQLSTATE 23514), i.e. a permanent error.
    db.client()
        .await
        .batch_execute(
            "ALTER TABLE platform.timeseries_metrics ADD CONSTRAINT no_poison CHECK (metric_name <> 'poison')",
        )
        .await
        .unwrap();
    let js = nats.jetstream().await;
    create_stream(&js, &stream).await;
    let subject = stream.subject("x");
    let mut items: Vec<(String, Vec<u8>)> = (0..999).map(|i| (subject.clone(), metric(i))).collect();
    items.insert(500, (subject.clone(), br#"{"metric_name": "poison", "value": 1, "device_id": "p"}"#.to_vec()));
    items.push((subject.clone(), vec![0xff, 0xfe, 0x00]));
    items.push((subject.clone(), b"{\"value\": ".to_vec()));
    items.push((subject.clone(), br#"{"value": "not a number"}"#.to_vec()));
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    publish_all(&js, items).await;
    js.publish_with_headers(subject.clone(), headers, "[1, 2]".into()).await.unwrap().await.unwrap();

    let daemon = InProcess::start(config);
    wait_drained(&js, &stream, LIMIT).await;
    assert_eq!(db.count("timeseries_metrics").await, 999, "every good row of the batch landed");
    let letters = dead_letters(&js, &stream.name).await;
    let mut classes: Vec<&str> = letters.iter().map(|l| l.header(H_CLASS)).collect();
    classes.sort();
    assert_eq!(classes, ["decode", "decode", "decode", "decode", "rejected"], "exactly the poison");
    let rejected = letters.iter().find(|l| l.header(H_CLASS) == "rejected").unwrap();
    assert_eq!(rejected.header(H_STREAM), stream.name);
    assert_eq!(rejected.header(H_SUBJECT), subject);
    assert_eq!(rejected.header(H_SEQUENCE), "501");
    assert_eq!(rejected.header(H_DELIVERED), "1");
    assert!(rejected.header(H_REASON).contains("no_poison"), "{}", rejected.header(H_REASON));
    assert!(rejected.header(H_REASON).contains("23514"), "{}", rejected.header(H_REASON));
    assert_eq!(&rejected.payload[..], br#"{"metric_name": "poison", "value": 1, "device_id": "p"}"#);
    let with_header = letters.iter().find(|l| &l.payload[..] == b"[1, 2]").unwrap();
    assert_eq!(
        with_header.header("Traceparent"),
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "original headers kept"
    );
    assert!(with_header.header(H_REASON).contains("[0]"), "{}", with_header.header(H_REASON));

    // Fixed at the source, a replay puts the rejected one where it belongs, once, and empties the DLQ.
    db.client().await.batch_execute("ALTER TABLE platform.timeseries_metrics DROP CONSTRAINT no_poison").await.unwrap();
    let dlq = db_event_writer::config::DlqConfig {
        subject_prefix: "dlq".into(),
        stream: "DLQ".into(),
        max_age: Duration::from_secs(3600),
        max_bytes: 1 << 30,
        replicas: 1,
    };
    let replayed = db_event_writer::dlq::tools::replay(
        &js,
        &dlq,
        &db_event_writer::dlq::tools::Filter::of(Some(&stream.name), 100),
        false,
    )
    .await
    .unwrap();
    assert_eq!(replayed, db_event_writer::dlq::tools::Replayed { replayed: 5, kept: 0, beyond_limit: 0 });
    wait_until(LIMIT, "replayed row", || async { db.count("timeseries_metrics").await == 1000 }).await;
    wait_drained(&js, &stream, LIMIT).await;
    let again = dead_letters(&js, &stream.name).await;
    assert_eq!(again.len(), 4, "the undecodable ones come back to the DLQ; the fixed one does not");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_failing_on_its_last_delivery_is_dead_lettered_not_lost() {
    let nats = NatsServer::start();
    let db = TestDb::create().await;
    let mut stream = TestStream::telemetry(&unique("maxdel"));
    stream.extra = "max_deliver = 2\nnak_delay = \"200ms\"\nnak_delay_max = \"200ms\"\n".to_owned();
    let config = config(&nats.url, &db.url, std::slice::from_ref(&stream));
    migrate(&config).await;
    let js = nats.jetstream().await;
    let daemon = InProcess::start(config);
    wait_for_consumer(&js, &stream, LIMIT).await;
    // Every write now fails with a transient (not permanent, not connection) error.
    db.client().await.batch_execute("ALTER TABLE platform.timeseries_metrics RENAME TO gone").await.unwrap();
    publish_all(&js, [(stream.subject("x"), metric(1))]).await;
    wait_drained(&js, &stream, LIMIT).await;
    let letters = dead_letters(&js, &stream.name).await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].header(H_CLASS), "max_deliver");
    assert_eq!(letters[0].header(H_DELIVERED), "2");
    assert!(letters[0].header(H_REASON).contains("42P01"), "{}", letters[0].header(H_REASON));
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dlq_stream_deleted_while_running_is_created_again_and_the_poison_lands_in_it() {
    // Scenario 1 of the settle issue: the DLQ stream is deleted while the daemon runs.
    let nats = NatsServer::start();
    let db = TestDb::create().await;
    let mut stream = TestStream::telemetry(&unique("nodlq"));
    stream.extra = "nak_delay = \"200ms\"\nnak_delay_max = \"500ms\"\n".to_owned();
    let config = config(&nats.url, &db.url, std::slice::from_ref(&stream));
    migrate(&config).await;
    let js = nats.jetstream().await;
    let daemon = InProcess::start(config);
    wait_for_consumer(&js, &stream, LIMIT).await;
    js.delete_stream("DLQ").await.unwrap();
    publish_all(
        &js,
        (0..10).map(|_| (stream.subject("x"), b"garbage".to_vec())).chain([(stream.subject("x"), metric(1))]),
    )
    .await;
    wait_drained(&js, &stream, LIMIT).await;
    assert_eq!(db.count("timeseries_metrics").await, 1);
    let letters = dead_letters(&js, &stream.name).await;
    assert_eq!(letters.len(), 10, "every poison message is in the recreated DLQ");
    assert!(letters.iter().all(|l| l.header(H_CLASS) == "decode"));
    let info = js.get_stream(&stream.jetstream).await.unwrap().consumer_info(&stream.consumer).await.unwrap();
    assert_eq!(info.num_redelivered, 0, "nothing was NAKed: the DLQ came back at the first publish: {info:?}");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_blocked_longer_than_ack_wait_is_not_redelivered() {
    let nats = NatsServer::start();
    let db = TestDb::create().await;
    let mut stream = TestStream::telemetry(&unique("lock"));
    stream.extra = "ack_wait = \"2s\"\n".to_owned();
    let config = config(&nats.url, &db.url, std::slice::from_ref(&stream));
    migrate(&config).await;
    let js = nats.jetstream().await;
    let daemon = InProcess::start(config);
    wait_for_consumer(&js, &stream, LIMIT).await;
    // The test holds a lock the writer needs, for three times ack_wait.
    let mut locker = db.client().await;
    let tx = locker.transaction().await.unwrap();
    tx.batch_execute("LOCK TABLE platform.timeseries_metrics IN ACCESS EXCLUSIVE MODE").await.unwrap();
    publish_all(&js, (0..20).map(|i| (stream.subject("x"), metric(i)))).await;
    tokio::time::sleep(Duration::from_secs(6)).await;
    tx.rollback().await.unwrap();
    wait_until(LIMIT, "rows after the lock", || async { db.count("timeseries_metrics").await == 20 }).await;
    wait_drained(&js, &stream, LIMIT).await;
    let info = js.get_stream(&stream.jetstream).await.unwrap().consumer_info(&stream.consumer).await.unwrap();
    assert_eq!(info.num_redelivered, 0, "in-progress acks kept JetStream from redelivering: {info:?}");
    assert_eq!(info.delivered.consumer_sequence, 20, "each message delivered once: {info:?}");
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_opens_the_breaker_stops_fetching_and_loses_nothing() {
    let nats = NatsServer::start();
    let db = TestDb::create().await;
    let proxy = Proxy::start(5432).await;
    let mut stream = TestStream::telemetry(&unique("outage"));
    stream.batch_size = 50;
    stream.extra = "nak_delay = \"200ms\"\nnak_delay_max = \"1s\"\n".to_owned();
    let text = config_text(&nats.url, &proxy.url_for(&db.url), std::slice::from_ref(&stream))
        .replace("[daemon]", "[breaker]\nfailures = 2\ncooldown = \"1s\"\n\n[daemon]")
        .replace("pool_size = 4", "pool_size = 4\nconnect_timeout = \"1s\"");
    let config = db_event_writer::parse_config(std::path::Path::new("t.toml"), &text).unwrap();
    migrate(&config).await;
    let js = nats.jetstream().await;
    create_stream(&js, &stream).await;
    let subject = stream.subject("x");
    publish_all(&js, (0..200).map(|i| (subject.clone(), metric(i)))).await;
    let daemon = InProcess::start(config);
    wait_until(LIMIT, "first rows", || async { db.count("timeseries_metrics").await == 200 }).await;

    proxy.cut();
    publish_all(&js, (200..1200).map(|i| (subject.clone(), metric(i)))).await;
    // Ten seconds down: the breaker opens and fetching stops, so messages wait in JetStream.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let info = js.get_stream(&stream.jetstream).await.unwrap().consumer_info(&stream.consumer).await.unwrap();
    assert!(info.num_pending >= 800, "messages stay in JetStream while the database is down: {info:?}");
    assert!(info.num_ack_pending <= 200, "and are not pulled into memory: {info:?}");
    assert_eq!(db.count("timeseries_metrics").await, 200);

    proxy.restore();
    wait_until(LIMIT, "every row after the outage", || async { db.count("timeseries_metrics").await == 1200 }).await;
    wait_drained(&js, &stream, LIMIT).await;
    assert!(dead_letters(&js, &stream.name).await.is_empty(), "an outage dead-letters nothing");
    daemon.stop().await;
}
