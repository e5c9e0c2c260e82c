//! An agent's files are bounded like a customer's: uploads not sent anywhere hold at most one
//! chat's worth, and a file sent into a chat counts against the chat's quota whoever sends it.
//! Both are refused with `chat_file_quota_exceeded`. Against the real binary over 127.0.0.1.

use crate::agent_desk::{self, Customer, Desk};
use crate::api;
use crate::common;

use serde_json::{Value, json};
use tandem::routing::password;

fn config() -> String {
    let hash = password::hash("desk");
    format!(
        r#"
[files]
max_bytes = 4096
allowed_types = ["image/png"]
max_files_per_chat = 2
max_bytes_per_chat = 3000

[[services]]
name = "claims"
entries = ["claims-app"]
department = "claims"

[[agents]]
name = "alice"
password_hash = "{hash}"
departments = ["claims"]
"#
    )
}

async fn upload(http: &reqwest::Client, gateway: &common::Gateway, token: &str, n: u8) -> Value {
    api::upload_png(
        http.post(format!("http://{}/agent/v1/files", gateway.http))
            .bearer_auth(token),
        &[n; 40],
        "form.png",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agents_files_are_bounded_by_the_chat_quota() {
    let gateway = common::Gateway::start(&config());
    let http = reqwest::Client::new();
    let mut carol = Customer::open(&http, gateway.http, "claims-app", "carol", "+15550100").await;
    let mut alice = Desk::login(&http, gateway.http, "alice", "desk").await;
    alice.accept(&mut carol).await;
    let chat = carol.chat.clone();

    // Two uploads wait unsent; a third is more than one chat's worth.
    let first = upload(&http, &gateway, &alice.token, 1).await;
    let second = upload(&http, &gateway, &alice.token, 2).await;
    assert!(first["file_id"].is_string(), "{first}");
    assert!(second["file_id"].is_string(), "{second}");
    let third = upload(&http, &gateway, &alice.token, 3).await;
    assert_eq!(
        third["error"]["code"], "chat_file_quota_exceeded",
        "{third}"
    );

    // The customer sends one file into the chat, the agent one: the chat is full.
    let theirs = api::upload_png(
        http.post(format!("http://{}/clientweb/api/v1/files", gateway.http))
            .header("authorization", agent_desk::auth("claims-app", "carol")),
        b"plate",
        "plate.png",
    )
    .await;
    carol
        .send(json!([{"event": "chat_session_file", "file_id": theirs["file_id"]}]))
        .await;
    let mine = alice
        .command(json!({"command": "send_file", "chat_id": chat, "file_id": first["file_id"]}))
        .await;
    assert_eq!(mine["event"], "ack", "{mine}");
    let refused = alice
        .command(json!({"command": "send_file", "chat_id": chat, "file_id": second["file_id"]}))
        .await;
    assert_eq!(refused["event"], "error", "{refused}");
    assert_eq!(
        refused["error"]["code"], "chat_file_quota_exceeded",
        "{refused}"
    );

    // The chat holds the customer's file and the agent's, not the refused one.
    let files: Vec<Value> = alice
        .transcript(&http, gateway.http, &chat)
        .await
        .into_iter()
        .filter(|e| e["event"] == "file")
        .collect();
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(files.iter().all(|f| f["file_id"] != second["file_id"]));
}
