//! The producer side of a processing batch. At-least-once: alerts and dead letters go
//! out on one producer as they are made and [`Output::barrier`] waits for them; state
//! (changelog) records go out on a second producer, awaited by [`Output::settle_state`]
//! one batch later, so the detection thread does not sit idle while the broker stores
//! them; consumer offsets are committed once both are in. Exactly-once: everything of a
//! batch and its offsets form one Kafka transaction on one producer. A full producer
//! queue is backpressure (wait and retry), not an error; a delivery that fails after the
//! producer's own retries fails the batch, which the caller rewinds.
//!
//! Dead letters are the exception: one that the producer refuses or cannot deliver goes
//! to a local file instead (`<data_dir>/dead-letters.jsonl`) and the batch goes on, so
//! that no input record can stop its partition. And each input record's dead letter is
//! produced once whatever the rewinds: in a transaction (exactly-once) it counts only if
//! the transaction commits; at-least-once, the input offsets whose dead letter was
//! delivered (or written locally) are remembered until committed, and skipped when read
//! again.

use super::codec::{self, DeadLetter};
use crate::metrics::Metrics;
use prometheus::IntCounter;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::{BTreeSet, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Longest wait for a commit or a transaction call.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a record may stay undelivered before the producer fails it
/// (`message.timeout.ms`); waits for deliveries last longer, so that nothing sent
/// before a rewind can land after it.
const MESSAGE_TIMEOUT: Duration = Duration::from_secs(120);
const DRAIN_TIMEOUT: Duration = Duration::from_secs(130);
/// Wait step for delivery reports: the client's poll always lasts its whole timeout.
const POLL_STEP: Duration = Duration::from_millis(1);

/// How large dead letters may be, and where those the producer cannot deliver go.
#[derive(Clone, Debug)]
pub struct DeadLetterPolicy {
    /// Largest input record a dead letter carries whole; larger ones are dead letters
    /// `record_too_large` carrying a prefix ([`codec::dead_letter`]).
    pub max_bytes: usize,
    /// Where a dead letter the producer cannot deliver is written (one JSON line each);
    /// None: such a dead letter fails its batch, like any other record.
    pub local_file: Option<PathBuf>,
}

impl DeadLetterPolicy {
    pub fn of(config: &crate::config::Config) -> DeadLetterPolicy {
        DeadLetterPolicy {
            max_bytes: config.kafka.dead_letter_limit(),
            local_file: Some(config.data_dir().join(LOCAL_DEAD_LETTERS)),
        }
    }

    /// From the producer's own `message.max.bytes`, without a local file.
    fn of_client(config: &ClientConfig) -> DeadLetterPolicy {
        let k = crate::config::Kafka {
            client: config
                .get("message.max.bytes")
                .map(|v| [("message.max.bytes".to_string(), v.to_string())].into())
                .unwrap_or_default(),
            ..Default::default()
        };
        DeadLetterPolicy {
            max_bytes: k.dead_letter_limit(),
            local_file: None,
        }
    }
}

/// The local dead-letter file, under `server.data_dir`.
pub const LOCAL_DEAD_LETTERS: &str = "dead-letters.jsonl";
/// What a local dead letter keeps of the record's value and key (hex), and of each
/// header value.
const LOCAL_VALUE_PREFIX: usize = 4096;
const LOCAL_KEY_PREFIX: usize = 1024;
const LOCAL_HEADER_PREFIX: usize = 1024;

/// The input record a dead letter stands for.
#[derive(Clone, Copy, Debug)]
pub struct DeadTag {
    pub partition: i32,
    pub offset: i64,
    pub reason: &'static str,
}

/// What is known of dead letters, per input partition.
#[derive(Default)]
struct DeadBook {
    /// Delivery opaque (never 0) of each dead letter in the producer.
    next_id: usize,
    in_flight: HashMap<usize, DeadTag>,
    /// Input offsets whose dead letter is final: delivered (at-least-once) or written
    /// to the local file. Not produced again when read again; forgotten once committed.
    done: HashMap<i32, BTreeSet<i64>>,
    /// Exactly-once: reasons of the dead letters sent in the open transaction, counted
    /// when it commits.
    in_txn: Vec<&'static str>,
    local_file: Option<PathBuf>,
}

/// Delivery reports: failures counted, the last offset delivered per partition of one
/// tracked topic (the changelog) for checkpoints, and the dead letters' outcome.
pub struct Deliveries {
    metrics: Arc<Metrics>,
    failures: AtomicU64,
    tracked: String,
    last: Mutex<HashMap<i32, i64>>,
    transactional: bool,
    dead: Mutex<DeadBook>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    /// 0, or the id of a dead letter in [`DeadBook::in_flight`].
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, id: usize) {
        let tag = (id != 0)
            .then(|| self.book().in_flight.remove(&id))
            .flatten();
        match result {
            Ok(m) => {
                if m.topic() == self.tracked {
                    let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
                    let e = last.entry(m.partition()).or_insert(-1);
                    *e = (*e).max(m.offset());
                }
                // Exactly-once: counted when the transaction commits.
                if let (Some(tag), false) = (tag, self.transactional) {
                    self.dead_letter_done(tag, false);
                }
            }
            Err((e, m)) => {
                self.metrics.kafka.delivery_errors.inc();
                // A dead letter purged by an aborted transaction is sent again with
                // the batch; one that could not be delivered goes to the local file.
                let purged = matches!(
                    e.rdkafka_error_code(),
                    Some(RDKafkaErrorCode::PurgeQueue | RDKafkaErrorCode::PurgeInflight)
                );
                if let (Some(tag), false) = (tag, purged) {
                    let local = Local {
                        topic: m.topic(),
                        key: m.key(),
                        payload: m.payload(),
                        headers: m.headers().map(|h| h.detach()),
                    };
                    if self.write_local(tag, &local, e) {
                        return;
                    }
                }
                self.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "kafka delivery failed");
            }
        }
    }
}

