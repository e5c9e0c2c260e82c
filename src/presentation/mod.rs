//! What each audience sees of an interaction's events: one function per audience over the
//! same [`Event`](crate::bridge::Event), so the rules about who may see what live here and
//! nowhere else.
//!
//! - [`customer::view`]: the customer's app and web chat (the Bright Pattern Mobile/Web
//!   Messaging API v1 events, plus our additions), over the long poll, the WebSocket and the
//!   history.
//! - [`agent::view`]: the desk of the agent who has the chat, live and in its history; routing
//!   adds what is addressed to one agent ([`agent::offer`], [`agent::withdrawn`] …).
//! - [`operator::view`]: a mobile operator's page on the link of an SMS offer.
//! - [`transcript::line`]: the transcript people read afterwards.
//!
//! The rules, in one place:
//! - Routing is the staff's business: offers, withdrawals and queue bookkeeping reach agents and
//!   the transcript, never the customer (who sees only the queue position and the wait).
//! - Context and location the app pushed, the keys the customer pressed during a call, and
//!   recordings are for the staff and the transcript; the customer's app already knows its own.
//! - Signalling reaches only the party it is addressed to, and is never written down; nor are
//!   typing notices and read receipts, which say nothing to a later reader.
//! - The customer's device id is their credential: no view shows it to an operator.
//! - Every durable event a view shows carries its `seq` (to resume after) and its time.

pub mod agent;
pub mod customer;
pub mod operator;
pub mod transcript;

use serde_json::Value;

/// Shallow merge of a JSON object into a context (a non-object replaces it), as the
/// interaction merges the context the app pushes: the views rebuild the same context from the
/// same events.
pub fn merge_context(context: &mut Value, data: &Value) {
    match (context, data) {
        (Value::Object(into), Value::Object(from)) => {
            for (k, v) in from {
                into.insert(k.clone(), v.clone());
            }
        }
        (context, data) => *context = data.clone(),
    }
}

/// The context a location update adds.
pub fn location(latitude: f64, longitude: f64) -> Value {
    serde_json::json!({"location": {"latitude": latitude, "longitude": longitude}})
}
