//! Over real HTTP on 127.0.0.1, with a fake SMS provider started by the test: when nobody of
//! the department is at a desk, a ring-all chat is texted to every mobile operator on duty; the
//! first to claim the link takes the chat, later claims are told it is already taken; the
//! operator chats with the customer and gets the transcript at the end. An operator who logs in
//! to the desktop gets no more SMS (their standing link expires, the chat is offered on the
//! desk instead) and can pick up a waiting chat.

use crate::api;
use crate::sms;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tandem::routing::password;
use tokio_tungstenite::tungstenite::Message;

fn config(base: &str, provider: &str) -> String {
    let hash = password::hash("desk");
    format!(
        r#"
[http]
public_url = "{base}"
long_poll_timeout_s = 2

[sms]
url = "{provider}"
auth_header = "Authorization: Bearer sms-key"
from = "Tandem"
backoff_ms = 50
max_backoff_ms = 200

[[services]]
name = "claims"
entries = ["claims-app"]
department = "claims"
routing = "ring_all"

[[agents]]
name = "olga"
display_name = "Olga"
password_hash = "{hash}"
departments = ["claims"]
mobile = "+15550101"
mobile_mode = "on"

[[agents]]
name = "omar"
display_name = "Omar"
password_hash = "{hash}"
departments = ["claims"]
mobile = "+15550102"
mobile_mode = "on"

[[agents]]
name = "desk-only"
password_hash = "{hash}"
departments = ["other"]
"#
    )
}

