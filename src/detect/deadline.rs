//! Deadline extraction: reads a countdown ("t'as 1h", "dans 30 min", "you have 2 hours",
//! "avant minuit", "ce soir 20h", "by tonight") in normalised French or English text and
//! turns it into an absolute `respond_by`, from the message's `sent_at`. Clock times are
//! read in the tenant's time zone.
//!
//! A number becomes a deadline only next to a cue ("tu as", "dans", "you have", "within",
//! "avant", "by", "sinon", "or else"...); day words ("ce soir", "tonight", "minuit",
//! "demain") are deadlines by themselves. The earliest deadline of a message wins.

use crate::detect::time::{Millis, DAY, HOUR, MINUTE, SECOND};
use jiff::tz::TimeZone;
use jiff::Timestamp;

/// Evening default when "ce soir" / "tonight" has no clock time.
const EVENING_HOUR: i8 = 20;
/// "demain" / "tomorrow" with no clock time.
const TOMORROW_HOUR: i8 = 12;

/// Words before a number that make it a duration to wait ("t'as 1h", "in 2 hours").
const DURATION_CUES: &[&[&str]] = &[
    &["tu", "as"],
    &["t", "as"],
    &["ta"],
    &["vous", "avez"],
    &["dans"],
    &["d", "ici"],
    &["sous"],
    &["reste"],
    &["plus", "que"],
    &["you", "have"],
    &["you", "got"],
    &["you", "ve", "got"],
    &["you", "ve"],
    &["in"],
    &["within"],
    &["only"],
    &["next"],
];
/// Words before a clock time ("avant 20h", "by 8pm").
const CLOCK_CUES: &[&[&str]] = &[
    &["avant"],
    &["a"],
    &["pour"],
    &["jusqu", "a"],
    &["before"],
    &["by"],
    &["at"],
    &["until"],
    &["til"],
    &["till"],
];
/// Words after a duration that make it a threat's deadline ("1h sinon", "24h or else").
const AFTER_CUES: &[&str] = &[
    "sinon",
    "or",
    "otherwise",
    "left",
    "remaining",
    "max",
    "pour",
    "to",
];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Found {
    Duration(Millis),
    /// Local clock time; `day` is 0 for "next occurrence", 1 for "tomorrow".
    Clock {
        hour: i8,
        minute: i8,
        tomorrow: bool,
    },
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
            tomorrow,
        } => {
            let now = Timestamp::from_millisecond(sent_at)
                .ok()?
                .to_zoned(tz.clone());
            let date = if tomorrow {
                now.date().tomorrow().ok()?
            } else {
                now.date()
            };
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
            if ms <= sent_at && !tomorrow {
                // Tomorrow at that clock time, not 24 h later: a DST change may lie in
                // between (24 h after 00:15 on the autumn change is 23:15 that day).
                ms = at(date.tomorrow().ok()?)?;
            }
            Some(ms)
        }
    }
}

fn cue_before(tokens: &[&str], i: usize, cues: &[&[&str]]) -> bool {
    // The cue ends at most two words before the number ("t'as encore 1h", "in just 2 hours").
    (0..=2).any(|gap| {
        cues.iter().any(|cue| {
            let end = match i.checked_sub(gap) {
                Some(e) => e,
                None => return false,
            };
            end >= cue.len() && tokens[end - cue.len()..end] == **cue
        })
    })
}

fn cue_after(tokens: &[&str], end: usize) -> bool {
    // `end` may be past the last token: "half an" and "une demi" count the unit word
    // that usually follows ("half an hour") even when the message ends before it.
    let after = tokens.get(end..).unwrap_or_default();
    after.iter().take(2).any(|t| AFTER_CUES.contains(t))
}

