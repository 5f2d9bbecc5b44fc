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
    self, CONTENT_TYPE, CONTROL_HEADER, CONTROL_SUPPRESS, JSON, PARTITION_HEADER,
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
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::path::Path;
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
    /// Input partition of each alert's pair, from the alert records.
    owners: Arc<Mutex<HashMap<String, i32>>>,
}

/// What the desk thread needs.
pub struct DeskThread {
    consumer: BaseConsumer,
    book: Arc<RwLock<AlertBook>>,
    feed: broadcast::Sender<Logged>,
    read: watch::Sender<HashMap<i32, i64>>,
    owners: Arc<Mutex<HashMap<String, i32>>>,
    topics: Topics,
    metrics: Arc<Metrics>,
}

/// Starts the desk's cache in `dir` (emptied first) and its reader.
pub fn new(
    base: &ClientConfig,
    group: &str,
    topics: Topics,
    dir: &Path,
    metrics: Arc<Metrics>,
) -> anyhow::Result<(KafkaDesk, DeskThread)> {
    let _ = std::fs::remove_dir_all(dir);
    let book = Arc::new(RwLock::new(AlertBook::open(dir)?));
    let (feed, _) = broadcast::channel(4096);
    let (read_tx, read_rx) = watch::channel(HashMap::new());
    let owners = Arc::new(Mutex::new(HashMap::new()));
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
    };
    let thread = DeskThread {
        consumer,
        book,
        feed,
        read: read_tx,
        owners,
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
                    self.apply_line(m.payload());
                    read.insert(m.partition(), m.offset() + 1);
                } else {
                    self.take_alert(&m);
                }
            }
            if n > 0 {
                self.publish();
                let _ = self.read.send(read.clone());
            }
        }
        Ok(())
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

    fn take_alert(&self, m: &impl Message) {
        // A tombstone (an erased pair on a compacted alerts topic) carries nothing.
        let Some(payload) = m.payload() else { return };
        let Ok(alert) = serde_json::from_slice::<Alert>(payload) else {
            tracing::warn!("desk: an alerts record that is not an alert, skipped");
            return;
        };
        let owner = header(m, PARTITION_HEADER)
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.parse::<i32>().ok());
        if let Some(p) = owner {
            self.owners
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(alert.alert_id.clone(), p);
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
    /// Produces an audit line to the decisions topic, keyed by the alert's pair, and
    /// waits until this desk has read it back (so it has taken effect, or lost a race).
    pub async fn record(&self, line: &AuditLine, alert: &Alert) -> Result<(), ServiceError> {
        let payload = serde_json::to_vec(line).map_err(|e| ServiceError::Internal(e.to_string()))?;
        let key = codec::alert_pair_key(alert);
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

    /// Sends a false positive to the detection stage, in the input partition that owns
    /// the pair (the alert's own header; the pair key's partition when not known).
    pub async fn suppress(&self, alert: &Alert) -> Result<(), ServiceError> {
        let sup = Suppress::of(alert);
        let payload = serde_json::to_vec(&sup).map_err(|e| ServiceError::Internal(e.to_string()))?;
        let key = codec::alert_pair_key(alert);
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: CONTENT_TYPE,
                value: Some(JSON),
            })
            .insert(Header {
                key: CONTROL_HEADER,
                value: Some(CONTROL_SUPPRESS),
            });
        let owner = self
            .owners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&alert.alert_id)
            .copied();
        let mut record = FutureRecord::to(&self.topics.input)
            .key(key.as_str())
            .payload(&payload)
            .headers(headers);
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

fn unavailable(topic: &str, e: rdkafka::error::KafkaError) -> ServiceError {
    ServiceError::Unavailable(format!("kafka did not store the record on {topic}: {e}"))
}
