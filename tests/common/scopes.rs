//! Tenant scopes, the same against a server in either mode (embedded or Kafka). Two
//! tenants each have a sextortion alert; tokens of every role are scoped either to
//! tenant A or to every tenant. The table calls every RPC with each role, on the
//! caller's own tenant, on the other tenant, and with an every-tenant token, and checks
//! the answer: served, refused per event (`tenant_not_allowed`), `PERMISSION_DENIED`, or
//! `NOT_FOUND` worded as for something that does not exist.

use super::desk::event;
use pairwatch::config::{Auth, TokenGrant};
use pairwatch::proto::pb;
use prost::Message;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio_stream::StreamExt;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

pub const A: &str = "tenant-a";
pub const B: &str = "tenant-b";
pub const ROLES: [&str; 3] = ["ingest", "moderator", "admin"];

/// The token of `role` scoped to tenant A (`"a"`) or to every tenant (`"all"`).
pub fn token(role: &str, scope: &str) -> String {
    format!("{role}-{scope}-scoped-token-0123")
}

/// Adds the six tokens (three roles, two scopes) to `auth`.
pub fn configure(auth: &mut Auth) {
    for role in ROLES {
        for (scope, tenants) in [("a", A), ("all", "*")] {
            auth.tokens.push(TokenGrant {
                name: format!("{role}-{scope}"),
                token: token(role, scope),
                role: role.into(),
                tenants: vec![tenants.into()],
                ..TokenGrant::default()
            });
        }
    }
}

pub fn authed<T>(msg: T, token: &str) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert(
        "authorization",
        MetadataValue::try_from(format!("Bearer {token}")).unwrap(),
    );
    r
}

/// The suspect and teen of a tenant, and a word only that tenant's messages hold.
pub fn people(tenant: &str) -> (String, String, &'static str) {
    let (s, t) = (format!("{tenant}-suspect"), format!("{tenant}-teen"));
    match tenant {
        A => (s, t, "Maëlle"),
        _ => (s, t, "Ysolde"),
    }
}

/// A sextortion in `tenant`: a flattering image request, the image, a recording
/// claim with a money demand and a threat to send it to the teen's friends.
fn sextortion(tenant: &str) -> Vec<pb::ChatEvent> {
    let (suspect, teen, word) = people(tenant);
    let (s, v) = ((suspect.as_str(), "ADULT"), (teen.as_str(), "AGE_13_15"));
    let id = |n: u32| format!("{suspect}-e{n}");
    vec![
        event(
            tenant,
            &id(1),
            "2026-03-01T20:00:00Z",
            s,
            v,
            &format!("t'es trop mignonne {word}, envoie une photo de toi"),
        ),
        event(tenant, &id(2), "2026-03-01T20:05:00Z", v, s, ""),
        event(
            tenant,
            &id(3),
            "2026-03-01T20:06:00Z",
            s,
            v,
            &format!(
                "j'ai tout enregistré {word}. envoie 200€ en PCS sinon j'envoie tout à tes potes"
            ),
        ),
    ]
}

/// Each tenant's alert, as an every-tenant moderator sees it.
pub struct Seeded {
    pub a: pb::Alert,
    pub b: pb::Alert,
}

impl Seeded {
    /// Strings only tenant B's alert holds: what no tenant-A caller may be shown.
    pub fn b_markers(&self) -> Vec<String> {
        let (suspect, teen, word) = people(B);
        let mut m = vec![
            self.b.alert_id.clone(),
            suspect,
            teen,
            word.to_string(),
            B.to_string(),
        ];
        // Hashes of texts only B's messages hold (an image's empty text is A's too).
        let a_hashes: Vec<&String> = self.a.evidence.iter().map(|e| &e.sha256).collect();
        m.extend(
            self.b
                .evidence
                .iter()
                .map(|e| e.sha256.clone())
                .filter(|h| !a_hashes.contains(&h)),
        );
        m
    }
}

