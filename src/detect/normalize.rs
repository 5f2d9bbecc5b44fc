//! Text normalisation: turns what teenagers and scammers type into a canonical ASCII
//! form the lexicon automaton can match, keeping, for every output byte, the byte
//! offset in the original text it came from (so excerpts quote the original).
//!
//! The output is a sequence of tokens of `[a-z0-9_]`, one space between tokens and one
//! space at each end, so a phrase `" send nudes "` matches on word boundaries only.
//! Steps, per character then per token:
//! - invisible characters are dropped, inside words too (`nu\u{200B}des` = `nudes`):
//!   zero-width and format characters, soft hyphen, variation selectors, skin tones,
//!   tags, combining marks (`n̶u̶d̶e̶s̶`);
//! - emoji become tokens (`emoji_camera`, `emoji_peach` ...), `€ £ $` become currency tokens;
//! - compatibility decomposition (NFKD: fullwidth, mathematical bold/italic/script...,
//!   circled and parenthesised letters) and small tables (small capitals, negative
//!   circled letters, regional indicators), accents dropped, case folded;
//! - Cyrillic and Greek letters read as the Latin letters they look like in a Latin word
//!   or a word of look-alikes (`nцdеs`, `ѕех`), transliterated in real Russian, Ukrainian
//!   or Greek text (`привет` -> `privet`);
//! - anything else that is not a letter or a digit separates tokens;
//! - three or more lone letters in a row are joined (`n u d e s`, `s.n.a.p`), with
//!   leetspeak digits among them (`n u d 3 s`, `p 1 c s`), but not sentence letters
//!   (`u r a`, `y o`) nor quantities (`i have 2 cats`, `à 1 h`, `1 2 3`); spelled-out
//!   text keeps its word breaks (`j.a.i t.o.u.t`, `s e n d  m e`);
//! - letter repetitions collapsed (`pleeease` -> `please`; also `good` -> `god`: the
//!   lexicon goes through the same function, so both sides agree);
//! - SMS abbreviations expanded (`u` -> `you`, `stp` -> `s il te plait`);
//! - leetspeak inside words undone (`s3x` -> `sex`, `n00dz` -> `nodz`, `m!ns` -> `mins`),
//!   while digits that stand alone or lead a token (`1h`, `20h30`, `200`) are kept for
//!   deadlines.

use unicode_normalization::char::{decompose_compatible, is_combining_mark};

/// A normalised text and its offset map. Reuse one value across messages: `normalize`
/// clears it, so steady-state processing allocates nothing.
#[derive(Default, Debug, Clone)]
pub struct Normalized {
    text: Vec<u8>,
    starts: Vec<u32>,
    /// Scratch: the raw token being read (lower case, digits, `$`, `@` kept).
    tok: Vec<u8>,
    tok_starts: Vec<u32>,
    tok_end: u32,
    /// Scratch: a run of single-letter tokens that may be a spaced-out word: the
    /// letter, where its character starts and ends in the input, a hyphen after it, the
    /// white space before it.
    singles: Vec<Single>,
    /// White space characters since the last token ended (word gaps in spaced-out text).
    gap_spaces: u8,
    /// An apostrophe stood between the previous token and the current one.
    apostrophe_before: bool,
    /// A token of plain ASCII letters being written straight into `text` (the fast path).
    direct: Option<Direct>,
    /// Scratch for the token after collapsing and leet.
    word: Vec<u8>,
    word_starts: Vec<u32>,
    has_digit: bool,
    /// The Cyrillic and Greek letters of the raw token (their place in `tok` holds a
    /// placeholder until the token ends): which reading they get depends on the word.
    alt: Vec<(u32, char)>,
    /// The raw token holds a Latin letter (ASCII, accented, fullwidth, bold...).
    tok_latin: bool,
    /// Whether the message is real Cyrillic or Greek text; read at the first such letter.
    native: Option<bool>,
}

/// Where a fast-path token started: in `text`, and in the input.
#[derive(Clone, Copy, Debug)]
struct Direct {
    from: usize,
    start: u32,
    raw_len: u32,
}

impl Normalized {
    pub fn new() -> Self {
        Self::default()
    }

