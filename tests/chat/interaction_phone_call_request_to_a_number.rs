//! A customer asks to be called back at a number of their own choosing (the web chat's phone
//! call form), or at the chat's number; the agent dials by accepting. A number that is not one
//! is refused before the agent hears of it. On a virtual clock.

use crate::interaction as harness;

use harness::{Harness, alice, rules};
use tandem::bridge::{Action, AgentDevice, Command, LegId, LegState, LegTarget, Party};

fn request(number: Option<&str>) -> Command {
    Command::RequestPhoneCall {
        number: number.map(str::to_string),
    }
}

fn dialled(h: &Harness) -> Vec<String> {
    h.actions
        .iter()
        .filter_map(|a| match a {
            Action::StartLeg {
                target: LegTarget::Phone(n),
                ..
            } => Some(n.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn the_number_the_customer_gives_is_dialled_when_the_agent_accepts() {
    let mut h = Harness::active(rules());
    for bad in ["call me", "", "+", "12345678901234567890123456789012345"] {
        h.refused(Party::Customer, request(Some(bad)), "invalid_number");
    }
    h.refused(alice(), request(Some("+15550199")), "not_permitted");
    h.ok(Party::Customer, request(Some("+15550199")));
    let leg = &h.it.legs()[&LegId(1)];
    assert_eq!(leg.state, LegState::AwaitingApproval);
    assert_eq!(leg.target, Some(LegTarget::Phone("+15550199".into())));
    assert!(
        dialled(&h).is_empty(),
        "nothing is dialled before the agent says yes"
    );
    h.refused(Party::Customer, request(None), "call_in_progress");
    h.ok(
        alice(),
        Command::AcceptCall {
            device: AgentDevice::Browser,
        },
    );
    assert_eq!(dialled(&h), vec!["+15550199".to_string()]);
}

#[test]
fn without_a_number_the_chats_number_is_called_and_without_either_it_is_refused() {
    let mut h = Harness::active(rules());
    h.ok(Party::Customer, request(None));
    assert_eq!(
        h.it.legs()[&LegId(1)].target,
        Some(LegTarget::Phone("+15550100".into()))
    );

    let mut h = Harness::active(rules());
    h.it = tandem::bridge::Interaction::new(
        h.now,
        "i-2".into(),
        rules(),
        tandem::bridge::Customer {
            device: "dev-2".into(),
            name: None,
            phone: None,
        },
        serde_json::json!({}),
    );
    h.drain();
    h.ok(
        Party::System,
        Command::Offer {
            agent: "alice".into(),
        },
    );
    h.ok(
        alice(),
        Command::Accept {
            display_name: "Alice".into(),
        },
    );
    h.refused(Party::Customer, request(None), "no_phone_number");
    // An international dialling form is not taken (the dial plan refuses it); E.164 is.
    h.refused(
        Party::Customer,
        request(Some("0044 20 7946 0000")),
        "number_not_allowed",
    );
    h.ok(Party::Customer, request(Some("+44 20 7946 0000")));
    assert_eq!(
        h.it.legs()[&LegId(1)].target,
        Some(LegTarget::Phone("+442079460000".into()))
    );
}
