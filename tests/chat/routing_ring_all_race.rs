//! Ring-all on a virtual clock: every eligible agent is offered the chat at once, the first
//! accept wins atomically, the others see it withdrawn and a late accept is refused.

use crate::routing;

use routing::*;
use tandem::config::RoutingMode;
use tandem::routing::router::WithdrawReason;

#[test]
fn two_accepts_one_wins_the_other_sees_withdrawn() {
    let mut h = Harness::new(
        RoutingMode::RingAll,
        vec![agent("alice", 100), agent("bob", 100), agent("carl", 100)],
    );
    // carl is connected but away: not offered.
    h.available(&["alice", "bob"]);
    h.router.handle_connect(h.now, &id("carl")).unwrap();
    let out = h.new_chat("c1");
    assert_eq!(out, vec![offer("c1", "alice"), offer("c1", "bob")]);

    h.router
        .handle_accept(h.now, &chat("c1"), &id("bob"))
        .unwrap();
    assert_eq!(
        h.drain(),
        vec![
            withdraw("c1", "alice", WithdrawReason::Taken),
            assign("c1", "bob")
        ]
    );
    let late = h.router.handle_accept(h.now, &chat("c1"), &id("alice"));
    assert_eq!(late.unwrap_err().code(), "offer_not_available");
    assert!(h.drain().is_empty());
    assert_eq!(h.router.load(&id("bob")), Some(25));
    assert_eq!(h.router.load(&id("alice")), Some(0));
}

#[test]
fn an_agent_who_becomes_available_is_offered_the_waiting_chat_too() {
    let mut h = Harness::new(
        RoutingMode::RingAll,
        vec![agent("alice", 100), agent("bob", 100)],
    );
    h.available(&["alice"]);
    assert_eq!(h.new_chat("c1"), vec![offer("c1", "alice")]);
    assert_eq!(h.available(&["bob"]), vec![offer("c1", "bob")]);
    // Ring-all offers do not time out; only the maximum wait ends them.
    let out = h.progress();
    assert!(offers(&out).is_empty());
}

#[test]
fn when_everyone_declines_the_chat_goes_round_again_after_the_offer_timeout() {
    let mut h = Harness::new(
        RoutingMode::RingAll,
        vec![agent("alice", 100), agent("bob", 100)],
    );
    h.available(&["alice", "bob"]);
    h.new_chat("c1");
    h.router
        .handle_decline(h.now, &chat("c1"), &id("alice"))
        .unwrap();
    h.router
        .handle_decline(h.now, &chat("c1"), &id("bob"))
        .unwrap();
    let out = h.drain();
    assert_eq!(
        out,
        vec![
            withdraw("c1", "alice", WithdrawReason::Declined),
            withdraw("c1", "bob", WithdrawReason::Declined)
        ]
    );
    let start = h.now;
    let out = h.progress();
    assert_eq!(h.now.since(start).as_secs(), 20);
    assert_eq!(offers(&out).len(), 2);
}
