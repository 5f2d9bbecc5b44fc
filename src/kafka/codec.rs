//! What goes in and out of the topics: event records decoded (JSON or protobuf, chosen
//! per topic and overridden by a `content-type` header), the pair key that partitions
//! them, dead-letter and alert headers, and the state changelog's records.

use crate::detect::alert::Alert;
use crate::detect::event::{Event, Limits};
use crate::detect::state::{PairKey, PairState};
use crate::detect::state_past::{PairStateV1, PairStateV2, PairStateV3};
use crate::proto::{event_from_proto, pb};
use prost::Message as _;
use rdkafka::message::{Header, Headers, OwnedHeaders};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

pub const CONTENT_TYPE: &str = "content-type";
pub const JSON: &str = "application/json";
pub const PROTOBUF: &str = "application/x-protobuf";
/// Changelog and tombstone header: the input offset the record's state includes.
pub const OFFSET_HEADER: &str = "pairwatch-offset";
/// Changelog header: the pair's tenant hash ([`PairState::tenant`], decimal), which
/// the serialised state does not hold. Absent (an older writer): tenant unknown (0).
pub const TENANT_HEADER: &str = "pairwatch-tenant-hash";
/// The changelog record format written: 4 since signal sets take 64 bits and a fifth
/// pattern has its raised slot.
const CHANGELOG_VERSION: u8 = 4;
/// Records of the state's earlier stored forms ([`PairStateV3`], [`PairStateV2`],
/// [`PairStateV1`]), still read.
const CHANGELOG_V3: u8 = 3;
const CHANGELOG_V2: u8 = 2;
const CHANGELOG_V1: u8 = 1;
/// Dead-letter reason of an input record larger than a dead letter may be.
pub const RECORD_TOO_LARGE: &str = "record_too_large";
/// Dead-letter headers of a record too large to carry whole: the size of its value and
/// the value's SHA-256 (lowercase hex); the record itself stays in its input topic.
pub const DLQ_VALUE_BYTES: &str = "pairwatch-dlq-value-bytes";
pub const DLQ_VALUE_SHA256: &str = "pairwatch-dlq-value-sha256";
/// How many original headers a too-large record's dead letter left out, if any.
pub const DLQ_HEADERS_DROPPED: &str = "pairwatch-dlq-headers-dropped";
/// The size of the original key, when a too-large record's dead letter cut it.
pub const DLQ_KEY_BYTES: &str = "pairwatch-dlq-key-bytes";
/// Longest `pairwatch-dlq-detail`, in bytes.
const DETAIL_MAX: usize = 1024;
/// What a too-large record's dead letter keeps of its key and original headers, at most.
const KEY_KEPT_MAX: usize = 1024;
const HEADERS_KEPT_MAX: usize = 16 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Protobuf,
}

impl Format {
    pub fn parse(s: &str) -> Format {
        if s == "protobuf" {
            Format::Protobuf
        } else {
            Format::Json
        }
    }

    /// The name `parse` reads (`kafka.events_format`).
    pub fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Protobuf => "protobuf",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => JSON,
            Format::Protobuf => PROTOBUF,
        }
    }
}

/// An event as a record value in `format`.
pub fn encode_event(event: &Event, format: Format) -> Vec<u8> {
    match format {
        Format::Json => event.to_json().into_bytes(),
        Format::Protobuf => pb::ChatEvent::from(event).encode_to_vec(),
    }
}

/// Why a record went to the dead-letter topic: a stable code and a precise message.
#[derive(Debug, PartialEq, Eq)]
pub struct Rejection {
    pub reason: &'static str,
    pub detail: String,
}

impl Rejection {
    pub fn new(reason: &'static str, detail: impl Into<String>) -> Self {
        Rejection {
            reason,
            detail: detail.into(),
        }
    }
}

fn header_bytes(h: &Header<'_, &[u8]>) -> usize {
    h.key.len() + h.value.map_or(0, <[u8]>::len)
}

