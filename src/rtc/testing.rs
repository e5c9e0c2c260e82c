//! An in-memory network on a virtual clock for WebRTC session tests: Tandem's [`PeerConnection`]s, each
//! facing a str0m client (full ICE, as browsers are), datagrams delivered at once, time moved
//! to the next deadline. Linked legs forward media and keyframe requests as the driver does.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::media::{MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Rtc};

use super::MediaSpec;
use super::peer::{Input, Output, PeerConfig, PeerConnection, PeerEvent};

pub const TANDEM: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1)),
    50000,
);

pub struct Leg {
    pub tandem: PeerConnection,
    pub client: Rtc,
    pub client_addr: SocketAddr,
    pub tandem_events: Vec<PeerEvent>,
    pub client_events: Vec<Event>,
    tandem_timeout: Instant,
    client_timeout: Instant,
    /// While set, the client's datagrams are lost (the app vanished without a word).
    pub cut: bool,
}

impl Leg {
    pub fn connected(&self) -> bool {
        self.tandem.is_connected() && self.client.is_connected()
    }

    /// The client's m-line of `kind` (learnt from our offer).
    pub fn client_mid(&self, kind: MediaKind) -> Option<Mid> {
        self.client_events.iter().rev().find_map(|e| match e {
            Event::MediaAdded(m) if m.kind == kind => Some(m.mid),
            _ => None,
        })
    }
}

pub struct World {
    pub now: Instant,
    pub legs: Vec<Leg>,
    /// Pairs of legs whose Tandem peers forward to each other.
    pub links: Vec<(usize, usize)>,
    pub consent_timeout: Duration,
}

impl World {
    pub fn new(consent_timeout: Duration) -> World {
        World {
            now: Instant::now(),
            legs: Vec::new(),
            links: Vec::new(),
            consent_timeout,
        }
    }

    /// Tandem offers `spec`; the client answers with what `client` supports.
    pub fn add(&mut self, spec: MediaSpec, client: Rtc) -> usize {
        self.add_with(spec, client, |sdp| sdp)
    }

    /// Like [`World::add`], with the client's answer rewritten by `edit` on the wire.
    pub fn add_with(
        &mut self,
        spec: MediaSpec,
        mut client: Rtc,
        edit: impl FnOnce(String) -> String,
    ) -> usize {
        let config = PeerConfig {
            local: TANDEM,
            consent_timeout: self.consent_timeout,
        };
        let (mut tandem, offer) = PeerConnection::offer(spec, config, self.now).unwrap();
        let i = self.legs.len();
        let client_addr: SocketAddr = ([10, 0, 1, i as u8 + 1], 40000).into();
        client.add_local_candidate(Candidate::host(client_addr, "udp").unwrap());
        let offer = str0m::change::SdpOffer::from_sdp_string(&offer).unwrap();
        let answer = client.sdp_api().accept_offer(offer).unwrap();
        tandem
            .accept_answer(self.now, &edit(answer.to_sdp_string()))
            .unwrap();
        self.legs.push(Leg {
            tandem,
            client,
            client_addr,
            tandem_events: Vec::new(),
            client_events: Vec::new(),
            tandem_timeout: self.now,
            client_timeout: self.now,
            cut: false,
        });
        i
    }

    /// Delivers everything in flight, then moves the clock to the next deadline (at least
    /// 1 ms, at most 10 ms on, so tests can interleave media).
    pub fn step(&mut self) {
        let now = self.now;
        for _ in 0..1000 {
            let mut moved = false;
            let mut relay: Vec<(usize, PeerEvent)> = Vec::new();
            for (i, leg) in self.legs.iter_mut().enumerate() {
                loop {
                    match leg.tandem.poll_output() {
                        Output::Transmit(t) => {
                            moved = true;
                            if t.destination == leg.client_addr {
                                let receive = Receive {
                                    proto: Protocol::Udp,
                                    source: TANDEM,
                                    destination: leg.client_addr,
                                    contents: t.contents.as_slice().try_into().unwrap(),
                                };
                                let _ =
                                    leg.client.handle_input(str0m::Input::Receive(now, receive));
                            }
                        }
                        Output::Event(e) => {
                            if matches!(e, PeerEvent::Media(_) | PeerEvent::KeyframeRequest(_)) {
                                relay.push((i, e.clone()));
                            }
                            leg.tandem_events.push(e);
                        }
                        Output::Timeout(t) => {
                            leg.tandem_timeout = t;
                            break;
                        }
                    }
                }
                loop {
                    match leg.client.poll_output() {
                        Ok(str0m::Output::Transmit(t)) => {
                            moved = true;
                            if !leg.cut && t.destination == TANDEM {
                                let input = Input::Datagram {
                                    source: leg.client_addr,
                                    contents: &t.contents,
                                };
                                leg.tandem.handle_input(now, input);
                            }
                        }
                        Ok(str0m::Output::Event(e)) => leg.client_events.push(e),
                        Ok(str0m::Output::Timeout(t)) => {
                            leg.client_timeout = t;
                            break;
                        }
                        Err(e) => panic!("client failed: {e}"),
                    }
                }
            }
            for (from, event) in relay {
                for &(a, b) in &self.links {
                    let to = if a == from {
                        b
                    } else if b == from {
                        a
                    } else {
                        continue;
                    };
                    let peer = &mut self.legs[to].tandem;
                    match &event {
                        PeerEvent::Media(m) => {
                            peer.forward(m);
                        }
                        PeerEvent::KeyframeRequest(k) => {
                            peer.request_keyframe(*k);
                        }
                        _ => {}
                    }
                    moved = true;
                }
            }
            if !moved {
                break;
            }
        }
        let next = self
            .legs
            .iter()
            .flat_map(|l| [l.tandem_timeout, l.client_timeout])
            .min()
            .unwrap_or(now);
        self.now = next.clamp(
            now + Duration::from_millis(1),
            now + Duration::from_millis(10),
        );
        for leg in &mut self.legs {
            leg.tandem.handle_input(self.now, Input::Timeout);
            let _ = leg.client.handle_input(str0m::Input::Timeout(self.now));
        }
    }

