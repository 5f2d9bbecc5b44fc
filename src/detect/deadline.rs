//! Deadline extraction: reads a countdown ("t'as 1h", "dans 30 min", "you have 2 hours",
//! "tienes 1 hora", "du hast 30 Minuten", "você tem 2 horas", "hai un'ora"), a clock time
//! ("avant 20h", "by 8pm", "antes de las 10", "bis 22 Uhr", "até às 22h", "entro le 22")
//! or a day word ("ce soir", "tonight", "esta noche", "heute Abend", "hoje à noite",
//! "stasera", "minuit", "mañana", "morgen", "amanhã", "domani") in normalised French,
//! English, Spanish, German, Portuguese or Italian text and turns it into an absolute
//! `respond_by`, from the message's `sent_at`. Clock times are read in the tenant's time
//! zone.
//!
//! A number becomes a deadline only with a unit and a cue ("tu as", "dans", "you have",
//! "within", "tienes", "noch", "em", "entro", ⏳... before it, or "sinon", "or else", "o",
//! "sonst", "senão", "altrimenti" after it), or as the whole message ("40 minutes": the
//! engine reads deadlines only from a side that presses); a clock time only after a cue
//! ("avant", "by",
//! "a las", "um", "às", "alle"...). A bare hour ("a las 10", "um 10", "alle 10") is read
//! only after a cue that names the hour, and as the next 10:00 or 22:00, whichever comes
//! first. Day words are deadlines by themselves. The earliest deadline of a message wins.
//!
//! All the words below are written normalised (`crate::detect::normalize`): lower case, no
//! accents, apostrophes and hyphens as spaces, doubled letters collapsed (`innerhalb` is
//! `inerhalb`, `alle` is `ale`, `mezzanotte` is `mezanote`).

use crate::detect::time::{Millis, DAY, HOUR, MINUTE, SECOND};
use jiff::tz::TimeZone;
use jiff::Timestamp;

/// Evening default when "ce soir" / "tonight" has no clock time.
const EVENING_HOUR: i8 = 20;
/// "demain" / "tomorrow" with no clock time.
const TOMORROW_HOUR: i8 = 12;
/// "demain matin" / "morgen früh" with no clock time.
const MORNING_HOUR: i8 = 9;

/// Words before a number that make it a duration to wait ("t'as 1h", "in 2 hours").
const DURATION_CUES: &[&[&str]] = &[
    // French
    &["tu", "as"],
    &["t", "as"],
    &["ta"],
    &["vous", "avez"],
    &["dans"],
    &["d", "ici"],
    &["sous"],
    &["reste"],
    &["plus", "que"],
    // English
    &["you", "have"],
    &["you", "got"],
    &["you", "ve", "got"],
    &["you", "ve"],
    &["in"],
    &["within"],
    &["only"],
    &["next"],
    // Spanish
    &["tienes"],
    &["tenes"],
    &["tiene"],
    &["tienen"],
    &["teneis"],
    &["te", "quedan"],
    &["te", "queda"],
    &["quedan"],
    &["en"],
    &["dentro", "de"],
    &["de", "aqui", "a"],
    // German
    &["du", "hast"],
    &["hast", "du"],
    &["hast"],
    &["habt"],
    &["haben", "sie"],
    &["noch"],
    &["inerhalb"],
    &["inerhalb", "von"],
    &["binen"],
    &["dir", "bleiben"],
    &["bleiben", "dir"],
    &["bleibt", "dir"],
    // Portuguese
    &["tens"],
    &["voce", "tem"],
    &["vc", "tem"],
    &["tu", "tem"],
    &["tem"],
    &["em"],
    &["daqui", "a"],
    &["daqui"],
    &["te", "restam"],
    &["restam"],
    &["so", "tem"],
    // Italian
    &["hai"],
    &["avete"],
    &["entro"],
    &["tra"],
    &["fra"],
    &["ti", "restano"],
    &["restano"],
    &["ti", "rimangono"],
    &["rimangono"],
    // Any language: a timer, an hourglass or an alarm clock before the number ("⏳1h").
    &["timer"],
    &["chrono"],
    &["emoji_hourglass"],
    &["emoji_alarm"],
    &["emoji_clock"],
];

/// Words before a clock time ("avant 20h", "by 8pm"), and whether they name the hour well
/// enough for a bare number to be one ("a las 10", "um 10", "alle 10"; not "as 10", which
/// is also "the 10" in Portuguese).
const CLOCK_CUES: &[(&[&str], bool)] = &[
    // French
    (&["avant"], false),
    (&["a"], false),
    (&["pour"], false),
    (&["jusqu", "a"], false),
    // English
    (&["before"], false),
    (&["by"], false),
    (&["at"], false),
    (&["until"], false),
    (&["til"], false),
    // Spanish
    (&["a", "las"], true),
    (&["a", "la"], true),
    (&["antes", "de", "las"], true),
    (&["antes", "de", "la"], true),
    (&["antes", "de"], false),
    (&["hasta", "las"], true),
    (&["hasta", "la"], true),
    (&["hasta"], false),
    (&["para", "las"], true),
    (&["para", "la"], true),
    // German
    (&["um"], true),
    (&["bis"], true),
    (&["bis", "um"], true),
    (&["vor"], true),
    (&["spatestens"], true),
    (&["spatestens", "um"], true),
    (&["gegen"], true),
    // Portuguese
    (&["as"], false),
    (&["ate", "as"], true),
    (&["ate"], false),
    (&["ate", "a"], false),
    (&["antes", "das"], true),
    (&["antes", "da"], false),
    (&["para", "as"], true),
    // Italian
    (&["ale"], true),
    (&["entro", "le"], true),
    (&["entro"], false),
    (&["prima", "dele"], true),
    (&["prima", "di"], false),
    (&["fino", "ale"], true),
    (&["per", "le"], true),
    (&["verso", "le"], true),
];

/// Words after a duration that make it a threat's deadline ("1h sinon", "24h or else"),
/// within two words.
const AFTER_CUES: &[&str] = &[
    // French, English
    "sinon",
    "or",
    "otherwise",
    "left",
    "remaining",
    "max",
    "pour",
    "to",
    // Spanish
    "sino",
    "para",
    "maximo",
    "restantes",
    // German
    "oder",
    "sonst",
    "ansonsten",
    "maximal",
    "ubrig",
    // Portuguese
    "senao",
    "pra",
    // Italian
    "altrimenti",
    "seno",
    "per",
    "masimo",
    // Any language ("1h ⏳")
    "emoji_hourglass",
    "emoji_alarm",
    "emoji_clock",
];

/// Short words that are a threat's "or" only right after the duration ("1 hora o lo
/// publico", "2 horas ou eu posto"): two words on, they are too common.
const AFTER_CUES_NEXT: &[&str] = &["o", "ou"];

/// Words after a bare number that make it a quantity, not an hour ("vor 2 Jahren", "a
/// las 3 fotos" cannot be clock times).
const NOT_AN_HOUR: &[&str] = &[
    "ans", "years", "anos", "jahr", "jahre", "jahren", "ani", "mois", "months", "mes", "meses",
    "monat", "monate", "monaten", "mesi", "eur", "usd", "gbp", "euro", "euros", "dolares", "dolar",
    "dolars", "reais", "foto", "fotos", "photos", "pics", "bilder", "videos", "video", "veces",
    "vezes", "volte", "mal", "fois", "times",
];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Day {
    Tonight,
    Midnight,
    Tomorrow,
    TomorrowMorning,
    AfterTomorrow,
}

