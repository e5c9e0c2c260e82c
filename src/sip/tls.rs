//! TLS for SIP (RFC 3261 §26, RFC 5630) and secure WebSocket (RFC 7118): the certificates we
//! present, reloaded when their files change, and the roots we check carriers against.
//!
//! The server side presents the PEM chain and key of `[sip.tls]`. A [`Certificates`] keeps
//! them behind an `ArcSwap` read at every handshake, and [`Certificates::reload_if_changed`]
//! (called by the driver every `reload_interval_s`) swaps in new ones when the files' modified
//! times change: a renewed certificate takes effect for new connections without a restart,
//! while a broken one is refused with a log line and the old one stays.
//!
//! The client side (calls to a trunk with `transport = "tls"`) verifies the carrier's
//! certificate chain against the PEM roots of `ca_file`, and its name against the trunk's
//! `tls_server_name` (or its IP address). A carrier whose certificate does not verify is
//! never sent a message; the handshake's error is logged with the trunk's address.
//!
//! Both sides use the aws-lc-rs provider explicitly: more than one provider is compiled into
//! the tree, so rustls cannot pick a process-wide default.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::config::SipTlsConfig;

/// Why TLS could not be set up. Each is logged (at start, it stops the start) with the path
/// it concerns.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TlsError {
    /// A PEM file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The certificate file holds no certificate.
    #[error("{0} holds no PEM certificate")]
    NoCertificate(PathBuf),
    /// The key file holds no private key (PKCS#8, PKCS#1 or SEC1).
    #[error("{0} holds no PEM private key")]
    NoKey(PathBuf),
    /// The key is malformed, of a kind the provider does not sign with, or not the
    /// certificate's.
    #[error("the key in {path} does not fit: {reason}")]
    BadKey { path: PathBuf, reason: String },
    /// The roots file holds no usable certificate.
    #[error("{0} holds no usable root certificate")]
    NoRoots(PathBuf),
    /// rustls refused the configuration (no protocol version in common with the provider).
    #[error("TLS configuration: {0}")]
    Config(String),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Loads a PEM certificate chain and its private key.
fn load_certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&read(cert)?)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(cert.to_path_buf()));
    }
    let key_der = PrivateKeyDer::from_pem_slice(&read(key)?)
        .map_err(|_| TlsError::NoKey(key.to_path_buf()))?;
    CertifiedKey::from_der(chain, key_der, &provider()).map_err(|e| TlsError::BadKey {
        path: key.to_path_buf(),
        reason: e.to_string(),
    })
}

/// The certificate we present, swapped when its files change.
#[derive(Debug)]
pub(crate) struct Certificates {
    cert_file: PathBuf,
    key_file: PathBuf,
    current: ArcSwap<CertifiedKey>,
    /// The files' modified times when `current` was loaded.
    loaded: std::sync::Mutex<(Option<SystemTime>, Option<SystemTime>)>,
}

impl Certificates {
    pub(crate) fn load(cert_file: &Path, key_file: &Path) -> Result<Arc<Certificates>, TlsError> {
        let stamps = (modified(cert_file), modified(key_file));
        let key = load_certified_key(cert_file, key_file)?;
        Ok(Arc::new(Certificates {
            cert_file: cert_file.to_path_buf(),
            key_file: key_file.to_path_buf(),
            current: ArcSwap::from_pointee(key),
            loaded: std::sync::Mutex::new(stamps),
        }))
    }