    /// The normalised bytes, padded with one space at each end.
    pub fn as_bytes(&self) -> &[u8] {
        &self.text
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.text).unwrap_or("")
    }

    /// Whether any digit survived normalisation (durations, clock times, amounts).
    pub fn has_digit(&self) -> bool {
        self.has_digit
    }

    /// The original byte range that the normalised range `start..end` came from.
    /// `end` is exclusive; both must be within `0..=len`.
    pub fn original_span(&self, start: usize, end: usize) -> (usize, usize) {
        let s = self.starts.get(start).copied().unwrap_or(0) as usize;
        let e = self
            .starts
            .get(end.min(self.starts.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as usize;
        (s, e.max(s))
    }

    fn push_word(&mut self, bytes: &[u8], starts: Option<&[u32]>, first: u32, end: u32) {
        for (i, &b) in bytes.iter().enumerate() {
            self.has_digit |= b.is_ascii_digit();
            self.text.push(b);
            self.starts.push(starts.map_or(first, |s| s[i]));
        }
        self.text.push(b' ');
        self.starts.push(end);
    }
}

/// Normalises `input` into `out` (cleared first).
pub fn normalize(input: &str, out: &mut Normalized) {
    out.text.clear();
    out.starts.clear();
    out.tok.clear();
    out.tok_starts.clear();
    out.singles.clear();
    out.alt.clear();
    out.tok_latin = false;
    out.native = None;
    out.gap_spaces = 0;
    out.direct = None;
    out.apostrophe_before = false;
    out.has_digit = false;
    out.text.push(b' ');
    out.starts.push(0);
    let bytes = input.as_bytes();
    let mut at = 0usize;
    while at < bytes.len() {
        let b = bytes[at];
        let i = at as u32;
        // ASCII, most of chat: no decoding.
        if b < 0x80 {
            if b.is_ascii_alphabetic()
                && out.tok.is_empty()
                && (out.direct.is_some() || out.singles.is_empty())
            {
                // Fast path: letters go straight to the output, repeats collapsed.
                let l = b.to_ascii_lowercase();
                let from = out.text.len();
                let d = out.direct.get_or_insert(Direct {
                    from,
                    start: i,
                    raw_len: 0,
                });
                d.raw_len += 1;
                if out.text.len() == d.from || out.text.last() != Some(&l) {
                    out.text.push(l);
                    out.starts.push(i);
                }
                out.tok_end = i + 1;
            } else if b.is_ascii_alphanumeric()
                || b == b'$'
                || b == b'@'
                || bang_is_i(out, bytes, at)
            {
                undirect(out, bytes);
                out.tok.push(if b == b'!' {
                    b'i'
                } else {
                    b.to_ascii_lowercase()
                });
                out.tok_starts.push(i);
                out.tok_end = i + 1;
                out.tok_latin |= b.is_ascii_alphabetic();
            } else {
                end_token_sep(out, b == b'\'', b == b'-');
                if b.is_ascii_whitespace() {
                    out.gap_spaces = out.gap_spaces.saturating_add(1);
                }
            }
            at += 1;
            continue;
        }
        let Some(c) = input[at..].chars().next() else {
            break;
        };
        at += c.len_utf8();
        let next = at as u32;
        if is_invisible(c) {
            // The fast path re-reads contiguous input: leave it before skipping.
            undirect(out, bytes);
            continue;
        }
        if let Some(word) = symbol_token(c) {
            end_token(out, false);
            flush_singles(out);
            // The emoji's variation selector and skin tone belong to its quote.
            while let Some(m) = input[at..].chars().next().filter(|&m| is_invisible(m)) {
                at += m.len_utf8();
            }
            out.push_word(word.as_bytes(), None, i, at as u32);
            continue;
        }
        if c == '\u{2019}' || c == '\u{2018}' || c == '\u{02BC}' {
            end_token(out, true);
            continue;
        }
        if ('\u{1F1E6}'..='\u{1F1FF}').contains(&c) {
            // Regional indicators: two in a row are a flag, one alone is a letter
            // ("🇳 🇺 🇩 🇪 🇸", or with invisible characters between them).
            let second = input[at..].chars().next();
            if second.is_some_and(|d| ('\u{1F1E6}'..='\u{1F1FF}').contains(&d)) {
                at += 4;
                end_token(out, false);
                continue;
            }
            undirect(out, bytes);
            out.tok.push(b'a' + (c as u32 - 0x1F1E6) as u8);
            out.tok_starts.push(i);
            out.tok_end = next;
            out.tok_latin = true;
            continue;
        }
        if ('\u{0370}'..='\u{052F}').contains(&c) && script_letter(c).is_some() {
            // Cyrillic or Greek: read when the word ends, as a look-alike or transliterated.
            undirect(out, bytes);
            if out.native.is_none() {
                out.native = Some(is_native_text(input));
            }
            out.alt.push((out.tok.len() as u32, c));
            out.tok.push(b'#');
            out.tok_starts.push(i);
            out.tok_end = next;
            continue;
        }
        undirect(out, bytes);
        let mut pushed = false;
        let mut latin = false;
        fold_char(c, &mut |d| {
            out.tok.push(d);
            out.tok_starts.push(i);
            out.tok_end = next;
            pushed = true;
            latin |= d.is_ascii_lowercase();
        });
        out.tok_latin |= latin;
        if !pushed {
            end_token(out, false);
            if c.is_whitespace() {
                out.gap_spaces = out.gap_spaces.saturating_add(1);
            }
        }
    }
    end_token(out, false);
    flush_singles(out);
    if out.text.len() == 1 {
        // Nothing readable: keep the single padding space.
        out.starts[0] = input.len() as u32;
    }
}

/// Whether the `!` at `at` stands for an `i` (`m!ns`, `b!tch`, `sh!t`): between two
/// letters, one of the two sides a single letter or two; not after a word and before
/// another (`hey!how`, `ok!see`).
fn bang_is_i(out: &Normalized, bytes: &[u8], at: usize) -> bool {
    if bytes[at] != b'!' {
        return false;
    }
    let left = match out.direct {
        Some(d) if out.tok.is_empty() => d.raw_len as usize,
        _ => out
            .tok
            .iter()
            .rev()
            .take_while(|b| b.is_ascii_lowercase())
            .count(),
    };
    let right = bytes[at + 1..]
        .iter()
        .take_while(|b| b.is_ascii_alphabetic())
        .count();
    left >= 1 && right >= 1 && (left == 1 || right == 1)
}

/// Ends the raw token being read. `apostrophe` says the separator was an apostrophe,
/// which never stands inside a spaced-out word ("i'm a" is not "ima").
fn end_token(out: &mut Normalized, apostrophe: bool) {
    end_token_sep(out, apostrophe, false)
}

/// `hyphen`: the separator was a hyphen; a lone letter before one (`t-shirt`) is no
/// abbreviation, but hyphenated letters may still spell a word (`s-e-x`).
fn end_token_sep(out: &mut Normalized, apostrophe: bool, hyphen: bool) {
    if let Some(d) = out.direct.take() {
        if d.raw_len > 1 {
            // A fast-path word is already in the output: only abbreviations remain.
            if let Some(exp) = abbreviation(&out.text[d.from..]) {
                out.text.truncate(d.from);
                out.starts.truncate(d.from);
                push_expansion(out, exp, d.start, out.tok_end);
            } else {
                out.text.push(b' ');
                out.starts.push(out.tok_end);
            }
            out.apostrophe_before = apostrophe;
            out.gap_spaces = 0;
            return;
        }
        // A single letter goes the general way (spaced-out words, elisions).
        out.tok.push(out.text[d.from]);
        out.tok_starts.push(d.start);
        out.text.truncate(d.from);
        out.starts.truncate(d.from);
    }
    if !out.alt.is_empty() {
        resolve_script(out);
    }
    out.tok_latin = false;
    if out.tok.is_empty() {
        out.apostrophe_before |= apostrophe;
        return;
    }
    let spaces = std::mem::take(&mut out.gap_spaces);
    // A lone letter or digit waits: it may be part of a spaced-out word (`n u d 3 s`).
    let single = out.tok.len() == 1 && out.tok[0].is_ascii_alphanumeric();
    if single && !out.apostrophe_before && !apostrophe {
        out.singles
            .push((out.tok[0], out.tok_starts[0], out.tok_end, hyphen, spaces));
    } else {
        flush_singles(out);
        let tok = std::mem::take(&mut out.tok);
        let starts = std::mem::take(&mut out.tok_starts);
        if (apostrophe || out.apostrophe_before) && tok.len() == 1 && tok[0].is_ascii_alphanumeric()
        {
            // An elided word (t'as, c'est, j'ai) or a contraction's tail (can't, it's)
            // is no abbreviation. A lone `$` or `@` is no word: `word` reads it.
            out.push_word(&tok, Some(&starts), 0, out.tok_end);
        } else {
            word(out, &tok, &starts, out.tok_end);
        }
        out.tok = tok;
        out.tok_starts = starts;
    }
    out.tok.clear();
    out.tok_starts.clear();
    out.apostrophe_before = apostrophe;
}

/// Reads the Cyrillic and Greek letters of the raw token, now that the whole word is
/// known. In a word with a Latin letter they are look-alikes (`nцdеs`, `ѕeх`); in a word
/// of them only, look-alikes too if every letter has a Latin twin and the word holds a
/// letter that everyday text does not use (`ѕ`, `ԁ`), or every letter is a close twin and
/// the message is no real Cyrillic or Greek text (`ѕех` in an English chat). Otherwise the
/// word is real Russian, Ukrainian or Greek and is transliterated (`привет` -> `privet`),
/// the way people type it in Latin letters, so no look-alike junk reaches the lexicons.
fn resolve_script(out: &mut Normalized) {
    let look = out.tok_latin || {
        let mut all_look = true;
        let mut all_close = true;
        let mut marker = false;
        for &(_, c) in &out.alt {
            let l = script_letter(c).unwrap_or(ScriptLetter::NONE);
            all_look &= l.look != 0;
            all_close &= l.look != 0 && !l.loose;
            marker |= l.marker;
        }
        all_look && (marker || (all_close && out.native != Some(true)))
    };
    out.word.clear();
    out.word_starts.clear();
    let mut alt = out.alt.iter().peekable();
    for (k, (&b, &s)) in out.tok.iter().zip(&out.tok_starts).enumerate() {
        match alt.next_if(|(at, _)| *at as usize == k) {
            Some(&(_, c)) => {
                let l = script_letter(c).unwrap_or(ScriptLetter::NONE);
                if look && l.look != 0 {
                    out.word.push(l.look);
                    out.word_starts.push(s);
                } else {
                    for t in l.translit.bytes() {
                        out.word.push(t);
                        out.word_starts.push(s);
                    }
                }
            }
            None => {
                out.word.push(b);
                out.word_starts.push(s);
            }
        }
    }
    std::mem::swap(&mut out.tok, &mut out.word);
    std::mem::swap(&mut out.tok_starts, &mut out.word_starts);
    out.alt.clear();
}

/// Whether `text` is real Cyrillic or Greek writing: it has a word of those letters only
/// (no Latin letter) with a letter that has no close Latin twin (`и`, `л`, `я`, `λ`), and
/// none of the letters that only obfuscation uses.
fn is_native_text(text: &str) -> bool {
    let (mut script, mut latin, mut loose, mut marker) = (false, false, false, false);
    for c in text.chars().chain(std::iter::once(' ')) {
        if is_invisible(c) {
            continue;
        }
        if let Some(l) = ('\u{0370}'..='\u{052F}')
            .contains(&c)
            .then(|| script_letter(c))
            .flatten()
        {
            script = true;
            loose |= l.look == 0 || l.loose;
            marker |= l.marker;
        } else if c.is_alphanumeric() {
            latin |= c.is_alphabetic();
        } else {
            if script && !latin && loose && !marker {
                return true;
            }
            (script, latin, loose, marker) = (false, false, false, false);
        }
    }
    false
}

/// Moves a fast-path token back into the token buffer (it turned out to hold a digit,
/// a sign or a non-ASCII letter): its raw letters are re-read from the input.
fn undirect(out: &mut Normalized, input: &[u8]) {
    if let Some(d) = out.direct.take() {
        out.text.truncate(d.from);
        out.starts.truncate(d.from);
        for k in d.start..d.start + d.raw_len {
            out.tok.push(input[k as usize].to_ascii_lowercase());
            out.tok_starts.push(k);
        }
        out.tok_latin = true;
    }
}

/// Letters that are words or abbreviations on their own: a run made only of them is
/// ordinary text ("u r a star", "y o", "e a"), not a spaced-out word.
fn is_word_letter(b: u8) -> bool {
    matches!(
        b,
        b'a' | b'e' | b'i' | b'u' | b'r' | b'y' | b'c' | b'g' | b't' | b'o'
    )
}

/// A lone digit that may stand for a letter (`0 1 3 4 5 7 8 9`; not `2` nor `6`).
fn is_leet_digit(b: u8) -> bool {
    b.is_ascii_digit() && unleet(b) != b
}

/// Lone characters waiting in `Normalized::singles`: the character, where it starts and
/// ends in the input, a hyphen after it, the white space before it.
type Single = (u8, u32, u32, bool, u8);

/// Writes out a run of lone letters and digits (`n u d 3 s`, `s.3.x`, `i have 2 cats`,
/// `a 1 h`).
///
/// A digit joins the letters around it only as leetspeak: a letter-like digit between
/// two letters, not before an `h` (`à 1 h`, `a 5 h 30`: a duration or a clock time), and
/// not after letters that are all words by themselves (`on a 3 j`, `y a 2 m`: a
/// quantity); any other digit (`1 2 3`, `i 2 u`, a digit at the start or end) stands
/// alone and splits the run. Each part is then joined into one word if it has at least
/// three characters, two of them letters, and not only letters that are words by
/// themselves (`u r a`, `y o`).
///
/// Spelled-out text with word breaks (`j.a.i t.o.u.t`, `s e n d  m e`: wider gaps
/// between words than inside them, one word of three letters at least) is read word by
/// word, short words (`d.e`, `m e`) and a last leetspeak digit (`n.u.d.3`) included.
fn flush_singles(out: &mut Normalized) {
    if out.singles.is_empty() {
        return;
    }
    let singles = std::mem::take(&mut out.singles);
    // The narrowest gap of the run is the one inside words.
    let narrow = singles.iter().skip(1).map(|s| s.4).min().unwrap_or(0);
    let breaks = || (1..=singles.len()).filter(|&k| k == singles.len() || singles[k].4 > narrow);
    let mut from = 0;
    let mut long_word = false;
    for k in breaks() {
        long_word |= singles[from..k]
            .iter()
            .filter(|s| s.0.is_ascii_lowercase())
            .count()
            >= 3;
        from = k;
    }
    let spelled = long_word && breaks().count() > 1;
    let mut from = 0;
    for k in breaks() {
        flush_word(out, &singles[from..k], spelled);
        from = k;
    }
    out.singles = singles;
    out.singles.clear();
}

/// One word of a run of lone characters: split at digits that are no leetspeak.
fn flush_word(out: &mut Normalized, singles: &[Single], spelled: bool) {
    let mut from = 0;
    for (k, &(b, ..)) in singles.iter().enumerate() {
        if !b.is_ascii_digit() {
            continue;
        }
        let letters_before = singles[from..k]
            .iter()
            .filter(|r| r.0.is_ascii_lowercase())
            .count();
        let leet = is_leet_digit(b)
            && k > from
            && singles[k - 1].0.is_ascii_lowercase()
            && !singles[from..k]
                .iter()
                .all(|r| !r.0.is_ascii_lowercase() || is_word_letter(r.0))
            && match singles.get(k + 1) {
                Some(n) => n.0.is_ascii_lowercase() && n.0 != b'h',
                // `n.u.d.3`: the last letter of a spelled-out word.
                None => spelled && letters_before >= 2,
            };
        if !leet {
            flush_run(out, &singles[from..k], spelled);
            flush_run(out, &singles[k..=k], spelled);
            from = k + 1;
        }
    }
    flush_run(out, &singles[from..], spelled);
}

/// One run of `flush_singles`: joined into a word, or each character alone.
fn flush_run(out: &mut Normalized, run: &[Single], spelled: bool) {
    let Some(&(last, _, end, ..)) = run.last() else {
        return;
    };
    let letters = run.iter().filter(|r| r.0.is_ascii_lowercase()).count();
    let words_only = run
        .iter()
        .all(|r| !r.0.is_ascii_lowercase() || is_word_letter(r.0));
    let join = if spelled {
        run.len() >= 2 && letters >= 1
    } else {
        run.len() >= 3 && letters >= 2 && !words_only
    };
    if join {
        let mut bytes: Vec<u8> = run.iter().map(|r| r.0).collect();
        let starts: Vec<u32> = run.iter().map(|r| r.1).collect();
        if last.is_ascii_digit() {
            // A last leetspeak digit: `word` reads digits between letters only.
            if let Some(b) = bytes.last_mut() {
                *b = unleet(last);
            }
        }
        word(out, &bytes, &starts, end);
        return;
    }
    for &(b, s, own_end, hyphen, _) in run {
        // The letter's own end, not `s + 1`: it may be a multi-byte `é` or `ú`.
        if hyphen {
            out.push_word(&[b], None, s, own_end);
        } else {
            word(out, &[b], &[s], own_end);
        }
    }
}

/// Finishes one raw token: collapse, abbreviations, leetspeak, currency signs.
fn word(out: &mut Normalized, tok: &[u8], starts: &[u32], end: u32) {
    if tok.iter().all(u8::is_ascii_lowercase) {
        // Letters only, the common case: collapse straight into the output.
        let from = out.text.len();
        let mut prev = 0u8;
        for (&b, &s) in tok.iter().zip(starts) {
            if b != prev {
                out.text.push(b);
                out.starts.push(s);
                prev = b;
            }
        }
        if let Some(exp) = abbreviation(&out.text[from..]) {
            out.text.truncate(from);
            out.starts.truncate(from);
            push_expansion(out, exp, starts[0], end);
        } else {
            out.text.push(b' ');
            out.starts.push(end);
        }
        return;
    }
    let first_letter = tok.iter().position(|b| b.is_ascii_lowercase());
    let last_letter = tok.iter().rposition(|b| b.is_ascii_lowercase());
    // `$` or `@` with no letter after it splits the token; `$` then stands for dollars.
    if let Some(p) = tok
        .iter()
        .enumerate()
        .position(|(k, b)| (*b == b'$' || *b == b'@') && !is_leet(k, *b, first_letter, last_letter))
    {
        if p > 0 {
            word(out, &tok[..p], &starts[..p], starts[p]);
        }
        if tok[p] == b'$' {
            out.push_word(b"usd", None, starts[p], starts[p] + 1);
        }
        if p + 1 < tok.len() {
            word(out, &tok[p + 1..], &starts[p + 1..], end);
        }
        return;
    }
    out.word.clear();
    out.word_starts.clear();
    collapse_into(tok, starts, &mut out.word, &mut out.word_starts);
    if let Some(exp) = abbreviation(&out.word) {
        push_expansion(out, exp, starts[0], end);
        return;
    }
    let leet = tok
        .iter()
        .enumerate()
        .any(|(k, &b)| !b.is_ascii_lowercase() && is_leet(k, b, first_letter, last_letter));
    if leet {
        let mapped: Vec<u8> = tok
            .iter()
            .enumerate()
            .map(|(k, &b)| {
                if is_leet(k, b, first_letter, last_letter) {
                    unleet(b)
                } else {
                    b
                }
            })
            .collect();
        out.word.clear();
        out.word_starts.clear();
        collapse_into(&mapped, starts, &mut out.word, &mut out.word_starts);
        if let Some(exp) = abbreviation(&out.word) {
            push_expansion(out, exp, starts[0], end);
            return;
        }
    }
    let w = std::mem::take(&mut out.word);
    let ws = std::mem::take(&mut out.word_starts);
    out.push_word(&w, Some(&ws), 0, end);
    out.word = w;
    out.word_starts = ws;
}

fn push_expansion(out: &mut Normalized, exp: &str, start: u32, end: u32) {
    let mut parts = exp.split(' ').peekable();
    while let Some(part) = parts.next() {
        let part_end = if parts.peek().is_none() { end } else { start };
        out.push_word(part.as_bytes(), None, start, part_end);
    }
}

/// Whether the non-letter at `k` stands for a letter: a digit between letters
/// (`s3x`), or `$`/`@` before a letter (`$exy`, `@ss`).
fn is_leet(k: usize, b: u8, first_letter: Option<usize>, last_letter: Option<usize>) -> bool {
    match (first_letter, last_letter) {
        (Some(_), Some(l)) if b == b'$' || b == b'@' => k < l,
        (Some(f), Some(l)) => b.is_ascii_digit() && f < k && k < l,
        _ => false,
    }
}

fn unleet(b: u8) -> u8 {
    match b {
        b'0' => b'o',
        b'1' => b'i',
        b'3' => b'e',
        b'4' => b'a',
        b'5' | b'$' => b's',
        b'7' => b't',
        b'8' => b'b',
        b'9' => b'g',
        b'@' => b'a',
        other => other,
    }
}

/// Copies `tok` dropping a letter equal to the one before it (digits are kept).
fn collapse_into(tok: &[u8], starts: &[u32], word: &mut Vec<u8>, word_starts: &mut Vec<u32>) {
    for (k, &b) in tok.iter().enumerate() {
        if b.is_ascii_lowercase() && word.last() == Some(&b) {
            continue;
        }
        word.push(b);
        word_starts.push(starts[k]);
    }
}

/// Folds one non-ASCII character to ASCII letters or digits (none if it is not one):
/// compatibility decomposition (fullwidth `ｎ`, mathematical `𝐧 𝑛 𝓃 𝕟 𝗇 𝚗`, circled `ⓝ`,
/// parenthesised `⒩`, superscript `ⁿ`), accents dropped, then the hand tables.
fn fold_char(c: char, push: &mut impl FnMut(u8)) {
    if let Some(s) = special_fold(c) {
        s.bytes().for_each(push);
        return;
    }
    // Negative circled and negative squared letters (🅝 🅽): no decomposition.
    for base in [0x1F150u32, 0x1F170] {
        if (base..base + 26).contains(&(c as u32)) {
            push(b'a' + (c as u32 - base) as u8);
            return;
        }
    }
    decompose_compatible(c, |d| {
        if is_combining_mark(d) {
            return;
        }
        if ('\u{0370}'..='\u{052F}').contains(&d) {
            // Mathematical Greek (𝛂 𝛐): styled letters, read as look-alikes.
            if let Some(l) = script_letter(d) {
                if l.look != 0 {
                    push(l.look);
                } else {
                    l.translit.bytes().for_each(&mut *push);
                }
            }
            return;
        }
        for l in d.to_lowercase() {
            if l.is_ascii_alphanumeric() {
                push(l.to_ascii_lowercase() as u8);
            } else if let Some(s) = special_fold(l) {
                s.bytes().for_each(&mut *push);
            }
        }
    });
}

/// Latin letters that decomposition leaves alone: ligatures, stroked letters, and the
/// small capitals of "font generators" (`ɴᴜᴅᴇꜱ`).
fn special_fold(c: char) -> Option<&'static str> {
    Some(match c {
        'ß' | 'ẞ' => "ss",
        'æ' | 'Æ' => "ae",
        'œ' | 'Œ' => "oe",
        'ø' | 'Ø' => "o",
        'ł' | 'Ł' => "l",
        'đ' | 'Đ' | 'ð' | 'Ð' => "d",
        'þ' | 'Þ' => "th",
        'ı' => "i",
        'ɑ' | 'ᴀ' => "a",
        'ʙ' => "b",
        'ᴄ' => "c",
        'ᴅ' => "d",
        'ᴇ' => "e",
        'ꜰ' => "f",
        'ɡ' | 'ɢ' => "g",
        'ʜ' => "h",
        'ɪ' => "i",
        'ᴊ' => "j",
        'ᴋ' => "k",
        'ʟ' => "l",
        'ᴍ' => "m",
        'ɴ' => "n",
        'ᴏ' => "o",
        'ᴘ' => "p",
        'ʀ' => "r",
        'ꜱ' => "s",
        'ᴛ' => "t",
        'ᴜ' => "u",
        'ᴠ' => "v",
        'ᴡ' => "w",
        'ʏ' => "y",
        'ᴢ' => "z",
        _ => return None,
    })
}

