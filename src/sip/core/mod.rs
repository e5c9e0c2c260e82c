//! The user-agent core: the transaction user on top of [`TransactionLayer`], sans-IO.
//!
//! It decides what every request means (RFC 3261 §8.2 checks, the registrar, `OPTIONS`, the
//! `echo` service, in-dialog requests), keeps the dialogs of its calls, retransmits its 2xx to
//! INVITEs until the ACK (§13.3.1.4), and places outgoing calls (the UAC side, §13.2).
//!
//! Driving contract, as for the transaction layer: feed [`SipCore::handle_message`] and
//! [`SipCore::handle_timeout`], call the `call`/`hangup` commands, then drain
//! [`SipCore::poll_transmit`] and [`SipCore::poll_event`] and sleep until
//! [`SipCore::poll_timeout`]. No clock, no sockets.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rsipstack::sip::{
    Header, Headers, HeadersExt, Method, Request, Response, StatusCode, Uri, Version,
};

use super::dialog::{Dialog, DialogId};
use super::ids::Ids;
use super::message::{
    copy_record_route, creates_dialog, insert_before_length, response, set_body,
    status_with_reason, unsupported_requirements,
};
use super::peer::{Peer, Transmit, TransportKind};
use super::registrar::Registrar;
use super::sdp::{self, Direction, LocalMedia, SdpSession};
use super::transaction::{ClientTxId, ServerTxId, TimerConfig, TransactionLayer, TxEvent};
use super::wire::{Incoming, Meta};
use crate::config::{Config, TrunkConfig};
use crate::media::ports::PortPool;

pub use app_calls::{AppDial, AppLeg, DialError, DialTarget};
pub use source_limits::InviteLimits;

/// Methods we implement; `Allow` lists them (RFC 3261 §20.5).
const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, INFO, UPDATE";
/// The option tags we support: RFC 4028 session timers.
const SUPPORTED: &[&str] = &["timer"];
/// The body types we read.
const ACCEPT: &str = "application/sdp";
/// A held call rings again this often: RFC 3261 §13.3.1.1 asks for a provisional response every
/// minute so that proxies (Timer C, at least 3 minutes) do not cancel it.
const RING_AGAIN: Duration = Duration::from_secs(60);

/// What the core needs from the configuration.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    pub timers: TimerConfig,
    /// Our address for Via, Contact and SDP.
    pub advertised: SocketAddr,
    /// The transports beyond UDP and TCP, and the way out through proxies.
    pub net: NetSettings,
    /// The host part of our URIs.
    pub domain: String,
    pub user_agent: String,
    pub max_calls: usize,
    pub retry_after_s: u32,
    /// How long `echo` rings before it answers (zero answers at once).
    pub echo_ring: Duration,
    /// Whether `sip:echo` answers at all.
    pub echo: bool,
    /// What one source may make us hold with INVITEs.
    pub invites: InviteLimits,
    /// Users we know (registrar accounts); INVITEs to other users get 404.
    pub accounts: HashSet<String>,
    /// Carriers whose INVITEs to an account are bridged to its softphone.
    pub trunks: Vec<TrunkConfig>,
    /// How long an agent's softphone may ring.
    pub agent_answer_timeout: Duration,
    /// RFC 4028 Min-SE, seconds.
    pub min_session_expires: u32,
    /// Whether bridged calls are recorded.
    pub record: bool,
    /// Service numbers (DIDs, compared without a leading `+`): a trunk's INVITE to one of them
    /// is held for the application as a [`CoreEvent::ServiceCall`].
    pub service_numbers: HashSet<String>,
    /// How long such a call may wait for the application before it gets 480 (the routing's
    /// maximum wait plus an agent's answer: the interaction normally decides first).
    pub service_call_hold: Duration,
}

impl CoreConfig {
    pub(crate) fn from_config(config: &Config, advertised: SocketAddr) -> CoreConfig {
        let sip = &config.sip;
        CoreConfig {
            timers: TimerConfig {
                t1: sip.t1(),
                t2: sip.t2(),
                t4: sip.t4(),
                max_server_transactions: sip.max_transactions,
            },
            advertised,
            net: NetSettings {
                advertised_tls: None,
                advertised_ws: None,
                outbound_proxy: sip.outbound_proxy,
            },
            domain: sip
                .domain
                .clone()
                .unwrap_or_else(|| crate::config::host_string(advertised.ip())),
            user_agent: sip.user_agent.clone(),
            max_calls: sip.max_calls,
            retry_after_s: sip.retry_after_s,
            echo_ring: Duration::from_millis(sip.echo_ring_ms),
            echo: sip.echo,
            invites: InviteLimits {
                per_minute: sip.invites_per_minute_per_source,
                burst: sip.invite_burst_per_source,
                max_unconfirmed: sip.max_unconfirmed_calls_per_source,
                release_media_after: Duration::from_secs(sip.unconfirmed_media_s),
            },
            trunks: sip.trunks.clone(),
            agent_answer_timeout: Duration::from_secs(sip.agent_answer_timeout_s),
            min_session_expires: sip.min_session_expires_s,
            record: sip.recording_dir.is_some(),
            service_numbers: config
                .services
                .iter()
                .flat_map(|s| s.numbers.iter())
                .map(|n| crate::config::number_key(n).to_string())
                .collect(),
            service_call_hold: Duration::from_secs(
                config.routing.max_wait_s + sip.agent_answer_timeout_s,
            ),
            accounts: config
                .registrar
                .accounts
                .iter()
                .map(|a| a.user.clone())
                .collect(),
        }
    }
}

/// What the core needs to know about the network beyond its own UDP/TCP address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetSettings {
    /// Where the TLS listener is reached (Via and Contact of TLS messages), when it runs.
    pub advertised_tls: Option<SocketAddr>,
    /// Where the WebSocket listener is reached, when it runs.
    pub advertised_ws: Option<SocketAddr>,
    /// Every call we place goes through this proxy (a `Route` with `lr`, RFC 3261 §8.1.2),
    /// unless its trunk names its own.
    pub outbound_proxy: Option<SocketAddr>,
}

impl CoreConfig {
    /// Where peers reach us on `transport`: the TLS and WebSocket listeners have their own.
    pub(crate) fn local_addr(&self, transport: TransportKind) -> SocketAddr {
        match transport {
            TransportKind::Udp | TransportKind::Tcp => self.advertised,
            TransportKind::Tls => self.net.advertised_tls.unwrap_or(self.advertised),
            TransportKind::Ws | TransportKind::Wss => {
                self.net.advertised_ws.unwrap_or(self.advertised)
            }
        }
    }

    /// Our Contact on `transport` (RFC 7118 §5 for the `ws`/`wss` parameter; TLS is named
    /// by `transport=tls` so that it stays a `sip:` URI the peer may already use).
    pub(crate) fn contact(&self, transport: TransportKind) -> String {
        let addr = self.local_addr(transport);
        let host = crate::config::host_string(addr.ip());
        let port = addr.port();
        match transport {
            TransportKind::Udp => format!("<sip:tandem@{host}:{port}>"),
            other => format!(
                "<sip:tandem@{host}:{port};transport={}>",
                other.via_token().to_ascii_lowercase()
            ),
        }
    }

    /// Our Via sent-by on `transport`.
    pub(crate) fn sent_by(&self, transport: TransportKind) -> String {
        let addr = self.local_addr(transport);
        format!("{}:{}", crate::config::host_string(addr.ip()), addr.port())
    }
}

/// Names one outgoing call from `call()` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallRef(pub u64);

