//! One destination's delivery: it follows the alert book from its saved position,
//! POSTs each alert its filter keeps, retries by [`super::retry`], and saves the
//! position after each alert is done (delivered or dead-lettered). A restart resumes at
//! the saved position: an alert delivered just before a crash is delivered again (at
//! least once). Each destination runs on its own task, so a slow or dead one holds back
//! only itself; detection never waits for any (the book is its queue).

use super::post::Poster;
use super::retry::{verdict, Verdict};
use super::DeadLetters;
use crate::detect::alert::Alert;
use crate::detect::rules::Priority;
use crate::metrics::Metrics;
use crate::server::alerts::{AlertBook, Logged};
use crate::server::auth::Scope;
use hyper::body::Bytes;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// Alerts read from the book per read lock.
const CHUNK: usize = 64;
/// How long an idle destination waits for the feed before looking at the book again.
const IDLE: Duration = Duration::from_secs(1);

/// Where a destination stands: the cursor of the last alert it is done with, in a file
/// named by a digest of its URL (so reordering the list keeps each one's place).
#[derive(Clone)]
pub struct Position {
    path: PathBuf,
    /// The destination's index, for logs.
    index: usize,
}

/// A short name for a destination, from its URL: stable across reorderings of the list,
/// and no URL in file or group names.
pub fn url_digest(url: &str) -> String {
    use sha2::{Digest, Sha256};
    crate::detect::digest::hex(&Sha256::digest(url.as_bytes())[..8])
}

impl Position {
    pub fn new(dir: &std::path::Path, url: &str, index: usize) -> Position {
        Position {
            path: dir.join(format!("{}.position", url_digest(url))),
            index,
        }
    }

    /// Where to start, given the book's `first` and `last` cursors:
    /// - no file (a new destination): after `last`, saved at once;
    /// - a saved cursor past `last` (the alert log was lost or restored from an older
    ///   copy, and its cursors start again lower): after `last`, so new alerts are not
    ///   taken for delivered ones;
    /// - an unreadable file: from `first`, everything the book holds is sent again
    ///   (duplicates, not losses; receivers dedupe on `pairwatch-alert-id`).
    pub fn load_or_start(&self, first: u64, last: u64) -> std::io::Result<u64> {
        let destination = self.index;
        let saved = match std::fs::read(&self.path) {
            Ok(bytes) => std::str::from_utf8(&bytes)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.save(last)?;
                return Ok(last);
            }
            Err(e) => return Err(e),
        };
        match saved {
            Some(saved) if saved <= last => Ok(saved),
            Some(saved) => {
                tracing::warn!(
                    destination,
                    saved,
                    last,
                    "webhook: the saved position is past the alert log; starting at its end"
                );
                self.save(last)?;
                Ok(last)
            }
            None => {
                let from = first.saturating_sub(1);
                tracing::warn!(destination, from_cursor = from, "webhook: the saved position is unreadable; sending again what the alert log holds");
                self.save(from)?;
                Ok(from)
            }
        }
    }

    /// Saves `cursor` durably (fsynced), replacing the file whole.
    pub fn save(&self, cursor: u64) -> std::io::Result<()> {
        crate::server::replace_file(&self.path, format!("{cursor}\n").as_bytes())
    }
}

pub struct Destination {
    pub sender: Sender,
    pub position: Position,
    /// The last alert done with (delivered, dead-lettered or passed over)...
    pub cursor: u64,
    /// ...and the last one saved.
    pub saved: u64,
    pub dead: Arc<DeadLetters>,
    pub book: Arc<RwLock<AlertBook>>,
    pub feed: broadcast::Sender<Logged>,
}

impl Destination {
    /// Delivers until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut live = self.feed.subscribe();
        loop {
            let chunk = self
                .book
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .after_limit(self.cursor, CHUNK);
            let backlog = |me: &Self| {
                let last = me
                    .book
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .last_cursor();
                last.saturating_sub(me.cursor) as i64
            };
            self.sender
                .metrics
                .webhook_queue(&self.sender.label, backlog(&self));
            match chunk {
                Err(oldest) => {
                    // Fell behind what the book keeps: the gap is dead-lettered whole.
                    let reason = format!(
                        "alerts after cursor {} up to {} left memory before delivery",
                        self.cursor,
                        oldest - 1
                    );
                    tracing::warn!(destination = self.sender.index, %reason, "webhook: alerts dead-lettered unsent");
                    let (from, to) = (self.cursor, oldest - 1);
                    let written = self
                        .dead_letter(&shutdown, |dead, index| dead.gap(index, from, to, &reason));
                    if !written.await {
                        return;
                    }
                    self.sender
                        .metrics
                        .webhook(&self.sender.label, "dead_lettered");
                    self.done(oldest - 1).await;
                }
                Ok(chunk) if chunk.is_empty() => {
                    self.save_if_moved().await;
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = live.recv() => {}
                        _ = tokio::time::sleep(IDLE) => {}
                    }
                }
                Ok(chunk) => {
                    for l in chunk {
                        if !self.sender.wants(&l.alert) {
                            // Passed over: saved with the next delivery, or when idle.
                            self.cursor = l.cursor;
                            continue;
                        }
                        if !self.deliver(&l, &shutdown).await {
                            return;
                        }
                        self.done(l.cursor).await;
                        self.sender
                            .metrics
                            .webhook_queue(&self.sender.label, backlog(&self));
                    }
                }
            }
        }
    }

    /// Done with everything up to `cursor`: saved durably before the next alert is
    /// tried, so a crash repeats at most the alert in flight.
    async fn done(&mut self, cursor: u64) {
        self.cursor = cursor;
        let position = self.position.clone();
        // The fsyncs run off the runtime's workers.
        match tokio::task::spawn_blocking(move || position.save(cursor)).await {
            Ok(Ok(())) => self.saved = cursor,
            // Only duplicates after a restart come of it.
            Ok(Err(e)) => {
                tracing::warn!(destination = self.sender.index, error = %e, "webhook: cannot save the delivery position")
            }
            Err(e) => {
                tracing::warn!(destination = self.sender.index, error = %e, "webhook: the position save did not run")
            }
        }
    }

    /// Saves the place of alerts passed over (not this destination's) once caught up.
    async fn save_if_moved(&mut self) {
        if self.cursor != self.saved {
            self.done(self.cursor).await;
        }
    }

    /// Delivers one alert, retrying, or dead-letters it. False when shutting down first.
    async fn deliver(&self, l: &Logged, shutdown: &CancellationToken) -> bool {
        let Some(done) = self.sender.send(&l.alert, shutdown).await else {
            return false;
        };
        match done {
            Done::Delivered => true,
            Done::Dead { reason, attempts } => {
                self.dead_letter(shutdown, |dead, index| {
                    dead.alert(index, l, &reason, attempts)
                })
                .await
            }
        }
    }

    /// Writes a dead letter, trying again until it is on disk: the position moves past
    /// an alert only once it is delivered or its dead letter is written. False when
    /// shutting down first.
    async fn dead_letter(
        &self,
        shutdown: &CancellationToken,
        write: impl Fn(&DeadLetters, usize) -> std::io::Result<()>,
    ) -> bool {
        while let Err(e) = write(&self.dead, self.sender.index) {
            tracing::error!(destination = self.sender.index, error = %e, "webhook: cannot write a dead letter; retrying");
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                _ = tokio::time::sleep(IDLE) => {}
            }
        }
        true
    }
}

