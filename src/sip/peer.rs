//! Where a message came from and where one goes: the only transport facts the sans-IO cores see.

use std::net::SocketAddr;

use bytes::Bytes;

/// The transport a message travels on (RFC 3261 §18, RFC 5630 for TLS, RFC 7118 for WebSocket).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TransportKind {
    Udp,
    Tcp,
    /// SIP over TLS over TCP.
    Tls,
    /// SIP over WebSocket (one SIP message per WebSocket message).
    Ws,
    /// SIP over secure WebSocket.
    Wss,
}

impl TransportKind {
    /// The transport token of Via headers and of registrar bindings.
    pub(crate) const fn via_token(self) -> &'static str {
        match self {
            TransportKind::Udp => "UDP",
            TransportKind::Tcp => "TCP",
            TransportKind::Tls => "TLS",
            TransportKind::Ws => "WS",
            TransportKind::Wss => "WSS",
        }
    }

    /// Reads a Via transport token (or a URI's `transport` parameter), case-insensitively.
    pub(crate) fn from_token(token: &str) -> Option<TransportKind> {
        [
            TransportKind::Udp,
            TransportKind::Tcp,
            TransportKind::Tls,
            TransportKind::Ws,
            TransportKind::Wss,
        ]
        .into_iter()
        .find(|t| t.via_token().eq_ignore_ascii_case(token))
    }

    /// Whether the transport is encrypted (TLS or secure WebSocket): `sips:` URIs and SDES
    /// keys may only travel on these (RFC 3261 §26.2.2, RFC 4568 §8.3).
    pub(crate) const fn is_secure(self) -> bool {
        matches!(self, TransportKind::Tls | TransportKind::Wss)
    }
}

impl From<crate::config::ListenTransport> for TransportKind {
    fn from(kind: crate::config::ListenTransport) -> TransportKind {
        match kind {
            crate::config::ListenTransport::Udp => TransportKind::Udp,
            crate::config::ListenTransport::Tcp => TransportKind::Tcp,
        }
    }
}

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

    #[cfg(test)]
    pub(crate) fn tcp(addr: SocketAddr, conn: Option<ConnId>) -> Peer {
        Peer {
            transport: TransportKind::Tcp,
            addr,
            conn,
        }
    }

    /// Reliable transports need no retransmission timers (RFC 3261 §17).
    pub(crate) fn is_reliable(&self) -> bool {
        self.transport != TransportKind::Udp
    }

    /// A peer on a stream or WebSocket transport; `conn` as for [`Peer::tcp`].
    pub(crate) fn on(transport: TransportKind, addr: SocketAddr, conn: Option<ConnId>) -> Peer {
        Peer {
            transport,
            addr,
            conn,
        }
    }

    /// The transport token used in Via headers.
    pub(crate) fn via_transport(&self) -> &'static str {
        self.transport.via_token()
    }
}

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub to: Peer,
    pub payload: Bytes,
}
