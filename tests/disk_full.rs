//! A full disk, on a real small filesystem (a tmpfs mounted by the test): the write-ahead
//! log and the alert log refuse what they cannot write, never leave a partial record
//! that a later write extends, and after space comes back and a `kill -9`, every
//! acknowledged event and every alert is there exactly once.

mod common;

use common::SmallFs;
use pairwatch::detect::alert::Alert;
use pairwatch::detect::event::{Event, Limits};
use pairwatch::proto::pb;
use pairwatch::server::alerts::{AlertBook, ALERTS_FILE};
use pairwatch::server::wal::{Kind, Recovery, Wal};
use std::collections::HashMap;
use std::time::Duration;

const ENOSPC: i32 = 28;

fn payload(i: usize) -> Vec<u8> {
    format!("event {i:05} ").repeat(24).into_bytes()
}

#[test]
fn the_log_refuses_on_a_full_disk_cuts_the_failed_append_and_replays_exactly_the_acknowledged() {
    let fs = SmallFs::mount("wal", 256 * 1024);
    let dir = fs.path.join("wal");
    let mut wal = Wal::open(&dir, 1 << 20, true, 0, |_| panic!("empty log")).unwrap();
    let mut acked: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut next = 0;
    let mut append = |wal: &mut Wal, acked: &mut Vec<(u64, Vec<u8>)>| {
        let batch: Vec<Vec<u8>> = (next..next + 3).map(payload).collect();
        next += 3;
        let records: Vec<(Kind, &[u8])> = batch.iter().map(|p| (Kind::Event, &p[..])).collect();
        let result = wal.append(&records);
        if let Ok(seqs) = &result {
            acked.extend(seqs.iter().copied().zip(batch));
        }
        result.map(|_| ())
    };
    for _ in 0..10 {
        append(&mut wal, &mut acked).unwrap();
    }

    // Full: the segment's last page may still take a few records, then appends fail.
    let filler = fs.fill();
    let mut refused = 0;
    for _ in 0..1000 {
        if let Err(e) = append(&mut wal, &mut acked) {
            assert_eq!(e.raw_os_error(), Some(ENOSPC), "{e}");
            refused += 1;
            if refused == 5 {
                break;
            }
        }
    }
    assert_eq!(refused, 5, "the disk never filled up");

    // Space back: writing goes on after the last acknowledged record.
    fs.free(&filler);
    for _ in 0..20 {
        append(&mut wal, &mut acked).unwrap();
    }
    drop(wal);

    let mut replayed = Vec::new();
    let wal = Wal::open(&dir, 1 << 20, true, 0, |r| {
        replayed.push((r.seq, r.payload))
    })
    .unwrap();
    assert_eq!(
        replayed.len(),
        acked.len(),
        "every acknowledged record, and only those"
    );
    assert!(replayed == acked, "same records, same order, same numbers");
    assert_eq!(
        wal.recovery(),
        Recovery::default(),
        "nothing to read past or cut"
    );
}

fn alert(i: usize) -> Alert {
    serde_json::from_value(serde_json::json!({
        "alert_id": format!("alert-{i:04}"), "tenant": "t", "priority": "P1",
        "pattern": "SEXTORTION",
        "suspect": {"user_id": format!("u-s{i}"), "age_band": "ADULT"},
        "target": {"user_id": format!("u-v{i}"), "age_band": "AGE_13_15"},
        "trigger_event_id": format!("e-{i}"), "triggered_at": "2026-03-01T20:00:00Z",
        "first_contact_at": "2026-03-01T19:00:00Z", "rules": ["r"], "signals": [],
        "evidence": [], "victim_notice": {"language": "en", "text": "x".repeat(600)},
        "recommended_actions": [], "engine_version": "e", "rules_version": "r"
    }))
    .unwrap()
}

fn ids_on_disk(dir: &std::path::Path) -> Vec<String> {
    AlertBook::open(dir)
        .unwrap()
        .after(0)
        .unwrap()
        .iter()
        .map(|l| l.alert.alert_id.clone())
        .collect()
}

