//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod desk;
pub mod receiver;
pub mod scopes;
pub mod webdriver;

use pairwatch::detect::alert::Alert;
use pairwatch::detect::engine::{Engine, EngineConfig};
use pairwatch::detect::event::{Event, Limits};
use pairwatch::detect::pack::RulePack;
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
    http(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    )
    .await
}

/// Sends `request` (a whole HTTP/1.1 request, `Connection: close`) as written: status
/// code and body.
pub async fn http(addr: std::net::SocketAddr, request: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
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

/// Starts the real binary, `pairwatch serve`, on `dir` and two loopback ports, with a
/// 1 s checkpoint interval and `env` on top; its log goes to `dir/server.log` (or to
/// `log`, when given, for a data directory on a filesystem that may fill up).
pub fn spawn_server(
    dir: &std::path::Path,
    grpc: u16,
    http: u16,
    log: Option<&std::path::Path>,
    env: &[(&str, &str)],
) -> std::process::Child {
    spawn_server_with(dir, grpc, http, log, env, &[])
}

/// [`spawn_server`] with more arguments after `serve` (`--config FILE`, say).
pub fn spawn_server_with(
    dir: &std::path::Path,
    grpc: u16,
    http: u16,
    log: Option<&std::path::Path>,
    env: &[(&str, &str)],
    args: &[&str],
) -> std::process::Child {
    std::fs::create_dir_all(dir).unwrap();
    let log_path = log.map_or_else(|| dir.join("server.log"), |l| l.to_path_buf());
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .unwrap();
    std::process::Command::new(env!("CARGO_BIN_EXE_pairwatch"))
        .arg("serve")
        .args(args)
        .env("PAIRWATCH__SERVER__DATA_DIR", dir)
        .env("PAIRWATCH__SERVER__GRPC_ADDR", format!("127.0.0.1:{grpc}"))
        .env("PAIRWATCH__SERVER__HTTP_ADDR", format!("127.0.0.1:{http}"))
        .env("PAIRWATCH__DURABILITY__CHECKPOINT_INTERVAL", "1s")
        .env("PAIRWATCH__LOG__LEVEL", "info")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start pairwatch serve")
}

/// The status code of `/readyz` (0 when the server does not answer).
pub async fn readyz(http: u16) -> u16 {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], http));
    match tokio::net::TcpStream::connect(addr).await {
        Ok(_) => http_get(addr, "/readyz").await.0,
        Err(_) => 0,
    }
}

/// Waits until `/readyz` answers `want` (200 or 503), for at most 30 s.
pub async fn wait_readyz(http: u16, want: u16) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        if readyz(http).await == want {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("/readyz never answered {want}");
}

pub async fn connect(grpc: u16) -> tonic::transport::Channel {
    tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{grpc}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// A small tmpfs mounted for one test: a real filesystem that fills up. Mounting needs
/// root, as CI has; the test fails with that reason otherwise.
pub struct SmallFs {
    pub path: std::path::PathBuf,
}

impl SmallFs {
    pub fn mount(name: &str, bytes: u64) -> SmallFs {
        use std::process::Command;
        let path = std::env::temp_dir().join(format!("pw-fs-{}-{name}", std::process::id()));
        let _ = Command::new("umount").arg("-l").arg(&path).output();
        std::fs::create_dir_all(&path).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(&path)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "cannot mount a {bytes}-byte tmpfs at {} (the disk-full tests need root, as CI has): {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        SmallFs { path }
    }

    /// Takes every byte left with one file, and returns its path.
    pub fn fill(&self) -> std::path::PathBuf {
        self.fill_more(0)
    }

    /// Takes every byte left with the `n`th filler file.
    pub fn fill_more(&self, n: usize) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.path.join(format!("filler-{n}"));
        let mut f = std::fs::File::create(&path).unwrap();
        for chunk in [65536usize, 4096, 1] {
            let buf = vec![0u8; chunk];
            while f.write_all(&buf).is_ok() {}
        }
        path
    }

    /// Gives the space of a filler back.
    pub fn free(&self, filler: &std::path::Path) {
        std::fs::remove_file(filler).unwrap();
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .output();
        let _ = std::fs::remove_dir(&self.path);
    }
}

/// A child process killed (SIGKILL) when dropped, so that a failing test leaves no
/// server behind.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A gRPC channel to a server on `addr`.
pub async fn channel(addr: std::net::SocketAddr) -> tonic::transport::Channel {
    tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}
