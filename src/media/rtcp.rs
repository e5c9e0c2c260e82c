//! RTCP for one RTP leg (RFC 3550): reception statistics of the remote source, our sending
//! counters, the compound reports we send, and what the remote's reports tell us (its view of
//! our stream, and the round-trip time).
//!
//! The model follows RFC 3550 Appendix A: [`ReceiverStats`] tracks sequence numbers with
//! wraparound, probation and restart (A.1), counts expected and lost packets (A.3) and estimates
//! interarrival jitter (A.8); [`SenderStats`] counts what we send for the sender report (§6.4.1);
//! [`RtcpSession`] ties both to our SSRC and CNAME, writes reports and reads the remote's.
//!
//! Driving contract (sans-IO: time is always an argument, nothing here reads a clock):
//! - every RTP packet received on the leg: [`RtcpSession::on_rtp_received`];
//! - every RTP packet sent: [`RtcpSession::on_rtp_sent`];
//! - when the report timer fires: [`RtcpSession::build_report`] with the wall-clock time as an NTP
//!   timestamp ([`ntp_timestamp`]), send the bytes, and re-arm the timer with
//!   [`report_interval`];
//! - every RTCP packet received: [`RtcpSession::handle_rtcp`];
//! - whenever the rest of the program asks: [`RtcpSession::stats`].
//!
//! The round-trip time uses the LSR/DLSR fields of the remote's report blocks (§6.4.1), but
//! subtracts from the monotonic instant at which we sent the matching sender report rather than
//! from the wall clock, so a wall-clock step between the two cannot distort it.
//!
//! Packets are parsed and written with `rtcp-types` (zero-copy parsing, checked lengths, from the
//! GStreamer Rust maintainers). Its builders allocate a few small boxes per report; reports go out
//! every few seconds, so only the RTP path ([`RtcpSession::on_rtp_received`],
//! [`RtcpSession::on_rtp_sent`]) is kept allocation-free.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rtcp_types::prelude::*;
use rtcp_types::{
    Compound, Packet, ReceiverReport, ReportBlock, ReportBlockBuilder, SdesChunk, SdesItem,
    SenderReport,
};

