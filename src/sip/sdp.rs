//! SDP offer/answer for SIP call legs (RFC 3264 over RFC 8866 session descriptions).
//!
//! The model: a leg carries one G.711 audio stream, PCMU or PCMA at 8000 Hz, optionally with
//! RFC 4733 telephone-events. Everything here is pure: the caller passes the SDP body it received
//! and its own [`LocalMedia`], and gets back the SDP text to send plus the [`Negotiated`] media
//! parameters for the RTP layer. The only state is [`SdpSession`], the `o=` line of one leg, which
//! the leg owns for its lifetime and passes to every offer or answer it produces.
//!
//! Contract, per leg:
//! - UAS: [`answer`] the remote offer; on `Err`, reject the INVITE with [`SdpError::sip_status`].
//! - UAC: send [`offer`], then [`accept_answer`] on the body of the answer.
//! - Re-INVITEs (hold, resume) go through the same functions with the same [`SdpSession`].
//!
//! Answers carry exactly one codec (plus telephone-event): RFC 3264 §6.1 lets the answerer list
//! several, but then the offerer may switch between them at any packet, and our media path
//! transcodes exactly one.
//!
//! Parsing and serialising are done by the `sdp` crate; this module only interprets the parsed
//! description. Its per-session codec lookups are not used: they merge `a=rtpmap` across all m-lines,
//! and a dynamic payload type means different things on an audio and a video line.

use std::net::{IpAddr, SocketAddr};

use sdp::SessionDescription;
use sdp::description::common::{Address, Attribute, ConnectionInformation};
use sdp::description::media::{MediaDescription, MediaName, RangedPort};
use sdp::description::session::{Origin, TimeDescription, Timing};

/// RTP clock rate of G.711 and of the telephone-events we accept (RFC 3551 §4.5.14).
pub(crate) const CLOCK_RATE: u32 = 8000;

/// The payload type we offer telephone-events on; answers echo the offerer's instead.
pub(crate) const TELEPHONE_EVENT_PT: u8 = 101;

/// Packetisation time assumed when the remote sends no `a=ptime` (RFC 3551 §4.5).
const DEFAULT_PTIME_MS: u32 = 20;

/// The events we offer and answer: DTMF digits 0-9, *, #, A-D and flash (RFC 4733 §3.2).
const TELEPHONE_EVENTS: &str = "0-16";

pub use crate::media::codec::Codec;

/// The G.711 codec an `a=rtpmap` line names: 8 kHz, mono, encoding names compared without case
/// (RFC 4855 §3).
fn codec_of(map: &RtpMap<'_>) -> Option<Codec> {
    if map.clock_rate != CLOCK_RATE || !matches!(map.channels, None | Some("1")) {
        return None;
    }
    Codec::from_encoding_name(map.name)
}

/// The direction of a media stream from the point of view of the side that wrote it
/// (RFC 3264 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Sends and receives.
    SendRecv,
    /// Sends only: the writer has put the other side on hold.
    SendOnly,
    /// Receives only.
    RecvOnly,
    /// Neither sends nor receives.
    Inactive,
}

impl Direction {
    /// The direction that answers this one (RFC 3264 §6.1): what one side sends, the other
    /// receives.
    pub(crate) const fn reverse(self) -> Direction {
        match self {
            Direction::SendRecv => Direction::SendRecv,
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            Direction::Inactive => Direction::Inactive,
        }
    }

    /// Whether the side that holds this direction sends media.
    pub(crate) const fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// Whether the side that holds this direction receives media.
    pub(crate) const fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    /// The attribute name, as in `a=sendonly`.
    pub(crate) const fn attribute(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    const fn from_flags(sends: bool, receives: bool) -> Direction {
        match (sends, receives) {
            (true, true) => Direction::SendRecv,
            (true, false) => Direction::SendOnly,
            (false, true) => Direction::RecvOnly,
            (false, false) => Direction::Inactive,
        }
    }

    /// What is allowed by both `self` and `other`.
    const fn intersect(self, other: Direction) -> Direction {
        Direction::from_flags(
            self.sends() && other.sends(),
            self.receives() && other.receives(),
        )
    }

    fn from_attributes(attributes: &[Attribute]) -> Option<Direction> {
        attributes.iter().find_map(|a| match a.key.as_str() {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        })
    }
}

/// Our end of a leg's audio: where we receive RTP and what we can handle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalMedia {
    /// The address the remote sends RTP to; written in `o=` and `c=`.
    pub addr: IpAddr,
    /// The port the remote sends RTP to; RTCP is expected on the next one.
    pub rtp_port: u16,
    /// The codecs we accept, most preferred first; our offers list them in this order.
    /// An empty list means all of [`Codec`], PCMU first.
    pub codecs: Vec<Codec>,
    /// Whether we offer and accept RFC 4733 telephone-events.
    pub telephone_event: bool,
}

impl LocalMedia {
    fn codecs(&self) -> Vec<Codec> {
        if self.codecs.is_empty() {
            return vec![Codec::Pcmu, Codec::Pcma];
        }
        let mut unique = Vec::with_capacity(self.codecs.len());
        for &codec in &self.codecs {
            if !unique.contains(&codec) {
                unique.push(codec);
            }
        }
        unique
    }
}

/// The `o=` line of one leg (RFC 8866 §5.2): the session id stays fixed for the leg, and the
/// version goes up by one with every SDP we send that differs from the previous one
/// (RFC 3264 §8).
#[derive(Debug, Clone)]
pub struct SdpSession {
    id: u64,
    version: u64,
    /// The last description sent, with its version zeroed, to tell whether the next one changed.
    last: Option<String>,
}

impl SdpSession {
    /// A session whose id is derived from `seed`, which should be random per leg. The id is kept
    /// to 31 bits because some SIP stacks still parse `o=` numbers into 32-bit signed integers;
    /// the seed is mixed first (SplitMix64) so that every seed bit counts.
    pub fn new(seed: u64) -> Self {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        let id = (z ^ (z >> 31)) & 0x7fff_ffff;
        SdpSession {
            id,
            version: 1,
            last: None,
        }
    }

