//! Accepting HTTP connections within budgets, so a flood cannot take the process down.
//!
//! Every connection takes a permit from a global budget and one from its source address's
//! budget; over either, the connection is closed at once, before a byte is read. The global
//! budget is capped below the process's descriptor limit with room kept for SIP and media, so
//! a flood of HTTP connections never leaves SIP or RTP without a socket. A request whose
//! headers have not all arrived after `http.header_timeout_s` is dropped (slowloris); upgraded
//! connections (WebSockets) live as long as they are used.
//!
//! The loop serves with hyper directly (axum's `serve` has no header timer) and shuts down
//! gracefully: on stop it accepts nothing more and lets running requests finish.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Extension;
use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tower::Layer;

use crate::metrics::Metrics;

/// The budgets connections are admitted within.
#[derive(Debug, Clone, Copy)]
pub struct Budgets {
    /// Connections open at once over all sources.
    pub total: usize,
    /// Connections open at once from one IP address.
    pub per_source: usize,
    /// Time for a request's headers to arrive.
    pub header_timeout: Duration,
}

/// Open connections per source address; an entry goes when its last connection closes.
#[derive(Default)]
struct Sources {
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// A connection's place in its source's count, given back when dropped.
struct SourceSlot {
    sources: Arc<Sources>,
    ip: IpAddr,
}

impl Sources {
    fn take(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<SourceSlot> {
        let mut open = self.open.lock().expect("sources");
        let n = open.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(SourceSlot {
            sources: self.clone(),
            ip,
        })
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut open = self.sources.open.lock().expect("sources");
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// What a connection holds while it is open.
struct Admitted {
    _total: OwnedSemaphorePermit,
    _source: SourceSlot,
}

/// Serves `app` on `listener` until `stop` is cancelled, then waits (at most `drain`) for
/// requests in flight.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    budgets: Budgets,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    drain: Duration,
) {
    let total = Arc::new(Semaphore::new(budgets.total));
    let sources = Arc::new(Sources::default());
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(budgets.header_timeout);
    // WebSockets over HTTP/2 (RFC 8441), as axum's own server allows.
    builder.http2().enable_connect_protocol();
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors or memory: back off instead of spinning.
                    tracing::warn!("HTTP accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => break,
        };
        let Some(admitted) = admit(&total, &sources, peer, &budgets) else {
            metrics.refused("http_connection_over_budget");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        // Handlers that budget by client (logins) read its address from the request.
        let service = TowerToHyperService::new(Extension(ConnectInfo(peer)).layer(app.clone()));
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _ = connection.await;
            drop(admitted);
        });
    }
    drop(listener);
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("HTTP connections still open at shutdown");
    }
}

fn admit(
    total: &Arc<Semaphore>,
    sources: &Arc<Sources>,
    peer: SocketAddr,
    budgets: &Budgets,
) -> Option<Admitted> {
    let total = total.clone().try_acquire_owned().ok()?;
    let source = sources.take(peer.ip(), budgets.per_source)?;
    Some(Admitted {
        _total: total,
        _source: source,
    })
}

/// The client's IP address, when the request came over a connection we accepted (requests
/// built in-process have none).
pub struct Source(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Source {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>();
        Ok(Source(peer.map(|ConnectInfo(addr)| addr.ip())))
    }
}

/// Raises the process's descriptor limit to its hard maximum and returns it.
pub fn raise_descriptor_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit.rlim_cur = limit.rlim_max;
            }
        }
    }
    limit.rlim_cur
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_over_its_budget_is_refused_and_freed_slots_return() {
        let total = Arc::new(Semaphore::new(3));
        let sources = Arc::new(Sources::default());
        let budgets = Budgets {
            total: 3,
            per_source: 2,
            header_timeout: Duration::from_secs(1),
        };
        let a: SocketAddr = "127.0.0.2:1000".parse().unwrap();
        let b: SocketAddr = "127.0.0.3:1000".parse().unwrap();
        let first = admit(&total, &sources, a, &budgets).unwrap();
        let _second = admit(&total, &sources, a, &budgets).unwrap();
        assert!(admit(&total, &sources, a, &budgets).is_none(), "per source");
        let _other = admit(&total, &sources, b, &budgets).unwrap();
        assert!(admit(&total, &sources, b, &budgets).is_none(), "in total");
        drop(first);
        assert!(admit(&total, &sources, a, &budgets).is_some());
        assert!(sources.open.lock().unwrap().len() <= 2);
    }
}
