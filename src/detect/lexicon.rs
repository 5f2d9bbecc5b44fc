//! Lexicons: phrases per signal category and language, read from `rules/lexicon/*.toml`,
//! compiled once into a single Aho-Corasick automaton over normalised text.
//!
//! Every language is matched on every message in one pass. Phrases pass through the
//! same normaliser as messages and are padded with spaces, so a match is always on
//! word boundaries (a trailing `*` drops the right boundary). A phrase `A ... B` is
//! two literals in the same automaton, joined after the pass when B follows A within
//! four words. Slot words of the grammar ([`crate::detect::grammar`]) are literals of
//! the same automaton; the engine combines them after the pass.

use crate::detect::error::PackError;
use crate::detect::grammar::{Slot, SlotSet};
use crate::detect::normalize::{normalize, Normalized};
use crate::detect::signal::{Signal, SignalSet, SIGNAL_COUNT};
use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use toml::Spanned;
use xxhash_rust::xxh3::Xxh3DefaultBuilder;

/// Most words allowed between the two parts of an `A ... B` phrase.
pub const MAX_GAP_WORDS: usize = 4;
/// Most languages a pack may hold (languages are a bit mask).
pub const MAX_LANGUAGES: usize = 8;
const HINT_CATEGORY: &str = "LANGUAGE_HINT";
const MINOR_AGE: &str = "{minor_age}";
const ADULT_AGE: &str = "{adult_age}";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LexiconFile {
    language: Spanned<String>,
    #[serde(default)]
    categories: BTreeMap<Spanned<String>, CategoryPhrases>,
    /// Slot words of the grammar: `SLOT = ["word", ...]`.
    #[serde(default)]
    slots: BTreeMap<Spanned<String>, Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CategoryPhrases {
    phrases: Vec<Spanned<String>>,
}

/// What one literal of the automaton stands for.
#[derive(Clone, Default, Debug)]
struct Literal {
    signals: SignalSet,
    slots: SlotSet,
    /// Languages whose phrases or slot words use this literal.
    langs: u8,
    /// Languages whose function words (`LANGUAGE_HINT`) include this literal.
    hint_langs: u8,
    /// (proximity phrase id, is the second part)
    parts: Vec<(u32, bool)>,
}

#[derive(Clone, Debug)]
struct Proximity {
    signals: SignalSet,
    langs: u8,
}

/// The compiled lexicons of a rule pack.
#[derive(Clone, Debug)]
pub struct Lexicon {
    automaton: AhoCorasick,
    literals: Vec<Literal>,
    proximities: Vec<Proximity>,
    languages: Vec<String>,
    phrases: usize,
}

/// What one message matched. Reuse one value across messages.
#[derive(Clone, Debug)]
pub struct Hits {
    pub signals: SignalSet,
    /// For each lexical signal found, the normalised byte span of its first match.
    spans: [(u32, u32); SIGNAL_COUNT],
    /// Function words (`LANGUAGE_HINT`) matched per language (index into
    /// `Lexicon::languages`): the message's language.
    pub lang_hits: [u16; MAX_LANGUAGES],
    /// For each signal found, the languages whose phrases found it.
    sig_langs: [u8; SIGNAL_COUNT],
    /// For each slot found, the languages whose words found it.
    slot_langs: [u8; Slot::ALL.len()],
    /// Slot words found in this message.
    pub slots: SlotSet,
    /// For each slot found, the normalised byte span of its first word.
    slot_spans: [(u32, u32); Slot::ALL.len()],
    parts: Vec<(u32, bool, u32, u32)>,
}

// Per-signal arrays are longer than 32: no derived `Default`.
impl Default for Hits {
    fn default() -> Self {
        Hits {
            signals: SignalSet::EMPTY,
            spans: [(0, 0); SIGNAL_COUNT],
            lang_hits: Default::default(),
            sig_langs: [0; SIGNAL_COUNT],
            slot_langs: Default::default(),
            slots: Default::default(),
            slot_spans: Default::default(),
            parts: Vec::new(),
        }
    }
}

impl Hits {
    /// Normalised span of the first match of `s`, if `s` was found in this message.
    pub fn span(&self, s: Signal) -> Option<(usize, usize)> {
        if !self.signals.contains(s) || !s.is_lexical() {
            return None;
        }
        let (a, b) = self.spans[s as usize];
        Some((a as usize, b as usize))
    }

    /// Normalised span of the first word of `slot` in this message.
    pub fn slot_span(&self, slot: Slot) -> Option<(usize, usize)> {
        if !self.slots.contains_all(slot.bit()) {
            return None;
        }
        let (a, b) = self.slot_spans[slot as usize];
        Some((a as usize, b as usize))
    }

    /// Adds signals composed from slots, their span that of the composition's first slot
    /// in this message.
    pub fn add_composed(&mut self, signal: Signal, slots: SlotSet) {
        if let Some((a, b)) = slots.iter().find_map(|s| self.slot_span(s)) {
            self.record(signal.bit(), a, b);
        }
    }

    fn record_slots(&mut self, slots: SlotSet, start: usize, end: usize, langs: u8) {
        for s in slots.iter() {
            if !self.slots.contains_all(s.bit()) {
                self.slot_spans[s as usize] = (start as u32, end as u32);
            }
            self.slot_langs[s as usize] |= langs;
        }
        self.slots = self.slots.union(slots);
    }

    fn record(&mut self, signals: SignalSet, start: usize, end: usize) {
        let mut new = signals.0 & !self.signals.0;
        while new != 0 {
            let i = new.trailing_zeros() as usize;
            if i < self.spans.len() {
                self.spans[i] = (start as u32, end as u32);
            }
            new &= new - 1;
        }
        self.signals = self.signals.union(signals);
    }

    fn record_langs(&mut self, signals: SignalSet, langs: u8) {
        for s in signals.iter() {
            self.sig_langs[s as usize] |= langs;
        }
    }

    /// The languages whose function words this message holds (bit per language).
    pub fn message_languages(&self) -> u8 {
        (0..MAX_LANGUAGES)
            .filter(|&i| self.lang_hits[i] > 0)
            .fold(0, |m, i| m | 1 << i)
    }

    /// Keeps only the signals and slots found by phrases of the `allowed` languages: a
    /// French word that is also English slang ("hot") must not read an English message
    /// as French sexual talk.
    pub fn keep_languages(&mut self, allowed: u8) {
        for s in self.signals.iter() {
            if self.sig_langs[s as usize] & allowed == 0 {
                self.signals.remove(s);
            }
        }
        let mut kept = SlotSet::EMPTY;
        for s in self.slots.iter() {
            if self.slot_langs[s as usize] & allowed != 0 {
                kept = kept.union(s.bit());
            }
        }
        self.slots = kept;
    }

    fn count_hints(&mut self, langs: u8) {
        let mut m = langs;
        while m != 0 {
            let i = m.trailing_zeros() as usize;
            self.lang_hits[i] = self.lang_hits[i].saturating_add(1);
            m &= m - 1;
        }
    }
}

/// Collects lexicon files, then compiles them.
#[derive(Default)]
pub struct LexiconBuilder {
    index: HashMap<Vec<u8>, usize, Xxh3DefaultBuilder>,
    patterns: Vec<Vec<u8>>,
    literals: Vec<Literal>,
    proximities: Vec<Proximity>,
    languages: Vec<String>,
    phrases: usize,
    scratch: Normalized,
}

impl LexiconBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one lexicon file; problems are appended to `errors` with their line.
    pub fn add_file(&mut self, file: &str, src: &str, errors: &mut Vec<PackError>) {
        let parsed: LexiconFile = match toml::from_str(src) {
            Ok(p) => p,
            Err(e) => {
                errors.push(PackError::from_toml(file, src, &e));
                return;
            }
        };
        let err = |span: std::ops::Range<usize>, message: String| {
            PackError::at(file, src, span.start, message)
        };
        let language = parsed.language.get_ref().trim().to_ascii_lowercase();
        if language.len() != 2 || !language.bytes().all(|b| b.is_ascii_lowercase()) {
            errors.push(err(
                parsed.language.span(),
                format!("language must be a two-letter ISO 639-1 code, not {language:?}"),
            ));
            return;
        }
        let index = match self.languages.iter().position(|l| *l == language) {
            Some(i) => i,
            None if self.languages.len() == MAX_LANGUAGES => {
                errors.push(err(
                    parsed.language.span(),
                    format!("at most {MAX_LANGUAGES} languages per rule pack"),
                ));
                return;
            }
            None => {
                self.languages.push(language);
                self.languages.len() - 1
            }
        };
        let lang_bit = 1u8 << index;
        for (name, cat) in &parsed.categories {
            if name.get_ref() == HINT_CATEGORY {
                for phrase in &cat.phrases {
                    if let Err(m) = self.add_hint(phrase.get_ref(), lang_bit) {
                        errors.push(err(
                            phrase.span(),
                            format!("phrase {:?}: {m}", phrase.get_ref()),
                        ));
                    }
                }
                continue;
            }
            let signals = match Signal::parse(name.get_ref()).filter(|s| s.is_lexical()) {
                Some(s) => s.bit(),
                None => {
                    errors.push(err(
                        name.span(),
                        format!("unknown lexicon category {:?}", name.get_ref()),
                    ));
                    continue;
                }
            };
            for phrase in &cat.phrases {
                for expanded in expand_template(phrase.get_ref()) {
                    if let Err(m) = self.add_phrase(&expanded, signals, lang_bit) {
                        errors.push(err(
                            phrase.span(),
                            format!("phrase {:?}: {m}", phrase.get_ref()),
                        ));
                        break;
                    }
                }
            }
        }
        for (name, words) in &parsed.slots {
            let Some(slot) = Slot::parse(name.get_ref()) else {
                errors.push(err(
                    name.span(),
                    format!("unknown slot {:?}", name.get_ref()),
                ));
                continue;
            };
            for word in words {
                if let Err(m) = self.add_slot_word(word.get_ref(), slot, lang_bit) {
                    errors.push(err(
                        word.span(),
                        format!("slot word {:?}: {m}", word.get_ref()),
                    ));
                }
            }
        }
    }

    /// A function word of a language (`LANGUAGE_HINT`): one literal per alternative.
    fn add_hint(&mut self, word: &str, lang: u8) -> Result<(), String> {
        for alternative in expand_alternatives(word)? {
            let id = self.literal(&alternative)?;
            self.literals[id].hint_langs |= lang;
        }
        self.phrases += 1;
        Ok(())
    }

    /// A slot word: one literal (with its `(a|b)` alternatives), no `...` gap.
    fn add_slot_word(&mut self, word: &str, slot: Slot, lang: u8) -> Result<(), String> {
        if word.contains(" ... ") {
            return Err(
                "slot words have no `...` gap: list the words, the grammar joins them".into(),
            );
        }
        for alternative in expand_alternatives(word)? {
            let id = self.literal(&alternative)?;
            let lit = &mut self.literals[id];
            lit.slots = lit.slots.union(slot.bit());
            lit.langs |= lang;
        }
        self.phrases += 1;
        Ok(())
    }

    fn add_phrase(&mut self, phrase: &str, signals: SignalSet, lang: u8) -> Result<(), String> {
        let parts: Vec<&str> = phrase.split(" ... ").collect();
        if parts.len() > 2 || phrase.trim() == "..." {
            return Err("use `...` once, between two parts".into());
        }
        let mut ids: Vec<Vec<usize>> = Vec::with_capacity(2);
        for part in &parts {
            let mut part_ids = Vec::new();
            for alternative in expand_alternatives(part)? {
                part_ids.push(self.literal(&alternative)?);
            }
            ids.push(part_ids);
        }
        self.phrases += 1;
        if let [a, b] = &ids[..] {
            let id = self.proximities.len() as u32;
            self.proximities.push(Proximity {
                signals,
                langs: lang,
            });
            for &l in a {
                self.literals[l].parts.push((id, false));
            }
            for &l in b {
                self.literals[l].parts.push((id, true));
            }
        } else {
            for &l in &ids[0] {
                let lit = &mut self.literals[l];
                lit.signals = lit.signals.union(signals);
                lit.langs |= lang;
            }
        }
        Ok(())
    }

    /// The automaton pattern for one part of a phrase, created on first use.
    fn literal(&mut self, part: &str) -> Result<usize, String> {
        let part = part.trim();
        let (body, prefix) = match part.strip_suffix('*') {
            Some(b) => (b, true),
            None => (part, false),
        };
        if body.contains('*') {
            return Err("`*` is allowed only at the end".into());
        }
        normalize(body, &mut self.scratch);
        let mut pattern = self.scratch.as_bytes();
        if pattern.len() <= 2 {
            return Err("nothing left to match after normalisation".into());
        }
        if prefix {
            pattern = &pattern[..pattern.len() - 1];
            let last_word = pattern.rsplit(|b| *b == b' ').next().unwrap_or(&[]);
            if last_word.len() < 3 {
                return Err("a prefix (`*`) needs at least 3 letters".into());
            }
        }
        if let Some(&i) = self.index.get(pattern) {
            return Ok(i);
        }
        self.index.insert(pattern.to_vec(), self.patterns.len());
        self.patterns.push(pattern.to_vec());
        self.literals.push(Literal::default());
        Ok(self.patterns.len() - 1)
    }

    pub fn build(self) -> Result<Lexicon, String> {
        // A contiguous NFA, not a DFA: the DFA's bare scan is about 10% faster, but it
        // takes nearly three times the CPU to build at every start and about 300 MB more
        // memory (ARCHITECTURE.md, "The lexicon automaton is a contiguous NFA").
        let automaton = AhoCorasick::builder()
            .match_kind(MatchKind::Standard)
            .kind(Some(AhoCorasickKind::ContiguousNFA))
            .build(&self.patterns)
            .map_err(|e| format!("cannot compile the lexicon automaton: {e}"))?;
        Ok(Lexicon {
            automaton,
            literals: self.literals,
            proximities: self.proximities,
            languages: self.languages,
            phrases: self.phrases,
        })
    }
}

