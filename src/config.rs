//! Service configuration: built-in defaults, then a TOML file (`--config`), then
//! `PAIRWATCH__SECTION__KEY` environment variables. Unknown keys are rejected and every
//! problem is reported at once. `pairwatch config show` prints the effective values with
//! secrets masked.

use crate::detect::time::parse_duration;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use toml::{Table, Value};

pub const ENV_PREFIX: &str = "PAIRWATCH__";
/// Tables whose keys are the user's own (not checked against the defaults).
const FREE_TABLES: [&str; 2] = ["engine.tenant_time_zones", "kafka.client"];
/// librdkafka properties that hold secrets, masked by `config show`.
const SECRET_CLIENT_KEYS: [&str; 6] = [
    "sasl.password",
    "ssl.key.password",
    "ssl.key.pem",
    "ssl.keystore.password",
    "sasl.oauthbearer.client.secret",
    "sasl.oauthbearer.config",
];
const MASK: &str = "********";

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: Server,
    pub engine: Engine,
    pub limits: Limits,
    pub shards: Shards,
    pub durability: Durability,
    pub auth: Auth,
    pub tls: Tls,
    pub log: Log,
    pub desk: Desk,
    pub sinks: Sinks,
    pub kafka: Kafka,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Server {
    pub grpc_addr: String,
    pub http_addr: String,
    pub data_dir: String,
    /// How long SIGTERM may take: stop intake, drain, checkpoint, flush.
    pub shutdown_grace: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Engine {
    /// Rule pack directory; empty for the pack built into the binary.
    pub rules_dir: String,
    /// `ReloadRules` loads only directories under this one; empty: only `rules_dir`.
    pub rules_root: String,
    pub pair_ttl: String,
    /// How often `serve` passes standing alerts' deadlines on the wall clock.
    pub deadline_clock: String,
    pub time_zone: String,
    pub tenant_time_zones: BTreeMap<String, String>,
    pub default_language: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub max_text_bytes: i64,
    pub max_batch_events: i64,
    /// Largest gRPC message accepted, in bytes.
    pub max_message_bytes: i64,
    /// How far ahead of the server's clock an event's `sent_at` may be before it is
    /// rejected (`sent_at_in_future`); a bad clock must not move event time for everyone.
    pub max_future_skew: String,
    /// Live `Subscribe` streams at once; one more is refused with RESOURCE_EXHAUSTED.
    pub max_subscribers: i64,
    /// Alerts buffered per subscriber; one that falls further behind is disconnected
    /// with RESOURCE_EXHAUSTED and the cursor to resume from.
    pub subscriber_buffer: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Shards {
    /// Worker threads owning the pair state; 0 means one per core.
    pub count: i64,
    /// Events queued per shard before ingest waits.
    pub queue_capacity: i64,
    /// Events waiting for the write-ahead log before ingest answers RESOURCE_EXHAUSTED.
    pub ingest_queue_capacity: i64,
    /// How long an event may wait for room in that queue before RESOURCE_EXHAUSTED.
    pub ingest_queue_wait: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Durability {
    /// fsync the write-ahead log before acknowledging (off only for tests and benchmarks).
    pub fsync: bool,
    pub checkpoint_interval: String,
    pub wal_segment_bytes: i64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    /// Bearer tokens per role, each for every tenant (shorthand for `tokens` entries with
    /// `tenants = ["*"]`). With no token at all, authentication is off (local use).
    pub ingest_tokens: Vec<String>,
    pub moderator_tokens: Vec<String>,
    pub admin_tokens: Vec<String>,
    /// Tokens with a name, a role and the tenants they may act on.
    pub tokens: Vec<TokenGrant>,
}

/// Roles a token can have.
pub const ROLES: [&str; 3] = ["ingest", "moderator", "admin"];

/// One `[[auth.tokens]]` entry.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TokenGrant {
    /// Named in logs of denied calls instead of the token (default `auth.tokens[i]`).
    pub name: String,
    /// The secret itself, or
    pub token: String,
    /// a file holding it (a mounted Secret); read at start, surrounding whitespace trimmed.
    pub token_file: String,
    /// `ingest`, `moderator` or `admin`.
    pub role: String,
    /// Tenants the token may act on; `["*"]` for every tenant.
    pub tenants: Vec<String>,
}

/// A secret given inline (`key`) or in a file (`key_file`: a mounted Secret, read now,
/// surrounding whitespace trimmed): exactly one of the two.
fn inline_or_file(key: &str, inline: &str, file: &str) -> Result<String, String> {
    match (inline.is_empty(), file.is_empty()) {
        (false, true) => Ok(inline.to_string()),
        (true, false) => std::fs::read_to_string(file)
            .map(|t| t.trim().to_string())
            .map_err(|e| format!("cannot read {key}_file {file:?}: {e}")),
        _ => Err(format!("give exactly one of `{key}` and `{key}_file`")),
    }
}

impl TokenGrant {
    /// The secret: `token`, or the content of `token_file`.
    pub fn secret(&self) -> Result<String, String> {
        inline_or_file("token", &self.token, &self.token_file)
    }
}

impl Auth {
    /// Every token as a grant: the named entries, then the per-role lists (every tenant).
    pub fn grants(&self) -> Vec<TokenGrant> {
        let mut out: Vec<TokenGrant> = self
            .tokens
            .iter()
            .enumerate()
            .map(|(i, g)| TokenGrant {
                name: match g.name.as_str() {
                    "" => format!("auth.tokens[{i}]"),
                    n => n.to_string(),
                },
                ..g.clone()
            })
            .collect();
        for (list, role) in [
            (&self.ingest_tokens, "ingest"),
            (&self.moderator_tokens, "moderator"),
            (&self.admin_tokens, "admin"),
        ] {
            out.extend(list.iter().enumerate().map(|(i, t)| TokenGrant {
                name: format!("auth.{role}_tokens[{i}]"),
                token: t.clone(),
                token_file: String::new(),
                role: role.to_string(),
                tenants: vec!["*".to_string()],
            }));
        }
        out
    }

    /// Problems with the tokens, one line each.
    fn problems(&self) -> Vec<String> {
        let mut errors = Vec::new();
        let mut names = std::collections::BTreeSet::new();
        for g in self.grants() {
            let at = format!("`{}`", g.name);
            match g.secret() {
                Ok(t) if t.len() < 16 => {
                    errors.push(format!("{at}: every token needs at least 16 characters"))
                }
                Ok(_) => {}
                Err(e) => errors.push(format!("{at}: {e}")),
            }
            if !ROLES.contains(&g.role.as_str()) {
                errors.push(format!(
                    "{at}: role {:?} is not one of {}",
                    g.role,
                    ROLES.join(", ")
                ));
            }
            if g.tenants.is_empty() {
                errors.push(format!(
                    "{at}: list the tenants it may act on, or [\"*\"] for every tenant"
                ));
            }
            if g.tenants
                .iter()
                .any(|t| t.trim().is_empty() || t.contains('\0'))
            {
                errors.push(format!("{at}: a tenant cannot be empty or hold a NUL"));
            }
            if g.tenants.len() > 1 && g.tenants.iter().any(|t| t == "*") {
                errors.push(format!("{at}: \"*\" stands alone in `tenants`"));
            }
            if !names.insert(g.name.clone()) {
                errors.push(format!("{at}: two tokens have this name"));
            }
        }
        errors
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// PEM files; empty for plaintext. `client_ca` turns on mutual TLS.
    pub cert: String,
    pub key: String,
    pub client_ca: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Log {
    /// `text` or `json`.
    pub format: String,
    pub level: String,
    /// Key of the hash that pseudonymises user ids in logs; a random one per process when empty.
    pub pseudonym_key: String,
}

/// The moderators' desk: open alerts, claims, decisions.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Desk {
    /// How long a moderator's claim on an alert lasts unless renewed.
    pub claim_lease: String,
    /// `all`: detection and the desk; `desk`: the desk alone (Kafka mode), no detection.
    pub role: String,
    /// How long `ForgetUser` waits, in Kafka mode, for every partition's owner and the
    /// desk to confirm; it then answers with what is still pending.
    pub erase_timeout: String,
    /// How long a console session lasts after its login.
    pub session_ttl: String,
}

/// Where alerts go besides the alert log, the gRPC feed and (Kafka mode) the topics.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct Sinks {
    /// HTTP destinations each alert is POSTed to, signed.
    pub webhooks: Vec<Webhook>,
}

/// Most webhook destinations (metric labels carry their index).
pub const MAX_WEBHOOKS: usize = 16;

/// One `[[sinks.webhooks]]` destination.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Webhook {
    /// `https://...`; plain `http://` only to a loopback address.
    pub url: String,
    /// The HMAC-SHA256 key of the `pairwatch-signature` header, or
    pub secret: String,
    /// a file holding it (read at start, surrounding whitespace trimmed).
    pub secret_file: String,
    /// Only alerts of this priority or more urgent.
    pub min_priority: String,
    /// Only alerts of these tenants (`["*"]`: every tenant).
    pub tenants: Vec<String>,
    /// How long one attempt may take.
    pub timeout: String,
    /// How long an alert is retried before it goes to the dead letters.
    pub max_age: String,
    /// A PEM file of the CA that signs the destination's certificate (empty: the
    /// system's roots).
    pub ca_file: String,
}

impl Default for Webhook {
    fn default() -> Self {
        Webhook {
            url: String::new(),
            secret: String::new(),
            secret_file: String::new(),
            min_priority: "P3".into(),
            tenants: Vec::new(),
            timeout: "10s".into(),
            max_age: "1h".into(),
            ca_file: String::new(),
        }
    }
}

impl Webhook {
    /// The signing secret: `secret`, or the content of `secret_file`.
    pub fn signing_secret(&self) -> Result<String, String> {
        inline_or_file("secret", &self.secret, &self.secret_file)
    }

    /// Problems with this destination, each prefixed with `at`.
    fn problems(&self, at: &str) -> Vec<String> {
        let mut errors = Vec::new();
        match self.signing_secret() {
            Ok(s) if s.len() < 16 => {
                errors.push(format!("{at}: the secret needs at least 16 characters"))
            }
            Ok(_) => {}
            Err(e) => errors.push(format!("{at}: {e}")),
        }
        if let Err(e) = webhook_target(&self.url) {
            errors.push(format!("{at}: {e}"));
        }
        if crate::detect::rules::Priority::parse(&self.min_priority).is_none() {
            errors.push(format!(
                "{at}: min_priority {:?} is not P0..P3",
                self.min_priority
            ));
        }
        if self.tenants.is_empty() {
            errors.push(format!(
                "{at}: list the tenants whose alerts it receives, or [\"*\"] for every tenant"
            ));
        }
        for (key, v) in [("timeout", &self.timeout), ("max_age", &self.max_age)] {
            if parse_duration(v).is_none_or(|d| d <= 0) {
                errors.push(format!("{at}: {key} {v:?} is not a duration like 10s, 1h"));
            }
        }
        errors
    }
}

/// Whether a host name (no port, no brackets) is this machine's loopback.
pub fn loopback_name(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `[v6]:port`, `[v6]`, `host:port` or `host` as the host and the port, if any; `None`
/// for an unclosed `[`.
pub fn split_authority(authority: &str) -> Option<(&str, Option<&str>)> {
    Some(match authority.strip_prefix('[') {
        Some(v6) => {
            let (h, after) = v6.split_once(']')?;
            (h, after.strip_prefix(':'))
        }
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    })
}

/// A webhook URL's scheme, host and port, checked: https, or http to loopback only.
pub fn webhook_target(url: &str) -> Result<(bool, String, u16), String> {
    let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(format!("url {url:?} is not http(s)://host[:port]/path"));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') {
        return Err(format!("url {url:?} has no host (or holds credentials)"));
    }
    let default_port = if https { 443 } else { 80 };
    let (host, port) =
        split_authority(authority).ok_or_else(|| format!("url {url:?}: unclosed `[`"))?;
    let port = match port {
        None => default_port,
        Some(p) => p
            .parse()
            .map_err(|_| format!("url {url:?}: {p:?} is not a port"))?,
    };
    if !https && !loopback_name(host) {
        return Err(format!(
            "url {url:?}: plain http is allowed only to a loopback address; use https"
        ));
    }
    Ok((https, host.to_string(), port))
}

/// Kafka mode (on when `brokers` is set): events from a topic, alerts to a topic.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Kafka {
    /// Bootstrap servers, `host:port,...`; empty keeps the embedded (gRPC + local log) mode.
    pub brokers: String,
    pub group_id: String,
    pub events_topic: String,
    /// `json` (the contract) or `protobuf` (`pairwatch.v1.ChatEvent`); a record's
    /// `content-type` header overrides it.
    pub events_format: String,
    /// Producers key events by pair (`tenant/min/max`). When false, a re-keying stage
    /// copies the events topic into `rekeyed_topic`, keyed by pair, first.
    pub keyed_by_pair: bool,
    /// Empty: `<events_topic>.by-pair`.
    pub rekeyed_topic: String,
    pub alerts_topic: String,
    /// The desk's record of claims, releases and decisions (keyed by pair).
    pub decisions_topic: String,
    /// The alert topics are compacted (`cleanup.policy=compact`): `ForgetUser` writes a
    /// tombstone per erased alert key, and compaction removes those alerts.
    pub alerts_topic_compacted: bool,
    /// Alerts also split by priority: `<alerts_topic>.p0` ... `.p3` instead of one topic.
    pub alerts_topic_per_priority: bool,
    pub dlq_topic: String,
    /// Largest input record (key, value and headers) a dead letter carries whole, and
    /// the most a dead letter of a larger one carries (a prefix, with the value's size
    /// and SHA-256); larger input records are dead letters `record_too_large`. 0: the
    /// producer's `message.max.bytes` (`kafka.client`, else librdkafka's 1000000) less
    /// 64 KiB for the dead letter's own headers; a value above that is lowered to it.
    pub dlq_max_value_bytes: i64,
    /// Compacted topic of pair state; empty: `<group_id>.pair-state`.
    pub changelog_topic: String,
    /// `at_least_once` (deterministic alert ids make duplicates recognisable) or
    /// `exactly_once` (alerts, state and offsets in one transaction per batch).
    pub processing_guarantee: String,
    /// Stable per instance for exactly-once; empty: `<group_id>-<HOSTNAME>`.
    pub transactional_id: String,
    /// Static group membership (`group.instance.id`): a member that restarts within the
    /// session timeout gets its partitions back without a rebalance. `auto`: the pod
    /// name (`POD_NAME`, else `HOSTNAME`; off when neither is set); empty: off; else the
    /// id itself, unique within the group and stable across restarts.
    pub instance_id: String,
    /// Create missing topics at start-up (needs the CreateTopics permission).
    pub create_topics: bool,
    pub topic_partitions: i64,
    pub topic_replication: i64,
    /// Records per processing batch (one transaction or one offset commit) at most;
    /// 0: by guarantee (see [`Kafka::batch`]).
    pub max_batch: i64,
    /// How long a batch may wait to fill up; `auto`: by guarantee.
    pub batch_linger: String,
    /// Threads detecting in parallel, partitions split between them; 0: one per core.
    pub detect_threads: i64,
    /// Longest time a partition's state restore may take before the instance gives up.
    pub restore_timeout: String,
    /// librdkafka properties passed through as they are (security.protocol, sasl.*, ssl.*).
    pub client: BTreeMap<String, String>,
}

