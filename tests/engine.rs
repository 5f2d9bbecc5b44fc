//! Engine behaviour on conversations built in the test: alert deduplication and
//! escalation, suspect inference, evidence, notices, the priority policy, expiry.

mod common;

use common::{image, msg, replay_lines};
use pairwatch::detect::event::{Event, Limits};
use pairwatch::detect::rules::{Pattern, Priority};
use sha2::{Digest, Sha256};

const ADULT: (&str, &str) = ("u-scam", "ADULT");
const TEEN: (&str, &str) = ("u-teen", "AGE_13_15");

fn sextortion(victim: (&str, &str), suspect: (&str, &str)) -> Vec<String> {
    vec![
        msg(
            "e1",
            "2026-03-01T20:00:00Z",
            suspect,
            victim,
            "hey cutie, send me a pic of you",
        ),
        image("e2", "2026-03-01T20:05:00Z", victim, suspect),
        msg(
            "e3",
            "2026-03-01T20:06:00Z",
            suspect,
            victim,
            "i screenshotted it. send $200 in gift cards or i'll send it to all your followers",
        ),
        msg(
            "e4",
            "2026-03-01T20:07:00Z",
            suspect,
            victim,
            "i'll send it to all your followers, i'm serious",
        ),
        msg(
            "e5",
            "2026-03-01T20:08:00Z",
            suspect,
            victim,
            "you have 30 minutes",
        ),
        msg(
            "e6",
            "2026-03-01T20:09:00Z",
            suspect,
            victim,
            "you have 30 minutes, i said",
        ),
        msg(
            "e7",
            "2026-03-01T20:20:00Z",
            suspect,
            victim,
            "ok you have 10 minutes now",
        ),
    ]
}

