//! pairwatch: real-time detection of grooming and sextortion escalation between pairs
//! of users in chat streams.
//!
//! Modules, in data-flow order:
//! - [`detect`]: the pure detection core (event contract, normalisation, lexicons and
//!   slot grammars, the platform's classifier results, deadlines, pair state, rules and
//!   shadow rules, red flags, notices, alerts and their updates, the engine). No I/O.
//! - [`proto`]: the protobuf contract (`proto/pairwatch/v1`), conversions to and from events and alerts.
//! - [`pack_dir`]: reading a rule pack directory from disk.
//! - [`config`]: service configuration (defaults, file, environment).
//! - [`metrics`]: every Prometheus metric, in one place.
//! - [`server`]: `pairwatch serve`: gRPC (tokens scoped to tenants), write-ahead log,
//!   checkpoints, shards, HTTP, and the moderators' desk (open alerts, claims,
//!   decisions, the audit log).
//! - [`kafka`]: Kafka mode of `serve`: consumer group, detection threads, alerts and
//!   dead letters out, state changelog, rebalances, exactly-once transactions, the desk
//!   read back from the alert and decisions topics, erasure across the group.
//! - [`console`]: the moderators' web console at `/desk` (queue, alert view, claims,
//!   decisions, evidence packages), served by the HTTP port.
//! - [`sinks`]: webhook destinations: signed POSTs of alerts, retried, dead-lettered,
//!   each from its saved place in the alert log (embedded mode).
//! - Tools: [`replay`] (`pairwatch replay`, events JSONL in, alerts JSONL out), [`eval`]
//!   (`pairwatch eval`, backtesting on labelled history and comparing two rule packs), [`client`] (`pairwatch publish`
//!   / `subscribe` / `claim` / `resolve`, a gRPC client), [`workload`] (a deterministic synthetic chat stream),
//!   [`bench`] (`pairwatch bench`, the load generator, and `bench scaling`: how cost grows,
//!   drawn as a PNG chart).

pub mod bench;
pub mod client;
pub mod config;
pub mod console;
pub mod detect;
pub mod eval;
pub mod kafka;
pub mod metrics;
pub mod pack_dir;
pub mod proto;
pub mod replay;
pub mod server;
pub mod sinks;
pub mod workload;
