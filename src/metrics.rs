//! Every Prometheus metric of the service, in one place. Names follow
//! `pairwatch_<subsystem>_<name>_<unit>`; counters end in `_total`; labels have bounded
//! values only (reason codes, categories, priorities, patterns, rule ids, shard
//! numbers), never a user or pair id. Hot-path handles are resolved once.

use crate::detect::alert::UpdateKind;
use crate::detect::rules::{Pattern, Priority};
use crate::detect::signal::Signal;
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

pub struct Metrics {
    pub registry: Registry,
    pub events_accepted: IntCounter,
    rejected: IntCounterVec,
    pub signals: Vec<IntCounter>,
    alerts: IntCounterVec,
    updates: IntCounterVec,
    decisions: IntCounterVec,
    claims: IntCounterVec,
    /// Calls refused by authentication or a token's scope, by reason.
    auth_denied: IntCounterVec,
    /// Webhook attempts by destination index and outcome.
    webhooks: IntCounterVec,
    /// Alerts logged that a webhook destination has not finished with yet.
    webhook_queue: IntGaugeVec,
    pub processing_seconds: Histogram,
    pub event_to_alert_seconds: Histogram,
    pub decision_to_suppression_seconds: Histogram,
    pub pairs: IntGaugeVec,
    pub queue_depth: IntGaugeVec,
    pub ingest_queue_depth: IntGauge,
    pub wal_fsync_seconds: Histogram,
    pub wal_failures: IntCounter,
    /// Alert log write or fsync failures.
    pub alert_log_failures: IntCounter,
    /// 1 while writes to a store fail, by store (`wal`, `alerts`); /readyz follows it.
    storage_failing: Vec<IntGauge>,
    /// Bytes read past or cut off by recovery at start, by store.
    recovery_bytes: IntCounterVec,
    pub checkpoint_seconds: Histogram,
    pub checkpoint_failures: IntCounter,
    pub checkpoint_pairs: IntGauge,
    pub subscribers: IntGauge,
    open: Vec<IntGauge>,
    pub saturated: IntCounter,
    pub duplicates: IntCounter,
    pub late_events: IntCounter,
    pub rules_reloads: IntCounterVec,
    /// Firings of shadow rules (`mode = "shadow"`), by rule: what a rule on trial would
    /// have alerted.
    shadow_fired: IntCounterVec,
    build_info: IntGaugeVec,
    pub kafka: KafkaMetrics,
    /// Every metric family name, labelled or not, with or without samples yet.
    pub names: Vec<String>,
}

/// The files whose writes can fail while the service runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Store {
    Wal,
    Alerts,
}

impl Store {
    pub const ALL: [Store; 2] = [Store::Wal, Store::Alerts];

    pub fn as_str(self) -> &'static str {
        match self {
            Store::Wal => "wal",
            Store::Alerts => "alerts",
        }
    }
}

/// Kafka mode: consumption, production, dead letters, rebalances, restores, transactions.
pub struct KafkaMetrics {
    /// Records behind the partition's high watermark, by input partition.
    pub lag: IntGaugeVec,
    pub partitions: IntGauge,
    /// By stage: `detect` or `rekey`.
    pub consumed: IntCounterVec,
    /// By kind: `alert`, `changelog`, `dead_letter`, `rekeyed`, `event` (gRPC publish).
    pub produced: IntCounterVec,
    dead_letters: IntCounterVec,
    /// Dead letters the producer could not deliver, written to the local
    /// `dead-letters.jsonl` instead.
    pub dead_letters_local: IntCounter,
    /// By kind: `assign`, `revoke`.
    pub rebalances: IntCounterVec,
    pub restore_seconds: Histogram,
    pub restored_records: IntCounter,
    /// Events skipped because the restored state already held them.
    pub skipped: IntCounter,
    /// By outcome: `commit`, `abort`.
    pub transactions: IntCounterVec,
    pub producer_queue: IntGauge,
    pub delivery_errors: IntCounter,
    /// Offset commits (at-least-once) and transaction commits that failed and rewound.
    pub rewinds: IntCounter,
    /// 1 while this member of the group owns no input partition (more members than
    /// partitions): ready, with nothing to consume.
    pub idle_member: IntGauge,
    /// 1 while the brokers do not answer (the instance is unready meanwhile).
    pub brokers_unreachable: IntGauge,
    /// 1 while the Kafka side is not ready (what `/readyz` says in Kafka mode; 0 in
    /// embedded mode, so that an alert on it needs no mode filter).
    pub unready: IntGauge,
}

