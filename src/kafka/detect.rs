//! The detection stage: one [`Engine`] per owned input partition. The records of a
//! chunk are split by partition and the partitions spread over the detection threads;
//! each record is decoded and checked (bad ones become dead letters) and processed;
//! then the chunk's alerts are produced keyed by pair, on the consumer's thread. At the
//! end of the batch the state of every pair it touched goes to the changelog partition
//! of the same number; after the commit, the local checkpoints are written on their
//! interval.

use super::codec::{self, Format};
use super::driver::Stage;
use super::output::{DeadTag, Failed, Kind, Output};
use super::restore::{write_checkpoint, Restorer};
use super::Topics;
use crate::detect::alert::Alert;
use crate::detect::engine::{Engine, EngineConfig};
use crate::detect::event::Limits;
use crate::detect::pack::RulePack;
use crate::detect::state::{KeyMap, PairKey};
use crate::metrics::{EngineCounters, Metrics};
use rdkafka::message::{BorrowedMessage, Message};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The current rule pack and a generation number bumped on every reload.
#[derive(Default)]
pub struct PackCell {
    generation: AtomicU64,
    pack: Mutex<Option<Arc<RulePack>>>,
}

impl PackCell {
    pub fn set(&self, pack: Arc<RulePack>) {
        *self.pack.lock().unwrap_or_else(|p| p.into_inner()) = Some(pack);
        self.generation.fetch_add(1, Ordering::Release);
    }

    fn get(&self) -> Option<Arc<RulePack>> {
        self.pack.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

struct Part {
    engine: Engine,
    skip: KeyMap<i64>,
    skip_until: i64,
    /// Pairs changed in this batch, with the offset of their last record.
    touched: KeyMap<i64>,
    changelog_pos: i64,
    checkpointed_at: i64,
    counters: EngineCounters,
    /// The chunk's records of this partition (indices), and what came of them.
    inbox: Vec<usize>,
    outbox: Vec<(usize, Outcome)>,
    /// Changelog records ready to send.
    encoded: Vec<Encoded>,
    alerts: Vec<Alert>,
    sampled: u32,
    /// Erasures done in this batch: request and pairs removed, acknowledged once the
    /// batch's changelog (with their tombstones) is sent.
    erased: Vec<(String, i64, u32)>,
}

/// A changelog record: pair key, input offset, and the pair's tenant hash and encoded
/// state (None: a tombstone).
type Encoded = ([u8; 16], i64, Option<(u64, Vec<u8>)>);

/// What a record gave that must be produced.
enum Outcome {
    Rejected(codec::Rejection),
    Alert(Box<Alert>),
}

/// What the detection threads share for one chunk.
struct Work<'a, 'm> {
    records: &'a [BorrowedMessage<'m>],
    format: Format,
    limits: &'a Limits,
    metrics: &'a Metrics,
    /// Larger records are dead letters `record_too_large`, whatever they hold.
    max_record: usize,
}

impl Part {
    /// The changelog records of the pairs touched since the last batch: the pair's
    /// state, or nothing (a tombstone) if the pair is gone.
    fn encode_touched(&mut self) {
        let engine = &self.engine;
        self.encoded
            .extend(self.touched.drain().map(|(key, offset)| {
                let value = engine
                    .pair_by_key(&key)
                    .map(|state| (state.tenant, codec::encode_state(offset, state)));
                (codec::changelog_key(&key), offset, value)
            }));
    }

