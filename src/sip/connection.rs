//! Connections of the SIP endpoint: TCP and TLS streams (RFC 3261 §18.3, framed by
//! Content-Length) and WebSockets (RFC 7118, one SIP message per WebSocket message), accepted
//! on their listeners or opened towards a peer (a TLS trunk, a softphone whose connection is
//! gone is not reopened: it has a NAT in front).
//!
//! Each connection is one task: it reads and frames messages and hands them to the core task
//! over the `Inbound` channel, and writes what the core task queues on its writer channel, so
//! responses leave on the connection their request came on (§18.2.2). The core task keeps the
//! writers by connection and by (transport, address), for requests to a peer it already has a
//! connection with. Idle connections are closed; so are connections over the limit and TLS or
//! WebSocket handshakes that do not finish in time. WebSockets are pinged so that browsers'
//! connections stay up while nothing is said.
//!
//! What one client can hold is bounded apart from the others: each source address (an IPv6
//! source is its /64) may hold a few connections across all stream listeners, so one host
//! cannot fill the global limit, and a message must be complete a fixed time after its first
//! byte (the *message deadline*), so a peer trickling a byte now and then cannot keep a
//! connection past the idle timeout. Keep-alives (CRLF, WebSocket ping and pong) are complete
//! messages: an idle client that keeps its connection alive the standard way keeps it.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;

use super::driver::TransportCounters;
use super::peer::{ConnId, Peer, TransportKind};
use super::wire::{self, Frame, Incoming};
use crate::guard::source_key;
use crate::metrics::Metrics;

/// How long a TLS or WebSocket handshake may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How often a quiet WebSocket is pinged.
const WS_PING_INTERVAL: Duration = Duration::from_secs(30);

/// Messages a connection may have queued for writing before new ones are dropped.
const WRITE_QUEUE: usize = 256;

/// The most a stream connection reads at once: a batch of messages for the core task whose
/// answers fit the write queue.
const READ_CHUNK: usize = 16 * 1024;

/// Messages of one stream connection the core task may have at once: their answers (a few
/// each) fit the write queue, which the connection drains before it hands over more.
const IN_CORE: usize = 64;

/// The most a stream connection writes at once.
const WRITE_CHUNK: usize = 64 * 1024;

/// What connection tasks tell the core task.
pub(super) enum Inbound {
    /// An accepted connection: messages for `peer` go to the writer.
    Opened(ConnId, Peer, mpsc::Sender<Bytes>),
    Message(Box<Incoming>, Peer),
    /// The messages of one read of a stream, in order; the core task drops the [`InCore`]
    /// once their answers are queued for writing.
    Messages(Vec<Incoming>, Peer, InCore),
    Closed(ConnId, Peer),
    /// A connection we opened could not be made: requests waiting for `peer` fail now.
    Failed(Peer),
}

/// Places of a connection's messages in the core task: held until the core task has queued
/// their answers, so what one connection has in the core task always fits its write queue.
pub(super) struct InCore(#[allow(dead_code)] OwnedSemaphorePermit);

/// What bounds each connection and each source.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub max_message_size: usize,
    pub idle_timeout: Duration,
    /// How long a message may take from its first byte to its last.
    pub message_deadline: Duration,
    /// Accepted connections one source may hold, across the stream listeners.
    pub per_source: usize,
}