/// Why an RTCP packet could not be written or read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RtcpError {
    /// The CNAME does not fit an SDES item, which holds at most 255 bytes (RFC 3550 §6.5).
    #[error("CNAME of {len} bytes, at most 255 fit")]
    CnameTooLong {
        /// The CNAME's length in bytes.
        len: usize,
    },
    /// A received packet is not valid RTCP: bad version, lengths or padding (RFC 3550 A.2).
    #[error("malformed RTCP packet: {0}")]
    Malformed(#[from] rtcp_types::RtcpParseError),
    /// A received compound packet does not start with SR or RR (RFC 3550 §6.1).
    #[error("compound RTCP packet starts with packet type {0}, not SR or RR")]
    NotReportFirst(u8),
    /// A report could not be written; our reports are always valid, so this is a bug.
    #[error("writing RTCP failed: {0}")]
    Write(#[from] rtcp_types::RtcpWriteError),
}

/// Largest forward jump still taken as loss rather than a restart (RFC 3550 A.1).
const MAX_DROPOUT: u16 = 3000;
/// Largest backward jump still taken as reordering (RFC 3550 A.1).
const MAX_MISORDER: u16 = 100;
/// Packets in sequence needed before a new source counts (RFC 3550 A.1).
const MIN_SEQUENTIAL: u32 = 2;
/// IPv4 and UDP headers, counted in the average RTCP packet size (§6.3.3).
const UDP_IP_OVERHEAD: usize = 28;
/// Seconds from the NTP era (1900) to the Unix epoch (1970).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// Reception statistics of one remote RTP source (RFC 3550 A.1, A.3, A.8).
#[derive(Debug, Clone)]
pub struct ReceiverStats {
    ssrc: u32,
    // A.1: `cycles` counts wraps in units of 2^16 so that `cycles + max_seq` is the extended
    // sequence number.
    max_seq: u16,
    cycles: u32,
    base_seq: u32,
    bad_seq: u32,
    probation: u32,
    /// Whether probation ended once, i.e. the counters below mean something.
    validated: bool,
    received: u32,
    // A.3: the counters at the last report, for the fraction lost in each interval.
    expected_prior: u32,
    received_prior: u32,
    // A.8: relative transit time of the previous packet and the running estimate, both in
    // RTP timestamp units of `clock_rate`.
    transit: Option<u32>,
    jitter: f64,
    clock_rate: u32,
    /// The arrival of the first packet: arrivals are measured from it in timestamp units.
    epoch: Option<Instant>,
    packets: u64,
    bytes: u64,
}

impl ReceiverStats {
    /// Statistics for the source `ssrc`, before its first packet.
    pub fn new(ssrc: u32) -> ReceiverStats {
        ReceiverStats {
            ssrc,
            max_seq: 0,
            cycles: 0,
            base_seq: 0,
            bad_seq: 0,
            probation: 0,
            validated: false,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            transit: None,
            jitter: 0.0,
            clock_rate: 8000,
            epoch: None,
            packets: 0,
            bytes: 0,
        }
    }

    /// Accounts one RTP packet of this source that arrived at `now`; `clock_rate` is that of its
    /// payload type. Returns whether the sequence number is valid (RFC 3550 A.1): false while a
    /// new source is on probation and for a jump so large it may be a restart, which is
    /// confirmed by the next packet in sequence after it.
    pub fn on_rtp(
        &mut self,
        now: Instant,
        seq: u16,
        rtp_ts: u32,
        clock_rate: u32,
        payload_len: usize,
    ) -> bool {
        self.packets += 1;
        self.bytes += payload_len as u64;
        if self.epoch.is_none() {
            self.epoch = Some(now);
            self.init_seq(seq);
            self.max_seq = seq.wrapping_sub(1);
            self.probation = MIN_SEQUENTIAL;
        }
        let valid = self.update_seq(seq);
        if valid {
            self.update_jitter(now, rtp_ts, clock_rate);
        }
        valid
    }

    // RFC 3550 A.1 `init_seq`.
    fn init_seq(&mut self, seq: u16) {
        self.base_seq = u32::from(seq);
        self.max_seq = seq;
        self.bad_seq = u32::from(u16::MAX) + 2; // Matches no sequence number.
        self.cycles = 0;
        self.received = 0;
        self.received_prior = 0;
        self.expected_prior = 0;
        // A restarted sender usually restarts its timestamps too.
        self.transit = None;
    }

    // RFC 3550 A.1 `update_seq`.
    fn update_seq(&mut self, seq: u16) -> bool {
        let udelta = seq.wrapping_sub(self.max_seq);
        if self.probation > 0 {
            if seq == self.max_seq.wrapping_add(1) {
                self.probation -= 1;
                self.max_seq = seq;
                if self.probation == 0 {
                    self.init_seq(seq);
                    self.validated = true;
                    self.received += 1;
                    return true;
                }
            } else {
                self.probation = MIN_SEQUENTIAL - 1;
                self.max_seq = seq;
            }
            return false;
        }
        if udelta < MAX_DROPOUT {
            if seq < self.max_seq {
                self.cycles = self.cycles.wrapping_add(1 << 16);
            }
            self.max_seq = seq;
        } else if udelta <= u16::MAX - MAX_MISORDER + 1 {
            // A very large jump: a restart if the next packet follows this one.
            if u32::from(seq) == self.bad_seq {
                self.init_seq(seq);
            } else {
                self.bad_seq = u32::from(seq.wrapping_add(1));
                return false;
            }
        }
        // Otherwise a duplicate or a reordered packet: counted, but the maximum stays.
        self.received = self.received.wrapping_add(1);
        true
    }

    // RFC 3550 A.8, in floating point.
    fn update_jitter(&mut self, now: Instant, rtp_ts: u32, clock_rate: u32) {
        let clock_rate = clock_rate.max(1);
        if clock_rate != self.clock_rate {
            // Keep the estimate in the new unit; transit times of the old one do not compare.
            self.jitter *= f64::from(clock_rate) / f64::from(self.clock_rate);
            self.clock_rate = clock_rate;
            self.transit = None;
        }
        let since = now.saturating_duration_since(self.epoch.unwrap_or(now));
        // Arrival time in timestamp units; only differences matter, so wrapping is fine.
        let arrival = (since.as_nanos() * u128::from(clock_rate) / 1_000_000_000) as u32;
        let transit = arrival.wrapping_sub(rtp_ts);
        if let Some(previous) = self.transit {
            let d = f64::from((transit.wrapping_sub(previous) as i32).unsigned_abs());
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.transit = Some(transit);
    }

    /// The source's SSRC.
    #[cfg(test)]
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// All packets accounted, valid or not, duplicates included.
    #[cfg(test)]
    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// Payload bytes of all packets accounted.
    #[cfg(test)]
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The highest sequence number received, extended with the count of wraps (A.1).
    pub fn extended_highest_seq(&self) -> u32 {
        self.cycles.wrapping_add(u32::from(self.max_seq))
    }

    /// Packets expected since the source was validated or restarted (A.3).
    pub fn expected(&self) -> u32 {
        if !self.validated {
            return 0;
        }
        self.extended_highest_seq()
            .wrapping_sub(self.base_seq)
            .wrapping_add(1)
    }

    /// Valid packets received since the source was validated or restarted, duplicates included.
    #[cfg(test)]
    pub fn received(&self) -> u32 {
        self.received
    }

    /// Packets lost since the source was validated or restarted; negative when duplicates
    /// outnumber losses (A.3).
    pub fn cumulative_lost(&self) -> i64 {
        i64::from(self.expected()) - i64::from(self.received)
    }

    /// The fraction lost since the last report, in 256ths as in a report block (A.3).
    pub fn fraction_lost(&self) -> u8 {
        let expected_interval = self.expected().wrapping_sub(self.expected_prior);
        let received_interval = self.received.wrapping_sub(self.received_prior);
        let lost_interval = i64::from(expected_interval) - i64::from(received_interval);
        if expected_interval == 0 || lost_interval <= 0 {
            return 0;
        }
        u8::try_from((lost_interval << 8) / i64::from(expected_interval)).unwrap_or(u8::MAX)
    }

    /// Interarrival jitter in timestamp units of the latest payload type (A.8).
    #[cfg(test)]
    pub fn jitter(&self) -> f64 {
        self.jitter
    }

    /// Interarrival jitter in milliseconds.
    pub fn jitter_ms(&self) -> f64 {
        self.jitter * 1000.0 / f64::from(self.clock_rate)
    }

    /// The report block about this source, which starts a new loss interval (A.3). `last_sr`
    /// is the middle of the NTP timestamp of this source's last SR and when it arrived.
    fn report_block(
        &mut self,
        now: Instant,
        last_sr: Option<(u32, Instant)>,
    ) -> ReportBlockBuilder {
        let fraction = self.fraction_lost();
        self.expected_prior = self.expected();
        self.received_prior = self.received;
        // A 24-bit signed field, clamped (A.3).
        let lost = self.cumulative_lost().clamp(-0x80_0000, 0x7F_FFFF) as i32 as u32 & 0xFF_FFFF;
        let (lsr, dlsr) = match last_sr {
            Some((lsr, at)) => (lsr, to_fixed_16_16(now.saturating_duration_since(at))),
            None => (0, 0),
        };
        ReportBlock::builder(self.ssrc)
            .fraction_lost(fraction)
            .cumulative_lost(lost)
            .extended_sequence_number(self.extended_highest_seq())
            .interarrival_jitter(self.jitter as u32)
            .last_sender_report_timestamp(lsr)
            .delay_since_last_sender_report_timestamp(dlsr)
    }
}

/// What we sent on the leg, for sender reports (RFC 3550 §6.4.1).
#[derive(Debug, Clone)]
pub struct SenderStats {
    clock_rate: u32,
    packets: u64,
    bytes: u64,
    /// The RTP timestamp of the latest packet sent and when.
    last: Option<(u32, Instant)>,
    sent_since_report: bool,
}

impl SenderStats {
    /// Counters for a stream whose RTP clock runs at `clock_rate`.
    pub fn new(clock_rate: u32) -> SenderStats {
        SenderStats {
            clock_rate: clock_rate.max(1),
            packets: 0,
            bytes: 0,
            last: None,
            sent_since_report: false,
        }
    }

    /// Accounts `packets` RTP packets carrying `payload_bytes` in all, the latest stamped
    /// `rtp_ts`, sent at `now`.
    pub fn on_sent(&mut self, now: Instant, packets: u32, payload_bytes: usize, rtp_ts: u32) {
        self.packets += u64::from(packets);
        self.bytes += payload_bytes as u64;
        self.last = Some((rtp_ts, now));
        self.sent_since_report = true;
    }

    /// The RTP timestamp that corresponds to `now`, extrapolated from the latest packet, as the
    /// sender report needs (§6.4.1).
    fn rtp_timestamp_at(&self, now: Instant) -> u32 {
        let Some((ts, at)) = self.last else { return 0 };
        let elapsed = now.saturating_duration_since(at);
        let ticks = elapsed.as_nanos() * u128::from(self.clock_rate) / 1_000_000_000;
        ts.wrapping_add(ticks as u32)
    }
}

/// What the remote last reported about our stream (RFC 3550 §6.4.1 report block).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RemoteReport {
    /// The fraction of our packets lost in its last interval, 0.0 to 1.0.
    pub fraction_lost: f64,
    /// Our packets it counts as lost since it started receiving.
    pub cumulative_lost: i32,
    /// Its jitter estimate of our stream, in milliseconds.
    pub jitter_ms: f64,
    /// The highest sequence number it received from us, extended.
    pub extended_highest_seq: u32,
}

/// A snapshot of one leg's media statistics for the rest of the program.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LegStats {
    /// RTP packets received, duplicates included.
    pub packets_in: u64,
    /// RTP packets sent.
    pub packets_out: u64,
    /// RTP payload bytes received.
    pub bytes_in: u64,
    /// RTP payload bytes sent.
    pub bytes_out: u64,
    /// Packets lost on the way to us; negative when duplicates outnumber losses.
    pub lost: i64,
    /// The fraction lost on the way to us since our last report, 0.0 to 1.0.
    pub fraction_lost: f64,
    /// Interarrival jitter of what we receive, in milliseconds.
    pub jitter_ms: f64,
    /// Round-trip time from the remote's latest report, once it has echoed one of our SRs.
    pub rtt_ms: Option<f64>,
    /// The remote's view of our stream, once it has reported.
    pub remote: Option<RemoteReport>,
}

