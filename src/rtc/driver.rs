//! The tokio side of WebRTC: the shared socket, the reader that demuxes it, one task per peer.
//!
//! - The reader task owns the receive side of the `[rtc] listen` socket and the [`Demux`]; it
//!   hands each datagram to its peer's bounded channel with `try_send` (a full queue drops the
//!   datagram, counted, as a congested network would) and never awaits a peer. Each wake reads
//!   what the socket holds, up to [`READ_BATCH`] datagrams, into one shared buffer: a datagram
//!   travels to its peer as a slice of it ([`Bytes`]), neither copied nor allocated alone.
//! - A peer task owns its [`PeerConnection`] and, once bridged, its plain-RTP socket. When the
//!   SIP leg it is bridged to is a media-engine leg of this process (as it is in the gateway),
//!   the RTP goes both ways in memory ([`local`]): the leg's reactor and this task hand each
//!   other the packets the socket would have carried. It sends on the
//!   shared socket with `try_send_to`. Media and keyframe requests for a connected peer go to
//!   that peer's channel, with `try_send` too. A woken task takes everything already queued
//!   for it (up to [`PEER_BATCH`] messages or bridge datagrams) before it polls the peer's
//!   output, so a burst costs one wake and one pass over str0m's output.
//! - A watcher per peer awaits the task's end, normal or panic (tokio contains task panics),
//!   removes the peer from both maps and reports [`RtcEvent::Closed`].
//!
//! Control calls travel on the peer's channel with a oneshot for the answer, so they are
//! ordered with the peer's media and never touch its state from outside.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use str0m::format::Codec;
use str0m::media::{KeyframeRequestKind, MediaKind};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::demux::Demux;
use super::peer::{Input, MediaIn, Output, PeerConfig, PeerConnection, PeerEvent};
use super::rtp_bridge::{PeerAudio, RtpBridge};
use super::{
    CloseReason, G711, MediaSpec, PeerId, RtcCounters, RtcError, RtcEvent, RtcStats, bump,
    transcode,
};
use crate::config;
use crate::media::local;

/// Datagrams and messages a peer may have waiting; about a second of audio and video.
const PEER_QUEUE: usize = 256;
/// Events the receiver may fall behind by before peers wait for it.
const EVENTS_CAPACITY: usize = 1024;
/// Larger than any datagram a WebRTC client sends (str0m's MTU is below 1500).
const MAX_DATAGRAM: usize = 2048;
/// Datagrams the reader takes from the shared socket per wake before it looks at its commands.
const READ_BATCH: usize = 64;
/// The reader's buffer grows by this much at a time; datagrams are slices of it, and a chunk
/// is freed (or reused) once every peer has let go of its slices. A queued datagram can keep
/// its whole chunk alive, so the chunk is small: a peer's full queue pins at most
/// [`PEER_QUEUE`] chunks (4 MiB), and in the usual case, queues drained as they fill, a few.
const READ_CHUNK: usize = 16 * 1024;
/// Messages and bridge datagrams a peer task takes per wake before it polls its output.
const PEER_BATCH: usize = 32;
/// Kernel buffers of the shared socket. Every peer's media arrives on it, so the default
/// (~200 kB, some 200 small datagrams: about 10 ms of 300 audio legs) overflows whenever the
/// reader is off the CPU for longer; 4 MB holds a few hundred ms. The kernel caps it at
/// `net.core.rmem_max` / `wmem_max`.
const SOCKET_BUFFER: usize = 4 << 20;

enum PeerMsg {
    Datagram {
        source: SocketAddr,
        at: Instant,
        /// A slice of the reader's shared buffer.
        data: Bytes,
    },
    /// Media from the peer this one is connected to.
    Forward(MediaIn),
    /// The connected peer's client asked for a keyframe of the video we forward it.
    KeyframeRequest(KeyframeRequestKind),
    /// RTP for the bridge from a media-engine leg of this process, handed over in memory.
    Rtp {
        source: SocketAddr,
        data: Vec<u8>,
    },
    Command(Command),
}

enum Command {
    AcceptAnswer(String, oneshot::Sender<Result<(), RtcError>>),
    SetVideo(bool, oneshot::Sender<Result<String, RtcError>>),
    Link(mpsc::Sender<PeerMsg>, oneshot::Sender<()>),
    BridgeRtp(
        SocketAddr,
        G711,
        oneshot::Sender<Result<SocketAddr, RtcError>>,
    ),
    Close,
    #[cfg(test)]
    Panic,
}

enum DemuxCmd {
    Add(PeerId, String, mpsc::Sender<PeerMsg>),
    Remove(PeerId),
}

struct Inner {
    socket: Arc<UdpSocket>,
    local_addr: SocketAddr,
    peer_config: PeerConfig,
    ice_servers: Vec<String>,
    max_peers: usize,
    next_id: AtomicU64,
    peers: Mutex<HashMap<PeerId, mpsc::Sender<PeerMsg>>>,
    demux: mpsc::UnboundedSender<DemuxCmd>,
    events: mpsc::Sender<RtcEvent>,
    counters: Arc<RtcCounters>,
    shutdown: CancellationToken,
}

