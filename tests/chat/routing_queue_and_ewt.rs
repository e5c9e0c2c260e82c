//! The queue: waiting customers get their position and estimated wait, updated as the queue
//! moves; after the maximum wait they are told nobody is available.

use crate::routing;

use std::time::Duration;

use routing::*;
use tandem::config::RoutingMode;
use tandem::routing::router::Output;

fn statuses(out: &[Output]) -> Vec<(String, u32, u64)> {
    out.iter()
        .filter_map(|o| match o {
            Output::QueueStatus {
                chat,
                position,
                ewt,
            } => Some((chat.0.clone(), *position, ewt.as_secs())),
            _ => None,
        })
        .collect()
}

#[test]
fn position_and_ewt_follow_the_queue() {
    // One agent holding one chat at a time (capacity 25 %): 300 s per chat ahead.
    let mut h = Harness::new(RoutingMode::RingAll, vec![agent("alice", 25)]);
    h.available(&["alice"]);
    h.new_chat("c0");
    h.router
        .handle_accept(h.now, &chat("c0"), &id("alice"))
        .unwrap();
    h.drain();
    assert_eq!(statuses(&h.new_chat("c1")), vec![("c1".into(), 1, 300)]);
    assert_eq!(statuses(&h.new_chat("c2")), vec![("c2".into(), 2, 600)]);

    // c0 ends after 60 s: c1 is offered (still ahead in line), and the average handle time
    // learnt from c0 shortens c2's estimate at the next tick.
    h.now = h.now + Duration::from_secs(60);
    h.router.handle_chat_ended(h.now, &chat("c0"));
    assert_eq!(offers(&h.drain()), vec![("c1".into(), "alice".into())]);
    let out = h.advance(Duration::from_secs(10));
    let avg = (300 * 7 + 60) / 8;
    assert_eq!(statuses(&out), vec![("c2".into(), 2, 2 * avg)]);
    // c1 is accepted: c2 is first in line at the next tick.
    h.router
        .handle_accept(h.now, &chat("c1"), &id("alice"))
        .unwrap();
    h.drain();
    let out = h.advance(Duration::from_secs(10));
    assert_eq!(statuses(&out), vec![("c2".into(), 1, avg)]);
}

#[test]
fn after_the_maximum_wait_the_customer_is_told_nobody_is_available() {
    let mut h = Harness::new(RoutingMode::RoundRobin, vec![agent("alice", 100)]);
    let start = h.now;
    h.new_chat("c1");
    let out = h.advance(Duration::from_secs(299));
    assert!(!out.contains(&Output::NobodyAvailable { chat: chat("c1") }));
    let out = h.advance(Duration::from_secs(1));
    assert!(out.contains(&Output::NobodyAvailable { chat: chat("c1") }));
    assert_eq!(h.now.since(start).as_secs(), 300);
    assert!(h.router.waiting().is_empty());
}
