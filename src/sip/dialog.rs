//! Dialogs (RFC 3261 §12): the state two user agents share for one call.
//!
//! A [`Dialog`] is plain data plus the two rules that need care: building an in-dialog request
//! (§12.2.1.1: remote target, route set, our CSeq) and checking the peer's CSeq (§12.2.2).

use rsipstack::sip::{Header, Headers, Method, Request, Uri, Version};

use super::peer::{Peer, TransportKind};
use super::wire::Meta;

/// Call-ID plus both tags, from our point of view (RFC 3261 §12).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct DialogId {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
}

impl DialogId {
    /// The dialog an incoming request belongs to: its To tag is ours, its From tag theirs.
    pub(crate) fn of_request(meta: &Meta) -> Option<DialogId> {
        Some(DialogId {
            call_id: meta.call_id.clone(),
            local_tag: meta.to_tag.clone()?,
            remote_tag: meta.from_tag.clone()?,
        })
    }

    /// The dialog a response to our request belongs to: its From tag is ours, its To tag theirs.
    pub(crate) fn of_response(meta: &Meta) -> Option<DialogId> {
        Some(DialogId {
            call_id: meta.call_id.clone(),
            local_tag: meta.from_tag.clone()?,
            remote_tag: meta.to_tag.clone()?,
        })
    }
}

/// Which side created the dialog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Uac,
    Uas,
}

#[derive(Debug, Clone)]
pub(crate) struct Dialog {
    pub id: DialogId,
    pub role: Role,
    /// Our From (as UAC) or To (as UAS) header value, with our tag.
    pub local_party: String,
    /// The peer's header value, with its tag.
    pub remote_party: String,
    /// Where in-dialog requests go: the peer's Contact URI.
    pub remote_target: Uri,
    /// Route headers for in-dialog requests (Record-Route, in the order §12.1 prescribes).
    pub route_set: Vec<String>,
    /// The last CSeq we used.
    pub local_seq: u32,
    /// The highest CSeq the peer used, once it has sent a request.
    pub remote_seq: Option<u32>,
    /// The transport path the dialog was set up on; in-dialog requests go the same way.
    pub peer: Peer,
}

/// Why an in-dialog request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CseqError {
    /// RFC 3261 §12.2.2: a CSeq lower than the last one is answered with 500.
    OutOfOrder,
}

impl Dialog {
    /// The UAS side of a dialog created by a 2xx (or 1xx with tag) to `invite` (RFC 3261 §12.1.1).
    pub(crate) fn uas(
        invite: &Request,
        meta: &Meta,
        local_tag: &str,
        peer: Peer,
    ) -> Option<Dialog> {
        let remote_target = contact_uri(&invite.headers)?;
        Some(Dialog {
            id: DialogId {
                call_id: meta.call_id.clone(),
                local_tag: local_tag.to_string(),
                remote_tag: meta.from_tag.clone()?,
            },
            role: Role::Uas,
            local_party: with_tag(header_value(&invite.headers, is_to)?, local_tag),
            remote_party: header_value(&invite.headers, is_from)?.to_string(),
            remote_target,
            route_set: record_routes(&invite.headers),
            local_seq: 0,
            remote_seq: Some(meta.cseq),
            peer,
        })
    }

    /// The UAC side of a dialog created by a response to our `invite` (RFC 3261 §12.1.2).
    pub(crate) fn uac(
        invite: &Request,
        response_headers: &Headers,
        meta: &Meta,
        peer: Peer,
    ) -> Option<Dialog> {
        let mut route_set = record_routes(response_headers);
        route_set.reverse();
        Some(Dialog {
            id: DialogId::of_response(meta)?,
            role: Role::Uac,
            local_party: header_value(&invite.headers, is_from)?.to_string(),
            remote_party: header_value(response_headers, is_to)?.to_string(),
            remote_target: contact_uri(response_headers)?,
            route_set,
            local_seq: meta.cseq,
            remote_seq: None,
            peer,
        })
    }

