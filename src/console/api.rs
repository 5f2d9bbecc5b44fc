//! The console's JSON endpoints and its event stream. Reads need the session cookie;
//! changes also need [`CONSOLE_HEADER`]. Every call is scoped by the session's token
//! as the gRPC call would be, and goes through the same desk functions
//! ([`crate::server::grpc::Alerts`]), so claims and decisions land in the same audit
//! log and metrics. Nothing here logs message text.

use super::session::{cleared, from_loopback_name, valid_moderator, Session, CONSOLE_HEADER};
use super::{Cell, Console};
use crate::detect::alert::Alert;
use crate::detect::time::format_rfc3339;
use crate::proto::pb;
use crate::server::alerts::Logged;
use crate::server::desk::Held;
use crate::server::grpc::ServiceError;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;

/// A refusal, as JSON: `{"error": "..."}`.
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> ApiError {
        let code = match &e {
            ServiceError::InvalidArgument(_) | ServiceError::OutOfRange(_) => {
                StatusCode::BAD_REQUEST
            }
            ServiceError::NotFound(_) => StatusCode::NOT_FOUND,
            ServiceError::PermissionDenied(_) => StatusCode::FORBIDDEN,
            ServiceError::FailedPrecondition(_) => StatusCode::CONFLICT,
            ServiceError::Saturated | ServiceError::ResourceExhausted(_) => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ServiceError::ShuttingDown | ServiceError::Unavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ServiceError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(code, e.to_string())
    }
}

type Answer = Result<Response, ApiError>;

fn console(cell: &Cell) -> Result<&Arc<Console>, ApiError> {
    cell.get().ok_or(ApiError(
        StatusCode::SERVICE_UNAVAILABLE,
        "the service is starting".into(),
    ))
}

/// The session of a read.
fn reader(c: &Console, headers: &HeaderMap) -> Result<Session, ApiError> {
    c.sessions.of(headers).ok_or(ApiError(
        StatusCode::UNAUTHORIZED,
        "no session: log in at /desk/login".into(),
    ))
}

/// The session of a change: the cookie and the console's header.
fn changer(c: &Console, headers: &HeaderMap) -> Result<Session, ApiError> {
    if headers.get(CONSOLE_HEADER).is_none() {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            format!("a change needs the `{CONSOLE_HEADER}` header"),
        ));
    }
    reader(c, headers)
}

#[derive(Deserialize)]
pub struct Login {
    #[serde(default)]
    token: String,
    moderator: String,
}

pub async fn login(State(cell): State<Cell>, headers: HeaderMap, Json(l): Json<Login>) -> Answer {
    let c = console(&cell)?;
    if headers.get(CONSOLE_HEADER).is_none() {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            format!("a login needs the `{CONSOLE_HEADER}` header"),
        ));
    }
    if !valid_moderator(&l.moderator) {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "your name: 1 to 64 letters, digits, '.', '_', '@' or '-'".into(),
        ));
    }
    let open_here = c.open_without_tokens && from_loopback_name(&headers);
    if !c.tokens.enabled() && !open_here {
        // No token: open only on loopback, and only to pages served under a loopback
        // name (a page of another site whose name was made to point at 127.0.0.1 is
        // refused).
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "no token is configured: the console is open only on a loopback HTTP port, \
             opened as localhost or 127.0.0.1; configure moderator tokens"
                .into(),
        ));
    }
    let caller = if c.tokens.enabled() {
        c.tokens.moderator(l.token.trim()).map_err(|_| {
            ApiError(
                StatusCode::UNAUTHORIZED,
                "this token is not a moderator's or an admin's".into(),
            )
        })?
    } else {
        crate::server::auth::Caller::open()
    };
    let cookie = c
        .sessions
        .open(caller.clone(), l.moderator.clone())
        .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    tracing::info!(token = %caller.name, moderator = %l.moderator, "console login");
    Ok((
        [(header::SET_COOKIE, cookie)],
        Json(json!({ "moderator": l.moderator })),
    )
        .into_response())
}