/// How many of our recent sender reports are remembered to match the remote's LSR against.
const SENT_REPORTS: usize = 4;

/// The RTCP state of one leg: our SSRC and CNAME, both directions' statistics, and what the
/// remote reported. See the module docs for the driving contract.
#[derive(Debug, Clone)]
pub struct RtcpSession {
    ssrc: u32,
    cname: String,
    sender: SenderStats,
    receiver: Option<ReceiverStats>,
    /// Losses of earlier remote sources, so that a changed SSRC does not reset the leg's count.
    lost_before: i64,
    packets_before: u64,
    bytes_before: u64,
    /// The remote's last SR: its SSRC, the middle of its NTP timestamp, and when it arrived.
    last_sr: Option<(u32, u32, Instant)>,
    /// The middle of the NTP timestamp of our recent SRs and when each was built.
    sent_reports: [Option<(u32, Instant)>; SENT_REPORTS],
    next_sent_report: usize,
    rtt: Option<Duration>,
    remote: Option<RemoteReport>,
    /// Inputs of the report interval (§6.3): whether the remote sent RTP since our last report,
    /// whether we reported yet, and the running average size of RTCP packets on the leg.
    remote_sent: bool,
    reported: bool,
    avg_rtcp_size: f64,
}

impl RtcpSession {
    /// A session sending as `ssrc` with the given CNAME (RFC 3550 §6.5.1) on a stream whose RTP
    /// clock runs at `clock_rate`.
    pub fn new(ssrc: u32, cname: &str, clock_rate: u32) -> Result<RtcpSession, RtcpError> {
        if cname.len() > usize::from(u8::MAX) {
            return Err(RtcpError::CnameTooLong { len: cname.len() });
        }
        Ok(RtcpSession {
            ssrc,
            cname: cname.to_owned(),
            sender: SenderStats::new(clock_rate),
            receiver: None,
            lost_before: 0,
            packets_before: 0,
            bytes_before: 0,
            last_sr: None,
            sent_reports: [None; SENT_REPORTS],
            next_sent_report: 0,
            rtt: None,
            remote: None,
            remote_sent: false,
            reported: false,
            // §6.3.2: start from the probable size of our first report, an RR with one block
            // and our CNAME.
            avg_rtcp_size: (UDP_IP_OVERHEAD + 8 + 24 + 8 + 2 + cname.len() + 3) as f64,
        })
    }

    /// Accounts an RTP packet received at `now`; see [`ReceiverStats::on_rtp`] for the result.
    /// The leg tracks one remote source: a packet from another SSRC starts fresh statistics
    /// (the remote restarted or was replaced), keeping the totals.
    pub fn on_rtp_received(
        &mut self,
        now: Instant,
        ssrc: u32,
        seq: u16,
        rtp_ts: u32,
        clock_rate: u32,
        payload_len: usize,
    ) -> bool {
        if let Some(old) = self.receiver.take_if(|r| r.ssrc != ssrc) {
            self.lost_before += old.cumulative_lost();
            self.packets_before += old.packets;
            self.bytes_before += old.bytes;
        }
        self.remote_sent = true;
        self.receiver
            .get_or_insert_with(|| ReceiverStats::new(ssrc))
            .on_rtp(now, seq, rtp_ts, clock_rate, payload_len)
    }

    /// Accounts RTP packets we sent; see [`SenderStats::on_sent`].
    pub fn on_rtp_sent(&mut self, now: Instant, packets: u32, payload_bytes: usize, rtp_ts: u32) {
        self.sender.on_sent(now, packets, payload_bytes, rtp_ts);
    }