    /// Checks and records the CSeq of an in-dialog request from the peer (RFC 3261 §12.2.2).
    /// ACK and CANCEL reuse the INVITE's number and are not checked.
    pub(crate) fn accept_remote_cseq(
        &mut self,
        method: Method,
        cseq: u32,
    ) -> Result<(), CseqError> {
        if matches!(method, Method::Ack | Method::Cancel) {
            return Ok(());
        }
        match self.remote_seq {
            Some(last) if cseq <= last => Err(CseqError::OutOfOrder),
            _ => {
                self.remote_seq = Some(cseq);
                Ok(())
            }
        }
    }

    /// A new in-dialog request (RFC 3261 §12.2.1.1) with the fresh `branch`; `via` is our
    /// sent-by and `contact` our Contact value. ACK reuses the INVITE's CSeq number (`ack_of`).
    pub(crate) fn request(
        &mut self,
        method: Method,
        via: &str,
        contact: &str,
        ack_of: Option<u32>,
        branch: &str,
    ) -> Request {
        let seq = match ack_of {
            Some(seq) => seq,
            None => {
                self.local_seq += 1;
                self.local_seq
            }
        };
        let mut headers = Headers::default();
        headers.push(Header::Via(rsipstack::sip::Via::new(format!(
            "SIP/2.0/{} {via};branch={};rport",
            self.peer.via_transport(),
            branch
        ))));
        headers.push(Header::MaxForwards(rsipstack::sip::MaxForwards::new("70")));
        headers.push(Header::From(rsipstack::sip::From::new(
            self.local_party.clone(),
        )));
        headers.push(Header::To(rsipstack::sip::To::new(
            self.remote_party.clone(),
        )));
        headers.push(Header::CallId(rsipstack::sip::CallId::new(
            self.id.call_id.clone(),
        )));
        headers.push(Header::CSeq(rsipstack::sip::CSeq::new(format!(
            "{seq} {method}"
        ))));
        for route in &self.route_set {
            headers.push(Header::Route(rsipstack::sip::Route::new(route.clone())));
        }
        if matches!(method, Method::Invite | Method::Update) {
            headers.push(Header::Contact(rsipstack::sip::Contact::new(
                contact.to_string(),
            )));
        }
        headers.push(Header::ContentLength(rsipstack::sip::ContentLength::new(
            "0",
        )));
        Request {
            method,
            uri: self.remote_target.clone(),
            version: Version::V2,
            headers,
            body: Vec::new(),
        }
    }

    /// Where in-dialog requests go (RFC 3261 §12.2.1.1 with §8.1.2). In a dialog we created,
    /// the first entry of the route set when it names an address: the proxy that record-routed
    /// nearest to us. Otherwise the transport path the dialog was set up on: for a dialog the
    /// peer created, that path is the proxy or NAT binding its INVITE really came through, and
    /// on a stream transport, the connection it came on.
    pub(crate) fn next_hop(&self) -> Peer {
        match (self.role, self.route_set.first()) {
            (Role::Uac, Some(route)) => route_hop(route).unwrap_or(self.peer),
            _ => self.peer,
        }
    }

    /// A target refresh (re-INVITE, UPDATE) may change the remote target (RFC 3261 §12.2).
    pub(crate) fn refresh_target(&mut self, headers: &Headers) {
        if let Some(uri) = contact_uri(headers) {
            self.remote_target = uri;
        }
    }
}

