//! TLS and mutual TLS on the gRPC port, with certificates made in the test.

use pairwatch::config::Config;
use pairwatch::proto::pb;
use pairwatch::server::start;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

struct Pki {
    ca_pem: String,
    server: (String, String),
    client: (String, String),
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf = |name: &str| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![name.to_string()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    };
    Pki {
        ca_pem: ca_cert.pem(),
        server: leaf("localhost"),
        client: leaf("moderator-tool"),
    }
}

async fn list_open(ch: Channel) -> Result<usize, tonic::Status> {
    let mut c = pb::alert_service_client::AlertServiceClient::new(ch);
    Ok(c.list_open(pb::ListOpenRequest::default())
        .await?
        .into_inner()
        .alerts
        .len())
}

/// Whether a connection attempt, or the first call on it, fails.
async fn refused(conn: Result<Channel, tonic::transport::Error>) -> bool {
    match conn {
        Err(_) => true,
        Ok(ch) => list_open(ch).await.is_err(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_admits_only_clients_with_a_certificate_of_the_ca() {
    let dir = std::env::temp_dir().join(format!("pw-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let pki = pki();
    for (name, body) in [
        ("ca.pem", &pki.ca_pem),
        ("server.pem", &pki.server.0),
        ("server.key", &pki.server.1),
    ] {
        std::fs::write(dir.join(name), body).unwrap();
    }
    let mut c = Config::default();
    c.server.grpc_addr = "127.0.0.1:0".into();
    c.server.http_addr = "127.0.0.1:0".into();
    c.server.data_dir = dir.join("data").display().to_string();
    c.server.shutdown_grace = "5s".into();
    c.tls.cert = dir.join("server.pem").display().to_string();
    c.tls.key = dir.join("server.key").display().to_string();
    c.tls.client_ca = dir.join("ca.pem").display().to_string();
    let server = start(c, Default::default()).await.unwrap();
    let url = format!("https://localhost:{}", server.grpc_addr.port());
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.ca_pem))
        .domain_name("localhost");

    let with_cert = Channel::from_shared(url.clone())
        .unwrap()
        .tls_config(
            tls.clone()
                .identity(Identity::from_pem(&pki.client.0, &pki.client.1)),
        )
        .unwrap()
        .connect()
        .await
        .unwrap();
    assert_eq!(list_open(with_cert).await.unwrap(), 0);

    // Without a client certificate the handshake fails.
    let without = Channel::from_shared(url.clone())
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await;
    assert!(
        refused(without).await,
        "a client without a certificate must be refused"
    );
    // Plaintext is refused too.
    let plain = Channel::from_shared(format!("http://127.0.0.1:{}", server.grpc_addr.port()))
        .unwrap()
        .connect()
        .await;
    assert!(refused(plain).await, "plaintext must be refused");
    server.stop().await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}
