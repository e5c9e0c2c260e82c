//! The tokio driver of the SIP core: it owns the sockets and the clock, nothing else.
//!
//! One task owns the [`SipCore`] and the UDP socket; it reads datagrams in batches, stamps them
//! with the time they arrived, feeds the core, and writes what the core wants sent. Each TCP
//! connection has a task that frames and parses messages (RFC 3261 §18.3, Content-Length is
//! mandatory) and writes what the core sends on that connection, so responses leave on the
//! connection their request came on. Idle connections are closed, and so are connections over
//! the configured limit.
//!
//! The rest of the gateway places calls through [`SipControl`]: an application call is dialled
//! by the core task, and everything that happens to it comes back on the caller's own channel
//! as [`SipCallEvent`]s.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rsipstack::sip::Method;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::b2bua::B2bua;
use super::connection::{self, InCore, Inbound, Limits, Links};
use super::core::{
    AppDial, AppLeg, CallRef, CallSource, CoreConfig, CoreEvent, CoreHeld, DialError, MediaCommand,
    SipCore,
};
use super::ids::Ids;
use super::owners::{Owners, StoreOwners};
use super::peer::{ConnId, Peer, Transmit, TransportKind};
use super::registrar::{AuthCounts, Registrar};
use super::sdp::Codec;
use super::shared::{self, Elsewhere, Sharing};
use super::srtp_edge::SrtpEdge;
use super::tls::TlsContext;
use super::transaction::ServerTxId;
use super::webrtc_edge::Edge;
use super::wire;
use crate::chat::store::Store;
use crate::config::{Config, ListenTransport, TrunkConfig};
use crate::media::engine::{Forwarding, LegPort, MediaEngine, MediaEvent, MediaSettings, Route};
use crate::media::latch::{LatchConfig, Learning};
use crate::media::metrics::MediaMetrics;
use crate::media::ports::PortPool;
use crate::metrics::Metrics;
use crate::rtc::RtcService;
use crate::sip::metrics::SipMetrics;

/// Counters of what the transport refused, for `/metrics`.
#[derive(Debug, Default)]
pub struct TransportCounters {
    /// Messages dropped without an answer (unparsable, not UTF-8, responses we cannot read).
    pub dropped: AtomicU64,
    /// Requests answered by the wire layer itself (400, 501, 505 …).
    pub rejected: AtomicU64,
    /// Stream connections refused, over the limit or over their source's share.
    pub refused_connections: AtomicU64,
}

/// A running SIP endpoint.
pub struct SipHandle {
    pub udp_addr: Option<SocketAddr>,
    pub tcp_addr: Option<SocketAddr>,
    /// The SIP-over-TLS listener, when `[sip.tls]` is set.
    pub tls_addr: Option<SocketAddr>,
    /// The SIP-over-WebSocket listener, when `[sip.websocket]` is set.
    pub ws_addr: Option<SocketAddr>,
    pub counters: Arc<TransportCounters>,
    pub control: SipControl,
    task: tokio::task::JoinHandle<()>,
}

/// What happens to an application call, in order; `Ended` or `Failed` is the last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SipCallEvent {
    Progress {
        call: CallRef,
        code: u16,
    },
    /// Answered: the local endpoint sends and receives `codec` from now on.
    Answered {
        call: CallRef,
        codec: Codec,
    },
    Failed {
        call: CallRef,
        code: u16,
    },
    Ended {
        call: CallRef,
        by_peer: bool,
    },
    Dtmf {
        call: CallRef,
        digit: char,
        duration_ms: u32,
    },
}

/// A placed application call: where the local endpoint exchanges the call's RTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DialedCall {
    pub call: CallRef,
    pub media: SocketAddr,
}

enum Control {
    Dial {
        dial: Box<AppDial>,
        events: mpsc::UnboundedSender<SipCallEvent>,
        reply: oneshot::Sender<Result<DialedCall, DialError>>,
    },
    Hangup(CallRef),
    /// Incoming calls for interactions go to this channel from now on.
    Subscribe(mpsc::UnboundedSender<IncomingEvent>),
    Accept {
        incoming: ServerTxId,
        events: mpsc::UnboundedSender<SipCallEvent>,
        reply: oneshot::Sender<Result<(DialedCall, Codec), DialError>>,
    },
    Reject {
        incoming: ServerTxId,
        code: u16,
        why: String,
    },
    Bridge {
        customer: CallRef,
        agent: CallRef,
        reply: oneshot::Sender<Result<(), DialError>>,
    },
    Record {
        customer: AppLeg,
        agent: AppLeg,
        name: String,
        reply: oneshot::Sender<Result<(), DialError>>,
    },
    /// The owner of a held call's interaction is known (`None`: it stays here).
    Owned {
        call: IncomingCall,
        owner: Option<rsipstack::sip::Uri>,
    },
}

/// An INVITE that names an interaction, waiting for [`SipControl::accept`] or
/// [`SipControl::reject`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingCall {
    pub incoming: ServerTxId,
    pub interaction: String,
    /// The caller's user part (a phone number from a trunk).
    pub caller: String,
    /// Whether a trunk sent the call (and so vouches for `caller`).
    pub source: CallSource,
    /// The chat's join token the INVITE carried (`X-Interaction-Token`).
    pub token: Option<String>,
}

