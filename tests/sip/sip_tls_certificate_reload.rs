//! A renewed certificate is taken without a restart: the gateway's TLS listener presents the
//! certificate of its PEM files, the files are replaced by a pair from another CA, and within
//! `reload_interval_s` new connections get the new one (a client that trusts only the new CA
//! is refused before and served after, and SIP works over it); the log says so.

use crate::certs;
use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::pki_types::pem::PemObject;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;

/// A client that trusts the CA in `ca_pem` alone.
fn client_trusting(ca_pem: &std::path::Path) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    let ca = rustls::pki_types::CertificateDer::from_pem_file(ca_pem).unwrap();
    roots.add(ca).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// Connects over TLS to `port`; the stream, or why the handshake failed.
async fn connect(
    client: &TlsConnector,
    port: u16,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let name = ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
    client.connect(name, tcp).await.map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_is_presented_without_a_restart() {
    let pki = tempfile::tempdir().unwrap();
    let old_ca = certs::TestCa::new(pki.path(), "old-ca");
    let new_ca = certs::TestCa::new(pki.path(), "new-ca");
    let served = old_ca.leaf(pki.path(), "gateway", &["127.0.0.1"]);
    let tls_port = common::free_port();
    let gateway = common::Gateway::start(&format!(
        "{}reload_interval_s = 1\n",
        certs::sip_tls_section(tls_port, &served, &old_ca.pem)
    ));
    let client = client_trusting(&new_ca.pem);
    let refused = connect(&client, tls_port).await.map(|_| ()).unwrap_err();
    assert!(refused.contains("UnknownIssuer"), "{refused}");

    // The renewed pair replaces the files in place.
    let renewed = new_ca.leaf(pki.path(), "renewed", &["127.0.0.1"]);
    std::fs::copy(&renewed.cert, &served.cert).unwrap();
    std::fs::copy(&renewed.key, &served.key).unwrap();
    // Make sure the change is visible even on a coarse file-time clock.
    let later = std::time::SystemTime::now() + Duration::from_secs(2);
    for path in [&served.cert, &served.key] {
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_modified(later).unwrap();
    }

    let deadline = Instant::now() + Duration::from_secs(30);
    let mut stream = loop {
        match connect(&client, tls_port).await {
            Ok(stream) => break stream,
            Err(e) => assert!(
                Instant::now() < deadline,
                "the renewed certificate was never presented: {e}\n{}",
                gateway.log_text()
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(gateway.log_text().contains("TLS certificate reloaded"));

    // SIP over the connection with the renewed certificate.
    let local = stream.get_ref().0.local_addr().unwrap();
    let options = format!(
        "OPTIONS sip:127.0.0.1:{tls_port};transport=tls SIP/2.0\r\n\
         Via: SIP/2.0/TLS {local};branch=z9hG4bK-renewed\r\nMax-Forwards: 70\r\n\
         From: <sip:probe@127.0.0.1>;tag=p\r\nTo: <sip:127.0.0.1>\r\nCall-ID: renewed-1\r\n\
         CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    stream.write_all(options.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(30), async {
        while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "the gateway closed the connection");
            answer.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    assert!(read.is_ok(), "no answer to OPTIONS over TLS");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("SIP/2.0 200"), "{answer}");
}
