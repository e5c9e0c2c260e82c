//! Symmetric RTP ("latching") with hijack protection, for one peer of a relayed call.
//!
//! A peer behind a NAT signals a private or otherwise unreachable address in its SDP, but its
//! packets reach us from the NAT's public mapping. So we send towards wherever its RTP comes
//! from (symmetric RTP, RFC 4961) and learn that address from the first packets: we *latch*
//! onto it (RFC 7362, "media latching"). [`Latch::check`] runs once per received packet and
//! returns a [`Verdict`]; [`Latch::destination`] says where packets towards this peer go.
//!
//! Latching trusts a packet's source address, which anyone who knows our port can send from.
//! RFC 7362's security considerations name the consequences (a third party hijacks the media,
//! receiving the call audio, or injects its own) and advise against latching over the Internet
//! unless they are addressed. rtpengine's answers are the model: `strict-source` accepts only
//! the address the SDP names; `learning` learns the source during a few seconds after the
//! first packet, then commits to it. A leg is one or the other ([`Learning`]), as the
//! signalling decides: a peer whose SIP and SDP agree on its address is strict; one that looks
//! NAT'd (no SDP address yet, a private one, or SIP arriving from elsewhere) learns.
//!
//! Strict: only packets from the signalled address are accepted, ever; before the SDP names
//! one, nothing is.
//!
//! Learning:
//! 1. The first packet latches, whatever its source: the peer may be NAT'd, so the source need
//!    not match the signalled address. It opens a learning window ([`LatchConfig::learn_for`]).
//! 2. Within the window, a packet from the signalled IP address takes the latch from a source
//!    on another IP: a stranger who sent first (ports are random, but a spray may hit one)
//!    loses to the peer the signalling names. After the window the latch is committed.
//! 3. Afterwards only the latched address is accepted. The SSRC may change on that address (a
//!    re-INVITE to another media server behind the same NAT, a phone restarting its stream):
//!    the address is what we trust, not the stream.
//! 4. A source on the latched IP address but another port (the NAT rebinding the peer's
//!    mapping) takes over only when the latched source has been silent for
//!    [`LatchConfig::relatch_after`] *and* the new source has sent
//!    [`LatchConfig::relatch_packets`] consecutive packets (none from any other stranger in
//!    between) with one SSRC. A peer still sending is never displaced, a spray never wins, and
//!    a source on any other IP address never takes over at all.
//!
//! In both modes a packet from the signalled address itself is trusted like the latched one
//! and latches at once. Only a sender spoofing its source address could fake that, and such a
//! sender could equally spoof the latched address, so this opens nothing new; it lets a
//! renegotiated peer ([`Latch::resignal`]) move to its new address at once.
//!
//! Every other packet is rejected and counted ([`Latch::rejected`]). What latching cannot
//! prevent: a sender who spoofs the peer's own address; only authenticated media (ICE consent,
//! SRTP) closes that.
//!
//! The latch is pure: no sockets, no clock. The receive time is an argument and is assumed not
//! to go backwards; if it does, the elapsed time counts as zero.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Whether a leg learns its peer's source or accepts only the signalled address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learning {
    /// Only the address the SDP names (the peer is reached where it says).
    Strict,
    /// The peer may be behind a NAT: its source is learnt from the first packets.
    Nat,
}

impl Learning {
    /// How to treat a peer whose SDP names `signalled` and whose signalling came from
    /// `signalling_source`: it learns when the SDP names no address yet, a private, shared or
    /// unspecified one (RFC 1918, RFC 6598, link-local), or an IP other than the one its SIP
    /// came from; else it is strict.
    pub fn for_peer(
        signalled: Option<SocketAddr>,
        signalling_source: Option<SocketAddr>,
    ) -> Learning {
        let Some(signalled) = signalled else {
            return Learning::Nat;
        };
        let hidden = match signalled.ip() {
            std::net::IpAddr::V4(v4) => {
                let [a, b, ..] = v4.octets();
                v4.is_private()
                    || v4.is_link_local()
                    || v4.is_unspecified()
                    || (a == 100 && (64..128).contains(&b))
            }
            std::net::IpAddr::V6(v6) => {
                v6.is_unspecified() || v6.is_unique_local() || v6.is_unicast_link_local()
            }
        };
        let elsewhere = signalling_source.is_some_and(|s| s.ip() != signalled.ip());
        if hidden || elsewhere {
            Learning::Nat
        } else {
            Learning::Strict
        }
    }
}

