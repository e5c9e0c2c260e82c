//! Prometheus metrics shared by the parts (text format served at `/metrics`).

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// The gateway's metrics; cheap to update from any task.
pub struct Metrics {
    registry: Registry,
    pub open_interactions: Gauge,
    pub messages: Counter,
    pub files: Counter,
    /// API errors by their stable code.
    pub api_errors: Family<Vec<(String, String)>, Counter>,
    /// Time of one store transaction (a group commit of many writes).
    pub store_latency: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("tandem");
        let open_interactions = Gauge::default();
        let messages = Counter::default();
        let files = Counter::default();
        let api_errors = Family::default();
        let store_latency = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        registry.register(
            "open_interactions",
            "Interactions not closed yet",
            open_interactions.clone(),
        );
        registry.register("messages", "Chat messages accepted", messages.clone());
        registry.register("files", "Files uploaded", files.clone());
        registry.register("api_errors", "API errors by code", api_errors.clone());
        registry.register(
            "store_latency_seconds",
            "Duration of store transactions",
            store_latency.clone(),
        );
        Metrics {
            registry,
            open_interactions,
            messages,
            files,
            api_errors,
            store_latency,
        }
    }
}

impl Metrics {
    pub fn api_error(&self, code: &str) {
        self.api_errors
            .get_or_create(&vec![("code".to_string(), code.to_string())])
            .inc();
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String");
        out
    }
}