/// What the application learns from the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CoreEvent {
    /// An outgoing call got a provisional response.
    Progress { call: CallRef, code: u16 },
    /// An outgoing call was answered; its dialog is up.
    Answered { call: CallRef, dialog: DialogId },
    /// An outgoing call failed with this final status (408 for a transaction timeout).
    Failed { call: CallRef, code: u16 },
    /// An INVITE names an interaction (`X-Interaction-Id`, or RFC 7433 User-to-User): the
    /// application accepts it ([`SipCore::accept_incoming`]) or rejects it
    /// ([`SipCore::reject_incoming`]); unanswered, it is rejected after the answer timeout.
    Incoming {
        incoming: ServerTxId,
        interaction: String,
        /// The caller's user part (a phone number from a trunk).
        caller: String,
        /// Whether a trunk sent it, and so vouches for `caller`.
        source: CallSource,
        /// `X-Interaction-Token`: lets a caller that is not the chat's number join it.
        token: Option<String>,
    },
    /// A trunk's INVITE to a service number: it rings (100, 180, a fresh 180 every minute)
    /// until the application accepts or rejects it like an [`CoreEvent::Incoming`] call.
    ServiceCall {
        incoming: ServerTxId,
        /// The number dialled, as the Request-URI (else the To) names it.
        number: String,
        /// The caller's user part.
        caller: String,
    },
    /// A trunk's INVITE to a registrar account (an agent's own number): held, without ringing,
    /// for the B2BUA ([`crate::sip::b2bua`]), which rings the agent's softphone, relays its
    /// progress ([`SipCore::ring_incoming`]) and answers ([`SipCore::accept_for_bridge`]) or
    /// refuses ([`SipCore::reject_incoming`]) the caller.
    AgentCall {
        incoming: ServerTxId,
        /// The account called.
        user: String,
        /// The caller's From without its tag, for the agent's leg (the agent sees who calls).
        from: String,
        /// The caller's Call-ID (the recording's name).
        call_id: String,
        /// The codec we would answer the caller with on our own: its first one we support.
        codec: sdp::Codec,
    },
    /// The caller of a held `Incoming`, `ServiceCall` or `AgentCall` gave up (CANCEL, answered
    /// 487).
    IncomingCancelled { incoming: ServerTxId },
    /// Nobody decided on a held call in time: it was refused with 480.
    IncomingExpired { incoming: ServerTxId },
    /// We sent BYE in a call's dialog on our own (session not refreshed, media dead, no ACK);
    /// its [`CoreEvent::Ended`] follows when the BYE is answered.
    Hangup {
        dialog: DialogId,
        call: Option<CallRef>,
    },
    /// The far end offered a direction in a re-INVITE or UPDATE (a hold, a resume, a refresh),
    /// which we answered; `call` as for [`CoreEvent::Ended`].
    Offered {
        dialog: DialogId,
        call: Option<CallRef>,
        direction: Direction,
    },
    /// A call's dialog ended; `by_peer` when the far end hung up. `call` names the
    /// application call it was (placed with [`SipCore::dial`] or accepted with
    /// [`SipCore::accept_incoming`]), which is forgotten with it.
    Ended {
        dialog: DialogId,
        call: Option<CallRef>,
        by_peer: bool,
    },
    /// An RFC 4733 digit arrived on the call's media; `call` as for [`CoreEvent::Ended`].
    Dtmf {
        dialog: DialogId,
        call: Option<CallRef>,
        digit: char,
        duration_ms: u32,
    },
}

/// Where an incoming call came from, as far as its caller id can be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallSource {
    /// A `[[sip.trunks]]` address, or a trunk that proved its credentials: the carrier
    /// vouches for the caller id it sends.
    Trunk,
    /// Anywhere else: the From header says whatever the caller chose to write.
    Other,
}

/// What the core asks of the media engine; the driver carries it out in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MediaCommand {
    /// Bind the leg's RTP/RTCP ports; `remote` is the peer's SDP address when known, and
    /// `signalling` where the SIP that carried it came from (a media address elsewhere than the
    /// signalling means a NAT or a proxy in between, so latching must learn the real source).
    Open {
        port: u16,
        remote: Option<SocketAddr>,
        signalling: Option<SocketAddr>,
    },
    /// Send the leg's packets back to their source.
    Echo { port: u16 },
    /// The peer's SDP names a new address.
    SetRemote {
        port: u16,
        remote: Option<SocketAddr>,
    },
    /// Whether silence on the leg counts against the inactivity timeout (not while the peer
    /// holds the call and sends nothing).
    Watch { port: u16, enabled: bool },
    /// Connect two legs both ways; packets from `a` are transcoded `a_to_b` on the way to `b`
    /// (and the reverse the other way); telephone-event payload types are mapped `(a, b)`.
    Bridge {
        a: u16,
        b: u16,
        transcode: Option<(sdp::Codec, sdp::Codec)>,
        telephone_event: (Option<u8>, Option<u8>),
    },
    /// Record the call: `customer` on the left channel, `agent` on the right.
    Record {
        customer: u16,
        agent: u16,
        call_id: String,
    },
    /// Report RFC 4733 digits received on the leg with this payload type.
    DetectDtmf { port: u16, payload_type: Option<u8> },
    /// Stop the leg and free its ports.
    Close { port: u16 },
}

/// Counters for `/metrics` and for leak checks in tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CoreStats {
    pub calls: usize,
    pub pending_invites: usize,
    pub server_transactions: usize,
    pub client_transactions: usize,
    pub registrations: usize,
    pub media_legs: usize,
    pub rejected_over_limit: u64,
}

/// See [`SipCore::held`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CoreHeld {
    pub rtp_ports: usize,
    /// INVITEs received and not answered finally yet.
    pub pending_invites: usize,
    /// Calls we placed that have no final answer yet.
    pub outgoing: usize,
    /// Trunk calls waiting for the agent's softphone (the B2BUA's, not the core's: zero here).
    pub bridges: usize,
    /// Calls placed or accepted for the application.
    pub app_calls: usize,
}

/// A call we answer or placed, once its dialog exists.
#[derive(Debug)]
struct Call {
    dialog: Dialog,
    state: CallState,
    sdp: SdpSession,
    media: LocalMedia,
    /// The outgoing call this dialog answers, for UAC calls.
    outgoing: Option<CallRef>,
}

#[derive(Debug)]
enum CallState {
    /// We sent a 2xx to an INVITE and retransmit it until the ACK (RFC 3261 §13.3.1.4).
    AwaitingAck {
        ok: Bytes,
        cseq: u32,
        next: Instant,
        interval: Duration,
        give_up: Instant,
    },
    Confirmed,
    /// We sent BYE and wait for its answer (or its transaction's timeout).
    Terminating,
}

/// An INVITE we sent.
#[derive(Debug)]
struct Outgoing {
    invite: Request,
    to: Peer,
    media: LocalMedia,
    sdp: SdpSession,
    /// The dialog the first 2xx created; later 2xx from other forks are ACKed and hung up.
    answered: Option<DialogId>,
    /// The INVITE's client transaction, to cancel it.
    tx: ClientTxId,
    /// What the answer negotiated, once answered.
    negotiated: Option<sdp::Negotiated>,
}

/// An INVITE to send.
struct OutgoingCall {
    target: Uri,
    /// The To header's URI when it is not the Request-URI: the agent's address of record
    /// while the Request-URI is the softphone's registered contact (RFC 3261 §8.1.1.2).
    to_uri: Option<String>,
    to: Peer,
    /// The From header value without its tag (the caller id).
    from: String,
    rtp_port: u16,
    /// Our codecs in order of preference; empty means all.
    codecs: Vec<sdp::Codec>,
    extra_headers: Vec<Header>,
}

/// What became of an INVITE we sent, for the user that placed it.
#[derive(Debug)]
enum UacOutcome {
    /// A provisional response with this status.
    Progress(u16),
    /// The first 2xx: its dialog is up (media open, ACK sent).
    Answered(DialogId),
    /// A final failure (408 for a transaction timeout, 503 for a transport error).
    Failed(u16),
}

impl UacOutcome {
    fn into_event(self, call: CallRef) -> CoreEvent {
        match self {
            UacOutcome::Progress(code) => CoreEvent::Progress { call, code },
            UacOutcome::Answered(dialog) => CoreEvent::Answered { call, dialog },
            UacOutcome::Failed(code) => CoreEvent::Failed { call, code },
        }
    }
}

