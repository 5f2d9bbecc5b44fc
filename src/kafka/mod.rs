//! Kafka mode (`kafka.brokers` set): events are consumed from a topic in a consumer
//! group, alerts produced to a topic, bad records sent to a dead-letter topic, and the
//! pair state of each input partition kept in a compacted changelog topic so that the
//! next owner of a partition can restore it.
//!
//! - [`codec`]: record formats, keys, headers, changelog records;
//! - [`output`]: the producer side of a batch (at-least-once or one transaction);
//! - [`driver`]: the consumer loop (records in chunks) and rebalance handling shared by
//!   the stages;
//! - [`detect`]: the detection stage (engines per partition spread over threads, alerts,
//!   changelog);
//! - [`rekey`]: the optional re-keying stage;
//! - [`restore`]: local checkpoints and changelog replay;
//! - [`desk`]: the moderators' desk of the group (alerts, claims, decisions read back
//!   from their topics; false positives sent to detection);
//! - [`health`]: readiness, lag and the watch on the topics;
//! - [`librdkafka_fix`]: the fix of a crash of the bundled librdkafka;
//! - [`bench`]: `pairwatch bench kafka`, the Kafka path measured against a broker.

pub mod bench;
pub mod codec;
pub mod desk;
pub mod detect;
pub mod driver;
pub mod health;
pub mod librdkafka_fix;
pub mod output;
pub mod rekey;
pub mod restore;

use crate::config::{Config, Kafka};
use crate::detect::engine::EngineConfig;
use crate::detect::event::{Event, Limits};
use crate::detect::pack::RulePack;
use crate::detect::rules::Priority;
use crate::metrics::Metrics;
use anyhow::Context as _;
use codec::Format;
use detect::{Detect, PackCell};
use output::Output;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Every topic the service reads or writes.
#[derive(Clone, Debug)]
pub struct Topics {
    /// Where producers write (and gRPC Publish too).
    pub events: String,
    /// What the detection stage consumes: `events`, or its re-keyed copy.
    pub input: String,
    pub alerts: String,
    pub per_priority: bool,
    pub dlq: String,
    pub changelog: String,
    /// The desk's claims, releases and decisions.
    pub decisions: String,
}

impl Topics {
    pub fn of(k: &Kafka) -> Topics {
        Topics {
            events: k.events_topic.clone(),
            input: k.input_topic(),
            alerts: k.alerts_topic.clone(),
            per_priority: k.alerts_topic_per_priority,
            dlq: k.dlq_topic.clone(),
            changelog: k.changelog(),
            decisions: k.decisions_topic.clone(),
        }
    }

    /// The topic an alert of `priority` goes to.
    pub fn alerts_for(&self, priority: Priority) -> String {
        if self.per_priority {
            format!("{}.{}", self.alerts, priority.as_str().to_ascii_lowercase())
        } else {
            self.alerts.clone()
        }
    }

    /// Every alert topic.
    pub fn alert_topics(&self) -> Vec<String> {
        if self.per_priority {
            Priority::ALL.iter().map(|p| self.alerts_for(*p)).collect()
        } else {
            vec![self.alerts.clone()]
        }
    }
}

/// Properties every client gets: the brokers, then the user's pass-through ones
/// (security settings and tuning), which win.
///
/// No client of the service creates a topic by writing to it (librdkafka's producers
/// would, on a broker that allows it): a changelog created that way is not compacted,
/// and an instance stopping after its broker came back empty would leave half-made
/// topics behind. Topics come from `kafka.create_topics` or the operator.
pub fn client_config(k: &Kafka) -> ClientConfig {
    librdkafka_fix::anchor();
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", k.brokers.trim())
        .set("client.id", "pairwatch")
        .set("allow.auto.create.topics", "false");
    for (key, v) in &k.client {
        c.set(key, v);
    }
    c
}