    /// The session id written in `o=`.
    #[cfg(test)]
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The version written in the last `o=` line produced (or to be written in the first one).
    #[cfg(test)]
    pub(crate) fn version(&self) -> u64 {
        self.version
    }

    /// Fills in `o=` and serialises, bumping the version if the content changed.
    fn write(&mut self, mut description: SessionDescription) -> String {
        description.origin.session_id = self.id;
        description.origin.session_version = 0;
        let content = description.marshal();
        if self.last.as_ref().is_some_and(|last| *last != content) {
            self.version = self.version.wrapping_add(1);
        }
        self.last = Some(content);
        description.origin.session_version = self.version;
        description.marshal()
    }
}

/// The audio stream both sides agreed on: what the RTP layer needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// Where to send RTP. The address is unspecified (`0.0.0.0`) when the remote is on RFC 2543
    /// hold, in which case `local_direction` does not send.
    pub remote_rtp: SocketAddr,
    /// Where to send RTCP: the remote's `a=rtcp` (RFC 3605), otherwise the RTP port plus one.
    pub remote_rtcp: SocketAddr,
    /// The codec both sides use.
    pub codec: Codec,
    /// The payload type of `codec` on the wire, in both directions.
    pub payload_type: u8,
    /// The payload type of telephone-events, when both sides support them.
    pub telephone_event_pt: Option<u8>,
    /// The packetisation time the remote wants to receive (`a=ptime`, default 20).
    pub ptime_ms: u32,
    /// What we may do.
    pub local_direction: Direction,
    /// What the remote said it does.
    pub remote_direction: Direction,
}

/// Our answer to a remote offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The SDP body to send.
    pub sdp: String,
    /// The audio stream it accepts.
    pub media: Negotiated,
}

/// Why an SDP body could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    /// The body is not a session description (syntax, line order, numbers, encoding).
    #[error("unparsable SDP: {0}")]
    Malformed(String),
    /// An audio stream has no `c=` address at media or session level (RFC 8866 §5.7).
    #[error("audio stream without connection address")]
    MissingConnection,
    /// No audio stream with a non-zero port.
    #[error("no audio stream")]
    NoAudio,
    /// Audio is offered only over a transport other than plain RTP/AVP (e.g. SRTP).
    #[error("unsupported audio transport {0}")]
    UnsupportedTransport(String),
    /// The audio stream's address is not a unicast IP address we can send to (FQDN, multicast,
    /// or not of the family `c=` names).
    #[error("unsupported connection address {0}")]
    UnsupportedAddress(String),
    /// The audio stream lists none of the codecs we support.
    #[error("no common codec")]
    NoCommonCodec,
    /// The answer declined our audio stream with port 0.
    #[error("audio stream rejected")]
    Rejected,
    /// The answer's m-lines do not match the offer's one for one, in number and media type
    /// (RFC 3264 §6).
    #[error("answer m-lines do not match the offer")]
    MediaMismatch,
}

impl SdpError {
    /// The SIP status that rejects an INVITE whose body caused this error: 400 when the body is
    /// broken, 488 Not Acceptable Here when it is fine but asks for media we do not do.
    pub(crate) fn sip_status(&self) -> u16 {
        match self {
            SdpError::Malformed(_) | SdpError::MissingConnection | SdpError::MediaMismatch => 400,
            SdpError::NoAudio
            | SdpError::UnsupportedTransport(_)
            | SdpError::UnsupportedAddress(_)
            | SdpError::NoCommonCodec
            | SdpError::Rejected => 488,
        }
    }
}

/// Answers `offer` (RFC 3264 §6): one m-line per offered m-line, in order; the first usable audio
/// stream is accepted with the first codec in the offer's order that `local` supports, every other
/// stream is rejected with port 0.
pub fn answer(
    offer: &str,
    local: &LocalMedia,
    session: &mut SdpSession,
) -> Result<Answer, SdpError> {
    let offer = parse(offer)?;
    let supported = local.codecs();
    let mut accepted = None;
    let mut first_failure = None;
    let mut lines = Vec::with_capacity(offer.media_descriptions.len());
    for media in &offer.media_descriptions {
        let usable = if media.media_name.media != "audio"
            || media.media_name.port.value == 0
            || accepted.is_some()
        {
            None
        } else {
            match remote_audio(&offer, media, &supported, local.telephone_event) {
                Ok(remote) => Some(remote),
                Err(e) => {
                    first_failure.get_or_insert(e);
                    None
                }
            }
        };
        match usable {
            Some(remote) => {
                let direction = remote.direction.reverse();
                lines.push(audio_line(
                    local.rtp_port,
                    &[(remote.codec, remote.payload_type)],
                    remote.telephone_event_pt,
                    remote.ptime_ms,
                    direction,
                ));
                accepted = Some(remote.negotiated(direction));
            }
            None => lines.push(rejected_line(media)),
        }
    }
    let media = accepted.ok_or(first_failure.unwrap_or(SdpError::NoAudio))?;
    let sdp = session.write(description(local.addr, lines));
    Ok(Answer { sdp, media })
}

/// An offer of one audio stream with `local`'s codecs in its order of preference. To put the
/// remote on hold send `SendOnly` (or `Inactive`), to resume `SendRecv` (RFC 3264 §8.4).
pub(crate) fn offer(local: &LocalMedia, direction: Direction, session: &mut SdpSession) -> String {
    let codecs: Vec<(Codec, u8)> = local
        .codecs()
        .into_iter()
        .map(|c| (c, c.payload_type()))
        .collect();
    let events = local.telephone_event.then_some(TELEPHONE_EVENT_PT);
    let line = audio_line(local.rtp_port, &codecs, events, DEFAULT_PTIME_MS, direction);
    session.write(description(local.addr, vec![line]))
}

