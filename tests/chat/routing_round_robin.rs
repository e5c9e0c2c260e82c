//! Round robin and longest idle on a virtual clock: one agent at a time, next on decline or
//! offer timeout, turns taken fairly.

use crate::routing;

use std::time::Duration;

use routing::*;
use tandem::config::RoutingMode;
use tandem::routing::router::{Output, Presence, WithdrawReason};

#[test]
fn chats_take_turns_over_the_agents() {
    let mut h = Harness::new(
        RoutingMode::RoundRobin,
        vec![agent("alice", 100), agent("bob", 100), agent("carl", 100)],
    );
    h.available(&["alice", "bob", "carl"]);
    let mut got = Vec::new();
    for n in 0..6 {
        got.extend(offers(&h.new_chat(&format!("c{n}"))));
    }
    let agents: Vec<&str> = got.iter().map(|(_, a)| a.as_str()).collect();
    assert_eq!(agents, ["alice", "bob", "carl", "alice", "bob", "carl"]);
}

#[test]
fn a_decline_and_a_timeout_move_the_chat_to_the_next_agent() {
    let mut h = Harness::new(
        RoutingMode::RoundRobin,
        vec![agent("alice", 100), agent("bob", 100), agent("carl", 100)],
    );
    h.available(&["alice", "bob", "carl"]);
    assert_eq!(h.new_chat("c1"), vec![offer("c1", "alice")]);
    h.router
        .handle_decline(h.now, &chat("c1"), &id("alice"))
        .unwrap();
    assert_eq!(
        h.drain(),
        vec![
            withdraw("c1", "alice", WithdrawReason::Declined),
            offer("c1", "bob")
        ]
    );
    let start = h.now;
    let out = h.progress();
    assert_eq!(h.now.since(start), Duration::from_secs(20));
    assert_eq!(
        out,
        vec![
            withdraw("c1", "bob", WithdrawReason::Timeout),
            offer("c1", "carl")
        ]
    );
    // Carl accepts; the next chat starts with alice (the turn after carl).
    h.router
        .handle_accept(h.now, &chat("c1"), &id("carl"))
        .unwrap();
    assert_eq!(h.drain(), vec![assign("c1", "carl")]);
    assert_eq!(h.new_chat("c2"), vec![offer("c2", "alice")]);
}

#[test]
fn after_everyone_had_their_turn_the_round_starts_again() {
    let mut h = Harness::new(
        RoutingMode::RoundRobin,
        vec![agent("alice", 100), agent("bob", 100)],
    );
    h.available(&["alice", "bob"]);
    h.new_chat("c1");
    h.progress(); // alice times out → bob
    let out = h.progress(); // bob times out → nobody left this round
    assert_eq!(out, vec![withdraw("c1", "bob", WithdrawReason::Timeout)]);
    let out = h.progress(); // one offer timeout later, alice again
    assert_eq!(offers(&out), vec![("c1".into(), "alice".into())]);
}

#[test]
fn longest_idle_offers_to_the_agent_free_the_longest() {
    let mut h = Harness::new(
        RoutingMode::LongestIdle,
        vec![agent("alice", 25), agent("bob", 25), agent("carl", 25)],
    );
    h.available(&["carl"]);
    h.now = h.now + Duration::from_secs(5);
    h.available(&["alice"]);
    h.now = h.now + Duration::from_secs(5);
    h.available(&["bob"]);
    assert_eq!(h.new_chat("c1"), vec![offer("c1", "carl")]);
    h.router
        .handle_accept(h.now, &chat("c1"), &id("carl"))
        .unwrap();
    h.drain();
    assert_eq!(h.new_chat("c2"), vec![offer("c2", "alice")]);
    // Alice goes away: the offer moves on to bob at once.
    h.router
        .handle_presence(h.now, &id("alice"), Presence::Away)
        .unwrap();
    let out = h.drain();
    assert_eq!(
        out,
        vec![
            withdraw("c2", "alice", WithdrawReason::AgentLeft),
            offer("c2", "bob")
        ]
    );
    assert!(!out.iter().any(|o| matches!(o, Output::Assign { .. })));
}
