//! The app's call and video requests wait for the agent, expire, and are signalled through the
//! leg driver, on a virtual clock.

use crate::interaction as harness;

use std::time::Duration;

use harness::{Harness, alice, rules};
use serde_json::json;
use tandem::bridge::{
    Action, AgentDevice, CallerId, Command, EventKind, LegId, LegKind, LegState, LegTarget, Party,
};

fn leg_state(h: &Harness, leg: u32) -> LegState {
    h.it.legs()[&LegId(leg)].state
}

fn started(h: &Harness) -> Vec<(LegId, LegKind)> {
    h.actions
        .iter()
        .filter_map(|a| match a {
            Action::StartLeg { leg, kind, .. } => Some((*leg, *kind)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_call_request_waits_for_the_agent_to_accept() {
    let mut h = Harness::active(rules());
    h.ok(Party::Customer, Command::RequestCall);
    assert_eq!(leg_state(&h, 1), LegState::AwaitingApproval);
    assert!(
        started(&h).is_empty(),
        "nothing is offered before the agent accepts"
    );
    h.refused(
        Party::System,
        Command::LegUp { leg: LegId(1) },
        "call_requires_agent_approval",
    );
    h.refused(
        Party::Customer,
        Command::AcceptCall {
            device: AgentDevice::Browser,
        },
        "not_permitted",
    );
    h.refused(Party::Customer, Command::RequestCall, "call_in_progress");
    h.ok(
        alice(),
        Command::AcceptCall {
            device: AgentDevice::Browser,
        },
    );
    assert_eq!(started(&h), vec![(LegId(1), LegKind::Voice)]);
    assert!(matches!(
        h.actions.last(),
        Some(Action::StartLeg { target: LegTarget::App, service, .. }) if service == "claims"
    ));
    h.refused(
        alice(),
        Command::AcceptCall {
            device: AgentDevice::Browser,
        },
        "no_call_request",
    );
}

#[test]
fn a_declined_call_request_is_rejected_with_a_reason() {
    let mut h = Harness::active(rules());
    h.refused(alice(), Command::DeclineCall, "no_call_request");
    h.ok(Party::Customer, Command::RequestCall);
    h.ok(alice(), Command::DeclineCall);
    assert!(matches!(
        h.last(),
        EventKind::Leg { kind: LegKind::Voice, state: LegState::Released, reason: Some(r), .. }
            if r == "declined"
    ));
    // The chat goes on and the customer may ask again.
    h.ok(Party::Customer, Command::RequestCall);
    assert_eq!(leg_state(&h, 2), LegState::AwaitingApproval);
}

#[test]
fn unanswered_requests_expire_after_the_consent_timeout() {
    let mut h = Harness::active(rules());
    h.ok(Party::Customer, Command::RequestCall);
    h.advance(Duration::from_secs(30));
    h.ok(Party::Customer, Command::RequestVideo);
    h.advance(Duration::from_secs(29));
    assert_eq!(leg_state(&h, 1), LegState::AwaitingApproval);
    // The voice request is 60 s old: it expires; the video request has 30 s left.
    assert!(h.progress());
    assert_eq!(leg_state(&h, 1), LegState::Released);
    assert_eq!(leg_state(&h, 2), LegState::AwaitingApproval);
    assert!(matches!(
        h.last(),
        EventKind::Leg { state: LegState::Released, reason: Some(r), .. } if r == "expired"
    ));
    assert!(h.progress());
    assert_eq!(leg_state(&h, 2), LegState::Released);
    h.refused(
        alice(),
        Command::AcceptCall {
            device: AgentDevice::Browser,
        },
        "no_call_request",
    );
    h.refused(alice(), Command::AllowVideo, "no_video_request");
    assert!(started(&h).is_empty());
}

#[test]
fn an_accepted_request_does_not_expire() {
    let mut h = Harness::active(rules());
    h.ok(Party::Customer, Command::RequestCall);
    h.ok(
        alice(),
        Command::AcceptCall {
            device: AgentDevice::Browser,
        },
    );
    h.advance(Duration::from_secs(120));
    assert_eq!(leg_state(&h, 1), LegState::Connecting);
}

#[test]
fn signalling_goes_to_the_leg_driver_and_offers_go_to_one_party() {
    let mut h = Harness::active(rules());
    let answer = json!({"type": "ANSWER_CALL", "sdp": "v=0"});
    // No call, nothing to answer.
    h.refused(Party::Customer, Command::Signal(answer.clone()), "no_call");
    h.ok(Party::Customer, Command::RequestCall);
    h.refused(Party::Customer, Command::Signal(answer.clone()), "no_call");
    h.ok(
        alice(),
        Command::AcceptCall {
            device: AgentDevice::Browser,
        },
    );

    let offer = json!({"type": "OFFER_CALL", "offerVideo": false, "sdp": "v=0"});
    h.refused(
        Party::Customer,
        Command::SignalTo {
            to: alice(),
            data: offer.clone(),
        },
        "not_permitted",
    );
    let accepted = h.ok(
        Party::System,
        Command::SignalTo {
            to: Party::Customer,
            data: offer.clone(),
        },
    );
    assert_eq!(accepted.seq, None, "signalling is never stored");
    assert_eq!(
        h.last(),
        &EventKind::Signaling {
            from: Party::System,
            to: Party::Customer,
            data: offer
        }
    );

    let before = h.events.len();
    h.ok(Party::Customer, Command::Signal(answer.clone()));
    h.ok(alice(), Command::Signal(answer.clone()));
    assert_eq!(
        h.events.len(),
        before,
        "answers are for the driver, not the other party"
    );
    let signals: Vec<&Action> = h
        .actions
        .iter()
        .filter(|a| matches!(a, Action::Signal { .. }))
        .collect();
    assert_eq!(
        signals,
        vec![
            &Action::Signal {
                from: Party::Customer,
                data: answer.clone()
            },
            &Action::Signal {
                from: alice(),
                data: answer
            },
        ]
    );
}

#[test]
fn releasing_the_call_takes_its_video_and_says_who_ended_it() {
    let mut h = Harness::active(rules());
    h.ok(Party::Customer, Command::RequestCall);
    h.ok(Party::Customer, Command::RequestVideo);
    h.ok(
        alice(),
        Command::AcceptCall {
            device: AgentDevice::Browser,
        },
    );
    h.ok(alice(), Command::AllowVideo);
    assert_eq!(
        started(&h),
        vec![(LegId(1), LegKind::Voice), (LegId(2), LegKind::Video)]
    );
    for leg in [1, 2] {
        h.ok(Party::System, Command::LegUp { leg: LegId(leg) });
    }
    h.ok(Party::Customer, Command::ReleaseCall);
    assert_eq!(leg_state(&h, 1), LegState::Releasing);
    assert_eq!(leg_state(&h, 2), LegState::Releasing);
    let reasons: Vec<&str> = h
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Leg {
                state: LegState::Releasing,
                reason: Some(r),
                ..
            } => Some(r.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(reasons, vec!["ended by the customer"; 2]);
}

#[test]
fn an_allowed_video_leg_names_its_target_after_a_restore() {
    let mut h = Harness::active(rules());
    h.ok(Party::Customer, Command::RequestVideo);
    h.ok(alice(), Command::AllowVideo);
    let stored: Vec<_> = h
        .events
        .iter()
        .filter(|e| e.seq.is_some())
        .cloned()
        .collect();
    let restored = tandem::bridge::Interaction::restore(h.now, h.it.id().clone(), rules(), stored)
        .expect("restores");
    assert_eq!(restored.legs()[&LegId(1)].target, Some(LegTarget::App));
}

#[test]
fn the_agent_may_call_another_number_and_ringing_is_recorded() {
    let mut h = Harness::active(rules());
    let call = |number: &str| Command::CallCustomer {
        number: Some(number.into()),
        device: AgentDevice::Browser,
    };
    h.refused(alice(), call("call me maybe"), "invalid_number");
    h.refused(alice(), call(""), "invalid_number");
    h.ok(alice(), call("+15550199"));
    assert!(matches!(
        h.actions.last(),
        Some(Action::StartLeg { target: LegTarget::Phone(n), .. }) if n == "+15550199"
    ));
    let ringing = Command::LegProgress {
        leg: LegId(1),
        note: "ringing".into(),
    };
    h.refused(Party::Customer, ringing.clone(), "not_permitted");
    h.ok(Party::System, ringing.clone());
    // The agent's browser answers the gateway's offer; the customer has no peer on this call.
    let answer = || Command::Signal(json!({"type": "ANSWER_CALL", "sdp": "v=0"}));
    h.ok(alice(), answer());
    assert!(matches!(h.actions.last(), Some(Action::Signal { .. })));
    h.refused(Party::Customer, answer(), "no_call");
    assert!(matches!(
        h.last(),
        EventKind::Leg { state: LegState::Connecting, reason: Some(r), .. } if r == "ringing"
    ));
    h.ok(Party::System, Command::LegUp { leg: LegId(1) });
    h.refused(Party::System, ringing, "unknown_leg");
}

#[test]
fn digits_the_customer_keys_are_recorded_and_masked_for_sensitive_services() {
    for (mask, shown) in [(false, '7'), (true, '•')] {
        let mut r = rules();
        r.mask_dtmf = mask;
        let mut h = Harness::active(r);
        let dtmf = Command::Dtmf {
            leg: LegId(1),
            digit: '7',
        };
        h.refused(Party::System, dtmf.clone(), "unknown_leg");
        h.ok(
            alice(),
            Command::CallCustomer {
                number: None,
                device: AgentDevice::Browser,
            },
        );
        h.ok(Party::System, Command::LegUp { leg: LegId(1) });
        h.refused(Party::Customer, dtmf.clone(), "not_permitted");
        let accepted = h.ok(Party::System, dtmf);
        assert!(accepted.seq.is_some(), "digits are part of the record");
        assert_eq!(
            h.last(),
            &EventKind::Dtmf {
                leg: LegId(1),
                digit: shown
            }
        );
    }
}

#[test]
fn a_phone_call_request_is_dialled_when_the_agent_accepts() {
    let mut h = Harness::active(rules());
    h.ok(Party::Customer, Command::RequestPhoneCall { number: None });
    assert_eq!(leg_state(&h, 1), LegState::AwaitingApproval);
    assert!(
        started(&h).is_empty(),
        "nothing is dialled before the agent says yes"
    );
    h.ok(
        alice(),
        Command::AcceptCall {
            device: AgentDevice::Browser,
        },
    );
    assert!(matches!(
        h.actions.last(),
        Some(Action::StartLeg { target: LegTarget::Phone(n), .. }) if n == "+15550100"
    ));
}

#[test]
fn a_delayed_auto_dial_waits_and_gives_way_to_a_call_made_meanwhile() {
    let mut r = rules();
    r.auto_dial = true;
    r.auto_dial_delay = Duration::from_secs(10);
    let mut h = Harness::active(r.clone());
    assert!(started(&h).is_empty(), "the agent may greet first");
    h.advance(Duration::from_secs(9));
    assert!(started(&h).is_empty());
    assert!(h.progress());
    assert!(matches!(
        h.actions.last(),
        Some(Action::StartLeg { target: LegTarget::Phone(n), .. }) if n == "+15550100"
    ));

    let mut h = Harness::active(r);
    h.ok(
        alice(),
        Command::CallCustomer {
            number: None,
            device: AgentDevice::Browser,
        },
    );
    h.advance(Duration::from_secs(30));
    assert_eq!(started(&h).len(), 1, "no second call on top of the agent's");
}

#[test]
fn the_customer_calling_in_joins_as_the_voice_leg_and_strangers_do_not() {
    let mut h = Harness::active(rules());
    let join = |caller: &str| Command::JoinCall {
        caller: CallerId::Trunk(caller.into()),
        token: None,
        call: tandem::bridge::HeldCall(1),
    };
    h.refused(Party::Customer, join("+15550100"), "not_permitted");
    h.refused(Party::System, join("+15550999"), "not_permitted");
    h.ok(Party::System, join("15550100"));
    assert!(matches!(
        h.actions.last(),
        Some(Action::StartLeg { target: LegTarget::Phone(n), .. }) if n == "15550100"
    ));
    h.refused(Party::System, join("+15550100"), "call_in_progress");
}