/// A dead letter that could not be produced, as written to the local file.
struct Local<'a> {
    topic: &'a str,
    key: Option<&'a [u8]>,
    payload: Option<&'a [u8]>,
    headers: Option<OwnedHeaders>,
}

impl Deliveries {
    fn book(&self) -> std::sync::MutexGuard<'_, DeadBook> {
        self.dead.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The dead letter of `tag` is final: counted, and not produced again.
    fn dead_letter_done(&self, tag: DeadTag, local: bool) {
        self.book()
            .done
            .entry(tag.partition)
            .or_default()
            .insert(tag.offset);
        self.metrics.kafka.dead_letter(tag.reason);
        if local {
            self.metrics.kafka.dead_letters_local.inc();
        }
    }

    /// Appends a dead letter the producer could not take to the local file; false if
    /// there is none or the write failed (then it fails its batch, to be tried again).
    fn write_local(&self, tag: DeadTag, dl: &Local<'_>, error: &KafkaError) -> bool {
        let Some(path) = self.book().local_file.clone() else {
            return false;
        };
        match append_local(&path, tag, dl, error) {
            Ok(()) => {
                tracing::error!(
                    reason = tag.reason,
                    partition = tag.partition,
                    offset = tag.offset,
                    error = %error,
                    file = %path.display(),
                    "dead letter could not be produced: written to the local dead-letter file"
                );
                self.dead_letter_done(tag, true);
                true
            }
            Err(e) => {
                tracing::error!(
                    reason = tag.reason,
                    partition = tag.partition,
                    offset = tag.offset,
                    file = %path.display(),
                    error = %e,
                    "dead letter could not be produced nor written locally"
                );
                false
            }
        }
    }
}

