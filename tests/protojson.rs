//! Protobuf's own JSON form of `pairwatch.v1.ChatEvent`, as a real printer writes it
//! (Python's `google.protobuf.json_format`, in each setting a backend may use: see
//! `tests/protojson/print_events.py`), is read as the documented JSON form: by
//! `Event::from_json`, by the Kafka JSON path, and by `pairwatch replay`, which raises
//! the same alerts as from the documented form.
//!
//! Needs python3 with pip: the `protobuf` package is installed once into
//! `target/tmp/protojson-py`, where later runs find it.

use pairwatch::detect::event::{
    AgeBand, Attachment, AttachmentKind, Body, ContactAction, Event, HashMatch, Label, Limits,
    Message, Relationship, SafetyAction, UserRef,
};
use pairwatch::detect::time::parse_rfc3339;
use pairwatch::kafka::codec::{self, Format};
use pairwatch::proto::pb;
use prost::Message as _;
use rdkafka::message::OwnedHeaders;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// The protobuf runtime the events are printed with: 5.26 or later, whose printer has
/// `always_print_fields_with_no_presence`.
const PROTOBUF_VERSION: &str = "6.33.0";

/// The build's descriptor set (`build.rs`): Python builds the message classes from it.
const DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pairwatch_descriptor.bin"));

/// The printer settings of `print_events.py`.
const SETTINGS: [&str; 5] = [
    "default",
    "proto_names",
    "enum_numbers",
    "all_fields",
    "all_options",
];

/// A directory of its own, under `target/tmp` (tests run in parallel).
fn scratch(name: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("protojson-{}-{n}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The Python path holding `protobuf` at [`PROTOBUF_VERSION`], installed on first use.
fn python_protobuf() -> PathBuf {
    static INSTALL: Mutex<()> = Mutex::new(());
    let _guard = INSTALL.lock().unwrap_or_else(|p| p.into_inner());
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("protojson-py");
    if !dir
        .join(format!("protobuf-{PROTOBUF_VERSION}.dist-info"))
        .exists()
    {
        // --upgrade: replace another version left there by an earlier pin.
        let status = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "--upgrade", "--no-deps"])
            .arg("--target")
            .arg(&dir)
            .arg(format!("protobuf=={PROTOBUF_VERSION}"))
            .status()
            .expect("python3 -m pip (installs protobuf for this test)");
        assert!(
            status.success(),
            "pip could not install protobuf {PROTOBUF_VERSION}"
        );
    }
    dir
}

/// Each event as protobuf's printer writes it in every setting: (index of the event,
/// setting, one line of JSON).
fn print_with_protobuf(events: &[pb::ChatEvent]) -> Vec<(usize, String, String)> {
    let dir = scratch("descriptor");
    let descriptor = dir.join("pairwatch_descriptor.bin");
    std::fs::write(&descriptor, DESCRIPTOR_SET).unwrap();
    let input: String = events
        .iter()
        .map(|e| {
            let hex: String = e
                .encode_to_vec()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            hex + "\n"
        })
        .collect();
    let mut child = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/protojson/print_events.py"))
        .arg(&descriptor)
        .env("PYTHONPATH", python_protobuf())
        .env("PYTHONIOENCODING", "utf-8")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run python3");
    // The script reads all its input before it prints.
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "print_events.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Vec<(usize, String, String)> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let mut parts = line.splitn(3, ' ');
            let mut next = || parts.next().unwrap_or_default().to_string();
            (
                next().parse::<usize>().expect("event number"),
                next(),
                next(),
            )
        })
        .collect();
    assert_eq!(printed.len(), events.len() * SETTINGS.len(), "{printed:?}");
    printed
}

fn at(s: &str) -> i64 {
    parse_rfc3339(s).unwrap()
}

fn user(id: &str, age_band: AgeBand) -> UserRef {
    UserRef {
        user_id: id.into(),
        age_band,
        ..UserRef::default()
    }
}

