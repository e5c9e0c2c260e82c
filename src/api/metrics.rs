//! The HTTP API's metrics.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::metrics::{Labels, Part, label, registered};

/// The HTTP API's counters.
pub struct ApiMetrics {
    /// Files uploaded, by customers and agents.
    pub files: Counter,
    /// Open agent desktop sockets (tabs).
    pub agent_sockets: Gauge,
    /// API errors by their stable code.
    errors: Family<Labels, Counter>,
}

impl Part for ApiMetrics {
    fn register(r: &mut Registry) -> Self {
        ApiMetrics {
            agent_sockets: registered(
                r,
                "agent_sockets",
                "Open agent desktop sockets",
                Gauge::default(),
            ),
            files: registered(r, "files", "Files uploaded", Counter::default()),
            errors: registered(r, "api_errors", "API errors by code", Family::default()),
        }
    }
}

impl ApiMetrics {
    /// Counts one error answered with `code`.
    pub fn error(&self, code: &str) {
        self.errors.get_or_create(&label("code", code)).inc();
    }
}
