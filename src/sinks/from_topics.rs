//! Webhooks in Kafka mode. Each destination is fed from the alert topics by a consumer of
//! its own group (`<kafka.group_id>.webhook.<digest of the URL>`): the service's
//! instances share each destination's partitions, so each alert goes out from one
//! instance, and the group's committed offsets are the saved position (committed after
//! each alert is done: a crash or a rebalance repeats at most the alerts in flight). A
//! new destination starts at the end of the topics; start-up fails if that position
//! cannot be read or set. An alert given up goes to the
//! dead-letter topic, with the original headers and `pairwatch-dlq-reason:
//! webhook_undeliverable`.

use super::webhook::{Done, Sender};
use crate::config::Config;
use crate::detect::alert::Alert;
use crate::kafka::codec::{dead_letter_headers, Rejection};
use crate::metrics::Metrics;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often a destination's backlog (its group's lag) is measured.
const LAG_EVERY: Duration = Duration::from_secs(5);

/// Starts a consumer per configured destination, ending with `shutdown`. A destination
/// whose group has no position yet gets the topics' ends first, so it delivers every
/// alert raised once this returns.
pub async fn start(
    config: &Config,
    metrics: &Arc<Metrics>,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let k = &config.kafka;
    let owned = crate::kafka::Topics::of(k).alert_topics();
    let topics: Vec<&str> = owned.iter().map(String::as_str).collect();
    for (index, w) in config.sinks.webhooks.iter().enumerate() {
        let sender = super::sender(index, w, metrics)
            .map_err(|e| anyhow::anyhow!("`sinks.webhooks[{index}]`: {e}"))?;
        let group = format!(
            "{}.webhook.{}",
            k.group_id,
            super::webhook::url_digest(&w.url)
        );
        let consumer: StreamConsumer = crate::kafka::client_config(k)
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            // A partition with no committed position in a group that has some (added to
            // the topic later) is read from its start: duplicates, never a skipped
            // alert. A new group starts at the ends (`start_at_end_if_new`).
            .set("auto.offset.reset", "earliest")
            // An alert is retried up to max_age without polling: stay in the group.
            .set(
                "max.poll.interval.ms",
                (Config::duration(&w.max_age) + Config::duration(&w.timeout) + 60_000)
                    .clamp(300_000, 86_400_000)
                    .to_string(),
            )
            .create()?;
        let consumer = Arc::new(consumer);
        let (c, names) = (consumer.clone(), owned.clone());
        tokio::task::spawn_blocking(move || start_at_end_if_new(&c, &names))
            .await?
            .map_err(|e| {
                anyhow::anyhow!("`sinks.webhooks[{index}]`: cannot read or set its position on the alert topics: {e}")
            })?;
        consumer.subscribe(&topics)?;
        let producer: FutureProducer = crate::kafka::client_config(k).create()?;
        tokio::spawn(measure_lag(
            consumer.clone(),
            sender.label.clone(),
            metrics.clone(),
            shutdown.clone(),
        ));
        tracing::info!(destination = index, %group, "webhook delivery started from the alert topics");
        tokio::spawn(run(
            sender,
            consumer,
            producer,
            k.dlq_topic.clone(),
            shutdown.clone(),
        ));
    }
    Ok(())
}

async fn run(
    sender: Sender,
    consumer: Arc<StreamConsumer>,
    producer: FutureProducer,
    dlq: String,
    shutdown: CancellationToken,
) {
    loop {
        let msg = tokio::select! {
            _ = shutdown.cancelled() => return,
            m = consumer.recv() => m,
        };
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(destination = sender.index, error = %e, "webhook: alert topic read failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        // Tombstones (a compacted topic's erasures) and records that are not alerts are
        // passed over.
        let alert = msg
            .payload()
            .and_then(|p| serde_json::from_slice::<Alert>(p).ok());
        if let Some(alert) = alert.filter(|a| sender.wants(a)) {
            match sender.send(&alert, &shutdown).await {
                None => return,
                Some(Done::Delivered) => {}
                Some(Done::Dead { reason, .. }) => {
                    let why = Rejection::new(
                        "webhook_undeliverable",
                        format!("webhook destination {}: {reason}", sender.index),
                    );
                    let headers = dead_letter_headers(
                        msg.headers(),
                        &why,
                        msg.topic(),
                        msg.partition(),
                        msg.offset(),
                    );
                    // Not committed until the dead letter is produced: a later commit
                    // would cover this offset.
                    loop {
                        let mut record = FutureRecord::to(&dlq)
                            .payload(msg.payload().unwrap_or_default())
                            .headers(headers.clone());
                        if let Some(key) = msg.key() {
                            record = record.key(key);
                        }
                        match producer.send(record, Duration::from_secs(30)).await {
                            Ok(_) => break,
                            Err((e, _)) => {
                                tracing::error!(destination = sender.index, error = %e, "webhook: dead letter not produced; retrying");
                                tokio::select! {
                                    _ = shutdown.cancelled() => return,
                                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                                }
                            }
                        }
                    }
                }
            }
        }
        if let Err(e) = consumer.commit_message(&msg, CommitMode::Async) {
            tracing::warn!(destination = sender.index, error = %e, "webhook: position not committed");
        }
    }
}

/// Commits the topics' ends when the group is new: no committed offset on any
/// partition of the alert topics. A group with positions keeps them; a partition it has
/// none on (added later) is then read from its start (`auto.offset.reset`). When the
/// commit fails because another instance set the group's positions first, that stands.
fn start_at_end_if_new(consumer: &StreamConsumer, topics: &[String]) -> KafkaResult<()> {
    let wait = Duration::from_secs(10);
    let metadata = consumer.fetch_metadata(None, wait)?;
    let mut all = TopicPartitionList::new();
    for t in metadata
        .topics()
        .iter()
        .filter(|t| topics.iter().any(|n| n == t.name()))
    {
        for p in t.partitions() {
            all.add_partition(t.name(), p.id());
        }
    }
    let positioned = |list: &TopicPartitionList| {
        list.elements()
            .iter()
            .any(|e| e.offset() != Offset::Invalid)
    };
    let committed = consumer.committed_offsets(all.clone(), wait)?;
    if positioned(&committed) {
        return Ok(());
    }
    let mut ends = TopicPartitionList::new();
    for e in committed.elements() {
        let (_, high) = consumer.fetch_watermarks(e.topic(), e.partition(), wait)?;
        ends.add_partition_offset(e.topic(), e.partition(), Offset::Offset(high))?;
    }
    if ends.count() == 0 {
        return Ok(());
    }
    match consumer.commit(&ends, CommitMode::Sync) {
        Err(e) if !positioned(&consumer.committed_offsets(all, wait)?) => Err(e),
        _ => Ok(()),
    }
}

/// Sets the destination's queue depth to its group's lag on this instance's partitions.
async fn measure_lag(
    consumer: Arc<StreamConsumer>,
    label: String,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(LAG_EVERY) => {}
        }
        let c = consumer.clone();
        let lag = tokio::task::spawn_blocking(move || {
            let position = c.position().ok()?;
            let mut lag = 0i64;
            for p in position.elements() {
                let (_, high) = c
                    .fetch_watermarks(p.topic(), p.partition(), Duration::from_secs(1))
                    .ok()?;
                let at = p.offset().to_raw().filter(|o| *o >= 0).unwrap_or(high);
                lag += (high - at).max(0);
            }
            Some(lag)
        })
        .await;
        if let Ok(Some(lag)) = lag {
            metrics.webhook_queue(&label, lag);
        }
    }
}
