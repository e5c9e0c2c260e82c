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

/// `url` as it may be shown in a log or an error: any password in it replaced by `***`.
pub fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    match authority.rsplit_once('@') {
        Some((user_info, _)) if user_info.contains(':') => {
            let user = user_info.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***{}", &rest[user_info.len()..])
        }
        _ => url.to_string(),
    }
}

/// An origin as browsers send it: scheme, host, optional port, and nothing else.
fn valid_origin(origin: &str) -> bool {
    let Some(rest) = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
    else {
        return false;
    };
    // An IPv6 literal keeps its colons inside brackets.
    let (host, port) = match rest.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((ip, "")) => (ip, None),
            Some((ip, port)) => (ip, Some(port.strip_prefix(':').unwrap_or("x"))),
            None => return false,
        },
        None => match rest.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        },
    };
    let host_ok = if rest.starts_with('[') {
        host.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
    };
    host_ok && port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0)) && origin.len() <= 256
}

/// The configuration compiled into the binary; `tandem run` uses it when no file is found.
const EMBEDDED_DEFAULT: &str = include_str!("../config/tandem.toml");

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
    pub http: HttpConfig,
    pub rtc: RtcConfig,
    pub store: StoreConfig,
    pub files: FilesConfig,
    pub chat: ChatConfig,
    pub services: Vec<ServiceConfig>,
    pub routing: RoutingConfig,
    pub agents: Vec<AgentConfig>,
    pub sms: SmsConfig,
    pub admin: AdminConfig,
    pub desk: DeskConfig,
    pub security: SecurityConfig,
    /// Several nodes as one contact centre; unset on a single node.
    pub cluster: Option<ClusterConfig>,
}

/// How guesses (agent passwords, SIP digests) are slowed down: per account and per source
/// address, a few failures are free, then each locks the key twice as long as the last.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// Failures allowed before the first lock.
    pub failures_before_lockout: u32,
    /// The first lock (milliseconds); each further failure doubles it.
    pub first_lockout_ms: u64,
    /// The longest lock (seconds).
    pub max_lockout_s: u64,
    /// A key that has not failed for this long starts afresh (seconds).
    pub forget_failures_after_s: u64,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig {
            failures_before_lockout: 5,
            first_lockout_ms: 1000,
            max_lockout_s: 900,
            forget_failures_after_s: 900,
        }
    }
}

impl SecurityConfig {
    /// The back-off policy of a guard.
    pub(crate) fn guard_policy(&self) -> crate::guard::Policy {
        crate::guard::Policy {
            free_failures: self.failures_before_lockout,
            first_lock: std::time::Duration::from_millis(self.first_lockout_ms),
            max_lock: std::time::Duration::from_secs(self.max_lockout_s),
            forget_after: std::time::Duration::from_secs(self.forget_failures_after_s),
            ..crate::guard::Policy::default()
        }
    }
}

/// The Agent Desktop (`/desk/`), as the API hands it to the page.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DeskConfig {
    /// The map tiles of the Context Information Area, a Leaflet URL template (`{z}`, `{x}`,
    /// `{y}`, optionally `{s}`).
    pub map_tiles_url: String,
    /// The tiles' attribution, shown on the map.
    pub map_attribution: String,
}

impl Default for DeskConfig {
    fn default() -> Self {
        DeskConfig {
            map_tiles_url: "https://tile.openstreetmap.org/{z}/{x}/{y}.png".into(),
            map_attribution: "© OpenStreetMap contributors".into(),
        }
    }
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

/// A plain transport the SIP listener opens on `sip.listen` (TLS and WebSocket have their own
/// sections and addresses).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum ListenTransport {
    Udp,
    Tcp,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SipConfig {
    pub listen: SocketAddr,
    pub transports: Vec<ListenTransport>,
    pub public_addr: Option<SocketAddr>,
    pub domain: Option<String>,
    pub user_agent: String,
    pub t1_ms: u64,
    pub t2_ms: u64,
    pub t4_ms: u64,
    pub max_message_size: usize,
    pub max_tcp_connections: usize,
    /// Stream connections (TCP, TLS, WebSocket together) one source may hold open; an IPv6
    /// source is its /64. Over it, new connections from that source are closed at once.
    pub max_tcp_connections_per_source: usize,
    pub tcp_idle_timeout_s: u64,
    /// A message on a stream connection must be complete this many seconds after its first
    /// byte arrived, however steadily the rest trickles in; otherwise the connection is closed.
    pub tcp_message_deadline_s: u64,
    pub max_calls: usize,
    pub retry_after_s: u32,
    /// Server transactions kept at once; beyond it requests get a stateless 503.
    pub max_transactions: usize,
    pub echo_ring_ms: u64,
    /// Whether `sip:echo` answers. A diagnostic that anyone may call and that costs media
    /// ports, so it is off unless asked for; off, `sip:echo` is an unknown user (`404`).
    pub echo: bool,
    /// INVITEs one source address (other than a trunk) may send per minute, after a burst of
    /// `invite_burst_per_source`; beyond it, `503` with `Retry-After`.
    pub invites_per_minute_per_source: u32,
    pub invite_burst_per_source: u32,
    /// Calls from one source address (other than a trunk) that are ringing or answered but not
    /// yet confirmed by an ACK; beyond it new INVITEs get `503` with `Retry-After`.
    pub max_unconfirmed_calls_per_source: usize,
    /// An answered echo call whose ACK has not come within this many seconds gives its RTP
    /// port back (the dialog still waits RFC 3261's 64·T1 for a late ACK, then ends).
    pub unconfirmed_media_s: u64,
    /// How long a call the gateway places may ring before it is cancelled (a trunk caller
    /// bridged to an agent then hears 480).
    pub agent_answer_timeout_s: u64,
    /// RFC 4028: the smallest session interval we accept (`Min-SE`).
    pub min_session_expires_s: u32,
    /// Carriers whose INVITEs to an agent's number are bridged to the agent's softphone.
    pub trunks: Vec<TrunkConfig>,
    /// Bridged calls are recorded as two-channel WAV files here when set.
    pub recording_dir: Option<String>,
    /// Every call the gateway places goes through this proxy (`IP:port`), with a loose-routing
    /// `Route` header (RFC 3261 §8.1.2), unless its trunk names its own.
    pub outbound_proxy: Option<SocketAddr>,
    /// SIP over TLS, when set.
    pub tls: Option<SipTlsConfig>,
    /// SIP over WebSocket (browser softphones), when set.
    pub websocket: Option<SipWebSocketConfig>,
}

/// SIP over TLS (RFC 3261 §26, RFC 5630): a listener of its own, certificates from PEM files.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SipTlsConfig {
    /// Where TLS listens; 5061 is SIP's TLS port.
    pub listen: SocketAddr,
    /// Written into Via and Contact of TLS messages when Tandem sits behind NAT.
    #[serde(default)]
    pub public_addr: Option<SocketAddr>,
    /// The certificate chain we present, PEM, leaf first.
    pub cert_file: String,
    /// Its private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key_file: String,
    /// PEM roots that carriers' certificates are verified against on calls to TLS trunks.
    #[serde(default)]
    pub ca_file: Option<String>,
    /// How often the certificate and key files are checked for a change, seconds.
    #[serde(default = "default_tls_reload")]
    pub reload_interval_s: u64,
}

fn default_tls_reload() -> u64 {
    10
}

/// SIP over WebSocket (RFC 7118) on a listener of its own, for browser softphones.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SipWebSocketConfig {
    pub listen: SocketAddr,
    /// Written into Via and Contact of WebSocket messages when Tandem sits behind NAT.
    #[serde(default)]
    pub public_addr: Option<SocketAddr>,
    /// Secure WebSocket (`wss`) with the certificate of `[sip.tls]`; plain `ws` otherwise.
    #[serde(default)]
    pub secure: bool,
}