/// The bytes of a record: key, value, and every header's name and value.
pub fn record_bytes(
    key: Option<&[u8]>,
    payload: Option<&[u8]>,
    headers: Option<&impl Headers>,
) -> usize {
    let headers = headers.map_or(0, |h| h.iter().map(|h| header_bytes(&h)).sum());
    key.map_or(0, <[u8]>::len) + payload.map_or(0, <[u8]>::len) + headers
}

/// Rejects a record larger than `limit` bytes (key, value and headers), whatever it
/// holds: no valid event is that large (its text is bounded by `limits.max_text_bytes`),
/// and its dead letter could not carry it whole (see [`dead_letter`]).
pub fn check_size(
    key: Option<&[u8]>,
    payload: Option<&[u8]>,
    headers: Option<&impl Headers>,
    limit: usize,
) -> Result<(), Rejection> {
    let n = record_bytes(key, payload, headers);
    if n <= limit {
        return Ok(());
    }
    Err(Rejection::new(
        RECORD_TOO_LARGE,
        format!(
            "record of {n} bytes (key, value, headers) is over the {limit} bytes a dead letter \
             may carry (kafka.dlq_max_value_bytes): the dead letter holds a prefix of the value, \
             its size and SHA-256; the record stays in its topic at the offset given"
        ),
    ))
}

/// The format a record declares, or the topic's.
fn format_of(headers: Option<&impl Headers>, default: Format) -> Result<Format, Rejection> {
    let Some(value) = headers.and_then(|h| {
        h.iter()
            .find(|h| h.key.eq_ignore_ascii_case(CONTENT_TYPE))
            .and_then(|h| h.value)
    }) else {
        return Ok(default);
    };
    let v = String::from_utf8_lossy(value);
    let mime = v
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match mime.as_str() {
        "application/json" => Ok(Format::Json),
        "application/x-protobuf" | "application/protobuf" | "application/vnd.google.protobuf" => {
            Ok(Format::Protobuf)
        }
        _ => Err(Rejection::new(
            "unknown_content_type",
            format!("content-type {mime:?} is neither {JSON} nor {PROTOBUF}"),
        )),
    }
}

/// Header of a control record on the input topic: what it asks of detection.
pub const CONTROL_HEADER: &str = "pairwatch-control";
/// A false positive to apply to the pair state (JSON `Suppress`).
pub const CONTROL_SUPPRESS: &str = "suppress";
/// A user to erase from the partition's pairs (JSON [`EraseRequest`]).
pub const CONTROL_ERASE: &str = "erase";
/// Header of a record on the decisions topic that is not an audit line: `erase` (an
/// erasure asked, for every desk) or `erased` (one input partition's part done).
pub const RECORD_HEADER: &str = "pairwatch-record";
pub const RECORD_ERASE: &str = "erase";
pub const RECORD_ERASED: &str = "erased";

/// `ForgetUser` in Kafka mode, as sent to every input partition.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct EraseRequest {
    /// Names the request in the acknowledgements.
    pub request: String,
    pub tenant: String,
    pub user: String,
}

/// The erasure as announced to the desks: the user only as [`subject`].
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct EraseNotice {
    pub request: String,
    pub subject: String,
    /// Per input partition, the offset of the erase record: alerts raised by records
    /// before it are erased, later ones (the user's new activity) are not.
    pub offsets: BTreeMap<i32, i64>,
}

/// One input partition's erasure done: the pairs it removed.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Erased {
    pub request: String,
    pub partition: i32,
    /// The input offset of the erase record: local checkpoints of the partition at or
    /// before it may still hold the user.
    pub offset: i64,
    pub pairs: u32,
}

/// The headers of a control record on the input topic asking `kind` (`suppress`,
/// `erase`).
pub fn control_headers(kind: &str) -> OwnedHeaders {
    OwnedHeaders::new()
        .insert(Header {
            key: CONTENT_TYPE,
            value: Some(JSON),
        })
        .insert(Header {
            key: CONTROL_HEADER,
            value: Some(kind),
        })
}

