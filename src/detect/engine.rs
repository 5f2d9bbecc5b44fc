//! The engine: a pure, synchronous, deterministic function of the events it is given.
//! No I/O, no clock (time is each event's `sent_at`), no locks. One call per event:
//! normalise the text, match every lexicon in one pass, read a deadline, update the
//! pair's state, evaluate the escalation rules, and emit alerts that are new, of higher
//! priority, or carry a new deadline.

use crate::detect::alert::{excerpt, Alert, AlertContext, AlertUpdate, UpdateKind};
use crate::detect::deadline::find_deadline;
use crate::detect::event::{AgeBand, Body, Event, SafetyAction, UserRef};
use crate::detect::grammar::{Composed, Grammar, SlotRun, SlotSet};
use crate::detect::lexicon::Hits;
use crate::detect::normalize::{normalize, Normalized};
use crate::detect::pack::RulePack;
use crate::detect::rules::{Facts, Pattern, Priority, Verdict};
use crate::detect::signal::{Signal, SignalSet};
use crate::detect::state::{
    tenant_hash, user_hash, EvidenceRef, PairKey, PairState, PairStore, Raised, RaisedAlert,
};
use crate::detect::time::{format_rfc3339, Millis, DAY, MINUTE};
use jiff::tz::TimeZone;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// Longest excerpt quoted in evidence, in characters.
pub const EXCERPT_CHARS: usize = 200;
/// A pause after which a sender's next message starts a new slot run.
const RUN_PAUSE: Millis = 10 * MINUTE;

/// Signals that protective talk (a warning, advice, 3018) cancels in the same message.
const CANCELLED_BY_SAFETY_TALK: [Signal; 8] = [
    Signal::ThreatToDistribute,
    Signal::MoneyDemand,
    Signal::RecordingClaim,
    Signal::MoreContentDemand,
    Signal::Countdown,
    Signal::ImageRequest,
    Signal::Sexualization,
    Signal::VideoCallRequest,
];

/// A time in a message is a deadline only from a side that presses: one that threatens,
/// demands money or claims a recording (now or before), or counts down in the same
/// message. "See you at 8pm" is not a deadline.
const PRESSURE: [Signal; 3] = [
    Signal::ThreatToDistribute,
    Signal::MoneyDemand,
    Signal::RecordingClaim,
];

/// Words that, right after an age claim, make it a duration or a distance ("i'm 15 min away").
/// Words after a number that make it no age ("i'm 15 minutes away", "ich bin 10 minuten
/// zu spät", "tengo 20 euros"), in every language of the pack (normalised: no accents,
/// repeated letters collapsed).
const NOT_AN_AGE: &[&str] = &[
    "min", "mins", "minutes", "minute", "mn", "h", "hr", "hrs", "hours", "hour", "sec", "secs",
    "seconds", "km", "miles", "kg", "lbs", "minuten", "stunden", "std", "sekunden", "minutos",
    "minuto", "horas", "hora", "segundos", "minuti", "ore", "secondi", "euros", "euro", "eur",
    "dolars", "bucks", "reais", "real", "pesos", "franken", "chf", "pounds", "quid", "percent",
    "pourcent", "prozent", "por", "per", "robux", "vbucks", "dolares", "pavos", "pesos", "lucas",
];

#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Pairs idle for longer than this (event time) are forgotten.
    pub pair_ttl: Millis,
    /// Time zone for clock-time deadlines, per tenant.
    pub tenant_time_zones: HashMap<String, TimeZone>,
    pub default_time_zone: TimeZone,
    /// Notice language when nothing is known of the target's.
    pub default_language: String,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            pair_ttl: 30 * DAY,
            tenant_time_zones: HashMap::new(),
            default_time_zone: TimeZone::UTC,
            default_language: "en".to_string(),
        }
    }
}

/// Counters the engine keeps for metrics and summaries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EngineStats {
    pub events: u64,
    pub alerts: u64,
    pub pairs_expired: u64,
    /// Events dropped as retries of one of the pair's last events (same `event_id`).
    pub duplicates: u64,
    /// Events dropped as late: `sent_at` more than the pair TTL before their tenant's
    /// watermark (see [`Engine::process`]).
    pub late_events: u64,
    /// Signals found, by signal.
    pub signals: [u64; crate::detect::signal::SIGNAL_COUNT],
    /// Updates of standing alerts (a deadline passed, the target still in contact or no
    /// longer).
    pub updates: u64,
}

// Per-signal arrays are longer than 32: no derived `Default`.
impl Default for EngineStats {
    fn default() -> Self {
        EngineStats {
            events: 0,
            alerts: 0,
            pairs_expired: 0,
            duplicates: 0,
            late_events: 0,
            signals: [0; crate::detect::signal::SIGNAL_COUNT],
            updates: 0,
        }
    }
}

/// The standing alerts' deadlines of one tenant, earliest first: (deadline, pair,
/// pattern). Entries whose alert changed since are skipped when they come due.
type Deadlines = BTreeSet<(Millis, PairKey, u8)>;

pub struct Engine {
    pack: Arc<RulePack>,
    config: EngineConfig,
    store: PairStore,
    stats: EngineStats,
    norm: Normalized,
    hits: Hits,
    composed: Composed,
    verdicts: Vec<Verdict>,
    /// Deadlines of standing alerts, per tenant hash: derived from the pairs' state, not
    /// stored.
    deadlines: BTreeMap<u64, Deadlines>,
    /// Pairs other than the event's that the last call changed (a deadline passed).
    passed: Vec<PairKey>,
    /// The pairs the last [`Engine::forget_user`] removed.
    forgotten: Vec<PairKey>,
    /// Shadow rules that fired on the last event (index, priority), then only those that
    /// would have alerted ([`Engine::shadow_fired`]).
    shadow: Vec<(usize, Priority)>,
}

struct PairFacts<'a> {
    state: &'a PairState,
    /// The fact `KNOWN_CONTACT`, computed for the event's time.
    known: bool,
}

impl Facts for PairFacts<'_> {
    fn count(&self, side: usize, s: Signal) -> u16 {
        match s {
            Signal::KnownContact => u16::from(self.known),
            _ => self.state.count(side, s),
        }
    }
    fn age(&self, side: usize, as_target: bool) -> crate::detect::event::AgeClass {
        let band = self.state.bands[side];
        // A target of unknown age that says it is a minor is taken at its word; a
        // suspect's claim is not (offenders pose as peers).
        if as_target && band == AgeBand::Unknown && self.state.count(side, Signal::AgeClaim) > 0 {
            return crate::detect::event::AgeClass::Minor;
        }
        band.class()
    }
}

