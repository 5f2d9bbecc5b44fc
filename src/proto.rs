//! The protobuf contract (`proto/pairwatch/v1`), generated at build time, and its
//! conversions. A `ChatEvent` is turned into a [`RawEvent`] and validated by the same
//! code as JSON, so both forms accept and reject exactly the same events.

use crate::detect::alert::{Alert, AlertUpdate, KnownOffender, Side, UpdateKind};
use crate::detect::event::{
    Body, Event, EventError, Label, Limits, RawAction, RawAttachment, RawCall, RawEvent,
    RawHashMatch, RawMessage, RawUser, Relationship, UserRef,
};
use crate::detect::rules::{Pattern, Priority};
use crate::detect::time::{format_rfc3339, parse_rfc3339, Millis};

/// Generated types of package `pairwatch.v1`.
#[allow(clippy::all)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/pairwatch.v1.rs"));
}

pub fn timestamp(ms: Millis) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

pub fn rfc3339(ts: &prost_types::Timestamp) -> String {
    format_rfc3339(
        ts.seconds
            .saturating_mul(1000)
            .saturating_add(ts.nanos as i64 / 1_000_000),
    )
}

/// Accepted protobuf `Timestamp`s, as said in rejections.
const PROTO_TIME_RANGE: &str =
    "nanos 0 to 999999999, a time from seconds 0 (1970-01-01T00:00:00Z) to 253402207200 (9999-12-30T22:00:00Z)";

/// An event's protobuf `Timestamp` as RFC 3339, or why it is not a time validation
/// accepts: nanos outside 0..=999_999_999 or a time outside years 1970 to 9999.
fn event_time(field: &'static str, ts: &prost_types::Timestamp) -> Result<String, EventError> {
    let ms = ts
        .seconds
        .checked_mul(1000)
        .and_then(|ms| ms.checked_add(i64::from(ts.nanos) / 1_000_000));
    let in_range = ms.is_some_and(|ms| {
        (crate::detect::time::MIN_TIME..=crate::detect::time::MAX_TIME).contains(&ms)
    });
    if !(0..=999_999_999).contains(&ts.nanos) || !in_range {
        return Err(EventError::TimestampOutOfRange {
            field,
            value: format!(
                "Timestamp {{ seconds: {}, nanos: {} }}",
                ts.seconds, ts.nanos
            ),
            accepted: PROTO_TIME_RANGE,
        });
    }
    Ok(rfc3339(ts))
}

fn timestamp_str(s: &str) -> Option<prost_types::Timestamp> {
    parse_rfc3339(s).map(timestamp)
}

// Enum values pass to validation as their numbers in decimal, which it reads as it reads
// them in protobuf's JSON form: an unknown number is refused naming the field and value.
fn raw_user(u: pb::UserRef, created_field: &'static str) -> Result<RawUser, EventError> {
    Ok(RawUser {
        user_id: Some(u.user_id),
        age_band: Some(u.age_band.to_string()),
        account_created_at: u
            .account_created_at
            .as_ref()
            .map(|t| event_time(created_field, t))
            .transpose()?,
        locale: Some(u.locale).filter(|l| !l.is_empty()),
        relationship: Some(u.relationship.to_string()),
    })
}

