//! One WebRTC peer: a str0m `Rtc` with the session rules Tandem keeps around it.
//!
//! Sans-IO, like the `Rtc` it wraps: feed it datagrams and timeouts with
//! [`PeerConnection::handle_input`], then call [`PeerConnection::poll_output`] until it returns
//! [`Output::Timeout`], the next moment it wants a [`Input::Timeout`]. Time is an argument.
//!
//! What it adds to str0m:
//! - Tandem's role: ICE-lite with one host candidate, always the offerer ([`PeerConnection::offer`],
//!   [`PeerConnection::set_video`]), though a client's own re-offer is accepted too ([`PeerConnection::accept_offer`]).
//! - Its codecs: Opus and PCMU for audio (PCMU is off in str0m by default), VP8 and H.264 for
//!   video; and tolerance of `a=rtpmap:0 PCMU/8000/1` ([`normalize_sdp`]).
//! - Its end-of-leg rules, as one [`CloseReason`]: RFC 7675 consent (no binding request from the
//!   client for `consent_timeout`), ICE that never connects, DTLS failure, close by either side.
//!   str0m's own ICE-lite state goes `Disconnected` after 15 s without a check and comes back
//!   with the next one; that is not the end of a leg here, only consent is.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::format::{Codec, FormatParams, PayloadParams};
use str0m::media::{Direction, Frequency, KeyframeRequestKind, MediaKind, MediaTime, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{Extension, ExtensionMap};
use str0m::{Candidate, Event, IceCreds, Rtc};

use super::{CloseReason, MediaSpec, RtcError, demux};

/// The payload types we offer RFC 4733 telephone-events on, with Opus's 48 kHz clock and with
/// G.711's 8 kHz one (the numbers browsers use; none of str0m's default codecs takes them).
const TELEPHONE_EVENT_48K: u8 = 110;
const TELEPHONE_EVENT_8K: u8 = 126;

/// How a peer is set up.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeerConfig {
    /// Our host candidate: where the client sends (the listen port, at `public_ip` if set).
    pub local: SocketAddr,
    pub consent_timeout: Duration,
}

/// What a peer is fed.
#[derive(Debug)]
pub(crate) enum Input<'a> {
    /// Time passed; due at the instant the last [`Output::Timeout`] named (earlier is harmless).
    Timeout,
    /// A datagram the demux routed to this peer.
    Datagram {
        source: SocketAddr,
        contents: &'a [u8],
    },
}

/// A datagram to send from the shared socket.
#[derive(Debug)]
pub struct Transmit {
    pub destination: SocketAddr,
    pub contents: Vec<u8>,
}

#[derive(Debug)]
pub(crate) enum Output {
    Transmit(Transmit),
    Event(PeerEvent),
    /// Nothing more until this instant or the next input.
    Timeout(Instant),
}

/// A frame (video) or packet (audio) the client sent us.
#[derive(Debug, Clone)]
pub(crate) struct MediaIn {
    pub kind: MediaKind,
    /// What the payload type on this peer's session stands for; another peer maps it to its
    /// own payload type with [`PeerConnection::forward`].
    pub params: PayloadParams,
    pub codec: Codec,
    /// RTP time, in the codec's clock (48 kHz Opus, 8 kHz G.711, 90 kHz video).
    pub time: MediaTime,
    /// When the last packet of it arrived.
    pub network_time: Instant,
    pub data: Arc<[u8]>,
}

#[derive(Debug, Clone)]
pub(crate) enum PeerEvent {
    /// ICE and DTLS are up.
    Connected,
    Media(MediaIn),
    /// The client lost video we send it (PLI) or needs a fresh start (FIR): whoever feeds
    /// this peer's video should ask its own source for a keyframe.
    KeyframeRequest(KeyframeRequestKind),
    /// The client's offer or answer made video inactive or rejected it.
    VideoDropped,
    /// The leg is over; nothing more comes out of this peer but queued transmits.
    Closed(CloseReason),
}

/// An instant so far ahead it never fires, for a peer with nothing left to time.
const IDLE: Duration = Duration::from_secs(3600);

