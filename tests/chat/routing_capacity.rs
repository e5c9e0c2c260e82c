//! Capacity: a chat takes 25 %, a call 100 %; an agent holds no more offers than it has free
//! slots, a full agent is not offered more, and an accept over capacity is refused.

use crate::routing;

use routing::*;
use tandem::config::RoutingMode;

#[test]
fn a_full_agent_is_not_offered_more() {
    let mut h = Harness::new(
        RoutingMode::RoundRobin,
        vec![agent("alice", 50), agent("bob", 100)],
    );
    h.available(&["alice", "bob"]);
    for n in 0..7 {
        let c = format!("c{n}");
        let out = h.new_chat(&c);
        if let Some((_, a)) = offers(&out).first() {
            h.router.handle_accept(h.now, &chat(&c), &id(a)).unwrap();
            h.drain();
        }
    }
    // alice holds 2 chats (50 %), bob 4 (100 %); the seventh waits.
    assert_eq!(h.router.load(&id("alice")), Some(50));
    assert_eq!(h.router.load(&id("bob")), Some(100));
    assert_eq!(h.router.waiting(), vec![chat("c6")]);

    // A chat ends: the waiting one is offered to the agent who has room again.
    h.router.handle_chat_ended(h.now, &chat("c0"));
    let out = h.drain();
    assert_eq!(offers(&out).len(), 1);
}

#[test]
fn a_call_takes_the_whole_agent() {
    let mut h = Harness::new(RoutingMode::RingAll, vec![agent("alice", 100)]);
    h.available(&["alice"]);
    h.router.handle_call(h.now, &id("alice"), true);
    assert!(offers(&h.new_chat("c1")).is_empty());
    h.router.handle_call(h.now, &id("alice"), false);
    assert_eq!(offers(&h.drain()), vec![("c1".into(), "alice".into())]);
}

#[test]
fn picking_up_a_waiting_chat_over_capacity_is_refused() {
    let mut h = Harness::new(RoutingMode::RingAll, vec![agent("alice", 25)]);
    h.available(&["alice"]);
    h.new_chat("c1");
    h.new_chat("c2");
    h.router
        .handle_accept(h.now, &chat("c1"), &id("alice"))
        .unwrap();
    let err = h.router.handle_accept(h.now, &chat("c2"), &id("alice"));
    assert_eq!(err.unwrap_err().code(), "over_capacity");
}
