//! The write-ahead log: every accepted event (and every state-changing command) is
//! appended here, and fsynced, before it is acknowledged. Records carry a global
//! sequence number; on start the log after the checkpoint is replayed.
//!
//! Files: `wal/<first seq, 20 digits>.log`, and `wal/key`, 16 random bytes made with the
//! log. Record: `len u32 | crc32 u32 | seq u64 | kind u8 | payload`, little endian. The
//! CRC is over the key, seq, kind and payload; the kind's high bit says the key is in it
//! (records of older versions have no key). Clients choose the bytes of the messages
//! logged, but not the key: a record forged inside a message's text never checks, so
//! reading past damage cannot pick one up.
//!
//! Faults (a full disk, an I/O error):
//! - a failed append is cut off again (the file is set back to its last good length and
//!   synced), so no later append extends a partial record and none of its records can
//!   be replayed; its sequence numbers are given out again;
//! - when even that fails, the log rolls to a new segment before the next append and
//!   writes a [`Kind::Void`] record naming the failed sequence numbers, ahead of the next
//!   acknowledged record: recovery never replays them;
//! - recovery reads past a damaged stretch to the next valid record (a record is valid
//!   when its CRC holds and its sequence number follows the last one), so it never
//!   drops an acknowledged record behind garbage; only bytes after the last valid
//!   record of the newest segment are cut, and every skip or cut is logged at `warn`.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

const HEADER: usize = 4 + 4 + 8 + 1;
/// Largest record accepted back from disk (guards against a corrupt length): a logged
/// event is a validated one, a few KiB at most.
const MAX_RECORD: usize = 1 << 20;
/// The kind byte's flag for a record whose CRC covers the log's key.
const KEYED: u8 = 0x80;
const KEY_FILE: &str = "key";
const KEY_BYTES: usize = 16;
/// How far a sequence number may jump between two records found while resynchronising
/// after damage (further is taken for garbage that happens to checksum).
const MAX_SEQ_GAP: u64 = 1 << 32;
/// Size of the record that checks the log is writable again after a failure.
pub const PROBE_BYTES: usize = 64 << 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// A protobuf `ChatEvent`.
    Event = 1,
    /// A user id to forget.
    Forget = 2,
    /// A moderator's false-positive decision: tenant, user a, user b, pattern (JSON).
    Suppress = 3,
    /// Sequence numbers of a failed append that could not be cut off: pairs of
    /// `first u64 | last u64`, all below the void record's own. Never replayed itself.
    Void = 4,
    /// A record written to check that the log takes writes again. Never replayed.
    Probe = 5,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        match b {
            1 => Some(Kind::Event),
            2 => Some(Kind::Forget),
            3 => Some(Kind::Suppress),
            4 => Some(Kind::Void),
            5 => Some(Kind::Probe),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    pub kind: Kind,
    pub payload: Vec<u8>,
    /// Its CRC covers the log's key (every record this version writes).
    pub keyed: bool,
}

/// What recovery found wrong in the log, for the log line and the metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Recovery {
    /// Bytes of damaged records read past, between valid records.
    pub skipped_bytes: u64,
    /// Bytes after the last valid record of the newest segment, cut off.
    pub cut_bytes: u64,
    /// Records of failed appends that were not replayed.
    pub voided: u64,
}

pub struct Wal {
    dir: PathBuf,
    key: Vec<u8>,
    file: File,
    file_bytes: u64,
    segment_bytes: u64,
    fsync: bool,
    next_seq: u64,
    /// A failed append could not be cut off: roll to a new segment before the next one.
    broken: bool,
    /// Sequence numbers of failed appends that may still be on disk, voided by the
    /// next append.
    void: Vec<(u64, u64)>,
    recovery: Recovery,
}

fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:020}.log")
}

/// Segments of `dir`, sorted, with their first sequence number.
fn segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let first = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(first) = first {
            out.push((first, path));
        }
    }
    out.sort();
    Ok(out)
}

