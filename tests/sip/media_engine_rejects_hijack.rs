//! Once a leg has latched onto its peer, a third address sending to the leg's port is
//! rejected: its packets are not forwarded, and the media towards the peer does not move to it.

use crate::media_common;

use media_common::*;
use tandem::media::engine::Forwarding;

#[test]
fn a_third_address_can_neither_inject_nor_capture_media() {
    let (mut engine, _events) = engine();
    let (alice, bob, mallory) = (Peer::new(), Peer::new(), Peer::new());
    let (a, a_addr) = open_leg(&mut engine, Some(alice.addr()));
    let (b, b_addr) = open_leg(&mut engine, Some(bob.addr()));
    latch(&engine, a, &alice, a_addr, 1);
    latch(&engine, b, &bob, b_addr, 2);
    engine.bridge(a, b, Forwarding::default(), Forwarding::default());

    for i in 0..20u16 {
        alice.send(
            &rtp(0, false, 200 + i, 160 * u32::from(i), 1, &[0xa1; 160]),
            a_addr,
        );
        mallory.send(&rtp(0, false, 7000 + i, 0, 0xbad, &[0x66; 160]), a_addr);
    }
    let got = bob.recv_many(40);
    assert_eq!(got.len(), 20, "only Alice's packets reach Bob");
    assert!(got.iter().all(|p| p[12..] == [0xa1; 160]));
    assert_eq!(engine.stats(a).unwrap().rejected, 20);

    bob.send(&rtp(0, false, 1, 160, 2, &[0xb0; 160]), b_addr);
    assert!(alice.recv().is_some(), "Alice still hears Bob");
    assert!(mallory.recv().is_none(), "the attacker hears nothing");
}

#[test]
fn a_stranger_who_sends_before_the_peer_is_not_heard() {
    let (mut engine, _events) = engine();
    let (alice, bob, mallory) = (Peer::new(), Peer::new(), Peer::new());
    let (a, a_addr) = open_leg(&mut engine, Some(alice.addr()));
    let (b, b_addr) = open_leg(&mut engine, Some(bob.addr()));
    latch(&engine, b, &bob, b_addr, 2);
    engine.bridge(a, b, Forwarding::default(), Forwarding::default());

    // Mallory sprays Alice's leg before Alice's first packet: none of it reaches Bob, and
    // Bob's audio still goes where Alice's SDP said.
    for i in 0..10u16 {
        mallory.send(&rtp(0, false, 7000 + i, 0, 0xbad, &[0x66; 160]), a_addr);
    }
    bob.send(&rtp(0, false, 1, 160, 2, &[0xb0; 160]), b_addr);
    assert!(alice.recv().is_some(), "Alice hears Bob");
    assert!(mallory.recv().is_none(), "the attacker hears nothing");
    alice.send(&rtp(0, false, 300, 0, 1, &[0xa1; 160]), a_addr);
    let got = bob.recv_many(11);
    assert_eq!(got.len(), 1, "only Alice's packet reaches Bob");
    assert_eq!(got[0][12..], [0xa1; 160]);
    assert_eq!(engine.stats(a).unwrap().rejected, 10);
}