/// Cancels every task when the last [`RtcService`] clone goes.
struct ShutdownOnDrop(CancellationToken);

impl Drop for ShutdownOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// The handle to the WebRTC side; cheap to clone. Dropping the last clone closes every peer.
#[derive(Clone)]
pub struct RtcService {
    inner: Arc<Inner>,
    _shutdown: Arc<ShutdownOnDrop>,
}

impl RtcService {
    /// Binds `[rtc] listen` and starts the reader. Must run inside a tokio runtime.
    pub async fn start(
        config: &config::RtcConfig,
    ) -> io::Result<(RtcService, mpsc::Receiver<RtcEvent>)> {
        let socket = Arc::new(bind_shared(config.listen)?);
        let local_addr = socket.local_addr()?;
        let (events, events_rx) = mpsc::channel(EVENTS_CAPACITY);
        let (demux, demux_rx) = mpsc::unbounded_channel();
        let counters = Arc::new(RtcCounters::default());
        let shutdown = CancellationToken::new();
        // A listen port of 0 picks one; the candidate must carry the real one.
        let candidate = SocketAddr::new(
            config.public_ip.unwrap_or(local_addr.ip()),
            local_addr.port(),
        );
        let inner = Arc::new(Inner {
            socket: socket.clone(),
            local_addr,
            peer_config: PeerConfig {
                local: candidate,
                consent_timeout: config.consent_timeout(),
            },
            ice_servers: config.ice_servers.clone(),
            max_peers: config.max_peers,
            next_id: AtomicU64::new(1),
            peers: Mutex::new(HashMap::new()),
            demux,
            events,
            counters: counters.clone(),
            shutdown: shutdown.clone(),
        });
        tokio::spawn(read_loop(socket, demux_rx, counters, shutdown.clone()));
        let service = RtcService {
            inner,
            _shutdown: Arc::new(ShutdownOnDrop(shutdown)),
        };
        Ok((service, events_rx))
    }

    /// Creates a peer and returns its offer. The client's answer goes to
    /// [`RtcService::accept_answer`].
    pub async fn create_peer(&self, spec: MediaSpec) -> Result<(PeerId, String), RtcError> {
        let inner = &self.inner;
        let (peer, offer) = PeerConnection::offer(spec, inner.peer_config, Instant::now())?;
        let id = PeerId(inner.next_id.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = mpsc::channel(PEER_QUEUE);
        {
            let mut peers = inner.peers.lock().expect("peer map lock");
            if peers.len() >= inner.max_peers {
                return Err(RtcError::TooManyPeers);
            }
            peers.insert(id, tx.clone());
        }
        let me = tx.downgrade();
        let _ = inner
            .demux
            .send(DemuxCmd::Add(id, peer.ufrag().to_string(), tx));
        bump(&inner.counters.peers_open, 1);
        let task = PeerTask {
            id,
            me,
            peer,
            socket: inner.socket.clone(),
            counters: inner.counters.clone(),
            events: inner.events.clone(),
            link: None,
            bridge: None,
            listen_ip: inner.local_addr.ip(),
        };
        // Boxed: an async fn keeps its argument and its moved-in copy apart, so a task held by
        // value (the str0m session alone is 10 KiB) would take its size twice in the future.
        let handle = tokio::spawn(Box::new(task).run(rx, inner.shutdown.clone()));
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let reason = match handle.await {
                Ok(reason) => reason,
                Err(e) if e.is_panic() => {
                    tracing::error!(peer = %id, "WebRTC peer task panicked; its leg is closed");
                    bump(&inner.counters.peers_panicked, 1);
                    CloseReason::Panicked
                }
                Err(_) => CloseReason::ClosedByUs,
            };
            inner.peers.lock().expect("peer map lock").remove(&id);
            let _ = inner.demux.send(DemuxCmd::Remove(id));
            inner.counters.peers_open.fetch_sub(1, Ordering::Relaxed);
            let _ = inner
                .events
                .send(RtcEvent::Closed { peer: id, reason })
                .await;
        });
        Ok((id, offer))
    }

    fn sender(&self, peer: PeerId) -> Result<mpsc::Sender<PeerMsg>, RtcError> {
        let peers = self.inner.peers.lock().expect("peer map lock");
        peers.get(&peer).cloned().ok_or(RtcError::NoSuchPeer)
    }

    async fn ask<T>(
        &self,
        peer: PeerId,
        command: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, RtcError> {
        let (reply, answer) = oneshot::channel();
        self.sender(peer)?
            .send(PeerMsg::Command(command(reply)))
            .await
            .map_err(|_| RtcError::NoSuchPeer)?;
        answer.await.map_err(|_| RtcError::NoSuchPeer)
    }

    /// Applies the client's answer to the pending offer (the first, or one of `set_video`).
    pub async fn accept_answer(&self, peer: PeerId, sdp: String) -> Result<(), RtcError> {
        self.ask(peer, |r| Command::AcceptAnswer(sdp, r)).await?
    }

    /// Offers video on or off; the answer goes to [`RtcService::accept_answer`].
    pub(crate) async fn set_video(&self, peer: PeerId, on: bool) -> Result<String, RtcError> {
        self.ask(peer, |r| Command::SetVideo(on, r)).await?
    }

    /// Forwards `a`'s audio and video to `b` and back (SFU: no decoding; the payload type is
    /// mapped to the receiver's), and relays each side's keyframe requests to the other.
    pub async fn connect(&self, a: PeerId, b: PeerId) -> Result<(), RtcError> {
        let (to_a, to_b) = (self.sender(a)?, self.sender(b)?);
        self.ask(a, |r| Command::Link(to_b.clone(), r)).await?;
        self.ask(b, |r| Command::Link(to_a.clone(), r)).await?;
        // Each side starts receiving mid-stream: ask for a picture it can decode.
        let _ = to_a.try_send(PeerMsg::KeyframeRequest(KeyframeRequestKind::Pli));
        let _ = to_b.try_send(PeerMsg::KeyframeRequest(KeyframeRequestKind::Pli));
        Ok(())
    }

    /// Bridges the peer's audio to a SIP media leg at `remote` as plain RTP of `codec`, from a
    /// fresh socket on the listen IP (returned); RTP from `remote` to that socket goes to the
    /// client. G.711 passes through; Opus is transcoded. When `remote` is a media-engine leg of
    /// this process, the RTP goes both ways in memory ([`local`]).
    pub async fn bridge_rtp(
        &self,
        peer: PeerId,
        remote: SocketAddr,
        codec: G711,
    ) -> Result<SocketAddr, RtcError> {
        self.ask(peer, |r| Command::BridgeRtp(remote, codec, r))
            .await?
    }

    /// Closes the leg; [`RtcEvent::Closed`] follows. Unknown peers are ignored.
    pub(crate) async fn close(&self, peer: PeerId) {
        if let Ok(tx) = self.sender(peer) {
            let _ = tx.send(PeerMsg::Command(Command::Close)).await;
        }
    }

    #[cfg(test)]
    pub(crate) async fn make_panic(&self, peer: PeerId) {
        if let Ok(tx) = self.sender(peer) {
            let _ = tx.send(PeerMsg::Command(Command::Panic)).await;
        }
    }

    /// The shared socket's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// STUN/TURN URLs for clients (`[rtc] ice_servers`).
    pub(crate) fn ice_servers(&self) -> &[String] {
        &self.inner.ice_servers
    }

    /// Peers open now.
    #[cfg(test)]
    pub(crate) fn peers(&self) -> usize {
        self.inner.peers.lock().expect("peer map lock").len()
    }

    pub fn counters(&self) -> RtcStats {
        self.inner.counters.snapshot()
    }
}