    /// Appends a compound report to `out` and returns its length: an SR if we sent RTP since
    /// the previous report, else an RR, then an SDES with our CNAME (RFC 3550 §6.1). `ntp` is
    /// the wall-clock time of `now` as an NTP timestamp ([`ntp_timestamp`]).
    pub fn build_report(
        &mut self,
        now: Instant,
        ntp: u64,
        out: &mut Vec<u8>,
    ) -> Result<usize, RtcpError> {
        let block = match &mut self.receiver {
            Some(receiver) if receiver.validated => {
                let last_sr = self
                    .last_sr
                    .filter(|&(ssrc, _, _)| ssrc == receiver.ssrc)
                    .map(|(_, lsr, at)| (lsr, at));
                Some(receiver.report_block(now, last_sr))
            }
            _ => None,
        };
        let sdes = rtcp_types::Sdes::builder().add_chunk(
            SdesChunk::builder(self.ssrc).add_item(SdesItem::builder(SdesItem::CNAME, &self.cname)),
        );
        let compound = if self.sender.sent_since_report {
            let mut sr = SenderReport::builder(self.ssrc)
                .ntp_timestamp(ntp)
                .rtp_timestamp(self.sender.rtp_timestamp_at(now))
                // Both counters wrap modulo 2^32 on the wire (§6.4.1).
                .packet_count(self.sender.packets as u32)
                .octet_count(self.sender.bytes as u32);
            if let Some(block) = block {
                sr = sr.add_report_block(block);
            }
            Compound::builder().add_packet(sr)
        } else {
            let mut rr = ReceiverReport::builder(self.ssrc);
            if let Some(block) = block {
                rr = rr.add_report_block(block);
            }
            Compound::builder().add_packet(rr)
        }
        .add_packet(sdes);

        let len = compound.calculate_size()?;
        let start = out.len();
        out.resize(start + len, 0);
        compound.write_into_unchecked(&mut out[start..]);
        drop(compound); // It borrows the CNAME.

        if self.sender.sent_since_report {
            self.sender.sent_since_report = false;
            self.sent_reports[self.next_sent_report] = Some((ntp_middle(ntp), now));
            self.next_sent_report = (self.next_sent_report + 1) % SENT_REPORTS;
        }
        self.remote_sent = false;
        self.reported = true;
        self.average_rtcp_size(len);
        Ok(len)
    }

    /// Reads a compound RTCP packet received at `now`: the remote's SR (for the LSR/DLSR of our
    /// next report) and its report block about us (its view of our stream, and the RTT). An
    /// invalid packet changes nothing.
    pub fn handle_rtcp(&mut self, now: Instant, packet: &[u8]) -> Result<(), RtcpError> {
        let mut last_sr = None;
        let mut about_us = None;
        for (i, item) in Compound::parse(packet)?.enumerate() {
            let item = item?;
            if i == 0 && !matches!(item, Packet::Sr(_) | Packet::Rr(_)) {
                return Err(RtcpError::NotReportFirst(item.type_()));
            }
            match &item {
                Packet::Sr(sr) => {
                    last_sr = Some((sr.ssrc(), ntp_middle(sr.ntp_timestamp()), now));
                    about_us = sr
                        .report_blocks()
                        .find(|b| b.ssrc() == self.ssrc)
                        .or(about_us);
                }
                Packet::Rr(rr) => {
                    about_us = rr
                        .report_blocks()
                        .find(|b| b.ssrc() == self.ssrc)
                        .or(about_us);
                }
                _ => {}
            }
        }

        self.average_rtcp_size(packet.len());
        if last_sr.is_some() {
            self.last_sr = last_sr;
        }
        if let Some(block) = about_us {
            self.on_report_block(now, &block);
        }
        Ok(())
    }

    fn on_report_block(&mut self, now: Instant, block: &ReportBlock<'_>) {
        // Sign-extend the 24-bit cumulative loss.
        let cumulative_lost = ((block.cumulative_lost() << 8) as i32) >> 8;
        self.remote = Some(RemoteReport {
            fraction_lost: f64::from(block.fraction_lost()) / 256.0,
            cumulative_lost,
            jitter_ms: f64::from(block.interarrival_jitter()) * 1000.0
                / f64::from(self.sender.clock_rate),
            extended_highest_seq: block.extended_sequence_number(),
        });

        // RFC 3550 §6.4.1: RTT = A - LSR - DLSR, with A taken from our own record of the SR.
        let lsr = block.last_sender_report_timestamp();
        if lsr == 0 {
            return;
        }
        let sent = self
            .sent_reports
            .iter()
            .flatten()
            .find(|&&(middle, _)| middle == lsr);
        if let Some(&(_, sent_at)) = sent {
            let held = from_fixed_16_16(block.delay_since_last_sender_report_timestamp());
            if let Some(rtt) = now.saturating_duration_since(sent_at).checked_sub(held) {
                self.rtt = Some(rtt);
            }
        }
    }

    // RFC 3550 §6.3.3: sizes include the lower-layer headers.
    fn average_rtcp_size(&mut self, len: usize) {
        let size = (len + UDP_IP_OVERHEAD) as f64;
        self.avg_rtcp_size += (size - self.avg_rtcp_size) / 16.0;
    }

    /// The inputs of [`report_interval`] for this leg now, given the RTCP bandwidth in octets
    /// per second (5% of the session bandwidth, §6.2). A leg has two members; a member counts as
    /// a sender if it sent RTP since our last report.
    pub fn interval_params(&self, rtcp_bandwidth: f64) -> IntervalParams {
        IntervalParams {
            members: 2,
            senders: u32::from(self.sender.sent_since_report) + u32::from(self.remote_sent),
            rtcp_bandwidth,
            we_sent: self.sender.sent_since_report,
            avg_rtcp_size: self.avg_rtcp_size,
            initial: !self.reported,
        }
    }

