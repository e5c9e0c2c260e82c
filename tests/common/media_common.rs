//! Real UDP peers on 127.0.0.1 around an in-process media engine.
#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use tandem::media::engine::{LegPort, MediaEngine, MediaEvent, MediaSettings};
use tandem::media::latch::Learning;
use tokio::sync::mpsc::Receiver;

/// How long a peer waits for a datagram before the test treats it as not coming.
pub const READ_TIMEOUT: Duration = Duration::from_millis(500);

pub fn engine() -> (MediaEngine, Receiver<MediaEvent>) {
    MediaEngine::start(MediaSettings::default()).expect("media engine starts")
}

/// Opens a leg on a free RTP/RTCP port pair; it learns its peer's source if `signalled` looks
/// NAT'd and is strict otherwise, as the SIP side decides.
pub fn open_leg(engine: &mut MediaEngine, signalled: Option<SocketAddr>) -> (LegPort, SocketAddr) {
    open_leg_learning(engine, signalled, Learning::for_peer(signalled, None))
}

/// Opens a leg whose latching is `learning`, whatever `signalled` looks like.
pub fn open_leg_learning(
    engine: &mut MediaEngine,
    signalled: Option<SocketAddr>,
    learning: Learning,
) -> (LegPort, SocketAddr) {
    for _ in 0..200 {
        let port = 20000 + 2 * (rand_u16() % 20000);
        if let Ok(leg) = engine.open(port, signalled, learning) {
            return (leg, SocketAddr::from(([127, 0, 0, 1], port)));
        }
    }
    panic!("no free port pair");
}

fn rand_u16() -> u16 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::Instant::now()) as u16
}

/// A phone's RTP socket (and, when asked for, its RTCP socket on the next port).
pub struct Peer {
    pub rtp: UdpSocket,
    pub rtcp: Option<UdpSocket>,
}

impl Peer {
    pub fn new() -> Peer {
        Peer {
            rtp: bound(0),
            rtcp: None,
        }
    }

    /// A peer whose RTCP listens on RTP port + 1 (RFC 3550 §11).
    pub fn with_rtcp() -> Peer {
        for _ in 0..200 {
            let port = 20001 + 2 * (rand_u16() % 20000);
            let (Ok(rtp), Ok(rtcp)) = (
                UdpSocket::bind(("127.0.0.1", port)),
                UdpSocket::bind(("127.0.0.1", port + 1)),
            ) else {
                continue;
            };
            for s in [&rtp, &rtcp] {
                s.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
            }
            return Peer {
                rtp,
                rtcp: Some(rtcp),
            };
        }
        panic!("no free port pair");
    }

    pub fn addr(&self) -> SocketAddr {
        self.rtp.local_addr().unwrap()
    }

    pub fn send(&self, packet: &[u8], to: SocketAddr) {
        self.rtp.send_to(packet, to).unwrap();
    }

    /// The next datagram on the RTP socket and where it came from, if one arrives in time.
    pub fn recv(&self) -> Option<(Vec<u8>, SocketAddr)> {
        let mut buf = [0u8; 2048];
        let (n, from) = self.rtp.recv_from(&mut buf).ok()?;
        Some((buf[..n].to_vec(), from))
    }

    /// Receives until `count` datagrams arrived or one does not come in time.
    pub fn recv_many(&self, count: usize) -> Vec<Vec<u8>> {
        (0..count)
            .map_while(|_| self.recv().map(|(p, _)| p))
            .collect()
    }
}

fn bound(port: u16) -> UdpSocket {
    let socket = UdpSocket::bind(("127.0.0.1", port)).unwrap();
    socket.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
    socket
}

/// An RTP packet (RFC 3550 §5.1) with no CSRCs or extension.
pub fn rtp(pt: u8, marker: bool, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, pt | if marker { 0x80 } else { 0 }];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

pub fn pt(p: &[u8]) -> u8 {
    p[1] & 0x7f
}
pub fn marker(p: &[u8]) -> bool {
    p[1] & 0x80 != 0
}
pub fn seq(p: &[u8]) -> u16 {
    u16::from_be_bytes([p[2], p[3]])
}
pub fn ts(p: &[u8]) -> u32 {
    u32::from_be_bytes([p[4], p[5], p[6], p[7]])
}
pub fn ssrc(p: &[u8]) -> u32 {
    u32::from_be_bytes([p[8], p[9], p[10], p[11]])
}

/// Sends a packet from `from` to `to` until the engine has counted it, so that the leg has
/// latched before the test goes on.
pub fn latch(engine: &MediaEngine, leg: LegPort, from: &Peer, to: SocketAddr, ssrc: u32) {
    for i in 0..50u16 {
        let before = engine.stats(leg).unwrap().packets_in;
        from.send(&rtp(0, false, 60000 + i, 0, ssrc, &[0xff; 160]), to);
        for _ in 0..20 {
            if engine.stats(leg).unwrap().packets_in > before {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    panic!("leg {leg:?} never counted a packet");
}
