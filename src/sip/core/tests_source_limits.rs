//! What one source may make the core hold with INVITEs, on the virtual clock: its rate, its
//! calls not confirmed by an ACK, the early release of an unconfirmed call's RTP port, and the
//! echo switch.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::tests::{OFFER, Phone, config, to_tag};
use super::*;
use crate::config::{RegistrarConfig, TrunkConfig};
use crate::sip::wire::parse_datagram;

const FLOODER: &str = "10.0.0.66:5060";
const CALLER: &str = "10.0.0.7:5060";
const TRUNK: &str = "10.0.0.1:5060";

fn limits(per_minute: u32, burst: u32, max_unconfirmed: usize) -> InviteLimits {
    InviteLimits {
        per_minute,
        burst,
        max_unconfirmed,
        release_media_after: Duration::from_secs(8),
    }
}

fn phone_with(invites: InviteLimits, echo: bool, now: Instant) -> Phone {
    let mut config = config(1000, Duration::ZERO);
    config.invites = invites;
    config.echo = echo;
    config.trunks = vec![TrunkConfig {
        name: "carrier".into(),
        addresses: vec![TRUNK.into()],
        ..TrunkConfig::default()
    }];
    let registrar = Registrar::with_random_secret(&RegistrarConfig::default(), now);
    Phone::new(
        SipCore::new(config, registrar, PortPool::new(30000, 30400)),
        now,
    )
}

/// Sends an INVITE to echo with its own Call-ID from `source`; returns what came back.
fn invite_from(phone: &mut Phone, source: &str, n: u32) -> Vec<String> {
    phone.call_id = format!("call-{source}-{n}");
    let invite = phone.request(
        "INVITE",
        "sip:echo@127.0.0.1",
        &format!("inv{source}{n}"),
        1,
        None,
        "",
        OFFER,
    );
    let message = parse_datagram(invite.as_bytes()).unwrap();
    let from: SocketAddr = source.parse().unwrap();
    phone
        .core
        .handle_message(phone.now, message, Peer::udp(from));
    phone.received()
}

fn final_status(got: &[String]) -> &str {
    let last = got.last().expect("an answer");
    &last[8..11]
}

fn refusals(phone: &mut Phone) -> Vec<(&'static str, u64)> {
    phone
        .core
        .take_source_refusals()
        .iter()
        .map(|(r, n)| (r.reason(), *n))
        .collect()
}

#[test]
fn a_source_with_too_many_calls_waiting_for_their_ack_gets_503_and_others_are_answered() {
    let now = Instant::now();
    let mut phone = phone_with(limits(6000, 1000, 3), true, now);
    let answers: Vec<String> = (0..6)
        .map(|n| final_status(&invite_from(&mut phone, FLOODER, n)).to_string())
        .collect();
    assert_eq!(answers, ["200", "200", "200", "503", "503", "503"]);
    let refused = invite_from(&mut phone, FLOODER, 6);
    let refused = refused.last().unwrap();
    assert!(
        refused.starts_with("SIP/2.0 503 Too Many Unconfirmed Calls From This Address\r\n"),
        "{refused}"
    );
    assert!(refused.contains("Retry-After: 8\r\n"), "{refused}");
    // The flooder holds three legs, never more; another address is answered all the same.
    assert_eq!(phone.core.held().rtp_ports, 3);
    assert_eq!(final_status(&invite_from(&mut phone, CALLER, 0)), "200");
    assert_eq!(
        refusals(&mut phone),
        [("sip_invite_rate", 0), ("sip_unconfirmed_calls", 4)]
    );
    assert_eq!(refusals(&mut phone)[1], ("sip_unconfirmed_calls", 0));
}

#[test]
fn an_ack_frees_a_place_among_the_unconfirmed_calls() {
    let now = Instant::now();
    let mut phone = phone_with(limits(6000, 1000, 1), true, now);
    let got = invite_from(&mut phone, CALLER, 0);
    assert_eq!(final_status(&got), "200");
    assert_eq!(final_status(&invite_from(&mut phone, CALLER, 1)), "503");
    phone.call_id = format!("call-{CALLER}-0");
    let tag = to_tag(got.last().unwrap());
    let ack = phone.request("ACK", "sip:tandem@127.0.0.1", "ack0", 1, Some(&tag), "", "");
    let from: SocketAddr = CALLER.parse().unwrap();
    phone.core.handle_message(
        phone.now,
        parse_datagram(ack.as_bytes()).unwrap(),
        Peer::udp(from),
    );
    assert_eq!(final_status(&invite_from(&mut phone, CALLER, 2)), "200");
}

#[test]
fn a_source_over_its_rate_waits_for_its_next_token_and_others_do_not() {
    let now = Instant::now();
    // One INVITE a second after a burst of two.
    let mut phone = phone_with(limits(60, 2, 1000), true, now);
    for n in 0..2 {
        assert_eq!(final_status(&invite_from(&mut phone, FLOODER, n)), "200");
    }
    let refused = invite_from(&mut phone, FLOODER, 2);
    let refused = refused.last().unwrap();
    assert!(
        refused.starts_with("SIP/2.0 503 Too Many Calls From This Address\r\n"),
        "{refused}"
    );
    assert!(refused.contains("Retry-After: 1\r\n"), "{refused}");
    assert_eq!(final_status(&invite_from(&mut phone, CALLER, 0)), "200");
    phone.advance(Duration::from_secs(1));
    assert_eq!(final_status(&invite_from(&mut phone, FLOODER, 3)), "200");
    assert_eq!(final_status(&invite_from(&mut phone, FLOODER, 4)), "503");
    assert_eq!(
        refusals(&mut phone),
        [("sip_invite_rate", 2), ("sip_unconfirmed_calls", 0)]
    );
}

