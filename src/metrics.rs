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
    /// SIP calls with a dialog (a bridged call counts its two legs).
    pub sip_calls: Gauge,
    /// INVITEs not answered yet (ringing, or held for an agent).
    /// SIP transactions alive, by side (`server`, `client`).
    pub sip_transactions: Family<Vec<(String, String)>, Gauge>,
    /// Registered softphone bindings.
    pub sip_registrations: Gauge,
    /// INVITEs refused with 503 over the call limit.
    pub sip_rejected_over_limit: Gauge,
    /// SIP messages dropped unanswered (unparsable) and refused by the wire layer (4xx/5xx).
    pub sip_refused: Family<Vec<(String, String)>, Gauge>,
    /// Open RTP legs (each holds an RTP and an RTCP port).
    pub media_legs: Gauge,
    /// Open WebRTC peers.
    pub webrtc_peers: Gauge,
    /// WebRTC peers whose task panicked (each ended alone).
    pub webrtc_panics: Gauge,
    /// WebRTC datagrams and bridged RTP packets so far, by direction.
    pub webrtc_packets: Family<Vec<(String, String)>, Gauge>,
    /// WebRTC datagrams dropped, by reason (`unknown` source, peer `queue_full`).
    pub webrtc_dropped: Family<Vec<(String, String)>, Gauge>,
    /// Calls from the app in progress (a customer peer and its agent side).
    pub app_calls: Gauge,
    /// RTP/RTCP ports taken from the SIP side's pool.
    pub rtp_ports: Gauge,
    /// SIP calls without a dialog yet, by kind (`invites` received, `outgoing` placed,
    /// `bridges` waiting for a softphone).
    pub sip_pending: Family<Vec<(String, String)>, Gauge>,
    /// Calls the SIP core placed or accepted for the application.
    pub sip_app_calls: Gauge,
    /// Tasks alive on the gateway's tokio runtime (sampled when `/metrics` is read).
    pub tasks: Gauge,
    /// Open agent desktop sockets (tabs).
    pub agent_sockets: Gauge,
    /// What was refused to protect the gateway, by reason (connections over budget, failed
    /// logins and digests, locked accounts …).
    pub refusals: Family<Vec<(String, String)>, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("tandem");
        let open_interactions = Gauge::default();
        let messages = Counter::default();
        let files = Counter::default();
        let api_errors = Family::default();
        let store_latency = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        let sip_calls = Gauge::default();
        let sip_transactions = Family::default();
        let sip_registrations = Gauge::default();
        let sip_rejected_over_limit = Gauge::default();
        let sip_refused = Family::default();
        let media_legs = Gauge::default();
        let webrtc_peers = Gauge::default();
        let webrtc_panics = Gauge::default();
        let webrtc_packets = Family::default();
        let webrtc_dropped = Family::default();
        let app_calls = Gauge::default();
        let rtp_ports = Gauge::default();
        let sip_pending = Family::default();
        let sip_app_calls = Gauge::default();
        let tasks = Gauge::default();
        let agent_sockets = Gauge::default();
        let refusals = Family::default();
        registry.register(
            "refusals",
            "Requests and connections refused to protect the gateway, by reason",
            refusals.clone(),
        );
        registry.register(
            "agent_sockets",
            "Open agent desktop sockets",
            agent_sockets.clone(),
        );
        registry.register(
            "rtp_ports",
            "RTP/RTCP ports taken from the pool",
            rtp_ports.clone(),
        );
        registry.register(
            "sip_pending",
            "SIP calls without a dialog yet, by kind",
            sip_pending.clone(),
        );
        registry.register(
            "sip_app_calls",
            "Calls the SIP core placed or accepted for the application",
            sip_app_calls.clone(),
        );
        registry.register("tasks", "Tasks alive on the tokio runtime", tasks.clone());
        registry.register("webrtc_peers", "Open WebRTC peers", webrtc_peers.clone());
        registry.register(
            "webrtc_panics",
            "WebRTC peers whose task panicked",
            webrtc_panics.clone(),
        );
        registry.register(
            "webrtc_packets",
            "WebRTC datagrams and bridged RTP packets, by direction",
            webrtc_packets.clone(),
        );
        registry.register(
            "webrtc_dropped",
            "WebRTC datagrams and bridged RTP packets dropped, by reason",
            webrtc_dropped.clone(),
        );
        registry.register(
            "app_calls",
            "Calls from the app in progress",
            app_calls.clone(),
        );
        registry.register("sip_calls", "SIP calls with a dialog", sip_calls.clone());
        registry.register(
            "sip_transactions",
            "SIP transactions alive, by side",
            sip_transactions.clone(),
        );
        registry.register(
            "sip_registrations",
            "Registered softphone bindings",
            sip_registrations.clone(),
        );
        registry.register(
            "sip_rejected_over_limit",
            "INVITEs refused with 503 over the call limit",
            sip_rejected_over_limit.clone(),
        );
        registry.register(
            "sip_refused",
            "SIP messages dropped or refused by the wire layer",
            sip_refused.clone(),
        );
        registry.register("media_legs", "Open RTP legs", media_legs.clone());
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
            sip_calls,
            sip_transactions,
            sip_registrations,
            sip_rejected_over_limit,
            sip_refused,
            media_legs,
            webrtc_peers,
            webrtc_panics,
            webrtc_packets,
            webrtc_dropped,
            app_calls,
            rtp_ports,
            sip_pending,
            sip_app_calls,
            tasks,
            agent_sockets,
            refusals,
        }
    }
}

