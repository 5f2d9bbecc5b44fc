//! The threads that own the state. Ingest handlers send [`Command`]s to one log thread,
//! which appends them to the write-ahead log in groups (one fsync per group), then
//! routes each to the shard that owns its pair and acknowledges it. Each shard thread
//! owns an [`Engine`] for its pairs, with no lock; its alerts and snapshots go, in
//! order, to one writer thread that keeps the alert log and writes checkpoints.
//!
//! Every queue is bounded; a full shard queue blocks the log thread, whose full queue
//! makes ingest wait and then answer RESOURCE_EXHAUSTED.

use super::alerts::AlertBook;
use super::checkpoint;
use super::wal::{Kind, Record, Wal};
use crate::detect::alert::Alert;
use crate::detect::engine::{Engine, EngineConfig};
use crate::detect::event::{Event, Limits};
use crate::detect::pack::RulePack;
use crate::detect::rules::Pattern;
use crate::detect::state::{PairKey, PairState};
use crate::detect::time::Millis;
use crate::metrics::{Metrics, Store};
use crate::proto::{event_from_proto, pb};
use prost::Message;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Instant;
use tokio::sync::{broadcast, mpsc, oneshot};

/// Alerts kept for live subscribers that fall behind.
const FEED_CAPACITY: usize = 4096;
/// Records per group commit at most.
const GROUP_MAX: usize = 2048;
/// How often the alert writer retries alerts whose write failed.
const WRITER_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// What a command does once it is in the log.
pub enum Route {
    Event {
        event: Box<Event>,
        received: Instant,
    },
    /// `reply` gets, from each shard, the pairs and alerts it removed.
    Forget {
        erasure: Erasure,
        reply: std::sync::mpsc::Sender<(usize, usize)>,
    },
    Suppress(Suppress),
}

/// A user to forget, as logged: `tenant NUL user`. A record of the releases before
/// tenants were named holds the user alone and erases the user in every tenant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Erasure {
    pub tenant: Option<String>,
    pub user: String,
}

impl Erasure {
    pub fn to_payload(&self) -> Vec<u8> {
        let mut p = self.tenant.clone().unwrap_or_default().into_bytes();
        p.push(0);
        p.extend_from_slice(self.user.as_bytes());
        p
    }

    pub fn from_payload(p: &[u8]) -> Erasure {
        let text = String::from_utf8_lossy(p);
        match text.split_once('\0') {
            Some((tenant, user)) => Erasure {
                tenant: Some(tenant.to_string()),
                user: user.to_string(),
            },
            None => Erasure {
                tenant: None,
                user: text.into_owned(),
            },
        }
    }
}

/// A false-positive decision, as logged (and as sent to detection in Kafka mode).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Suppress {
    pub tenant: String,
    pub a: String,
    pub b: String,
    pub pattern: Pattern,
}

impl Suppress {
    /// The false positive of `alert`: its pair and pattern.
    pub fn of(alert: &crate::detect::alert::Alert) -> Suppress {
        Suppress {
            tenant: alert.tenant.clone(),
            a: alert.suspect.user_id.clone(),
            b: alert.target.user_id.clone(),
            pattern: alert.pattern,
        }
    }
}

pub enum Command {
    /// Log, route, then acknowledge with the sequence number.
    Append {
        route: Route,
        payload: Vec<u8>,
        ack: Option<oneshot::Sender<Result<u64, String>>>,
    },
    /// Checkpoint every shard at the current position; `done` gets the position.
    Checkpoint {
        done: Option<oneshot::Sender<Result<u64, String>>>,
    },
    /// Swap the rule pack on every shard, then checkpoint.
    Reload(Arc<RulePack>),
    /// Writes failed: try the log again (an empty record), so the instance turns ready
    /// once space is back even if no client sends meanwhile.
    Probe,
    /// Intake is closed: take a last checkpoint and stop the threads once drained.
    Shutdown,
}

