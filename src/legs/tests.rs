//! The call driver's bookkeeping, in memory: the rig carries out every operation at once with
//! fakes (peers numbered from 1; the customer's phone is call 88, the agent's softphone 77,
//! the agent's mobile 55, an answered incoming call 66) and records what was done.

use std::net::SocketAddr;

use serde_json::{Value, json};

use super::driver::{DialTo, Driver, LegError, Op, Outcome, PeerEvent, ReportError};
use crate::bridge::{
    Action, AgentDevice, AgentId, CallerId, Command, HeldCall, InteractionId, LegId, LegKind,
    LegTarget, Party, RuleError,
};
use crate::rtc::MediaSpec;
use crate::sip::core::{AppLeg, CallRef, CallSource};
use crate::sip::driver::{IncomingCall, SipCallEvent};
use crate::sip::sdp::Codec;
use crate::sip::transaction::ServerTxId;

/// What the fakes were asked to do.
#[derive(Debug, Clone, PartialEq)]
enum Did {
    Create { peer: u32, media: MediaSpec },
    Answer(u32),
    SetVideo(u32, bool),
    Link(u32, u32),
    Bridge(u32, Codec),
    Close(u32),
    Dial(String, String),
    Hangup(u64),
    Accept(u64),
    Reject(u64, u16),
    BridgeCalls(u64, u64),
    Record(AppLeg, AppLeg),
}

struct Rig {
    driver: Driver<u32>,
    id: InteractionId,
    ops: Vec<Did>,
    /// Reports from the system, in order.
    reports: Vec<Command>,
    /// Reports on the customer's behalf.
    by_customer: Vec<Command>,
    next_peer: u32,
    refuse_answers: bool,
    /// The interaction refuses calls that ask to join with this.
    refuse_joins: Option<RuleError>,
}

