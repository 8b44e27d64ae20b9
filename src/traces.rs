//! Our own OpenTelemetry traces: one span per batch written (stream, processor, table, rows, outcome), linked to
//! the W3C `traceparent` of the messages in it, exported with OTLP over HTTP (protobuf) or gRPC. Off unless
//! `[otel] endpoint` is set.
//!
//! Spans are queued without waiting; a full queue drops them (counted), so a slow or absent collector never slows
//! the pipeline. An exporter task sends what is queued every `export_interval` (or sooner when 512 are waiting),
//! over one kept-alive connection, and the rest once more at shutdown.
//!
//! Uses the `[otel]` settings, the OTLP prost messages, [`crate::tls`], [`crate::hex`] and metrics (its counters).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderValue, Request, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{OtelConfig, OtelProtocol};
use crate::processor::proto::common::{AnyValue, InstrumentationScope, KeyValue, Resource, any_value::Value};
use crate::processor::proto::trace::{ExportTraceServiceRequest, ResourceSpans, ScopeSpans, Span, Status, span};

/// Spans waiting for the exporter; beyond this they are dropped.
const QUEUE: usize = 4096;
/// Spans per export request.
const MAX_EXPORT: usize = 512;
/// Links per span (the OpenTelemetry SDKs' default limit).
pub const MAX_LINKS: usize = 128;
/// `SPAN_KIND_CONSUMER`.
const KIND_CONSUMER: i32 = 5;
/// `STATUS_CODE_ERROR`.
const STATUS_ERROR: i32 = 2;

/// Where spans are recorded: a cheap clone for every stream task; does nothing when tracing is off.
#[derive(Debug, Clone, Default)]
pub struct Tracer {
    queue: Option<mpsc::Sender<Span>>,
    counters: Counters,
}

/// Spans exported, failed to export, and dropped (queue full), as [`crate::metrics::Metrics`] registers them.
pub use crate::metrics::SpanCounters as Counters;

/// What a batch span says.
#[derive(Debug)]
pub struct BatchSpan<'a> {
    /// `[[stream]]` name.
    pub stream: &'a str,
    /// Processor kind.
    pub processor: &'a str,
    /// JetStream stream and durable consumer.
    pub jetstream: &'a str,
    /// Durable consumer name.
    pub consumer: &'a str,
    /// Tables written.
    pub table: &'a str,
    /// Messages in the batch.
    pub messages: usize,
    /// Rows in the batch.
    pub rows: usize,
    /// Rows actually inserted (the rest were already there: redeliveries).
    pub inserted: u64,
    /// committed | partial | rejected | retry.
    pub outcome: &'a str,
    /// The last error, when something failed.
    pub error: Option<&'a str>,
    /// When the write began and ended.
    pub start: SystemTime,
    /// When it ended.
    pub end: SystemTime,
}

impl Tracer {
    /// A tracer that records nothing.
    pub fn off() -> Tracer {
        Tracer::default()
    }

    /// True when spans are exported (so callers can skip building them otherwise).
    pub fn is_on(&self) -> bool {
        self.queue.is_some()
    }

    /// Queues the span of one batch, linked to the trace contexts its messages carried.
    pub fn record<'l>(&self, batch: &BatchSpan<'_>, links: impl Iterator<Item = &'l Link>) {
        let Some(queue) = &self.queue else { return };
        let span = batch_span(batch, links);
        if queue.try_send(span).is_err() {
            self.counters.dropped.inc();
        }
    }
}

/// A message's W3C trace context (`traceparent`, `tracestate`): what its batch's span links to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The publisher's trace id.
    pub trace_id: [u8; 16],
    /// The publisher's span id.
    pub span_id: [u8; 8],
    /// `tracestate`, as sent.
    pub state: String,
}

/// The trace context in a message's headers, if it carries a valid one.
pub fn link_of(headers: Option<&async_nats::HeaderMap>) -> Option<Box<Link>> {
    let h = headers?;
    let (trace_id, span_id) = parse_traceparent(h.get("traceparent")?.as_str())?;
    let state = h.get("tracestate").map(|v| v.as_str().to_owned()).unwrap_or_default();
    Some(Box::new(Link { trace_id, span_id, state }))
}

fn string(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue { key: key.to_owned(), value: Some(AnyValue { value: Some(Value::StringValue(value.into())) }) }
}

