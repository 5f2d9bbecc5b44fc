//! The desk in Kafka mode: the open alerts, claims and decisions of the whole group,
//! served by any instance (or by `server.role = "desk"` instances alone).
//!
//! A desk thread reads every partition of the alert topics and of the decisions topic
//! from the beginning, outside the consumer group, into an [`AlertBook`] of its own (a
//! local cache under `data_dir/kafka/desk`, rebuilt at every start). The decisions topic
//! is the desk's record: claims, releases and decisions as audit lines, keyed by pair.
//! A moderator's action is produced there first and takes effect when the desk reads it
//! back, in the topic's order: two desks racing for one alert agree on who got it.
//!
//! A false positive also reaches detection: a control record on the input topic, in the
//! partition that owns the pair (named by each alert's `pairwatch-partition` header), so
//! it is applied in order with the pair's events, in the same transaction and changelog.

use super::codec::{
    self, EraseNotice, EraseRequest, Erased, CONTENT_TYPE, CONTROL_ERASE, CONTROL_SUPPRESS,
    INPUT_OFFSET_HEADER, JSON, PARTITION_HEADER, RECORD_ERASE, RECORD_ERASED, RECORD_HEADER,
};
use super::health::StageHealth;
use super::Topics;
use crate::detect::alert::Alert;
use crate::metrics::Metrics;
use crate::server::alerts::{AlertBook, Logged};
use crate::server::desk::AuditLine;
use crate::server::grpc::ServiceError;
use crate::server::pipeline::Suppress;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{broadcast, watch};

/// How long an action waits for the desk to read its own record back.
const READ_BACK: Duration = Duration::from_secs(15);
/// Records the desk reads before it writes and publishes what it read.
const ROUND: usize = 1024;

/// The desk of a Kafka-mode instance.
pub struct KafkaDesk {
    pub book: Arc<RwLock<AlertBook>>,
    pub feed: broadcast::Sender<Logged>,
    producer: FutureProducer,
    topics: Topics,
    /// Per decisions partition, the next offset the desk will read.
    read: watch::Receiver<HashMap<i32, i64>>,
    /// Input partition and offset of the record that raised each alert (from the alert
    /// records' headers).
    owners: Arc<Mutex<HashMap<String, (i32, i64)>>>,
    /// Per alert topic partition, the next offset the desk will read.
    alerts_read: watch::Receiver<HashMap<(String, i32), i64>>,
    /// Erasures seen on the decisions topic, by request.
    erasures: watch::Receiver<HashMap<String, Erasure>>,
    /// Alert topics are compacted: an erasure writes a tombstone per erased alert key.
    alerts_compacted: bool,
}

/// Where an erasure stands, as this desk has read it.
#[derive(Clone, Debug, Default)]
pub struct Erasure {
    /// This desk dropped the user's alerts: how many.
    pub desk: Option<usize>,
    /// The record keys of the alerts dropped (then and since).
    pub keys: HashSet<String>,
    /// Input partitions done, with the pairs each removed.
    pub partitions: BTreeMap<i32, u32>,
}

/// An erased user, for the alerts read later: the request, and where its erase records
/// are in each input partition.
type ErasedUser = (String, BTreeMap<i32, i64>);

/// What `ForgetUser` did in Kafka mode.
pub struct Forgotten {
    pub pairs: u32,
    pub alerts: u32,
    /// Who had not confirmed within the timeout: `partition N`, `desk`.
    pub pending: Vec<String>,
}

/// What the desk thread needs.
pub struct DeskThread {
    consumer: BaseConsumer,
    book: Arc<RwLock<AlertBook>>,
    feed: broadcast::Sender<Logged>,
    read: watch::Sender<HashMap<i32, i64>>,
    owners: Arc<Mutex<HashMap<String, (i32, i64)>>>,
    erasures: watch::Sender<HashMap<String, Erasure>>,
    /// Users erased (as [`codec::subject`]), with the erasure that asked and where its
    /// records are: their alerts from before it, read later, are dropped too.
    erased: std::cell::RefCell<HashMap<String, ErasedUser>>,
    /// Per alert topic partition, the next offset the desk will read.
    alerts_read: watch::Sender<HashMap<(String, i32), i64>>,
    /// Where detection keeps its local checkpoints, and the partitions it owns.
    state_dir: PathBuf,
    owned: Arc<Mutex<HashSet<i32>>>,
    topics: Topics,
    metrics: Arc<Metrics>,
}

