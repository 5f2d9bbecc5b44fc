//! The alert side of the service: the append-only alert log (`alerts.jsonl`), the
//! moderators' decisions (`decisions.jsonl`), the open alerts, and the live feed.
//!
//! Each log line is the alert's JSON (the contract) plus a `cursor` field, its position
//! in the log. An update (a red flag changed: `deadline_passed`, `still_in_contact`) is
//! a line of its own, the same alert id with a new cursor; it stands for the alert from
//! then on. The log skips lines it already holds (by [`Alert::stream_key`]), so
//! replaying the write-ahead log after a crash never duplicates a line, and drops updates
//! of alerts a moderator already decided.

use super::desk::{Action, AuditLine, Claims, Decision, DeskError, Held, Query};
use crate::detect::alert::Alert;
use crate::detect::rules::{Pattern, Priority};
use crate::detect::time::{format_rfc3339, Millis};
use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const ALERTS_FILE: &str = "alerts.jsonl";
pub const DECISIONS_FILE: &str = "decisions.jsonl";
/// Alerts kept in memory for resuming subscriptions and for decisions; the log on disk
/// keeps them all.
pub const MEMORY_ALERTS: usize = 100_000;

/// An alert log line: the alert's JSON with its cursor.
fn alert_line(alert: &Alert, cursor: u64) -> io::Result<Vec<u8>> {
    let mut value = serde_json::to_value(alert).map_err(io::Error::other)?;
    if let Some(obj) = value.as_object_mut() {
        obj.insert("cursor".into(), cursor.into());
    }
    let mut line = serde_json::to_vec(&value).map_err(io::Error::other)?;
    line.push(b'\n');
    Ok(line)
}

/// An alert log line read back: its cursor (`default` when it has none) and the alert.
fn parse_line(line: &[u8], default: u64) -> Option<(u64, Alert)> {
    let value = serde_json::from_slice::<serde_json::Value>(line).ok()?;
    let cursor = value
        .get("cursor")
        .and_then(|c| c.as_u64())
        .unwrap_or(default);
    Some((cursor, serde_json::from_value::<Alert>(value).ok()?))
}

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

/// The alerts the service holds: the log in memory, the open ones, the decisions.
pub struct AlertBook {
    dir: PathBuf,
    file: File,
    /// Length of the log up to its last whole line.
    file_len: u64,
    /// A failed write could not be cut off: the next line starts with a newline.
    broken: bool,
    /// Lines written since the last fsync.
    unsynced: bool,
    /// Alerts raised but not yet in the log (its writes failed): retried first.
    pending: VecDeque<Alert>,
    pending_ids: HashSet<String>,
    /// Bytes recovery read past or cut off when the log was opened.
    recovered_bytes: u64,
    history: VecDeque<Logged>,
    /// Most alerts kept in `history`.
    memory: usize,
    ids: HashSet<String>,
    open: HashMap<OpenKey, Logged>,
    /// Decided alerts: the decision, who took it, and when (the line's time).
    decided: HashMap<String, (Decision, String, String)>,
    claims: Claims,
    next_cursor: u64,
    /// Counts the changes a moderator's screen must show beyond new alerts: claims,
    /// releases, decisions, erasures.
    changes: tokio::sync::watch::Sender<u64>,
}