pub(crate) struct PeerConnection {
    rtc: Rtc,
    local: SocketAddr,
    ufrag: String,
    consent_timeout: Duration,
    now: Instant,
    pending: Option<SdpPendingOffer>,
    audio: Option<Mid>,
    video: Option<Mid>,
    /// Video is negotiated and not inactive, as far as the last offer/answer says.
    video_on: bool,
    /// Until connected: when ICE is given up (the answer's time plus the consent timeout).
    ice_deadline: Option<Instant>,
    /// When the client last asked for consent (a binding request to our ufrag).
    last_consent: Option<Instant>,
    connected: bool,
    closed: bool,
    /// Every SDP we send asks for narrowband Opus ([`MediaSpec::facing_g711`]).
    narrowband_opus: bool,
    queue: VecDeque<Output>,
    #[cfg(test)]
    pub(crate) panic_on_input: bool,
}

impl PeerConnection {
    /// Creates a peer and its first offer.
    pub(crate) fn offer(
        spec: MediaSpec,
        config: PeerConfig,
        now: Instant,
    ) -> Result<(PeerConnection, String), RtcError> {
        if !spec.audio && !spec.video {
            return Err(RtcError::BadSdp("an offer needs audio or video".into()));
        }
        let creds = IceCreds::new();
        let rtc = Rtc::builder()
            .set_ice_lite(true)
            .set_local_ice_credentials(creds.clone())
            .clear_codecs();
        // Opus first between WebRTC peers; PCMU first for a peer bridged to SIP, whose audio
        // then needs no transcoding. The offer lists the codecs in the order they are enabled.
        // A peer facing SIP never carries video and sends G.711 at a fixed rate: transport-wide
        // congestion control, which estimates bandwidth for video, only costs it a register of
        // the last thousand packets sent (most of a peer's memory) and feedback to compute.
        let rtc = if spec.facing_g711 {
            rtc.enable_pcmu(true, false)
                .enable_opus(true, false)
                .set_extension_map(without_twcc())
        } else {
            rtc.enable_opus(true, false).enable_pcmu(true, false)
        };
        let mut rtc = rtc.enable_vp8(true).enable_h264(true);
        // RFC 4733 digits at each audio clock (Opus and G.711), so an app can key DTMF.
        for (pt, clock) in [
            (TELEPHONE_EVENT_48K, Frequency::FORTY_EIGHT_KHZ),
            (TELEPHONE_EVENT_8K, Frequency::EIGHT_KHZ),
        ] {
            rtc.codec_config().add_config(
                pt.into(),
                None,
                Codec::Tele,
                clock,
                None,
                FormatParams::default(),
            );
        }
        let mut rtc = rtc.build(now);
        let candidate = Candidate::host(config.local, "udp")
            .map_err(|e| RtcError::Io(format!("host candidate {}: {e}", config.local)))?;
        rtc.add_local_candidate(candidate);
        let mut api = rtc.sdp_api();
        let audio = spec
            .audio
            .then(|| api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None));
        let video = spec
            .video
            .then(|| api.add_media(MediaKind::Video, Direction::SendRecv, None, None, None));
        let (offer, pending) = api.apply().expect("new media is a change");
        let peer = PeerConnection {
            rtc,
            local: config.local,
            ufrag: creds.ufrag,
            consent_timeout: config.consent_timeout,
            now,
            pending: Some(pending),
            audio,
            video,
            video_on: spec.video,
            ice_deadline: None,
            last_consent: None,
            connected: false,
            closed: false,
            narrowband_opus: spec.facing_g711,
            queue: VecDeque::new(),
            #[cfg(test)]
            panic_on_input: false,
        };
        let offer = peer.ours(offer.to_sdp_string());
        Ok((peer, offer))
    }

    /// Our ICE username fragment: binding requests to this peer carry it (see [`demux`]).
    pub(crate) fn ufrag(&self) -> &str {
        &self.ufrag
    }

    #[cfg(test)]
    pub(crate) fn is_connected(&self) -> bool {
        self.connected
    }

    pub(crate) fn has_audio(&self) -> bool {
        self.audio.is_some()
    }

    #[cfg(test)]
    pub(crate) fn has_video(&self) -> bool {
        self.video_on
    }

    /// Applies the client's answer to our pending offer.
    pub fn accept_answer(&mut self, now: Instant, sdp: &str) -> Result<(), RtcError> {
        let answer = SdpAnswer::from_sdp_string(&normalize_sdp(sdp))
            .map_err(|e| RtcError::BadSdp(e.to_string()))?;
        let pending = self.pending.take().ok_or(RtcError::NoPendingOffer)?;
        self.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| RtcError::BadSdp(e.to_string()))?;
        self.after_negotiation(now);
        Ok(())
    }

    /// Answers an offer the client made (to drop or add video itself). An offer of ours that
    /// is still pending is abandoned: the client's wins the glare, as it must for ICE-lite.
    #[cfg(test)]
    pub(crate) fn accept_offer(&mut self, now: Instant, sdp: &str) -> Result<String, RtcError> {
        let offer = str0m::change::SdpOffer::from_sdp_string(&normalize_sdp(sdp))
            .map_err(|e| RtcError::BadSdp(e.to_string()))?;
        self.pending = None;
        let answer = self
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| RtcError::BadSdp(e.to_string()))?;
        self.after_negotiation(now);
        Ok(self.ours(answer.to_sdp_string()))
    }

    /// Offers video (a new m-line, or the old one made `sendrecv` again) or makes it inactive.
    /// The answer comes back through [`PeerConnection::accept_answer`].
    pub(crate) fn set_video(&mut self, on: bool) -> Result<String, RtcError> {
        if self.pending.is_some() {
            return Err(RtcError::OfferPending);
        }
        let mut api = self.rtc.sdp_api();
        match (on, self.video) {
            (true, None) => {
                self.video =
                    Some(api.add_media(MediaKind::Video, Direction::SendRecv, None, None, None));
            }
            (true, Some(mid)) => api.set_direction(mid, Direction::SendRecv),
            (false, Some(mid)) => api.set_direction(mid, Direction::Inactive),
            (false, None) => {}
        }
        let (offer, pending) = api.apply().ok_or(RtcError::Unchanged)?;
        self.pending = Some(pending);
        self.video_on = on;
        Ok(self.ours(offer.to_sdp_string()))
    }

    /// An SDP str0m wrote, as this peer sends it.
    fn ours(&self, sdp: String) -> String {
        if self.narrowband_opus {
            ask_for_narrowband_opus(&sdp)
        } else {
            sdp
        }
    }

    fn after_negotiation(&mut self, now: Instant) {
        if !self.connected && self.ice_deadline.is_none() {
            self.ice_deadline = Some(now + self.consent_timeout);
        }
        self.check_video();
    }

    /// Reports video that the client negotiated away, once.
    fn check_video(&mut self) {
        let Some(mid) = self.video else { return };
        let live = self
            .rtc
            .media(mid)
            .is_some_and(|m| !m.disabled() && m.direction() != Direction::Inactive);
        if self.video_on && !live {
            self.queue.push_back(Output::Event(PeerEvent::VideoDropped));
        }
        self.video_on = live;
    }

    pub(crate) fn handle_input(&mut self, now: Instant, input: Input) {
        if self.closed {
            return;
        }
        #[cfg(test)]
        if self.panic_on_input {
            panic!("peer told to panic");
        }
        self.now = self.now.max(now);
        let result = match input {
            Input::Timeout => {
                if let Some(reason) = self.expired(now) {
                    self.close(reason);
                    return;
                }
                self.rtc.handle_input(str0m::Input::Timeout(now))
            }
            Input::Datagram { source, contents } => {
                // RFC 7675: a binding request to our ufrag is the client's consent. str0m
                // checks its MESSAGE-INTEGRITY; a forged one buys at most one more timeout.
                if demux::binding_request_target(contents) == Some(self.ufrag.as_str()) {
                    self.last_consent = Some(now);
                }
                let Ok(contents) = contents.try_into() else {
                    // Neither STUN, DTLS nor RTP: nothing str0m would take.
                    return;
                };
                let receive = Receive {
                    proto: Protocol::Udp,
                    source,
                    destination: self.local,
                    contents,
                };
                self.rtc.handle_input(str0m::Input::Receive(now, receive))
            }
        };
        if let Err(e) = result {
            self.fail(e);
        }
    }

    /// Whether a leg-ending deadline has passed.
    fn expired(&self, now: Instant) -> Option<CloseReason> {
        if !self.connected {
            return self
                .ice_deadline
                .is_some_and(|d| now >= d)
                .then_some(CloseReason::IceFailed);
        }
        self.last_consent
            .is_some_and(|t| now >= t + self.consent_timeout)
            .then_some(CloseReason::ConsentTimeout)
    }

    fn deadline(&self) -> Option<Instant> {
        if self.connected {
            self.last_consent.map(|t| t + self.consent_timeout)
        } else {
            self.ice_deadline
        }
    }

    /// Drain until [`Output::Timeout`].
    pub(crate) fn poll_output(&mut self) -> Output {
        loop {
            if let Some(out) = self.queue.pop_front() {
                return out;
            }
            if self.closed {
                return Output::Timeout(self.now + IDLE);
            }
            match self.rtc.poll_output() {
                Ok(str0m::Output::Transmit(t)) => {
                    return Output::Transmit(Transmit {
                        destination: t.destination,
                        contents: t.contents.into(),
                    });
                }
                Ok(str0m::Output::Timeout(t)) => {
                    let t = match self.deadline() {
                        Some(d) => t.min(d),
                        None => t,
                    };
                    return Output::Timeout(t);
                }
                Ok(str0m::Output::Event(e)) => self.on_event(e),
                Err(e) => self.fail(e),
            }
        }
    }

    fn on_event(&mut self, event: Event) {
        let out = match event {
            Event::Connected => {
                self.connected = true;
                self.ice_deadline = None;
                self.last_consent.get_or_insert(self.now);
                PeerEvent::Connected
            }
            Event::MediaData(data) => {
                let Some(kind) = self.rtc.media(data.mid).map(|m| m.kind()) else {
                    return;
                };
                PeerEvent::Media(MediaIn {
                    kind,
                    codec: data.params.spec().codec,
                    params: data.params,
                    time: data.time,
                    network_time: data.network_time,
                    data: data.data,
                })
            }
            Event::KeyframeRequest(req) if Some(req.mid) == self.video => {
                PeerEvent::KeyframeRequest(req.kind)
            }
            Event::MediaAdded(added) => {
                match added.kind {
                    MediaKind::Audio if self.audio.is_none() => self.audio = Some(added.mid),
                    MediaKind::Video if self.video.is_none() => {
                        self.video = Some(added.mid);
                        self.video_on = added.direction != Direction::Inactive;
                    }
                    _ => {}
                }
                return;
            }
            Event::MediaChanged(_) => {
                self.check_video();
                return;
            }
            Event::Closed => {
                self.close(CloseReason::RemoteClosed);
                return;
            }
            _ => return,
        };
        self.queue.push_back(Output::Event(out));
    }

    /// str0m refused to go on: the leg ends.
    fn fail(&mut self, error: str0m::RtcError) {
        tracing::debug!(%error, "WebRTC peer failed");
        let reason = match error {
            str0m::RtcError::Ice(_) => CloseReason::IceFailed,
            other => CloseReason::DtlsFailed(other.to_string()),
        };
        self.close(reason);
    }

    /// Ends the leg: DTLS close_notify and RTCP BYE are queued, then [`PeerEvent::Closed`].
    pub(crate) fn close(&mut self, reason: CloseReason) {
        if self.closed {
            return;
        }
        self.closed = true;
        let _ = self.rtc.close();
        // The closing drain is a handful of datagrams; the bound guards against a loop.
        for _ in 0..64 {
            match self.rtc.poll_output() {
                Ok(str0m::Output::Transmit(t)) => {
                    self.queue.push_back(Output::Transmit(Transmit {
                        destination: t.destination,
                        contents: t.contents.into(),
                    }))
                }
                Ok(str0m::Output::Event(_)) => {}
                Ok(str0m::Output::Timeout(_)) | Err(_) => break,
            }
            if !self.rtc.is_alive() {
                break;
            }
        }
        self.rtc.disconnect();
        self.queue
            .push_back(Output::Event(PeerEvent::Closed(reason)));
    }

    /// The audio codecs the client accepts from us, in the client's order of preference
    /// (RFC 3264 §6.1: the answer lists them so), telephone-events included.
    pub(crate) fn audio_codecs(&mut self) -> Vec<(Pt, Codec)> {
        let Some(mid) = self.audio else {
            return Vec::new();
        };
        let order: Vec<Pt> = match self.rtc.media(mid) {
            Some(media) => media.remote_pts().to_vec(),
            None => return Vec::new(),
        };
        let Some(writer) = self.rtc.writer(mid) else {
            return Vec::new();
        };
        let accepted: Vec<(Pt, Codec)> = writer
            .payload_params()
            .map(|p| (p.pt(), p.spec().codec))
            .collect();
        order
            .iter()
            .filter_map(|pt| accepted.iter().find(|(p, _)| p == pt).copied())
            .collect()
    }

    /// Sends media another peer received, mapped to this session's payload type. `false` when
    /// this peer cannot take it now (no such m-line, not sending, no common codec).
    pub(crate) fn forward(&mut self, media: &MediaIn) -> bool {
        let mid = match media.kind {
            MediaKind::Audio => self.audio,
            MediaKind::Video if self.video_on => self.video,
            MediaKind::Video => None,
        };
        let Some(writer) = mid.and_then(|mid| self.rtc.writer(mid)) else {
            return false;
        };
        let Some(pt) = writer.match_params(media.params) else {
            return false;
        };
        writer
            .write(pt, media.network_time, media.time, media.data.clone())
            .is_ok()
    }

    /// Sends one audio packet of payload type `pt` (one of [`PeerConnection::audio_codecs`]).
    pub(crate) fn write_audio(
        &mut self,
        pt: Pt,
        wallclock: Instant,
        time: MediaTime,
        data: &[u8],
    ) -> bool {
        let Some(writer) = self.audio.and_then(|mid| self.rtc.writer(mid)) else {
            return false;
        };
        writer.write(pt, wallclock, time, data.to_vec()).is_ok()
    }

    /// Asks the client for a keyframe of the video it sends us (because a peer we forward it
    /// to asked us). Ignored when the client did not negotiate that kind of feedback.
    pub(crate) fn request_keyframe(&mut self, kind: KeyframeRequestKind) -> bool {
        let Some(mut writer) = self.video.and_then(|mid| self.rtc.writer(mid)) else {
            return false;
        };
        // A client that negotiated only one kind gets that one.
        let kind = if writer.is_request_keyframe_possible(kind) {
            kind
        } else {
            KeyframeRequestKind::Pli
        };
        writer.request_keyframe(None, kind).is_ok()
    }
}