/// Decodes and validates a protobuf event. A `Timestamp` that is not a valid time
/// (nanos out of range, seconds outside years 1970 to 9999) is rejected here, before the
/// other checks; everything else is validated by the same code as JSON.
pub fn event_from_proto(e: pb::ChatEvent, limits: &Limits) -> Result<Event, EventError> {
    use pb::chat_event::Body as PbBody;
    let mut raw = RawEvent {
        event_id: Some(e.event_id),
        tenant: Some(e.tenant),
        sent_at: e
            .sent_at
            .as_ref()
            .map(|t| event_time("sent_at", t))
            .transpose()?,
        sender: e
            .sender
            .map(|u| raw_user(u, "sender.account_created_at"))
            .transpose()?,
        recipient: e
            .recipient
            .map(|u| raw_user(u, "recipient.account_created_at"))
            .transpose()?,
        conversation_id: Some(e.conversation_id),
        ..RawEvent::default()
    };
    match e.body {
        Some(PbBody::Message(m)) => {
            raw.message = Some(RawMessage {
                text: m.text,
                attachments: m
                    .attachments
                    .into_iter()
                    .map(|a| RawAttachment {
                        kind: a.kind.to_string(),
                        labels: a.labels.into_iter().collect(),
                        hash_match: a.hash_match.map(|h| RawHashMatch {
                            list: Some(h.list),
                            matched: h.matched,
                        }),
                    })
                    .collect(),
                labels: m.labels.into_iter().collect(),
            })
        }
        Some(PbBody::Contact(c)) => {
            raw.contact = Some(RawAction {
                action: c.action.to_string(),
            })
        }
        Some(PbBody::Call(c)) => {
            raw.call = Some(RawCall {
                video: c.video,
                duration_s: c.duration_s,
            })
        }
        Some(PbBody::Safety(s)) => {
            raw.safety = Some(RawAction {
                action: s.action.to_string(),
            })
        }
        None => {}
    }
    raw.validate(limits)
}

fn proto_user(u: &UserRef) -> pb::UserRef {
    pb::UserRef {
        user_id: u.user_id.clone(),
        age_band: u.age_band.number(),
        account_created_at: u.account_created_at.map(timestamp),
        locale: u.locale.clone().unwrap_or_default(),
        relationship: u.relationship.map_or(0, Relationship::number),
    }
}

fn proto_labels(labels: &[Label]) -> std::collections::HashMap<String, f32> {
    labels.iter().map(|l| (l.name.clone(), l.score)).collect()
}

impl From<&Event> for pb::ChatEvent {
    fn from(e: &Event) -> Self {
        use pb::chat_event::Body as PbBody;
        let body = match &e.body {
            Body::Message(m) => PbBody::Message(pb::MessageBody {
                text: m.text.clone(),
                attachments: m
                    .attachments
                    .iter()
                    .map(|a| pb::Attachment {
                        kind: a.kind.number(),
                        labels: proto_labels(&a.labels),
                        hash_match: a.hash_match.as_ref().map(|h| pb::HashMatch {
                            list: h.list.clone().unwrap_or_default(),
                            matched: h.matched,
                        }),
                    })
                    .collect(),
                labels: proto_labels(&m.labels),
            }),
            Body::Contact(c) => PbBody::Contact(pb::ContactBody { action: c.number() }),
            Body::Call { video, duration_s } => PbBody::Call(pb::CallBody {
                video: *video,
                duration_s: *duration_s,
            }),
            Body::Safety(s) => PbBody::Safety(pb::SafetyBody { action: s.number() }),
        };
        pb::ChatEvent {
            event_id: e.event_id.clone(),
            tenant: e.tenant.clone(),
            sent_at: Some(timestamp(e.sent_at)),
            sender: Some(proto_user(&e.sender)),
            recipient: Some(proto_user(&e.recipient)),
            conversation_id: e.conversation_id.clone().unwrap_or_default(),
            body: Some(body),
        }
    }
}

