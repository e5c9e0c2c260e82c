//! The customer leaves the web chat, in headless Chromium on a desktop and on a phone: "End
//! chat" asks first, then ends it (the agent is told, the chat is over); the page shows the
//! transcript to read and to download as a text file, with both sides' messages and the file
//! sent, and offers a new chat.

use crate::agent_desk;
use crate::chat_browser as browser;
use crate::common;
use crate::webchat;

use agent_desk::Desk;
use browser::{Browser, Device};
use serde_json::json;
use webchat::{CUSTOMER, PHONE, chat_url};

async fn journey(device: Device) {
    let gateway = common::Gateway::start(&webchat::config(""));
    let http = reqwest::Client::new();
    let mut desk = Desk::login(&http, gateway.http, "alice", "desk").await;
    let mut browser = Browser::launch(&format!("leave-{}", device.name())).await;
    let page = browser.open(&chat_url(gateway.http), device, None).await;
    webchat::start_chat(&mut browser, page, CUSTOMER, PHONE).await;
    let (chat, _) = webchat::accept(&mut desk, CUSTOMER).await;
    browser.sees(page, "Alice joined the chat").await;

    let question = "Is my windscreen covered too?";
    browser.fill(page, "Message", question).await;
    browser.click(page, "button", "Send").await;
    desk.until(|v| v["event"] == "message" && v["msg"] == question)
        .await;
    let answer = "Yes, with no excess. Anything else?";
    desk.say(&chat, answer).await;
    browser.sees(page, answer).await;
    browser
        .attach(
            page,
            "Attach a file",
            "windscreen.png",
            "image/png",
            &webchat::png(20, 10, [90, 90, 90]),
        )
        .await;
    desk.until(|v| v["event"] == "file" && v["file_name"] == "windscreen.png")
        .await;

    // Ending asks first; keeping the chat changes nothing.
    browser.click(page, "button", "End chat").await;
    browser.shows(page, "dialog", "End this chat?").await;
    browser.screenshot(page, "1-end-chat-asks").await;
    browser.click(page, "button", "Keep chatting").await;
    browser.hides(page, "dialog", "End this chat?").await;
    browser.shows(page, "textbox", "Message").await;
    browser.click(page, "button", "End chat").await;
    browser.click(page, "button", "End the chat").await;

    browser.sees(page, "The chat has ended").await;
    let ended = desk
        .until(|v| v["event"] == "ended" && v["chat_id"] == chat.as_str())
        .await;
    assert_eq!(ended["reason"], "customer_ended", "{ended}");
    assert_eq!(browser.count(page, "textbox", "Message").await, 0);

    // The transcript, on the page and as a download.
    browser.click(page, "button", "View transcript").await;
    browser.shows(page, "region", "Transcript").await;
    let shown = browser.text(page, "region", "Transcript").await;
    for line in [
        format!("Carol: {question}"),
        format!("Alice: {answer}"),
        "Carol sent a file: windscreen.png".to_string(),
        "Alice joined the chat".to_string(),
    ] {
        assert!(
            shown.contains(&line),
            "{line:?} in the transcript shown:\n{shown}"
        );
    }
    browser.screenshot(page, "2-transcript").await;
    let file = browser
        .on(
            page,
            json!({"cmd": "download", "role": "link", "name": "Download transcript"}),
        )
        .await;
    assert_eq!(file["name"], "chat-transcript.txt", "{file}");
    let text = file["text"].as_str().unwrap();
    assert!(text.starts_with("Chat transcript"), "{text}");
    for line in [format!("Carol: {question}"), format!("Alice: {answer}")] {
        assert!(text.contains(&line), "{line:?} in the download:\n{text}");
    }

    // The chat is over for good: a reload does not bring it back, and a new one can start.
    browser.on(page, json!({"cmd": "reload"})).await;
    browser.shows(page, "button", "Start chat").await;
    webchat::start_chat(&mut browser, page, CUSTOMER, PHONE).await;
    let (second, _) = webchat::accept(&mut desk, CUSTOMER).await;
    assert_ne!(second, chat);
    browser.sees(page, "Alice joined the chat").await;
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_and_the_transcript_on_a_desktop() {
    journey(Device::Desktop).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_and_the_transcript_on_a_phone() {
    journey(Device::Phone).await;
}