/// Makes a client's SDP acceptable to str0m where it is stricter than the clients.
///
/// - `a=rtpmap:<pt> PCMU/8000/1` (and PCMA, G722): some clients spell out the channel count
///   of mono codecs. str0m parses it as one channel and then fails to match it against its own
///   G.711 parameters, which have none (RFC 3551 leaves the count out for mono), so the codec
///   would be dropped from the answer. The trailing `/1` is removed.
fn normalize_sdp(sdp: &str) -> String {
    let mut out = String::with_capacity(sdp.len());
    for line in sdp.split_inclusive('\n') {
        let (body, end) = match line.strip_suffix("\r\n") {
            Some(body) => (body, "\r\n"),
            None => match line.strip_suffix('\n') {
                Some(body) => (body, "\n"),
                None => (line, ""),
            },
        };
        out.push_str(strip_mono_channels(body).unwrap_or(body));
        out.push_str(end);
    }
    out
}

/// What an Opus format line of ours adds for a peer bridged to G.711 (RFC 7587 §6.1): we
/// render at most 8 kHz, so the client's encoder need code nothing wider than narrowband
/// (browsers cap their Opus bandwidth by it), and we capture at most 8 kHz too.
const NARROWBAND_OPUS: &str = "maxplaybackrate=8000;sprop-maxcapturerate=8000";

