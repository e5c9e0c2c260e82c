//! Mobile SDKs send more than the API knows: `POST chats` and the event bodies accept and
//! ignore unknown fields (an `email`, a `locale`, an SDK version), over HTTP and the
//! WebSocket alike. What is broken still gets `400` with a stable code: malformed JSON and
//! known fields of the wrong type (`bad_json`, `bad_event`).

use crate::api;

use api::{Api, code};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::json;

#[tokio::test]
async fn unknown_fields_are_ignored_when_a_chat_is_opened() {
    let api = Api::new().await;
    let (status, body) = api
        .call(
            "POST",
            "/clientweb/api/v1/chats",
            "dev-1",
            Some(json!({"from": "Carol", "phone_number": "+15550100",
                        "email": "carol@example.com", "locale": "en-GB",
                        "sdk": {"name": "ios", "version": "4.2"},
                        "parameters": {"policy": "P-1"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "queued");
    let chat = body["chat_id"].as_str().unwrap().to_string();
    // What was known was taken: the name, the number, the context.
    let summary = api
        .state
        .hub()
        .get(&chat.as_str().into())
        .unwrap()
        .summary()
        .await
        .unwrap();
    assert_eq!(summary.customer.name.as_deref(), Some("Carol"));
    assert_eq!(summary.customer.phone.as_deref(), Some("+15550100"));
    assert_eq!(summary.context["policy"], "P-1");
    assert!(
        summary.context.get("email").is_none(),
        "unknown fields are not context"
    );
}

#[tokio::test]
async fn unknown_fields_are_ignored_in_events_and_their_envelope() {
    let api = Api::new().await;
    let chat = api.create_chat("dev-1").await;
    let (status, body) = api
        .call(
            "POST",
            &format!("/clientweb/api/v1/chats/{chat}/events"),
            "dev-1",
            Some(json!({"client_time": 1_700_000_000, "events": [
                {"event": "chat_session_message", "msg_id": "m-1", "msg": "hello",
                 "client_msg_time": "2024-01-01T00:00:00Z", "attachments": []},
                {"event": "chat_session_typing", "party_id": "me"},
                {"event": "chat_session_location", "latitude": 48.85, "longitude": 2.35,
                 "accuracy": 12.5, "altitude": null}
            ]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["accepted"].as_array().unwrap().len(), 3);
    let history = api.history(&chat, "dev-1").await;
    assert!(
        history
            .iter()
            .any(|e| e["event"] == "chat_session_message" && e["msg"] == "hello")
    );
}

#[tokio::test]
async fn malformed_json_and_wrong_types_still_get_400_with_a_stable_code() {
    let api = Api::new().await;
    let raw = |body: &'static str| {
        Request::post("/clientweb/api/v1/chats")
            .header("authorization", api::auth("dev-1"))
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap()
    };
    for body in [
        "{\"from\": \"Carol\"",
        "not json",
        "{\"from\": 5}",
        "{\"phone_number\": [\"+1\"]}",
        "[]",
    ] {
        let (status, bytes, _) = api.raw(raw(body)).await;
        let answer: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            (status.as_u16(), answer["error"]["code"].as_str()),
            (400, Some("bad_json")),
            "{body}: {answer}"
        );
    }
    let (status, body) = api
        .call(
            "POST",
            "/clientweb/api/v1/chats",
            "dev-1",
            Some(json!({"parameters": "P-1", "email": "x"})),
        )
        .await;
    assert_eq!(code(&(status, body)), (400, "bad_json"));

    let chat = api.create_chat("dev-2").await;
    let events = format!("/clientweb/api/v1/chats/{chat}/events");
    for (body, expected) in [
        (json!({"events": "hello"}), "bad_json"),
        (
            json!({"events": [{"event": "chat_session_message", "msg": 5}]}),
            "bad_event",
        ),
        (
            json!({"events": [{"event": "chat_session_location", "latitude": "north",
                               "longitude": 2.0, "extra": 1}]}),
            "bad_event",
        ),
        (
            json!({"events": [{"event": "chat_session_no_such_thing"}]}),
            "unknown_event",
        ),
    ] {
        let answer = api.call("POST", &events, "dev-2", Some(body.clone())).await;
        assert_eq!(code(&answer), (400, expected), "{body}");
    }
}
