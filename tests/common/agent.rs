//! Agent desktop tabs over a real agent WebSocket on 127.0.0.1, for in-process gateways.
#![allow(dead_code)] // each test file uses a part of the harness

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Serves `router` on a free loopback port until the returned task is aborted.
pub async fn serve(router: axum::Router) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (addr, server)
}

/// Logs `name` in (password `desk`) and returns the token.
pub async fn login(http: &reqwest::Client, addr: SocketAddr, name: &str) -> String {
    let body: Value = http
        .post(format!("http://{addr}/agent/v1/login"))
        .json(&json!({"name": name, "password": "desk"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["token"].as_str().expect("a login token").to_string()
}

/// One desktop tab: frames that arrived while waiting for a command's answer are kept.
pub struct Tab {
    ws: Socket,
    pending: VecDeque<Value>,
}

impl Tab {
    /// Opens the agent socket with `token` and reads its `hello`.
    pub async fn open(addr: SocketAddr, token: &str) -> (Tab, Value) {
        let url = format!("ws://{addr}/agent/v1/ws?token={token}");
        let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let mut tab = Tab {
            ws,
            pending: VecDeque::new(),
        };
        let hello = tab.next().await;
        assert_eq!(hello["event"], "hello", "{hello}");
        (tab, hello)
    }

    async fn frame(&mut self) -> Value {
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(20), self.ws.next())
                .await
                .expect("a frame within 20 s")
                .expect("socket open")
                .unwrap();
            if let Message::Text(text) = frame {
                return serde_json::from_str(&text).unwrap();
            }
        }
    }

    /// The next event.
    pub async fn next(&mut self) -> Value {
        match self.pending.pop_front() {
            Some(v) => v,
            None => self.frame().await,
        }
    }

    /// The next event that matches, skipping the others.
    pub async fn until(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        loop {
            let v = self.next().await;
            if pred(&v) {
                return v;
            }
        }
    }

    /// The next event named `event` about `chat`.
    pub async fn event(&mut self, event: &str, chat: &str) -> Value {
        self.until(|v| v["event"] == event && v["chat_id"] == chat)
            .await
    }

    /// Sends a command and waits for its `ack` or `error`, keeping the events that came meanwhile.
    pub async fn command(&mut self, cmd: Value) -> Value {
        self.ws
            .send(Message::Text(cmd.to_string().into()))
            .await
            .unwrap();
        let mut skipped = Vec::new();
        let reply = loop {
            let v = self.frame().await;
            if v["event"] == "ack" || v["event"] == "error" {
                break v;
            }
            skipped.push(v);
        };
        self.pending.extend(skipped);
        reply
    }

    /// Goes available and checks the answer.
    pub async fn available(&mut self) {
        let ack = self
            .command(json!({"command": "set_state", "state": "available"}))
            .await;
        assert_eq!(ack["event"], "ack", "{ack}");
    }
}
