//! The user-agent core on a virtual clock: a scripted phone talks to it through parsed bytes,
//! and two cores call each other over an in-process network.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::*;
use crate::config::{RegistrarConfig, TrunkConfig};
use crate::sip::wire::parse_datagram;

const PHONE: &str = "127.0.0.1:5070";
const GATEWAY: &str = "127.0.0.1:5060";

/// The core configuration of the sans-IO tests; a test changes what it needs with
/// `CoreConfig { .., ..config(n, ring) }`.
pub(crate) fn config(max_calls: usize, echo_ring: Duration) -> CoreConfig {
    CoreConfig {
        timers: TimerConfig::default(),
        advertised: GATEWAY.parse().unwrap(),
        net: NetSettings::default(),
        domain: "127.0.0.1".into(),
        user_agent: "Tandem-test".into(),
        max_calls,
        retry_after_s: 7,
        echo_ring,
        echo: true,
        invites: InviteLimits::default(),
        accounts: HashSet::from(["alice".to_string()]),
        trunks: Vec::new(),
        agent_answer_timeout: Duration::from_secs(30),
        min_session_expires: 90,
        record: false,
        service_numbers: HashSet::new(),
        service_call_hold: Duration::from_secs(330),
    }
}

pub(super) fn core(max_calls: usize, echo_ring: Duration, now: Instant) -> SipCore {
    let registrar = Registrar::with_random_secret(&RegistrarConfig::default(), now);
    SipCore::new(
        config(max_calls, echo_ring),
        registrar,
        PortPool::new(30000, 30100),
    )
}

pub(super) const OFFER: &str = "v=0\r\no=phone 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
    m=audio 6000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
    a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n";

/// A scripted phone that writes requests as text and reads what the core sends back.
pub(super) struct Phone {
    pub(super) core: SipCore,
    pub(super) now: Instant,
    pub(super) call_id: String,
}

impl Phone {
    pub(super) fn new(core: SipCore, now: Instant) -> Phone {
        Phone {
            core,
            now,
            call_id: "call-1".into(),
        }
    }

    pub(super) fn send(&mut self, text: &str) {
        let message = parse_datagram(text.as_bytes()).expect("test request parses");
        self.core
            .handle_message(self.now, message, Peer::udp(PHONE.parse().unwrap()));
    }

    /// A request inside the dialog the gateway answered with `to_tag`, sent to its Contact.
    pub(super) fn in_dialog(
        &self,
        method: &str,
        branch: &str,
        cseq: u32,
        to_tag: &str,
        extra: &str,
        body: &str,
    ) -> String {
        let contact = "sip:tandem@127.0.0.1:5060";
        self.request(method, contact, branch, cseq, Some(to_tag), extra, body)
    }

    // Every argument is a different header of the scripted request; a builder would hide them.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn request(
        &self,
        method: &str,
        uri: &str,
        branch: &str,
        cseq: u32,
        to_tag: Option<&str>,
        extra: &str,
        body: &str,
    ) -> String {
        let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
        let body_headers = if body.is_empty() {
            String::new()
        } else {
            "Content-Type: application/sdp\r\n".to_string()
        };
        format!(
            "{method} {uri} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {PHONE};branch=z9hG4bK{branch}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:phone@127.0.0.1>;tag=ph\r\n\
             To: <sip:echo@127.0.0.1>{to_tag}\r\n\
             Call-ID: {}\r\n\
             CSeq: {cseq} {method}\r\n\
             Contact: <sip:phone@{PHONE}>\r\n\
             {extra}{body_headers}Content-Length: {}\r\n\r\n{body}",
            self.call_id,
            body.len()
        )
    }

    /// Everything the core sent since the last call, as text.
    pub(super) fn received(&mut self) -> Vec<String> {
        std::iter::from_fn(|| self.core.poll_transmit())
            .map(|t| String::from_utf8(t.payload.to_vec()).unwrap())
            .collect()
    }

    pub(super) fn media(&mut self) -> Vec<MediaCommand> {
        std::iter::from_fn(|| self.core.poll_media()).collect()
    }

    pub(super) fn statuses(&mut self) -> Vec<u16> {
        self.received()
            .iter()
            .map(|m| m[8..11].parse().expect("a response"))
            .collect()
    }

    pub(super) fn advance(&mut self, by: Duration) -> Vec<String> {
        let end = self.now + by;
        let mut out = Vec::new();
        while let Some(at) = self.core.poll_timeout() {
            if at > end {
                break;
            }
            self.now = at.max(self.now);
            self.core.handle_timeout(self.now);
            out.extend(self.received());
        }
        self.now = end;
        out
    }
}

