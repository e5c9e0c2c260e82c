//! The store stops confirming commits (a locked table, a slow disk) while a customer opens a
//! chat: the creator is told `StoreUnavailable` after the hub's patience instead of waiting for
//! the store, nothing is opened, the device's place is given back, and the chat's row, stored
//! once the store returns, is closed so that no restart brings it back.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde_json::json;
use tandem::bridge::Customer;
use tandem::chat::store::{Store, StoreError, Write};
use tandem::config::Config;
use tandem::hub::{Hub, HubError, Journal};
use tandem::metrics::Metrics;
use tokio::sync::watch;

/// How long a commit is waited for here (the hub's patience).
const PATIENCE: Duration = Duration::from_millis(200);
/// How long any condition may take to come true on a loaded machine.
const DEADLINE: Duration = Duration::from_secs(30);

/// The store, except that while it is stalled every write waits until it is let go.
struct StallingJournal {
    store: Store,
    stalled: Arc<AtomicBool>,
    let_go: watch::Receiver<u64>,
}

impl Journal for StallingJournal {
    fn write(&self, writes: Vec<Write>) -> BoxFuture<'static, Result<(), StoreError>> {
        let store = self.store.clone();
        let stalled = self.stalled.load(Ordering::SeqCst);
        let mut let_go = self.let_go.clone();
        let generation = *let_go.borrow();
        Box::pin(async move {
            if stalled {
                let _ = let_go.wait_for(|g| *g > generation).await;
            }
            store.write(writes).await
        })
    }
}

fn customer() -> Customer {
    Customer {
        device: "device-1".into(),
        name: None,
        phone: None,
    }
}

#[tokio::test]
async fn opening_a_chat_fails_fast_while_the_store_stalls() {
    let dir = tempfile::tempdir().unwrap();
    // One chat per device: a place the failed opening kept would refuse the next one.
    let mut config = Config::parse(
        r#"
[chat]
max_chats_per_device = 1

[[services]]
name = "claims"
entries = ["claims-app"]
department = "claims"
"#,
    )
    .unwrap();
    config.store.url = format!("sqlite://{}/tandem.db", dir.path().display());
    let metrics = Arc::new(Metrics::default());
    let store = Store::open(&config.store.url, 4, metrics.clone())
        .await
        .unwrap();
    let stalled = Arc::new(AtomicBool::new(true));
    let (let_go, let_go_rx) = watch::channel(0);
    let journal = Arc::new(StallingJournal {
        store: store.clone(),
        stalled: stalled.clone(),
        let_go: let_go_rx,
    });
    let hub = Hub::open_with_journal(
        Arc::new(config),
        store.clone(),
        journal,
        PATIENCE,
        metrics,
        None,
    )
    .await
    .unwrap();

    // The creator hears of the stalled store instead of waiting for it.
    let opening = hub.create("claims", customer(), json!({}));
    let refused = tokio::time::timeout(DEADLINE, opening)
        .await
        .expect("opening a chat does not wait for a stalled store");
    assert!(
        matches!(refused, Err(HubError::StoreUnavailable)),
        "{refused:?}"
    );
    assert!(hub.handles().is_empty(), "nothing was opened");

    // The store returns: the held commit lands, and the chat nobody knows of is closed.
    stalled.store(false, Ordering::SeqCst);
    let_go.send_modify(|g| *g += 1);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let rows = store.recent_interactions(10).await.unwrap();
        let open = store.open_interactions().await.unwrap();
        if rows.len() == 1 && open.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the row of the chat not opened is not closed: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The device's place was given back: it opens its chat now.
    let (id, _) = hub
        .create("claims", customer(), json!({}))
        .await
        .expect("a chat opens once the store is back");
    let live: Vec<_> = hub.handles().iter().map(|h| h.id.clone()).collect();
    assert_eq!(live, vec![id]);
}
