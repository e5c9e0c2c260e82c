//! SMS as a customer channel, over real HTTP with a fake provider on 127.0.0.1: an inbound text
//! (shared secret checked) opens a chat that an agent takes on the desktop; the next text from
//! the same phone continues it; the agent's replies go back by SMS, a long one as a
//! concatenated SMS (GSM-7 153 / UCS-2 67 characters per part).

use crate::api;
use crate::sms;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tandem::routing::password;
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const SECRET: &str = "inbound-secret-0123456789";

fn config(provider: &str) -> String {
    let hash = password::hash("desk");
    format!(
        r#"
[sms]
url = "{provider}"
inbound_secret = "{SECRET}"
inbound_service = "claims"

[[services]]
name = "claims"
entries = ["claims-app"]
department = "claims"

[[agents]]
name = "alice"
display_name = "Alice"
password_hash = "{hash}"
departments = ["claims"]
"#
    )
}

async fn next(ws: &mut Socket, pred: impl Fn(&Value) -> bool) -> Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a frame in time")
            .expect("socket open")
            .unwrap();
        if let Message::Text(text) = frame {
            let v: Value = serde_json::from_str(&text).unwrap();
            if pred(&v) {
                return v;
            }
        }
    }
}

async fn command(ws: &mut Socket, cmd: Value) {
    ws.send(Message::Text(cmd.to_string().into()))
        .await
        .unwrap();
    let v = next(ws, |v| v["event"] == "ack" || v["event"] == "error").await;
    assert_eq!(v["event"], "ack", "{v}");
}

#[tokio::test]
async fn texts_open_and_continue_a_chat_and_replies_go_back_by_sms() {
    let mut provider = sms::FakeProvider::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let gw = api::Api::with_config(&config(&provider.url())).await;
    let router = gw.router.clone();
    let server = tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let http = reqwest::Client::new();
    let inbound = format!("{base}/sms/v1/inbound");

    // Alice is at her desk.
    let login: Value = http
        .post(format!("{base}/agent/v1/login"))
        .json(&json!({"name": "alice", "password": "desk"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["token"].as_str().unwrap();
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/agent/v1/ws?token={token}", &base[7..]))
            .await
            .unwrap();
    next(&mut ws, |v| v["event"] == "hello").await;
    command(
        &mut ws,
        json!({"command": "set_state", "state": "available"}),
    )
    .await;

    // Without the shared secret the webhook is refused.
    let text = json!({"from": "+15550123", "body": "Hi, my car broke down", "message_id": "p-1"});
    for secret in [None, Some("wrong")] {
        let mut r = http.post(&inbound).json(&text);
        if let Some(s) = secret {
            r = r.header("x-sms-secret", s);
        }
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), 401);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "bad_secret");
    }

    // A text without the provider's id could not be told from its own retry: refused.
    let r = http
        .post(&inbound)
        .header("x-sms-secret", SECRET)
        .json(&json!({"from": "+15550123", "body": "Hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_json", "{body}");

    // The first text opens a chat, offered to Alice with the number.
    let opened: Value = http
        .post(&inbound)
        .header("x-sms-secret", SECRET)
        .json(&text)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let chat = opened["chat_id"].as_str().expect("a chat").to_string();
    let offer = next(&mut ws, |v| v["event"] == "offer").await;
    assert_eq!(offer["chat_id"], chat.as_str());
    assert_eq!(offer["customer"]["phone"], "+15550123");
    command(&mut ws, json!({"command": "accept", "chat_id": chat})).await;
    // The provider retrying the same text changes nothing.
    let again: Value = http
        .post(&inbound)
        .header("x-sms-secret", SECRET)
        .json(&text)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again["chat_id"], chat.as_str());

    // A short reply is one SMS.
    command(
        &mut ws,
        json!({"command": "send_message", "chat_id": chat, "msg": "Where are you?"}),
    )
    .await;
    let sms = provider.next(Duration::from_secs(10)).await;
    assert_eq!(sms.to(), "+15550123");
    assert_eq!(sms.text(), "Where are you?");
    assert_eq!(sms.body["segments"], 1);

    // The next text from the same phone continues the chat.
    let more = json!({"from": "+15550123", "body": "On the A6 near Lyon", "message_id": "p-2"});
    let continued: Value = http
        .post(&inbound)
        .header("x-sms-secret", SECRET)
        .json(&more)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(continued["chat_id"], chat.as_str());
    let heard = next(&mut ws, |v| {
        v["event"] == "message" && v["from"] == "customer"
    })
    .await;
    assert_eq!(heard["msg"], "On the A6 near Lyon");

    // A 200-character reply goes as a concatenated GSM-7 SMS: 153 + 47.
    let long = "A".repeat(100) + &"b".repeat(100);
    command(
        &mut ws,
        json!({"command": "send_message", "chat_id": chat, "msg": long}),
    )
    .await;
    let sms = provider.next(Duration::from_secs(10)).await;
    assert_eq!(sms.text(), long);
    assert_eq!(sms.body["encoding"], "gsm7");
    assert_eq!(sms.body["segments"], 2);
    let parts: Vec<&str> = sms.body["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!((parts[0].len(), parts[1].len()), (153, 47));
    assert_eq!(parts.concat(), long);

    // A reply with characters outside GSM-7 is UCS-2 and is not altered: 100 → 67 + 33.
    let cyrillic = "д".repeat(100);
    command(
        &mut ws,
        json!({"command": "send_message", "chat_id": chat, "msg": cyrillic}),
    )
    .await;
    let sms = provider.next(Duration::from_secs(10)).await;
    assert_eq!(sms.text(), cyrillic);
    assert_eq!(sms.body["encoding"], "ucs2");
    assert_eq!(sms.body["segments"], 2);
    assert_eq!(sms.body["parts"][0].as_str().unwrap().chars().count(), 67);
    server.abort();
}