impl Engine {
    pub fn new(pack: Arc<RulePack>, config: EngineConfig) -> Self {
        Engine {
            store: PairStore::new(config.pair_ttl),
            pack,
            config,
            stats: EngineStats::default(),
            norm: Normalized::new(),
            hits: Hits::default(),
            composed: Composed::default(),
            verdicts: Vec::new(),
            deadlines: BTreeMap::new(),
            passed: Vec::new(),
            forgotten: Vec::new(),
            shadow: Vec::new(),
        }
    }

    /// Swaps the rule pack; pair state is kept.
    pub fn set_pack(&mut self, pack: Arc<RulePack>) {
        self.pack = pack;
        self.shadow.clear();
    }

    /// The ids of the pack's shadow rules (`mode = "shadow"`) that would have raised an
    /// alert on the last event given to [`Engine::process`], as a live rule would: the
    /// first time on the pair, then on a rise of priority. Counted, never alerted.
    pub fn shadow_fired(&self) -> impl Iterator<Item = &str> + '_ {
        self.shadow
            .iter()
            .map(|(i, _)| self.pack.rules.rules[*i].id.as_str())
    }

    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    pub fn pairs(&self) -> usize {
        self.store.len()
    }

    pub fn pair(&self, tenant: &str, a: &str, b: &str) -> Option<&PairState> {
        self.store.get(&PairKey::of(tenant, a, b).0)
    }

    /// A moderator judged the pair's alert for `pattern` a false positive: no re-alert
    /// for it unless the priority rises. Returns false if the pair is unknown.
    pub fn suppress(
        &mut self,
        tenant: &str,
        a: &str,
        b: &str,
        pattern: crate::detect::rules::Pattern,
    ) -> bool {
        let Some(state) = self.store.get_mut(&PairKey::of(tenant, a, b).0) else {
            return false;
        };
        let Some(active) = state.active.as_mut() else {
            return false;
        };
        match &mut active.raised[pattern as usize] {
            Some(r) => {
                r.suppressed = true;
                true
            }
            None => false,
        }
    }

    /// The pack's languages, in the order of [`PairState::lang_hits`].
    pub fn languages(&self) -> &[String] {
        self.pack.lexicon.languages()
    }

    /// A pair's state by its key.
    pub fn pair_by_key(&self, key: &PairKey) -> Option<&PairState> {
        self.store.get(key)
    }

    /// Drops a pair (a deletion read back from the state changelog).
    pub fn remove_pair(&mut self, key: &PairKey) {
        self.store.remove(key);
    }

    /// Every pair, for a checkpoint.
    pub fn pairs_iter(&self) -> impl Iterator<Item = (&PairKey, &PairState)> {
        self.store.iter()
    }

    /// Room for `n` more pairs, before restoring them.
    pub fn reserve_pairs(&mut self, n: usize) {
        self.store.reserve(n);
    }

    /// Puts back a pair from a checkpoint.
    pub fn restore_pair(&mut self, key: PairKey, state: PairState) {
        if let Some(a) = state.active.as_deref() {
            for (p, r) in a.raised.iter().enumerate() {
                if let Some(d) = r.as_ref().and_then(pending_deadline) {
                    let due = self.deadlines.entry(state.tenant).or_default();
                    due.insert((d, key, p as u8));
                }
            }
        }
        self.store.insert(key, state);
    }

    /// The pairs whose deadline the last call to [`Engine::process`] or
    /// [`Engine::pass_deadlines`] passed: their state changed, whatever pair the event
    /// was of (a store of record, such as the Kafka changelog, writes them again).
    pub fn passed_pairs(&self) -> &[PairKey] {
        &self.passed
    }

    /// Passes, for every tenant, the deadlines of standing alerts that `now` is past:
    /// the wall clock's turn, for a service whose events have stopped. Updates go to
    /// `out`.
    pub fn pass_deadlines(&mut self, now: Millis, out: &mut Vec<Alert>) {
        self.passed.clear();
        let tenants: Vec<u64> = self.deadlines.keys().copied().collect();
        for t in tenants {
            self.pass_tenant_deadlines(t, now, out);
        }
    }

    /// Marks the deadlines of `tenant`'s standing alerts that `now` is past, and emits
    /// the same alerts again with `deadline_passed` (an update, `DEADLINE_PASSED`).
    fn pass_tenant_deadlines(&mut self, tenant: u64, now: Millis, out: &mut Vec<Alert>) {
        let Some(due) = self.deadlines.get_mut(&tenant) else {
            return;
        };
        while let Some(&(d, key, p)) = due.first() {
            if d >= now {
                break;
            }
            due.pop_first();
            let Some(state) = self.store.get_mut(&key) else {
                continue;
            };
            let Some(r) = state
                .active
                .as_mut()
                .and_then(|a| a.raised[usize::from(p)].as_mut())
                .filter(|r| pending_deadline(r) == Some(d))
            else {
                continue;
            };
            r.deadline_passed = true;
            let raised = r.clone();
            self.passed.push(key);
            // As of the deadline (or the pair's last event after it), whoever noticed it
            // and when: the same update from event time and from the wall clock.
            let ctx = AlertContext {
                pack: &self.pack,
                default_language: &self.config.default_language,
                now: d.max(state.last_seen),
            };
            let pattern = Pattern::ALL[usize::from(p)];
            out.extend(update(
                &ctx,
                state,
                pattern,
                &raised,
                UpdateKind::DeadlinePassed,
                d,
            ));
            self.stats.updates += 1;
        }
        if due.is_empty() {
            self.deadlines.remove(&tenant);
        }
    }

    /// Erases every pair of `user_id` in `tenant` (`None`: in every tenant); returns how
    /// many pairs were removed.
    pub fn forget_user(&mut self, tenant: Option<&str>, user_id: &str) -> usize {
        self.forgotten.clear();
        self.store.forget_user(tenant, user_id, &mut self.forgotten)
    }

    /// The pairs the last [`Engine::forget_user`] removed (a store of record, such as
    /// the Kafka changelog, writes their deletion).
    pub fn forgotten_pairs(&self) -> &[PairKey] {
        &self.forgotten
    }

    /// Processes one validated event; alerts are appended to `out`. Returns the pair's
    /// key.
    ///
    /// Event time is per tenant: each tenant's watermark is the latest `sent_at` of its
    /// counted events, and its pairs expire relative to it alone. An event older than the
    /// pair TTL relative to its tenant's watermark is *late*: its pair has expired (or
    /// would have), so it is dropped, neither recreating nor updating any pair, and
    /// counted in [`EngineStats::late_events`]. (A clock far ahead is the service
    /// boundary's concern: `limits.max_future_skew` rejects such events before they get
    /// here; without it, as in replay, they only move their own tenant's time.)
    pub fn process(&mut self, ev: &Event, out: &mut Vec<Alert>) -> PairKey {
        self.stats.events += 1;
        self.passed.clear();
        self.shadow.clear();
        let tenant = tenant_hash(&ev.tenant);
        let (key, sender_side) = PairKey::of(&ev.tenant, &ev.sender.user_id, &ev.recipient.user_id);
        if self.store.is_late(tenant, ev.sent_at) {
            self.stats.late_events += 1;
            return key;
        }
        if self.process_pair(ev, key, tenant, sender_side, out) {
            self.stats.pairs_expired += self.store.advance(tenant, ev.sent_at) as u64;
        }
        if let Some(now) = self.store.watermark(tenant) {
            self.pass_tenant_deadlines(tenant, now, out);
        }
        key
    }

    /// Applies the event to its pair; false if it was a retry (not counted).
    fn process_pair(
        &mut self,
        ev: &Event,
        key: PairKey,
        tenant: u64,
        sender_side: usize,
        out: &mut Vec<Alert>,
    ) -> bool {
        let recipient_side = 1 - sender_side;
        let state = self.store.entry(key, tenant, ev.sent_at);
        if !state.first_time(&ev.event_id) {
            self.stats.duplicates += 1;
            return false;
        }
        let paused = ev.sent_at - state.last_seen > RUN_PAUSE;
        if state.users == [0, 0] {
            state.users[sender_side] = user_hash(&ev.sender.user_id);
            state.users[recipient_side] = user_hash(&ev.recipient.user_id);
        }
        state.first_contact = state.first_contact.min(ev.sent_at);
        state.last_seen = state.last_seen.max(ev.sent_at);
        state.bands[sender_side] = ev.sender.age_band;
        state.bands[recipient_side] = ev.recipient.age_band;
        if let Some(r) = ev.sender.relationship.or(ev.recipient.relationship) {
            state.relationship = Some(r);
        }
        // The patterns whose standing alert names the sender as its target.
        let as_target = standing_as_target(state, sender_side);

        let mut signals = SignalSet::EMPTY;
        let mut evidence: Option<(String, SignalSet)> = None;
        // The text classifier label that gave a signal, as evidence shows it.
        let mut text_label: Option<String> = None;
        match &ev.body {
            Body::Message(m) => {
                if !m.text.is_empty() {
                    normalize(&m.text, &mut self.norm);
                    self.pack.lexicon.scan(&self.norm, &mut self.hits);
                    self.hits
                        .keep_languages(allowed_languages(&self.hits, state, sender_side));
                    let lang = &mut state.lang_hits[sender_side];
                    for (i, n) in self.hits.lang_hits.iter().enumerate() {
                        lang[i] = lang[i].saturating_add((*n).min(255) as u8);
                    }
                    compose_slots(
                        &self.pack.grammar,
                        &mut self.hits,
                        &mut self.composed,
                        state,
                        sender_side,
                        paused,
                    );
                    signals = self.hits.signals;
                    for claim in [Signal::AgeClaim, Signal::AdultAgeClaim] {
                        if signals.contains(claim) && !is_age_claim(&self.norm, &self.hits, claim) {
                            signals.remove(claim);
                        }
                    }
                    let (labelled, label) = self.pack.rules.classifiers.text_signals(&m.labels);
                    signals = signals.union(labelled);
                    if signals.contains(Signal::SafetyTalk) {
                        CANCELLED_BY_SAFETY_TALK
                            .iter()
                            .for_each(|s| signals.remove(*s));
                    }
                    // Shown only when a signal it gave survived.
                    text_label = label
                        .filter(|_| labelled.intersects(signals))
                        .map(|l| format!("[{} {:.2}]", l.name, l.score));
                    if !signals.is_empty() || self.norm.has_digit() {
                        let tz = self
                            .config
                            .tenant_time_zones
                            .get(&ev.tenant)
                            .unwrap_or(&self.config.default_time_zone);
                        let pressing = signals.contains(Signal::Countdown)
                            || PRESSURE
                                .iter()
                                .any(|s| signals.contains(*s) || state.count(sender_side, *s) > 0);
                        let found = pressing
                            .then(|| find_deadline(self.norm.as_str(), ev.sent_at, tz))
                            .flatten();
                        if let Some(deadline) = found {
                            signals.insert(Signal::Deadline);
                            state.active.get_or_insert_with(Default::default).deadline
                                [sender_side] = Some(deadline);
                        }
                    }
                    if signals.contains(Signal::AgeClaim) && ev.sender.age_band == AgeBand::Adult {
                        signals.insert(Signal::AgeClaimMismatch);
                    }
                }
                let requested = state.count(recipient_side, Signal::ImageRequest) > 0
                    || state.count(recipient_side, Signal::MoreContentDemand) > 0;
                let media = self
                    .pack
                    .rules
                    .classifiers
                    .read_media(&m.attachments, requested);
                signals = signals.union(media.signals);
                if !signals.is_empty() {
                    evidence = Some(if m.text.is_empty() {
                        (
                            media.classified.or(media.plain).unwrap_or_default(),
                            signals,
                        )
                    } else {
                        let tags = media.classified.into_iter().chain(text_label);
                        let span = lexical_span(&self.hits, signals)
                            .map(|(s, e)| self.norm.original_span(s, e));
                        let (s, e) = span.unwrap_or((0, 0));
                        let quote = excerpt(&m.text, s, e, EXCERPT_CHARS);
                        (tags.chain([quote]).collect::<Vec<_>>().join(" "), signals)
                    });
                }
            }
            Body::Call {
                video: true,
                duration_s,
            } => {
                signals.insert(Signal::VideoCall);
                evidence = Some((format!("[video call, {duration_s} s]"), signals));
            }
            Body::Safety(SafetyAction::Block) => signals.insert(Signal::Blocked),
            Body::Safety(SafetyAction::Report) => signals.insert(Signal::Reported),
            Body::Contact(action) => state.note_contact(*action),
            Body::Call { .. } | Body::Safety(SafetyAction::Mute) => {}
        }
        // A target that answers after an alert is still in contact; one that blocks or
        // reports is no longer.
        let contact = match &ev.body {
            Body::Safety(SafetyAction::Block | SafetyAction::Report) => {
                state.clear(sender_side, Signal::StillInContact);
                Some(false)
            }
            _ if as_target.is_empty() => None,
            Body::Message(_) | Body::Call { .. } => Some(true),
            Body::Contact(_) | Body::Safety(SafetyAction::Mute) => None,
        };
        if contact == Some(true) {
            signals.insert(Signal::StillInContact);
        }
        if signals.is_empty() {
            return true;
        }
        for s in signals.iter() {
            self.stats.signals[s as usize] += 1;
        }
        state.record(sender_side, signals, ev.sent_at);
        if let Some((text, sigs)) = evidence {
            state.add_evidence(EvidenceRef {
                event_id: ev.event_id.as_str().into(),
                sent_at: ev.sent_at,
                side: sender_side as u8,
                signals: sigs,
                excerpt: text.into(),
                sha256: Sha256::digest(ev.text().as_bytes()).into(),
            });
        }
        let since = ev.sent_at - state.first_contact;
        let known = state.known(&self.pack.rules.known, ev.sent_at);
        let facts = PairFacts { state, known };
        self.pack.rules.evaluate(&facts, since, &mut self.verdicts);
        self.pack
            .rules
            .evaluate_shadow(&facts, since, &mut self.shadow);
        if !self.shadow.is_empty() {
            let rules = &self.pack.rules.rules;
            let active = state.active.get_or_insert_with(Default::default);
            self.shadow
                .retain(|(i, p)| would_alert(&mut active.shadow, &rules[*i].id, *p));
        }
        let ctx = AlertContext {
            pack: &self.pack,
            default_language: &self.config.default_language,
            now: ev.sent_at,
        };
        let mut raised_now = [false; Pattern::ALL.len()];
        for v in &self.verdicts {
            let active = state.active.get_or_insert_with(Default::default);
            // Only patterns whose rules read the suspect's deadline carry it.
            let respond_by =
                active.deadline[v.suspect].filter(|_| v.read[0].contains(Signal::Deadline));
            let slot = &active.raised[v.pattern as usize];
            // The suspect's own event brought a new occurrence of the pattern's fact.
            let occurred = v.suspect == sender_side
                && v.pattern
                    .per_occurrence()
                    .is_some_and(|f| signals.contains(f));
            let is_new = match slot {
                None => true,
                Some(r) => {
                    v.priority < r.priority
                        || (!r.suppressed
                            && (occurred || new_deadline(respond_by, r.respond_by, ev.sent_at)))
                }
            };
            if !is_new {
                continue;
            }
            let priority = slot
                .as_ref()
                .map_or(v.priority, |r| r.priority.min(v.priority));
            let kept = match (respond_by, slot.as_ref().and_then(|r| r.respond_by)) {
                (Some(d), Some(a)) if a >= ev.sent_at => Some(d.min(a)),
                (d, a) => d.or(a),
            };
            let replaced = slot.as_ref().and_then(pending_deadline);
            // A priority rise lifts a false-positive suppression.
            let raised = Raised {
                priority,
                respond_by: kept,
                suppressed: false,
                still_in_contact: state.count(1 - v.suspect, Signal::StillInContact) > 0,
                deadline_passed: respond_by.is_some_and(|d| d < ev.sent_at),
                alert: Some(Box::new(raised_alert(ev, sender_side, v, respond_by))),
            };
            // A deadline past the pair's expiry would outlive the pair: not indexed.
            let horizon = ev.sent_at.saturating_add(self.config.pair_ttl);
            let pending = pending_deadline(&raised).filter(|d| *d <= horizon);
            if replaced.is_some() || pending.is_some() {
                let due = self.deadlines.entry(tenant).or_default();
                if let Some(old) = replaced {
                    due.remove(&(old, key, v.pattern as u8));
                }
                if let Some(d) = pending {
                    due.insert((d, key, v.pattern as u8));
                }
            }
            if let Some(a) = raised.alert.as_deref() {
                out.push(ctx.build(state, v.pattern, &raised, a));
            }
            state.active.get_or_insert_with(Default::default).raised[v.pattern as usize] =
                Some(raised);
            raised_now[v.pattern as usize] = true;
            self.stats.alerts += 1;
        }
        // The standing alerts that learnt the target is (or is no longer) in contact,
        // without a new alert to say it: an update of each.
        let Some(in_contact) = contact else {
            return true;
        };
        for p in as_target {
            let Some(r) = state
                .active
                .as_mut()
                .and_then(|a| a.raised[p as usize].as_mut())
                .filter(|r| !raised_now[p as usize] && r.still_in_contact != in_contact)
            else {
                continue;
            };
            r.still_in_contact = in_contact;
            let raised = r.clone();
            let kind = if in_contact {
                UpdateKind::StillInContact
            } else {
                UpdateKind::ContactEnded
            };
            out.extend(update(&ctx, state, p, &raised, kind, ev.sent_at));
            self.stats.updates += 1;
        }
        true
    }
}