fn rig() -> Rig {
    Rig {
        driver: Driver::new(vec!["stun:stun.example.net".into()]),
        id: InteractionId::from("i-1"),
        ops: Vec::new(),
        reports: Vec::new(),
        by_customer: Vec::new(),
        next_peer: 0,
        refuse_answers: false,
        refuse_joins: None,
    }
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn alice() -> Party {
    Party::Agent(AgentId::from("alice"))
}

fn answer() -> Value {
    json!({"type": "ANSWER_CALL", "sdp": "v=0"})
}

impl Rig {
    /// Carries out what the driver asks, feeding outcomes back, until it has nothing to do.
    fn run(&mut self) {
        while let Some(op) = self.driver.poll_op() {
            if let Some(outcome) = self.carry_out(op) {
                self.driver.handle_outcome(outcome);
            }
        }
    }

    fn carry_out(&mut self, op: Op<u32>) -> Option<Outcome<u32>> {
        Some(match op {
            Op::CreatePeer { id, side, media } => {
                self.next_peer += 1;
                let peer = self.next_peer;
                self.ops.push(Did::Create { peer, media });
                let result = Ok((peer, format!("offer-{peer}")));
                Outcome::PeerCreated { id, side, result }
            }
            Op::ApplyAnswer { id, side, peer, .. } => {
                self.ops.push(Did::Answer(peer));
                let result = if self.refuse_answers {
                    Err(LegError::Rtc(crate::rtc::RtcError::TooManyPeers))
                } else {
                    Ok(())
                };
                Outcome::AnswerApplied { id, side, result }
            }
            Op::SetVideo { id, side, peer, on } => {
                self.ops.push(Did::SetVideo(peer, on));
                let result = Ok(format!("reoffer-{peer}"));
                Outcome::VideoOffered { id, side, result }
            }
            Op::Link { id, a, b } => {
                self.ops.push(Did::Link(a, b));
                Outcome::Joined { id, result: Ok(()) }
            }
            Op::BridgeRtp {
                id, peer, codec, ..
            } => {
                self.ops.push(Did::Bridge(peer, codec));
                Outcome::Joined { id, result: Ok(()) }
            }
            Op::BridgeCalls {
                id,
                customer,
                agent,
            } => {
                self.ops.push(Did::BridgeCalls(customer.0, agent.0));
                Outcome::Joined { id, result: Ok(()) }
            }
            Op::ClosePeer(peer) => {
                self.ops.push(Did::Close(peer));
                return None;
            }
            Op::Dial {
                id,
                side,
                to,
                service,
            } => {
                let (who, call, port) = match to {
                    DialTo::Number(number) => (number, 88, 30002),
                    DialTo::Softphone(agent) => (agent.0, 77, 30000),
                    DialTo::Mobile(agent) => (format!("mobile of {agent}"), 55, 30006),
                };
                self.ops.push(Did::Dial(who, service));
                let result = Ok((CallRef(call), addr(port)));
                Outcome::Dialled { id, side, result }
            }
            Op::Hangup(call) => {
                self.ops.push(Did::Hangup(call.0));
                return None;
            }
            Op::Answer { id, incoming } => {
                self.ops.push(Did::Accept(incoming.0));
                let result = Ok((CallRef(66), addr(30004), Codec::Pcma));
                Outcome::Answered { id, result }
            }
            Op::Reject { incoming, code, .. } => {
                self.ops.push(Did::Reject(incoming.0, code));
                return None;
            }
            // Only the `claims` service records.
            Op::Record {
                id,
                service,
                leg,
                customer,
                agent,
            } => {
                let file = (service == "claims").then(|| {
                    self.ops.push(Did::Record(customer, agent));
                    format!("{id}-{}.wav", leg.0)
                });
                Outcome::Recorded { id, file }
            }
            Op::Report { id, by, command } => {
                if let (Command::JoinCall { .. }, Some(rule)) = (&command, &self.refuse_joins) {
                    let error = ReportError::Rule(rule.clone());
                    return Some(Outcome::ReportRefused { id, command, error });
                }
                if by == Party::Customer {
                    self.by_customer.push(command);
                } else {
                    self.reports.push(command);
                }
                return None;
            }
            Op::Open { held, number, .. } => {
                let result = match number.as_str() {
                    "+15550100" => Ok(InteractionId::from("i-1")),
                    _ => Err(LegError::NoService(number)),
                };
                Outcome::Opened { held, result }
            }
        })
    }

    fn act(&mut self, action: Action) {
        self.driver.handle_action(self.id.clone(), action);
        self.run();
    }
    fn event(&mut self, event: PeerEvent<u32>) {
        self.driver.handle_peer_event(event);
        self.run();
    }
    fn sip(&mut self, event: SipCallEvent) {
        self.driver.handle_sip(event);
        self.run();
    }
    fn incoming(&mut self, call: IncomingCall) {
        self.driver.handle_incoming(call);
        self.run();
    }
    fn service_call(&mut self, incoming: ServerTxId, number: &str, caller: &str) {
        self.driver.handle_service_call(incoming, number, caller);
        self.run();
    }
    fn cancelled(&mut self, incoming: ServerTxId) {
        self.driver.handle_cancelled(incoming);
        self.run();
    }
    fn start(&mut self, leg: u32, kind: LegKind) {
        self.start_on(leg, kind, AgentDevice::Browser);
    }
    /// The interaction asks for a call to the customer's phone, +15550100.
    fn start_phone(&mut self, leg: u32, device: AgentDevice) {
        self.start_answering(leg, device, None);
    }
    /// The interaction asks for a call on the customer's phone: `answer` names the waiting
    /// call to answer, else the number is dialled.
    fn start_answering(&mut self, leg: u32, device: AgentDevice, answer: Option<HeldCall>) {
        let action = Action::StartLeg {
            leg: LegId(leg),
            kind: LegKind::Voice,
            target: LegTarget::Phone("+15550100".into()),
            service: "claims".into(),
            device,
            agent: Some(AgentId::from("alice")),
            answer,
        };
        self.act(action);
    }
    fn start_on(&mut self, leg: u32, kind: LegKind, device: AgentDevice) {
        let action = Action::StartLeg {
            leg: LegId(leg),
            kind,
            target: LegTarget::App,
            service: "claims".into(),
            device,
            agent: Some(AgentId::from("alice")),
            answer: None,
        };
        self.act(action);
    }
    fn answer_both(&mut self) {
        for from in [Party::Customer, alice()] {
            let data = answer();
            self.act(Action::Signal { from, data });
        }
    }
    fn connect_both(&mut self) {
        for peer in [1, 2] {
            self.event(PeerEvent::Connected(peer));
        }
    }
    fn ops(&self) -> Vec<Did> {
        self.ops.clone()
    }
    fn commands(&self) -> Vec<Command> {
        self.reports.clone()
    }
    /// The offers sent so far: (to, offerVideo, sdp).
    fn offers(&self) -> Vec<(Party, bool, String)> {
        self.commands()
            .into_iter()
            .filter_map(|c| match c {
                Command::SignalTo { to, data } => Some((
                    to,
                    data["offerVideo"].as_bool().unwrap(),
                    data["sdp"].as_str().unwrap().to_string(),
                )),
                _ => None,
            })
            .collect()
    }
    fn ups(&self) -> Vec<u32> {
        self.commands()
            .into_iter()
            .filter_map(|c| match c {
                Command::LegUp { leg } => Some(leg.0),
                _ => None,
            })
            .collect()
    }
    fn released(&self) -> Vec<(u32, String)> {
        self.commands()
            .into_iter()
            .filter_map(|c| match c {
                Command::LegReleased { leg, reason } => Some((leg.0, reason.unwrap())),
                _ => None,
            })
            .collect()
    }

    /// `from`'s peer answers and connects while the SIP side still rings (`ringing`
    /// names it), then SIP call `call` answers with `codec`: only then is leg 1 bridged
    /// and up.
    fn up_once_sip_answers(&mut self, from: Party, ringing: &str, call: u64, codec: Codec) {
        self.act(Action::Signal {
            from,
            data: answer(),
        });
        self.event(PeerEvent::Connected(1));
        assert!(self.ups().is_empty(), "{ringing}");
        self.sip(SipCallEvent::Answered {
            call: CallRef(call),
            codec,
        });
        assert!(self.ops().contains(&Did::Bridge(1, codec)));
        assert_eq!(self.ups(), vec![1]);
    }
}

#[test]
fn a_voice_call_offers_both_sides_and_is_up_once_both_connect() {
    let mut r = rig();
    r.start(1, LegKind::Voice);
    assert_eq!(
        r.offers(),
        vec![
            (Party::Customer, false, "offer-1".into()),
            (alice(), false, "offer-2".into())
        ]
    );
    let first = &r.commands()[0];
    assert!(
        matches!(first, Command::SignalTo { data, .. } if data["iceServers"][0] == "stun:stun.example.net")
    );
    r.answer_both();
    r.event(PeerEvent::Connected(1));
    assert!(r.ups().is_empty(), "the agent's side is not connected yet");
    r.event(PeerEvent::Connected(2));
    assert!(r.ops().contains(&Did::Link(1, 2)));
    assert_eq!(r.ups(), vec![1]);
    assert_eq!(r.driver.calls(), 1);
}

#[test]
fn video_allowed_while_offers_are_out_waits_for_the_answers() {
    let mut r = rig();
    r.start(1, LegKind::Voice);
    r.start(2, LegKind::Video);
    assert!(
        !r.ops().iter().any(|o| matches!(o, Did::SetVideo(..))),
        "no second offer while the first is unanswered"
    );
    r.answer_both();
    assert!(r.ops().contains(&Did::SetVideo(1, true)));
    assert!(r.ops().contains(&Did::SetVideo(2, true)));
    let video_offers: Vec<_> = r.offers().into_iter().filter(|o| o.1).collect();
    assert_eq!(video_offers.len(), 2);
    r.connect_both();
    assert_eq!(
        r.ups(),
        vec![1],
        "video is up only once its offers are answered"
    );
    r.answer_both();
    assert_eq!(r.ups(), vec![1, 2]);
}

#[test]
fn dropping_video_renegotiates_and_keeps_the_call() {
    let mut r = rig();
    r.start(1, LegKind::Voice);
    r.answer_both();
    r.connect_both();
    r.start(2, LegKind::Video);
    r.answer_both();
    assert_eq!(r.ups(), vec![1, 2]);
    r.act(Action::ReleaseLeg { leg: LegId(2) });
    assert!(r.ops().contains(&Did::SetVideo(1, false)));
    assert!(r.ops().contains(&Did::SetVideo(2, false)));
    assert_eq!(r.released(), vec![(2, "released".into())]);
    assert!(!r.ops().iter().any(|o| matches!(o, Did::Close(_))));
    assert_eq!(r.driver.calls(), 1);
}

#[test]
fn a_closed_peer_ends_the_whole_call_with_its_reason() {
    let mut r = rig();
    r.start(1, LegKind::Voice);
    r.answer_both();
    r.connect_both();
    r.start(2, LegKind::Video);
    let reason = "ICE consent lost".to_string();
    r.event(PeerEvent::Closed { peer: 1, reason });
    assert!(r.ops().contains(&Did::Close(1)) && r.ops().contains(&Did::Close(2)));
    assert_eq!(
        r.released(),
        vec![
            (1, "ICE consent lost".into()),
            (2, "ICE consent lost".into())
        ]
    );
    assert_eq!(r.driver.calls(), 0);
    // A late event for a peer already gone changes nothing.
    r.event(PeerEvent::Connected(2));
    assert_eq!(r.ups(), vec![1]);
}

#[test]
fn every_release_is_answered_even_for_unknown_legs() {
    let mut r = rig();
    r.act(Action::ReleaseLeg { leg: LegId(7) });
    assert_eq!(r.released(), vec![(7, "released".into())]);
    r.start(1, LegKind::Voice);
    r.act(Action::ReleaseLeg { leg: LegId(1) });
    assert!(r.ops().contains(&Did::Close(1)) && r.ops().contains(&Did::Close(2)));
    assert_eq!(r.released().len(), 2);
    assert_eq!(r.driver.calls(), 0);
}

#[test]
fn answers_from_strangers_are_ignored_and_bad_answers_end_the_call() {
    let mut r = rig();
    r.start(1, LegKind::Voice);
    let mallory = Party::Agent(AgentId::from("mallory"));
    r.act(Action::Signal {
        from: mallory,
        data: answer(),
    });
    assert!(!r.ops().iter().any(|o| matches!(o, Did::Answer(_))));

    let mut r = rig();
    r.refuse_answers = true;
    r.start(1, LegKind::Voice);
    r.act(Action::Signal {
        from: Party::Customer,
        data: answer(),
    });
    assert_eq!(r.released(), vec![(1, "unusable SDP answer".into())]);
    assert_eq!(r.driver.calls(), 0);
}

#[test]
fn a_call_to_the_customers_phone_rings_and_joins_the_agents_browser() {
    let mut r = rig();
    r.start_phone(1, AgentDevice::Browser);
    assert!(
        r.ops()
            .contains(&Did::Dial("+15550100".into(), "claims".into()))
    );
    assert_eq!(
        r.offers(),
        vec![(alice(), false, "offer-1".into())],
        "only the agent's browser gets an offer"
    );
    r.sip(SipCallEvent::Progress {
        call: CallRef(88),
        code: 180,
    });
    assert!(r.commands().contains(&Command::LegProgress {
        leg: LegId(1),
        note: "ringing".into()
    }));
    r.up_once_sip_answers(alice(), "the phone still rings", 88, Codec::Pcmu);
    // The agent releases: the phone gets its BYE, and the call is released once the
    // phone answered it.
    r.act(Action::ReleaseLeg { leg: LegId(1) });
    assert!(r.ops().contains(&Did::Hangup(88)) && r.ops().contains(&Did::Close(1)));
    assert!(r.released().is_empty(), "the BYE is not answered yet");
    assert_eq!(r.driver.calls(), 0);
    r.sip(SipCallEvent::Ended {
        call: CallRef(88),
        by_peer: false,
    });
    assert_eq!(r.released(), vec![(1, "released".into())]);
}

#[test]
fn a_busy_phone_is_reported() {
    let mut r = rig();
    r.start_phone(1, AgentDevice::Browser);
    r.sip(failed(88, 486));
    assert_eq!(
        r.released(),
        vec![(1, "the customer's phone is busy".into())]
    );
    assert!(
        !r.ops().contains(&Did::Hangup(88)),
        "a failed call needs no BYE"
    );
}

fn answered(call: u64, codec: Codec) -> SipCallEvent {
    SipCallEvent::Answered {
        call: CallRef(call),
        codec,
    }
}

fn failed(call: u64, code: u16) -> SipCallEvent {
    SipCallEvent::Failed {
        call: CallRef(call),
        code,
    }
}

fn ended(call: u64, by_peer: bool) -> SipCallEvent {
    SipCallEvent::Ended {
        call: CallRef(call),
        by_peer,
    }
}

fn recorded(r: &Rig) -> Vec<(u32, String)> {
    r.commands()
        .into_iter()
        .filter_map(|c| match c {
            Command::LegRecorded { leg, file } => Some((leg.0, file)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_phone_and_a_softphone_are_bridged_once_both_answer_and_recorded() {
    let mut r = rig();
    r.start_phone(1, AgentDevice::Softphone);
    assert!(
        r.ops()
            .contains(&Did::Dial("+15550100".into(), "claims".into()))
    );
    assert!(
        r.ops()
            .contains(&Did::Dial("alice".into(), "claims".into()))
    );
    assert!(r.offers().is_empty(), "no WebRTC peer takes part");
    r.sip(answered(77, Codec::Pcmu));
    assert!(r.ups().is_empty(), "the customer's phone still rings");
    r.sip(answered(88, Codec::Pcma));
    assert!(r.ops().contains(&Did::BridgeCalls(88, 77)));
    assert!(
        r.ops().contains(&Did::Record(
            AppLeg::Far(CallRef(88)),
            AppLeg::Far(CallRef(77))
        )),
        "customer left, agent right"
    );
    assert_eq!(r.ups(), vec![1]);
    assert!(!r.ops().iter().any(|o| matches!(o, Did::Create { .. })));

    // The agent releases: both phones get a BYE, and the call is released once both
    // BYEs are answered; the recording is reported before the end.
    r.act(Action::ReleaseLeg { leg: LegId(1) });
    assert!(r.ops().contains(&Did::Hangup(88)) && r.ops().contains(&Did::Hangup(77)));
    assert_eq!(recorded(&r), vec![(1, "i-1-1.wav".into())]);
    r.sip(ended(88, false));
    assert!(
        r.released().is_empty(),
        "the softphone's BYE is not answered yet"
    );
    r.sip(ended(77, false));
    assert_eq!(r.released(), vec![(1, "released".into())]);
    assert_eq!(r.driver.calls(), 0);
    let last_two: Vec<_> = r.commands().into_iter().rev().take(2).collect();
    assert!(
        matches!(
            last_two.as_slice(),
            [Command::LegReleased { .. }, Command::LegRecorded { .. }]
        ),
        "{last_two:?}"
    );
}

#[test]
fn either_phone_hanging_up_ends_the_call_saying_who() {
    for (gone, other, reason) in [
        (88, 77, "the customer's phone hung up"),
        (77, 88, "the agent's softphone hung up"),
    ] {
        let mut r = rig();
        r.start_phone(1, AgentDevice::Softphone);
        r.sip(answered(77, Codec::Pcmu));
        r.sip(answered(88, Codec::Pcmu));
        r.sip(ended(gone, true));
        assert!(r.ops().contains(&Did::Hangup(other)));
        assert!(!r.ops().contains(&Did::Hangup(gone)), "nothing to hang up");
        assert!(r.released().is_empty(), "the other BYE is not answered yet");
        r.sip(ended(other, false));
        assert_eq!(r.released(), vec![(1, reason.into())]);
        assert_eq!(r.driver.calls(), 0);
    }
}

#[test]
fn the_agents_mobile_is_dialled_and_a_busy_one_ends_the_call() {
    let mut r = rig();
    r.start_phone(1, AgentDevice::Mobile);
    assert!(
        r.ops()
            .contains(&Did::Dial("mobile of alice".into(), "claims".into()))
    );
    r.sip(answered(88, Codec::Pcmu));
    r.sip(failed(55, 486));
    assert!(
        r.ops().contains(&Did::Hangup(88)),
        "the customer gets a BYE"
    );
    assert!(!r.ops().iter().any(|o| matches!(o, Did::BridgeCalls(..))));
    assert!(recorded(&r).is_empty(), "nothing was recorded");
    r.sip(ended(88, false));
    assert_eq!(r.released(), vec![(1, "the agent's mobile is busy".into())]);

    // An app call request the agent takes on the mobile: the app's peer is bridged to it.
    let mut r = rig();
    r.start_on(1, LegKind::Voice, AgentDevice::Mobile);
    r.up_once_sip_answers(Party::Customer, "the mobile still rings", 55, Codec::Pcma);
    assert!(
        r.ops().contains(&Did::Record(
            AppLeg::Local(CallRef(55)),
            AppLeg::Far(CallRef(55))
        )),
        "the app's audio is on the local leg"
    );
}

#[test]
fn a_ringing_agent_phone_is_cancelled_when_the_call_is_released() {
    let mut r = rig();
    r.start_phone(1, AgentDevice::Softphone);
    r.sip(answered(88, Codec::Pcmu));
    r.act(Action::ReleaseLeg { leg: LegId(1) });
    assert!(r.ops().contains(&Did::Hangup(88)) && r.ops().contains(&Did::Hangup(77)));
    assert!(
        r.released().is_empty(),
        "the customer's BYE is not answered yet"
    );
    // The CANCELled softphone's failure comes later and changes nothing.
    r.sip(failed(77, 487));
    assert!(r.released().is_empty());
    r.sip(ended(88, false));
    assert_eq!(r.released(), vec![(1, "released".into())]);
}

/// The media of every peer the fakes were asked to create, in order.
fn created(r: &Rig) -> Vec<MediaSpec> {
    r.ops()
        .iter()
        .filter_map(|o| match o {
            Did::Create { media, .. } => Some(*media),
            _ => None,
        })
        .collect()
}

#[test]
fn a_peer_facing_a_sip_end_is_offered_facing_g711() {
    let voice = |facing_g711| MediaSpec {
        audio: true,
        video: false,
        facing_g711,
    };
    // The app and the agent's browser: Opus first on both.
    let mut r = rig();
    r.start(1, LegKind::Voice);
    assert_eq!(created(&r), vec![voice(false), voice(false)]);
    // The app and the agent's softphone, or the agent's browser and the customer's phone: the
    // one peer has G.711 first.
    let mut r = rig();
    r.start_on(1, LegKind::Voice, AgentDevice::Softphone);
    assert_eq!(created(&r), vec![voice(true)]);
    let mut r = rig();
    r.start_phone(1, AgentDevice::Browser);
    assert_eq!(created(&r), vec![voice(true)]);
}

#[test]
fn a_softphone_call_bridges_the_app_once_both_answer() {
    let mut r = rig();
    r.start_on(1, LegKind::Voice, AgentDevice::Softphone);
    assert!(
        r.ops()
            .contains(&Did::Dial("alice".into(), "claims".into()))
    );
    assert_eq!(
        r.offers(),
        vec![(Party::Customer, false, "offer-1".into())],
        "only the app gets an offer"
    );
    r.up_once_sip_answers(
        Party::Customer,
        "the softphone still rings",
        77,
        Codec::Pcma,
    );
    // Video cannot ride on a softphone.
    r.start(2, LegKind::Video);
    assert_eq!(
        r.released(),
        vec![(2, "video needs the app and the agent's browser".into())]
    );
    // The softphone hangs up: the app's peer goes and the call is released.
    r.sip(SipCallEvent::Ended {
        call: CallRef(77),
        by_peer: true,
    });
    assert!(r.ops().contains(&Did::Close(1)));
    assert!(!r.ops().contains(&Did::Hangup(77)), "nothing to hang up");
    assert_eq!(r.released()[1], (1, "the agent's softphone hung up".into()));
    assert_eq!(r.driver.calls(), 0);
}

#[test]
fn a_busy_softphone_ends_the_call_and_a_release_hangs_it_up() {
    let mut r = rig();
    r.start_on(1, LegKind::Voice, AgentDevice::Softphone);
    r.sip(failed(77, 486));
    assert_eq!(
        r.released(),
        vec![(1, "the agent's softphone is busy".into())]
    );
    assert!(r.ops().contains(&Did::Close(1)));

    let mut r = rig();
    r.start_on(1, LegKind::Voice, AgentDevice::Softphone);
    r.act(Action::ReleaseLeg { leg: LegId(1) });
    assert!(r.ops().contains(&Did::Hangup(77)));
    assert!(r.ops().contains(&Did::Close(1)));
    assert!(
        r.released().is_empty(),
        "the CANCELled INVITE has no final answer yet"
    );
    r.sip(failed(77, 487));
    assert_eq!(r.released(), vec![(1, "released".into())]);
}

#[test]
fn a_client_that_answers_video_away_drops_it_as_the_customer() {
    let mut r = rig();
    r.start(1, LegKind::Voice);
    r.event(PeerEvent::VideoDropped(2));
    assert!(
        r.by_customer.is_empty(),
        "only the customer's client can drop video"
    );
    r.event(PeerEvent::VideoDropped(1));
    assert_eq!(r.by_customer, vec![Command::DropVideo]);
}

#[test]
fn only_the_customers_digits_are_recorded() {
    let mut r = rig();
    r.start_phone(1, AgentDevice::Browser);
    let dtmf = |call| SipCallEvent::Dtmf {
        call: CallRef(call),
        digit: '5',
        duration_ms: 100,
    };
    r.sip(dtmf(88));
    r.sip(dtmf(99));
    let digits: Vec<_> = r
        .commands()
        .into_iter()
        .filter(|c| matches!(c, Command::Dtmf { .. }))
        .collect();
    assert_eq!(
        digits,
        vec![Command::Dtmf {
            leg: LegId(1),
            digit: '5'
        }]
    );
}

#[test]
fn a_customer_calling_in_is_answered_by_the_leg_that_names_the_call() {
    let mut r = rig();
    let call = |n| IncomingCall {
        incoming: ServerTxId(n),
        interaction: "i-1".into(),
        caller: "+15550100".into(),
        source: CallSource::Trunk,
        token: None,
    };
    r.incoming(call(5));
    let held = HeldCall(1);
    assert!(r.commands().contains(&Command::JoinCall {
        caller: CallerId::Trunk("+15550100".into()),
        token: None,
        call: held,
    }));
    // A second call for the same chat meanwhile is busy.
    r.incoming(call(6));
    assert!(r.ops().contains(&Did::Reject(6, 486)));
    // A leg that does not name the waiting call dials; nothing is answered by a lookup.
    let mut other = rig();
    other.incoming(call(5));
    other.start_phone(1, AgentDevice::Browser);
    assert!(!other.ops().contains(&Did::Accept(5)));
    assert!(
        other
            .ops()
            .contains(&Did::Dial("+15550100".into(), "claims".into()))
    );
    // The interaction starts the leg that answers it: the waiting call is answered, not a
    // new one dialled.
    r.start_answering(1, AgentDevice::Browser, Some(held));
    assert!(r.ops().contains(&Did::Accept(5)));
    assert!(!r.ops().iter().any(|o| matches!(o, Did::Dial(..))));
    r.act(Action::Signal {
        from: alice(),
        data: answer(),
    });
    r.event(PeerEvent::Connected(1));
    assert!(r.ops().contains(&Did::Bridge(1, Codec::Pcma)));
    assert_eq!(r.ups(), vec![1]);
    assert_eq!(r.driver.held(), 0);
}

#[test]
fn a_call_the_interaction_refuses_is_rejected_with_the_status_of_its_rule() {
    for (rule, status) in [
        (RuleError::NotPermitted, 403),
        (RuleError::BadJoinToken, 403),
        (RuleError::CallerNotVouched, 403),
        (RuleError::CallInProgress, 486),
        (RuleError::InteractionClosed, 480),
    ] {
        let mut r = rig();
        r.refuse_joins = Some(rule.clone());
        r.incoming(IncomingCall {
            incoming: ServerTxId(5),
            interaction: "i-1".into(),
            caller: "+15550199".into(),
            source: CallSource::Other,
            token: None,
        });
        assert_eq!(r.ops(), vec![Did::Reject(5, status)], "{rule:?}");
        assert_eq!(r.driver.held(), 0);
    }
}

#[test]
fn a_leg_answering_a_call_whose_caller_hung_up_is_released() {
    let mut r = rig();
    r.incoming(IncomingCall {
        incoming: ServerTxId(5),
        interaction: "i-1".into(),
        caller: "+15550100".into(),
        source: CallSource::Trunk,
        token: None,
    });
    r.cancelled(ServerTxId(5));
    assert!(r.commands().contains(&Command::CallAbandoned));
    r.start_answering(1, AgentDevice::Browser, Some(HeldCall(1)));
    assert!(
        !r.ops()
            .iter()
            .any(|o| matches!(o, Did::Accept(_) | Did::Dial(..)))
    );
    assert_eq!(
        r.released(),
        vec![(1, "the customer cannot be reached: the call is gone".into())]
    );
    assert_eq!(r.driver.calls(), 0);
}

#[test]
fn a_call_released_while_its_ends_are_opened_closes_them_as_they_arrive() {
    // Driven by hand: the operations' outcomes come back late.
    let mut d: Driver<u32> = Driver::new(Vec::new());
    let id = InteractionId::from("i-1");
    d.handle_action(
        id.clone(),
        Action::StartLeg {
            leg: LegId(1),
            kind: LegKind::Voice,
            target: LegTarget::Phone("+15550100".into()),
            service: "claims".into(),
            device: AgentDevice::Browser,
            agent: Some(AgentId::from("alice")),
            answer: None,
        },
    );
    let Some(Op::Dial { side, .. }) = d.poll_op() else {
        panic!("the customer's phone is dialled first");
    };
    assert_eq!(
        d.poll_op(),
        None,
        "the agent's end waits for the customer's"
    );
    d.handle_action(id.clone(), Action::ReleaseLeg { leg: LegId(1) });
    let released = Op::Report {
        id: id.clone(),
        by: Party::System,
        command: Command::LegReleased {
            leg: LegId(1),
            reason: Some("released".into()),
        },
    };
    assert_eq!(d.poll_op(), Some(released));
    assert_eq!(d.calls(), 0);
    // The phone call placed meanwhile is not wanted any more.
    d.handle_outcome(Outcome::Dialled {
        id,
        side,
        result: Ok((CallRef(88), addr(30002))),
    });
    assert_eq!(d.poll_op(), Some(Op::Hangup(CallRef(88))));
    assert_eq!(d.poll_op(), None);
}

#[test]
fn a_call_to_a_service_number_waits_for_the_accept_or_is_refused() {
    let mut r = rig();
    r.service_call(ServerTxId(7), "+15550100", "+15550199");
    // Opened and held: nothing answered, nothing refused yet.
    assert!(r.ops().is_empty(), "{:?}", r.ops());
    assert_eq!(r.driver.held(), 1);
    // The interaction starts the leg that answers it once an agent accepts.
    r.start_answering(1, AgentDevice::Browser, Some(HeldCall(1)));
    assert!(r.ops().contains(&Did::Accept(7)));
    assert!(!r.ops().iter().any(|o| matches!(o, Did::Dial(..))));

    // A number no service has is refused at once.
    let mut r = rig();
    r.service_call(ServerTxId(8), "+15550999", "+15550199");
    assert_eq!(r.ops(), vec![Did::Reject(8, 480)]);
    assert_eq!(r.driver.held(), 0);

    // Nobody accepts: the interaction refuses the call, and its leg is reported released.
    let mut r = rig();
    r.service_call(ServerTxId(9), "+15550100", "+15550199");
    r.act(Action::RefuseCall {
        leg: LegId(1),
        reason: "No Agent Available".into(),
        call: Some(HeldCall(1)),
    });
    assert_eq!(r.ops(), vec![Did::Reject(9, 480)]);
    assert_eq!(r.released(), vec![(1, "No Agent Available".to_string())]);

    // The caller hangs up while waiting: the interaction hears it, nothing is left held.
    let mut r = rig();
    r.service_call(ServerTxId(10), "+15550100", "+15550199");
    r.cancelled(ServerTxId(10));
    assert!(r.commands().contains(&Command::CallAbandoned));
    assert_eq!(r.driver.held(), 0, "nothing is left held");

    // The caller hangs up before the interaction is even open: it is told once it is.
    let mut r = rig();
    r.driver
        .handle_service_call(ServerTxId(11), "+15550100", "+15550199");
    let open = r.driver.poll_op();
    assert!(matches!(open, Some(Op::Open { .. })), "{open:?}");
    r.driver.handle_cancelled(ServerTxId(11));
    r.driver.handle_outcome(Outcome::Opened {
        held: HeldCall(1),
        result: Ok(InteractionId::from("i-1")),
    });
    r.run();
    assert_eq!(r.commands(), vec![Command::CallAbandoned]);
    assert_eq!(r.driver.held(), 0);
}
