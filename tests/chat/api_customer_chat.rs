//! A customer chats through the router: availability, start, messages, long poll, history.

use crate::api;

use api::{Api, code};
use axum::http::StatusCode;
use serde_json::json;
use tandem::bridge::Command;

#[tokio::test]
async fn a_customer_starts_a_chat_writes_and_long_polls_the_agents_answer() {
    let api = Api::new().await;
    let (status, body) = api
        .call("GET", "/clientweb/api/v1/availability", "dev-1", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    // Nobody is there to answer (this configuration has no agents): the truth, and the chat
    // may still be opened (it waits; `api_customer_availability.rs` has the rest).
    assert_eq!(body["chat"], "notAvailable", "{body}");

    let chat = api.create_chat("dev-1").await;
    let long = "long message ".repeat(70);
    let ack = api.say(&chat, "dev-1", "c-1", &long).await;
    let seq = ack["accepted"][0]["seq"].as_u64().unwrap();
    // A retry with the same msg_id is acknowledged with the same seq and stored once.
    let again = api.say(&chat, "dev-1", "c-1", &long).await;
    assert_eq!(again["accepted"][0]["seq"].as_u64(), Some(seq));
    assert_eq!(again["accepted"][0]["duplicate"], true);

    // The first poll returns what happened so far.
    let events_uri = format!("/clientweb/api/v1/chats/{chat}/events");
    let (status, body) = api.call("GET", &events_uri, "dev-1", None).await;
    assert_eq!(status, StatusCode::OK);
    // Routing's queue position and estimated wait (no agent here) come whenever routing
    // gets to it; they are left out of the order checked here.
    let names: Vec<&str> = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e.get("position").is_none())
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["chat_session_status", "chat_session_message"]);

    // The next one waits until the agent joins and answers.
    let poll = {
        let router = api.router.clone();
        let uri = events_uri.clone();
        tokio::spawn(async move {
            use tower::ServiceExt;
            let request = axum::http::Request::get(uri)
                .header("authorization", api::auth("dev-1"))
                .body(axum::body::Body::empty())
                .unwrap();
            router.oneshot(request).await.unwrap()
        })
    };
    // Only one long poll at a time per chat.
    let mut refused = None;
    for _ in 0..200 {
        tokio::task::yield_now().await;
        let answer = api.call("GET", &events_uri, "dev-1", None).await;
        if answer.0 == StatusCode::CONFLICT {
            refused = Some(answer);
            break;
        }
    }
    assert_eq!(
        code(&refused.expect("a second poll is refused")),
        (409, "poll_in_progress")
    );
    api.accept(&chat).await;
    let response = poll.await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    use http_body_util::BodyExt;
    let body: serde_json::Value =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    let first = &body["events"][0];
    assert_eq!(first["event"], "chat_session_party_joined");
    assert_eq!(first["display_name"], "Alice");

    api.agent(
        &chat,
        Command::SendMessage {
            msg_id: Some("a-1".into()),
            text: "Hello Carol".into(),
        },
    )
    .await;
    let (_, body) = api.call("GET", &events_uri, "dev-1", None).await;
    let events = body["events"].as_array().unwrap();
    let message = events
        .iter()
        .find(|e| e["event"] == "chat_session_message")
        .expect("the agent's message");
    assert_eq!(message["msg"], "Hello Carol");
    assert_eq!(message["party_id"], "alice");

    // Receipts, typing, location and context are accepted.
    let (status, body) = api
        .send(
            &chat,
            "dev-1",
            json!([
                {"event": "chat_session_message_read", "ref_msg_id": "a-1"},
                {"event": "chat_session_typing"},
                {"event": "chat_session_location", "latitude": 48.85, "longitude": 2.35},
                {"event": "chat_session_form_data", "form_name": "claim", "data": {"plate": "AB-123"}},
            ]),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // History has every message, in order, with seqs.
    let history = api.history(&chat, "dev-1").await;
    let messages: Vec<&str> = history
        .iter()
        .filter(|e| e["event"] == "chat_session_message")
        .map(|e| e["msg"].as_str().unwrap())
        .collect();
    assert_eq!(messages, [long.as_str(), "Hello Carol"]);
    let seqs: Vec<u64> = history.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));

    // The customer ends the chat; a last poll sees it end.
    let (status, _) = api
        .send(&chat, "dev-1", json!([{"event": "chat_session_end"}]))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = api.call("GET", &events_uri, "dev-1", None).await;
    let names: Vec<&str> = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"chat_session_ended"), "{names:?}");
}
