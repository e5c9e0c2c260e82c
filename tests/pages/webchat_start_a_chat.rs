//! A customer opens the web chat (`/chat/`) in headless Chromium, on a desktop and on a phone:
//! with nobody at a desk the page says nobody is available and offers no chat; once the agent
//! is available it says so with the expected wait, takes a name and a phone number, starts
//! the chat, shows it waiting, and shows the agent's name when she joins. The agent is a
//! client of the agent API, and what she is offered is the customer's name and number.

use crate::agent_desk;
use crate::chat_browser as browser;
use crate::common;
use crate::webchat;

use agent_desk::Desk;
use browser::{Browser, Device};
use webchat::{CUSTOMER, PHONE, chat_url};

async fn journey(device: Device) {
    let gateway = common::Gateway::start(&webchat::config(""));
    let http = reqwest::Client::new();
    let mut browser = Browser::launch(&format!("start-{}", device.name())).await;
    let page = browser.open(&chat_url(gateway.http), device, None).await;

    // Nobody logged in: the page says so and offers nothing that cannot work.
    browser
        .sees(page, "Nobody is available to answer now")
        .await;
    assert_eq!(browser.count(page, "button", "Start chat").await, 0);
    assert_eq!(browser.count(page, "textbox", "Your name").await, 0);
    browser.shows(page, "button", "Check again").await;
    browser.screenshot(page, "1-nobody-available").await;

    // Alice logs in and is available: checking again offers the chat, answered at once.
    let mut desk = Desk::login(&http, gateway.http, "alice", "desk").await;
    browser.click(page, "button", "Check again").await;
    browser.sees(page, "We are available now").await;
    browser.screenshot(page, "2-available").await;

    webchat::start_chat(&mut browser, page, CUSTOMER, PHONE).await;
    browser.screenshot(page, "3-waiting").await;
    let (chat, offer) = webchat::accept(&mut desk, CUSTOMER).await;
    assert_eq!(offer["customer"]["phone"], PHONE, "{offer}");

    // The customer sees Alice join, by name, in the conversation and the header.
    browser.sees(page, "Alice joined the chat").await;
    browser.sees(page, "Chatting with Alice").await;
    browser.shows(page, "textbox", "Message").await;
    browser.shows(page, "button", "End chat").await;
    browser.screenshot(page, "4-agent-joined").await;

    // The chat is remembered by this browser (a reload resumes it).
    let url = browser.eval(page, "location.href").await;
    assert!(url.as_str().unwrap().contains("/chat/"), "{url}");
    let chats = browser
        .eval(page, "Object.keys(localStorage).filter(k => k.endsWith(':chat')).map(k => localStorage.getItem(k))")
        .await;
    assert_eq!(chats, serde_json::json!([chat]), "the chat is remembered");
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_starts_a_chat_on_a_desktop() {
    journey(Device::Desktop).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_starts_a_chat_on_a_phone() {
    journey(Device::Phone).await;
}