fn labels(scores: &[(&str, f32)]) -> Vec<Label> {
    scores
        .iter()
        .map(|(name, score)| Label {
            name: name.to_string(),
            score: *score,
        })
        .collect()
}

fn message(text: &str, attachments: Vec<Attachment>, scores: &[(&str, f32)]) -> Body {
    Body::Message(Message {
        text: text.into(),
        attachments,
        labels: labels(scores),
    })
}

/// One event of each kind the contract has, every optional part set somewhere.
fn events() -> Vec<Event> {
    let adult = UserRef {
        account_created_at: Some(at("2026-04-30T08:00:00Z")),
        ..user("u-ray", AgeBand::Adult)
    };
    let teen = UserRef {
        locale: Some("en-GB".into()),
        relationship: Some(Relationship::Teammate),
        ..user("u-mia", AgeBand::Age13To15)
    };
    let image = Attachment {
        kind: AttachmentKind::Image,
        labels: labels(&[("explicit", 0.88), ("nudity", 0.97)]),
        hash_match: Some(HashMatch {
            list: Some("ncmec-hashes".into()),
            matched: true,
        }),
    };
    let bodies = [
        message("hey, how old are you? 🙂", vec![], &[]),
        message(
            "",
            vec![image, AttachmentKind::Link.into()],
            &[("grooming", 0.91)],
        ),
        message("ok", vec![], &[("sexual/minors", 0.0), ("toxicity", 1.0)]),
        Body::Contact(ContactAction::FriendRequest),
        Body::Call {
            video: true,
            duration_s: 754,
        },
        Body::Safety(SafetyAction::Block),
    ];
    bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| Event {
            event_id: format!("e-{i}"),
            tenant: (if i % 2 == 0 { "game-eu" } else { "default" }).to_string(),
            sent_at: at("2026-05-02T19:00:00.250Z") + i as i64 * 60_000,
            sender: if i == 2 {
                user("u-anon", AgeBand::Unknown)
            } else {
                adult.clone()
            },
            recipient: teen.clone(),
            conversation_id: (i % 2 == 0).then(|| "dm-ray-mia".to_string()),
            body,
        })
        .collect()
}

#[test]
fn every_printer_setting_is_read_as_the_same_event() {
    let events = events();
    let mut wire: Vec<pb::ChatEvent> = events.iter().map(pb::ChatEvent::from).collect();
    // Sub-millisecond times, which protobuf prints with 9 and 6 fractional digits.
    wire[0].sent_at.as_mut().unwrap().nanos += 1;
    wire[1].sent_at.as_mut().unwrap().nanos += 1_000;
    let printed = print_with_protobuf(&wire);
    let limits = Limits::default();
    let no_headers: Option<&OwnedHeaders> = None;
    for (i, setting, json) in &printed {
        let expected = &events[*i];
        assert_eq!(
            Event::from_json(json, &limits).as_ref(),
            Ok(expected),
            "{setting}: {json}"
        );
        assert_eq!(
            codec::decode(Some(json.as_bytes()), no_headers, Format::Json, &limits).as_ref(),
            Ok(expected),
            "{setting}: {json}"
        );
    }
    // The printer did write the forms this test is about.
    let form = |setting: &str| -> serde_json::Value {
        let (_, _, json) = printed
            .iter()
            .find(|(i, s, _)| *i == 1 && s == setting)
            .unwrap();
        serde_json::from_str(json).unwrap()
    };
    let default = form("default");
    assert_eq!(default["sender"]["ageBand"], "AGE_BAND_ADULT");
    assert_eq!(default["sentAt"], "2026-05-02T19:01:00.250001Z");
    let attachment = &default["message"]["attachments"][0];
    assert_eq!(attachment["kind"], "ATTACHMENT_KIND_IMAGE");
    assert_eq!(attachment["hashMatch"]["list"], "ncmec-hashes");
    assert_eq!(attachment["labels"]["nudity"], 0.97);
    assert_eq!(
        form("proto_names")["recipient"]["age_band"],
        "AGE_BAND_AGE_13_15"
    );
    assert_eq!(form("enum_numbers")["recipient"]["relationship"], 4);
    let all_fields = form("all_fields");
    assert_eq!(
        all_fields["sender"]["relationship"],
        "RELATIONSHIP_UNSPECIFIED"
    );
    assert_eq!(all_fields["conversationId"], "");
    assert_eq!(
        all_fields["message"]["attachments"][1]["labels"],
        serde_json::json!({})
    );
    let all_options = form("all_options");
    assert_eq!(all_options["sender"]["relationship"], 0);
    assert_eq!(all_options["sender"]["age_band"], 4);
}

