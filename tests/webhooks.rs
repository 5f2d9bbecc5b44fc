//! Webhook delivery against local receivers: signed POSTs, retries that follow the
//! answers (503, then success; 429 with `Retry-After`), dead letters after `max_age` or
//! a refusal, each destination's tenants and minimum priority, a stalled destination that does not delay a healthy one, and delivery
//! resumed after `kill -9` of the real binary with no alert lost.

mod common;

use common::receiver::{receiver, verify, Answer};
use pairwatch::config::{Config, Webhook};
use pairwatch::proto::pb;
use pairwatch::server::{start, Running};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

const SECRET: &str = "webhook-secret-0123456789";
const TENANT: &str = "hooks";

fn webhook(url: &str, max_age: &str) -> Webhook {
    Webhook {
        url: url.into(),
        secret: SECRET.into(),
        min_priority: "P0".into(),
        tenants: vec![TENANT.into()],
        timeout: "2s".into(),
        max_age: max_age.into(),
        ..Webhook::default()
    }
}

fn data_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pw-hooks-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn config(dir: &Path, hooks: Vec<Webhook>) -> Config {
    let mut c = Config::default();
    c.server.grpc_addr = "127.0.0.1:0".into();
    c.server.http_addr = "127.0.0.1:0".into();
    c.server.data_dir = dir.display().to_string();
    c.shards.count = 2;
    c.engine.deadline_clock = "1h".into();
    c.sinks.webhooks = hooks;
    c
}

/// Sextortions of `n` pairs, numbered from `from`: one P0 alert each.
async fn raise(ch: &Channel, from: usize, n: usize) {
    raise_in(ch, TENANT, from, n).await
}

/// Publishes `events`, every one accepted.
async fn publish(ch: &Channel, events: Vec<pb::ChatEvent>) {
    let mut ingest = pb::ingest_service_client::IngestServiceClient::new(ch.clone());
    for chunk in events.chunks(900) {
        let acks = ingest
            .publish_batch(pb::PublishBatchRequest {
                events: chunk.to_vec(),
            })
            .await
            .unwrap()
            .into_inner()
            .results;
        assert!(acks.iter().all(|a| a.accepted), "{acks:?}");
    }
}

/// [`raise`] in `tenant`.
async fn raise_in(ch: &Channel, tenant: &str, from: usize, n: usize) {
    let mut events = Vec::new();
    for i in from..from + n {
        let (s, v) = (format!("hook-s{i}"), format!("hook-v{i}"));
        let (s, v) = ((s.as_str(), "ADULT"), (v.as_str(), "AGE_13_15"));
        let id = |k: u32| format!("hook-{i}-e{k}");
        events.push(common::desk::event(
            tenant,
            &id(1),
            "2026-03-01T20:00:00Z",
            s,
            v,
            "t'es trop mignon, envoie une photo de toi",
        ));
        events.push(common::desk::event(
            tenant,
            &id(2),
            "2026-03-01T20:05:00Z",
            v,
            s,
            "",
        ));
        events.push(common::desk::event(
            tenant,
            &id(3),
            "2026-03-01T20:06:00Z",
            s,
            v,
            "j'ai tout enregistré. envoie 200€ en PCS sinon j'envoie tout à tes potes",
        ));
    }
    publish(ch, events).await;
}