/// Day words, longest first where one begins another; the words they must not follow
/// ("esta mañana" is this morning, "guten Morgen" a greeting).
const DAY_WORDS: &[(&[&str], Day, &[&str])] = &[
    // Tomorrow morning, the day after tomorrow.
    (&["demain", "matin"], Day::TomorrowMorning, &[]),
    (&["tomorow", "morning"], Day::TomorrowMorning, &[]),
    (
        &["manana", "por", "la", "manana"],
        Day::TomorrowMorning,
        &["la", "esta", "de"],
    ),
    (
        &["manana", "temprano"],
        Day::TomorrowMorning,
        &["la", "esta", "de"],
    ),
    (&["morgen", "fruh"], Day::TomorrowMorning, &[]),
    (&["amanha", "de", "manha"], Day::TomorrowMorning, &[]),
    (&["amanha", "cedo"], Day::TomorrowMorning, &[]),
    (&["domani", "matina"], Day::TomorrowMorning, &[]),
    (&["domatina"], Day::TomorrowMorning, &[]),
    (&["apres", "demain"], Day::AfterTomorrow, &[]),
    (&["pasado", "manana"], Day::AfterTomorrow, &[]),
    (&["ubermorgen"], Day::AfterTomorrow, &[]),
    (&["depois", "de", "amanha"], Day::AfterTomorrow, &[]),
    (&["dopodomani"], Day::AfterTomorrow, &[]),
    // Tomorrow.
    (&["demain"], Day::Tomorrow, &[]),
    (&["tomorow"], Day::Tomorrow, &[]),
    (&["manana"], Day::Tomorrow, &["la", "esta", "de"]),
    (
        &["morgen"],
        Day::Tomorrow,
        &[
            "guten", "gute", "gutn", "heute", "am", "jeden", "schonen", "einen", "diesen", "den",
            "vom",
        ],
    ),
    (&["amanha"], Day::Tomorrow, &[]),
    (&["domani"], Day::Tomorrow, &[]),
    // Tonight.
    (&["ce", "soir"], Day::Tonight, &[]),
    (&["tonight"], Day::Tonight, &[]),
    (&["esta", "noche"], Day::Tonight, &[]),
    (&["heute", "abend"], Day::Tonight, &[]),
    (&["heut", "abend"], Day::Tonight, &[]),
    (&["heute", "nacht"], Day::Tonight, &[]),
    (&["hoje", "a", "noite"], Day::Tonight, &[]),
    (&["hoje", "de", "noite"], Day::Tonight, &[]),
    (&["hoje", "noite"], Day::Tonight, &[]),
    (&["hj", "a", "noite"], Day::Tonight, &[]),
    (&["hj", "de", "noite"], Day::Tonight, &[]),
    (&["hj", "noite"], Day::Tonight, &[]),
    (&["esta", "noite"], Day::Tonight, &[]),
    (&["esa", "noite"], Day::Tonight, &[]),
    (&["stasera"], Day::Tonight, &[]),
    (&["sta", "sera"], Day::Tonight, &[]),
    (&["questa", "sera"], Day::Tonight, &[]),
    (&["stanote"], Day::Tonight, &[]),
    (&["questa", "note"], Day::Tonight, &[]),
    // Midnight.
    (&["minuit"], Day::Midnight, &[]),
    (&["midnight"], Day::Midnight, &[]),
    (&["medianoche"], Day::Midnight, &[]),
    (&["media", "noche"], Day::Midnight, &[]),
    (&["miternacht"], Day::Midnight, &[]),
    (&["meia", "noite"], Day::Midnight, &[]),
    (&["mezanote"], Day::Midnight, &[]),
];

/// Clock words: noon and midnight, as clock times after a cue ("avant midi", "bis Mittag").
const CLOCK_WORDS: &[(&[&str], i8)] = &[
    (&["midi"], 12),
    (&["non"], 12), // "noon", its o collapsed
    (&["mediodia"], 12),
    (&["medio", "dia"], 12),
    (&["mitag"], 12),
    (&["meio", "dia"], 12),
    (&["mezogiorno"], 12),
    (&["minuit"], 24),
    (&["midnight"], 24),
    (&["medianoche"], 24),
    (&["media", "noche"], 24),
    (&["miternacht"], 24),
    (&["meia", "noite"], 24),
    (&["mezanote"], 24),
];

/// Number words of durations ("una hora", "zwei Stunden", "duas horas", "dieci minuti").
const NUMBER_WORDS: &[(&str, i64)] = &[
    // French, English ("a", "an": "an hour")
    ("un", 1),
    ("une", 1),
    ("one", 1),
    ("a", 1),
    ("an", 1),
    ("deux", 2),
    ("two", 2),
    ("trois", 3),
    ("thre", 3),
    ("quatre", 4),
    ("four", 4),
    ("cinq", 5),
    ("five", 5),
    ("six", 6),
    ("dix", 10),
    ("ten", 10),
    ("quinze", 15),
    ("fiften", 15), // "fifteen", its e collapsed
    ("vingt", 20),
    ("twenty", 20),
    ("trente", 30),
    ("thirty", 30),
    // Spanish
    ("uno", 1),
    ("una", 1),
    ("dos", 2),
    ("tres", 3),
    ("cuatro", 4),
    ("cinco", 5),
    ("seis", 6),
    ("siete", 7),
    ("ocho", 8),
    ("nueve", 9),
    ("diez", 10),
    ("once", 11),
    ("doce", 12),
    ("veinte", 20),
    ("veinticuatro", 24),
    ("treinta", 30),
    // German
    ("ein", 1),
    ("eine", 1),
    ("einer", 1),
    ("einem", 1),
    ("einen", 1),
    ("zwei", 2),
    ("drei", 3),
    ("vier", 4),
    ("funf", 5),
    ("sechs", 6),
    ("sieben", 7),
    ("acht", 8),
    ("neun", 9),
    ("zehn", 10),
    ("elf", 11),
    ("zwolf", 12),
    ("funfzehn", 15),
    ("zwanzig", 20),
    ("vierundzwanzig", 24),
    ("dreisig", 30),
    ("achtundvierzig", 48),
    // Portuguese
    ("um", 1),
    ("uma", 1),
    ("dois", 2),
    ("duas", 2),
    ("quatro", 4),
    ("sete", 7),
    ("oito", 8),
    ("nove", 9),
    ("dez", 10),
    ("onze", 11),
    ("doze", 12),
    ("vinte", 20),
    ("trinta", 30),
    // Italian
    ("due", 2),
    ("tre", 3),
    ("cinque", 5),
    ("sei", 6),
    ("oto", 8),
    ("dieci", 10),
    ("undici", 11),
    ("dodici", 12),
    ("quindici", 15),
    ("venti", 20),
    ("ventiquatro", 24),
    ("trenta", 30),
    ("quarantoto", 48),
];

