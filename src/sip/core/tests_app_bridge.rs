//! Two application calls joined to each other on a virtual clock: the customer's phone behind
//! the trunk answers in PCMA with telephone-events, the agent's softphone in PCMU without; the
//! application bridges them, records them, and ends each on its own.

use super::app_calls::AppCall;
use super::tests_b2bua::{AGENT, TRUNK, World, events, header, ring_alice};
use super::*;

const CUSTOMER_ANSWER_PCMA: &str = "v=0\r\no=phone 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
    m=audio 7000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n";

/// The application dials the customer's number through the trunk; the call and the INVITE
/// the trunk got.
fn dial_customer(world: &mut World) -> (AppCall, String) {
    let dial = AppDial {
        target: DialTarget::Uri {
            uri: rsipstack::sip::parse_uri(&format!("sip:+15550100@{TRUNK}")).unwrap(),
            via: Peer::udp(TRUNK.parse().unwrap()),
        },
        from_user: "claims".into(),
        extra_headers: vec![("X-Interaction-Id".into(), "i-42".into())],
    };
    let placed = world.core.dial(world.now, dial).expect("dialled");
    world.collect();
    let invite = world.take(TRUNK).remove(0);
    (placed, invite)
}

/// The customer's phone answers `invite` with PCMA and telephone-event 101.
fn customer_answers(world: &mut World, invite: &str) {
    let copy = ["Via:", "From:", "To:", "Call-ID:", "CSeq:"]
        .iter()
        .map(|h| {
            let line = header(invite, h);
            if *h == "To:" {
                format!("{line};tag=cust")
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\r\n");
    let body = CUSTOMER_ANSWER_PCMA;
    let text = format!(
        "SIP/2.0 200 OK\r\n{copy}\r\nContact: <sip:+15550100@{TRUNK}>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    world.send(TRUNK, &text);
}

/// The customer's phone hangs up the dialog its `invite` opened.
fn customer_hangs_up(world: &mut World, invite: &str) {
    let from = header(invite, "From:").trim_start_matches("From:").trim();
    let to = header(invite, "To:").trim_start_matches("To:").trim();
    let call_id = header(invite, "Call-ID:");
    let bye = format!(
        "BYE sip:claims@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {TRUNK};branch=z9hG4bK-custbye\r\n\
         Max-Forwards: 70\r\nFrom: {to};tag=cust\r\nTo: {from}\r\n{call_id}\r\nCSeq: 2 BYE\r\n\
         Content-Length: 0\r\n\r\n"
    );
    world.send(TRUNK, &bye);
}

/// Both calls answered; (customer, agent, customer's INVITE, agent's INVITE), media drained.
fn both_answered(world: &mut World) -> (AppCall, AppCall, String, String) {
    let (customer, customer_invite) = dial_customer(world);
    let (agent, agent_invite) = ring_alice(world);
    customer_answers(world, &customer_invite);
    world.agent_answers(&agent_invite, 200, "OK");
    let answered = events(world);
    assert_eq!(answered.len(), 2, "{answered:?}");
    world.media();
    (customer, agent, customer_invite, agent_invite)
}

fn sip_port(media: &[MediaCommand], not: &[u16]) -> Vec<u16> {
    media
        .iter()
        .filter_map(|m| match m {
            MediaCommand::Open { port, .. } if !not.contains(port) => Some(*port),
            _ => None,
        })
        .collect()
}

#[test]
fn two_answered_calls_are_bridged_transcoded_and_their_local_legs_freed() {
    let mut world = World::new(|_| {});
    let (customer, customer_invite) = dial_customer(&mut world);
    let (agent, agent_invite) = ring_alice(&mut world);
    assert_eq!(
        world.core.bridge_app_calls(customer.call, agent.call),
        Err(DialError::NotAnswered),
        "nothing is bridged while a side rings"
    );
    customer_answers(&mut world, &customer_invite);
    world.agent_answers(&agent_invite, 200, "OK");
    assert_eq!(events(&mut world).len(), 2);
    let opened = sip_port(&world.media(), &[customer.local_port, agent.local_port]);
    assert_eq!(opened.len(), 2, "one SIP leg each");
    let (customer_port, agent_port) = (opened[0], opened[1]);

    world
        .core
        .bridge_app_calls(customer.call, agent.call)
        .expect("bridged");
    assert_eq!(
        world.media(),
        vec![
            MediaCommand::Close {
                port: customer.local_port
            },
            MediaCommand::Close {
                port: agent.local_port
            },
            MediaCommand::Bridge {
                a: customer_port,
                b: agent_port,
                transcode: Some((sdp::Codec::Pcma, sdp::Codec::Pcmu)),
                telephone_event: (Some(101), None),
            },
            MediaCommand::DetectDtmf {
                port: agent_port,
                payload_type: None
            },
        ],
        "the local legs go first, so nothing forwards to them after the bridge"
    );
    assert_eq!(world.core.ports.in_use(), 2, "only the SIP legs' ports");
    assert_eq!(
        world.core.bridge_app_calls(customer.call, agent.call),
        Err(DialError::NotAnswered),
        "a call is bridged once"
    );

    // The customer hangs up: that call ends, the agent's is the application's to end.
    customer_hangs_up(&mut world, &customer_invite);
    assert!(matches!(
        events(&mut world).as_slice(),
        [CoreEvent::Ended { by_peer: true, .. }]
    ));
    assert!(world.take(AGENT).iter().all(|m| !m.starts_with("BYE ")));
    assert_eq!(world.core.app_calls(), 1);
    world.core.hangup_app_call(world.now, agent.call);
    world.collect();
    let bye = world.take(AGENT).pop().unwrap();
    assert!(bye.starts_with("BYE "), "{bye}");
    world.agent_answers(&bye, 200, "OK");
    assert!(matches!(
        events(&mut world).as_slice(),
        [CoreEvent::Ended { by_peer: false, .. }]
    ));
    let closed: Vec<_> = world
        .media()
        .into_iter()
        .filter_map(|m| match m {
            MediaCommand::Close { port } => Some(port),
            _ => None,
        })
        .collect();
    assert_eq!(closed.len(), 2, "{closed:?}");
    assert!(closed.contains(&customer_port) && closed.contains(&agent_port));
    assert_eq!(world.core.ports.in_use(), 0);
    assert_eq!(world.core.app_calls(), 0);
}

#[test]
fn a_recording_takes_the_legs_the_application_names() {
    let mut world = World::new(|_| {});
    let (customer, agent, ..) = both_answered(&mut world);
    // Before the bridge: the customer's phone and the agent's local endpoint (a browser).
    world
        .core
        .record_app_calls(
            AppLeg::Far(customer.call),
            AppLeg::Local(customer.call),
            "i-42-1",
        )
        .expect("recorded");
    let media = world.media();
    let far = match media.as_slice() {
        [
            MediaCommand::Record {
                customer: far,
                agent: local,
                call_id,
            },
        ] if *local == customer.local_port && call_id == "i-42-1" => *far,
        other => panic!("unexpected {other:?}"),
    };
    assert_ne!(far, customer.local_port);

    world
        .core
        .bridge_app_calls(customer.call, agent.call)
        .unwrap();
    let media = world.media();
    let agent_port = match media.as_slice() {
        [.., MediaCommand::Bridge { b, .. }, _] => *b,
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(
        world
            .core
            .record_app_calls(AppLeg::Far(customer.call), AppLeg::Local(agent.call), "x"),
        Err(DialError::NotAnswered),
        "a bridged call has no local leg left"
    );
    world
        .core
        .record_app_calls(
            AppLeg::Far(customer.call),
            AppLeg::Far(agent.call),
            "i-42-2",
        )
        .unwrap();
    assert_eq!(
        world.media(),
        vec![MediaCommand::Record {
            customer: far,
            agent: agent_port,
            call_id: "i-42-2".into()
        }]
    );
}
