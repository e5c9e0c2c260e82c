//! The agent's desktop and the customer's app as the real binary's API sees them: the agent
//! socket (`/agent/v1/ws`) and the customer's chat with its WebSocket (`chats/{id}/ws`).
//!
//! Every wait is bounded by [`EVENT_TIMEOUT`]; events that arrive while a command waits for
//! its answer are kept for later, and every event either side received is kept in order, so a
//! test can check what came before what.
#![allow(dead_code)] // each test file uses a part of it

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The bound on any one awaited event.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(20);

/// A JSON text frame from `ws` within `within`; `None` on timeout or a closed socket.
pub async fn frame(ws: &mut Socket, within: Duration) -> Option<Value> {
    loop {
        match tokio::time::timeout(within, ws.next()).await.ok()?? {
            Ok(Message::Text(text)) => return Some(serde_json::from_str(&text).unwrap()),
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
}

/// An agent's desktop tab.
pub struct Desk {
    pub token: String,
    ws: Socket,
    pending: VecDeque<Value>,
    /// Every event taken from the socket so far, in order (acks and errors included).
    pub seen: Vec<Value>,
}

impl Desk {
    /// Logs `name` in with `password`, opens the socket and sets the agent available.
    pub async fn login(
        http: &reqwest::Client,
        addr: SocketAddr,
        name: &str,
        password: &str,
    ) -> Desk {
        let login: Value = http
            .post(format!("http://{addr}/agent/v1/login"))
            .json(&json!({"name": name, "password": password}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = login["token"].as_str().expect("a token").to_string();
        let url = format!("ws://{addr}/agent/v1/ws?token={token}");
        let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let mut desk = Desk {
            token,
            ws,
            pending: VecDeque::new(),
            seen: Vec::new(),
        };
        assert_eq!(desk.next().await["event"], "hello");
        let ack = desk
            .command(json!({"command": "set_state", "state": "available"}))
            .await;
        assert_eq!(ack["event"], "ack", "{ack}");
        desk
    }

    async fn take(&mut self) -> Value {
        let v = frame(&mut self.ws, EVENT_TIMEOUT)
            .await
            .unwrap_or_else(|| panic!("an agent event within the bound; seen: {:#?}", self.seen));
        self.seen.push(v.clone());
        v
    }

    pub async fn next(&mut self) -> Value {
        if let Some(v) = self.pending.pop_front() {
            return v;
        }
        self.take().await
    }

    /// The next event that satisfies `pred`; the others are passed over.
    pub async fn until(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        loop {
            let v = self.next().await;
            if pred(&v) {
                return v;
            }
        }
    }

    /// Sends a command and returns its `ack` or `error`.
    pub async fn command(&mut self, command: Value) -> Value {
        self.ws
            .send(Message::Text(command.to_string().into()))
            .await
            .unwrap();
        loop {
            let v = self.take().await;
            if v["event"] == "ack" || v["event"] == "error" {
                return v;
            }
            self.pending.push_back(v);
        }
    }

    /// The next `call_state` of `chat` in `state`.
    pub async fn call_state(&mut self, chat: &str, state: &str) -> Value {
        self.until(|v| v["event"] == "call_state" && v["chat_id"] == chat && v["state"] == state)
            .await
    }

    /// Takes the offered `chat` and waits until the customer sees it connected.
    pub async fn accept(&mut self, customer: &mut Customer) {
        let chat = customer.chat.clone();
        self.until(|v| v["event"] == "offer" && v["chat_id"] == chat.as_str())
            .await;
        let accepted = self
            .command(json!({"command": "accept", "chat_id": chat}))
            .await;
        assert_eq!(accepted["event"], "ack", "{accepted}");
        customer
            .until(|v| v["event"] == "chat_session_status" && v["state"] == "connected")
            .await;
    }

    /// The agent's transcript of `chat` as JSON events.
    pub async fn transcript(
        &self,
        http: &reqwest::Client,
        addr: SocketAddr,
        chat: &str,
    ) -> Vec<Value> {
        let body: Value = http
            .get(format!(
                "http://{addr}/agent/v1/chats/{chat}/transcript?format=json"
            ))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["events"].as_array().cloned().unwrap_or_default()
    }
}

/// The customer's app: its chat and the chat's WebSocket.
pub struct Customer {
    pub chat: String,
    ws: Socket,
    /// Every event taken from the socket so far, in order.
    pub seen: Vec<Value>,
}

impl Customer {
    /// Opens a chat on `entry` (the service's app id) from `device`, giving `phone_number`.
    pub async fn open(
        http: &reqwest::Client,
        addr: SocketAddr,
        entry: &str,
        device: &str,
        phone_number: &str,
    ) -> Customer {
        let auth = format!(r#"MOBILE-API-140-327-PLAIN appId="{entry}", clientId="{device}""#);
        let created: Value = http
            .post(format!("http://{addr}/clientweb/api/v1/chats"))
            .header("authorization", &auth)
            .json(&json!({"from": "Carol", "phone_number": phone_number}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let chat = created["chat_id"]
            .as_str()
            .unwrap_or_else(|| panic!("a chat id: {created}"))
            .to_string();
        let url = format!("ws://{addr}/clientweb/api/v1/chats/{chat}/ws");
        let mut request = url.into_client_request().unwrap();
        request
            .headers_mut()
            .insert("authorization", auth.parse().unwrap());
        let (ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        Customer {
            chat,
            ws,
            seen: Vec::new(),
        }
    }

    /// The next event that satisfies `pred`; the others are passed over.
    pub async fn until(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        loop {
            let v = frame(&mut self.ws, EVENT_TIMEOUT).await.unwrap_or_else(|| {
                panic!("a customer event within the bound; seen: {:#?}", self.seen)
            });
            self.seen.push(v.clone());
            if pred(&v) {
                return v;
            }
        }
    }

    /// Sends a batch of client events and waits for its `ack`.
    pub async fn send(&mut self, events: Value) {
        let batch = json!({ "events": events });
        self.ws
            .send(Message::Text(batch.to_string().into()))
            .await
            .unwrap();
        let ack = self
            .until(|v| v["event"] == "ack" || v["event"] == "error")
            .await;
        assert_eq!(ack["event"], "ack", "{ack}");
    }

    /// Writes `msg` into the chat.
    pub async fn say(&mut self, msg: &str) {
        self.send(json!([{"event": "chat_session_message", "msg": msg}]))
            .await;
    }
}
