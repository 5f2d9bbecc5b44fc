//! End-to-end tests of `pairwatch serve`: a real server on port 0, a tonic client.

mod common;

use pairwatch::config::Config;
use pairwatch::detect::event::{Event, Limits};
use pairwatch::proto::pb;
use pairwatch::server::{start, Running};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio_stream::StreamExt;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Code, Request, Response};

const INGEST: &str = "ingest-token-0123456789";
const MODERATOR: &str = "moderator-token-0123456789";
const ADMIN: &str = "admin-token-0123456789";

fn data_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pw-serve-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn config(dir: &Path) -> Config {
    let mut c = Config::default();
    c.server.grpc_addr = "127.0.0.1:0".into();
    c.server.http_addr = "127.0.0.1:0".into();
    c.server.data_dir = dir.display().to_string();
    c.server.shutdown_grace = "5s".into();
    c.shards.count = 2;
    c.auth.ingest_tokens = vec![INGEST.into()];
    c.auth.moderator_tokens = vec![MODERATOR.into()];
    c.auth.admin_tokens = vec![ADMIN.into()];
    // These conversations are dated in the past: the wall clock would pass their
    // deadlines at its first tick. The test of that sets its own period.
    c.engine.deadline_clock = "1h".into();
    c
}

fn authed<T>(msg: T, token: &str) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert(
        "authorization",
        MetadataValue::try_from(format!("Bearer {token}")).unwrap(),
    );
    r
}

