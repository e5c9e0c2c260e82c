//! SSRC, sequence number and timestamp rewriting, so the far end of a relayed leg sees one
//! continuous RTP stream while what feeds it changes: a re-INVITE moves the peer to another
//! media server, a transfer switches the leg, a phone restarts its stream.
//!
//! Receivers key their jitter buffer, loss statistics and playout clock on the SSRC and expect
//! sequence numbers and timestamps to continue (RFC 3550 §5.1). Many react badly to a new
//! SSRC in mid-call or to a jump: silence, clicks, or a stream they drop as a restart they did
//! not negotiate. [`StreamRewriter::rewrite`] therefore edits each packet's fixed header in
//! place:
//!
//! - The output SSRC is constant for the life of the rewriter.
//! - While the input SSRC stays the same, sequence number and timestamp are shifted by constant
//!   offsets, so reordering, loss gaps and timestamp jumps of silence suppression reach the far
//!   end unchanged.
//! - When the input SSRC changes, or the sequence number jumps by more than [`MAX_DROPOUT`]
//!   (RFC 3550 Appendix A.1's limit for a restarted source), or the timestamp by more than
//!   [`MAX_TIMESTAMP_JUMP`] seconds, the offsets are re-based: the new source's first packet gets
//!   the highest sequence number sent so far plus one, and a timestamp that advances by the wall
//!   time since the highest timestamp was first sent (at least one 20 ms packet's worth), and
//!   its marker bit is set so the receiver resynchronises its playout (RFC 3551 §4.1: start of a
//!   talkspurt).
//! - A late packet from the source we just switched away from (reordered across the switch)
//!   keeps its old offsets instead of switching back: it arrives as the late packet it is.
//!
//! RFC 4733 telephone events share the stream's SSRC, sequence and timestamp space: all packets
//! of one event carry the event's start timestamp (RFC 4733 §2.3). The offsets apply to every
//! payload type alike, so an event keeps one output timestamp and stays aligned with the audio
//! around it.
//! Because the re-base measures wall time from when the highest timestamp was *first* seen, a
//! switch in the middle of a long event still advances the output clock by the event's real
//! length so far. Set on a new source's first packet, the marker announces a new event if that
//! packet is a telephone event, which is what it is for the receiver (RFC 4733 §2.3).
//!
//! Pure: no sockets, no clock, no allocation. `now` is the packet's receive time.

use std::time::Instant;

/// A sequence number jump larger than this (in either direction) means the source restarted
/// (RFC 3550 Appendix A.1, `MAX_DROPOUT`).
pub const MAX_DROPOUT: u16 = 3000;

/// A timestamp jump larger than this many seconds (in either direction) means the source
/// restarted.
pub const MAX_TIMESTAMP_JUMP: u32 = 10;

/// The fixed RTP header (RFC 3550 §5.1).
const FIXED_HEADER: usize = 12;

/// Why a packet could not be rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    /// Shorter than the fixed header plus the CSRC list it announces.
    #[error("RTP packet too short: {len} bytes")]
    TooShort { len: usize },
    /// The version field is not 2.
    #[error("RTP version {0}, expected 2")]
    Version(u8),
}

/// The offsets that map one input SSRC onto the output stream.
#[derive(Debug, Clone, Copy)]
struct Mapping {
    in_ssrc: u32,
    seq_offset: u16,
    ts_offset: u32,
    /// The highest input sequence number and timestamp seen from this source.
    max_seq: u16,
    max_ts: u32,
}

impl Mapping {
    /// Whether `h` is too far from this source's numbering to belong to it.
    fn jumps(&self, h: Header, clock_rate: u32) -> bool {
        let seq_jump = (h.seq.wrapping_sub(self.max_seq) as i16).unsigned_abs();
        let ts_jump = (h.ts.wrapping_sub(self.max_ts) as i32).unsigned_abs();
        seq_jump > MAX_DROPOUT || ts_jump > clock_rate.saturating_mul(MAX_TIMESTAMP_JUMP)
    }

    fn track(&mut self, seq: u16, ts: u32) {
        if newer16(seq, self.max_seq) {
            self.max_seq = seq;
        }
        if newer32(ts, self.max_ts) {
            self.max_ts = ts;
        }
    }
}