impl Default for Kafka {
    fn default() -> Self {
        Kafka {
            brokers: String::new(),
            group_id: "pairwatch".into(),
            events_topic: "pairwatch.events".into(),
            events_format: "json".into(),
            keyed_by_pair: true,
            rekeyed_topic: String::new(),
            alerts_topic: "pairwatch.alerts".into(),
            decisions_topic: "pairwatch.decisions".into(),
            alerts_topic_compacted: false,
            alerts_topic_per_priority: false,
            dlq_topic: "pairwatch.events.dlq".into(),
            dlq_max_value_bytes: 0,
            changelog_topic: String::new(),
            processing_guarantee: "at_least_once".into(),
            transactional_id: String::new(),
            instance_id: "auto".into(),
            create_topics: false,
            topic_partitions: 12,
            topic_replication: 3,
            max_batch: 0,
            batch_linger: "auto".into(),
            detect_threads: 0,
            restore_timeout: "300s".into(),
            client: BTreeMap::new(),
        }
    }
}

impl Kafka {
    pub fn enabled(&self) -> bool {
        !self.brokers.trim().is_empty()
    }

    pub fn exactly_once(&self) -> bool {
        self.processing_guarantee == "exactly_once"
    }

    /// Records and time per batch of a stage, as configured or by guarantee. A
    /// transaction holds its alerts back until it commits, so exactly-once batches are
    /// short (10,000 records, 100 ms). At-least-once alerts leave as they are raised: a
    /// batch of the detection stage (`stateful`) is only an offset commit and one state
    /// record per pair it touched, so its batches are long (1 s, 500,000 records at
    /// most), which writes a busy pair's state once instead of once per short batch. The
    /// re-keying stage has no state: long batches would only make it copy more records
    /// twice after a crash, so its batches stay short.
    pub fn batch(&self, stateful: bool) -> (usize, std::time::Duration) {
        let (records, ms) = if self.exactly_once() || !stateful {
            (10_000, 100)
        } else {
            (500_000, 1_000)
        };
        let records = match self.max_batch {
            0 => records,
            n => n as usize,
        };
        let ms = match self.batch_linger.as_str() {
            "auto" => ms,
            v => Config::duration(v) as u64,
        };
        (records, std::time::Duration::from_millis(ms))
    }