fn int(key: &str, value: i64) -> KeyValue {
    KeyValue { key: key.to_owned(), value: Some(AnyValue { value: Some(Value::IntValue(value)) }) }
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn random_id<const N: usize>() -> Vec<u8> {
    use ring::rand::SecureRandom;
    let mut id = [0u8; N];
    // The system RNG failing is not something a span id can fix: fall back to the clock, never all zeros.
    if ring::rand::SystemRandom::new().fill(&mut id).is_err() || id.iter().all(|b| *b == 0) {
        let t = nanos(SystemTime::now()).to_le_bytes();
        for (i, b) in id.iter_mut().enumerate() {
            *b = t[i % 8] ^ (i as u8).wrapping_add(1);
        }
    }
    id.to_vec()
}

fn batch_span<'l>(b: &BatchSpan<'_>, sources: impl Iterator<Item = &'l Link>) -> Span {
    let mut links = Vec::new();
    let mut unlinked = 0i64;
    for l in sources {
        if links.len() == MAX_LINKS {
            unlinked += 1;
            continue;
        }
        links.push(span::Link {
            trace_id: l.trace_id.to_vec(),
            span_id: l.span_id.to_vec(),
            trace_state: l.state.clone(),
            attributes: vec![],
        });
    }
    let mut attributes = vec![
        string("messaging.system", "nats"),
        string("messaging.operation.type", "process"),
        string("messaging.destination.name", b.jetstream),
        string("messaging.consumer.group.name", b.consumer),
        int("messaging.batch.message_count", b.messages as i64),
        string("db.system.name", "postgresql"),
        string("db.collection.name", b.table),
        string("db_event_writer.stream", b.stream),
        string("db_event_writer.processor", b.processor),
        int("db_event_writer.rows", b.rows as i64),
        int("db_event_writer.rows_inserted", b.inserted as i64),
        string("db_event_writer.outcome", b.outcome),
    ];
    if unlinked > 0 {
        attributes.push(int("db_event_writer.links_dropped", unlinked));
    }
    Span {
        trace_id: random_id::<16>(),
        span_id: random_id::<8>(),
        name: format!("process {}", b.stream),
        kind: KIND_CONSUMER,
        start_time_unix_nano: nanos(b.start),
        end_time_unix_nano: nanos(b.end),
        attributes,
        links,
        status: b.error.map(|e| Status { message: e.to_owned(), code: STATUS_ERROR }),
        ..Span::default()
    }
}

/// A W3C `traceparent` (`00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`): the trace and span ids, or `None`
/// when it is malformed or an id is all zeros. Later versions are read by the same prefix, as the spec asks.
pub fn parse_traceparent(text: &str) -> Option<([u8; 16], [u8; 8])> {
    let text = text.trim();
    let mut parts = text.splitn(5, '-');
    let (version, trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let rest = parts.next();
    if version.len() != 2 || version.eq_ignore_ascii_case("ff") || flags.len() != 2 || hex::<1>(version).is_none() {
        return None;
    }
    if version == "00" && rest.is_some() {
        return None;
    }
    hex::<1>(flags)?;
    let (trace, span) = (hex::<16>(trace)?, hex::<8>(span)?);
    if trace.iter().all(|b| *b == 0) || span.iter().all(|b| *b == 0) {
        return None;
    }
    Some((trace, span))
}

/// Lower-case hex only, as W3C trace context requires.
fn hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.bytes().any(|c| c.is_ascii_uppercase()) { None } else { crate::hex::decode(text) }
}

/// Starts the exporter when `[otel]` is set: the tracer for the streams, and the task (it exports what is left
/// and ends once `done` is cancelled; cancel it after the streams have drained).
pub fn start(
    config: Option<&OtelConfig>,
    counters: Counters,
    done: CancellationToken,
) -> Result<(Tracer, Option<tokio::task::JoinHandle<()>>), String> {
    let Some(config) = config else { return Ok((Tracer::off(), None)) };
    let exporter = Exporter::new(config.clone())?;
    let (tx, rx) = mpsc::channel(QUEUE);
    let task = tokio::spawn(export_loop(exporter, rx, counters.clone(), done));
    tracing::info!(endpoint = %config.endpoint, protocol = ?config.protocol, "exporting batch spans");
    Ok((Tracer { queue: Some(tx), counters }, Some(task)))
}

async fn export_loop(mut exporter: Exporter, mut rx: mpsc::Receiver<Span>, c: Counters, done: CancellationToken) {
    let mut queued: Vec<Span> = Vec::with_capacity(MAX_EXPORT);
    let mut tick = tokio::time::interval(exporter.config.export_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        let last = tokio::select! {
            // Why biased: at shutdown, what is queued goes out once more and the task ends.
            biased;
            _ = done.cancelled() => {
                while let Ok(span) = rx.try_recv() {
                    queued.push(span);
                }
                true
            }
            Some(span) = rx.recv() => {
                queued.push(span);
                if queued.len() < MAX_EXPORT {
                    continue;
                }
                false
            }
            _ = tick.tick() => false,
        };
        while !queued.is_empty() {
            let spans: Vec<Span> = queued.drain(..queued.len().min(MAX_EXPORT)).collect();
            let n = spans.len() as u64;
            match exporter.export(spans).await {
                Ok(()) => {
                    c.exported.inc_by(n);
                    if failing {
                        tracing::info!(endpoint = %exporter.config.endpoint, "span export works again");
                        failing = false;
                    }
                }
                Err(e) => {
                    c.failed.inc_by(n);
                    // Why only on the change: a collector that is down must not fill the log at every interval.
                    if !failing {
                        tracing::warn!(endpoint = %exporter.config.endpoint, error = %e, "span export failed; spans are dropped until it works");
                        failing = true;
                    }
                }
            }
            if !last {
                break;
            }
        }
        if last {
            return;
        }
    }
}

