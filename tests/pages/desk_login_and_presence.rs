//! Journey 1 of the Agent Desktop, in headless Chromium against the real binary: a wrong
//! password gets a clear message; the agent logs in, sees her presence (Not ready, the
//! configured start) and makes herself Ready; a reload keeps her signed in with her chat; a
//! dropped socket reconnects by itself and the chat is there again; she logs out. The customer
//! is the customer API over its WebSocket. `/metrics` is idle afterwards.

use crate::common;
use crate::desk;
use crate::desk_browser;

use desk::{Customer, config};
use desk_browser::{DeskBrowser, assert_idle};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_logs_in_changes_presence_survives_reload_and_reconnect_and_logs_out() {
    let gateway = common::Gateway::start(&config(""));
    let base = format!("http://{}", gateway.http);
    let http = reqwest::Client::new();
    let mut page = DeskBrowser::start("desk_login.mjs", &base, &[]);

    let ready = page.step("ready").await;
    assert_eq!(ready["initial"], "Not ready", "a desktop starts not ready");

    page.step("open a chat").await;
    let mut customer =
        Customer::open(&http, gateway.http, "claims-app", "app-1", "+15550100").await;
    page.go("open a chat", json!({})).await;
    customer
        .until(|v| v["event"] == "chat_session_status" && v["state"] == "connected")
        .await;
    page.step("customer writes").await;
    customer.say("Hello, is anyone there?").await;
    page.go("customer writes", json!({})).await;
    page.step("customer writes again").await;
    customer.say("Still there after the blip?").await;
    page.go("customer writes again", json!({})).await;

    let done: Value = page.finish().await;
    assert_eq!(done["afterReload"], "Ready", "{done}");
    assert_eq!(done["loginVisible"], true, "{done}");
    assert_eq!(
        done["narrowSend"], true,
        "usable on a narrow window: {done}"
    );

    // The agent logged out: her chat waits for someone else; the customer leaves.
    customer.send(json!([{"event": "chat_session_end"}])).await;
    assert_idle(&gateway);
}
