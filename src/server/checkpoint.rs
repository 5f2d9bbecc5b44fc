//! Checkpoints of the pair state: every shard's pairs at one log position, written to a
//! temporary file, fsynced, then renamed over `checkpoint.bin`, so a crash leaves either
//! the old checkpoint or the new one. Format: magic (with the format version), log
//! position, an auxiliary position (Kafka mode: where the state changelog resumes),
//! number of parts, then per shard a length-prefixed bincode list of
//! `(PairKey, tenant hash, PairState)`, and a CRC32 of everything before it.
//!
//! Earlier versions are still read: 05 (the state in its third stored form,
//! [`PairStateV3`]: 32-bit signal sets, four raised slots), 04 (its second stored form,
//! [`PairStateV2`]), 03 (its first stored form, [`PairStateV1`]) and 02 (entries
//! `(PairKey, PairStateV1)`, before per-tenant event time: its pairs come back with
//! tenant 0, unknown, until their next event).

use crate::detect::state::{PairKey, PairState};
use crate::detect::state_past::{PairStateV1, PairStateV2, PairStateV3};
use serde::de::DeserializeOwned;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// The current format's magic (with its version).
pub const MAGIC: &[u8; 8] = b"PWCKPT06";
/// Earlier formats, still read.
const MAGIC_V5: &[u8; 8] = b"PWCKPT05";
const MAGIC_V4: &[u8; 8] = b"PWCKPT04";
const MAGIC_V3: &[u8; 8] = b"PWCKPT03";
const MAGIC_V2: &[u8; 8] = b"PWCKPT02";
const FILE: &str = "checkpoint.bin";

/// One shard's pairs, encoded.
pub fn encode_pairs<'a>(pairs: impl Iterator<Item = (&'a PairKey, &'a PairState)>) -> Vec<u8> {
    let pairs: Vec<(&PairKey, u64, &PairState)> = pairs.map(|(k, s)| (k, s.tenant, s)).collect();
    bincode::serialize(&pairs).unwrap_or_default()
}

/// Writes a checkpoint at log position `seq` from the encoded parts of every shard.
pub fn write(dir: &Path, seq: u64, aux: u64, parts: &[Vec<u8>]) -> io::Result<u64> {
    write_as(MAGIC, dir, seq, aux, parts)
}

/// A checkpoint file's bytes in the layout of the module doc, under `magic`.
pub fn file_bytes<P: AsRef<[u8]>>(magic: &[u8; 8], seq: u64, aux: u64, parts: &[P]) -> Vec<u8> {
    let size = parts.iter().map(|p| p.as_ref().len() + 8).sum::<usize>() + 36;
    let mut buf = Vec::with_capacity(size);
    buf.extend_from_slice(magic);
    buf.extend_from_slice(&seq.to_le_bytes());
    buf.extend_from_slice(&aux.to_le_bytes());
    buf.extend_from_slice(&(parts.len() as u64).to_le_bytes());
    for p in parts {
        buf.extend_from_slice(&(p.as_ref().len() as u64).to_le_bytes());
        buf.extend_from_slice(p.as_ref());
    }
    let crc = crc32fast::hash(&buf);
    buf.extend_from_slice(&crc.to_le_bytes());
    buf
}

fn write_as(magic: &[u8; 8], dir: &Path, seq: u64, aux: u64, parts: &[Vec<u8>]) -> io::Result<u64> {
    let buf = file_bytes(magic, seq, aux, parts);
    std::fs::create_dir_all(dir)?;
    super::replace_file(&dir.join(FILE), &buf)?;
    Ok(buf.len() as u64)
}

/// A checkpoint read back: its log position and all its pairs (each with its
/// [`PairState::tenant`] set, 0 from a version 02 file).
#[derive(Debug)]
pub struct Restored {
    pub seq: u64,
    pub aux: u64,
    /// The pairs, part by part as they were written (one part per shard).
    pub parts: Vec<Part>,
}