/// What every connection task shares.
#[derive(Clone)]
pub(super) struct Links {
    pub inbound: mpsc::Sender<Inbound>,
    pub counters: Arc<TransportCounters>,
    pub metrics: Arc<Metrics>,
    pub limits: Limits,
    pub shutdown: CancellationToken,
    next_id: Arc<AtomicU64>,
    /// Accepted connections open per source.
    sources: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Links {
    pub fn new(
        inbound: mpsc::Sender<Inbound>,
        counters: Arc<TransportCounters>,
        metrics: Arc<Metrics>,
        limits: Limits,
        shutdown: CancellationToken,
    ) -> Links {
        Links {
            inbound,
            counters,
            metrics,
            limits,
            shutdown,
            next_id: Arc::new(AtomicU64::new(1)),
            sources: Arc::default(),
        }
    }

    fn next_id(&self) -> ConnId {
        ConnId(self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    /// A place for one more connection from `source`, or `None` when it holds its share.
    fn take_slot(&self, source: IpAddr) -> Option<SourceSlot> {
        let mut sources = self.sources.lock().expect("sources");
        let open = sources.entry(source).or_default();
        if *open >= self.limits.per_source {
            return None;
        }
        *open += 1;
        Some(SourceSlot {
            sources: self.sources.clone(),
            source,
        })
    }

    fn refused(&self, reason: &str) {
        self.counters
            .refused_connections
            .fetch_add(1, Ordering::Relaxed);
        self.metrics.refused(reason);
    }
}

/// One accepted connection counted against its source until it is dropped (however the
/// connection's task ends).
struct SourceSlot {
    sources: Arc<Mutex<HashMap<IpAddr, usize>>>,
    source: IpAddr,
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(open) = sources.get_mut(&self.source) {
            *open -= 1;
            if *open == 0 {
                sources.remove(&self.source);
            }
        }
    }
}

/// Accepts connections of `transport` (TCP, TLS, WS or WSS) on `listener`; `tls` for TLS and
/// WSS. At most `max_connections` are open at once, and [`Limits::per_source`] from one
/// source across the listeners; more are closed at once and counted.
pub(super) async fn accept_loop(
    listener: TcpListener,
    transport: TransportKind,
    tls: Option<TlsAcceptor>,
    max_connections: usize,
    links: Links,
) {
    let open = Arc::new(AtomicU64::new(0));
    loop {
        let accepted = tokio::select! {
            _ = links.shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, addr)) = accepted else {
            continue;
        };
        if open.load(Ordering::Relaxed) >= max_connections as u64 {
            links.refused("sip_connections_over_limit");
            drop(stream);
            continue;
        }
        let Some(slot) = links.take_slot(source_key(addr)) else {
            tracing::debug!(%addr, "SIP connection refused: its source holds its share");
            links.refused("sip_connections_per_source");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        open.fetch_add(1, Ordering::Relaxed);
        let (open, links, tls) = (open.clone(), links.clone(), tls.clone());
        tokio::spawn(async move {
            let id = links.next_id();
            let peer = Peer::on(transport, addr, Some(id));
            serve_accepted(stream, peer, tls, links).await;
            open.fetch_sub(1, Ordering::Relaxed);
            drop(slot);
        });
    }
}

/// Finishes the handshakes of an accepted connection, then runs it.
async fn serve_accepted(stream: TcpStream, peer: Peer, tls: Option<TlsAcceptor>, links: Links) {
    let id = peer.conn.expect("accepted connections are named");
    let (writer, writes) = mpsc::channel(WRITE_QUEUE);
    let websocket = matches!(peer.transport, TransportKind::Ws | TransportKind::Wss);
    match tls {
        Some(acceptor) => {
            let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream));
            let stream = match handshake.await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::info!(addr = %peer.addr, "TLS handshake refused: {e}");
                    return;
                }
                Err(_) => {
                    tracing::debug!(addr = %peer.addr, "TLS handshake timed out");
                    return;
                }
            };
            if websocket {
                accept_websocket(stream, peer, writer, writes, links).await;
            } else if opened(&links, id, peer, writer).await {
                run_stream(stream, peer, writes, &links).await;
            }
        }
        None if websocket => accept_websocket(stream, peer, writer, writes, links).await,
        None => {
            if opened(&links, id, peer, writer).await {
                run_stream(stream, peer, writes, &links).await;
            }
        }
    }
}

/// Tells the core task about a new connection; `false` when it is gone.
async fn opened(links: &Links, id: ConnId, peer: Peer, writer: mpsc::Sender<Bytes>) -> bool {
    links
        .inbound
        .send(Inbound::Opened(id, peer, writer))
        .await
        .is_ok()
}