    /// A snapshot of the leg's statistics.
    pub fn stats(&self) -> LegStats {
        let receiver = self.receiver.as_ref();
        LegStats {
            packets_in: self.packets_before + receiver.map_or(0, |r| r.packets),
            packets_out: self.sender.packets,
            bytes_in: self.bytes_before + receiver.map_or(0, |r| r.bytes),
            bytes_out: self.sender.bytes,
            lost: self.lost_before + receiver.map_or(0, ReceiverStats::cumulative_lost),
            fraction_lost: receiver.map_or(0.0, |r| f64::from(r.fraction_lost()) / 256.0),
            jitter_ms: receiver.map_or(0.0, ReceiverStats::jitter_ms),
            rtt_ms: self.rtt.map(|rtt| rtt.as_secs_f64() * 1000.0),
            remote: self.remote,
        }
    }

    /// Reception statistics of the current remote source, once it has sent.
    #[cfg(test)]
    pub fn receiver(&self) -> Option<&ReceiverStats> {
        self.receiver.as_ref()
    }
}

/// The 64-bit NTP timestamp of a wall-clock time: seconds since 1900 in 32.32 fixed point
/// (RFC 3550 §4). Times before 1970 map to the Unix epoch.
pub fn ntp_timestamp(wall: SystemTime) -> u64 {
    let since_unix = wall.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since_unix.as_secs().wrapping_add(NTP_UNIX_OFFSET);
    let fraction = (u64::from(since_unix.subsec_nanos()) << 32) / 1_000_000_000;
    (seconds << 32) | fraction
}

/// The middle 32 bits of an NTP timestamp, as carried in LSR (§6.4.1).
fn ntp_middle(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// A duration in units of 1/65536 s, as carried in DLSR (§6.4.1).
fn to_fixed_16_16(d: Duration) -> u32 {
    u32::try_from(d.as_nanos() * 65536 / 1_000_000_000).unwrap_or(u32::MAX)
}

fn from_fixed_16_16(units: u32) -> Duration {
    Duration::from_nanos(u64::from(units) * 1_000_000_000 / 65536)
}

/// The inputs of the RTCP transmission interval (RFC 3550 §6.3.1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IntervalParams {
    /// Participants in the session, ourselves included (2 for a call leg).
    pub members: u32,
    /// Participants that sent RTP recently, ourselves included.
    pub senders: u32,
    /// The bandwidth for RTCP in octets per second: 5% of the session bandwidth unless SDP said
    /// otherwise (§6.2).
    pub rtcp_bandwidth: f64,
    /// Whether we sent RTP recently (§6.3.8 `we_sent`).
    pub we_sent: bool,
    /// Average size of the compound RTCP packets sent and received, in octets, lower-layer
    /// headers included (§6.3.3 `avg_rtcp_size`).
    pub avg_rtcp_size: f64,
    /// Whether no report has been sent yet: the first waits half the minimum (§6.3.1).
    pub initial: bool,
}