impl KafkaMetrics {
    pub fn dead_letter(&self, reason: &str) {
        self.dead_letters.with_label_values(&[reason]).inc();
    }
}

/// The sum of the samples whose line starts with `name` in a text exposition (every
/// label combination of a family when `name` has no labels).
pub fn sample_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Turns an engine's cumulative stats into counter increments (signals, duplicates,
/// late events).
pub struct EngineCounters {
    signals: [u64; crate::detect::signal::SIGNAL_COUNT],
    duplicates: u64,
    late_events: u64,
}

// Per-signal arrays are longer than 32: no derived `Default`.
impl Default for EngineCounters {
    fn default() -> Self {
        EngineCounters {
            signals: [0; crate::detect::signal::SIGNAL_COUNT],
            duplicates: 0,
            late_events: 0,
        }
    }
}

impl EngineCounters {
    pub fn observe(&mut self, stats: &crate::detect::engine::EngineStats, metrics: &Metrics) {
        for (i, (now, seen)) in stats
            .signals
            .iter()
            .zip(self.signals.iter_mut())
            .enumerate()
        {
            if *now > *seen {
                metrics.signals[i].inc_by(*now - *seen);
            }
            *seen = *now;
        }
        if stats.duplicates > self.duplicates {
            metrics
                .duplicates
                .inc_by(stats.duplicates - self.duplicates);
        }
        self.duplicates = stats.duplicates;
        if stats.late_events > self.late_events {
            metrics
                .late_events
                .inc_by(stats.late_events - self.late_events);
        }
        self.late_events = stats.late_events;
    }
}