/// The headers of a decisions-topic record of `kind` (`erase`, `erased`).
pub fn record_headers(kind: &str) -> OwnedHeaders {
    OwnedHeaders::new()
        .insert(Header {
            key: CONTENT_TYPE,
            value: Some(JSON),
        })
        .insert(Header {
            key: RECORD_HEADER,
            value: Some(kind),
        })
}

/// The key of an alert's audit lines on the decisions topic: hex SHA-256 of its pair
/// key, the same for every line of the alert, naming no user.
pub fn pair_digest(a: &Alert) -> String {
    crate::detect::digest::hex(&Sha256::digest(alert_pair_key(a).as_bytes()))
}

/// A user of a tenant as the desks' records name it: hex SHA-256 of `tenant NUL user`.
pub fn subject(tenant: &str, user: &str) -> String {
    let mut h = Sha256::new();
    h.update(tenant.as_bytes());
    h.update([0]);
    h.update(user.as_bytes());
    crate::detect::digest::hex(&h.finalize())
}
/// Header of an alert record: the input partition that owns its pair.
pub const PARTITION_HEADER: &str = "pairwatch-partition";
/// Header of an alert record: the input offset of the record that raised it.
pub const INPUT_OFFSET_HEADER: &str = "pairwatch-input-offset";

/// What a control record asks of detection.
pub enum Control {
    Suppress(crate::server::pipeline::Suppress),
    Erase(EraseRequest),
}

/// The control record this is, if it is one (`None`: an event record).
pub fn decode_control(
    payload: Option<&[u8]>,
    headers: Option<&impl Headers>,
) -> Option<Result<Control, Rejection>> {
    let kind = headers?
        .iter()
        .find(|h| h.key == CONTROL_HEADER)
        .map(|h| h.value.unwrap_or_default())?;
    Some(match kind {
        k if k == CONTROL_SUPPRESS.as_bytes() => payload
            .and_then(|p| serde_json::from_slice(p).ok())
            .map(Control::Suppress)
            .ok_or_else(|| {
                Rejection::new("bad_control", "a suppress control record without its pair")
            }),
        k if k == CONTROL_ERASE.as_bytes() => payload
            .and_then(|p| serde_json::from_slice(p).ok())
            .map(Control::Erase)
            .ok_or_else(|| {
                Rejection::new("bad_control", "an erase control record without its user")
            }),
        other => Err(Rejection::new(
            "bad_control",
            format!(
                "unknown control record {:?}",
                String::from_utf8_lossy(other)
            ),
        )),
    })
}

/// Decodes and validates one event record.
pub fn decode(
    payload: Option<&[u8]>,
    headers: Option<&impl Headers>,
    default: Format,
    limits: &Limits,
) -> Result<Event, Rejection> {
    let format = format_of(headers, default)?;
    let bytes = match payload {
        Some(b) if !b.is_empty() => b,
        _ => return Err(Rejection::new("empty_payload", "record has no payload")),
    };
    let event = match format {
        Format::Json => {
            let text = std::str::from_utf8(bytes)
                .map_err(|e| Rejection::new("not_utf8", format!("payload is not UTF-8: {e}")))?;
            Event::from_json(text, limits)
        }
        Format::Protobuf => {
            let pb = pb::ChatEvent::decode(bytes).map_err(|e| {
                Rejection::new("bad_protobuf", format!("not a pairwatch.v1.ChatEvent: {e}"))
            })?;
            event_from_proto(pb, limits)
        }
    };
    event.map_err(|e| Rejection::new(e.reason(), e.to_string()))
}

/// The message key that places a pair's events in one partition: `tenant/min/max`.
pub fn pair_key(tenant: &str, a: &str, b: &str) -> String {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    format!("{tenant}/{lo}/{hi}")
}

pub fn event_pair_key(e: &Event) -> String {
    pair_key(&e.tenant, &e.sender.user_id, &e.recipient.user_id)
}

