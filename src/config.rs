//! Tandem's configuration: one TOML file, parsed strictly.
//!
//! Every section has defaults, so an empty file is a valid configuration; the embedded
//! `config/tandem.toml` is the reference copy with every key spelled out. Unknown keys,
//! malformed addresses and inconsistent values are errors that name the key, so a typo
//! never silently falls back to a default.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

/// The configuration compiled into the binary; `tandem run` uses it when no file is found.
pub const EMBEDDED_DEFAULT: &str = include_str!("../config/tandem.toml");

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// TOML syntax, an unknown key, or a value of the wrong type (the message names the key).
    #[error("{0}")]
    Syntax(#[from] toml::de::Error),
    /// A value that parses but makes no sense.
    #[error("invalid value for `{key}`: {reason}")]
    Invalid { key: &'static str, reason: String },
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub log: LogConfig,
    pub sip: SipConfig,
    pub registrar: RegistrarConfig,
    pub media: MediaConfig,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: String,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    Udp,
    Tcp,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SipConfig {
    pub listen: SocketAddr,
    pub transports: Vec<TransportKind>,
    pub public_addr: Option<SocketAddr>,
    pub domain: Option<String>,
    pub user_agent: String,
    pub t1_ms: u64,
    pub t2_ms: u64,
    pub t4_ms: u64,
    pub max_message_size: usize,
    pub max_tcp_connections: usize,
    pub tcp_idle_timeout_s: u64,
    pub max_calls: usize,
    pub retry_after_s: u32,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrarConfig {
    pub realm: String,
    pub min_expires_s: u32,
    pub max_expires_s: u32,
    pub default_expires_s: u32,
    pub algorithms: Vec<String>,
    pub accounts: Vec<SipAccount>,
}

/// Credentials of one agent's softphone.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SipAccount {
    pub user: String,
    pub password: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    pub rtp_port_min: u16,
    pub rtp_port_max: u16,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

impl Default for SipConfig {
    fn default() -> Self {
        SipConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 5060)),
            transports: vec![TransportKind::Udp, TransportKind::Tcp],
            public_addr: None,
            domain: None,
            user_agent: "Tandem".into(),
            t1_ms: 500,
            t2_ms: 4000,
            t4_ms: 5000,
            max_message_size: 65535,
            max_tcp_connections: 1024,
            tcp_idle_timeout_s: 120,
            max_calls: 10_000,
            retry_after_s: 5,
        }
    }
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        RegistrarConfig {
            realm: "tandem".into(),
            min_expires_s: 60,
            max_expires_s: 3600,
            default_expires_s: 3600,
            algorithms: vec!["SHA-256".into(), "MD5".into()],
            accounts: Vec::new(),
        }
    }
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            rtp_port_min: 20000,
            rtp_port_max: 29999,
        }
    }
}

