//! A partition's pair state before its records are processed: the local checkpoint
//! (input offset, changelog position, pairs) if there is one, then the changelog
//! records written after it, by whichever instance owned the partition meanwhile.
//!
//! Every changelog record carries the input offset its state includes. A record at or
//! past the checkpoint's offset replaces the pair's state, and the input records of that
//! pair up to that offset are then skipped rather than counted twice. Processing resumes
//! at the later of the checkpoint's offset and the group's committed offset.
//!
//! A checkpoint further than the changelog's or the input partition's end belongs to
//! topics that are gone (deleted and created again, a broker that restarted without its
//! data): it is set aside, or its offset would skip the new topic's first records.

use super::codec::decode_state;
use crate::detect::engine::Engine;
use crate::detect::state::{KeyMap, PairKey};
use crate::metrics::Metrics;
use crate::server::checkpoint;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::ClientContext;
use rdkafka::{Offset, TopicPartitionList};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where a restored partition starts.
pub struct Resume {
    /// The next input offset to process.
    pub offset: i64,
    /// Pairs whose restored state already includes input records up to this offset.
    pub skip: KeyMap<i64>,
    /// The changelog position after what was read.
    pub changelog_pos: i64,
}

/// Reaching the end of a partition is how a restore ends, not an error to log.
pub struct Quiet;

impl ClientContext for Quiet {
    fn error(&self, error: KafkaError, reason: &str) {
        let eof = match &error {
            KafkaError::PartitionEOF(_) => true,
            KafkaError::Global(code) => *code == rdkafka::error::RDKafkaErrorCode::PartitionEOF,
            _ => false,
        };
        if !eof {
            tracing::error!(error = %error, reason, "kafka client error (restore)");
        }
    }
}

impl ConsumerContext for Quiet {}

pub struct Restorer {
    consumer: BaseConsumer<Quiet>,
    changelog: String,
    dir: PathBuf,
    timeout: Duration,
}

/// The local checkpoint directory of one input partition.
pub fn partition_dir(dir: &Path, topic: &str, partition: i32) -> PathBuf {
    dir.join(format!("{topic}-{partition}"))
}

impl Restorer {
    pub fn new(
        base: &ClientConfig,
        group: &str,
        changelog: &str,
        dir: PathBuf,
        timeout: Duration,
    ) -> anyhow::Result<Restorer> {
        let mut c = base.clone();
        // A group id is required by the client, never used to commit.
        c.set("group.id", format!("{group}.restore"))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("isolation.level", "read_committed")
            .set("auto.offset.reset", "earliest")
            // Restores read to a known end: no reason to wait for more data.
            .set("fetch.wait.max.ms", "20")
            .set("enable.partition.eof", "true");
        Ok(Restorer {
            consumer: c.create_with_context(Quiet)?,
            changelog: changelog.to_string(),
            dir,
            timeout,
        })
    }