/// Most literals one part of a phrase may expand to.
const MAX_ALTERNATIVES: usize = 512;

/// Expands `(a|b|c)` groups into every combination (`(a|)` makes a word optional).
fn expand_alternatives(part: &str) -> Result<Vec<String>, String> {
    let mut out = vec![String::new()];
    let mut rest = part;
    while let Some(open) = rest.find('(') {
        let close = rest[open..]
            .find(')')
            .map(|c| open + c)
            .ok_or("unclosed `(`")?;
        let head = &rest[..open];
        let choices: Vec<&str> = rest[open + 1..close].split('|').collect();
        if choices.len() < 2 {
            return Err("a group needs at least two choices: `(a|b)`".into());
        }
        if out.len() * choices.len() > MAX_ALTERNATIVES {
            return Err(format!("expands to more than {MAX_ALTERNATIVES} literals"));
        }
        out = out
            .iter()
            .flat_map(|prefix| {
                choices
                    .iter()
                    .map(move |c| [prefix.as_str(), head, c].concat())
            })
            .collect();
        rest = &rest[close + 1..];
    }
    if rest.contains(')') {
        return Err("`)` without `(`".into());
    }
    for p in &mut out {
        p.push_str(rest);
    }
    Ok(out)
}

fn expand_template(phrase: &str) -> Vec<String> {
    let (template, ages) = if phrase.contains(MINOR_AGE) {
        (MINOR_AGE, 10..=17)
    } else if phrase.contains(ADULT_AGE) {
        (ADULT_AGE, 18..=79)
    } else {
        return vec![phrase.to_string()];
    };
    ages.map(|age| phrase.replace(template, &age.to_string()))
        .collect()
}

