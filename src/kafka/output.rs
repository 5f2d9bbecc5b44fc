//! The producer side of a processing batch. At-least-once: records go out as they are
//! made, [`Output::barrier`] waits until they are all delivered, then the consumer
//! offsets are committed. Exactly-once: the batch's records and its offsets form one
//! Kafka transaction. A full producer queue is backpressure (wait and retry), not an
//! error; a delivery that fails after the producer's own retries fails the batch, which
//! the caller rewinds.

use crate::metrics::Metrics;
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

/// Longest wait for a flush, a commit or a transaction call.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

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

pub struct Output {
    producer: BaseProducer<Deliveries>,
    transactional: bool,
    in_txn: bool,
    failures_seen: u64,
    metrics: Arc<Metrics>,
}

impl Output {
    /// An idempotent producer; transactional when `transactional_id` is given.
    pub fn new(
        base: &ClientConfig,
        transactional_id: Option<&str>,
        tracked_topic: &str,
        metrics: Arc<Metrics>,
    ) -> Result<Output, Failed> {
        let mut config = base.clone();
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "120000");
        if let Some(id) = transactional_id {
            // A record may not outlive its transaction.
            config
                .set("transactional.id", id)
                .set("transaction.timeout.ms", "60000")
                .set("message.timeout.ms", "60000");
        }
        let deliveries = Deliveries {
            metrics: metrics.clone(),
            failures: AtomicU64::new(0),
            tracked: tracked_topic.to_string(),
            last: Mutex::new(HashMap::new()),
        };
        let producer: BaseProducer<Deliveries> = config
            .create_with_context(deliveries)
            .map_err(|e| Failed::Fatal(e.to_string()))?;
        if transactional_id.is_some() {
            producer
                .init_transactions(CALL_TIMEOUT)
                .map_err(|e| Failed::Fatal(format!("init_transactions: {e}")))?;
        }
        Ok(Output {
            producer,
            transactional: transactional_id.is_some(),
            in_txn: false,
            failures_seen: 0,
            metrics,
        })
    }

    pub fn transactional(&self) -> bool {
        self.transactional
    }

    fn begin(&mut self) -> Result<(), Failed> {
        if self.transactional && !self.in_txn {
            self.producer.begin_transaction().map_err(classify)?;
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
        headers: OwnedHeaders,
        kind: &str,
    ) -> Result<(), Failed> {
        self.begin()?;
        let mut record = BaseRecord::to(topic).key(key).headers(headers);
        if let Some(p) = payload {
            record = record.payload(p);
        }
        if let Some(p) = partition {
            record = record.partition(p);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    self.producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => return Err(classify(e)),
            }
        }
        self.metrics.kafka.produced.with_label_values(&[kind]).inc();
        Ok(())
    }

    /// Serves delivery reports; updates the queue gauge.
    pub fn poll(&self) {
        self.producer.poll(Duration::ZERO);
        self.metrics
            .kafka
            .producer_queue
            .set(self.producer.in_flight_count() as i64);
    }

    /// Waits until every record sent is delivered or failed and its report served.
    /// (The client's own flush sleeps up to 100 ms between checks: one batch would cost
    /// two of those.)
    fn drain(&self) -> Result<(), Failed> {
        let deadline = std::time::Instant::now() + CALL_TIMEOUT;
        while self.producer.in_flight_count() > 0 {
            if std::time::Instant::now() > deadline {
                return Err(Failed::Rewind(format!(
                    "{} records still undelivered after {CALL_TIMEOUT:?}",
                    self.producer.in_flight_count()
                )));
            }
            self.producer.poll(Duration::from_millis(10));
        }
        self.poll();
        Ok(())
    }

    /// At-least-once: returns once everything sent so far is delivered (or failed).
    /// A transaction needs no barrier: its records count together or not at all.
    pub fn barrier(&mut self) -> Result<(), Failed> {
        if self.transactional {
            return Ok(());
        }
        self.drain()?;
        let failures = self.producer.context().failures.load(Ordering::Relaxed);
        if failures > self.failures_seen {
            let n = failures - self.failures_seen;
            self.failures_seen = failures;
            return Err(Failed::Rewind(format!("{n} records were not delivered")));
        }
        Ok(())
    }

    /// Ends the batch: its output and the consumer's `offsets` count together.
    pub fn commit<C: ConsumerContext>(
        &mut self,
        consumer: &BaseConsumer<C>,
        offsets: &TopicPartitionList,
        mode: CommitMode,
    ) -> Result<(), Failed> {
        if self.transactional {
            self.begin()?;
            self.drain()?;
            if offsets.count() > 0 {
                let group = consumer
                    .group_metadata()
                    .ok_or_else(|| Failed::Fatal("consumer has no group metadata".into()))?;
                self.producer
                    .send_offsets_to_transaction(offsets, &group, CALL_TIMEOUT)
                    .map_err(classify)?;
            }
            self.producer
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
            return Ok(());
        }
        self.barrier()?;
        if offsets.count() > 0 {
            consumer
                .commit(offsets, mode)
                .map_err(|e| Failed::Rewind(format!("offset commit: {e}")))?;
        }
        Ok(())
    }

    /// Drops what the batch produced, as far as Kafka allows: a transaction is aborted;
    /// at-least-once output already delivered stays (alert ids are deterministic).
    pub fn abort(&mut self) -> Result<(), Failed> {
        if self.transactional && self.in_txn {
            self.in_txn = false;
            self.metrics
                .kafka
                .transactions
                .with_label_values(&["abort"])
                .inc();
            self.producer
                .abort_transaction(CALL_TIMEOUT)
                .map_err(classify)?;
        } else {
            let _ = self.producer.flush(CALL_TIMEOUT);
            self.failures_seen = self.producer.context().failures.load(Ordering::Relaxed);
        }
        Ok(())
    }

    /// The offset after the last record delivered to `partition` of the tracked topic.
    pub fn tracked_end(&self, partition: i32) -> Option<i64> {
        self.producer
            .context()
            .last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&partition)
            .map(|o| o + 1)
    }
}
