//! The customer shares what the agent needs to know, from the chat embedded in an insurer's
//! website with one tag, in headless Chromium on a desktop and on a phone: the context the page
//! passes in `data-context` comes with the agent's offer; the customer's location (the
//! browser's Geolocation API, with its permission) reaches the agent's context; and context the
//! page sends later with `TandemChat.setContext({...})` is pushed to the agent live.

use crate::agent_desk;
use crate::chat_browser as browser;
use crate::common;
use crate::webchat;

use agent_desk::Desk;
use browser::{Browser, Device};
use webchat::{CUSTOMER, PHONE};

/// Where the browser says the customer is (the Eiffel Tower's car park).
const HERE: (f64, f64) = (48.8584, 2.2945);

async fn journey(device: Device) {
    let site = webchat::serve_site(r#"{"policy": "P-7", "page": "claims/new"}"#).await;
    let gateway = common::Gateway::start(&webchat::config(&webchat::allow(site.addr)));
    site.gateway.set(gateway.http).unwrap();
    let http = reqwest::Client::new();
    let mut desk = Desk::login(&http, gateway.http, "alice", "desk").await;
    let mut browser = Browser::launch(&format!("location-{}", device.name())).await;
    let page = browser.open(&site.url(), device, Some(HERE)).await;

    browser.click(page, "button", "Chat with us").await;
    webchat::start_chat(&mut browser, page, CUSTOMER, PHONE).await;
    let (chat, offer) = webchat::accept(&mut desk, CUSTOMER).await;
    // The page's context comes with the offer.
    assert_eq!(offer["context"]["policy"], "P-7", "{offer}");
    assert_eq!(offer["context"]["page"], "claims/new", "{offer}");
    browser.sees(page, "Alice joined the chat").await;

    // The customer shares the location: the agent's context shows it.
    browser.click(page, "button", "Share my location").await;
    let context = desk
        .until(|v| v["event"] == "context" && v["chat_id"] == chat.as_str())
        .await;
    let location = &context["context"]["location"];
    assert_eq!(location["latitude"], HERE.0, "{context}");
    assert_eq!(location["longitude"], HERE.1, "{context}");
    assert_eq!(
        context["context"]["policy"], "P-7",
        "merged with what was known"
    );
    browser.sees(page, "You shared your location.").await;
    browser.screenshot(page, "1-location-shared").await;

    // The site sends more context with one call; the agent gets it live.
    browser
        .eval(
            page,
            r#"window.TandemChat.setContext({vehicle: "AB-123-CD", step: "photos"})"#,
        )
        .await;
    let context = desk
        .until(|v| v["event"] == "context" && v["data"]["vehicle"] == "AB-123-CD")
        .await;
    assert_eq!(context["context"]["step"], "photos", "{context}");
    assert_eq!(context["context"]["location"]["latitude"], HERE.0);
    browser.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn location_and_context_on_a_desktop() {
    journey(Device::Desktop).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn location_and_context_on_a_phone() {
    journey(Device::Phone).await;
}
