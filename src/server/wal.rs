//! The write-ahead log: every accepted event (and every state-changing command) is
//! appended here, and fsynced, before it is acknowledged. Records carry a global
//! sequence number; on start the log after the checkpoint is replayed.
//!
//! Files: `wal/<first seq, 20 digits>.log`. Record: `len u32 | crc32 u32 | seq u64 |
//! kind u8 | payload`, little endian, the CRC over seq, kind and payload. A torn record
//! at the end of the last segment (a crash mid-write) is cut off on open.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

const HEADER: usize = 4 + 4 + 8 + 1;
/// Largest record accepted back from disk (guards against a corrupt length).
const MAX_RECORD: usize = 64 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// A protobuf `ChatEvent`.
    Event = 1,
    /// A user id to forget.
    Forget = 2,
    /// A moderator's false-positive decision: tenant, user a, user b, pattern (JSON).
    Suppress = 3,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        match b {
            1 => Some(Kind::Event),
            2 => Some(Kind::Forget),
            3 => Some(Kind::Suppress),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    pub kind: Kind,
    pub payload: Vec<u8>,
}

pub struct Wal {
    dir: PathBuf,
    file: File,
    file_bytes: u64,
    segment_bytes: u64,
    fsync: bool,
    next_seq: u64,
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

/// Reads the records of one segment; returns them and the length of its valid prefix.
fn read_segment(path: &Path) -> io::Result<(Vec<Record>, u64)> {
    let mut r = BufReader::new(File::open(path)?);
    let mut records = Vec::new();
    let mut valid = 0u64;
    loop {
        let mut header = [0u8; HEADER];
        match r.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        }
        let len = u32::from_le_bytes(header[0..4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(header[4..8].try_into().unwrap());
        let seq = u64::from_le_bytes(header[8..16].try_into().unwrap());
        if len > MAX_RECORD {
            break;
        }
        let mut payload = vec![0u8; len];
        if r.read_exact(&mut payload).is_err() {
            break;
        }
        let mut h = crc32fast::Hasher::new();
        h.update(&header[8..]);
        h.update(&payload);
        let Some(kind) = Kind::from_u8(header[16]).filter(|_| h.finalize() == crc) else {
            break;
        };
        records.push(Record { seq, kind, payload });
        valid += (HEADER + len) as u64;
    }
    Ok((records, valid))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Wal {
    /// Opens the log in `dir`, cutting a torn tail; calls `replay` for every record with
    /// a sequence number above `after`.
    pub fn open(
        dir: &Path,
        segment_bytes: u64,
        fsync: bool,
        after: u64,
        mut replay: impl FnMut(Record),
    ) -> io::Result<Wal> {
        std::fs::create_dir_all(dir)?;
        let mut next_seq = after + 1;
        let segs = segments(dir)?;
        let mut last: Option<(PathBuf, u64)> = None;
        for (_, path) in &segs {
            let (records, valid) = read_segment(path)?;
            for rec in records {
                next_seq = next_seq.max(rec.seq + 1);
                if rec.seq > after {
                    replay(rec);
                }
            }
            last = Some((path.clone(), valid));
        }
        let (file, file_bytes) = match last {
            Some((path, valid)) => {
                let file = OpenOptions::new().write(true).open(&path)?;
                file.set_len(valid)?;
                file.sync_all()?;
                let mut file = OpenOptions::new().append(true).open(&path)?;
                file.flush()?;
                (file, valid)
            }
            None => {
                let path = dir.join(segment_name(next_seq));
                let file = OpenOptions::new().create(true).append(true).open(&path)?;
                sync_dir(dir)?;
                (file, 0)
            }
        };
        Ok(Wal {
            dir: dir.to_path_buf(),
            file,
            file_bytes,
            segment_bytes,
            fsync,
            next_seq,
        })
    }

    /// The sequence number the next record will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Appends records and makes them durable with one fsync (group commit). Returns the
    /// sequence number of each.
    pub fn append(&mut self, records: &[(Kind, &[u8])]) -> io::Result<Vec<u64>> {
        if self.file_bytes >= self.segment_bytes {
            self.roll()?;
        }
        let mut buf = Vec::with_capacity(records.iter().map(|(_, p)| HEADER + p.len()).sum());
        let mut seqs = Vec::with_capacity(records.len());
        for (kind, payload) in records {
            let seq = self.next_seq;
            self.next_seq += 1;
            seqs.push(seq);
            let mut h = crc32fast::Hasher::new();
            h.update(&seq.to_le_bytes());
            h.update(&[*kind as u8]);
            h.update(payload);
            buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            buf.extend_from_slice(&h.finalize().to_le_bytes());
            buf.extend_from_slice(&seq.to_le_bytes());
            buf.push(*kind as u8);
            buf.extend_from_slice(payload);
        }
        self.file.write_all(&buf)?;
        if self.fsync {
            self.file.sync_data()?;
        }
        self.file_bytes += buf.len() as u64;
        Ok(seqs)
    }

    fn roll(&mut self) -> io::Result<()> {
        let path = self.dir.join(segment_name(self.next_seq));
        self.file = OpenOptions::new().create(true).append(true).open(&path)?;
        self.file_bytes = 0;
        sync_dir(&self.dir)
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
