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
