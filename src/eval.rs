//! `pairwatch eval`: backtests the rules on labelled history. Events go through the
//! engine in file order; labels say, per pair, whether it is a positive (with pattern
//! and suspect) or a negative. Reports recall and false-alarm rate by priority
//! threshold, time and messages to the first alert, per language (the language guessed
//! from the suspect's messages; both sides' for a negative), per-rule firing counts, and
//! the firings of the pack's shadow rules (`mode = "shadow"`: counted, never alerted).
//!
//! This file replays and scores one history ([`evaluate`]; [`evaluate_each`] runs
//! several packs over one read of the events) and renders a [`Report`]. Beside it:
//! - `compare`: `eval --compare DIR`, two packs side by side ([`compare()`], [`Comparison`]);
//! - `sets`: several labelled sets in one run ([`pair_sets`], [`SetResult`]), their text
//!   output ([`render_text`]) and the gates ([`Gates`], [`gate_failures`]);
//! - `json`: `eval --format json`, the same figures as one JSON document ([`render_json`]).

mod compare;
mod json;
mod sets;
#[cfg(test)]
mod tests;

pub use compare::{compare, Comparison, PairChanges, RuleChange, RuleFiring};
pub use json::render_json;
pub use sets::{
    gate_failures, pair_sets, render_text, set_name, EvalSet, Gates, Outcome, SetResult,
};

use crate::detect::alert::Alert;
use crate::detect::engine::Engine;
use crate::detect::event::{Event, Limits};
use crate::detect::flag::RedFlag;
use crate::detect::lexicon::MAX_LANGUAGES;
use crate::detect::rules::Priority;
use crate::detect::time::MINUTE;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::BufRead;

/// One line of a labels file.
#[derive(Debug, Clone, Deserialize)]
pub struct Label {
    #[serde(default = "default_tenant")]
    pub tenant: String,
    pub pair: [String; 2],
    pub label: String,
    #[serde(default)]
    pub pattern: Option<String>,
    #[serde(default)]
    pub suspect: Option<String>,
}

fn default_tenant() -> String {
    crate::detect::event::DEFAULT_TENANT.to_string()
}

/// A pair: (tenant, smaller user id, larger user id).
pub type PairId = (String, String, String);

fn pair_id(tenant: &str, a: &str, b: &str) -> PairId {
    if a <= b {
        (tenant.to_string(), a.to_string(), b.to_string())
    } else {
        (tenant.to_string(), b.to_string(), a.to_string())
    }
}

/// `tenant/user/user`: how reports name a pair (ids only, never message text).
pub fn pair_name(id: &PairId) -> String {
    format!("{}/{}/{}", id.0, id.1, id.2)
}

/// What happened on one pair during the replay.
#[derive(Debug, Default, Clone)]
struct PairOutcome {
    messages: u32,
    first_at: i64,
    /// Best (most urgent) priority reached.
    best: Option<Priority>,
    /// (messages seen, minutes since first event) at the first alert of each priority or above.
    first_alert: [Option<(u32, i64)>; 4],
    suspects: Vec<String>,
    /// The red flags any of the pair's alerts or updates carried.
    flags: BTreeSet<String>,
    /// Function words matched per side (side 0: the smaller user id) and language.
    lang_hits: [[u8; MAX_LANGUAGES]; 2],
}

/// A labelled pair's result, one per label line: kept so that time to alert can be
/// measured at any threshold and two packs compared pair by pair.
#[derive(Debug, Clone)]
pub struct LabelledPair {
    pub id: PairId,
    pub positive: bool,
    /// Most urgent priority of the pair's alerts.
    pub best: Option<Priority>,
    /// (messages seen, minutes since first event) at the first alert of each priority
    /// or above, by threshold P0..P3.
    pub first_alert: [Option<(u32, i64)>; 4],
}

impl LabelledPair {
    /// Whether the pair had an alert at `p` or above.
    pub fn alerted(&self, p: Priority) -> bool {
        self.best.is_some_and(|b| b <= p)
    }
}

/// Detection figures of one language (P2 or higher).
#[derive(Debug, Default, Clone)]
pub struct LanguageStats {
    pub positives: usize,
    pub detected: usize,
    pub negatives: usize,
    pub false_alarms: usize,
    pub messages_to_alert: Vec<u32>,
}

