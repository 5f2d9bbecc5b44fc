//! Event time: milliseconds since the Unix epoch, parsed from and printed as RFC 3339.
//!
//! The engine never reads a clock; every window (first contact, first day, deadline)
//! is computed from these values.

/// Milliseconds since 1970-01-01T00:00:00Z.
pub type Millis = i64;

pub const SECOND: Millis = 1_000;
pub const MINUTE: Millis = 60 * SECOND;
pub const HOUR: Millis = 60 * MINUTE;
pub const DAY: Millis = 24 * HOUR;

/// Earliest accepted event time: 1970-01-01T00:00:00Z.
pub const MIN_TIME: Millis = 0;
/// Latest accepted event time: 9999-12-30T22:00:00Z, the latest millisecond the time
/// library handles (so that every offset can print it).
pub const MAX_TIME: Millis = 253_402_207_200_000;

/// Parses an RFC 3339 timestamp with an offset (`2026-11-22T21:04:05Z`,
/// `2026-11-22T22:04:05.250+01:00`). Sub-millisecond digits are truncated.
pub fn parse_rfc3339(s: &str) -> Option<Millis> {
    let ts: jiff::Timestamp = s.parse().ok()?;
    Some(ts.as_millisecond())
}

/// Prints `ms` as RFC 3339 in UTC, with milliseconds only when they are not zero.
pub fn format_rfc3339(ms: Millis) -> String {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(ts) => ts.to_string(),
        Err(_) => String::from("invalid-time"),
    }
}

/// Wall-clock time now (for record metadata and the future-skew check at the service
/// boundary, never for detection, which runs on event time).
pub fn now_millis() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Millis)
}

/// Prints a duration in its two largest units: `31d 2h`, `10m`, `1m 30s`, `250ms`.
pub fn format_duration(ms: Millis) -> String {
    if ms < 0 {
        return format!("-{}", format_duration(ms.saturating_neg()));
    }
    const UNITS: [(Millis, &str); 5] = [
        (DAY, "d"),
        (HOUR, "h"),
        (MINUTE, "m"),
        (SECOND, "s"),
        (1, "ms"),
    ];
    let mut parts = Vec::new();
    let mut rest = ms;
    for (size, name) in UNITS {
        if rest >= size || (size == 1 && parts.is_empty()) {
            parts.push(format!("{}{name}", rest / size));
            rest %= size;
        } else if !parts.is_empty() {
            // Only adjacent units: "1d 5m" would read as precise and is not.
            break;
        }
        if parts.len() == 2 {
            break;
        }
    }
    parts.join(" ")
}

/// Parses a human duration used in configuration and rules: `90s`, `30m`, `24h`, `7d`.
pub fn parse_duration(s: &str) -> Option<Millis> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = s.split_at(split);
    let n: i64 = num.parse().ok()?;
    let unit_ms = match unit {
        "ms" => 1,
        "s" => SECOND,
        "m" | "min" => MINUTE,
        "h" => HOUR,
        "d" => DAY,
        "w" => 7 * DAY,
        _ => return None,
    };
    n.checked_mul(unit_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_utc_and_offsets() {
        let a = parse_rfc3339("2026-11-22T21:04:05Z").unwrap();
        let b = parse_rfc3339("2026-11-22T22:04:05+01:00").unwrap();
        assert_eq!(a, b);
        assert_eq!(format_rfc3339(a), "2026-11-22T21:04:05Z");
        let c = parse_rfc3339("2026-11-22T21:04:05.250Z").unwrap();
        assert_eq!(c - a, 250);
        assert_eq!(format_rfc3339(c), "2026-11-22T21:04:05.25Z");
    }

    #[test]
    fn rejects_bad_timestamps() {
        for bad in [
            "",
            "2026-11-22",
            "2026-13-01T00:00:00Z",
            "yesterday",
            "2026-11-22T21:04:05",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30d"), Some(30 * DAY));
        assert_eq!(parse_duration("24h"), Some(DAY));
        assert_eq!(parse_duration("90s"), Some(90 * SECOND));
        assert_eq!(parse_duration("5 parsecs"), None);
        assert_eq!(parse_duration("h"), None);
    }

    #[test]
    fn prints_durations_in_two_units() {
        assert_eq!(format_duration(0), "0ms");
        assert_eq!(format_duration(250), "250ms");
        assert_eq!(format_duration(10 * MINUTE), "10m");
        assert_eq!(format_duration(90 * SECOND), "1m 30s");
        assert_eq!(format_duration(31 * DAY + 2 * HOUR + 5 * MINUTE), "31d 2h");
        assert_eq!(format_duration(DAY + 5 * MINUTE), "1d");
        assert_eq!(format_duration(-2 * HOUR), "-2h");
    }

    #[test]
    fn the_accepted_range_is_years_1970_to_9999() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(MIN_TIME));
        assert_eq!(parse_rfc3339("9999-12-30T22:00:00Z"), Some(MAX_TIME));
        assert_eq!(format_rfc3339(MAX_TIME), "9999-12-30T22:00:00Z");
        assert_eq!(format_rfc3339(MAX_TIME + 1), "invalid-time");
        assert_eq!(format_rfc3339(MIN_TIME), "1970-01-01T00:00:00Z");
    }
}
