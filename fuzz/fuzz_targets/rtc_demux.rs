//! Datagrams on the shared WebRTC socket (STUN, DTLS, SRTP alike) from a handful of sources,
//! routed by the demux with two peers, which now and then leave and come back.
//!
//! Input: frames of `[op][length][datagram]`: the op's low bits pick the source address; its
//! high bits remove or re-add a peer instead.
//!
//! Properties: a binding request's target ufrag is a non-empty piece of its USERNAME before the
//! first `:`; a datagram goes to a peer only when it is a binding request naming that peer's
//! ufrag, or when it comes from an address that such a request taught the demux for that peer
//! (and the peer has not left since); and a binding request's source is then routed to its peer.
#![no_main]

use std::collections::HashMap;
use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use tandem::rtc::PeerId;
use tandem::rtc::demux::{Demux, binding_request_target, is_stun};

const UFRAGS: [&str; 2] = ["ab12", "Cd34"];
const DTLS: &[u8] = &[22, 254, 253, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

fuzz_target!(|data: &[u8]| {
    let mut demux = Demux::new();
    let mut present = [true, true];
    for (i, ufrag) in UFRAGS.iter().enumerate() {
        demux.insert(PeerId(i as u64), ufrag);
    }
    // Which peer a binding request last taught each source.
    let mut taught: HashMap<SocketAddr, PeerId> = HashMap::new();

    let mut rest = data;
    while let [op, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (datagram, next) = tail.split_at(len);
        rest = next;

        if op & 0xc0 == 0xc0 {
            let i = usize::from(op & 1);
            let peer = PeerId(i as u64);
            if present[i] {
                demux.remove(peer);
                taught.retain(|_, p| *p != peer);
            } else {
                demux.insert(peer, UFRAGS[i]);
            }
            present[i] = !present[i];
            continue;
        }
        let source = SocketAddr::from(([198, 51, 100, op & 7], 50000 + u16::from(op & 0x38)));

        let target = binding_request_target(datagram);
        if let Some(ufrag) = target {
            assert!(!ufrag.is_empty() && ufrag.len() <= 256 && !ufrag.contains(':'));
            assert!(is_stun(datagram));
            let at = ufrag.as_ptr() as usize - datagram.as_ptr() as usize;
            assert!(at >= 24 && at + ufrag.len() <= datagram.len());
        }
        let named =
            target.and_then(|u| UFRAGS.iter().position(|f| *f == u).filter(|&i| present[i]));

        let route = demux.route(source, datagram);
        match named {
            Some(i) => {
                let peer = PeerId(i as u64);
                assert_eq!(route, Some(peer));
                taught.insert(source, peer);
                assert_eq!(demux.route(source, DTLS), Some(peer));
            }
            None => {
                if let Some(peer) = route {
                    assert_eq!(
                        taught.get(&source),
                        Some(&peer),
                        "{source} routed to {peer}"
                    );
                }
            }
        }
        assert_eq!(demux.len(), present.iter().filter(|p| **p).count());
    }
});