pub(super) fn to_tag(response: &str) -> String {
    let line = response.lines().find(|l| l.starts_with("To:")).unwrap();
    line.split(";tag=").nth(1).unwrap().trim().to_string()
}

/// INVITE → 200 (echo answers at once: no 100, no 180); ACK. Returns the gateway's tag.
pub(super) fn establish(phone: &mut Phone) -> String {
    let invite = phone.request("INVITE", "sip:echo@127.0.0.1", "inv1", 1, None, "", OFFER);
    phone.send(&invite);
    let got = phone.received();
    let statuses: Vec<&str> = got.iter().map(|m| &m[8..11]).collect();
    assert_eq!(statuses, vec!["200"]);
    let ok = &got[0];
    assert!(ok.contains("Content-Type: application/sdp"));
    assert!(
        ok.contains("a=rtpmap:0 PCMU/8000"),
        "answer picks the offer's first codec: {ok}"
    );
    assert!(ok.contains("Contact: <sip:tandem@127.0.0.1:5060>"));
    let tag = to_tag(ok);
    let ack = phone.in_dialog("ACK", "ack1", 1, &tag, "", "");
    phone.send(&ack);
    tag
}

#[test]
fn echo_answers_and_holds_the_dialog_until_bye() {
    let now = Instant::now();
    let mut phone = Phone::new(core(10, Duration::ZERO, now), now);
    let tag = establish(&mut phone);
    assert_eq!(phone.core.stats().calls, 1);
    let port = match phone.media().as_slice() {
        [
            MediaCommand::Open {
                port,
                remote,
                signalling,
            },
            MediaCommand::Echo { port: echo },
            MediaCommand::DetectDtmf {
                port: dtmf,
                payload_type: Some(101),
            },
        ] if port == echo && port == dtmf => {
            assert_eq!(
                *remote,
                Some("127.0.0.1:6000".parse().unwrap()),
                "the offer's address"
            );
            assert_eq!(
                *signalling,
                Some(PHONE.parse().unwrap()),
                "where the offer came from"
            );
            *port
        }
        other => panic!("unexpected media commands {other:?}"),
    };
    assert!(
        phone.advance(Duration::from_secs(60)).is_empty(),
        "no 200 retransmission after the ACK"
    );

    let bye = phone.in_dialog("BYE", "bye1", 2, &tag, "", "");
    phone.send(&bye);
    assert_eq!(phone.statuses(), vec![200]);
    assert_eq!(phone.media(), vec![MediaCommand::Close { port }]);
    assert_eq!(phone.core.stats().media_legs, 0);
    assert_eq!(phone.core.stats().calls, 0);
    assert_eq!(
        phone.core.ports.in_use(),
        0,
        "the RTP port went back to the pool"
    );
}

#[test]
fn the_200_is_retransmitted_until_the_ack_and_then_the_call_is_ended() {
    let now = Instant::now();
    let mut phone = Phone::new(core(10, Duration::ZERO, now), now);
    let invite = phone.request("INVITE", "sip:echo@127.0.0.1", "inv2", 1, None, "", OFFER);
    phone.send(&invite);
    phone.received();
    let start = phone.now;
    let mut at = Vec::new();
    let mut bye = None;
    let end = start + Duration::from_secs(33);
    while let Some(deadline) = phone.core.poll_timeout() {
        if deadline > end {
            break;
        }
        phone.now = deadline;
        phone.core.handle_timeout(deadline);
        for m in phone.received() {
            if m.starts_with("SIP/2.0 200") {
                at.push((phone.now - start).as_millis());
            } else if m.starts_with("BYE ") {
                bye.get_or_insert(phone.now - start);
            }
        }
    }
    // RFC 3261 §13.3.1.4: T1, doubling to T2, for 64·T1; then BYE.
    assert_eq!(&at[..5], &[500, 1500, 3500, 7500, 11_500]);
    assert_eq!(bye, Some(Duration::from_secs(32)));
}

