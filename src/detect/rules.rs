//! Escalation rules, read from `escalation.toml`: conditions over per-side signal counts,
//! time since first contact and the age of each side; each rule names a pattern and a
//! priority, with raises. Caps then apply the priority policy (peers, adults).
//!
//! A rule is evaluated in both orientations of the pair: the side whose signals satisfy
//! the `suspect:` conditions is the suspect.

use crate::detect::classifier::{ClassifierSpec, Classifiers};
use crate::detect::error::PackError;
use crate::detect::event::AgeClass;
use crate::detect::flag::RedFlag;
use crate::detect::signal::{Signal, SignalSet};
use crate::detect::time::{parse_duration, Millis};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use toml::Spanned;

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum Priority {
    P0,
    P1,
    P2,
    P3,
}

impl Priority {
    pub const ALL: [Priority; 4] = [Priority::P0, Priority::P1, Priority::P2, Priority::P3];

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::P0 => "P0",
            Priority::P1 => "P1",
            Priority::P2 => "P2",
            Priority::P3 => "P3",
        }
    }

    pub fn parse(s: &str) -> Option<Priority> {
        Priority::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// `by` steps more urgent, stopping at P0.
    pub fn raised(self, by: u8) -> Priority {
        Priority::ALL[(self as usize).saturating_sub(by as usize)]
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Pattern {
    Sextortion,
    SexualSolicitation,
    Grooming,
    SelfHarmRisk,
    /// Media the platform's hash matching found on a list of known child sexual abuse
    /// material: a mandatory report.
    KnownAbuseMaterial,
}

impl Pattern {
    pub const ALL: [Pattern; 5] = [
        Pattern::Sextortion,
        Pattern::SexualSolicitation,
        Pattern::Grooming,
        Pattern::SelfHarmRisk,
        Pattern::KnownAbuseMaterial,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Pattern::Sextortion => "SEXTORTION",
            Pattern::SexualSolicitation => "SEXUAL_SOLICITATION",
            Pattern::Grooming => "GROOMING",
            Pattern::SelfHarmRisk => "SELF_HARM_RISK",
            Pattern::KnownAbuseMaterial => "KNOWN_ABUSE_MATERIAL",
        }
    }

    pub fn parse(s: &str) -> Option<Pattern> {
        Pattern::ALL.into_iter().find(|p| p.as_str() == s)
    }

    /// Whether the pattern's suspect is an offender: the red flags of an offence
    /// (`KNOWN_OFFENDER`, `STILL_IN_CONTACT`) apply. A self-harm watch is about the
    /// target alone; the other side may be a friend.
    pub fn has_offender(self) -> bool {
        self != Pattern::SelfHarmRisk
    }

    /// The fact each new occurrence of which is an alert of its own, whatever alert
    /// stands: every file of known abuse material is a report of its own.
    pub fn per_occurrence(self) -> Option<Signal> {
        match self {
            Pattern::KnownAbuseMaterial => Some(Signal::KnownAbuseMaterial),
            _ => None,
        }
    }
}

/// Which side a condition reads, relative to the orientation being tried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Who {
    Suspect,
    Target,
    Either,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cond {
    pub who: Who,
    pub signal: Signal,
    pub min: u16,
}

/// Age classes as a bit set: Minor = 1, Adult = 2, Unknown = 4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AgeSet(u8);

impl AgeSet {
    pub const ANY: AgeSet = AgeSet(7);
    fn bit(c: AgeClass) -> u8 {
        match c {
            AgeClass::Minor => 1,
            AgeClass::Adult => 2,
            AgeClass::Unknown => 4,
        }
    }
    pub fn contains(self, c: AgeClass) -> bool {
        self.0 & Self::bit(c) != 0
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RaiseWhen {
    Signal(Cond),
    TargetAge(AgeSet),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RaiseTo {
    To(Priority),
    By(u8),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Raise {
    pub when: RaiseWhen,
    pub to: RaiseTo,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub id: String,
    /// What the rule means, for moderators and `rules check`.
    pub description: String,
    pub pattern: Pattern,
    pub priority: Priority,
    pub suspect_age: AgeSet,
    pub target_age: AgeSet,
    pub within_first_contact: Option<Millis>,
    pub all: Vec<Cond>,
    pub any: Vec<Cond>,
    pub min_any: usize,
    /// When not empty, at least one of these must hold too (`one_of`): "three grooming
    /// moves, one of them a probe".
    pub one_of: Vec<Cond>,
    pub none: Vec<Cond>,
    pub raise: Vec<Raise>,
    /// `mode = "shadow"`: evaluated and its firings counted, but it raises no alert and
    /// changes no priority (a rule on trial).
    pub shadow: bool,
}

/// A priority ceiling for some pairs: `max = None` means no alert at all.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cap {
    pub patterns: Vec<Pattern>,
    pub suspect_age: AgeSet,
    pub target_age: AgeSet,
    pub max: Option<Priority>,
    pub unless: Vec<Cond>,
}

/// When the two sides of a pair count as knowing each other (the fact `KNOWN_CONTACT`):
/// the platform says so (a relationship hint), or they are friends on the platform and
/// have talked for `friends_for`, or they have talked for `talked_for` (from the pair's
/// first event).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KnownPolicy {
    pub friends_for: Millis,
    pub talked_for: Millis,
}

impl Default for KnownPolicy {
    fn default() -> Self {
        KnownPolicy {
            friends_for: 7 * crate::detect::time::DAY,
            talked_for: 60 * crate::detect::time::DAY,
        }
    }
}

/// The compiled escalation rules of a pack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
    pub caps: Vec<Cap>,
    /// Recommended moderator actions per pattern.
    pub actions: BTreeMap<Pattern, Vec<String>>,
    /// Actions put first when an alert carries a red flag.
    pub flag_actions: BTreeMap<RedFlag, Vec<String>>,
    pub known: KnownPolicy,
    /// How the platform's classifier results become signals.
    pub classifiers: Classifiers,
}

/// What a rule reads: the counts of each side, the age class of each side.
pub trait Facts {
    fn count(&self, side: usize, s: Signal) -> u16;
    /// The side's age class when it plays the suspect (`as_target` false) or the target.
    fn age(&self, side: usize, as_target: bool) -> AgeClass;
}

/// One pattern's verdict for an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub pattern: Pattern,
    pub priority: Priority,
    /// Index of the suspect side (0 or 1).
    pub suspect: usize,
    /// Ids of the rules that fired, in file order.
    pub rules: Vec<String>,
    /// Signals the fired rules read, per side (suspect, target), for evidence.
    pub read: [SignalSet; 2],
}

impl Cond {
    fn holds<F: Facts>(&self, f: &F, suspect: usize) -> bool {
        match self.who {
            Who::Suspect => f.count(suspect, self.signal) >= self.min,
            Who::Target => f.count(1 - suspect, self.signal) >= self.min,
            Who::Either => {
                f.count(0, self.signal) >= self.min || f.count(1, self.signal) >= self.min
            }
        }
    }
}

impl Rule {
    /// The priority this rule gives with `suspect` as the suspect side, if it fires.
    pub fn evaluate<F: Facts>(
        &self,
        f: &F,
        suspect: usize,
        since_first_contact: Millis,
    ) -> Option<Priority> {
        let target = 1 - suspect;
        if !self.suspect_age.contains(f.age(suspect, false))
            || !self.target_age.contains(f.age(target, true))
        {
            return None;
        }
        if self
            .within_first_contact
            .is_some_and(|w| since_first_contact > w)
        {
            return None;
        }
        if !self.all.iter().all(|c| c.holds(f, suspect)) {
            return None;
        }
        if !self.any.is_empty()
            && self.any.iter().filter(|c| c.holds(f, suspect)).count() < self.min_any
        {
            return None;
        }
        if !self.one_of.is_empty() && !self.one_of.iter().any(|c| c.holds(f, suspect)) {
            return None;
        }
        if self.none.iter().any(|c| c.holds(f, suspect)) {
            return None;
        }
        let mut p = self.priority;
        for r in &self.raise {
            let applies = match &r.when {
                RaiseWhen::Signal(c) => c.holds(f, suspect),
                RaiseWhen::TargetAge(a) => a.contains(f.age(target, true)),
            };
            if applies {
                p = match r.to {
                    RaiseTo::To(to) => p.min(to),
                    RaiseTo::By(n) => p.raised(n),
                };
            }
        }
        Some(p)
    }

    fn read(&self) -> impl Iterator<Item = &Cond> {
        self.all
            .iter()
            .chain(&self.any)
            .chain(&self.one_of)
            .chain(self.raise.iter().filter_map(|r| match &r.when {
                RaiseWhen::Signal(c) => Some(c),
                RaiseWhen::TargetAge(_) => None,
            }))
    }
}

impl RuleSet {
    /// Every pattern that fires, with its highest priority after caps, for the state in `f`.
    /// For each pattern, the suspect is the side that gives the highest priority.
    pub fn evaluate<F: Facts>(&self, f: &F, since_first_contact: Millis, out: &mut Vec<Verdict>) {
        out.clear();
        let mut fired: Vec<(&Rule, usize, Priority)> = Vec::new();
        for rule in self.rules.iter().filter(|r| !r.shadow) {
            for suspect in 0..2 {
                if let Some(p) = self.fires(rule, f, suspect, since_first_contact) {
                    fired.push((rule, suspect, p));
                }
            }
        }
        for pattern in Pattern::ALL {
            let Some(&(_, suspect, priority)) = fired
                .iter()
                .filter(|(r, _, _)| r.pattern == pattern)
                .min_by_key(|(_, side, p)| (*p, *side))
            else {
                continue;
            };
            let mut verdict = Verdict {
                pattern,
                priority,
                suspect,
                rules: Vec::new(),
                read: [SignalSet::EMPTY; 2],
            };
            for (rule, _, _) in fired
                .iter()
                .filter(|(r, s, _)| r.pattern == pattern && *s == suspect)
            {
                verdict.rules.push(rule.id.clone());
                for c in rule.read() {
                    if c.who != Who::Target {
                        verdict.read[0].insert(c.signal);
                    }
                    if c.who != Who::Suspect {
                        verdict.read[1].insert(c.signal);
                    }
                }
            }
            out.push(verdict);
        }
    }

    /// The shadow rules that fire (after caps) for the state in `f`, by index in file
    /// order, with the most urgent priority of the two orientations.
    pub fn evaluate_shadow<F: Facts>(
        &self,
        f: &F,
        since_first_contact: Millis,
        out: &mut Vec<(usize, Priority)>,
    ) {
        out.clear();
        for (i, rule) in self.rules.iter().enumerate().filter(|(_, r)| r.shadow) {
            let best = (0..2)
                .filter_map(|s| self.fires(rule, f, s, since_first_contact))
                .min();
            if let Some(p) = best {
                out.push((i, p));
            }
        }
    }

    /// The priority `rule` gives with `suspect` as the suspect side, after caps; `None`
    /// when it does not fire or a cap suppresses it.
    fn fires<F: Facts>(
        &self,
        rule: &Rule,
        f: &F,
        suspect: usize,
        since_first_contact: Millis,
    ) -> Option<Priority> {
        let p = rule.evaluate(f, suspect, since_first_contact)?;
        match self.cap(rule.pattern, f, suspect) {
            Some(None) => None,
            Some(Some(max)) => Some(p.max(max)),
            None => Some(p),
        }
    }

    /// The tightest cap for this pattern and orientation: `Some(None)` suppresses.
    fn cap<F: Facts>(&self, pattern: Pattern, f: &F, suspect: usize) -> Option<Option<Priority>> {
        let mut result: Option<Option<Priority>> = None;
        for cap in &self.caps {
            let applies = cap.patterns.contains(&pattern)
                && cap.suspect_age.contains(f.age(suspect, false))
                && cap.target_age.contains(f.age(1 - suspect, true))
                && !cap.unless.iter().any(|c| c.holds(f, suspect));
            if applies {
                result = Some(match (result, cap.max) {
                    (Some(None), _) | (_, None) => None,
                    (Some(Some(a)), Some(b)) => Some(a.max(b)),
                    (None, Some(b)) => Some(b),
                });
            }
        }
        result
    }
}

// ---- parsing -------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    #[serde(default)]
    rule: Vec<RuleSpec>,
    #[serde(default)]
    cap: Vec<CapSpec>,
    #[serde(default)]
    actions: BTreeMap<Spanned<String>, Vec<String>>,
    #[serde(default)]
    flag_actions: BTreeMap<Spanned<String>, Vec<String>>,
    known: Option<KnownSpec>,
    classifiers: Option<ClassifierSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KnownSpec {
    friends_for: Spanned<String>,
    talked_for: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    id: Spanned<String>,
    pattern: Spanned<String>,
    priority: Spanned<String>,
    #[serde(default)]
    description: String,
    suspect_age: Option<Spanned<Vec<String>>>,
    target_age: Option<Spanned<Vec<String>>>,
    within_first_contact: Option<Spanned<String>>,
    #[serde(default)]
    all: Vec<Spanned<String>>,
    #[serde(default)]
    any: Vec<Spanned<String>>,
    min_any: Option<usize>,
    #[serde(default)]
    one_of: Vec<Spanned<String>>,
    #[serde(default)]
    none: Vec<Spanned<String>>,
    #[serde(default)]
    raise: Vec<Spanned<RaiseSpec>>,
    /// `live` (the default) or `shadow`.
    mode: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RaiseSpec {
    when: Option<String>,
    target_age: Option<Vec<String>>,
    to: Option<String>,
    by: Option<u8>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CapSpec {
    patterns: Spanned<Vec<String>>,
    suspect_age: Option<Spanned<Vec<String>>>,
    target_age: Option<Spanned<Vec<String>>>,
    max: Spanned<String>,
    #[serde(default)]
    unless: Vec<Spanned<String>>,
}

/// Parses `suspect:SIGNAL`, `target:SIGNAL>=3`, `either:SIGNAL`.
pub fn parse_cond(s: &str) -> Result<Cond, String> {
    let (who, rest) = s.split_once(':').ok_or_else(|| {
        format!("condition {s:?} needs a side: `suspect:`, `target:` or `either:`")
    })?;
    let who = match who.trim() {
        "suspect" => Who::Suspect,
        "target" => Who::Target,
        "either" => Who::Either,
        other => {
            return Err(format!(
                "unknown side {other:?} in {s:?} (suspect, target, either)"
            ))
        }
    };
    let (name, min) = match rest.split_once(">=") {
        Some((n, m)) => (
            n.trim(),
            m.trim()
                .parse::<u16>()
                .map_err(|_| format!("bad count {m:?} in {s:?}"))?,
        ),
        None => (rest.trim(), 1),
    };
    let signal = Signal::parse(name).ok_or_else(|| format!("unknown signal {name:?} in {s:?}"))?;
    if min == 0 {
        return Err(format!("count must be at least 1 in {s:?}"));
    }
    Ok(Cond { who, signal, min })
}

fn parse_ages(v: &[String]) -> Result<AgeSet, String> {
    let mut bits = 0;
    for a in v {
        bits |= match a.as_str() {
            "MINOR" => AgeSet::bit(AgeClass::Minor),
            "ADULT" => AgeSet::bit(AgeClass::Adult),
            "UNKNOWN" => AgeSet::bit(AgeClass::Unknown),
            other => {
                return Err(format!(
                    "unknown age class {other:?} (MINOR, ADULT, UNKNOWN)"
                ))
            }
        };
    }
    Ok(AgeSet(bits))
}

/// Age classes of an optional list; problems go to `err` with their offset.
fn spanned_ages(v: &Option<Spanned<Vec<String>>>, err: &mut impl FnMut(usize, String)) -> AgeSet {
    match v {
        None => AgeSet::ANY,
        Some(v) => parse_ages(v.get_ref()).unwrap_or_else(|m| {
            err(v.span().start, m);
            AgeSet::ANY
        }),
    }
}

/// Conditions of a list; problems go to `err` with their offset.
fn spanned_conds(list: &[Spanned<String>], err: &mut impl FnMut(usize, String)) -> Vec<Cond> {
    list.iter()
        .filter_map(|c| {
            parse_cond(c.get_ref())
                .map_err(|m| err(c.span().start, m))
                .ok()
        })
        .collect()
}

impl RuleSet {
    /// Parses an escalation file; problems go to `errors`, `None` if there were any.
    pub fn parse(file: &str, src: &str, errors: &mut Vec<PackError>) -> Option<RuleSet> {
        let spec: FileSpec = match toml::from_str(src) {
            Ok(s) => s,
            Err(e) => {
                errors.push(PackError::from_toml(file, src, &e));
                return None;
            }
        };
        let before = errors.len();
        let mut err = |offset: usize, m: String| errors.push(PackError::at(file, src, offset, m));
        let mut rules = Vec::new();
        let mut ids = std::collections::HashSet::new();
        for r in &spec.rule {
            let at = r.id.span().start;
            if !ids.insert(r.id.get_ref().clone()) {
                err(at, format!("rule id {:?} is used twice", r.id.get_ref()));
            }
            let pattern = Pattern::parse(r.pattern.get_ref());
            if pattern.is_none() {
                err(r.pattern.span().start, format!("unknown pattern {:?} (SEXTORTION, SEXUAL_SOLICITATION, GROOMING, SELF_HARM_RISK, KNOWN_ABUSE_MATERIAL)", r.pattern.get_ref()));
            }
            let priority = Priority::parse(r.priority.get_ref());
            if priority.is_none() {
                err(
                    r.priority.span().start,
                    format!("unknown priority {:?} (P0 to P3)", r.priority.get_ref()),
                );
            }
            let suspect_age = spanned_ages(&r.suspect_age, &mut err);
            let target_age = spanned_ages(&r.target_age, &mut err);
            let within = r.within_first_contact.as_ref().and_then(|w| {
                let d = parse_duration(w.get_ref());
                if d.is_none() {
                    err(
                        w.span().start,
                        format!("bad duration {:?} (e.g. 24h, 7d)", w.get_ref()),
                    );
                }
                d
            });
            let all = spanned_conds(&r.all, &mut err);
            let any = spanned_conds(&r.any, &mut err);
            let one_of = spanned_conds(&r.one_of, &mut err);
            let none = spanned_conds(&r.none, &mut err);
            if r.all.is_empty() && r.any.is_empty() {
                err(
                    at,
                    format!(
                        "rule {:?} has no condition (`all` or `any`)",
                        r.id.get_ref()
                    ),
                );
            }
            let min_any = r.min_any.unwrap_or(1);
            if min_any > r.any.len().max(1) {
                err(
                    at,
                    format!(
                        "rule {:?}: min_any = {min_any} but only {} `any` conditions",
                        r.id.get_ref(),
                        r.any.len()
                    ),
                );
            }
            let mut raise = Vec::new();
            for rs in &r.raise {
                let at = rs.span().start;
                let spec = rs.get_ref();
                let when = match (&spec.when, &spec.target_age) {
                    (Some(c), None) => parse_cond(c).map(RaiseWhen::Signal),
                    (None, Some(a)) => parse_ages(a).map(RaiseWhen::TargetAge),
                    _ => Err("a raise needs exactly one of `when` or `target_age`".to_string()),
                };
                let to = match (&spec.to, spec.by) {
                    (Some(p), None) => Priority::parse(p).map(RaiseTo::To).ok_or(format!("unknown priority {p:?}")),
                    (None, Some(n)) if n > 0 => Ok(RaiseTo::By(n)),
                    _ => Err("a raise needs exactly one of `to` (a priority) or `by` (steps, at least 1)".to_string()),
                };
                match (when, to) {
                    (Ok(when), Ok(to)) => raise.push(Raise { when, to }),
                    (Err(m), _) | (_, Err(m)) => err(at, m),
                }
            }
            let shadow = match r
                .mode
                .as_ref()
                .map(|m| (m.span().start, m.get_ref().as_str()))
            {
                None | Some((_, "live")) => false,
                Some((_, "shadow")) => true,
                Some((at, other)) => {
                    err(at, format!("unknown mode {other:?} (live, shadow)"));
                    false
                }
            };
            if let (Some(pattern), Some(priority)) = (pattern, priority) {
                rules.push(Rule {
                    id: r.id.get_ref().clone(),
                    description: r.description.clone(),
                    pattern,
                    priority,
                    suspect_age,
                    target_age,
                    within_first_contact: within,
                    all,
                    any,
                    min_any,
                    one_of,
                    none,
                    raise,
                    shadow,
                });
            }
        }
        let mut caps = Vec::new();
        for c in &spec.cap {
            let patterns: Vec<Pattern> = c
                .patterns
                .get_ref()
                .iter()
                .filter_map(|p| {
                    let parsed = Pattern::parse(p);
                    if parsed.is_none() {
                        err(c.patterns.span().start, format!("unknown pattern {p:?}"));
                    }
                    parsed
                })
                .collect();
            let suspect_age = spanned_ages(&c.suspect_age, &mut err);
            let target_age = spanned_ages(&c.target_age, &mut err);
            let max = match c.max.get_ref().as_str() {
                "NONE" => None,
                p => {
                    let parsed = Priority::parse(p);
                    if parsed.is_none() {
                        err(
                            c.max.span().start,
                            format!("unknown cap {p:?} (P0 to P3, or NONE)"),
                        );
                    }
                    parsed
                }
            };
            let unless = spanned_conds(&c.unless, &mut err);
            caps.push(Cap {
                patterns,
                suspect_age,
                target_age,
                max,
                unless,
            });
        }
        let mut actions = BTreeMap::new();
        for (k, v) in &spec.actions {
            match Pattern::parse(k.get_ref()) {
                Some(p) => {
                    actions.insert(p, v.clone());
                }
                None => err(
                    k.span().start,
                    format!("unknown pattern {:?} in [actions]", k.get_ref()),
                ),
            }
        }
        let mut flag_actions = BTreeMap::new();
        for (k, v) in &spec.flag_actions {
            match RedFlag::parse(k.get_ref()) {
                Some(f) => {
                    flag_actions.insert(f, v.clone());
                }
                None => err(
                    k.span().start,
                    format!(
                        "unknown red flag {:?} in [flag_actions] ({})",
                        k.get_ref(),
                        RedFlag::names()
                    ),
                ),
            }
        }
        let mut known = KnownPolicy::default();
        if let Some(k) = &spec.known {
            let mut duration =
                |d: &Spanned<String>, into: &mut Millis| match parse_duration(d.get_ref()) {
                    Some(v) => *into = v,
                    None => err(
                        d.span().start,
                        format!("bad duration {:?} (e.g. 7d, 60d)", d.get_ref()),
                    ),
                };
            duration(&k.friends_for, &mut known.friends_for);
            duration(&k.talked_for, &mut known.talked_for);
        }
        let classifiers = spec
            .classifiers
            .as_ref()
            .map(|c| c.compile(&mut err))
            .unwrap_or_default();
        for p in Pattern::ALL {
            if rules.iter().any(|r: &Rule| r.pattern == p) && !actions.contains_key(&p) {
                errors.push(PackError::file(
                    file,
                    format!("[actions] has no recommended actions for {}", p.as_str()),
                ));
            }
        }
        if rules.is_empty() && errors.len() == before {
            errors.push(PackError::file(file, "no [[rule]]"));
        }
        (errors.len() == before).then_some(RuleSet {
            rules,
            caps,
            actions,
            flag_actions,
            known,
            classifiers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct F {
        counts: [[u16; crate::detect::signal::SIGNAL_COUNT]; 2],
        ages: [AgeClass; 2],
    }
    impl Facts for F {
        fn count(&self, side: usize, s: Signal) -> u16 {
            self.counts[side][s as usize]
        }
        fn age(&self, side: usize, _as_target: bool) -> AgeClass {
            self.ages[side]
        }
    }
    fn facts(ages: [AgeClass; 2], signals: &[(usize, Signal, u16)]) -> F {
        let mut f = F {
            counts: [[0; crate::detect::signal::SIGNAL_COUNT]; 2],
            ages,
        };
        for (side, s, n) in signals {
            f.counts[*side][*s as usize] = *n;
        }
        f
    }

    const RULES: &str = r#"
[[rule]]
id = "sextortion.threat"
pattern = "SEXTORTION"
priority = "P1"
all = ["suspect:THREAT_TO_DISTRIBUTE"]
any = ["suspect:MONEY_DEMAND", "suspect:MORE_CONTENT_DEMAND"]
raise = [{ when = "suspect:DEADLINE", to = "P0" }, { target_age = ["MINOR"], by = 1 }]

[[rule]]
id = "solicitation.first_day"
pattern = "SEXUAL_SOLICITATION"
priority = "P2"
within_first_contact = "24h"
target_age = ["MINOR", "UNKNOWN"]
all = ["suspect:SEXUALIZATION", "suspect:IMAGE_REQUEST"]
raise = [{ target_age = ["MINOR"], by = 1 }]

[[cap]]
patterns = ["SEXUAL_SOLICITATION"]
suspect_age = ["MINOR"]
target_age = ["MINOR"]
max = "P3"
unless = ["suspect:MONEY_DEMAND"]

[[cap]]
patterns = ["SEXUAL_SOLICITATION"]
suspect_age = ["ADULT"]
target_age = ["ADULT"]
max = "NONE"

[actions]
SEXTORTION = ["Preserve the evidence."]
SEXUAL_SOLICITATION = ["Review the conversation."]
"#;

    fn rules() -> RuleSet {
        let mut errors = Vec::new();
        let r = RuleSet::parse("escalation.toml", RULES, &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        r.unwrap()
    }

    #[test]
    fn sextortion_priority_and_suspect_side() {
        use AgeClass::*;
        let r = rules();
        let mut out = Vec::new();
        // Side 1 threatens and demands money from side 0, an adult.
        let f = facts(
            [Adult, Unknown],
            &[
                (1, Signal::ThreatToDistribute, 1),
                (1, Signal::MoneyDemand, 2),
            ],
        );
        r.evaluate(&f, 0, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(
            (out[0].pattern, out[0].priority, out[0].suspect),
            (Pattern::Sextortion, Priority::P1, 1)
        );
        // A minor target raises by one; a deadline raises to P0.
        let f = facts(
            [Minor, Unknown],
            &[
                (1, Signal::ThreatToDistribute, 1),
                (1, Signal::MoneyDemand, 1),
            ],
        );
        r.evaluate(&f, 0, &mut out);
        assert_eq!(out[0].priority, Priority::P0);
        let f = facts(
            [Adult, Unknown],
            &[
                (1, Signal::ThreatToDistribute, 1),
                (1, Signal::MoneyDemand, 1),
                (1, Signal::Deadline, 1),
            ],
        );
        r.evaluate(&f, 0, &mut out);
        assert_eq!(out[0].priority, Priority::P0);
        // The threat alone is not enough; nor are signals split across sides.
        let f = facts(
            [Adult, Unknown],
            &[
                (1, Signal::ThreatToDistribute, 1),
                (0, Signal::MoneyDemand, 1),
            ],
        );
        r.evaluate(&f, 0, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn time_window_and_caps() {
        use AgeClass::*;
        let r = rules();
        let mut out = Vec::new();
        let sig = [(0, Signal::Sexualization, 1), (0, Signal::ImageRequest, 1)];
        r.evaluate(&facts([Adult, Minor], &sig), 3_600_000, &mut out);
        assert_eq!((out[0].priority, out[0].suspect), (Priority::P1, 0));
        r.evaluate(&facts([Unknown, Unknown], &sig), 3_600_000, &mut out);
        assert_eq!(out[0].priority, Priority::P2);
        // After the first day the rule does not fire.
        r.evaluate(&facts([Adult, Minor], &sig), 2 * 86_400_000, &mut out);
        assert!(out.is_empty());
        // Peers: capped to a watch; adults: no alert.
        r.evaluate(&facts([Minor, Minor], &sig), 0, &mut out);
        assert_eq!(out[0].priority, Priority::P3);
        r.evaluate(&facts([Adult, Adult], &sig), 0, &mut out);
        assert!(out.is_empty(), "{out:?}");
        // Target age outside the rule's classes.
        let mut f = facts([Adult, Adult], &sig);
        f.ages = [Unknown, Adult];
        r.evaluate(&f, 0, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn a_shadow_rule_is_evaluated_apart_and_raises_nothing() {
        use AgeClass::*;
        let src = RULES.replacen(
            "[[cap]]",
            "[[rule]]\nid = \"sextortion.threat_alone\"\npattern = \"SEXTORTION\"\npriority = \"P0\"\nmode = \"shadow\"\nall = [\"suspect:THREAT_TO_DISTRIBUTE\"]\n\n[[cap]]",
            1,
        );
        let mut errors = Vec::new();
        let r = RuleSet::parse("escalation.toml", &src, &mut errors).unwrap();
        assert!(errors.is_empty(), "{errors:?}");
        let shadow = r.rules.iter().position(|r| r.shadow).unwrap();
        assert_eq!(r.rules[shadow].id, "sextortion.threat_alone");
        let (mut out, mut fired) = (Vec::new(), Vec::new());
        // The threat alone: only the shadow rule holds, and no verdict comes of it.
        let f = facts([Adult, Minor], &[(1, Signal::ThreatToDistribute, 1)]);
        r.evaluate(&f, 0, &mut out);
        assert!(out.is_empty(), "{out:?}");
        r.evaluate_shadow(&f, 0, &mut fired);
        assert_eq!(fired, [(shadow, Priority::P0)]);
        // With a demand the live rule fires at its own priority: the shadow P0 does not
        // raise it.
        let f = facts(
            [Adult, Adult],
            &[
                (1, Signal::ThreatToDistribute, 1),
                (1, Signal::MoneyDemand, 1),
            ],
        );
        r.evaluate(&f, 0, &mut out);
        assert_eq!((out[0].priority, out[0].rules.len()), (Priority::P1, 1));
        // Nothing holds: nothing fired.
        r.evaluate_shadow(&facts([Adult, Minor], &[]), 0, &mut fired);
        assert!(fired.is_empty());
        let bad = src.replace("mode = \"shadow\"", "mode = \"trial\"");
        assert!(RuleSet::parse("escalation.toml", &bad, &mut errors).is_none());
        assert!(errors[0]
            .to_string()
            .contains("unknown mode \"trial\" (live, shadow)"));
    }

    #[test]
    fn reports_every_error_with_its_line() {
        let bad = "[[rule]]\nid = \"a\"\npattern = \"EXTORTION\"\npriority = \"P9\"\nall = [\"suspect:NOPE\", \"victim:MONEY_DEMAND\", \"target:SELF_HARM>=x\"]\nraise = [{ when = \"suspect:DEADLINE\" }]\n\n[[rule]]\nid = \"a\"\npattern = \"GROOMING\"\npriority = \"P2\"\n";
        let mut errors = Vec::new();
        assert!(RuleSet::parse("esc.toml", bad, &mut errors).is_none());
        let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        for expected in [
            "esc.toml:3: unknown pattern \"EXTORTION\"",
            "esc.toml:4: unknown priority \"P9\"",
            "esc.toml:5: unknown signal \"NOPE\"",
            "esc.toml:5: unknown side \"victim\"",
            "esc.toml:5: bad count \"x\"",
            "esc.toml:6: a raise needs exactly one of `to`",
            "esc.toml:9: rule id \"a\" is used twice",
            "esc.toml:9: rule \"a\" has no condition",
        ] {
            assert!(
                lines.iter().any(|l| l.starts_with(expected)),
                "missing {expected:?} in {lines:#?}"
            );
        }
        let mut errors = Vec::new();
        assert!(RuleSet::parse("esc.toml", "[[rule]]\nid = 3\n", &mut errors).is_none());
        assert!(
            errors[0].to_string().starts_with("esc.toml:2:"),
            "{errors:?}"
        );
    }
}
