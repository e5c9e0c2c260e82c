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

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::core::{
    AppDial, AppLeg, CallRef, CoreConfig, CoreEvent, DialError, MediaCommand, SipCore,
};
use super::dialog::DialogId;
use super::peer::{ConnId, Peer, Transmit, TransportKind};
use super::registrar::Registrar;
use super::sdp::Codec;
use super::transaction::ServerTxId;
use super::wire::{self, Frame, Incoming};
use crate::config::Config;
use crate::media::engine::{Forwarding, LegId, MediaEngine, MediaEvent, MediaSettings, Route};
use crate::media::latch::{LatchConfig, Learning};
use crate::media::ports::PortPool;
use crate::metrics::Metrics;

/// Counters of what the transport refused, for `/metrics`.
#[derive(Debug, Default)]
pub struct TransportCounters {
    /// Messages dropped without an answer (unparsable, not UTF-8, responses we cannot read).
    pub dropped: AtomicU64,
    /// Requests answered by the wire layer itself (400, 501, 505 …).
    pub rejected: AtomicU64,
    /// TCP connections refused over the limit.
    pub refused_connections: AtomicU64,
}

/// A running SIP endpoint.
pub struct SipHandle {
    pub udp_addr: Option<SocketAddr>,
    pub tcp_addr: Option<SocketAddr>,
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
pub struct DialedCall {
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
}

/// An INVITE that names an interaction, waiting for [`SipControl::accept`] or
/// [`SipControl::reject`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingCall {
    pub incoming: ServerTxId,
    pub interaction: String,
    /// The caller's user part (a phone number from a trunk).
    pub caller: String,
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
    pub async fn dial(
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
    pub async fn hangup(&self, call: CallRef) {
        let _ = self.tx.send(Control::Hangup(call)).await;
    }

    /// Incoming calls for interactions are sent to `to`; without a subscriber they get 480.
    pub async fn subscribe(&self, to: mpsc::UnboundedSender<IncomingEvent>) {
        let _ = self.tx.send(Control::Subscribe(to)).await;
    }

    /// Answers an incoming call; its audio is at the returned address in the returned codec,
    /// and its events go to `events`.
    pub async fn accept(
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
    pub async fn reject(&self, incoming: ServerTxId, code: u16, why: &str) {
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
    pub async fn bridge(&self, customer: CallRef, agent: CallRef) -> Result<(), DialError> {
        self.ask(|reply| Control::Bridge {
            customer,
            agent,
            reply,
        })
        .await
    }

    /// Records answered calls into `sip.recording_dir` as `<name>.wav` (see
    /// [`SipCore::record_app_calls`]); without a recording directory nothing is written.
    pub async fn record(
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
    pub async fn join(self) {
        let _ = self.task.await;
    }
}

/// What connection tasks tell the core task.
enum Inbound {
    Opened(ConnId, SocketAddr, mpsc::Sender<Bytes>),
    Message(Box<Incoming>, Peer),
    Closed(ConnId, SocketAddr),
}

/// Binds the configured transports and starts the core. With port 0, UDP picks the port and TCP
/// binds the same one.
pub async fn start(
    config: &Config,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> io::Result<SipHandle> {
    let sip = &config.sip;
    let mut listen = sip.listen;
    let udp = if sip.transports.contains(&crate::config::TransportKind::Udp) {
        let socket = bind_udp(listen)?;
        listen = socket.local_addr()?;
        Some(Arc::new(socket))
    } else {
        None
    };
    let tcp = if sip.transports.contains(&crate::config::TransportKind::Tcp) {
        let listener = TcpListener::bind(listen).await?;
        listen = listener.local_addr()?;
        Some(listener)
    } else {
        None
    };
    let advertised = sip.public_addr.unwrap_or(listen);
    let now = Instant::now();
    let registrar = Registrar::with_random_secret(&config.registrar, now);
    let ports = PortPool::shuffled(
        config.media.rtp_port_min,
        config.media.rtp_port_max,
        rand::random(),
    );
    let core = SipCore::new(
        CoreConfig::from_config(config, advertised),
        registrar,
        ports,
    );
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
    let (control_tx, control_rx) = mpsc::channel(1024);
    let (inbound_tx, inbound_rx) = mpsc::channel(4096);
    let udp_addr = udp.as_ref().map(|s| s.local_addr()).transpose()?;
    let tcp_addr = tcp.as_ref().map(|l| l.local_addr()).transpose()?;
    if let Some(listener) = tcp {
        tokio::spawn(accept_loop(
            listener,
            inbound_tx.clone(),
            counters.clone(),
            sip.max_message_size,
            sip.max_tcp_connections,
            Duration::from_secs(sip.tcp_idle_timeout_s),
            shutdown.clone(),
        ));
    }
    drop(inbound_tx);
    let task = tokio::spawn(
        CoreLoop {
            core,
            media,
            media_events,
            recording_dir: sip.recording_dir.as_ref().map(std::path::PathBuf::from),
            metrics,
            udp,
            inbound: inbound_rx,
            connections: HashMap::new(),
            by_addr: HashMap::new(),
            counters: counters.clone(),
            max_message_size: sip.max_message_size,
            control: control_rx,
            media_ip: listen.ip(),
            app_calls: HashMap::new(),
            app_dialogs: HashMap::new(),
            incoming: None,
        }
        .run(shutdown),
    );
    tracing::info!(?udp_addr, ?tcp_addr, %advertised, "SIP listening");
    Ok(SipHandle {
        udp_addr,
        tcp_addr,
        counters,
        control: SipControl { tx: control_tx },
        task,
    })
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
    media: MediaEngine,
    media_events: mpsc::Receiver<MediaEvent>,
    recording_dir: Option<std::path::PathBuf>,
    metrics: Arc<Metrics>,
    udp: Option<Arc<UdpSocket>>,
    inbound: mpsc::Receiver<Inbound>,
    connections: HashMap<ConnId, mpsc::Sender<Bytes>>,
    by_addr: HashMap<SocketAddr, ConnId>,
    counters: Arc<TransportCounters>,
    max_message_size: usize,
    control: mpsc::Receiver<Control>,
    /// Where local media legs are bound.
    media_ip: std::net::IpAddr,
    /// Whom to tell about each application call.
    app_calls: HashMap<CallRef, mpsc::UnboundedSender<SipCallEvent>>,
    app_dialogs: HashMap<DialogId, CallRef>,
    /// Where incoming calls for interactions go.
    incoming: Option<mpsc::UnboundedSender<IncomingEvent>>,
}

/// Datagrams read in one go before the core's output is flushed.
const UDP_BATCH: usize = 64;

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
                Some(message) = self.inbound.recv() => self.on_inbound(message),
                Some(request) = self.control.recv() => self.on_control(request),
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
                    self.metrics.set_sip(
                        &self.core.stats(),
                        self.counters.dropped.load(Ordering::Relaxed),
                        self.counters.rejected.load(Ordering::Relaxed),
                        self.media.open_legs(),
                    );
                    self.metrics.set_sip_held(&self.core.held());
                }
            }
            self.deliver_events();
            self.apply_media();
            self.flush().await;
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
                let accepted =
                    self.core
                        .accept_incoming(now, incoming)
                        .map(|(placed, codec, dialog)| {
                            self.app_calls.insert(placed.call, events);
                            self.app_dialogs.insert(dialog, placed.call);
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
        }
    }

    /// Hands a call coming in to the application; without one it is refused with 480.
    fn offer_incoming(&mut self, incoming: ServerTxId, call: IncomingEvent) {
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

    /// Hands the core's events to whoever placed the call; the rest are logged. Draining them
    /// also lets the core bridge and free application calls.
    fn deliver_events(&mut self) {
        while let Some(event) = self.core.poll_event() {
            let (call, out) = match event {
                CoreEvent::Incoming {
                    incoming,
                    interaction,
                    caller,
                    token,
                } => {
                    let call = IncomingEvent::Call(IncomingCall {
                        incoming,
                        interaction,
                        caller,
                        token,
                    });
                    self.offer_incoming(incoming, call);
                    continue;
                }
                CoreEvent::ServiceCall {
                    incoming,
                    number,
                    caller,
                } => {
                    let call = IncomingEvent::ServiceCall {
                        incoming,
                        number,
                        caller,
                    };
                    self.offer_incoming(incoming, call);
                    continue;
                }
                CoreEvent::IncomingCancelled { incoming } => {
                    if let Some(to) = &self.incoming {
                        let _ = to.send(IncomingEvent::Cancelled(incoming));
                    }
                    continue;
                }
                CoreEvent::Progress { call, code } => {
                    (Some(call), SipCallEvent::Progress { call, code })
                }
                CoreEvent::Answered { call, dialog } => {
                    let codec = self.core.app_call_codec(call).unwrap_or(Codec::Pcmu);
                    if self.app_calls.contains_key(&call) {
                        self.app_dialogs.insert(dialog, call);
                    }
                    (Some(call), SipCallEvent::Answered { call, codec })
                }
                CoreEvent::Failed { call, code } => {
                    (Some(call), SipCallEvent::Failed { call, code })
                }
                CoreEvent::Ended { dialog, by_peer } => {
                    let call = self.app_dialogs.remove(&dialog);
                    let Some(call) = call else { continue };
                    (Some(call), SipCallEvent::Ended { call, by_peer })
                }
                CoreEvent::Dtmf {
                    dialog,
                    digit,
                    duration_ms,
                } => {
                    let Some(call) = self.app_dialogs.get(&dialog).copied() else {
                        continue;
                    };
                    (
                        Some(call),
                        SipCallEvent::Dtmf {
                            call,
                            digit,
                            duration_ms,
                        },
                    )
                }
            };
            let Some(call) = call else { continue };
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

    fn on_inbound(&mut self, message: Inbound) {
        match message {
            Inbound::Opened(id, addr, writer) => {
                self.connections.insert(id, writer);
                self.by_addr.insert(addr, id);
            }
            Inbound::Message(message, peer) => {
                self.core.handle_message(Instant::now(), *message, peer)
            }
            Inbound::Closed(id, addr) => {
                self.connections.remove(&id);
                if self.by_addr.get(&addr) == Some(&id) {
                    self.by_addr.remove(&addr);
                }
            }
        }
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
                MediaCommand::Echo { port } => self.media.set_route(LegId(port), Route::Echo),
                MediaCommand::SetRemote { port, remote } => {
                    self.media.set_remote(LegId(port), remote)
                }
                MediaCommand::Watch { port, enabled } => self.media.watch(LegId(port), enabled),
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
                    self.media.bridge(LegId(a), LegId(b), a_to_b, b_to_a);
                }
                MediaCommand::DetectDtmf { port, payload_type } => {
                    self.media.detect_dtmf(LegId(port), payload_type);
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
                    if let Err(e) = self
                        .media
                        .record(LegId(customer), LegId(agent), &call_id, dir)
                    {
                        tracing::warn!(%call_id, "recording not started: {e}");
                        self.media
                            .recorder_counters()
                            .errors
                            .fetch_add(1, Ordering::Relaxed);
                    }
                }
                MediaCommand::Close { port } => {
                    if let Some(stats) = self.media.close(LegId(port)) {
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
                    let conn = to.conn.or_else(|| self.by_addr.get(&to.addr).copied());
                    let writer = conn.and_then(|c| self.connections.get(&c));
                    match writer {
                        // A full queue means a peer that does not read: drop rather than stall SIP.
                        Some(writer) => {
                            if writer.try_send(payload).is_err() {
                                tracing::debug!(to = %to.addr, "TCP connection backlogged; message dropped");
                            }
                        }
                        None => tracing::debug!(to = %to.addr, "no TCP connection for message"),
                    }
                }
            }
        }
    }
}

async fn recv_udp(socket: Option<&UdpSocket>, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
    match socket {
        Some(socket) => socket.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

async fn accept_loop(
    listener: TcpListener,
    inbound: mpsc::Sender<Inbound>,
    counters: Arc<TransportCounters>,
    max_message_size: usize,
    max_connections: usize,
    idle_timeout: Duration,
    shutdown: CancellationToken,
) {
    let open = Arc::new(AtomicU64::new(0));
    let mut next_id = 1u64;
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, addr)) = accepted else {
            continue;
        };
        if open.load(Ordering::Relaxed) >= max_connections as u64 {
            counters.refused_connections.fetch_add(1, Ordering::Relaxed);
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        open.fetch_add(1, Ordering::Relaxed);
        let id = ConnId(next_id);
        next_id += 1;
        let connection = Connection {
            id,
            addr,
            inbound: inbound.clone(),
            counters: counters.clone(),
            max_message_size,
            idle_timeout,
        };
        let open = open.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            connection.run(stream, shutdown).await;
            open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

struct Connection {
    id: ConnId,
    addr: SocketAddr,
    inbound: mpsc::Sender<Inbound>,
    counters: Arc<TransportCounters>,
    max_message_size: usize,
    idle_timeout: Duration,
}

impl Connection {
    async fn run(self, stream: TcpStream, shutdown: CancellationToken) {
        let (writer_tx, mut writer_rx) = mpsc::channel::<Bytes>(256);
        if self
            .inbound
            .send(Inbound::Opened(self.id, self.addr, writer_tx))
            .await
            .is_err()
        {
            return;
        }
        let (mut reader, mut writer) = stream.into_split();
        let mut buf = BytesMut::with_capacity(8192);
        let peer = Peer::tcp(self.addr, Some(self.id));
        let mut idle = Box::pin(tokio::time::sleep(self.idle_timeout));
        'conn: loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = &mut idle => {
                    tracing::debug!(addr = %self.addr, "closing idle SIP connection");
                    break;
                }
                Some(bytes) = writer_rx.recv() => {
                    if writer.write_all(&bytes).await.is_err() {
                        break;
                    }
                    idle.as_mut().reset((Instant::now() + self.idle_timeout).into());
                }
                read = reader.read_buf(&mut buf) => {
                    match read {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                    idle.as_mut().reset((Instant::now() + self.idle_timeout).into());
                    loop {
                        match wire::frame_stream(&buf, self.max_message_size) {
                            Ok(Frame::Incomplete) => break,
                            Ok(Frame::KeepAlive { skip, pong }) => {
                                let _ = buf.split_to(skip);
                                // RFC 5626 §3.5.1: a double-CRLF ping gets a single-CRLF pong.
                                if pong && writer.write_all(b"\r\n").await.is_err() {
                                    break 'conn;
                                }
                            }
                            Ok(Frame::Message { len }) => {
                                let message = buf.split_to(len);
                                match wire::parse_stream_message(&message) {
                                    Ok(incoming) => {
                                        if self.inbound.send(Inbound::Message(Box::new(incoming), peer)).await.is_err() {
                                            break 'conn;
                                        }
                                    }
                                    Err(rejection) => {
                                        if !self.refuse(&mut writer, rejection).await {
                                            break 'conn;
                                        }
                                    }
                                }
                            }
                            Err(rejection) => {
                                // The stream cannot be resynchronised: answer if we can, then close.
                                self.refuse(&mut writer, rejection).await;
                                break 'conn;
                            }
                        }
                    }
                }
            }
        }
        let _ = self.inbound.send(Inbound::Closed(self.id, self.addr)).await;
    }

    /// Sends the wire layer's reply, if any; `false` when the connection broke.
    async fn refuse(
        &self,
        writer: &mut tokio::net::tcp::OwnedWriteHalf,
        rejection: wire::Rejection,
    ) -> bool {
        tracing::debug!(addr = %self.addr, reason = %rejection.reason, "SIP message refused");
        match rejection.reply {
            Some(reply) => {
                self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                writer.write_all(&reply).await.is_ok()
            }
            None => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                true
            }
        }
    }
}
