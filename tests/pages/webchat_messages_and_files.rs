//! Chatting in the web chat, in headless Chromium on a desktop and on a phone, with the agent
//! over the agent API: text both ways with the agent's name; her typing; the customer's
//! message marked sent, then read when she reads it, and the agent told which of hers the
//! customer received and read; long messages whole both ways; a picture chosen (desktop) or
//! taken with the camera through the file input (phone) shown in the conversation and received
//! by the agent byte for byte; the agent's picture shown, and her PDF downloaded.

use crate::agent_desk;
use crate::chat_browser as browser;
use crate::common;
use crate::webchat;

use std::time::Duration;

use agent_desk::Desk;
use browser::{Browser, Device};
use serde_json::json;
use webchat::{CUSTOMER, PHONE, PICTURES_SHOWN, bubbles_with, chat_url, receipt_of};

const WITHIN: Duration = Duration::from_secs(20);

async fn journey(device: Device) {
    let gateway = common::Gateway::start(&webchat::config(""));
    let http = reqwest::Client::new();
    let mut browser = Browser::launch(&format!("messages-{}", device.name())).await;
    let mut desk = Desk::login(&http, gateway.http, "alice", "desk").await;
    let page = browser.open(&chat_url(gateway.http), device, None).await;
    webchat::start_chat(&mut browser, page, CUSTOMER, PHONE).await;
    let (chat, _) = webchat::accept(&mut desk, CUSTOMER).await;
    browser.sees(page, "Alice joined the chat").await;

    // The customer writes; the agent reads it; the customer sees it sent, then read.
    let hello = "Hello, my car was hit in the car park this morning.";
    browser.fill(page, "Message", hello).await;
    browser.click(page, "button", "Send").await;
    let got = desk
        .until(|v| v["event"] == "message" && v["msg"] == hello)
        .await;
    assert_eq!(got["from"], "customer", "{got}");
    browser
        .until(
            page,
            "the message sent",
            &format!("{} === 'sent'", receipt_of(hello)),
            WITHIN,
        )
        .await;
    let read = desk
        .command(json!({"command": "mark_read", "chat_id": chat, "msg_id": got["msg_id"]}))
        .await;
    assert_eq!(read["event"], "ack", "{read}");
    browser
        .until(
            page,
            "the message read",
            &format!("{} === 'read'", receipt_of(hello)),
            WITHIN,
        )
        .await;
    browser.sees(page, "Read").await;

    // The agent types, then answers: the customer sees both, with her name.
    let typing = desk
        .command(json!({"command": "typing", "chat_id": chat, "typing": true}))
        .await;
    assert_eq!(typing["event"], "ack", "{typing}");
    browser.sees(page, "Alice is typing…").await;
    let answer = "I am sorry to hear that. Could you send me a photo of the damage?";
    desk.say(&chat, answer).await;
    browser.sees(page, answer).await;
    assert_eq!(browser.count_text(page, "Alice is typing").await, 0);
    // The page told the agent it received her message, and that it was read.
    let answered = desk
        .until(|v| v["event"] == "message" && v["msg"] == answer)
        .await;
    for kind in ["delivered", "read"] {
        desk.until(|v| {
            v["event"] == "receipt"
                && v["receipt"] == kind
                && v["ref_msg_id"] == answered["msg_id"]
                && v["by"] == "customer"
        })
        .await;
    }
    browser.screenshot(page, "1-chatting").await;

    // Long messages arrive whole, both ways.
    let long_from_customer = "The other driver reversed into my door. ".repeat(80);
    let long_from_customer = long_from_customer.trim_end().to_string();
    browser.fill(page, "Message", &long_from_customer).await;
    browser.click(page, "button", "Send").await;
    desk.until(|v| v["event"] == "message" && v["msg"] == long_from_customer.as_str())
        .await;
    let long_from_agent = format!(
        "{}End of the policy text.",
        "Clause 4.2 covers parking damage. ".repeat(120)
    );
    desk.say(&chat, &long_from_agent).await;
    browser
        .until(
            page,
            "the agent's long message whole",
            &format!("{} === 1", bubbles_with(&long_from_agent)),
            WITHIN,
        )
        .await;
    assert_eq!(
        browser.eval(page, &bubbles_with(&long_from_customer)).await,
        json!(1)
    );

    // A picture: chosen on the desktop, taken with the camera on the phone (the same kind of
    // file input, asking for the camera).
    let capture = browser
        .eval(page, "(() => { const i = [...document.querySelectorAll('input[type=file]')].find(i => i.closest('label').innerText.includes('Take a photo')); return [i.getAttribute('capture'), i.accept]; })()")
        .await;
    assert_eq!(capture, json!(["environment", "image/*"]));
    let photo = webchat::png(64, 48, [200, 40, 40]);
    let input = match device {
        Device::Desktop => "Attach a file",
        Device::Phone => "Take a photo",
    };
    browser
        .attach(page, input, "dent.png", "image/png", &photo)
        .await;
    browser
        .until(
            page,
            "the picture shown",
            &format!("{PICTURES_SHOWN} >= 1"),
            WITHIN,
        )
        .await;
    let file = desk
        .until(|v| v["event"] == "file" && v["from"] == "customer")
        .await;
    assert_eq!(file["file_name"], "dent.png", "{file}");
    assert_eq!(file["file_type"], "image/png", "{file}");
    let bytes = webchat::agent_downloads(
        &http,
        gateway.http,
        &desk,
        &chat,
        file["file_id"].as_str().unwrap(),
    )
    .await;
    assert_eq!(bytes, photo, "the agent gets the picture byte for byte");

    // The agent's picture shows; her PDF downloads.
    webchat::agent_sends_file(
        &http,
        gateway.http,
        &mut desk,
        &chat,
        "claim-diagram.png",
        webchat::png(40, 40, [30, 90, 200]),
    )
    .await;
    browser
        .until(
            page,
            "the agent's picture shown",
            &format!("{PICTURES_SHOWN} >= 2"),
            WITHIN,
        )
        .await;
    webchat::agent_sends_file(
        &http,
        gateway.http,
        &mut desk,
        &chat,
        "claim-form.pdf",
        webchat::pdf(),
    )
    .await;
    browser.sees(page, "claim-form.pdf").await;
    browser.screenshot(page, "2-pictures-and-files").await;
    let downloaded = browser
        .on(
            page,
            json!({"cmd": "download", "role": "link", "name": "claim-form.pdf", "exact": false}),
        )
        .await;
    assert_eq!(downloaded["name"], "claim-form.pdf", "{downloaded}");
    assert!(
        downloaded["text"].as_str().unwrap().starts_with("%PDF-1.4"),
        "{downloaded}"
    );
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_and_files_on_a_desktop() {
    journey(Device::Desktop).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_and_files_on_a_phone() {
    journey(Device::Phone).await;
}
