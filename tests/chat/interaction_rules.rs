//! Every rule of DESIGN §1 on the Interaction, allowed and refused, on a virtual clock.

use std::time::Duration;

use crate::interaction as harness;

use harness::{Harness, alice, rules};
use tandem::bridge::{
    Action, AgentDevice, AgentId, Command, EventKind, LegId, LegKind, LegState, LegTarget, Party,
    Phase,
};

fn leg_up(h: &mut Harness, leg: u32) {
    h.ok(Party::System, Command::LegUp { leg: LegId(leg) });
}

#[test]
fn a_new_chat_is_queued_then_offered_then_active() {
    let mut h = Harness::new(rules());
    assert_eq!(h.it.phase(), Phase::Queued);
    h.ok(
        Party::System,
        Command::Offer {
            agent: AgentId::from("alice"),
        },
    );
    h.ok(
        Party::System,
        Command::Offer {
            agent: AgentId::from("bob"),
        },
    );
    assert_eq!(h.it.phase(), Phase::Offered);
    // The offer pops the context (rule 8).
    assert!(h.events.iter().any(
        |e| matches!(&e.kind, EventKind::Offered { context, .. } if context["policy"] == "P-1")
    ));
    h.ok(
        alice(),
        Command::Accept {
            display_name: "Alice".into(),
        },
    );
    assert_eq!(h.it.phase(), Phase::Active);
    // Ring-all: bob sees his offer withdrawn.
    assert!(
        h.events
            .iter()
            .any(|e| matches!(&e.kind, EventKind::Withdrawn { agent } if agent.0 == "bob"))
    );
    h.refused(
        Party::Agent(AgentId::from("bob")),
        Command::Accept {
            display_name: "Bob".into(),
        },
        "already_accepted",
    );
    // Seqs are dense from 1.
    let seqs: Vec<u64> = h.events.iter().filter_map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
}

#[test]
fn chat_is_primary_no_call_or_video_before_an_agent_accepts() {
    let mut h = Harness::new(rules());
    h.refused(
        Party::Customer,
        Command::RequestCall,
        "interaction_not_active",
    );
    h.refused(
        Party::Customer,
        Command::RequestVideo,
        "interaction_not_active",
    );
    h.refused(
        alice(),
        Command::CallCustomer {
            number: None,
            device: AgentDevice::Browser,
        },
        "interaction_not_active",
    );
    // The customer may still write while queued.
    h.ok(
        Party::Customer,
        Command::SendMessage {
            msg_id: None,
            text: "hello?".into(),
        },
    );
}

#[test]
fn calls_carry_the_service_and_can_be_repeated_one_at_a_time() {
    let mut h = Harness::active(rules());
    for round in 0..3u32 {
        h.ok(
            alice(),
            Command::CallCustomer {
                number: None,
                device: AgentDevice::Browser,
            },
        );
        let leg = LegId(round + 1);
        assert_eq!(
            h.actions.last(),
            Some(&Action::StartLeg {
                leg,
                kind: LegKind::Voice,
                target: LegTarget::Phone("+15550100".into()),
                service: "claims".into(),
                device: AgentDevice::Browser,
                agent: Some(AgentId::from("alice")),
                answer: None,
            })
        );
        h.refused(
            alice(),
            Command::CallCustomer {
                number: None,
                device: AgentDevice::Browser,
            },
            "call_in_progress",
        );
        h.refused(Party::Customer, Command::RequestCall, "call_in_progress");
        leg_up(&mut h, leg.0);
        let talked = 61 + u64::from(round);
        h.advance(Duration::from_secs(talked));
        h.ok(alice(), Command::ReleaseCall);
        assert_eq!(h.actions.last(), Some(&Action::ReleaseLeg { leg }));
        h.ok(Party::System, Command::LegReleased { leg, reason: None });
        // The end says how long the call was up.
        assert!(
            matches!(
                h.last(),
                EventKind::Leg {
                    state: LegState::Released,
                    duration_s: Some(d),
                    ..
                } if *d == talked
            ),
            "{:?}",
            h.last()
        );
    }
    h.refused(alice(), Command::ReleaseCall, "no_call");
    // Every call is in the transcript.
    let up = h
        .events
        .iter()
        .filter(|e| {
            matches!(
                e.kind,
                EventKind::Leg {
                    state: LegState::Up,
                    ..
                }
            )
        })
        .count();
    assert_eq!(up, 3);
}

#[test]
fn an_agent_cannot_disconnect_the_chat_while_a_call_is_up() {
    let mut h = Harness::active(rules());
    h.ok(Party::Customer, Command::RequestCall);
    // A pending request is already a leg: the agent answers it first.
    h.refused(alice(), Command::DisconnectChat, "release_call_before_chat");
    h.ok(
        alice(),
        Command::AcceptCall {
            device: AgentDevice::Browser,
        },
    );
    leg_up(&mut h, 1);
    h.refused(alice(), Command::DisconnectChat, "release_call_before_chat");
    h.ok(alice(), Command::ReleaseCall);
    h.ok(
        Party::System,
        Command::LegReleased {
            leg: LegId(1),
            reason: None,
        },
    );
    h.ok(alice(), Command::DisconnectChat);
    assert_eq!(h.it.phase(), Phase::Closed);
}