#[test]
fn the_alert_log_keeps_a_refused_alert_queued_and_never_joins_two_lines() {
    let fs = SmallFs::mount("alerts", 128 * 1024);
    let dir = fs.path.join("data");
    let mut book = AlertBook::open(&dir).unwrap();
    let mut raised = Vec::new();
    for i in 0..5 {
        book.queue(alert(i));
        raised.push(format!("alert-{i:04}"));
        assert!(book.write_pending().1.is_none());
    }
    book.sync().unwrap();

    let filler = fs.fill();
    let mut i = 5;
    let error = loop {
        assert!(i < 500, "the disk never filled up");
        book.queue(alert(i));
        raised.push(format!("alert-{i:04}"));
        i += 1;
        if let Some(e) = book.write_pending().1 {
            break e;
        }
        book.sync().unwrap();
    };
    assert_eq!(error.raw_os_error(), Some(ENOSPC));
    assert!(!book.is_durable(), "the refused alert stays queued");
    let len = std::fs::metadata(dir.join(ALERTS_FILE)).unwrap().len();
    let text = std::fs::read_to_string(dir.join(ALERTS_FILE)).unwrap();
    assert!(
        text.ends_with('\n'),
        "the failed write was cut off: no partial line"
    );
    // Retrying while full changes nothing.
    book.queue(alert(i));
    raised.push(format!("alert-{i:04}"));
    assert!(book.write_pending().1.is_some());
    assert_eq!(std::fs::metadata(dir.join(ALERTS_FILE)).unwrap().len(), len);

    fs.free(&filler);
    let (written, failed) = book.write_pending();
    assert!(failed.is_none());
    assert_eq!(written.len(), 2, "both queued alerts are written, in order");
    book.sync().unwrap();
    assert!(book.is_durable());
    drop(book);

    assert_eq!(ids_on_disk(&dir), raised, "every alert once, in order");
    assert_eq!(AlertBook::open(&dir).unwrap().recovered_bytes(), 0);
}