/// Opens a connection to `peer` (TCP, or TLS when `tls` names the server to verify) in the
/// background. The returned writer takes messages at once; they leave when the connection is
/// up. A connection that cannot be made is reported as [`Inbound::Failed`].
pub(super) fn connect(
    peer: Peer,
    tls: Option<(TlsConnector, rustls::pki_types::ServerName<'static>)>,
    links: &Links,
) -> (ConnId, mpsc::Sender<Bytes>) {
    let id = links.next_id();
    let peer = Peer::on(peer.transport, peer.addr, Some(id));
    let (writer, writes) = mpsc::channel(WRITE_QUEUE);
    let links = links.clone();
    tokio::spawn(async move {
        let connected = tokio::time::timeout(HANDSHAKE_TIMEOUT, TcpStream::connect(peer.addr));
        let stream = match connected.await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return failed(&links, peer, &format!("cannot connect: {e}")).await,
            Err(_) => return failed(&links, peer, "connecting timed out").await,
        };
        let _ = stream.set_nodelay(true);
        match tls {
            Some((connector, name)) => {
                let handshake = tokio::time::timeout(
                    HANDSHAKE_TIMEOUT,
                    connector.connect(name.clone(), stream),
                );
                match handshake.await {
                    Ok(Ok(stream)) => {
                        tracing::debug!(addr = %peer.addr, server_name = %name.to_str(), "TLS connection up");
                        run_stream(stream, peer, writes, &links).await;
                    }
                    Ok(Err(e)) => {
                        let why = format!("TLS handshake with {} refused: {e}", name.to_str());
                        failed(&links, peer, &why).await;
                    }
                    Err(_) => failed(&links, peer, "TLS handshake timed out").await,
                }
            }
            None => run_stream(stream, peer, writes, &links).await,
        }
    });
    (id, writer)
}

async fn failed(links: &Links, peer: Peer, why: &str) {
    tracing::warn!(
        to = %peer.addr,
        transport = peer.via_transport(),
        "SIP connection failed, nothing is sent there: {why}"
    );
    let _ = links.inbound.send(Inbound::Failed(peer)).await;
    let id = peer.conn.expect("opened connections are named");
    let _ = links.inbound.send(Inbound::Closed(id, peer)).await;
}

