//! The re-keying stage, for producers that key events by something else than the pair
//! (`kafka.keyed_by_pair = false`): it consumes the events topic in its own group and
//! copies each valid record, bytes and headers unchanged, to the by-pair topic keyed by
//! `tenant/min/max`, so that each pair's state lives in one partition of one instance.
//! Records that cannot be decoded go to the dead-letter topic here already.

use super::codec::{self, Format};
use super::detect::dead_letter;
use super::driver::Stage;
use super::output::{Failed, Kind, Output};
use crate::detect::event::Limits;
use crate::metrics::Metrics;
use rdkafka::message::{BorrowedMessage, Message};
use std::collections::BTreeMap;
use std::sync::Arc;

pub struct Rekey {
    pub to: String,
    pub dlq: String,
    pub format: Format,
    pub limits: Limits,
    pub metrics: Arc<Metrics>,
}

impl Stage for Rekey {
    fn assign(&mut self, _: i32, committed: Option<i64>) -> anyhow::Result<i64> {
        Ok(committed.unwrap_or(0))
    }

    fn revoke(&mut self, _: i32) {}

    fn records(&mut self, ms: &[BorrowedMessage<'_>], out: &mut Output) -> Result<(), Failed> {
        for m in ms {
            let limit = out.dead_letter_limit();
            let event = codec::check_size(m.key(), m.payload(), m.headers(), limit)
                .and_then(|_| codec::decode(m.payload(), m.headers(), self.format, &self.limits));
            match event {
                Ok(e) => out.send(
                    &self.to,
                    None,
                    codec::event_pair_key(&e).as_bytes(),
                    m.payload(),
                    m.headers().map(|h| h.detach()),
                    Kind::Rekeyed,
                )?,
                Err(why) => dead_letter(out, &self.dlq, m, &why)?,
            }
        }
        Ok(())
    }

    fn before_commit(&mut self, _: &mut Output) -> Result<(), Failed> {
        Ok(())
    }

    fn after_commit(&mut self, _: &Output, _: &BTreeMap<i32, i64>, _: bool) {}
}
