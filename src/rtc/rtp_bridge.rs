//! A WebRTC peer's audio as plain RTP towards a SIP media leg, and back.
//!
//! The SIP side is a media-engine leg like any other (recording, DTMF detection and latching
//! apply unchanged); it sees a G.711 stream from one SSRC. When the client negotiated G.711,
//! packets pass through with new RTP headers (and a µ↔A-law table lookup if the laws differ);
//! when it negotiated only Opus, [`Transcoder`] converts. Sans-IO: packets in, packets out.

use str0m::format::Codec;
use str0m::media::{Frequency, MediaTime, Pt};

use super::G711;
use super::peer::MediaIn;
use super::transcode::{OPUS_TICKS_PER_SAMPLE, Transcoder};
use crate::media::g711;

const RTP_HEADER: usize = 12;

/// What to send the client: a payload type of its session and the codec behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PeerAudio {
    pub pt: Pt,
    pub codec: Codec,
}

impl PeerAudio {
    /// The client's first choice among Opus and G.711 (`codecs` in the client's order of
    /// preference, as its answer listed them): a client that puts PCMU first gets G.711
    /// without transcoding, one that prefers Opus gets Opus. `None` if it takes neither.
    pub(crate) fn choose(codecs: &[(Pt, Codec)]) -> Option<PeerAudio> {
        codecs
            .iter()
            .find(|(_, c)| matches!(c, Codec::Opus | Codec::PCMU | Codec::PCMA))
            .map(|&(pt, codec)| PeerAudio { pt, codec })
    }
}

/// The payload type of RFC 4733 telephone-events towards the SIP leg (what our SIP offers and
/// most phones use).
const SIP_TELEPHONE_EVENT_PT: u8 = crate::sip::sdp::TELEPHONE_EVENT_PT;

pub(crate) struct RtpBridge {
    /// The SIP leg's law.
    law: G711,
    to_peer: Option<PeerAudio>,
    /// Boxed: made only for an Opus peer, and a codec's state is kilobytes.
    transcoder: Option<Box<Transcoder>>,
    ssrc: u32,
    seq: u16,
    ts_offset: u32,
    /// The last plain RTP timestamp received and its unwrapped value.
    last_in: Option<(u32, u64)>,
    /// The 8 kHz start time of the last telephone-event forwarded to the SIP leg.
    last_event: Option<u64>,
    scratch: Vec<u8>,
}

/// A G.711 codec of str0m's, if it is one.
fn law_of(codec: Codec) -> Option<G711> {
    match codec {
        Codec::PCMU => Some(G711::Pcmu),
        Codec::PCMA => Some(G711::Pcma),
        _ => None,
    }
}

fn static_pt(law: G711) -> u8 {
    match law {
        G711::Pcmu => 0,
        G711::Pcma => 8,
    }
}

impl RtpBridge {
    /// `ssrc`, `first_seq` and `ts_offset` should be random (RFC 3550 §5.1).
    pub(crate) fn new(law: G711, ssrc: u32, first_seq: u16, ts_offset: u32) -> RtpBridge {
        RtpBridge {
            law,
            to_peer: None,
            transcoder: None,
            ssrc,
            seq: first_seq,
            ts_offset,
            last_in: None,
            last_event: None,
            scratch: Vec::with_capacity(1500),
        }
    }

    /// What the client accepts now (after each negotiation).
    pub(crate) fn set_peer_audio(&mut self, audio: Option<PeerAudio>) {
        self.to_peer = audio;
    }

    fn transcoder(&mut self) -> Option<&mut Transcoder> {
        if self.transcoder.is_none() {
            match Transcoder::new() {
                Ok(t) => self.transcoder = Some(Box::new(t)),
                Err(error) => {
                    tracing::warn!(%error, "no Opus transcoder; bridged audio is dropped");
                    return None;
                }
            }
        }
        self.transcoder.as_deref_mut()
    }