/// The address and transport a route URI names (`<sip:192.0.2.1:5060;transport=tcp;lr>`); the
/// port defaults by transport (RFC 3263 §4.2), a `sips:` URI means TLS. `None` for a host name:
/// the gateway does no DNS.
fn route_hop(route: &str) -> Option<Peer> {
    let uri = rsipstack::sip::parse_uri(addr_spec(route)).ok()?;
    let rsipstack::sip::Host::IpAddr(ip) = uri.host_with_port.host else {
        return None;
    };
    let named = uri.params.iter().find_map(|p| match p {
        rsipstack::sip::Param::Transport(t) => TransportKind::from_token(&t.to_string()),
        _ => None,
    });
    let sips = matches!(uri.scheme, Some(rsipstack::sip::Scheme::Sips));
    let transport = match named {
        Some(TransportKind::Tcp) if sips => TransportKind::Tls,
        Some(t) => t,
        None if sips => TransportKind::Tls,
        None => TransportKind::Udp,
    };
    let default_port = if transport.is_secure() { 5061 } else { 5060 };
    let port = uri
        .host_with_port
        .port
        .map(u16::from)
        .unwrap_or(default_port);
    Some(Peer::on(
        transport,
        std::net::SocketAddr::new(ip, port),
        None,
    ))
}

fn is_to(h: &Header) -> Option<&str> {
    match h {
        Header::To(v) => Some(v.value()),
        _ => None,
    }
}

fn is_from(h: &Header) -> Option<&str> {
    match h {
        Header::From(v) => Some(v.value()),
        _ => None,
    }
}

fn header_value(headers: &Headers, pick: fn(&Header) -> Option<&str>) -> Option<&str> {
    headers.iter().find_map(pick)
}

fn with_tag(value: &str, tag: &str) -> String {
    if value.contains(";tag=") {
        value.to_string()
    } else {
        format!("{value};tag={tag}")
    }
}

/// The URI of the first Contact: inside `<…>` when present, else up to the first `;`.
fn contact_uri(headers: &Headers) -> Option<Uri> {
    let value = headers.iter().find_map(|h| match h {
        Header::Contact(c) => Some(c.value()),
        _ => None,
    })?;
    let first = split_list(value).into_iter().next()?;
    rsipstack::sip::parse_uri(addr_spec(first)).ok()
}

/// The addr-spec of a name-addr or addr-spec value.
pub(crate) fn addr_spec(value: &str) -> &str {
    match (value.find('<'), value.find('>')) {
        (Some(open), Some(close)) if open < close => &value[open + 1..close],
        _ => value.split(';').next().unwrap_or(value).trim(),
    }
}

/// Record-Route entries in header order, comma-separated lists split.
fn record_routes(headers: &Headers) -> Vec<String> {
    headers
        .iter()
        .filter_map(|h| match h {
            Header::RecordRoute(r) => Some(r.value()),
            _ => None,
        })
        .flat_map(split_list)
        .map(str::to_string)
        .collect()
}

