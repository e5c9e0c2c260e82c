//! Only E.164 numbers inside the service's dial plan are dialled: premium ranges, international
//! dialling forms and anything that would smuggle more than a number into the trunk's
//! Request-URI are refused with a stable code, whether the agent types them, the customer asks
//! to be called on them, or auto-dial would call the chat's number. On a virtual clock.

use crate::interaction as harness;

use harness::{Harness, alice, rules};
use serde_json::json;
use tandem::bridge::{
    Action, AgentDevice, AgentId, Command, Customer, DialPlan, Interaction, InteractionId,
    LegTarget, Party, Rules,
};

fn call(number: &str) -> Command {
    Command::CallCustomer {
        number: Some(number.into()),
        device: AgentDevice::Browser,
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
fn premium_ranges_are_not_dialled() {
    let mut h = Harness::active(rules());
    for premium in [
        "+9001234567",
        "+19005550100",
        "+1 900 555 0100",
        "+979123456789",
    ] {
        h.refused(alice(), call(premium), "number_not_allowed");
    }
    assert!(dialled(&h).is_empty());
}

#[test]
fn international_dialling_prefixes_are_not_dialled() {
    let mut h = Harness::active(rules());
    for international in ["011442079460000", "00442079460000", "011 900 555 0100"] {
        h.refused(alice(), call(international), "number_not_allowed");
    }
    assert!(dialled(&h).is_empty());
}

#[test]
fn feature_codes_and_escapes_are_not_numbers() {
    let mut h = Harness::active(rules());
    for code in [
        "*67%23",
        "*6715550100",
        "+15550100#",
        "#31#+15550100",
        "+1555%2A0100",
    ] {
        h.refused(alice(), call(code), "invalid_number");
    }
    assert!(dialled(&h).is_empty());
}

#[test]
fn uris_and_header_injection_are_not_numbers() {
    let mut h = Harness::active(rules());
    for injected in [
        "sip:+1555?X-Evil=1@evil.example",
        "+15550100@evil.example",
        "+15550100;user=phone",
        "+15550100?X-Evil=1",
        "+15550100\r\nX-Evil: 1",
        "<sip:+15550100@evil.example>",
    ] {
        h.refused(alice(), call(injected), "invalid_number");
    }
    // The customer's own request goes through the same gate.
    h.refused(
        Party::Customer,
        Command::RequestPhoneCall {
            number: Some("sip:+1555?X-Evil=1@evil.example".into()),
        },
        "invalid_number",
    );
    assert!(dialled(&h).is_empty());
}

#[test]
fn a_good_number_is_dialled_in_e164_and_the_plan_bounds_the_countries() {
    let mut r = rules();
    r.dial_plan = DialPlan {
        allowed_prefixes: vec!["+44".into()],
        country_code: Some("+44".into()),
        ..DialPlan::default()
    };
    let mut h = Harness::active(r);
    h.refused(alice(), call("+15550100100"), "number_not_allowed");
    h.refused(alice(), call("09098790000"), "number_not_allowed");
    h.ok(alice(), call("020 7946 0000"));
    assert_eq!(dialled(&h), ["+442079460000"]);
}

/// An interaction of an auto-dialling service whose chat carries `phone`, accepted by alice.
fn auto_dialled(phone: &str) -> Vec<String> {
    let rules = Rules {
        auto_dial: true,
        ..rules()
    };
    let now = tandem::bridge::Time(1_700_000_000_000);
    let customer = Customer {
        device: "dev-1".into(),
        name: None,
        phone: Some(phone.into()),
    };
    let it = Interaction::new(now, InteractionId::from("i-1"), rules, customer, json!({}));
    let mut h = Harness {
        now,
        it,
        events: Vec::new(),
        actions: Vec::new(),
    };
    h.ok(
        Party::System,
        Command::Offer {
            agent: AgentId::from("alice"),
        },
    );
    h.ok(
        alice(),
        Command::Accept {
            display_name: "Alice".into(),
        },
    );
    dialled(&h)
}

#[test]
fn auto_dial_obeys_the_dial_plan_too() {
    assert_eq!(auto_dialled("+15550100100"), ["+15550100100"]);
    assert!(auto_dialled("+19005550100").is_empty());
    assert!(auto_dialled("*67%23").is_empty());
}