enum ShardMsg {
    Event {
        event: Box<Event>,
        received: Option<Instant>,
    },
    Forget {
        erasure: Erasure,
        reply: Option<std::sync::mpsc::Sender<(usize, usize)>>,
    },
    Suppress(Suppress),
    Checkpoint {
        seq: u64,
    },
    Pair {
        tenant: String,
        a: String,
        b: String,
        reply: oneshot::Sender<Option<PairState>>,
    },
    Reload(Arc<RulePack>),
    /// The wall clock, in milliseconds: standing alerts' deadlines it is past are passed.
    Clock(Millis),
    Stop,
}

enum WriterMsg {
    Alert {
        alert: Box<Alert>,
        received: Option<Instant>,
    },
    Part {
        seq: u64,
        shard: usize,
        bytes: Vec<u8>,
        pairs: usize,
    },
    Expect {
        seq: u64,
        done: Option<oneshot::Sender<Result<u64, String>>>,
    },
    /// After a shard forgot a user: erase its alerts too, after the shard's earlier alerts.
    Forget {
        erasure: Erasure,
        pairs: usize,
        reply: Option<std::sync::mpsc::Sender<(usize, usize)>>,
    },
}

/// Handles the gRPC layer uses.
#[derive(Clone)]
pub struct Pipeline {
    pub commands: mpsc::Sender<Command>,
    shards: Shards,
    pub book: Arc<RwLock<AlertBook>>,
    pub feed: broadcast::Sender<super::alerts::Logged>,
    pub limits: Limits,
    pub max_batch: usize,
    pub metrics: Arc<Metrics>,
    pub pack: Arc<Mutex<Arc<RulePack>>>,
}

pub struct Threads {
    handles: Vec<JoinHandle<()>>,
}

impl Threads {
    /// Waits for every thread to finish (after the command channel closed).
    pub fn join(self) {
        for h in self.handles {
            let _ = h.join();
        }
    }
}

pub struct Settings {
    pub data_dir: PathBuf,
    pub shards: usize,
    pub shard_queue: usize,
    pub ingest_queue: usize,
    pub segment_bytes: u64,
    pub fsync: bool,
    pub limits: Limits,
    pub max_batch: usize,
    pub engine: EngineConfig,
    /// How often the wall clock passes standing alerts' deadlines (events pass them too,
    /// on event time, but a deadline must pass even when the pair and its tenant fall
    /// silent).
    pub deadline_clock: std::time::Duration,
}

/// The shard owning an event's pair.
fn shard_of_event(event: &Event, shards: usize) -> usize {
    shard_of(
        &PairKey::of(
            &event.tenant,
            &event.sender.user_id,
            &event.recipient.user_id,
        )
        .0,
        shards,
    )
}

pub fn shard_of(key: &PairKey, shards: usize) -> usize {
    ((key.0 >> 64) as u64 % shards as u64) as usize
}

impl Pipeline {
    /// The shard that owns the pair of these two users.
    pub fn shard_for(&self, tenant: &str, a: &str, b: &str) -> usize {
        shard_of(&PairKey::of(tenant, a, b).0, self.shards.len())
    }

    /// A copy of a pair's state, from the shard that owns it.
    pub async fn pair(&self, tenant: &str, a: &str, b: &str) -> Option<PairState> {
        let (reply, rx) = oneshot::channel();
        let shard = self.shard_for(tenant, a, b);
        let shards = self.shards.clone();
        let msg = ShardMsg::Pair {
            tenant: tenant.into(),
            a: a.into(),
            b: b.into(),
            reply,
        };
        tokio::task::spawn_blocking(move || shards.send(shard, msg))
            .await
            .ok()?;
        rx.await.ok().flatten()
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }
}

