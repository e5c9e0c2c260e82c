//! The real binary is killed with SIGKILL after a mobile operator claimed a chat from the link
//! of an SMS offer; after a restart the same link and session still carry the chat, and the
//! other operator's link still says the chat is taken.

use crate::restart;
use crate::sms;

use std::time::Duration;

use restart::{free_port, start, wait_ready};
use serde_json::{Value, json};
use tandem::routing::password;

fn config(port: u16, provider: &str) -> String {
    let hash = password::hash("desk");
    format!(
        r#"
[sip]
listen = "127.0.0.1:{sip}"

[http]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
long_poll_timeout_s = 1

[store]
url = "sqlite://data/tandem.db"

[files]
dir = "data/files"

[sms]
url = "{provider}"
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
password_hash = "{hash}"
departments = ["claims"]
mobile = "+15550101"
mobile_mode = "on"

[[agents]]
name = "omar"
password_hash = "{hash}"
departments = ["claims"]
mobile = "+15550102"
mobile_mode = "on"
"#,
        sip = free_port()
    )
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    session: Option<&str>,
    body: Value,
) -> (u16, Value) {
    let mut request = http.post(url).json(&body);
    if let Some(s) = session {
        request = request.bearer_auth(s);
    }
    let r = request.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claimed_link_still_carries_its_chat_after_kill_9() {
    let mut provider = sms::FakeProvider::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config_path = dir.path().join("tandem.toml");
    std::fs::write(&config_path, config(port, &provider.url())).unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let auth = r#"MOBILE-API-140-327-PLAIN appId="claims-app", clientId="dev-1""#;

    let mut gateway = start(dir.path(), &config_path);
    wait_ready(&http, &base, dir.path()).await;
    let chat: Value = http
        .post(format!("{base}/clientweb/api/v1/chats"))
        .header("authorization", auth)
        .json(&json!({"from": "Carol"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let chat = chat["chat_id"].as_str().unwrap().to_string();
    let mut texts = [
        provider.next(Duration::from_secs(10)).await,
        provider.next(Duration::from_secs(10)).await,
    ];
    texts.sort_by(|a, b| a.to().cmp(b.to()));
    let (olga, omar) = (texts[0].link(), texts[1].link());

    let (status, claim) = post(&http, &format!("{olga}/claim"), None, json!({})).await;
    assert_eq!(status, 200, "{claim}");
    assert_eq!(claim["chat_id"], chat.as_str());
    let session = claim["session"].as_str().unwrap().to_string();
    let (status, sent) = post(
        &http,
        &format!("{olga}/messages"),
        Some(&session),
        json!({"msg": "before the crash", "msg_id": "o-1"}),
    )
    .await;
    assert_eq!(status, 200, "{sent}");

    gateway.0.kill().unwrap();
    gateway.0.wait().unwrap();
    drop(gateway);
    let _gateway = start(dir.path(), &config_path);
    wait_ready(&http, &base, dir.path()).await;

    // The same link and session: the operator's page picks up where it was.
    let page: Value = http
        .get(format!("{olga}/events?after=0"))
        .bearer_auth(&session)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let events = page["events"].as_array().expect("events, not an error");
    assert!(
        events.iter().any(|e| e["event"] == "message"
            && e["msg"] == "before the crash"
            && e["mine"] == true),
        "{page}"
    );
    let (status, sent) = post(
        &http,
        &format!("{olga}/messages"),
        Some(&session),
        json!({"msg": "after the restart", "msg_id": "o-2"}),
    )
    .await;
    assert_eq!(status, 200, "{sent}");
    let history: Value = http
        .get(format!("{base}/clientweb/api/v1/chats/{chat}/history"))
        .header("authorization", auth)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        history["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["event"] == "chat_session_message" && e["msg"] == "after the restart"),
        "{history}"
    );

    // A wrong key is still refused, the link cannot be claimed again, and the other
    // operator's link still says the chat is taken.
    let (status, refused) = post(
        &http,
        &format!("{olga}/messages"),
        Some("guess"),
        json!({"msg": "x"}),
    )
    .await;
    assert_eq!(status, 401, "{refused}");
    for (link, code) in [(&olga, "claimed_elsewhere"), (&omar, "already_taken")] {
        let (status, refused) = post(&http, &format!("{link}/claim"), None, json!({})).await;
        assert_eq!(status, 409, "{refused}");
        assert_eq!(refused["error"]["code"], code);
    }
    let (status, _) = post(
        &http,
        &format!("{base}/m/000000000000000000000000/claim"),
        None,
        json!({}),
    )
    .await;
    assert_eq!(status, 404);
}
