//! `pairwatch serve`: the engine as a service. gRPC ingest and alert streaming, a
//! write-ahead log and checkpoints for durability, Prometheus metrics, health checks.
//! In Kafka mode ([`Backend::Kafka`]) the same gRPC and HTTP front drives the stages of
//! [`crate::kafka`] instead of the local pipeline.
//!
//! - [`pipeline`]: the log thread, the shard threads, the alert writer thread;
//! - [`wal`], [`checkpoint`]: what survives a crash;
//! - [`alerts`]: the alert log, open alerts, decisions, claims (the desk's book);
//! - [`desk`]: the desk's rules: audit lines, claims, ListOpen order and pages;
//! - [`grpc`], [`summary`]: the gRPC services; [`auth`]: tokens, roles, tenant scopes;
//! - [`http`]: metrics and health.

pub mod alerts;
pub mod auth;
pub mod checkpoint;
pub mod desk;
pub mod grpc;
pub mod http;
pub mod pipeline;
pub mod summary;
pub mod wal;

use crate::config::Config;
use crate::detect::engine::EngineConfig;
use crate::detect::event::Limits;
use crate::detect::pack::RulePack;
use crate::metrics::Metrics;
use crate::proto::pb;
use auth::{Role, Tokens};
use grpc::ServiceError;
use pipeline::{Command, Pipeline, Settings};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;

const DESCRIPTOR: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/pairwatch_descriptor.bin"));

/// A running service.
pub struct Running {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Stops intake, drains the queues, checkpoints, flushes; returns when done.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.task.await?
    }

    /// Waits until the service stops (the token given to [`start`] fired).
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await?
    }
}

fn load_pack(dir: &str) -> Result<RulePack, String> {
    if dir.is_empty() {
        RulePack::embedded().map_err(|e| e.to_string())
    } else {
        crate::pack_dir::load(std::path::Path::new(dir)).map_err(|e| e.to_string())
    }
}

/// What the gRPC services drive: the embedded pipeline (local log and alert book), or
/// the Kafka stages (events and alerts on topics).
#[derive(Clone)]
pub enum Backend {
    Local(Pipeline),
    Kafka(Arc<KafkaBackend>),
}

pub struct KafkaBackend {
    pub publisher: crate::kafka::Publisher,
    pub packs: Arc<crate::kafka::detect::PackCell>,
    pub limits: Limits,
    pub max_batch: usize,
    pub metrics: Arc<Metrics>,
    pub desk: Arc<crate::kafka::desk::KafkaDesk>,
    /// Reads pair state back from the changelog, for `GetPair`.
    pub changelog: Arc<std::sync::Mutex<crate::kafka::restore::Restorer>>,
}

impl Backend {
    /// A pair's state: from its shard (embedded), or its last state in the changelog
    /// (Kafka).
    pub async fn pair(
        &self,
        tenant: &str,
        a: &str,
        b: &str,
    ) -> Result<Option<crate::detect::state::PairState>, ServiceError> {
        match self {
            Backend::Local(p) => Ok(p.pair(tenant, a, b).await),
            Backend::Kafka(k) => {
                let key = crate::detect::state::PairKey::of(tenant, a, b).0;
                let reader = k.changelog.clone();
                tokio::task::spawn_blocking(move || {
                    reader.lock().unwrap_or_else(|p| p.into_inner()).find(&key)
                })
                .await
                .map_err(|e| ServiceError::Internal(e.to_string()))?
                .map_err(|e| {
                    ServiceError::Unavailable(format!("reading the pair state changelog: {e}"))
                })
            }
        }
    }

    /// The desk: the alert book and its live feed (embedded: fed by this instance's
    /// detection; Kafka: read back from the alert and decisions topics).
    pub fn desk(
        &self,
    ) -> (
        &Arc<std::sync::RwLock<alerts::AlertBook>>,
        &tokio::sync::broadcast::Sender<alerts::Logged>,
    ) {
        match self {
            Backend::Local(p) => (&p.book, &p.feed),
            Backend::Kafka(k) => (&k.desk.book, &k.desk.feed),
        }
    }