    /// Steps until `done` or `limit` of virtual time has passed; whether `done` held.
    pub fn run_until(&mut self, limit: Duration, done: impl Fn(&World) -> bool) -> bool {
        let end = self.now + limit;
        while self.now < end {
            if done(self) {
                return true;
            }
            self.step();
        }
        done(self)
    }

    pub fn run_for(&mut self, span: Duration) {
        let end = self.now + span;
        while self.now < end {
            self.step();
        }
    }
}

/// A client like a browser: full ICE, str0m's default codecs.
pub fn browser() -> Rtc {
    Rtc::builder().build(Instant::now())
}

#[cfg(test)]
mod tests {
    use str0m::format::Codec;
    use str0m::media::{Frequency, KeyframeRequestKind, MediaTime};

    use super::*;
    use crate::rtc::CloseReason;

    const CONSENT: Duration = Duration::from_secs(10);
    const AUDIO: MediaSpec = MediaSpec {
        audio: true,
        video: false,
        facing_g711: false,
    };
    const AUDIO_VIDEO: MediaSpec = MediaSpec {
        audio: true,
        video: true,
        facing_g711: false,
    };

    fn connected(world: &World) -> bool {
        world.legs.iter().all(Leg::connected)
    }

    fn closed(leg: &Leg) -> Option<CloseReason> {
        leg.tandem_events.iter().find_map(|e| match e {
            PeerEvent::Closed(r) => Some(r.clone()),
            _ => None,
        })
    }

    /// Writes one 20 ms audio packet from a leg's client, in the first codec it may send.
    fn client_sends_audio(leg: &mut Leg, seq: u64, now: Instant) -> Codec {
        let mid = leg.client_mid(MediaKind::Audio).expect("client has audio");
        let writer = leg.client.writer(mid).expect("audio writer");
        let params = *writer.payload_params().next().expect("a codec");
        let codec = params.spec().codec;
        let freq = params.spec().clock_rate;
        let time = MediaTime::new(seq * freq.get() as u64 / 50, freq);
        writer
            .write(params.pt(), now, time, vec![seq as u8; 40])
            .unwrap();
        codec
    }

    fn client_sends_video(leg: &mut Leg, seq: u64, now: Instant) {
        let mid = leg.client_mid(MediaKind::Video).expect("client has video");
        let writer = leg.client.writer(mid).expect("video writer");
        let pt = writer
            .payload_params()
            .find(|p| p.spec().codec == Codec::Vp8)
            .expect("VP8")
            .pt();
        // A VP8 key frame header (RFC 6386 §9.1), then filler.
        let mut frame = vec![0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01];
        frame.extend(std::iter::repeat_n(seq as u8, 200));
        let time = MediaTime::new(seq * 3000, Frequency::NINETY_KHZ);
        writer.write(pt, now, time, frame).unwrap();
    }

    fn client_got(leg: &Leg, kind: MediaKind) -> usize {
        leg.client_events
            .iter()
            .filter(|e| matches!(e, Event::MediaData(d) if leg.client.media(d.mid).is_some_and(|m| m.kind() == kind)))
            .count()
    }