#[test]
fn one_alert_while_it_stands_a_new_one_when_priority_rises_or_a_deadline_appears() {
    let adult_victim = ("u-victim", "ADULT");
    let alerts = replay_lines(&sextortion(adult_victim, ("u-scam", "UNKNOWN")).join("\n"));
    let got: Vec<(&str, Priority, Option<&str>)> = alerts
        .iter()
        .map(|a| {
            (
                a.trigger_event_id.as_str(),
                a.priority,
                a.respond_by.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            // Threat + material + money: active sextortion of an adult.
            ("e3", Priority::P1, None),
            // The repeated threat (e4) raises nothing; a countdown makes it P0 with a deadline.
            ("e5", Priority::P0, Some("2026-03-01T20:38:00Z")),
            // The same deadline restated (e6) raises nothing; a new deadline does.
            ("e7", Priority::P0, Some("2026-03-01T20:30:00Z")),
        ]
    );
    assert!(alerts
        .iter()
        .all(|a| a.pattern == Pattern::Sextortion && a.suspect.user_id == "u-scam"));
    // Deterministic ids: the same input gives the same ids, and every alert has its own.
    let again = replay_lines(&sextortion(adult_victim, ("u-scam", "UNKNOWN")).join("\n"));
    assert_eq!(
        alerts.iter().map(|a| &a.alert_id).collect::<Vec<_>>(),
        again.iter().map(|a| &a.alert_id).collect::<Vec<_>>()
    );
    assert_ne!(alerts[0].alert_id, alerts[1].alert_id);
}

#[test]
fn sextortion_of_a_minor_is_p0_and_names_the_right_suspect_whichever_id_sorts_first() {
    for (victim, suspect) in [
        (("a-victim", "AGE_13_15"), ("z-scam", "ADULT")),
        (("z-victim", "AGE_13_15"), ("a-scam", "ADULT")),
    ] {
        let alerts = replay_lines(&sextortion(victim, suspect)[..3].join("\n"));
        let a = alerts
            .iter()
            .find(|a| a.pattern == Pattern::Sextortion)
            .expect("sextortion alert");
        assert_eq!(a.priority, Priority::P0);
        assert_eq!(
            (a.suspect.user_id.as_str(), a.target.user_id.as_str()),
            (suspect.0, victim.0)
        );
        assert_eq!(a.target.age_band, "AGE_13_15");
        assert_eq!(a.first_contact_at, "2026-03-01T20:00:00Z");
    }
}

#[test]
fn evidence_quotes_the_original_text_with_its_hash() {
    let text = "Écoute bien : j'ai TOUT enregistré 📹 et je vais l'envoyer à tous tes contacts si tu paies pas 200€ en PCS";
    let lines = [
        msg("e1", "2026-03-01T20:00:00Z", ADULT, TEEN, "coucou"),
        msg("e2", "2026-03-01T20:01:00Z", ADULT, TEEN, text),
    ];
    let alerts = replay_lines(&lines.join("\n"));
    let a = alerts
        .iter()
        .find(|a| a.pattern == Pattern::Sextortion)
        .expect("alert");
    let ev = a
        .evidence
        .iter()
        .find(|e| e.event_id == "e2")
        .expect("evidence of e2");
    assert_eq!(ev.sender_id, "u-scam");
    assert!(
        text.contains(ev.excerpt.trim_matches('…')),
        "{:?}",
        ev.excerpt
    );
    let digest = Sha256::digest(text.as_bytes());
    assert_eq!(
        ev.sha256,
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    assert!(a
        .signals
        .iter()
        .any(|s| s.category == "THREAT_TO_DISTRIBUTE" && s.count == 1));
    assert!(!a.recommended_actions.is_empty());
    assert!(a.rules_version.starts_with("sha256:"));
}

#[test]
fn the_notice_follows_the_target_language() {
    let fr_target = ("u-teen", "AGE_13_15");
    let lines = [
        msg(
            "e0",
            "2026-03-01T19:59:00Z",
            fr_target,
            ADULT,
            "salut, tu fais quoi ? je suis chez moi avec mes parents",
        ),
        msg(
            "e1",
            "2026-03-01T20:00:00Z",
            ADULT,
            fr_target,
            "i recorded everything. send $300 or i'll send it to all your followers",
        ),
    ];
    let a = replay_lines(&lines.join("\n"))
        .into_iter()
        .next()
        .expect("alert");
    assert_eq!(a.victim_notice.language, "fr");
    assert!(a.victim_notice.text.contains("3018"));
    // A locale wins over the guess.
    let with_locale = lines[1].replace(
        r#""age_band":"AGE_13_15""#,
        r#""age_band":"AGE_13_15","locale":"en-US""#,
    );
    let a = replay_lines(&format!("{}\n{with_locale}", lines[0]))
        .into_iter()
        .next()
        .expect("alert");
    assert_eq!(a.victim_notice.language, "en");
    assert!(a.victim_notice.text.contains("Take It Down"));
}

fn solicitation(
    suspect: (&str, &str),
    target: (&str, &str),
) -> Vec<pairwatch::detect::alert::Alert> {
    let lines = [
        msg(
            "e1",
            "2026-03-01T20:00:00Z",
            suspect,
            target,
            "how old r u? ur so cute",
        ),
        msg(
            "e2",
            "2026-03-01T20:01:00Z",
            suspect,
            target,
            "are you a virgin? what are you wearing",
        ),
        msg(
            "e3",
            "2026-03-01T20:02:00Z",
            suspect,
            target,
            "send me a pic of you in your bra",
        ),
    ];
    replay_lines(&lines.join("\n"))
}

fn best(alerts: &[pairwatch::detect::alert::Alert]) -> Option<Priority> {
    alerts.iter().map(|a| a.priority).min()
}

#[test]
fn the_priority_policy_for_ages() {
    // Adult towards a known minor: rapid sexual solicitation, P1.
    let a = solicitation(ADULT, TEEN);
    assert!(
        a.iter()
            .any(|a| a.pattern == Pattern::SexualSolicitation && a.priority == Priority::P1),
        "{a:?}"
    );
    // Unknown towards unknown: possibly adult, possibly minor: one step lower.
    let unknown = solicitation(("u-x", "UNKNOWN"), ("u-y", "UNKNOWN"));
    assert_eq!(best(&unknown), Some(Priority::P2));
    // Two minors: at most a watch.
    let peers = solicitation(("u-x", "AGE_16_17"), TEEN);
    assert!(best(&peers).is_none_or(|p| p == Priority::P3), "{peers:?}");
    // Two adults: no alert.
    assert!(solicitation(ADULT, ("u-y", "ADULT")).is_empty());
    // Peers with threats and money are not capped.
    let lines = sextortion(TEEN, ("u-x", "AGE_16_17"));
    assert_eq!(
        best(&replay_lines(&lines[..3].join("\n"))),
        Some(Priority::P0)
    );
}

#[test]
fn self_harm_after_a_threat_is_p0_and_points_at_the_threatener() {
    let mut lines = sextortion(TEEN, ADULT)[..3].to_vec();
    lines.push(msg(
        "e9",
        "2026-03-01T20:10:00Z",
        TEEN,
        ADULT,
        "i want to die",
    ));
    let alerts = replay_lines(&lines.join("\n"));
    let a = alerts
        .iter()
        .find(|a| a.pattern == Pattern::SelfHarmRisk)
        .expect("self-harm alert");
    assert_eq!(
        (a.priority, a.suspect.user_id.as_str()),
        (Priority::P0, "u-scam")
    );
    assert_eq!(a.trigger_event_id, "e9");
}

#[test]
fn pairs_expire_after_the_ttl_and_users_can_be_forgotten() {
    let mut engine = common::engine();
    let mut out = Vec::new();
    let limits = Limits::default();
    let ev = |line: String| Event::from_json(&line, &limits).unwrap();
    engine.process(
        &ev(msg("e1", "2026-01-01T00:00:00Z", ADULT, TEEN, "hi")),
        &mut out,
    );
    engine.process(
        &ev(msg(
            "e2",
            "2026-01-01T00:00:00Z",
            ("u-a", "ADULT"),
            ("u-b", "ADULT"),
            "hi",
        )),
        &mut out,
    );
    assert_eq!(engine.pairs(), 2);
    // 31 days later, in event time, another pair's event sweeps both out.
    engine.process(
        &ev(msg(
            "e3",
            "2026-02-01T01:00:00Z",
            ("u-c", "ADULT"),
            ("u-d", "ADULT"),
            "hi",
        )),
        &mut out,
    );
    assert_eq!(engine.pairs(), 1);
    assert!(engine.pair("t", "u-scam", "u-teen").is_none());
    assert_eq!(engine.forget_user(Some("other-tenant"), "u-d"), 0);
    assert_eq!(engine.forget_user(Some("t"), "u-d"), 1);
    assert_eq!(engine.pairs(), 0);
    assert!(out.is_empty());
}

#[test]
fn memory_per_pair_is_bounded_whatever_the_conversation_length() {
    let mut engine = common::engine();
    let mut out = Vec::new();
    let limits = Limits::default();
    for i in 0..2_000 {
        let at = format!(
            "2026-03-01T{:02}:{:02}:{:02}Z",
            (i / 3600) % 24,
            (i / 60) % 60,
            i % 60
        );
        let line = msg(
            &format!("e{i}"),
            &at,
            ADULT,
            TEEN,
            "ur so cute, send me a pic of you, where do you live?",
        );
        engine.process(&Event::from_json(&line, &limits).unwrap(), &mut out);
    }
    let state = engine.pair("t", "u-scam", "u-teen").unwrap();
    let active = state.active.as_ref().unwrap();
    assert!(active.evidence.len() <= pairwatch::detect::state::MAX_EVIDENCE);
    // Alerts were raised once per pattern and priority, not once per message.
    assert!(out.len() <= 4, "{}", out.len());
}

#[test]
fn a_retried_event_is_counted_once() {
    let lines = sextortion(TEEN, ADULT);
    let once = replay_lines(&lines[..3].join("\n"));
    // A client retries e3 after a lost ack: same alerts, no double count.
    let retried = replay_lines(
        &[
            lines[0].clone(),
            lines[1].clone(),
            lines[2].clone(),
            lines[2].clone(),
        ]
        .join("\n"),
    );
    assert_eq!(once, retried);
    let mut engine = common::engine();
    let mut out = Vec::new();
    for l in [&lines[2], &lines[2]] {
        engine.process(&Event::from_json(l, &Limits::default()).unwrap(), &mut out);
    }
    assert_eq!(engine.stats().duplicates, 1);
    let state = engine.pair("t", "u-scam", "u-teen").unwrap();
    assert_eq!(
        state.count(0, pairwatch::detect::signal::Signal::ThreatToDistribute),
        1
    );
}