/// The far end's view: what has been sent so far.
#[derive(Debug, Clone, Copy)]
struct Sent {
    max_seq: u16,
    max_ts: u32,
    /// When `max_ts` was first sent.
    max_ts_at: Instant,
}

/// Rewrites one relayed direction's RTP so the receiver sees one continuous stream.
#[derive(Debug)]
pub struct StreamRewriter {
    out_ssrc: u32,
    clock_rate: u32,
    current: Option<Mapping>,
    previous: Option<Mapping>,
    sent: Option<Sent>,
}

impl StreamRewriter {
    /// `out_ssrc` is the SSRC the far end sees; `clock_rate` the RTP clock of the negotiated
    /// codec (8000 for G.711).
    pub fn new(out_ssrc: u32, clock_rate: u32) -> StreamRewriter {
        StreamRewriter {
            out_ssrc,
            clock_rate: clock_rate.max(1),
            current: None,
            previous: None,
            sent: None,
        }
    }

    /// Rewrites the header of `packet`, received at `now`, in place.
    pub fn rewrite(&mut self, now: Instant, packet: &mut [u8]) -> Result<(), RtpError> {
        let header = Header::parse(packet)?;
        let (seq_offset, ts_offset, marker) = self.offsets(now, header);
        let seq = header.seq.wrapping_add(seq_offset);
        let ts = header.ts.wrapping_add(ts_offset);
        self.note_sent(now, seq, ts);

        if marker {
            // Start of a talkspurt (RFC 3551 §4.1), or of an event (RFC 4733 §2.3).
            packet[1] |= 0x80;
        }
        packet[2..4].copy_from_slice(&seq.to_be_bytes());
        packet[4..8].copy_from_slice(&ts.to_be_bytes());
        packet[8..12].copy_from_slice(&self.out_ssrc.to_be_bytes());
        Ok(())
    }

    /// The offsets for this packet and whether it starts a new source.
    fn offsets(&mut self, now: Instant, h: Header) -> (u16, u32, bool) {
        let clock_rate = self.clock_rate;
        if let Some(m) = self.current.as_mut()
            && m.in_ssrc == h.ssrc
            && !m.jumps(h, clock_rate)
        {
            m.track(h.seq, h.ts);
            return (m.seq_offset, m.ts_offset, false);
        }
        if let Some(p) = self.previous.as_ref()
            && p.in_ssrc == h.ssrc
            && !newer16(h.seq, p.max_seq)
            && !p.jumps(h, clock_rate)
        {
            // Reordered across the switch: late, and sent as late.
            return (p.seq_offset, p.ts_offset, false);
        }
        self.rebase(now, h)
    }

    /// Starts a new mapping whose first packet continues right after what was sent.
    fn rebase(&mut self, now: Instant, h: Header) -> (u16, u32, bool) {
        let Some(sent) = self.sent else {
            // The very first source passes through unchanged.
            self.current = Some(Mapping {
                in_ssrc: h.ssrc,
                seq_offset: 0,
                ts_offset: 0,
                max_seq: h.seq,
                max_ts: h.ts,
            });
            return (0, 0, false);
        };
        let seq = sent.max_seq.wrapping_add(1);
        let ts = sent
            .max_ts
            .wrapping_add(self.elapsed_ticks(now, sent.max_ts_at));
        let mapping = Mapping {
            in_ssrc: h.ssrc,
            seq_offset: seq.wrapping_sub(h.seq),
            ts_offset: ts.wrapping_sub(h.ts),
            max_seq: h.seq,
            max_ts: h.ts,
        };
        // Kept for packets reordered across the switch.
        self.previous = self.current.replace(mapping);
        (mapping.seq_offset, mapping.ts_offset, true)
    }

    /// Wall time since `since` in RTP clock ticks, at least one 20 ms packet's worth so the new
    /// source never repeats a timestamp already sent.
    fn elapsed_ticks(&self, now: Instant, since: Instant) -> u32 {
        let micros = now.saturating_duration_since(since).as_micros();
        let ticks = micros * u128::from(self.clock_rate) / 1_000_000;
        let one_packet = u128::from(self.clock_rate / 50).max(1);
        // Truncation is the modulo-2^32 arithmetic RTP timestamps use.
        ticks.max(one_packet) as u32
    }

