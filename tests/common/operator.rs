//! An in-process gateway for the mobile operator's API: its router, a fake SMS provider that
//! captures the links, and the interactions' leg actions on a channel, so a test plays the leg
//! driver (it sees every `StartLeg` the page's commands cause and reports legs up or gone).
#![allow(dead_code)] // each test file uses a part of the harness

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tandem::api::{AppState, app};
use tandem::bridge::{Action, Command, InteractionId, LegId, Party};
use tandem::chat::files::FileStore;
use tandem::chat::store::Store;
use tandem::config::Config;
use tandem::hub::Hub;
use tandem::metrics::Metrics;
use tokio::sync::mpsc;
use tower::ServiceExt;

pub(crate) use crate::sms;

/// The `claims` service (video allowed, PNGs accepted) and Olga, a mobile operator on duty.
pub fn config(provider: &str) -> String {
    let hash = tandem::routing::password::hash("desk");
    format!(
        r#"
[http]
listen = "127.0.0.1:0"
public_url = "http://gateway.test"
long_poll_timeout_s = 1

[sms]
url = "{provider}"

[files]
max_bytes = 65536
allowed_types = ["image/png", "application/pdf"]

[[services]]
name = "claims"
entries = ["claims-app"]
department = "claims"
video_allowed = true

[[agents]]
name = "olga"
display_name = "Olga"
password_hash = "{hash}"
departments = ["claims"]
mobile = "+15550101"
mobile_mode = "on"
"#
    )
}

pub struct Gateway {
    pub router: Router,
    pub state: AppState,
    pub provider: sms::FakeProvider,
    /// The leg actions of every interaction, as the leg driver would get them.
    pub actions: mpsc::UnboundedReceiver<(InteractionId, Action)>,
    _dir: tempfile::TempDir,
}

/// What a request answered.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub json: Value,
    pub bytes: Vec<u8>,
    pub content_type: String,
}

impl Answer {
    /// The stable code of an error answer.
    pub fn code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or("<no code>")
    }
}

impl Gateway {
    pub async fn start() -> Gateway {
        let provider = sms::FakeProvider::start().await;
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::parse(&config(&provider.url())).unwrap();
        config.store.url = format!("sqlite://{}/tandem.db", dir.path().display());
        config.files.dir = format!("{}/files", dir.path().display());
        let metrics = Arc::new(Metrics::default());
        let store = Store::open(&config.store.url, 4, metrics.clone())
            .await
            .unwrap();
        let (legs, actions) = mpsc::unbounded_channel();
        let hub = Hub::open(Arc::new(config), store, metrics, Some(legs))
            .await
            .unwrap();
        let state = AppState::new(tandem::server::parts(
            hub,
            FileStore::new(dir.path().join("files")),
        ));
        let router = app(state.clone());
        Gateway {
            router,
            state,
            provider,
            actions,
            _dir: dir,
        }
    }

    /// Any request; `auth` is the `authorization` header, if any.
    pub async fn request(
        &self,
        method: &str,
        uri: &str,
        auth: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        let request = match body {
            Some(body) => request
                .header("content-type", "application/json")
                .body(Body::from(body.to_string())),
            None => request.body(Body::empty()),
        }
        .unwrap();
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let bytes = response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer {
            status,
            json,
            bytes,
            content_type,
        }
    }

    /// A call on the customer API as `device`.
    pub async fn customer(
        &self,
        method: &str,
        path: &str,
        device: &str,
        body: Option<Value>,
    ) -> Answer {
        let auth = format!(r#"MOBILE-API-140-327-PLAIN appId="claims-app", clientId="{device}""#);
        let uri = format!("/clientweb/api/v1{path}");
        self.request(method, &uri, Some(&auth), body).await
    }

    /// Opens Carol's chat from `device` (with `phone`, if any) and returns it with the path of
    /// the link texted to Olga (`/m/{token}`).
    pub async fn chat_texted_to_olga(
        &mut self,
        device: &str,
        phone: Option<&str>,
    ) -> (String, String) {
        let mut fields = json!({"from": "Carol", "parameters": {"policy_number": "P-7"}});
        if let Some(phone) = phone {
            fields["phone_number"] = json!(phone);
        }
        let created = self.customer("POST", "/chats", device, Some(fields)).await;
        assert_eq!(created.status, 200, "{:?}", created.json);
        let chat = created.json["chat_id"].as_str().unwrap().to_string();
        let sms = self.provider.next(Duration::from_secs(10)).await;
        assert_eq!(sms.to(), "+15550101");
        let link = sms.link();
        let path = link
            .strip_prefix("http://gateway.test")
            .unwrap_or_else(|| panic!("a link to the gateway: {link}"))
            .to_string();
        (chat, path)
    }

    /// Claims the link at `path`; the session key.
    pub async fn claim(&self, path: &str) -> String {
        let claimed = self
            .request("POST", &format!("{path}/claim"), None, None)
            .await;
        assert_eq!(claimed.status, 200, "{:?}", claimed.json);
        claimed.json["session"].as_str().unwrap().to_string()
    }

    /// The operator's `method` on `path/what` with `session`.
    pub async fn operator(&self, method: &str, path: &str, what: &str, session: &str) -> Answer {
        let auth = format!("Bearer {session}");
        self.request(method, &format!("{path}/{what}"), Some(&auth), None)
            .await
    }

    /// Every event the operator's page gets from `after` on, polling until `pred` holds for
    /// one of them (bounded); all of them.
    pub async fn operator_events_until(
        &self,
        path: &str,
        session: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Vec<Value> {
        let mut all = Vec::new();
        let mut after = 0;
        for _ in 0..30 {
            let page = self
                .operator("GET", path, &format!("events?after={after}"), session)
                .await;
            assert_eq!(page.status, 200, "{:?}", page.json);
            after = page.json["last_seq"].as_u64().unwrap();
            all.extend(page.json["events"].as_array().unwrap().iter().cloned());
            if all.iter().any(&pred) {
                return all;
            }
        }
        panic!("the operator never saw the event: {all:#?}");
    }

    /// The next leg action for `chat` (bounded).
    pub async fn next_action(&mut self, chat: &str) -> Action {
        loop {
            let (id, action) = tokio::time::timeout(Duration::from_secs(10), self.actions.recv())
                .await
                .expect("a leg action in time")
                .expect("the hub runs");
            if id.0 == chat {
                return action;
            }
        }
    }

    /// Reports a leg as the leg driver would: `up`, else released with `reason`.
    pub async fn leg(&self, chat: &str, leg: LegId, up: bool, reason: &str) {
        let command = if up {
            Command::LegUp { leg }
        } else {
            Command::LegReleased {
                leg,
                reason: Some(reason.to_string()),
            }
        };
        self.state
            .hub()
            .command(&InteractionId(chat.to_string()), Party::System, command)
            .await
            .unwrap();
    }
}