/// Splits a header value at commas outside `<…>` and quotes.
pub(crate) fn split_list(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut quoted, mut start) = (0i32, false, 0);
    for (i, c) in value.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '<' if !quoted => depth += 1,
            '>' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                out.push(value[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(value[start..].trim());
    out.retain(|s| !s.is_empty());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::wire::{Incoming, parse_datagram};

    const INVITE: &str = "INVITE sip:echo@127.0.0.1 SIP/2.0\r\n\
        Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1\r\n\
        Record-Route: <sip:p1.example;lr>, <sip:p2.example;lr>\r\n\
        Record-Route: <sip:p3.example;lr>\r\n\
        From: \"A, B\" <sip:a@127.0.0.1>;tag=ft\r\n\
        To: <sip:echo@127.0.0.1>\r\n\
        Call-ID: d1\r\nCSeq: 5 INVITE\r\n\
        Contact: <sip:a@127.0.0.1:5070;transport=udp>;expires=30\r\n\
        Content-Length: 0\r\n\r\n";

    fn invite() -> (Request, Meta) {
        match parse_datagram(INVITE.as_bytes()).unwrap() {
            Incoming::Request(r, m) => (r, m),
            _ => panic!(),
        }
    }

    fn peer() -> Peer {
        Peer::udp("127.0.0.1:5070".parse().unwrap())
    }

    #[test]
    fn the_uas_dialog_keeps_route_order_and_the_remote_target() {
        let (req, meta) = invite();
        let d = Dialog::uas(&req, &meta, "lt", peer()).unwrap();
        assert_eq!(d.id.local_tag, "lt");
        assert_eq!(d.id.remote_tag, "ft");
        assert_eq!(
            d.route_set,
            vec![
                "<sip:p1.example;lr>",
                "<sip:p2.example;lr>",
                "<sip:p3.example;lr>"
            ]
        );
        // rsipstack writes the transport parameter upper-case; URI parameters compare without case.
        assert!(
            d.remote_target
                .to_string()
                .eq_ignore_ascii_case("sip:a@127.0.0.1:5070;transport=udp")
        );
        assert_eq!(d.local_party, "<sip:echo@127.0.0.1>;tag=lt");
    }

    #[test]
    fn an_in_dialog_request_uses_the_target_routes_and_the_next_cseq() {
        let (req, meta) = invite();
        let mut d = Dialog::uas(&req, &meta, "lt", peer()).unwrap();
        let bye = d.request(
            Method::Bye,
            "127.0.0.1:5060",
            "<sip:tandem@127.0.0.1:5060>",
            None,
            "z9hG4bKbye",
        );
        let text = String::from_utf8(bye.to_bytes()).unwrap();
        assert!(
            text.to_ascii_lowercase()
                .starts_with("bye sip:a@127.0.0.1:5070;transport=udp sip/2.0\r\n"),
            "{text}"
        );
        assert!(text.contains("From: <sip:echo@127.0.0.1>;tag=lt\r\n"));
        assert!(text.contains("To: \"A, B\" <sip:a@127.0.0.1>;tag=ft\r\n"));
        assert!(text.contains("CSeq: 1 BYE\r\n"));
        let routes: Vec<&str> = text.lines().filter(|l| l.starts_with("Route:")).collect();
        assert_eq!(routes.len(), 3);
        // It parses back as a request of the same dialog.
        let Ok(Incoming::Request(_, m)) = parse_datagram(text.as_bytes()) else {
            panic!()
        };
        let back = DialogId::of_response(&m).unwrap();
        assert_eq!(back.call_id, d.id.call_id);
    }

    #[test]
    fn remote_cseq_must_grow() {
        let (req, meta) = invite();
        let mut d = Dialog::uas(&req, &meta, "lt", peer()).unwrap();
        assert_eq!(
            d.accept_remote_cseq(Method::Bye, 5),
            Err(CseqError::OutOfOrder)
        );
        assert_eq!(d.accept_remote_cseq(Method::Ack, 5), Ok(()));
        assert_eq!(d.accept_remote_cseq(Method::Bye, 6), Ok(()));
        assert_eq!(
            d.accept_remote_cseq(Method::Info, 6),
            Err(CseqError::OutOfOrder)
        );
    }

    #[test]
    fn the_uac_dialog_reverses_the_route_set() {
        let (req, _) = invite();
        let resp = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1\r\n\
            Record-Route: <sip:p1.example;lr>, <sip:p2.example;lr>\r\n\
            From: <sip:a@127.0.0.1>;tag=ft\r\nTo: <sip:echo@127.0.0.1>;tag=tt\r\n\
            Call-ID: d1\r\nCSeq: 5 INVITE\r\nContact: <sip:echo@127.0.0.1:5060>\r\n\
            Content-Length: 0\r\n\r\n";
        let Ok(Incoming::Response(r, m)) = parse_datagram(resp.as_bytes()) else {
            panic!()
        };
        let d = Dialog::uac(&req, &r.headers, &m, peer()).unwrap();
        assert_eq!(
            d.route_set,
            vec!["<sip:p2.example;lr>", "<sip:p1.example;lr>"]
        );
        assert_eq!(d.id.local_tag, "ft");
        assert_eq!(d.id.remote_tag, "tt");
        assert_eq!(d.local_seq, 5);
    }

    #[test]
    fn lists_split_outside_quotes_and_brackets() {
        assert_eq!(
            split_list("\"a, b\" <sip:x;p=1,2>, <sip:y>"),
            vec!["\"a, b\" <sip:x;p=1,2>", "<sip:y>"]
        );
    }
}
