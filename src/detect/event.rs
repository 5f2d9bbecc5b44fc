//! The event contract: domain types, JSON decoding and encoding, validation.
//!
//! JSON lines and protobuf `ChatEvent`s both decode into [`RawEvent`] and pass through
//! [`RawEvent::validate`], the one place where an event is judged well-formed; the
//! engine only ever sees a validated [`Event`].

use crate::detect::time::{
    format_duration, format_rfc3339, parse_rfc3339, Millis, MAX_TIME, MIN_TIME,
};
use serde::{Deserialize, Serialize};

/// The age band the platform knows for an account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum AgeBand {
    #[default]
    Unknown,
    Under13,
    Age13To15,
    Age16To17,
    Adult,
}

/// What the rules reason about: a known minor, a known adult, or nobody knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AgeClass {
    Minor,
    Adult,
    Unknown,
}

impl AgeBand {
    pub const ALL: [AgeBand; 5] = [
        AgeBand::Unknown,
        AgeBand::Under13,
        AgeBand::Age13To15,
        AgeBand::Age16To17,
        AgeBand::Adult,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AgeBand::Unknown => "UNKNOWN",
            AgeBand::Under13 => "UNDER_13",
            AgeBand::Age13To15 => "AGE_13_15",
            AgeBand::Age16To17 => "AGE_16_17",
            AgeBand::Adult => "ADULT",
        }
    }

    pub fn parse(s: &str) -> Option<AgeBand> {
        AgeBand::ALL.into_iter().find(|b| b.as_str() == s)
    }

    pub fn class(self) -> AgeClass {
        match self {
            AgeBand::Unknown => AgeClass::Unknown,
            AgeBand::Adult => AgeClass::Adult,
            _ => AgeClass::Minor,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct UserRef {
    pub user_id: String,
    pub age_band: AgeBand,
    pub account_created_at: Option<Millis>,
    /// BCP 47 tag as given, e.g. `fr-FR`.
    pub locale: Option<String>,
    /// What this user is to the other user of the event, as the platform knows it.
    pub relationship: Option<Relationship>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachmentKind {
    Image,
    Video,
    Audio,
    Link,
    File,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContactAction {
    FriendRequest,
    FriendAccept,
    Follow,
}

/// A platform's hint of how the two users know each other (family link, friend list,
/// same school or team). Any of them makes the offender someone the target knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Relationship {
    Family,
    Friend,
    Schoolmate,
    Teammate,
    Acquaintance,
}

impl Relationship {
    pub const ALL: [Relationship; 5] = [
        Relationship::Family,
        Relationship::Friend,
        Relationship::Schoolmate,
        Relationship::Teammate,
        Relationship::Acquaintance,
    ];
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SafetyAction {
    Block,
    Report,
    Mute,
}

/// Names of the closed enums of the contract, in one table per enum.
macro_rules! named_enum {
    ($ty:ident { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $name),+ }
            }
            pub fn parse(s: &str) -> Option<$ty> {
                match s { $($name => Some($ty::$variant),)+ _ => None }
            }
        }
    };
}
named_enum!(AttachmentKind { Image => "IMAGE", Video => "VIDEO", Audio => "AUDIO", Link => "LINK", File => "FILE" });
named_enum!(ContactAction { FriendRequest => "FRIEND_REQUEST", FriendAccept => "FRIEND_ACCEPT", Follow => "FOLLOW" });
named_enum!(Relationship { Family => "FAMILY", Friend => "FRIEND", Schoolmate => "SCHOOLMATE", Teammate => "TEAMMATE", Acquaintance => "ACQUAINTANCE" });
named_enum!(SafetyAction { Block => "BLOCK", Report => "REPORT", Mute => "MUTE" });

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub text: String,
    pub attachments: Vec<AttachmentKind>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    Message(Message),
    Contact(ContactAction),
    Call { video: bool, duration_s: u32 },
    Safety(SafetyAction),
}

