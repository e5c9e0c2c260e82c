//! A fake SMS provider: a real HTTP server on 127.0.0.1 that records every request and
//! answers with the statuses it is told, then 200.
#![allow(dead_code)] // each test file uses a part of the harness

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::Value;
use tokio::sync::mpsc;

/// One request the provider got.
#[derive(Debug, Clone)]
pub struct Received {
    pub body: Value,
    pub headers: HeaderMap,
    pub at: tokio::time::Instant,
}

impl Received {
    pub fn to(&self) -> &str {
        self.body["to"].as_str().unwrap_or_default()
    }
    pub fn text(&self) -> &str {
        self.body["body"].as_str().unwrap_or_default()
    }
    /// The one-time link in an offer text.
    pub fn link(&self) -> String {
        let text = self.text();
        let start = text.find("http").expect("a link in the SMS");
        text[start..].split_whitespace().next().unwrap().to_string()
    }
}

#[derive(Clone)]
struct Shared {
    received: mpsc::UnboundedSender<Received>,
    answers: Arc<Mutex<VecDeque<u16>>>,
}

pub struct FakeProvider {
    pub addr: SocketAddr,
    received: mpsc::UnboundedReceiver<Received>,
    answers: Arc<Mutex<VecDeque<u16>>>,
    server: tokio::task::JoinHandle<()>,
}

async fn receive(
    State(shared): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> StatusCode {
    let _ = shared.received.send(Received {
        body,
        headers,
        at: tokio::time::Instant::now(),
    });
    let status = shared.answers.lock().unwrap().pop_front().unwrap_or(200);
    StatusCode::from_u16(status).unwrap()
}

impl FakeProvider {
    pub async fn start() -> FakeProvider {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, received) = mpsc::unbounded_channel();
        let answers = Arc::new(Mutex::new(VecDeque::new()));
        let shared = Shared {
            received: tx,
            answers: answers.clone(),
        };
        let app = axum::Router::new()
            .route("/sms", post(receive))
            .with_state(shared);
        let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeProvider {
            addr,
            received,
            answers,
            server,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/sms", self.addr)
    }

    /// The next requests get these statuses (then 200 again).
    pub fn answer_with(&self, statuses: &[u16]) {
        self.answers.lock().unwrap().extend(statuses);
    }

    /// The next SMS, within `within`.
    pub async fn next(&mut self, within: Duration) -> Received {
        tokio::time::timeout(within, self.received.recv())
            .await
            .expect("an SMS in time")
            .expect("provider running")
    }

    /// Whether no SMS arrives for `quiet`.
    pub async fn none_for(&mut self, quiet: Duration) -> Option<Received> {
        tokio::time::timeout(quiet, self.received.recv())
            .await
            .ok()
            .flatten()
    }
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        self.server.abort();
    }
}