impl AlertBook {
    /// Opens (or creates) the alert log and the decisions of `dir`. A line that is not
    /// an alert (a write torn by a crash or a full disk) is read past and logged at
    /// `warn`; an unfinished last line is cut off. Alerts after it are all kept.
    pub fn open(dir: &Path) -> io::Result<AlertBook> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(ALERTS_FILE);
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let mut book = AlertBook {
            dir: dir.to_path_buf(),
            file,
            file_len: 0,
            broken: false,
            unsynced: false,
            pending: VecDeque::new(),
            pending_ids: HashSet::new(),
            recovered_bytes: 0,
            history: VecDeque::new(),
            memory: MEMORY_ALERTS,
            ids: HashSet::new(),
            open: HashMap::new(),
            decided: HashMap::new(),
            claims: Claims::default(),
            next_cursor: 1,
            changes: tokio::sync::watch::Sender::new(0),
        };
        let mut bad_lines = 0u64;
        let mut at = 0u64;
        let mut reader = BufReader::new(File::open(&path)?);
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = reader.read_until(b'\n', &mut line)? as u64;
            if n == 0 {
                break;
            }
            let whole = line.last() == Some(&b'\n');
            match parse_line(&line, book.next_cursor) {
                Some((cursor, alert)) => {
                    // A line written twice (a retry after a write whose cut failed) is
                    // one alert.
                    if !book.ids.contains(&alert.stream_key()) {
                        book.remember(cursor, Arc::new(alert));
                    }
                    at += n;
                    book.file_len = at;
                    if !whole {
                        // Complete but for its newline: finish the line.
                        book.file.write_all(b"\n")?;
                        book.file_len += 1;
                    }
                }
                None if whole => {
                    bad_lines += 1;
                    book.recovered_bytes += n;
                    at += n;
                    book.file_len = at;
                }
                None => {
                    tracing::warn!(cut_bytes = n, "alert log: cut an unfinished last line");
                    book.file.set_len(book.file_len)?;
                    book.file.sync_all()?;
                    book.recovered_bytes += n;
                }
            }
        }
        if bad_lines > 0 {
            tracing::warn!(
                lines = bad_lines,
                "alert log: read past lines that are not alerts (torn writes); every alert after them is kept"
            );
        }
        if let Ok(f) = File::open(dir.join(DECISIONS_FILE)) {
            for line in BufReader::new(f).split(b'\n') {
                if let Ok(l) = serde_json::from_slice::<AuditLine>(&line?) {
                    book.apply(&l);
                }
            }
        }
        Ok(book)
    }

    /// Applies an audit line, in log order: a claim, a release, or a decision (which
    /// closes the alert). The first decision of an alert stands; a claim on a decided
    /// alert, and a decision while another moderator holds the alert, change nothing.
    pub fn apply(&mut self, line: &AuditLine) {
        if self.decided.contains_key(&line.alert_id) || !self.claims.apply(line) {
            return;
        }
        self.changes.send_modify(|n| *n += 1);
        if let (Action::Decide, Some(d)) = (line.action, line.decision) {
            self.decided.insert(
                line.alert_id.clone(),
                (d, line.moderator_id.clone(), line.at.clone()),
            );
            self.open.retain(|_, l| l.alert.alert_id != line.alert_id);
        }
    }

    /// Appends an audit line to the audit log (durably), then applies it.
    pub fn record(&mut self, line: &AuditLine) -> io::Result<()> {
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(DECISIONS_FILE))?;
        let mut bytes = serde_json::to_vec(line).map_err(io::Error::other)?;
        bytes.push(b'\n');
        f.write_all(&bytes)?;
        f.sync_data()?;
        self.apply(line);
        Ok(())
    }

    /// The alert `moderator` may act on at `now`: it exists, is not decided, and nobody
    /// else holds it.
    fn actionable(
        &self,
        alert_id: &str,
        moderator: &str,
        now: Millis,
    ) -> Result<Arc<Alert>, DeskError> {
        let alert = self
            .get(alert_id)
            .ok_or_else(|| DeskError::NotFound(alert_id.into()))?
            .alert
            .clone();
        if self.decided.contains_key(alert_id) {
            return Err(DeskError::AlreadyResolved(alert_id.into()));
        }
        self.claims.check(alert_id, moderator, now)?;
        Ok(alert)
    }

    /// The audit line of a claim (or its renewal) for `lease` ms, or of its release.
    pub fn claim_line(
        &self,
        alert_id: &str,
        moderator: &str,
        now: Millis,
        lease: Millis,
        release: bool,
    ) -> Result<(AuditLine, Arc<Alert>), DeskError> {
        let alert = self.actionable(alert_id, moderator, now)?;
        if release {
            if self.claims.holder(alert_id, now).is_none() {
                return Err(DeskError::NotHolder(alert_id.into()));
            }
            return Ok((
                AuditLine::of(Action::Release, &alert, moderator, now),
                alert,
            ));
        }
        let mut line = AuditLine::of(Action::Claim, &alert, moderator, now);
        line.until = Some(format_rfc3339(now + lease));
        Ok((line, alert))
    }

    /// The audit line of a decision, with the alert it closes.
    pub fn decide_line(
        &self,
        alert_id: &str,
        decision: Decision,
        moderator: &str,
        reason_code: &str,
        now: Millis,
    ) -> Result<(AuditLine, Arc<Alert>), DeskError> {
        let alert = self.actionable(alert_id, moderator, now)?;
        let mut line = AuditLine::of(Action::Decide, &alert, moderator, now);
        line.decision = Some(decision);
        line.reason_code = reason_code.to_string();
        Ok((line, alert))
    }

    /// Who holds `alert_id` at `now`.
    /// Follows claims, releases, decisions and erasures (not new alerts: the feed has
    /// those).
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    pub fn holder(&self, alert_id: &str, now: Millis) -> Option<&Held> {
        self.claims.holder(alert_id, now)
    }

    /// The decision on `alert_id` and who took it, if it was decided.
    pub fn decided_by(&self, alert_id: &str) -> Option<(Decision, &str)> {
        self.decided.get(alert_id).map(|(d, m, _)| (*d, m.as_str()))
    }

    /// Whether `line` is the decision that stands on its alert.
    pub fn stands(&self, line: &AuditLine) -> bool {
        self.decided.get(&line.alert_id).is_some_and(|(d, m, at)| {
            Some(*d) == line.decision && *m == line.moderator_id && *at == line.at
        })
    }

    fn remember(&mut self, cursor: u64, alert: Arc<Alert>) {
        self.next_cursor = self.next_cursor.max(cursor + 1);
        self.ids.insert(alert.stream_key());
        let logged = Logged { cursor, alert };
        let key = open_key(&logged.alert);
        // An update stands for its alert only while that alert is the pair's open one;
        // a decided alert (its decision read first, as a Kafka desk may) is not open.
        let stands = !self.decided.contains_key(&logged.alert.alert_id)
            && (logged.alert.update.is_none()
                || self
                    .open
                    .get(&key)
                    .is_some_and(|o| o.alert.alert_id == logged.alert.alert_id));
        if stands {
            self.open.insert(key, logged.clone());
        }
        self.history.push_back(logged);
        if self.history.len() > self.memory {
            if let Some(old) = self.history.pop_front() {
                self.ids.remove(&old.alert.stream_key());
            }
        }
    }

    /// Queues an alert (or an update) for the log unless its line is already there or
    /// queued, or it updates an alert a moderator already decided. Queued alerts are
    /// written, in order, by [`AlertBook::write_pending`].
    pub fn queue(&mut self, alert: Alert) {
        let key = alert.stream_key();
        let decided = alert.update.is_some() && self.decided.contains_key(&alert.alert_id);
        if decided || self.ids.contains(&key) || !self.pending_ids.insert(key) {
            return;
        }
        self.pending.push_back(alert);
    }

    /// Writes the queued alerts, in order, and returns their log entries. On a write
    /// error the partial line is cut off again and the alert stays queued with those
    /// after it (retried by the next call): an alert is never lost, and a line is never
    /// extended by the next one. Not durable until [`AlertBook::sync`].
    pub fn write_pending(&mut self) -> (Vec<Logged>, Option<io::Error>) {
        let mut written = Vec::new();
        while let Some(alert) = self.pending.front() {
            let cursor = self.next_cursor;
            let line = match alert_line(alert, cursor) {
                Ok(l) => l,
                Err(e) => return (written, Some(e)),
            };
            if let Err(e) = self.write_line(&line) {
                return (written, Some(e));
            }
            let Some(alert) = self.pending.pop_front() else {
                break;
            };
            self.pending_ids.remove(&alert.stream_key());
            self.remember(cursor, Arc::new(alert));
            written.extend(self.history.back().cloned());
        }
        (written, None)
    }

    /// Appends one line, or leaves the file as it was.
    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        if self.broken {
            // A partial line may remain: end it, so the next alert starts a line.
            self.file.write_all(b"\n")?;
            self.file_len = self.file.metadata()?.len();
            self.broken = false;
        }
        match self.file.write_all(line) {
            Ok(()) => {
                self.file_len += line.len() as u64;
                self.unsynced = true;
                Ok(())
            }
            Err(e) => {
                if self.file.set_len(self.file_len).is_err() {
                    self.broken = true;
                }
                Err(e)
            }
        }
    }

    /// Bytes of torn lines that opening the log read past or cut off.
    pub fn recovered_bytes(&self) -> u64 {
        self.recovered_bytes
    }

    /// Makes every written alert durable.
    pub fn sync(&mut self) -> io::Result<()> {
        if self.unsynced {
            self.file.sync_data()?;
            self.unsynced = false;
        }
        Ok(())
    }

    /// Nothing queued and everything written is synced: a checkpoint may cover these
    /// alerts' events.
    pub fn is_durable(&self) -> bool {
        self.pending.is_empty() && !self.unsynced
    }

    /// Alerts after `cursor`, in log order; `Err(oldest)` when alerts after `cursor` are
    /// no longer in memory (`oldest` is the first cursor still held).
    pub fn after(&self, cursor: u64) -> Result<Vec<Logged>, u64> {
        if let Some(first) = self.history.front() {
            if cursor + 1 < first.cursor {
                return Err(first.cursor);
            }
        }
        let start = self.history.partition_point(|l| l.cursor <= cursor);
        Ok(self.history.range(start..).cloned().collect())
    }

    /// At most `max` alerts after `cursor`, in log order: what a subscriber catching up
    /// reads per lock. `Err(oldest)` as for [`AlertBook::after`].
    pub fn after_limit(&self, cursor: u64, max: usize) -> Result<Vec<Logged>, u64> {
        if let Some(first) = self.history.front() {
            if cursor.saturating_add(1) < first.cursor {
                return Err(first.cursor);
            }
        }
        let start = self.history.partition_point(|l| l.cursor <= cursor);
        Ok(self.history.range(start..).take(max).cloned().collect())
    }

    /// The oldest cursor still in memory (the next one when there is none).
    pub fn first_cursor(&self) -> u64 {
        self.history.front().map_or(self.next_cursor, |l| l.cursor)
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

    /// How many alerts are open, per priority (in `Priority::ALL` order).
    pub fn open_counts(&self) -> [i64; 4] {
        let mut n = [0; 4];
        for l in self.open.values() {
            if let Some(i) = Priority::ALL.iter().position(|p| *p == l.alert.priority) {
                n[i] += 1;
            }
        }
        n
    }

    /// One page of open alerts for `q`, most urgent first (see [`super::desk::page`]),
    /// with their claims at `now`, and the next page's token.
    pub fn list_open(&self, q: &Query, now: Millis) -> super::desk::Page {
        super::desk::page(self.open.values(), &self.claims, q, now)
    }

    /// Erases every alert of `tenant` (`None`: of every tenant) naming `user` (as
    /// suspect, target or evidence sender) from memory and from the whole log on disk.
    /// Returns how many were removed.
    pub fn forget_user(&mut self, tenant: Option<&str>, user: &str) -> io::Result<usize> {
        let involves =
            |a: &Alert| tenant.is_none_or(|t| t == a.tenant) && a.user_ids().any(|u| u == user);
        Ok(self.forget(involves)?.len())
    }

    /// Erases every alert `involves` holds for, from memory and from the whole log on
    /// disk; returns the alerts removed (each line once).
    pub fn forget(&mut self, involves: impl Fn(&Alert) -> bool) -> io::Result<Vec<Alert>> {
        self.changes.send_modify(|n| *n += 1);
        self.history.retain(|l| !involves(&l.alert));
        self.open.retain(|_, l| !involves(&l.alert));
        self.pending.retain(|a| !involves(a));
        self.pending_ids = self.pending.iter().map(|a| a.stream_key()).collect();
        // The log on disk holds more than memory: filter it line by line.
        let path = self.dir.join(ALERTS_FILE);
        let tmp = self.dir.join("alerts.jsonl.tmp");
        let mut out = std::io::BufWriter::new(File::create(&tmp)?);
        let mut removed = Vec::new();
        for line in BufReader::new(File::open(&path)?).split(b'\n') {
            let line = line?;
            match serde_json::from_slice::<Alert>(&line) {
                Ok(a) if involves(&a) => {
                    self.claims.remove(&a.alert_id);
                    removed.push(a);
                }
                _ => {
                    out.write_all(&line)?;
                    out.write_all(b"\n")?;
                }
            }
        }
        if removed.is_empty() {
            drop(out);
            std::fs::remove_file(&tmp)?;
            return Ok(removed);
        }
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        File::open(&self.dir)?.sync_all()?;
        self.file = OpenOptions::new().append(true).open(&path)?;
        self.file_len = self.file.metadata()?.len();
        self.broken = false;
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::alert::{AlertUpdate, AlertUser, UpdateKind, VictimNotice};
    use crate::server::desk::ClaimFilter;

    fn alert(id: &str, suspect: &str, target: &str) -> Alert {
        let user = |u: &str| AlertUser {
            user_id: u.into(),
            age_band: "ADULT".into(),
        };
        Alert {
            alert_id: id.into(),
            tenant: "t".into(),
            priority: Priority::P1,
            pattern: Pattern::Sextortion,
            suspect: user(suspect),
            target: user(target),
            trigger_event_id: "e".into(),
            triggered_at: "2026-01-01T00:00:00Z".into(),
            first_contact_at: "2026-01-01T00:00:00Z".into(),
            respond_by: None,
            red_flags: vec![],
            still_in_contact: false,
            deadline_passed: false,
            known_offender: None,
            update: None,
            rules: vec![],
            signals: vec![],
            evidence: vec![],
            victim_notice: VictimNotice {
                language: "en".into(),
                text: String::new(),
            },
            recommended_actions: vec![],
            engine_version: String::new(),
            rules_version: String::new(),
        }
    }

    #[test]
    fn memory_is_bounded_the_log_is_not_and_forgetting_filters_the_whole_log() {
        let dir = std::env::temp_dir().join(format!("pw-book-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut book = AlertBook::open(&dir).unwrap();
        book.memory = 3;
        for i in 0..5 {
            let who = if i % 2 == 0 { "u-x" } else { "u-y" };
            book.queue(alert(&format!("a{i}"), who, &format!("v{i}")));
            let (written, err) = book.write_pending();
            assert!(err.is_none());
            assert_eq!(written.len(), 1);
        }
        book.queue(alert("a4", "u-x", "v4"));
        assert!(book.write_pending().0.is_empty(), "ids are deduplicated");
        book.sync().unwrap();
        assert_eq!(book.first_cursor(), 3);
        assert_eq!(book.after(2).unwrap().len(), 3);
        assert_eq!(
            book.after(1).err(),
            Some(3),
            "alerts 2.. are no longer all in memory"
        );
        // Forgetting reaches alerts no longer in memory.
        assert_eq!(book.forget_user(Some("t"), "u-x").unwrap(), 3);
        let log = std::fs::read_to_string(dir.join(ALERTS_FILE)).unwrap();
        assert_eq!(log.lines().count(), 2);
        assert!(!log.contains("u-x"));
        let reopened = AlertBook::open(&dir).unwrap();
        assert_eq!(reopened.last_cursor(), 4);
        let _ = std::fs::remove_dir_all(dir);
    }

    fn all() -> Query {
        Query {
            min_priority: None,
            tenant: None,
            scope: super::super::auth::Scope::All,
            pattern: None,
            claimed: ClaimFilter::Any,
            after: None,
            limit: 10,
        }
    }

    fn update_of(a: &Alert, kind: UpdateKind, at: &str) -> Alert {
        let mut u = a.clone();
        u.deadline_passed = kind == UpdateKind::DeadlinePassed;
        u.update = Some(AlertUpdate {
            kind,
            at: at.into(),
        });
        u
    }

    #[test]
    fn an_update_is_a_new_line_of_the_same_alert_once_and_not_after_a_decision() {
        let dir = std::env::temp_dir().join(format!("pw-book-upd-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut book = AlertBook::open(&dir).unwrap();
        let a = alert("a1", "s", "v");
        book.queue(a.clone());
        let passed = update_of(&a, UpdateKind::DeadlinePassed, "2026-01-01T01:00:00Z");
        book.queue(passed.clone());
        // The same update again (the wall clock and event time both saw it; or a
        // replay after a crash) is one line.
        book.queue(passed.clone());
        let (written, err) = book.write_pending();
        assert!(err.is_none());
        assert_eq!(written.len(), 2);
        assert_eq!(
            (written[0].cursor, written[1].cursor),
            (1, 2),
            "a new cursor"
        );
        assert_eq!(written[1].alert.alert_id, "a1");
        book.queue(passed.clone());
        assert!(book.write_pending().0.is_empty());
        // The open alert is the updated one: the desk shows the deadline passed.
        let open = book.list_open(&all(), 0).0;
        assert_eq!(open.len(), 1);
        assert!(open[0].0.alert.deadline_passed);
        assert_eq!(open[0].0.cursor, 2);
        // An update of an alert that a newer alert of the pair replaced does not stand
        // for the pair.
        let newer = alert("a2", "s", "v");
        book.queue(newer);
        book.queue(update_of(
            &a,
            UpdateKind::StillInContact,
            "2026-01-01T02:00:00Z",
        ));
        assert_eq!(book.write_pending().0.len(), 2);
        let open = book.list_open(&all(), 0).0;
        assert_eq!(open[0].0.alert.alert_id, "a2");
        // Once decided, an alert takes no update.
        let (line, _) = book
            .decide_line("a2", Decision::Confirmed, "m", "", 0)
            .unwrap();
        book.record(&line).unwrap();
        let a2 = book.get("a2").unwrap().alert.as_ref().clone();
        book.queue(update_of(
            &a2,
            UpdateKind::DeadlinePassed,
            "2026-01-01T04:00:00Z",
        ));
        assert!(book.write_pending().0.is_empty());
        book.sync().unwrap();
        // Read back: the same lines, the same open alert, no line twice.
        let mut reopened = AlertBook::open(&dir).unwrap();
        assert_eq!(reopened.last_cursor(), 4);
        assert!(reopened.list_open(&all(), 0).0.is_empty());
        reopened.queue(passed);
        assert!(reopened.write_pending().0.is_empty());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn claims_hold_off_other_moderators_order_the_desk_and_survive_a_restart() {
        let dir = std::env::temp_dir().join(format!("pw-book-claim-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut book = AlertBook::open(&dir).unwrap();
        let t0 = 1_800_000_000_000;
        let at = |ms: Millis| format_rfc3339(ms);
        // Same priority: the one with a deadline first, then the older one.
        let mut late = alert("late", "s1", "v1");
        late.triggered_at = at(t0 + 5_000);
        let mut old = alert("old", "s2", "v2");
        old.triggered_at = at(t0);
        let mut due = alert("due", "s3", "v3");
        due.triggered_at = at(t0 + 9_000);
        due.respond_by = Some(at(t0 + 3_600_000));
        let mut urgent = alert("urgent", "s4", "v4");
        urgent.priority = Priority::P0;
        urgent.triggered_at = at(t0 + 10_000);
        for a in [late, old, due, urgent] {
            book.queue(a);
        }
        assert!(book.write_pending().1.is_none());
        let ids = |page: &[(Logged, Option<Held>)]| -> Vec<String> {
            page.iter().map(|(l, _)| l.alert.alert_id.clone()).collect()
        };
        let (first, token) = book.list_open(&Query { limit: 2, ..all() }, t0);
        assert_eq!(ids(&first), ["urgent", "due"]);
        let after = super::super::desk::Place::from_token(&token.unwrap());
        let (second, token) = book.list_open(
            &Query {
                limit: 2,
                after,
                ..all()
            },
            t0,
        );
        assert_eq!(ids(&second), ["old", "late"]);
        assert_eq!(token, None, "the last page");
        let elsewhere = Query {
            scope: super::super::auth::Scope::of(&["another-tenant".into()]),
            ..all()
        };
        assert!(
            book.list_open(&elsewhere, t0).0.is_empty(),
            "outside the scope"
        );

        // m1 claims "old"; m2 can neither claim nor resolve it while the lease runs.
        let lease = 600_000;
        let (claim, _) = book.claim_line("old", "m1", t0, lease, false).unwrap();
        book.record(&claim).unwrap();
        let err = book
            .claim_line("old", "m2", t0 + 1, lease, false)
            .unwrap_err();
        assert!(
            matches!(&err, DeskError::HeldBy { holder, .. } if holder == "m1"),
            "{err}"
        );
        let err = book
            .decide_line("old", Decision::FalsePositive, "m2", "", t0 + 1)
            .unwrap_err();
        assert!(matches!(err, DeskError::HeldBy { .. }));
        let claimed = Query {
            claimed: ClaimFilter::Claimed,
            ..all()
        };
        assert_eq!(ids(&book.list_open(&claimed, t0 + 1).0), ["old"]);
        let unclaimed = Query {
            claimed: ClaimFilter::Unclaimed,
            pattern: Some(Pattern::Sextortion),
            min_priority: Some(Priority::P1),
            ..all()
        };
        assert_eq!(
            ids(&book.list_open(&unclaimed, t0 + 1).0),
            ["urgent", "due", "late"]
        );

        // The claim is in the audit log: a restart keeps it.
        drop(book);
        let mut book = AlertBook::open(&dir).unwrap();
        assert_eq!(book.holder("old", t0 + 1).unwrap().moderator_id, "m1");
        // Once it expires, m2 may take the alert and decide it; the decision ends the claim.
        let (line, alert) = book
            .decide_line(
                "old",
                Decision::Escalated,
                "m2",
                "reported_ncmec",
                t0 + lease,
            )
            .unwrap();
        assert_eq!(alert.alert_id, "old");
        book.record(&line).unwrap();
        assert!(book.holder("old", t0 + lease).is_none());
        assert_eq!(
            book.decide_line("old", Decision::Confirmed, "m1", "", t0 + lease)
                .unwrap_err(),
            DeskError::AlreadyResolved("old".into())
        );
        let audit = std::fs::read_to_string(dir.join(DECISIONS_FILE)).unwrap();
        let lines: Vec<AuditLine> = audit
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1].decision, Some(Decision::Escalated));
        assert_eq!(lines[1].reason_code, "reported_ncmec");
        assert_eq!(lines[1].tenant, "t");
        assert!(
            !audit.contains("s2") && !audit.contains("v2"),
            "no user id in the audit log"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
