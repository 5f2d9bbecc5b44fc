//! Eval on small labelled histories written here: an adult's sextortion of a 14-year-old
//! (English), an adult and a 14-year-old setting out their ages (French, an age-gap
//! opening), two teens arranging a game (French). The candidate packs are the embedded
//! pack with one rule removed, or turned into a shadow rule.

use super::*;
use crate::detect::engine::EngineConfig;
use crate::detect::pack::{RulePack, EMBEDDED};
use std::sync::Arc;

const TENANT: &str = "t1";
/// The rule that alone alerts on the age-gap opening.
const AGE_GAP: &str = "grooming.age_gap_opening";

/// One event line: `from` writes `text` to `to`; users are (id, age band).
fn event(id: &str, at: &str, from: (&str, &str), to: (&str, &str), text: &str) -> String {
    serde_json::json!({
        "event_id": id, "tenant": TENANT, "sent_at": at,
        "sender": {"user_id": from.0, "age_band": from.1},
        "recipient": {"user_id": to.0, "age_band": to.1},
        "message": {"text": text, "attachments": []}
    })
    .to_string()
}

/// A conversation between `a` and `b`, one (time, whether `a` writes, text) per message.
fn chat(a: (&str, &str), b: (&str, &str), messages: &[(&str, bool, &str)]) -> Vec<String> {
    messages
        .iter()
        .enumerate()
        .map(|(i, &(at, by_a, text))| {
            let (from, to) = if by_a { (a, b) } else { (b, a) };
            event(&format!("{}-{i}", a.0), at, from, to, text)
        })
        .collect()
}

/// Image request, recording claim, threat to send to friends, money demand, deadline.
fn sextortion() -> Vec<String> {
    chat(
        ("u-max", "ADULT"),
        ("u-lea", "AGE_13_15"),
        &[
            ("2026-03-01T20:00:00Z", true, "hey, send me a pic of you"),
            ("2026-03-01T20:02:00Z", false, "why?"),
            ("2026-03-01T20:05:00Z", true, "i recorded our call"),
            (
                "2026-03-01T20:06:00Z",
                true,
                "i will send it to all your friends",
            ),
            ("2026-03-01T20:07:00Z", true, "pay me 200 dollars"),
            (
                "2026-03-01T20:08:00Z",
                true,
                "you have 2 hours to pay or everyone sees it",
            ),
        ],
    )
}

/// An adult answers a 14-year-old's age with his own: only the age-gap rule alerts.
fn age_gap() -> Vec<String> {
    chat(
        ("u-sam", "ADULT"),
        ("u-zoe", "AGE_13_15"),
        &[
            (
                "2026-03-01T18:00:00Z",
                true,
                "trop bien ta construction dans le jeu",
            ),
            ("2026-03-01T18:01:00Z", false, "merci ! j'ai 14 ans au fait"),
            ("2026-03-01T18:02:00Z", true, "cool, moi j'ai 27 ans"),
        ],
    )
}

/// Two teens arrange a game.
fn game() -> Vec<String> {
    chat(
        ("u-tom", "AGE_13_15"),
        ("u-leo", "AGE_13_15"),
        &[
            (
                "2026-03-01T17:00:00Z",
                true,
                "on joue à minecraft ce soir ?",
            ),
            ("2026-03-01T17:01:00Z", false, "ouais je me connecte à 20h"),
            (
                "2026-03-01T17:02:00Z",
                true,
                "j'ai fini le niveau 12, t'es trop fort",
            ),
        ],
    )
}

fn label(a: &str, b: &str, pattern: Option<&str>) -> Label {
    let label = if pattern.is_some() {
        "POSITIVE"
    } else {
        "NEGATIVE"
    };
    Label {
        tenant: TENANT.into(),
        pair: [a.into(), b.into()],
        label: label.into(),
        pattern: pattern.map(str::to_string),
        suspect: pattern.map(|_| a.to_string()),
    }
}

