//! One POST of one alert to one destination: the body, the signature, the client
//! (rustls for https; plain http only to loopback, checked by the configuration).

use super::retry::{retry_after, Attempt};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use std::time::Duration;

/// The signature header's value for `body` sent at unix time `t`:
/// `t=<t>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
pub fn signature(secret: &[u8], t: u64, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret).expect("any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "t={t},v1={}",
        crate::detect::digest::hex(&mac.finalize().into_bytes())
    )
}

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// A destination's HTTP client: its URL, secret and timeout.
pub struct Poster {
    client: Client<Https, Full<Bytes>>,
    url: hyper::Uri,
    secret: Vec<u8>,
    timeout: Duration,
}

impl Poster {
    pub fn new(w: &crate::config::Webhook) -> Result<Poster, String> {
        let secret = w.signing_secret()?.into_bytes();
        let url: hyper::Uri = w
            .url
            .parse()
            .map_err(|e| format!("url is not a URI: {e}"))?;
        let mut roots = rustls::RootCertStore::empty();
        if w.ca_file.is_empty() {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = roots.add(cert);
            }
        } else {
            use rustls::pki_types::pem::PemObject;
            let certs = rustls::pki_types::CertificateDer::pem_file_iter(&w.ca_file)
                .map_err(|e| format!("ca_file {:?}: {e}", w.ca_file))?;
            for cert in certs {
                let cert = cert.map_err(|e| format!("ca_file {:?}: {e}", w.ca_file))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("ca_file {:?}: {e}", w.ca_file))?;
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(Poster {
            client,
            url,
            secret,
            timeout: Duration::from_millis(crate::config::Config::duration(&w.timeout) as u64),
        })
    }

    /// POSTs `body` (one alert as JSON) with its id and update kind in headers.
    pub async fn post(&self, alert_id: &str, update: Option<&str>, body: Bytes) -> Attempt {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut req = hyper::Request::post(self.url.clone())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header("pairwatch-alert-id", alert_id)
            .header("pairwatch-signature", signature(&self.secret, t, &body));
        if let Some(kind) = update {
            req = req.header("pairwatch-update", kind);
        }
        let req = match req.body(Full::new(body)) {
            Ok(r) => r,
            Err(e) => return Attempt::Failed(e.to_string()),
        };
        match tokio::time::timeout(self.timeout, self.client.request(req)).await {
            Err(_) => Attempt::Timeout,
            Ok(Err(e)) => Attempt::Failed(error_chain(&e)),
            Ok(Ok(resp)) => {
                let after = resp
                    .headers()
                    .get(hyper::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(retry_after);
                Attempt::Status(resp.status().as_u16(), after)
            }
        }
    }
}

/// An error and its causes on one line (hyper's outer error says little).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_covers_the_time_and_the_body() {
        let s = signature(b"0123456789abcdef", 1_700_000_000, b"{\"a\":1}");
        assert!(s.starts_with("t=1700000000,v1="), "{s}");
        assert_eq!(s.len(), "t=1700000000,v1=".len() + 64);
        assert_ne!(
            s,
            signature(b"0123456789abcdef", 1_700_000_001, b"{\"a\":1}")
        );
        assert_ne!(
            s,
            signature(b"0123456789abcdef", 1_700_000_000, b"{\"a\":2}")
        );
        assert_ne!(
            s,
            signature(b"0123456789abcdeg", 1_700_000_000, b"{\"a\":1}")
        );
    }
}
