//! The moderators' console at `/desk` on the HTTP port: a queue ordered by priority
//! then deadline, live over Server-Sent Events, an alert view, claims, decisions and
//! evidence packages. Plain HTML, CSS and JavaScript modules embedded in the binary,
//! served under a strict Content-Security-Policy; nothing from elsewhere.
//!
//! - [`session`]: login, the session cookie, the header state changes need;
//! - [`api`]: the JSON endpoints and the event stream, over the same desk rules as the
//!   gRPC `AlertService` (the same tenant scopes, the same audit log).

pub mod api;
pub mod session;

use crate::server::auth::Tokens;
use crate::server::grpc::Alerts;
use crate::server::Backend;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use std::sync::{Arc, OnceLock};
use tokio_util::sync::CancellationToken;

/// What the console works with, once the service's back end has started.
pub struct Console {
    pub alerts: Arc<Alerts>,
    pub backend: Backend,
    pub tokens: Tokens,
    pub sessions: session::Sessions,
    /// With no token configured, whether the console is open: only when the HTTP port
    /// is bound to loopback (as the gRPC API's open default is meant to be).
    pub open_without_tokens: bool,
    /// Ends the event streams when the service stops.
    pub shutdown: CancellationToken,
}

/// The console, set once the back end runs; until then its pages answer 503.
pub type Cell = Arc<OnceLock<Arc<Console>>>;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// Headers on every console answer: no framing, no sniffing, no referrer, no caching.
async fn guard_headers(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    for (k, v) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        h.insert(k, HeaderValue::from_static(v));
    }
    resp
}

/// The embedded files: name, content type, content.
const ASSETS: [(&str, &str, &str); 5] = [
    (
        "desk.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/desk.js"),
    ),
    (
        "login.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/login.js"),
    ),
    (
        "common.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/common.js"),
    ),
    (
        "desk.css",
        "text/css; charset=utf-8",
        include_str!("assets/desk.css"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_str!("assets/favicon.svg"),
    ),
];

fn html(body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

async fn asset(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, kind, body)) => ([(header::CONTENT_TYPE, *kind)], *body).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn desk_page(
    axum::extract::State(cell): axum::extract::State<Cell>,
    headers: HeaderMap,
) -> Response {
    match cell.get() {
        None => (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response(),
        Some(c) if c.sessions.of(&headers).is_none() => Redirect::to("/desk/login").into_response(),
        Some(_) => html(include_str!("assets/desk.html")),
    }
}

/// The console's routes, served by the HTTP port beside metrics and health.
pub fn router(cell: Cell) -> Router {
    Router::new()
        .route("/desk", get(desk_page))
        .route("/desk/", get(desk_page))
        .route(
            "/desk/login",
            get(|| async { html(include_str!("assets/login.html")) }),
        )
        .route("/desk/assets/{name}", get(asset))
        .route("/desk/api/login", post(api::login))
        .route("/desk/api/logout", post(api::logout))
        .route("/desk/api/me", get(api::me))
        .route("/desk/api/open", get(api::open))
        .route("/desk/api/events", get(api::events))
        .route("/desk/api/alerts/{id}", get(api::alert))
        .route("/desk/api/alerts/{id}/claim", post(api::claim))
        .route("/desk/api/alerts/{id}/resolve", post(api::resolve))
        .route("/desk/api/alerts/{id}/package", get(api::package))
        .layer(axum::middleware::from_fn(guard_headers))
        .with_state(cell)
}
