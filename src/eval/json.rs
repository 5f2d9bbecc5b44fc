//! `pairwatch eval --format json`: the figures of the text tables as one JSON document,
//! for scripts and dashboards. Views over [`Report`] rather than `Serialize` on it: the
//! report keeps raw tallies (tuples, tuple keys) that suit counting, the document names
//! every figure. Keys are snake_case, priorities `"P2"` strings, rates fractions (0..1).
//!
//! ```text
//! {"threshold": "P2", "sets": [
//!   {"name": "pj", <report>}                                   without --compare
//!   {"name": "pj", "current": <report>, "candidate": <report>,
//!    "gained": {"positives": [..], "negatives": [..]}, "lost": {..},
//!    "rules_changed": [{"rule", "current", "candidate"}]}       with --compare
//! ]}
//! <report>: events, rejected, positives, negatives,
//!   thresholds: {"P0".."P3": {detected, suspect_right, false_alarms, recall,
//!                false_alarm_rate, median_messages, median_minutes}},
//!   by_pattern, by_language, alerts_by_pattern, rule_fires, shadow_fires, flags,
//!   updates, unlabelled_alerts
//! ```

use super::sets::{Outcome, SetResult};
use super::{median, PairChanges, Report, RuleChange};
use crate::detect::flag::RedFlag;
use crate::detect::rules::Priority;
use serde::Serialize;
use std::collections::BTreeMap;

/// The document of a whole run, pretty-printed.
pub fn render_json(sets: &[SetResult], threshold: Priority) -> String {
    let doc = Document {
        threshold,
        sets: sets.iter().map(set_json).collect(),
    };
    // Only strings, numbers and string-keyed maps: serialising cannot fail.
    serde_json::to_string_pretty(&doc).expect("eval document serialises")
}

#[derive(Serialize)]
struct Document<'a> {
    /// The `--threshold` of the gates and of `gained`/`lost`.
    threshold: Priority,
    sets: Vec<SetJson<'a>>,
}

/// Boxed: the two variants differ much in size.
#[derive(Serialize)]
#[serde(untagged)]
enum SetJson<'a> {
    Report(Box<Named<'a, ReportJson<'a>>>),
    Compare(Box<Named<'a, CompareJson<'a>>>),
}

/// A set's figures with its name first.
#[derive(Serialize)]
struct Named<'a, T> {
    name: &'a str,
    #[serde(flatten)]
    body: T,
}

#[derive(Serialize)]
struct CompareJson<'a> {
    current: ReportJson<'a>,
    candidate: ReportJson<'a>,
    gained: &'a PairChanges,
    lost: &'a PairChanges,
    rules_changed: &'a [RuleChange],
}

#[derive(Serialize)]
struct ReportJson<'a> {
    events: u64,
    rejected: u64,
    positives: usize,
    negatives: usize,
    /// By threshold, "P0" to "P3": alerts at that priority or above count.
    thresholds: BTreeMap<&'static str, ThresholdJson>,
    by_pattern: BTreeMap<&'a str, PatternJson>,
    by_language: BTreeMap<&'a str, LanguageJson>,
    alerts_by_pattern: Vec<AlertsJson<'a>>,
    /// Alerts naming each rule.
    rule_fires: BTreeMap<&'a str, Split>,
    /// Labelled pairs each shadow rule held on.
    shadow_fires: BTreeMap<&'a str, Split>,
    /// Labelled pairs whose alerts carried each red flag (every flag, zeros too).
    flags: BTreeMap<&'static str, Split>,
    updates: &'a BTreeMap<String, usize>,
    unlabelled_alerts: usize,
}

#[derive(Serialize)]
struct ThresholdJson {
    detected: usize,
    suspect_right: usize,
    false_alarms: usize,
    recall: f64,
    false_alarm_rate: f64,
    /// Over the detected positives; null when none was.
    median_messages: Option<u32>,
    median_minutes: Option<i64>,
}