    /// Fills `engine` (empty) with the partition's state; `committed` is the group's
    /// committed input offset, if any.
    pub fn restore(
        &self,
        input_topic: &str,
        partition: i32,
        committed: Option<i64>,
        engine: &mut Engine,
        metrics: &Metrics,
    ) -> anyhow::Result<Resume> {
        let started = Instant::now();
        let deadline = started + self.timeout;
        let dir = partition_dir(&self.dir, input_topic, partition);
        let local = match checkpoint::read(&dir) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(partition, error = %e, "local checkpoint unreadable; restoring from the changelog");
                None
            }
        };
        let (low, high) = self.watermarks(&self.changelog, partition, deadline)?;
        let local = match local {
            Some(c) if c.aux as i64 > high => {
                tracing::warn!(
                    partition,
                    checkpoint_position = c.aux,
                    changelog_end = high,
                    "local checkpoint is past the end of the changelog (the topic was created again): set aside"
                );
                None
            }
            Some(c) => {
                match self
                    .consumer
                    .fetch_watermarks(input_topic, partition, Duration::from_secs(5))
                {
                    Ok((_, end)) if c.seq as i64 > end => {
                        tracing::warn!(
                        partition,
                        checkpoint_offset = c.seq,
                        input_end = end,
                        "local checkpoint is past the end of the input partition (the topic was created again): set aside"
                    );
                        None
                    }
                    _ => Some(c),
                }
            }
            None => None,
        };
        let (base_offset, from) = match local {
            Some(c) => {
                let resume = (c.seq as i64, Offset::Offset(c.aux as i64));
                for (k, s) in c.into_pairs() {
                    engine.restore_pair(k, s);
                }
                resume
            }
            None => (0, Offset::Beginning),
        };
        let mut skip = KeyMap::default();
        let (records, changelog_pos) = self.read_changelog(
            partition,
            from,
            (low, high),
            deadline,
            |key, offset, state| {
                // Older than the checkpoint, or than a record already applied (a late
                // write from a previous owner): the state we hold is newer.
                if offset < base_offset || skip.get(&key).is_some_and(|&prev| offset < prev) {
                    return;
                }
                match state {
                    Some(s) => engine.restore_pair(key, s),
                    None => engine.remove_pair(&key),
                }
                skip.insert(key, offset);
            },
        )?;
        let offset = base_offset.max(committed.unwrap_or(0));
        skip.retain(|_, o| *o >= offset);
        metrics.kafka.restored_records.inc_by(records);
        metrics
            .kafka
            .restore_seconds
            .observe(started.elapsed().as_secs_f64());
        tracing::info!(
            partition,
            pairs = engine.pairs(),
            changelog_records = records,
            resume_offset = offset,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "partition state restored"
        );
        Ok(Resume {
            offset,
            skip,
            changelog_pos,
        })
    }

    /// A pair's last state in the changelog, read to its end (`GetPair` in Kafka mode:
    /// as of the last batch each owner committed). Reads every changelog partition, so
    /// its cost grows with the changelog.
    pub fn find(&self, key: &PairKey) -> anyhow::Result<Option<crate::detect::state::PairState>> {
        let deadline = Instant::now() + self.timeout;
        let md = self
            .consumer
            .fetch_metadata(Some(&self.changelog), Duration::from_secs(10))?;
        let partitions = md.topics().first().map_or(0, |t| t.partitions().len()) as i32;
        // The record of the latest input offset wins (a late write from a previous
        // owner does not), as in a restore.
        let mut found: Option<(i64, Option<crate::detect::state::PairState>)> = None;
        for p in 0..partitions {
            let marks = self.watermarks(&self.changelog, p, deadline)?;
            if marks.0 >= marks.1 {
                continue;
            }
            self.read_changelog(p, Offset::Beginning, marks, deadline, |k, offset, state| {
                if k == *key && found.as_ref().is_none_or(|(o, _)| offset >= *o) {
                    found = Some((offset, state));
                }
            })?;
        }
        Ok(found.and_then(|(_, state)| state))
    }

    /// A partition's watermarks; a broker down or a leader moving is waited out, up to
    /// the restore's deadline.
    fn watermarks(
        &self,
        topic: &str,
        partition: i32,
        deadline: Instant,
    ) -> anyhow::Result<(i64, i64)> {
        let mut warned = false;
        loop {
            match self
                .consumer
                .fetch_watermarks(topic, partition, Duration::from_secs(5))
            {
                Ok(w) => return Ok(w),
                Err(e) if Instant::now() < deadline => {
                    if !warned {
                        tracing::warn!(partition, error = %e, "changelog watermarks unavailable; retrying");
                        warned = true;
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Reads the changelog partition from `from` to its end (`low`, `high`: its
    /// watermarks when the restore began).
    fn read_changelog(
        &self,
        partition: i32,
        from: Offset,
        (low, high): (i64, i64),
        deadline: Instant,
        mut apply: impl FnMut(PairKey, i64, Option<crate::detect::state::PairState>),
    ) -> anyhow::Result<(u64, i64)> {
        let start = match from {
            Offset::Offset(o) if o >= low => o,
            _ => low,
        };
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.changelog, partition, Offset::Offset(start))?;
        self.consumer.assign(&tpl)?;
        let mut records = 0u64;
        let mut position = start;
        // The end is where a fetch says the partition ends (end-of-partition event),
        // and at least the high watermark asked for before: some brokers answer the
        // latter from a cache that lags.
        let mut eof = false;
        while position < high || !eof {
            if Instant::now() > deadline {
                anyhow::bail!(
                    "restoring {}[{partition}] took longer than {:?} ({position} of {high})",
                    self.changelog,
                    self.timeout
                );
            }
            match self.consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    eof = false;
                    position = m.offset() + 1;
                    records += 1;
                    match decode_state(m.key(), m.payload(), m.headers()) {
                        Ok(r) => apply(r.key, r.offset, r.state),
                        Err(e) => {
                            tracing::warn!(partition, offset = m.offset(), error = %e, "changelog record skipped")
                        }
                    }
                }
                Some(Err(KafkaError::PartitionEOF(_))) => eof = true,
                Some(Err(e)) => tracing::warn!(error = %e, "changelog read error"),
                None => {
                    // Transaction markers are never delivered: ask where the reader is.
                    if let Ok(p) = self.consumer.position() {
                        if let Some(Offset::Offset(o)) = p
                            .find_partition(&self.changelog, partition)
                            .map(|e| e.offset())
                        {
                            position = position.max(o);
                        }
                    }
                }
            }
        }
        self.consumer.unassign()?;
        tracing::debug!(partition, start, high, position, records, "changelog read");
        Ok((records, position.max(high)))
    }
}

/// Sets aside the local checkpoints written against other topics than `ids` (topic name
/// to id, as the brokers give them now): `<dir>/topic-ids` keeps the ids of the input
/// and changelog topics the checkpoints belong to. When one of them was deleted and
/// created again, the checkpoints' offsets and changelog positions mean nothing in the
/// new topic (they would skip its first records): the partitions are restored from the
/// changelog and the committed offsets only. Topics without an id are not compared.
pub fn check_topic_ids(
    dir: &Path,
    input_topic: &str,
    ids: &std::collections::HashMap<String, String>,
) -> std::io::Result<()> {
    let file = dir.join("topic-ids");
    let before: std::collections::HashMap<String, String> = match std::fs::read_to_string(&file) {
        Ok(text) => text
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(t, id)| (t.to_string(), id.to_string()))
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Default::default(),
        Err(e) => return Err(e),
    };
    let changed: Vec<&String> = ids
        .iter()
        .filter(|(t, id)| before.get(*t).is_some_and(|old| old != *id))
        .map(|(t, _)| t)
        .collect();
    if !changed.is_empty() {
        let prefix = format!("{input_topic}-");
        let mut set_aside = 0;
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let partition = name
                    .strip_prefix(&prefix)
                    .and_then(|p| p.parse::<i32>().ok());
                if partition.is_some() && e.path().is_dir() {
                    std::fs::remove_dir_all(e.path())?;
                    set_aside += 1;
                }
            }
        }
        tracing::warn!(
            topics = ?changed,
            checkpoints = set_aside,
            "topics deleted and created again since the local checkpoints were written: checkpoints removed, partitions restore from the changelog"
        );
    }
    if ids.is_empty() || ids.iter().all(|(t, id)| before.get(t) == Some(id)) {
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    let mut text: Vec<String> = ids.iter().map(|(t, id)| format!("{t} {id}")).collect();
    text.sort();
    let tmp = dir.join("topic-ids.tmp");
    std::fs::write(&tmp, text.join("\n") + "\n")?;
    std::fs::rename(tmp, file)
}

