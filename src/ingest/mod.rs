//! The HTTP ingest front (`[ingest] listen`): clients without NATS POST events and get 202 once JetStream has
//! stored them, with a message id they can ask about later.
//!
//! - `POST /v1/events/{subject}`: one payload, as the subject's processor decodes it. Published with the
//!   `Idempotency-Key` header as `Nats-Msg-Id`, so a retry within the stream's duplicate window answers with the
//!   same sequence and `"duplicate": true`. 202 only after JetStream's publish acknowledgement.
//! - `POST /v1/events/{subject}/batch`: a JSON array or NDJSON; each item published, acknowledgements awaited
//!   together; one result per item.
//! - `GET /v1/events/{message_id}`: `accepted` (stored, not yet committed), `persisted` (table, commit time),
//!   `dead_lettered` (class, reason), or 404.
//! - `GET /v1/openapi.json`: the OpenAPI description of the above.
//!
//! Status lives in a JetStream key-value bucket: the writers put `persisted` after the commit and the dead-letter
//! path `dead_lettered`, for messages that came in here (marked with a header), so the JetStream path pays
//! nothing for it.
//!
//! Uses the config types, the processors' decoders (`validate = true`), JetStream, metrics and [`status`].

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::config::{IngestConfig, StreamConfig};
use crate::processor::ProcessorKind;

pub mod status;
pub mod tokens;

use status::{INGEST_HEADER, message_id, parse_message_id, status_key};

use tokens::{Denied, Tokens};

/// Longest accepted `Idempotency-Key`.
const MAX_KEY: usize = 200;
/// How long a request waits for JetStream's acknowledgement before answering 503.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

/// One `[[stream]]` as the front sees it.
#[derive(Debug)]
struct Route {
    jetstream: String,
    consumer: String,
    subjects: Vec<String>,
    processor: ProcessorKind,
    validate: bool,
    /// The consumer's pending count, refreshed in the background (for the lag limit).
    pending: AtomicU64,
}

/// What the handlers share.
#[derive(Clone)]
pub struct Ingest {
    inner: Arc<Inner>,
}

struct Inner {
    client: async_nats::Client,
    js: jetstream::Context,
    status: kv::Store,
    config: IngestConfig,
    routes: RwLock<Arc<Vec<Route>>>,
    /// `None`: no authentication.
    tokens: Option<Tokens>,
    metrics: Arc<crate::metrics::Metrics>,
}

