//! The mobile operator's chat on the link of an SMS offer (`/m/{token}`).
//!
//! `GET /m/{token}` is the page: a shell embedded from `web/mobile/index.html` whose ES modules
//! are served with the other web applications under `/mobile/` (`pages.rs`). The shell is
//! served here because it lives at the link's own address, which must never be cached or sent
//! as a referrer; the modules are the same for every link and are cached by their `ETag`.
//!
//! The page `POST`s `claim`, which takes the chat for the operator, or answers
//! `already_taken` (someone else has it), `claimed_elsewhere` (this operator has it, on
//! another device), or `link_expired`. `POST move` then takes a chat claimed elsewhere over to
//! this device. The `session` key of a claim or a move authorises, as
//! `Authorization: Bearer …` (or `?session=…`):
//! - `GET events?after=SEQ` — a long poll: the chat's events after `SEQ` as the page shows
//!   them (the chat's opening with the customer and the context, messages, files, context
//!   updates, calls and the customer's requests, `ended` with the transcript link), or none at
//!   the timeout; from `after=0` it is the whole chat, so a page rebuilds itself from it;
//! - `GET files/{file_id}` — a picture or file sent into the chat;
//! - `POST messages {msg, msg_id?}` — a message to the customer;
//! - `POST call` — calls the customer's phone through the gateway, with the operator on their
//!   own mobile: the service's trunk and caller id, the interaction's headers, recording and
//!   transcript, exactly as a call from the desk on the device `mobile`;
//! - `POST release` — hangs the call up (both phones);
//! - `POST accept_call` / `POST decline_call` — answers the customer's call request (a phone
//!   call is dialled as by `call`; a call from the app is bridged to the operator's mobile);
//! - `POST end` — ends the chat; refused with `release_call_before_chat` while a call is up or
//!   a call request waits;
//! - `GET transcript?format=html|text` — the transcript, also once the chat is over.
//!
//! Video requests never wait for the operator: the page has no video, so they are declined
//! with `video_needs_desk` ([`Links::attend`](crate::sms::mobile::Links::attend)).

use std::time::Duration;

use super::query::Query;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use super::customer::file_response;
use super::transcript::TranscriptQuery;
use super::{ApiError, ApiJson, AppState};
use crate::bridge::{AgentDevice, AgentId, Command, Event, Party, RuleError};
use crate::hub::HubError;
use crate::presentation::operator;
use crate::routing::driver::AcceptError;
use crate::routing::router::RoutingError;
use crate::sms::mobile::{Claim, MobileError};

const PAGE: &str = include_str!("../../web/mobile/index.html");

/// The page loads its modules and styles from this origin only, shows pictures it fetched
/// itself (`blob:`), and may not be framed.
const CSP: &str = "default-src 'self'; img-src 'self' blob:; object-src 'none'; \
                   base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Most events one poll returns; the page asks again at once for the rest.
const MAX_EVENTS_PER_POLL: usize = 200;

/// `GET /m/{token}`: the page; it claims the chat itself.
pub async fn page() -> Response {
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        Html(PAGE),
    )
        .into_response()
}

/// `POST /m/{token}/claim` → `{session, chat_id, service, customer, context, agent}`.
pub async fn claim(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let links = &state.shared.links;
    let claim = links.claim(&token).await?;
    match state
        .routing()
        .claim_by_sms(&claim.chat, &claim.agent)
        .await
    {
        Ok(()) => {}
        Err(AcceptError::Routing(RoutingError::OfferNotAvailable)) => {
            // The offer ended before its withdrawal reached the link: taken if someone has the
            // chat now, else expired.
            let taken = match state.hub().find(&claim.chat).await.ok().flatten() {
                Some(handle) => handle.summary().await.is_ok_and(|s| s.agent.is_some()),
                None => false,
            };
            let error = if taken {
                MobileError::AlreadyTaken
            } else {
                MobileError::LinkExpired
            };
            links.ended(&token, error).await?;
            return Err(error.into());
        }
        Err(AcceptError::Routing(e)) => {
            links.lost(&token).await?;
            return Err(e.into());
        }
        Err(AcceptError::Hub(e)) => {
            links.lost(&token).await?;
            return Err(e.into());
        }
    }
    tracing::info!(agent = %claim.agent, interaction = %claim.chat, "mobile operator took the chat");
    Ok(Json(session_json(&state, &claim).await))
}

