//! Pair state: what the engine remembers of each conversation, keyed by pair.
//!
//! The key is a 128-bit hash of `(tenant, min(user), max(user))`; side 0 is the smaller
//! user id. An idle pair (no signal yet) is a few dozen bytes; the per-side counters,
//! evidence and alert records live in a boxed [`Active`] part, created on the first
//! signal and bounded whatever the conversation length. Pairs idle for longer than the
//! TTL (event time) are swept out.

use crate::event::AgeBand;
use crate::lexicon::MAX_LANGUAGES;
use crate::rules::{Pattern, Priority};
use crate::signal::{Signal, SignalSet, SIGNAL_COUNT};
use crate::time::{Millis, SECOND};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use xxhash_rust::xxh3::{xxh3_64, Xxh3};

/// Most evidence references kept per pair.
pub const MAX_EVIDENCE: usize = 12;
/// Event ids remembered per pair to drop a client's retry of an event already counted.
pub const RECENT_IDS: usize = 4;

/// Hash of `(tenant, min user, max user)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PairKey(pub u128);

impl PairKey {
    /// The key and the side of `a` (0 if `a` is the smaller id).
    pub fn of(tenant: &str, a: &str, b: &str) -> (PairKey, usize) {
        let (lo, hi, side) = if a <= b { (a, b, 0) } else { (b, a, 1) };
        let mut h = Xxh3::new();
        h.update(tenant.as_bytes());
        h.update(&[0]);
        h.update(lo.as_bytes());
        h.update(&[0]);
        h.update(hi.as_bytes());
        (PairKey(h.digest128()), side)
    }
}

/// Stable hash of a user id, kept per side so that a user can be forgotten.
pub fn user_hash(user_id: &str) -> u64 {
    xxh3_64(user_id.as_bytes())
}

/// The keys are already uniform hashes: fold them instead of hashing again.
#[derive(Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(b);
        }
    }
    fn write_u128(&mut self, v: u128) {
        self.0 ^= (v as u64) ^ ((v >> 64) as u64);
    }
}

/// One message (or media, call) kept as evidence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceRef {
    pub event_id: Box<str>,
    pub sent_at: Millis,
    pub side: u8,
    pub signals: SignalSet,
    /// At most 200 characters of the original text.
    pub excerpt: Box<str>,
    pub sha256: [u8; 32],
}

/// The last alert raised for one pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Raised {
    pub priority: Priority,
    pub respond_by: Option<Millis>,
    /// A moderator judged the alert a false positive: only a higher priority re-alerts.
    pub suppressed: bool,
}

/// The part of a pair's state that exists once a signal was seen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Active {
    pub counts: [[u16; SIGNAL_COUNT]; 2],
    /// Seconds since first contact of the first and last occurrence.
    pub first_s: [[u32; SIGNAL_COUNT]; 2],
    pub last_s: [[u32; SIGNAL_COUNT]; 2],
    /// The latest deadline read in each side's messages.
    pub deadline: [Option<Millis>; 2],
    pub evidence: Vec<EvidenceRef>,
    pub raised: [Option<Raised>; Pattern::ALL.len()],
}

