//! The SIP side's metrics: dialogs, transactions, bindings, what the wire layer refused and
//! what the core holds besides dialogs. The SIP driver publishes them about once a second.

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::metrics::{Labels, Metrics, Part, Snapshot, registered, set_each};
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
    fn register(r: &mut Registry) -> Self {
        SipMetrics {
            rtp_ports: registered(
                r,
                "rtp_ports",
                "RTP/RTCP ports taken from the pool",
                Gauge::default(),
            ),
            pending: registered(
                r,
                "sip_pending",
                "SIP calls without a dialog yet, by kind",
                Family::default(),
            ),
            app_calls: registered(
                r,
                "sip_app_calls",
                "Calls the SIP core placed or accepted for the application",
                Gauge::default(),
            ),
            calls: registered(r, "sip_calls", "SIP calls with a dialog", Gauge::default()),
            transactions: registered(
                r,
                "sip_transactions",
                "SIP transactions alive, by side",
                Family::default(),
            ),
            registrations: registered(
                r,
                "sip_registrations",
                "Registered softphone bindings",
                Gauge::default(),
            ),
            rejected_over_limit: registered(
                r,
                "sip_rejected_over_limit",
                "INVITEs refused with 503 over the call limit",
                Gauge::default(),
            ),
            refused: registered(
                r,
                "sip_refused",
                "SIP messages dropped or refused by the wire layer",
                Family::default(),
            ),
        }
    }
}

impl Snapshot for CoreStats {
    type Part = SipMetrics;
    fn publish(&self, to: &SipMetrics) {
        to.calls.set(self.calls as i64);
        let sides = [
            ("server", self.server_transactions as u64),
            ("client", self.client_transactions as u64),
        ];
        set_each(&to.transactions, "side", sides);
        to.registrations.set(self.registrations as i64);
        to.rejected_over_limit.set(self.rejected_over_limit as i64);
    }
}

impl Snapshot for CoreHeld {
    type Part = SipMetrics;
    fn publish(&self, to: &SipMetrics) {
        to.rtp_ports.set(self.rtp_ports as i64);
        let kinds = [
            ("invites", self.pending_invites as u64),
            ("outgoing", self.outgoing as u64),
            ("bridges", self.bridges as u64),
        ];
        set_each(&to.pending, "kind", kinds);
        to.app_calls.set(self.app_calls as i64);
    }
}

impl Snapshot for TransportCounters {
    type Part = SipMetrics;
    fn publish(&self, to: &SipMetrics) {
        use std::sync::atomic::Ordering::Relaxed;
        let outcomes = [
            ("dropped", self.dropped.load(Relaxed)),
            ("answered", self.rejected.load(Relaxed)),
        ];
        set_each(&to.refused, "outcome", outcomes);
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