    #[test]
    fn an_offer_answered_by_a_browser_connects_and_says_so() {
        let mut world = World::new(CONSENT);
        world.add(AUDIO_VIDEO, browser());
        assert!(world.run_until(Duration::from_secs(5), connected));
        let leg = &mut world.legs[0];
        assert!(
            leg.tandem_events
                .iter()
                .any(|e| matches!(e, PeerEvent::Connected))
        );
        assert!(leg.tandem.has_video());
        // The client (str0m's defaults leave PCMU out) takes Opus, Tandem's first choice.
        let codecs: Vec<Codec> = leg.tandem.audio_codecs().iter().map(|(_, c)| *c).collect();
        assert_eq!(codecs, [Codec::Opus]);
    }

    #[test]
    fn audio_is_forwarded_between_two_connected_peers() {
        let mut world = World::new(CONSENT);
        world.add(AUDIO, browser());
        world.add(AUDIO, browser());
        world.links.push((0, 1));
        assert!(world.run_until(Duration::from_secs(5), connected));
        for seq in 0..50 {
            let now = world.now;
            let codec = client_sends_audio(&mut world.legs[0], seq, now);
            assert_eq!(codec, Codec::Opus);
            world.run_for(Duration::from_millis(20));
        }
        world.run_for(Duration::from_millis(200));
        let heard = client_got(&world.legs[1], MediaKind::Audio);
        assert!(heard >= 40, "client B heard {heard} of 50 packets");
        assert_eq!(
            client_got(&world.legs[0], MediaKind::Audio),
            0,
            "no echo to A"
        );
    }

    #[test]
    fn video_is_forwarded_and_a_pli_reaches_the_sender() {
        let mut world = World::new(CONSENT);
        world.add(AUDIO_VIDEO, browser());
        world.add(AUDIO_VIDEO, browser());
        world.links.push((0, 1));
        assert!(world.run_until(Duration::from_secs(5), connected));
        for seq in 0..20 {
            let now = world.now;
            client_sends_video(&mut world.legs[0], seq, now);
            world.run_for(Duration::from_millis(33));
        }
        assert!(client_got(&world.legs[1], MediaKind::Video) >= 10);

        let mid = world.legs[1].client_mid(MediaKind::Video).unwrap();
        world.legs[1]
            .client
            .writer(mid)
            .unwrap()
            .request_keyframe(None, KeyframeRequestKind::Pli)
            .unwrap();
        let relayed = world.run_until(Duration::from_secs(2), |w| {
            w.legs[0]
                .client_events
                .iter()
                .any(|e| matches!(e, Event::KeyframeRequest(_)))
        });
        assert!(relayed, "client A was never asked for a keyframe");
        assert!(
            world.legs[1]
                .tandem_events
                .iter()
                .any(|e| matches!(e, PeerEvent::KeyframeRequest(_)))
        );
    }

    #[test]
    fn a_client_that_goes_silent_is_closed_for_lack_of_consent() {
        let mut world = World::new(CONSENT);
        world.add(AUDIO, browser());
        assert!(world.run_until(Duration::from_secs(5), connected));
        // A live client keeps consenting: three timeouts later it is still up.
        world.run_for(CONSENT * 3);
        assert_eq!(closed(&world.legs[0]), None);
        world.legs[0].cut = true;
        assert!(world.run_until(CONSENT * 2, |w| closed(&w.legs[0]).is_some()));
        assert_eq!(closed(&world.legs[0]), Some(CloseReason::ConsentTimeout));
    }

    #[test]
    fn a_client_that_never_connects_fails_ice() {
        let mut world = World::new(CONSENT);
        world.add(AUDIO, browser());
        world.legs[0].cut = true;
        assert!(world.run_until(CONSENT * 2, |w| closed(&w.legs[0]).is_some()));
        assert_eq!(closed(&world.legs[0]), Some(CloseReason::IceFailed));
    }

    #[test]
    fn an_answer_spelling_pcmu_as_8000_slash_1_is_accepted() {
        let mut world = World::new(CONSENT);
        let pcmu_only = Rtc::builder()
            .clear_codecs()
            .enable_pcmu(true, false)
            .build(Instant::now());
        world.add_with(AUDIO, pcmu_only, |sdp| {
            assert!(sdp.contains("PCMU/8000\r\n"), "{sdp}");
            sdp.replace("PCMU/8000\r\n", "PCMU/8000/1\r\n")
        });
        let codecs = world.legs[0].tandem.audio_codecs();
        assert_eq!(
            codecs.iter().map(|(_, c)| *c).collect::<Vec<_>>(),
            [Codec::PCMU]
        );
        assert!(world.run_until(Duration::from_secs(5), connected));
    }

    #[test]
    fn the_offer_lets_the_app_key_digits_at_either_audio_clock() {
        let config = PeerConfig {
            local: TANDEM,
            consent_timeout: CONSENT,
        };
        let (_, offer) = PeerConnection::offer(AUDIO, config, Instant::now()).unwrap();
        assert!(
            offer.contains("a=rtpmap:110 telephone-event/48000"),
            "{offer}"
        );
        assert!(
            offer.contains("a=rtpmap:126 telephone-event/8000"),
            "{offer}"
        );
    }