/// The three conversations, in time order as a platform would log them.
fn history() -> (String, Vec<Label>) {
    let events = [game(), age_gap(), sextortion()].concat().join("\n");
    let labels = vec![
        label("u-max", "u-lea", Some("SEXTORTION")),
        label("u-sam", "u-zoe", Some("GROOMING")),
        label("u-tom", "u-leo", None),
    ];
    (events, labels)
}

/// The embedded pack with `edit` applied to `escalation.toml`.
fn pack_with(edit: impl Fn(&str) -> String) -> Arc<RulePack> {
    let files = EMBEDDED
        .iter()
        .map(|&(path, src)| {
            let src = if path == "escalation.toml" {
                edit(src)
            } else {
                src.to_string()
            };
            (format!("<test>/{path}"), path.to_string(), src)
        })
        .collect();
    Arc::new(RulePack::from_files(files).expect("valid pack"))
}

fn embedded() -> Arc<RulePack> {
    pack_with(str::to_string)
}

/// The `[[rule]]` block of `id`, up to the next `[[`.
fn rule_block(src: &str, id: &str) -> std::ops::Range<usize> {
    let start = src
        .find(&format!("[[rule]]\nid = \"{id}\""))
        .expect("rule in the pack");
    let end = src[start + 1..]
        .find("\n[[")
        .map_or(src.len(), |i| start + 1 + i + 1);
    start..end
}

fn without_rule(src: &str, id: &str) -> String {
    let block = rule_block(src, id);
    format!("{}{}", &src[..block.start], &src[block.end..])
}

fn as_shadow(src: &str, id: &str) -> String {
    let line = format!("id = \"{id}\"\n");
    src.replacen(&line, &format!("{line}mode = \"shadow\"\n"), 1)
}

/// One report per pack, the events read once.
fn run(events: &str, labels: &[Label], packs: &[Arc<RulePack>]) -> Vec<Report> {
    let mut engines: Vec<Engine> = packs
        .iter()
        .map(|p| Engine::new(p.clone(), EngineConfig::default()))
        .collect();
    evaluate_each(
        events.as_bytes(),
        labels,
        &mut engines,
        &Limits::default(),
        |_| {},
    )
    .expect("evaluated")
}

fn compared(candidate: Arc<RulePack>) -> Comparison {
    let (events, labels) = history();
    let mut reports = run(&events, &labels, &[embedded(), candidate]).into_iter();
    let (current, candidate) = (reports.next().unwrap(), reports.next().unwrap());
    compare(current, candidate, Priority::P2)
}

#[test]
fn the_embedded_pack_detects_both_positives_and_spares_the_game() {
    let (events, labels) = history();
    let report = run(&events, &labels, &[embedded()]).remove(0);
    assert_eq!((report.events, report.rejected), (12, 0));
    assert_eq!((report.positives, report.negatives), (2, 1));
    assert_eq!(report.detected[Priority::P2 as usize], 2);
    assert_eq!(report.false_alarms[Priority::P3 as usize], 0);
    assert_eq!(report.rule_fires.get(AGE_GAP), Some(&(1, 0)));
    assert!(report.shadow_fires.is_empty());
    assert!(!report.render().contains("shadow rule"));
}

