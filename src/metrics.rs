//! The registry behind `/metrics` (the text exposition format).
//!
//! Each part defines its metrics in its own module, as a type that implements [`Part`], and
//! registers them here when it is built ([`Metrics::part`]); this module knows none of them.
//! It holds only what no single part owns: the refusals every guard counts into and the tasks
//! of the runtime.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Metric, Registry};

/// The labels of a metric family: `(name, value)` pairs, as written.
pub(crate) type Labels = Vec<(String, String)>;

/// One label, `key="value"`.
pub(crate) fn label(key: &str, value: &str) -> Labels {
    vec![(key.to_string(), value.to_string())]
}

/// `metric`, registered in `registry` as `name` with `help`.
pub(crate) fn registered<M: Metric + Clone>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    metric: M,
) -> M {
    registry.register(name, help, metric.clone());
    metric
}

/// Sets one gauge of `family` for each `(value, n)`, labelled `key="value"`.
pub(crate) fn set_each<'a>(
    family: &Family<Labels, Gauge>,
    key: &str,
    values: impl IntoIterator<Item = (&'a str, u64)>,
) {
    for (value, n) in values {
        family.get_or_create(&label(key, value)).set(n as i64);
    }
}

/// A part's own metrics: created and registered once per [`Metrics`].
pub(crate) trait Part: Send + Sync + 'static {
    /// Creates the part's metrics and registers each of them in `registry`.
    fn register(registry: &mut Registry) -> Self;
}

/// A snapshot of a part's counters that knows where it is published.
pub(crate) trait Snapshot {
    type Part: Part;
    /// Sets the part's metrics from this snapshot.
    fn publish(&self, to: &Self::Part);
}

/// The gateway's metrics; cheap to update from any task.
pub struct Metrics {
    registry: Mutex<Registry>,
    /// Each part's metrics, by type, as first registered.
    parts: Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
    /// Tasks alive on the gateway's tokio runtime (sampled when `/metrics` is read).
    tasks: Gauge,
    /// What was refused to protect the gateway, by reason (connections over budget, failed
    /// logins and digests, locked accounts …).
    refusals: Family<Labels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("tandem");
        let r = &mut registry;
        let refusals = registered(
            r,
            "refusals",
            "Requests and connections refused to protect the gateway, by reason",
            Family::default(),
        );
        let tasks = registered(
            r,
            "tasks",
            "Tasks alive on the tokio runtime",
            Gauge::default(),
        );
        Metrics {
            registry: Mutex::new(registry),
            parts: Mutex::new(HashMap::new()),
            tasks,
            refusals,
        }
    }
}

impl Metrics {
    /// The metrics of the part `P`, registered on the first call (a part calls this when it
    /// is built, so `/metrics` shows them from the start); later calls return the same ones.
    pub(crate) fn part<P: Part>(&self) -> Arc<P> {
        let mut parts = self.parts.lock().unwrap_or_else(PoisonError::into_inner);
        let part = parts.entry(TypeId::of::<P>()).or_insert_with(|| {
            let mut registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::new(P::register(&mut registry))
        });
        Arc::clone(part)
            .downcast::<P>()
            .expect("parts are stored under their own type")
    }

    /// Publishes `snapshot` into the metrics of its part.
    pub(crate) fn publish<S: Snapshot>(&self, snapshot: &S) {
        snapshot.publish(&self.part::<S::Part>());
    }

    /// Counts one refusal for `reason`.
    pub(crate) fn refused(&self, reason: &str) {
        self.refused_by(reason, 1);
    }

    /// Counts `n` refusals for `reason`.
    pub(crate) fn refused_by(&self, reason: &str, n: u64) {
        if n > 0 {
            self.refusals
                .get_or_create(&label("reason", reason))
                .inc_by(n);
        }
    }

    /// Samples the tokio runtime this is called on (from the `/metrics` handler).
    pub(crate) fn sample_runtime(&self) {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            self.tasks.set(runtime.metrics().num_alive_tasks() as i64);
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        encode(&mut out, &registry).expect("writing to a String");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Twice {
        hits: Counter,
    }

    impl Part for Twice {
        fn register(registry: &mut Registry) -> Self {
            Twice {
                hits: registered(registry, "hits", "Hits", Counter::default()),
            }
        }
    }

    #[test]
    fn a_part_is_registered_once_and_shared() {
        let metrics = Metrics::default();
        metrics.part::<Twice>().hits.inc();
        metrics.part::<Twice>().hits.inc();
        let text = metrics.render();
        assert_eq!(text.matches("# HELP tandem_hits Hits").count(), 1, "{text}");
        assert!(text.contains("tandem_hits_total 2"), "{text}");
    }

    #[test]
    fn refusals_count_by_reason_and_skip_zero() {
        let metrics = Metrics::default();
        metrics.refused("a");
        metrics.refused_by("a", 2);
        metrics.refused_by("b", 0);
        let text = metrics.render();
        assert!(
            text.contains("tandem_refusals_total{reason=\"a\"} 3"),
            "{text}"
        );
        assert!(!text.contains("reason=\"b\""), "{text}");
    }
}