/// Hour words after a cue that names the hour ("a las diez", "um zehn", "alle dieci").
const HOUR_WORDS: &[(&str, i8)] = &[
    ("una", 1),
    ("uma", 1),
    ("eins", 1),
    ("dos", 2),
    ("duas", 2),
    ("due", 2),
    ("zwei", 2),
    ("tres", 3),
    ("tre", 3),
    ("drei", 3),
    ("cuatro", 4),
    ("quatro", 4),
    ("vier", 4),
    ("cinco", 5),
    ("cinque", 5),
    ("funf", 5),
    ("seis", 6),
    ("sei", 6),
    ("sechs", 6),
    ("siete", 7),
    ("sete", 7),
    ("sieben", 7),
    ("ocho", 8),
    ("oito", 8),
    ("oto", 8),
    ("acht", 8),
    ("nueve", 9),
    ("nove", 9),
    ("neun", 9),
    ("diez", 10),
    ("dez", 10),
    ("dieci", 10),
    ("zehn", 10),
    ("once", 11),
    ("onze", 11),
    ("undici", 11),
    ("elf", 11),
    ("doce", 12),
    ("doze", 12),
    ("dodici", 12),
    ("zwolf", 12),
];

/// Durations said in words ("media hora", "eine halbe Stunde", "meia hora", "mezz'ora",
/// "un cuarto de hora", "anderthalb Stunden").
const DURATION_PHRASES: &[(&[&str], Millis)] = &[
    (&["half", "hour"], 30 * MINUTE),
    (&["demi", "heure"], 30 * MINUTE),
    (&["media", "hora"], 30 * MINUTE),
    (&["halbe", "stunde"], 30 * MINUTE),
    (&["halben", "stunde"], 30 * MINUTE),
    (&["meia", "hora"], 30 * MINUTE),
    (&["mez", "ora"], 30 * MINUTE),
    (&["meza", "ora"], 30 * MINUTE),
    (&["mezora"], 30 * MINUTE),
    (&["cuarto", "de", "hora"], 15 * MINUTE),
    (&["quarto", "de", "hora"], 15 * MINUTE),
    (&["quarto", "d", "ora"], 15 * MINUTE),
    (&["viertelstunde"], 15 * MINUTE),
    (&["anderthalb", "stunden"], 90 * MINUTE),
    (&["eineinhalb", "stunden"], 90 * MINUTE),
];

/// "... and a half" after hours ("una hora y media", "uma hora e meia", "un'ora e mezza"),
/// and after a clock hour ("a las 10 y media").
const AND_WORDS: &[&str] = &["y", "e", "and"];
const HALF_WORDS: &[&str] = &["media", "meia", "meza", "mezo"];
const QUARTER_WORDS: &[&str] = &["cuarto", "quarto"];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Half {
    Am,
    Pm,
    Night,
}

/// Words after a clock hour that say which half of the day it is in ("a las 10 de la
/// noche", "às 9 da manhã", "alle 10 di sera", "um 10 Uhr abends").
const HALF_WORDS_AFTER: &[(&[&str], Half)] = &[
    (&["de", "la", "manana"], Half::Am),
    (&["por", "la", "manana"], Half::Am),
    (&["de", "la", "tarde"], Half::Pm),
    (&["por", "la", "tarde"], Half::Pm),
    (&["de", "la", "noche"], Half::Night),
    (&["por", "la", "noche"], Half::Night),
    (&["da", "manha"], Half::Am),
    (&["de", "manha"], Half::Am),
    (&["da", "tarde"], Half::Pm),
    (&["de", "tarde"], Half::Pm),
    (&["da", "noite"], Half::Night),
    (&["de", "noite"], Half::Night),
    (&["di", "matina"], Half::Am),
    (&["del", "matino"], Half::Am),
    (&["di", "pomerigio"], Half::Pm),
    (&["del", "pomerigio"], Half::Pm),
    (&["di", "sera"], Half::Night),
    (&["di", "note"], Half::Night),
    (&["morgens"], Half::Am),
    (&["fruh"], Half::Am),
    (&["vormitags"], Half::Am),
    (&["nachmitags"], Half::Pm),
    (&["abends"], Half::Night),
    (&["nachts"], Half::Night),
    (&["du", "matin"], Half::Am),
    (&["du", "soir"], Half::Night),
    (&["in", "the", "morning"], Half::Am),
    (&["in", "the", "evening"], Half::Night),
    (&["at", "night"], Half::Night),
];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Found {
    Duration(Millis),
    /// Local clock time `days` days after today's date (0: its next occurrence);
    /// `twelve`: a bare hour of 1 to 12, either in the morning or in the evening.
    Clock {
        hour: i8,
        minute: i8,
        days: u8,
        twelve: bool,
    },
}

/// A clock time read at a position: hour, minute, tokens used, and `twelve`.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Clock {
    hour: i8,
    minute: i8,
    used: usize,
    twelve: bool,
}

/// The earliest deadline in `text` (normalised), or `None`.
pub fn find_deadline(text: &str, sent_at: Millis, tz: &TimeZone) -> Option<Millis> {
    let tokens: Vec<&str> = text.split_ascii_whitespace().collect();
    let mut best: Option<Millis> = None;
    let mut i = 0;
    while i < tokens.len() {
        let (found, used) = read_at(&tokens, i);
        if let Some(f) = found {
            if let Some(t) = resolve(f, sent_at, tz) {
                best = Some(best.map_or(t, |b| b.min(t)));
            }
        }
        i += used.max(1);
    }
    best
}

fn resolve(f: Found, sent_at: Millis, tz: &TimeZone) -> Option<Millis> {
    match f {
        Found::Duration(d) => sent_at.checked_add(d),
        Found::Clock {
            hour,
            minute,
            days,
            twelve,
        } => {
            let first = resolve_clock(hour, minute, days, sent_at, tz);
            if !twelve || !(1..=12).contains(&hour) {
                return first;
            }
            // A bare "10": 10:00 or 22:00, whichever comes first.
            let second = resolve_clock(hour + 12, minute, days, sent_at, tz);
            match (first, second) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        }
    }
}

fn resolve_clock(hour: i8, minute: i8, days: u8, sent_at: Millis, tz: &TimeZone) -> Option<Millis> {
    let now = Timestamp::from_millisecond(sent_at)
        .ok()?
        .to_zoned(tz.clone());
    let mut date = now.date();
    for _ in 0..days {
        date = date.tomorrow().ok()?;
    }
    let (hour, date) = if hour == 24 {
        (0, date.tomorrow().ok()?)
    } else {
        (hour, date)
    };
    let at = |date: jiff::civil::Date| {
        let at = date.at(hour, minute, 0, 0).to_zoned(tz.clone()).ok()?;
        Some(at.timestamp().as_millisecond())
    };
    let mut ms = at(date)?;
    if ms <= sent_at && days == 0 {
        // Tomorrow at that clock time, not 24 h later: a DST change may lie in
        // between (24 h after 00:15 on the autumn change is 23:15 that day).
        ms = at(date.tomorrow().ok()?)?;
    }
    Some(ms)
}

/// Whether `seq` stands at `tokens[at..]`.
fn starts_with(tokens: &[&str], at: usize, seq: &[&str]) -> bool {
    tokens.get(at..at + seq.len()) == Some(seq)
}