/// The pairs of one part of a checkpoint.
pub type Part = Vec<(PairKey, PairState)>;

impl Restored {
    pub fn pair_count(&self) -> usize {
        self.parts.iter().map(Vec::len).sum()
    }

    pub fn into_pairs(self) -> impl Iterator<Item = (PairKey, PairState)> {
        self.parts.into_iter().flatten()
    }
}

fn corrupt(m: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("checkpoint: {m}"))
}

/// The log position of the checkpoint of `dir`, from its header alone (not checked: a
/// damaged file is refused when it is read whole); `None` without one.
pub fn position(dir: &Path) -> io::Result<Option<u64>> {
    let mut f = match File::open(dir.join(FILE)) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut head = [0u8; 16];
    f.read_exact(&mut head)?;
    Ok(Some(u64::from_le_bytes(head[8..16].try_into().unwrap())))
}

/// Reads the checkpoint of `dir`, if there is one.
pub fn read(dir: &Path) -> io::Result<Option<Restored>> {
    let mut f = match File::open(dir.join(FILE)) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)?;
    if buf.len() < 36 {
        return Err(corrupt("not a pairwatch checkpoint (or another version)"));
    }
    let version = match &buf[..8] {
        m if m == MAGIC => 6,
        m if m == MAGIC_V5 => 5,
        m if m == MAGIC_V4 => 4,
        m if m == MAGIC_V3 => 3,
        m if m == MAGIC_V2 => 2,
        _ => return Err(corrupt("not a pairwatch checkpoint (or another version)")),
    };
    let (body, crc) = buf.split_at(buf.len() - 4);
    if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().unwrap()) {
        return Err(corrupt("checksum mismatch"));
    }
    let u64_at = |at: usize| -> io::Result<u64> {
        body.get(at..at + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
            .ok_or_else(|| corrupt("truncated"))
    };
    let seq = u64_at(8)?;
    let aux = u64_at(16)?;
    let parts = u64_at(24)?;
    let mut at = 32;
    let mut slices = Vec::new();
    for _ in 0..parts {
        let len = u64_at(at)? as usize;
        at += 8;
        // A corrupt length may be near u64::MAX: `at + len` must not overflow.
        let part = at
            .checked_add(len)
            .and_then(|end| body.get(at..end))
            .ok_or_else(|| corrupt("truncated part"))?;
        slices.push(part);
        at += len;
    }
    let parts = decode_parts(version, &slices)?;
    Ok(Some(Restored { seq, aux, parts }))
}

/// Decodes the parts (one per shard that wrote them) in parallel, on at most as many
/// threads as there are processors; each thread takes a run of consecutive parts.
fn decode_parts(version: u8, slices: &[&[u8]]) -> io::Result<Vec<Part>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_thread = slices.len().div_ceil(threads).max(1);
    let decoded: Vec<io::Result<Vec<Part>>> = std::thread::scope(|scope| {
        let runs: Vec<_> = slices
            .chunks(per_thread)
            .map(|run| {
                std::thread::Builder::new()
                    .name("checkpoint-read".into())
                    .spawn_scoped(scope, move || {
                        run.iter()
                            .map(|part| {
                                let mut pairs = Vec::new();
                                decode_part(version, part, &mut pairs).map(|()| pairs)
                            })
                            .collect::<io::Result<Vec<_>>>()
                    })
            })
            .collect();
        runs.into_iter()
            .map(|run| match run {
                Ok(t) => t.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
                Err(e) => Err(e),
            })
            .collect()
    });
    let mut parts = Vec::with_capacity(slices.len());
    for run in decoded {
        parts.extend(run?);
    }
    Ok(parts)
}

fn bad(e: bincode::Error) -> io::Error {
    corrupt(&e.to_string())
}