/// A validated event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub event_id: String,
    pub tenant: String,
    pub sent_at: Millis,
    pub sender: UserRef,
    pub recipient: UserRef,
    pub conversation_id: Option<String>,
    pub body: Body,
}

pub const DEFAULT_TENANT: &str = "default";

/// Size and time limits applied by validation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest message text, in bytes of UTF-8.
    pub max_text_bytes: usize,
    /// Longest id (event, user, tenant, conversation), in bytes.
    pub max_id_bytes: usize,
    pub max_attachments: usize,
    /// How far ahead of this machine's clock `sent_at` may be (`sent_at_in_future`
    /// beyond). None: pure event time, any `sent_at` in range is accepted (replay, eval).
    pub max_future_skew: Option<Millis>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_text_bytes: 8 * 1024,
            max_id_bytes: 256,
            max_attachments: 32,
            max_future_skew: None,
        }
    }
}

/// The accepted range of timestamps, as said in rejections.
pub const TIME_RANGE: &str = "years 1970 to 9999, 1970-01-01T00:00:00Z to 9999-12-30T22:00:00Z";

/// Why an event was rejected. `reason()` is a short stable code for metrics and
/// dead-letter headers; `Display` is the precise message for the caller.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventError {
    #[error("not valid JSON for an event: {0}")]
    Json(String),
    #[error("missing required field `{0}`")]
    Missing(&'static str),
    #[error("field `{field}` is longer than {max} bytes ({len})")]
    TooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error("field `{0}` is blank (only whitespace)")]
    Blank(&'static str),
    #[error("field `{field}` contains a control character (U+{code:04X}) at byte {at}")]
    BadId {
        field: &'static str,
        code: u32,
        at: usize,
    },
    #[error("field `{field}` is not an RFC 3339 timestamp: {value:?}")]
    BadTimestamp { field: &'static str, value: String },
    #[error("field `{field}` is out of range: {value} (accepted: {accepted})")]
    TimestampOutOfRange {
        field: &'static str,
        value: String,
        accepted: &'static str,
    },
    #[error(
        "field `sent_at` is {} ahead of the server's clock, over the allowed skew of {}",
        format_duration(*ahead),
        format_duration(*max)
    )]
    SentAtInFuture { ahead: Millis, max: Millis },
    #[error("field `{field}` has unknown value {value:?} (expected one of {expected})")]
    UnknownValue {
        field: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error(
        "event has no body: exactly one of `message`, `contact`, `call`, `safety` is required"
    )]
    NoBody,
    #[error(
        "event has {0} bodies: exactly one of `message`, `contact`, `call`, `safety` is allowed"
    )]
    SeveralBodies(usize),
    #[error("message text is {len} bytes, over the limit of {max}")]
    TextTooLong { len: usize, max: usize },
    #[error("message has {len} attachments, over the limit of {max}")]
    TooManyAttachments { len: usize, max: usize },
    #[error("message has neither text nor attachments")]
    EmptyMessage,
    #[error("sender and recipient are the same user")]
    SameUser,
}

impl EventError {
    /// Every reason code, for metric initialisation.
    pub const REASONS: [&'static str; 13] = [
        "bad_json",
        "missing_field",
        "field_too_long",
        "bad_id",
        "bad_timestamp",
        "sent_at_in_future",
        "unknown_value",
        "no_body",
        "several_bodies",
        "text_too_long",
        "too_many_attachments",
        "empty_message",
        "same_user",
    ];

    /// Bounded set of reason codes, used as a metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            EventError::Json(_) => "bad_json",
            EventError::Missing(_) | EventError::Blank(_) => "missing_field",
            EventError::TooLong { .. } => "field_too_long",
            EventError::BadId { .. } => "bad_id",
            EventError::BadTimestamp { .. } | EventError::TimestampOutOfRange { .. } => {
                "bad_timestamp"
            }
            EventError::SentAtInFuture { .. } => "sent_at_in_future",
            EventError::UnknownValue { .. } => "unknown_value",
            EventError::NoBody => "no_body",
            EventError::SeveralBodies(_) => "several_bodies",
            EventError::TextTooLong { .. } => "text_too_long",
            EventError::TooManyAttachments { .. } => "too_many_attachments",
            EventError::EmptyMessage => "empty_message",
            EventError::SameUser => "same_user",
        }
    }
}