/// Runs a TCP or TLS connection until it closes, goes idle, or the endpoint shuts down.
///
/// Under load a read holds many messages: all of them are framed and parsed at once and go to
/// the core task as one batch, and everything queued for writing leaves in one write, so the
/// cost per message is the parsing, not a wake-up and a system call each. Writes come before
/// reads: a peer is answered before more of its requests are taken in. When the core task is
/// behind, the connection holds its batch and stops reading (the peer's TCP window closes)
/// but goes on writing, so answers to what the core already took never wait on it.
async fn run_stream<S>(stream: S, peer: Peer, mut writes: mpsc::Receiver<Bytes>, links: &Links)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let id = peer.conn.expect("connections are named");
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut out = Vec::with_capacity(WRITE_CHUNK);
    let mut queued = Vec::new();
    let limits = links.limits;
    let mut idle = Box::pin(tokio::time::sleep(limits.idle_timeout));
    // Armed while part of a message is buffered: when that message has to be complete.
    let mut deadline = Box::pin(tokio::time::sleep(limits.message_deadline));
    let mut in_message = false;
    // A batch the core task had no room for yet.
    let mut held: Option<Held> = None;
    let in_core = Arc::new(Semaphore::new(IN_CORE));
    loop {
        // Room for a whole chunk, so that reads are never small.
        buf.reserve(READ_CHUNK);
        tokio::select! {
            biased;
            _ = links.shutdown.cancelled() => break,
            // The core task is behind: its answers still leave, and the connection reads
            // nothing more until it takes the batch.
            taken = in_core.clone().acquire_many_owned(held.as_ref().map_or(0, Held::permits)),
                if held.as_ref().is_some_and(|h| h.in_core.is_none()) =>
            {
                let Ok(taken) = taken else { break };
                let mut batch = held.take().expect("held");
                batch.in_core = Some(InCore(taken));
                match batch.hand_over(links, peer) {
                    Ok(None) => {}
                    Ok(still) => held = still,
                    Err(()) => break,
                }
            }
            slot = links.inbound.reserve(), if held.as_ref().is_some_and(|h| h.in_core.is_some()) => {
                let Ok(slot) = slot else { break };
                let Held { messages, in_core } = held.take().expect("held");
                let in_core = in_core.expect("permits taken");
                slot.send(Inbound::Messages(messages, peer, in_core));
            }
            // While we hold a batch the peer waits on us: its clocks stop.
            _ = &mut deadline, if in_message && held.is_none() => {
                tracing::debug!(addr = %peer.addr, "closing SIP connection: message not complete in time");
                links.metrics.refused("sip_message_deadline");
                break;
            }
            _ = &mut idle, if held.is_none() => {
                tracing::debug!(addr = %peer.addr, "closing idle SIP connection");
                break;
            }
            n = writes.recv_many(&mut queued, WRITE_QUEUE) => {
                if n == 0 {
                    // The core task is gone.
                    break;
                }
                if write_queued(&mut writer, &mut queued, &mut out).await.is_err() {
                    break;
                }
                idle.as_mut().reset((Instant::now() + limits.idle_timeout).into());
            }
            read = read_chunk(&mut reader, &mut buf), if held.is_none() => {
                match read {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let now = Instant::now();
                idle.as_mut().reset((now + limits.idle_timeout).into());
                let before = buf.len();
                let framed = frame_all(&mut buf, limits.max_message_size);
                if buf.len() < before {
                    in_message = false;
                }
                let mut batch = Vec::with_capacity(framed.items.len());
                for item in framed.items {
                    match item {
                        Framed::Message(incoming) => batch.push(incoming),
                        // RFC 5626 §3.5.1: a double-CRLF ping gets a single-CRLF pong.
                        Framed::Pong => out.extend_from_slice(b"\r\n"),
                        Framed::Refused(rejection) => {
                            if let Some(reply) = refuse(links, peer, rejection) {
                                out.extend_from_slice(&reply);
                            }
                        }
                    }
                }
                if !batch.is_empty() {
                    let mut batch = Held { messages: batch, in_core: None };
                    if let Ok(taken) = in_core.clone().try_acquire_many_owned(batch.permits()) {
                        batch.in_core = Some(InCore(taken));
                    }
                    match batch.hand_over(links, peer) {
                        Ok(still) => held = still,
                        Err(()) => break,
                    }
                }
                if !out.is_empty() && writer.write_all(&out).await.is_err() {
                    break;
                }
                out.clear();
                if let Some(rejection) = framed.broken {
                    // The stream cannot be resynchronised: answer if we can, then close.
                    if let Some(reply) = refuse(links, peer, rejection) {
                        let _ = writer.write_all(&reply).await;
                    }
                    break;
                }
                // What is left is the start of the next message: its clock starts when its
                // first byte came, and more bytes of it do not restart it.
                if buf.is_empty() {
                    in_message = false;
                } else if !in_message {
                    in_message = true;
                    deadline.as_mut().reset((now + limits.message_deadline).into());
                }
            }
        }
    }
    let _ = writer.shutdown().await;
    if let Some(Held { messages, .. }) = held {
        let in_core = InCore(in_core.clone().acquire_many_owned(0).await.expect("open"));
        let _ = links
            .inbound
            .send(Inbound::Messages(messages, peer, in_core))
            .await;
    }
    let _ = links.inbound.send(Inbound::Closed(id, peer)).await;
}

/// A stream's messages on their way to the core task: a place in [`IN_CORE`] first, then in
/// the core task's queue.
struct Held {
    messages: Vec<Incoming>,
    in_core: Option<InCore>,
}

impl Held {
    /// The places the batch takes; a batch larger than the whole allowance takes all of it.
    fn permits(&self) -> u32 {
        self.messages.len().min(IN_CORE) as u32
    }