/// What a client transaction of ours is for.
#[derive(Debug)]
enum ClientPurpose {
    Invite(CallRef),
    Bye(DialogId),
    /// A BYE to a fork we did not keep.
    Discard,
    /// A re-INVITE we sent in this dialog (hold passed through a bridge).
    Reinvite(DialogId),
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum CoreTimer {
    /// Retransmit the 2xx of this dialog, or give up.
    RetransmitOk(DialogId),
    /// `echo` has rung long enough.
    Answer(ServerTxId),
    /// An application call has rung long enough.
    NoAnswer(CallRef),
    /// RFC 4028: the session was not refreshed in time.
    SessionExpired(DialogId),
    /// A held service call rings again, so proxies on the way keep it (RFC 3261 §13.3.1.1).
    Ringing(ServerTxId),
    /// An answered call's ACK is overdue: its RTP port goes back to the pool.
    ReleaseUnackedMedia(DialogId),
}

/// The core's state is grouped by the concern that owns it, and only that concern's file
/// changes it: the dialogs of our calls, their media legs and the INVITEs we sent (this file),
/// the INVITEs held unanswered (`uas`), the application calls (`app_calls`), RFC 4028 session
/// deadlines (`session_timer`), and what each source may make us hold (`source_limits`). The
/// outputs (events, media commands, timers) are queues every concern adds to.
pub struct SipCore {
    config: CoreConfig,
    tx: TransactionLayer,
    registrar: Registrar,
    ports: PortPool,
    calls: HashMap<DialogId, Call>,
    /// INVITEs held unanswered (see `uas`).
    pending: uas::HeldInvites,
    outgoing: HashMap<CallRef, Outgoing>,
    client_purpose: HashMap<ClientTxId, ClientPurpose>,
    timers: BinaryHeap<Reverse<(Instant, CoreTimer)>>,
    events: VecDeque<CoreEvent>,
    media: VecDeque<MediaCommand>,
    /// When each session must be refreshed (see `session_timer`).
    sessions: session_timer::SessionTimers,
    /// Calls placed or accepted for the application, bridged to a local RTP leg.
    app_calls: app_calls::AppCalls,
    /// Open media legs by RTP port, and the call each belongs to.
    legs: HashMap<u16, DialogId>,
    next_call: u64,
    /// What sources may make us hold, and what was refused (see `source_limits`).
    admission: source_limits::Admission,
    /// Every tag, branch, Call-ID and SDP session id the core makes.
    ids: Ids,
}

impl SipCore {
    /// A core whose identifiers come from the operating system's random source (see
    /// [`SipCore::with_ids`] for runs that must replay exactly).
    pub fn new(config: CoreConfig, registrar: Registrar, ports: PortPool) -> SipCore {
        SipCore::with_ids(config, registrar, ports, Ids::from_os())
    }

    /// A core whose tags, branches, Call-IDs and SDP session ids all come from `ids`: built
    /// from the same seed and fed the same inputs, two cores send the same bytes.
    pub(crate) fn with_ids(
        config: CoreConfig,
        registrar: Registrar,
        ports: PortPool,
        mut ids: Ids,
    ) -> SipCore {
        SipCore {
            tx: TransactionLayer::new(config.timers, ids.derive())
                .with_server_header(config.user_agent.clone()),
            ids,
            admission: source_limits::Admission::new(&config.invites),
            config,
            registrar,
            ports,
            calls: HashMap::new(),
            pending: uas::HeldInvites::default(),
            outgoing: HashMap::new(),
            client_purpose: HashMap::new(),
            timers: BinaryHeap::new(),
            events: VecDeque::new(),
            media: VecDeque::new(),
            sessions: session_timer::SessionTimers::default(),
            app_calls: app_calls::AppCalls::default(),
            legs: HashMap::new(),
            next_call: 1,
        }
    }

    pub(crate) fn registrar(&self) -> &Registrar {
        &self.registrar
    }

    /// The registrar, for the driver to share its bindings with other nodes.
    pub(crate) fn registrar_mut(&mut self) -> &mut Registrar {
        &mut self.registrar
    }

    pub(crate) fn stats(&self) -> CoreStats {
        let (server_transactions, client_transactions) = self.tx.len();
        CoreStats {
            calls: self.calls.len(),
            pending_invites: self.pending.len(),
            server_transactions,
            client_transactions,
            registrations: self.registrar.binding_count(),
            media_legs: self.legs.len(),
            rejected_over_limit: self.admission.over_limit(),
        }
    }

    /// What the core holds besides dialogs and transactions, for the leak gauges: RTP ports
    /// taken from the pool and calls not (or no longer) in a dialog.
    pub(crate) fn held(&self) -> CoreHeld {
        CoreHeld {
            rtp_ports: self.ports.in_use(),
            pending_invites: self.pending.len(),
            outgoing: self.outgoing.len(),
            bridges: 0,
            app_calls: self.app_calls.len(),
        }
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.tx.poll_transmit()
    }

    /// The next event for the application. Draining changes nothing: what an event means
    /// for the core (an application call bridged or forgotten) was done when it was produced.
    pub(crate) fn poll_event(&mut self) -> Option<CoreEvent> {
        self.events.pop_front()
    }

    pub(crate) fn poll_media(&mut self) -> Option<MediaCommand> {
        self.media.pop_front()
    }

    /// The media engine saw nothing on this leg for its inactivity timeout: the call is dead,
    /// end it with BYE.
    pub(crate) fn media_inactive(&mut self, now: Instant, port: u16) {
        if let Some(id) = self.legs.get(&port).cloned() {
            tracing::info!(call_id = %id.call_id, port, "media inactive; ending the call");
            self.end_on_our_own(now, &id);
            self.drain_transactions(now);
        }
    }

    /// The media engine decoded a telephone-event digit on this leg.
    pub(crate) fn media_dtmf(&mut self, port: u16, digit: char, duration_ms: u32) {
        if let Some(dialog) = self.legs.get(&port).cloned() {
            tracing::info!(call_id = %dialog.call_id, %digit, duration_ms, "DTMF digit");
            let call = self.app_call_of(&dialog);
            self.events.push_back(CoreEvent::Dtmf {
                dialog,
                call,
                digit,
                duration_ms,
            });
        }
    }

    /// The media engine could not open this leg (its port is taken): end the call.
    pub(crate) fn media_failed(&mut self, now: Instant, port: u16) {
        if let Some(id) = self.legs.remove(&port) {
            tracing::warn!(call_id = %id.call_id, port, "media port unavailable; ending the call");
            self.end_on_our_own(now, &id);
            self.drain_transactions(now);
        }
    }

    fn open_leg(
        &mut self,
        port: u16,
        remote: Option<SocketAddr>,
        signalling: SocketAddr,
        id: &DialogId,
    ) {
        self.legs.insert(port, id.clone());
        self.media.push_back(MediaCommand::Open {
            port,
            remote,
            signalling: Some(signalling),
        });
    }

