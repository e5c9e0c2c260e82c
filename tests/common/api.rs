//! An in-process gateway (store in a temp dir) and helpers to call its router.
#![allow(dead_code)] // each test file uses a part of the harness

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tandem::api::{AppState, app};
use tandem::bridge::{AgentId, Command, InteractionId, Party};
use tandem::chat::files::FileStore;
use tandem::chat::store::Store;
use tandem::config::Config;
use tandem::hub::Hub;
use tandem::metrics::Metrics;
use tower::ServiceExt;

pub const CONFIG: &str = r#"
[http]
listen = "127.0.0.1:0"
long_poll_timeout_s = 2
max_events_per_request = 5

[files]
max_bytes = 4096
allowed_types = ["image/png", "image/jpeg"]

[chat]
max_message_bytes = 1000
max_chats_per_device = 3

[[services]]
name = "claims"
entries = ["claims-app"]
department = "claims"
video_allowed = true

[[services]]
name = "night"
entries = ["night-app"]
department = "night"
hours = { days = [], open = "00:00", close = "00:01", closed_reason = "closed for the test" }
"#;

pub struct Api {
    pub dir: tempfile::TempDir,
    pub state: AppState,
    pub router: Router,
}

pub fn auth(device: &str) -> String {
    format!(r#"MOBILE-API-140-327-PLAIN appId="claims-app", clientId="{device}""#)
}

/// The smallest thing `infer` takes for a PNG.
pub fn png(extra: &[u8]) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x02\0\0\0".to_vec();
    bytes.extend_from_slice(extra);
    bytes
}

/// Uploads a small PNG named `name` as multipart over real HTTP with `request` (its URL and
/// authorization already set) and returns the JSON answer.
pub async fn upload_png(request: reqwest::RequestBuilder, extra: &[u8], name: &str) -> Value {
    let part = reqwest::multipart::Part::bytes(png(extra)).file_name(name.to_string());
    request
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

impl Api {
    pub async fn new() -> Api {
        Api::with_config(CONFIG).await
    }

    /// A gateway with another configuration (store and files still in a temp dir).
    pub async fn with_config(text: &str) -> Api {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::parse(text).unwrap();
        config.store.url = format!("sqlite://{}/tandem.db", dir.path().display());
        config.files.dir = format!("{}/files", dir.path().display());
        let metrics = Arc::new(Metrics::default());
        let store = Store::open(&config.store.url, 4, metrics.clone())
            .await
            .unwrap();
        let files = FileStore::new(&config.files.dir);
        let hub = Hub::open(Arc::new(config), store, metrics, None)
            .await
            .unwrap();
        let state = AppState::new(tandem::server::parts(hub, files));
        let router = app(state.clone());
        Api { dir, state, router }
    }

    pub async fn raw(
        &self,
        request: Request<Body>,
    ) -> (StatusCode, Vec<u8>, axum::http::HeaderMap) {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, body.to_vec(), headers)
    }

    /// A JSON call as `device` (no auth header when `device` is empty).
    pub async fn call(
        &self,
        method: &str,
        uri: &str,
        device: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(uri);
        if !device.is_empty() {
            request = request.header("authorization", auth(device));
        }
        let request = match body {
            Some(body) => request
                .header("content-type", "application/json")
                .body(Body::from(body.to_string())),
            None => request.body(Body::empty()),
        }
        .unwrap();
        let (status, body, _) = self.raw(request).await;
        let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        (status, value)
    }

    pub async fn create_chat(&self, device: &str) -> String {
        let (status, body) = self
            .call(
                "POST",
                "/clientweb/api/v1/chats",
                device,
                Some(json!({"phone_number": "+15550100", "from": "Carol",
                            "parameters": {"policy": "P-1"}})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["state"], "queued");
        body["chat_id"].as_str().unwrap().to_string()
    }

    pub async fn send(&self, chat: &str, device: &str, events: Value) -> (StatusCode, Value) {
        self.call(
            "POST",
            &format!("/clientweb/api/v1/chats/{chat}/events"),
            device,
            Some(json!({ "events": events })),
        )
        .await
    }

    pub async fn say(&self, chat: &str, device: &str, msg_id: &str, text: &str) -> Value {
        let (status, body) = self
            .send(
                chat,
                device,
                json!([{"event": "chat_session_message", "msg_id": msg_id, "msg": text}]),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// The agent side, straight to the interaction (agents are not on the API yet).
    pub async fn agent(&self, chat: &str, command: Command) {
        self.state
            .hub()
            .command(
                &InteractionId(chat.into()),
                Party::Agent(AgentId::from("alice")),
                command,
            )
            .await
            .unwrap();
    }

    pub async fn accept(&self, chat: &str) {
        self.agent(
            chat,
            Command::Accept {
                display_name: "Alice".into(),
            },
        )
        .await;
    }

    pub async fn history(&self, chat: &str, device: &str) -> Vec<Value> {
        let (status, body) = self
            .call(
                "GET",
                &format!("/clientweb/api/v1/chats/{chat}/history"),
                device,
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["events"].as_array().unwrap().clone()
    }
}

/// `(status, code)` of an error answer.
pub fn code(answer: &(StatusCode, Value)) -> (u16, &str) {
    (
        answer.0.as_u16(),
        answer.1["error"]["code"].as_str().unwrap_or("<no code>"),
    )
}