/// Calls coming in for the application, each waiting for [`SipControl::accept`] or
/// [`SipControl::reject`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IncomingEvent {
    /// An INVITE that names an interaction.
    Call(IncomingCall),
    /// A trunk's INVITE to a service number (it keeps ringing meanwhile).
    ServiceCall {
        incoming: ServerTxId,
        number: String,
        caller: String,
    },
    /// The caller of a waiting call hung up (CANCEL); it is answered already.
    Cancelled(ServerTxId),
}

impl IncomingEvent {
    /// The held INVITE this event is about.
    pub(crate) fn incoming(&self) -> ServerTxId {
        match self {
            IncomingEvent::Call(call) => call.incoming,
            IncomingEvent::ServiceCall { incoming, .. } | IncomingEvent::Cancelled(incoming) => {
                *incoming
            }
        }
    }
}

/// What a core event means to the call driver.
#[derive(Debug)]
pub(crate) enum ForCalls {
    /// A call waiting for an interaction, or its caller gone.
    Incoming(IncomingEvent),
    /// An event of an application call.
    Call(CallRef, SipCallEvent),
}

/// Translates a core event for the call driver; `None` for events of calls that are not
/// application calls (echo), which concern only the core, and for the B2BUA's. The SIP task delivers
/// what this returns, and the deterministic harness of the call path drives the call driver
/// with it, so both see the same translation.
pub(crate) fn for_calls(core: &SipCore, event: CoreEvent) -> Option<ForCalls> {
    Some(match event {
        CoreEvent::Incoming {
            incoming,
            interaction,
            caller,
            source,
            token,
        } => ForCalls::Incoming(IncomingEvent::Call(IncomingCall {
            incoming,
            interaction,
            caller,
            source,
            token,
        })),
        CoreEvent::ServiceCall {
            incoming,
            number,
            caller,
        } => ForCalls::Incoming(IncomingEvent::ServiceCall {
            incoming,
            number,
            caller,
        }),
        CoreEvent::IncomingCancelled { incoming } => {
            ForCalls::Incoming(IncomingEvent::Cancelled(incoming))
        }
        // The B2BUA's, or what the call driver learns otherwise (a call it leaves unanswered
        // is refused; a BYE's end arrives as `Ended`).
        CoreEvent::AgentCall { .. }
        | CoreEvent::IncomingExpired { .. }
        | CoreEvent::Hangup { .. }
        | CoreEvent::Offered { .. } => return None,
        CoreEvent::Progress { call, code } => {
            ForCalls::Call(call, SipCallEvent::Progress { call, code })
        }
        CoreEvent::Answered { call, .. } => {
            let codec = core.app_call_codec(call).unwrap_or(Codec::Pcmu);
            ForCalls::Call(call, SipCallEvent::Answered { call, codec })
        }
        CoreEvent::Failed { call, code } => {
            ForCalls::Call(call, SipCallEvent::Failed { call, code })
        }
        CoreEvent::Ended { call, by_peer, .. } => {
            let call = call?;
            ForCalls::Call(call, SipCallEvent::Ended { call, by_peer })
        }
        CoreEvent::Dtmf {
            call,
            digit,
            duration_ms,
            ..
        } => {
            let call = call?;
            ForCalls::Call(
                call,
                SipCallEvent::Dtmf {
                    call,
                    digit,
                    duration_ms,
                },
            )
        }
    })
}

/// Places and ends application calls (a cheap handle to the SIP task).
#[derive(Clone)]
pub struct SipControl {
    tx: mpsc::Sender<Control>,
}

impl SipControl {
    /// Sends the request `make` builds around a reply channel, and waits for the reply; a
    /// SIP task that is gone counts as a request not sent.
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, DialError>>) -> Control,
    ) -> Result<T, DialError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| DialError::NotSent)?;
        answer.await.map_err(|_| DialError::NotSent)?
    }

    /// Dials; the call's events go to `events`.
    pub(crate) async fn dial(
        &self,
        dial: AppDial,
        events: mpsc::UnboundedSender<SipCallEvent>,
    ) -> Result<DialedCall, DialError> {
        self.ask(|reply| Control::Dial {
            dial: Box::new(dial),
            events,
            reply,
        })
        .await
    }

    /// BYE or CANCEL; the end arrives as `Ended` or `Failed`.
    pub(crate) async fn hangup(&self, call: CallRef) {
        let _ = self.tx.send(Control::Hangup(call)).await;
    }

    /// Incoming calls for interactions are sent to `to`; without a subscriber they get 480.
    pub(crate) async fn subscribe(&self, to: mpsc::UnboundedSender<IncomingEvent>) {
        let _ = self.tx.send(Control::Subscribe(to)).await;
    }

    /// Answers an incoming call; its audio is at the returned address in the returned codec,
    /// and its events go to `events`.
    pub(crate) async fn accept(
        &self,
        incoming: ServerTxId,
        events: mpsc::UnboundedSender<SipCallEvent>,
    ) -> Result<(DialedCall, Codec), DialError> {
        self.ask(|reply| Control::Accept {
            incoming,
            events,
            reply,
        })
        .await
    }

    /// Refuses an incoming call with `code`, saying `why`.
    pub(crate) async fn reject(&self, incoming: ServerTxId, code: u16, why: &str) {
        let why = why.to_string();
        let _ = self
            .tx
            .send(Control::Reject {
                incoming,
                code,
                why,
            })
            .await;
    }

    /// Joins two answered application calls to each other (see
    /// [`SipCore::bridge_app_calls`]); each still ends on its own.
    pub(crate) async fn bridge(&self, customer: CallRef, agent: CallRef) -> Result<(), DialError> {
        self.ask(|reply| Control::Bridge {
            customer,
            agent,
            reply,
        })
        .await
    }

    /// Records answered calls into `sip.recording_dir` as `<name>.wav` (see
    /// [`SipCore::record_app_calls`]); without a recording directory nothing is written.
    pub(crate) async fn record(
        &self,
        customer: AppLeg,
        agent: AppLeg,
        name: String,
    ) -> Result<(), DialError> {
        self.ask(|reply| Control::Record {
            customer,
            agent,
            name,
            reply,
        })
        .await
    }
}