/// How one alert's delivery ended.
pub enum Done {
    Delivered,
    /// Given up: to the dead letters, with why.
    Dead {
        reason: String,
        attempts: u32,
    },
}

/// A destination's sending side, the same in both modes: the POSTs, the retry rules,
/// the counters.
pub struct Sender {
    pub index: usize,
    pub label: String,
    pub min_priority: Priority,
    pub scope: Scope,
    pub max_age: Duration,
    pub poster: Poster,
    pub metrics: Arc<Metrics>,
}

impl Sender {
    pub fn wants(&self, a: &Alert) -> bool {
        a.priority <= self.min_priority && self.scope.allows(&a.tenant)
    }

    /// Sends `alert` until delivered or given up; `None` when shutting down first.
    pub async fn send(&self, alert: &Alert, shutdown: &CancellationToken) -> Option<Done> {
        let body = match serde_json::to_vec(alert) {
            Ok(b) => Bytes::from(b),
            Err(e) => {
                tracing::error!(error = %e, "webhook: an alert does not serialise");
                return Some(Done::Dead {
                    reason: format!("not serialisable: {e}"),
                    attempts: 0,
                });
            }
        };
        let update = alert.update.as_ref().map(|u| u.kind.as_str());
        let first = Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let tried = tokio::select! {
                _ = shutdown.cancelled() => return None,
                a = self.poster.post(&alert.alert_id, update, body.clone()) => a,
            };
            match verdict(&tried, attempt, first.elapsed(), self.max_age, jitter()) {
                Verdict::Delivered => {
                    self.metrics.webhook(&self.label, "delivered");
                    return Some(Done::Delivered);
                }
                Verdict::RetryAfter(wait) => {
                    self.metrics.webhook(&self.label, "retried");
                    tracing::debug!(destination = self.index, attempt, reason = %tried.reason(), "webhook: retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return None,
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
                Verdict::GiveUp(reason) => {
                    tracing::warn!(destination = self.index, attempt, %reason, "webhook: alert dead-lettered");
                    self.metrics.webhook(&self.label, "dead_lettered");
                    return Some(Done::Dead {
                        reason,
                        attempts: attempt,
                    });
                }
            }
        }
    }
}

/// Uniform in [0, 1), from the process's random hasher keys.
fn jitter() -> f64 {
    use std::hash::BuildHasher;
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let h = std::collections::hash_map::RandomState::new().hash_one(n);
    (h >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::Position;

    #[test]
    fn a_position_starts_at_the_end_resumes_and_survives_a_bad_or_stale_file() {
        let dir = std::env::temp_dir().join(format!("pw-position-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = Position::new(&dir, "https://review.example.org/hook", 0);
        // New: after the last alert already logged, and saved.
        assert_eq!(p.load_or_start(5, 40).unwrap(), 40);
        assert_eq!(p.load_or_start(5, 90).unwrap(), 40);
        p.save(61).unwrap();
        assert_eq!(p.load_or_start(5, 90).unwrap(), 61);
        // The log's cursors start again lower: new alerts are not skipped.
        assert_eq!(p.load_or_start(1, 12).unwrap(), 12);
        assert_eq!(p.load_or_start(1, 30).unwrap(), 12);
        // A torn file: everything the book holds is sent again.
        std::fs::write(&p.path, b"\0\0\x07").unwrap();
        assert_eq!(p.load_or_start(8, 30).unwrap(), 7);
        std::fs::write(&p.path, b"\xff\xfe4").unwrap();
        assert_eq!(p.load_or_start(8, 30).unwrap(), 7);
        assert_eq!(std::fs::read_to_string(&p.path).unwrap(), "7\n");
        let _ = std::fs::remove_dir_all(dir);
    }
}