/// One JSON line: the dead letter's origin, error, headers (values cut to 1 KiB, as
/// UTF-8 with replacement) and the first bytes of its key and value in hex. Synced.
fn append_local(
    path: &Path,
    tag: DeadTag,
    dl: &Local<'_>,
    error: &KafkaError,
) -> std::io::Result<()> {
    let prefix = |b: Option<&[u8]>, max: usize| b.map(|b| codec::hex(&b[..b.len().min(max)]));
    let headers: Vec<(String, String)> = dl
        .headers
        .iter()
        .flat_map(|h| h.iter())
        .map(|h| {
            let v = h.value.unwrap_or_default();
            let v = &v[..v.len().min(LOCAL_HEADER_PREFIX)];
            (h.key.to_string(), String::from_utf8_lossy(v).into_owned())
        })
        .collect();
    let line = serde_json::json!({
        "at": crate::detect::time::format_rfc3339(crate::detect::time::now_millis()),
        "dlq_topic": dl.topic,
        "error": error.to_string(),
        "reason": tag.reason,
        "partition": tag.partition,
        "offset": tag.offset,
        "key_bytes": dl.key.map(<[u8]>::len),
        "key_prefix_hex": prefix(dl.key, LOCAL_KEY_PREFIX),
        "value_bytes": dl.payload.map(<[u8]>::len),
        "value_prefix_hex": prefix(dl.payload, LOCAL_VALUE_PREFIX),
        "headers": headers,
    });
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let mut bytes = line.to_string().into_bytes();
    bytes.push(b'\n');
    f.write_all(&bytes)?;
    f.sync_data()
}

/// What went wrong with a batch's output.
#[derive(Debug, thiserror::Error)]
pub enum Failed {
    /// Nothing of the batch may count: abort, restore the state, read the records again.
    #[error("batch failed, rewinding: {0}")]
    Rewind(String),
    /// The producer cannot go on (fenced by a newer instance, or misconfigured).
    #[error("kafka producer failed for good: {0}")]
    Fatal(String),
}

fn classify(e: KafkaError) -> Failed {
    if let KafkaError::Transaction(t) = &e {
        if t.is_fatal() {
            return Failed::Fatal(e.to_string());
        }
    }
    Failed::Rewind(e.to_string())
}

/// One producer and the failures already reported from it.
struct Lane {
    producer: BaseProducer<Deliveries>,
    failures_seen: u64,
}

type Record<'a> = BaseRecord<'a, [u8], [u8], usize>;

impl Lane {
    fn new(
        config: &ClientConfig,
        tracked: &str,
        transactional: bool,
        metrics: &Arc<Metrics>,
    ) -> Result<Lane, Failed> {
        let deliveries = Deliveries {
            metrics: metrics.clone(),
            failures: AtomicU64::new(0),
            tracked: tracked.to_string(),
            last: Mutex::new(HashMap::new()),
            transactional,
            dead: Mutex::new(DeadBook::default()),
        };
        let producer = config
            .create_with_context(deliveries)
            .map_err(|e| Failed::Fatal(e.to_string()))?;
        Ok(Lane {
            producer,
            failures_seen: 0,
        })
    }

    /// Hands a record to the producer, waiting while its queue is full; a refusal
    /// gives the record back.
    #[allow(clippy::result_large_err)]
    fn send<'a>(&self, mut record: Record<'a>) -> Result<(), (KafkaError, Record<'a>)> {
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    self.producer.poll(POLL_STEP);
                }
                Err(refused) => return Err(refused),
            }
        }
    }

    /// Waits until every record sent is delivered or failed and its report served.
    /// (The client's own flush sleeps up to 100 ms between checks: one batch would cost
    /// two of those.)
    fn drain(&self) -> Result<(), Failed> {
        let deadline = std::time::Instant::now() + DRAIN_TIMEOUT;
        while self.producer.in_flight_count() > 0 {
            if std::time::Instant::now() > deadline {
                return Err(Failed::Rewind(format!(
                    "{} records still undelivered after {DRAIN_TIMEOUT:?}",
                    self.producer.in_flight_count()
                )));
            }
            self.producer.poll(POLL_STEP);
        }
        Ok(())
    }

    /// Everything sent is delivered; an error if some failed since the last check.
    fn settle(&mut self) -> Result<(), Failed> {
        self.drain()?;
        let failures = self.producer.context().failures.load(Ordering::Relaxed);
        if failures > self.failures_seen {
            let n = failures - self.failures_seen;
            self.failures_seen = failures;
            return Err(Failed::Rewind(format!("{n} records were not delivered")));
        }
        Ok(())
    }

    /// Lets pending deliveries finish and forgets their failures (after a rewind).
    fn reset(&mut self) {
        let _ = self.drain();
        self.failures_seen = self.producer.context().failures.load(Ordering::Relaxed);
    }

    fn tracked_end(&self, partition: i32) -> Option<i64> {
        self.producer
            .context()
            .last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&partition)
            .map(|o| o + 1)
    }
}

