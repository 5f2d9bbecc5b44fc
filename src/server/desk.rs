//! The moderators' desk rules, the same in both modes: the audit line (a claim, its
//! release or a decision, as kept in `decisions.jsonl` and on the Kafka decisions topic),
//! how a line applies to the claims, and how the open alerts are filtered, ordered and
//! paged. No I/O: [`super::alerts::AlertBook`] keeps the lines and the alerts.

use super::alerts::Logged;
use super::auth::Scope;
use crate::detect::rules::{Pattern, Priority};
use crate::detect::time::{format_rfc3339, parse_rfc3339, Millis};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Default length of a claim.
pub const DEFAULT_LEASE_MS: Millis = 10 * 60 * 1000;
/// Longest reason code.
pub const MAX_REASON_CODE: usize = 32;
/// Claims held at which expired ones are cleared out.
const PURGE_AT: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Decision {
    Confirmed,
    FalsePositive,
    /// Handed to law enforcement or a hotline.
    Escalated,
}

impl Decision {
    /// The metric label and the log field.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Confirmed => "confirmed",
            Decision::FalsePositive => "false_positive",
            Decision::Escalated => "escalated",
        }
    }
}

/// What a moderator did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Claim,
    Release,
    /// A decision (lines written before claims existed have no action: decisions).
    #[default]
    Decide,
}

/// One line of the audit log: who did what to which alert, when, and the rules the
/// alert rested on. Never message text or user ids.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditLine {
    #[serde(default)]
    pub action: Action,
    pub alert_id: String,
    pub moderator_id: String,
    #[serde(alias = "decided_at")]
    pub at: String,
    /// End of a claim's lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason_code: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tenant: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<Pattern>,
}

impl AuditLine {
    /// The line of `action` on `alert` by `moderator` at `now`.
    pub fn of(
        action: Action,
        alert: &crate::detect::alert::Alert,
        moderator: &str,
        now: Millis,
    ) -> AuditLine {
        AuditLine {
            action,
            alert_id: alert.alert_id.clone(),
            moderator_id: moderator.to_string(),
            at: format_rfc3339(now),
            until: None,
            decision: None,
            reason_code: String::new(),
            rules: alert.rules.clone(),
            tenant: alert.tenant.clone(),
            pattern: Some(alert.pattern),
        }
    }

    pub fn at_ms(&self) -> Millis {
        parse_rfc3339(&self.at).unwrap_or(0)
    }
}

/// A reason code is short and plain: lowercase ASCII letters, digits, `_` and `-`.
pub fn valid_reason_code(code: &str) -> bool {
    code.len() <= MAX_REASON_CODE
        && code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Who holds an alert, until when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    pub moderator_id: String,
    pub until: Millis,
}

/// Why a claim or a decision is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DeskError {
    #[error("no alert with id {0:?}")]
    NotFound(String),
    #[error("alert {0:?} was already resolved")]
    AlreadyResolved(String),
    #[error("alert {alert_id:?} is claimed by moderator {holder:?} until {}", format_rfc3339(*.until))]
    HeldBy {
        alert_id: String,
        holder: String,
        until: Millis,
    },
    #[error("alert {0:?} is not claimed by this moderator: nothing to release")]
    NotHolder(String),
}

/// The claims in force, by alert id. Expired ones are treated as absent.
#[derive(Default)]
pub struct Claims {
    held: HashMap<String, Held>,
}

impl Claims {
    /// The claim on `alert_id` at `now`, if one is in force.
    pub fn holder(&self, alert_id: &str, now: Millis) -> Option<&Held> {
        self.held.get(alert_id).filter(|h| h.until > now)
    }

    /// Whether `moderator` may claim or decide `alert_id` at `now`: nobody else holds it.
    pub fn check(&self, alert_id: &str, moderator: &str, now: Millis) -> Result<(), DeskError> {
        match self.holder(alert_id, now) {
            Some(h) if h.moderator_id != moderator => Err(DeskError::HeldBy {
                alert_id: alert_id.to_string(),
                holder: h.moderator_id.clone(),
                until: h.until,
            }),
            _ => Ok(()),
        }
    }

