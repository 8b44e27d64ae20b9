//! The operator's HTTP listener (`[http] listen`): `GET /metrics` (Prometheus text), `GET /healthz` (the process
//! is alive), `GET /readyz` (200 only when NATS is connected, the database answers, the breaker is closed and no
//! stream's task is failing; otherwise 503 with a JSON body naming the part that is not ready, and each failing
//! stream with its last error).
//!
//! Uses metrics, the breaker, the pool and the NATS client, to report their state, and [`crate::redact`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State as AxumState;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::breaker::{Breaker, State};
use crate::db::{self, Answer, SharedPool};
use crate::metrics::Metrics;

/// What the endpoints look at.
#[derive(Clone)]
pub struct Health {
    /// Exported metrics.
    pub metrics: Arc<Metrics>,
    /// The daemon's NATS connection.
    pub nats: async_nats::Client,
    /// The shared pool.
    pub pool: SharedPool,
    /// The database breaker.
    pub breaker: Arc<Breaker>,
}

/// `/readyz`'s verdict.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Readiness {
    /// All parts ready.
    pub ready: bool,
    /// `connected`, or the connection state.
    pub nats: String,
    /// `ok`, `busy` (every connection in use by writers: it answers), or why it does not answer.
    pub database: String,
    /// `closed`, `open` or `half-open`.
    pub breaker: String,
    /// Streams whose task failed and is being restarted, with their last error (absent when none).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub failing: std::collections::BTreeMap<String, String>,
}

/// How long `/readyz` waits for the database.
const DB_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

impl Health {
    /// Checks NATS, the database (one `SELECT 1`) and the breaker.
    pub async fn readiness(&self) -> Readiness {
        let nats_state = self.nats.connection_state();
        let nats_ok = matches!(nats_state, async_nats::connection::State::Connected);
        let database = db::answers(&self.pool.current(), DB_CHECK_TIMEOUT).await;
        let breaker = self.breaker.state();
        let failing = self.metrics.failing_streams();
        Readiness {
            ready: nats_ok
                && matches!(database, Answer::Ok | Answer::Busy)
                && breaker == State::Closed
                && failing.is_empty(),
            nats: if nats_ok { "connected".to_owned() } else { nats_state.to_string() },
            database: database.to_string(),
            breaker: breaker.as_str().to_owned(),
            failing,
        }
    }

    /// Refreshes the gauges read at scrape time (pool, breaker, NATS).
    fn refresh_gauges(&self) {
        let status = self.pool.current().status();
        self.metrics.pool_size.set(status.size as i64);
        self.metrics.pool_in_use.set(status.size.saturating_sub(status.available) as i64);
        self.metrics.pool_waiting.set(status.waiting as i64);
        self.metrics.set_breaker(self.breaker.state().code());
        let connected = matches!(self.nats.connection_state(), async_nats::connection::State::Connected);
        self.metrics.nats_connected.set(i64::from(connected));
    }
}

/// Binds `listen` (failing at once if it cannot) and serves until `shutdown`.
pub async fn serve(
    listen: SocketAddr,
    health: Health,
    shutdown: CancellationToken,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let bound = listener.local_addr()?;
    tracing::info!(listen = %bound, "serving /metrics, /healthz and /readyz");
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(health);
    Ok(tokio::spawn(async move {
        let served = axum::serve(listener, app).with_graceful_shutdown(async move { shutdown.cancelled().await }).await;
        if let Err(e) = served {
            tracing::error!(error = %e, "HTTP listener failed");
        }
    }))
}

/// OpenMetrics when the scraper's `Accept` asks for it (Prometheus does), else the classic text format.
async fn metrics(AxumState(health): AxumState<Health>, headers: axum::http::HeaderMap) -> Response {
    health.refresh_gauges();
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let (content_type, body) = if accept.contains("application/openmetrics-text") {
        (crate::metrics::OPENMETRICS, health.metrics.encode())
    } else {
        (crate::metrics::CLASSIC, health.metrics.encode_classic())
    };
    ([(header::CONTENT_TYPE, content_type)], crate::redact::scrub(&body).into_owned()).into_response()
}

async fn readyz(AxumState(health): AxumState<Health>) -> Response {
    let r = health.readiness().await;
    let status = if r.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = serde_json::to_string(&r).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}
