//! HTTP: the customer API (Bright Pattern Mobile/Web Messaging API v1 plus our WebSocket with
//! `seq` resume), the agent API, the admin endpoints and the web pages (`pages.rs`).
//!
//! Layout: [`app`] builds the router over a cloneable [`AppState`]; extractors authenticate
//! ([`auth::Client`]) and validate; every failure is an [`ApiError`], mapped to HTTP in
//! `error.rs` only. Handlers never own interaction state: they send commands to the
//! interaction's task through its [`Handle`] and subscribe to its events.
//!
//! The API builds none of the parts it serves with: the composition root ([`crate::server`])
//! binds its listeners with [`bind`], builds the hub, routing and the SMS side, and hands them
//! over as [`Parts`] to [`serve`]. What a client is shown of an event is
//! [`crate::presentation`]'s; both WebSockets run over one adapter (`socket.rs`).

mod admin;
mod agent;
mod agent_ws;
mod auth;
mod availability;
mod budget;
mod cors;
pub(crate) mod customer;
mod error;
mod listener;
mod metrics;
mod mobile;
mod pages;
mod query;
mod sms;
mod socket;
mod transcript;
pub mod wire;
mod ws;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

pub(crate) use error::{ApiError, ErrorCode};

use crate::bridge::InteractionId;
use crate::chat::files::FileStore;
use crate::chat::store::Store;
use crate::config::Config;
use crate::hub::{Handle, Hub};
use crate::metrics::Metrics;
use crate::routing::driver::Routing;
use crate::sms::mobile::Links;
use crate::sms::provider::Provider;

/// Per-chat long-poll bookkeeping: one poll at a time, and where the last one stopped.
#[derive(Default)]
struct PollSlot {
    busy: bool,
    cursor: u64,
    /// The live stream the last poll read, kept between polls: ephemeral events (typing, the
    /// gateway's call offers) are never stored, so one emitted while no poll was waiting
    /// would otherwise be lost. Bounded by the interaction's broadcast capacity.
    live: Option<tokio::sync::broadcast::Receiver<Arc<crate::bridge::Event>>>,
}

struct Shared {
    hub: Hub,
    routing: Routing,
    /// Agents' login tokens.
    tokens: Mutex<HashMap<String, agent::Login>>,
    /// Failed agent logins, by agent and by source address.
    logins: Mutex<agent::LoginGuards>,
    /// Chats opened, by source address.
    creates: Mutex<crate::guard::Rate<std::net::IpAddr>>,
    files: FileStore,
    polls: Mutex<HashMap<InteractionId, PollSlot>>,
    long_polls: Arc<Semaphore>,
    sockets: Arc<Semaphore>,
    /// Agents' sockets: never taken by customers.
    agent_sockets: Arc<Semaphore>,
    /// Customers' sockets and polls per chat and per device.
    budgets: Arc<budget::Budgets>,
    /// Links texted to mobile operators.
    links: Links,
    sms: Provider,
    /// The API's own metrics, registered when the state is built.
    metrics: Arc<metrics::ApiMetrics>,
}

/// The router's state: a few `Arc`s, cheap to clone.
#[derive(Clone)]
pub struct AppState {
    shared: Arc<Shared>,
}

/// A chat the client may see: running, or over and only in the store.
pub(crate) enum ChatRef {
    Live(Handle),
    Stored,
}

/// What the HTTP API serves with: the running parts it is handed by the composition root
/// ([`crate::server`]). The API builds none of them and spawns none of their tasks.
pub struct Parts {
    pub hub: Hub,
    /// Routing, already following every interaction the hub opens.
    pub routing: Routing,
    /// Links texted to mobile operators.
    pub links: Links,
    pub sms: Provider,
    pub files: FileStore,
}

