//! A bridge forwards both ways, and the far end sees one SSRC with continuous sequence numbers
//! and timestamps even when the source behind the other leg restarts its stream.

use crate::media_common;

use media_common::*;
use tandem::media::engine::Forwarding;

#[test]
fn both_directions_forward_as_one_stream_across_a_source_change() {
    let (mut engine, _events) = engine();
    let (alice, bob) = (Peer::new(), Peer::new());
    let (a, a_addr) = open_leg(&mut engine, Some(alice.addr()));
    let (b, b_addr) = open_leg(&mut engine, Some(bob.addr()));
    latch(&engine, a, &alice, a_addr, 1);
    latch(&engine, b, &bob, b_addr, 2);
    engine.bridge(a, b, Forwarding::default(), Forwarding::default());

    // Alice's phone restarts its stream halfway: new SSRC, sequence and timestamp.
    for i in 0..10u16 {
        alice.send(
            &rtp(
                0,
                false,
                100 + i,
                8000 + 160 * u32::from(i),
                0x1111,
                &[i as u8; 160],
            ),
            a_addr,
        );
    }
    for i in 0..10u16 {
        alice.send(
            &rtp(
                0,
                false,
                40000 + i,
                900_000 + 160 * u32::from(i),
                0x2222,
                &[0x40 + i as u8; 160],
            ),
            a_addr,
        );
    }
    let got = bob.recv_many(20);
    assert_eq!(got.len(), 20, "every packet reaches Bob");
    let out_ssrc = ssrc(&got[0]);
    assert!(
        got.iter().all(|p| ssrc(p) == out_ssrc),
        "one SSRC towards Bob"
    );
    for pair in got.windows(2) {
        assert_eq!(
            seq(&pair[1]),
            seq(&pair[0]).wrapping_add(1),
            "no sequence gap"
        );
        assert!(
            ts(&pair[1]).wrapping_sub(ts(&pair[0])) as i32 > 0,
            "time moves forward"
        );
    }
    assert!(marker(&got[10]), "the new source starts a talkspurt");
    assert_eq!(got[15][12..], [0x45; 160], "payload untouched");

    // The other way, from Bob's leg's socket to Alice.
    for i in 0..5u16 {
        bob.send(
            &rtp(0, false, i, 160 * u32::from(i), 0x3333, &[0x7f; 160]),
            b_addr,
        );
    }
    let mut back = Vec::new();
    while let Some((p, from)) = alice.recv() {
        assert_eq!(
            from, a_addr,
            "Alice hears from the port she sends to (symmetric RTP)"
        );
        back.push(p);
        if back.len() == 5 {
            break;
        }
    }
    assert_eq!(back.len(), 5);
    assert!(back.iter().all(|p| ssrc(p) == ssrc(&back[0])));
    assert_ne!(ssrc(&back[0]), out_ssrc, "each direction has its own SSRC");

    // The counter is bumped just after the send, so it may trail what Alice already read.
    let mut stats = engine.stats(a).unwrap();
    for _ in 0..100 {
        if stats.packets_out == 5 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
        stats = engine.stats(a).unwrap();
    }
    assert_eq!(stats.packets_out, 5);
    assert!(stats.packets_in >= 21);
}