/// Reads the answer to an [`offer`] made with `offer_local` and `offered` direction.
pub fn accept_answer(
    offer_local: &LocalMedia,
    offered: Direction,
    answer: &str,
) -> Result<Negotiated, SdpError> {
    let answer = parse(answer)?;
    let [media] = answer.media_descriptions.as_slice() else {
        return Err(SdpError::MediaMismatch);
    };
    if media.media_name.media != "audio" {
        return Err(SdpError::MediaMismatch);
    }
    if media.media_name.port.value == 0 {
        return Err(SdpError::Rejected);
    }
    let remote = remote_audio(
        &answer,
        media,
        &offer_local.codecs(),
        offer_local.telephone_event,
    )?;
    let local_direction = offered.intersect(remote.direction.reverse());
    Ok(remote.negotiated(local_direction))
}

/// What the remote's audio m-line says, with the codec already chosen.
struct RemoteAudio {
    rtp: SocketAddr,
    rtcp: SocketAddr,
    codec: Codec,
    payload_type: u8,
    telephone_event_pt: Option<u8>,
    ptime_ms: u32,
    direction: Direction,
}

impl RemoteAudio {
    fn negotiated(&self, local_direction: Direction) -> Negotiated {
        Negotiated {
            remote_rtp: self.rtp,
            remote_rtcp: self.rtcp,
            codec: self.codec,
            payload_type: self.payload_type,
            telephone_event_pt: self.telephone_event_pt,
            ptime_ms: self.ptime_ms,
            local_direction,
            remote_direction: self.direction,
        }
    }
}

fn parse(text: &str) -> Result<SessionDescription, SdpError> {
    let mut reader = std::io::Cursor::new(text.as_bytes());
    SessionDescription::unmarshal(&mut reader).map_err(|e| SdpError::Malformed(e.to_string()))
}

/// Interprets one audio m-line with a non-zero port; `supported` limits the codecs, the line's own
/// format order picks among them (RFC 3264 §6.1).
fn remote_audio(
    session: &SessionDescription,
    media: &MediaDescription,
    supported: &[Codec],
    telephone_event: bool,
) -> Result<RemoteAudio, SdpError> {
    let proto = media.media_name.protos.join("/");
    if proto != "RTP/AVP" {
        return Err(SdpError::UnsupportedTransport(proto));
    }
    let port = u16::try_from(media.media_name.port.value)
        .map_err(|_| SdpError::Malformed("m= port out of range".into()))?;

    let payload_types = || {
        media
            .media_name
            .formats
            .iter()
            .filter_map(|f| f.parse::<u8>().ok())
            .filter(|pt| *pt < 128)
    };
    let (codec, payload_type) = payload_types()
        .find_map(|pt| {
            let codec = match rtpmap(media, pt) {
                Some(map) => codec_of(&map),
                None => Codec::from_static(pt),
            }?;
            supported.contains(&codec).then_some((codec, pt))
        })
        .ok_or(SdpError::NoCommonCodec)?;
    let telephone_event_pt = payload_types()
        .filter(|pt| telephone_event && *pt != payload_type)
        .find(|pt| {
            rtpmap(media, *pt).is_some_and(|map| {
                map.name.eq_ignore_ascii_case("telephone-event") && map.clock_rate == CLOCK_RATE
            })
        });

    // A media-level c= overrides the session-level one (RFC 8866 §5.7).
    let connection = media
        .connection_information
        .as_ref()
        .or(session.connection_information.as_ref())
        .ok_or(SdpError::MissingConnection)?;
    let addr = connection_address(connection)?;

    // Media-level direction attributes override session-level ones (RFC 3264 §5.1).
    let mut direction = Direction::from_attributes(&media.attributes)
        .or_else(|| Direction::from_attributes(&session.attributes))
        .unwrap_or(Direction::SendRecv);
    if addr.is_unspecified() {
        // RFC 2543 hold (RFC 3264 §8.4): a side with no address cannot receive.
        direction = direction.intersect(Direction::SendOnly);
    }

    let rtp = SocketAddr::new(addr, port);
    Ok(RemoteAudio {
        rtp,
        rtcp: rtcp_address(media, rtp),
        codec,
        payload_type,
        telephone_event_pt,
        ptime_ms: ptime(media),
        direction,
    })
}

fn connection_address(connection: &ConnectionInformation) -> Result<IpAddr, SdpError> {
    let text = connection
        .address
        .as_ref()
        .map(|a| a.address.as_str())
        .ok_or(SdpError::MissingConnection)?;
    let unsupported = || SdpError::UnsupportedAddress(text.to_owned());
    let addr: IpAddr = text.parse().map_err(|_| unsupported())?;
    let family_matches = match connection.address_type.as_str() {
        "IP4" => addr.is_ipv4(),
        "IP6" => addr.is_ipv6(),
        _ => false,
    };
    if !family_matches || addr.is_multicast() {
        return Err(unsupported());
    }
    Ok(addr)
}

/// `a=rtcp:<port> [IN IP4 <addr>]` (RFC 3605 §2.1), else the next port up (RFC 3550 §11).
fn rtcp_address(media: &MediaDescription, rtp: SocketAddr) -> SocketAddr {
    let default = SocketAddr::new(rtp.ip(), rtp.port().checked_add(1).unwrap_or(rtp.port()));
    let Some(Some(value)) = media.attribute("rtcp") else {
        return default;
    };
    let mut fields = value.split_whitespace();
    let Some(port) = fields.next().and_then(|p| p.parse::<u16>().ok()) else {
        return default;
    };
    let addr = match (fields.next(), fields.next(), fields.next()) {
        (Some("IN"), Some("IP4" | "IP6"), Some(addr)) => addr.parse().unwrap_or(rtp.ip()),
        _ => rtp.ip(),
    };
    SocketAddr::new(addr, port)
}

