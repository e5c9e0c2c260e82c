//! `kill -9` of the node that leads routing: another node takes the lead, the desks still
//! connected are offered chats again (one left waiting, one opened after), and an agent
//! whose node died finds their chat in the `hello` of a desk on another node.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::agent_desk::Desk;
use crate::nodes::{Cluster, PATIENCE};
use crate::routing_across_nodes::{config, desk_on, open_chat};

/// The index of the node leading routing now, from the nodes' logs.
async fn leader(cluster: &Cluster) -> usize {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let leading: Vec<usize> = (0..cluster.nodes.len())
            .filter(|&i| cluster.nodes[i].log().contains("leading routing"))
            .collect();
        if let [one] = leading[..] {
            return one;
        }
        assert!(Instant::now() < deadline, "no single leader: {leading:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Accepts `chat` once it is offered to `desk`, retrying while routing moves to another node.
async fn take(desk: &mut Desk, chat: &str) {
    desk.until(|v| v["event"] == "offer" && v["chat_id"] == chat)
        .await;
    let deadline = Instant::now() + PATIENCE;
    loop {
        let reply = desk
            .command(json!({"command": "accept", "chat_id": chat}))
            .await;
        if reply["event"] == "ack" {
            return;
        }
        assert_eq!(
            reply["error"]["code"], "routing_unavailable",
            "accepting {chat}: {reply}"
        );
        assert!(Instant::now() < deadline, "{chat} could not be taken");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_routing_leader_is_replaced_and_desks_are_offered_again() {
    let mut cluster = Cluster::start_with(3, &config(3)).await;
    let lead = leader(&cluster).await;
    let others: Vec<usize> = (0..3).filter(|&i| i != lead).collect();

    // agent0 and agent1 at desks on the two other nodes; agent2 on the leader's, with a chat.
    let mut alice = desk_on(&cluster, others[0], "agent0").await;
    let mut bob = desk_on(&cluster, others[1], "agent1").await;
    let mut carl = desk_on(&cluster, lead, "agent2").await;
    let kept = open_chat(&cluster, others[0], "kept").await;
    take(&mut carl, &kept).await;
    // alice and bob were offered it too, and saw it go.
    for desk in [&mut alice, &mut bob] {
        desk.until(|v| v["event"] == "withdrawn" && v["chat_id"] == kept.as_str())
            .await;
    }
    // Nobody can take more: alice and bob go away, so the next chat waits.
    for desk in [&mut alice, &mut bob] {
        let ack = desk
            .command(json!({"command": "set_state", "state": "away"}))
            .await;
        assert_eq!(ack["event"], "ack", "{ack}");
    }
    drop(carl);
    let waiting = open_chat(&cluster, others[1], "waiting").await;

    cluster.nodes[lead].kill9();

    // A node that lives on leads now: alice comes back, and both the waiting chat and a new
    // one are offered to her.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let ack = alice
            .command(json!({"command": "set_state", "state": "available"}))
            .await;
        if ack["event"] == "ack" {
            break;
        }
        assert_eq!(ack["error"]["code"], "routing_unavailable", "{ack}");
        assert!(Instant::now() < deadline, "routing never came back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    take(&mut alice, &waiting).await;
    let after = open_chat(&cluster, others[1], "after").await;
    let ack = bob
        .command(json!({"command": "set_state", "state": "available"}))
        .await;
    assert_eq!(ack["event"], "ack", "{ack}");
    take(&mut bob, &after).await;

    // agent2's node is gone: they log in elsewhere and find their chat.
    let token = crate::agent_desk::login(
        &cluster.http,
        cluster.nodes[others[1]].addr(),
        "agent2",
        "desk",
    )
    .await;
    let (_carl, hello) = Desk::open(cluster.nodes[others[1]].addr(), &token).await;
    let chats: Vec<&str> = hello["chats"]
        .as_array()
        .expect("chats")
        .iter()
        .filter_map(|c| c["chat_id"].as_str())
        .collect();
    assert_eq!(chats, [kept.as_str()], "{hello}");
}
