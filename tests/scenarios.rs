//! Scenario tests: conversations written for this project under `tests/scenarios/`,
//! each with an expectation in an `expect*.toml` file (one per suite) and a golden
//! alert file (`<name>.alerts.jsonl`). Set `UPDATE_GOLDEN=1` to rewrite the golden files
//! after a deliberate change, then review the diff.
//!
//! A scenario the engine does not yet handle carries `known_miss = "why"`: it must still
//! fail its expectation (so that the list of what does not work stays true: when one
//! starts to pass, the test says so and its `known_miss` is removed), and the summary
//! prints how many of each suite meet their expectation.

mod common;

use pairwatch::detect::alert::Alert;
use pairwatch::detect::rules::{Pattern, Priority};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    expect: String,
    pattern: Option<String>,
    max_priority: Option<String>,
    suspect: Option<String>,
    #[serde(default)]
    deadline: bool,
    /// Red flags that some alert (or update) of the pattern must carry.
    #[serde(default)]
    flags: Vec<String>,
    /// Update kinds that must appear, in this order, among the pattern's updates.
    #[serde(default)]
    updates: Vec<String>,
    /// Signals (lexicon categories or facts) that some alert of the pattern must list.
    #[serde(default)]
    signals: Vec<String>,
    /// Text that some evidence excerpt of the pattern's alerts must contain.
    evidence: Option<String>,
    /// Why the engine does not meet this expectation yet.
    known_miss: Option<String>,
}

fn dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/scenarios"))
}

fn check(name: &str, e: &Expect, alerts: &[Alert]) -> Result<(), String> {
    let summary: Vec<String> = alerts
        .iter()
        .map(|a| match &a.update {
            None => format!("{} {}", a.priority, a.pattern.as_str()),
            Some(u) => format!("update {} {}", a.pattern.as_str(), u.kind.as_str()),
        })
        .collect();
    match e.expect.as_str() {
        "quiet" => match alerts.iter().find(|a| a.priority <= Priority::P2) {
            Some(_) => Err(format!(
                "{name}: expected no alert at P2 or higher, got {summary:?}"
            )),
            None => Ok(()),
        },
        "watch" => match alerts.iter().find(|a| a.priority < Priority::P3) {
            Some(_) => Err(format!(
                "{name}: expected at most a P3 watch, got {summary:?}"
            )),
            None => Ok(()),
        },
        "alert" => {
            let pattern = Pattern::parse(e.pattern.as_deref().unwrap_or(""))
                .ok_or(format!("{name}: bad pattern"))?;
            let max = Priority::parse(e.max_priority.as_deref().unwrap_or(""))
                .ok_or(format!("{name}: bad max_priority"))?;
            let hit = alerts
                .iter()
                .filter(|a| a.pattern == pattern && a.priority <= max)
                .collect::<Vec<_>>();
            if hit.is_empty() {
                return Err(format!(
                    "{name}: expected {pattern:?} at {max} or higher, got {summary:?}"
                ));
            }
            if let Some(s) = &e.suspect {
                if let Some(a) = hit.iter().find(|a| &a.suspect.user_id != s) {
                    return Err(format!(
                        "{name}: suspect {} named instead of {s}",
                        a.suspect.user_id
                    ));
                }
            }
            if e.deadline && !hit.iter().any(|a| a.respond_by.is_some()) {
                return Err(format!("{name}: expected an alert with respond_by"));
            }
            let of_pattern = || alerts.iter().filter(|a| a.pattern == pattern);
            for f in &e.flags {
                if !of_pattern().any(|a| a.red_flags.contains(f)) {
                    return Err(format!("{name}: expected the red flag {f} on an alert"));
                }
            }
            for s in &e.signals {
                if !of_pattern().any(|a| a.signals.iter().any(|x| &x.category == s)) {
                    return Err(format!("{name}: expected the signal {s} on an alert"));
                }
            }
            if let Some(text) = &e.evidence {
                if !of_pattern().any(|a| a.evidence.iter().any(|x| x.excerpt.contains(text))) {
                    return Err(format!("{name}: expected evidence showing {text:?}"));
                }
            }
            let updates: Vec<&str> = of_pattern()
                .filter_map(|a| a.update.as_ref().map(|u| u.kind.as_str()))
                .collect();
            if !e.updates.is_empty() && updates != e.updates {
                return Err(format!(
                    "{name}: expected the updates {:?}, got {updates:?}",
                    e.updates
                ));
            }
            Ok(())
        }
        other => Err(format!("{name}: unknown expectation {other:?}")),
    }
}