impl Metrics {
    /// Counts one refusal for `reason`.
    pub fn refused(&self, reason: &str) {
        self.refusals
            .get_or_create(&vec![("reason".to_string(), reason.to_string())])
            .inc();
    }

    pub fn api_error(&self, code: &str) {
        self.api_errors
            .get_or_create(&vec![("code".to_string(), code.to_string())])
            .inc();
    }

    /// Publishes the SIP side's counters (called about once a second by the SIP driver).
    pub fn set_sip(
        &self,
        stats: &crate::sip::core::CoreStats,
        dropped: u64,
        rejected: u64,
        legs: usize,
    ) {
        let label = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        self.sip_calls.set(stats.calls as i64);
        self.sip_transactions
            .get_or_create(&label("side", "server"))
            .set(stats.server_transactions as i64);
        self.sip_transactions
            .get_or_create(&label("side", "client"))
            .set(stats.client_transactions as i64);
        self.sip_registrations.set(stats.registrations as i64);
        self.sip_rejected_over_limit
            .set(stats.rejected_over_limit as i64);
        self.sip_refused
            .get_or_create(&label("outcome", "dropped"))
            .set(dropped as i64);
        self.sip_refused
            .get_or_create(&label("outcome", "answered"))
            .set(rejected as i64);
        self.media_legs.set(legs as i64);
    }

    /// Counts what the registrar's guards did since `before` (called with [`Metrics::set_sip`]):
    /// wrong digests, locks imposed, and REGISTERs refused unchecked while locked.
    pub fn add_sip_auth(
        &self,
        now: &crate::sip::registrar::AuthCounts,
        before: &crate::sip::registrar::AuthCounts,
    ) {
        for (reason, n) in [
            ("sip_digest_failed", now.failures - before.failures),
            ("sip_digest_lockout", now.lockouts - before.lockouts),
            (
                "sip_digest_locked",
                now.refused_locked - before.refused_locked,
            ),
        ] {
            if n > 0 {
                self.refusals
                    .get_or_create(&vec![("reason".to_string(), reason.to_string())])
                    .inc_by(n);
            }
        }
    }

    /// Publishes what the SIP core holds besides dialogs (called with [`Metrics::set_sip`]).
    pub fn set_sip_held(&self, held: &crate::sip::core::CoreHeld) {
        let label = |v: &str| vec![("kind".to_string(), v.to_string())];
        self.rtp_ports.set(held.rtp_ports as i64);
        for (kind, n) in [
            ("invites", held.pending_invites),
            ("outgoing", held.outgoing),
            ("bridges", held.bridges),
        ] {
            self.sip_pending.get_or_create(&label(kind)).set(n as i64);
        }
        self.sip_app_calls.set(held.app_calls as i64);
    }

    /// Samples the tokio runtime this is called on (from the `/metrics` handler).
    pub fn sample_runtime(&self) {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            self.tasks.set(runtime.metrics().num_alive_tasks() as i64);
        }
    }

    /// Publishes the WebRTC service's counters (called about once a second).
    pub fn set_rtc(&self, stats: &crate::rtc::RtcStats) {
        let label = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        self.webrtc_peers.set(stats.peers_open as i64);
        self.webrtc_panics.set(stats.peers_panicked as i64);
        for (direction, n) in [
            ("in", stats.packets_in),
            ("out", stats.packets_out),
            ("rtp_bridge_in", stats.rtp_bridge_in),
            ("rtp_bridge_out", stats.rtp_bridge_out),
        ] {
            self.webrtc_packets
                .get_or_create(&label("direction", direction))
                .set(n as i64);
        }
        for (reason, n) in [
            ("unknown", stats.dropped_unknown),
            ("queue_full", stats.dropped_queue_full),
            ("rtp_bridge_in", stats.rtp_bridge_in_dropped),
            ("rtp_bridge_out", stats.rtp_bridge_out_dropped),
        ] {
            self.webrtc_dropped
                .get_or_create(&label("reason", reason))
                .set(n as i64);
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String");
        out
    }
}