/// Appends the pairs of one part written in format `version`.
fn decode_part(version: u8, part: &[u8], pairs: &mut Vec<(PairKey, PairState)>) -> io::Result<()> {
    match version {
        2 => {
            let decoded: Vec<(PairKey, PairStateV1)> = bincode::deserialize(part).map_err(bad)?;
            pairs.extend(decoded.into_iter().map(|(k, s)| (k, s.into())));
            Ok(())
        }
        3 => decode_entries::<PairStateV1>(part, pairs),
        4 => decode_entries::<PairStateV2>(part, pairs),
        5 => decode_entries::<PairStateV3>(part, pairs),
        _ => decode_entries::<PairState>(part, pairs),
    }
}

/// Appends the `(PairKey, tenant hash, S)` entries of one part, `S` being the state in
/// the form the part's format stored (from 03 on, only that form changed).
fn decode_entries<S: DeserializeOwned + Into<PairState>>(
    part: &[u8],
    pairs: &mut Vec<(PairKey, PairState)>,
) -> io::Result<()> {
    let decoded: Vec<(PairKey, u64, S)> = bincode::deserialize(part).map_err(bad)?;
    pairs.extend(decoded.into_iter().map(|(k, tenant, s)| {
        let mut s: PairState = s.into();
        s.tenant = tenant;
        (k, s)
    }));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::rules::Pattern;
    use crate::detect::signal::Signal;
    use crate::detect::state::tenant_hash;
    use crate::detect::state_past::samples;

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("pw-ckpt-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_version_02_checkpoint_still_loads_with_tenants_unknown() {
        let dir = temp_dir("v2");
        let (k1, _) = PairKey::of("t", "a", "b");
        let (k2, _) = PairKey::of("u", "c", "d");
        let mut s1 = PairState::new(1000);
        s1.record(1, Signal::MoneyDemand.bit(), 3000);
        s1.users = [7, 8];
        let s2 = PairState::new(5000);
        // What a version 02 writer stored: `(PairKey, PairStateV1)` entries.
        let v2_part = |pairs: &[(PairKey, PairState)]| {
            let old: Vec<_> = pairs
                .iter()
                .map(|(k, s)| (*k, PairStateV1::of(s)))
                .collect();
            bincode::serialize(&old).unwrap()
        };
        let parts = vec![v2_part(&[(k1, s1.clone())]), v2_part(&[(k2, s2.clone())])];
        write_as(MAGIC_V2, &dir, 9, 3, &parts).unwrap();
        assert_eq!(&std::fs::read(dir.join(FILE)).unwrap()[..8], b"PWCKPT02");
        let back = read(&dir).unwrap().unwrap();
        assert_eq!((back.seq, back.aux), (9, 3));
        assert_eq!(back.pair_count(), 2);
        let pairs: Vec<_> = back.into_pairs().collect();
        assert_eq!(pairs, vec![(k1, s1), (k2, s2)]);
        assert!(pairs.iter().all(|(_, s)| s.tenant == 0));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_version_03_checkpoint_still_loads_with_its_tenants() {
        let dir = temp_dir("v3");
        let (k, _) = PairKey::of("t", "a", "b");
        let mut s = PairState::new(1000);
        s.record(0, Signal::Flattery.bit(), 2000);
        s.tenant = tenant_hash("t");
        let part = bincode::serialize(&vec![(k, s.tenant, PairStateV1::of(&s))]).unwrap();
        write_as(MAGIC_V3, &dir, 4, 0, &[part]).unwrap();
        let back = read(&dir).unwrap().unwrap();
        assert_eq!(back.into_pairs().collect::<Vec<_>>(), vec![(k, s)]);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_version_04_checkpoint_still_loads_without_the_new_facts() {
        let dir = temp_dir("v4");
        let (k, _) = PairKey::of("t", "a", "b");
        let mut s = PairState::new(1000);
        s.record(1, Signal::RecordingClaim.bit(), 2000);
        s.run = 0x0102;
        s.tenant = tenant_hash("t");
        let part = bincode::serialize(&vec![(k, s.tenant, PairStateV2::of(&s))]).unwrap();
        write_as(MAGIC_V4, &dir, 8, 0, &[part]).unwrap();
        let back = read(&dir).unwrap().unwrap();
        assert_eq!(back.into_pairs().collect::<Vec<_>>(), vec![(k, s)]);
        let _ = std::fs::remove_dir_all(dir);
    }

    /// Bytes the previous release wrote (`PWCKPT05`): its `serve` given the README's
    /// worked example (`examples/sextortion_fr.jsonl`), then stopped.
    #[test]
    fn a_checkpoint_written_by_the_previous_release_loads() {
        use crate::detect::event::AgeBand;
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pwckpt05");
        assert_eq!(&std::fs::read(dir.join(FILE)).unwrap()[..8], b"PWCKPT05");
        let back = read(&dir).unwrap().unwrap();
        assert_eq!(back.seq, 18);
        let pairs: Vec<_> = back.into_pairs().collect();
        let [(key, s)] = pairs.as_slice() else {
            panic!("{} pairs", pairs.len())
        };
        assert_eq!(*key, PairKey::of("game-eu", "u-981", "u-112").0);
        assert_eq!(s.tenant, tenant_hash("game-eu"));
        // Side 0 is the smaller id: the girl.
        assert_eq!(s.bands, [AgeBand::Age13To15, AgeBand::Adult]);
        assert_ne!(s.contact, 0, "the friend request is remembered");
        let a = s.active.as_ref().unwrap();
        assert!(a.counts[1][Signal::ThreatToDistribute as usize] > 0);
        assert!(a
            .evidence
            .iter()
            .any(|e| e.side == 1 && e.signals.contains(Signal::ThreatToDistribute)));
        let raised = a.raised[Pattern::Sextortion as usize].as_ref().unwrap();
        assert_eq!(raised.priority, crate::detect::rules::Priority::P0);
        let details = raised.alert.as_ref().unwrap();
        assert_eq!(&*details.users[0], "u-112");
        assert_eq!(details.suspect_side(), 1);
        assert!(details.read[0].contains(Signal::ThreatToDistribute));
        assert!(a.raised[Pattern::KnownAbuseMaterial as usize].is_none());
        assert!(a.shadow.is_empty());
    }

    #[test]
    fn a_version_05_checkpoint_still_loads_with_alert_details() {
        let dir = temp_dir("v5");
        let (k, _) = PairKey::of("t", "a", "b");
        let mut s = samples::third_form();
        s.tenant = tenant_hash("t");
        let part = bincode::serialize(&vec![(k, s.tenant, PairStateV3::of(&s))]).unwrap();
        write_as(MAGIC_V5, &dir, 8, 0, &[part]).unwrap();
        assert_eq!(&std::fs::read(dir.join(FILE)).unwrap()[..8], b"PWCKPT05");
        let back = read(&dir).unwrap().unwrap();
        assert_eq!(back.parts, vec![vec![(k, s)]]);
        let a = back.parts[0][0].1.active.as_ref().unwrap();
        assert!(a.evidence[0].signals.contains(Signal::ThreatToDistribute));
        let raised = a.raised[Pattern::Sextortion as usize].as_ref().unwrap();
        let alert = raised.alert.as_ref().unwrap();
        assert!(alert.read[0].contains(Signal::MoneyDemand));
        assert!(a.raised[Pattern::KnownAbuseMaterial as usize].is_none());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn the_current_format_keeps_the_signals_and_patterns_added_last() {
        let dir = temp_dir("v6-new");
        let (k, _) = PairKey::of("t", "a", "b");
        let mut s = samples::current_form();
        s.tenant = tenant_hash("t");
        write(&dir, 2, 0, &[encode_pairs([(&k, &s)].into_iter())]).unwrap();
        let back = read(&dir).unwrap().unwrap();
        assert_eq!(back.parts, vec![vec![(k, s)]]);
        let a = back.parts[0][0].1.active.as_ref().unwrap();
        assert!(a.evidence[1].signals.contains(Signal::KnownAbuseMaterial));
        assert!(a.evidence[1]
            .signals
            .contains(Signal::NudeMediaSentAfterRequest));
        let raised = a.raised[Pattern::KnownAbuseMaterial as usize].as_ref();
        let read_by = raised.and_then(|r| r.alert.as_ref()).map(|al| al.read[0]);
        assert_eq!(read_by, Some(Signal::KnownAbuseMaterial.bit()));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn the_current_format_keeps_each_pairs_tenant() {
        let dir = temp_dir("v6");
        let (k, _) = PairKey::of("t", "a", "b");
        let mut s = PairState::new(1000);
        s.tenant = tenant_hash("t");
        s.relationship = Some(crate::detect::event::Relationship::Family);
        s.note_contact(crate::detect::event::ContactAction::FriendAccept);
        write(&dir, 1, 0, &[encode_pairs([(&k, &s)].into_iter())]).unwrap();
        assert_eq!(&std::fs::read(dir.join(FILE)).unwrap()[..8], b"PWCKPT06");
        let back = read(&dir).unwrap().unwrap();
        assert_eq!(back.parts[0][0].1.tenant, tenant_hash("t"));
        assert_eq!(back.into_pairs().collect::<Vec<_>>(), vec![(k, s)]);
        // An unknown version is refused, not misread.
        let mut bytes = std::fs::read(dir.join(FILE)).unwrap();
        bytes[7] = b'9';
        std::fs::write(dir.join(FILE), bytes).unwrap();
        assert!(read(&dir).unwrap_err().to_string().contains("version"));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_part_length_near_u64_max_is_refused_not_overflowed() {
        // Found by the `checkpoint` fuzz target (fuzz/artifacts/checkpoint/): a part
        // length of u64::MAX behind a valid checksum made `at + len` overflow.
        let dir = temp_dir("huge-len");
        std::fs::create_dir_all(&dir).unwrap();
        for len in [u64::MAX, u64::MAX - 39, 1 << 40] {
            let mut buf = MAGIC.to_vec();
            for n in [1u64, 0, 1, len] {
                buf.extend_from_slice(&n.to_le_bytes());
            }
            let crc = crc32fast::hash(&buf);
            buf.extend_from_slice(&crc.to_le_bytes());
            std::fs::write(dir.join(FILE), &buf).unwrap();
            let err = read(&dir).unwrap_err();
            assert!(err.to_string().contains("truncated part"), "{len}: {err}");
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn round_trip_and_corruption_is_detected() {
        let dir = std::env::temp_dir().join(format!("pw-ckpt-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        assert!(read(&dir).unwrap().is_none());
        let (k1, _) = PairKey::of("t", "a", "b");
        let (k2, _) = PairKey::of("t", "c", "d");
        let mut s1 = PairState::new(1000);
        s1.record(0, Signal::ThreatToDistribute.bit(), 2000);
        s1.tenant = tenant_hash("t");
        let s2 = PairState::new(5000);
        let parts = vec![
            encode_pairs([(&k1, &s1)].into_iter()),
            encode_pairs([(&k2, &s2)].into_iter()),
        ];
        write(&dir, 42, 7, &parts).unwrap();
        let back = read(&dir).unwrap().unwrap();
        assert_eq!((back.seq, back.aux), (42, 7));
        assert_eq!(back.pair_count(), 2);
        let pairs: Vec<_> = back.into_pairs().collect();
        assert_eq!(pairs, vec![(k1, s1), (k2, s2)]);
        let path = dir.join(FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        assert!(read(&dir).unwrap_err().to_string().contains("checksum"));
        let _ = std::fs::remove_dir_all(dir);
    }
}