    #[test]
    fn the_audio_codecs_come_in_the_clients_order() {
        let mut world = World::new(CONSENT);
        let opus_first = Rtc::builder()
            .clear_codecs()
            .enable_opus(true, false)
            .enable_pcmu(true, false)
            .build(Instant::now());
        world.add(AUDIO, opus_first);
        let codecs: Vec<Codec> = world.legs[0]
            .tandem
            .audio_codecs()
            .iter()
            .map(|(_, c)| *c)
            .collect();
        assert_eq!(codecs.first(), Some(&Codec::Opus), "{codecs:?}");
        assert!(codecs.contains(&Codec::PCMU), "{codecs:?}");
        // What the bridge to a SIP leg then sends the app: its first choice, Opus.
        let chosen =
            crate::rtc::rtp_bridge::PeerAudio::choose(&world.legs[0].tandem.audio_codecs());
        assert_eq!(chosen.map(|a| a.codec), Some(Codec::Opus));

        let pcmu_first = Rtc::builder()
            .clear_codecs()
            .enable_pcmu(true, false)
            .enable_opus(true, false)
            .build(Instant::now());
        // The client answers with its own preference on top.
        world.add_with(AUDIO, pcmu_first, |sdp| {
            let m_line = sdp
                .lines()
                .find(|l| l.starts_with("m=audio"))
                .unwrap()
                .to_string();
            let formats: Vec<&str> = m_line.split(' ').skip(3).collect();
            let mut reordered: Vec<&str> = formats.iter().copied().filter(|f| *f == "0").collect();
            reordered.extend(formats.iter().copied().filter(|f| *f != "0"));
            let head: Vec<&str> = m_line.split(' ').take(3).collect();
            sdp.replace(
                &m_line,
                &format!("{} {}", head.join(" "), reordered.join(" ")),
            )
        });
        let chosen =
            crate::rtc::rtp_bridge::PeerAudio::choose(&world.legs[1].tandem.audio_codecs());
        assert_eq!(chosen.map(|a| a.codec), Some(Codec::PCMU));
    }

    #[test]
    fn video_can_be_added_later_and_dropped_by_the_client() {
        let mut world = World::new(CONSENT);
        world.add(AUDIO, browser());
        assert!(world.run_until(Duration::from_secs(5), connected));
        assert!(!world.legs[0].tandem.has_video());

        // Tandem offers video; the client accepts it.
        let leg = &mut world.legs[0];
        let offer = leg.tandem.set_video(true).unwrap();
        assert_eq!(
            leg.tandem.set_video(true),
            Err(super::super::RtcError::OfferPending)
        );
        let offer = str0m::change::SdpOffer::from_sdp_string(&offer).unwrap();
        let answer = leg.client.sdp_api().accept_offer(offer).unwrap();
        leg.tandem
            .accept_answer(world.now, &answer.to_sdp_string())
            .unwrap();
        assert!(leg.tandem.has_video());
        world.run_for(Duration::from_millis(100));

        // The client re-offers with video inactive: Tandem reports it dropped.
        let leg = &mut world.legs[0];
        let mid = leg.client_mid(MediaKind::Video).unwrap();
        let mut api = leg.client.sdp_api();
        api.set_direction(mid, str0m::media::Direction::Inactive);
        let (offer, pending) = api.apply().unwrap();
        let answer = leg
            .tandem
            .accept_offer(world.now, &offer.to_sdp_string())
            .unwrap();
        let answer = str0m::change::SdpAnswer::from_sdp_string(&answer).unwrap();
        leg.client.sdp_api().accept_answer(pending, answer).unwrap();
        world.run_for(Duration::from_millis(100));
        let leg = &world.legs[0];
        assert!(!leg.tandem.has_video());
        assert_eq!(
            leg.tandem_events
                .iter()
                .filter(|e| matches!(e, PeerEvent::VideoDropped))
                .count(),
            1
        );
        assert!(leg.connected(), "audio goes on");
    }

    #[test]
    fn garbage_from_the_network_does_not_end_a_leg() {
        let mut world = World::new(CONSENT);
        world.add(AUDIO, browser());
        assert!(world.run_until(Duration::from_secs(5), connected));
        let source = world.legs[0].client_addr;
        let now = world.now;
        for garbage in [
            &[][..],
            &[0u8; 3][..],
            &[0x80; 40][..],
            &[22; 30][..],
            &[0xff; 1200][..],
        ] {
            world.legs[0].tandem.handle_input(
                now,
                Input::Datagram {
                    source,
                    contents: garbage,
                },
            );
        }
        world.run_for(Duration::from_millis(500));
        assert_eq!(closed(&world.legs[0]), None);
    }
}
