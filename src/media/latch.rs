//! Symmetric RTP ("latching") with hijack protection, for one peer of a relayed call.
//!
//! A peer behind a NAT signals a private or otherwise unreachable address in its SDP, but its
//! packets reach us from the NAT's public mapping. So we send towards wherever its RTP comes
//! from (symmetric RTP, RFC 4961) and learn that address from the first packet: we *latch*
//! onto it (RFC 7362, "media latching"). [`Latch::check`] runs once per received packet and
//! returns a [`Verdict`]; [`Latch::destination`] says where packets towards this peer go.
//!
//! Latching trusts a packet's source address, which anyone who knows our port can send from.
//! RFC 7362's security considerations name the consequences (a third party hijacks the media,
//! receiving the call audio, or injects its own) and advise against latching over the Internet
//! unless they are addressed. rtpengine spans the range of answers: it learns the address
//! during a few seconds after signalling, then commits to it; with `strict-source` it drops
//! every other source from then on, with `media-handover` it follows any new source at once.
//! The policy here sits between the two, following a peer that moved but not a stranger:
//!
//! 1. The first packet latches, whatever its source: the peer may be NAT'd, so the source need
//!    not match the signalled address.
//! 2. Afterwards only the latched address is accepted. The SSRC may change on that address (a
//!    re-INVITE to another media server behind the same NAT, a phone restarting its stream):
//!    the address is what we trust, not the stream.
//! 3. Another source takes over (re-latch) only when the latched source has been silent for
//!    [`LatchConfig::relatch_after`] *and* the new source has sent
//!    [`LatchConfig::relatch_packets`] consecutive packets (none from any other stranger in
//!    between) with one SSRC. The silence condition means a peer that is still sending is never
//!    displaced, while one whose NAT mapping moved or whose media server failed over has gone
//!    quiet at the old address and is followed. The run condition means a spray from many
//!    addresses or with random SSRCs never wins, and neither does a single stray packet.
//! 4. A packet from the signalled address itself is trusted like the latched one and latches at
//!    once. Only a sender spoofing its source address could fake that, and such a sender could
//!    equally spoof the latched address, so this opens nothing new; it lets a renegotiated peer
//!    ([`Latch::resignal`]) move to its new address without waiting out the silence.
//!
//! Every other packet is rejected and counted ([`Latch::rejected`]). What latching cannot
//! prevent: a peer that stops sending (hold with `a=inactive`, or a one-way stream) is
//! "silent", so an attacker who keeps sending may take over after `relatch_after`; only
//! authenticated media (ICE consent, SRTP) closes that.
//!
//! The latch is pure: no sockets, no clock. The receive time is an argument and is assumed not
//! to go backwards; if it does, the elapsed time counts as zero.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// When another source may take over from the latched one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatchConfig {
    /// How long the latched source must have been silent before another may replace it.
    pub relatch_after: Duration,
    /// How many consecutive packets with one SSRC a new source must send to replace it.
    pub relatch_packets: u32,
}

impl Default for LatchConfig {
    fn default() -> Self {
        LatchConfig {
            relatch_after: Duration::from_secs(2),
            relatch_packets: 5,
        }
    }
}

/// What to do with one received packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// From the latched source: forward it.
    Accept,
    /// The latch moved (first packet, a permitted move, or the signalled address): forward it,
    /// and send towards `to` from now on.
    Latched { to: SocketAddr },
    /// Not from the latched source and not allowed to take over: drop it.
    Reject,
}

#[derive(Debug)]
enum State {
    /// No packet yet: we send towards the signalled address, if any.
    Waiting,
    Latched {
        addr: SocketAddr,
        last_seen: Instant,
        /// The run of consecutive packets from one other source and SSRC.
        candidate: Option<Candidate>,
    },
}

#[derive(Debug, Clone, Copy)]
struct Candidate {
    addr: SocketAddr,
    ssrc: u32,
    packets: u32,
}

/// The latching state of one peer's RTP (or RTCP) stream.
#[derive(Debug)]
pub struct Latch {
    signalled: Option<SocketAddr>,
    config: LatchConfig,
    state: State,
    rejected: u64,
}

