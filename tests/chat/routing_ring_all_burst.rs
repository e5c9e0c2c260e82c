//! Ring-all under a burst, on a virtual clock: an offer reserves nothing, an agent holds no more
//! offers than it has free slots, the department's slots are shared out among the waiting chats
//! so that none waits while an agent has room, and room is checked again at accept.

use crate::routing;

use std::collections::{HashMap, HashSet};

use routing::*;
use tandem::config::RoutingMode;
use tandem::routing::router::{MAX_OFFERS_PER_AGENT, Output, WithdrawReason};

/// Offers standing after `outputs`, as (chat, agent), replayed in order.
fn standing(outputs: &[Output], into: &mut HashSet<(String, String)>) {
    for o in outputs {
        match o {
            Output::Offer { chat, agent, .. } => {
                into.insert((chat.0.clone(), agent.0.clone()));
            }
            Output::Withdraw { chat, agent, .. } => {
                into.remove(&(chat.0.clone(), agent.0.clone()));
            }
            Output::Assign { chat, agent } => {
                into.remove(&(chat.0.clone(), agent.0.clone()));
            }
            _ => {}
        }
    }
}

#[test]
fn a_burst_rings_every_chat_and_no_agent_is_asked_more_than_it_can_take() {
    // 200 agents with room for 10 chats each (200 % at 20 % a chat), 1000 chats at once.
    let mut s = settings();
    s.chat_load = 20;
    let agents: Vec<_> = (0..200)
        .map(|n| agent(&format!("agent-{n}"), 200))
        .collect();
    let names: Vec<String> = agents.iter().map(|a| a.id.0.clone()).collect();
    let mut h = Harness::with(s, RoutingMode::RingAll, agents);
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    h.available(&refs);

    let mut offers_made = 0;
    let mut out_now = HashSet::new();
    for n in 0..1000 {
        let out = h.new_chat(&format!("c{n}"));
        offers_made += offers(&out).len();
        standing(&out, &mut out_now);
        // After every arrival: no agent holds more offers than it has free slots.
        if n % 97 == 0 {
            for a in &names {
                assert!(h.router.agent_chats(&id(a)).0.len() <= 10, "{a}");
            }
        }
    }
    // Nobody waits while an agent has room: every chat rings two agents (2000 slots / 1000).
    let mut per_chat: HashMap<&str, usize> = HashMap::new();
    for (c, _) in &out_now {
        *per_chat.entry(c.as_str()).or_default() += 1;
    }
    assert_eq!(per_chat.len(), 1000);
    assert!(per_chat.values().all(|&n| n == 2), "{per_chat:?}");
    for a in &names {
        assert_eq!(h.router.agent_chats(&id(a)).0.len(), 10, "{a}");
    }
    // The share-out costs a bounded number of offers, far from 1000 × 200.
    assert!(offers_made < 20_000, "{offers_made} offers");

    // Every agent accepts what it reads first: none is refused, and all 1000 are taken.
    let mut refused = 0;
    while let Some((c, a)) = out_now.iter().next().cloned() {
        match h.router.handle_accept(h.now, &chat(&c), &id(&a)) {
            Ok(()) => {}
            Err(_) => refused += 1,
        }
        out_now.remove(&(c.clone(), a.clone()));
        let out = h.drain();
        standing(&out, &mut out_now);
    }
    assert_eq!(refused, 0);
    assert!(h.router.waiting().is_empty());
    for a in &names {
        assert!(h.router.load(&id(a)).unwrap() <= 200, "{a}");
    }
}

