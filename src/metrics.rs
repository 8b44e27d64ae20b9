//! Prometheus metrics. Labels are `stream`, `processor`, `table`, `outcome` and `class`: configuration names and
//! closed sets only, never a subject or a payload value, so the number of series is bounded by streams.toml.
//!
//! The hot path uses [`StreamMetrics`]: handles resolved once per stream task, so counting a message is an
//! atomic add, not a label lookup.
//!
//! Uses nothing of the project: names, tables and classes come in as strings ([`StreamSeries`]).

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

/// Spans of our own exported, failed to export, and dropped (queue full): counted by [`crate::traces`].
#[derive(Debug, Clone, Default)]
pub struct SpanCounters {
    /// Spans the collector accepted.
    pub exported: Counter,
    /// Spans in requests that failed.
    pub failed: Counter,
    /// Spans dropped because the queue was full.
    pub dropped: Counter,
}

/// The series of one stream: its names, its processor's tables, and the dead-letter classes it can count.
#[derive(Debug, Clone, Copy)]
pub struct StreamSeries<'a> {
    /// `[[stream]] name`.
    pub stream: &'a str,
    /// Its processor's name.
    pub processor: &'a str,
    /// The processor's tables (for rows committed per table).
    pub tables: &'a [&'a str],
    /// Every dead-letter class (their counters start at 0).
    pub classes: &'a [&'a str],
    /// The processor's reasons for skipping part of a message (their counters start at 0).
    pub skips: &'a [&'a str],
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StreamLabels {
    stream: String,
    processor: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TableLabels {
    stream: String,
    processor: String,
    table: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassLabels {
    stream: String,
    processor: String,
    class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    stream: String,
    processor: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    stream: String,
    processor: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IngestLabels {
    route: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

fn batch_rows() -> Histogram {
    // 1 … 65,536 rows.
    Histogram::new(exponential_buckets(1.0, 4.0, 9))
}

fn seconds() -> Histogram {
    // 1 ms … ~65 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

type Counters<L> = Family<L, Counter>;

/// Why a stream task restarts (`stream_restarts`' `class`).
pub const RESTART_CLASSES: [&str; 6] = ["setup", "pull", "consumer_changed", "writer", "panic", "returned"];
type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric the daemon exports, and the registry that encodes them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    received: Counters<StreamLabels>,
    redelivered: Counters<StreamLabels>,
    acked: Counters<StreamLabels>,
    naked: Counters<StreamLabels>,
    terminated: Counters<StreamLabels>,
    dead_lettered: Counters<ClassLabels>,
    rows_committed: Counters<TableLabels>,
    rows_inserted: Counters<StreamLabels>,
    rows_skipped: Counters<ReasonLabels>,
    batches: Counters<OutcomeLabels>,
    batch_rows: Histograms<StreamLabels>,
    batch_seconds: Histograms<OutcomeLabels>,
    latency: Histograms<StreamLabels>,
    pending: Family<StreamLabels, Gauge>,
    ack_pending: Family<StreamLabels, Gauge>,
    consumer_redelivered: Family<StreamLabels, Gauge>,
    consumer_waiting: Family<StreamLabels, Gauge>,
    last_commit: Family<StreamLabels, Gauge>,
    held: Family<StreamLabels, Gauge>,
    letters_held: Family<StreamLabels, Gauge>,
    dlq_failures: Counters<StreamLabels>,
    stream_up: Family<StreamLabels, Gauge>,
    restarts: Counters<ClassLabels>,
    /// Why each failing stream's task failed last (absent once it runs again).
    failing: std::sync::Mutex<std::collections::BTreeMap<String, String>>,
    /// Each stream's rows inserted, messages acked and terminated (shared with its counters), for the log's summary.
    totals: std::sync::Mutex<std::collections::BTreeMap<String, [Counter; 3]>>,
    /// 0 closed, 1 open, 2 half-open.
    pub breaker_state: Gauge,
    /// Connections the pool holds.
    pub pool_size: Gauge,
    /// Connections checked out by writers.
    pub pool_in_use: Gauge,
    /// Writers waiting for a connection.
    pub pool_waiting: Gauge,
    /// 1 while the NATS connection is up.
    pub nats_connected: Gauge,
    /// Configuration reloads by outcome.
    reloads: Counters<ReloadLabels>,
    /// Our own spans exported, failed, dropped.
    pub spans: SpanCounters,
    ingest: Counters<IngestLabels>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric registered (prefix `db_event_writer_`).
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("db_event_writer");
        let m = Metrics {
            received: Family::default(),
            redelivered: Family::default(),
            acked: Family::default(),
            naked: Family::default(),
            terminated: Family::default(),
            dead_lettered: Family::default(),
            rows_committed: Family::default(),
            rows_inserted: Family::default(),
            rows_skipped: Family::default(),
            batches: Family::default(),
            batch_rows: Family::new_with_constructor(batch_rows as fn() -> Histogram),
            batch_seconds: Family::new_with_constructor(seconds as fn() -> Histogram),
            latency: Family::new_with_constructor(seconds as fn() -> Histogram),
            pending: Family::default(),
            ack_pending: Family::default(),
            consumer_redelivered: Family::default(),
            consumer_waiting: Family::default(),
            last_commit: Family::default(),
            held: Family::default(),
            letters_held: Family::default(),
            dlq_failures: Family::default(),
            stream_up: Family::default(),
            restarts: Family::default(),
            failing: Default::default(),
            totals: Default::default(),
            breaker_state: Gauge::default(),
            pool_size: Gauge::default(),
            pool_in_use: Gauge::default(),
            pool_waiting: Gauge::default(),
            nats_connected: Gauge::default(),
            reloads: Family::default(),
            spans: SpanCounters::default(),
            ingest: Family::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register("messages_received", "Messages delivered to the daemon", m.received.clone());
        r.register("messages_redelivered", "Deliveries that were not a message's first", m.redelivered.clone());
        r.register("messages_acked", "Messages acked after their rows committed", m.acked.clone());
        r.register("messages_naked", "Messages NAKed with a delay (transient failure)", m.naked.clone());
        r.register(
            "messages_terminated",
            "Messages terminated after their dead letter was stored",
            m.terminated.clone(),
        );
        r.register(
            "messages_dead_lettered",
            "Messages published to the dead-letter stream, by class",
            m.dead_lettered.clone(),
        );
        r.register(
            "rows_committed",
            "Rows in committed transactions (new or already present), by table",
            m.rows_committed.clone(),
        );
        r.register(
            "rows_inserted",
            "Rows that were new (the rest were redeliveries, skipped)",
            m.rows_inserted.clone(),
        );
        r.register(
            "rows_skipped",
            "Parts of accepted messages that become no row by the processor's rules (e.g. a span without an id, a \
             non-numeric metric point), by reason; the message's other rows are written",
            m.rows_skipped.clone(),
        );
        r.register("batches", "Batch writes, by outcome (committed, retry, rejected)", m.batches.clone());
        r.register("batch_rows", "Rows per written batch", m.batch_rows.clone());
        r.register("batch_write_seconds", "Time to write and commit one batch, by outcome", m.batch_seconds.clone());
        r.register("end_to_end_latency_seconds", "JetStream publish time to commit, per message", m.latency.clone());
        r.register(
            "consumer_pending",
            "Messages in JetStream not yet delivered to the consumer (lag)",
            m.pending.clone(),
        );
        r.register("consumer_ack_pending", "Messages delivered and awaiting ack", m.ack_pending.clone());
        r.register(
            "consumer_redelivered",
            "Messages redelivered and not yet acked (JetStream's count)",
            m.consumer_redelivered.clone(),
        );
        r.register(
            "consumer_waiting",
            "Pull requests waiting on the consumer (JetStream's num_waiting): 0 means no instance is pulling",
            m.consumer_waiting.clone(),
        );
        r.register(
            "last_commit_timestamp_seconds",
            "Unix time of the stream's last committed batch (0 until its first since the daemon started)",
            m.last_commit.clone(),
        );
        r.register(
            "messages_held",
            "Messages delivered and not yet settled (in a batch, being written, waiting for the database or the DLQ)",
            m.held.clone(),
        );
        r.register(
            "dead_letters_held",
            "Messages whose dead letter is not stored yet (held, never terminated, until the DLQ takes it)",
            m.letters_held.clone(),
        );
        r.register(
            "dead_letter_failures",
            "Dead-letter publishes that failed (the message stays held and is retried)",
            m.dlq_failures.clone(),
        );
        r.register(
            "stream_up",
            "1 while the stream's task consumes, 0 while it starts or fails (see /readyz for why)",
            m.stream_up.clone(),
        );
        r.register(
            "stream_restarts",
            "Stream tasks that failed and were restarted, by class (setup, pull, consumer_changed, writer, panic, \
             returned)",
            m.restarts.clone(),
        );
        r.register("breaker_state", "Database circuit breaker: 0 closed, 1 open, 2 half-open", m.breaker_state.clone());
        r.register("pool_connections", "Connections in the PostgreSQL pool", m.pool_size.clone());
        r.register("pool_in_use", "Pool connections checked out", m.pool_in_use.clone());
        r.register("pool_waiting", "Writers waiting for a pool connection", m.pool_waiting.clone());
        r.register("nats_connected", "1 while the NATS connection is up", m.nats_connected.clone());
        r.register("config_reloads", "Configuration reloads, by outcome (applied, rejected)", m.reloads.clone());
        r.register(
            "ingest_requests",
            "HTTP ingest requests by route (event, batch, status) and HTTP status",
            m.ingest.clone(),
        );
        r.register("otel_spans_exported", "Batch spans the OTLP collector accepted", m.spans.exported.clone());
        r.register("otel_spans_failed", "Batch spans in export requests that failed", m.spans.failed.clone());
        r.register(
            "otel_spans_dropped",
            "Batch spans dropped because the export queue was full",
            m.spans.dropped.clone(),
        );
        r.register(
            "build",
            "Build information",
            Info::new(BuildLabels { version: env!("CARGO_PKG_VERSION").to_owned() }),
        );
        for outcome in ["applied", "rejected"] {
            drop(m.reloads.get_or_create(&ReloadLabels { outcome: outcome.to_owned() }));
        }
        Metrics { registry, ..m }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The same in Prometheus's classic text format (0.0.4), for scrapers that do not ask for OpenMetrics.
    pub fn encode_classic(&self) -> String {
        classic(&self.encode())
    }

    /// Handles for one stream's hot path.
    pub fn stream(self: &Arc<Self>, series: StreamSeries<'_>) -> StreamMetrics {
        let s = StreamLabels { stream: series.stream.to_owned(), processor: series.processor.to_owned() };
        let outcome =
            |o: &str| OutcomeLabels { stream: s.stream.clone(), processor: s.processor.clone(), outcome: o.into() };
        // Every class from the start, so a first dead letter is an increase from 0, not a new series.
        for class in series.classes {
            let l =
                ClassLabels { stream: s.stream.clone(), processor: s.processor.clone(), class: (*class).to_owned() };
            drop(self.dead_lettered.get_or_create(&l));
        }
        for reason in series.skips {
            let l =
                ReasonLabels { stream: s.stream.clone(), processor: s.processor.clone(), reason: (*reason).to_owned() };
            drop(self.rows_skipped.get_or_create(&l));
        }
        let tables = series
            .tables
            .iter()
            .map(|t| {
                let l =
                    TableLabels { stream: s.stream.clone(), processor: s.processor.clone(), table: (*t).to_owned() };
                self.rows_committed.get_or_create_owned(&l)
            })
            .collect();
        let (rows_inserted, acked, terminated) = (
            self.rows_inserted.get_or_create_owned(&s),
            self.acked.get_or_create_owned(&s),
            self.terminated.get_or_create_owned(&s),
        );
        self.totals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(s.stream.clone(), [rows_inserted.clone(), acked.clone(), terminated.clone()]);
        StreamMetrics {
            received: self.received.get_or_create_owned(&s),
            redelivered: self.redelivered.get_or_create_owned(&s),
            acked,
            naked: self.naked.get_or_create_owned(&s),
            terminated,
            rows_committed: tables,
            rows_inserted,
            committed: self.batches.get_or_create_owned(&outcome("committed")),
            retried: self.batches.get_or_create_owned(&outcome("retry")),
            rejected: self.batches.get_or_create_owned(&outcome("rejected")),
            batch_rows: self.batch_rows.get_or_create_owned(&s),
            commit_seconds: self.batch_seconds.get_or_create_owned(&outcome("committed")),
            failed_seconds: self.batch_seconds.get_or_create_owned(&outcome("failed")),
            latency: self.latency.get_or_create_owned(&s),
            pending: self.pending.get_or_create_owned(&s),
            ack_pending: self.ack_pending.get_or_create_owned(&s),
            consumer_redelivered: self.consumer_redelivered.get_or_create_owned(&s),
            consumer_waiting: self.consumer_waiting.get_or_create_owned(&s),
            last_commit: self.last_commit.get_or_create_owned(&s),
            held: self.held.get_or_create_owned(&s),
            letters_held: self.letters_held.get_or_create_owned(&s),
            dlq_failures: self.dlq_failures.get_or_create_owned(&s),
            labels: s,
            all: Arc::clone(self),
        }
    }

    /// A configured stream's task is starting: its `stream_up` is 0, every restart class, its last commit time and
    /// its consumer's waiting pulls start at 0, so all exist from the first scrape.
    pub fn stream_starting(&self, stream: &str, processor: &str) {
        let s = StreamLabels { stream: stream.to_owned(), processor: processor.to_owned() };
        drop(self.stream_up.get_or_create(&s));
        drop(self.last_commit.get_or_create(&s));
        drop(self.consumer_waiting.get_or_create(&s));
        for class in RESTART_CLASSES {
            let l = ClassLabels { stream: s.stream.clone(), processor: s.processor.clone(), class: class.to_owned() };
            drop(self.restarts.get_or_create(&l));
        }
    }

    /// The stream's task consumes.
    pub fn stream_running(&self, stream: &str, processor: &str) {
        let s = StreamLabels { stream: stream.to_owned(), processor: processor.to_owned() };
        self.stream_up.get_or_create(&s).set(1);
        self.failing.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(stream);
    }

    /// The stream's task failed (`class`, one of [`RESTART_CLASSES`]) and will be restarted.
    pub fn stream_failed(&self, stream: &str, processor: &str, class: &str, why: &str) {
        let s = StreamLabels { stream: stream.to_owned(), processor: processor.to_owned() };
        self.stream_up.get_or_create(&s).set(0);
        let l = ClassLabels { stream: s.stream.clone(), processor: s.processor.clone(), class: class.to_owned() };
        self.restarts.get_or_create(&l).inc();
        self.failing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(stream.to_owned(), why.to_owned());
    }

    /// The failing streams and why (their last error).
    pub fn failing_streams(&self) -> std::collections::BTreeMap<String, String> {
        self.failing.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Each stream's totals so far: rows inserted, messages acked, messages terminated (dead-lettered).
    pub fn totals(&self) -> Vec<(String, [u64; 3])> {
        let totals = self.totals.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        totals.iter().map(|(name, [r, a, t])| (name.clone(), [r.get(), a.get(), t.get()])).collect()
    }

    /// Drops every series of a stream removed by a reload, so its last lag does not linger on dashboards.
    pub fn forget_stream(&self, series: StreamSeries<'_>) {
        let s = StreamLabels { stream: series.stream.to_owned(), processor: series.processor.to_owned() };
        self.totals.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(series.stream);
        for family in
            [&self.received, &self.redelivered, &self.acked, &self.naked, &self.terminated, &self.rows_inserted]
        {
            family.remove(&s);
        }
        for family in [
            &self.pending,
            &self.ack_pending,
            &self.consumer_redelivered,
            &self.consumer_waiting,
            &self.last_commit,
            &self.held,
            &self.letters_held,
        ] {
            family.remove(&s);
        }
        self.dlq_failures.remove(&s);
        self.stream_up.remove(&s);
        for class in RESTART_CLASSES {
            let l = ClassLabels { stream: s.stream.clone(), processor: s.processor.clone(), class: class.to_owned() };
            self.restarts.remove(&l);
        }
        self.failing.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(series.stream);
        for reason in series.skips {
            let l =
                ReasonLabels { stream: s.stream.clone(), processor: s.processor.clone(), reason: (*reason).to_owned() };
            self.rows_skipped.remove(&l);
        }
        self.batch_rows.remove(&s);
        self.latency.remove(&s);
        for t in series.tables {
            self.rows_committed.remove(&TableLabels {
                stream: s.stream.clone(),
                processor: s.processor.clone(),
                table: (*t).to_owned(),
            });
        }
        for o in ["committed", "retry", "rejected", "failed"] {
            let l = OutcomeLabels { stream: s.stream.clone(), processor: s.processor.clone(), outcome: o.to_owned() };
            self.batches.remove(&l);
            self.batch_seconds.remove(&l);
        }
        for class in series.classes {
            let l =
                ClassLabels { stream: s.stream.clone(), processor: s.processor.clone(), class: (*class).to_owned() };
            self.dead_lettered.remove(&l);
        }
    }

    /// Records the breaker's state.
    pub fn set_breaker(&self, code: i64) {
        self.breaker_state.set(code);
    }

    /// Counts a configuration reload (`applied` or `rejected`).
    pub fn reload(&self, outcome: &str) {
        let l = ReloadLabels { outcome: outcome.to_owned() };
        self.reloads.get_or_create(&l).inc();
    }

    /// The ingest front is on: every route with the statuses it answers starts at 0, so the first 429 or 503 is an
    /// increase from 0 for `increase()`, not a new series.
    pub fn ingest_on(&self) {
        const ANSWERS: [u16; 12] = [200, 202, 400, 401, 403, 404, 405, 408, 413, 415, 429, 503];
        for route in ["event", "batch", "status", "openapi"] {
            for status in ANSWERS {
                drop(self.ingest.get_or_create(&IngestLabels { route, status }));
            }
        }
    }

    /// Counts one HTTP ingest request (`route`: event, batch or status).
    pub fn ingest_request(&self, route: &'static str, status: u16) {
        self.ingest.get_or_create(&IngestLabels { route, status }).inc();
    }
}

/// The content type of [`Metrics::encode`].
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of [`Metrics::encode_classic`].
pub const CLASSIC: &str = "text/plain; version=0.0.4; charset=utf-8";

/// An OpenMetrics exposition rewritten in the classic text format that Prometheus 2.x parses without
/// negotiation and `promtool check metrics` checks: a counter family is named by its `_total` samples, an `info`
/// family becomes a gauge named `<name>_info`, `# UNIT` and `# EOF` are dropped. Samples are unchanged.
pub fn classic(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut help: Option<(&str, &str)> = None;
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = rest.split_once(' ').or(Some((rest, "")));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let (family, kind) = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "info" => (format!("{name}_info"), "gauge"),
                "gaugehistogram" | "stateset" | "unknown" => (name.to_owned(), "untyped"),
                other => (name.to_owned(), other),
            };
            if let Some((_, text)) = help.take().filter(|(h, _)| *h == name) {
                out.push_str(&format!("# HELP {family} {text}\n"));
            }
            out.push_str(&format!("# TYPE {family} {kind}\n"));
            continue;
        }
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// One stream's metric handles (cheap clones of shared atomics).
#[derive(Debug, Clone)]
pub struct StreamMetrics {
    /// Messages delivered.
    pub received: Counter,
    /// Deliveries after the first.
    pub redelivered: Counter,
    /// Acked after commit.
    pub acked: Counter,
    /// NAKed with a delay.
    pub naked: Counter,
    /// Terminated after dead-lettering.
    pub terminated: Counter,
    rows_committed: Vec<Counter>,
    /// New rows.
    pub rows_inserted: Counter,
    /// Batches committed.
    pub committed: Counter,
    /// Batches that failed transiently.
    pub retried: Counter,
    /// Batches (or bisected parts) the database refused.
    pub rejected: Counter,
    /// Rows per batch.
    pub batch_rows: Histogram,
    /// Write time of committed batches.
    pub commit_seconds: Histogram,
    /// Write time of failed batches.
    pub failed_seconds: Histogram,
    /// Publish → commit.
    pub latency: Histogram,
    /// Consumer lag.
    pub pending: Gauge,
    /// Awaiting ack.
    pub ack_pending: Gauge,
    /// JetStream's redelivered count.
    pub consumer_redelivered: Gauge,
    /// Pull requests waiting on the consumer (any instance's).
    pub consumer_waiting: Gauge,
    /// Unix seconds of the last commit.
    pub last_commit: Gauge,
    /// Messages held by the settler.
    pub held: Gauge,
    /// Of those, dead letters not stored yet.
    pub letters_held: Gauge,
    /// Dead-letter publishes that failed.
    pub dlq_failures: Counter,
    labels: StreamLabels,
    all: Arc<Metrics>,
}

impl StreamMetrics {
    /// Counts committed rows of the processor's `table_index`-th table.
    pub fn rows_committed(&self, table_index: usize, n: u64) {
        if let Some(c) = self.rows_committed.get(table_index) {
            c.inc_by(n);
        }
    }

    /// Counts `n` parts of messages that became no row, for `reason`.
    pub fn rows_skipped(&self, reason: &str, n: u64) {
        let l = ReasonLabels {
            stream: self.labels.stream.clone(),
            processor: self.labels.processor.clone(),
            reason: reason.to_owned(),
        };
        self.all.rows_skipped.get_or_create(&l).inc_by(n);
    }

    /// Counts a dead letter of `class`.
    pub fn dead_lettered(&self, class: &str) {
        let l = ClassLabels {
            stream: self.labels.stream.clone(),
            processor: self.labels.processor.clone(),
            class: class.to_owned(),
        };
        self.all.dead_lettered.get_or_create(&l).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series<'a>(stream: &'a str, processor: &'a str, tables: &'a [&'a str]) -> StreamSeries<'a> {
        StreamSeries { stream, processor, tables, classes: &["decode", "rejected"], skips: &["no_id"] }
    }

    #[test]
    fn exposition_names_labels_and_counts() {
        let m = Arc::new(Metrics::new());
        let otel = series("telemetry", "otel", &["otel_traces", "otel_metrics"]);
        let s = m.stream(otel);
        s.received.inc_by(3);
        s.rows_committed(1, 5);
        s.dead_lettered("decode");
        s.latency.observe(0.25);
        m.set_breaker(1);
        let text = m.encode();
        assert!(
            text.contains(r#"db_event_writer_messages_received_total{stream="telemetry",processor="otel"} 3"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"db_event_writer_rows_committed_total{stream="telemetry",processor="otel",table="otel_metrics"} 5"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"db_event_writer_messages_dead_lettered_total{stream="telemetry",processor="otel",class="decode"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"db_event_writer_end_to_end_latency_seconds_count{stream="telemetry",processor="otel"} 1"#)
        );
        assert!(text.contains("db_event_writer_breaker_state 1"), "{text}");
        assert!(
            text.contains(
                r#"db_event_writer_messages_dead_lettered_total{stream="telemetry",processor="otel",class="rejected"} 0"#
            ),
            "every class starts at 0: {text}"
        );
        assert!(text.contains(r#"db_event_writer_build_info{version=""#), "{text}");
        let classic = classic(&text);
        assert!(classic.contains("# TYPE db_event_writer_build_info gauge\n"), "{classic}");
        assert!(classic.contains("# TYPE db_event_writer_messages_received_total counter\n"), "{classic}");
        assert!(classic.contains("# HELP db_event_writer_messages_received_total Messages delivered"), "{classic}");
        assert!(classic.contains("# TYPE db_event_writer_batch_write_seconds histogram\n"), "{classic}");
        assert!(!classic.contains("# EOF") && !classic.contains(" info\n"), "{classic}");
        let samples = |t: &str| t.lines().filter(|l| !l.starts_with('#')).map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(samples(&classic), samples(&text), "samples are unchanged");
        // A second stream handle for the same stream shares the counters.
        m.stream(otel).received.inc();
        assert!(m.encode().contains(r#"messages_received_total{stream="telemetry",processor="otel"} 4"#));
        // A removed stream leaves no series behind.
        m.stream(series("other", "logs", &["logs"])).received.inc();
        m.forget_stream(otel);
        let text = m.encode();
        assert!(!text.contains(r#"stream="telemetry""#), "{text}");
        assert!(text.contains(r#"messages_received_total{stream="other",processor="logs"} 1"#), "{text}");
    }
}