impl From<&Alert> for pb::Alert {
    fn from(a: &Alert) -> Self {
        let user = |u: &crate::detect::alert::AlertUser| pb::UserRef {
            user_id: u.user_id.clone(),
            age_band: pb::AgeBand::from_str_name(&format!("AGE_BAND_{}", u.age_band))
                .map_or(0, |b| b as i32),
            account_created_at: None,
            locale: String::new(),
            relationship: 0,
        };
        let priority = match a.priority {
            Priority::P0 => pb::Priority::P0,
            Priority::P1 => pb::Priority::P1,
            Priority::P2 => pb::Priority::P2,
            Priority::P3 => pb::Priority::P3,
        };
        let pattern = match a.pattern {
            Pattern::Sextortion => pb::Pattern::Sextortion,
            Pattern::SexualSolicitation => pb::Pattern::SexualSolicitation,
            Pattern::Grooming => pb::Pattern::Grooming,
            Pattern::SelfHarmRisk => pb::Pattern::SelfHarmRisk,
            Pattern::KnownAbuseMaterial => pb::Pattern::KnownAbuseMaterial,
        };
        pb::Alert {
            alert_id: a.alert_id.clone(),
            tenant: a.tenant.clone(),
            priority: priority as i32,
            pattern: pattern as i32,
            suspect: Some(user(&a.suspect)),
            target: Some(user(&a.target)),
            trigger_event_id: a.trigger_event_id.clone(),
            triggered_at: timestamp_str(&a.triggered_at),
            first_contact_at: timestamp_str(&a.first_contact_at),
            respond_by: a.respond_by.as_deref().and_then(timestamp_str),
            rules: a.rules.clone(),
            signals: a
                .signals
                .iter()
                .map(|s| pb::SignalSummary {
                    category: s.category.clone(),
                    side: match s.side {
                        Side::Suspect => pb::Side::Suspect as i32,
                        Side::Target => pb::Side::Target as i32,
                    },
                    count: s.count,
                    first_at: timestamp_str(&s.first_at),
                    last_at: timestamp_str(&s.last_at),
                    slots: s.slots.clone(),
                })
                .collect(),
            evidence: a
                .evidence
                .iter()
                .map(|e| pb::Evidence {
                    event_id: e.event_id.clone(),
                    sent_at: timestamp_str(&e.sent_at),
                    sender_id: e.sender_id.clone(),
                    excerpt: e.excerpt.clone(),
                    sha256: e.sha256.clone(),
                })
                .collect(),
            victim_notice: Some(pb::VictimNotice {
                language: a.victim_notice.language.clone(),
                text: a.victim_notice.text.clone(),
            }),
            recommended_actions: a.recommended_actions.clone(),
            engine_version: a.engine_version.clone(),
            rules_version: a.rules_version.clone(),
            red_flags: a.red_flags.clone(),
            still_in_contact: a.still_in_contact,
            deadline_passed: a.deadline_passed,
            known_offender: a.known_offender.as_ref().map(|k| pb::KnownOffender {
                relationship: k
                    .relationship
                    .as_deref()
                    .and_then(|r| pb::Relationship::from_str_name(&format!("RELATIONSHIP_{r}")))
                    .map_or(0, |r| r as i32),
                friends: k.friends,
                known_for_days: k.known_for_days,
                summary: k.summary.clone(),
            }),
            update: a.update.as_ref().map(|u| pb::AlertUpdate {
                kind: match u.kind {
                    UpdateKind::DeadlinePassed => pb::UpdateKind::DeadlinePassed,
                    UpdateKind::StillInContact => pb::UpdateKind::StillInContact,
                    UpdateKind::ContactEnded => pb::UpdateKind::ContactEnded,
                } as i32,
                at: timestamp_str(&u.at),
            }),
        }
    }
}

fn enum_str(name: Option<&str>, prefix: &str) -> String {
    name.map(|n| n.trim_start_matches(prefix).to_string())
        .unwrap_or_default()
}

fn opt_time(t: &Option<prost_types::Timestamp>) -> String {
    t.as_ref().map(rfc3339).unwrap_or_default()
}

