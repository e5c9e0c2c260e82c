//! The media engine's metrics.

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::metrics::{Labels, Part, registered, set_each};

/// The media engine's gauges.
pub struct MediaMetrics {
    /// Open RTP legs (each holds an RTP and an RTCP port).
    legs: Gauge,
    /// Datagrams between our own sockets handed over in memory, by outcome.
    handed_over: Family<Labels, Gauge>,
}

impl Part for MediaMetrics {
    fn register(registry: &mut Registry) -> Self {
        MediaMetrics {
            legs: registered(registry, "media_legs", "Open RTP legs", Gauge::default()),
            handed_over: registered(
                registry,
                "media_handed_over",
                "Datagrams between our own sockets handed over in memory, by outcome",
                Family::default(),
            ),
        }
    }
}

impl MediaMetrics {
    /// Publishes the number of open legs and the datagrams handed over so far.
    pub fn publish(&self, legs: usize) {
        self.legs.set(legs as i64);
        let (delivered, refused) = super::local::totals();
        set_each(
            &self.handed_over,
            "outcome",
            [("delivered", delivered), ("refused", refused)],
        );
    }
}
