//! A small WebDriver client (W3C protocol, JSON over HTTP) driving Debian's headless
//! Chromium through chromedriver, for the console's browser test.

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Installs Debian's chromium and chromium-driver when they are missing (as `.ci/run`
/// does), or says why it cannot.
pub fn ensure_chromium() {
    if Path::new(CHROMEDRIVER).exists() && Path::new(CHROMIUM).exists() {
        return;
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n");
    assert!(
        root.unwrap_or(false),
        "the console's browser test needs Debian's chromium and chromium-driver: \
         apt-get install -y chromium chromium-driver (as root)"
    );
    for args in [
        vec!["update", "-qq"],
        vec!["install", "-y", "-qq", "chromium", "chromium-driver"],
    ] {
        let ok = Command::new("apt-get")
            .args(&args)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "apt-get {args:?} failed");
    }
}

/// A chromedriver process, killed on drop.
pub struct Driver {
    child: Child,
    /// The browsers' profile directories, removed with the driver.
    profiles: std::sync::Mutex<Vec<std::path::PathBuf>>,
    port: u16,
    http: Client<HttpConnector, Full<Bytes>>,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for p in self.profiles.lock().unwrap().iter() {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

impl Driver {
    pub async fn start() -> Driver {
        ensure_chromium();
        let port = super::free_port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let http = Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
        let d = Driver {
            child,
            profiles: std::sync::Mutex::new(Vec::new()),
            port,
            http,
        };
        let start = Instant::now();
        while d.call("GET", "/status", None).await.is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "chromedriver did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        d
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let req = hyper::Request::builder()
            .method(method)
            .uri(format!("http://127.0.0.1:{}{path}", self.port))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(
                body.map(|b| b.to_string()).unwrap_or_default(),
            )))
            .unwrap();
        let resp = self.http.request(req).await.map_err(|e| e.to_string())?;
        let ok = resp.status().is_success();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
        if ok {
            Ok(v["value"].clone())
        } else {
            Err(v["value"].to_string())
        }
    }

    /// A new headless browser window of `width`×`height`.
    pub async fn session(&self, width: u32, height: u32) -> Browser<'_> {
        let profile = std::env::temp_dir().join(format!(
            "pw-chromium-{}-{}",
            std::process::id(),
            super::free_port()
        ));
        self.profiles.lock().unwrap().push(profile.clone());
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage",
                    format!("--user-data-dir={}", profile.display()),
                    format!("--window-size={width},{height}"),
                ]
            }
        }}});
        let v = self
            .call("POST", "/session", Some(caps))
            .await
            .expect("new session");
        Browser {
            driver: self,
            id: v["sessionId"].as_str().unwrap().to_string(),
        }
    }
}

/// One browser session.
pub struct Browser<'a> {
    driver: &'a Driver,
    id: String,
}

impl Browser<'_> {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        self.driver
            .call(method, &format!("/session/{}{path}", self.id), body)
            .await
    }

    pub async fn goto(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url })))
            .await
            .unwrap();
    }

    pub async fn url(&self) -> String {
        self.call("GET", "/url", None)
            .await
            .unwrap()
            .as_str()
            .unwrap()
            .to_string()
    }

    /// The elements `css` selects now.
    pub async fn all(&self, css: &str) -> Vec<String> {
        self.call(
            "POST",
            "/elements",
            Some(json!({ "using": "css selector", "value": css })),
        )
        .await
        .unwrap_or_else(|e| panic!("find {css:?}: {e}"))
        .as_array()
        .unwrap_or_else(|| panic!("find {css:?}: not a list"))
        .iter()
        .map(|e| {
            e[ELEMENT]
                .as_str()
                .unwrap_or_else(|| panic!("{e}"))
                .to_string()
        })
        .collect()
    }

    /// The first element `css` selects, waiting up to `within` for it.
    pub async fn wait(&self, css: &str, within: Duration) -> String {
        let start = Instant::now();
        loop {
            if let Some(e) = self.all(css).await.into_iter().next() {
                return e;
            }
            assert!(
                start.elapsed() < within,
                "{css:?} not on the page within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn click(&self, element: &str) {
        self.call(
            "POST",
            &format!("/element/{element}/click"),
            Some(json!({})),
        )
        .await
        .unwrap();
    }

    pub async fn type_in(&self, element: &str, text: &str) {
        self.call(
            "POST",
            &format!("/element/{element}/value"),
            Some(json!({ "text": text })),
        )
        .await
        .unwrap();
    }

    pub async fn text(&self, element: &str) -> String {
        self.call("GET", &format!("/element/{element}/text"), None)
            .await
            .unwrap()
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub async fn attribute(&self, element: &str, name: &str) -> String {
        self.call("GET", &format!("/element/{element}/attribute/{name}"), None)
            .await
            .unwrap()
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Runs `script` (a function body; `return` gives the result) in the page.
    pub async fn run(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
        .await
        .unwrap()
    }

    /// Clicks what `css` selects, waiting for it and trying again when the page
    /// re-renders it between the look-up and the click.
    pub async fn click_css(&self, css: &str, within: Duration) {
        let start = Instant::now();
        loop {
            let e = self.wait(css, within).await;
            match self
                .call("POST", &format!("/element/{e}/click"), Some(json!({})))
                .await
            {
                Ok(_) => return,
                Err(err) if err.contains("stale") && start.elapsed() < within => {}
                Err(err) => panic!("click {css:?}: {err}"),
            }
        }
    }

    /// The text of what `css` selects now, if anything.
    pub async fn text_of(&self, css: &str) -> Option<String> {
        let script =
            format!("const e = document.querySelector({css:?}); return e ? e.textContent : null;");
        self.run(&script).await.as_str().map(str::to_string)
    }

    /// Waits until the text of what `css` selects satisfies `ok`; returns it.
    pub async fn text_until(
        &self,
        css: &str,
        within: Duration,
        ok: impl Fn(&str) -> bool,
    ) -> String {
        let start = Instant::now();
        loop {
            let t = self.text_of(css).await.unwrap_or_default();
            if ok(&t) {
                return t;
            }
            assert!(start.elapsed() < within, "{css:?}: {t:?} after {within:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Presses one key, as a moderator's keyboard shortcut.
    pub async fn press(&self, key: &str) {
        let actions = json!({ "actions": [{ "type": "key", "id": "keyboard", "actions": [
            { "type": "keyDown", "value": key }, { "type": "keyUp", "value": key }
        ]}]});
        self.call("POST", "/actions", Some(actions)).await.unwrap();
    }

    /// Runs `script`, a function body that calls `arguments[0]` with its result.
    pub async fn run_async(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/async",
            Some(json!({ "script": script, "args": [] })),
        )
        .await
        .unwrap()
    }

    /// A PNG of the window.
    pub async fn screenshot(&self) -> Vec<u8> {
        let b64 = self.call("GET", "/screenshot", None).await.unwrap();
        base64_decode(b64.as_str().unwrap())
    }

    pub async fn close(self) {
        let _ = self.call("DELETE", "", None).await;
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    } as u32;
    let clean: Vec<u8> = s
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        .collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let n = chunk.iter().fold(0u32, |n, c| (n << 6) | val(*c)) << (6 * (4 - chunk.len()));
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..chunk.len() - 1]);
    }
    out
}