impl SipHandle {
    /// Waits for the driver to stop (after the shutdown token fired).
    pub(crate) async fn join(self) {
        let _ = self.task.await;
    }
}

/// Binds the configured transports and starts the core. With port 0, UDP picks the port and TCP
/// binds the same one. On a PostgreSQL `store` (what several nodes share) registrations are
/// shared through it and a call for an interaction another node owns is redirected there
/// (see [`super::shared`] and [`super::owners`]).
pub(crate) async fn start(
    config: &Config,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    rtc: Option<RtcService>,
    store: Option<Store>,
) -> io::Result<SipHandle> {
    let sip = &config.sip;
    let mut listen = sip.listen;
    let udp = if sip.transports.contains(&ListenTransport::Udp) {
        let socket = bind_udp(listen)?;
        listen = socket.local_addr()?;
        Some(Arc::new(socket))
    } else {
        None
    };
    let tcp = if sip.transports.contains(&ListenTransport::Tcp) {
        let listener = TcpListener::bind(listen).await?;
        listen = listener.local_addr()?;
        Some(listener)
    } else {
        None
    };
    let advertised = sip.public_addr.unwrap_or(listen);
    let tls = match &sip.tls {
        Some(tls_config) => Some(
            TlsContext::from_config(tls_config)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?,
        ),
        None => None,
    };
    let tls_listener = match &sip.tls {
        Some(tls_config) => Some(TcpListener::bind(tls_config.listen).await?),
        None => None,
    };
    let ws_listener = match &sip.websocket {
        Some(ws) => Some(TcpListener::bind(ws.listen).await?),
        None => None,
    };
    let tls_addr = tls_listener.as_ref().map(|l| l.local_addr()).transpose()?;
    let ws_addr = ws_listener.as_ref().map(|l| l.local_addr()).transpose()?;
    let mut core_config = CoreConfig::from_config(config, advertised);
    core_config.net.advertised_tls = sip.tls.as_ref().and_then(|t| t.public_addr).or(tls_addr);
    core_config.net.advertised_ws = sip
        .websocket
        .as_ref()
        .and_then(|w| w.public_addr)
        .or(ws_addr);
    let now = Instant::now();
    let mut registrar =
        Registrar::with_random_secret(&config.registrar, now).with_trunks(&config.sip.trunks);
    let shared_store = store.filter(|_| config.store.url.starts_with("postgres"));
    if shared_store.is_some() {
        registrar = registrar.sharing();
    }
    let ports = PortPool::shuffled(
        config.media.rtp_port_min,
        config.media.rtp_port_max,
        rand::random(),
    );
    // The driver is where randomness enters: the cores take theirs from here.
    let b2bua = B2bua::new(core_config.record);
    let core = SipCore::with_ids(core_config, registrar, ports, Ids::from_os());
    let (media, media_events) = MediaEngine::start(MediaSettings {
        bind_ip: listen.ip(),
        inactivity_timeout: Duration::from_secs(config.media.inactivity_timeout_s),
        latch: LatchConfig {
            relatch_after: Duration::from_millis(config.media.relatch_after_ms),
            ..LatchConfig::default()
        },
        threads: config.media.threads,
        idle_sockets: if config.media.keep_sockets {
            usize::from(config.media.rtp_port_max - config.media.rtp_port_min).div_ceil(2)
        } else {
            0
        },
    })?;
    let counters = Arc::new(TransportCounters::default());
    // Registered now, so `/metrics` shows the SIP side's gauges before the first call.
    metrics.part::<SipMetrics>();
    metrics.part::<MediaMetrics>();
    let (control_tx, control_rx) = mpsc::channel(1024);
    let sharing = shared_store.as_ref().map(|store| {
        shared::start(
            store.clone(),
            config.store.url.clone(),
            advertised,
            shutdown.clone(),
        )
    });
    let owners =
        shared_store.map(|store| Arc::new(StoreOwners::new(store, advertised)) as Arc<dyn Owners>);
    let (inbound_tx, inbound_rx) = mpsc::channel(4096);
    let udp_addr = udp.as_ref().map(|s| s.local_addr()).transpose()?;
    let tcp_addr = tcp.as_ref().map(|l| l.local_addr()).transpose()?;
    let links = Links::new(
        inbound_tx,
        counters.clone(),
        metrics.clone(),
        Limits {
            max_message_size: sip.max_message_size,
            idle_timeout: Duration::from_secs(sip.tcp_idle_timeout_s),
            message_deadline: Duration::from_secs(sip.tcp_message_deadline_s),
            per_source: sip.max_tcp_connections_per_source,
        },
        shutdown.clone(),
    );
    if let Some(listener) = tcp {
        tokio::spawn(connection::accept_loop(
            listener,
            TransportKind::Tcp,
            None,
            sip.max_tcp_connections,
            links.clone(),
        ));
    }
    let acceptor = tls
        .as_ref()
        .map(|t| tokio_rustls::TlsAcceptor::from(t.server.clone()));
    if let Some(listener) = tls_listener {
        tokio::spawn(connection::accept_loop(
            listener,
            TransportKind::Tls,
            acceptor.clone(),
            sip.max_tcp_connections,
            links.clone(),
        ));
    }
    if let (Some(listener), Some(ws)) = (ws_listener, &sip.websocket) {
        let (transport, acceptor) = if ws.secure {
            (TransportKind::Wss, acceptor.clone())
        } else {
            (TransportKind::Ws, None)
        };
        tokio::spawn(connection::accept_loop(
            listener,
            transport,
            acceptor,
            sip.max_tcp_connections,
            links.clone(),
        ));
    }
    if let (Some(tls), Some(tls_config)) = (&tls, &sip.tls) {
        tokio::spawn(reload_certificates(
            tls.clone(),
            Duration::from_secs(tls_config.reload_interval_s),
            shutdown.clone(),
        ));
    }
    let task = tokio::spawn(
        CoreLoop {
            core,
            b2bua,
            media,
            media_events,
            recording_dir: sip.recording_dir.as_ref().map(std::path::PathBuf::from),
            metrics,
            udp,
            inbound: inbound_rx,
            links,
            connections: HashMap::new(),
            in_core: Vec::new(),
            by_addr: HashMap::new(),
            tls_client: tls
                .as_ref()
                .and_then(|t| t.client.clone())
                .map(tokio_rustls::TlsConnector::from),
            trunks: sip.trunks.clone(),
            // Browsers on WebSocket need their media adapted to WebRTC.
            edge: sip
                .websocket
                .as_ref()
                .and(rtc)
                .map(|rtc| Edge::new(rtc, Ids::from_os())),
            srtp: SrtpEdge::new(listen.ip(), Ids::from_os()),
            counters: counters.clone(),
            max_message_size: sip.max_message_size,
            control: control_rx,
            media_ip: listen.ip(),
            app_calls: HashMap::new(),
            incoming: None,
            auth_published: AuthCounts::default(),
            owners,
            owned: control_tx.clone(),
            resolving: std::collections::HashSet::new(),
            sharing,
        }
        .run(shutdown),
    );
    tracing::info!(?udp_addr, ?tcp_addr, ?tls_addr, ?ws_addr, %advertised, "SIP listening");
    Ok(SipHandle {
        udp_addr,
        tcp_addr,
        tls_addr,
        ws_addr,
        counters,
        control: SipControl { tx: control_tx },
        task,
    })
}

