//! The ingest listener's connections, plain or TLS, under limits no client can outlast: at most
//! `max_connections` at once (a further connection waits in the kernel's backlog, holding none of the daemon's
//! descriptors), lowered at start to what the process's descriptor limit leaves after the database pool and NATS;
//! a TLS handshake and a request's headers must arrive within `header_timeout` (which also closes an idle
//! keep-alive connection); at most [`MAX_HEADERS`] headers of [`MAX_HEADER_BYTES`]; a request's body and answer
//! within `request_timeout` (else 408 and the connection closed).
//!
//! Uses the config types and [`super::limits`].

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::limits::{MAX_HEADER_BYTES, MAX_HEADERS};

/// Descriptors kept for everything but ingest connections, beyond the database pool: NATS, listeners, files,
/// the runtime, a pool being replaced after a password change.
const RESERVED_DESCRIPTORS: usize = 64;

/// How the listener's connections are bounded.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Connections at once.
    pub max_connections: usize,
    /// TLS handshake and request headers (and keep-alive idleness).
    pub header_timeout: Duration,
}

/// The soft limit on open files of this process (`/proc/self/limits`), if it can be read.
pub fn open_files_limit() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// `configured` lowered to what `limit` descriptors leave after the database pool (twice: the old and the new
/// one while a password change rebuilds it) and [`RESERVED_DESCRIPTORS`]; at least 1.
pub fn budget(configured: usize, limit: Option<usize>, pool_size: usize) -> usize {
    match limit {
        Some(limit) => configured.min(limit.saturating_sub(2 * pool_size + RESERVED_DESCRIPTORS)).max(1),
        None => configured,
    }
}

/// Accepts and serves connections until `shutdown`, then lets each finish the request in progress.
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: Router,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let connections = tokio_util::task::TaskTracker::new();
    loop {
        // A slot first: at the limit, new connections wait in the backlog instead of taking a descriptor.
        let slot = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(s) => s,
                Err(_) => break,
            },
        };
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
        let (tls, app, shutdown) = (tls.clone(), app.clone(), shutdown.clone());
        connections.spawn(async move {
            let _slot = slot;
            match tls {
                None => connection(TokioIo::new(tcp), app, limits, shutdown).await,
                Some(acceptor) => {
                    // A client that never finishes its handshake must not hold a slot for ever.
                    match tokio::time::timeout(limits.header_timeout, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => connection(TokioIo::new(stream), app, limits, shutdown).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "ingest TLS handshake refused"),
                        Err(_) => tracing::debug!(%peer, "ingest TLS handshake timed out"),
                    }
                }
            }
        });
    }
    connections.close();
    connections.wait().await;
}

async fn connection<I>(io: I, app: Router, limits: ConnectionLimits, shutdown: CancellationToken)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = hyper_util::service::TowerToHyperService::new(app);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_headers(MAX_HEADERS)
        .max_buf_size(MAX_HEADER_BYTES.max(8192) * 4)
        .max_header_size(MAX_HEADER_BYTES)
        .keep_alive(true);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_budget_leaves_the_pool_and_nats_their_descriptors() {
        assert_eq!(budget(512, Some(1024), 8), 512);
        assert_eq!(budget(512, Some(256), 8), 256 - 16 - 64);
        assert_eq!(budget(512, Some(50), 8), 1, "never none");
        assert_eq!(budget(512, None, 8), 512);
        assert!(open_files_limit().is_some_and(|n| n > 0), "readable on Linux");
    }
}
