//! Which peer a datagram on the shared WebRTC socket belongs to.
//!
//! Every peer talks to the one `[rtc] listen` socket, so each datagram must be routed by its
//! source. The demux answers with a routing decision and owns only the two maps it routes by:
//!
//! - a STUN binding request names its target in USERNAME as `<our ufrag>:<their ufrag>`
//!   (RFC 8445 §7.2.2), and our ufrag is unique per peer, so it finds the peer by a hash lookup;
//!   the source address is then remembered for that peer;
//! - everything else (DTLS, SRTP, SRTCP, and STUN that is not a request) is routed by its
//!   source address alone; an address nobody has sent a binding request from is dropped.
//!
//! Per packet this is one or two hash lookups, never a scan over the peers (`Rtc::accepts`
//! in a loop is linear in the number of peers). A binding request whose ufrag is ours but
//! whose integrity is forged still teaches us its address; str0m drops the request itself, and
//! each peer keeps at most [`MAX_ADDRS_PER_PEER`] addresses, so a forger who learnt a ufrag
//! can make us hold a few map entries, nothing more.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;

use super::PeerId;

/// Source addresses remembered per peer; the oldest is forgotten first. A client tries a few
/// candidate pairs (host, server reflexive, relayed, IPv4/IPv6) at most.
const MAX_ADDRS_PER_PEER: usize = 8;

/// The longest ICE ufrag we look up (RFC 8839 allows 256 characters).
const MAX_UFRAG: usize = 256;

#[derive(Debug, Default)]
pub struct Demux {
    by_ufrag: HashMap<String, PeerId>,
    by_addr: HashMap<SocketAddr, PeerId>,
    /// Each peer's ufrag and learnt addresses, so removal touches only its own entries.
    peers: HashMap<PeerId, (String, VecDeque<SocketAddr>)>,
    dropped_unknown: u64,
}

impl Demux {
    pub fn new() -> Demux {
        Demux::default()
    }

    /// Makes binding requests to `ufrag` go to `peer`. The ufrag is ours, chosen at random per
    /// peer, so a clash means a bug; the newer peer wins.
    pub fn insert(&mut self, peer: PeerId, ufrag: &str) {
        self.remove(peer);
        self.by_ufrag.insert(ufrag.to_string(), peer);
        self.peers
            .insert(peer, (ufrag.to_string(), VecDeque::new()));
    }

    /// Forgets `peer`, its ufrag and every address learnt for it.
    pub fn remove(&mut self, peer: PeerId) {
        let Some((ufrag, addrs)) = self.peers.remove(&peer) else {
            return;
        };
        if self.by_ufrag.get(&ufrag) == Some(&peer) {
            self.by_ufrag.remove(&ufrag);
        }
        for addr in addrs {
            if self.by_addr.get(&addr) == Some(&peer) {
                self.by_addr.remove(&addr);
            }
        }
    }

    /// The peer a datagram from `source` belongs to, or `None` when no peer claims it (not a
    /// binding request with one of our ufrags, and from an unknown address); those are counted.
    pub fn route(&mut self, source: SocketAddr, datagram: &[u8]) -> Option<PeerId> {
        // A binding request is routed by its ufrag even from a known address: a NAT may hand
        // a port that one client used to another one.
        if let Some(ufrag) = binding_request_target(datagram)
            && let Some(&peer) = self.by_ufrag.get(ufrag)
        {
            self.learn(peer, source);
            return Some(peer);
        }
        match self.by_addr.get(&source) {
            Some(&peer) => Some(peer),
            None => {
                self.dropped_unknown += 1;
                None
            }
        }
    }

    fn learn(&mut self, peer: PeerId, source: SocketAddr) {
        if self.by_addr.get(&source) == Some(&peer) {
            return;
        }
        if let Some(previous) = self.by_addr.insert(source, peer)
            && let Some((_, addrs)) = self.peers.get_mut(&previous)
        {
            addrs.retain(|a| *a != source);
        }
        let Some((_, addrs)) = self.peers.get_mut(&peer) else {
            return;
        };
        addrs.push_back(source);
        if addrs.len() > MAX_ADDRS_PER_PEER
            && let Some(oldest) = addrs.pop_front()
            && self.by_addr.get(&oldest) == Some(&peer)
        {
            self.by_addr.remove(&oldest);
        }
    }

    /// Datagrams no peer claimed.
    #[cfg(test)]
    pub(crate) fn dropped_unknown(&self) -> u64 {
        self.dropped_unknown
    }

    pub fn len(&self) -> usize {
        self.peers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }
}

/// Whether the first byte says STUN (RFC 7983 §7: 0–3; DTLS is 20–63, RTP/RTCP 128–191).
pub fn is_stun(datagram: &[u8]) -> bool {
    datagram.first().is_some_and(|b| *b < 4)
}

