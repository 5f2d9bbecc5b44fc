//! `pairwatch eval`: backtests the rules on labelled history. Events go through the
//! engine in file order; labels say, per pair, whether it is a positive (with pattern
//! and suspect) or a negative. Reports recall and false-alarm rate by priority
//! threshold, time and messages to the first alert, per language (the language guessed
//! from the suspect's messages; both sides' for a negative), and per-rule firing counts.

use crate::detect::alert::Alert;
use crate::detect::engine::Engine;
use crate::detect::event::{Event, Limits};
use crate::detect::flag::RedFlag;
use crate::detect::lexicon::MAX_LANGUAGES;
use crate::detect::rules::Priority;
use crate::detect::time::MINUTE;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
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

type PairId = (String, String, String);

fn pair_id(tenant: &str, a: &str, b: &str) -> PairId {
    if a <= b {
        (tenant.to_string(), a.to_string(), b.to_string())
    } else {
        (tenant.to_string(), b.to_string(), a.to_string())
    }
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
    /// Messages and minutes to the first P2+ alert of each detected positive.
    pub messages_to_alert: Vec<u32>,
    pub minutes_to_alert: Vec<i64>,
    /// How often each rule fired (alerts naming it), on positives and on negatives.
    pub rule_fires: BTreeMap<String, (usize, usize)>,
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
    pub fn median_messages(&self) -> Option<u32> {
        median(&self.messages_to_alert)
    }
    pub fn median_minutes(&self) -> Option<i64> {
        median(&self.minutes_to_alert)
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
        let _ = writeln!(
            s,
            "\nrule                                    fired on positives  on negatives"
        );
        for (rule, (pos, neg)) in &self.rule_fires {
            let _ = writeln!(s, "{rule:<40}  {pos:>17}  {neg:>12}");
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
    mut progress: impl FnMut(u64),
) -> Result<Report, String> {
    let mut report = Report::default();
    let mut pairs: HashMap<PairId, PairOutcome> = HashMap::new();
    let mut fired: Vec<(PairId, Alert)> = Vec::new();
    let mut alerts = Vec::new();
    let mut read = 0u64;
    for line in events.lines() {
        let line = line.map_err(|e| e.to_string())?;
        read += line.len() as u64 + 1;
        progress(read);
        let Ok(ev) = Event::from_json(&line, limits) else {
            report.rejected += 1;
            continue;
        };
        report.events += 1;
        let id = pair_id(&ev.tenant, &ev.sender.user_id, &ev.recipient.user_id);
        let outcome = pairs.entry(id.clone()).or_insert_with(|| PairOutcome {
            first_at: ev.sent_at,
            ..Default::default()
        });
        outcome.messages += 1;
        alerts.clear();
        let key = engine.process(&ev, &mut alerts);
        if let Some(state) = engine.pair_by_key(&key) {
            outcome.lang_hits = state.lang_hits;
        }
        for a in alerts.drain(..) {
            // An update may be of another pair than the event's (a deadline passed).
            let id = pair_id(&a.tenant, &a.suspect.user_id, &a.target.user_id);
            let Some(outcome) = pairs.get_mut(&id) else {
                continue;
            };
            outcome.flags.extend(a.red_flags.iter().cloned());
            if let Some(u) = &a.update {
                *report
                    .updates
                    .entry(u.kind.as_str().to_string())
                    .or_default() += 1;
                continue;
            }
            let pi = a.priority as usize;
            outcome.best = Some(outcome.best.map_or(a.priority, |b| b.min(a.priority)));
            for slot in &mut outcome.first_alert[pi..] {
                slot.get_or_insert((outcome.messages, (ev.sent_at - outcome.first_at) / MINUTE));
            }
            outcome.suspects.push(a.suspect.user_id.clone());
            fired.push((id.clone(), a));
        }
    }
    let mut labelled: HashMap<PairId, &Label> = HashMap::new();
    for l in labels {
        labelled.insert(pair_id(&l.tenant, &l.pair[0], &l.pair[1]), l);
        let positive = l.label == "POSITIVE";
        if positive {
            report.positives += 1;
        } else {
            report.negatives += 1;
        }
        let outcome = pairs.get(&pair_id(&l.tenant, &l.pair[0], &l.pair[1]));
        let best = outcome.and_then(|o| o.best);
        for p in Priority::ALL {
            let hit = best.is_some_and(|b| b <= p);
            let i = p as usize;
            if positive && hit {
                report.detected[i] += 1;
                if outcome.is_some_and(|o| o.suspects.iter().any(|s| Some(s) == l.suspect.as_ref()))
                {
                    report.suspect_right[i] += 1;
                }
            } else if !positive && hit {
                report.false_alarms[i] += 1;
            }
        }
        for f in outcome.iter().flat_map(|o| &o.flags) {
            let e = report.flags.entry(f.clone()).or_default();
            if positive {
                e.0 += 1;
            } else {
                e.1 += 1;
            }
        }
        let lang = engine
            .languages()
            .get(outcome.map_or(usize::MAX, |o| {
                language_of(
                    o,
                    positive.then_some(l.suspect.as_deref()).flatten(),
                    &l.pair,
                )
            }))
            .cloned()
            .unwrap_or_else(|| "?".into());
        let by_lang = report.by_language.entry(lang).or_default();
        let p2 = best.is_some_and(|b| b <= Priority::P2);
        if positive {
            by_lang.positives += 1;
            by_lang.detected += usize::from(p2);
        } else {
            by_lang.negatives += 1;
            by_lang.false_alarms += usize::from(p2);
        }
        if positive {
            let pat = l.pattern.clone().unwrap_or_else(|| "?".into());
            let entry = report.by_pattern.entry(pat).or_default();
            entry.0 += 1;
            if let Some((m, min)) = outcome.and_then(|o| o.first_alert[Priority::P2 as usize]) {
                entry.1 += 1;
                by_lang.messages_to_alert.push(m);
                report.messages_to_alert.push(m);
                report.minutes_to_alert.push(min);
            }
        }
    }
    for (id, a) in &fired {
        let Some(l) = labelled.get(id) else {
            report.unlabelled_alerts += 1;
            continue;
        };
        let positive = l.label == "POSITIVE";
        let bump = |e: &mut (usize, usize)| if positive { e.0 += 1 } else { e.1 += 1 };
        for r in &a.rules {
            bump(report.rule_fires.entry(r.clone()).or_default());
        }
        bump(
            report
                .alerts_by_pattern
                .entry((
                    a.pattern.as_str().to_string(),
                    a.priority.as_str().to_string(),
                ))
                .or_default(),
        );
    }
    Ok(report)
}