/// Starts the desk's cache in `<state_dir>/desk` (emptied first) and its reader;
/// `owned` is the set of input partitions this instance's detection owns.
pub fn new(
    base: &ClientConfig,
    group: &str,
    topics: Topics,
    alerts_compacted: bool,
    state_dir: &Path,
    owned: Arc<Mutex<HashSet<i32>>>,
    metrics: Arc<Metrics>,
) -> anyhow::Result<(KafkaDesk, DeskThread)> {
    let dir = state_dir.join("desk");
    let _ = std::fs::remove_dir_all(&dir);
    let book = Arc::new(RwLock::new(AlertBook::open(&dir)?));
    let (feed, _) = broadcast::channel(4096);
    let (read_tx, read_rx) = watch::channel(HashMap::new());
    let owners = Arc::new(Mutex::new(HashMap::new()));
    let (erasures_tx, erasures_rx) = watch::channel(HashMap::new());
    let (alerts_read_tx, alerts_read_rx) = watch::channel(HashMap::new());
    let mut c = super::driver::consumer_config(base, &format!("{group}.desk"), None);
    c.set("enable.partition.eof", "false");
    let consumer: BaseConsumer = c.create()?;
    let mut p = base.clone();
    p.set("enable.idempotence", "true").set("acks", "all");
    let desk = KafkaDesk {
        book: book.clone(),
        feed: feed.clone(),
        producer: p.create()?,
        topics: topics.clone(),
        read: read_rx,
        owners: owners.clone(),
        alerts_read: alerts_read_rx,
        erasures: erasures_rx,
        alerts_compacted,
    };
    let thread = DeskThread {
        consumer,
        book,
        feed,
        read: read_tx,
        owners,
        erasures: erasures_tx,
        erased: Default::default(),
        alerts_read: alerts_read_tx,
        state_dir: state_dir.to_path_buf(),
        owned,
        topics,
        metrics,
    };
    Ok((desk, thread))
}

fn header<'a>(m: &'a impl Message, key: &str) -> Option<&'a [u8]> {
    m.headers()?
        .iter()
        .find(|h| h.key == key)
        .and_then(|h| h.value)
}

impl DeskThread {
    /// Assigns every partition of the alert topics and the decisions topic, from the
    /// beginning.
    fn assign(&self) -> anyhow::Result<()> {
        let mut tpl = TopicPartitionList::new();
        let mut topics = self.topics.alert_topics();
        topics.push(self.topics.decisions.clone());
        for t in &topics {
            let md = self
                .consumer
                .fetch_metadata(Some(t), Duration::from_secs(15))?;
            let parts = md
                .topics()
                .first()
                .map(|t| t.partitions().len())
                .unwrap_or(0);
            if parts == 0 {
                anyhow::bail!("topic {t} does not exist");
            }
            for p in 0..parts as i32 {
                tpl.add_partition_offset(t, p, Offset::Beginning)?;
            }
        }
        self.consumer.assign(&tpl)?;
        Ok(())
    }

