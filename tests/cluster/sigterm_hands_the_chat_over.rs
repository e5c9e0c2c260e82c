//! SIGTERM on the node that owns a chat (a rolling restart) hands the chat over to another
//! node instead of ending it.

use tandem::bridge::InteractionId;

use crate::nodes::{Cluster, message_ids};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_the_chat_over() {
    let mut cluster = Cluster::start(2).await;
    let chat = cluster.open_chat(0).await;
    cluster.post(1, &chat, "before").await.unwrap();

    let status = cluster.nodes[0].terminate();
    assert!(status.success(), "node a stopped cleanly: {status:?}");

    // The chat goes on through node b.
    let seq = cluster.post_until_taken(1, &chat, "after").await;
    assert!(seq > 0);
    let store = cluster.store().await;
    let (_, owner) = store
        .open_interaction_owner(&InteractionId(chat.clone()))
        .await
        .unwrap()
        .expect("the chat is still open");
    assert_eq!(owner.as_deref(), Some("b"));
    let history = cluster.history(1, &chat).await;
    assert_eq!(message_ids(&history), ["before", "after"]);
    assert!(
        !history.iter().any(|e| e["event"] == "chat_session_ended"),
        "the chat was handed over, not ended"
    );
}

/// With PostgreSQL and NATS gone, there is nobody to hand a chat over to: a node told to stop
/// gives up on them and ends, rather than waiting for servers that may never come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_the_store_and_nats_gone_still_stops_the_node() {
    let mut cluster = Cluster::start(2).await;
    let chat = cluster.open_chat(0).await;
    cluster.post(0, &chat, "before").await.unwrap();
    drop(cluster.nats);
    drop(cluster.postgres);

    let started = std::time::Instant::now();
    let pid = cluster.nodes[0].pid();
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(40));
    eprintln!("LOG {}", cluster.nodes[0].log());
    let status = cluster.nodes[0].terminate();
    eprintln!("STOPPED in {:?}", started.elapsed());
    assert!(status.success(), "node a stopped cleanly: {status:?}");
}
