//! The moderators' loop, the same against a server in either mode (embedded or Kafka):
//! an alert is raised, claimed by one moderator and refused to another, resolved as a
//! false positive; the same pair's next threat of the same pattern raises nothing.

use pairwatch::detect::event::{Event, Limits};
use pairwatch::proto::pb;
use std::time::{Duration, Instant};
use tokio_stream::StreamExt;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Code, Request};

/// A server's channel and the tokens of its roles (`None`: authentication off).
#[derive(Clone)]
pub struct Desk {
    pub ch: Channel,
    pub ingest: Option<String>,
    pub moderator: Option<String>,
}

fn authed<T>(msg: T, token: &Option<String>) -> Request<T> {
    let mut r = Request::new(msg);
    if let Some(t) = token {
        r.metadata_mut().insert(
            "authorization",
            MetadataValue::try_from(format!("Bearer {t}")).unwrap(),
        );
    }
    r
}

/// One event of `tenant` (an image when `text` is empty), as the gRPC API takes it.
pub fn event(
    tenant: &str,
    id: &str,
    at: &str,
    from: (&str, &str),
    to: (&str, &str),
    text: &str,
) -> pb::ChatEvent {
    let line = if text.is_empty() {
        super::image(id, at, from, to)
    } else {
        super::msg(id, at, from, to, text)
    };
    let mut e = Event::from_json(&line, &Limits::default()).unwrap();
    e.tenant = tenant.into();
    pb::ChatEvent::from(&e)
}

pub const TENANT: &str = "desk";

/// A sextortion of a teen by `suspect`: the first three events raise the alert, the
/// fourth (a countdown) would raise the same pattern again, the fifth (the teen's
/// self-harm talk) raises another pattern.
fn conversation(suspect: &str, teen: &str) -> Vec<pb::ChatEvent> {
    let s = (suspect, "ADULT");
    let v = (teen, "AGE_13_15");
    let id = |n: u32| format!("{suspect}-e{n}");
    vec![
        event(
            TENANT,
            &id(1),
            "2026-03-01T20:00:00Z",
            s,
            v,
            "t'es trop mignon, envoie une photo de toi",
        ),
        event(TENANT, &id(2), "2026-03-01T20:05:00Z", v, s, ""),
        event(
            TENANT,
            &id(3),
            "2026-03-01T20:06:00Z",
            s,
            v,
            "j'ai tout enregistré. envoie 200€ en PCS sinon j'envoie tout à tes potes",
        ),
        event(TENANT, &id(4), "2026-03-01T20:07:00Z", s, v, "t'as 1h"),
        event(
            TENANT,
            &id(5),
            "2026-03-01T20:09:00Z",
            v,
            s,
            "je vais me tuer",
        ),
    ]
}

impl Desk {
    fn alerts(&self) -> pb::alert_service_client::AlertServiceClient<Channel> {
        pb::alert_service_client::AlertServiceClient::new(self.ch.clone())
    }

    pub async fn publish(&self, events: Vec<pb::ChatEvent>) {
        let mut client = pb::ingest_service_client::IngestServiceClient::new(self.ch.clone());
        let acks: Vec<pb::PublishAck> = client
            .publish(authed(tokio_stream::iter(events), &self.ingest))
            .await
            .unwrap()
            .into_inner()
            .map(|a| a.unwrap())
            .collect()
            .await;
        assert!(acks.iter().all(|a| a.accepted), "{acks:?}");
    }

    pub async fn list(
        &self,
        req: pb::ListOpenRequest,
    ) -> Result<pb::ListOpenResponse, tonic::Status> {
        let req = pb::ListOpenRequest {
            tenant: TENANT.into(),
            ..req
        };
        Ok(self
            .alerts()
            .list_open(authed(req, &self.moderator))
            .await?
            .into_inner())
    }

