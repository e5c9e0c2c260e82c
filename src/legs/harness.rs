//! The gateway's call path in one process, on one virtual clock: a SIP user-agent core, the
//! call driver and one Interaction, wired the way the SIP task and the leg shell wire them,
//! with a scripted phone on the far side of the SIP core and fake WebRTC peers. Like
//! quinn-proto's test `Pair`, it moves every datagram, event and operation between the parts
//! until nothing moves, and advances time only to the next deadline any of them asked for.
//!
//! Everything that crosses a boundary is logged in order ([`Entry`]), so a run can be compared
//! with another: the cores draw their randomness from the seed they were built with and read
//! no clock, so the same seed and the same script give the same log.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::json;

use super::driver::{DialTo, Driver, Op, Outcome, PeerEvent, ReportError};
use crate::bridge::{
    Action, Command, Customer, Event, Interaction, InteractionId, JoinSecret, Party, Rules, Time,
};
use crate::config::{RegistrarConfig, TrunkConfig};
use crate::media::ports::PortPool;
use crate::sip::core::{AppDial, CoreConfig, CoreEvent, DialTarget, SipCore};
use crate::sip::driver::{ForCalls, IncomingEvent, for_calls};
use crate::sip::ids::Ids;
use crate::sip::peer::Peer;
use crate::sip::registrar::Registrar;
use crate::sip::wire::parse_datagram;

/// The gateway's SIP address.
pub const GATEWAY: &str = "127.0.0.1:5060";
/// The customer's phone, behind a configured trunk (so its caller id is vouched for).
pub const PHONE: &str = "127.0.0.1:5070";
/// The chat's customer number, which the phone calls from.
pub const CUSTOMER_NUMBER: &str = "+15550100";
/// The Interaction's wall clock at the virtual start.
const EPOCH: Time = Time(1_700_000_000_000);

/// What the phone offers: PCMU, PCMA and telephone-events.
const PHONE_OFFER: &str = "v=0\r\no=phone 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n\
    t=0 0\r\nm=audio 6000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
    a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n";

/// One thing that crossed a boundary, at a virtual time since the start.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// A SIP datagram, as bytes on the wire.
    Sip {
        at: Duration,
        from: SocketAddr,
        to: SocketAddr,
        bytes: Vec<u8>,
    },
    /// What the Interaction published.
    Event(Event),
    /// What the Interaction asked of the call driver.
    Action(Action),
    /// An operation the call driver asked for (reports to the Interaction included).
    Op { at: Duration, op: String },
    /// What the SIP core asked of the media engine.
    Media { at: Duration, command: String },
}

/// The customer's phone: SIPp-like, it sends scripted requests and answers what the gateway
/// sends with fixed rules (ACK a 2xx to its INVITE, 200 a BYE).
pub struct Phone {
    pub addr: SocketAddr,
    /// Every message the gateway sent it, as text.
    pub received: Vec<String>,
    /// Requests and responses waiting to go to the gateway.
    outbox: VecDeque<String>,
}

/// The core, the driver and the Interaction, and what connects them. See the module docs.
pub struct World {
    start: Instant,
    pub now: Instant,
    pub core: SipCore,
    pub driver: Driver<u32>,
    pub it: Interaction,
    pub phone: Phone,
    pub log: Vec<Entry>,
    /// Peers the fake WebRTC service created, and the ones it closed.
    pub peers_created: u32,
    pub peers_closed: Vec<u32>,
    /// Peer events waiting to be delivered (a peer connects once its answer is applied).
    peer_events: VecDeque<PeerEvent<u32>>,
    gateway: SocketAddr,
}

/// The service's rules: video allowed, nothing dialled on its own.
pub fn rules() -> Rules {
    Rules {
        service: "claims".into(),
        video_allowed: true,
        auto_dial: false,
        auto_dial_delay: Duration::ZERO,
        inactivity_timeout: Duration::from_secs(600),
        max_message_bytes: 65536,
        teardown_timeout: Duration::from_secs(32),
        call_request_timeout: Duration::from_secs(60),
        mask_dtmf: false,
        join_secret: JoinSecret::new(b"the harness join key"),
        dial_plan: Default::default(),
    }
}