#[test]
fn a_growing_queue_shares_the_offers_out() {
    // Room for one chat each.
    let mut h = Harness::new(
        RoutingMode::RingAll,
        vec![agent("alice", 25), agent("bob", 25)],
    );
    h.available(&["alice", "bob"]);
    // A short queue rings the whole group.
    assert_eq!(
        h.new_chat("c1"),
        vec![offer("c1", "alice"), offer("c1", "bob")]
    );
    // A second chat: two slots for two chats, one each; the first gives one back.
    let out = h.new_chat("c2");
    assert_eq!(out.len(), 2, "{out:?}");
    assert!(matches!(
        &out[0],
        Output::Withdraw { chat: c, reason: WithdrawReason::Reshared, .. } if c.0 == "c1"
    ));
    let (to, from) = match (&out[0], &out[1]) {
        (
            Output::Withdraw { agent: from, .. },
            Output::Offer {
                chat: c, agent: to, ..
            },
        ) => {
            assert_eq!(c.0, "c2");
            (to.clone(), from.clone())
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(to, from, "the slot given back goes to the new chat");
    // A third chat finds no slot and waits; both accepts succeed.
    assert!(offers(&h.new_chat("c3")).is_empty());
    let (c1_agent, _) = h.router.agent_chats(&id("alice"));
    let alice_has = c1_agent[0].0.clone();
    h.router
        .handle_accept(h.now, &chat(&alice_has), &id("alice"))
        .unwrap();
    let other = if alice_has == "c1" { "c2" } else { "c1" };
    h.router
        .handle_accept(h.now, &chat(other), &id("bob"))
        .unwrap();
    assert_eq!(h.router.waiting(), vec![chat("c3")]);
}

#[test]
fn an_accept_that_fills_the_agent_withdraws_the_offers_that_no_longer_fit() {
    // alice has room for one chat, bob for four.
    let mut h = Harness::new(
        RoutingMode::RingAll,
        vec![agent("alice", 25), agent("bob", 100)],
    );
    h.available(&["alice", "bob"]);
    h.new_chat("c1");
    // c2 rings bob alone: alice's one slot is asked for c1 already.
    assert_eq!(h.new_chat("c2"), vec![offer("c2", "bob")]);
    // alice picks c2 up anyway (an offer reserved nothing): she is full, c1's offer goes.
    h.router
        .handle_accept(h.now, &chat("c2"), &id("alice"))
        .unwrap();
    assert_eq!(
        h.drain(),
        vec![
            withdraw("c2", "bob", WithdrawReason::Taken),
            assign("c2", "alice"),
            withdraw("c1", "alice", WithdrawReason::NoRoom),
        ]
    );
    // The room is checked at accept: full, refused with a stable code.
    let err = h.router.handle_accept(h.now, &chat("c1"), &id("alice"));
    assert_eq!(err.unwrap_err().code(), "over_capacity");
    // c1 still rings bob, who takes it.
    h.router
        .handle_accept(h.now, &chat("c1"), &id("bob"))
        .unwrap();
    assert!(h.router.waiting().is_empty());
}

#[test]
fn a_call_withdraws_the_offers_that_no_longer_fit() {
    let mut h = Harness::new(
        RoutingMode::RingAll,
        vec![agent("alice", 100), agent("bob", 100)],
    );
    h.available(&["alice", "bob"]);
    h.new_chat("c1");
    h.router.handle_call(h.now, &id("alice"), true);
    assert_eq!(
        h.drain(),
        vec![withdraw("c1", "alice", WithdrawReason::NoRoom)]
    );
    assert_eq!(h.router.agent_chats(&id("bob")).0, vec![chat("c1")]);
}

#[test]
fn an_agent_with_a_large_capacity_still_holds_a_bounded_number_of_offers() {
    // Room for 400 chats.
    let mut h = Harness::new(RoutingMode::RingAll, vec![agent("alice", 10_000)]);
    h.available(&["alice"]);
    for n in 0..100 {
        h.new_chat(&format!("c{n}"));
    }
    let (offered, _) = h.router.agent_chats(&id("alice"));
    assert_eq!(offered.len(), MAX_OFFERS_PER_AGENT);
    // The oldest chats ring; an accept lets the next one in.
    assert!(offered.contains(&chat("c0")));
    assert!(!offered.contains(&chat("c99")));
    h.router
        .handle_accept(h.now, &chat("c0"), &id("alice"))
        .unwrap();
    let out = h.drain();
    assert_eq!(offers(&out), vec![("c20".to_string(), "alice".to_string())]);
}

#[test]
fn a_burst_served_in_one_batch_is_shared_out_at_once() {
    let mut s = settings();
    s.chat_load = 20;
    let agents: Vec<_> = (0..200)
        .map(|n| agent(&format!("agent-{n}"), 200))
        .collect();
    let names: Vec<String> = agents.iter().map(|a| a.id.0.clone()).collect();
    let mut h = Harness::with(s, RoutingMode::RingAll, agents);
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    h.available(&refs);
    let now = h.now;
    h.router.batch(now, |router| {
        for n in 0..1000 {
            router.handle_new_chat(now, chat(&format!("c{n}")), "claims");
        }
    });
    let out = h.drain();
    // Two agents per chat, each agent asked ten, and nothing offered only to be taken back.
    assert_eq!(offers(&out).len(), 2000);
    assert!(!out.iter().any(|o| matches!(o, Output::Withdraw { .. })));
    for a in &names {
        assert_eq!(h.router.agent_chats(&id(a)).0.len(), 10, "{a}");
    }
}