fn ptime(media: &MediaDescription) -> u32 {
    media
        .attribute("ptime")
        .flatten()
        .and_then(|v| v.trim().parse::<u32>().ok())
        .filter(|ms| (1..=1000).contains(ms))
        .unwrap_or(DEFAULT_PTIME_MS)
}

/// `a=rtpmap:<payload type> <encoding name>/<clock rate>[/<channels>]` (RFC 8866 §6.6).
struct RtpMap<'a> {
    name: &'a str,
    clock_rate: u32,
    channels: Option<&'a str>,
}

fn rtpmap(media: &MediaDescription, payload_type: u8) -> Option<RtpMap<'_>> {
    media
        .attributes
        .iter()
        .filter(|a| a.key == "rtpmap")
        .filter_map(|a| a.value.as_deref())
        .find_map(|value| {
            let (pt, encoding) = value.trim().split_once(char::is_whitespace)?;
            if pt.parse::<u8>().ok()? != payload_type {
                return None;
            }
            let mut parts = encoding.trim().split('/');
            let name = parts.next()?;
            let clock_rate = parts.next()?.parse().ok()?;
            Some(RtpMap {
                name,
                clock_rate,
                channels: parts.next(),
            })
        })
}

fn address_type(addr: IpAddr) -> &'static str {
    if addr.is_ipv4() { "IP4" } else { "IP6" }
}

/// Our session-level lines (RFC 8866 §5): `o=` is completed by [`SdpSession::write`].
fn description(addr: IpAddr, media: Vec<MediaDescription>) -> SessionDescription {
    SessionDescription {
        version: 0,
        origin: Origin {
            username: "tandem".into(),
            session_id: 0,
            session_version: 0,
            network_type: "IN".into(),
            address_type: address_type(addr).into(),
            unicast_address: addr.to_string(),
        },
        session_name: "Tandem".into(),
        connection_information: Some(ConnectionInformation {
            network_type: "IN".into(),
            address_type: address_type(addr).into(),
            address: Some(Address {
                address: addr.to_string(),
                ttl: None,
                range: None,
            }),
        }),
        time_descriptions: vec![TimeDescription {
            timing: Timing {
                start_time: 0,
                stop_time: 0,
            },
            repeat_times: vec![],
        }],
        media_descriptions: media,
        ..Default::default()
    }
}

fn attribute(key: &str, value: Option<String>) -> Attribute {
    Attribute::new(key.into(), value)
}

/// An audio m-line of ours: the codecs with the payload types to use, then telephone-events.
fn audio_line(
    port: u16,
    codecs: &[(Codec, u8)],
    telephone_event_pt: Option<u8>,
    ptime_ms: u32,
    direction: Direction,
) -> MediaDescription {
    let mut formats = Vec::new();
    let mut attributes = Vec::new();
    for &(codec, pt) in codecs {
        formats.push(pt.to_string());
        attributes.push(attribute(
            "rtpmap",
            Some(format!("{pt} {}/{CLOCK_RATE}", codec.encoding_name())),
        ));
    }
    if let Some(pt) = telephone_event_pt {
        formats.push(pt.to_string());
        attributes.push(attribute(
            "rtpmap",
            Some(format!("{pt} telephone-event/{CLOCK_RATE}")),
        ));
        attributes.push(attribute("fmtp", Some(format!("{pt} {TELEPHONE_EVENTS}"))));
    }
    // The packetisation we want to receive (RFC 8866 §6.4). The relay does not repacketise, so
    // an answer asks for what the offerer sends; our offers ask for G.711's usual 20 ms.
    attributes.push(attribute("ptime", Some(ptime_ms.to_string())));
    // Always explicit, although sendrecv is the default: some stacks keep a previous hold state
    // when a re-INVITE omits the attribute.
    attributes.push(attribute(direction.attribute(), None));
    MediaDescription {
        media_name: MediaName {
            media: "audio".into(),
            port: RangedPort {
                value: port as isize,
                range: None,
            },
            protos: vec!["RTP".into(), "AVP".into()],
            formats,
        },
        attributes,
        ..Default::default()
    }
}