/// A SIP trunk, recognised by the address its requests come from, or by the digest
/// credentials it proves when it has `username` and `password`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrunkConfig {
    pub name: String,
    /// Source addresses: an IP (any port) or `IP:port`. With credentials these only say where
    /// calls to the trunk go; its INVITEs must authenticate wherever they come from. A trunk
    /// with credentials may have none and REGISTER instead.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// The digest user name the trunk authenticates (and registers) as.
    #[serde(default)]
    pub username: Option<String>,
    /// Its password, in the clear like `[[registrar.accounts]]`: digest needs the secret.
    #[serde(default)]
    pub password: Option<String>,
    /// How calls to the trunk leave: `udp` (the default), `tcp` or `tls` (RFC 5630: the
    /// Request-URI becomes `sips:` and the carrier's certificate is verified against
    /// `sip.tls.ca_file`).
    #[serde(default)]
    pub transport: TrunkTransport,
    /// The name the carrier's TLS certificate must carry; defaults to the trunk's IP.
    #[serde(default)]
    pub tls_server_name: Option<String>,
    /// Calls to this trunk go through this proxy (`IP:port`) instead of `sip.outbound_proxy`.
    #[serde(default)]
    pub outbound_proxy: Option<SocketAddr>,
}

/// The transport of calls placed to a trunk.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TrunkTransport {
    #[default]
    Udp,
    Tcp,
    Tls,
}

impl TrunkConfig {
    /// The user name and password the trunk must prove, when it has them.
    pub(crate) fn credentials(&self) -> Option<(&str, &str)> {
        Some((self.username.as_deref()?, self.password.as_deref()?))
    }

    /// Whether a request from `source` comes from this trunk's addresses (for a trunk with
    /// credentials, only where it is, not that it is the trunk).
    pub(crate) fn matches(&self, source: SocketAddr) -> bool {
        self.addresses
            .iter()
            .any(|a| match a.parse::<SocketAddr>() {
                Ok(addr) => addr == source,
                Err(_) => a.parse::<IpAddr>() == Ok(source.ip()),
            })
    }
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
    /// Wrong digests an account may get before it is locked; each further one doubles the lock.
    pub failures_before_lockout: u32,
    /// Wrong digests one source address may send, whatever the accounts, before it is locked.
    pub source_failures_before_lockout: u32,
    /// The first lock (milliseconds).
    pub first_lockout_ms: u64,
    /// The longest lock (seconds).
    pub max_lockout_s: u64,
    /// An account or source that has not failed for this long starts afresh (seconds).
    pub forget_failures_after_s: u64,
}

impl RegistrarConfig {
    /// The back-off of digest guesses per account and per source address.
    pub(crate) fn guard_policies(&self) -> (crate::guard::Policy, crate::guard::Policy) {
        let account = crate::guard::Policy {
            free_failures: self.failures_before_lockout,
            first_lock: std::time::Duration::from_millis(self.first_lockout_ms),
            max_lock: std::time::Duration::from_secs(self.max_lockout_s),
            forget_after: std::time::Duration::from_secs(self.forget_failures_after_s),
            ..crate::guard::Policy::default()
        };
        let source = crate::guard::Policy {
            free_failures: self.source_failures_before_lockout,
            ..account
        };
        (account, source)
    }
}

/// Credentials of one agent's softphone.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SipAccount {
    pub user: String,
    pub password: String,
    /// The digest algorithms this account is challenged with, instead of
    /// `registrar.algorithms` (for a client that fails whenever SHA-256 is offered).
    #[serde(default)]
    pub algorithms: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    pub rtp_port_min: u16,
    pub rtp_port_max: u16,
    /// Threads of the media runtime, apart from SIP's.
    pub threads: usize,
    /// A call whose media leg receives nothing for this long is ended (BYE both ways).
    pub inactivity_timeout_s: u64,
    /// A latched RTP source that has been silent this long may be replaced by a new one.
    pub relatch_after_ms: u64,
    /// Keep the sockets of a call's ended leg bound for the next call on the same ports, which
    /// then opens without a system call: at most one per port of the range (its descriptors are
    /// budgeted anyway), and never more than half the descriptor limit.
    pub keep_sockets: bool,
}

/// WebRTC: one UDP socket for all peers, ICE-lite, DTLS-SRTP.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RtcConfig {
    /// The one UDP socket every WebRTC peer talks to.
    pub listen: SocketAddr,
    /// The address put in our host candidate when Tandem sits behind 1:1 NAT; defaults to the
    /// listen IP. The port is always the listen port.
    pub public_ip: Option<IpAddr>,
    /// STUN/TURN URLs handed to clients for their own candidates (we are ICE-lite and use none).
    pub ice_servers: Vec<String>,
    /// A peer from which no STUN binding request (RFC 7675 consent) arrives for this long is
    /// ended; so is one whose ICE does not connect this long after its answer.
    pub consent_timeout_s: u64,
    /// WebRTC peers open at once; beyond it new ones are refused.
    pub max_peers: usize,
}

/// The HTTP/WebSocket server and the limits on what a client can make us allocate.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// Largest JSON request body (bytes); file uploads have their own limit.
    pub max_body_bytes: usize,
    /// Client events in one `POST chats/{id}/events`.
    pub max_events_per_request: usize,
    /// Long polls open at once over all chats (one per chat at most).
    pub max_long_polls: usize,
    /// A long poll with nothing to say answers after this many seconds.
    pub long_poll_timeout_s: u64,
    /// WebSockets open at once over all chats.
    pub max_websockets: usize,
    /// How people outside reach this server (`https://cc.example.com`), for links sent by SMS;
    /// defaults to `http://<listen>`.
    pub public_url: Option<String>,
    /// HTTP connections open at once (WebSockets included); capped at start below the
    /// process's descriptor limit, with room kept for SIP and media.
    pub max_connections: usize,
    /// HTTP connections open at once from one IP address.
    pub max_connections_per_source: usize,
    /// A request whose headers have not all arrived after this long is dropped.
    pub header_timeout_s: u64,
    /// Agents' WebSockets open at once: a pool of their own, which customers' sockets and
    /// polls (`max_websockets`, `max_long_polls`) never draw from.
    pub max_agent_websockets: usize,
    /// Customer WebSockets and long polls open at once on one chat.
    pub max_connections_per_chat: usize,
    /// Customer WebSockets and long polls open at once for one device (`clientId`).
    pub max_connections_per_device: usize,
}

/// Who may use the admin endpoints (`/admin/v1/…`) and `/metrics`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// A bearer token (`Authorization: Bearer …`, 16+ characters) for everything admin. Unset,
    /// admin answers only on a loopback listener; elsewhere it is refused until one is set.
    pub token: Option<String>,
    /// A token that may read `/metrics` only (for a Prometheus scraper).
    pub metrics_token: Option<String>,
    /// Serve admin and `/metrics` on their own listener instead of `http.listen`.
    pub listen: Option<SocketAddr>,
}

/// The SMS provider: a generic JSON webhook that takes `POST {to, body, from, …}`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SmsConfig {
    /// The provider's endpoint; unset, no SMS leaves (what would be sent is logged).
    pub url: Option<String>,
    /// One header line sent with every request, e.g. `Authorization: Bearer …`.
    pub auth_header: Option<String>,
    /// The sender number or name, passed on as `from`.
    pub from: Option<String>,
    /// Attempts per SMS (the first one included) on network errors, 5xx and 429.
    pub max_attempts: u32,
    /// The wait before the second attempt; it doubles after each failure.
    pub backoff_ms: u64,
    /// The longest wait between attempts.
    pub max_backoff_ms: u64,
    /// One request's time limit.
    pub timeout_ms: u64,
    /// The shared secret of the inbound webhook (`/sms/v1/inbound`); unset, it is refused.
    pub inbound_secret: Option<String>,
    /// The service that chats opened by an inbound SMS belong to.
    pub inbound_service: Option<String>,
}

impl Default for SmsConfig {
    fn default() -> Self {
        SmsConfig {
            url: None,
            auth_header: None,
            from: None,
            max_attempts: 4,
            backoff_ms: 500,
            max_backoff_ms: 8000,
            timeout_ms: 5000,
            inbound_secret: None,
            inbound_service: None,
        }
    }
}

