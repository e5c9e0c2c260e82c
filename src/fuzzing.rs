//! Ways in for the fuzz targets under `fuzz/`, to parsers the crate keeps private. Each runs its
//! parser the way the real caller does, minus sockets and clocks; none of this is an API.

use std::ops::Range;
use std::time::Instant;

use crate::api::customer::{ClientEvents, NewChat};
use crate::media::dtmf::{Digit, DtmfDetector};
use crate::media::engine::Forwarding;
use crate::media::g711;
use crate::media::leg::{Rtp, is_rtcp, prepare_forward};
use crate::media::rewrite::StreamRewriter;
use crate::media::rtcp::{RtcpError, RtcpSession};
use crate::sip::sdp::CLOCK_RATE;

/// What [`MediaPath::handle`] made of one datagram.
#[derive(Debug, PartialEq, Eq)]
pub enum Datagram {
    /// RTCP multiplexed on the RTP port (RFC 5761), read by the leg's RTCP session.
    Rtcp(Result<(), RtcpError>),
    /// An RTP packet: where its payload lies in the packet (as received), and whether it was
    /// ready to forward once transcoded and rewritten.
    Rtp {
        payload: Range<usize>,
        forwarded: bool,
    },
    /// Neither: the leg counts it as malformed.
    Malformed,
}

/// One leg's receive path, as its reactor runs it for a leg bridged to another: RTCP to the
/// session; RTP parsed, transcoded or mapped and rewritten in place for the other leg, then
/// observed (RTCP statistics, telephone-events, G.711 decoding for the recorder).
#[derive(Debug)]
pub struct MediaPath {
    forwarding: Forwarding,
    rewriter: StreamRewriter,
    session: RtcpSession,
    dtmf: (u8, DtmfDetector),
    pcm: Vec<i16>,
}

impl MediaPath {
    /// A path forwarding with `forwarding` as `out_ssrc`, detecting telephone-events of
    /// payload type `dtmf_pt`.
    pub fn new(forwarding: Forwarding, out_ssrc: u32, dtmf_pt: u8) -> MediaPath {
        MediaPath {
            forwarding,
            rewriter: StreamRewriter::new(out_ssrc, CLOCK_RATE),
            session: RtcpSession::new(out_ssrc ^ 1, "fuzz@tandem", CLOCK_RATE)
                .expect("a short CNAME"),
            dtmf: (dtmf_pt, DtmfDetector::new(CLOCK_RATE)),
            pcm: Vec::new(),
        }
    }

    /// Runs one datagram received at `now`, editing it in place as the leg does before sending.
    pub fn handle(&mut self, now: Instant, packet: &mut [u8]) -> Datagram {
        if is_rtcp(packet) {
            return Datagram::Rtcp(self.session.handle_rtcp(now, packet));
        }
        let Some(mut rtp) = Rtp::parse(packet) else {
            return Datagram::Malformed;
        };
        let payload = rtp.payload.clone();
        let (pt, ssrc, seq, ts) = (rtp.pt, rtp.ssrc, rtp.seq, rtp.ts);
        let forwarded = prepare_forward(self.forwarding, &mut self.rewriter, now, packet, &mut rtp);
        let body = &packet[payload.clone()];
        self.session
            .on_rtp_received(now, ssrc, seq, ts, CLOCK_RATE, body.len());
        if pt == self.dtmf.0 {
            let _ = self.dtmf.1.handle_packet(ts, body);
        }
        if let Some(codec) = rtp.codec {
            self.pcm.clear();
            g711::decode(codec, body, &mut self.pcm);
        }
        Datagram::Rtp { payload, forwarded }
    }

    /// The next telephone-event digit detected.
    pub fn poll_digit(&mut self) -> Option<Digit> {
        self.dtmf.1.poll_digit()
    }

    /// Appends the leg's next compound RTCP report to `out`.
    pub fn report(
        &mut self,
        now: Instant,
        ntp: u64,
        out: &mut Vec<u8>,
    ) -> Result<usize, RtcpError> {
        self.session.build_report(now, ntp, out)
    }
}

/// Reads a `POST chats` body as the customer API does.
pub fn new_chat_body(body: &[u8]) -> Result<(), serde_json::Error> {
    serde_json::from_slice::<NewChat>(body).map(drop)
}

/// Reads a `POST chats/{id}/events` body as the customer API does (its events are then read one
/// by one with [`crate::api::wire::parse_client_event`]).
pub fn client_events_body(body: &[u8]) -> Result<(), serde_json::Error> {
    serde_json::from_slice::<ClientEvents>(body).map(drop)
}
