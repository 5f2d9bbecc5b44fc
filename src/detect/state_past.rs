//! The pair state as stored by earlier versions, read back and converted on restore,
//! never written:
//! - the first form ([`PairStateV1`]): 26 signals in fixed arrays, no slot run
//!   (checkpoints `PWCKPT02` and `PWCKPT03`, changelog records of version 1);
//! - the second form ([`PairStateV2`]): per-signal sequences and the slot run, but no
//!   relationship, contact history or raised-alert details (checkpoints `PWCKPT04`,
//!   changelog records of version 2);
//! - the third form ([`PairStateV3`]): every current field, but 31 signals and four
//!   patterns, before the nude-media facts and `KNOWN_ABUSE_MATERIAL` (checkpoints
//!   `PWCKPT05`, changelog records of version 3).
//!
//! All three store signal sets in 32 bits (`SignalSetV1`; today's take 64) and one
//! raised slot for each of the first four patterns: a set reads back with the same bits,
//! a slot as the same pattern (patterns are only ever added last), and the patterns
//! added since have no alert.
//!
//! Alerts read from the first two forms come back without their details: they are not
//! restated by updates (`deadline_passed`, `still_in_contact`); a new alert for the pair
//! carries them again.

use crate::detect::event::{AgeBand, Relationship};
use crate::detect::lexicon::MAX_LANGUAGES;
use crate::detect::rules::{Pattern, Priority};
use crate::detect::signal::{SignalSet, SIGNAL_COUNT};
use crate::detect::state::{
    per_signal, Active, EvidenceRef, PairState, Raised, RaisedAlert, RECENT_IDS,
};
use crate::detect::time::Millis;
use serde::{Deserialize, Serialize};

/// Signals known to the first stored form.
const V1_SIGNALS: usize = 26;
/// Patterns known to the first three stored forms, which kept one raised slot each (in
/// [`Pattern::ALL`] order).
const OLD_PATTERNS: usize = 4;

/// A signal set as the first three forms stored it: 32 bits, enough for the signals they
/// knew (at most 31).
#[derive(Clone, Copy, Serialize, Deserialize)]
struct SignalSetV1(u32);

impl From<SignalSetV1> for SignalSet {
    fn from(s: SignalSetV1) -> SignalSet {
        SignalSet(u64::from(s.0))
    }
}

#[cfg(test)]
impl From<SignalSet> for SignalSetV1 {
    /// The low 32 bits: the signals past them did not exist then.
    fn from(s: SignalSet) -> SignalSetV1 {
        SignalSetV1(s.0 as u32)
    }
}

/// An evidence reference as the first three forms stored it (its signals in 32 bits).
#[derive(Serialize, Deserialize)]
struct EvidenceRefV1 {
    event_id: Box<str>,
    sent_at: Millis,
    side: u8,
    signals: SignalSetV1,
    excerpt: Box<str>,
    sha256: [u8; 32],
}

impl From<EvidenceRefV1> for EvidenceRef {
    fn from(e: EvidenceRefV1) -> EvidenceRef {
        EvidenceRef {
            event_id: e.event_id,
            sent_at: e.sent_at,
            side: e.side,
            signals: e.signals.into(),
            excerpt: e.excerpt,
            sha256: e.sha256,
        }
    }
}

#[cfg(test)]
impl From<&EvidenceRef> for EvidenceRefV1 {
    fn from(e: &EvidenceRef) -> EvidenceRefV1 {
        EvidenceRefV1 {
            event_id: e.event_id.clone(),
            sent_at: e.sent_at,
            side: e.side,
            signals: e.signals.into(),
            excerpt: e.excerpt.clone(),
            sha256: e.sha256,
        }
    }
}

fn evidence_from(old: Vec<EvidenceRefV1>) -> Vec<EvidenceRef> {
    old.into_iter().map(EvidenceRef::from).collect()
}

#[cfg(test)]
fn evidence_of(a: &Active) -> Vec<EvidenceRefV1> {
    a.evidence.iter().map(EvidenceRefV1::from).collect()
}

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

/// A raised alert as the third form stored it: the current fields, the alert's signals
/// in 32 bits.
#[derive(Serialize, Deserialize)]
struct RaisedV3 {
    priority: Priority,
    respond_by: Option<Millis>,
    suppressed: bool,
    still_in_contact: bool,
    deadline_passed: bool,
    alert: Option<Box<RaisedAlertV3>>,
}