pub async fn logout(State(cell): State<Cell>, headers: HeaderMap) -> Answer {
    let c = console(&cell)?;
    changer(c, &headers)?;
    c.sessions.close(&headers);
    Ok(([(header::SET_COOKIE, cleared())], Json(json!({}))).into_response())
}

fn scope_json(s: &Session) -> Value {
    match &s.caller.scope {
        crate::server::auth::Scope::All => json!(["*"]),
        crate::server::auth::Scope::Tenants(t) => json!(t.iter().collect::<Vec<_>>()),
    }
}

pub async fn me(State(cell): State<Cell>, headers: HeaderMap) -> Answer {
    let c = console(&cell)?;
    let s = reader(c, &headers)?;
    Ok(Json(json!({ "moderator": s.moderator, "tenants": scope_json(&s) })).into_response())
}

fn claim_json(h: &Option<Held>) -> Value {
    match h {
        Some(h) => json!({ "moderator": h.moderator_id, "until": format_rfc3339(h.until) }),
        None => Value::Null,
    }
}

fn entry(l: &Logged, held: &Option<Held>) -> Value {
    json!({ "cursor": l.cursor, "alert": &*l.alert, "claim": claim_json(held) })
}

#[derive(Deserialize, Default)]
pub struct OpenQuery {
    #[serde(default)]
    tenant: String,
    #[serde(default)]
    min_priority: String,
    #[serde(default)]
    pattern: String,
    /// `any`, `claimed`, `unclaimed` or `mine`.
    #[serde(default)]
    claimed: String,
    #[serde(default)]
    page_token: String,
}

/// How many alerts one answer of the queue holds: the most urgent first; the page says
/// when there are more, and the filters narrow them.
const QUEUE_SCREEN: usize = 500;

/// The open alerts the session may see, most urgent first (ListOpen's order).
pub async fn open(
    State(cell): State<Cell>,
    headers: HeaderMap,
    Query(q): Query<OpenQuery>,
) -> Answer {
    let c = console(&cell)?;
    let s = reader(c, &headers)?;
    let pattern = match q.pattern.as_str() {
        "" => pb::Pattern::Unspecified,
        p => {
            pb::Pattern::from_str_name(&format!("PATTERN_{}", p.to_uppercase())).ok_or(ApiError(
                StatusCode::BAD_REQUEST,
                format!("pattern {p:?} is not a pattern"),
            ))?
        }
    };
    let claimed = match q.claimed.as_str() {
        "" | "any" => pb::ClaimFilter::Any,
        "claimed" | "mine" => pb::ClaimFilter::Claimed,
        "unclaimed" => pb::ClaimFilter::Unclaimed,
        other => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!("claimed {other:?} is not any, claimed, unclaimed or mine"),
            ))
        }
    };
    let mine = q.claimed == "mine";
    let mut alerts: Vec<Value> = Vec::new();
    let mut page_token = q.page_token;
    // "mine" is filtered here, over as many pages as it takes to fill one screen.
    loop {
        let req = pb::ListOpenRequest {
            tenant: q.tenant.clone(),
            min_priority: q.min_priority.clone(),
            pattern: pattern as i32,
            claimed: claimed as i32,
            limit: (QUEUE_SCREEN - alerts.len()) as u32,
            page_token,
        };
        let (page, next) = c.alerts.open_page(&s.caller, req)?;
        alerts.extend(
            page.iter()
                .filter(|(_, h)| !mine || h.as_ref().is_some_and(|h| h.moderator_id == s.moderator))
                .map(|(l, h)| entry(l, h)),
        );
        match next {
            Some(token) if alerts.len() < QUEUE_SCREEN => page_token = token,
            // `more`: the queue goes on past this screen (the most urgent come first).
            next => {
                let more = next.is_some();
                return Ok(Json(
                    json!({ "alerts": alerts, "next_page_token": next, "more": more }),
                )
                .into_response());
            }
        }
    }
}