/// Checks the certificate files every `interval` and takes a changed pair; a broken one is
/// logged and the one in use stays.
async fn reload_certificates(tls: TlsContext, interval: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let certificates = tls.certificates.clone();
        let reloaded = tokio::task::spawn_blocking(move || certificates.reload_if_changed()).await;
        match reloaded {
            Ok(Ok(true)) => tracing::info!("TLS certificate reloaded"),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => tracing::warn!("TLS certificate not reloaded, the old one stays: {e}"),
            Err(_) => {}
        }
    }
}

fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    // Bursts of thousands of requests a second must not overflow the kernel's queue.
    let _ = socket.set_recv_buffer_size(4 << 20);
    let _ = socket.set_send_buffer_size(4 << 20);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

struct CoreLoop {
    core: SipCore,
    /// Trunk calls to agents, bridged to their softphones: the first reader of the core's
    /// events.
    b2bua: B2bua,
    media: MediaEngine,
    media_events: mpsc::Receiver<MediaEvent>,
    recording_dir: Option<std::path::PathBuf>,
    metrics: Arc<Metrics>,
    udp: Option<Arc<UdpSocket>>,
    inbound: mpsc::Receiver<Inbound>,
    /// What connection tasks share; outbound connections are opened with it.
    links: Links,
    connections: HashMap<ConnId, mpsc::Sender<Bytes>>,
    /// Places of the batches taken since the last flush, given back after it.
    in_core: Vec<InCore>,
    /// The connection to each peer, for requests that name no connection.
    by_addr: HashMap<(TransportKind, SocketAddr), ConnId>,
    /// Verifies carriers on calls to TLS trunks (`[sip.tls] ca_file`).
    tls_client: Option<tokio_rustls::TlsConnector>,
    /// For the name a TLS trunk's certificate must carry.
    trunks: Vec<TrunkConfig>,
    /// WebRTC media for calls to browsers on WebSocket, when SIP over WebSocket is on.
    edge: Option<Edge>,
    /// SRTP for calls over TLS that offer it (SDES).
    srtp: SrtpEdge,
    counters: Arc<TransportCounters>,
    max_message_size: usize,
    control: mpsc::Receiver<Control>,
    /// Where local media legs are bound.
    media_ip: std::net::IpAddr,
    /// Whom to tell about each application call.
    app_calls: HashMap<CallRef, mpsc::UnboundedSender<SipCallEvent>>,
    /// Where incoming calls for interactions go.
    incoming: Option<mpsc::UnboundedSender<IncomingEvent>>,
    /// The registrar's guard counts last added to the metrics.
    auth_published: AuthCounts,
    /// Who owns interactions, when other nodes may (`None`: every interaction is here).
    owners: Option<Arc<dyn Owners>>,
    /// Where the owner of a held call's interaction comes back.
    owned: mpsc::Sender<Control>,
    /// Held calls whose interaction's owner is being looked up.
    resolving: std::collections::HashSet<ServerTxId>,
    /// Registrations shared with other nodes, on a shared store.
    sharing: Option<Sharing>,
}

