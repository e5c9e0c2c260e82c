//! An agent who allows the customer's video before accepting the call it rides on: allowing
//! accepts the call with video, in that order (the call set up on the agent's browser, then the
//! video on it), so the app is never offered video alone while its call waits. Declining the
//! call takes the video request with it. On a virtual clock.

use crate::interaction as harness;

use std::time::Duration;

use harness::{Harness, alice, rules};
use tandem::bridge::{
    Action, AgentDevice, Command, EventKind, LegId, LegKind, LegState, LegTarget, Party,
};

fn leg_state(h: &Harness, leg: u32) -> LegState {
    h.it.legs()[&LegId(leg)].state
}

/// The legs started, in order, with where the agent's side goes.
fn started(h: &Harness) -> Vec<(LegId, LegKind, AgentDevice)> {
    h.actions
        .iter()
        .filter_map(|a| match a {
            Action::StartLeg {
                leg,
                kind,
                target: LegTarget::App,
                device,
                ..
            } => Some((*leg, *kind, *device)),
            _ => None,
        })
        .collect()
}

/// A customer who asked for a call with video (`REQUEST_CALL {offerVideo: true}`).
fn asked_for_video_call() -> Harness {
    let mut h = Harness::active(rules());
    h.ok(Party::Customer, Command::RequestCall);
    h.ok(Party::Customer, Command::RequestVideo);
    assert_eq!(leg_state(&h, 1), LegState::AwaitingApproval);
    assert_eq!(leg_state(&h, 2), LegState::AwaitingApproval);
    h
}

#[test]
fn allowing_video_first_accepts_the_call_then_adds_the_video() {
    let mut h = asked_for_video_call();
    let allowed = h.ok(alice(), Command::AllowVideo);
    // The call is set up first, on the agent's browser, then the video on it.
    assert_eq!(
        started(&h),
        vec![
            (LegId(1), LegKind::Voice, AgentDevice::Browser),
            (LegId(2), LegKind::Video, AgentDevice::Browser),
        ]
    );
    assert_eq!(leg_state(&h, 1), LegState::Connecting);
    assert_eq!(leg_state(&h, 2), LegState::Connecting);
    let connecting: Vec<(u32, LegKind, Option<u64>)> = h
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Leg {
                leg,
                kind,
                state: LegState::Connecting,
                ..
            } => Some((leg.0, *kind, e.seq)),
            _ => None,
        })
        .collect();
    assert_eq!(
        connecting
            .iter()
            .map(|(l, k, _)| (*l, *k))
            .collect::<Vec<_>>(),
        vec![(1, LegKind::Voice), (2, LegKind::Video)],
        "the transcript says the call was taken before the video"
    );
    assert_eq!(
        allowed.seq, connecting[0].2,
        "the answer names the first change"
    );

    // Nothing is left to accept; both legs come up and the call goes on as usual.
    h.refused(
        alice(),
        Command::AcceptCall {
            device: AgentDevice::Browser,
        },
        "no_call_request",
    );
    for leg in [1, 2] {
        h.ok(Party::System, Command::LegUp { leg: LegId(leg) });
    }
    // Neither expires: they were answered.
    h.advance(Duration::from_secs(120));
    assert_eq!(leg_state(&h, 1), LegState::Up);
    assert_eq!(leg_state(&h, 2), LegState::Up);
    // The customer drops video alone and keeps talking.
    h.ok(Party::Customer, Command::DropVideo);
    assert_eq!(leg_state(&h, 2), LegState::Releasing);
    assert_eq!(leg_state(&h, 1), LegState::Up);
}

#[test]
fn accepting_then_allowing_is_unchanged() {
    let mut h = asked_for_video_call();
    h.ok(
        alice(),
        Command::AcceptCall {
            device: AgentDevice::Browser,
        },
    );
    h.ok(alice(), Command::AllowVideo);
    assert_eq!(
        started(&h),
        vec![
            (LegId(1), LegKind::Voice, AgentDevice::Browser),
            (LegId(2), LegKind::Video, AgentDevice::Browser),
        ]
    );
}

#[test]
fn video_alone_is_allowed_alone() {
    // With no call waiting (video asked for during a call, or alone), allowing starts only the
    // video.
    let mut h = Harness::active(rules());
    h.ok(Party::Customer, Command::RequestVideo);
    h.ok(alice(), Command::AllowVideo);
    assert_eq!(
        started(&h),
        vec![(LegId(1), LegKind::Video, AgentDevice::Browser)]
    );
}

#[test]
fn a_phone_call_request_is_not_accepted_by_allowing_video() {
    // Video cannot ride on the customer's phone: allowing it leaves the phone request waiting
    // for the agent's own answer.
    let mut h = Harness::active(rules());
    h.ok(Party::Customer, Command::RequestPhoneCall { number: None });
    h.ok(Party::Customer, Command::RequestVideo);
    h.ok(alice(), Command::AllowVideo);
    assert_eq!(leg_state(&h, 1), LegState::AwaitingApproval);
    assert_eq!(
        started(&h),
        vec![(LegId(2), LegKind::Video, AgentDevice::Browser)]
    );
}

#[test]
fn declining_the_call_declines_its_video_too() {
    let mut h = asked_for_video_call();
    h.ok(alice(), Command::DeclineCall);
    assert_eq!(leg_state(&h, 1), LegState::Released);
    assert_eq!(leg_state(&h, 2), LegState::Released);
    let declined: Vec<LegKind> = h
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Leg {
                kind,
                state: LegState::Released,
                reason: Some(r),
                ..
            } if r == "declined" => Some(*kind),
            _ => None,
        })
        .collect();
    assert_eq!(declined, vec![LegKind::Voice, LegKind::Video]);
    assert!(started(&h).is_empty());
    h.refused(alice(), Command::AllowVideo, "no_video_request");
    // No late "expired" for the video: nothing is left waiting.
    h.advance(Duration::from_secs(120));
    assert!(!h.events.iter().any(|e| matches!(
        &e.kind,
        EventKind::Leg { reason: Some(r), .. } if r == "expired"
    )));
}
