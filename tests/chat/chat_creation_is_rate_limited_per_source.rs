//! Client ids cost nothing to invent, addresses do: one address opening chats under ever new
//! client ids is held to `chat.creates_per_minute_per_source` after its burst (`429
//! rate_limited` with `Retry-After`), while another address is served as usual.

use crate::common;

use reqwest::StatusCode;
use serde_json::{Value, json};

const CONFIG: &str = r#"
[chat]
creates_per_minute_per_source = 1
creates_burst_per_source = 3

[[services]]
name = "claims"
entries = ["claims-app"]
department = "claims"
"#;

async fn create(
    http: &reqwest::Client,
    gateway: &common::Gateway,
    device: &str,
) -> (StatusCode, Option<String>, Value) {
    let response = http
        .post(format!("http://{}/clientweb/api/v1/chats", gateway.http))
        .header(
            "authorization",
            format!(r#"MOBILE-API-140-327-PLAIN appId="claims-app", clientId="{device}""#),
        )
        .json(&json!({"from": "Visitor"}))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let retry = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (status, retry, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_inventing_client_ids_is_slowed_and_others_are_not() {
    let gateway = common::Gateway::start(CONFIG);
    let sprayer = common::client_from([127, 0, 0, 21]);
    for n in 0..3 {
        let (status, _, body) = create(&sprayer, &gateway, &format!("invented-{n}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, retry, body) = create(&sprayer, &gateway, "invented-3").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    let retry: u64 = retry.expect("Retry-After").parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");

    // Another address has its own allowance.
    let neighbour = common::client_from([127, 0, 0, 22]);
    let (status, _, body) = create(&neighbour, &gateway, "someone-else").await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
