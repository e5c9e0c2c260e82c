//! The running gateway: the composition root. It builds every part from one configuration,
//! hands each its neighbours, and stops them on a signal.
//!
//! Order matters where one part needs another's address or handle: the HTTP listeners are
//! bound first (links sent by SMS name the bound address), then metrics, the store and the
//! hub (which restores the open interactions), routing (which follows every interaction the hub
//! opens) and the SMS side, the API, SIP, and the leg driver between the interactions and
//! SIP/WebRTC. No part spawns its neighbours.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::api::{AppState, Http, Parts};
use crate::chat::files::FileStore;
use crate::chat::store::{Store, StoreError};
use crate::cluster::Cluster;
use crate::config::Config;
use crate::hub::{Hub, HubError};
use crate::metrics::Metrics;
use crate::routing::driver::Routing;
use crate::rtc::RtcService;
use crate::sip::driver::{self, SipHandle};
use crate::sms::mobile::Links;
use crate::sms::provider::Provider;

/// Why the gateway could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A socket could not be bound.
    #[error("cannot listen on {what}: {source}")]
    Bind {
        what: String,
        source: std::io::Error,
    },
    /// The HTTP listeners could not be bound.
    #[error("HTTP: {0}")]
    Http(#[from] crate::api::StartError),
    /// The store could not be opened.
    #[error("HTTP: store: {0}")]
    Store(#[from] StoreError),
    /// The open interactions could not be restored.
    #[error("HTTP: restoring interactions: {0}")]
    Hub(#[from] HubError),
    /// The node could not join its cluster.
    #[error("cluster: {0}")]
    Cluster(#[from] crate::cluster::ClusterError),
}

/// The parts the APIs serve with, over a running hub: routing, which follows every
/// interaction the hub opens from now on (and those it restored); the SMS side, which texts
/// routing's offers to mobile operators and relays the SMS chats that were open; and the
/// files. Tests that serve the API in-process build theirs here too.
pub fn parts(hub: Hub, files: FileStore) -> Parts {
    let routing = Routing::start(hub.clone());
    parts_with(hub, files, routing)
}

/// [`parts`] with the routing given (a cluster node's).
fn parts_with(hub: Hub, files: FileStore, routing: Routing) -> Parts {
    let config = hub.config().clone();
    let links = Links::new(hub.store().clone());
    let sms = Provider::new(&config.sms);
    crate::sms::mobile::start(&routing, config, links.clone(), sms.clone());
    crate::sms::channel::resume(&hub, &sms);
    Parts {
        hub,
        routing,
        links,
        sms,
        files,
    }
}

/// Everything that runs, started from one configuration.
pub struct Gateway {
    pub sip: SipHandle,
    pub http: Http,
    pub rtc: RtcService,
    /// The metrics `/metrics` serves; every part publishes its own here.
    pub metrics: Arc<Metrics>,
    /// The running interactions.
    pub hub: Hub,
    /// Routing of interactions to agents.
    pub routing: Routing,
    /// This node's membership of a cluster (`[cluster]`), if any.
    cluster: Option<Cluster>,
    legs: tokio::task::JoinHandle<()>,
    /// Background work that ends with `shutdown` (the files' retention sweep).
    chores: Vec<tokio::task::JoinHandle<()>>,
    shutdown: CancellationToken,
    teardown_timeout_s: u64,
}

impl Gateway {
    pub async fn start(config: &Config) -> Result<Gateway, ServerError> {
        let shutdown = CancellationToken::new();
        let (rtc, rtc_events) =
            RtcService::start(&config.rtc)
                .await
                .map_err(|source| ServerError::Bind {
                    what: format!("WebRTC {}", config.rtc.listen),
                    source,
                })?;
        let bound = crate::api::bind(config).await?;
        let served = Arc::new(bound.config.clone());
        let metrics = Arc::new(Metrics::default());
        let store = Store::open_as(
            &served.store.url,
            served.store.max_connections,
            metrics.clone(),
            served.cluster.as_ref().map(|c| c.node.clone()),
        )
        .await?;
        let files = FileStore::new(&served.files.dir);
        let (legs_tx, legs_rx) = mpsc::unbounded_channel();
        let hub = Hub::open(
            served.clone(),
            store.clone(),
            metrics.clone(),
            Some(legs_tx),
        )
        .await?;
        // A cluster node restores only what it owns or nobody does, before anything serves.
        let mut cluster = match &served.cluster {
            Some(config) => Some(Cluster::join(config, hub.clone(), store).await?),
            None => None,
        };
        let parts = match &mut cluster {
            Some(cluster) => parts_with(hub.clone(), files.clone(), cluster.routing()),
            None => parts(hub.clone(), files.clone()),
        };
        let routing = parts.routing.clone();
        let mut chores = Vec::new();
        if served.files.retention_days > 0 {
            chores.push(tokio::spawn(crate::chat::retention::run(
                hub.store().clone(),
                files,
                Duration::from_secs(served.files.retention_days * 86_400),
                Duration::from_secs(served.files.sweep_interval_s),
                shutdown.clone(),
            )));
        }
        let http = crate::api::serve(bound, AppState::new(parts));
        let sip = driver::start(
            config,
            metrics.clone(),
            shutdown.clone(),
            Some(rtc.clone()),
            Some(hub.store().clone()),
        )
        .await
        .map_err(|source| ServerError::Bind {
            what: format!("SIP {}", config.sip.listen),
            source,
        })?;
        let legs = crate::legs::start(
            hub.clone(),
            routing.clone(),
            rtc.clone(),
            rtc_events,
            sip.control.clone(),
            legs_rx,
            shutdown.clone(),
        );
        Ok(Gateway {
            sip,
            http,
            rtc,
            metrics,
            hub,
            routing,
            cluster,
            legs,
            chores,
            shutdown,
            teardown_timeout_s: config.chat.teardown_timeout_s,
        })
    }

    /// Stops every part and waits for them. Every open interaction is ended first, in order,
    /// while the leg drivers and SIP still run, so calls get their BYE and nothing dangles
    /// after a restart; that takes at most `chat.teardown_timeout_s` (plus a margin). A node
    /// of a cluster hands its interactions over to the others instead (a rolling restart).
    pub async fn stop(self) {
        let within = Duration::from_secs(self.teardown_timeout_s * 2 + 1);
        match self.cluster {
            Some(cluster) => cluster.hand_over(within).await,
            None => {
                let left = self.hub.close_all(within).await;
                if left > 0 {
                    tracing::warn!(left, "interactions still closing at shutdown");
                }
            }
        }
        self.shutdown.cancel();
        let _ = self.legs.await;
        self.http.stop().await;
        for chore in self.chores {
            let _ = chore.await;
        }
        self.sip.join().await;
    }
}

/// Runs until SIGINT or SIGTERM.
pub async fn run(config: Config) -> Result<(), ServerError> {
    let gateway = Gateway::start(&config).await?;
    announce(&config, &gateway);
    shutdown_signal().await;
    tracing::info!("shutting down");
    gateway.stop().await;
    Ok(())
}

/// Tells a person what is running and where to go next: each interface's address, the
/// services and agents configured, and the pages to open.
fn announce(config: &Config, gateway: &Gateway) {
    use tracing::info;
    let websocket = match &config.sip.websocket {
        Some(ws) if ws.secure => "wss",
        _ => "ws",
    };
    let transports: Vec<String> = [
        ("udp", gateway.sip.udp_addr),
        ("tcp", gateway.sip.tcp_addr),
        ("tls", gateway.sip.tls_addr),
        (websocket, gateway.sip.ws_addr),
    ]
    .into_iter()
    .filter_map(|(name, addr)| addr.map(|a| format!("{name} {a}")))
    .collect();
    info!("SIP: {}", transports.join(", "));
    info!(
        "RTP for SIP calls: udp ports {}-{}",
        config.media.rtp_port_min, config.media.rtp_port_max
    );
    info!(
        "WebRTC: udp {} (ICE-lite, DTLS-SRTP)",
        gateway.rtc.local_addr()
    );
    info!(
        "store: {}",
        crate::config::without_password(&config.store.url)
    );
    if let Some(cluster) = &config.cluster {
        info!(
            "cluster: node {}, NATS {}, lease {}s",
            cluster.node,
            crate::config::without_password(&cluster.nats_url),
            cluster.lease_s
        );
    }
    for service in &config.services {
        let numbers = if service.numbers.is_empty() {
            String::new()
        } else {
            format!(", numbers {}", service.numbers.join(" "))
        };
        info!(
            "service {}: appId {}, department {}, {:?} routing{numbers}",
            service.name,
            service.entries.join(" "),
            service.department,
            service.routing,
        );
    }
    for agent in &config.agents {
        info!(
            "agent {} ({}): departments {}, mobile chat {:?}",
            agent.name,
            agent.display_name(),
            agent.departments.join(" "),
            agent.mobile_mode,
        );
    }
    let softphones: Vec<&str> = config
        .registrar
        .accounts
        .iter()
        .map(|a| a.user.as_str())
        .collect();
    info!(
        "softphone accounts (SIP REGISTER): {}",
        softphones.join(" ")
    );
    let base = match &config.http.public_url {
        Some(url) => url.trim_end_matches('/').to_string(),
        None => format!("http://{}", gateway.http.addr),
    };
    info!("Agent Desktop: {base}/desk/");
    if let Some(entry) = config.services.iter().flat_map(|s| &s.entries).next() {
        info!("customer web chat: {base}/chat/?app={entry}");
    }
    info!("admin: {base}/admin/v1/interactions, metrics: {base}/metrics");
    info!("Tandem is running; SIGINT or SIGTERM stops it");
}

/// Resolves on SIGINT or SIGTERM. SIGHUP, which daemons often take as "reload", is answered
/// in the log: the configuration is read once at start, so a change needs a restart.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut hangup = signal(SignalKind::hangup()).expect("SIGHUP handler");
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return,
            _ = term.recv() => return,
            _ = hangup.recv() => tracing::warn!(
                "SIGHUP: the configuration is not reloaded while running; restart Tandem to apply changes"
            ),
        }
    }
}