impl Latch {
    /// `signalled` is the address from the peer's SDP (`c=` and `m=` port), if known yet.
    pub fn new(signalled: Option<SocketAddr>, config: LatchConfig) -> Latch {
        Latch {
            signalled,
            config,
            state: State::Waiting,
            rejected: 0,
        }
    }

    /// Judges one packet received at `now` from `source` carrying `ssrc`.
    pub fn check(&mut self, now: Instant, source: SocketAddr, ssrc: u32) -> Verdict {
        let signalled = self.signalled;
        let config = self.config;
        match &mut self.state {
            State::Waiting => {
                self.latch(now, source);
                Verdict::Latched { to: source }
            }
            State::Latched {
                addr, last_seen, ..
            } if *addr == source => {
                *last_seen = now;
                Verdict::Accept
            }
            State::Latched { .. } if Some(source) == signalled => {
                self.latch(now, source);
                Verdict::Latched { to: source }
            }
            State::Latched {
                last_seen,
                candidate,
                ..
            } => {
                let run = match candidate {
                    Some(c) if c.addr == source && c.ssrc == ssrc => {
                        c.packets = c.packets.saturating_add(1);
                        c.packets
                    }
                    _ => {
                        *candidate = Some(Candidate {
                            addr: source,
                            ssrc,
                            packets: 1,
                        });
                        1
                    }
                };
                let silent = now.saturating_duration_since(*last_seen) >= config.relatch_after;
                if silent && run >= config.relatch_packets {
                    self.latch(now, source);
                    Verdict::Latched { to: source }
                } else {
                    self.rejected += 1;
                    Verdict::Reject
                }
            }
        }
    }

    /// Where to send packets towards this peer: the latched address, else the signalled one.
    pub fn destination(&self) -> Option<SocketAddr> {
        match self.state {
            State::Latched { addr, .. } => Some(addr),
            State::Waiting => self.signalled,
        }
    }

    /// The peer renegotiated (re-INVITE, UPDATE) and now signals `signalled`. The latch stays
    /// where it is until packets arrive from the new address or the move rule allows another.
    pub fn resignal(&mut self, signalled: Option<SocketAddr>) {
        self.signalled = signalled;
    }