    /// Decodes and processes the records of `inbox`, in order.
    fn detect(&mut self, w: &Work<'_, '_>) {
        let (mut accepted, mut skipped) = (0, 0);
        for &i in &self.inbox {
            let m = &w.records[i];
            if let Some(control) = codec::decode_control(m.payload(), m.headers()) {
                match control {
                    Ok(codec::Control::Suppress(s)) => {
                        if let Some(sent) = m.timestamp().to_millis() {
                            let ms = (crate::detect::time::now_millis() - sent).max(0);
                            w.metrics
                                .decision_to_suppression_seconds
                                .observe(ms as f64 / 1000.0);
                        }
                        if self.engine.suppress(&s.tenant, &s.a, &s.b, s.pattern) {
                            let (key, _) = PairKey::of(&s.tenant, &s.a, &s.b);
                            self.touched.insert(key, m.offset());
                        }
                    }
                    Ok(codec::Control::Erase(e)) => {
                        let live = self.engine.forget_user(Some(&e.tenant), &e.user);
                        for k in self.engine.forgotten_pairs() {
                            self.touched.insert(*k, m.offset());
                        }
                        self.erased.push((e.request, m.offset(), live as u32));
                    }
                    Err(why) => self.outbox.push((i, Outcome::Rejected(why))),
                }
                continue;
            }
            let event = codec::check_size(m.key(), m.payload(), m.headers(), w.max_record)
                .and_then(|_| codec::decode(m.payload(), m.headers(), w.format, w.limits))
                .and_then(|e| codec::check_key(m.key(), &e).map(|_| e));
            let event = match event {
                Ok(e) => e,
                Err(why) => {
                    self.outbox.push((i, Outcome::Rejected(why)));
                    continue;
                }
            };
            accepted += 1;
            let offset = m.offset();
            if offset > self.skip_until && !self.skip.is_empty() {
                self.skip.clear();
            }
            if offset <= self.skip_until {
                let (key, _) = PairKey::of(
                    &event.tenant,
                    &event.sender.user_id,
                    &event.recipient.user_id,
                );
                if self.skip.get(&key).is_some_and(|&o| offset <= o) {
                    skipped += 1;
                    continue;
                }
            }
            // The engine's time is sampled (one event in 64): reading the clock twice
            // per event showed in the profile.
            self.sampled = self.sampled.wrapping_add(1);
            let key = if self.sampled % 64 == 0 {
                let t = Instant::now();
                let key = self.engine.process(&event, &mut self.alerts);
                w.metrics
                    .processing_seconds
                    .observe(t.elapsed().as_secs_f64());
                key
            } else {
                self.engine.process(&event, &mut self.alerts)
            };
            w.metrics.shadow_fired(self.engine.shadow_fired());
            self.touched.insert(key, offset);
            for k in self.engine.passed_pairs() {
                self.touched.insert(*k, offset);
            }
            self.outbox.extend(
                self.alerts
                    .drain(..)
                    .map(|a| (i, Outcome::Alert(Box::new(a)))),
            );
        }
        self.inbox.clear();
        w.metrics.events_accepted.inc_by(accepted);
        w.metrics.kafka.skipped.inc_by(skipped);
        self.counters.observe(self.engine.stats(), w.metrics);
    }
}

/// Runs `f` on every item, one group per thread (the first on this thread). A group
/// whose thread cannot be started (a process limit) runs on this thread too.
fn in_parallel<T: Send>(groups: Vec<Vec<T>>, f: impl Fn(T) + Sync) {
    let mut groups = groups.into_iter();
    let mine = groups.next().unwrap_or_default();
    // Each other group in a slot its thread takes it from, or this thread if the
    // thread did not start.
    let slots: Vec<Mutex<Vec<T>>> = groups.map(Mutex::new).collect();
    let take =
        |slot: &Mutex<Vec<T>>| std::mem::take(&mut *slot.lock().unwrap_or_else(|p| p.into_inner()));
    let (f, take) = (&f, &take);
    std::thread::scope(|s| {
        for slot in &slots {
            let started = std::thread::Builder::new()
                .name("kafka-detect-w".into())
                .spawn_scoped(s, move || take(slot).into_iter().for_each(f));
            if let Err(e) = started {
                tracing::warn!(error = %e, "cannot start a detection thread; detecting here");
                take(slot).into_iter().for_each(f);
            }
        }
        mine.into_iter().for_each(f);
    });
}

/// Spreads `items` with a load over at most `threads` groups of about the same load
/// (largest first, each to the lightest group); items without load are left out.
fn spread<T>(
    items: impl Iterator<Item = T>,
    load: impl Fn(&T) -> usize,
    threads: usize,
) -> Vec<Vec<T>> {
    let mut busy: Vec<T> = items.filter(|t| load(t) > 0).collect();
    busy.sort_by_key(|t| std::cmp::Reverse(load(t)));
    let mut groups: Vec<(usize, Vec<T>)> = Vec::new();
    for t in busy {
        let n = load(&t);
        if groups.len() < threads {
            groups.push((n, vec![t]));
        } else if let Some(g) = groups.iter_mut().min_by_key(|g| g.0) {
            g.0 += n;
            g.1.push(t);
        }
    }
    groups.into_iter().map(|g| g.1).collect()
}

pub struct Detect {
    pub topics: Topics,
    pub format: Format,
    pub limits: Limits,
    pub engine: EngineConfig,
    pub packs: Arc<PackCell>,
    pub restorer: Restorer,
    pub state_dir: PathBuf,
    pub checkpoint_every: Duration,
    pub metrics: Arc<Metrics>,
    threads: usize,
    generation: u64,
    pack: Arc<RulePack>,
    parts: HashMap<i32, Part>,
    last_checkpoint: Instant,
    /// A checkpoint is due whatever the interval (an erasure was applied).
    checkpoint_now: bool,
    /// The input partitions this stage owns, shared with the desk (which deletes the
    /// local checkpoints of the others when a user is erased).
    owned: Arc<Mutex<HashSet<i32>>>,
}

/// Fewer records than this are detected on the consumer's thread alone: starting
/// threads would cost more than it saves.
const PARALLEL_MIN: usize = 64;

impl Detect {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        topics: Topics,
        format: Format,
        limits: Limits,
        engine: EngineConfig,
        packs: Arc<PackCell>,
        restorer: Restorer,
        state_dir: PathBuf,
        checkpoint_every: Duration,
        metrics: Arc<Metrics>,
        threads: usize,
    ) -> Detect {
        let pack = packs
            .get()
            .expect("a rule pack is set before the stage starts");
        Detect {
            topics,
            format,
            limits,
            engine,
            generation: packs.generation.load(Ordering::Acquire),
            packs,
            restorer,
            state_dir,
            checkpoint_every,
            metrics,
            threads: threads.max(1),
            pack,
            parts: HashMap::new(),
            last_checkpoint: Instant::now(),
            checkpoint_now: false,
            owned: Arc::default(),
        }
    }

