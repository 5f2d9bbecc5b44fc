//! The gRPC services (`pairwatch.v1`): ingest, alerts, admin. Handlers validate, then
//! hand work to the pipeline; they never touch pair state themselves.

use super::alerts::{Decision, Logged, ResolveError};
use super::pipeline::{Command, Pipeline, Route, Suppress};
use super::Backend;
use crate::event::EventError;
use crate::proto::{event_from_proto, pb};
use crate::rules::Priority;
use prost::Message;
use std::pin::Pin;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::{wrappers::ReceiverStream, Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

/// How long an event may wait for room in the intake queue before RESOURCE_EXHAUSTED.
const INTAKE_WAIT: Duration = Duration::from_secs(2);
/// Acks in flight per Publish stream.
const STREAM_WINDOW: usize = 4096;
const LIST_DEFAULT: usize = 100;
const LIST_MAX: usize = 1000;

/// Everything a handler can fail with; `status` is the one place mapping it to a code.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    OutOfRange(String),
    #[error("intake is full, retry later")]
    Saturated,
    #[error("service is shutting down")]
    ShuttingDown,
    #[error("{0}")]
    Internal(String),
}

impl From<ServiceError> for Status {
    fn from(e: ServiceError) -> Status {
        let msg = e.to_string();
        match e {
            ServiceError::InvalidArgument(_) => Status::invalid_argument(msg),
            ServiceError::NotFound(_) => Status::not_found(msg),
            ServiceError::FailedPrecondition(_) => Status::failed_precondition(msg),
            ServiceError::OutOfRange(_) => Status::out_of_range(msg),
            ServiceError::Saturated => Status::resource_exhausted(msg),
            ServiceError::ShuttingDown => Status::unavailable(msg),
            ServiceError::Internal(_) => Status::internal(msg),
        }
    }
}

fn ack_ok(event_id: String) -> pb::PublishAck {
    pb::PublishAck {
        event_id,
        accepted: true,
        reason: String::new(),
        reason_code: String::new(),
    }
}

fn ack_err(event_id: String, reason: String, code: &str) -> pb::PublishAck {
    pb::PublishAck {
        event_id,
        accepted: false,
        reason,
        reason_code: code.to_string(),
    }
}

fn saturated(metrics: &crate::metrics::Metrics, id: String) -> (String, String, &'static str) {
    metrics.saturated.inc();
    metrics.rejected("saturated");
    (
        id,
        ServiceError::Saturated.to_string(),
        "resource_exhausted",
    )
}

/// Validates one event and queues it (for the log, or for Kafka); the receiver yields
/// its ack.
async fn submit(
    b: &Backend,
    ev: pb::ChatEvent,
) -> Result<oneshot::Receiver<Result<u64, String>>, (String, String, &'static str)> {
    let id = ev.event_id.clone();
    let event = event_from_proto(ev, b.limits()).map_err(|e: EventError| {
        b.metrics().rejected(e.reason());
        (id.clone(), e.to_string(), e.reason())
    })?;
    let p = match b {
        Backend::Local(p) => p,
        Backend::Kafka(k) => {
            return k
                .publisher
                .publish(&event, INTAKE_WAIT)
                .await
                .map_err(|e| match e {
                    crate::kafka::PublishError::Saturated => saturated(b.metrics(), id),
                    crate::kafka::PublishError::Failed(m) => {
                        (id, format!("kafka producer: {m}"), "unavailable")
                    }
                });
        }
    };
    let payload = pb::ChatEvent::from(&event).encode_to_vec();
    let (ack, rx) = oneshot::channel();
    let cmd = Command::Append {
        route: Route::Event {
            event: Box::new(event),
            received: Instant::now(),
        },
        payload,
        ack: Some(ack),
    };
    match p.commands.send_timeout(cmd, INTAKE_WAIT).await {
        Ok(()) => Ok(rx),
        Err(mpsc::error::SendTimeoutError::Timeout(_)) => Err(saturated(&p.metrics, id)),
        Err(mpsc::error::SendTimeoutError::Closed(_)) => {
            Err((id, ServiceError::ShuttingDown.to_string(), "unavailable"))
        }
    }
}

async fn finish(id: String, rx: oneshot::Receiver<Result<u64, String>>) -> pb::PublishAck {
    match rx.await {
        Ok(Ok(_)) => ack_ok(id),
        Ok(Err(e)) => ack_err(id, e, "internal"),
        Err(_) => ack_err(id, ServiceError::ShuttingDown.to_string(), "unavailable"),
    }
}

pub struct Ingest(pub Backend);