    /// Gives the batch to the core task if it has its places and the core task has room;
    /// otherwise it is still held. `Err` when the core task is gone.
    fn hand_over(self, links: &Links, peer: Peer) -> Result<Option<Held>, ()> {
        let Some(in_core) = self.in_core else {
            return Ok(Some(self));
        };
        match links
            .inbound
            .try_send(Inbound::Messages(self.messages, peer, in_core))
        {
            Ok(()) => Ok(None),
            Err(TrySendError::Full(Inbound::Messages(messages, _, in_core))) => Ok(Some(Held {
                messages,
                in_core: Some(in_core),
            })),
            Err(_) => Err(()),
        }
    }
}

/// Reads at most [`READ_CHUNK`] bytes onto the end of `buf`.
async fn read_chunk<R: AsyncRead + Unpin>(reader: &mut R, buf: &mut BytesMut) -> io::Result<usize> {
    reader.read_buf(&mut buf.limit(READ_CHUNK)).await
}

/// Writes `queued` (and what else is queued meanwhile is for the next round) with as few
/// writes as the size allows; `out` is the scratch buffer, left empty.
async fn write_queued<W: AsyncWrite + Unpin>(
    writer: &mut W,
    queued: &mut Vec<Bytes>,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    out.clear();
    for bytes in queued.drain(..) {
        if !out.is_empty() && out.len() + bytes.len() > WRITE_CHUNK {
            writer.write_all(out).await?;
            out.clear();
        }
        out.extend_from_slice(&bytes);
    }
    if !out.is_empty() {
        writer.write_all(out).await?;
    }
    out.clear();
    Ok(())
}

/// One thing found at the front of a stream buffer, in the order it came.
// Messages are nearly every item: boxing them would cost an allocation each.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(super) enum Framed {
    /// A complete message, parsed.
    Message(Incoming),
    /// A CRLF ping to answer with a CRLF.
    Pong,
    /// A complete message the wire layer refused; the stream goes on after it.
    Refused(wire::Rejection),
}

/// What [`frame_all`] took from a stream buffer.
#[derive(Debug)]
pub(super) struct FramedAll {
    pub items: Vec<Framed>,
    /// The stream cannot go on (no usable Content-Length, too large, not UTF-8): the
    /// connection closes after answering this, if it can be answered.
    pub broken: Option<wire::Rejection>,
}

/// Frames and parses every complete message at the front of `buf` (RFC 3261 §18.3) and takes
/// them out of it, keep-alives included; what stays is the start of the next message. Sans-IO:
/// the connection task feeds it each read.
pub(super) fn frame_all(buf: &mut BytesMut, max_message_size: usize) -> FramedAll {
    let mut items = Vec::new();
    loop {
        match wire::frame_stream(buf, max_message_size) {
            Ok(Frame::Incomplete) => {
                return FramedAll {
                    items,
                    broken: None,
                };
            }
            Ok(Frame::KeepAlive { skip, pong }) => {
                buf.advance(skip);
                if pong {
                    items.push(Framed::Pong);
                }
            }
            Ok(Frame::Message { len }) => {
                let parsed = wire::parse_stream_message(&buf[..len]);
                buf.advance(len);
                items.push(match parsed {
                    Ok(incoming) => Framed::Message(incoming),
                    Err(rejection) => Framed::Refused(rejection),
                });
            }
            Err(rejection) => {
                return FramedAll {
                    items,
                    broken: Some(rejection),
                };
            }
        }
    }
}

