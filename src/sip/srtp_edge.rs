//! SRTP with SDES keys (RFC 4568) for calls that come in over TLS offering `RTP/SAVP`: the
//! media is encrypted on the wire and plain inside, as the SIP core and the media engine know
//! it. Like [`super::webrtc_edge`], this is a seam at the edge of the transport:
//!
//! - An INVITE over TLS whose audio is `RTP/SAVP` with an `AES_CM_128_HMAC_SHA1_80` key: two
//!   UDP sockets are bound on the media IP, an outer one for the peer's SRTP and an inner one
//!   for the media-engine leg. The core reads the offer as plain `RTP/AVP` from the inner
//!   socket, without the keys.
//! - Our answer leaving over TLS: it names the outer socket as `RTP/SAVP` with a key of ours
//!   (RFC 4568 §6.1: each side sends with its own key), and a relay task starts: the peer's
//!   packets are authenticated and decrypted towards the engine leg, the engine's encrypted
//!   towards the peer (latched on its first authentic packet).
//! - A BYE either way or a failed INVITE stops the relay and frees the sockets.
//!
//! Key exchange in SDP is only as private as the signalling, hence TLS alone (RFC 4568 §8.3).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use super::ids::Ids;
use super::srtp::{Context, MasterKey, SUITE};

/// The peer's SRTP offer: where it receives, its key, the tag of the crypto line taken.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SdesOffer {
    pub rtp: SocketAddr,
    pub tag: u32,
    pub key: MasterKey,
}

/// Reads an `RTP/SAVP` audio offer with a key of our suite; `None` for anything else.
fn read_sdes_offer(sdp: &str) -> Option<SdesOffer> {
    let mut ip: Option<IpAddr> = None;
    let mut port: Option<u16> = None;
    let mut crypto: Option<(u32, MasterKey)> = None;
    let mut in_audio = false;
    for line in sdp.lines() {
        if let Some(rest) = line.strip_prefix("c=IN ") {
            if let Some(addr) = rest.split(' ').nth(1).and_then(|a| a.trim().parse().ok()) {
                ip = Some(addr);
            }
        } else if let Some(rest) = line.strip_prefix("m=") {
            in_audio = false;
            let mut fields = rest.split(' ');
            if fields.next() == Some("audio") && port.is_none() {
                let p = fields.next()?.parse().ok()?;
                if fields.next()? == "RTP/SAVP" {
                    port = Some(p);
                    in_audio = true;
                }
            }
        } else if let Some(rest) = line.strip_prefix("a=crypto:")
            && in_audio
            && crypto.is_none()
        {
            let mut fields = rest.split_whitespace();
            let tag = fields.next()?.parse().ok();
            let suite = fields.next();
            let key = fields.next().map(MasterKey::from_inline);
            if let (Some(tag), Some(SUITE), Some(Ok(key))) = (tag, suite, key) {
                crypto = Some((tag, key));
            }
        }
    }
    let (tag, key) = crypto?;
    Some(SdesOffer {
        rtp: SocketAddr::new(ip?, port?),
        tag,
        key,
    })
}

/// The offer as the core reads it: plain `RTP/AVP` from `inner`, no keys.
fn plain_offer(sdp: &str, inner: SocketAddr) -> String {
    let family = if inner.is_ipv4() { "IP4" } else { "IP6" };
    let mut out = String::with_capacity(sdp.len());
    for line in sdp.lines() {
        let line = if line.starts_with("c=IN ") {
            format!("c=IN {family} {}", inner.ip())
        } else if let Some(rest) = line.strip_prefix("m=audio ") {
            let formats = rest.splitn(3, ' ').nth(2).unwrap_or("");
            format!("m=audio {} RTP/AVP {formats}", inner.port())
        } else if line.starts_with("a=crypto:") || line.starts_with("a=rtcp:") {
            continue;
        } else {
            line.to_string()
        };
        out.push_str(&line);
        out.push_str("\r\n");
    }
    out
}

