//! Where alerts go beyond the service: webhook destinations (`sinks.webhooks`), each
//! fed from the alert book by its own task.
//!
//! - [`retry`]: when an attempt is tried again or given up (pure);
//! - [`post`]: one signed POST over HTTP(S);
//! - [`webhook`]: one destination's sending, and its loop over the alert book with a
//!   saved position (embedded mode);
//! - [`from_topics`]: the same destinations fed from the alert topics (Kafka mode).

pub mod from_topics;
pub mod post;
pub mod retry;
pub mod webhook;

use crate::config::{Config, Webhook};
use crate::metrics::Metrics;
use crate::server::alerts::{AlertBook, Logged};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// The dead letters of every destination, one JSON line each, fsynced: which alert (by
/// id and cursor; the alert itself stays in the alert log), why, after how many
/// attempts. No user id, no text.
pub struct DeadLetters {
    path: PathBuf,
    file: Mutex<()>,
}

impl DeadLetters {
    pub const FILE: &'static str = "webhooks.dead.jsonl";

    fn new(dir: &Path) -> DeadLetters {
        DeadLetters {
            path: dir.join(Self::FILE),
            file: Mutex::new(()),
        }
    }

    fn append(&self, line: serde_json::Value) -> std::io::Result<()> {
        let _one_writer = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        let mut bytes = line.to_string().into_bytes();
        bytes.push(b'\n');
        f.write_all(&bytes)?;
        f.sync_data()
    }

    pub fn alert(
        &self,
        destination: usize,
        l: &Logged,
        reason: &str,
        attempts: u32,
    ) -> std::io::Result<()> {
        self.append(serde_json::json!({
            "at": crate::detect::time::format_rfc3339(crate::detect::time::now_millis()),
            "destination": destination,
            "alert_id": l.alert.alert_id,
            "update": l.alert.update.as_ref().map(|u| u.kind.as_str()),
            "cursor": l.cursor,
            "reason": reason,
            "attempts": attempts,
        }))
    }

    /// Alerts after `from` up to `to` that were never tried.
    pub fn gap(&self, destination: usize, from: u64, to: u64, reason: &str) -> std::io::Result<()> {
        self.append(serde_json::json!({
            "at": crate::detect::time::format_rfc3339(crate::detect::time::now_millis()),
            "destination": destination,
            "after_cursor": from,
            "to_cursor": to,
            "reason": reason,
        }))
    }
}

/// Starts a task per configured destination, each at its saved position (a new one at
/// the end of the log), ending with `shutdown`. Embedded mode.
pub fn start(
    config: &Config,
    book: &Arc<RwLock<AlertBook>>,
    feed: &broadcast::Sender<Logged>,
    metrics: &Arc<Metrics>,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    if config.sinks.webhooks.is_empty() {
        return Ok(());
    }
    let data = config.data_dir();
    let dir = data.join("webhooks");
    std::fs::create_dir_all(&dir)?;
    let dead = Arc::new(DeadLetters::new(&data));
    let (first, last) = {
        let b = book.read().unwrap_or_else(|p| p.into_inner());
        (b.first_cursor(), b.last_cursor())
    };
    for (index, w) in config.sinks.webhooks.iter().enumerate() {
        let d = destination(index, w, &dir, (first, last), &dead, metrics, book, feed)
            .map_err(|e| anyhow::anyhow!("`sinks.webhooks[{index}]`: {e}"))?;
        tracing::info!(
            destination = index,
            from_cursor = d.cursor,
            "webhook delivery started"
        );
        tokio::spawn(d.run(shutdown.clone()));
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn destination(
    index: usize,
    w: &Webhook,
    dir: &Path,
    (first, last): (u64, u64),
    dead: &Arc<DeadLetters>,
    metrics: &Arc<Metrics>,
    book: &Arc<RwLock<AlertBook>>,
    feed: &broadcast::Sender<Logged>,
) -> Result<webhook::Destination, String> {
    let position = webhook::Position::new(dir, &w.url, index);
    let cursor = position
        .load_or_start(first, last)
        .map_err(|e| e.to_string())?;
    Ok(webhook::Destination {
        sender: sender(index, w, metrics)?,
        position,
        cursor,
        saved: cursor,
        dead: dead.clone(),
        book: book.clone(),
        feed: feed.clone(),
    })
}

/// The sending side of destination `index`, as configured.
pub fn sender(
    index: usize,
    w: &Webhook,
    metrics: &Arc<Metrics>,
) -> Result<webhook::Sender, String> {
    let label = index.to_string();
    metrics.webhook_labels(&label);
    Ok(webhook::Sender {
        index,
        label,
        min_priority: crate::detect::rules::Priority::parse(&w.min_priority)
            .ok_or("min_priority is not P0..P3")?,
        scope: crate::server::auth::Scope::of(&w.tenants),
        max_age: Duration::from_millis(Config::duration(&w.max_age) as u64),
        poster: post::Poster::new(w)?,
        metrics: metrics.clone(),
    })
}
