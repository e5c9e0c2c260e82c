//! The agent's desktop and the customer's app as a gateway's API sees them: the agent socket
//! (`/agent/v1/ws`) and the customer's chat with its WebSocket (`chats/{id}/ws`), for the real
//! binary and for in-process routers alike.
//!
//! Every wait is bounded by [`EVENT_TIMEOUT`]; events that arrive while a command waits for
//! its answer are kept for later, and every event either side received is kept in order, so a
//! test can check what came before what.
#![allow(dead_code)] // each test file uses a part of it

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The bound on any one awaited event.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(20);

/// Serves `router` on a free loopback port until the returned task is aborted.
pub async fn serve(router: axum::Router) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (addr, server)
}

/// A socket of JSON events and commands, as both the desk and the app use it. Every event
/// received is in `log`, in order; those no wait has taken yet are in `pending`.
pub struct Events {
    ws: Socket,
    pub pending: VecDeque<Value>,
    pub log: Vec<Value>,
    pub closed: bool,
    name: &'static str,
}

impl Events {
    pub fn new(ws: Socket, name: &'static str) -> Events {
        Events {
            ws,
            pending: VecDeque::new(),
            log: Vec::new(),
            closed: false,
            name,
        }
    }

    /// The next frame within `within`, logged; `None` on timeout or once the socket is closed.
    pub async fn frame(&mut self, within: Duration) -> Option<Value> {
        if self.closed {
            tokio::time::sleep(within).await;
            return None;
        }
        loop {
            let frame = match tokio::time::timeout(within, self.ws.next()).await.ok()? {
                Some(Ok(frame)) => frame,
                Some(Err(_)) | None => {
                    self.closed = true;
                    return None;
                }
            };
            if let Message::Text(text) = frame {
                let value: Value = serde_json::from_str(&text).unwrap();
                self.log.push(value.clone());
                return Some(value);
            }
        }
    }

