//! An independent WebRTC peer for tests: webrtc-rs (async, on its sans-IO `rtc` core) playing
//! the customer's app or an agent's browser against Tandem.
//!
//! Tandem is always the offerer and ICE-lite, so the client's main path is [`WebRtcClient::answer`]:
//! it takes the gateway's offer, answers with the codecs it was told to prefer and its loopback
//! host candidate, and returns once ICE gathering is complete (no trickle needed). Media is
//! synthetic but well-formed: Opus silence frames or a PCMU tone every 20 ms, and VP8 frames at
//! 15 fps with a keyframe every second and after every keyframe request. Counters say what
//! arrived, so a test asserts on packets rather than on logs.
//!
//! [`WebRtcClient::offer`] and [`WebRtcClient::accept_answer`] exist so two clients can prove the
//! client itself on loopback; Tandem never needs them.
#![allow(dead_code)] // each test file uses a part of the client

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rtc::interceptor::{Interceptor, Packet, Slot, StreamInfo, TaggedPacket};
use rtc::media::Sample;
use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_H264, MIME_TYPE_OPUS, MIME_TYPE_PCMU, MIME_TYPE_VP8,
};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters,
    RTCRtpEncodingParameters, RtpCodecKind,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use webrtc::media_stream::MediaStreamTrack;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCIceGatheringState, RTCPeerConnectionState, RTCSessionDescription, Registry,
    SettingEngineBuilder, register_default_interceptors,
};
use webrtc::rtp_transceiver::{
    RTCRtpTransceiverDirection, RTCRtpTransceiverInit, RtpSender, RtpTransceiver,
};

/// How long ICE gathering may take on loopback before the SDP is returned as it is.
const GATHERING_TIMEOUT: Duration = Duration::from_secs(5);
const AUDIO_FRAME: Duration = Duration::from_millis(20);
const VIDEO_FRAME: Duration = Duration::from_millis(66);
/// A keyframe every this many video frames (one a second at 15 fps).
const KEYFRAME_EVERY: u64 = 15;

/// The audio codec the client sends and the only one it registers, so its answer (or offer)
/// names it alone and the other side must send it too. An offer without it is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioCodec {
    Opus,
    Pcmu,
}

#[derive(Debug, Clone, Copy)]
pub struct ClientOptions {
    pub audio_codec: AudioCodec,
    /// Whether the client sends and receives video (VP8) when the offer has it.
    pub video: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            audio_codec: AudioCodec::Opus,
            video: false,
        }
    }
}

fn opus() -> RTCRtpCodecParameters {
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: MIME_TYPE_OPUS.to_owned(),
            clock_rate: 48000,
            channels: 2,
            sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
            rtcp_feedback: vec![],
        },
        payload_type: 111,
    }
}

/// PCMU with `channels: 0`, so the SDP says `PCMU/8000`: str0m refuses `PCMU/8000/1`.
fn pcmu() -> RTCRtpCodecParameters {
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: MIME_TYPE_PCMU.to_owned(),
            clock_rate: 8000,
            channels: 0,
            sdp_fmtp_line: String::new(),
            rtcp_feedback: vec![],
        },
        payload_type: 0,
    }
}

fn video_feedback() -> Vec<RTCPFeedback> {
    [("nack", ""), ("nack", "pli"), ("ccm", "fir")]
        .into_iter()
        .map(|(typ, parameter)| RTCPFeedback {
            typ: typ.to_owned(),
            parameter: parameter.to_owned(),
        })
        .collect()
}

fn vp8() -> RTCRtpCodecParameters {
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: MIME_TYPE_VP8.to_owned(),
            clock_rate: 90000,
            channels: 0,
            sdp_fmtp_line: String::new(),
            rtcp_feedback: video_feedback(),
        },
        payload_type: 96,
    }
}