impl SmsConfig {
    /// `auth_header` split into name and value.
    pub(crate) fn auth(&self) -> Option<(&str, &str)> {
        let (name, value) = self.auth_header.as_deref()?.split_once(':')?;
        Some((name.trim(), value.trim()))
    }
}

/// One node of several that work as one: interactions are owned by one node at a time (a
/// lease in the shared PostgreSQL store), and commands and events travel over NATS.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// This node's id, unique in the cluster; it names the node's lease and what it owns.
    pub node: String,
    /// The NATS server (`nats://HOST:PORT`, or `nats://USER:PASSWORD@HOST:PORT` where the
    /// server asks for a user).
    pub nats_url: String,
    /// How long a node's lease lasts without renewal (seconds): another node takes a silent
    /// node's interactions over after this long. Renewed every third of it.
    pub lease_s: u64,
    /// How other nodes and clients reach this node's HTTP API.
    pub http_url: String,
    /// This node's SIP address (`sip:HOST:PORT`), where calls for its interactions go.
    pub sip_uri: String,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            node: String::new(),
            nats_url: "nats://127.0.0.1:4222".into(),
            lease_s: 10,
            http_url: String::new(),
            sip_uri: String::new(),
        }
    }
}

/// Where interactions and their transcripts are kept.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite://PATH` (created with its directory) or `postgres://…`.
    pub url: String,
    pub max_connections: u32,
}

/// Files sent into chats.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FilesConfig {
    /// Directory of the content-addressed file store.
    pub dir: String,
    /// Default largest file (bytes); a service may lower or raise it.
    pub max_bytes: u64,
    /// Default MIME types accepted (sniffed from the content, not trusted from the client).
    pub allowed_types: Vec<String>,
    /// Files one chat may hold; a customer's uploads not yet sent count against it too.
    pub max_files_per_chat: u64,
    /// Bytes of files one chat may hold (likewise).
    pub max_bytes_per_chat: u64,
    /// Days a file is kept after the last chat it was sent into ended (or after its upload,
    /// if it was never sent); then the sweep deletes it. Zero keeps files for ever.
    pub retention_days: u64,
    /// How often the sweep looks for files past their retention.
    pub sweep_interval_s: u64,
}

/// Chat limits shared by every service.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ChatConfig {
    /// Largest chat message (bytes of UTF-8); there is no 160-character limit.
    pub max_message_bytes: usize,
    /// How long the teardown waits for legs to confirm their release (64·T1 by default).
    pub teardown_timeout_s: u64,
    /// How long a customer's call or video request waits for the agent before it is rejected.
    pub call_request_timeout_s: u64,
    /// Open interactions per device (clientId).
    pub max_chats_per_device: usize,
    /// Open interactions in all.
    pub max_open_interactions: usize,
    /// Chats one source address may open per minute, after a burst of
    /// `creates_burst_per_source` (client ids cost nothing to invent; addresses do).
    pub creates_per_minute_per_source: u32,
    /// See `creates_per_minute_per_source`.
    pub creates_burst_per_source: u32,
    /// The key of the join tokens (HMAC-SHA256 of the interaction id) handed to the app, with
    /// which a call from any number joins its chat. Absent: a random key made at start, so
    /// tokens do not survive a restart; set it (16+ characters) to keep them across restarts
    /// and nodes.
    pub join_token_secret: Option<String>,
    /// Origins of the websites that embed the customer web chat (`https://www.example.com`):
    /// their pages may call the customer API and load `/chat/` across origins (CORS). None by
    /// default: only pages served by the gateway itself may.
    pub allowed_origins: Vec<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RoutingMode {
    RingAll,
    RoundRobin,
    LongestIdle,
}

/// What an interaction is about: its app entries, routing, and the policy its calls inherit.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    pub name: String,
    /// The `appId` values of the apps that open chats for this service.
    pub entries: Vec<String>,
    pub department: String,
    #[serde(default = "default_routing")]
    pub routing: RoutingMode,
    /// Dial the customer's phone as soon as an agent accepts.
    #[serde(default)]
    pub auto_dial: bool,
    /// Seconds between the accept and the auto-dial (the agent may greet in the chat first).
    #[serde(default)]
    pub auto_dial_delay_s: u64,
    #[serde(default)]
    pub recording: bool,
    #[serde(default)]
    pub video_allowed: bool,
    /// The `[[sip.trunks]]` entry calls to customers' phones leave through (its first address
    /// is the next hop). Without one, the service cannot call phones.
    pub trunk: Option<String>,
    /// DTMF from the customer's phone is recorded masked (card numbers, PINs).
    #[serde(default)]
    pub sensitive_dtmf: bool,
    /// The user part of the From of those calls (the number customers see); the service's name
    /// when absent.
    pub caller_id: Option<String>,
    /// Overrides `files.max_bytes`.
    pub max_file_bytes: Option<u64>,
    /// Overrides `files.allowed_types`.
    pub allowed_file_types: Option<Vec<String>>,
    #[serde(default = "default_inactivity")]
    pub inactivity_timeout_s: u64,
    /// Absent: always open.
    pub hours: Option<BusinessHours>,
    /// The service numbers (DIDs) that reach it: a call from a trunk to one of them opens an
    /// interaction of this service, routed like a chat, with the call waiting for the agent.
    #[serde(default)]
    pub numbers: Vec<String>,
    /// What the service may dial (`call_customer`, accepted phone-call requests, auto-dial)
    /// and what a chat's `phone_number` may be; see [`crate::bridge::DialPlan`].
    #[serde(default)]
    pub dial_plan: crate::bridge::DialPlan,
}

/// Weekly opening hours in a fixed UTC offset.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BusinessHours {
    #[serde(default)]
    pub utc_offset_minutes: i32,
    /// Open days: "mon" … "sun".
    pub days: Vec<String>,
    /// "HH:MM", local to the offset; `close` is exclusive.
    pub open: String,
    pub close: String,
    /// Shown to the app in `availability` outside the hours.
    #[serde(default = "default_closed_reason")]
    pub closed_reason: String,
}

/// How chats are offered to agents and how much of an agent they take.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    /// The share of an agent's capacity one chat takes (percent).
    pub chat_load_percent: u32,
    /// The share one voice call takes (percent).
    pub call_load_percent: u32,
    /// A one-at-a-time offer (round robin, longest idle, SMS) moves on after this long.
    pub offer_timeout_s: u64,
    /// A chat nobody accepted within this long is closed; the customer is told nobody is there.
    pub max_wait_s: u64,
    /// An agent whose desktop dropped keeps their chats this long before they are re-queued.
    pub reconnect_grace_s: u64,
    /// How often waiting customers get their queue position and estimated wait.
    pub queue_status_interval_s: u64,
    /// The handle time assumed for the estimated wait until real chats have ended.
    pub default_handle_time_s: u64,
    /// How long an agent's login token is valid.
    pub token_ttl_s: u64,
    /// The presence an agent starts in when they open the desktop.
    pub initial_presence: InitialPresence,
}

/// The presence an agent's desktop starts in: ready for chats, or not ready until they say so.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum InitialPresence {
    Available,
    #[default]
    Away,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            chat_load_percent: 25,
            call_load_percent: 100,
            offer_timeout_s: 20,
            max_wait_s: 300,
            reconnect_grace_s: 30,
            queue_status_interval_s: 10,
            default_handle_time_s: 300,
            token_ttl_s: 12 * 3600,
            initial_presence: InitialPresence::Away,
        }
    }
}

/// Whether an agent takes chats on their mobile phone by SMS when nobody is at a desk.
#[derive(Debug, Clone, Copy, Default, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MobileMode {
    On,
    #[default]
    Off,
    /// Inside `mobile_schedule` only.
    Schedule,
}

