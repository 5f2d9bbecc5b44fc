//! The HTTP side for SREs and orchestrators: `/metrics` (Prometheus text format),
//! `/healthz` (the process runs), `/readyz` (state restored, serving, and the last write
//! of each store succeeded: an instance whose disk is full sends clients elsewhere; in
//! Kafka mode, the partitions assigned and restored, consuming, the brokers reachable,
//! see [`crate::kafka::health`]). An unready answer says why. The moderators' console
//! ([`crate::console`]) is served beside them, under `/desk`.

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
    /// Kafka mode: the stages' readiness.
    pub kafka: Option<Arc<crate::kafka::health::Health>>,
    /// The moderators' console, once the back end runs.
    pub console: crate::console::Cell,
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state.clone())
        .merge(crate::console::router(state.console))
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

async fn readyz(State(s): State<HttpState>) -> axum::response::Response {
    if !s.ready.load(Ordering::Acquire) {
        return (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response();
    }
    if let Some(why) = s.kafka.as_ref().and_then(|k| k.unready_reason()) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response();
    }
    if s.metrics.storage_failing(Store::Wal) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: write-ahead log writes are failing\n",
        )
            .into_response();
    }
    if s.metrics.storage_failing(Store::Alerts) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: alert log writes are failing\n",
        )
            .into_response();
    }
    (StatusCode::OK, "ready\n").into_response()
}