#[test]
fn over_the_call_limit_new_invites_get_503_and_existing_calls_carry_on() {
    let now = Instant::now();
    let mut phone = Phone::new(core(1, Duration::ZERO, now), now);
    let tag = establish(&mut phone);
    phone.call_id = "call-2".into();
    let second = phone.request("INVITE", "sip:echo@127.0.0.1", "inv3", 1, None, "", OFFER);
    phone.send(&second);
    let got = phone.received();
    assert_eq!(got.len(), 1);
    assert!(got[0].starts_with("SIP/2.0 503 "));
    assert!(got[0].contains("Retry-After: 7\r\n"));
    assert_eq!(phone.core.stats().rejected_over_limit, 1);

    phone.call_id = "call-1".into();
    let bye = phone.in_dialog("BYE", "bye3", 2, &tag, "", "");
    phone.send(&bye);
    assert_eq!(phone.statuses(), vec![200], "the admitted call still works");
}

#[test]
fn options_lists_what_we_support() {
    let now = Instant::now();
    let mut phone = Phone::new(core(10, Duration::ZERO, now), now);
    let options = phone.request("OPTIONS", "sip:127.0.0.1", "opt", 1, None, "", "");
    phone.send(&options);
    let got = phone.received();
    assert!(got[0].starts_with("SIP/2.0 200 OK\r\n"));
    assert!(got[0].contains(&format!("Allow: {ALLOW}\r\n")));
    assert!(got[0].contains("Accept: application/sdp\r\n"));
    assert!(got[0].contains("Supported:"));
}

#[test]
fn unknown_users_get_404_and_unsupported_methods_405() {
    let now = Instant::now();
    let mut phone = Phone::new(core(10, Duration::ZERO, now), now);
    let invite = phone.request("INVITE", "sip:nobody@127.0.0.1", "u1", 1, None, "", OFFER);
    phone.send(&invite);
    assert_eq!(phone.statuses(), vec![404]);
    phone.call_id = "call-x".into();
    let subscribe = phone.request(
        "SUBSCRIBE",
        "sip:echo@127.0.0.1",
        "u2",
        1,
        None,
        "Event: presence\r\n",
        "",
    );
    phone.send(&subscribe);
    let got = phone.received();
    assert!(got[0].starts_with("SIP/2.0 405 "));
    assert!(got[0].contains("Allow: INVITE"));
}

#[test]
fn an_unsupported_required_extension_gets_420() {
    let now = Instant::now();
    let mut phone = Phone::new(core(10, Duration::ZERO, now), now);
    let invite = phone.request(
        "INVITE",
        "sip:echo@127.0.0.1",
        "r1",
        1,
        None,
        "Require: 100rel, foo\r\n",
        OFFER,
    );
    phone.send(&invite);
    let got = phone.received();
    assert!(got[0].starts_with("SIP/2.0 420 "));
    assert!(got[0].contains("Unsupported: 100rel, foo\r\n"));
}

#[test]
fn an_offer_without_audio_gets_488() {
    let now = Instant::now();
    let mut phone = Phone::new(core(10, Duration::ZERO, now), now);
    let video_only = OFFER.replace("m=audio 6000 RTP/AVP 0 8 101", "m=video 6000 RTP/AVP 96");
    let invite = phone.request(
        "INVITE",
        "sip:echo@127.0.0.1",
        "v1",
        1,
        None,
        "",
        &video_only,
    );
    phone.send(&invite);
    assert_eq!(phone.statuses(), vec![488]);
    assert_eq!(phone.core.ports.in_use(), 0);
}