/// A SIP core at [`GATEWAY`] that trusts [`PHONE`] as a trunk, every random choice from `seed`.
fn core(seed: u64, now: Instant) -> SipCore {
    let mut ids = Ids::seeded(seed);
    let registrar = Registrar::new(&RegistrarConfig::default(), now, ids.bytes());
    let config = CoreConfig {
        trunks: vec![TrunkConfig {
            name: "carrier".into(),
            addresses: vec![PHONE.into()],
            ..TrunkConfig::default()
        }],
        ..crate::sip::core::tests::config(10, Duration::ZERO)
    };
    SipCore::with_ids(config, registrar, PortPool::new(30000, 30100), ids)
}

/// The first line starting with `name` (e.g. `"To:"`), or an empty string.
pub fn header<'a>(message: &'a str, name: &str) -> &'a str {
    message
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_default()
}

impl Phone {
    /// Answers what the gateway sent: a 2xx to the INVITE is ACKed, a BYE gets 200.
    fn receive(&mut self, text: String) {
        let cseq = header(&text, "CSeq:");
        if text.starts_with("SIP/2.0 200") && cseq.ends_with("INVITE") {
            let contact = header(&text, "Contact:");
            let target = contact
                .split('<')
                .nth(1)
                .and_then(|c| c.split('>').next())
                .unwrap_or("sip:tandem@127.0.0.1:5060");
            let number = cseq
                .trim_start_matches("CSeq:")
                .split_whitespace()
                .next()
                .unwrap_or("1");
            let ack = format!(
                "ACK {target} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch=z9hG4bK-ack{number}\r\n\
                 Max-Forwards: 70\r\n{}\r\n{}\r\n{}\r\nCSeq: {number} ACK\r\n\
                 Content-Length: 0\r\n\r\n",
                self.addr,
                header(&text, "From:"),
                header(&text, "To:"),
                header(&text, "Call-ID:"),
            );
            self.outbox.push_back(ack);
        } else if text.starts_with("BYE ") {
            let copied = ["Via:", "From:", "To:", "Call-ID:", "CSeq:"]
                .map(|h| header(&text, h))
                .join("\r\n");
            self.outbox.push_back(format!(
                "SIP/2.0 200 OK\r\n{copied}\r\nContent-Length: 0\r\n\r\n"
            ));
        }
        self.received.push(text);
    }

    /// The gateway's status codes, in order (requests left out).
    pub fn statuses(&self) -> Vec<u16> {
        self.received
            .iter()
            .filter_map(|m| m.strip_prefix("SIP/2.0 "))
            .filter_map(|m| m.get(..3)?.parse().ok())
            .collect()
    }
}

impl World {
    /// A queued chat of [`CUSTOMER_NUMBER`]'s customer, and a gateway built from `seed`.
    pub fn new(seed: u64) -> World {
        let start = Instant::now();
        let customer = Customer {
            device: "dev-1".into(),
            name: Some("Carol".into()),
            phone: Some(CUSTOMER_NUMBER.into()),
        };
        let id = InteractionId::from("i-1");
        let it = Interaction::new(EPOCH, id, rules(), customer, json!({"policy": "P-1"}));
        let mut world = World {
            start,
            now: start,
            core: core(seed, start),
            driver: Driver::new(vec!["stun:stun.example.net".into()]),
            it,
            phone: Phone {
                addr: PHONE.parse().unwrap(),
                received: Vec::new(),
                outbox: VecDeque::new(),
            },
            log: Vec::new(),
            peers_created: 0,
            peers_closed: Vec::new(),
            peer_events: VecDeque::new(),
            gateway: GATEWAY.parse().unwrap(),
        };
        world.settle();
        world
    }

    fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// The Interaction's clock: wall time, moving with the virtual one.
    pub fn time(&self) -> Time {
        EPOCH + self.elapsed()
    }

    pub fn id(&self) -> InteractionId {
        self.it.id().clone()
    }

    /// A party's command, as the API would deliver it; then everything settles.
    pub fn command(&mut self, by: Party, command: Command) -> Result<(), crate::bridge::RuleError> {
        let result = self.it.handle_command(self.time(), &by, command);
        self.settle();
        result.map(|_| ())
    }

