//! A browser-like WebRTC client on str0m for the benches: full ICE from its own loopback
//! socket, DTLS client, sending audio (PCMU or Opus, 20 ms a packet) or VP8 once connected, and
//! counting what comes back. Shared by the benches that need the agent's or the app's browser
//! leg (`#[path = "support/str0m_client.rs"] mod str0m_client;`); each uses a part of it.
#![allow(dead_code)]

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use opus_rs::{Application, OpusEncoder};
use str0m::change::SdpOffer;
use str0m::format::Codec;
use str0m::media::{MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Rtc, RtcConfig};
use tandem::rtc::G711;
use tokio::net::UdpSocket;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

pub const PTIME: Duration = Duration::from_millis(20);
pub const VIDEO_FRAME: usize = 12_000;
pub const VIDEO_FPS: u64 = 250;

/// What the clients of a run count.
#[derive(Default)]
pub struct ClientStats {
    /// Audio packets received.
    pub audio_in: AtomicU64,
    /// Video RTP datagrams received (the datagrams too large for anything else).
    pub video_in: AtomicU64,
    /// Audio packets handed to str0m to send.
    pub audio_out: AtomicU64,
}

/// What a client sends once connected.
#[derive(Clone)]
pub enum Plan {
    Audio {
        codec: Codec,
        /// Payloads of 20 ms each, sent in turn.
        frames: Arc<Vec<Arc<[u8]>>>,
        /// The same audio coded narrowband, for an offer that asks for it.
        narrowband: Option<Arc<Vec<Arc<[u8]>>>>,
    },
    Video {
        frame: Arc<[u8]>,
    },
    /// Receives only.
    Listen,
}

impl Plan {
    pub fn pcmu() -> Plan {
        // A 400 Hz tone in µ-law; Tandem passes it through untouched.
        let pcm: Vec<i16> = (0..160)
            .map(|i| (6000.0 * (i as f64 * 400.0 / 8000.0 * std::f64::consts::TAU).sin()) as i16)
            .collect();
        let mut ulaw = Vec::new();
        tandem::media::g711::encode(G711::Pcmu, &pcm, &mut ulaw);
        Plan::Audio {
            codec: Codec::PCMU,
            frames: Arc::new(vec![Arc::from(ulaw)]),
            narrowband: None,
        }
    }

    /// A second of voice-like Opus, as a browser sends it: 20 ms, VoIP mode, fullband (48 kHz)
    /// or, for an offer that asks for no more (see [`Plan::asked_by`]), narrowband.
    pub fn opus() -> Plan {
        Plan::Audio {
            codec: Codec::Opus,
            frames: Arc::new(opus_voice(48_000)),
            narrowband: Some(Arc::new(opus_voice(8_000))),
        }
    }

    /// The plan a browser follows on `offer`: asked to play back at 8 kHz at most (RFC 7587
    /// §6.1), Chromium codes its Opus narrowband.
    pub fn asked_by(self, offer: &str) -> Plan {
        let capped = offer
            .lines()
            .any(|l| l.starts_with("a=fmtp:") && l.contains("maxplaybackrate=8000"));
        match self {
            Plan::Audio {
                codec,
                narrowband: Some(narrowband),
                ..
            } if capped => Plan::Audio {
                codec,
                frames: narrowband,
                narrowband: None,
            },
            plan => plan,
        }
    }

    pub fn vp8() -> Plan {
        let mut frame = vec![0x5a; VIDEO_FRAME];
        // A VP8 key frame's first bytes (RFC 6386 §9.1): show_frame set, key frame bit clear.
        frame[..3].copy_from_slice(&[0x10, 0x02, 0x00]);
        frame[3..6].copy_from_slice(&[0x9d, 0x01, 0x2a]);
        Plan::Video {
            frame: Arc::from(frame),
        }
    }

    pub fn config(&self) -> RtcConfig {
        let config = Rtc::builder().clear_codecs();
        match self {
            Plan::Audio {
                codec: Codec::PCMU, ..
            } => config.enable_pcmu(true, false),
            Plan::Audio { .. } => config.enable_opus(true, false),
            Plan::Video { .. } | Plan::Listen => config.enable_vp8(true),
        }
    }

    pub fn interval(&self) -> Option<Duration> {
        match self {
            Plan::Audio { .. } => Some(PTIME),
            Plan::Video { .. } => Some(Duration::from_micros(1_000_000 / VIDEO_FPS)),
            Plan::Listen => None,
        }
    }
}

/// A second of a voice (140 Hz with a few harmonics, its loudness moving at syllable rate) in
/// 20 ms Opus frames, coded from `rate` Hz: the band the encoder codes follows the rate.
fn opus_voice(rate: usize) -> Vec<Arc<[u8]>> {
    let samples = rate / 50;
    let mut encoder = OpusEncoder::new(rate as i32, 1, Application::Voip).unwrap();
    let mut buf = [0u8; 1500];
    (0..50)
        .map(|f| {
            let pcm: Vec<i16> = (0..samples)
                .map(|i| {
                    let t = (f * samples + i) as f64 / rate as f64;
                    let envelope = 0.6 + 0.4 * (t * 4.0 * std::f64::consts::TAU).sin();
                    let voice: f64 = (1..6)
                        .map(|h| (t * 140.0 * h as f64 * std::f64::consts::TAU).sin() / h as f64)
                        .sum();
                    (5000.0 * envelope * voice) as i16
                })
                .collect();
            let n = encoder.encode_i16(&pcm, samples, &mut buf).unwrap();
            Arc::from(&buf[..n])
        })
        .collect()
}

