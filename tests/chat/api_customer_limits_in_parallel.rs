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
