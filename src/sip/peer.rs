//! Where a message came from and where one goes: the only transport facts the sans-IO cores see.

use std::net::SocketAddr;

use bytes::Bytes;

pub use crate::config::TransportKind;

/// A stream connection, named by the driver that owns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// The other end of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    pub transport: TransportKind,
    pub addr: SocketAddr,
    /// For a stream transport, the connection the message came on; responses go back on it
    /// (RFC 3261 §18.2.2). `None` means "any connection to `addr`, or a new one".
    pub conn: Option<ConnId>,
}

impl Peer {
    pub fn udp(addr: SocketAddr) -> Peer {
        Peer {
            transport: TransportKind::Udp,
            addr,
            conn: None,
        }
    }

    pub fn tcp(addr: SocketAddr, conn: Option<ConnId>) -> Peer {
        Peer {
            transport: TransportKind::Tcp,
            addr,
            conn,
        }
    }

    /// Reliable transports need no retransmission timers (RFC 3261 §17).
    pub fn is_reliable(&self) -> bool {
        self.transport != TransportKind::Udp
    }

    /// The transport token used in Via headers.
    pub fn via_transport(&self) -> &'static str {
        match self.transport {
            TransportKind::Udp => "UDP",
            TransportKind::Tcp => "TCP",
        }
    }
}

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub to: Peer,
    pub payload: Bytes,
}
