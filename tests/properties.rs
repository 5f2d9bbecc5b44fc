//! Properties of the parsers that take hostile input, checked on generated input (the
//! coverage-guided fuzz targets under `fuzz/` check the same invariants for longer):
//! - an event survives the JSON and the protobuf round trips unchanged, and arbitrary
//!   protobuf bytes never panic the decoder or the validation;
//! - the normaliser's offsets lie inside the original text, on char boundaries;
//! - `wal::parse_segment` never panics, and keeps every record of a valid segment with
//!   garbage between its records;
//! - `checkpoint::read` never panics on a mutated valid file, and a mutation that leaves
//!   the checksum as it was is refused.

use pairwatch::detect::event::{
    AgeBand, Attachment, AttachmentKind, Body, ContactAction, Event, HashMatch, Label, Limits,
    Message, Relationship, SafetyAction, UserRef,
};
use pairwatch::detect::normalize::{normalize, Normalized};
use pairwatch::detect::signal::Signal;
use pairwatch::detect::state::{tenant_hash, PairKey, PairState};
use pairwatch::detect::time::MAX_TIME;
use pairwatch::proto::{event_from_proto, pb};
use pairwatch::server::checkpoint;
use pairwatch::server::wal::{parse_segment, Kind};
use proptest::prelude::*;
use prost::Message as _;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // No regression files in the repository: failures print their minimal input.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---- Events -------------------------------------------------------------------------

/// An id validation accepts: not blank, no control character, at most 256 bytes.
fn id() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9éß@:][a-zA-Z0-9éß@:._ -]{0,30}"
}

fn user() -> impl Strategy<Value = UserRef> {
    (
        id(),
        prop::sample::select(AgeBand::ALL.to_vec()),
        prop::option::of(0..=MAX_TIME),
        prop::option::of("[a-z]{2}(-[A-Z]{2})?"),
        prop::option::of(prop::sample::select(Relationship::ALL.to_vec())),
    )
        .prop_map(
            |(user_id, age_band, account_created_at, locale, relationship)| UserRef {
                user_id,
                age_band,
                account_created_at,
                locale,
                relationship,
            },
        )
}

/// Classifier labels as validation keeps them: sorted by name, unique. Scores are k/100:
/// an f32 that JSON (shortest form that reads back to the same f32) and protobuf carry
/// exactly, 0 and 1 included.
fn labels() -> impl Strategy<Value = Vec<Label>> {
    prop::collection::btree_map("[a-z][a-z0-9/_.-]{0,20}", 0..=100u32, 0..4).prop_map(|m| {
        m.into_iter()
            .map(|(name, k)| Label {
                name,
                score: k as f32 / 100.0,
            })
            .collect()
    })
}

fn attachment() -> impl Strategy<Value = Attachment> {
    let kind = prop::sample::select(vec![
        AttachmentKind::Image,
        AttachmentKind::Video,
        AttachmentKind::Audio,
        AttachmentKind::Link,
        AttachmentKind::File,
    ]);
    let hash_match = (prop::option::of(id()), any::<bool>())
        .prop_map(|(list, matched)| HashMatch { list, matched });
    (kind, labels(), prop::option::of(hash_match)).prop_map(|(kind, labels, hash_match)| {
        Attachment {
            kind,
            labels,
            hash_match,
        }
    })
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        // Any text, control characters and emoji included.
        (
            any::<String>(),
            prop::collection::vec(attachment(), 0..4),
            labels()
        )
            .prop_filter("a message has text or an attachment", |(t, a, _)| {
                !(t.is_empty() && a.is_empty())
            })
            .prop_map(|(text, attachments, labels)| Body::Message(Message {
                text,
                attachments,
                labels
            })),
        prop::sample::select(vec![
            ContactAction::FriendRequest,
            ContactAction::FriendAccept,
            ContactAction::Follow,
        ])
        .prop_map(Body::Contact),
        (any::<bool>(), any::<u32>())
            .prop_map(|(video, duration_s)| Body::Call { video, duration_s }),
        prop::sample::select(vec![
            SafetyAction::Block,
            SafetyAction::Report,
            SafetyAction::Mute,
        ])
        .prop_map(Body::Safety),
    ]
}