#[derive(Debug, Default)]
pub struct Report {
    pub events: u64,
    pub rejected: u64,
    pub positives: usize,
    pub negatives: usize,
    /// Positives with an alert at this priority or above, by threshold P0..P3.
    pub detected: [usize; 4],
    /// Of those, how many named the labelled suspect.
    pub suspect_right: [usize; 4],
    /// Negatives with an alert at this priority or above.
    pub false_alarms: [usize; 4],
    /// Per labelled pattern: (positives, detected at P2+).
    pub by_pattern: BTreeMap<String, (usize, usize)>,
    /// Each label line's pair and what happened on it, in label order.
    pub labelled: Vec<LabelledPair>,
    /// How often each rule fired (alerts naming it), on positives and on negatives.
    pub rule_fires: BTreeMap<String, (usize, usize)>,
    /// Per shadow rule: the labelled pairs it held on at least once, positives and
    /// negatives. Per pair, not per event: a shadow rule raises no alert, so it holds
    /// again on every later event of a pair whose facts still satisfy it.
    pub shadow_fires: BTreeMap<String, (usize, usize)>,
    /// Per language guessed from the messages ("?" when none could be).
    pub by_language: BTreeMap<String, LanguageStats>,
    /// Alerts by pattern and priority on negatives (false alarms) and positives.
    pub alerts_by_pattern: BTreeMap<(String, String), (usize, usize)>,
    /// Per red flag: pairs whose alerts (or updates) carried it, positives and negatives.
    pub flags: BTreeMap<String, (usize, usize)>,
    /// Updates of standing alerts, by kind.
    pub updates: BTreeMap<String, usize>,
    pub unlabelled_alerts: usize,
}

fn median<T: Copy + Ord>(v: &[T]) -> Option<T> {
    let mut s = v.to_vec();
    s.sort();
    s.get(s.len() / 2).copied()
}

impl Report {
    pub fn recall(&self, p: Priority) -> f64 {
        ratio(self.detected[p as usize], self.positives)
    }
    pub fn false_alarm_rate(&self, p: Priority) -> f64 {
        ratio(self.false_alarms[p as usize], self.negatives)
    }
    /// Median messages and minutes (since the pair's first event) to the first alert at
    /// `p` or above, over the positives that had one.
    pub fn first_alert_medians(&self, p: Priority) -> (Option<u32>, Option<i64>) {
        let (messages, minutes): (Vec<u32>, Vec<i64>) = self
            .labelled
            .iter()
            .filter(|l| l.positive)
            .filter_map(|l| l.first_alert[p as usize])
            .unzip();
        (median(&messages), median(&minutes))
    }
    /// Median messages to the first P2+ alert on a positive.
    pub fn median_messages(&self) -> Option<u32> {
        self.first_alert_medians(Priority::P2).0
    }
    /// Median minutes to the first P2+ alert on a positive.
    pub fn median_minutes(&self) -> Option<i64> {
        self.first_alert_medians(Priority::P2).1
    }