    /// Threads for the detection stage.
    pub fn detect_threads(&self) -> usize {
        match self.detect_threads {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n as usize,
        }
    }

    /// The effective `dlq_max_value_bytes`: what the producer takes (`message.max.bytes`
    /// from `kafka.client`, else librdkafka's default 1000000) less room for the dead
    /// letter's own headers and the record's framing (64 KiB, or half of a smaller
    /// producer limit), or the configured value if smaller.
    pub fn dead_letter_limit(&self) -> usize {
        let producer_max = self
            .client
            .get("message.max.bytes")
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(1_000_000);
        let derived = producer_max - (64 * 1024).min(producer_max / 2);
        match self.dlq_max_value_bytes {
            n if n > 0 => (n as usize).min(derived),
            _ => derived,
        }
    }

    /// The topic the processing stage consumes: the events topic, or its re-keyed copy.
    pub fn input_topic(&self) -> String {
        if self.keyed_by_pair {
            self.events_topic.clone()
        } else if self.rekeyed_topic.is_empty() {
            format!("{}.by-pair", self.events_topic)
        } else {
            self.rekeyed_topic.clone()
        }
    }

    pub fn changelog(&self) -> String {
        if self.changelog_topic.is_empty() {
            format!("{}.pair-state", self.group_id)
        } else {
            self.changelog_topic.clone()
        }
    }

