//! A call that names an interaction another node owns is redirected there (RFC 3261
//! §21.3.3), on a virtual clock: the driver asks its `Owners`, and the core answers 302 with
//! the owner's address, or hands the call to the application as on one node.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;

use super::tests::{OFFER, Phone, core};
use super::*;
use crate::bridge::InteractionId;
use crate::sip::owners::Owners;

/// Ownership as a cluster's store would answer it.
struct Owned(HashMap<String, Uri>);

impl Owners for Owned {
    fn owner_sip<'a>(&'a self, id: &'a InteractionId) -> BoxFuture<'a, Option<Uri>> {
        Box::pin(std::future::ready(self.0.get(&id.0).cloned()))
    }
}

fn owners() -> Owned {
    let owner = rsipstack::sip::parse_uri("sip:127.0.0.3:5070").unwrap();
    Owned(HashMap::from([("i-elsewhere".to_string(), owner)]))
}

/// The phone calls `+15550100` naming `interaction`; returns the held call.
fn call_for(phone: &mut Phone, interaction: &str) -> (ServerTxId, String) {
    let extra = format!("X-Interaction-Id: {interaction}\r\nX-Interaction-Token: t0k\r\n");
    call_with(phone, &extra)
}

/// The phone calls `+15550100` with `extra` headers; returns the held call.
fn call_with(phone: &mut Phone, extra: &str) -> (ServerTxId, String) {
    let invite = phone.request(
        "INVITE",
        "sip:+15550100@127.0.0.1",
        "r1",
        1,
        None,
        extra,
        OFFER,
    );
    phone.send(&invite);
    assert_eq!(phone.statuses(), vec![180]);
    let events: Vec<CoreEvent> = std::iter::from_fn(|| phone.core.poll_event()).collect();
    match events.as_slice() {
        [
            CoreEvent::Incoming {
                incoming,
                interaction,
                ..
            },
        ] => (*incoming, interaction.clone()),
        other => panic!("{other:?}"),
    }
}

fn owner_of(interaction: &str) -> Option<Uri> {
    let id = InteractionId(interaction.to_string());
    now_or_never(owners().owner_sip(&id))
}

/// The lookup is ready at once; polling it once is enough (no runtime in a core test).
fn now_or_never<T>(future: BoxFuture<'_, T>) -> T {
    let waker = std::task::Waker::noop();
    let mut context = std::task::Context::from_waker(waker);
    let mut future = future;
    match future.as_mut().poll(&mut context) {
        std::task::Poll::Ready(value) => value,
        std::task::Poll::Pending => panic!("the fake lookup is immediate"),
    }
}

#[test]
fn a_call_for_an_interaction_owned_elsewhere_is_redirected_to_its_owner() {
    let now = Instant::now();
    let mut phone = Phone::new(core(10, Duration::ZERO, now), now);
    let (incoming, interaction) = call_for(&mut phone, "i-elsewhere");
    let owner = owner_of(&interaction).expect("another node owns it");
    phone.core.redirect_incoming(phone.now, incoming, &owner);

    let sent = phone.received();
    let [moved] = sent.as_slice() else {
        panic!("{sent:?}")
    };
    assert!(
        moved.starts_with("SIP/2.0 302 Moved Temporarily\r\n"),
        "{moved}"
    );
    // The owner's address, dialling the same number there.
    assert!(
        moved.contains("Contact: <sip:+15550100@127.0.0.3:5070>\r\n"),
        "{moved}"
    );
    assert_eq!(phone.core.stats().pending_invites, 0);
    assert_eq!(phone.core.ports.in_use(), 0, "its RTP port is free again");

    // The caller's ACK (RFC 3261 §17.1.1.3: the same branch, the To tag of the 302) ends the
    // retransmissions; nothing is sent after it.
    let tag = super::tests::to_tag(moved);
    let ack = phone.request(
        "ACK",
        "sip:+15550100@127.0.0.1",
        "r1",
        1,
        Some(&tag),
        "",
        "",
    );
    phone.send(&ack);
    assert!(phone.received().is_empty());
    assert!(phone.advance(Duration::from_secs(64)).is_empty());
    assert_eq!(phone.core.stats().server_transactions, 0);
    assert!(
        std::iter::from_fn(|| phone.core.poll_event())
            .next()
            .is_none()
    );
}

#[test]
fn an_unacknowledged_redirect_is_retransmitted_until_timer_h() {
    let now = Instant::now();
    let mut phone = Phone::new(core(10, Duration::ZERO, now), now);
    let (incoming, interaction) = call_for(&mut phone, "i-elsewhere");
    let owner = owner_of(&interaction).unwrap();
    phone.core.redirect_incoming(phone.now, incoming, &owner);
    assert_eq!(phone.statuses(), vec![302]);
    let again = phone.advance(Duration::from_secs(64));
    assert!(!again.is_empty(), "Timer G retransmits the 302");
    assert!(
        again.iter().all(|m| m.starts_with("SIP/2.0 302 ")),
        "{again:?}"
    );
    assert_eq!(phone.core.stats().server_transactions, 0, "Timer H ends it");
}

#[test]
fn a_call_for_an_interaction_nobody_else_owns_stays_with_the_application() {
    let now = Instant::now();
    let mut phone = Phone::new(core(10, Duration::ZERO, now), now);
    let (incoming, interaction) = call_for(&mut phone, "i-here");
    assert_eq!(owner_of(&interaction), None);
    // As on one node: the application decides; an interaction it does not have refuses it.
    assert!(phone.received().is_empty(), "still ringing");
    assert_eq!(phone.core.stats().pending_invites, 1);
    phone
        .core
        .reject_incoming(phone.now, incoming, 480, "Interaction Not Active");
    assert_eq!(phone.statuses(), vec![480]);
    // A redirect for a call already answered changes nothing.
    let owner = rsipstack::sip::parse_uri("sip:127.0.0.3:5070").unwrap();
    phone.core.redirect_incoming(phone.now, incoming, &owner);
    assert!(phone.received().is_empty());
}

#[test]
fn a_call_naming_its_interaction_in_user_to_user_is_redirected_too() {
    let now = Instant::now();
    let mut phone = Phone::new(core(10, Duration::ZERO, now), now);
    // RFC 7433: the interaction id, hex-encoded.
    let uui = format!(
        "User-to-User: {};encoding=hex\r\n",
        hex::encode("i-elsewhere")
    );
    let (incoming, interaction) = call_with(&mut phone, &uui);
    assert_eq!(interaction, "i-elsewhere");
    let owner = owner_of(&interaction).expect("another node owns it");
    phone.core.redirect_incoming(phone.now, incoming, &owner);
    let sent = phone.received();
    assert!(
        sent.len() == 1 && sent[0].contains("Contact: <sip:+15550100@127.0.0.3:5070>"),
        "{sent:?}"
    );
}