#[test]
fn compare_shows_the_pair_lost_and_the_rule_row_changed() {
    let c = compared(pack_with(|s| without_rule(s, AGE_GAP)));
    assert_eq!(c.lost.positives, vec!["t1/u-sam/u-zoe".to_string()]);
    assert!(c.lost.negatives.is_empty());
    assert_eq!(c.gained, PairChanges::default());
    // The sextortion rules fire alike in both packs: only the removed rule's row.
    let row = RuleChange {
        rule: AGE_GAP.into(),
        current: Some(RuleFiring {
            positives: 1,
            negatives: 0,
            shadow: false,
        }),
        candidate: None,
    };
    assert_eq!(c.rules_changed, vec![row]);
    let text = c.render();
    let lost = "positives detected at P2+ only by the current pack: 1\n  t1/u-sam/u-zoe\n";
    assert!(text.contains(lost), "{text}");
    let gained = "positives detected at P2+ only by the candidate: 0\n";
    assert!(text.contains(gained), "{text}");
    assert!(
        text.contains("2/2      100.0% ->     1/2       50.0%    (-1)"),
        "{text}"
    );
    let row = text
        .lines()
        .find(|l| l.starts_with(AGE_GAP))
        .expect("rule row");
    assert_eq!(
        row.split_whitespace().collect::<Vec<_>>(),
        [AGE_GAP, "1/0", "-"]
    );
    // Pairs are named by ids only: no message text in the report.
    assert!(
        !text.contains("dollars") && !text.contains("27 ans"),
        "{text}"
    );
}

#[test]
fn a_shadow_rule_is_counted_per_pair_and_raises_no_alert() {
    let c = compared(pack_with(|s| as_shadow(s, AGE_GAP)));
    assert_eq!(c.candidate.shadow_fires.get(AGE_GAP), Some(&(1, 0)));
    assert_eq!(c.candidate.rule_fires.get(AGE_GAP), None);
    assert_eq!(c.lost.positives, vec!["t1/u-sam/u-zoe".to_string()]);
    assert_eq!(c.rules_changed.len(), 1);
    assert_eq!(
        c.rules_changed[0].candidate,
        Some(RuleFiring {
            positives: 1,
            negatives: 0,
            shadow: true,
        })
    );
    assert!(c.render().contains("1/0 (shadow)"), "{}", c.render());
    let table = c.candidate.render();
    assert!(table.contains("shadow rule"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == [AGE_GAP, "1", "0"]),
        "{table}"
    );
}

#[test]
fn json_has_the_figures_of_each_set() {
    let (events, labels) = history();
    let single = run(&events, &labels, &[embedded()]).remove(0);
    let comparison = compared(pack_with(|s| without_rule(s, AGE_GAP)));
    let sets = [
        SetResult::from_reports("history".into(), vec![single], Priority::P2).unwrap(),
        SetResult {
            name: "compared".into(),
            outcome: Outcome::Compare(Box::new(comparison)),
        },
    ];
    let doc: serde_json::Value =
        serde_json::from_str(&render_json(&sets, Priority::P2)).expect("valid JSON");
    assert_eq!(doc["threshold"], "P2");
    let set = &doc["sets"][0];
    assert_eq!(set["name"], "history");
    assert_eq!(
        (set["events"].as_u64(), set["rejected"].as_u64()),
        (Some(12), Some(0))
    );
    assert_eq!(
        (set["positives"].as_u64(), set["negatives"].as_u64()),
        (Some(2), Some(1))
    );
    let p2 = &set["thresholds"]["P2"];
    assert_eq!(p2["detected"], 2);
    assert_eq!(p2["suspect_right"], 2);
    assert_eq!(p2["false_alarms"], 0);
    assert_eq!(p2["recall"], 1.0);
    assert_eq!(p2["false_alarm_rate"], 0.0);
    assert!(p2["median_messages"].is_u64() && p2["median_minutes"].is_i64());
    assert_eq!(set["thresholds"]["P0"]["detected"], 1);
    assert_eq!(set["by_pattern"]["SEXTORTION"]["positives"], 1);
    assert_eq!(set["rule_fires"][AGE_GAP]["positives"], 1);
    assert_eq!(set["flags"]["DEADLINE"]["positives"], 1);
    assert_eq!(set["flags"]["SELF_HARM"]["positives"], 0);
    for key in [
        "by_language",
        "alerts_by_pattern",
        "shadow_fires",
        "updates",
        "unlabelled_alerts",
    ] {
        assert!(!set[key].is_null(), "{key} missing");
    }
    let cmp = &doc["sets"][1];
    assert_eq!(cmp["name"], "compared");
    assert_eq!(cmp["current"]["thresholds"]["P2"]["detected"], 2);
    assert_eq!(cmp["candidate"]["thresholds"]["P2"]["detected"], 1);
    assert_eq!(
        cmp["lost"]["positives"],
        serde_json::json!(["t1/u-sam/u-zoe"])
    );
    assert_eq!(cmp["gained"]["positives"], serde_json::json!([]));
    assert_eq!(cmp["rules_changed"][0]["rule"], AGE_GAP);
    assert_eq!(cmp["rules_changed"][0]["current"]["positives"], 1);
    assert_eq!(
        cmp["rules_changed"][0]["current"]["shadow"].as_bool(),
        Some(false)
    );
    assert!(cmp["rules_changed"][0]["candidate"].is_null());
}