pub struct Output {
    main: Lane,
    /// At-least-once only: the state records' own producer.
    state: Option<Lane>,
    transactional: bool,
    in_txn: bool,
    metrics: Arc<Metrics>,
    /// The produced-records counter per [`Kind`], resolved once.
    produced: [IntCounter; 5],
    dead_letters: DeadLetterPolicy,
}

/// What a record is, for the produced-records counter; changelog records go to the
/// state lane.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Alert,
    DeadLetter,
    Changelog,
    Rekeyed,
    /// An input partition's part of an erasure done (to the decisions topic).
    Erased,
}

impl Kind {
    const ALL: [Kind; 5] = [
        Kind::Alert,
        Kind::DeadLetter,
        Kind::Changelog,
        Kind::Rekeyed,
        Kind::Erased,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Alert => "alert",
            Kind::DeadLetter => "dead_letter",
            Kind::Changelog => "changelog",
            Kind::Rekeyed => "rekeyed",
            Kind::Erased => "erased",
        }
    }
}

impl Output {
    /// Idempotent producers; one transactional producer when `transactional_id` is given.
    /// `state_topic` is the changelog, whose delivered offsets are tracked for
    /// checkpoints (empty for a stage without state).
    pub fn new(
        base: &ClientConfig,
        transactional_id: Option<&str>,
        state_topic: &str,
        metrics: Arc<Metrics>,
    ) -> Result<Output, Failed> {
        let mut config = base.clone();
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set(
                "message.timeout.ms",
                MESSAGE_TIMEOUT.as_millis().to_string(),
            );
        if let Some(id) = transactional_id {
            // A record may not outlive its transaction.
            config
                .set("transactional.id", id)
                .set("transaction.timeout.ms", "60000")
                .set("message.timeout.ms", "60000");
        }
        let main = Lane::new(&config, state_topic, transactional_id.is_some(), &metrics)?;
        if transactional_id.is_some() {
            main.producer
                .init_transactions(CALL_TIMEOUT)
                .map_err(|e| Failed::Fatal(format!("init_transactions: {e}")))?;
        }
        let state = if transactional_id.is_none() && !state_topic.is_empty() {
            Some(Lane::new(&config, state_topic, false, &metrics)?)
        } else {
            None
        };
        Ok(Output {
            main,
            state,
            transactional: transactional_id.is_some(),
            in_txn: false,
            produced: Kind::ALL.map(|k| metrics.kafka.produced.with_label_values(&[k.as_str()])),
            metrics,
            dead_letters: DeadLetterPolicy::of_client(base),
        })
    }

    /// Sets how large dead letters may be and where undeliverable ones go (by default:
    /// from the producer's `message.max.bytes`, and no local file).
    pub fn with_dead_letters(mut self, policy: DeadLetterPolicy) -> Output {
        self.main.producer.context().book().local_file = policy.local_file.clone();
        self.dead_letters = policy;
        self
    }

    /// The largest input record a dead letter carries whole.
    pub fn dead_letter_limit(&self) -> usize {
        self.dead_letters.max_bytes
    }

    /// The dead letter of this input record is already delivered or written locally
    /// (a batch read again after a rewind): it is not produced again.
    pub fn dead_letter_done(&self, partition: i32, offset: i64) -> bool {
        self.main
            .producer
            .context()
            .book()
            .done
            .get(&partition)
            .is_some_and(|d| d.contains(&offset))
    }

