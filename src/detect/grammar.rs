//! The slot grammar: small word classes ("slots") found by the lexicon's one automaton
//! pass, combined into signals after it. A threat is seldom a fixed phrase; it is a
//! distribution act, an audience and often a condition, in words no phrase list can
//! enumerate ("that video goes straight to your aunt and your coach"). Each language
//! lists its slot words (`[slots]` of `lexicon/<lang>*.toml`, with its morphology);
//! `grammar.toml` says, for every language at once, which slots together make a signal:
//!
//! ```toml
//! [[compose]]
//! signal = "THREAT_TO_DISTRIBUTE"
//! slots = ["SHARE", "AUDIENCE"]
//! ```
//!
//! A composition holds when its slots co-occur in one message or in a short run of the
//! same sender's consecutive messages ([`SlotRun`]): a threat is often split over two or
//! three messages.

use crate::detect::error::PackError;
use crate::detect::signal::{Signal, SignalSet};
use serde::Deserialize;
use toml::Spanned;

/// A word class of the grammar.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Slot {
    /// What can be shared: video, pics, nudes, screenshots, "the one you sent".
    Material,
    /// The distribution act: send, post, share, leak, "goes to", "gets a copy".
    Share,
    /// The target's people: your mom, your coach, your class, everyone.
    Audience,
    /// A condition or ultimatum: or, unless, if you don't, otherwise.
    Condition,
    /// Payment: amounts with currencies, gift cards, crypto, payment apps.
    Payment,
    /// A capture: recorded, screenshotted, saved, filmed.
    Recording,
    /// Asking the target to give: send me, show me, your turn.
    Request,
    /// Urgency: now, tonight, hurry, before midnight.
    Urgency,
    /// Exposure: the audience sees, gets or finds out ("or your mom sees it"); weaker than
    /// a distribution act, it needs a condition beside it.
    Exposure,
}

impl Slot {
    pub const ALL: [Slot; 9] = [
        Slot::Material,
        Slot::Share,
        Slot::Audience,
        Slot::Condition,
        Slot::Payment,
        Slot::Recording,
        Slot::Request,
        Slot::Urgency,
        Slot::Exposure,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Slot::Material => "MATERIAL",
            Slot::Share => "SHARE",
            Slot::Audience => "AUDIENCE",
            Slot::Condition => "CONDITION",
            Slot::Payment => "PAYMENT",
            Slot::Recording => "RECORDING",
            Slot::Request => "REQUEST",
            Slot::Urgency => "URGENCY",
            Slot::Exposure => "EXPOSURE",
        }
    }

    pub fn parse(s: &str) -> Option<Slot> {
        Slot::ALL.into_iter().find(|x| x.as_str() == s)
    }

    pub fn bit(self) -> SlotSet {
        SlotSet(1 << self as u8)
    }
}

/// A set of slots as a bit mask.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlotSet(pub u16);

impl SlotSet {
    pub const EMPTY: SlotSet = SlotSet(0);

    pub fn contains_all(self, o: SlotSet) -> bool {
        self.0 & o.0 == o.0
    }
    pub fn union(self, o: SlotSet) -> SlotSet {
        SlotSet(self.0 | o.0)
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn iter(self) -> impl Iterator<Item = Slot> {
        Slot::ALL
            .into_iter()
            .filter(move |s| self.0 & s.bit().0 != 0)
    }
}

/// Most messages of one sender a run spans.
pub const RUN_MESSAGES: u32 = 3;

/// The current run of one side's consecutive messages, packed into a `u32` of the pair
/// state: slot bits (0-15), the side (bit 16), the number of messages (bits 17-18).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlotRun {
    pub slots: SlotSet,
    pub side: usize,
    pub messages: u32,
}

impl SlotRun {
    pub fn unpack(v: u32) -> SlotRun {
        SlotRun {
            slots: SlotSet(v as u16),
            side: (v >> 16) as usize & 1,
            messages: (v >> 17) & 3,
        }
    }

