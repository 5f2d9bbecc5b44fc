//! Event time per tenant: one tenant's clock (however wrong) never changes what another
//! tenant's pairs become. A property test runs random interleavings of two tenants'
//! events through one engine and tenant A's events alone through another, and asks for
//! the same pairs and alerts for A. Also: the late-event counter, the future-skew option
//! of `replay` and of the configuration.

mod common;

use pairwatch::config::Config;
use pairwatch::detect::alert::Alert;
use pairwatch::detect::engine::Engine;
use pairwatch::detect::event::{Event, Limits};
use pairwatch::detect::time::{format_rfc3339, parse_rfc3339, Millis, DAY, HOUR, MINUTE};
use pairwatch::metrics::{sample_sum, EngineCounters, Metrics};
use proptest::prelude::*;
use std::io::Write;
use std::process::{Command, Stdio};

/// Users of either tenant, with the age band the platform knows.
const USERS: [(&str, &str); 4] = [
    ("u1", "ADULT"),
    ("u2", "AGE_13_15"),
    ("u3", "UNKNOWN"),
    ("u4", "UNDER_13"),
];

/// Benign and risky lines, French and English.
const TEXTS: [&str; 16] = [
    "salut, ça va ?",
    "on fait une partie ce soir ?",
    "bien joué pour le tournoi",
    "hey, how was school today",
    "nice build, see you tomorrow",
    "t'es vraiment trop mignonne toi",
    "t'as quel âge ?",
    "j'ai 13 ans",
    "envoie moi une photo de toi en maillot",
    "dis rien à tes parents, c'est entre nous",
    "j'ai fait des captures de tout, tu payes 150€ ou je les montre à ta classe",
    "you look so mature for your age",
    "send me a pic, just for me",
    "i saved your photos. pay $200 in gift cards or your followers see them",
    "you have 20 minutes",
    "i'm 14",
];

/// When an event is dated, relative to 2026-03-01T00:00:00Z.
#[derive(Clone, Debug)]
enum When {
    /// Minutes after the start: ordinary traffic, somewhat out of order.
    Near(i64),
    /// Days after the start: pairs expire in between.
    Later(i64),
    /// Minutes after the start plus the pair TTL (30 days): pairs of the first days
    /// expire one by one, some while no sweep has run yet.
    AroundTtl(i64),
    /// A clock far ahead: the year 9998.
    FarFuture(i64),
    /// A clock far behind: 1970.
    FarPast(i64),
}

impl When {
    fn at(&self, start: Millis) -> Millis {
        match self {
            When::Near(m) => start + m * MINUTE,
            When::Later(d) => start + d * DAY,
            When::AroundTtl(m) => start + 30 * DAY + m * MINUTE,
            When::FarFuture(h) => parse_rfc3339("9998-06-01T00:00:00Z").unwrap() + h * HOUR,
            When::FarPast(h) => h * HOUR,
        }
    }
}

#[derive(Clone, Debug)]
struct Step {
    tenant_b: bool,
    from: usize,
    to: usize,
    when: When,
    text: usize,
    image: bool,
    /// Reuse the previous event id of the stream (a client's retry).
    retry: bool,
}

