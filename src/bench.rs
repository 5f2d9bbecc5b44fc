//! `pairwatch bench`: the load generator. Drives the synthetic workload through the
//! engine in process, through a running `pairwatch serve` over gRPC, or into memory to
//! measure bytes per pair; reports events/s, alerts/s, latency percentiles, CPU and
//! peak memory, with progress on stderr while it runs. [`scaling`] sweeps pairs,
//! message length and lexicon size; [`chart`] draws the sweeps.

pub mod chart;
pub mod scaling;

use crate::detect::engine::{Engine, EngineConfig};
use crate::detect::event::Event;
use crate::detect::normalize::{normalize, Normalized};
use crate::detect::pack::RulePack;
use crate::proto::pb;
use crate::workload::{Shape, Workload};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// CPU seconds (user + system) and peak resident memory of a process, from /proc.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcStats {
    pub cpu_seconds: f64,
    pub peak_rss_bytes: u64,
    pub rss_bytes: u64,
}

pub fn proc_stats(pid: &str) -> ProcStats {
    let mut s = ProcStats::default();
    if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // Fields after the command name, which is in parentheses and may hold spaces.
        if let Some(rest) = stat.rsplit_once(')').map(|x| x.1) {
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
            s.cpu_seconds = (ticks(11) + ticks(12)) / 100.0;
        }
    }
    if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
        for line in status.lines() {
            let kb = |l: &str| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
                    * 1024
            };
            if line.starts_with("VmHWM:") {
                s.peak_rss_bytes = kb(line);
            } else if line.starts_with("VmRSS:") {
                s.rss_bytes = kb(line);
            }
        }
    }
    s
}

/// Prints progress to stderr at most once a second.
pub struct Progress {
    start: Instant,
    last: Instant,
    label: &'static str,
}

impl Progress {
    pub fn new(label: &'static str) -> Self {
        let now = Instant::now();
        Progress {
            start: now,
            last: now,
            label,
        }
    }
    pub fn tick(&mut self, done: u64, total: u64, alerts: u64) {
        if self.last.elapsed() >= Duration::from_secs(1) {
            self.last = Instant::now();
            let secs = self.start.elapsed().as_secs_f64();
            eprintln!(
                "{}: {done}/{total} events, {:.0} events/s, {alerts} alerts",
                self.label,
                done as f64 / secs
            );
        }
    }
}

#[derive(Debug, Default)]
pub struct EngineReport {
    pub events: usize,
    pub alerts: usize,
    pub seconds: f64,
    pub events_per_s: f64,
    /// Bare Aho-Corasick scan of the raw texts with the same automaton, texts per second.
    pub bare_scan_per_s: f64,
    /// Normalisation alone, texts per second.
    pub normalize_per_s: f64,
    pub pairs: usize,
    pub cpu_seconds: f64,
    pub peak_rss_bytes: u64,
}

/// The engine in process, on one thread, over `events` pre-generated events.
pub fn run_engine(pack: Arc<RulePack>, shape: Shape, events: usize) -> EngineReport {
    eprintln!("bench engine: generating {events} events");
    let stream = Workload::new(shape).take(events);
    let texts: Vec<&str> = stream.iter().map(Event::text).collect();
    // The bare automaton over the same texts: the physical ceiling of this work.
    let t = Instant::now();
    let mut matches = 0usize;
    for text in &texts {
        matches += pack.lexicon.count_raw(text);
    }
    let bare = t.elapsed().as_secs_f64();
    let mut norm = Normalized::new();
    let t = Instant::now();
    for text in &texts {
        normalize(text, &mut norm);
    }
    let norm_secs = t.elapsed().as_secs_f64();
    std::hint::black_box(matches);
    let mut engine = Engine::new(pack, EngineConfig::default());
    let mut out = Vec::new();
    let mut alerts = 0;
    let cpu0 = proc_stats("self").cpu_seconds;
    let mut progress = Progress::new("bench engine");
    let t = Instant::now();
    for (i, ev) in stream.iter().enumerate() {
        engine.process(ev, &mut out);
        alerts += out.len();
        out.clear();
        if i % 65_536 == 0 {
            progress.tick(i as u64, events as u64, alerts as u64);
        }
    }
    let seconds = t.elapsed().as_secs_f64();
    let stats = proc_stats("self");
    EngineReport {
        events,
        alerts,
        seconds,
        events_per_s: events as f64 / seconds,
        bare_scan_per_s: events as f64 / bare,
        normalize_per_s: events as f64 / norm_secs,
        pairs: engine.pairs(),
        cpu_seconds: stats.cpu_seconds - cpu0,
        peak_rss_bytes: stats.peak_rss_bytes,
    }
}