/// Every `expect*.toml` of the directory (one per suite), merged; a name given twice is
/// an error.
fn expectations() -> BTreeMap<String, Expect> {
    let mut all = BTreeMap::new();
    let mut files: Vec<_> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("expect") && n.ends_with(".toml"))
        })
        .collect();
    files.sort();
    for path in files {
        let part: BTreeMap<String, Expect> =
            toml::from_str(&std::fs::read_to_string(&path).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for (name, e) in part {
            assert!(
                all.insert(name.clone(), e).is_none(),
                "{name} is expected in two files"
            );
        }
    }
    all
}

#[test]
fn every_scenario_meets_its_expectation_and_matches_its_golden_file() {
    let expect = expectations();
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    // Per suite (name prefix): scenarios meeting their expectation, scenarios.
    let mut suites: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut seen = 0;
    for entry in std::fs::read_dir(dir()).unwrap() {
        let path = entry.unwrap().path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".events.jsonl"))
        else {
            continue;
        };
        seen += 1;
        let alerts = common::replay_lines(&std::fs::read_to_string(&path).unwrap());
        let mut words = name.split('_');
        let suite = match (words.next(), words.next()) {
            (Some(a), Some(b @ ("para" | "obf" | "br" | "pt"))) => format!("{a}_{b}"),
            (Some(a), _) => a.to_string(),
            _ => name.to_string(),
        };
        let tally = suites.entry(suite).or_insert((0, 0));
        tally.1 += 1;
        match expect.get(name) {
            Some(e) => match (check(name, e, &alerts), &e.known_miss) {
                (Ok(()), None) => tally.0 += 1,
                (Err(f), None) => failures.push(f),
                (Err(_), Some(_)) => {}
                (Ok(()), Some(_)) => failures.push(format!(
                    "{name}: now meets its expectation: remove its known_miss"
                )),
            },
            None => failures.push(format!("{name}: no entry in expect.toml")),
        }
        let golden_path = dir().join(format!("{name}.alerts.jsonl"));
        // Versions change with every rule edit; the golden files record behaviour only.
        let actual: String = alerts
            .iter()
            .map(|a| {
                let mut a = a.clone();
                a.rules_version = "<rules_version>".into();
                a.engine_version = "<engine_version>".into();
                a.to_json() + "\n"
            })
            .collect();
        if update {
            std::fs::write(&golden_path, &actual).unwrap();
        } else {
            let golden = std::fs::read_to_string(&golden_path).unwrap_or_default();
            if golden != actual {
                failures.push(format!(
                    "{name}: alerts differ from {} (UPDATE_GOLDEN=1 to accept)",
                    golden_path.display()
                ));
            }
        }
    }
    assert_eq!(
        seen,
        expect.len(),
        "every expect.toml entry needs a scenario file"
    );
    for (suite, (met, all)) in &suites {
        println!("suite {suite}: {met}/{all} meet their expectation");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_readme_examples_behave_as_documented() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let alerts = common::replay_lines(
        &std::fs::read_to_string(root.join("examples/sextortion_fr.jsonl")).unwrap(),
    );
    let top = alerts
        .iter()
        .find(|a| a.pattern == Pattern::Sextortion && a.respond_by.is_some())
        .expect("sextortion alert with deadline");
    assert_eq!(top.priority, Priority::P0);
    assert_eq!(top.suspect.user_id, "u-981");
    assert_eq!(top.target.user_id, "u-112");
    assert_eq!(top.victim_notice.language, "fr");
    assert!(top.victim_notice.text.contains("3018"));
    assert!(
        !top.evidence.is_empty()
            && top
                .evidence
                .iter()
                .all(|e| e.excerpt.chars().count() <= 200)
    );
    // The red flags: the girl kept answering, the deadline passed, then she blocked.
    let updates: Vec<_> = alerts
        .iter()
        .filter_map(|a| a.update.as_ref().map(|u| (a.pattern, u.kind)))
        .collect();
    use pairwatch::detect::alert::UpdateKind::*;
    assert_eq!(
        updates,
        vec![
            (Pattern::Grooming, StillInContact),
            (Pattern::Sextortion, DeadlinePassed),
            (Pattern::Sextortion, ContactEnded),
            (Pattern::Grooming, ContactEnded),
        ]
    );
    let passed = alerts
        .iter()
        .find(|a| a.deadline_passed)
        .expect("deadline passed");
    let shortened = alerts
        .iter()
        .rfind(|a| a.update.is_none() && a.respond_by.is_some())
        .unwrap();
    assert_eq!(
        passed.alert_id, shortened.alert_id,
        "the same alert, updated"
    );
    assert!(passed.victim_notice.text.contains("pas trop tard"));
    let quiet = common::replay_lines(
        &std::fs::read_to_string(root.join("examples/harmless_fr.jsonl")).unwrap(),
    );
    assert!(quiet.is_empty(), "{quiet:?}");
}
