//! Helpers shared by the integration tests.
#![allow(dead_code)]

use pairwatch::alert::Alert;
use pairwatch::engine::{Engine, EngineConfig};
use pairwatch::event::{Event, Limits};
use pairwatch::pack::RulePack;
use std::sync::{Arc, OnceLock};

/// The embedded pack, compiled once per test binary.
pub fn pack() -> Arc<RulePack> {
    static PACK: OnceLock<Arc<RulePack>> = OnceLock::new();
    PACK.get_or_init(|| Arc::new(RulePack::embedded().expect("embedded pack")))
        .clone()
}

pub fn engine() -> Engine {
    Engine::new(pack(), EngineConfig::default())
}

/// Replays JSON lines through a fresh engine with the embedded pack.
pub fn replay_lines(lines: &str) -> Vec<Alert> {
    let mut engine = engine();
    let mut out = Vec::new();
    for line in lines.lines().filter(|l| !l.trim().is_empty()) {
        let ev = Event::from_json(line, &Limits::default()).expect("valid event");
        engine.process(&ev, &mut out);
    }
    out
}

/// Builds one message event.
pub fn msg(id: &str, at: &str, from: (&str, &str), to: (&str, &str), text: &str) -> String {
    serde_json::json!({
        "event_id": id, "tenant": "t", "sent_at": at,
        "sender": {"user_id": from.0, "age_band": from.1},
        "recipient": {"user_id": to.0, "age_band": to.1},
        "message": {"text": text, "attachments": []}
    })
    .to_string()
}

/// Builds a message event carrying one image and no text.
pub fn image(id: &str, at: &str, from: (&str, &str), to: (&str, &str)) -> String {
    serde_json::json!({
        "event_id": id, "tenant": "t", "sent_at": at,
        "sender": {"user_id": from.0, "age_band": from.1},
        "recipient": {"user_id": to.0, "age_band": to.1},
        "message": {"text": "", "attachments": [{"kind": "IMAGE"}]}
    })
    .to_string()
}

/// A port free on loopback now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A plain HTTP/1.1 GET: status code and body.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    let code = buf
        .split_whitespace()
        .nth(1)
        .unwrap_or("0")
        .parse()
        .unwrap_or(0);
    let body = buf
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_string())
        .unwrap_or_default();
    (code, body)
}