    /// The consumers' `group.instance.id`, if static membership is on (see
    /// [`Kafka::instance_id`]).
    pub fn group_instance_id(&self) -> Option<String> {
        self.group_instance_id_from(|k| std::env::var(k).ok())
    }

    fn group_instance_id_from(&self, env: impl Fn(&str) -> Option<String>) -> Option<String> {
        let id = match self.instance_id.trim() {
            "auto" => ["POD_NAME", "HOSTNAME"].iter().find_map(|k| {
                env(k)
                    .map(|v| v.trim().to_string())
                    .filter(|v| !v.is_empty())
            })?,
            v => v.to_string(),
        };
        (!id.is_empty()).then_some(id)
    }

    pub fn transactional_id(&self) -> String {
        if self.transactional_id.is_empty() {
            // The pod name under Kubernetes; the kernel's host name otherwise.
            let host = std::env::var("HOSTNAME")
                .ok()
                .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "local".into());
            format!("{}-{host}", self.group_id)
        } else {
            self.transactional_id.clone()
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server: Server {
                grpc_addr: "127.0.0.1:50051".into(),
                http_addr: "127.0.0.1:9464".into(),
                data_dir: "./data".into(),
                shutdown_grace: "30s".into(),
            },
            engine: Engine {
                rules_dir: String::new(),
                rules_root: String::new(),
                pair_ttl: "30d".into(),
                deadline_clock: "2s".into(),
                time_zone: "UTC".into(),
                tenant_time_zones: BTreeMap::new(),
                default_language: "en".into(),
            },
            limits: Limits {
                max_text_bytes: 8192,
                max_batch_events: 1000,
                max_message_bytes: 4 << 20,
                max_future_skew: "10m".into(),
                max_subscribers: 256,
                subscriber_buffer: 1024,
            },
            shards: Shards {
                count: 0,
                queue_capacity: 4096,
                ingest_queue_capacity: 16384,
                ingest_queue_wait: "2s".into(),
            },
            durability: Durability {
                fsync: true,
                checkpoint_interval: "60s".into(),
                wal_segment_bytes: 64 << 20,
            },
            auth: Auth {
                ingest_tokens: vec![],
                moderator_tokens: vec![],
                admin_tokens: vec![],
                tokens: vec![],
            },
            tls: Tls {
                cert: String::new(),
                key: String::new(),
                client_ca: String::new(),
            },
            log: Log {
                format: "text".into(),
                level: "info".into(),
                pseudonym_key: String::new(),
            },
            desk: Desk {
                claim_lease: "10m".into(),
                role: "all".into(),
                erase_timeout: "60s".into(),
                session_ttl: "8h".into(),
            },
            sinks: Sinks::default(),
            kafka: Kafka::default(),
        }
    }
}

/// Every problem found, one per line.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n{}", .0.join("\n"))]
pub struct ConfigErrors(pub Vec<String>);

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a number",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a date",
        Value::Array(_) => "a list",
        Value::Table(_) => "a table",
    }
}

/// Merges `over` into `base`, checking every key exists in `base` with the same type.
fn merge(base: &mut Table, over: Table, origin: &str, path: &str, errors: &mut Vec<String>) {
    for (k, v) in over {
        let at = if path.is_empty() {
            k.clone()
        } else {
            format!("{path}.{k}")
        };
        match base.get_mut(&k) {
            None => errors.push(format!("{origin}: unknown key `{at}`")),
            Some(Value::Table(b)) if FREE_TABLES.contains(&at.as_str()) => match v {
                Value::Table(t) => *b = t,
                other => errors.push(format!(
                    "{origin}: `{at}` must be a table, not {}",
                    type_name(&other)
                )),
            },
            Some(Value::Table(b)) => match v {
                Value::Table(t) => merge(b, t, origin, &at, errors),
                other => errors.push(format!(
                    "{origin}: `{at}` must be a table, not {}",
                    type_name(&other)
                )),
            },
            Some(slot) => {
                if std::mem::discriminant(slot) == std::mem::discriminant(&v) {
                    *slot = v;
                } else {
                    errors.push(format!(
                        "{origin}: `{at}` must be {}, not {}",
                        type_name(slot),
                        type_name(&v)
                    ));
                }
            }
        }
    }
}