    /// Applies a line in log order; returns whether it took effect. A claim, and a
    /// decision, take effect only if nobody else held the alert at the line's time, so
    /// that every reader of the same lines (two desks on one decisions topic) agrees on
    /// the holder and the decision whatever raced to write them.
    pub fn apply(&mut self, line: &AuditLine) -> bool {
        let at = line.at_ms();
        let free = self.check(&line.alert_id, &line.moderator_id, at).is_ok();
        match line.action {
            Action::Claim if free => {
                if self.held.len() >= PURGE_AT {
                    self.held.retain(|_, h| h.until > at);
                }
                let until = line.until.as_deref().and_then(parse_rfc3339).unwrap_or(at);
                self.held.insert(
                    line.alert_id.clone(),
                    Held {
                        moderator_id: line.moderator_id.clone(),
                        until,
                    },
                );
                true
            }
            Action::Release => {
                let holder = self
                    .holder(&line.alert_id, at)
                    .is_some_and(|h| h.moderator_id == line.moderator_id);
                if holder {
                    self.held.remove(&line.alert_id);
                }
                holder
            }
            Action::Decide if free => {
                self.held.remove(&line.alert_id);
                true
            }
            Action::Claim | Action::Decide => false,
        }
    }

    /// Drops the claim on `alert_id` (an alert erased).
    pub fn remove(&mut self, alert_id: &str) {
        self.held.remove(alert_id);
    }
}

/// Whether ListOpen wants claimed alerts, unclaimed ones, or both.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ClaimFilter {
    #[default]
    Any,
    Claimed,
    Unclaimed,
}

/// A ListOpen request, checked.
#[derive(Clone, Debug)]
pub struct Query {
    /// Only this priority or more urgent (`None`: all).
    pub min_priority: Option<Priority>,
    pub tenant: Option<String>,
    /// The tenants the caller may see.
    pub scope: Scope,
    pub pattern: Option<Pattern>,
    pub claimed: ClaimFilter,
    /// Only alerts after this place in the order (from the previous page's token).
    pub after: Option<Place>,
    pub limit: usize,
}

/// Where an open alert stands in the desk's order: priority, then deadline (earliest
/// first, none last), then age (oldest first), then its log position.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Place {
    priority: u8,
    deadline: Millis,
    triggered: Millis,
    cursor: u64,
}

impl Place {
    pub fn of(l: &Logged) -> Place {
        let a = &l.alert;
        Place {
            priority: Priority::ALL
                .iter()
                .position(|p| *p == a.priority)
                .unwrap_or(3) as u8,
            deadline: a
                .respond_by
                .as_deref()
                .and_then(parse_rfc3339)
                .unwrap_or(Millis::MAX),
            triggered: parse_rfc3339(&a.triggered_at).unwrap_or(0),
            cursor: l.cursor,
        }
    }

    /// The page token that resumes after this place: opaque to clients.
    pub fn token(&self) -> String {
        format!(
            "p1.{}.{}.{}.{}",
            self.priority, self.deadline, self.triggered, self.cursor
        )
    }

