//! Browser softphones on SIP over WebSocket (RFC 7118) speak WebRTC media only: ICE, DTLS-SRTP
//! and `UDP/TLS/RTP/SAVPF` (RFC 8827), never the plain RTP/AVP that Tandem's SIP legs offer.
//! This is the seam that adapts one to the other, at the edge of the transport, the way a
//! media relay in front of a proxy rewrites SDP (rtpengine's offer/answer): the SIP core keeps
//! placing an ordinary call with a plain offer for a media-engine leg, and never learns that
//! the agent is a browser.
//!
//! - An INVITE leaving on a WebSocket with a plain offer: a WebRTC peer of the shared
//!   [`RtcService`] is created for the call, and its offer replaces the body.
//! - The browser's 2xx with its WebRTC answer: the peer takes the answer, its audio is bridged
//!   as plain RTP to the media-engine leg the plain offer named
//!   ([`RtcService::bridge_rtp`]), and the core gets a plain answer naming the bridge's socket.
//! - A re-INVITE in the same dialog repeats the WebRTC offer, and its answer is the same plain
//!   answer: the core's session refreshes do not disturb the browser's media.
//! - A BYE either way, a failed INVITE, or the connection closing closes the peer.
//!
//! The rewriting itself is pure text work, tested here; [`Edge`] holds the calls.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;

use super::ids::Ids;
use super::peer::Peer;
use super::sdp::{Codec, TELEPHONE_EVENT_PT};
use crate::rtc::{MediaSpec, PeerId, RtcService};

/// What a plain offer of ours says: where its media-engine leg is and its first codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PlainOffer {
    pub leg: SocketAddr,
    pub codec: Codec,
}

/// A SIP message split into its start line, headers and body, for rewriting bodies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Message<'a> {
    pub head: &'a str,
    pub body: &'a [u8],
}

impl<'a> Message<'a> {
    pub(crate) fn split(payload: &'a [u8]) -> Option<Message<'a>> {
        let end = payload.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = std::str::from_utf8(&payload[..end]).ok()?;
        Some(Message {
            head,
            body: &payload[end + 4..],
        })
    }

    /// The method of a request (`None` for a response).
    pub(crate) fn method(&self) -> Option<&'a str> {
        let first = self.head.lines().next()?;
        if first.starts_with("SIP/2.0") {
            return None;
        }
        first.split(' ').next()
    }

    /// The value of the first header called `name` or its compact form.
    pub(crate) fn header(&self, name: &str, compact: Option<&str>) -> Option<&'a str> {
        self.head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            let key = key.trim();
            let wanted = key.eq_ignore_ascii_case(name)
                || compact.is_some_and(|c| key.eq_ignore_ascii_case(c));
            wanted.then(|| value.trim())
        })
    }

    pub(crate) fn call_id(&self) -> Option<&'a str> {
        self.header("Call-ID", Some("i"))
    }

    /// The same message with `body` instead, its Content-Length set to match.
    pub(crate) fn with_body(&self, body: &str) -> Bytes {
        let mut out = String::with_capacity(self.head.len() + body.len() + 32);
        for line in self.head.lines() {
            let key = line.split(':').next().unwrap_or("").trim();
            if key.eq_ignore_ascii_case("Content-Length") || key.eq_ignore_ascii_case("l") {
                continue;
            }
            out.push_str(line);
            out.push_str("\r\n");
        }
        out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        out.push_str(body);
        Bytes::from(out)
    }
}

/// Reads our plain offer: its connection address, audio port and first G.711 payload type.
fn read_plain_offer(sdp: &str) -> Option<PlainOffer> {
    let mut ip: Option<IpAddr> = None;
    let mut audio: Option<(u16, Codec)> = None;
    for line in sdp.lines() {
        if let Some(rest) = line.strip_prefix("c=IN ") {
            ip = rest.split(' ').nth(1).and_then(|a| a.trim().parse().ok());
        } else if let Some(rest) = line.strip_prefix("m=audio ") {
            let mut fields = rest.split(' ');
            let port = fields.next()?.parse().ok()?;
            if fields.next()? != "RTP/AVP" {
                return None;
            }
            let codec = fields.find_map(|pt| match pt.trim() {
                "0" => Some(Codec::Pcmu),
                "8" => Some(Codec::Pcma),
                _ => None,
            })?;
            audio = Some((port, codec));
        }
    }
    let (port, codec) = audio?;
    Some(PlainOffer {
        leg: SocketAddr::new(ip?, port),
        codec,
    })
}