    /// Records a moderator's claim, release or decision: in the audit log (embedded), or
    /// on the decisions topic and read back (Kafka). It then stands in the desk's book,
    /// unless a rival line came first.
    pub async fn record(
        &self,
        line: desk::AuditLine,
        alert: &crate::detect::alert::Alert,
    ) -> Result<(), ServiceError> {
        match self {
            Backend::Local(p) => {
                let book = p.book.clone();
                tokio::task::spawn_blocking(move || {
                    book.write()
                        .unwrap_or_else(|p| p.into_inner())
                        .record(&line)
                })
                .await
                .map_err(|e| ServiceError::Internal(e.to_string()))?
                .map_err(|e| ServiceError::Internal(format!("audit log: {e}")))
            }
            Backend::Kafka(k) => k.desk.record(&line, alert).await,
        }
    }

    /// Hands a false positive to detection: no re-alert for the pair and pattern unless
    /// the priority rises.
    pub async fn suppress(&self, alert: &crate::detect::alert::Alert) -> Result<(), ServiceError> {
        match self {
            Backend::Local(p) => {
                let sup = pipeline::Suppress::of(alert);
                let payload =
                    serde_json::to_vec(&sup).map_err(|e| ServiceError::Internal(e.to_string()))?;
                p.append(pipeline::Route::Suppress(sup), payload)
                    .await
                    .map(|_| ())
            }
            Backend::Kafka(k) => k.desk.suppress(alert).await,
        }
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        match self {
            Backend::Local(p) => &p.metrics,
            Backend::Kafka(k) => &k.metrics,
        }
    }

    pub fn limits(&self) -> &Limits {
        match self {
            Backend::Local(p) => &p.limits,
            Backend::Kafka(k) => &k.limits,
        }
    }

    pub fn max_batch(&self) -> usize {
        match self {
            Backend::Local(p) => p.max_batch,
            Backend::Kafka(k) => k.max_batch,
        }
    }
}

/// Answer to a `ReloadRules` for a directory that is not allowed: the same whether the
/// path exists or not, so that it tells nothing about the server's files.
pub const RULES_DIR_NOT_ALLOWED: &str =
    "rule directory not allowed: give a directory under engine.rules_root";

/// The directory a `ReloadRules` for `requested` may load: empty means the configured
/// one (`rules_dir`); otherwise it must resolve (symlinks and `..` followed) to a
/// directory under `rules_root`, or, with no `rules_root`, to `rules_dir` itself.
pub fn allowed_rules_dir(
    requested: &str,
    rules_dir: &str,
    rules_root: &str,
) -> Result<String, ServiceError> {
    if requested.is_empty() {
        return Ok(rules_dir.to_string());
    }
    let not_allowed = || ServiceError::InvalidArgument(RULES_DIR_NOT_ALLOWED.to_string());
    let real = |p: &str| {
        Some(p)
            .filter(|p| !p.is_empty())
            .and_then(|p| std::fs::canonicalize(p).ok())
    };
    let dir = real(requested)
        .filter(|d| d.is_dir())
        .ok_or_else(not_allowed)?;
    let allowed = match real(rules_root) {
        Some(root) => dir.starts_with(root),
        None => false,
    } || real(rules_dir).is_some_and(|configured| configured == dir);
    if !allowed {
        return Err(not_allowed());
    }
    dir.into_os_string()
        .into_string()
        .map_err(|_| not_allowed())
}

/// Validates the pack in `dir`, then swaps it in on every shard; invalid rules are
/// refused with the reasons and the old ones stay.
pub async fn reload_rules(backend: &Backend, dir: &str) -> Result<String, ServiceError> {
    let metrics = backend.metrics();
    let d = dir.to_string();
    let pack = tokio::task::spawn_blocking(move || load_pack(&d))
        .await
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
    let pack = match pack {
        Ok(p) => Arc::new(p),
        Err(reasons) => {
            metrics.rules_reloads.with_label_values(&["refused"]).inc();
            tracing::warn!("rule reload refused");
            return Err(ServiceError::InvalidArgument(format!(
                "rules refused, the current ones stay:\n{reasons}"
            )));
        }
    };
    let version = pack.version.clone();
    match backend {
        Backend::Local(p) => {
            *p.pack.lock().unwrap_or_else(|e| e.into_inner()) = pack.clone();
            p.commands
                .send(Command::Reload(pack))
                .await
                .map_err(|_| ServiceError::ShuttingDown)?;
        }
        Backend::Kafka(k) => k.packs.set(pack),
    }
    metrics.rules_reloads.with_label_values(&["applied"]).inc();
    metrics.set_rules_version(&version);
    tracing::info!(rules_version = %version, "rules reloaded");
    Ok(version)
}

