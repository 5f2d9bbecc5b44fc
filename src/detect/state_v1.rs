//! The pair state as stored by earlier versions: 26 signals in fixed arrays and no slot
//! run (checkpoints `PWCKPT02` and `PWCKPT03`, changelog records of version 1). Read
//! back and converted on restore, never written.

use crate::detect::event::AgeBand;
use crate::detect::lexicon::MAX_LANGUAGES;
use crate::detect::rules::Pattern;
use crate::detect::signal::SIGNAL_COUNT;
use crate::detect::state::{Active, EvidenceRef, PairState, Raised, RECENT_IDS};
use crate::detect::time::Millis;
use serde::{Deserialize, Serialize};

/// Signals known to the first stored form.
const V1_SIGNALS: usize = 26;

#[derive(Serialize, Deserialize)]
struct ActiveV1 {
    counts: [[u16; V1_SIGNALS]; 2],
    first_s: [[u32; V1_SIGNALS]; 2],
    last_s: [[u32; V1_SIGNALS]; 2],
    deadline: [Option<Millis>; 2],
    evidence: Vec<EvidenceRef>,
    raised: [Option<Raised>; Pattern::ALL.len()],
}

/// A pair's state in the first stored form.
#[derive(Serialize, Deserialize)]
pub struct PairStateV1 {
    first_contact: Millis,
    last_seen: Millis,
    users: [u64; 2],
    bands: [AgeBand; 2],
    lang_hits: [[u8; MAX_LANGUAGES]; 2],
    recent: [u32; RECENT_IDS],
    active: Option<Box<ActiveV1>>,
}

fn widen<T: Copy + Default>(a: [[T; V1_SIGNALS]; 2]) -> [[T; SIGNAL_COUNT]; 2] {
    let mut out = [[T::default(); SIGNAL_COUNT]; 2];
    for side in 0..2 {
        out[side][..V1_SIGNALS].copy_from_slice(&a[side]);
    }
    out
}

impl From<PairStateV1> for PairState {
    fn from(v: PairStateV1) -> PairState {
        let mut s = PairState::new(v.first_contact);
        s.last_seen = v.last_seen;
        s.users = v.users;
        s.bands = v.bands;
        s.lang_hits = v.lang_hits;
        s.recent = v.recent;
        s.active = v.active.map(|a| {
            Box::new(Active {
                counts: widen(a.counts),
                first_s: widen(a.first_s),
                last_s: widen(a.last_s),
                deadline: a.deadline,
                evidence: a.evidence,
                raised: a.raised,
                slots_of: Vec::new(),
            })
        });
        s
    }
}

#[cfg(test)]
impl PairStateV1 {
    /// `s` in the first stored form, as an earlier version wrote it (signals it did not
    /// know, and the slot run, are dropped).
    pub fn of(s: &PairState) -> PairStateV1 {
        let narrow =
            |a: &[[u16; SIGNAL_COUNT]; 2]| [0, 1].map(|side| std::array::from_fn(|i| a[side][i]));
        let narrow32 =
            |a: &[[u32; SIGNAL_COUNT]; 2]| [0, 1].map(|side| std::array::from_fn(|i| a[side][i]));
        PairStateV1 {
            first_contact: s.first_contact,
            last_seen: s.last_seen,
            users: s.users,
            bands: s.bands,
            lang_hits: s.lang_hits,
            recent: s.recent,
            active: s.active.as_ref().map(|a| {
                Box::new(ActiveV1 {
                    counts: narrow(&a.counts),
                    first_s: narrow32(&a.first_s),
                    last_s: narrow32(&a.last_s),
                    deadline: a.deadline,
                    evidence: a.evidence.clone(),
                    raised: a.raised,
                })
            }),
        }
    }
}