type Body = Full<Bytes>;

enum Connection {
    Http1(hyper::client::conn::http1::SendRequest<Body>),
    Http2(hyper::client::conn::http2::SendRequest<Body>),
}

trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// One kept-alive connection to the collector, made again when it breaks.
struct Exporter {
    config: OtelConfig,
    resource: Resource,
    tls: Option<tokio_rustls::TlsConnector>,
    connection: Option<Connection>,
}

impl Exporter {
    fn new(config: OtelConfig) -> Result<Exporter, String> {
        let tls = if config.endpoint.scheme_str() == Some("https") {
            let mut tls = crate::tls::client_config(&config.tls, crate::tls::Verify::Full, "otel.tls")?;
            tls.alpn_protocols = match config.protocol {
                OtelProtocol::Grpc => vec![b"h2".to_vec()],
                OtelProtocol::HttpProtobuf => vec![b"http/1.1".to_vec()],
            };
            Some(tokio_rustls::TlsConnector::from(Arc::new(tls)))
        } else {
            None
        };
        let resource = Resource {
            attributes: vec![
                string("service.name", config.service_name.clone()),
                string("service.version", env!("CARGO_PKG_VERSION")),
                string("telemetry.sdk.name", "db-event-writer"),
                string("telemetry.sdk.language", "rust"),
            ],
        };
        Ok(Exporter { config, resource, tls, connection: None })
    }

    async fn export(&mut self, spans: Vec<Span>) -> Result<(), String> {
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(self.resource.clone()),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "db-event-writer".to_owned(),
                        version: env!("CARGO_PKG_VERSION").to_owned(),
                        attributes: vec![],
                    }),
                    spans,
                }],
            }],
        };
        let body = Bytes::from(match self.config.protocol {
            OtelProtocol::HttpProtobuf => request.encode_to_vec(),
            OtelProtocol::Grpc => {
                // gRPC framing: uncompressed flag, big-endian length, the message.
                let message = request.encode_to_vec();
                let mut framed = Vec::with_capacity(message.len() + 5);
                framed.push(0);
                framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
                framed.extend_from_slice(&message);
                framed
            }
        });
        let limit = self.config.timeout;
        match tokio::time::timeout(limit, self.send(body)).await {
            Ok(result) => result,
            Err(_) => {
                self.connection = None;
                Err(format!("no answer within {limit:?}"))
            }
        }
    }

    /// Sends once; when the kept-alive connection turns out closed, once more on a new one.
    async fn send(&mut self, body: Bytes) -> Result<(), String> {
        for attempt in 0..2 {
            if self.connection.is_none() {
                self.connection = Some(self.connect().await?);
            }
            let request = self.request(body.clone())?;
            let sent = match self.connection.as_mut() {
                Some(Connection::Http1(c)) => match c.ready().await {
                    Ok(()) => c.send_request(request).await,
                    Err(e) => Err(e),
                },
                Some(Connection::Http2(c)) => match c.ready().await {
                    Ok(()) => c.send_request(request).await,
                    Err(e) => Err(e),
                },
                None => continue,
            };
            match sent {
                Ok(response) => return self.check(response).await,
                Err(e) => {
                    self.connection = None;
                    if attempt == 1 || !(e.is_closed() || e.is_canceled() || e.is_incomplete_message()) {
                        return Err(crate::db::explain(&e));
                    }
                }
            }
        }
        Err("the collector closed the connection".to_owned())
    }

    fn request(&self, body: Bytes) -> Result<Request<Body>, String> {
        let uri = &self.config.endpoint;
        let mut builder = Request::post(uri.clone());
        let headers = builder.headers_mut().ok_or("bad request")?;
        match self.config.protocol {
            OtelProtocol::HttpProtobuf => {
                if let Some(authority) = uri.authority() {
                    headers.insert(header::HOST, HeaderValue::from_str(authority.as_str()).map_err(|e| e.to_string())?);
                }
                headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-protobuf"));
            }
            OtelProtocol::Grpc => {
                headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
                headers.insert(header::TE, HeaderValue::from_static("trailers"));
            }
        }
        for (name, value) in &self.config.headers {
            headers.insert(name.clone(), value.clone());
        }
        builder.body(Full::new(body)).map_err(|e| e.to_string())
    }

    async fn check(&mut self, response: http::Response<hyper::body::Incoming>) -> Result<(), String> {
        let status = response.status();
        let grpc_in_headers = grpc_status(response.headers());
        let collected = response.into_body().collect().await.map_err(|e| crate::db::explain(&e))?;
        let trailers = collected.trailers().and_then(grpc_status);
        let body = collected.to_bytes();
        match self.config.protocol {
            OtelProtocol::HttpProtobuf if status.is_success() => Ok(()),
            OtelProtocol::HttpProtobuf => {
                let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
                Err(format!("HTTP {status}: {text}"))
            }
            OtelProtocol::Grpc => match trailers.or(grpc_in_headers) {
                Some((0, _)) if status.is_success() => Ok(()),
                Some((code, message)) => Err(format!("gRPC status {code}: {message}")),
                None => Err(format!("HTTP {status} without a gRPC status")),
            },
        }
    }

    async fn connect(&self) -> Result<Connection, String> {
        let uri = &self.config.endpoint;
        let host = uri.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_owned();
        let port = uri.port_u16().unwrap_or(80);
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| format!("cannot connect to {host}:{port}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn Io> = match &self.tls {
            None => Box::new(tcp),
            Some(tls) => {
                let name = rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| e.to_string())?;
                Box::new(tls.connect(name, tcp).await.map_err(|e| format!("TLS with {host}:{port}: {e}"))?)
            }
        };
        let io = TokioIo::new(io);
        let handshake_failed =
            |e: hyper::Error| format!("HTTP handshake with {host}:{port}: {}", crate::db::explain(&e));
        Ok(match self.config.protocol {
            OtelProtocol::HttpProtobuf => {
                let (send, conn) = hyper::client::conn::http1::handshake(io).await.map_err(handshake_failed)?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Connection::Http1(send)
            }
            OtelProtocol::Grpc => {
                let (send, conn) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await.map_err(handshake_failed)?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Connection::Http2(send)
            }
        })
    }
}