impl AppState {
    pub fn new(parts: Parts) -> AppState {
        let Parts {
            hub,
            routing,
            links,
            sms,
            files,
        } = parts;
        let http = &hub.config().http;
        let (long_polls, sockets) = (http.max_long_polls, http.max_websockets);
        let agent_sockets = http.max_agent_websockets;
        let budgets = budget::Budgets::new(
            http.max_connections_per_chat,
            http.max_connections_per_device,
        );
        let metrics = hub.metrics().part::<metrics::ApiMetrics>();
        let clustered = hub.config().cluster.is_some();
        let state = AppState {
            shared: Arc::new(Shared {
                metrics,
                routing,
                links,
                sms,
                tokens: Mutex::new(HashMap::new()),
                logins: Mutex::new(agent::LoginGuards::new(&hub.config().security)),
                creates: Mutex::new(crate::guard::Rate::new(
                    hub.config().chat.creates_per_minute_per_source,
                    hub.config().chat.creates_burst_per_source,
                    100_000,
                )),
                hub,
                files,
                polls: Mutex::new(HashMap::new()),
                long_polls: Arc::new(Semaphore::new(long_polls)),
                sockets: Arc::new(Semaphore::new(sockets)),
                agent_sockets: Arc::new(Semaphore::new(agent_sockets)),
                budgets,
            }),
        };
        if clustered {
            tokio::spawn(agent::follow_logouts(Arc::downgrade(&state.shared)));
        }
        state
    }
    pub fn hub(&self) -> &Hub {
        &self.shared.hub
    }
    pub fn routing(&self) -> &Routing {
        &self.shared.routing
    }
    pub(crate) fn config(&self) -> &Config {
        self.shared.hub.config()
    }
    pub(crate) fn store(&self) -> &Store {
        self.shared.hub.store()
    }
    pub(crate) fn metrics(&self) -> &Arc<Metrics> {
        self.shared.hub.metrics()
    }
    pub(crate) fn api_metrics(&self) -> &metrics::ApiMetrics {
        &self.shared.metrics
    }

    /// The chat `id` if it belongs to `device` (a chat is visible only to its device; to anyone
    /// else it does not exist).
    pub(crate) async fn chat_for(
        &self,
        device: &str,
        id: &InteractionId,
    ) -> Result<ChatRef, ApiError> {
        if let Some(handle) = self.hub().find(id).await? {
            return if handle.device == device {
                Ok(ChatRef::Live(handle))
            } else {
                Err(ApiError::ChatNotFound)
            };
        }
        match self.store().interaction(id).await? {
            Some(record) if record.device == device => Ok(ChatRef::Stored),
            _ => Err(ApiError::ChatNotFound),
        }
    }
}

/// `axum::Json` with its rejections turned into [`ApiError`]s.
pub(crate) struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let axum::Json(value) = axum::Json::<T>::from_request(req, state).await?;
        Ok(ApiJson(value))
    }
}

