//! `kill -9` of the node that owns a chat while customers write through the others: another
//! node takes it over within the lease, every acknowledged message is in its history, the chat
//! goes on, and the killed node, back again, does not take it back.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tandem::bridge::InteractionId;

use crate::nodes::{Cluster, PATIENCE, message_ids, post_until_taken, strictly_increasing};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_owner_is_taken_over_with_nothing_acknowledged_lost() {
    let mut cluster = Cluster::start(3).await;
    let chat = cluster.open_chat(0).await;
    let id = InteractionId(chat.clone());
    let store = cluster.store().await;
    let owner = |store: tandem::chat::store::Store| {
        let id = id.clone();
        async move {
            store
                .open_interaction_owner(&id)
                .await
                .unwrap()
                .expect("the chat is open")
                .1
        }
    };
    assert_eq!(owner(store.clone()).await.as_deref(), Some("a"));

    // Two writers post through B and C, one message after another, retrying while nobody
    // serves the chat; each keeps what was acknowledged.
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for node in [1usize, 2] {
        let (http, api, chat) = (
            cluster.http.clone(),
            cluster.nodes[node].api(),
            chat.clone(),
        );
        let (acked, stop) = (acked.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let msg_id = format!("n{node}-{n}");
                post_until_taken(&http, &api, &chat, &msg_id).await;
                acked.lock().unwrap().push(msg_id);
                n += 1;
            }
        }));
    }
    let wait_for = |count: usize| {
        let acked = acked.clone();
        async move {
            let deadline = Instant::now() + PATIENCE;
            while acked.lock().unwrap().len() < count {
                assert!(Instant::now() < deadline, "the writers stalled");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    wait_for(40).await;
    // The owner dies mid-chat.
    cluster.nodes[0].kill9();
    let before = acked.lock().unwrap().len();
    // The chat goes on through the others once one of them has taken it over.
    wait_for(before + 40).await;
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.unwrap();
    }
    let new_owner = owner(store.clone()).await;
    assert!(
        matches!(new_owner.as_deref(), Some("b" | "c")),
        "owned by {new_owner:?}"
    );

    let history = cluster.history(1, &chat).await;
    let stored: HashSet<String> = message_ids(&history).into_iter().collect();
    let acked = acked.lock().unwrap().clone();
    let lost: Vec<&String> = acked.iter().filter(|m| !stored.contains(*m)).collect();
    assert!(lost.is_empty(), "acknowledged messages lost: {lost:?}");
    assert!(strictly_increasing(&history), "seqs only go up");
    assert!(
        !history.iter().any(|e| e["event"] == "chat_session_ended"),
        "the chat was not ended by the takeover"
    );

    // The killed node comes back: it renews its lease, and the chat stays where it is.
    cluster.nodes[0].restart();
    cluster.nodes[0].wait_ready(&cluster.http).await;
    let renewed = |store: tandem::chat::store::Store| async move {
        store
            .nodes()
            .await
            .unwrap()
            .into_iter()
            .find(|n| n.node == "a")
            .map(|n| n.lease_until)
    };
    let first = renewed(store.clone()).await.expect("a registered again");
    let deadline = Instant::now() + PATIENCE;
    // Two renewals later, it has looked for work twice.
    let mut last = first;
    let mut renewals = 0;
    while renewals < 2 {
        assert!(Instant::now() < deadline, "node a does not renew its lease");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = renewed(store.clone()).await.expect("a registered");
        if now > last {
            renewals += 1;
            last = now;
        }
    }
    assert_eq!(
        owner(store.clone()).await,
        new_owner,
        "node a took the chat back"
    );
    // And a message through it reaches the chat where it lives.
    cluster.post_until_taken(0, &chat, "after-return").await;
    assert!(message_ids(&cluster.history(0, &chat).await).contains(&"after-return".to_string()));
}