fn grpc_status(headers: &http::HeaderMap) -> Option<(i32, String)> {
    let code = headers.get("grpc-status")?.to_str().ok()?.trim().parse().ok()?;
    let message = headers.get("grpc-message").and_then(|m| m.to_str().ok()).unwrap_or_default().to_owned();
    Some((code, message))
}

/// How long the exporter gets at shutdown to send what is left.
pub const SHUTDOWN_FLUSH: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_is_read_as_the_w3c_spec_says() {
        let (trace, span) = parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(trace[0], 0x4b);
        assert_eq!(span, [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]);
        // A later version may append fields; version 00 may not; ff is invalid; ids must not be all zeros.
        assert!(parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra").is_some());
        for bad in [
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            "",
            "garbage",
            "00-é€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€€-00f067aa0ba902b7-01",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn a_batch_span_links_every_traced_message_up_to_the_limit() {
        let mut traced = async_nats::HeaderMap::new();
        traced.insert("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        traced.insert("tracestate", "vendor=1");
        let mut bad = async_nats::HeaderMap::new();
        bad.insert("traceparent", "nonsense");
        let headers: Vec<Option<&async_nats::HeaderMap>> =
            (0..MAX_LINKS + 3).map(|_| Some(&traced)).chain([Some(&bad), None]).collect();
        let links: Vec<Box<Link>> = headers.iter().filter_map(|h| link_of(*h)).collect();
        assert_eq!(links.len(), MAX_LINKS + 3, "malformed and missing trace contexts make no link");
        let now = SystemTime::now();
        let b = BatchSpan {
            stream: "telemetry",
            processor: "telemetry",
            jetstream: "events",
            consumer: "c",
            table: "timeseries_metrics",
            messages: headers.len(),
            rows: 7,
            inserted: 5,
            outcome: "committed",
            error: None,
            start: now,
            end: now + Duration::from_millis(3),
        };
        let span = batch_span(&b, links.iter().map(|l| &**l));
        assert_eq!(span.links.len(), MAX_LINKS);
        assert_eq!(span.links[0].trace_state, "vendor=1");
        assert_eq!(span.links[0].span_id, vec![0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]);
        let attr = |k: &str| span.attributes.iter().find(|a| a.key == k).and_then(|a| a.value.clone()?.value);
        assert_eq!(attr("db_event_writer.links_dropped"), Some(Value::IntValue(3)));
        assert_eq!(attr("db_event_writer.rows"), Some(Value::IntValue(7)));
        assert_eq!(span.end_time_unix_nano - span.start_time_unix_nano, 3_000_000);
        assert_eq!((span.trace_id.len(), span.span_id.len(), span.status), (16, 8, None));
        assert_ne!(span.trace_id, batch_span(&b, std::iter::empty()).trace_id, "ids are random");
    }
}
