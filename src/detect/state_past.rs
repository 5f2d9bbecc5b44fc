//! The pair state as stored by earlier versions, read back and converted on restore,
//! never written:
//! - the first form ([`PairStateV1`]): 26 signals in fixed arrays, no slot run
//!   (checkpoints `PWCKPT02` and `PWCKPT03`, changelog records of version 1);
//! - the second form ([`PairStateV2`]): per-signal sequences and the slot run, but no
//!   relationship, contact history or raised-alert details (checkpoints `PWCKPT04`,
//!   changelog records of version 2).
//!
//! Alerts raised before the upgrade come back without their details: they are not
//! restated by updates (`deadline_passed`, `still_in_contact`); a new alert for the pair
//! carries them again.

use crate::detect::event::AgeBand;
use crate::detect::lexicon::MAX_LANGUAGES;
use crate::detect::rules::{Pattern, Priority};
use crate::detect::signal::SIGNAL_COUNT;
use crate::detect::state::{per_signal, Active, EvidenceRef, PairState, Raised, RECENT_IDS};
use crate::detect::time::Millis;
use serde::{Deserialize, Serialize};

/// Signals known to the first stored form.
const V1_SIGNALS: usize = 26;

/// A raised alert as the first two forms stored it.
#[derive(Clone, Copy, Serialize, Deserialize)]
struct RaisedV1 {
    priority: Priority,
    respond_by: Option<Millis>,
    suppressed: bool,
}

impl From<RaisedV1> for Raised {
    fn from(r: RaisedV1) -> Raised {
        Raised {
            priority: r.priority,
            respond_by: r.respond_by,
            suppressed: r.suppressed,
            still_in_contact: false,
            deadline_passed: false,
            alert: None,
        }
    }
}

#[cfg(test)]
impl From<&Raised> for RaisedV1 {
    fn from(r: &Raised) -> RaisedV1 {
        RaisedV1 {
            priority: r.priority,
            respond_by: r.respond_by,
            suppressed: r.suppressed,
        }
    }
}

type RaisedSlots<R> = [Option<R>; Pattern::ALL.len()];

fn raised_from(old: RaisedSlots<RaisedV1>) -> RaisedSlots<Raised> {
    old.map(|r| r.map(Raised::from))
}

#[cfg(test)]
fn raised_of(a: &Active) -> RaisedSlots<RaisedV1> {
    std::array::from_fn(|p| a.raised[p].as_ref().map(RaisedV1::from))
}

#[derive(Serialize, Deserialize)]
struct ActiveV1 {
    counts: [[u16; V1_SIGNALS]; 2],
    first_s: [[u32; V1_SIGNALS]; 2],
    last_s: [[u32; V1_SIGNALS]; 2],
    deadline: [Option<Millis>; 2],
    evidence: Vec<EvidenceRef>,
    raised: RaisedSlots<RaisedV1>,
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

/// The fields every stored form has, in the order they were stored.
type Common = (
    Millis,
    Millis,
    [u64; 2],
    [AgeBand; 2],
    [[u8; MAX_LANGUAGES]; 2],
    [u32; RECENT_IDS],
);

/// A pair's state from the fields every stored form has; the rest as new.
fn state_of(c: Common) -> PairState {
    let (first_contact, last_seen, users, bands, lang_hits, recent) = c;
    let mut s = PairState::new(first_contact);
    s.last_seen = last_seen;
    s.users = users;
    s.bands = bands;
    s.lang_hits = lang_hits;
    s.recent = recent;
    s
}

impl From<PairStateV1> for PairState {
    fn from(v: PairStateV1) -> PairState {
        let mut s = state_of((
            v.first_contact,
            v.last_seen,
            v.users,
            v.bands,
            v.lang_hits,
            v.recent,
        ));
        s.active = v.active.map(|a| {
            Box::new(Active {
                counts: widen(a.counts),
                first_s: widen(a.first_s),
                last_s: widen(a.last_s),
                deadline: a.deadline,
                evidence: a.evidence,
                raised: raised_from(a.raised),
                slots_of: Vec::new(),
            })
        });
        s
    }
}

#[derive(Serialize, Deserialize)]
struct ActiveV2 {
    #[serde(with = "per_signal")]
    counts: [[u16; SIGNAL_COUNT]; 2],
    #[serde(with = "per_signal")]
    first_s: [[u32; SIGNAL_COUNT]; 2],
    #[serde(with = "per_signal")]
    last_s: [[u32; SIGNAL_COUNT]; 2],
    deadline: [Option<Millis>; 2],
    evidence: Vec<EvidenceRef>,
    raised: RaisedSlots<RaisedV1>,
    slots_of: Vec<(u8, u8, u16)>,
}

/// A pair's state in the second stored form.
#[derive(Serialize, Deserialize)]
pub struct PairStateV2 {
    first_contact: Millis,
    last_seen: Millis,
    users: [u64; 2],
    bands: [AgeBand; 2],
    lang_hits: [[u8; MAX_LANGUAGES]; 2],
    recent: [u32; RECENT_IDS],
    run: u32,
    active: Option<Box<ActiveV2>>,
}

impl From<PairStateV2> for PairState {
    fn from(v: PairStateV2) -> PairState {
        let mut s = state_of((
            v.first_contact,
            v.last_seen,
            v.users,
            v.bands,
            v.lang_hits,
            v.recent,
        ));
        s.run = v.run;
        s.active = v.active.map(|a| {
            Box::new(Active {
                counts: a.counts,
                first_s: a.first_s,
                last_s: a.last_s,
                deadline: a.deadline,
                evidence: a.evidence,
                raised: raised_from(a.raised),
                slots_of: a.slots_of,
            })
        });
        s
    }
}

#[cfg(test)]
impl PairStateV1 {
    /// `s` in the first stored form, as an earlier version wrote it (signals it did not
    /// know, the slot run and the alert details are dropped).
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
                    raised: raised_of(a),
                })
            }),
        }
    }
}

#[cfg(test)]
impl PairStateV2 {
    /// `s` in the second stored form (the relationship, contact history and alert
    /// details are dropped).
    pub fn of(s: &PairState) -> PairStateV2 {
        PairStateV2 {
            first_contact: s.first_contact,
            last_seen: s.last_seen,
            users: s.users,
            bands: s.bands,
            lang_hits: s.lang_hits,
            recent: s.recent,
            run: s.run,
            active: s.active.as_ref().map(|a| {
                Box::new(ActiveV2 {
                    counts: a.counts,
                    first_s: a.first_s,
                    last_s: a.last_s,
                    deadline: a.deadline,
                    evidence: a.evidence.clone(),
                    raised: raised_of(a),
                    slots_of: a.slots_of.clone(),
                })
            }),
        }
    }
}