/// The record starting at `at` in `bytes`, if one is whole, its sequence number is
/// one `seq_ok` takes, its CRC holds, and it is keyed or `unkeyed_ok`.
fn record_at(
    bytes: &[u8],
    at: usize,
    key: &[u8],
    unkeyed_ok: bool,
    seq_ok: impl Fn(u64) -> bool,
) -> Option<Record> {
    let header = bytes.get(at..at + HEADER)?;
    let len = u32::from_le_bytes(header[0..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(header[4..8].try_into().ok()?);
    let seq = u64::from_le_bytes(header[8..16].try_into().ok()?);
    let keyed = header[16] & KEYED != 0;
    let kind = Kind::from_u8(header[16] & !KEYED)?;
    if len > MAX_RECORD || !(keyed || unkeyed_ok) || !seq_ok(seq) {
        return None;
    }
    let payload = bytes.get(at + HEADER..at + HEADER + len)?;
    let mut h = crc32fast::Hasher::new();
    if keyed {
        h.update(key);
    }
    h.update(&header[8..]);
    h.update(payload);
    (h.finalize() == crc).then(|| Record {
        seq,
        kind,
        payload: payload.to_vec(),
        keyed,
    })
}

/// One segment read back.
#[derive(Debug, Default)]
pub struct Segment {
    pub records: Vec<Record>,
    /// End of the last valid record.
    pub valid_end: u64,
    /// Bytes read past between valid records.
    pub skipped: u64,
}

/// Parses a segment's bytes: valid records in order, reading past damaged stretches to
/// the next record that checks and whose sequence number follows `last_seq` (the last
/// one before this segment, or the one before the segment's first). After damage, only
/// keyed records are taken, unless the segment holds none before it (a segment of an
/// older version).
pub fn parse_segment(bytes: &[u8], mut last_seq: u64, key: &[u8]) -> Segment {
    let mut seg = Segment::default();
    let mut at = 0usize;
    let mut damaged_from: Option<usize> = None;
    let mut seen_keyed = false;
    while at + HEADER <= bytes.len() {
        // Right after a valid record any sequence number is taken (records are written
        // in order); after damage only one that follows the last, not too far.
        let damaged = damaged_from.is_some();
        let found = record_at(bytes, at, key, !(damaged && seen_keyed), |seq| {
            !damaged || (seq > last_seq && seq - last_seq <= MAX_SEQ_GAP)
        });
        match found {
            Some(rec) => {
                if let Some(from) = damaged_from.take() {
                    seg.skipped += (at - from) as u64;
                }
                seen_keyed |= rec.keyed;
                at += HEADER + rec.payload.len();
                last_seq = rec.seq;
                seg.valid_end = at as u64;
                seg.records.push(rec);
            }
            None => {
                damaged_from.get_or_insert(at);
                at += 1;
            }
        }
    }
    seg
}

/// Reads one segment; `last_seq` is the last sequence number before it, raised to the
/// one before the segment's first (its name) when that is higher.
fn read_segment(path: &Path, first: u64, last_seq: u64, key: &[u8]) -> io::Result<(Segment, u64)> {
    let mut bytes = Vec::new();
    File::open(path)?.read_to_end(&mut bytes)?;
    let last_seq = last_seq.max(first.saturating_sub(1));
    Ok((parse_segment(&bytes, last_seq, key), bytes.len() as u64))
}

/// The log's key: read, or made and stored durably with a new log.
fn log_key(dir: &Path) -> io::Result<Vec<u8>> {
    let path = dir.join(KEY_FILE);
    match std::fs::read(&path) {
        Ok(key) if key.len() == KEY_BYTES => return Ok(key),
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is not a write-ahead log key", path.display()),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let key = super::random_bytes(KEY_BYTES);
    super::replace_file(&path, &key)?;
    Ok(key)
}

/// Sequence ranges of failed appends, sorted and merged, to look a number up.
#[derive(Default)]
struct Voided(Vec<(u64, u64)>);

impl Voided {
    /// Adds the ranges of the void record `rec`, keeping only those below it.
    fn add(&mut self, rec: &Record) {
        self.0
            .extend(void_ranges(&rec.payload).filter(|(a, b)| a <= b && *b < rec.seq));
    }

    fn seal(&mut self) {
        self.0.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(self.0.len());
        for (a, b) in self.0.drain(..) {
            match merged.last_mut() {
                Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        self.0 = merged;
    }

    fn contains(&self, seq: u64) -> bool {
        let i = self.0.partition_point(|(a, _)| *a <= seq);
        i > 0 && seq <= self.0[i - 1].1
    }
}

/// The sequence ranges a void record names.
fn void_ranges(payload: &[u8]) -> impl Iterator<Item = (u64, u64)> + '_ {
    payload.chunks_exact(16).map(|c| {
        (
            u64::from_le_bytes(c[0..8].try_into().unwrap_or_default()),
            u64::from_le_bytes(c[8..16].try_into().unwrap_or_default()),
        )
    })
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn encode(buf: &mut Vec<u8>, key: &[u8], seq: u64, kind: Kind, payload: &[u8]) {
    let kind = kind as u8 | KEYED;
    let mut h = crc32fast::Hasher::new();
    h.update(key);
    h.update(&seq.to_le_bytes());
    h.update(&[kind]);
    h.update(payload);
    buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    buf.extend_from_slice(&h.finalize().to_le_bytes());
    buf.extend_from_slice(&seq.to_le_bytes());
    buf.push(kind);
    buf.extend_from_slice(payload);
}

impl Wal {
    /// Opens the log in `dir`, cutting what follows the last valid record; calls
    /// `replay` for every record with a sequence number above `after`, except those of
    /// failed appends.
    pub fn open(
        dir: &Path,
        segment_bytes: u64,
        fsync: bool,
        after: u64,
        mut replay: impl FnMut(Record),
    ) -> io::Result<Wal> {
        std::fs::create_dir_all(dir)?;
        let key = log_key(dir)?;
        let segs = segments(dir)?;
        let mut recovery = Recovery::default();
        // First pass: where each segment's valid records end, and the voided numbers.
        let mut voided = Voided::default();
        let mut last_seq = 0;
        let mut ends = Vec::with_capacity(segs.len());
        for (first, path) in &segs {
            let (seg, len) = read_segment(path, *first, last_seq, &key)?;
            for rec in seg.records.iter().filter(|r| r.kind == Kind::Void) {
                voided.add(rec);
            }
            last_seq = seg.records.last().map_or(last_seq, |r| r.seq);
            if seg.skipped > 0 {
                tracing::warn!(
                    segment = %path.display(),
                    skipped_bytes = seg.skipped,
                    records = seg.records.len(),
                    "write-ahead log: read past a damaged stretch to the next valid record"
                );
            }
            recovery.skipped_bytes += seg.skipped;
            ends.push((seg.valid_end, len));
        }
        voided.seal();
        // Second pass: replay. Numbering goes on past every record and every segment's
        // name, so a new segment never reuses a name.
        let mut next_seq = (after + 1).max(segs.last().map_or(0, |(first, _)| *first));
        let mut last_seq = 0;
        for (first, path) in &segs {
            let (seg, _) = read_segment(path, *first, last_seq, &key)?;
            last_seq = seg.records.last().map_or(last_seq, |r| r.seq);
            for rec in seg.records {
                next_seq = next_seq.max(rec.seq + 1);
                if rec.seq <= after || matches!(rec.kind, Kind::Void | Kind::Probe) {
                    continue;
                }
                if voided.contains(rec.seq) {
                    recovery.voided += 1;
                } else {
                    replay(rec);
                }
            }
        }
        let (file, file_bytes) = match (segs.last(), ends.last()) {
            (Some((_, path)), Some(&(valid, len))) => {
                if len > valid {
                    tracing::warn!(
                        segment = %path.display(),
                        cut_bytes = len - valid,
                        "write-ahead log: cut an unfinished record after the last valid one"
                    );
                    recovery.cut_bytes = len - valid;
                    let file = OpenOptions::new().write(true).open(path)?;
                    file.set_len(valid)?;
                    file.sync_all()?;
                }
                let file = OpenOptions::new().append(true).open(path)?;
                (file, valid)
            }
            _ => {
                let path = dir.join(segment_name(next_seq));
                let file = OpenOptions::new().create(true).append(true).open(&path)?;
                sync_dir(dir)?;
                (file, 0)
            }
        };
        if recovery.voided > 0 {
            tracing::warn!(
                records = recovery.voided,
                "write-ahead log: records of failed appends were not replayed"
            );
        }
        Ok(Wal {
            dir: dir.to_path_buf(),
            key,
            file,
            file_bytes,
            segment_bytes,
            fsync,
            next_seq,
            broken: false,
            void: Vec::new(),
            recovery,
        })
    }

    /// The sequence number the next record will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// What recovery found when the log was opened.
    pub fn recovery(&self) -> Recovery {
        self.recovery
    }

    /// Appends records and makes them durable with one fsync (group commit). Returns the
    /// sequence number of each. On error nothing of the call is acknowledged, and none of
    /// its records will ever be replayed.
    pub fn append(&mut self, records: &[(Kind, &[u8])]) -> io::Result<Vec<u64>> {
        if self.broken || self.file_bytes >= self.segment_bytes {
            self.roll()?;
        }
        let first = self.next_seq;
        let mut buf = Vec::with_capacity(
            records.iter().map(|(_, p)| HEADER + p.len()).sum::<usize>() + HEADER,
        );
        if !self.void.is_empty() {
            let payload: Vec<u8> = self
                .void
                .iter()
                .flat_map(|(a, b)| a.to_le_bytes().into_iter().chain(b.to_le_bytes()))
                .collect();
            encode(&mut buf, &self.key, self.next_seq, Kind::Void, &payload);
            self.next_seq += 1;
        }
        let mut seqs = Vec::with_capacity(records.len());
        for (kind, payload) in records {
            seqs.push(self.next_seq);
            encode(&mut buf, &self.key, self.next_seq, *kind, payload);
            self.next_seq += 1;
        }
        let written = self.file.write_all(&buf).and_then(|()| {
            if self.fsync {
                self.file.sync_data()
            } else {
                Ok(())
            }
        });
        match written {
            Ok(()) => {
                self.file_bytes += buf.len() as u64;
                self.void.clear();
                Ok(seqs)
            }
            Err(e) => {
                self.undo(first);
                Err(e)
            }
        }
    }

    /// Takes back a failed append whose records start at `first`: cut the file to its
    /// last good length, or failing that, void the numbers and leave the segment.
    fn undo(&mut self, first: u64) {
        let cut = self
            .file
            .set_len(self.file_bytes)
            .and_then(|()| self.file.sync_all());
        match cut {
            Ok(()) => self.next_seq = first,
            Err(e) => {
                tracing::warn!(error = %e, "write-ahead log: cannot cut a failed append; voiding it");
                self.void.push((first, self.next_seq - 1));
                self.broken = true;
            }
        }
    }

    /// Checks that the log can take a group again after a failure: appends and syncs a
    /// probe record (never replayed) of [`PROBE_BYTES`], so that a few bytes left at the
    /// end of a page do not pass for space.
    pub fn probe(&mut self) -> io::Result<()> {
        self.append(&[(Kind::Probe, &[0; PROBE_BYTES])]).map(|_| ())
    }

    fn roll(&mut self) -> io::Result<()> {
        let path = self.dir.join(segment_name(self.next_seq));
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)?;
        sync_dir(&self.dir)?;
        self.file = file;
        self.file_bytes = 0;
        self.broken = false;
        Ok(())
    }

    /// Starts a new segment now, so that everything before can be truncated.
    pub fn seal(&mut self) -> io::Result<()> {
        if self.file_bytes > 0 {
            self.roll()?;
        }
        Ok(())
    }
}

/// Deletes the segments of `dir` whose records all have a sequence number at most
/// `upto` (they are covered by a checkpoint). The newest segment is never deleted, so
/// this is safe while the log thread writes.
pub fn truncate(dir: &Path, upto: u64) -> io::Result<usize> {
    let segs = segments(dir)?;
    let mut removed = 0;
    for pair in segs.windows(2) {
        // A segment ends where the next one starts.
        if pair[1].0 <= upto + 1 {
            std::fs::remove_file(&pair[0].1)?;
            removed += 1;
        }
    }
    if removed > 0 {
        sync_dir(dir)?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("pw-wal-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn all(d: &Path, after: u64) -> Vec<Record> {
        let mut out = Vec::new();
        Wal::open(d, 1 << 20, false, after, |r| out.push(r)).unwrap();
        out
    }

    #[test]
    fn appends_replays_and_continues_numbering() {
        let d = dir("basic");
        let mut w = Wal::open(&d, 1 << 20, true, 0, |_| panic!("empty")).unwrap();
        assert_eq!(
            w.append(&[(Kind::Event, b"a"), (Kind::Forget, b"bb")])
                .unwrap(),
            vec![1, 2]
        );
        drop(w);
        let recs = all(&d, 0);
        assert_eq!(recs.len(), 2);
        assert_eq!(
            (recs[1].seq, recs[1].kind, recs[1].payload.as_slice()),
            (2, Kind::Forget, &b"bb"[..])
        );
        assert_eq!(all(&d, 1).len(), 1);
        let mut w = Wal::open(&d, 1 << 20, true, 0, |_| {}).unwrap();
        assert_eq!(w.append(&[(Kind::Event, b"c")]).unwrap(), vec![3]);
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn a_torn_tail_is_cut_and_writing_goes_on() {
        let d = dir("torn");
        let mut w = Wal::open(&d, 1 << 20, true, 0, |_| {}).unwrap();
        w.append(&[(Kind::Event, b"first"), (Kind::Event, b"second")])
            .unwrap();
        drop(w);
        let (_, path) = segments(&d).unwrap().pop().unwrap();
        let len = std::fs::metadata(&path).unwrap().len();
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(len - 3).unwrap();
        drop(f);
        let mut w = Wal::open(&d, 1 << 20, true, 0, |_| {}).unwrap();
        assert_eq!(w.append(&[(Kind::Event, b"third")]).unwrap(), vec![2]);
        drop(w);
        let recs = all(&d, 0);
        assert_eq!(
            recs.iter().map(|r| r.payload.clone()).collect::<Vec<_>>(),
            vec![b"first".to_vec(), b"third".to_vec()]
        );
        let _ = std::fs::remove_dir_all(d);
    }

    const KEY: &[u8] = b"0123456789abcdef";

    #[test]
    fn a_damaged_stretch_is_read_past_and_every_record_after_it_kept() {
        let mut bytes = Vec::new();
        encode(&mut bytes, KEY, 1, Kind::Event, b"one");
        let first_end = bytes.len();
        // A partial record left by a failed write, then whole records after it.
        encode(&mut bytes, KEY, 2, Kind::Event, b"lost in a torn write");
        bytes.truncate(bytes.len() - 5);
        let garbage = bytes.len() - first_end;
        encode(&mut bytes, KEY, 2, Kind::Event, b"two");
        encode(&mut bytes, KEY, 3, Kind::Forget, b"three");
        let seg = parse_segment(&bytes, 0, KEY);
        let got: Vec<(u64, &[u8])> = seg
            .records
            .iter()
            .map(|r| (r.seq, &r.payload[..]))
            .collect();
        assert_eq!(got, [(1, &b"one"[..]), (2, b"two"), (3, b"three")]);
        assert_eq!(seg.skipped, garbage as u64);
        assert_eq!(seg.valid_end, bytes.len() as u64);
        // A record that checks but goes back in numbering after damage is garbage.
        let mut stale = bytes.clone();
        stale.extend_from_slice(b"xx");
        encode(&mut stale, KEY, 2, Kind::Event, b"stale");
        assert_eq!(parse_segment(&stale, 0, KEY).records.len(), 3);
    }

    #[test]
    fn records_of_a_voided_append_are_never_replayed() {
        let d = dir("void");
        std::fs::create_dir_all(&d).unwrap();
        let key = log_key(&d).unwrap();
        let mut old = Vec::new();
        encode(&mut old, &key, 1, Kind::Event, b"acknowledged");
        encode(&mut old, &key, 2, Kind::Event, b"refused");
        encode(&mut old, &key, 3, Kind::Event, b"refused too");
        std::fs::write(d.join(segment_name(1)), &old).unwrap();
        let mut new = Vec::new();
        let ranges: Vec<u8> = [2u64, 3].iter().flat_map(|n| n.to_le_bytes()).collect();
        encode(&mut new, &key, 4, Kind::Void, &ranges);
        encode(&mut new, &key, 5, Kind::Event, b"after");
        std::fs::write(d.join(segment_name(4)), &new).unwrap();
        let mut w = Wal::open(&d, 1 << 20, false, 0, |_| {}).unwrap();
        assert_eq!(w.recovery().voided, 2);
        assert_eq!(w.append(&[(Kind::Event, b"next")]).unwrap(), vec![6]);
        drop(w);
        let got: Vec<Vec<u8>> = all(&d, 0).into_iter().map(|r| r.payload).collect();
        assert_eq!(got, [&b"acknowledged"[..], b"after", b"next"]);
        let _ = std::fs::remove_dir_all(d);
    }

    /// An unkeyed record, as older versions wrote them, or as a client could forge one
    /// inside a message's text.
    fn unkeyed(buf: &mut Vec<u8>, seq: u64, kind: Kind, payload: &[u8]) {
        encode(buf, b"", seq, kind, payload);
        let at = buf.len() - payload.len() - 1;
        buf[at] &= !KEYED;
        let mut h = crc32fast::Hasher::new();
        h.update(&buf[at - 8..]);
        let crc = h.finalize().to_le_bytes();
        buf[at - 12..at - 8].copy_from_slice(&crc);
    }

    #[test]
    fn a_record_forged_inside_a_torn_message_is_never_picked_up() {
        let mut forged = Vec::new();
        let all: Vec<u8> = [0u64, u64::MAX]
            .iter()
            .flat_map(|n| n.to_le_bytes())
            .collect();
        unkeyed(&mut forged, 2, Kind::Void, &all);
        encode(
            &mut forged,
            b"guessed key!!!!!",
            3,
            Kind::Forget,
            b"u-victim",
        );
        let mut bytes = Vec::new();
        encode(&mut bytes, KEY, 1, Kind::Event, b"one");
        // A message whose text carries the forged records, torn by a crash, then the
        // record written after a failed write.
        let mut torn = Vec::new();
        encode(
            &mut torn,
            KEY,
            2,
            Kind::Event,
            &[b"text ".as_slice(), &forged, b" end"].concat(),
        );
        bytes.extend_from_slice(&torn[..torn.len() - 3]);
        encode(&mut bytes, KEY, 2, Kind::Event, b"two");
        let seg = parse_segment(&bytes, 0, KEY);
        let got: Vec<(u64, Kind)> = seg.records.iter().map(|r| (r.seq, r.kind)).collect();
        assert_eq!(got, [(1, Kind::Event), (2, Kind::Event)]);
        assert_eq!(seg.records[1].payload, b"two");
    }

    #[test]
    fn segments_of_older_versions_still_read_and_resynchronise() {
        let mut bytes = Vec::new();
        unkeyed(&mut bytes, 7, Kind::Event, b"seven");
        bytes.extend_from_slice(b"partial");
        unkeyed(&mut bytes, 9, Kind::Event, b"nine");
        let seg = parse_segment(&bytes, 6, KEY);
        let got: Vec<u64> = seg.records.iter().map(|r| r.seq).collect();
        assert_eq!(got, [7, 9]);
        assert!(!seg.records[0].keyed);
    }

    #[test]
    fn damage_at_a_segments_start_is_read_past_at_any_numbering() {
        let d = dir("far");
        std::fs::create_dir_all(&d).unwrap();
        let key = log_key(&d).unwrap();
        let first = 5_000_000_000u64;
        let mut bytes = b"garbage".to_vec();
        encode(&mut bytes, &key, first, Kind::Event, b"far along");
        std::fs::write(d.join(segment_name(first)), &bytes).unwrap();
        let mut got = Vec::new();
        let w = Wal::open(&d, 1 << 20, false, 0, |r| got.push(r.seq)).unwrap();
        assert_eq!(got, [first]);
        assert_eq!(w.recovery().skipped_bytes, 7);
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn numbering_goes_on_past_the_newest_segments_name() {
        let d = dir("names");
        let mut w = Wal::open(&d, 1 << 20, false, 0, |_| {}).unwrap();
        w.append(&[(Kind::Event, b"a"), (Kind::Event, b"b")])
            .unwrap();
        drop(w);
        // A segment started after a failed write, before any record reached it.
        File::create(d.join(segment_name(13))).unwrap();
        let mut w = Wal::open(&d, 1 << 20, false, 0, |_| {}).unwrap();
        assert_eq!(w.append(&[(Kind::Event, b"c")]).unwrap(), vec![13]);
        w.seal().unwrap();
        assert_eq!(w.append(&[(Kind::Event, b"d")]).unwrap(), vec![14]);
        drop(w);
        let got: Vec<u64> = all(&d, 0).iter().map(|r| r.seq).collect();
        assert_eq!(got, [1, 2, 13, 14]);
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn probes_are_never_replayed_and_void_ranges_only_look_back() {
        let d = dir("probe");
        let mut w = Wal::open(&d, 1 << 20, false, 0, |_| {}).unwrap();
        w.append(&[(Kind::Event, b"a")]).unwrap();
        w.probe().unwrap();
        // A void record that names numbers after itself names nothing.
        let ahead: Vec<u8> = [5u64, 9].iter().flat_map(|n| n.to_le_bytes()).collect();
        w.append(&[(Kind::Void, &ahead)]).unwrap();
        w.append(&[(Kind::Event, b"b")]).unwrap();
        drop(w);
        let got: Vec<Vec<u8>> = all(&d, 0).into_iter().map(|r| r.payload).collect();
        assert_eq!(got, [b"a".to_vec(), b"b".to_vec()]);
        let _ = std::fs::remove_dir_all(d);
    }

    #[test]
    fn segments_roll_and_truncate_behind_a_checkpoint() {
        let d = dir("roll");
        let mut w = Wal::open(&d, 64, false, 0, |_| {}).unwrap();
        for i in 0..10u8 {
            w.append(&[(Kind::Event, &[i; 40])]).unwrap();
        }
        assert!(segments(&d).unwrap().len() >= 5);
        truncate(&d, 6).unwrap();
        let recs = all(&d, 6);
        assert_eq!(recs.first().map(|r| r.seq), Some(7));
        assert_eq!(recs.len(), 4);
        let _ = std::fs::remove_dir_all(d);
    }
}