    /// Turns audio the client sent into one plain RTP packet in `out` (cleared first).
    /// `false` when there is nothing to send (an unknown codec, undecodable Opus).
    pub(crate) fn rtp_for_sip(&mut self, media: &MediaIn, out: &mut Vec<u8>) -> bool {
        out.clear();
        out.extend_from_slice(&[0; RTP_HEADER]);
        let law = self.law;
        let ticks_8k = media.time.rebase(Frequency::EIGHT_KHZ).numer();
        let mut pt = static_pt(law);
        let mut marker = false;
        if let Some(from) = law_of(media.codec) {
            let start = out.len();
            out.extend_from_slice(&media.data);
            g711::transcode_in_place(&mut out[start..], from, law);
        } else if media.codec == Codec::Tele {
            // A digit the app keys: the same event on the SIP leg's 8 kHz clock. Its duration
            // counts in the event's own clock (RFC 4733 §2.5.1.3), so it is rescaled too.
            let Some(report) = telephone_event_8k(&media.data, media.time.frequency()) else {
                return false;
            };
            out.extend_from_slice(&report);
            pt = SIP_TELEPHONE_EVENT_PT;
            // The first packet of an event is marked (RFC 4733 §2.5.1.3).
            marker = self.last_event != Some(ticks_8k);
            self.last_event = Some(ticks_8k);
        } else if media.codec == Codec::Opus {
            let Some(t) = self.transcoder() else {
                return false;
            };
            if t.opus_to_g711(&media.data, law, out).is_err() {
                return false;
            }
        } else {
            return false;
        }
        let ts = self.ts_offset.wrapping_add(ticks_8k as u32);
        out[0] = 0x80;
        out[1] = pt | if marker { 0x80 } else { 0 };
        out[2..4].copy_from_slice(&self.seq.to_be_bytes());
        out[4..8].copy_from_slice(&ts.to_be_bytes());
        out[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        self.seq = self.seq.wrapping_add(1);
        true
    }

    /// Takes one plain RTP packet from the SIP leg and calls `emit` with what to write to the
    /// client: its payload type, RTP time and payload. `false` when the packet is not the
    /// client's to hear: other payload types (telephone-events, comfort noise), malformed or
    /// empty ones, audio while the client takes no codec of ours, or G.711 the encoder refused.
    /// `true` means its audio was emitted or waits for the rest of an Opus frame.
    pub(crate) fn audio_for_client(
        &mut self,
        packet: &[u8],
        mut emit: impl FnMut(Pt, MediaTime, &[u8]),
    ) -> bool {
        let Some((pt, ts, payload)) = parse_rtp(packet) else {
            return false;
        };
        if pt != static_pt(self.law) || payload.is_empty() {
            return false;
        }
        let Some(to) = self.to_peer else {
            return false;
        };
        let ext = self.unwrap_ts(ts);
        let law = self.law;
        if let Some(to_law) = law_of(to.codec) {
            let mut scratch = std::mem::take(&mut self.scratch);
            scratch.clear();
            scratch.extend_from_slice(payload);
            g711::transcode_in_place(&mut scratch, law, to_law);
            emit(to.pt, MediaTime::new(ext, Frequency::EIGHT_KHZ), &scratch);
            self.scratch = scratch;
            true
        } else if to.codec == Codec::Opus {
            let Some(t) = self.transcoder() else {
                return false;
            };
            // Frames start where the samples still waiting from earlier packets began.
            let mut next =
                ext.saturating_sub(t.pending_samples() as u64) * OPUS_TICKS_PER_SAMPLE as u64;
            t.g711_to_opus(payload, law, |frame| {
                emit(
                    to.pt,
                    MediaTime::new(next, Frequency::FORTY_EIGHT_KHZ),
                    frame,
                );
                next += (super::transcode::FRAME_SAMPLES as u64) * OPUS_TICKS_PER_SAMPLE as u64;
            })
            .is_ok()
        } else {
            false
        }
    }

    /// RTP timestamps wrap at 2³²; str0m wants a monotonic 64-bit time.
    fn unwrap_ts(&mut self, ts: u32) -> u64 {
        let ext = match self.last_in {
            // Start a wrap above zero so a slightly older packet cannot go negative.
            None => (1u64 << 32) + ts as u64,
            Some((last, last_ext)) => {
                let delta = ts.wrapping_sub(last) as i32 as i64;
                last_ext.saturating_add_signed(delta)
            }
        };
        self.last_in = Some((ts, ext));
        ext
    }
}

/// An RFC 4733 report (event, E/R/volume, duration) at `clock`, rewritten for 8 kHz.
fn telephone_event_8k(report: &[u8], clock: Frequency) -> Option<[u8; 4]> {
    let [event, flags, d0, d1, ..] = *report else {
        return None;
    };
    let duration = u64::from(u16::from_be_bytes([d0, d1]));
    let rate = u64::from(clock.get()).max(1);
    let scaled = u16::try_from(duration * 8000 / rate).unwrap_or(u16::MAX);
    let [s0, s1] = scaled.to_be_bytes();
    Some([event, flags, s0, s1])
}

/// (payload type, timestamp, payload) of an RTP packet (RFC 3550 §5.1), or `None`.
pub(crate) fn parse_rtp(packet: &[u8]) -> Option<(u8, u32, &[u8])> {
    let header = packet.get(..RTP_HEADER)?;
    if header[0] >> 6 != 2 {
        return None;
    }
    let csrcs = (header[0] & 0x0f) as usize;
    let mut start = RTP_HEADER + 4 * csrcs;
    if header[0] & 0x10 != 0 {
        let ext = packet.get(start..start + 4)?;
        start += 4 + 4 * u16::from_be_bytes([ext[2], ext[3]]) as usize;
    }
    let mut end = packet.len();
    if header[0] & 0x20 != 0 {
        let padding = *packet.last()? as usize;
        end = end.checked_sub(padding)?;
    }
    let payload = packet.get(start..end)?;
    let ts = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    Some((header[1] & 0x7f, ts, payload))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use str0m::format::CodecSpec;
    use str0m::format::FormatParams;
    use str0m::format::PayloadParams;
    use str0m::media::MediaKind;

    use super::*;

    fn media(codec: Codec, pt: u8, time: MediaTime, data: &[u8]) -> MediaIn {
        let spec = CodecSpec {
            codec,
            clock_rate: time.frequency(),
            channels: None,
            format: FormatParams::default(),
        };
        MediaIn {
            kind: MediaKind::Audio,
            params: PayloadParams::new(pt.into(), None, spec),
            codec,
            time,
            network_time: Instant::now(),
            data: Arc::from(data),
        }
    }

    fn rtp(pt: u8, seq: u16, ts: u32, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, pt];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&[1, 2, 3, 4]);
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn pcmu_from_the_client_passes_through_with_new_headers() {
        let mut bridge = RtpBridge::new(G711::Pcmu, 0xabcd, 100, 1000);
        let mut out = Vec::new();
        let m = media(
            Codec::PCMU,
            0,
            MediaTime::new(160, Frequency::EIGHT_KHZ),
            &[0x55; 160],
        );
        assert!(bridge.rtp_for_sip(&m, &mut out));
        let (pt, ts, payload) = parse_rtp(&out).unwrap();
        assert_eq!((pt, ts), (0, 1160));
        assert_eq!(payload, &[0x55; 160][..]);
        assert_eq!(u16::from_be_bytes([out[2], out[3]]), 100);
        assert!(bridge.rtp_for_sip(&m, &mut out));
        assert_eq!(u16::from_be_bytes([out[2], out[3]]), 101);
    }

