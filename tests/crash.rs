//! Durability: an acknowledged event survives `kill -9`. The real binary is started,
//! fed, killed, restarted and fed again; its alert log must hold exactly the alerts an
//! uninterrupted run raises (none lost, none duplicated), and the pair state must match.

mod common;

use pairwatch::detect::event::{Event, Limits};
use pairwatch::proto::pb;
use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;
use tokio_stream::StreamExt;

fn spawn(dir: &Path, grpc: u16, http: u16) -> Child {
    common::spawn_server(dir, grpc, http, None, &[])
}

async fn ready(http: u16) {
    common::wait_readyz(http, 200).await;
}

fn conversation() -> Vec<String> {
    let s = ("u-scam", "ADULT");
    let v = ("u-teen", "AGE_13_15");
    let g = ("u-groomer", "UNKNOWN");
    let k = ("u-kid", "UNDER_13");
    vec![
        common::msg(
            "c1",
            "2026-03-01T20:00:00Z",
            s,
            v,
            "t'es trop mignon, envoie une photo de toi",
        ),
        common::msg(
            "c2",
            "2026-03-01T20:00:10Z",
            g,
            k,
            "how old are you? ur so mature for your age",
        ),
        common::image("c3", "2026-03-01T20:05:00Z", v, s),
        common::msg(
            "c4",
            "2026-03-01T20:06:00Z",
            s,
            v,
            "j'ai tout enregistré. envoie 200€ en PCS sinon j'envoie tout à tes potes",
        ),
        common::msg(
            "c5",
            "2026-03-01T20:06:30Z",
            g,
            k,
            "are your parents home? don't tell anyone about us, it's our secret",
        ),
        common::msg("c6", "2026-03-01T20:07:00Z", s, v, "t'as 1h"),
        common::msg(
            "c7",
            "2026-03-01T20:08:00Z",
            g,
            k,
            "add me on snap, what are you wearing? send me a pic of you",
        ),
        common::msg("c8", "2026-03-01T20:20:00Z", s, v, "plus que 30 min"),
        common::msg("c9", "2026-03-01T20:21:00Z", v, s, "je veux mourir"),
        common::msg(
            "c10",
            "2026-03-01T20:30:00Z",
            g,
            k,
            "i can pick you up after school tomorrow, we should meet",
        ),
    ]
}

async fn publish(grpc: u16, lines: &[String]) {
    let ch = common::connect(grpc).await;
    let mut client = pb::ingest_service_client::IngestServiceClient::new(ch);
    let events: Vec<pb::ChatEvent> = lines
        .iter()
        .map(|l| pb::ChatEvent::from(&Event::from_json(l, &Limits::default()).unwrap()))
        .collect();
    let acks = client
        .publish_batch(pb::PublishBatchRequest { events })
        .await
        .unwrap()
        .into_inner();
    assert!(acks.results.iter().all(|a| a.accepted));
}