/// Turns an environment value into the type of the default it overrides.
fn env_value(like: &Value, raw: &str) -> Result<Value, String> {
    let list = || raw.split(',').map(str::trim).filter(|s| !s.is_empty());
    match like {
        Value::String(_) => Ok(Value::String(raw.to_string())),
        Value::Integer(_) => raw
            .trim()
            .parse()
            .map(Value::Integer)
            .map_err(|_| format!("{raw:?} is not an integer")),
        Value::Boolean(_) => match raw.trim() {
            "true" | "1" => Ok(Value::Boolean(true)),
            "false" | "0" => Ok(Value::Boolean(false)),
            _ => Err(format!("{raw:?} is not a boolean (true/false)")),
        },
        Value::Array(_) => Ok(Value::Array(
            list().map(|s| Value::String(s.into())).collect(),
        )),
        Value::Table(_) => {
            let mut t = Table::new();
            for item in list() {
                let (k, v) = item
                    .split_once('=')
                    .ok_or(format!("{item:?} is not KEY=VALUE"))?;
                t.insert(k.trim().to_string(), Value::String(v.trim().to_string()));
            }
            Ok(Value::Table(t))
        }
        other => Err(format!(
            "cannot be set from the environment ({})",
            type_name(other)
        )),
    }
}

impl Config {
    /// Defaults, then `file` if given, then the environment (`vars`).
    pub fn load(
        file: Option<&std::path::Path>,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigErrors> {
        let mut errors = Vec::new();
        let Value::Table(mut table) =
            Value::try_from(Config::default()).expect("defaults serialise")
        else {
            unreachable!("a struct serialises to a table")
        };
        if let Some(path) = file {
            let origin = path.display().to_string();
            match std::fs::read_to_string(path) {
                Ok(src) => match src.parse::<Table>() {
                    Ok(over) => merge(&mut table, over, &origin, "", &mut errors),
                    Err(e) => errors.push(format!("{origin}: {}", e.to_string().trim())),
                },
                Err(e) => errors.push(format!("{origin}: cannot read: {e}")),
            }
        }
        let mut vars: Vec<(String, String)> = vars
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect();
        vars.sort();
        for (name, raw) in vars {
            let rest = name[ENV_PREFIX.len()..].to_ascii_lowercase();
            let Some((section, key)) = rest.split_once("__") else {
                errors.push(format!(
                    "environment: {name} is not {ENV_PREFIX}SECTION__KEY"
                ));
                continue;
            };
            let Some(Value::Table(sec)) = table.get_mut(section) else {
                errors.push(format!("environment: {name}: unknown section `{section}`"));
                continue;
            };
            match sec.get(key) {
                None => errors.push(format!(
                    "environment: {name}: unknown key `{section}.{key}`"
                )),
                Some(like) => match env_value(like, &raw) {
                    Ok(v) => {
                        sec.insert(key.to_string(), v);
                    }
                    Err(m) => errors.push(format!("environment: {name}: {m}")),
                },
            }
        }
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        let config: Config = Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigErrors(vec![e.to_string()]))?;
        config.validate()?;
        Ok(config)
    }

    /// Semantic checks, all reported together.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut errors = Vec::new();
        for (key, v) in [
            ("server.grpc_addr", &self.server.grpc_addr),
            ("server.http_addr", &self.server.http_addr),
        ] {
            if v.parse::<SocketAddr>().is_err() {
                errors.push(format!(
                    "`{key}`: {v:?} is not an address like 127.0.0.1:50051"
                ));
            }
        }
        for (key, v) in [
            ("server.shutdown_grace", &self.server.shutdown_grace),
            ("desk.claim_lease", &self.desk.claim_lease),
            ("desk.erase_timeout", &self.desk.erase_timeout),
            ("desk.session_ttl", &self.desk.session_ttl),
            ("kafka.restore_timeout", &self.kafka.restore_timeout),
            ("engine.pair_ttl", &self.engine.pair_ttl),
            ("engine.deadline_clock", &self.engine.deadline_clock),
            ("limits.max_future_skew", &self.limits.max_future_skew),
            ("shards.ingest_queue_wait", &self.shards.ingest_queue_wait),
            (
                "durability.checkpoint_interval",
                &self.durability.checkpoint_interval,
            ),
        ] {
            if parse_duration(v).is_none_or(|d| d <= 0) {
                errors.push(format!(
                    "`{key}`: {v:?} is not a duration like 30s, 5m, 24h, 30d"
                ));
            }
        }
        if self.sinks.webhooks.len() > MAX_WEBHOOKS {
            errors.push(format!(
                "`sinks.webhooks`: at most {MAX_WEBHOOKS} destinations"
            ));
        }
        for (i, w) in self.sinks.webhooks.iter().enumerate() {
            errors.extend(w.problems(&format!("`sinks.webhooks[{i}]`")));
            // The saved position (embedded) and the consumer group (Kafka) are named
            // after the URL: two destinations with one URL would share them.
            if let Some(j) = self.sinks.webhooks[..i].iter().position(|o| o.url == w.url) {
                errors.push(format!(
                    "`sinks.webhooks[{i}]`: the same url as `sinks.webhooks[{j}]`; \
                     one destination per url (give it several tenants instead)"
                ));
            }
        }

