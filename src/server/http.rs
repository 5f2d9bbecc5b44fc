//! The HTTP side for SREs and orchestrators: `/metrics` (Prometheus text format),
//! `/healthz` (the process runs), `/readyz` (state restored, serving, and the last write
//! of each store succeeded: an instance whose disk is full sends clients elsewhere).

use crate::metrics::{Metrics, Store};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[derive(Clone)]
pub struct HttpState {
    pub metrics: Arc<Metrics>,
    pub ready: Arc<AtomicBool>,
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn metrics(State(s): State<HttpState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
}

async fn readyz(State(s): State<HttpState>) -> impl IntoResponse {
    if !s.ready.load(Ordering::Acquire) {
        return (StatusCode::SERVICE_UNAVAILABLE, "not ready\n");
    }
    if s.metrics.storage_failing(Store::Wal) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: write-ahead log writes are failing\n",
        );
    }
    if s.metrics.storage_failing(Store::Alerts) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: alert log writes are failing\n",
        );
    }
    (StatusCode::OK, "ready\n")
}