/// A browser-like client: full ICE from its own loopback socket, DTLS client, sending as
/// `plan` says once connected, until `stop`.
pub async fn client(
    offer: String,
    answer: oneshot::Sender<String>,
    connected: oneshot::Sender<()>,
    plan: Plan,
    stats: Arc<ClientStats>,
    stop: CancellationToken,
) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let mut rtc = plan.config().build(Instant::now());
    rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
    let plan = plan.asked_by(&offer);
    let offer = SdpOffer::from_sdp_string(&offer).unwrap();
    let sdp = rtc.sdp_api().accept_offer(offer).unwrap();
    if answer.send(sdp.to_sdp_string()).is_err() {
        return;
    }
    let mut c = Client {
        rtc,
        socket,
        mid: None,
        connected: Some(connected),
        stats,
    };
    let mut buf = vec![0u8; 2048];
    let mut next_send: Option<Instant> = None;
    let mut seq = 0u64;
    loop {
        let Some(timeout) = c.drain() else { return };
        if c.connected.is_none() && next_send.is_none() {
            // Clients talk at random phases, as independent callers do; in step, they would
            // make one burst of every leg's packet each 20 ms.
            next_send = plan
                .interval()
                .map(|i| Instant::now() + i.mul_f64(rand::random::<f64>()));
        }
        let wake = next_send.map_or(timeout, |s| s.min(timeout));
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = c.socket.readable() => {}
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
        loop {
            match c.socket.try_recv_from(&mut buf) {
                Ok((n, source)) => {
                    c.stats.video_in.fetch_add(
                        u64::from(matches!(plan, Plan::Listen) && n > 200),
                        Ordering::Relaxed,
                    );
                    let Ok(contents) = buf[..n].try_into() else {
                        continue;
                    };
                    let receive = Receive {
                        proto: Protocol::Udp,
                        source,
                        destination: addr,
                        contents,
                    };
                    if c.rtc
                        .handle_input(str0m::Input::Receive(Instant::now(), receive))
                        .is_err()
                    {
                        return;
                    }
                    if c.drain().is_none() {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => break,
            }
        }
        let now = Instant::now();
        if let (Some(at), Some(interval)) = (next_send, plan.interval())
            && now >= at
        {
            c.send(&plan, seq, now);
            seq += 1;
            // Keep the pace without bursting after a stall.
            next_send = Some((at + interval).max(now - interval));
        }
        if now >= timeout && c.rtc.handle_input(str0m::Input::Timeout(now)).is_err() {
            return;
        }
    }
}

pub struct Client {
    rtc: Rtc,
    socket: UdpSocket,
    mid: Option<Mid>,
    /// Told when ICE and DTLS are up; `None` from then on.
    connected: Option<oneshot::Sender<()>>,
    stats: Arc<ClientStats>,
}

impl Client {
    /// Sends what str0m has to send; `None` once it has failed.
    fn drain(&mut self) -> Option<Instant> {
        loop {
            match self.rtc.poll_output().ok()? {
                str0m::Output::Timeout(t) => return Some(t),
                str0m::Output::Transmit(t) => {
                    let _ = self.socket.try_send_to(&t.contents, t.destination);
                }
                str0m::Output::Event(Event::Connected) => {
                    if let Some(tell) = self.connected.take() {
                        let _ = tell.send(());
                    }
                }
                str0m::Output::Event(Event::MediaAdded(m)) => self.mid = Some(m.mid),
                str0m::Output::Event(Event::MediaData(d)) => {
                    if d.params.spec().codec.is_audio() {
                        self.stats.audio_in.fetch_add(1, Ordering::Relaxed);
                    }
                }
                str0m::Output::Event(_) => {}
            }
        }
    }

    fn send(&mut self, plan: &Plan, seq: u64, now: Instant) {
        let Some(writer) = self.mid.and_then(|mid| self.rtc.writer(mid)) else {
            return;
        };
        let (codec, data) = match plan {
            Plan::Audio { codec, frames, .. } => {
                (*codec, frames[seq as usize % frames.len()].clone())
            }
            Plan::Video { frame } => (Codec::Vp8, frame.clone()),
            Plan::Listen => return,
        };
        let Some(params) = writer
            .payload_params()
            .find(|p| p.spec().codec == codec)
            .copied()
        else {
            return;
        };
        let freq = params.spec().clock_rate;
        let ticks = match plan {
            Plan::Video { .. } => seq * freq.get() as u64 / VIDEO_FPS,
            _ => seq * freq.get() as u64 / 50,
        };
        if writer
            .write(params.pt(), now, MediaTime::new(ticks, freq), data)
            .is_ok()
            && matches!(plan, Plan::Audio { .. })
        {
            self.stats.audio_out.fetch_add(1, Ordering::Relaxed);
        }
    }
}
