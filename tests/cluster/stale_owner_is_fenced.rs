//! A node that lost an interaction to another node (its lease ran out while it still ran)
//! cannot add to its history: the store refuses the write, the task stops serving it, and its
//! handles answer `Moved`, so the client goes to the new owner.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tandem::bridge::{Command, Customer, EventKind, Party};
use tandem::chat::store::{NodeRecord, Store};
use tandem::config::{ClusterConfig, Config};
use tandem::hub::{Hub, HubError};
use tandem::metrics::Metrics;

use crate::nodes::PATIENCE;
use crate::postgres::Postgres;

fn node(name: &str, lease_until: u64) -> NodeRecord {
    NodeRecord {
        node: name.into(),
        http_url: format!("http://{name}"),
        sip_uri: format!("sip:{name}"),
        lease_until,
    }
}

fn message(msg_id: &str) -> Command {
    Command::SendMessage {
        msg_id: Some(msg_id.into()),
        text: msg_id.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_owner_cannot_write_and_answers_moved() {
    let postgres = Postgres::start();
    let metrics = Arc::new(Metrics::default());
    let store_a = Store::open_as(&postgres.url(), 4, metrics.clone(), Some("a".into()))
        .await
        .unwrap();
    let store_b = Store::open_as(&postgres.url(), 4, metrics.clone(), Some("b".into()))
        .await
        .unwrap();
    let mut config = Config::default();
    config.store.url = postgres.url();
    config.cluster = Some(ClusterConfig {
        node: "a".into(),
        ..ClusterConfig::default()
    });
    let hub_a = Hub::open(Arc::new(config), store_a.clone(), metrics, None)
        .await
        .unwrap();
    let customer = Customer {
        device: "dev-1".into(),
        name: Some("Carol".into()),
        phone: None,
    };
    let (id, _) = hub_a.create("claims", customer, json!({})).await.unwrap();
    let handle = hub_a.get(&id).unwrap();
    handle
        .command(Party::Customer, message("m1"))
        .await
        .unwrap();
    let (_, owner) = store_a.open_interaction_owner(&id).await.unwrap().unwrap();
    assert_eq!(
        owner.as_deref(),
        Some("a"),
        "written as a's in its first commit"
    );

    // A's lease has run out (it was paused, cut off …); b takes its interactions over.
    store_a.register_node(&node("a", 1)).await.unwrap();
    store_b
        .register_node(&node("b", u64::MAX / 2))
        .await
        .unwrap();
    let now = 2;
    // Only one node wins a takeover: a second attempt finds nothing to take.
    assert_eq!(
        store_b.take_over("b", "a", now).await.unwrap(),
        vec![id.clone()]
    );
    assert!(store_b.take_over("b", "a", now).await.unwrap().is_empty());

    // A's task still runs and tries to write: refused, it stops serving, and says so.
    let late = handle.command(Party::Customer, message("late")).await;
    assert!(matches!(late, Err(HubError::Moved)), "{late:?}");
    let again = handle.command(Party::Customer, message("later")).await;
    assert!(matches!(again, Err(HubError::Moved)), "{again:?}");
    assert!(handle.moved());
    let deadline = Instant::now() + PATIENCE;
    while hub_a.get(&id).is_some() {
        assert!(Instant::now() < deadline, "the stale task still runs");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Nothing of a's after the takeover is in the history.
    let texts: Vec<String> = store_b
        .events(&id, 0)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| match e.kind {
            EventKind::Message { text, .. } => Some(text),
            _ => None,
        })
        .collect();
    assert_eq!(texts, ["m1"]);
}
