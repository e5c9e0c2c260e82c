//! The chat embedded with one tag in a website on another origin (a second loopback port), in
//! headless Chromium on a desktop and on a phone: the gateway lists the site in
//! `chat.allowed_origins`, so the widget loads its modules and calls the customer API across
//! origins (CORS) and opens its socket with a ticket; the site's aggressive styles do not reach
//! into the widget's shadow root (its fields stay visible, its buttons keep their colours),
//! nor do the widget's styles reach the site. A site that is not listed gets no chat.

use crate::agent_desk;
use crate::chat_browser as browser;
use crate::common;
use crate::webchat;

use agent_desk::Desk;
use browser::{Browser, Device};
use serde_json::json;
use webchat::{CUSTOMER, PHONE};

/// JavaScript: computed styles of the widget's Send button and of the site's own button.
const STYLES: &str = "(() => { \
    const host = document.querySelector('tandem-chat-widget'); \
    const send = [...host.shadowRoot.querySelectorAll('button')].find(b => b.innerText === 'Send'); \
    const site = document.getElementById('site-button'); \
    const s = getComputedStyle(send), t = getComputedStyle(site); \
    return { send: [s.backgroundColor, s.borderStyle, s.fontFamily.includes('Comic')], \
             site: [t.backgroundColor, t.borderStyle, t.fontFamily.includes('Comic')], \
             bodyFont: getComputedStyle(document.body).fontFamily.includes('Comic') }; })()";

async fn journey(device: Device) {
    let site = webchat::serve_site(r#"{"policy": "P-9"}"#).await;
    let stranger = webchat::serve_site("{}").await;
    let gateway = common::Gateway::start(&webchat::config(&webchat::allow(site.addr)));
    site.gateway.set(gateway.http).unwrap();
    stranger.gateway.set(gateway.http).unwrap();
    let http = reqwest::Client::new();
    let mut desk = Desk::login(&http, gateway.http, "alice", "desk").await;
    let mut browser = Browser::launch(&format!("embedded-{}", device.name())).await;
    let page = browser.open(&site.url(), device, None).await;

    // One button until the customer opens it.
    browser.shows(page, "button", "Chat with us").await;
    assert_eq!(browser.count(page, "button", "Start chat").await, 0);
    browser.screenshot(page, "1-site-with-launcher").await;
    browser.click(page, "button", "Chat with us").await;
    browser.sees(page, "We are available now").await;
    // The site hides every input and text area: not the widget's.
    browser.shows(page, "textbox", "Your name").await;
    webchat::start_chat(&mut browser, page, CUSTOMER, PHONE).await;
    let (chat, offer) = webchat::accept(&mut desk, CUSTOMER).await;
    assert_eq!(offer["context"]["policy"], "P-9", "{offer}");
    browser.sees(page, "Alice joined the chat").await;

    // The chat works across origins, both ways (the socket carries the agent's answer).
    browser
        .fill(page, "Message", "Hello from the Acme site")
        .await;
    browser.click(page, "button", "Send").await;
    desk.until(|v| v["event"] == "message" && v["msg"] == "Hello from the Acme site")
        .await;
    desk.say(&chat, "Hello Carol, how can I help?").await;
    browser.sees(page, "Hello Carol, how can I help?").await;

    // Styles stay on their side of the shadow root.
    let styles = browser.eval(page, STYLES).await;
    assert_eq!(styles["site"][0], "rgb(0, 255, 0)", "{styles}");
    assert_eq!(styles["site"][1], "dashed", "{styles}");
    assert_eq!(styles["bodyFont"], true, "{styles}");
    assert_ne!(styles["send"][0], "rgb(0, 255, 0)", "{styles}");
    assert_ne!(styles["send"][1], "dashed", "{styles}");
    assert_eq!(
        styles["send"][2], false,
        "the site's font stays out: {styles}"
    );
    browser.screenshot(page, "2-chatting-on-the-site").await;

    // Minimised, the chat goes on; opened again, it is all there.
    browser.click(page, "button", "Minimize chat").await;
    browser.hides(page, "textbox", "Message").await;
    desk.say(&chat, "Take your time.").await;
    browser.click(page, "button", "Chat with us").await;
    browser.sees(page, "Take your time.").await;

    // A site the gateway does not list gets no chat: its modules are refused (CORS).
    let other = browser.open(&stranger.url(), device, None).await;
    browser.click(other, "button", "Chat with us").await;
    browser.sees(other, "The chat cannot be loaded here.").await;
    assert_eq!(browser.count(other, "button", "Start chat").await, 0);
    let console = browser.on(other, json!({"cmd": "console"})).await;
    assert!(
        console.to_string().contains("CORS") || console.to_string().contains("Access-Control"),
        "the browser refused it for CORS: {console}"
    );
    browser.screenshot(other, "3-site-not-allowed").await;
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chat_embedded_in_another_site_on_a_desktop() {
    journey(Device::Desktop).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chat_embedded_in_another_site_on_a_phone() {
    journey(Device::Phone).await;
}
