//! One processor's daemon on its own nats-server and database: publish, start, drain, redeliver everything.

use std::time::Duration;

use db_event_writer::RunError;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::*;

const LIMIT: Duration = Duration::from_secs(60);

/// A daemon with one stream of one processor, on its own nats-server and database.
pub struct Harness {
    pub nats: NatsServer,
    pub db: TestDb,
    pub stream: TestStream,
    pub js: async_nats::jetstream::Context,
    pub config: db_event_writer::config::Config,
    running: Option<(CancellationToken, JoinHandle<Result<(), RunError>>)>,
}

impl Harness {
    pub async fn new(processor: &'static str) -> Harness {
        Harness::on(processor, &[]).await
    }

    /// The same, consuming `subjects` (ServiceRadar's own, e.g. `metrics.>`) instead of a unique prefix.
    pub async fn on(processor: &'static str, subjects: &[&str]) -> Harness {
        init_logs();
        let nats = NatsServer::start();
        let db = TestDb::create().await;
        let mut stream = TestStream::of(processor, &unique("p"));
        if !subjects.is_empty() {
            stream.subjects = subjects.iter().map(|s| (*s).to_owned()).collect();
        }
        let config = config(&nats.url, &db.url, std::slice::from_ref(&stream));
        migrate(&config).await;
        let js = nats.jetstream().await;
        create_stream(&js, &stream).await;
        Harness { nats, db, stream, js, config, running: None }
    }

    pub fn start(&mut self) {
        let token = CancellationToken::new();
        let handle = tokio::spawn(db_event_writer::run(self.config.clone(), token.clone()));
        self.running = Some((token, handle));
    }

    pub async fn stop(&mut self) {
        let (token, handle) = self.running.take().expect("running");
        token.cancel();
        tokio::time::timeout(Duration::from_secs(30), handle).await.unwrap().unwrap().unwrap();
    }

    pub async fn publish(&self, items: Vec<(String, Vec<u8>)>) {
        publish_all(&self.js, items).await;
    }

    pub async fn drained(&self) {
        wait_drained(&self.js, &self.stream, LIMIT).await;
        let _ = &self.nats;
    }

    /// Every message handed out again (same stream sequences): the rows must not change.
    pub async fn redeliver_everything(&mut self, table: &str) {
        let before = self.db.count(table).await;
        self.stop().await;
        self.js.get_stream(&self.stream.jetstream).await.unwrap().delete_consumer(&self.stream.consumer).await.unwrap();
        self.start();
        self.drained().await;
        let info = self
            .js
            .get_stream(&self.stream.jetstream)
            .await
            .unwrap()
            .consumer_info(&self.stream.consumer)
            .await
            .unwrap();
        assert!(info.delivered.stream_sequence > 0, "messages were delivered again: {info:?}");
        assert_eq!(self.db.count(table).await, before, "a redelivery added rows to {table}");
    }

    /// Publishes `payload` on `subject` with `headers`, waiting for JetStream's ack.
    pub async fn publish_with(&self, subject: &str, headers: &[(&str, &str)], payload: Vec<u8>) {
        let mut map = async_nats::HeaderMap::new();
        for (k, v) in headers {
            map.insert(*k, *v);
        }
        self.js.publish_with_headers(subject.to_owned(), map, payload.into()).await.unwrap().await.unwrap();
    }
}