#[derive(Debug, Default)]
pub struct MemoryReport {
    pub pairs: usize,
    pub idle_bytes_per_pair: f64,
    pub active_bytes_per_pair: f64,
}

/// Bytes of resident memory per tracked pair: `pairs` idle pairs (one benign message
/// each), then the same number of pairs with signals and evidence.
pub fn run_memory(pack: Arc<RulePack>, pairs: usize) -> MemoryReport {
    let mut engine = Engine::new(pack, EngineConfig::default());
    let mut out = Vec::new();
    let base = proc_stats("self").rss_bytes;
    let mut ev = Workload::new(Shape {
        pairs: 1,
        escalating: 0.0,
        ..Shape::default()
    })
    .next_event();
    let mut progress = Progress::new("bench memory (idle)");
    for i in 0..pairs {
        ev.sender.user_id = format!("a{i}");
        ev.recipient.user_id = format!("b{i}");
        engine.process(&ev, &mut out);
        progress.tick(i as u64, pairs as u64, 0);
    }
    let idle = proc_stats("self").rss_bytes.saturating_sub(base) as f64 / pairs as f64;
    let base = proc_stats("self").rss_bytes;
    let crate::detect::event::Body::Message(m) = &mut ev.body else {
        unreachable!("workload events are messages")
    };
    m.text = "ur so cute, how old r u? send me a pic of you".into();
    let mut progress = Progress::new("bench memory (active)");
    for i in 0..pairs {
        ev.sender.user_id = format!("c{i}");
        ev.recipient.user_id = format!("d{i}");
        ev.event_id = format!("m{i}");
        engine.process(&ev, &mut out);
        out.clear();
        progress.tick(i as u64, pairs as u64, 0);
    }
    let active = proc_stats("self").rss_bytes.saturating_sub(base) as f64 / pairs as f64;
    MemoryReport {
        pairs: engine.pairs(),
        idle_bytes_per_pair: idle,
        active_bytes_per_pair: active,
    }
}

#[derive(Debug, Default)]
pub struct GrpcReport {
    pub events: usize,
    pub accepted: usize,
    pub alerts: usize,
    pub seconds: f64,
    pub events_per_s: f64,
    /// Event sent to alert received, milliseconds: p50, p99, p999.
    pub latency_ms: Option<(f64, f64, f64)>,
    pub client: ProcStats,
    pub server: Option<ProcStats>,
}