/// The alert the session may see, as the book holds it (open or decided).
fn visible_alert(
    c: &Console,
    s: &Session,
    id: &str,
) -> Result<(Logged, Option<Held>, Value), ApiError> {
    c.alerts.visible(&s.caller, "console", id)?;
    let book = c.backend.desk().0.read().unwrap_or_else(|p| p.into_inner());
    let now = crate::detect::time::now_millis();
    match book.get(id) {
        Some(l) if s.caller.allows(&l.alert.tenant) => {
            let held = book.holder(id, now).cloned();
            let decided = match book.decided_by(id) {
                Some((d, m)) => json!({ "decision": d.as_str(), "moderator": m }),
                None => Value::Null,
            };
            Ok((l.clone(), held, decided))
        }
        _ => Err(ServiceError::NotFound(format!("alert {id:?} not found")).into()),
    }
}

pub async fn alert(State(cell): State<Cell>, headers: HeaderMap, Path(id): Path<String>) -> Answer {
    let c = console(&cell)?;
    let s = reader(c, &headers)?;
    let (l, held, decided) = visible_alert(c, &s, &id)?;
    let mut v = entry(&l, &held);
    v["decided"] = decided;
    Ok(Json(v).into_response())
}

#[derive(Deserialize)]
pub struct ClaimBody {
    #[serde(default)]
    release: bool,
}

pub async fn claim(
    State(cell): State<Cell>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(b): Json<ClaimBody>,
) -> Answer {
    let c = console(&cell)?;
    let s = changer(c, &headers)?;
    let req = pb::ClaimRequest {
        alert_id: id,
        moderator_id: s.moderator.clone(),
        release: b.release,
    };
    let held = c.alerts.claim_for(&s.caller, &req).await?;
    Ok(Json(json!({ "claim": claim_json(&held) })).into_response())
}

#[derive(Deserialize)]
pub struct ResolveBody {
    decision: String,
    #[serde(default)]
    reason_code: String,
}

pub async fn resolve(
    State(cell): State<Cell>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(b): Json<ResolveBody>,
) -> Answer {
    let c = console(&cell)?;
    let s = changer(c, &headers)?;
    let decision = match b.decision.as_str() {
        "confirmed" => pb::Decision::Confirmed,
        "false_positive" => pb::Decision::FalsePositive,
        "escalated" => pb::Decision::Escalated,
        other => {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!("decision {other:?} is not confirmed, false_positive or escalated"),
            ))
        }
    };
    let req = pb::ResolveRequest {
        alert_id: id,
        moderator_id: s.moderator.clone(),
        decision: decision as i32,
        reason_code: b.reason_code,
    };
    c.alerts.resolve_for(&s.caller, &req).await?;
    Ok(Json(json!({ "decision": b.decision })).into_response())
}

