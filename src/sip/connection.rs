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

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
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

/// What connection tasks tell the core task.
pub(super) enum Inbound {
    /// An accepted connection: messages for `peer` go to the writer.
    Opened(ConnId, Peer, mpsc::Sender<Bytes>),
    Message(Box<Incoming>, Peer),
    Closed(ConnId, Peer),
    /// A connection we opened could not be made: requests waiting for `peer` fail now.
    Failed(Peer),
}

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
async fn run_stream<S>(stream: S, peer: Peer, mut writes: mpsc::Receiver<Bytes>, links: &Links)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let id = peer.conn.expect("connections are named");
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut buf = BytesMut::with_capacity(8192);
    let limits = links.limits;
    let mut idle = Box::pin(tokio::time::sleep(limits.idle_timeout));
    // Armed while part of a message is buffered: when that message has to be complete.
    let mut deadline = Box::pin(tokio::time::sleep(limits.message_deadline));
    let mut in_message = false;
    'conn: loop {
        tokio::select! {
            _ = links.shutdown.cancelled() => break,
            _ = &mut idle => {
                tracing::debug!(addr = %peer.addr, "closing idle SIP connection");
                break;
            }
            _ = &mut deadline, if in_message => {
                tracing::debug!(addr = %peer.addr, "closing SIP connection: message not complete in time");
                links.metrics.refused("sip_message_deadline");
                break;
            }
            Some(bytes) = writes.recv() => {
                if writer.write_all(&bytes).await.is_err() {
                    break;
                }
                idle.as_mut().reset((Instant::now() + limits.idle_timeout).into());
            }
            read = reader.read_buf(&mut buf) => {
                match read {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let now = Instant::now();
                idle.as_mut().reset((now + limits.idle_timeout).into());
                loop {
                    match wire::frame_stream(&buf, limits.max_message_size) {
                        Ok(Frame::Incomplete) => break,
                        Ok(Frame::KeepAlive { skip, pong }) => {
                            in_message = false;
                            let _ = buf.split_to(skip);
                            // RFC 5626 §3.5.1: a double-CRLF ping gets a single-CRLF pong.
                            if pong && writer.write_all(b"\r\n").await.is_err() {
                                break 'conn;
                            }
                        }
                        Ok(Frame::Message { len }) => {
                            in_message = false;
                            let message = buf.split_to(len);
                            match wire::parse_stream_message(&message) {
                                Ok(incoming) => {
                                    let inbound = Inbound::Message(Box::new(incoming), peer);
                                    if links.inbound.send(inbound).await.is_err() {
                                        break 'conn;
                                    }
                                }
                                Err(rejection) => {
                                    if let Some(reply) = refuse(links, peer, rejection)
                                        && writer.write_all(&reply).await.is_err()
                                    {
                                        break 'conn;
                                    }
                                }
                            }
                        }
                        Err(rejection) => {
                            // The stream cannot be resynchronised: answer if we can, then close.
                            if let Some(reply) = refuse(links, peer, rejection) {
                                let _ = writer.write_all(&reply).await;
                            }
                            break 'conn;
                        }
                    }
                }
                // What is left is the start of the next message: its clock starts now.
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
    let _ = links.inbound.send(Inbound::Closed(id, peer)).await;
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