/// How a Cyrillic or Greek letter reads in Latin letters.
#[derive(Clone, Copy, Debug)]
struct ScriptLetter {
    /// The Latin letter it looks like, or 0.
    look: u8,
    /// The likeness is loose (`и` for `u`, `я` for `r`, `π` for `n`: faux-Cyrillic).
    loose: bool,
    /// A letter of no everyday Russian, Ukrainian, Bulgarian or Greek text (`ѕ`, `ԁ`,
    /// `ԛ`, `ԝ`, `һ`, `ӏ`, `ϲ`, `ϳ`): obfuscation, not writing.
    marker: bool,
    /// Its usual chat transliteration (`ж` -> `zh`, `ы` -> `y`, `θ` -> `th`).
    translit: &'static str,
}

impl ScriptLetter {
    const NONE: Self = Self {
        look: 0,
        loose: false,
        marker: false,
        translit: "",
    };
}

/// The reading of a Cyrillic or Greek letter (`None` for anything else). Accented
/// letters (`ά`, `ѓ`) read as their base letter.
fn script_letter(c: char) -> Option<ScriptLetter> {
    let mut base = c;
    let translit = match transliterate(c) {
        Some(t) => t,
        None => {
            let mut first = None;
            unicode_normalization::char::decompose_canonical(c, |d| {
                first.get_or_insert(d);
            });
            base = first.filter(|&d| d != c)?;
            transliterate(base)?
        }
    };
    let (look, loose, marker) = look_alike(base).unwrap_or((0, false, false));
    Some(ScriptLetter {
        look,
        loose,
        marker,
        translit,
    })
}