/// Whether a shadow rule firing at `p` would have alerted on a pair whose shadow
/// firings are `seen`: the first time, or on a rise; `seen` then remembers it.
fn would_alert(seen: &mut Vec<(u32, Priority)>, rule: &str, p: Priority) -> bool {
    let key = xxhash_rust::xxh3::xxh3_64(rule.as_bytes()) as u32;
    match seen.iter_mut().find(|(k, _)| *k == key) {
        Some((_, before)) if *before <= p => false,
        Some((_, before)) => {
            *before = p;
            true
        }
        None => {
            seen.push((key, p));
            true
        }
    }
}

/// The patterns of `state` with an offender whose standing alert (not judged a false
/// positive) names `side` as its target.
fn standing_as_target(state: &PairState, side: usize) -> Vec<Pattern> {
    let Some(a) = state.active.as_deref() else {
        return Vec::new();
    };
    Pattern::ALL
        .into_iter()
        .filter(|p| p.has_offender())
        .filter(|p| {
            a.raised[*p as usize].as_ref().is_some_and(|r| {
                !r.suppressed && r.alert.as_ref().is_some_and(|x| x.suspect_side() != side)
            })
        })
        .collect()
}

/// The deadline of a standing alert that has not passed yet (none if a moderator judged
/// it a false positive).
fn pending_deadline(r: &Raised) -> Option<Millis> {
    if r.deadline_passed || r.suppressed {
        return None;
    }
    r.alert.as_ref().and_then(|a| a.respond_by)
}

