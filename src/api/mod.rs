//! HTTP: the customer API (Bright Pattern Mobile/Web Messaging API v1 plus our WebSocket with
//! `seq` resume), the agent API, the admin endpoints and the web pages (`pages.rs`).
//!
//! Layout: [`app`] builds the router over a cloneable [`AppState`]; extractors authenticate
//! ([`auth::Client`]) and validate; every failure is an [`ApiError`], mapped to HTTP in
//! `error.rs` only. Handlers never own interaction state: they send commands to the
//! interaction's task through its [`Handle`] and subscribe to its events.

mod admin;
mod agent;
mod agent_ws;
pub mod auth;
mod availability;
mod cors;
mod customer;
mod error;
mod mobile;
mod pages;
mod sms;
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
use tokio::sync::{Semaphore, oneshot};

pub use error::{ApiError, ErrorCode};

use crate::bridge::hub::{Handle, Hub, HubError, LegActions};
use crate::bridge::{AgentId, InteractionId, Time};
use crate::chat::files::FileStore;
use crate::chat::store::{Store, StoreError};
use crate::config::Config;
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
    /// Agents' login tokens: token → (agent, expiry).
    tokens: Mutex<HashMap<String, (AgentId, Time)>>,
    files: FileStore,
    polls: Mutex<HashMap<InteractionId, PollSlot>>,
    long_polls: Arc<Semaphore>,
    sockets: Arc<Semaphore>,
    /// Links texted to mobile operators.
    links: Links,
    sms: Provider,
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

impl AppState {
    pub fn new(hub: Hub, files: FileStore) -> AppState {
        let http = &hub.config().http;
        let (long_polls, sockets) = (http.max_long_polls, http.max_websockets);
        let routing = Routing::start(hub.clone());
        let links = Links::new(hub.store().clone());
        let sms = Provider::new(&hub.config().sms);
        crate::sms::mobile::start(&routing, hub.config().clone(), links.clone(), sms.clone());
        crate::sms::channel::resume(&hub, &sms);
        AppState {
            shared: Arc::new(Shared {
                routing,
                links,
                sms,
                tokens: Mutex::new(HashMap::new()),
                hub,
                files,
                polls: Mutex::new(HashMap::new()),
                long_polls: Arc::new(Semaphore::new(long_polls)),
                sockets: Arc::new(Semaphore::new(sockets)),
            }),
        }
    }
    pub fn hub(&self) -> &Hub {
        &self.shared.hub
    }
    pub fn routing(&self) -> &Routing {
        &self.shared.routing
    }
    pub fn config(&self) -> &Config {
        self.shared.hub.config()
    }
    pub fn store(&self) -> &Store {
        self.shared.hub.store()
    }
    pub fn metrics(&self) -> &Arc<Metrics> {
        self.shared.hub.metrics()
    }

    /// The chat `id` if it belongs to `device` (a chat is visible only to its device; to anyone
    /// else it does not exist).
    pub(crate) async fn chat_for(
        &self,
        device: &str,
        id: &InteractionId,
    ) -> Result<ChatRef, ApiError> {
        if let Some(handle) = self.hub().get(id) {
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
pub struct ApiJson<T>(pub T);

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
        .layer(DefaultBodyLimit::max(json_limit))
        .route(
            "/files",
            post(agent::upload).layer(DefaultBodyLimit::max(upload_limit)),
        );
    let admin = Router::new()
        .route("/interactions", get(admin::interactions))
        .route("/interactions/{id}/transcript", get(admin::transcript))
        .route(
            "/interactions/{id}/recordings/{file}",
            get(admin::recording),
        )
        .layer(DefaultBodyLimit::max(json_limit));

    // The mobile operator's page and its chat API on the link's token.
    let operator = Router::new()
        .route("/{token}", get(mobile::page))
        .route("/{token}/claim", post(mobile::claim))
        .route("/{token}/events", get(mobile::events))
        .route("/{token}/messages", post(mobile::send_message))
        .route("/{token}/end", post(mobile::end))
        .route("/{token}/transcript", get(mobile::transcript))
        .layer(DefaultBodyLimit::max(json_limit));

    Router::new()
        .merge(pages::routes())
        .nest("/clientweb/api/v1", customer)
        .nest("/m", operator)
        .route(
            "/sms/v1/inbound",
            post(sms::inbound).layer(DefaultBodyLimit::max(json_limit)),
        )
        .nest("/admin/v1", admin)
        .nest("/agent/v1", agent)
        .route("/healthz", get(admin::healthz))
        .route("/readyz", get(admin::readyz))
        .route("/metrics", get(admin::metrics))
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
        state.metrics().api_error(code);
    }
    response
}

/// Why the HTTP side could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("restoring interactions: {0}")]
    Hub(#[from] HubError),
}

/// The running HTTP server.
pub struct Http {
    /// The bound address (useful with port 0).
    pub addr: SocketAddr,
    /// The metrics `/metrics` serves; other parts publish theirs here.
    pub metrics: Arc<Metrics>,
    /// The running interactions.
    pub hub: Hub,
    /// Routing of new interactions to agents (those that phone calls open, too).
    pub routing: Routing,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

/// Binds, opens the store, restores open interactions and serves. Leg actions of the
/// interactions go to `legs`.
pub async fn start(config: &Config, legs: Option<LegActions>) -> Result<Http, StartError> {
    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: config.http.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.http.listen,
        source,
    })?;
    // Links sent by SMS name the address actually bound (port 0 picks one).
    let mut config = config.clone();
    config.http.listen = addr;
    let metrics = Arc::new(Metrics::default());
    let store = Store::open(
        &config.store.url,
        config.store.max_connections,
        metrics.clone(),
    )
    .await?;
    let files = FileStore::new(&config.files.dir);
    let hub = Hub::open(Arc::new(config), store, metrics.clone(), legs).await?;
    let state = AppState::new(hub.clone(), files);
    let routing = state.routing().clone();
    tracing::info!(%addr, "HTTP listening");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let serve = axum::serve(listener, app(state)).with_graceful_shutdown(async {
            let _ = stopped.await;
        });
        if let Err(e) = serve.await {
            tracing::error!("HTTP server: {e}");
        }
    });
    Ok(Http {
        addr,
        metrics,
        hub,
        routing,
        stop,
        task,
    })
}

impl Http {
    /// Stops accepting, lets requests finish for a few seconds, then drops the rest
    /// (long polls and WebSockets would otherwise hold the shutdown).
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let abort = self.task.abort_handle();
        if tokio::time::timeout(Duration::from_secs(3), self.task)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
}
