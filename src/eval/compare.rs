//! `pairwatch eval --compare DIR`: the current pack and a candidate pack on the same
//! labelled history, side by side, so that a rule change is judged by what it gains and
//! loses before it is deployed: recall and false alarms per threshold, the pairs that
//! only one pack alerts on, the rules whose firings changed, the time to first alert.

use super::{pair_name, ratio, PairId, Report};
use crate::detect::rules::Priority;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

/// Two reports on the same history, and how they differ at the threshold.
#[derive(Debug)]
pub struct Comparison {
    /// The priority at which pairs count as alerted for `gained` and `lost` and the
    /// time to first alert.
    pub threshold: Priority,
    /// The pack in use (`--rules DIR`, or the embedded one).
    pub current: Report,
    /// The pack of `--compare DIR`.
    pub candidate: Report,
    /// Labelled pairs only the candidate alerts on at the threshold.
    pub gained: PairChanges,
    /// Labelled pairs only the current pack alerts on at the threshold.
    pub lost: PairChanges,
    /// The rules whose firings differ, by rule id.
    pub rules_changed: Vec<RuleChange>,
}

/// Pairs, named `tenant/user/user` (never by their messages), sorted.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct PairChanges {
    pub positives: Vec<String>,
    pub negatives: Vec<String>,
}

/// How one rule fired in one pack. A live rule counts alerts naming it (as
/// [`Report::rule_fires`]); a shadow rule counts pairs it held on (as
/// [`Report::shadow_fires`]), since it raises no alert to count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RuleFiring {
    pub positives: usize,
    pub negatives: usize,
    pub shadow: bool,
}

/// A rule whose firings differ between the packs; `None` on a side where it did not
/// fire on any labelled pair (or is not in that pack).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleChange {
    pub rule: String,
    pub current: Option<RuleFiring>,
    pub candidate: Option<RuleFiring>,
}

/// Compares the reports of two packs run on the same events and labels.
pub fn compare(current: Report, candidate: Report, threshold: Priority) -> Comparison {
    Comparison {
        threshold,
        gained: alerted_only_by(&candidate, &current, threshold),
        lost: alerted_only_by(&current, &candidate, threshold),
        rules_changed: rules_changed(&current, &candidate),
        current,
        candidate,
    }
}

/// The labelled pairs that `a` alerts on at `p` or above and `b` does not.
fn alerted_only_by(a: &Report, b: &Report, p: Priority) -> PairChanges {
    let in_b: BTreeSet<&PairId> = b
        .labelled
        .iter()
        .filter(|l| l.alerted(p))
        .map(|l| &l.id)
        .collect();
    // A set: a pair labelled twice is listed once.
    let only: BTreeSet<(bool, &PairId)> = a
        .labelled
        .iter()
        .filter(|l| l.alerted(p) && !in_b.contains(&l.id))
        .map(|l| (l.positive, &l.id))
        .collect();
    let mut changes = PairChanges::default();
    for (positive, id) in only {
        let list = if positive {
            &mut changes.positives
        } else {
            &mut changes.negatives
        };
        list.push(pair_name(id));
    }
    changes
}

/// Every rule's firing in a report, live and shadow alike.
fn firings(r: &Report) -> BTreeMap<&str, RuleFiring> {
    fn of(
        fires: &BTreeMap<String, (usize, usize)>,
        shadow: bool,
    ) -> impl Iterator<Item = (&str, RuleFiring)> + '_ {
        fires.iter().map(move |(id, &(positives, negatives))| {
            let firing = RuleFiring {
                positives,
                negatives,
                shadow,
            };
            (id.as_str(), firing)
        })
    }
    of(&r.rule_fires, false)
        .chain(of(&r.shadow_fires, true))
        .collect()
}

/// The rules whose firing differs (counts, or live against shadow), including those
/// that fired in one pack only.
fn rules_changed(current: &Report, candidate: &Report) -> Vec<RuleChange> {
    let (a, b) = (firings(current), firings(candidate));
    let ids: BTreeSet<&str> = a.keys().chain(b.keys()).copied().collect();
    ids.into_iter()
        .filter_map(|id| {
            let (current, candidate) = (a.get(id).copied(), b.get(id).copied());
            (current != candidate).then(|| RuleChange {
                rule: id.to_string(),
                current,
                candidate,
            })
        })
        .collect()
}

