//! A small gRPC client for people and scripts: `pairwatch publish` streams a JSONL file
//! of events to a running service, `pairwatch subscribe` prints its alerts as JSONL,
//! `pairwatch claim` and `pairwatch resolve` act on one alert.

use crate::detect::event::{Event, Limits};
use crate::proto::pb;
use crate::replay::LineReader;
use std::io::{BufRead, Write};
use tokio_stream::StreamExt;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::Request;

/// Adds `authorization: Bearer <token>` when a token is given.
pub fn with_token<T>(msg: T, token: Option<&str>) -> anyhow::Result<Request<T>> {
    let mut r = Request::new(msg);
    if let Some(t) = token {
        r.metadata_mut().insert(
            "authorization",
            MetadataValue::try_from(format!("Bearer {t}"))?,
        );
    }
    Ok(r)
}

pub async fn connect(addr: &str) -> anyhow::Result<Channel> {
    let url = if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    };
    Ok(Channel::from_shared(url)?.connect().await?)
}

/// What a publish did.
#[derive(Debug, Default)]
pub struct Published {
    pub accepted: u64,
    pub rejected: u64,
}

/// Streams the events of `input` (JSONL) to the service; bad lines (not JSON events, not
/// UTF-8, over `max_line_bytes`) are reported on stderr with their number and not sent.
pub async fn publish<R: BufRead + Send + 'static>(
    ch: Channel,
    token: Option<&str>,
    input: R,
    max_line_bytes: usize,
) -> anyhow::Result<Published> {
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::ChatEvent>(1024);
    let reader = tokio::task::spawn_blocking(move || -> anyhow::Result<u64> {
        let mut bad = 0;
        let mut lines = LineReader::new(input, max_line_bytes);
        while let Some((number, line)) = lines.next_line()? {
            let event = line.and_then(|l| {
                if l.trim().is_empty() {
                    Ok(None)
                } else {
                    Ok(Some(Event::from_json(l, &Limits::default())?))
                }
            });
            match event {
                Ok(None) => {}
                Ok(Some(e)) => {
                    if tx.blocking_send(pb::ChatEvent::from(&e)).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    bad += 1;
                    eprintln!("line {number}: not sent: {e}");
                }
            }
        }
        Ok(bad)
    });
    let mut client = pb::ingest_service_client::IngestServiceClient::new(ch);
    let mut acks = client
        .publish(with_token(
            tokio_stream::wrappers::ReceiverStream::new(rx),
            token,
        )?)
        .await?
        .into_inner();
    let mut out = Published::default();
    while let Some(ack) = acks.next().await {
        let ack = ack?;
        if ack.accepted {
            out.accepted += 1;
        } else {
            out.rejected += 1;
            eprintln!("event {:?} rejected: {}", ack.event_id, ack.reason);
        }
    }
    out.rejected += reader.await??;
    Ok(out)
}

/// Prints alerts as JSON lines (the alert contract plus its `cursor`) until the stream ends.
pub async fn subscribe(
    ch: Channel,
    token: Option<&str>,
    req: pb::SubscribeRequest,
    mut out: impl Write,
) -> anyhow::Result<()> {
    let mut client = pb::alert_service_client::AlertServiceClient::new(ch);
    let mut stream = client
        .subscribe(with_token(req, token)?)
        .await?
        .into_inner();
    while let Some(env) = stream.next().await {
        let env = env?;
        let Some(alert) = env.alert else { continue };
        let alert = crate::proto::alert_from_proto(&alert).map_err(anyhow::Error::msg)?;
        let mut line = serde_json::to_value(&alert)?;
        if let Some(obj) = line.as_object_mut() {
            obj.insert("cursor".into(), env.cursor.into());
        }
        writeln!(out, "{line}")?;
        out.flush()?;
    }
    Ok(())
}

/// Claims (or releases) an alert; returns the claim as a JSON line (`{}` after a release).
pub async fn claim(
    ch: Channel,
    token: Option<&str>,
    req: pb::ClaimRequest,
) -> anyhow::Result<String> {
    let mut client = pb::alert_service_client::AlertServiceClient::new(ch);
    let claim = client
        .claim(with_token(req, token)?)
        .await
        .map_err(status_error)?
        .into_inner()
        .claim;
    let line = match claim {
        Some(c) => serde_json::json!({
            "moderator_id": c.moderator_id,
            "expires_at": c.expires_at.as_ref().map(crate::proto::rfc3339),
        }),
        None => serde_json::json!({}),
    };
    Ok(line.to_string())
}

/// Resolves an alert.
pub async fn resolve(
    ch: Channel,
    token: Option<&str>,
    req: pb::ResolveRequest,
) -> anyhow::Result<()> {
    let mut client = pb::alert_service_client::AlertServiceClient::new(ch);
    client
        .resolve(with_token(req, token)?)
        .await
        .map_err(status_error)?;
    Ok(())
}

/// A refused call as its code and the service's message, for people.
fn status_error(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", s.code(), s.message())
}