/// A raised alert's details as the third form stored them.
#[derive(Serialize, Deserialize)]
struct RaisedAlertV3 {
    tenant: Box<str>,
    users: [Box<str>; 2],
    locales: [Option<Box<str>>; 2],
    trigger_event_id: Box<str>,
    triggered_at: Millis,
    suspect: u8,
    respond_by: Option<Millis>,
    rules: Vec<String>,
    read: [SignalSetV1; 2],
}

impl From<RaisedV3> for Raised {
    fn from(r: RaisedV3) -> Raised {
        Raised {
            priority: r.priority,
            respond_by: r.respond_by,
            suppressed: r.suppressed,
            still_in_contact: r.still_in_contact,
            deadline_passed: r.deadline_passed,
            alert: r.alert.map(|a| {
                let a = *a;
                Box::new(RaisedAlert {
                    tenant: a.tenant,
                    users: a.users,
                    locales: a.locales,
                    trigger_event_id: a.trigger_event_id,
                    triggered_at: a.triggered_at,
                    suspect: a.suspect,
                    respond_by: a.respond_by,
                    rules: a.rules,
                    read: a.read.map(SignalSet::from),
                })
            }),
        }
    }
}

#[cfg(test)]
impl From<&Raised> for RaisedV3 {
    fn from(r: &Raised) -> RaisedV3 {
        RaisedV3 {
            priority: r.priority,
            respond_by: r.respond_by,
            suppressed: r.suppressed,
            still_in_contact: r.still_in_contact,
            deadline_passed: r.deadline_passed,
            alert: r.alert.as_deref().map(|a| {
                Box::new(RaisedAlertV3 {
                    tenant: a.tenant.clone(),
                    users: a.users.clone(),
                    locales: a.locales.clone(),
                    trigger_event_id: a.trigger_event_id.clone(),
                    triggered_at: a.triggered_at,
                    suspect: a.suspect,
                    respond_by: a.respond_by,
                    rules: a.rules.clone(),
                    read: a.read.map(SignalSetV1::from),
                })
            }),
        }
    }
}

/// The raised slots of the first three forms, one per pattern they knew.
type OldSlots<R> = [Option<R>; OLD_PATTERNS];

/// The current raised slots from old ones: each old pattern keeps its slot, the patterns
/// added since have none.
fn raised_from<R: Into<Raised>>(old: OldSlots<R>) -> [Option<Raised>; Pattern::ALL.len()] {
    let mut out: [Option<Raised>; Pattern::ALL.len()] = Default::default();
    for (slot, r) in out.iter_mut().zip(old) {
        *slot = r.map(Into::into);
    }
    out
}

#[cfg(test)]
fn raised_of<'a, R: From<&'a Raised>>(a: &'a Active) -> OldSlots<R> {
    std::array::from_fn(|p| a.raised[p].as_ref().map(R::from))
}

#[derive(Serialize, Deserialize)]
struct ActiveV1 {
    counts: [[u16; V1_SIGNALS]; 2],
    first_s: [[u32; V1_SIGNALS]; 2],
    last_s: [[u32; V1_SIGNALS]; 2],
    deadline: [Option<Millis>; 2],
    evidence: Vec<EvidenceRefV1>,
    raised: OldSlots<RaisedV1>,
}

/// A pair's state in the first stored form.
#[derive(Serialize, Deserialize)]
pub struct PairStateV1 {
    head: Head,
    active: Option<Box<ActiveV1>>,
}

fn widen<T: Copy + Default>(a: [[T; V1_SIGNALS]; 2]) -> [[T; SIGNAL_COUNT]; 2] {
    let mut out = [[T::default(); SIGNAL_COUNT]; 2];
    for side in 0..2 {
        out[side][..V1_SIGNALS].copy_from_slice(&a[side]);
    }
    out
}

/// The fields every stored form starts with, in the order they were stored. Nested, it
/// is stored exactly as the same fields written one by one (bincode frames no struct).
#[derive(Serialize, Deserialize)]
struct Head {
    first_contact: Millis,
    last_seen: Millis,
    users: [u64; 2],
    bands: [AgeBand; 2],
    lang_hits: [[u8; MAX_LANGUAGES]; 2],
    recent: [u32; RECENT_IDS],
}

impl Head {
    /// A pair's state from these fields; the rest as new.
    fn state(self) -> PairState {
        let mut s = PairState::new(self.first_contact);
        s.last_seen = self.last_seen;
        s.users = self.users;
        s.bands = self.bands;
        s.lang_hits = self.lang_hits;
        s.recent = self.recent;
        s
    }

    #[cfg(test)]
    fn of(s: &PairState) -> Head {
        Head {
            first_contact: s.first_contact,
            last_seen: s.last_seen,
            users: s.users,
            bands: s.bands,
            lang_hits: s.lang_hits,
            recent: s.recent,
        }
    }
}

