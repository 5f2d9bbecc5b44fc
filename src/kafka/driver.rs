//! The consumer loop shared by the processing stages: one consumer in the group, one
//! thread, records handed in order to a [`Stage`] in chunks (what the consumer has
//! ready, up to [`CHUNK`]), output and offsets committed per batch through
//! [`Output`]. Group rebalances are handled inside the consumer's poll:
//! on revoke the batch in progress is committed and the stage checkpoints before the
//! partitions go; on assign the stage restores each partition and says where to start.
//! A batch whose output or commit fails is rewound: the stage restores its partitions
//! again and the consumer seeks back to the last committed offsets.

use super::health::StageHealth;
use super::output::{Failed, Output};
use crate::metrics::Metrics;
use prometheus::IntCounter;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// The consumers' session timeout and heartbeat unless `kafka.client` sets them.
pub const SESSION_TIMEOUT_MS: &str = "10000";
pub const HEARTBEAT_INTERVAL_MS: &str = "3000";
/// Rewinds of one batch before the stage gives up.
const MAX_REWINDS: u32 = 8;
/// Records handed to the stage at once, at most.
const CHUNK: usize = 16384;

/// What a processing stage does with its partitions and records.
pub trait Stage: Send + 'static {
    /// Takes `partition` over; returns the input offset to start from.
    fn assign(&mut self, partition: i32, committed: Option<i64>) -> anyhow::Result<i64>;
    /// Gives `partition` up (after its last batch committed and was checkpointed).
    fn revoke(&mut self, partition: i32);
    /// Records of owned partitions, each partition's in offset order, none twice in
    /// one batch.
    fn records(&mut self, ms: &[BorrowedMessage<'_>], out: &mut Output) -> Result<(), Failed>;
    /// The batch's records are delivered (at-least-once) or in the transaction: add
    /// what must only follow them.
    fn before_commit(&mut self, out: &mut Output) -> Result<(), Failed>;
    /// The batch ended with the input at `positions`; `settled` says everything sent is
    /// delivered and committed, the only moment a checkpoint may be written.
    fn after_commit(&mut self, out: &Output, positions: &BTreeMap<i32, i64>, settled: bool);
    /// The stage wants a checkpoint (its interval passed).
    fn checkpoint_due(&self) -> bool {
        false
    }
}

pub struct Settings {
    pub topic: String,
    pub stage_name: &'static str,
    pub max_batch: usize,
    pub linger: Duration,
}

struct Driver<S> {
    stage: S,
    out: Output,
    settings: Settings,
    next: BTreeMap<i32, i64>,
    committed: BTreeMap<i32, i64>,
    pending: usize,
    batch_started: Instant,
    metrics: Arc<Metrics>,
    fatal: Option<String>,
    rewind_needed: bool,
    /// At-least-once: positions whose state records are sent but not yet confirmed.
    staged: Option<BTreeMap<i32, i64>>,
    staged_at: Instant,
    rewinds_in_a_row: u32,
    /// Bumped by every rebalance: a chunk polled across one is read again.
    rebalances: u64,
    /// Readiness and positions, read by `/readyz` and the lag monitor.
    health: Arc<StageHealth>,
    /// The stage's `records_consumed_total`.
    consumed: IntCounter,
    /// Per partition, the offset after the last record counted as consumed: records
    /// read again after a rewind or a rebalance are not counted twice.
    counted: BTreeMap<i32, i64>,
    /// After a rewind, per partition, how far the failed batch had read: the stage is
    /// unready until it has read that far again.
    rewind_to: BTreeMap<i32, i64>,
    /// At-least-once: when to send the last offsets once more, if no batch has carried
    /// them by then (an asynchronous commit refused while the group rebalanced would
    /// otherwise leave an idle partition's committed offset behind).
    resend_at: Option<Instant>,
}

impl<S: Stage> Driver<S> {
    /// Hands the chunk's records of owned partitions, not seen yet, to the stage.
    fn handle(&mut self, chunk: &mut Vec<BorrowedMessage<'_>>) {
        chunk.retain(|m| match self.next.get_mut(&m.partition()) {
            Some(next) if m.offset() >= *next => {
                *next = m.offset() + 1;
                true
            }
            _ => false,
        });
        let mut fresh = 0;
        for m in chunk.iter() {
            let counted = self.counted.entry(m.partition()).or_insert(i64::MIN);
            if m.offset() >= *counted {
                *counted = m.offset() + 1;
                fresh += 1;
            }
        }
        self.consumed.inc_by(fresh);
        self.check_rewound();
        if chunk.is_empty() {
            return;
        }
        if self.pending == 0 {
            self.batch_started = Instant::now();
        }
        self.pending += chunk.len();
        if let Err(e) = self.stage.records(chunk, &mut self.out) {
            self.failed(e);
        }
    }

    /// At-least-once, nothing in flight: sends the offsets reached once more, so that an
    /// idle partition's committed offset does not stay behind when the last commit was
    /// refused (a group that rebalances refuses commits for a moment; the client does
    /// not always say so).
    fn resend<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) {
        self.resend_at = None;
        if self.out.transactional() || self.pending > 0 || self.staged.is_some() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for (&p, &o) in &self.next {
            if let Err(e) = tpl.add_partition_offset(&self.settings.topic, p, Offset::Offset(o)) {
                tracing::warn!(error = %e, "offset not added");
            }
        }
        let sent = self.out.commit(consumer, &tpl, CommitMode::Async);
        match sent {
            Ok(()) => self.committed = self.next.clone(),
            Err(e) => {
                let (Failed::Fatal(m) | Failed::Rewind(m)) = e;
                tracing::warn!(stage = self.settings.stage_name, error = %m, "offset commit not sent; retrying");
                self.resend_at = Some(Instant::now() + Duration::from_secs(1));
            }
        }
    }

    /// Ends the rewinding state once every partition has read as far as before it.
    fn check_rewound(&mut self) {
        if self.rewind_to.is_empty() {
            return;
        }
        let next = &self.next;
        self.rewind_to
            .retain(|p, to| next.get(p).is_some_and(|n| n < to));
        if self.rewind_to.is_empty() {
            self.health.set_rewinding(false);
        }
    }

    /// The owned partitions' processing positions, for the lag: the next offset to
    /// process, or the client's position when it is further (transaction markers take
    /// offsets and are never handed over).
    fn publish_positions<C: ConsumerContext>(&self, consumer: &BaseConsumer<C>) {
        let mut positions = self.next.clone();
        if self.rewind_to.is_empty() {
            if let Ok(tpl) = consumer.position() {
                for e in tpl.elements_for_topic(&self.settings.topic) {
                    if let (Offset::Offset(o), Some(n)) =
                        (e.offset(), positions.get_mut(&e.partition()))
                    {
                        *n = (*n).max(o);
                    }
                }
            }
        }
        self.health.set_positions(positions);
    }

    /// A chunk polled while a rebalance ran is dropped: the partitions it came from
    /// that are still owned are read again from where processing stands.
    fn read_again<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        chunk: &[BorrowedMessage<'_>],
    ) {
        let mut partitions: Vec<i32> = chunk.iter().map(|m| m.partition()).collect();
        partitions.sort_unstable();
        partitions.dedup();
        tracing::debug!(
            stage = self.settings.stage_name,
            records = chunk.len(),
            partitions = partitions.len(),
            "records polled across a rebalance: read again"
        );
        for p in partitions {
            let Some(&next) = self.next.get(&p) else {
                continue;
            };
            if let Err(e) =
                consumer.seek(&self.settings.topic, p, Offset::Offset(next), CALL_TIMEOUT)
            {
                tracing::warn!(partition = p, error = %e, "seek after a rebalance failed");
                self.rewind_needed = true;
            }
        }
    }

    /// Records the next chunk may hold: up to [`CHUNK`], within the batch's size.
    fn room(&self) -> usize {
        self.settings
            .max_batch
            .saturating_sub(self.pending)
            .clamp(1, CHUNK)
    }

    fn due(&self) -> bool {
        self.pending >= self.settings.max_batch
            || (self.pending > 0 && self.batch_started.elapsed() >= self.settings.linger)
            || (self.staged.is_some() && self.staged_at.elapsed() >= self.settings.linger)
    }

    /// The offsets of `positions` not yet committed.
    fn offsets(&self, positions: &BTreeMap<i32, i64>) -> Result<TopicPartitionList, Failed> {
        let mut tpl = TopicPartitionList::new();
        for (&p, &o) in positions {
            if self.committed.get(&p) != Some(&o) {
                tpl.add_partition_offset(&self.settings.topic, p, Offset::Offset(o))
                    .map_err(|e| Failed::Fatal(e.to_string()))?;
            }
        }
        Ok(tpl)
    }

    /// At-least-once: commits the staged offsets once the state records sent with them
    /// are delivered.
    fn commit_staged<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        mode: CommitMode,
    ) -> Result<(), Failed> {
        let Some(staged) = self.staged.take() else {
            return Ok(());
        };
        self.out.settle_state()?;
        let tpl = self.offsets(&staged)?;
        self.out.commit(consumer, &tpl, mode)?;
        self.committed = staged;
        self.rewinds_in_a_row = 0;
        self.resend_at = Some(Instant::now() + Duration::from_secs(1));
        Ok(())
    }

    /// Ends the batch. Exactly-once: one transaction. At-least-once: the batch's alerts
    /// are awaited, the previous batch's state records settled and its offsets
    /// committed, then this batch's state records sent and its offsets staged (committed
    /// at the next batch end). `full` settles everything now and lets the stage
    /// checkpoint (on its interval, a revoke, shutdown).
    fn try_commit<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        mode: CommitMode,
        full: bool,
    ) -> Result<(), Failed> {
        let full = full || self.stage.checkpoint_due();
        if self.pending > 0 {
            let t0 = Instant::now();
            self.out.barrier()?;
            if self.out.transactional() {
                self.stage.before_commit(&mut self.out)?;
                let tpl = self.offsets(&self.next)?;
                self.out.commit(consumer, &tpl, mode)?;
                self.committed = self.next.clone();
                self.rewinds_in_a_row = 0;
            } else {
                self.commit_staged(consumer, mode)?;
                self.stage.before_commit(&mut self.out)?;
                self.staged = Some(self.next.clone());
                self.staged_at = Instant::now();
            }
            tracing::debug!(
                records = self.pending,
                wait_ms = t0.elapsed().as_millis() as u64,
                "batch ended"
            );
            self.pending = 0;
        }
        if full || self.staged_at.elapsed() >= self.settings.linger {
            self.commit_staged(consumer, if full { CommitMode::Sync } else { mode })?;
        }
        if full && !self.out.transactional() {
            // Offsets whose asynchronous commit failed, sent again.
            let tpl = self.offsets(&self.next)?;
            self.out.commit(consumer, &tpl, CommitMode::Sync)?;
            self.committed = self.next.clone();
        }
        self.stage.after_commit(&self.out, &self.next, full);
        Ok(())
    }

    fn commit<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        mode: CommitMode,
        checkpoint: bool,
    ) {
        if let Some(f) = self.health.fatal() {
            // Offsets of topics that are gone must not land on the new ones.
            self.fatal.get_or_insert(f);
            return;
        }
        if let Err(e) = self.try_commit(consumer, mode, checkpoint) {
            self.failed(e);
            if self.fatal.is_none() {
                self.rewind_needed = false;
                self.rewind(consumer);
            }
        }
    }

    fn failed(&mut self, e: Failed) {
        match e {
            Failed::Fatal(m) => self.fatal = Some(m),
            Failed::Rewind(m) => {
                tracing::warn!(stage = self.settings.stage_name, error = %m, "batch failed");
                self.rewind_needed = true;
            }
        }
    }

    /// Back to the last commit: abort the output, restore, seek. A batch that keeps
    /// failing (a record the broker will never take) stops the stage after a few tries,
    /// with growing pauses between them, instead of spinning.
    fn rewind<C: ConsumerContext>(&mut self, consumer: &BaseConsumer<C>) {
        self.metrics.kafka.rewinds.inc();
        self.health.set_rewinding(true);
        self.rewinds_in_a_row += 1;
        if self.rewinds_in_a_row > MAX_REWINDS {
            self.fatal = Some(format!(
                "the same batch failed {MAX_REWINDS} times in a row; see the previous errors"
            ));
            return;
        }
        std::thread::sleep(Duration::from_millis(
            200 * u64::from(self.rewinds_in_a_row),
        ));
        if let Some(f) = self.health.fatal() {
            // The topics changed under the stage: nothing to restore from.
            self.fatal = Some(f);
            return;
        }
        self.staged = None;
        if let Err(Failed::Fatal(m)) = self.out.abort() {
            self.fatal = Some(m);
            return;
        }
        let partitions: Vec<i32> = self.next.keys().copied().collect();
        for p in partitions {
            self.stage.revoke(p);
            let start = match self.stage.assign(p, self.committed.get(&p).copied()) {
                Ok(s) => s,
                Err(e) => {
                    self.fatal = Some(format!("cannot restore partition {p}: {e:#}"));
                    return;
                }
            };
            if let Some(reached) = self.next.insert(p, start).filter(|&r| r > start) {
                let to = self.rewind_to.entry(p).or_insert(reached);
                *to = (*to).max(reached);
            }
            self.committed.insert(p, start);
            if let Err(e) =
                consumer.seek(&self.settings.topic, p, Offset::Offset(start), CALL_TIMEOUT)
            {
                self.fatal = Some(format!("cannot seek partition {p} back to {start}: {e}"));
                return;
            }
        }
        self.pending = 0;
        self.check_rewound();
        self.health.set_rewinding(!self.rewind_to.is_empty());
    }
}

