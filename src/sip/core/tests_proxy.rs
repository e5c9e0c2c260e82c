//! Behind and through proxies, on a virtual clock: Record-Route echoed in every response that
//! creates a dialog (RFC 3261 §12.1.1), in-dialog requests routed by the route set (§12.2.1.1),
//! and calls placed through an outbound proxy with a loose route (§8.1.2).

use std::time::Duration;

use super::tests::{OFFER, Phone, core, to_tag};
use super::tests_b2bua::{AGENT, TRUNK, World, header, status};
use super::*;
use crate::config::{TrunkConfig, TrunkTransport};

const PROXY: &str = "127.0.0.1:5080";
const RECORD_ROUTE: &str = "Record-Route: <sip:127.0.0.1:5080;lr;ftag=ph>\r\n\
                            Record-Route: <sip:10.0.0.9;lr>, <sip:10.0.0.8;lr>\r\n";

/// Every value of the `name` headers of `message`, lists split, in order.
fn values(message: &str, name: &str) -> Vec<String> {
    message
        .lines()
        .filter_map(|l| l.strip_prefix(name))
        .flat_map(|v| crate::sip::dialog::split_list(v.trim()).into_iter())
        .map(String::from)
        .collect()
}

fn route_set() -> Vec<String> {
    vec![
        "<sip:127.0.0.1:5080;lr;ftag=ph>".to_string(),
        "<sip:10.0.0.9;lr>".to_string(),
        "<sip:10.0.0.8;lr>".to_string(),
    ]
}

#[test]
fn every_response_that_creates_the_dialog_carries_the_record_route() {
    let now = Instant::now();
    // Echo rings a while, so the 180 and the 200 leave separately.
    let mut phone = Phone::new(core(10, Duration::from_secs(2), now), now);
    let invite = phone.request(
        "INVITE",
        "sip:echo@127.0.0.1",
        "rr1",
        1,
        None,
        RECORD_ROUTE,
        OFFER,
    );
    phone.send(&invite);
    let got = phone.received();
    assert!(got[0].starts_with("SIP/2.0 180"), "{got:?}");
    assert_eq!(values(&got[0], "Record-Route:"), route_set(), "{}", got[0]);
    let got = phone.advance(Duration::from_secs(2));
    let ok = got.iter().find(|m| m.starts_with("SIP/2.0 200")).unwrap();
    assert_eq!(values(ok, "Record-Route:"), route_set(), "{ok}");

    // Our own BYE follows the route set in the same order, to where the INVITE came from.
    let tag = to_tag(ok);
    let ack = phone.in_dialog("ACK", "rr1a", 1, &tag, "", "");
    phone.send(&ack);
    let port = phone.core.legs.keys().copied().next().unwrap();
    phone.core.media_inactive(phone.now, port);
    let bye = phone
        .received()
        .into_iter()
        .find(|m| m.starts_with("BYE "))
        .unwrap();
    assert_eq!(values(&bye, "Route:"), route_set(), "{bye}");
}

#[test]
fn a_refresh_inside_the_dialog_does_not_repeat_the_record_route() {
    let now = Instant::now();
    let mut phone = Phone::new(core(10, Duration::ZERO, now), now);
    let invite = phone.request(
        "INVITE",
        "sip:echo@127.0.0.1",
        "rr2",
        1,
        None,
        RECORD_ROUTE,
        OFFER,
    );
    phone.send(&invite);
    let ok = phone.received().remove(0);
    let tag = to_tag(&ok);
    let ack = phone.in_dialog("ACK", "rr2a", 1, &tag, "", "");
    phone.send(&ack);
    let update = phone.in_dialog("UPDATE", "rr2u", 2, &tag, "", "");
    phone.send(&update);
    let answer = phone.received().remove(0);
    assert!(answer.starts_with("SIP/2.0 200"), "{answer}");
    assert!(values(&answer, "Record-Route:").is_empty(), "{answer}");
}

#[test]
fn a_trunk_call_behind_a_record_routing_proxy_is_answered_with_the_route_set() {
    let mut world = World::new(|_| {});
    world.register_agent();
    world.trunk_invite("rr-bridge", "Record-Route: <sip:127.0.0.1:5070;lr>\r\n");
    world.take(TRUNK);
    let invite = world.take(AGENT).remove(0);
    world.agent_answers(&invite, 180, "Ringing");
    let ringing = world.take(TRUNK).remove(0);
    assert_eq!(status(&ringing), 180);
    assert_eq!(
        values(&ringing, "Record-Route:"),
        vec!["<sip:127.0.0.1:5070;lr>"]
    );
    world.agent_answers(&invite, 200, "OK");
    let ok = world.take(TRUNK).remove(0);
    assert_eq!(status(&ok), 200);
    assert_eq!(
        values(&ok, "Record-Route:"),
        vec!["<sip:127.0.0.1:5070;lr>"]
    );
}

