//! What `/readyz` and the lag gauge say in Kafka mode, and the thread that watches the
//! brokers from outside the consumer loops.
//!
//! Ready means: every stage's consumer joined its group and was given its partitions
//! (none is fine: an idle member of a group with more members than partitions is ready,
//! and says so in `pairwatch_kafka_idle_member`), those partitions are restored, the
//! stage is not re-reading records after a failed batch, its loop is moving, and the
//! brokers answer. The monitor thread, with a client of its own so that a slow broker
//! never blocks a consumer loop:
//! - every second, reads each owned input partition's high watermark and sets the lag
//!   from the stage's processing position (before the first assignment: from the
//!   group's committed offsets, so a backlog shows while the group forms); a failed
//!   round marks the brokers unreachable, a good one clears it;
//! - every two seconds, checks the id of every topic the service uses: a topic deleted
//!   and created again (a broker that restarted without its data, an operator's mistake)
//!   leaves the clients with metadata of the old one, and the service's offsets,
//!   checkpoints and changelog no longer match its records. The instance then stops with
//!   an error that says so, and its supervisor starts it again on the topics as they are.

use crate::metrics::Metrics;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A consumer loop that has not come round for this long is stalled.
const STALL: Duration = Duration::from_secs(30);
/// How often the lag and the brokers' reachability are read.
const ROUND: Duration = Duration::from_secs(1);
/// How often the topic ids are checked.
const ID_CHECK: Duration = Duration::from_secs(2);
/// A topic missing for this long (not just while a broker starts) stops the instance.
const MISSING_GRACE: Duration = Duration::from_secs(15);
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

struct Shared {
    started: Instant,
    broker_down: AtomicBool,
    /// `pairwatch_kafka_brokers_unreachable`, kept with `broker_down`.
    unreachable: Option<prometheus::IntGauge>,
    fatal: Mutex<Option<String>>,
}

impl Shared {
    /// Returns the previous state.
    fn set_broker_down(&self, down: bool) -> bool {
        let was = self.broker_down.swap(down, Ordering::Relaxed);
        if let Some(g) = &self.unreachable {
            g.set(down as i64);
        }
        was
    }
}

/// The Kafka side's readiness: created before the stages, read by `/readyz`.
pub struct Health {
    shared: Arc<Shared>,
    stages: Mutex<Vec<Arc<StageHealth>>>,
}

impl Default for Health {
    fn default() -> Self {
        Health::with_gauge(None)
    }
}

impl Health {
    /// Readiness whose broker state shows in `metrics`.
    pub fn new(metrics: &Metrics) -> Health {
        Health::with_gauge(Some(metrics.kafka.brokers_unreachable.clone()))
    }

    fn with_gauge(unreachable: Option<prometheus::IntGauge>) -> Health {
        Health {
            shared: Arc::new(Shared {
                started: Instant::now(),
                broker_down: AtomicBool::new(false),
                unreachable,
                fatal: Mutex::new(None),
            }),
            stages: Mutex::new(Vec::new()),
        }
    }

    /// The state of one stage's consumer, registered for readiness.
    pub fn stage(&self, name: &'static str) -> Arc<StageHealth> {
        let s = Arc::new(StageHealth {
            name,
            shared: self.shared.clone(),
            joined: AtomicBool::new(false),
            restoring: AtomicBool::new(false),
            rewinding: AtomicBool::new(false),
            heartbeat_ms: AtomicU64::new(0),
            positions: Mutex::new(BTreeMap::new()),
        });
        self.stages
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(s.clone());
        s
    }

    /// Why the instance is not ready, or `None` when it is.
    pub fn unready_reason(&self) -> Option<String> {
        if let Some(f) = self.fatal() {
            return Some(format!("stopping: {f}"));
        }
        if self.shared.broker_down.load(Ordering::Relaxed) {
            return Some("kafka brokers unreachable".into());
        }
        let stages = self.stages.lock().unwrap_or_else(|p| p.into_inner());
        if stages.is_empty() {
            return Some("kafka stages starting".into());
        }
        stages.iter().find_map(|s| s.unready_reason())
    }

