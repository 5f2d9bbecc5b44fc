//! The event contract: domain types, JSON decoding and encoding, validation.
//!
//! JSON lines and protobuf `ChatEvent`s both decode into [`RawEvent`] and pass through
//! [`RawEvent::validate`], the one place where an event is judged well-formed; the
//! engine only ever sees a validated [`Event`].

use crate::time::{format_rfc3339, parse_rfc3339, Millis};
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

/// Size limits applied by validation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest message text, in bytes of UTF-8.
    pub max_text_bytes: usize,
    /// Longest id (event, user, tenant, conversation), in bytes.
    pub max_id_bytes: usize,
    pub max_attachments: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_text_bytes: 8 * 1024,
            max_id_bytes: 256,
            max_attachments: 32,
        }
    }
}

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
    #[error("field `{field}` is not an RFC 3339 timestamp: {value:?}")]
    BadTimestamp { field: &'static str, value: String },
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
    pub const REASONS: [&'static str; 11] = [
        "bad_json",
        "missing_field",
        "field_too_long",
        "bad_timestamp",
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
            EventError::Missing(_) => "missing_field",
            EventError::TooLong { .. } => "field_too_long",
            EventError::BadTimestamp { .. } => "bad_timestamp",
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
    pub fn validate(self, limits: &Limits) -> Result<Event, EventError> {
        let id = |field: &'static str, v: Option<String>| -> Result<String, EventError> {
            let v = v
                .filter(|s| !s.is_empty())
                .ok_or(EventError::Missing(field))?;
            check_len(field, &v, limits.max_id_bytes)?;
            Ok(v)
        };
        let event_id = id("event_id", self.event_id)?;
        let tenant = match self.tenant.filter(|t| !t.is_empty()) {
            Some(t) => {
                check_len("tenant", &t, limits.max_id_bytes)?;
                t
            }
            None => DEFAULT_TENANT.to_string(),
        };
        let sent_at_raw = self
            .sent_at
            .filter(|s| !s.is_empty())
            .ok_or(EventError::Missing("sent_at"))?;
        let sent_at = timestamp("sent_at", &sent_at_raw)?;
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
        let conversation_id = match self.conversation_id.filter(|c| !c.is_empty()) {
            Some(c) => {
                check_len("conversation_id", &c, limits.max_id_bytes)?;
                Some(c)
            }
            None => None,
        };
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
        let (id_field, band_field, created_field, locale_field) = match side {
            "sender" => (
                "sender.user_id",
                "sender.age_band",
                "sender.account_created_at",
                "sender.locale",
            ),
            _ => (
                "recipient.user_id",
                "recipient.age_band",
                "recipient.account_created_at",
                "recipient.locale",
            ),
        };
        let user_id = self
            .user_id
            .filter(|s| !s.is_empty())
            .ok_or(EventError::Missing(id_field))?;
        check_len(id_field, &user_id, limits.max_id_bytes)?;
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
        let locale = self.locale.filter(|s| !s.is_empty());
        if let Some(l) = &locale {
            check_len(locale_field, l, 35)?;
        }
        Ok(UserRef {
            user_id,
            age_band,
            account_created_at,
            locale,
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

fn timestamp(field: &'static str, v: &str) -> Result<Millis, EventError> {
    parse_rfc3339(v).ok_or_else(|| EventError::BadTimestamp {
        field,
        value: v.to_string(),
    })
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
    fn a_photo_alone_is_a_message() {
        let e = with(|v| v["message"]["text"] = "".into()).unwrap();
        assert_eq!(e.text(), "");
    }
}
