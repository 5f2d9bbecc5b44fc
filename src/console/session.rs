//! Console sessions. A moderator exchanges a token (and names themself) for a session
//! cookie: random, HttpOnly, SameSite=Strict, expiring. The session carries the
//! token's [`Caller`] (its tenants), so every console call is scoped as the gRPC call
//! with that token would be. State-changing requests must also carry
//! [`CONSOLE_HEADER`], which a cross-site form cannot send. With no token configured
//! (loopback default) a login needs only the moderator's name.

use crate::server::auth::Caller;
use axum::http::HeaderMap;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const COOKIE: &str = "pairwatch_session";
/// The header every state-changing console request carries.
pub const CONSOLE_HEADER: &str = "x-pairwatch-console";
/// Most sessions held at once; expired ones are dropped first.
const MAX_SESSIONS: usize = 10_000;

#[derive(Clone, Debug)]
pub struct Session {
    pub caller: Caller,
    /// Who claims and resolves, as the moderator named themself at login.
    pub moderator: String,
    expires: Instant,
}

pub struct Sessions {
    by_id: Mutex<HashMap<String, Session>>,
    ttl: Duration,
}

/// 32 random bytes from the kernel, as hex.
fn random_id() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(crate::detect::digest::hex(&bytes))
}

impl Sessions {
    pub fn new(ttl: Duration) -> Sessions {
        Sessions {
            by_id: Mutex::new(HashMap::new()),
            ttl,
        }
    }

    /// A new session: its id and the `Set-Cookie` value.
    pub fn open(&self, caller: Caller, moderator: String) -> std::io::Result<String> {
        let id = random_id()?;
        let now = Instant::now();
        let mut all = self.by_id.lock().unwrap_or_else(|p| p.into_inner());
        if all.len() >= MAX_SESSIONS {
            all.retain(|_, s| s.expires > now);
        }
        if all.len() >= MAX_SESSIONS {
            return Err(std::io::Error::other("too many console sessions"));
        }
        all.insert(
            id.clone(),
            Session {
                caller,
                moderator,
                expires: now + self.ttl,
            },
        );
        Ok(format!(
            "{COOKIE}={id}; Path=/desk; HttpOnly; SameSite=Strict; Max-Age={}",
            self.ttl.as_secs()
        ))
    }

    /// The live session the request's cookie names.
    pub fn of(&self, headers: &HeaderMap) -> Option<Session> {
        let id = cookie(headers)?;
        let mut all = self.by_id.lock().unwrap_or_else(|p| p.into_inner());
        match all.get(&id) {
            Some(s) if s.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                all.remove(&id);
                None
            }
            None => None,
        }
    }

    pub fn close(&self, headers: &HeaderMap) {
        if let Some(id) = cookie(headers) {
            self.by_id
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
        }
    }
}

/// The value of the session cookie, if the request has one.
fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

/// A moderator's name as typed at login: what the audit log and claims show.
pub fn valid_moderator(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || "._@-".contains(c))
}

/// Whether `host` (a `host[:port]` as in an address or a `Host` header) names this
/// machine's loopback: `localhost`, `127.x.x.x` or `[::1]`.
pub fn is_loopback(host: &str) -> bool {
    crate::config::split_authority(host).is_some_and(|(name, _)| crate::config::loopback_name(name))
}

/// Whether the request came straight to a loopback name: its `Host` header names
/// loopback, and no proxy says it forwarded the request (a proxy on the same machine
/// would pass the first check for anyone who reaches it).
pub fn from_loopback_name(headers: &HeaderMap) -> bool {
    let proxied = [
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-real-ip",
    ]
    .iter()
    .any(|h| headers.contains_key(*h));
    !proxied
        && headers
            .get(axum::http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .is_some_and(is_loopback)
}

/// The expired cookie that logs a browser out.
pub fn cleared() -> String {
    format!("{COOKIE}=; Path=/desk; HttpOnly; SameSite=Strict; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_cookie(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(axum::http::header::COOKIE, v.parse().unwrap());
        h
    }

    #[test]
    fn a_session_is_found_by_its_cookie_until_it_expires_or_closes() {
        let sessions = Sessions::new(Duration::from_secs(60));
        let set = sessions.open(Caller::open(), "mod-ana".into()).unwrap();
        assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"));
        let id = set.split(';').next().unwrap();
        let headers = with_cookie(&format!("theme=dark; {id}"));
        assert_eq!(sessions.of(&headers).unwrap().moderator, "mod-ana");
        assert!(sessions
            .of(&with_cookie("pairwatch_session=forged"))
            .is_none());
        sessions.close(&headers);
        assert!(sessions.of(&headers).is_none());
        let gone = Sessions::new(Duration::ZERO);
        let set = gone.open(Caller::open(), "mod-ben".into()).unwrap();
        assert!(gone
            .of(&with_cookie(set.split(';').next().unwrap()))
            .is_none());
    }

    #[test]
    fn loopback_names_are_told_from_others() {
        for yes in [
            "127.0.0.1:9464",
            "localhost:9464",
            "LOCALHOST",
            "[::1]:9464",
            "127.0.0.2",
        ] {
            assert!(is_loopback(yes), "{yes}");
        }
        for no in [
            "0.0.0.0:9464",
            "[::]:9464",
            "evil.example:9464",
            "10.0.0.5",
            "localhost.evil.example",
        ] {
            assert!(!is_loopback(no), "{no}");
        }
        let mut h = HeaderMap::new();
        assert!(!from_loopback_name(&h));
        h.insert(axum::http::header::HOST, "127.0.0.1:9464".parse().unwrap());
        assert!(from_loopback_name(&h));
        h.insert("x-forwarded-for", "203.0.113.7".parse().unwrap());
        assert!(!from_loopback_name(&h), "through a proxy");
    }

    #[test]
    fn moderator_names_are_short_identifiers() {
        assert!(valid_moderator("ana.m@trust-team"));
        assert!(!valid_moderator(""));
        assert!(!valid_moderator("<script>"));
        assert!(!valid_moderator(&"a".repeat(65)));
    }
}
