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
            attachments: vec![AttachmentKind::Image.into()],
            labels: vec![],
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
                expected: AgeBand::EXPECTED,
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
                expected: Relationship::EXPECTED,
            },
        ),
        (
            Box::new(|v| v["message"]["attachments"][0]["kind"] = "GIF".into()),
            EventError::UnknownValue {
                field: "message.attachments.kind",
                value: "GIF".into(),
                expected: AttachmentKind::EXPECTED,
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
    let err =
        with(|v| v["sender"]["account_created_at"] = "1900-01-01T00:00:00Z".into()).unwrap_err();
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
        EventError::TooManyLabels {
            field: "x",
            len: 0,
            max: 0,
        },
        EventError::BadLabel {
            field: "x",
            name: String::new(),
            problem: String::new(),
        },
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

// ---- protobuf's JSON form, classifier results -------------------------------------

use serde_json::json;

/// An event with every optional part, in the documented form as printed.
const FULL: &str = r#"{"event_id":"e-17","tenant":"game-eu","sent_at":"2026-11-22T21:04:05.25Z","sender":{"user_id":"u-981","age_band":"ADULT","account_created_at":"2026-11-01T00:00:00Z"},"recipient":{"user_id":"u-112","age_band":"AGE_13_15","locale":"fr-FR","relationship":"FAMILY"},"conversation_id":"dm-981-112","message":{"text":"salut","attachments":[{"kind":"IMAGE","labels":{"nudity":0.97,"violence":0.05},"hash_match":{"list":"ncmec-hashes","matched":true}},{"kind":"LINK"}],"labels":{"grooming":0.91}}}"#;

fn decode(v: serde_json::Value) -> Event {
    Event::from_json(&v.to_string(), &Limits::default()).unwrap_or_else(|e| panic!("{e}: {v}"))
}

fn label(name: &str, score: f32) -> Label {
    Label {
        name: name.into(),
        score,
    }
}

#[test]
fn classifier_results_are_decoded_sorted_and_printed_back() {
    let e = Event::from_json(FULL, &Limits::default()).unwrap();
    assert_eq!(
        e.body,
        Body::Message(Message {
            text: "salut".into(),
            attachments: vec![
                Attachment {
                    kind: AttachmentKind::Image,
                    labels: vec![label("nudity", 0.97), label("violence", 0.05)],
                    hash_match: Some(HashMatch {
                        list: Some("ncmec-hashes".into()),
                        matched: true,
                    }),
                },
                AttachmentKind::Link.into(),
            ],
            labels: vec![label("grooming", 0.91)],
        })
    );
    assert_eq!(e.to_json(), FULL);
    // A name given twice is refused, whichever score came last.
    let twice = OK.replace(
        r#""text":"salut","#,
        r#""text":"salut","labels":{"nudity":0.99,"nudity":0.1},"#,
    );
    assert_eq!(
        Event::from_json(&twice, &Limits::default()).unwrap_err(),
        EventError::BadLabel {
            field: "message.labels",
            name: "nudity".into(),
            problem: "the name is given twice".into(),
        }
    );
    // Scores as decimal text, as proto3 JSON allows; "NaN" is a bad label, not bad JSON.
    let e = with(|v| v["message"]["labels"] = json!({"a": "0.25"})).unwrap();
    assert!(matches!(&e.body, Body::Message(m) if m.labels == [label("a", 0.25)]));
    let err = with(|v| v["message"]["labels"] = json!({"a": "NaN"})).unwrap_err();
    assert_eq!(err.reason(), "bad_label", "{err}");
    // Sorted by name whatever the order given; integers are scores too.
    let e = with(|v| v["message"]["labels"] = json!({"b": 0.5, "a": 1, "c": 0})).unwrap();
    let Body::Message(m) = &e.body else {
        panic!("{e:?}")
    };
    assert_eq!(
        m.labels,
        [label("a", 1.0), label("b", 0.5), label("c", 0.0)]
    );
    assert!(
        e.to_json()
            .ends_with(r#""labels":{"a":1.0,"b":0.5,"c":0.0}}}"#),
        "{}",
        e.to_json()
    );
    // A lookup that did not match is kept; an empty list id is no id.
    let e = with(|v| {
        v["message"]["attachments"][0]["hash_match"] = json!({"list": "", "matched": false})
    })
    .unwrap();
    let Body::Message(m) = &e.body else {
        panic!("{e:?}")
    };
    let unmatched = HashMatch {
        list: None,
        matched: false,
    };
    assert_eq!(m.attachments[0].hash_match, Some(unmatched));
    assert!(
        e.to_json()
            .contains(r#"[{"kind":"IMAGE","hash_match":{"matched":false}}]"#),
        "{}",
        e.to_json()
    );
}

#[test]
fn bad_labels_and_hash_list_ids_are_refused_naming_the_field() {
    let many: serde_json::Map<String, serde_json::Value> =
        (0..33).map(|i| (format!("l{i}"), json!(0.5))).collect();
    let bad = |field: &'static str, name: &str, problem: &str| EventError::BadLabel {
        field,
        name: name.into(),
        problem: problem.into(),
    };
    let cases: Vec<(Patch, EventError)> = vec![
        (
            Box::new(|v| v["message"]["labels"] = json!({"": 0.5})),
            bad("message.labels", "", "the name is empty"),
        ),
        (
            Box::new(|v| v["message"]["attachments"][0]["labels"] = json!({"nudity": 1.5})),
            bad(
                "message.attachments.labels",
                "nudity",
                "the score 1.5 is not within 0 to 1",
            ),
        ),
        (
            Box::new(|v| v["message"]["labels"] = json!({"grooming": -0.01})),
            bad(
                "message.labels",
                "grooming",
                "the score -0.01 is not within 0 to 1",
            ),
        ),
        (
            // Past f32: infinite.
            Box::new(|v| v["message"]["labels"] = json!({"grooming": 1e300})),
            bad(
                "message.labels",
                "grooming",
                "the score inf is not within 0 to 1",
            ),
        ),
        (
            Box::new(|v| v["message"]["labels"] = json!({"n".repeat(65): 0.5})),
            bad(
                "message.labels",
                &"n".repeat(65),
                "the name is 65 bytes, over the limit of 64",
            ),
        ),
        (
            Box::new(|v| v["message"]["attachments"][0]["labels"] = json!({"nu\ndity": 0.5})),
            bad(
                "message.attachments.labels",
                "nu\ndity",
                "the name contains a control character (U+000A) at byte 2",
            ),
        ),
        (
            Box::new(move |v| v["message"]["labels"] = many.into()),
            EventError::TooManyLabels {
                field: "message.labels",
                len: 33,
                max: MAX_LABELS,
            },
        ),
        (
            Box::new(|v| {
                v["message"]["attachments"][0]["hash_match"] =
                    json!({"list": "a\u{0}", "matched": true})
            }),
            EventError::BadId {
                field: "message.attachments.hash_match.list",
                code: 0,
                at: 1,
            },
        ),
        (
            Box::new(|v| {
                v["message"]["attachments"][0]["hash_match"] =
                    json!({"list": "h".repeat(300), "matched": true})
            }),
            EventError::TooLong {
                field: "message.attachments.hash_match.list",
                len: 300,
                max: 256,
            },
        ),
    ];
    for (patch, expected) in cases {
        assert_eq!(with(patch).unwrap_err(), expected);
    }
    let err = with(|v| v["message"]["labels"] = json!({"grooming": 2})).unwrap_err();
    assert_eq!(err.reason(), "bad_label");
    assert_eq!(
        err.to_string(),
        "field `message.labels` has a bad label \"grooming\": the score 2 is not within 0 to 1"
    );
    let err = with(|v| v["message"]["labels"] = json!({"grooming": "high"})).unwrap_err();
    assert_eq!(err.reason(), "bad_json");
}

#[test]
fn protobuf_json_forms_decode_to_the_same_event() {
    let event = Event::from_json(FULL, &Limits::default()).unwrap();
    // lowerCamelCase names, full enum names, microseconds.
    let camel = json!({
        "eventId": "e-17", "tenant": "game-eu", "sentAt": "2026-11-22T21:04:05.250000Z",
        "sender": {"userId": "u-981", "ageBand": "AGE_BAND_ADULT",
                   "accountCreatedAt": "2026-11-01T00:00:00Z"},
        "recipient": {"userId": "u-112", "ageBand": "AGE_BAND_AGE_13_15", "locale": "fr-FR",
                      "relationship": "RELATIONSHIP_FAMILY"},
        "conversationId": "dm-981-112",
        "message": {"text": "salut", "labels": {"grooming": 0.91}, "attachments": [
            {"kind": "ATTACHMENT_KIND_IMAGE", "labels": {"violence": 0.05, "nudity": 0.97},
             "hashMatch": {"list": "ncmec-hashes", "matched": true}},
            {"kind": "ATTACHMENT_KIND_LINK"}]}
    });
    // Enum numbers (as numbers or in a string), nanoseconds.
    let numbers = json!({
        "eventId": "e-17", "tenant": "game-eu", "sentAt": "2026-11-22T21:04:05.250000000Z",
        "sender": {"userId": "u-981", "ageBand": 4, "accountCreatedAt": "2026-11-01T00:00:00Z"},
        "recipient": {"userId": "u-112", "ageBand": "2", "locale": "fr-FR", "relationship": 1},
        "conversationId": "dm-981-112",
        "message": {"text": "salut", "labels": {"grooming": 0.91}, "attachments": [
            {"kind": 1, "labels": {"nudity": 0.97, "violence": 0.05},
             "hashMatch": {"list": "ncmec-hashes", "matched": true}},
            {"kind": 4}]}
    });
    // Every field printed, default values included, and null for a default.
    let defaults = json!({
        "eventId": "e-17", "tenant": "game-eu", "sentAt": "2026-11-22T21:04:05.250Z",
        "sender": {"userId": "u-981", "ageBand": "AGE_BAND_ADULT",
                   "accountCreatedAt": "2026-11-01T00:00:00Z", "locale": "",
                   "relationship": "RELATIONSHIP_UNSPECIFIED"},
        "recipient": {"userId": "u-112", "ageBand": "AGE_BAND_AGE_13_15", "locale": "fr-FR",
                      "relationship": "RELATIONSHIP_FAMILY", "accountCreatedAt": null},
        "conversationId": "dm-981-112",
        "message": {"text": "salut", "labels": {"grooming": 0.91}, "attachments": [
            {"kind": "ATTACHMENT_KIND_IMAGE", "labels": {"nudity": 0.97, "violence": 0.05},
             "hashMatch": {"list": "ncmec-hashes", "matched": true}},
            {"kind": "ATTACHMENT_KIND_LINK", "labels": {}, "hashMatch": null}]},
        "contact": null, "call": null, "safety": null
    });
    for form in [camel, numbers, defaults] {
        let e = decode(form.clone());
        assert_eq!(e, event, "{form}");
        // Always written back in the documented form.
        assert_eq!(e.to_json(), FULL);
    }
}

#[test]
fn protobuf_defaults_and_nulls_are_absent_values() {
    let bare = decode(json!({
        "event_id": "e", "sent_at": "2026-11-22T21:04:05Z", "sender": {"user_id": "a"},
        "recipient": {"user_id": "b"}, "message": {"text": "hi"}
    }));
    let printed = decode(json!({
        "eventId": "e", "tenant": "", "sentAt": "2026-11-22T21:04:05Z",
        "sender": {"userId": "a", "ageBand": "AGE_BAND_UNKNOWN", "locale": "",
                   "relationship": "RELATIONSHIP_UNSPECIFIED"},
        "recipient": {"userId": "b", "ageBand": 0, "locale": "", "relationship": 0},
        "conversationId": "", "message": {"text": "hi", "attachments": [], "labels": {}}
    }));
    let nulls = decode(json!({
        "eventId": "e", "tenant": null, "sentAt": "2026-11-22T21:04:05Z",
        "sender": {"userId": "a", "ageBand": null, "accountCreatedAt": null, "locale": null,
                   "relationship": null},
        "recipient": {"userId": "b"}, "conversationId": null,
        "message": {"text": "hi", "attachments": null, "labels": null}, "call": null
    }));
    assert_eq!(printed, bare);
    assert_eq!(nulls, bare);
    assert_eq!(
        (
            bare.tenant.as_str(),
            bare.sender.age_band,
            bare.recipient.relationship
        ),
        ("default", AgeBand::Unknown, None)
    );
    let with_body = |body: serde_json::Value| {
        let mut v = json!({
            "eventId": "e", "sentAt": "2026-11-22T21:04:05Z",
            "sender": {"userId": "a"}, "recipient": {"userId": "b"}
        });
        v.as_object_mut()
            .unwrap()
            .extend(body.as_object().unwrap().clone());
        decode(v).body
    };
    let call = |video, duration_s| Body::Call { video, duration_s };
    let cases = [
        (
            json!({"contact": {"action": "FRIEND_REQUEST"}}),
            Body::Contact(ContactAction::FriendRequest),
        ),
        (
            json!({"contact": {"action": "CONTACT_ACTION_FOLLOW"}}),
            Body::Contact(ContactAction::Follow),
        ),
        (
            json!({"contact": {"action": 2}}),
            Body::Contact(ContactAction::FriendAccept),
        ),
        (
            json!({"safety": {"action": "SAFETY_ACTION_BLOCK"}}),
            Body::Safety(SafetyAction::Block),
        ),
        (
            json!({"safety": {"action": 3}}),
            Body::Safety(SafetyAction::Mute),
        ),
        (
            json!({"call": {"video": true, "duration_s": 30}}),
            call(true, 30),
        ),
        (
            json!({"call": {"video": true, "durationS": "30"}}),
            call(true, 30),
        ),
        (
            json!({"call": {"durationS": "4294967295"}}),
            call(false, u32::MAX),
        ),
        (json!({"call": {}}), call(false, 0)),
        (
            json!({"call": {"video": false, "durationS": 0}}),
            call(false, 0),
        ),
        (
            json!({"call": {"video": null, "durationS": null}}),
            call(false, 0),
        ),
    ];
    for (form, body) in cases {
        assert_eq!(with_body(form.clone()), body, "{form}");
    }
}

#[test]
fn unknown_and_unspecified_enum_values_are_refused_with_the_accepted_forms() {
    let err =
        with(|v| v["message"]["attachments"][0]["kind"] = "ATTACHMENT_KIND_UNSPECIFIED".into())
            .unwrap_err();
    assert_eq!(
        err.to_string(),
        "field `message.attachments.kind` has unknown value \"ATTACHMENT_KIND_UNSPECIFIED\" (expected one of IMAGE, VIDEO, AUDIO, LINK, FILE (or ATTACHMENT_KIND_IMAGE..., or their numbers))"
    );
    let unknown = |field, value: &str, expected| EventError::UnknownValue {
        field,
        value: value.into(),
        expected,
    };
    let body = |name: &str, action: serde_json::Value| -> Patch {
        let name = name.to_string();
        Box::new(move |v| {
            v.as_object_mut().unwrap().remove("message");
            v[name.as_str()] = json!({ "action": action });
        })
    };
    let kind = AttachmentKind::EXPECTED;
    let cases: Vec<(Patch, EventError)> = vec![
        (
            Box::new(|v| v["message"]["attachments"][0]["kind"] = json!(0)),
            unknown("message.attachments.kind", "0", kind),
        ),
        (
            Box::new(|v| v["message"]["attachments"][0]["kind"] = json!(6)),
            unknown("message.attachments.kind", "6", kind),
        ),
        (
            Box::new(|v| v["message"]["attachments"][0]["kind"] = serde_json::Value::Null),
            unknown("message.attachments.kind", "", kind),
        ),
        (
            body("contact", json!(0)),
            unknown("contact.action", "0", ContactAction::EXPECTED),
        ),
        (
            body("contact", json!("CONTACT_ACTION_UNSPECIFIED")),
            unknown(
                "contact.action",
                "CONTACT_ACTION_UNSPECIFIED",
                ContactAction::EXPECTED,
            ),
        ),
        (
            body("safety", json!("CONTACT_ACTION_BLOCK")),
            unknown(
                "safety.action",
                "CONTACT_ACTION_BLOCK",
                SafetyAction::EXPECTED,
            ),
        ),
        (
            body("safety", json!("SAFETY_ACTION_UNSPECIFIED")),
            unknown(
                "safety.action",
                "SAFETY_ACTION_UNSPECIFIED",
                SafetyAction::EXPECTED,
            ),
        ),
        (
            Box::new(|v| v["sender"]["age_band"] = json!(5)),
            unknown("sender.age_band", "5", AgeBand::EXPECTED),
        ),
        (
            Box::new(|v| v["sender"]["age_band"] = json!(-1)),
            unknown("sender.age_band", "-1", AgeBand::EXPECTED),
        ),
        (
            Box::new(|v| v["recipient"]["relationship"] = "RELATIONSHIP_COUSIN".into()),
            unknown(
                "recipient.relationship",
                "RELATIONSHIP_COUSIN",
                Relationship::EXPECTED,
            ),
        ),
        (
            Box::new(|v| v["recipient"]["relationship"] = json!(6)),
            unknown("recipient.relationship", "6", Relationship::EXPECTED),
        ),
    ];
    for (patch, expected) in cases {
        let err = with(patch).unwrap_err();
        assert_eq!(err.reason(), "unknown_value");
        assert_eq!(err, expected);
    }
    assert_eq!(
        AgeBand::EXPECTED,
        "UNKNOWN, UNDER_13, AGE_13_15, AGE_16_17, ADULT (or AGE_BAND_UNKNOWN..., or their numbers)"
    );
    // Values of the wrong type are not JSON of an event.
    let wrong_types: [Patch; 3] = [
        Box::new(|v| v["sender"]["age_band"] = true.into()),
        Box::new(|v| v["sender"]["age_band"] = json!(4.5)),
        Box::new(|v| v["message"] = json!({"text": 5})),
    ];
    for patch in wrong_types {
        assert_eq!(with(patch).unwrap_err().reason(), "bad_json");
    }
    let err = with(|v| {
        v.as_object_mut().unwrap().remove("message");
        v["call"] = json!({"durationS": "30s"});
    })
    .unwrap_err();
    assert_eq!(err.reason(), "bad_json");
    assert!(
        err.to_string()
            .contains("expected an integer from 0 to 4294967295, as a number or a string"),
        "{err}"
    );
    for too_big in [json!(4_294_967_296u64), json!("-1"), json!(-1)] {
        let err = with(|v| {
            v.as_object_mut().unwrap().remove("message");
            v["call"] = json!({ "duration_s": too_big });
        })
        .unwrap_err();
        assert_eq!(err.reason(), "bad_json");
    }
}

#[test]
fn every_enum_reads_its_bare_name_full_name_and_number() {
    for band in AgeBand::ALL {
        let full = format!("AGE_BAND_{}", band.as_str());
        for form in [band.as_str().to_string(), full, band.number().to_string()] {
            assert_eq!(AgeBand::parse(&form), Some(band), "{form}");
        }
    }
    for r in Relationship::ALL {
        assert_eq!(Relationship::parse(&r.number().to_string()), Some(r));
        assert_eq!(
            Relationship::parse(&format!("RELATIONSHIP_{}", r.as_str())),
            Some(r)
        );
    }
    assert_eq!(
        AttachmentKind::parse("ATTACHMENT_KIND_VIDEO"),
        Some(AttachmentKind::Video)
    );
    assert_eq!(AttachmentKind::parse("5"), Some(AttachmentKind::File));
    assert_eq!(ContactAction::Follow.number(), 3);
    // The prefix of another enum, or twice, is no name.
    assert_eq!(SafetyAction::parse("CONTACT_ACTION_BLOCK"), None);
    assert_eq!(AgeBand::parse("AGE_BAND_AGE_BAND_ADULT"), None);
    // Numbers are digits only.
    for odd in ["+4", "04 ", " 4", "-4", "4.0", ""] {
        assert_eq!(AgeBand::parse(odd), None, "{odd:?}");
    }
}

#[test]
fn timestamps_as_protobuf_prints_them_are_read_to_the_millisecond() {
    let at = |s: &str| with(|v| v["sent_at"] = s.into()).unwrap().sent_at;
    let ms = at("2026-11-22T21:04:05.250Z");
    assert_eq!(at("2026-11-22T21:04:05Z") + 250, ms);
    for s in [
        "2026-11-22T21:04:05.250000Z",
        "2026-11-22T21:04:05.250000000Z",
        "2026-11-22T21:04:05.250999999Z",
    ] {
        assert_eq!(at(s), ms, "{s}");
    }
}
