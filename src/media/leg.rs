//! One leg of the relay: the state its reactor owns, the part other threads share, and the
//! hot path over one received batch.
//!
//! A leg's reactor ([`super::reactor`]) owns everything that changes per packet (the latch,
//! the stream rewriter of the direction it forwards, RTCP statistics, the DTMF detector, the
//! recording feed) so nothing on the hot path is locked. Each `recvmmsg` batch from the leg's
//! RTP socket goes down one straight line, packet by packet over a [`Rtp`] context, and what
//! goes on leaves in one `sendmmsg`:
//!
//! ```text
//! per packet: parse → latch verdict → route (Drop | Echo | Forward: map PT, transcode,
//!             rewrite in place)
//! per batch:  send (one sendmmsg) → counters → observe each packet (RTCP statistics, DTMF,
//!             recording)
//! ```
//!
//! The route is loaded once per batch, so a batch goes to one place. Forwarded packets leave
//! through the *destination* leg's socket, so its peer sees one address (symmetric RTP), or,
//! when that peer is a socket of this process, are handed to it in memory from that address
//! ([`super::local`]); the
//! destination may belong to another reactor thread, so its counters are atomics, and its own
//! reactor reads them when it writes its sender report.
//!
//! Every datagram that reaches a leg's socket ends in exactly one counter: relayed (the
//! destination's `packets_out`), `dropped` (no peer yet, or the outgoing socket buffer full),
//! `rejected` (latch), `malformed`, swallowed by a `Drop` route (counted in `packets_in`
//! only), RTCP (`rtcp_in`), or, when the kernel dropped it before we read, `overflowed`.

use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::{ArcSwap, ArcSwapOption};
use tokio::sync::mpsc;

use super::batch::{BATCH, RecvBatch};
use super::dtmf::DtmfDetector;
use super::engine::{Forwarding, LegPort, MediaEvent, Route};
use super::g711;
use super::latch::{Latch, Verdict};
use super::local;
use super::recorder::{RecordingFeed, Side};
use super::rewrite::StreamRewriter;
use super::rtcp::{self, RtcpSession, ntp_timestamp, report_interval};
use super::sockets::LegSockets;
use crate::media::codec::Codec;

/// G.711 and the telephone-events we negotiate run at 8 kHz.
pub(crate) const CLOCK_RATE: u32 = 8000;

/// RTCP bandwidth, octets per second: 5% of a G.711 call's ~80 kbit/s (RFC 3550 §6.2).
const RTCP_BANDWIDTH: f64 = 500.0;

/// Per-leg counters. Receive-side counters are written by the leg's own reactor; send-side
/// counters by whichever reactor forwards towards the leg. Relaxed atomics: they are statistics.
#[derive(Debug, Default)]
pub struct LegCounters {
    pub packets_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub packets_out: AtomicU64,
    pub bytes_out: AtomicU64,
    /// Packets from a source the latch refused (hijack attempts, strays).
    pub rejected: AtomicU64,
    /// Datagrams that are neither valid RTP nor valid RTCP.
    pub malformed: AtomicU64,
    /// Packets dropped because the outgoing socket buffer was full or the peer is unknown.
    pub dropped: AtomicU64,
    /// Datagrams the kernel dropped because the leg's receive queue was full.
    pub overflowed: AtomicU64,
    /// RTCP packets received.
    pub rtcp_in: AtomicU64,
    /// RTCP reports sent.
    pub rtcp_out: AtomicU64,
    /// RTP payload bytes sent, for the sender report's octet count (RFC 3550 §6.4.1).
    pub(crate) payload_bytes_out: AtomicU64,
    /// The RTP timestamp of the latest packet sent, and when (ms since the engine started).
    pub(crate) last_sent_ts: AtomicU32,
    pub(crate) last_sent_ms: AtomicU64,
    /// When the last accepted packet arrived, in ms since the engine started.
    pub(crate) last_rx_ms: AtomicU64,
}

/// The part of a leg that its reactor, the reactors forwarding towards it and control share.
#[derive(Debug)]
pub struct LegShared {
    pub id: LegPort,
    /// The leg's sockets; others send through its RTP socket towards its peer.
    pub(crate) sockets: Arc<LegSockets>,
    /// Our SSRC towards this leg's peer: what forwarded packets are rewritten to.
    pub(crate) ssrc: u32,
    pub(crate) route: ArcSwap<Route>,
    /// Bumped with every route change, so the reactor notices a new route with one load.
    pub(crate) route_generation: AtomicU64,
    /// Where packets towards this leg's peer go, as the leg's latch says (published by its
    /// reactor; cleared when the leg closes, so nothing more is sent through its socket).
    pub(crate) destination: ArcSwapOption<SocketAddr>,
    pub counters: LegCounters,
    /// The RTCP view of the leg, refreshed by its reactor at each report sent or received.
    pub(crate) quality: ArcSwapOption<rtcp::LegStats>,
    /// Whether silence counts against the inactivity timeout.
    pub(crate) watched: AtomicBool,
    pub(crate) inactive_reported: AtomicBool,
}

