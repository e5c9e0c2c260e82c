//! `GET chats/{id}/ws?after_seq=n`: the customer's events over a WebSocket, resumable by `seq`.
//!
//! The socket is opened with the `Authorization` header (apps), or with `token=` in the query
//! (browsers, which cannot set headers on a WebSocket): a ticket from `POST chats/{id}/ws_token`,
//! good for [`TICKET_TTL`] and for that chat and its device only (the ticket does not carry
//! the device id: it is checked against the chat's). Either way the socket sees only the chats
//! of its device.
//!
//! The server sends the same JSON events as the long poll, each durable one with its `seq`;
//! a client that reconnects with the last `seq` it saw gets everything after it, once. The
//! client sends `{"events": [...]}` (as in `POST events`) and gets `{"event": "ack", ...}` or
//! `{"event": "error", "error": {...}}` back. The session logic is generic over a `Sink` and a
//! `Stream` of text frames, so it does not depend on axum's socket type.

use super::query::Query;
use axum::Json;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use super::auth::Client;
use super::customer::{accepted_json, apply_client_events};
use super::{ApiError, AppState, ChatRef, socket};
use crate::bridge::{Event, EventKind, InteractionId, Phase, Time};
use crate::presentation::customer::view as customer_view;

/// How long a socket ticket stays good: long enough to open the socket it was asked for, short
/// enough that one found in a log or a proxy's URL list is useless. A client asks for a fresh
/// one every time it connects.
pub const TICKET_TTL: std::time::Duration = std::time::Duration::from_secs(60);

#[derive(Deserialize)]
pub struct WsQuery {
    after_seq: Option<u64>,
    /// A socket ticket, for clients that cannot send `Authorization` (browsers).
    token: Option<String>,
}

/// `POST chats/{id}/ws_token`: a ticket to open this chat's socket without `Authorization`.
pub async fn ticket(
    State(state): State<AppState>,
    client: Client,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = InteractionId(id);
    state.chat_for(&client.device, &id).await?;
    let expires = Time::now() + TICKET_TTL;
    let token = state
        .hub()
        .socket_ticket(&id, &client.app_id, &client.device, expires);
    Ok(Json(json!({
        "token": token,
        "expires_in": TICKET_TTL.as_secs(),
        "url": format!("/clientweb/api/v1/chats/{id}/ws?token={token}"),
    })))
}

pub async fn upgrade(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<WsQuery>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let id = InteractionId(id);
    let client = match (Client::from_headers(&headers, &state), &query.token) {
        (Some(client), _) => client?,
        (None, Some(token)) => {
            // The ticket is checked against the chat's own device: whoever holds it gets that
            // chat, and learns no device id from it. A chat that does not exist answers as a
            // bad ticket does, so tickets probe nothing.
            let device = device_of(&state, &id).await.ok_or(ApiError::TokenInvalid)?;
            let app_id = state
                .hub()
                .check_socket_ticket(&id, &device, token, Time::now())
                .ok_or(ApiError::TokenInvalid)?;
            Client::of(&state, app_id, device)?
        }
        (None, None) => return Err(ApiError::Unauthorized),
    };
    let chat = state.chat_for(&client.device, &id).await?;
    let slot = state.shared.budgets.take(&id, &client.device)?;
    let permit = super::budget::permit(&state.shared.sockets, "websockets")?;
    let after = query.after_seq.unwrap_or(0);
    Ok(socket::upgrade(
        ws,
        state.config().http.max_body_bytes,
        None,
        (permit, slot),
        move |tx, rx| session(tx, rx, state, client, id, chat, after),
    ))
}

/// The device a chat belongs to, running or stored.
async fn device_of(state: &AppState, id: &InteractionId) -> Option<String> {
    if let Ok(Some(handle)) = state.hub().find(id).await {
        return Some(handle.device);
    }
    let record = state.store().interaction(id).await.ok()??;
    Some(record.device)
}

/// Runs one socket until the client leaves or the chat is over.
pub(crate) async fn session<Tx, Rx>(
    mut tx: Tx,
    mut rx: Rx,
    state: AppState,
    client: Client,
    id: InteractionId,
    chat: ChatRef,
    after: u64,
) where
    Tx: Sink<String> + Unpin,
    Rx: Stream<Item = String> + Unpin,
{
    let mut last = after;
    let handle = match chat {
        ChatRef::Live(handle) => handle,
        ChatRef::Stored => {
            // Over: send what the client missed, then close.
            if let Ok(events) = state.store().events(&id, after).await {
                for event in &events {
                    if let Some(v) = customer_view(event)
                        && tx.send(v.to_string()).await.is_err()
                    {
                        return;
                    }
                }
            }
            let _ = tx.close().await;
            return;
        }
    };
    let Ok(mut sub) = handle.subscribe(last).await else {
        let _ = tx.close().await;
        return;
    };
    let mut backlog = std::mem::take(&mut sub.backlog);
    loop {
        for event in backlog.drain(..) {
            match send_event(&mut tx, &event, &mut last).await {
                Ok(true) => {}
                Ok(false) | Err(()) => return close(&mut tx).await,
            }
        }
        tokio::select! {
            event = sub.live.recv() => match event {
                Ok(event) => backlog.push(event),
                Err(RecvError::Lagged(_)) => match handle.subscribe(last).await {
                    Ok(mut fresh) => {
                        backlog = std::mem::take(&mut fresh.backlog);
                        sub = fresh;
                    }
                    Err(_) => return close(&mut tx).await,
                },
                Err(RecvError::Closed) => return close(&mut tx).await,
            },
            text = rx.next() => {
                let Some(text) = text else { return };
                let reply = match serde_json::from_str::<Value>(&text) {
                    Err(e) => ApiError::BadJson(e.to_string()).body(),
                    Ok(mut value) => {
                        let events = match value.get_mut("events").and_then(Value::as_array_mut) {
                            Some(list) => std::mem::take(list),
                            None => vec![value.clone()],
                        };
                        match apply_client_events(&state, &client, &handle, &events).await {
                            Ok(accepted) => {
                                let mut ack = accepted_json(&accepted);
                                ack["event"] = json!("ack");
                                if let Some(r) = value.get("ref") {
                                    ack["ref"] = r.clone();
                                }
                                ack
                            }
                            Err(e) => socket::refused(&state, &e, None),
                        }
                    }
                };
                if tx.send(reply.to_string()).await.is_err() {
                    return;
                }
            }
        }
    }
}

async fn close<Tx: Sink<String> + Unpin>(tx: &mut Tx) {
    let _ = tx.close().await;
}

/// Sends one event if it is new and for the customer; `Ok(false)` once the chat is over.
async fn send_event<Tx: Sink<String> + Unpin>(
    tx: &mut Tx,
    event: &Event,
    last: &mut u64,
) -> Result<bool, ()> {
    if let Some(seq) = event.seq {
        if seq <= *last {
            return Ok(true);
        }
        *last = seq;
    }
    if let Some(view) = customer_view(event) {
        tx.send(view.to_string()).await.map_err(|_| ())?;
    }
    Ok(!matches!(
        event.kind,
        EventKind::Status {
            phase: Phase::Closed
        }
    ))
}
