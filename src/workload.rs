//! A deterministic synthetic chat workload for benchmarks and the load generator: many
//! pairs, mostly benign chat in several languages, a small share of pairs that escalate
//! (grooming, sextortion with a countdown), message lengths like real chat (median about
//! 40 bytes, long tail). The same seed gives the same stream.

use crate::detect::event::{AgeBand, Attachment, AttachmentKind, Body, Event, Message, UserRef};
use crate::detect::time::Millis;

/// A small, fast, seedable PRNG (SplitMix64).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * n as f64) as usize
    }
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / ((1u64 << 53) as f64) < p
    }
}

const BENIGN: [&[&str]; 4] = [
    &[
        "lol",
        "gg",
        "ok",
        "on joue ce soir ?",
        "t'es où ?",
        "j'arrive dans 5 min",
        "mdr trop drôle",
        "tu as fini le devoir de maths ?",
        "non pas encore jsp comment faire",
        "le prof a dit quoi pour demain",
        "viens on lance une partie",
        "wsh bien ou quoi",
        "attends je mange",
        "ma mère veut que je range ma chambre",
        "t'as vu la vidéo de hier ?",
        "trop bien le nouveau skin",
        "on se fait un duo ?",
        "bonne nuit à demain",
    ],
    &[
        "hey",
        "gg wp",
        "brb",
        "what are you up to",
        "did you finish the homework?",
        "nah not yet lol",
        "wanna play after dinner",
        "that boss fight was insane",
        "my mom says I have to do chores first",
        "lmao same",
        "see you at school tomorrow",
        "which map are we playing",
        "I got a new controller",
        "that video was so funny",
        "ok let's go",
        "can you carry me in ranked",
        "np",
        "good night",
    ],
    &[
        "hola",
        "qué tal",
        "jugamos luego?",
        "no puedo ahora",
        "mañana en clase",
        "jaja",
        "vale",
        "tengo deberes de mates",
        "buenas noches",
    ],
    &[
        "hallo",
        "wie geht's",
        "spielen wir später?",
        "keine Zeit",
        "bis morgen",
        "haha",
        "ok cool",
        "hast du die Hausaufgaben?",
        "gute Nacht",
    ],
];

/// Scripted escalations, said in turn by the suspect (s) and the target (t).
const SCRIPTS: [&[(char, &str)]; 3] = [
    &[
        ('s', "salut t'es trop mignon sur ta photo"),
        ('t', "merci mdr"),
        ('s', "t'as quel âge ? envoie une photo de toi"),
        ('t', "__IMAGE__"),
        (
            's',
            "j'ai tout enregistré, envoie 200€ en PCS sinon j'envoie tout à tes potes",
        ),
        ('s', "t'as 1h"),
        ('t', "s'il te plaît ne fais pas ça"),
    ],
    &[
        ('s', "how old r u? ur so mature for your age"),
        ('t', "14"),
        (
            's',
            "are your parents home? don't tell anyone about us, it's our secret",
        ),
        ('s', "add me on snap, what are you wearing?"),
        ('s', "send me a pic of you in your bra"),
        ('s', "i can pick you up after school, we should meet"),
    ],
    &[
        ('s', "hey cutie, send me a pic of you"),
        ('t', "__IMAGE__"),
        (
            's',
            "i screenshotted it. send $300 in gift cards or i'll send it to all your followers",
        ),
        ('s', "you have 30 minutes"),
    ],
];

/// Workload shape.
#[derive(Clone, Debug)]
pub struct Shape {
    pub seed: u64,
    pub pairs: usize,
    /// Share of pairs that follow an escalation script.
    pub escalating: f64,
    pub tenant: String,
    pub start: Millis,
    /// Event time between two events of the stream.
    pub step_ms: Millis,
    /// Length of every benign message, in bytes (default: chat-like, median about 40).
    pub text_bytes: Option<usize>,
}

impl Default for Shape {
    fn default() -> Self {
        Shape {
            seed: 42,
            pairs: 100_000,
            escalating: 0.005,
            tenant: "bench".into(),
            start: 1_780_000_000_000,
            step_ms: 5,
            text_bytes: None,
        }
    }
}

/// An endless, deterministic stream of events.
pub struct Workload {
    shape: Shape,
    rng: Rng,
    /// Next script line per escalating pair (pair index -> (script, line)).
    progress: std::collections::HashMap<usize, (usize, usize)>,
    n: u64,
}

impl Workload {
    pub fn new(shape: Shape) -> Self {
        Workload {
            rng: Rng::new(shape.seed),
            shape,
            progress: Default::default(),
            n: 0,
        }
    }

