//! Journey 8 of the Agent Desktop, in headless Chromium against the real binary: while a call
//! to the customer's phone (SIPp behind the trunk) is up, End chat is disabled with "release
//! the call first", and the server's `release_call_before_chat` refusal, when the command comes
//! anyway, is shown; the agent releases the call, then ends the chat; the transcript stays
//! readable and the call's recording plays from the page. `/metrics` is idle afterwards.

use crate::common;
use crate::desk;
use crate::desk_browser;
use crate::desk_phone;

use desk::Customer;
use desk_browser::{DeskBrowser, assert_idle};
use desk_phone::NUMBER;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_call_is_released_before_the_chat_ends_and_the_recording_plays() {
    let phone_port = common::free_port();
    let recordings = tempfile::tempdir().unwrap();
    let gateway = common::Gateway::start(&desk_phone::config(phone_port, recordings.path()));
    let base = format!("http://{}", gateway.http);
    let http = reqwest::Client::new();
    let log = gateway.dir.path().join("phone.log");
    let phone = desk_phone::phone(&gateway, phone_port, 1, &log);
    let mut page = DeskBrowser::start("desk_end_in_order.mjs", &base, &[NUMBER]);

    page.step("open a chat").await;
    let mut customer =
        Customer::open(&http, gateway.http, "claims-app", desk::DEVICE, NUMBER).await;
    customer.say("Please call me.").await;
    page.go("open a chat", json!({})).await;

    let done = page.finish().await;
    assert_eq!(done["disabledWhileUp"], true, "{done}");
    assert_eq!(done["reason"], "Release the call first.", "{done}");
    assert!(
        done["refusal"]
            .as_str()
            .unwrap()
            .contains("release_call_before_chat"),
        "{done}"
    );
    assert!(
        done["recording"]["duration"].as_f64().unwrap_or(0.0) > 0.0,
        "{done}"
    );
    let transcript = done["transcript"].as_str().unwrap();
    assert!(transcript.contains("Please call me."), "{transcript}");

    customer.until(|v| v["event"] == "chat_session_ended").await;
    let stats = tokio::time::timeout(std::time::Duration::from_secs(60), phone)
        .await
        .expect("the phone finishes")
        .unwrap();
    assert_eq!((stats.successful, stats.failed), (1, 0), "{stats:?}");
    assert_idle(&gateway);
}
