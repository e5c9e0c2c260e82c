//! The customer's wire events (Bright Pattern Mobile/Web Messaging API v1) and their
//! translation to and from the Interaction's commands and events.

use serde_json::{Map, Value, json};

use super::ApiError;
use crate::bridge::{
    Command, EndReason, Event, EventKind, LegKind, LegState, LegTarget, Party, Phase, ReceiptKind,
};

/// A client event before the file lookup: `chat_session_file` only names an uploaded file.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    Command(Command),
    /// Commands in order (REQUEST_CALL with offerVideo asks for a call, then video).
    Commands(Vec<Command>),
    File {
        file_id: String,
    },
}

fn str_field(obj: &Map<String, Value>, key: &str) -> Result<String, ApiError> {
    obj.get(key)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| ApiError::BadEvent(format!("`{key}` must be a string")))
}

fn num_field(obj: &Map<String, Value>, key: &str) -> Result<f64, ApiError> {
    let v = obj
        .get(key)
        .ok_or_else(|| ApiError::BadEvent(format!("`{key}` is missing")))?;
    v.as_f64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .filter(|f| f.is_finite())
        .ok_or_else(|| ApiError::BadEvent(format!("`{key}` must be a number")))
}

/// Parses one client event object.
pub fn parse_client_event(value: &Value) -> Result<ClientEvent, ApiError> {
    let obj = value
        .as_object()
        .ok_or_else(|| ApiError::BadEvent("an event is a JSON object".into()))?;
    let name = str_field(obj, "event")?;
    let command = match name.as_str() {
        "chat_session_message" => Command::SendMessage {
            msg_id: obj
                .get("msg_id")
                .and_then(Value::as_str)
                .map(str::to_string),
            text: str_field(obj, "msg")?,
        },
        "chat_session_typing" => Command::Typing(true),
        "chat_session_not_typing" => Command::Typing(false),
        "chat_session_location" => {
            let (latitude, longitude) = (num_field(obj, "latitude")?, num_field(obj, "longitude")?);
            if !(-90.0..=90.0).contains(&latitude) || !(-180.0..=180.0).contains(&longitude) {
                return Err(ApiError::BadEvent("latitude/longitude out of range".into()));
            }
            Command::Location {
                latitude,
                longitude,
            }
        }
        "chat_session_file" => {
            return Ok(ClientEvent::File {
                file_id: str_field(obj, "file_id")?,
            });
        }
        "chat_session_form_data" => {
            let mut data = obj.clone();
            data.remove("event");
            Command::FormData(Value::Object(data))
        }
        "chat_session_context" => Command::Context(
            obj.get("data")
                .filter(|d| d.is_object())
                .cloned()
                .ok_or_else(|| ApiError::BadEvent("`data` must be an object".into()))?,
        ),
        "chat_session_message_delivered" | "chat_session_message_read" => Command::Receipt {
            ref_msg_id: str_field(obj, "ref_msg_id")?,
            receipt: if name.ends_with("read") {
                ReceiptKind::Read
            } else {
                ReceiptKind::Delivered
            },
        },
        "chat_session_signaling" => return parse_signaling(obj),
        "chat_session_end" | "chat_session_disconnect" => Command::EndSession,
        _ => return Err(ApiError::UnknownEvent(name)),
    };
    Ok(ClientEvent::Command(command))
}

/// WebRTC signalling: requests become commands; the rest is relayed as it is.
fn parse_signaling(obj: &Map<String, Value>) -> Result<ClientEvent, ApiError> {
    let data = obj
        .get("data")
        .and_then(Value::as_object)
        .ok_or_else(|| ApiError::BadEvent("`data` must be an object".into()))?;
    let kind = str_field(data, "type")?;
    let command = match kind.as_str() {
        "REQUEST_CALL" => {
            if data.get("offerVideo").and_then(Value::as_bool) == Some(true) {
                return Ok(ClientEvent::Commands(vec![
                    Command::RequestCall,
                    Command::RequestVideo,
                ]));
            }
            Command::RequestCall
        }
        // Ours: `number` when the customer wants a call at another number than the chat's.
        "REQUEST_PHONE_CALL" => Command::RequestPhoneCall {
            number: match data.get("number") {
                None | Some(Value::Null) => None,
                Some(Value::String(n)) if n.trim().is_empty() => None,
                Some(Value::String(n)) => Some(n.trim().to_string()),
                Some(_) => return Err(ApiError::BadEvent("`number` must be a string".into())),
            },
        },
        "END_CALL" => Command::ReleaseCall,
        // Ours: drop video and keep the call.
        "END_VIDEO" => Command::DropVideo,
        "ANSWER_CALL" | "ICE_CANDIDATE" => Command::Signal(Value::Object(data.clone())),
        _ => {
            return Err(ApiError::UnknownEvent(format!(
                "chat_session_signaling/{kind}"
            )));
        }
    };
    Ok(ClientEvent::Command(command))
}

