//! An agent's login token works on every node: a desk whose node is gone comes back through
//! another one without logging in again, and a logout through any node ends the token on all
//! of them, the sockets opened with it included.

use std::time::{Duration, Instant};

use crate::agent_desk::{self, Desk};
use crate::nodes::{Cluster, PATIENCE};
use crate::routing_across_nodes::config;

/// The status of `GET /agent/v1/chats` on node `i` with `token`.
async fn chats_status(cluster: &Cluster, i: usize, token: &str) -> u16 {
    cluster
        .http
        .get(format!("http://{}/agent/v1/chats", cluster.nodes[i].addr()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_from_one_node_works_on_the_others_until_logout() {
    let cluster = Cluster::start_with(3, &config(1)).await;
    let token = agent_desk::login(&cluster.http, cluster.nodes[0].addr(), "agent0", "desk").await;

    // Another node knows the token: its API and its agent socket take it.
    assert_eq!(chats_status(&cluster, 1, &token).await, 200);
    let (mut on_c, hello) = Desk::open(cluster.nodes[2].addr(), &token).await;
    assert_eq!(hello["agent"], "agent0", "{hello}");
    // A token nobody handed out is still refused.
    let forged = "0123456789abcdef".repeat(4);
    assert_eq!(chats_status(&cluster, 1, &forged).await, 401);

    // Logout through node b ends it on a, b and c.
    let logout = cluster
        .http
        .post(format!(
            "http://{}/agent/v1/logout",
            cluster.nodes[1].addr()
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 200);
    let deadline = Instant::now() + PATIENCE;
    for i in 0..3 {
        while chats_status(&cluster, i, &token).await != 401 {
            assert!(Instant::now() < deadline, "node {i} still takes the token");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // The socket opened on node c with it is closed.
    while !on_c.closed {
        assert!(
            Instant::now() < deadline,
            "the desk on node c is still open"
        );
        on_c.frame(Duration::from_millis(500)).await;
    }
}