pub fn alert_pair_key(a: &Alert) -> String {
    pair_key(&a.tenant, &a.suspect.user_id, &a.target.user_id)
}

/// Checks the record's key is the event's pair key (so the pair has one partition).
pub fn check_key(key: Option<&[u8]>, event: &Event) -> Result<(), Rejection> {
    let expected = event_pair_key(event);
    if key == Some(expected.as_bytes()) {
        Ok(())
    } else {
        Err(Rejection::new(
            "key_not_pair",
            "record key is not the event's pair key `tenant/min(user)/max(user)`; \
             set kafka.keyed_by_pair = false to have pairwatch re-key the topic",
        ))
    }
}

/// The original headers plus the reason and origin of a dead letter.
pub fn dead_letter_headers(
    original: Option<&impl Headers>,
    why: &Rejection,
    topic: &str,
    partition: i32,
    offset: i64,
) -> OwnedHeaders {
    let mut h = OwnedHeaders::new();
    if let Some(orig) = original {
        for o in orig.iter() {
            h = h.insert(Header {
                key: o.key,
                value: o.value,
            });
        }
    }
    origin_headers(h, why, topic, partition, offset)
}

/// `s` cut to at most `max` bytes, on a character boundary.
fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn origin_headers(
    mut h: OwnedHeaders,
    why: &Rejection,
    topic: &str,
    partition: i32,
    offset: i64,
) -> OwnedHeaders {
    let partition = partition.to_string();
    let offset = offset.to_string();
    let at = crate::detect::time::format_rfc3339(crate::detect::time::now_millis());
    for (k, v) in [
        ("pairwatch-dlq-reason", why.reason),
        ("pairwatch-dlq-detail", cut(&why.detail, DETAIL_MAX)),
        ("pairwatch-dlq-topic", topic),
        ("pairwatch-dlq-partition", partition.as_str()),
        ("pairwatch-dlq-offset", offset.as_str()),
        ("pairwatch-dlq-at", at.as_str()),
    ] {
        h = h.insert(Header {
            key: k,
            value: Some(v),
        });
    }
    h
}

pub use crate::detect::digest::hex;

/// A dead letter, ready to produce.
pub struct DeadLetter<'a> {
    pub key: &'a [u8],
    pub value: Option<&'a [u8]>,
    pub headers: OwnedHeaders,
}

/// The dead letter of a record: the record as it came (key, value, headers) plus the
/// reason and origin in headers, if the record is at most `limit` bytes
/// ([`record_bytes`]). A larger one could not be produced (the producer refuses a record
/// over its `message.max.bytes`, and the batch would fail for ever): its dead letter
/// carries at most `limit` bytes of it (the key's first KiB, the original headers that
/// fit in 16 KiB, and a prefix of the value), plus the value's size and SHA-256. The
/// full record stays in the input topic at the partition and offset the headers give.
#[allow(clippy::too_many_arguments)]
pub fn dead_letter<'a>(
    key: Option<&'a [u8]>,
    payload: Option<&'a [u8]>,
    original: Option<&impl Headers>,
    why: &Rejection,
    topic: &str,
    partition: i32,
    offset: i64,
    limit: usize,
) -> DeadLetter<'a> {
    let key = key.unwrap_or_default();
    if record_bytes(Some(key), payload, original) <= limit {
        return DeadLetter {
            key,
            value: payload,
            headers: dead_letter_headers(original, why, topic, partition, offset),
        };
    }
    let key_kept = key.len().min(KEY_KEPT_MAX).min(limit / 16);
    let budget = HEADERS_KEPT_MAX.min(limit / 4);
    let (mut h, mut used, mut dropped) = (OwnedHeaders::new(), 0, 0);
    for o in original.iter().flat_map(|h| h.iter()) {
        let n = header_bytes(&o);
        if used + n <= budget {
            h = h.insert(Header {
                key: o.key,
                value: o.value,
            });
            used += n;
        } else {
            dropped += 1;
        }
    }
    let value = payload.unwrap_or_default();
    let room = limit.saturating_sub(key_kept + used);
    let prefix = &value[..value.len().min(room)];
    let mut h = origin_headers(h, why, topic, partition, offset);
    let mut extra = vec![
        (DLQ_VALUE_BYTES, value.len().to_string()),
        (DLQ_VALUE_SHA256, hex(&Sha256::digest(value))),
    ];
    if dropped > 0 {
        extra.push((DLQ_HEADERS_DROPPED, dropped.to_string()));
    }
    if key_kept < key.len() {
        extra.push((DLQ_KEY_BYTES, key.len().to_string()));
    }
    for (k, v) in &extra {
        h = h.insert(Header {
            key: k,
            value: Some(v.as_str()),
        });
    }
    DeadLetter {
        key: &key[..key_kept],
        value: payload.map(|_| prefix),
        headers: h,
    }
}