    /// Loads the files again if either changed since the last load: `Ok(true)` when the new
    /// certificate is in use, `Ok(false)` when nothing changed, `Err` when the new files are
    /// unusable (the old certificate stays in use).
    pub(crate) fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let stamps = (modified(&self.cert_file), modified(&self.key_file));
        let mut loaded = self.loaded.lock().expect("certificate stamps lock");
        if *loaded == stamps {
            return Ok(false);
        }
        // Remember the attempt either way: a broken file is reported once, not every tick.
        *loaded = stamps;
        let key = load_certified_key(&self.cert_file, &self.key_file)?;
        self.current.store(Arc::new(key));
        Ok(true)
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The TLS side of the SIP endpoint: what listeners present and what outbound connections
/// trust.
#[derive(Debug, Clone)]
pub(crate) struct TlsContext {
    pub certificates: Arc<Certificates>,
    pub server: Arc<ServerConfig>,
    /// `None` without `ca_file`: no outbound TLS (the configuration refuses TLS trunks then).
    pub client: Option<Arc<ClientConfig>>,
}

impl TlsContext {
    pub(crate) fn from_config(config: &SipTlsConfig) -> Result<TlsContext, TlsError> {
        let certificates =
            Certificates::load(Path::new(&config.cert_file), Path::new(&config.key_file))?;
        let server = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(certificates.clone());
        let client = match &config.ca_file {
            Some(path) => Some(Arc::new(client_config(Path::new(path))?)),
            None => None,
        };
        Ok(TlsContext {
            certificates,
            server: Arc::new(server),
            client,
        })
    }
}

/// A client configuration that trusts the roots in `ca_file` alone.
fn client_config(ca_file: &Path) -> Result<ClientConfig, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&read(ca_file)?).filter_map(Result::ok) {
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(TlsError::NoRoots(ca_file.to_path_buf()));
    }
    Ok(ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed(dir: &Path, name: &str, host: &str) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec![host.to_string()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let cert_path = dir.join(format!("{name}.crt"));
        let key_path = dir.join(format!("{name}.key"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }

    fn subject(certs: &Certificates) -> Vec<u8> {
        certs.current.load().cert[0].as_ref().to_vec()
    }

    #[test]
    fn a_changed_certificate_is_taken_and_a_broken_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed(dir.path(), "a", "sip.example");
        let certs = Certificates::load(&cert, &key).unwrap();
        let first = subject(&certs);
        assert!(!certs.reload_if_changed().unwrap(), "nothing changed");

        // Renewed in place (the mtime moves on: set it explicitly, the clock may be coarse).
        let (new_cert, new_key) = self_signed(dir.path(), "b", "sip.example");
        std::fs::copy(&new_cert, &cert).unwrap();
        std::fs::copy(&new_key, &key).unwrap();
        let later = SystemTime::now() + std::time::Duration::from_secs(5);
        for path in [&cert, &key] {
            std::fs::File::options()
                .write(true)
                .open(path)
                .unwrap()
                .set_modified(later)
                .unwrap();
        }
        assert!(certs.reload_if_changed().unwrap());
        assert_ne!(subject(&certs), first);
        let second = subject(&certs);

        // A key that is not the certificate's is refused; the working pair stays.
        std::fs::copy(dir.path().join("a.key"), &key).unwrap();
        let (_, other_key) = self_signed(dir.path(), "c", "sip.example");
        std::fs::copy(&other_key, &key).unwrap();
        let even_later = later + std::time::Duration::from_secs(5);
        std::fs::File::options()
            .write(true)
            .open(&key)
            .unwrap()
            .set_modified(even_later)
            .unwrap();
        assert!(matches!(
            certs.reload_if_changed(),
            Err(TlsError::BadKey { .. })
        ));
        assert_eq!(subject(&certs), second);
    }

    #[test]
    fn files_without_pem_are_refused_with_their_path() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let err = Certificates::load(&junk, &junk).unwrap_err();
        assert!(
            matches!(err, TlsError::NoCertificate(ref p) if *p == junk),
            "{err}"
        );
        assert!(matches!(client_config(&junk), Err(TlsError::NoRoots(_))));
        let missing = dir.path().join("missing.pem");
        assert!(matches!(
            Certificates::load(&missing, &missing),
            Err(TlsError::Read { .. })
        ));
    }
}