impl Lexicon {
    /// Languages in pack order; `Hits::lang_hits` is indexed the same way.
    pub fn languages(&self) -> &[String] {
        &self.languages
    }

    /// Number of phrases after template expansion.
    pub fn phrase_count(&self) -> usize {
        self.phrases
    }

    /// Counts the automaton's matches in a raw text, with no normalisation and no
    /// bookkeeping: the bare multi-pattern scan benchmarks compare the engine with.
    pub fn count_raw(&self, text: &str) -> usize {
        self.automaton
            .find_overlapping_iter(text.as_bytes())
            .count()
    }

    /// Matches every phrase of every language against `text` in one pass.
    pub fn scan(&self, text: &Normalized, hits: &mut Hits) {
        hits.signals = SignalSet::EMPTY;
        hits.lang_hits = [0; MAX_LANGUAGES];
        hits.sig_langs = [0; SIGNAL_COUNT];
        hits.slot_langs = [0; Slot::ALL.len()];
        hits.parts.clear();
        hits.slots = SlotSet::EMPTY;
        let bytes = text.as_bytes();
        for m in self.automaton.find_overlapping_iter(bytes) {
            let lit = &self.literals[m.pattern().as_usize()];
            let (start, end) = trim_span(bytes, m.start(), m.end());
            if !lit.signals.is_empty() {
                hits.record(lit.signals, start, end);
                hits.record_langs(lit.signals, lit.langs);
            }
            if !lit.slots.is_empty() {
                hits.record_slots(lit.slots, start, end, lit.langs);
            }
            hits.count_hints(lit.hint_langs);
            for &(id, second) in &lit.parts {
                hits.parts
                    .push((id, second, m.start() as u32, m.end() as u32));
            }
        }
        if hits.parts.len() >= 2 {
            self.join_parts(bytes, hits);
        }
    }