/// Headers on an alert record, for routing without parsing the JSON.
pub fn alert_headers(a: &Alert, input_partition: i32, input_offset: i64) -> OwnedHeaders {
    let mut h = OwnedHeaders::new();
    let update = a.update.as_ref().map(|u| u.kind.as_str());
    let owner = input_partition.to_string();
    let offset = input_offset.to_string();
    for (k, v) in [
        (CONTENT_TYPE, Some(JSON)),
        ("pairwatch-alert-id", Some(a.alert_id.as_str())),
        ("pairwatch-priority", Some(a.priority.as_str())),
        ("pairwatch-pattern", Some(a.pattern.as_str())),
        ("pairwatch-tenant", Some(a.tenant.as_str())),
        // On an update only: what changed (`DEADLINE_PASSED`, ...).
        ("pairwatch-update", update),
        // The input partition that owns the pair: where the desk sends its decisions.
        (PARTITION_HEADER, Some(owner.as_str())),
        (INPUT_OFFSET_HEADER, Some(offset.as_str())),
    ] {
        if let Some(v) = v {
            h = h.insert(Header {
                key: k,
                value: Some(v),
            });
        }
    }
    h
}

/// The changelog key of a pair: its 128-bit hash, big-endian.
pub fn changelog_key(key: &PairKey) -> [u8; 16] {
    key.0.to_be_bytes()
}

pub fn offset_header(offset: i64) -> OwnedHeaders {
    OwnedHeaders::new().insert(Header {
        key: OFFSET_HEADER,
        value: Some(offset.to_string().as_str()),
    })
}

/// The headers of a changelog record holding a state of tenant `tenant` (none while
/// the tenant is unknown).
pub fn state_headers(tenant: u64) -> Option<OwnedHeaders> {
    (tenant != 0).then(|| {
        OwnedHeaders::new().insert(Header {
            key: TENANT_HEADER,
            value: Some(tenant.to_string().as_str()),
        })
    })
}

/// A changelog value: format version, then the input offset and the state.
pub fn encode_state(offset: i64, state: &PairState) -> Vec<u8> {
    let mut v = vec![CHANGELOG_VERSION];
    // Serialising into a Vec cannot fail for these types.
    let _ = bincode::serialize_into(&mut v, &(offset, state));
    v
}

/// The offset and state of a changelog value's body, the state stored in form `S`.
fn state_as<S: serde::de::DeserializeOwned + Into<PairState>>(
    body: &[u8],
) -> bincode::Result<(i64, PairState)> {
    let (offset, s): (i64, S) = bincode::deserialize(body)?;
    Ok((offset, s.into()))
}

/// One changelog record read back: the pair, and its state (None: deleted) as of the
/// input offset, its tenant set from the record's [`TENANT_HEADER`].
pub struct StateRecord {
    pub key: PairKey,
    pub offset: i64,
    pub state: Option<PairState>,
}

