//! SIGTERM ends every open interaction with its ordered teardown before the process exits: a
//! customer waiting on its chat is told the chat ended, and the exit is clean.

use crate::agent_desk;
use crate::common;

use std::time::Duration;

use serde_json::{Value, json};

const AUTH: &str = r#"MOBILE-API-140-327-PLAIN appId="claims-app", clientId="dev-1""#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_open_chats_before_exiting() {
    let gateway = common::Gateway::start(
        "[[services]]\nname = \"claims\"\nentries = [\"claims-app\"]\ndepartment = \"claims\"\n",
    );
    let base = format!("http://{}/clientweb/api/v1", gateway.http);
    let http = reqwest::Client::new();
    let chat = agent_desk::create_chat(
        &http,
        gateway.http,
        AUTH,
        json!({"phone_number": "+15550100", "from": "Carol"}),
    )
    .await;

    // The customer keeps polling, as an app does, and notes every event it gets.
    let events_url = format!("{base}/chats/{chat}/events");
    let poller = tokio::spawn(async move {
        let mut seen = Vec::new();
        for _ in 0..100 {
            let Ok(reply) = http
                .get(&events_url)
                .header("authorization", AUTH)
                .send()
                .await
            else {
                break;
            };
            let Ok(body) = reply.json::<Value>().await else {
                break;
            };
            for event in body["events"].as_array().cloned().unwrap_or_default() {
                seen.push(event["event"].as_str().unwrap_or_default().to_string());
            }
            if seen.iter().any(|e| e == "chat_session_ended") {
                break;
            }
        }
        seen
    });
    // Let the first poll arrive and wait.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = tokio::task::spawn_blocking(move || gateway.stop())
        .await
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
    let seen = tokio::time::timeout(Duration::from_secs(10), poller)
        .await
        .expect("the poller ends")
        .unwrap();
    assert!(
        seen.iter().any(|e| e == "chat_session_ended"),
        "the customer was told the chat ended: {seen:?}"
    );
}