/// `raised` restated, as an update of `kind` at `at`.
fn update(
    ctx: &AlertContext,
    state: &PairState,
    pattern: Pattern,
    raised: &Raised,
    kind: UpdateKind,
    at: Millis,
) -> Option<Alert> {
    let mut alert = ctx.build(state, pattern, raised, raised.alert.as_deref()?);
    alert.update = Some(AlertUpdate {
        kind,
        at: format_rfc3339(at),
    });
    Some(alert)
}

/// What the alert of verdict `v`, triggered by `ev`, needs to be built again.
fn raised_alert(
    ev: &Event,
    sender_side: usize,
    v: &Verdict,
    respond_by: Option<Millis>,
) -> RaisedAlert {
    let by_side = |side: usize| -> &UserRef {
        if side == sender_side {
            &ev.sender
        } else {
            &ev.recipient
        }
    };
    RaisedAlert {
        tenant: ev.tenant.as_str().into(),
        users: [0, 1].map(|side| by_side(side).user_id.as_str().into()),
        locales: [0, 1].map(|side| by_side(side).locale.as_deref().map(Into::into)),
        trigger_event_id: ev.event_id.as_str().into(),
        triggered_at: ev.sent_at,
        suspect: v.suspect as u8,
        respond_by,
        rules: v.rules.clone(),
        read: v.read,
    }
}

