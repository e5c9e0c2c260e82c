//! Messages: any length up to the cap, idempotent client ids, receipts that only move forward.

use crate::interaction as harness;

use harness::{Harness, alice, rules};
use tandem::bridge::{
    Command, EventKind, Interaction, InteractionId, LegId, LegState, Party, Phase, ReceiptKind,
    Time,
};

fn send(h: &mut Harness, by: Party, id: &str, text: &str) -> tandem::bridge::Accepted {
    h.ok(
        by,
        Command::SendMessage {
            msg_id: Some(id.into()),
            text: text.into(),
        },
    )
}

#[test]
fn a_retried_message_id_is_accepted_once() {
    let mut h = Harness::active(rules());
    let first = send(&mut h, Party::Customer, "c-1", "my car broke down");
    assert!(!first.duplicate);
    let before = h.events.len();
    let again = send(&mut h, Party::Customer, "c-1", "my car broke down");
    assert!(again.duplicate);
    assert_eq!(again.seq, first.seq);
    assert_eq!(h.events.len(), before);
    // The same id from the other side is another message.
    assert!(!send(&mut h, alice(), "c-1", "on my way").duplicate);
}

#[test]
fn long_messages_are_fine_up_to_the_cap() {
    let mut h = Harness::active(rules());
    let long = "x".repeat(65536);
    send(&mut h, Party::Customer, "c-1", &long);
    h.refused(
        Party::Customer,
        Command::SendMessage {
            msg_id: None,
            text: "y".repeat(65537),
        },
        "message_too_long",
    );
    h.refused(
        Party::Customer,
        Command::SendMessage {
            msg_id: None,
            text: "  \n".into(),
        },
        "empty_message",
    );
}

#[test]
fn receipts_only_move_forward() {
    let mut h = Harness::active(rules());
    send(&mut h, alice(), "a-1", "hello");
    let receipt = |r| Command::Receipt {
        ref_msg_id: "a-1".into(),
        receipt: r,
    };
    assert!(
        h.ok(Party::Customer, receipt(ReceiptKind::Read))
            .seq
            .is_some()
    );
    let before = h.events.len();
    // A late "delivered" after "read" changes nothing, and neither does a second "read".
    assert!(
        h.ok(Party::Customer, receipt(ReceiptKind::Delivered))
            .duplicate
    );
    assert!(h.ok(Party::Customer, receipt(ReceiptKind::Read)).duplicate);
    assert_eq!(h.events.len(), before);
    // Receipts are for the other side's messages.
    h.refused(alice(), receipt(ReceiptKind::Read), "unknown_message");
    h.refused(
        Party::Customer,
        Command::Receipt {
            ref_msg_id: "nope".into(),
            receipt: ReceiptKind::Read,
        },
        "unknown_message",
    );
}

#[test]
fn a_restored_interaction_is_the_one_that_was_lost() {
    let mut h = Harness::active(rules());
    send(&mut h, Party::Customer, "c-1", "hello");
    send(&mut h, alice(), "a-1", "hi");
    h.ok(
        Party::Customer,
        Command::Receipt {
            ref_msg_id: "a-1".into(),
            receipt: ReceiptKind::Read,
        },
    );
    h.ok(Party::Customer, Command::RequestCall);
    let stored: Vec<_> = h
        .events
        .iter()
        .filter(|e| e.seq.is_some())
        .cloned()
        .collect();
    let now = Time(h.now.0 + 1000);
    let mut it =
        Interaction::restore(now, InteractionId::from("i-1"), rules(), stored.clone()).unwrap();
    assert_eq!(it.phase(), Phase::Active);
    assert_eq!(it.customer().device, "dev-1");
    // The call could not survive the restart.
    let released = it.poll_event().unwrap();
    assert_eq!(released.seq, Some(h.it.last_seq() + 1));
    assert!(matches!(
        released.kind,
        EventKind::Leg {
            leg: LegId(1),
            state: LegState::Released,
            ..
        }
    ));
    // Idempotency and receipts survive.
    let again = it
        .handle_command(
            now,
            &Party::Customer,
            Command::SendMessage {
                msg_id: Some("c-1".into()),
                text: "hello".into(),
            },
        )
        .unwrap();
    assert!(again.duplicate);
    let late = it
        .handle_command(
            now,
            &Party::Customer,
            Command::Receipt {
                ref_msg_id: "a-1".into(),
                receipt: ReceiptKind::Delivered,
            },
        )
        .unwrap();
    assert!(late.duplicate);
}