/// The consumer's context: the driver, reached from the rebalance callback.
struct Ctx<S> {
    driver: Mutex<Driver<S>>,
    /// Partitions whose asynchronous offset commit failed (told by the client's
    /// callback, which may run while the driver is locked).
    failed_commits: Mutex<Vec<i32>>,
    metrics: Arc<Metrics>,
    topic: String,
    stage_name: &'static str,
    health: Arc<StageHealth>,
    /// Leader updates librdkafka skipped for want of a topic name (see `log`).
    null_topic_updates: std::sync::atomic::AtomicU64,
    /// Set when the instance stops: an assignment that cannot start soon is given up.
    stop: Arc<AtomicBool>,
}

impl<S: Stage> Ctx<S> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Driver<S>> {
        self.driver.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<S: Stage> ClientContext for Ctx<S> {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
        use rdkafka::config::RDKafkaLogLevel as L;
        if fac == "METADATAUPDATE" && message.contains("(null)") {
            // The path of the librdkafka crash (see `librdkafka_fix`), taken for every
            // fetch response while a broker names a topic by a zero id: logged now and
            // then, not for each response.
            let n = self.null_topic_updates.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(target: "librdkafka", times = n, "librdkafka: {fac} {message} (leader update without a topic skipped)");
            }
            return;
        }
        match level {
            L::Emerg | L::Alert | L::Critical | L::Error => {
                tracing::error!(target: "librdkafka", "librdkafka: {fac} {message}")
            }
            L::Warning => tracing::warn!(target: "librdkafka", "librdkafka: {fac} {message}"),
            L::Notice | L::Info => {
                tracing::info!(target: "librdkafka", "librdkafka: {fac} {message}")
            }
            L::Debug => tracing::debug!(target: "librdkafka", "librdkafka: {fac} {message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // Unready until the brokers answer again (the monitor clears it).
        if matches!(error, KafkaError::Global(RDKafkaErrorCode::AllBrokersDown)) {
            self.health.brokers_down();
        }
        tracing::error!(stage = self.stage_name, error = %error, reason, "kafka client error");
    }
}

impl<S: Stage> ConsumerContext for Ctx<S> {
    fn commit_callback(
        &self,
        result: rdkafka::error::KafkaResult<()>,
        offsets: &TopicPartitionList,
    ) {
        // The request may succeed with some partitions refused (a group rebalancing):
        // those are failed too.
        let failed: Vec<i32> = match &result {
            Err(_) => offsets.elements().iter().map(|e| e.partition()).collect(),
            Ok(()) => offsets
                .elements()
                .iter()
                .filter(|e| e.error().is_err())
                .map(|e| e.partition())
                .collect(),
        };
        if !failed.is_empty() {
            let error = match result {
                Err(e) => e.to_string(),
                Ok(()) => format!("{} partition(s) refused", failed.len()),
            };
            tracing::warn!(stage = self.stage_name, %error, "offset commit failed; it will be retried");
            self.failed_commits
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend(failed);
        }
    }

    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let mut d = self.lock();
        d.rebalances += 1;
        if let Some(f) = d.health.fatal() {
            // The topics changed under the stage: nothing is committed or restored.
            d.fatal.get_or_insert(f);
        }
        let kind = |k: &str| self.metrics.kafka.rebalances.with_label_values(&[k]).inc();
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                kind("revoke");
                // The last batch and a checkpoint, before the partitions go. When that
                // fails, or the partitions are already someone else's, nothing more is
                // committed for them; the partitions that stay are rewound.
                if d.fatal.is_some() {
                    // Stopping on an error: nothing more is committed.
                } else if consumer.assignment_lost() {
                    d.rewind_needed = true;
                } else if let Err(e) = d.try_commit(consumer, CommitMode::Sync, true) {
                    d.failed(e);
                }
                for e in tpl.elements() {
                    d.stage.revoke(e.partition());
                    d.next.remove(&e.partition());
                    d.committed.remove(&e.partition());
                }
                d.check_rewound();
                d.publish_positions(consumer);
                // Commits refused while the group rebalanced: sent again once it settled.
                d.resend_at = Some(Instant::now() + Duration::from_secs(1));
                let r = if cooperative(consumer) {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                };
                if let Err(e) = r {
                    tracing::warn!(error = %e, "unassign failed");
                }
                tracing::info!(
                    stage = self.stage_name,
                    partitions = tpl.count(),
                    "partitions revoked"
                );
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                kind("assign");
                if d.fatal.is_some() {
                    return;
                }
                d.health.set_restoring(true);
                // Without the committed offsets a restore could only start over from
                // the local state or the beginning: retry, then give up.
                let mut attempt = 0;
                let committed = loop {
                    match consumer.committed_offsets(tpl.clone(), CALL_TIMEOUT) {
                        Ok(c) => break c,
                        Err(e) if self.stop.load(Ordering::Relaxed) => {
                            // Stopping: the partitions go to another member anyway.
                            tracing::info!(error = %e, "committed offsets unavailable while stopping; not taking the partitions");
                            return;
                        }
                        Err(e) if attempt < 3 => {
                            attempt += 1;
                            tracing::warn!(error = %e, attempt, "committed offsets unavailable; retrying");
                            std::thread::sleep(Duration::from_secs(1));
                        }
                        Err(e) => {
                            d.fatal = Some(format!("cannot read the committed offsets: {e}"));
                            return;
                        }
                    }
                };
                for e in tpl.elements() {
                    let p = e.partition();
                    let c =
                        committed
                            .find_partition(&self.topic, p)
                            .and_then(|e| match e.offset() {
                                Offset::Offset(o) => Some(o),
                                _ => None,
                            });
                    match d.stage.assign(p, c) {
                        Ok(start) => {
                            d.next.insert(p, start);
                            d.committed.insert(p, start);
                        }
                        Err(err) => {
                            d.fatal = Some(format!("cannot restore partition {p}: {err:#}"));
                            return;
                        }
                    }
                }
                let starts: Vec<(i32, i64)> = tpl
                    .elements()
                    .iter()
                    .map(|e| (e.partition(), d.next[&e.partition()]))
                    .collect();
                for (p, o) in starts {
                    if let Err(e) = tpl.set_partition_offset(&self.topic, p, Offset::Offset(o)) {
                        d.fatal = Some(e.to_string());
                        return;
                    }
                }
                let r = if cooperative(consumer) {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                };
                if let Err(e) = r {
                    d.fatal = Some(format!("assign failed: {e}"));
                }
                d.publish_positions(consumer);
                d.resend_at = Some(Instant::now() + Duration::from_secs(1));
                d.health.joined();
                d.health.set_restoring(false);
                tracing::info!(
                    stage = self.stage_name,
                    partitions = tpl.count(),
                    "partitions assigned"
                );
            }
            other => tracing::error!(stage = self.stage_name, error = ?other, "rebalance error"),
        }
    }
}

