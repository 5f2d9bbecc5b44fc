//! A partition's pair state before its records are processed: the local checkpoint
//! (input offset, changelog position, pairs) if there is one, then the changelog
//! records written after it, by whichever instance owned the partition meanwhile.
//!
//! Every changelog record carries the input offset its state includes. A record at or
//! past the checkpoint's offset replaces the pair's state, and the input records of that
//! pair up to that offset are then skipped rather than counted twice. Processing resumes
//! at the later of the checkpoint's offset and the group's committed offset.

use super::codec::decode_state;
use crate::engine::Engine;
use crate::metrics::Metrics;
use crate::server::checkpoint;
use crate::state::{KeyMap, PairKey};
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
        let dir = partition_dir(&self.dir, input_topic, partition);
        let local = match checkpoint::read(&dir) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(partition, error = %e, "local checkpoint unreadable; restoring from the changelog");
                None
            }
        };
        let (base_offset, from) = match local {
            Some(c) => {
                for (k, s) in c.pairs {
                    engine.restore_pair(k, s);
                }
                (c.seq as i64, Offset::Offset(c.aux as i64))
            }
            None => (0, Offset::Beginning),
        };
        let mut skip = KeyMap::default();
        let (records, changelog_pos) =
            self.read_changelog(partition, from, |key, offset, state| {
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
            })?;
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

    /// Reads the changelog partition from `from` to its current end.
    fn read_changelog(
        &self,
        partition: i32,
        from: Offset,
        mut apply: impl FnMut(PairKey, i64, Option<crate::state::PairState>),
    ) -> anyhow::Result<(u64, i64)> {
        let deadline = Instant::now() + self.timeout;
        // A broker down or a leader moving is waited out, up to the restore timeout.
        let (low, high) = loop {
            match self
                .consumer
                .fetch_watermarks(&self.changelog, partition, Duration::from_secs(5))
            {
                Ok(w) => break w,
                Err(e) if Instant::now() < deadline => {
                    tracing::warn!(partition, error = %e, "changelog watermarks unavailable; retrying");
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => return Err(e.into()),
            }
        };
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