    /// Human-readable tables.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "events {} (rejected {}), pairs: {} positive, {} negative",
            self.events, self.rejected, self.positives, self.negatives
        );
        let _ = writeln!(
            s,
            "\nthreshold  recall           suspect named    false alarms"
        );
        for p in Priority::ALL {
            let i = p as usize;
            let _ = writeln!(
                s,
                "{:<9}  {:>5}/{:<5} {:>5.1}%  {:>5}/{:<5}  {:>5}/{:<5} {:>6.2}%",
                format!("{}+", p.as_str()),
                self.detected[i],
                self.positives,
                100.0 * self.recall(p),
                self.suspect_right[i],
                self.detected[i],
                self.false_alarms[i],
                self.negatives,
                100.0 * self.false_alarm_rate(p)
            );
        }
        if !self.by_pattern.is_empty() {
            let _ = writeln!(s, "\nlabelled pattern      positives  detected at P2+");
            for (pat, (n, d)) in &self.by_pattern {
                let _ = writeln!(
                    s,
                    "{pat:<20}  {n:>9}  {d:>9} ({:.1}%)",
                    100.0 * ratio(*d, *n)
                );
            }
        }
        let _ = writeln!(
            s,
            "\nfirst P2+ alert on a positive: median {} messages, median {} minutes after first contact",
            self.median_messages().map_or("-".into(), |m| m.to_string()),
            self.median_minutes().map_or("-".into(), |m| m.to_string())
        );
        let _ = writeln!(
            s,
            "\nlanguage  positives  recall P2+        median messages  negatives  false alarms P2+"
        );
        for (lang, l) in &self.by_language {
            let _ = writeln!(
                s,
                "{lang:<8}  {:>9}  {:>5} ({:>5.1}%)  {:>15}  {:>9}  {:>5} ({:.2}%)",
                l.positives,
                l.detected,
                100.0 * ratio(l.detected, l.positives),
                median(&l.messages_to_alert).map_or("-".into(), |m| m.to_string()),
                l.negatives,
                l.false_alarms,
                100.0 * ratio(l.false_alarms, l.negatives)
            );
        }
        let _ = writeln!(
            s,
            "\nalerts by pattern and priority     on positives  on negatives"
        );
        for ((pat, pri), (pos, neg)) in &self.alerts_by_pattern {
            let _ = writeln!(s, "{:<32}  {pos:>12}  {neg:>12}", format!("{pat} {pri}"));
        }
        render_fires(&mut s, "rule", &self.rule_fires);
        if !self.shadow_fires.is_empty() {
            render_fires(&mut s, "shadow rule", &self.shadow_fires);
        }
        let _ = writeln!(
            s,
            "\nred flag (pairs with an alert carrying it)  positives  negatives"
        );
        for f in RedFlag::ALL {
            let (pos, neg) = self.flags.get(f.as_str()).copied().unwrap_or_default();
            let _ = writeln!(s, "{:<42}  {pos:>9}  {neg:>9}", f.as_str());
        }
        if !self.updates.is_empty() {
            let _ = writeln!(s, "\nupdates of standing alerts");
            for (kind, n) in &self.updates {
                let _ = writeln!(s, "{kind:<20}  {n:>9}");
            }
        }
        if self.unlabelled_alerts > 0 {
            let _ = writeln!(
                s,
                "\n{} alerts on pairs with no label",
                self.unlabelled_alerts
            );
        }
        s
    }
}

/// A "fired on positives / on negatives" table: of the rules' alerts, or of the shadow
/// rules' pairs, laid out alike.
fn render_fires(s: &mut String, title: &str, fires: &BTreeMap<String, (usize, usize)>) {
    use std::fmt::Write;
    let _ = writeln!(s, "\n{title:<40}fired on positives  on negatives");
    for (rule, (pos, neg)) in fires {
        let _ = writeln!(s, "{rule:<40}  {pos:>17}  {neg:>12}");
    }
}

/// The language (index) with most function words: the suspect's side when there is a
/// suspect, else both sides; `usize::MAX` when none matched.
fn language_of(o: &PairOutcome, suspect: Option<&str>, pair: &[String; 2]) -> usize {
    let mut sorted = [pair[0].as_str(), pair[1].as_str()];
    sorted.sort();
    let sides: Vec<usize> = match suspect {
        Some(s) => vec![usize::from(sorted[1] == s)],
        None => vec![0, 1],
    };
    let count = |i: usize| {
        sides
            .iter()
            .map(|&side| o.lang_hits[side][i] as u32)
            .sum::<u32>()
    };
    (0..MAX_LANGUAGES)
        .filter(|&i| count(i) > 0)
        .max_by_key(|&i| (count(i), usize::MAX - i))
        .unwrap_or(usize::MAX)
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Reads a labels file.
pub fn read_labels<R: BufRead>(input: R) -> Result<Vec<Label>, String> {
    let mut labels = Vec::new();
    for (i, line) in input.lines().enumerate() {
        let line = line.map_err(|e| e.to_string())?;
        if line.trim().is_empty() {
            continue;
        }
        labels
            .push(serde_json::from_str(&line).map_err(|e| format!("labels line {}: {e}", i + 1))?);
    }
    Ok(labels)
}

/// Runs the events through `engine` and scores the alerts against `labels`.
/// `progress` is called with the bytes read so far.
pub fn evaluate<R: BufRead>(
    events: R,
    labels: &[Label],
    engine: &mut Engine,
    limits: &Limits,
    progress: impl FnMut(u64),
) -> Result<Report, String> {
    let mut reports = evaluate_each(
        events,
        labels,
        std::slice::from_mut(engine),
        limits,
        progress,
    )?;
    Ok(reports.remove(0))
}

/// Runs the events through each engine (one per rule pack, all fresh) and scores each
/// one's alerts against `labels`: one report per engine, in order. The events are read
/// and validated once and given to every engine, so the packs see the same history even
/// when it comes from stdin.
pub fn evaluate_each<R: BufRead>(
    events: R,
    labels: &[Label],
    engines: &mut [Engine],
    limits: &Limits,
    mut progress: impl FnMut(u64),
) -> Result<Vec<Report>, String> {
    let mut replays: Vec<Replay> = engines.iter_mut().map(Replay::new).collect();
    let (mut read, mut accepted, mut rejected) = (0u64, 0u64, 0u64);
    for line in events.lines() {
        let line = line.map_err(|e| e.to_string())?;
        read += line.len() as u64 + 1;
        progress(read);
        let Ok(ev) = Event::from_json(&line, limits) else {
            rejected += 1;
            continue;
        };
        accepted += 1;
        for replay in &mut replays {
            replay.feed(&ev);
        }
    }
    Ok(replays
        .into_iter()
        .map(|replay| Report {
            events: accepted,
            rejected,
            ..replay.score(labels)
        })
        .collect())
}

/// One engine's pass over a history: what happened on each pair, scored against the
/// labels once the history is read (a label may come before or after its pair's events).
struct Replay<'e> {
    engine: &'e mut Engine,
    pairs: HashMap<PairId, PairOutcome>,
    /// Alerts (not updates), with their pair.
    fired: Vec<(PairId, Alert)>,
    /// Per shadow rule, the pairs it held on.
    shadow: HashMap<String, HashSet<PairId>>,
    /// Updates of standing alerts, by kind.
    updates: BTreeMap<String, usize>,
    /// Scratch space for each event's alerts.
    alerts: Vec<Alert>,
}

