//! Ordered teardown through the agent API: `disconnect_chat` is refused with
//! `release_call_before_chat` while a call leg is up, and goes through once it is released.
//!
//! The API runs in process without leg drivers, so the customer asks for a call over the
//! customer API, the agent accepts it, and the leg driver's reports (`LegUp`, then
//! `LegReleased`) are sent to the interaction as the system, as the driver does.

use crate::agent_desk as agent;
use crate::api;

use agent::Desk;
use axum::http::StatusCode;
use serde_json::json;
use tandem::bridge::{Command, InteractionId, LegId, Party};
use tandem::routing::password;

fn config() -> String {
    let hash = password::hash("desk");
    format!(
        r#"
[[services]]
name = "claims"
entries = ["claims-app"]
department = "claims"

[[agents]]
name = "alice"
password_hash = "{hash}"
departments = ["claims"]
"#
    )
}

#[tokio::test]
async fn disconnect_chat_is_refused_until_the_call_is_released() {
    let api = api::Api::with_config(&config()).await;
    let (addr, server) = agent::serve(api.router.clone()).await;
    let http = reqwest::Client::new();
    let token = agent::login(&http, addr, "alice", "desk").await;
    let (mut tab, _) = Desk::open(addr, &token).await;
    tab.available().await;

    let chat = api.create_chat("dev-1").await;
    tab.event("offer", &chat).await;
    let ack = tab
        .command(json!({"command": "accept", "chat_id": chat}))
        .await;
    assert_eq!(ack["event"], "ack", "{ack}");

    // The customer's app asks for a voice call; the leg driver reports it up.
    let asked = api
        .send(
            &chat,
            "dev-1",
            json!([{"event": "chat_session_signaling", "data": {"type": "REQUEST_CALL"}}]),
        )
        .await;
    assert_eq!(asked.0, StatusCode::OK, "{}", asked.1);
    let requested = tab.event("call_state", &chat).await;
    assert_eq!(requested["state"], "awaiting_approval", "{requested}");
    // A pending request already holds the chat.
    let refused = tab
        .command(json!({"command": "disconnect_chat", "chat_id": chat}))
        .await;
    assert_eq!(refused["error"]["code"], "release_call_before_chat");
    let ack = tab
        .command(json!({"command": "accept_call", "chat_id": chat}))
        .await;
    assert_eq!(ack["event"], "ack", "{ack}");
    let connecting = tab.event("call_state", &chat).await;
    assert_eq!(connecting["state"], "connecting", "{connecting}");
    let leg = LegId(connecting["leg"].as_u64().unwrap() as u32);
    let id = InteractionId(chat.clone());
    let hub = api.state.hub();
    hub.command(&id, Party::System, Command::LegUp { leg })
        .await
        .unwrap();
    let up = tab.event("call_state", &chat).await;
    assert_eq!(up["state"], "up", "{up}");

    let refused = tab
        .command(json!({"command": "disconnect_chat", "chat_id": chat, "ref": "bye"}))
        .await;
    assert_eq!(refused["event"], "error", "{refused}");
    assert_eq!(refused["error"]["code"], "release_call_before_chat");
    assert_eq!(refused["ref"], "bye");
    // Refused means nothing happened: the chat goes on.
    tab.say(&chat, "still here").await;

    // Once the leg is released the same command ends the chat.
    hub.command(
        &id,
        Party::System,
        Command::LegReleased {
            leg,
            reason: Some("hung up".into()),
        },
    )
    .await
    .unwrap();
    let released = tab
        .until(|v| v["event"] == "call_state" && v["state"] == "released")
        .await;
    assert_eq!(released["chat_id"], chat.as_str());
    let done = tab
        .command(json!({"command": "disconnect_chat", "chat_id": chat}))
        .await;
    assert_eq!(done["event"], "ack", "{done}");
    tab.event("ended", &chat).await;
    server.abort();
}