/// The unvalidated event, as decoded from JSON or converted from protobuf.
/// Enum values stay strings here so that validation names the field and the value.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct RawEvent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<RawUser>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<RawUser>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<RawMessage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<RawAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call: Option<RawCall>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety: Option<RawAction>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct RawUser {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_band: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_created_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relationship: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct RawMessage {
    #[serde(default)]
    pub text: String,
    #[serde(default)]
    pub attachments: Vec<RawAttachment>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct RawAttachment {
    #[serde(default)]
    pub kind: String,
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct RawAction {
    #[serde(default)]
    pub action: String,
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct RawCall {
    #[serde(default)]
    pub video: bool,
    #[serde(default)]
    pub duration_s: u32,
}

impl RawEvent {
    /// Judges the event. Ids (event, tenant, users, conversation, locale) may not be
    /// blank nor hold a control character; timestamps are RFC 3339 within
    /// [`TIME_RANGE`]; with `limits.max_future_skew`, `sent_at` may not be further ahead
    /// of this machine's clock than that.
    pub fn validate(self, limits: &Limits) -> Result<Event, EventError> {
        let event_id = required_id("event_id", self.event_id, limits.max_id_bytes)?;
        let tenant = optional_id("tenant", self.tenant, limits.max_id_bytes)?
            .unwrap_or_else(|| DEFAULT_TENANT.to_string());
        let sent_at_raw = self
            .sent_at
            .filter(|s| !s.is_empty())
            .ok_or(EventError::Missing("sent_at"))?;
        let sent_at = timestamp("sent_at", &sent_at_raw)?;
        if let Some(max) = limits.max_future_skew {
            let ahead = sent_at.saturating_sub(crate::detect::time::now_millis());
            if ahead > max {
                return Err(EventError::SentAtInFuture { ahead, max });
            }
        }
        let sender = self
            .sender
            .ok_or(EventError::Missing("sender"))?
            .validate("sender", limits)?;
        let recipient = self
            .recipient
            .ok_or(EventError::Missing("recipient"))?
            .validate("recipient", limits)?;
        if sender.user_id == recipient.user_id {
            return Err(EventError::SameUser);
        }
        let conversation_id =
            optional_id("conversation_id", self.conversation_id, limits.max_id_bytes)?;
        let bodies = [
            self.message.is_some(),
            self.contact.is_some(),
            self.call.is_some(),
            self.safety.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if bodies > 1 {
            return Err(EventError::SeveralBodies(bodies));
        }
        let body = if let Some(m) = self.message {
            if m.text.len() > limits.max_text_bytes {
                return Err(EventError::TextTooLong {
                    len: m.text.len(),
                    max: limits.max_text_bytes,
                });
            }
            if m.attachments.len() > limits.max_attachments {
                return Err(EventError::TooManyAttachments {
                    len: m.attachments.len(),
                    max: limits.max_attachments,
                });
            }
            if m.text.is_empty() && m.attachments.is_empty() {
                return Err(EventError::EmptyMessage);
            }
            let attachments = m
                .attachments
                .into_iter()
                .map(|a| {
                    AttachmentKind::parse(&a.kind).ok_or(EventError::UnknownValue {
                        field: "message.attachments.kind",
                        value: a.kind,
                        expected: "IMAGE, VIDEO, AUDIO, LINK, FILE",
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Body::Message(Message {
                text: m.text,
                attachments,
            })
        } else if let Some(c) = self.contact {
            Body::Contact(
                ContactAction::parse(&c.action).ok_or(EventError::UnknownValue {
                    field: "contact.action",
                    value: c.action,
                    expected: "FRIEND_REQUEST, FRIEND_ACCEPT, FOLLOW",
                })?,
            )
        } else if let Some(c) = self.call {
            Body::Call {
                video: c.video,
                duration_s: c.duration_s,
            }
        } else if let Some(s) = self.safety {
            Body::Safety(
                SafetyAction::parse(&s.action).ok_or(EventError::UnknownValue {
                    field: "safety.action",
                    value: s.action,
                    expected: "BLOCK, REPORT, MUTE",
                })?,
            )
        } else {
            return Err(EventError::NoBody);
        };
        Ok(Event {
            event_id,
            tenant,
            sent_at,
            sender,
            recipient,
            conversation_id,
            body,
        })
    }
}

impl RawUser {
    fn validate(self, side: &'static str, limits: &Limits) -> Result<UserRef, EventError> {
        let (id_field, band_field, created_field, locale_field, relationship_field) = match side {
            "sender" => (
                "sender.user_id",
                "sender.age_band",
                "sender.account_created_at",
                "sender.locale",
                "sender.relationship",
            ),
            _ => (
                "recipient.user_id",
                "recipient.age_band",
                "recipient.account_created_at",
                "recipient.locale",
                "recipient.relationship",
            ),
        };
        let user_id = required_id(id_field, self.user_id, limits.max_id_bytes)?;
        let age_band = match self.age_band.filter(|s| !s.is_empty()) {
            None => AgeBand::Unknown,
            Some(b) => AgeBand::parse(&b).ok_or(EventError::UnknownValue {
                field: band_field,
                value: b,
                expected: "UNKNOWN, UNDER_13, AGE_13_15, AGE_16_17, ADULT",
            })?,
        };
        let account_created_at = match self.account_created_at.filter(|s| !s.is_empty()) {
            None => None,
            Some(t) => Some(timestamp(created_field, &t)?),
        };
        let locale = optional_id(locale_field, self.locale, 35)?;
        let relationship = match self.relationship.filter(|s| !s.is_empty()) {
            None => None,
            Some(r) => Some(Relationship::parse(&r).ok_or(EventError::UnknownValue {
                field: relationship_field,
                value: r,
                expected: "FAMILY, FRIEND, SCHOOLMATE, TEAMMATE, ACQUAINTANCE",
            })?),
        };
        Ok(UserRef {
            user_id,
            age_band,
            account_created_at,
            locale,
            relationship,
        })
    }
}

fn check_len(field: &'static str, v: &str, max: usize) -> Result<(), EventError> {
    if v.len() > max {
        return Err(EventError::TooLong {
            field,
            len: v.len(),
            max,
        });
    }
    Ok(())
}

/// An optional id: absent if missing or empty, else checked as [`required_id`] does.
fn optional_id(
    field: &'static str,
    v: Option<String>,
    max: usize,
) -> Result<Option<String>, EventError> {
    match v.filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(v) => required_id(field, Some(v), max).map(Some),
    }
}

/// A required id: present, not blank, at most `max` bytes, without control characters
/// (NUL, newline, ...: ids end up in logs, headers and files).
fn required_id(field: &'static str, v: Option<String>, max: usize) -> Result<String, EventError> {
    let v = v
        .filter(|s| !s.is_empty())
        .ok_or(EventError::Missing(field))?;
    if v.trim().is_empty() {
        return Err(EventError::Blank(field));
    }
    check_len(field, &v, max)?;
    if let Some((at, c)) = v.char_indices().find(|(_, c)| c.is_control()) {
        return Err(EventError::BadId {
            field,
            code: c as u32,
            at,
        });
    }
    Ok(v)
}

fn timestamp(field: &'static str, v: &str) -> Result<Millis, EventError> {
    let ms = parse_rfc3339(v).ok_or_else(|| EventError::BadTimestamp {
        field,
        value: v.to_string(),
    })?;
    if !(MIN_TIME..=MAX_TIME).contains(&ms) {
        return Err(EventError::TimestampOutOfRange {
            field,
            value: format!("{v:?}"),
            accepted: TIME_RANGE,
        });
    }
    Ok(ms)
}

impl Event {
    /// Decodes and validates one JSON event.
    pub fn from_json(line: &str, limits: &Limits) -> Result<Event, EventError> {
        let raw: RawEvent =
            serde_json::from_str(line).map_err(|e| EventError::Json(e.to_string()))?;
        raw.validate(limits)
    }

    /// The JSON form of the contract, keys in the documented order.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.to_raw()).unwrap_or_default()
    }

    pub fn to_raw(&self) -> RawEvent {
        let user = |u: &UserRef| RawUser {
            user_id: Some(u.user_id.clone()),
            age_band: Some(u.age_band.as_str().to_string()),
            account_created_at: u.account_created_at.map(format_rfc3339),
            locale: u.locale.clone(),
            relationship: u.relationship.map(|r| r.as_str().to_string()),
        };
        let action = |s: &str| RawAction {
            action: s.to_string(),
        };
        let mut raw = RawEvent {
            event_id: Some(self.event_id.clone()),
            tenant: Some(self.tenant.clone()),
            sent_at: Some(format_rfc3339(self.sent_at)),
            sender: Some(user(&self.sender)),
            recipient: Some(user(&self.recipient)),
            conversation_id: self.conversation_id.clone(),
            ..RawEvent::default()
        };
        match &self.body {
            Body::Message(m) => {
                raw.message = Some(RawMessage {
                    text: m.text.clone(),
                    attachments: m
                        .attachments
                        .iter()
                        .map(|k| RawAttachment {
                            kind: k.as_str().to_string(),
                        })
                        .collect(),
                })
            }
            Body::Contact(c) => raw.contact = Some(action(c.as_str())),
            Body::Call { video, duration_s } => {
                raw.call = Some(RawCall {
                    video: *video,
                    duration_s: *duration_s,
                })
            }
            Body::Safety(s) => raw.safety = Some(action(s.as_str())),
        }
        raw
    }

    /// The message text, empty for non-message events.
    pub fn text(&self) -> &str {
        match &self.body {
            Body::Message(m) => &m.text,
            _ => "",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = r#"{"event_id":"e-17","tenant":"game-eu","sent_at":"2026-11-22T21:04:05Z","sender":{"user_id":"u-981","age_band":"ADULT"},"recipient":{"user_id":"u-112","age_band":"AGE_13_15","locale":"fr-FR"},"conversation_id":"dm-981-112","message":{"text":"salut","attachments":[{"kind":"IMAGE"}]}}"#;

    type Patch = Box<dyn FnOnce(&mut serde_json::Value)>;

    fn with(patch: impl FnOnce(&mut serde_json::Value)) -> Result<Event, EventError> {
        let mut v: serde_json::Value = serde_json::from_str(OK).unwrap();
        patch(&mut v);
        Event::from_json(&v.to_string(), &Limits::default())
    }

    #[test]
    fn decodes_the_contract_example_and_prints_it_back() {
        let e = Event::from_json(OK, &Limits::default()).unwrap();
        assert_eq!(e.tenant, "game-eu");
        assert_eq!(e.sender.age_band, AgeBand::Adult);
        assert_eq!(e.recipient.locale.as_deref(), Some("fr-FR"));
        assert_eq!(e.recipient.relationship, None);
        let hinted = OK.replace(
            r#""locale":"fr-FR""#,
            r#""locale":"fr-FR","relationship":"FAMILY""#,
        );
        let h = Event::from_json(&hinted, &Limits::default()).unwrap();
        assert_eq!(h.recipient.relationship, Some(Relationship::Family));
        assert!(h.to_json().contains(r#""relationship":"FAMILY""#));
        assert_eq!(
            e.body,
            Body::Message(Message {
                text: "salut".into(),
                attachments: vec![AttachmentKind::Image]
            })
        );
        assert_eq!(e.to_json(), OK);
    }

    #[test]
    fn defaults_tenant_and_age_band() {
        let e = with(|v| {
            v.as_object_mut().unwrap().remove("tenant");
            v["sender"].as_object_mut().unwrap().remove("age_band");
        })
        .unwrap();
        assert_eq!(e.tenant, "default");
        assert_eq!(e.sender.age_band, AgeBand::Unknown);
    }

    #[test]
    fn rejects_with_precise_reasons() {
        let cases: Vec<(Patch, EventError)> = vec![
            (
                Box::new(|v| {
                    v.as_object_mut().unwrap().remove("event_id");
                }),
                EventError::Missing("event_id"),
            ),
            (
                Box::new(|v| v["event_id"] = "".into()),
                EventError::Missing("event_id"),
            ),
            (
                Box::new(|v| v["sent_at"] = "22/11/2026".into()),
                EventError::BadTimestamp {
                    field: "sent_at",
                    value: "22/11/2026".into(),
                },
            ),
            (
                Box::new(|v| {
                    v["recipient"].as_object_mut().unwrap().remove("user_id");
                }),
                EventError::Missing("recipient.user_id"),
            ),
            (
                Box::new(|v| v["sender"]["age_band"] = "TEEN".into()),
                EventError::UnknownValue {
                    field: "sender.age_band",
                    value: "TEEN".into(),
                    expected: "UNKNOWN, UNDER_13, AGE_13_15, AGE_16_17, ADULT",
                },
            ),
            (
                Box::new(|v| v["call"] = serde_json::json!({"video": true})),
                EventError::SeveralBodies(2),
            ),
            (
                Box::new(|v| {
                    v.as_object_mut().unwrap().remove("message");
                }),
                EventError::NoBody,
            ),
            (
                Box::new(|v| v["message"]["text"] = "a".repeat(9000).into()),
                EventError::TextTooLong {
                    len: 9000,
                    max: 8192,
                },
            ),
            (
                Box::new(|v| v["message"] = serde_json::json!({"text": "", "attachments": []})),
                EventError::EmptyMessage,
            ),
            (
                Box::new(|v| v["sender"]["relationship"] = "COUSIN".into()),
                EventError::UnknownValue {
                    field: "sender.relationship",
                    value: "COUSIN".into(),
                    expected: "FAMILY, FRIEND, SCHOOLMATE, TEAMMATE, ACQUAINTANCE",
                },
            ),
            (
                Box::new(|v| v["message"]["attachments"][0]["kind"] = "GIF".into()),
                EventError::UnknownValue {
                    field: "message.attachments.kind",
                    value: "GIF".into(),
                    expected: "IMAGE, VIDEO, AUDIO, LINK, FILE",
                },
            ),
            (
                Box::new(|v| v["recipient"]["user_id"] = "u-981".into()),
                EventError::SameUser,
            ),
            (
                Box::new(|v| v["event_id"] = "e".repeat(300).into()),
                EventError::TooLong {
                    field: "event_id",
                    len: 300,
                    max: 256,
                },
            ),
        ];
        for (patch, expected) in cases {
            assert_eq!(with(patch).unwrap_err(), expected);
        }
    }

    #[test]
    fn rejects_broken_json_and_wrong_types() {
        let limits = Limits::default();
        assert_eq!(
            Event::from_json("{not json", &limits).unwrap_err().reason(),
            "bad_json"
        );
        let err = Event::from_json(r#"{"event_id":5}"#, &limits).unwrap_err();
        assert!(err.to_string().contains("invalid type"), "{err}");
    }

    #[test]
    fn blank_ids_are_missing_and_control_characters_are_refused() {
        let cases: Vec<(Patch, EventError)> = vec![
            (
                Box::new(|v| v["event_id"] = "  \t".into()),
                EventError::Blank("event_id"),
            ),
            (
                Box::new(|v| v["tenant"] = " ".into()),
                EventError::Blank("tenant"),
            ),
            (
                Box::new(|v| v["sender"]["user_id"] = "\u{3000}".into()),
                EventError::Blank("sender.user_id"),
            ),
            (
                Box::new(|v| v["conversation_id"] = "   ".into()),
                EventError::Blank("conversation_id"),
            ),
            (
                Box::new(|v| v["recipient"]["locale"] = " ".into()),
                EventError::Blank("recipient.locale"),
            ),
            (
                Box::new(|v| v["sender"]["user_id"] = "u-9\n1".into()),
                EventError::BadId {
                    field: "sender.user_id",
                    code: 0x0A,
                    at: 3,
                },
            ),
            (
                Box::new(|v| v["tenant"] = "game\u{0}eu".into()),
                EventError::BadId {
                    field: "tenant",
                    code: 0,
                    at: 4,
                },
            ),
            (
                Box::new(|v| v["event_id"] = "é-\u{85}".into()),
                EventError::BadId {
                    field: "event_id",
                    code: 0x85,
                    at: 3,
                },
            ),
            (
                Box::new(|v| v["recipient"]["user_id"] = "\u{7f}".into()),
                EventError::BadId {
                    field: "recipient.user_id",
                    code: 0x7F,
                    at: 0,
                },
            ),
            (
                Box::new(|v| v["conversation_id"] = "dm\r".into()),
                EventError::BadId {
                    field: "conversation_id",
                    code: 0x0D,
                    at: 2,
                },
            ),
            (
                Box::new(|v| v["recipient"]["locale"] = "fr\u{1b}FR".into()),
                EventError::BadId {
                    field: "recipient.locale",
                    code: 0x1B,
                    at: 2,
                },
            ),
        ];
        for (patch, expected) in cases {
            let err = with(patch).unwrap_err();
            assert_eq!(err, expected);
            let reason = if matches!(err, EventError::Blank(_)) {
                "missing_field"
            } else {
                "bad_id"
            };
            assert_eq!(err.reason(), reason);
        }
        let err = with(|v| v["sender"]["user_id"] = "u-9\n1".into()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "field `sender.user_id` contains a control character (U+000A) at byte 3"
        );
        assert_eq!(
            with(|v| v["tenant"] = " ".into()).unwrap_err().to_string(),
            "field `tenant` is blank (only whitespace)"
        );
        // Spaces inside an id, and non-ASCII letters, are fine; an empty optional id is
        // still absent.
        let e = with(|v| {
            v["sender"]["user_id"] = " Zoé 42 ".into();
            v["conversation_id"] = "".into();
        })
        .unwrap();
        assert_eq!(
            (e.sender.user_id.as_str(), e.conversation_id),
            (" Zoé 42 ", None)
        );
    }

    #[test]
    fn timestamps_are_accepted_from_1970_to_9999_only() {
        for ok in ["1970-01-01T00:00:00Z", "9999-12-30T22:00:00Z"] {
            assert!(with(|v| v["sent_at"] = ok.into()).is_ok(), "{ok}");
        }
        let err = with(|v| v["sent_at"] = "1969-12-31T23:59:59Z".into()).unwrap_err();
        assert_eq!(
            err,
            EventError::TimestampOutOfRange {
                field: "sent_at",
                value: "\"1969-12-31T23:59:59Z\"".into(),
                accepted: TIME_RANGE,
            }
        );
        assert_eq!(err.reason(), "bad_timestamp");
        assert_eq!(
            err.to_string(),
            "field `sent_at` is out of range: \"1969-12-31T23:59:59Z\" (accepted: years 1970 to 9999, 1970-01-01T00:00:00Z to 9999-12-30T22:00:00Z)"
        );
        // Before 1970 by an offset, and an account created before 1970.
        let err = with(|v| v["sent_at"] = "1970-01-01T00:30:00+01:00".into()).unwrap_err();
        assert_eq!(err.reason(), "bad_timestamp");
        let err = with(|v| v["sender"]["account_created_at"] = "1900-01-01T00:00:00Z".into())
            .unwrap_err();
        assert!(
            matches!(
                err,
                EventError::TimestampOutOfRange {
                    field: "sender.account_created_at",
                    ..
                }
            ),
            "{err:?}"
        );
        let err = with(|v| v["sent_at"] = "9999-12-30T22:00:00.001Z".into()).unwrap_err();
        assert_eq!(err.reason(), "bad_timestamp");
        // Past 9999 is not RFC 3339 at all.
        let err = with(|v| v["sent_at"] = "10000-01-01T00:00:00Z".into()).unwrap_err();
        assert_eq!(err.reason(), "bad_timestamp");
    }

    #[test]
    fn a_sent_at_too_far_ahead_of_the_clock_is_refused_when_skew_is_limited() {
        let skewed = Limits {
            max_future_skew: Some(10 * crate::detect::time::MINUTE),
            ..Limits::default()
        };
        let at = |ahead: Millis| {
            let mut v: serde_json::Value = serde_json::from_str(OK).unwrap();
            v["sent_at"] = format_rfc3339(crate::detect::time::now_millis() + ahead).into();
            v.to_string()
        };
        let err = Event::from_json(&at(31 * crate::detect::time::DAY), &skewed).unwrap_err();
        assert!(
            matches!(err, EventError::SentAtInFuture { ahead, max }
                if ahead > 30 * crate::detect::time::DAY && max == 10 * crate::detect::time::MINUTE),
            "{err:?}"
        );
        assert_eq!(err.reason(), "sent_at_in_future");
        let text = err.to_string();
        assert!(
            text.starts_with("field `sent_at` is 30d 23h ahead of the server's clock")
                || text.starts_with("field `sent_at` is 31d ahead of the server's clock"),
            "{text}"
        );
        assert!(text.ends_with("over the allowed skew of 10m"), "{text}");
        let year_9998 = OK.replace("2026-11-22T21:04:05Z", "9998-01-01T00:00:00Z");
        assert_eq!(
            Event::from_json(&year_9998, &skewed).unwrap_err().reason(),
            "sent_at_in_future"
        );
        // Within the skew, or in the past: accepted. Without a limit: pure event time.
        assert!(Event::from_json(&at(5 * crate::detect::time::MINUTE), &skewed).is_ok());
        assert!(Event::from_json(OK, &skewed).is_ok());
        assert!(Event::from_json(&year_9998, &Limits::default()).is_ok());
    }

    #[test]
    fn every_reason_is_listed_for_metrics() {
        let errors = [
            EventError::Json(String::new()),
            EventError::Missing("x"),
            EventError::Blank("x"),
            EventError::BadId {
                field: "x",
                code: 0,
                at: 0,
            },
            EventError::TooLong {
                field: "x",
                len: 0,
                max: 0,
            },
            EventError::BadTimestamp {
                field: "x",
                value: String::new(),
            },
            EventError::TimestampOutOfRange {
                field: "x",
                value: String::new(),
                accepted: TIME_RANGE,
            },
            EventError::SentAtInFuture { ahead: 0, max: 0 },
            EventError::NoBody,
            EventError::SeveralBodies(2),
            EventError::TextTooLong { len: 0, max: 0 },
            EventError::TooManyAttachments { len: 0, max: 0 },
            EventError::EmptyMessage,
            EventError::SameUser,
        ];
        for e in &errors {
            assert!(EventError::REASONS.contains(&e.reason()), "{}", e.reason());
        }
        assert!(EventError::REASONS.contains(&"unknown_value"));
    }

    #[test]
    fn a_photo_alone_is_a_message() {
        let e = with(|v| v["message"]["text"] = "".into()).unwrap();
        assert_eq!(e.text(), "");
    }
}