/// Binds the shared socket with [`SOCKET_BUFFER`]-sized kernel buffers (where allowed).
fn bind_shared(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

async fn read_loop(
    socket: Arc<UdpSocket>,
    mut commands: mpsc::UnboundedReceiver<DemuxCmd>,
    counters: Arc<RtcCounters>,
    shutdown: CancellationToken,
) {
    let mut reader = Reader {
        demux: Demux::new(),
        senders: HashMap::new(),
        counters,
    };
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            cmd = commands.recv() => match cmd {
                Some(cmd) => reader.apply(cmd),
                None => return,
            },
            ready = socket.readable() => {
                if let Err(error) = ready {
                    tracing::debug!(%error, "WebRTC socket readiness");
                    continue;
                }
                // A peer added just before its first datagram arrived is routed to.
                while let Ok(cmd) = commands.try_recv() {
                    reader.apply(cmd);
                }
                for _ in 0..READ_BATCH {
                    if buf.capacity() - buf.len() < MAX_DATAGRAM {
                        buf.reserve(READ_CHUNK);
                    }
                    match socket.try_recv_buf_from(&mut buf) {
                        Ok((n, source)) => {
                            let data = buf.split_to(n).freeze();
                            reader.route(source, data);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        // ICMP port unreachable from an earlier send, and the like.
                        Err(error) => tracing::debug!(%error, "WebRTC socket receive"),
                    }
                }
            }
        }
    }
}

/// The reader's state: where datagrams go.
struct Reader {
    demux: Demux,
    senders: HashMap<PeerId, mpsc::Sender<PeerMsg>>,
    counters: Arc<RtcCounters>,
}

impl Reader {
    fn apply(&mut self, cmd: DemuxCmd) {
        match cmd {
            DemuxCmd::Add(peer, ufrag, tx) => {
                self.demux.insert(peer, &ufrag);
                self.senders.insert(peer, tx);
            }
            DemuxCmd::Remove(peer) => {
                self.demux.remove(peer);
                self.senders.remove(&peer);
            }
        }
    }

    fn route(&mut self, source: SocketAddr, data: Bytes) {
        let at = Instant::now();
        bump(&self.counters.packets_in, 1);
        bump(&self.counters.bytes_in, data.len() as u64);
        let Some(peer) = self.demux.route(source, &data) else {
            bump(&self.counters.dropped_unknown, 1);
            return;
        };
        let Some(tx) = self.senders.get(&peer) else {
            return;
        };
        if tx.try_send(PeerMsg::Datagram { source, at, data }).is_err() {
            bump(&self.counters.dropped_queue_full, 1);
        }
    }
}