fn buckets() -> Vec<f64> {
    vec![
        0.000_005, 0.000_02, 0.000_1, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
        0.5, 1.0, 2.5,
    ]
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let names = std::cell::RefCell::new(Vec::new());
        let register = |c: Box<dyn prometheus::core::Collector>| {
            names
                .borrow_mut()
                .extend(c.desc().iter().map(|d| d.fq_name.clone()));
            registry.register(c).expect("register");
        };
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("metric");
            register(Box::new(c.clone()));
            c
        };
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("metric");
            register(Box::new(c.clone()));
            c
        };
        let histogram = |name: &str, help: &str| {
            let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets()))
                .expect("metric");
            register(Box::new(h.clone()));
            h
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("metric");
            register(Box::new(g.clone()));
            g
        };
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("metric");
            register(Box::new(g.clone()));
            g
        };
        let signals_vec = counter_vec(
            "pairwatch_engine_signals_total",
            "Signals found, by category.",
            &["category"],
        );
        let signals = Signal::ALL
            .iter()
            .map(|s| signals_vec.with_label_values(&[s.as_str()]))
            .collect();
        let alerts = counter_vec(
            "pairwatch_alerts_raised_total",
            "Alerts raised, by priority and pattern.",
            &["priority", "pattern"],
        );
        for p in Priority::ALL {
            for pat in Pattern::ALL {
                alerts.with_label_values(&[p.as_str(), pat.as_str()]);
            }
        }
        let updates = counter_vec(
            "pairwatch_alerts_updates_total",
            "Updates of standing alerts (a red flag changed), by kind.",
            &["kind"],
        );
        for k in [
            UpdateKind::DeadlinePassed,
            UpdateKind::StillInContact,
            UpdateKind::ContactEnded,
        ] {
            updates.with_label_values(&[k.as_str()]);
        }
        let mut m = Metrics {
            events_accepted: counter(
                "pairwatch_ingest_events_total",
                "Events accepted (durable and queued).",
            ),
            rejected: counter_vec(
                "pairwatch_ingest_rejected_total",
                "Events rejected, by reason.",
                &["reason"],
            ),
            signals,
            alerts,
            updates,
            webhooks: counter_vec(
                "pairwatch_webhook_deliveries_total",
                "Webhook attempts, by destination (its index in sinks.webhooks) and outcome: delivered, retried, dead_lettered.",
                &["destination", "outcome"],
            ),
            webhook_queue: gauge_vec(
                "pairwatch_webhook_queue_depth",
                "Alerts logged that a webhook destination has not delivered or dead-lettered yet, by destination index.",
                &["destination"],
            ),
            auth_denied: counter_vec(
                "pairwatch_auth_denied_total",
                "Calls and events refused by authentication or by a token's tenant scope, by reason.",
                &["reason"],
            ),
            decisions: counter_vec(
                "pairwatch_moderation_decisions_total",
                "Moderator decisions, by rule and decision.",
                &["rule", "decision"],
            ),
            claims: counter_vec(
                "pairwatch_moderation_claims_total",
                "Claims on alerts taken or renewed (claimed) and given up (released).",
                &["outcome"],
            ),
            processing_seconds: histogram(
                "pairwatch_engine_processing_seconds",
                "Engine time per event.",
            ),
            event_to_alert_seconds: histogram(
                "pairwatch_alerts_event_to_alert_seconds",
                "From event receipt to alert emission.",
            ),
            decision_to_suppression_seconds: histogram(
                "pairwatch_moderation_decision_to_suppression_seconds",
                "Kafka mode: from a false-positive decision to its suppression in the pair state.",
            ),
            pairs: gauge_vec(
                "pairwatch_state_pairs",
                "Pairs tracked, by shard.",
                &["shard"],
            ),
            queue_depth: gauge_vec(
                "pairwatch_shard_queue_depth",
                "Events waiting in each shard's queue.",
                &["shard"],
            ),
            ingest_queue_depth: gauge(
                "pairwatch_ingest_queue_depth",
                "Events waiting for the write-ahead log.",
            ),
            wal_fsync_seconds: histogram(
                "pairwatch_wal_fsync_seconds",
                "Write-ahead log group commit (write + fsync).",
            ),
            wal_failures: counter(
                "pairwatch_wal_failures_total",
                "Write-ahead log write or fsync failures.",
            ),
            alert_log_failures: counter(
                "pairwatch_alert_log_failures_total",
                "Alert log write or fsync failures (the alerts stay queued and are retried).",
            ),
            storage_failing: {
                let v = gauge_vec(
                    "pairwatch_storage_write_failing",
                    "1 while writes to a store fail (disk full, I/O error), by store; the instance is unready meanwhile.",
                    &["store"],
                );
                Store::ALL
                    .iter()
                    .map(|s| v.with_label_values(&[s.as_str()]))
                    .collect()
            },
            recovery_bytes: counter_vec(
                "pairwatch_storage_recovery_bytes_total",
                "Bytes of damaged records that recovery read past or cut off at start, by store.",
                &["store"],
            ),
            checkpoint_seconds: histogram(
                "pairwatch_checkpoint_duration_seconds",
                "Checkpoint duration.",
            ),
            checkpoint_failures: counter(
                "pairwatch_checkpoint_failures_total",
                "Checkpoints that failed.",
            ),
            checkpoint_pairs: gauge(
                "pairwatch_checkpoint_pairs",
                "Pairs in the last checkpoint.",
            ),
            subscribers: gauge("pairwatch_alerts_subscribers", "Open alert subscriptions."),
            open: {
                let v = gauge_vec(
                    "pairwatch_alerts_open",
                    "Alerts not yet resolved by a moderator, by priority (embedded mode).",
                    &["priority"],
                );
                Priority::ALL
                    .iter()
                    .map(|p| v.with_label_values(&[p.as_str()]))
                    .collect()
            },
            saturated: counter(
                "pairwatch_ingest_saturated_total",
                "Events refused with RESOURCE_EXHAUSTED because intake was full.",
            ),
            duplicates: counter(
                "pairwatch_engine_duplicates_total",
                "Events dropped as retries of a pair's recent event (same event_id).",
            ),
            late_events: counter(
                "pairwatch_events_late_total",
                "Events dropped as late: sent_at more than the pair TTL before their tenant's latest event time.",
            ),
            shadow_fired: counter_vec(
                "pairwatch_rules_shadow_fired_total",
                "Events on which a shadow rule would have raised an alert, by rule (no alert is raised).",
                &["rule"],
            ),
            rules_reloads: counter_vec(
                "pairwatch_rules_reloads_total",
                "Rule reloads, by outcome.",
                &["outcome"],
            ),
            build_info: gauge_vec(
                "pairwatch_build_info",
                "Build and rules version.",
                &["version", "rules_version"],
            ),
            kafka: KafkaMetrics {
                lag: gauge_vec(
                    "pairwatch_kafka_consumer_lag_records",
                    "Records between the processing position and the partition's high watermark, read every second, by input partition (before the first assignment: from the group's committed offsets).",
                    &["partition"],
                ),
                partitions: gauge(
                    "pairwatch_kafka_assigned_partitions",
                    "Input partitions this instance owns.",
                ),
                consumed: counter_vec(
                    "pairwatch_kafka_records_consumed_total",
                    "Input records handed to processing, by stage; each offset once, however often a failed batch is read again.",
                    &["stage"],
                ),
                produced: counter_vec(
                    "pairwatch_kafka_records_produced_total",
                    "Records handed to the producer, by kind.",
                    &["kind"],
                ),
                dead_letters: counter_vec(
                    "pairwatch_kafka_dead_letters_total",
                    "Input records dead-lettered (delivered to the dead-letter topic or written to the local dead-letter file), each once, by reason.",
                    &["reason"],
                ),
                dead_letters_local: counter(
                    "pairwatch_kafka_dead_letters_local_total",
                    "Dead letters the producer could not deliver, written to <data_dir>/dead-letters.jsonl instead.",
                ),
                rebalances: counter_vec(
                    "pairwatch_kafka_rebalances_total",
                    "Consumer group rebalances, by kind.",
                    &["kind"],
                ),
                restore_seconds: histogram(
                    "pairwatch_kafka_restore_seconds",
                    "Time to restore a partition's pair state before processing it.",
                ),
                restored_records: counter(
                    "pairwatch_kafka_restored_records_total",
                    "Changelog records read while restoring pair state.",
                ),
                skipped: counter(
                    "pairwatch_kafka_skipped_records_total",
                    "Events not processed again because the restored state already held them.",
                ),
                transactions: counter_vec(
                    "pairwatch_kafka_transactions_total",
                    "Kafka transactions, by outcome.",
                    &["outcome"],
                ),
                producer_queue: gauge(
                    "pairwatch_kafka_producer_queue_messages",
                    "Messages waiting in the producer queue.",
                ),
                delivery_errors: counter(
                    "pairwatch_kafka_delivery_errors_total",
                    "Records the producer failed to deliver (after its own retries).",
                ),
                rewinds: counter(
                    "pairwatch_kafka_rewinds_total",
                    "Batches whose output or commit failed: state restored and records read again.",
                ),
                idle_member: gauge(
                    "pairwatch_kafka_idle_member",
                    "1 while this group member owns no input partition (more members than partitions): ready, nothing to consume.",
                ),
                brokers_unreachable: gauge(
                    "pairwatch_kafka_brokers_unreachable",
                    "1 while the Kafka brokers do not answer; the instance is unready meanwhile.",
                ),
                unready: gauge(
                    "pairwatch_kafka_unready",
                    "1 while the instance is not ready in Kafka mode (/readyz says why): partitions not yet assigned or restored, re-reading after a failure, consumer loop stalled, brokers unreachable.",
                ),
            },
            registry,
            names: Vec::new(),
        };
        m.names = names.into_inner();
        for reason in crate::detect::event::EventError::REASONS {
            m.rejected.with_label_values(&[reason]);
        }
        // Rejections decided by the gRPC layer, not by event validation.
        for reason in [
            "bad_protobuf",
            "saturated",
            crate::server::auth::Denied::Tenant.as_str(),
        ] {
            m.rejected.with_label_values(&[reason]);
        }
        for why in crate::server::auth::Denied::ALL {
            m.auth_denied.with_label_values(&[why.as_str()]);
        }
        for kind in ["alert", "changelog", "dead_letter", "rekeyed", "event"] {
            m.kafka.produced.with_label_values(&[kind]);
        }
        for outcome in ["commit", "abort"] {
            m.kafka.transactions.with_label_values(&[outcome]);
        }
        m
    }

    pub fn rejected(&self, reason: &str) {
        self.rejected.with_label_values(&[reason]).inc();
    }

    pub fn alert(&self, a: &crate::detect::alert::Alert) {
        self.alerts
            .with_label_values(&[a.priority.as_str(), a.pattern.as_str()])
            .inc();
    }

    pub fn update(&self, kind: UpdateKind) {
        self.updates.with_label_values(&[kind.as_str()]).inc();
    }

    pub fn set_open(&self, counts: [i64; 4]) {
        for (g, n) in self.open.iter().zip(counts) {
            g.set(n);
        }
    }

    pub fn decision(&self, rules: &[String], decision: &str) {
        for r in rules {
            self.decisions.with_label_values(&[r, decision]).inc();
        }
    }

    /// Shows a webhook destination's series from the start.
    pub fn webhook_labels(&self, destination: &str) {
        for outcome in ["delivered", "retried", "dead_lettered"] {
            self.webhooks.with_label_values(&[destination, outcome]);
        }
        self.webhook_queue.with_label_values(&[destination]);
    }

    pub fn webhook(&self, destination: &str, outcome: &str) {
        self.webhooks
            .with_label_values(&[destination, outcome])
            .inc();
    }

    pub fn webhook_queue(&self, destination: &str, depth: i64) {
        self.webhook_queue
            .with_label_values(&[destination])
            .set(depth);
    }

    pub fn auth_denied(&self, reason: &str) {
        self.auth_denied.with_label_values(&[reason]).inc();
    }

    pub fn claim(&self, outcome: &str) {
        self.claims.with_label_values(&[outcome]).inc();
    }

    /// Counts the shadow rules that held on an event.
    pub fn shadow_fired<'a>(&self, rules: impl Iterator<Item = &'a str>) {
        for r in rules {
            self.shadow_fired.with_label_values(&[r]).inc();
        }
    }

    pub fn set_rules_version(&self, version: &str) {
        self.build_info.reset();
        self.build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), version])
            .set(1);
    }

    /// Records whether the last write to `store` failed.
    pub fn set_storage_failing(&self, store: Store, failing: bool) {
        self.storage_failing[store as usize].set(failing as i64);
    }

    /// Whether the last write to `store` failed.
    pub fn storage_failing(&self, store: Store) -> bool {
        self.storage_failing[store as usize].get() != 0
    }

    /// Counts bytes that recovery read past or cut off in `store`.
    pub fn recovered(&self, store: Store, bytes: u64) {
        self.recovery_bytes
            .with_label_values(&[store.as_str()])
            .inc_by(bytes);
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
