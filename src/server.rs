//! The running gateway: starts every part from one configuration and stops them on a signal.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::api::Http;
use crate::config::Config;
use crate::rtc::RtcService;
use crate::sip::driver::{self, SipHandle};

/// Why the gateway could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A socket could not be bound.
    #[error("cannot listen on {what}: {source}")]
    Bind {
        what: String,
        source: std::io::Error,
    },
    /// The HTTP side (store, interactions, listener) could not start.
    #[error("HTTP: {0}")]
    Http(#[from] crate::api::StartError),
}

/// Everything that runs, started from one configuration.
pub struct Gateway {
    pub sip: SipHandle,
    pub http: Http,
    pub rtc: RtcService,
    legs: tokio::task::JoinHandle<()>,
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
        let (legs_tx, legs_rx) = mpsc::unbounded_channel();
        let http = crate::api::start(config, Some(legs_tx)).await?;
        let sip = driver::start(
            config,
            http.metrics.clone(),
            shutdown.clone(),
            Some(rtc.clone()),
        )
        .await
        .map_err(|source| ServerError::Bind {
            what: format!("SIP {}", config.sip.listen),
            source,
        })?;
        let legs = crate::legs::start(
            http.hub.clone(),
            http.routing.clone(),
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
            legs,
            shutdown,
            teardown_timeout_s: config.chat.teardown_timeout_s,
        })
    }

    /// Stops every part and waits for them. Every open interaction is ended first, in order,
    /// while the leg drivers and SIP still run, so calls get their BYE and nothing dangles
    /// after a restart; that takes at most `chat.teardown_timeout_s` (plus a margin).
    pub async fn stop(self) {
        let within = Duration::from_secs(self.teardown_timeout_s * 2 + 1);
        let left = self.http.hub.close_all(within).await;
        if left > 0 {
            tracing::warn!(left, "interactions still closing at shutdown");
        }
        self.shutdown.cancel();
        let _ = self.legs.await;
        self.http.stop().await;
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
    info!("store: {}", config.store.url);
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