/// Adds [`NARROWBAND_OPUS`] to the format parameters of every Opus payload type in `sdp`, or
/// gives the payload type a format line of its own when it has none. str0m keeps no such
/// parameter, so the SDP text it wrote is completed here.
fn ask_for_narrowband_opus(sdp: &str) -> String {
    let opus: Vec<&str> = sdp
        .lines()
        .filter_map(|l| {
            let (pt, encoding) = format_attribute(l, "rtpmap")?;
            let name = encoding.split('/').next()?;
            name.eq_ignore_ascii_case("opus").then_some(pt)
        })
        .collect();
    let has_fmtp = |pt: &str| {
        sdp.lines()
            .any(|l| format_attribute(l, "fmtp").is_some_and(|(p, _)| p == pt))
    };
    let mut out = String::with_capacity(sdp.len() + opus.len() * (NARROWBAND_OPUS.len() + 16));
    for line in sdp.split_inclusive('\n') {
        let body = line.trim_end_matches(['\r', '\n']);
        let end = &line[body.len()..];
        let is_opus = |&(pt, _): &(&str, &str)| opus.contains(&pt);
        if let Some((pt, params)) = format_attribute(body, "fmtp").filter(is_opus) {
            let sep = if params.is_empty() { "" } else { ";" };
            out.push_str(&format!("a=fmtp:{pt} {params}{sep}{NARROWBAND_OPUS}{end}"));
            continue;
        }
        out.push_str(line);
        if let Some((pt, _)) = format_attribute(body, "rtpmap").filter(is_opus)
            && !has_fmtp(pt)
        {
            out.push_str(&format!("a=fmtp:{pt} {NARROWBAND_OPUS}{end}"));
        }
    }
    out
}

