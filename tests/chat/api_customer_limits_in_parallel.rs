//! Limits hold when a client races itself: fifty chats created at once on one device open
//! exactly the device's limit, and the rest are refused with a stable code.

use crate::api;

use api::{Api, code};
use futures_util::future::join_all;
use serde_json::json;

#[tokio::test]
async fn fifty_parallel_creates_open_exactly_the_devices_limit() {
    let api = Api::new().await; // chat.max_chats_per_device = 3
    let creates = (0..50).map(|_| {
        api.call(
            "POST",
            "/clientweb/api/v1/chats",
            "racer",
            Some(json!({"from": "Racer"})),
        )
    });
    let answers = join_all(creates).await;
    let opened = answers.iter().filter(|a| a.0.as_u16() == 200).count();
    assert_eq!(opened, 3, "{answers:?}");
    for answer in answers.iter().filter(|a| a.0.as_u16() != 200) {
        assert_eq!(code(answer), (429, "too_many"), "{answer:?}");
    }
    // Another device is not held back by the racer.
    api.create_chat("calm").await;
}

#[tokio::test]
async fn a_device_at_its_limit_opens_again_once_one_of_its_chats_has_ended() {
    let api = Api::new().await; // chat.max_chats_per_device = 3
    let chats = [
        api.create_chat("busy").await,
        api.create_chat("busy").await,
        api.create_chat("busy").await,
    ];
    let body = Some(json!({"from": "Busy"}));
    let refused = api
        .call("POST", "/clientweb/api/v1/chats", "busy", body.clone())
        .await;
    assert_eq!(code(&refused), (429, "too_many"), "{refused:?}");

    let (status, answer) = api
        .send(&chats[0], "busy", json!([{"event": "chat_session_end"}]))
        .await;
    assert_eq!(status, 200, "{answer}");
    // The chat's place is given back once its teardown is over, a moment after the answer.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let answer = api
            .call("POST", "/clientweb/api/v1/chats", "busy", body.clone())
            .await;
        if answer.0 == 200 {
            break;
        }
        assert_eq!(code(&answer), (429, "too_many"), "{answer:?}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the ended chat still counts against its device"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // It holds three again: the ended one is not counted twice on its way out.
    let refused = api
        .call("POST", "/clientweb/api/v1/chats", "busy", body)
        .await;
    assert_eq!(code(&refused), (429, "too_many"), "{refused:?}");
}
