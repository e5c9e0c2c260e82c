//! RFC 4733 telephone-events: the payload format and a detector that turns the packet stream of
//! a negotiated telephone-event payload type into one [`Digit`] per key press.
//!
//! A sender describes one event with many packets that share its RTP timestamp: updates with a
//! growing duration while the key is held, then an end packet (E bit) sent three times
//! (RFC 4733 §2.5.1.2 and §2.5.1.4). The detector therefore keys events by RTP timestamp:
//! - the first end packet of an event emits its digit; later packets of that event are ignored;
//! - a packet with a newer timestamp starts a new event, and first emits the previous event if
//!   its end packets were all lost, with the longest duration seen;
//! - packets with an older timestamp than the current event arrived late and are ignored;
//! - [`DtmfDetector::flush`] emits an event still open when the stream stops (hang-up, hold).
//!
//! An event longer than the 16-bit duration field is sent as segments whose timestamps are
//! `0xFFFF` apart (§2.5.1.3); a segment continuing the open event is merged into it.
//!
//! Driving contract: feed every packet of the telephone-event payload type with
//! [`DtmfDetector::handle_packet`], then drain [`DtmfDetector::poll_digit`] until `None`. One
//! packet can complete two digits (the previous event whose end was lost, and a short event whose
//! only surviving packet is its end), hence the queue. Nothing allocates per packet.

use std::collections::VecDeque;

/// Why a telephone-event payload was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DtmfError {
    /// The payload is shorter than the 4-byte event block of RFC 4733 §2.3.
    #[error("telephone-event payload of {len} bytes, need at least 4")]
    TooShort {
        /// The payload's length.
        len: usize,
    },
}

/// One event block of a telephone-event payload (RFC 4733 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// The event code (§3.2: 0–9, 10 `*`, 11 `#`, 12–15 A–D, 16 flash).
    pub event: u8,
    /// The E bit: this packet ends the event.
    pub end: bool,
    /// Power level of the tone in -dBm0 (0–63).
    pub volume: u8,
    /// How long the event has lasted so far, in RTP timestamp units from the packet's timestamp.
    pub duration: u16,
}

impl TelephoneEvent {
    /// Parses the first event block of `payload`. Payloads that carry several blocks
    /// (§2.5.1.5) list them oldest first, and the RTP timestamp is that of the first.
    pub fn parse(payload: &[u8]) -> Result<TelephoneEvent, DtmfError> {
        let &[event, flags, d0, d1, ..] = payload else {
            return Err(DtmfError::TooShort { len: payload.len() });
        };
        Ok(TelephoneEvent {
            event,
            end: flags & 0x80 != 0,
            // Bit 0x40 is reserved: ignored on receipt.
            volume: flags & 0x3F,
            duration: u16::from_be_bytes([d0, d1]),
        })
    }

    /// The DTMF key this event stands for, if it is one (§3.2, Table 3).
    pub fn digit(&self) -> Option<char> {
        const KEYS: &[u8; 16] = b"0123456789*#ABCD";
        KEYS.get(usize::from(self.event)).map(|&k| char::from(k))
    }
}

/// A key press, reported once however many packets described it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digit {
    /// `'0'`–`'9'`, `'*'`, `'#'` or `'A'`–`'D'`.
    pub digit: char,
    /// How long the key was held, as reported by the sender.
    pub duration_ms: u32,
    /// The RTP timestamp of the event's start, which identifies it.
    pub rtp_timestamp: u32,
}

/// The event whose end has not been seen yet.
#[derive(Debug, Clone, Copy)]
struct OpenEvent {
    event: u8,
    /// The timestamp of its first segment.
    start: u32,
    /// The timestamp of the segment being received.
    segment: u32,
    /// Duration of the segments before the current one.
    earlier: u32,
    /// The longest duration seen in the current segment.
    duration: u16,
}

impl OpenEvent {
    fn total(&self) -> u32 {
        self.earlier.saturating_add(u32::from(self.duration))
    }
}

/// Turns the packets of one telephone-event stream into [`Digit`]s; see the module docs.
#[derive(Debug)]
pub struct DtmfDetector {
    clock_rate: u32,
    open: Option<OpenEvent>,
    /// The timestamp of the newest segment seen, open or finished.
    latest: Option<u32>,
    ready: VecDeque<Digit>,
}