/// The Latin letter a Cyrillic or Greek letter looks like (case matters: `Н` is an `h`,
/// `И` an `n` but `и` a `u`): the letter, whether the likeness is loose, and whether the
/// letter marks obfuscation.
fn look_alike(c: char) -> Option<(u8, bool, bool)> {
    const CLOSE: bool = false;
    const LOOSE: bool = true;
    let (l, loose) = match c {
        'а' | 'А' | 'Α' | 'α' => (b'a', CLOSE),
        'Д' | 'Δ' | 'Λ' => (b'a', LOOSE),
        'В' | 'Β' => (b'b', CLOSE),
        'в' | 'ь' | 'Ь' | 'ъ' | 'Ъ' | 'б' | 'Б' | 'β' => (b'b', LOOSE),
        'с' | 'С' | 'ϲ' | 'Ϲ' => (b'c', CLOSE),
        'ԁ' => (b'd', CLOSE),
        'д' | 'δ' => (b'd', LOOSE),
        'е' | 'Е' | 'ё' | 'Ё' | 'Ε' | 'ε' => (b'e', CLOSE),
        'э' | 'Э' | 'є' | 'Є' | 'Σ' => (b'e', LOOSE),
        'Н' | 'Η' | 'һ' | 'Һ' => (b'h', CLOSE),
        'н' => (b'h', LOOSE),
        'і' | 'І' | 'ї' | 'Ї' | 'Ι' | 'ι' => (b'i', CLOSE),
        'ј' | 'Ј' | 'ϳ' => (b'j', CLOSE),
        'к' | 'К' | 'Κ' | 'κ' => (b'k', CLOSE),
        'ӏ' | 'Ӏ' => (b'l', CLOSE),
        'М' | 'Μ' => (b'm', CLOSE),
        'м' => (b'm', LOOSE),
        'Ν' => (b'n', CLOSE),
        'п' | 'П' | 'И' | 'Й' | 'π' | 'Π' | 'η' => (b'n', LOOSE),
        'о' | 'О' | 'Ο' | 'ο' => (b'o', CLOSE),
        'σ' => (b'o', LOOSE),
        'р' | 'Р' | 'Ρ' | 'ρ' => (b'p', CLOSE),
        'ԛ' | 'Ԛ' => (b'q', CLOSE),
        'я' | 'Я' | 'г' | 'Г' => (b'r', LOOSE),
        'ѕ' | 'Ѕ' => (b's', CLOSE),
        'ς' => (b's', LOOSE),
        'Т' | 'Τ' | 'τ' => (b't', CLOSE),
        'т' => (b't', LOOSE),
        'υ' => (b'u', CLOSE),
        'и' | 'й' | 'ц' | 'Ц' | 'μ' => (b'u', LOOSE),
        'ν' => (b'v', CLOSE),
        'ԝ' | 'Ԝ' => (b'w', CLOSE),
        'ш' | 'Ш' | 'щ' | 'Щ' | 'ω' => (b'w', LOOSE),
        'х' | 'Х' | 'Χ' | 'χ' => (b'x', CLOSE),
        'ж' | 'Ж' => (b'x', LOOSE),
        'у' | 'У' | 'Υ' => (b'y', CLOSE),
        'γ' => (b'y', LOOSE),
        'Ζ' => (b'z', CLOSE),
        _ => return None,
    };
    let marker = matches!(
        c,
        'ѕ' | 'Ѕ' | 'ԁ' | 'ԛ' | 'Ԛ' | 'ԝ' | 'Ԝ' | 'һ' | 'Һ' | 'ӏ' | 'Ӏ' | 'ϲ' | 'Ϲ' | 'ϳ'
    );
    Some((l, loose, marker))
}

