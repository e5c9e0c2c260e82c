//! Routing learns of new interactions from the hub, whoever opens them: a chat opened straight
//! on the hub, with nobody telling routing, is offered to the available agent; naming it to
//! routing again changes nothing; and the hub's subscription hands out each interaction once,
//! those running when it starts included.

use crate::api;

use std::time::Duration;

use api::Api;
use serde_json::{Value, json};
use tandem::bridge::{AgentId, Customer, InteractionId};
use tandem::routing::router::Presence;

const WAIT: Duration = Duration::from_secs(30);

fn config() -> String {
    let hash = tandem::routing::password::hash("desk");
    format!(
        r#"
[http]
listen = "127.0.0.1:0"

[[services]]
name = "claims"
entries = ["claims-app"]
department = "claims"

[[agents]]
name = "alice"
password_hash = "{hash}"
departments = ["claims"]
"#
    )
}

fn customer(device: &str) -> Customer {
    Customer {
        device: device.into(),
        name: None,
        phone: None,
    }
}

/// The next frame for the agent named `event`, skipping others.
async fn next(
    frames: &mut tokio::sync::broadcast::Receiver<std::sync::Arc<str>>,
    event: &str,
) -> Value {
    tokio::time::timeout(WAIT, async {
        loop {
            let frame = frames.recv().await.expect("the agent's stream");
            let frame: Value = serde_json::from_str(&frame).unwrap();
            if frame["event"] == event {
                return frame;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no `{event}` for the agent"))
}

#[tokio::test]
async fn a_chat_opened_on_the_hub_is_routed_without_being_named() {
    let api = Api::with_config(&config()).await;
    let alice = AgentId::from("alice");
    let routing = api.state.routing().clone();
    let mut frames = routing.subscribe(&alice).unwrap();
    routing.connect(&alice).await.unwrap();
    routing
        .set_presence(&alice, Presence::Available)
        .await
        .unwrap();

    let hub = api.state.hub();
    let (id, _) = hub
        .create("claims", customer("dev-1"), json!({"policy": "P-1"}))
        .await
        .unwrap();
    let offer = next(&mut frames, "offer").await;
    assert_eq!(offer["chat_id"], json!(id), "{offer}");
    assert_eq!(offer["context"]["policy"], "P-1", "{offer}");

    // Named again, as a creator used to: still one watcher, so one of each frame.
    routing.watch(hub.get(&id).unwrap());
    routing.accept(&id, &alice).await.unwrap();
    next(&mut frames, "accepted").await;
    let say = |text: &str| tandem::bridge::Command::SendMessage {
        msg_id: Some(text.into()),
        text: text.into(),
    };
    for text in ["first", "second"] {
        hub.command(&id, tandem::bridge::Party::Customer, say(text))
            .await
            .unwrap();
    }
    let mut told = Vec::new();
    tokio::time::timeout(WAIT, async {
        loop {
            let frame: Value = serde_json::from_str(&frames.recv().await.unwrap()).unwrap();
            if frame["event"] == "message" {
                told.push(frame["msg"].as_str().unwrap().to_string());
                if told.iter().filter(|m| *m == "second").count() == 1 {
                    return;
                }
            }
        }
    })
    .await
    .expect("the messages reach the agent");
    assert_eq!(
        told,
        ["first", "second"],
        "each message told once, in order"
    );
}

#[tokio::test]
async fn the_hub_hands_out_each_interaction_once() {
    let api = Api::with_config(&config()).await;
    let hub = api.state.hub();
    let (before, _) = hub
        .create("claims", customer("dev-1"), json!({}))
        .await
        .unwrap();
    let (running, mut created) = hub.subscribe_created();
    let running: Vec<InteractionId> = running.into_iter().map(|h| h.id).collect();
    assert!(running.contains(&before), "{running:?}");

    let (after, _) = hub
        .create("claims", customer("dev-2"), json!({}))
        .await
        .unwrap();
    assert!(!running.contains(&after));
    let told = tokio::time::timeout(WAIT, created.recv())
        .await
        .expect("told of the new interaction")
        .unwrap();
    assert_eq!(told.id, after);
    assert!(created.try_recv().is_err(), "each one once");
}