#[test]
fn several_sets_print_one_report_each() {
    let (events, labels) = history();
    let benign = game().join("\n");
    let report = |events: &str, labels: &[Label]| run(events, labels, &[embedded()]).remove(0);
    let lone = report(&events, &labels);
    let expected = lone.render();
    let one = [SetResult::from_reports("history".into(), vec![lone], Priority::P2).unwrap()];
    // A single set prints exactly the report, with no heading.
    assert_eq!(render_text(&one), expected);
    let two = [
        SetResult::from_reports(
            "history".into(),
            vec![report(&events, &labels)],
            Priority::P2,
        )
        .unwrap(),
        SetResult::from_reports(
            "game".into(),
            vec![report(&benign, &labels[2..])],
            Priority::P2,
        )
        .unwrap(),
    ];
    let text = render_text(&two);
    assert!(
        text.starts_with("== history\nevents 12 (rejected 0)"),
        "{text}"
    );
    let game = "\n== game\nevents 3 (rejected 0), pairs: 0 positive, 1 negative";
    assert!(text.contains(game), "{text}");
    assert_eq!(text.matches("\nthreshold  recall").count(), 2, "{text}");
}

#[test]
fn gates_judge_every_set_and_name_the_failing_one() {
    let (events, labels) = history();
    let mut reports = run(
        &events,
        &labels,
        &[embedded(), pack_with(|s| without_rule(s, AGE_GAP))],
    );
    let weak = reports.pop().unwrap();
    let strong = reports.pop().unwrap();
    let gates = Gates {
        threshold: Priority::P2,
        min_recall: Some(0.9),
        max_false_alarm_rate: Some(0.0),
        max_median_messages: Some(20),
    };
    let sets = [
        SetResult::from_reports("strong".into(), vec![strong], Priority::P2).unwrap(),
        SetResult::from_reports("weak".into(), vec![weak], Priority::P2).unwrap(),
    ];
    assert_eq!(
        gate_failures(&sets, &gates),
        ["weak: recall at P2+ is 50.00%, below the required 90.00%"]
    );
    // One set: the message as a single-set run always gave it.
    assert_eq!(
        gate_failures(&sets[1..], &gates),
        ["recall at P2+ is 50.00%, below the required 90.00%"]
    );
}

#[test]
fn sets_pair_events_and_labels_in_order() {
    let paths = |names: &[&str]| {
        names
            .iter()
            .map(std::path::PathBuf::from)
            .collect::<Vec<_>>()
    };
    let sets = pair_sets(
        &paths(&["dev/pj.events.jsonl", "other.jsonl"]),
        &paths(&["dev/pj.labels.jsonl", "other.labels.jsonl"]),
    )
    .unwrap();
    let names: Vec<&str> = sets.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["pj", "other"]);
    assert_eq!(
        sets[1].labels,
        std::path::PathBuf::from("other.labels.jsonl")
    );
    let err = pair_sets(&paths(&["a.jsonl", "b.jsonl"]), &paths(&["a.labels.jsonl"])).unwrap_err();
    assert!(
        err.contains("--events given 2 time(s) but --labels 1 time(s)"),
        "{err}"
    );
    assert_eq!(set_name(std::path::Path::new("-")), "-");
}
