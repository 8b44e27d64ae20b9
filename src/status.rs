//! `db-event-writer status`: what JetStream says of each stream's consumer (lag, awaiting ack, redelivered, how
//! many pull requests wait on it: 0 means no instance pulls, and the delivery and ack rates over `interval`), how
//! many dead letters it has, whether the DLQ can take more, whether NATS and the database answer, and, from the
//! running daemon's `/metrics` and `/readyz` when `[http] listen` is set, how many dead letters it holds unstored,
//! when it last committed and whether each stream's task runs (or why it fails). Reads only. [`render_top`] is
//! `status --watch`'s screen.
//!
//! Uses the config types, JetStream and the pool.

use std::fmt;
use std::time::Duration;

use futures::TryStreamExt;
use serde::Serialize;

use crate::config::{Config, redact_url};
use crate::jetstream;

/// One `[[stream]]`'s consumer as JetStream sees it.
#[derive(Debug, Clone, Serialize)]
pub struct StreamStatus {
    /// `[[stream]] name`.
    pub name: String,
    /// Its processor.
    pub processor: String,
    /// JetStream stream.
    pub jetstream: String,
    /// Durable consumer.
    pub consumer: String,
    /// Messages not yet delivered (lag).
    pub lag: Option<u64>,
    /// Delivered, awaiting ack.
    pub awaiting_ack: Option<usize>,
    /// Redelivered and not yet acked.
    pub redelivered: Option<usize>,
    /// Pull requests waiting on the consumer (JetStream's `num_waiting`): 0 while nobody pulls.
    pub pullers: Option<usize>,
    /// Deliveries per second over the sampling interval.
    pub delivered_per_sec: Option<f64>,
    /// Acks per second over the sampling interval (deliveries less the growth of awaiting ack).
    pub acked_per_sec: Option<f64>,
    /// Seconds since the running daemon last committed a batch of this stream (its `/metrics`; unknown before the
    /// first commit or when the daemon does not answer there).
    pub last_commit_age: Option<f64>,
    /// Dead letters kept for it.
    pub dead_letters: Option<u64>,
    /// Messages the running daemon holds whose dead letter is not stored yet (its `/metrics`; unknown when the
    /// daemon does not answer there).
    pub dead_letters_held: Option<u64>,
    /// The running daemon's task for it (its `/metrics` and `/readyz`): `running`, `starting`, or `failing: <its
    /// last error>`; unknown when the daemon does not answer there.
    pub task: Option<String>,
    /// Why some of the above is unknown.
    pub error: Option<String>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// `ok` or why not.
    pub nats: String,
    /// nats-server version, when connected.
    pub nats_version: Option<String>,
    /// `ok` or why not.
    pub database: String,
    /// The DLQ stream: `ok (…)`, or why dead letters cannot be stored (missing, full).
    pub dlq: String,
    /// The running daemon's breaker (its `/metrics`): `closed`, `open`, `half-open`; unknown without it.
    pub breaker: Option<String>,
    /// One per `[[stream]]`.
    pub streams: Vec<StreamStatus>,
}

/// One consumer sample: deliveries so far and awaiting ack, and when.
#[derive(Debug, Clone, Copy)]
struct Sample {
    delivered: u64,
    ack_pending: usize,
    at: std::time::Instant,
}

impl Status {
    /// NATS and the database answer, the DLQ takes letters, every consumer was found, no dead letter waits and no
    /// stream's task is failing.
    pub fn healthy(&self) -> bool {
        self.nats == "ok"
            && self.database == "ok"
            && self.dlq.starts_with("ok")
            && self.streams.iter().all(|s| {
                s.error.is_none()
                    && s.dead_letters_held.unwrap_or(0) == 0
                    && !s.task.as_deref().is_some_and(|t| t.starts_with("failing"))
            })
    }
}