/// The plain answer the core gets: the browser's audio as RTP of `codec` from `bridge`.
fn plain_answer(bridge: SocketAddr, codec: Codec, session_id: u64) -> String {
    let family = if bridge.is_ipv4() { "IP4" } else { "IP6" };
    let ip = bridge.ip();
    let pt = codec.payload_type();
    let te = TELEPHONE_EVENT_PT;
    format!(
        "v=0\r\no=- {session_id} 1 IN {family} {ip}\r\ns=-\r\nc=IN {family} {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP {pt} {te}\r\na=rtpmap:{pt} {name}/8000\r\n\
         a=rtpmap:{te} telephone-event/8000\r\na=fmtp:{te} 0-16\r\na=ptime:20\r\na=sendrecv\r\n",
        port = bridge.port(),
        name = codec.encoding_name(),
    )
}

/// One call to a browser.
struct EdgeCall {
    peer: PeerId,
    /// The connection the browser is on, to close its calls when it goes.
    on: Peer,
    plain: PlainOffer,
    /// The body the browser was offered.
    webrtc_offer: String,
    /// What the core was told the browser answered, once it did.
    plain_answer: Option<String>,
}

/// The calls to browsers, by Call-ID, and the WebRTC side they use.
pub(crate) struct Edge {
    rtc: RtcService,
    calls: HashMap<String, EdgeCall>,
    /// The SDP session ids of our plain answers.
    ids: Ids,
}

impl Edge {
    pub(crate) fn new(rtc: RtcService, ids: Ids) -> Edge {
        Edge {
            rtc,
            calls: HashMap::new(),
            ids,
        }
    }

    /// A message about to leave on WebSocket connection `to`: the payload to send instead,
    /// or `None` when it cannot be adapted (the transaction then fails as a transport error).
    pub(crate) async fn outgoing(&mut self, to: Peer, payload: Bytes) -> Option<Bytes> {
        let Some(message) = Message::split(&payload) else {
            return Some(payload);
        };
        let Some(call_id) = message.call_id().map(str::to_string) else {
            return Some(payload);
        };
        match message.method() {
            Some("INVITE") if !message.body.is_empty() => {
                if let Some(call) = self.calls.get(&call_id) {
                    // A refresh or re-INVITE: the browser's media stays as it is.
                    return Some(message.with_body(&call.webrtc_offer));
                }
                let sdp = std::str::from_utf8(message.body).ok()?;
                let plain = read_plain_offer(sdp)?;
                let spec = MediaSpec {
                    audio: true,
                    video: false,
                    facing_g711: true,
                };
                let (peer, offer) = match self.rtc.create_peer(spec).await {
                    Ok(created) => created,
                    Err(e) => {
                        tracing::warn!(%call_id, "no WebRTC peer for a browser's call: {e}");
                        return None;
                    }
                };
                let out = message.with_body(&offer);
                self.calls.insert(
                    call_id,
                    EdgeCall {
                        peer,
                        on: to,
                        plain,
                        webrtc_offer: offer,
                        plain_answer: None,
                    },
                );
                Some(out)
            }
            Some("BYE") => {
                self.close(&call_id).await;
                Some(payload)
            }
            _ => Some(payload),
        }
    }

    /// The browser hung up: its peer goes.
    pub(crate) async fn incoming_bye(&mut self, call_id: &str) {
        self.close(call_id).await;
    }

