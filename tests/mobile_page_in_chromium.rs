//! The mobile operator's page in a real browser: headless Chromium (Debian `chromium`), driven by
//! `tests/browser/mobile_page.mjs` with `playwright-core` (installed by `scripts/test` into
//! `tests/browser/node_modules`). The page claims the chat from the SMS link, shows the
//! customer's message, sends a reply that the customer receives, keeps the chat on reload, and a
//! second tab on the same link is told it is already taken. Missing Chromium, Node or
//! playwright-core fail the test: nothing is skipped.

#[path = "common/api.rs"]
mod api;
#[path = "common/sms.rs"]
mod sms;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
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
    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").is_dir(),
        "playwright-core is missing: run scripts/test (npm install --prefix tests/browser)"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: run scripts/test (apt-get install chromium)"
    );

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

    let reply = "Hello Carol, Olga here — send me a photo, please.";
    let run = tokio::process::Command::new("node")
        .arg(browser_dir.join("mobile_page.mjs"))
        .args([offer.link().as_str(), "my car is dented", reply])
        .env("CHROMIUM", &chromium)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(90), run)
        .await
        .expect("the browser run ends within 90 s")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "browser run failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let result: Value = serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap();
    assert_eq!(result["ok"], true);
    assert_eq!(result["title"], "Chat with Carol");
    assert!(
        result["notice"].as_str().unwrap().contains("already taken"),
        "{result}"
    );

    // The customer received the operator's reply, from Olga.
    let history = api.history(&chat, "dev-1").await;
    let got = history
        .iter()
        .find(|e| e["event"] == "chat_session_message" && e["msg"] == reply)
        .unwrap_or_else(|| panic!("the reply in {}", json!(history)));
    assert_eq!(got["party_id"], "olga");
    server.abort();
}
