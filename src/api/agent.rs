//! The agent API over HTTP (`/agent/v1/…`): login, logout, files, transcripts, the chats an
//! agent handled with their history and recordings, and the agent's own settings. The live
//! part (offers, chat, presence) is the WebSocket in `agent_ws.rs`.
//!
//! Login checks the argon2 hash from config and hands out an opaque random token that expires
//! after `routing.token_ttl_s`. The token goes in `Authorization: Bearer …` or, for browsers
//! opening a WebSocket, in `?token=…`. The store keeps each token's SHA-256, so a token works
//! on every node of a cluster and after a restart; a node caches the tokens it has seen, and
//! in a cluster looks every [`LOGOUT_SWEEP`] for those another node's logout ended.
//!
//! Wrong passwords are slowed down per agent name and per source address ([`LoginGuards`]):
//! past a few, the name or address is locked for longer and longer and its logins are refused
//! unchecked (`429 login_locked`, `Retry-After`). Logout ends every token of the agent and
//! closes the sockets opened with them.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::query::Query;
use axum::Json;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{FromRequestParts, Multipart, Path, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use super::customer::{file_json, file_response, receive_unsent_file};
use super::listener::Source;
use super::transcript::TranscriptQuery;
use super::{ApiError, ApiJson, AppState};
use crate::bridge::{AgentId, Event, EventKind, InteractionId, Party, Time, random_hex};
use crate::config::SecurityConfig;
use crate::guard::Guard;
use crate::presentation;
use crate::routing::driver::SaveError;
use crate::routing::password;
use crate::routing::settings::MobileSettings;

/// An agent authenticated by a valid token.
#[derive(Debug, Clone)]
pub struct Agent {
    pub id: AgentId,
    pub token: String,
}

/// A login token: whose it is, until when, and the signal that closes its sockets.
pub(crate) struct Login {
    agent: AgentId,
    expires: Time,
    /// The token's SHA-256, as the store knows it.
    sha256: String,
    ended: CancellationToken,
}

impl Login {
    fn new(token: &str, agent: AgentId, expires: Time) -> Login {
        Login {
            agent,
            expires,
            sha256: token_sha256(token),
            ended: CancellationToken::new(),
        }
    }
}

/// How a login token is known in the store.
fn token_sha256(token: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Whether `token` looks like one we hand out (64 hexadecimal digits): anything else is
/// refused without asking the store.
fn token_shaped(token: &str) -> bool {
    token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit())
}

/// How often a node of a cluster checks that the tokens it caches are still stored, so that
/// a logout through another node ends them here too, sockets included.
pub(crate) const LOGOUT_SWEEP: Duration = Duration::from_secs(5);

/// The longest agent name a login may give; longer ones are no agent's.
const MAX_NAME: usize = 128;

/// Failed logins, by agent name and by source address.
pub(crate) struct LoginGuards {
    by_name: Guard<String>,
    by_source: Guard<IpAddr>,
}

impl LoginGuards {
    pub(crate) fn new(security: &SecurityConfig) -> LoginGuards {
        let policy = security.guard_policy();
        LoginGuards {
            by_name: Guard::new(policy),
            by_source: Guard::new(policy),
        }
    }

    /// How long a login for `name` from `source` must wait, if it is locked.
    fn locked(&self, name: &str, source: Option<IpAddr>, now: Instant) -> Option<Duration> {
        let by_name = self.by_name.check(&name.to_string(), now).err();
        let by_source = source.and_then(|ip| self.by_source.check(&ip, now).err());
        by_name.max(by_source)
    }

    fn failed(&mut self, name: &str, source: Option<IpAddr>, now: Instant) {
        self.by_name.failed(&name.to_string(), now);
        if let Some(ip) = source {
            self.by_source.failed(&ip, now);
        }
    }

    fn succeeded(&mut self, name: &str, source: Option<IpAddr>) {
        self.by_name.succeeded(&name.to_string());
        if let Some(ip) = source {
            self.by_source.succeeded(&ip);
        }
    }
}

impl AppState {
    /// The agent holding `token`, if it is known and not expired: cached here, or stored by
    /// this node or another one.
    pub(crate) async fn agent_for_token(&self, token: &str) -> Result<Option<AgentId>, ApiError> {
        if let Some(agent) = self.cached_agent(token) {
            return Ok(Some(agent));
        }
        if !token_shaped(token) {
            return Ok(None);
        }
        let Some((agent, expires)) = self.store().login(&token_sha256(token)).await? else {
            return Ok(None);
        };
        let (agent, expires) = (AgentId(agent), Time(expires));
        // An agent no longer configured holds no token, whatever the store remembers.
        if expires <= Time::now() || self.config().agent(&agent.0).is_none() {
            return Ok(None);
        }
        let mut tokens = self.shared.tokens.lock().expect("tokens");
        let login = tokens
            .entry(token.to_string())
            .or_insert_with(|| Login::new(token, agent, expires));
        Ok(Some(login.agent.clone()))
    }

    /// The agent holding `token` among the tokens this node knows, forgetting expired ones.
    fn cached_agent(&self, token: &str) -> Option<AgentId> {
        let mut tokens = self.shared.tokens.lock().expect("tokens");
        let now = Time::now();
        tokens.retain(|_, login| {
            let live = login.expires > now;
            if !live {
                login.ended.cancel();
            }
            live
        });
        tokens.get(token).map(|login| login.agent.clone())
    }

    /// What ends the sockets opened with `token` (at logout or when the token expires).
    pub(crate) fn token_ended(&self, token: &str) -> CancellationToken {
        let tokens = self.shared.tokens.lock().expect("tokens");
        match tokens.get(token) {
            Some(login) => login.ended.clone(),
            None => {
                let ended = CancellationToken::new();
                ended.cancel();
                ended
            }
        }
    }

    /// The agent's device name on files they upload.
    pub(crate) fn agent_device(agent: &AgentId) -> String {
        format!("agent:{agent}")
    }

    /// Whether the agent took chat `id` (now, or before it ended).
    pub(crate) async fn agent_may_see(
        &self,
        agent: &AgentId,
        id: &InteractionId,
    ) -> Result<(), ApiError> {
        if let Ok(Some(handle)) = self.hub().find(id).await
            && let Ok(summary) = handle.summary().await
            && summary.agent.as_deref() == Some(agent.0.as_str())
        {
            return Ok(());
        }
        let joined = self.store().events(id, 0).await?.iter().any(|e| {
            matches!(&e.kind, EventKind::PartyJoined { party: Party::Agent(a), .. } if a == agent)
        });
        if joined {
            Ok(())
        } else {
            Err(ApiError::ChatNotFound)
        }
    }
}

fn token_of(parts: &Parts) -> Option<String> {
    if let Some(value) = parts.headers.get(header::AUTHORIZATION)
        && let Some(token) = value.to_str().ok()?.strip_prefix("Bearer ")
    {
        return Some(token.trim().to_string());
    }
    parts.uri.query()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == "token").then(|| v.to_string())
    })
}