type AckStream = Pin<Box<dyn Stream<Item = Result<pb::PublishAck, Status>> + Send>>;

#[tonic::async_trait]
impl pb::ingest_service_server::IngestService for Ingest {
    type PublishStream = AckStream;

    async fn publish(
        &self,
        request: Request<Streaming<pb::ChatEvent>>,
    ) -> Result<Response<AckStream>, Status> {
        let mut inbound = request.into_inner();
        let p = self.0.clone();
        let (pending_tx, mut pending_rx) = mpsc::channel::<(
            String,
            Result<oneshot::Receiver<Result<u64, String>>, pb::PublishAck>,
        )>(STREAM_WINDOW);
        let (out_tx, out_rx) = mpsc::channel(STREAM_WINDOW);
        tokio::spawn(async move {
            while let Some(item) = inbound.next().await {
                let ev = match item {
                    Ok(ev) => ev,
                    Err(status) => {
                        tracing::debug!(code = ?status.code(), "publish stream ended with an error");
                        break;
                    }
                };
                let id = ev.event_id.clone();
                let entry = match submit(&p, ev).await {
                    Ok(rx) => Ok(rx),
                    Err((id, reason, code)) => Err(ack_err(id, reason, code)),
                };
                if pending_tx.send((id, entry)).await.is_err() {
                    break;
                }
            }
        });
        // Acks go out in the order the events came in.
        tokio::spawn(async move {
            while let Some((id, entry)) = pending_rx.recv().await {
                let ack = match entry {
                    Ok(rx) => finish(id, rx).await,
                    Err(ack) => ack,
                };
                if out_tx.send(Ok(ack)).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(out_rx))))
    }

    async fn publish_batch(
        &self,
        request: Request<pb::PublishBatchRequest>,
    ) -> Result<Response<pb::PublishBatchResponse>, Status> {
        let events = request.into_inner().events;
        let max = self.0.max_batch();
        if events.len() > max {
            return Err(ServiceError::InvalidArgument(format!(
                "batch has {} events, over the limit of {max}",
                events.len()
            ))
            .into());
        }
        let mut waiting = Vec::with_capacity(events.len());
        for ev in events {
            let id = ev.event_id.clone();
            waiting.push((id, submit(&self.0, ev).await));
        }
        let mut results = Vec::with_capacity(waiting.len());
        for (id, w) in waiting {
            results.push(match w {
                Ok(rx) => finish(id, rx).await,
                Err((id, reason, code)) => ack_err(id, reason, code),
            });
        }
        Ok(Response::new(pb::PublishBatchResponse { results }))
    }
}

fn parse_min_priority(s: &str) -> Result<Priority, ServiceError> {
    if s.is_empty() {
        return Ok(Priority::P3);
    }
    Priority::parse(s).ok_or_else(|| {
        ServiceError::InvalidArgument(format!("min_priority {s:?} is not P0, P1, P2 or P3"))
    })
}

fn envelope(l: &Logged) -> pb::AlertEnvelope {
    pb::AlertEnvelope {
        cursor: l.cursor,
        alert: Some(pb::Alert::from(&*l.alert)),
    }
}

pub struct Alerts {
    pub backend: Backend,
    /// Ends live subscriptions when the service stops.
    pub shutdown: tokio_util::sync::CancellationToken,
}

type AlertStream = Pin<Box<dyn Stream<Item = Result<pb::AlertEnvelope, Status>> + Send>>;

#[tonic::async_trait]
impl pb::alert_service_server::AlertService for Alerts {
    type SubscribeStream = AlertStream;

