//! The HTTP API's metrics.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::metrics::{Labels, Part, label};

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
    fn register(registry: &mut Registry) -> Self {
        let metrics = ApiMetrics {
            files: Counter::default(),
            agent_sockets: Gauge::default(),
            errors: Family::default(),
        };
        registry.register(
            "agent_sockets",
            "Open agent desktop sockets",
            metrics.agent_sockets.clone(),
        );
        registry.register("files", "Files uploaded", metrics.files.clone());
        registry.register("api_errors", "API errors by code", metrics.errors.clone());
        metrics
    }
}

impl ApiMetrics {
    /// Counts one error answered with `code`.
    pub fn error(&self, code: &str) {
        self.errors.get_or_create(&label("code", code)).inc();
    }
}