pub struct GrpcLoad {
    pub addr: String,
    pub token: Option<String>,
    pub events: usize,
    pub batch: usize,
    pub concurrency: usize,
    /// Events per second to hold; `None` sends as fast as acks come back.
    pub rate: Option<f64>,
    pub server_pid: Option<String>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Drives a running service: batched `PublishBatch` calls from `concurrency` tasks,
/// with a subscription measuring event-to-alert latency.
pub async fn run_grpc(load: GrpcLoad, shape: Shape) -> anyhow::Result<GrpcReport> {
    eprintln!("bench grpc: generating {} events", load.events);
    let stream = Workload::new(shape).take(load.events);
    let batches: Vec<Vec<pb::ChatEvent>> = stream
        .chunks(load.batch.max(1))
        .map(|c| c.iter().map(pb::ChatEvent::from).collect())
        .collect();
    drop(stream);
    let ch = crate::client::connect(&load.addr).await?;
    let token = load.token.clone();
    let sent: Arc<Vec<std::sync::OnceLock<Instant>>> = Arc::new(
        (0..=load.events)
            .map(|_| std::sync::OnceLock::new())
            .collect(),
    );
    // Subscribe first, so every alert of the run is seen.
    let mut alerts_client = pb::alert_service_client::AlertServiceClient::new(ch.clone());
    let mut sub = alerts_client
        .subscribe(crate::client::with_token(
            pb::SubscribeRequest::default(),
            token.as_deref(),
        )?)
        .await?
        .into_inner();
    let sent_for_sub = sent.clone();
    let latencies: Arc<std::sync::Mutex<Vec<f64>>> = Arc::default();
    let lat_sink = latencies.clone();
    let listener = tokio::spawn(async move {
        use tokio_stream::StreamExt;
        while let Some(Ok(env)) = sub.next().await {
            // An update keeps its alert's first trigger event (a deadline passing, say,
            // comes long after it): only new alerts are timed.
            let Some(a) = env.alert.filter(|a| a.update.is_none()) else {
                continue;
            };
            let n: usize = a
                .trigger_event_id
                .trim_start_matches('w')
                .parse()
                .unwrap_or(0);
            if let Some(t) = sent_for_sub.get(n).and_then(|c| c.get()) {
                lat_sink
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }
    });
    let server0 = load.server_pid.as_deref().map(proc_stats);
    let client0 = proc_stats("self");
    let start = Instant::now();
    let batches = Arc::new(std::sync::Mutex::new(batches.into_iter().enumerate()));
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let per_task_rate = load.rate.map(|r| r / load.concurrency as f64);
    let mut tasks = Vec::new();
    for _ in 0..load.concurrency {
        let batches = batches.clone();
        let accepted = accepted.clone();
        let sent = sent.clone();
        let token = token.clone();
        let mut client = pb::ingest_service_client::IngestServiceClient::new(ch.clone());
        tasks.push(tokio::spawn(async move {
            let t0 = Instant::now();
            let mut done = 0usize;
            loop {
                let next = batches.lock().unwrap_or_else(|p| p.into_inner()).next();
                let Some((_, events)) = next else { break };
                if let Some(r) = per_task_rate {
                    let due = Duration::from_secs_f64(done as f64 / r);
                    if let Some(wait) = due.checked_sub(t0.elapsed()) {
                        tokio::time::sleep(wait).await;
                    }
                }
                let now = Instant::now();
                for e in &events {
                    let n: usize = e.event_id.trim_start_matches('w').parse().unwrap_or(0);
                    if let Some(c) = sent.get(n) {
                        let _ = c.set(now);
                    }
                }
                done += events.len();
                let req = crate::client::with_token(
                    pb::PublishBatchRequest { events },
                    token.as_deref(),
                )?;
                let resp = client.publish_batch(req).await?.into_inner();
                accepted.fetch_add(
                    resp.results.iter().filter(|r| r.accepted).count(),
                    std::sync::atomic::Ordering::Relaxed,
                );
            }
            anyhow::Ok(())
        }));
    }
    let mut progress = Progress::new("bench grpc");
    while tasks.iter().any(|t| !t.is_finished()) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        progress.tick(
            accepted.load(std::sync::atomic::Ordering::Relaxed) as u64,
            load.events as u64,
            0,
        );
    }
    for t in tasks {
        t.await??;
    }
    let seconds = start.elapsed().as_secs_f64();
    // Give the last alerts time to arrive, then stop listening.
    tokio::time::sleep(Duration::from_millis(500)).await;
    listener.abort();
    let mut lat = std::mem::take(&mut *latencies.lock().unwrap_or_else(|p| p.into_inner()));
    lat.sort_by(|a, b| a.total_cmp(b));
    let client = proc_stats("self");
    let accepted = accepted.load(std::sync::atomic::Ordering::Relaxed);
    Ok(GrpcReport {
        events: load.events,
        accepted,
        alerts: lat.len(),
        seconds,
        events_per_s: accepted as f64 / seconds,
        latency_ms: (!lat.is_empty()).then(|| {
            (
                percentile(&lat, 0.5),
                percentile(&lat, 0.99),
                percentile(&lat, 0.999),
            )
        }),
        client: ProcStats {
            cpu_seconds: client.cpu_seconds - client0.cpu_seconds,
            ..client
        },
        server: load.server_pid.as_deref().map(|p| {
            let s = proc_stats(p);
            ProcStats {
                cpu_seconds: s.cpu_seconds - server0.map_or(0.0, |z| z.cpu_seconds),
                ..s
            }
        }),
    })
}