    /// The error that stops the instance, once there is one.
    pub fn fatal(&self) -> Option<String> {
        self.shared
            .fatal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_fatal(&self, why: String) {
        let mut f = self.shared.fatal.lock().unwrap_or_else(|p| p.into_inner());
        if f.is_none() {
            tracing::error!(error = %why, "kafka: stopping the instance");
            *f = Some(why);
        }
    }

    fn set_broker_down(&self, down: bool) {
        let was = self.shared.set_broker_down(down);
        if was != down {
            if down {
                tracing::warn!("kafka brokers unreachable: not ready");
            } else {
                tracing::info!("kafka brokers reachable again");
            }
        }
    }
}

/// One stage's consumer as readiness and the lag see it; written by the stage's thread.
pub struct StageHealth {
    pub name: &'static str,
    shared: Arc<Shared>,
    /// The group gave this member its first assignment (possibly empty).
    joined: AtomicBool,
    /// Partitions being restored before they are consumed.
    restoring: AtomicBool,
    /// Records are read again after a failed batch, up to where the batch had reached.
    rewinding: AtomicBool,
    /// When the consumer loop last came round, in ms from the start.
    heartbeat_ms: AtomicU64,
    /// Owned partitions and the next offset to process in each.
    positions: Mutex<BTreeMap<i32, i64>>,
}

impl StageHealth {
    fn unready_reason(&self) -> Option<String> {
        let name = self.name;
        if !self.joined.load(Ordering::Relaxed) {
            return Some(format!(
                "{name}: waiting for the consumer group to assign partitions"
            ));
        }
        if self.restoring.load(Ordering::Relaxed) {
            return Some(format!("{name}: restoring partition state"));
        }
        if self.rewinding.load(Ordering::Relaxed) {
            return Some(format!(
                "{name}: reading records again after a failed batch"
            ));
        }
        let now = self.shared.started.elapsed().as_millis() as u64;
        let idle = now.saturating_sub(self.heartbeat_ms.load(Ordering::Relaxed));
        if idle > STALL.as_millis() as u64 {
            return Some(format!(
                "{name}: the consumer loop has not come round for {} s",
                idle / 1000
            ));
        }
        None
    }

    /// The consumer loop came round.
    pub fn beat(&self) {
        self.heartbeat_ms.store(
            self.shared.started.elapsed().as_millis() as u64,
            Ordering::Relaxed,
        );
    }

    pub fn set_restoring(&self, on: bool) {
        self.restoring.store(on, Ordering::Relaxed);
        self.beat();
    }

    /// An assignment came (possibly empty): the member is in the group.
    pub fn joined(&self) {
        self.joined.store(true, Ordering::Relaxed);
    }

    pub fn set_rewinding(&self, on: bool) {
        self.rewinding.store(on, Ordering::Relaxed);
    }

    /// The owned partitions and the next offset to process in each.
    pub fn set_positions(&self, positions: BTreeMap<i32, i64>) {
        *self.positions.lock().unwrap_or_else(|p| p.into_inner()) = positions;
    }

    /// The client reported every broker down.
    pub fn brokers_down(&self) {
        if !self.shared.set_broker_down(true) {
            tracing::warn!(stage = self.name, "kafka brokers unreachable: not ready");
        }
    }

