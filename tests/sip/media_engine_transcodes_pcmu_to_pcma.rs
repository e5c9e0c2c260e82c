//! A bridge between a PCMU leg and a PCMA leg converts the audio in place, byte for byte as
//! G.711's conversion tables say, and maps the telephone-event payload type without touching
//! the events.

use crate::media_common;

use media_common::*;
use tandem::media::engine::Forwarding;
use tandem::media::g711::transcode_in_place;
use tandem::sip::sdp::Codec;

#[test]
fn pcmu_becomes_pcma_and_events_only_change_payload_type() {
    let (mut engine, _events) = engine();
    let (alice, bob) = (Peer::new(), Peer::new());
    let (a, a_addr) = open_leg(&mut engine, Some(alice.addr()));
    let (b, b_addr) = open_leg(&mut engine, Some(bob.addr()));
    latch(&engine, a, &alice, a_addr, 1);
    latch(&engine, b, &bob, b_addr, 2);
    engine.bridge(
        a,
        b,
        Forwarding {
            transcode: Some((Codec::Pcmu, Codec::Pcma)),
            telephone_event: Some((101, 96)),
        },
        Forwarding {
            transcode: Some((Codec::Pcma, Codec::Pcmu)),
            telephone_event: Some((96, 101)),
        },
    );

    let audio: Vec<u8> = (0..=255u8).cycle().skip(7).take(160).collect();
    let event = [5, 0x80 | 10, 0x03, 0x20]; // digit 5, end, 800 ticks (RFC 4733 §2.3)
    alice.send(&rtp(0, false, 10, 1600, 9, &audio), a_addr);
    alice.send(&rtp(101, true, 11, 1760, 9, &event), a_addr);

    let got = bob.recv_many(2);
    assert_eq!(got.len(), 2);
    let mut expected = audio.clone();
    transcode_in_place(&mut expected, Codec::Pcmu, Codec::Pcma);
    assert_eq!(pt(&got[0]), 8);
    assert_eq!(got[0][12..], expected[..]);
    assert_eq!(pt(&got[1]), 96);
    assert!(
        marker(&got[1]),
        "the marker of the event's first packet survives"
    );
    assert_eq!(got[1][12..], event, "events are never transcoded");

    // And back: Bob's PCMA reaches Alice as PCMU.
    bob.send(&rtp(8, false, 1, 160, 7, &expected), b_addr);
    let (back, _) = alice.recv().expect("Alice hears Bob");
    let mut round_trip = expected.clone();
    transcode_in_place(&mut round_trip, Codec::Pcma, Codec::Pcmu);
    assert_eq!(pt(&back), 0);
    assert_eq!(back[12..], round_trip[..]);
}