/// A sextortion escalation in English: an adult befriends a 14-year-old, asks for a
/// photo, then threatens to send it to her friends unless she pays within the hour.
fn sextortion() -> Vec<Event> {
    let adult = UserRef {
        account_created_at: Some(at("2026-04-30T08:00:00Z")),
        ..user("u-ray", AgeBand::Adult)
    };
    let teen = UserRef {
        locale: Some("en-GB".into()),
        ..user("u-mia", AgeBand::Age13To15)
    };
    let photo = Attachment {
        kind: AttachmentKind::Image,
        labels: labels(&[("nudity", 0.93)]),
        hash_match: Some(HashMatch {
            list: None,
            matched: false,
        }),
    };
    let threat = "i saved it. send me $200 in gift cards or i'll send it to all your friends";
    let steps = [
        ("19:00", true, Body::Contact(ContactAction::FriendRequest)),
        (
            "19:02",
            true,
            message("hey cutie how old are you?", vec![], &[]),
        ),
        ("19:03", false, message("14", vec![], &[])),
        (
            "19:05",
            true,
            message("send me a pic of you, just for me", vec![], &[]),
        ),
        ("19:09", false, message("", vec![photo], &[])),
        (
            "19:12",
            true,
            message(threat, vec![], &[("sextortion", 0.97)]),
        ),
        ("19:13", true, message("you have 1 hour", vec![], &[])),
        ("19:20", false, Body::Safety(SafetyAction::Block)),
    ];
    steps
        .into_iter()
        .enumerate()
        .map(|(i, (time, from_adult, body))| {
            let (sender, recipient) = if from_adult {
                (adult.clone(), teen.clone())
            } else {
                (teen.clone(), adult.clone())
            };
            Event {
                event_id: format!("x{}", i + 1),
                tenant: "game-eu".into(),
                sent_at: at(&format!("2026-05-02T{time}:00Z")),
                sender,
                recipient,
                conversation_id: Some("dm-ray-mia".into()),
                body,
            }
        })
        .collect()
}

/// `pairwatch replay` of `lines`: its alerts, as printed.
fn replay(lines: &str, name: &str) -> String {
    let dir = scratch(&format!("replay-{name}"));
    let file = dir.join("events.jsonl");
    std::fs::write(&file, lines).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pairwatch"))
        .arg("replay")
        .arg(&file)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run pairwatch replay");
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{name}: {stderr}");
    assert!(stderr.contains(" 0 rejected"), "{name}: {stderr}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn replay_raises_the_same_alerts_from_protobuf_json() {
    let conversation = sextortion();
    let documented: String = conversation.iter().map(|e| e.to_json() + "\n").collect();
    let expected = replay(&documented, "documented");
    let alerts: Vec<serde_json::Value> = expected
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        alerts.iter().any(|a| a["pattern"] == "SEXTORTION"
            && a["priority"] == "P0"
            && a["respond_by"] == "2026-05-02T20:13:00Z"),
        "{expected}"
    );
    let wire: Vec<pb::ChatEvent> = conversation.iter().map(pb::ChatEvent::from).collect();
    let printed = print_with_protobuf(&wire);
    for setting in SETTINGS {
        let lines: String = printed
            .iter()
            .filter(|(_, s, _)| s == setting)
            .map(|(_, _, json)| format!("{json}\n"))
            .collect();
        assert_eq!(lines.lines().count(), conversation.len());
        assert_eq!(replay(&lines, setting), expected, "{setting}:\n{lines}");
    }
}
