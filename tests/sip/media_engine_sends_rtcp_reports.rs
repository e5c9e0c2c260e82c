//! Each leg sends RTCP compound reports (RFC 3550 §6.1) to its peer: to RTP port + 1, or to
//! the RTP port once the peer multiplexes RTCP there (RFC 5761). They are SRs when we sent on
//! the leg, carry a report block about the peer's stream and our CNAME, and the peer's reply
//! gives the leg a round-trip time.

use crate::media_common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use media_common::*;
use rtcp_types::prelude::*;
use rtcp_types::{Compound, Packet, ReceiverReport, ReportBlock};
use tandem::media::engine::{Forwarding, LegPort, MediaEngine};

const ALICE_SSRC: u32 = 0xa11ce;

/// Keeps media flowing both ways through the bridge until `socket` receives a datagram that
/// is RTCP (packet type 200–204), and returns it.
fn talk_until_rtcp(
    alice: &Peer,
    a: SocketAddr,
    bob: &Peer,
    b: SocketAddr,
    socket: &UdpSocket,
) -> Vec<u8> {
    socket
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut buf = [0u8; 1500];
    let mut i = 0u16;
    while Instant::now() < deadline {
        alice.send(
            &rtp(0, false, i, 160 * u32::from(i), ALICE_SSRC, &[0x55; 160]),
            a,
        );
        bob.send(
            &rtp(0, false, i, 160 * u32::from(i), 0xb0b, &[0x66; 160]),
            b,
        );
        i += 1;
        while let Ok(n) = socket.recv(&mut buf) {
            if n >= 8 && (200..=204).contains(&buf[1]) {
                return buf[..n].to_vec();
            }
        }
    }
    panic!("no RTCP report arrived");
}

fn bridged() -> (
    MediaEngine,
    Peer,
    Peer,
    (LegPort, SocketAddr),
    (LegPort, SocketAddr),
) {
    let (mut engine, _events) = engine();
    let (alice, bob) = (Peer::with_rtcp(), Peer::new());
    let a = open_leg(&mut engine, Some(alice.addr()));
    let b = open_leg(&mut engine, Some(bob.addr()));
    latch(&engine, a.0, &alice, a.1, ALICE_SSRC);
    latch(&engine, b.0, &bob, b.1, 0xb0b);
    engine.bridge(a.0, b.0, Forwarding::default(), Forwarding::default());
    (engine, alice, bob, a, b)
}

fn write(packet: impl RtcpPacketWriter) -> Vec<u8> {
    let compound = Compound::builder().add_packet(packet);
    let mut out = vec![0; compound.calculate_size().unwrap()];
    compound.write_into_unchecked(&mut out);
    out
}

#[test]
fn reports_reach_port_plus_one_and_the_reply_gives_a_round_trip_time() {
    let (engine, alice, bob, (a, a_addr), (_, b_addr)) = bridged();
    let rtcp = alice.rtcp.as_ref().unwrap();
    let report = talk_until_rtcp(&alice, a_addr, &bob, b_addr, rtcp);
    // Whatever RTP Alice got since then came from the leg's SSRC.
    alice
        .rtp
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let (heard, _) = alice.recv().expect("Alice hears Bob");

    let mut sr_seen = None;
    let mut cname = None;
    for packet in Compound::parse(&report).unwrap() {
        match packet.unwrap() {
            Packet::Sr(sr) => {
                assert_eq!(
                    sr.ssrc(),
                    ssrc(&heard),
                    "the SR speaks for the stream Alice hears"
                );
                assert!(sr.packet_count() > 0);
                let block = sr.report_blocks().next().expect("a block about Alice");
                assert_eq!(block.ssrc(), ALICE_SSRC);
                sr_seen = Some((sr.ssrc(), (sr.ntp_timestamp() >> 16) as u32));
            }
            Packet::Sdes(sdes) => {
                for chunk in sdes.chunks() {
                    for item in chunk.items() {
                        cname = Some(String::from_utf8(item.value().to_vec()).unwrap());
                    }
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let (our_ssrc, lsr) = sr_seen.expect("an SR, since we sent to Alice");
    assert!(cname.expect("SDES CNAME").starts_with("tandem-"));

    // Alice answers with an RR echoing the SR (LSR), held for no time (DLSR 0).
    let rr = ReceiverReport::builder(ALICE_SSRC).add_report_block(
        ReportBlock::builder(our_ssrc)
            .last_sender_report_timestamp(lsr)
            .delay_since_last_sender_report_timestamp(0),
    );
    rtcp.send_to(&write(rr), SocketAddr::new(a_addr.ip(), a_addr.port() + 1))
        .unwrap();
    let mut stats = engine.stats(a).unwrap();
    for _ in 0..200 {
        if stats.rtt_ms.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
        stats = engine.stats(a).unwrap();
    }
    assert!(stats.rtt_ms.is_some(), "{stats:?}");
    assert_eq!(stats.rtcp_in, 1);
    assert!(stats.rtcp_out >= 1);
    assert!(stats.remote.is_some(), "Alice's view of our stream");
}

#[test]
fn a_peer_multiplexing_rtcp_gets_reports_on_its_rtp_port() {
    let (_engine, alice, bob, (_, a_addr), (_, b_addr)) = bridged();
    alice.send(&write(ReceiverReport::builder(ALICE_SSRC)), a_addr);
    let report = talk_until_rtcp(&alice, a_addr, &bob, b_addr, &alice.rtp);
    assert!(matches!(
        Compound::parse(&report).unwrap().next().unwrap().unwrap(),
        Packet::Sr(_)
    ));
}