    #[test]
    fn a_pcma_leg_gets_the_law_converted() {
        let mut bridge = RtpBridge::new(G711::Pcma, 1, 0, 0);
        let mut out = Vec::new();
        let m = media(
            Codec::PCMU,
            0,
            MediaTime::new(0, Frequency::EIGHT_KHZ),
            &[0xff; 160],
        );
        assert!(bridge.rtp_for_sip(&m, &mut out));
        let (pt, _, payload) = parse_rtp(&out).unwrap();
        assert_eq!(pt, 8);
        // µ-law silence becomes A-law silence.
        assert!(payload.iter().all(|&b| b == g711::silence(G711::Pcma)));
    }

    #[test]
    fn sip_audio_goes_to_an_opus_client_in_20ms_frames_on_a_48khz_clock() {
        let mut bridge = RtpBridge::new(G711::Pcmu, 1, 0, 0);
        bridge.set_peer_audio(PeerAudio::choose(&[(111.into(), Codec::Opus)]));
        let mut frames = Vec::new();
        for i in 0..4u32 {
            // 30 ms packets: three of them make four and a half Opus frames.
            let p = rtp(0, i as u16, 5000 + 240 * i, &[0xff; 240]);
            bridge.audio_for_client(&p, |pt, t, data| frames.push((pt, t, data.len())));
        }
        assert_eq!(frames.len(), 6);
        assert!(frames.iter().all(|(pt, t, len)| *pt == 111.into()
            && t.frequency() == Frequency::FORTY_EIGHT_KHZ
            && *len > 0));
        let steps: Vec<u64> = frames
            .windows(2)
            .map(|w| w[1].1.numer() - w[0].1.numer())
            .collect();
        assert!(steps.iter().all(|s| *s == 960), "{steps:?}");
    }

