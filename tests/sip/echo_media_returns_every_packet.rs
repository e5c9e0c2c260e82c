//! `sip:echo` returns every RTP packet, telephone-events included, to where it came from,
//! under the gateway's own SSRC.

use crate::common;

use std::time::Duration;

#[test]
fn every_rtp_and_dtmf_packet_comes_back_unchanged_but_for_the_ssrc() {
    let gateway = common::Gateway::start("");
    let mut phone = common::RawPhone::new(gateway.sip, "echo-media-1");
    let media = phone.call_echo();
    let mut sent = Vec::new();
    for i in 0..100u16 {
        let packet = if i % 10 == 9 {
            // RFC 4733: digit 5, end bit, duration 800.
            common::rtp_packet(101, i, 160 * i as u32, &[5, 0x80 | 10, 0x03, 0x20])
        } else {
            common::rtp_packet(0, i, 160 * i as u32, &[0xff; 160])
        };
        phone.rtp.send_to(&packet, media).unwrap();
        sent.push(packet);
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut received = Vec::new();
    let mut buf = [0u8; 2048];
    while received.len() < sent.len() {
        let (n, from) = phone.rtp.recv_from(&mut buf).expect("echoed packet");
        assert_eq!(
            from, media,
            "echo comes from the port we sent to (symmetric RTP)"
        );
        received.push(buf[..n].to_vec());
    }
    received.sort_by_key(|p| u16::from_be_bytes([p[2], p[3]]));
    // The echo is the gateway's own stream: one SSRC of its own, everything else as sent.
    let ssrc = received[0][8..12].to_vec();
    assert_ne!(ssrc, sent[0][8..12].to_vec());
    for packet in &mut received {
        assert_eq!(packet[8..12], ssrc[..]);
    }
    for (echo, original) in received.iter_mut().zip(&sent) {
        echo[8..12].copy_from_slice(&original[8..12]);
    }
    assert_eq!(received, sent);
    assert!(phone.hangup().starts_with("SIP/2.0 200"));
}
