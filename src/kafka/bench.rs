//! `pairwatch bench kafka`: the Kafka path against a running broker. Fresh topics are
//! created, the synthetic stream is produced to the events topic (idempotent producer,
//! keyed by pair), a bare consumer drains it (the ceiling: no decoding, no work), then
//! the service, in process and in Kafka mode, consumes the same records; its rate is
//! taken between its first and its last record, so group joining is not counted.

use super::codec::{self, Format};
use crate::bench::{proc_stats, Progress};
use crate::config::Config;
use crate::metrics::sample_sum;
use crate::workload::{Shape, Workload};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use std::time::{Duration, Instant};

pub struct KafkaLoad {
    pub brokers: String,
    pub events: usize,
    pub partitions: i32,
    /// librdkafka properties for every client (e.g. `session.timeout.ms=6000`).
    pub client: Vec<(String, String)>,
    /// Record format of the events topic.
    pub format: Format,
}

#[derive(Debug, Default)]
pub struct KafkaReport {
    pub events: usize,
    pub produce_per_s: f64,
    pub bare_consume_per_s: f64,
    pub service_per_s: f64,
    pub alerts: u64,
    /// Changelog records the service produced (one per pair touched per batch).
    pub state_records: u64,
    pub service_cpu_seconds: f64,
    /// Share of the service run the stage's consumer thread was on a CPU (the
    /// short-lived detection helpers it starts per chunk are not counted).
    pub detect_busy: f64,
}

/// CPU seconds of this process's threads named `name` (from /proc).
fn thread_cpu_seconds(name: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == name))
        .map(|t| proc_stats(&format!("self/task/{}", t.file_name().to_string_lossy())).cpu_seconds)
        .sum()
}

fn base(load: &KafkaLoad) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &load.brokers);
    for (k, v) in &load.client {
        c.set(k, v);
    }
    c
}

async fn create_topics(load: &KafkaLoad, names: &[String]) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = base(load).create()?;
    let topics: Vec<NewTopic> = names
        .iter()
        .map(|n| NewTopic::new(n, load.partitions, TopicReplication::Fixed(1)))
        .collect();
    for r in admin.create_topics(&topics, &AdminOptions::new()).await? {
        r.map_err(|(t, e)| anyhow::anyhow!("create {t}: {e}"))?;
    }
    Ok(())
}

fn produce(load: &KafkaLoad, topic: &str, shape: Shape) -> anyhow::Result<f64> {
    let producer: BaseProducer = base(load)
        .set("enable.idempotence", "true")
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let events = Workload::new(shape).take(load.events);
    let payloads: Vec<(String, Vec<u8>)> = events
        .iter()
        .map(|e| {
            (
                codec::event_pair_key(e),
                codec::encode_event(e, load.format),
            )
        })
        .collect();
    drop(events);
    let mut progress = Progress::new("bench kafka: produce");
    let start = Instant::now();
    for (i, (key, value)) in payloads.iter().enumerate() {
        let mut record = BaseRecord::to(topic).key(key).payload(value);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(5));
                }
            }
        }
        if i % 10_000 == 0 {
            producer.poll(Duration::ZERO);
            progress.tick(i as u64, load.events as u64, 0);
        }
    }
    producer.flush(Duration::from_secs(120))?;
    Ok(load.events as f64 / start.elapsed().as_secs_f64())
}

/// Reads the whole topic with a plain consumer: the rate a do-nothing consumer gets.
fn drain(load: &KafkaLoad, topic: &str) -> anyhow::Result<f64> {
    let consumer: BaseConsumer = base(load)
        .set("group.id", format!("{topic}.bare"))
        .set("enable.auto.commit", "false")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..load.partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let mut n = 0usize;
    let mut started = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    while n < load.events {
        anyhow::ensure!(Instant::now() < deadline, "bare consumer stalled at {n}");
        if let Some(Ok(_)) = consumer.poll(Duration::from_millis(100)) {
            started.get_or_insert_with(Instant::now);
            n += 1;
        }
    }
    let secs = started.map_or(0.0, |s| s.elapsed().as_secs_f64());
    Ok(n as f64 / secs.max(1e-9))
}

async fn scrape(addr: std::net::SocketAddr) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).await?;
    Ok(buf)
}