/// Registered so an offer with H264 only is still answered; the client sends VP8 alone.
fn h264() -> RTCRtpCodecParameters {
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: MIME_TYPE_H264.to_owned(),
            clock_rate: 90000,
            channels: 0,
            sdp_fmtp_line: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f"
                .to_owned(),
            rtcp_feedback: video_feedback(),
        },
        payload_type: 102,
    }
}

/// What the driver's callbacks and the receive tasks report, read by the test.
struct Shared {
    state: watch::Sender<RTCPeerConnectionState>,
    gathering: watch::Sender<RTCIceGatheringState>,
    audio_in: AtomicU64,
    video_in: AtomicU64,
    audio_out: AtomicU64,
    video_out: AtomicU64,
    keyframe_requests: AtomicU64,
    /// Set by a keyframe request, cleared by the next keyframe sent.
    keyframe_wanted: AtomicBool,
    /// The codecs the remote side actually sent, by MIME type.
    audio_codec_in: Mutex<Option<String>>,
    video_codec_in: Mutex<Option<String>>,
    remote_video: Mutex<Option<(Arc<dyn TrackRemote>, u32)>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Shared {
    fn new() -> Shared {
        Shared {
            state: watch::channel(RTCPeerConnectionState::New).0,
            gathering: watch::channel(RTCIceGatheringState::New).0,
            audio_in: AtomicU64::new(0),
            video_in: AtomicU64::new(0),
            audio_out: AtomicU64::new(0),
            video_out: AtomicU64::new(0),
            keyframe_requests: AtomicU64::new(0),
            keyframe_wanted: AtomicBool::new(true),
            audio_codec_in: Mutex::new(None),
            video_codec_in: Mutex::new(None),
            remote_video: Mutex::new(None),
            tasks: Mutex::new(Vec::new()),
        }
    }
}

struct Events(Arc<Shared>);

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Events {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        self.0.gathering.send_replace(state);
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        self.0.state.send_replace(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let shared = self.0.clone();
        let task = tokio::spawn(async move {
            let kind = track.kind().await;
            let ssrc = track.ssrcs().await.first().copied().unwrap_or(0);
            let codec = track.codec(ssrc).await.map(|c| c.mime_type);
            let (counter, codec_in) = if kind == RtpCodecKind::Video {
                *shared.remote_video.lock().unwrap() = Some((track.clone(), ssrc));
                (&shared.video_in, &shared.video_codec_in)
            } else {
                (&shared.audio_in, &shared.audio_codec_in)
            };
            *codec_in.lock().unwrap() = codec;
            while let Some(event) = track.poll().await {
                match event {
                    TrackRemoteEvent::OnRtpPacket(_) => {
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                    TrackRemoteEvent::OnEnded | TrackRemoteEvent::OnError => break,
                    _ => {}
                }
            }
        });
        self.0.tasks.lock().unwrap().push(task);
    }
}

/// Counts the keyframe requests (PLI, FIR) that reach us in the inbound RTCP, and passes every
/// packet on untouched. webrtc-rs delivers no inbound RTCP to a local track unless an
/// interceptor asks for it; counting here needs no such delivery.
struct KeyframeRequests {
    shared: Arc<Shared>,
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

impl rtc::sansio::Protocol<TaggedPacket, TaggedPacket, ()> for KeyframeRequests {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = webrtc::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            let requests = packets
                .iter()
                .filter(|p| {
                    let p = p.as_any();
                    p.is::<PictureLossIndication>() || p.is::<FullIntraRequest>()
                })
                .count();
            if requests > 0 {
                self.shared
                    .keyframe_requests
                    .fetch_add(requests as u64, Ordering::Relaxed);
                self.shared.keyframe_wanted.store(true, Ordering::Relaxed);
            }
        }
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.write.pop_front()
    }
}

impl Interceptor for KeyframeRequests {
    fn bind_local_stream(&mut self, _: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _: &StreamInfo) {}
}

/// One of our outgoing tracks and where it is negotiated.
struct Outgoing {
    track: Arc<TrackLocalStaticSample>,
    transceiver: Arc<dyn RtpTransceiver>,
    ssrc: u32,
    codec: RTCRtpCodecParameters,
}

pub struct WebRtcClient {
    pc: Arc<dyn PeerConnection>,
    options: ClientOptions,
    shared: Arc<Shared>,
    audio: tokio::sync::Mutex<Option<Arc<Outgoing>>>,
    video: tokio::sync::Mutex<Option<Arc<Outgoing>>>,
    audio_task: Mutex<Option<JoinHandle<()>>>,
    video_task: Mutex<Option<JoinHandle<()>>>,
}

impl WebRtcClient {
    /// A peer bound to `127.0.0.1:0` that gathers loopback host candidates only.
    pub async fn new(options: ClientOptions) -> WebRtcClient {
        let shared = Arc::new(Shared::new());
        let mut media = MediaEngine::default();
        // Only the chosen audio codec: as an answerer webrtc-rs lists every registered codec the
        // offer has, whatever the transceiver's codec preferences say.
        let audio = match options.audio_codec {
            AudioCodec::Opus => opus(),
            AudioCodec::Pcmu => pcmu(),
        };
        for (codec, kind) in [
            (audio, RtpCodecKind::Audio),
            (vp8(), RtpCodecKind::Video),
            (h264(), RtpCodecKind::Video),
        ] {
            media.register_codec(codec, kind).expect("codec registers");
        }
        let registry = register_default_interceptors(Registry::new(), &mut media)
            .expect("default interceptors")
            .with(
                Slot::from(14_000),
                KeyframeRequests {
                    shared: shared.clone(),
                    read: VecDeque::new(),
                    write: VecDeque::new(),
                },
            );
        // Without this, 127.0.0.1 is never a candidate and nothing connects on loopback.
        let settings = SettingEngineBuilder::new()
            .with_include_loopback_candidate(true)
            .build();
        let pc = PeerConnectionBuilder::new()
            .with_media_engine(media)
            .with_setting_engine(settings)
            .with_interceptor_registry(registry)
            .with_handler(Arc::new(Events(shared.clone())))
            .with_udp_addrs(vec!["127.0.0.1:0"])
            .build()
            .await
            .expect("peer connection builds");
        WebRtcClient {
            pc: Arc::new(pc),
            options,
            shared,
            audio: tokio::sync::Mutex::new(None),
            video: tokio::sync::Mutex::new(None),
            audio_task: Mutex::new(None),
            video_task: Mutex::new(None),
        }
    }