/// `POST /m/{token}/move` → as `claim`: the chat claimed on another device comes here, and
/// that device's session ends.
pub async fn move_here(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let claim = state.shared.links.move_here(&token).await?;
    tracing::info!(agent = %claim.agent, interaction = %claim.chat, "mobile operator moved the chat to another device");
    Ok(Json(session_json(&state, &claim).await))
}

/// What a claim or a move answers: the session key and what the page shows first.
async fn session_json(state: &AppState, claim: &Claim) -> Value {
    attend(state, claim).await;
    let summary = match state.hub().find(&claim.chat).await.ok().flatten() {
        Some(handle) => handle.summary().await.ok(),
        None => None,
    };
    json!({
        "session": claim.session,
        "chat_id": claim.chat,
        "agent": claim.agent,
        "display_name": state.routing().display_name(&claim.agent),
        "service": summary.as_ref().map(|s| s.service.clone()),
        // The device id is the customer's credential on the customer API: never shown.
        "customer": summary.as_ref().map(|s| json!({"name": s.customer.name, "phone": s.customer.phone})),
        "context": summary.as_ref().map(|s| s.context.clone()),
    })
}

/// Keeps video requests from waiting on an operator who cannot take them.
async fn attend(state: &AppState, claim: &Claim) {
    if state.shared.links.attends(&claim.chat) {
        return;
    }
    if let Ok(Some(handle)) = state.hub().find(&claim.chat).await {
        state.shared.links.attend(handle, claim.agent.clone());
    }
}

fn session_of(headers: &HeaderMap, parts_query: Option<&str>) -> Option<String> {
    if let Some(value) = headers.get(header::AUTHORIZATION)
        && let Some(key) = value.to_str().ok()?.strip_prefix("Bearer ")
    {
        return Some(key.trim().to_string());
    }
    parts_query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == "session").then(|| v.to_string())
    })
}

/// A claimed link, authorised by its session key.
pub struct Operator(Claim);

impl axum::extract::FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Path(params): Path<Vec<(String, String)>> = Path::from_request_parts(parts, state)
            .await
            .map_err(|_| MobileError::LinkNotFound)?;
        let token = params
            .iter()
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.clone())
            .ok_or(MobileError::LinkNotFound)?;
        let session =
            session_of(&parts.headers, parts.uri.query()).ok_or(MobileError::SessionInvalid)?;
        let claim = state.shared.links.session(&token, &session).await?;
        // A chat restored after a restart is watched again from the page's next request.
        attend(state, &claim).await;
        Ok(Operator(claim))
    }
}

#[derive(Deserialize)]
pub struct After {
    #[serde(default)]
    after: u64,
}

/// `GET /m/{token}/events?after=SEQ` → `{events, last_seq}` (long poll, at most
/// [`MAX_EVENTS_PER_POLL`] events; `last_seq` is where the next poll goes on).
pub async fn events(
    State(state): State<AppState>,
    Path(token): Path<String>,
    Operator(claim): Operator,
    Query(after): Query<After>,
) -> Result<Json<Value>, ApiError> {
    let after = after.after;
    let mut page = Page {
        out: Vec::new(),
        last: after,
    };
    if let Ok(Some(handle)) = state.hub().find(&claim.chat).await
        && let Ok(mut sub) = handle.subscribe(after).await
    {
        for event in &sub.backlog {
            if !page.take(event, &claim.agent, &token) {
                return Ok(Json(page.json()));
            }
        }
        let timeout = Duration::from_secs(state.config().http.long_poll_timeout_s);
        let deadline = tokio::time::Instant::now() + timeout;
        while page.out.is_empty() {
            match tokio::time::timeout_at(deadline, sub.live.recv()).await {
                Ok(Ok(event)) => {
                    page.take(&event, &claim.agent, &token);
                }
                // Behind or over: the next poll resumes from `last` (or the store).
                Ok(Err(RecvError::Lagged(_))) | Ok(Err(RecvError::Closed)) | Err(_) => break,
            }
        }
        return Ok(Json(page.json()));
    }
    // Over: the rest is in the store.
    for event in state.store().events(&claim.chat, after).await? {
        if !page.take(&event, &claim.agent, &token) {
            break;
        }
    }
    Ok(Json(page.json()))
}

