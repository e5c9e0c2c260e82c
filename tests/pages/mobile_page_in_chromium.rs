//! The mobile operator's page in a real browser: headless Chromium (Debian `chromium`) emulating
//! a phone, driven by `tests/browser/mobile_operator.mjs` with `playwright-core` (installed by
//! `scripts/test` into `tests/browser/node_modules`). The page claims the chat from the SMS link,
//! shows the customer's message, sends a reply that the customer receives, keeps the chat on
//! reload, and another device opening the same link is told the chat is already taken by this
//! operator there. Missing Chromium, Node or playwright-core fail the test: nothing is skipped.

use crate::api;
use crate::mobile_browser as browser;
use crate::sms;

use std::time::Duration;

use serde_json::json;
use tandem::routing::password;

fn config(base: &str, provider: &str) -> String {
    let hash = password::hash("desk");
    format!(
        r#"
[http]
public_url = "{base}"
long_poll_timeout_s = 2

[sms]
url = "{provider}"

[[services]]
name = "claims"
entries = ["claims-app"]
department = "claims"

[[agents]]
name = "olga"
display_name = "Olga"
password_hash = "{hash}"
departments = ["claims"]
mobile = "+15550101"
mobile_mode = "on"
"#
    )
}

#[tokio::test]
async fn the_mobile_page_claims_the_chat_and_talks_to_the_customer() {
    let mut provider = sms::FakeProvider::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let api = api::Api::with_config(&config(&base, &provider.url())).await;
    let router = api.router.clone();
    let server = tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    let chat = api.create_chat("dev-1").await;
    let offer = provider.next(Duration::from_secs(10)).await;
    assert_eq!(offer.to(), "+15550101");
    api.say(&chat, "dev-1", "c-1", "my car is dented").await;

    let mut ui = browser::Phones::start("mobile-page-screenshots").await;
    let opened = ui.open("phone", &offer.link()).await;
    assert_eq!(opened["state"], "chatting", "{opened:#}");
    assert_eq!(opened["title"], "Chat with Carol");
    ui.see_in_log("phone", "my car is dented").await;
    let reply = "Hello Carol, Olga here — send me a photo, please.";
    ui.fill("phone", "Message to the customer", reply).await;
    ui.tap("phone", "Send", None).await;
    ui.see_in_log("phone", reply).await;
    // A reload keeps the chat (the session is kept in this browser) instead of claiming again.
    let reloaded = ui.reload("phone").await;
    assert_eq!(reloaded["state"], "chatting", "{reloaded:#}");
    ui.see_in_log("phone", reply).await;
    // Another device taps the link: the chat is this operator's already, over there.
    let other = ui.open("other", &offer.link()).await;
    assert_eq!(other["state"], "claimed_elsewhere", "{other:#}");
    assert_eq!(
        other["notice"],
        "This chat is already taken by you on another device."
    );
    assert!(
        other["buttons"]
            .as_array()
            .unwrap()
            .contains(&json!("Move the chat here")),
        "{other:#}"
    );
    ui.quit().await;

    // The customer received the operator's reply, from Olga.
    let history = api.history(&chat, "dev-1").await;
    let got = history
        .iter()
        .find(|e| e["event"] == "chat_session_message" && e["msg"] == reply)
        .unwrap_or_else(|| panic!("the reply in {}", json!(history)));
    assert_eq!(got["party_id"], "olga");
    server.abort();
}