fn event() -> impl Strategy<Value = Event> {
    (
        id(),
        id(),
        0..=MAX_TIME,
        user(),
        user(),
        prop::option::of(id()),
        body(),
    )
        .prop_filter("sender and recipient differ", |(_, _, _, s, r, _, _)| {
            s.user_id != r.user_id
        })
        .prop_map(
            |(event_id, tenant, sent_at, sender, recipient, conversation_id, body)| Event {
                event_id,
                tenant,
                sent_at,
                sender,
                recipient,
                conversation_id,
                body,
            },
        )
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn an_event_survives_the_json_round_trip(e in event()) {
        let limits = Limits::default();
        let json = e.to_json();
        let back = Event::from_json(&json, &limits);
        prop_assert_eq!(back.as_ref(), Ok(&e), "{}", json);
        prop_assert_eq!(back.unwrap().to_json(), json);
    }

    #[test]
    fn an_event_survives_the_protobuf_round_trip(e in event()) {
        let limits = Limits::default();
        let wire = pb::ChatEvent::from(&e).encode_to_vec();
        let msg = pb::ChatEvent::decode(wire.as_slice()).expect("own bytes decode");
        prop_assert_eq!(event_from_proto(msg, &limits), Ok(e));
    }

    #[test]
    fn protobuf_bytes_never_panic_and_accepted_events_round_trip(
        bytes in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let limits = Limits::default();
        if let Ok(msg) = pb::ChatEvent::decode(bytes.as_slice()) {
            if let Ok(e) = event_from_proto(msg, &limits) {
                let again = event_from_proto(pb::ChatEvent::from(&e), &limits);
                prop_assert_eq!(again.as_ref(), Ok(&e));
                prop_assert_eq!(Event::from_json(&e.to_json(), &limits), Ok(e));
            }
        }
    }
}

// ---- Normaliser ---------------------------------------------------------------------

/// Text mixing what the normaliser treats specially: accents, homoglyphs, fullwidth
/// and bold letters, zero-width characters, emoji, leetspeak, apostrophes, digits.
fn chat_text() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "a", "u", "s", "x", "3", "0", "1h", "20h30", "$", "@", "€", "'", "’", "-", ".", " ", "  ",
        "é", "Ç", "ß", "œ", "ѕ", "е", "ｎ", "𝐧", "\u{200B}", "\u{FE0F}", "📸", "💸", "❤", "🏽",
        "\u{301}", "ǅ", "ﬁ", "İ", "\n", "\u{0}", "𝟙", "½", "²",
    ]);
    prop_oneof![
        any::<String>(),
        prop::collection::vec(pieces, 0..40).prop_map(|p| p.concat()),
    ]
}

fn check_offsets(text: &str, n: &Normalized) -> Result<(), TestCaseError> {
    let len = n.as_bytes().len();
    let mut spans = vec![(0, len), (1, len.saturating_sub(1))];
    spans.extend((0..len).map(|i| (i, i)));
    let mut at = 0;
    for tok in n.as_str().split(' ') {
        if !tok.is_empty() {
            spans.push((at, at + tok.len()));
        }
        at += tok.len() + 1;
    }
    for (start, end) in spans {
        let (s, e) = n.original_span(start, end);
        prop_assert!(
            s <= e && e <= text.len(),
            "{start}..{end} -> {s}..{e} of {text:?}"
        );
        prop_assert!(
            text.is_char_boundary(s) && text.is_char_boundary(e),
            "{start}..{end} -> {s}..{e}, not char boundaries of {text:?}"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(2048))]

    #[test]
    fn normaliser_offsets_lie_on_char_boundaries_of_the_original(text in chat_text()) {
        let mut n = Normalized::new();
        normalize(&text, &mut n);
        let out = n.as_bytes();
        prop_assert!(out.first() == Some(&b' ') && out.last() == Some(&b' '));
        prop_assert!(
            out.iter().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b' ')),
            "{:?}", n.as_str()
        );
        check_offsets(&text, &n)?;
    }
}

// ---- Write-ahead log ----------------------------------------------------------------

/// The log key of these properties.
const WAL_KEY: &[u8] = b"property key 16b";

/// A record as the log writes it (`server::wal`): `len u32 | crc32 u32 | seq u64 | kind u8
/// | payload`, little endian, the kind flagged as keyed, the CRC over key, seq, kind and
/// payload.
fn wal_record(seq: u64, kind: Kind, payload: &[u8]) -> Vec<u8> {
    let kind = kind as u8 | 0x80;
    let mut h = crc32fast::Hasher::new();
    h.update(WAL_KEY);
    h.update(&seq.to_le_bytes());
    h.update(&[kind]);
    h.update(payload);
    let mut out = Vec::new();
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&h.finalize().to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.push(kind);
    out.extend_from_slice(payload);
    out
}

fn kind() -> impl Strategy<Value = Kind> {
    prop::sample::select(vec![
        Kind::Event,
        Kind::Forget,
        Kind::Suppress,
        Kind::Void,
        Kind::Probe,
    ])
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn parse_segment_never_panics(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        last_seq in any::<u64>(),
    ) {
        let seg = parse_segment(&bytes, last_seq, WAL_KEY);
        prop_assert!(seg.valid_end as usize <= bytes.len());
        let records: u64 = seg.records.iter().map(|r| 17 + r.payload.len() as u64).sum();
        prop_assert!(seg.skipped + records <= seg.valid_end);
    }

    #[test]
    fn every_record_survives_garbage_between_records(
        last_seq in 0u64..1 << 40,
        records in prop::collection::vec(
            (kind(), prop::collection::vec(any::<u8>(), 0..64), 1u64..1000),
            1..12,
        ),
        garbage in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..48), 12),
        trailing in prop::collection::vec(any::<u8>(), 0..32),
    ) {
        let mut bytes = Vec::new();
        let mut expected = Vec::new();
        let mut seq = last_seq;
        let mut garbage_between = 0u64;
        for (i, (kind, payload, step)) in records.into_iter().enumerate() {
            // Garbage before a record (the first one included), never after the last.
            bytes.extend_from_slice(&garbage[i]);
            garbage_between += garbage[i].len() as u64;
            seq += step;
            bytes.extend_from_slice(&wal_record(seq, kind, &payload));
            expected.push((seq, kind, payload));
        }
        let valid_end = bytes.len() as u64;
        bytes.extend_from_slice(&trailing);
        let seg = parse_segment(&bytes, last_seq, WAL_KEY);
        let got: Vec<_> = seg.records.into_iter().map(|r| (r.seq, r.kind, r.payload)).collect();
        prop_assert_eq!(got, expected);
        prop_assert_eq!(seg.valid_end, valid_end);
        prop_assert_eq!(seg.skipped, garbage_between);
    }
}

