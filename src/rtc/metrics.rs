//! The WebRTC service's metrics, published from its [`RtcStats`] about once a second.

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::RtcStats;
use crate::metrics::{Labels, Part, Snapshot, registered, set_each};

/// The WebRTC service's gauges.
pub struct RtcMetrics {
    /// Open WebRTC peers.
    peers: Gauge,
    /// WebRTC peers whose task panicked (each ended alone).
    panics: Gauge,
    /// WebRTC datagrams and bridged RTP packets so far, by direction.
    packets: Family<Labels, Gauge>,
    /// WebRTC datagrams dropped, by reason (`unknown` source, peer `queue_full`).
    dropped: Family<Labels, Gauge>,
    /// Opus packets from peers bridged to SIP, by the audio band they code.
    opus_in: Family<Labels, Gauge>,
}

impl Part for RtcMetrics {
    fn register(r: &mut Registry) -> Self {
        RtcMetrics {
            peers: registered(r, "webrtc_peers", "Open WebRTC peers", Gauge::default()),
            panics: registered(
                r,
                "webrtc_panics",
                "WebRTC peers whose task panicked",
                Gauge::default(),
            ),
            packets: registered(
                r,
                "webrtc_packets",
                "WebRTC datagrams and bridged RTP packets, by direction",
                Family::default(),
            ),
            dropped: registered(
                r,
                "webrtc_dropped",
                "WebRTC datagrams and bridged RTP packets dropped, by reason",
                Family::default(),
            ),
            opus_in: registered(
                r,
                "webrtc_opus_in",
                "Opus packets from WebRTC peers bridged to SIP, by audio band",
                Family::default(),
            ),
        }
    }
}

impl Snapshot for RtcStats {
    type Part = RtcMetrics;
    fn publish(&self, to: &RtcMetrics) {
        to.peers.set(self.peers_open as i64);
        to.panics.set(self.peers_panicked as i64);
        let directions = [
            ("in", self.packets_in),
            ("out", self.packets_out),
            ("rtp_bridge_in", self.rtp_bridge_in),
            ("rtp_bridge_out", self.rtp_bridge_out),
        ];
        set_each(&to.packets, "direction", directions);
        let reasons = [
            ("unknown", self.dropped_unknown),
            ("queue_full", self.dropped_queue_full),
            ("rtp_bridge_in", self.rtp_bridge_in_dropped),
            ("rtp_bridge_out", self.rtp_bridge_out_dropped),
        ];
        set_each(&to.dropped, "reason", reasons);
        let bands = [
            ("narrow", self.opus_narrowband_in),
            ("wide", self.opus_wideband_in),
        ];
        set_each(&to.opus_in, "band", bands);
    }
}
