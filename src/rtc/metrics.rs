//! The WebRTC service's metrics, published from its [`RtcStats`] about once a second.

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::RtcStats;
use crate::metrics::{Labels, Part, Snapshot, label};

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
}

impl Part for RtcMetrics {
    fn register(registry: &mut Registry) -> Self {
        let metrics = RtcMetrics {
            peers: Gauge::default(),
            panics: Gauge::default(),
            packets: Family::default(),
            dropped: Family::default(),
        };
        registry.register("webrtc_peers", "Open WebRTC peers", metrics.peers.clone());
        registry.register(
            "webrtc_panics",
            "WebRTC peers whose task panicked",
            metrics.panics.clone(),
        );
        registry.register(
            "webrtc_packets",
            "WebRTC datagrams and bridged RTP packets, by direction",
            metrics.packets.clone(),
        );
        registry.register(
            "webrtc_dropped",
            "WebRTC datagrams and bridged RTP packets dropped, by reason",
            metrics.dropped.clone(),
        );
        metrics
    }
}

impl Snapshot for RtcStats {
    type Part = RtcMetrics;
    fn publish(&self, to: &RtcMetrics) {
        to.peers.set(self.peers_open as i64);
        to.panics.set(self.peers_panicked as i64);
        for (direction, n) in [
            ("in", self.packets_in),
            ("out", self.packets_out),
            ("rtp_bridge_in", self.rtp_bridge_in),
            ("rtp_bridge_out", self.rtp_bridge_out),
        ] {
            to.packets
                .get_or_create(&label("direction", direction))
                .set(n as i64);
        }
        for (reason, n) in [
            ("unknown", self.dropped_unknown),
            ("queue_full", self.dropped_queue_full),
            ("rtp_bridge_in", self.rtp_bridge_in_dropped),
            ("rtp_bridge_out", self.rtp_bridge_out_dropped),
        ] {
            to.dropped
                .get_or_create(&label("reason", reason))
                .set(n as i64);
        }
    }
}