/// The JSON-contract alert carried by a protobuf `Alert` (for clients).
pub fn alert_from_proto(a: &pb::Alert) -> Result<Alert, String> {
    let user = |u: &Option<pb::UserRef>| crate::detect::alert::AlertUser {
        user_id: u.as_ref().map(|u| u.user_id.clone()).unwrap_or_default(),
        age_band: enum_str(
            u.as_ref()
                .and_then(|u| pb::AgeBand::try_from(u.age_band).ok())
                .map(|b| b.as_str_name()),
            "AGE_BAND_",
        ),
    };
    let priority = pb::Priority::try_from(a.priority)
        .ok()
        .map(|p| p.as_str_name());
    let pattern = pb::Pattern::try_from(a.pattern)
        .ok()
        .map(|p| p.as_str_name());
    Ok(Alert {
        alert_id: a.alert_id.clone(),
        tenant: a.tenant.clone(),
        priority: Priority::parse(&enum_str(priority, "PRIORITY_"))
            .ok_or("alert without a priority")?,
        pattern: Pattern::parse(&enum_str(pattern, "PATTERN_")).ok_or("alert without a pattern")?,
        suspect: user(&a.suspect),
        target: user(&a.target),
        trigger_event_id: a.trigger_event_id.clone(),
        triggered_at: opt_time(&a.triggered_at),
        first_contact_at: opt_time(&a.first_contact_at),
        respond_by: a.respond_by.as_ref().map(rfc3339),
        rules: a.rules.clone(),
        signals: a
            .signals
            .iter()
            .map(|s| crate::detect::alert::SignalSummary {
                category: s.category.clone(),
                side: if s.side == pb::Side::Target as i32 {
                    Side::Target
                } else {
                    Side::Suspect
                },
                count: s.count,
                first_at: opt_time(&s.first_at),
                last_at: opt_time(&s.last_at),
                slots: s.slots.clone(),
            })
            .collect(),
        evidence: a
            .evidence
            .iter()
            .map(|e| crate::detect::alert::Evidence {
                event_id: e.event_id.clone(),
                sent_at: opt_time(&e.sent_at),
                sender_id: e.sender_id.clone(),
                excerpt: e.excerpt.clone(),
                sha256: e.sha256.clone(),
            })
            .collect(),
        victim_notice: a
            .victim_notice
            .as_ref()
            .map(|n| crate::detect::alert::VictimNotice {
                language: n.language.clone(),
                text: n.text.clone(),
            })
            .unwrap_or(crate::detect::alert::VictimNotice {
                language: String::new(),
                text: String::new(),
            }),
        recommended_actions: a.recommended_actions.clone(),
        engine_version: a.engine_version.clone(),
        rules_version: a.rules_version.clone(),
        red_flags: a.red_flags.clone(),
        still_in_contact: a.still_in_contact,
        deadline_passed: a.deadline_passed,
        known_offender: a.known_offender.as_ref().map(|k| KnownOffender {
            relationship: pb::Relationship::try_from(k.relationship)
                .ok()
                .filter(|r| *r != pb::Relationship::Unspecified)
                .map(|r| enum_str(Some(r.as_str_name()), "RELATIONSHIP_")),
            friends: k.friends,
            known_for_days: k.known_for_days,
            summary: k.summary.clone(),
        }),
        update: match &a.update {
            None => None,
            Some(u) => Some(AlertUpdate {
                kind: match pb::UpdateKind::try_from(u.kind) {
                    Ok(pb::UpdateKind::DeadlinePassed) => UpdateKind::DeadlinePassed,
                    Ok(pb::UpdateKind::StillInContact) => UpdateKind::StillInContact,
                    Ok(pb::UpdateKind::ContactEnded) => UpdateKind::ContactEnded,
                    _ => return Err(format!("alert update of unknown kind {}", u.kind)),
                },
                at: opt_time(&u.at),
            }),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    const EVENTS: [&str; 5] = [
        r#"{"event_id":"e-1","tenant":"game-eu","sent_at":"2026-11-22T21:04:05.25Z","sender":{"user_id":"u-981","age_band":"ADULT","account_created_at":"2026-11-01T00:00:00Z"},"recipient":{"user_id":"u-112","age_band":"AGE_13_15","locale":"fr-FR"},"conversation_id":"dm","message":{"text":"t'as 1h","attachments":[{"kind":"IMAGE"},{"kind":"LINK"}]}}"#,
        r#"{"event_id":"e-2","tenant":"default","sent_at":"2026-11-22T21:04:05Z","sender":{"user_id":"a","age_band":"UNKNOWN"},"recipient":{"user_id":"b","age_band":"UNDER_13"},"contact":{"action":"FRIEND_ACCEPT"}}"#,
        r#"{"event_id":"e-3","tenant":"default","sent_at":"2026-11-22T21:04:05Z","sender":{"user_id":"a","age_band":"AGE_16_17"},"recipient":{"user_id":"b","age_band":"ADULT"},"call":{"video":true,"duration_s":42}}"#,
        r#"{"event_id":"e-4","tenant":"default","sent_at":"2026-11-22T21:04:05Z","sender":{"user_id":"a","age_band":"UNKNOWN"},"recipient":{"user_id":"b","age_band":"UNKNOWN"},"safety":{"action":"REPORT"}}"#,
        r#"{"event_id":"e-5","tenant":"default","sent_at":"2026-11-22T21:04:05Z","sender":{"user_id":"a","age_band":"ADULT"},"recipient":{"user_id":"b","age_band":"AGE_13_15","relationship":"TEAMMATE"},"message":{"text":"","attachments":[{"kind":"IMAGE","labels":{"nudity":0.97,"weapon":0.0},"hash_match":{"list":"ncmec-hashes","matched":true}},{"kind":"VIDEO","hash_match":{"matched":false}}],"labels":{"grooming":0.91}}}"#,
    ];

    #[test]
    fn json_and_protobuf_carry_the_same_event() {
        let limits = Limits::default();
        for json in EVENTS {
            let event = Event::from_json(json, &limits).unwrap();
            let pb = pb::ChatEvent::from(&event);
            let bytes = pb.encode_to_vec();
            let back = event_from_proto(pb::ChatEvent::decode(bytes.as_slice()).unwrap(), &limits)
                .unwrap();
            assert_eq!(back, event);
            assert_eq!(back.to_json(), json);
        }
    }

    #[test]
    fn alerts_survive_the_protobuf_round_trip() {
        let alerts = {
            let pack = std::sync::Arc::new(crate::detect::pack::RulePack::embedded().unwrap());
            let mut engine = crate::detect::engine::Engine::new(pack, Default::default());
            let mut out = Vec::new();
            for (i, text) in [
                "j'ai tout enregistré",
                "envoie 200€ en PCS sinon j'envoie tout à tes potes, t'as 1h",
            ]
            .iter()
            .enumerate()
            {
                let line = format!(
                    r#"{{"event_id":"e{i}","sent_at":"2026-03-01T20:0{i}:00Z","sender":{{"user_id":"s","age_band":"ADULT"}},"recipient":{{"user_id":"v","age_band":"AGE_13_15"}},"message":{{"text":{text:?},"attachments":[]}}}}"#
                );
                engine.process(
                    &Event::from_json(&line, &Limits::default()).unwrap(),
                    &mut out,
                );
            }
            out
        };
        assert!(!alerts.is_empty());
        for a in &alerts {
            assert_eq!(&alert_from_proto(&pb::Alert::from(a)).unwrap(), a);
        }
    }

    #[test]
    fn protobuf_events_are_validated_like_json() {
        let limits = Limits::default();
        let mut pb = pb::ChatEvent::from(&Event::from_json(EVENTS[0], &limits).unwrap());
        pb.sender.as_mut().unwrap().age_band = 42;
        let err = event_from_proto(pb.clone(), &limits).unwrap_err();
        assert_eq!(err.to_string(), "field `sender.age_band` has unknown value \"42\" (expected one of UNKNOWN, UNDER_13, AGE_13_15, AGE_16_17, ADULT (or AGE_BAND_UNKNOWN..., or their numbers))");
        pb.sender.as_mut().unwrap().age_band = 0;
        pb.body = None;
        assert_eq!(
            event_from_proto(pb.clone(), &limits).unwrap_err(),
            EventError::NoBody
        );
        pb.sent_at = None;
        assert_eq!(
            event_from_proto(pb, &limits).unwrap_err(),
            EventError::Missing("sent_at")
        );
    }

    #[test]
    fn protobuf_timestamps_out_of_range_are_refused() {
        let limits = Limits::default();
        let base = pb::ChatEvent::from(&Event::from_json(EVENTS[0], &limits).unwrap());
        let with_sent_at = |seconds: i64, nanos: i32| {
            let mut e = base.clone();
            e.sent_at = Some(prost_types::Timestamp { seconds, nanos });
            event_from_proto(e, &limits)
        };
        for (seconds, nanos) in [
            (1_700_000_000, -1),
            (1_700_000_000, 1_000_000_000),
            (1_700_000_000, i32::MIN),
            (-1, 0),
            (-62_135_596_800, 0),
            (253_402_207_201, 0),
            (i64::MAX, 999_999_999),
            (i64::MIN, 0),
        ] {
            let err = with_sent_at(seconds, nanos).unwrap_err();
            assert_eq!(
                err,
                EventError::TimestampOutOfRange {
                    field: "sent_at",
                    value: format!("Timestamp {{ seconds: {seconds}, nanos: {nanos} }}"),
                    accepted: PROTO_TIME_RANGE,
                },
                "{seconds} {nanos}"
            );
            assert_eq!(err.reason(), "bad_timestamp");
        }
        let err = with_sent_at(5, -3).unwrap_err().to_string();
        assert_eq!(
            err,
            "field `sent_at` is out of range: Timestamp { seconds: 5, nanos: -3 } (accepted: nanos 0 to 999999999, a time from seconds 0 (1970-01-01T00:00:00Z) to 253402207200 (9999-12-30T22:00:00Z))"
        );
        // The edges are accepted.
        assert_eq!(with_sent_at(0, 0).unwrap().sent_at, 0);
        assert_eq!(
            with_sent_at(253_402_207_200, 0).unwrap().sent_at,
            crate::detect::time::MAX_TIME
        );
        assert_eq!(with_sent_at(1, 999_999_999).unwrap().sent_at, 1_999);
        // Account creation times too, named by their side.
        let mut e = base.clone();
        e.recipient.as_mut().unwrap().account_created_at = Some(prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 2_000_000_000,
        });
        assert!(matches!(
            event_from_proto(e, &limits).unwrap_err(),
            EventError::TimestampOutOfRange {
                field: "recipient.account_created_at",
                ..
            }
        ));
    }

    #[test]
    fn protobuf_ids_and_future_times_are_judged_like_json() {
        let limits = Limits::default();
        let base = pb::ChatEvent::from(&Event::from_json(EVENTS[0], &limits).unwrap());
        let mut e = base.clone();
        e.sender.as_mut().unwrap().user_id = "u-9\n1".into();
        let err = event_from_proto(e, &limits).unwrap_err();
        assert_eq!(
            err.to_string(),
            "field `sender.user_id` contains a control character (U+000A) at byte 3"
        );
        assert_eq!(err.reason(), "bad_id");
        let mut e = base.clone();
        e.event_id = "a\u{0}".into();
        assert_eq!(event_from_proto(e, &limits).unwrap_err().reason(), "bad_id");
        let mut e = base.clone();
        e.tenant = "  ".into();
        assert_eq!(
            event_from_proto(e, &limits).unwrap_err(),
            EventError::Blank("tenant")
        );
        let mut e = base.clone();
        e.recipient.as_mut().unwrap().user_id = " ".into();
        let err = event_from_proto(e, &limits).unwrap_err();
        assert_eq!(
            (err.reason(), err),
            ("missing_field", EventError::Blank("recipient.user_id"))
        );
        let mut e = base.clone();
        e.conversation_id = "dm\t2".into();
        assert_eq!(event_from_proto(e, &limits).unwrap_err().reason(), "bad_id");
        // An empty tenant is still the default one, as in JSON.
        let mut e = base.clone();
        e.tenant = String::new();
        assert_eq!(event_from_proto(e, &limits).unwrap().tenant, "default");
        // Far ahead of the clock: refused only with a skew limit.
        let mut e = base.clone();
        e.sent_at = Some(timestamp(
            crate::detect::time::now_millis() + 31 * crate::detect::time::DAY,
        ));
        let skewed = Limits {
            max_future_skew: Some(10 * crate::detect::time::MINUTE),
            ..limits
        };
        assert!(event_from_proto(e.clone(), &limits).is_ok());
        assert_eq!(
            event_from_proto(e, &skewed).unwrap_err().reason(),
            "sent_at_in_future"
        );
    }

    #[test]
    fn protobuf_enums_and_classifier_results_are_validated_like_json() {
        use crate::detect::event::{AttachmentKind, HashMatch};
        let limits = Limits::default();
        let base = pb::ChatEvent::from(&Event::from_json(EVENTS[4], &limits).unwrap());
        let with_message = |f: &dyn Fn(&mut pb::MessageBody)| {
            let mut e = base.clone();
            let Some(pb::chat_event::Body::Message(m)) = e.body.as_mut() else {
                unreachable!("EVENTS[4] is a message")
            };
            f(m);
            event_from_proto(e, &limits)
        };
        // Unspecified: an unknown kind, an unknown relationship.
        let err = with_message(&|m| m.attachments[0].kind = 0).unwrap_err();
        assert_eq!(
            err,
            EventError::UnknownValue {
                field: "message.attachments.kind",
                value: "0".into(),
                expected: AttachmentKind::EXPECTED,
            }
        );
        let mut e = base.clone();
        e.recipient.as_mut().unwrap().relationship = 0;
        assert_eq!(
            event_from_proto(e, &limits).unwrap().recipient.relationship,
            None
        );
        let mut e = base.clone();
        e.body = Some(pb::chat_event::Body::Contact(pb::ContactBody { action: 0 }));
        assert_eq!(
            event_from_proto(e, &limits).unwrap_err().to_string(),
            "field `contact.action` has unknown value \"0\" (expected one of FRIEND_REQUEST, FRIEND_ACCEPT, FOLLOW (or CONTACT_ACTION_FRIEND_REQUEST..., or their numbers))"
        );
        // Scores outside 0 to 1, NaN included, and bad names.
        for score in [f32::NAN, f32::INFINITY, -0.5, 1.01] {
            let err = with_message(&|m| {
                m.labels.insert("grooming".into(), score);
            })
            .unwrap_err();
            assert!(
                matches!(&err, EventError::BadLabel { field: "message.labels", name, .. } if name == "grooming"),
                "{err:?}"
            );
            assert_eq!(err.reason(), "bad_label");
        }
        let err = with_message(&|m| {
            m.attachments[1].labels.insert("a\u{7}".into(), 0.5);
        })
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "field `message.attachments.labels` has a bad label \"a\\u{7}\": the name contains a control character (U+0007) at byte 1"
        );
        let err = with_message(&|m| {
            m.attachments[0].labels = (0..33).map(|i| (format!("l{i}"), 0.5)).collect();
        })
        .unwrap_err();
        assert_eq!(
            err,
            EventError::TooManyLabels {
                field: "message.attachments.labels",
                len: 33,
                max: 32,
            }
        );
        // A hash match with an empty list id has no list; one that did not match is kept.
        let e =
            with_message(&|m| m.attachments[0].hash_match.as_mut().unwrap().list.clear()).unwrap();
        let Body::Message(m) = &e.body else {
            unreachable!()
        };
        let hash_matches: Vec<_> = m.attachments.iter().map(|a| a.hash_match.clone()).collect();
        assert_eq!(
            hash_matches,
            [
                Some(HashMatch {
                    list: None,
                    matched: true
                }),
                Some(HashMatch {
                    list: None,
                    matched: false
                })
            ]
        );
    }
}