const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Asks NATS and the database; never fails (what cannot be learned is reported as such). The consumers are
/// sampled twice, `interval` apart, for their rates (none when `interval` is zero).
pub async fn status(config: &Config, interval: Duration) -> Status {
    let database = database(config).await;
    let mut streams: Vec<StreamStatus> = config
        .streams
        .iter()
        .map(|s| StreamStatus {
            name: s.name.clone(),
            processor: s.processor.name().to_owned(),
            jetstream: s.jetstream.clone(),
            consumer: s.consumer.clone(),
            lag: None,
            awaiting_ack: None,
            redelivered: None,
            pullers: None,
            delivered_per_sec: None,
            acked_per_sec: None,
            last_commit_age: None,
            dead_letters: None,
            dead_letters_held: None,
            task: None,
            error: None,
        })
        .collect();
    let mut breaker = None;
    if let Some(text) = daemon_get(config, "/metrics").await {
        breaker = text.lines().find_map(|l| l.strip_prefix("db_event_writer_breaker_state ")).map(|v| {
            match v.trim() {
                "0" => "closed",
                "1" => "open",
                _ => "half-open",
            }
            .to_owned()
        });
        let now = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
        let commits = gauge(&text, "db_event_writer_last_commit_timestamp_seconds");
        let held = gauge(&text, "db_event_writer_dead_letters_held");
        let up = gauge(&text, "db_event_writer_stream_up");
        let failing: std::collections::BTreeMap<String, String> = daemon_get(config, "/readyz")
            .await
            .and_then(|body| serde_json::from_str::<serde_json::Value>(&body).ok())
            .and_then(|v| serde_json::from_value(v["failing"].clone()).ok())
            .unwrap_or_default();
        let of = |list: &[(String, f64)], name: &str| list.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
        for s in &mut streams {
            s.dead_letters_held = of(&held, &s.name).map(|n| n as u64);
            s.last_commit_age = of(&commits, &s.name).filter(|t| *t > 0.0).map(|t| (now - t).max(0.0));
            s.task = match (failing.get(&s.name), of(&up, &s.name)) {
                (Some(why), _) => Some(format!("failing: {why}")),
                (None, Some(v)) if v >= 1.0 => Some("running".to_owned()),
                (None, Some(_)) => Some("starting".to_owned()),
                (None, None) => Some("not running (not in the daemon's configuration)".to_owned()),
            };
        }
    }
    let client = match tokio::time::timeout(CHECK_TIMEOUT, jetstream::connect_once(&config.nats)).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return unreachable(format!("unreachable: {e}"), database, breaker, streams),
        Err(_) => return unreachable(format!("no answer within {CHECK_TIMEOUT:?}"), database, breaker, streams),
    };
    let js = async_nats::jetstream::new(client.clone());
    let mut dlq = js.get_stream(&config.dlq.stream).await.ok();
    let dlq_state = match &mut dlq {
        None => format!(
            "missing: stream {:?} does not exist; the daemon creates it at its next dead letter (meanwhile such \
             messages are held, not terminated)",
            config.dlq.stream
        ),
        Some(stream) => match stream.info().await {
            Ok(info) => dlq_text(info.state.messages, info.state.bytes, info.config.max_bytes, &info.config.discard),
            Err(e) => format!("unreadable: {e}"),
        },
    };
    let first = if interval.is_zero() { Vec::new() } else { samples(&js, &streams).await };
    if !interval.is_zero() {
        tokio::time::sleep(interval).await;
    }
    for (i, s) in streams.iter_mut().enumerate() {
        match consumer_info(&js, s).await {
            Ok(info) => {
                s.lag = Some(info.num_pending);
                s.awaiting_ack = Some(info.num_ack_pending);
                s.redelivered = Some(info.num_redelivered);
                s.pullers = Some(info.num_waiting);
                if let Some(Some(before)) = first.get(i) {
                    (s.delivered_per_sec, s.acked_per_sec) = rates(before, &Sample::of(&info));
                }
            }
            Err(e) => s.error = Some(e),
        }
        s.dead_letters = Some(match &dlq {
            Some(dlq) => match dlq.info_with_subjects(config.dlq.subject_for(&s.name)).await {
                Ok(subjects) => subjects.try_fold(0, |n, (_, count)| async move { Ok(n + count as u64) }).await.ok(),
                Err(_) => None,
            }
            .unwrap_or(0),
            None => 0,
        });
    }
    Status {
        nats: "ok".to_owned(),
        nats_version: Some(client.server_info().version.clone()),
        database,
        dlq: dlq_state,
        breaker,
        streams,
    }
}

/// Each stream's consumer, sampled for its rates (`None` where it cannot be read).
async fn samples(js: &async_nats::jetstream::Context, streams: &[StreamStatus]) -> Vec<Option<Sample>> {
    let mut out = Vec::with_capacity(streams.len());
    for s in streams {
        out.push(consumer_info(js, s).await.ok().map(|i| Sample::of(&i)));
    }
    out
}

/// What JetStream says of a stream's consumer, or why it cannot say.
async fn consumer_info(
    js: &async_nats::jetstream::Context,
    s: &StreamStatus,
) -> Result<async_nats::jetstream::consumer::Info, String> {
    let stream = js.get_stream(&s.jetstream).await.map_err(|e| format!("JetStream stream {:?}: {e}", s.jetstream))?;
    stream.consumer_info(&s.consumer).await.map_err(|e| format!("consumer {:?}: {e}", s.consumer))
}