    /// Shares the set of owned input partitions (see [`super::desk::DeskThread`]).
    pub fn with_owned(mut self, owned: Arc<Mutex<HashSet<i32>>>) -> Detect {
        self.owned = owned;
        self
    }

    fn refresh_pack(&mut self) {
        let g = self.packs.generation.load(Ordering::Acquire);
        if g == self.generation {
            return;
        }
        self.generation = g;
        if let Some(pack) = self.packs.get() {
            for part in self.parts.values_mut() {
                part.engine.set_pack(pack.clone());
            }
            self.pack = pack;
        }
    }
}

fn produce_alert(
    topics: &Topics,
    metrics: &Metrics,
    a: &Alert,
    out: &mut Output,
    m: &BorrowedMessage<'_>,
) -> Result<(), Failed> {
    let json = a.to_json();
    let key = codec::alert_pair_key(a);
    out.send(
        &topics.alerts_for(a.priority),
        None,
        key.as_bytes(),
        Some(json.as_bytes()),
        Some(codec::alert_headers(a, m.partition(), m.offset())),
        Kind::Alert,
    )?;
    if let Some(u) = &a.update {
        metrics.update(u.kind);
        return Ok(());
    }
    metrics.alert(a);
    if let Some(sent) = m.timestamp().to_millis() {
        let ms = (crate::detect::time::now_millis() - sent).max(0);
        metrics.event_to_alert_seconds.observe(ms as f64 / 1000.0);
    }
    tracing::info!(
        alert_id = %a.alert_id,
        priority = a.priority.as_str(),
        pattern = a.pattern.as_str(),
        partition = m.partition(),
        "alert raised"
    );
    Ok(())
}

