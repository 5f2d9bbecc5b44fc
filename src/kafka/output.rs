//! The producer side of a processing batch. At-least-once: alerts and dead letters go
//! out on one producer as they are made and [`Output::barrier`] waits for them; state
//! (changelog) records go out on a second producer, awaited by [`Output::settle_state`]
//! one batch later, so the detection thread does not sit idle while the broker stores
//! them; consumer offsets are committed once both are in. Exactly-once: everything of a
//! batch and its offsets form one Kafka transaction on one producer. A full producer
//! queue is backpressure (wait and retry), not an error; a delivery that fails after the
//! producer's own retries fails the batch, which the caller rewinds.

use crate::metrics::Metrics;
use prometheus::IntCounter;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientContext, TopicPartitionList};
use std::collections::HashMap;
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

/// Delivery reports: failures counted, and the last offset delivered per partition of
/// one tracked topic (the changelog), for checkpoints.
pub struct Deliveries {
    metrics: Arc<Metrics>,
    failures: AtomicU64,
    tracked: String,
    last: Mutex<HashMap<i32, i64>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(m) => {
                if m.topic() == self.tracked {
                    let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
                    let e = last.entry(m.partition()).or_insert(-1);
                    *e = (*e).max(m.offset());
                }
            }
            Err((e, _)) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                self.metrics.kafka.delivery_errors.inc();
                tracing::warn!(error = %e, "kafka delivery failed");
            }
        }
    }
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

impl Lane {
    fn new(config: &ClientConfig, tracked: &str, metrics: &Arc<Metrics>) -> Result<Lane, Failed> {
        let deliveries = Deliveries {
            metrics: metrics.clone(),
            failures: AtomicU64::new(0),
            tracked: tracked.to_string(),
            last: Mutex::new(HashMap::new()),
        };
        let producer = config
            .create_with_context(deliveries)
            .map_err(|e| Failed::Fatal(e.to_string()))?;
        Ok(Lane {
            producer,
            failures_seen: 0,
        })
    }

    fn send(&self, mut record: BaseRecord<'_, [u8], [u8]>) -> Result<(), Failed> {
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    self.producer.poll(POLL_STEP);
                }
                Err((e, _)) => return Err(classify(e)),
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
    produced: [IntCounter; 4],
}

/// What a record is, for the produced-records counter; changelog records go to the
/// state lane.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Alert,
    DeadLetter,
    Changelog,
    Rekeyed,
}

impl Kind {
    const ALL: [Kind; 4] = [
        Kind::Alert,
        Kind::DeadLetter,
        Kind::Changelog,
        Kind::Rekeyed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Alert => "alert",
            Kind::DeadLetter => "dead_letter",
            Kind::Changelog => "changelog",
            Kind::Rekeyed => "rekeyed",
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
        let main = Lane::new(&config, state_topic, &metrics)?;
        if transactional_id.is_some() {
            main.producer
                .init_transactions(CALL_TIMEOUT)
                .map_err(|e| Failed::Fatal(format!("init_transactions: {e}")))?;
        }
        let state = if transactional_id.is_none() && !state_topic.is_empty() {
            Some(Lane::new(&config, state_topic, &metrics)?)
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
        })
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
        let mut record = BaseRecord::to(topic).key(key);
        if let Some(h) = headers {
            record = record.headers(h);
        }
        if let Some(p) = payload {
            record = record.payload(p);
        }
        if let Some(p) = partition {
            record = record.partition(p);
        }
        match (&self.state, kind) {
            (Some(state), Kind::Changelog) => state.send(record)?,
            _ => self.main.send(record)?,
        }
        self.produced[kind as usize].inc();
        Ok(())
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