/// Adds to the message's hits the signals its slots compose, within the sender's current
/// run of consecutive messages, and remembers which slots made each.
fn compose_slots(
    grammar: &Grammar,
    hits: &mut Hits,
    composed: &mut Composed,
    state: &mut PairState,
    side: usize,
    paused: bool,
) {
    let message = hits.slots;
    let before = SlotRun::unpack(state.run);
    let run = before.next(side, message, paused);
    state.run = run.pack();
    let earlier = if run.messages > 1 {
        before.slots
    } else {
        SlotSet::EMPTY
    };
    grammar.compose(earlier, run.slots, message, composed);
    for &(signal, slots) in &composed.via {
        if !hits.signals.contains(signal) {
            hits.add_composed(signal, slots);
            state.note_slots(side, signal, slots);
        }
    }
}

/// The languages a message's phrases may come from: those whose function words it holds
/// (when it holds at least two: one stray word is no evidence), and the sender's usual
/// languages (once the sender used at least three function words: each language with at
/// least a quarter of them). With neither, every language.
fn allowed_languages(hits: &Hits, state: &PairState, side: usize) -> u8 {
    let in_message: u32 = hits.lang_hits.iter().map(|&n| u32::from(n)).sum();
    let message = if in_message >= 2 {
        hits.message_languages()
    } else {
        0
    };
    let seen = &state.lang_hits[side];
    let total: u32 = seen.iter().map(|&n| u32::from(n)).sum();
    let top = seen.iter().copied().max().unwrap_or(0);
    let usual = (0..seen.len())
        .filter(|&i| total >= 3 && u32::from(seen[i]) * 4 >= u32::from(top))
        .fold(0u8, |m, i| m | 1 << i);
    match message | usual {
        0 => u8::MAX,
        allowed => allowed,
    }
}

/// A deadline is new when there was none, when it is earlier than the one already
/// alerted (more urgent), or when it is a later one set after the one already alerted
/// passed. A countdown restated ("you have 30 minutes, I said") is not news to
/// moderators, nor is the same deadline once passed (an update says that).
fn new_deadline(deadline: Option<Millis>, alerted: Option<Millis>, now: Millis) -> bool {
    match (deadline, alerted) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(d), Some(a)) => d < a || (a < now && d > a),
    }
}

/// The normalised span to quote for a message: the match of its most telling signal.
fn lexical_span(hits: &Hits, signals: SignalSet) -> Option<(usize, usize)> {
    Signal::ALL
        .iter()
        .rev()
        .filter(|s| signals.contains(**s))
        .find_map(|s| hits.span(*s))
}