/// A declined stream (RFC 3264 §6): same media, transport and formats as offered, port 0.
fn rejected_line(offered: &MediaDescription) -> MediaDescription {
    MediaDescription {
        media_name: MediaName {
            port: RangedPort {
                value: 0,
                range: None,
            },
            ..offered.media_name.clone()
        },
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SIPp's built-in `uac` scenario, with its keywords filled in.
    const SIPP_OFFER: &str = "v=0\r\n\
        o=user1 53655765 2353687637 IN IP4 127.0.0.1\r\n\
        s=-\r\n\
        c=IN IP4 127.0.0.1\r\n\
        t=0 0\r\n\
        m=audio 6000 RTP/AVP 0\r\n\
        a=rtpmap:0 PCMU/8000\r\n";

    /// baresip with its default module set: opus and G.722 ahead of G.711.
    const BARESIP_OFFER: &str = "v=0\r\n\
        o=- 1203491837 3873127812 IN IP4 192.0.2.10\r\n\
        s=-\r\n\
        c=IN IP4 192.0.2.10\r\n\
        t=0 0\r\n\
        a=tool:baresip 3.10.1\r\n\
        m=audio 10396 RTP/AVP 96 9 0 8 101\r\n\
        b=AS:106\r\n\
        a=rtpmap:96 opus/48000/2\r\n\
        a=fmtp:96 stereo=1;sprop-stereo=1\r\n\
        a=rtpmap:9 G722/8000\r\n\
        a=rtpmap:0 PCMU/8000\r\n\
        a=rtpmap:8 PCMA/8000\r\n\
        a=rtpmap:101 telephone-event/8000\r\n\
        a=fmtp:101 0-15\r\n\
        a=ptime:20\r\n\
        a=rtcp-rsize\r\n\
        a=sendrecv\r\n\
        a=label:1\r\n\
        a=ssrc:1296186924 cname:2c6ac7c4-59e8-4d8e-a3ac-0ba1ae55a1c4\r\n";

    /// Linphone with video enabled: payload type 96 means opus on the audio line and VP8 on the
    /// video line, and telephone-event comes at three clock rates.
    const LINPHONE_OFFER: &str = "v=0\r\n\
        o=alice 1849 2743 IN IP4 198.51.100.7\r\n\
        s=Talk\r\n\
        c=IN IP4 198.51.100.7\r\n\
        t=0 0\r\n\
        a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics\r\n\
        a=record:off\r\n\
        m=audio 7078 RTP/AVP 96 97 98 8 0 101 99 100\r\n\
        a=rtpmap:96 opus/48000/2\r\n\
        a=fmtp:96 useinbandfec=1\r\n\
        a=rtpmap:97 speex/16000\r\n\
        a=fmtp:97 vbr=on\r\n\
        a=rtpmap:98 speex/8000\r\n\
        a=rtpmap:101 telephone-event/48000\r\n\
        a=rtpmap:99 telephone-event/16000\r\n\
        a=rtpmap:100 telephone-event/8000\r\n\
        a=rtcp:7079\r\n\
        a=rtcp-fb:* trr-int 1000\r\n\
        a=rtcp-fb:* ccm tmmbr\r\n\
        m=video 9078 RTP/AVP 96 97\r\n\
        a=rtpmap:96 VP8/90000\r\n\
        a=rtpmap:97 H264/90000\r\n\
        a=fmtp:97 profile-level-id=42801F\r\n\
        a=rtcp-fb:* trr-int 1000\r\n\
        a=rtcp-fb:96 nack pli\r\n";

    fn local() -> LocalMedia {
        LocalMedia {
            addr: "203.0.113.5".parse().unwrap(),
            rtp_port: 20000,
            codecs: vec![Codec::Pcmu, Codec::Pcma],
            telephone_event: true,
        }
    }

    fn answer_to(offer: &str) -> Answer {
        answer(offer, &local(), &mut SdpSession::new(7)).expect("offer is acceptable")
    }

    /// A one-stream offer from 192.0.2.1:4000 with `media` lines after the m-line.
    fn offer_with(formats: &str, media: &str) -> String {
        format!(
            "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
             m=audio 4000 RTP/AVP {formats}\r\n{media}"
        )
    }

    fn lines(sdp: &str) -> Vec<&str> {
        sdp.lines().collect()
    }

    fn m_lines(sdp: &str) -> Vec<&str> {
        sdp.lines().filter(|l| l.starts_with("m=")).collect()
    }

    #[test]
    fn sipp_default_offer_is_answered_with_pcmu() {
        let reply = answer_to(SIPP_OFFER);
        assert_eq!(m_lines(&reply.sdp), ["m=audio 20000 RTP/AVP 0"]);
        assert!(lines(&reply.sdp).contains(&"a=rtpmap:0 PCMU/8000"));
        assert!(!reply.sdp.contains("telephone-event"));
        let media = reply.media;
        assert_eq!(
            media.remote_rtp,
            "127.0.0.1:6000".parse::<std::net::SocketAddr>().unwrap()
        );
        assert_eq!(
            media.remote_rtcp,
            "127.0.0.1:6001".parse::<std::net::SocketAddr>().unwrap()
        );
        assert_eq!((media.codec, media.payload_type), (Codec::Pcmu, 0));
        assert_eq!(media.telephone_event_pt, None);
        assert_eq!(media.ptime_ms, 20);
        assert_eq!(media.local_direction, Direction::SendRecv);
    }

    #[test]
    fn answers_ask_for_the_packetisation_the_offerer_sends_and_offers_for_20_ms() {
        let with_ptime = format!("{SIPP_OFFER}a=ptime:30\r\n");
        let answer = answer_to(&with_ptime);
        assert!(lines(&answer.sdp).contains(&"a=ptime:30"), "{}", answer.sdp);
        assert_eq!(answer.media.ptime_ms, 30);
        // Without a=ptime in the offer, RFC 3551's 20 ms for G.711.
        assert!(lines(&answer_to(SIPP_OFFER).sdp).contains(&"a=ptime:20"));
        let ours = offer(&local(), Direction::SendRecv, &mut SdpSession::new(3));
        assert!(lines(&ours).contains(&"a=ptime:20"), "{ours}");
    }

    #[test]
    fn baresip_offer_keeps_only_g711_and_its_telephone_event_pt() {
        let reply = answer_to(BARESIP_OFFER);
        assert_eq!(m_lines(&reply.sdp), ["m=audio 20000 RTP/AVP 0 101"]);
        let lines = lines(&reply.sdp);
        assert!(lines.contains(&"a=rtpmap:0 PCMU/8000"));
        assert!(lines.contains(&"a=rtpmap:101 telephone-event/8000"));
        assert!(lines.contains(&"a=fmtp:101 0-16"));
        for dropped in ["opus", "G722", "PCMA", "ssrc", "label", "tool"] {
            assert!(!reply.sdp.contains(dropped), "{dropped} in\n{}", reply.sdp);
        }
        assert_eq!(
            reply.media.remote_rtp,
            "192.0.2.10:10396".parse::<std::net::SocketAddr>().unwrap()
        );
        assert_eq!(reply.media.codec, Codec::Pcmu);
        assert_eq!(reply.media.telephone_event_pt, Some(101));
    }

    #[test]
    fn linphone_video_is_rejected_in_place_and_audio_uses_the_8khz_telephone_event() {
        let reply = answer_to(LINPHONE_OFFER);
        assert_eq!(
            m_lines(&reply.sdp),
            ["m=audio 20000 RTP/AVP 8 100", "m=video 0 RTP/AVP 96 97"]
        );
        assert!(!reply.sdp.contains("VP8") && !reply.sdp.contains("opus"));
        let media = reply.media;
        assert_eq!((media.codec, media.payload_type), (Codec::Pcma, 8));
        assert_eq!(media.telephone_event_pt, Some(100));
        assert_eq!(
            media.remote_rtcp,
            "198.51.100.7:7079".parse::<std::net::SocketAddr>().unwrap()
        );
    }

    #[test]
    fn the_offer_order_picks_the_codec_not_ours() {
        let mut ours = local();
        ours.codecs = vec![Codec::Pcma, Codec::Pcmu];
        let offer = offer_with("0 8", "");
        let reply = answer(&offer, &ours, &mut SdpSession::new(1)).unwrap();
        assert_eq!(reply.media.codec, Codec::Pcmu);

        ours.codecs = vec![Codec::Pcma];
        let reply = answer(&offer, &ours, &mut SdpSession::new(1)).unwrap();
        assert_eq!(reply.media.codec, Codec::Pcma);
        assert_eq!(m_lines(&reply.sdp), ["m=audio 20000 RTP/AVP 8"]);
    }

    #[test]
    fn dynamic_payload_types_are_recognised_by_encoding_name() {
        let offer = offer_with(
            "97 96",
            "a=rtpmap:97 pcma/8000\r\na=rtpmap:96 PCMU/8000/1\r\n",
        );
        let reply = answer_to(&offer);
        assert_eq!(
            (reply.media.codec, reply.media.payload_type),
            (Codec::Pcma, 97)
        );
        assert!(lines(&reply.sdp).contains(&"a=rtpmap:97 PCMA/8000"));

        // Wrong clock rate or stereo is not G.711 as we do it.
        let offer = offer_with(
            "97 98",
            "a=rtpmap:97 PCMU/16000\r\na=rtpmap:98 PCMA/8000/2\r\n",
        );
        let err = answer(&offer, &local(), &mut SdpSession::new(1)).unwrap_err();
        assert_eq!(
            (err.clone(), err.sip_status()),
            (SdpError::NoCommonCodec, 488)
        );
    }

    #[test]
    fn telephone_event_is_left_out_when_we_do_not_support_it() {
        let mut ours = local();
        ours.telephone_event = false;
        let reply = answer(BARESIP_OFFER, &ours, &mut SdpSession::new(1)).unwrap();
        assert_eq!(m_lines(&reply.sdp), ["m=audio 20000 RTP/AVP 0"]);
        assert_eq!(reply.media.telephone_event_pt, None);
        assert!(!reply.sdp.contains("telephone-event"));
    }

    #[test]
    fn only_the_first_acceptable_audio_stream_is_accepted() {
        let offer = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
            m=audio 4000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:x\r\n\
            m=audio 4002 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n\
            m=audio 0 RTP/AVP 0\r\n\
            m=audio 4004 RTP/AVP 8\r\n\
            m=application 5000 UDP/DTLS/SCTP webrtc-datachannel\r\n\
            m=audio 4006 RTP/AVP 0\r\n";
        let reply = answer_to(offer);
        assert_eq!(
            m_lines(&reply.sdp),
            [
                "m=audio 0 RTP/SAVP 0",
                "m=audio 0 RTP/AVP 18",
                "m=audio 0 RTP/AVP 0",
                "m=audio 20000 RTP/AVP 8",
                "m=application 0 UDP/DTLS/SCTP webrtc-datachannel",
                "m=audio 0 RTP/AVP 0",
            ]
        );
        assert_eq!(
            reply.media.remote_rtp,
            "192.0.2.1:4004".parse::<std::net::SocketAddr>().unwrap()
        );
        assert!(!reply.sdp.contains("crypto"));
    }

    #[test]
    fn no_acceptable_audio_is_not_acceptable_here() {
        let session = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n";
        let cases = [
            (
                "m=video 4000 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n",
                SdpError::NoAudio,
            ),
            ("m=audio 0 RTP/AVP 0\r\n", SdpError::NoAudio),
            ("", SdpError::NoAudio),
            (
                "m=audio 4000 RTP/AVP 96\r\na=rtpmap:96 opus/48000/2\r\n",
                SdpError::NoCommonCodec,
            ),
            (
                "m=audio 4000 RTP/SAVP 0\r\n",
                SdpError::UnsupportedTransport("RTP/SAVP".into()),
            ),
        ];
        for (media, expected) in cases {
            let offer = format!("{session}{media}");
            let err = answer(&offer, &local(), &mut SdpSession::new(1)).unwrap_err();
            assert_eq!(err, expected, "{media}");
            assert_eq!(err.sip_status(), 488);
        }
    }

    #[test]
    fn hold_offers_are_never_answered_with_sendrecv() {
        let cases = [
            ("a=sendonly\r\n", Direction::SendOnly, Direction::RecvOnly),
            ("a=recvonly\r\n", Direction::RecvOnly, Direction::SendOnly),
            ("a=inactive\r\n", Direction::Inactive, Direction::Inactive),
            ("a=sendrecv\r\n", Direction::SendRecv, Direction::SendRecv),
            ("", Direction::SendRecv, Direction::SendRecv),
        ];
        for (attribute, remote, ours) in cases {
            let reply = answer_to(&offer_with("0", attribute));
            assert_eq!(reply.media.remote_direction, remote, "{attribute}");
            assert_eq!(reply.media.local_direction, ours, "{attribute}");
            assert_eq!(ours, remote.reverse());
            let written = format!("a={}", ours.attribute());
            assert!(
                lines(&reply.sdp).contains(&written.as_str()),
                "{}",
                reply.sdp
            );
            assert_eq!(
                reply.sdp.matches("a=sendrecv").count(),
                usize::from(ours == Direction::SendRecv)
            );
        }
    }

    #[test]
    fn session_level_direction_applies_unless_the_media_level_has_one() {
        let session_hold = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\n\
            t=0 0\r\na=sendonly\r\nm=audio 4000 RTP/AVP 0\r\n";
        assert_eq!(
            answer_to(session_hold).media.local_direction,
            Direction::RecvOnly
        );

        let overridden = format!("{session_hold}a=inactive\r\n");
        assert_eq!(
            answer_to(&overridden).media.local_direction,
            Direction::Inactive
        );
    }

    #[test]
    fn rfc2543_hold_with_a_zero_address_is_answered_recvonly() {
        let offer = "v=0\r\no=- 1 2 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\n\
            m=audio 4000 RTP/AVP 0\r\n";
        let reply = answer_to(offer);
        assert_eq!(reply.media.remote_direction, Direction::SendOnly);
        assert_eq!(reply.media.local_direction, Direction::RecvOnly);
        assert!(lines(&reply.sdp).contains(&"a=recvonly"));
        assert!(reply.media.remote_rtp.ip().is_unspecified());

        let inactive = format!("{offer}a=recvonly\r\n");
        assert_eq!(
            answer_to(&inactive).media.local_direction,
            Direction::Inactive
        );
    }

    #[test]
    fn media_level_connection_overrides_the_session_level_one() {
        let offer = offer_with("0", "c=IN IP4 192.0.2.99\r\na=ptime:30\r\n");
        let media = answer_to(&offer).media;
        assert_eq!(
            media.remote_rtp,
            "192.0.2.99:4000".parse::<std::net::SocketAddr>().unwrap()
        );
        assert_eq!(media.ptime_ms, 30);

        let only_media_level = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n\
            m=audio 4000 RTP/AVP 0\r\nc=IN IP4 192.0.2.98\r\n";
        assert_eq!(
            answer_to(only_media_level)
                .media
                .remote_rtp
                .ip()
                .to_string(),
            "192.0.2.98"
        );

        let none = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
        let err = answer(none, &local(), &mut SdpSession::new(1)).unwrap_err();
        assert_eq!(
            (err.clone(), err.sip_status()),
            (SdpError::MissingConnection, 400)
        );
    }

    #[test]
    fn ipv6_offers_and_answers_work() {
        let offer = "v=0\r\no=- 1 1 IN IP6 2001:db8::1\r\ns=-\r\nc=IN IP6 2001:db8::1\r\nt=0 0\r\n\
            m=audio 4000 RTP/AVP 0\r\na=rtcp:4001 IN IP6 2001:db8::2\r\n";
        let mut ours = local();
        ours.addr = "2001:db8::5".parse().unwrap();
        let reply = answer(offer, &ours, &mut SdpSession::new(1)).unwrap();
        assert_eq!(
            reply.media.remote_rtp,
            "[2001:db8::1]:4000"
                .parse::<std::net::SocketAddr>()
                .unwrap()
        );
        assert_eq!(
            reply.media.remote_rtcp,
            "[2001:db8::2]:4001"
                .parse::<std::net::SocketAddr>()
                .unwrap()
        );
        let lines = lines(&reply.sdp);
        assert!(lines.contains(&"c=IN IP6 2001:db8::5"), "{}", reply.sdp);
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("o=tandem ") && l.ends_with(" IN IP6 2001:db8::5"))
        );

        let mismatched = offer.replace("c=IN IP6 2001:db8::1", "c=IN IP4 2001:db8::1");
        let err = answer(&mismatched, &ours, &mut SdpSession::new(1)).unwrap_err();
        assert_eq!(err, SdpError::UnsupportedAddress("2001:db8::1".into()));
    }

    #[test]
    fn unusable_ptime_falls_back_to_20ms() {
        for ptime in ["a=ptime:0\r\n", "a=ptime:abc\r\n", "a=ptime:99999\r\n"] {
            assert_eq!(
                answer_to(&offer_with("0", ptime)).media.ptime_ms,
                20,
                "{ptime}"
            );
        }
    }

    #[test]
    fn origin_version_goes_up_by_one_only_when_the_sdp_changes() {
        let mut session = SdpSession::new(0x1234_5678_9abc);
        let origin = |sdp: &str| -> Vec<String> {
            let o = sdp.lines().find(|l| l.starts_with("o=")).unwrap();
            o[2..].split(' ').map(str::to_owned).collect()
        };

        let first = offer(&local(), Direction::SendRecv, &mut session);
        let o = origin(&first);
        assert_eq!(o[0], "tandem");
        assert_eq!(o[1], session.id().to_string());
        let v0: u64 = o[2].parse().unwrap();
        assert_eq!(&o[3..], ["IN", "IP4", "203.0.113.5"]);
        let lines = lines(&first);
        assert_eq!(&lines[..3], ["v=0", lines[1], "s=Tandem"]);
        assert!(lines.contains(&"t=0 0"));

        let same = offer(&local(), Direction::SendRecv, &mut session);
        assert_eq!(same, first, "an unchanged SDP keeps its version");

        let hold = offer(&local(), Direction::SendOnly, &mut session);
        assert_eq!(origin(&hold)[2], (v0 + 1).to_string());
        assert_eq!(origin(&hold)[1], o[1], "the session id never changes");

        let resumed = answer(SIPP_OFFER, &local(), &mut session).unwrap();
        assert_eq!(origin(&resumed.sdp)[2], (v0 + 2).to_string());
        assert_eq!(session.version(), v0 + 2);
    }

    #[test]
    fn our_offer_lists_our_codecs_in_order_with_telephone_event() {
        let mut ours = local();
        ours.codecs = vec![Codec::Pcma, Codec::Pcmu, Codec::Pcma];
        let sdp = offer(&ours, Direction::SendOnly, &mut SdpSession::new(3));
        assert_eq!(m_lines(&sdp), ["m=audio 20000 RTP/AVP 8 0 101"]);
        let lines = lines(&sdp);
        for line in [
            "c=IN IP4 203.0.113.5",
            "a=rtpmap:8 PCMA/8000",
            "a=rtpmap:0 PCMU/8000",
            "a=rtpmap:101 telephone-event/8000",
            "a=fmtp:101 0-16",
            "a=sendonly",
        ] {
            assert!(lines.contains(&line), "{line} missing in\n{sdp}");
        }
    }

    #[test]
    fn offer_answer_round_trip_between_two_legs() {
        let alice = LocalMedia {
            addr: "192.0.2.1".parse().unwrap(),
            rtp_port: 30000,
            codecs: vec![Codec::Pcma, Codec::Pcmu],
            telephone_event: true,
        };
        let bob = local();
        let offer_sdp = offer(&alice, Direction::SendRecv, &mut SdpSession::new(1));
        let reply = answer(&offer_sdp, &bob, &mut SdpSession::new(2)).unwrap();
        assert_eq!(
            reply.media.remote_rtp,
            "192.0.2.1:30000".parse::<std::net::SocketAddr>().unwrap()
        );
        assert_eq!(reply.media.codec, Codec::Pcma);

        let media = accept_answer(&alice, Direction::SendRecv, &reply.sdp).unwrap();
        assert_eq!(
            media.remote_rtp,
            "203.0.113.5:20000".parse::<std::net::SocketAddr>().unwrap()
        );
        assert_eq!((media.codec, media.payload_type), (Codec::Pcma, 8));
        assert_eq!(media.telephone_event_pt, Some(TELEPHONE_EVENT_PT));
        assert_eq!(media.local_direction, Direction::SendRecv);

        // Hold and resume over the same legs.
        let hold = offer(&alice, Direction::SendOnly, &mut SdpSession::new(1));
        let held = answer(&hold, &bob, &mut SdpSession::new(2)).unwrap();
        assert_eq!(held.media.local_direction, Direction::RecvOnly);
        let media = accept_answer(&alice, Direction::SendOnly, &held.sdp).unwrap();
        assert_eq!(media.local_direction, Direction::SendOnly);
    }

    #[test]
    fn accept_answer_checks_what_came_back_against_our_offer() {
        let ours = local();
        let base = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n";
        let check = |media: &str, offered: Direction| {
            accept_answer(&ours, offered, &format!("{base}{media}"))
        };

        assert_eq!(
            check("m=audio 0 RTP/AVP 0\r\n", Direction::SendRecv),
            Err(SdpError::Rejected)
        );
        assert_eq!(
            check("m=audio 4000 RTP/AVP 18\r\n", Direction::SendRecv),
            Err(SdpError::NoCommonCodec)
        );
        assert_eq!(
            check(
                "m=audio 4000 RTP/AVP 0\r\nm=video 0 RTP/AVP 96\r\n",
                Direction::SendRecv
            ),
            Err(SdpError::MediaMismatch)
        );
        assert_eq!(
            check("m=video 4000 RTP/AVP 0\r\n", Direction::SendRecv),
            Err(SdpError::MediaMismatch)
        );
        // An answer that ignores our hold cannot make us send or receive beyond what we offered.
        let media = check(
            "m=audio 4000 RTP/AVP 0\r\na=sendrecv\r\n",
            Direction::SendOnly,
        )
        .unwrap();
        assert_eq!(media.local_direction, Direction::SendOnly);
        let media = check(
            "m=audio 4000 RTP/AVP 0\r\na=sendonly\r\n",
            Direction::SendRecv,
        )
        .unwrap();
        assert_eq!(media.local_direction, Direction::RecvOnly);
    }

    #[test]
    fn malformed_sdp_is_a_bad_request() {
        for body in [
            "",
            "hello",
            "v=1\r\n",
            "v=0\r\ns=-\r\n",
            "v=0\r\no=- x 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n",
            "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\nm=audio 70000 RTP/AVP 0\r\n",
            "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\nm=audio 4000\r\n",
        ] {
            let err = answer(body, &local(), &mut SdpSession::new(1)).unwrap_err();
            assert!(matches!(err, SdpError::Malformed(_)), "{body:?}: {err:?}");
            assert_eq!(err.sip_status(), 400);
            assert!(accept_answer(&local(), Direction::SendRecv, body).is_err());
        }
    }

    /// Deterministic mutations of realistic bodies: every result is a value, never a panic.
    #[test]
    fn mutated_sdp_never_panics() {
        let seeds = [SIPP_OFFER, BARESIP_OFFER, LINPHONE_OFFER];
        let tokens: [&[u8]; 10] = [
            b"\r\n",
            b"=",
            b":",
            b"/",
            b" ",
            b"0.0.0.0",
            b"m=audio 0 RTP/AVP 0\r\n",
            b"IP6",
            b"\xff",
            b"99999999999999999999",
        ];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut session = SdpSession::new(1);
        for round in 0..4000 {
            let mut body = seeds[round % seeds.len()].as_bytes().to_vec();
            for _ in 0..1 + next() % 4 {
                let at = (next() as usize) % (body.len() + 1);
                match next() % 5 {
                    0 if at < body.len() => body[at] ^= 1 << (next() % 8),
                    1 => body.truncate(at),
                    2 => {
                        let end = (at + (next() as usize) % 16).min(body.len());
                        body.drain(at..end);
                    }
                    3 => {
                        let token = tokens[(next() as usize) % tokens.len()];
                        body.splice(at..at, token.iter().copied());
                    }
                    _ => {
                        let end = (at + (next() as usize) % 32).min(body.len());
                        let copy = body[at..end].to_vec();
                        body.splice(at..at, copy);
                    }
                }
            }
            let text = String::from_utf8_lossy(&body);
            let _ = answer(&text, &local(), &mut session);
            let _ = accept_answer(&local(), Direction::SendRecv, &text);
        }
    }
}