async fn until<T>(within: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn metric(s: &Running, name: &str) -> f64 {
    let text = common::http_get(s.http_addr, "/metrics").await.1;
    pairwatch::metrics::sample_sum(&text, name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_alerts_arrive_and_retries_follow_the_answers() {
    let (url, r) = receiver(
        &[
            Answer::Status(503),
            Answer::Status(503),
            Answer::Ok,
            Answer::RetryAfter(1),
            Answer::Ok,
        ],
        Answer::Ok,
        Duration::ZERO,
    )
    .await;
    let dir = data_dir("signed");
    let s = start(config(&dir, vec![webhook(&url, "1h")]), Default::default())
        .await
        .unwrap();
    let ch = common::channel(s.grpc_addr).await;
    raise(&ch, 0, 1).await;
    let first = until(Duration::from_secs(15), "first alert", || {
        r.delivered().first().cloned()
    })
    .await;
    let tries = r.of(&first.alert_id);
    assert_eq!(
        tries.iter().map(|g| g.answered).collect::<Vec<_>>(),
        [503, 503, 200]
    );
    tries.iter().for_each(|g| verify(g, SECRET));
    assert!(
        tries[1].at - tries[0].at >= Duration::from_millis(250),
        "backoff"
    );

    raise(&ch, 1, 1).await;
    let second = until(Duration::from_secs(15), "second alert", || {
        r.delivered().get(1).cloned()
    })
    .await;
    let tries = r.of(&second.alert_id);
    assert_eq!(
        tries.iter().map(|g| g.answered).collect::<Vec<_>>(),
        [429, 200]
    );
    assert!(
        tries[1].at - tries[0].at >= Duration::from_secs(1),
        "Retry-After honoured: {:?}",
        tries[1].at - tries[0].at
    );
    let label = |o: &str| {
        format!("pairwatch_webhook_deliveries_total{{destination=\"0\",outcome=\"{o}\"}}")
    };
    assert_eq!(metric(&s, &label("delivered")).await, 2.0);
    assert_eq!(metric(&s, &label("retried")).await, 3.0);
    assert_eq!(
        metric(&s, "pairwatch_webhook_queue_depth{destination=\"0\"}").await,
        0.0
    );
    s.stop().await.unwrap();
}

fn dead_letters(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("webhooks.dead.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_failing_past_max_age_or_refused_goes_to_the_dead_letters() {
    let (url, r) = receiver(&[], Answer::Status(500), Duration::ZERO).await;
    let dir = data_dir("dead");
    let s = start(config(&dir, vec![webhook(&url, "2s")]), Default::default())
        .await
        .unwrap();
    let ch = common::channel(s.grpc_addr).await;
    raise(&ch, 0, 1).await;
    let dead = until(Duration::from_secs(15), "dead letter", || {
        dead_letters(&dir).into_iter().next()
    })
    .await;
    let tries = r.got.lock().unwrap().clone();
    assert!(tries.len() >= 2, "retried first: {}", tries.len());
    assert_eq!(dead["alert_id"], tries[0].alert_id.as_str());
    assert_eq!(dead["destination"], 0);
    assert!(
        dead["reason"].as_str().unwrap().contains("http 500 after"),
        "{dead}"
    );
    // A 400 is the receiver refusing this alert: not retried.
    *r.otherwise.lock().unwrap() = Answer::Status(400);
    raise(&ch, 1, 1).await;
    let refused = until(Duration::from_secs(15), "second dead letter", || {
        dead_letters(&dir).get(1).cloned()
    })
    .await;
    assert!(
        refused["reason"]
            .as_str()
            .unwrap()
            .contains("http 400 (not retried)"),
        "{refused}"
    );
    assert_eq!(r.of(refused["alert_id"].as_str().unwrap()).len(), 1);
    let dead_count = metric(
        &s,
        "pairwatch_webhook_deliveries_total{destination=\"0\",outcome=\"dead_lettered\"}",
    )
    .await;
    assert_eq!(dead_count, 2.0);
    let text = std::fs::read_to_string(dir.join("webhooks.dead.jsonl")).unwrap();
    assert!(
        !text.contains("hook-s") && !text.contains("envoie"),
        "no user id, no text"
    );
    s.stop().await.unwrap();
}

/// The alerts a receiver got, by id, each as its body says: (tenant, priority).
fn got_alerts(r: &common::receiver::Receiver) -> BTreeMap<String, (String, String)> {
    r.delivered()
        .iter()
        .map(|g| {
            let a: serde_json::Value = serde_json::from_slice(&g.body).unwrap();
            let field = |k: &str| a[k].as_str().unwrap_or_default().to_string();
            (g.alert_id.clone(), (field("tenant"), field("priority")))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_destination_gets_only_its_tenants_and_priorities() {
    let (p0_url, p0_here) = receiver(&[], Answer::Ok, Duration::ZERO).await;
    let (all_url, all) = receiver(&[], Answer::Ok, Duration::ZERO).await;
    let (none_url, none) = receiver(&[], Answer::Ok, Duration::ZERO).await;
    let dir = data_dir("filters");
    let mut everything = webhook(&all_url, "1h");
    everything.tenants = vec!["*".into()];
    everything.min_priority = "P3".into();
    let mut elsewhere = webhook(&none_url, "1h");
    elsewhere.tenants = vec!["hooks-nobody".into()];
    elsewhere.min_priority = "P3".into();
    let s = start(
        config(&dir, vec![webhook(&p0_url, "1h"), everything, elsewhere]),
        Default::default(),
    )
    .await
    .unwrap();
    let ch = common::channel(s.grpc_addr).await;
    raise(&ch, 0, 2).await;
    raise_in(&ch, "hooks-other", 2, 2).await;
    // A first-day request for a picture of a minor, nothing more: below P0.
    let (sus, kid) = (("hook-low-s", "ADULT"), ("hook-low-v", "AGE_13_15"));
    publish(
        &ch,
        vec![
            common::desk::event(
                TENANT,
                "hook-low-1",
                "2026-03-01T21:00:00Z",
                sus,
                kid,
                "cc t'as quel âge ?",
            ),
            common::desk::event(
                TENANT,
                "hook-low-2",
                "2026-03-01T21:01:00Z",
                kid,
                sus,
                "14 ans et toi",
            ),
            common::desk::event(
                TENANT,
                "hook-low-3",
                "2026-03-01T21:02:00Z",
                sus,
                kid,
                "t'es trop mignonne, envoie moi une photo de toi en maillot",
            ),
        ],
    )
    .await;
    let everything = until(Duration::from_secs(10), "every alert at P3+", || {
        let got = got_alerts(&all);
        let below_p0 = got.values().any(|(_, p)| p != "P0");
        (got.values().filter(|(_, p)| p == "P0").count() == 4 && below_p0).then_some(got)
    })
    .await;
    assert!(
        everything.values().any(|(t, _)| t == "hooks-other"),
        "{everything:?}"
    );
    let p0 = until(
        Duration::from_secs(10),
        "the P0 alerts of its tenant",
        || {
            let got = got_alerts(&p0_here);
            (got.len() >= 2).then_some(got)
        },
    )
    .await;
    assert_eq!(p0.len(), 2, "{p0:?}");
    assert!(p0.values().all(|(t, p)| t == TENANT && p == "P0"), "{p0:?}");
    // The destination of no tenant here got nothing, and was never counted as sending.
    assert!(none.got.lock().unwrap().is_empty());
    assert_eq!(
        metric(
            &s,
            "pairwatch_webhook_deliveries_total{destination=\"2\",outcome=\"delivered\"}"
        )
        .await,
        0.0
    );
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_destination_does_not_delay_a_healthy_one() {
    let (stalled_url, stalled) = receiver(&[], Answer::Stall, Duration::ZERO).await;
    let (healthy_url, healthy) = receiver(&[], Answer::Ok, Duration::ZERO).await;
    let dir = data_dir("stalled");
    let mut hang = webhook(&stalled_url, "1h");
    hang.timeout = "60s".into();
    let s = start(
        config(&dir, vec![hang, webhook(&healthy_url, "1h")]),
        Default::default(),
    )
    .await
    .unwrap();
    let ch = common::channel(s.grpc_addr).await;
    let t0 = Instant::now();
    raise(&ch, 0, 3).await;
    until(Duration::from_secs(5), "the healthy destination", || {
        (healthy.delivered().len() == 3).then_some(())
    })
    .await;
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert_eq!(stalled.got.lock().unwrap().len(), 1, "one request hangs");
    assert_eq!(
        metric(&s, "pairwatch_webhook_queue_depth{destination=\"1\"}").await,
        0.0
    );
    // Shutdown does not wait for the hanging request.
    let stop = Instant::now();
    s.stop().await.unwrap();
    assert!(stop.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_resumes_after_kill_9_and_loses_no_alert() {
    let (url, r) = receiver(&[], Answer::Ok, Duration::from_millis(50)).await;
    let dir = data_dir("kill");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("pairwatch.toml");
    std::fs::write(
        &file,
        format!(
            "[[sinks.webhooks]]\nurl = {url:?}\nsecret = {SECRET:?}\nmin_priority = \"P0\"\ntenants = [{TENANT:?}]\n"
        ),
    )
    .unwrap();
    let (grpc, http) = (common::free_port(), common::free_port());
    let args = ["--config", file.to_str().unwrap()];
    let env = [("PAIRWATCH__ENGINE__DEADLINE_CLOCK", "1h")];
    let mut child = common::spawn_server_with(&dir, grpc, http, None, &env, &args);
    common::wait_readyz(http, 200).await;
    let addr = SocketAddr::from(([127, 0, 0, 1], grpc));
    let pairs = 40;
    raise(&common::channel(addr).await, 0, pairs).await;
    until(Duration::from_secs(20), "some deliveries", || {
        (r.delivered().len() >= 5).then_some(())
    })
    .await;
    child.kill().unwrap(); // SIGKILL, mid-backlog
    child.wait().unwrap();
    let before = r.delivered().len();
    assert!(before < pairs, "killed with a backlog: {before}");
    let mut child = common::spawn_server_with(&dir, grpc, http, None, &env, &args);
    common::wait_readyz(http, 200).await;
    let per_alert = until(Duration::from_secs(30), "every alert", || {
        let mut n: BTreeMap<String, usize> = BTreeMap::new();
        for g in r.delivered() {
            *n.entry(g.alert_id).or_default() += 1;
        }
        (n.len() == pairs).then_some(n)
    })
    .await;
    let duplicates: usize = per_alert.values().map(|n| n - 1).sum();
    println!("{pairs} alerts, {duplicates} delivered twice across the kill");
    assert!(
        duplicates <= 1,
        "at most the alert in flight: {per_alert:?}"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Throughput to one local receiver while a second destination is down (connections
/// refused, retried). `cargo test --release --test webhooks measure -- --ignored
/// --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn measure_webhook_throughput_with_one_destination_down() {
    let (url, r) = receiver(&[], Answer::Ok, Duration::ZERO).await;
    let down = format!("http://127.0.0.1:{}/hook", common::free_port());
    let dir = data_dir("measure");
    let mut c = config(&dir, vec![webhook(&down, "1h"), webhook(&url, "1h")]);
    c.durability.fsync = true;
    let s = start(c, Default::default()).await.unwrap();
    let ch = common::channel(s.grpc_addr).await;
    let n = 5000;
    let t0 = Instant::now();
    raise(&ch, 0, n).await;
    let published = t0.elapsed();
    until(Duration::from_secs(300), "all delivered", || {
        (r.delivered().len() == n).then_some(())
    })
    .await;
    let all = t0.elapsed();
    let got = r.delivered();
    let first = got.first().unwrap().at;
    let last = got.last().unwrap().at;
    println!(
        "{n} alerts: published in {published:?}, all delivered {all:?} after the first publish; \
         delivery rate {:.0} alerts/s (first to last delivery), {:.0} alerts/s end to end",
        (n - 1) as f64 / (last - first).as_secs_f64(),
        n as f64 / all.as_secs_f64()
    );
    s.stop().await.unwrap();
}