/// Datagrams read in one go before the core's output is flushed.
const UDP_BATCH: usize = 64;

/// Messages from connections taken in one go before the core's output is flushed (a read's
/// batch is taken whole): few enough that their answers fit a connection's write queue.
const INBOUND_BATCH: usize = 64;

impl CoreLoop {
    async fn run(mut self, shutdown: CancellationToken) {
        let mut buf = vec![0u8; self.max_message_size + 1];
        let udp = self.udp.clone();
        let mut sweep = tokio::time::interval(Duration::from_secs(1));
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let deadline = self.core.poll_timeout();
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                received = recv_udp(udp.as_deref(), &mut buf) => {
                    if let Ok((len, from)) = received {
                        self.on_datagram(&buf[..len], from);
                        // Take what else is queued before flushing: fewer wake-ups under load.
                        for _ in 1..UDP_BATCH {
                            match udp.as_deref().map(|s| s.try_recv_from(&mut buf)) {
                                Some(Ok((len, from))) => self.on_datagram(&buf[..len], from),
                                _ => break,
                            }
                        }
                    }
                }
                Some(message) = self.inbound.recv() => {
                    let mut taken = self.on_inbound(message).await;
                    // Take what else is queued before flushing, as for datagrams.
                    while taken < INBOUND_BATCH {
                        let Ok(message) = self.inbound.try_recv() else { break };
                        taken += self.on_inbound(message).await;
                    }
                }
                Some(request) = self.control.recv() => self.on_control(request),
                Some(update) = elsewhere(self.sharing.as_mut()) => self.on_elsewhere(update),
                Some(event) = self.media_events.recv() => match event {
                    MediaEvent::Dtmf { leg, digit, duration_ms } => {
                        self.core.media_dtmf(leg.0, digit, duration_ms);
                    }
                },
                _ = sleep => self.core.handle_timeout(Instant::now()),
                _ = sweep.tick() => {
                    let now = Instant::now();
                    for leg in self.media.sweep(now) {
                        self.core.media_inactive(now, leg.0);
                    }
                    self.metrics.publish(&self.core.stats());
                    let held = CoreHeld {
                        bridges: self.b2bua.waiting(),
                        ..self.core.held()
                    };
                    self.metrics.publish(&held);
                    self.metrics.publish(&*self.counters);
                    self.metrics.part::<MediaMetrics>().publish(self.media.open_legs());
                    for (refusal, n) in self.core.take_source_refusals() {
                        self.metrics.refused_by(refusal.reason(), n);
                    }
                    let auth = self.core.registrar().auth_counts();
                    crate::sip::metrics::add_auth(&self.metrics, &auth, &self.auth_published);
                    self.auth_published = auth;
                }
            }
            // A message that cannot leave fails its transaction at once (a transport error),
            // which makes more to deliver and send: a second round takes it.
            for _ in 0..2 {
                self.deliver_events();
                self.apply_media();
                self.flush().await;
            }
            self.in_core.clear();
            self.share_registrations();
        }
    }

    fn on_control(&mut self, request: Control) {
        let now = Instant::now();
        match request {
            Control::Dial {
                dial,
                events,
                reply,
            } => {
                let placed = self.core.dial(now, *dial).map(|placed| {
                    self.app_calls.insert(placed.call, events);
                    DialedCall {
                        call: placed.call,
                        media: SocketAddr::new(self.media_ip, placed.local_port),
                    }
                });
                let _ = reply.send(placed);
            }
            Control::Hangup(call) => self.core.hangup_app_call(now, call),
            Control::Subscribe(to) => self.incoming = Some(to),
            Control::Accept {
                incoming,
                events,
                reply,
            } => {
                let accepted = self
                    .core
                    .accept_incoming(now, incoming)
                    .map(|(placed, codec)| {
                        self.app_calls.insert(placed.call, events);
                        let media = SocketAddr::new(self.media_ip, placed.local_port);
                        let call = DialedCall {
                            call: placed.call,
                            media,
                        };
                        (call, codec)
                    });
                let _ = reply.send(accepted);
            }
            Control::Reject {
                incoming,
                code,
                why,
            } => self.core.reject_incoming(now, incoming, code, &why),
            Control::Bridge {
                customer,
                agent,
                reply,
            } => {
                let _ = reply.send(self.core.bridge_app_calls(customer, agent));
            }
            Control::Record {
                customer,
                agent,
                name,
                reply,
            } => {
                let _ = reply.send(self.core.record_app_calls(customer, agent, &name));
            }
            Control::Owned { call, owner } => self.owned(call, owner),
        }
    }

    /// A call that names an interaction: to the application here, or, when other nodes may
    /// own it, first to the lookup of its owner (off this task: it may ask the store).
    fn offer_call(&mut self, call: IncomingCall) {
        let Some(owners) = self.owners.clone() else {
            return self.offer_incoming(IncomingEvent::Call(call));
        };
        self.resolving.insert(call.incoming);
        let back = self.owned.clone();
        tokio::spawn(async move {
            let id = crate::bridge::InteractionId(call.interaction.clone());
            let owner = owners.owner_sip(&id).await;
            let _ = back.send(Control::Owned { call, owner }).await;
        });
    }

    /// The owner of a held call's interaction is known: another node gets the call with a
    /// redirect (RFC 3261 §21.3.3), otherwise the application here. A call that ended
    /// meanwhile (its caller cancelled) is forgotten.
    fn owned(&mut self, call: IncomingCall, owner: Option<rsipstack::sip::Uri>) {
        if !self.resolving.remove(&call.incoming) {
            return;
        }
        match owner {
            Some(owner) => {
                tracing::info!(interaction = %call.interaction, %owner, "call redirected to the interaction's owner");
                self.core
                    .redirect_incoming(Instant::now(), call.incoming, &owner);
            }
            None => self.offer_incoming(IncomingEvent::Call(call)),
        }
    }

    /// Hands what the registrar changed to the sharing task.
    fn share_registrations(&mut self) {
        let Some(sharing) = &self.sharing else {
            return;
        };
        let changes = self.core.registrar_mut().take_changes();
        if !changes.is_empty() && sharing.changes.try_send(changes).is_err() {
            tracing::warn!("registrations: sharing backlogged; a change was not shared");
        }
    }

    /// What other nodes' registrars did.
    fn on_elsewhere(&mut self, update: Elsewhere) {
        let registrar = self.core.registrar_mut();
        match update {
            Elsewhere::All(all) => registrar.replace_elsewhere(all),
            Elsewhere::Aor(aor, bindings) => registrar.set_elsewhere(&aor, bindings),
            Elsewhere::Forget(aor, contact) => registrar.forget(&aor, contact.as_deref()),
        }
    }

    /// Hands a call coming in to the application; without one it is refused with 480.
    fn offer_incoming(&mut self, call: IncomingEvent) {
        let incoming = call.incoming();
        let taken = self
            .incoming
            .as_ref()
            .is_some_and(|to| to.send(call).is_ok());
        if !taken {
            let now = Instant::now();
            self.core
                .reject_incoming(now, incoming, 480, "No Interactions Here");
        }
    }

    /// Hands the core's events to the B2BUA, then to whoever placed or accepted the call; the
    /// core names the application call of each, so the driver keeps no copy of its dialogs.
    fn deliver_events(&mut self) {
        while let Some(event) = self.core.poll_event() {
            if self.b2bua.handle(&mut self.core, Instant::now(), &event) {
                continue;
            }
            match for_calls(&self.core, event) {
                Some(ForCalls::Incoming(IncomingEvent::Cancelled(incoming))) => {
                    // Cancelled while its owner was looked up: the application never saw it.
                    if self.resolving.remove(&incoming) {
                        continue;
                    }
                    if let Some(to) = &self.incoming {
                        let _ = to.send(IncomingEvent::Cancelled(incoming));
                    }
                }
                Some(ForCalls::Incoming(IncomingEvent::Call(call))) => self.offer_call(call),
                Some(ForCalls::Incoming(waiting)) => self.offer_incoming(waiting),
                Some(ForCalls::Call(call, out)) => {
                    let last = matches!(
                        out,
                        SipCallEvent::Failed { .. } | SipCallEvent::Ended { .. }
                    );
                    let Some(events) = self.app_calls.get(&call) else {
                        continue;
                    };
                    let _ = events.send(out);
                    if last {
                        self.app_calls.remove(&call);
                    }
                }
                None => {}
            }
        }
    }

    fn on_datagram(&mut self, bytes: &[u8], from: SocketAddr) {
        let now = Instant::now();
        let peer = Peer::udp(from);
        if bytes.len() > self.max_message_size {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        match wire::parse_datagram(bytes) {
            Ok(message) => self.core.handle_message(now, message, peer),
            Err(rejection) => {
                tracing::debug!(%from, reason = %rejection.reason, "SIP datagram refused");
                match rejection.reply {
                    Some(reply) => {
                        self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                        self.core.send_stateless(peer, Bytes::from(reply));
                    }
                    None if rejection.error != wire::WireError::KeepAlive => {
                        self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    None => {}
                }
            }
        }
    }

    /// A message that came on a connection.
    async fn on_stream_message(&mut self, mut message: wire::Incoming, peer: Peer) {
        if matches!(peer.transport, TransportKind::Ws | TransportKind::Wss)
            && let Some(edge) = &mut self.edge
        {
            adapt_from_browser(edge, &mut message).await;
        }
        if peer.transport == TransportKind::Tls {
            secure_from_tls(&mut self.srtp, &mut message).await;
        }
        self.core.handle_message(Instant::now(), message, peer)
    }

    /// What a connection task said; how many messages it carried.
    async fn on_inbound(&mut self, message: Inbound) -> usize {
        match message {
            Inbound::Opened(id, peer, writer) => {
                self.connections.insert(id, writer);
                self.by_addr.insert((peer.transport, peer.addr), id);
            }
            Inbound::Message(message, peer) => {
                self.on_stream_message(*message, peer).await;
                return 1;
            }
            Inbound::Messages(messages, peer, in_core) => {
                let n = messages.len();
                for message in messages {
                    self.on_stream_message(message, peer).await;
                }
                // Their answers are queued at the next flush; the connection may hand over
                // more after that.
                self.in_core.push(in_core);
                return n;
            }
            Inbound::Closed(id, peer) => {
                if let Some(edge) = &mut self.edge {
                    edge.connection_closed(peer).await;
                }
                self.connections.remove(&id);
                let key = (peer.transport, peer.addr);
                if self.by_addr.get(&key) == Some(&id) {
                    self.by_addr.remove(&key);
                }
            }
            Inbound::Failed(peer) => {
                let peer = Peer::on(peer.transport, peer.addr, None);
                self.core.transport_error(Instant::now(), peer);
            }
        }
        0
    }

    /// Carries out what the core asked of the media engine; a leg that cannot open ends its call.
    fn apply_media(&mut self) {
        while let Some(command) = self.core.poll_media() {
            match command {
                MediaCommand::Open {
                    port,
                    remote,
                    signalling,
                } => {
                    if let Err(e) =
                        self.media
                            .open(port, remote, Learning::for_peer(remote, signalling))
                    {
                        tracing::warn!(port, "cannot open media leg: {e}");
                        self.core.media_failed(Instant::now(), port);
                    }
                }
                MediaCommand::Echo { port } => self.media.set_route(LegPort(port), Route::Echo),
                MediaCommand::SetRemote { port, remote } => {
                    self.media.set_remote(LegPort(port), remote)
                }
                MediaCommand::Watch { port, enabled } => self.media.watch(LegPort(port), enabled),
                MediaCommand::Bridge {
                    a,
                    b,
                    transcode,
                    telephone_event: (a_pt, b_pt),
                } => {
                    let a_to_b = Forwarding {
                        transcode,
                        telephone_event: a_pt.zip(b_pt),
                    };
                    let b_to_a = Forwarding {
                        transcode: transcode.map(|(from, to)| (to, from)),
                        telephone_event: b_pt.zip(a_pt),
                    };
                    self.media.bridge(LegPort(a), LegPort(b), a_to_b, b_to_a);
                }
                MediaCommand::DetectDtmf { port, payload_type } => {
                    self.media.detect_dtmf(LegPort(port), payload_type);
                }
                MediaCommand::Record {
                    customer,
                    agent,
                    call_id,
                } => {
                    let Some(dir) = &self.recording_dir else {
                        continue;
                    };
                    // A recording that cannot start is logged and counted; the call goes on.
                    if let Err(e) =
                        self.media
                            .record(LegPort(customer), LegPort(agent), &call_id, dir)
                    {
                        tracing::warn!(%call_id, "recording not started: {e}");
                        self.media
                            .recorder_counters()
                            .errors
                            .fetch_add(1, Ordering::Relaxed);
                    }
                }
                MediaCommand::Close { port } => {
                    if let Some(stats) = self.media.close(LegPort(port)) {
                        tracing::debug!(port, ?stats, "media leg closed");
                    }
                }
            }
        }
    }

    async fn flush(&mut self) {
        while let Some(Transmit { to, payload }) = self.core.poll_transmit() {
            match to.transport {
                TransportKind::Udp => {
                    let Some(udp) = &self.udp else { continue };
                    match udp.try_send_to(&payload, to.addr) {
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            let _ = udp.send_to(&payload, to.addr).await;
                        }
                        Err(e) => tracing::debug!(to = %to.addr, "UDP send failed: {e}"),
                    }
                }
                TransportKind::Tcp
                | TransportKind::Tls
                | TransportKind::Ws
                | TransportKind::Wss => {
                    let known = to
                        .conn
                        .filter(|c| self.connections.contains_key(c))
                        .or_else(|| self.by_addr.get(&(to.transport, to.addr)).copied());
                    let writer = match known.and_then(|c| self.connections.get(&c)) {
                        Some(writer) => writer.clone(),
                        None => match self.open_connection(to) {
                            Some(writer) => writer,
                            None => continue,
                        },
                    };
                    let payload = match (&mut self.edge, to.transport) {
                        (Some(edge), TransportKind::Ws | TransportKind::Wss) => {
                            match edge.outgoing(to, payload).await {
                                Some(payload) => payload,
                                None => {
                                    let to = Peer::on(to.transport, to.addr, None);
                                    self.core.transport_error(Instant::now(), to);
                                    continue;
                                }
                            }
                        }
                        (_, TransportKind::Tls) => secure_to_tls(&mut self.srtp, payload),
                        _ => payload,
                    };
                    // A full queue means a peer that does not read: drop rather than stall SIP.
                    if writer.try_send(payload).is_err() {
                        tracing::debug!(to = %to.addr, "SIP connection backlogged; message dropped");
                    }
                }
            }
        }
    }

    /// Opens a connection for a message to a peer we have none with: TCP, or TLS verified
    /// against our roots. A browser's WebSocket cannot be opened from here; neither can TLS
    /// without roots to verify with. Requests that cannot leave fail at once (503).
    fn open_connection(&mut self, to: Peer) -> Option<mpsc::Sender<Bytes>> {
        let tls = match to.transport {
            TransportKind::Tcp => None,
            TransportKind::Tls => {
                let Some(connector) = self.tls_client.clone() else {
                    tracing::warn!(to = %to.addr, "no TLS roots (sip.tls.ca_file) to verify the peer with; nothing is sent");
                    self.core
                        .transport_error(Instant::now(), Peer::on(to.transport, to.addr, None));
                    return None;
                };
                Some((connector, self.server_name(to.addr)))
            }
            TransportKind::Udp | TransportKind::Ws | TransportKind::Wss => {
                tracing::debug!(to = %to.addr, transport = to.via_transport(), "no connection for message");
                self.core
                    .transport_error(Instant::now(), Peer::on(to.transport, to.addr, None));
                return None;
            }
        };
        let (id, writer) = connection::connect(to, tls, &self.links);
        self.connections.insert(id, writer.clone());
        self.by_addr.insert((to.transport, to.addr), id);
        Some(writer)
    }

    /// The name a TLS peer's certificate must carry: its trunk's `tls_server_name`, else its
    /// IP address.
    fn server_name(&self, addr: SocketAddr) -> rustls::pki_types::ServerName<'static> {
        let configured = self
            .trunks
            .iter()
            .find(|t| t.matches(addr))
            .and_then(|t| t.tls_server_name.clone())
            .and_then(|name| rustls::pki_types::ServerName::try_from(name).ok());
        configured.unwrap_or(rustls::pki_types::ServerName::IpAddress(addr.ip().into()))
    }
}

