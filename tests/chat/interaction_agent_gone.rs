//! An agent who does not come back within the reconnect grace: routing re-queues the chat, and
//! the Interaction releases the agent's call and video first, re-queuing only once they are
//! gone — no leg outlives its agent. On a virtual clock.

use crate::interaction as harness;

use harness::{Harness, alice, rules};
use tandem::bridge::{
    Action, AgentDevice, AgentId, Command, EventKind, LegId, LegState, Party, Phase,
};

/// A chat with a call (leg 1) and video (leg 2) up.
fn multimedia() -> Harness {
    let mut h = Harness::active(rules());
    h.ok(
        alice(),
        Command::CallCustomer {
            number: None,
            device: AgentDevice::Browser,
        },
    );
    h.ok(Party::System, Command::LegUp { leg: LegId(1) });
    h.ok(Party::Customer, Command::RequestVideo);
    h.ok(alice(), Command::AllowVideo);
    h.ok(Party::System, Command::LegUp { leg: LegId(2) });
    h.events.clear();
    h.actions.clear();
    h
}

fn bob() -> AgentId {
    AgentId::from("bob")
}

/// The `seq` of the first event matching `pred`.
fn seq_of(h: &Harness, pred: impl Fn(&EventKind) -> bool) -> u64 {
    h.events
        .iter()
        .find(|e| pred(&e.kind))
        .and_then(|e| e.seq)
        .unwrap_or_else(|| panic!("no such event in {:#?}", h.names()))
}

fn released(leg: u32) -> impl Fn(&EventKind) -> bool {
    move |k| matches!(k, EventKind::Leg { leg: l, state: LegState::Released, .. } if l.0 == leg)
}

fn agent_left(k: &EventKind) -> bool {
    matches!(k, EventKind::PartyLeft { party: Party::Agent(a), .. } if a.0 == "alice")
}

#[test]
fn the_legs_are_released_before_the_chat_waits_again() {
    let mut h = multimedia();
    h.ok(Party::System, Command::Requeue);
    assert_eq!(
        h.actions,
        vec![
            Action::ReleaseLeg { leg: LegId(1) },
            Action::ReleaseLeg { leg: LegId(2) }
        ]
    );
    // The chat is not waiting yet: the legs are still being released.
    assert_eq!(h.it.phase(), Phase::Active);
    assert!(!h.events.iter().any(|e| agent_left(&e.kind)));
    // Routing counts the chat as waiting and offers it at once; the offer waits too.
    h.ok(Party::System, Command::Offer { agent: bob() });
    assert!(
        !h.events
            .iter()
            .any(|e| matches!(e.kind, EventKind::Offered { .. })),
        "{:?}",
        h.names()
    );
    // The gone agent can do nothing more; the customer can still write.
    h.refused(
        alice(),
        Command::CallCustomer {
            number: None,
            device: AgentDevice::Browser,
        },
        "not_permitted",
    );
    h.ok(
        Party::Customer,
        Command::SendMessage {
            msg_id: None,
            text: "hello?".into(),
        },
    );

    h.ok(
        Party::System,
        Command::LegReleased {
            leg: LegId(1),
            reason: None,
        },
    );
    assert_eq!(h.it.phase(), Phase::Active, "video is still up");
    h.ok(
        Party::System,
        Command::LegReleased {
            leg: LegId(2),
            reason: None,
        },
    );
    assert_eq!(h.it.phase(), Phase::Offered);
    assert_eq!(h.it.agent(), None);
    let left = seq_of(&h, agent_left);
    assert!(seq_of(&h, released(1)) < left && seq_of(&h, released(2)) < left);
    let offered = seq_of(
        &h,
        |k| matches!(k, EventKind::Offered { agent, .. } if *agent == bob()),
    );
    assert!(left < offered);
    // Bob takes it, and the chat goes on with him.
    h.ok(
        Party::Agent(bob()),
        Command::Accept {
            display_name: "Bob".into(),
        },
    );
    assert_eq!(h.it.phase(), Phase::Active);
}

#[test]
fn legs_that_never_confirm_are_given_up_at_the_teardown_timeout() {
    let mut h = multimedia();
    h.ok(Party::System, Command::Requeue);
    h.ok(Party::System, Command::Offer { agent: bob() });
    // Routing withdraws its offer meanwhile: it is never made.
    h.ok(Party::System, Command::Withdraw { agent: bob() });
    assert_eq!(h.it.poll_timeout(), Some(h.now + rules().teardown_timeout));
    assert!(h.progress());
    assert_eq!(h.it.phase(), Phase::Queued);
    let timed_out = h
        .events
        .iter()
        .filter(|e| {
            matches!(&e.kind, EventKind::Leg { state: LegState::Released, reason: Some(r), .. }
                if r == "timeout")
        })
        .count();
    assert_eq!(timed_out, 2, "{:#?}", h.events);
    assert!(seq_of(&h, released(1)) < seq_of(&h, agent_left));
    assert!(
        !h.events
            .iter()
            .any(|e| matches!(e.kind, EventKind::Offered { .. }))
    );
    // A late release from a leg driver changes nothing.
    h.refused(
        Party::System,
        Command::LegReleased {
            leg: LegId(1),
            reason: None,
        },
        "unknown_leg",
    );
}

#[test]
fn without_legs_the_chat_waits_again_at_once() {
    let mut h = Harness::active(rules());
    h.events.clear();
    h.ok(Party::System, Command::Requeue);
    assert!(h.actions.is_empty(), "{:?}", h.actions);
    assert_eq!(h.it.phase(), Phase::Queued);
    assert!(h.events.iter().any(|e| agent_left(&e.kind)));
    // The customer's pending call request is simply withdrawn with the agent.
    let mut h = Harness::active(rules());
    h.ok(Party::Customer, Command::RequestCall);
    h.ok(Party::System, Command::Requeue);
    assert_eq!(h.it.phase(), Phase::Queued);
    assert!(h.it.legs().values().all(|l| l.state == LegState::Released));
}

#[test]
fn ending_the_session_meanwhile_takes_over_the_release() {
    let mut h = multimedia();
    h.ok(Party::System, Command::Requeue);
    h.ok(Party::Customer, Command::EndSession);
    assert_eq!(h.it.phase(), Phase::Closing);
    for leg in [1, 2] {
        h.ok(
            Party::System,
            Command::LegReleased {
                leg: LegId(leg),
                reason: None,
            },
        );
    }
    assert_eq!(h.it.phase(), Phase::Closed);
    assert!(h.actions.contains(&Action::PersistTranscript));
    // The chat closed rather than waiting again.
    assert!(
        !h.events.iter().any(|e| matches!(
            e.kind,
            EventKind::Status {
                phase: Phase::Queued
            }
        )),
        "{:?}",
        h.names()
    );
}