pub async fn run_kafka(load: KafkaLoad, shape: Shape) -> anyhow::Result<KafkaReport> {
    let prefix = format!(
        "bench-{}-{}",
        std::process::id(),
        crate::detect::time::now_millis()
    );
    let (events, alerts, dlq, state, decisions) = (
        format!("{prefix}.events"),
        format!("{prefix}.alerts"),
        format!("{prefix}.dlq"),
        format!("{prefix}.state"),
        format!("{prefix}.decisions"),
    );
    create_topics(
        &load,
        &[
            events.clone(),
            alerts.clone(),
            dlq.clone(),
            state.clone(),
            decisions.clone(),
        ],
    )
    .await?;
    eprintln!(
        "bench kafka: topics {prefix}.*, {} partitions",
        load.partitions
    );
    let (l, topic) = (&load, events.clone());
    let produce_per_s = tokio::task::block_in_place(|| produce(l, &topic, shape))?;
    eprintln!(
        "bench kafka: produced {} events at {produce_per_s:.0}/s",
        load.events
    );
    let bare_consume_per_s = tokio::task::block_in_place(|| drain(l, &topic))?;
    eprintln!("bench kafka: bare consumer {bare_consume_per_s:.0}/s");

    let dir = std::env::temp_dir().join(&prefix);
    // The environment may tune the service (PAIRWATCH__KAFKA__MAX_BATCH, ...).
    let mut c = Config::load(None, std::env::vars()).map_err(anyhow::Error::msg)?;
    c.server.grpc_addr = "127.0.0.1:0".into();
    c.server.http_addr = "127.0.0.1:0".into();
    c.server.data_dir = dir.display().to_string();
    c.kafka.brokers = load.brokers.clone();
    c.kafka.group_id = format!("{prefix}.group");
    c.kafka.events_topic = events;
    c.kafka.alerts_topic = alerts;
    c.kafka.dlq_topic = dlq;
    c.kafka.changelog_topic = state;
    c.kafka.decisions_topic = decisions;
    c.kafka.events_format = load.format.name().into();
    c.kafka.client = load.client.iter().cloned().collect();
    c.log.level = std::env::var("PAIRWATCH__LOG__LEVEL").unwrap_or_else(|_| "warn".into());
    crate::server::init_logging(&c);
    let cpu0 = proc_stats("self").cpu_seconds;
    // The detection thread starts with the service: it has no CPU time before.
    let server = crate::server::start(c, tokio_util::sync::CancellationToken::new()).await?;
    let mut progress = Progress::new("bench kafka: service");
    let (mut first, mut done) = (None, 0.0);
    let deadline = Instant::now() + Duration::from_secs(900);
    while done < load.events as f64 {
        anyhow::ensure!(Instant::now() < deadline, "service stalled at {done}");
        tokio::time::sleep(Duration::from_millis(20)).await;
        let m = scrape(server.http_addr).await?;
        done = sample_sum(&m, "pairwatch_kafka_records_consumed_total");
        if done > 0.0 && first.is_none() {
            first = Some((Instant::now(), done));
        }
        progress.tick(done as u64, load.events as u64, 0);
    }
    let (t0, n0) = first.unwrap_or((Instant::now(), 0.0));
    let service_per_s = (load.events as f64 - n0) / t0.elapsed().as_secs_f64().max(1e-9);
    let m = scrape(server.http_addr).await?;
    let produced = |kind: &str| {
        sample_sum(
            &m,
            &format!("pairwatch_kafka_records_produced_total{{kind=\"{kind}\"}}"),
        ) as u64
    };
    let (alerts, state_records) = (produced("alert"), produced("changelog"));
    let service_cpu_seconds = proc_stats("self").cpu_seconds - cpu0;
    let detect_cpu_seconds = thread_cpu_seconds("kafka-detect");
    let service_seconds = t0.elapsed().as_secs_f64();
    server.stop().await?;
    let _ = std::fs::remove_dir_all(dir);
    Ok(KafkaReport {
        events: load.events,
        produce_per_s,
        bare_consume_per_s,
        service_per_s,
        alerts,
        state_records,
        service_cpu_seconds,
        detect_busy: detect_cpu_seconds / service_seconds.max(1e-9),
    })
}