    fn audio_codec(&self) -> RTCRtpCodecParameters {
        match self.options.audio_codec {
            AudioCodec::Opus => opus(),
            AudioCodec::Pcmu => pcmu(),
        }
    }

    /// Adds our track of `kind` once: a sendrecv transceiver that offers (or answers with)
    /// `codec` alone.
    async fn ensure_track(&self, kind: RtpCodecKind) {
        let (slot, codec) = match kind {
            RtpCodecKind::Video => (&self.video, vp8()),
            _ => (&self.audio, self.audio_codec()),
        };
        let mut slot = slot.lock().await;
        if slot.is_some() {
            return;
        }
        let ssrc = rand::random::<u32>();
        let label = format!("tandem-test-{kind}");
        let track = Arc::new(
            TrackLocalStaticSample::new(
                Instant::now(),
                MediaStreamTrack::new(
                    "tandem-test".to_owned(),
                    label.clone(),
                    label,
                    kind,
                    vec![RTCRtpEncodingParameters {
                        rtp_coding_parameters: RTCRtpCodingParameters {
                            ssrc: Some(ssrc),
                            ..Default::default()
                        },
                        codec: codec.rtp_codec.clone(),
                        ..Default::default()
                    }],
                ),
            )
            .expect("a packetizer for the codec"),
        );
        let transceiver = self
            .pc
            .add_transceiver_from_track(
                track.clone() as Arc<dyn TrackLocal>,
                Some(RTCRtpTransceiverInit {
                    direction: RTCRtpTransceiverDirection::Sendrecv,
                    ..Default::default()
                }),
            )
            .await
            .expect("transceiver added");
        transceiver
            .set_codec_preferences(vec![codec.clone()])
            .await
            .expect("codec preference");
        *slot = Some(Arc::new(Outgoing {
            track,
            transceiver,
            ssrc,
            codec,
        }));
    }