#[test]
fn cancel_while_ringing_ends_the_invite_with_487() {
    let now = Instant::now();
    let mut phone = Phone::new(core(10, Duration::from_secs(5), now), now);
    let invite = phone.request("INVITE", "sip:echo@127.0.0.1", "c1", 1, None, "", OFFER);
    phone.send(&invite);
    assert_eq!(phone.statuses(), vec![180]);
    phone.advance(Duration::from_secs(1));
    let cancel = phone.request("CANCEL", "sip:echo@127.0.0.1", "c1", 1, None, "", "");
    phone.send(&cancel);
    let got = phone.received();
    assert!(got[0].starts_with("SIP/2.0 200 ") && got[0].contains("CSeq: 1 CANCEL"));
    assert!(got[1].starts_with("SIP/2.0 487 ") && got[1].contains("CSeq: 1 INVITE"));
    // Ringing time passes: nothing is answered.
    let later = phone.advance(Duration::from_secs(10));
    assert!(
        later.iter().all(|m| !m.starts_with("SIP/2.0 200")),
        "{later:?}"
    );
    assert_eq!(phone.core.stats().pending_invites, 0);
    assert_eq!(phone.core.ports.in_use(), 0);
}

#[test]
fn a_hold_reinvite_gets_the_matching_direction() {
    let now = Instant::now();
    let mut phone = Phone::new(core(10, Duration::ZERO, now), now);
    let tag = establish(&mut phone);
    let hold = format!("{OFFER}a=sendonly\r\n");
    let reinvite = phone.in_dialog("INVITE", "h1", 2, &tag, "", &hold);
    phone.send(&reinvite);
    let got = phone.received();
    let ok = got
        .iter()
        .find(|m| m.starts_with("SIP/2.0 200"))
        .expect("200 to the re-INVITE");
    assert!(ok.contains("a=recvonly"), "{ok}");
    assert!(!ok.contains("a=sendrecv"));
}

#[test]
fn in_dialog_requests_for_unknown_dialogs_and_old_cseqs_are_refused() {
    let now = Instant::now();
    let mut phone = Phone::new(core(10, Duration::ZERO, now), now);
    let bye = phone.in_dialog("BYE", "x1", 2, "nope", "", "");
    phone.send(&bye);
    assert_eq!(phone.statuses(), vec![481]);

    let tag = establish(&mut phone);
    let info = phone.in_dialog("INFO", "x2", 1, &tag, "", "");
    phone.send(&info);
    assert_eq!(
        phone.statuses(),
        vec![500],
        "CSeq 1 is not above the INVITE's"
    );
    let info = phone.in_dialog("INFO", "x3", 5, &tag, "", "");
    phone.send(&info);
    assert_eq!(phone.statuses(), vec![200]);
}

#[test]
fn a_call_whose_media_stops_is_ended_with_bye() {
    let now = Instant::now();
    let mut phone = Phone::new(core(10, Duration::ZERO, now), now);
    establish(&mut phone);
    let port = match phone.media().first() {
        Some(MediaCommand::Open { port, .. }) => *port,
        other => panic!("{other:?}"),
    };
    phone.core.media_inactive(phone.now, port);
    let sent = phone.received();
    assert!(
        sent[0].starts_with("BYE sip:phone@127.0.0.1:5070 SIP/2.0"),
        "{sent:?}"
    );
    let header = |name: &str| {
        sent[0]
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap()
            .to_string()
    };
    let ok = format!(
        "SIP/2.0 200 OK\r\n{}\r\n{}\r\n{}\r\nCall-ID: call-1\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n",
        header("Via:"),
        header("From:"),
        header("To:"),
    );
    phone.send(&ok);
    assert_eq!(phone.media(), vec![MediaCommand::Close { port }]);
    assert_eq!(phone.core.stats().calls, 0);
}

#[test]
fn a_hold_without_media_does_not_count_as_inactivity() {
    let now = Instant::now();
    let mut phone = Phone::new(core(10, Duration::ZERO, now), now);
    let tag = establish(&mut phone);
    phone.media();
    let hold = format!("{OFFER}a=inactive\r\n");
    let reinvite = phone.in_dialog("INVITE", "w1", 2, &tag, "", &hold);
    phone.send(&reinvite);
    let commands = phone.media();
    assert!(
        commands
            .iter()
            .any(|c| matches!(c, MediaCommand::Watch { enabled: false, .. })),
        "{commands:?}"
    );
}

// ----- two cores -----

/// Two cores on one virtual clock; every message crosses as bytes and is parsed again.
struct Net {
    a: SipCore,
    b: SipCore,
    now: Instant,
}

const B_ADDR: &str = "127.0.0.1:5080";