    /// The open alerts of the desk tenant, waiting (up to `within`) until `pred` holds.
    pub async fn open_until(
        &self,
        within: Duration,
        pred: impl Fn(&[pb::Alert]) -> bool,
    ) -> Vec<pb::Alert> {
        let start = Instant::now();
        loop {
            let open: Vec<pb::Alert> = self
                .list(pb::ListOpenRequest::default())
                .await
                .unwrap()
                .alerts
                .into_iter()
                .filter_map(|e| e.alert)
                .collect();
            if pred(&open) || start.elapsed() > within {
                return open;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn claim(
        &self,
        alert_id: &str,
        moderator: &str,
        release: bool,
    ) -> Result<pb::ClaimResponse, tonic::Status> {
        let req = pb::ClaimRequest {
            alert_id: alert_id.into(),
            moderator_id: moderator.into(),
            release,
        };
        Ok(self
            .alerts()
            .claim(authed(req, &self.moderator))
            .await?
            .into_inner())
    }

    pub async fn resolve(
        &self,
        alert_id: &str,
        moderator: &str,
        decision: pb::Decision,
        reason: &str,
    ) -> Result<(), tonic::Status> {
        let req = pb::ResolveRequest {
            alert_id: alert_id.into(),
            moderator_id: moderator.into(),
            decision: decision as i32,
            reason_code: reason.into(),
        };
        self.alerts()
            .resolve(authed(req, &self.moderator))
            .await
            .map(|_| ())
    }

    /// Publishes the first three events of `suspect`'s conversation and returns the
    /// SEXTORTION alert they raise, once the desk lists it.
    pub async fn raise(&self, suspect: &str, teen: &str, within: Duration) -> pb::Alert {
        self.publish(conversation(suspect, teen)[..3].to_vec())
            .await;
        let of_suspect = |a: &pb::Alert| a.suspect.as_ref().is_some_and(|s| s.user_id == suspect);
        let open = self
            .open_until(within, |open| open.iter().any(of_suspect))
            .await;
        open.into_iter()
            .find(of_suspect)
            .unwrap_or_else(|| panic!("no alert listed for {suspect} within {within:?}"))
    }

    /// Two moderators on one alert: the first claims it; the second can neither claim
    /// nor resolve it, and is told who holds it; the claim shows in ListOpen; the holder
    /// resolves it as a false positive, which closes it.
    pub async fn claim_conflict_then_false_positive(&self, alert_id: &str) {
        let held = self.claim(alert_id, "mod-ana", false).await.unwrap();
        let claim = held.claim.unwrap();
        assert_eq!(claim.moderator_id, "mod-ana");
        let expires = claim.expires_at.unwrap().seconds;
        let now = pairwatch::detect::time::now_millis() / 1000;
        assert!(
            (now + 540..=now + 610).contains(&expires),
            "a 10-minute lease: {expires} vs {now}"
        );
        for refused in [
            self.claim(alert_id, "mod-ben", false).await.map(|_| ()),
            self.resolve(alert_id, "mod-ben", pb::Decision::Confirmed, "")
                .await,
            self.claim(alert_id, "mod-ben", true).await.map(|_| ()),
        ] {
            let e = refused.unwrap_err();
            assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
            assert!(
                e.message().contains("\"mod-ana\""),
                "names the holder: {}",
                e.message()
            );
        }
        let claimed = self
            .list(pb::ListOpenRequest {
                claimed: pb::ClaimFilter::Claimed as i32,
                ..Default::default()
            })
            .await
            .unwrap();
        let mine = claimed
            .alerts
            .iter()
            .find(|e| e.alert.as_ref().unwrap().alert_id == alert_id)
            .expect("listed as claimed");
        assert_eq!(mine.claim.as_ref().unwrap().moderator_id, "mod-ana");
        assert!(claimed.alerts.iter().all(|e| e.claim.is_some()));
        let unclaimed = self
            .list(pb::ListOpenRequest {
                claimed: pb::ClaimFilter::Unclaimed as i32,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(unclaimed
            .alerts
            .iter()
            .all(|e| e.alert.as_ref().unwrap().alert_id != alert_id));
        let bad = self
            .resolve(
                alert_id,
                "mod-ana",
                pb::Decision::FalsePositive,
                "He said it's a joke",
            )
            .await
            .unwrap_err();
        assert_eq!(bad.code(), Code::InvalidArgument);
        self.resolve(alert_id, "mod-ana", pb::Decision::FalsePositive, "banter")
            .await
            .unwrap();
        let again = self
            .resolve(alert_id, "mod-ana", pb::Decision::Confirmed, "")
            .await
            .unwrap_err();
        assert_eq!(again.code(), Code::FailedPrecondition);
        let open = self
            .open_until(Duration::from_secs(30), |open| {
                open.iter().all(|a| a.alert_id != alert_id)
            })
            .await;
        assert!(open.iter().all(|a| a.alert_id != alert_id), "closed");
    }

    /// The rest of the conversation: the countdown raises no new SEXTORTION alert (the
    /// false positive holds), the self-harm talk after it raises its own alert, which
    /// shows the countdown was processed.
    pub async fn no_re_alert_after_false_positive(
        &self,
        suspect: &str,
        teen: &str,
        within: Duration,
    ) {
        self.publish(conversation(suspect, teen)[3..].to_vec())
            .await;
        let of_suspect = |a: &pb::Alert| a.suspect.as_ref().is_some_and(|s| s.user_id == suspect);
        let self_harm = pb::Pattern::SelfHarmRisk as i32;
        let open = self
            .open_until(within, |open| {
                open.iter().any(|a| of_suspect(a) && a.pattern == self_harm)
            })
            .await;
        let patterns: Vec<i32> = open
            .iter()
            .filter(|a| of_suspect(a))
            .map(|a| a.pattern)
            .collect();
        assert_eq!(
            patterns,
            [self_harm],
            "only the self-harm alert is open: {open:?}"
        );
    }
}