    /// Frees a call's RTP port, closing its media leg if one was opened.
    fn release_leg(&mut self, port: u16) {
        if self.legs.remove(&port).is_some() {
            self.media.push_back(MediaCommand::Close { port });
        }
        self.ports.release(port);
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        [
            self.tx.poll_timeout(),
            self.timers.peek().map(|Reverse((at, _))| *at),
            self.registrar.poll_timeout(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Sends a ready-made reply (e.g. a wire-layer 400) outside any transaction.
    pub(crate) fn send_stateless(&mut self, to: Peer, payload: Bytes) {
        self.tx.send_stateless(to, payload);
    }

    /// A parsed message from the transport, received at `now`.
    pub fn handle_message(&mut self, now: Instant, message: Incoming, peer: Peer) {
        match message {
            Incoming::Request(request, meta) => self.tx.handle_request(now, request, meta, peer),
            Incoming::Response(response, meta) => self.tx.handle_response(now, response, meta),
        }
        self.drain_transactions(now);
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        self.tx.handle_timeout(now);
        self.registrar.handle_timeout(now);
        while let Some(Reverse((at, _))) = self.timers.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((at, timer))) = self.timers.pop() else {
                break;
            };
            match timer {
                CoreTimer::RetransmitOk(id) => self.retransmit_ok(now, at, id),
                CoreTimer::NoAnswer(call) => self.app_call_no_answer(now, call),
                CoreTimer::SessionExpired(id) => self.session_expired(now, at, &id),
                CoreTimer::Ringing(tx) => self.ring_again(now, tx),
                CoreTimer::ReleaseUnackedMedia(id) => self.release_unacked_media(&id),
                CoreTimer::Answer(tx) => match self.pending.get(&tx) {
                    Some(p) if p.answer_at == at && p.incoming => {
                        self.reject_incoming(now, tx, 480, "No Answer");
                        self.events
                            .push_back(CoreEvent::IncomingExpired { incoming: tx });
                    }
                    Some(p) if p.answer_at == at => self.answer_echo(now, tx),
                    _ => {}
                },
            }
        }
        self.drain_transactions(now);
    }

    fn drain_transactions(&mut self, now: Instant) {
        while let Some(event) = self.tx.poll_event() {
            match event {
                TxEvent::Request {
                    tx,
                    request,
                    meta,
                    peer,
                } => self.on_request(now, tx, request, meta, peer),
                TxEvent::Ack { request, meta } => self.on_ack(now, &request, &meta),
                TxEvent::Cancelled { tx } => self.on_cancelled(now, tx),
                TxEvent::Response { tx, response, meta } => {
                    self.on_response(now, tx, response, meta)
                }
                TxEvent::StrayResponse { meta } => self.on_stray_2xx(now, &meta),
                TxEvent::Timeout { tx } => self.on_client_timeout(now, tx, 408),
                TxEvent::TransportError { tx } => self.on_client_timeout(now, tx, 503),
                TxEvent::AckTimeout => {}
            }
        }
    }

    // ----- requests -----

    fn reply(&mut self, now: Instant, tx: ServerTxId, resp: Response) {
        let _ = self.tx.respond(now, tx, resp);
    }

    fn reply_status(&mut self, now: Instant, tx: ServerTxId, req: &Request, status: StatusCode) {
        let tag = self.ids.tag();
        let resp = self.decorate(response(req, status, Some(&tag)));
        self.reply(now, tx, resp);
    }

    fn reply_no_ports(&mut self, now: Instant, tx: ServerTxId, req: &Request) {
        let status = status_with_reason(503, "No Media Ports");
        self.reply_status(now, tx, req, status);
    }

    fn decorate(&self, mut resp: Response) -> Response {
        resp.headers
            .push(Header::Server(rsipstack::sip::Server::new(
                self.config.user_agent.clone(),
            )));
        resp
    }

    fn contact(&self, transport: TransportKind) -> String {
        self.config.contact(transport)
    }

    /// A request in a dialog (BYE, ACK, re-INVITE …): the dialog's routes and target, our
    /// Via and Contact for the dialog's transport, and our User-Agent.
    fn dialog_request(
        config: &CoreConfig,
        ids: &mut Ids,
        dialog: &mut Dialog,
        method: Method,
        ack_of: Option<u32>,
    ) -> Request {
        let transport = dialog.next_hop().transport;
        let mut request = dialog.request(
            method,
            &config.sent_by(transport),
            &config.contact(transport),
            ack_of,
            &ids.branch(),
        );
        insert_before_length(
            &mut request.headers,
            vec![Header::UserAgent(rsipstack::sip::UserAgent::new(
                config.user_agent.clone(),
            ))],
        );
        request
    }

    fn on_request(&mut self, now: Instant, tx: ServerTxId, req: Request, meta: Meta, peer: Peer) {
        // RFC 3261 §8.2.2.3: an option tag we do not support in Require gets 420.
        let unsupported = unsupported_requirements(&req.headers, SUPPORTED);
        if !unsupported.is_empty() {
            let unsupported = unsupported.join(", ");
            let tag = self.ids.tag();
            let mut resp = response(&req, StatusCode::BadExtension, Some(&tag));
            resp.headers
                .push(Header::Unsupported(rsipstack::sip::Unsupported::new(
                    unsupported,
                )));
            let resp = self.decorate(resp);
            return self.reply(now, tx, resp);
        }
        if meta.to_tag.is_some() {
            return self.on_in_dialog(now, tx, req, meta);
        }
        match req.method {
            Method::Register => {
                let resp = self.registrar.handle_register(
                    now,
                    &req,
                    &meta,
                    peer.addr,
                    peer.via_transport(),
                );
                let resp = self.decorate(resp);
                self.reply(now, tx, resp)
            }
            Method::Options => match self.target(&req.uri) {
                Target::Unknown => self.reply_status(now, tx, &req, StatusCode::NotFound),
                _ => {
                    let tag = self.ids.tag();
                    let mut resp = response(&req, StatusCode::OK, Some(&tag));
                    capabilities(&mut resp.headers);
                    let resp = self.decorate(resp);
                    self.reply(now, tx, resp)
                }
            },
            Method::Invite => self.on_invite(now, tx, req, meta, peer),
            // Out of dialog, these have nothing to act on (RFC 3261 §12.2.2 for BYE).
            Method::Bye | Method::Info | Method::Update => {
                self.reply_status(now, tx, &req, StatusCode::CallTransactionDoesNotExist)
            }
            _ => self.method_not_allowed(now, tx, &req),
        }
    }

    /// The address of record of a registrar account: `sip:<user>@<our domain>`.
    fn aor(&self, user: &str) -> String {
        format!("sip:{user}@{}", self.config.domain)
    }

    fn method_not_allowed(&mut self, now: Instant, tx: ServerTxId, req: &Request) {
        let tag = self.ids.tag();
        let mut resp = response(req, StatusCode::MethodNotAllowed, Some(&tag));
        resp.headers
            .push(Header::Allow(rsipstack::sip::Allow::new(ALLOW)));
        let resp = self.decorate(resp);
        self.reply(now, tx, resp);
    }

    fn target(&self, uri: &Uri) -> Target {
        let user = uri.auth.as_ref().map(|a| a.user.as_str());
        match user {
            None | Some("") | Some("tandem") => Target::Gateway,
            Some("echo") if self.config.echo => Target::Echo,
            Some(user) if self.config.accounts.contains(user) => Target::Account,
            Some(_) => Target::Unknown,
        }
    }

    fn on_invite(&mut self, now: Instant, tx: ServerTxId, req: Request, meta: Meta, peer: Peer) {
        let trunk = match self.trunk_claim(now, &req, peer) {
            Ok(trunk) => trunk,
            Err(err) => return self.refuse_trunk(now, tx, &req, err),
        };
        let mut service_number = None;
        match self.target(&req.uri) {
            // A call for an interaction goes to the application, whatever number it dials.
            // Without a join token only a trunk's caller id can join it, so a stranger is
            // asked to prove it is one when trunks can (`trunk_auth`).
            _ if app_call_interaction(&req).is_some() => {
                if !trunk && join_token(&req).is_none() && self.registrar.has_trunk_credentials() {
                    return self.not_a_trunk(now, tx, &req, peer, "Not From A Trunk");
                }
            }
            Target::Echo => {}
            Target::Unknown | Target::Gateway => {
                let Some(number) = self.service_number(&req) else {
                    return self.reply_status(now, tx, &req, StatusCode::NotFound);
                };
                if !trunk {
                    let why = "Service Numbers Take Trunk Calls Only";
                    return self.not_a_trunk(now, tx, &req, peer, why);
                }
                service_number = Some(number);
            }
            Target::Account => {}
        }
        if !self.admit_invite(now, tx, &req, peer, trunk) {
            return;
        }
        if self.over_call_limit(now, tx, &req) {
            return;
        }
        if let Some(interval) = self.too_small_session_interval(&req) {
            return self.reply_session_interval_too_small(now, tx, &req, interval);
        }
        // A call to an agent's own number: only trunks may make one (see `trunk_auth`).
        let agent = matches!(self.target(&req.uri), Target::Account)
            && app_call_interaction(&req).is_none();
        if agent && !trunk {
            return self.not_a_trunk(now, tx, &req, peer, "Not From A Trunk");
        }
        let Some(rtp_port) = self.ports.allocate() else {
            return self.reply_no_ports(now, tx, &req);
        };
        let media = LocalMedia {
            addr: self.config.advertised.ip(),
            rtp_port,
            codecs: Vec::new(),
            telephone_event: true,
        };
        let mut session = SdpSession::new(self.ids.next_u64());
        let incoming = app_call_interaction(&req);
        let held = incoming.is_some() || service_number.is_some() || agent;
        if held && req.body.is_empty() {
            self.ports.release(rtp_port);
            let status = status_with_reason(488, "Offer Required");
            return self.reply_status(now, tx, &req, status);
        }
        let (answer, remote, dtmf_pt, codec) = if req.body.is_empty() {
            // A delayed offer: our 200 carries the offer and the ACK the answer (RFC 3261 §13.2.1).
            (None, None, None, None)
        } else {
            // The agent's answer decides the caller's codec: the offer is only checked now.
            let mut probe = session.clone();
            let answering = if agent { &mut probe } else { &mut session };
            match sdp::answer(&String::from_utf8_lossy(&req.body), &media, answering) {
                Ok(answer) => (
                    (!agent).then(|| answer.sdp.into_bytes()),
                    Some(answer.media.remote_rtp),
                    answer.media.telephone_event_pt,
                    Some(answer.media.codec),
                ),
                Err(e) => {
                    self.release_leg(rtp_port);
                    let tag = self.ids.tag();
                    let resp = response(
                        &req,
                        status_with_reason(e.sip_status(), &e.to_string()),
                        Some(&tag),
                    );
                    let resp = self.decorate(resp);
                    return self.reply(now, tx, resp);
                }
            }
        };
        let local_tag = self.ids.tag();
        // `echo` with no ring time answers in this pass: a 180 first would say nothing.
        let echo_at_once = !agent
            && service_number.is_none()
            && incoming.is_none()
            && self.config.echo_ring.is_zero();
        if !agent && !echo_at_once {
            // The agent's softphone rings first; its progress is relayed.
            self.ring(
                now,
                tx,
                &req,
                &local_tag,
                peer.transport,
                StatusCode::Ringing,
            );
        }
        let answer_at = if service_number.is_some() {
            now + self.config.service_call_hold
        } else if incoming.is_some() || agent {
            now + self.config.agent_answer_timeout
        } else {
            now + self.config.echo_ring
        };
        let caller = caller_user(&req);
        let agent_call = agent.then(|| CoreEvent::AgentCall {
            incoming: tx,
            user: req
                .uri
                .auth
                .as_ref()
                .map(|a| a.user.clone())
                .unwrap_or_default(),
            from: caller_id(&req),
            call_id: meta.call_id.clone(),
            codec: codec.unwrap_or(sdp::Codec::Pcmu),
        });
        self.pending.insert(
            tx,
            uas::PendingInvite {
                held: uas::HeldInvite {
                    request: req,
                    meta,
                    peer,
                    local_tag,
                    sdp: session,
                    media,
                },
                answer_at,
                answer,
                remote,
                dtmf_pt,
                codec,
                incoming: held,
            },
        );
        if let Some(event) = agent_call {
            self.timers
                .push(Reverse((answer_at, CoreTimer::Answer(tx))));
            self.events.push_back(event);
            return;
        }
        if let Some(number) = service_number {
            self.timers
                .push(Reverse((answer_at, CoreTimer::Answer(tx))));
            self.timers
                .push(Reverse((now + RING_AGAIN, CoreTimer::Ringing(tx))));
            self.events.push_back(CoreEvent::ServiceCall {
                incoming: tx,
                number,
                caller,
            });
            return;
        }
        if let Some(interaction) = incoming {
            let source = if trunk {
                CallSource::Trunk
            } else {
                CallSource::Other
            };
            self.timers
                .push(Reverse((answer_at, CoreTimer::Answer(tx))));
            let token = self
                .pending
                .get(&tx)
                .and_then(|p| join_token(&p.held.request));
            self.events.push_back(CoreEvent::Incoming {
                incoming: tx,
                interaction,
                caller,
                source,
                token,
            });
            return;
        }
        if self.config.echo_ring.is_zero() {
            self.answer_echo(now, tx);
        } else {
            self.timers
                .push(Reverse((answer_at, CoreTimer::Answer(tx))));
        }
    }

    /// The service number an INVITE dials: the Request-URI's user, else the To URI's.
    fn service_number(&self, req: &Request) -> Option<String> {
        let known = |user: &str| {
            let user = user.split(';').next().unwrap_or(user);
            self.config
                .service_numbers
                .contains(crate::config::number_key(user))
                .then(|| user.to_string())
        };
        let by_uri = req.uri.auth.as_ref().and_then(|a| known(a.user.as_str()));
        by_uri.or_else(|| known(&to_user(req)))
    }

    /// A held service call is still waiting: ring again (a fresh 180 on its transaction).
    fn ring_again(&mut self, now: Instant, tx: ServerTxId) {
        if self.ring_held(now, tx, StatusCode::Ringing) {
            self.timers
                .push(Reverse((now + RING_AGAIN, CoreTimer::Ringing(tx))));
        }
    }

    /// Relays a provisional response to a held call (the agent's phone rings: so does the
    /// caller's). A 100, or a call no longer held, is left alone.
    pub(crate) fn ring_incoming(&mut self, now: Instant, incoming: ServerTxId, code: u16) {
        let held = self.pending.get(&incoming).is_some_and(|p| p.incoming);
        if held && (101..200).contains(&code) {
            self.ring_held(now, incoming, code.into());
            self.drain_transactions(now);
        }
    }

    /// Sends a provisional `status` for the held INVITE `tx`; `false` if it is not held.
    fn ring_held(&mut self, now: Instant, tx: ServerTxId, status: StatusCode) -> bool {
        let Some(pending) = self.pending.get(&tx) else {
            return false;
        };
        let held = &pending.held;
        let (request, tag, transport) = (
            held.request.clone(),
            held.local_tag.clone(),
            held.peer.transport,
        );
        self.ring(now, tx, &request, &tag, transport, status);
        true
    }

    /// Answers the INVITE `req` with a provisional `status` (180 Ringing, 183 Session
    /// Progress), with our Contact for `transport`.
    fn ring(
        &mut self,
        now: Instant,
        tx: ServerTxId,
        req: &Request,
        tag: &str,
        transport: TransportKind,
        status: StatusCode,
    ) {
        let mut ringing = response(req, status, Some(tag));
        ringing
            .headers
            .push(Header::Contact(rsipstack::sip::Contact::new(
                self.contact(transport),
            )));
        copy_record_route(req, &mut ringing);
        let ringing = self.decorate(ringing);
        self.reply(now, tx, ringing);
    }

    /// `echo` answers: its media comes back to the caller.
    fn answer_echo(&mut self, now: Instant, tx: ServerTxId) {
        let Some(mut pending) = self.pending.remove(&tx) else {
            return;
        };
        let held = &mut pending.held;
        let body = pending.answer.take().unwrap_or_else(|| {
            sdp::offer(&held.media, Direction::SendRecv, &mut held.sdp).into_bytes()
        });
        let port = held.media.rtp_port;
        let Some(id) = self.answer_held(now, tx, pending.held, body, pending.remote) else {
            return;
        };
        self.media.push_back(MediaCommand::Echo { port });
        if pending.dtmf_pt.is_some() {
            self.media.push_back(MediaCommand::DetectDtmf {
                port,
                payload_type: pending.dtmf_pt,
            });
        }
        self.release_media_unless_acked(now, &id);
    }

    fn ok_with_sdp(
        &self,
        req: &Request,
        local_tag: &str,
        transport: TransportKind,
        body: Vec<u8>,
    ) -> Response {
        let mut ok = response(req, StatusCode::OK, Some(local_tag));
        ok.headers
            .push(Header::Contact(rsipstack::sip::Contact::new(
                self.contact(transport),
            )));
        capabilities(&mut ok.headers);
        self.add_session_timer_headers(req, &mut ok.headers);
        if creates_dialog(req) {
            copy_record_route(req, &mut ok);
        }
        let mut ok = self.decorate(ok);
        let mut slot = Vec::new();
        set_body(&mut ok.headers, &mut slot, "application/sdp", body);
        ok.body = slot;
        ok
    }

    /// The 2xx to an in-dialog UPDATE (or other target refresh) without a body: our Contact,
    /// what we support, and the session interval confirmed (RFC 4028 §9: a refresh's 2xx
    /// carries Session-Expires, or the refresher thinks the timer is off and stops refreshing).
    fn ok_without_sdp(&self, req: &Request, transport: TransportKind) -> Response {
        let mut ok = response(req, StatusCode::OK, None);
        ok.headers
            .push(Header::Contact(rsipstack::sip::Contact::new(
                self.contact(transport),
            )));
        capabilities(&mut ok.headers);
        self.add_session_timer_headers(req, &mut ok.headers);
        self.decorate(ok)
    }

    /// Starts retransmitting `ok` until the ACK (RFC 3261 §13.3.1.4: T1, doubling up to T2, for
    /// 64·T1) and returns the state the call must take.
    fn await_ack(&mut self, now: Instant, id: &DialogId, ok: &Response, cseq: u32) -> CallState {
        let t1 = self.config.timers.t1;
        let next = now + t1;
        self.timers
            .push(Reverse((next, CoreTimer::RetransmitOk(id.clone()))));
        CallState::AwaitingAck {
            ok: Bytes::from(ok.to_bytes()),
            cseq,
            next,
            interval: t1,
            give_up: now + t1 * 64,
        }
    }

    fn retransmit_ok(&mut self, now: Instant, at: Instant, id: DialogId) {
        let t2 = self.config.timers.t2;
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let CallState::AwaitingAck {
            ok,
            next,
            interval,
            give_up,
            ..
        } = &mut call.state
        else {
            return;
        };
        if *next != at {
            return;
        }
        if now >= *give_up {
            // RFC 3261 §13.3.1.4: no ACK within 64·T1 — confirm, then end the dialog with BYE.
            call.state = CallState::Confirmed;
            return self.end_on_our_own(now, &id);
        }
        let bytes = ok.clone();
        *interval = (*interval * 2).min(t2);
        *next = (now + *interval).min(*give_up);
        let next = *next;
        let to = call.dialog.peer;
        self.tx.send_stateless(to, bytes);
        self.timers
            .push(Reverse((next, CoreTimer::RetransmitOk(id))));
    }

    fn on_ack(&mut self, now: Instant, request: &Request, meta: &Meta) {
        let Some(id) = DialogId::of_request(meta) else {
            return;
        };
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if !matches!(call.state, CallState::AwaitingAck { cseq, .. } if cseq == meta.cseq) {
            return;
        }
        call.state = CallState::Confirmed;
        if self.admission.media_released(&id) {
            // The ACK came after the port went back to the pool: a call without media ends
            // (the UAS may send BYE now that the ACK is in, RFC 3261 §15).
            return self.end_on_our_own(now, &id);
        }
        // After a delayed offer the ACK carries the answer (RFC 3261 §13.2.1).
        if !request.body.is_empty()
            && let Ok(answer) = sdp::accept_answer(
                &call.media,
                Direction::SendRecv,
                &String::from_utf8_lossy(&request.body),
            )
        {
            let port = call.media.rtp_port;
            self.media.push_back(MediaCommand::SetRemote {
                port,
                remote: Some(answer.remote_rtp),
            });
        }
    }

    fn on_cancelled(&mut self, now: Instant, tx: ServerTxId) {
        if let Some(pending) = self.pending.remove(&tx) {
            self.release_leg(pending.held.media.rtp_port);
            let resp = response(
                &pending.held.request,
                StatusCode::RequestTerminated,
                Some(&pending.held.local_tag),
            );
            let resp = self.decorate(resp);
            self.reply(now, tx, resp);
            if pending.incoming {
                self.events
                    .push_back(CoreEvent::IncomingCancelled { incoming: tx });
            }
        }
    }

    fn on_in_dialog(&mut self, now: Instant, tx: ServerTxId, req: Request, meta: Meta) {
        let Some(id) = DialogId::of_request(&meta) else {
            return self.reply_status(now, tx, &req, StatusCode::CallTransactionDoesNotExist);
        };
        let Some(call) = self.calls.get_mut(&id) else {
            return self.reply_status(now, tx, &req, StatusCode::CallTransactionDoesNotExist);
        };
        if call
            .dialog
            .accept_remote_cseq(req.method, meta.cseq)
            .is_err()
        {
            let resp = response(&req, status_with_reason(500, "CSeq Out Of Order"), None);
            return self.reply(now, tx, resp);
        }
        match req.method {
            Method::Bye => {
                self.drop_call(&id);
                self.reply_status(now, tx, &req, StatusCode::OK);
                self.dialog_ended(id, true);
            }
            Method::Invite | Method::Update => self.on_offer(now, tx, req, meta, id),
            Method::Info | Method::Options => {
                let mut resp = response(&req, StatusCode::OK, None);
                if req.method == Method::Options {
                    capabilities(&mut resp.headers);
                }
                let resp = self.decorate(resp);
                self.reply(now, tx, resp)
            }
            _ => self.method_not_allowed(now, tx, &req),
        }
    }

    /// A re-INVITE or UPDATE: answer its offer (a hold gets the matching direction, never
    /// sendrecv), or offer ourselves when it has none.
    fn on_offer(&mut self, now: Instant, tx: ServerTxId, req: Request, meta: Meta, id: DialogId) {
        let call = self.calls.get_mut(&id).expect("caller checked");
        if req.method == Method::Invite && matches!(call.state, CallState::AwaitingAck { .. }) {
            // RFC 3261 §14.2: an offer while ours is unanswered gets 491.
            let resp = response(&req, StatusCode::RequestPending, None);
            return self.reply(now, tx, resp);
        }
        call.dialog.refresh_target(&req.headers);
        let mut offered_direction = None;
        let body = if req.body.is_empty() {
            if req.method == Method::Update {
                None
            } else {
                Some(sdp::offer(&call.media, Direction::SendRecv, &mut call.sdp).into_bytes())
            }
        } else {
            match sdp::answer(
                &String::from_utf8_lossy(&req.body),
                &call.media,
                &mut call.sdp,
            ) {
                Ok(answer) => {
                    let port = call.media.rtp_port;
                    let remote = Some(answer.media.remote_rtp);
                    // A peer that holds the call and sends nothing is not dead.
                    let enabled = answer.media.remote_direction.sends();
                    self.media
                        .push_back(MediaCommand::SetRemote { port, remote });
                    self.media.push_back(MediaCommand::Watch { port, enabled });
                    offered_direction = Some(answer.media.remote_direction);
                    Some(answer.sdp.into_bytes())
                }
                Err(e) => {
                    let resp = response(
                        &req,
                        status_with_reason(e.sip_status(), &e.to_string()),
                        None,
                    );
                    return self.reply(now, tx, resp);
                }
            }
        };
        let transport = call.dialog.peer.transport;
        let local_tag = id.local_tag.clone();
        let resp = match body {
            Some(body) => self.ok_with_sdp(&req, &local_tag, transport, body),
            None => self.ok_without_sdp(&req, transport),
        };
        if req.method == Method::Invite {
            let state = self.await_ack(now, &id, &resp, meta.cseq);
            if let Some(call) = self.calls.get_mut(&id) {
                call.state = state;
            }
        }
        self.refresh_session_timer(now, &id, &req);
        self.reply(now, tx, resp);
        // A hold or resume: a bridge offers its other half the same direction.
        if let Some(direction) = offered_direction {
            let call = self.app_call_of(&id);
            self.events.push_back(CoreEvent::Offered {
                dialog: id,
                call,
                direction,
            });
        }
    }

    // ----- outgoing calls (UAC) -----

    /// Places a call to `target` through `to`, offering audio on a fresh port.
    #[cfg(test)]
    pub(crate) fn call(
        &mut self,
        now: Instant,
        target: Uri,
        to: Peer,
        from_user: &str,
    ) -> Option<CallRef> {
        let from = format!("<sip:{from_user}@{}>", self.config.domain);
        let rtp_port = self.ports.allocate()?;
        let call = self.place_call(
            now,
            OutgoingCall {
                target,
                to_uri: None,
                to,
                from,
                rtp_port,
                codecs: Vec::new(),
                extra_headers: Vec::new(),
            },
        );
        if call.is_none() {
            self.ports.release(rtp_port);
        }
        call
    }

    /// Sends an INVITE with an SDP offer on `rtp_port` (already allocated by the caller).
    fn place_call(&mut self, now: Instant, outgoing: OutgoingCall) -> Option<CallRef> {
        let OutgoingCall {
            target,
            to_uri,
            to,
            from,
            rtp_port,
            codecs,
            extra_headers,
        } = outgoing;
        let call = self.next_call_ref();
        let media = LocalMedia {
            addr: self.config.advertised.ip(),
            rtp_port,
            codecs,
            telephone_event: true,
        };
        let mut session = SdpSession::new(self.ids.next_u64());
        let offer = sdp::offer(&media, Direction::SendRecv, &mut session);
        let (branch, tag) = (self.ids.branch(), self.ids.tag());
        let call_id = self.ids.call_id(&self.config.domain);
        let mut headers = Headers::default();
        headers.push(Header::Via(rsipstack::sip::Via::new(format!(
            "SIP/2.0/{} {};branch={branch};rport",
            to.via_transport(),
            self.config.sent_by(to.transport),
        ))));
        headers.push(Header::MaxForwards(rsipstack::sip::MaxForwards::new("70")));
        headers.push(Header::From(rsipstack::sip::From::new(format!(
            "{from};tag={tag}"
        ))));
        let to_uri = to_uri.unwrap_or_else(|| target.to_string());
        headers.push(Header::To(rsipstack::sip::To::new(format!("<{to_uri}>"))));
        headers.push(Header::CallId(rsipstack::sip::CallId::new(call_id)));
        headers.push(Header::CSeq(rsipstack::sip::CSeq::new("1 INVITE")));
        headers.push(Header::Contact(rsipstack::sip::Contact::new(
            self.contact(to.transport),
        )));
        headers.push(Header::UserAgent(rsipstack::sip::UserAgent::new(
            self.config.user_agent.clone(),
        )));
        // What the callee may send us, and that we do RFC 4028 session timers (§7.1).
        headers.push(Header::Allow(rsipstack::sip::Allow::new(ALLOW)));
        headers.push(Header::Supported(rsipstack::sip::Supported::new(
            SUPPORTED.join(", "),
        )));
        for header in extra_headers {
            headers.push(header);
        }
        let mut body = Vec::new();
        set_body(
            &mut headers,
            &mut body,
            "application/sdp",
            offer.into_bytes(),
        );
        let invite = Request {
            method: Method::Invite,
            uri: target,
            version: Version::V2,
            headers,
            body,
        };
        let tx = self.tx.send_request(now, invite.clone(), to).ok()?;
        self.client_purpose.insert(tx, ClientPurpose::Invite(call));
        self.outgoing.insert(
            call,
            Outgoing {
                invite,
                to,
                media,
                sdp: session,
                answered: None,
                tx,
                negotiated: None,
            },
        );
        Some(call)
    }

    /// Ends a call: BYE for an established dialog (RFC 3261 §15.1.1).
    pub(crate) fn hangup(&mut self, now: Instant, id: &DialogId) {
        let Some(call) = self.calls.get_mut(id) else {
            return;
        };
        if matches!(call.state, CallState::Terminating) {
            return;
        }
        call.state = CallState::Terminating;
        let bye = Self::dialog_request(
            &self.config,
            &mut self.ids,
            &mut call.dialog,
            Method::Bye,
            None,
        );
        let to = call.dialog.next_hop();
        if let Ok(tx) = self.tx.send_request(now, bye, to) {
            self.client_purpose
                .insert(tx, ClientPurpose::Bye(id.clone()));
        }
    }

    /// Offers the far end of the call `id` the direction `direction` in a re-INVITE (a hold
    /// or resume passed on through a bridge).
    fn reoffer(&mut self, now: Instant, id: &DialogId, direction: Direction) {
        let Some(state) = self.calls.get_mut(id) else {
            return;
        };
        if !matches!(state.state, CallState::Confirmed) {
            return;
        }
        let offer = sdp::offer(&state.media, direction, &mut state.sdp);
        let mut reinvite = Self::dialog_request(
            &self.config,
            &mut self.ids,
            &mut state.dialog,
            Method::Invite,
            None,
        );
        let mut body = Vec::new();
        set_body(
            &mut reinvite.headers,
            &mut body,
            "application/sdp",
            offer.into_bytes(),
        );
        reinvite.body = body;
        let to = state.dialog.next_hop();
        if let Ok(tx) = self.tx.send_request(now, reinvite, to) {
            self.client_purpose
                .insert(tx, ClientPurpose::Reinvite(id.clone()));
        }
    }

    /// The ACK for the 2xx to our re-INVITE (RFC 3261 §13.2.2.4).
    fn ack_reinvite(&mut self, id: &DialogId, cseq: u32) {
        if let Some(call) = self.calls.get_mut(id) {
            let ack = Self::dialog_request(
                &self.config,
                &mut self.ids,
                &mut call.dialog,
                Method::Ack,
                Some(cseq),
            );
            let to = call.dialog.next_hop();
            self.tx.send_stateless(to, Bytes::from(ack.to_bytes()));
        }
    }

    /// Ends a call nobody asked us to end (its session was not refreshed, its media died, its
    /// ACK never came), telling the application at once: a bridge ends the other half too.
    fn end_on_our_own(&mut self, now: Instant, id: &DialogId) {
        let live = self
            .calls
            .get(id)
            .is_some_and(|c| !matches!(c.state, CallState::Terminating));
        self.hangup(now, id);
        if live {
            let call = self.app_call_of(id);
            self.events.push_back(CoreEvent::Hangup {
                dialog: id.clone(),
                call,
            });
        }
    }

    fn on_response(&mut self, now: Instant, tx: ClientTxId, resp: Response, meta: Meta) {
        let code = resp.status_code.code();
        let final_response = code >= 200;
        match self.client_purpose.get(&tx) {
            Some(ClientPurpose::Invite(call)) => {
                let call = *call;
                self.on_invite_response(now, call, resp, meta);
                if final_response && code >= 300 {
                    self.client_purpose.remove(&tx);
                }
            }
            Some(ClientPurpose::Bye(id)) if final_response => {
                let id = id.clone();
                self.client_purpose.remove(&tx);
                self.end_call(&id, false);
            }
            Some(ClientPurpose::Discard) if final_response => {
                self.client_purpose.remove(&tx);
            }
            Some(ClientPurpose::Reinvite(id)) if final_response => {
                let id = id.clone();
                self.client_purpose.remove(&tx);
                if code < 300 {
                    self.ack_reinvite(&id, meta.cseq);
                }
            }
            _ => {}
        }
    }

    fn on_invite_response(&mut self, now: Instant, call: CallRef, resp: Response, meta: Meta) {
        let code = resp.status_code.code();
        let Some(out) = self.outgoing.get_mut(&call) else {
            return;
        };
        match code {
            100..=199 => self.outgoing_outcome(now, call, UacOutcome::Progress(code)),
            200..=299 => {
                let Some(mut dialog) = Dialog::uac(&out.invite, &resp.headers, &meta, out.to)
                else {
                    return;
                };
                let id = dialog.id.clone();
                // The ACK for a 2xx is a new transaction of its own, sent by the TU (§13.2.2.4).
                let ack = Self::dialog_request(
                    &self.config,
                    &mut self.ids,
                    &mut dialog,
                    Method::Ack,
                    Some(meta.cseq),
                );
                self.tx
                    .send_stateless(dialog.next_hop(), Bytes::from(ack.to_bytes()));
                if self.calls.contains_key(&id) {
                    return; // A retransmitted 2xx: the ACK above answers it.
                }
                if out.answered.is_some() {
                    // Another fork answered too (RFC 3261 §13.2.2.4): keep the first, end this one.
                    let bye = Self::dialog_request(
                        &self.config,
                        &mut self.ids,
                        &mut dialog,
                        Method::Bye,
                        None,
                    );
                    if let Ok(tx) = self.tx.send_request(now, bye, dialog.next_hop()) {
                        self.client_purpose.insert(tx, ClientPurpose::Discard);
                    }
                    return;
                }
                out.answered = Some(id.clone());
                let media = out.media.clone();
                let session = out.sdp.clone();
                let signalling = out.to.addr;
                let accepted = sdp::accept_answer(
                    &media,
                    Direction::SendRecv,
                    &String::from_utf8_lossy(&resp.body),
                );
                out.negotiated = accepted.as_ref().ok().cloned();
                self.calls.insert(
                    id.clone(),
                    Call {
                        dialog,
                        state: CallState::Confirmed,
                        sdp: session,
                        media,
                        outgoing: Some(call),
                    },
                );
                let port = self.calls[&id].media.rtp_port;
                let remote = accepted.as_ref().ok().map(|m| m.remote_rtp);
                self.open_leg(port, remote, signalling, &id);
                if accepted.is_err() {
                    // An answer we cannot use (RFC 3264 §6): end the call we just acknowledged.
                    self.hangup(now, &id);
                    return;
                }
                self.outgoing_outcome(now, call, UacOutcome::Answered(id));
            }
            _ => {
                let out = self.outgoing.remove(&call).expect("present");
                self.release_leg(out.media.rtp_port);
                self.outgoing_outcome(now, call, UacOutcome::Failed(code));
            }
        }
    }

    /// Hands what became of an INVITE we sent to the call's owner: an application call, or
    /// else the application itself as a [`CoreEvent`].
    fn outgoing_outcome(&mut self, now: Instant, call: CallRef, outcome: UacOutcome) {
        if self.app_call_outcome(now, call, &outcome) {
            return;
        }
        self.events.push_back(outcome.into_event(call));
    }

    fn on_stray_2xx(&mut self, _now: Instant, meta: &Meta) {
        // A 2xx retransmitted after Timer M: ACK it again if the dialog is ours.
        let Some(id) = DialogId::of_response(meta) else {
            return;
        };
        if let Some(call) = self.calls.get_mut(&id) {
            let ack = Self::dialog_request(
                &self.config,
                &mut self.ids,
                &mut call.dialog,
                Method::Ack,
                Some(meta.cseq),
            );
            let to = call.dialog.next_hop();
            self.tx.send_stateless(to, Bytes::from(ack.to_bytes()));
        }
    }

    /// The driver could not reach `to`: requests waiting for it fail now (as 503).
    pub(crate) fn transport_error(&mut self, now: Instant, to: Peer) {
        self.tx.transport_error(to);
        self.drain_transactions(now);
    }

    /// A client transaction ended without a final response: Timer B/F (`code` 408) or a
    /// transport error (503).
    fn on_client_timeout(&mut self, now: Instant, tx: ClientTxId, code: u16) {
        match self.client_purpose.remove(&tx) {
            Some(ClientPurpose::Invite(call)) => {
                if let Some(out) = self.outgoing.get(&call)
                    && out.answered.is_none()
                {
                    let out = self.outgoing.remove(&call).expect("present");
                    self.release_leg(out.media.rtp_port);
                    self.outgoing_outcome(now, call, UacOutcome::Failed(code));
                }
            }
            // RFC 3261 §15.1.1: a BYE that times out ends the dialog all the same.
            Some(ClientPurpose::Bye(id)) => self.end_call(&id, false),
            _ => {}
        }
    }

    fn end_call(&mut self, id: &DialogId, by_peer: bool) {
        if self.drop_call(id) {
            self.dialog_ended(id.clone(), by_peer);
        }
    }

    /// Keeps a call whose dialog is up.
    fn keep_call(&mut self, id: DialogId, call: Call) {
        self.calls.insert(id, call);
    }

    /// Forgets a call that ended, with its media leg (unless its port went back to the pool
    /// already), its outgoing INVITE and its session deadline; `false` if there was none.
    fn drop_call(&mut self, id: &DialogId) -> bool {
        let Some(call) = self.calls.remove(id) else {
            return false;
        };
        if !self.admission.forget_released(id) {
            self.release_leg(call.media.rtp_port);
        }
        if let Some(out) = call.outgoing {
            self.outgoing.remove(&out);
        }
        self.sessions.forget(id);
        true
    }

    /// A fresh name for a call of the application's.
    fn next_call_ref(&mut self) -> CallRef {
        let call = CallRef(self.next_call);
        self.next_call += 1;
        call
    }

    /// Reports a dialog's end, forgetting the application call it carried.
    fn dialog_ended(&mut self, dialog: DialogId, by_peer: bool) {
        let call = self.forget_app_dialog(&dialog);
        self.events.push_back(CoreEvent::Ended {
            dialog,
            call,
            by_peer,
        });
    }
}

enum Target {
    /// The gateway itself (no user part).
    Gateway,
    Echo,
    /// A registrar account (an agent's softphone).
    Account,
    Unknown,
}

fn capabilities(headers: &mut Headers) {
    headers.push(Header::Allow(rsipstack::sip::Allow::new(ALLOW)));
    headers.push(Header::Accept(rsipstack::sip::Accept::new(ACCEPT)));
    headers.push(Header::Supported(rsipstack::sip::Supported::new(
        SUPPORTED.join(", "),
    )));
}

#[cfg(test)]
pub(crate) mod tests;

#[cfg(test)]
mod tests_b2bua;

#[cfg(test)]
mod tests_app_bridge;

#[cfg(test)]
mod tests_headers;

#[cfg(test)]
mod tests_proxy;

#[cfg(test)]
mod tests_session_refresh;

#[cfg(test)]
mod tests_redirect;
#[cfg(test)]
mod tests_replay;
#[cfg(test)]
mod tests_source_limits;
#[cfg(test)]
mod tests_trunk_auth;

mod app_calls;
mod outbound;
mod redirect;
mod session_timer;
mod source_limits;
mod trunk_auth;
mod uas;

/// The interaction an INVITE names: `X-Interaction-Id`, else RFC 7433 User-to-User with hex
/// encoding (what our own INVITEs carry).
fn app_call_interaction(req: &Request) -> Option<String> {
    let mut uui = None;
    for header in req.headers.iter() {
        match header {
            Header::Other(name, value) if name.eq_ignore_ascii_case("X-Interaction-Id") => {
                let id = value.trim();
                return (!id.is_empty() && id.len() <= 64).then(|| id.to_string());
            }
            Header::UserToUser(value) => uui = Some(value.value().to_string()),
            _ => {}
        }
    }
    let uui = uui?;
    let mut parts = uui.split(';');
    let data = parts.next()?.trim();
    let hex_encoded = parts.any(|p| p.trim().eq_ignore_ascii_case("encoding=hex"));
    if !hex_encoded || data.len() > 128 {
        return None;
    }
    let bytes = hex::decode(data).ok()?;
    let id = String::from_utf8(bytes).ok()?;
    (!id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')).then_some(id)
}

/// Where a registered contact is reached: the address and transport its REGISTER came from.
/// `X-Interaction-Token`: lets a caller that is not the chat's number join it.
fn join_token(req: &Request) -> Option<String> {
    req.headers.iter().find_map(|h| match h {
        Header::Other(name, value) if name.eq_ignore_ascii_case("X-Interaction-Token") => {
            let value = value.trim();
            (!value.is_empty() && value.len() <= 128).then(|| value.to_string())
        }
        _ => None,
    })
}

fn binding_peer(binding: &super::registrar::Binding) -> Peer {
    let transport = TransportKind::from_token(&binding.transport).unwrap_or(TransportKind::Udp);
    Peer::on(transport, binding.source, None)
}

/// The caller's From (display name and URI) without its tag: the agent sees who calls.
fn caller_id(req: &Request) -> String {
    let from = req
        .from_header()
        .map_or("<sip:anonymous@anonymous.invalid>", |f| f.value());
    let (name, uri) = match from.find('<') {
        Some(i) => (from[..i].trim(), super::dialog::addr_spec(from)),
        None => ("", super::dialog::addr_spec(from)),
    };
    if name.is_empty() {
        format!("<{uri}>")
    } else {
        format!("{name} <{uri}>")
    }
}

/// The user part of the From URI (the caller's number).
fn caller_user(req: &Request) -> String {
    let from = req.from_header().ok();
    from.and_then(|f| uri_user(f.value())).unwrap_or_default()
}

/// The user part of the To URI (the number dialled, where the Request-URI was rewritten).
fn to_user(req: &Request) -> String {
    let to = req.to_header().ok();
    to.and_then(|t| uri_user(t.value())).unwrap_or_default()
}

/// The user part of the `sip:` URI in a From or To value.
fn uri_user(value: &str) -> Option<String> {
    let start = value.find("sip:").map(|i| i + 4)?;
    let rest = &value[start..];
    let end = rest.find(['@', '>', ';']).unwrap_or(rest.len());
    Some(rest[..end].to_string())
}