impl FromRequestParts<AppState> for Agent {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = token_of(parts).ok_or(ApiError::TokenInvalid)?;
        let id = state
            .agent_for_token(&token)
            .await?
            .ok_or(ApiError::TokenInvalid)?;
        Ok(Agent { id, token })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    name: String,
    password: String,
}

/// `POST login {name, password}` → `{token, expires_at, agent, display_name}`.
pub async fn login(
    State(state): State<AppState>,
    Source(source): Source,
    ApiJson(body): ApiJson<LoginBody>,
) -> Result<Json<Value>, ApiError> {
    let config = state.config();
    if body.name.len() > MAX_NAME {
        return Err(ApiError::BadCredentials);
    }
    let locked =
        state
            .shared
            .logins
            .lock()
            .expect("logins")
            .locked(&body.name, source, Instant::now());
    if let Some(wait) = locked {
        state.metrics().refused("login_locked");
        return Err(ApiError::LoginLocked(wait.as_secs_f64().ceil() as u64));
    }
    // An unknown name costs the same as a wrong password.
    let hash = config
        .agent(&body.name)
        .map(|a| a.password_hash.clone())
        .unwrap_or_else(|| DUMMY_HASH.to_string());
    let known = config.agent(&body.name).is_some();
    let password = body.password;
    // Each verification holds argon2's 19 MiB while it runs; logins beyond the bound wait.
    let _turn = VERIFYING
        .acquire()
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let ok = tokio::task::spawn_blocking(move || password::verify(&password, &hash))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    if !(ok && known) {
        tracing::info!(agent = %body.name, ?source, "login refused");
        let mut guards = state.shared.logins.lock().expect("logins");
        guards.failed(&body.name, source, Instant::now());
        state.metrics().refused("login_failed");
        return Err(ApiError::BadCredentials);
    }
    state
        .shared
        .logins
        .lock()
        .expect("logins")
        .succeeded(&body.name, source);
    let agent = AgentId(body.name);
    let token = random_hex(32);
    let now = Time::now();
    let expires = now + Duration::from_secs(config.routing.token_ttl_s);
    let login = Login::new(&token, agent.clone(), expires);
    state
        .store()
        .put_login(&login.sha256, &agent.0, expires.millis(), now.millis())
        .await?;
    state
        .shared
        .tokens
        .lock()
        .expect("tokens")
        .insert(token.clone(), login);
    tracing::info!(%agent, "agent logged in");
    let display_name = state.routing().display_name(&agent).unwrap_or(&agent.0);
    Ok(Json(json!({
        "token": token,
        "expires_at": expires.millis(),
        "agent": agent,
        "display_name": display_name,
    })))
}