/// The cue of `cues` nearest before the number at `i`, ending at most two words before it
/// ("t'as encore 1h", "in just 2 hours"): its gap and its length (the longest at the
/// smallest gap).
fn cue_before<'a>(
    tokens: &[&str],
    i: usize,
    cues: impl Iterator<Item = &'a [&'a str]> + Clone,
) -> Option<Cue> {
    for gap in 0..=2 {
        let Some(end) = i.checked_sub(gap) else {
            break;
        };
        let len = cues
            .clone()
            .filter(|cue| end >= cue.len() && tokens[end - cue.len()..end] == **cue)
            .map(|cue| cue.len())
            .max();
        if let Some(len) = len {
            return Some(Cue { gap, len });
        }
    }
    None
}

/// Where a cue was found before a number.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Cue {
    gap: usize,
    len: usize,
}

impl Cue {
    /// Nearer the number, then longer: "t'as 1h" is French "you have", not Portuguese
    /// "às" (at); "tens até às 22h" is a clock time.
    fn beats(self, other: Cue) -> bool {
        (self.gap, std::cmp::Reverse(self.len)) < (other.gap, std::cmp::Reverse(other.len))
    }
}

fn duration_cue(tokens: &[&str], i: usize) -> Option<Cue> {
    cue_before(tokens, i, DURATION_CUES.iter().copied())
}

/// The clock cue before `i`, and whether a bare hour may follow it: a cue that names the
/// hour ("a las", "um", "alle") right before it.
fn clock_cue(tokens: &[&str], i: usize) -> Option<(Cue, bool)> {
    let cue = cue_before(tokens, i, CLOCK_CUES.iter().map(|(c, _)| *c))?;
    let bare = CLOCK_CUES
        .iter()
        .any(|(c, bare)| *bare && i >= c.len() && tokens[i - c.len()..i] == **c);
    Some((cue, bare))
}

/// The clock cue starting at `at`, if any: how many words it has (the longest).
fn clock_cue_at(tokens: &[&str], at: usize) -> usize {
    CLOCK_CUES
        .iter()
        .filter(|(cue, _)| starts_with(tokens, at, cue))
        .map(|(cue, _)| cue.len())
        .max()
        .unwrap_or(0)
}

fn cue_after(tokens: &[&str], end: usize) -> bool {
    // `end` may be past the last token: "half an" and "une demi" count the unit word
    // that usually follows ("half an hour") even when the message ends before it.
    let after = tokens.get(end..).unwrap_or_default();
    after.iter().take(2).any(|t| AFTER_CUES.contains(t))
        || after.first().is_some_and(|t| AFTER_CUES_NEXT.contains(t))
}

/// Whether the duration at `i..i + used` is the whole message, but for emoji ("40
/// minutes", "10 min 😈"): a countdown by itself.
fn alone(tokens: &[&str], i: usize, used: usize) -> bool {
    i + used <= tokens.len()
        && tokens[..i]
            .iter()
            .chain(&tokens[i + used..])
            .all(|t| t.starts_with("emoji_"))
}

/// The day word at `i`: which, and how many words.
fn day_word(tokens: &[&str], i: usize) -> Option<(Day, usize)> {
    let prev = i.checked_sub(1).map(|p| tokens[p]);
    DAY_WORDS
        .iter()
        .find(|(seq, _, not_after)| {
            starts_with(tokens, i, seq) && !prev.is_some_and(|p| not_after.contains(&p))
        })
        .map(|(seq, day, _)| (*day, seq.len()))
}

/// A clock time with a day word right after it ("à 22h ce soir", "um 10 morgen", "at 8
/// tomorrow"): the day, and the words it used.
fn clock_with_day(tokens: &[&str], i: usize, c: Clock) -> (Found, usize) {
    let mut f = Found::Clock {
        hour: c.hour,
        minute: c.minute,
        days: 0,
        twelve: c.twelve,
    };
    let mut used = c.used;
    if let Some((day, n)) = day_word(tokens, i + c.used) {
        if day != Day::Midnight {
            f = on_day(day, c);
            used += n;
        }
    }
    (f, used)
}

/// A clock time on a day word's day.
fn on_day(day: Day, c: Clock) -> Found {
    let (mut hour, mut twelve) = (c.hour, c.twelve);
    let days = match day {
        Day::Tonight | Day::Midnight => 0,
        Day::Tomorrow | Day::TomorrowMorning => 1,
        Day::AfterTomorrow => 2,
    };
    match day {
        // "ce soir 8h", "esta noche a las 10": the evening.
        Day::Tonight if (5..12).contains(&hour) => {
            hour += 12;
            twelve = false;
        }
        Day::Tonight | Day::TomorrowMorning => twelve = false,
        _ => {}
    }
    Found::Clock {
        hour,
        minute: c.minute,
        days,
        twelve,
    }
}

/// Reads an expression starting at token `i`; returns it and how many tokens it used.
fn read_at(tokens: &[&str], i: usize) -> (Option<Found>, usize) {
    let t = tokens[i];
    let next = tokens.get(i + 1).copied().unwrap_or("");
    // Day words, with a clock time after them ("demain 9h", "mañana a las 10").
    if let Some((day, n)) = day_word(tokens, i) {
        if day == Day::Midnight {
            return (
                Some(Found::Clock {
                    hour: 24,
                    minute: 0,
                    days: 0,
                    twelve: false,
                }),
                n,
            );
        }
        // A bare hour only after a cue ("mañana a las 10", "tonight at 10"), not right
        // after the day word ("ce soir 2 potes").
        let cue = clock_cue_at(tokens, i + n);
        let at = i + n + cue;
        if let Some(c) = clock_at(tokens, at, cue > 0) {
            return (Some(on_day(day, c)), at - i + c.used);
        }
        let hour = match day {
            Day::Tonight => EVENING_HOUR,
            Day::TomorrowMorning => MORNING_HOUR,
            _ => TOMORROW_HOUR,
        };
        let c = Clock {
            hour,
            minute: 0,
            used: n,
            twelve: false,
        };
        return (Some(on_day(day, c)), n);
    }
    if matches!((t, next), ("l", "heure") | ("the", "hour"))
        && i > 0
        && matches!(tokens[i - 1], "dans" | "within" | "sous")
    {
        return (Some(Found::Duration(HOUR)), 2);
    }
    let duration = duration_at(tokens, i);
    let duration_cue = duration_cue(tokens, i);
    if let Some((cue, bare)) = clock_cue(tokens, i) {
        let duration_first = duration.is_some() && duration_cue.is_some_and(|d| d.beats(cue));
        if let Some(c) = clock_at(tokens, i, bare).filter(|_| !duration_first) {
            let (f, used) = clock_with_day(tokens, i, c);
            return (Some(f), used);
        }
    }
    if let Some((d, u)) = duration {
        if duration_cue.is_some() || cue_after(tokens, i + u) || alone(tokens, i, u) {
            return (Some(Found::Duration(d)), u);
        }
        return (None, u);
    }
    (None, 1)
}

fn number(t: &str) -> Option<i64> {
    if !t.is_empty() && t.len() <= 4 && t.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse().ok();
    }
    NUMBER_WORDS.iter().find(|(w, _)| *w == t).map(|(_, n)| *n)
}