/// Where a leg's reactor reports to the engine.
#[derive(Debug, Default)]
pub(crate) struct EngineCounters {
    /// Media events lost because the receiver did not keep up.
    pub events_dropped: AtomicU64,
    /// Datagrams that arrived on the ports of a closed leg (in flight when it closed, or sent
    /// to an idle port later), read and dropped.
    pub stray: AtomicU64,
}

/// What a reactor lends its legs: the engine's clock origin and channels, and buffers reused
/// for every packet.
pub(crate) struct Context {
    pub epoch: Instant,
    pub events: mpsc::Sender<MediaEvent>,
    pub engine: Arc<EngineCounters>,
    /// Decoded audio for a recording.
    pcm: Vec<i16>,
    /// An RTCP report being written.
    report: Vec<u8>,
    /// The packets of the current batch that were accepted, by their index in the batch.
    accepted: [Option<Rtp>; BATCH],
    /// The indices of the packets of the current batch that go out.
    out: [u8; BATCH],
}

impl Context {
    pub(crate) fn new(
        epoch: Instant,
        events: mpsc::Sender<MediaEvent>,
        engine: Arc<EngineCounters>,
    ) -> Context {
        Context {
            epoch,
            events,
            engine,
            pcm: Vec::with_capacity(1024),
            report: Vec::with_capacity(256),
            accepted: std::array::from_fn(|_| None),
            out: [0; BATCH],
        }
    }

    fn now_ms(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_millis() as u64
    }

    /// Hands an event to control without waiting; a full channel drops it, counted.
    fn emit(&self, event: MediaEvent) {
        if self.events.try_send(event).is_err() {
            self.engine.events_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The per-packet context: when a packet arrived, its fixed header fields and payload position
/// (RFC 3550 §5.1), and what its payload holds now.
#[derive(Debug, Clone)]
pub(crate) struct Rtp {
    pub(crate) pt: u8,
    pub(crate) seq: u16,
    pub(crate) ts: u32,
    pub(crate) ssrc: u32,
    /// The payload, between CSRCs and header extension and any padding.
    pub(crate) payload: Range<usize>,
    /// The G.711 law of the payload, if it is G.711 (it changes when transcoded).
    pub(crate) codec: Option<Codec>,
}

impl Rtp {
    pub(crate) fn parse(packet: &[u8]) -> Option<Rtp> {
        if packet.len() < 12 || packet[0] >> 6 != 2 {
            return None;
        }
        let mut start = 12 + 4 * usize::from(packet[0] & 0x0f);
        if packet[0] & 0x10 != 0 {
            let words = packet.get(start + 2..start + 4)?;
            start += 4 + 4 * usize::from(u16::from_be_bytes([words[0], words[1]]));
        }
        let mut end = packet.len();
        if packet[0] & 0x20 != 0 {
            end = end.checked_sub(usize::from(packet[end - 1]))?;
        }
        if start > end {
            return None;
        }
        let pt = packet[1] & 0x7f;
        Some(Rtp {
            pt,
            seq: u16::from_be_bytes([packet[2], packet[3]]),
            ts: u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]),
            ssrc: u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]),
            payload: start..end,
            codec: codec_of(pt),
        })
    }
}

/// RTCP multiplexed on the RTP port is told apart by its packet type, 200–204 (RFC 5761 §4).
pub(crate) fn is_rtcp(packet: &[u8]) -> bool {
    packet.len() >= 8 && packet[0] >> 6 == 2 && (200..=204).contains(&packet[1])
}

fn codec_of(pt: u8) -> Option<Codec> {
    match pt {
        0 => Some(Codec::Pcmu),
        8 => Some(Codec::Pcma),
        _ => None,
    }
}

fn set_payload_type(packet: &mut [u8], pt: u8) {
    packet[1] = (packet[1] & 0x80) | (pt & 0x7f);
}