/// One poll's answer being built.
struct Page {
    out: Vec<Value>,
    last: u64,
}

impl Page {
    /// Adds `event` if the page shows it; `false` once the page is full (the event is left for
    /// the next poll).
    fn take(&mut self, event: &Event, me: &AgentId, token: &str) -> bool {
        if self.out.len() >= MAX_EVENTS_PER_POLL {
            return false;
        }
        self.last = self.last.max(event.seq.unwrap_or(0));
        self.out.extend(operator::view(event, me, token));
        true
    }

    fn json(self) -> Value {
        json!({"events": self.out, "last_seq": self.last})
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Say {
    msg: String,
    msg_id: Option<String>,
}

/// `POST /m/{token}/messages {msg, msg_id?}` → `{seq}`.
pub async fn send_message(
    State(state): State<AppState>,
    operator: Operator,
    ApiJson(body): ApiJson<Say>,
) -> Result<Json<Value>, ApiError> {
    let command = Command::SendMessage {
        msg_id: body.msg_id,
        text: body.msg,
    };
    act(&state, operator, command).await
}

/// `POST /m/{token}/call`: calls the chat's number, the operator on their own mobile.
pub async fn call(
    State(state): State<AppState>,
    operator: Operator,
) -> Result<Json<Value>, ApiError> {
    let command = Command::CallCustomer {
        number: None,
        device: AgentDevice::Mobile,
    };
    act(&state, operator, command).await
}

/// `POST /m/{token}/release`: hangs up the call.
pub async fn release(
    State(state): State<AppState>,
    operator: Operator,
) -> Result<Json<Value>, ApiError> {
    act(&state, operator, Command::ReleaseCall).await
}

/// `POST /m/{token}/accept_call`: takes the customer's call request on the operator's mobile.
pub async fn accept_call(
    State(state): State<AppState>,
    operator: Operator,
) -> Result<Json<Value>, ApiError> {
    let command = Command::AcceptCall {
        device: AgentDevice::Mobile,
    };
    act(&state, operator, command).await
}

/// `POST /m/{token}/decline_call`: declines the customer's call request.
pub async fn decline_call(
    State(state): State<AppState>,
    operator: Operator,
) -> Result<Json<Value>, ApiError> {
    act(&state, operator, Command::DeclineCall).await
}

/// `POST /m/{token}/end`: the operator ends the chat (refused while a call is up or a call
/// request waits: `release_call_before_chat`).
pub async fn end(
    State(state): State<AppState>,
    operator: Operator,
) -> Result<Json<Value>, ApiError> {
    let Json(mut answer) = act(&state, operator, Command::DisconnectChat).await?;
    answer["state"] = json!("ending");
    Ok(Json(answer))
}

/// Carries out `command` as the operator → `{seq}`.
async fn act(
    state: &AppState,
    Operator(claim): Operator,
    command: Command,
) -> Result<Json<Value>, ApiError> {
    let accepted = state
        .hub()
        .command(&claim.chat, Party::Agent(claim.agent), command)
        .await
        .map_err(|e| match e {
            // The link's chat existed (it was claimed): gone from the hub means over.
            HubError::NotFound => ApiError::Rule(RuleError::InteractionClosed),
            e => e.into(),
        })?;
    Ok(Json(json!({"seq": accepted.seq})))
}

/// `GET /m/{token}/files/{file_id}`: a file sent into the operator's chat (also once over).
pub async fn file(
    State(state): State<AppState>,
    Operator(claim): Operator,
    Path((_, file_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    file_response(&state, &claim.chat, &file_id).await
}

/// `GET /m/{token}/transcript?format=html|text`.
pub async fn transcript(
    State(state): State<AppState>,
    Operator(claim): Operator,
    Query(query): Query<TranscriptQuery>,
) -> Result<Response, ApiError> {
    let events = state.store().events(&claim.chat, 0).await?;
    query.page("html", &events, || format!("Chat {}", claim.chat))
}
