//! What the store's metrics say about its transactions.

use tandem::metrics::Metrics;

/// Store transactions so far, and the seconds they took in all.
pub fn store_totals(metrics: &Metrics) -> (f64, f64) {
    let rendered = metrics.render();
    let stat = |name: &str| {
        rendered
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (
        stat("tandem_store_latency_seconds_count"),
        stat("tandem_store_latency_seconds_sum"),
    )
}
