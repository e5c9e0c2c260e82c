//! A node cut off from the store (its network to PostgreSQL gone, NATS still there) loses its
//! chats to the others once its lease is over: another node takes the chat over, nothing
//! acknowledged is lost, the cut-off node acknowledges nothing meanwhile, and when its network
//! comes back it takes nothing back and serves the chat again by forwarding.

use std::time::{Duration, Instant};

use tandem::bridge::InteractionId;

use crate::nodes::{Cluster, PATIENCE, message_ids, post, strictly_increasing};
use crate::postgres::Postgres;
use crate::tcp_proxy::TcpProxy;

/// Posts through `api` until it is acknowledged, retrying what a client retries while the
/// chat's owner has no store or is being replaced (every answer `503`, or none).
async fn post_until_served(http: &reqwest::Client, api: &str, chat: &str, msg_id: &str) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match post(http, api, chat, msg_id).await {
            Ok(_) => return,
            Err((status, code)) => {
                assert!(status == 503 || status == 0, "refused: {status} {code}");
                assert!(Instant::now() < deadline, "never served: {status} {code}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_the_store_fences_itself() {
    let postgres = Postgres::start();
    let proxy = TcpProxy::start(([127, 0, 0, 1], postgres.port).into()).await;
    let through_proxy = format!("postgres://tandem@{}/postgres", proxy.addr);
    let cluster = Cluster::start_on(postgres, 3, "", &|i| {
        (i == 0).then(|| through_proxy.clone())
    })
    .await;
    let chat = cluster.open_chat(0).await;
    let id = InteractionId(chat.clone());
    let store = cluster.store().await;
    let owner = || async {
        store
            .open_interaction_owner(&id)
            .await
            .unwrap()
            .expect("the chat is open")
            .1
    };
    assert_eq!(owner().await.as_deref(), Some("a"));

    let mut acked = Vec::new();
    for n in 0..5 {
        let msg_id = format!("before-{n}");
        cluster.post(0, &chat, &msg_id).await.expect("acknowledged");
        acked.push(msg_id);
    }

    proxy.cut();
    // Through the others, once one of them took the chat over.
    for n in 0..6 {
        let msg_id = format!("cut-{n}");
        post_until_served(
            &cluster.http,
            &cluster.nodes[1 + n % 2].api(),
            &chat,
            &msg_id,
        )
        .await;
        acked.push(msg_id);
    }
    let new_owner = owner().await;
    assert!(
        matches!(new_owner.as_deref(), Some("b" | "c")),
        "owned by {new_owner:?}"
    );
    // The node without its store acknowledges nothing.
    if let Ok(seq) = cluster.post(0, &chat, "through-the-cut-off-node").await {
        panic!("the cut-off node acknowledged a message as seq {seq}");
    }

    proxy.restore();
    // Back: it forwards to the new owner, and keeps its hands off the chat.
    post_until_served(&cluster.http, &cluster.nodes[0].api(), &chat, "after").await;
    acked.push("after".into());
    assert_eq!(owner().await, new_owner);

    let history = cluster.history(1, &chat).await;
    assert!(strictly_increasing(&history));
    assert_eq!(message_ids(&history), acked, "{history:#?}");
}