    /// Sets the remote offer, answers it and returns the answer SDP with our candidates.
    /// Also the way to take a re-offer (see [`Self::renegotiate`]).
    pub async fn answer(&self, offer_sdp: &str) -> String {
        let name = match self.options.audio_codec {
            AudioCodec::Opus => " opus/48000",
            AudioCodec::Pcmu => " pcmu/8000",
        };
        assert!(
            offer_sdp
                .lines()
                .any(|l| l.starts_with("a=rtpmap:") && l.to_ascii_lowercase().contains(name)),
            "the offer has no{name}:\n{offer_sdp}"
        );
        self.ensure_track(RtpCodecKind::Audio).await;
        if self.options.video && offer_sdp.contains("\nm=video ") {
            self.ensure_track(RtpCodecKind::Video).await;
        }
        let offer = RTCSessionDescription::offer(offer_sdp.to_owned()).expect("an SDP offer");
        self.pc
            .set_remote_description(offer)
            .await
            .unwrap_or_else(|e| panic!("offer refused: {e}\n{offer_sdp}"));
        let answer = self.pc.create_answer(None).await.expect("an answer");
        self.pc
            .set_local_description(answer)
            .await
            .expect("answer set");
        self.gathered_local_sdp().await
    }

    /// A re-offer from the gateway (video added or removed, ICE unchanged): the new answer.
    pub async fn renegotiate(&self, offer_sdp: &str) -> String {
        self.answer(offer_sdp).await
    }

    /// Plays the offerer (for testing the client against itself): audio, and video if asked.
    pub async fn offer(&self) -> String {
        self.ensure_track(RtpCodecKind::Audio).await;
        if self.options.video {
            self.ensure_track(RtpCodecKind::Video).await;
        }
        let offer = self.pc.create_offer(None).await.expect("an offer");
        self.pc
            .set_local_description(offer)
            .await
            .expect("offer set");
        self.gathered_local_sdp().await
    }

    /// Completes [`Self::offer`] with the remote answer.
    pub async fn accept_answer(&self, answer_sdp: &str) {
        let answer = RTCSessionDescription::answer(answer_sdp.to_owned()).expect("an SDP answer");
        self.pc
            .set_remote_description(answer)
            .await
            .unwrap_or_else(|e| panic!("answer refused: {e}\n{answer_sdp}"));
    }

    async fn gathered_local_sdp(&self) -> String {
        let mut gathering = self.shared.gathering.subscribe();
        let _ = tokio::time::timeout(
            GATHERING_TIMEOUT,
            gathering.wait_for(|s| *s == RTCIceGatheringState::Complete),
        )
        .await;
        self.pc
            .local_description()
            .await
            .expect("a local description")
            .sdp
    }

    /// Waits until ICE and DTLS are up; false on timeout or failure.
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        let mut state = self.shared.state.subscribe();
        let settled = state.wait_for(|s| {
            matches!(
                s,
                RTCPeerConnectionState::Connected
                    | RTCPeerConnectionState::Failed
                    | RTCPeerConnectionState::Closed
            )
        });
        matches!(
            tokio::time::timeout(timeout, settled).await,
            Ok(Ok(s)) if *s == RTCPeerConnectionState::Connected
        )
    }

    pub fn connection_state(&self) -> RTCPeerConnectionState {
        *self.shared.state.borrow()
    }

    /// The connection failed or was closed (by either side).
    pub fn is_closed(&self) -> bool {
        matches!(
            self.connection_state(),
            RTCPeerConnectionState::Failed
                | RTCPeerConnectionState::Closed
                | RTCPeerConnectionState::Disconnected
        )
    }