fn unit(t: &str) -> Option<Millis> {
    Some(match t {
        "s" | "sec" | "secs" | "second" | "seconds" | "seconde" | "secondes" | "seg"
        | "segundo" | "segundos" | "sek" | "sekunde" | "sekunden" | "secondo" | "secondi" => SECOND,
        "m" | "mn" | "min" | "mins" | "minute" | "minutes" | "minuto" | "minutos" | "minutinho"
        | "minutinhos" | "minutito" | "minutitos" | "minuten" | "minuti" => MINUTE,
        "h" | "hr" | "hrs" | "hour" | "hours" | "heure" | "heures" | "hora" | "horas" | "hs"
        | "std" | "stunde" | "stunden" | "ora" | "ore" => HOUR,
        "j" | "d" | "day" | "days" | "jour" | "jours" | "dia" | "dias" | "tag" | "tage"
        | "tagen" | "giorno" | "giorni" => DAY,
        "sem" | "semaine" | "semaines" | "wek" | "weks" | "semana" | "semanas" | "woche"
        | "wochen" | "setimana" | "setimane" => 7 * DAY,
        _ => return None,
    })
}

/// `30 min`, `2 hours`, `1h`, `1h30`, `48hrs`, `une heure`, `half an hour`, `une demi heure`,
/// `media hora`, `eine halbe Stunde`, `una hora y media`, `2std`.
fn duration_at(tokens: &[&str], i: usize) -> Option<(Millis, usize)> {
    let t = tokens[i];
    let next = tokens.get(i + 1).copied().unwrap_or("");
    if matches!((t, next), ("half", "an") | ("une", "demi")) {
        // The unit word usually follows ("half an hour"): counted even when missing.
        return Some((30 * MINUTE, 3));
    }
    if let Some((seq, d)) = DURATION_PHRASES
        .iter()
        .find(|(seq, _)| starts_with(tokens, i, seq))
    {
        return Some((*d, seq.len()));
    }
    // A number and a unit glued together: 1h, 30min, 1h30, 2j, 2std.
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    let (d, used) = if digits > 0 && digits < t.len() && digits <= 3 {
        let n: i64 = t[..digits].parse().ok()?;
        let rest = &t[digits..];
        if let Some(u) = unit(rest) {
            (n * u, 1)
        } else if let Some(mins) = rest
            .strip_prefix('h')
            .and_then(|m| m.parse::<i64>().ok())
            .filter(|m| *m < 60)
        {
            return Some((n * HOUR + mins * MINUTE, 1));
        } else {
            return None;
        }
    } else {
        let n = number(t)?;
        let u = unit(next)?;
        (n * u, 2)
    };
    // "una hora y media", "zwei Stunden", "un'ora e mezza".
    let hours = d % HOUR == 0 && d < DAY;
    if hours
        && tokens.get(i + used).is_some_and(|a| AND_WORDS.contains(a))
        && tokens
            .get(i + used + 1)
            .is_some_and(|h| HALF_WORDS.contains(h))
    {
        return Some((d + 30 * MINUTE, used + 2));
    }
    Some((d, used))
}

/// An hour as a bare number or word ("10", "diez").
fn bare_hour(t: &str) -> Option<i8> {
    if !t.is_empty() && t.len() <= 2 && t.bytes().all(|b| b.is_ascii_digit()) {
        return t.parse().ok().filter(|h| (0..=24).contains(h));
    }
    HOUR_WORDS.iter().find(|(w, _)| *w == t).map(|(_, h)| *h)
}

/// `20h`, `20h30`, `8pm`, `8 pm`, `20 heures`, `20 00`, `22 uhr`, `22hs`, `midi`, `noon`,
/// `minuit`, `mezzanotte`, `halb 10`; with `bare`, also a bare hour (`10`, `diez`).
fn clock_at(tokens: &[&str], i: usize, bare: bool) -> Option<Clock> {
    let t = *tokens.get(i)?;
    let next = tokens.get(i + 1).copied().unwrap_or("");
    if let Some((seq, h)) = CLOCK_WORDS
        .iter()
        .find(|(seq, _)| starts_with(tokens, i, seq))
    {
        return Some(Clock {
            hour: *h,
            minute: 0,
            used: seq.len(),
            twelve: false,
        });
    }
    let not_a_clock = |w: &str| unit(w).is_some() || NOT_AN_HOUR.contains(&w);
    // A bare hour with its half of the day, its day or its half hour after it is an hour
    // after any cue ("às 10 da noite", "at 10 tonight", "às 10 e meia").
    let bare = bare
        || HALF_WORDS_AFTER
            .iter()
            .any(|(seq, _)| starts_with(tokens, i + 1, seq))
        || day_word(tokens, i + 1).is_some_and(|(d, _)| d != Day::Midnight)
        || (tokens.get(i + 1).is_some_and(|a| AND_WORDS.contains(a))
            && tokens
                .get(i + 2)
                .is_some_and(|h| HALF_WORDS.contains(h) || QUARTER_WORDS.contains(h)));
    // German "halb 10" is half past 9.
    if t == "halb" && bare {
        let h = bare_hour(next).filter(|h| (1..=24).contains(h))?;
        if tokens.get(i + 2).is_some_and(|w| not_a_clock(w)) {
            return None;
        }
        let before = if h == 1 { 12 } else { h - 1 };
        return finish_clock(tokens, i, before, 30, 2, h <= 12);
    }
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        // "a las diez", "um zehn".
        let h = bare_hour(t).filter(|_| bare && !not_a_clock(next))?;
        return finish_clock(tokens, i, h, 0, 1, true);
    }
    if digits > 2 {
        return None;
    }
    let h: i8 = t[..digits].parse().ok()?;
    let rest = &t[digits..];
    let two_digits = |m: &str| m.len() == 2 && m.bytes().all(|b| b.is_ascii_digit());
    let (hour, minute, used, twelve) = match rest {
        "h" | "hs" | "hrs" | "uhr" => match next.parse::<i8>() {
            Ok(m) if (0..60).contains(&m) && next.len() == 2 => (h, m, 2, false),
            _ => (h, 0, 1, false),
        },
        "pm" => (pm(h)?, 0, 1, false),
        "am" => (h % 12, 0, 1, false),
        "" => match next {
            "pm" => (pm(h)?, 0, 2, false),
            "am" => (h % 12, 0, 2, false),
            "heure" | "heures" | "h" | "hs" | "hrs" | "uhr" => {
                match tokens.get(i + 2).copied() {
                    // "22 uhr 30"
                    Some(m) if next == "uhr" && two_digits(m) => (h, m.parse().ok()?, 3, false),
                    _ => (h, 0, 2, false),
                }
            }
            // "às 10 horas", "alle 10 ore": after a cue that names the hour.
            "hora" | "horas" | "ore" if bare => (h, 0, 2, false),
            m if two_digits(m) => {
                let m: i8 = m.parse().ok()?;
                match tokens.get(i + 2).copied() {
                    Some("pm") => (pm(h)?, m, 3, false),
                    Some("am") => (h % 12, m, 3, false),
                    _ => (h, m, 2, false),
                }
            }
            w if bare && !not_a_clock(w) => (h, 0, 1, true),
            _ => return None,
        },
        r if r.starts_with('h') => (h, r[1..].parse().ok()?, 1, false),
        _ => return None,
    };
    finish_clock(tokens, i, hour, minute, used, twelve)
}

