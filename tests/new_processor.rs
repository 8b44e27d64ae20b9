//! "Adding a processor" (README, `lib.rs`), done for a processor that exists only in this test: it implements
//! `Processor` (its constants, `new`, `decode`, `write`), has its table made by its own "migration", and runs
//! through the daemon's real pipeline (reader → writers → settler) against real NATS and PostgreSQL, with the
//! guarantees every processor gets: rows committed, every message acked, a redelivery not doubled, a bad
//! payload dead-lettered with its reason. (A shipped processor also gets a `ProcessorKind` variant and a
//! `dispatch` arm, which a test cannot add.)

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use db_event_writer::processor::api::{BatchDefaults, DecodeError, Incoming, Processor, RowSize, Rows};
use db_event_writer::sql::{column, qualified};
use tokio_util::sync::CancellationToken;

const LIMIT: Duration = Duration::from_secs(60);

/// `{"key": "...", "text": "..."}` → a row of `notes` with the text upper-cased.
struct Notes {
    insert: String,
}

struct Note {
    key: String,
    text: String,
}

impl RowSize for Note {
    fn size(&self) -> usize {
        self.key.len() + self.text.len()
    }
}

impl Processor for Notes {
    const NAME: &'static str = "notes";
    const TABLES: &'static [&'static str] = &["notes"];
    const BATCH: BatchDefaults = BatchDefaults { size: 100, timeout: Duration::from_millis(100) };
    const RETENTION: &'static [(&'static str, Duration)] = &[("notes", Duration::from_secs(86_400))];

    type Row = Note;

    fn new(database: &db_event_writer::config::DatabaseConfig) -> Self {
        let table = qualified(&database.schema, "notes");
        Notes {
            insert: format!(
                "INSERT INTO {table} (key, text) SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT DO NOTHING"
            ),
        }
    }

    fn decode(&self, msg: &Incoming<'_>, rows: &mut Rows<'_, Note>) -> Result<(), DecodeError> {
        let v: serde_json::Value =
            serde_json::from_slice(msg.payload).map_err(|e| DecodeError::new(format!("bad JSON: {e}")))?;
        let field = |k: &str| {
            v.get(k)
                .and_then(|x| x.as_str())
                .map(str::to_owned)
                .ok_or_else(|| DecodeError::new(format!("{k}: missing")))
        };
        rows.push(Note { key: field("key")?, text: field("text")?.to_uppercase() })
    }

    async fn write(
        &self,
        tx: &deadpool_postgres::Transaction<'_>,
        rows: &[Note],
    ) -> Result<u64, tokio_postgres::Error> {
        let stmt = tx.prepare_cached(&self.insert).await?;
        tx.execute(&stmt, &[&column(rows, |r| r.key.as_str()), &column(rows, |r| r.text.as_str())]).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processor_that_only_implements_the_trait_runs_with_every_guarantee() {
    let nats = NatsServer::start();
    let db = TestDb::create().await;
    let stream = TestStream::telemetry(&unique("notes"));
    let config = config(&nats.url, &db.url, std::slice::from_ref(&stream));
    migrate(&config).await;
    // Its migration.
    db.client()
        .await
        .batch_execute("CREATE TABLE platform.notes (key text PRIMARY KEY, text text NOT NULL)")
        .await
        .unwrap();
    let js = nats.jetstream().await;
    create_stream(&js, &stream).await;
    let note = |i: usize| format!(r#"{{"key": "k{i}", "text": "note {i}"}}"#).into_bytes();
    // Twenty notes, the first five published twice (a publisher's retry: new messages, same rows), one bad.
    let mut items: Vec<(String, Vec<u8>)> = (0..20).chain(0..5).map(|i| (stream.subject("x"), note(i))).collect();
    items.push((stream.subject("x"), br#"{"key": "no text"}"#.to_vec()));
    publish_all(&js, items).await;

    let js_daemon = async_nats::jetstream::new(nats.client().await);
    let shared = db_event_writer::pipeline::Shared {
        js: js_daemon.clone(),
        pool: db_event_writer::db::SharedPool::new(db_event_writer::db::pool(&config.database).unwrap()),
        database: config.database.clone(),
        jetstreams: Arc::new(db_event_writer::jetstream::stream_specs(&config)),
        dlq: db_event_writer::dlq::DeadLetters::new(js_daemon, config.dlq.clone()),
        breaker: Arc::new(db_event_writer::breaker::Breaker::new(config.breaker.clone())),
        metrics: Arc::new(db_event_writer::metrics::Metrics::new()),
        tracer: db_event_writer::traces::Tracer::off(),
        ingest_status: None,
        log: config.log.clone(),
    };
    shared.dlq.ensure_stream().await.unwrap();
    let shutdown = CancellationToken::new();
    let cfg = config.streams[0].clone();
    let task = tokio::spawn({
        let (shared, shutdown) = (shared.clone(), shutdown.clone());
        async move {
            db_event_writer::pipeline::run_processor(
                Notes::new(&db_event_writer::config::DatabaseConfig::for_schema("platform")),
                &cfg,
                &shared,
                &shutdown,
            )
            .await
        }
    });
    wait_drained(&js, &stream, LIMIT).await;
    let client = db.client().await;
    let rows: i64 = client.query_one("SELECT count(*) FROM platform.notes", &[]).await.unwrap().get(0);
    assert_eq!(rows, 20, "each note once");
    let text: String = client.query_one("SELECT text FROM platform.notes WHERE key = 'k7'", &[]).await.unwrap().get(0);
    assert_eq!(text, "NOTE 7");
    let letters = dead_letters(&js, &stream.name).await;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].header(db_event_writer::dlq::H_REASON), "text: missing");
    // Its metrics carry its own name and table.
    let exported = shared.metrics.encode();
    assert!(
        exported.contains(&format!(
            r#"db_event_writer_rows_committed_total{{stream="{}",processor="notes",table="notes"}} 25"#,
            stream.name
        )),
        "{exported}"
    );
    shutdown.cancel();
    tokio::time::timeout(LIMIT, task).await.unwrap().unwrap().unwrap();
}