/// Password verifications running at once. Argon2 is memory-hard (19 MiB each at the default
/// cost) and CPU-bound, so more at once would only let a burst of logins, right or wrong, grow
/// the gateway's memory without answering any sooner.
const VERIFY_AT_ONCE: usize = 4;
static VERIFYING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(VERIFY_AT_ONCE);

/// A valid argon2 hash, verified for unknown names so that they take as long as known ones.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$ASwulphIuR6xSykcpKYTZA$T+NoHIVGJzSOJyqOd+6ALkaz2cTnWe2fOg1EstjoFHM";

/// `POST logout`: every token of the agent ends, the sockets opened with them close, and the
/// agent is offline (offers withdrawn, chats re-queued).
pub async fn logout(State(state): State<AppState>, agent: Agent) -> Result<Json<Value>, ApiError> {
    state.store().end_logins(&agent.id.0).await?;
    state
        .shared
        .tokens
        .lock()
        .expect("tokens")
        .retain(|_, login| {
            let theirs = login.agent == agent.id;
            if theirs {
                login.ended.cancel();
            }
            !theirs
        });
    state
        .routing()
        .set_presence(&agent.id, crate::routing::router::Presence::Offline)
        .await?;
    Ok(Json(json!({"state": "offline"})))
}

/// Ends the tokens this node caches that are no longer stored (another node's logout ended
/// them), and closes their sockets; every [`LOGOUT_SWEEP`] until the API is gone.
pub(crate) async fn follow_logouts(shared: std::sync::Weak<super::Shared>) {
    let mut tick = tokio::time::interval(LOGOUT_SWEEP);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let cached: Vec<String> = {
            let tokens = shared.tokens.lock().expect("tokens");
            tokens.values().map(|login| login.sha256.clone()).collect()
        };
        if cached.is_empty() {
            continue;
        }
        let stored = match shared.hub.store().stored_logins(&cached).await {
            Ok(stored) => stored,
            Err(e) => {
                tracing::debug!("cannot check the login tokens: {e}");
                continue;
            }
        };
        shared.tokens.lock().expect("tokens").retain(|_, login| {
            let live = stored.contains(&login.sha256);
            if !live {
                login.ended.cancel();
            }
            live
        });
    }
}

