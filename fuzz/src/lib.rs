//! Helpers shared by the fuzz targets: what a validated event must look like, the
//! round trips every accepted event must survive, and encoders for the on-disk formats
//! (write-ahead log records, checkpoints) written from their documented layout.

use pairwatch::detect::event::{Body, Event, Limits, UserRef};
use pairwatch::proto::{event_from_proto, pb};
use pairwatch::detect::time::{MAX_TIME, MIN_TIME};
use prost::Message as _;

/// An id as validation promises it: present, not blank, short enough, no control
/// character.
fn check_id(field: &str, v: &str, max: usize) {
    assert!(!v.is_empty(), "{field}: empty id accepted");
    assert!(!v.trim().is_empty(), "{field}: blank id accepted: {v:?}");
    assert!(
        v.len() <= max,
        "{field}: {} bytes accepted, max {max}",
        v.len()
    );
    assert!(
        !v.chars().any(char::is_control),
        "{field}: control character accepted: {v:?}"
    );
}

fn check_user(side: &str, u: &UserRef, limits: &Limits) {
    check_id(side, &u.user_id, limits.max_id_bytes);
    if let Some(t) = u.account_created_at {
        assert!((MIN_TIME..=MAX_TIME).contains(&t), "{side}: created at {t}");
    }
    if let Some(l) = &u.locale {
        check_id(side, l, 35);
    }
}

/// Everything [`pairwatch::detect::event::RawEvent::validate`] promises about an event it
/// accepted.
pub fn check_valid(e: &Event, limits: &Limits) {
    check_id("event_id", &e.event_id, limits.max_id_bytes);
    check_id("tenant", &e.tenant, limits.max_id_bytes);
    assert!(
        (MIN_TIME..=MAX_TIME).contains(&e.sent_at),
        "sent_at {} accepted",
        e.sent_at
    );
    check_user("sender", &e.sender, limits);
    check_user("recipient", &e.recipient, limits);
    assert_ne!(e.sender.user_id, e.recipient.user_id, "same user accepted");
    if let Some(c) = &e.conversation_id {
        check_id("conversation_id", c, limits.max_id_bytes);
    }
    if let Body::Message(m) = &e.body {
        assert!(m.text.len() <= limits.max_text_bytes);
        assert!(m.attachments.len() <= limits.max_attachments);
        assert!(
            !(m.text.is_empty() && m.attachments.is_empty()),
            "empty message accepted"
        );
    }
}

/// An accepted event prints back to JSON that decodes to the same event, and converts
/// to protobuf (through the wire bytes) and back to the same event: both forms carry
/// exactly the same events.
pub fn check_round_trips(e: &Event, limits: &Limits) {
    let json = e.to_json();
    let again = Event::from_json(&json, limits)
        .unwrap_or_else(|err| panic!("own JSON refused: {err}\n{json}"));
    assert_eq!(&again, e, "JSON round trip changed the event\n{json}");
    assert_eq!(again.to_json(), json, "JSON form is not stable");

    let msg = pb::ChatEvent::from(e);
    let wire = msg.encode_to_vec();
    let decoded = pb::ChatEvent::decode(wire.as_slice()).expect("own protobuf bytes decode");
    assert_eq!(decoded, msg, "protobuf wire round trip changed the message");
    let back = event_from_proto(decoded, limits)
        .unwrap_or_else(|err| panic!("own protobuf refused: {err}\n{msg:?}"));
    assert_eq!(&back, e, "protobuf round trip changed the event");
}

/// A rejected event says why with a listed reason code and a message.
pub fn check_rejection(err: &pairwatch::detect::event::EventError) {
    assert!(pairwatch::detect::event::EventError::REASONS.contains(&err.reason()));
    assert!(!err.to_string().is_empty());
}

/// Size of a write-ahead log record header: `len u32 | crc32 u32 | seq u64 | kind u8`.
pub const WAL_HEADER: usize = 17;

/// One write-ahead log record as the module doc lays it out: little endian, the CRC
/// over seq, kind and payload.
pub fn wal_record(seq: u64, kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = crc32fast::Hasher::new();
    h.update(&seq.to_le_bytes());
    h.update(&[kind]);
    h.update(payload);
    let mut out = Vec::with_capacity(WAL_HEADER + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&h.finalize().to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.push(kind);
    out.extend_from_slice(payload);
    out
}

/// `bytes` with a CRC32 of them appended (what a checkpoint ends with), so that the
/// fuzzer's inputs get past the checksum to the parser behind it.
pub fn with_crc(bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out.extend_from_slice(&crc32fast::hash(bytes).to_le_bytes());
    out
}