    fn note_sent(&mut self, now: Instant, seq: u16, ts: u32) {
        match &mut self.sent {
            None => {
                self.sent = Some(Sent {
                    max_seq: seq,
                    max_ts: ts,
                    max_ts_at: now,
                })
            }
            Some(sent) => {
                if newer16(seq, sent.max_seq) {
                    sent.max_seq = seq;
                }
                if newer32(ts, sent.max_ts) {
                    sent.max_ts = ts;
                    sent.max_ts_at = now;
                }
            }
        }
    }
}

/// The header fields the rewriter reads.
#[derive(Debug, Clone, Copy)]
struct Header {
    seq: u16,
    ts: u32,
    ssrc: u32,
}

impl Header {
    fn parse(packet: &[u8]) -> Result<Header, RtpError> {
        let too_short = RtpError::TooShort { len: packet.len() };
        let first = *packet.first().ok_or(too_short)?;
        let version = first >> 6;
        if version != 2 {
            return Err(RtpError::Version(version));
        }
        let csrcs = usize::from(first & 0x0f);
        if packet.len() < FIXED_HEADER + 4 * csrcs {
            return Err(too_short);
        }
        Ok(Header {
            seq: u16::from_be_bytes([packet[2], packet[3]]),
            ts: u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]),
            ssrc: u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]),
        })
    }
}

/// Whether `a` comes after `b` in modulo-2^16 sequence space (RFC 3550 §A.1).
fn newer16(a: u16, b: u16) -> bool {
    (a.wrapping_sub(b) as i16) > 0
}