impl<'e> Replay<'e> {
    fn new(engine: &'e mut Engine) -> Self {
        Replay {
            engine,
            pairs: HashMap::new(),
            fired: Vec::new(),
            shadow: HashMap::new(),
            updates: BTreeMap::new(),
            alerts: Vec::new(),
        }
    }

    /// Gives one valid event to the engine and records what it raised.
    fn feed(&mut self, ev: &Event) {
        let id = pair_id(&ev.tenant, &ev.sender.user_id, &ev.recipient.user_id);
        let outcome = self.pairs.entry(id.clone()).or_insert_with(|| PairOutcome {
            first_at: ev.sent_at,
            ..Default::default()
        });
        outcome.messages += 1;
        self.alerts.clear();
        let key = self.engine.process(ev, &mut self.alerts);
        if let Some(state) = self.engine.pair_by_key(&key) {
            outcome.lang_hits = state.lang_hits;
        }
        self.record_shadow(&id);
        self.record_alerts(ev.sent_at);
    }

    /// The shadow rules that held on the last event, against the event's pair.
    fn record_shadow(&mut self, id: &PairId) {
        for rule in self.engine.shadow_fired() {
            match self.shadow.get_mut(rule) {
                Some(pairs) => {
                    if !pairs.contains(id) {
                        pairs.insert(id.clone());
                    }
                }
                None => {
                    self.shadow
                        .insert(rule.to_string(), HashSet::from([id.clone()]));
                }
            }
        }
    }

    /// The last event's alerts and updates, against the pairs they name.
    fn record_alerts(&mut self, sent_at: i64) {
        for a in self.alerts.drain(..) {
            // An update may be of another pair than the event's (a deadline passed).
            let id = pair_id(&a.tenant, &a.suspect.user_id, &a.target.user_id);
            let Some(outcome) = self.pairs.get_mut(&id) else {
                continue;
            };
            outcome.flags.extend(a.red_flags.iter().cloned());
            if let Some(u) = &a.update {
                *self.updates.entry(u.kind.as_str().to_string()).or_default() += 1;
                continue;
            }
            let pi = a.priority as usize;
            outcome.best = Some(outcome.best.map_or(a.priority, |b| b.min(a.priority)));
            for slot in &mut outcome.first_alert[pi..] {
                slot.get_or_insert((outcome.messages, (sent_at - outcome.first_at) / MINUTE));
            }
            outcome.suspects.push(a.suspect.user_id.clone());
            self.fired.push((id, a));
        }
    }

