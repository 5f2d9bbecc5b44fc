//! The alert side of the service: the append-only alert log (`alerts.jsonl`), the
//! moderators' decisions (`decisions.jsonl`), the open alerts, and the live feed.
//!
//! Each log line is the alert's JSON (the contract) plus a `cursor` field, its position
//! in the log. The log skips alert ids it already holds, so replaying the write-ahead
//! log after a crash never duplicates an alert.

use crate::alert::Alert;
use crate::rules::{Pattern, Priority};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const ALERTS_FILE: &str = "alerts.jsonl";
pub const DECISIONS_FILE: &str = "decisions.jsonl";

/// An alert and its position in the log.
#[derive(Clone, Debug)]
pub struct Logged {
    pub cursor: u64,
    pub alert: Arc<Alert>,
}

/// What a pair's open alert is keyed by: one alert per pair and pattern while it stands.
type OpenKey = (String, String, String, Pattern);

fn open_key(a: &Alert) -> OpenKey {
    let (x, y) = if a.suspect.user_id <= a.target.user_id {
        (a.suspect.user_id.clone(), a.target.user_id.clone())
    } else {
        (a.target.user_id.clone(), a.suspect.user_id.clone())
    };
    (a.tenant.clone(), x, y, a.pattern)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Decision {
    Confirmed,
    FalsePositive,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Confirmed => "confirmed",
            Decision::FalsePositive => "false_positive",
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct DecisionLine {
    alert_id: String,
    decision: Decision,
    moderator_id: String,
    decided_at: String,
}

/// The alerts the service holds: the log in memory, the open ones, the decisions.
pub struct AlertBook {
    dir: PathBuf,
    file: File,
    history: Vec<Logged>,
    ids: HashSet<String>,
    open: HashMap<OpenKey, Logged>,
    decided: HashMap<String, Decision>,
    next_cursor: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("no alert with id {0:?}")]
    NotFound(String),
    #[error("alert {0:?} was already resolved")]
    AlreadyResolved(String),
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}

impl AlertBook {
    /// Opens (or creates) the alert log and the decisions of `dir`.
    pub fn open(dir: &Path) -> io::Result<AlertBook> {
        std::fs::create_dir_all(dir)?;
        let mut book = AlertBook {
            dir: dir.to_path_buf(),
            file: OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join(ALERTS_FILE))?,
            history: Vec::new(),
            ids: HashSet::new(),
            open: HashMap::new(),
            decided: HashMap::new(),
            next_cursor: 1,
        };
        let mut valid_len = 0u64;
        for line in BufReader::new(File::open(dir.join(ALERTS_FILE))?).lines() {
            let line = line?;
            let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) else {
                break;
            };
            let cursor = value
                .get("cursor")
                .and_then(|c| c.as_u64())
                .unwrap_or(book.next_cursor);
            let Ok(alert) = serde_json::from_value::<Alert>(value) else {
                break;
            };
            valid_len += line.len() as u64 + 1;
            book.remember(cursor, Arc::new(alert));
        }
        // A torn last line (crash mid-write) is cut off.
        book.file.set_len(valid_len)?;
        if let Ok(f) = File::open(dir.join(DECISIONS_FILE)) {
            for line in BufReader::new(f).lines() {
                if let Ok(d) = serde_json::from_str::<DecisionLine>(&line?) {
                    book.decided.insert(d.alert_id.clone(), d.decision);
                }
            }
        }
        let decided: Vec<String> = book.decided.keys().cloned().collect();
        book.open
            .retain(|_, l| !decided.contains(&l.alert.alert_id));
        Ok(book)
    }

    fn remember(&mut self, cursor: u64, alert: Arc<Alert>) {
        self.next_cursor = self.next_cursor.max(cursor + 1);
        self.ids.insert(alert.alert_id.clone());
        let logged = Logged { cursor, alert };
        self.open.insert(open_key(&logged.alert), logged.clone());
        self.history.push(logged);
    }

    /// Appends an alert unless its id is already in the log; returns its log entry.
    /// Not durable until `sync`.
    pub fn append(&mut self, alert: Alert) -> io::Result<Option<Logged>> {
        if self.ids.contains(&alert.alert_id) {
            return Ok(None);
        }
        let cursor = self.next_cursor;
        let mut value = serde_json::to_value(&alert).map_err(io::Error::other)?;
        if let Some(obj) = value.as_object_mut() {
            obj.insert("cursor".into(), cursor.into());
        }
        let mut line = serde_json::to_vec(&value).map_err(io::Error::other)?;
        line.push(b'\n');
        self.file.write_all(&line)?;
        self.remember(cursor, Arc::new(alert));
        Ok(self.history.last().cloned())
    }

    pub fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Alerts after `cursor`, in log order.
    pub fn after(&self, cursor: u64) -> Vec<Logged> {
        let start = self.history.partition_point(|l| l.cursor <= cursor);
        self.history[start..].to_vec()
    }

    pub fn last_cursor(&self) -> u64 {
        self.next_cursor - 1
    }

    pub fn get(&self, alert_id: &str) -> Option<&Logged> {
        self.history
            .iter()
            .rev()
            .find(|l| l.alert.alert_id == alert_id)
    }

    /// Open alerts, most urgent first: priority, then deadline (earliest first, none last).
    pub fn list_open(&self, min: Priority, tenant: Option<&str>, limit: usize) -> Vec<Logged> {
        let mut out: Vec<Logged> = self
            .open
            .values()
            .filter(|l| l.alert.priority <= min && tenant.is_none_or(|t| t == l.alert.tenant))
            .cloned()
            .collect();
        out.sort_by(|a, b| {
            let deadline = |l: &Logged| l.alert.respond_by.clone().unwrap_or_else(|| "~".into());
            (a.alert.priority, deadline(a), a.cursor).cmp(&(
                b.alert.priority,
                deadline(b),
                b.cursor,
            ))
        });
        out.truncate(limit);
        out
    }

    /// Records a moderator's decision durably and closes the alert.
    pub fn resolve(
        &mut self,
        alert_id: &str,
        decision: Decision,
        moderator_id: &str,
        at: &str,
    ) -> Result<Arc<Alert>, ResolveError> {
        let alert = self
            .get(alert_id)
            .ok_or_else(|| ResolveError::NotFound(alert_id.into()))?
            .alert
            .clone();
        if self.decided.contains_key(alert_id) {
            return Err(ResolveError::AlreadyResolved(alert_id.into()));
        }
        let line = DecisionLine {
            alert_id: alert_id.into(),
            decision,
            moderator_id: moderator_id.into(),
            decided_at: at.into(),
        };
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(DECISIONS_FILE))?;
        let mut bytes = serde_json::to_vec(&line).map_err(io::Error::other)?;
        bytes.push(b'\n');
        f.write_all(&bytes)?;
        f.sync_data()?;
        self.decided.insert(alert_id.into(), decision);
        let key = open_key(&alert);
        if self
            .open
            .get(&key)
            .is_some_and(|l| l.alert.alert_id == alert_id)
        {
            self.open.remove(&key);
        }
        Ok(alert)
    }

    /// Erases every alert naming `user` (as suspect, target or evidence sender) from
    /// memory and from the log on disk. Returns how many were removed.
    pub fn forget_user(&mut self, user: &str) -> io::Result<usize> {
        let involves = |a: &Alert| {
            a.suspect.user_id == user
                || a.target.user_id == user
                || a.evidence.iter().any(|e| e.sender_id == user)
        };
        let before = self.history.len();
        self.history.retain(|l| !involves(&l.alert));
        self.open.retain(|_, l| !involves(&l.alert));
        let removed = before - self.history.len();
        if removed > 0 {
            let tmp = self.dir.join("alerts.jsonl.tmp");
            let mut f = File::create(&tmp)?;
            for l in &self.history {
                let mut value = serde_json::to_value(&*l.alert).map_err(io::Error::other)?;
                if let Some(obj) = value.as_object_mut() {
                    obj.insert("cursor".into(), l.cursor.into());
                }
                serde_json::to_writer(&mut f, &value).map_err(io::Error::other)?;
                f.write_all(b"\n")?;
            }
            f.sync_all()?;
            drop(f);
            std::fs::rename(&tmp, self.dir.join(ALERTS_FILE))?;
            File::open(&self.dir)?.sync_all()?;
            self.file = OpenOptions::new()
                .append(true)
                .open(self.dir.join(ALERTS_FILE))?;
        }
        Ok(removed)
    }
}