impl Sample {
    fn of(info: &async_nats::jetstream::consumer::Info) -> Sample {
        Sample {
            delivered: info.delivered.consumer_sequence,
            ack_pending: info.num_ack_pending,
            at: std::time::Instant::now(),
        }
    }
}

/// Deliveries and acks per second between two samples. An ack takes a message out of awaiting-ack, so the acks
/// of the interval are its deliveries less what awaiting-ack grew by (NAKs and terminations count as acks here).
fn rates(before: &Sample, after: &Sample) -> (Option<f64>, Option<f64>) {
    let secs = after.at.duration_since(before.at).as_secs_f64();
    if secs <= 0.0 {
        return (None, None);
    }
    let delivered = after.delivered.saturating_sub(before.delivered) as f64;
    let acked = (delivered + before.ack_pending as f64 - after.ack_pending as f64).max(0.0);
    (Some(delivered / secs), Some(acked / secs))
}

fn unreachable(nats: String, database: String, breaker: Option<String>, streams: Vec<StreamStatus>) -> Status {
    Status { nats, nats_version: None, database, dlq: "unknown (NATS unreachable)".to_owned(), breaker, streams }
}

/// The DLQ stream's fill, and whether it can take more.
fn dlq_text(
    messages: u64,
    bytes: u64,
    max_bytes: i64,
    discard: &async_nats::jetstream::stream::DiscardPolicy,
) -> String {
    let of = if max_bytes > 0 { format!(" of {max_bytes}") } else { String::new() };
    let new = matches!(discard, async_nats::jetstream::stream::DiscardPolicy::New);
    if new && max_bytes > 0 && bytes as f64 >= max_bytes as f64 * 0.99 {
        format!(
            "full: {messages} letters, {bytes}{of} bytes; new dead letters are refused (their messages stay held): \
             replay or purge some, or raise [dlq] max_bytes"
        )
    } else if !new {
        format!("ok ({messages} letters, {bytes}{of} bytes; discards old letters when full until the daemon fixes it)")
    } else {
        format!("ok ({messages} letters, {bytes}{of} bytes)")
    }
}

/// The body of `GET path` on the running daemon's `[http] listen`: `None` when nothing answers.
async fn daemon_get(config: &Config, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut addr = config.http.listen?;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let fetch = async {
        let mut conn = tokio::net::TcpStream::connect(addr).await.ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        conn.write_all(request.as_bytes()).await.ok()?;
        let mut response = Vec::new();
        conn.read_to_end(&mut response).await.ok()?;
        let text = String::from_utf8_lossy(&response).into_owned();
        Some(text.split_once("\r\n\r\n").map_or(text.clone(), |(_, body)| body.to_owned()))
    };
    tokio::time::timeout(Duration::from_secs(2), fetch).await.ok()?
}