    /// Packets rejected so far.
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    fn latch(&mut self, now: Instant, addr: SocketAddr) {
        self.state = State::Latched {
            addr,
            last_seen: now,
            candidate: None,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PTIME: Duration = Duration::from_millis(20);

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn latched_at(peer: SocketAddr, now: Instant) -> Latch {
        let mut latch = Latch::new(Some(addr("10.0.0.5:4000")), LatchConfig::default());
        assert_eq!(latch.check(now, peer, 1), Verdict::Latched { to: peer });
        latch
    }

    #[test]
    fn the_first_packet_latches_even_from_behind_a_nat() {
        let signalled = addr("192.168.1.20:4000");
        let public = addr("203.0.113.7:61002");
        let mut latch = Latch::new(Some(signalled), LatchConfig::default());
        assert_eq!(latch.destination(), Some(signalled));

        let t0 = Instant::now();
        assert_eq!(latch.check(t0, public, 7), Verdict::Latched { to: public });
        assert_eq!(latch.destination(), Some(public));
        assert_eq!(latch.check(t0 + PTIME, public, 7), Verdict::Accept);
        assert_eq!(latch.rejected(), 0);
    }

    #[test]
    fn without_signalled_address_there_is_nowhere_to_send_until_the_first_packet() {
        let mut latch = Latch::new(None, LatchConfig::default());
        assert_eq!(latch.destination(), None);
        let peer = addr("198.51.100.1:5000");
        latch.check(Instant::now(), peer, 1);
        assert_eq!(latch.destination(), Some(peer));
    }

    #[test]
    fn an_attacker_is_rejected_while_the_real_peer_talks() {
        let peer = addr("203.0.113.7:61002");
        let attacker = addr("198.51.100.66:40000");
        let t0 = Instant::now();
        let mut latch = latched_at(peer, t0);

        // Ten seconds of interleaved traffic, the attacker sending four packets per ptime with
        // one steady SSRC, i.e. the most favourable case for it.
        let mut now = t0;
        for _ in 0..500 {
            now += PTIME;
            assert_eq!(latch.check(now, peer, 1), Verdict::Accept);
            for _ in 0..4 {
                assert_eq!(latch.check(now, attacker, 0xbad), Verdict::Reject);
            }
        }
        assert_eq!(latch.rejected(), 2000);
        assert_eq!(latch.destination(), Some(peer));
    }

    #[test]
    fn a_new_source_takes_over_after_the_latched_one_fell_silent() {
        let peer = addr("203.0.113.7:61002");
        let moved = addr("203.0.113.7:61888");
        let t0 = Instant::now();
        let mut latch = latched_at(peer, t0);

        // The NAT mapping changes: the old address goes silent, the new one starts at once and
        // is rejected until the old one has been quiet for `relatch_after`.
        let mut now = t0;
        let mut verdicts = Vec::new();
        while now < t0 + Duration::from_secs(3) {
            now += PTIME;
            verdicts.push((now, latch.check(now, moved, 2)));
        }
        let (moved_at, _) = verdicts
            .iter()
            .find(|(_, v)| *v == Verdict::Latched { to: moved })
            .expect("the latch moved");
        assert_eq!(*moved_at - t0, Duration::from_secs(2));
        assert!(
            verdicts
                .iter()
                .all(|(t, v)| *t >= *moved_at || *v == Verdict::Reject)
        );
        assert!(
            verdicts
                .iter()
                .all(|(t, v)| *t <= *moved_at || *v == Verdict::Accept)
        );
        assert_eq!(latch.destination(), Some(moved));

        // Now the old address is the stranger.
        assert_eq!(latch.check(now + PTIME, peer, 1), Verdict::Reject);
    }

    #[test]
    fn a_spray_of_sources_or_ssrcs_never_takes_over_even_after_silence() {
        let peer = addr("203.0.113.7:61002");
        let t0 = Instant::now();
        let mut latch = latched_at(peer, t0);

        let mut now = t0 + Duration::from_secs(5);
        for i in 0..1000u32 {
            now += Duration::from_millis(1);
            let port = 30000 + (i % 7) as u16;
            let source = SocketAddr::new(addr("198.51.100.66:1").ip(), port);
            assert_eq!(latch.check(now, source, 42), Verdict::Reject);
            let fixed = addr("198.51.100.67:30000");
            assert_eq!(latch.check(now, fixed, i), Verdict::Reject);
        }
        assert_eq!(latch.destination(), Some(peer));
    }

    #[test]
    fn an_ssrc_change_on_the_latched_address_is_accepted() {
        let peer = addr("203.0.113.7:61002");
        let t0 = Instant::now();
        let mut latch = latched_at(peer, t0);
        assert_eq!(latch.check(t0 + PTIME, peer, 0x1111), Verdict::Accept);
        assert_eq!(latch.check(t0 + 2 * PTIME, peer, 0x2222), Verdict::Accept);
        assert_eq!(latch.rejected(), 0);
    }

    #[test]
    fn the_renegotiated_address_latches_at_once() {
        let peer = addr("203.0.113.7:61002");
        let new_server = addr("203.0.113.50:20000");
        let t0 = Instant::now();
        let mut latch = latched_at(peer, t0);
        assert_eq!(latch.check(t0 + PTIME, peer, 1), Verdict::Accept);

        latch.resignal(Some(new_server));
        // Until the new server sends, the latch stays.
        assert_eq!(latch.destination(), Some(peer));
        assert_eq!(
            latch.check(t0 + 2 * PTIME, new_server, 9),
            Verdict::Latched { to: new_server }
        );
        assert_eq!(latch.check(t0 + 3 * PTIME, peer, 1), Verdict::Reject);
    }

    #[test]
    fn time_going_backwards_counts_as_no_silence() {
        let peer = addr("203.0.113.7:61002");
        let other = addr("203.0.113.8:61002");
        let t0 = Instant::now() + Duration::from_secs(60);
        let mut latch = latched_at(peer, t0);
        for _ in 0..10 {
            assert_eq!(
                latch.check(t0 - Duration::from_secs(30), other, 3),
                Verdict::Reject
            );
        }
    }
}