impl Comparison {
    /// Human-readable tables: the figures of both packs and what changed.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "events {} (rejected {}), pairs: {} positive, {} negative",
            self.current.events,
            self.current.rejected,
            self.current.positives,
            self.current.negatives
        );
        self.render_thresholds(&mut s);
        self.render_pairs(&mut s);
        self.render_rules(&mut s);
        self.render_first_alert(&mut s);
        s
    }

    /// Recall and false alarms per threshold, current -> candidate (difference in pairs).
    fn render_thresholds(&self, s: &mut String) {
        let (cur, cand) = (&self.current, &self.candidate);
        let _ = writeln!(
            s,
            "\nthreshold  {:<50}  false alarms: current -> candidate (change)",
            "recall: current -> candidate (change)"
        );
        for p in Priority::ALL {
            let i = p as usize;
            let _ = writeln!(
                s,
                "{:<9}  {}  {}",
                format!("{}+", p.as_str()),
                change(cur.detected[i], cand.detected[i], cur.positives, 1),
                change(cur.false_alarms[i], cand.false_alarms[i], cur.negatives, 2)
            );
        }
    }

    /// The pairs gained and lost at the threshold, by their ids.
    fn render_pairs(&self, s: &mut String) {
        let t = self.threshold.as_str();
        let lists = [
            (
                "positives detected",
                "the candidate",
                &self.gained.positives,
            ),
            (
                "positives detected",
                "the current pack",
                &self.lost.positives,
            ),
            ("negatives alerted", "the candidate", &self.gained.negatives),
            (
                "negatives alerted",
                "the current pack",
                &self.lost.negatives,
            ),
        ];
        let _ = writeln!(s);
        for (what, by, ids) in lists {
            let _ = writeln!(s, "{what} at {t}+ only by {by}: {}", ids.len());
            for id in ids {
                let _ = writeln!(s, "  {id}");
            }
        }
    }

    /// The rules whose firings changed, positives/negatives per pack.
    fn render_rules(&self, s: &mut String) {
        if self.rules_changed.is_empty() {
            let _ = writeln!(s, "\nno rule fired differently");
            return;
        }
        let _ = writeln!(
            s,
            "\n{:<48}  {:>16}  {:>16}",
            "rule fired differently (positives/negatives)", "current", "candidate"
        );
        for r in &self.rules_changed {
            let _ = writeln!(
                s,
                "{:<48}  {:>16}  {:>16}",
                r.rule,
                firing_cell(r.current),
                firing_cell(r.candidate)
            );
        }
        if self
            .rules_changed
            .iter()
            .any(|r| [r.current, r.candidate].iter().flatten().any(|f| f.shadow))
        {
            let _ = writeln!(
                s,
                "(shadow: pairs the rule held on; otherwise alerts naming the rule)"
            );
        }
    }

    /// Median messages and minutes to the first alert at the threshold, per pack.
    fn render_first_alert(&self, s: &mut String) {
        let medians = |r: &Report| {
            let (messages, minutes) = r.first_alert_medians(self.threshold);
            let show = |v: Option<String>| v.unwrap_or_else(|| "-".into());
            format!(
                "median {} messages, {} minutes",
                show(messages.map(|m| m.to_string())),
                show(minutes.map(|m| m.to_string()))
            )
        };
        let _ = writeln!(
            s,
            "\nfirst {}+ alert on a detected positive: current {}; candidate {}",
            self.threshold.as_str(),
            medians(&self.current),
            medians(&self.candidate)
        );
    }
}

/// `  n/of  pct% ->   m/of  pct%  (+d)`: one figure of both packs and the change in pairs.
fn change(current: usize, candidate: usize, of: usize, decimals: usize) -> String {
    let share = |n: usize| {
        format!(
            "{:>5}/{:<5} {:>6.*}%",
            n,
            of,
            decimals,
            100.0 * ratio(n, of)
        )
    };
    let diff = format!("({:+})", candidate as i64 - current as i64);
    format!("{} -> {} {diff:>7}", share(current), share(candidate))
}

/// `positives/negatives`, marked `(shadow)` for a shadow rule; `-` when it did not fire.
fn firing_cell(f: Option<RuleFiring>) -> String {
    match f {
        None => "-".into(),
        Some(f) if f.shadow => format!("{}/{} (shadow)", f.positives, f.negatives),
        Some(f) => format!("{}/{}", f.positives, f.negatives),
    }
}
