//! A webhook receiver on loopback for the tests: it records every request and answers
//! as scripted (success, a status, 429 with `Retry-After`, or never).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How the receiver answers one request.
#[derive(Clone, Copy, Debug)]
pub enum Answer {
    Ok,
    Status(u16),
    /// 429 asking to wait this many seconds.
    RetryAfter(u64),
    /// Never answers (a destination that hangs).
    Stall,
}

/// One request the receiver got.
#[derive(Clone, Debug)]
pub struct Got {
    pub alert_id: String,
    pub signature: String,
    pub body: Vec<u8>,
    pub at: Instant,
    pub answered: u16,
}

pub struct Receiver {
    pub got: Mutex<Vec<Got>>,
    pub script: Mutex<VecDeque<Answer>>,
    pub otherwise: Mutex<Answer>,
    /// Time taken before each answer.
    pub delay: Duration,
}

impl Receiver {
    pub fn delivered(&self) -> Vec<Got> {
        let got = self.got.lock().unwrap();
        got.iter().filter(|g| g.answered == 200).cloned().collect()
    }

    pub fn of(&self, alert_id: &str) -> Vec<Got> {
        let got = self.got.lock().unwrap();
        got.iter()
            .filter(|g| g.alert_id == alert_id)
            .cloned()
            .collect()
    }
}

async fn hook(
    State(r): State<Arc<Receiver>>,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let answer = r
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or(*r.otherwise.lock().unwrap());
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let code = match answer {
        Answer::Ok => 200,
        Answer::Status(c) => c,
        Answer::RetryAfter(_) => 429,
        Answer::Stall => 0,
    };
    let got = Got {
        alert_id: header("pairwatch-alert-id"),
        signature: header("pairwatch-signature"),
        body: body.to_vec(),
        at: Instant::now(),
        answered: code,
    };
    // A request is recorded as it is answered (after the delay), so one cut off by a
    // kill does not count as delivered; one that hangs is recorded as it arrives.
    if !matches!(answer, Answer::Stall) {
        tokio::time::sleep(r.delay).await;
    }
    r.got.lock().unwrap().push(got);
    match answer {
        Answer::Stall => {
            tokio::time::sleep(Duration::from_secs(600)).await;
            StatusCode::OK.into_response()
        }
        Answer::RetryAfter(s) => (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", s.to_string())],
        )
            .into_response(),
        _ => StatusCode::from_u16(code).unwrap().into_response(),
    }
}

/// A receiver on loopback: its URL and what it got.
pub async fn receiver(
    script: &[Answer],
    otherwise: Answer,
    delay: Duration,
) -> (String, Arc<Receiver>) {
    let r = Arc::new(Receiver {
        got: Mutex::new(Vec::new()),
        script: Mutex::new(script.iter().copied().collect()),
        otherwise: Mutex::new(otherwise),
        delay,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .with_state(r.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), r)
}

/// Checks the signature as a receiver would: HMAC-SHA256 of "<t>.<body>", fresh `t`.
pub fn verify(g: &Got, secret: &str) {
    use hmac::{Hmac, Mac};
    let (t, v1) = g
        .signature
        .strip_prefix("t=")
        .and_then(|s| s.split_once(",v1="))
        .unwrap_or_else(|| panic!("signature header {:?}", g.signature));
    let t: u64 = t.parse().unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(now.abs_diff(t) < 300, "a fresh timestamp");
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(&g.body);
    let want: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(v1, want, "signature");
    let alert: serde_json::Value = serde_json::from_slice(&g.body).unwrap();
    assert_eq!(alert["alert_id"], g.alert_id.as_str());
    assert_eq!(alert["priority"], "P0");
}
