//! The media engine's metrics.

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::metrics::{Part, registered};

/// The media engine's gauges.
pub struct MediaMetrics {
    /// Open RTP legs (each holds an RTP and an RTCP port).
    legs: Gauge,
}

impl Part for MediaMetrics {
    fn register(registry: &mut Registry) -> Self {
        MediaMetrics {
            legs: registered(registry, "media_legs", "Open RTP legs", Gauge::default()),
        }
    }
}

impl MediaMetrics {
    /// Publishes the number of open legs.
    pub fn set_legs(&self, legs: usize) {
        self.legs.set(legs as i64);
    }
}