/// Sends a record that cannot be processed to the dead-letter topic, as it came (a
/// prefix of it if it is too large: [`codec::dead_letter`]), with the reason and its
/// origin in headers; once per record whatever the rewinds (counted by the output when
/// final: [`Output::send_dead_letter`]).
pub fn dead_letter(
    out: &mut Output,
    topic: &str,
    m: &BorrowedMessage<'_>,
    why: &codec::Rejection,
) -> Result<(), Failed> {
    tracing::debug!(
        reason = why.reason,
        partition = m.partition(),
        offset = m.offset(),
        "dead letter"
    );
    let tag = DeadTag {
        partition: m.partition(),
        offset: m.offset(),
        reason: why.reason,
    };
    if out.dead_letter_done(tag.partition, tag.offset) {
        return Ok(());
    }
    let dl = codec::dead_letter(
        m.key(),
        m.payload(),
        m.headers(),
        why,
        m.topic(),
        m.partition(),
        m.offset(),
        out.dead_letter_limit(),
    );
    out.send_dead_letter(topic, dl, tag)
}

impl Stage for Detect {
    fn assign(&mut self, partition: i32, committed: Option<i64>) -> anyhow::Result<i64> {
        self.owned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(partition);
        let mut engine = Engine::new(self.pack.clone(), self.engine.clone());
        let r = self.restorer.restore(
            &self.topics.input,
            partition,
            committed,
            &mut engine,
            &self.metrics,
        )?;
        let skip_until = r.skip.values().copied().max().unwrap_or(-1);
        let mut counters = EngineCounters::default();
        counters.observe(engine.stats(), &self.metrics);
        self.parts.insert(
            partition,
            Part {
                engine,
                skip: r.skip,
                skip_until,
                touched: KeyMap::default(),
                changelog_pos: r.changelog_pos,
                checkpointed_at: -1,
                counters,
                inbox: Vec::new(),
                outbox: Vec::new(),
                encoded: Vec::new(),
                alerts: Vec::new(),
                sampled: 0,
                erased: Vec::new(),
            },
        );
        self.metrics.kafka.partitions.set(self.parts.len() as i64);
        Ok(r.offset)
    }