/// The whole HTTP surface.
pub fn app(state: AppState) -> Router {
    let config = state.config();
    let json_limit = config.http.max_body_bytes;
    let largest_file = config
        .services
        .iter()
        .map(|s| s.max_file_bytes(&config.files))
        .chain([config.files.max_bytes])
        .max()
        .unwrap_or(0) as usize;
    // Multipart framing around the largest file.
    let upload_limit = largest_file + 64 * 1024;

    let customer = Router::new()
        .route("/availability", get(customer::availability))
        .route("/chats", post(customer::create_chat))
        .route(
            "/chats/{id}/events",
            get(customer::poll_events).post(customer::post_events),
        )
        .route("/chats/{id}/history", get(customer::history))
        .route("/chats/{id}/ws", get(ws::upgrade))
        .route("/chats/{id}/ws_token", post(ws::ticket))
        .route("/chats/{id}/files/{file_id}", get(customer::download))
        .layer(DefaultBodyLimit::max(json_limit))
        .route(
            "/files",
            post(customer::upload).layer(DefaultBodyLimit::max(upload_limit)),
        );
    let agent = Router::new()
        .route("/login", post(agent::login))
        .route("/logout", post(agent::logout))
        .route("/ws", get(agent_ws::upgrade))
        .route("/chats/{id}/transcript", get(agent::transcript))
        .route("/chats/{id}/files/{file_id}", get(agent::download))
        .route("/settings", get(agent::settings).put(agent::save_settings))
        .route("/chats", get(agent::chats))
        .route("/chats/{id}/history", get(agent::history))
        .route("/chats/{id}/recordings/{file}", get(agent::recording))
        .layer(DefaultBodyLimit::max(json_limit))
        .route(
            "/files",
            post(agent::upload).layer(DefaultBodyLimit::max(upload_limit)),
        );
    // The mobile operator's page and its chat API on the link's token.
    let operator = Router::new()
        .route("/{token}", get(mobile::page))
        .route("/{token}/claim", post(mobile::claim))
        .route("/{token}/move", post(mobile::move_here))
        .route("/{token}/events", get(mobile::events))
        .route("/{token}/messages", post(mobile::send_message))
        .route("/{token}/call", post(mobile::call))
        .route("/{token}/release", post(mobile::release))
        .route("/{token}/accept_call", post(mobile::accept_call))
        .route("/{token}/decline_call", post(mobile::decline_call))
        .route("/{token}/end", post(mobile::end))
        .route("/{token}/files/{file_id}", get(mobile::file))
        .route("/{token}/transcript", get(mobile::transcript))
        .layer(DefaultBodyLimit::max(json_limit));

    let router = Router::new()
        .merge(pages::routes())
        .nest("/clientweb/api/v1", customer)
        .nest("/m", operator)
        .route(
            "/sms/v1/inbound",
            post(sms::inbound).layer(DefaultBodyLimit::max(json_limit)),
        )
        .nest("/agent/v1", agent)
        .route("/healthz", get(admin::healthz))
        .route("/readyz", get(admin::readyz));
    // Admin lives here unless it has a listener of its own.
    let router = if state.config().admin.listen.is_none() {
        router.merge(admin_routes(&state))
    } else {
        router
    };
    finish(router, state)
}

/// Admin and `/metrics` alone, for their own listener (`admin.listen`).
pub fn admin_app(state: AppState) -> Router {
    let router = admin_routes(&state)
        .route("/healthz", get(admin::healthz))
        .route("/readyz", get(admin::readyz));
    finish(router, state)
}

/// The operators' routes, each behind its credentials.
fn admin_routes(state: &AppState) -> Router<AppState> {
    let json_limit = state.config().http.max_body_bytes;
    let admin = Router::new()
        .route("/interactions", get(admin::interactions))
        .route("/interactions/{id}/transcript", get(admin::transcript))
        .route(
            "/interactions/{id}/recordings/{file}",
            get(admin::recording),
        )
        .route_layer(middleware::from_fn_with_state(
            (state.clone(), admin::Scope::Everything),
            admin::require,
        ))
        .layer(DefaultBodyLimit::max(json_limit));
    Router::new().nest("/admin/v1", admin).route(
        "/metrics",
        get(admin::metrics).route_layer(middleware::from_fn_with_state(
            (state.clone(), admin::Scope::Metrics),
            admin::require,
        )),
    )
}

/// What every router ends with: JSON errors for unknown routes and methods, and the error
/// counter.
fn finish(router: Router<AppState>, state: AppState) -> Router {
    router
        .fallback(|| async { ApiError::NoSuchEndpoint })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(middleware::from_fn_with_state(state.clone(), cors::layer))
        .layer(middleware::from_fn_with_state(state.clone(), count_errors))
        .with_state(state)
}

/// Counts error responses by code for `/metrics`.
async fn count_errors(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    if let Some(ErrorCode(code)) = response.extensions().get::<ErrorCode>() {
        state.api_metrics().error(code);
    }
    response
}