// ---- Checkpoints --------------------------------------------------------------------

/// A valid checkpoint of the current version with two parts, in the layout of
/// `server::checkpoint`.
fn valid_checkpoint() -> Vec<u8> {
    let (k1, _) = PairKey::of("t", "a", "b");
    let (k2, _) = PairKey::of("u", "c", "d");
    let mut s1 = PairState::new(1_000);
    s1.tenant = tenant_hash("t");
    s1.record(0, Signal::MoneyDemand.bit(), 61_000);
    s1.record(1, Signal::Secrecy.bit(), 90_000);
    let mut s2 = PairState::new(5_000);
    s2.tenant = tenant_hash("u");
    let parts = [
        checkpoint::encode_pairs([(&k1, &s1)].into_iter()),
        checkpoint::encode_pairs([(&k2, &s2)].into_iter()),
    ];
    let mut buf = checkpoint::MAGIC.to_vec();
    for n in [42u64, 7, parts.len() as u64] {
        buf.extend_from_slice(&n.to_le_bytes());
    }
    for p in &parts {
        buf.extend_from_slice(&(p.len() as u64).to_le_bytes());
        buf.extend_from_slice(p);
    }
    let crc = crc32fast::hash(&buf);
    buf.extend_from_slice(&crc.to_le_bytes());
    buf
}

#[derive(Debug, Clone)]
enum Mutation {
    /// XOR a byte.
    Flip(prop::sample::Index, u8),
    /// Overwrite 8 bytes (a length or count field, when it lands on one).
    Word(prop::sample::Index, u64),
    Truncate(prop::sample::Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<prop::sample::Index>(), 1..=255u8).prop_map(|(i, x)| Mutation::Flip(i, x)),
        (
            any::<prop::sample::Index>(),
            prop_oneof![
                any::<u64>(),
                Just(u64::MAX),
                Just(u64::MAX - 40),
                0..4096u64
            ]
        )
            .prop_map(|(i, w)| Mutation::Word(i, w)),
        any::<prop::sample::Index>().prop_map(Mutation::Truncate),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    match m {
        // Nothing to flip once an earlier mutation truncated the file to nothing.
        Mutation::Flip(_, _) if bytes.is_empty() => {}
        Mutation::Flip(i, x) => {
            let at = i.index(bytes.len());
            bytes[at] ^= x;
        }
        Mutation::Word(i, w) => {
            if bytes.len() >= 8 {
                let at = i.index(bytes.len() - 7);
                bytes[at..at + 8].copy_from_slice(&w.to_le_bytes());
            }
        }
        Mutation::Truncate(i) => {
            let at = i.index(bytes.len() + 1);
            bytes.truncate(at);
        }
    }
}

fn read_file(dir: &std::path::Path, bytes: &[u8]) -> std::io::Result<Option<checkpoint::Restored>> {
    std::fs::write(dir.join("checkpoint.bin"), bytes)?;
    checkpoint::read(dir)
}

#[test]
fn checkpoint_read_never_panics_on_mutated_files() {
    let dir = std::env::temp_dir().join(format!("pw-properties-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let valid = valid_checkpoint();
    let back = read_file(&dir, &valid).unwrap().unwrap();
    assert_eq!((back.seq, back.aux, back.pair_count()), (42, 7, 2));
    let mut runner = proptest::test_runner::TestRunner::new(config(2048));
    let strategy = (prop::collection::vec(mutation(), 1..4), any::<bool>());
    let result = runner.run(&strategy, |(mutations, fix_crc)| {
        let mut bytes = valid.clone();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        if fix_crc && bytes.len() >= 4 {
            // Past the checksum: the header and the parts behind it are parsed.
            let body = bytes.len() - 4;
            let crc = crc32fast::hash(&bytes[..body]);
            bytes[body..].copy_from_slice(&crc.to_le_bytes());
        }
        let read = read_file(&dir, &bytes);
        if !fix_crc && bytes != valid {
            if let [Mutation::Flip(..)] = mutations.as_slice() {
                // CRC32 catches every single-byte error.
                prop_assert!(read.is_err(), "a flipped byte went unnoticed");
            }
        }
        Ok(())
    });
    let _ = std::fs::remove_dir_all(&dir);
    result.unwrap();
}