impl Net {
    fn new(now: Instant) -> Net {
        let mut b_config = config(10, Duration::ZERO);
        b_config.advertised = B_ADDR.parse().unwrap();
        let registrar = Registrar::with_random_secret(&RegistrarConfig::default(), now);
        Net {
            a: core(10, Duration::ZERO, now),
            b: SipCore::new(b_config, registrar, PortPool::new(31000, 31100)),
            now,
        }
    }

    /// Delivers messages both ways until the network is quiet.
    fn settle(&mut self) {
        let a_addr: SocketAddr = GATEWAY.parse().unwrap();
        let b_addr: SocketAddr = B_ADDR.parse().unwrap();
        loop {
            let mut moved = false;
            while let Some(t) = self.a.poll_transmit() {
                assert_eq!(t.to.addr, b_addr);
                let m = parse_datagram(&t.payload).unwrap();
                self.b.handle_message(self.now, m, Peer::udp(a_addr));
                moved = true;
            }
            while let Some(t) = self.b.poll_transmit() {
                assert_eq!(t.to.addr, a_addr);
                let m = parse_datagram(&t.payload).unwrap();
                self.a.handle_message(self.now, m, Peer::udp(b_addr));
                moved = true;
            }
            if !moved {
                break;
            }
        }
    }

    fn events(core: &mut SipCore) -> Vec<CoreEvent> {
        std::iter::from_fn(|| core.poll_event()).collect()
    }
}

#[test]
fn one_core_calls_the_others_echo_and_hangs_up() {
    let mut net = Net::new(Instant::now());
    let target = rsipstack::sip::parse_uri("sip:echo@127.0.0.1:5080").unwrap();
    let call = net
        .a
        .call(net.now, target, Peer::udp(B_ADDR.parse().unwrap()), "agent")
        .unwrap();
    net.settle();
    let events = Net::events(&mut net.a);
    let dialog = match events.as_slice() {
        [CoreEvent::Answered { call: c, dialog }] if *c == call => dialog.clone(),
        other => panic!("unexpected events {other:?}"),
    };
    assert_eq!(net.b.stats().calls, 1);

    // Both sides keep quiet once the ACK has arrived.
    net.now += Duration::from_secs(40);
    net.a.handle_timeout(net.now);
    net.b.handle_timeout(net.now);
    net.settle();

    net.a.hangup(net.now, &dialog);
    net.settle();
    assert_eq!(
        Net::events(&mut net.a),
        vec![CoreEvent::Ended {
            dialog: dialog.clone(),
            call: None,
            by_peer: false
        }]
    );
    assert!(matches!(
        Net::events(&mut net.b).as_slice(),
        [CoreEvent::Ended { by_peer: true, .. }]
    ));
    assert_eq!(net.a.stats().calls, 0);
    assert_eq!(net.b.stats().calls, 0);
    assert_eq!(net.a.ports.in_use(), 0);
    assert_eq!(net.b.ports.in_use(), 0);
}

#[test]
fn a_call_to_an_unknown_user_fails_with_its_status() {
    let mut net = Net::new(Instant::now());
    let target = rsipstack::sip::parse_uri("sip:nobody@127.0.0.1:5080").unwrap();
    let call = net
        .a
        .call(net.now, target, Peer::udp(B_ADDR.parse().unwrap()), "agent")
        .unwrap();
    net.settle();
    let events = Net::events(&mut net.a);
    assert_eq!(events.last(), Some(&CoreEvent::Failed { call, code: 404 }));
    assert_eq!(net.a.ports.in_use(), 0);
}

#[test]
fn a_call_nobody_answers_fails_with_408_after_timer_b() {
    let now = Instant::now();
    let mut a = core(10, Duration::ZERO, now);
    let target = rsipstack::sip::parse_uri("sip:echo@127.0.0.1:5099").unwrap();
    let call = a
        .call(
            now,
            target,
            Peer::udp("127.0.0.1:5099".parse().unwrap()),
            "agent",
        )
        .unwrap();
    let mut failed_at = None;
    while let Some(at) = a.poll_timeout() {
        a.handle_timeout(at);
        while a.poll_transmit().is_some() {}
        if let Some(event) = a.poll_event() {
            assert_eq!(event, CoreEvent::Failed { call, code: 408 });
            failed_at = Some(at - now);
        }
    }
    assert_eq!(failed_at, Some(Duration::from_secs(32)), "Timer B is 64·T1");
}

