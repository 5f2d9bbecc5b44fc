//! The alert contract (JSON form) and how an alert is put together: deterministic id,
//! suspect and target, red flags, evidence, signals summary, victim notice, recommended
//! actions; and updates, the same alert restated when a red flag changes.

use crate::detect::digest::hex;
use crate::detect::event::{AgeBand, ContactAction};
use crate::detect::flag::RedFlag;
use crate::detect::pack::RulePack;
use crate::detect::rules::{Pattern, Priority};
use crate::detect::signal::Signal;
use crate::detect::state::{PairState, Raised, RaisedAlert};
use crate::detect::time::{format_rfc3339, Millis, DAY, SECOND};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const ENGINE_VERSION: &str = concat!("pairwatch/", env!("CARGO_PKG_VERSION"));
/// Most evidence items in one alert.
pub const MAX_ALERT_EVIDENCE: usize = 8;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    pub alert_id: String,
    pub tenant: String,
    pub priority: Priority,
    pub pattern: Pattern,
    pub suspect: AlertUser,
    pub target: AlertUser,
    pub trigger_event_id: String,
    pub triggered_at: String,
    pub first_contact_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub respond_by: Option<String>,
    /// The helpline red flags the alert carries ([`RedFlag`] names).
    #[serde(default)]
    pub red_flags: Vec<String>,
    /// The target went on answering, sending media or complying after the alert (until
    /// it blocked or reported the suspect).
    #[serde(default)]
    pub still_in_contact: bool,
    /// Event time (in `serve`, also the wall clock) passed `respond_by` while the alert
    /// stood.
    #[serde(default)]
    pub deadline_passed: bool,
    /// Present when the suspect is someone the target knows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_offender: Option<KnownOffender>,
    /// Present on an update: the same alert (same id) restated with new facts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<AlertUpdate>,
    pub rules: Vec<String>,
    pub signals: Vec<SignalSummary>,
    pub evidence: Vec<Evidence>,
    pub victim_notice: VictimNotice,
    pub recommended_actions: Vec<String>,
    pub engine_version: String,
    pub rules_version: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertUser {
    pub user_id: String,
    pub age_band: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Side {
    Suspect,
    Target,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalSummary {
    pub category: String,
    pub side: Side,
    pub count: u32,
    pub first_at: String,
    pub last_at: String,
    /// The slots that composed the signal, when slot words rather than a phrase made it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slots: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    pub event_id: String,
    pub sent_at: String,
    pub sender_id: String,
    pub excerpt: String,
    pub sha256: String,
}

/// How the target knows the suspect.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownOffender {
    /// The platform's relationship hint (`FAMILY`, `FRIEND`, `SCHOOLMATE`, `TEAMMATE`,
    /// `ACQUAINTANCE`), if it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relationship: Option<String>,
    /// The two accounts are friends on the platform (a friend request accepted).
    pub friends: bool,
    /// Days since the pair's first event.
    pub known_for_days: u32,
    /// One line for moderators: "known to the target for 4 months; friends on the
    /// platform".
    pub summary: String,
}

/// What an update says changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum UpdateKind {
    /// `respond_by` passed with the alert still standing.
    DeadlinePassed,
    /// The target answered the suspect after the alert.
    StillInContact,
    /// The target blocked or reported the suspect.
    ContactEnded,
}

impl UpdateKind {
    pub fn as_str(self) -> &'static str {
        match self {
            UpdateKind::DeadlinePassed => "DEADLINE_PASSED",
            UpdateKind::StillInContact => "STILL_IN_CONTACT",
            UpdateKind::ContactEnded => "CONTACT_ENDED",
        }
    }
}

/// An update of a standing alert.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertUpdate {
    pub kind: UpdateKind,
    /// When it changed: the deadline itself for `DEADLINE_PASSED`, the event's time
    /// otherwise.
    pub at: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VictimNotice {
    pub language: String,
    pub text: String,
}