/// Writes a partition's local checkpoint: input offset, changelog position, pairs.
pub fn write_checkpoint(
    dir: &Path,
    input_topic: &str,
    partition: i32,
    offset: i64,
    changelog_pos: i64,
    engine: &Engine,
) -> std::io::Result<()> {
    let part = checkpoint::encode_pairs(engine.pairs_iter());
    checkpoint::write(
        &partition_dir(dir, input_topic, partition),
        offset.max(0) as u64,
        changelog_pos.max(0) as u64,
        &[part],
    )
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_of_a_topic_created_again_are_set_aside() {
        let dir = std::env::temp_dir().join(format!("pw-topic-ids-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let part = |p: i32| partition_dir(&dir, "ev", p);
        for p in 0..2 {
            std::fs::create_dir_all(part(p)).unwrap();
        }
        std::fs::create_dir_all(dir.join("other-0")).unwrap();
        let ids = |ev: &str| {
            [
                ("ev".to_string(), ev.to_string()),
                ("st".to_string(), "s1".to_string()),
            ]
            .into_iter()
            .collect()
        };
        check_topic_ids(&dir, "ev", &ids("e1")).unwrap();
        check_topic_ids(&dir, "ev", &ids("e1")).unwrap();
        assert!(part(0).exists() && part(1).exists(), "same topics: kept");
        check_topic_ids(&dir, "ev", &Default::default()).unwrap();
        assert!(part(0).exists(), "ids unknown: kept");
        check_topic_ids(&dir, "ev", &ids("e2")).unwrap();
        assert!(
            !part(0).exists() && !part(1).exists(),
            "topic created again"
        );
        assert!(dir.join("other-0").exists());
        assert!(std::fs::read_to_string(dir.join("topic-ids"))
            .unwrap()
            .contains("ev e2"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
