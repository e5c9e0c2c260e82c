//! The mobile operator's chat on the link of an SMS offer (`/m/{token}`).
//!
//! `GET /m/{token}` is the page (static, embedded). The page `POST`s `claim`, which takes the
//! chat for the operator or answers `already_taken` / `link_expired`; the claim's `session` key
//! then authorises, as `Authorization: Bearer …` or `?session=…`:
//! - `GET events?after=SEQ` — a long poll: the chat's events after `SEQ` (messages, files,
//!   parties joining and leaving, `ended` with the transcript link), or none at the timeout;
//! - `POST messages {msg, msg_id?}` — a message to the customer;
//! - `POST end` — ends the session;
//! - `GET transcript?format=html|text` — the transcript, also once the chat is over.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use super::{ApiError, ApiJson, AppState};
use crate::bridge::{AgentId, Command, Event, EventKind, Party};
use crate::chat::transcript;
use crate::routing::driver::AcceptError;
use crate::routing::router::RoutingError;
use crate::sms::mobile::{Claim, MobileError};

const PAGE: &str = include_str!("../../web/mobile.html");

/// `GET /m/{token}`: the page; it claims the chat itself.
pub async fn page() -> Response {
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
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
            let taken = match state.hub().get(&claim.chat) {
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
    let summary = match state.hub().get(&claim.chat) {
        Some(handle) => handle.summary().await.ok(),
        None => None,
    };
    Ok(Json(json!({
        "session": claim.session,
        "chat_id": claim.chat,
        "agent": claim.agent,
        "display_name": state.routing().display_name(&claim.agent),
        "service": summary.as_ref().map(|s| s.service.clone()),
        "customer": summary.as_ref().map(|s| s.customer.clone()),
        "context": summary.as_ref().map(|s| s.context.clone()),
    })))
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
        Ok(Operator(
            state.shared.links.session(&token, &session).await?,
        ))
    }
}

/// An event as the operator's page shows it.
fn view(event: &Event, me: &AgentId, token: &str) -> Option<Value> {
    let seq = event.seq?;
    let mine = |from: &Party| matches!(from, Party::Agent(a) if a == me);
    let mut v = match &event.kind {
        EventKind::Message { msg_id, from, text } => json!({"event": "message", "msg_id": msg_id,
            "from": from.party_id(), "mine": mine(from), "msg": text}),
        EventKind::File {
            file_name,
            file_type,
            size,
            from,
            ..
        } => json!({"event": "file", "file_name": file_name, "file_type": file_type,
                    "size": size, "from": from.party_id(), "mine": mine(from)}),
        EventKind::PartyJoined {
            party,
            display_name,
        } => json!({"event": "joined", "party": party.party_id(), "display_name": display_name}),
        EventKind::PartyLeft {
            party,
            display_name,
        } => json!({"event": "left", "party": party.party_id(), "display_name": display_name}),
        EventKind::ChatClosed { reason } => json!({"event": "ended", "reason": reason,
            "transcript": format!("/m/{token}/transcript")}),
        _ => return None,
    };
    v["seq"] = json!(seq);
    v["at"] = json!(event.at.millis());
    Some(v)
}

#[derive(Deserialize)]
pub struct After {
    #[serde(default)]
    after: u64,
}

/// `GET /m/{token}/events?after=SEQ` → `{events, last_seq}` (long poll).
pub async fn events(
    State(state): State<AppState>,
    Path(token): Path<String>,
    Operator(claim): Operator,
    Query(after): Query<After>,
) -> Result<Json<Value>, ApiError> {
    let after = after.after;
    let timeout = Duration::from_secs(state.config().http.long_poll_timeout_s);
    let mut out = Vec::new();
    let mut last = after;
    if let Some(handle) = state.hub().get(&claim.chat)
        && let Ok(mut sub) = handle.subscribe(after).await
    {
        for event in &sub.backlog {
            last = last.max(event.seq.unwrap_or(0));
            out.extend(view(event, &claim.agent, &token));
        }
        let deadline = tokio::time::Instant::now() + timeout;
        while out.is_empty() {
            match tokio::time::timeout_at(deadline, sub.live.recv()).await {
                Ok(Ok(event)) => {
                    last = last.max(event.seq.unwrap_or(0));
                    out.extend(view(&event, &claim.agent, &token));
                }
                // Behind or over: the next poll resumes from `last` (or the store).
                Ok(Err(RecvError::Lagged(_))) | Ok(Err(RecvError::Closed)) | Err(_) => break,
            }
        }
        return Ok(Json(json!({"events": out, "last_seq": last})));
    }
    // Over: the rest is in the store.
    for event in state.store().events(&claim.chat, after).await? {
        last = last.max(event.seq.unwrap_or(0));
        out.extend(view(&event, &claim.agent, &token));
    }
    Ok(Json(json!({"events": out, "last_seq": last})))
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
    Operator(claim): Operator,
    ApiJson(body): ApiJson<Say>,
) -> Result<Json<Value>, ApiError> {
    let command = Command::SendMessage {
        msg_id: body.msg_id,
        text: body.msg,
    };
    let accepted = state
        .hub()
        .command(&claim.chat, Party::Agent(claim.agent), command)
        .await?;
    Ok(Json(json!({"seq": accepted.seq})))
}

/// `POST /m/{token}/end`: the operator ends the session (calls, video, then chat).
pub async fn end(
    State(state): State<AppState>,
    Operator(claim): Operator,
) -> Result<Json<Value>, ApiError> {
    state
        .hub()
        .command(&claim.chat, Party::Agent(claim.agent), Command::EndSession)
        .await?;
    Ok(Json(json!({"state": "ending"})))
}

#[derive(Deserialize)]
pub struct Format {
    format: Option<String>,
}

/// `GET /m/{token}/transcript?format=html|text`.
pub async fn transcript(
    State(state): State<AppState>,
    Operator(claim): Operator,
    Query(query): Query<Format>,
) -> Result<Response, ApiError> {
    let events = state.store().events(&claim.chat, 0).await?;
    Ok(match query.format.as_deref().unwrap_or("html") {
        "text" => (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            transcript::to_text(&events),
        )
            .into_response(),
        "html" => (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            transcript::to_html(&format!("Chat {}", claim.chat), &events),
        )
            .into_response(),
        other => return Err(ApiError::BadJson(format!("unknown format {other:?}"))),
    })
}