#[test]
fn update_and_info_in_a_dialog_are_answered() {
    let now = Instant::now();
    let mut phone = Phone::new(core(10, Duration::ZERO, now), now);
    let tag = establish(&mut phone);
    let update = phone.in_dialog("UPDATE", "up1", 2, &tag, "", OFFER);
    phone.send(&update);
    let got = phone.received();
    assert!(got[0].starts_with("SIP/2.0 200 "), "{got:?}");
    assert!(
        got[0].contains("application/sdp"),
        "an offer in UPDATE gets an answer"
    );
    let info = phone.in_dialog("INFO", "in1", 3, &tag, "", "");
    phone.send(&info);
    assert_eq!(phone.statuses(), vec![200]);
}

#[test]
fn a_required_session_timer_is_supported() {
    let now = Instant::now();
    let mut phone = Phone::new(core(10, Duration::ZERO, now), now);
    let invite = phone.request(
        "INVITE",
        "sip:echo@127.0.0.1",
        "rt1",
        1,
        None,
        "Require: timer\r\nSession-Expires: 1800\r\n",
        OFFER,
    );
    phone.send(&invite);
    let got = phone.received();
    assert!(got[0].starts_with("SIP/2.0 200 "), "{got:?}");
    assert!(got[0].contains("Session-Expires: 1800;refresher=uac\r\n"));
    assert!(got[0].contains("Supported: timer\r\n"));
}

/// A core that takes calls to the service number +15550100 from the phone, a trunk.
fn service_core(now: Instant, trunk: bool) -> Phone {
    let mut config = config(10, Duration::ZERO);
    config.service_numbers = HashSet::from(["15550100".to_string()]);
    if trunk {
        config.trunks = vec![TrunkConfig {
            name: "carrier".into(),
            addresses: vec![PHONE.into()],
            ..TrunkConfig::default()
        }];
    }
    let registrar = Registrar::with_random_secret(&RegistrarConfig::default(), now);
    let core = SipCore::new(config, registrar, PortPool::new(30000, 30100));
    Phone::new(core, now)
}

fn events(phone: &mut Phone) -> Vec<CoreEvent> {
    std::iter::from_fn(|| phone.core.poll_event()).collect()
}

/// The phone calls `number` with a new INVITE on the call `call_id`.
fn call_number(phone: &mut Phone, number: &str, call_id: &str) {
    let uri = format!("sip:{number}@127.0.0.1");
    let invite = phone.request("INVITE", &uri, call_id, 1, None, "", OFFER);
    phone.send(&invite);
}

#[test]
fn a_trunk_call_to_a_service_number_is_held_ringing_until_the_application_answers() {
    let now = Instant::now();
    let mut phone = service_core(now, true);
    call_number(&mut phone, "+15550100", "s1");
    assert_eq!(phone.statuses(), vec![180]);
    let held = events(&mut phone);
    let [
        CoreEvent::ServiceCall {
            incoming,
            number,
            caller,
        },
    ] = held.as_slice()
    else {
        panic!("{held:?}");
    };
    assert_eq!((number.as_str(), caller.as_str()), ("+15550100", "phone"));
    let incoming = *incoming;
    // Minutes pass (longer than the agent answer timeout of 30 s): a fresh 180 every minute,
    // never a final answer.
    let waited = phone.advance(Duration::from_secs(150));
    let codes: Vec<&str> = waited.iter().map(|m| &m[8..11]).collect();
    assert_eq!(codes, vec!["180", "180"], "{waited:?}");
    assert_eq!(phone.core.stats().pending_invites, 1);
    // The application answers: 200 with SDP, and the ringing stops.
    let (call, _codec) = phone.core.accept_incoming(phone.now, incoming).unwrap();
    let ok = phone.received();
    assert!(
        ok[0].starts_with("SIP/2.0 200 ") && ok[0].contains("m=audio"),
        "{ok:?}"
    );
    let later = phone.advance(Duration::from_secs(1));
    assert!(
        later.iter().all(|m| m.starts_with("SIP/2.0 200")),
        "only 2xx retransmissions"
    );
    phone.core.hangup_app_call(phone.now, call.call);
}

