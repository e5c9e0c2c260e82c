//! Opus ↔ G.711 for a WebRTC peer bridged to a SIP leg that speaks only G.711.
//!
//! The codec is `opus-rs`, a pure-Rust port of libopus, so the gateway builds with nothing but
//! cargo and a C compiler. It decodes straight to 8 kHz mono and encodes from it, so no
//! resampler is needed: Opus carries its own band limit and the decoder downsamples inside.
//! Opus frames must be 2.5–60 ms long, so G.711 audio is gathered into 20 ms (160-sample)
//! frames before it is encoded, whatever the SIP side's packet time.
//!
//! Buffers belong to the caller (`&mut Vec` out), and every length a packet can claim is
//! bounded by the fixed-size decode buffer: no input can make us allocate more.

use opus_rs::{Application, OpusDecoder, OpusEncoder};

use super::G711;
use crate::media::g711;

/// 20 ms at 8 kHz.
pub(crate) const FRAME_SAMPLES: usize = 160;
/// Opus RTP timestamps always run at 48 kHz (RFC 7587 §4.1), six ticks per 8 kHz sample.
pub(crate) const OPUS_TICKS_PER_SAMPLE: u32 = 6;
/// The longest Opus packet (120 ms) at 8 kHz.
const MAX_DECODED: usize = 960;
/// Comfortably above what 20 ms of voice at our bitrate needs (RFC 6716 §3.2.1 caps a frame at 1275).
const MAX_OPUS_PACKET: usize = 1500;
/// What we send towards the browser: audio that came from G.711 is narrowband, and 24 kb/s
/// carries it transparently (RFC 7587 §3.1.1 puts narrowband speech at 8–12 kb/s).
const ENCODER_BITRATE: i32 = 24_000;
/// The encoder's effort, 0–10. Encoding is the dearest step of a bridged Opus leg, and the
/// effort buys little for audio that G.711 already narrowed to 300–3400 Hz: `cargo bench
/// --bench webrtc codec` prints the cost and the size of a frame at each setting side by side
/// (at 8 kHz the encoder runs SILK alone, whose pitch and noise-shaping analysis is what the
/// effort buys), and the tests below hold a tone through at the chosen one.
pub const ENCODER_COMPLEXITY: i32 = 1;

/// Whether an Opus packet codes narrowband audio (4 kHz), as its table-of-contents byte says
/// (RFC 6716 §3.1, Table 2: configurations 0–3 are SILK narrowband, 16–19 CELT narrowband).
/// `None` for an empty packet.
pub fn is_narrowband(packet: &[u8]) -> Option<bool> {
    let config = packet.first()? >> 3;
    Some(matches!(config, 0..=3 | 16..=19))
}

