//! The moderators' console in a real browser: Debian's headless Chromium driven over
//! WebDriver against `pairwatch serve`. A moderator logs in, sees the worked example's
//! P0 at the top of the queue with its countdown running, opens it, unblurs an excerpt,
//! claims it with the keyboard, and resolves it as confirmed; a second session cannot
//! claim it meanwhile; requests without the session cookie or the console's header are
//! refused; a moderator of another tenant sees none of it. With no token, the console is
//! open on loopback only.

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

fn config(name: &str) -> Config {
    let _ = std::fs::remove_dir_all(data_dir(name));
    let mut c = Config::default();
    c.server.grpc_addr = "127.0.0.1:0".into();
    c.server.http_addr = "127.0.0.1:0".into();
    c.server.data_dir = data_dir(name);
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
    let server = start(config("browser"), Default::default()).await.unwrap();
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
        std::fs::read_to_string(std::path::Path::new(&data_dir("browser")).join("decisions.jsonl"))
            .unwrap();
    assert!(audit.contains("\"moderator_id\":\"ana\"") && audit.contains("CONFIRMED"));
    ana.close().await;
    server.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(data_dir("browser"));
}

/// With no token configured, a login is accepted only on a loopback HTTP port and under
/// a loopback name: not from a page of another site whose name points at 127.0.0.1, and
/// not at all when the port listens on every address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_token_the_console_opens_only_on_loopback() {
    let login = |host: &str, extra: &str| {
        let body = r#"{"moderator":"ana"}"#;
        format!(
            "POST /desk/api/login HTTP/1.1\r\nHost: {host}\r\nx-pairwatch-console: 1\r\n{extra}\
             content-type: application/json\r\ncontent-length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let proxied = "x-forwarded-for: 203.0.113.7\r\n";
    for (bind, host, extra, want) in [
        ("127.0.0.1:0", "127.0.0.1", "", 200),
        ("127.0.0.1:0", "localhost", "", 200),
        ("127.0.0.1:0", "rebound.example", "", 403),
        ("127.0.0.1:0", "127.0.0.1", proxied, 403),
        ("0.0.0.0:0", "127.0.0.1", "", 403),
    ] {
        let dir = data_dir("open");
        let _ = std::fs::remove_dir_all(&dir);
        let mut c = Config::default();
        c.server.grpc_addr = "127.0.0.1:0".into();
        c.server.http_addr = bind.into();
        c.server.data_dir = dir.clone();
        let server = start(c, Default::default()).await.unwrap();
        let at = std::net::SocketAddr::from(([127, 0, 0, 1], server.http_addr.port()));
        let port = at.port();
        let (status, body) = common::http(at, &login(&format!("{host}:{port}"), extra)).await;
        assert_eq!(status, want, "{bind} as {host} {extra}: {body}");
        if want == 403 {
            assert!(body.contains("configure moderator tokens"), "{body}");
        }
        server.stop().await.unwrap();
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// A raw HTTP/1.1 conversation with the console: the session cookie of a login, then
/// requests with it.
struct Client {
    at: std::net::SocketAddr,
    cookie: String,
}

impl Client {
    async fn login(at: std::net::SocketAddr, moderator: &str, token: &str) -> Client {
        let body = format!(r#"{{"moderator":"{moderator}","token":"{token}"}}"#);
        let mut s = tokio::net::TcpStream::connect(at).await.unwrap();
        let req = format!(
            "POST /desk/api/login HTTP/1.1\r\nHost: 127.0.0.1\r\nx-pairwatch-console: 1\r\n\
             content-type: application/json\r\ncontent-length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let answer = exchange(&mut s, &req).await;
        let cookie = answer
            .lines()
            .find_map(|l| l.strip_prefix("set-cookie: "))
            .and_then(|c| c.split(';').next())
            .unwrap_or_else(|| panic!("no cookie: {answer}"))
            .to_string();
        Client { at, cookie }
    }

    /// A request with the session; the server closes the connection after answering.
    fn request(&self, method: &str, path: &str) -> String {
        format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {}\r\nx-pairwatch-console: 1\r\n\
             content-length: 0\r\nConnection: close\r\n\r\n",
            self.cookie,
        )
    }

    /// A whole answer: status line, headers and body.
    async fn send(&self, method: &str, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(self.at).await.unwrap();
        exchange(&mut s, &self.request(method, path)).await
    }

    /// The session's event stream, open: its answer's head has arrived, so the server
    /// follows the feed from here on.
    async fn events(&self) -> tokio::net::TcpStream {
        use tokio::io::AsyncWriteExt;
        let mut s = tokio::net::TcpStream::connect(self.at).await.unwrap();
        s.write_all(self.request("GET", "/desk/api/events").as_bytes())
            .await
            .unwrap();
        let mut head = String::new();
        let start = Instant::now();
        while !head.contains("\r\n\r\n") {
            assert!(
                start.elapsed() < WAIT,
                "no answer to the event stream: {head}"
            );
            head += &read_for(&mut s, Duration::from_millis(100)).await.0;
        }
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        s
    }
}

async fn exchange(s: &mut tokio::net::TcpStream, req: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// What the stream sends within `within`, and whether it ended.
async fn read_for(s: &mut tokio::net::TcpStream, within: Duration) -> (String, bool) {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let end = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(end, s.read(&mut buf)).await {
            Err(_) => return (String::from_utf8_lossy(&out).into_owned(), false),
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&out).into_owned(), true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// The console's API keeps to the session's tenants: its event stream, the alert and
/// its evidence package. The stream carries no alert content and ends with the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_api_keeps_to_the_session_tenants_and_ends_with_it() {
    let server = start(config("api"), Default::default()).await.unwrap();
    let at = server.http_addr;
    let ana = Client::login(at, "ana", MODERATOR).await;
    let cy = Client::login(at, "cy", OTHER_TENANT).await;
    let (mut ana_events, mut cy_events) = (ana.events().await, cy.events().await);
    publish(server.grpc_addr, worked_example_now()).await;

    let start = Instant::now();
    let mut seen = String::new();
    while !seen.contains("event: alert") {
        assert!(start.elapsed() < WAIT, "no alert event: {seen}");
        seen += &read_for(&mut ana_events, Duration::from_millis(200))
            .await
            .0;
    }
    let data = seen
        .lines()
        .skip_while(|l| *l != "event: alert")
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap();
    let data: serde_json::Value = serde_json::from_str(data).unwrap();
    let id = data["alert_id"].as_str().unwrap().to_string();
    assert_eq!(
        data.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["alert_id", "cursor"],
        "the stream names the alert, no more"
    );
    let (other, _) = read_for(&mut cy_events, Duration::from_millis(500)).await;
    assert!(!other.contains("event: alert"), "{other}");

    let package = format!("/desk/api/alerts/{id}/package");
    assert!(ana
        .send("GET", &package)
        .await
        .contains("pairwatch.evidence_package.v1"));
    for path in [package.clone(), format!("/desk/api/alerts/{id}")] {
        let answer = cy.send("GET", &path).await;
        assert!(answer.starts_with("HTTP/1.1 404"), "{path}: {answer}");
        assert!(!answer.contains("game-eu"), "{answer}");
    }

    // After logout, the stream ends; the next alert is not sent on it.
    assert!(ana
        .send("POST", "/desk/api/logout")
        .await
        .starts_with("HTTP/1.1 200"));
    publish(server.grpc_addr, fresh_sextortion()).await;
    let (after, ended) = read_for(&mut ana_events, Duration::from_secs(20)).await;
    assert!(ended, "the stream outlived its session: {after}");
    assert!(!after.contains("event: alert"), "{after}");
    assert!(ana
        .send("GET", "/desk/api/me")
        .await
        .starts_with("HTTP/1.1 401"));
    server.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(data_dir("api"));
}

fn data_dir(name: &str) -> String {
    std::env::temp_dir()
        .join(format!("pw-console-{}-{name}", std::process::id()))
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
