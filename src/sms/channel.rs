//! SMS as a customer channel: a text from a phone opens or continues that phone's chat, and
//! what agents write in it goes back by SMS (long replies as a concatenated SMS).
//!
//! The customer of such a chat is the device `sms:<number>`; at most one chat per number is
//! open at a time, so a later text continues it. One relay task per chat follows its events
//! and texts every agent message to the number; on restart the relays of open SMS chats are
//! started again from their last event.

use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use super::provider::Provider;
use crate::bridge::{Command, Customer, EventKind, InteractionId, Party, Phase};
use crate::hub::{Handle, Hub, HubError};

/// What every SMS customer's device starts with: no other channel may claim it.
pub const DEVICE_PREFIX: &str = "sms:";

/// The customer device of a phone number's SMS chats.
pub fn device_of(number: &str) -> String {
    format!("{DEVICE_PREFIX}{number}")
}

/// The open chat of a number, if any.
pub fn open_chat(hub: &Hub, number: &str) -> Option<Handle> {
    let device = device_of(number);
    hub.handles().into_iter().find(|h| h.device == device)
}

/// Opens a chat for a number's first text. The caller routes it and starts its relay.
pub async fn open(hub: &Hub, service: &str, number: &str) -> Result<Handle, HubError> {
    let customer = Customer {
        device: device_of(number),
        name: None,
        phone: Some(number.to_string()),
    };
    let (id, _) = hub
        .create(service, customer, json!({"channel": "sms"}))
        .await?;
    hub.get(&id).ok_or(HubError::Closed)
}

/// The text from the customer, as their message (`msg_id` makes a provider's retry idempotent).
pub async fn deliver(
    handle: &Handle,
    msg_id: Option<String>,
    text: String,
) -> Result<Option<u64>, HubError> {
    let accepted = handle
        .command(Party::Customer, Command::SendMessage { msg_id, text })
        .await?;
    Ok(accepted.seq)
}

/// Texts every agent message of the chat to `number` from now on, until the chat closes.
/// Replies go out one after another, in order, each with its own retries.
pub fn relay(handle: Handle, number: String, provider: Provider) {
    let (texts, mut queue) = tokio::sync::mpsc::unbounded_channel::<String>();
    let id: InteractionId = handle.id.clone();
    let sender_id = id.clone();
    tokio::spawn(async move {
        while let Some(text) = queue.recv().await {
            if let Err(e) = provider.send(&number, &text).await {
                tracing::warn!(interaction = %sender_id, "reply not texted: {e}");
            }
        }
    });
    tokio::spawn(async move {
        let after = match handle.summary().await {
            Ok(s) => s.last_seq,
            Err(_) => return,
        };
        let Ok(mut sub) = handle.subscribe(after).await else {
            return;
        };
        // What was written between the summary and the subscription.
        for event in &sub.backlog {
            if let EventKind::Message {
                from: Party::Agent(_),
                text,
                ..
            } = &event.kind
            {
                let _ = texts.send(text.clone());
            }
        }
        loop {
            let event = match sub.live.recv().await {
                Ok(event) => event,
                Err(RecvError::Lagged(n)) => {
                    tracing::error!(interaction = %id, "SMS relay missed {n} events");
                    continue;
                }
                Err(RecvError::Closed) => return,
            };
            match &event.kind {
                EventKind::Message {
                    from: Party::Agent(_),
                    text,
                    ..
                } => {
                    let _ = texts.send(text.clone());
                }
                EventKind::Status {
                    phase: Phase::Closed,
                } => return,
                _ => {}
            }
        }
    });
}

/// Starts the relays of the SMS chats that were open before a restart.
pub fn resume(hub: &Hub, provider: &Provider) {
    for handle in hub.handles() {
        if let Some(number) = handle.device.strip_prefix("sms:") {
            relay(handle.clone(), number.to_string(), provider.clone());
        }
    }
}
