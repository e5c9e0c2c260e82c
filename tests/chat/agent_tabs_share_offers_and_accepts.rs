//! An agent with two desktop tabs open: both are offered the chat, an accept on one is seen on
//! the other, and what happens in the chat reaches both; the other tab cannot take it again.

use crate::agent_desk as agent;
use crate::api;

use agent::Desk;
use serde_json::json;
use tandem::routing::password;

fn config() -> String {
    let hash = password::hash("desk");
    format!(
        r#"
[[services]]
name = "claims"
entries = ["claims-app"]
department = "claims"
routing = "round_robin"

[[agents]]
name = "alice"
display_name = "Alice"
password_hash = "{hash}"
departments = ["claims"]
"#
    )
}

#[tokio::test]
async fn two_tabs_of_one_agent_see_the_same_offer_accept_and_messages() {
    let api = api::Api::with_config(&config()).await;
    let (addr, server) = agent::serve(api.router.clone()).await;
    let http = reqwest::Client::new();
    let token = agent::login(&http, addr, "alice", "desk").await;
    let (mut first, _) = Desk::open(addr, &token).await;
    let (mut second, hello) = Desk::open(addr, &token).await;
    assert_eq!(hello["state"], "away");
    first.available().await;
    // The presence change is the agent's, so the other tab hears it too.
    let state = second.until(|v| v["event"] == "state").await;
    assert_eq!(state["state"], "available");

    let chat = api.create_chat("dev-1").await;
    for tab in [&mut first, &mut second] {
        let offer = tab.event("offer", &chat).await;
        assert_eq!(offer["customer"]["name"], "Carol");
        assert_eq!(offer["context"]["policy"], "P-1");
    }

    let ack = second
        .command(json!({"command": "accept", "chat_id": chat, "ref": "take"}))
        .await;
    assert_eq!(ack["event"], "ack", "{ack}");
    assert_eq!(ack["ref"], "take");
    for tab in [&mut first, &mut second] {
        let accepted = tab.event("accepted", &chat).await;
        assert_eq!(accepted["display_name"], "Alice");
    }
    // The chat is the agent's already: the first tab cannot accept it a second time.
    let again = first
        .command(json!({"command": "accept", "chat_id": chat}))
        .await;
    assert_eq!(again["error"]["code"], "offer_not_available", "{again}");

    // The customer writes: both tabs show it. One tab answers: the other shows that too.
    api.say(&chat, "dev-1", "c-1", "my car is dented").await;
    for tab in [&mut first, &mut second] {
        let msg = tab.event("message", &chat).await;
        assert_eq!(msg["msg"], "my car is dented");
        assert_eq!(msg["from"], "customer");
    }
    let said = first
        .command(
            json!({"command": "send_message", "chat_id": chat, "msg_id": "a-1",
                        "msg": "on my way"}),
        )
        .await;
    assert_eq!(said["event"], "ack", "{said}");
    for tab in [&mut first, &mut second] {
        let msg = tab
            .until(|v| v["event"] == "message" && v["msg"] == "on my way")
            .await;
        assert_eq!(msg["from"], "alice");
    }

    // Closing one tab keeps the agent connected: the other still ends the chat.
    drop(first);
    let ended = second
        .command(json!({"command": "end_session", "chat_id": chat}))
        .await;
    assert_eq!(ended["event"], "ack", "{ended}");
    second.event("ended", &chat).await;
    server.abort();
}