struct Bridge {
    socket: UdpSocket,
    remote: SocketAddr,
    /// Where `remote` sees the socket's datagrams come from.
    from: SocketAddr,
    rtp: RtpBridge,
    packet: Vec<u8>,
    /// The socket's address in the process's table: a media-engine leg of ours hands its RTP
    /// over in memory ([`local`]).
    _local: Option<local::Binding>,
    /// Whether `remote` is such a leg.
    to_remote: local::Lookup,
}

/// A bridge's end of the process's table: RTP for it joins the peer's queue.
struct BridgeInbox(mpsc::WeakSender<PeerMsg>);

impl local::Inbox for BridgeInbox {
    fn deliver(&self, source: SocketAddr, data: &[u8]) -> bool {
        let rtp = PeerMsg::Rtp {
            source,
            data: data.to_vec(),
        };
        self.0.upgrade().is_some_and(|tx| tx.try_send(rtp).is_ok())
    }
}

struct PeerTask {
    id: PeerId,
    /// The task's own queue, for what is handed to its bridge in memory.
    me: mpsc::WeakSender<PeerMsg>,
    peer: PeerConnection,
    socket: Arc<UdpSocket>,
    counters: Arc<RtcCounters>,
    events: mpsc::Sender<RtcEvent>,
    link: Option<mpsc::Sender<PeerMsg>>,
    bridge: Option<Bridge>,
    listen_ip: IpAddr,
}

/// What woke a peer task.
enum Wake {
    Msg(Option<PeerMsg>),
    Timeout,
    Rtp(io::Result<(usize, SocketAddr)>),
    Shutdown,
}

