//! Presence as routing sees it, on a virtual clock: only an agent who can take a chat now
//! (connected, available, with room) staffs a department; until one does, mobile operators on
//! duty are texted. A desktop starts in the configured presence, an operator who opens the
//! desktop while a chat she was texted about waits sees it offered at once, and an operator's
//! own mobile settings take effect at once.

use crate::routing;

use std::time::Duration;

use routing::*;
use tandem::config::RoutingMode;
use tandem::routing::router::{MobileDuty, Output, Presence, WithdrawReason};

fn operator(name: &str) -> tandem::routing::router::AgentSpec {
    let mut spec = agent(name, 100);
    spec.mobile = MobileDuty::Always;
    spec
}

fn moved(c: &str, a: &str) -> Output {
    Output::MovedToDesk {
        chat: chat(c),
        agent: id(a),
    }
}

#[test]
fn an_agent_who_is_not_ready_does_not_staff_the_department() {
    let mut h = Harness::new(
        RoutingMode::RingAll,
        vec![agent("alice", 100), operator("olga")],
    );
    // Alice is at her desk but not ready: the chat is texted to olga instead of waiting for
    // nobody.
    h.router.handle_connect(h.now, &id("alice")).unwrap();
    assert_eq!(h.router.presence(&id("alice")), Some(Presence::Away));
    assert_eq!(h.new_chat("c1"), vec![sms("c1", "olga")]);

    // Alice becomes ready: she is offered the chat too, and the next chat goes to her desk only.
    let out = h.available(&["alice"]);
    assert_eq!(out, vec![offer("c1", "alice")]);
    assert_eq!(h.new_chat("c2"), vec![offer("c2", "alice")]);

    // The first to accept wins: olga's link is withdrawn.
    h.router
        .handle_accept(h.now, &chat("c1"), &id("alice"))
        .unwrap();
    let out = h.drain();
    assert!(
        out.contains(&withdraw("c1", "olga", WithdrawReason::Taken)),
        "{out:?}"
    );
    assert!(out.contains(&assign("c1", "alice")), "{out:?}");
}

#[test]
fn a_full_agent_does_not_staff_the_department_either() {
    let mut h = Harness::new(
        RoutingMode::RingAll,
        vec![agent("alice", 25), operator("olga")],
    );
    h.available(&["alice"]);
    assert_eq!(h.new_chat("c1"), vec![offer("c1", "alice")]);
    h.router
        .handle_accept(h.now, &chat("c1"), &id("alice"))
        .unwrap();
    h.drain();
    // Alice has no room left: a new chat is texted rather than left waiting.
    assert_eq!(h.new_chat("c2"), vec![sms("c2", "olga")]);
}

#[test]
fn a_desktop_starts_in_the_configured_presence() {
    let mut s = settings();
    s.initial_presence = Presence::Available;
    let mut h = Harness::with(s, RoutingMode::RoundRobin, vec![agent("alice", 100)]);
    h.new_chat("c1");
    h.router.handle_connect(h.now, &id("alice")).unwrap();
    assert_eq!(h.router.presence(&id("alice")), Some(Presence::Available));
    assert_eq!(h.drain(), vec![offer("c1", "alice")]);
    // A second tab does not reset what she chose.
    h.router
        .handle_presence(h.now, &id("alice"), Presence::Away)
        .unwrap();
    h.drain();
    h.router.handle_connect(h.now, &id("alice")).unwrap();
    assert_eq!(h.router.presence(&id("alice")), Some(Presence::Away));
}