/// `POST files` (multipart): a file the agent will send into a chat with `send_file`.
pub async fn upload(
    State(state): State<AppState>,
    agent: Agent,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Json<Value>, ApiError> {
    let multipart = multipart.map_err(|e| ApiError::BadUpload(e.body_text()))?;
    let files = &state.config().files;
    let (max, allowed) = (files.max_bytes, files.allowed_types.clone());
    let device = AppState::agent_device(&agent.id);
    let record = receive_unsent_file(&state, multipart, &device, "", max, &allowed).await?;
    Ok(Json(file_json(&record)))
}

/// `GET chats/{id}/files/{file_id}`: a file of a chat the agent took.
pub async fn download(
    State(state): State<AppState>,
    agent: Agent,
    Path((id, file_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let id = InteractionId(id);
    state.agent_may_see(&agent.id, &id).await?;
    file_response(&state, &id, &file_id).await
}

/// `GET chats/{id}/transcript?format=html|text|json`: the transcript of a chat the agent took.
pub async fn transcript(
    State(state): State<AppState>,
    agent: Agent,
    Path(id): Path<String>,
    Query(query): Query<TranscriptQuery>,
) -> Result<Response, ApiError> {
    let (id, events) = events_of(&state, &agent, id).await?;
    let title = || format!("Interaction {id}");
    query.answer("html", events, title, |events| json!({"events": events}))
}

/// The events so far of the chat `id`, if the agent may see it.
async fn events_of(
    state: &AppState,
    agent: &Agent,
    id: String,
) -> Result<(InteractionId, Vec<Event>), ApiError> {
    let id = InteractionId(id);
    state.agent_may_see(&agent.id, &id).await?;
    let events = state.store().events(&id, 0).await?;
    Ok((id, events))
}

/// `GET settings` → `{mobile_settings: {mobile, mobile_mode, mobile_schedule}}`.
pub async fn settings(
    State(state): State<AppState>,
    agent: Agent,
) -> Result<Json<Value>, ApiError> {
    let settings = state
        .routing()
        .mobile_settings(&agent.id)
        .ok_or(ApiError::TokenInvalid)?;
    Ok(Json(json!({"mobile_settings": settings})))
}

/// `PUT settings {mobile_settings: {mobile, mobile_mode, mobile_schedule}}`: validated
/// (`invalid_number`, `number_required`, `invalid_hours`, `invalid_time_zone`), stored, and in
/// force at once; every tab of the agent gets a `settings` event.
pub async fn save_settings(
    State(state): State<AppState>,
    agent: Agent,
    ApiJson(body): ApiJson<SettingsBody>,
) -> Result<Json<Value>, ApiError> {
    let saved = state
        .routing()
        .set_mobile_settings(&agent.id, body.mobile_settings)
        .await
        .map_err(|e| match e {
            SaveError::Invalid(e) => ApiError::Settings(e),
            SaveError::Routing(e) => ApiError::Routing(e),
            SaveError::Store(e) => ApiError::Store(e),
        })?;
    tracing::info!(agent = %agent.id, mode = ?saved.mobile_mode, "mobile chat settings changed");
    Ok(Json(json!({"mobile_settings": saved})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsBody {
    mobile_settings: MobileSettings,
}

/// The most chats `GET chats` lists.
const MAX_LISTED_CHATS: i64 = 200;

#[derive(Deserialize)]
pub struct ChatsQuery {
    limit: Option<i64>,
}

/// `GET chats?limit=n`: the chats the agent handled, newest first (at most 200).
pub async fn chats(
    State(state): State<AppState>,
    agent: Agent,
    Query(query): Query<ChatsQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = query.limit.unwrap_or(50).clamp(1, MAX_LISTED_CHATS);
    let records = state.store().agent_interactions(&agent.id.0, limit).await?;
    let chats: Vec<Value> = records
        .iter()
        .map(|r| {
            json!({"chat_id": r.id, "service": r.service, "phase": r.phase,
                   "created_at": r.created_at, "closed_at": r.closed_at,
                   "transcript": format!("/agent/v1/chats/{}/transcript", r.id)})
        })
        .collect();
    Ok(Json(json!({"chats": chats})))
}

/// `GET chats/{id}/history`: the chat so far as the desk shows it live (the same events as
/// the socket's, each with its `seq`), for a desk that reloads or opens a past chat.
pub async fn history(
    State(state): State<AppState>,
    agent: Agent,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (id, events) = events_of(&state, &agent, id).await?;
    Ok(Json(
        json!({"events": presentation::agent::history(&id, &events)}),
    ))
}

/// `GET chats/{id}/recordings/{file}`: a call recording of a chat the agent took, as the admin
/// API serves it (only a plain `.wav` name the transcript lists).
pub async fn recording(
    State(state): State<AppState>,
    agent: Agent,
    Path((id, file)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    state
        .agent_may_see(&agent.id, &InteractionId(id.clone()))
        .await?;
    super::admin::recording(State(state), Path((id, file))).await
}
