//! Agents who leave: one dropping mid-offer is skipped at once; one dropping mid-chat gets a
//! grace period to come back, then the chat is re-queued and offered to someone else.

use crate::routing;

use std::time::Duration;

use routing::*;
use tandem::config::RoutingMode;
use tandem::routing::router::{Output, Presence, WithdrawReason};

#[test]
fn an_agent_dropping_mid_offer_is_skipped() {
    let mut h = Harness::new(
        RoutingMode::RoundRobin,
        vec![agent("alice", 100), agent("bob", 100)],
    );
    h.available(&["alice", "bob"]);
    assert_eq!(h.new_chat("c1"), vec![offer("c1", "alice")]);
    h.router.handle_disconnect(h.now, &id("alice"));
    assert_eq!(
        h.drain(),
        vec![
            withdraw("c1", "alice", WithdrawReason::AgentLeft),
            offer("c1", "bob")
        ]
    );
    assert_eq!(h.router.presence(&id("alice")), Some(Presence::Offline));
}

#[test]
fn a_second_tab_keeps_the_agent_connected() {
    let mut h = Harness::new(RoutingMode::RingAll, vec![agent("alice", 100)]);
    h.available(&["alice"]);
    h.router.handle_connect(h.now, &id("alice")).unwrap();
    h.new_chat("c1");
    h.router.handle_disconnect(h.now, &id("alice"));
    assert!(h.drain().is_empty(), "the other tab still holds the offer");
}

#[test]
fn a_chat_survives_a_reconnect_within_the_grace_period() {
    let mut h = Harness::new(
        RoutingMode::RingAll,
        vec![agent("alice", 100), agent("bob", 100)],
    );
    h.available(&["alice"]);
    h.new_chat("c1");
    h.router
        .handle_accept(h.now, &chat("c1"), &id("alice"))
        .unwrap();
    h.available(&["bob"]);
    h.router.handle_disconnect(h.now, &id("alice"));
    h.advance(Duration::from_secs(29));
    h.router.handle_connect(h.now, &id("alice")).unwrap();
    let out = h.advance(Duration::from_secs(60));
    assert!(!out.iter().any(|o| matches!(o, Output::Requeue { .. })));
    assert_eq!(h.router.agent_chats(&id("alice")).1, vec![chat("c1")]);
}

#[test]
fn after_the_grace_period_the_chat_is_requeued_and_offered_to_another_agent() {
    let mut h = Harness::new(
        RoutingMode::RingAll,
        vec![agent("alice", 100), agent("bob", 100)],
    );
    h.available(&["alice"]);
    h.new_chat("c1");
    h.router
        .handle_accept(h.now, &chat("c1"), &id("alice"))
        .unwrap();
    h.available(&["bob"]);
    h.drain();
    let start = h.now;
    h.router.handle_disconnect(h.now, &id("alice"));
    let out = h.progress();
    assert_eq!(h.now.since(start), Duration::from_secs(30));
    assert_eq!(
        out,
        vec![
            Output::Requeue {
                chat: chat("c1"),
                agent: id("alice")
            },
            offer("c1", "bob")
        ]
    );
    assert_eq!(h.router.load(&id("alice")), Some(0));
}

#[test]
fn logging_out_requeues_at_once() {
    let mut h = Harness::new(
        RoutingMode::RingAll,
        vec![agent("alice", 100), agent("bob", 100)],
    );
    h.available(&["alice", "bob"]);
    h.new_chat("c1");
    h.router
        .handle_accept(h.now, &chat("c1"), &id("alice"))
        .unwrap();
    h.drain();
    h.router
        .handle_presence(h.now, &id("alice"), Presence::Offline)
        .unwrap();
    let out = h.drain();
    assert!(out.contains(&Output::Requeue {
        chat: chat("c1"),
        agent: id("alice")
    }));
    assert!(out.contains(&offer("c1", "bob")));
}
