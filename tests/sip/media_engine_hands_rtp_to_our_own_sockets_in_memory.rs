//! RTP between a media-engine leg and another socket of the same process (a WebRTC peer's
//! bridge) is handed over in memory, both ways, with the addresses the kernel would have
//! reported, and never reaches the kernel's loopback.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::{Duration, Instant};

use crate::media_common;

use media_common::*;
use tandem::media::engine::{Forwarding, LegPort, MediaEngine, MediaEvent};
use tandem::media::local::{self, Inbox, Lookup};

/// A socket's address in the process's table: what is handed to it arrives on a channel.
struct Channel(std::sync::Mutex<Sender<(SocketAddr, Vec<u8>)>>);

impl Inbox for Channel {
    fn deliver(&self, source: SocketAddr, data: &[u8]) -> bool {
        self.0.lock().unwrap().send((source, data.to_vec())).is_ok()
    }
}

/// A bridge of ours: a real bound socket whose address also takes datagrams in memory.
fn bridge() -> (Peer, local::Binding, Receiver<(SocketAddr, Vec<u8>)>) {
    let socket = Peer::new();
    let (tx, rx) = channel();
    let binding = local::bind(socket.addr(), Arc::new(Channel(tx.into()))).expect("bound once");
    (socket, binding, rx)
}

/// A phone's leg bridged to a leg whose peer is a bridge of ours, latched to the phone.
struct Call {
    engine: MediaEngine,
    _events: tokio::sync::mpsc::Receiver<MediaEvent>,
    phone: Peer,
    phone_side: SocketAddr,
    bridge: Peer,
    _binding: local::Binding,
    /// What the bridge is handed in memory.
    handed: Receiver<(SocketAddr, Vec<u8>)>,
    to_bridge: LegPort,
    bridge_side: SocketAddr,
}

fn call() -> Call {
    let (mut engine, events) = engine();
    let phone = Peer::new();
    let (bridge, binding, handed) = bridge();
    let (to_phone, phone_side) = open_leg(&mut engine, Some(phone.addr()));
    let (to_bridge, bridge_side) = open_leg(&mut engine, Some(bridge.addr()));
    engine.bridge(
        to_phone,
        to_bridge,
        Forwarding::default(),
        Forwarding::default(),
    );
    latch(&engine, to_phone, &phone, phone_side, 0x1111);
    Call {
        engine,
        _events: events,
        phone,
        phone_side,
        bridge,
        _binding: binding,
        handed,
        to_bridge,
        bridge_side,
    }
}

#[test]
fn a_phones_rtp_reaches_a_bridge_of_ours_in_memory_and_its_answer_reaches_the_phone() {
    let Call {
        engine,
        phone,
        phone_side,
        bridge,
        handed,
        to_bridge,
        bridge_side,
        // Held to the end: the bridge's address takes datagrams in memory while bound.
        _binding,
        _events,
        ..
    } = call();

    for i in 0..10u16 {
        phone.send(
            &rtp(0, false, i, 160 * u32::from(i), 0x1111, &[i as u8; 160]),
            phone_side,
        );
    }
    // What latched the leg was forwarded too, before these; it carries 0xff.
    let got: Vec<(SocketAddr, Vec<u8>)> =
        std::iter::from_fn(|| handed.recv_timeout(READ_TIMEOUT * 4).ok())
            .filter(|(_, packet)| packet[12] != 0xff)
            .take(10)
            .collect();
    assert_eq!(got.len(), 10, "every packet is handed to the bridge");
    for (i, (from, packet)) in got.iter().enumerate() {
        assert_eq!(
            *from, bridge_side,
            "it comes from the leg the bridge talks to"
        );
        assert_eq!(
            packet[12..],
            [i as u8; 160],
            "the payload as the phone sent it"
        );
    }
    assert!(
        bridge.recv().is_none(),
        "nothing crossed the kernel to the bridge's socket"
    );

    // The bridge answers in memory; the phone hears it through the kernel, from its leg.
    let mut lookup = Lookup::default();
    for i in 0..10u16 {
        let packet = rtp(0, false, 500 + i, 160 * u32::from(i), 0x2222, &[0x40; 160]);
        assert_eq!(
            lookup.send(bridge.addr(), bridge_side, &packet),
            Some(true),
            "the leg's address takes datagrams in memory"
        );
    }
    let mut heard = 0;
    while let Some((packet, from)) = phone.recv() {
        assert_eq!(
            from, phone_side,
            "symmetric RTP: from the port the phone sends to"
        );
        assert_eq!(packet[12..], [0x40; 160]);
        heard += 1;
        if heard == 10 {
            break;
        }
    }
    assert_eq!(heard, 10, "every answer reaches the phone");
    // The leg counts a batch once it has sent it on: the phone may hear it first.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut stats = engine.stats(to_bridge).unwrap();
    while stats.packets_in < 10 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
        stats = engine.stats(to_bridge).unwrap();
    }
    assert!(
        stats.packets_in >= 10,
        "the bridge's leg counted what it was handed: {stats:?}"
    );
    assert_eq!(
        stats.rejected, 0,
        "the handed source is the one the leg latched to"
    );
}

