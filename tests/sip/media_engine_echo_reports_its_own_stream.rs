//! An echo leg (`sip:echo`) sends back what it receives as its own stream: the echoed RTP
//! carries the leg's SSRC, the one its RTCP sender reports describe (RFC 3550 §6.4.1), never
//! the caller's own SSRC (which the caller would take for a collision, §8.2).

use crate::media_common;

use std::time::{Duration, Instant};

use media_common::*;
use rtcp_types::{Compound, Packet};
use tandem::media::engine::Route;

const PHONE_SSRC: u32 = 0x0000_f00d;

#[test]
fn the_echo_and_its_sender_reports_share_one_ssrc() {
    let (mut engine, _events) = engine();
    let phone = Peer::with_rtcp();
    let (leg, addr) = open_leg(&mut engine, Some(phone.addr()));
    engine.set_route(leg, Route::Echo);
    let rtcp = phone.rtcp.as_ref().unwrap();
    rtcp.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    phone
        .rtp
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();

    let mut echoed_ssrc = None;
    let mut reported_ssrc = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seq = 0u16;
    let mut buf = [0u8; 1500];
    while reported_ssrc.is_none() || echoed_ssrc.is_none() {
        assert!(Instant::now() < deadline, "no echo or no sender report");
        let payload = [0x55; 160];
        phone.send(
            &rtp(0, false, seq, 160 * u32::from(seq), PHONE_SSRC, &payload),
            addr,
        );
        seq = seq.wrapping_add(1);
        if let Some((packet, _)) = phone.recv() {
            let ssrc = u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]);
            assert_eq!(&packet[12..], &payload, "the payload comes back unchanged");
            echoed_ssrc = Some(ssrc);
        }
        if let Ok(n) = rtcp.recv(&mut buf) {
            for packet in Compound::parse(&buf[..n]).unwrap() {
                if let Ok(Packet::Sr(sr)) = packet {
                    reported_ssrc = Some(sr.ssrc());
                }
            }
        }
    }
    let echoed = echoed_ssrc.unwrap();
    assert_ne!(echoed, PHONE_SSRC, "the caller's own SSRC never comes back");
    assert_eq!(
        reported_ssrc,
        Some(echoed),
        "the reports describe the echoed stream"
    );
}
