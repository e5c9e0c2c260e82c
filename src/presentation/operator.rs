//! What a mobile operator's page (`/m/{token}`) shows of an event: the chat, the customer's
//! requests and the calls, with links under the page's own token.

use serde_json::{Value, json};

use crate::bridge::{AgentId, Event, EventKind, LegTarget, Party};

/// An event as the operator's page shows it.
pub fn view(event: &Event, me: &AgentId, token: &str) -> Option<Value> {
    let seq = event.seq?;
    let mine = |from: &Party| matches!(from, Party::Agent(a) if a == me);
    let mut v = match &event.kind {
        // The device id stays with the customer's app: the page needs the name and number.
        EventKind::Created {
            service,
            customer,
            context,
        } => json!({"event": "created", "service": service, "context": context,
                    "customer": {"name": customer.name, "phone": customer.phone}}),
        EventKind::Message { msg_id, from, text } => json!({"event": "message", "msg_id": msg_id,
            "from": from.party_id(), "mine": mine(from), "msg": text}),
        EventKind::File {
            file_id,
            file_name,
            file_type,
            size,
            from,
        } => json!({"event": "file", "file_id": file_id, "file_name": file_name,
                    "file_type": file_type, "size": size, "from": from.party_id(),
                    "mine": mine(from), "url": format!("/m/{token}/files/{file_id}")}),
        EventKind::PartyJoined {
            party,
            display_name,
        } => json!({"event": "joined", "party": party.party_id(), "display_name": display_name,
                    "mine": mine(party)}),
        EventKind::PartyLeft {
            party,
            display_name,
        } => json!({"event": "left", "party": party.party_id(), "display_name": display_name,
                    "mine": mine(party)}),
        // Both are merged into the context the page shows, as the interaction merges them.
        EventKind::Context { data } => json!({"event": "context", "data": data}),
        EventKind::Location {
            latitude,
            longitude,
        } => json!({"event": "context", "data": super::location(*latitude, *longitude)}),
        EventKind::Leg {
            leg,
            kind,
            state,
            target,
            reason,
            duration_s,
        } => {
            let number = match target {
                Some(LegTarget::Phone(number)) => Some(number),
                _ => None,
            };
            json!({"event": "leg", "leg": leg.0, "kind": kind, "state": state,
                   "number": number, "app": target == &Some(LegTarget::App),
                   "reason": reason, "duration_s": duration_s})
        }
        EventKind::Recording { leg, .. } => json!({"event": "recording", "leg": leg.0}),
        EventKind::TimeoutWarning { remaining_s } => {
            json!({"event": "timeout_warning", "remaining_s": remaining_s})
        }
        EventKind::ChatClosed { reason } => json!({"event": "ended", "reason": reason,
            "transcript": format!("/m/{token}/transcript")}),
        _ => return None,
    };
    v["seq"] = json!(seq);
    v["at"] = json!(event.at.millis());
    Some(v)
}