/// Publishes both tenants' sextortions and waits until the desk lists both alerts.
pub async fn seed(ch: &Channel, within: Duration) -> Seeded {
    let mut ingest = pb::ingest_service_client::IngestServiceClient::new(ch.clone());
    let mut events = sextortion(A);
    events.extend(sextortion(B));
    let acks = ingest
        .publish_batch(authed(
            pb::PublishBatchRequest { events },
            &token("ingest", "all"),
        ))
        .await
        .unwrap()
        .into_inner()
        .results;
    assert!(acks.iter().all(|a| a.accepted), "{acks:?}");
    let mut alerts = pb::alert_service_client::AlertServiceClient::new(ch.clone());
    let start = Instant::now();
    loop {
        let open: Vec<pb::Alert> = alerts
            .list_open(authed(
                pb::ListOpenRequest::default(),
                &token("moderator", "all"),
            ))
            .await
            .unwrap()
            .into_inner()
            .alerts
            .into_iter()
            .filter_map(|e| e.alert)
            .collect();
        let of = |tenant: &str| open.iter().find(|a| a.tenant == tenant).cloned();
        if let (Some(a), Some(b)) = (of(A), of(B)) {
            assert!(
                b.evidence.iter().any(|e| e.excerpt.contains(people(B).2)),
                "B's marker word is in its evidence: {b:?}"
            );
            return Seeded { a, b };
        }
        assert!(
            start.elapsed() < within,
            "both tenants' alerts not listed: {open:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rpc {
    Publish,
    PublishBatch,
    Subscribe,
    ListOpen,
    GetPair,
    Claim,
    Resolve,
    ReloadRules,
    ForgetUser,
}

impl Rpc {
    const ALL: [Rpc; 9] = [
        Rpc::Publish,
        Rpc::PublishBatch,
        Rpc::Subscribe,
        Rpc::ListOpen,
        Rpc::GetPair,
        Rpc::Claim,
        Rpc::Resolve,
        Rpc::ReloadRules,
        Rpc::ForgetUser,
    ];

    /// The roles its service takes (admin takes every service).
    fn roles(self) -> &'static [&'static str] {
        match self {
            Rpc::Publish | Rpc::PublishBatch => &["ingest", "admin"],
            Rpc::Subscribe | Rpc::ListOpen | Rpc::Claim | Rpc::Resolve => &["moderator", "admin"],
            Rpc::GetPair | Rpc::ReloadRules | Rpc::ForgetUser => &["admin"],
        }
    }
}

/// Whom a call is about, seen from the caller's token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// A tenant-A token on tenant A.
    Own,
    /// A tenant-A token on tenant B.
    Other,
    /// An every-tenant token on tenant B.
    Every,
}

impl Target {
    fn scope(self) -> &'static str {
        match self {
            Target::Own | Target::Other => "a",
            Target::Every => "all",
        }
    }

    fn tenant(self) -> &'static str {
        match self {
            Target::Own => A,
            Target::Other | Target::Every => B,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Served,
    /// The event was answered `accepted: false`, `tenant_not_allowed`.
    EventRefused,
    PermissionDenied,
    NotFound,
}

/// What the table expects of `rpc` called by `role` on `target`.
pub fn expected(rpc: Rpc, role: &str, target: Target) -> Outcome {
    if !rpc.roles().contains(&role) {
        return Outcome::PermissionDenied;
    }
    match (rpc, target) {
        // Only an admin of every tenant changes the rules of all.
        (Rpc::ReloadRules, Target::Own | Target::Other) => Outcome::PermissionDenied,
        (_, Target::Own) => Outcome::Served,
        (_, Target::Every) => Outcome::Served,
        (Rpc::Publish | Rpc::PublishBatch, Target::Other) => Outcome::EventRefused,
        (Rpc::Subscribe | Rpc::ListOpen, Target::Other) => Outcome::PermissionDenied,
        (Rpc::GetPair | Rpc::Claim | Rpc::Resolve | Rpc::ForgetUser, Target::Other) => {
            Outcome::NotFound
        }
    }
}