    /// The report of this replay (all but the event counts, which the caller has).
    fn score(self, labels: &[Label]) -> Report {
        let mut report = Report {
            updates: self.updates.clone(),
            ..Report::default()
        };
        // Whether each labelled pair is a positive (the last label of a pair wins).
        let mut positive: HashMap<PairId, bool> = HashMap::new();
        for l in labels {
            let pair = self.score_label(l, &mut report);
            positive.insert(pair.id.clone(), pair.positive);
            report.labelled.push(pair);
        }
        score_alerts(&self.fired, &positive, &mut report);
        score_shadow(&self.shadow, &positive, &mut report);
        report
    }

    /// Counts one label line: detection by threshold, flags, language, pattern.
    fn score_label(&self, l: &Label, report: &mut Report) -> LabelledPair {
        let id = pair_id(&l.tenant, &l.pair[0], &l.pair[1]);
        let positive = l.label == "POSITIVE";
        let outcome = self.pairs.get(&id);
        let pair = LabelledPair {
            id,
            positive,
            best: outcome.and_then(|o| o.best),
            first_alert: outcome.map(|o| o.first_alert).unwrap_or_default(),
        };
        if positive {
            report.positives += 1;
        } else {
            report.negatives += 1;
        }
        let named =
            outcome.is_some_and(|o| o.suspects.iter().any(|s| Some(s) == l.suspect.as_ref()));
        for p in Priority::ALL {
            let i = p as usize;
            match (positive, pair.alerted(p)) {
                (true, true) => {
                    report.detected[i] += 1;
                    report.suspect_right[i] += usize::from(named);
                }
                (false, true) => report.false_alarms[i] += 1,
                (_, false) => {}
            }
        }
        for f in outcome.iter().flat_map(|o| &o.flags) {
            bump(report.flags.entry(f.clone()).or_default(), positive);
        }
        let first_p2 = pair.first_alert[Priority::P2 as usize];
        let by_lang = report
            .by_language
            .entry(self.language(l, outcome))
            .or_default();
        let p2 = first_p2.is_some();
        if positive {
            by_lang.positives += 1;
            by_lang.detected += usize::from(p2);
            by_lang.messages_to_alert.extend(first_p2.map(|(m, _)| m));
            let pat = l.pattern.clone().unwrap_or_else(|| "?".into());
            let entry = report.by_pattern.entry(pat).or_default();
            entry.0 += 1;
            entry.1 += usize::from(p2);
        } else {
            by_lang.negatives += 1;
            by_lang.false_alarms += usize::from(p2);
        }
        pair
    }

    /// The language of a labelled pair's messages: the suspect's for a positive, both
    /// sides' for a negative; "?" when none could be guessed.
    fn language(&self, l: &Label, outcome: Option<&PairOutcome>) -> String {
        let positive = l.label == "POSITIVE";
        let index = outcome.map_or(usize::MAX, |o| {
            language_of(
                o,
                positive.then_some(l.suspect.as_deref()).flatten(),
                &l.pair,
            )
        });
        self.engine
            .languages()
            .get(index)
            .cloned()
            .unwrap_or_else(|| "?".into())
    }
}

/// Adds one to the positives' or the negatives' count.
fn bump(e: &mut (usize, usize), positive: bool) {
    if positive {
        e.0 += 1;
    } else {
        e.1 += 1;
    }
}

/// Rule firings and alerts by pattern, on labelled pairs; alerts on other pairs counted.
fn score_alerts(fired: &[(PairId, Alert)], positive: &HashMap<PairId, bool>, report: &mut Report) {
    for (id, a) in fired {
        let Some(&positive) = positive.get(id) else {
            report.unlabelled_alerts += 1;
            continue;
        };
        for r in &a.rules {
            bump(report.rule_fires.entry(r.clone()).or_default(), positive);
        }
        let key = (
            a.pattern.as_str().to_string(),
            a.priority.as_str().to_string(),
        );
        bump(report.alerts_by_pattern.entry(key).or_default(), positive);
    }
}

/// Shadow rule firings per labelled pair; firings on unlabelled pairs are not counted.
fn score_shadow(
    shadow: &HashMap<String, HashSet<PairId>>,
    positive: &HashMap<PairId, bool>,
    report: &mut Report,
) {
    for (rule, pairs) in shadow {
        for id in pairs {
            if let Some(&positive) = positive.get(id) {
                bump(
                    report.shadow_fires.entry(rule.clone()).or_default(),
                    positive,
                );
            }
        }
    }
}