/// Applies `forwarding` to a packet bound elsewhere and rewrites its header in place.
/// Telephone events are mapped, never transcoded (RFC 4733 events are not audio).
pub(crate) fn prepare_forward(
    forwarding: Forwarding,
    rewriter: &mut StreamRewriter,
    now: Instant,
    packet: &mut [u8],
    rtp: &mut Rtp,
) -> bool {
    match (forwarding.telephone_event, forwarding.transcode) {
        (Some((from, out)), _) if rtp.pt == from => set_payload_type(packet, out),
        (_, Some((from, into))) if rtp.pt == from.payload_type() && from != into => {
            g711::transcode_in_place(&mut packet[rtp.payload.clone()], from, into);
            set_payload_type(packet, into.payload_type());
            rtp.codec = Some(into);
        }
        _ => {}
    }
    rewriter.rewrite(now, packet).is_ok()
}

/// What control asks of a leg; its reactor applies it between batches.
#[derive(Debug)]
pub(crate) enum Control {
    /// The peer's SDP names a new address (RFC 7362 §4: latching starts over from it).
    Resignal(Option<SocketAddr>),
    /// Report digits of this telephone-event payload type, or stop.
    DetectDtmf(Option<u8>),
    /// Push this leg's audio into a recording as `Side`, or stop.
    Record(Option<(RecordingFeed, Side)>),
}

/// What a reactor owns of one open leg.
pub(crate) struct Leg {
    pub shared: Arc<LegShared>,
    latch: Latch,
    session: RtcpSession,
    /// The route generation the rewriter belongs to.
    route_generation: u64,
    rewriter: Option<StreamRewriter>,
    dtmf: Option<(u8, DtmfDetector)>,
    recording: Option<(RecordingFeed, Side)>,
    /// The peer sent RTCP on the RTP port: report there too (RFC 5761).
    mux: bool,
    /// Where the peer's RTCP came from (symmetric RTCP, RFC 4961).
    rtcp_source: Option<SocketAddr>,
    /// Send counters already handed to the RTCP session.
    reported_packets: u64,
    reported_bytes: u64,
    /// Whether where this leg's packets go is a socket of ours ([`local`]).
    local: local::Lookup,
}

impl Leg {
    pub(crate) fn new(shared: Arc<LegShared>, latch: Latch, session: RtcpSession) -> Leg {
        Leg {
            shared,
            latch,
            session,
            // The route starts at generation 0 and is `Drop`: nothing to rewrite yet.
            route_generation: 0,
            rewriter: None,
            dtmf: None,
            recording: None,
            mux: false,
            rtcp_source: None,
            reported_packets: 0,
            reported_bytes: 0,
            local: local::Lookup::default(),
        }
    }