struct Gateway {
    base: String,
    http: reqwest::Client,
    _api: api::Api,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn gateway(provider: &sms::FakeProvider) -> Gateway {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let api = api::Api::with_config(&config(&base, &provider.url())).await;
    let router = api.router.clone();
    let server = tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    Gateway {
        base,
        http: reqwest::Client::new(),
        _api: api,
        server,
    }
}

impl Gateway {
    async fn new_chat(&self, device: &str, name: &str) -> String {
        let r: Value = self
            .http
            .post(format!("{}/clientweb/api/v1/chats", self.base))
            .header("authorization", api::auth(device))
            .json(&json!({"from": name, "phone_number": "+15550999"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        r["chat_id"].as_str().expect("a chat id").to_string()
    }

    async fn post(&self, url: &str, session: Option<&str>, body: Value) -> (u16, Value) {
        let mut request = self.http.post(url).json(&body);
        if let Some(s) = session {
            request = request.bearer_auth(s);
        }
        let r = request.send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, url: &str, session: &str) -> (u16, String) {
        let r = self
            .http
            .get(url)
            .bearer_auth(session)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// Polls the operator's events until one matches.
    async fn operator_sees(
        &self,
        link: &str,
        session: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let mut after = 0;
        for _ in 0..20 {
            let (status, text) = self
                .get(&format!("{link}/events?after={after}"), session)
                .await;
            assert_eq!(status, 200, "{text}");
            let page: Value = serde_json::from_str(&text).unwrap();
            after = page["last_seq"].as_u64().unwrap();
            if let Some(e) = page["events"].as_array().unwrap().iter().find(|e| pred(e)) {
                return e.clone();
            }
        }
        panic!("the operator never saw the event");
    }
}

#[tokio::test]
async fn the_first_operator_to_claim_the_link_takes_the_chat() {
    let mut provider = sms::FakeProvider::start().await;
    let gw = gateway(&provider).await;
    let chat = gw.new_chat("dev-1", "Zoë “Carol” Brown").await;

    // Ring-all: both operators on duty are texted, each with their own link.
    let mut texts = vec![
        provider.next(Duration::from_secs(10)).await,
        provider.next(Duration::from_secs(10)).await,
    ];
    texts.sort_by(|a, b| a.to().cmp(b.to()));
    let (olga, omar) = (&texts[0], &texts[1]);
    assert_eq!((olga.to(), omar.to()), ("+15550101", "+15550102"));
    for sms in &texts {
        assert_eq!(sms.headers["authorization"], "Bearer sms-key");
        assert_eq!(sms.body["from"], "Tandem");
        // The name is brought into GSM-7 so that the text stays one segment.
        assert_eq!(sms.body["encoding"], "gsm7", "{}", sms.body);
        assert_eq!(sms.body["segments"], 1);
        assert!(sms.text().contains("Zoe \"Carol\" Brown"), "{}", sms.text());
        assert!(sms.link().starts_with(&format!("{}/m/", gw.base)));
    }
    assert_ne!(olga.link(), omar.link());

    // Opening the link serves the page; only its POST claims.
    let page = gw.http.get(olga.link()).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.text()
            .await
            .unwrap()
            .contains("<title>Tandem chat</title>")
    );

    let (status, claim) = gw
        .post(&format!("{}/claim", olga.link()), None, json!({}))
        .await;
    assert_eq!(status, 200, "{claim}");
    assert_eq!(claim["chat_id"], chat.as_str());
    assert_eq!(claim["customer"]["name"], "Zoë “Carol” Brown");
    let session = claim["session"].as_str().unwrap().to_string();
    // A later tap on the other operator's link is told it is taken; on Olga's own, that it
    // is hers already, on another device.
    let (status, refused) = gw
        .post(&format!("{}/claim", omar.link()), None, json!({}))
        .await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["error"]["code"], "already_taken");
    assert_eq!(refused["error"]["message"], "already taken");
    let (status, refused) = gw
        .post(&format!("{}/claim", olga.link()), None, json!({}))
        .await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["error"]["code"], "claimed_elsewhere");
    assert_eq!(
        refused["error"]["message"],
        "already taken by you on another device"
    );
    // Without the session key the chat API is closed.
    let (status, _) = gw
        .post(
            &format!("{}/messages", olga.link()),
            Some("guess"),
            json!({"msg": "x"}),
        )
        .await;
    assert_eq!(status, 401);

    // The operator and the customer talk.
    let link = olga.link();
    let (status, said) = gw
        .post(
            &format!("{link}/messages"),
            Some(&session),
            json!({"msg": "Hello, I am Olga. How can I help?"}),
        )
        .await;
    assert_eq!(status, 200, "{said}");
    let customer_events = format!("{}/clientweb/api/v1/chats/{chat}/events", gw.base);
    let r = gw
        .http
        .post(&customer_events)
        .header("authorization", api::auth("dev-1"))
        .json(&json!({"events": [{"event": "chat_session_message", "msg": "my car is dented"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let heard = gw
        .operator_sees(&link, &session, |e| {
            e["event"] == "message" && !e["mine"].as_bool().unwrap()
        })
        .await;
    assert_eq!(heard["msg"], "my car is dented");
    let history: Value = gw
        .http
        .get(format!("{}/clientweb/api/v1/chats/{chat}/history", gw.base))
        .header("authorization", api::auth("dev-1"))
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
            .any(|e| e["event"] == "chat_session_party_joined" && e["display_name"] == "Olga")
    );
    assert!(
        events.iter().any(|e| e["event"] == "chat_session_message"
            && e["msg"] == "Hello, I am Olga. How can I help?")
    );

    // The operator ends the chat and reads the transcript.
    let (status, _) = gw
        .post(&format!("{link}/end"), Some(&session), json!({}))
        .await;
    assert_eq!(status, 200);
    let ended = gw
        .operator_sees(&link, &session, |e| e["event"] == "ended")
        .await;
    let transcript_link = format!(
        "{}{}?format=text",
        gw.base,
        ended["transcript"].as_str().unwrap()
    );
    let (status, transcript) = gw.get(&transcript_link, &session).await;
    assert_eq!(status, 200, "{transcript}");
    assert!(transcript.contains("my car is dented"), "{transcript}");
    assert!(transcript.contains("Hello, I am Olga"), "{transcript}");
    // Nobody else was texted along the way.
    assert!(
        provider
            .none_for(Duration::from_millis(300))
            .await
            .is_none()
    );
}

#[tokio::test]
async fn an_operator_at_the_desktop_gets_no_more_sms() {
    let mut provider = sms::FakeProvider::start().await;
    let gw = gateway(&provider).await;
    let first = gw.new_chat("dev-1", "Carol").await;
    let mut links = Vec::new();
    for _ in 0..2 {
        let sms = provider.next(Duration::from_secs(10)).await;
        links.push((sms.to().to_string(), sms.link()));
    }

    // Omar logs in to the desktop.
    let (status, login) = gw
        .post(
            &format!("{}/agent/v1/login", gw.base),
            None,
            json!({"name": "omar", "password": "desk"}),
        )
        .await;
    assert_eq!(status, 200, "{login}");
    let token = login["token"].as_str().unwrap();
    let ws_url = format!(
        "{}/agent/v1/ws?token={token}",
        gw.base.replace("http", "ws")
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();
    let hello = next_json(&mut ws).await;
    assert_eq!(hello["event"], "hello");
    // The chat he was texted about waits on his desk instead.
    assert_eq!(hello["offers"][0]["chat_id"], first.as_str(), "{hello}");

    links.sort();
    let (olga_link, omar_link) = (links[0].1.clone(), links[1].1.clone());
    // The link texted to Omar while nobody was at a desk expired when he logged in.
    let (status, refused) = gw
        .post(&format!("{omar_link}/claim"), None, json!({}))
        .await;
    assert_eq!(status, 410, "{refused}");
    assert_eq!(refused["error"]["code"], "link_expired");
    // Once he is ready, a new chat is texted to nobody, Olga included: someone of the
    // department is at a desk and can take it.
    ws.send(Message::Text(
        json!({"command": "set_state", "state": "available", "ref": 0})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    loop {
        let v = next_json(&mut ws).await;
        if v["event"] == "ack" || v["event"] == "error" {
            assert_eq!(v["event"], "ack", "{v}");
            break;
        }
    }
    gw.new_chat("dev-2", "Dan").await;
    assert!(
        provider
            .none_for(Duration::from_millis(1500))
            .await
            .is_none(),
        "no SMS while an agent of the department is logged in"
    );
    // Omar picks up the chat that was waiting.
    ws.send(Message::Text(
        json!({"command": "accept", "chat_id": first, "ref": 1})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    loop {
        let v = next_json(&mut ws).await;
        if v["event"] == "ack" || v["event"] == "error" {
            assert_eq!(v["event"], "ack", "{v}");
            break;
        }
    }
    // Olga's link, still standing until then, now says the chat is taken.
    let (status, refused) = gw
        .post(&format!("{olga_link}/claim"), None, json!({}))
        .await;
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["error"]["code"], "already_taken");
}

async fn next_json(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a frame in time")
            .expect("socket open")
            .unwrap();
        if let Message::Text(text) = frame {
            return serde_json::from_str(&text).unwrap();
        }
    }
}
