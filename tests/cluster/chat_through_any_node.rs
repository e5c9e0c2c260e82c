//! A chat opened on one node is served by every node: messages posted through the others land
//! in its one history in `seq` order, and a WebSocket on another node sees every event of it,
//! in order, with no gap and no duplicate.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::nodes::{AUTH, Cluster, PATIENCE, message_ids, strictly_increasing};

const MESSAGES: usize = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_through_any_node_land_in_one_history() {
    let cluster = Cluster::start(3).await;
    let chat = cluster.open_chat(0).await;

    // A customer's socket on node B, from the start of the chat.
    let url = format!(
        "{}/chats/{chat}/ws",
        cluster.nodes[1].api().replace("http://", "ws://")
    );
    let mut request = url.into_client_request().unwrap();
    request
        .headers_mut()
        .insert("authorization", AUTH.parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();

    // Messages through B, C and A in turn, one after another: each acknowledged with its seq.
    let mut acked = Vec::new();
    for n in 0..MESSAGES {
        let msg_id = format!("m{n}");
        let seq = cluster
            .post(n % 3, &chat, &msg_id)
            .await
            .unwrap_or_else(|e| panic!("{msg_id} through node {}: {e:?}", n % 3));
        acked.push((msg_id, seq));
    }
    assert!(
        acked.windows(2).all(|w| w[0].1 < w[1].1),
        "acknowledged seqs go up whichever node took the message: {acked:?}"
    );

    // One history, the same through every node.
    let history = cluster.history(2, &chat).await;
    let ids: Vec<String> = acked.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(message_ids(&history), ids);
    assert!(strictly_increasing(&history));
    for (msg_id, seq) in &acked {
        let stored = history
            .iter()
            .find(|e| e["msg_id"] == msg_id.as_str())
            .unwrap();
        assert_eq!(stored["seq"].as_u64(), Some(*seq), "{msg_id}");
    }
    assert_eq!(cluster.history(0, &chat).await, history);

    // The socket on B saw all of it: every durable event once, in order.
    let mut seen: Vec<Value> = Vec::new();
    let deadline = Instant::now() + PATIENCE;
    while message_ids(&seen).len() < MESSAGES {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = tokio::time::timeout(left.max(Duration::from_millis(1)), socket.next())
            .await
            .unwrap_or_else(|_| panic!("the socket on B stalled after {seen:?}"));
        match frame {
            Some(Ok(Message::Text(text))) => {
                let event: Value = serde_json::from_str(&text).unwrap();
                if event["seq"].is_u64() {
                    seen.push(event);
                }
            }
            Some(Ok(_)) => {}
            other => panic!("the socket on B ended: {other:?} after {seen:?}"),
        }
    }
    assert_eq!(message_ids(&seen), ids);
    let seqs = |events: &[Value]| -> Vec<u64> {
        events.iter().filter_map(|e| e["seq"].as_u64()).collect()
    };
    assert_eq!(
        seqs(&seen),
        seqs(&history),
        "the socket on B has exactly the history's events"
    );
}