/// A message from a browser on WebSocket, as the core should read it: a WebRTC answer to our
/// INVITE becomes the plain answer of its media bridge; a BYE ends the browser's peer.
async fn adapt_from_browser(edge: &mut Edge, message: &mut wire::Incoming) {
    match message {
        wire::Incoming::Response(response, meta) if meta.cseq_method == Method::Invite => {
            let code = response.status_code.code();
            if let Some(plain) = edge
                .invite_response(&meta.call_id, code, &response.body)
                .await
            {
                response.body = plain.into_bytes();
            }
        }
        wire::Incoming::Request(request, meta) if request.method == Method::Bye => {
            edge.incoming_bye(&meta.call_id).await;
        }
        _ => {}
    }
}

/// A message that came in over TLS: an INVITE offering SRTP is read by the core as plain RTP
/// through the SRTP relay; a BYE stops the relay.
async fn secure_from_tls(srtp: &mut SrtpEdge, message: &mut wire::Incoming) {
    if let wire::Incoming::Request(request, meta) = message {
        if request.method == Method::Invite && !request.body.is_empty() {
            if let Some(plain) = srtp.incoming_invite(&meta.call_id, &request.body).await {
                request.body = plain.into_bytes();
            }
        } else if request.method == Method::Bye {
            srtp.end(&meta.call_id);
        }
    }
}