/// Whether `a` comes after `b` in modulo-2^32 timestamp space.
fn newer32(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const OUT: u32 = 0x5eed_0001;
    const PCMU: u8 = 0;
    const EVENT: u8 = 101;
    const PTIME: Duration = Duration::from_millis(20);

    fn packet(pt: u8, marker: bool, seq: u16, ts: u32, ssrc: u32) -> Vec<u8> {
        let mut p = vec![0x80, pt | if marker { 0x80 } else { 0 }];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(&[0xff; 160]);
        p
    }

    /// (marker, seq, ts, ssrc) after rewriting.
    fn fields(p: &[u8]) -> (bool, u16, u32, u32) {
        (
            p[1] & 0x80 != 0,
            u16::from_be_bytes([p[2], p[3]]),
            u32::from_be_bytes([p[4], p[5], p[6], p[7]]),
            u32::from_be_bytes([p[8], p[9], p[10], p[11]]),
        )
    }

    fn run(rw: &mut StreamRewriter, now: Instant, pt: u8, seq: u16, ts: u32, ssrc: u32) -> Vec<u8> {
        let mut p = packet(pt, false, seq, ts, ssrc);
        rw.rewrite(now, &mut p).unwrap();
        p
    }

    #[test]
    fn one_source_passes_with_constant_offsets_and_the_output_ssrc() {
        let mut rw = StreamRewriter::new(OUT, 8000);
        let t0 = Instant::now();
        for i in 0..10u16 {
            let p = run(
                &mut rw,
                t0 + PTIME * i.into(),
                PCMU,
                1000 + i,
                160 * u32::from(i),
                7,
            );
            assert_eq!(fields(&p), (false, 1000 + i, 160 * u32::from(i), OUT));
        }
        // The payload is not touched.
        let p = run(&mut rw, t0, PCMU, 1010, 1600, 7);
        assert!(p[12..].iter().all(|&b| b == 0xff));
    }

    #[test]
    fn a_source_switch_continues_the_stream_with_a_marker() {
        let mut rw = StreamRewriter::new(OUT, 8000);
        let t0 = Instant::now();
        let mut now = t0;
        for i in 0..50u16 {
            now = t0 + PTIME * i.into();
            run(
                &mut rw,
                now,
                PCMU,
                100 + i,
                8000 + 160 * u32::from(i),
                0xaaaa,
            );
        }
        // Last sent: seq 149, ts 8000 + 49 * 160 = 15840.
        // The new media server starts 20 ms later with its own random numbers.
        now += PTIME;
        let p = run(&mut rw, now, PCMU, 51_234, 3_000_000_000, 0xbbbb);
        assert_eq!(fields(&p), (true, 150, 16000, OUT));
        now += PTIME;
        let p = run(&mut rw, now, PCMU, 51_235, 3_000_000_160, 0xbbbb);
        assert_eq!(fields(&p), (false, 151, 16160, OUT));
    }

    #[test]
    fn the_timestamp_advances_by_the_silence_between_sources() {
        let mut rw = StreamRewriter::new(OUT, 8000);
        let t0 = Instant::now();
        run(&mut rw, t0, PCMU, 1, 0, 0xaaaa);
        let p = run(
            &mut rw,
            t0 + Duration::from_millis(1500),
            PCMU,
            9,
            77,
            0xbbbb,
        );
        assert_eq!(fields(&p), (true, 2, 12_000, OUT));
        // Two packets at the same instant still get distinct timestamps.
        let p = run(
            &mut rw,
            t0 + Duration::from_millis(1500),
            PCMU,
            5,
            5,
            0xcccc,
        );
        assert_eq!(fields(&p), (true, 3, 12_160, OUT));
    }

    #[test]
    fn sequence_and_timestamp_wrap_around() {
        let mut rw = StreamRewriter::new(OUT, 8000);
        let t0 = Instant::now();
        let mut now = t0;
        let mut seq = 65_533u16;
        let mut ts = u32::MAX - 320;
        for _ in 0..5 {
            let p = run(&mut rw, now, PCMU, seq, ts, 1);
            assert_eq!(fields(&p), (false, seq, ts, OUT));
            seq = seq.wrapping_add(1);
            ts = ts.wrapping_add(160);
            now += PTIME;
        }
        // A switch right after the wrap re-bases from the wrapped values, not from 65535.
        let p = run(&mut rw, now, PCMU, 40_000, 123, 2);
        assert_eq!(
            fields(&p),
            (true, 2, (u32::MAX - 320).wrapping_add(5 * 160), OUT)
        );

        // And offsets wrap for a source re-based near the top of the range.
        let mut rw = StreamRewriter::new(OUT, 8000);
        run(&mut rw, t0, PCMU, 65_535, u32::MAX - 100, 1);
        let p = run(&mut rw, t0 + PTIME, PCMU, 10, 10, 2);
        assert_eq!(fields(&p), (true, 0, 59, OUT));
        let p = run(&mut rw, t0 + 2 * PTIME, PCMU, 11, 170, 2);
        assert_eq!(fields(&p), (false, 1, 219, OUT));
    }

    #[test]
    fn reordered_input_stays_reordered_and_gaps_stay_gaps() {
        let mut rw = StreamRewriter::new(OUT, 8000);
        let t0 = Instant::now();
        run(&mut rw, t0, PCMU, 10, 1600, 1);
        // Switch so the offsets are non-trivial.
        let order = [500u16, 502, 501, 505, 503];
        let mut out = Vec::new();
        for (i, &s) in order.iter().enumerate() {
            let now = t0 + PTIME * (i as u32 + 1);
            let p = run(&mut rw, now, PCMU, s, u32::from(s) * 160, 2);
            out.push(fields(&p));
        }
        let base = out[0];
        assert_eq!(base.1, 11);
        let rel: Vec<(u16, u32)> = out
            .iter()
            .map(|f| (f.1.wrapping_sub(base.1), f.2.wrapping_sub(base.2)))
            .collect();
        assert_eq!(rel, [(0, 0), (2, 320), (1, 160), (5, 800), (3, 480)]);
        assert!(out[1..].iter().all(|f| !f.0));
    }

    #[test]
    fn a_late_packet_from_the_previous_source_does_not_switch_back() {
        let mut rw = StreamRewriter::new(OUT, 8000);
        let t0 = Instant::now();
        run(&mut rw, t0, PCMU, 100, 0, 1);
        run(&mut rw, t0 + PTIME, PCMU, 102, 320, 1);
        let p = run(&mut rw, t0 + 2 * PTIME, PCMU, 7000, 90_000, 2);
        assert_eq!(fields(&p), (true, 103, 480, OUT));
        // Seq 101 of the old source, delayed across the switch: sent with the old offsets.
        let p = run(&mut rw, t0 + 2 * PTIME, PCMU, 101, 160, 1);
        assert_eq!(fields(&p), (false, 101, 160, OUT));
        // The new source carries on undisturbed.
        let p = run(&mut rw, t0 + 3 * PTIME, PCMU, 7001, 90_160, 2);
        assert_eq!(fields(&p), (false, 104, 640, OUT));
        // The old source resuming with newer packets is a switch.
        let p = run(&mut rw, t0 + 4 * PTIME, PCMU, 103, 480, 1);
        assert_eq!(fields(&p), (true, 105, 800, OUT));
    }

    #[test]
    fn a_jump_within_one_ssrc_re_bases() {
        let mut rw = StreamRewriter::new(OUT, 8000);
        let t0 = Instant::now();
        run(&mut rw, t0, PCMU, 100, 0, 1);
        // A sequence jump beyond the dropout limit, same SSRC.
        let p = run(&mut rw, t0 + PTIME, PCMU, 100 + 3001, 160, 1);
        assert_eq!(fields(&p), (true, 101, 160, OUT));
        // A gap within the limit is preserved.
        let p = run(&mut rw, t0 + 2 * PTIME, PCMU, 100 + 3001 + 50, 320, 1);
        assert_eq!(fields(&p), (false, 151, 320, OUT));
        // A timestamp jump of more than ten seconds.
        let p = run(&mut rw, t0 + 3 * PTIME, PCMU, 3152, 320 + 80_001, 1);
        assert_eq!(fields(&p), (true, 152, 480, OUT));
    }

    #[test]
    fn telephone_events_keep_one_timestamp_across_a_switch() {
        let mut rw = StreamRewriter::new(OUT, 8000);
        let t0 = Instant::now();
        // Audio, then an event starting at ts 1600 whose packets all carry ts 1600.
        for i in 0..10u16 {
            run(
                &mut rw,
                t0 + PTIME * i.into(),
                PCMU,
                i,
                160 * u32::from(i),
                1,
            );
        }
        let mut now = t0 + PTIME * 10;
        let mut p = packet(EVENT, true, 10, 1600, 1);
        rw.rewrite(now, &mut p).unwrap();
        assert_eq!(fields(&p), (true, 10, 1600, OUT));
        for seq in 11..15u16 {
            now += Duration::from_millis(50);
            let p = run(&mut rw, now, EVENT, seq, 1600, 1);
            assert_eq!(fields(&p), (false, seq, 1600, OUT));
        }
        // The leg switches in mid-event; the new source continues the same event.
        now += Duration::from_millis(50);
        let p = run(&mut rw, now, EVENT, 800, 44_000, 2);
        // 250 ms have passed since ts 1600 was first sent: 2000 ticks.
        assert_eq!(fields(&p), (true, 15, 3600, OUT));
        now += Duration::from_millis(50);
        let p = run(&mut rw, now, EVENT, 801, 44_000, 2);
        assert_eq!(fields(&p), (false, 16, 3600, OUT));
        // Audio after the event lines up with it.
        let p = run(&mut rw, now, PCMU, 802, 44_000 + 2400, 2);
        assert_eq!(fields(&p), (false, 17, 6000, OUT));
    }

    #[test]
    fn malformed_headers_are_refused_untouched() {
        let mut rw = StreamRewriter::new(OUT, 8000);
        let now = Instant::now();
        let mut empty: [u8; 0] = [];
        assert_eq!(
            rw.rewrite(now, &mut empty),
            Err(RtpError::TooShort { len: 0 })
        );
        let mut v1 = packet(PCMU, false, 1, 1, 1);
        v1[0] = 0x40;
        let copy = v1.clone();
        assert_eq!(rw.rewrite(now, &mut v1), Err(RtpError::Version(1)));
        assert_eq!(v1, copy);
        // Two CSRCs announced, one present.
        let mut short = packet(PCMU, false, 1, 1, 1);
        short[0] = 0x82;
        short.truncate(16);
        assert_eq!(
            rw.rewrite(now, &mut short),
            Err(RtpError::TooShort { len: 16 })
        );
        let mut header_only = packet(PCMU, false, 1, 1, 1);
        header_only.truncate(12);
        assert!(rw.rewrite(now, &mut header_only).is_ok());
    }
}