/// Why a packet could not be transcoded (the codec's own words).
#[derive(Debug, thiserror::Error)]
#[error("opus: {0}")]
pub struct TranscodeError(&'static str);

/// One direction's Opus decoder and the other's encoder, for one bridged peer.
pub struct Transcoder {
    decoder: OpusDecoder,
    encoder: OpusEncoder,
    /// Decoded audio, as the codec gives it (±1.0).
    decoded: Vec<f32>,
    pcm: Vec<i16>,
    /// G.711 samples waiting to fill an Opus frame.
    pending: Vec<i16>,
}

impl Transcoder {
    pub fn new() -> Result<Transcoder, TranscodeError> {
        Transcoder::with_complexity(ENCODER_COMPLEXITY)
    }

    /// A transcoder whose encoder works at `complexity` (0–10) instead of
    /// [`ENCODER_COMPLEXITY`]; for measuring the settings side by side.
    pub fn with_complexity(complexity: i32) -> Result<Transcoder, TranscodeError> {
        let decoder = OpusDecoder::new(8000, 1).map_err(TranscodeError)?;
        // VoIP at 8 kHz: SILK, narrowband, the telephony mode. In-band FEC and DTX stay off
        // (the encoder's defaults): our SDP negotiates neither.
        let mut encoder = OpusEncoder::new(8000, 1, Application::Voip).map_err(TranscodeError)?;
        encoder.bitrate_bps = ENCODER_BITRATE;
        encoder.complexity = complexity.clamp(0, 10);
        encoder.use_inband_fec = false;
        Ok(Transcoder {
            decoder,
            encoder,
            decoded: vec![0.0; MAX_DECODED],
            pcm: Vec::with_capacity(MAX_DECODED),
            pending: Vec::with_capacity(2 * FRAME_SAMPLES),
        })
    }

    /// Decodes one Opus packet and appends it as G.711 `law` to `out`; returns the number of
    /// samples (8 kHz) it covered.
    pub fn opus_to_g711(
        &mut self,
        opus: &[u8],
        law: G711,
        out: &mut Vec<u8>,
    ) -> Result<usize, TranscodeError> {
        // A packet always has its table-of-contents byte (RFC 6716 §3.1); the codec would
        // take an empty one for a lost frame and invent audio for it.
        if opus.is_empty() {
            return Err(TranscodeError("empty packet"));
        }
        let n = self
            .decoder
            .decode(opus, MAX_DECODED, &mut self.decoded)
            .map_err(TranscodeError)?;
        self.pcm.clear();
        self.pcm.extend(
            self.decoded[..n.min(MAX_DECODED)]
                .iter()
                .map(|&x| (x * 32768.0).clamp(-32768.0, 32767.0) as i16),
        );
        g711::encode(law, &self.pcm, out);
        Ok(self.pcm.len())
    }

    /// Takes G.711 `law` audio of any length and calls `emit` with each complete 20 ms Opus
    /// frame it completes; the remainder waits for the next call.
    pub fn g711_to_opus(
        &mut self,
        payload: &[u8],
        law: G711,
        mut emit: impl FnMut(&[u8]),
    ) -> Result<(), TranscodeError> {
        g711::decode(law, payload, &mut self.pending);
        let mut buf = [0u8; MAX_OPUS_PACKET];
        let mut start = 0;
        let mut result = Ok(());
        while self.pending.len() - start >= FRAME_SAMPLES {
            let frame = &self.pending[start..start + FRAME_SAMPLES];
            start += FRAME_SAMPLES;
            match self.encoder.encode_i16(frame, FRAME_SAMPLES, &mut buf) {
                Ok(n) => emit(&buf[..n]),
                Err(e) => result = Err(TranscodeError(e)),
            }
        }
        self.pending.drain(..start);
        result
    }

    /// Samples waiting for a full frame (at most one frame's worth less one).
    pub(crate) fn pending_samples(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::codec::Codec;

    fn sine(freq: f64, samples: usize) -> Vec<i16> {
        (0..samples)
            .map(|i| {
                (8000.0 * (2.0 * std::f64::consts::PI * freq * i as f64 / 8000.0).sin()) as i16
            })
            .collect()
    }

    fn energy(pcm: &[i16]) -> f64 {
        pcm.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / pcm.len() as f64
    }

    /// The strength of `freq` in `pcm` (one Goertzel bin), normalised by length.
    fn tone(pcm: &[i16], freq: f64) -> f64 {
        let w = 2.0 * std::f64::consts::PI * freq / 8000.0;
        let (mut s1, mut s2) = (0.0, 0.0);
        for &x in pcm {
            let s = x as f64 + 2.0 * w.cos() * s1 - s2;
            s2 = s1;
            s1 = s;
        }
        (s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2).sqrt() / pcm.len() as f64
    }

    #[test]
    fn a_tone_survives_pcmu_to_opus_and_back() {
        let mut there = Transcoder::new().unwrap();
        let mut back = Transcoder::new().unwrap();
        let input = sine(440.0, 8000);
        let mut pcmu = Vec::new();
        g711::encode(Codec::Pcmu, &input, &mut pcmu);

        // 30 ms packets on the SIP side: frames must be regrouped into 20 ms.
        let mut packets = Vec::new();
        for chunk in pcmu.chunks(240) {
            there
                .g711_to_opus(chunk, Codec::Pcmu, |p| packets.push(p.to_vec()))
                .unwrap();
        }
        assert_eq!(packets.len(), 8000 / FRAME_SAMPLES);
        assert_eq!(there.pending_samples(), 0);

        let mut out = Vec::new();
        let mut samples = 0;
        for p in &packets {
            samples += back.opus_to_g711(p, Codec::Pcmu, &mut out).unwrap();
        }
        assert_eq!(samples, 8000);
        let mut decoded = Vec::new();
        g711::decode(Codec::Pcmu, &out, &mut decoded);
        // Skip the codec's start-up; compare the steady state.
        let steady = &decoded[1600..];
        let (e_in, e_out) = (energy(&input[1600..]), energy(steady));
        assert!(
            e_out > 0.5 * e_in && e_out < 1.5 * e_in,
            "energy {e_in} -> {e_out}"
        );
        assert!(
            tone(steady, 440.0) > 5.0 * tone(steady, 1000.0),
            "the 440 Hz tone is gone"
        );
    }

    #[test]
    fn the_band_of_a_packet_is_read_from_its_first_byte() {
        let mut narrow = Transcoder::new().unwrap();
        let mut frames = Vec::new();
        let mut pcmu = Vec::new();
        g711::encode(Codec::Pcmu, &sine(440.0, 160), &mut pcmu);
        narrow
            .g711_to_opus(&pcmu, Codec::Pcmu, |p| frames.push(p.to_vec()))
            .unwrap();
        assert_eq!(is_narrowband(&frames[0]), Some(true));
        // Hybrid fullband, SILK wideband, CELT narrowband and fullband (RFC 6716 Table 2).
        let toc = |config: u8| [config << 3, 0xff];
        assert_eq!(is_narrowband(&toc(15)), Some(false));
        assert_eq!(is_narrowband(&toc(9)), Some(false));
        assert_eq!(is_narrowband(&toc(16)), Some(true));
        assert_eq!(is_narrowband(&toc(31)), Some(false));
        assert_eq!(is_narrowband(&[]), None);
    }

    #[test]
    fn garbage_opus_is_an_error_not_a_panic() {
        let mut t = Transcoder::new().unwrap();
        let mut out = Vec::new();
        assert!(t.opus_to_g711(&[], Codec::Pcma, &mut out).is_err());
        for garbage in [&[0xff; 3][..], &[0x0b; 1400][..]] {
            let _ = t.opus_to_g711(garbage, Codec::Pcma, &mut out);
        }
        assert!(out.len() <= 2 * MAX_DECODED);
    }

    /// Whatever a peer sends decodes to at most 120 ms of audio, and never panics.
    #[test]
    fn random_packets_never_panic_nor_grow_the_output() {
        let mut t = Transcoder::new().unwrap();
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut packet = Vec::new();
        for _ in 0..20_000 {
            packet.clear();
            let len = 1 + (next() % 400) as usize;
            packet.extend((0..len).map(|_| next() as u8));
            let mut out = Vec::new();
            if let Ok(n) = t.opus_to_g711(&packet, Codec::Pcmu, &mut out) {
                assert!(n <= MAX_DECODED && out.len() == n);
            }
        }
    }
}