    pub fn pack(self) -> u32 {
        u32::from(self.slots.0) | (self.side as u32 & 1) << 16 | (self.messages.min(3)) << 17
    }

    /// The run after a message of `side` with `slots`: the same run if `side` sent the
    /// previous messages and the run is not full, else a new one. `fresh` forces a new
    /// run (a long pause).
    pub fn next(self, side: usize, slots: SlotSet, fresh: bool) -> SlotRun {
        if fresh || self.messages == 0 || self.side != side || self.messages >= RUN_MESSAGES {
            SlotRun {
                slots,
                side,
                messages: 1,
            }
        } else {
            SlotRun {
                slots: self.slots.union(slots),
                side,
                messages: self.messages + 1,
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrammarFile {
    #[serde(default)]
    compose: Vec<ComposeSpec>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ComposeSpec {
    signal: Spanned<String>,
    slots: Spanned<Vec<String>>,
}

/// One composition: these slots together make this signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Composition {
    pub signal: Signal,
    pub slots: SlotSet,
}

/// What a message's run composed: each signal with the slots of the first composition
/// that made it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Composed {
    pub via: Vec<(Signal, SlotSet)>,
}

impl Composed {
    /// The signals composed.
    pub fn signals(&self) -> SignalSet {
        self.via
            .iter()
            .fold(SignalSet::EMPTY, |set, (s, _)| set.union(s.bit()))
    }
}

/// The compositions of a pack.
#[derive(Clone, Debug, Default)]
pub struct Grammar {
    compositions: Vec<Composition>,
}

impl Grammar {
    /// Parses `grammar.toml`; problems are appended to `errors` with their line.
    pub fn parse(file: &str, src: &str, errors: &mut Vec<PackError>) -> Grammar {
        let parsed: GrammarFile = match toml::from_str(src) {
            Ok(p) => p,
            Err(e) => {
                errors.push(PackError::from_toml(file, src, &e));
                return Grammar::default();
            }
        };
        let mut compositions = Vec::new();
        for c in parsed.compose {
            let at =
                |span: std::ops::Range<usize>, m: String| PackError::at(file, src, span.start, m);
            let signal = match Signal::parse(c.signal.get_ref()).filter(|s| s.is_lexical()) {
                Some(s) => s,
                None => {
                    errors.push(at(
                        c.signal.span(),
                        format!("unknown signal {:?}", c.signal.get_ref()),
                    ));
                    continue;
                }
            };
            let mut slots = SlotSet::EMPTY;
            let mut known = true;
            for name in c.slots.get_ref() {
                match Slot::parse(name) {
                    Some(s) => slots = slots.union(s.bit()),
                    None => {
                        known = false;
                        errors.push(at(c.slots.span(), format!("unknown slot {name:?}")));
                    }
                }
            }
            if !known {
                continue;
            }
            if slots.iter().count() < 2 {
                errors.push(at(
                    c.slots.span(),
                    "a composition needs at least two different slots".into(),
                ));
                continue;
            }
            compositions.push(Composition { signal, slots });
        }
        Grammar { compositions }
    }

    pub fn compositions(&self) -> &[Composition] {
        &self.compositions
    }

    /// The signals a message composes. A composition counts for this message when the
    /// run including it holds its slots and either the run before it did not, or the
    /// message holds them alone: a threat split over three messages counts once, on the
    /// message that completes it; a threat restated in full counts again.
    pub fn compose(&self, before: SlotSet, run: SlotSet, message: SlotSet, out: &mut Composed) {
        out.via.clear();
        if message.is_empty() {
            return;
        }
        for c in &self.compositions {
            let holds = run.contains_all(c.slots)
                && (!before.contains_all(c.slots) || message.contains_all(c.slots));
            if holds && !out.via.iter().any(|(s, _)| *s == c.signal) {
                out.via.push((c.signal, c.slots));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(slots: &[Slot]) -> SlotSet {
        slots.iter().fold(SlotSet::EMPTY, |a, s| a.union(s.bit()))
    }

    const GRAMMAR: &str = r#"
[[compose]]
signal = "THREAT_TO_DISTRIBUTE"
slots = ["SHARE", "AUDIENCE"]
[[compose]]
signal = "RECORDING_CLAIM"
slots = ["RECORDING", "MATERIAL"]
"#;

    #[test]
    fn parse_reports_unknown_names_with_their_line() {
        let mut errors = Vec::new();
        let g = Grammar::parse("grammar.toml", GRAMMAR, &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(g.compositions().len(), 2);
        let bad = "[[compose]]\nsignal = \"NOPE\"\nslots = [\"SHARE\", \"AUDIENCE\"]\n\
                   [[compose]]\nsignal = \"MONEY_DEMAND\"\nslots = [\"PAYMENT\", \"WHATEVER\"]\n\
                   [[compose]]\nsignal = \"MONEY_DEMAND\"\nslots = [\"PAYMENT\"]\n\
                   [[compose]]\nsignal = \"MEDIA_SENT\"\nslots = [\"PAYMENT\", \"REQUEST\"]\n";
        let mut errors = Vec::new();
        Grammar::parse("grammar.toml", bad, &mut errors);
        let text: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(text.len(), 4, "{text:?}");
        assert!(text[0].starts_with("grammar.toml:2: unknown signal \"NOPE\""));
        assert!(text[1].contains(":6: unknown slot \"WHATEVER\""));
        assert!(text[2].contains(":9: a composition needs at least two"));
        assert!(
            text[3].contains(":11: unknown signal \"MEDIA_SENT\""),
            "{text:?}"
        );
    }

    #[test]
    fn a_composition_counts_on_the_message_that_completes_it() {
        let mut errors = Vec::new();
        let g = Grammar::parse("grammar.toml", GRAMMAR, &mut errors);
        let mut out = Composed::default();
        // "i'll send it" then "to your coach": the second message completes the threat.
        let share = set(&[Slot::Share]);
        let both = set(&[Slot::Share, Slot::Audience]);
        g.compose(SlotSet::EMPTY, share, share, &mut out);
        assert!(out.signals().is_empty());
        g.compose(share, both, set(&[Slot::Audience]), &mut out);
        assert_eq!(out.signals(), Signal::ThreatToDistribute.bit());
        assert_eq!(out.via, vec![(Signal::ThreatToDistribute, both)]);
        // A third message with only an audience word adds nothing new...
        g.compose(both, both, set(&[Slot::Audience]), &mut out);
        assert!(out.signals().is_empty());
        // ...but a threat restated whole counts again.
        g.compose(both, both, both, &mut out);
        assert_eq!(out.signals(), Signal::ThreatToDistribute.bit());
        // A message with no slot composes nothing.
        g.compose(both, both, SlotSet::EMPTY, &mut out);
        assert!(out.signals().is_empty());
    }

    #[test]
    fn runs_pack_and_end_with_the_other_side_a_pause_or_three_messages() {
        let a = SlotRun::default().next(1, set(&[Slot::Share]), false);
        assert_eq!(SlotRun::unpack(a.pack()), a);
        let b = a.next(1, set(&[Slot::Audience]), false);
        assert_eq!(b.slots, set(&[Slot::Share, Slot::Audience]));
        assert_eq!(b.messages, 2);
        let c = b.next(1, SlotSet::EMPTY, false);
        assert_eq!((c.messages, c.slots), (3, b.slots));
        assert_eq!(SlotRun::unpack(c.pack()), c);
        // Full after three messages: a fourth starts a new run.
        assert_eq!(c.next(1, SlotSet::EMPTY, false).messages, 1);
        // The other side speaks: a new run.
        let other = b.next(0, set(&[Slot::Material]), false);
        assert_eq!((other.side, other.slots), (0, set(&[Slot::Material])));
        // A long pause: a new run.
        assert_eq!(b.next(1, SlotSet::EMPTY, true).slots, SlotSet::EMPTY);
    }
}