/// The ids of the alerts in the log (not its updates: the wall clock passes these
/// conversations' deadlines whenever it ticks), after checking that no line, alert or
/// update, is there twice.
fn logged_ids(dir: &Path) -> Vec<String> {
    let lines: Vec<pairwatch::detect::alert::Alert> =
        std::fs::read_to_string(dir.join("alerts.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
    let keys: std::collections::HashSet<String> = lines.iter().map(|a| a.stream_key()).collect();
    assert_eq!(keys.len(), lines.len(), "a line was logged twice");
    lines
        .into_iter()
        .filter(|a| a.update.is_none())
        .map(|a| a.alert_id)
        .collect()
}

/// Benign chat on many pairs: no alerts, lots of state.
fn load(pairs: usize, per_pair: usize) -> Vec<pb::ChatEvent> {
    let mut out = Vec::with_capacity(pairs * per_pair);
    for i in 0..per_pair {
        for p in 0..pairs {
            let at = format!("2026-03-02T{:02}:{:02}:{:02}Z", 10 + i / 60, i % 60, p % 60);
            let line = common::msg(
                &format!("l{p}-{i}"),
                &at,
                (&format!("u-a{p}"), "AGE_13_15"),
                (&format!("u-b{p}"), "AGE_13_15"),
                "gg on rejoue ?",
            );
            out.push(pb::ChatEvent::from(
                &Event::from_json(&line, &Limits::default()).unwrap(),
            ));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_no_acknowledged_event_and_duplicates_no_alert() {
    let lines = conversation();
    let expected: Vec<String> = common::replay_lines(&lines.join("\n"))
        .into_iter()
        .filter(|a| a.update.is_none())
        .map(|a| a.alert_id)
        .collect();
    assert!(
        expected.len() >= 4,
        "the conversation should raise several alerts"
    );

    let dir = std::env::temp_dir().join(format!("pw-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (grpc, http) = (common::free_port(), common::free_port());
    let mut child = spawn(&dir, grpc, http);
    ready(http).await;
    publish(grpc, &lines[..4]).await;
    // Let a checkpoint happen, then more events after it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    publish(grpc, &lines[4..7]).await;

    // Stream a load and kill -9 the server while acks are still coming.
    let events = load(400, 20);
    let ch = common::connect(grpc).await;
    let mut client = pb::ingest_service_client::IngestServiceClient::new(ch);
    let mut acks = client
        .publish(tokio_stream::iter(events.clone()))
        .await
        .unwrap()
        .into_inner();
    let mut acked = Vec::new();
    while let Some(Ok(ack)) = acks.next().await {
        if ack.accepted {
            acked.push(ack.event_id);
        }
        if acked.len() == 3000 {
            child.kill().unwrap(); // SIGKILL, mid-stream
        }
    }
    child.wait().unwrap();
    assert!(
        acked.len() >= 3000 && acked.len() < events.len(),
        "killed mid-stream after {} acks",
        acked.len()
    );

    // Every acknowledged event is reflected in the restored state.
    let mut child = spawn(&dir, grpc, http);
    ready(http).await;
    let ch = common::connect(grpc).await;
    let mut admin = pb::admin_service_client::AdminServiceClient::new(ch);
    let mut last_acked: std::collections::HashMap<String, pb::ChatEvent> =
        std::collections::HashMap::new();
    let by_id: std::collections::HashMap<&str, &pb::ChatEvent> =
        events.iter().map(|e| (e.event_id.as_str(), e)).collect();
    for id in &acked {
        let e = by_id[id.as_str()];
        last_acked.insert(e.sender.as_ref().unwrap().user_id.clone(), e.clone());
    }
    for (user, e) in &last_acked {
        let other = e.recipient.as_ref().unwrap().user_id.clone();
        let pair = admin
            .get_pair(pb::GetPairRequest {
                tenant: "t".into(),
                user_a: user.clone(),
                user_b: other,
            })
            .await
            .unwrap_or_else(|s| panic!("pair of {user} lost: {s}"))
            .into_inner();
        let seen = pair.last_seen_at.unwrap();
        let acked_at = e.sent_at.unwrap();
        assert!(
            (seen.seconds, seen.nanos) >= (acked_at.seconds, acked_at.nanos),
            "{user}: last event not restored"
        );
    }

    publish(grpc, &lines[7..]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
    assert!(exit.success(), "graceful stop exits 0, got {exit:?}\n{log}");

    let got = logged_ids(&dir);
    let unique: std::collections::HashSet<&String> = got.iter().collect();
    assert_eq!(unique.len(), got.len(), "an alert was logged twice");
    let mut got = got.clone();
    let mut want = expected.clone();
    got.sort();
    want.sort();
    assert_eq!(
        got, want,
        "alerts after a crash must equal an uninterrupted run's"
    );
    let _ = std::fs::remove_dir_all(dir);
}
