//! Over real HTTP and WebSocket on 127.0.0.1: a customer chats, sends an image, drops the
//! socket, and resumes from the last `seq` it saw without losing or repeating an event.

use crate::api;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tandem::bridge::Command;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(addr: std::net::SocketAddr, chat: &str, after: Option<u64>) -> Socket {
    let query = after.map_or(String::new(), |s| format!("?after_seq={s}"));
    let url = format!("ws://{addr}/clientweb/api/v1/chats/{chat}/ws{query}");
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", api::auth("dev-1").parse().unwrap());
    tokio_tungstenite::connect_async(request).await.unwrap().0
}

/// The next JSON frame (a guard against hanging, not a timing assertion).
async fn next(ws: &mut Socket) -> Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(20), ws.next())
            .await
            .expect("a frame within 20 s")
            .expect("socket open")
            .unwrap();
        if let Message::Text(text) = frame {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

/// Reads frames until one matches.
async fn until(ws: &mut Socket, seen: &mut Vec<Value>, pred: impl Fn(&Value) -> bool) -> Value {
    loop {
        let v = next(ws).await;
        seen.push(v.clone());
        if pred(&v) {
            return v;
        }
    }
}

#[tokio::test]
async fn a_reconnecting_app_resumes_from_its_last_seq_without_loss_or_duplicates() {
    let api = api::Api::new().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = api.router.clone();
    let server = tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let http = reqwest::Client::new();
    let base = format!("http://{addr}/clientweb/api/v1");
    let auth = api::auth("dev-1");

    let chat: Value = http
        .post(format!("{base}/chats"))
        .header("authorization", &auth)
        .json(&json!({"from": "Carol"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let chat = chat["chat_id"].as_str().unwrap().to_string();

    let mut ws = connect(addr, &chat, None).await;
    let mut seen = Vec::new();
    until(&mut ws, &mut seen, |v| v["state"] == "queued").await;
    api.accept(&chat).await;
    until(&mut ws, &mut seen, |v| v["state"] == "connected").await;

    // A message over the socket is acknowledged with its seq, and echoed as an event.
    ws.send(Message::Text(
        json!({"ref": "r1", "events": [{"event": "chat_session_message", "msg_id": "w-1", "msg": "over the socket"}]})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let ack = until(&mut ws, &mut seen, |v| v["event"] == "ack").await;
    assert_eq!(ack["ref"], "r1");
    let acked = ack["accepted"][0]["seq"].as_u64().unwrap();
    until(&mut ws, &mut seen, |v| v["seq"] == acked).await;
    // An error on the socket is an event, the socket stays.
    ws.send(Message::Text("{\"event\": \"nope\"}".into()))
        .await
        .unwrap();
    let err = until(&mut ws, &mut seen, |v| v["event"] == "error").await;
    assert_eq!(err["error"]["code"], "unknown_event");

    // An image over real HTTP multipart.
    let file = api::upload_png(
        http.post(format!("{base}/files"))
            .header("authorization", &auth),
        b"photo",
        "dent.png",
    )
    .await;
    assert_eq!(file["file_type"], "image/png");
    let posted = http
        .post(format!("{base}/chats/{chat}/events"))
        .header("authorization", &auth)
        .json(&json!({"events": [{"event": "chat_session_file", "file_id": file["file_id"]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 200);
    until(&mut ws, &mut seen, |v| v["event"] == "chat_session_file").await;

    let last = seen.iter().filter_map(|v| v["seq"].as_u64()).max().unwrap();
    ws.close(None).await.unwrap();
    drop(ws);

    // While the app is away, both sides write.
    for n in 1..=3 {
        api.agent(
            &chat,
            Command::SendMessage {
                msg_id: Some(format!("a-{n}")),
                text: format!("agent {n}"),
            },
        )
        .await;
        let r = http
            .post(format!("{base}/chats/{chat}/events"))
            .header("authorization", &auth)
            .json(&json!({"events": [{"event": "chat_session_message", "msg_id": format!("c-{n}"), "msg": format!("customer {n}")}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }

    // The reference: what history says happened after `last`.
    let history: Value = http
        .get(format!("{base}/chats/{chat}/history"))
        .header("authorization", &auth)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let expected: Vec<Value> = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["seq"].as_u64().unwrap() > last)
        .cloned()
        .collect();
    assert_eq!(expected.len(), 6);
    let final_seq = expected.last().unwrap()["seq"].as_u64().unwrap();

    let mut ws = connect(addr, &chat, Some(last)).await;
    let mut resumed = Vec::new();
    until(&mut ws, &mut resumed, |v| v["seq"] == final_seq).await;
    assert_eq!(
        resumed, expected,
        "exactly the missed events, once, in order"
    );

    // Long polling from the same point over real HTTP gives the same events.
    let polled: Value = http
        .get(format!("{base}/chats/{chat}/events?after_seq={last}"))
        .header("authorization", &auth)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(polled["events"].as_array().unwrap(), &expected);

    // The chat ends: the socket says so and closes.
    api.agent(&chat, Command::EndSession).await;
    until(&mut ws, &mut resumed, |v| {
        v["event"] == "chat_session_ended"
    })
    .await;
    until(&mut ws, &mut resumed, |v| v["state"] == "completed").await;
    let end = tokio::time::timeout(Duration::from_secs(20), ws.next())
        .await
        .unwrap();
    assert!(matches!(
        end,
        None | Some(Ok(Message::Close(_))) | Some(Err(_))
    ));
    server.abort();
}