impl Alert {
    /// Every user the alert names: suspect, target, and each evidence sender.
    pub fn user_ids(&self) -> impl Iterator<Item = &str> {
        [self.suspect.user_id.as_str(), self.target.user_id.as_str()]
            .into_iter()
            .chain(self.evidence.iter().map(|e| e.sender_id.as_str()))
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// What names this line of the alert stream: the alert id, and for an update its
    /// kind and time. The same events (and deadlines) always give the same keys, so a
    /// log replayed after a crash writes no line twice.
    pub fn stream_key(&self) -> String {
        match &self.update {
            None => self.alert_id.clone(),
            Some(u) => format!("{}/{}/{}", self.alert_id, u.kind.as_str(), u.at),
        }
    }
}

/// Deterministic alert id: the same input gives the same id.
pub fn alert_id(
    tenant: &str,
    pair: (&str, &str),
    pattern: Pattern,
    priority: Priority,
    respond_by: Option<Millis>,
    trigger: &str,
) -> String {
    let mut h = Sha256::new();
    for part in [
        tenant,
        pair.0,
        pair.1,
        pattern.as_str(),
        priority.as_str(),
        trigger,
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    h.update(respond_by.unwrap_or(Millis::MIN).to_be_bytes());
    hex(&h.finalize()[..16])
}

/// Everything the alert builder reads besides the pair's state and its raised alert.
pub struct AlertContext<'a> {
    pub pack: &'a RulePack,
    pub default_language: &'a str,
    /// Event time of the build (the trigger's, or an update's).
    pub now: Millis,
}

impl AlertContext<'_> {
    /// The target's notice language: its locale if a notice exists for that locale
    /// (`pt-br`), else for the locale's language (`pt`), else the language most of its
    /// messages matched, else the suspect's, else the default.
    fn language(&self, state: &PairState, raised: &RaisedAlert, target: usize) -> String {
        let langs = self.pack.lexicon.languages();
        let locale = raised.locales[target]
            .as_deref()
            .map(|l| l.replace('_', "-").to_ascii_lowercase());
        let from_locale = locale.and_then(|l| {
            let language = l.split('-').next().unwrap_or("").to_string();
            [l, language]
                .into_iter()
                .find(|c| self.pack.notices.has_language(c))
        });
        from_locale
            .or_else(|| state.language_of(target).map(|i| langs[i].clone()))
            .or_else(|| state.language_of(1 - target).map(|i| langs[i].clone()))
            .unwrap_or_else(|| self.default_language.to_string())
    }

    /// The red flags of the alert of `pattern` that `raised` records.
    fn red_flags(
        &self,
        state: &PairState,
        pattern: Pattern,
        raised: &Raised,
        a: &RaisedAlert,
    ) -> Vec<RedFlag> {
        let target = 1 - a.suspect_side();
        let offence = pattern.has_offender();
        let known = offence && state.known(&self.pack.rules.known, self.now);
        RedFlag::ALL
            .into_iter()
            .filter(|f| match f {
                RedFlag::SelfHarm => state.count(target, Signal::SelfHarm) > 0,
                RedFlag::KnownOffender => known,
                RedFlag::StillInContact => offence && raised.still_in_contact,
                RedFlag::Deadline => a.respond_by.is_some() && !raised.deadline_passed,
                RedFlag::DeadlinePassed => raised.deadline_passed,
            })
            .collect()
    }

    /// What the alert says of a suspect the target knows.
    fn known_offender(&self, state: &PairState) -> KnownOffender {
        let days = ((self.now - state.first_contact).max(0) / DAY) as u32;
        let friends = state.had_contact(ContactAction::FriendAccept);
        let relationship = state.relationship.map(|r| r.as_str().to_string());
        let mut facts = Vec::new();
        if let Some(r) = &relationship {
            facts.push(format!("{r} according to the platform"));
        }
        if friends {
            facts.push("friends on the platform".to_string());
        }
        let summary = match days {
            0 => format!("known to the target: {}", facts.join("; ")),
            _ => std::iter::once(format!("known to the target for {}", spoken_duration(days)))
                .chain(facts)
                .collect::<Vec<_>>()
                .join("; "),
        };
        KnownOffender {
            relationship,
            friends,
            known_for_days: days,
            summary,
        }
    }

