//! One leg of the relay: the state its task shares with the rest of the engine, and the task.
//!
//! The task owns everything that changes per packet (the latch, the stream rewriter of the
//! direction it forwards, RTCP statistics, the DTMF detector, the recording feed) so nothing on
//! the hot path is locked. It waits on four things, RTP first:
//!
//! ```text
//! select! { biased; RTP readable | RTCP readable | control message | report timer }
//! ```
//!
//! A readable RTP socket is drained in batches with `try_recv_from` into one buffer the task
//! owns, and each packet goes down one straight line over a [`Rtp`] context:
//!
//! ```text
//! parse → latch verdict → counters → route (Drop | Echo | Forward: map PT, transcode,
//! rewrite, send) → observe (RTCP statistics, DTMF, recording)
//! ```
//!
//! Forwarded packets leave through the *destination* leg's socket, so its peer sees one address
//! (symmetric RTP); the destination's counters are atomics for that reason, and the destination
//! leg's task reads them when it writes its sender report.

use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::{ArcSwap, ArcSwapOption};
use std::os::fd::AsRawFd;
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::batch::{self, RecvBatch};
use super::dtmf::DtmfDetector;
use super::engine::{Forwarding, LegId, MediaEvent, Route};
use super::g711;
use super::latch::{Latch, Verdict};
use super::recorder::{RecordingFeed, Side};
use super::rewrite::StreamRewriter;
use super::rtcp::{self, RtcpSession, ntp_timestamp, report_interval};
use crate::sip::sdp::Codec;

/// G.711 and the telephone-events we negotiate run at 8 kHz.
pub(crate) const CLOCK_RATE: u32 = 8000;

/// Datagrams read per wake-up before the other branches get a turn.
const BATCH: usize = 64;

/// RTCP bandwidth, octets per second: 5% of a G.711 call's ~80 kbit/s (RFC 3550 §6.2).
const RTCP_BANDWIDTH: f64 = 500.0;

/// Large enough for any RTP or RTCP datagram we relay.
const BUFFER: usize = 2048;

/// Per-leg counters. Receive-side counters are written by the leg's own task; send-side
/// counters by whichever task forwards towards the leg. Relaxed atomics: they are statistics.
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

/// The part of a leg that its task, the tasks forwarding towards it and control share.
#[derive(Debug)]
pub struct LegShared {
    pub id: LegId,
    pub(crate) rtp: UdpSocket,
    /// Our SSRC towards this leg's peer: what forwarded packets are rewritten to.
    pub(crate) ssrc: u32,
    pub(crate) route: ArcSwap<Route>,
    /// Bumped with every route change, so the task notices a new route with one load.
    pub(crate) route_generation: AtomicU64,
    /// Where packets towards this leg's peer go, as the leg's latch says (published by its task).
    pub(crate) destination: ArcSwapOption<SocketAddr>,
    pub counters: LegCounters,
    /// The RTCP view of the leg, refreshed by its task at each report sent or received.
    pub(crate) quality: ArcSwapOption<rtcp::LegStats>,
    /// Whether silence counts against the inactivity timeout.
    pub(crate) watched: AtomicBool,
    pub(crate) inactive_reported: AtomicBool,
}

impl LegShared {
    /// Sends `packet` to this leg's peer from this leg's socket (so the peer sees one address).
    /// Never waits: a full socket buffer drops the packet, as the network would.
    fn send_to_peer(&self, packet: &[u8], payload_len: usize, now_ms: u64) -> bool {
        let Some(to) = &*self.destination.load() else {
            return false;
        };
        if self.rtp.try_send_to(packet, **to).is_err() {
            return false;
        }
        let c = &self.counters;
        c.packets_out.fetch_add(1, Ordering::Relaxed);
        c.bytes_out
            .fetch_add(packet.len() as u64, Ordering::Relaxed);
        c.payload_bytes_out
            .fetch_add(payload_len as u64, Ordering::Relaxed);
        let ts = u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]);
        c.last_sent_ts.store(ts, Ordering::Relaxed);
        c.last_sent_ms.store(now_ms, Ordering::Relaxed);
        true
    }
}

