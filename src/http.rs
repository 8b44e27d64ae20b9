//! The operator's HTTP listener (`[http] listen`), bound before NATS or the database is reached: `GET /metrics`
//! (Prometheus text), `GET /healthz` and `/livez` (the process is alive), `GET /readyz`: 200 once start-up is done,
//! NATS is connected and no stream's task is failing; 503 otherwise, with a JSON body naming what start-up waits
//! for, the part that is down, and each failing stream with its last error. A database outage (or an open breaker)
//! is named in the body (`degraded`) but does not make the instance unready: it is the same for every replica,
//! messages wait in JetStream, and unready pods would only block node drains.
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

/// What the endpoints look at: from the start the metrics and the breaker, once NATS is connected and the pool
/// built, those too.
#[derive(Clone)]
pub struct Health {
    metrics: Arc<Metrics>,
    breaker: Arc<Breaker>,
    parts: Arc<std::sync::OnceLock<(async_nats::Client, SharedPool)>>,
    /// What start-up waits for (until `parts` is set).
    waiting: Arc<std::sync::Mutex<String>>,
}

/// `/readyz`'s verdict.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Readiness {
    /// This instance can take work: started, NATS connected, no stream failing (the database may be `degraded`).
    pub ready: bool,
    /// Present while the daemon starts: what it waits for (e.g. NATS, with the last connection error).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub starting: Option<String>,
    /// `connected`, or the connection state.
    pub nats: String,
    /// `ok`, `busy` (every connection in use by writers: it answers), or why it does not answer.
    pub database: String,
    /// `closed`, `open` or `half-open`.
    pub breaker: String,
    /// Streams whose task failed and is being restarted, with their last error (absent when none).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub failing: std::collections::BTreeMap<String, String>,
    /// Shared parts that are down without making the instance unready (`database`, `breaker`); absent when none.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub degraded: Vec<&'static str>,
}

/// How long `/readyz` waits for the database.
const DB_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

impl Health {
    /// Start-up: nothing connected yet.
    pub fn starting(metrics: Arc<Metrics>, breaker: Arc<Breaker>) -> Self {
        Health {
            metrics,
            breaker,
            parts: Arc::default(),
            waiting: Arc::new(std::sync::Mutex::new("connecting to NATS".to_owned())),
        }
    }

    /// Says what start-up waits for now (shown by `/readyz` until [`Health::started`]).
    pub fn waiting_for(&self, what: impl Into<String>) {
        *self.waiting.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = what.into();
    }

    /// NATS is connected and the pool built: `/readyz` checks them from now on.
    pub fn started(&self, nats: async_nats::Client, pool: SharedPool) {
        let _ = self.parts.set((nats, pool));
    }

    /// Checks NATS, the database (one `SELECT 1`), the breaker and the streams' tasks.
    pub async fn readiness(&self) -> Readiness {
        let failing = self.metrics.failing_streams();
        let breaker = self.breaker.state();
        let Some((nats, pool)) = self.parts.get() else {
            let waiting = self.waiting.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
            return Readiness {
                ready: false,
                starting: Some(waiting),
                nats: "not connected yet".to_owned(),
                database: "not checked yet".to_owned(),
                breaker: breaker.as_str().to_owned(),
                failing,
                degraded: Vec::new(),
            };
        };
        let nats_state = nats.connection_state();
        let nats_ok = matches!(nats_state, async_nats::connection::State::Connected);
        let database = db::answers(&pool.current(), DB_CHECK_TIMEOUT).await;
        let mut degraded = Vec::new();
        if !matches!(database, Answer::Ok | Answer::Busy) {
            degraded.push("database");
        }
        if breaker != State::Closed {
            degraded.push("breaker");
        }
        Readiness {
            ready: nats_ok && failing.is_empty(),
            starting: None,
            nats: if nats_ok { "connected".to_owned() } else { nats_state.to_string() },
            database: database.to_string(),
            breaker: breaker.as_str().to_owned(),
            failing,
            degraded,
        }
    }

    /// Refreshes the gauges read at scrape time (pool, breaker, NATS).
    fn refresh_gauges(&self) {
        self.metrics.set_breaker(self.breaker.state().code());
        let Some((nats, pool)) = self.parts.get() else { return };
        let status = pool.current().status();
        self.metrics.pool_size.set(status.size as i64);
        self.metrics.pool_in_use.set(status.size.saturating_sub(status.available) as i64);
        self.metrics.pool_waiting.set(status.waiting as i64);
        let connected = matches!(nats.connection_state(), async_nats::connection::State::Connected);
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
    tracing::info!(listen = %bound, "serving /metrics, /healthz, /livez and /readyz");
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/livez", get(|| async { "ok\n" }))
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
