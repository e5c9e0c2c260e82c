//! A whole chat-owned call through the real SIP core, the call driver and the Interaction on
//! one virtual clock ([`World`]): the customer's phone calls in naming the chat and joins it,
//! the agent takes it in the browser, the agent releases the call, then ends the chat. Run
//! twice from one seed it is the same run, event for event and byte for byte.

use std::time::Duration;

use serde_json::json;

use super::harness::{Entry, World, header};
use crate::bridge::{
    Action, AgentDevice, AgentId, Command, EndReason, EventKind, LegId, LegState, LegTarget, Party,
    Phase,
};

fn alice() -> Party {
    Party::Agent(AgentId::from("alice"))
}

/// The states leg `leg` went through, in order.
fn leg_states(world: &World, leg: LegId) -> Vec<LegState> {
    world
        .events()
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Leg { leg: l, state, .. } if *l == leg => Some(*state),
            _ => None,
        })
        .collect()
}

/// Where in the Interaction's events the first one matching `what` is.
fn position(world: &World, what: impl Fn(&EventKind) -> bool) -> usize {
    world
        .events()
        .iter()
        .position(|e| what(&e.kind))
        .expect("the event happened")
}

/// The scenario, asserting its outcome as it goes; the whole log at the end.
fn chat_owned_call(seed: u64) -> Vec<Entry> {
    let mut world = World::new(seed);
    world
        .command(
            Party::System,
            Command::Offer {
                agent: AgentId::from("alice"),
            },
        )
        .unwrap();
    let display_name = "Alice".to_string();
    world
        .command(alice(), Command::Accept { display_name })
        .unwrap();
    assert_eq!(world.it.phase(), Phase::Active);

    // The customer's phone calls in through the trunk, naming the chat: the Interaction lets
    // it join (the trunk vouches for the chat's number) and the leg that starts answers it.
    let invite = world.phone_invite("cust-call-1");
    world.phone_sends(invite);
    assert_eq!(
        world.phone.statuses(),
        [180, 200],
        "answered at once, so no 100"
    );
    let leg = world
        .it
        .legs()
        .keys()
        .next()
        .copied()
        .expect("the call is a leg");
    let ok = world.phone.received.last().unwrap().clone();
    assert!(ok.contains("a=rtpmap:0 PCMU/8000"), "{ok}");
    assert_eq!(
        world.core.stats().calls,
        1,
        "the phone's ACK confirmed the call"
    );

    // The agent's browser gets the offer and answers it; its peer connects and is bridged to
    // the phone's RTP: the voice leg is up.
    let offered = world.events().iter().any(|e| {
        matches!(&e.kind, EventKind::Signaling { to, data, .. }
                 if *to == alice() && data["type"] == "OFFER_CALL")
    });
    assert!(offered, "the browser is offered the call");
    assert_eq!(leg_states(&world, leg), [LegState::Connecting]);
    let answer = json!({"type": "ANSWER_CALL", "sdp": "v=0\r\no=browser 1 1 IN IP4 127.0.0.1\r\n"});
    world.command(alice(), Command::Signal(answer)).unwrap();
    assert_eq!(
        leg_states(&world, leg),
        [LegState::Connecting, LegState::Up]
    );

    // They talk; then the agent releases the call, keeping the chat. The phone gets a BYE,
    // and the leg is released once the phone answered it.
    world.advance(Duration::from_secs(30));
    world.command(alice(), Command::ReleaseCall).unwrap();
    assert!(
        world.phone.received.iter().any(|m| m.starts_with("BYE ")),
        "the phone is hung up"
    );
    assert_eq!(world.peers_closed, [1], "the browser's peer is closed");
    let states = leg_states(&world, leg);
    assert_eq!(states.first(), Some(&LegState::Connecting));
    assert_eq!(states.last(), Some(&LegState::Released), "{states:?}");
    assert!(states.contains(&LegState::Up));
    assert_eq!(world.it.phase(), Phase::Active, "the chat goes on");

    // The chat ends after the call: nothing is left to release, and the transcript is done.
    world.advance(Duration::from_secs(10));
    world.command(alice(), Command::EndSession).unwrap();
    world.advance(Duration::from_secs(60));
    assert_eq!(world.it.phase(), Phase::Closed);
    let released = position(
        &world,
        |k| matches!(k, EventKind::Leg { leg: l, state: LegState::Released, .. } if *l == leg),
    );
    let closed = position(&world, |k| {
        matches!(
            k,
            EventKind::Status {
                phase: Phase::Closed
            }
        )
    });
    assert!(released < closed, "the call is gone before the chat closes");
    let up = world.events().iter().find_map(|e| match &e.kind {
        EventKind::Leg {
            leg: l,
            state: LegState::Released,
            duration_s,
            target,
            ..
        } if *l == leg => Some((*duration_s, target.clone())),
        _ => None,
    });
    let (duration_s, _) = up.expect("released");
    assert_eq!(
        duration_s,
        Some(30),
        "up for the 30 virtual seconds they talked"
    );
    let actions: Vec<&Action> = world
        .log
        .iter()
        .filter_map(|e| match e {
            Entry::Action(action) => Some(action),
            _ => None,
        })
        .collect();
    assert!(
        matches!(
            actions.as_slice(),
            [
                Action::StartLeg {
                    answer: Some(_),
                    device: AgentDevice::Browser,
                    ..
                },
                Action::Signal { .. },
                Action::ReleaseLeg { .. },
                Action::PersistTranscript,
            ]
        ),
        "answer the call, release it, persist the transcript: {actions:?}"
    );
    assert!(world.events().iter().any(|e| matches!(
        &e.kind,
        EventKind::ChatClosed {
            reason: EndReason::AgentEndedSession
        }
    )));
    assert!(
        world
            .it
            .legs()
            .values()
            .all(|l| l.target == Some(LegTarget::Phone(super::harness::CUSTOMER_NUMBER.into())))
    );

    // Nothing is left over anywhere.
    assert_eq!(
        (world.core.stats().calls, world.core.stats().media_legs),
        (0, 0)
    );
    assert_eq!((world.driver.calls(), world.driver.held()), (0, 0));
    let bye = world
        .phone
        .received
        .iter()
        .find(|m| m.starts_with("BYE "))
        .unwrap();
    assert!(header(bye, "Call-ID:").contains("cust-call-1"));
    world.log
}

