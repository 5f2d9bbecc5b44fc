//! `pairwatch replay`: events JSONL in, alerts JSONL out, a summary at the end. A bad
//! line is reported with its number and reason, counted and skipped, or fatal with
//! `strict`.

use crate::alert::Alert;
use crate::engine::Engine;
use crate::event::{Event, EventError, Limits};
use std::io::{BufRead, Write};

/// What a replay did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub lines: u64,
    pub events: u64,
    pub rejected: u64,
    pub alerts: u64,
    pub alerts_by_priority: [u64; 4],
    pub pairs: usize,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [p0, p1, p2, p3] = self.alerts_by_priority;
        write!(
            f,
            "replay: {} events, {} rejected, {} alerts (P0 {p0}, P1 {p1}, P2 {p2}, P3 {p3}), {} pairs tracked",
            self.events, self.rejected, self.alerts, self.pairs
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("line {line}: {source}")]
    BadLine { line: u64, source: EventError },
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// Replays `input` through `engine`. `on_alert` sees each alert (the caller writes it);
/// `on_reject` sees each bad line with its number.
pub fn replay<R: BufRead>(
    input: R,
    engine: &mut Engine,
    limits: &Limits,
    strict: bool,
    mut on_alert: impl FnMut(&Alert) -> std::io::Result<()>,
    mut on_reject: impl FnMut(u64, &EventError),
) -> Result<Summary, ReplayError> {
    let mut summary = Summary::default();
    let mut alerts = Vec::new();
    for line in input.lines() {
        let line = line?;
        summary.lines += 1;
        if line.trim().is_empty() {
            continue;
        }
        let event = match Event::from_json(&line, limits) {
            Ok(e) => e,
            Err(e) if strict => {
                return Err(ReplayError::BadLine {
                    line: summary.lines,
                    source: e,
                })
            }
            Err(e) => {
                summary.rejected += 1;
                on_reject(summary.lines, &e);
                continue;
            }
        };
        summary.events += 1;
        alerts.clear();
        engine.process(&event, &mut alerts);
        for a in &alerts {
            summary.alerts += 1;
            summary.alerts_by_priority[a.priority as usize] += 1;
            on_alert(a)?;
        }
    }
    summary.pairs = engine.pairs();
    Ok(summary)
}

/// Writes alerts as JSON lines.
pub fn write_alert<W: Write>(out: &mut W, a: &Alert) -> std::io::Result<()> {
    out.write_all(a.to_json().as_bytes())?;
    out.write_all(b"\n")
}