#[test]
fn an_operator_who_opens_the_desktop_sees_the_chat_she_was_texted_about() {
    for mode in [RoutingMode::RingAll, RoutingMode::RoundRobin] {
        let mut h = Harness::new(mode, vec![operator("olga")]);
        assert_eq!(h.new_chat("c1"), vec![sms("c1", "olga")]);
        h.advance(Duration::from_secs(5));

        // She logs in, not ready yet: the offer moves to her desk at once (her link expires).
        h.router.handle_connect(h.now, &id("olga")).unwrap();
        assert_eq!(h.drain(), vec![moved("c1", "olga")], "{mode:?}");
        let (offers, chats) = h.router.agent_chats(&id("olga"));
        assert_eq!(offers, vec![chat("c1")], "the desk's hello lists it");
        assert!(chats.is_empty());
        // A second tab does not move it again.
        h.router.handle_connect(h.now, &id("olga")).unwrap();
        assert!(h.drain().is_empty());

        // She takes it from the desk.
        h.router
            .handle_accept(h.now, &chat("c1"), &id("olga"))
            .unwrap();
        assert!(h.drain().contains(&assign("c1", "olga")), "{mode:?}");
    }
}

#[test]
fn an_operator_who_turns_mobile_chat_on_or_off_is_texted_or_not_at_once() {
    let mut quiet = operator("olga");
    quiet.mobile = MobileDuty::Never;
    let mut h = Harness::new(RoutingMode::RingAll, vec![quiet]);
    assert!(offers(&h.new_chat("c1")).is_empty(), "nobody on duty");

    // Olga turns mobile chat on from her desktop settings: the waiting chat is texted to her.
    h.router
        .handle_mobile_duty(h.now, &id("olga"), MobileDuty::Always);
    assert_eq!(h.drain(), vec![sms("c1", "olga")]);

    // And off: the standing text is withdrawn.
    h.router
        .handle_mobile_duty(h.now, &id("olga"), MobileDuty::Never);
    assert_eq!(
        h.drain(),
        vec![withdraw("c1", "olga", WithdrawReason::AgentLeft)]
    );
}

#[test]
fn sms_offers_left_standing_do_not_keep_a_ready_agent_from_being_offered() {
    let mut h = Harness::new(
        RoutingMode::RingAll,
        vec![agent("alice", 100), operator("olga"), operator("omar")],
    );
    let out = h.new_chat("c1");
    assert_eq!(offers(&out).len(), 2, "both operators texted: {out:?}");
    // Alice comes and is ready: her desk rings although two texts are out.
    let out = h.available(&["alice"]);
    assert!(out.contains(&offer("c1", "alice")), "{out:?}");
    assert!(
        !out.iter().any(|o| matches!(o, Output::Withdraw { .. })),
        "the texts stand until someone accepts: {out:?}"
    );
}

#[test]
fn the_staff_a_customer_is_told_about_follow_the_same_rule() {
    use tandem::routing::router::{Slots, Staff, Via};
    let slots = |of: &[(u32, u32)]| -> Vec<Slots> {
        of.iter()
            .map(|&(total, free)| Slots { total, free })
            .collect()
    };
    let staff = |via, desk: &[(u32, u32)], sms: &[(u32, u32)], waiting| Staff {
        via,
        desk: slots(desk),
        sms: slots(sms),
        waiting,
    };
    let mut h = Harness::new(
        RoutingMode::RingAll,
        vec![agent("alice", 25), operator("olga")],
    );
    // Nobody at a desk: olga, by SMS.
    assert_eq!(
        h.router.staff(h.now, "claims"),
        staff(Via::Sms, &[], &[(4, 4)], 0)
    );
    assert_eq!(h.router.staff(h.now, "sales"), staff(Via::Sms, &[], &[], 0));
    // Alice ready with room: her desk.
    h.available(&["alice"]);
    assert_eq!(
        h.router.staff(h.now, "claims"),
        staff(Via::Desktop, &[(1, 1)], &[(4, 4)], 0)
    );
    // Alice full: by SMS again, as the next chat would be texted.
    h.new_chat("c1");
    h.router
        .handle_accept(h.now, &chat("c1"), &id("alice"))
        .unwrap();
    h.drain();
    h.new_chat("c2");
    assert_eq!(
        h.router.staff(h.now, "claims"),
        staff(Via::Sms, &[(1, 0)], &[(4, 4)], 1)
    );
    // Away, she is not counted.
    h.router
        .handle_presence(h.now, &id("alice"), Presence::Away)
        .unwrap();
    assert_eq!(
        h.router.staff(h.now, "claims"),
        staff(Via::Sms, &[], &[(4, 4)], 1)
    );
}
