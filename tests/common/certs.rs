//! Certificates the TLS tests make: a private CA, and leaf certificates for 127.0.0.1 signed
//! by it (or by a CA nobody trusts), written as PEM files.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

/// A certificate authority of the test's own.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    /// Its certificate as a PEM file: the roots to verify against.
    pub pem: PathBuf,
}

/// A leaf certificate and its key as PEM files.
pub struct Leaf {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Certificate and key in one file, as OpenSSL-based peers (baresip) load them.
    pub combined: PathBuf,
}

impl TestCa {
    /// A new CA named `name`, its certificate written under `dir`.
    pub fn new(dir: &Path, name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.distinguished_name.push(DnType::CommonName, name);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let pem = dir.join(format!("{name}.pem"));
        std::fs::write(&pem, issuer.pem()).unwrap();
        TestCa { issuer, pem }
    }

    /// A certificate for `hosts` (names or IP addresses) signed by this CA, written under `dir`
    /// as `name.crt`, `name.key` and `name.pem` (both).
    pub fn leaf(&self, dir: &Path, name: &str, hosts: &[&str]) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, hosts[0]);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let leaf = Leaf {
            cert: dir.join(format!("{name}.crt")),
            key: dir.join(format!("{name}.key")),
            combined: dir.join(format!("{name}.pem")),
        };
        std::fs::write(&leaf.cert, cert.pem()).unwrap();
        std::fs::write(&leaf.key, key.serialize_pem()).unwrap();
        std::fs::write(&leaf.combined, cert.pem() + &key.serialize_pem()).unwrap();
        leaf
    }
}

/// The `[sip.tls]` section of a gateway listening for TLS on `port` with `leaf`, trusting
/// `roots` on its calls out.
pub fn sip_tls_section(port: u16, leaf: &Leaf, roots: &Path) -> String {
    format!(
        "[sip.tls]\nlisten = \"127.0.0.1:{port}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\nca_file = \"{}\"\n",
        leaf.cert.display(),
        leaf.key.display(),
        roots.display()
    )
}