#[test]
fn the_to_user_names_the_service_number_when_the_request_uri_does_not() {
    let now = Instant::now();
    let mut phone = service_core(now, true);
    let invite = phone
        .request("INVITE", "sip:127.0.0.1", "s1", 1, None, "", OFFER)
        .replace("To: <sip:echo@127.0.0.1>", "To: <sip:15550100@127.0.0.1>");
    phone.send(&invite);
    assert_eq!(phone.statuses(), vec![180]);
    assert!(matches!(
        events(&mut phone).as_slice(),
        [CoreEvent::ServiceCall { number, .. }] if number == "15550100"
    ));
}

#[test]
fn a_cancel_while_a_service_call_is_held_is_answered_and_reported() {
    let now = Instant::now();
    let mut phone = service_core(now, true);
    call_number(&mut phone, "+15550100", "s1");
    phone.received();
    let held = events(&mut phone);
    let [CoreEvent::ServiceCall { incoming, .. }] = held.as_slice() else {
        panic!("held");
    };
    let incoming = *incoming;
    phone.advance(Duration::from_secs(70));
    phone.received();
    let cancel = phone.request("CANCEL", "sip:+15550100@127.0.0.1", "s1", 1, None, "", "");
    phone.send(&cancel);
    let got = phone.received();
    assert!(got[0].starts_with("SIP/2.0 200 ") && got[0].contains("CSeq: 1 CANCEL"));
    assert!(got[1].starts_with("SIP/2.0 487 ") && got[1].contains("CSeq: 1 INVITE"));
    assert_eq!(
        events(&mut phone),
        vec![CoreEvent::IncomingCancelled { incoming }]
    );
    // Nothing rings any more, and an answer from the application comes too late.
    let later = phone.advance(Duration::from_secs(120));
    assert!(later.iter().all(|m| !m.contains(" 180 ")), "{later:?}");
    assert!(phone.core.accept_incoming(phone.now, incoming).is_err());
    assert_eq!(phone.core.stats().pending_invites, 0);
    assert_eq!(phone.core.ports.in_use(), 0);
}

#[test]
fn a_service_number_takes_calls_from_trunks_only() {
    let now = Instant::now();
    let mut phone = service_core(now, false);
    call_number(&mut phone, "+15550100", "s1");
    let got = phone.received();
    let refused = got.last().unwrap();
    assert!(
        refused.starts_with("SIP/2.0 403 Service Numbers Take Trunk Calls Only"),
        "{got:?}"
    );
    assert!(
        refused.contains("Reason: SIP;cause=403;text=\"Service Numbers Take Trunk Calls Only\"")
    );
    assert!(events(&mut phone).is_empty());
    assert_eq!(phone.core.ports.in_use(), 0);
    // Another number is simply unknown.
    let mut phone = service_core(now, true);
    call_number(&mut phone, "+15550101", "s2");
    assert_eq!(phone.statuses().last(), Some(&404));
}

#[test]
fn a_held_service_call_is_refused_at_last_if_the_application_never_decides() {
    let now = Instant::now();
    let mut phone = service_core(now, true);
    call_number(&mut phone, "+15550100", "s1");
    phone.received();
    let waited = phone.advance(Duration::from_secs(331));
    assert!(
        waited.iter().any(|m| m.starts_with("SIP/2.0 480 ")),
        "{waited:?}"
    );
    assert_eq!(phone.core.stats().pending_invites, 0);
    assert_eq!(phone.core.ports.in_use(), 0);
}

#[test]
fn an_invite_naming_an_interaction_carries_its_join_token() {
    let now = Instant::now();
    let mut phone = service_core(now, true);
    let extra = "X-Interaction-Id: i-42\r\nX-Interaction-Token: abc123\r\n";
    let invite = phone.request(
        "INVITE",
        "sip:anyone@127.0.0.1",
        "j1",
        1,
        None,
        extra,
        OFFER,
    );
    phone.send(&invite);
    assert!(matches!(
        events(&mut phone).as_slice(),
        [CoreEvent::Incoming { interaction, token: Some(token), .. }]
            if interaction == "i-42" && token == "abc123"
    ));
}