fn cooperative<C: ConsumerContext>(c: &BaseConsumer<C>) -> bool {
    matches!(
        c.rebalance_protocol(),
        rdkafka::consumer::RebalanceProtocol::Cooperative
    )
}

/// Consumer properties every stage uses; the assignment strategy can be overridden
/// through `kafka.client` (eager strategies are handled too), and so can the session
/// timeouts. `instance_id` makes the member static (`kafka.instance_id`).
pub fn consumer_config(
    base: &ClientConfig,
    group: &str,
    instance_id: Option<&str>,
) -> ClientConfig {
    let mut c = base.clone();
    c.set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed");
    if let Some(id) = instance_id {
        // A static member that comes back within the session timeout gets its
        // partitions again without a rebalance (it does not leave the group on close).
        c.set("group.instance.id", id);
    }
    if base.get("session.timeout.ms").is_none() {
        // A dead instance's partitions move after this long (librdkafka's 45 s would
        // leave them unowned for most of a minute; some brokers also hold the first
        // assignment back for part of it).
        c.set("session.timeout.ms", SESSION_TIMEOUT_MS);
    }
    if base.get("heartbeat.interval.ms").is_none() {
        c.set("heartbeat.interval.ms", HEARTBEAT_INTERVAL_MS);
    }
    if base.get("fetch.queue.backoff.ms").is_none() {
        // The client's default (1 s) leaves the consumer idle for most of that second
        // whenever its queue fills up, which a busy stage does all the time.
        c.set("fetch.queue.backoff.ms", "10");
    }
    if base.get("partition.assignment.strategy").is_none() {
        // Incremental: partitions that stay keep being processed during a rebalance.
        c.set("partition.assignment.strategy", "cooperative-sticky");
    }
    if base.get("receive.message.max.bytes").is_none() {
        // Any record the broker holds can be fetched (and dead-lettered if too large):
        // a fetch response over this limit (default 100 MB) is dropped with the
        // connection and fetched again for ever, stalling every partition behind it.
        // The protocol's own bound; memory is used by the records actually fetched.
        c.set("receive.message.max.bytes", "2147483647");
    }
    c
}