    /// A token this service gave, read back.
    pub fn from_token(token: &str) -> Option<Place> {
        let mut parts = token.strip_prefix("p1.")?.split('.');
        let place = Place {
            priority: parts.next()?.parse().ok()?,
            deadline: parts.next()?.parse().ok()?,
            triggered: parts.next()?.parse().ok()?,
            cursor: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(place)
    }
}

/// A page of open alerts with each one's claim, and the next page's token.
pub type Page = (Vec<(Logged, Option<Held>)>, Option<String>);

/// One page of open alerts for `q`, in the desk's order, with each alert's claim at
/// `now`, and the token of the next page (when there are more).
pub fn page<'a>(
    open: impl Iterator<Item = &'a Logged>,
    claims: &Claims,
    q: &Query,
    now: Millis,
) -> Page {
    let mut hits: Vec<(Place, &Logged)> = open
        .filter(|l| {
            let a = &l.alert;
            let claimed = claims.holder(&a.alert_id, now).is_some();
            q.min_priority.is_none_or(|m| a.priority <= m)
                && q.tenant.as_deref().is_none_or(|t| t == a.tenant)
                && q.scope.allows(&a.tenant)
                && q.pattern.is_none_or(|p| p == a.pattern)
                && match q.claimed {
                    ClaimFilter::Any => true,
                    ClaimFilter::Claimed => claimed,
                    ClaimFilter::Unclaimed => !claimed,
                }
        })
        .map(|l| (Place::of(l), l))
        .filter(|(place, _)| q.after.as_ref().is_none_or(|after| place > after))
        .collect();
    hits.sort_by(|a, b| a.0.cmp(&b.0));
    let more = hits.len() > q.limit;
    hits.truncate(q.limit);
    let next = more
        .then(|| hits.last().map(|(place, _)| place.token()))
        .flatten();
    let alerts = hits
        .into_iter()
        .map(|(_, l)| (l.clone(), claims.holder(&l.alert.alert_id, now).cloned()))
        .collect();
    (alerts, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(action: Action, id: &str, who: &str, at: Millis, until: Option<Millis>) -> AuditLine {
        AuditLine {
            action,
            alert_id: id.into(),
            moderator_id: who.into(),
            at: format_rfc3339(at),
            until: until.map(format_rfc3339),
            decision: None,
            reason_code: String::new(),
            rules: vec![],
            tenant: String::new(),
            pattern: None,
        }
    }

    #[test]
    fn the_first_claim_in_log_order_wins_until_it_expires_or_is_released() {
        let t0 = 1_800_000_000_000;
        let mut c = Claims::default();
        c.apply(&line(Action::Claim, "a", "m1", t0, Some(t0 + 600_000)));
        // A rival claim written at the same time (another desk) does not take it.
        c.apply(&line(Action::Claim, "a", "m2", t0 + 1, Some(t0 + 600_001)));
        assert_eq!(c.holder("a", t0 + 10).unwrap().moderator_id, "m1");
        let refused = c.check("a", "m2", t0 + 10).unwrap_err();
        assert_eq!(
            refused.to_string(),
            format!(
                "alert \"a\" is claimed by moderator \"m1\" until {}",
                format_rfc3339(t0 + 600_000)
            )
        );
        assert!(c.check("a", "m1", t0 + 10).is_ok(), "the holder renews");
        // A release by someone else changes nothing; by the holder it frees the alert.
        c.apply(&line(Action::Release, "a", "m2", t0 + 20, None));
        assert!(c.holder("a", t0 + 20).is_some());
        c.apply(&line(Action::Release, "a", "m1", t0 + 30, None));
        assert!(c.holder("a", t0 + 30).is_none());
        // Expiry frees it too.
        c.apply(&line(Action::Claim, "b", "m1", t0, Some(t0 + 100)));
        assert!(c.check("b", "m2", t0 + 100).is_ok());
        c.apply(&line(Action::Claim, "b", "m2", t0 + 100, Some(t0 + 700)));
        assert_eq!(c.holder("b", t0 + 150).unwrap().moderator_id, "m2");
        // A decision by someone else while the claim runs does not take effect (a desk
        // that had not read the claim yet let it through); the holder's ends the claim.
        assert!(!c.apply(&line(Action::Decide, "b", "m1", t0 + 200, None)));
        assert_eq!(c.holder("b", t0 + 200).unwrap().moderator_id, "m2");
        assert!(c.apply(&line(Action::Decide, "b", "m2", t0 + 200, None)));
        assert!(c.holder("b", t0 + 200).is_none());
    }

    #[test]
    fn lines_written_before_claims_existed_read_as_decisions() {
        let old = r#"{"alert_id":"a1","decision":"FALSE_POSITIVE","moderator_id":"m","decided_at":"2026-01-01T00:00:00Z"}"#;
        let l: AuditLine = serde_json::from_str(old).unwrap();
        assert_eq!(l.action, Action::Decide);
        assert_eq!(l.decision, Some(Decision::FalsePositive));
        assert_eq!(l.at_ms(), parse_rfc3339("2026-01-01T00:00:00Z").unwrap());
    }

    #[test]
    fn reason_codes_are_short_plain_codes() {
        assert!(valid_reason_code("reported_ncmec"));
        assert!(valid_reason_code("banter-between-adults"));
        assert!(valid_reason_code(""));
        assert!(!valid_reason_code("He said he'd post them"));
        assert!(!valid_reason_code(&"a".repeat(33)));
    }

    #[test]
    fn page_tokens_round_trip_and_refuse_what_this_service_did_not_give() {
        let p = Place {
            priority: 1,
            deadline: Millis::MAX,
            triggered: 1_800_000_000_000,
            cursor: 42,
        };
        assert_eq!(Place::from_token(&p.token()), Some(p));
        for bad in ["", "p1.1.2.3", "p1.1.2.3.4.5", "p2.1.2.3.4", "p1.x.2.3.4"] {
            assert_eq!(Place::from_token(bad), None, "{bad}");
        }
    }
}
