//! Journey 7 of the Agent Desktop, in headless Chromium against the real binary (fake camera
//! and microphone on both sides): the customer's app, a page of its own on the customer API
//! (`tests/browser/desk_customer_app.html`, so that its video is real VP8 the desk decodes),
//! asks for video; the agent is notified and allows it; two video windows show frames
//! (`videoWidth` > 0); the desk has no control to stop video alone; when the customer drops
//! video the windows close and voice goes on; the agent ends the whole session. `/metrics` is
//! idle afterwards.

use crate::common;
use crate::desk;
use crate::desk_browser;

use desk::config;
use desk_browser::{DeskBrowser, assert_idle};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn video_needs_the_agents_consent_and_only_the_customer_drops_it() {
    let gateway = common::Gateway::start(&config(""));
    let base = format!("http://{}", gateway.http);
    let page = DeskBrowser::start("desk_video.mjs", &base, &[]);

    let done = page.finish().await;
    assert!(done["sizes"]["local"].as_u64().unwrap() > 0, "{done}");
    assert!(done["sizes"]["remote"].as_u64().unwrap() > 0, "{done}");
    assert!(done["sizes"]["frames"].as_u64().unwrap() > 0, "{done}");
    assert_eq!(
        done["stopControls"], 0,
        "no control stops video alone: {done}"
    );
    assert!(done["voiceAfterVideo"].as_u64().unwrap() > 50, "{done}");
    assert_eq!(done["appErrors"], serde_json::json!([]), "{done}");
    assert_idle(&gateway);
}