fn when() -> impl Strategy<Value = When> {
    prop_oneof![
        8 => (0i64..300).prop_map(When::Near),
        6 => (0i64..300).prop_map(When::AroundTtl),
        1 => (0i64..90).prop_map(When::Later),
        1 => (0i64..48).prop_map(When::FarFuture),
        1 => (0i64..48).prop_map(When::FarPast),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    (
        any::<bool>(),
        0..USERS.len(),
        1..USERS.len(),
        when(),
        0..TEXTS.len(),
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(tenant_b, from, d, when, text, image, retry)| Step {
            tenant_b,
            from,
            to: (from + d) % USERS.len(),
            when,
            text,
            image,
            retry,
        })
}

fn event(
    id: &str,
    tenant: &str,
    at: Millis,
    from: usize,
    to: usize,
    text: &str,
    image: bool,
) -> Event {
    let attachments = if image {
        serde_json::json!([{"kind": "IMAGE"}])
    } else {
        serde_json::json!([])
    };
    let line = serde_json::json!({
        "event_id": id, "tenant": tenant, "sent_at": format_rfc3339(at),
        "sender": {"user_id": USERS[from].0, "age_band": USERS[from].1},
        "recipient": {"user_id": USERS[to].0, "age_band": USERS[to].1},
        "message": {"text": text, "attachments": attachments}
    });
    // No future-skew limit: pure event time, far future accepted (as in replay).
    Event::from_json(&line.to_string(), &Limits::default()).expect("valid event")
}

/// The events of the steps, ids numbered per tenant stream.
fn events(steps: &[Step]) -> Vec<Event> {
    let start = parse_rfc3339("2026-03-01T00:00:00Z").unwrap();
    let mut next = [0usize; 2];
    steps
        .iter()
        .map(|s| {
            let t = s.tenant_b as usize;
            let n = if s.retry && next[t] > 0 {
                next[t] - 1
            } else {
                next[t] += 1;
                next[t] - 1
            };
            event(
                &format!("e{n}"),
                ["A", "B"][t],
                s.when.at(start),
                s.from,
                s.to,
                TEXTS[s.text],
                s.image,
            )
        })
        .collect()
}

fn run(engine: &mut Engine, events: &[Event]) -> Vec<Alert> {
    let mut out = Vec::new();
    for e in events {
        engine.process(e, &mut out);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn another_tenants_events_never_change_a_tenants_pairs_or_alerts(
        steps in prop::collection::vec(step(), 1..60)
    ) {
        let all = events(&steps);
        let only_a: Vec<Event> = all.iter().filter(|e| e.tenant == "A").cloned().collect();
        let mut mixed = common::engine();
        let mut alone = common::engine();
        let mixed_alerts: Vec<Alert> =
            run(&mut mixed, &all).into_iter().filter(|a| a.tenant == "A").collect();
        let alone_alerts = run(&mut alone, &only_a);
        prop_assert_eq!(mixed_alerts, alone_alerts);
        for (a, _) in USERS {
            for (b, _) in USERS {
                if a < b {
                    prop_assert_eq!(mixed.pair("A", a, b), alone.pair("A", a, b), "pair {} {}", a, b);
                }
            }
        }
    }
}

#[test]
fn late_events_are_exported_as_a_counter() {
    let mut engine = common::engine();
    let start = parse_rfc3339("2026-03-01T00:00:00Z").unwrap();
    let metrics = Metrics::new();
    let mut counters = EngineCounters::default();
    run(
        &mut engine,
        &[
            event("e1", "A", start + 40 * DAY, 0, 1, TEXTS[0], false),
            event("e2", "A", start, 0, 1, TEXTS[1], false),
            event("e3", "A", start + DAY, 2, 1, TEXTS[1], false),
            // Not late for another tenant.
            event("e4", "B", start, 0, 1, TEXTS[1], false),
        ],
    );
    counters.observe(engine.stats(), &metrics);
    assert_eq!(engine.stats().late_events, 2);
    let text = metrics.render();
    assert_eq!(
        sample_sum(&text, "pairwatch_events_late_total"),
        2.0,
        "{text}"
    );
    // Observing again adds nothing new.
    counters.observe(engine.stats(), &metrics);
    assert_eq!(
        sample_sum(&metrics.render(), "pairwatch_events_late_total"),
        2.0
    );
    assert!(engine
        .pair("A", "u1", "u2")
        .is_some_and(|p| p.last_seen == start + 40 * DAY));
    assert!(engine.pair("A", "u3", "u2").is_none());
    // The new rejection reasons are labelled from the start.
    for reason in ["sent_at_in_future", "bad_id"] {
        let line = format!("pairwatch_ingest_rejected_total{{reason=\"{reason}\"}} 0");
        assert!(text.contains(&line), "{line}");
    }
}

#[test]
fn an_invalid_max_future_skew_is_reported() {
    let env = |v: &str| {
        vec![(
            "PAIRWATCH__LIMITS__MAX_FUTURE_SKEW".to_string(),
            v.to_string(),
        )]
    };
    for bad in ["soon", "0s", "-5m", "10 parsecs", ""] {
        let err = Config::load(None, env(bad)).unwrap_err().to_string();
        assert!(
            err.contains(&format!(
                "`limits.max_future_skew`: {bad:?} is not a duration"
            )),
            "{bad:?}: {err}"
        );
    }
    let c = Config::load(None, env("2h")).unwrap();
    assert_eq!(Config::duration(&c.limits.max_future_skew), 2 * HOUR);
    let default = Config::load(None, Vec::new()).unwrap();
    assert_eq!(
        Config::duration(&default.limits.max_future_skew),
        10 * MINUTE
    );
}

fn replay(args: &[&str], stdin: &str) -> (bool, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pairwatch"))
        .arg("replay")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pairwatch runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn replay_limits_future_skew_only_when_asked() {
    let now = pairwatch::detect::time::now_millis();
    let lines = [
        event("e1", "A", now - HOUR, 0, 1, TEXTS[0], false).to_json(),
        event("e2", "A", now + 31 * DAY, 0, 1, TEXTS[0], false).to_json(),
        event(
            "e3",
            "A",
            parse_rfc3339("9998-01-01T00:00:00Z").unwrap(),
            2,
            1,
            TEXTS[0],
            false,
        )
        .to_json(),
    ]
    .join("\n");
    let (ok, err) = replay(&[], &lines);
    assert!(ok, "{err}");
    assert!(err.contains("3 events, 0 rejected"), "{err}");
    let (ok, err) = replay(&["--max-future-skew", "10m"], &lines);
    assert!(ok, "{err}");
    assert!(err.contains("1 events, 2 rejected"), "{err}");
    assert!(
        err.contains("line 2: rejected: field `sent_at` is"),
        "{err}"
    );
    assert!(err.contains("over the allowed skew of 10m"), "{err}");
    let (ok, err) = replay(&["--max-future-skew", "soon"], &lines);
    assert!(!ok);
    assert!(err.contains("--max-future-skew"), "{err}");
}