/// Runs a stage until `stop` is set, then commits, checkpoints and leaves the group.
pub fn run<S: Stage>(
    consumer_config: ClientConfig,
    settings: Settings,
    stage: S,
    out: Output,
    metrics: Arc<Metrics>,
    health: Arc<StageHealth>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let topic = settings.topic.clone();
    let stage_name = settings.stage_name;
    let consumed = metrics
        .kafka
        .consumed
        .with_label_values(&[settings.stage_name]);
    health.beat();
    let ctx = Ctx {
        driver: Mutex::new(Driver {
            stage,
            out,
            settings,
            next: BTreeMap::new(),
            committed: BTreeMap::new(),
            pending: 0,
            batch_started: Instant::now(),
            metrics: metrics.clone(),
            fatal: None,
            rewind_needed: false,
            staged: None,
            staged_at: Instant::now(),
            rewinds_in_a_row: 0,
            rebalances: 0,
            health: health.clone(),
            consumed,
            counted: BTreeMap::new(),
            rewind_to: BTreeMap::new(),
            resend_at: None,
        }),
        failed_commits: Mutex::new(Vec::new()),
        metrics,
        topic: topic.clone(),
        stage_name,
        health: health.clone(),
        null_topic_updates: Default::default(),
        stop: stop.clone(),
    };
    let consumer: BaseConsumer<Ctx<S>> = consumer_config.create_with_context(ctx)?;
    consumer.subscribe(&[&topic])?;
    tracing::info!(stage = stage_name, %topic, "consuming");
    let mut last_poll = Instant::now();
    let mut last_positions = Instant::now();
    let mut chunk = Vec::with_capacity(CHUNK);
    while !stop.load(Ordering::Relaxed) {
        health.beat();
        if let Some(f) = health.fatal() {
            // The topics are not the ones the offsets and state belong to: nothing more
            // is committed, the revoke on close included.
            consumer.context().lock().fatal = Some(f.clone());
            anyhow::bail!("{stage_name}: {f}");
        }
        let (rebalances, room) = {
            let d = consumer.context().lock();
            (d.rebalances, d.room())
        };
        let mut wait = Duration::from_millis(20);
        while chunk.len() < room {
            match consumer.poll(wait) {
                Some(Ok(m)) => chunk.push(m),
                Some(Err(e)) => {
                    tracing::warn!(stage = stage_name, error = %e, "consumer error");
                    break;
                }
                None => break,
            }
            wait = Duration::ZERO;
        }
        let failed: Vec<i32> = std::mem::take(
            &mut *consumer
                .context()
                .failed_commits
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        let mut d = consumer.context().lock();
        // Not committed after all: the next commit sends these offsets again.
        for p in failed {
            d.committed.remove(&p);
            let at = Instant::now() + d.settings.linger;
            d.resend_at.get_or_insert(at);
        }
        if d.rebalances != rebalances && !chunk.is_empty() {
            d.read_again(&consumer, &chunk);
        } else {
            // Counted in `handle`, each offset once: not when read again.
            d.handle(&mut chunk);
        }
        chunk.clear();
        if d.rewind_needed {
            d.rewind_needed = false;
            d.rewind(&consumer);
        } else if d.fatal.is_none() && d.due() {
            d.commit(&consumer, CommitMode::Async, false);
        } else if d.fatal.is_none() && d.resend_at.is_some_and(|t| Instant::now() >= t) {
            d.resend(&consumer);
        }
        if last_poll.elapsed() >= Duration::from_millis(100) {
            d.out.poll();
            last_poll = Instant::now();
        }
        if last_positions.elapsed() >= Duration::from_millis(200) {
            d.publish_positions(&consumer);
            last_positions = Instant::now();
        }
        if let Some(f) = &d.fatal {
            anyhow::bail!("{stage_name}: {f}");
        }
    }
    {
        let mut d = consumer.context().lock();
        d.commit(&consumer, CommitMode::Sync, true);
        if let Some(f) = &d.fatal {
            anyhow::bail!("{stage_name}: {f}");
        }
    }
    // Leaving the group revokes the partitions through the callback (nothing pending).
    consumer.unsubscribe();
    drop(consumer);
    tracing::info!(stage = stage_name, "stopped");
    Ok(())
}
