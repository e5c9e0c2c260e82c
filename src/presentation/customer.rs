//! What the customer's app and web chat see of an event (Bright Pattern Mobile/Web Messaging
//! API v1 events, plus our additions: `seq`, the queue position, the progress of a call to
//! the customer's phone, `CALL_REJECTED` reasons).

use serde_json::{Value, json};

use crate::bridge::{
    EndReason, Event, EventKind, LegKind, LegState, LegTarget, Party, Phase, ReceiptKind,
};

/// An event as the customer's app sees it, or `None` when it is not for the customer.
pub fn view(event: &Event) -> Option<Value> {
    let mut out = match &event.kind {
        EventKind::Status { phase } => {
            let state = match phase {
                Phase::Queued => "queued",
                Phase::Offered => "connecting",
                Phase::Active => "connected",
                Phase::Closing => return None,
                Phase::Closed => "completed",
            };
            json!({"event": "chat_session_status", "state": state, "ewt": 0})
        }
        EventKind::PartyJoined {
            party,
            display_name,
        } => json!({"event": "chat_session_party_joined", "party_id": party.party_id(),
                    "display_name": display_name, "type": "internal"}),
        EventKind::PartyLeft {
            party,
            display_name,
        } => json!({"event": "chat_session_party_left", "party_id": party.party_id(),
                    "display_name": display_name, "type": "internal"}),
        EventKind::Message { msg_id, from, text } => json!({"event": "chat_session_message",
            "msg_id": msg_id, "msg": text, "party_id": from.party_id()}),
        EventKind::File {
            file_id,
            file_name,
            file_type,
            from,
            size,
        } => json!({"event": "chat_session_file", "file_id": file_id, "file_name": file_name,
                    "file_type": file_type, "size": size, "party_id": from.party_id()}),
        EventKind::Typing { from, typing } if *from != Party::Customer => {
            let name = if *typing {
                "chat_session_typing"
            } else {
                "chat_session_not_typing"
            };
            json!({"event": name, "party_id": from.party_id()})
        }
        EventKind::Receipt {
            ref_msg_id,
            receipt,
            by,
        } => {
            let name = match receipt {
                ReceiptKind::Delivered => "chat_session_message_delivered",
                ReceiptKind::Read => "chat_session_message_read",
            };
            json!({"event": name, "ref_msg_id": ref_msg_id, "party_id": by.party_id()})
        }
        EventKind::Signaling {
            from,
            to: Party::Customer,
            data,
        } => json!({"event": "chat_session_signaling", "party_id": from.party_id(), "data": data}),
        // A request the agent declined or left unanswered.
        EventKind::Leg {
            kind,
            state: LegState::Released,
            reason: Some(reason),
            ..
        } if reason == "declined" || reason == "expired" || reason == "video_needs_desk" => {
            let what = match kind {
                LegKind::Voice => "call",
                LegKind::Video => "video",
            };
            let text = match reason.as_str() {
                "declined" => format!("the agent declined the {what}"),
                "video_needs_desk" => {
                    "video needs an agent at a desk: this agent answers from a mobile phone"
                        .to_string()
                }
                _ => format!("the {what} request was not answered in time"),
            };
            json!({"event": "chat_session_signaling", "party_id": "system",
                   "data": {"type": "CALL_REJECTED", "reason_code": reason, "reason": text,
                            "video": *kind == LegKind::Video}})
        }
        // A call to the customer's phone: the chat shows its progress (our addition).
        EventKind::Leg {
            leg,
            state,
            target: Some(LegTarget::Phone(_)),
            reason,
            duration_s,
            ..
        } => json!({"event": "chat_session_call_state", "call": leg.0, "state": state,
                    "reason": reason, "duration_s": duration_s}),
        // The app's call ended on the gateway's side (the agent, the far end, a timeout).
        EventKind::Leg {
            kind: LegKind::Voice,
            state: LegState::Released,
            target: Some(LegTarget::App),
            reason,
            ..
        } => json!({"event": "chat_session_signaling", "party_id": "system",
                    "data": {"type": "END_CALL", "reason": reason}}),
        EventKind::TimeoutWarning { remaining_s } => json!({
            "event": "chat_session_timeout_warning", "remaining_s": remaining_s,
            "msg": format!("The chat will close in {remaining_s} s without a message")}),
        EventKind::InactivityTimeout => json!({"event": "chat_session_inactivity_timeout"}),
        EventKind::Queue { position, ewt_s } => json!({"event": "chat_session_status",
            "state": "queued", "ewt": ewt_s, "position": position}),
        EventKind::ChatClosed {
            reason: EndReason::NoAgentAvailable,
        } => json!({"event": "chat_session_ended", "reason": "no_agent_available",
                    "msg": "Nobody is available to answer now. Please try again later."}),
        EventKind::ChatClosed { .. } => json!({"event": "chat_session_ended"}),
        _ => return None,
    };
    let map = out.as_object_mut().expect("an object");
    if let Some(seq) = event.seq {
        map.insert("seq".into(), seq.into());
    }
    map.insert("timestamp".into(), event.at.millis().into());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(kind: EventKind) -> Option<Value> {
        super::view(&Event {
            seq: None,
            at: crate::bridge::Time(0),
            kind,
        })
    }

    #[test]
    fn the_app_sees_offers_rejections_and_the_end_of_its_call() {
        let offer = json!({"type": "OFFER_CALL", "offerVideo": true, "sdp": "v=0"});
        let to_app = shown(EventKind::Signaling {
            from: Party::System,
            to: Party::Customer,
            data: offer.clone(),
        })
        .unwrap();
        assert_eq!(to_app["event"], "chat_session_signaling");
        assert_eq!(to_app["data"], offer);
        let to_agent = EventKind::Signaling {
            from: Party::System,
            to: Party::Agent("alice".into()),
            data: offer,
        };
        assert_eq!(shown(to_agent), None, "the agent's offer is not the app's");

        let leg = |kind, state, target, reason: Option<&str>| EventKind::Leg {
            leg: crate::bridge::LegId(1),
            kind,
            state,
            target,
            reason: reason.map(str::to_string),
            duration_s: None,
        };
        for (kind, reason) in [
            (LegKind::Voice, "declined"),
            (LegKind::Video, "expired"),
            (LegKind::Video, "video_needs_desk"),
        ] {
            let v = shown(leg(kind, LegState::Released, None, Some(reason))).unwrap();
            assert_eq!(v["data"]["type"], "CALL_REJECTED");
            assert_eq!(v["data"]["reason_code"], reason);
        }
        let ended = leg(
            LegKind::Voice,
            LegState::Released,
            Some(LegTarget::App),
            Some("ended by the agent"),
        );
        assert_eq!(shown(ended).unwrap()["data"]["type"], "END_CALL");
        let phone = leg(
            LegKind::Voice,
            LegState::Released,
            Some(LegTarget::Phone("+1".into())),
            None,
        );
        let phone = shown(phone).expect("the chat shows the phone call");
        assert_eq!(phone["event"], "chat_session_call_state");
        assert_eq!(phone["state"], "released");
    }
}