    /// The next event: the oldest pending one, or a new one within the bound.
    pub async fn next(&mut self) -> Value {
        if let Some(v) = self.pending.pop_front() {
            return v;
        }
        match self.frame(EVENT_TIMEOUT).await {
            Some(v) => v,
            None => panic!(
                "the {} saw no event within {EVENT_TIMEOUT:?}; it saw:\n{:#?}",
                self.name, self.log
            ),
        }
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

    /// Takes the first pending event that matches.
    pub fn take(&mut self, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        let at = self.pending.iter().position(pred)?;
        self.pending.remove(at)
    }

    /// The first event matching `pred`, pending or new; the others stay pending.
    pub async fn until_keeping(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(v) = self.take(&pred) {
            return v;
        }
        let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
        while tokio::time::Instant::now() < deadline {
            if let Some(v) = self.frame(Duration::from_millis(200)).await {
                if pred(&v) {
                    return v;
                }
                self.pending.push_back(v);
            }
        }
        panic!(
            "the {} saw no awaited event within {EVENT_TIMEOUT:?}; it saw:\n{:#?}",
            self.name, self.log
        );
    }

    /// Sends `command` and returns its `ack` or `error`; other events stay pending.
    pub async fn command(&mut self, command: Value) -> Value {
        self.ws
            .send(Message::Text(command.to_string().into()))
            .await
            .unwrap();
        let deadline = tokio::time::Instant::now() + EVENT_TIMEOUT;
        while tokio::time::Instant::now() < deadline {
            if let Some(v) = self.frame(Duration::from_millis(200)).await {
                if v["event"] == "ack" || v["event"] == "error" {
                    return v;
                }
                self.pending.push_back(v);
            }
        }
        panic!("the {} got no answer to {command}", self.name);
    }

    /// Closes the TCP connection under the socket without a close frame, as a crashed
    /// browser or a dead network does; the socket reads as closed from then on.
    pub fn kill(&mut self) {
        if let tokio_tungstenite::MaybeTlsStream::Plain(tcp) = self.ws.get_ref() {
            let _ = socket2::SockRef::from(tcp).shutdown(std::net::Shutdown::Both);
        }
        self.closed = true;
    }

    /// Whether any event seen so far matches.
    pub fn saw(&self, pred: impl Fn(&Value) -> bool) -> bool {
        self.log.iter().any(pred)
    }
}

/// Lets a client be used as the [`Events`] socket it holds in `events`.
macro_rules! on_events {
    ($client:ty) => {
        impl Deref for $client {
            type Target = Events;
            fn deref(&self) -> &Events {
                &self.events
            }
        }

        impl DerefMut for $client {
            fn deref_mut(&mut self) -> &mut Events {
                &mut self.events
            }
        }
    };
}

/// Logs `name` in with `password` and returns the token.
pub async fn login(http: &reqwest::Client, addr: SocketAddr, name: &str, password: &str) -> String {
    let body: Value = http
        .post(format!("http://{addr}/agent/v1/login"))
        .json(&json!({"name": name, "password": password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["token"].as_str().expect("a login token").to_string()
}

/// An agent's desktop tab: the agent socket and the token it was opened with.
pub struct Desk {
    pub token: String,
    events: Events,
}

on_events!(Desk);

impl Desk {
    /// Logs `name` in with `password`, opens the socket and sets the agent available.
    pub async fn login(
        http: &reqwest::Client,
        addr: SocketAddr,
        name: &str,
        password: &str,
    ) -> Desk {
        let token = login(http, addr, name, password).await;
        let (mut desk, _) = Desk::open(addr, &token).await;
        desk.available().await;
        desk
    }

    /// A desk on a socket opened with `token`, nothing read yet.
    pub fn from_socket(ws: Socket, token: String) -> Desk {
        Desk {
            token,
            events: Events::new(ws, "agent's desk"),
        }
    }

    /// Opens the agent socket with `token` and reads its `hello`.
    pub async fn open(addr: SocketAddr, token: &str) -> (Desk, Value) {
        let url = format!("ws://{addr}/agent/v1/ws?token={token}");
        let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let mut desk = Desk {
            token: token.to_string(),
            events: Events::new(ws, "agent's desk"),
        };
        let hello = desk.next().await;
        assert_eq!(hello["event"], "hello", "{hello}");
        (desk, hello)
    }

    /// Goes available and checks the answer.
    pub async fn available(&mut self) {
        let ack = self
            .command(json!({"command": "set_state", "state": "available"}))
            .await;
        assert_eq!(ack["event"], "ack", "{ack}");
    }

    /// Repeats `command` until it is acknowledged (the request it answers may not have reached
    /// the interaction yet) or `within` has passed; the last answer.
    pub async fn command_until_ack(&mut self, command: Value, within: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let reply = self.command(command.clone()).await;
            if reply["event"] == "ack" || tokio::time::Instant::now() > deadline {
                return reply;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The next event named `event` about `chat`.
    pub async fn event(&mut self, event: &str, chat: &str) -> Value {
        self.until(|v| v["event"] == event && v["chat_id"] == chat)
            .await
    }

    /// Writes `msg` into `chat`; the gateway acknowledges it.
    pub async fn say(&mut self, chat: &str, msg: &str) {
        let said = self
            .command(json!({"command": "send_message", "chat_id": chat, "msg": msg}))
            .await;
        assert_eq!(said["event"], "ack", "{said}");
    }

    /// The customer writes `from_customer` and the agent reads it; the agent answers
    /// `from_agent` and the customer reads it: the chat is alive both ways.
    pub async fn chat_both_ways(
        &mut self,
        customer: &mut Customer,
        from_customer: &str,
        from_agent: &str,
    ) {
        customer.say(from_customer).await;
        self.until(|v| v["event"] == "message" && v["msg"] == from_customer)
            .await;
        let chat = customer.chat.clone();
        self.say(&chat, from_agent).await;
        customer
            .until(|v| v["event"] == "chat_session_message" && v["msg"] == from_agent)
            .await;
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

/// The customer API's `authorization` for `device` on `entry` (the service's app id).
pub fn auth(entry: &str, device: &str) -> String {
    format!(r#"MOBILE-API-140-327-PLAIN appId="{entry}", clientId="{device}""#)
}

/// Opens a chat with `fields` (`from`, `phone_number`, …) as `auth`; the chat id.
pub async fn create_chat(
    http: &reqwest::Client,
    addr: SocketAddr,
    auth: &str,
    fields: Value,
) -> String {
    let created: Value = http
        .post(format!("http://{addr}/clientweb/api/v1/chats"))
        .header("authorization", auth)
        .json(&fields)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    created["chat_id"]
        .as_str()
        .unwrap_or_else(|| panic!("a chat id: {created}"))
        .to_string()
}

/// The customer's app: its chat and the chat's WebSocket.
pub struct Customer {
    pub chat: String,
    events: Events,
}

on_events!(Customer);

impl Customer {
    /// Opens a chat on `entry` (the service's app id) from `device`, giving `phone_number`.
    pub async fn open(
        http: &reqwest::Client,
        addr: SocketAddr,
        entry: &str,
        device: &str,
        phone_number: &str,
    ) -> Customer {
        let fields = json!({"from": "Carol", "phone_number": phone_number});
        Customer::open_with(http, addr, entry, device, fields).await
    }

    /// Opens a chat on `entry` from `device` with `fields`, and its WebSocket.
    pub async fn open_with(
        http: &reqwest::Client,
        addr: SocketAddr,
        entry: &str,
        device: &str,
        fields: Value,
    ) -> Customer {
        let auth = auth(entry, device);
        let chat = create_chat(http, addr, &auth, fields).await;
        let url = format!("ws://{addr}/clientweb/api/v1/chats/{chat}/ws");
        let mut request = url.into_client_request().unwrap();
        request
            .headers_mut()
            .insert("authorization", auth.parse().unwrap());
        let (ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        Customer {
            chat,
            events: Events::new(ws, "customer's app"),
        }
    }

    /// Sends a batch of client events and waits for its `ack`.
    pub async fn send(&mut self, events: Value) {
        let ack = self.command(json!({ "events": events })).await;
        assert_eq!(ack["event"], "ack", "{ack}");
    }

    /// Writes `msg` into the chat.
    pub async fn say(&mut self, msg: &str) {
        self.send(json!([{"event": "chat_session_message", "msg": msg}]))
            .await;
    }

    /// Sends a signalling message from the app; the gateway acknowledges every batch.
    pub async fn signal(&mut self, data: Value) {
        self.send(json!([{"event": "chat_session_signaling", "data": data}]))
            .await;
    }

    /// The next signalling message of `kind` the gateway sends the app.
    pub async fn signalled(&mut self, kind: &str) -> Value {
        self.until(|v| v["event"] == "chat_session_signaling" && v["data"]["type"] == kind)
            .await
    }
}