/// Counts a message the wire layer refused; the reply to send, if any.
fn refuse(links: &Links, peer: Peer, rejection: wire::Rejection) -> Option<Vec<u8>> {
    tracing::debug!(addr = %peer.addr, reason = %rejection.reason, "SIP message refused");
    match rejection.reply {
        Some(reply) => {
            links.counters.rejected.fetch_add(1, Ordering::Relaxed);
            Some(reply)
        }
        None => {
            if rejection.error != wire::WireError::KeepAlive {
                links.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
            None
        }
    }
}

/// The WebSocket handshake (RFC 7118 §4.1): the client must offer the `sip` subprotocol, and
/// the answer names it.
#[allow(clippy::result_large_err)] // the error type is tungstenite's callback contract
fn sip_subprotocol(request: &Request, mut response: Response) -> Result<Response, ErrorResponse> {
    let offers_sip = request
        .headers()
        .get_all("Sec-WebSocket-Protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case("sip"));
    if !offers_sip {
        let mut refusal = ErrorResponse::new(Some(
            "SIP over WebSocket needs the \"sip\" subprotocol (RFC 7118)".into(),
        ));
        *refusal.status_mut() = StatusCode::BAD_REQUEST;
        return Err(refusal);
    }
    response
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("sip"));
    Ok(response)
}

async fn accept_websocket<S>(
    stream: S,
    peer: Peer,
    writer: mpsc::Sender<Bytes>,
    writes: mpsc::Receiver<Bytes>,
    links: Links,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let config = WebSocketConfig::default()
        .max_message_size(Some(links.limits.max_message_size))
        .max_frame_size(Some(links.limits.max_message_size));
    let stream = Deadlined::new(stream, links.limits.message_deadline);
    let handshake =
        tokio_tungstenite::accept_hdr_async_with_config(stream, sip_subprotocol, Some(config));
    let mut ws = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            tracing::info!(addr = %peer.addr, "WebSocket handshake refused: {e}");
            return;
        }
        Err(_) => {
            tracing::debug!(addr = %peer.addr, "WebSocket handshake timed out");
            return;
        }
    };
    // The handshake had a deadline of its own.
    ws.get_mut().message_done();
    let id = peer.conn.expect("accepted connections are named");
    if opened(&links, id, peer, writer).await {
        run_websocket(ws, peer, writes, &links).await;
    }
}