/// Each entry as text: one line of what it is, then the datagram.
fn text(log: &[Entry]) -> Vec<String> {
    log.iter()
        .map(|entry| match entry {
            Entry::Sip {
                at,
                from,
                to,
                bytes,
            } => {
                format!("{at:?} {from} -> {to}\n{}", String::from_utf8_lossy(bytes))
            }
            other => format!("{other:?}"),
        })
        .collect()
}

#[test]
fn a_chat_owned_call_replays_identically_from_its_seed() {
    let first = chat_owned_call(7);
    let second = chat_owned_call(7);
    let sip = |log: &[Entry]| {
        log.iter()
            .filter(|e| matches!(e, Entry::Sip { .. }))
            .count()
    };
    let events = |log: &[Entry]| log.iter().filter(|e| matches!(e, Entry::Event(_))).count();
    assert!(
        sip(&first) >= 6,
        "INVITE, 100, 180, 200, ACK, BYE, 200: {}",
        sip(&first)
    );
    assert!(events(&first) > 10, "{}", events(&first));
    assert_eq!(text(&first), text(&second));
    assert_eq!(first, second, "entry for entry, byte for byte");

    // The seed is what makes them equal: another gives other tags and branches on the wire,
    // while the conversation itself is the same.
    let other = chat_owned_call(8);
    assert_eq!(first.len(), other.len());
    assert_ne!(first, other);
    let only = |log: &[Entry], sip: bool| -> Vec<Entry> {
        log.iter()
            .filter(|e| matches!(e, Entry::Sip { .. }) == sip)
            .cloned()
            .collect()
    };
    assert_ne!(only(&first, true), only(&other, true), "other SIP bytes");
    let conversation = |log: &[Entry]| -> Vec<Entry> {
        log.iter()
            .filter(|e| matches!(e, Entry::Event(_)))
            .cloned()
            .collect()
    };
    assert_eq!(conversation(&first), conversation(&other));
}
