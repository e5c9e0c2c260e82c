//! The running gateway: starts every part from one configuration and stops them on a signal.

use crate::config::Config;

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

/// Runs until SIGINT or SIGTERM.
pub async fn run(config: Config) -> Result<(), ServerError> {
    let http = crate::api::start(&config).await?;
    shutdown_signal().await;
    tracing::info!("shutting down");
    http.stop().await;
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
