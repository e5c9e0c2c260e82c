//! A sequence of datagrams on one leg's RTP port, through the receive path its reactor runs:
//! RTCP (multiplexed, RFC 5761) to the RTCP session, RTP parsed, transcoded or mapped, rewritten
//! for the bridged leg, and observed (statistics, telephone-events, G.711 decoding).
//!
//! Input: one byte choosing the bridge (transcoding, telephone-event mapping), then frames of
//! `[length][milliseconds since the previous one][datagram]`.
//!
//! Properties: a payload lies inside its packet after the header; a forwarded packet keeps its
//! length and version and carries the output SSRC, and its payload is untouched unless it was
//! transcoded; digits are DTMF characters; and the report the leg then writes is RTCP the leg
//! itself reads.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use tandem::fuzzing::{Datagram, MediaPath};
use tandem::media::engine::Forwarding;
use tandem::sip::sdp::Codec;

const OUT_SSRC: u32 = 0x5441_4e44;
const EVENT_PT: u8 = 101;
const EVENT_OUT_PT: u8 = 96;

fuzz_target!(|data: &[u8]| {
    let Some((&config, mut rest)) = data.split_first() else {
        return;
    };
    let transcode = match config & 3 {
        1 => Some((Codec::Pcmu, Codec::Pcma)),
        2 => Some((Codec::Pcma, Codec::Pcmu)),
        _ => None,
    };
    let telephone_event = (config & 4 != 0).then_some((EVENT_PT, EVENT_OUT_PT));
    let forwarding = Forwarding {
        transcode,
        telephone_event,
    };
    let mut path = MediaPath::new(forwarding, OUT_SSRC, EVENT_PT);
    let start = Instant::now();
    let mut now = start;

    while let [len, gap, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        now += Duration::from_millis(u64::from(*gap));
        let (packet, next) = tail.split_at(len);
        rest = next;

        let received = packet.to_vec();
        let mut packet = packet.to_vec();
        match path.handle(now, &mut packet) {
            Datagram::Rtp { payload, forwarded } => {
                assert!(payload.start >= 12 && payload.start <= payload.end);
                assert!(payload.end <= received.len());
                if forwarded {
                    assert_eq!(packet.len(), received.len());
                    assert_eq!(packet[0] >> 6, 2);
                    assert_eq!(packet[8..12], OUT_SSRC.to_be_bytes());
                    let pt = received[1] & 0x7f;
                    let transcoded = transcode
                        .is_some_and(|(from, into)| from != into && pt == from.payload_type());
                    if !transcoded {
                        assert_eq!(packet[payload.clone()], received[payload]);
                    }
                }
            }
            Datagram::Rtcp(_) | Datagram::Malformed => {}
        }
        while let Some(digit) = path.poll_digit() {
            assert!(matches!(digit.digit, '0'..='9' | '*' | '#' | 'A'..='D'));
        }
    }

    let mut report = Vec::new();
    let len = path
        .report(now, 0x8000_0000_0000_0000, &mut report)
        .expect("a report");
    assert_eq!(len, report.len());
    let mut reader = MediaPath::new(Forwarding::default(), 1, EVENT_PT);
    assert_eq!(reader.handle(now, &mut report), Datagram::Rtcp(Ok(())));
});