    /// Builds the alert for `pattern` as `raised` records it, on `state`.
    pub fn build(
        &self,
        state: &PairState,
        pattern: Pattern,
        raised: &Raised,
        a: &RaisedAlert,
    ) -> Alert {
        let suspect = a.suspect_side();
        let target = 1 - suspect;
        let active = state.active.as_deref();
        let at = |rel: u32| format_rfc3339(state.first_contact + rel as i64 * SECOND);
        let mut signals = Vec::new();
        if let Some(act) = active {
            for (side_idx, side) in [(suspect, Side::Suspect), (target, Side::Target)] {
                for s in Signal::ALL {
                    let i = s as usize;
                    if act.counts[side_idx][i] > 0 {
                        signals.push(SignalSummary {
                            category: s.as_str().to_string(),
                            side,
                            count: act.counts[side_idx][i] as u32,
                            first_at: at(act.first_s[side_idx][i]),
                            last_at: at(act.last_s[side_idx][i]),
                            slots: state
                                .slots_of(side_idx, s)
                                .iter()
                                .map(|x| x.as_str().to_string())
                                .collect(),
                        });
                    }
                }
            }
        }
        let mut evidence: Vec<&crate::detect::state::EvidenceRef> = active
            .map(|act| {
                act.evidence
                    .iter()
                    .filter(|e| {
                        let read = if e.side as usize == suspect {
                            a.read[0]
                        } else {
                            a.read[1]
                        };
                        !e.signals.is_empty() && e.signals.0 & read.0 != 0
                            || *e.event_id == *a.trigger_event_id
                    })
                    .collect()
            })
            .unwrap_or_default();
        if evidence.len() > MAX_ALERT_EVIDENCE {
            // Keep the trigger and the most recent others.
            let cut = evidence.len() - MAX_ALERT_EVIDENCE;
            evidence.drain(..cut);
        }
        let evidence = evidence
            .into_iter()
            .map(|e| Evidence {
                event_id: e.event_id.to_string(),
                sent_at: format_rfc3339(e.sent_at),
                sender_id: a.users[e.side as usize].to_string(),
                excerpt: e.excerpt.to_string(),
                sha256: hex(&e.sha256),
            })
            .collect();
        let red_flags = self.red_flags(state, pattern, raised, a);
        let language = self.language(state, a, target);
        let (lang, text) = self
            .pack
            .notices
            .get(&language, pattern, &red_flags)
            .unwrap_or(("en", String::new()));
        let band = |side: usize| -> AgeBand { state.bands[side] };
        let rules = &self.pack.rules;
        let recommended_actions = red_flags
            .iter()
            .filter_map(|f| rules.flag_actions.get(f))
            .chain(rules.actions.get(&pattern))
            .flatten()
            .cloned()
            .collect();
        Alert {
            alert_id: alert_id(
                &a.tenant,
                (&a.users[0], &a.users[1]),
                pattern,
                raised.priority,
                a.respond_by,
                &a.trigger_event_id,
            ),
            tenant: a.tenant.to_string(),
            priority: raised.priority,
            pattern,
            suspect: AlertUser {
                user_id: a.users[suspect].to_string(),
                age_band: band(suspect).as_str().to_string(),
            },
            target: AlertUser {
                user_id: a.users[target].to_string(),
                age_band: band(target).as_str().to_string(),
            },
            trigger_event_id: a.trigger_event_id.to_string(),
            triggered_at: format_rfc3339(a.triggered_at),
            first_contact_at: format_rfc3339(state.first_contact),
            respond_by: a.respond_by.map(format_rfc3339),
            known_offender: red_flags
                .contains(&RedFlag::KnownOffender)
                .then(|| self.known_offender(state)),
            still_in_contact: raised.still_in_contact,
            deadline_passed: raised.deadline_passed,
            red_flags: red_flags.iter().map(|f| f.as_str().to_string()).collect(),
            update: None,
            rules: a.rules.clone(),
            signals,
            evidence,
            victim_notice: VictimNotice {
                language: lang.to_string(),
                text,
            },
            recommended_actions,
            engine_version: ENGINE_VERSION.to_string(),
            rules_version: self.pack.version.clone(),
        }
    }
}

