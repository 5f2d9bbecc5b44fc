//! The alert contract (JSON form) and how an alert is put together: deterministic id,
//! suspect and target, evidence, signals summary, victim notice, recommended actions.

use crate::detect::digest::hex;
use crate::detect::event::{AgeBand, Event, UserRef};
use crate::detect::pack::RulePack;
use crate::detect::rules::{Pattern, Priority, Verdict};
use crate::detect::signal::Signal;
use crate::detect::state::PairState;
use crate::detect::time::{format_rfc3339, Millis, SECOND};
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

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VictimNotice {
    pub language: String,
    pub text: String,
}

impl Alert {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
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

/// Everything the alert builder reads besides the state.
pub struct AlertContext<'a> {
    pub event: &'a Event,
    /// Side (0/1) of the event's sender in the pair.
    pub sender_side: usize,
    pub pack: &'a RulePack,
    pub default_language: &'a str,
}

impl AlertContext<'_> {
    fn user(&self, side: usize) -> &UserRef {
        if side == self.sender_side {
            &self.event.sender
        } else {
            &self.event.recipient
        }
    }

    /// The target's notice language: its locale if a notice exists for that locale
    /// (`pt-br`), else for the locale's language (`pt`), else the language most of its
    /// messages matched, else the suspect's, else the default.
    fn language(&self, state: &PairState, target: usize) -> String {
        let langs = self.pack.lexicon.languages();
        let locale = self
            .user(target)
            .locale
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

    /// Builds the alert for `verdict` on `state`.
    pub fn build(&self, state: &PairState, verdict: &Verdict, respond_by: Option<Millis>) -> Alert {
        let ev = self.event;
        let suspect = verdict.suspect;
        let target = 1 - suspect;
        let active = state.active.as_deref();
        let at = |rel: u32| format_rfc3339(state.first_contact + rel as i64 * SECOND);
        let mut signals = Vec::new();
        if let Some(a) = active {
            for (side_idx, side) in [(suspect, Side::Suspect), (target, Side::Target)] {
                for s in Signal::ALL {
                    let i = s as usize;
                    if a.counts[side_idx][i] > 0 {
                        signals.push(SignalSummary {
                            category: s.as_str().to_string(),
                            side,
                            count: a.counts[side_idx][i] as u32,
                            first_at: at(a.first_s[side_idx][i]),
                            last_at: at(a.last_s[side_idx][i]),
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
            .map(|a| {
                a.evidence
                    .iter()
                    .filter(|e| {
                        let read = if e.side as usize == suspect {
                            verdict.read[0]
                        } else {
                            verdict.read[1]
                        };
                        !e.signals.is_empty() && e.signals.0 & read.0 != 0
                            || *e.event_id == *ev.event_id
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
                sender_id: self.user(e.side as usize).user_id.clone(),
                excerpt: e.excerpt.to_string(),
                sha256: hex(&e.sha256),
            })
            .collect();
        let language = self.language(state, target);
        let (lang, text) = self
            .pack
            .notices
            .get(&language, verdict.pattern)
            .unwrap_or(("en", ""));
        let (s_user, t_user) = (self.user(suspect), self.user(target));
        let band = |side: usize| -> AgeBand { state.bands[side] };
        let pair = if ev.sender.user_id <= ev.recipient.user_id {
            (ev.sender.user_id.as_str(), ev.recipient.user_id.as_str())
        } else {
            (ev.recipient.user_id.as_str(), ev.sender.user_id.as_str())
        };
        Alert {
            alert_id: alert_id(
                &ev.tenant,
                pair,
                verdict.pattern,
                verdict.priority,
                respond_by,
                &ev.event_id,
            ),
            tenant: ev.tenant.clone(),
            priority: verdict.priority,
            pattern: verdict.pattern,
            suspect: AlertUser {
                user_id: s_user.user_id.clone(),
                age_band: band(suspect).as_str().to_string(),
            },
            target: AlertUser {
                user_id: t_user.user_id.clone(),
                age_band: band(target).as_str().to_string(),
            },
            trigger_event_id: ev.event_id.clone(),
            triggered_at: format_rfc3339(ev.sent_at),
            first_contact_at: format_rfc3339(state.first_contact),
            respond_by: respond_by.map(format_rfc3339),
            rules: verdict.rules.clone(),
            signals,
            evidence,
            victim_notice: VictimNotice {
                language: lang.to_string(),
                text: text.to_string(),
            },
            recommended_actions: self
                .pack
                .rules
                .actions
                .get(&verdict.pattern)
                .cloned()
                .unwrap_or_default(),
            engine_version: ENGINE_VERSION.to_string(),
            rules_version: self.pack.version.clone(),
        }
    }
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