/// NATS subject filter matching (`*` one token, `>` the rest).
pub fn subject_matches(filter: &str, subject: &str) -> bool {
    let mut f = filter.split('.');
    let mut s = subject.split('.');
    loop {
        match (f.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// A valid concrete subject to publish to: tokens non-empty, no wildcards or whitespace.
fn valid_subject(subject: &str) -> bool {
    !subject.is_empty()
        && subject.split('.').all(|t| !t.is_empty() && !t.contains(['*', '>']) && !t.chars().any(char::is_whitespace))
}

impl Ingest {
    /// The front for `streams`, publishing through `client`; fails when the tokens file is unusable.
    pub fn new(
        client: async_nats::Client,
        status: kv::Store,
        config: IngestConfig,
        streams: &[StreamConfig],
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Result<Self, String> {
        let tokens = config.tokens_file.as_deref().map(Tokens::from_file).transpose()?;
        let ingest = Ingest {
            inner: Arc::new(Inner {
                js: jetstream::new(client.clone()),
                client,
                status,
                config,
                routes: RwLock::new(Arc::new(Vec::new())),
                tokens,
                metrics,
            }),
        };
        ingest.set_streams(streams);
        Ok(ingest)
    }

    /// Checks the bearer token: known (401), allowed to post to `subject` (403), within its rate for `items`
    /// requests (429 with the limit); the refusal, or `None` to go on. Without a tokens file everyone may.
    fn refusal(&self, headers: &HeaderMap, subject: Option<&str>, items: usize) -> Option<Response> {
        self.authorize(headers, subject, items).err().map(|r| *r)
    }

    fn authorize(&self, headers: &HeaderMap, subject: Option<&str>, items: usize) -> Result<(), Box<Response>> {
        let Some(tokens) = &self.inner.tokens else { return Ok(()) };
        let presented = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let (all, i) = tokens.authenticate(presented).map_err(|_| {
            let mut r = error(StatusCode::UNAUTHORIZED, "a valid bearer token is required (Authorization: Bearer …)");
            r.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
            Box::new(r)
        })?;
        let token = &all[i];
        if let Some(subject) = subject
            && !token.allows(subject)
        {
            let allowed = token.subjects.as_deref().unwrap_or_default().join(", ");
            return Err(Box::new(error(
                StatusCode::FORBIDDEN,
                format!("token {:?} may not post to {subject:?}; it may post to: {allowed}", token.name),
            )));
        }
        match token.take(items) {
            Ok(()) => Ok(()),
            Err(Denied::RateLimited(rate, burst, retry)) => {
                let mut r = reply(
                    StatusCode::TOO_MANY_REQUESTS,
                    json!({
                        "error": format!("token {:?} is over its rate limit", token.name),
                        "limit": { "rate_per_second": rate, "burst": burst },
                    }),
                );
                if let Ok(v) = header::HeaderValue::from_str(&retry.to_string()) {
                    r.headers_mut().insert(header::RETRY_AFTER, v);
                }
                Err(Box::new(r))
            }
            Err(Denied::Unauthenticated) => {
                Err(Box::new(error(StatusCode::UNAUTHORIZED, "a valid bearer token is required")))
            }
        }
    }

    /// Replaces the routing table (at start and on reload).
    pub fn set_streams(&self, streams: &[StreamConfig]) {
        let routes = streams
            .iter()
            .map(|s| Route {
                jetstream: s.jetstream.clone(),
                consumer: s.consumer.clone(),
                subjects: s.subjects.clone(),
                processor: s.processor,
                validate: s.validate,
                pending: AtomicU64::new(0),
            })
            .collect();
        if let Ok(mut r) = self.inner.routes.write() {
            *r = Arc::new(routes);
        }
    }

    fn routes(&self) -> Arc<Vec<Route>> {
        self.inner.routes.read().map(|r| Arc::clone(&r)).unwrap_or_default()
    }

    /// Keeps each route's consumer lag fresh, for the `max_lag` limit.
    async fn refresh_lag(self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            for route in self.routes().iter() {
                let Ok(stream) = self.inner.js.get_stream(&route.jetstream).await else { continue };
                if let Ok(info) = stream.consumer_info(&route.consumer).await {
                    route.pending.store(info.num_pending, Ordering::Relaxed);
                }
            }
        }
    }
}

/// Binds `listen` and serves until `shutdown`.
pub async fn serve(
    listen: SocketAddr,
    ingest: Ingest,
    shutdown: CancellationToken,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(listen = %listener.local_addr()?, "HTTP ingest front listening");
    if ingest.inner.config.max_lag > 0 {
        tokio::spawn(ingest.clone().refresh_lag(shutdown.clone()));
    }
    match (&ingest.inner.tokens, &ingest.inner.config.tokens_file) {
        (Some(tokens), Some(file)) => {
            tokio::spawn(tokens.clone().watch(file.clone(), Duration::from_secs(2), shutdown.clone()));
        }
        _ => tracing::warn!("[ingest] has no tokens_file: anyone who reaches {listen} may post"),
    }
    let max_body = ingest.inner.config.max_body;
    let tls = match &ingest.inner.config.tls {
        Some(t) => Some(tokio_rustls::TlsAcceptor::from(Arc::new(
            crate::tls::server_config(&t.cert_file, &t.key_file, t.client_ca_file.as_deref(), "ingest.tls")
                .map_err(std::io::Error::other)?,
        ))),
        None => None,
    };
    let metrics = Arc::clone(&ingest.inner.metrics);
    let app = Router::new()
        .route("/v1/events/{id}", post(publish_one).get(status))
        .route("/v1/events/{subject}/batch", post(publish_batch))
        .route("/v1/openapi.json", get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }))
        .layer(DefaultBodyLimit::max(max_body))
        // Counted here, after the body limit, so 413s are counted too.
        .layer(axum::middleware::from_fn(move |request: axum::extract::Request, next: axum::middleware::Next| {
            let metrics = Arc::clone(&metrics);
            async move {
                let path = request.uri().path();
                let route = match (request.method() == axum::http::Method::GET, path.ends_with("/batch")) {
                    _ if path == "/v1/openapi.json" => "openapi",
                    (true, _) => "status",
                    (false, true) => "batch",
                    (false, false) => "event",
                };
                let response = next.run(request).await;
                metrics.ingest_request(route, response.status().as_u16());
                response
            }
        }))
        .with_state(ingest);
    Ok(match tls {
        None => tokio::spawn(async move {
            let served =
                axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.cancelled().await }).await;
            if let Err(e) = served {
                tracing::error!(error = %e, "HTTP ingest listener failed");
            }
        }),
        Some(acceptor) => tokio::spawn(serve_tls(listener, acceptor, app, shutdown)),
    })
}