    /// A response to our INVITE `call_id` with status `code` and `body`: the plain body the
    /// core should read instead (`None`: leave it).
    pub(crate) async fn invite_response(
        &mut self,
        call_id: &str,
        code: u16,
        body: &[u8],
    ) -> Option<String> {
        let call = self.calls.get_mut(call_id)?;
        if code >= 300 {
            self.close(call_id).await;
            return None;
        }
        // Only a 2xx carries the answer to our offer (RFC 3264 §2: no early media here).
        if code < 200 || body.is_empty() {
            return None;
        }
        if let Some(answer) = &call.plain_answer {
            return Some(answer.clone());
        }
        let sdp = String::from_utf8_lossy(body).into_owned();
        let (peer, plain) = (call.peer, call.plain);
        if let Err(e) = self.rtc.accept_answer(peer, sdp).await {
            tracing::info!(%call_id, "the browser's answer was refused: {e}");
            return None;
        }
        let bridge = match self.rtc.bridge_rtp(peer, plain.leg, plain.codec).await {
            Ok(bridge) => bridge,
            Err(e) => {
                tracing::warn!(%call_id, "the browser's audio could not be bridged: {e}");
                return None;
            }
        };
        let answer = plain_answer(bridge, plain.codec, self.ids.next_u64() >> 32);
        if let Some(call) = self.calls.get_mut(call_id) {
            call.plain_answer = Some(answer.clone());
        }
        Some(answer)
    }

    /// The connection `on` closed: its calls' peers go.
    pub(crate) async fn connection_closed(&mut self, on: Peer) {
        let gone: Vec<String> = self
            .calls
            .iter()
            .filter(|(_, c)| c.on.conn == on.conn && c.on.addr == on.addr)
            .map(|(id, _)| id.clone())
            .collect();
        for call_id in gone {
            self.close(&call_id).await;
        }
    }

    async fn close(&mut self, call_id: &str) {
        if let Some(call) = self.calls.remove(call_id) {
            self.rtc.close(call.peer).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:alice@x.invalid;transport=ws SIP/2.0\r\n\
        Via: SIP/2.0/WSS 127.0.0.1:5062;branch=z9hG4bK1\r\n\
        Call-ID: abc@127.0.0.1\r\nCSeq: 1 INVITE\r\nContent-Type: application/sdp\r\n\
        l: 168\r\n\r\n\
        v=0\r\no=tandem 1 1 IN IP4 127.0.0.1\r\ns=Tandem\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
        m=audio 20002 RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n";

    #[test]
    fn our_plain_offer_is_read_for_its_leg_and_first_codec() {
        let message = Message::split(INVITE.as_bytes()).unwrap();
        assert_eq!(message.method(), Some("INVITE"));
        assert_eq!(message.call_id(), Some("abc@127.0.0.1"));
        let offer = read_plain_offer(std::str::from_utf8(message.body).unwrap()).unwrap();
        assert_eq!(offer.leg, "127.0.0.1:20002".parse::<SocketAddr>().unwrap());
        assert_eq!(offer.codec, Codec::Pcma);
        // A WebRTC offer is not ours to adapt.
        let webrtc = "v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n";
        assert_eq!(read_plain_offer(webrtc), None);
    }

    #[test]
    fn a_new_body_gets_a_matching_content_length_and_keeps_the_headers() {
        let message = Message::split(INVITE.as_bytes()).unwrap();
        let out = message.with_body("v=0\r\n");
        let text = std::str::from_utf8(&out).unwrap();
        assert!(text.ends_with("Content-Length: 5\r\n\r\nv=0\r\n"), "{text}");
        assert!(!text.contains("l: 168"), "{text}");
        assert!(text.contains("Call-ID: abc@127.0.0.1\r\n"), "{text}");
        let again = Message::split(&out).unwrap();
        assert_eq!(again.body, b"v=0\r\n");
        assert_eq!(again.head.lines().count(), message.head.lines().count());
    }

    #[test]
    fn the_plain_answer_names_the_bridge_and_the_codec() {
        let answer = plain_answer("127.0.0.1:40000".parse().unwrap(), Codec::Pcmu, 7);
        assert!(answer.contains("c=IN IP4 127.0.0.1\r\n"), "{answer}");
        assert!(
            answer.contains("m=audio 40000 RTP/AVP 0 101\r\n"),
            "{answer}"
        );
        assert!(answer.contains("a=rtpmap:0 PCMU/8000\r\n"), "{answer}");
        // Our own SDP reader takes it as an answer to the offer.
        let offer = read_plain_offer(&answer.replace("RTP/AVP 0 101", "RTP/AVP 0")).unwrap();
        assert_eq!(offer.leg.port(), 40000);
    }
}
