//! Bad input gets the right status and stable code, always as `{"error": {"code", "message"}}`.

use crate::api;

use api::{Api, code};
use axum::body::Body;
use axum::http::Request;
use serde_json::json;

#[tokio::test]
async fn bad_requests_get_stable_codes() {
    let api = Api::new().await;
    let chat = api.create_chat("dev-1").await;
    let events = format!("/clientweb/api/v1/chats/{chat}/events");

    // Authorization.
    let answer = api.call("GET", &events, "", None).await;
    assert_eq!(code(&answer), (401, "unauthorized"));
    let request = Request::get("/clientweb/api/v1/availability")
        .header(
            "authorization",
            r#"MOBILE-API-140-327-PLAIN appId="nope", clientId="d""#,
        )
        .body(Body::empty())
        .unwrap();
    let (status, body, _) = api.raw(request).await;
    assert_eq!(status.as_u16(), 401);
    assert!(String::from_utf8_lossy(&body).contains("unknown_app"));

    // Another device does not see the chat at all.
    let answer = api.call("GET", &events, "dev-2", None).await;
    assert_eq!(code(&answer), (404, "chat_not_found"));
    let answer = api.send(&chat, "dev-2", json!([])).await;
    assert_eq!(code(&answer), (404, "chat_not_found"));
    let answer = api
        .call("GET", "/clientweb/api/v1/chats/nope/history", "dev-1", None)
        .await;
    assert_eq!(code(&answer), (404, "chat_not_found"));

    // Bad JSON, unknown events, bad fields, too many events.
    let request = Request::post(&events)
        .header("authorization", api::auth("dev-1"))
        .header("content-type", "application/json")
        .body(Body::from("{\"events\": [}"))
        .unwrap();
    let (status, body, _) = api.raw(request).await;
    assert_eq!(status.as_u16(), 400);
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"]["code"], "bad_json");
    assert!(body["error"]["message"].as_str().unwrap().len() > 3);
    let answer = api
        .send(&chat, "dev-1", json!([{"event": "chat_session_dance"}]))
        .await;
    assert_eq!(code(&answer), (400, "unknown_event"));
    let answer = api
        .send(&chat, "dev-1", json!([{"event": "chat_session_message"}]))
        .await;
    assert_eq!(code(&answer), (400, "bad_event"));
    let six = vec![json!({"event": "chat_session_typing"}); 6];
    let answer = api.send(&chat, "dev-1", json!(six)).await;
    assert_eq!(code(&answer), (400, "too_many_events"));
    // An invalid event refuses the whole request: the valid one before it did not happen.
    let answer = api
        .send(
            &chat,
            "dev-1",
            json!([{"event": "chat_session_message", "msg": "first"}, {"event": "nope"}]),
        )
        .await;
    assert_eq!(code(&answer), (400, "unknown_event"));
    assert!(
        !api.history(&chat, "dev-1")
            .await
            .iter()
            .any(|e| e["msg"] == "first")
    );

    // Rules of the interaction come through with their own codes.
    let answer = api
        .send(
            &chat,
            "dev-1",
            json!([{"event": "chat_session_message", "msg": "x".repeat(1001)}]),
        )
        .await;
    assert_eq!(code(&answer), (413, "message_too_long"));
    let answer = api
        .send(
            &chat,
            "dev-1",
            json!([{"event": "chat_session_signaling", "data": {"type": "REQUEST_CALL"}}]),
        )
        .await;
    assert_eq!(code(&answer), (409, "interaction_not_active"));
    let answer = api
        .send(
            &chat,
            "dev-1",
            json!([{"event": "chat_session_file", "file_id": "nope"}]),
        )
        .await;
    assert_eq!(code(&answer), (404, "file_not_found"));

    // A body over the limit.
    let big = json!({"events": [{"event": "chat_session_message", "msg": "y".repeat(300_000)}]});
    let answer = api.call("POST", &events, "dev-1", Some(big)).await;
    assert_eq!(code(&answer), (413, "payload_too_large"));

    // A closed chat.
    api.send(&chat, "dev-1", json!([{"event": "chat_session_end"}]))
        .await;
    let answer = api
        .send(
            &chat,
            "dev-1",
            json!([{"event": "chat_session_message", "msg": "hi"}]),
        )
        .await;
    assert_eq!(code(&answer), (409, "interaction_closed"));
    // Its history stays readable.
    assert!(!api.history(&chat, "dev-1").await.is_empty());

    // Outside business hours.
    let request = Request::get("/clientweb/api/v1/availability")
        .header(
            "authorization",
            r#"MOBILE-API-140-327-PLAIN appId="night-app", clientId="d""#,
        )
        .body(Body::empty())
        .unwrap();
    let (_, body, _) = api.raw(request).await;
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        body,
        json!({"chat": "notAvailable", "reason": "closed for the test"})
    );
    let request = Request::post("/clientweb/api/v1/chats")
        .header(
            "authorization",
            r#"MOBILE-API-140-327-PLAIN appId="night-app", clientId="d""#,
        )
        .header("content-type", "application/json")
        .body(Body::from("{}"))
        .unwrap();
    let (status, _, _) = api.raw(request).await;
    assert_eq!(status.as_u16(), 503);

    // Too many chats for one device.
    for _ in 0..3 {
        api.create_chat("dev-3").await;
    }
    let answer = api
        .call("POST", "/clientweb/api/v1/chats", "dev-3", Some(json!({})))
        .await;
    assert_eq!(code(&answer), (429, "too_many"));

    // Unknown routes and methods are JSON errors too.
    let answer = api.call("GET", "/nope", "", None).await;
    assert_eq!(code(&answer), (404, "no_such_endpoint"));
    let answer = api
        .call("DELETE", "/clientweb/api/v1/chats", "dev-1", None)
        .await;
    assert_eq!(code(&answer), (405, "method_not_allowed"));

    // Errors are counted by code.
    let (_, metrics, _) = api
        .raw(Request::get("/metrics").body(Body::empty()).unwrap())
        .await;
    let metrics = String::from_utf8(metrics).unwrap();
    assert!(
        metrics.contains("tandem_api_errors_total{code=\"unknown_event\"} 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn another_channels_identity_cannot_be_claimed() {
    let api = Api::new().await;
    // An SMS customer is the device `sms:<number>`: an app claiming it would read that
    // customer's chat and catch their next texts.
    for (method, uri, body) in [
        ("GET", "/clientweb/api/v1/availability", None),
        (
            "POST",
            "/clientweb/api/v1/chats",
            Some(json!({"phone_number": "+15550100", "from": "Mallory"})),
        ),
    ] {
        let answer = api.call(method, uri, "sms:+15550100", body).await;
        assert_eq!(code(&answer), (403, "client_id_reserved"), "{method} {uri}");
    }
    // An id that merely mentions sms elsewhere is an ordinary device.
    api.create_chat("my-sms:device").await;
}