/// A message leaving over TLS: our answer to an SRTP offer is made secure; a BYE or a failed
/// INVITE stops the call's relay.
fn secure_to_tls(srtp: &mut SrtpEdge, payload: Bytes) -> Bytes {
    use super::webrtc_edge::Message;
    let Some(message) = Message::split(&payload) else {
        return payload;
    };
    let Some(call_id) = message.call_id() else {
        return payload;
    };
    match message.method() {
        Some("BYE") => srtp.end(call_id),
        Some(_) => {}
        None => {
            let invite = message
                .header("CSeq", None)
                .is_some_and(|c| c.ends_with("INVITE"));
            let code = message
                .head
                .split(' ')
                .nth(1)
                .and_then(|c| c.parse::<u16>().ok());
            if let (true, Some(code)) = (invite, code)
                && let Some(secure) = srtp.outgoing_response(call_id, code, message.body)
            {
                return message.with_body(&secure);
            }
        }
    }
    payload
}

async fn elsewhere(sharing: Option<&mut Sharing>) -> Option<Elsewhere> {
    match sharing {
        Some(sharing) => sharing.elsewhere.recv().await,
        None => std::future::pending().await,
    }
}

async fn recv_udp(socket: Option<&UdpSocket>, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
    match socket {
        Some(socket) => socket.recv_from(buf).await,
        None => std::future::pending().await,
    }
}