/// Our plain answer made secure: the audio at `outer`'s port as `RTP/SAVP` with our key. The
/// engine leg's port it named comes back too.
fn secure_answer(sdp: &str, outer_port: u16, tag: u32, key: &MasterKey) -> Option<(String, u16)> {
    let mut engine_port = None;
    let mut out = String::with_capacity(sdp.len() + 80);
    for line in sdp.lines() {
        if let Some(rest) = line.strip_prefix("m=audio ")
            && engine_port.is_none()
        {
            let mut fields = rest.splitn(3, ' ');
            engine_port = fields.next()?.parse().ok();
            let _proto = fields.next();
            let formats = fields.next().unwrap_or("");
            out.push_str(&format!("m=audio {outer_port} RTP/SAVP {formats}\r\n"));
            out.push_str(&format!("a=crypto:{tag} {SUITE} {}\r\n", key.inline()));
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    Some((out, engine_port?))
}

struct SrtpCall {
    outer: Arc<UdpSocket>,
    inner: Arc<UdpSocket>,
    offer: SdesOffer,
    ours: MasterKey,
    stop: CancellationToken,
    relaying: bool,
}

/// The calls with SRTP, by Call-ID.
pub(crate) struct SrtpEdge {
    media_ip: IpAddr,
    calls: HashMap<String, SrtpCall>,
    /// Our master keys.
    ids: Ids,
}

impl SrtpEdge {
    pub(crate) fn new(media_ip: IpAddr, ids: Ids) -> SrtpEdge {
        SrtpEdge {
            media_ip,
            calls: HashMap::new(),
            ids,
        }
    }

    /// An INVITE that came in over TLS: its body as the core should read it, when it offers
    /// SRTP we take.
    pub(crate) async fn incoming_invite(&mut self, call_id: &str, body: &[u8]) -> Option<String> {
        let sdp = std::str::from_utf8(body).ok()?;
        let offer = read_sdes_offer(sdp)?;
        if let Some(call) = self.calls.get_mut(call_id) {
            // A re-INVITE: same sockets; the peer may have a new key for what it sends.
            call.offer.key = offer.key.clone();
            return Some(plain_offer(sdp, call.inner.local_addr().ok()?));
        }
        let bind = SocketAddr::new(self.media_ip, 0);
        let (outer, inner) = match (UdpSocket::bind(bind).await, UdpSocket::bind(bind).await) {
            (Ok(outer), Ok(inner)) => (outer, inner),
            _ => {
                tracing::warn!(%call_id, "no sockets for an SRTP call");
                return None;
            }
        };
        let plain = plain_offer(sdp, inner.local_addr().ok()?);
        self.calls.insert(
            call_id.to_string(),
            SrtpCall {
                outer: Arc::new(outer),
                inner: Arc::new(inner),
                offer,
                ours: MasterKey::generate(&mut self.ids),
                stop: CancellationToken::new(),
                relaying: false,
            },
        );
        Some(plain)
    }

    /// Our response to an INVITE of `call_id` leaving over TLS: its body made secure (`None`:
    /// unchanged). A failure ends the call's relay.
    pub(crate) fn outgoing_response(
        &mut self,
        call_id: &str,
        code: u16,
        body: &[u8],
    ) -> Option<String> {
        if code >= 300 {
            self.end(call_id);
            return None;
        }
        let call = self.calls.get_mut(call_id)?;
        let sdp = std::str::from_utf8(body).ok()?;
        let outer_port = call.outer.local_addr().ok()?.port();
        let (answer, engine_port) = secure_answer(sdp, outer_port, call.offer.tag, &call.ours)?;
        if !call.relaying {
            call.relaying = true;
            tokio::spawn(relay(
                call.outer.clone(),
                call.inner.clone(),
                SocketAddr::new(self.media_ip, engine_port),
                call.offer.rtp,
                Context::new(&call.offer.key),
                Context::new(&call.ours),
                call.stop.clone(),
            ));
        }
        Some(answer)
    }

    /// The call ended (a BYE either way): its relay stops.
    pub(crate) fn end(&mut self, call_id: &str) {
        if let Some(call) = self.calls.remove(call_id) {
            call.stop.cancel();
        }
    }
}

/// SRTP from the peer to plain RTP towards the engine leg, and back, until `stop`.
async fn relay(
    outer: Arc<UdpSocket>,
    inner: Arc<UdpSocket>,
    engine: SocketAddr,
    mut peer: SocketAddr,
    mut from_peer: Context,
    mut to_peer: Context,
    stop: CancellationToken,
) {
    let mut a = vec![0u8; 2048];
    let mut b = vec![0u8; 2048];
    let (mut refused, mut relayed) = (0u64, 0u64);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            received = outer.recv_from(&mut a) => {
                let Ok((n, from)) = received else { continue };
                match from_peer.unprotect(&a[..n]) {
                    Ok(plain) => {
                        // Only authentic packets move the latch (symmetric RTP).
                        peer = from;
                        relayed += 1;
                        let _ = inner.send_to(&plain, engine).await;
                    }
                    Err(_) => refused += 1,
                }
            }
            received = inner.recv_from(&mut b) => {
                let Ok((n, from)) = received else { continue };
                if from.port() != engine.port() {
                    continue;
                }
                let mut packet = b[..n].to_vec();
                if to_peer.protect(&mut packet).is_ok() {
                    let _ = outer.send_to(&packet, peer).await;
                }
            }
        }
    }
    tracing::info!(relayed, refused, "SRTP relay stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn baresip_offer(key: &MasterKey) -> String {
        format!(
            "v=0\r\no=- 1 2 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n\
             m=audio 10394 RTP/SAVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n\
             a=rtcp:10395\r\n\
             a=crypto:1 AES_CM_128_HMAC_SHA1_32 inline:{k}\r\n\
             a=crypto:2 AES_CM_128_HMAC_SHA1_80 {inline}\r\na=sendrecv\r\n",
            k = &key.inline()["inline:".len()..],
            inline = key.inline()
        )
    }

    #[test]
    fn the_80_bit_suite_is_taken_and_the_core_reads_plain_rtp() {
        let key = MasterKey::generate(&mut Ids::seeded(11));
        let offer_text = baresip_offer(&key);
        let offer = read_sdes_offer(&offer_text).unwrap();
        assert_eq!(offer.rtp, "192.0.2.10:10394".parse::<SocketAddr>().unwrap());
        assert_eq!((offer.tag, offer.key), (2, key));
        let plain = plain_offer(&offer_text, "127.0.0.1:40000".parse().unwrap());
        assert!(plain.contains("c=IN IP4 127.0.0.1\r\n"), "{plain}");
        assert!(
            plain.contains("m=audio 40000 RTP/AVP 0 8 101\r\n"),
            "{plain}"
        );
        assert!(
            !plain.contains("crypto") && !plain.contains("a=rtcp:"),
            "{plain}"
        );
        // Plain offers are not ours to touch.
        assert_eq!(read_sdes_offer(&plain), None);
    }

    #[test]
    fn our_answer_names_the_outer_socket_with_our_key_under_their_tag() {
        let ours = MasterKey::generate(&mut Ids::seeded(12));
        let answer = "v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 20002 RTP/AVP 0 101\r\na=sendrecv\r\n";
        let (secure, engine) = secure_answer(answer, 40001, 2, &ours).unwrap();
        assert_eq!(engine, 20002);
        assert!(
            secure.contains("m=audio 40001 RTP/SAVP 0 101\r\n"),
            "{secure}"
        );
        assert!(
            secure.contains(&format!("a=crypto:2 {SUITE} {}\r\n", ours.inline())),
            "{secure}"
        );
    }
}
