//! The web chat survives a reload and a lost network, in headless Chromium on a desktop and on
//! a phone: the browser reaches the gateway through a proxy whose network the test cuts. After
//! a reload the page resumes the same chat; after the network comes back it resumes from the
//! last `seq` it had: the agent's messages sent meanwhile appear, the customer's message
//! written meanwhile is delivered, and nothing is shown or sent twice.

use crate::agent_desk;
use crate::chat_browser as browser;
use crate::common;
use crate::tcp_proxy;
use crate::webchat;

use std::time::Duration;

use agent_desk::Desk;
use browser::{Browser, Device, Page};
use serde_json::json;
use tcp_proxy::TcpProxy;
use webchat::{APP, CUSTOMER, PHONE, bubbles_with, receipt_of};

const WITHIN: Duration = Duration::from_secs(30);

/// Every message shows exactly once.
async fn each_once(browser: &mut Browser, page: Page, messages: &[&str]) {
    for message in messages {
        browser
            .until(
                page,
                &format!("{message:?} shown"),
                &format!("{} >= 1", bubbles_with(message)),
                WITHIN,
            )
            .await;
        assert_eq!(
            browser.eval(page, &bubbles_with(message)).await,
            json!(1),
            "{message:?} is shown once"
        );
    }
}

async fn journey(device: Device) {
    let gateway = common::Gateway::start(&webchat::config(""));
    let proxy = TcpProxy::start(gateway.http).await;
    let http = reqwest::Client::new();
    let mut desk = Desk::login(&http, gateway.http, "alice", "desk").await;
    let mut browser = Browser::launch(&format!("resume-{}", device.name())).await;
    let url = format!("http://{}/chat/?app={APP}", proxy.addr);
    let page = browser.open(&url, device, None).await;
    webchat::start_chat(&mut browser, page, CUSTOMER, PHONE).await;
    let (chat, _) = webchat::accept(&mut desk, CUSTOMER).await;

    let first = "My flight was cancelled.";
    browser.fill(page, "Message", first).await;
    browser.click(page, "button", "Send").await;
    desk.until(|v| v["event"] == "message" && v["msg"] == first)
        .await;
    let reply = "I see it. Let me check your policy.";
    desk.say(&chat, reply).await;
    each_once(&mut browser, page, &[first, reply]).await;

    // A reload resumes the same chat, everything once.
    browser.on(page, json!({"cmd": "reload"})).await;
    browser.sees(page, "Chatting with Alice").await;
    assert_eq!(browser.count(page, "button", "Start chat").await, 0);
    each_once(&mut browser, page, &[first, reply]).await;
    assert_eq!(browser.count_text(page, "Alice joined the chat").await, 1);
    let after_reload = "Your policy covers cancellations.";
    desk.say(&chat, after_reload).await;
    each_once(&mut browser, page, &[first, reply, after_reload]).await;
    browser.screenshot(page, "1-after-reload").await;

    // The network goes. The page says so; meanwhile Alice writes twice and Carol once.
    proxy.cut();
    browser.sees(page, "Connection lost — reconnecting…").await;
    let away = ["I have opened the claim.", "Its number is C-4711."];
    for message in away {
        desk.say(&chat, message).await;
    }
    let offline = "Thank you! Do you need the booking?";
    browser.fill(page, "Message", offline).await;
    browser.click(page, "button", "Send").await;
    browser
        .until(
            page,
            "the message waiting",
            &format!("{} === 'failed'", receipt_of(offline)),
            WITHIN,
        )
        .await;
    browser.sees(page, "Not sent yet").await;
    assert_eq!(browser.eval(page, &bubbles_with(away[0])).await, json!(0));
    browser.screenshot(page, "2-network-lost").await;

    // It comes back: the page resumes from its last seq.
    proxy.restore();
    each_once(
        &mut browser,
        page,
        &[first, reply, after_reload, away[0], away[1], offline],
    )
    .await;
    browser
        .until(
            page,
            "the connection banner gone",
            webchat::CONNECTED,
            WITHIN,
        )
        .await;
    browser
        .until(
            page,
            "the waiting message sent",
            &format!("{} === 'sent'", receipt_of(offline)),
            WITHIN,
        )
        .await;
    desk.until(|v| v["event"] == "message" && v["msg"] == offline)
        .await;
    browser.screenshot(page, "3-network-back").await;

    // Once more from the start, and the agent got each of Carol's messages once.
    browser.on(page, json!({"cmd": "reload"})).await;
    browser.sees(page, "Chatting with Alice").await;
    each_once(
        &mut browser,
        page,
        &[first, reply, after_reload, away[0], away[1], offline],
    )
    .await;
    let transcript = desk.transcript(&http, gateway.http, &chat).await;
    for message in [first, offline] {
        let stored = transcript
            .iter()
            .filter(|e| e["event"] == "message" && e["text"] == message)
            .count();
        assert_eq!(stored, 1, "{message:?} stored once: {transcript:#?}");
    }
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chat_resumes_on_a_desktop() {
    journey(Device::Desktop).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chat_resumes_on_a_phone() {
    journey(Device::Phone).await;
}