/// Creates the missing topics (when allowed), then checks that the ones the service
/// needs exist and that the changelog has a partition for every input partition.
pub async fn prepare_topics(k: &Kafka) -> anyhow::Result<()> {
    let topics = Topics::of(k);
    let base = client_config(k);
    let partitions = k.topic_partitions as i32;
    let replication = k.topic_replication as i32;
    if k.create_topics {
        let admin: AdminClient<DefaultClientContext> = base.create()?;
        let mut names: Vec<String> = vec![
            topics.events.clone(),
            topics.dlq.clone(),
            topics.decisions.clone(),
        ];
        if topics.input != topics.events {
            names.push(topics.input.clone());
        }
        names.extend(topics.alert_topics());
        let mut new: Vec<NewTopic> = names
            .iter()
            .map(|n| NewTopic::new(n, partitions, TopicReplication::Fixed(replication)))
            .collect();
        new.push(
            NewTopic::new(
                &topics.changelog,
                partitions,
                TopicReplication::Fixed(replication),
            )
            .set("cleanup.policy", "compact"),
        );
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        for r in admin.create_topics(&new, &opts).await? {
            match r {
                Ok(t) => tracing::info!(topic = %t, "topic created"),
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((t, e)) => anyhow::bail!("cannot create topic {t}: {e}"),
            }
        }
    }
    let check = base.clone();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = check.create()?;
        let count = |topic: &str| -> anyhow::Result<usize> {
            let md = consumer
                .fetch_metadata(Some(topic), Duration::from_secs(15))
                .with_context(|| format!("metadata of topic {topic}"))?;
            let t = md.topics().first().filter(|t| t.error().is_none() && !t.partitions().is_empty());
            t.map(|t| t.partitions().len()).ok_or_else(|| {
                anyhow::anyhow!(
                    "topic {topic} does not exist: create it (see the README's topic layout) or set kafka.create_topics = true"
                )
            })
        };
        let input = count(&topics.input)?;
        let changelog = count(&topics.changelog)?;
        if changelog < input {
            anyhow::bail!(
                "state changelog {} has {changelog} partitions, fewer than the {input} of {}: it needs one per input partition",
                topics.changelog,
                topics.input
            );
        }
        for t in [&topics.events, &topics.dlq, &topics.decisions] {
            count(t)?;
        }
        for t in topics.alert_topics() {
            count(&t)?;
        }
        Ok(())
    })
    .await?
}

/// Why an event could not be handed to the producer.
pub enum PublishError {
    /// The producer queue stayed full: retry later.
    Saturated,
    Failed(String),
}

/// gRPC `Publish` in Kafka mode: events go to the events topic, keyed by pair; the ack
/// waits for the broker.
#[derive(Clone)]
pub struct Publisher {
    producer: FutureProducer,
    topic: String,
    format: Format,
    metrics: Arc<Metrics>,
}

impl Publisher {
    pub fn new(k: &Kafka, metrics: Arc<Metrics>) -> anyhow::Result<Publisher> {
        let mut c = client_config(k);
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "2");
        Ok(Publisher {
            producer: c.create()?,
            topic: k.events_topic.clone(),
            format: Format::parse(&k.events_format),
            metrics,
        })
    }

    /// Queues one validated event; the receiver yields the offset once it is stored,
    /// or why not.
    pub async fn publish(
        &self,
        event: &Event,
        wait: Duration,
    ) -> Result<tokio::sync::oneshot::Receiver<Result<u64, String>>, PublishError> {
        let payload = codec::encode_event(event, self.format);
        let key = codec::event_pair_key(event);
        let headers = OwnedHeaders::new().insert(Header {
            key: codec::CONTENT_TYPE,
            value: Some(self.format.content_type()),
        });
        let deadline = tokio::time::Instant::now() + wait;
        let mut record = FutureRecord::to(&self.topic)
            .key(key.as_str())
            .payload(payload.as_slice())
            .headers(headers);
        let delivery = loop {
            match self.producer.send_result(record) {
                Ok(d) => break d,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(PublishError::Saturated);
                    }
                    record = r;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err((e, _)) => return Err(PublishError::Failed(e.to_string())),
            }
        };
        self.metrics
            .kafka
            .produced
            .with_label_values(&["event"])
            .inc();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let r = match delivery.await {
                Ok(Ok(d)) => Ok(d.offset.max(0) as u64),
                Ok(Err((e, _))) => Err(format!("kafka did not store the event: {e}")),
                Err(_) => Err("kafka producer closed".to_string()),
            };
            let _ = tx.send(r);
        });
        Ok(rx)
    }
}

/// The running stages.
pub struct Handle {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<anyhow::Result<()>>>,
    pub packs: Arc<PackCell>,
    pub publisher: Publisher,
    pub health: Arc<health::Health>,
    pub desk: Arc<desk::KafkaDesk>,
}

impl Handle {
    /// True while every stage runs (a stage stops on a fatal error).
    pub fn healthy(&self) -> bool {
        self.threads.iter().all(|t| !t.is_finished())
    }

    /// Stops the stages (each commits, checkpoints, leaves the group) and waits.
    pub fn stop(self) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        let mut result = Ok(());
        for t in self.threads {
            match t.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => result = Err(e),
                Err(_) => result = Err(anyhow::anyhow!("a kafka stage panicked")),
            }
        }
        result
    }
}