pub fn decode_state(
    key: Option<&[u8]>,
    payload: Option<&[u8]>,
    headers: Option<&impl Headers>,
) -> Result<StateRecord, String> {
    let key: [u8; 16] = key
        .and_then(|k| k.try_into().ok())
        .ok_or("changelog key is not a 16-byte pair key")?;
    let key = PairKey(u128::from_be_bytes(key));
    match payload {
        Some(p) if !p.is_empty() => {
            let bad = |e: bincode::Error| format!("changelog record: {e}");
            let body = &p[1..];
            let (offset, mut state) = match p[0] {
                CHANGELOG_VERSION => state_as::<PairState>(body),
                CHANGELOG_V3 => state_as::<PairStateV3>(body),
                CHANGELOG_V2 => state_as::<PairStateV2>(body),
                CHANGELOG_V1 => state_as::<PairStateV1>(body),
                v => return Err(format!("changelog record of unknown version {v}")),
            }
            .map_err(bad)?;
            state.tenant = headers
                .and_then(|h| h.iter().find(|h| h.key == TENANT_HEADER))
                .and_then(|h| h.value)
                .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
                .unwrap_or(0);
            Ok(StateRecord {
                key,
                offset,
                state: Some(state),
            })
        }
        _ => {
            let offset = headers
                .and_then(|h| h.iter().find(|h| h.key == OFFSET_HEADER))
                .and_then(|h| h.value)
                .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
                .ok_or("changelog tombstone without its offset header")?;
            Ok(StateRecord {
                key,
                offset,
                state: None,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::signal::Signal;

    const EVENT: &str = r#"{"event_id":"e1","tenant":"t","sent_at":"2026-11-22T10:00:00Z",
        "sender":{"user_id":"zed","age_band":"ADULT"},"recipient":{"user_id":"amy","age_band":"UNDER_13"},
        "message":{"text":"hi"}}"#;

    fn headers(ct: &str) -> OwnedHeaders {
        OwnedHeaders::new().insert(Header {
            key: "Content-Type",
            value: Some(ct),
        })
    }

    #[test]
    fn json_and_protobuf_decode_by_topic_format_or_header() {
        let limits = Limits::default();
        let none: Option<&OwnedHeaders> = None;
        let e = decode(Some(EVENT.as_bytes()), none, Format::Json, &limits).unwrap();
        assert_eq!(event_pair_key(&e), "t/amy/zed");
        let proto = pb::ChatEvent::from(&e).encode_to_vec();
        let back = decode(Some(&proto), none, Format::Protobuf, &limits).unwrap();
        assert_eq!(back, e);
        // The header wins over the topic's format.
        let h = headers("application/x-protobuf");
        assert_eq!(
            decode(Some(&proto), Some(&h), Format::Json, &limits).unwrap(),
            e
        );
        let h = headers("application/json; charset=utf-8");
        assert!(decode(Some(EVENT.as_bytes()), Some(&h), Format::Protobuf, &limits).is_ok());
    }

    #[test]
    fn every_bad_record_has_a_precise_reason() {
        let limits = Limits::default();
        let none: Option<&OwnedHeaders> = None;
        let reason = |p: Option<&[u8]>, h: Option<&OwnedHeaders>, f| {
            decode(p, h, f, &limits).unwrap_err().reason
        };
        assert_eq!(reason(None, none, Format::Json), "empty_payload");
        assert_eq!(reason(Some(b"{"), none, Format::Json), "bad_json");
        assert_eq!(reason(Some(&[0xff, 0xfe]), none, Format::Json), "not_utf8");
        assert_eq!(
            reason(Some(&[0xff, 0xff, 0xff]), none, Format::Protobuf),
            "bad_protobuf"
        );
        let h = headers("text/csv");
        assert_eq!(
            reason(Some(EVENT.as_bytes()), Some(&h), Format::Json),
            "unknown_content_type"
        );
        let same = EVENT.replace("\"amy\"", "\"zed\"");
        assert_eq!(
            reason(Some(same.as_bytes()), none, Format::Json),
            "same_user"
        );
        let e = decode(Some(EVENT.as_bytes()), none, Format::Json, &limits).unwrap();
        assert!(check_key(Some(b"t/amy/zed"), &e).is_ok());
        assert_eq!(
            check_key(Some(b"conversation-9"), &e).unwrap_err().reason,
            "key_not_pair"
        );
        assert_eq!(check_key(None, &e).unwrap_err().reason, "key_not_pair");
    }

    #[test]
    fn dead_letters_keep_the_original_headers_and_say_why() {
        let orig = headers("text/csv");
        let why = Rejection::new("unknown_content_type", "nope");
        let h = dead_letter_headers(Some(&orig), &why, "pairwatch.events", 3, 41);
        let get = |k: &str| {
            h.iter()
                .find(|x| x.key == k)
                .and_then(|x| x.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        assert_eq!(get("Content-Type").as_deref(), Some("text/csv"));
        assert_eq!(
            get("pairwatch-dlq-reason").as_deref(),
            Some("unknown_content_type")
        );
        assert_eq!(get("pairwatch-dlq-partition").as_deref(), Some("3"));
        assert_eq!(get("pairwatch-dlq-offset").as_deref(), Some("41"));
        assert_eq!(
            get("pairwatch-dlq-topic").as_deref(),
            Some("pairwatch.events")
        );
    }

    #[test]
    fn a_record_too_large_is_dead_lettered_as_a_bounded_prefix_with_its_digest() {
        let limit = 4096;
        let value: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let key = b"t/amy/zed".as_slice();
        let orig = headers("application/json").insert(Header {
            key: "big",
            value: Some(&[7u8; 2000][..]),
        });
        let why = check_size(Some(key), Some(&value), Some(&orig), limit).unwrap_err();
        assert_eq!(why.reason, RECORD_TOO_LARGE);
        assert!(why.detail.len() <= DETAIL_MAX);
        let dl = dead_letter(
            Some(key),
            Some(&value),
            Some(&orig),
            &why,
            "pairwatch.events",
            2,
            9,
            limit,
        );
        let get = |k: &str| {
            dl.headers
                .iter()
                .find(|x| x.key == k)
                .and_then(|x| x.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        let v = dl.value.unwrap();
        assert!(v.len() + dl.key.len() <= limit && !v.is_empty());
        assert_eq!(v, &value[..v.len()]);
        assert_eq!(dl.key, key);
        assert_eq!(get(DLQ_VALUE_BYTES).as_deref(), Some("10000"));
        assert_eq!(get(DLQ_VALUE_SHA256).unwrap(), hex(&Sha256::digest(&value)));
        assert_eq!(get(DLQ_VALUE_SHA256).unwrap().len(), 64);
        // The content type fits in the header budget (limit / 4); the 2000-byte one not.
        assert_eq!(get("Content-Type").as_deref(), Some("application/json"));
        assert_eq!(get(DLQ_HEADERS_DROPPED).as_deref(), Some("1"));
        assert_eq!(get("pairwatch-dlq-offset").as_deref(), Some("9"));
        assert_eq!(
            get("pairwatch-dlq-reason").as_deref(),
            Some(RECORD_TOO_LARGE)
        );
        // At the limit: whole, as it came.
        let none: Option<&OwnedHeaders> = None;
        assert!(check_size(Some(key), Some(&value[..limit - key.len()]), none, limit).is_ok());
        let small = dead_letter(Some(key), Some(&value[..100]), none, &why, "t", 0, 1, limit);
        assert_eq!(small.value, Some(&value[..100]));
        assert!(small.headers.iter().all(|h| h.key != DLQ_VALUE_SHA256));
        // A huge key is cut too; what the dead letter carries stays within the limit.
        let long_key = vec![b'k'; 9000];
        let dl = dead_letter(Some(&long_key), Some(&value), none, &why, "t", 0, 1, limit);
        assert_eq!(dl.key.len(), limit / 16);
        assert!(dl.key.len() + dl.value.unwrap().len() <= limit);
        assert_eq!(hex(&[0, 15, 16, 255]), "000f10ff");
        assert_eq!(cut("héllo", 2), "h");
    }

    #[test]
    fn changelog_records_round_trip_with_their_offset() {
        let (k, _) = PairKey::of("t", "a", "b");
        let mut s = PairState::new(1000);
        s.record(1, Signal::MoneyDemand.bit(), 2000);
        let none: Option<&OwnedHeaders> = None;
        let r = decode_state(Some(&changelog_key(&k)), Some(&encode_state(77, &s)), none).unwrap();
        assert_eq!((r.key, r.offset, r.state), (k, 77, Some(s.clone())));
        // The tenant travels in a header; without it (an older writer) it is unknown.
        s.tenant = crate::detect::state::tenant_hash("t");
        let th = state_headers(s.tenant).unwrap();
        let r = decode_state(
            Some(&changelog_key(&k)),
            Some(&encode_state(77, &s)),
            Some(&th),
        )
        .unwrap();
        assert_eq!(r.state.as_ref().map(|s| s.tenant), Some(s.tenant));
        assert_eq!(r.state, Some(s.clone()));
        assert!(state_headers(0).is_none());
        let h = offset_header(78);
        let t = decode_state(Some(&changelog_key(&k)), None, Some(&h)).unwrap();
        assert_eq!((t.offset, t.state), (78, None));
        assert!(decode_state(Some(b"short"), None, Some(&h)).is_err());
        assert!(decode_state(Some(&changelog_key(&k)), Some(&[9, 1]), none).is_err());
    }

    #[test]
    fn changelog_records_of_earlier_state_forms_still_read() {
        let (k, _) = PairKey::of("t", "a", "b");
        let mut s = PairState::new(1000);
        s.record(0, Signal::ImageRequest.bit(), 2000);
        let mut v1 = vec![CHANGELOG_V1];
        bincode::serialize_into(&mut v1, &(5i64, PairStateV1::of(&s))).unwrap();
        let r = decode_state(Some(&changelog_key(&k)), Some(&v1), None::<&OwnedHeaders>).unwrap();
        assert_eq!((r.offset, r.state), (5, Some(s.clone())));
        let mut v2 = vec![CHANGELOG_V2];
        bincode::serialize_into(&mut v2, &(6i64, PairStateV2::of(&s))).unwrap();
        let r = decode_state(Some(&changelog_key(&k)), Some(&v2), None::<&OwnedHeaders>).unwrap();
        assert_eq!((r.offset, r.state), (6, Some(s)));
        // The third form holds everything but the signals and pattern added since: a
        // state with evidence and a raised alert's details reads back whole.
        let s = crate::detect::state_past::samples::third_form();
        let mut v3 = vec![CHANGELOG_V3];
        bincode::serialize_into(&mut v3, &(7i64, PairStateV3::of(&s))).unwrap();
        let r = decode_state(Some(&changelog_key(&k)), Some(&v3), None::<&OwnedHeaders>).unwrap();
        let back = r.state.unwrap();
        let a = back.active.as_ref().unwrap();
        assert!(a.evidence[0].signals.contains(Signal::MoneyDemand));
        assert!(a
            .raised
            .iter()
            .flatten()
            .any(|raised| raised.alert.is_some()));
        assert_eq!((r.offset, back), (7, s));
    }

    #[test]
    fn changelog_records_keep_the_signals_and_patterns_added_last() {
        use crate::detect::rules::Pattern;
        let (k, _) = PairKey::of("t", "a", "b");
        let s = crate::detect::state_past::samples::current_form();
        let v = encode_state(8, &s);
        assert_eq!(v[0], 4);
        let r = decode_state(Some(&changelog_key(&k)), Some(&v), None::<&OwnedHeaders>).unwrap();
        let back = r.state.unwrap();
        let a = back.active.as_ref().unwrap();
        assert!(a.evidence[1].signals.contains(Signal::KnownAbuseMaterial));
        assert!(a.raised[Pattern::KnownAbuseMaterial as usize].is_some());
        assert_eq!((r.offset, back), (8, s));
    }
}
