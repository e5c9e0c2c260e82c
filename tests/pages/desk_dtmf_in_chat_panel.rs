//! The digits a customer keys on a call appear in the Agent Desktop's Chat Panel, in headless
//! Chromium against the real binary: the agent calls the customer's phone from the Contact Info
//! panel on her browser and sees it ringing (`Ringing… +15550123`); the phone (SIPp behind the
//! service's trunk, `phone_keys_digits.xml`) answers with RFC 4733 telephone-events and keys 1,
//! 5 and 9. The conversation shows one line
//! per key press, the digit itself for an ordinary service and `•` for a service whose digits
//! are sensitive (`sensitive_dtmf`), so a card number never reaches the agent's screen.
//! `/metrics` is idle afterwards.

use crate::common;
use crate::desk;
use crate::desk_browser;

use desk::Customer;
use desk_browser::{DeskBrowser, assert_idle};
use serde_json::json;
use tandem::routing::password;

/// The chat's phone number, which the phone's scenario checks in the request URI.
const NUMBER: &str = "+15550123";

/// `claims` dials through `carrier` (the phone on `phone_port`); its digits are `sensitive`.
fn config(phone_port: u16, sensitive: bool) -> String {
    let hash = password::hash("desk");
    format!(
        r#"
[[sip.trunks]]
name = "carrier"
addresses = ["127.0.0.1:{phone_port}"]

[[services]]
name = "claims"
entries = ["claims-app"]
department = "claims"
routing = "ring_all"
trunk = "carrier"
caller_id = "+15550100"
sensitive_dtmf = {sensitive}

[[agents]]
name = "alice"
display_name = "Alice"
password_hash = "{hash}"
departments = ["claims"]
"#
    )
}

/// The lines the Chat Panel showed for the phone's three key presses.
async fn keyed_lines(sensitive: bool) -> Vec<String> {
    let phone_port = common::free_port();
    let gateway = common::Gateway::start(&config(phone_port, sensitive));
    let base = format!("http://{}", gateway.http);
    let http = reqwest::Client::new();

    let pcap = common::pcap_dir();
    let scenario = common::scenario("phone_keys_digits.xml");
    let port = phone_port.to_string();
    let sipp = common::sipp_spawn_in_dir(
        pcap.path(),
        gateway.sip,
        &["-p", &port, "-sf", scenario.to_str().unwrap(), "-m", "1"],
    );
    let phone = tokio::task::spawn_blocking(move || sipp.wait());

    let shot = if sensitive {
        "dtmf-masked"
    } else {
        "dtmf-digits"
    };
    let mut page = DeskBrowser::start("desk_dtmf.mjs", &base, &[NUMBER, shot]);
    page.step("open a chat").await;
    let mut customer =
        Customer::open(&http, gateway.http, "claims-app", desk::DEVICE, NUMBER).await;
    page.go("open a chat", json!({})).await;
    page.step("released").await;
    let done = page.finish().await;

    customer.send(json!([{"event": "chat_session_end"}])).await;
    let stats = tokio::time::timeout(std::time::Duration::from_secs(60), phone)
        .await
        .expect("the phone finishes")
        .unwrap();
    assert_eq!((stats.successful, stats.failed), (1, 0), "{stats:?}");
    assert_idle(&gateway);
    assert!(
        done["ringing"]
            .as_str()
            .unwrap()
            .starts_with(&format!("Ringing… {NUMBER}")),
        "{done}"
    );
    done["lines"]
        .as_array()
        .unwrap_or_else(|| panic!("{done}"))
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_digits_the_customer_keys_are_lines_of_the_conversation() {
    assert_eq!(
        keyed_lines(false).await,
        [
            "The customer keyed 1",
            "The customer keyed 5",
            "The customer keyed 9"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sensitive_digits_are_masked_on_the_agents_screen() {
    assert_eq!(
        keyed_lines(true).await,
        [
            "The customer keyed •",
            "The customer keyed •",
            "The customer keyed •"
        ]
    );
}