    fn is_escalating(&self, pair: usize) -> bool {
        // A fixed, seed-independent share of pair indices escalates.
        (pair as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) % 10_000
            < (self.shape.escalating * 10_000.0) as u64
    }

    /// A benign message: `text_bytes` long when set, else of realistic length (one to
    /// several phrases, median about 40 bytes).
    fn benign_text(&mut self) -> String {
        let Some(len) = self.shape.text_bytes else {
            return self.chat_text();
        };
        let mut s = String::with_capacity(len + 64);
        while s.len() < len {
            if !s.is_empty() {
                s.push(' ');
            }
            s.push_str(&self.chat_text());
        }
        let mut cut = len;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s
    }

    fn chat_text(&mut self) -> String {
        let lang = match self.rng.below(100) {
            0..=44 => 0,
            45..=89 => 1,
            90..=94 => 2,
            _ => 3,
        };
        let phrases = BENIGN[lang];
        let mut parts = 1 + usize::from(self.rng.chance(0.45)) + usize::from(self.rng.chance(0.15));
        if self.rng.chance(0.02) {
            parts += 8 + self.rng.below(20); // the long tail
        }
        let mut s = String::new();
        for i in 0..parts {
            if i > 0 {
                s.push(' ');
            }
            s.push_str(phrases[self.rng.below(phrases.len())]);
        }
        s
    }

    fn user(pair: usize, side: usize, band: AgeBand) -> UserRef {
        UserRef {
            user_id: format!("u{pair}-{side}"),
            age_band: band,
            account_created_at: None,
            locale: None,
            relationship: None,
        }
    }

    pub fn next_event(&mut self) -> Event {
        let pair = self.rng.below(self.shape.pairs);
        self.event_of(pair)
    }

    /// The next event of one pair (`0..pairs`), in the stream's numbering.
    pub fn event_of(&mut self, pair: usize) -> Event {
        self.n += 1;
        let sent_at = self.shape.start + self.n as i64 * self.shape.step_ms;
        let event_id = format!("w{}", self.n);
        let (sender_side, text, image) = if self.is_escalating(pair) {
            let script_count = SCRIPTS.len();
            let entry = self
                .progress
                .entry(pair)
                .or_insert((pair % script_count, 0));
            let script = SCRIPTS[entry.0];
            let (who, line) = script[entry.1 % script.len()];
            entry.1 += 1;
            let side = if who == 's' { 0 } else { 1 };
            if line == "__IMAGE__" {
                (side, String::new(), true)
            } else {
                (side, line.to_string(), false)
            }
        } else {
            (self.rng.below(2), self.benign_text(), false)
        };
        let bands = if self.is_escalating(pair) {
            [AgeBand::Adult, AgeBand::Age13To15]
        } else {
            [AgeBand::Age13To15, AgeBand::Age13To15]
        };
        let attachments = if image {
            vec![Attachment::from(AttachmentKind::Image)]
        } else {
            vec![]
        };
        Event {
            event_id,
            tenant: self.shape.tenant.clone(),
            sent_at,
            sender: Self::user(pair, sender_side, bands[sender_side]),
            recipient: Self::user(pair, 1 - sender_side, bands[1 - sender_side]),
            conversation_id: None,
            body: Body::Message(Message {
                text,
                attachments,
                labels: Vec::new(),
            }),
        }
    }

    /// The next `n` events.
    pub fn take(&mut self, n: usize) -> Vec<Event> {
        (0..n).map(|_| self.next_event()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_shaped_like_chat() {
        let a = Workload::new(Shape::default()).take(20_000);
        let b = Workload::new(Shape::default()).take(20_000);
        assert_eq!(a, b);
        let mut lens: Vec<usize> = a.iter().map(|e| e.text().len()).collect();
        lens.sort();
        let median = lens[lens.len() / 2];
        assert!((20..=60).contains(&median), "median {median}");
        assert!(*lens.last().unwrap() > 200, "long tail");
        let scripted = a
            .iter()
            .filter(|e| e.sender.age_band == AgeBand::Adult)
            .count();
        assert!(scripted > 0 && scripted < a.len() / 50, "{scripted}");
    }

    #[test]
    fn benign_texts_take_the_length_asked() {
        for len in [10, 333, 2000] {
            let mut w = Workload::new(Shape {
                escalating: 0.0,
                text_bytes: Some(len),
                ..Shape::default()
            });
            for e in w.take(200) {
                let got = e.text().len();
                // Cut on a character boundary: at most three bytes short.
                assert!(got <= len && got + 3 >= len, "{got} for {len}");
            }
        }
    }
}
