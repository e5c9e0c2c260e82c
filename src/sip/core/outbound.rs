//! How calls we place leave the gateway: by the transport of the trunk they go to, and through
//! an outbound proxy when one is configured.
//!
//! A trunk's `transport = "tls"` makes the Request-URI `sips:` (RFC 5630 §3.1.3: TLS on every
//! hop) and the connection TLS. An outbound proxy (the trunk's own, else `sip.outbound_proxy`)
//! gets the request with the destination left in the Request-URI and a loose route naming the
//! proxy at the top of the route set (RFC 3261 §8.1.2: the "pre-existing route set" of one
//! `;lr` URI), which is what carriers and SBCs that only accept traffic from known proxies need.

use std::net::SocketAddr;

use rsipstack::sip::{Header, Scheme, Uri};

use super::SipCore;
use crate::config::TrunkTransport;
use crate::sip::peer::{Peer, TransportKind};

/// Where a call goes and the headers that steer it.
pub(super) struct Steered {
    pub uri: Uri,
    pub next_hop: Peer,
    /// The `Route` of an outbound proxy, if any.
    pub route: Option<Header>,
}

impl SipCore {
    /// Steers a call to `uri` whose next hop the application chose as `via` (a trunk's
    /// address), by the settings of the trunk `via` belongs to.
    pub(super) fn steer(&self, mut uri: Uri, via: Peer) -> Steered {
        let trunk = self.config.trunks.iter().find(|t| t.matches(via.addr));
        let transport = match trunk.map(|t| t.transport) {
            Some(TrunkTransport::Tls) => TransportKind::Tls,
            Some(TrunkTransport::Tcp) => TransportKind::Tcp,
            Some(TrunkTransport::Udp) | None => via.transport,
        };
        if transport == TransportKind::Tls {
            uri.scheme = Some(Scheme::Sips);
        }
        let proxy = trunk
            .and_then(|t| t.outbound_proxy)
            .or(self.config.net.outbound_proxy);
        match proxy {
            Some(proxy) => Steered {
                uri,
                next_hop: Peer::on(transport, proxy, None),
                route: Some(Header::Route(rsipstack::sip::Route::new(loose_route(
                    proxy, transport,
                )))),
            },
            None => Steered {
                uri,
                next_hop: Peer::on(transport, via.addr, via.conn),
                route: None,
            },
        }
    }
}

/// `<sip:proxy;lr>`, with the transport named when it is not UDP.
fn loose_route(proxy: SocketAddr, transport: TransportKind) -> String {
    let host = crate::config::host_string(proxy.ip());
    let port = proxy.port();
    match transport {
        TransportKind::Udp => format!("<sip:{host}:{port};lr>"),
        other => format!(
            "<sip:{host}:{port};transport={};lr>",
            other.via_token().to_ascii_lowercase()
        ),
    }
}
