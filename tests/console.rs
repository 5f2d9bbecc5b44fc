//! The moderators' console in a real browser: Debian's headless Chromium driven over
//! WebDriver against `pairwatch serve`. A moderator logs in, sees the worked example's
//! P0 at the top of the queue with its countdown running, opens it, unblurs an excerpt,
//! claims it with the keyboard, and resolves it as confirmed; a second session cannot
//! claim it meanwhile; requests without the session cookie or the console's header are
//! refused; a moderator of another tenant sees none of it.

mod common;

use common::webdriver::Driver;
use pairwatch::config::{Config, TokenGrant};
use pairwatch::detect::event::{Event, Limits};
use pairwatch::detect::time::{format_rfc3339, now_millis, MINUTE};
use pairwatch::proto::pb;
use pairwatch::server::start;
use std::time::{Duration, Instant};

const INGEST: &str = "console-ingest-token-0123";
const MODERATOR: &str = "console-moderator-token-01";
const OTHER_TENANT: &str = "console-us-moderator-token";
const WAIT: Duration = Duration::from_secs(15);

/// The worked example up to the scammer's reminder ("il te reste 55 min"), moved in time
/// so that reminder was sent a minute ago: its countdown then runs on the wall clock.
fn worked_example_now() -> Vec<pb::ChatEvent> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/sextortion_fr.jsonl"
    ))
    .unwrap();
    let events: Vec<Event> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| Event::from_json(l, &Limits::default()).unwrap())
        .take_while(|e| e.event_id != "e-17")
        .collect();
    let last = events.iter().map(|e| e.sent_at).max().unwrap();
    let shift = now_millis() - MINUTE - last;
    events
        .into_iter()
        .map(|mut e| {
            e.sent_at += shift;
            pb::ChatEvent::from(&e)
        })
        .collect()
}