impl From<PairStateV1> for PairState {
    fn from(v: PairStateV1) -> PairState {
        let mut s = v.head.state();
        s.active = v.active.map(|a| {
            Box::new(Active {
                counts: widen(a.counts),
                first_s: widen(a.first_s),
                last_s: widen(a.last_s),
                deadline: a.deadline,
                evidence: evidence_from(a.evidence),
                raised: raised_from(a.raised),
                slots_of: Vec::new(),
                shadow: Vec::new(),
            })
        });
        s
    }
}

/// The active part of the second and third forms, which differ only in what a raised
/// slot holds (`R`: [`RaisedV1`] in the second, [`RaisedV3`] in the third).
#[derive(Serialize, Deserialize)]
struct ActiveSeq<R> {
    #[serde(with = "per_signal")]
    counts: [[u16; SIGNAL_COUNT]; 2],
    #[serde(with = "per_signal")]
    first_s: [[u32; SIGNAL_COUNT]; 2],
    #[serde(with = "per_signal")]
    last_s: [[u32; SIGNAL_COUNT]; 2],
    deadline: [Option<Millis>; 2],
    evidence: Vec<EvidenceRefV1>,
    raised: OldSlots<R>,
    slots_of: Vec<(u8, u8, u16)>,
}

impl<R: Into<Raised>> From<ActiveSeq<R>> for Active {
    fn from(a: ActiveSeq<R>) -> Active {
        Active {
            counts: a.counts,
            first_s: a.first_s,
            last_s: a.last_s,
            deadline: a.deadline,
            evidence: evidence_from(a.evidence),
            raised: raised_from(a.raised),
            slots_of: a.slots_of,
            shadow: Vec::new(),
        }
    }
}

#[cfg(test)]
impl<R> ActiveSeq<R> {
    fn of<'a>(a: &'a Active) -> ActiveSeq<R>
    where
        R: From<&'a Raised>,
    {
        ActiveSeq {
            counts: a.counts,
            first_s: a.first_s,
            last_s: a.last_s,
            deadline: a.deadline,
            evidence: evidence_of(a),
            raised: raised_of(a),
            slots_of: a.slots_of.clone(),
        }
    }
}

/// A pair's state in the second stored form.
#[derive(Serialize, Deserialize)]
pub struct PairStateV2 {
    head: Head,
    run: u32,
    active: Option<Box<ActiveSeq<RaisedV1>>>,
}

impl From<PairStateV2> for PairState {
    fn from(v: PairStateV2) -> PairState {
        let mut s = v.head.state();
        s.run = v.run;
        s.active = v.active.map(|a| Box::new(Active::from(*a)));
        s
    }
}

/// A pair's state in the third stored form.
#[derive(Serialize, Deserialize)]
pub struct PairStateV3 {
    head: Head,
    run: u32,
    relationship: Option<Relationship>,
    contact: u8,
    active: Option<Box<ActiveSeq<RaisedV3>>>,
}