    /// The phone sends `text` to the gateway; then everything settles.
    pub fn phone_sends(&mut self, text: String) {
        self.phone.outbox.push_back(text);
        self.settle();
    }

    /// An INVITE from the customer's number naming the interaction, as a trunk sends it.
    pub fn phone_invite(&self, call_id: &str) -> String {
        let body = PHONE_OFFER;
        format!(
            "INVITE sip:+15550199@127.0.0.1:5060 SIP/2.0\r\n\
             Via: SIP/2.0/UDP {PHONE};branch=z9hG4bK-{call_id}\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:{CUSTOMER_NUMBER}@{PHONE}>;tag=phone-{call_id}\r\n\
             To: <sip:+15550199@127.0.0.1>\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: 1 INVITE\r\n\
             Contact: <sip:{CUSTOMER_NUMBER}@{PHONE}>\r\n\
             X-Interaction-Id: {}\r\n\
             Content-Type: application/sdp\r\n\
             Content-Length: {}\r\n\r\n{body}",
            self.it.id(),
            body.len()
        )
    }

    /// Moves datagrams, events and operations between the parts until nothing moves.
    pub fn settle(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            while let Some(text) = self.phone.outbox.pop_front() {
                moved = true;
                self.log_sip(self.phone.addr, self.gateway, text.as_bytes().to_vec());
                let message = parse_datagram(text.as_bytes()).expect("the phone writes SIP");
                self.core
                    .handle_message(self.now, message, Peer::udp(self.phone.addr));
            }
            while let Some(t) = self.core.poll_transmit() {
                moved = true;
                assert_eq!(t.to.addr, self.phone.addr, "only the phone is out there");
                self.log_sip(self.gateway, t.to.addr, t.payload.to_vec());
                let text = String::from_utf8(t.payload.to_vec()).expect("SIP is text");
                self.phone.receive(text);
            }
            while let Some(command) = self.core.poll_media() {
                let at = self.elapsed();
                let command = format!("{command:?}");
                self.log.push(Entry::Media { at, command });
            }
            while let Some(event) = self.core.poll_event() {
                moved = true;
                self.core_event(event);
            }
            while let Some(event) = self.peer_events.pop_front() {
                moved = true;
                self.driver.handle_peer_event(event);
            }
            while let Some(op) = self.driver.poll_op() {
                moved = true;
                let at = self.elapsed();
                self.log.push(Entry::Op {
                    at,
                    op: format!("{op:?}"),
                });
                if let Some(outcome) = self.carry_out(op) {
                    self.driver.handle_outcome(outcome);
                }
            }
            while let Some(event) = self.it.poll_event() {
                moved = true;
                self.log.push(Entry::Event(event));
            }
            while let Some(action) = self.it.poll_action() {
                moved = true;
                self.log.push(Entry::Action(action.clone()));
                self.driver.handle_action(self.id(), action);
            }
            if !moved {
                return;
            }
        }
        panic!("the parts never settle");
    }

    /// Runs every part's timers up to `by` from now, one deadline at a time.
    pub fn advance(&mut self, by: Duration) {
        let until = self.now + by;
        self.settle();
        for _ in 0..10_000 {
            let interaction = self.it.poll_timeout().map(|t| self.start + t.since(EPOCH));
            let next = [self.core.poll_timeout(), interaction]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(at) if at <= until => {
                    self.now = self.now.max(at);
                    self.core.handle_timeout(self.now);
                    let time = self.time();
                    self.it.handle_timeout(time);
                    self.settle();
                }
                _ => break,
            }
        }
        self.now = until;
    }

    fn log_sip(&mut self, from: SocketAddr, to: SocketAddr, bytes: Vec<u8>) {
        let at = self.elapsed();
        self.log.push(Entry::Sip {
            at,
            from,
            to,
            bytes,
        });
    }

    /// What the SIP task does with a core event (the same translation): calls coming in and
    /// the application calls' events go to the driver.
    fn core_event(&mut self, event: CoreEvent) {
        match for_calls(&self.core, event) {
            Some(ForCalls::Incoming(IncomingEvent::Call(call))) => {
                self.driver.handle_incoming(call)
            }
            Some(ForCalls::Incoming(IncomingEvent::ServiceCall {
                incoming,
                number,
                caller,
            })) => self.driver.handle_service_call(incoming, &number, &caller),
            Some(ForCalls::Incoming(IncomingEvent::Cancelled(incoming))) => {
                self.driver.handle_cancelled(incoming)
            }
            Some(ForCalls::Call(_, event)) => self.driver.handle_sip(event),
            None => {}
        }
    }

    /// What the leg shell does with an operation, with the real SIP core and fake peers.
    fn carry_out(&mut self, op: Op<u32>) -> Option<Outcome<u32>> {
        let media = |port: u16| SocketAddr::new(self.gateway.ip(), port);
        Some(match op {
            Op::CreatePeer { id, side, .. } => {
                self.peers_created += 1;
                let peer = self.peers_created;
                let result = Ok((peer, format!("v=0\r\no=- {peer} 1 IN IP4 127.0.0.1\r\n")));
                Outcome::PeerCreated { id, side, result }
            }
            // The client's answer is applied, and its ICE checks succeed.
            Op::ApplyAnswer { id, side, peer, .. } => {
                self.peer_events.push_back(PeerEvent::Connected(peer));
                Outcome::AnswerApplied {
                    id,
                    side,
                    result: Ok(()),
                }
            }
            Op::SetVideo { id, side, peer, on } => {
                let result = Ok(format!(
                    "v=0\r\no=- {peer} 2 IN IP4 127.0.0.1\r\nvideo {on}\r\n"
                ));
                Outcome::VideoOffered { id, side, result }
            }
            Op::Link { id, .. } | Op::BridgeRtp { id, .. } => {
                Outcome::Joined { id, result: Ok(()) }
            }
            Op::BridgeCalls {
                id,
                customer,
                agent,
            } => {
                let result = self
                    .core
                    .bridge_app_calls(customer, agent)
                    .map_err(Into::into);
                Outcome::Joined { id, result }
            }
            Op::ClosePeer(peer) => {
                self.peers_closed.push(peer);
                return None;
            }
            Op::Dial {
                id,
                side,
                to,
                service,
            } => {
                let number = match to {
                    DialTo::Number(number) => number,
                    DialTo::Softphone(agent) | DialTo::Mobile(agent) => agent.0,
                };
                let uri = rsipstack::sip::parse_uri(&format!("sip:{number}@{PHONE}"))
                    .expect("a test number");
                let dial = AppDial {
                    target: DialTarget::Uri {
                        uri,
                        via: Peer::udp(self.phone.addr),
                    },
                    from_user: service.clone(),
                    extra_headers: super::service_headers(&id, &service),
                };
                let result = self
                    .core
                    .dial(self.now, dial)
                    .map(|placed| (placed.call, media(placed.local_port)))
                    .map_err(Into::into);
                Outcome::Dialled { id, side, result }
            }
            Op::Hangup(call) => {
                self.core.hangup_app_call(self.now, call);
                return None;
            }
            Op::Answer { id, incoming } => {
                let result = self
                    .core
                    .accept_incoming(self.now, incoming)
                    .map(|(placed, codec)| (placed.call, media(placed.local_port), codec))
                    .map_err(Into::into);
                Outcome::Answered { id, result }
            }
            Op::Reject {
                incoming,
                code,
                reason,
            } => {
                self.core.reject_incoming(self.now, incoming, code, &reason);
                return None;
            }
            // Nothing records here.
            Op::Record { id, .. } => Outcome::Recorded { id, file: None },
            Op::Report { id, by, command } => {
                let time = self.time();
                match self.it.handle_command(time, &by, command.clone()) {
                    Ok(_) => return None,
                    Err(rule) => {
                        let error = ReportError::Rule(rule);
                        Outcome::ReportRefused { id, command, error }
                    }
                }
            }
            // One interaction, opened by the test: no service numbers here.
            Op::Open { held, number, .. } => Outcome::Opened {
                held,
                result: Err(super::driver::LegError::NoService(number)),
            },
        })
    }

    /// The Interaction's events so far, in order.
    pub fn events(&self) -> Vec<&Event> {
        self.log
            .iter()
            .filter_map(|e| match e {
                Entry::Event(event) => Some(event),
                _ => None,
            })
            .collect()
    }
}
