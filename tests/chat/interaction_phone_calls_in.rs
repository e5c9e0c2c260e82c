//! Phone calls coming in: a call to a service number opens an interaction whose call waits
//! for the agent who accepts, and a call naming a chat joins it from the chat's number (as a
//! trunk vouches for it) or with the chat's join token.

use crate::interaction as harness;

use std::time::Duration;

use harness::{Harness, alice, rules};
use serde_json::json;
use tandem::bridge::{
    Action, AgentDevice, AgentId, CallerId, Command, Customer, EndReason, EventKind, HeldCall,
    Interaction, InteractionId, JoinSecret, LegId, LegKind, LegState, LegTarget, Party, Phase,
    Rules, Time,
};

/// An interaction opened by a call from +15550177, offered to alice.
fn called_in(rules: Rules) -> Harness {
    let now = Time(1_700_000_000_000);
    let customer = Customer {
        device: "phone:+15550177".into(),
        name: None,
        phone: Some("+15550177".into()),
    };
    let context = json!({"channel": "phone", "caller": "+15550177", "number": "+15550100"});
    let it = Interaction::new_call(
        now,
        InteractionId::from("i-1"),
        rules,
        customer,
        context,
        "+15550177".into(),
        HeldCall(1),
    );
    let mut h = Harness {
        now,
        it,
        events: Vec::new(),
        actions: Vec::new(),
    };
    h.drain();
    let offer = Command::Offer {
        agent: AgentId::from("alice"),
    };
    h.ok(Party::System, offer);
    h
}

fn accept() -> Command {
    Command::Accept {
        display_name: "Alice".into(),
    }
}

fn refusals(h: &Harness) -> Vec<(LegId, String)> {
    h.actions
        .iter()
        .filter_map(|a| match a {
            Action::RefuseCall { leg, reason, call } => {
                // The refusal names the call that waits.
                assert_eq!(*call, Some(HeldCall(1)));
                Some((leg.to_owned(), reason.clone()))
            }
            _ => None,
        })
        .collect()
}

fn end_reason(h: &Harness) -> Option<EndReason> {
    h.events.iter().find_map(|e| match &e.kind {
        EventKind::ChatClosed { reason } => Some(reason.to_owned()),
        _ => None,
    })
}

#[test]
fn the_agent_who_accepts_gets_the_waiting_call_on_the_browser_and_the_chat_goes_on() {
    // Even a service that dials on accept answers the waiting call instead.
    let mut h = called_in(Rules {
        auto_dial: true,
        ..rules()
    });
    assert_eq!(h.it.phase(), Phase::Offered);
    let waiting = &h.it.legs()[&LegId(1)];
    assert_eq!(
        (waiting.kind, waiting.state, waiting.target.clone()),
        (
            LegKind::Voice,
            LegState::Connecting,
            Some(LegTarget::Phone("+15550177".into()))
        )
    );
    // The offer shows the call.
    let offered = h.events.iter().find_map(|e| match &e.kind {
        EventKind::Offered { context, .. } => Some(context.clone()),
        _ => None,
    });
    assert_eq!(offered.unwrap()["channel"], "phone");
    assert!(
        h.actions.is_empty(),
        "nothing is answered before the accept"
    );

    h.ok(alice(), accept());
    assert_eq!(
        h.actions,
        vec![Action::StartLeg {
            leg: LegId(1),
            kind: LegKind::Voice,
            target: LegTarget::Phone("+15550177".into()),
            service: "claims".into(),
            device: AgentDevice::Browser,
            agent: Some(AgentId::from("alice")),
            // The accept answers the call that waits, by its name.
            answer: Some(HeldCall(1)),
        }]
    );
    h.ok(Party::System, Command::LegUp { leg: LegId(1) });
    h.ok(alice(), Command::ReleaseCall);
    let released = Command::LegReleased {
        leg: LegId(1),
        reason: None,
    };
    h.ok(Party::System, released);
    // After the call the chat goes on: the agent may call the number back.
    let again = Command::CallCustomer {
        number: None,
        device: AgentDevice::Browser,
    };
    h.ok(alice(), again);
    assert!(matches!(
        h.actions.last(),
        Some(Action::StartLeg { leg: LegId(2), target: LegTarget::Phone(n), .. }) if n == "+15550177"
    ));
    // Nothing else was dialled on accept.
    let starts = h
        .actions
        .iter()
        .filter(|a| matches!(a, Action::StartLeg { .. }))
        .count();
    assert_eq!(starts, 2);
}