/// "4 days", "3 weeks", "4 months": how long the two sides have known each other.
fn spoken_duration(days: u32) -> String {
    let (n, unit) = match days {
        0..=13 => (days, "day"),
        14..=59 => (days / 7, "week"),
        _ => (days / 30, "month"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// At most `max` characters of `text` around the byte range `start..end`, with `…`
/// where the text was cut.
pub fn excerpt(text: &str, start: usize, end: usize, max: usize) -> String {
    let total = text.chars().count();
    if total <= max {
        return text.to_string();
    }
    let char_at = |byte: usize| text[..byte.min(text.len())].chars().count();
    let (cs, ce) = (char_at(start), char_at(end).max(char_at(start)));
    let budget = max - 2; // room for two ellipses
    let match_len = (ce - cs).min(budget);
    let before = (budget - match_len) / 2;
    let mut from = cs.saturating_sub(before);
    let to = (from + budget).min(total);
    from = to.saturating_sub(budget);
    let mut out = String::with_capacity(max * 4);
    if from > 0 {
        out.push('…');
    }
    out.extend(text.chars().skip(from).take(to - from));
    if to < total {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_are_bounded_and_centred() {
        assert_eq!(excerpt("short text", 0, 5, 200), "short text");
        let long = format!("{}MATCH{}", "a".repeat(500), "b".repeat(500));
        let e = excerpt(&long, 500, 505, 200);
        assert!(e.chars().count() <= 200, "{}", e.chars().count());
        assert!(e.contains("MATCH"));
        assert!(e.starts_with('…') && e.ends_with('…'));
        let e = excerpt(&long, 0, 3, 200);
        assert!(!e.starts_with('…') && e.ends_with('…'));
        assert!(e.chars().count() <= 200);
        // Multi-byte text is cut on character boundaries.
        let accents = "é".repeat(300);
        let e = excerpt(&accents, 200, 204, 200);
        assert!(e.chars().count() <= 200);
    }

    #[test]
    fn durations_are_spoken_in_the_largest_unit_that_fits() {
        assert_eq!(spoken_duration(0), "0 days");
        assert_eq!(spoken_duration(1), "1 day");
        assert_eq!(spoken_duration(13), "13 days");
        assert_eq!(spoken_duration(14), "2 weeks");
        assert_eq!(spoken_duration(59), "8 weeks");
        assert_eq!(spoken_duration(60), "2 months");
        assert_eq!(spoken_duration(125), "4 months");
    }

    #[test]
    fn alert_ids_are_deterministic_and_distinct() {
        let a = alert_id(
            "t",
            ("a", "b"),
            Pattern::Sextortion,
            Priority::P1,
            None,
            "e1",
        );
        assert_eq!(
            a,
            alert_id(
                "t",
                ("a", "b"),
                Pattern::Sextortion,
                Priority::P1,
                None,
                "e1"
            )
        );
        assert_eq!(a.len(), 32);
        assert_ne!(
            a,
            alert_id(
                "t",
                ("a", "b"),
                Pattern::Sextortion,
                Priority::P0,
                None,
                "e1"
            )
        );
        assert_ne!(
            a,
            alert_id(
                "t",
                ("a", "b"),
                Pattern::Sextortion,
                Priority::P1,
                Some(0),
                "e1"
            )
        );
    }
}