    async fn subscribe(
        &self,
        request: Request<pb::SubscribeRequest>,
    ) -> Result<Response<AlertStream>, Status> {
        let req = request.into_inner();
        let min = parse_min_priority(&req.min_priority)?;
        let tenant = Some(req.tenant).filter(|t| !t.is_empty());
        let keep = move |l: &Logged| {
            l.alert.priority <= min && tenant.as_ref().is_none_or(|t| *t == l.alert.tenant)
        };
        let p = self.backend.local()?;
        // Subscribe before reading the backlog, so nothing falls between the two.
        let mut live = p.feed.subscribe();
        let book = p.book.clone();
        let (tx, rx) = mpsc::channel(256);
        let metrics = p.metrics.clone();
        let shutdown = self.shutdown.clone();
        let start = {
            let b = book.read().unwrap_or_else(|p| p.into_inner());
            let start = match (req.from_beginning, req.after_cursor) {
                (true, _) => b.first_cursor().saturating_sub(1),
                (false, 0) => b.last_cursor(),
                (false, after) => after,
            };
            if let Err(oldest) = b.after(start) {
                return Err(ServiceError::OutOfRange(format!(
                    "cursor {start} is older than the alerts kept for resuming (from {oldest}); \
                     use ListOpen, or read alerts.jsonl"
                ))
                .into());
            }
            start
        };
        tokio::spawn(async move {
            metrics.subscribers.inc();
            let mut last = start;
            let backlog = |after: u64| book.read().unwrap_or_else(|p| p.into_inner()).after(after);
            'outer: loop {
                let Ok(pending) = backlog(last) else {
                    let _ = tx
                        .send(Err(Status::out_of_range(
                            "this subscriber fell too far behind; resume with ListOpen",
                        )))
                        .await;
                    break 'outer;
                };
                for l in pending {
                    last = l.cursor;
                    if keep(&l) && tx.send(Ok(envelope(&l))).await.is_err() {
                        break 'outer;
                    }
                }
                loop {
                    let next = tokio::select! {
                        _ = shutdown.cancelled() => break 'outer,
                        next = live.recv() => next,
                    };
                    match next {
                        Ok(l) if l.cursor <= last => {}
                        Ok(l) => {
                            last = l.cursor;
                            if keep(&l) && tx.send(Ok(envelope(&l))).await.is_err() {
                                break 'outer;
                            }
                        }
                        // Fell behind the live feed: catch up from the log.
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue 'outer,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => break 'outer,
                    }
                }
            }
            metrics.subscribers.dec();
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn list_open(
        &self,
        request: Request<pb::ListOpenRequest>,
    ) -> Result<Response<pb::ListOpenResponse>, Status> {
        let req = request.into_inner();
        let min = parse_min_priority(&req.min_priority)?;
        let limit = match req.limit {
            0 => LIST_DEFAULT,
            n => (n as usize).min(LIST_MAX),
        };
        let tenant = Some(req.tenant.as_str()).filter(|t| !t.is_empty());
        let open = self
            .backend
            .local()?
            .book
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .list_open(min, tenant, limit);
        Ok(Response::new(pb::ListOpenResponse {
            alerts: open.iter().map(envelope).collect(),
        }))
    }

    async fn resolve(
        &self,
        request: Request<pb::ResolveRequest>,
    ) -> Result<Response<pb::ResolveResponse>, Status> {
        let req = request.into_inner();
        let decision = match pb::Decision::try_from(req.decision) {
            Ok(pb::Decision::Confirmed) => Decision::Confirmed,
            Ok(pb::Decision::FalsePositive) => Decision::FalsePositive,
            _ => {
                return Err(ServiceError::InvalidArgument(
                    "decision must be CONFIRMED or FALSE_POSITIVE".into(),
                )
                .into())
            }
        };
        if req.moderator_id.is_empty() {
            return Err(ServiceError::InvalidArgument("moderator_id is required".into()).into());
        }
        let pipeline = self.backend.local()?;
        let alert = {
            let book = pipeline.book.read().unwrap_or_else(|p| p.into_inner());
            book.get(&req.alert_id).map(|l| l.alert.clone())
        }
        .ok_or_else(|| ServiceError::NotFound(format!("no alert with id {:?}", req.alert_id)))?;
        if decision == Decision::FalsePositive {
            let sup = Suppress {
                tenant: alert.tenant.clone(),
                a: alert.suspect.user_id.clone(),
                b: alert.target.user_id.clone(),
                pattern: alert.pattern,
            };
            let payload =
                serde_json::to_vec(&sup).map_err(|e| ServiceError::Internal(e.to_string()))?;
            pipeline.append(Route::Suppress(sup), payload).await?;
        }
        let book = pipeline.book.clone();
        let at = crate::time::format_rfc3339(jiff::Timestamp::now().as_millisecond());
        let (id, moderator) = (req.alert_id.clone(), req.moderator_id.clone());
        let resolved = tokio::task::spawn_blocking(move || {
            book.write()
                .unwrap_or_else(|p| p.into_inner())
                .resolve(&id, decision, &moderator, &at)
        })
        .await
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
        match resolved {
            Ok(a) => {
                pipeline.metrics.decision(&a.rules, decision.as_str());
                pipeline.metrics.set_open(
                    pipeline
                        .book
                        .read()
                        .unwrap_or_else(|p| p.into_inner())
                        .open_counts(),
                );
                tracing::info!(alert_id = %a.alert_id, decision = decision.as_str(), "alert resolved");
                Ok(Response::new(pb::ResolveResponse {}))
            }
            Err(ResolveError::NotFound(m)) => {
                Err(ServiceError::NotFound(format!("no alert with id {m:?}")).into())
            }
            Err(e @ ResolveError::AlreadyResolved(_)) => {
                Err(ServiceError::FailedPrecondition(e.to_string()).into())
            }
            Err(e) => Err(ServiceError::Internal(e.to_string()).into()),
        }
    }
}

pub struct Admin {
    pub backend: Backend,
    /// Key of the hash that stands for user ids in logs.
    pub pseudonym_key: Vec<u8>,
    /// The configured rule pack directory (empty: the embedded pack).
    pub rules_dir: String,
}

#[tonic::async_trait]
impl pb::admin_service_server::AdminService for Admin {
    async fn get_pair(
        &self,
        request: Request<pb::GetPairRequest>,
    ) -> Result<Response<pb::PairSummary>, Status> {
        let req = request.into_inner();
        if req.user_a.is_empty() || req.user_b.is_empty() {
            return Err(
                ServiceError::InvalidArgument("user_a and user_b are required".into()).into(),
            );
        }
        let tenant = if req.tenant.is_empty() {
            crate::event::DEFAULT_TENANT.to_string()
        } else {
            req.tenant
        };
        let state = self
            .backend
            .local()?
            .pair(&tenant, &req.user_a, &req.user_b)
            .await
            .ok_or_else(|| ServiceError::NotFound("no state for this pair".into()))?;
        Ok(Response::new(super::summary::pair_summary(
            &tenant,
            &req.user_a,
            &req.user_b,
            &state,
        )))
    }

    async fn reload_rules(
        &self,
        request: Request<pb::ReloadRulesRequest>,
    ) -> Result<Response<pb::ReloadRulesResponse>, Status> {
        let dir = Some(request.into_inner().dir)
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| self.rules_dir.clone());
        let version = super::reload_rules(&self.backend, &dir).await?;
        Ok(Response::new(pb::ReloadRulesResponse {
            rules_version: version,
        }))
    }

    async fn forget_user(
        &self,
        request: Request<pb::ForgetUserRequest>,
    ) -> Result<Response<pb::ForgetUserResponse>, Status> {
        let user = request.into_inner().user_id;
        if user.is_empty() {
            return Err(ServiceError::InvalidArgument("user_id is required".into()).into());
        }
        let pipeline = self.backend.local()?;
        let (reply, replies) = std::sync::mpsc::channel();
        pipeline
            .append(
                Route::Forget {
                    user: user.clone(),
                    reply,
                },
                user.as_bytes().to_vec(),
            )
            .await?;
        let shards = pipeline.shard_count();
        let (pairs, alerts) = tokio::task::spawn_blocking(move || {
            replies
                .iter()
                .take(shards)
                .fold((0, 0), |(p, a), (dp, da)| (p + dp, a + da))
        })
        .await
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
        // A checkpoint now, so the log segments holding the user's messages are deleted.
        pipeline.checkpoint().await?;
        tracing::info!(user = %super::pseudonym(&self.pseudonym_key, &user), pairs, alerts, "user forgotten");
        Ok(Response::new(pb::ForgetUserResponse {
            pairs_removed: pairs as u32,
            alerts_removed: alerts as u32,
        }))
    }
}

impl Pipeline {
    /// Logs a command and waits until it is durable and routed.
    pub async fn append(&self, route: Route, payload: Vec<u8>) -> Result<u64, ServiceError> {
        let (ack, rx) = oneshot::channel();
        self.commands
            .send_timeout(
                Command::Append {
                    route,
                    payload,
                    ack: Some(ack),
                },
                INTAKE_WAIT,
            )
            .await
            .map_err(|e| match e {
                mpsc::error::SendTimeoutError::Timeout(_) => ServiceError::Saturated,
                mpsc::error::SendTimeoutError::Closed(_) => ServiceError::ShuttingDown,
            })?;
        rx.await
            .map_err(|_| ServiceError::ShuttingDown)?
            .map_err(ServiceError::Internal)
    }

    /// Checkpoints every shard now; returns the log position.
    pub async fn checkpoint(&self) -> Result<u64, ServiceError> {
        let (done, rx) = oneshot::channel();
        self.commands
            .send(Command::Checkpoint { done: Some(done) })
            .await
            .map_err(|_| ServiceError::ShuttingDown)?;
        rx.await
            .map_err(|_| ServiceError::ShuttingDown)?
            .map_err(ServiceError::Internal)
    }
}
