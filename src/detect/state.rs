//! Pair state: what the engine remembers of each conversation, keyed by pair.
//!
//! The key is a 128-bit hash of `(tenant, min(user), max(user))`; side 0 is the smaller
//! user id. An idle pair (no signal yet) is a few dozen bytes; the per-side counters,
//! evidence and alert records live in a boxed [`Active`] part, created on the first
//! signal and bounded whatever the conversation length. Pairs idle for longer than the
//! TTL (event time) are swept out.
//!
//! Event time is kept per tenant: each tenant has its own watermark (latest `sent_at` of
//! its events), and a pair expires relative to its own tenant's watermark only, so one
//! tenant's clock (a bad one: a year ahead) never expires another tenant's pairs.
//! Pairs of unknown tenant (restored from an old checkpoint) go by a legacy clock of
//! their own (see [`PairStore`]).

use crate::detect::event::{AgeBand, ContactAction, Relationship};
use crate::detect::grammar::SlotSet;
use crate::detect::lexicon::MAX_LANGUAGES;
use crate::detect::rules::{KnownPolicy, Pattern, Priority};
use crate::detect::signal::{Signal, SignalSet, SIGNAL_COUNT};
use crate::detect::time::{Millis, SECOND};
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

/// Stable 64-bit hash of a tenant, as kept in [`PairState::tenant`]; never 0 (0 means
/// "unknown": a pair restored from a checkpoint older than the per-tenant watermark).
pub fn tenant_hash(tenant: &str) -> u64 {
    xxh3_64(tenant.as_bytes()).max(1)
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

/// The last alert raised for one pattern, and the facts learnt since.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Raised {
    pub priority: Priority,
    /// The deadline kept for the pattern: the earliest one still ahead.
    pub respond_by: Option<Millis>,
    /// A moderator judged the alert a false positive: only a higher priority re-alerts.
    pub suppressed: bool,
    /// The target went on answering after the alert; cleared by its block or report.
    pub still_in_contact: bool,
    /// Event time (in `serve`, also the wall clock) passed the alert's `respond_by`.
    pub deadline_passed: bool,
    /// The alert as raised, to restate it in an update; `None` in state stored by a
    /// version without updates.
    pub alert: Option<Box<RaisedAlert>>,
}

/// What the engine needs to build a raised alert again, with the same id: who, where,
/// which event triggered it, which rules fired.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaisedAlert {
    pub tenant: Box<str>,
    /// User ids by side.
    pub users: [Box<str>; 2],
    /// Locales by side, as the platform gave them.
    pub locales: [Option<Box<str>>; 2],
    pub trigger_event_id: Box<str>,
    pub triggered_at: Millis,
    /// Side of the suspect.
    pub suspect: u8,
    /// The alert's `respond_by`.
    pub respond_by: Option<Millis>,
    pub rules: Vec<String>,
    /// Signals the fired rules read, per side (suspect, target).
    pub read: [SignalSet; 2],
}

impl RaisedAlert {
    /// The suspect's side, 0 or 1 (whatever a damaged record stored).
    pub fn suspect_side(&self) -> usize {
        usize::from(self.suspect & 1)
    }
}

/// The part of a pair's state that exists once a signal was seen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Active {
    #[serde(with = "per_signal")]
    pub counts: [[u16; SIGNAL_COUNT]; 2],
    /// Seconds since first contact of the first and last occurrence.
    #[serde(with = "per_signal")]
    pub first_s: [[u32; SIGNAL_COUNT]; 2],
    #[serde(with = "per_signal")]
    pub last_s: [[u32; SIGNAL_COUNT]; 2],
    /// The latest deadline read in each side's messages.
    pub deadline: [Option<Millis>; 2],
    pub evidence: Vec<EvidenceRef>,
    pub raised: [Option<Raised>; Pattern::ALL.len()],
    /// (side, signal, slot bits): the slots that first composed a signal of a side.
    pub slots_of: Vec<(u8, u8, u16)>,
    /// (hash of the rule id, priority): the most urgent priority each shadow rule would
    /// have alerted at on this pair, so that it counts again only as a live rule would
    /// alert again, on a rise.
    pub shadow: Vec<(u32, Priority)>,
}

