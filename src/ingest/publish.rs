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

use tokio::time::Instant;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use futures::StreamExt as _;
use serde_json::{Value, json};

use super::front::{Ingest, Route, error, reply};
use super::limits::{self, BatchError, MAX_MESSAGE_ID, PUBLISH_CONCURRENCY};
use super::status::{Fate, INGEST_HEADER, message_id, parse_message_id, status_key};
use super::wait::{self, Slots, WAIT_HEADER};

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
        flush: Option<Duration>,
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
        let flush = flush.map(|d| d.as_millis().to_string());
        if let Some(ms) = &flush {
            headers.insert(WAIT_HEADER, ms.as_str());
        }
        // What the server counts against max_payload: the payload and the headers the daemon adds.
        let header_bytes = limits::headers_len(
            [(INGEST_HEADER, "1")]
                .into_iter()
                .chain(msg_id.as_deref().map(|id| ("Nats-Msg-Id", id)))
                .chain(flush.as_deref().map(|ms| (WAIT_HEADER, ms))),
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

    /// The wait a request asks for (`None`: answer at once), or the 400 for a `?wait=` it cannot have.
    fn wait_for(&self, query: Option<&str>, headers: &HeaderMap) -> Result<Option<Duration>, Box<Response>> {
        let prefer = headers.get("prefer").and_then(|v| v.to_str().ok());
        let config = &self.inner.config;
        wait::requested(query, prefer, config.wait_timeout, config.max_wait)
            .map_err(|e| Box::new(Refusal::bad(e).into_response()))
    }

    /// Room to wait for `n` messages: `None` when nobody asked, or when too many wait already (they get 202).
    fn wait_slots(&self, wait: Option<Duration>, n: usize) -> Option<(Slots, Instant)> {
        let deadline = Instant::now() + wait?;
        Some((self.inner.waiters.slots(n)?, deadline))
    }

    /// Waits until the fate of the message `accepted` describes is recorded, `deadline` passes or the daemon
    /// stops; its answer then (200 persisted, 422 dead-lettered, 202 accepted).
    async fn await_fate(&self, accepted: Value, deadline: Instant) -> (StatusCode, Value) {
        let key = status_key(accepted["message_id"].as_str().unwrap_or_default());
        // Registered before the read: a fate recorded after the read wakes us, one recorded before is read.
        let woken = self.inner.waiters.register(&key);
        let recorded = match self.inner.status.get(&key).await {
            Ok(Some(value)) => serde_json::from_slice::<Fate>(&value).ok(),
            _ => None,
        };
        let fate = match recorded {
            Some(fate) => Some(fate),
            None => tokio::select! {
                biased;
                _ = self.inner.shutdown.cancelled() => None,
                _ = tokio::time::sleep_until(deadline) => None,
                fate = woken => fate.ok(),
            },
        };
        self.inner.waiters.forget(&key);
        answer(accepted, fate)
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

/// A waited-for message's answer: its fate added to what the 202 said.
fn answer(mut v: Value, fate: Option<Fate>) -> (StatusCode, Value) {
    match fate {
        Some(Fate::Persisted { table, committed_at }) => {
            (v["status"], v["table"], v["committed_at"]) = (json!("persisted"), json!(table), json!(committed_at));
            (StatusCode::OK, v)
        }
        Some(Fate::DeadLettered { class, reason }) => {
            (v["status"], v["class"], v["reason"]) = (json!("dead_lettered"), json!(class), json!(reason));
            (StatusCode::UNPROCESSABLE_ENTITY, v)
        }
        None => {
            v["status"] = json!("accepted");
            (StatusCode::ACCEPTED, v)
        }
    }
}

/// What a POST may go on with: its Idempotency-Key and its route.
type Admitted = (Option<String>, Arc<Vec<Route>>, usize);

pub(super) async fn publish_one(
    State(ingest): State<Ingest>,
    Path(subject): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (key, routes, i) = match ingest.admit(&headers, &subject, 1) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    let wait = match ingest.wait_for(query.as_deref(), &headers) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    let waiting = ingest.wait_slots(wait, 1);
    let flush = waiting.as_ref().map(|_| ingest.inner.config.wait_flush);
    let msg_id = key.as_deref().map(limits::event_id);
    match (ingest.publish(&subject, &routes[i], msg_id, body, flush).await, waiting) {
        (Ok(v), Some((_slots, deadline))) => {
            let (status, v) = ingest.await_fate(v, deadline).await;
            reply(status, v)
        }
        // Asked to wait with every waiting slot taken: the 202 at once.
        (Ok(v), None) if wait.is_some() => reply(StatusCode::ACCEPTED, answer(v, None).1),
        (Ok(v), None) => reply(StatusCode::ACCEPTED, v),
        (Err(r), _) => r.into_response(),
    }
}

pub(super) async fn publish_batch(
    State(ingest): State<Ingest>,
    Path(subject): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // Who it is and where it may post first; the rate is charged per item below.
    let (key, routes, i) = match ingest.admit(&headers, &subject, 0) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    let wait = match ingest.wait_for(query.as_deref(), &headers) {
        Ok(w) => w,
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
    let waiting = ingest.wait_slots(wait, items.len());
    let flush = waiting.as_ref().map(|_| ingest.inner.config.wait_flush);
    // In order, PUBLISH_CONCURRENCY at a time: their acknowledgements overlap, the rest wait their turn.
    let results: Vec<Result<Value, Refusal>> = futures::stream::iter(items.into_iter().enumerate())
        .map(|(n, item)| {
            let (ingest, routes, subject) = (ingest.clone(), Arc::clone(&routes), subject.clone());
            let msg_id = key.as_deref().map(|k| limits::item_id(k, n));
            async move { ingest.publish(&subject, &routes[i], msg_id, item, flush).await }
        })
        .buffered(PUBLISH_CONCURRENCY)
        .collect()
        .await;
    let accepted = results.iter().filter(|r| r.is_ok()).count();
    // With a wait: every accepted item's fate, awaited together until the one deadline.
    let (results, code) = match waiting {
        Some((_slots, deadline)) if accepted > 0 => {
            let fates = futures::future::join_all(results.into_iter().map(|r| {
                let ingest = ingest.clone();
                async move {
                    match r {
                        Ok(v) => Ok(ingest.await_fate(v, deadline).await),
                        Err(e) => Err(e),
                    }
                }
            }))
            .await;
            let codes: Vec<StatusCode> = fates.iter().filter_map(|f| f.as_ref().ok().map(|(c, _)| *c)).collect();
            let code = if codes.contains(&StatusCode::ACCEPTED) {
                StatusCode::ACCEPTED
            } else if codes.contains(&StatusCode::UNPROCESSABLE_ENTITY) {
                StatusCode::UNPROCESSABLE_ENTITY
            } else {
                StatusCode::OK
            };
            (fates.into_iter().map(|f| f.map(|(_, v)| v)).collect::<Vec<_>>(), code)
        }
        _ if wait.is_some() => {
            (results.into_iter().map(|r| r.map(|v| answer(v, None).1)).collect(), StatusCode::ACCEPTED)
        }
        _ => (results, StatusCode::ACCEPTED),
    };
    let items: Vec<Value> = results
        .into_iter()
        .map(|r| match r {
            Ok(v) => v,
            Err(Refusal(status, message, _)) => json!({ "status": status.as_u16(), "error": message }),
        })
        .collect();
    reply(code, json!({ "accepted": accepted, "rejected": items.len() - accepted, "items": items }))
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
