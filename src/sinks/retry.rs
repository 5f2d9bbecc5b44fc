//! When a webhook delivery is tried again, and when it is given up: pure rules, so the
//! delivery loop only follows them.
//!
//! - 2xx: delivered.
//! - 408 and 429: tried again, after `Retry-After` when the destination gives one.
//! - any other 4xx: the destination refuses this alert; trying again cannot help.
//! - 1xx and 3xx: not an answer a receiver should give to a POST (redirects are not
//!   followed: the signature is for the configured URL); given up like a refusal.
//! - 5xx, a timeout, a connection error: tried again with exponential backoff and full
//!   jitter.
//!
//! Every retry waits at least [`MIN_BACKOFF`]; none is tried once the alert has waited
//! `max_age` since its first attempt: it goes to the dead letters, with the last reason.

use std::time::Duration;

pub const MIN_BACKOFF: Duration = Duration::from_millis(250);
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// What one attempt gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// An HTTP answer, with its `Retry-After` in seconds, if any.
    Status(u16, Option<Duration>),
    Timeout,
    /// No HTTP answer: refused, reset, TLS failure, DNS.
    Failed(String),
}

impl Attempt {
    /// A short reason, for logs and dead letters (no URL, no body).
    pub fn reason(&self) -> String {
        match self {
            Attempt::Status(code, _) => format!("http {code}"),
            Attempt::Timeout => "timeout".into(),
            Attempt::Failed(e) => format!("connection: {e}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    RetryAfter(Duration),
    /// Dead-letter the alert, for this reason.
    GiveUp(String),
}

/// The verdict on attempt number `attempt` (1 for the first), made `age` after the
/// first attempt. `jitter` is uniform in [0, 1): the share of the backoff to wait.
pub fn verdict(
    a: &Attempt,
    attempt: u32,
    age: Duration,
    max_age: Duration,
    jitter: f64,
) -> Verdict {
    let asked = match a {
        Attempt::Status(code, _) if (200..300).contains(code) => return Verdict::Delivered,
        Attempt::Status(408 | 429, after) => *after,
        Attempt::Status(code, _) if (100..500).contains(code) => {
            return Verdict::GiveUp(format!("{} (not retried)", a.reason()));
        }
        _ => None,
    };
    let wait = asked
        .unwrap_or_else(|| backoff(attempt, jitter))
        .max(MIN_BACKOFF);
    if age + wait > max_age {
        return Verdict::GiveUp(format!(
            "{} after {attempt} attempts over {}s (max_age)",
            a.reason(),
            age.as_secs()
        ));
    }
    Verdict::RetryAfter(wait)
}

/// Full jitter over an exponential ceiling: 0.5 s, 1 s, 2 s... up to [`MAX_BACKOFF`].
fn backoff(attempt: u32, jitter: f64) -> Duration {
    let ceiling = Duration::from_millis(500)
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(MAX_BACKOFF);
    ceiling.mul_f64(jitter.clamp(0.0, 1.0))
}

/// A `Retry-After` value in seconds (the HTTP-date form is read as "no advice").
pub fn retry_after(v: &str) -> Option<Duration> {
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn success_client_errors_and_server_errors_each_get_their_verdict() {
        let v = |a: Attempt| verdict(&a, 1, Duration::ZERO, HOUR, 0.5);
        assert_eq!(v(Attempt::Status(204, None)), Verdict::Delivered);
        assert!(
            matches!(v(Attempt::Status(400, None)), Verdict::GiveUp(r) if r.contains("http 400"))
        );
        for refused in [401, 100, 301, 302, 307] {
            assert!(
                matches!(v(Attempt::Status(refused, None)), Verdict::GiveUp(_)),
                "{refused}"
            );
        }
        for retried in [
            Attempt::Status(503, None),
            Attempt::Status(500, None),
            Attempt::Status(408, None),
            Attempt::Status(429, None),
            Attempt::Timeout,
            Attempt::Failed("refused".into()),
        ] {
            assert!(matches!(v(retried), Verdict::RetryAfter(_)));
        }
    }

    #[test]
    fn retry_after_is_honoured_and_backoff_grows_with_jitter_up_to_a_ceiling() {
        let a = Attempt::Status(429, Some(Duration::from_secs(7)));
        assert_eq!(
            verdict(&a, 1, Duration::ZERO, HOUR, 0.0),
            Verdict::RetryAfter(Duration::from_secs(7))
        );
        let at = |n, j| match verdict(&Attempt::Timeout, n, Duration::ZERO, HOUR, j) {
            Verdict::RetryAfter(d) => d,
            other => panic!("{other:?}"),
        };
        assert_eq!(at(1, 0.999).as_millis(), 499);
        assert_eq!(at(4, 0.5), Duration::from_secs(2));
        assert_eq!(at(30, 0.5), MAX_BACKOFF / 2);
        assert_eq!(at(3, 0.0), MIN_BACKOFF);
        assert_eq!(retry_after(" 12 "), Some(Duration::from_secs(12)));
        assert_eq!(retry_after("Wed, 21 Oct 2026 07:28:00 GMT"), None);
    }

    #[test]
    fn an_alert_is_given_up_when_the_next_wait_would_pass_max_age() {
        let max = Duration::from_secs(10);
        let late = verdict(
            &Attempt::Status(503, None),
            6,
            Duration::from_secs(9),
            max,
            0.5,
        );
        assert!(
            matches!(&late, Verdict::GiveUp(r) if r.contains("http 503 after 6 attempts")),
            "{late:?}"
        );
        let asked_too_long = Attempt::Status(429, Some(Duration::from_secs(60)));
        assert!(matches!(
            verdict(&asked_too_long, 1, Duration::ZERO, max, 0.5),
            Verdict::GiveUp(_)
        ));
    }
}