fn engine_config(c: &Config) -> EngineConfig {
    let zone = |z: &str| jiff::tz::TimeZone::get(z).unwrap_or(jiff::tz::TimeZone::UTC);
    EngineConfig {
        pair_ttl: Config::duration(&c.engine.pair_ttl),
        tenant_time_zones: c
            .engine
            .tenant_time_zones
            .iter()
            .map(|(t, z)| (t.clone(), zone(z)))
            .collect(),
        default_time_zone: zone(&c.engine.time_zone),
        default_language: c.engine.default_language.clone(),
    }
}

/// Sets up logging once per process: text or JSON, never message text; user ids only
/// through [`pseudonym`].
pub fn init_logging(c: &Config) {
    let filter =
        tracing_subscriber::EnvFilter::try_new(&c.log.level).unwrap_or_else(|_| "info".into());
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = if c.log.format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// A keyed hash of a user id for logs: stable for one key, meaningless without it.
pub fn pseudonym(key: &[u8], user_id: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key).expect("any key length");
    mac.update(user_id.as_bytes());
    crate::detect::digest::hex(&mac.finalize().into_bytes()[..8])
}

/// The configured pseudonym key, or a random one for this process.
fn pseudonym_key(c: &Config) -> Vec<u8> {
    if !c.log.pseudonym_key.is_empty() {
        return c.log.pseudonym_key.as_bytes().to_vec();
    }
    random_bytes(32)
}

/// `n` (a multiple of 8) unpredictable bytes: each `RandomState` is seeded from the
/// operating system's randomness. Enough for a log pseudonym key or the log's CRC key.
pub(crate) fn random_bytes(n: usize) -> Vec<u8> {
    use std::hash::{BuildHasher, Hasher};
    (0..n / 8)
        .flat_map(|i| {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_usize(i);
            h.finish().to_le_bytes()
        })
        .collect()
}

