//! Journey 6 of the Agent Desktop, in headless Chromium against the real binary: the customer's
//! app (a webrtc-rs peer on the customer API) asks for a call; the agent accepts it on her
//! browser and audio flows both ways (the page's `getStats()` and the app's peer count it);
//! she releases the call. `/metrics` is idle afterwards.

use crate::common;
use crate::desk;
use crate::desk_app_peer;
use crate::desk_browser;

use desk::{Customer, config};
use desk_app_peer::AppPeer;
use desk_browser::{DeskBrowser, assert_idle};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_talks_with_the_app_from_her_browser() {
    let gateway = common::Gateway::start(&config(""));
    let base = format!("http://{}", gateway.http);
    let http = reqwest::Client::new();
    let mut page = DeskBrowser::start("desk_voice.mjs", &base, &[]);

    page.step("open a chat").await;
    let mut customer =
        Customer::open(&http, gateway.http, "claims-app", desk::DEVICE, "+15550100").await;
    page.go("open a chat", json!({})).await;
    customer
        .until_keeping(|v| v["event"] == "chat_session_status" && v["state"] == "connected")
        .await;
    let app = AppPeer::start(customer).await;

    page.step("customer asks for a call").await;
    let ack = app
        .signal(json!({"type": "REQUEST_CALL", "offerVideo": false}))
        .await;
    assert_eq!(ack["event"], "ack", "{ack}");
    page.go("customer asks for a call", json!({})).await;

    page.step("customer hears the agent").await;
    app.until("hears the agent's microphone", |c| {
        c.audio_packets_received() > 50
    })
    .await;
    page.go("customer hears the agent", json!({})).await;
    page.step("released").await;

    let done = page.finish().await;
    assert!(
        done["stats"]["inboundAudioPackets"].as_u64().unwrap() > 50,
        "{done}"
    );
    assert!(
        done["stats"]["outboundAudioPackets"].as_u64().unwrap() > 50,
        "{done}"
    );
    assert_eq!(done["playing"], true, "the customer's audio plays: {done}");

    let ack = app.send(json!([{"event": "chat_session_end"}])).await;
    assert_eq!(ack["event"], "ack", "{ack}");
    app.stop().await;
    assert_idle(&gateway);
}