/// The delay until our next RTCP report (RFC 3550 §6.3.1, the `rtcp_interval` of A.7).
/// `random` is a uniform value in [0, 1) from the caller's generator; it spreads the interval
/// over 0.5 to 1.5 times the deterministic one. As the RFC prescribes, the result is then divided
/// by e − 3/2 ≈ 1.218, so the 5 s minimum yields between 2.05 s and 6.16 s.
pub fn report_interval(params: &IntervalParams, random: f64) -> Duration {
    const RTCP_MIN_TIME: f64 = 5.0;
    const RTCP_SENDER_BW_FRACTION: f64 = 0.25;
    const RTCP_RCVR_BW_FRACTION: f64 = 1.0 - RTCP_SENDER_BW_FRACTION;
    const COMPENSATION: f64 = std::f64::consts::E - 1.5;

    let min_time = if params.initial {
        RTCP_MIN_TIME / 2.0
    } else {
        RTCP_MIN_TIME
    };
    // With few senders, senders share a quarter of the bandwidth and receivers the rest.
    let mut n = f64::from(params.members.max(1));
    let mut bandwidth = params.rtcp_bandwidth;
    let senders = f64::from(params.senders);
    if senders <= n * RTCP_SENDER_BW_FRACTION {
        if params.we_sent {
            bandwidth *= RTCP_SENDER_BW_FRACTION;
            n = senders.max(1.0);
        } else {
            bandwidth *= RTCP_RCVR_BW_FRACTION;
            n = (n - senders).max(1.0);
        }
    }
    let mut t = if bandwidth > 0.0 {
        params.avg_rtcp_size * n / bandwidth
    } else {
        min_time
    };
    if t.is_nan() || t < min_time {
        t = min_time;
    }
    let random = if random.is_finite() {
        random.clamp(0.0, 1.0)
    } else {
        0.5
    };
    Duration::from_secs_f64(t.min(86_400.0) * (random + 0.5) / COMPENSATION)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Feeds `seqs` 20 ms apart with matching timestamps; returns how many were valid.
    fn feed(stats: &mut ReceiverStats, start: Instant, seqs: &[u16]) -> usize {
        seqs.iter()
            .enumerate()
            .filter(|&(i, &seq)| {
                let now = start + 20 * MS * i as u32;
                stats.on_rtp(now, seq, u32::from(seq) * 160, 8000, 160)
            })
            .count()
    }

    #[test]
    fn a_new_source_is_validated_by_its_second_packet() {
        let mut stats = ReceiverStats::new(7);
        let t0 = Instant::now();
        assert!(!stats.on_rtp(t0, 100, 0, 8000, 160));
        assert_eq!(
            (stats.expected(), stats.received(), stats.packets()),
            (0, 0, 1)
        );
        assert!(stats.on_rtp(t0 + 20 * MS, 101, 160, 8000, 160));
        assert_eq!((stats.expected(), stats.received()), (1, 1));
        assert_eq!(stats.bytes(), 320);
    }

    #[test]
    fn loss_counts_gaps_and_forgives_reordering() {
        let mut stats = ReceiverStats::new(7);
        // 1..=100 with 10, 11 and 50 lost, 30 and 31 swapped, 70 duplicated.
        let mut seqs: Vec<u16> = (1..=100).filter(|s| ![10, 11, 50].contains(s)).collect();
        let i = seqs.iter().position(|&s| s == 30).unwrap();
        seqs.swap(i, i + 1);
        let i = seqs.iter().position(|&s| s == 70).unwrap();
        seqs.insert(i + 1, 70);
        let valid = feed(&mut stats, Instant::now(), &seqs);

        // Packet 1 is the probation packet; counting starts at 2.
        assert_eq!(valid, seqs.len() - 1);
        assert_eq!(stats.extended_highest_seq(), 100);
        assert_eq!(stats.expected(), 99);
        assert_eq!(stats.received(), 97);
        assert_eq!(stats.cumulative_lost(), 2, "3 lost, 1 duplicate");
        assert_eq!(stats.fraction_lost(), (2 * 256 / 99) as u8);
    }

    #[test]
    fn the_loss_fraction_covers_one_report_interval() {
        let t0 = Instant::now();
        let mut stats = ReceiverStats::new(7);
        feed(&mut stats, t0, &[1, 2, 3, 5, 6, 7, 8, 9, 10]);
        // Counting starts at 2: one of 9 lost.
        assert_eq!(stats.fraction_lost(), 28);
        let block = stats.report_block(t0, None);
        assert_eq!(written_block(block).fraction_lost(), 28);
        // A clean interval follows.
        feed(&mut stats, t0, &[11, 12, 13, 14]);
        let block = written_block(stats.report_block(t0, None));
        assert_eq!((block.fraction_lost(), block.cumulative_lost()), (0, 1));
        // Then one where half is lost.
        feed(&mut stats, t0, &[16, 18]);
        let block = written_block(stats.report_block(t0, None));
        assert_eq!((block.fraction_lost(), block.cumulative_lost()), (128, 3));
    }

    #[test]
    fn sequence_numbers_wrap_at_65535() {
        let mut stats = ReceiverStats::new(7);
        let seqs: Vec<u16> = (65530..=65535).chain(0..=5).filter(|&s| s != 2).collect();
        feed(&mut stats, Instant::now(), &seqs);
        assert_eq!(stats.extended_highest_seq(), (1 << 16) + 5);
        assert_eq!(stats.expected(), 11, "65531 to 65541");
        assert_eq!(stats.cumulative_lost(), 1);
        // A late packet from before the wrap does not add a cycle.
        assert!(stats.on_rtp(Instant::now(), 65534, 0, 8000, 160));
        assert_eq!(stats.extended_highest_seq(), (1 << 16) + 5);
    }

    #[test]
    fn a_large_jump_is_a_restart_once_confirmed() {
        let mut stats = ReceiverStats::new(7);
        let t0 = Instant::now();
        feed(&mut stats, t0, &[1, 2, 3, 4, 6]);
        assert_eq!(stats.cumulative_lost(), 1);
        // A stray packet far ahead is not counted...
        assert!(!stats.on_rtp(t0, 40_000, 0, 8000, 160));
        assert!(stats.on_rtp(t0, 7, 0, 8000, 160));
        assert_eq!(stats.extended_highest_seq(), 7);
        // ...but a jump followed by its successor is the sender restarting.
        assert!(!stats.on_rtp(t0, 20_000, 0, 8000, 160));
        assert!(stats.on_rtp(t0, 20_001, 160, 8000, 160));
        assert_eq!(stats.extended_highest_seq(), 20_001);
        assert_eq!((stats.expected(), stats.received()), (1, 1));
        assert_eq!(stats.cumulative_lost(), 0);
    }

    #[test]
    fn jitter_follows_rfc_3550_a8() {
        // Packets every 20 ms (160 timestamp units); every other one arrives 5 ms late, so each
        // transit time differs from the previous by 40 units. From J = 0, n updates of
        // J += (40 - J) / 16 give J = 40 (1 - (15/16)^n).
        let mut stats = ReceiverStats::new(7);
        let t0 = Instant::now();
        for i in 0..100u32 {
            let late = if i % 2 == 1 { 5 * MS } else { Duration::ZERO };
            stats.on_rtp(t0 + 20 * MS * i + late, i as u16, i * 160, 8000, 160);
        }
        // The first packet is on probation; the second sets the first transit time.
        let updates = 98;
        let expected = 40.0 * (1.0 - (15.0f64 / 16.0).powi(updates));
        assert!(
            (stats.jitter() - expected).abs() < 1e-6,
            "{}",
            stats.jitter()
        );
        assert!((stats.jitter_ms() - expected / 8.0).abs() < 1e-6);
    }

    #[test]
    fn steady_arrivals_have_no_jitter() {
        let mut stats = ReceiverStats::new(7);
        let t0 = Instant::now();
        // Timestamps wrap on the way; transit times stay constant.
        let base = u32::MAX - 1000;
        for i in 0..50u32 {
            let ts = base.wrapping_add(i * 160);
            stats.on_rtp(t0 + 20 * MS * i, i as u16, ts, 8000, 160);
        }
        assert_eq!(stats.jitter(), 0.0);
    }

    fn written_block(block: ReportBlockBuilder) -> ReportBlock<'static> {
        let rr = ReceiverReport::builder(1).add_report_block(block);
        let mut buf = vec![0; rr.calculate_size().unwrap()];
        rr.write_into(&mut buf).unwrap();
        let data: &'static [u8] = Box::leak(buf.into_boxed_slice());
        ReportBlock::parse(&data[8..32]).unwrap()
    }

    fn packet_types(report: &[u8]) -> Vec<u8> {
        Compound::parse(report)
            .unwrap()
            .map(|p| p.unwrap().type_())
            .collect()
    }

    fn cname_of(report: &[u8]) -> String {
        for packet in Compound::parse(report).unwrap() {
            if let Packet::Sdes(sdes) = packet.unwrap() {
                let chunk = sdes.chunks().next().unwrap();
                let item = chunk.items().next().unwrap();
                assert_eq!(item.type_(), SdesItem::CNAME);
                return item.get_value_string().unwrap();
            }
        }
        panic!("no SDES");
    }

    const SR: u8 = 200;
    const RR: u8 = 201;
    const SDES: u8 = 202;

    #[test]
    fn reports_are_sr_after_sending_else_rr_and_always_carry_the_cname() {
        let t0 = Instant::now();
        let ntp = ntp_timestamp(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        let mut session = RtcpSession::new(0x1111, "tandem@example.test", 8000).unwrap();
        let mut out = vec![0xEE]; // Appended after what the caller had.
        let len = session.build_report(t0, ntp, &mut out).unwrap();
        assert_eq!(out.len(), 1 + len);
        assert_eq!(packet_types(&out[1..]), [RR, SDES]);
        assert_eq!(cname_of(&out[1..]), "tandem@example.test");

        session.on_rtp_sent(t0, 1, 160, 1000);
        session.on_rtp_sent(t0 + 20 * MS, 1, 160, 1160);
        let mut out = Vec::new();
        session.build_report(t0 + 30 * MS, ntp, &mut out).unwrap();
        assert_eq!(packet_types(&out), [SR, SDES]);
        let Some(Ok(Packet::Sr(sr))) = Compound::parse(&out).unwrap().next() else {
            panic!("SR first");
        };
        assert_eq!((sr.ssrc(), sr.ntp_timestamp()), (0x1111, ntp));
        assert_eq!((sr.packet_count(), sr.octet_count()), (2, 320));
        assert_eq!(
            sr.rtp_timestamp(),
            1160 + 80,
            "extrapolated to the report's time"
        );
        assert_eq!(sr.n_reports(), 0, "nothing received yet");

        out.clear();
        session.build_report(t0 + 5000 * MS, ntp, &mut out).unwrap();
        assert_eq!(packet_types(&out), [RR, SDES], "nothing sent since");

        assert_eq!(
            RtcpSession::new(1, &"x".repeat(256), 8000).unwrap_err(),
            RtcpError::CnameTooLong { len: 256 }
        );
    }

    /// Two sessions on a virtual clock: A sends to B over a path that loses some packets and
    /// takes 30 ms each way; they exchange reports built by each other.
    #[test]
    fn rtt_and_remote_view_round_trip_between_two_sessions() {
        let t0 = Instant::now();
        let wall = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let one_way = 30 * MS;
        let mut a = RtcpSession::new(0xA, "a@test", 8000).unwrap();
        let mut b = RtcpSession::new(0xB, "b@test", 8000).unwrap();

        let mut dropped = 0;
        for i in 0..250u32 {
            let sent = t0 + 20 * MS * i;
            let (seq, ts) = (1000 + i as u16, 5000 + i * 160);
            a.on_rtp_sent(sent, 1, 160, ts);
            if i % 50 == 25 {
                dropped += 1;
                continue;
            }
            b.on_rtp_received(sent + one_way, 0xA, seq, ts, 8000, 160);
        }

        // A reports at 5 s; B receives it 30 ms later.
        let a_report_at = t0 + 5000 * MS;
        let mut packet = Vec::new();
        a.build_report(a_report_at, ntp_timestamp(wall + 5000 * MS), &mut packet)
            .unwrap();
        b.handle_rtcp(a_report_at + one_way, &packet).unwrap();

        // B reports 1.2 s after that, echoing A's SR; A receives it 30 ms later.
        let b_report_at = a_report_at + one_way + 1200 * MS;
        packet.clear();
        b.build_report(b_report_at, ntp_timestamp(wall + 6230 * MS), &mut packet)
            .unwrap();
        assert_eq!(packet_types(&packet), [RR, SDES]);
        a.handle_rtcp(b_report_at + one_way, &packet).unwrap();

        let stats = a.stats();
        let rtt = stats.rtt_ms.expect("RTT from B's report");
        assert!((rtt - 60.0).abs() < 0.1, "rtt {rtt}");
        let remote = stats.remote.expect("B's view of A's stream");
        assert_eq!(remote.cumulative_lost, dropped);
        assert_eq!(remote.extended_highest_seq, 1000 + 249);
        assert!((remote.fraction_lost - f64::from((5 << 8) / 248) / 256.0).abs() < 1e-9);
        assert_eq!(remote.jitter_ms, 0.0);
        assert_eq!((stats.packets_out, stats.bytes_out), (250, 250 * 160));

        let b_stats = b.stats();
        assert_eq!(b_stats.packets_in, 245);
        assert_eq!(b_stats.bytes_in, 245 * 160);
        assert_eq!(b_stats.lost, 5);
        assert_eq!(b_stats.fraction_lost, 0.0, "the interval was reported");
        assert_eq!(b_stats.rtt_ms, None, "A never echoed an SR of B");
    }

    #[test]
    fn a_new_remote_ssrc_keeps_the_leg_totals() {
        let t0 = Instant::now();
        let mut session = RtcpSession::new(1, "x", 8000).unwrap();
        for seq in [1, 2, 4] {
            session.on_rtp_received(t0, 0xAAAA, seq, 0, 8000, 100);
        }
        for seq in [500, 501, 502, 504] {
            session.on_rtp_received(t0, 0xBBBB, seq, 0, 8000, 100);
        }
        assert_eq!(session.receiver().unwrap().ssrc(), 0xBBBB);
        let stats = session.stats();
        assert_eq!((stats.packets_in, stats.bytes_in, stats.lost), (7, 700, 2));
    }

    #[test]
    fn reports_not_starting_with_sr_or_rr_are_rejected_whole() {
        let mut session = RtcpSession::new(1, "x", 8000).unwrap();
        let sdes = rtcp_types::Sdes::builder()
            .add_chunk(SdesChunk::builder(2).add_item(SdesItem::builder(SdesItem::CNAME, "y")));
        let rr =
            ReceiverReport::builder(2).add_report_block(ReportBlock::builder(1).fraction_lost(64));
        let compound = Compound::builder().add_packet(sdes).add_packet(rr);
        let mut buf = vec![0; compound.calculate_size().unwrap()];
        compound.write_into(&mut buf).unwrap();
        assert_eq!(
            session.handle_rtcp(Instant::now(), &buf),
            Err(RtcpError::NotReportFirst(SDES))
        );
        assert_eq!(session.stats().remote, None);
        assert!(matches!(
            session.handle_rtcp(Instant::now(), &buf[..6]),
            Err(RtcpError::Malformed(_))
        ));
    }

    /// A deterministic xorshift64 generator for the mutation test.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    #[test]
    fn mutated_packets_never_panic() {
        let t0 = Instant::now();
        let mut sender = RtcpSession::new(0xA, "mutation@test", 8000).unwrap();
        let mut receiver = RtcpSession::new(0xB, "other@test", 8000).unwrap();
        for i in 0..10u16 {
            sender.on_rtp_received(t0, 0xB, i, 0, 8000, 160);
        }
        let mut seeds = Vec::new();
        let mut rr = Vec::new();
        sender.build_report(t0, 1 << 40, &mut rr).unwrap();
        seeds.push(rr);
        sender.on_rtp_sent(t0, 10, 1600, 1600);
        let mut sr = Vec::new();
        sender.build_report(t0 + MS, 2 << 40, &mut sr).unwrap();
        seeds.push(sr);

        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let mut accepted = 0;
        for round in 0..5000u32 {
            let mut packet = seeds[round as usize % seeds.len()].clone();
            for _ in 0..=rng.below(4) {
                let len = packet.len();
                match rng.below(5) {
                    0 if len > 0 => {
                        let i = rng.below(len);
                        packet[i] ^= 1 << rng.below(8);
                    }
                    1 if len > 0 => {
                        let i = rng.below(len);
                        packet[i] = rng.next() as u8;
                    }
                    2 => packet.truncate(rng.below(len + 1)),
                    3 => packet.extend((0..rng.below(40)).map(|_| rng.next() as u8)),
                    _ if len > 4 => {
                        // Aim at the header fields: count, type and length.
                        let i = rng.below(4);
                        packet[i] = rng.next() as u8;
                    }
                    _ => {}
                }
            }
            if receiver.handle_rtcp(t0 + MS * round, &packet).is_ok() {
                accepted += 1;
            }
            let _ = receiver.stats();
        }
        // The mutations must reach past the first length check to mean anything.
        assert!(accepted > 100, "only {accepted} mutated packets parsed");
    }

    #[test]
    fn ntp_timestamps_count_from_1900() {
        assert_eq!(ntp_timestamp(UNIX_EPOCH), NTP_UNIX_OFFSET << 32);
        let t = ntp_timestamp(UNIX_EPOCH + Duration::from_millis(1500));
        assert_eq!(t, ((NTP_UNIX_OFFSET + 1) << 32) | 0x8000_0000);
        assert_eq!(
            ntp_middle(t),
            (((NTP_UNIX_OFFSET + 1) as u32) << 16) | 0x8000
        );
        assert_eq!(to_fixed_16_16(Duration::from_millis(1500)), 0x1_8000);
        assert_eq!(from_fixed_16_16(0x1_8000), Duration::from_millis(1500));
    }

    fn two_party(we_sent: bool, initial: bool) -> IntervalParams {
        IntervalParams {
            members: 2,
            senders: if we_sent { 2 } else { 1 },
            // 5% of 80 kbit/s, G.711 with IP/UDP/RTP headers.
            rtcp_bandwidth: 0.05 * 80_000.0 / 8.0,
            we_sent,
            avg_rtcp_size: 100.0,
            initial,
        }
    }

    #[test]
    fn a_call_reports_at_the_randomised_minimum() {
        let compensation = std::f64::consts::E - 1.5;
        let secs = |p: &IntervalParams, r: f64| report_interval(p, r).as_secs_f64();
        let steady = two_party(true, false);
        assert!((secs(&steady, 0.0) - 2.5 / compensation).abs() < 1e-9);
        assert!((secs(&steady, 0.5) - 5.0 / compensation).abs() < 1e-9);
        assert!((secs(&steady, 0.999_999) - 7.5 / compensation).abs() < 1e-4);
        assert!((secs(&two_party(false, true), 0.5) - 2.5 / compensation).abs() < 1e-9);
        // Odd inputs still give a sane delay.
        assert!((secs(&steady, f64::NAN) - 5.0 / compensation).abs() < 1e-9);
        let broken = IntervalParams {
            rtcp_bandwidth: 0.0,
            avg_rtcp_size: f64::NAN,
            ..steady
        };
        assert!((secs(&broken, 0.5) - 5.0 / compensation).abs() < 1e-9);
    }

    #[test]
    fn a_leg_knows_its_interval_inputs() {
        let t0 = Instant::now();
        let mut session = RtcpSession::new(1, "x", 8000).unwrap();
        let first = session.interval_params(500.0);
        assert_eq!((first.members, first.senders, first.we_sent), (2, 0, false));
        assert!(first.initial);
        session.on_rtp_sent(t0, 1, 160, 0);
        session.on_rtp_received(t0, 2, 1, 0, 8000, 160);
        assert_eq!(session.interval_params(500.0).senders, 2);
        let mut out = Vec::new();
        let len = session.build_report(t0, 0, &mut out).unwrap();
        let after = session.interval_params(500.0);
        assert!(!after.initial);
        assert_eq!((after.senders, after.we_sent), (0, false));
        let avg = first.avg_rtcp_size + ((len + 28) as f64 - first.avg_rtcp_size) / 16.0;
        assert!((after.avg_rtcp_size - avg).abs() < 1e-9);
    }

    #[test]
    fn a_large_session_reports_less_often() {
        let compensation = std::f64::consts::E - 1.5;
        // 1000 receivers and 2 senders on 500 octets/s: receivers share 75% of it.
        let receiver = IntervalParams {
            members: 1002,
            senders: 2,
            rtcp_bandwidth: 500.0,
            we_sent: false,
            avg_rtcp_size: 100.0,
            initial: false,
        };
        let t = report_interval(&receiver, 0.5).as_secs_f64();
        assert!(
            (t - 100.0 * 1000.0 / 375.0 / compensation).abs() < 1e-6,
            "{t}"
        );
        // A sender among them shares 25% with one other sender.
        let sender = IntervalParams {
            we_sent: true,
            ..receiver
        };
        let t = report_interval(&sender, 0.5).as_secs_f64();
        assert!(
            (t - 5.0 / compensation).abs() < 1e-9,
            "2 × 100 / 125 s is below the minimum"
        );
    }
}
