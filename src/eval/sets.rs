//! Several labelled sets in one `pairwatch eval` run: each `--events`/`--labels` pair
//! is a set, evaluated on fresh engines (one history's pairs and clocks must not leak
//! into the next) and reported on its own, then gated on its own.

use super::{compare, Comparison, Report};
use crate::detect::rules::Priority;
use std::path::{Path, PathBuf};

/// One labelled history: an events file and its labels file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalSet {
    /// The events file's name without `.events.jsonl` (or `.jsonl`).
    pub name: String,
    pub events: PathBuf,
    pub labels: PathBuf,
}

/// Matches the `--events` and `--labels` files in the order given.
pub fn pair_sets(events: &[PathBuf], labels: &[PathBuf]) -> Result<Vec<EvalSet>, String> {
    if events.len() != labels.len() {
        return Err(format!(
            "--events given {} time(s) but --labels {} time(s): each events file needs its \
             labels file, in the same order",
            events.len(),
            labels.len()
        ));
    }
    Ok(events
        .iter()
        .zip(labels)
        .map(|(e, l)| EvalSet {
            name: set_name(e),
            events: e.clone(),
            labels: l.clone(),
        })
        .collect())
}

/// A set's name: its events file's name without `.events.jsonl` or `.jsonl`.
pub fn set_name(events: &Path) -> String {
    let file = events
        .file_name()
        .map_or_else(|| events.to_string_lossy(), |f| f.to_string_lossy());
    [".events.jsonl", ".jsonl"]
        .into_iter()
        .find_map(|suffix| file.strip_suffix(suffix))
        .filter(|stem| !stem.is_empty())
        .unwrap_or(&*file)
        .to_string()
}

/// What one set gave: a report, or two compared (boxed: reports are large).
#[derive(Debug)]
pub enum Outcome {
    Report(Box<Report>),
    Compare(Box<Comparison>),
}

/// One set's outcome, with its name.
#[derive(Debug)]
pub struct SetResult {
    pub name: String,
    pub outcome: Outcome,
}

impl SetResult {
    /// From the reports of [`super::evaluate_each`] on one set: one report, or the
    /// current pack's and the candidate's (compared at `threshold`).
    pub fn from_reports(
        name: String,
        reports: Vec<Report>,
        threshold: Priority,
    ) -> Result<SetResult, String> {
        let mut reports = reports.into_iter();
        let outcome = match (reports.next(), reports.next(), reports.next()) {
            (Some(report), None, None) => Outcome::Report(Box::new(report)),
            (Some(current), Some(candidate), None) => {
                Outcome::Compare(Box::new(compare(current, candidate, threshold)))
            }
            _ => return Err("eval compares one pack with at most one other".into()),
        };
        Ok(SetResult { name, outcome })
    }

    /// The report the gates judge: under `--compare`, the candidate's, since it is the
    /// pack under review.
    pub fn gated(&self) -> &Report {
        match &self.outcome {
            Outcome::Report(r) => r,
            Outcome::Compare(c) => &c.candidate,
        }
    }

    fn render(&self) -> String {
        match &self.outcome {
            Outcome::Report(r) => r.render(),
            Outcome::Compare(c) => c.render(),
        }
    }
}

/// The text output: a lone set's report exactly as a single-set run always printed it;
/// otherwise each set under a `== name` heading.
pub fn render_text(sets: &[SetResult]) -> String {
    if let [only] = sets {
        if let Outcome::Report(r) = &only.outcome {
            return r.render();
        }
    }
    sets.iter()
        .map(|set| {
            let what = match set.outcome {
                Outcome::Report(_) => "",
                Outcome::Compare(_) => ": current -> candidate",
            };
            format!("== {}{what}\n{}", set.name, set.render())
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The quality gates: each set must pass them all.
#[derive(Debug, Clone, Copy)]
pub struct Gates {
    /// Alerts at this priority or above count.
    pub threshold: Priority,
    /// Least recall on the positives (skipped for a set without positives).
    pub min_recall: Option<f64>,
    /// Largest share of negatives with an alert (skipped for a set without negatives).
    pub max_false_alarm_rate: Option<f64>,
    /// Largest median number of messages to the first alert on a positive.
    pub max_median_messages: Option<u32>,
}

impl Gates {
    /// Why `r` fails the gates; empty when it passes.
    pub fn failures(&self, r: &Report) -> Vec<String> {
        let t = self.threshold;
        let mut failures = Vec::new();
        if let Some(min) = self.min_recall.filter(|_| r.positives > 0) {
            let recall = r.recall(t);
            if recall < min {
                failures.push(format!(
                    "recall at {t}+ is {:.2}%, below the required {:.2}%",
                    100.0 * recall,
                    100.0 * min
                ));
            }
        }
        if let Some(max) = self.max_median_messages.filter(|_| r.positives > 0) {
            match r.first_alert_medians(t).0 {
                Some(m) if m <= max => {}
                m => failures.push(format!(
                    "median messages to the first {t}+ alert is {}, above the allowed {max}",
                    m.map_or("- (no alert)".into(), |m| m.to_string())
                )),
            }
        }
        if let Some(max) = self.max_false_alarm_rate.filter(|_| r.negatives > 0) {
            let rate = r.false_alarm_rate(t);
            if rate > max {
                failures.push(format!(
                    "false alarms at {t}+ are {:.2}%, above the allowed {:.2}%",
                    100.0 * rate,
                    100.0 * max
                ));
            }
        }
        failures
    }
}

/// The gate failures of every set (see [`SetResult::gated`]), each prefixed with its
/// set's name when there are several sets.
pub fn gate_failures(sets: &[SetResult], gates: &Gates) -> Vec<String> {
    sets.iter()
        .flat_map(|set| {
            gates.failures(set.gated()).into_iter().map(move |f| {
                if sets.len() > 1 {
                    format!("{}: {f}", set.name)
                } else {
                    f
                }
            })
        })
        .collect()
}