/// Chat transliteration of Cyrillic (Russian, Ukrainian, Belarusian, Serbian,
/// Macedonian) and Greek letters, either case.
fn transliterate(c: char) -> Option<&'static str> {
    let lower = if c.is_uppercase() {
        c.to_lowercase().next().unwrap_or(c)
    } else {
        c
    };
    Some(match lower {
        'а' | 'α' => "a",
        'б' => "b",
        'в' | 'β' => "v",
        'г' | 'ґ' | 'γ' => "g",
        'д' | 'δ' => "d",
        'е' | 'ё' | 'э' | 'ε' => "e",
        'ж' => "zh",
        'з' | 'ζ' => "z",
        'и' | 'і' | 'ι' | 'η' => "i",
        'й' | 'ы' | 'υ' => "y",
        'к' | 'κ' => "k",
        'л' | 'λ' => "l",
        'м' | 'μ' => "m",
        'н' | 'ν' => "n",
        'о' | 'ο' | 'ω' => "o",
        'п' | 'π' => "p",
        'р' | 'ρ' => "r",
        'с' | 'σ' | 'ς' | 'ϲ' => "s",
        'т' | 'τ' => "t",
        'у' | 'ў' => "u",
        'ф' | 'φ' => "f",
        'х' | 'һ' => "h",
        'ц' => "ts",
        'ч' | 'χ' => "ch",
        'ш' => "sh",
        'щ' => "sch",
        'ъ' | 'ь' => "",
        'ю' => "yu",
        'я' => "ya",
        'ї' => "yi",
        'є' => "ye",
        'ђ' => "dj",
        'ј' | 'ϳ' => "j",
        'љ' => "lj",
        'њ' => "nj",
        'ћ' => "c",
        'џ' | 'ѕ' => "dz",
        'ԁ' => "d",
        'ԛ' => "q",
        'ԝ' => "w",
        'ӏ' => "l",
        'θ' => "th",
        'ξ' => "x",
        'ψ' => "ps",
        _ => return None,
    })
}

/// Characters that carry nothing and may be slipped inside a word to hide it: zero-width
/// and other format characters (soft hyphen, joiners, direction marks, word joiner,
/// invisible operators, BOM), Hangul fillers, variation selectors, skin-tone modifiers,
/// tags, and combining marks (`n̶u̶d̶e̶s̶`, a decomposed `é`, the keycap of `1️⃣`).
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{061C}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{17B4}'
            | '\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1F3FB}'..='\u{1F3FF}'
            | '\u{E0000}'..='\u{E0FFF}'
    ) || (c >= '\u{0300}' && is_combining_mark(c))
}

/// Emoji and currency signs that carry meaning, as tokens. One token per meaning: every
/// emoji of a group reads the same (`💵 💶 💸 💳` are all `emoji_money`), so one spelling
/// in a lexicon phrase is enough. Variation selectors and skin tones after them are dropped
/// (`is_invisible`).
fn symbol_token(c: char) -> Option<&'static str> {
    Some(match c {
        '📷' | '📸' => "emoji_camera",
        '🤳' => "emoji_selfie",
        '📹' | '🎥' | '📽' | '📼' => "emoji_video",
        '🎞' => "emoji_film",
        '🍑' => "emoji_peach",
        '🍆' => "emoji_eggplant",
        '🍌' => "emoji_banana",
        '💦' => "emoji_droplets",
        '👅' => "emoji_tongue",
        '👄' | '🫦' => "emoji_lips",
        '💋' | '😘' | '😗' | '😙' | '😚' => "emoji_kiss",
        '👙' | '🩱' => "emoji_bikini",
        '👗' => "emoji_dress",
        '🩲' => "emoji_underwear",
        '😈' | '👿' => "emoji_devil",
        '🤤' => "emoji_drooling",
        '😏' => "emoji_smirk",
        '🥵' => "emoji_hot",
        '🔞' => "emoji_adult",
        '⏳' | '⌛' => "emoji_hourglass",
        '⏰' | '⏱' | '⏲' => "emoji_alarm",
        '\u{1F550}'..='\u{1F567}' => "emoji_clock",
        '💰' | '💵' | '💶' | '💷' | '💴' | '💸' | '💲' | '🤑' | '💳' => {
            "emoji_money"
        }
        '🎁' => "emoji_gift",
        '🤫' | '🤐' => "emoji_shush",
        '🔒' | '🔐' | '🔓' => "emoji_lock",
        '💣' => "emoji_bomb",
        '🔪' | '🗡' => "emoji_knife",
        '🔫' => "emoji_gun",
        '💀' | '☠' => "emoji_skull",
        '⚠' | '🚨' => "emoji_warning",
        '🙈' | '🙉' | '🙊' => "emoji_see_no_evil",
        '📱' | '📲' | '📞' | '☎' => "emoji_phone",
        '👻' => "emoji_ghost",
        '😭' | '😢' | '😿' => "emoji_crying",
        '🥺' => "emoji_pleading",
        '🔥' => "emoji_fire",
        '👀' | '👁' => "emoji_eyes",
        '😍' | '🥰' | '😻' | '❤' | '♥' | '❣' | '💕' | '💗' | '💖' | '💓' | '💞' | '💘' | '💝' => {
            "emoji_heart"
        }
        '€' => "eur",
        '£' => "gbp",
        _ => return None,
    })
}

/// SMS abbreviations, French and English, sorted by key for binary search.
/// Expansions are written in normalised form.
const ABBREVIATIONS: &[(&str, &str)] = &[
    ("2day", "today"),
    ("2moro", "tomorow"),
    ("2morow", "tomorow"),
    ("2nite", "tonight"),
    ("abt", "about"),
    ("ajd", "aujourd hui"),
    ("auj", "aujourd hui"),
    ("avc", "avec"),
    ("b4", "before"),
    ("bc", "because"),
    ("bcp", "beaucoup"),
    ("bday", "birthday"),
    ("bf", "boyfriend"),
    ("bjr", "bonjour"),
    ("bsr", "bonsoir"),
    ("c", "c est"),
    ("cant", "can t"),
    ("cb", "combien"),
    ("chui", "je suis"),
    ("cuz", "because"),
    ("dac", "d acord"),
    ("dont", "don t"),
    ("ds", "dans"),
    ("every1", "everyone"),
    ("g", "j ai"),
    ("gf", "girlfriend"),
    ("gime", "give me"),
    ("gona", "going to"),
    ("gota", "got to"),
    ("gr8", "great"),
    ("hbu", "how about you"),
    ("idk", "i don t know"),
    ("im", "i m"),
    ("ive", "i ve"),
    ("jai", "j ai"),
    ("jpeux", "je peux"),
    ("js", "je suis"),
    ("jsais", "je sais"),
    ("jsp", "je sais pas"),
    ("jsui", "je suis"),
    ("jsuis", "je suis"),
    ("jte", "je te"),
    ("jtm", "je t aime"),
    ("jvais", "je vais"),
    ("jveux", "je veux"),
    ("ki", "qui"),
    ("koi", "quoi"),
    ("l8r", "later"),
    ("leme", "let me"),
    ("lets", "let s"),
    ("mnt", "maintenant"),
    ("msg", "mesage"),
    ("mtn", "maintenant"),
    ("pcq", "parce que"),
    ("pk", "pourquoi"),
    ("pl", "people"),
    ("pls", "please"),
    ("plz", "please"),
    ("pq", "pourquoi"),
    ("pr", "pour"),
    ("qch", "quelque chose"),
    ("qd", "quand"),
    ("qn", "quelqu un"),
    ("r", "are"),
    ("rn", "right now"),
    ("slt", "salut"),
    ("some1", "someone"),
    ("stp", "s il te plait"),
    ("svp", "s il vous plait"),
    ("t", "t es"),
    ("tas", "t as"),
    ("tfk", "tu fais quoi"),
    ("tfq", "tu fais quoi"),
    ("thats", "that s"),
    ("thx", "thanks"),
    ("tjr", "toujours"),
    ("tjrs", "toujours"),
    ("tkt", "t inquiete"),
    ("tmr", "tomorow"),
    ("tmrw", "tomorow"),
    ("tonite", "tonight"),
    ("txt", "text"),
    ("u", "you"),
    ("ur", "your"),
    ("vid", "video"),
    ("vrm", "vraiment"),
    ("vrmt", "vraiment"),
    ("wana", "want to"),
    ("wat", "what"),
    ("whats", "what s"),
    ("wont", "won t"),
    ("wsh", "wesh"),
    ("wyd", "what you doing"),
    ("youre", "you re"),
    ("yr", "your"),
    ("yrs", "years"),
];

