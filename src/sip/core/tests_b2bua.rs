//! Bridged calls on a virtual clock: a scripted trunk calls an agent whose scripted softphone
//! registered with digest authentication; every message crosses the core as bytes, and the
//! core's events go through the B2BUA first, as in the SIP driver.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use super::app_calls::AppCall;
use super::*;
use crate::config::{RegistrarConfig, SipAccount};
use crate::sip::b2bua::B2bua;
use crate::sip::digest::{self, Algorithm, QopAuth};
use crate::sip::wire::parse_datagram;

pub(super) const TRUNK: &str = "127.0.0.1:5070";
pub(super) const AGENT: &str = "127.0.0.1:5090";
pub(super) const OFFER: &str = "v=0\r\no=trunk 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
    m=audio 7000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n";
const AGENT_ANSWER_PCMU: &str = "v=0\r\no=agent 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
    m=audio 9000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

pub(super) struct World {
    pub(super) core: SipCore,
    pub(super) b2bua: B2bua,
    pub(super) now: Instant,
    /// Events the B2BUA left for the application, not yet read.
    events: VecDeque<CoreEvent>,
    /// Messages the core sent, not yet read, with their destination.
    outbox: Vec<(String, String)>,
}

pub(super) fn header<'a>(message: &'a str, name: &str) -> &'a str {
    message
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("no {name} in {message}"))
}

pub(super) fn status(message: &str) -> u16 {
    message[8..11].parse().unwrap()
}

impl World {
    pub(super) fn new(config_change: impl FnOnce(&mut CoreConfig)) -> World {
        let now = Instant::now();
        let mut config = CoreConfig {
            retry_after_s: 5,
            trunks: vec![TrunkConfig {
                name: "carrier".into(),
                addresses: vec![TRUNK.into()],
                ..TrunkConfig::default()
            }],
            agent_answer_timeout: Duration::from_secs(20),
            record: true,
            service_numbers: HashSet::from(["15550100".to_string()]),
            ..super::tests::config(10, Duration::ZERO)
        };
        config_change(&mut config);
        let registrar_config = RegistrarConfig {
            algorithms: vec!["MD5".into()],
            accounts: vec![SipAccount {
                user: "alice".into(),
                password: "secret".into(),
                ..SipAccount::default()
            }],
            ..RegistrarConfig::default()
        };
        let registrar = Registrar::with_random_secret(&registrar_config, now);
        World {
            b2bua: B2bua::new(config.record),
            core: SipCore::new(config, registrar, PortPool::new(30000, 30100)),
            now,
            events: VecDeque::new(),
            outbox: Vec::new(),
        }
    }

    pub(super) fn send(&mut self, from: &str, text: &str) {
        let message = parse_datagram(text.as_bytes()).expect("test message parses");
        self.core
            .handle_message(self.now, message, Peer::udp(from.parse().unwrap()));
        self.collect();
    }

    /// Hands the core's events to the B2BUA (keeping the others for the test), then takes
    /// what the core sent.
    pub(super) fn collect(&mut self) {
        while let Some(event) = self.core.poll_event() {
            if !self.b2bua.handle(&mut self.core, self.now, &event) {
                self.events.push_back(event);
            }
        }
        while let Some(t) = self.core.poll_transmit() {
            let text = String::from_utf8(t.payload.to_vec()).unwrap();
            self.outbox.push((t.to.addr.to_string(), text));
        }
    }

    /// What the core sent to `to`, in order.
    pub(super) fn take(&mut self, to: &str) -> Vec<String> {
        let (mine, rest): (Vec<_>, Vec<_>) =
            self.outbox.drain(..).partition(|(addr, _)| addr == to);
        self.outbox = rest;
        mine.into_iter().map(|(_, m)| m).collect()
    }

    pub(super) fn advance(&mut self, by: Duration) {
        let end = self.now + by;
        while let Some(at) = self.core.poll_timeout() {
            if at > end {
                break;
            }
            self.now = at.max(self.now);
            self.core.handle_timeout(self.now);
            self.collect();
        }
        self.now = end;
    }

    pub(super) fn media(&mut self) -> Vec<MediaCommand> {
        std::iter::from_fn(|| self.core.poll_media()).collect()
    }