#[test]
fn nobody_accepting_refuses_the_waiting_call_and_ends_the_interaction() {
    let mut h = called_in(rules());
    h.ok(Party::System, Command::NoAgentAvailable);
    assert_eq!(
        refusals(&h),
        vec![(LegId(1), "No Agent Available".to_string())]
    );
    assert!(
        !h.actions
            .iter()
            .any(|a| matches!(a, Action::ReleaseLeg { .. })),
        "a call never answered is refused, not hung up"
    );
    // The driver reports the refused call gone; the interaction closes.
    let released = Command::LegReleased {
        leg: LegId(1),
        reason: Some("No Agent Available".into()),
    };
    h.ok(Party::System, released);
    assert_eq!(h.it.phase(), Phase::Closed);
    assert_eq!(end_reason(&h), Some(EndReason::NoAgentAvailable));
    assert_eq!(h.actions.last(), Some(&Action::PersistTranscript));
}

#[test]
fn the_caller_hanging_up_while_waiting_abandons_the_interaction() {
    let mut h = called_in(rules());
    h.refused(alice(), Command::CallAbandoned, "not_permitted");
    h.ok(Party::System, Command::CallAbandoned);
    assert_eq!(h.it.legs()[&LegId(1)].state, LegState::Released);
    // The call is gone already: nothing to refuse or release, the chat closes at once.
    assert!(refusals(&h).is_empty());
    assert_eq!(h.it.phase(), Phase::Closed);
    assert_eq!(end_reason(&h), Some(EndReason::Abandoned));
    assert_eq!(h.actions.last(), Some(&Action::PersistTranscript));
    h.refused(alice(), accept(), "interaction_closed");
}

#[test]
fn a_hang_up_after_the_accept_is_not_an_abandon() {
    let mut h = called_in(rules());
    h.ok(alice(), accept());
    h.refused(Party::System, Command::CallAbandoned, "no_call");
    // A chat that no call opened has nothing to abandon either.
    let mut h = Harness::new(rules());
    h.refused(Party::System, Command::CallAbandoned, "no_call");
}

#[test]
fn a_call_with_the_chats_join_token_joins_from_any_number() {
    let key = JoinSecret::new(b"the test join key");
    let token = key.token(&InteractionId::from("i-1"));
    let join = |caller: &str, token: Option<&str>| Command::JoinCall {
        caller: CallerId::Trunk(caller.into()),
        token: token.map(str::to_string),
        call: HeldCall(7),
    };
    let mut h = Harness::active(rules());
    // Without a token only the chat's number joins; a bad token is refused even from it.
    h.refused(Party::System, join("+15550999", None), "not_permitted");
    h.refused(
        Party::System,
        join("+15550100", Some("00ff")),
        "bad_join_token",
    );
    let other = key.token(&InteractionId::from("i-2"));
    h.refused(Party::System, join("", Some(&other)), "bad_join_token");
    let elsewhere = JoinSecret::new(b"another node's key").token(&InteractionId::from("i-1"));
    h.refused(Party::System, join("", Some(&elsewhere)), "bad_join_token");
    // The chat's token: a withheld caller id joins.
    h.ok(Party::System, join("anonymous", Some(&token)));
    assert!(matches!(
        h.actions.last(),
        Some(Action::StartLeg {
            kind: LegKind::Voice,
            target: LegTarget::Phone(n),
            answer: Some(HeldCall(7)),
            ..
        }) if n == "anonymous"
    ));
    h.advance(Duration::from_secs(1));
}

#[test]
fn a_caller_id_joins_only_when_a_trunk_vouches_for_it_and_a_token_joins_from_anywhere() {
    let key = JoinSecret::new(b"the test join key");
    let token = key.token(&InteractionId::from("i-1"));
    let join = |caller: CallerId, token: Option<&str>| Command::JoinCall {
        caller,
        token: token.map(str::to_string),
        call: HeldCall(7),
    };
    let mut h = Harness::active(rules());
    // The chat's own number, written into From by anyone: nobody vouches for it.
    let spoofed = CallerId::Claimed("+15550100".into());
    h.refused(
        Party::System,
        join(spoofed.clone(), None),
        "caller_not_vouched",
    );
    // A bad token does not help, wherever it comes from.
    h.refused(
        Party::System,
        join(spoofed.clone(), Some("00ff")),
        "bad_join_token",
    );
    // A trunk's caller id that is not the chat's number is a stranger.
    h.refused(
        Party::System,
        join(CallerId::Trunk("+15550999".into()), None),
        "not_permitted",
    );
    // The chat's token joins from anywhere, whatever number is shown.
    h.ok(Party::System, join(spoofed, Some(&token)));
    assert!(matches!(
        h.actions.last(),
        Some(Action::StartLeg { kind: LegKind::Voice, target: LegTarget::Phone(n), .. })
            if n == "+15550100"
    ));

    // The chat's number from a trunk joins without a token.
    let mut h = Harness::active(rules());
    h.ok(
        Party::System,
        join(CallerId::Trunk("+15550100".into()), None),
    );
    assert!(matches!(
        h.actions.last(),
        Some(Action::StartLeg { kind: LegKind::Voice, target: LegTarget::Phone(n), .. })
            if n == "+15550100"
    ));
}