#[test]
fn a_closed_leg_takes_nothing_more_in_memory() {
    let (mut engine, _events) = engine();
    let (leg, addr) = open_leg(&mut engine, None);
    let mut lookup = Lookup::default();
    let packet = rtp(0, false, 1, 160, 0x3333, &[0; 160]);
    let from = Peer::new().addr();
    assert_eq!(lookup.send(from, addr, &packet), Some(true));
    engine.close(leg);
    assert_eq!(
        lookup.send(from, addr, &packet),
        None,
        "once closed, a datagram to its port takes the kernel's path"
    );
}

#[test]
fn a_sender_that_looked_a_closed_leg_up_does_not_keep_its_port() {
    let (mut engine, _events) = engine();
    let (leg, addr) = open_leg(&mut engine, None);
    let mut lookup = Lookup::default();
    let from = Peer::new().addr();
    let packet = rtp(0, false, 1, 160, 0x4444, &[0; 160]);
    assert_eq!(lookup.send(from, addr, &packet), Some(true));
    engine.close(leg);
    // `lookup` still holds what it found; the port is free once the reactor closed the leg.
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::UdpSocket::bind(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "the closed leg's port stays taken"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(lookup);
}

#[test]
fn a_steady_stream_in_memory_reaches_the_phone_whole_without_a_wake_per_datagram() {
    let Call {
        engine,
        phone,
        phone_side,
        bridge,
        to_bridge,
        bridge_side,
        // Held to the end: the bridge's address takes datagrams in memory while bound.
        _binding,
        _events,
        handed: _handed,
    } = call();

    // The bridge talks in bursts, each heard whole before the next, until the loop has taken
    // some datagrams without being woken for them (it looks on its own while they keep coming).
    let mut lookup = Lookup::default();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut sent: u32 = 0;
    while engine.handed_unwoken() == 0 {
        assert!(
            Instant::now() < deadline,
            "every datagram handed over woke the loop ({sent} sent)"
        );
        for _ in 0..10 {
            let seq = sent as u16;
            let packet = rtp(0, false, seq, 160 * sent, 0x2222, &[seq as u8; 160]);
            assert_eq!(lookup.send(bridge.addr(), bridge_side, &packet), Some(true));
            sent += 1;
        }
        for _ in 0..10 {
            let (packet, from) = phone.recv().expect("every datagram reaches the phone");
            assert_eq!(from, phone_side);
            assert_eq!(
                packet[12..],
                [packet[3]; 160],
                "the payload as the bridge sent it"
            );
        }
    }
    // The leg counts a batch once it has sent it on: the phone may hear it first.
    let mut stats = engine.stats(to_bridge).unwrap();
    while stats.packets_in < u64::from(sent) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
        stats = engine.stats(to_bridge).unwrap();
    }
    assert_eq!(
        stats.packets_in,
        u64::from(sent),
        "the bridge's leg took every datagram it was handed: {stats:?}"
    );
    assert_eq!(stats.dropped + stats.overflowed, 0, "{stats:?}");
}