async fn channel(s: &Running) -> Channel {
    Channel::from_shared(format!("http://{}", s.grpc_addr))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

fn pb_event(line: &str) -> pb::ChatEvent {
    pb::ChatEvent::from(&Event::from_json(line, &Limits::default()).unwrap())
}

fn sextortion() -> Vec<pb::ChatEvent> {
    let s = ("u-scam", "ADULT");
    let v = ("u-teen", "AGE_13_15");
    vec![
        pb_event(&common::msg(
            "e1",
            "2026-03-01T20:00:00Z",
            s,
            v,
            "t'es trop mignon, envoie une photo de toi",
        )),
        pb_event(&common::image("e2", "2026-03-01T20:05:00Z", v, s)),
        pb_event(&common::msg(
            "e3",
            "2026-03-01T20:06:00Z",
            s,
            v,
            "j'ai tout enregistré. envoie 200€ en PCS sinon j'envoie tout à tes potes",
        )),
        pb_event(&common::msg("e4", "2026-03-01T20:07:00Z", s, v, "t'as 1h")),
    ]
}

/// The state of the sextortion pair, as the admin sees it.
async fn get_teen_pair(
    admin: &mut pb::admin_service_client::AdminServiceClient<Channel>,
) -> Result<Response<pb::PairSummary>, tonic::Status> {
    let req = pb::GetPairRequest {
        tenant: "t".into(),
        user_a: "u-teen".into(),
        user_b: "u-scam".into(),
    };
    admin.get_pair(authed(req, ADMIN)).await
}

/// Every open alert, as a moderator lists them.
async fn open_alerts(
    alerts: &mut pb::alert_service_client::AlertServiceClient<Channel>,
) -> pb::ListOpenResponse {
    alerts
        .list_open(authed(pb::ListOpenRequest::default(), MODERATOR))
        .await
        .unwrap()
        .into_inner()
}

async fn publish(ch: Channel, events: Vec<pb::ChatEvent>) -> Vec<pb::PublishAck> {
    let mut client = pb::ingest_service_client::IngestServiceClient::new(ch);
    let resp = client
        .publish(authed(tokio_stream::iter(events), INGEST))
        .await
        .unwrap();
    resp.into_inner().map(|a| a.unwrap()).collect().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_a_sextortion_and_receive_the_p0_alert_then_resume_from_a_cursor() {
    let dir = data_dir("alert");
    let server = start(config(&dir), Default::default()).await.unwrap();
    let ch = channel(&server).await;
    let mut alerts = pb::alert_service_client::AlertServiceClient::new(ch.clone());
    let mut live = alerts
        .subscribe(authed(
            pb::SubscribeRequest {
                min_priority: "P1".into(),
                tenant: String::new(),
                after_cursor: 0,
                from_beginning: false,
            },
            MODERATOR,
        ))
        .await
        .unwrap()
        .into_inner();
    let acks = publish(ch.clone(), sextortion()).await;
    assert_eq!(acks.len(), 4);
    assert!(acks.iter().all(|a| a.accepted), "{acks:?}");
    let first = tokio::time::timeout(Duration::from_secs(10), live.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let alert = first.alert.unwrap();
    assert_eq!(alert.priority, pb::Priority::P0 as i32);
    assert_eq!(alert.pattern, pb::Pattern::Sextortion as i32);
    assert_eq!(alert.suspect.unwrap().user_id, "u-scam");
    let second = tokio::time::timeout(Duration::from_secs(10), live.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        second.alert.unwrap().respond_by.is_some(),
        "the countdown gives a deadline"
    );
    // A moderator tool that reconnects after the first alert gets the second one.
    let mut resumed = alerts
        .subscribe(authed(
            pb::SubscribeRequest {
                min_priority: String::new(),
                tenant: "t".into(),
                after_cursor: first.cursor,
                from_beginning: false,
            },
            MODERATOR,
        ))
        .await
        .unwrap()
        .into_inner();
    let again = tokio::time::timeout(Duration::from_secs(10), resumed.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(again.cursor, second.cursor);
    // Open alerts: one per pair and pattern, the latest.
    let open = open_alerts(&mut alerts).await;
    assert_eq!(open.alerts.len(), 1);
    assert_eq!(open.alerts[0].cursor, second.cursor);
    // The alert log on disk.
    let log = std::fs::read_to_string(dir.join("alerts.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 2);
    // The metrics SREs read, with the values this conversation must give.
    let (code, metrics) = common::http_get(server.http_addr, "/metrics").await;
    assert_eq!(code, 200);
    for expected in [
        "pairwatch_ingest_events_total 4",
        "pairwatch_alerts_raised_total{pattern=\"SEXTORTION\",priority=\"P0\"} 2",
        "pairwatch_engine_signals_total{category=\"THREAT_TO_DISTRIBUTE\"} 1",
        "pairwatch_engine_signals_total{category=\"DEADLINE\"} 1",
        "pairwatch_engine_processing_seconds_count 4",
        "pairwatch_alerts_event_to_alert_seconds_count 2",
        "pairwatch_wal_fsync_seconds_count",
        "pairwatch_checkpoint_duration_seconds_bucket",
        "pairwatch_state_pairs{shard=",
        "pairwatch_shard_queue_depth{shard=\"0\"} 0",
        "pairwatch_ingest_queue_depth",
        "pairwatch_alerts_subscribers 2",
        "pairwatch_build_info{rules_version=\"sha256:",
        "pairwatch_ingest_rejected_total{reason=\"bad_timestamp\"} 0",
    ] {
        assert!(
            metrics.contains(expected),
            "missing {expected:?} in\n{metrics}"
        );
    }
    // No user id ever appears in the metrics.
    assert!(!metrics.contains("u-scam") && !metrics.contains("u-teen"));
    server.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wall_clock_passes_a_silent_pairs_deadline_and_the_stream_carries_the_update() {
    let dir = data_dir("deadline-clock");
    let mut c = config(&dir);
    c.engine.deadline_clock = "200ms".into();
    let server = start(c, Default::default()).await.unwrap();
    let ch = channel(&server).await;
    let mut alerts = pb::alert_service_client::AlertServiceClient::new(ch.clone());
    let mut live = alerts
        .subscribe(authed(
            pb::SubscribeRequest {
                from_beginning: true,
                ..Default::default()
            },
            MODERATOR,
        ))
        .await
        .unwrap()
        .into_inner();
    // The countdown ran out on 2026-03-01 at 21:07; no event comes after it.
    assert!(publish(ch.clone(), sextortion())
        .await
        .iter()
        .all(|a| a.accepted));
    let mut got = Vec::new();
    while got.len() < 3 {
        let next = tokio::time::timeout(Duration::from_secs(10), live.next())
            .await
            .expect("the update comes within a few ticks")
            .unwrap()
            .unwrap();
        got.push(next);
    }
    let (deadline, update) = (got[1].alert.clone().unwrap(), got[2].alert.clone().unwrap());
    assert!(deadline.respond_by.is_some() && !deadline.deadline_passed);
    assert_eq!(update.alert_id, deadline.alert_id, "the same alert");
    assert!(got[2].cursor > got[1].cursor, "a new cursor");
    assert!(update.deadline_passed);
    let u = update.update.expect("an update");
    assert_eq!(u.kind, pb::UpdateKind::DeadlinePassed as i32);
    assert_eq!(u.at, deadline.respond_by);
    assert!(update.red_flags.contains(&"DEADLINE_PASSED".to_string()));
    // The open alert is the updated one.
    let open = open_alerts(&mut alerts).await;
    assert_eq!(open.alerts.len(), 1);
    assert_eq!(open.alerts[0].cursor, got[2].cursor);
    assert!(open.alerts[0].alert.as_ref().unwrap().deadline_passed);
    // Once only, however many ticks pass.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let log = std::fs::read_to_string(dir.join("alerts.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 3, "{log}");
    wait_metric(
        &server,
        "pairwatch_alerts_updates_total{kind=\"DEADLINE_PASSED\"} 1",
    )
    .await;
    server.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_events_are_rejected_with_reasons_and_the_server_keeps_serving() {
    let dir = data_dir("reject");
    let mut c = config(&dir);
    c.limits.max_batch_events = 3;
    let server = start(c, Default::default()).await.unwrap();
    let ch = channel(&server).await;
    let mut bad = sextortion()[0].clone();
    bad.event_id.clear();
    let mut two_users = sextortion()[0].clone();
    two_users.recipient = two_users.sender.clone();
    let acks = publish(ch.clone(), vec![bad, sextortion()[0].clone(), two_users]).await;
    assert_eq!(
        acks.iter().map(|a| a.accepted).collect::<Vec<_>>(),
        vec![false, true, false]
    );
    assert_eq!(acks[0].reason, "missing required field `event_id`");
    assert_eq!(acks[0].reason_code, "missing_field");
    assert_eq!(acks[2].reason_code, "same_user");
    let mut client = pb::ingest_service_client::IngestServiceClient::new(ch.clone());
    let err = client
        .publish_batch(authed(
            pb::PublishBatchRequest {
                events: sextortion(),
            },
            INGEST,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("over the limit of 3"),
        "{}",
        err.message()
    );
    let ok = client
        .publish_batch(authed(
            pb::PublishBatchRequest {
                events: sextortion()[..2].to_vec(),
            },
            INGEST,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(ok.results.iter().all(|r| r.accepted));
    let (code, metrics) = common::http_get(server.http_addr, "/metrics").await;
    assert_eq!(code, 200);
    assert!(
        metrics.contains("pairwatch_ingest_rejected_total{reason=\"missing_field\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("pairwatch_ingest_events_total 3"));
    server.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_checks_the_bearer_token_and_its_role() {
    let dir = data_dir("auth");
    let server = start(config(&dir), Default::default()).await.unwrap();
    let ch = channel(&server).await;
    let mut admin = pb::admin_service_client::AdminServiceClient::new(ch.clone());
    let none = admin
        .forget_user(Request::new(pb::ForgetUserRequest {
            user_id: "u".into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(none.code(), Code::Unauthenticated);
    let wrong = admin
        .forget_user(authed(
            pb::ForgetUserRequest {
                user_id: "u".into(),
                ..Default::default()
            },
            "not-a-real-token-at-all",
        ))
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Code::Unauthenticated);
    let role = admin
        .forget_user(authed(
            pb::ForgetUserRequest {
                user_id: "u".into(),
                ..Default::default()
            },
            INGEST,
        ))
        .await
        .unwrap_err();
    assert_eq!(role.code(), Code::PermissionDenied);
    let mut alerts = pb::alert_service_client::AlertServiceClient::new(ch.clone());
    let role = alerts
        .list_open(authed(pb::ListOpenRequest::default(), INGEST))
        .await
        .unwrap_err();
    assert_eq!(role.code(), Code::PermissionDenied);
    // The admin role may call everything.
    assert!(alerts
        .list_open(authed(pb::ListOpenRequest::default(), ADMIN))
        .await
        .is_ok());
    server.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_reload_good_and_bad_forget_user_and_get_pair() {
    let dir = data_dir("admin");
    let rules = dir.join("packs/good");
    copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("rules"), &rules);
    let mut c = config(&dir);
    c.engine.rules_root = dir.join("packs").display().to_string();
    let server = start(c, Default::default()).await.unwrap();
    let ch = channel(&server).await;
    publish(ch.clone(), sextortion()).await;
    let mut admin = pb::admin_service_client::AdminServiceClient::new(ch.clone());
    let pair = get_teen_pair(&mut admin).await.unwrap().into_inner();
    assert_eq!(pair.sides[0].user_id, "u-scam");
    assert!(pair.sides[0]
        .signals
        .iter()
        .any(|s| s.category == "THREAT_TO_DISTRIBUTE"));
    assert!(
        pair.alerted.contains(&"SEXTORTION:P0".to_string()),
        "{:?}",
        pair.alerted
    );

    let good = admin
        .reload_rules(authed(
            pb::ReloadRulesRequest {
                dir: rules.display().to_string(),
            },
            ADMIN,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(good.rules_version.starts_with("sha256:"));
    let bad_dir = dir.join("packs/bad");
    std::fs::create_dir_all(bad_dir.join("lexicon")).unwrap();
    std::fs::write(
        bad_dir.join("lexicon/en.toml"),
        "language = \"en\"\n[categories.NOPE]\nphrases = [\"x\"]\n",
    )
    .unwrap();
    let bad = admin
        .reload_rules(authed(
            pb::ReloadRulesRequest {
                dir: bad_dir.display().to_string(),
            },
            ADMIN,
        ))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(
        bad.message().contains("unknown lexicon category \"NOPE\""),
        "{}",
        bad.message()
    );

    let forget = |tenant: &str| pb::ForgetUserRequest {
        user_id: "u-teen".into(),
        tenant: tenant.into(),
    };
    // The same id in another tenant is another person: nothing of this one goes.
    let elsewhere = admin
        .forget_user(authed(forget("other"), ADMIN))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((elsewhere.pairs_removed, elsewhere.alerts_removed), (0, 0));
    assert!(get_teen_pair(&mut admin).await.is_ok());
    let forgot = admin
        .forget_user(authed(forget("t"), ADMIN))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(forgot.pairs_removed, 1);
    assert_eq!(forgot.alerts_removed, 2);
    let gone = get_teen_pair(&mut admin).await.unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    let log = std::fs::read_to_string(dir.join("alerts.jsonl")).unwrap();
    assert!(!log.contains("u-teen"));
    // The write-ahead log no longer holds the user's messages.
    for seg in std::fs::read_dir(dir.join("wal")).unwrap() {
        let bytes = std::fs::read(seg.unwrap().path()).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains("enregistr"),
            "message text left in the log"
        );
    }
    server.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_rule_is_counted_in_metrics_and_raises_no_alert() {
    let dir = data_dir("shadow");
    let rules = dir.join("pack");
    copy_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("rules"), &rules);
    // On trial: a recording claim alone would be a P0.
    let trial = "\n[[rule]]\nid = \"trial.recording_claim_alone\"\npattern = \"SEXTORTION\"\npriority = \"P0\"\nmode = \"shadow\"\nall = [\"suspect:RECORDING_CLAIM\"]\n";
    let escalation = rules.join("escalation.toml");
    let pack = std::fs::read_to_string(&escalation).unwrap();
    std::fs::write(&escalation, format!("{pack}{trial}")).unwrap();
    let mut c = config(&dir);
    c.engine.rules_dir = rules.display().to_string();
    let server = start(c, Default::default()).await.unwrap();
    let ch = channel(&server).await;
    // The claim without a demand: the live rules stay quiet, the shadow rule fires.
    let s = ("u-scam", "ADULT");
    let v = ("u-teen", "AGE_13_15");
    let claim = "j'ai tout enregistré hier soir";
    publish(
        ch.clone(),
        vec![pb_event(&common::msg(
            "e1",
            "2026-03-01T20:00:00Z",
            s,
            v,
            claim,
        ))],
    )
    .await;
    wait_metric(
        &server,
        "pairwatch_rules_shadow_fired_total{rule=\"trial.recording_claim_alone\"} 1",
    )
    .await;
    let mut alerts = pb::alert_service_client::AlertServiceClient::new(ch.clone());
    assert!(open_alerts(&mut alerts).await.alerts.is_empty());
    server.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_and_alerts_survive_a_restart_and_decisions_suppress_re_alerts() {
    let dir = data_dir("restart");
    let server = start(config(&dir), Default::default()).await.unwrap();
    let ch = channel(&server).await;
    publish(ch.clone(), sextortion()[..3].to_vec()).await;
    let (code, ready) = common::http_get(server.http_addr, "/readyz").await;
    assert_eq!((code, ready.trim()), (200, "ready"));
    let mut alerts = pb::alert_service_client::AlertServiceClient::new(ch.clone());
    // Acks mean durable and queued; the alert follows shortly after.
    let mut open = pb::ListOpenResponse::default();
    for _ in 0..100 {
        open = alerts
            .list_open(authed(pb::ListOpenRequest::default(), MODERATOR))
            .await
            .unwrap()
            .into_inner();
        if !open.alerts.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let id = open.alerts[0].alert.as_ref().unwrap().alert_id.clone();
    alerts
        .resolve(authed(
            pb::ResolveRequest {
                alert_id: id.clone(),
                decision: pb::Decision::FalsePositive as i32,
                moderator_id: "mod-7".into(),
                ..Default::default()
            },
            MODERATOR,
        ))
        .await
        .unwrap();
    let twice = alerts
        .resolve(authed(
            pb::ResolveRequest {
                alert_id: id.clone(),
                decision: pb::Decision::Confirmed as i32,
                moderator_id: "mod-7".into(),
                ..Default::default()
            },
            MODERATOR,
        ))
        .await
        .unwrap_err();
    assert_eq!(twice.code(), Code::FailedPrecondition);
    server.stop().await.unwrap();

    // Restart on the same data: the pair and the decision are remembered.
    let server = start(config(&dir), Default::default()).await.unwrap();
    let ch = channel(&server).await;
    let mut admin = pb::admin_service_client::AdminServiceClient::new(ch.clone());
    let pair = get_teen_pair(&mut admin).await.unwrap().into_inner();
    assert_eq!(pair.evidence_count, 3);
    // The deadline would re-alert, but the false positive suppresses it (same priority).
    publish(ch.clone(), sextortion()[3..].to_vec()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let log = std::fs::read_to_string(dir.join("alerts.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 1, "{log}");
    let mut alerts = pb::alert_service_client::AlertServiceClient::new(ch.clone());
    let open = alerts
        .list_open(authed(pb::ListOpenRequest::default(), MODERATOR))
        .await
        .unwrap()
        .into_inner();
    assert!(open.alerts.is_empty());
    let (_, metrics) = common::http_get(server.http_addr, "/metrics").await;
    assert!(
        metrics.contains("pairwatch_checkpoint_pairs 1"),
        "{metrics}"
    );
    server.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_publishes_the_readme_example_and_prints_its_alerts() {
    let dir = data_dir("client");
    let mut c = config(&dir);
    c.auth = Config::default().auth;
    let server = start(c, Default::default()).await.unwrap();
    let ch = channel(&server).await;
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/sextortion_fr.jsonl");
    let input = std::io::BufReader::new(std::fs::File::open(example).unwrap());
    let done =
        pairwatch::client::publish(ch.clone(), None, input, pairwatch::replay::MAX_LINE_BYTES)
            .await
            .unwrap();
    assert_eq!((done.accepted, done.rejected), (18, 0));
    let req = pb::SubscribeRequest {
        from_beginning: true,
        ..Default::default()
    };
    let printer = tokio::spawn(async move {
        let mut out = Vec::new();
        pairwatch::client::subscribe(ch, None, req, &mut out)
            .await
            .map(|_| out)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.stop().await.unwrap();
    let out = String::from_utf8(printer.await.unwrap().unwrap()).unwrap();
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // As the README tells: four alerts and four updates, in the order of the replay.
    let alerts: Vec<&serde_json::Value> =
        lines.iter().filter(|l| l.get("update").is_none()).collect();
    assert_eq!((alerts.len(), lines.len()), (4, 8), "{out}");
    assert_eq!(alerts[3]["priority"], "P0");
    assert_eq!(alerts[3]["pattern"], "SEXTORTION");
    assert_eq!(alerts[3]["cursor"], 5);
    assert_eq!(alerts[3]["victim_notice"]["language"], "fr");
    assert_eq!(lines[5]["update"]["kind"], "DEADLINE_PASSED");
    assert_eq!(lines[5]["alert_id"], alerts[3]["alert_id"]);
    assert_eq!(lines[5]["cursor"], 6);
    // The alert log on disk holds the same lines.
    let log = std::fs::read_to_string(dir.join("alerts.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 8);
    let _ = std::fs::remove_dir_all(dir);
}

/// Copies a directory tree (a rule pack).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

/// A codec that sends bytes as they are (what a typed client cannot send: a message that
/// is not a `ChatEvent`) and decodes the answers as `D`.
struct RawCodec<D>(std::marker::PhantomData<D>);

impl<D> RawCodec<D> {
    fn new() -> Self {
        RawCodec(std::marker::PhantomData)
    }
}

struct RawEncoder;

struct ProstDecoder<D>(std::marker::PhantomData<D>);

impl<D: prost::Message + Default + Send + 'static> tonic::codec::Codec for RawCodec<D> {
    type Encode = Vec<u8>;
    type Decode = D;
    type Encoder = RawEncoder;
    type Decoder = ProstDecoder<D>;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> ProstDecoder<D> {
        ProstDecoder(std::marker::PhantomData)
    }
}

impl tonic::codec::Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use prost::bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl<D: prost::Message + Default> tonic::codec::Decoder for ProstDecoder<D> {
    type Item = D;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<D>, tonic::Status> {
        D::decode(src)
            .map(Some)
            .map_err(|e| tonic::Status::internal(e.to_string()))
    }
}

fn route(method: &'static str) -> tonic::codegen::http::uri::PathAndQuery {
    tonic::codegen::http::uri::PathAndQuery::from_static(method)
}

/// The wire bytes of a valid event.
fn event_bytes(id: &str, text: &str) -> Vec<u8> {
    use prost::Message;
    pb_event(&common::msg(
        id,
        "2026-03-01T20:00:00Z",
        ("u-a", "AGE_13_15"),
        ("u-b", "AGE_13_15"),
        text,
    ))
    .encode_to_vec()
}

/// The wire bytes of an event whose text is not UTF-8: not a valid `ChatEvent`.
fn undecodable_event(id: &str) -> Vec<u8> {
    let mut bytes = event_bytes(id, "QQQQQQQQ");
    let at = bytes
        .windows(8)
        .position(|w| w == b"QQQQQQQQ")
        .expect("the text is in the encoding");
    bytes[at..at + 8].copy_from_slice(&[0xff, 0xfe, 0xc3, 0x28, 0xa0, 0xa1, 0xe2, 0x28]);
    assert!(<pb::ChatEvent as prost::Message>::decode(bytes.as_slice()).is_err());
    bytes
}

/// `Publish` with raw messages: the acks received, then the status that ended the stream
/// (None for OK).
async fn publish_raw(
    ch: Channel,
    frames: Vec<Vec<u8>>,
) -> (Vec<pb::PublishAck>, Option<tonic::Status>) {
    let mut grpc = tonic::client::Grpc::new(ch);
    grpc.ready().await.unwrap();
    let mut acks = grpc
        .streaming(
            authed(tokio_stream::iter(frames), INGEST),
            route("/pairwatch.v1.IngestService/Publish"),
            RawCodec::<pb::PublishAck>::new(),
        )
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), acks.message())
            .await
            .expect("the stream ends")
        {
            Ok(Some(ack)) => got.push(ack),
            Ok(None) => return (got, None),
            Err(status) => return (got, Some(status)),
        }
    }
}

async fn metrics_text(s: &Running) -> String {
    let (code, text) = common::http_get(s.http_addr, "/metrics").await;
    assert_eq!(code, 200);
    text
}

/// Polls `/metrics` until it holds `line`, for at most 10 s.
async fn wait_metric(s: &Running, line: &str) {
    let mut text = String::new();
    for _ in 0..200 {
        text = metrics_text(s).await;
        if text.lines().any(|l| l == line) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never saw {line:?} in\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_message_ends_the_publish_stream_with_invalid_argument_after_the_earlier_acks(
) {
    let dir = data_dir("badproto-stream");
    let server = start(config(&dir), Default::default()).await.unwrap();
    let ch = channel(&server).await;
    let frames = vec![
        event_bytes("s1", "salut"),
        event_bytes("s2", "ça va ?"),
        undecodable_event("s3"),
        event_bytes("s4", "never read"),
    ];
    let (acks, end) = publish_raw(ch.clone(), frames).await;
    assert_eq!(
        acks.iter()
            .map(|a| (a.event_id.as_str(), a.accepted))
            .collect::<Vec<_>>(),
        vec![("s1", true), ("s2", true)],
        "{acks:?}"
    );
    let end = end.expect("the stream ends with an error");
    assert_eq!(end.code(), Code::InvalidArgument, "{end:?}");
    assert!(
        end.message().starts_with(
            "message #3 of this stream cannot be decoded: failed to decode Protobuf message"
        ),
        "{}",
        end.message()
    );
    assert!(
        end.message().ends_with("; the 2 before it were answered"),
        "{}",
        end.message()
    );
    let metrics = metrics_text(&server).await;
    assert!(
        metrics.contains("pairwatch_ingest_rejected_total{reason=\"bad_protobuf\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("pairwatch_ingest_events_total 2"),
        "{metrics}"
    );
    // A bad first message: nothing answered before it.
    let (acks, end) = publish_raw(ch.clone(), vec![undecodable_event("s5")]).await;
    assert!(acks.is_empty());
    let end = end.unwrap();
    assert_eq!(end.code(), Code::InvalidArgument);
    assert!(
        end.message().contains("message #1 of this stream"),
        "{end:?}"
    );
    assert!(end.message().ends_with("the 0 before it were answered"));
    // The connection and the service go on.
    let acks = publish(ch, sextortion()).await;
    assert!(acks.iter().all(|a| a.accepted), "{acks:?}");
    server.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[derive(Clone, PartialEq, prost::Message)]
struct RawBatch {
    #[prost(bytes = "vec", repeated, tag = "1")]
    events: Vec<Vec<u8>>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_event_in_a_batch_gets_its_own_result() {
    use prost::Message;
    let dir = data_dir("badproto-batch");
    let server = start(config(&dir), Default::default()).await.unwrap();
    let ch = channel(&server).await;
    let batch = RawBatch {
        events: vec![
            event_bytes("b1", "salut"),
            undecodable_event("b2"),
            event_bytes("b3", "à plus"),
        ],
    };
    let mut grpc = tonic::client::Grpc::new(ch.clone());
    grpc.ready().await.unwrap();
    let results = grpc
        .unary(
            authed(batch.encode_to_vec(), INGEST),
            route("/pairwatch.v1.IngestService/PublishBatch"),
            RawCodec::<pb::PublishBatchResponse>::new(),
        )
        .await
        .expect("the batch is answered per event")
        .into_inner()
        .results;
    assert_eq!(results.len(), 3, "{results:?}");
    assert!(results[0].accepted && results[2].accepted, "{results:?}");
    assert_eq!(results[0].event_id, "b1");
    assert_eq!(results[2].event_id, "b3");
    let bad = &results[1];
    assert!(!bad.accepted);
    assert_eq!(
        bad.event_id, "b2",
        "the id is read when field 1 is readable"
    );
    assert_eq!(bad.reason_code, "bad_protobuf");
    assert!(
        bad.reason.starts_with(
            "events[1] of the batch cannot be decoded: failed to decode Protobuf message"
        ),
        "{}",
        bad.reason
    );
    let metrics = metrics_text(&server).await;
    assert!(
        metrics.contains("pairwatch_ingest_rejected_total{reason=\"bad_protobuf\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("pairwatch_ingest_events_total 2"),
        "{metrics}"
    );
    // The typed client and the batch limit work as before.
    let mut client = pb::ingest_service_client::IngestServiceClient::new(ch);
    let ok = client
        .publish_batch(authed(
            pb::PublishBatchRequest {
                events: sextortion(),
            },
            INGEST,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.results.len(), 4);
    assert!(ok.results.iter().all(|r| r.accepted), "{:?}", ok.results);
    server.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

fn subscribe_req(after_cursor: u64) -> pb::SubscribeRequest {
    pb::SubscribeRequest {
        after_cursor,
        ..Default::default()
    }
}

async fn subscribe(
    ch: Channel,
    req: pb::SubscribeRequest,
) -> Result<tonic::Streaming<pb::AlertEnvelope>, tonic::Status> {
    let mut alerts = pb::alert_service_client::AlertServiceClient::new(ch);
    tokio::time::timeout(
        Duration::from_secs(10),
        alerts.subscribe(authed(req, MODERATOR)),
    )
    .await
    .expect("Subscribe answers at once")
    .map(Response::into_inner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_are_limited_counted_exactly_and_a_cursor_beyond_the_end_is_out_of_range() {
    let dir = data_dir("subs-limit");
    let mut c = config(&dir);
    c.limits.max_subscribers = 2;
    let server = start(c, Default::default()).await.unwrap();
    let ch = channel(&server).await;
    let beyond = subscribe(ch.clone(), subscribe_req(1000))
        .await
        .unwrap_err();
    assert_eq!(beyond.code(), Code::OutOfRange, "{beyond:?}");
    assert!(
        beyond
            .message()
            .contains("after_cursor 1000 is beyond the last alert (cursor 0)"),
        "{}",
        beyond.message()
    );
    let first = subscribe(ch.clone(), subscribe_req(0)).await.unwrap();
    let second = subscribe(ch.clone(), subscribe_req(0)).await.unwrap();
    wait_metric(&server, "pairwatch_alerts_subscribers 2").await;
    let refused = subscribe(ch.clone(), subscribe_req(0)).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("limits.max_subscribers"),
        "{}",
        refused.message()
    );
    assert_eq!(
        metrics_text(&server)
            .await
            .lines()
            .find(|l| l.starts_with("pairwatch_alerts_subscribers "))
            .unwrap(),
        "pairwatch_alerts_subscribers 2",
        "a refused subscription is not counted"
    );
    // A client that goes away while no alert flows frees its slot.
    drop(first);
    wait_metric(&server, "pairwatch_alerts_subscribers 1").await;
    let third = subscribe(ch.clone(), subscribe_req(0)).await.unwrap();
    wait_metric(&server, "pairwatch_alerts_subscribers 2").await;
    drop(second);
    drop(third);
    wait_metric(&server, "pairwatch_alerts_subscribers 0").await;
    server.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

/// `pairs` sextortion conversations on distinct pairs of `tenant`: two P0 alerts each.
fn many_sextortions(tenant: &str, pairs: usize) -> Vec<pb::ChatEvent> {
    let mut out = Vec::with_capacity(pairs * 4);
    for i in 0..pairs {
        let s = format!("u-scam-{i}");
        let v = format!("u-teen-{i}");
        let (s, v) = ((s.as_str(), "ADULT"), (v.as_str(), "AGE_13_15"));
        out.push(pb_event(&common::msg(
            &format!("p{i}-1"),
            "2026-03-01T20:00:00Z",
            s,
            v,
            "t'es trop mignon, envoie une photo de toi",
        )));
        out.push(pb_event(&common::image(
            &format!("p{i}-2"),
            "2026-03-01T20:05:00Z",
            v,
            s,
        )));
        out.push(pb_event(&common::msg(
            &format!("p{i}-3"),
            "2026-03-01T20:06:00Z",
            s,
            v,
            "j'ai tout enregistré. envoie 200€ en PCS sinon j'envoie tout à tes potes",
        )));
        out.push(pb_event(&common::msg(
            &format!("p{i}-4"),
            "2026-03-01T20:07:00Z",
            s,
            v,
            "t'as 1h",
        )));
    }
    for ev in &mut out {
        ev.tenant = tenant.into();
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_does_not_read_is_cut_off_with_its_resume_cursor_and_intake_goes_on() {
    const PAIRS: usize = 1000;
    let dir = data_dir("subs-slow");
    let mut c = config(&dir);
    c.limits.subscriber_buffer = 256;
    c.durability.fsync = false;
    let server = start(c, Default::default()).await.unwrap();
    let ch = channel(&server).await;
    // The slow one has its own connection with small HTTP/2 windows: it stops the server
    // sending after a few dozen kilobytes it does not read.
    let slow_ch = tonic::transport::Endpoint::from_shared(format!("http://{}", server.grpc_addr))
        .unwrap()
        .initial_stream_window_size(65_535)
        .initial_connection_window_size(65_535)
        .connect()
        .await
        .unwrap();
    let mut slow = subscribe(slow_ch, subscribe_req(0)).await.unwrap();
    // Another moderator tool, reading, follows one small tenant.
    let mut fast = subscribe(
        ch.clone(),
        pb::SubscribeRequest {
            tenant: "t-small".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let reader = tokio::spawn(async move {
        let mut tenants = Vec::new();
        while tenants.len() < 2 * 3 {
            match fast.message().await {
                Ok(Some(env)) => tenants.push(env.alert.unwrap().tenant),
                other => panic!("the reading subscriber stopped: {other:?}"),
            }
        }
        (tenants, fast)
    });
    let mut events = many_sextortions("t", PAIRS);
    events.extend(many_sextortions("t-small", 3));
    let started = std::time::Instant::now();
    // The slow subscriber is not read until publishing is over: intake must not wait on it.
    let acks = tokio::time::timeout(Duration::from_secs(120), publish(ch.clone(), events))
        .await
        .expect("intake never waits on a subscriber");
    let took = started.elapsed();
    assert_eq!(acks.len(), 4 * (PAIRS + 3));
    assert!(acks.iter().all(|a| a.accepted));
    let (tenants, fast) = tokio::time::timeout(Duration::from_secs(60), reader)
        .await
        .expect("the reading subscriber gets its alerts")
        .unwrap();
    assert!(tenants.iter().all(|t| t == "t-small"), "{tenants:?}");
    // Now read the slow one: what was queued for it, in order, then the cut-off.
    let mut got = Vec::new();
    let end = loop {
        match tokio::time::timeout(Duration::from_secs(10), slow.message())
            .await
            .expect("the slow stream ends")
        {
            Ok(Some(env)) => got.push(env.cursor),
            Ok(None) => panic!("the slow subscriber was not cut off ({} alerts)", got.len()),
            Err(status) => break status,
        }
    };
    assert_eq!(end.code(), Code::ResourceExhausted, "{end:?}");
    let last = *got.last().expect("alerts queued before the cut-off");
    assert_eq!(
        got,
        (1..=last).collect::<Vec<_>>(),
        "in order, none missing"
    );
    assert!(last >= 256 && last < 2 * PAIRS as u64, "{last}");
    eprintln!("the slow subscriber got {last} alerts before the cut-off");
    assert!(
        end.message()
            .contains(&format!("resume with after_cursor={last}")),
        "{}",
        end.message()
    );
    assert!(end.message().contains("256 alerts"), "{}", end.message());
    // Resuming from that cursor gives the next alert.
    let mut resumed = subscribe(ch.clone(), subscribe_req(last)).await.unwrap();
    let next = tokio::time::timeout(Duration::from_secs(10), resumed.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(next.cursor, last + 1);
    let metrics = metrics_text(&server).await;
    assert!(
        metrics.contains("pairwatch_ingest_saturated_total 0"),
        "{metrics}"
    );
    drop((slow, fast, resumed));
    wait_metric(&server, "pairwatch_alerts_subscribers 0").await;
    eprintln!(
        "published {} events in {took:?} with a stuck subscriber",
        4 * PAIRS
    );
    server.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_rules_loads_only_directories_under_the_root_and_tells_nothing_of_others() {
    let dir = data_dir("rules-root");
    let root = dir.join("packs");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("rules"),
        &root.join("good"),
    );
    std::fs::create_dir_all(root.join("bad/lexicon")).unwrap();
    std::fs::write(
        root.join("bad/lexicon/en.toml"),
        "language = \"en\"\n[categories.NOPE]\nphrases = [\"x\"]\n",
    )
    .unwrap();
    std::fs::write(root.join("a-file"), "not a directory").unwrap();
    let outside = dir.join("outside");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("rules"),
        &outside,
    );
    std::os::unix::fs::symlink(&outside, root.join("link-out")).unwrap();
    let mut c = config(&dir);
    c.engine.rules_root = root.display().to_string();
    let server = start(c, Default::default()).await.unwrap();
    let admin = pb::admin_service_client::AdminServiceClient::new(channel(&server).await);
    let reload = |d: String| {
        let req = authed(pb::ReloadRulesRequest { dir: d }, ADMIN);
        let mut admin = admin.clone();
        async move { admin.reload_rules(req).await.map(|r| r.into_inner()) }
    };
    let good = reload(root.join("good").display().to_string())
        .await
        .unwrap();
    assert!(good.rules_version.starts_with("sha256:"));
    // Spelled another way, still under the root.
    let again = reload(format!("{}/./bad/../good", root.display()))
        .await
        .unwrap();
    assert_eq!(again.rules_version, good.rules_version);
    // The configured pack (here: the embedded one) is always allowed.
    reload(String::new()).await.unwrap();
    // An allowed directory with a bad pack keeps the detail.
    let bad = reload(root.join("bad").display().to_string())
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(
        bad.message().contains("unknown lexicon category \"NOPE\""),
        "{bad:?}"
    );
    // Everything else: one answer, whether the path exists or not.
    for d in [
        outside.display().to_string(),
        dir.join("no-such-dir").display().to_string(),
        root.join("missing").display().to_string(),
        format!("{}/good/../../outside", root.display()),
        root.join("link-out").display().to_string(),
        root.join("a-file").display().to_string(),
        "/etc".to_string(),
        "/no/such/path".to_string(),
        "relative/path".to_string(),
    ] {
        let e = reload(d.clone()).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{d}");
        assert_eq!(
            e.message(),
            "rule directory not allowed: give a directory under engine.rules_root",
            "{d}"
        );
    }
    drop(admin);
    let metrics = metrics_text(&server).await;
    assert!(
        metrics.contains("pairwatch_rules_reloads_total{outcome=\"refused\"} 10"),
        "{metrics}"
    );
    server.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_intake_answers_resource_exhausted_per_event_and_counts_it() {
    const STREAMS: usize = 32;
    const EVENTS: usize = 40;
    let dir = data_dir("saturated");
    let mut c = config(&dir);
    // One slot in each queue, a real fsync per group commit, and a short wait for room:
    // concurrent publishers find the intake full.
    c.shards.count = 1;
    c.shards.queue_capacity = 1;
    c.shards.ingest_queue_capacity = 1;
    c.shards.ingest_queue_wait = "1ms".into();
    c.durability.fsync = true;
    let server = start(c, Default::default()).await.unwrap();
    let ch = channel(&server).await;
    let mut publishers = Vec::new();
    for s in 0..STREAMS {
        let events: Vec<pb::ChatEvent> = (0..EVENTS)
            .map(|i| {
                pb_event(&common::msg(
                    &format!("sat-{s}-{i}"),
                    "2026-03-01T20:00:00Z",
                    (&format!("u-{s}"), "AGE_13_15"),
                    ("u-z", "AGE_13_15"),
                    "on joue ce soir ?",
                ))
            })
            .collect();
        publishers.push(tokio::spawn(publish(ch.clone(), events)));
    }
    let mut acks = Vec::new();
    for p in publishers {
        acks.extend(p.await.unwrap());
    }
    assert_eq!(acks.len(), STREAMS * EVENTS);
    let refused: Vec<_> = acks.iter().filter(|a| !a.accepted).collect();
    assert!(!refused.is_empty(), "the intake never filled up");
    for a in &refused {
        assert_eq!(a.reason_code, "resource_exhausted", "{a:?}");
        assert_eq!(a.reason, "intake is full, retry later");
    }
    let accepted = acks.len() - refused.len();
    assert!(accepted > 0);
    eprintln!("{accepted} accepted, {} refused", refused.len());
    let metrics = metrics_text(&server).await;
    for expected in [
        format!("pairwatch_ingest_saturated_total {}", refused.len()),
        format!(
            "pairwatch_ingest_rejected_total{{reason=\"saturated\"}} {}",
            refused.len()
        ),
        format!("pairwatch_ingest_events_total {accepted}"),
    ] {
        assert!(
            metrics.lines().any(|l| l == expected),
            "missing {expected:?} in\n{metrics}"
        );
    }
    // Once the burst is over, events are accepted again (one at a time: the queue has
    // one slot).
    for ev in sextortion() {
        let acks = publish(ch.clone(), vec![ev]).await;
        assert!(acks[0].accepted, "{acks:?}");
    }
    server.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_desk_claims_resolves_and_suppresses_and_keeps_claims_over_a_restart() {
    let dir = data_dir("desk");
    let server = start(config(&dir), Default::default()).await.unwrap();
    let desk = common::desk::Desk {
        ch: channel(&server).await,
        ingest: Some(INGEST.into()),
        moderator: Some(MODERATOR.into()),
    };
    let within = Duration::from_secs(10);
    let alert = desk.raise("u-desk-s", "u-desk-v", within).await;
    let other = desk.raise("u-desk-s2", "u-desk-v2", within).await;
    desk.claim(&other.alert_id, "mod-cy", false).await.unwrap();
    desk.claim_conflict_then_false_positive(&alert.alert_id)
        .await;
    server.stop().await.unwrap();

    let server = start(config(&dir), Default::default()).await.unwrap();
    let desk = common::desk::Desk {
        ch: channel(&server).await,
        ..desk
    };
    let held = desk
        .claim(&other.alert_id, "mod-ana", false)
        .await
        .unwrap_err();
    assert!(
        held.message().contains("\"mod-cy\""),
        "the claim survived: {held:?}"
    );
    desk.no_re_alert_after_false_positive("u-desk-s", "u-desk-v", within)
        .await;
    // Escalated, with a reason code: in the audit log, counted per rule.
    desk.resolve(
        &other.alert_id,
        "mod-cy",
        pb::Decision::Escalated,
        "reported_pharos",
    )
    .await
    .unwrap();
    let audit = std::fs::read_to_string(dir.join("decisions.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let actions: Vec<&str> = lines
        .iter()
        .map(|l| l["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["claim", "claim", "decide", "decide"], "{audit}");
    assert_eq!(lines[3]["decision"], "ESCALATED");
    assert_eq!(lines[3]["reason_code"], "reported_pharos");
    assert!(lines[3]["rules"].as_array().is_some_and(|r| !r.is_empty()));
    assert!(!audit.contains("u-desk"), "no user id in the audit log");
    let (_, metrics) = common::http_get(server.http_addr, "/metrics").await;
    assert!(metrics.contains("decision=\"escalated\""), "{metrics}");
    server.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}