    /// The hot path: the first `received` datagrams of `batch`, read from this leg's RTP socket
    /// at `now`. See the module docs.
    pub(crate) fn relay(
        &mut self,
        batch: &mut RecvBatch,
        received: usize,
        now: Instant,
        cx: &mut Context,
    ) {
        let now_ms = cx.now_ms(now);
        let Leg {
            shared,
            latch,
            session,
            route_generation,
            rewriter,
            mux,
            local,
            ..
        } = self;
        let shared: &LegShared = shared;
        let counters = &shared.counters;
        let generation = shared.route_generation.load(Ordering::Acquire);
        let route = shared.route.load();
        if generation != *route_generation {
            *route_generation = generation;
            *rewriter = match &**route {
                Route::Forward { to, .. } => Some(StreamRewriter::new(to.ssrc, CLOCK_RATE)),
                _ => None,
            };
        }

        let (mut packets_in, mut bytes_in, mut rejected, mut malformed, mut dropped) =
            (0u64, 0u64, 0u64, 0u64, 0u64);
        let mut out = 0;
        for i in 0..received {
            if batch.truncated(i) {
                malformed += 1;
                continue;
            }
            let Some((packet, source)) = batch.packet(i) else {
                malformed += 1;
                continue;
            };
            if is_rtcp(packet) {
                if latch.destination() == Some(source) {
                    *mux = true;
                    handle_rtcp(shared, session, now, packet);
                } else {
                    rejected += 1;
                }
                continue;
            }
            let Some(mut rtp) = Rtp::parse(packet) else {
                malformed += 1;
                continue;
            };

            // Verdict: symmetric RTP with hijack protection (RFC 7362).
            match latch.check(now, source, rtp.ssrc) {
                Verdict::Accept => {}
                Verdict::Latched { to } => shared.destination.store(Some(Arc::new(to))),
                Verdict::Reject => {
                    rejected += 1;
                    continue;
                }
            }
            packets_in += 1;
            bytes_in += packet.len() as u64;

            // Output: prepared in place now, sent with the rest of the batch.
            let goes = match (&**route, rewriter.as_mut()) {
                (Route::Drop, _) => false,
                (Route::Echo, _) => {
                    // The echo is our stream: it carries the SSRC our RTCP reports describe (RFC
                    // 3550 §8.2: a peer that got its own SSRC back would take it for a collision).
                    packet[8..12].copy_from_slice(&shared.ssrc.to_be_bytes());
                    true
                }
                (Route::Forward { forwarding, .. }, Some(rewriter)) => {
                    let ready = prepare_forward(*forwarding, rewriter, now, packet, &mut rtp);
                    if !ready {
                        dropped += 1;
                    }
                    ready
                }
                (Route::Forward { .. }, None) => {
                    dropped += 1;
                    false
                }
            };
            if goes {
                cx.out[out] = i as u8;
                out += 1;
            }
            cx.accepted[i] = Some(rtp);
        }

        // Send what goes on, through the destination leg's socket towards its peer.
        if out > 0 {
            let to: &LegShared = match &**route {
                Route::Forward { to, .. } => to,
                _ => shared,
            };
            let sent = match &*to.destination.load() {
                Some(peer) => match local.inbox(**peer) {
                    // One of our own sockets: handed over in memory, in order, until one is
                    // refused (as `sendmmsg` stops at a full socket).
                    Some(inbox) => {
                        let from = local::source(to.sockets.rtp_addr, **peer);
                        let mut sent = 0;
                        for &i in &cx.out[..out] {
                            match batch.packet(usize::from(i)) {
                                Some((packet, _)) if local::hand(inbox, from, packet) => sent += 1,
                                _ => break,
                            }
                        }
                        sent
                    }
                    None => batch
                        .send(to.sockets.rtp_fd(), **peer, &cx.out[..out])
                        .unwrap_or(0),
                },
                None => 0,
            };
            dropped += (out - sent) as u64;
            if sent > 0 {
                let (mut bytes, mut payload_bytes, mut last_ts) = (0u64, 0u64, 0u32);
                for &i in &cx.out[..sent] {
                    let i = usize::from(i);
                    if let (Some((packet, _)), Some(rtp)) = (batch.packet(i), &cx.accepted[i]) {
                        bytes += packet.len() as u64;
                        payload_bytes += rtp.payload.len() as u64;
                        last_ts = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
                    }
                }
                let c = &to.counters;
                c.packets_out.fetch_add(sent as u64, Ordering::Relaxed);
                c.bytes_out.fetch_add(bytes, Ordering::Relaxed);
                c.payload_bytes_out
                    .fetch_add(payload_bytes, Ordering::Relaxed);
                c.last_sent_ts.store(last_ts, Ordering::Relaxed);
                c.last_sent_ms.store(now_ms, Ordering::Relaxed);
            }
        }
        drop(route);

        if packets_in > 0 {
            counters.packets_in.fetch_add(packets_in, Ordering::Relaxed);
            counters.bytes_in.fetch_add(bytes_in, Ordering::Relaxed);
            counters.last_rx_ms.store(now_ms, Ordering::Relaxed);
        }
        for (counter, n) in [
            (&counters.rejected, rejected),
            (&counters.malformed, malformed),
            (&counters.dropped, dropped),
        ] {
            if n > 0 {
                counter.fetch_add(n, Ordering::Relaxed);
            }
        }

        // Observations, after the batch is on its way.
        for i in 0..received {
            let Some(rtp) = cx.accepted[i].take() else {
                continue;
            };
            let Some((packet, _)) = batch.packet(i) else {
                continue;
            };
            self.observe(now, &rtp, &packet[rtp.payload.clone()], cx);
        }
    }

    /// RTCP statistics, DTMF and the recording, for one accepted packet.
    fn observe(&mut self, now: Instant, rtp: &Rtp, payload: &[u8], cx: &mut Context) {
        self.session
            .on_rtp_received(now, rtp.ssrc, rtp.seq, rtp.ts, CLOCK_RATE, payload.len());
        if let Some((pt, detector)) = &mut self.dtmf
            && rtp.pt == *pt
            && detector.handle_packet(rtp.ts, payload).is_ok()
        {
            while let Some(digit) = detector.poll_digit() {
                cx.emit(MediaEvent::Dtmf {
                    leg: self.shared.id,
                    digit: digit.digit,
                    duration_ms: digit.duration_ms,
                });
            }
        }
        if let (Some((feed, side)), Some(codec)) = (&self.recording, rtp.codec) {
            cx.pcm.clear();
            g711::decode(codec, payload, &mut cx.pcm);
            feed.push(now, *side, &cx.pcm);
        }
    }