/// A word of at most 8 bytes packed into an integer (bytes are never zero, so words of
/// different lengths differ).
fn pack_word(word: &[u8]) -> u64 {
    word.iter().fold(0u64, |v, &b| v << 8 | b as u64)
}

/// Slots of the abbreviation hash table (a power of two, at most half full).
const ABBREVIATION_SLOTS: usize = 256;

fn slot(key: u64) -> usize {
    (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as usize % ABBREVIATION_SLOTS
}

/// The abbreviation table as an open-addressing hash table on packed words: one or two
/// integer probes per word, no string comparison.
fn abbreviation_table() -> &'static [(u64, &'static str)] {
    static TABLE: std::sync::OnceLock<Vec<(u64, &'static str)>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = vec![(0u64, ""); ABBREVIATION_SLOTS];
        for (k, e) in ABBREVIATIONS {
            let key = pack_word(k.as_bytes());
            let mut i = slot(key);
            while t[i].0 != 0 {
                i = (i + 1) % ABBREVIATION_SLOTS;
            }
            t[i] = (key, e);
        }
        t
    })
}

fn abbreviation(word: &[u8]) -> Option<&'static str> {
    if word.is_empty() || word.len() > 6 {
        return None;
    }
    let table = abbreviation_table();
    let key = pack_word(word);
    let mut i = slot(key);
    loop {
        match table[i] {
            (0, _) => return None,
            (k, e) if k == key => return Some(e),
            _ => i = (i + 1) % ABBREVIATION_SLOTS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        let mut n = Normalized::new();
        normalize(s, &mut n);
        n.as_str().trim().to_string()
    }

    #[test]
    fn every_abbreviation_is_found_and_the_table_has_room() {
        assert!(ABBREVIATIONS.len() * 2 <= ABBREVIATION_SLOTS);
        for (k, e) in ABBREVIATIONS {
            assert_eq!(abbreviation(k.as_bytes()), Some(*e), "{k}");
        }
        for miss in ["the", "hello", "nudes", "a", "zzzzzz"] {
            assert_eq!(abbreviation(miss.as_bytes()), None, "{miss}");
        }
    }

    #[test]
    fn abbreviations_are_sorted_and_collapsed() {
        for w in ABBREVIATIONS.windows(2) {
            assert!(w[0].0 < w[1].0, "{} !< {}", w[0].0, w[1].0);
        }
        for (k, _) in ABBREVIATIONS {
            // A key with a doubled letter could never be looked up after collapsing.
            assert!(
                !k.as_bytes()
                    .windows(2)
                    .any(|p| p[0] == p[1] && p[0].is_ascii_lowercase()),
                "{k}"
            );
        }
    }

    #[test]
    fn case_accents_and_punctuation() {
        assert_eq!(norm("T'as QUEL âge ?!"), "t as quel age");
        assert_eq!(norm("Ça va, élève"), "ca va eleve");
        assert_eq!(norm("Œuvre, straße"), "oeuvre strase");
    }

    #[test]
    fn compatibility_forms_and_homoglyphs() {
        assert_eq!(norm("ｎｕｄｅｓ"), "nudes"); // fullwidth
        assert_eq!(norm("𝐧𝐮𝐝𝐞𝐬"), "nudes"); // mathematical bold
        assert_eq!(norm("nцdеs"), "nudes"); // faux-Cyrillic ц for u, among Latin letters
        assert_eq!(norm("ѕех"), "sex"); // Cyrillic s, e, x
        assert_eq!(norm("nu\u{200B}des"), "nudes"); // zero-width space inside
        assert_eq!(norm("nu\u{200B}d3s"), "nudes");
        assert_eq!(norm("Nuuudés"), "nudes");
    }

    #[test]
    fn leetspeak_inside_words_only() {
        assert_eq!(norm("s3x"), "sex");
        assert_eq!(norm("n00dz"), "nodz");
        assert_eq!(norm("ph0t0s"), "photos");
        assert_eq!(norm("$exy p1c"), "sexy pic");
        assert_eq!(norm("500$"), "500 usd");
        assert_eq!(norm("t'as 1h"), "t as 1h");
        assert_eq!(norm("envoie 200€"), "envoie 200 eur");
        assert_eq!(norm("send $500"), "send usd 500");
        assert_eq!(norm("ce soir 20h30"), "ce soir 20h30");
    }

    #[test]
    fn repetitions_collapse() {
        assert_eq!(norm("pleeeease"), "please");
        assert_eq!(norm("nuuuudes"), "nudes");
        assert_eq!(norm("good"), "god");
        assert_eq!(norm("1000"), "1000");
    }

    #[test]
    fn spaced_and_dotted_letters_join() {
        assert_eq!(norm("send n u d e s"), "send nudes");
        assert_eq!(norm("add me on s.n.a.p"), "ad me on snap");
        assert_eq!(norm("s-e-x"), "sex");
        // Ordinary single-letter words stay words.
        assert_eq!(norm("u r a star"), "you are a star");
        assert_eq!(norm("I'm a girl"), "i m a girl");
        assert_eq!(norm("can't go, it's late"), "can t go it s late");
        assert_eq!(norm("no t-shirt"), "no t shirt");
        assert_eq!(norm("a b"), "a b");
    }

    #[test]
    fn sms_abbreviations_expand() {
        assert_eq!(norm("how old r u"), "how old are you");
        assert_eq!(norm("slt tkt stp"), "salut t inquiete s il te plait");
        assert_eq!(norm("plzzz"), "please");
        assert_eq!(norm("c l8r"), "c est later");
    }

    #[test]
    fn emoji_become_tokens() {
        assert_eq!(norm("📸?"), "emoji_camera");
        assert_eq!(norm("🍑🍆"), "emoji_peach emoji_eggplant");
        assert_eq!(norm("tic tac⏳"), "tic tac emoji_hourglass");
        assert_eq!(norm("❤️"), "emoji_heart");
    }

    #[test]
    fn offsets_point_into_the_original() {
        let text = "Tu as 1 HEURE pour payer 💸 sinon j'envoie";
        let mut n = Normalized::new();
        normalize(text, &mut n);
        let s = n.as_str();
        let at = s.find(" heure ").unwrap() + 1;
        let (a, b) = n.original_span(at, at + "heure".len());
        assert_eq!(&text[a..b], "HEURE");
        let at = s.find("emoji_money").unwrap();
        let (a, b) = n.original_span(at, at + "emoji_money".len());
        assert_eq!(&text[a..b], "💸");
        let at = s.find("envoie").unwrap();
        let (a, b) = n.original_span(at, at + "envoie".len());
        assert_eq!(&text[a..b], "envoie");
    }

    #[test]
    fn expansions_map_to_the_abbreviation() {
        let text = "r u ok";
        let mut n = Normalized::new();
        normalize(text, &mut n);
        let s = n.as_str();
        let at = s.find("you").unwrap();
        let (a, b) = n.original_span(at, at + 3);
        assert_eq!(&text[a..b], "u");
    }

    #[test]
    fn offsets_of_accented_single_letters_stay_on_char_boundaries() {
        // Found by tests/properties.rs (also fuzz/artifacts/normalize/): a single
        // letter that is not the last of a run ended at its start + 1, inside `é`.
        for text in ["é-é-3", "love ú ú", "à b", "ü r ü ok"] {
            let mut n = Normalized::new();
            normalize(text, &mut n);
            for i in 0..n.as_bytes().len() {
                let (s, _) = n.original_span(i, i);
                assert!(text.is_char_boundary(s), "{text:?}: byte {i} maps to {s}");
            }
        }
        let text = "love ú ú";
        let mut n = Normalized::new();
        normalize(text, &mut n);
        assert_eq!(n.as_str(), " love you you ");
        let (a, b) = n.original_span(1, " love you".len());
        assert_eq!(&text[a..b], "love ú");
    }

    #[test]
    fn a_sign_after_an_apostrophe_is_no_word() {
        // Found by tests/properties.rs (also fuzz/artifacts/normalize/): `'$` came out
        // as ` $ `, outside the `[a-z0-9_]` alphabet of the output.
        assert_eq!(norm("'$"), "usd");
        assert_eq!(norm("l'$"), "l usd");
        assert_eq!(norm("'@"), "");
        assert_eq!(norm("t'as"), "t as");
    }

    /// The original text that the normalised `phrase` of `text` came from: what an
    /// alert quotes as evidence.
    fn quote(text: &str, phrase: &str) -> String {
        let mut n = Normalized::new();
        normalize(text, &mut n);
        let s = n.as_str();
        let at = s
            .find(&format!(" {phrase} "))
            .unwrap_or_else(|| panic!("{phrase:?} not in {s:?}"))
            + 1;
        let (a, b) = n.original_span(at, at + phrase.len());
        text[a..b].to_string()
    }

    #[test]
    fn invisible_characters_inside_words_are_dropped() {
        let invisible = [
            '\u{200B}',
            '\u{200C}',
            '\u{200D}',
            '\u{200E}',
            '\u{200F}',
            '\u{2060}',
            '\u{2061}',
            '\u{2062}',
            '\u{2063}',
            '\u{2064}',
            '\u{FEFF}',
            '\u{00AD}',
            '\u{180E}',
            '\u{FE00}',
            '\u{FE0E}',
            '\u{FE0F}',
            '\u{1F3FB}',
            '\u{1F3FF}',
            '\u{202E}',
            '\u{2066}',
            '\u{3164}',
            '\u{E0041}',
            '\u{E0100}',
            '\u{034F}',
        ];
        for c in invisible {
            let text = format!("send nu{c}des");
            assert_eq!(norm(&text), "send nudes", "U+{:04X}", c as u32);
            assert_eq!(
                quote(&text, "nudes"),
                format!("nu{c}des"),
                "U+{:04X}",
                c as u32
            );
            // Several, and at the edges of the word.
            let text = format!("{c}s{c}{c}e{c}x{c}");
            assert_eq!(norm(&text), "sex", "U+{:04X}", c as u32);
        }
        // After a digit and with leetspeak: the word is still read whole.
        assert_eq!(norm("n\u{200B}u\u{200C}d\u{200D}3s"), "nudes");
        assert_eq!(norm("t'as 1\u{200B}h"), "t as 1h");
    }

    #[test]
    fn combining_marks_do_not_split_words() {
        // Strike-through and "zalgo" marks, and text typed in decomposed form.
        assert_eq!(norm("n\u{336}u\u{336}d\u{336}e\u{336}s\u{336}"), "nudes");
        assert_eq!(norm("s\u{30D}\u{317}e\u{34F}x\u{489}"), "sex");
        assert_eq!(norm("e\u{301}le\u{300}ve"), "eleve");
        assert_eq!(
            quote("un e\u{301}le\u{300}ve", "eleve"),
            "e\u{301}le\u{300}ve"
        );
        // Keycap digits: `1️⃣0️⃣` is 10.
        assert_eq!(
            norm("t'as 1\u{FE0F}\u{20E3}0\u{FE0F}\u{20E3} min"),
            "t as 10 min"
        );
    }

    #[test]
    fn styled_letters_fold_to_ascii() {
        for (styled, plain) in [
            ("ｓｅｎｄ ｎｕｄｅｓ", "send nudes"), // fullwidth
            ("𝐬𝐞𝐧𝐝 𝐧𝐮𝐝𝐞𝐬", "send nudes"),          // bold
            ("𝑠𝑒𝑛𝑑 𝑛𝑢𝑑𝑒𝑠", "send nudes"),          // italic
            ("𝒔𝒆𝒏𝒅 𝒏𝒖𝒅𝒆𝒔", "send nudes"),          // bold italic
            ("𝓈𝑒𝓃𝒹 𝓃𝓊𝒹𝑒𝓈", "send nudes"),          // script (with the letterlike holes)
            ("𝓼𝓮𝓷𝓭 𝓷𝓾𝓭𝓮𝓼", "send nudes"),          // bold script
            ("𝕤𝕖𝕟𝕕 𝕟𝕦𝕕𝕖𝕤", "send nudes"),          // double-struck
            ("𝔰𝔢𝔫𝔡 𝔫𝔲𝔡𝔢𝔰", "send nudes"),          // fraktur
            ("𝗌𝖾𝗇𝖽 𝗇𝗎𝖽𝖾𝗌", "send nudes"),          // sans-serif
            ("𝘀𝗲𝗻𝗱 𝗻𝘂𝗱𝗲𝘀", "send nudes"),          // sans-serif bold
            ("𝙨𝙚𝙣𝙙 𝙣𝙪𝙙𝙚𝙨", "send nudes"),          // sans-serif bold italic
            ("𝚜𝚎𝚗𝚍 𝚗𝚞𝚍𝚎𝚜", "send nudes"),          // monospace
            ("𝐒𝐄𝐍𝐃 𝐍𝐔𝐃𝐄𝐒", "send nudes"),          // bold capitals
            ("ⓢⓔⓝⓓ ⓝⓤⓓⓔⓢ", "send nudes"),          // circled
            ("ⓈⒺⓃⒹ ⓃⓊⒹⒺⓈ", "send nudes"),          // circled capitals
            ("⒮⒠⒩⒟ ⒩⒰⒟⒠⒮", "send nudes"),          // parenthesised
            ("🅢🅔🅝🅓 🅝🅤🅓🅔🅢", "send nudes"),          // negative circled
            ("🆂🅴🅽🅳 🅽🆄🅳🅴🆂", "send nudes"),          // negative squared
            ("🄽🅄🄳🄴🅂", "nudes"),                    // squared
            ("ꜱᴇɴᴅ ɴᴜᴅᴇꜱ", "send nudes"),          // small capitals
            ("ˢᵉⁿᵈ ⁿᵘᵈᵉˢ", "send nudes"),          // superscript
            ("🇳 🇺 🇩 🇪 🇸", "nudes"),                // regional indicators, spaced
            ("🇸\u{200B}🇪\u{200B}🇽", "sex"),        // ... or kept apart by a zero-width space
            ("t'as 𝟏𝟎 𝐦𝐢𝐧", "t as 10 min"),        // mathematical digits
            ("dans ３０ ｍｉｎ", "dans 30 min"),   // fullwidth digits
            ("avant ⑳h", "avant 20h"),             // circled number
        ] {
            assert_eq!(norm(styled), plain, "{styled}");
        }
        // Two regional indicators in a row are a flag, not letters.
        assert_eq!(norm("🇫🇷 ici"), "ici");
        // Offsets: the quote is the styled word, on char boundaries.
        assert_eq!(quote("send 𝐧𝐮𝐝𝐞𝐬 now", "nudes"), "𝐧𝐮𝐝𝐞𝐬");
        assert_eq!(quote("ok ⒩⒰⒟⒠⒮?", "nudes"), "⒩⒰⒟⒠⒮");
        assert_eq!(quote("ɴᴜᴅᴇꜱ pls", "nudes"), "ɴᴜᴅᴇꜱ");
        assert_eq!(quote("🇳 🇺 🇩 🇪 🇸!", "nudes"), "🇳 🇺 🇩 🇪 🇸");
    }

    #[test]
    fn cyrillic_and_greek_look_alikes_among_latin_letters() {
        // One or a few look-alikes in a Latin word.
        assert_eq!(norm("send nudеs"), "send nudes"); // Cyrillic е
        assert_eq!(norm("ѕend рiсs"), "send pics"); // Cyrillic ѕ, р, с
        assert_eq!(norm("nцdеs"), "nudes"); // faux-Cyrillic ц for u
        assert_eq!(norm("ѕεx"), "sex"); // Greek ε
        assert_eq!(norm("ρiϲs"), "pics"); // Greek ρ, lunate sigma
        assert_eq!(norm("ΝUDΕЅ"), "nudes"); // Greek capitals Ν Ε, Cyrillic Ѕ
        assert_eq!(norm("sпар"), "snap"); // п for n, Cyrillic а and р
                                          // Words of look-alikes only, in a Latin message or with a letter only
                                          // obfuscation uses (ѕ, ԁ).
        assert_eq!(norm("ѕех"), "sex");
        assert_eq!(norm("ѕеnd пцԁеѕ"), "send nudes");
        assert_eq!(norm("send me ѕех pics"), "send me sex pics");
        // Offsets: the quote is the disguised word.
        assert_eq!(quote("pls send nцdеs ok", "nudes"), "nцdеs");
        assert_eq!(quote("ѕех?", "sex"), "ѕех");
    }

    #[test]
    fn real_russian_and_greek_text_is_transliterated() {
        // Not look-alike junk (`привет` would read `pubet`): the chat transliteration,
        // the way the same people type it in Latin letters.
        assert_eq!(norm("Привет, как дела?"), "privet kak dela");
        assert_eq!(norm("ты где? пиши мне"), "ty gde pishi mne");
        assert_eq!(norm("скинь фото"), "skin foto");
        assert_eq!(norm("он сам"), "on sam");
        assert_eq!(norm("Καλημέρα, τι κάνεις;"), "kalimera ti kaneis");
        assert_eq!(norm("щас, жду"), "schas zhdu");
        assert_eq!(norm("привіт, як справи"), "privit yak spravi");
        assert_eq!(quote("Привет!", "privet"), "Привет");
        // A real Russian message keeps its look-alike-only words Russian too.
        assert_eq!(norm("секс? нет"), "seks net");
    }

    #[test]
    fn an_exclamation_mark_inside_a_word_is_an_i() {
        assert_eq!(norm("30 m!ns"), "30 mins");
        assert_eq!(norm("b!tc0in"), "bitcoin");
        assert_eq!(norm("sh!t"), "shit");
        assert_eq!(norm("p!cs!!"), "pics");
        assert_eq!(quote("send p!cs now", "pics"), "p!cs");
        // Punctuation between words stays punctuation.
        assert_eq!(norm("hey!how are u"), "hey how are you");
        assert_eq!(norm("ok!see u"), "ok se you");
        assert_eq!(norm("wow!!! so cool!"), "wow so col");
        assert_eq!(norm("!a"), "a");
    }

    #[test]
    fn spaced_letters_with_leetspeak_join() {
        assert_eq!(norm("send n u d 3 s"), "send nudes");
        assert_eq!(norm("s.3.x"), "sex");
        assert_eq!(norm("s 3 x y"), "sexy");
        assert_eq!(norm("n-u-d-e-s"), "nudes");
        assert_eq!(norm("n_u_d_e_s"), "nudes");
        assert_eq!(norm("p 1 c s"), "pics");
        assert_eq!(norm("n . u . d . e . s"), "nudes");
        assert_eq!(quote("send p 1 c s now", "pics"), "p 1 c s");
        assert_eq!(quote("s.3.x?", "sex"), "s.3.x");
    }

    #[test]
    fn spelled_out_words_keep_their_word_breaks() {
        // Dots inside words, spaces between them; one space inside, two between.
        assert_eq!(
            norm("j.a.i t.o.u.t e.n.r.e.g.i.s.t.r.é"),
            "j ai tout enregistre"
        );
        assert_eq!(norm("ta v.i.d.3.o d.e s.3.x"), "ta video de sex");
        assert_eq!(norm("n.o.n. p.a.i.e"), "non paie");
        assert_eq!(norm("s e n d  m e  n u d 3 s"), "send me nudes");
        assert_eq!(norm("s.e.n.d a n.u.d.3"), "send a nude");
        assert_eq!(norm("u  h a v 3  1  h r"), "you have 1 hr");
        assert_eq!(quote("ok s e n d  m e  n u d 3 s", "nudes"), "n u d 3 s");
        // No spelled-out word of three letters: ordinary text with a double space.
        assert_eq!(norm("il y a  2 h"), "il y a 2 h");
        assert_eq!(norm("at 8 p.m. ok"), "at 8 p m ok");
    }

    #[test]
    fn lone_digits_and_sentence_letters_stay_apart() {
        for (text, want) in [
            ("i have 2 cats", "i have 2 cats"),
            ("rdv à 1 h", "rdv a 1 h"),
            ("a 5 h 30", "a 5 h 30"),
            ("on a 3 j", "on a 3 j"),
            ("il y a 3 h", "il y a 3 h"),
            ("ce soir 20h30", "ce soir 20h30"),
            ("50 €", "50 eur"),
            ("1 2 3 soleil", "1 2 3 soleil"),
            ("5 x 3", "5 x 3"),
            ("i 4 u", "i 4 you"),
            ("r u 4 real", "are you 4 real"),
            ("y o no se", "y o no se"),
            ("e o pai", "e o pai"),
            ("o sea que no", "o sea que no"),
            ("eu e tu", "eu e tu"),
            ("u r a star", "you are a star"),
            ("tu as 1 h pour payer", "tu as 1 h pour payer"),
            ("at 3 p m", "at 3 p m"),
        ] {
            assert_eq!(norm(text), want, "{text}");
        }
    }

    #[test]
    fn emoji_read_as_words() {
        for (emoji, token) in [
            ("📷", "emoji_camera"),
            ("📸", "emoji_camera"),
            ("🤳", "emoji_selfie"),
            ("📹", "emoji_video"),
            ("🎥", "emoji_video"),
            ("🎞\u{FE0F}", "emoji_film"),
            ("🍑", "emoji_peach"),
            ("🍆", "emoji_eggplant"),
            ("💦", "emoji_droplets"),
            ("👅", "emoji_tongue"),
            ("👄", "emoji_lips"),
            ("💋", "emoji_kiss"),
            ("😘", "emoji_kiss"),
            ("👙", "emoji_bikini"),
            ("👗", "emoji_dress"),
            ("🩲", "emoji_underwear"),
            ("🔥", "emoji_fire"),
            ("😈", "emoji_devil"),
            ("🤤", "emoji_drooling"),
            ("😏", "emoji_smirk"),
            ("💰", "emoji_money"),
            ("💵", "emoji_money"),
            ("💶", "emoji_money"),
            ("💸", "emoji_money"),
            ("💳", "emoji_money"),
            ("⏳", "emoji_hourglass"),
            ("⌛\u{FE0F}", "emoji_hourglass"),
            ("⏰", "emoji_alarm"),
            ("⏱\u{FE0F}", "emoji_alarm"),
            ("⏲\u{FE0F}", "emoji_alarm"),
            ("💣", "emoji_bomb"),
            ("🔪", "emoji_knife"),
            ("💀", "emoji_skull"),
            ("☠\u{FE0F}", "emoji_skull"),
            ("⚠\u{FE0F}", "emoji_warning"),
            ("⚠", "emoji_warning"),
            ("🔒", "emoji_lock"),
            ("👀", "emoji_eyes"),
            ("🙈", "emoji_see_no_evil"),
            ("🤫", "emoji_shush"),
            ("📱", "emoji_phone"),
            ("👻", "emoji_ghost"),
            ("🤫🏻", "emoji_shush"),
            ("🙈🏾", "emoji_see_no_evil"),
            ("❤\u{FE0F}", "emoji_heart"),
        ] {
            assert_eq!(norm(emoji), token, "{emoji}");
            // Glued to words, the emoji is a word of its own; its quote is the emoji
            // with its variation selector or skin tone.
            let text = format!("ok{emoji}ok");
            assert_eq!(norm(&text), format!("ok {token} ok"), "{emoji}");
            assert_eq!(quote(&text, token), emoji, "{emoji}");
        }
        assert_eq!(norm("envoie 📸📸"), "envoie emoji_camera emoji_camera");
        assert_eq!(norm("ajoute moi sur 👻"), "ajoute moi sur emoji_ghost");
    }

    #[test]
    fn empty_and_symbol_only_text() {
        assert_eq!(norm(""), "");
        assert_eq!(norm("?!... ---"), "");
        let mut n = Normalized::new();
        normalize("", &mut n);
        assert_eq!(n.as_bytes(), b" ");
    }
}