/// The pair's timeline without text: first contact, last activity, each side's signals.
fn pair_json(p: &pb::PairSummary) -> Value {
    let ts = |t: &Option<prost_types::Timestamp>| {
        t.as_ref()
            .map(|t| format_rfc3339(t.seconds * 1000 + i64::from(t.nanos) / 1_000_000))
    };
    let sides: Vec<Value> = p
        .sides
        .iter()
        .map(|s| {
            json!({
                "user_id": s.user_id,
                "age_band": pb::AgeBand::try_from(s.age_band).map_or("UNKNOWN", |b| b.as_str_name()),
                "signals": s.signals.iter().map(|g| json!({
                    "category": g.category,
                    "count": g.count,
                    "first_at": ts(&g.first_at),
                    "last_at": ts(&g.last_at),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "tenant": p.tenant,
        "first_contact_at": ts(&p.first_contact_at),
        "last_seen_at": ts(&p.last_seen_at),
        "sides": sides,
        "alerted": p.alerted,
        "evidence_count": p.evidence_count,
    })
}

/// The evidence package: a JSON file for a report to a hotline or the police. The
/// alert, its evidence with each excerpt's SHA-256, the pair's timeline, and the
/// SHA-256 of the alert as it was logged.
pub async fn package(
    State(cell): State<Cell>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Answer {
    use sha2::{Digest, Sha256};
    let c = console(&cell)?;
    let s = reader(c, &headers)?;
    let (l, _, decided) = visible_alert(c, &s, &id)?;
    let a: &Alert = &l.alert;
    let state = c
        .backend
        .pair(&a.tenant, &a.suspect.user_id, &a.target.user_id)
        .await?;
    let pair = state.map(|st| {
        pair_json(&crate::server::summary::pair_summary(
            &a.tenant,
            &a.suspect.user_id,
            &a.target.user_id,
            &st,
        ))
    });
    let logged = serde_json::to_vec(a).map_err(|e| ServiceError::Internal(e.to_string()))?;
    let body = json!({
        "format": "pairwatch.evidence_package.v1",
        "generated_at": format_rfc3339(crate::detect::time::now_millis()),
        "generated_by": s.moderator,
        "alert_sha256": crate::detect::digest::hex(&Sha256::digest(&logged)),
        "alert": a,
        "evidence": a.evidence.iter().map(|e| json!({
            "event_id": e.event_id,
            "sent_at": e.sent_at,
            "sender_id": e.sender_id,
            "excerpt": e.excerpt,
            "sha256": e.sha256,
        })).collect::<Vec<_>>(),
        "decision": decided,
        "pair": pair,
    });
    tracing::info!(alert_id = %a.alert_id, moderator = %s.moderator, "evidence package downloaded");
    let name = format!(
        "attachment; filename=\"pairwatch-evidence-{}.json\"",
        a.alert_id
    );
    Ok((
        [
            (header::CONTENT_TYPE, "application/json".to_string()),
            (header::CONTENT_DISPOSITION, name),
        ],
        serde_json::to_string_pretty(&body).unwrap_or_default(),
    )
        .into_response())
}

/// How often an idle event stream checks that its session still stands.
const SESSION_CHECK: std::time::Duration = std::time::Duration::from_secs(15);

/// Live changes for the session: `alert` (the cursor and id of a new alert or update in
/// its tenants: the page reads the queue again) and `desk` (a claim, a release, a
/// decision or an erasure). The stream ends when the session does (logout or expiry):
/// it is checked before each event and every [`SESSION_CHECK`].
pub async fn events(State(cell): State<Cell>, headers: HeaderMap) -> Answer {
    let c = console(&cell)?.clone();
    let s = reader(&c, &headers)?;
    let (book, feed) = c.backend.desk();
    let mut live = feed.subscribe();
    let mut changes = book.read().unwrap_or_else(|p| p.into_inner()).changes();
    let shutdown = c.shutdown.clone();
    let stream = async_stream(move |tx| async move {
        let desk = || Event::default().event("desk").data("{}");
        let mut check = tokio::time::interval(SESSION_CHECK);
        loop {
            let event = tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tx.closed() => return,
                _ = check.tick() => None,
                next = live.recv() => match next {
                    Ok(l) if s.caller.allows(&l.alert.tenant) => Some(
                        Event::default()
                            .event("alert")
                            .data(json!({ "cursor": l.cursor, "alert_id": l.alert.alert_id }).to_string()),
                    ),
                    Ok(_) => None,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => Some(desk()),
                    Err(_) => return,
                },
                changed = changes.changed() => match changed {
                    Ok(()) => Some(desk()),
                    Err(_) => return,
                },
            };
            if c.sessions.of(&headers).is_none() {
                return;
            }
            if let Some(event) = event {
                if tx.send(Ok(event)).await.is_err() {
                    return;
                }
            }
        }
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// A stream fed by a task (`f` gets the sender); it ends when the task does.
fn async_stream<F, Fut>(
    f: F,
) -> tokio_stream::wrappers::ReceiverStream<Result<Event, std::convert::Infallible>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<Event, std::convert::Infallible>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(f(tx));
    tokio_stream::wrappers::ReceiverStream::new(rx)
}
