//! What the front's handlers share: the [`Ingest`] state (NATS client, JetStream, the status bucket, the routing
//! table of `[[stream]]`s, the tokens), authorization (401/403/429) and the JSON answers every handler gives.
//!
//! Uses the config types, JetStream, metrics and [`super::tokens`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::tokens::{Denied, Tokens};
use crate::config::{IngestConfig, StreamConfig};
use crate::processor::ProcessorKind;

/// A JSON answer.
pub(super) fn reply(status: StatusCode, body: Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// A JSON error answer, with any secret the config holds scrubbed from the message.
pub(super) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let message = message.into();
    reply(status, json!({ "error": crate::redact::scrub(&message) }))
}

/// One `[[stream]]` as the front sees it.
#[derive(Debug)]
pub(super) struct Route {
    pub(super) jetstream: String,
    pub(super) consumer: String,
    pub(super) subjects: Vec<String>,
    pub(super) processor: ProcessorKind,
    pub(super) validate: bool,
    /// The consumer's pending count, refreshed in the background (for the lag limit).
    pub(super) pending: AtomicU64,
}

/// What the handlers share.
#[derive(Clone)]
pub struct Ingest {
    pub(super) inner: Arc<Inner>,
}

pub(super) struct Inner {
    pub(super) client: async_nats::Client,
    pub(super) js: jetstream::Context,
    pub(super) status: kv::Store,
    pub(super) config: IngestConfig,
    pub(super) routes: RwLock<Arc<Vec<Route>>>,
    /// `None`: no authentication.
    pub(super) tokens: Option<Tokens>,
    pub(super) metrics: Arc<crate::metrics::Metrics>,
    /// Requests waiting for their messages' fates.
    pub(super) waiters: Arc<super::wait::Waiters>,
    /// Cancelled when the daemon stops: waiting requests answer 202 at once.
    pub(super) shutdown: CancellationToken,
}

impl Ingest {
    /// The front for `streams`, publishing through `client`; fails when the tokens file is unusable.
    pub fn new(
        client: async_nats::Client,
        status: kv::Store,
        config: IngestConfig,
        streams: &[StreamConfig],
        metrics: Arc<crate::metrics::Metrics>,
        shutdown: CancellationToken,
    ) -> Result<Self, String> {
        let tokens = config.tokens_file.as_deref().map(Tokens::from_file).transpose()?;
        let ingest = Ingest {
            inner: Arc::new(Inner {
                js: jetstream::new(client.clone()),
                client,
                status,
                waiters: super::wait::Waiters::new(config.max_waiters),
                config,
                routes: RwLock::new(Arc::new(Vec::new())),
                tokens,
                metrics,
                shutdown,
            }),
        };
        ingest.set_streams(streams);
        Ok(ingest)
    }

    /// Checks the bearer token: known (401), allowed to post to `subject` (403), within its rate for `items`
    /// requests (429 with the limit); the refusal, or `None` to go on. Without a tokens file everyone may.
    pub(super) fn refusal(&self, headers: &HeaderMap, subject: Option<&str>, items: usize) -> Option<Response> {
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

    pub(super) fn routes(&self) -> Arc<Vec<Route>> {
        self.inner.routes.read().map(|r| Arc::clone(&r)).unwrap_or_default()
    }

    /// Keeps each route's consumer lag fresh, for the `max_lag` limit.
    pub(super) async fn refresh_lag(self, shutdown: CancellationToken) {
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
