//! The HTTP server loop. `axum::serve` has no way to bound how long a client may take to
//! send a request, so a connection that sends half a header (or a body one byte a minute)
//! would be held open forever. Here each connection is served by hyper with:
//! - a header-read timeout (`intake.header_timeout`): the whole request header must arrive
//!   within it, or the connection is closed;
//! - a request timeout (`intake.request_timeout`, a tower layer): a request not answered
//!   within it (a body that trickles in, included) gets 408;
//! - a graceful stop: on shutdown, idle connections close and running requests finish.

use crate::config::IntakeConfig;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How long a stop waits for running requests before closing their connections.
const DRAIN: Duration = Duration::from_secs(10);

/// Adds the request timeout to `app` (answers 408 when it runs out).
pub fn with_request_timeout(app: Router, limits: &IntakeConfig) -> Router {
    app.layer(tower_http::timeout::TimeoutLayer::with_status_code(
        axum::http::StatusCode::REQUEST_TIMEOUT,
        limits.request_timeout,
    ))
}

/// Serves `app` on `listener` until `stop` is cancelled.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: IntakeConfig,
    stop: CancellationToken,
) -> std::io::Result<()> {
    // Outermost: every refusal, the timeout's included, as problem details.
    let app = with_request_timeout(app, &limits)
        .layer(axum::middleware::from_fn(crate::problem::answer_as_problem));
    let mut conns = JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: keep serving the others.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => break,
        };
        // Reap finished connections so the set does not grow with the server's uptime.
        while conns.try_join_next().is_some() {}
        // The peer's address, for the handlers that limit a client by it (identity).
        let with_peer = tower::ServiceBuilder::new()
            .map_request(move |mut r: axum::http::Request<hyper::body::Incoming>| {
                r.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                r
            })
            .service(app.clone());
        let service = TowerToHyperService::new(with_peer);
        let stop = stop.clone();
        let header_timeout = limits.header_timeout;
        conns.spawn(async move {
            let io = TokioIo::new(stream);
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout);
            let conn = builder.serve_connection(io, service);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                }
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    let drained =
        tokio::time::timeout(DRAIN, async { while conns.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        conns.abort_all();
    }
    Ok(())
}