/// An event as the customer's app sees it, or `None` when it is not for the customer.
pub fn customer_view(event: &Event) -> Option<Value> {
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

    #[test]
    fn signaling_requests_become_commands() {
        let e = json!({"event": "chat_session_signaling", "data": {"type": "REQUEST_CALL", "offerVideo": true}});
        assert_eq!(
            parse_client_event(&e).unwrap(),
            ClientEvent::Commands(vec![Command::RequestCall, Command::RequestVideo])
        );
        let phone = |data: Value| {
            parse_client_event(&json!({"event": "chat_session_signaling", "data": data}))
        };
        assert_eq!(
            phone(json!({"type": "REQUEST_PHONE_CALL"})).unwrap(),
            ClientEvent::Command(Command::RequestPhoneCall { number: None })
        );
        assert_eq!(
            phone(json!({"type": "REQUEST_PHONE_CALL", "number": " +15550199 "})).unwrap(),
            ClientEvent::Command(Command::RequestPhoneCall {
                number: Some("+15550199".into())
            })
        );
        assert_eq!(
            phone(json!({"type": "REQUEST_PHONE_CALL", "number": ""})).unwrap(),
            ClientEvent::Command(Command::RequestPhoneCall { number: None })
        );
        assert!(matches!(
            phone(json!({"type": "REQUEST_PHONE_CALL", "number": 15550199})),
            Err(ApiError::BadEvent(_))
        ));
        let e = json!({"event": "chat_session_signaling", "data": {"type": "NOPE"}});
        assert!(matches!(
            parse_client_event(&e),
            Err(ApiError::UnknownEvent(_))
        ));
    }

    fn view(kind: EventKind) -> Option<Value> {
        customer_view(&Event {
            seq: None,
            at: crate::bridge::Time(0),
            kind,
        })
    }

    #[test]
    fn the_app_sees_offers_rejections_and_the_end_of_its_call() {
        let offer = json!({"type": "OFFER_CALL", "offerVideo": true, "sdp": "v=0"});
        let to_app = view(EventKind::Signaling {
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
        assert_eq!(view(to_agent), None, "the agent's offer is not the app's");

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
            let v = view(leg(kind, LegState::Released, None, Some(reason))).unwrap();
            assert_eq!(v["data"]["type"], "CALL_REJECTED");
            assert_eq!(v["data"]["reason_code"], reason);
        }
        let ended = leg(
            LegKind::Voice,
            LegState::Released,
            Some(LegTarget::App),
            Some("ended by the agent"),
        );
        assert_eq!(view(ended).unwrap()["data"]["type"], "END_CALL");
        let phone = leg(
            LegKind::Voice,
            LegState::Released,
            Some(LegTarget::Phone("+1".into())),
            None,
        );
        let phone = view(phone).expect("the chat shows the phone call");
        assert_eq!(phone["event"], "chat_session_call_state");
        assert_eq!(phone["state"], "released");
    }

    #[test]
    fn fields_are_checked() {
        let e = json!({"event": "chat_session_message"});
        assert!(matches!(parse_client_event(&e), Err(ApiError::BadEvent(_))));
        let e = json!({"event": "chat_session_location", "latitude": "48.8", "longitude": 2.3});
        assert!(parse_client_event(&e).is_ok());
        let e = json!({"event": "chat_session_location", "latitude": 91, "longitude": 2.3});
        assert!(parse_client_event(&e).is_err());
    }
}