/// A world whose trunk is reached through the proxy at [`PROXY`].
fn world_with_proxy(transport: TrunkTransport, proxy: Option<&str>) -> World {
    World::new(|c| {
        c.trunks = vec![TrunkConfig {
            name: "carrier".into(),
            addresses: vec![TRUNK.into()],
            transport,
            outbound_proxy: proxy.map(|p| p.parse().unwrap()),
            ..TrunkConfig::default()
        }];
    })
}

fn dial_trunk(world: &mut World) -> CallRef {
    let placed = world
        .core
        .dial(
            world.now,
            AppDial {
                target: DialTarget::Uri {
                    uri: rsipstack::sip::parse_uri("sip:+33123456789@127.0.0.1:5070").unwrap(),
                    via: Peer::udp(TRUNK.parse().unwrap()),
                },
                from_user: "claims".into(),
                extra_headers: Vec::new(),
            },
        )
        .unwrap();
    world.collect();
    placed.call
}

#[test]
fn a_call_through_an_outbound_proxy_carries_a_loose_route_and_keeps_to_the_route_set() {
    let mut world = world_with_proxy(TrunkTransport::Udp, Some(PROXY));
    dial_trunk(&mut world);
    assert!(
        world.take(TRUNK).is_empty(),
        "nothing goes around the proxy"
    );
    let invite = world.take(PROXY).remove(0);
    assert!(
        invite.starts_with("INVITE sip:+33123456789@127.0.0.1:5070 SIP/2.0"),
        "the destination stays in the Request-URI: {invite}"
    );
    assert_eq!(values(&invite, "Route:"), vec!["<sip:127.0.0.1:5080;lr>"]);

    // The proxy record-routes; the carrier answers through it.
    let ok = format!(
        "SIP/2.0 200 OK\r\n{}\r\nRecord-Route: <sip:127.0.0.1:5080;lr>\r\n{}\r\n{};tag=carrier\r\n{}\r\n{}\r\n\
         Contact: <sip:gw@192.0.2.50:5060>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{}",
        header(&invite, "Via:"),
        header(&invite, "From:"),
        header(&invite, "To:"),
        header(&invite, "Call-ID:"),
        header(&invite, "CSeq:"),
        OFFER.len(),
        OFFER,
    );
    world.send(PROXY, &ok);
    let ack = world.take(PROXY).remove(0);
    assert!(
        ack.starts_with("ACK sip:gw@192.0.2.50:5060 SIP/2.0"),
        "{ack}"
    );
    assert_eq!(values(&ack, "Route:"), vec!["<sip:127.0.0.1:5080;lr>"]);
    let dialog = super::tests_b2bua::events(&mut world)
        .into_iter()
        .find_map(|e| match e {
            CoreEvent::Answered { dialog, .. } => Some(dialog),
            _ => None,
        })
        .unwrap();
    world.core.hangup(world.now, &dialog);
    world.collect();
    let bye = world.take(PROXY).remove(0);
    assert!(
        bye.starts_with("BYE sip:gw@192.0.2.50:5060 SIP/2.0"),
        "{bye}"
    );
    assert_eq!(values(&bye, "Route:"), vec!["<sip:127.0.0.1:5080;lr>"]);
}

#[test]
fn the_global_outbound_proxy_serves_trunks_without_their_own() {
    let mut world = World::new(|c| c.net.outbound_proxy = Some(PROXY.parse().unwrap()));
    dial_trunk(&mut world);
    let invite = world.take(PROXY).remove(0);
    assert_eq!(values(&invite, "Route:"), vec!["<sip:127.0.0.1:5080;lr>"]);
}

#[test]
fn a_tls_trunk_is_called_with_a_sips_uri_over_tls() {
    let mut world = world_with_proxy(TrunkTransport::Tls, None);
    world
        .core
        .dial(
            world.now,
            AppDial {
                target: DialTarget::Uri {
                    uri: rsipstack::sip::parse_uri("sip:+33123456789@127.0.0.1:5070").unwrap(),
                    via: Peer::udp(TRUNK.parse().unwrap()),
                },
                from_user: "claims".into(),
                extra_headers: Vec::new(),
            },
        )
        .unwrap();
    let sent = world.core.poll_transmit().unwrap();
    assert_eq!(sent.to.transport, TransportKind::Tls);
    assert_eq!(sent.to.addr, TRUNK.parse::<std::net::SocketAddr>().unwrap());
    let invite = String::from_utf8(sent.payload.to_vec()).unwrap();
    assert!(
        invite.starts_with("INVITE sips:+33123456789@127.0.0.1:5070 SIP/2.0"),
        "{invite}"
    );
    assert!(
        header(&invite, "Via:").starts_with("Via: SIP/2.0/TLS "),
        "{invite}"
    );
    assert!(
        header(&invite, "Contact:").contains(";transport=tls"),
        "{invite}"
    );
}
