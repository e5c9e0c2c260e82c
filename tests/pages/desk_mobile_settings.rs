//! Journey 9 of the Agent Desktop, in headless Chromium against the real binary: the agent sets
//! her own mobile number and mobile chat On / Off / On schedule from the desktop. Bad numbers
//! and hours are refused with a clear message; a saved change takes effect at once (a chat
//! waiting while nobody is at a desk is texted to the new number, and no longer once she turns
//! it off) and is stored (it survives a restart; the TOML value is only the first default).
//! `/metrics` is idle afterwards.

use crate::common;
use crate::desk;
use crate::desk_browser;
use crate::sms;

use std::time::Duration;

use desk::{Customer, config};
use desk_browser::{DeskBrowser, assert_idle};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_sets_her_mobile_chat_and_it_is_in_force_and_stored() {
    let mut provider = sms::FakeProvider::start().await;
    // The configuration says "off" with another number: only the first default.
    let extra = format!(
        "mobile = \"+15550100\"\nmobile_mode = \"off\"\n[sms]\nurl = \"{}\"\n",
        provider.url()
    );
    let mut gateway = common::Gateway::start(&config(&extra));
    let base = format!("http://{}", gateway.http);
    let http = reqwest::Client::new();
    let mut page = DeskBrowser::start("desk_settings.mjs", &base, &[]);

    page.step("logged out on schedule").await;
    // In force at once: nobody is at a desk, so a new chat is texted to her new number (her
    // hours are the whole week).
    let mut customer =
        Customer::open(&http, gateway.http, "claims-app", "dev-1", "+15550123").await;
    let text = provider.next(Duration::from_secs(20)).await;
    assert_eq!(text.to(), "+15550199", "{}", text.text());
    page.go("logged out on schedule", json!({})).await;
    // She logs in while the chat waits: it is offered on her desk at once.
    page.step("offered at login").await;
    customer.send(json!([{"event": "chat_session_end"}])).await;
    page.go("offered at login", json!({})).await;
    page.step("off and logged out").await;

    let done = page.finish().await;
    assert!(
        done["badNumber"]
            .as_str()
            .unwrap()
            .contains("not a phone number"),
        "{done}"
    );
    assert!(
        done["badHours"]
            .as_str()
            .unwrap()
            .contains("hours do not parse"),
        "{done}"
    );
    assert_eq!(done["number"], "+15550199", "{done}");
    assert_eq!(done["onSchedule"], true, "{done}");
    assert_eq!(done["tz"], "Europe/Paris", "{done}");

    // Off now: a new chat while nobody is at a desk is texted to nobody.
    let mut second = Customer::open(&http, gateway.http, "claims-app", "dev-2", "+15550124").await;
    assert!(
        provider
            .none_for(Duration::from_millis(1500))
            .await
            .is_none()
    );
    second.send(json!([{"event": "chat_session_end"}])).await;
    assert_idle(&gateway);

    // Stored: after a restart the API still gives her settings, not the TOML's.
    assert!(gateway.terminate().success());
    gateway.restart();
    let token = desk::agent_desk::login(&http, gateway.http, "alice", "desk").await;
    let settings: Value = http
        .get(format!("http://{}/agent/v1/settings", gateway.http))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let s = &settings["mobile_settings"];
    assert_eq!(s["mobile"], "+15550199", "{settings}");
    assert_eq!(s["mobile_mode"], "off", "{settings}");
    assert_eq!(
        s["mobile_schedule"]["time_zone"], "Europe/Paris",
        "{settings}"
    );
}