/// Reads an expression starting at token `i`; returns it and how many tokens it used.
fn read_at(tokens: &[&str], i: usize) -> (Option<Found>, usize) {
    let t = tokens[i];
    let next = tokens.get(i + 1).copied().unwrap_or("");
    // Day words.
    match (t, next) {
        ("ce", "soir") | ("tonight", _) => {
            let used = if t == "ce" { 2 } else { 1 };
            if let Some((h, m, u)) = clock_at(tokens, i + used) {
                return (
                    Some(Found::Clock {
                        hour: h,
                        minute: m,
                        tomorrow: false,
                    }),
                    used + u,
                );
            }
            return (
                Some(Found::Clock {
                    hour: EVENING_HOUR,
                    minute: 0,
                    tomorrow: false,
                }),
                used,
            );
        }
        ("demain", _) | ("tomorow", _) => {
            let skip = usize::from(matches!(next, "a" | "at" | "avant" | "before" | "by"));
            if let Some((h, m, u)) = clock_at(tokens, i + 1 + skip) {
                return (
                    Some(Found::Clock {
                        hour: h,
                        minute: m,
                        tomorrow: true,
                    }),
                    1 + skip + u,
                );
            }
            return (
                Some(Found::Clock {
                    hour: TOMORROW_HOUR,
                    minute: 0,
                    tomorrow: true,
                }),
                1,
            );
        }
        ("minuit", _) | ("midnight", _) => {
            return (
                Some(Found::Clock {
                    hour: 24,
                    minute: 0,
                    tomorrow: false,
                }),
                1,
            )
        }
        ("l", "heure") | ("the", "hour")
            if i > 0 && matches!(tokens[i - 1], "dans" | "within" | "sous") =>
        {
            return (Some(Found::Duration(HOUR)), 2)
        }
        _ => {}
    }
    if cue_before(tokens, i, CLOCK_CUES) {
        if let Some((h, m, u)) = clock_at(tokens, i) {
            return (
                Some(Found::Clock {
                    hour: h,
                    minute: m,
                    tomorrow: false,
                }),
                u,
            );
        }
    }
    if let Some((d, u)) = duration_at(tokens, i) {
        if cue_before(tokens, i, DURATION_CUES) || cue_after(tokens, i + u) {
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
    Some(match t {
        "un" | "une" | "one" | "a" | "an" => 1,
        "deux" | "two" => 2,
        "trois" | "thre" => 3,
        "quatre" | "four" => 4,
        "cinq" | "five" => 5,
        "six" => 6,
        "dix" | "ten" => 10,
        "quinze" | "fifteen" => 15,
        "vingt" | "twenty" => 20,
        "trente" | "thirty" => 30,
        _ => return None,
    })
}

fn unit(t: &str) -> Option<Millis> {
    Some(match t {
        "s" | "sec" | "secs" | "second" | "seconds" | "seconde" | "secondes" => SECOND,
        "m" | "mn" | "min" | "mins" | "minute" | "minutes" => MINUTE,
        "h" | "hr" | "hrs" | "hour" | "hours" | "heure" | "heures" => HOUR,
        "j" | "d" | "day" | "days" | "jour" | "jours" => DAY,
        "sem" | "semaine" | "semaines" | "wek" | "weks" => 7 * DAY,
        _ => return None,
    })
}

/// `30 min`, `2 hours`, `1h`, `1h30`, `48hrs`, `une heure`, `half an hour`, `une demi heure`.
fn duration_at(tokens: &[&str], i: usize) -> Option<(Millis, usize)> {
    let t = tokens[i];
    let next = tokens.get(i + 1).copied().unwrap_or("");
    if matches!(
        (t, next),
        ("half", "an") | ("half", "hour") | ("demi", "heure") | ("une", "demi")
    ) {
        let used = match (t, next) {
            ("half", "an") | ("une", "demi") => 3,
            _ => 2,
        };
        return Some((30 * MINUTE, used));
    }
    // A number and a unit glued together: 1h, 30min, 1h30, 2j.
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    if digits > 0 && digits < t.len() && digits <= 3 {
        let n: i64 = t[..digits].parse().ok()?;
        let rest = &t[digits..];
        if let Some(u) = unit(rest) {
            return Some((n * u, 1));
        }
        if let Some(mins) = rest
            .strip_prefix('h')
            .and_then(|m| m.parse::<i64>().ok())
            .filter(|m| *m < 60)
        {
            return Some((n * HOUR + mins * MINUTE, 1));
        }
        return None;
    }
    let n = number(t)?;
    let u = unit(next)?;
    Some((n * u, 2))
}

/// `20h`, `20h30`, `8pm`, `8 pm`, `20 heures`, `20 00`, `midi`, `noon`, `minuit`.
fn clock_at(tokens: &[&str], i: usize) -> Option<(i8, i8, usize)> {
    let t = *tokens.get(i)?;
    let next = tokens.get(i + 1).copied().unwrap_or("");
    match t {
        "midi" | "noon" => return Some((12, 0, 1)),
        "minuit" | "midnight" => return Some((24, 0, 1)),
        _ => {}
    }
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || digits > 2 {
        return None;
    }
    let h: i8 = t[..digits].parse().ok()?;
    let rest = &t[digits..];
    let (mut hour, minute, used) = match rest {
        "h" => match next.parse::<i8>() {
            Ok(m) if (0..60).contains(&m) && next.len() == 2 => (h, m, 2),
            _ => (h, 0, 1),
        },
        "pm" => (pm(h)?, 0, 1),
        "am" => (h % 12, 0, 1),
        "" => match next {
            "pm" => (pm(h)?, 0, 2),
            "am" => (h % 12, 0, 2),
            "heure" | "heures" | "h" => (h, 0, 2),
            m if m.len() == 2 && m.bytes().all(|b| b.is_ascii_digit()) => {
                let m: i8 = m.parse().ok()?;
                match tokens.get(i + 2).copied() {
                    Some("pm") => (pm(h)?, m, 3),
                    Some("am") => (h % 12, m, 3),
                    _ => (h, m, 2),
                }
            }
            _ => return None,
        },
        r if r.starts_with('h') => (h, r[1..].parse().ok()?, 1),
        _ => return None,
    };
    if hour == 24 && minute == 0 {
        hour = 24;
    } else if !(0..24).contains(&hour) || !(0..60).contains(&minute) {
        return None;
    }
    Some((hour, minute, used))
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
}