    /// The agent's softphone registers, answering the digest challenge.
    pub(super) fn register_agent(&mut self) {
        let register = |cseq: u32, auth: &str| {
            format!(
                "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {AGENT};branch=z9hG4bK-reg{cseq}\r\n\
                 Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=reg\r\nTo: <sip:alice@127.0.0.1>\r\n\
                 Call-ID: reg-1\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:alice@{AGENT}>\r\n\
                 Expires: 3600\r\n{auth}Content-Length: 0\r\n\r\n"
            )
        };
        self.send(AGENT, &register(1, ""));
        let challenge = self.take(AGENT).remove(0);
        assert_eq!(status(&challenge), 401);
        let www = header(&challenge, "WWW-Authenticate:");
        let nonce = www
            .split("nonce=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let response = digest::request_digest(
            Algorithm::Md5,
            "alice",
            "tandem",
            "secret",
            "REGISTER",
            "sip:127.0.0.1",
            nonce,
            Some(QopAuth {
                nc: "00000001",
                cnonce: "abc",
            }),
        );
        let auth = format!(
            "Authorization: Digest username=\"alice\", realm=\"tandem\", nonce=\"{nonce}\", \
             uri=\"sip:127.0.0.1\", response=\"{response}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"abc\"\r\n"
        );
        self.send(AGENT, &register(2, &auth));
        assert_eq!(status(&self.take(AGENT)[0]), 200);
    }

    pub(super) fn trunk_invite(&mut self, call_id: &str, extra: &str) -> String {
        let invite = format!(
            "INVITE sip:alice@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {TRUNK};branch=z9hG4bK-{call_id}\r\n\
             Max-Forwards: 70\r\nFrom: \"Customer\" <sip:+15551234@carrier.example>;tag=trk\r\n\
             To: <sip:alice@127.0.0.1>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n\
             Contact: <sip:carrier@{TRUNK}>\r\n{extra}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{OFFER}",
            OFFER.len()
        );
        self.send(TRUNK, &invite);
        invite
    }

