//! `find_deadline` on normalised text, at any `sent_at` (extreme `i64`s included) and in
//! time zones with odd rules (DST at midnight, half-hour DST, a skipped day). Input:
//! one control byte (time zone, how to read the time, how to read the text), eight
//! bytes of time, then the text: arbitrary text, or one word of a deadline vocabulary
//! per byte so that cues, numbers and units meet often. The text is normalised first,
//! as the engine does.
//!
//! Checks: never panics; the same input gives the same answer (no clock is read); a
//! deadline found is not before `sent_at` (durations are not negative, and a clock time
//! already past means the next one).
#![no_main]

use jiff::tz::TimeZone;
use libfuzzer_sys::fuzz_target;
use pairwatch::detect::deadline::find_deadline;
use pairwatch::detect::normalize::{normalize, Normalized};
use std::sync::OnceLock;

const ZONES: [&str; 8] = [
    "UTC",
    "Europe/Paris",
    "America/Sao_Paulo",
    "America/Havana",
    "Australia/Lord_Howe",
    "Pacific/Apia",
    "America/St_Johns",
    "Asia/Tehran",
];

// French and English cue words, then Spanish, German, Portuguese and Italian ones.
const WORDS: [&str; 128] = [
    "tu",
    "as",
    "t'as",
    "dans",
    "d'ici",
    "sous",
    "reste",
    "plus",
    "que",
    "you",
    "have",
    "got",
    "you've",
    "in",
    "within",
    "only",
    "next",
    "avant",
    "a",
    "pour",
    "jusqu'à",
    "before",
    "by",
    "at",
    "until",
    "sinon",
    "or",
    "else",
    "left",
    "max",
    "ce",
    "soir",
    "tonight",
    "demain",
    "tomorrow",
    "minuit",
    "midnight",
    "midi",
    "noon",
    "l'heure",
    "the",
    "hour",
    "half",
    "an",
    "demi",
    "une",
    "heure",
    "h",
    "min",
    "minutes",
    "jours",
    "sem",
    "pm",
    "am",
    "0",
    "1",
    "12",
    "20",
    "24",
    "30",
    "59",
    "1h30",
    "0h15",
    "23h59",
    "tienes",
    "te",
    "quedan",
    "dentro",
    "una",
    "dos",
    "media",
    "hora",
    "horas",
    "antes",
    "hasta",
    "esta",
    "noche",
    "medianoche",
    "mañana",
    "o",
    "sino",
    "du",
    "hast",
    "noch",
    "innerhalb",
    "ein",
    "eine",
    "zwei",
    "halbe",
    "stunde",
    "stunden",
    "bis",
    "um",
    "vor",
    "uhr",
    "heute",
    "abend",
    "mitternacht",
    "morgen",
    "früh",
    "oder",
    "sonst",
    "tens",
    "você",
    "tem",
    "uma",
    "duas",
    "meia",
    "até",
    "às",
    "hoje",
    "meia-noite",
    "amanhã",
    "senão",
    "ou",
    "hai",
    "entro",
    "tra",
    "fra",
    "un'ora",
    "due",
    "ore",
    "minuti",
    "alle",
    "stasera",
    "mezzanotte",
    "domani",
    "altrimenti",
];

fn zones() -> &'static [TimeZone] {
    static Z: OnceLock<Vec<TimeZone>> = OnceLock::new();
    Z.get_or_init(|| {
        ZONES
            .iter()
            .map(|z| TimeZone::get(z).expect("bundled time zone"))
            .collect()
    })
}

/// 2000-01-01T00:00:00Z.
const Y2000: i64 = 946_684_800_000;

fuzz_target!(|data: &[u8]| {
    if data.len() < 9 {
        return;
    }
    let control = data[0];
    let raw = i64::from_le_bytes(data[1..9].try_into().unwrap());
    let rest = &data[9..];
    let tz = &zones()[usize::from(control & 7)];
    let sent_at = match (control >> 3) & 3 {
        // Any i64 at all.
        0 => raw,
        // A minute in 2000 to 2063, where the zones' rules change.
        1 => Y2000 + (raw.rem_euclid(64 * 366 * 24 * 60)) * 60_000,
        // A millisecond in the same years.
        2 => Y2000 + raw.rem_euclid(64 * 366 * 24 * 3_600_000),
        // Close to the ends of the time range the event contract accepts.
        _ => {
            let near = raw.rem_euclid(8 * 24 * 3_600_000);
            if raw < 0 {
                near
            } else {
                pairwatch::detect::time::MAX_TIME - near
            }
        }
    };
    let text = if control & 0x20 != 0 {
        rest.iter()
            .map(|b| WORDS[usize::from(b & 127)])
            .collect::<Vec<_>>()
            .join(" ")
    } else {
        String::from_utf8_lossy(rest).into_owned()
    };
    let mut n = Normalized::new();
    normalize(&text, &mut n);
    let found = find_deadline(n.as_str(), sent_at, tz);
    assert_eq!(find_deadline(n.as_str(), sent_at, tz), found);
    if let Some(d) = found {
        assert!(
            d >= sent_at,
            "deadline {d} ({}) before sent_at {sent_at} ({}) in {} for {:?}",
            pairwatch::detect::time::format_rfc3339(d),
            pairwatch::detect::time::format_rfc3339(sent_at),
            ZONES[usize::from(control & 7)],
            n.as_str()
        );
    }
});