/// Why the HTTP side could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The running HTTP server.
pub struct Http {
    /// The bound address (useful with port 0).
    pub addr: SocketAddr,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// The HTTP listeners, bound before the other parts start.
pub struct Bound {
    /// The configuration with the addresses actually bound: links sent by SMS name them
    /// (port 0 picks one).
    pub config: Config,
    listener: tokio::net::TcpListener,
    admin: Option<(tokio::net::TcpListener, SocketAddr)>,
    budgets: listener::Budgets,
}

/// Binds the HTTP listener (and admin's own, if configured).
pub async fn bind(config: &Config) -> Result<Bound, StartError> {
    let (listener, addr) = bind_one(config.http.listen).await?;
    let admin = match config.admin.listen {
        Some(at) => Some(bind_one(at).await?),
        None => None,
    };
    let mut config = config.clone();
    config.http.listen = addr;
    if let Some((_, at)) = &admin {
        config.admin.listen = Some(*at);
    }
    warn_if_admin_is_refused(&config);
    // Before the store and the other parts open their descriptors.
    let budgets = budgets(&config);
    Ok(Bound {
        config,
        listener,
        admin,
        budgets,
    })
}

/// Serves the API on the bound listeners with the parts in `state`, as the gateway does: within
/// the connection budgets, with Nagle's algorithm off.
pub fn serve(bound: Bound, state: AppState) -> Http {
    let Bound {
        config,
        listener,
        admin,
        budgets,
    } = bound;
    let addr = config.http.listen;
    let metrics = state.metrics().clone();
    tracing::info!(%addr, "HTTP listening");
    let stop = CancellationToken::new();
    let mut tasks = vec![tokio::spawn(listener::serve(
        listener,
        app(state.clone()),
        budgets,
        metrics.clone(),
        stop.clone(),
        DRAIN,
    ))];
    if let Some((admin_listener, at)) = admin {
        tracing::info!(addr = %at, "admin listening");
        tasks.push(tokio::spawn(listener::serve(
            admin_listener,
            admin_app(state),
            budgets,
            metrics,
            stop.clone(),
            DRAIN,
        )));
    }
    Http { addr, stop, tasks }
}

/// How long requests in flight may finish at shutdown; long polls and WebSockets would
/// otherwise hold it.
const DRAIN: Duration = Duration::from_secs(3);

/// Descriptors kept for everything but HTTP, beyond what SIP and media are configured to hold.
const DESCRIPTOR_MARGIN: u64 = 256;

async fn bind_one(at: SocketAddr) -> Result<(tokio::net::TcpListener, SocketAddr), StartError> {
    let bind_error = |source| StartError::Bind { addr: at, source };
    let listener = tokio::net::TcpListener::bind(at)
        .await
        .map_err(bind_error)?;
    let addr = listener.local_addr().map_err(bind_error)?;
    Ok((listener, addr))
}

/// The connection budgets, the total capped below the descriptor limit so that a flood of
/// HTTP connections leaves SIP's connections, the RTP ports and the store their descriptors.
fn budgets(config: &Config) -> listener::Budgets {
    let descriptors = listener::raise_descriptor_limit();
    let media = &config.media;
    let reserved = u64::from(media.rtp_port_max - media.rtp_port_min)
        + 1
        + config.sip.max_tcp_connections as u64
        + u64::from(config.store.max_connections)
        + DESCRIPTOR_MARGIN;
    let room = descriptors.saturating_sub(reserved).max(64) as usize;
    let total = config.http.max_connections.min(room);
    if total < config.http.max_connections {
        tracing::warn!(
            descriptors,
            reserved,
            "http.max_connections lowered to {total}: the process may open {descriptors} descriptors"
        );
    }
    listener::Budgets {
        total,
        per_source: config.http.max_connections_per_source,
        header_timeout: Duration::from_secs(config.http.header_timeout_s),
    }
}

/// Says at start when admin will refuse everyone: a public listener without a token.
fn warn_if_admin_is_refused(config: &Config) {
    let admin = &config.admin;
    let at = admin.listen.unwrap_or(config.http.listen);
    if admin.token.is_none() && admin.metrics_token.is_none() && !at.ip().is_loopback() {
        tracing::warn!(
            %at,
            "admin endpoints and /metrics are served on a public address without credentials: \
             they refuse every request until admin.token is set"
        );
    }
}

impl Http {
    /// Stops accepting, lets requests finish for a few seconds, then drops the rest.
    pub async fn stop(self) {
        self.stop.cancel();
        for task in self.tasks {
            let abort = task.abort_handle();
            if tokio::time::timeout(DRAIN + Duration::from_secs(1), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}
