//! The ordered teardown: calls, then video, then chat, then persist — one plan, on a virtual clock.

use crate::interaction as harness;

use harness::{Harness, alice, rules};
use tandem::bridge::{
    Action, AgentDevice, Command, EndReason, EventKind, LegId, LegState, Party, Phase, TeardownStep,
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

#[test]
fn end_session_releases_calls_then_video_then_closes_the_chat() {
    let mut h = multimedia();
    h.ok(alice(), Command::EndSession);
    match &h.events[0].kind {
        EventKind::TeardownStarted { reason, plan } => {
            assert_eq!(*reason, EndReason::AgentEndedSession);
            assert_eq!(
                plan,
                &vec![
                    TeardownStep::ReleaseCalls {
                        legs: vec![LegId(1)]
                    },
                    TeardownStep::ReleaseVideo {
                        legs: vec![LegId(2)]
                    },
                    TeardownStep::CloseChat,
                    TeardownStep::Persist,
                ]
            );
        }
        other => panic!("first event {other:?}"),
    }
    // Only the call is released first; video waits for the call's answer.
    assert_eq!(h.actions, vec![Action::ReleaseLeg { leg: LegId(1) }]);
    assert_eq!(h.it.phase(), Phase::Closing);
    h.refused(
        Party::Customer,
        Command::SendMessage {
            msg_id: None,
            text: "wait".into(),
        },
        "interaction_closed",
    );
    h.ok(
        Party::System,
        Command::LegReleased {
            leg: LegId(1),
            reason: None,
        },
    );
    assert_eq!(
        h.actions,
        vec![
            Action::ReleaseLeg { leg: LegId(1) },
            Action::ReleaseLeg { leg: LegId(2) }
        ]
    );
    assert_eq!(h.it.phase(), Phase::Closing);
    h.ok(
        Party::System,
        Command::LegReleased {
            leg: LegId(2),
            reason: None,
        },
    );
    assert_eq!(h.it.phase(), Phase::Closed);
    assert_eq!(h.actions.last(), Some(&Action::PersistTranscript));
    let tail: Vec<_> = h.names().into_iter().rev().take(3).collect();
    assert_eq!(tail, vec!["status", "chat_closed", "party_left"]);
    assert_eq!(h.it.poll_timeout(), None);
}

#[test]
fn a_leg_that_never_answers_is_given_up_after_the_timeout() {
    let mut h = multimedia();
    h.ok(Party::Customer, Command::EndSession);
    assert_eq!(h.actions, vec![Action::ReleaseLeg { leg: LegId(1) }]);
    // The call never answers: after the timeout the video goes.
    assert!(h.progress());
    assert!(h.events.iter().any(|e| matches!(
        &e.kind,
        EventKind::Leg { leg: LegId(1), state: LegState::Released, reason: Some(r), .. } if r == "timeout"
    )));
    assert_eq!(
        h.actions.last(),
        Some(&Action::ReleaseLeg { leg: LegId(2) })
    );
    // Nor does the video.
    assert!(h.progress());
    assert_eq!(h.it.phase(), Phase::Closed);
    assert_eq!(h.actions.last(), Some(&Action::PersistTranscript));
    assert!(!h.progress());
}

#[test]
fn a_customer_who_vanishes_is_torn_down_in_order() {
    let mut h = multimedia();
    h.refused(Party::Customer, Command::Vanished, "not_permitted");
    h.ok(Party::System, Command::Vanished);
    assert!(matches!(
        h.events[0].kind,
        EventKind::TeardownStarted {
            reason: EndReason::CustomerVanished,
            ..
        }
    ));
    assert_eq!(h.actions, vec![Action::ReleaseLeg { leg: LegId(1) }]);
}

#[test]
fn a_chat_without_legs_closes_at_once() {
    let mut h = Harness::active(rules());
    h.ok(alice(), Command::DisconnectChat);
    assert_eq!(h.it.phase(), Phase::Closed);
    assert_eq!(h.actions, vec![Action::PersistTranscript]);
}