    /// Produces the dead letter of an input record, unless it was already (see
    /// [`Output::dead_letter_done`]). One the producer refuses (too large for it, its
    /// topic gone) is written to the local file, and the batch goes on.
    pub fn send_dead_letter(
        &mut self,
        topic: &str,
        dl: DeadLetter<'_>,
        tag: DeadTag,
    ) -> Result<(), Failed> {
        if self.dead_letter_done(tag.partition, tag.offset) {
            tracing::debug!(
                partition = tag.partition,
                offset = tag.offset,
                "dead letter already produced: not again"
            );
            return Ok(());
        }
        self.begin()?;
        let deliveries = self.main.producer.context();
        let id = {
            let mut book = deliveries.book();
            book.next_id = book.next_id.wrapping_add(1).max(1);
            let id = book.next_id;
            book.in_flight.insert(id, tag);
            id
        };
        let mut record = Record::with_opaque_to(topic, id)
            .key(dl.key)
            .headers(dl.headers);
        if let Some(v) = dl.value {
            record = record.payload(v);
        }
        match self.main.send(record) {
            Ok(()) => {
                if self.transactional {
                    deliveries.book().in_txn.push(tag.reason);
                }
                self.produced[Kind::DeadLetter as usize].inc();
                Ok(())
            }
            Err((e, record)) => {
                deliveries.book().in_flight.remove(&id);
                let refused = matches!(
                    e.rdkafka_error_code(),
                    Some(
                        RDKafkaErrorCode::MessageSizeTooLarge
                            | RDKafkaErrorCode::UnknownTopic
                            | RDKafkaErrorCode::UnknownPartition
                    )
                );
                let local = Local {
                    topic: record.topic,
                    key: record.key,
                    payload: record.payload,
                    headers: record.headers,
                };
                if refused && deliveries.write_local(tag, &local, &e) {
                    Ok(())
                } else {
                    Err(classify(e))
                }
            }
        }
    }

    pub fn transactional(&self) -> bool {
        self.transactional
    }

    fn begin(&mut self) -> Result<(), Failed> {
        if self.transactional && !self.in_txn {
            self.main.producer.begin_transaction().map_err(classify)?;
            self.in_txn = true;
        }
        Ok(())
    }

    /// Hands one record to the producer, waiting while its queue is full.
    pub fn send(
        &mut self,
        topic: &str,
        partition: Option<i32>,
        key: &[u8],
        payload: Option<&[u8]>,
        headers: Option<OwnedHeaders>,
        kind: Kind,
    ) -> Result<(), Failed> {
        self.begin()?;
        let mut record = Record::with_opaque_to(topic, 0).key(key);
        if let Some(h) = headers {
            record = record.headers(h);
        }
        if let Some(p) = payload {
            record = record.payload(p);
        }
        if let Some(p) = partition {
            record = record.partition(p);
        }
        let sent = match (&self.state, kind) {
            (Some(state), Kind::Changelog) => state.send(record),
            _ => self.main.send(record),
        };
        sent.map_err(|(e, _)| classify(e))?;
        self.produced[kind as usize].inc();
        Ok(())
    }

    /// The offsets of `committed` are committed: dead letters of records before them
    /// are not looked up again; those of the transaction count.
    fn committed(&self, committed: &TopicPartitionList) {
        let mut book = self.main.producer.context().book();
        for e in committed.elements() {
            if let (Offset::Offset(o), Some(done)) = (e.offset(), book.done.get_mut(&e.partition()))
            {
                *done = done.split_off(&o);
            }
        }
        book.done.retain(|_, d| !d.is_empty());
        for reason in book.in_txn.drain(..) {
            self.metrics.kafka.dead_letter(reason);
        }
    }

    /// Serves delivery reports; updates the queue gauge.
    pub fn poll(&self) {
        let mut queued = 0;
        for lane in std::iter::once(&self.main).chain(self.state.as_ref()) {
            lane.producer.poll(Duration::ZERO);
            queued += lane.producer.in_flight_count();
        }
        self.metrics.kafka.producer_queue.set(queued as i64);
    }

    /// At-least-once: returns once every alert and dead letter sent so far is delivered.
    /// A transaction needs no barrier: its records count together or not at all.
    pub fn barrier(&mut self) -> Result<(), Failed> {
        if self.transactional {
            return Ok(());
        }
        self.main.settle()
    }

    /// At-least-once: returns once every state record sent so far is delivered.
    pub fn settle_state(&mut self) -> Result<(), Failed> {
        match self.state.as_mut() {
            Some(s) => s.settle(),
            None => Ok(()),
        }
    }

