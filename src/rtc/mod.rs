//! WebRTC legs (str0m): one UDP socket for all peers, ICE-lite, DTLS-SRTP, audio and video.
//!
//! Tandem is always the offerer and always ICE-lite: it has one host candidate (the `[rtc]
//! listen` socket, advertised as `public_ip` when set) and answers the client's connectivity
//! checks; the client does the checking, with the STUN/TURN servers of `ice_servers`.
//!
//! The parts, each usable alone:
//! - [`peer::Peer`] wraps one str0m `Rtc`: offers, answers, renegotiation, consent, media in and
//!   out. Sans-IO: `handle_input(now, input)`, then `poll_output()` until it returns a timeout.
//! - [`demux::Demux`] routes a datagram of the shared socket to its peer: by the ICE ufrag of a
//!   binding request, then by the source address it came from. Sans-IO.
//! - [`transcode`] turns Opus into G.711 and back, and [`rtp_bridge`] re-packetises a peer's
//!   audio as plain RTP towards a SIP media leg. Sans-IO.
//! - [`RtcService`] is the tokio driver: a reader task owns the socket's receive side and the
//!   demux; each peer is one task owning its `PeerConnection`, fed by a bounded channel. A panic inside a
//!   peer's task ends that leg alone (reported as [`CloseReason::Panicked`]).
//!
//! The public handle:
//! ```text
//! RtcService::start(&config::RtcConfig) -> io::Result<(RtcService, mpsc::Receiver<RtcEvent>)>
//! create_peer(&self, MediaSpec) -> Result<(PeerId, String /* offer */), RtcError>
//! accept_answer(&self, PeerId, String) -> Result<(), RtcError>
//! accept_offer(&self, PeerId, String) -> Result<String /* answer */, RtcError>
//! set_video(&self, PeerId, bool) -> Result<String /* offer */, RtcError>
//! connect(&self, PeerId, PeerId) -> Result<(), RtcError>
//! bridge_rtp(&self, PeerId, SocketAddr, G711) -> Result<SocketAddr, RtcError>
//! close(&self, PeerId)
//! local_addr(&self) -> SocketAddr; ice_servers(&self) -> &[String]; peers(&self) -> usize
//! counters(&self) -> RtcStats
//! ```
//! Control calls are answered by the peer's own task, so they never race its media.

pub mod demux;
mod driver;
pub(crate) mod metrics;
pub mod peer;
mod rtp_bridge;
pub mod transcode;

#[cfg(test)]
mod testing;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

pub use driver::RtcService;

/// G.711, the codecs of SIP legs a WebRTC peer can be bridged to.
pub use crate::media::codec::Codec as G711;

/// A WebRTC peer, unique for the life of the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub u64);

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rtc-{}", self.0)
    }
}

/// What a peer's session carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MediaSpec {
    pub audio: bool,
    pub video: bool,
    /// The peer's audio will be bridged to a G.711 SIP leg. PCMU is offered before Opus, so a
    /// client that keeps the offer's order in its answer (RFC 3264 §6.1; browsers do) sends and
    /// takes G.711 and the gateway passes its audio through instead of transcoding it. A client
    /// that takes Opus all the same is asked for narrowband Opus (`maxplaybackrate=8000`, RFC
    /// 7587 §6.1): G.711 keeps nothing wider, and a narrowband frame costs the gateway a quarter
    /// of a fullband one to decode.
    pub facing_g711: bool,
}

/// Why a leg ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// No STUN consent check from the client for `consent_timeout_s` (RFC 7675 §5.1).
    ConsentTimeout,
    /// ICE did not connect within `consent_timeout_s` of the answer.
    IceFailed,
    /// The DTLS handshake or record layer failed (bad fingerprint, handshake error).
    DtlsFailed(String),
    /// The client closed DTLS (close_notify).
    RemoteClosed,
    /// We closed it ([`RtcService::close`], or the service shutting down).
    ClosedByUs,
    /// The peer's task panicked; the other legs go on.
    Panicked,
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::ConsentTimeout => f.write_str("ICE consent expired"),
            CloseReason::IceFailed => f.write_str("ICE did not connect"),
            CloseReason::DtlsFailed(why) => write!(f, "DTLS failed: {why}"),
            CloseReason::RemoteClosed => f.write_str("closed by the client"),
            CloseReason::ClosedByUs => f.write_str("closed"),
            CloseReason::Panicked => f.write_str("internal error"),
        }
    }
}

