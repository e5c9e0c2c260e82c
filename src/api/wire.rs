//! The customer's wire events (Bright Pattern Mobile/Web Messaging API v1): what the client
//! sends, as the Interaction's commands. What the client is sent of the Interaction's events is
//! [`crate::presentation::customer`].

#[cfg(test)]
use serde_json::json;
use serde_json::{Map, Value};

use super::ApiError;
use crate::bridge::{Command, ReceiptKind};

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
