//! `AdminService.GetPair`: a pair's state without any message text.

use crate::detect::rules::Pattern;
use crate::detect::signal::Signal;
use crate::detect::state::PairState;
use crate::detect::time::{Millis, SECOND};
use crate::proto::pb;

fn ts(ms: Millis) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

/// Summarises `state`; `a` and `b` are the user ids as the caller gave them.
pub fn pair_summary(tenant: &str, a: &str, b: &str, state: &PairState) -> pb::PairSummary {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let side = |i: usize, user: &str| {
        let mut signals = Vec::new();
        if let Some(act) = &state.active {
            for s in Signal::ALL {
                let c = act.counts[i][s as usize];
                if c > 0 {
                    signals.push(pb::SignalSummary {
                        category: s.as_str().to_string(),
                        side: 0,
                        count: c as u32,
                        first_at: Some(ts(
                            state.first_contact + act.first_s[i][s as usize] as i64 * SECOND
                        )),
                        last_at: Some(ts(
                            state.first_contact + act.last_s[i][s as usize] as i64 * SECOND
                        )),
                        slots: state
                            .slots_of(i, s)
                            .iter()
                            .map(|x| x.as_str().to_string())
                            .collect(),
                    });
                }
            }
        }
        let band = pb::AgeBand::from_str_name(&format!("AGE_BAND_{}", state.bands[i].as_str()))
            .map_or(0, |b| b as i32);
        pb::SideSummary {
            user_id: user.to_string(),
            age_band: band,
            signals,
        }
    };
    let alerted = state
        .active
        .as_ref()
        .map(|act| {
            Pattern::ALL
                .iter()
                .filter_map(|p| {
                    act.raised[*p as usize]
                        .as_ref()
                        .map(|r| format!("{}:{}", p.as_str(), r.priority.as_str()))
                })
                .collect()
        })
        .unwrap_or_default();
    pb::PairSummary {
        tenant: tenant.to_string(),
        first_contact_at: Some(ts(state.first_contact)),
        last_seen_at: Some(ts(state.last_seen)),
        sides: vec![side(0, lo), side(1, hi)],
        alerted,
        evidence_count: state.active.as_ref().map_or(0, |a| a.evidence.len() as u32),
    }
}