    /// Sends an audio frame every 20 ms until stopped: Opus silence or a 400 Hz PCMU tone.
    pub async fn start_sending_audio(&self) {
        let outgoing = self.outgoing(RtpCodecKind::Audio).await;
        let shared = self.shared.clone();
        let frame = match self.options.audio_codec {
            // TOC 0xf8: CELT fullband, 20 ms, mono, one frame; then the coded silence.
            AudioCodec::Opus => Bytes::from_static(&[0xf8, 0xff, 0xfe]),
            AudioCodec::Pcmu => Bytes::from(pcmu_tone()),
        };
        let task = tokio::spawn(async move {
            let mut sender = PacedSender::new(outgoing, AUDIO_FRAME).await;
            loop {
                sender.tick().await;
                if sender.send(frame.clone()).await {
                    shared.audio_out.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        replace_task(&self.audio_task, task);
    }

    /// Sends VP8 frames at 15 fps until stopped: a keyframe every second and after every
    /// keyframe request, delta frames between.
    pub async fn start_sending_video(&self) {
        let outgoing = self.outgoing(RtpCodecKind::Video).await;
        let shared = self.shared.clone();
        let task = tokio::spawn(async move {
            let mut sender = PacedSender::new(outgoing, VIDEO_FRAME).await;
            let mut n = 0u64;
            loop {
                sender.tick().await;
                let key = n.is_multiple_of(KEYFRAME_EVERY)
                    || shared.keyframe_wanted.swap(false, Ordering::Relaxed);
                if sender.send(vp8_frame(key, n)).await {
                    shared.video_out.fetch_add(1, Ordering::Relaxed);
                    n += 1;
                }
            }
        });
        replace_task(&self.video_task, task);
    }

    pub fn stop_sending_audio(&self) {
        if let Some(task) = self.audio_task.lock().unwrap().take() {
            task.abort();
        }
    }

    pub fn stop_sending_video(&self) {
        if let Some(task) = self.video_task.lock().unwrap().take() {
            task.abort();
        }
    }

    /// The customer drops video: stop sending it and answer the next offer with video inactive.
    pub async fn drop_video(&self) {
        self.stop_sending_video();
        if let Some(video) = self.video.lock().await.as_ref() {
            video
                .transceiver
                .set_direction(RTCRtpTransceiverDirection::Inactive)
                .await
                .expect("video direction");
        }
    }

    async fn outgoing(&self, kind: RtpCodecKind) -> Arc<Outgoing> {
        let slot = match kind {
            RtpCodecKind::Video => &self.video,
            _ => &self.audio,
        };
        slot.lock()
            .await
            .clone()
            .unwrap_or_else(|| panic!("no {kind} track: answer or offer {kind} first"))
    }

    pub fn audio_packets_received(&self) -> u64 {
        self.shared.audio_in.load(Ordering::Relaxed)
    }

    pub fn video_packets_received(&self) -> u64 {
        self.shared.video_in.load(Ordering::Relaxed)
    }

    /// Audio frames handed to the connection (one RTP packet each).
    pub fn audio_packets_sent(&self) -> u64 {
        self.shared.audio_out.load(Ordering::Relaxed)
    }

    /// Video frames handed to the connection (one or more RTP packets each).
    pub fn video_frames_sent(&self) -> u64 {
        self.shared.video_out.load(Ordering::Relaxed)
    }

    /// Keyframe requests (RTCP PLI or FIR) received from the other side.
    pub fn pli_received(&self) -> u64 {
        self.shared.keyframe_requests.load(Ordering::Relaxed)
    }

    /// The MIME type of the audio the other side sends us, once it has started.
    pub fn audio_codec_received(&self) -> Option<String> {
        self.shared.audio_codec_in.lock().unwrap().clone()
    }

    pub fn video_codec_received(&self) -> Option<String> {
        self.shared.video_codec_in.lock().unwrap().clone()
    }

    /// Asks the other side for a keyframe (RTCP PLI on the video it sends us). False while no
    /// video has arrived yet.
    pub async fn send_pli(&self) -> bool {
        let remote = self.shared.remote_video.lock().unwrap().clone();
        let Some((track, media_ssrc)) = remote else {
            return false;
        };
        let sender_ssrc = match self.video.lock().await.as_ref() {
            Some(video) => video.ssrc,
            None => 0,
        };
        track
            .write_rtcp(vec![Box::new(PictureLossIndication {
                sender_ssrc,
                media_ssrc,
            })])
            .await
            .is_ok()
    }

    /// Stops sending and closes the connection (DTLS close_notify to the other side).
    pub async fn close(self) {
        self.stop_sending_audio();
        self.stop_sending_video();
        let _ = self.pc.close().await;
        for task in self.shared.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

fn replace_task(slot: &Mutex<Option<JoinHandle<()>>>, task: JoinHandle<()>) {
    if let Some(old) = slot.lock().unwrap().replace(task) {
        old.abort();
    }
}

/// Writes one sample per tick with the payload type the sender negotiated.
struct PacedSender {
    outgoing: Arc<Outgoing>,
    ticker: tokio::time::Interval,
    frame: Duration,
    payload_type: Option<u8>,
}

impl PacedSender {
    async fn new(outgoing: Arc<Outgoing>, frame: Duration) -> PacedSender {
        let mut ticker = tokio::time::interval(frame);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        PacedSender {
            outgoing,
            ticker,
            frame,
            payload_type: None,
        }
    }

    async fn tick(&mut self) {
        self.ticker.tick().await;
    }

    /// The payload type the answer gave our codec; unknown until negotiation is done.
    async fn payload_type(&mut self) -> Option<u8> {
        if self.payload_type.is_none() {
            let sender: Arc<dyn RtpSender> = self.outgoing.transceiver.sender().await.ok()??;
            let parameters = sender.get_parameters().await.ok()?;
            let ours = &self.outgoing.codec.rtp_codec.mime_type;
            self.payload_type = parameters
                .rtp_parameters
                .codecs
                .iter()
                .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(ours))
                .map(|c| c.payload_type);
        }
        self.payload_type
    }

    /// False while the track is not negotiated or bound yet.
    async fn send(&mut self, data: Bytes) -> bool {
        let Some(payload_type) = self.payload_type().await else {
            return false;
        };
        let sample = Sample {
            data,
            duration: self.frame,
            ..Sample::new(Instant::now())
        };
        self.outgoing
            .track
            .write_sample(self.outgoing.ssrc, payload_type, &sample, &[])
            .await
            .is_ok()
    }
}

/// 20 ms of a 400 Hz tone at 8 kHz, μ-law: 400 Hz fits a frame exactly, so frames repeat.
fn pcmu_tone() -> Vec<u8> {
    (0..160)
        .map(|i| {
            let phase = 2.0 * std::f64::consts::PI * 400.0 * i as f64 / 8000.0;
            audio_codec_algorithms::encode_ulaw((phase.sin() * 8000.0) as i16)
        })
        .collect()
}

/// A VP8 frame with a valid frame tag (RFC 6386 §9.1) and, for a keyframe, the start code and a
/// 320×240 size; the rest is filler. Enough for anything that forwards VP8 or tells keyframes
/// apart, not for a decoder.
fn vp8_frame(key: bool, n: u64) -> Bytes {
    let body = if key { 1000 } else { 200 };
    let first_partition = body as u32;
    // Frame tag: bit 0 is 0 for a keyframe, version 0, show_frame, then the first partition size.
    let tag = (first_partition << 5) | (1 << 4) | u32::from(!key);
    let mut frame = tag.to_le_bytes()[..3].to_vec();
    if key {
        frame.extend_from_slice(&[0x9d, 0x01, 0x2a]);
        frame.extend_from_slice(&320u16.to_le_bytes());
        frame.extend_from_slice(&240u16.to_le_bytes());
    }
    frame.extend((0..body).map(|i| (i as u64 ^ n) as u8));
    Bytes::from(frame)
}
