//! Journey 4 of the Agent Desktop, in headless Chromium against the real binary: the Contact
//! Info Panel's phone number calls the customer (`call_customer`) with the agent on her
//! browser; SIPp is the customer's phone behind the trunk and echoes the browser's fake
//! microphone back, so `getStats()` counts audio both ways. The panel shows the call connected
//! with a running duration, Mute, Release call and the end; a second call in the same chat goes
//! to a typed number; a third is the customer's call-me request, which names the number to
//! call. Each call's ringing (the phone's 180) is a line of the conversation. `/metrics` is idle
//! afterwards.

use crate::common;
use crate::desk;
use crate::desk_browser;
use crate::desk_phone;

use desk::Customer;
use desk_browser::{DeskBrowser, assert_idle};
use desk_phone::NUMBER;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_phone_number_calls_the_customer_on_the_browser_again_and_again() {
    let phone_port = common::free_port();
    let recordings = tempfile::tempdir().unwrap();
    let gateway = common::Gateway::start(&desk_phone::config(phone_port, recordings.path()));
    let base = format!("http://{}", gateway.http);
    let http = reqwest::Client::new();
    let log = gateway.dir.path().join("phone.log");
    let phone = desk_phone::phone(&gateway, phone_port, 3, &log);
    let mut page = DeskBrowser::start("desk_click_to_call.mjs", &base, &[NUMBER]);

    page.step("open a chat").await;
    let mut customer =
        Customer::open(&http, gateway.http, "claims-app", desk::DEVICE, NUMBER).await;
    page.go("open a chat", json!({})).await;
    page.step("customer asks to be called").await;
    customer
        .signal(json!({"type": "REQUEST_PHONE_CALL", "number": NUMBER}))
        .await;
    page.go("customer asks to be called", json!({})).await;
    page.step("three calls made").await;

    let done = page.finish().await;
    assert!(
        done["requested"]
            .as_str()
            .unwrap()
            .contains(&format!("Call requested to {NUMBER}")),
        "{done}"
    );
    for call in ["first", "second", "third"] {
        let stats = &done[call];
        assert!(
            stats["inboundAudioPackets"].as_u64().unwrap() > 50,
            "{done}"
        );
        assert!(
            stats["outboundAudioPackets"].as_u64().unwrap() > 50,
            "{done}"
        );
    }
    assert_eq!(done["muted"], "true", "{done}");
    assert!(
        done["ended"].as_str().unwrap().contains("Call ended"),
        "{done}"
    );
    let lines: Vec<&str> = done["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    let count = |line: &str| lines.iter().filter(|l| **l == line).count();
    assert_eq!(count("Call started"), 3, "{lines:#?}");
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("Call ended")).count(),
        3,
        "{lines:#?}"
    );
    assert_eq!(
        count(&format!("Call to {NUMBER} requested by the customer")),
        1,
        "{lines:#?}"
    );
    assert_eq!(count(&format!("{NUMBER} is ringing")), 3, "{lines:#?}");

    customer.send(json!([{"event": "chat_session_end"}])).await;
    let stats = tokio::time::timeout(std::time::Duration::from_secs(60), phone)
        .await
        .expect("the phone finishes")
        .unwrap();
    assert_eq!((stats.successful, stats.failed), (3, 0), "{stats:?}");
    assert_idle(&gateway);
}
