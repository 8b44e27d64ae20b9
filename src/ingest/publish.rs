//! The ingest front's handlers: `POST /v1/events/{subject}` (one event), `POST /v1/events/{subject}/batch` (at
//! most `max_batch_items`, published [`PUBLISH_CONCURRENCY`] at a time, one result per item) and
//! `GET /v1/events/{message_id}` (its fate). Every client-controlled size is checked ([`super::limits`]) before
//! anything reaches NATS; a message JetStream would refuse for its size is 413 (no `Retry-After`: retrying cannot
//! help); 503 only when NATS is really unavailable.
//!
//! Uses the processors' decoders (`validate = true`), JetStream, [`super::limits`] and [`super::status`].

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt as _;
use serde_json::{Value, json};

use super::front::{Ingest, Route, error, reply};
use super::limits::{self, BatchError, MAX_MESSAGE_ID, PUBLISH_CONCURRENCY};
use super::status::{INGEST_HEADER, message_id, parse_message_id, status_key};

/// How long a request waits for JetStream's acknowledgement before answering 503.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a publish was refused, as the HTTP status it maps to (and the `Retry-After` seconds, when retrying helps).
pub(super) struct Refusal(pub(super) StatusCode, pub(super) String, pub(super) Option<u64>);

impl Refusal {
    fn bad(message: impl Into<String>) -> Refusal {
        Refusal(StatusCode::BAD_REQUEST, message.into(), None)
    }

    pub(super) fn into_response(self) -> Response {
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
        limits::check_subject(subject).map_err(Refusal::bad)?;
        let routes = self.routes();
        match routes.iter().position(|r| r.subjects.iter().any(|f| limits::subject_matches(f, subject))) {
            Some(i) => Ok((routes, i)),
            None => {
                let allowed: Vec<&str> = routes.iter().flat_map(|r| r.subjects.iter().map(String::as_str)).collect();
                Err(Refusal::bad(format!(
                    "no [[stream]] consumes {subject:?}; allowed subjects: {}",
                    allowed.join(", ")
                )))
            }
        }
    }