impl DtmfDetector {
    /// A detector for a telephone-event payload type with this RTP clock rate (8000 for the
    /// events we negotiate).
    pub fn new(clock_rate: u32) -> DtmfDetector {
        DtmfDetector {
            clock_rate: clock_rate.max(1),
            open: None,
            latest: None,
            ready: VecDeque::with_capacity(2),
        }
    }

    /// Takes one packet of the telephone-event payload type: its RTP timestamp and payload.
    pub fn handle_packet(&mut self, rtp_timestamp: u32, payload: &[u8]) -> Result<(), DtmfError> {
        let ev = TelephoneEvent::parse(payload)?;

        if let Some(latest) = self.latest {
            // Serial-number comparison, so that timestamps may wrap (RFC 3550 §5.1).
            let age = rtp_timestamp.wrapping_sub(latest) as i32;
            if age < 0 {
                return Ok(()); // A late packet of an event already past.
            }
            if age == 0 {
                if let Some(open) = &mut self.open {
                    open.duration = open.duration.max(ev.duration);
                    if ev.end {
                        self.finish();
                    }
                }
                // Otherwise a retransmitted end packet of an event already reported.
                return Ok(());
            }
        }
        self.latest = Some(rtp_timestamp);

        // §2.5.1.3: a long event goes on in a new segment 0xFFFF units after the previous one.
        if let Some(open) = &mut self.open
            && open.event == ev.event
            && rtp_timestamp.wrapping_sub(open.segment) == u32::from(u16::MAX)
        {
            // A key held for days saturates instead of wrapping (or panicking in debug builds).
            open.earlier = open.earlier.saturating_add(u32::from(u16::MAX));
            open.segment = rtp_timestamp;
            open.duration = ev.duration;
        } else {
            // A new event: the open one lost its end packets.
            self.finish();
            self.open = Some(OpenEvent {
                event: ev.event,
                start: rtp_timestamp,
                segment: rtp_timestamp,
                earlier: 0,
                duration: ev.duration,
            });
        }
        if ev.end {
            self.finish();
        }
        Ok(())
    }

    /// Ends the open event, if any, as if its end packet had arrived: call when the stream stops.
    pub fn flush(&mut self) {
        self.finish();
    }

    /// The next digit completed, oldest first.
    pub fn poll_digit(&mut self) -> Option<Digit> {
        self.ready.pop_front()
    }

