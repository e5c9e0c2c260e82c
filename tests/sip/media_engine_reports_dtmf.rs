//! RFC 4733 digits received on a leg become `MediaEvent::Dtmf`, one per key press, from the
//! packet stream SIPp's `dtmf_2833_N.pcap` files play (updates, then the end packet three
//! times), while the leg keeps echoing.

use crate::media_common;

use std::time::Duration;

use media_common::*;
use tandem::media::engine::{MediaEvent, Route};

/// The RTP payloads of SIPp's pcap for `digit`, or the same packets built here when SIPp is
/// not installed: event `digit`, volume 10, duration growing by 320, end at 2240 (280 ms).
fn sipp_dtmf(digit: u8, seq0: u16, ts: u32) -> Vec<Vec<u8>> {
    let path = format!("/usr/share/sip-tester/dtmf_2833_{digit}.pcap");
    if let Ok(pcap) = std::fs::read(&path) {
        let mut packets = Vec::new();
        let mut at = 24;
        while at + 16 <= pcap.len() {
            let len = u32::from_le_bytes(pcap[at + 8..at + 12].try_into().unwrap()) as usize;
            let frame = &pcap[at + 16..at + 16 + len];
            at += 16 + len;
            let ip = 14;
            let udp = ip + usize::from(frame[ip] & 0x0f) * 4;
            let mut p = frame[udp + 8..].to_vec();
            // Our own sequence and timestamp, so that several digits follow each other.
            let i = packets.len() as u16;
            p[2..4].copy_from_slice(&(seq0 + i).to_be_bytes());
            p[4..8].copy_from_slice(&ts.to_be_bytes());
            packets.push(p);
        }
        return packets;
    }
    let mut packets = Vec::new();
    for i in 0..10u16 {
        let end = i >= 7;
        let duration = 320 * i.min(7);
        let d = duration.to_be_bytes();
        let payload = [digit, if end { 0x8a } else { 0x0a }, d[0], d[1]];
        packets.push(rtp(101, i == 0, seq0 + i, ts, 0x5eed, &payload));
    }
    packets
}

#[tokio::test]
async fn each_key_press_is_one_event_and_the_echo_goes_on() {
    let (mut engine, mut events) = engine();
    let phone = Peer::new();
    let (leg, leg_addr) = open_leg(&mut engine, Some(phone.addr()));
    engine.set_route(leg, Route::Echo);
    engine.detect_dtmf(leg, Some(101));

    let mut sent = 0;
    for (n, digit) in [1u8, 5, 9].into_iter().enumerate() {
        let n = n as u16;
        for packet in sipp_dtmf(digit, 100 + 20 * n, 16_000 * u32::from(n + 1)) {
            phone.send(&packet, leg_addr);
            sent += 1;
        }
    }
    let mut digits = String::new();
    while digits.len() < 3 {
        let event = tokio::time::timeout(Duration::from_secs(2), events.recv())
            .await
            .expect("a digit arrives")
            .expect("the engine is running");
        let MediaEvent::Dtmf {
            leg: from,
            digit,
            duration_ms,
        } = event;
        assert_eq!(from, leg);
        assert_eq!(duration_ms, 280);
        digits.push(digit);
    }
    assert_eq!(digits, "159");
    assert_eq!(
        phone.recv_many(sent).len(),
        sent,
        "every event packet is echoed"
    );
    assert_eq!(engine.events_dropped(), 0);
}
