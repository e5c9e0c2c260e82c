//! The API's one WebSocket adapter: the customer's chat socket (`ws.rs`) and the agent's desk
//! socket (`agent_ws.rs`) both run over it.
//!
//! It turns axum's socket into a `Sink` and a `Stream` of text frames (other frames are
//! dropped; axum answers pings itself), so each session is plain logic over the two that tests
//! drive with channels. It bounds frames and messages by the request body limit, holds what
//! the socket was admitted with (its permits and budget slots) until the session ends, and
//! stops reading when the session's credentials end. Errors go out as one kind of frame,
//! counted with the HTTP errors.

use std::future::Future;
use std::pin::Pin;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::{ApiError, AppState};

/// The frames a session sends.
pub(crate) type Frames = Pin<Box<dyn Sink<String, Error = axum::Error> + Send>>;
/// The text frames a session reads.
pub(crate) type Texts = Pin<Box<dyn Stream<Item = String> + Send>>;

/// Bytes read from a socket at a time. What a customer or an agent sends is small, and the
/// default buffer (128 KiB) is zeroed on every read, which costs more CPU than the messages
/// themselves, and stays resident for the socket's life: held by every open chat, it was most
/// of a chat's memory. Larger frames still arrive, in several reads.
const READ_CHUNK: usize = 8 * 1024;

/// Upgrades the connection and runs `session` over its text frames, none larger than
/// `max_message` bytes. `admitted` (permits, budget slots) is held until the session ends;
/// once `until` is cancelled the session reads no more.
pub(crate) fn upgrade<A, S, F>(
    ws: WebSocketUpgrade,
    max_message: usize,
    until: Option<CancellationToken>,
    admitted: A,
    session: S,
) -> Response
where
    A: Send + 'static,
    S: FnOnce(Frames, Texts) -> F + Send + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    ws.read_buffer_size(READ_CHUNK)
        .max_message_size(max_message)
        .max_frame_size(max_message)
        .on_upgrade(move |socket: WebSocket| async move {
            let (tx, rx) = socket.split();
            let tx =
                tx.with(
                    |text: String| async move { Ok::<_, axum::Error>(Message::Text(text.into())) },
                );
            let rx = rx.filter_map(|m| async move {
                match m {
                    Ok(Message::Text(t)) => Some(t.to_string()),
                    _ => None,
                }
            });
            let rx: Texts = match until {
                Some(until) => Box::pin(rx.take_until(until.cancelled_owned())),
                None => Box::pin(rx),
            };
            session(Box::pin(tx), rx).await;
            drop(admitted);
        })
}

/// An error as a socket frame: `{"event": "error", "error": {"code", "message"}}`, with the
/// command's `ref` when it had one.
pub(crate) fn error_event(e: &ApiError, r#ref: Option<&Value>) -> Value {
    let mut body = e.body();
    body["event"] = json!("error");
    if let Some(r) = r#ref {
        body["ref"] = r.clone();
    }
    body
}

/// The answer to a refused command, counted by code as HTTP errors are.
pub(crate) fn refused(state: &AppState, e: &ApiError, r#ref: Option<&Value>) -> Value {
    let (_, code) = e.status_and_code();
    state.api_metrics().error(code);
    error_event(e, r#ref)
}