fn outcome_of(status: &Status) -> Outcome {
    match status.code() {
        Code::PermissionDenied => Outcome::PermissionDenied,
        Code::NotFound => Outcome::NotFound,
        _ => panic!("unexpected status: {status:?}"),
    }
}

/// One call's answer: its outcome, and the alert ids it showed.
struct Answer {
    outcome: Outcome,
    alert_ids: Vec<String>,
    /// The status message, when refused.
    message: String,
}

impl Answer {
    fn served(alert_ids: Vec<String>) -> Answer {
        Answer {
            outcome: Outcome::Served,
            alert_ids,
            message: String::new(),
        }
    }

    fn from_status(s: &Status) -> Answer {
        Answer {
            outcome: outcome_of(s),
            alert_ids: Vec::new(),
            message: s.message().to_string(),
        }
    }
}

/// The alerts a `Subscribe` from the beginning shows within `quiet` of the last one.
pub async fn subscribed(
    ch: &Channel,
    token: &str,
    req: pb::SubscribeRequest,
    quiet: Duration,
) -> Result<Vec<pb::AlertEnvelope>, Status> {
    let mut alerts = pb::alert_service_client::AlertServiceClient::new(ch.clone());
    let mut stream = alerts.subscribe(authed(req, token)).await?.into_inner();
    let mut seen = Vec::new();
    while let Ok(Some(item)) = tokio::time::timeout(quiet, stream.next()).await {
        seen.push(item?);
    }
    Ok(seen)
}

struct Table<'a> {
    ch: Channel,
    seeded: &'a Seeded,
    /// Numbers the events the table publishes.
    published: u32,
}