    /// Checks the limits and the payload; then publishes (with `msg_id` as `Nats-Msg-Id`) and waits for
    /// JetStream's acknowledgement.
    async fn publish(
        &self,
        subject: &str,
        route: &Route,
        msg_id: Option<String>,
        payload: Bytes,
    ) -> Result<Value, Refusal> {
        if route.validate {
            crate::processor::validate(route.processor, subject, &payload, &route.jetstream)
                .map_err(|e| Refusal::bad(format!("the {} processor refuses it: {e}", route.processor.name())))?;
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
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(INGEST_HEADER, "1");
        if let Some(id) = &msg_id {
            headers.insert("Nats-Msg-Id", id.as_str());
        }
        // What the server counts against max_payload: the payload and the headers the daemon adds.
        let header_bytes = limits::headers_len(
            [(INGEST_HEADER, "1")].into_iter().chain(msg_id.as_deref().map(|id| ("Nats-Msg-Id", id))),
        );
        let max_payload = self.inner.client.server_info().max_payload;
        if payload.len() + header_bytes > max_payload {
            return Err(Refusal(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "{} bytes (and {header_bytes} of headers) is over what the NATS server stores in one message \
                     (max_payload {max_payload})",
                    payload.len()
                ),
                None,
            ));
        }
        if !matches!(self.inner.client.connection_state(), async_nats::connection::State::Connected) {
            return Err(Refusal(StatusCode::SERVICE_UNAVAILABLE, "NATS is not reachable".into(), Some(1)));
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

    /// The checks every POST passes first, in order: the token (charged `items`), the key, the route.
    fn admit(&self, headers: &HeaderMap, subject: &str, items: usize) -> Result<Admitted, Box<Response>> {
        if let Some(r) = self.refusal(headers, Some(subject), items) {
            return Err(Box::new(r));
        }
        let key = limits::idempotency_key(headers.get("idempotency-key").map(|v| v.as_bytes()))
            .map_err(|e| Box::new(Refusal::bad(e).into_response()))?;
        let (routes, i) = self.route_for(subject).map_err(|r| Box::new(r.into_response()))?;
        Ok((key, routes, i))
    }
}

fn publish_refusal(e: &async_nats::jetstream::context::PublishError) -> Refusal {
    use async_nats::jetstream::context::PublishErrorKind as K;
    let text = crate::db::explain(e);
    let lower = text.to_ascii_lowercase();
    match e.kind() {
        K::MaxAckPending => Refusal(StatusCode::TOO_MANY_REQUESTS, text, Some(1)),
        // Too big for the server or the stream: no retry can succeed.
        _ if lower.contains("payload") || lower.contains("message size") => {
            Refusal(StatusCode::PAYLOAD_TOO_LARGE, text, None)
        }
        // A stream at its limits with discard=new refuses new messages.
        _ if lower.contains("maximum") => Refusal(StatusCode::TOO_MANY_REQUESTS, text, Some(5)),
        _ => Refusal(StatusCode::SERVICE_UNAVAILABLE, text, Some(1)),
    }
}

/// What a POST may go on with: its Idempotency-Key and its route.
type Admitted = (Option<String>, Arc<Vec<Route>>, usize);

pub(super) async fn publish_one(
    State(ingest): State<Ingest>,
    Path(subject): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (key, routes, i) = match ingest.admit(&headers, &subject, 1) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    let msg_id = key.as_deref().map(limits::event_id);
    match ingest.publish(&subject, &routes[i], msg_id, body).await {
        Ok(v) => reply(StatusCode::ACCEPTED, v),
        Err(r) => r.into_response(),
    }
}

pub(super) async fn publish_batch(
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
    let max = ingest.inner.config.max_batch_items;
    let items = match limits::batch_items(&body, max) {
        Ok(items) if !items.is_empty() => items,
        Ok(_) => return error(StatusCode::BAD_REQUEST, "the batch is empty"),
        Err(BatchError::TooMany(n)) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the batch has more than {max} items ({n} counted); [ingest] max_batch_items is {max}"),
            );
        }
        Err(BatchError::Bad(e)) => return error(StatusCode::BAD_REQUEST, e),
    };
    drop(body);
    // Each item counts against the token's rate.
    if let Some(r) = ingest.refusal(&headers, Some(&subject), items.len()) {
        return r;
    }
    // In order, PUBLISH_CONCURRENCY at a time: their acknowledgements overlap, the rest wait their turn.
    let results: Vec<Result<Value, Refusal>> = futures::stream::iter(items.into_iter().enumerate())
        .map(|(n, item)| {
            let (ingest, routes, subject) = (ingest.clone(), Arc::clone(&routes), subject.clone());
            let msg_id = key.as_deref().map(|k| limits::item_id(k, n));
            async move { ingest.publish(&subject, &routes[i], msg_id, item).await }
        })
        .buffered(PUBLISH_CONCURRENCY)
        .collect()
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

pub(super) async fn status(State(ingest): State<Ingest>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    if let Some(r) = ingest.refusal(&headers, None, 0) {
        return r;
    }
    let unknown = || error(StatusCode::NOT_FOUND, format!("no message {id} came in through this front"));
    if id.len() > MAX_MESSAGE_ID {
        return error(StatusCode::NOT_FOUND, format!("a message id is at most {MAX_MESSAGE_ID} bytes long"));
    }
    let Some((stream, sequence)) = parse_message_id(&id) else {
        return error(StatusCode::NOT_FOUND, format!("{id:?} is not a message id (<stream>.<sequence>)"));
    };
    // Only the streams this front publishes to are asked about: a made-up name never reaches NATS.
    if !ingest.routes().iter().any(|r| r.jetstream == stream) {
        return unknown();
    }
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