impl Config {
    /// Parses and validates a configuration text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    /// Reads `path`; a missing file falls back to the embedded default, any other failure is an error.
    pub fn load_or_default(path: &Path) -> Result<Config, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Config::parse(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Config::parse(EMBEDDED_DEFAULT),
            Err(source) => Err(ConfigError::Read {
                path: path.display().to_string(),
                source,
            }),
        }
    }

    /// Reads and validates `path`; a missing file is an error here.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::parse(&text)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, reason: &str| {
            Err(ConfigError::Invalid {
                key,
                reason: reason.to_string(),
            })
        };
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return invalid("log.level", "not a tracing filter directive");
        }
        let sip = &self.sip;
        if sip.transports.is_empty() {
            return invalid(
                "sip.transports",
                "at least one of \"udp\", \"tcp\" is needed",
            );
        }
        if sip.t1_ms == 0 {
            return invalid("sip.t1_ms", "must be positive");
        }
        if sip.t2_ms < sip.t1_ms {
            return invalid("sip.t2_ms", "must not be below sip.t1_ms");
        }
        if sip.max_message_size < 1024 || sip.max_message_size > 1 << 20 {
            return invalid("sip.max_message_size", "must be between 1024 and 1048576");
        }
        if sip.max_tcp_connections == 0 {
            return invalid("sip.max_tcp_connections", "must be positive");
        }
        if let Some(domain) = &sip.domain
            && (domain.is_empty() || domain.contains(|c: char| c.is_whitespace() || c == '@'))
        {
            return invalid("sip.domain", "must be a host name or address");
        }
        let reg = &self.registrar;
        if reg.min_expires_s > reg.max_expires_s {
            return invalid(
                "registrar.min_expires_s",
                "must not exceed registrar.max_expires_s",
            );
        }
        if !(reg.min_expires_s..=reg.max_expires_s).contains(&reg.default_expires_s) {
            return invalid(
                "registrar.default_expires_s",
                "must lie between registrar.min_expires_s and registrar.max_expires_s",
            );
        }
        if reg.algorithms.is_empty() {
            return invalid("registrar.algorithms", "at least one algorithm is needed");
        }
        for alg in &reg.algorithms {
            if !matches!(alg.as_str(), "MD5" | "SHA-256") {
                return invalid(
                    "registrar.algorithms",
                    &format!("unknown algorithm {alg:?}"),
                );
            }
        }
        let mut users = std::collections::HashSet::new();
        for account in &reg.accounts {
            if account.user.is_empty() || account.password.is_empty() {
                return invalid("registrar.accounts", "user and password must not be empty");
            }
            if !users.insert(account.user.as_str()) {
                return invalid(
                    "registrar.accounts",
                    &format!("user {:?} is listed twice", account.user),
                );
            }
        }
        let media = &self.media;
        if media.rtp_port_min > media.rtp_port_max {
            return invalid("media.rtp_port_min", "must not exceed media.rtp_port_max");
        }
        if media.rtp_port_min < 1024 {
            return invalid("media.rtp_port_min", "must be 1024 or above");
        }
        Ok(())
    }
}

impl SipConfig {
    pub fn t1(&self) -> Duration {
        Duration::from_millis(self.t1_ms)
    }
    pub fn t2(&self) -> Duration {
        Duration::from_millis(self.t2_ms)
    }
    pub fn t4(&self) -> Duration {
        Duration::from_millis(self.t4_ms)
    }
    /// The address we advertise in Via, Contact and SDP.
    pub fn advertised_addr(&self) -> SocketAddr {
        self.public_addr.unwrap_or(self.listen)
    }
    /// The host part of our own URIs.
    pub fn domain(&self) -> String {
        match &self.domain {
            Some(domain) => domain.clone(),
            None => host_string(self.advertised_addr().ip()),
        }
    }
}

/// An IP address as it is written in a SIP URI host (IPv6 in brackets).
pub fn host_string(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_default_is_valid_and_complete() {
        let config = Config::parse(EMBEDDED_DEFAULT).unwrap();
        assert_eq!(config.sip.listen, "127.0.0.1:5060".parse().unwrap());
        assert_eq!(config.registrar.accounts.len(), 2);
        // Every key of the embedded file matches the built-in defaults except the sample accounts.
        let mut expected = Config::default();
        expected.registrar.accounts = config.registrar.accounts.clone();
        assert_eq!(config, expected);
    }

    #[test]
    fn an_empty_file_means_all_defaults() {
        assert_eq!(Config::parse("").unwrap(), Config::default());
    }

    #[test]
    fn an_unknown_key_is_named() {
        let err = Config::parse("[sip]\nlisten_addr = \"127.0.0.1:5060\"\n").unwrap_err();
        assert!(err.to_string().contains("listen_addr"), "{err}");
    }

    #[test]
    fn a_bad_address_is_named() {
        let err = Config::parse("[sip]\nlisten = \"127.0.0.1\"\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("listen"), "{text}");
    }

    #[test]
    fn an_upside_down_port_range_is_refused() {
        let err =
            Config::parse("[media]\nrtp_port_min = 30000\nrtp_port_max = 20000\n").unwrap_err();
        assert!(err.to_string().contains("media.rtp_port_min"), "{err}");
    }

    #[test]
    fn an_unknown_digest_algorithm_is_refused() {
        let err = Config::parse("[registrar]\nalgorithms = [\"SHA-512\"]\n").unwrap_err();
        assert!(err.to_string().contains("registrar.algorithms"), "{err}");
    }

    #[test]
    fn a_missing_file_falls_back_to_the_embedded_default() {
        let config = Config::load_or_default(Path::new("/nonexistent/tandem.toml")).unwrap();
        assert_eq!(config, Config::parse(EMBEDDED_DEFAULT).unwrap());
        assert!(Config::load(Path::new("/nonexistent/tandem.toml")).is_err());
    }
}