    /// Reads until `stop`: alerts into the book, audit lines applied.
    pub fn run(self, health: Arc<StageHealth>, stop: Arc<AtomicBool>) -> anyhow::Result<()> {
        health.beat();
        self.assign()?;
        health.joined();
        let mut read: HashMap<i32, i64> = HashMap::new();
        while !stop.load(Ordering::Relaxed) {
            health.beat();
            let mut n = 0;
            let mut wait = Duration::from_millis(100);
            while n < ROUND {
                let Some(m) = self.consumer.poll(wait) else {
                    break;
                };
                wait = Duration::ZERO;
                n += 1;
                let m = match m {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(error = %e, "desk: read error");
                        continue;
                    }
                };
                if m.topic() == self.topics.decisions {
                    match header(&m, RECORD_HEADER) {
                        Some(k) if k == RECORD_ERASE.as_bytes() => self.erase(m.payload()),
                        Some(k) if k == RECORD_ERASED.as_bytes() => self.erased(m.payload()),
                        _ => self.apply_line(m.payload()),
                    }
                    read.insert(m.partition(), m.offset() + 1);
                } else {
                    self.take_alert(&m);
                }
            }
            if n > 0 {
                self.publish();
                let _ = self.read.send(read.clone());
            }
            self.note_alert_positions();
        }
        Ok(())
    }

    /// Publishes how far the alert topics are read: the consumer's positions, which
    /// also pass the transaction markers no record is delivered for.
    fn note_alert_positions(&self) {
        let Ok(tpl) = self.consumer.position() else {
            return;
        };
        let now: HashMap<(String, i32), i64> = tpl
            .elements()
            .iter()
            .filter(|e| e.topic() != self.topics.decisions)
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some(((e.topic().to_string(), e.partition()), o)),
                _ => None,
            })
            .collect();
        self.alerts_read.send_if_modified(|read| {
            let changed = *read != now;
            if changed {
                *read = now;
            }
            changed
        });
    }

    fn apply_line(&self, payload: Option<&[u8]>) {
        match payload.map(serde_json::from_slice::<AuditLine>) {
            Some(Ok(line)) => self
                .book
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .apply(&line),
            _ => tracing::warn!("desk: a decisions record that is not an audit line, skipped"),
        }
    }

    /// An erasure asked: drops the user's alerts and evidence from the desk, and those
    /// from before the erasure read later. Alerts the user's later activity raises stay.
    fn erase(&self, payload: Option<&[u8]>) {
        let Some(notice) = payload.and_then(|p| serde_json::from_slice::<EraseNotice>(p).ok())
        else {
            tracing::warn!("desk: an erase record without its subject, skipped");
            return;
        };
        let before = |a: &Alert| self.before(a, &notice.offsets);
        let forgotten = self
            .book
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .forget(|a| involves(a, &notice.subject) && before(a));
        let (done, keys) = match forgotten {
            Ok(alerts) => (
                Some(alerts.len()),
                alerts.iter().map(codec::alert_pair_key).collect(),
            ),
            Err(e) => {
                tracing::error!(error = %e, "desk: cannot rewrite the alert cache to erase a user");
                (None, HashSet::new())
            }
        };
        self.erased
            .borrow_mut()
            .insert(notice.subject, (notice.request.clone(), notice.offsets));
        self.erasures.send_modify(|all| {
            let e = all.entry(notice.request).or_default();
            e.desk = done;
            e.keys.extend(keys);
        });
    }

    /// Whether `alert` was raised by a record before the erase records at `offsets` (an
    /// alert whose origin is not known counts as before).
    fn before(&self, alert: &Alert, offsets: &BTreeMap<i32, i64>) -> bool {
        let owners = self.owners.lock().unwrap_or_else(|p| p.into_inner());
        match owners.get(&alert.alert_id) {
            Some((p, o)) => offsets.get(p).is_none_or(|erase| o < erase),
            None => true,
        }
    }

    /// Deletes this instance's local checkpoint of input partition `p` if detection does
    /// not own `p` here (it moved away) and the checkpoint is from before the erase
    /// record at `offset`: the owner erased the user, this copy would keep them.
    /// Detection restores `p` from the changelog alone if it comes back.
    fn drop_stale_checkpoint(&self, p: i32, offset: i64) {
        let owned = self.owned.lock().unwrap_or_else(|p| p.into_inner());
        if owned.contains(&p) {
            return;
        }
        let dir = super::restore::partition_dir(&self.state_dir, &self.topics.input, p);
        match crate::server::checkpoint::position(&dir) {
            Ok(Some(at)) if at as i64 <= offset => {
                if let Err(e) = std::fs::remove_dir_all(&dir) {
                    tracing::error!(partition = p, error = %e, "desk: cannot delete a stale local checkpoint");
                } else {
                    tracing::info!(
                        partition = p,
                        "desk: stale local checkpoint deleted after an erasure"
                    );
                }
            }
            _ => {}
        }
    }

    /// An input partition's part of an erasure done.
    fn erased(&self, payload: Option<&[u8]>) {
        let Some(e) = payload.and_then(|p| serde_json::from_slice::<Erased>(p).ok()) else {
            return;
        };
        self.drop_stale_checkpoint(e.partition, e.offset);
        self.erasures.send_modify(|all| {
            all.entry(e.request)
                .or_default()
                .partitions
                .insert(e.partition, e.pairs);
        });
    }

    fn take_alert(&self, m: &impl Message) {
        // A tombstone (an erased pair on a compacted alerts topic) carries nothing.
        let Some(payload) = m.payload() else { return };
        let Ok(alert) = serde_json::from_slice::<Alert>(payload) else {
            tracing::warn!("desk: an alerts record that is not an alert, skipped");
            return;
        };
        let number = |key: &str| {
            header(m, key)
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|v| v.parse::<i64>().ok())
        };
        if let (Some(p), Some(o)) = (number(PARTITION_HEADER), number(INPUT_OFFSET_HEADER)) {
            self.owners
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(alert.alert_id.clone(), (p as i32, o));
        }
        let erased = self.erased.borrow();
        if !erased.is_empty() {
            let hit = alert.user_ids().find_map(|u| {
                erased
                    .get(&codec::subject(&alert.tenant, u))
                    .filter(|(_, offsets)| self.before(&alert, offsets))
            });
            if let Some((request, _)) = hit {
                let key = codec::alert_pair_key(&alert);
                self.erasures.send_modify(|all| {
                    all.entry(request.clone()).or_default().keys.insert(key);
                });
                return;
            }
        }
        self.book
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .queue(alert);
    }

    /// Writes the alerts read to the cache and hands them to the live feed.
    fn publish(&self) {
        let mut book = self.book.write().unwrap_or_else(|p| p.into_inner());
        let (written, err) = book.write_pending();
        if let Some(e) = err {
            tracing::error!(error = %e, "desk: cannot write the alert cache; retried");
        }
        let _ = book.sync();
        self.metrics.set_open(book.open_counts());
        drop(book);
        for l in written {
            let _ = self.feed.send(l);
        }
    }
}