    fn revoke(&mut self, partition: i32) {
        self.owned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&partition);
        if let Some(part) = self.parts.remove(&partition) {
            self.metrics
                .pairs
                .with_label_values(&[&format!("p{partition}")])
                .set(0);
            drop(part);
        }
        self.metrics.kafka.partitions.set(self.parts.len() as i64);
    }

    fn records(&mut self, ms: &[BorrowedMessage<'_>], out: &mut Output) -> Result<(), Failed> {
        self.refresh_pack();
        for part in self.parts.values_mut() {
            part.inbox.clear();
            part.outbox.clear();
        }
        for (i, m) in ms.iter().enumerate() {
            if let Some(part) = self.parts.get_mut(&m.partition()) {
                part.inbox.push(i);
            }
        }
        let work = Work {
            records: ms,
            format: self.format,
            limits: &self.limits,
            metrics: &self.metrics,
            max_record: out.dead_letter_limit(),
        };
        let threads = if ms.len() < PARALLEL_MIN {
            1
        } else {
            self.threads
        };
        let groups = spread(self.parts.values_mut(), |p| p.inbox.len(), threads);
        in_parallel(groups, |p| p.detect(&work));
        for part in self.parts.values_mut() {
            for (i, outcome) in part.outbox.drain(..) {
                let m = &ms[i];
                match outcome {
                    Outcome::Rejected(why) => dead_letter(out, &self.topics.dlq, m, &why)?,
                    Outcome::Alert(a) => produce_alert(&self.topics, &self.metrics, &a, out, m)?,
                }
            }
        }
        Ok(())
    }

    fn before_commit(&mut self, out: &mut Output) -> Result<(), Failed> {
        let groups = spread(self.parts.values_mut(), |p| p.touched.len(), self.threads);
        in_parallel(groups, Part::encode_touched);
        let mut erased = Vec::new();
        for (&p, part) in self.parts.iter_mut() {
            erased.extend(
                part.erased
                    .drain(..)
                    .map(|(request, offset, pairs)| codec::Erased {
                        request,
                        partition: p,
                        offset,
                        pairs,
                    }),
            );
            for (k, offset, value) in part.encoded.drain(..) {
                // A pair that is gone is a tombstone, its offset in a header; a state
                // has its tenant in one.
                let (header, value) = match value {
                    None => (Some(codec::offset_header(offset)), None),
                    Some((tenant, v)) => (codec::state_headers(tenant), Some(v)),
                };
                out.send(
                    &self.topics.changelog,
                    Some(p),
                    &k,
                    value.as_deref(),
                    header,
                    Kind::Changelog,
                )?;
            }
        }
        for e in &erased {
            let payload = serde_json::to_vec(e).map_err(|err| Failed::Fatal(err.to_string()))?;
            out.send(
                &self.topics.decisions,
                None,
                e.request.as_bytes(),
                Some(&payload),
                Some(codec::record_headers(codec::RECORD_ERASED)),
                Kind::Erased,
            )?;
        }
        if !erased.is_empty() {
            // The local checkpoints are written again at once: none keeps the user.
            self.checkpoint_now = true;
        }
        Ok(())
    }

    fn checkpoint_due(&self) -> bool {
        self.checkpoint_now || self.last_checkpoint.elapsed() >= self.checkpoint_every
    }

    fn after_commit(&mut self, out: &Output, positions: &BTreeMap<i32, i64>, all: bool) {
        for (&p, part) in self.parts.iter_mut() {
            if let Some(end) = out.tracked_end(p) {
                part.changelog_pos = part.changelog_pos.max(end);
            }
            self.metrics
                .pairs
                .with_label_values(&[&format!("p{p}")])
                .set(part.engine.pairs() as i64);
        }
        if !all {
            return;
        }
        self.last_checkpoint = Instant::now();
        // An erasure's checkpoints stay due until every partition could write one.
        let mut deferred = false;
        for (&p, part) in self.parts.iter_mut() {
            let Some(&offset) = positions.get(&p) else {
                continue;
            };
            if offset == part.checkpointed_at {
                continue;
            }
            // Restored pairs ahead of the position (the skip map) are not in a
            // checkpoint's terms: wait until the partition has passed them.
            if !part.skip.is_empty() && offset <= part.skip_until {
                deferred = true;
                continue;
            }
            let t = Instant::now();
            match write_checkpoint(
                &self.state_dir,
                &self.topics.input,
                p,
                offset,
                part.changelog_pos,
                &part.engine,
            ) {
                Ok(()) => part.checkpointed_at = offset,
                Err(e) => {
                    self.metrics.checkpoint_failures.inc();
                    tracing::error!(partition = p, error = %e, "local checkpoint failed");
                }
            }
            self.metrics
                .checkpoint_seconds
                .observe(t.elapsed().as_secs_f64());
        }
        self.checkpoint_now &= deferred;
        let pairs: usize = self.parts.values().map(|p| p.engine.pairs()).sum();
        self.metrics.checkpoint_pairs.set(pairs as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::{in_parallel, spread};
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn every_item_runs_once_whatever_the_grouping() {
        let seen: Vec<AtomicUsize> = (0..10).map(|_| AtomicUsize::new(0)).collect();
        let groups = vec![vec![0, 1, 2], vec![3], vec![4, 5, 6, 7], vec![], vec![8, 9]];
        in_parallel(groups, |i: usize| {
            seen[i].fetch_add(1, Ordering::Relaxed);
        });
        assert!(seen.iter().all(|n| n.load(Ordering::Relaxed) == 1));
        in_parallel(Vec::<Vec<usize>>::new(), |_| unreachable!());
    }

    #[test]
    fn partitions_are_spread_by_load_over_the_threads() {
        let loads = [100, 0, 30, 60, 10, 50];
        let groups = spread(loads.iter().copied(), |&n| n, 2);
        let sums: Vec<usize> = groups.iter().map(|g| g.iter().sum()).collect();
        assert_eq!(groups.len(), 2);
        assert_eq!(sums.iter().sum::<usize>(), 250);
        assert!(sums.iter().all(|&s| (120..=130).contains(&s)), "{groups:?}");
        assert!(
            groups.iter().flatten().all(|&n| n > 0),
            "idle partitions left out"
        );
        // Fewer busy partitions than threads: one group each.
        assert_eq!(spread([0, 7, 0].into_iter(), |&n| n, 4), vec![vec![7]]);
        assert_eq!(spread([3, 4].into_iter(), |&n| n, 1), vec![vec![4, 3]]);
    }
}