    /// The agent's softphone answers the INVITE it got with `code` (and SDP on 2xx).
    pub(super) fn agent_answers(&mut self, invite: &str, code: u16, reason: &str) {
        let copy = ["Via:", "From:", "To:", "Call-ID:", "CSeq:"]
            .iter()
            .map(|h| {
                let line = header(invite, h);
                if *h == "To:" && code > 100 {
                    format!("{line};tag=agt")
                } else {
                    line.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\r\n");
        let (body, body_headers) = if (200..300).contains(&code) {
            (AGENT_ANSWER_PCMU, "Content-Type: application/sdp\r\n")
        } else {
            ("", "")
        };
        let text = format!(
            "SIP/2.0 {code} {reason}\r\n{copy}\r\nContact: <sip:alice@{AGENT}>\r\n{body_headers}Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.send(AGENT, &text);
    }

    /// Sets up a bridged call; returns (the INVITE the agent got, the trunk's 200).
    pub(super) fn bridged_call(&mut self, call_id: &str) -> (String, String) {
        self.register_agent();
        self.trunk_invite(call_id, "");
        assert_eq!(
            self.take(TRUNK)
                .iter()
                .map(|m| status(m))
                .collect::<Vec<_>>(),
            vec![100]
        );
        let invite = self.take(AGENT).remove(0);
        assert!(
            invite.starts_with("INVITE sip:alice@127.0.0.1:5090 SIP/2.0"),
            "{invite}"
        );
        self.agent_answers(&invite, 180, "Ringing");
        assert_eq!(
            self.take(TRUNK)
                .iter()
                .map(|m| status(m))
                .collect::<Vec<_>>(),
            vec![180]
        );
        self.agent_answers(&invite, 200, "OK");
        let to_agent = self.take(AGENT);
        assert!(
            to_agent[0].starts_with("ACK sip:alice@127.0.0.1:5090"),
            "{to_agent:?}"
        );
        let ok = self.take(TRUNK).remove(0);
        assert_eq!(status(&ok), 200);
        let ack = format!(
            "ACK sip:tandem@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {TRUNK};branch=z9hG4bK-ack-{call_id}\r\n\
             Max-Forwards: 70\r\n{}\r\n{}\r\nCall-ID: {call_id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
            header(&ok, "From:"),
            header(&ok, "To:"),
        );
        self.send(TRUNK, &ack);
        (invite, ok)
    }
}

#[test]
fn a_trunk_call_rings_the_agent_and_is_bridged_with_its_own_identity() {
    let mut world = World::new(|_| {});
    let (invite, ok) = world.bridged_call("trunk-1");
    // A new leg: its own Call-ID and tags, the caller id passed on, our offer leading with
    // the caller's codec.
    assert!(!header(&invite, "Call-ID:").contains("trunk-1"));
    assert!(
        header(&invite, "From:")
            .starts_with("From: \"Customer\" <sip:+15551234@carrier.example>;tag=")
    );
    assert!(!header(&invite, "From:").contains("tag=trk"));
    assert!(invite.contains("m=audio 30002 RTP/AVP 8 0 101"), "{invite}");
    // The caller is answered with its own codec (the agent chose PCMU): the relay transcodes.
    assert!(ok.contains("a=rtpmap:8 PCMA/8000"), "{ok}");
    let media = world.media();
    assert!(media.contains(&MediaCommand::Open {
        port: 30002,
        remote: Some("127.0.0.1:9000".parse().unwrap()),
        signalling: Some(AGENT.parse().unwrap()),
    }));
    assert!(media.contains(&MediaCommand::Open {
        port: 30000,
        remote: Some("127.0.0.1:7000".parse().unwrap()),
        signalling: Some(TRUNK.parse().unwrap()),
    }));
    assert!(media.contains(&MediaCommand::Bridge {
        a: 30000,
        b: 30002,
        transcode: Some((sdp::Codec::Pcma, sdp::Codec::Pcmu)),
        telephone_event: (Some(101), None),
    }));
    assert!(media.contains(&MediaCommand::Record {
        customer: 30000,
        agent: 30002,
        call_id: "trunk-1".into()
    }));
    assert_eq!(world.core.stats().calls, 2);
}

#[test]
fn a_bye_from_either_side_ends_the_other() {
    let mut world = World::new(|_| {});
    let (invite, ok) = world.bridged_call("trunk-2");
    world.media();
    let bye = format!(
        "BYE sip:tandem@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {TRUNK};branch=z9hG4bK-bye2\r\n\
         Max-Forwards: 70\r\n{}\r\n{}\r\nCall-ID: trunk-2\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
        header(&ok, "From:"),
        header(&ok, "To:"),
    );
    world.send(TRUNK, &bye);
    assert_eq!(status(&world.take(TRUNK)[0]), 200);
    let agent_bye = world.take(AGENT).remove(0);
    assert!(
        agent_bye.starts_with("BYE sip:alice@127.0.0.1:5090"),
        "{agent_bye}"
    );
    assert!(
        header(&agent_bye, "Call-ID:")
            .contains(header(&invite, "Call-ID:").trim_start_matches("Call-ID: "))
    );
    world.agent_answers(&agent_bye, 200, "OK");
    assert_eq!(world.core.stats().calls, 0);
    let closed: Vec<_> = world
        .media()
        .into_iter()
        .filter(|c| matches!(c, MediaCommand::Close { .. }))
        .collect();
    assert_eq!(closed.len(), 2, "both legs closed");
    assert_eq!(world.core.ports.in_use(), 0);
}

#[test]
fn a_busy_agent_means_486_for_the_caller() {
    let mut world = World::new(|_| {});
    world.register_agent();
    world.trunk_invite("busy-1", "");
    world.take(TRUNK);
    let invite = world.take(AGENT).remove(0);
    world.agent_answers(&invite, 486, "Busy Here");
    assert!(
        world.take(AGENT)[0].starts_with("ACK "),
        "the agent's 486 is acknowledged"
    );
    assert_eq!(status(&world.take(TRUNK)[0]), 486);
    assert_eq!(world.core.ports.in_use(), 0);
}

#[test]
fn an_agent_who_does_not_answer_is_cancelled_and_the_caller_gets_480() {
    let mut world = World::new(|c| c.agent_answer_timeout = Duration::from_secs(5));
    world.register_agent();
    world.trunk_invite("noans-1", "");
    world.take(TRUNK);
    let invite = world.take(AGENT).remove(0);
    world.agent_answers(&invite, 180, "Ringing");
    world.take(TRUNK);
    world.advance(Duration::from_secs(5));
    let to_trunk = world.take(TRUNK);
    assert!(
        to_trunk[0].starts_with("SIP/2.0 480 No Answer"),
        "{to_trunk:?}"
    );
    let cancel = world.take(AGENT).remove(0);
    assert!(
        cancel.starts_with("CANCEL sip:alice@127.0.0.1:5090"),
        "{cancel}"
    );
    // The agent's phone confirms: 200 to the CANCEL, 487 to the INVITE.
    world.agent_answers(&cancel, 200, "OK");
    world.agent_answers(&invite, 487, "Request Terminated");
    assert!(
        world.take(TRUNK).is_empty(),
        "the caller already had its answer"
    );
    assert_eq!(world.core.ports.in_use(), 0);
}

#[test]
fn the_callers_cancel_reaches_the_agent() {
    let mut world = World::new(|_| {});
    world.register_agent();
    world.trunk_invite("cancel-1", "");
    world.take(TRUNK);
    let invite = world.take(AGENT).remove(0);
    world.agent_answers(&invite, 180, "Ringing");
    world.take(TRUNK);
    let cancel = format!(
        "CANCEL sip:alice@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {TRUNK};branch=z9hG4bK-cancel-1\r\n\
         Max-Forwards: 70\r\nFrom: \"Customer\" <sip:+15551234@carrier.example>;tag=trk\r\n\
         To: <sip:alice@127.0.0.1>\r\nCall-ID: cancel-1\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n"
    );
    world.send(TRUNK, &cancel);
    let statuses: Vec<u16> = world.take(TRUNK).iter().map(|m| status(m)).collect();
    assert_eq!(statuses, vec![200, 487]);
    assert!(world.take(AGENT)[0].starts_with("CANCEL "));
}

#[test]
fn only_trunks_may_call_agents_and_only_registered_agents_ring() {
    let mut world = World::new(|_| {});
    world.trunk_invite("unreg-1", "");
    let answers = world.take(TRUNK);
    assert!(
        answers[0].starts_with("SIP/2.0 480 Agent Not Registered"),
        "{answers:?}"
    );

    let mut world = World::new(|c| c.trunks.clear());
    world.register_agent();
    world.trunk_invite("stranger-1", "");
    let answers = world.take(TRUNK);
    assert!(
        answers[0].starts_with("SIP/2.0 403 Not From A Trunk"),
        "{answers:?}"
    );
}

#[test]
fn a_hold_from_the_caller_is_offered_to_the_agent() {
    let mut world = World::new(|_| {});
    let (_, ok) = world.bridged_call("hold-1");
    let hold_offer = format!("{OFFER}a=sendonly\r\n");
    let reinvite = format!(
        "INVITE sip:tandem@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {TRUNK};branch=z9hG4bK-hold1\r\n\
         Max-Forwards: 70\r\n{}\r\n{}\r\nCall-ID: hold-1\r\nCSeq: 2 INVITE\r\nContact: <sip:carrier@{TRUNK}>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{hold_offer}",
        header(&ok, "From:"),
        header(&ok, "To:"),
        hold_offer.len()
    );
    world.send(TRUNK, &reinvite);
    let answer = world
        .take(TRUNK)
        .into_iter()
        .find(|m| m.starts_with("SIP/2.0 200"))
        .unwrap();
    assert!(answer.contains("a=recvonly"), "{answer}");
    let to_agent = world.take(AGENT).remove(0);
    assert!(
        to_agent.starts_with("INVITE sip:alice@127.0.0.1:5090"),
        "{to_agent}"
    );
    assert!(to_agent.contains("a=sendonly"), "{to_agent}");
}

#[test]
fn session_timers_are_confirmed_and_an_unrefreshed_session_ends() {
    let mut world = World::new(|_| {});
    world.register_agent();
    world.trunk_invite("st-small", "Session-Expires: 30\r\nSupported: timer\r\n");
    let answers = world.take(TRUNK);
    assert!(answers[0].starts_with("SIP/2.0 422 "), "{answers:?}");
    assert!(answers[0].contains("Min-SE: 90\r\n"));

    let mut world = World::new(|_| {});
    world.register_agent();
    world.trunk_invite("st-1", "Session-Expires: 120\r\nSupported: timer\r\n");
    world.take(TRUNK);
    let invite = world.take(AGENT).remove(0);
    world.agent_answers(&invite, 200, "OK");
    world.take(AGENT);
    let ok = world.take(TRUNK).remove(0);
    assert!(
        ok.contains("Session-Expires: 120;refresher=uac\r\n"),
        "{ok}"
    );
    assert!(ok.contains("Require: timer\r\n"));
    let ack = format!(
        "ACK sip:tandem@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {TRUNK};branch=z9hG4bK-st-ack\r\n\
         Max-Forwards: 70\r\n{}\r\n{}\r\nCall-ID: st-1\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
        header(&ok, "From:"),
        header(&ok, "To:"),
    );
    world.send(TRUNK, &ack);
    // No refresh: at 120 - 32 s the call ends, both legs.
    world.advance(Duration::from_secs(87));
    assert!(world.take(TRUNK).is_empty());
    world.advance(Duration::from_secs(2));
    assert!(world.take(TRUNK)[0].starts_with("BYE "));
    assert!(world.take(AGENT)[0].starts_with("BYE "));
}

#[test]
fn a_bridged_call_whose_media_stops_is_ended_on_both_sides() {
    let mut world = World::new(|_| {});
    world.bridged_call("dead-1");
    world.media();
    world.core.media_inactive(world.now, 30000);
    world.collect();
    assert!(
        world.take(TRUNK)[0].starts_with("BYE "),
        "the caller's leg ends"
    );
    let agent_bye = world.take(AGENT).remove(0);
    assert!(agent_bye.starts_with("BYE "), "and so does the agent's");
}

#[test]
fn a_register_over_tcp_is_answered_on_its_connection() {
    let mut world = World::new(|_| {});
    world.register_agent();
    // A softphone behind NAT keeps one TCP connection open: answers must use it.
    let register = format!(
        "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP {AGENT};branch=z9hG4bK-tcpreg\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=reg\r\nTo: <sip:alice@127.0.0.1>\r\n\
         Call-ID: reg-tcp\r\nCSeq: 1 REGISTER\r\nContact: <sip:alice@{AGENT};transport=tcp>\r\n\
         Content-Length: 0\r\n\r\n"
    );
    let message = parse_datagram(register.as_bytes()).unwrap();
    let conn = crate::sip::peer::ConnId(9);
    world.core.handle_message(
        world.now,
        message,
        Peer::tcp(AGENT.parse().unwrap(), Some(conn)),
    );
    let mut sent = Vec::new();
    while let Some(t) = world.core.poll_transmit() {
        sent.push(t);
    }
    assert_eq!(
        sent[0].to,
        Peer::tcp(AGENT.parse().unwrap(), Some(conn)),
        "401 on the same connection"
    );
    assert!(String::from_utf8_lossy(&sent[0].payload).starts_with("SIP/2.0 401"));
}

pub(super) fn events(world: &mut World) -> Vec<CoreEvent> {
    world.collect();
    world.events.drain(..).collect()
}

fn dial_alice(world: &mut World) -> AppCall {
    let dial = AppDial {
        target: DialTarget::Registered("alice".into()),
        from_user: "claims".into(),
        extra_headers: vec![("X-Interaction-Id".into(), "i-42".into())],
    };
    world.core.dial(world.now, dial).expect("dialled")
}

/// alice registers and is dialled; the call and the INVITE her softphone got.
pub(super) fn ring_alice(world: &mut World) -> (AppCall, String) {
    world.register_agent();
    let placed = dial_alice(world);
    world.collect();
    let invite = world.take(AGENT).remove(0);
    (placed, invite)
}

/// The application hangs `placed` up; the request that reaches the softphone.
fn hang_up(world: &mut World, placed: &AppCall) -> String {
    world.core.hangup_app_call(world.now, placed.call);
    world.collect();
    world.take(AGENT).remove(0)
}

#[test]
fn an_application_call_rings_the_softphone_and_bridges_its_local_leg() {
    let mut world = World::new(|_| {});
    let (placed, invite) = ring_alice(&mut world);
    assert!(
        invite.starts_with("INVITE sip:alice@127.0.0.1:5090"),
        "{invite}"
    );
    assert_eq!(
        header(&invite, "X-Interaction-Id:"),
        "X-Interaction-Id: i-42"
    );
    assert!(header(&invite, "From:").contains("sip:claims@127.0.0.1"));
    assert_eq!(
        world.media(),
        vec![MediaCommand::Open {
            port: placed.local_port,
            remote: None,
            signalling: None,
        }],
        "the local leg waits for its endpoint to send first"
    );

    world.agent_answers(&invite, 200, "OK");
    let answered = events(&mut world);
    let dialog = match answered.as_slice() {
        [CoreEvent::Answered { call, dialog }] if *call == placed.call => dialog.clone(),
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(
        world.core.app_call_codec(placed.call),
        Some(sdp::Codec::Pcmu)
    );
    let media = world.media();
    let sip_port = match media.as_slice() {
        [
            MediaCommand::Open { port, .. },
            MediaCommand::Bridge {
                a,
                b,
                transcode: None,
                ..
            },
            MediaCommand::DetectDtmf { .. },
        ] if a == &placed.local_port && b == port => *port,
        other => panic!("unexpected {other:?}"),
    };

    assert!(world.take(AGENT)[0].starts_with("ACK "));
    let bye = hang_up(&mut world, &placed);
    assert!(bye.starts_with("BYE "), "{bye}");
    world.agent_answers(&bye, 200, "OK");
    assert_eq!(
        events(&mut world),
        vec![CoreEvent::Ended {
            dialog,
            call: Some(placed.call),
            by_peer: false
        }]
    );
    let closed: Vec<u16> = world
        .media()
        .into_iter()
        .filter_map(|c| match c {
            MediaCommand::Close { port } => Some(port),
            _ => None,
        })
        .collect();
    assert_eq!(closed.len(), 2);
    assert!(closed.contains(&sip_port) && closed.contains(&placed.local_port));
    assert_eq!(world.core.ports.in_use(), 0);
    assert_eq!(world.core.app_calls(), 0);
}

#[test]
fn an_application_call_hung_up_while_ringing_is_cancelled() {
    let mut world = World::new(|_| {});
    let (placed, invite) = ring_alice(&mut world);
    world.agent_answers(&invite, 180, "Ringing");
    let cancel = hang_up(&mut world, &placed);
    assert!(cancel.starts_with("CANCEL "), "{cancel}");
    world.agent_answers(&cancel, 200, "OK");
    world.agent_answers(&invite, 487, "Request Terminated");
    assert!(events(&mut world).contains(&CoreEvent::Failed {
        call: placed.call,
        code: 487
    }));
    assert!(world.media().contains(&MediaCommand::Close {
        port: placed.local_port
    }));
    assert_eq!(world.core.ports.in_use(), 0);
    assert_eq!(world.core.app_calls(), 0);
}

#[test]
fn a_2xx_that_crosses_our_cancel_is_hung_up_and_never_reported_answered() {
    let mut world = World::new(|_| {});
    let (placed, invite) = ring_alice(&mut world);
    world.agent_answers(&invite, 180, "Ringing");
    events(&mut world);
    let cancel = hang_up(&mut world, &placed);
    assert!(cancel.starts_with("CANCEL "), "{cancel}");
    // The softphone answered before the CANCEL reached it: the CANCEL gets 481, the INVITE 200.
    world.agent_answers(&invite, 200, "OK");
    world.agent_answers(&cancel, 481, "Call/Transaction Does Not Exist");
    assert_eq!(
        events(&mut world),
        vec![],
        "a call we gave up is not reported answered"
    );
    let sent = world.take(AGENT);
    assert!(sent.iter().any(|m| m.starts_with("ACK ")), "{sent:?}");
    let bye = sent
        .iter()
        .find(|m| m.starts_with("BYE "))
        .expect("the answered call is ended at once")
        .clone();
    assert!(
        !world
            .media()
            .iter()
            .any(|m| matches!(m, MediaCommand::Bridge { .. })),
        "nothing is bridged to a call being ended"
    );
    world.agent_answers(&bye, 200, "OK");
    assert!(matches!(
        events(&mut world).as_slice(),
        [CoreEvent::Ended { by_peer: false, .. }]
    ));
    assert_eq!(world.core.ports.in_use(), 0);
    assert_eq!(world.core.app_calls(), 0);
}

#[test]
fn an_application_call_to_an_unregistered_user_is_refused_at_once() {
    let mut world = World::new(|_| {});
    let dial = AppDial {
        target: DialTarget::Registered("alice".into()),
        from_user: "claims".into(),
        extra_headers: Vec::new(),
    };
    assert_eq!(
        world.core.dial(world.now, dial),
        Err(DialError::NotRegistered("alice".into()))
    );
    assert_eq!(world.core.ports.in_use(), 0);
}

#[test]
fn an_application_call_nobody_answers_is_cancelled_after_the_answer_timeout() {
    let mut world = World::new(|c| c.agent_answer_timeout = Duration::from_secs(5));
    let (placed, invite) = ring_alice(&mut world);
    world.agent_answers(&invite, 180, "Ringing");
    world.advance(Duration::from_secs(4));
    assert!(world.take(AGENT).is_empty(), "still ringing");
    world.advance(Duration::from_secs(1));
    let cancel = world.take(AGENT).remove(0);
    assert!(cancel.starts_with("CANCEL "), "{cancel}");
    world.agent_answers(&cancel, 200, "OK");
    world.agent_answers(&invite, 487, "Request Terminated");
    assert!(events(&mut world).contains(&CoreEvent::Failed {
        call: placed.call,
        code: 487
    }));
    assert_eq!(world.core.ports.in_use(), 0);
}

fn incoming(world: &mut World) -> Vec<(ServerTxId, String, String)> {
    events(world)
        .into_iter()
        .filter_map(|e| match e {
            CoreEvent::Incoming {
                incoming,
                interaction,
                caller,
                ..
            } => Some((incoming, interaction, caller)),
            _ => None,
        })
        .collect()
}

#[test]
fn an_invite_naming_an_interaction_goes_to_the_application() {
    let mut world = World::new(|_| {});
    // Refused: the application says why, in the status and in a Reason header.
    world.trunk_invite("join-1", "X-Interaction-Id: i-42\r\n");
    let calls = incoming(&mut world);
    assert_eq!(calls.len(), 1);
    let (tx, interaction, caller) = calls[0].clone();
    assert_eq!(
        (interaction.as_str(), caller.as_str()),
        ("i-42", "+15551234")
    );
    world
        .core
        .reject_incoming(world.now, tx, 480, "Interaction Closed");
    world.collect();
    let refused = world.take(TRUNK).pop().unwrap();
    assert!(
        refused.starts_with("SIP/2.0 480 Interaction Closed"),
        "{refused}"
    );
    assert!(refused.contains("Reason: SIP;cause=480;text=\"Interaction Closed\""));
    assert_eq!(world.core.ports.in_use(), 0);

    // User-to-User in hex names it too; accepted, the call is answered and bridged locally.
    let uui = format!("User-to-User: {};encoding=hex\r\n", hex::encode("i-42"));
    world.trunk_invite("join-2", &uui);
    let (tx, interaction, _) = incoming(&mut world).remove(0);
    assert_eq!(interaction, "i-42");
    world.take(TRUNK);
    world.media();
    let (placed, codec) = world.core.accept_incoming(world.now, tx).expect("accepted");
    world.collect();
    let ok = world.take(TRUNK).pop().unwrap();
    assert!(ok.starts_with("SIP/2.0 200 "), "{ok}");
    assert_eq!(codec, sdp::Codec::Pcma, "the trunk offered PCMA");
    let media = world.media();
    assert!(media.contains(&MediaCommand::Open {
        port: placed.local_port,
        remote: None,
        signalling: None,
    }));
    assert!(media.iter().any(|m| matches!(m,
        MediaCommand::Bridge { a, .. } if *a == placed.local_port)));
    assert_eq!(world.core.app_calls(), 1);
}

#[test]
fn an_incoming_call_the_application_leaves_unanswered_gets_480() {
    let mut world = World::new(|c| c.agent_answer_timeout = Duration::from_secs(5));
    world.trunk_invite("join-3", "X-Interaction-Id: i-42\r\n");
    assert_eq!(incoming(&mut world).len(), 1);
    world.take(TRUNK);
    world.advance(Duration::from_secs(5));
    let refused = world.take(TRUNK).pop().unwrap();
    assert!(refused.starts_with("SIP/2.0 480 No Answer"), "{refused}");
    assert_eq!(world.core.ports.in_use(), 0);
}
