//! The HTTP ingest front (`[ingest] listen`): clients without NATS POST events and get 202 once JetStream has
//! stored them, with a message id they can ask about later.
//!
//! - `POST /v1/events/{subject}`: one payload, as the subject's processor decodes it. Published with
//!   `Nats-Msg-Id` `e:<Idempotency-Key>`, so a retry within the stream's duplicate window answers with the same
//!   sequence and `"duplicate": true`. 202 only after JetStream's publish acknowledgement.
//! - `POST /v1/events/{subject}/batch`: a JSON array or NDJSON of at most `max_batch_items`; each item published
//!   with `Nats-Msg-Id` `b:<index>:<Idempotency-Key>`, acknowledgements awaited a bounded number at a time; one
//!   result per item.
//! - Either POST with `?wait=persisted` (or `Prefer: wait=N`) holds the answer until the commit ([`wait`]): 200
//!   `persisted`, 422 `dead_lettered`, or at the timeout the 202 `accepted` it would have given at once.
//! - `GET /v1/events/{message_id}`: `accepted` (stored, not yet committed), `persisted` (table, commit time),
//!   `dead_lettered` (class, reason), or 404.
//! - `GET /v1/openapi.json`: the OpenAPI description of the above.
//!
//! Status lives in a JetStream key-value bucket: the writers put `persisted` after the commit and the dead-letter
//! path `dead_lettered`, for messages that came in here (marked with a header), so the JetStream path pays
//! nothing for it.
//!
//! Its rooms: [`front`] (the shared state, authorization, answers), [`limits`] (every client-controlled size, checked before NATS), [`server`] (connections under
//! limits and timeouts), [`publish`] (the handlers), [`status`] (fates), [`tokens`] (bearer tokens), [`wait`] (waiting for a
//! fate).
//!
//! Uses the config types, TLS, metrics and its rooms.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{StatusCode, header};
use axum::routing::{get, post};
use tokio_util::sync::CancellationToken;

mod front;
pub mod limits;
mod publish;
pub mod server;
pub mod status;
pub mod tokens;
pub mod wait;

pub use front::Ingest;
use front::error;
pub use limits::subject_matches;

/// Binds `listen` and serves until `shutdown`, at most `max_connections` at once (see [`server`]).
pub async fn serve(
    listen: SocketAddr,
    ingest: Ingest,
    max_connections: usize,
    shutdown: CancellationToken,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(listen = %listener.local_addr()?, max_connections, "HTTP ingest front listening");
    tokio::spawn(Arc::clone(&ingest.inner.waiters).watch(ingest.inner.status.clone(), shutdown.clone()));
    if ingest.inner.config.max_lag > 0 {
        tokio::spawn(ingest.clone().refresh_lag(shutdown.clone()));
    }
    match (&ingest.inner.tokens, &ingest.inner.config.tokens_file) {
        (Some(tokens), Some(file)) => {
            tokio::spawn(tokens.clone().watch(file.clone(), Duration::from_secs(2), shutdown.clone()));
        }
        _ => tracing::warn!("[ingest] has no tokens_file: anyone who reaches {listen} may post"),
    }
    let config = &ingest.inner.config;
    let (max_body, request_timeout) = (config.max_body, config.request_timeout);
    let limits = server::ConnectionLimits { max_connections, header_timeout: config.header_timeout };
    let tls = match &config.tls {
        Some(t) => Some(tokio_rustls::TlsAcceptor::from(Arc::new(
            crate::tls::server_config(&t.cert_file, &t.key_file, t.client_ca_file.as_deref(), "ingest.tls")
                .map_err(std::io::Error::other)?,
        ))),
        None => None,
    };
    let metrics = Arc::clone(&ingest.inner.metrics);
    let app = Router::new()
        .route("/v1/events/{id}", post(publish::publish_one).get(publish::status))
        .route("/v1/events/{subject}/batch", post(publish::publish_batch))
        .route("/v1/openapi.json", get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }))
        .layer(DefaultBodyLimit::max(max_body))
        // The body must arrive, and the answer be ready, within request_timeout: a slow sender gets 408 and its
        // connection closed.
        .layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| async move {
                match tokio::time::timeout(request_timeout, next.run(request)).await {
                    Ok(response) => response,
                    Err(_) => {
                        let mut r = error(
                            StatusCode::REQUEST_TIMEOUT,
                            format!("the request took longer than {request_timeout:?} ([ingest] request_timeout)"),
                        );
                        r.headers_mut().insert(header::CONNECTION, header::HeaderValue::from_static("close"));
                        r
                    }
                }
            },
        ))
        // Counted here, after the body limit and the timeout, so 413s and 408s are counted too.
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
    Ok(tokio::spawn(server::serve(listener, tls, app, limits, shutdown)))
}

/// The OpenAPI 3 description of the front (kept true by a test that walks it against the router).
pub const OPENAPI: &str = include_str!("openapi.json");

#[cfg(test)]
mod tests {
    use super::status::{Fate, message_id, parse_message_id, status_key};
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
    fn the_fate_is_stored_as_tagged_json() {
        let fate = Fate::DeadLettered { class: "decode".into(), reason: "bad".into() };
        let text = serde_json::to_string(&fate).unwrap();
        assert_eq!(text, r#"{"status":"dead_lettered","class":"decode","reason":"bad"}"#);
        assert_eq!(serde_json::from_str::<Fate>(&text).unwrap(), fate);
    }

    #[test]
    fn the_openapi_description_is_json_and_names_every_route() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        assert_eq!(doc["openapi"].as_str().map(|v| v.starts_with("3.")), Some(true));
        for path in ["/v1/events/{id}", "/v1/events/{subject}/batch", "/v1/openapi.json"] {
            assert!(doc["paths"].get(path).is_some(), "{path} is not described");
        }
    }
}