    /// A datagram from the RTCP socket. Symmetric RTCP: answer where the peer's reports come
    /// from, but only from the host the media is latched to.
    pub(crate) fn on_rtcp_datagram(&mut self, now: Instant, source: SocketAddr, packet: &[u8]) {
        let trusted = self.latch.destination().map(|d| d.ip()) == Some(source.ip());
        if trusted {
            self.rtcp_source = Some(source);
            handle_rtcp(&self.shared, &mut self.session, now, packet);
        } else {
            self.shared
                .counters
                .rejected
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn apply(&mut self, message: Control, cx: &mut Context) {
        match message {
            Control::Resignal(signalled) => {
                self.latch.resignal(signalled);
                self.shared
                    .destination
                    .store(self.latch.destination().map(Arc::new));
            }
            Control::DetectDtmf(pt) => {
                self.flush_dtmf(cx);
                self.dtmf = pt.map(|pt| (pt, DtmfDetector::new(CLOCK_RATE)));
            }
            Control::Record(recording) => self.recording = recording,
        }
    }

    fn flush_dtmf(&mut self, cx: &mut Context) {
        if let Some((_, detector)) = &mut self.dtmf {
            detector.flush();
            while let Some(digit) = detector.poll_digit() {
                cx.emit(MediaEvent::Dtmf {
                    leg: self.shared.id,
                    digit: digit.digit,
                    duration_ms: digit.duration_ms,
                });
            }
        }
    }

    /// The leg is closing: a digit still held is reported, and nothing more is sent towards
    /// its peer through its socket.
    pub(crate) fn close(mut self, cx: &mut Context) {
        self.flush_dtmf(cx);
        self.shared.destination.store(None);
    }

    pub(crate) fn next_report_in(&self) -> Duration {
        report_interval(
            &self.session.interval_params(RTCP_BANDWIDTH),
            rand::random::<f64>(),
        )
    }

    /// Sends a compound SR or RR with SDES (RFC 3550 §6.1) to the peer's RTCP address: where
    /// its RTCP comes from, else the RTP port when it multiplexes, else RTP port + 1 (§11).
    pub(crate) fn send_report(&mut self, now: Instant, cx: &mut Context) {
        // What was forwarded through this leg's socket since the last report.
        let c = &self.shared.counters;
        let packets = c.packets_out.load(Ordering::Relaxed);
        let bytes = c.payload_bytes_out.load(Ordering::Relaxed);
        if packets > self.reported_packets {
            let at = cx.epoch + Duration::from_millis(c.last_sent_ms.load(Ordering::Relaxed));
            self.session.on_rtp_sent(
                at,
                u32::try_from(packets - self.reported_packets).unwrap_or(u32::MAX),
                usize::try_from(bytes - self.reported_bytes).unwrap_or(usize::MAX),
                c.last_sent_ts.load(Ordering::Relaxed),
            );
            self.reported_packets = packets;
            self.reported_bytes = bytes;
        }
        let Some(rtp_peer) = self.latch.destination() else {
            return;
        };
        let sockets = &self.shared.sockets;
        let (socket, to) = match (self.mux, self.rtcp_source) {
            (true, _) => (&sockets.rtp, rtp_peer),
            (false, Some(source)) => (&sockets.rtcp, source),
            (false, None) => (
                &sockets.rtcp,
                SocketAddr::new(rtp_peer.ip(), rtp_peer.port().wrapping_add(1)),
            ),
        };
        cx.report.clear();
        let ntp = ntp_timestamp(SystemTime::now());
        if self.session.build_report(now, ntp, &mut cx.report).is_ok()
            && socket.send_to(&cx.report, to).is_ok()
        {
            c.rtcp_out.fetch_add(1, Ordering::Relaxed);
        }
        publish(&self.shared, &self.session);
    }
}

/// An RTCP packet from the peer, on either port.
fn handle_rtcp(shared: &LegShared, session: &mut RtcpSession, now: Instant, packet: &[u8]) {
    let counters = &shared.counters;
    counters.rtcp_in.fetch_add(1, Ordering::Relaxed);
    if session.handle_rtcp(now, packet).is_err() {
        counters.malformed.fetch_add(1, Ordering::Relaxed);
        return;
    }
    publish(shared, session);
}

fn publish(shared: &LegShared, session: &RtcpSession) {
    shared.quality.store(Some(Arc::new(session.stats())));
}