/// Replaces the file at `path` with `bytes`, durably and whole: written to a temporary
/// file beside it, fsynced, renamed over it, and the directory fsynced. A crash leaves
/// the old content or the new, never a torn file.
pub(crate) fn replace_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".tmp");
    let tmp = dir.join(name);
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Restores the state, binds the listeners and serves until `shutdown` fires (or
/// [`Running::stop`] is called).
pub async fn start(config: Config, shutdown: CancellationToken) -> anyhow::Result<Running> {
    let metrics = Arc::new(Metrics::new());
    let pack = Arc::new(load_pack(&config.engine.rules_dir).map_err(anyhow::Error::msg)?);
    metrics.set_rules_version(&pack.version);
    let shards = match config.shards.count {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n as usize,
    };
    let limits = Limits {
        max_text_bytes: config.limits.max_text_bytes as usize,
        max_future_skew: Some(Config::duration(&config.limits.max_future_skew)),
        ..Limits::default()
    };
    let ready = Arc::new(AtomicBool::new(false));
    let grpc_listener = tokio::net::TcpListener::bind(&config.server.grpc_addr).await?;
    let http_listener = tokio::net::TcpListener::bind(&config.server.http_addr).await?;
    let (grpc_addr, http_addr) = (grpc_listener.local_addr()?, http_listener.local_addr()?);

    // /healthz answers while the state is restored; /readyz only after (in Kafka mode,
    // also only while the stages consume: see `kafka::health`).
    let kafka_health = config
        .kafka
        .enabled()
        .then(|| Arc::new(crate::kafka::health::Health::new(&metrics)));
    let console = crate::console::Cell::default();
    let http_state = http::HttpState {
        metrics: metrics.clone(),
        ready: ready.clone(),
        kafka: kafka_health.clone(),
        console: console.clone(),
    };
    let http_shutdown = shutdown.clone();
    let http_task = tokio::spawn(async move {
        axum::serve(http_listener, http::router(http_state))
            .with_graceful_shutdown(http_shutdown.cancelled_owned())
            .await
    });

    let (backend, stages) =
        start_backend(&config, shards, limits, pack, &metrics, kafka_health).await?;
    match &backend {
        Backend::Local(p) => crate::sinks::start(&config, &p.book, &p.feed, &metrics, &shutdown)?,
        Backend::Kafka(_) if config.desk.role == "desk" => {}
        Backend::Kafka(_) => crate::sinks::from_topics::start(&config, &metrics, &shutdown).await?,
    }

    let tokens = Tokens::new(&config.auth, metrics.clone()).map_err(anyhow::Error::msg)?;
    if !tokens.enabled() {
        tracing::warn!("no auth token configured: every RPC is allowed (fine on loopback only)");
    }
    let (health, health_service) = tonic_health::server::health_reporter();
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(DESCRIPTOR)
        .build_v1()?;
    let max_msg = config.limits.max_message_bytes as usize;
    let intake_wait =
        Duration::from_millis(Config::duration(&config.shards.ingest_queue_wait) as u64);
    let ingest = grpc::IngestServiceServer::new(grpc::Ingest::new(backend.clone(), intake_wait))
        .max_decoding_message_size(max_msg);
    let desk = Arc::new(grpc::Alerts::new(
        backend.clone(),
        shutdown.clone(),
        config.limits.max_subscribers.max(1) as usize,
        config.limits.subscriber_buffer.max(1) as usize,
        Config::duration(&config.desk.claim_lease),
    ));
    let _ = console.set(Arc::new(crate::console::Console {
        alerts: desk.clone(),
        backend: backend.clone(),
        tokens: tokens.clone(),
        sessions: crate::console::session::Sessions::new(Duration::from_millis(Config::duration(
            &config.desk.session_ttl,
        ) as u64)),
        open_without_tokens: crate::console::session::is_loopback(&config.server.http_addr),
        shutdown: shutdown.clone(),
    }));
    let alerts = pb::alert_service_server::AlertServiceServer::from_arc(desk);
    let admin = pb::admin_service_server::AdminServiceServer::new(grpc::Admin {
        backend: backend.clone(),
        rules_dir: config.engine.rules_dir.clone(),
        rules_root: config.engine.rules_root.clone(),
        pseudonym_key: pseudonym_key(&config),
        erase_timeout: Duration::from_millis(Config::duration(&config.desk.erase_timeout) as u64),
    });
    let mut builder = tonic::transport::Server::builder();
    if !config.tls.cert.is_empty() {
        let identity = tonic::transport::Identity::from_pem(
            std::fs::read(&config.tls.cert)?,
            std::fs::read(&config.tls.key)?,
        );
        let mut tls = tonic::transport::ServerTlsConfig::new().identity(identity);
        if !config.tls.client_ca.is_empty() {
            tls = tls.client_ca_root(tonic::transport::Certificate::from_pem(std::fs::read(
                &config.tls.client_ca,
            )?));
        }
        builder = builder.tls_config(tls)?;
    }
    let router = builder
        .add_service(health_service)
        .add_service(reflection)
        .add_service(InterceptedService::new(
            ingest,
            tokens.require(&[Role::Ingest]),
        ))
        .add_service(InterceptedService::new(
            alerts,
            tokens.require(&[Role::Moderator]),
        ))
        .add_service(InterceptedService::new(
            admin,
            tokens.require(&[Role::Admin]),
        ));
    health
        .set_serving::<grpc::IngestServiceServer<grpc::Ingest>>()
        .await;
    health
        .set_serving::<pb::alert_service_server::AlertServiceServer<grpc::Alerts>>()
        .await;
    health
        .set_serving::<pb::admin_service_server::AdminServiceServer<grpc::Admin>>()
        .await;
    ready.store(true, Ordering::Release);
    tracing::info!(%grpc_addr, %http_addr, shards, "serving");

    let grace = Duration::from_millis(Config::duration(&config.server.shutdown_grace) as u64);
    let interval =
        Duration::from_millis(Config::duration(&config.durability.checkpoint_interval) as u64);
    let rules_dir = config.engine.rules_dir.clone();
    let token = shutdown.clone();
    let task = tokio::spawn(async move {
        // No Nagle delay: acks and alerts are small messages that must leave at once.
        let incoming = tokio_stream::StreamExt::map(
            tokio_stream::wrappers::TcpListenerStream::new(grpc_listener),
            |s| {
                if let Ok(s) = &s {
                    let _ = s.set_nodelay(true);
                }
                s
            },
        );
        let stop = token.clone();
        let mut grpc_task =
            tokio::spawn(router.serve_with_incoming_shutdown(incoming, stop.cancelled_owned()));
        let mut grpc_done = false;
        let mut ticker = tokio::time::interval(interval);
        ticker.tick().await;
        let mut health_tick = tokio::time::interval(Duration::from_secs(1));
        let mut failure = None;
        let mut hangup = signal_stream(tokio::signal::unix::SignalKind::hangup());
        loop {
            tokio::select! {
                _ = token.cancelled() => break,
                _ = ticker.tick() => {
                    if let Backend::Local(p) = &backend {
                        if let Err(e) = p.checkpoint().await {
                            tracing::error!(error = %e, "periodic checkpoint failed");
                        }
                    }
                }
                _ = health_tick.tick() => {
                    if let Backend::Local(p) = &backend {
                        // Unready after a failed write: probe the log so that readiness
                        // comes back with the space, even with no client sending.
                        if p.metrics.storage_failing(crate::metrics::Store::Wal) {
                            let _ = p.commands.try_send(Command::Probe);
                        }
                    }
                    if let Stages::Kafka(h) = &stages {
                        if !h.healthy() || h.health.fatal().is_some() {
                            failure = Some(match h.health.fatal() {
                                Some(f) => format!("a kafka stage stopped: {f}"),
                                None => "a kafka stage stopped".to_string(),
                            });
                            break;
                        }
                    }
                }
                _ = hangup.recv() => {
                    if let Err(e) = reload_rules(&backend, &rules_dir).await {
                        tracing::error!(error = %e, "SIGHUP rule reload refused");
                    }
                }
                r = &mut grpc_task, if !grpc_done => {
                    r??;
                    grpc_done = true;
                    break;
                }
            }
        }
        // Stop intake, then drain: the last checkpoint is taken when the log thread sees
        // intake closed, and the threads stop when their queues are empty. (After a
        // failure the token is not cancelled yet: the gRPC server stops on it.)
        token.cancel();
        ready.store(false, Ordering::Release);
        health
            .set_not_serving::<grpc::IngestServiceServer<grpc::Ingest>>()
            .await;
        if !grpc_done && tokio::time::timeout(grace, &mut grpc_task).await.is_err() {
            tracing::warn!("gRPC connections still open after the grace period; closing");
            grpc_task.abort();
        }
        if let Backend::Local(p) = &backend {
            let _ = p.commands.send(Command::Shutdown).await;
        }
        drop(backend);
        let stages_fatal = match &stages {
            Stages::Kafka(h) => h.health.fatal(),
            Stages::Local(_) => None,
        };
        // A thread of its own, not the runtime's blocking pool: a stage stuck past the
        // grace period (a broker that takes nothing) must not hold the process, whose
        // runtime would wait for its blocking tasks on the way out.
        let (done, joined) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("stop-stages".into())
            .spawn(move || {
                let _ = done.send(stages.stop());
            })?;
        // Topics that changed under the stages: nothing left worth waiting for.
        let wait = match &stages_fatal {
            Some(_) => grace.min(Duration::from_secs(5)),
            None => grace,
        };
        let stopped = match tokio::time::timeout(wait, joined).await {
            Err(_) => match failure {
                Some(f) => {
                    anyhow::bail!("{f} (and shutdown did not finish within the grace period)")
                }
                None => anyhow::bail!("shutdown did not finish within the grace period"),
            },
            Ok(r) => r.map_err(|_| anyhow::anyhow!("the stages stopped without a result"))?,
        };
        let _ = http_task.await;
        stopped?;
        if let Some(f) = failure {
            anyhow::bail!("{f}");
        }
        tracing::info!("stopped");
        Ok(())
    });
    Ok(Running {
        grpc_addr,
        http_addr,
        shutdown,
        task,
    })
}

/// The threads behind a backend, stopped at shutdown.
enum Stages {
    Local(pipeline::Threads),
    Kafka(crate::kafka::Handle),
}

impl Stages {
    fn stop(self) -> anyhow::Result<()> {
        match self {
            Stages::Local(t) => {
                t.join();
                Ok(())
            }
            Stages::Kafka(h) => h.stop(),
        }
    }
}

/// Restores the state (embedded mode) or joins the consumer group (Kafka mode).
async fn start_backend(
    config: &Config,
    shards: usize,
    limits: Limits,
    pack: Arc<RulePack>,
    metrics: &Arc<Metrics>,
    kafka_health: Option<Arc<crate::kafka::health::Health>>,
) -> anyhow::Result<(Backend, Stages)> {
    let max_batch = config.limits.max_batch_events as usize;
    let engine = engine_config(config);
    if config.kafka.enabled() {
        crate::kafka::prepare_topics(&config.kafka).await?;
        let (c, m) = (config.clone(), metrics.clone());
        let health = kafka_health.unwrap_or_default();
        let handle = tokio::task::spawn_blocking(move || {
            crate::kafka::start(&c, engine, limits, pack, m, health)
        })
        .await??;
        let backend = Backend::Kafka(Arc::new(KafkaBackend {
            publisher: handle.publisher.clone(),
            packs: handle.packs.clone(),
            limits,
            max_batch,
            metrics: metrics.clone(),
            desk: handle.desk.clone(),
            changelog: Arc::new(std::sync::Mutex::new(crate::kafka::restore::Restorer::new(
                &crate::kafka::client_config(&config.kafka),
                &format!("{}.lookup", config.kafka.group_id),
                &config.kafka.changelog(),
                config.data_dir().join("kafka"),
                Duration::from_millis(Config::duration(&config.kafka.restore_timeout) as u64),
            )?)),
        }));
        tracing::info!(brokers = %config.kafka.brokers, "kafka mode");
        return Ok((backend, Stages::Kafka(handle)));
    }
    let settings = Settings {
        data_dir: config.data_dir(),
        shards,
        shard_queue: config.shards.queue_capacity as usize,
        ingest_queue: config.shards.ingest_queue_capacity as usize,
        segment_bytes: config.durability.wal_segment_bytes as u64,
        fsync: config.durability.fsync,
        limits,
        max_batch,
        engine,
        deadline_clock: std::time::Duration::from_millis(
            Config::duration(&config.engine.deadline_clock).max(1) as u64,
        ),
    };
    let m = metrics.clone();
    let (pipeline, threads) =
        tokio::task::spawn_blocking(move || pipeline::start(settings, pack, m)).await??;
    Ok((Backend::Local(pipeline), Stages::Local(threads)))
}

fn signal_stream(kind: tokio::signal::unix::SignalKind) -> tokio::signal::unix::Signal {
    tokio::signal::unix::signal(kind).expect("signal handler")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_are_stable_per_key_and_hide_the_id() {
        let a = pseudonym(b"key-1", "u-981");
        assert_eq!(a, pseudonym(b"key-1", "u-981"));
        assert_ne!(a, pseudonym(b"key-2", "u-981"));
        assert_ne!(a, pseudonym(b"key-1", "u-982"));
        assert_eq!(a.len(), 16);
        assert!(!a.contains("981"));
    }

    #[test]
    fn without_a_rules_root_only_the_configured_rule_directory_may_be_reloaded() {
        let base = std::env::temp_dir().join(format!("pw-rules-dir-{}", std::process::id()));
        let (configured, other) = (base.join("configured"), base.join("other"));
        std::fs::create_dir_all(&configured).unwrap();
        std::fs::create_dir_all(&other).unwrap();
        let conf = configured.display().to_string();
        let refused = |r: Result<String, ServiceError>| match r {
            Err(ServiceError::InvalidArgument(m)) => m == RULES_DIR_NOT_ALLOWED,
            _ => false,
        };
        assert_eq!(allowed_rules_dir("", &conf, "").unwrap(), conf);
        let same = format!("{}/../configured/.", configured.display());
        assert_eq!(
            allowed_rules_dir(&same, &conf, "").unwrap(),
            std::fs::canonicalize(&configured)
                .unwrap()
                .display()
                .to_string()
        );
        assert!(refused(allowed_rules_dir(
            &other.display().to_string(),
            &conf,
            ""
        )));
        assert!(refused(allowed_rules_dir("/no/such/dir", &conf, "")));
        // The embedded pack: only the empty request.
        assert_eq!(allowed_rules_dir("", "", "").unwrap(), "");
        assert!(refused(allowed_rules_dir(&conf, "", "")));
        let _ = std::fs::remove_dir_all(base);
    }
}