impl KafkaDesk {
    /// Produces an audit line to the decisions topic, keyed by a digest of the alert's
    /// pair (every line of an alert in one partition, in order; no user id in the key),
    /// and waits until this desk has read it back (so it has taken effect, or lost a
    /// race).
    pub async fn record(&self, line: &AuditLine, alert: &Alert) -> Result<(), ServiceError> {
        let payload =
            serde_json::to_vec(line).map_err(|e| ServiceError::Internal(e.to_string()))?;
        let key = codec::pair_digest(alert);
        let headers = OwnedHeaders::new().insert(Header {
            key: CONTENT_TYPE,
            value: Some(JSON),
        });
        let record = FutureRecord::to(&self.topics.decisions)
            .key(key.as_str())
            .payload(&payload)
            .headers(headers);
        let (partition, offset) = self
            .producer
            .send(record, READ_BACK)
            .await
            .map(|d| (d.partition, d.offset))
            .map_err(|(e, _)| unavailable(&self.topics.decisions, e))?;
        let mut read = self.read.clone();
        let caught_up = tokio::time::timeout(READ_BACK, async {
            read.wait_for(|r| r.get(&partition).is_some_and(|&o| o > offset))
                .await
                .is_ok()
        })
        .await;
        match caught_up {
            Ok(true) => Ok(()),
            _ => Err(ServiceError::Unavailable(format!(
                "the decision is stored on {} but this desk did not read it back within {}s; \
                 it takes effect when read",
                self.topics.decisions,
                READ_BACK.as_secs()
            ))),
        }
    }