    /// Commits the consumer's `offsets`: in the transaction with the batch's records, or
    /// (at-least-once, after the caller settled them) as a plain offset commit.
    pub fn commit<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        offsets: &TopicPartitionList,
        mode: CommitMode,
    ) -> Result<(), Failed> {
        if !self.transactional {
            if offsets.count() > 0 {
                consumer
                    .commit(offsets, mode)
                    .map_err(|e| Failed::Rewind(format!("offset commit: {e}")))?;
                self.committed(offsets);
            }
            return Ok(());
        }
        self.begin()?;
        self.main.drain()?;
        if offsets.count() > 0 {
            let group = consumer
                .group_metadata()
                .ok_or_else(|| Failed::Fatal("consumer has no group metadata".into()))?;
            self.main
                .producer
                .send_offsets_to_transaction(offsets, &group, CALL_TIMEOUT)
                .map_err(classify)?;
        }
        self.main
            .producer
            .commit_transaction(CALL_TIMEOUT)
            .map_err(classify)?;
        self.in_txn = false;
        self.committed(offsets);
        self.metrics
            .kafka
            .transactions
            .with_label_values(&["commit"])
            .inc();
        tracing::debug!(partitions = offsets.count(), "transaction committed");
        self.poll();
        Ok(())
    }

    /// Drops what the batch produced, as far as Kafka allows: a transaction is aborted;
    /// at-least-once output already delivered stays (alert ids are deterministic).
    pub fn abort(&mut self) -> Result<(), Failed> {
        // The transaction's dead letters are sent again with the batch.
        self.main.producer.context().book().in_txn.clear();
        if self.transactional && self.in_txn {
            self.metrics
                .kafka
                .transactions
                .with_label_values(&["abort"])
                .inc();
            // An abort that fails leaves the producer in an unknown transaction state:
            // only a new producer (a restart) is safe.
            self.main
                .producer
                .abort_transaction(CALL_TIMEOUT)
                .map_err(|e| Failed::Fatal(format!("abort_transaction: {e}")))?;
            self.in_txn = false;
        } else {
            self.main.reset();
            if let Some(s) = self.state.as_mut() {
                s.reset();
            }
        }
        Ok(())
    }

    /// The offset after the last state record delivered to `partition`.
    pub fn tracked_end(&self, partition: i32) -> Option<i64> {
        self.state
            .as_ref()
            .unwrap_or(&self.main)
            .tracked_end(partition)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::Header;

    #[test]
    fn a_local_dead_letter_is_one_bounded_json_line() {
        let dir = std::env::temp_dir().join(format!("pw-local-dlq-{}", std::process::id()));
        let path = dir.join(LOCAL_DEAD_LETTERS);
        let _ = std::fs::remove_dir_all(&dir);
        let tag = DeadTag {
            partition: 3,
            offset: 41,
            reason: "record_too_large",
        };
        let payload = vec![0xab; 10_000];
        let error = KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge);
        for _ in 0..2 {
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "pairwatch-dlq-reason",
                    value: Some("record_too_large"),
                })
                .insert(Header {
                    key: "big",
                    value: Some(&[b'x'; 5000][..]),
                });
            let dl = Local {
                topic: "dlq",
                key: Some(b"t/a/b"),
                payload: Some(&payload),
                headers: Some(headers),
            };
            append_local(&path, tag, &dl, &error).unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        let l = &lines[0];
        assert_eq!(
            (l["partition"].as_i64(), l["offset"].as_i64()),
            (Some(3), Some(41))
        );
        assert_eq!(l["reason"], "record_too_large");
        assert_eq!(l["dlq_topic"], "dlq");
        assert_eq!(l["value_bytes"], 10_000);
        assert_eq!(
            l["value_prefix_hex"].as_str().unwrap(),
            "ab".repeat(LOCAL_VALUE_PREFIX)
        );
        assert_eq!(l["key_prefix_hex"], codec::hex(b"t/a/b"));
        assert_eq!(l["headers"][0][1], "record_too_large");
        assert_eq!(
            l["headers"][1][1].as_str().unwrap().len(),
            LOCAL_HEADER_PREFIX
        );
        assert!(l["error"].as_str().unwrap().contains("MessageSizeTooLarge"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn without_a_configuration_the_limit_follows_the_producer() {
        let mut c = ClientConfig::new();
        assert_eq!(
            DeadLetterPolicy::of_client(&c).max_bytes,
            1_000_000 - 65_536
        );
        c.set("message.max.bytes", "2000000");
        let p = DeadLetterPolicy::of_client(&c);
        assert_eq!(p.max_bytes, 2_000_000 - 65_536);
        assert!(p.local_file.is_none());
    }
}
