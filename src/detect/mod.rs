//! The detection core: pure, synchronous, no I/O. Events in, alerts out.
//!
//! In data-flow order:
//! - [`event`]: the event contract (JSON), validation with precise reasons.
//! - [`time`]: event time (milliseconds), RFC 3339, durations.
//! - [`normalize`]: text normalisation with an offset map back to the original.
//! - [`signal`]: the signal categories and facts.
//! - [`classifier`]: the platform's classifier results (nudity, hash matches, text
//!   labels) read as signals by the pack's thresholds.
//! - [`lexicon`]: phrase lexicons and slot grammars compiled into one automaton; one pass
//!   per message.
//! - [`grammar`]: slots (small word classes per language) combined into signals.
//! - [`deadline`]: countdowns and clock times read into an absolute deadline.
//! - [`state`]: per-pair state, bounded, with event-time expiry ([`state_past`]: the
//!   forms earlier versions stored, read back on restore).
//! - [`rules`]: escalation rules and priority caps, evaluated per pair.
//! - [`flag`]: the helpline red flags an alert carries.
//! - [`notice`]: victim safety notices per language.
//! - [`error`]: the one error type of a rule pack, with file and line.
//! - [`pack`]: rule packs (lexicons + rules + notices) built and validated together.
//! - [`alert`]: the alert contract and how an alert is built.
//! - [`digest`]: hex of digests.
//! - [`engine`]: `Engine::process`, tying the above together.
//!
//! Nothing here imports tokio, tonic, rdkafka or prometheus, or touches files: the
//! shells (`server`, `kafka`, the command-line tools) do.

pub mod alert;
pub mod classifier;
pub mod deadline;
pub mod digest;
pub mod engine;
pub mod error;
pub mod event;
pub mod flag;
pub mod grammar;
pub mod lexicon;
pub mod normalize;
pub mod notice;
pub mod pack;
pub mod rules;
pub mod signal;
pub mod state;
pub mod state_past;
pub mod time;