    fn finish(&mut self) {
        let Some(open) = self.open.take() else {
            return;
        };
        let as_event = TelephoneEvent {
            event: open.event,
            end: true,
            volume: 0,
            duration: 0,
        };
        // Other events (flash, §3.2 code 16, or codes we never offered) end silently.
        if let Some(digit) = as_event.digit() {
            let ms = u64::from(open.total()) * 1000 / u64::from(self.clock_rate);
            self.ready.push_back(Digit {
                digit,
                duration_ms: u32::try_from(ms).unwrap_or(u32::MAX),
                rtp_timestamp: open.start,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The telephone-event packets of SIPp's `dtmf_2833_1.pcap` after their Ethernet, IPv4 and
    /// UDP headers: payload type 101, one timestamp, updates every 20 ms, the end packet three
    /// times with the same sequence number.
    const SIPP_DIGIT_1: [[u8; 16]; 10] = [
        hex16("80e51f30000033e00e05384e010a0000"),
        hex16("80651f31000033e00e05384e010a0140"),
        hex16("80651f32000033e00e05384e010a0280"),
        hex16("80651f33000033e00e05384e010a03c0"),
        hex16("80651f34000033e00e05384e010a0500"),
        hex16("80651f35000033e00e05384e010a0640"),
        hex16("80651f36000033e00e05384e010a0780"),
        hex16("80651f37000033e00e05384e018a08c0"),
        hex16("80651f37000033e00e05384e018a08c0"),
        hex16("80651f37000033e00e05384e018a08c0"),
    ];

    const fn hex16(s: &str) -> [u8; 16] {
        let s = s.as_bytes();
        let mut out = [0; 16];
        let mut i = 0;
        while i < 16 {
            out[i] = (nibble(s[2 * i]) << 4) | nibble(s[2 * i + 1]);
            i += 1;
        }
        out
    }

    const fn nibble(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            _ => c - b'a' + 10,
        }
    }

    fn feed_rtp(detector: &mut DtmfDetector, packet: &[u8]) -> Vec<Digit> {
        let rtp = rtp_types::RtpPacket::parse(packet).unwrap();
        assert_eq!(rtp.payload_type(), 101);
        detector
            .handle_packet(rtp.timestamp(), rtp.payload())
            .unwrap();
        std::iter::from_fn(|| detector.poll_digit()).collect()
    }

    fn event(event: u8, end: bool, duration: u16) -> [u8; 4] {
        let [d0, d1] = duration.to_be_bytes();
        [event, if end { 0x8A } else { 0x0A }, d0, d1]
    }

    fn feed(detector: &mut DtmfDetector, ts: u32, payload: [u8; 4]) -> Vec<char> {
        detector.handle_packet(ts, &payload).unwrap();
        std::iter::from_fn(|| detector.poll_digit())
            .map(|d| d.digit)
            .collect()
    }

    #[test]
    fn parses_the_event_block() {
        let ev = TelephoneEvent::parse(&SIPP_DIGIT_1[7][12..]).unwrap();
        assert_eq!(
            ev,
            TelephoneEvent {
                event: 1,
                end: true,
                volume: 10,
                duration: 2240
            }
        );
        assert_eq!(ev.digit(), Some('1'));
        // The reserved bit is ignored; extra blocks are allowed.
        let ev = TelephoneEvent::parse(&[11, 0x7F, 0, 160, 11, 0x3F, 0, 0]).unwrap();
        assert_eq!(
            (ev.event, ev.end, ev.volume, ev.duration),
            (11, false, 63, 160)
        );
    }

    #[test]
    fn maps_event_codes_to_keys() {
        let keys: String = (0..=16)
            .filter_map(|e| TelephoneEvent::parse(&[e, 0, 0, 0]).unwrap().digit())
            .collect();
        assert_eq!(keys, "0123456789*#ABCD");
    }

    #[test]
    fn short_payloads_are_rejected() {
        for len in 0..4 {
            assert_eq!(
                TelephoneEvent::parse(&[1, 2, 3][..len.min(3)]),
                Err(DtmfError::TooShort { len: len.min(3) })
            );
        }
        let mut detector = DtmfDetector::new(8000);
        assert_eq!(
            detector.handle_packet(0, &[1, 0x8A]),
            Err(DtmfError::TooShort { len: 2 })
        );
        assert_eq!(detector.poll_digit(), None);
    }

    #[test]
    fn sipp_key_press_is_one_digit() {
        let mut detector = DtmfDetector::new(8000);
        let mut digits = Vec::new();
        for packet in &SIPP_DIGIT_1 {
            digits.extend(feed_rtp(&mut detector, packet));
        }
        detector.flush();
        assert_eq!(detector.poll_digit(), None);
        assert_eq!(
            digits,
            [Digit {
                digit: '1',
                duration_ms: 280,
                rtp_timestamp: 0x33e0
            }]
        );
    }

    /// Every `dtmf_2833_*.pcap` SIPp ships (the test script installs it): one digit each.
    #[test]
    fn every_sipp_capture_yields_its_digit() {
        let names = [
            "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "star", "pound",
        ];
        for (name, expected) in names.iter().zip("0123456789*#".chars()) {
            let path = format!("/usr/share/sip-tester/dtmf_2833_{name}.pcap");
            let file = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            let mut detector = DtmfDetector::new(8000);
            let mut digits = Vec::new();
            for frame in pcap_frames(&file) {
                // Ethernet II, IPv4 without options, UDP.
                digits.extend(feed_rtp(&mut detector, &frame[14 + 20 + 8..]));
            }
            detector.flush();
            digits.extend(std::iter::from_fn(|| detector.poll_digit()));
            let got: Vec<char> = digits.iter().map(|d| d.digit).collect();
            assert_eq!(got, [expected], "{name}");
            assert_eq!(digits[0].duration_ms, 280, "{name}");
        }
    }

    /// The frames of a classic little-endian pcap file.
    fn pcap_frames(file: &[u8]) -> impl Iterator<Item = &[u8]> {
        assert_eq!(file[..4], [0xd4, 0xc3, 0xb2, 0xa1], "little-endian pcap");
        let mut rest = &file[24..];
        std::iter::from_fn(move || {
            let header = rest.get(..16)?;
            let len = u32::from_le_bytes(header[8..12].try_into().unwrap()) as usize;
            let frame = &rest[16..16 + len];
            rest = &rest[16 + len..];
            Some(frame)
        })
    }

    #[test]
    fn lost_end_packets_are_reported_when_the_next_event_starts() {
        let mut d = DtmfDetector::new(8000);
        assert!(feed(&mut d, 1000, event(5, false, 160)).is_empty());
        assert!(feed(&mut d, 1000, event(5, false, 800)).is_empty());
        // All three end packets lost; the next key starts.
        assert_eq!(feed(&mut d, 9000, event(7, false, 160)), ['5']);
        assert_eq!(feed(&mut d, 9000, event(7, true, 640)), ['7']);
        assert!(feed(&mut d, 9000, event(7, true, 640)).is_empty());
    }

    #[test]
    fn flush_reports_an_event_left_open() {
        let mut d = DtmfDetector::new(8000);
        feed(&mut d, 50, event(12, false, 400));
        d.flush();
        assert_eq!(
            d.poll_digit(),
            Some(Digit {
                digit: 'A',
                duration_ms: 50,
                rtp_timestamp: 50
            })
        );
        d.flush();
        assert_eq!(d.poll_digit(), None);
    }

    #[test]
    fn one_packet_can_complete_two_digits() {
        let mut d = DtmfDetector::new(8000);
        feed(&mut d, 100, event(1, false, 160));
        // Only the end of a short second event survived.
        assert_eq!(feed(&mut d, 2000, event(2, true, 400)), ['1', '2']);
    }

    #[test]
    fn late_packets_of_past_events_are_ignored() {
        let mut d = DtmfDetector::new(8000);
        feed(&mut d, 100, event(1, false, 160));
        assert_eq!(feed(&mut d, 2000, event(2, false, 160)), ['1']);
        assert!(feed(&mut d, 100, event(1, true, 320)).is_empty());
        assert!(feed(&mut d, 100, event(1, false, 160)).is_empty());
        assert_eq!(feed(&mut d, 2000, event(2, true, 320)), ['2']);
    }

    #[test]
    fn the_same_key_twice_is_two_digits() {
        let mut d = DtmfDetector::new(8000);
        let mut all = Vec::new();
        for ts in [0, 1600] {
            for _ in 0..3 {
                all.extend(feed(&mut d, ts, event(0, true, 800)));
            }
        }
        assert_eq!(all, ['0', '0']);
    }

    #[test]
    fn timestamps_may_wrap() {
        let mut d = DtmfDetector::new(8000);
        assert_eq!(feed(&mut d, u32::MAX - 100, event(3, true, 800)), ['3']);
        assert_eq!(feed(&mut d, 700, event(4, true, 800)), ['4']);
        assert!(feed(&mut d, u32::MAX - 100, event(3, true, 800)).is_empty());
    }

    #[test]
    fn long_events_continue_across_segments() {
        let mut d = DtmfDetector::new(8000);
        let start = 4_000_000_000u32;
        feed(&mut d, start, event(9, false, 60000));
        feed(&mut d, start, event(9, false, u16::MAX));
        let next = start.wrapping_add(u32::from(u16::MAX));
        assert!(feed(&mut d, next, event(9, false, 160)).is_empty());
        d.handle_packet(next, &event(9, true, 8000)).unwrap();
        assert_eq!(
            d.poll_digit(),
            Some(Digit {
                digit: '9',
                duration_ms: (65535 + 8000) * 1000 / 8000,
                rtp_timestamp: start
            })
        );
    }

    #[test]
    fn an_event_held_beyond_the_timestamp_range_saturates() {
        let mut d = DtmfDetector::new(8000);
        let mut ts = 0u32;
        // 2^16 full segments: more than a u32 of timestamp units in all.
        for _ in 0..=u32::from(u16::MAX) {
            assert!(feed(&mut d, ts, event(5, false, u16::MAX)).is_empty());
            ts = ts.wrapping_add(u32::from(u16::MAX));
        }
        d.handle_packet(ts, &event(5, true, u16::MAX)).unwrap();
        let digit = d.poll_digit().unwrap();
        assert_eq!(digit.digit, '5');
        assert_eq!(
            u64::from(digit.duration_ms),
            u64::from(u32::MAX) * 1000 / 8000
        );
    }

    #[test]
    fn non_dtmf_events_end_silently() {
        let mut d = DtmfDetector::new(8000);
        assert!(feed(&mut d, 0, event(16, true, 800)).is_empty());
        assert!(feed(&mut d, 800, event(16, false, 800)).is_empty());
        assert_eq!(feed(&mut d, 1600, event(6, true, 800)), ['6']);
    }
}