/// The ufrag a STUN binding request is addressed to: the part of its USERNAME before `:`.
/// `None` for anything else, including malformed messages; never reads past the datagram.
pub fn binding_request_target(datagram: &[u8]) -> Option<&str> {
    const BINDING_REQUEST: u16 = 0x0001;
    const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
    const USERNAME: u16 = 0x0006;
    // RFC 5389 §6: type, length, magic cookie, 96-bit transaction id.
    let header = datagram.get(..20)?;
    if u16::from_be_bytes([header[0], header[1]]) != BINDING_REQUEST || header[4..8] != MAGIC_COOKIE
    {
        return None;
    }
    let length = u16::from_be_bytes([header[2], header[3]]) as usize;
    let mut attributes = datagram.get(20..20 + length)?;
    // RFC 5389 §15: type, length, value padded to a multiple of four.
    while attributes.len() >= 4 {
        let kind = u16::from_be_bytes([attributes[0], attributes[1]]);
        let len = u16::from_be_bytes([attributes[2], attributes[3]]) as usize;
        let value = attributes.get(4..4 + len)?;
        if kind == USERNAME {
            let username = std::str::from_utf8(value).ok()?;
            let (ours, _theirs) = username.split_once(':')?;
            return (!ours.is_empty() && ours.len() <= MAX_UFRAG).then_some(ours);
        }
        attributes = attributes.get((4 + len).next_multiple_of(4)..)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A binding request with USERNAME `ours:theirs` and one attribute before it.
    fn binding_request(username: &str) -> Vec<u8> {
        let mut attrs = Vec::new();
        // PRIORITY first, so the parser has to step over an attribute.
        attrs.extend_from_slice(&[0x00, 0x24, 0x00, 0x04, 1, 2, 3, 4]);
        attrs.extend_from_slice(&0x0006u16.to_be_bytes());
        attrs.extend_from_slice(&(username.len() as u16).to_be_bytes());
        attrs.extend_from_slice(username.as_bytes());
        while attrs.len() % 4 != 0 {
            attrs.push(0);
        }
        let mut msg = vec![0x00, 0x01];
        msg.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        msg.extend_from_slice(&[0x21, 0x12, 0xA4, 0x42]);
        msg.extend_from_slice(&[7; 12]);
        msg.extend_from_slice(&attrs);
        msg
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], port))
    }

    const DTLS: &[u8] = &[22, 254, 253, 0, 0];

    #[test]
    fn the_target_ufrag_is_read_from_username() {
        assert_eq!(
            binding_request_target(&binding_request("abcd:wxyz")),
            Some("abcd")
        );
        assert_eq!(binding_request_target(&binding_request("nocolon")), None);
        // A success response (0x0101) is not a request.
        let mut response = binding_request("abcd:wxyz");
        response[0] = 0x01;
        assert_eq!(binding_request_target(&response), None);
    }

    #[test]
    fn truncated_and_lying_stun_is_refused_without_panicking() {
        let msg = binding_request("abcd:wxyz");
        for n in 0..msg.len() {
            assert_eq!(binding_request_target(&msg[..n]), None, "prefix of {n}");
        }
        let mut lying = msg.clone();
        lying[3] = 0xff; // a message length beyond the datagram
        assert_eq!(binding_request_target(&lying), None);
        let mut lying = msg;
        lying[20 + 8 + 3] = 0xff; // USERNAME longer than the attributes
        assert_eq!(binding_request_target(&lying), None);
    }

    #[test]
    fn a_first_binding_request_finds_its_peer_by_ufrag_then_the_address_routes() {
        let mut demux = Demux::new();
        demux.insert(PeerId(1), "aaaa");
        demux.insert(PeerId(2), "bbbb");
        // DTLS from an address nobody has vouched for is dropped and counted.
        assert_eq!(demux.route(addr(1000), DTLS), None);
        assert_eq!(demux.dropped_unknown(), 1);
        assert_eq!(
            demux.route(addr(1000), &binding_request("bbbb:client")),
            Some(PeerId(2))
        );
        assert_eq!(demux.route(addr(1000), DTLS), Some(PeerId(2)));
        // Another address is still unknown, and an unknown ufrag teaches nothing.
        assert_eq!(demux.route(addr(1001), DTLS), None);
        assert_eq!(
            demux.route(addr(1001), &binding_request("zzzz:client")),
            None
        );
        assert_eq!(demux.route(addr(1001), DTLS), None);
        assert_eq!(demux.dropped_unknown(), 4);
    }

    #[test]
    fn an_address_reused_by_another_client_follows_the_ufrag() {
        let mut demux = Demux::new();
        demux.insert(PeerId(1), "aaaa");
        demux.insert(PeerId(2), "bbbb");
        demux.route(addr(1000), &binding_request("aaaa:x"));
        assert_eq!(
            demux.route(addr(1000), &binding_request("bbbb:y")),
            Some(PeerId(2))
        );
        assert_eq!(demux.route(addr(1000), DTLS), Some(PeerId(2)));
        // Removing peer 1 must not take peer 2's address with it.
        demux.remove(PeerId(1));
        assert_eq!(demux.route(addr(1000), DTLS), Some(PeerId(2)));
    }

    #[test]
    fn removal_forgets_the_ufrag_and_the_addresses() {
        let mut demux = Demux::new();
        demux.insert(PeerId(1), "aaaa");
        demux.route(addr(1000), &binding_request("aaaa:x"));
        demux.remove(PeerId(1));
        assert!(demux.is_empty());
        assert_eq!(demux.route(addr(1000), DTLS), None);
        assert_eq!(demux.route(addr(1000), &binding_request("aaaa:x")), None);
    }

    #[test]
    fn a_peer_keeps_a_bounded_number_of_addresses() {
        let mut demux = Demux::new();
        demux.insert(PeerId(1), "aaaa");
        for port in 0..100 {
            demux.route(addr(port), &binding_request("aaaa:x"));
        }
        assert_eq!(demux.by_addr.len(), MAX_ADDRS_PER_PEER);
        assert_eq!(demux.route(addr(99), DTLS), Some(PeerId(1)));
        assert_eq!(demux.route(addr(0), DTLS), None);
    }
}