/// Runs a WebSocket until it closes, goes idle (no frame at all, pongs included), or the
/// endpoint shuts down.
async fn run_websocket<S>(
    mut ws: WebSocketStream<Deadlined<S>>,
    peer: Peer,
    mut writes: mpsc::Receiver<Bytes>,
    links: &Links,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let id = peer.conn.expect("connections are named");
    let idle_timeout = links.limits.idle_timeout.max(WS_PING_INTERVAL * 3);
    let mut idle = Box::pin(tokio::time::sleep(idle_timeout));
    let mut ping = tokio::time::interval(WS_PING_INTERVAL);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = links.shutdown.cancelled() => break,
            _ = &mut idle => {
                tracing::debug!(addr = %peer.addr, "closing idle SIP WebSocket");
                break;
            }
            _ = ping.tick() => {
                if ws.send(Message::Ping(Bytes::new())).await.is_err() {
                    break;
                }
            }
            Some(bytes) = writes.recv() => {
                // SIP is text; RFC 7118 §5 lets us send it as a text message.
                let message = match std::str::from_utf8(&bytes) {
                    Ok(text) => Message::text(text),
                    Err(_) => Message::Binary(bytes),
                };
                if ws.send(message).await.is_err() {
                    break;
                }
            }
            frame = ws.next() => {
                let Some(Ok(frame)) = frame else { break };
                ws.get_mut().message_done();
                idle.as_mut().reset((Instant::now() + idle_timeout).into());
                let data = match frame {
                    Message::Text(text) => Bytes::from(text),
                    Message::Binary(data) => data,
                    Message::Close(_) => break,
                    Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
                };
                match wire::parse_datagram(&data) {
                    Ok(incoming) => {
                        let inbound = Inbound::Message(Box::new(incoming), peer);
                        if links.inbound.send(inbound).await.is_err() {
                            break;
                        }
                    }
                    Err(rejection) => {
                        if let Some(reply) = refuse(links, peer, rejection) {
                            let text = String::from_utf8_lossy(&reply).into_owned();
                            if ws.send(Message::text(text)).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            }
        }
    }
    if ws.get_ref().expired {
        tracing::debug!(addr = %peer.addr, "closing SIP WebSocket: message not complete in time");
        links.metrics.refused("sip_message_deadline");
    }
    let _ = ws.close(None).await;
    let _ = links.inbound.send(Inbound::Closed(id, peer)).await;
}

/// A stream whose reads fail once a message has been arriving for longer than `deadline`: the
/// first byte read after [`Deadlined::message_done`] starts the clock. For WebSockets, whose
/// frames tungstenite assembles out of our sight.
pub(super) struct Deadlined<S> {
    inner: S,
    deadline: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
    armed: bool,
    /// Whether the deadline passed.
    expired: bool,
}

impl<S> Deadlined<S> {
    fn new(inner: S, deadline: Duration) -> Deadlined<S> {
        Deadlined {
            inner,
            deadline,
            timer: Box::pin(tokio::time::sleep(deadline)),
            armed: false,
            expired: false,
        }
    }

    /// A whole message (or frame) arrived: the next byte starts a new one.
    fn message_done(&mut self) {
        self.armed = false;
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Deadlined<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.armed && this.timer.as_mut().poll(cx).is_ready() {
            this.expired = true;
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "message not complete in time",
            )));
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(read, Poll::Ready(Ok(()))) && buf.filled().len() > before && !this.armed {
            this.armed = true;
            let at = tokio::time::Instant::now() + this.deadline;
            this.timer.as_mut().reset(at);
            // Registers the timer, so that a message that stalls from here on still expires.
            let _ = this.timer.as_mut().poll(cx);
        }
        read
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Deadlined<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 65_535;

    fn options(n: u32) -> Vec<u8> {
        format!(
            "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bK-{n}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:t@127.0.0.1>;tag=t\r\nTo: <sip:127.0.0.1>\r\n\
             Call-ID: batch-{n}\r\nCSeq: {n} OPTIONS\r\nContent-Length: 4\r\n\r\nbody"
        )
        .into_bytes()
    }

    /// The Call-IDs of the messages framed, and whether pongs were due, in order.
    fn seen(framed: &FramedAll) -> Vec<String> {
        framed
            .items
            .iter()
            .map(|item| match item {
                Framed::Message(Incoming::Request(_, meta)) => meta.call_id.to_string(),
                Framed::Pong => "pong".to_string(),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_read_of_many_messages_is_one_batch_in_order() {
        let mut stream: Vec<u8> = Vec::new();
        for n in 1..=40 {
            stream.extend(options(n));
        }
        stream.extend(b"\r\n\r\n");
        let split = options(41);
        stream.extend(&split[..split.len() - 3]);
        let mut buf = BytesMut::from(&stream[..]);
        let framed = frame_all(&mut buf, MAX);
        assert!(framed.broken.is_none());
        let mut expected: Vec<String> = (1..=40).map(|n| format!("batch-{n}")).collect();
        expected.push("pong".into());
        assert_eq!(seen(&framed), expected);
        // The start of the message split across reads stays, and completes with the next read.
        assert_eq!(&buf[..], &split[..split.len() - 3]);
        buf.extend_from_slice(&split[split.len() - 3..]);
        buf.extend_from_slice(&options(42)[..10]);
        let framed = frame_all(&mut buf, MAX);
        assert_eq!(seen(&framed), ["batch-41"]);
        assert_eq!(&buf[..], &options(42)[..10]);
    }

    #[test]
    fn a_batch_keeps_what_came_before_a_stream_that_cannot_go_on() {
        let mut stream = options(1);
        stream.extend(b"OPTIONS sip:127.0.0.1 SIP/2.0\r\nCall-ID: x\r\n\r\n");
        stream.extend(options(2));
        let mut buf = BytesMut::from(&stream[..]);
        let framed = frame_all(&mut buf, MAX);
        assert_eq!(seen(&framed), ["batch-1"]);
        assert_eq!(
            framed.broken.map(|r| r.error),
            Some(wire::WireError::MissingContentLength)
        );
    }
}
