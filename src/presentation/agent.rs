//! What an agent's desk sees of an event.
//!
//! [`view`] is the chat as the desk of the agent who has it draws it (`message`, `file`,
//! `receipt`, `call_state`, `dtmf`, `context`, `accepted`, `ended` …), the same live and in
//! the chat's history, so a desk that reloads or opens a past chat draws it the same way. It
//! reads the events in order through a [`Scene`]: what the earlier events said (the
//! customer, the context so far, the recordings of calls not yet over).
//!
//! Routing adds what is addressed to one agent whether or not they have the chat: an
//! [`offer`], its [`withdrawn`] notice, [`removed`] on a re-queue and the gateway's
//! [`webrtc_signaling`] to the agent's own browser leg. [`stamp`] gives each the chat, the
//! `seq` and the time.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::{location, merge_context};
use crate::bridge::{Customer, Event, EventKind, InteractionId, LegState, LegTarget, Party, Time};
use crate::routing::router::{Via, WithdrawReason};

/// What a chat's earlier events told its desk.
#[derive(Debug, Clone)]
pub struct Scene {
    pub id: InteractionId,
    pub service: String,
    pub customer: Customer,
    /// The context so far, merged as the interaction merges it.
    pub context: Value,
    /// Recordings of calls not yet over, by leg: their link goes with the call's end.
    recordings: HashMap<u32, String>,
}

impl Scene {
    /// A chat whose opening has not been read yet.
    pub fn new(id: InteractionId, service: String) -> Scene {
        Scene {
            id,
            service,
            customer: Customer::default(),
            context: Value::Null,
            recordings: HashMap::new(),
        }
    }
}

/// An event as the desk of the agent who has the chat shows it (without [`stamp`]), or
/// `None` when the desk shows nothing of it. Reads the event into `scene` either way.
pub fn view(scene: &mut Scene, kind: &EventKind) -> Option<Value> {
    Some(match kind {
        EventKind::Created {
            service,
            customer,
            context,
        } => {
            scene.service = service.clone();
            scene.customer = customer.clone();
            scene.context = context.clone();
            return None;
        }
        EventKind::PartyJoined {
            party: Party::Agent(_),
            display_name,
        } => json!({"event": "accepted", "service": scene.service, "customer": scene.customer,
                    "context": scene.context, "display_name": display_name}),
        EventKind::Context { data } => {
            merge_context(&mut scene.context, data);
            json!({"event": "context", "data": data, "context": scene.context})
        }
        EventKind::Location {
            latitude,
            longitude,
        } => {
            let data = location(*latitude, *longitude);
            merge_context(&mut scene.context, &data);
            json!({"event": "context", "data": data, "context": scene.context})
        }
        EventKind::Recording { leg, file } => {
            scene.recordings.insert(leg.0, file.clone());
            return None;
        }
        EventKind::Leg {
            leg,
            kind,
            state,
            target,
            reason,
            duration_s,
        } => {
            let mut view = json!({"event": "call_state", "leg": leg.0, "kind": kind,
                                  "state": state, "reason": reason});
            if let Some(duration) = duration_s {
                view["duration_s"] = json!(duration);
            }
            // A call to the customer's phone names the number (a call-me request's too).
            if let Some(LegTarget::Phone(number)) = target {
                view["number"] = json!(number);
            }
            if *state == LegState::Released
                && let Some(file) = scene.recordings.remove(&leg.0)
            {
                view["recording"] = json!(file);
                view["recording_url"] = json!(format!(
                    "/admin/v1/interactions/{}/recordings/{file}",
                    scene.id
                ));
            }
            view
        }
        EventKind::ChatClosed { reason } => json!({"event": "ended", "reason": reason,
            "transcript": format!("/agent/v1/chats/{}/transcript", scene.id)}),
        EventKind::Message { msg_id, from, text } => {
            json!({"event": "message", "msg_id": msg_id, "from": from.party_id(), "msg": text})
        }
        EventKind::File {
            file_id,
            file_name,
            file_type,
            size,
            from,
        } => json!({"event": "file", "file_id": file_id, "file_name": file_name,
                    "file_type": file_type, "size": size, "from": from.party_id()}),
        EventKind::Typing { from, typing } => {
            json!({"event": "typing", "from": from.party_id(), "typing": typing})
        }
        EventKind::Receipt {
            ref_msg_id,
            receipt,
            by,
        } => json!({"event": "receipt", "ref_msg_id": ref_msg_id, "receipt": receipt,
                    "by": by.party_id()}),
        EventKind::Dtmf { leg, digit } => json!({"event": "dtmf", "leg": leg.0, "digit": digit}),
        EventKind::TimeoutWarning { remaining_s } => {
            json!({"event": "timeout_warning", "remaining_s": remaining_s})
        }
        EventKind::Status { phase } => json!({"event": "status", "phase": phase}),
        _ => return None,
    })
}

/// Gives a view its chat, its `seq` (durable events) and its time.
pub fn stamp(mut view: Value, id: &InteractionId, seq: Option<u64>, at: Time) -> Value {
    view["chat_id"] = json!(id);
    if let Some(seq) = seq {
        view["seq"] = json!(seq);
    }
    view["timestamp"] = json!(at.millis());
    view
}

/// A chat offered to the agent, with the context it was offered with and the customer's
/// first words.
pub fn offer(scene: &Scene, context: &Value, via: Via, first_message: Option<&str>) -> Value {
    json!({"event": "offer", "service": scene.service, "customer": scene.customer,
           "context": context, "via": via, "first_message": first_message})
}

/// The agent's offer no longer stands.
pub fn withdrawn(reason: WithdrawReason) -> Value {
    json!({"event": "withdrawn", "reason": reason})
}

/// The agent had the chat and it went back to the queue.
pub fn removed() -> Value {
    json!({"event": "removed", "reason": "requeued"})
}

/// The gateway's offer (or candidate) to the agent's own WebRTC leg.
pub fn webrtc_signaling(data: &Value) -> Value {
    json!({"event": "webrtc_signaling", "data": data})
}

/// A chat's stored events as its agent's desk sees them live, each stamped.
pub fn history(id: &InteractionId, events: &[Event]) -> Vec<Value> {
    let mut scene = Scene::new(id.clone(), String::new());
    events
        .iter()
        .filter_map(|event| {
            let view = view(&mut scene, &event.kind)?;
            Some(stamp(view, id, event.seq, event.at))
        })
        .collect()
}