/// HTTPS: each connection's TLS handshake, then HTTP/1.1 on it; at shutdown, stop accepting and let each
/// connection finish the request in progress.
async fn serve_tls(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    app: Router,
    shutdown: CancellationToken,
) {
    let connections = tokio_util::task::TaskTracker::new();
    loop {
        let (tcp, peer) = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, typically: pause rather than spin on it.
                    tracing::warn!(error = %e, "ingest accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (acceptor, app, shutdown) = (acceptor.clone(), app.clone(), shutdown.clone());
        connections.spawn(async move {
            // A client that never finishes its handshake must not hold a task for ever.
            let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "ingest TLS handshake refused");
                    return;
                }
                Err(_) => return,
            };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    connections.close();
    connections.wait().await;
}

fn reply(status: StatusCode, body: Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    reply(status, json!({ "error": message.into() }))
}

/// Why a publish was refused, as the HTTP status it maps to.
struct Refusal(StatusCode, String, Option<u64>);

impl Refusal {
    fn into_response(self) -> Response {
        let mut response = error(self.0, self.1);
        if let Some(secs) = self.2
            && let Ok(v) = header::HeaderValue::from_str(&secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        response
    }
}

impl Ingest {
    /// The route for `subject`, or the 400 naming what may be posted to.
    fn route_for(&self, subject: &str) -> Result<(Arc<Vec<Route>>, usize), Refusal> {
        let routes = self.routes();
        if !valid_subject(subject) {
            return Err(Refusal(
                StatusCode::BAD_REQUEST,
                format!("{subject:?} is not a NATS subject to publish to"),
                None,
            ));
        }
        match routes.iter().position(|r| r.subjects.iter().any(|f| subject_matches(f, subject))) {
            Some(i) => Ok((routes, i)),
            None => {
                let allowed: Vec<&str> = routes.iter().flat_map(|r| r.subjects.iter().map(String::as_str)).collect();
                Err(Refusal(
                    StatusCode::BAD_REQUEST,
                    format!("no [[stream]] consumes {subject:?}; allowed subjects: {}", allowed.join(", ")),
                    None,
                ))
            }
        }
    }

    /// Checks the limits and the payload; then publishes and waits for JetStream's acknowledgement.
    async fn publish(
        &self,
        subject: &str,
        route: &Route,
        key: Option<String>,
        payload: Bytes,
    ) -> Result<Value, Refusal> {
        if route.validate {
            crate::processor::validate(route.processor, subject, &payload, &route.jetstream).map_err(|e| {
                Refusal(
                    StatusCode::BAD_REQUEST,
                    format!("the {} processor refuses it: {e}", route.processor.name()),
                    None,
                )
            })?;
        }
        let max_lag = self.inner.config.max_lag;
        let pending = route.pending.load(Ordering::Relaxed);
        if max_lag > 0 && pending > max_lag {
            return Err(Refusal(
                StatusCode::TOO_MANY_REQUESTS,
                format!("the stream's consumer is {pending} messages behind (limit {max_lag}); retry later"),
                Some(1),
            ));
        }
        if payload.len() as u64 > self.inner.client.server_info().max_payload as u64 {
            return Err(Refusal(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("{} bytes is over the NATS server's max_payload", payload.len()),
                None,
            ));
        }
        if !matches!(self.inner.client.connection_state(), async_nats::connection::State::Connected) {
            return Err(Refusal(StatusCode::SERVICE_UNAVAILABLE, "NATS is not reachable".into(), Some(1)));
        }
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(INGEST_HEADER, "1");
        if let Some(key) = &key {
            headers.insert("Nats-Msg-Id", key.as_str());
        }
        let sent = self.inner.js.publish_with_headers(subject.to_owned(), headers, payload).await;
        let ack = match sent {
            Ok(future) => tokio::time::timeout(PUBLISH_TIMEOUT, future.into_future()).await,
            Err(e) => Ok(Err(e)),
        };
        match ack {
            Ok(Ok(ack)) => Ok(json!({
                "message_id": message_id(&ack.stream, ack.sequence),
                "stream": ack.stream,
                "sequence": ack.sequence,
                "duplicate": ack.duplicate,
            })),
            Ok(Err(e)) => Err(publish_refusal(&e)),
            Err(_) => Err(Refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("JetStream did not acknowledge within {PUBLISH_TIMEOUT:?}"),
                Some(1),
            )),
        }
    }
}

fn publish_refusal(e: &async_nats::jetstream::context::PublishError) -> Refusal {
    use async_nats::jetstream::context::PublishErrorKind as K;
    let text = crate::db::explain(e);
    match e.kind() {
        K::MaxAckPending => Refusal(StatusCode::TOO_MANY_REQUESTS, text, Some(1)),
        // A stream at its limits with discard=new refuses new messages.
        _ if text.contains("maximum") => Refusal(StatusCode::TOO_MANY_REQUESTS, text, Some(5)),
        _ => Refusal(StatusCode::SERVICE_UNAVAILABLE, text, Some(1)),
    }
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Refusal> {
    let Some(v) = headers.get("idempotency-key") else { return Ok(None) };
    match v.to_str() {
        Ok(k) if !k.trim().is_empty() && k.len() <= MAX_KEY && !k.chars().any(char::is_control) => {
            Ok(Some(k.trim().to_owned()))
        }
        _ => Err(Refusal(
            StatusCode::BAD_REQUEST,
            format!("Idempotency-Key must be 1 to {MAX_KEY} printable ASCII characters"),
            None,
        )),
    }
}

/// What a POST may go on with: its Idempotency-Key and its route.
type Admitted = (Option<String>, Arc<Vec<Route>>, usize);

impl Ingest {
    /// The checks every POST passes first, in order: the token (charged `items`), the key, the route.
    fn admit(&self, headers: &HeaderMap, subject: &str, items: usize) -> Result<Admitted, Box<Response>> {
        if let Some(r) = self.refusal(headers, Some(subject), items) {
            return Err(Box::new(r));
        }
        let key = idempotency_key(headers).map_err(|r| Box::new(r.into_response()))?;
        let (routes, i) = self.route_for(subject).map_err(|r| Box::new(r.into_response()))?;
        Ok((key, routes, i))
    }
}

async fn publish_one(
    State(ingest): State<Ingest>,
    Path(subject): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (key, routes, i) = match ingest.admit(&headers, &subject, 1) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    match ingest.publish(&subject, &routes[i], key, body).await {
        Ok(v) => reply(StatusCode::ACCEPTED, v),
        Err(r) => r.into_response(),
    }
}

/// The items of a batch body: a JSON array's elements, or NDJSON lines.
fn batch_items(body: &[u8]) -> Result<Vec<Bytes>, String> {
    let text = std::str::from_utf8(body).map_err(|_| "the body is not UTF-8".to_owned())?;
    if text.trim_start().starts_with('[') {
        let items: Vec<&serde_json::value::RawValue> =
            serde_json::from_str(text).map_err(|e| format!("not a JSON array: {e}"))?;
        return Ok(items.into_iter().map(|v| Bytes::copy_from_slice(v.get().as_bytes())).collect());
    }
    Ok(text.lines().filter(|l| !l.trim().is_empty()).map(|l| Bytes::copy_from_slice(l.as_bytes())).collect())
}

async fn publish_batch(
    State(ingest): State<Ingest>,
    Path(subject): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Who it is and where it may post first; the rate is charged per item below.
    let (key, routes, i) = match ingest.admit(&headers, &subject, 0) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    let items = match batch_items(&body) {
        Ok(items) if !items.is_empty() => items,
        Ok(_) => return error(StatusCode::BAD_REQUEST, "the batch is empty"),
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    // Each item counts against the token's rate.
    if let Some(r) = ingest.refusal(&headers, Some(&subject), items.len()) {
        return r;
    }
    // Published concurrently, so the acknowledgements overlap instead of costing a round trip each.
    let results = futures::future::join_all(items.into_iter().enumerate().map(|(n, item)| {
        let (ingest, routes, subject) = (ingest.clone(), Arc::clone(&routes), subject.clone());
        let key = key.as_ref().map(|k| format!("{k}-{n}"));
        async move { ingest.publish(&subject, &routes[i], key, item).await }
    }))
    .await;
    let accepted = results.iter().filter(|r| r.is_ok()).count();
    let items: Vec<Value> = results
        .into_iter()
        .map(|r| match r {
            Ok(v) => v,
            Err(Refusal(status, message, _)) => json!({ "status": status.as_u16(), "error": message }),
        })
        .collect();
    reply(StatusCode::ACCEPTED, json!({ "accepted": accepted, "rejected": items.len() - accepted, "items": items }))
}

async fn status(State(ingest): State<Ingest>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if let Some(r) = ingest.refusal(&headers, None, 0) {
        return r;
    }
    let Some((stream, sequence)) = parse_message_id(&id) else {
        return error(StatusCode::NOT_FOUND, format!("{id:?} is not a message id (<stream>.<sequence>)"));
    };
    let unknown = || error(StatusCode::NOT_FOUND, format!("no message {id} came in through this front"));
    match ingest.inner.status.get(status_key(&id)).await {
        Ok(Some(value)) => {
            let mut v: Value = serde_json::from_slice(&value).unwrap_or_else(|_| json!({}));
            v["message_id"] = json!(id);
            reply(StatusCode::OK, v)
        }
        Ok(None) => {
            // Not committed yet, or never ingested here: the stream tells which.
            let Ok(js_stream) = ingest.inner.js.get_stream(stream).await else { return unknown() };
            match js_stream.get_raw_message(sequence).await {
                Ok(m) if m.headers.get(INGEST_HEADER).is_some() => {
                    reply(StatusCode::OK, json!({ "message_id": id, "status": "accepted" }))
                }
                _ => unknown(),
            }
        }
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, format!("cannot read the status bucket: {e}")),
    }
}

/// The OpenAPI 3 description of the front (kept true by a test that walks it against the router).
pub const OPENAPI: &str = include_str!("openapi.json");

#[cfg(test)]
mod tests {
    use super::status::Fate;
    use super::*;

    #[test]
    fn subjects_match_filters_as_nats_does() {
        for (filter, subject, matches) in [
            ("telemetry.>", "telemetry.host1", true),
            ("telemetry.>", "telemetry.a.b", true),
            ("telemetry.>", "telemetry", false),
            ("logs.*.processed", "logs.syslog.processed", true),
            ("logs.*.processed", "logs.syslog.raw", false),
            ("logs.*.processed", "logs.a.b.processed", false),
            ("events.ocsf.processed", "events.ocsf.processed", true),
            ("events.ocsf.processed", "events.ocsf", false),
        ] {
            assert_eq!(subject_matches(filter, subject), matches, "{filter} ~ {subject}");
        }
        assert!(!valid_subject("a.*"));
        assert!(!valid_subject("a..b"));
        assert!(!valid_subject("a b"));
        assert!(valid_subject("telemetry.host-1"));
    }

    #[test]
    fn message_ids_round_trip_and_nonsense_is_refused() {
        let id = message_id("events", 42);
        assert_eq!(parse_message_id(&id), Some(("events", 42)));
        assert_eq!(parse_message_id("events"), None);
        assert_eq!(parse_message_id("events.0"), None);
        assert_eq!(parse_message_id(".5"), None);
        assert_eq!(parse_message_id("events.x"), None);
        assert_eq!(status_key("ev ents:1.5"), "ev_ents_1.5");
    }

    #[test]
    fn batch_bodies_are_json_arrays_or_ndjson() {
        let items = batch_items(br#"[{"a":1}, {"b":[2,3]}]"#).unwrap();
        assert_eq!(items, vec![Bytes::from(r#"{"a":1}"#), Bytes::from(r#"{"b":[2,3]}"#)]);
        let items = batch_items(b"{\"a\":1}\n\n{\"b\":2}\n").unwrap();
        assert_eq!(items.len(), 2);
        assert!(batch_items(b"[1,").unwrap_err().contains("not a JSON array"));
        assert!(batch_items(&[0xff]).unwrap_err().contains("UTF-8"));
    }

    #[test]
    fn the_fate_is_stored_as_tagged_json() {
        let fate = Fate::DeadLettered { class: "decode".into(), reason: "bad".into() };
        let text = serde_json::to_string(&fate).unwrap();
        assert_eq!(text, r#"{"status":"dead_lettered","class":"decode","reason":"bad"}"#);
        assert_eq!(serde_json::from_str::<Fate>(&text).unwrap(), fate);
    }

    #[test]
    fn the_openapi_description_is_json_and_names_every_route() {
        let doc: Value = serde_json::from_str(OPENAPI).unwrap();
        assert_eq!(doc["openapi"].as_str().map(|v| v.starts_with("3.")), Some(true));
        for path in ["/v1/events/{id}", "/v1/events/{subject}/batch", "/v1/openapi.json"] {
            assert!(doc["paths"].get(path).is_some(), "{path} is not described");
        }
    }
}