/// An agent: desktop login, departments, capacity, and an optional mobile phone.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// The login name and the agent's id.
    pub name: String,
    /// Shown to customers; defaults to the name.
    pub display_name: Option<String>,
    /// An argon2 PHC string (`tandem hash-password` writes one).
    pub password_hash: String,
    /// The departments whose chats the agent takes.
    pub departments: Vec<String>,
    /// 100 = one call or four chats at the default loads.
    #[serde(default = "default_capacity")]
    pub capacity_percent: u32,
    /// E.164 number that gets the SMS offers, and calls taken on the device `mobile`.
    pub mobile: Option<String>,
    #[serde(default)]
    pub mobile_mode: MobileMode,
    pub mobile_schedule: Option<WeeklySchedule>,
}

impl AgentConfig {
    pub(crate) fn display_name(&self) -> &str {
        self.display_name.as_deref().unwrap_or(&self.name)
    }
}

/// Weekly hours in an IANA time zone (daylight saving time included).
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WeeklySchedule {
    /// e.g. "Europe/Paris".
    pub time_zone: String,
    pub hours: Vec<HoursRange>,
}

/// Open on `days` from `from` to `to` ("HH:MM", local); `to` before `from` runs past midnight.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HoursRange {
    pub days: Vec<String>,
    pub from: String,
    pub to: String,
}

impl WeeklySchedule {
    /// Whether `unix_ms` falls inside the hours (false for an unknown time zone).
    pub fn is_open(&self, unix_ms: u64) -> bool {
        let Ok(tz) = jiff::tz::TimeZone::get(&self.time_zone) else {
            return false;
        };
        let Ok(ts) = jiff::Timestamp::from_millisecond(unix_ms as i64) else {
            return false;
        };
        let local = ts.to_zoned(tz);
        let minute = local.hour() as u32 * 60 + local.minute() as u32;
        let today = local.weekday().to_monday_zero_offset() as usize;
        let yesterday = (today + 6) % 7;
        self.hours.iter().any(|range| {
            let (Some(from), Some(to)) = (parse_hhmm(&range.from), parse_hhmm(&range.to)) else {
                return false;
            };
            let on = |day: usize| range.days.iter().any(|d| d == DAYS[day]);
            if from < to {
                on(today) && minute >= from && minute < to
            } else {
                (on(today) && minute >= from) || (on(yesterday) && minute < to)
            }
        })
    }
}

fn default_capacity() -> u32 {
    100
}

fn default_routing() -> RoutingMode {
    RoutingMode::RingAll
}
fn default_inactivity() -> u64 {
    600
}
fn default_closed_reason() -> String {
    "outside business hours".into()
}

/// Day names as schedules write them, Monday first.
pub(crate) const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// A phone number as configured: 1 to 32 digits, optionally after a `+`.
pub(crate) fn valid_phone_number(number: &str) -> bool {
    let digits = number.strip_prefix('+').unwrap_or(number);
    !digits.is_empty() && digits.len() <= 32 && digits.bytes().all(|b| b.is_ascii_digit())
}

/// The form numbers are compared in: without a leading `+`.
pub(crate) fn number_key(number: &str) -> &str {
    number.strip_prefix('+').unwrap_or(number)
}

/// "HH:MM" as minutes of the day ("24:00" ends one).
pub(crate) fn parse_hhmm(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h <= 24 && m < 60 && h * 60 + m <= 24 * 60).then_some(h * 60 + m)
}

impl BusinessHours {
    /// Whether `unix_ms` falls inside the hours.
    pub(crate) fn is_open(&self, unix_ms: u64) -> bool {
        let local_min = (unix_ms / 60_000) as i64 + self.utc_offset_minutes as i64;
        let day = local_min.div_euclid(24 * 60);
        let minute = local_min.rem_euclid(24 * 60) as u32;
        // 1970-01-01 was a Thursday (index 3 from Monday).
        let weekday = DAYS[(day + 3).rem_euclid(7) as usize];
        let (Some(open), Some(close)) = (parse_hhmm(&self.open), parse_hhmm(&self.close)) else {
            return false;
        };
        self.days.iter().any(|d| d == weekday) && minute >= open && minute < close
    }
}

impl ServiceConfig {
    pub(crate) fn max_file_bytes(&self, files: &FilesConfig) -> u64 {
        self.max_file_bytes.unwrap_or(files.max_bytes)
    }
    pub(crate) fn allowed_file_types<'a>(&'a self, files: &'a FilesConfig) -> &'a [String] {
        self.allowed_file_types
            .as_deref()
            .unwrap_or(&files.allowed_types)
    }
}

impl Config {
    /// The service an app entry (`appId`) opens chats for.
    pub(crate) fn service_for_entry(&self, entry: &str) -> Option<&ServiceConfig> {
        self.services
            .iter()
            .find(|s| s.entries.iter().any(|e| e == entry))
    }
    pub(crate) fn service(&self, name: &str) -> Option<&ServiceConfig> {
        self.services.iter().find(|s| s.name == name)
    }

    /// The service a call to `number` (a DID) reaches; `+` and no `+` are the same number.
    pub(crate) fn service_for_number(&self, number: &str) -> Option<&ServiceConfig> {
        let key = number_key(number);
        self.services
            .iter()
            .find(|s| s.numbers.iter().any(|n| number_key(n) == key))
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 256 * 1024,
            max_events_per_request: 100,
            max_long_polls: 10_000,
            long_poll_timeout_s: 25,
            max_websockets: 10_000,
            public_url: None,
            max_connections: 20_000,
            max_connections_per_source: 512,
            header_timeout_s: 10,
            max_agent_websockets: 2000,
            max_connections_per_chat: 4,
            max_connections_per_device: 8,
        }
    }
}

impl Default for RtcConfig {
    fn default() -> Self {
        RtcConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 50000)),
            public_ip: None,
            ice_servers: Vec::new(),
            consent_timeout_s: 30,
            max_peers: 2000,
        }
    }
}

impl RtcConfig {
    pub(crate) fn consent_timeout(&self) -> Duration {
        Duration::from_secs(self.consent_timeout_s)
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: "sqlite://data/tandem.db".into(),
            max_connections: 8,
        }
    }
}

impl Default for FilesConfig {
    fn default() -> Self {
        FilesConfig {
            dir: "data/files".into(),
            max_bytes: 10 * 1024 * 1024,
            allowed_types: [
                "image/jpeg",
                "image/png",
                "image/gif",
                "image/webp",
                "application/pdf",
            ]
            .map(String::from)
            .to_vec(),
            max_files_per_chat: 50,
            max_bytes_per_chat: 100 * 1024 * 1024,
            retention_days: 90,
            sweep_interval_s: 3600,
        }
    }
}