/// Reads what may follow a clock time ("y media", "de la noche", "abends") and checks it.
fn finish_clock(
    tokens: &[&str],
    i: usize,
    mut hour: i8,
    mut minute: i8,
    mut used: usize,
    mut twelve: bool,
) -> Option<Clock> {
    // "a las 10 y media", "às 10 e meia", "alle 10 e un quarto".
    if minute == 0 && tokens.get(i + used).is_some_and(|a| AND_WORDS.contains(a)) {
        let mut at = i + used + 1;
        if tokens.get(at) == Some(&"un") {
            at += 1;
        }
        match tokens.get(at) {
            Some(w) if HALF_WORDS.contains(w) => {
                minute = 30;
                used = at + 1 - i;
            }
            Some(w) if QUARTER_WORDS.contains(w) => {
                minute = 15;
                used = at + 1 - i;
            }
            _ => {}
        }
    }
    if let Some((seq, half)) = HALF_WORDS_AFTER
        .iter()
        .find(|(seq, _)| starts_with(tokens, i + used, seq))
    {
        if (0..=12).contains(&hour) {
            hour = match half {
                Half::Am => hour % 12,
                Half::Pm => hour % 12 + 12,
                // "10 de la noche" is 22:00, "12 de la noche" midnight, "2 de la noche" 02:00.
                Half::Night if hour == 12 || hour == 0 => 24,
                Half::Night if hour >= 5 => hour + 12,
                Half::Night => hour,
            };
            twelve = false;
            used += seq.len();
        }
    }
    if hour == 24 && minute == 0 {
        hour = 24;
    } else if !(0..24).contains(&hour) || !(0..60).contains(&minute) {
        return None;
    }
    Some(Clock {
        hour,
        minute,
        used,
        twelve,
    })
}

