//! The unvalidated event as JSON or protobuf gives it, and its validation.
//!
//! JSON is read in the documented form (snake_case names, bare enum names) and also as
//! protobuf's own JSON printers write a `ChatEvent` (lowerCamelCase names, full enum
//! names or numbers, default values printed, `null` for a default, integers as strings),
//! so a backend may print its protobuf messages as they are. It is always written in the
//! documented form.

use super::*;
use crate::detect::time::{parse_rfc3339, MAX_TIME, MIN_TIME};
use serde::de::{self, Deserializer, Visitor};
use std::fmt;

/// The unvalidated event, as decoded from JSON or converted from protobuf.
/// Enum values stay strings here (a name, or a number in decimal) so that validation
/// names the field and the value. Each field also reads under its lowerCamelCase name,
/// as protobuf's JSON printers write it.
#[derive(Debug, Default, Deserialize, Serialize)]
pub struct RawEvent {
    #[serde(default, alias = "eventId", skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(default, alias = "sentAt", skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<RawUser>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<RawUser>,
    #[serde(
        default,
        alias = "conversationId",
        skip_serializing_if = "Option::is_none"
    )]
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
    #[serde(default, alias = "userId", skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(
        default,
        alias = "ageBand",
        deserialize_with = "enum_value",
        skip_serializing_if = "Option::is_none"
    )]
    pub age_band: Option<String>,
    #[serde(
        default,
        alias = "accountCreatedAt",
        skip_serializing_if = "Option::is_none"
    )]
    pub account_created_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    #[serde(
        default,
        deserialize_with = "enum_value",
        skip_serializing_if = "Option::is_none"
    )]
    pub relationship: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct RawMessage {
    #[serde(default, deserialize_with = "null_default")]
    pub text: String,
    #[serde(default, deserialize_with = "null_default")]
    pub attachments: Vec<RawAttachment>,
    /// Text classifier scores by label name; written only when there are some.
    #[serde(default, skip_serializing_if = "RawLabels::is_empty")]
    pub labels: RawLabels,
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct RawAttachment {
    #[serde(default, deserialize_with = "enum_text")]
    pub kind: String,
    /// Classifier scores by label name; written only when there are some.
    #[serde(default, skip_serializing_if = "RawLabels::is_empty")]
    pub labels: RawLabels,
    #[serde(default, alias = "hashMatch", skip_serializing_if = "Option::is_none")]
    pub hash_match: Option<RawHashMatch>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct RawHashMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub matched: bool,
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct RawAction {
    #[serde(default, deserialize_with = "enum_text")]
    pub action: String,
}

#[derive(Debug, Default, Deserialize, Serialize)]
pub struct RawCall {
    #[serde(default, deserialize_with = "null_default")]
    pub video: bool,
    #[serde(default, alias = "durationS", deserialize_with = "uint32")]
    pub duration_s: u32,
}

/// Classifier scores by label name, as given: a JSON object whose scores are numbers or,
/// as proto3 JSON allows, decimal text (`"0.97"`, `"NaN"`); `null` is none. A name given
/// twice is kept twice, for validation to refuse.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RawLabels(pub Vec<(String, f32)>);

impl RawLabels {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<(String, f32)> for RawLabels {
    fn from_iter<I: IntoIterator<Item = (String, f32)>>(iter: I) -> Self {
        RawLabels(iter.into_iter().collect())
    }
}

impl Serialize for RawLabels {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (name, score) in &self.0 {
            map.serialize_entry(name, score)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for RawLabels {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Labels;
        impl<'de> Visitor<'de> for Labels {
            type Value = RawLabels;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of label names to scores")
            }
            fn visit_unit<E: de::Error>(self) -> Result<RawLabels, E> {
                Ok(RawLabels::default())
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<RawLabels, A::Error> {
                let mut out = Vec::new();
                while let Some((name, Score(score))) = map.next_entry::<String, Score>()? {
                    out.push((name, score));
                }
                Ok(RawLabels(out))
            }
        }
        d.deserialize_any(Labels)
    }
}

/// A score: a JSON number, or its decimal text.
struct Score(f32);

impl<'de> Deserialize<'de> for Score {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ScoreVisitor;
        impl Visitor<'_> for ScoreVisitor {
            type Value = Score;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a score: a number, or its decimal text")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Score, E> {
                Ok(Score(v as f32))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Score, E> {
                Ok(Score(v as f32))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Score, E> {
                Ok(Score(v as f32))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Score, E> {
                v.parse()
                    .map(Score)
                    .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
            }
        }
        d.deserialize_any(ScoreVisitor)
    }
}

// Readers of the values protobuf's JSON form writes differently from the documented one.
// In proto3 JSON, `null` stands for a field's default value.

/// A field without presence: `null` is its default.
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// An enum value: its name, or its number kept in decimal (the `named_enum!` tables read
/// both); `null` is absent.
fn enum_value<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct NameOrNumber;
    impl Visitor<'_> for NameOrNumber {
        type Value = Option<String>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an enum value name or number")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v.to_string()))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    d.deserialize_any(NameOrNumber)
}

/// [`enum_value`] of a field without presence: `null` is the empty value, which
/// validation refuses as unknown like any other.
fn enum_text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(enum_value(d)?.unwrap_or_default())
}

/// A uint32: a number or, as proto3 JSON allows, its decimal text; `null` is 0.
fn uint32<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    struct Uint32;
    impl Visitor<'_> for Uint32 {
        type Value = u32;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an integer from 0 to 4294967295, as a number or a string")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u32, E> {
            u32::try_from(v).map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<u32, E> {
            u32::try_from(v).map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<u32, E> {
            v.bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| v.parse().ok())
                .flatten()
                .ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
        }
        fn visit_unit<E: de::Error>(self) -> Result<u32, E> {
            Ok(0)
        }
    }
    d.deserialize_any(Uint32)
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
                .map(|a| a.validate(limits))
                .collect::<Result<Vec<_>, _>>()?;
            Body::Message(Message {
                text: m.text,
                attachments,
                labels: labels("message.labels", m.labels)?,
            })
        } else if let Some(c) = self.contact {
            Body::Contact(known(
                "contact.action",
                c.action,
                ContactAction::parse,
                ContactAction::EXPECTED,
            )?)
        } else if let Some(c) = self.call {
            Body::Call {
                video: c.video,
                duration_s: c.duration_s,
            }
        } else if let Some(s) = self.safety {
            Body::Safety(known(
                "safety.action",
                s.action,
                SafetyAction::parse,
                SafetyAction::EXPECTED,
            )?)
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
            Some(b) => known(band_field, b, AgeBand::parse, AgeBand::EXPECTED)?,
        };
        let account_created_at = match self.account_created_at.filter(|s| !s.is_empty()) {
            None => None,
            Some(t) => Some(timestamp(created_field, &t)?),
        };
        let locale = optional_id(locale_field, self.locale, 35)?;
        // Protobuf's unspecified value, by name or number, is the platform not knowing.
        let relationship = match self
            .relationship
            .filter(|r| !matches!(r.as_str(), "" | "0" | "RELATIONSHIP_UNSPECIFIED"))
        {
            None => None,
            Some(r) => Some(known(
                relationship_field,
                r,
                Relationship::parse,
                Relationship::EXPECTED,
            )?),
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

impl RawAttachment {
    fn validate(self, limits: &Limits) -> Result<Attachment, EventError> {
        let kind = known(
            "message.attachments.kind",
            self.kind,
            AttachmentKind::parse,
            AttachmentKind::EXPECTED,
        )?;
        let hash_match = match self.hash_match {
            None => None,
            Some(h) => Some(HashMatch {
                list: optional_id(
                    "message.attachments.hash_match.list",
                    h.list,
                    limits.max_id_bytes,
                )?,
                matched: h.matched,
            }),
        };
        Ok(Attachment {
            kind,
            labels: labels("message.attachments.labels", self.labels)?,
            hash_match,
        })
    }
}

/// A value of a closed enum, or why not: the field, the value and what is accepted.
fn known<T>(
    field: &'static str,
    value: String,
    parse: fn(&str) -> Option<T>,
    expected: &'static str,
) -> Result<T, EventError> {
    parse(&value).ok_or(EventError::UnknownValue {
        field,
        value,
        expected,
    })
}

/// Classifier labels, in the map's order (by name): at most [`MAX_LABELS`], names not
/// empty, at most [`MAX_LABEL_NAME_BYTES`], without control characters, scores from 0 to
/// 1 (which also refuses NaN and infinities).
fn labels(field: &'static str, raw: RawLabels) -> Result<Vec<Label>, EventError> {
    let mut raw = raw.0;
    if raw.len() > MAX_LABELS {
        return Err(EventError::TooManyLabels {
            field,
            len: raw.len(),
            max: MAX_LABELS,
        });
    }
    raw.sort_by(|a, b| a.0.cmp(&b.0));
    let twice = raw.windows(2).find(|w| w[0].0 == w[1].0);
    if let Some(w) = twice {
        return Err(EventError::BadLabel {
            field,
            name: w[0].0.clone(),
            problem: "the name is given twice".into(),
        });
    }
    raw.into_iter()
        .map(|(name, score)| {
            let problem = if name.is_empty() {
                "the name is empty".to_string()
            } else if name.len() > MAX_LABEL_NAME_BYTES {
                format!(
                    "the name is {} bytes, over the limit of {MAX_LABEL_NAME_BYTES}",
                    name.len()
                )
            } else if let Some((at, c)) = control_char(&name) {
                format!(
                    "the name contains a control character (U+{:04X}) at byte {at}",
                    c as u32
                )
            } else if !(0.0..=1.0).contains(&score) {
                format!("the score {score} is not within 0 to 1")
            } else {
                return Ok(Label { name, score });
            };
            Err(EventError::BadLabel {
                field,
                name,
                problem,
            })
        })
        .collect()
}

/// The first control character of `v` and its byte offset.
fn control_char(v: &str) -> Option<(usize, char)> {
    v.char_indices().find(|(_, c)| c.is_control())
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
    if let Some((at, c)) = control_char(&v) {
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
