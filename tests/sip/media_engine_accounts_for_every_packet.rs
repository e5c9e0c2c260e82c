//! Every datagram that reaches a leg is relayed or lands in exactly one of its counters: dropped
//! (nowhere to send it yet), rejected (not from the latched peer), malformed. A burst longer than
//! one receive batch comes out whole, in order, each packet once.

use crate::media_common;

use std::time::{Duration, Instant};

use media_common::*;
use tandem::media::engine::{Forwarding, LegPort, LegStats, MediaEngine};
use tandem::media::latch::Learning;

/// Longer than one `recvmmsg` batch, short enough for any socket queue.
const BURST: u16 = 100;

fn wait_for(engine: &MediaEngine, leg: LegPort, what: &str, done: impl Fn(&LegStats) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done(&engine.stats(leg).unwrap()) {
        assert!(Instant::now() < deadline, "{what}: {:?}", engine.stats(leg));
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn every_datagram_is_relayed_or_counted_once() {
    let (mut engine, _events) = engine();
    let (alice, bob, mallory) = (Peer::new(), Peer::new(), Peer::new());
    let (a, a_addr) = open_leg_learning(&mut engine, Some(alice.addr()), Learning::Strict);
    // Bob's SDP named no address: his leg learns it from his first packet.
    let (b, b_addr) = open_leg(&mut engine, None);
    engine.bridge(a, b, Forwarding::default(), Forwarding::default());
    let mut sent = 0;

    // Before Bob is heard, what Alice sends has nowhere to go.
    for i in 0..10u16 {
        alice.send(
            &rtp(0, false, i, 160 * u32::from(i), 1, &[0xa1; 160]),
            a_addr,
        );
        sent += 1;
    }
    wait_for(&engine, a, "dropped", |s| s.dropped == 10);
    // A stranger, and datagrams that are not RTP.
    for i in 0..5u16 {
        mallory.send(&rtp(0, false, i, 0, 0xbad, &[0x66; 160]), a_addr);
        sent += 1;
    }
    for junk in [
        &[1u8, 2, 3][..],
        &[0x40; 40][..],
        &[0x80; 11][..],
        &[0xbf, 0, 0, 1][..],
    ] {
        alice.send(junk, a_addr);
        sent += 1;
    }
    wait_for(&engine, a, "rejected and malformed", |s| {
        s.rejected == 5 && s.malformed == 4
    });

    // Bob speaks: his leg latches, and Alice hears him.
    bob.send(&rtp(0, false, 1, 160, 2, &[0xb0; 160]), b_addr);
    assert!(alice.recv().is_some(), "Alice hears Bob");

    for i in 0..BURST {
        let seq = 100 + i;
        alice.send(
            &rtp(0, false, seq, 160 * u32::from(seq), 1, &[0xa1; 160]),
            a_addr,
        );
        sent += 1;
    }
    let got = bob.recv_many(usize::from(BURST) + 1);
    assert_eq!(got.len(), usize::from(BURST), "the whole burst, once");
    assert!(
        got.windows(2)
            .all(|w| seq(&w[1]) == seq(&w[0]).wrapping_add(1)),
        "in order"
    );

    let (from_a, to_b) = (engine.stats(a).unwrap(), engine.stats(b).unwrap());
    assert_eq!(
        to_b.packets_out,
        u64::from(BURST),
        "relayed through Bob's leg"
    );
    assert_eq!(from_a.overflowed, 0);
    assert_eq!(
        sent,
        to_b.packets_out + from_a.dropped + from_a.rejected + from_a.malformed,
        "every datagram sent to Alice's leg is relayed or counted: {from_a:?}"
    );
}