impl Table<'_> {
    fn alert_of(&self, tenant: &str) -> &pb::Alert {
        if tenant == A {
            &self.seeded.a
        } else {
            &self.seeded.b
        }
    }

    async fn call(&mut self, rpc: Rpc, role: &str, target: Target) -> Answer {
        let token = token(role, target.scope());
        let tenant = target.tenant();
        let ch = self.ch.clone();
        let mut ingest = pb::ingest_service_client::IngestServiceClient::new(ch.clone());
        let mut alerts = pb::alert_service_client::AlertServiceClient::new(ch.clone());
        let mut admin = pb::admin_service_client::AdminServiceClient::new(ch.clone());
        let alert_id = self.alert_of(tenant).alert_id.clone();
        let (suspect, teen, _) = people(tenant);
        let answer = |r: Result<Vec<String>, Status>| match r {
            Ok(ids) => Answer::served(ids),
            Err(s) => Answer::from_status(&s),
        };
        match rpc {
            Rpc::Publish | Rpc::PublishBatch => {
                self.published += 1;
                let ev = event(
                    tenant,
                    &format!("scope-e{}", self.published),
                    "2026-03-01T21:00:00Z",
                    ("scope-u1", "ADULT"),
                    ("scope-u2", "ADULT"),
                    "on fait une partie ce soir ?",
                );
                if rpc == Rpc::PublishBatch {
                    let r = ingest
                        .publish_batch(authed(pb::PublishBatchRequest { events: vec![ev] }, &token))
                        .await;
                    return match r {
                        Ok(r) => ack_answer(&r.into_inner().results[0]),
                        Err(s) => Answer::from_status(&s),
                    };
                }
                match ingest
                    .publish(authed(tokio_stream::iter(vec![ev]), &token))
                    .await
                {
                    Ok(r) => match r.into_inner().next().await {
                        Some(Ok(ack)) => ack_answer(&ack),
                        Some(Err(s)) => Answer::from_status(&s),
                        None => panic!("no ack"),
                    },
                    Err(s) => Answer::from_status(&s),
                }
            }
            Rpc::Subscribe => {
                let req = pb::SubscribeRequest {
                    tenant: tenant.into(),
                    from_beginning: true,
                    ..Default::default()
                };
                answer(
                    subscribed(&ch, &token, req, Duration::from_millis(500))
                        .await
                        .map(|seen| {
                            seen.into_iter()
                                .filter_map(|e| e.alert.map(|a| a.alert_id))
                                .collect()
                        }),
                )
            }
            Rpc::ListOpen => answer(
                alerts
                    .list_open(authed(
                        pb::ListOpenRequest {
                            tenant: tenant.into(),
                            ..Default::default()
                        },
                        &token,
                    ))
                    .await
                    .map(|r| {
                        r.into_inner()
                            .alerts
                            .into_iter()
                            .filter_map(|e| e.alert.map(|a| a.alert_id))
                            .collect()
                    }),
            ),
            Rpc::GetPair => {
                let req = pb::GetPairRequest {
                    tenant: tenant.into(),
                    user_a: suspect,
                    user_b: teen,
                };
                // In Kafka mode the pair is read back from the changelog, written with
                // (not before) the alert.
                let start = Instant::now();
                loop {
                    let got = admin.get_pair(authed(req.clone(), &token)).await;
                    match got {
                        Err(s)
                            if s.code() == Code::NotFound
                                && expected(rpc, role, target) == Outcome::Served
                                && start.elapsed() < Duration::from_secs(15) =>
                        {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        other => break answer(other.map(|_| Vec::new())),
                    }
                }
            }
            Rpc::Claim => answer(
                alerts
                    .claim(authed(
                        pb::ClaimRequest {
                            alert_id,
                            moderator_id: "mod-scope".into(),
                            release: false,
                        },
                        &token,
                    ))
                    .await
                    .map(|_| Vec::new()),
            ),
            Rpc::Resolve => answer(
                alerts
                    .resolve(authed(
                        pb::ResolveRequest {
                            alert_id,
                            moderator_id: "mod-scope".into(),
                            decision: pb::Decision::Confirmed as i32,
                            reason_code: String::new(),
                        },
                        &token,
                    ))
                    .await
                    .map(|_| Vec::new()),
            ),
            Rpc::ReloadRules => answer(
                admin
                    .reload_rules(authed(pb::ReloadRulesRequest::default(), &token))
                    .await
                    .map(|_| Vec::new()),
            ),
            Rpc::ForgetUser => {
                // Served calls erase someone who never wrote; a refused one names the
                // other tenant's suspect, who must stay.
                let user = if target == Target::Other {
                    suspect
                } else {
                    "scope-nobody".to_string()
                };
                answer(
                    admin
                        .forget_user(authed(
                            pb::ForgetUserRequest {
                                user_id: user,
                                tenant: tenant.into(),
                            },
                            &token,
                        ))
                        .await
                        .map(|r| {
                            assert_eq!(r.into_inner().pairs_removed, 0);
                            Vec::new()
                        }),
                )
            }
        }
    }

    /// The answer to `rpc` on something that does not exist, for comparing wordings.
    async fn on_nothing(&self, rpc: Rpc, token: &str) -> Status {
        let mut alerts = pb::alert_service_client::AlertServiceClient::new(self.ch.clone());
        let mut admin = pb::admin_service_client::AdminServiceClient::new(self.ch.clone());
        match rpc {
            Rpc::Claim => alerts
                .claim(authed(
                    pb::ClaimRequest {
                        alert_id: "no-such-alert".into(),
                        moderator_id: "mod-scope".into(),
                        release: false,
                    },
                    token,
                ))
                .await
                .map(|_| ())
                .unwrap_err(),
            Rpc::Resolve => alerts
                .resolve(authed(
                    pb::ResolveRequest {
                        alert_id: "no-such-alert".into(),
                        moderator_id: "mod-scope".into(),
                        decision: pb::Decision::Confirmed as i32,
                        reason_code: String::new(),
                    },
                    token,
                ))
                .await
                .map(|_| ())
                .unwrap_err(),
            Rpc::GetPair => admin
                .get_pair(authed(
                    pb::GetPairRequest {
                        tenant: A.into(),
                        user_a: "scope-nobody".into(),
                        user_b: "scope-nobody-2".into(),
                    },
                    token,
                ))
                .await
                .map(|_| ())
                .unwrap_err(),
            _ => unreachable!("only alerts and pairs can be missing"),
        }
    }
}