fn pm(h: i8) -> Option<i8> {
    (1..=12)
        .contains(&h)
        .then_some(if h == 12 { 12 } else { h + 12 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::normalize::{normalize, Normalized};
    use crate::detect::time::{format_rfc3339, parse_rfc3339};

    /// Sunday 2026-11-22 18:30:00 UTC (19:30 in Paris).
    const SENT: &str = "2026-11-22T18:30:00Z";

    fn deadline_in(text: &str, tz: &str) -> Option<String> {
        let mut n = Normalized::new();
        normalize(text, &mut n);
        let tz = TimeZone::get(tz).unwrap();
        find_deadline(n.as_str(), parse_rfc3339(SENT).unwrap(), &tz).map(format_rfc3339)
    }

    fn deadline(text: &str) -> Option<String> {
        deadline_in(text, "UTC")
    }

    #[test]
    fn french_durations() {
        assert_eq!(
            deadline("t'as 1h pour payer").as_deref(),
            Some("2026-11-22T19:30:00Z")
        );
        assert_eq!(
            deadline("dans 30 min je poste").as_deref(),
            Some("2026-11-22T19:00:00Z")
        );
        assert_eq!(
            deadline("tu as 24h").as_deref(),
            Some("2026-11-23T18:30:00Z")
        );
        assert_eq!(
            deadline("t as 48 heures sinon").as_deref(),
            Some("2026-11-24T18:30:00Z")
        );
        assert_eq!(
            deadline("tu as 2 jours").as_deref(),
            Some("2026-11-24T18:30:00Z")
        );
        assert_eq!(
            deadline("il te reste une heure").as_deref(),
            Some("2026-11-22T19:30:00Z")
        );
        assert_eq!(
            deadline("tu as 1h30").as_deref(),
            Some("2026-11-22T20:00:00Z")
        );
        assert_eq!(
            deadline("10 min sinon j'envoie").as_deref(),
            Some("2026-11-22T18:40:00Z")
        );
        assert_eq!(
            deadline("envoie dans l'heure").as_deref(),
            Some("2026-11-22T19:30:00Z")
        );
    }

    #[test]
    fn english_durations() {
        assert_eq!(
            deadline("you have 30 minutes").as_deref(),
            Some("2026-11-22T19:00:00Z")
        );
        assert_eq!(
            deadline("in 2 hours or else").as_deref(),
            Some("2026-11-22T20:30:00Z")
        );
        assert_eq!(
            deadline("u have 1 hr").as_deref(),
            Some("2026-11-22T19:30:00Z")
        );
        assert_eq!(
            deadline("you've got half an hour").as_deref(),
            Some("2026-11-22T19:00:00Z")
        );
        assert_eq!(
            deadline("within the hour").as_deref(),
            Some("2026-11-22T19:30:00Z")
        );
        assert_eq!(
            deadline("24 hours left").as_deref(),
            Some("2026-11-23T18:30:00Z")
        );
    }

    #[test]
    fn clock_times_and_day_words() {
        assert_eq!(
            deadline("avant minuit").as_deref(),
            Some("2026-11-23T00:00:00Z")
        );
        assert_eq!(
            deadline("by midnight").as_deref(),
            Some("2026-11-23T00:00:00Z")
        );
        assert_eq!(
            deadline("ce soir 20h").as_deref(),
            Some("2026-11-22T20:00:00Z")
        );
        assert_eq!(deadline("ce soir").as_deref(), Some("2026-11-22T20:00:00Z"));
        assert_eq!(
            deadline("by tonight").as_deref(),
            Some("2026-11-22T20:00:00Z")
        );
        assert_eq!(
            deadline("avant 21h30").as_deref(),
            Some("2026-11-22T21:30:00Z")
        );
        assert_eq!(deadline("by 8pm").as_deref(), Some("2026-11-22T20:00:00Z"));
        assert_eq!(
            deadline("before 9:15 pm").as_deref(),
            Some("2026-11-22T21:15:00Z")
        );
        // A clock time already past today means tomorrow.
        assert_eq!(
            deadline("avant 10h").as_deref(),
            Some("2026-11-23T10:00:00Z")
        );
        assert_eq!(
            deadline("demain 9h").as_deref(),
            Some("2026-11-23T09:00:00Z")
        );
        assert_eq!(
            deadline("tomorrow").as_deref(),
            Some("2026-11-23T12:00:00Z")
        );
    }

    #[test]
    fn clock_times_use_the_tenant_time_zone() {
        // 20h in Paris is 19:00 UTC in November.
        assert_eq!(
            deadline_in("avant 20h", "Europe/Paris").as_deref(),
            Some("2026-11-22T19:00:00Z")
        );
        // Sent at 19:30 Paris time: "minuit" is midnight in Paris.
        assert_eq!(
            deadline_in("avant minuit", "Europe/Paris").as_deref(),
            Some("2026-11-22T23:00:00Z")
        );
        // Durations do not depend on the zone.
        assert_eq!(
            deadline_in("t'as 1h", "Europe/Paris").as_deref(),
            Some("2026-11-22T19:30:00Z")
        );
    }

    #[test]
    fn a_clock_time_already_past_is_tomorrow_across_a_dst_change() {
        // Paris, 31 October 2027 (clocks went back at 03:00), sent at 23:30 local
        // (22:30Z): "avant 0h15" is 00:15 on 1 November (23:15Z). Adding 24 h to 00:15
        // on the 31st gave 23:15 local that day, 15 minutes before the message was sent.
        // The `deadline` fuzz target's invariant (a deadline is not before `sent_at`)
        // fails on it: fuzz/artifacts/deadline/dst-autumn-past-deadline.
        let tz = TimeZone::get("Europe/Paris").unwrap();
        let sent = parse_rfc3339("2027-10-31T22:30:00Z").unwrap();
        let mut n = Normalized::new();
        for (text, want) in [
            ("avant 0h15", "2027-10-31T23:15:00Z"),
            ("avant 23h45", "2027-10-31T22:45:00Z"),
            ("avant 20h", "2027-11-01T19:00:00Z"),
        ] {
            normalize(text, &mut n);
            let got = find_deadline(n.as_str(), sent, &tz).map(format_rfc3339);
            assert_eq!(got.as_deref(), Some(want), "{text}");
        }
        // Spring: sent at 01:30 local on 28 March 2027, "avant 1h" is 01:00 on the
        // 29th (23:00Z on the 28th), not 24 h after 01:00 on the 28th (00:00Z on the 29th).
        let sent = parse_rfc3339("2027-03-28T00:30:00Z").unwrap();
        normalize("avant 1h", &mut n);
        assert_eq!(
            find_deadline(n.as_str(), sent, &tz)
                .map(format_rfc3339)
                .as_deref(),
            Some("2027-03-28T23:00:00Z")
        );
    }

    #[test]
    fn the_earliest_deadline_wins() {
        assert_eq!(
            deadline("tu as 2h, non en fait dans 30 min").as_deref(),
            Some("2026-11-22T19:00:00Z")
        );
    }

    #[test]
    fn a_message_ending_in_half_an_does_not_panic() {
        // Found by the `deadline` fuzz target (fuzz/artifacts/deadline/): the duration
        // read there counts three tokens, one past the end of the message.
        for text in ["half an", "une demi", "attends une demi", "half"] {
            assert_eq!(deadline(text), None, "{text}");
        }
        assert_eq!(
            deadline("t'as une demi").as_deref(),
            Some("2026-11-22T19:00:00Z")
        );
    }

    #[test]
    fn a_countdown_alone_or_with_a_timer_emoji() {
        for (text, want) in [
            ("40 minutes", "2026-11-22T19:10:00Z"),
            ("10 min 😈", "2026-11-22T18:40:00Z"),
            ("⏳1️⃣h", "2026-11-22T19:30:00Z"),
            ("⏳4️⃣5️⃣m", "2026-11-22T19:15:00Z"),
            ("30 minuti ⏰", "2026-11-22T19:00:00Z"),
            ("timer says 45 minutes", "2026-11-22T19:15:00Z"),
        ] {
            assert_eq!(deadline(text).as_deref(), Some(want), "{text}");
        }
        for text in ["40 minutes of math homework", "1h de route 😩"] {
            assert_eq!(deadline(text), None, "{text}");
        }
    }

    #[test]
    fn numbers_without_cues_are_not_deadlines() {
        for text in [
            "j'ai 14 ans",
            "i played 2 hours",
            "1h de route",
            "200€",
            "level 20",
            "i'm 15 and 3 days",
        ] {
            assert_eq!(deadline(text), None, "{text}");
        }
    }

    /// Every word of the tables as the normaliser writes it: a word it would rewrite
    /// (`innerhalb`, `alle`, `mezzanotte`, `gg`) could never match.
    #[test]
    fn table_words_are_normalised() {
        let mut seqs: Vec<Vec<&str>> = Vec::new();
        seqs.extend(DURATION_CUES.iter().map(|c| c.to_vec()));
        seqs.extend(CLOCK_CUES.iter().map(|(c, _)| c.to_vec()));
        seqs.extend(DAY_WORDS.iter().map(|(c, _, _)| c.to_vec()));
        seqs.extend(
            DAY_WORDS
                .iter()
                .flat_map(|(_, _, n)| n.iter().map(|w| vec![*w])),
        );
        seqs.extend(CLOCK_WORDS.iter().map(|(c, _)| c.to_vec()));
        seqs.extend(DURATION_PHRASES.iter().map(|(c, _)| c.to_vec()));
        seqs.extend(HALF_WORDS_AFTER.iter().map(|(c, _)| c.to_vec()));
        for words in [
            AFTER_CUES,
            AFTER_CUES_NEXT,
            NOT_AN_HOUR,
            AND_WORDS,
            HALF_WORDS,
            QUARTER_WORDS,
        ] {
            seqs.extend(words.iter().map(|w| vec![*w]));
        }
        seqs.extend(NUMBER_WORDS.iter().map(|(w, _)| vec![*w]));
        seqs.extend(HOUR_WORDS.iter().map(|(w, _)| vec![*w]));
        let mut n = Normalized::new();
        for seq in seqs {
            let want = format!(" {} ", seq.join(" "));
            if let [emoji] = seq[..] {
                // Emoji tokens come from the emoji themselves.
                let typed = match emoji {
                    "emoji_hourglass" => Some("⏳"),
                    "emoji_alarm" => Some("⏰"),
                    "emoji_clock" => Some("🕐"),
                    _ => None,
                };
                if let Some(typed) = typed {
                    normalize(typed, &mut n);
                    assert_eq!(n.as_str(), want);
                    continue;
                }
            }
            // Elisions are typed with an apostrophe ("t'as", "d'ici", "jusqu'à").
            let ok = [seq.join(" "), seq.join("'")].iter().any(|text| {
                normalize(text, &mut n);
                n.as_str() == want
            });
            assert!(ok, "{seq:?} is not in normalised form");
        }
    }

    #[test]
    fn spanish() {
        for (text, want) in [
            ("tienes 1 hora para pagar", "2026-11-22T19:30:00Z"),
            ("te quedan 30 minutos", "2026-11-22T19:00:00Z"),
            ("tenes 2 hs o lo subo", "2026-11-22T20:30:00Z"),
            ("en 2 horas lo publico", "2026-11-22T20:30:00Z"),
            ("dentro de media hora", "2026-11-22T19:00:00Z"),
            (
                "tienes una hora y media o se lo mando a todos",
                "2026-11-22T20:00:00Z",
            ),
            ("24hs o lo ven todos tus amigos", "2026-11-23T18:30:00Z"),
            ("10 min sino lo subo", "2026-11-22T18:40:00Z"),
            // A bare hour is the next of 10:00 and 22:00.
            ("antes de las 10", "2026-11-22T22:00:00Z"),
            ("a las 10 de la noche", "2026-11-22T22:00:00Z"),
            ("a las 12 de la noche", "2026-11-23T00:00:00Z"),
            ("a las 9 y media", "2026-11-22T21:30:00Z"),
            ("hasta las 22:00", "2026-11-22T22:00:00Z"),
            ("a la una", "2026-11-23T01:00:00Z"),
            ("antes de las diez", "2026-11-22T22:00:00Z"),
            ("esta noche", "2026-11-22T20:00:00Z"),
            ("esta noche a las 10", "2026-11-22T22:00:00Z"),
            ("antes de medianoche", "2026-11-23T00:00:00Z"),
            ("mañana", "2026-11-23T12:00:00Z"),
            ("mañana a las 9", "2026-11-23T09:00:00Z"),
            ("mañana por la mañana", "2026-11-23T09:00:00Z"),
            ("pasado mañana", "2026-11-24T12:00:00Z"),
            // "de la mañana" after a clock time is a.m., not tomorrow.
            ("a las 10 de la mañana", "2026-11-23T10:00:00Z"),
            // Fine to read: a number with a unit and a cue.
            ("en 2 horas termina el partido", "2026-11-22T20:30:00Z"),
        ] {
            assert_eq!(deadline(text).as_deref(), Some(want), "{text}");
        }
        for text in [
            "tengo 2 horas de clase",
            "tengo 14 años",
            "esta mañana fui al cole",
            "son las 10",
            "manda las 3 fotos",
            "estuve 2 horas esperando",
            "a los 15 años",
        ] {
            assert_eq!(deadline(text), None, "{text}");
        }
    }

    #[test]
    fn german() {
        for (text, want) in [
            ("du hast 1 Stunde", "2026-11-22T19:30:00Z"),
            ("du hast noch 30 Minuten", "2026-11-22T19:00:00Z"),
            ("in einer Stunde ist alles online", "2026-11-22T19:30:00Z"),
            ("innerhalb von 2 Std", "2026-11-22T20:30:00Z"),
            (
                "eine halbe Stunde, sonst schick ichs rum",
                "2026-11-22T19:00:00Z",
            ),
            (
                "24 Stunden oder deine Eltern sehen alles",
                "2026-11-23T18:30:00Z",
            ),
            ("noch 10 min!!", "2026-11-22T18:40:00Z"),
            ("bis 22 Uhr", "2026-11-22T22:00:00Z"),
            ("bis 22.30 Uhr", "2026-11-22T22:30:00Z"),
            ("um 10", "2026-11-22T22:00:00Z"),
            ("um 10 Uhr abends", "2026-11-22T22:00:00Z"),
            ("um halb 10", "2026-11-22T21:30:00Z"),
            ("heute Abend", "2026-11-22T20:00:00Z"),
            ("heute abend um 9", "2026-11-22T21:00:00Z"),
            ("bis Mitternacht", "2026-11-23T00:00:00Z"),
            ("bis morgen", "2026-11-23T12:00:00Z"),
            ("Morgen früh", "2026-11-23T09:00:00Z"),
            ("morgen um 8", "2026-11-23T08:00:00Z"),
            ("übermorgen", "2026-11-24T12:00:00Z"),
        ] {
            assert_eq!(deadline(text).as_deref(), Some(want), "{text}");
        }
        for text in [
            "ich bin 14",
            "guten Morgen",
            "heute Morgen war Schule",
            "vor 2 Jahren",
            "vor 10 Minuten",
            "ich hab 2 Stunden Mathe",
            "wir waren zu 3",
        ] {
            assert_eq!(deadline(text), None, "{text}");
        }
        // Clock times in the tenant's zone: 22:00 in Berlin is 21:00 UTC in November.
        assert_eq!(
            deadline_in("bis 22 Uhr", "Europe/Berlin").as_deref(),
            Some("2026-11-22T21:00:00Z")
        );
    }

    #[test]
    fn portuguese() {
        for (text, want) in [
            ("você tem 1 hora", "2026-11-22T19:30:00Z"),
            ("vc tem 30 min", "2026-11-22T19:00:00Z"),
            ("tens 2 horas senão eu posto", "2026-11-22T20:30:00Z"),
            ("em uma hora", "2026-11-22T19:30:00Z"),
            ("daqui a meia hora", "2026-11-22T19:00:00Z"),
            (
                "uma hora e meia ou mando pra todo mundo",
                "2026-11-22T20:00:00Z",
            ),
            ("5 minutinhos ou já era", "2026-11-22T18:35:00Z"),
            ("até às 22h", "2026-11-22T22:00:00Z"),
            ("ate as 22", "2026-11-22T22:00:00Z"),
            ("antes das 10", "2026-11-22T22:00:00Z"),
            ("às 22h", "2026-11-22T22:00:00Z"),
            ("às 10 da noite", "2026-11-22T22:00:00Z"),
            ("às 10 e meia", "2026-11-22T22:30:00Z"),
            ("tens até às 21h30", "2026-11-22T21:30:00Z"),
            ("hoje à noite", "2026-11-22T20:00:00Z"),
            ("hj a noite", "2026-11-22T20:00:00Z"),
            ("até meia-noite", "2026-11-23T00:00:00Z"),
            ("amanhã", "2026-11-23T12:00:00Z"),
            ("amanhã às 9", "2026-11-23T09:00:00Z"),
            ("depois de amanhã", "2026-11-24T12:00:00Z"),
        ] {
            assert_eq!(deadline(text).as_deref(), Some(want), "{text}");
        }
        for text in [
            "tenho 14 anos",
            "tenho 2 horas de aula",
            "manda as 10 fotos",
            "as 3 meninas",
            "de manhã eu vou",
        ] {
            assert_eq!(deadline(text), None, "{text}");
        }
    }

    #[test]
    fn italian() {
        for (text, want) in [
            ("hai un'ora", "2026-11-22T19:30:00Z"),
            ("hai solo 10 minuti", "2026-11-22T18:40:00Z"),
            ("entro 2 ore", "2026-11-22T20:30:00Z"),
            ("tra mezz'ora", "2026-11-22T19:00:00Z"),
            (
                "fra 24 ore altrimenti pubblico tutto",
                "2026-11-23T18:30:00Z",
            ),
            ("un'ora e mezza o lo mando", "2026-11-22T20:00:00Z"),
            ("ti restano 3 giorni", "2026-11-25T18:30:00Z"),
            ("entro le 22", "2026-11-22T22:00:00Z"),
            ("alle 10", "2026-11-22T22:00:00Z"),
            ("prima delle 10 di sera", "2026-11-22T22:00:00Z"),
            ("alle 21:30", "2026-11-22T21:30:00Z"),
            ("stasera", "2026-11-22T20:00:00Z"),
            ("entro stasera", "2026-11-22T20:00:00Z"),
            ("entro mezzanotte", "2026-11-23T00:00:00Z"),
            ("domani", "2026-11-23T12:00:00Z"),
            ("domani alle 9", "2026-11-23T09:00:00Z"),
            ("dopodomani", "2026-11-24T12:00:00Z"),
        ] {
            assert_eq!(deadline(text).as_deref(), Some(want), "{text}");
        }
        for text in [
            "ho 14 anni",
            "ho studiato 2 ore",
            "tra noi due",
            "alle 3 foto",
            "sei carina",
            "dillo alle tue amiche",
        ] {
            assert_eq!(deadline(text), None, "{text}");
        }
    }

    #[test]
    fn a_clock_time_with_its_day_after_it() {
        // French and English too: the day word after the clock time is its day.
        assert_eq!(
            deadline("à 22h ce soir").as_deref(),
            Some("2026-11-22T22:00:00Z")
        );
        assert_eq!(
            deadline("ce soir 8h").as_deref(),
            Some("2026-11-22T20:00:00Z")
        );
        assert_eq!(
            deadline("avant 9h demain").as_deref(),
            Some("2026-11-23T09:00:00Z")
        );
        assert_eq!(
            deadline("bis 8 Uhr morgen").as_deref(),
            Some("2026-11-23T08:00:00Z")
        );
    }
}
