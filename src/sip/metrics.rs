//! The SIP side's metrics: dialogs, transactions, bindings, what the wire layer refused and
//! what the core holds besides dialogs. The SIP driver publishes them about once a second.

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::metrics::{Labels, Metrics, Part, Snapshot, label};
use crate::sip::core::{CoreHeld, CoreStats};
use crate::sip::driver::TransportCounters;
use crate::sip::registrar::AuthCounts;

/// The SIP side's gauges.
pub struct SipMetrics {
    /// SIP calls with a dialog (a bridged call counts its two legs).
    calls: Gauge,
    /// SIP transactions alive, by side (`server`, `client`).
    transactions: Family<Labels, Gauge>,
    /// Registered softphone bindings.
    registrations: Gauge,
    /// INVITEs refused with 503 over the call limit.
    rejected_over_limit: Gauge,
    /// SIP messages dropped unanswered (unparsable) and refused by the wire layer (4xx/5xx).
    refused: Family<Labels, Gauge>,
    /// RTP/RTCP ports taken from the SIP side's pool.
    rtp_ports: Gauge,
    /// SIP calls without a dialog yet, by kind (`invites` received, `outgoing` placed,
    /// `bridges` waiting for a softphone).
    pending: Family<Labels, Gauge>,
    /// Calls the SIP core placed or accepted for the application.
    app_calls: Gauge,
}

impl Part for SipMetrics {
    fn register(registry: &mut Registry) -> Self {
        let metrics = SipMetrics {
            calls: Gauge::default(),
            transactions: Family::default(),
            registrations: Gauge::default(),
            rejected_over_limit: Gauge::default(),
            refused: Family::default(),
            rtp_ports: Gauge::default(),
            pending: Family::default(),
            app_calls: Gauge::default(),
        };
        registry.register(
            "rtp_ports",
            "RTP/RTCP ports taken from the pool",
            metrics.rtp_ports.clone(),
        );
        registry.register(
            "sip_pending",
            "SIP calls without a dialog yet, by kind",
            metrics.pending.clone(),
        );
        registry.register(
            "sip_app_calls",
            "Calls the SIP core placed or accepted for the application",
            metrics.app_calls.clone(),
        );
        registry.register(
            "sip_calls",
            "SIP calls with a dialog",
            metrics.calls.clone(),
        );
        registry.register(
            "sip_transactions",
            "SIP transactions alive, by side",
            metrics.transactions.clone(),
        );
        registry.register(
            "sip_registrations",
            "Registered softphone bindings",
            metrics.registrations.clone(),
        );
        registry.register(
            "sip_rejected_over_limit",
            "INVITEs refused with 503 over the call limit",
            metrics.rejected_over_limit.clone(),
        );
        registry.register(
            "sip_refused",
            "SIP messages dropped or refused by the wire layer",
            metrics.refused.clone(),
        );
        metrics
    }
}

impl Snapshot for CoreStats {
    type Part = SipMetrics;
    fn publish(&self, to: &SipMetrics) {
        to.calls.set(self.calls as i64);
        for (side, n) in [
            ("server", self.server_transactions),
            ("client", self.client_transactions),
        ] {
            to.transactions
                .get_or_create(&label("side", side))
                .set(n as i64);
        }
        to.registrations.set(self.registrations as i64);
        to.rejected_over_limit.set(self.rejected_over_limit as i64);
    }
}

impl Snapshot for CoreHeld {
    type Part = SipMetrics;
    fn publish(&self, to: &SipMetrics) {
        to.rtp_ports.set(self.rtp_ports as i64);
        for (kind, n) in [
            ("invites", self.pending_invites),
            ("outgoing", self.outgoing),
            ("bridges", self.bridges),
        ] {
            to.pending.get_or_create(&label("kind", kind)).set(n as i64);
        }
        to.app_calls.set(self.app_calls as i64);
    }
}

impl Snapshot for TransportCounters {
    type Part = SipMetrics;
    fn publish(&self, to: &SipMetrics) {
        use std::sync::atomic::Ordering::Relaxed;
        for (outcome, n) in [
            ("dropped", self.dropped.load(Relaxed)),
            ("answered", self.rejected.load(Relaxed)),
        ] {
            to.refused
                .get_or_create(&label("outcome", outcome))
                .set(n as i64);
        }
    }
}

/// Counts what the registrar's guards did since `before` as refusals: wrong digests, locks
/// imposed, and REGISTERs refused unchecked while locked.
pub fn add_auth(metrics: &Metrics, now: &AuthCounts, before: &AuthCounts) {
    for (reason, n) in [
        ("sip_digest_failed", now.failures - before.failures),
        ("sip_digest_lockout", now.lockouts - before.lockouts),
        (
            "sip_digest_locked",
            now.refused_locked - before.refused_locked,
        ),
    ] {
        metrics.refused_by(reason, n);
    }
}