impl PeerTask {
    async fn run(
        mut self: Box<Self>,
        mut rx: mpsc::Receiver<PeerMsg>,
        shutdown: CancellationToken,
    ) -> CloseReason {
        let mut rtp_buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let deadline = match self.drain().await {
                Ok(deadline) => deadline,
                Err(reason) => return reason,
            };
            let wake = tokio::select! {
                msg = rx.recv() => Wake::Msg(msg),
                _ = tokio::time::sleep_until(deadline.into()) => Wake::Timeout,
                r = recv_bridge(self.bridge.as_ref().map(|b| &b.socket), &mut rtp_buf) => Wake::Rtp(r),
                _ = shutdown.cancelled() => Wake::Shutdown,
            };
            match wake {
                Wake::Msg(Some(msg)) => {
                    self.on_msg(msg).await;
                    // What else is queued joins this pass, so the output is polled once.
                    for _ in 1..PEER_BATCH {
                        let Ok(msg) = rx.try_recv() else { break };
                        self.on_msg(msg).await;
                    }
                }
                // Every sender is gone: the service is shutting down.
                Wake::Msg(None) | Wake::Shutdown => self.peer.close(CloseReason::ClosedByUs),
                Wake::Timeout => self.peer.handle_input(Instant::now(), Input::Timeout),
                Wake::Rtp(Ok((n, source))) => {
                    self.on_rtp(source, &rtp_buf[..n]);
                    for _ in 1..PEER_BATCH {
                        let Some(Ok((n, source))) = self
                            .bridge
                            .as_ref()
                            .map(|b| b.socket.try_recv_from(&mut rtp_buf))
                        else {
                            break;
                        };
                        self.on_rtp(source, &rtp_buf[..n]);
                    }
                }
                Wake::Rtp(Err(error)) => tracing::debug!(peer = %self.id, %error, "bridge socket"),
            }
        }
    }

    /// Drains the peer: sends, forwards, reports. `Err` once it has closed.
    async fn drain(&mut self) -> Result<Instant, CloseReason> {
        loop {
            match self.peer.poll_output() {
                Output::Timeout(t) => return Ok(t),
                Output::Transmit(t) => {
                    if self.socket.try_send_to(&t.contents, t.destination).is_ok() {
                        bump(&self.counters.packets_out, 1);
                        bump(&self.counters.bytes_out, t.contents.len() as u64);
                    }
                }
                Output::Event(event) => match event {
                    PeerEvent::Connected => {
                        self.refresh_bridge();
                        self.report(RtcEvent::Connected { peer: self.id }).await;
                    }
                    PeerEvent::VideoDropped => {
                        self.report(RtcEvent::VideoDropped { peer: self.id }).await
                    }
                    PeerEvent::Media(media) => self.on_media(media),
                    PeerEvent::KeyframeRequest(kind) => {
                        if let Some(link) = &self.link {
                            let _ = link.try_send(PeerMsg::KeyframeRequest(kind));
                        }
                    }
                    PeerEvent::Closed(reason) => return Err(reason),
                },
            }
        }
    }

    /// Reports to the service's owner. `&mut self`, not `&self`: the libopus state in the
    /// bridge is `Send` but not `Sync`, so a shared borrow cannot be held across an await.
    async fn report(&mut self, event: RtcEvent) {
        let _ = self.events.send(event).await;
    }

    fn on_media(&mut self, media: MediaIn) {
        if media.kind == MediaKind::Audio
            && let Some(bridge) = &mut self.bridge
        {
            if media.codec == Codec::Opus
                && let Some(narrow) = transcode::is_narrowband(&media.data)
            {
                let band = if narrow {
                    &self.counters.opus_narrowband_in
                } else {
                    &self.counters.opus_wideband_in
                };
                bump(band, 1);
            }
            if bridge.rtp.rtp_for_sip(&media, &mut bridge.packet)
                && match bridge
                    .to_remote
                    .send(bridge.from, bridge.remote, &bridge.packet)
                {
                    Some(taken) => taken,
                    None => bridge
                        .socket
                        .try_send_to(&bridge.packet, bridge.remote)
                        .is_ok(),
                }
            {
                bump(&self.counters.rtp_bridge_out, 1);
            } else {
                bump(&self.counters.rtp_bridge_out_dropped, 1);
            }
            return;
        }
        if let Some(link) = &self.link
            && link.try_send(PeerMsg::Forward(media)).is_err()
        {
            bump(&self.counters.dropped_queue_full, 1);
        }
    }

    fn on_rtp(&mut self, source: SocketAddr, packet: &[u8]) {
        let Some(bridge) = &mut self.bridge else {
            return;
        };
        // Only the SIP leg we were bridged to may speak into this peer's audio.
        if source != bridge.remote {
            return;
        }
        bump(&self.counters.rtp_bridge_in, 1);
        let now = Instant::now();
        let peer = &mut self.peer;
        let mut refused = false;
        let taken = bridge.rtp.audio_for_client(packet, |pt, time, data| {
            refused |= !peer.write_audio(pt, now, time, data);
        });
        if !taken || refused {
            bump(&self.counters.rtp_bridge_in_dropped, 1);
        }
    }

    /// After a negotiation, the codec the client takes may have changed.
    fn refresh_bridge(&mut self) {
        if let Some(bridge) = &mut self.bridge {
            let codecs = self.peer.audio_codecs();
            bridge.rtp.set_peer_audio(PeerAudio::choose(&codecs));
        }
    }

    async fn on_msg(&mut self, msg: PeerMsg) {
        match msg {
            PeerMsg::Datagram { source, at, data } => {
                let input = Input::Datagram {
                    source,
                    contents: &data,
                };
                self.peer.handle_input(at, input);
            }
            PeerMsg::Forward(media) => {
                self.peer.forward(&media);
            }
            PeerMsg::KeyframeRequest(kind) => {
                self.peer.request_keyframe(kind);
            }
            PeerMsg::Rtp { source, data } => self.on_rtp(source, &data),
            PeerMsg::Command(command) => self.on_command(command).await,
        }
    }

    async fn on_command(&mut self, command: Command) {
        let now = Instant::now();
        match command {
            Command::AcceptAnswer(sdp, reply) => {
                let _ = reply.send(self.peer.accept_answer(now, &sdp));
                self.refresh_bridge();
            }
            Command::SetVideo(on, reply) => {
                let _ = reply.send(self.peer.set_video(on));
            }
            Command::Link(to, reply) => {
                self.link = Some(to);
                let _ = reply.send(());
            }
            Command::BridgeRtp(remote, law, reply) => {
                let _ = reply.send(self.start_bridge(remote, law).await);
            }
            Command::Close => self.peer.close(CloseReason::ClosedByUs),
            #[cfg(test)]
            Command::Panic => {
                self.peer.panic_on_input = true;
                self.peer.handle_input(now, Input::Timeout);
            }
        }
    }

    async fn start_bridge(
        &mut self,
        remote: SocketAddr,
        law: G711,
    ) -> Result<SocketAddr, RtcError> {
        if !self.peer.has_audio() {
            return Err(RtcError::NoAudio);
        }
        let socket = UdpSocket::bind(SocketAddr::new(self.listen_ip, 0))
            .await
            .map_err(|e| RtcError::Io(e.to_string()))?;
        let bound = socket
            .local_addr()
            .map_err(|e| RtcError::Io(e.to_string()))?;
        let mut advertised = bound;
        if advertised.ip().is_unspecified() {
            advertised.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
        let mut rtp = RtpBridge::new(law, rand::random(), rand::random(), rand::random());
        rtp.set_peer_audio(PeerAudio::choose(&self.peer.audio_codecs()));
        self.bridge = Some(Bridge {
            socket,
            remote,
            from: local::source(bound, remote),
            rtp,
            packet: Vec::with_capacity(1500),
            _local: local::bind(bound, Arc::new(BridgeInbox(self.me.clone()))),
            to_remote: local::Lookup::default(),
        });
        Ok(advertised)
    }
}