    fn join_parts(&self, bytes: &[u8], hits: &mut Hits) {
        let parts = std::mem::take(&mut hits.parts);
        for &(id, _, bs, be) in parts.iter().filter(|p| p.1) {
            let first = parts.iter().find(|&&(aid, asecond, _, ae)| {
                aid == id && !asecond && bs + 1 >= ae && {
                    let between = &bytes[(ae as usize - 1)..bs as usize];
                    between.iter().filter(|b| **b == b' ').count() <= MAX_GAP_WORDS
                }
            });
            if let Some(&(_, _, as_, _)) = first {
                let p = &self.proximities[id as usize];
                let (s, e) = trim_span(bytes, as_ as usize, be as usize);
                hits.record(p.signals, s, e);
                hits.record_langs(p.signals, p.langs);
            }
        }
        hits.parts = parts;
    }
}

/// Drops the padding spaces of a match.
fn trim_span(bytes: &[u8], mut start: usize, mut end: usize) -> (usize, usize) {
    if bytes.get(start) == Some(&b' ') {
        start += 1;
    }
    if end > start && bytes.get(end - 1) == Some(&b' ') {
        end -= 1;
    }
    (start, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lexicon(files: &[(&str, &str)]) -> (Result<Lexicon, String>, Vec<PackError>) {
        let mut b = LexiconBuilder::new();
        let mut errors = Vec::new();
        for (name, src) in files {
            b.add_file(name, src, &mut errors);
        }
        (b.build(), errors)
    }

    const EN: &str = r#"
language = "en"
[categories.IMAGE_REQUEST]
phrases = ["send me a pic*", "show me ... your body"]
[categories.SEXUALIZATION]
phrases = ["nude*", "show me ... your body"]
[categories.AGE_CLAIM]
phrases = ["i'm {minor_age}"]
[categories.LANGUAGE_HINT]
phrases = ["the", "you"]
"#;
    const FR: &str = r#"
language = "fr"
[categories.IMAGE_REQUEST]
phrases = ["envoie moi une photo"]
[categories.LANGUAGE_HINT]
phrases = ["je", "tu"]
"#;

    fn scan(lex: &Lexicon, text: &str) -> (Vec<Signal>, Hits, Normalized) {
        let mut n = Normalized::new();
        normalize(text, &mut n);
        let mut hits = Hits::default();
        lex.scan(&n, &mut hits);
        (hits.signals.iter().collect(), hits, n)
    }

    #[test]
    fn matches_words_prefixes_and_gaps_in_one_pass() {
        let (lex, errors) = lexicon(&[("en.toml", EN), ("fr.toml", FR)]);
        assert!(errors.is_empty(), "{errors:?}");
        let lex = lex.unwrap();
        assert_eq!(lex.languages(), ["en", "fr"]);
        assert_eq!(
            scan(&lex, "Send me a piccc pls").0,
            vec![Signal::ImageRequest]
        );
        assert_eq!(
            scan(&lex, "send me a pictures").0,
            vec![Signal::ImageRequest]
        );
        assert_eq!(scan(&lex, "NUDEZ?").0, vec![Signal::Sexualization]);
        assert_eq!(
            scan(&lex, "show me all of your body").0,
            vec![Signal::Sexualization, Signal::ImageRequest]
        );
        // Too far apart, or in the wrong order.
        assert!(scan(&lex, "show me the way to the town where your body")
            .0
            .is_empty());
        assert!(scan(&lex, "your body show me").0.is_empty());
        assert_eq!(
            scan(&lex, "envoie-moi une photo stp").0,
            vec![Signal::ImageRequest]
        );
        assert_eq!(scan(&lex, "im 14").0, vec![Signal::AgeClaim]);
        assert!(scan(&lex, "im 41").0.is_empty());
    }

    #[test]
    fn alternatives_expand() {
        assert_eq!(
            expand_alternatives("(je|j) (poste|balance) tout").unwrap(),
            [
                "je poste tout",
                "je balance tout",
                "j poste tout",
                "j balance tout"
            ]
        );
        assert_eq!(
            expand_alternatives("send (me |)nudes").unwrap(),
            ["send me nudes", "send nudes"]
        );
        assert!(expand_alternatives("a (b").is_err());
        assert!(expand_alternatives("a (b) c").is_err());
        let src = "language = \"fr\"\n[categories.THREAT_TO_DISTRIBUTE]\nphrases = [\"(j envoie|je poste) ... (tes potes|tes parents)\"]\n";
        let (lex, errors) = lexicon(&[("fr.toml", src)]);
        assert!(errors.is_empty(), "{errors:?}");
        let lex = lex.unwrap();
        assert_eq!(
            scan(&lex, "sinon j'envoie tout à tes potes").0,
            vec![Signal::ThreatToDistribute]
        );
        assert_eq!(
            scan(&lex, "je poste ça pour tes parents").0,
            vec![Signal::ThreatToDistribute]
        );
        assert!(scan(&lex, "tes potes j'envoie").0.is_empty());
    }

    #[test]
    fn word_boundaries_hold() {
        let (lex, _) = lexicon(&[("en.toml", EN)]);
        let lex = lex.unwrap();
        assert!(scan(&lex, "denudes").0.is_empty());
        assert!(scan(&lex, "resend me a pic").0.is_empty());
    }

    #[test]
    fn spans_and_language_hits() {
        let (lex, _) = lexicon(&[("en.toml", EN), ("fr.toml", FR)]);
        let lex = lex.unwrap();
        let text = "hey you, send me a pic";
        let (_, hits, n) = scan(&lex, text);
        let (s, e) = hits.span(Signal::ImageRequest).unwrap();
        let (a, b) = n.original_span(s, e);
        assert_eq!(&text[a..b], "send me a pic");
        assert_eq!(hits.lang_hits[0], 1); // the "you" hint; phrases are not counted
        assert_eq!(hits.lang_hits[1], 0);
        let (_, hits, _) = scan(&lex, "tu fais quoi, je sais pas");
        assert_eq!(hits.lang_hits[1], 2);
        assert_eq!(hits.message_languages(), 0b10);
    }

    #[test]
    fn reports_errors_with_lines() {
        let bad = "language = \"en\"\n[categories.NOT_A_THING]\nphrases = [\"x\"]\n[categories.FLATTERY]\nphrases = [\n  \"?!\",\n  \"so*\",\n]\n";
        let (_, errors) = lexicon(&[("bad.toml", bad)]);
        let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(lines
            .iter()
            .any(|l| l.starts_with("bad.toml:2:") && l.contains("unknown lexicon category")));
        assert!(lines
            .iter()
            .any(|l| l.starts_with("bad.toml:6:") && l.contains("nothing left")));
        assert!(lines
            .iter()
            .any(|l| l.starts_with("bad.toml:7:") && l.contains("at least 3 letters")));
        let (_, errors) = lexicon(&[("syntax.toml", "language = \"en\"\ncategories = [\n")]);
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].to_string().starts_with("syntax.toml:"),
            "{}",
            errors[0]
        );
    }
}