/// When another source may take over from the latched one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatchConfig {
    /// How long the latched source must have been silent before another may replace it.
    pub relatch_after: Duration,
    /// How many consecutive packets with one SSRC a new source must send to replace it.
    pub relatch_packets: u32,
    /// How long after the first packet a learning leg may still move to the signalled IP.
    pub learn_for: Duration,
}

impl Default for LatchConfig {
    fn default() -> Self {
        LatchConfig {
            relatch_after: Duration::from_secs(2),
            relatch_packets: 5,
            // rtpengine's learning period.
            learn_for: Duration::from_secs(3),
        }
    }
}

/// What to do with one received packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
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
        /// Until when a learning leg may still move to the signalled IP.
        learning_until: Instant,
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
pub(crate) struct Latch {
    signalled: Option<SocketAddr>,
    learning: Learning,
    config: LatchConfig,
    state: State,
    rejected: u64,
}

impl Latch {
    /// `signalled` is the address from the peer's SDP (`c=` and `m=` port), if known yet.
    pub(crate) fn new(
        signalled: Option<SocketAddr>,
        learning: Learning,
        config: LatchConfig,
    ) -> Latch {
        Latch {
            signalled,
            learning,
            config,
            state: State::Waiting,
            rejected: 0,
        }
    }

    /// Judges one packet received at `now` from `source` carrying `ssrc`.
    pub(crate) fn check(&mut self, now: Instant, source: SocketAddr, ssrc: u32) -> Verdict {
        let (signalled, config, learning) = (self.signalled, self.config, self.learning);
        let from_signalled = Some(source) == signalled;
        let verdict = match &mut self.state {
            State::Latched {
                addr, last_seen, ..
            } if *addr == source => {
                *last_seen = now;
                Verdict::Accept
            }
            _ if from_signalled => Verdict::Latched { to: source },
            State::Waiting if learning == Learning::Nat => Verdict::Latched { to: source },
            State::Waiting => Verdict::Reject,
            State::Latched { .. } if learning == Learning::Strict => Verdict::Reject,
            State::Latched {
                addr,
                learning_until,
                ..
            } if now < *learning_until
                && signalled.is_some_and(|s| s.ip() == source.ip() && s.ip() != addr.ip()) =>
            {
                Verdict::Latched { to: source }
            }
            State::Latched { addr, .. } if addr.ip() != source.ip() => Verdict::Reject,
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
                    Verdict::Latched { to: source }
                } else {
                    Verdict::Reject
                }
            }
        };
        match verdict {
            Verdict::Latched { to } => self.latch(now, to),
            Verdict::Reject => {
                self.rejected += 1;
                // A stranger between a candidate's packets breaks its run.
                if let State::Latched { candidate, .. } = &mut self.state
                    && candidate.is_some_and(|c| c.addr != source)
                {
                    *candidate = None;
                }
            }
            Verdict::Accept => {}
        }
        verdict
    }

    /// Where to send packets towards this peer: the latched address, else the signalled one.
    pub(crate) fn destination(&self) -> Option<SocketAddr> {
        match self.state {
            State::Latched { addr, .. } => Some(addr),
            State::Waiting => self.signalled,
        }
    }

    /// The peer renegotiated (re-INVITE, UPDATE) and now signals `signalled`. The latch stays
    /// where it is until packets arrive from the new address or the move rule allows another.
    pub(crate) fn resignal(&mut self, signalled: Option<SocketAddr>) {
        self.signalled = signalled;
    }

    /// Packets rejected so far.
    #[cfg(test)]
    pub(crate) fn rejected(&self) -> u64 {
        self.rejected
    }

    fn latch(&mut self, now: Instant, addr: SocketAddr) {
        // The learning window opens with the first packet and is not reopened by a move.
        let learning_until = match self.state {
            State::Latched { learning_until, .. } => learning_until,
            State::Waiting => now + self.config.learn_for,
        };
        self.state = State::Latched {
            addr,
            last_seen: now,
            learning_until,
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
        let mut latch = Latch::new(
            Some(addr("10.0.0.5:4000")),
            Learning::Nat,
            LatchConfig::default(),
        );
        assert_eq!(latch.check(now, peer, 1), Verdict::Latched { to: peer });
        latch
    }

    #[test]
    fn the_first_packet_latches_even_from_behind_a_nat() {
        let signalled = addr("192.168.1.20:4000");
        let public = addr("203.0.113.7:61002");
        let mut latch = Latch::new(Some(signalled), Learning::Nat, LatchConfig::default());
        assert_eq!(latch.destination(), Some(signalled));

        let t0 = Instant::now();
        assert_eq!(latch.check(t0, public, 7), Verdict::Latched { to: public });
        assert_eq!(latch.destination(), Some(public));
        assert_eq!(latch.check(t0 + PTIME, public, 7), Verdict::Accept);
        assert_eq!(latch.rejected(), 0);
    }

    #[test]
    fn without_signalled_address_there_is_nowhere_to_send_until_the_first_packet() {
        let mut latch = Latch::new(None, Learning::Nat, LatchConfig::default());
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

    #[test]
    fn a_strict_leg_hears_only_the_signalled_address_even_first() {
        let peer = addr("198.51.100.10:4000");
        let attacker = addr("198.51.100.66:4000");
        let t0 = Instant::now();
        let mut latch = Latch::new(Some(peer), Learning::Strict, LatchConfig::default());
        assert_eq!(latch.check(t0, attacker, 1), Verdict::Reject);
        assert_eq!(latch.destination(), Some(peer));
        assert_eq!(latch.check(t0, peer, 2), Verdict::Latched { to: peer });
        // Long silence and a steady stranger change nothing.
        let mut now = t0 + Duration::from_secs(10);
        for _ in 0..100 {
            now += PTIME;
            assert_eq!(latch.check(now, attacker, 1), Verdict::Reject);
        }
        let rebound = addr("198.51.100.10:4002");
        for _ in 0..100 {
            now += PTIME;
            assert_eq!(latch.check(now, rebound, 2), Verdict::Reject);
        }
        assert_eq!(latch.destination(), Some(peer));
        assert_eq!(latch.rejected(), 201);
        // Without an SDP address nothing is heard at all.
        let mut blind = Latch::new(None, Learning::Strict, LatchConfig::default());
        assert_eq!(blind.check(t0, peer, 1), Verdict::Reject);
        assert_eq!(blind.destination(), None);
    }

    #[test]
    fn a_stranger_who_sent_first_loses_to_the_signalled_ip_while_learning() {
        let signalled = addr("203.0.113.7:4000");
        let nat = addr("203.0.113.7:61002");
        let stranger = addr("198.51.100.66:40000");
        let t0 = Instant::now();
        let mut latch = Latch::new(Some(signalled), Learning::Nat, LatchConfig::default());
        assert_eq!(
            latch.check(t0, stranger, 9),
            Verdict::Latched { to: stranger }
        );
        assert_eq!(
            latch.check(t0 + PTIME, nat, 1),
            Verdict::Latched { to: nat }
        );
        assert_eq!(latch.check(t0 + 2 * PTIME, stranger, 9), Verdict::Reject);
        assert_eq!(latch.destination(), Some(nat));
    }

    #[test]
    fn after_learning_the_latch_is_committed() {
        let signalled = addr("203.0.113.7:4000");
        let stranger = addr("198.51.100.66:40000");
        let late = addr("203.0.113.7:61002");
        let t0 = Instant::now();
        let mut latch = Latch::new(Some(signalled), Learning::Nat, LatchConfig::default());
        assert_eq!(
            latch.check(t0, stranger, 9),
            Verdict::Latched { to: stranger }
        );
        let after = t0 + LatchConfig::default().learn_for;
        assert_eq!(latch.check(after, late, 1), Verdict::Reject);
        assert_eq!(latch.destination(), Some(stranger));
    }

    #[test]
    fn a_source_on_another_ip_never_takes_over_even_after_silence() {
        let peer = addr("203.0.113.7:61002");
        let other = addr("203.0.113.99:61002");
        let t0 = Instant::now();
        let mut latch = latched_at(peer, t0);
        let mut now = t0 + Duration::from_secs(30);
        for _ in 0..500 {
            now += PTIME;
            assert_eq!(latch.check(now, other, 5), Verdict::Reject);
        }
        assert_eq!(latch.destination(), Some(peer));
    }

    #[test]
    fn peers_that_look_natted_learn_and_the_others_are_strict() {
        let public = addr("198.51.100.10:4000");
        let sip_from = |s: &str| Some(addr(s));
        assert_eq!(Learning::for_peer(None, None), Learning::Nat);
        assert_eq!(
            Learning::for_peer(Some(public), sip_from("198.51.100.10:5060")),
            Learning::Strict
        );
        assert_eq!(Learning::for_peer(Some(public), None), Learning::Strict);
        assert_eq!(
            Learning::for_peer(Some(public), sip_from("203.0.113.1:5060")),
            Learning::Nat
        );
        for hidden in [
            "192.168.1.20:4000",
            "10.1.2.3:4000",
            "100.64.0.9:4000",
            "0.0.0.0:4000",
        ] {
            assert_eq!(
                Learning::for_peer(Some(addr(hidden)), None),
                Learning::Nat,
                "{hidden}"
            );
        }
    }
}
