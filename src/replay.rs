//! `pairwatch replay`: events JSONL in, alerts JSONL out, a summary at the end. A bad
//! line is reported with its number and reason, counted and skipped, or fatal with
//! `strict`. Lines are read as bytes with a bounded buffer ([`LineReader`]): a line that
//! is not UTF-8 or is over `--max-line-bytes` is a bad line like any other.

use crate::detect::alert::Alert;
use crate::detect::engine::Engine;
use crate::detect::event::{Event, EventError, Limits};
use std::io::{BufRead, Write};

/// What a replay did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub lines: u64,
    pub events: u64,
    pub rejected: u64,
    pub alerts: u64,
    pub alerts_by_priority: [u64; 4],
    /// Updates of standing alerts (same alert id, a red flag changed).
    pub updates: u64,
    pub pairs: usize,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [p0, p1, p2, p3] = self.alerts_by_priority;
        write!(
            f,
            "replay: {} events, {} rejected, {} alerts (P0 {p0}, P1 {p1}, P2 {p2}, P3 {p3}), {} updates, {} pairs tracked",
            self.events, self.rejected, self.alerts, self.updates, self.pairs
        )
    }
}

/// Default of `--max-line-bytes`: 1 MiB.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// Why a line of a JSONL input is not an event.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LineError {
    #[error("line is not valid UTF-8 (invalid byte at offset {0})")]
    NotUtf8(usize),
    #[error("line is {len} bytes, over the limit of {max} (--max-line-bytes)")]
    TooLong { len: u64, max: usize },
    #[error("{0}")]
    Event(#[from] EventError),
}

/// Reads a JSONL input line by line, as bytes, holding at most `max` bytes of a line:
/// the rest of a longer line is read past, not kept. Strips `\n` and `\r\n`.
pub struct LineReader<R> {
    input: R,
    buf: Vec<u8>,
    max: usize,
    number: u64,
}

impl<R: BufRead> LineReader<R> {
    pub fn new(input: R, max_line_bytes: usize) -> Self {
        LineReader {
            input,
            buf: Vec::new(),
            max: max_line_bytes,
            number: 0,
        }
    }

    /// The next line with its number (from 1): its text, or why it is unusable.
    /// `None` at the end of the input.
    pub fn next_line(&mut self) -> std::io::Result<Option<(u64, Result<&str, LineError>)>> {
        self.buf.clear();
        // Room for a `\r` before the newline.
        let keep = self.max.saturating_add(1);
        let (mut len, mut last, mut newline) = (0u64, None, false);
        loop {
            let chunk = match self.input.fill_buf() {
                Ok(c) => c,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if chunk.is_empty() {
                break;
            }
            let end = chunk.iter().position(|&b| b == b'\n');
            let part = &chunk[..end.unwrap_or(chunk.len())];
            len += part.len() as u64;
            last = part.last().copied().or(last);
            let room = keep.saturating_sub(self.buf.len());
            self.buf.extend_from_slice(&part[..part.len().min(room)]);
            let used = end.map_or(chunk.len(), |i| i + 1);
            self.input.consume(used);
            if end.is_some() {
                newline = true;
                break;
            }
        }
        if len == 0 && !newline {
            return Ok(None);
        }
        self.number += 1;
        let cr = newline && last == Some(b'\r');
        let len = len - cr as u64;
        if len > self.max as u64 {
            return Ok(Some((
                self.number,
                Err(LineError::TooLong { len, max: self.max }),
            )));
        }
        self.buf.truncate(len as usize);
        let line = std::str::from_utf8(&self.buf).map_err(|e| LineError::NotUtf8(e.valid_up_to()));
        Ok(Some((self.number, line)))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("line {line}: {source}")]
    BadLine { line: u64, source: LineError },
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// Replays `input` through `engine`. `on_alert` sees each alert (the caller writes it);
/// `on_reject` sees each bad line with its number. Time is pure event time unless
/// `limits.max_future_skew` is set (`--max-future-skew`): then an event further ahead of
/// this machine's clock is a bad line (`sent_at_in_future`), as in the service.
///
/// Lines are read with [`LineReader`]: one that is not UTF-8 or is over `max_line_bytes`
/// is a bad line, read past without being held in memory.
pub fn replay<R: BufRead>(
    input: R,
    engine: &mut Engine,
    limits: &Limits,
    strict: bool,
    max_line_bytes: usize,
    mut on_alert: impl FnMut(&Alert) -> std::io::Result<()>,
    mut on_reject: impl FnMut(u64, &LineError),
) -> Result<Summary, ReplayError> {
    let mut summary = Summary::default();
    let mut alerts = Vec::new();
    let mut lines = LineReader::new(input, max_line_bytes);
    while let Some((number, line)) = lines.next_line()? {
        summary.lines = number;
        let parsed = line.and_then(|l| {
            if l.trim().is_empty() {
                Ok(None)
            } else {
                Ok(Some(Event::from_json(l, limits)?))
            }
        });
        let event = match parsed {
            Ok(None) => continue,
            Ok(Some(e)) => e,
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
            if a.update.is_some() {
                summary.updates += 1;
            } else {
                summary.alerts += 1;
                summary.alerts_by_priority[a.priority as usize] += 1;
            }
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

#[cfg(test)]
mod line_tests {
    use super::*;

    type Lines = Vec<(u64, Result<String, LineError>)>;

    fn read_all(input: &[u8], max: usize, capacity: usize) -> (Lines, usize) {
        let mut r = LineReader::new(std::io::BufReader::with_capacity(capacity, input), max);
        let mut out = Vec::new();
        while let Some((n, line)) = r.next_line().unwrap() {
            out.push((n, line.map(str::to_string)));
        }
        (out, r.buf.capacity())
    }

    #[test]
    fn long_and_non_utf8_lines_are_reported_with_their_number_and_the_rest_is_read() {
        let mut input = b"ok\r\n".to_vec();
        input.extend_from_slice(&[b'a'; 1000]);
        input.extend_from_slice(b"\nab\xffcd\n\nexactly10!\r\nelevenbytes\nlast");
        for capacity in [1, 3, 8, 1024] {
            let (lines, held) = read_all(&input, 10, capacity);
            assert_eq!(
                lines,
                vec![
                    (1, Ok("ok".to_string())),
                    (2, Err(LineError::TooLong { len: 1000, max: 10 })),
                    (3, Err(LineError::NotUtf8(2))),
                    (4, Ok(String::new())),
                    (5, Ok("exactly10!".to_string())),
                    (6, Err(LineError::TooLong { len: 11, max: 10 })),
                    (7, Ok("last".to_string())),
                ],
                "buffer capacity {capacity}"
            );
            assert!(held < 100, "the long line was held whole ({held} bytes)");
        }
    }
}
