//! The HTTP/1.1 server on `--listen-metrics-urls`:
//! - `GET /metrics`: every series in the OpenMetrics text format
//!   (Prometheus scrapes it as is);
//! - `GET /health`: `{"health":"true"}` (200) while the member would serve
//!   a linearizable read, `{"health":"false"}` (503) otherwise: the
//!   readiness the gRPC health service reports for the member as a whole
//!   (see [`crate::node::health`]), with etcd's body and codes.

use super::Metrics;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use std::sync::Arc;

/// The content type of `/metrics`.
const OPENMETRICS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The routes of the metrics listeners.
pub fn router(metrics: Arc<Metrics>) -> axum::Router {
    axum::Router::new()
        .route("/metrics", axum::routing::get(scrape))
        .route("/health", axum::routing::get(health))
        .with_state(metrics)
}

async fn scrape(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    // Engine statistics take locks: off the async workers.
    let text = tokio::task::spawn_blocking(move || metrics.encode()).await;
    match text {
        Ok(text) => ([(header::CONTENT_TYPE, OPENMETRICS_TEXT)], text).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn health(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    let (status, body) = if metrics.ready() {
        (StatusCode::OK, r#"{"health":"true"}"#)
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, r#"{"health":"false"}"#)
    };
    (status, [(header::CONTENT_TYPE, "application/json")], body)
}

/// Serves [`router`] on `listener` until `stopped` turns true (requests
/// in flight finish).
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    axum::serve(listener, router(metrics))
        .with_graceful_shutdown(async move {
            let _ = stopped.wait_for(|s| *s).await;
        })
        .await
}
