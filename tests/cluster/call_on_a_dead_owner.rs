//! A call whose media was on a node that dies (`kill -9` of the chat's owner, which was also
//! routing's first leader): the node that takes the chat over reports the call released, the
//! agent's desk on another node learns it (live, or from the `hello` it reloads when routing's
//! new leader asks every desk to resync), and the agent's next call in the same chat reaches
//! the new owner through Kamailio, with audio both ways.

use std::time::Instant;

use serde_json::{Value, json};

use crate::agent_desk::Desk;
use crate::nodes::PATIENCE;
use crate::three_nodes_end_to_end::{
    A, B, answer_on_browser, call_id_dispatched_to, chat_on_a_taken_on_b, hears_echo, hung_up,
    logs, phone_calls_in,
};

/// Whether a `hello` lists `chat` with no call left in it.
fn hello_shows_no_call(hello: &Value, chat: &str) -> bool {
    hello["chats"].as_array().into_iter().flatten().any(|card| {
        card["chat_id"] == chat && card["legs"].as_array().is_some_and(|legs| legs.is_empty())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_on_a_dead_owner_ends_and_the_chat_calls_again() {
    let (mut cluster, proxy, mut desk, customer) = chat_on_a_taken_on_b().await;
    let desk_addr = cluster.nodes[B].http_addr;
    let chat = customer.chat.clone();

    // The first call: dispatched to B, redirected to A (the owner), audio both ways.
    let call_id = call_id_dispatched_to(&proxy, cluster.nodes[B].sip);
    let first_phone = phone_calls_in(&proxy, &chat, &call_id);
    desk.call_state(&chat, "connecting").await;
    let client = answer_on_browser(&mut desk, &chat, || logs(&cluster, &proxy)).await;
    desk.call_state(&chat, "up").await;
    hears_echo(&client, || logs(&cluster, &proxy)).await;

    cluster.nodes[A].kill9();
    drop(first_phone);
    client.close().await;

    // The call is over for the desk: told live, or shown by the `hello` of a reload.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let seen = desk
            .until(|v| {
                (v["event"] == "call_state" && v["chat_id"] == chat.as_str())
                    || v["event"] == "resync"
            })
            .await;
        if seen["event"] == "call_state" && seen["state"] == "released" {
            break;
        }
        if seen["event"] == "resync" {
            let token = desk.token.clone();
            let (fresh, hello) = Desk::open(desk_addr, &token).await;
            desk = fresh;
            if hello_shows_no_call(&hello, &chat) {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the desk never learnt the call ended\n{}",
            logs(&cluster, &proxy)
        );
    }

    // The same chat calls again: the new owner takes the call, audio both ways again.
    let call_id = call_id_dispatched_to(&proxy, cluster.nodes[B].sip);
    let phone = phone_calls_in(&proxy, &chat, &call_id);
    let phone = tokio::task::spawn_blocking(move || phone.wait());
    let deadline = Instant::now() + PATIENCE;
    loop {
        let state = desk.call_state(&chat, "connecting").await;
        if state["kind"] == "voice" {
            break;
        }
        assert!(Instant::now() < deadline, "no second call");
    }
    let client = answer_on_browser(&mut desk, &chat, || logs(&cluster, &proxy)).await;
    desk.call_state(&chat, "up").await;
    hears_echo(&client, || logs(&cluster, &proxy)).await;
    let released = desk
        .command(json!({"command": "release_call", "chat_id": chat}))
        .await;
    assert_eq!(released["event"], "ack", "release_call: {released}");
    client.close().await;
    hung_up(phone, || logs(&cluster, &proxy)).await;
}
