//! pairwatch: real-time detection of grooming and sextortion escalation between pairs
//! of users in chat streams.
//!
//! Modules, in data-flow order:
//! - [`event`]: the event contract (JSON), validation with precise reasons.
//! - [`proto`]: the protobuf contract (`proto/pairwatch/v1`), conversions to and from events and alerts.
//! - [`time`]: event time (milliseconds), RFC 3339, durations.
//! - [`normalize`]: text normalisation with an offset map back to the original.
//! - [`signal`]: the signal categories and facts.
//! - [`lexicon`]: phrase lexicons compiled into one automaton; one pass per message.
//! - [`deadline`]: countdowns and clock times read into an absolute deadline.
//! - [`state`]: per-pair state, bounded, with event-time expiry.
//! - [`rules`]: escalation rules and priority caps, evaluated per pair.
//! - [`notice`]: victim safety notices per language.
//! - [`pack`]: rule packs (lexicons + rules + notices) loaded and validated together.
//! - [`alert`]: the alert contract and how an alert is built.
//! - [`engine`]: `Engine::process`, the pure synchronous core tying the above together.
//! - [`replay`]: `pairwatch replay`, events JSONL in, alerts JSONL out.
//! - [`eval`]: `pairwatch eval`, backtesting on labelled history.
//! - [`config`]: service configuration (defaults, file, environment).
//! - [`metrics`]: every Prometheus metric, in one place.
//! - [`server`]: `pairwatch serve`: gRPC, write-ahead log, checkpoints, shards, HTTP.
//! - [`kafka`]: Kafka mode of `serve`: consumer group, detection threads, alerts and
//!   dead letters out, state changelog, rebalances, exactly-once transactions.
//! - [`client`]: `pairwatch publish` / `pairwatch subscribe`, a gRPC client.
//! - [`workload`]: a deterministic synthetic chat stream for benchmarks and load tests.
//! - [`bench`]: `pairwatch bench`, the load generator (engine, gRPC, memory).

pub mod alert;
pub mod bench;
pub mod client;
pub mod config;
pub mod deadline;
pub mod engine;
pub mod eval;
pub mod event;
pub mod kafka;
pub mod lexicon;
pub mod metrics;
pub mod normalize;
pub mod notice;
pub mod pack;
pub mod proto;
pub mod replay;
pub mod rules;
pub mod server;
pub mod signal;
pub mod state;
pub mod time;
pub mod workload;
