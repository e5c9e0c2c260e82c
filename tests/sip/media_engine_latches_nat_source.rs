//! A peer behind a NAT signals an address its packets do not come from: the leg (marked as
//! learning by the signalling) latches onto the source of its RTP, and a renegotiated address
//! (re-INVITE) takes over at once.

use crate::media_common;

use std::net::SocketAddr;

use media_common::*;
use tandem::media::engine::Forwarding;
use tandem::media::latch::Learning;

#[test]
fn media_follows_the_nat_mapping_and_then_the_renegotiated_address() {
    let (mut engine, _events) = engine();
    let (alice_behind_nat, bob, alice_moved) = (Peer::new(), Peer::new(), Peer::new());
    // What Alice's SDP said: a private address nothing listens on.
    let private: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let (a, a_addr) = open_leg_learning(&mut engine, Some(private), Learning::Nat);
    let (b, b_addr) = open_leg(&mut engine, Some(bob.addr()));
    engine.bridge(a, b, Forwarding::default(), Forwarding::default());

    // Alice's first packet comes from the NAT's mapping, and teaches the leg where she is.
    alice_behind_nat.send(&rtp(0, false, 1, 160, 5, &[1; 160]), a_addr);
    assert!(bob.recv().is_some());
    bob.send(&rtp(0, false, 1, 160, 6, &[2; 160]), b_addr);
    let (p, from) = alice_behind_nat
        .recv()
        .expect("Bob's audio reaches the NAT mapping");
    assert_eq!((p[12], from), (2, a_addr));

    // A re-INVITE moves Alice; the new address latches with its first packet, while the old
    // one, still sending, is no longer heard.
    engine.set_remote(a, Some(alice_moved.addr()));
    alice_moved.send(&rtp(0, false, 1, 160, 7, &[3; 160]), a_addr);
    assert_eq!(bob.recv().expect("the moved peer is heard").0[12], 3);
    alice_behind_nat.send(&rtp(0, false, 2, 320, 5, &[4; 160]), a_addr);
    assert!(bob.recv().is_none(), "the old address is a stranger now");
    bob.send(&rtp(0, false, 2, 320, 6, &[5; 160]), b_addr);
    assert_eq!(alice_moved.recv().expect("media follows").0[12], 5);
}