    #[test]
    fn the_clients_first_choice_wins_opus_included() {
        let both = |first: (u8, Codec), second: (u8, Codec)| {
            PeerAudio::choose(&[
                (first.0.into(), first.1),
                (110.into(), Codec::Tele),
                (second.0.into(), second.1),
            ])
            .map(|a| a.codec)
        };
        assert_eq!(
            both((111, Codec::Opus), (0, Codec::PCMU)),
            Some(Codec::Opus)
        );
        assert_eq!(
            both((0, Codec::PCMU), (111, Codec::Opus)),
            Some(Codec::PCMU)
        );
        assert_eq!(PeerAudio::choose(&[(110.into(), Codec::Tele)]), None);
    }

    #[test]
    fn a_digit_the_app_keys_reaches_the_sip_leg_as_an_8khz_telephone_event() {
        let mut bridge = RtpBridge::new(G711::Pcmu, 7, 100, 0);
        let mut out = Vec::new();
        // Digit 5 at Opus's clock: 100 ms is 4800 ticks at 48 kHz, then the end packet.
        let start = MediaTime::new(96_000, Frequency::FORTY_EIGHT_KHZ);
        let first = media(Codec::Tele, 110, start, &[5, 0x0a, 0x03, 0xc0]);
        assert!(bridge.rtp_for_sip(&first, &mut out));
        assert_eq!(
            out[1],
            0x80 | 101,
            "marked, on the SIP leg's telephone-event type"
        );
        let (pt, ts, payload) = parse_rtp(&out).unwrap();
        assert_eq!((pt, ts), (101, 16_000));
        assert_eq!(
            payload,
            &[5, 0x0a, 0x00, 0xa0],
            "960 ticks at 48 kHz are 160 at 8 kHz"
        );
        let end = media(Codec::Tele, 110, start, &[5, 0x8a, 0x12, 0xc0]);
        assert!(bridge.rtp_for_sip(&end, &mut out));
        assert_eq!(out[1], 101, "one event, marked once");
        let (_, ts, payload) = parse_rtp(&out).unwrap();
        assert_eq!(ts, 16_000, "all packets of an event carry its start");
        assert_eq!(payload, &[5, 0x8a, 0x03, 0x20]);
    }

    #[test]
    fn sip_audio_to_a_pcmu_client_is_not_transcoded_and_other_payload_types_are_ignored() {
        let mut bridge = RtpBridge::new(G711::Pcmu, 1, 0, 0);
        // The client lists PCMU first: it takes G.711 as it is.
        bridge.set_peer_audio(PeerAudio::choose(&[
            (0.into(), Codec::PCMU),
            (111.into(), Codec::Opus),
        ]));
        let mut got = Vec::new();
        bridge.audio_for_client(&rtp(0, 1, u32::MAX - 79, &[0x11; 160]), |pt, t, d| {
            got.push((pt, t.numer(), d.to_vec()))
        });
        // Across the timestamp wrap, time keeps going up.
        bridge.audio_for_client(&rtp(0, 2, 80, &[0x11; 160]), |pt, t, d| {
            got.push((pt, t.numer(), d.to_vec()))
        });
        let event = bridge.audio_for_client(&rtp(101, 3, 80, &[0x11; 4]), |pt, t, d| {
            got.push((pt, t.numer(), d.to_vec()))
        });
        assert!(!event, "a telephone-event is not the client's to hear");
        assert!(!bridge.audio_for_client(&[0x80, 0], |_, _, _| panic!("a runt is not audio")));
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, 0.into());
        assert_eq!(got[1].1 - got[0].1, 160);
        assert_eq!(got[1].2, vec![0x11; 160]);
    }
}