    /// `ForgetUser` across the group: announces the erasure to every desk (the decisions
    /// topic) and sends it to every input partition, whose owner removes the user's
    /// pairs (changelog tombstones) and acknowledges; waits for those acknowledgements
    /// and this desk, at most `timeout`. With compacted alert topics, writes a tombstone
    /// per erased alert key.
    pub async fn forget(
        &self,
        tenant: &str,
        user: &str,
        timeout: Duration,
    ) -> Result<Forgotten, ServiceError> {
        let request = crate::detect::digest::hex(&crate::server::random_bytes(16));
        let ask = EraseRequest {
            request: request.clone(),
            tenant: tenant.to_string(),
            user: user.to_string(),
        };
        let ask = serde_json::to_vec(&ask).map_err(|e| ServiceError::Internal(e.to_string()))?;
        let partitions = self.input_partitions().await?;
        // Where the desk must have read the alerts to: every alert raised so far.
        let alerts_end = self.alerts_end().await?;
        let mut sends = Vec::new();
        for p in 0..partitions {
            sends.push(
                self.enqueue(
                    FutureRecord::to(&self.topics.input)
                        .partition(p)
                        .key(request.as_str())
                        .payload(ask.as_slice())
                        .headers(codec::control_headers(CONTROL_ERASE)),
                )?,
            );
        }
        // The desks learn where the erase records are: alerts raised before them go.
        let offsets = self.delivered(sends).await?.into_iter().collect();
        let notice = EraseNotice {
            request: request.clone(),
            subject: codec::subject(tenant, user),
            offsets,
        };
        let notice =
            serde_json::to_vec(&notice).map_err(|e| ServiceError::Internal(e.to_string()))?;
        let sent = self.enqueue(
            FutureRecord::to(&self.topics.decisions)
                .key(request.as_str())
                .payload(notice.as_slice())
                .headers(codec::record_headers(RECORD_ERASE)),
        )?;
        self.delivered(vec![sent]).await?;
        let (mut erasures, mut alerts_read) = (self.erasures.clone(), self.alerts_read.clone());
        let complete = |all: &HashMap<String, Erasure>| {
            all.get(&request)
                .is_some_and(|e| e.desk.is_some() && e.partitions.len() >= partitions as usize)
        };
        let caught_up = |read: &HashMap<(String, i32), i64>| {
            alerts_end
                .iter()
                .all(|(tp, end)| read.get(tp).is_some_and(|r| r >= end))
        };
        let _ = tokio::time::timeout(timeout, async {
            let _ = erasures.wait_for(complete).await;
            let _ = alerts_read.wait_for(caught_up).await;
        })
        .await;
        let desk_caught_up = caught_up(&self.alerts_read.borrow());
        let state = self
            .erasures
            .borrow()
            .get(&request)
            .cloned()
            .unwrap_or_default();
        let mut pending: Vec<String> = (0..partitions)
            .filter(|p| !state.partitions.contains_key(p))
            .map(|p| format!("partition {p}"))
            .collect();
        if state.desk.is_none() || !desk_caught_up {
            pending.push("desk".into());
        }
        if self.alerts_compacted {
            let keys: Vec<String> = state.keys.iter().cloned().collect();
            self.tombstones(&keys).await?;
        }
        let alerts = state.desk.unwrap_or(0);
        Ok(Forgotten {
            pairs: state.partitions.values().sum(),
            alerts: alerts as u32,
            pending,
        })
    }

    /// How many partitions the input topic has.
    async fn input_partitions(&self) -> Result<i32, ServiceError> {
        let producer = self.producer.clone();
        let topic = self.topics.input.clone();
        tokio::task::spawn_blocking(move || {
            let md = producer
                .client()
                .fetch_metadata(Some(&topic), Duration::from_secs(10))
                .map_err(|e| unavailable(&topic, e))?;
            match md.topics().first().map(|t| t.partitions().len()) {
                Some(n) if n > 0 => Ok(n as i32),
                _ => Err(ServiceError::Unavailable(format!(
                    "topic {topic} has no partitions"
                ))),
            }
        })
        .await
        .map_err(|e| ServiceError::Internal(e.to_string()))?
    }