/// What control asks of a leg's task; applied between packets.
#[derive(Debug)]
pub(crate) enum Control {
    /// The peer's SDP names a new address (RFC 7362 §4: latching starts over from it).
    Resignal(Option<SocketAddr>),
    /// Report digits of this telephone-event payload type, or stop.
    DetectDtmf(Option<u8>),
    /// Push this leg's audio into a recording as `Side`, or stop.
    Record(Option<(RecordingFeed, Side)>),
    /// End the task (the leg is closing).
    Close,
}

/// Where a leg's task reports to the engine.
#[derive(Debug, Default)]
pub(crate) struct EngineCounters {
    /// Media events lost because the receiver did not keep up.
    pub events_dropped: AtomicU64,
}

/// The per-packet context: when a packet arrived, its fixed header fields and payload position
/// (RFC 3550 §5.1), and what its payload holds now.
#[derive(Debug, Clone)]
struct Rtp {
    now: Instant,
    /// `now` in ms since the engine started, as the shared counters keep time.
    now_ms: u64,
    pt: u8,
    seq: u16,
    ts: u32,
    ssrc: u32,
    /// The payload, between CSRCs and header extension and any padding.
    payload: Range<usize>,
    /// The G.711 law of the payload, if it is G.711 (it changes when transcoded).
    codec: Option<Codec>,
}

