//! The inactivity timeout with its warning at half-time, on a virtual clock.

use crate::interaction as harness;

use std::time::Duration;

use harness::{Harness, alice, rules};
use tandem::bridge::{Action, Command, EndReason, EventKind, Party, Phase};

fn say(h: &mut Harness, by: Party) {
    h.ok(
        by,
        Command::SendMessage {
            msg_id: None,
            text: "still here".into(),
        },
    );
}

#[test]
fn a_silent_chat_is_warned_at_half_time_then_closed() {
    let mut h = Harness::active(rules());
    let start = h.now;
    assert!(h.progress());
    assert_eq!(h.now, start + Duration::from_secs(300));
    assert_eq!(h.last(), &EventKind::TimeoutWarning { remaining_s: 300 });
    assert!(h.progress());
    assert_eq!(h.now, start + Duration::from_secs(600));
    assert!(
        h.events
            .iter()
            .any(|e| e.kind == EventKind::InactivityTimeout)
    );
    assert!(h.events.iter().any(|e| e.kind
        == EventKind::ChatClosed {
            reason: EndReason::Inactivity
        }));
    assert_eq!(h.it.phase(), Phase::Closed);
    assert_eq!(h.actions.last(), Some(&Action::PersistTranscript));
}

#[test]
fn a_message_restarts_the_clock_and_clears_the_warning() {
    let mut h = Harness::active(rules());
    h.advance(Duration::from_secs(299));
    say(&mut h, Party::Customer);
    h.advance(Duration::from_secs(299));
    assert_eq!(h.it.phase(), Phase::Active);
    assert!(!h.names().contains(&"timeout_warning"));
    h.advance(Duration::from_secs(1));
    assert_eq!(h.last(), &EventKind::TimeoutWarning { remaining_s: 300 });
    // After the warning, the agent writing also keeps the chat open.
    say(&mut h, alice());
    h.advance(Duration::from_secs(599));
    assert_eq!(h.it.phase(), Phase::Active);
    assert_eq!(
        h.names()
            .iter()
            .filter(|n| **n == "timeout_warning")
            .count(),
        2
    );
}

#[test]
fn typing_is_not_activity() {
    let mut h = Harness::active(rules());
    h.advance(Duration::from_secs(200));
    h.ok(Party::Customer, Command::Typing(true));
    assert_eq!(h.events.last().unwrap().seq, None, "typing is ephemeral");
    h.advance(Duration::from_secs(100));
    assert_eq!(h.last(), &EventKind::TimeoutWarning { remaining_s: 300 });
}

#[test]
fn a_queued_chat_has_no_inactivity_timer() {
    let h = Harness::new(rules());
    assert_eq!(h.it.poll_timeout(), None);
}