        match self.desk.role.as_str() {
            "all" => {}
            "desk" if self.kafka.enabled() => {}
            "desk" => errors.push(
                "`desk.role`: \"desk\" (the desk alone) needs Kafka mode (`kafka.brokers`): \
                 in embedded mode the desk is fed by this instance's own detection"
                    .to_string(),
            ),
            other => errors.push(format!(
                "`desk.role`: {other:?} is neither \"all\" nor \"desk\""
            )),
        }
        let linger = &self.kafka.batch_linger;
        if linger != "auto" && parse_duration(linger).is_none_or(|d| d <= 0) {
            errors.push(format!(
                "`kafka.batch_linger`: {linger:?} is neither `auto` nor a duration like 100ms, 1s"
            ));
        }
        let zones = std::iter::once(("engine.time_zone".to_string(), &self.engine.time_zone))
            .chain(
                self.engine
                    .tenant_time_zones
                    .iter()
                    .map(|(t, z)| (format!("engine.tenant_time_zones.{t}"), z)),
            );
        for (key, zone) in zones {
            if jiff::tz::TimeZone::get(zone).is_err() {
                errors.push(format!("`{key}`: unknown time zone {zone:?}"));
            }
        }
        for (key, v, min) in [
            ("limits.max_text_bytes", self.limits.max_text_bytes, 1),
            ("limits.max_batch_events", self.limits.max_batch_events, 1),
            (
                "limits.max_message_bytes",
                self.limits.max_message_bytes,
                1024,
            ),
            ("limits.max_subscribers", self.limits.max_subscribers, 1),
            (
                "limits.subscriber_buffer",
                self.limits.subscriber_buffer,
                16,
            ),
            ("shards.count", self.shards.count, 0),
            ("shards.queue_capacity", self.shards.queue_capacity, 1),
            (
                "shards.ingest_queue_capacity",
                self.shards.ingest_queue_capacity,
                1,
            ),
            (
                "durability.wal_segment_bytes",
                self.durability.wal_segment_bytes,
                4096,
            ),
            ("kafka.topic_partitions", self.kafka.topic_partitions, 1),
            ("kafka.topic_replication", self.kafka.topic_replication, 1),
            ("kafka.max_batch", self.kafka.max_batch, 0),
            ("kafka.detect_threads", self.kafka.detect_threads, 0),
            (
                "kafka.dlq_max_value_bytes",
                self.kafka.dlq_max_value_bytes,
                0,
            ),
        ] {
            if v < min {
                errors.push(format!("`{key}`: {v} is below the minimum {min}"));
            }
        }
        if !["text", "json"].contains(&self.log.format.as_str()) {
            errors.push(format!(
                "`log.format`: {:?} is not `text` or `json`",
                self.log.format
            ));
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            errors.push(format!(
                "`log.level`: {:?} is not a level or filter (info, debug, pairwatch=debug)",
                self.log.level
            ));
        }
        if !["json", "protobuf"].contains(&self.kafka.events_format.as_str()) {
            errors.push(format!(
                "`kafka.events_format`: {:?} is not `json` or `protobuf`",
                self.kafka.events_format
            ));
        }
        if !["at_least_once", "exactly_once"].contains(&self.kafka.processing_guarantee.as_str()) {
            errors.push(format!(
                "`kafka.processing_guarantee`: {:?} is not `at_least_once` or `exactly_once`",
                self.kafka.processing_guarantee
            ));
        }
        if self.kafka.enabled() {
            let k = &self.kafka;
            let topics = [
                ("kafka.group_id", k.group_id.clone()),
                ("kafka.events_topic", k.events_topic.clone()),
                ("kafka.alerts_topic", k.alerts_topic.clone()),
                ("kafka.dlq_topic", k.dlq_topic.clone()),
            ];
            for (key, v) in &topics {
                if v.trim().is_empty() {
                    errors.push(format!("`{key}` cannot be empty in Kafka mode"));
                }
            }
            let mut names = vec![
                k.events_topic.clone(),
                k.alerts_topic.clone(),
                k.dlq_topic.clone(),
                k.changelog(),
            ];
            if !k.keyed_by_pair {
                names.push(k.input_topic());
            }
            let mut unique = names.clone();
            unique.sort();
            unique.dedup();
            if unique.len() != names.len() {
                errors.push(format!(
                    "kafka topics must all differ (events, alerts, dead letters, state, re-keyed): {}",
                    names.join(", ")
                ));
            }
        }
        if self.tls.cert.is_empty() != self.tls.key.is_empty() {
            errors.push("`tls.cert` and `tls.key` go together".to_string());
        }
        if !self.tls.client_ca.is_empty() && self.tls.cert.is_empty() {
            errors.push("`tls.client_ca` (mutual TLS) needs `tls.cert` and `tls.key`".to_string());
        }
        errors.extend(self.auth.problems());
        if !self.engine.rules_dir.is_empty()
            && !std::path::Path::new(&self.engine.rules_dir).is_dir()
        {
            errors.push(format!(
                "`engine.rules_dir`: {:?} is not a directory",
                self.engine.rules_dir
            ));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// The effective configuration as TOML, secrets masked.
    pub fn show(&self) -> String {
        let mut c = self.clone();
        for tokens in [
            &mut c.auth.ingest_tokens,
            &mut c.auth.moderator_tokens,
            &mut c.auth.admin_tokens,
        ] {
            tokens.iter_mut().for_each(|t| *t = MASK.to_string());
        }
        for g in c.auth.tokens.iter_mut().filter(|g| !g.token.is_empty()) {
            g.token = MASK.to_string();
        }
        for w in c.sinks.webhooks.iter_mut().filter(|w| !w.secret.is_empty()) {
            w.secret = MASK.to_string();
        }
        if !c.log.pseudonym_key.is_empty() {
            c.log.pseudonym_key = MASK.to_string();
        }
        for (k, v) in c.kafka.client.iter_mut() {
            if SECRET_CLIENT_KEYS.contains(&k.as_str()) {
                *v = MASK.to_string();
            }
        }
        toml::to_string(&c).unwrap_or_default()
    }

    pub fn data_dir(&self) -> PathBuf {
        PathBuf::from(&self.server.data_dir)
    }

    /// A validated duration field, in milliseconds.
    pub fn duration(v: &str) -> crate::detect::time::Millis {
        parse_duration(v).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_valid_and_the_embedded_default() {
        let c = Config::load(None, env(&[])).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.server.grpc_addr, "127.0.0.1:50051");
        assert_eq!(c.server.http_addr, "127.0.0.1:9464");
    }

    #[test]
    fn scoped_tokens_from_the_file_and_from_token_files_are_masked_when_shown() {
        let dir = std::env::temp_dir().join(format!("pw-config-tokens-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let secret = dir.join("eu-moderators");
        std::fs::write(&secret, "eu-moderator-secret-0123\n").unwrap();
        let file = dir.join("c.toml");
        std::fs::write(
            &file,
            format!(
                r#"
[auth]
admin_tokens = ["root-admin-secret-012345"]

[[auth.tokens]]
name = "eu-moderators"
token_file = {secret:?}
role = "moderator"
tenants = ["game-eu"]

[[auth.tokens]]
token = "us-ingest-secret-0123456"
role = "ingest"
tenants = ["game-us"]

[[sinks.webhooks]]
url = "https://review.example.org/hook"
secret = "webhook-signing-secret-01"
tenants = ["game-eu"]
"#
            ),
        )
        .unwrap();
        let c = Config::load(Some(&file), env(&[])).unwrap();
        let grants = c.auth.grants();
        assert_eq!(grants.len(), 3);
        assert_eq!(grants[0].secret().unwrap(), "eu-moderator-secret-0123");
        assert_eq!(grants[1].name, "auth.tokens[1]");
        assert_eq!(grants[2].name, "auth.admin_tokens[0]");
        assert_eq!(grants[2].tenants, ["*"]);
        let shown = c.show();
        for secret in [
            "eu-moderator-secret",
            "us-ingest-secret",
            "root-admin-secret",
            "webhook-signing-secret",
        ] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("eu-moderators") && shown.contains("game-eu"));

        // Every mistake is named with the token's name, never its secret.
        std::fs::write(
            &file,
            format!(
                r#"
[[auth.tokens]]
name = "both"
token = "a-token-long-enough-0123"
token_file = {secret:?}
role = "moderator"
tenants = ["x"]

[[auth.tokens]]
name = "gone"
token_file = "/nonexistent/pairwatch-token"
role = "ingest"
tenants = ["x"]

[[auth.tokens]]
name = "odd"
token = "short"
role = "owner"
tenants = []

[[auth.tokens]]
name = "odd"
token = "another-token-0123456789"
role = "admin"
tenants = ["*", "x"]
"#
            ),
        )
        .unwrap();
        let err = Config::load(Some(&file), env(&[])).unwrap_err().to_string();
        for part in [
            "`both`: give exactly one of `token` and `token_file`",
            "`gone`: cannot read token_file",
            "`odd`: every token needs at least 16 characters",
            "`odd`: role \"owner\" is not one of ingest, moderator, admin",
            "`odd`: list the tenants it may act on",
            "`odd`: \"*\" stands alone",
            "`odd`: two tokens have this name",
        ] {
            assert!(err.contains(part), "{part} in {err}");
        }
        assert!(!err.contains("another-token"), "{err}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn two_webhook_destinations_cannot_share_a_url() {
        let hook = |tenant: &str| Webhook {
            url: "https://review.example.org/hook".into(),
            secret: "webhook-signing-secret-01".into(),
            tenants: vec![tenant.into()],
            ..Webhook::default()
        };
        let mut c = Config::default();
        c.sinks.webhooks = vec![hook("game-eu"), hook("game-us")];
        let err = c.validate().unwrap_err().to_string();
        assert!(
            err.contains("`sinks.webhooks[1]`: the same url as `sinks.webhooks[0]`"),
            "{err}"
        );
        c.sinks.webhooks.pop();
        assert!(c.validate().is_ok());
    }

    #[test]
    fn webhook_urls_are_https_or_loopback_http() {
        assert_eq!(
            webhook_target("https://review.example.org/hook").unwrap(),
            (true, "review.example.org".into(), 443)
        );
        assert_eq!(
            webhook_target("http://127.0.0.1:8080/x").unwrap(),
            (false, "127.0.0.1".into(), 8080)
        );
        assert_eq!(webhook_target("http://[::1]/x").unwrap().2, 80);
        assert!(webhook_target("http://localhost:9/x").is_ok());
        for bad in [
            "http://review.example.org/hook",
            "http://10.0.0.5/hook",
            "ftp://x/y",
            "https://user:pw@x/y",
            "https://x:port/y",
            "https:///y",
        ] {
            assert!(webhook_target(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn file_then_environment() {
        let dir = std::env::temp_dir().join(format!("pw-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(
            &file,
            "[server]\ngrpc_addr = \"0.0.0.0:6000\"\n[shards]\ncount = 3\n",
        )
        .unwrap();
        let c = Config::load(
            Some(&file),
            env(&[
                ("PAIRWATCH__SHARDS__COUNT", "5"),
                (
                    "PAIRWATCH__AUTH__ADMIN_TOKENS",
                    "aaaaaaaaaaaaaaaa, bbbbbbbbbbbbbbbb",
                ),
                (
                    "PAIRWATCH__ENGINE__TENANT_TIME_ZONES",
                    "game-eu=Europe/Paris",
                ),
                ("HOME", "/root"),
            ]),
        )
        .unwrap();
        assert_eq!(c.server.grpc_addr, "0.0.0.0:6000");
        assert_eq!(c.shards.count, 5);
        assert_eq!(c.auth.admin_tokens.len(), 2);
        assert_eq!(c.engine.tenant_time_zones["game-eu"], "Europe/Paris");
        let shown = c.show();
        assert!(
            !shown.contains("aaaaaaaaaaaaaaaa") && shown.contains(MASK),
            "{shown}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let dir = std::env::temp_dir().join(format!("pw-config-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(
            &file,
            "[server]\ngrpc_adr = \"x\"\n[shards]\ncount = \"many\"\n[nope]\nx = 1\n",
        )
        .unwrap();
        let err = Config::load(
            Some(&file),
            env(&[
                ("PAIRWATCH__SHARDS__QUEUE_CAPACITY", "lots"),
                ("PAIRWATCH__LOG__COLOUR", "red"),
                ("PAIRWATCH__X", "1"),
            ]),
        )
        .unwrap_err();
        let text = err.to_string();
        for expected in [
            "unknown key `server.grpc_adr`",
            "`shards.count` must be an integer, not a string",
            "unknown key `nope`",
            "PAIRWATCH__SHARDS__QUEUE_CAPACITY: \"lots\" is not an integer",
            "PAIRWATCH__LOG__COLOUR: unknown key `log.colour`",
            "PAIRWATCH__X is not PAIRWATCH__SECTION__KEY",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
        let err = Config::load(
            None,
            env(&[
                ("PAIRWATCH__SERVER__GRPC_ADDR", "localhost"),
                ("PAIRWATCH__ENGINE__PAIR_TTL", "forever"),
                ("PAIRWATCH__ENGINE__TIME_ZONE", "Mars/Olympus"),
                ("PAIRWATCH__AUTH__INGEST_TOKENS", "short"),
                ("PAIRWATCH__TLS__CERT", "cert.pem"),
            ]),
        )
        .unwrap_err();
        assert_eq!(err.0.len(), 5, "{err}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn kafka_batches_follow_the_guarantee_unless_set() {
        use std::time::Duration;
        let k = |vars: &[(&str, &str)]| Config::load(None, env(vars)).unwrap().kafka;
        assert_eq!(k(&[]).batch(true), (500_000, Duration::from_secs(1)));
        assert_eq!(k(&[]).batch(false), (10_000, Duration::from_millis(100)));
        let eos = ("PAIRWATCH__KAFKA__PROCESSING_GUARANTEE", "exactly_once");
        assert_eq!(k(&[eos]).batch(true), (10_000, Duration::from_millis(100)));
        let set = k(&[
            eos,
            ("PAIRWATCH__KAFKA__MAX_BATCH", "500"),
            ("PAIRWATCH__KAFKA__BATCH_LINGER", "20ms"),
        ]);
        assert_eq!(set.batch(true), (500, Duration::from_millis(20)));
        assert_eq!(set.batch(false), (500, Duration::from_millis(20)));
        assert_eq!(
            k(&[("PAIRWATCH__KAFKA__DETECT_THREADS", "3")]).detect_threads(),
            3
        );
        assert!(k(&[]).detect_threads() >= 1);
        let err = Config::load(
            None,
            env(&[
                ("PAIRWATCH__KAFKA__BATCH_LINGER", "soon"),
                ("PAIRWATCH__KAFKA__DETECT_THREADS", "-1"),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("`kafka.batch_linger`: \"soon\" is neither `auto`"),
            "{err}"
        );
        assert!(
            err.contains("`kafka.detect_threads`: -1 is below the minimum 0"),
            "{err}"
        );
    }

    #[test]
    fn the_group_instance_id_comes_from_the_pod_name_unless_set() {
        let mut k = Kafka::default();
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |key: &str| {
                vars.iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(k.group_instance_id_from(env(&[])), None);
        assert_eq!(
            k.group_instance_id_from(env(&[("HOSTNAME", "pairwatch-1")])),
            Some("pairwatch-1".into())
        );
        assert_eq!(
            k.group_instance_id_from(env(&[("HOSTNAME", "h"), ("POD_NAME", "pairwatch-2")])),
            Some("pairwatch-2".into())
        );
        k.instance_id = "edge-a".into();
        assert_eq!(
            k.group_instance_id_from(env(&[("POD_NAME", "p")])),
            Some("edge-a".into())
        );
        k.instance_id = String::new();
        assert_eq!(k.group_instance_id_from(env(&[("POD_NAME", "p")])), None);
    }

    #[test]
    fn the_dead_letter_limit_follows_the_producer_limit() {
        let k = |vars: &[(&str, &str)]| Config::load(None, env(vars)).unwrap().kafka;
        assert_eq!(k(&[]).dead_letter_limit(), 1_000_000 - 65_536);
        let bigger = ("PAIRWATCH__KAFKA__CLIENT", "message.max.bytes=4000000");
        assert_eq!(k(&[bigger]).dead_letter_limit(), 4_000_000 - 65_536);
        let small = ("PAIRWATCH__KAFKA__CLIENT", "message.max.bytes=20000");
        assert_eq!(k(&[small]).dead_letter_limit(), 10_000);
        let set = ("PAIRWATCH__KAFKA__DLQ_MAX_VALUE_BYTES", "65536");
        assert_eq!(k(&[set]).dead_letter_limit(), 65_536);
        // Never above what the producer takes.
        assert_eq!(k(&[set, small]).dead_letter_limit(), 10_000);
        let err = Config::load(
            None,
            env(&[("PAIRWATCH__KAFKA__DLQ_MAX_VALUE_BYTES", "-1")]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("`kafka.dlq_max_value_bytes`: -1 is below"),
            "{err}"
        );
    }
}