impl Default for Active {
    fn default() -> Self {
        Active {
            counts: [[0; SIGNAL_COUNT]; 2],
            first_s: [[0; SIGNAL_COUNT]; 2],
            last_s: [[0; SIGNAL_COUNT]; 2],
            deadline: [None; 2],
            evidence: Vec::new(),
            raised: Default::default(),
            slots_of: Vec::new(),
            shadow: Vec::new(),
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
    /// The slots seen in the current run of one side's consecutive messages
    /// ([`SlotRun`], packed).
    pub run: u32,
    /// The latest relationship hint of the platform, from either side.
    pub relationship: Option<Relationship>,
    /// The contact actions seen between the two sides ([`ContactAction`] bits).
    pub contact: u8,
    pub active: Option<Box<Active>>,
    /// [`tenant_hash`] of the pair's tenant; 0 while unknown (restored from an old
    /// checkpoint, set again by the pair's next event). Not part of the serialised form
    /// (checkpoints and the Kafka changelog carry it beside the state), so that form is
    /// unchanged.
    #[serde(skip)]
    pub tenant: u64,
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
            run: 0,
            relationship: None,
            contact: 0,
            active: None,
            tenant: 0,
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

    /// Forgets the count of `signal` for `side` (a target that blocked the suspect is no
    /// longer in contact).
    pub fn clear(&mut self, side: usize, s: Signal) {
        if let Some(a) = self.active.as_mut() {
            a.counts[side][s as usize] = 0;
        }
    }

    /// Remembers that `slots` composed `signal` for `side`, if nothing did before.
    pub fn note_slots(&mut self, side: usize, signal: Signal, slots: SlotSet) {
        let a = self.active.get_or_insert_with(Default::default);
        let (side, signal) = (side as u8, signal as u8);
        if !a.slots_of.iter().any(|e| e.0 == side && e.1 == signal) {
            a.slots_of.push((side, signal, slots.0));
        }
    }

    /// The slots that first composed `signal` for `side`, if any did.
    pub fn slots_of(&self, side: usize, signal: Signal) -> SlotSet {
        self.active
            .as_ref()
            .and_then(|a| {
                a.slots_of
                    .iter()
                    .find(|e| usize::from(e.0) == side && e.1 == signal as u8)
            })
            .map_or(SlotSet::EMPTY, |e| SlotSet(e.2))
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

    /// Whether the two sides know each other at `now` (the fact `KNOWN_CONTACT`).
    pub fn known(&self, policy: &KnownPolicy, now: Millis) -> bool {
        let talked = now - self.first_contact;
        self.relationship.is_some()
            || (self.had_contact(ContactAction::FriendAccept) && talked >= policy.friends_for)
            || talked >= policy.talked_for
    }

    /// Remembers a contact action between the two sides (a friend request, accepted).
    pub fn note_contact(&mut self, action: ContactAction) {
        self.contact |= 1 << action as u8;
    }

    pub fn had_contact(&self, action: ContactAction) -> bool {
        self.contact & 1 << action as u8 != 0
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

/// Per-signal arrays are stored as sequences, so that a signal added later reads older
/// state back with zeros for it.
pub(crate) mod per_signal {
    use super::SIGNAL_COUNT;
    use serde::{de::Error, Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(
        a: &[[T; SIGNAL_COUNT]; 2],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        (&a[0][..], &a[1][..]).serialize(s)
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<[[T; SIGNAL_COUNT]; 2], D::Error>
    where
        T: Deserialize<'de> + Copy + Default,
        D: Deserializer<'de>,
    {
        let (a, b): (Vec<T>, Vec<T>) = Deserialize::deserialize(d)?;
        let mut out = [[T::default(); SIGNAL_COUNT]; 2];
        for (side, v) in [a, b].into_iter().enumerate() {
            if v.len() > SIGNAL_COUNT {
                return Err(D::Error::custom("more signals than this version knows"));
            }
            out[side][..v.len()].copy_from_slice(&v);
        }
        Ok(out)
    }
}

/// A map keyed by pair, hashed with [`KeyHasher`].
pub type KeyMap<V> = HashMap<PairKey, V, BuildHasherDefault<KeyHasher>>;

/// Event time of one tenant.
#[derive(Clone, Copy, Debug)]
struct Clock {
    /// Latest event time of the tenant's counted events.
    watermark: Millis,
    /// The watermark at the last sweep pass.
    swept: Millis,
    /// The tenant's pairs kept by the current sweep pass (counted during the pass only):
    /// a clock left with none is dropped.
    pairs: u32,
}

impl Clock {
    fn new(watermark: Millis, swept: Millis) -> Self {
        Clock {
            watermark,
            swept,
            pairs: 0,
        }
    }
}

type Clocks = HashMap<u64, Clock, BuildHasherDefault<KeyHasher>>;

/// Pairs of `tenant` last seen before this are expired: the TTL before the tenant's
/// watermark, before the `legacy` clock for tenant 0 (unknown), never (`MIN`) for a
/// tenant without a clock.
fn horizon_in(clocks: &Clocks, legacy: Millis, ttl: Millis, tenant: u64) -> Millis {
    let clock = match tenant {
        0 => legacy,
        t => clocks.get(&t).map_or(Millis::MIN, |c| c.watermark),
    };
    clock.saturating_sub(ttl)
}

/// A sweep pass visits every pair; it runs only once some tenant's event time moved an
/// hour past its last sweep, and at most once per `len / PASS_SPACING` events, so that
/// its cost stays a few pair visits per event however many tenants there are (a tenant
/// could otherwise walk its clock forward an hour per event from 1970).
const PASS_SPACING: usize = 8;

/// All pairs of one engine, with event-time expiry per tenant.
///
/// A pair is expired once its `last_seen` is more than the TTL before its tenant's
/// watermark. Expired pairs are invisible at once ([`PairStore::get`], [`PairStore::entry`]
/// start over, [`PairStore::forget_user`] does not count them) and removed from memory by
/// the next sweep pass, which removes those of every tenant at once: what a tenant
/// observes depends on its own events only, never on when another tenant's events
/// triggered a pass.
///
/// Pairs of unknown tenant (0, restored from a checkpoint older than per-tenant event
/// time, until their next event) go by the *legacy clock*: the latest `last_seen` of
/// the pairs restored, moved forward by every tenant's watermark (it is the maximum of
/// the two, and never moves back, even when a tenant's clock is dropped). Following the
/// most advanced tenant is safe because the service refuses events dated further ahead
/// than `limits.max_future_skew` (10 minutes by default), so the maximum is close to
/// real time; the earliest watermark would not be: one idle tenant, or one event dated
/// 1970, would hold every legacy pair forever. (Without that limit, as in `replay`, a
/// clock far ahead expires the legacy pairs: replay restores none.)
///
/// A sweep pass also drops the clocks of tenants left with no pair, so that the clocks
/// are bounded by the tenants with pairs in memory, not by every tenant string a client
/// ever sent. Such a tenant's next event starts its clock over.
pub struct PairStore {
    map: KeyMap<PairState>,
    ttl: Millis,
    clocks: Clocks,
    /// The legacy clock of pairs of unknown tenant (see above); `MIN` before any.
    legacy: Millis,
    /// A tenant's clock moved an hour past its last sweep.
    due: bool,
    /// Counted events since the last sweep pass.
    since_pass: usize,
}

impl PairStore {
    pub fn new(ttl: Millis) -> Self {
        PairStore {
            map: HashMap::default(),
            ttl,
            clocks: HashMap::default(),
            legacy: Millis::MIN,
            due: false,
            since_pass: 0,
        }
    }

    /// Pairs held in memory, expired ones not yet swept included.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The tenant's watermark (latest event time), if it has had an event.
    pub fn watermark(&self, tenant: u64) -> Option<Millis> {
        self.clocks.get(&tenant).map(|c| c.watermark)
    }

    /// Pairs of `tenant` last seen before this are expired.
    fn horizon(&self, tenant: u64) -> Millis {
        horizon_in(&self.clocks, self.legacy, self.ttl, tenant)
    }

    fn live(&self, s: &PairState) -> bool {
        s.last_seen >= self.horizon(s.tenant)
    }

    /// True if an event of `tenant` at `at` is older than the TTL relative to the
    /// tenant's watermark: the pair it belongs to has expired (or would have), so the
    /// event is not counted.
    pub fn is_late(&self, tenant: u64, at: Millis) -> bool {
        at < self.horizon(tenant)
    }

    /// A live pair's state.
    pub fn get(&self, key: &PairKey) -> Option<&PairState> {
        self.map.get(key).filter(|s| self.live(s))
    }

    /// The state of the pair `key` of `tenant` for an event at `at`, new if the pair is
    /// unknown or expired (relative to the tenant's watermark, or to `at`; a pair of
    /// unknown tenant also relative to the legacy clock, as [`PairStore::get`] sees it).
    pub fn entry(&mut self, key: PairKey, tenant: u64, at: Millis) -> &mut PairState {
        let horizon = self.horizon(tenant).max(at.saturating_sub(self.ttl));
        let legacy = self.horizon(0);
        let state = self.map.entry(key).or_insert_with(|| PairState::new(at));
        let own = if state.tenant == 0 {
            legacy
        } else {
            Millis::MIN
        };
        if state.last_seen < horizon.max(own) {
            *state = PairState::new(at);
        }
        state.tenant = tenant;
        state
    }

    /// Moves `tenant`'s event time to `at` after one of its events was counted. Sweeps
    /// the expired pairs of every tenant when some tenant's event time moved an hour
    /// past its last sweep (amortised: see [`PASS_SPACING`]); returns how many went.
    pub fn advance(&mut self, tenant: u64, at: Millis) -> usize {
        self.since_pass += 1;
        self.legacy = self.legacy.max(at);
        let clock = self.clocks.entry(tenant).or_insert(Clock::new(at, at));
        clock.watermark = clock.watermark.max(at);
        if clock.watermark.saturating_sub(clock.swept) >= crate::detect::time::HOUR {
            self.due = true;
        }
        if self.due && self.since_pass >= self.map.len() / PASS_SPACING {
            self.sweep()
        } else {
            0
        }
    }

    /// Removes every expired pair, of every tenant, in one pass, and the clocks of the
    /// tenants left with no pair.
    fn sweep(&mut self) -> usize {
        self.due = false;
        self.since_pass = 0;
        let ttl = self.ttl;
        let legacy = self.legacy.saturating_sub(ttl);
        for c in self.clocks.values_mut() {
            c.swept = c.watermark;
            c.pairs = 0;
        }
        let clocks = &mut self.clocks;
        let before = self.map.len();
        self.map.retain(|_, s| {
            if s.tenant == 0 {
                return s.last_seen >= legacy;
            }
            // A tenant without a clock: its pairs never expire (none in practice: a
            // pair's tenant is set just before its event moves the tenant's clock).
            let Some(c) = clocks.get_mut(&s.tenant) else {
                return true;
            };
            let keep = s.last_seen >= c.watermark.saturating_sub(ttl);
            if keep {
                c.pairs = c.pairs.saturating_add(1);
            }
            keep
        });
        self.clocks.retain(|_, c| c.pairs > 0);
        // Give back the room of dropped clocks (amortised: only once mostly empty).
        if self.clocks.capacity() > 64 && self.clocks.capacity() > 4 * self.clocks.len() {
            self.clocks.shrink_to(2 * self.clocks.len());
        }
        before - self.map.len()
    }

    /// Every pair held, for a checkpoint (expired ones not yet swept included: they
    /// stay expired once restored).
    pub fn iter(&self) -> impl Iterator<Item = (&PairKey, &PairState)> {
        self.map.iter()
    }

    /// Puts back a pair from a checkpoint or the changelog; its `tenant` (if known)
    /// moves that tenant's watermark to the pair's `last_seen` at least, and the legacy
    /// clock (pairs of unknown tenant) moves to it in any case. The first pass after a
    /// restore sweeps.
    pub fn insert(&mut self, key: PairKey, state: PairState) {
        self.legacy = self.legacy.max(state.last_seen);
        if state.tenant != 0 {
            let c = (self.clocks)
                .entry(state.tenant)
                .or_insert(Clock::new(state.last_seen, Millis::MIN));
            c.watermark = c.watermark.max(state.last_seen);
        }
        self.due = true;
        self.map.insert(key, state);
    }

    pub fn reserve(&mut self, n: usize) {
        self.map.reserve(n);
    }

    pub fn remove(&mut self, key: &PairKey) -> Option<PairState> {
        self.map.remove(key)
    }

    /// A live pair's state, to change it.
    pub fn get_mut(&mut self, key: &PairKey) -> Option<&mut PairState> {
        let state = self.map.get(key)?;
        if !self.live(state) {
            return None;
        }
        self.map.get_mut(key)
    }

    /// Removes every pair of `tenant` (`None`: of every tenant) in which `user` takes
    /// part; returns how many were live. A pair of unknown tenant (restored from a
    /// checkpoint older than tenants in pair state) is removed whatever the tenant.
    /// Expired pairs not swept yet are removed too but not counted, so that the count
    /// does not depend on when a sweep pass (maybe triggered by another tenant) ran.
    /// The keys of every pair removed are added to `removed`.
    pub fn forget_user(
        &mut self,
        tenant: Option<&str>,
        user: &str,
        removed: &mut Vec<PairKey>,
    ) -> usize {
        let h = user_hash(user);
        let t = tenant.map(tenant_hash);
        let (clocks, legacy, ttl) = (&self.clocks, self.legacy, self.ttl);
        let mut live = 0;
        self.map.retain(|k, s| {
            let of_tenant = t.is_none_or(|t| s.tenant == t || s.tenant == 0);
            if !of_tenant || (s.users[0] != h && s.users[1] != h) {
                return true;
            }
            removed.push(*k);
            if s.last_seen >= horizon_in(clocks, legacy, ttl, s.tenant) {
                live += 1;
            }
            false
        });
        live
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::time::DAY;

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
        // 88 bytes inline (the tenant hash included), about 205 bytes per idle pair
        // with the map's overhead: under the 256 bytes budget.
        assert!(
            std::mem::size_of::<PairState>() <= 88,
            "{}",
            std::mem::size_of::<PairState>()
        );
    }

    #[test]
    fn the_tenant_is_not_part_of_the_serialised_state() {
        let mut s = PairState::new(5);
        let before = bincode::serialize(&s).unwrap();
        s.tenant = tenant_hash("t");
        assert_eq!(bincode::serialize(&s).unwrap(), before);
        let back: PairState = bincode::deserialize(&before).unwrap();
        assert_eq!(back.tenant, 0);
        assert_ne!(tenant_hash(""), 0);
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
        let t = tenant_hash("t");
        let mut store = PairStore::new(30 * DAY);
        let (k, _) = PairKey::of("t", "a", "b");
        store.entry(k, t, 0).users = [user_hash("a"), user_hash("b")];
        store.advance(t, 0);
        let (k2, _) = PairKey::of("t", "c", "d");
        store.entry(k2, t, 20 * DAY).users = [user_hash("c"), user_hash("d")];
        assert_eq!(store.advance(t, 20 * DAY), 0);
        assert_eq!(store.len(), 2);
        let (k3, _) = PairKey::of("t", "e", "f");
        store.entry(k3, t, 31 * DAY);
        assert_eq!(store.advance(t, 31 * DAY), 1);
        assert!(store.get(&k).is_none());
        // The same id in another tenant is another person.
        assert_eq!(store.forget_user(Some("other"), "d", &mut Vec::new()), 0);
        assert_eq!(store.len(), 2);
        assert_eq!(store.forget_user(Some("t"), "d", &mut Vec::new()), 1);
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn a_pair_idle_past_the_ttl_starts_over() {
        let t = tenant_hash("t");
        let mut store = PairStore::new(DAY);
        let (k, _) = PairKey::of("t", "a", "b");
        store.entry(k, t, 0).record(0, Signal::Flattery.bit(), 0);
        let s = store.entry(k, t, 2 * DAY);
        assert_eq!(s.first_contact, 2 * DAY);
        assert!(s.active.is_none());
        assert_eq!(s.tenant, t);
    }

    /// Counts an event of `tenant` at `at` on the pair of `a` and `b`, as the engine does.
    fn event(store: &mut PairStore, tenant: &str, a: &str, b: &str, at: Millis) -> usize {
        let (k, _) = PairKey::of(tenant, a, b);
        let t = tenant_hash(tenant);
        assert!(!store.is_late(t, at));
        let s = store.entry(k, t, at);
        if s.users == [0, 0] {
            s.users = [user_hash(a.min(b)), user_hash(a.max(b))];
        }
        s.last_seen = s.last_seen.max(at);
        store.advance(t, at)
    }

    #[test]
    fn a_tenant_clock_far_ahead_expires_only_that_tenants_pairs() {
        let mut store = PairStore::new(30 * DAY);
        let year_9998 = crate::detect::time::parse_rfc3339("9998-06-01T00:00:00Z").unwrap();
        for i in 0..20 {
            event(
                &mut store,
                "a",
                &format!("u{i}"),
                "v",
                i * crate::detect::time::HOUR,
            );
        }
        event(&mut store, "b", "x", "y", 0);
        // Tenant b's clock jumps 31 days ahead, then to the year 9998.
        event(&mut store, "b", "x", "z", 31 * DAY);
        assert_eq!(event(&mut store, "b", "x", "w", year_9998), 2);
        for i in 0..20 {
            let (k, _) = PairKey::of("a", &format!("u{i}"), "v");
            assert!(store.get(&k).is_some(), "pair {i} of tenant a");
        }
        assert_eq!(store.len(), 21);
        // Tenant a's time did not move; b's own earlier pairs are gone.
        assert_eq!(
            store.watermark(tenant_hash("a")),
            Some(19 * crate::detect::time::HOUR)
        );
        assert!(store.get(&PairKey::of("b", "x", "y").0).is_none());
        assert!(store.get(&PairKey::of("b", "x", "z").0).is_none());
        assert!(store.get(&PairKey::of("b", "x", "w").0).is_some());
        // For b, an event of today is now late; for a it is not.
        assert!(store.is_late(tenant_hash("b"), 40 * DAY));
        assert!(!store.is_late(tenant_hash("a"), 0));
    }

    #[test]
    fn expired_pairs_are_invisible_before_they_are_swept() {
        let mut store = PairStore::new(30 * crate::detect::time::MINUTE);
        event(&mut store, "a", "p", "q", 0);
        // Less than an hour of event time since the tenant's last sweep: no pass yet,
        // but a pair idle past the TTL is already gone for readers.
        assert_eq!(
            event(&mut store, "a", "r", "s", 31 * crate::detect::time::MINUTE),
            0
        );
        let (k, _) = PairKey::of("a", "p", "q");
        assert_eq!(store.len(), 2);
        assert!(store.get(&k).is_none());
        assert!(store.get_mut(&k).is_none());
        // Its next event starts it over, as if it had been swept.
        let s = store.entry(k, tenant_hash("a"), 32 * crate::detect::time::MINUTE);
        assert_eq!(s.first_contact, 32 * crate::detect::time::MINUTE);
    }

    #[test]
    fn sweep_passes_are_amortised_over_events() {
        // One tenant walks its clock forward an hour per event: a pass (which visits
        // every pair) runs at most once per len / PASS_SPACING events.
        let mut store = PairStore::new(DAY);
        let other = tenant_hash("other");
        for i in 0..800 {
            store.entry(PairKey::of("other", &format!("u{i}"), "v").0, other, 0);
            store.advance(other, 0);
        }
        let mut passes = 0;
        let t = tenant_hash("walker");
        for h in 0..1000 {
            let at = h * crate::detect::time::HOUR;
            store.entry(PairKey::of("walker", "a", "b").0, t, at);
            store.advance(t, at);
            if store.since_pass == 0 {
                passes += 1;
            }
        }
        assert!(passes <= 1000 / (800 / PASS_SPACING) + 1, "{passes} passes");
        // The other tenant's time did not move: none of its pairs went.
        assert_eq!(store.len(), 801);
    }

    /// A pair of unknown tenant, as restored from a version 02 checkpoint.
    fn legacy(store: &mut PairStore, a: &str, b: &str, last_seen: Millis) -> PairKey {
        let (k, _) = PairKey::of("old", a, b);
        let mut s = PairState::new(last_seen);
        s.users = [user_hash(a), user_hash(b)];
        store.insert(k, s);
        k
    }

    #[test]
    fn legacy_pairs_are_hidden_relative_to_the_legacy_clock() {
        let mut store = PairStore::new(30 * DAY);
        // Restored: one pair seen 400 days ago, one yesterday (in event time).
        let stale = legacy(&mut store, "p", "q", 0);
        let fresh = legacy(&mut store, "r", "s", 400 * DAY);
        assert!(store.get(&stale).is_none());
        assert!(store.get_mut(&stale).is_none());
        assert!(store.get(&fresh).is_some());
        // Its next event starts the stale pair over, as a swept one would, even one
        // within the TTL of it (its tenant has no clock yet).
        let s = store.entry(stale, tenant_hash("old"), 10 * DAY);
        assert_eq!((s.first_contact, s.tenant), (10 * DAY, tenant_hash("old")));
        // The legacy clock follows the most advanced tenant.
        event(&mut store, "a", "x", "y", 429 * DAY);
        assert!(store.get(&fresh).is_some());
        event(&mut store, "a", "x", "y", 431 * DAY);
        assert!(store.get(&fresh).is_none());
    }

    #[test]
    fn an_idle_tenant_or_a_1970_event_does_not_keep_legacy_pairs_forever() {
        let mut store = PairStore::new(DAY);
        let old = legacy(&mut store, "p", "q", 10 * DAY);
        // Tenant a is idle since 1970; tenant b moves on.
        event(&mut store, "a", "r", "s", 0);
        event(&mut store, "b", "r", "s", 10 * DAY);
        assert!(store.get(&old).is_some());
        assert_eq!(event(&mut store, "b", "r", "s", 12 * DAY), 1);
        assert!(store.iter().all(|(k, _)| *k != old));
        assert!(store.get(&PairKey::of("a", "r", "s").0).is_some());
        // A restored pair's next event tells its tenant.
        let (k, _) = PairKey::of("a", "x", "y");
        store.insert(k, PairState::new(12 * DAY));
        let s = store.entry(k, tenant_hash("a"), 12 * DAY + 1);
        assert_eq!((s.tenant, s.first_contact), (tenant_hash("a"), 12 * DAY));
    }

    #[test]
    fn a_sweep_drops_the_clocks_of_tenants_without_pairs() {
        let mut store = PairStore::new(DAY);
        // A client makes up 1000 tenants, one pair each, then the user is forgotten.
        for i in 0..1000 {
            let (tenant, t) = (format!("h{i}"), tenant_hash(&format!("h{i}")));
            store.entry(PairKey::of(&tenant, "x", "y").0, t, 0).users =
                [user_hash("x"), user_hash("y")];
            store.advance(t, 0);
        }
        assert_eq!(store.clocks.len(), 1000);
        assert_eq!(store.forget_user(None, "x", &mut Vec::new()), 1000);
        // Some tenant's time moves: the next pass drops the clocks left without pairs.
        event(&mut store, "a", "r", "s", 0);
        event(&mut store, "b", "r", "s", 0);
        event(&mut store, "a", "r", "s", 2 * DAY);
        assert_eq!(store.clocks.len(), 2);
        assert_eq!(store.watermark(tenant_hash("h7")), None);
        assert_eq!(store.watermark(tenant_hash("b")), Some(0));
        assert!(store.clocks.capacity() < 1000);
        // Counted for their tenant: b keeps its clock, and its lateness, with one pair.
        assert!(store.get(&PairKey::of("b", "r", "s").0).is_some());
        // Dropping the most advanced tenant's clock does not move the legacy clock back.
        assert_eq!(store.forget_user(None, "r", &mut Vec::new()), 2);
        event(&mut store, "c", "r", "s", 0);
        event(&mut store, "c", "r", "s", 2 * crate::detect::time::HOUR);
        assert_eq!(store.watermark(tenant_hash("a")), None);
        let stale = legacy(&mut store, "p", "q", 0);
        assert!(store.get(&stale).is_none());
    }

    #[test]
    fn forget_user_counts_only_live_pairs() {
        // The same pairs, in a store where another tenant's events swept and in one
        // where they did not: the same count.
        let ttl = 30 * crate::detect::time::MINUTE;
        let mut counts = Vec::new();
        for other_sweeps in [false, true] {
            let mut store = PairStore::new(ttl);
            for (b, at) in [("v", 0), ("w", 31 * crate::detect::time::MINUTE)] {
                let (k, _) = PairKey::of("a", "u", b);
                store.entry(k, tenant_hash("a"), at).users = [user_hash("u"), user_hash(b)];
                store.advance(tenant_hash("a"), at);
            }
            legacy(&mut store, "u", "z", -DAY);
            if other_sweeps {
                event(&mut store, "b", "r", "s", 0);
                event(&mut store, "b", "r", "s", 2 * crate::detect::time::HOUR);
            }
            assert_eq!(store.len(), if other_sweeps { 2 } else { 3 });
            counts.push(store.forget_user(None, "u", &mut Vec::new()));
            // The expired ones went too.
            assert_eq!(store.len(), other_sweeps as usize);
        }
        assert_eq!(counts, [1, 1]);
    }

    #[test]
    fn a_restored_pair_moves_its_tenants_clock() {
        let mut store = PairStore::new(DAY);
        let mut s = PairState::new(5 * DAY);
        s.tenant = tenant_hash("a");
        store.insert(PairKey::of("a", "p", "q").0, s);
        assert_eq!(store.watermark(tenant_hash("a")), Some(5 * DAY));
        assert!(store.is_late(tenant_hash("a"), 3 * DAY));
        assert!(!store.is_late(tenant_hash("b"), 3 * DAY));
    }
}