/// One gauge of a `/metrics` text, by stream.
fn gauge(text: &str, name: &str) -> Vec<(String, f64)> {
    let prefix = format!("{name}{{");
    text.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|rest| {
            let (labels, value) = rest.rsplit_once("} ")?;
            let stream = labels.split(',').find_map(|kv| kv.strip_prefix("stream=\""))?.trim_end_matches('"');
            Some((stream.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

async fn database(config: &Config) -> String {
    let pool = match crate::db::pool(&crate::config::DatabaseConfig { pool_size: 1, ..config.database.clone() }) {
        Ok(p) => p,
        Err(e) => return format!("unusable: {e}"),
    };
    let answer = crate::db::answers(&pool, CHECK_TIMEOUT).await.to_string();
    pool.close();
    answer
}

impl Status {
    /// The human report, with where it looked.
    pub fn render(&self, config: &Config) -> String {
        let mut out = String::new();
        let version = self.nats_version.as_deref().map(|v| format!(" (nats-server {v})")).unwrap_or_default();
        out.push_str(&format!("nats {}: {}{version}\n", redact_url(&config.nats.url), self.nats));
        out.push_str(&format!("database {}: {}\n", redact_url(&config.database.url), self.database));
        out.push_str(&format!("dlq {}: {}\n", config.dlq.stream, self.dlq));
        if let Some(b) = &self.breaker {
            out.push_str(&format!("breaker: {b}\n"));
        }
        for s in &self.streams {
            out.push_str(&format!("{s}\n"));
        }
        out
    }
}

impl fmt::Display for StreamStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn n<T: fmt::Display>(v: &Option<T>) -> String {
            v.as_ref().map_or_else(|| "?".to_owned(), |v| v.to_string())
        }
        write!(
            f,
            "stream {}: processor={} consumer={}/{} lag={} awaiting_ack={} redelivered={} dead_letters={} pullers={}",
            self.name,
            self.processor,
            self.jetstream,
            self.consumer,
            n(&self.lag),
            n(&self.awaiting_ack),
            n(&self.redelivered),
            n(&self.dead_letters),
            n(&self.pullers),
        )?;
        if self.pullers == Some(0) {
            write!(f, " (no instance is pulling)")?;
        }
        if let (Some(d), Some(a)) = (self.delivered_per_sec, self.acked_per_sec) {
            write!(f, " delivered/s={d:.1} acked/s={a:.1}")?;
        }
        if let Some(age) = self.last_commit_age {
            write!(f, " last_commit={}", ago(age))?;
        }
        if let Some(held) = self.dead_letters_held.filter(|n| *n > 0) {
            write!(f, " dead_letters_held={held} (not stored yet: see dlq)")?;
        }
        if let Some(task) = &self.task {
            write!(f, " task={task}")?;
        }
        if let Some(e) = &self.error {
            write!(f, " error={e}")?;
        }
        Ok(())
    }
}

/// Seconds as "0.4s ago", "3m12s ago", "2h5m ago".
fn ago(secs: f64) -> String {
    let whole = secs as u64;
    match whole {
        0..60 => format!("{secs:.1}s ago"),
        60..3600 => format!("{}m{}s ago", whole / 60, whole % 60),
        _ => format!("{}h{}m ago", whole / 3600, whole % 3600 / 60),
    }
}

/// `status --watch`: one screen, a row per stream (like `vector top`), redrawn every refresh.
pub fn render_top(report: &Status, config: &Config, every: Duration) -> String {
    fn n<T: fmt::Display>(v: &Option<T>) -> String {
        v.as_ref().map_or_else(|| "?".to_owned(), |v| v.to_string())
    }
    let rate = |v: Option<f64>| v.map_or_else(|| "?".to_owned(), |v| format!("{v:.1}"));
    let mut out = String::new();
    out.push_str(&format!(
        "db-event-writer status --watch: every {every:?}, Ctrl-C to stop    {}\n",
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    ));
    out.push_str(&format!(
        "nats {} · database {} · breaker {} · dlq {}\n\n",
        self::short(&report.nats),
        self::short(&report.database),
        report.breaker.as_deref().unwrap_or("? (no [http] listen answering)"),
        self::short(&report.dlq),
    ));
    let width = config.streams.iter().map(|s| s.name.len()).max().unwrap_or(6).max(6);
    out.push_str(&format!(
        "{:<width$}  {:>10}  {:>10}  {:>9}  {:>9}  {:>7}  {:>7}  {:>5}  {:>12}  {}\n",
        "STREAM", "IN/S", "ACKED/S", "LAG", "AWAITING", "PULLERS", "DEAD", "HELD", "LAST COMMIT", "TASK"
    ));
    for s in &report.streams {
        let task = match (&s.error, &s.task) {
            (Some(e), _) => format!("error: {e}"),
            (None, Some(t)) => t.clone(),
            (None, None) => "?".to_owned(),
        };
        out.push_str(&format!(
            "{:<width$}  {:>10}  {:>10}  {:>9}  {:>9}  {:>7}  {:>7}  {:>5}  {:>12}  {}\n",
            s.name,
            rate(s.delivered_per_sec),
            rate(s.acked_per_sec),
            n(&s.lag),
            n(&s.awaiting_ack),
            n(&s.pullers),
            n(&s.dead_letters),
            n(&s.dead_letters_held),
            s.last_commit_age.map_or_else(|| "-".to_owned(), ago),
            task,
        ));
    }
    out
}

/// The first words of a state (`ok (3 letters…)` → `ok (3 letters…`), for one line.
fn short(text: &str) -> String {
    let first: String = text.chars().take(40).collect();
    if first.len() < text.len() { format!("{first}…") } else { first }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_count_acks_as_deliveries_less_the_growth_of_awaiting_ack() {
        let t0 = std::time::Instant::now();
        let before = Sample { delivered: 100, ack_pending: 10, at: t0 };
        let after = Sample { delivered: 300, ack_pending: 50, at: t0 + Duration::from_secs(2) };
        assert_eq!(rates(&before, &after), (Some(100.0), Some(80.0)));
        let drained = Sample { delivered: 300, ack_pending: 0, at: t0 + Duration::from_secs(4) };
        assert_eq!(rates(&after, &drained), (Some(0.0), Some(25.0)));
        assert_eq!(rates(&before, &before), (None, None));
    }

    #[test]
    fn ages_read_as_people_say_them() {
        assert_eq!(ago(0.42), "0.4s ago");
        assert_eq!(ago(192.0), "3m12s ago");
        assert_eq!(ago(7500.0), "2h5m ago");
    }
}