/// Starts the stages: re-keying (when configured) and detection, and the monitor of
/// lag, brokers and topics; `health` is what `/readyz` reads.
pub fn start(
    config: &Config,
    engine: EngineConfig,
    limits: Limits,
    pack: Arc<RulePack>,
    metrics: Arc<Metrics>,
    health: Arc<health::Health>,
) -> anyhow::Result<Handle> {
    let k = &config.kafka;
    let topics = Topics::of(k);
    let instance_id = k.group_instance_id();
    if let Some(id) = &instance_id {
        tracing::info!(instance_id = %id, "static group membership");
    }
    let mut watched = vec![
        topics.events.clone(),
        topics.dlq.clone(),
        topics.changelog.clone(),
        topics.decisions.clone(),
    ];
    if topics.input != topics.events {
        watched.push(topics.input.clone());
    }
    watched.extend(topics.alert_topics());
    let watch = health::Watch {
        input: topics.input.clone(),
        group: k.group_id.clone(),
        topics: watched,
    };
    let base = client_config(k);
    let format = Format::parse(&k.events_format);
    let stop = Arc::new(AtomicBool::new(false));
    let packs = Arc::new(PackCell::default());
    packs.set(pack);
    let batch = |topic: &str, stage_name, stateful| {
        let (max_batch, linger) = k.batch(stateful);
        driver::Settings {
            topic: topic.to_string(),
            stage_name,
            max_batch,
            linger,
        }
    };
    let txn_id = |suffix: &str| {
        k.exactly_once()
            .then(|| format!("{}{suffix}", k.transactional_id()))
    };
    let mut threads = Vec::new();
    // The input partitions detection owns: the desk deletes the local checkpoints of
    // the others when a user is erased.
    let owned = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
    let (desk, reader) = desk::new(
        &base,
        &k.group_id,
        topics.clone(),
        k.alerts_topic_compacted,
        &config.data_dir().join("kafka"),
        owned.clone(),
        metrics.clone(),
    )?;
    let desk_health = health.stage("desk");
    let (h, s) = (desk_health.clone(), stop.clone());
    threads.push(
        std::thread::Builder::new()
            .name("kafka-desk".into())
            .spawn(move || reader.run(h, s))?,
    );
    let detecting = config.desk.role != "desk";
    if !detecting {
        tracing::info!("desk role: the desk alone, no detection");
    }
    if detecting && !k.keyed_by_pair {
        let out = Output::new(&base, txn_id(".rekey").as_deref(), "", metrics.clone())
            .map_err(anyhow::Error::msg)?
            .with_dead_letters(output::DeadLetterPolicy::of(config));
        let stage = rekey::Rekey {
            to: topics.input.clone(),
            dlq: topics.dlq.clone(),
            format,
            limits,
            metrics: metrics.clone(),
        };
        let consumer = driver::consumer_config(
            &base,
            &format!("{}.rekey", k.group_id),
            instance_id.as_deref(),
        );
        let settings = batch(&topics.events, "rekey", false);
        let (m, h, s) = (metrics.clone(), health.stage("rekey"), stop.clone());
        threads.push(
            std::thread::Builder::new()
                .name("kafka-rekey".into())
                .spawn(move || driver::run(consumer, settings, stage, out, m, h, s))?,
        );
    }
    let detect = if detecting {
        let state_dir = config.data_dir().join("kafka");
        match health::topic_ids(&base, &[topics.input.clone(), topics.changelog.clone()]) {
            Ok(ids) => restore::check_topic_ids(&state_dir, &topics.input, &ids)
                .with_context(|| format!("local checkpoints in {}", state_dir.display()))?,
            Err(e) => {
                tracing::warn!(error = %e, "topic ids unavailable: local checkpoints not checked against them")
            }
        }
        let restorer = restore::Restorer::new(
            &base,
            &k.group_id,
            &topics.changelog,
            state_dir.clone(),
            Duration::from_millis(Config::duration(&k.restore_timeout) as u64),
        )?;
        let out = Output::new(
            &base,
            txn_id("").as_deref(),
            &topics.changelog,
            metrics.clone(),
        )
        .map_err(anyhow::Error::msg)?
        .with_dead_letters(output::DeadLetterPolicy::of(config));
        let settings = batch(&topics.input, "detect", true);
        let stage = Detect::new(
            topics,
            format,
            limits,
            engine,
            packs.clone(),
            restorer,
            state_dir,
            Duration::from_millis(Config::duration(&config.durability.checkpoint_interval) as u64),
            metrics.clone(),
            k.detect_threads(),
        )
        .with_owned(owned.clone());
        let consumer = driver::consumer_config(&base, &k.group_id, instance_id.as_deref());
        let detect = health.stage("detect");
        let (m, h, s) = (metrics.clone(), detect.clone(), stop.clone());
        threads.push(
            std::thread::Builder::new()
                .name("kafka-detect".into())
                .spawn(move || driver::run(consumer, settings, stage, out, m, h, s))?,
        );
        detect
    } else {
        desk_health.clone()
    };
    let (m, h, s) = (metrics.clone(), health.clone(), stop.clone());
    threads.push(
        std::thread::Builder::new()
            .name("kafka-monitor".into())
            .spawn(move || health::monitor(base, watch, h, detect, m, s))?,
    );
    Ok(Handle {
        stop,
        threads,
        packs,
        publisher: Publisher::new(k, metrics)?,
        health,
        desk: Arc::new(desk),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_never_create_topics_by_writing_unless_the_operator_says_so() {
        let k = Kafka::default();
        assert_eq!(
            client_config(&k).get("allow.auto.create.topics"),
            Some("false")
        );
        let k = Kafka {
            client: [("allow.auto.create.topics".into(), "true".into())].into(),
            ..Default::default()
        };
        assert_eq!(
            client_config(&k).get("allow.auto.create.topics"),
            Some("true")
        );
    }
}