async fn publish(grpc: std::net::SocketAddr, events: Vec<pb::ChatEvent>) {
    let ch = tonic::transport::Channel::from_shared(format!("http://{grpc}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut ingest = pb::ingest_service_client::IngestServiceClient::new(ch);
    let acks = ingest
        .publish_batch(common::scopes::authed(
            pb::PublishBatchRequest { events },
            INGEST,
        ))
        .await
        .unwrap()
        .into_inner()
        .results;
    assert!(acks.iter().all(|a| a.accepted), "{acks:?}");
}

fn config() -> Config {
    let dir = std::env::temp_dir().join(format!("pw-console-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut c = Config::default();
    c.server.grpc_addr = "127.0.0.1:0".into();
    c.server.http_addr = "127.0.0.1:0".into();
    c.server.data_dir = dir.display().to_string();
    c.auth.ingest_tokens = vec![INGEST.into()];
    c.auth.moderator_tokens = vec![MODERATOR.into()];
    c.auth.tokens = vec![TokenGrant {
        name: "us-moderators".into(),
        token: OTHER_TENANT.into(),
        role: "moderator".into(),
        tenants: vec!["game-us".into()],
        ..TokenGrant::default()
    }];
    c
}

/// Logs `name` in with `token`, and waits for the queue page.
async fn login(b: &common::webdriver::Browser<'_>, base: &str, name: &str, token: &str) {
    b.goto(&format!("{base}/desk")).await;
    // Without a session, the queue sends the browser to the login page.
    let who = b.wait("#moderator", WAIT).await;
    assert!(b.url().await.ends_with("/desk/login"));
    b.type_in(&who, name).await;
    let t = b.wait("#token", WAIT).await;
    b.type_in(&t, token).await;
    b.click(&b.wait("#sign-in", WAIT).await).await;
    b.wait("#me:not(:empty)", WAIT).await;
}

/// The alert ids of the queue's rows now, top first.
async fn rows(b: &common::webdriver::Browser<'_>) -> Vec<String> {
    let ids = b
        .run("return [...document.querySelectorAll('tr.alert-row')].map(r => r.dataset.id);")
        .await;
    serde_json::from_value(ids).unwrap()
}

fn row(id: &str) -> String {
    format!("tr.alert-row[data-id=\"{id}\"]")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moderator_works_the_queue_in_a_real_browser() {
    let driver = Driver::start().await;
    let server = start(config(), Default::default()).await.unwrap();
    let base = format!("http://{}", server.http_addr);
    publish(server.grpc_addr, worked_example_now()).await;

    let ana = driver.session(1280, 800).await;
    login(&ana, &base, "ana", MODERATOR).await;
    ana.wait("tr.alert-row", WAIT).await;
    let p0 = rows(&ana).await[0].clone();
    let badge = format!("{} .badge", row(&p0));
    assert_eq!(ana.text_until(&badge, WAIT, |t| !t.is_empty()).await, "P0");
    // The countdown to respond_by runs (under an hour left) and is not red yet.
    let countdown = format!("{} .countdown", row(&p0));
    let before = ana
        .text_until(&countdown, WAIT, |t| t.starts_with("0:5"))
        .await;
    ana.text_until(&countdown, WAIT, |t| t != before).await;
    let class = ana
        .run(&format!(
            "return document.querySelector({countdown:?}).className;"
        ))
        .await;
    assert_eq!(class, "countdown", "not under 15 minutes");
    std::fs::write(
        concat!(env!("CARGO_TARGET_TMPDIR"), "/console-queue.png"),
        ana.screenshot().await,
    )
    .unwrap();

    // Alert to screen: a new sextortion appears without a reload.
    let shown_before = rows(&ana).await.len();
    let t0 = Instant::now();
    publish(server.grpc_addr, fresh_sextortion()).await;
    while rows(&ana).await.len() == shown_before {
        assert!(t0.elapsed() < WAIT, "the new alert never showed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!(
        "alert to screen: {:?} (publish call included)",
        t0.elapsed()
    );

    // Open the P0, unblur an excerpt: it stays unblurred when the view re-renders.
    ana.click_css(&row(&p0), WAIT).await;
    ana.wait("#detail:not([hidden]) .timeline", WAIT).await;
    ana.click_css(".excerpt.blurred", WAIT).await;
    ana.wait(".excerpt:not(.blurred)", WAIT).await;
    let notice = ana.text_until(".notice", WAIT, |t| !t.is_empty()).await;
    assert!(
        notice.contains("3018"),
        "the French notice with its help line: {notice}"
    );
    let rules = ana
        .text_until("#detail .sidebyside", WAIT, |t| !t.is_empty())
        .await;
    assert!(
        rules.contains("sextortion.") && rules.contains("RECORDING_CLAIM"),
        "{rules}"
    );
    ana.run("document.getElementById('detail').scrollTop = 0; return null;")
        .await;
    std::fs::write(
        concat!(env!("CARGO_TARGET_TMPDIR"), "/console-alert.png"),
        ana.screenshot().await,
    )
    .unwrap();

    // Claim with the keyboard.
    ana.press("c").await;
    let holder = format!("{} .holder", row(&p0));
    ana.text_until(&holder, WAIT, |t| t == "you").await;

    // A second moderator, on a tablet, sees the claim and cannot take it.
    let ben = driver.session(820, 1180).await;
    login(&ben, &base, "ben", MODERATOR).await;
    ben.text_until(&holder, WAIT, |t| t == "ana").await;
    ben.click_css(&row(&p0), WAIT).await;
    ben.click_css("#claim", WAIT).await;
    ben.text_until("#status", WAIT, |t| t.contains("\"ana\""))
        .await;

    // Requests without the cookie, or without the console's header, are refused.
    let claim = format!("/desk/api/alerts/{p0}/claim");
    let status = |creds: &str, header: bool| {
        format!(
            "const done = arguments[0]; fetch({claim:?}, {{method: 'POST', credentials: '{creds}', \
             headers: {{'content-type': 'application/json'{}}}, body: '{{}}'}}).then(r => done(r.status));",
            if header { ", 'x-pairwatch-console': '1'" } else { "" }
        )
    };
    assert_eq!(ben.run_async(&status("omit", true)).await, 401);
    assert_eq!(ben.run_async(&status("same-origin", false)).await, 403);
    ben.close().await;

    // A moderator of another tenant sees nothing of this one.
    let us = driver.session(1280, 800).await;
    login(&us, &base, "cy", OTHER_TENANT).await;
    us.wait("#empty:not([hidden])", WAIT).await;
    assert!(rows(&us).await.is_empty());
    let fetch_alert = format!(
        "const done = arguments[0]; fetch('/desk/api/alerts/{p0}').then(r => done(r.status));"
    );
    assert_eq!(us.run_async(&fetch_alert).await, 404);
    us.close().await;

    // Resolve as confirmed with the keyboard: it leaves the queue.
    ana.press("1").await;
    let start = Instant::now();
    while rows(&ana).await.contains(&p0) {
        assert!(start.elapsed() < WAIT, "resolved alert still queued");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ana.text_until("#status", WAIT, |t| t.contains("confirmed"))
        .await;
    let metrics = common::http_get(server.http_addr, "/metrics").await.1;
    let confirmed: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("pairwatch_moderation_decisions_total{decision=\"confirmed\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(confirmed >= 1.0, "{metrics}");
    let audit =
        std::fs::read_to_string(std::path::Path::new(&config_dir()).join("decisions.jsonl"))
            .unwrap();
    assert!(audit.contains("\"moderator_id\":\"ana\"") && audit.contains("CONFIRMED"));
    ana.close().await;
    server.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(config_dir());
}

fn config_dir() -> String {
    std::env::temp_dir()
        .join(format!("pw-console-{}", std::process::id()))
        .display()
        .to_string()
}

/// Another pair's sextortion, dated now.
fn fresh_sextortion() -> Vec<pb::ChatEvent> {
    let now = now_millis();
    let at = |m: i64| format_rfc3339(now - m * MINUTE);
    let s = ("console-s", "ADULT");
    let v = ("console-v", "AGE_13_15");
    vec![
        common::desk::event(
            "game-eu",
            "console-e1",
            &at(5),
            s,
            v,
            "t'es trop mignonne, envoie une photo de toi",
        ),
        common::desk::event("game-eu", "console-e2", &at(4), v, s, ""),
        common::desk::event(
            "game-eu",
            "console-e3",
            &at(3),
            s,
            v,
            "j'ai tout enregistré. envoie 200€ en PCS sinon j'envoie tout à tes potes",
        ),
    ]
}