    /// The error the monitor found, if any: the stage stops on it.
    pub fn fatal(&self) -> Option<String> {
        self.shared
            .fatal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn snapshot(&self) -> (bool, BTreeMap<i32, i64>) {
        (
            self.joined.load(Ordering::Relaxed),
            self.positions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

/// What the monitor watches.
pub struct Watch {
    /// The topic the detection stage consumes.
    pub input: String,
    pub group: String,
    /// Every topic the service reads or writes (their ids are checked).
    pub topics: Vec<String>,
}

/// The monitor thread's body: runs until `stop`; an error stops the instance.
pub fn monitor(
    base: ClientConfig,
    watch: Watch,
    health: Arc<Health>,
    detect: Arc<StageHealth>,
    metrics: Arc<Metrics>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<()> {
    let mut c = base;
    // Never subscribes: the group id only lets it read the group's committed offsets.
    c.set("group.id", &watch.group)
        .set("enable.auto.commit", "false");
    let client: BaseConsumer = c.create()?;
    let mut ids = TopicIds::default();
    let mut lagging: Vec<i32> = Vec::new();
    let mut last_id_check: Option<Instant> = None;
    let mut id_check = ID_CHECK;
    while !stop.load(Ordering::Relaxed) {
        let round = Instant::now();
        let (joined, owned) = detect.snapshot();
        let reachable = match lag_round(
            &client,
            &watch,
            joined,
            owned,
            &metrics,
            &mut lagging,
            &stop,
        ) {
            Ok(()) => {
                tracing::debug!(
                    joined,
                    partitions = lagging.len(),
                    elapsed_ms = round.elapsed().as_millis() as u64,
                    "kafka monitor round"
                );
                true
            }
            Err(e) => {
                tracing::debug!(error = %e, "kafka monitor round failed");
                false
            }
        };
        health.set_broker_down(!reachable);
        metrics.kafka.idle_member.set(
            (joined
                && detect
                    .positions
                    .lock()
                    .map(|p| p.is_empty())
                    .unwrap_or(false)) as i64,
        );
        if reachable && last_id_check.is_none_or(|t| t.elapsed() >= id_check) {
            last_id_check = Some(Instant::now());
            match describe_topics(&client, &watch.topics, CALL_TIMEOUT) {
                Ok(found) => {
                    id_check = ID_CHECK;
                    if let Err(why) = ids.check(found) {
                        health.set_fatal(why.clone());
                        anyhow::bail!("{why}");
                    }
                }
                Err(e) => {
                    // Not every broker answers it: try again now and then, without
                    // holding up the lag.
                    id_check = Duration::from_secs(30);
                    tracing::debug!(error = %e, "kafka monitor: topics not described");
                }
            }
        }
        metrics
            .kafka
            .unready
            .set(health.unready_reason().is_some() as i64);
        while round.elapsed() < ROUND && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(())
}

/// One round: a metadata request says whether the brokers answer (an error is
/// returned if not); then the high watermark of each partition against the stage's
/// position (owned partitions once the member joined; every partition against the
/// group's committed offset before). A partition whose watermark cannot be read keeps
/// no lag sample this round.
fn lag_round(
    client: &BaseConsumer,
    watch: &Watch,
    joined: bool,
    owned: BTreeMap<i32, i64>,
    metrics: &Metrics,
    lagging: &mut Vec<i32>,
    stop: &std::sync::atomic::AtomicBool,
) -> anyhow::Result<()> {
    let md = client.fetch_metadata(Some(&watch.input), CALL_TIMEOUT)?;
    let count = md
        .topics()
        .first()
        .filter(|t| t.error().is_none())
        .map_or(0, |t| t.partitions().len()) as i32;
    let positions = if joined {
        owned
    } else if count == 0 {
        BTreeMap::new()
    } else {
        let mut tpl = TopicPartitionList::new();
        for p in 0..count {
            tpl.add_partition(&watch.input, p);
        }
        let committed = client
            .committed_offsets(tpl, CALL_TIMEOUT)
            .unwrap_or_default();
        (0..count)
            .map(|p| {
                let c = match committed
                    .find_partition(&watch.input, p)
                    .map(|e| e.offset())
                {
                    Some(Offset::Offset(o)) => o,
                    // No commit yet: consumption starts at the beginning.
                    _ => -1,
                };
                (p, c)
            })
            .collect()
    };
    let mut seen = Vec::with_capacity(positions.len());
    for (&p, &pos) in positions.iter().filter(|(&p, _)| p < count) {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        match client.fetch_watermarks(&watch.input, p, CALL_TIMEOUT) {
            Ok((low, high)) => {
                let from = if pos < 0 { low } else { pos.max(low) };
                metrics
                    .kafka
                    .lag
                    .with_label_values(&[&p.to_string()])
                    .set((high - from).max(0));
                seen.push(p);
            }
            Err(e) => tracing::debug!(partition = p, error = %e, "watermarks unavailable"),
        }
    }
    for p in lagging.iter().filter(|p| !seen.contains(p)) {
        let _ = metrics.kafka.lag.remove_label_values(&[&p.to_string()]);
    }
    *lagging = seen;
    Ok(())
}

/// A topic as the brokers describe it: its id (`None` when the broker has no ids), or
/// the error code when it could not be described.
type Described = Vec<(String, Result<Option<String>, String>)>;

/// The ids seen first, and since when a topic has been missing.
#[derive(Default)]
struct TopicIds {
    first: HashMap<String, String>,
    missing_since: HashMap<String, Instant>,
}

impl TopicIds {
    /// Compares with the ids seen first: a different id, or a topic missing for longer
    /// than [`MISSING_GRACE`], is an error that names the topic.
    fn check(&mut self, found: Described) -> Result<(), String> {
        for (topic, r) in found {
            match r {
                Ok(id) => {
                    self.missing_since.remove(&topic);
                    let Some(id) = id else { continue };
                    match self.first.get(&topic) {
                        None => {
                            self.first.insert(topic, id);
                        }
                        Some(old) if *old != id => {
                            return Err(format!(
                                "topic {topic} was deleted and created again while the service ran \
                                 (topic id {old}, now {id}), as a broker that restarted without its \
                                 data does: the clients' metadata, the committed offsets and the \
                                 local checkpoints no longer match it; start again to work on the \
                                 topic as it is now"
                            ));
                        }
                        Some(_) => {}
                    }
                }
                Err(code) => {
                    let since = *self
                        .missing_since
                        .entry(topic.clone())
                        .or_insert_with(Instant::now);
                    if since.elapsed() >= MISSING_GRACE {
                        return Err(format!(
                            "topic {topic} is gone from the brokers ({code}) for {} s: deleted, or \
                             a broker restarted without its data; start again once it exists \
                             (kafka.create_topics creates it at start)",
                            since.elapsed().as_secs()
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// The ids of `topics` that the brokers know and give (topics missing, or brokers
/// without topic ids, are left out), read with a client of its own.
pub fn topic_ids(
    base: &ClientConfig,
    topics: &[String],
) -> Result<HashMap<String, String>, String> {
    let client: BaseConsumer = base.create().map_err(|e| e.to_string())?;
    Ok(describe_topics(&client, topics, Duration::from_secs(10))?
        .into_iter()
        .filter_map(|(t, r)| Some((t, r.ok()??)))
        .collect())
}

/// A C string from librdkafka, copied.
///
/// # Safety
/// `p` is a valid NUL-terminated string for the duration of the call.
unsafe fn owned(p: *const std::os::raw::c_char) -> String {
    std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
}

/// The topics' ids, through librdkafka's DescribeTopics (rust-rdkafka has no wrapper).
fn describe_topics(
    client: &BaseConsumer,
    topics: &[String],
    timeout: Duration,
) -> Result<Described, String> {
    use rdkafka::bindings as rd;
    use std::ffi::CString;
    let names: Vec<CString> = topics
        .iter()
        .map(|t| CString::new(t.as_str()).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    let mut ptrs: Vec<*const std::ffi::c_char> = names.iter().map(|n| n.as_ptr()).collect();
    let ms = timeout.as_millis() as std::ffi::c_int;
    // To a broker that answers, not the controller: some clusters (librdkafka's mock)
    // have none to offer, and the request would wait out its timeout.
    let broker = client
        .fetch_metadata(None, timeout)
        .map_err(|e| e.to_string())?
        .brokers()
        .first()
        .map(|b| b.id());
    // SAFETY: every object created here is destroyed here, after its last use; the
    // strings read from the result are copied before the event is destroyed; the
    // client handle outlives the call.
    unsafe {
        let rk = client.client().native_ptr();
        let queue = rd::rd_kafka_queue_new(rk);
        let collection = rd::rd_kafka_TopicCollection_of_topic_names(ptrs.as_mut_ptr(), ptrs.len());
        let options = rd::rd_kafka_AdminOptions_new(
            rk,
            rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBETOPICS,
        );
        let mut errstr = [0 as std::ffi::c_char; 256];
        rd::rd_kafka_AdminOptions_set_request_timeout(
            options,
            ms,
            errstr.as_mut_ptr(),
            errstr.len(),
        );
        if let Some(id) = broker {
            rd::rd_kafka_AdminOptions_set_broker(options, id, errstr.as_mut_ptr(), errstr.len());
        }
        rd::rd_kafka_DescribeTopics(rk, collection, options, queue);
        let event = rd::rd_kafka_queue_poll(queue, ms + 1000);
        let result = if event.is_null() {
            Err("no answer".to_string())
        } else if rd::rd_kafka_event_error(event)
            != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
        {
            Err(owned(rd::rd_kafka_event_error_string(event)))
        } else {
            let res = rd::rd_kafka_event_DescribeTopics_result(event);
            let mut count = 0usize;
            let descs = rd::rd_kafka_DescribeTopics_result_topics(res, &mut count);
            let mut out = Vec::with_capacity(count);
            for i in 0..count {
                let d = *descs.add(i);
                let name = owned(rd::rd_kafka_TopicDescription_name(d));
                let err = rd::rd_kafka_TopicDescription_error(d);
                let r = if !err.is_null()
                    && rd::rd_kafka_error_code(err)
                        != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
                {
                    Err(owned(rd::rd_kafka_error_name(err)))
                } else {
                    let id = rd::rd_kafka_TopicDescription_topic_id(d);
                    let (hi, lo) = if id.is_null() {
                        (0, 0)
                    } else {
                        (
                            rd::rd_kafka_Uuid_most_significant_bits(id),
                            rd::rd_kafka_Uuid_least_significant_bits(id),
                        )
                    };
                    Ok((hi != 0 || lo != 0).then(|| format!("{hi:016x}{lo:016x}")))
                };
                out.push((name, r));
            }
            Ok(out)
        };
        if !event.is_null() {
            rd::rd_kafka_event_destroy(event);
        }
        rd::rd_kafka_AdminOptions_destroy(options);
        rd::rd_kafka_TopicCollection_destroy(collection);
        rd::rd_kafka_queue_destroy(queue);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_follows_the_stages_and_the_brokers() {
        let h = Health::default();
        assert!(h.unready_reason().unwrap().contains("starting"));
        let s = h.stage("detect");
        s.beat();
        assert!(h.unready_reason().unwrap().contains("assign partitions"));
        s.joined();
        s.set_restoring(true);
        assert!(h.unready_reason().unwrap().contains("restoring"));
        s.set_restoring(false);
        assert_eq!(h.unready_reason(), None, "an idle member is ready");
        s.set_rewinding(true);
        assert!(h.unready_reason().unwrap().contains("again"));
        s.set_rewinding(false);
        s.brokers_down();
        assert!(h.unready_reason().unwrap().contains("unreachable"));
        h.set_broker_down(false);
        assert_eq!(h.unready_reason(), None);
        h.set_fatal("topic t was deleted".into());
        assert!(s.fatal().is_some());
        assert!(h.unready_reason().unwrap().contains("topic t"));
    }

    #[test]
    fn a_topic_id_that_changes_or_a_topic_that_stays_gone_is_an_error() {
        let mut ids = TopicIds::default();
        let one = |t: &str, id: Option<&str>| vec![(t.to_string(), Ok(id.map(String::from)))];
        ids.check(one("a", Some("01"))).unwrap();
        ids.check(one("a", Some("01"))).unwrap();
        // A broker without topic ids: nothing to compare.
        ids.check(one("b", None)).unwrap();
        let err = ids.check(one("a", Some("02"))).unwrap_err();
        assert!(
            err.contains("topic a was deleted and created again"),
            "{err}"
        );
        let gone = vec![("c".to_string(), Err("UNKNOWN_TOPIC_OR_PART".to_string()))];
        ids.check(gone.clone()).unwrap();
        ids.missing_since
            .insert("c".into(), Instant::now() - MISSING_GRACE);
        let err = ids.check(gone).unwrap_err();
        assert!(err.contains("topic c is gone"), "{err}");
    }
}
