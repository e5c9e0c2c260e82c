//! What the agent API gives the desk beyond commands: an offer carries the customer's first
//! message; the `ack` of an accept comes before its `accepted`; `GET chats` lists the chats the
//! agent handled (and no one else's); `GET chats/{id}/history` gives a chat's events as the
//! socket sends them live; files, history and recordings need the agent who took the chat.

use crate::agent_desk as agent;
use crate::api;

use serde_json::{Value, json};
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

[[agents]]
name = "bob"
password_hash = "{hash}"
departments = ["claims"]
"#
    )
}

async fn get(http: &reqwest::Client, url: String, token: &str) -> (u16, Value) {
    let response = http.get(url).bearer_auth(token).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_desk_gets_first_messages_ordered_acks_its_chats_and_their_history() {
    let api = api::Api::with_config(&config()).await;
    let (addr, server) = agent::serve(api.router.clone()).await;
    let base = format!("http://{addr}");
    let http = reqwest::Client::new();
    let mut alice = agent::Desk::login(&http, addr, "alice", "desk").await;
    let bob_token = agent::login(&http, addr, "bob", "desk").await;

    let mut customer = agent::Customer::open(&http, addr, "claims-app", "dev-1", "+15550100").await;
    let chat = customer.chat.clone();
    customer.say("My car was hit").await;
    // The offer shows the first message (sent again with it when it came after the offer).
    let offer = alice
        .until(|v| v["event"] == "offer" && v["first_message"] == "My car was hit")
        .await;
    assert_eq!(offer["chat_id"], chat.as_str());
    // A second tab's hello lists the offer with it too.
    let (_, hello) = agent::Desk::open(addr, &alice.token).await;
    assert_eq!(
        hello["offers"][0]["first_message"], "My car was hit",
        "{hello}"
    );

    // The ack of the accept comes before its accepted.
    let ack = alice
        .command(json!({"command": "accept", "chat_id": chat}))
        .await;
    assert_eq!(ack["event"], "ack", "{ack}");
    assert!(
        !alice.pending.iter().any(|v| v["event"] == "accepted"),
        "accepted before the ack: {:?}",
        alice.log
    );
    alice.until(|v| v["event"] == "accepted").await;
    alice.say(&chat, "Hello Carol").await;
    customer.send(json!([{"event": "chat_session_end"}])).await;
    alice.until(|v| v["event"] == "ended").await;

    // Her chats: this one; bob handled none.
    let (status, chats) = get(&http, format!("{base}/agent/v1/chats"), &alice.token).await;
    assert_eq!(status, 200, "{chats}");
    assert_eq!(chats["chats"][0]["chat_id"], chat.as_str(), "{chats}");
    assert_eq!(chats["chats"][0]["phase"], "closed", "{chats}");
    let (_, none) = get(&http, format!("{base}/agent/v1/chats"), &bob_token).await;
    assert_eq!(none["chats"], json!([]), "{none}");

    // Its history, as the socket showed it live.
    let (status, history) = get(
        &http,
        format!("{base}/agent/v1/chats/{chat}/history"),
        &alice.token,
    )
    .await;
    assert_eq!(status, 200, "{history}");
    let events = history["events"].as_array().unwrap();
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    let at = |name: &str| {
        names
            .iter()
            .position(|n| *n == name)
            .unwrap_or_else(|| panic!("{name} in {names:?}"))
    };
    // The message sent before she accepted is there too: a desk that opens the chat shows it.
    assert!(
        events.iter().any(|v| v["msg"] == "My car was hit"),
        "{names:?}"
    );
    assert!(at("accepted") < at("ended"), "{names:?}");
    let live_said = alice
        .log
        .iter()
        .find(|v| v["event"] == "message" && v["msg"] == "Hello Carol")
        .unwrap();
    let stored_said = events
        .iter()
        .find(|v| v["event"] == "message" && v["msg"] == "Hello Carol")
        .unwrap();
    for key in ["chat_id", "seq", "from", "msg", "msg_id", "timestamp"] {
        assert_eq!(live_said[key], stored_said[key], "{key}");
    }

    // Only the agent who took it may read it.
    let (status, refused) = get(
        &http,
        format!("{base}/agent/v1/chats/{chat}/history"),
        &bob_token,
    )
    .await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (404, Some("chat_not_found"))
    );
    let (status, refused) = get(
        &http,
        format!("{base}/agent/v1/chats/{chat}/recordings/{chat}-1.wav"),
        &bob_token,
    )
    .await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (404, Some("chat_not_found"))
    );
    let (status, missing) = get(
        &http,
        format!("{base}/agent/v1/chats/{chat}/recordings/{chat}-1.wav"),
        &alice.token,
    )
    .await;
    assert_eq!(
        (status, missing["error"]["code"].as_str()),
        (404, Some("recording_not_found"))
    );
    let (status, _) = get(
        &http,
        format!("{base}/agent/v1/chats/{chat}/recordings/..%2Fetc%2Fpasswd"),
        &alice.token,
    )
    .await;
    assert_eq!(status, 400);
    server.abort();
}