#[test]
fn a_trunk_is_not_held_to_one_sources_budget() {
    let now = Instant::now();
    let mut phone = phone_with(limits(60, 1, 1), true, now);
    for n in 0..5 {
        assert_eq!(final_status(&invite_from(&mut phone, TRUNK, n)), "200");
    }
}

#[test]
fn a_call_without_ack_gives_its_port_back_early_and_its_dialog_ends_after_64_t1() {
    let now = Instant::now();
    let mut phone = phone_with(InviteLimits::default(), true, now);
    assert_eq!(final_status(&invite_from(&mut phone, FLOODER, 0)), "200");
    let port = match phone.media().first() {
        Some(MediaCommand::Open { port, .. }) => *port,
        other => panic!("{other:?}"),
    };
    assert_eq!(phone.core.held().rtp_ports, 1);
    // Before the release time the port is held and the 200 retransmitted.
    phone.advance(Duration::from_millis(7900));
    assert!(phone.media().is_empty());
    assert_eq!(phone.core.held().rtp_ports, 1);
    // Then the port goes back to the pool; the dialog still waits for the ACK.
    phone.advance(Duration::from_millis(200));
    assert_eq!(phone.media(), vec![MediaCommand::Close { port }]);
    assert_eq!(phone.core.held().rtp_ports, 0);
    assert_eq!(phone.core.stats().calls, 1);
    let later = phone.advance(Duration::from_secs(10));
    assert!(
        later.iter().any(|m| m.starts_with("SIP/2.0 200")),
        "{later:?}"
    );
    // RFC 3261 §13.3.1.4: at 64·T1 the dialog ends with a BYE; its port is not freed twice.
    let end = phone.advance(Duration::from_secs(14));
    assert!(end.iter().any(|m| m.starts_with("BYE ")), "{end:?}");
    phone.advance(Duration::from_secs(40));
    assert_eq!(phone.core.stats().calls, 0);
    assert!(phone.media().is_empty(), "closed once");
    assert_eq!(phone.core.held().rtp_ports, 0);
}

#[test]
fn an_ack_after_the_port_went_back_gets_a_bye_and_another_call_keeps_its_port() {
    let now = Instant::now();
    let mut phone = phone_with(InviteLimits::default(), true, now);
    let got = invite_from(&mut phone, CALLER, 0);
    let tag = to_tag(got.last().unwrap());
    phone.media();
    phone.advance(Duration::from_secs(9));
    assert_eq!(phone.core.held().rtp_ports, 0);
    // A new call takes the freed port.
    assert_eq!(final_status(&invite_from(&mut phone, FLOODER, 0)), "200");
    let reused = match phone.media().as_slice() {
        [
            MediaCommand::Close { .. },
            MediaCommand::Open { port, .. },
            ..,
        ]
        | [MediaCommand::Open { port, .. }, ..] => *port,
        other => panic!("{other:?}"),
    };
    // The late ACK confirms a call without media: it is ended at once.
    phone.call_id = format!("call-{CALLER}-0");
    let ack = phone.request("ACK", "sip:tandem@127.0.0.1", "ack0", 1, Some(&tag), "", "");
    let from: SocketAddr = CALLER.parse().unwrap();
    phone.core.handle_message(
        phone.now,
        parse_datagram(ack.as_bytes()).unwrap(),
        Peer::udp(from),
    );
    let sent = phone.received();
    assert!(sent.iter().any(|m| m.starts_with("BYE ")), "{sent:?}");
    let bye = sent.iter().find(|m| m.starts_with("BYE ")).unwrap();
    let ok = format!(
        "SIP/2.0 200 OK\r\n{}Content-Length: 0\r\n\r\n",
        bye.lines()
            .filter(|l| ["Via:", "From:", "To:", "Call-ID:", "CSeq:"]
                .iter()
                .any(|h| l.starts_with(h)))
            .map(|l| format!("{l}\r\n"))
            .collect::<String>()
    );
    phone.core.handle_message(
        phone.now,
        parse_datagram(ok.as_bytes()).unwrap(),
        Peer::udp(from),
    );
    assert_eq!(phone.core.stats().calls, 1, "only the new call is left");
    // Ending the old call did not close the port the new call now holds.
    assert!(
        !phone
            .media()
            .contains(&MediaCommand::Close { port: reused }),
        "the new call's port stays open"
    );
    assert_eq!(phone.core.held().rtp_ports, 1);
}

#[test]
fn with_echo_off_echo_is_an_unknown_user() {
    let now = Instant::now();
    let mut phone = phone_with(InviteLimits::default(), false, now);
    let got = invite_from(&mut phone, CALLER, 0);
    assert_eq!(final_status(&got), "404", "{got:?}");
    assert_eq!(phone.core.held().rtp_ports, 0);
    let options = phone.request("OPTIONS", "sip:echo@127.0.0.1", "opt", 1, None, "", "");
    phone.send(&options);
    assert_eq!(phone.statuses(), vec![404]);
}
