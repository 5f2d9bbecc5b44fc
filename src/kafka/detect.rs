//! The detection stage: one [`Engine`] per owned input partition. Each record is
//! decoded and checked (bad ones become dead letters), processed, and its alerts
//! produced keyed by pair; at the end of the batch the state of every pair it touched
//! goes to the changelog partition of the same number; after the commit, the local
//! checkpoints are written on their interval.

use super::codec::{self, Format};
use super::driver::Stage;
use super::output::{Failed, Output, STATE_KIND};
use super::restore::{write_checkpoint, Restorer};
use super::Topics;
use crate::alert::Alert;
use crate::engine::{Engine, EngineConfig};
use crate::event::Limits;
use crate::metrics::{EngineCounters, Metrics};
use crate::pack::RulePack;
use crate::state::PairKey;
use rdkafka::message::{BorrowedMessage, Message, OwnedHeaders};
use std::collections::{BTreeMap, HashMap};
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
    skip: HashMap<PairKey, i64>,
    skip_until: i64,
    /// Pairs changed in this batch, with the offset of their last record.
    touched: HashMap<PairKey, i64>,
    changelog_pos: i64,
    checkpointed_at: i64,
    counters: EngineCounters,
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
    generation: u64,
    pack: Arc<RulePack>,
    parts: HashMap<i32, Part>,
    alerts: Vec<Alert>,
    last_checkpoint: Instant,
    sampled: u32,
}

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
            pack,
            parts: HashMap::new(),
            alerts: Vec::new(),
            last_checkpoint: Instant::now(),
            sampled: 0,
        }
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

    fn produce_alert(
        &self,
        a: &Alert,
        out: &mut Output,
        m: &BorrowedMessage<'_>,
    ) -> Result<(), Failed> {
        let json = a.to_json();
        let key = codec::alert_pair_key(a);
        out.send(
            &self.topics.alerts_for(a.priority),
            None,
            key.as_bytes(),
            Some(json.as_bytes()),
            codec::alert_headers(a),
            "alert",
        )?;
        self.metrics.alert(a);
        if let Some(sent) = m.timestamp().to_millis() {
            let ms = (crate::time::now_millis() - sent).max(0);
            self.metrics
                .event_to_alert_seconds
                .observe(ms as f64 / 1000.0);
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
}

/// Sends a record that cannot be processed to the dead-letter topic, as it came, with
/// the reason and its origin in headers.
pub fn dead_letter(
    out: &mut Output,
    topic: &str,
    m: &BorrowedMessage<'_>,
    why: &codec::Rejection,
    metrics: &Metrics,
) -> Result<(), Failed> {
    metrics.kafka.dead_letter(why.reason);
    tracing::debug!(
        reason = why.reason,
        partition = m.partition(),
        offset = m.offset(),
        "dead letter"
    );
    let headers =
        codec::dead_letter_headers(m.headers(), why, m.topic(), m.partition(), m.offset());
    out.send(
        topic,
        None,
        m.key().unwrap_or_default(),
        m.payload(),
        headers,
        "dead_letter",
    )
}

impl Stage for Detect {
    fn assign(&mut self, partition: i32, committed: Option<i64>) -> anyhow::Result<i64> {
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
                touched: HashMap::new(),
                changelog_pos: r.changelog_pos,
                checkpointed_at: -1,
                counters,
            },
        );
        self.metrics.kafka.partitions.set(self.parts.len() as i64);
        Ok(r.offset)
    }

    fn revoke(&mut self, partition: i32) {
        if let Some(part) = self.parts.remove(&partition) {
            self.metrics
                .pairs
                .with_label_values(&[&format!("p{partition}")])
                .set(0);
            drop(part);
        }
        self.metrics.kafka.partitions.set(self.parts.len() as i64);
    }

    fn record(&mut self, m: &BorrowedMessage<'_>, out: &mut Output) -> Result<(), Failed> {
        self.refresh_pack();
        let event = codec::decode(m.payload(), m.headers(), self.format, &self.limits)
            .and_then(|e| codec::check_key(m.key(), &e).map(|_| e));
        let event = match event {
            Ok(e) => e,
            Err(why) => {
                return dead_letter(out, &self.topics.dlq, m, &why, &self.metrics);
            }
        };
        let Some(part) = self.parts.get_mut(&m.partition()) else {
            return Ok(());
        };
        self.metrics.events_accepted.inc();
        let (key, _) = PairKey::of(
            &event.tenant,
            &event.sender.user_id,
            &event.recipient.user_id,
        );
        let offset = m.offset();
        if offset > part.skip_until && !part.skip.is_empty() {
            part.skip.clear();
        }
        if offset <= part.skip_until && part.skip.get(&key).is_some_and(|&o| offset <= o) {
            self.metrics.kafka.skipped.inc();
            return Ok(());
        }
        // The engine's time is sampled (one event in 64): reading the clock twice per
        // event showed in the profile.
        self.sampled = self.sampled.wrapping_add(1);
        if self.sampled % 64 == 0 {
            let t = Instant::now();
            part.engine.process(&event, &mut self.alerts);
            self.metrics
                .processing_seconds
                .observe(t.elapsed().as_secs_f64());
        } else {
            part.engine.process(&event, &mut self.alerts);
        }
        part.touched.insert(key, offset);
        part.counters.observe(part.engine.stats(), &self.metrics);
        let alerts = std::mem::take(&mut self.alerts);
        for a in &alerts {
            self.produce_alert(a, out, m)?;
        }
        self.alerts = alerts;
        self.alerts.clear();
        Ok(())
    }

    fn before_commit(&mut self, out: &mut Output) -> Result<(), Failed> {
        for (&p, part) in self.parts.iter_mut() {
            for (key, offset) in part.touched.drain() {
                let k = codec::changelog_key(&key);
                match part.engine.pair_by_key(&key) {
                    Some(state) => out.send(
                        &self.topics.changelog,
                        Some(p),
                        &k,
                        Some(&codec::encode_state(offset, state)),
                        OwnedHeaders::new(),
                        STATE_KIND,
                    )?,
                    None => out.send(
                        &self.topics.changelog,
                        Some(p),
                        &k,
                        None,
                        codec::offset_header(offset),
                        STATE_KIND,
                    )?,
                }
            }
        }
        Ok(())
    }

    fn checkpoint_due(&self) -> bool {
        self.last_checkpoint.elapsed() >= self.checkpoint_every
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
        for (&p, part) in self.parts.iter_mut() {
            let Some(&offset) = positions.get(&p) else {
                continue;
            };
            // Restored pairs ahead of the position (the skip map) are not in a
            // checkpoint's terms: wait until the partition has passed them.
            if offset == part.checkpointed_at
                || (!part.skip.is_empty() && offset <= part.skip_until)
            {
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
        let pairs: usize = self.parts.values().map(|p| p.engine.pairs()).sum();
        self.metrics.checkpoint_pairs.set(pairs as i64);
    }
}