/// The bridge socket's next datagram; the socket alone is borrowed, since the transcoder
/// inside the bridge (libopus state) may move between threads but not be shared.
async fn recv_bridge(
    socket: Option<&UdpSocket>,
    buf: &mut [u8],
) -> io::Result<(usize, SocketAddr)> {
    match socket {
        Some(socket) => socket.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use str0m::change::SdpOffer;
    use str0m::media::{MediaData, MediaTime};
    use str0m::net::{Protocol, Receive};
    use str0m::{Candidate, Event, Rtc};

    use super::*;

    /// A browser-like str0m client on its own loopback socket.
    struct Client {
        rtc: Rtc,
        socket: UdpSocket,
        addr: SocketAddr,
        media: Vec<MediaData>,
        audio: Option<str0m::media::Mid>,
        connected: bool,
    }

    impl Client {
        async fn answering(offer: &str) -> (Client, String) {
            let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let addr = socket.local_addr().unwrap();
            let mut rtc = Rtc::builder().build(Instant::now());
            rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
            let offer = SdpOffer::from_sdp_string(offer).unwrap();
            let answer = rtc.sdp_api().accept_offer(offer).unwrap();
            let client = Client {
                rtc,
                socket,
                addr,
                media: Vec::new(),
                audio: None,
                connected: false,
            };
            (client, answer.to_sdp_string())
        }

        /// Sends what is due and takes in what arrives for up to `span`.
        async fn run(&mut self, span: Duration) {
            let end = Instant::now() + span;
            let mut buf = vec![0u8; 2048];
            while Instant::now() < end {
                let timeout = loop {
                    match self.rtc.poll_output().unwrap() {
                        str0m::Output::Timeout(t) => break t,
                        str0m::Output::Transmit(t) => {
                            let _ = self.socket.send_to(&t.contents, t.destination).await;
                        }
                        str0m::Output::Event(Event::MediaData(d)) => self.media.push(d),
                        str0m::Output::Event(Event::MediaAdded(m)) => self.audio = Some(m.mid),
                        str0m::Output::Event(Event::Connected) => self.connected = true,
                        str0m::Output::Event(_) => {}
                    }
                };
                let wait = timeout.min(end).saturating_duration_since(Instant::now());
                let input = match tokio::time::timeout(wait, self.socket.recv_from(&mut buf)).await
                {
                    Ok(Ok((n, source))) => Some((n, source)),
                    _ => None,
                };
                let now = Instant::now();
                match input {
                    Some((n, source)) => {
                        let Ok(contents) = buf[..n].try_into() else {
                            continue;
                        };
                        let receive = Receive {
                            proto: Protocol::Udp,
                            source,
                            destination: self.addr,
                            contents,
                        };
                        self.rtc
                            .handle_input(str0m::Input::Receive(now, receive))
                            .unwrap();
                    }
                    None => self.rtc.handle_input(str0m::Input::Timeout(now)).unwrap(),
                }
            }
        }

        fn send_audio(&mut self, seq: u64) {
            let mid = self.audio.expect("the offer had audio");
            let writer = self.rtc.writer(mid).unwrap();
            let params = *writer.payload_params().next().unwrap();
            let freq = params.spec().clock_rate;
            let time = MediaTime::new(seq * freq.get() as u64 / 50, freq);
            // A valid Opus packet: TOC of a 20 ms CELT frame, then silence.
            writer
                .write(params.pt(), Instant::now(), time, vec![0xf8, 0xff, 0xfe])
                .unwrap();
        }
    }

    fn config(max_peers: usize) -> config::RtcConfig {
        config::RtcConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            max_peers,
            ..Default::default()
        }
    }

    async fn next_event(events: &mut mpsc::Receiver<RtcEvent>) -> RtcEvent {
        tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("an event within 10 s")
            .expect("the service is alive")
    }

    const AUDIO: MediaSpec = MediaSpec {
        audio: true,
        video: false,
        facing_g711: false,
    };

    /// Runs both clients for `span`, the first sending a packet every 20 ms if `talk`.
    async fn run_both(a: &mut Client, b: &mut Client, span: Duration, talk: bool, seq: &mut u64) {
        let end = Instant::now() + span;
        while Instant::now() < end {
            if talk && a.connected {
                a.send_audio(*seq);
                *seq += 1;
            }
            let tick = Duration::from_millis(10);
            tokio::join!(a.run(tick), b.run(tick));
        }
    }

    #[tokio::test]
    async fn two_browsers_connect_over_loopback_and_hear_each_other() {
        let (rtc, mut events) = RtcService::start(&config(10)).await.unwrap();
        let (pa, offer) = rtc.create_peer(AUDIO).await.unwrap();
        let (mut a, answer) = Client::answering(&offer).await;
        rtc.accept_answer(pa, answer).await.unwrap();
        let (pb, offer) = rtc.create_peer(AUDIO).await.unwrap();
        let (mut b, answer) = Client::answering(&offer).await;
        rtc.accept_answer(pb, answer).await.unwrap();
        rtc.connect(pa, pb).await.unwrap();

        let mut seq = 0;
        let mut up = Vec::new();
        for _ in 0..200 {
            if up.len() == 2 {
                break;
            }
            run_both(&mut a, &mut b, Duration::from_millis(50), false, &mut seq).await;
            while let Ok(e) = events.try_recv() {
                up.push(e);
            }
        }
        assert!(up.contains(&RtcEvent::Connected { peer: pa }));
        assert!(up.contains(&RtcEvent::Connected { peer: pb }));

        run_both(&mut a, &mut b, Duration::from_millis(600), true, &mut seq).await;
        assert!(!b.media.is_empty(), "b heard nothing of a's {seq} packets");
        assert!(a.media.is_empty(), "a heard itself");
        let stats = rtc.counters();
        assert!(stats.packets_in > 0 && stats.packets_out > 0);
        assert_eq!(stats.peers_open, 2);
    }

    /// A gateway with one audio peer answered by a client and bridged as PCMU to a plain
    /// UDP socket standing for the SIP leg; returns the bridge's address too.
    async fn bridged_client() -> (
        RtcService,
        mpsc::Receiver<RtcEvent>,
        PeerId,
        Client,
        UdpSocket,
        SocketAddr,
    ) {
        let sip = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let (rtc, events, pa, a, bridge) = bridged_to(sip.local_addr().unwrap()).await;
        (rtc, events, pa, a, sip, bridge)
    }

    /// A gateway with one audio peer answered by a client and bridged as PCMU to the SIP leg
    /// at `sip`; returns the bridge's address too.
    async fn bridged_to(
        sip: SocketAddr,
    ) -> (
        RtcService,
        mpsc::Receiver<RtcEvent>,
        PeerId,
        Client,
        SocketAddr,
    ) {
        let (rtc, events) = RtcService::start(&config(10)).await.unwrap();
        let (pa, offer) = rtc.create_peer(AUDIO).await.unwrap();
        let (a, answer) = Client::answering(&offer).await;
        rtc.accept_answer(pa, answer).await.unwrap();
        let bridge = rtc.bridge_rtp(pa, sip, G711::Pcmu).await.unwrap();
        (rtc, events, pa, a, bridge)
    }

    /// Runs the client until the service's first event, which must be its peer's connection.
    async fn until_connected(a: &mut Client, events: &mut mpsc::Receiver<RtcEvent>, peer: PeerId) {
        for _ in 0..100 {
            a.run(Duration::from_millis(50)).await;
            if let Ok(e) = events.try_recv() {
                assert_eq!(e, RtcEvent::Connected { peer });
                return;
            }
        }
        panic!("the peer never connected");
    }

    /// An RTP packet of payload type `pt` as the SIP leg sends it, 20 ms of 8 kHz per `seq`.
    fn rtp(pt: u8, seq: u16, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, pt];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&(seq as u32 * 160).to_be_bytes());
        p.extend_from_slice(&[9, 9, 9, 9]);
        p.extend_from_slice(payload);
        p
    }

    #[tokio::test]
    async fn a_bridged_browser_talks_plain_rtp_to_a_sip_leg() {
        let (rtc, mut events, pa, mut a, sip, bridge) = bridged_client().await;
        until_connected(&mut a, &mut events, pa).await;

        // Browser -> SIP: Opus becomes PCMU RTP.
        let mut buf = [0u8; 2048];
        let mut got = None;
        for seq in 0..50 {
            a.send_audio(seq);
            a.run(Duration::from_millis(20)).await;
            if let Ok(Ok((n, from))) =
                tokio::time::timeout(Duration::from_millis(1), sip.recv_from(&mut buf)).await
            {
                got = Some((from, buf[..n].to_vec()));
                break;
            }
        }
        let (from, packet) = got.expect("no RTP reached the SIP leg");
        assert_eq!(from.port(), bridge.port());
        let (pt, _, payload) = crate::rtc::rtp_bridge::parse_rtp(&packet).unwrap();
        assert_eq!(pt, 0);
        assert_eq!(payload.len(), 160);

        // SIP -> browser: PCMU RTP arrives as audio.
        for seq in 0..25u16 {
            sip.send_to(&rtp(0, seq, &[0xff; 160]), bridge)
                .await
                .unwrap();
            a.run(Duration::from_millis(20)).await;
        }
        assert!(!a.media.is_empty(), "the browser heard nothing from SIP");
        assert!(rtc.counters().rtp_bridge_in > 0);
    }

    /// A bridge whose SIP leg is a socket of this process (a media-engine leg) talks to it in
    /// memory, both ways, as the addresses the kernel would show.
    #[tokio::test]
    async fn a_bridge_to_a_leg_of_ours_hands_rtp_over_in_memory() {
        use crate::media::local::{self, Lookup, tests::Kept};

        let leg = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let leg_addr = leg.local_addr().unwrap();
        let kept = Kept::new(1000);
        let _binding = local::bind(leg_addr, kept.clone()).unwrap();
        let (rtc, mut events, pa, mut a, bridge) = bridged_to(leg_addr).await;
        until_connected(&mut a, &mut events, pa).await;

        // Browser -> leg, in memory.
        let mut handed = Vec::new();
        for seq in 0..50 {
            a.send_audio(seq);
            a.run(Duration::from_millis(20)).await;
            handed.extend(kept.taken());
            if !handed.is_empty() {
                break;
            }
        }
        let (from, packet) = handed.first().expect("no RTP was handed to the leg");
        assert_eq!(*from, bridge, "from the address the bridge answered with");
        let (pt, _, payload) = crate::rtc::rtp_bridge::parse_rtp(packet).unwrap();
        assert_eq!((pt, payload.len()), (0, 160));
        let mut buf = [0u8; 2048];
        assert!(
            tokio::time::timeout(Duration::from_millis(50), leg.recv_from(&mut buf))
                .await
                .is_err(),
            "nothing crossed the kernel to the leg's socket"
        );

        // Leg -> browser, in memory.
        let mut lookup = Lookup::default();
        for seq in 0..25u16 {
            assert_eq!(
                lookup.send(leg_addr, bridge, &rtp(0, seq, &[0xff; 160])),
                Some(true)
            );
            a.run(Duration::from_millis(20)).await;
        }
        assert!(
            !a.media.is_empty(),
            "the browser heard nothing from the leg"
        );
        assert!(rtc.counters().rtp_bridge_in > 0);
    }

    /// Every audio packet of a bridged peer is accounted for, each way: what the client sent
    /// is RTP the SIP leg received or a counted drop, and what the SIP leg sent is audio the
    /// client heard or a counted drop (here: a telephone-event, which the client is not sent).
    #[tokio::test]
    async fn bridged_audio_is_accounted_packet_by_packet_both_ways() {
        let (rtc, mut events, pa, mut a, sip, bridge) = bridged_client().await;
        for _ in 0..200 {
            if a.connected {
                break;
            }
            a.run(Duration::from_millis(50)).await;
        }
        assert!(a.connected, "the client did not connect");
        assert_eq!(
            next_event(&mut events).await,
            RtcEvent::Connected { peer: pa }
        );

        // Browser -> SIP: each packet becomes one RTP packet or one counted drop.
        const SENT: u64 = 40;
        let mut buf = [0u8; 2048];
        let mut received = 0u64;
        for seq in 0..SENT {
            a.send_audio(seq);
            a.run(Duration::from_millis(5)).await;
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            while let Ok((n, from)) = sip.try_recv_from(&mut buf) {
                assert_eq!(from.port(), bridge.port());
                assert_eq!(crate::rtc::rtp_bridge::parse_rtp(&buf[..n]).unwrap().0, 0);
                received += 1;
            }
            let c = rtc.counters();
            if c.rtp_bridge_out + c.rtp_bridge_out_dropped == SENT && received == c.rtp_bridge_out {
                break;
            }
            assert!(Instant::now() < deadline, "{received} received, {c:?}");
            a.run(Duration::from_millis(10)).await;
        }
        assert!(received > 0, "no audio reached the SIP leg");

        // SIP -> browser: audio is heard; a telephone-event is counted, not played.
        const AUDIO_IN: usize = 20;
        for seq in 0..AUDIO_IN as u16 + 1 {
            let packet = if seq == 7 {
                rtp(101, seq, &[1, 0, 0, 160])
            } else {
                rtp(0, seq, &[0xff; 160])
            };
            sip.send_to(&packet, bridge).await.unwrap();
            a.run(Duration::from_millis(5)).await;
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let c = rtc.counters();
            if c.rtp_bridge_in == AUDIO_IN as u64 + 1
                && c.rtp_bridge_in_dropped == 1
                && a.media.len() == AUDIO_IN
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the client heard {} of {AUDIO_IN}; {c:?}",
                a.media.len()
            );
            a.run(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn too_many_peers_are_refused_until_one_closes() {
        let (rtc, mut events) = RtcService::start(&config(2)).await.unwrap();
        let (a, _) = rtc.create_peer(AUDIO).await.unwrap();
        rtc.create_peer(AUDIO).await.unwrap();
        assert_eq!(rtc.create_peer(AUDIO).await, Err(RtcError::TooManyPeers));
        assert_eq!(rtc.peers(), 2);
        rtc.close(a).await;
        assert_eq!(
            next_event(&mut events).await,
            RtcEvent::Closed {
                peer: a,
                reason: CloseReason::ClosedByUs
            }
        );
        assert!(rtc.create_peer(AUDIO).await.is_ok());
    }

    #[tokio::test]
    async fn a_panic_in_one_peer_closes_that_leg_only() {
        let (rtc, mut events) = RtcService::start(&config(10)).await.unwrap();
        let (a, _) = rtc.create_peer(AUDIO).await.unwrap();
        let (b, _) = rtc.create_peer(AUDIO).await.unwrap();
        rtc.make_panic(a).await;
        assert_eq!(
            next_event(&mut events).await,
            RtcEvent::Closed {
                peer: a,
                reason: CloseReason::Panicked
            }
        );
        assert_eq!(rtc.peers(), 1);
        assert_eq!(rtc.counters().peers_panicked, 1);
        assert_eq!(rtc.set_video(a, true).await, Err(RtcError::NoSuchPeer));
        // b's task still answers: its first offer is pending, so it refuses another.
        assert_eq!(rtc.set_video(b, true).await, Err(RtcError::OfferPending));
    }

    #[tokio::test]
    async fn a_bad_answer_is_refused_with_the_reason() {
        let (rtc, _events) = RtcService::start(&config(10)).await.unwrap();
        let (a, _) = rtc.create_peer(AUDIO).await.unwrap();
        let err = rtc
            .accept_answer(a, "v=0\r\nnonsense".into())
            .await
            .unwrap_err();
        assert!(matches!(err, RtcError::BadSdp(_)), "{err:?}");
    }

    #[tokio::test]
    async fn unknown_datagrams_are_dropped_and_counted() {
        let (rtc, _events) = RtcService::start(&config(10)).await.unwrap();
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket.send_to(&[22; 40], rtc.local_addr()).await.unwrap();
        for _ in 0..100 {
            if rtc.counters().dropped_unknown == 1 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the datagram was not counted");
    }
}
