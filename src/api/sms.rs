//! `POST /sms/v1/inbound`: the SMS provider hands over a text from a customer's phone.
//!
//! The provider proves itself with the shared secret in `X-Sms-Secret` (`sms.inbound_secret`).
//! The body is `{from, body, message_id}`; `message_id` (the provider's id of the text, at
//! most 128 characters) is required: a provider retries a webhook whose answer it did not get,
//! and only the id tells the retry from a second text with the same words. The text opens a chat of `sms.inbound_service` for the number, or
//! continues the number's open chat; agents' replies go back by SMS.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, ApiJson, AppState};
use crate::sms::channel;

#[derive(Deserialize)]
pub struct Inbound {
    from: String,
    body: String,
    message_id: String,
    /// Our number the text was sent to (informational).
    #[serde(default)]
    #[allow(dead_code)]
    to: Option<String>,
}

/// The longest provider message id kept.
const MAX_MESSAGE_ID: usize = 128;

/// `POST /sms/v1/inbound` → `{chat_id, seq}`.
pub async fn inbound(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(text): ApiJson<Inbound>,
) -> Result<Json<Value>, ApiError> {
    let sms = &state.config().sms;
    let (Some(secret), Some(service)) = (&sms.inbound_secret, &sms.inbound_service) else {
        return Err(ApiError::SmsInboundDisabled);
    };
    let given = headers
        .get("x-sms-secret")
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if !crate::secret::same(given, secret.as_bytes()) {
        return Err(ApiError::BadSecret);
    }
    // The sender becomes the chat's phone number, which agents may call: E.164, or the
    // service's national form made E.164 (whether it may be dialled is the dial plan's say).
    let number = state
        .config()
        .service(service)
        .map(|s| s.dial_plan.clone())
        .unwrap_or_default()
        .normalize(&text.from)
        .map_err(|_| crate::bridge::RuleError::InvalidNumber)?
        .into_string();
    let handle = match channel::open_chat(state.hub(), &number) {
        Some(handle) => handle,
        None => {
            let handle = channel::open(state.hub(), service, &number).await?;
            channel::relay(handle.clone(), number.clone(), state.shared.sms.clone());
            tracing::info!(interaction = %handle.id, "chat opened by SMS");
            handle
        }
    };
    if text.message_id.is_empty() || text.message_id.len() > MAX_MESSAGE_ID {
        return Err(ApiError::BadJson(format!(
            "`message_id` must be 1 to {MAX_MESSAGE_ID} characters"
        )));
    }
    let msg_id = Some(format!("sms-{}", text.message_id));
    let seq = channel::deliver(&handle, msg_id, text.body).await?;
    Ok(Json(json!({"chat_id": handle.id, "seq": seq})))
}
