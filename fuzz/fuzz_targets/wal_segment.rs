//! `wal::parse_segment` on arbitrary bytes, with an empty log key (so that keyed and
//! older unkeyed records can both be built by the fuzzer). Input: eight bytes of
//! `last_seq` (the last sequence number seen before the segment), then the segment.
//!
//! Checks, from the record format and the recovery promises of `server::wal`:
//! - never panics; `valid_end <= bytes.len()`;
//! - every record returned is whole and checks: its exact encoding (len, CRC over seq,
//!   kind and payload) is in the segment, the records in order, and the bytes read
//!   past plus the records make up `valid_end` exactly;
//! - a record found after a damaged stretch has a sequence number above the one
//!   before it (or `last_seq`), not too far above, and is keyed once a keyed record
//!   was read;
//! - cutting the segment at `valid_end` (what recovery does to the newest segment)
//!   loses no record, and a record appended after the cut (keyed, as the log writes
//!   them) is read back behind them. The one exception: a damaged stretch before
//!   `valid_end` may hold a header whose length reaches into the appended bytes and
//!   whose CRC happens to match them. Damage does that with odds of about 2^-32 per
//!   damaged byte; the fuzzer, which sees the CRC comparison and knows the (empty)
//!   key, built one in minutes (artifacts/wal_segment/forged-crc-straddling-the-cut).
//!   So the target only checks that a missing append is explained by such a record.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pairwatch::server::wal::{parse_segment, Kind, Record, Segment};
use pairwatch_fuzz::{wal_record, WAL_HEADER};

/// How far a sequence number may jump after damage (`MAX_SEQ_GAP` in the module).
const MAX_SEQ_GAP: u64 = 1 << 32;

fn same(a: &Segment, b: &Segment) -> bool {
    a.records == b.records && a.valid_end == b.valid_end && a.skipped == b.skipped
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let last_seq = u64::from_le_bytes(data[..8].try_into().unwrap());
    let bytes = &data[8..];
    let seg = parse_segment(bytes, last_seq, &[]);
    let valid_end = usize::try_from(seg.valid_end).unwrap();
    assert!(
        valid_end <= bytes.len(),
        "valid_end {valid_end} past {}",
        bytes.len()
    );

    let mut at = 0usize;
    let mut prev = last_seq;
    let mut record_bytes = 0usize;
    let mut seen_keyed = false;
    for (i, rec) in seg.records.iter().enumerate() {
        let keyed = if rec.keyed { 0x80 } else { 0 };
        let enc = wal_record(rec.seq, rec.kind as u8 | keyed, &rec.payload);
        // The first place its exact bytes occur from here on is where the parser,
        // reading forward, found it.
        let found = bytes[at..]
            .windows(enc.len())
            .position(|w| w == enc.as_slice())
            .unwrap_or_else(|| panic!("record {i} (seq {}) is not in the segment", rec.seq));
        if found > 0 {
            assert!(
                rec.seq > prev && rec.seq - prev <= MAX_SEQ_GAP,
                "record {i} after {found} damaged bytes has seq {} after {prev}",
                rec.seq
            );
            assert!(
                rec.keyed || !seen_keyed,
                "unkeyed record {i} taken after damage behind a keyed one"
            );
        }
        seen_keyed |= rec.keyed;
        at += found + enc.len();
        prev = rec.seq;
        record_bytes += WAL_HEADER + rec.payload.len();
    }
    assert_eq!(
        at, valid_end,
        "records end at {at}, valid_end says {valid_end}"
    );
    assert_eq!(
        usize::try_from(seg.skipped).unwrap() + record_bytes,
        valid_end,
        "skipped {} + records {record_bytes} != valid_end {valid_end}",
        seg.skipped
    );
    if seg.records.is_empty() {
        assert_eq!((seg.valid_end, seg.skipped), (0, 0));
    }

    // The cut keeps every record.
    let cut = parse_segment(&bytes[..valid_end], last_seq, &[]);
    assert!(
        same(&cut, &seg),
        "cutting at valid_end changed what is read"
    );

    // An append after the cut is read back, behind the same records.
    let next = prev.wrapping_add(1);
    let mut appended = bytes[..valid_end].to_vec();
    appended.extend_from_slice(&wal_record(next, Kind::Event as u8 | 0x80, b"appended"));
    let after = parse_segment(&appended, last_seq, &[]);
    let is_append = |r: &Record| {
        (r.seq, r.kind, r.keyed, &r.payload[..]) == (next, Kind::Event, true, &b"appended"[..])
    };
    if after.records.last().is_some_and(is_append) {
        assert_eq!(after.records[..after.records.len() - 1], seg.records[..]);
        assert_eq!(after.valid_end as usize, appended.len());
    } else {
        // The bytes before the cut alone give exactly `seg`: a record that is neither
        // one of those nor the append starts before the cut and ends after it.
        assert!(
            after
                .records
                .iter()
                .any(|r| !seg.records.contains(r) && !is_append(r)),
            "the record appended after the cut is lost"
        );
    }
});
