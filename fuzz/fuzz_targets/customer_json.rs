//! A customer API body: read as `POST chats` and as `POST chats/{id}/events` read them, and its
//! events (the `events` list, or the body itself as the WebSocket takes a lone event) parsed one
//! by one. Never a panic; a refused event is a client error with a stable code in the JSON error
//! body; a message's text is the `msg` the customer sent; a location is on the globe.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tandem::api::wire::{ClientEvent, parse_client_event};
use tandem::bridge::Command;
use tandem::fuzzing::{client_events_body, new_chat_body};

fuzz_target!(|data: &[u8]| {
    let _ = new_chat_body(data);
    let typed = client_events_body(data);
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        assert!(typed.is_err());
        return;
    };
    let list = value.get("events").and_then(Value::as_array);
    // (serde also reads a struct from an array, `[[...]]`: the object form is the one to check.)
    if typed.is_ok() && value.is_object() {
        assert!(list.is_some());
    }
    let events = match list {
        Some(list) => list.clone(),
        None => vec![value],
    };
    for event in &events {
        match parse_client_event(event) {
            Err(e) => {
                let (status, code) = e.status_and_code();
                assert!(status.is_client_error(), "{e:?} is {status}");
                let body = e.body();
                assert_eq!(body["error"]["code"], code);
                assert!(body["error"]["message"].is_string());
            }
            Ok(ClientEvent::Command(Command::SendMessage { text, .. })) => {
                assert_eq!(event["msg"].as_str(), Some(text.as_str()));
            }
            Ok(ClientEvent::Command(Command::Location {
                latitude,
                longitude,
            })) => {
                assert!((-90.0..=90.0).contains(&latitude));
                assert!((-180.0..=180.0).contains(&longitude));
            }
            Ok(_) => {}
        }
    }
});
