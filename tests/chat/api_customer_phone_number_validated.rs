//! Numbers are checked where they enter: a chat's `phone_number` (it may be auto-dialled) is
//! E.164 or the service's national form, and inside the service's dial plan; an SMS sender is
//! a phone number. Refusals carry stable codes; accepted numbers are kept in E.164.

use crate::api;

use api::{Api, code};
use axum::body::Body;
use axum::http::Request;
use serde_json::{Value, json};

const CONFIG: &str = r#"
[http]
listen = "127.0.0.1:0"

[sms]
inbound_secret = "the provider's shared secret"
inbound_service = "claims"

[[services]]
name = "claims"
entries = ["claims-app"]
department = "claims"
auto_dial = true

[services.dial_plan]
allowed_prefixes = ["+1", "+44"]
country_code = "+44"
"#;

async fn create(api: &Api, device: &str, phone: &str) -> (axum::http::StatusCode, Value) {
    api.call(
        "POST",
        "/clientweb/api/v1/chats",
        device,
        Some(json!({"from": "Carol", "phone_number": phone})),
    )
    .await
}

#[tokio::test]
async fn a_chats_number_must_be_a_number_the_service_may_dial() {
    let api = Api::with_config(CONFIG).await;
    let cases = [
        ("*67%23", (400, "invalid_number")),
        ("sip:+1555?X-Evil=1@evil.example", (400, "invalid_number")),
        ("+15550100;user=phone", (400, "invalid_number")),
        ("call me", (400, "invalid_number")),
        ("+1555", (400, "invalid_number")),
        ("+9001234567", (403, "number_not_allowed")),
        ("+19005550100", (403, "number_not_allowed")),
        ("011442079460000", (403, "number_not_allowed")),
        ("+33142685300", (403, "number_not_allowed")),
    ];
    for (i, (phone, expected)) in cases.into_iter().enumerate() {
        let answer = create(&api, &format!("dev-{i}"), phone).await;
        assert_eq!(code(&answer), expected, "{phone}: {answer:?}");
    }

    // A national number of the service's country is kept in E.164.
    let (status, body) = create(&api, "carol", "020 7946 0000").await;
    assert_eq!(status, 200, "{body}");
    let chat = tandem::bridge::InteractionId(body["chat_id"].as_str().unwrap().into());
    let handle = api.state.hub().get(&chat).expect("the chat runs");
    let snapshot = handle.subscribe(0).await.unwrap();
    let created = serde_json::to_value(snapshot.backlog[0].as_ref()).unwrap();
    assert!(
        created.to_string().contains("+442079460000"),
        "the number is stored in E.164: {created}"
    );
}

async fn sms(api: &Api, from: &str) -> (axum::http::StatusCode, Value) {
    let request = Request::post("/sms/v1/inbound")
        .header("content-type", "application/json")
        .header("x-sms-secret", "the provider's shared secret")
        .body(Body::from(
            json!({"from": from, "body": "hello", "message_id": format!("m-{from}")}).to_string(),
        ))
        .unwrap();
    let (status, body, _) = api.raw(request).await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn an_sms_sender_must_be_a_phone_number() {
    let api = Api::with_config(CONFIG).await;
    for from in ["*67%23", "sip:+1555?X-Evil=1@evil.example", "BANK", "+1555"] {
        let answer = sms(&api, from).await;
        assert_eq!(code(&answer), (400, "invalid_number"), "{from}: {answer:?}");
    }
    let (status, body) = sms(&api, "+15550100100").await;
    assert_eq!(status, 200, "{body}");
}