impl From<PairStateV3> for PairState {
    fn from(v: PairStateV3) -> PairState {
        let mut s = v.head.state();
        s.run = v.run;
        s.relationship = v.relationship;
        s.contact = v.contact;
        s.active = v.active.map(|a| Box::new(Active::from(*a)));
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
            head: Head::of(s),
            active: s.active.as_ref().map(|a| {
                Box::new(ActiveV1 {
                    counts: narrow(&a.counts),
                    first_s: narrow32(&a.first_s),
                    last_s: narrow32(&a.last_s),
                    deadline: a.deadline,
                    evidence: evidence_of(a),
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
            head: Head::of(s),
            run: s.run,
            active: s
                .active
                .as_deref()
                .map(|a| Box::new(ActiveSeq::<RaisedV1>::of(a))),
        }
    }
}

#[cfg(test)]
impl PairStateV3 {
    /// `s` in the third stored form (signals past the 32 bits of a set and the raised
    /// slots of patterns added since are dropped).
    pub fn of(s: &PairState) -> PairStateV3 {
        PairStateV3 {
            head: Head::of(s),
            run: s.run,
            relationship: s.relationship,
            contact: s.contact,
            active: s
                .active
                .as_deref()
                .map(|a| Box::new(ActiveSeq::<RaisedV3>::of(a))),
        }
    }
}

/// States for the tests of the stored forms (here, in checkpoints, in the changelog).
#[cfg(test)]
pub(crate) mod samples {
    use super::*;
    use crate::detect::event::ContactAction;
    use crate::detect::signal::Signal;

    fn evidence(event_id: &str, sent_at: Millis, signals: SignalSet) -> EvidenceRef {
        EvidenceRef {
            event_id: event_id.into(),
            sent_at,
            side: 1,
            signals,
            excerpt: "send it or everyone sees".into(),
            sha256: [7; 32],
        }
    }

    fn raised(trigger: &str, at: Millis, rule: &str, read: [SignalSet; 2]) -> Raised {
        Raised {
            priority: Priority::P0,
            respond_by: Some(at + 3_600_000),
            suppressed: false,
            still_in_contact: true,
            deadline_passed: true,
            alert: Some(Box::new(RaisedAlert {
                tenant: "t".into(),
                users: ["a".into(), "b".into()],
                locales: [None, Some("en-GB".into())],
                trigger_event_id: trigger.into(),
                triggered_at: at,
                suspect: 1,
                respond_by: Some(at + 3_600_000),
                rules: vec![rule.to_string()],
                read,
            })),
        }
    }

    /// A state using every part the third form holds, with signals it knew only:
    /// counts, evidence, the slot run, the relationship and contact history, a raised
    /// alert with its details.
    pub fn third_form() -> PairState {
        let mut s = PairState::new(1_000);
        s.users = [7, 8];
        s.run = 0x0102;
        s.relationship = Some(Relationship::Acquaintance);
        s.note_contact(ContactAction::FriendRequest);
        let threat = Signal::ThreatToDistribute
            .bit()
            .union(Signal::MoneyDemand.bit());
        s.record(1, threat, 2_000);
        s.add_evidence(evidence("e2", 2_000, threat));
        let read = [threat, Signal::MediaSent.bit()];
        s.active.as_mut().unwrap().raised[Pattern::Sextortion as usize] = Some(raised(
            "e2",
            2_000,
            "sextortion.threat_after_material",
            read,
        ));
        s
    }

    /// [`third_form`] plus what only the current form holds: signals past the 32 bits of
    /// an old set (in counts, evidence and an alert's details) and an alert of the
    /// pattern added last.
    pub fn current_form() -> PairState {
        let mut s = third_form();
        let csam = Signal::KnownAbuseMaterial.bit();
        let nude = Signal::NudeMediaSentAfterRequest.bit();
        s.record(1, csam.union(nude), 3_000);
        s.add_evidence(evidence("e3", 3_000, csam.union(nude)));
        let read = [csam, Signal::ImageRequest.bit()];
        s.active.as_mut().unwrap().raised[Pattern::KnownAbuseMaterial as usize] =
            Some(raised("e3", 3_000, "known_abuse_material.hash_match", read));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::samples::third_form;
    use super::*;

    #[test]
    fn the_third_form_is_the_current_one_with_narrower_sets_and_fewer_slots() {
        let s = third_form();
        let old = PairStateV3::of(&s);
        // Per evidence reference 4 bytes fewer (one set), per alert's details 8 (two
        // sets), one byte (`None`) per raised slot of a pattern added since, and the
        // shadow rules' list (its length, 8 bytes, empty here).
        let a = s.active.as_ref().unwrap();
        assert!(a.shadow.is_empty());
        let details = a.raised.iter().flatten().filter(|r| r.alert.is_some());
        let narrower = 4 * a.evidence.len() + 8 * details.count();
        let fewer = Pattern::ALL.len() - OLD_PATTERNS + 8;
        let size = |v: u64| v as usize;
        assert_eq!(
            size(bincode::serialized_size(&s).unwrap()),
            size(bincode::serialized_size(&old).unwrap()) + narrower + fewer
        );
        let bytes = bincode::serialize(&old).unwrap();
        let back: PairStateV3 = bincode::deserialize(&bytes).unwrap();
        assert_eq!(PairState::from(back), s);
    }

    #[test]
    fn old_slots_keep_their_pattern() {
        let mut old: OldSlots<RaisedV1> = Default::default();
        old[Pattern::SelfHarmRisk as usize] = Some(RaisedV1 {
            priority: Priority::P1,
            respond_by: None,
            suppressed: true,
        });
        let new = raised_from(old);
        assert_eq!(new.len(), Pattern::ALL.len());
        for p in Pattern::ALL {
            let r = new[p as usize].as_ref();
            assert_eq!(r.is_some(), p == Pattern::SelfHarmRisk, "{}", p.as_str());
        }
        assert!(
            new[Pattern::SelfHarmRisk as usize]
                .as_ref()
                .unwrap()
                .suppressed
        );
    }
}