#[test]
fn a_torn_alert_line_is_read_past_and_the_alerts_after_it_are_kept() {
    let dir = std::env::temp_dir().join(format!("pw-torn-alerts-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut book = AlertBook::open(&dir).unwrap();
    book.queue(alert(1));
    book.write_pending();
    drop(book);
    // A partial line left by an older version on a full disk, then whole lines after
    // it, then a line torn by a crash.
    let mut text = std::fs::read_to_string(dir.join(ALERTS_FILE)).unwrap();
    text.push_str("{\"alert_id\":\"alert-0002\",\"tena\n");
    let mut book2 = AlertBook::open(&dir).unwrap();
    drop(book2.write_pending());
    std::fs::write(dir.join(ALERTS_FILE), &text).unwrap();
    book2 = AlertBook::open(&dir).unwrap();
    book2.queue(alert(3));
    book2.queue(alert(4));
    assert!(book2.write_pending().1.is_none());
    drop(book2);
    let mut torn = std::fs::read(dir.join(ALERTS_FILE)).unwrap();
    torn.extend_from_slice(b"{\"alert_id\":\"alert-0005\",\"ten");
    std::fs::write(dir.join(ALERTS_FILE), &torn).unwrap();

    let book = AlertBook::open(&dir).unwrap();
    let ids: Vec<String> = book
        .after(0)
        .unwrap()
        .iter()
        .map(|l| l.alert.alert_id.clone())
        .collect();
    assert_eq!(ids, ["alert-0001", "alert-0003", "alert-0004"]);
    assert!(book.recovered_bytes() > 0);
    drop(book);
    let text = std::fs::read_to_string(dir.join(ALERTS_FILE)).unwrap();
    assert!(
        text.ends_with('\n') && !text.contains("alert-0005"),
        "the torn last line is cut"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// One message per event, each counted once as SEXUALIZATION on its sender's side; the
/// pair's first ones raise alerts.
fn event(pair: usize, n: usize) -> pb::ChatEvent {
    let line = common::msg(
        &format!("p{pair}-{n}"),
        &format!(
            "2026-03-01T{:02}:{:02}:{:02}Z",
            8 + n / 3600,
            n / 60 % 60,
            n % 60
        ),
        (&format!("u-a{pair}"), "ADULT"),
        (&format!("u-b{pair}"), "AGE_13_15"),
        "envoie une photo de toi nue",
    );
    pb::ChatEvent::from(&Event::from_json(&line, &Limits::default()).unwrap())
}

/// Publishes one event per pair; returns how many were accepted, and the refusals.
async fn publish_round(
    client: &mut pb::ingest_service_client::IngestServiceClient<tonic::transport::Channel>,
    pairs: usize,
    n: usize,
    acked: &mut HashMap<usize, usize>,
    accepted: &mut Vec<pb::ChatEvent>,
) -> Vec<String> {
    let events: Vec<pb::ChatEvent> = (0..pairs).map(|p| event(p, n)).collect();
    let results = client
        .publish_batch(pb::PublishBatchRequest {
            events: events.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    let mut refused = Vec::new();
    for (p, r) in results.into_iter().enumerate() {
        if r.accepted {
            *acked.entry(p).or_default() += 1;
            accepted.push(events[p].clone());
        } else {
            refused.push(r.reason);
        }
    }
    refused
}

async fn sexualization_count(
    admin: &mut pb::admin_service_client::AdminServiceClient<tonic::transport::Channel>,
    pair: usize,
) -> u32 {
    let summary = admin
        .get_pair(pb::GetPairRequest {
            tenant: "t".into(),
            user_a: format!("u-a{pair}"),
            user_b: format!("u-b{pair}"),
        })
        .await
        .unwrap_or_else(|s| panic!("pair {pair} lost: {s}"))
        .into_inner();
    summary
        .sides
        .iter()
        .filter(|s| s.user_id == format!("u-a{pair}"))
        .flat_map(|s| &s.signals)
        .filter(|s| s.category == "SEXUALIZATION")
        .map(|s| s.count)
        .sum()
}

/// One episode: events, a full disk (refusals, unready), space back (ready), 500 more
/// events, kill -9, restart; then each pair counts exactly its acknowledged events and
/// the alert log holds each alert once.
async fn disk_full_episode(round: usize) {
    const PAIRS: usize = 25;
    let fs = SmallFs::mount(&format!("serve-{round}"), 2 << 20);
    let dir = fs.path.join("data");
    let log = std::env::temp_dir().join(format!("pw-disk-full-{}-{round}.log", std::process::id()));
    let (grpc, http) = (common::free_port(), common::free_port());
    let mut child = common::KillOnDrop(common::spawn_server(&dir, grpc, http, Some(&log), &[]));
    common::wait_readyz(http, 200).await;
    let mut client =
        pb::ingest_service_client::IngestServiceClient::new(common::connect(grpc).await);
    let mut acked = HashMap::new();
    let mut accepted = Vec::new();
    let mut n = 0;
    for _ in 0..4 {
        assert!(
            publish_round(&mut client, PAIRS, n, &mut acked, &mut accepted)
                .await
                .is_empty()
        );
        n += 1;
    }

    let filler = fs.fill();
    let mut refusals = Vec::new();
    while refusals.is_empty() {
        assert!(n < 2000, "the disk never filled up");
        refusals = publish_round(&mut client, PAIRS, n, &mut acked, &mut accepted).await;
        n += 1;
    }
    assert!(
        refusals.iter().all(|r| r.contains("write-ahead log")),
        "{refusals:?}"
    );
    // Unready while the disk stays full (a checkpoint may give some space back: it is
    // taken again).
    let mut fillers = vec![filler];
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let code = common::readyz(http).await;
        if code == 503 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "/readyz answers {code} with a full disk"
        );
        fillers.push(fs.fill_more(fillers.len()));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // More refused events while it stays full.
    publish_round(&mut client, PAIRS, n, &mut acked, &mut accepted).await;
    n += 1;

    fillers.iter().for_each(|f| fs.free(f));
    common::wait_readyz(http, 200).await;
    for _ in 0..20 {
        assert!(
            publish_round(&mut client, PAIRS, n, &mut acked, &mut accepted)
                .await
                .is_empty()
        );
        n += 1;
    }
    child.0.kill().unwrap(); // SIGKILL
    child.0.wait().unwrap();

    let child = common::KillOnDrop(common::spawn_server(&dir, grpc, http, Some(&log), &[]));
    common::wait_readyz(http, 200).await;
    let mut admin = pb::admin_service_client::AdminServiceClient::new(common::connect(grpc).await);
    for pair in 0..PAIRS {
        assert_eq!(
            sexualization_count(&mut admin, pair).await as usize,
            acked[&pair],
            "round {round}, pair {pair}: every acknowledged event once, no refused one"
        );
    }
    // The alerts an uninterrupted engine raises on the acknowledged events, each once.
    let mut engine = common::engine();
    let mut expected = Vec::new();
    for e in &accepted {
        let e = pairwatch::proto::event_from_proto(e.clone(), &Limits::default()).unwrap();
        engine.process(&e, &mut expected);
    }
    let mut want: Vec<String> = expected.into_iter().map(|a| a.alert_id).collect();
    assert!(want.len() >= PAIRS, "each pair raised an alert");
    let text = std::fs::read_to_string(dir.join(ALERTS_FILE)).unwrap();
    let mut got: Vec<String> = text
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("every line an alert");
            v["alert_id"].as_str().unwrap().to_string()
        })
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got, want, "round {round}: every alert exactly once");
    drop(child);
    let server_log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!server_log.contains("panicked"), "{server_log}");
    let _ = std::fs::remove_file(log);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_after_a_disk_full_episode_keeps_every_acknowledged_event_exactly_once() {
    let rounds: usize = std::env::var("PAIRWATCH_DISK_FULL_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(20);
    for round in 0..rounds {
        tokio::time::timeout(Duration::from_secs(120), disk_full_episode(round))
            .await
            .unwrap_or_else(|_| panic!("round {round} timed out"));
    }
}