/// Rejects "i'm 15 minutes away" as an age claim (`claim`: of a minor's or an adult's
/// age).
fn is_age_claim(norm: &Normalized, hits: &Hits, claim: Signal) -> bool {
    let Some((_, end)) = hits.span(claim) else {
        return false;
    };
    let next = norm.as_str()[end..]
        .split_ascii_whitespace()
        .next()
        .unwrap_or("");
    !NOT_AN_AGE.contains(&next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::event::Limits;
    use crate::detect::time::{parse_rfc3339, HOUR};

    fn engine() -> Engine {
        let pack = Arc::new(RulePack::embedded().expect("embedded pack"));
        Engine::new(pack, EngineConfig::default())
    }

    /// A message event of `tenant` from `from` to `to`, validated without a future-skew
    /// limit (pure event time, as replay and eval run).
    fn msg(id: &str, tenant: &str, at: Millis, from: &str, to: &str, text: &str) -> Event {
        let line = serde_json::json!({
            "event_id": id, "tenant": tenant, "sent_at": format_rfc3339(at),
            "sender": {"user_id": from, "age_band": "ADULT"},
            "recipient": {"user_id": to, "age_band": "AGE_13_15"},
            "message": {"text": text, "attachments": []}
        });
        Event::from_json(&line.to_string(), &Limits::default()).expect("valid event")
    }

    /// The embedded pack with `extra` appended to `escalation.toml`.
    fn engine_with(extra: &str) -> Engine {
        let files = crate::detect::pack::EMBEDDED
            .iter()
            .map(|(p, s)| {
                let src = if *p == "escalation.toml" {
                    format!("{s}{extra}")
                } else {
                    s.to_string()
                };
                (p.to_string(), p.to_string(), src)
            })
            .collect();
        let pack = Arc::new(RulePack::from_files(files).expect("valid pack"));
        Engine::new(pack, EngineConfig::default())
    }

    #[test]
    fn a_shadow_rule_counts_as_a_live_rule_would_alert_and_raises_nothing() {
        let mut e = engine_with(
            "\n[[rule]]\nid = \"trial.claim\"\npattern = \"SEXTORTION\"\npriority = \"P2\"\nmode = \"shadow\"\nall = [\"suspect:RECORDING_CLAIM\"]\nraise = [{ when = \"suspect:RECORDING_CLAIM>=3\", to = \"P1\" }]\n",
        );
        let mut out = Vec::new();
        let t0 = parse_rfc3339("2026-03-01T20:00:00Z").unwrap();
        let mut fired = Vec::new();
        for (i, text) in [
            "i recorded everything",
            "you look great today",
            "i recorded our call",
            "i screenshotted all of it",
        ]
        .iter()
        .enumerate()
        {
            let ev = msg(
                &format!("e{i}"),
                "t",
                t0 + i as i64 * 60_000,
                "s",
                "v",
                text,
            );
            e.process(&ev, &mut out);
            fired.push(e.shadow_fired().map(str::to_string).collect::<Vec<_>>());
        }
        // Once at P2 on the first claim, not on the next events while it holds at P2,
        // again when the third claim raises it to P1.
        let once = vec!["trial.claim".to_string()];
        assert_eq!(fired, [once.clone(), vec![], vec![], once]);
        assert!(
            out.iter()
                .all(|a| !a.rules.iter().any(|r| r == "trial.claim")),
            "{out:?}"
        );
        // Another pair counts on its own.
        e.process(
            &msg("x", "t", t0, "s2", "v", "i recorded everything"),
            &mut out,
        );
        assert_eq!(e.shadow_fired().count(), 1);
    }

    #[test]
    fn each_new_file_of_known_abuse_material_is_an_alert_of_its_own() {
        let mut e = engine();
        let mut out = Vec::new();
        let t0 = parse_rfc3339("2026-03-01T20:00:00Z").unwrap();
        let file = |id: &str, at: Millis, matched: bool| {
            let line = serde_json::json!({
                "event_id": id, "sent_at": format_rfc3339(at),
                "sender": {"user_id": "s", "age_band": "ADULT"},
                "recipient": {"user_id": "v", "age_band": "AGE_13_15"},
                "message": {"text": "", "attachments": [
                    {"kind": "IMAGE", "hash_match": {"list": "csam", "matched": matched}}
                ]}
            });
            Event::from_json(&line.to_string(), &Limits::default()).unwrap()
        };
        e.process(&file("f1", t0, true), &mut out);
        e.process(&file("f2", t0 + 60_000, false), &mut out);
        e.process(&file("f3", t0 + 120_000, true), &mut out);
        let abuse: Vec<_> = out
            .iter()
            .filter(|a| a.pattern == Pattern::KnownAbuseMaterial)
            .collect();
        // One alert per matching file, none for the file that did not match.
        assert_eq!(abuse.len(), 2, "{out:?}");
        assert_eq!(
            abuse
                .iter()
                .map(|a| a.trigger_event_id.as_str())
                .collect::<Vec<_>>(),
            ["f1", "f3"]
        );
        assert_ne!(abuse[0].alert_id, abuse[1].alert_id);
        assert!(abuse.iter().all(|a| a.priority == Priority::P0));
    }

    #[test]
    fn a_tenant_with_a_clock_far_ahead_does_not_expire_other_tenants_pairs() {
        let mut e = engine();
        let mut out = Vec::new();
        let t0 = parse_rfc3339("2026-03-01T10:00:00Z").unwrap();
        for i in 0..20 {
            let ev = msg(
                &format!("a{i}"),
                "A",
                t0 + i * 60_000,
                &format!("s{i}"),
                "v",
                "salut",
            );
            e.process(&ev, &mut out);
        }
        e.process(&msg("b0", "B", t0, "x", "y", "hello"), &mut out);
        // Tenant B's client has a bad clock: 31 days ahead, then the year 9998.
        e.process(&msg("b1", "B", t0 + 31 * DAY, "x", "z", "hi"), &mut out);
        let year_9998 = parse_rfc3339("9998-01-01T00:00:00Z").unwrap();
        e.process(&msg("b2", "B", year_9998, "x", "w", "hi"), &mut out);
        for i in 0..20 {
            let p = e
                .pair("A", &format!("s{i}"), "v")
                .expect("tenant A's pair kept");
            assert_eq!(p.last_seen, t0 + i * 60_000);
        }
        // Tenant B's own earlier pairs expired by its own watermark.
        assert!(e.pair("B", "x", "y").is_none());
        assert!(e.pair("B", "x", "z").is_none());
        assert!(e.pair("B", "x", "w").is_some());
        // Tenant A carries on as before: its pairs still build up, nothing is late.
        e.process(
            &msg("a20", "A", t0 + HOUR, "s0", "v", "t'es mignonne"),
            &mut out,
        );
        assert_eq!(e.pair("A", "s0", "v").unwrap().first_contact, t0);
        assert_eq!(e.stats().late_events, 0);
        // In memory too (not only hidden): all of A's pairs, B's latest only.
        let of = |t: &str| {
            e.pairs_iter()
                .filter(|(_, s)| s.tenant == tenant_hash(t))
                .count()
        };
        assert_eq!((of("A"), of("B")), (20, 1));
        assert_eq!(e.stats().pairs_expired, 2);
    }

    #[test]
    fn late_events_are_dropped_counted_and_never_recreate_a_pair() {
        let mut e = engine();
        let mut out = Vec::new();
        let t0 = parse_rfc3339("2026-03-01T10:00:00Z").unwrap();
        e.process(&msg("e1", "A", t0, "s", "v", "salut"), &mut out);
        e.process(
            &msg("e2", "A", t0 + 40 * DAY, "s2", "v2", "salut"),
            &mut out,
        );
        assert!(e.pair("A", "s", "v").is_none());
        // Older than the 30-day TTL relative to A's watermark: late.
        let late = msg("e3", "A", t0 + DAY, "s", "v", "envoie une photo de toi");
        e.process(&late, &mut out);
        e.process(&msg("e4", "A", t0, "s3", "v3", "salut"), &mut out);
        assert!(e.pair("A", "s", "v").is_none());
        assert!(e.pair("A", "s3", "v3").is_none());
        assert_eq!(e.stats().late_events, 2);
        assert_eq!(e.stats().events, 4);
        assert!(out.is_empty());
        // Within the TTL it is not late, even out of order; and another tenant's
        // watermark does not make it late.
        e.process(&msg("e5", "A", t0 + 11 * DAY, "s", "v", "salut"), &mut out);
        e.process(&msg("e6", "B", t0, "s", "v", "salut"), &mut out);
        assert!(e.pair("A", "s", "v").is_some());
        assert!(e.pair("B", "s", "v").is_some());
        assert_eq!(e.stats().late_events, 2);
    }

    #[test]
    fn a_restored_pair_of_unknown_tenant_takes_its_tenant_from_its_next_event() {
        let mut e = engine();
        let mut out = Vec::new();
        let t0 = parse_rfc3339("2026-03-01T10:00:00Z").unwrap();
        let (key, _) = PairKey::of("A", "s", "v");
        e.restore_pair(key, PairState::new(t0));
        assert_eq!(e.pair_by_key(&key).unwrap().tenant, 0);
        e.process(&msg("e1", "A", t0 + HOUR, "s", "v", "salut"), &mut out);
        let p = e.pair("A", "s", "v").unwrap();
        assert_eq!((p.tenant, p.first_contact), (tenant_hash("A"), t0));
    }

    /// An event of tenant `T` from `from` to `to` with `body` (JSON), the sender an
    /// adult and the recipient 14.
    fn event(id: &str, at: Millis, from: &str, to: &str, body: serde_json::Value) -> Event {
        let mut line = serde_json::json!({
            "event_id": id, "tenant": "T", "sent_at": format_rfc3339(at),
            "sender": {"user_id": from, "age_band": if from == "s" { "ADULT" } else { "AGE_13_15" }},
            "recipient": {"user_id": to, "age_band": if to == "s" { "ADULT" } else { "AGE_13_15" }},
        });
        for (k, v) in body.as_object().unwrap() {
            line[k] = v.clone();
        }
        Event::from_json(&line.to_string(), &Limits::default()).expect("valid event")
    }

    fn text(t: &str) -> serde_json::Value {
        serde_json::json!({"message": {"text": t, "attachments": []}})
    }

    /// A sextortion with a one-hour countdown, from `t0`; returns the alerts.
    fn sextortion_with_countdown(e: &mut Engine, t0: Millis) -> Vec<Alert> {
        let mut out = Vec::new();
        let image =
            serde_json::json!({"message": {"text": "", "attachments": [{"kind": "IMAGE"}]}});
        e.process(&event("e1", t0, "s", "v", text("send me a pic")), &mut out);
        e.process(&event("e2", t0 + MINUTE, "v", "s", image), &mut out);
        let threat = "i saved it. pay me 200 or your whole school sees it. you have 1 hour";
        e.process(
            &event("e3", t0 + 2 * MINUTE, "s", "v", text(threat)),
            &mut out,
        );
        out
    }

    #[test]
    fn the_wall_clock_passes_a_deadline_once_with_the_same_alert_id() {
        let mut e = engine();
        let t0 = parse_rfc3339("2026-03-01T20:00:00Z").unwrap();
        let alerts = sextortion_with_countdown(&mut e, t0);
        let last = alerts.last().expect("an alert");
        let respond_by = parse_rfc3339(last.respond_by.as_deref().expect("a deadline")).unwrap();
        assert!(last.red_flags.contains(&"DEADLINE".to_string()));
        let mut out = Vec::new();
        e.pass_deadlines(respond_by - 1, &mut out);
        assert!(out.is_empty(), "not yet");
        e.pass_deadlines(respond_by + 1, &mut out);
        assert_eq!(out.len(), 1);
        let u = &out[0];
        assert_eq!(u.alert_id, last.alert_id);
        assert!(u.deadline_passed);
        assert_eq!(
            u.update.as_ref().map(|u| (u.kind, u.at.clone())),
            Some((UpdateKind::DeadlinePassed, format_rfc3339(respond_by)))
        );
        assert!(u.red_flags.contains(&"DEADLINE_PASSED".to_string()));
        assert!(!u.red_flags.contains(&"DEADLINE".to_string()));
        assert!(u.victim_notice.text.len() > last.victim_notice.text.len());
        // Once only, whatever passes it again (the clock, or the tenant's events).
        e.pass_deadlines(respond_by + HOUR, &mut out);
        e.process(
            &event("x1", respond_by + HOUR, "a", "b", text("hi")),
            &mut out,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(e.stats().updates, 1);
    }

    #[test]
    fn a_restored_pair_still_has_its_deadline_passed_and_a_dismissed_alert_does_not() {
        let t0 = parse_rfc3339("2026-03-01T20:00:00Z").unwrap();
        let mut first = engine();
        let alerts = sextortion_with_countdown(&mut first, t0);
        let id = alerts.last().unwrap().alert_id.clone();
        let pairs: Vec<(PairKey, PairState)> =
            first.pairs_iter().map(|(k, s)| (*k, s.clone())).collect();
        let mut restored = engine();
        let mut dismissed = engine();
        for (k, s) in pairs {
            restored.restore_pair(k, s.clone());
            dismissed.restore_pair(k, s);
        }
        assert!(dismissed.suppress("T", "s", "v", Pattern::Sextortion));
        let (mut out, mut none) = (Vec::new(), Vec::new());
        restored.pass_deadlines(t0 + 3 * HOUR, &mut out);
        dismissed.pass_deadlines(t0 + 3 * HOUR, &mut none);
        assert_eq!(
            out.iter().map(|a| &a.alert_id).collect::<Vec<_>>(),
            vec![&id]
        );
        assert!(none.is_empty(), "a false positive takes no update");
    }

    #[test]
    fn a_target_that_answers_is_still_in_contact_until_it_blocks() {
        let mut e = engine();
        let t0 = parse_rfc3339("2026-03-01T20:00:00Z").unwrap();
        let alerts = sextortion_with_countdown(&mut e, t0);
        let id = alerts.last().unwrap().alert_id.clone();
        let mut out = Vec::new();
        let reply = text("ok ok i will pay");
        e.process(
            &event("e4", t0 + 3 * MINUTE, "v", "s", reply.clone()),
            &mut out,
        );
        let kinds = |out: &[Alert]| -> Vec<_> {
            out.iter()
                .map(|a| (a.alert_id.clone(), a.update.as_ref().map(|u| u.kind)))
                .collect()
        };
        // Already P0: no new alert, the same alert updated.
        assert_eq!(
            kinds(&out),
            vec![(id.clone(), Some(UpdateKind::StillInContact))]
        );
        assert!(out[0].still_in_contact);
        out.clear();
        e.process(&event("e5", t0 + 4 * MINUTE, "v", "s", reply), &mut out);
        assert!(out.is_empty(), "said once");
        let block = serde_json::json!({"safety": {"action": "BLOCK"}});
        e.process(&event("e6", t0 + 5 * MINUTE, "v", "s", block), &mut out);
        assert_eq!(kinds(&out), vec![(id, Some(UpdateKind::ContactEnded))]);
        assert!(!out[0].still_in_contact);
        assert_eq!(
            e.pair("T", "s", "v")
                .unwrap()
                .count(0, Signal::StillInContact),
            0
        );
    }

    #[test]
    fn friends_for_a_week_or_a_relationship_hint_make_a_known_offender() {
        let t0 = parse_rfc3339("2026-03-01T20:00:00Z").unwrap();
        let accept = serde_json::json!({"contact": {"action": "FRIEND_ACCEPT"}});
        let known = |e: &Engine, at: Millis| {
            e.pair("T", "s", "v")
                .unwrap()
                .known(&e.pack.rules.known, at)
        };
        let mut e = engine();
        e.process(&event("c1", t0, "v", "s", accept), &mut Vec::new());
        assert!(!known(&e, t0 + 6 * DAY));
        assert!(known(&e, t0 + 7 * DAY));
        // Without the friend list, two months of talk.
        let mut e = engine();
        e.process(&event("m1", t0, "s", "v", text("hi")), &mut Vec::new());
        assert!(!known(&e, t0 + 59 * DAY));
        assert!(known(&e, t0 + 60 * DAY));
        // A relationship hint at once; the alert says it.
        let mut e = engine();
        let mut hinted = event("h1", t0, "s", "v", text("send me a pic"));
        hinted.recipient.relationship = Some(crate::detect::event::Relationship::Family);
        let mut out = Vec::new();
        e.process(&hinted, &mut out);
        assert!(known(&e, t0));
        let alerts = sextortion_with_countdown(&mut e, t0 + MINUTE);
        let k = alerts
            .last()
            .unwrap()
            .known_offender
            .clone()
            .expect("known");
        assert_eq!(k.relationship.as_deref(), Some("FAMILY"));
        assert_eq!(
            k.summary,
            "known to the target: FAMILY according to the platform"
        );
        assert!(alerts.last().unwrap().recommended_actions[0].contains("knows the target"));
    }

    #[test]
    fn a_self_harm_watch_between_friends_carries_no_offence_flags() {
        let mut e = engine();
        let t0 = parse_rfc3339("2026-03-01T20:00:00Z").unwrap();
        let mut out = Vec::new();
        let mut first = event("f1", t0, "v", "w", text("salut ça va"));
        first.recipient.relationship = Some(crate::detect::event::Relationship::Friend);
        e.process(&first, &mut out);
        let sad = text("i want to die, i can't take it anymore");
        e.process(&event("f2", t0 + MINUTE, "v", "w", sad), &mut out);
        let watch = out.last().expect("a self-harm watch");
        assert_eq!(watch.pattern, Pattern::SelfHarmRisk);
        assert_eq!(watch.red_flags, vec!["SELF_HARM".to_string()]);
        assert!(watch.known_offender.is_none());
        // The friend answering is no "still in contact" for a self-harm watch.
        out.clear();
        e.process(
            &event("f3", t0 + 2 * MINUTE, "w", "v", text("hey i'm here")),
            &mut out,
        );
        e.process(
            &event("f4", t0 + 3 * MINUTE, "v", "w", text("thanks")),
            &mut out,
        );
        assert!(out.iter().all(|a| a.update.is_none()), "{out:?}");
    }

    #[test]
    fn a_block_clears_still_in_contact_even_on_a_dismissed_alert() {
        let mut e = engine();
        let t0 = parse_rfc3339("2026-03-01T20:00:00Z").unwrap();
        sextortion_with_countdown(&mut e, t0);
        let mut out = Vec::new();
        e.process(
            &event("r1", t0 + 3 * MINUTE, "v", "s", text("please no")),
            &mut out,
        );
        assert_eq!(
            e.pair("T", "s", "v")
                .unwrap()
                .count(1, Signal::StillInContact),
            1
        );
        assert!(e.suppress("T", "s", "v", Pattern::Sextortion));
        let block = serde_json::json!({"safety": {"action": "BLOCK"}});
        e.process(&event("r2", t0 + 4 * MINUTE, "v", "s", block), &mut out);
        assert_eq!(
            e.pair("T", "s", "v")
                .unwrap()
                .count(1, Signal::StillInContact),
            0
        );
    }

    #[test]
    fn the_deadline_index_keeps_one_entry_per_standing_alert_within_the_pair_ttl() {
        let mut e = engine();
        let t0 = parse_rfc3339("2026-03-01T20:00:00Z").unwrap();
        let mut out = Vec::new();
        let image =
            serde_json::json!({"message": {"text": "", "attachments": [{"kind": "IMAGE"}]}});
        e.process(&event("d1", t0, "s", "v", text("send me a pic")), &mut out);
        e.process(&event("d2", t0 + MINUTE, "v", "s", image), &mut out);
        let threat = "i saved it. pay me 200 or your whole school sees it";
        e.process(
            &event("d3", t0 + 2 * MINUTE, "s", "v", text(threat)),
            &mut out,
        );
        let entries = |e: &Engine| e.deadlines.values().map(BTreeSet::len).sum::<usize>();
        // A deadline past the pair's expiry outlives the pair: not kept.
        let far = text("you have 9999 weeks");
        e.process(&event("d4", t0 + 3 * MINUTE, "s", "v", far), &mut out);
        assert_eq!(entries(&e), 0);
        // Each earlier deadline replaces the alert and its entry.
        for (i, n) in [3, 2, 1].into_iter().enumerate() {
            let at = t0 + (4 + i as i64) * MINUTE;
            let countdown = text(&format!("you have {n} hours"));
            e.process(&event(&format!("d5{i}"), at, "s", "v", countdown), &mut out);
            assert_eq!(entries(&e), 1, "after the {n}-hour countdown");
        }
        e.pass_deadlines(t0 + 2 * HOUR, &mut out);
        assert_eq!(entries(&e), 0);
        assert_eq!(e.stats().updates, 1);
    }
}