/// What the service reports to whoever owns the interactions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtcEvent {
    /// ICE and DTLS are up: media flows.
    Connected { peer: PeerId },
    /// The client renegotiated video away (its offer or answer made the video m-line inactive
    /// or rejected it); audio goes on.
    VideoDropped { peer: PeerId },
    /// The leg is gone and forgotten; its id is never reused.
    Closed { peer: PeerId, reason: CloseReason },
}

/// Why a control call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RtcError {
    /// `max_peers` legs are open already.
    #[error("too many WebRTC peers")]
    TooManyPeers,
    /// No such peer, or it has closed.
    #[error("no such WebRTC peer")]
    NoSuchPeer,
    /// The client's SDP does not parse or does not fit our offer; the text says why.
    #[error("bad SDP: {0}")]
    BadSdp(String),
    /// An answer arrived while no offer of ours was pending, or an offer while one was.
    #[error("no offer is pending")]
    NoPendingOffer,
    /// An offer of ours still awaits its answer; one negotiation at a time.
    #[error("an offer is pending")]
    OfferPending,
    /// The session already is as asked; there is nothing to offer.
    #[error("nothing to change")]
    Unchanged,
    /// The operation needs an audio m-line (bridging) or the peer has none.
    #[error("the peer has no audio")]
    NoAudio,
    /// A local socket could not be opened.
    #[error("socket: {0}")]
    Io(String),
}

/// Counters for the admin metrics; plain atomics, updated on the packet path without locks.
#[derive(Debug, Default)]
struct RtcCounters {
    pub peers_open: AtomicU64,
    pub peers_panicked: AtomicU64,
    pub packets_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub packets_out: AtomicU64,
    pub bytes_out: AtomicU64,
    /// Datagrams no peer claimed (see [`demux`]).
    pub dropped_unknown: AtomicU64,
    /// Datagrams or forwarded media dropped because a peer's queue was full.
    pub dropped_queue_full: AtomicU64,
    /// Plain RTP packets sent to and received from SIP media legs.
    pub rtp_bridge_out: AtomicU64,
    pub rtp_bridge_in: AtomicU64,
    /// Audio of a bridged peer that did not become RTP towards its SIP leg (undecodable, a
    /// codec the leg cannot take, or a send the socket refused): every audio packet the peer
    /// receives is either in `rtp_bridge_out` or here.
    pub rtp_bridge_out_dropped: AtomicU64,
    /// RTP from the SIP leg that the client is not sent: other payload types (telephone-events,
    /// comfort noise), malformed packets, audio while the client takes no codec of ours, or a
    /// write str0m refused. Every packet in `rtp_bridge_in` is played or counted here.
    pub rtp_bridge_in_dropped: AtomicU64,
    /// Opus packets from bridged peers, by the audio band they code: what a wider one costs
    /// to decode is wasted on a G.711 leg (see [`MediaSpec::facing_g711`]).
    pub opus_narrowband_in: AtomicU64,
    pub opus_wideband_in: AtomicU64,
}

/// A snapshot of [`RtcCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RtcStats {
    pub peers_open: u64,
    pub peers_panicked: u64,
    pub packets_in: u64,
    pub bytes_in: u64,
    pub packets_out: u64,
    pub bytes_out: u64,
    pub dropped_unknown: u64,
    pub dropped_queue_full: u64,
    pub rtp_bridge_out: u64,
    pub rtp_bridge_in: u64,
    pub rtp_bridge_out_dropped: u64,
    pub rtp_bridge_in_dropped: u64,
    pub opus_narrowband_in: u64,
    pub opus_wideband_in: u64,
}

impl RtcCounters {
    pub fn snapshot(&self) -> RtcStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        RtcStats {
            peers_open: get(&self.peers_open),
            peers_panicked: get(&self.peers_panicked),
            packets_in: get(&self.packets_in),
            bytes_in: get(&self.bytes_in),
            packets_out: get(&self.packets_out),
            bytes_out: get(&self.bytes_out),
            dropped_unknown: get(&self.dropped_unknown),
            dropped_queue_full: get(&self.dropped_queue_full),
            rtp_bridge_out: get(&self.rtp_bridge_out),
            rtp_bridge_in: get(&self.rtp_bridge_in),
            rtp_bridge_out_dropped: get(&self.rtp_bridge_out_dropped),
            rtp_bridge_in_dropped: get(&self.rtp_bridge_in_dropped),
            opus_narrowband_in: get(&self.opus_narrowband_in),
            opus_wideband_in: get(&self.opus_wideband_in),
        }
    }
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}
