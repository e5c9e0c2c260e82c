//! `availability` tells the truth: available only when someone of the service's department could
//! take the chat (an agent at a desk and available, or, with nobody at a desk, a mobile operator
//! on duty whom an SMS can reach), with an expected wait that grows with the chats queued
//! beyond the free slots; not available when nobody is logged in, when the agents there are
//! away, or outside business hours. `POST chats` answers with the same expected wait.

use crate::api;

use std::time::Duration;

use api::Api;
use serde_json::{Value, json};
use tandem::bridge::{AgentId, InteractionId};
use tandem::routing::router::Presence;

fn config(sms: bool) -> String {
    let sms = if sms {
        "[sms]\nurl = \"http://127.0.0.1:9/sms\"\n"
    } else {
        ""
    };
    let hash = tandem::routing::password::hash("desk");
    format!(
        r#"{sms}
[http]
listen = "127.0.0.1:0"

[routing]
chat_load_percent = 25
default_handle_time_s = 240

[[services]]
name = "claims"
entries = ["claims-app"]
department = "claims"

[[agents]]
name = "alice"
display_name = "Alice"
password_hash = "{hash}"
departments = ["claims"]

[[agents]]
name = "olga"
password_hash = "{hash}"
departments = ["claims"]
mobile = "+15550101"
mobile_mode = "on"
"#
    )
}

async fn availability(api: &Api) -> Value {
    let (status, body) = api
        .call("GET", "/clientweb/api/v1/availability", "dev-1", None)
        .await;
    assert_eq!(status.as_u16(), 200, "{body}");
    body
}

/// Polls `availability` until `pred` holds (routing applies presence on its own task).
async fn until(api: &Api, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let body = availability(api).await;
        if pred(&body) {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never {what}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn open_chat(api: &Api, device: &str) -> (String, Value) {
    let (status, body) = api
        .call(
            "POST",
            "/clientweb/api/v1/chats",
            device,
            Some(json!({"from": "Carol"})),
        )
        .await;
    assert_eq!(status.as_u16(), 200, "{body}");
    (body["chat_id"].as_str().unwrap().to_string(), body)
}

#[tokio::test]
async fn only_an_available_agent_makes_the_service_available_and_a_queue_makes_a_wait() {
    let api = Api::with_config(&config(false)).await;
    let routing = api.state.routing().clone();
    let alice = AgentId::from("alice");

    // Nobody logged in (and no SMS to reach the operator).
    let body = availability(&api).await;
    assert_eq!(body["chat"], "notAvailable", "{body}");
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .contains("Nobody is available")
    );

    // Logged in but not ready yet: still nobody.
    routing.connect(&alice).await.unwrap();
    let body = availability(&api).await;
    assert_eq!(body["chat"], "notAvailable", "{body}");

    routing
        .set_presence(&alice, Presence::Available)
        .await
        .unwrap();
    let body = until(&api, "available", |b| b["chat"] == "available").await;
    assert_eq!(body["ewt"], 0, "a free agent answers at once: {body}");

    // Alice takes four chats: her capacity (25 % each). The next customer waits for a slot.
    for n in 0..4 {
        let (chat, created) = open_chat(&api, &format!("dev-{n}")).await;
        assert_eq!(created["ewt"], 0, "{created}");
        // The offer is made once routing has seen the chat.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while let Err(e) = routing.accept(&InteractionId(chat.clone()), &alice).await {
            assert!(tokio::time::Instant::now() < deadline, "accept {n}: {e}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let body = until(&api, "a full agent", |b| b["ewt"] != 0).await;
    assert_eq!(
        body["chat"], "available",
        "she takes it when a slot frees: {body}"
    );
    // One ahead (the new customer) over her four slots: 240 s / 4.
    assert_eq!(body["ewt"], 60, "{body}");
    let (_, created) = open_chat(&api, "dev-4").await;
    assert_eq!(created["ewt"], 60, "{created}");
    // With that chat queued, the next is two ahead.
    let body = until(&api, "two ahead", |b| b["ewt"] == 120).await;
    assert_eq!(body["chat"], "available");

    // Away: nobody takes chats any more.
    routing.set_presence(&alice, Presence::Away).await.unwrap();
    let body = until(&api, "unavailable", |b| b["chat"] == "notAvailable").await;
    assert!(body.get("ewt").is_none(), "{body}");
}

#[tokio::test]
async fn a_mobile_operator_on_duty_answers_when_nobody_is_at_a_desk() {
    let api = Api::with_config(&config(true)).await;
    let body = availability(&api).await;
    assert_eq!(body["chat"], "available", "Olga is texted: {body}");
    assert_eq!(body["ewt"], 0);
}
