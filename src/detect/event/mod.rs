//! The event contract: domain types, their names, the reasons for a rejection, and the
//! JSON form of a validated event.
//!
//! JSON lines and protobuf `ChatEvent`s both decode into [`RawEvent`] and pass through
//! [`RawEvent::validate`] ([`raw`]), the one place where an event is judged well-formed;
//! the engine only ever sees a validated [`Event`].

mod raw;

pub use raw::{
    RawAction, RawAttachment, RawCall, RawEvent, RawHashMatch, RawLabels, RawMessage, RawUser,
};

use crate::detect::time::{format_duration, format_rfc3339, Millis};
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

/// The closed enums of the contract, one table per enum: `Variant = number => "NAME"`,
/// the proto enum value being `prefix` + `NAME` with that number. The JSON form writes
/// the bare name; reading accepts all three, as protobuf's JSON printers may write any.
macro_rules! named_enum {
    ($ty:ident, $prefix:literal {
        $first:ident = $first_number:literal => $first_name:literal
        $(, $variant:ident = $number:literal => $name:literal)* $(,)?
    }) => {
        impl $ty {
            /// The accepted values, as said in rejections.
            pub const EXPECTED: &'static str = concat!(
                $first_name $(, ", ", $name)*,
                " (or ", $prefix, $first_name, "..., or their numbers)"
            );

            /// The name in the JSON form, without the proto prefix.
            pub fn as_str(self) -> &'static str {
                match self {
                    $ty::$first => $first_name,
                    $($ty::$variant => $name,)*
                }
            }

            /// The number of the proto enum value.
            pub fn number(self) -> i32 {
                match self {
                    $ty::$first => $first_number,
                    $($ty::$variant => $number,)*
                }
            }

            /// Reads a bare name (`ADULT`), a full proto name (`AGE_BAND_ADULT`) or a
            /// number in decimal (`4`).
            pub fn parse(s: &str) -> Option<$ty> {
                match s.strip_prefix($prefix).unwrap_or(s) {
                    $first_name => Some($ty::$first),
                    $($name => Some($ty::$variant),)*
                    // Digits only: "+4" or " 4" is no number of the contract.
                    _ if !s.bytes().all(|b| b.is_ascii_digit()) => None,
                    _ => match s.parse::<i32>() {
                        Ok($first_number) => Some($ty::$first),
                        $(Ok($number) => Some($ty::$variant),)*
                        _ => None,
                    },
                }
            }
        }
    };
}
named_enum!(AgeBand, "AGE_BAND_" { Unknown = 0 => "UNKNOWN", Under13 = 1 => "UNDER_13", Age13To15 = 2 => "AGE_13_15", Age16To17 = 3 => "AGE_16_17", Adult = 4 => "ADULT" });
named_enum!(AttachmentKind, "ATTACHMENT_KIND_" { Image = 1 => "IMAGE", Video = 2 => "VIDEO", Audio = 3 => "AUDIO", Link = 4 => "LINK", File = 5 => "FILE" });
named_enum!(ContactAction, "CONTACT_ACTION_" { FriendRequest = 1 => "FRIEND_REQUEST", FriendAccept = 2 => "FRIEND_ACCEPT", Follow = 3 => "FOLLOW" });
named_enum!(Relationship, "RELATIONSHIP_" { Family = 1 => "FAMILY", Friend = 2 => "FRIEND", Schoolmate = 3 => "SCHOOLMATE", Teammate = 4 => "TEAMMATE", Acquaintance = 5 => "ACQUAINTANCE" });
named_enum!(SafetyAction, "SAFETY_ACTION_" { Block = 1 => "BLOCK", Report = 2 => "REPORT", Mute = 3 => "MUTE" });

/// The most classifier labels an attachment, or a message's text, may carry.
pub const MAX_LABELS: usize = 32;
/// The longest label name, in bytes.
pub const MAX_LABEL_NAME_BYTES: usize = 64;

/// A platform classifier's score for one label (`nudity` 0.97), from 0 to 1. The rule
/// pack decides which labels it reads; the others are ignored.
#[derive(Clone, Debug, PartialEq)]
pub struct Label {
    pub name: String,
    pub score: f32,
}

/// A platform's lookup of an attachment's hash in a hash list (known abuse material).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HashMatch {
    /// Id of the list consulted, if the platform said it.
    pub list: Option<String>,
    /// Whether the hash is on the list; a lookup that did not match is kept as given.
    pub matched: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Attachment {
    pub kind: AttachmentKind,
    /// The platform's classifier scores for this attachment, sorted by name.
    pub labels: Vec<Label>,
    pub hash_match: Option<HashMatch>,
}

/// An attachment the platform says nothing more about.
impl From<AttachmentKind> for Attachment {
    fn from(kind: AttachmentKind) -> Self {
        Attachment {
            kind,
            labels: Vec::new(),
            hash_match: None,
        }
    }
}

// Scores are f32: `Message`, `Body` and `Event` are `PartialEq` only.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub text: String,
    pub attachments: Vec<Attachment>,
    /// The platform's text classifier scores for this message, sorted by name.
    pub labels: Vec<Label>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Body {
    Message(Message),
    Contact(ContactAction),
    Call { video: bool, duration_s: u32 },
    Safety(SafetyAction),
}

/// A validated event.
#[derive(Clone, Debug, PartialEq)]
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
    #[error("field `{field}` has {len} labels, over the limit of {max}")]
    TooManyLabels {
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error("field `{field}` has a bad label {name:?}: {problem}")]
    BadLabel {
        field: &'static str,
        name: String,
        problem: String,
    },
}

impl EventError {
    /// Every reason code, for metric initialisation.
    pub const REASONS: [&'static str; 14] = [
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
        "bad_label",
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
            EventError::TooManyLabels { .. } | EventError::BadLabel { .. } => "bad_label",
        }
    }
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
        let scores = |labels: &[Label]| -> RawLabels {
            labels.iter().map(|l| (l.name.clone(), l.score)).collect()
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
                        .map(|a| RawAttachment {
                            kind: a.kind.as_str().to_string(),
                            labels: scores(&a.labels),
                            hash_match: a.hash_match.as_ref().map(|h| RawHashMatch {
                                list: h.list.clone(),
                                matched: h.matched,
                            }),
                        })
                        .collect(),
                    labels: scores(&m.labels),
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
mod tests;
