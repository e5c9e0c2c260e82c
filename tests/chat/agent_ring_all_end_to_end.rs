//! Over real HTTP and WebSockets on 127.0.0.1: a customer's chat is offered ring-all to two
//! agents' sockets; one accepts, the other sees it withdrawn; messages and an image go both
//! ways; the agent ends the session and both sides get the transcript.

use crate::api;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tandem::routing::password;
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn config() -> String {
    let hash = password::hash("desk");
    format!(
        r#"
[files]
max_bytes = 4096
allowed_types = ["image/png"]

[[services]]
name = "claims"
entries = ["claims-app"]
department = "claims"
routing = "ring_all"

[[agents]]
name = "alice"
display_name = "Alice"
password_hash = "{hash}"
departments = ["claims"]

[[agents]]
name = "bob"
password_hash = "{hash}"
departments = ["claims"]
"#
    )
}

async fn login(http: &reqwest::Client, base: &str, name: &str, pw: &str) -> (u16, Value) {
    let r = http
        .post(format!("{base}/agent/v1/login"))
        .json(&json!({"name": name, "password": pw}))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// An agent tab: frames that arrived while waiting for a command's answer are kept.
struct Tab {
    ws: Socket,
    pending: std::collections::VecDeque<Value>,
}

async fn next(tab: &mut Tab) -> Value {
    if let Some(v) = tab.pending.pop_front() {
        return v;
    }
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(20), tab.ws.next())
            .await
            .expect("a frame within 20 s")
            .expect("socket open")
            .unwrap();
        if let Message::Text(text) = frame {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

async fn until(tab: &mut Tab, pred: impl Fn(&Value) -> bool) -> Value {
    loop {
        let v = next(tab).await;
        if pred(&v) {
            return v;
        }
    }
}

/// Sends a command and waits for its answer, keeping the events that came meanwhile.
async fn command(tab: &mut Tab, cmd: Value) -> Value {
    tab.ws
        .send(Message::Text(cmd.to_string().into()))
        .await
        .unwrap();
    let mut skipped = Vec::new();
    let reply = loop {
        let frame = tokio::time::timeout(Duration::from_secs(20), tab.ws.next())
            .await
            .expect("a frame within 20 s")
            .expect("socket open")
            .unwrap();
        let Message::Text(text) = frame else { continue };
        let v: Value = serde_json::from_str(&text).unwrap();
        if v["event"] == "ack" || v["event"] == "error" {
            break v;
        }
        skipped.push(v);
    };
    tab.pending.extend(skipped);
    reply
}

#[tokio::test]
async fn a_ring_all_chat_is_won_by_one_agent_and_carried_to_its_end() {
    let api = api::Api::with_config(&config()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = api.router.clone();
    let server = tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let http = reqwest::Client::new();
    let base = format!("http://{addr}");
    let auth = api::auth("dev-1");

    assert_eq!(
        login(&http, &base, "alice", "wrong").await.1["error"]["code"],
        "bad_credentials"
    );
    assert_eq!(login(&http, &base, "nobody", "desk").await.0, 401);
    let mut sockets = Vec::new();
    for name in ["alice", "bob"] {
        let (status, body) = login(&http, &base, name, "desk").await;
        assert_eq!(status, 200, "{body}");
        let token = body["token"].as_str().unwrap().to_string();
        let url = format!("ws://{addr}/agent/v1/ws?token={token}");
        let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let mut ws = Tab {
            ws,
            pending: Default::default(),
        };
        let hello = next(&mut ws).await;
        assert_eq!(hello["event"], "hello");
        assert_eq!(hello["state"], "away");
        let ack = command(
            &mut ws,
            json!({"command": "set_state", "state": "available", "ref": 1}),
        )
        .await;
        assert_eq!(ack["event"], "ack", "{ack}");
        sockets.push((ws, token));
    }
    let (mut bob, _) = sockets.pop().unwrap();
    let (mut alice, alice_token) = sockets.pop().unwrap();
    // A bad token cannot open the socket.
    assert!(
        tokio_tungstenite::connect_async(format!("ws://{addr}/agent/v1/ws?token=nope"))
            .await
            .is_err()
    );

    let chat: Value = http
        .post(format!("{base}/clientweb/api/v1/chats"))
        .header("authorization", &auth)
        .json(&json!({"from": "Carol", "parameters": {"policy": "P-1"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let chat = chat["chat_id"].as_str().unwrap().to_string();

    // Both are offered the chat with the customer and the context.
    for ws in [&mut alice, &mut bob] {
        let offer = until(ws, |v| v["event"] == "offer").await;
        assert_eq!(offer["chat_id"], chat.as_str());
        assert_eq!(offer["service"], "claims");
        assert_eq!(offer["customer"]["name"], "Carol");
        assert_eq!(offer["context"]["policy"], "P-1");
    }
    let won = command(&mut alice, json!({"command": "accept", "chat_id": chat})).await;
    assert_eq!(won["event"], "ack", "{won}");
    let lost = command(&mut bob, json!({"command": "accept", "chat_id": chat})).await;
    assert_eq!(lost["error"]["code"], "offer_not_available");
    let withdrawn = until(&mut bob, |v| v["event"] == "withdrawn").await;
    assert_eq!(withdrawn["chat_id"], chat.as_str());
    assert_eq!(withdrawn["reason"], "taken");
    until(&mut alice, |v| v["event"] == "accepted").await;
    // Bob may not write into alice's chat.
    let refused = command(
        &mut bob,
        json!({"command": "send_message", "chat_id": chat, "msg": "hi"}),
    )
    .await;
    assert_eq!(refused["error"]["code"], "not_permitted");
    // Refusals of call commands carry stable codes.
    let refused = command(
        &mut alice,
        json!({"command": "call_customer", "chat_id": chat, "number": "call me"}),
    )
    .await;
    assert_eq!(refused["error"]["code"], "invalid_number");
    let refused = command(
        &mut alice,
        json!({"command": "drop_video", "chat_id": chat}),
    )
    .await;
    assert_eq!(refused["error"]["code"], "only_customer_may_drop_video");

    // Customer → agent: a message and an image.
    let customer_events = format!("{base}/clientweb/api/v1/chats/{chat}/events");
    let r = http
        .post(&customer_events)
        .header("authorization", &auth)
        .json(&json!({"events": [{"event": "chat_session_message", "msg_id": "c-1", "msg": "my car is dented"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let msg = until(&mut alice, |v| v["event"] == "message").await;
    assert_eq!(msg["msg"], "my car is dented");
    assert_eq!(msg["from"], "customer");
    let file = api::upload_png(
        http.post(format!("{base}/clientweb/api/v1/files"))
            .header("authorization", &auth),
        b"dent",
        "dent.png",
    )
    .await;
    http.post(&customer_events)
        .header("authorization", &auth)
        .json(&json!({"events": [{"event": "chat_session_file", "file_id": file["file_id"]}]}))
        .send()
        .await
        .unwrap();
    let seen = until(&mut alice, |v| v["event"] == "file").await;
    let bytes = http
        .get(format!(
            "{base}/agent/v1/chats/{chat}/files/{}",
            seen["file_id"].as_str().unwrap()
        ))
        .bearer_auth(&alice_token)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&bytes[..], &api::png(b"dent")[..]);

    // Agent → customer: a read receipt, a message and an image.
    let read = command(
        &mut alice,
        json!({"command": "mark_read", "chat_id": chat, "msg_id": "c-1"}),
    )
    .await;
    assert_eq!(read["event"], "ack", "{read}");
    let said = command(&mut alice, json!({"command": "send_message", "chat_id": chat, "msg_id": "a-1", "msg": "send me a photo of the plate"})).await;
    assert_eq!(said["event"], "ack", "{said}");
    let mine = api::upload_png(
        http.post(format!("{base}/agent/v1/files"))
            .bearer_auth(&alice_token),
        b"form",
        "form.png",
    )
    .await;
    let sent = command(
        &mut alice,
        json!({"command": "send_file", "chat_id": chat, "file_id": mine["file_id"]}),
    )
    .await;
    assert_eq!(sent["event"], "ack", "{sent}");
    let history: Value = http
        .get(format!("{base}/clientweb/api/v1/chats/{chat}/history"))
        .header("authorization", &auth)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let events = history["events"].as_array().unwrap();
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "chat_session_message_read" && e["ref_msg_id"] == "c-1")
    );
    assert!(events.iter().any(
        |e| e["event"] == "chat_session_message" && e["msg"] == "send me a photo of the plate"
    ));
    let agent_file = events
        .iter()
        .find(|e| e["event"] == "chat_session_file" && e["party_id"] == "alice")
        .expect("the agent's image");
    let got = http
        .get(format!(
            "{base}/clientweb/api/v1/chats/{chat}/files/{}",
            agent_file["file_id"].as_str().unwrap()
        ))
        .header("authorization", &auth)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&got[..], &api::png(b"form")[..]);

    // The agent ends the session: both sides learn it, and both get the transcript.
    let ended = command(
        &mut alice,
        json!({"command": "end_session", "chat_id": chat}),
    )
    .await;
    assert_eq!(ended["event"], "ack", "{ended}");
    let ended = until(&mut alice, |v| v["event"] == "ended").await;
    let link = ended["transcript"].as_str().unwrap().to_string();
    let transcript = http
        .get(format!("{base}{link}?format=text"))
        .bearer_auth(&alice_token)
        .send()
        .await
        .unwrap();
    assert_eq!(transcript.status(), 200);
    let text = transcript.text().await.unwrap();
    assert!(text.contains("my car is dented"), "{text}");
    assert!(text.contains("send me a photo of the plate"), "{text}");
    assert!(
        text.contains("dent.png") && text.contains("form.png"),
        "{text}"
    );
    let history: Value = http
        .get(format!("{base}/clientweb/api/v1/chats/{chat}/history"))
        .header("authorization", &auth)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let events = history["events"].as_array().unwrap();
    assert!(events.iter().any(|e| e["event"] == "chat_session_ended"));
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "chat_session_message" && e["msg"] == "my car is dented")
    );
    // Bob never took the chat: its transcript is not his to read.
    let (_, bob_login) = login(&http, &base, "bob", "desk").await;
    let denied = http
        .get(format!("{base}{link}"))
        .bearer_auth(bob_login["token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 404);
    server.abort();
}
