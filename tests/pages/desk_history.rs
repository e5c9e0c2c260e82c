//! Journey 10 of the Agent Desktop, in headless Chromium against the real binary: after a chat
//! the customer ended, the agent (in a later session) finds it in her history, reads it again
//! in the Chat Panel and opens its transcript. The history and the transcript come from the
//! agent API (`GET /agent/v1/chats`, `chats/{id}/history`, `chats/{id}/transcript`).
//! `/metrics` is idle afterwards.

use crate::common;
use crate::desk;
use crate::desk_browser;

use desk::{Customer, config};
use desk_browser::{DeskBrowser, assert_idle};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_opens_a_past_chat_and_its_transcript_from_her_history() {
    let gateway = common::Gateway::start(&config(""));
    let base = format!("http://{}", gateway.http);
    let http = reqwest::Client::new();
    let mut page = DeskBrowser::start("desk_history.mjs", &base, &[]);

    page.step("open a chat").await;
    let mut customer =
        Customer::open(&http, gateway.http, "claims-app", desk::DEVICE, "+15550100").await;
    customer.say("The windscreen is cracked.").await;
    page.go("open a chat", json!({})).await;
    page.step("customer leaves").await;
    customer
        .until(|v| {
            v["event"] == "chat_session_message" && v["msg"] == "Noted, a glazier will call you."
        })
        .await;
    customer.send(json!([{"event": "chat_session_end"}])).await;
    page.go("customer leaves", json!({})).await;

    let done = page.finish().await;
    assert_eq!(done["listed"], 1, "{done}");
    assert_eq!(
        done["endChatDisabled"], true,
        "a past chat cannot be ended again: {done}"
    );
    let transcript = done["transcript"].as_str().unwrap();
    assert!(
        transcript.contains("The windscreen is cracked."),
        "{transcript}"
    );
    assert!(
        transcript.contains("Noted, a glazier will call you."),
        "{transcript}"
    );
    assert_idle(&gateway);
}