/// `a=<name>:<pt> <value>` (`rtpmap`, `fmtp`) as `(pt, value)`.
fn format_attribute<'a>(line: &'a str, name: &str) -> Option<(&'a str, &'a str)> {
    line.strip_prefix("a=")?
        .strip_prefix(name)?
        .strip_prefix(':')?
        .split_once(' ')
}

/// str0m's standard RTP header extensions (Chrome's) without transport-wide sequence numbers.
fn without_twcc() -> ExtensionMap {
    let mut exts = ExtensionMap::empty();
    for (id, ext) in ExtensionMap::standard().iter() {
        if *ext != Extension::TransportSequenceNumber {
            exts.set(id, ext.clone());
        }
    }
    exts
}

/// `a=rtpmap:0 PCMU/8000/1` → `a=rtpmap:0 PCMU/8000`, for the mono codecs str0m knows.
fn strip_mono_channels(line: &str) -> Option<&str> {
    let (_, encoding) = format_attribute(line, "rtpmap")?;
    let name = encoding.split('/').next()?;
    let mono = ["PCMU", "PCMA", "G722"]
        .iter()
        .any(|c| c.eq_ignore_ascii_case(name));
    if mono && encoding.matches('/').count() == 2 {
        line.strip_suffix("/1")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An audio-only offer.
    fn audio_offer(facing_g711: bool) -> String {
        let spec = MediaSpec {
            audio: true,
            video: false,
            facing_g711,
        };
        let config = PeerConfig {
            local: "127.0.0.1:40000".parse().unwrap(),
            consent_timeout: Duration::from_secs(10),
        };
        PeerConnection::offer(spec, config, Instant::now())
            .unwrap()
            .1
    }

    /// The payload types of the offer's audio m-line, in its order of preference.
    fn audio_formats(facing_g711: bool) -> Vec<String> {
        let offer = audio_offer(facing_g711);
        let line = offer
            .lines()
            .find(|l| l.starts_with("m=audio "))
            .expect("an audio m-line");
        let pt = |name: &str| {
            offer
                .lines()
                .find_map(|l| {
                    let (pt, codec) = l.strip_prefix("a=rtpmap:")?.split_once(' ')?;
                    codec.starts_with(name).then(|| pt.to_string())
                })
                .expect(name)
        };
        let (opus, pcmu) = (pt("opus/"), pt("PCMU/"));
        line.split(' ')
            .skip(3)
            .filter(|f| *f == opus || *f == pcmu)
            .map(|f| if *f == opus { "opus" } else { "PCMU" }.to_string())
            .collect()
    }

    #[test]
    fn a_peer_bridged_to_sip_is_offered_pcmu_before_opus() {
        assert_eq!(audio_formats(false), ["opus", "PCMU"]);
        assert_eq!(audio_formats(true), ["PCMU", "opus"]);
    }

    #[test]
    fn a_peer_bridged_to_sip_is_offered_no_transport_wide_congestion_control() {
        let twcc = |offer: String| offer.contains("transport-wide-cc");
        assert!(twcc(audio_offer(false)));
        assert!(!twcc(audio_offer(true)));
    }

    /// The format parameters of the offer's Opus payload type.
    fn opus_fmtp(offer: &str) -> String {
        let pt = offer
            .lines()
            .find_map(|l| {
                let (pt, codec) = l.strip_prefix("a=rtpmap:")?.split_once(' ')?;
                codec.starts_with("opus/").then_some(pt)
            })
            .expect("opus in the offer");
        let prefix = format!("a=fmtp:{pt} ");
        let lines: Vec<&str> = offer.lines().filter(|l| l.starts_with(&prefix)).collect();
        assert_eq!(lines.len(), 1, "one format line for Opus: {offer}");
        lines[0][prefix.len()..].to_string()
    }

    #[test]
    fn a_peer_bridged_to_sip_asks_for_narrowband_opus_in_every_sdp_it_sends() {
        let params = |fmtp: &str| -> Vec<String> { fmtp.split(';').map(String::from).collect() };
        let between_peers = params(&opus_fmtp(&audio_offer(false)));
        assert!(
            !between_peers
                .iter()
                .any(|p| p.starts_with("maxplaybackrate"))
        );
        let facing_sip = params(&opus_fmtp(&audio_offer(true)));
        for wanted in ["maxplaybackrate=8000", "sprop-maxcapturerate=8000"] {
            assert!(facing_sip.iter().any(|p| p == wanted), "{facing_sip:?}");
        }
        // str0m's own parameters are kept, and so is everything else.
        for kept in &between_peers {
            assert!(facing_sip.contains(kept), "{kept} lost: {facing_sip:?}");
        }
        // Only the Opus format line changes.
        let plain = audio_offer(false);
        let narrow = ask_for_narrowband_opus(&plain);
        let changed: Vec<(&str, &str)> = plain
            .split("\r\n")
            .zip(narrow.split("\r\n"))
            .filter(|(a, b)| a != b)
            .collect();
        assert_eq!(changed.len(), 1, "{changed:?}");
        assert!(changed[0].1.starts_with("a=fmtp:"), "{changed:?}");
        assert_eq!(plain.split("\r\n").count(), narrow.split("\r\n").count());
    }

    #[test]
    fn an_opus_payload_type_without_format_parameters_is_given_a_line() {
        let sdp = "m=audio 9 UDP/TLS/RTP/SAVPF 0 96\r\na=rtpmap:0 PCMU/8000\r\n\
                   a=rtpmap:96 OPUS/48000/2\r\na=fmtp:0 x=1\r\n";
        assert_eq!(
            ask_for_narrowband_opus(sdp),
            "m=audio 9 UDP/TLS/RTP/SAVPF 0 96\r\na=rtpmap:0 PCMU/8000\r\n\
             a=rtpmap:96 OPUS/48000/2\r\n\
             a=fmtp:96 maxplaybackrate=8000;sprop-maxcapturerate=8000\r\na=fmtp:0 x=1\r\n"
        );
        let sdp = "a=rtpmap:111 opus/48000/2\na=fmtp:111 minptime=10\n";
        assert_eq!(
            ask_for_narrowband_opus(sdp),
            "a=rtpmap:111 opus/48000/2\n\
             a=fmtp:111 minptime=10;maxplaybackrate=8000;sprop-maxcapturerate=8000\n"
        );
    }

    #[test]
    fn mono_channel_counts_of_g711_are_removed_and_the_rest_kept() {
        let sdp = "v=0\r\na=rtpmap:0 PCMU/8000/1\r\na=rtpmap:8 pcma/8000/1\r\n\
                   a=rtpmap:111 opus/48000/2\r\na=rtpmap:9 G722/8000\r\n";
        assert_eq!(
            normalize_sdp(sdp),
            "v=0\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 pcma/8000\r\n\
             a=rtpmap:111 opus/48000/2\r\na=rtpmap:9 G722/8000\r\n"
        );
        assert_eq!(
            normalize_sdp("a=rtpmap:0 PCMU/8000/1\n"),
            "a=rtpmap:0 PCMU/8000\n"
        );
    }
}