fn ack_answer(ack: &pb::PublishAck) -> Answer {
    if ack.accepted {
        return Answer::served(Vec::new());
    }
    assert_eq!(ack.reason_code, "tenant_not_allowed", "{ack:?}");
    Answer {
        outcome: Outcome::EventRefused,
        alert_ids: Vec::new(),
        message: ack.reason.clone(),
    }
}

/// Runs the whole table; then checks the denials were counted.
pub async fn run_table(ch: Channel, http: SocketAddr, seeded: &Seeded) {
    let mut table = Table {
        ch,
        seeded,
        published: 0,
    };
    let mut rows = 0;
    for rpc in Rpc::ALL {
        for role in ROLES {
            for target in [Target::Other, Target::Own, Target::Every] {
                let want = expected(rpc, role, target);
                let got = table.call(rpc, role, target).await;
                assert_eq!(
                    got.outcome, want,
                    "{rpc:?} by {role} on {target:?}: {}",
                    got.message
                );
                rows += 1;
                if want != Outcome::Served {
                    continue;
                }
                // What a served listing shows: the target's alert, and nothing outside
                // the token's tenants.
                if matches!(rpc, Rpc::Subscribe | Rpc::ListOpen) {
                    let own = table.alert_of(target.tenant()).alert_id.clone();
                    assert!(got.alert_ids.contains(&own), "{rpc:?} {role} {target:?}");
                    assert!(
                        target == Target::Every || !got.alert_ids.contains(&seeded.b.alert_id),
                        "{rpc:?} by {role} on {target:?} showed B's alert"
                    );
                }
            }
            if expected(rpc, role, Target::Other) == Outcome::NotFound && rpc != Rpc::ForgetUser {
                // Worded as for something that does not exist.
                let got = table.call(rpc, role, Target::Other).await;
                let nothing = table.on_nothing(rpc, &token(role, "a")).await;
                assert_eq!(nothing.code(), Code::NotFound);
                assert_eq!(
                    got.message.replace(&seeded.b.alert_id, "ID"),
                    nothing.message().replace("no-such-alert", "ID"),
                    "{rpc:?}"
                );
            }
        }
    }
    assert_eq!(rows, 81);
    // Unfiltered listings by a tenant-A token show A's alert, never B's.
    let a_moderator = token("moderator", "a");
    let seen = subscribed(
        &table.ch,
        &a_moderator,
        pb::SubscribeRequest {
            from_beginning: true,
            ..Default::default()
        },
        Duration::from_millis(500),
    )
    .await
    .unwrap();
    assert!(!seen.is_empty() && seen.iter().all(|e| e.alert.as_ref().unwrap().tenant == A));

    let text = super::http_get(http, "/metrics").await.1;
    let denied = |reason: &str| {
        pairwatch::metrics::sample_sum(
            &text,
            &format!("pairwatch_auth_denied_total{{reason=\"{reason}\"}}"),
        )
    };
    // On the other tenant: two publish RPCs, Subscribe and ListOpen, by two roles
    // each; GetPair (admin), Claim and Resolve (two roles), each twice for the wording
    // check; ForgetUser (admin).
    assert!(
        denied("tenant_not_allowed") >= (4 + 4 + 2 + 4 + 4 + 1) as f64,
        "{text}"
    );
    assert!(denied("role_not_allowed") >= 1.0, "{text}");
    assert_eq!(denied("global_admin_only"), 2.0, "{text}");
    assert!(!text.contains(B), "no tenant in metrics");
}

/// Every byte a response carries, for looking for another tenant's strings in it.
pub fn bytes_of<M: Message>(r: &Result<tonic::Response<M>, Status>) -> Vec<u8> {
    match r {
        Ok(m) => m.get_ref().encode_to_vec(),
        Err(s) => [s.message().as_bytes(), s.details()].concat(),
    }
}