/// Hands each restored pair to its shard's engine. With the shard count unchanged, part
/// `i` holds the pairs of shard `i`: each shard restores its own part on a thread of its
/// own; pairs of another shard (the count changed) are handed over after.
fn restore_shards(engines: &mut [Engine], mut parts: Vec<checkpoint::Part>) {
    let shards = engines.len();
    // Reserving a whole part is right only when it is all one shard's.
    let same_count = parts.len() == shards;
    let extra = parts.split_off(parts.len().min(shards));
    let strays: Vec<checkpoint::Part> = std::thread::scope(|scope| {
        let threads: Vec<_> = engines
            .iter_mut()
            .zip(parts)
            .enumerate()
            .map(|(shard, (engine, part))| {
                scope.spawn(move || {
                    if same_count {
                        engine.reserve_pairs(part.len());
                    }
                    let mut strays = Vec::new();
                    for (key, state) in part {
                        if shard_of(&key, shards) == shard {
                            engine.restore_pair(key, state);
                        } else {
                            strays.push((key, state));
                        }
                    }
                    strays
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    for (key, state) in strays.into_iter().chain(extra).flatten() {
        engines[shard_of(&key, shards)].restore_pair(key, state);
    }
}

/// Restores the checkpoint, replays the log after it, and starts the threads.
/// Returns when the state is fully restored (the service can then be ready).
pub fn start(
    settings: Settings,
    pack: Arc<RulePack>,
    metrics: Arc<Metrics>,
) -> std::io::Result<(Pipeline, Threads)> {
    let dir = settings.data_dir.clone();
    std::fs::create_dir_all(&dir)?;
    let book = AlertBook::open(&dir)?;
    metrics.recovered(Store::Alerts, book.recovered_bytes());
    let book = Arc::new(RwLock::new(book));
    let (feed, _) = broadcast::channel(FEED_CAPACITY);
    let (writer_tx, writer_rx) =
        sync_channel::<WriterMsg>(settings.shard_queue * settings.shards.max(1));

    // Shards, restored from the checkpoint.
    let started = Instant::now();
    let restored = checkpoint::read(&dir.join("checkpoint"))?;
    let after = restored.as_ref().map_or(0, |r| r.seq);
    let mut engines: Vec<Engine> = (0..settings.shards)
        .map(|_| Engine::new(pack.clone(), settings.engine.clone()))
        .collect();
    if let Some(r) = restored {
        metrics.checkpoint_pairs.set(r.pair_count() as i64);
        restore_shards(&mut engines, r.parts);
    }
    let mut handles = Vec::new();
    let mut senders = Vec::new();
    let depth: Vec<prometheus::IntGauge> = (0..settings.shards)
        .map(|i| metrics.queue_depth.with_label_values(&[&i.to_string()]))
        .collect();
    for (i, engine) in engines.into_iter().enumerate() {
        let (tx, rx) = sync_channel::<ShardMsg>(settings.shard_queue);
        senders.push(tx);
        let writer = writer_tx.clone();
        let metrics = metrics.clone();
        let depth = depth[i].clone();
        handles.push(
            std::thread::Builder::new()
                .name(format!("shard-{i}"))
                .spawn(move || shard_loop(i, engine, rx, writer, metrics, depth))?,
        );
    }
    let shards = Shards { senders, depth };
    let writer_metrics = metrics.clone();
    let writer_book = book.clone();
    let writer_feed = feed.clone();
    let ckpt_dir = dir.join("checkpoint");
    let wal_dir = dir.join("wal");
    let shard_count = settings.shards;
    let truncate_dir = wal_dir.clone();
    handles.push(
        std::thread::Builder::new()
            .name("alert-writer".into())
            .spawn(move || {
                writer_loop(
                    writer_rx,
                    writer_book,
                    writer_feed,
                    writer_metrics,
                    ckpt_dir,
                    truncate_dir,
                    shard_count,
                )
            })?,
    );

    // Replay the log after the checkpoint, synchronously, before serving. The events
    // were judged when they were accepted: the clock rule is not applied again.
    let limits = Limits {
        max_future_skew: None,
        ..settings.limits
    };
    let mut replayed = 0u64;
    let wal = Wal::open(
        &wal_dir,
        settings.segment_bytes,
        settings.fsync,
        after,
        |rec: Record| {
            replayed += 1;
            for (shard, msg) in route_record(&rec, &limits, settings.shards) {
                shards.send(shard, msg);
            }
        },
    )?;
    let recovery = wal.recovery();
    metrics.recovered(Store::Wal, recovery.skipped_bytes + recovery.cut_bytes);
    tracing::info!(
        checkpoint_seq = after,
        replayed,
        voided = recovery.voided,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "state restored"
    );

    let clock_shards = shards.clone();
    let period = settings.deadline_clock;
    // Not joined: it ends by itself once the shards stop.
    std::thread::Builder::new()
        .name("deadline-clock".into())
        .spawn(move || clock_loop(clock_shards, period))?;
    let (commands, command_rx) = mpsc::channel::<Command>(settings.ingest_queue);
    let log_shards = shards.clone();
    let log_writer = writer_tx;
    let log_metrics = metrics.clone();
    handles.push(
        std::thread::Builder::new()
            .name("wal".into())
            .spawn(move || log_loop(wal, command_rx, log_shards, log_writer, log_metrics))?,
    );
    let pipeline = Pipeline {
        commands,
        shards,
        book,
        feed,
        limits: settings.limits,
        max_batch: settings.max_batch,
        metrics,
        pack: Arc::new(Mutex::new(pack)),
    };
    Ok((pipeline, Threads { handles }))
}

/// Rebuilds the shard messages of a logged record (replay after a crash).
fn route_record(rec: &Record, limits: &Limits, shards: usize) -> Vec<(usize, ShardMsg)> {
    match rec.kind {
        Kind::Event => {
            let Ok(pb) = pb::ChatEvent::decode(rec.payload.as_slice()) else {
                return vec![];
            };
            let event = match event_from_proto(pb, limits) {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(
                        seq = rec.seq,
                        reason = e.reason(),
                        "logged event no longer valid; not replayed"
                    );
                    return vec![];
                }
            };
            let shard = shard_of_event(&event, shards);
            vec![(
                shard,
                ShardMsg::Event {
                    event: Box::new(event),
                    received: None,
                },
            )]
        }
        Kind::Forget => {
            let erasure = Erasure::from_payload(&rec.payload);
            (0..shards)
                .map(|s| {
                    (
                        s,
                        ShardMsg::Forget {
                            erasure: erasure.clone(),
                            reply: None,
                        },
                    )
                })
                .collect()
        }
        Kind::Suppress => match serde_json::from_slice::<Suppress>(&rec.payload) {
            Ok(s) => {
                let shard = shard_of(&PairKey::of(&s.tenant, &s.a, &s.b).0, shards);
                vec![(shard, ShardMsg::Suppress(s))]
            }
            Err(_) => vec![],
        },
        Kind::Void | Kind::Probe => vec![],
    }
}

/// The shard queues, with their depth gauges.
#[derive(Clone)]
struct Shards {
    senders: Vec<SyncSender<ShardMsg>>,
    depth: Vec<prometheus::IntGauge>,
}

impl Shards {
    fn len(&self) -> usize {
        self.senders.len()
    }

    /// Sends, waiting while the shard's queue is full (backpressure).
    /// Sends to a shard; false if it has stopped.
    fn send(&self, shard: usize, msg: ShardMsg) -> bool {
        self.depth[shard].inc();
        let sent = self.senders[shard].send(msg).is_ok();
        if !sent {
            self.depth[shard].dec();
        }
        sent
    }

    /// Sends to every shard; false once every shard has stopped.
    fn all(&self, msg: impl Fn() -> ShardMsg) -> bool {
        (0..self.len()).fold(false, |alive, s| self.send(s, msg()) | alive)
    }
}

fn log_loop(
    mut wal: Wal,
    mut rx: mpsc::Receiver<Command>,
    shards: Shards,
    writer: SyncSender<WriterMsg>,
    metrics: Arc<Metrics>,
) {
    let mut group: Vec<Command> = Vec::with_capacity(GROUP_MAX);
    // The last record handed to the shards: a checkpoint is taken there, not at the end
    // of the log, since the rest of its group is routed after the checkpoint marker.
    let mut routed = wal.next_seq() - 1;
    let checkpoint =
        |wal: &mut Wal, seq: u64, done: Option<oneshot::Sender<Result<u64, String>>>| {
            if let Err(e) = wal.seal() {
                metrics.wal_failures.inc();
                tracing::error!(error = %e, "cannot start a new log segment");
            }
            let _ = writer.send(WriterMsg::Expect { seq, done });
            shards.all(|| ShardMsg::Checkpoint { seq });
        };
    let mut running = true;
    while running {
        let Some(first) = rx.blocking_recv() else {
            break;
        };
        group.push(first);
        while group.len() < GROUP_MAX {
            match rx.try_recv() {
                Ok(c) => group.push(c),
                Err(_) => break,
            }
        }
        metrics.ingest_queue_depth.set(rx.len() as i64);
        // One write and one fsync for every record of the group.
        let records: Vec<(Kind, &[u8])> = group
            .iter()
            .filter_map(|c| match c {
                Command::Append { route, payload, .. } => {
                    Some((kind_of(route), payload.as_slice()))
                }
                _ => None,
            })
            .collect();
        let mut seqs = Vec::new().into_iter();
        let mut failed = None;
        if !records.is_empty() {
            let timer = metrics.wal_fsync_seconds.start_timer();
            let appended = wal.append(&records);
            timer.observe_duration();
            // A failed write makes the instance unready until a probe finds room again
            // (a small write that still fits in a page proves little).
            if appended.is_err() {
                metrics.set_storage_failing(Store::Wal, true);
            }
            match appended {
                Ok(s) => seqs = s.into_iter(),
                Err(e) => {
                    metrics.wal_failures.inc();
                    tracing::error!(error = %e, "write-ahead log append failed; its events are refused");
                    failed = Some(format!("write-ahead log unavailable: {e}"));
                }
            }
        }
        for c in group.drain(..) {
            match c {
                // Nothing of a failed group is routed: each event is refused with the reason.
                Command::Append { ack, .. } if failed.is_some() => {
                    if let (Some(ack), Some(reason)) = (ack, &failed) {
                        let _ = ack.send(Err(reason.clone()));
                    }
                }
                Command::Append { route, ack, .. } => {
                    let seq = seqs.next().unwrap_or_default();
                    routed = seq;
                    match route {
                        Route::Event { event, received } => {
                            let shard = shard_of_event(&event, shards.len());
                            shards.send(
                                shard,
                                ShardMsg::Event {
                                    event,
                                    received: Some(received),
                                },
                            );
                            metrics.events_accepted.inc();
                        }
                        Route::Forget { erasure, reply } => {
                            shards.all(|| ShardMsg::Forget {
                                erasure: erasure.clone(),
                                reply: Some(reply.clone()),
                            });
                        }
                        Route::Suppress(sup) => {
                            let shard =
                                shard_of(&PairKey::of(&sup.tenant, &sup.a, &sup.b).0, shards.len());
                            shards.send(shard, ShardMsg::Suppress(sup));
                        }
                    }
                    if let Some(ack) = ack {
                        let _ = ack.send(Ok(seq));
                    }
                }
                Command::Checkpoint { done } => checkpoint(&mut wal, routed, done),
                Command::Reload(pack) => {
                    shards.all(|| ShardMsg::Reload(pack.clone()));
                    checkpoint(&mut wal, routed, None);
                }
                Command::Probe => {
                    let probed = wal.probe();
                    metrics.set_storage_failing(Store::Wal, probed.is_err());
                    if probed.is_ok() {
                        tracing::info!("write-ahead log writable again");
                    }
                }
                Command::Shutdown => running = false,
            }
        }
    }
    // Intake closed: a last checkpoint, then the shards stop once their queues drain.
    checkpoint(&mut wal, routed, None);
    shards.all(|| ShardMsg::Stop);
}

fn kind_of(route: &Route) -> Kind {
    match route {
        Route::Event { .. } => Kind::Event,
        Route::Forget { .. } => Kind::Forget,
        Route::Suppress(_) => Kind::Suppress,
    }
}

fn shard_loop(
    index: usize,
    mut engine: Engine,
    rx: Receiver<ShardMsg>,
    writer: SyncSender<WriterMsg>,
    metrics: Arc<Metrics>,
    depth: prometheus::IntGauge,
) {
    let pairs_gauge = metrics.pairs.with_label_values(&[&index.to_string()]);
    let mut alerts = Vec::new();
    let mut counters = crate::metrics::EngineCounters::default();
    counters.observe(engine.stats(), &metrics);
    let mut n = 0u64;
    while let Ok(msg) = rx.recv() {
        depth.dec();
        match msg {
            ShardMsg::Event {
                event, received, ..
            } => {
                let t = Instant::now();
                engine.process(&event, &mut alerts);
                metrics
                    .processing_seconds
                    .observe(t.elapsed().as_secs_f64());
                metrics.shadow_fired(engine.shadow_fired());
                to_writer(&writer, &mut alerts, received);
                n += 1;
                if n % 256 == 0 {
                    pairs_gauge.set(engine.pairs() as i64);
                }
                counters.observe(engine.stats(), &metrics);
            }
            ShardMsg::Forget { erasure, reply } => {
                let pairs = engine.forget_user(erasure.tenant.as_deref(), &erasure.user);
                let _ = writer.send(WriterMsg::Forget {
                    erasure,
                    pairs,
                    reply,
                });
            }
            ShardMsg::Suppress(s) => {
                engine.suppress(&s.tenant, &s.a, &s.b, s.pattern);
            }
            ShardMsg::Checkpoint { seq } => {
                let bytes = checkpoint::encode_pairs(engine.pairs_iter());
                pairs_gauge.set(engine.pairs() as i64);
                let _ = writer.send(WriterMsg::Part {
                    seq,
                    shard: index,
                    bytes,
                    pairs: engine.pairs(),
                });
            }
            ShardMsg::Pair {
                tenant,
                a,
                b,
                reply,
            } => {
                let _ = reply.send(engine.pair(&tenant, &a, &b).cloned());
            }
            ShardMsg::Reload(pack) => engine.set_pack(pack),
            ShardMsg::Clock(now) => {
                engine.pass_deadlines(now, &mut alerts);
                to_writer(&writer, &mut alerts, None);
            }
            ShardMsg::Stop => break,
        }
    }
}

/// Hands a shard's alerts, in order, to the alert writer.
fn to_writer(writer: &SyncSender<WriterMsg>, alerts: &mut Vec<Alert>, received: Option<Instant>) {
    for a in alerts.drain(..) {
        let _ = writer.send(WriterMsg::Alert {
            alert: Box::new(a),
            received,
        });
    }
}

/// Sends the wall clock to every shard each `period`, until the shards stop. The engine
/// never reads a clock: this thread is its clock.
fn clock_loop(shards: Shards, period: std::time::Duration) {
    loop {
        std::thread::sleep(period);
        let now = crate::detect::time::now_millis();
        if !shards.all(|| ShardMsg::Clock(now)) {
            return;
        }
    }
}

struct Pending {
    parts: Vec<Option<Vec<u8>>>,
    pairs: usize,
    done: Option<oneshot::Sender<Result<u64, String>>>,
    started: Instant,
}

fn writer_loop(
    rx: Receiver<WriterMsg>,
    book: Arc<RwLock<AlertBook>>,
    feed: broadcast::Sender<super::alerts::Logged>,
    metrics: Arc<Metrics>,
    ckpt_dir: PathBuf,
    wal_dir: PathBuf,
    shards: usize,
) {
    let mut pending: HashMap<u64, Pending> = HashMap::new();
    let new_pending = || Pending {
        parts: vec![None; shards],
        pairs: 0,
        done: None,
        started: Instant::now(),
    };
    // Checkpoints whose parts are all in, waiting for their alerts to be durable.
    let mut complete: Vec<u64> = Vec::new();
    let mut received: HashMap<String, Instant> = HashMap::new();
    loop {
        let batch: Vec<WriterMsg> = match rx.recv_timeout(WRITER_RETRY) {
            Ok(first) => std::iter::once(first)
                .chain(rx.try_iter().take(1024))
                .collect(),
            // Nothing new: retry alerts whose write failed, if any.
            Err(RecvTimeoutError::Timeout) => Vec::new(),
            Err(RecvTimeoutError::Disconnected) => break,
        };
        for msg in batch {
            match msg {
                WriterMsg::Alert {
                    alert,
                    received: at,
                } => {
                    if let Some(at) = at.filter(|_| alert.update.is_none()) {
                        received.insert(alert.alert_id.clone(), at);
                    }
                    book.write()
                        .unwrap_or_else(|p| p.into_inner())
                        .queue(*alert);
                }
                WriterMsg::Part {
                    seq,
                    shard,
                    bytes,
                    pairs,
                } => {
                    let p = pending.entry(seq).or_insert_with(new_pending);
                    p.parts[shard] = Some(bytes);
                    p.pairs += pairs;
                    if p.parts.iter().all(Option::is_some) {
                        complete.push(seq);
                    }
                    // Only the newest complete checkpoint waits for the alerts: each
                    // holds a copy of the whole state.
                    if complete.len() > 1 {
                        let newest = complete.len() - 1;
                        for old in complete.drain(..newest) {
                            let done = pending.remove(&old).and_then(|p| p.done);
                            if let Some(done) = done {
                                let _ = done.send(Err(
                                    "superseded by a later checkpoint while alerts wait to be written".into(),
                                ));
                            }
                        }
                    }
                }
                WriterMsg::Forget {
                    erasure,
                    pairs,
                    reply,
                } => {
                    let alerts = match book
                        .write()
                        .unwrap_or_else(|p| p.into_inner())
                        .forget_user(erasure.tenant.as_deref(), &erasure.user)
                    {
                        Ok(n) => n,
                        Err(e) => {
                            tracing::error!(error = %e, "cannot rewrite the alert log to forget a user");
                            0
                        }
                    };
                    if let Some(r) = reply {
                        let _ = r.send((pairs, alerts));
                    }
                }
                WriterMsg::Expect { seq, done } => {
                    pending.entry(seq).or_insert_with(new_pending).done = done
                }
            }
        }
        let durable = write_alerts(&book, &feed, &metrics, &mut received);
        // Alerts before a snapshot are durable before the snapshot is: while the alert
        // log fails, no checkpoint covers their events, so a restart raises them again.
        if !durable {
            continue;
        }
        for seq in complete.drain(..) {
            let Some(p) = pending.remove(&seq) else {
                continue;
            };
            write_checkpoint(p, seq, &ckpt_dir, &wal_dir, &metrics);
        }
    }
}

/// Writes the queued alerts and syncs the log, then hands what was written to the live
/// feed. Returns whether every alert raised so far is durable.
fn write_alerts(
    book: &RwLock<AlertBook>,
    feed: &broadcast::Sender<super::alerts::Logged>,
    metrics: &Metrics,
    received: &mut HashMap<String, Instant>,
) -> bool {
    let mut b = book.write().unwrap_or_else(|p| p.into_inner());
    if b.is_durable() {
        return true;
    }
    let (written, failed) = b.write_pending();
    if let Err(e) = b.sync() {
        // After a failed fsync the kernel may have dropped the written pages while a
        // later fsync succeeds: the lines cannot be trusted. Stop; a restart replays
        // the events since the last checkpoint (none covers these alerts) and writes
        // the alerts that are missing.
        tracing::error!(error = %e, "cannot fsync the alert log; stopping so that a restart raises its alerts again");
        std::process::exit(74);
    }
    metrics.set_storage_failing(Store::Alerts, failed.is_some());
    if let Some(e) = &failed {
        metrics.alert_log_failures.inc();
        tracing::error!(error = %e, "cannot write the alert log; its alerts stay queued and are retried");
    }
    metrics.set_open(b.open_counts());
    let durable = b.is_durable();
    drop(b);
    for logged in written {
        if let Some(u) = &logged.alert.update {
            metrics.update(u.kind);
            tracing::info!(
                alert_id = %logged.alert.alert_id,
                kind = u.kind.as_str(),
                cursor = logged.cursor,
                "alert updated"
            );
            let _ = feed.send(logged);
            continue;
        }
        metrics.alert(&logged.alert);
        if let Some(at) = received.remove(&logged.alert.alert_id) {
            metrics
                .event_to_alert_seconds
                .observe(at.elapsed().as_secs_f64());
        }
        tracing::info!(
            alert_id = %logged.alert.alert_id,
            priority = logged.alert.priority.as_str(),
            pattern = logged.alert.pattern.as_str(),
            cursor = logged.cursor,
            "alert raised"
        );
        let _ = feed.send(logged);
    }
    if durable {
        received.clear();
    }
    durable
}

/// Writes one checkpoint from its shards' parts and truncates the log behind it.
fn write_checkpoint(p: Pending, seq: u64, ckpt_dir: &Path, wal_dir: &Path, metrics: &Metrics) {
    let parts: Vec<Vec<u8>> = p.parts.into_iter().flatten().collect();
    let result = checkpoint::write(ckpt_dir, seq, 0, &parts)
        .and_then(|_| super::wal::truncate(wal_dir, seq))
        .map(|_| seq)
        .map_err(|e| e.to_string());
    metrics
        .checkpoint_seconds
        .observe(p.started.elapsed().as_secs_f64());
    match &result {
        Ok(_) => {
            metrics.checkpoint_pairs.set(p.pairs as i64);
            tracing::info!(seq, pairs = p.pairs, "checkpoint written");
        }
        Err(e) => {
            metrics.checkpoint_failures.inc();
            tracing::error!(seq, error = %e, "checkpoint failed");
        }
    }
    if let Some(done) = p.done {
        let _ = done.send(result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parts written by one shard count, read by another: every pair lands once, in the
    /// shard that owns it.
    #[test]
    fn restored_pairs_land_in_their_shard_whatever_the_shard_count_was() {
        let pack = Arc::new(RulePack::embedded_languages(&["en"]).unwrap());
        let pairs: Vec<(PairKey, PairState)> = (0..1_000)
            .map(|i| {
                let (key, _) = PairKey::of("t", &format!("a{i}"), &format!("b{i}"));
                (key, PairState::new(i * 1_000))
            })
            .collect();
        for (written, read) in [(2, 3), (2, 2), (3, 1), (1, 2)] {
            let mut parts = vec![Vec::new(); written];
            for (key, state) in &pairs {
                parts[shard_of(key, written)].push((*key, state.clone()));
            }
            let mut engines: Vec<Engine> = (0..read)
                .map(|_| Engine::new(pack.clone(), EngineConfig::default()))
                .collect();
            restore_shards(&mut engines, parts);
            let total: usize = engines.iter().map(Engine::pairs).sum();
            assert_eq!(total, pairs.len(), "{written} -> {read}");
            for (shard, engine) in engines.iter().enumerate() {
                assert!(engine.pairs_iter().all(|(k, _)| shard_of(k, read) == shard));
            }
        }
    }
}