impl Rtp {
    fn parse(now: Instant, now_ms: u64, packet: &[u8]) -> Option<Rtp> {
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
            now,
            now_ms,
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
fn is_rtcp(packet: &[u8]) -> bool {
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

/// Applies `forwarding` to a packet bound for `to`, rewrites its header and sends it.
/// Telephone events are mapped, never transcoded (RFC 4733 events are not audio).
fn forward(
    to: &LegShared,
    forwarding: Forwarding,
    rewriter: &mut StreamRewriter,
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
    rewriter.rewrite(rtp.now, packet).is_ok()
        && to.send_to_peer(packet, rtp.payload.len(), rtp.now_ms)
}

/// Hands an event to control without waiting; a full channel drops it, counted.
fn emit(events: &mpsc::Sender<MediaEvent>, engine: &EngineCounters, event: MediaEvent) {
    if events.try_send(event).is_err() {
        engine.events_dropped.fetch_add(1, Ordering::Relaxed);
    }
}

/// The task of one leg; see the module docs.
pub(crate) struct LegTask {
    pub leg: Arc<LegShared>,
    pub rtcp: UdpSocket,
    pub control: mpsc::UnboundedReceiver<Control>,
    pub state: LegState,
}

/// What the task owns and changes per packet.
pub(crate) struct LegState {
    pub epoch: Instant,
    pub latch: Latch,
    pub session: RtcpSession,
    pub events: mpsc::Sender<MediaEvent>,
    pub engine: Arc<EngineCounters>,
    /// The route generation the rewriter belongs to.
    pub route_generation: u64,
    pub rewriter: Option<StreamRewriter>,
    pub dtmf: Option<(u8, DtmfDetector)>,
    pub recording: Option<(RecordingFeed, Side)>,
    /// Decoded audio for the recording, reused for every packet.
    pub pcm: Vec<i16>,
    /// The peer sent RTCP on the RTP port: report there too (RFC 5761).
    pub mux: bool,
    /// Where the peer's RTCP came from (symmetric RTCP, RFC 4961).
    pub rtcp_source: Option<SocketAddr>,
    /// Send counters already handed to the RTCP session.
    pub reported_packets: u64,
    pub reported_bytes: u64,
    pub report: Vec<u8>,
}

impl LegTask {
    pub async fn run(self) {
        let LegTask {
            leg,
            rtcp,
            mut control,
            mut state,
        } = self;
        let mut buf = vec![0u8; BUFFER];
        let mut batch = RecvBatch::default();
        let timer = tokio::time::sleep(state.next_report_in());
        tokio::pin!(timer);
        loop {
            tokio::select! {
                biased;
                ready = leg.rtp.readable() => {
                    // Control sent before these packets arrived applies to them.
                    while let Ok(message) = control.try_recv() {
                        if matches!(message, Control::Close) {
                            state.close(&leg);
                            return;
                        }
                        state.apply(&leg, message);
                    }
                    if ready.is_ok() {
                        state.drain_rtp(&leg, &mut batch);
                    }
                }
                ready = rtcp.readable() => {
                    if ready.is_ok() {
                        state.drain_rtcp(&leg, &rtcp, &mut buf);
                    }
                }
                message = control.recv() => match message {
                    Some(Control::Close) | None => {
                        state.close(&leg);
                        return;
                    }
                    Some(message) => state.apply(&leg, message),
                },
                () = &mut timer => {
                    state.send_report(&leg, &rtcp, Instant::now());
                    timer.as_mut().reset(tokio::time::Instant::now() + state.next_report_in());
                }
            }
        }
    }
}

impl LegState {
    /// Reads what is queued, a few datagrams per system call. A short batch means the queue
    /// was empty: the closure then reports `WouldBlock`, so tokio clears the readiness it saw
    /// before the call (a datagram arriving after it raises readiness again) and no extra empty
    /// read is needed to learn that.
    fn drain_rtp(&mut self, leg: &LegShared, batch: &mut RecvBatch) {
        let fd = leg.rtp.as_raw_fd();
        for _ in 0..BATCH / batch::BATCH {
            let mut received = 0;
            let outcome = leg.rtp.try_io(Interest::READABLE, || {
                received = batch.recv(fd)?;
                if received < batch::BATCH {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok(())
            });
            let now = Instant::now();
            for i in 0..received {
                if let Some((packet, source)) = batch.packet(i) {
                    self.on_datagram(leg, now, source, packet);
                }
            }
            if outcome.is_err() {
                return;
            }
        }
    }

    fn drain_rtcp(&mut self, leg: &LegShared, rtcp: &UdpSocket, buf: &mut [u8]) {
        for _ in 0..BATCH {
            match rtcp.try_recv_from(buf) {
                Ok((len, source)) => {
                    // Symmetric RTCP: answer where the peer's reports come from, but only from
                    // the host the media is latched to.
                    let trusted = self.latch.destination().map(|d| d.ip()) == Some(source.ip());
                    if trusted {
                        self.rtcp_source = Some(source);
                        self.on_rtcp(leg, Instant::now(), &buf[..len]);
                    } else {
                        leg.counters.rejected.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(_) => return,
            }
        }
    }

    /// The per-packet path: one straight line, see the module docs.
    fn on_datagram(
        &mut self,
        leg: &LegShared,
        now: Instant,
        source: SocketAddr,
        packet: &mut [u8],
    ) {
        let counters = &leg.counters;
        if is_rtcp(packet) {
            if self.latch.destination() == Some(source) {
                self.mux = true;
                self.on_rtcp(leg, now, packet);
            } else {
                counters.rejected.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        let now_ms = now.saturating_duration_since(self.epoch).as_millis() as u64;
        let Some(mut rtp) = Rtp::parse(now, now_ms, packet) else {
            counters.malformed.fetch_add(1, Ordering::Relaxed);
            return;
        };

        // Verdict: symmetric RTP with hijack protection (RFC 7362).
        match self.latch.check(now, source, rtp.ssrc) {
            Verdict::Accept => {}
            Verdict::Latched { to } => leg.destination.store(Some(Arc::new(to))),
            Verdict::Reject => {
                counters.rejected.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        counters.packets_in.fetch_add(1, Ordering::Relaxed);
        counters
            .bytes_in
            .fetch_add(packet.len() as u64, Ordering::Relaxed);
        counters.last_rx_ms.store(now_ms, Ordering::Relaxed);

        // Output.
        let generation = leg.route_generation.load(Ordering::Acquire);
        let route = leg.route.load();
        if generation != self.route_generation {
            self.route_generation = generation;
            self.rewriter = match &**route {
                Route::Forward { to, .. } => Some(StreamRewriter::new(to.ssrc, CLOCK_RATE)),
                _ => None,
            };
        }
        let sent = match (&**route, self.rewriter.as_mut()) {
            (Route::Drop, _) => true,
            (Route::Echo, _) => {
                // The echo is our stream: it carries the SSRC our RTCP reports describe (RFC 3550
                // §8.2: a peer that got its own SSRC back would take it for a collision).
                packet[8..12].copy_from_slice(&leg.ssrc.to_be_bytes());
                leg.send_to_peer(packet, rtp.payload.len(), now_ms)
            }
            (Route::Forward { to, forwarding }, Some(rewriter)) => {
                forward(to, *forwarding, rewriter, packet, &mut rtp)
            }
            (Route::Forward { .. }, None) => false,
        };
        drop(route);
        if !sent {
            counters.dropped.fetch_add(1, Ordering::Relaxed);
        }

        // Observations, after the packet is on its way.
        let payload = &packet[rtp.payload.clone()];
        self.session
            .on_rtp_received(now, rtp.ssrc, rtp.seq, rtp.ts, CLOCK_RATE, payload.len());
        if let Some((pt, detector)) = &mut self.dtmf
            && rtp.pt == *pt
            && detector.handle_packet(rtp.ts, payload).is_ok()
        {
            while let Some(digit) = detector.poll_digit() {
                emit(
                    &self.events,
                    &self.engine,
                    MediaEvent::Dtmf {
                        leg: leg.id,
                        digit: digit.digit,
                        duration_ms: digit.duration_ms,
                    },
                );
            }
        }
        if let (Some((feed, side)), Some(codec)) = (&self.recording, rtp.codec) {
            self.pcm.clear();
            g711::decode(codec, payload, &mut self.pcm);
            feed.push(now, *side, &self.pcm);
        }
    }

    fn on_rtcp(&mut self, leg: &LegShared, now: Instant, packet: &[u8]) {
        leg.counters.rtcp_in.fetch_add(1, Ordering::Relaxed);
        if self.session.handle_rtcp(now, packet).is_err() {
            leg.counters.malformed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.publish(leg);
    }

    fn apply(&mut self, leg: &LegShared, message: Control) {
        match message {
            Control::Resignal(signalled) => {
                self.latch.resignal(signalled);
                leg.destination
                    .store(self.latch.destination().map(Arc::new));
            }
            Control::DetectDtmf(pt) => {
                self.flush_dtmf(leg);
                self.dtmf = pt.map(|pt| (pt, DtmfDetector::new(CLOCK_RATE)));
            }
            Control::Record(recording) => self.recording = recording,
            Control::Close => {}
        }
    }

    fn flush_dtmf(&mut self, leg: &LegShared) {
        if let Some((_, detector)) = &mut self.dtmf {
            detector.flush();
            while let Some(digit) = detector.poll_digit() {
                emit(
                    &self.events,
                    &self.engine,
                    MediaEvent::Dtmf {
                        leg: leg.id,
                        digit: digit.digit,
                        duration_ms: digit.duration_ms,
                    },
                );
            }
        }
    }

    fn close(&mut self, leg: &LegShared) {
        self.flush_dtmf(leg);
    }

    fn next_report_in(&self) -> Duration {
        report_interval(
            &self.session.interval_params(RTCP_BANDWIDTH),
            rand::random::<f64>(),
        )
    }

    /// Sends a compound SR or RR with SDES (RFC 3550 §6.1) to the peer's RTCP address: where
    /// its RTCP comes from, else the RTP port when it multiplexes, else RTP port + 1 (§11).
    fn send_report(&mut self, leg: &LegShared, rtcp: &UdpSocket, now: Instant) {
        // What the other leg's task forwarded through this leg's socket since the last report.
        let c = &leg.counters;
        let packets = c.packets_out.load(Ordering::Relaxed);
        let bytes = c.payload_bytes_out.load(Ordering::Relaxed);
        if packets > self.reported_packets {
            let at = self.epoch + Duration::from_millis(c.last_sent_ms.load(Ordering::Relaxed));
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
        let (socket, to) = match (self.mux, self.rtcp_source) {
            (true, _) => (&leg.rtp, rtp_peer),
            (false, Some(source)) => (rtcp, source),
            (false, None) => (
                rtcp,
                SocketAddr::new(rtp_peer.ip(), rtp_peer.port().wrapping_add(1)),
            ),
        };
        self.report.clear();
        let ntp = ntp_timestamp(SystemTime::now());
        if self
            .session
            .build_report(now, ntp, &mut self.report)
            .is_ok()
            && socket.try_send_to(&self.report, to).is_ok()
        {
            c.rtcp_out.fetch_add(1, Ordering::Relaxed);
        }
        self.publish(leg);
    }

    fn publish(&self, leg: &LegShared) {
        leg.quality.store(Some(Arc::new(self.session.stats())));
    }
}