/// The by-pattern and by-language figures are at P2+, as in the text tables.
#[derive(Serialize)]
struct PatternJson {
    positives: usize,
    detected_p2: usize,
}

#[derive(Serialize)]
struct LanguageJson {
    positives: usize,
    detected_p2: usize,
    median_messages_p2: Option<u32>,
    negatives: usize,
    false_alarms_p2: usize,
}

#[derive(Serialize)]
struct AlertsJson<'a> {
    pattern: &'a str,
    priority: &'a str,
    positives: usize,
    negatives: usize,
}

/// A count on positives and on negatives.
#[derive(Serialize)]
struct Split {
    positives: usize,
    negatives: usize,
}

impl From<&(usize, usize)> for Split {
    fn from(&(positives, negatives): &(usize, usize)) -> Self {
        Split {
            positives,
            negatives,
        }
    }
}

fn set_json(set: &SetResult) -> SetJson<'_> {
    let name = set.name.as_str();
    match &set.outcome {
        Outcome::Report(r) => SetJson::Report(Box::new(Named {
            name,
            body: report_json(r),
        })),
        Outcome::Compare(c) => SetJson::Compare(Box::new(Named {
            name,
            body: CompareJson {
                current: report_json(&c.current),
                candidate: report_json(&c.candidate),
                gained: &c.gained,
                lost: &c.lost,
                rules_changed: &c.rules_changed,
            },
        })),
    }
}

fn report_json(r: &Report) -> ReportJson<'_> {
    ReportJson {
        events: r.events,
        rejected: r.rejected,
        positives: r.positives,
        negatives: r.negatives,
        thresholds: Priority::ALL
            .into_iter()
            .map(|p| (p.as_str(), threshold_json(r, p)))
            .collect(),
        by_pattern: r
            .by_pattern
            .iter()
            .map(|(pattern, &(positives, detected_p2))| {
                let figures = PatternJson {
                    positives,
                    detected_p2,
                };
                (pattern.as_str(), figures)
            })
            .collect(),
        by_language: r
            .by_language
            .iter()
            .map(|(lang, l)| {
                let figures = LanguageJson {
                    positives: l.positives,
                    detected_p2: l.detected,
                    median_messages_p2: median(&l.messages_to_alert),
                    negatives: l.negatives,
                    false_alarms_p2: l.false_alarms,
                };
                (lang.as_str(), figures)
            })
            .collect(),
        alerts_by_pattern: r
            .alerts_by_pattern
            .iter()
            .map(
                |((pattern, priority), &(positives, negatives))| AlertsJson {
                    pattern: pattern.as_str(),
                    priority: priority.as_str(),
                    positives,
                    negatives,
                },
            )
            .collect(),
        rule_fires: splits(&r.rule_fires),
        shadow_fires: splits(&r.shadow_fires),
        flags: RedFlag::ALL
            .into_iter()
            .map(|f| {
                let split = Split::from(r.flags.get(f.as_str()).unwrap_or(&(0, 0)));
                (f.as_str(), split)
            })
            .collect(),
        updates: &r.updates,
        unlabelled_alerts: r.unlabelled_alerts,
    }
}

/// A count per rule (or other key) as named figures.
fn splits(m: &BTreeMap<String, (usize, usize)>) -> BTreeMap<&str, Split> {
    m.iter()
        .map(|(k, v)| (k.as_str(), Split::from(v)))
        .collect()
}

fn threshold_json(r: &Report, p: Priority) -> ThresholdJson {
    let i = p as usize;
    let (median_messages, median_minutes) = r.first_alert_medians(p);
    ThresholdJson {
        detected: r.detected[i],
        suspect_right: r.suspect_right[i],
        false_alarms: r.false_alarms[i],
        recall: r.recall(p),
        false_alarm_rate: r.false_alarm_rate(p),
        median_messages,
        median_minutes,
    }
}