    /// A tombstone per alert record key on every alert topic: compaction then removes
    /// the erased pairs' alerts.
    async fn tombstones(&self, keys: &[String]) -> Result<(), ServiceError> {
        let mut sends = Vec::new();
        for topic in self.topics.alert_topics() {
            for key in keys {
                let record: FutureRecord<'_, str, [u8]> =
                    FutureRecord::to(&topic).key(key.as_str());
                sends.push(self.enqueue(record)?);
            }
        }
        self.delivered(sends).await.map(|_| ())
    }

    /// Hands a record to the producer without waiting for its delivery.
    fn enqueue(&self, record: FutureRecord<'_, str, [u8]>) -> Result<DeliveryFuture, ServiceError> {
        let topic = record.topic.to_string();
        self.producer
            .send_result(record)
            .map_err(|(e, _)| unavailable(&topic, e))
    }

    /// Waits until every record handed over is stored; returns where (partition,
    /// offset), in order.
    async fn delivered(&self, sends: Vec<DeliveryFuture>) -> Result<Vec<(i32, i64)>, ServiceError> {
        let mut at = Vec::with_capacity(sends.len());
        for sent in sends {
            match sent.await {
                Ok(Ok(d)) => at.push((d.partition, d.offset)),
                Ok(Err((e, _))) => return Err(unavailable("its topic", e)),
                Err(_) => return Err(ServiceError::Unavailable("kafka producer closed".into())),
            }
        }
        Ok(at)
    }

    /// The end of every alert topic partition now.
    async fn alerts_end(&self) -> Result<HashMap<(String, i32), i64>, ServiceError> {
        let producer = self.producer.clone();
        let topics = self.topics.alert_topics();
        tokio::task::spawn_blocking(move || {
            let client = producer.client();
            let mut ends = HashMap::new();
            for topic in topics {
                let md = client
                    .fetch_metadata(Some(&topic), Duration::from_secs(10))
                    .map_err(|e| unavailable(&topic, e))?;
                let parts = md.topics().first().map_or(0, |t| t.partitions().len()) as i32;
                for p in 0..parts {
                    let (_, high) = client
                        .fetch_watermarks(&topic, p, Duration::from_secs(10))
                        .map_err(|e| unavailable(&topic, e))?;
                    if high > 0 {
                        ends.insert((topic.clone(), p), high);
                    }
                }
            }
            Ok(ends)
        })
        .await
        .map_err(|e| ServiceError::Internal(e.to_string()))?
    }

    /// Sends a false positive to the detection stage, in the input partition that owns
    /// the pair (the alert's own header; the pair key's partition when not known).
    pub async fn suppress(&self, alert: &Alert) -> Result<(), ServiceError> {
        let sup = Suppress::of(alert);
        let payload =
            serde_json::to_vec(&sup).map_err(|e| ServiceError::Internal(e.to_string()))?;
        let key = codec::alert_pair_key(alert);
        let owner = self
            .owners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&alert.alert_id)
            .map(|(p, _)| *p);
        let mut record = FutureRecord::to(&self.topics.input)
            .key(key.as_str())
            .payload(&payload)
            .headers(codec::control_headers(CONTROL_SUPPRESS));
        if let Some(p) = owner {
            record = record.partition(p);
        }
        self.producer
            .send(record, READ_BACK)
            .await
            .map(|_| ())
            .map_err(|(e, _)| unavailable(&self.topics.input, e))
    }
}

/// Whether `alert` names the user `subject` (as suspect, target or evidence sender).
fn involves(alert: &Alert, subject: &str) -> bool {
    alert
        .user_ids()
        .any(|u| codec::subject(&alert.tenant, u) == subject)
}

fn unavailable(topic: &str, e: rdkafka::error::KafkaError) -> ServiceError {
    ServiceError::Unavailable(format!("kafka did not store the record on {topic}: {e}"))
}