impl Default for Active {
    fn default() -> Self {
        Active {
            counts: [[0; SIGNAL_COUNT]; 2],
            first_s: [[0; SIGNAL_COUNT]; 2],
            last_s: [[0; SIGNAL_COUNT]; 2],
            deadline: [None; 2],
            evidence: Vec::new(),
            raised: [None; Pattern::ALL.len()],
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairState {
    pub first_contact: Millis,
    pub last_seen: Millis,
    pub users: [u64; 2],
    pub bands: [AgeBand; 2],
    /// Lexicon matches per side and language, saturating: a guess at each side's language.
    pub lang_hits: [[u8; MAX_LANGUAGES]; 2],
    /// 32-bit hashes of the pair's last event ids (0: empty slot).
    pub recent: [u32; RECENT_IDS],
    pub active: Option<Box<Active>>,
}

impl PairState {
    pub fn new(at: Millis) -> Self {
        PairState {
            first_contact: at,
            last_seen: at,
            users: [0; 2],
            bands: [AgeBand::Unknown; 2],
            lang_hits: [[0; MAX_LANGUAGES]; 2],
            recent: [0; RECENT_IDS],
            active: None,
        }
    }

    /// Remembers `event_id`; false if it is one of the pair's last few (a retry).
    pub fn first_time(&mut self, event_id: &str) -> bool {
        let h = (xxh3_64(event_id.as_bytes()) as u32).max(1);
        if self.recent.contains(&h) {
            return false;
        }
        self.recent.rotate_left(1);
        self.recent[RECENT_IDS - 1] = h;
        true
    }

    pub fn count(&self, side: usize, s: Signal) -> u16 {
        self.active
            .as_ref()
            .map_or(0, |a| a.counts[side][s as usize])
    }

    fn since_contact_s(&self, at: Millis) -> u32 {
        ((at - self.first_contact).max(0) / SECOND).min(u32::MAX as i64) as u32
    }

    /// Counts `signals` for `side` at time `at`.
    pub fn record(&mut self, side: usize, signals: SignalSet, at: Millis) {
        let rel = self.since_contact_s(at);
        let a = self.active.get_or_insert_with(Default::default);
        for s in signals.iter() {
            let i = s as usize;
            if a.counts[side][i] == 0 {
                a.first_s[side][i] = rel;
            }
            a.counts[side][i] = a.counts[side][i].saturating_add(1);
            a.last_s[side][i] = rel;
        }
    }

    /// Keeps `e` as evidence, evicting the oldest reference that is not the first one
    /// of some (side, signal) when the list is full.
    pub fn add_evidence(&mut self, e: EvidenceRef) {
        let a = self.active.get_or_insert_with(Default::default);
        if a.evidence.len() == MAX_EVIDENCE {
            let pinned = |k: usize| {
                let r = &a.evidence[k];
                r.signals.iter().any(|s| {
                    !a.evidence[..k]
                        .iter()
                        .any(|o| o.side == r.side && o.signals.contains(s))
                })
            };
            let victim = (0..a.evidence.len()).find(|&k| !pinned(k)).unwrap_or(0);
            a.evidence.remove(victim);
        }
        a.evidence.push(e);
    }

    /// Guess of the side's language: index of the language with most matches.
    pub fn language_of(&self, side: usize) -> Option<usize> {
        let hits = &self.lang_hits[side];
        let (i, n) = hits
            .iter()
            .enumerate()
            .max_by_key(|(i, n)| (**n, usize::MAX - i))?;
        (*n > 0).then_some(i)
    }
}

/// A map keyed by pair, hashed with [`KeyHasher`].
pub type KeyMap<V> = HashMap<PairKey, V, BuildHasherDefault<KeyHasher>>;

/// All pairs of one engine, with event-time expiry.
pub struct PairStore {
    map: KeyMap<PairState>,
    ttl: Millis,
    /// Latest event time seen.
    watermark: Millis,
    last_sweep: Millis,
}

impl PairStore {
    pub fn new(ttl: Millis) -> Self {
        PairStore {
            map: HashMap::default(),
            ttl,
            watermark: Millis::MIN,
            last_sweep: Millis::MIN,
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn get(&self, key: &PairKey) -> Option<&PairState> {
        self.map.get(key)
    }

    /// The pair's state, created at `at` if new (or expired).
    pub fn entry(&mut self, key: PairKey, at: Millis) -> &mut PairState {
        let ttl = self.ttl;
        let state = self.map.entry(key).or_insert_with(|| PairState::new(at));
        if at - state.last_seen > ttl {
            *state = PairState::new(at);
        }
        state
    }

    /// Advances event time; sweeps expired pairs at most once per hour of event time.
    pub fn advance(&mut self, at: Millis) -> usize {
        if at <= self.watermark {
            return 0;
        }
        self.watermark = at;
        if self.last_sweep != Millis::MIN && at - self.last_sweep < crate::time::HOUR {
            return 0;
        }
        self.last_sweep = at;
        let horizon = at - self.ttl;
        let before = self.map.len();
        self.map.retain(|_, s| s.last_seen >= horizon);
        before - self.map.len()
    }

    /// Every pair, for a checkpoint.
    pub fn iter(&self) -> impl Iterator<Item = (&PairKey, &PairState)> {
        self.map.iter()
    }

    /// Puts back a pair from a checkpoint.
    pub fn insert(&mut self, key: PairKey, state: PairState) {
        self.watermark = self.watermark.max(state.last_seen);
        self.map.insert(key, state);
    }

    pub fn remove(&mut self, key: &PairKey) -> Option<PairState> {
        self.map.remove(key)
    }

    pub fn get_mut(&mut self, key: &PairKey) -> Option<&mut PairState> {
        self.map.get_mut(key)
    }

    /// Removes every pair in which `user` takes part; returns how many.
    pub fn forget_user(&mut self, user: &str) -> usize {
        let h = user_hash(user);
        let before = self.map.len();
        self.map.retain(|_, s| s.users[0] != h && s.users[1] != h);
        before - self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::DAY;

    #[test]
    fn pair_key_is_symmetric_and_tenant_scoped() {
        let (k1, s1) = PairKey::of("t", "alice", "bob");
        let (k2, s2) = PairKey::of("t", "bob", "alice");
        assert_eq!(k1, k2);
        assert_eq!((s1, s2), (0, 1));
        assert_ne!(PairKey::of("other", "alice", "bob").0, k1);
        // No ambiguity from concatenation.
        assert_ne!(PairKey::of("t", "ab", "c").0, PairKey::of("t", "a", "bc").0);
    }

    #[test]
    fn idle_pairs_stay_small() {
        assert!(
            std::mem::size_of::<PairState>() <= 80,
            "{}",
            std::mem::size_of::<PairState>()
        );
    }

    #[test]
    fn a_retried_event_is_recognised() {
        let mut s = PairState::new(0);
        assert!(s.first_time("e1"));
        assert!(!s.first_time("e1"));
        for id in ["e2", "e3", "e4", "e5"] {
            assert!(s.first_time(id));
        }
        // Only the last few ids are remembered.
        assert!(s.first_time("e1"));
    }

    #[test]
    fn records_counts_and_times() {
        let mut s = PairState::new(1_000_000);
        let mut set = SignalSet::EMPTY;
        set.insert(Signal::Flattery);
        s.record(1, set, 1_000_000 + 60_000);
        s.record(1, set, 1_000_000 + 120_000);
        let a = s.active.as_ref().unwrap();
        assert_eq!(a.counts[1][Signal::Flattery as usize], 2);
        assert_eq!(
            (
                a.first_s[1][Signal::Flattery as usize],
                a.last_s[1][Signal::Flattery as usize]
            ),
            (60, 120)
        );
        assert_eq!(s.count(0, Signal::Flattery), 0);
    }

    #[test]
    fn evidence_is_bounded_and_keeps_first_occurrences() {
        let mut s = PairState::new(0);
        let ev = |i: usize, sig: Signal| {
            let mut signals = SignalSet::EMPTY;
            signals.insert(sig);
            EvidenceRef {
                event_id: format!("e{i}").into(),
                sent_at: i as i64,
                side: 0,
                signals,
                excerpt: "".into(),
                sha256: [0; 32],
            }
        };
        s.add_evidence(ev(0, Signal::ThreatToDistribute));
        for i in 1..100 {
            s.add_evidence(ev(i, Signal::Flattery));
        }
        let a = s.active.as_ref().unwrap();
        assert_eq!(a.evidence.len(), MAX_EVIDENCE);
        assert_eq!(&*a.evidence[0].event_id, "e0");
        assert_eq!(&*a.evidence[1].event_id, "e1");
        assert_eq!(&*a.evidence[MAX_EVIDENCE - 1].event_id, "e99");
    }

    #[test]
    fn expiry_and_forgetting() {
        let mut store = PairStore::new(30 * DAY);
        let (k, _) = PairKey::of("t", "a", "b");
        store.entry(k, 0).users = [user_hash("a"), user_hash("b")];
        let (k2, _) = PairKey::of("t", "c", "d");
        store.entry(k2, 20 * DAY).users = [user_hash("c"), user_hash("d")];
        store.advance(20 * DAY);
        assert_eq!(store.len(), 2);
        assert_eq!(store.advance(31 * DAY), 1);
        assert!(store.get(&k).is_none());
        assert_eq!(store.forget_user("d"), 1);
        assert!(store.is_empty());
    }

    #[test]
    fn a_pair_idle_past_the_ttl_starts_over() {
        let mut store = PairStore::new(DAY);
        let (k, _) = PairKey::of("t", "a", "b");
        store.entry(k, 0).record(0, Signal::Flattery.bit(), 0);
        let s = store.entry(k, 2 * DAY);
        assert_eq!(s.first_contact, 2 * DAY);
        assert!(s.active.is_none());
    }
}
