//! End-to-end tests of `pairwatch serve`: a real server on port 0, a tonic client.

mod common;

use pairwatch::config::Config;
use pairwatch::event::{Event, Limits};
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
    let open = alerts
        .list_open(authed(pb::ListOpenRequest::default(), MODERATOR))
        .await
        .unwrap()
        .into_inner();
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
        }))
        .await
        .unwrap_err();
    assert_eq!(none.code(), Code::Unauthenticated);
    let wrong = admin
        .forget_user(authed(
            pb::ForgetUserRequest {
                user_id: "u".into(),
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
    let server = start(config(&dir), Default::default()).await.unwrap();
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

    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
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
    let bad_dir = dir.join("bad-rules");
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

    let forgot = admin
        .forget_user(authed(
            pb::ForgetUserRequest {
                user_id: "u-teen".into(),
            },
            ADMIN,
        ))
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
    let done = pairwatch::client::publish(ch.clone(), None, input)
        .await
        .unwrap();
    assert_eq!((done.accepted, done.rejected), (16, 0));
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
    let alerts: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(alerts.len(), 4, "{out}");
    assert_eq!(alerts[3]["priority"], "P0");
    assert_eq!(alerts[3]["pattern"], "SEXTORTION");
    assert_eq!(alerts[3]["cursor"], 4);
    assert_eq!(alerts[3]["victim_notice"]["language"], "fr");
    // The alert log on disk holds the same alerts.
    let log = std::fs::read_to_string(dir.join("alerts.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 4);
    let _ = std::fs::remove_dir_all(dir);
}