impl Default for ChatConfig {
    fn default() -> Self {
        ChatConfig {
            max_message_bytes: 64 * 1024,
            teardown_timeout_s: 32,
            call_request_timeout_s: 60,
            max_chats_per_device: 4,
            max_open_interactions: 100_000,
            creates_per_minute_per_source: 60,
            creates_burst_per_source: 20,
            join_token_secret: None,
            allowed_origins: Vec::new(),
        }
    }
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
            transports: vec![ListenTransport::Udp, ListenTransport::Tcp],
            public_addr: None,
            domain: None,
            user_agent: "Tandem".into(),
            t1_ms: 500,
            t2_ms: 4000,
            t4_ms: 5000,
            max_message_size: 65535,
            max_tcp_connections: 1024,
            max_tcp_connections_per_source: 32,
            tcp_idle_timeout_s: 120,
            // Kamailio's `tcp_msg_read_timeout` has the same default.
            tcp_message_deadline_s: 20,
            max_calls: 10_000,
            retry_after_s: 5,
            max_transactions: 200_000,
            echo_ring_ms: 0,
            echo: false,
            invites_per_minute_per_source: 600,
            invite_burst_per_source: 100,
            max_unconfirmed_calls_per_source: 32,
            unconfirmed_media_s: 8,
            agent_answer_timeout_s: 30,
            min_session_expires_s: 90,
            trunks: Vec::new(),
            recording_dir: None,
            outbound_proxy: None,
            tls: None,
            websocket: None,
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
            failures_before_lockout: 5,
            // Higher: a contact centre's phones often share one NAT address.
            source_failures_before_lockout: 20,
            first_lockout_ms: 1000,
            max_lockout_s: 900,
            forget_failures_after_s: 900,
        }
    }
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            rtp_port_min: 20000,
            rtp_port_max: 29999,
            threads: 1,
            inactivity_timeout_s: 30,
            relatch_after_ms: 2000,
            keep_sockets: true,
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
        for trunk in &sip.trunks {
            if trunk.username.is_some() != trunk.password.is_some()
                || trunk.username.as_deref() == Some("")
                || trunk.password.as_deref() == Some("")
            {
                return invalid(
                    "sip.trunks",
                    &format!("trunk {:?}: username and password go together", trunk.name),
                );
            }
            if trunk.name.is_empty() || (trunk.addresses.is_empty() && trunk.username.is_none()) {
                return invalid(
                    "sip.trunks",
                    "every trunk needs a name and at least one address or credentials",
                );
            }
            let username = trunk.username.as_deref();
            let clash = self
                .registrar
                .accounts
                .iter()
                .any(|a| Some(a.user.as_str()) == username)
                || sip
                    .trunks
                    .iter()
                    .filter(|t| t.username.as_deref() == username)
                    .count()
                    > 1;
            if username.is_some() && clash {
                return invalid(
                    "sip.trunks.username",
                    &format!("{username:?} names another trunk or a registrar account"),
                );
            }
            for address in &trunk.addresses {
                if address.parse::<SocketAddr>().is_err() && address.parse::<IpAddr>().is_err() {
                    return invalid(
                        "sip.trunks.addresses",
                        &format!("{address:?} is neither an IP nor IP:port"),
                    );
                }
            }
        }
        if let Some(tls) = &sip.tls {
            if tls.cert_file.is_empty() || tls.key_file.is_empty() {
                return invalid("sip.tls", "cert_file and key_file are needed");
            }
            if tls.reload_interval_s == 0 {
                return invalid("sip.tls.reload_interval_s", "must be positive");
            }
        }
        for trunk in &sip.trunks {
            let needs_roots = trunk.transport == TrunkTransport::Tls
                && sip.tls.as_ref().is_none_or(|t| t.ca_file.is_none());
            if needs_roots {
                return invalid(
                    "sip.trunks.transport",
                    &format!(
                        "trunk {:?} uses TLS: set sip.tls with a ca_file to verify it against",
                        trunk.name
                    ),
                );
            }
        }
        if let Some(ws) = &sip.websocket
            && ws.secure
            && sip.tls.is_none()
        {
            return invalid(
                "sip.websocket.secure",
                "a secure WebSocket needs the certificate of sip.tls",
            );
        }
        if sip.max_transactions < 100 {
            return invalid("sip.max_transactions", "must be at least 100");
        }
        if sip.agent_answer_timeout_s == 0 {
            return invalid("sip.agent_answer_timeout_s", "must be positive");
        }
        if sip.min_session_expires_s < 90 {
            // RFC 4028 §4: Min-SE must not be below 90 seconds.
            return invalid("sip.min_session_expires_s", "must be 90 or more (RFC 4028)");
        }
        for (key, value) in [
            (
                "sip.invites_per_minute_per_source",
                u64::from(sip.invites_per_minute_per_source),
            ),
            (
                "sip.invite_burst_per_source",
                u64::from(sip.invite_burst_per_source),
            ),
            (
                "sip.max_unconfirmed_calls_per_source",
                sip.max_unconfirmed_calls_per_source as u64,
            ),
            ("sip.unconfirmed_media_s", sip.unconfirmed_media_s),
        ] {
            if value == 0 {
                return invalid(key, "must be positive");
            }
        }
        if sip.max_tcp_connections == 0 {
            return invalid("sip.max_tcp_connections", "must be positive");
        }
        if sip.max_tcp_connections_per_source == 0 {
            return invalid("sip.max_tcp_connections_per_source", "must be positive");
        }
        if sip.tcp_message_deadline_s == 0 {
            return invalid("sip.tcp_message_deadline_s", "must be positive");
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
        if reg.first_lockout_ms == 0
            || reg.max_lockout_s.saturating_mul(1000) < reg.first_lockout_ms
        {
            return invalid(
                "registrar.first_lockout_ms",
                "must be positive and not above registrar.max_lockout_s",
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
        for account in &reg.accounts {
            let Some(algorithms) = &account.algorithms else {
                continue;
            };
            if algorithms.is_empty() {
                return invalid(
                    "registrar.accounts.algorithms",
                    &format!("account {:?} lists no algorithm", account.user),
                );
            }
            if let Some(alg) = algorithms
                .iter()
                .find(|a| !matches!(a.as_str(), "MD5" | "SHA-256"))
            {
                return invalid(
                    "registrar.accounts.algorithms",
                    &format!("unknown algorithm {alg:?} for account {:?}", account.user),
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
        if media.rtp_port_max - media.rtp_port_min < 3 {
            return invalid(
                "media.rtp_port_max",
                "the range must hold at least one RTP/RTCP pair",
            );
        }
        if media.threads == 0 || media.threads > 64 {
            return invalid("media.threads", "must be between 1 and 64");
        }
        if media.inactivity_timeout_s == 0 {
            return invalid("media.inactivity_timeout_s", "must be positive");
        }
        let http = &self.http;
        if http.max_body_bytes < 1024 {
            return invalid("http.max_body_bytes", "must be at least 1024");
        }
        if http.max_events_per_request == 0 {
            return invalid("http.max_events_per_request", "must be positive");
        }
        if http.long_poll_timeout_s == 0 || http.long_poll_timeout_s > 300 {
            return invalid("http.long_poll_timeout_s", "must be between 1 and 300");
        }
        if !(self.store.url.starts_with("sqlite:") || self.store.url.starts_with("postgres")) {
            return invalid("store.url", "must start with sqlite: or postgres://");
        }
        if self.store.max_connections == 0 {
            return invalid("store.max_connections", "must be positive");
        }
        if self.files.dir.is_empty() {
            return invalid("files.dir", "must not be empty");
        }
        let chat = &self.chat;
        if chat.max_message_bytes == 0 || chat.max_message_bytes >= http.max_body_bytes {
            return invalid(
                "chat.max_message_bytes",
                "must be positive and below http.max_body_bytes",
            );
        }
        if chat.max_chats_per_device == 0 || chat.max_open_interactions == 0 {
            return invalid("chat.max_chats_per_device", "limits must be positive");
        }
        if chat.creates_per_minute_per_source == 0 || chat.creates_burst_per_source == 0 {
            return invalid(
                "chat.creates_per_minute_per_source",
                "rates must be positive",
            );
        }
        if chat
            .join_token_secret
            .as_ref()
            .is_some_and(|s| s.len() < 16)
        {
            return invalid("chat.join_token_secret", "must be at least 16 characters");
        }
        if let Some(origin) = chat.allowed_origins.iter().find(|o| !valid_origin(o)) {
            return invalid(
                "chat.allowed_origins",
                &format!(
                    "{origin:?} is not an origin: http:// or https://, a host, an optional port, nothing after"
                ),
            );
        }
        let mut names = std::collections::HashSet::new();
        let mut entries = std::collections::HashSet::new();
        let mut numbers = std::collections::HashSet::new();
        for service in &self.services {
            for number in &service.numbers {
                if !valid_phone_number(number) {
                    return invalid(
                        "services.numbers",
                        &format!("{number:?} is not 1 to 32 digits, optionally after a +"),
                    );
                }
                if !numbers.insert(number_key(number)) {
                    return invalid(
                        "services.numbers",
                        &format!("number {number:?} reaches two services"),
                    );
                }
            }
            if service.name.is_empty() || !names.insert(service.name.as_str()) {
                return invalid(
                    "services.name",
                    &format!("{:?} is empty or listed twice", service.name),
                );
            }
            if service.entries.is_empty() {
                return invalid(
                    "services.entries",
                    &format!("service {:?} has no entry", service.name),
                );
            }
            for entry in &service.entries {
                if !entries.insert(entry.as_str()) {
                    return invalid(
                        "services.entries",
                        &format!("entry {entry:?} is listed twice"),
                    );
                }
            }
            if service.inactivity_timeout_s < 2 {
                return invalid("services.inactivity_timeout_s", "must be at least 2");
            }
            if let Some(problem) = service.dial_plan.problem() {
                return invalid("services.dial_plan", &problem);
            }
            if let Some(trunk) = &service.trunk
                && !self.sip.trunks.iter().any(|t| &t.name == trunk)
            {
                return invalid(
                    "services.trunk",
                    &format!("no [[sip.trunks]] is named {trunk:?}"),
                );
            }
            // Calls to customers leave through the trunk's first address.
            if let Some(trunk) = &service.trunk
                && self
                    .sip
                    .trunks
                    .iter()
                    .any(|t| &t.name == trunk && t.addresses.is_empty())
            {
                return invalid(
                    "services.trunk",
                    &format!("the trunk {trunk:?} has no address to send calls to"),
                );
            }
            if let Some(id) = &service.caller_id
                && (id.is_empty()
                    || id.len() > 32
                    || !id
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "+-_.".contains(c)))
            {
                return invalid(
                    "services.caller_id",
                    "must be 1 to 32 letters, digits or + - _ .",
                );
            }
            if let Some(hours) = &service.hours {
                if hours.days.iter().any(|d| !DAYS.contains(&d.as_str())) {
                    return invalid("services.hours.days", "days are \"mon\" … \"sun\"");
                }
                let (open, close) = (parse_hhmm(&hours.open), parse_hhmm(&hours.close));
                match (open, close) {
                    (Some(o), Some(c)) if o < c => {}
                    _ => {
                        return invalid(
                            "services.hours.open",
                            "open and close are HH:MM with open before close",
                        );
                    }
                }
            }
        }
        self.validate_rtc()?;
        self.validate_sms()?;
        self.validate_http()?;
        self.validate_cluster()?;
        self.validate_agents()
    }

    /// A cluster decides ownership in a store every node shares: PostgreSQL, not a file.
    fn validate_cluster(&self) -> Result<(), ConfigError> {
        let Some(cluster) = &self.cluster else {
            return Ok(());
        };
        let invalid = |key, reason: &str| {
            Err(ConfigError::Invalid {
                key,
                reason: reason.to_string(),
            })
        };
        let valid_node = !cluster.node.is_empty()
            && cluster.node.len() <= 64
            && cluster
                .node
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid_node {
            return invalid("cluster.node", "1 to 64 letters, digits, '-' or '_'");
        }
        if !(self.store.url.starts_with("postgres://")
            || self.store.url.starts_with("postgresql://"))
        {
            return invalid(
                "store.url",
                "a cluster needs a PostgreSQL store shared by its nodes (postgres://…)",
            );
        }
        if cluster.nats_url.is_empty() {
            return invalid("cluster.nats_url", "the NATS server every node connects to");
        }
        if cluster.lease_s < 3 || cluster.lease_s > 300 {
            return invalid("cluster.lease_s", "must be between 3 and 300");
        }
        if !(cluster.http_url.starts_with("http://") || cluster.http_url.starts_with("https://")) {
            return invalid(
                "cluster.http_url",
                "how others reach this node: http(s)://…",
            );
        }
        if !cluster.sip_uri.starts_with("sip:") {
            return invalid("cluster.sip_uri", "this node's SIP address: sip:HOST:PORT");
        }
        Ok(())
    }

    fn validate_rtc(&self) -> Result<(), ConfigError> {
        let invalid = |key, reason: &str| {
            Err(ConfigError::Invalid {
                key,
                reason: reason.to_string(),
            })
        };
        let rtc = &self.rtc;
        // Browsers and other stacks check consent every 2 s or so (RFC 7675 §5.1 allows up to
        // 5 s with jitter); anything shorter ends healthy calls.
        if rtc.consent_timeout_s < 3 {
            return invalid("rtc.consent_timeout_s", "must be at least 3");
        }
        if rtc.max_peers == 0 {
            return invalid("rtc.max_peers", "must be positive");
        }
        if rtc.public_ip.is_some_and(|ip| ip.is_unspecified()) {
            return invalid("rtc.public_ip", "must be an address peers can reach");
        }
        if rtc.public_ip.is_none() && rtc.listen.ip().is_unspecified() {
            return invalid(
                "rtc.public_ip",
                "is needed when rtc.listen is a wildcard address (it goes into the host candidate)",
            );
        }
        let schemes = ["stun:", "stuns:", "turn:", "turns:"];
        for url in &rtc.ice_servers {
            if !schemes.iter().any(|s| url.starts_with(s)) || url.len() > 512 {
                return invalid(
                    "rtc.ice_servers",
                    &format!("{url:?} is not a stun:, stuns:, turn: or turns: URL"),
                );
            }
        }
        Ok(())
    }

    fn validate_http(&self) -> Result<(), ConfigError> {
        let invalid = |key, reason: &str| {
            Err(ConfigError::Invalid {
                key,
                reason: reason.to_string(),
            })
        };
        let http = &self.http;
        if http.max_connections == 0 || http.max_connections_per_source == 0 {
            return invalid("http.max_connections", "limits must be positive");
        }
        if http.header_timeout_s == 0 {
            return invalid("http.header_timeout_s", "must be positive");
        }
        if http.max_agent_websockets == 0
            || http.max_connections_per_chat == 0
            || http.max_connections_per_device == 0
        {
            return invalid(
                "http.max_connections_per_chat",
                "the agents' and each chat's and device's connection budgets must be positive",
            );
        }
        let files = &self.files;
        if files.max_files_per_chat == 0 || files.max_bytes_per_chat == 0 {
            return invalid("files.max_files_per_chat", "chat quotas must be positive");
        }
        if files.sweep_interval_s == 0 || files.retention_days > 36_500 {
            return invalid(
                "files.sweep_interval_s",
                "the sweep interval must be positive and retention at most 100 years",
            );
        }
        for (key, token) in [
            ("admin.token", &self.admin.token),
            ("admin.metrics_token", &self.admin.metrics_token),
        ] {
            if token.as_deref().is_some_and(|t| t.len() < 16) {
                return invalid(key, "must be at least 16 characters");
            }
        }
        let security = &self.security;
        if security.first_lockout_ms == 0 || security.max_lockout_s == 0 {
            return invalid("security.first_lockout_ms", "lockouts must be positive");
        }
        if self.admin.listen == Some(http.listen) && http.listen.port() != 0 {
            return invalid("admin.listen", "must differ from http.listen");
        }
        Ok(())
    }

    fn validate_sms(&self) -> Result<(), ConfigError> {
        let invalid = |key, reason: &str| {
            Err(ConfigError::Invalid {
                key,
                reason: reason.to_string(),
            })
        };
        let is_http = |u: &str| u.starts_with("http://") || u.starts_with("https://");
        if let Some(url) = &self.http.public_url
            && (!is_http(url) || url.contains(char::is_whitespace))
        {
            return invalid("http.public_url", "must be an http:// or https:// URL");
        }
        let sms = &self.sms;
        if let Some(url) = &sms.url
            && (!is_http(url) || url.contains(char::is_whitespace))
        {
            return invalid("sms.url", "must be an http:// or https:// URL");
        }
        if sms.auth_header.is_some() {
            let ok = sms.auth().is_some_and(|(name, value)| {
                axum::http::HeaderName::try_from(name).is_ok()
                    && axum::http::HeaderValue::try_from(value).is_ok()
            });
            if !ok {
                return invalid(
                    "sms.auth_header",
                    "must be one header line, \"Name: value\"",
                );
            }
        }
        if sms.max_attempts == 0 || sms.max_attempts > 20 {
            return invalid("sms.max_attempts", "must be between 1 and 20");
        }
        if sms.backoff_ms == 0 || sms.max_backoff_ms < sms.backoff_ms {
            return invalid(
                "sms.backoff_ms",
                "must be positive and not above sms.max_backoff_ms",
            );
        }
        if sms.timeout_ms == 0 {
            return invalid("sms.timeout_ms", "must be positive");
        }
        if sms.inbound_secret.as_deref().is_some_and(|s| s.len() < 16) {
            return invalid("sms.inbound_secret", "must be at least 16 characters");
        }
        if let Some(service) = &sms.inbound_service
            && self.service(service).is_none()
        {
            return invalid("sms.inbound_service", "names no configured service");
        }
        Ok(())
    }

    fn validate_agents(&self) -> Result<(), ConfigError> {
        let invalid = |key, reason: String| Err(ConfigError::Invalid { key, reason });
        let tiles = &self.desk.map_tiles_url;
        if !(tiles.starts_with("https://") || tiles.starts_with("http://"))
            || !["{z}", "{x}", "{y}"].iter().all(|p| tiles.contains(p))
        {
            return invalid(
                "desk.map_tiles_url",
                "an http(s) URL template with {z}, {x} and {y}".into(),
            );
        }
        let r = &self.routing;
        if !(1..=100).contains(&r.chat_load_percent) || !(1..=100).contains(&r.call_load_percent) {
            return invalid("routing.chat_load_percent", "loads are 1 to 100".into());
        }
        if r.offer_timeout_s == 0 || r.max_wait_s == 0 || r.queue_status_interval_s == 0 {
            return invalid(
                "routing.offer_timeout_s",
                "offer timeout, maximum wait and status interval must be positive".into(),
            );
        }
        if r.token_ttl_s < 60 {
            return invalid("routing.token_ttl_s", "must be at least 60".into());
        }
        let mut names = std::collections::HashSet::new();
        for agent in &self.agents {
            let who = &agent.name;
            if who.is_empty() || !names.insert(who.as_str()) {
                return invalid("agents.name", format!("{who:?} is empty or listed twice"));
            }
            if argon2::password_hash::PasswordHash::new(&agent.password_hash).is_err() {
                return invalid(
                    "agents.password_hash",
                    format!("agent {who:?}: not a PHC string (use `tandem hash-password`)"),
                );
            }
            if agent.departments.is_empty() {
                return invalid("agents.departments", format!("agent {who:?} has none"));
            }
            if agent.capacity_percent == 0 || agent.capacity_percent > 1000 {
                return invalid(
                    "agents.capacity_percent",
                    format!("agent {who:?}: 1 to 1000"),
                );
            }
            if agent.mobile_mode != MobileMode::Off && agent.mobile.is_none() {
                return invalid(
                    "agents.mobile",
                    format!("agent {who:?} has a mobile mode but no number"),
                );
            }
            if agent.mobile_mode == MobileMode::Schedule && agent.mobile_schedule.is_none() {
                return invalid(
                    "agents.mobile_schedule",
                    format!("agent {who:?}: mobile_mode = \"schedule\" needs one"),
                );
            }
            if let Some(schedule) = &agent.mobile_schedule {
                if jiff::tz::TimeZone::get(&schedule.time_zone).is_err() {
                    return invalid(
                        "agents.mobile_schedule.time_zone",
                        format!("unknown time zone {:?}", schedule.time_zone),
                    );
                }
                for range in &schedule.hours {
                    if range.days.iter().any(|d| !DAYS.contains(&d.as_str())) {
                        return invalid(
                            "agents.mobile_schedule.hours.days",
                            "days are \"mon\" … \"sun\"".into(),
                        );
                    }
                    match (parse_hhmm(&range.from), parse_hhmm(&range.to)) {
                        (Some(f), Some(t)) if f != t => {}
                        _ => {
                            return invalid(
                                "agents.mobile_schedule.hours.from",
                                "from and to are different HH:MM".into(),
                            );
                        }
                    }
                }
            }
        }
        Ok(())
    }

    pub(crate) fn agent(&self, name: &str) -> Option<&AgentConfig> {
        self.agents.iter().find(|a| a.name == name)
    }
}

impl SipConfig {
    pub(crate) fn t1(&self) -> Duration {
        Duration::from_millis(self.t1_ms)
    }
    pub(crate) fn t2(&self) -> Duration {
        Duration::from_millis(self.t2_ms)
    }
    pub(crate) fn t4(&self) -> Duration {
        Duration::from_millis(self.t4_ms)
    }
}

/// An IP address as it is written in a SIP URI host (IPv6 in brackets).
pub(crate) fn host_string(ip: IpAddr) -> String {
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
        assert_eq!(
            config.sip.listen,
            "127.0.0.1:5060".parse::<std::net::SocketAddr>().unwrap()
        );
        assert_eq!(config.registrar.accounts.len(), 2);
        // Every key of the embedded file matches the built-in defaults except the sample accounts.
        let mut expected = Config::default();
        expected.registrar.accounts = config.registrar.accounts.clone();
        expected.services = config.services.clone();
        expected.agents = config.agents.clone();
        assert_eq!(config, expected);
        assert!(config.service_for_entry("claims-app").is_some());
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
    fn service_numbers_are_numbers_and_reach_one_service() {
        let service = |name: &str, numbers: &str| {
            format!(
                "[[services]]\nname = \"{name}\"\nentries = [\"{name}-app\"]\n\
                 department = \"d\"\nnumbers = {numbers}\n"
            )
        };
        let config = Config::parse(&format!(
            "{}{}",
            service("a", "[\"+15550100\"]"),
            service("b", "[\"15550101\"]")
        ))
        .unwrap();
        assert_eq!(config.service_for_number("15550100").unwrap().name, "a");
        assert_eq!(config.service_for_number("+15550101").unwrap().name, "b");
        assert!(config.service_for_number("15550102").is_none());
        // The same number with and without + is one number.
        let twice = format!(
            "{}{}",
            service("a", "[\"+15550100\"]"),
            service("b", "[\"15550100\"]")
        );
        let err = Config::parse(&twice).unwrap_err();
        assert!(err.to_string().contains("services.numbers"), "{err}");
        let err = Config::parse(&service("a", "[\"sales\"]")).unwrap_err();
        assert!(err.to_string().contains("services.numbers"), "{err}");
        let err = Config::parse("[chat]\njoin_token_secret = \"short\"\n").unwrap_err();
        assert!(err.to_string().contains("join_token_secret"), "{err}");
    }

    #[test]
    fn a_service_names_an_existing_trunk() {
        let service = "[[services]]\nname = \"s\"\nentries = [\"s-app\"]\ndepartment = \"d\"\n";
        let err = Config::parse(&format!("{service}trunk = \"carrier\"\n")).unwrap_err();
        assert!(err.to_string().contains("services.trunk"), "{err}");
        let trunk = "[[sip.trunks]]\nname = \"carrier\"\naddresses = [\"127.0.0.1:5070\"]\n";
        let ok = Config::parse(&format!(
            "{trunk}{service}trunk = \"carrier\"\ncaller_id = \"+1555\"\n"
        ));
        assert!(ok.is_ok(), "{ok:?}");
        let err = Config::parse(&format!("{service}caller_id = \"a b\"\n")).unwrap_err();
        assert!(err.to_string().contains("services.caller_id"), "{err}");
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
    fn tls_trunks_need_roots_and_wss_needs_a_certificate() {
        let tls =
            "[sip.tls]\nlisten = \"127.0.0.1:5061\"\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\n";
        let trunk = "[[sip.trunks]]\nname = \"carrier\"\naddresses = [\"192.0.2.1\"]\n\
                     transport = \"tls\"\n";
        let err = Config::parse(&format!("{tls}{trunk}")).unwrap_err();
        assert!(err.to_string().contains("ca_file"), "{err}");
        let ok = Config::parse(&format!("{tls}ca_file = \"roots.pem\"\n{trunk}"));
        assert!(ok.is_ok(), "{ok:?}");
        let wss = "[sip.websocket]\nlisten = \"127.0.0.1:5062\"\nsecure = true\n";
        let err = Config::parse(wss).unwrap_err();
        assert!(err.to_string().contains("sip.websocket.secure"), "{err}");
        assert!(Config::parse(&format!("{tls}{wss}")).is_ok());
        let err = Config::parse(&format!("{tls}reload_interval_s = 0\n")).unwrap_err();
        assert!(err.to_string().contains("reload_interval_s"), "{err}");
    }

    #[test]
    fn trunk_credentials_come_in_pairs_and_stand_in_for_addresses() {
        let trunk = "[[sip.trunks]]\nname = \"carrier\"\n";
        let err = Config::parse(trunk).unwrap_err();
        assert!(err.to_string().contains("sip.trunks"), "{err}");
        let err = Config::parse(&format!("{trunk}username = \"c\"\n")).unwrap_err();
        assert!(err.to_string().contains("go together"), "{err}");
        let ok = Config::parse(&format!("{trunk}username = \"c\"\npassword = \"s\"\n"))
            .expect("credentials without addresses");
        assert_eq!(ok.sip.trunks[0].credentials(), Some(("c", "s")));
        let clash = "[[registrar.accounts]]\nuser = \"c\"\npassword = \"x\"\n";
        let err = Config::parse(&format!(
            "{trunk}username = \"c\"\npassword = \"s\"\n{clash}"
        ))
        .unwrap_err();
        assert!(err.to_string().contains("sip.trunks.username"), "{err}");
        let service = "[[services]]\nname = \"s\"\nentries = [\"e\"]\ndepartment = \"d\"\n\
                       trunk = \"carrier\"\ncaller_id = \"+15550100\"\n";
        let err = Config::parse(&format!(
            "{trunk}username = \"c\"\npassword = \"s\"\n{service}"
        ))
        .unwrap_err();
        assert!(err.to_string().contains("no address"), "{err}");
    }

    #[test]
    fn a_service_entry_listed_twice_is_refused() {
        let text = "[[services]]\nname = \"a\"\nentries = [\"x\"]\ndepartment = \"d\"\n\
                    [[services]]\nname = \"b\"\nentries = [\"x\"]\ndepartment = \"d\"\n";
        let err = Config::parse(text).unwrap_err();
        assert!(err.to_string().contains("services.entries"), "{err}");
    }

    #[test]
    fn bad_business_hours_are_named() {
        let text = "[[services]]\nname = \"a\"\nentries = [\"x\"]\ndepartment = \"d\"\n\
                    hours = { days = [\"mon\"], open = \"18:00\", close = \"08:00\" }\n";
        let err = Config::parse(text).unwrap_err();
        assert!(err.to_string().contains("services.hours.open"), "{err}");
    }

    #[test]
    fn business_hours_follow_the_offset_and_the_weekday() {
        let hours = BusinessHours {
            utc_offset_minutes: 60,
            days: vec!["mon".into()],
            open: "08:00".into(),
            close: "18:00".into(),
            closed_reason: "closed".into(),
        };
        // Monday 2024-01-01 07:30 UTC is 08:30 at UTC+1.
        let monday_0730_utc = 1_704_094_200_000;
        assert!(hours.is_open(monday_0730_utc));
        assert!(!hours.is_open(monday_0730_utc - 3_600_000));
        assert!(!hours.is_open(monday_0730_utc + 24 * 3_600_000));
    }

    #[test]
    fn bad_sms_settings_are_named() {
        let err = Config::parse("[sms]\nurl = \"ftp://x\"\n").unwrap_err();
        assert!(err.to_string().contains("sms.url"), "{err}");
        let err = Config::parse("[sms]\nauth_header = \"Bearer x\"\n").unwrap_err();
        assert!(err.to_string().contains("sms.auth_header"), "{err}");
        let ok = Config::parse("[sms]\nauth_header = \"X-Api-Key: k\"\n").unwrap();
        assert_eq!(ok.sms.auth(), Some(("X-Api-Key", "k")));
        let err = Config::parse("[sms]\ninbound_service = \"nope\"\n").unwrap_err();
        assert!(err.to_string().contains("sms.inbound_service"), "{err}");
    }

    #[test]
    fn rtc_settings_are_read_and_checked() {
        let text = "[rtc]\nlisten = \"0.0.0.0:40000\"\npublic_ip = \"203.0.113.7\"\n\
                    ice_servers = [\"stun:stun.example.com:3478\"]\nconsent_timeout_s = 10\n";
        let rtc = Config::parse(text).unwrap().rtc;
        let public_ip: std::net::IpAddr = "203.0.113.7".parse().unwrap();
        assert_eq!(rtc.public_ip, Some(public_ip));
        assert_eq!(rtc.listen, "0.0.0.0:40000".parse::<SocketAddr>().unwrap());
        assert_eq!(rtc.ice_servers, ["stun:stun.example.com:3478"]);
        assert_eq!(rtc.consent_timeout(), Duration::from_secs(10));
        assert_eq!(rtc.max_peers, 2000);
        let err = Config::parse("[rtc]\nice_servers = [\"http://x\"]\n").unwrap_err();
        assert!(err.to_string().contains("rtc.ice_servers"), "{err}");
        let err = Config::parse("[rtc]\nlisten = \"0.0.0.0:40000\"\n").unwrap_err();
        assert!(err.to_string().contains("rtc.public_ip"), "{err}");
        let err = Config::parse("[rtc]\nconsent_timeout_s = 0\n").unwrap_err();
        assert!(err.to_string().contains("rtc.consent_timeout_s"), "{err}");
        let err = Config::parse("[rtc]\nmax_peer = 3\n").unwrap_err();
        assert!(err.to_string().contains("max_peer"), "{err}");
    }

    #[test]
    fn echo_is_off_unless_switched_on_and_invite_budgets_are_positive() {
        assert!(!Config::parse(EMBEDDED_DEFAULT).unwrap().sip.echo);
        assert!(Config::parse("[sip]\necho = true\n").unwrap().sip.echo);
        for key in [
            "invites_per_minute_per_source",
            "invite_burst_per_source",
            "max_unconfirmed_calls_per_source",
            "unconfirmed_media_s",
        ] {
            let err = Config::parse(&format!("[sip]\n{key} = 0\n")).unwrap_err();
            assert!(err.to_string().contains(key), "{err}");
        }
    }

    #[test]
    fn a_missing_file_falls_back_to_the_embedded_default() {
        let config = Config::load_or_default(Path::new("/nonexistent/tandem.toml")).unwrap();
        assert_eq!(config, Config::parse(EMBEDDED_DEFAULT).unwrap());
        assert!(Config::load(Path::new("/nonexistent/tandem.toml")).is_err());
    }

    #[test]
    fn a_url_is_shown_without_its_password() {
        for (url, shown) in [
            (
                "nats://a:secret@127.0.0.1:4222",
                "nats://a:***@127.0.0.1:4222",
            ),
            (
                "postgres://tandem:p@ss@db/x?sslmode=require",
                "postgres://tandem:***@db/x?sslmode=require",
            ),
            ("postgres://tandem@db/x", "postgres://tandem@db/x"),
            ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
            ("sqlite://tandem.db?mode=rwc", "sqlite://tandem.db?mode=rwc"),
            ("postgres://db/x?note=a:b@c", "postgres://db/x?note=a:b@c"),
            ("not a url", "not a url"),
        ] {
            assert_eq!(without_password(url), shown, "{url}");
        }
    }

    #[test]
    fn allowed_origins_are_bare_origins() {
        for bad in [
            "*",
            "example.com",
            "https://example.com/",
            "https://a.com/chat",
            "ftp://a.com",
            "https://a.com:0",
            "https://a.com:99999",
            "https://[::1",
            "https://a b.com",
        ] {
            let text = format!("[chat]\nallowed_origins = [{bad:?}]\n");
            let err = Config::parse(&text).unwrap_err();
            assert!(
                err.to_string().contains("chat.allowed_origins"),
                "{bad}: {err}"
            );
        }
        let good = r#"[chat]
allowed_origins = ["https://www.example.com", "http://127.0.0.1:8081", "http://[::1]:80", "http://localhost"]
"#;
        assert_eq!(Config::parse(good).unwrap().chat.allowed_origins.len(), 4);
    }
}