#[test]
fn video_needs_the_agents_consent() {
    let mut h = Harness::active(rules());
    h.ok(Party::Customer, Command::RequestVideo);
    assert!(matches!(
        h.last(),
        EventKind::Leg {
            state: LegState::AwaitingApproval,
            ..
        }
    ));
    // Nothing may bring video up before the agent allows it.
    assert!(
        !h.actions
            .iter()
            .any(|a| matches!(a, Action::StartLeg { .. }))
    );
    h.refused(
        Party::System,
        Command::LegUp { leg: LegId(1) },
        "video_requires_agent_approval",
    );
    h.ok(alice(), Command::AllowVideo);
    assert!(matches!(
        h.actions.last(),
        Some(Action::StartLeg {
            kind: LegKind::Video,
            ..
        })
    ));
    leg_up(&mut h, 1);
    h.refused(alice(), Command::AllowVideo, "no_video_request");
}

#[test]
fn a_declined_video_request_ends_the_leg() {
    let mut h = Harness::active(rules());
    h.refused(alice(), Command::DeclineVideo, "no_video_request");
    h.ok(Party::Customer, Command::RequestVideo);
    h.ok(alice(), Command::DeclineVideo);
    assert!(matches!(
        h.last(),
        EventKind::Leg { state: LegState::Released, reason: Some(r), .. } if r == "declined"
    ));
}

#[test]
fn video_can_be_forbidden_by_the_service() {
    let mut r = rules();
    r.video_allowed = false;
    let mut h = Harness::active(r);
    h.refused(Party::Customer, Command::RequestVideo, "video_not_allowed");
}

#[test]
fn only_the_customer_may_drop_video_alone() {
    let mut h = Harness::active(rules());
    h.ok(Party::Customer, Command::RequestCall);
    h.ok(
        alice(),
        Command::AcceptCall {
            device: AgentDevice::Browser,
        },
    );
    leg_up(&mut h, 1);
    h.ok(Party::Customer, Command::RequestVideo);
    h.ok(alice(), Command::AllowVideo);
    leg_up(&mut h, 2);
    h.refused(alice(), Command::DropVideo, "only_customer_may_drop_video");
    h.ok(Party::Customer, Command::DropVideo);
    assert_eq!(
        h.actions.last(),
        Some(&Action::ReleaseLeg { leg: LegId(2) })
    );
    h.ok(
        Party::System,
        Command::LegReleased {
            leg: LegId(2),
            reason: None,
        },
    );
    // Chat and voice stay.
    assert_eq!(h.it.phase(), Phase::Active);
    assert_eq!(h.it.legs()[&LegId(1)].state, LegState::Up);
}

#[test]
fn auto_dial_calls_the_customer_when_an_agent_accepts() {
    let mut r = rules();
    r.auto_dial = true;
    let h = Harness::active(r);
    assert!(matches!(
        h.actions.last(),
        Some(Action::StartLeg { target: LegTarget::Phone(p), service, .. })
            if p == "+15550100" && service == "claims"
    ));
}

#[test]
fn parties_are_checked() {
    let mut h = Harness::active(rules());
    let mallory = Party::Agent(AgentId::from("mallory"));
    h.refused(mallory.clone(), Command::EndSession, "not_permitted");
    h.refused(
        mallory,
        Command::SendMessage {
            msg_id: None,
            text: "hi".into(),
        },
        "not_permitted",
    );
    h.refused(Party::Customer, Command::AllowVideo, "not_permitted");
    h.refused(
        Party::Customer,
        Command::LegUp { leg: LegId(1) },
        "not_permitted",
    );
    h.refused(
        alice(),
        Command::Location {
            latitude: 1.0,
            longitude: 2.0,
        },
        "not_permitted",
    );
}

#[test]
fn nothing_happens_in_a_closed_interaction() {
    let mut h = Harness::active(rules());
    h.ok(Party::Customer, Command::EndSession);
    assert_eq!(h.it.phase(), Phase::Closed);
    h.refused(
        Party::Customer,
        Command::SendMessage {
            msg_id: None,
            text: "still there?".into(),
        },
        "interaction_closed",
    );
    h.refused(
        alice(),
        Command::CallCustomer {
            number: None,
            device: AgentDevice::Browser,
        },
        "interaction_closed",
    );
}

#[test]
fn context_and_location_are_merged_and_pushed() {
    let mut h = Harness::active(rules());
    h.ok(
        Party::Customer,
        Command::Location {
            latitude: 48.85,
            longitude: 2.35,
        },
    );
    h.ok(
        Party::Customer,
        Command::Context(serde_json::json!({"plate": "AB-123"})),
    );
    let ctx = h.it.context();
    assert_eq!(ctx["policy"], "P-1");
    assert_eq!(ctx["plate"], "AB-123");
    assert_eq!(ctx["location"]["latitude"], 48.85);
}
