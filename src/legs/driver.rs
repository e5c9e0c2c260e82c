//! The call driver: the media ends of every call of an interaction, and how they are joined.
//!
//! A call has two ends. The customer's end is the app (a WebRTC peer) or the customer's phone
//! (a SIP call through the service's trunk, or the customer's own call waiting to be
//! answered); the agent's end is the agent's browser (a second WebRTC peer), the SIP softphone
//! registered under the agent's name, or the agent's own mobile. The gateway offers every peer
//! (it is ICE-lite and always the offerer): the app's offer goes out as `OFFER_CALL` in the
//! chat, the browser's as a `webrtc_signaling` event on the agent socket, and the answers come
//! back as [`Action::Signal`]. SIP ends are dialled with the interaction's headers and deliver
//! their audio on a local RTP address of the media engine.
//!
//! When both ends are ready the media is joined: two peers are linked (audio and video forwarded
//! between them); a peer and a SIP end are bridged (the peer's audio as plain RTP in the codec
//! the SIP side chose, so the engine's recording and DTMF work unchanged); two SIP ends (the
//! customer's phone and the agent's softphone or own mobile) are bridged to each other in the
//! engine. Then the voice leg is up. A call of a service that records is recorded from then
//! on, and the recording is reported to the interaction when the call ends.
//!
//! Video rides on the two peers of an app call: allowing it renegotiates both with a video
//! section, and dropping it renegotiates it away. A peer has at most one offer outstanding; a
//! change wanted meanwhile is offered when the answer arrives. SIP ends carry no video.
//!
//! Whatever end goes (ICE consent lost, DTLS failure, a contained panic, a BYE, a busy or
//! unanswered phone) ends the whole call: the other end is released too and every leg of the
//! call is reported released with the reason. An answered SIP end is released by a BYE, and
//! its legs are reported released only once the far end answered it (or the BYE timed out),
//! so an ordered teardown moves on to the chat only after the call is really gone.
//!
//! **Driving contract.** [`Driver`] is sans-IO: it never awaits and reads no clock. Inputs go
//! in through `handle_*` (the Interaction's actions, the peers' and SIP calls' events, calls
//! coming in, and the [`Outcome`] of every operation it asked for); after each input the
//! caller drains [`Driver::poll_op`] and carries every [`Op`] out, feeding its outcome back.
//! Ops are emitted in the order they must be carried out. Reports to the Interaction
//! ([`Op::Report`]) expect no answer: the driver never waits for an interaction (nor for the
//! store behind it); a refusal that matters to it comes back as [`Outcome::ReportRefused`].
//! Nothing here depends on time: every timeout (ringing, the BYE's answer, ICE consent) is
//! kept by the SIP and WebRTC cores, which report it as an event.

use std::collections::{HashMap, VecDeque};
use std::fmt::Debug;
use std::hash::Hash;
use std::net::SocketAddr;

use serde_json::{Value, json};

use crate::bridge::{
    Action, AgentDevice, AgentId, CallerId, Command, HeldCall, InteractionId, LegId, LegKind,
    LegTarget, Party, RuleError,
};
use crate::rtc::{MediaSpec, RtcError};
use crate::sip::core::{AppLeg, CallRef, CallSource, DialError};
use crate::sip::driver::{IncomingCall, SipCallEvent};
use crate::sip::sdp::Codec;
use crate::sip::transaction::ServerTxId;

/// Why an operation the driver asked for failed. The driver decides what a failure means
/// (the call ends, the waiting call is refused); the detail goes to the log and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LegError {
    /// The WebRTC service refused (no room for a peer, a bad answer, the peer is gone).
    #[error(transparent)]
    Rtc(#[from] RtcError),
    /// SIP could not place, answer, bridge or record the call.
    #[error(transparent)]
    Sip(#[from] DialError),
    /// The agent has no mobile number to call.
    #[error("the agent {0} has no mobile number")]
    NoMobile(AgentId),
    /// The service has no trunk to call phones through (or it names an unknown one).
    #[error("the service {0} has no trunk")]
    NoTrunk(String),
    /// The trunk's first address is not an address.
    #[error("bad trunk address {0}")]
    BadTrunk(String),
    /// The number is not E.164 and is never written into a Request-URI.
    #[error("{0:?} is not an E.164 number")]
    BadNumber(String),
    /// The call to answer is no longer waiting (its caller hung up).
    #[error("the call is gone")]
    CallGone,
    /// No service has the number a call came in to.
    #[error("no service has the number {0}")]
    NoService(String),
    /// The hub could not open an interaction (a limit, the store).
    #[error("no interaction could be opened")]
    CannotOpen,
}

/// Why the Interaction did not take a report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    /// It refused the command under one of its rules.
    #[error(transparent)]
    Rule(#[from] RuleError),
    /// It is over, or unknown.
    #[error("the interaction is closed")]
    Closed,
}

impl ReportError {
    /// The stable code of the refusal, as clients see it.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            ReportError::Rule(rule) => rule.code(),
            ReportError::Closed => "interaction_closed",
        }
    }
}

/// Which end of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Side {
    Customer,
    Agent,
}

/// Whom a SIP end of a call dials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DialTo {
    /// The customer's number, through the service's trunk.
    Number(String),
    /// The softphone registered under the agent's name.
    Softphone(AgentId),
    /// The agent's own mobile, through the service's trunk.
    Mobile(AgentId),
}

/// Work for the shell, in the order it must be done. Those with an outcome name it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Op<Id> {
    /// Create a WebRTC peer with these media sections → [`Outcome::PeerCreated`].
    CreatePeer {
        id: InteractionId,
        side: Side,
        media: MediaSpec,
    },
    /// Apply the client's SDP answer to the peer's outstanding offer → [`Outcome::AnswerApplied`].
    ApplyAnswer {
        id: InteractionId,
        side: Side,
        peer: Id,
        sdp: String,
    },
    /// Add or remove video on the peer → [`Outcome::VideoOffered`] with the new offer.
    SetVideo {
        id: InteractionId,
        side: Side,
        peer: Id,
        on: bool,
    },
    /// Forward media between two connected peers → [`Outcome::Joined`].
    Link { id: InteractionId, a: Id, b: Id },
    /// Send the peer's audio as plain RTP in `codec` to `remote` and play what comes back →
    /// [`Outcome::Joined`].
    BridgeRtp {
        id: InteractionId,
        peer: Id,
        remote: SocketAddr,
        codec: Codec,
    },
    /// Join two answered SIP calls in the media engine → [`Outcome::Joined`].
    BridgeCalls {
        id: InteractionId,
        customer: CallRef,
        agent: CallRef,
    },
    /// Close a peer (no outcome).
    ClosePeer(Id),
    /// Place a SIP call with the interaction's headers → [`Outcome::Dialled`].
    Dial {
        id: InteractionId,
        side: Side,
        to: DialTo,
        service: String,
    },
    /// BYE an answered call, CANCEL a ringing one (no outcome; the call's end comes as a
    /// [`SipCallEvent`]).
    Hangup(CallRef),
    /// Answer a call waiting for the interaction → [`Outcome::Answered`].
    Answer {
        id: InteractionId,
        incoming: ServerTxId,
    },
    /// Refuse a waiting call with a final response (no outcome).
    Reject {
        incoming: ServerTxId,
        code: u16,
        reason: String,
    },
    /// Record call `leg` when its service records, `customer` on the left →
    /// [`Outcome::Recorded`].
    Record {
        id: InteractionId,
        service: String,
        leg: LegId,
        customer: AppLeg,
        agent: AppLeg,
    },
    /// Tell the interaction, without waiting for it; a refusal comes back as
    /// [`Outcome::ReportRefused`]. Reports to one interaction are delivered in order.
    Report {
        id: InteractionId,
        by: Party,
        command: Command,
    },
    /// Open an interaction for a call to a service number, the call waiting as `held` →
    /// [`Outcome::Opened`].
    Open {
        held: HeldCall,
        number: String,
        caller: String,
    },
}

/// What became of an [`Op`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Outcome<Id> {
    PeerCreated {
        id: InteractionId,
        side: Side,
        /// The peer and the gateway's SDP offer for it.
        result: Result<(Id, String), LegError>,
    },
    AnswerApplied {
        id: InteractionId,
        side: Side,
        result: Result<(), LegError>,
    },
    VideoOffered {
        id: InteractionId,
        side: Side,
        /// The new offer.
        result: Result<String, LegError>,
    },
    Joined {
        id: InteractionId,
        result: Result<(), LegError>,
    },
    Dialled {
        id: InteractionId,
        side: Side,
        /// The call, and where the engine takes its audio.
        result: Result<(CallRef, SocketAddr), LegError>,
    },
    Answered {
        id: InteractionId,
        /// The call, where the engine takes its audio, and the codec the caller offered.
        result: Result<(CallRef, SocketAddr, Codec), LegError>,
    },
    Recorded {
        id: InteractionId,
        /// The recording's file name; `None` when the service does not record.
        file: Option<String>,
    },
    ReportRefused {
        id: InteractionId,
        command: Command,
        error: ReportError,
    },
    Opened {
        held: HeldCall,
        result: Result<InteractionId, LegError>,
    },
}

/// What happens to peers on their own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerEvent<Id> {
    Connected(Id),
    /// The client answered a video offer with video rejected or inactive.
    VideoDropped(Id),
    Closed {
        peer: Id,
        reason: String,
    },
}

struct PeerState<Id> {
    id: Id,
    connected: bool,
    /// An offer is out and its answer has not come back.
    awaiting_answer: bool,
    /// Whether the last offer had video.
    offered_video: bool,
}

/// One end of a call.
enum End<Id> {
    /// Asked for (a peer created, a call dialled or answered), not there yet.
    Opening {
        peer: bool,
    },
    Peer(PeerState<Id>),
    Sip {
        call: CallRef,
        /// Where the engine takes the call's audio.
        media: SocketAddr,
        /// What the far end answered with; `None` while it rings.
        codec: Option<Codec>,
    },
}

impl<Id: Copy> End<Id> {
    fn peer(id: Id, video: bool) -> Self {
        End::Peer(PeerState {
            id,
            connected: false,
            awaiting_answer: true,
            offered_video: video,
        })
    }

    fn as_peer(&mut self) -> Option<&mut PeerState<Id>> {
        match self {
            End::Peer(p) => Some(p),
            End::Sip { .. } | End::Opening { .. } => None,
        }
    }

    /// A WebRTC peer, or one being created.
    fn is_peer(&self) -> bool {
        matches!(self, End::Peer(_) | End::Opening { peer: true })
    }

    /// Media can flow: the peer is connected, or the SIP call answered.
    fn ready(&self) -> bool {
        match self {
            End::Peer(p) => p.connected,
            End::Sip { codec, .. } => codec.is_some(),
            End::Opening { .. } => false,
        }
    }

    /// No offer is outstanding.
    fn settled(&self) -> bool {
        match self {
            End::Peer(p) => !p.awaiting_answer,
            End::Sip { .. } | End::Opening { .. } => true,
        }
    }
}

/// How far the media of a call is joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Join {
    No,
    Asked,
    Done,
}

/// One call: its two ends and the interaction's legs it carries.
struct Call<Id> {
    agent: AgentId,
    /// Where the agent talks.
    device: AgentDevice,
    service: String,
    /// The call started as a video call: its peers are created with video.
    opens_video: bool,
    /// The ends still to be opened, in order, once the current one is there.
    to_open: VecDeque<(Side, Opening)>,
    /// The offers to send once both ends are open (customer's first).
    offers: Vec<(Side, String)>,
    /// The recording's file name, once recording.
    recording: Option<String>,
    customer: End<Id>,
    staff: End<Id>,
    voice: Option<LegId>,
    video: Option<LegId>,
    want_video: bool,
    join: Join,
    voice_up: bool,
    video_up: bool,
}

impl<Id> Call<Id> {
    fn end(&mut self, side: Side) -> &mut End<Id> {
        match side {
            Side::Customer => &mut self.customer,
            Side::Agent => &mut self.staff,
        }
    }

    fn legs(&self) -> Vec<LegId> {
        [self.voice, self.video].into_iter().flatten().collect()
    }
}

/// How one end of a new call is opened.
#[derive(Debug, Clone)]
enum Opening {
    Peer(MediaSpec),
    Dial(DialTo),
    Answer(ServerTxId),
}

/// A call that came in and waits: for its interaction to be opened, to take it (or refuse
/// it), or for the leg that answers it.
struct Held {
    incoming: ServerTxId,
    /// `None` while the interaction for a service number's call is being opened.
    interaction: Option<InteractionId>,
    /// The caller hung up while the interaction was being opened.
    cancelled: bool,
}

/// The driver's state. See the module docs for how to drive it.
pub(crate) struct Driver<Id> {
    calls: HashMap<InteractionId, Call<Id>>,
    by_peer: HashMap<Id, (InteractionId, Side)>,
    by_sip_call: HashMap<CallRef, (InteractionId, Side)>,
    /// Answered SIP ends hung up and waiting for the answer to their BYE (or its timeout):
    /// the legs to report released then, and why.
    releasing: HashMap<CallRef, (InteractionId, Vec<LegId>, String)>,
    /// Calls that came in and wait, by the name the interaction knows them by.
    held: HashMap<HeldCall, Held>,
    next_held: u64,
    ops: VecDeque<Op<Id>>,
    /// The ICE servers handed to clients with every offer.
    ice_servers: Vec<String>,
}

impl<Id: Copy + Eq + Hash + Debug> Driver<Id> {
    pub(crate) fn new(ice_servers: Vec<String>) -> Self {
        Driver {
            calls: HashMap::new(),
            by_peer: HashMap::new(),
            by_sip_call: HashMap::new(),
            releasing: HashMap::new(),
            held: HashMap::new(),
            next_held: 0,
            ops: VecDeque::new(),
            ice_servers,
        }
    }

    /// Calls in progress (for metrics and leak checks).
    pub(crate) fn calls(&self) -> usize {
        self.calls.len()
    }

    /// Calls that came in and wait for their interaction.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.held.len()
    }

    /// The next operation to carry out.
    pub(crate) fn poll_op(&mut self) -> Option<Op<Id>> {
        self.ops.pop_front()
    }

    /// The gateway stops: every call is released, and every leg reported released even
    /// where a BYE is still unanswered (nobody is left to deliver the answer).
    pub(crate) fn shut_down(&mut self) {
        let ids: Vec<InteractionId> = self.calls.keys().cloned().collect();
        for id in ids {
            self.end_call(&id, "gateway stopping");
        }
        let mut releasing: HashMap<InteractionId, (Vec<LegId>, String)> = HashMap::new();
        for (_, (id, legs, reason)) in self.releasing.drain() {
            releasing.insert(id, (legs, reason));
        }
        for (id, (legs, reason)) in releasing {
            for leg in legs {
                self.released(&id, leg, &reason);
            }
        }
    }

    pub(crate) fn handle_action(&mut self, id: InteractionId, action: Action) {
        match action {
            Action::StartLeg {
                leg,
                kind,
                target,
                service,
                device,
                agent,
                answer,
            } => self.start(id, leg, kind, target, service, device, agent, answer),
            Action::ReleaseLeg { leg } => self.release(id, leg),
            Action::RefuseCall { leg, reason, call } => self.refuse(id, leg, &reason, call),
            Action::Signal { from, data } => self.signal(id, from, data),
            Action::PersistTranscript => {}
        }
    }

    pub(crate) fn handle_peer_event(&mut self, event: PeerEvent<Id>) {
        match event {
            PeerEvent::Connected(peer) => {
                let Some((id, side)) = self.by_peer.get(&peer).cloned() else {
                    return;
                };
                if let Some(p) = self.calls.get_mut(&id).and_then(|c| c.end(side).as_peer()) {
                    p.connected = true;
                }
                self.progress(&id);
            }
            PeerEvent::VideoDropped(peer) => {
                let Some((id, Side::Customer)) = self.by_peer.get(&peer).cloned() else {
                    return;
                };
                // The customer may drop video alone (rule 6); their client did so by its answer.
                self.report(&id, Party::Customer, Command::DropVideo);
            }
            PeerEvent::Closed { peer, reason } => {
                let Some((id, _)) = self.by_peer.remove(&peer) else {
                    return;
                };
                tracing::info!(interaction = %id, %reason, "WebRTC peer closed");
                self.end_call(&id, &reason);
            }
        }
    }

    /// A call came in naming an interaction: the interaction decides whether it joins (a
    /// trunk must vouch that the caller is the chat's customer, or the call carries the chat's
    /// join token; the chat active and without a call); if it does, it starts a leg that
    /// answers this call.
    pub(crate) fn handle_incoming(&mut self, call: IncomingCall) {
        let id = InteractionId(call.interaction.clone());
        let waiting = self
            .held
            .values()
            .any(|h| h.interaction.as_ref() == Some(&id));
        if self.calls.contains_key(&id) || waiting {
            self.reject(call.incoming, 486, "Call In Progress");
            return;
        }
        let held = self.hold(call.incoming, Some(id.clone()));
        let caller = match call.source {
            CallSource::Trunk => CallerId::Trunk(call.caller),
            CallSource::Other => CallerId::Claimed(call.caller),
        };
        let command = Command::JoinCall {
            caller,
            token: call.token,
            call: held,
        };
        self.report(&id, Party::System, command);
    }

    /// A trunk call to a service number: it opens an interaction (the interaction routes it,
    /// and starts the leg that answers it once an agent accepts, or refuses it); meanwhile it
    /// keeps ringing.
    pub(crate) fn handle_service_call(&mut self, incoming: ServerTxId, number: &str, caller: &str) {
        let held = self.hold(incoming, None);
        self.ops.push_back(Op::Open {
            held,
            number: number.to_string(),
            caller: caller.to_string(),
        });
    }

    /// The caller of a waiting call hung up (the SIP side answered the CANCEL already). If an
    /// agent accepted just before, the leg that answers it finds it gone and is released.
    pub(crate) fn handle_cancelled(&mut self, incoming: ServerTxId) {
        let Some((&held, _)) = self.held.iter().find(|(_, h)| h.incoming == incoming) else {
            return;
        };
        let entry = self.held.get_mut(&held).expect("found");
        match entry.interaction.clone() {
            Some(id) => {
                self.held.remove(&held);
                self.report(&id, Party::System, Command::CallAbandoned);
            }
            // Told once the interaction is open.
            None => entry.cancelled = true,
        }
    }

    pub(crate) fn handle_sip(&mut self, event: SipCallEvent) {
        let call = match &event {
            SipCallEvent::Progress { call, .. }
            | SipCallEvent::Answered { call, .. }
            | SipCallEvent::Failed { call, .. }
            | SipCallEvent::Ended { call, .. }
            | SipCallEvent::Dtmf { call, .. } => *call,
        };
        if matches!(
            event,
            SipCallEvent::Failed { .. } | SipCallEvent::Ended { .. }
        ) && let Some((id, legs, reason)) = self.releasing.remove(&call)
        {
            // The BYE was answered (or timed out): once the other end's is too, the call is
            // gone.
            if !self.releasing.values().any(|(other, ..)| *other == id) {
                for leg in legs {
                    self.released(&id, leg, &reason);
                }
            }
            return;
        }
        let Some((id, side)) = self.by_sip_call.get(&call).cloned() else {
            return;
        };
        let device = self.calls.get(&id).map(|c| c.device);
        let who = match (side, device) {
            (Side::Customer, _) => "the customer's phone",
            (Side::Agent, Some(AgentDevice::Mobile)) => "the agent's mobile",
            (Side::Agent, _) => "the agent's softphone",
        };
        match event {
            SipCallEvent::Progress { code, .. } => {
                let note = match code {
                    180 => "ringing",
                    183 => "session progress",
                    _ => return,
                };
                let Some(leg) = self.calls.get(&id).and_then(|c| c.voice) else {
                    return;
                };
                let note = note.to_string();
                self.report(&id, Party::System, Command::LegProgress { leg, note });
            }
            SipCallEvent::Answered { codec, .. } => {
                if let Some(End::Sip { codec: c, .. }) =
                    self.calls.get_mut(&id).map(|call| call.end(side))
                {
                    *c = Some(codec);
                }
                self.progress(&id);
            }
            SipCallEvent::Failed { code, .. } => {
                self.by_sip_call.remove(&call);
                let reason = match code {
                    486 | 600 | 603 => format!("{who} is busy"),
                    408 | 480 | 487 => format!("{who} did not answer"),
                    code => format!("{who} refused the call ({code})"),
                };
                self.end_call(&id, &reason);
            }
            SipCallEvent::Ended { by_peer, .. } => {
                self.by_sip_call.remove(&call);
                let reason = if by_peer {
                    format!("{who} hung up")
                } else {
                    "released".to_string()
                };
                self.end_call(&id, &reason);
            }
            SipCallEvent::Dtmf { digit, .. } => {
                // Only what the customer keys belongs in the chat's record.
                let leg = self.calls.get(&id).and_then(|c| c.voice);
                if let (Side::Customer, Some(leg)) = (side, leg) {
                    self.report(&id, Party::System, Command::Dtmf { leg, digit });
                }
            }
        }
    }

    /// What became of an operation.
    pub(crate) fn handle_outcome(&mut self, outcome: Outcome<Id>) {
        match outcome {
            Outcome::PeerCreated { id, side, result } => {
                let opened = result.map(|(peer, offer)| (Some(peer), None, Some(offer)));
                self.opened(id, side, opened);
            }
            Outcome::Dialled { id, side, result } => {
                let opened = result.map(|(call, media)| (None, Some((call, media, None)), None));
                self.opened(id, side, opened);
            }
            Outcome::Answered { id, result } => {
                let opened = result
                    .map(|(call, media, codec)| (None, Some((call, media, Some(codec))), None));
                self.opened(id, Side::Customer, opened);
            }
            Outcome::AnswerApplied { id, side, result } => match result {
                Ok(()) => {
                    if let Some(p) = self.calls.get_mut(&id).and_then(|c| c.end(side).as_peer()) {
                        p.awaiting_answer = false;
                    }
                    self.renegotiate(&id);
                    self.progress(&id);
                }
                Err(e) => {
                    tracing::info!(interaction = %id, "unusable SDP answer: {e}");
                    self.end_call(&id, "unusable SDP answer");
                }
            },
            Outcome::VideoOffered { id, side, result } => match result {
                Ok(sdp) => {
                    let video = self
                        .calls
                        .get_mut(&id)
                        .and_then(|c| c.end(side).as_peer())
                        .is_some_and(|p| p.offered_video);
                    self.offer(&id, side, sdp, video);
                }
                Err(e) => {
                    tracing::warn!(interaction = %id, "cannot renegotiate video: {e}");
                    self.end_call(&id, "renegotiation failed");
                }
            },
            Outcome::Joined { id, result } => match result {
                Ok(()) => {
                    if let Some(call) = self.calls.get_mut(&id) {
                        call.join = Join::Done;
                        self.start_recording(&id);
                        self.progress(&id);
                    }
                }
                Err(e) => {
                    tracing::warn!(interaction = %id, "cannot join the media: {e}");
                    self.end_call(&id, "media path failed");
                }
            },
            Outcome::Recorded { id, file } => {
                if let Some(call) = self.calls.get_mut(&id) {
                    call.recording = file;
                } else if let Some(file) = file {
                    tracing::warn!(interaction = %id, %file, "recording of a call already gone");
                }
            }
            Outcome::ReportRefused { id, command, error } => self.refused(id, command, error),
            Outcome::Opened { held, result } => {
                let Some(entry) = self.held.get_mut(&held) else {
                    return;
                };
                match result {
                    Ok(id) if entry.cancelled => {
                        self.held.remove(&held);
                        self.report(&id, Party::System, Command::CallAbandoned);
                    }
                    Ok(id) => entry.interaction = Some(id),
                    Err(e) => {
                        tracing::warn!(%held, "cannot open an interaction for a call: {e}");
                        let incoming = entry.incoming;
                        self.held.remove(&held);
                        self.reject(incoming, 480, "Cannot Open An Interaction");
                    }
                }
            }
        }
    }

    /// The interaction did not take a report. Only a call that asked to join cares: it is
    /// refused with the status that says why.
    fn refused(&mut self, id: InteractionId, command: Command, error: ReportError) {
        let Command::JoinCall { call, .. } = command else {
            tracing::debug!(interaction = %id, ?command, "report not taken: {error}");
            return;
        };
        let Some(held) = self.held.remove(&call) else {
            return;
        };
        let (status, why) = match &error {
            ReportError::Rule(RuleError::NotPermitted) => {
                (403, "Not The Customer Of This Interaction")
            }
            ReportError::Rule(RuleError::BadJoinToken) => (403, "Bad Join Token"),
            ReportError::Rule(RuleError::CallerNotVouched) => {
                (403, "Join Token Required Outside A Trunk")
            }
            ReportError::Rule(RuleError::CallInProgress) => (486, "Call In Progress"),
            _ => (480, "Interaction Not Active"),
        };
        tracing::info!(interaction = %id, code = %error.code(), "incoming call refused");
        self.reject(held.incoming, status, why);
    }

    fn hold(&mut self, incoming: ServerTxId, interaction: Option<InteractionId>) -> HeldCall {
        self.next_held += 1;
        let held = HeldCall(self.next_held);
        let entry = Held {
            incoming,
            interaction,
            cancelled: false,
        };
        self.held.insert(held, entry);
        held
    }

    /// The interaction refuses the call that opened it (nobody accepted it).
    fn refuse(&mut self, id: InteractionId, leg: LegId, reason: &str, call: Option<HeldCall>) {
        if let Some(held) = call.and_then(|call| self.held.remove(&call)) {
            self.reject(held.incoming, 480, reason);
        }
        self.released(&id, leg, reason);
    }

    #[allow(clippy::too_many_arguments)]
    fn start(
        &mut self,
        id: InteractionId,
        leg: LegId,
        kind: LegKind,
        target: LegTarget,
        service: String,
        device: AgentDevice,
        agent: Option<AgentId>,
        answer: Option<HeldCall>,
    ) {
        tracing::debug!(interaction = %id, %leg, ?kind, ?target, ?device, ?answer, "start leg");
        if let Some(call) = self.calls.get_mut(&id) {
            let peers = call.customer.is_peer() && call.staff.is_peer();
            match kind {
                LegKind::Video if !peers => {
                    self.released(&id, leg, "video needs the app and the agent's browser");
                }
                LegKind::Video if call.video.is_none() => {
                    call.video = Some(leg);
                    call.want_video = true;
                    self.renegotiate(&id);
                }
                // One call, one video at a time: the interaction never asks for a second.
                _ => self.released(&id, leg, "busy"),
            }
            return;
        }
        let Some(agent) = agent else {
            self.released(&id, leg, "no agent");
            return;
        };
        let (audio, video) = (kind == LegKind::Voice, kind == LegKind::Video);
        let device = if video { AgentDevice::Browser } else { device };
        // A voice peer facing a SIP end is offered G.711 first, so that its audio passes
        // through.
        let both_peers =
            answer.is_none() && target == LegTarget::App && device == AgentDevice::Browser;
        let media = MediaSpec {
            audio,
            video,
            facing_g711: !both_peers && !video,
        };
        let customer = match (answer, target) {
            // The customer called in: answer that call.
            (Some(held), _) => match self.held.remove(&held) {
                Some(held) => Opening::Answer(held.incoming),
                None => {
                    let reason = format!("the customer cannot be reached: {}", LegError::CallGone);
                    self.released(&id, leg, &reason);
                    return;
                }
            },
            (None, LegTarget::App) => Opening::Peer(media),
            (None, LegTarget::Phone(number)) => Opening::Dial(DialTo::Number(number)),
        };
        let staff = match device {
            AgentDevice::Browser => Opening::Peer(media),
            AgentDevice::Softphone => Opening::Dial(DialTo::Softphone(agent.clone())),
            AgentDevice::Mobile => Opening::Dial(DialTo::Mobile(agent.clone())),
        };
        let opening = |o: &Opening| End::Opening {
            peer: matches!(o, Opening::Peer(_)),
        };
        let call = Call {
            agent,
            device,
            service,
            opens_video: video,
            customer: opening(&customer),
            staff: opening(&staff),
            to_open: VecDeque::from([(Side::Agent, staff)]),
            offers: Vec::new(),
            recording: None,
            voice: audio.then_some(leg),
            video: video.then_some(leg),
            want_video: video,
            join: Join::No,
            voice_up: false,
            video_up: false,
        };
        self.calls.insert(id.clone(), call);
        self.open(&id, Side::Customer, customer);
    }

    /// Asks for one end of a new call.
    fn open(&mut self, id: &InteractionId, side: Side, opening: Opening) {
        let Some(call) = self.calls.get(id) else {
            return;
        };
        let op = match opening {
            Opening::Peer(media) => Op::CreatePeer {
                id: id.clone(),
                side,
                media,
            },
            Opening::Dial(to) => Op::Dial {
                id: id.clone(),
                side,
                to,
                service: call.service.clone(),
            },
            Opening::Answer(incoming) => Op::Answer {
                id: id.clone(),
                incoming,
            },
        };
        self.ops.push_back(op);
    }

    /// One end of a new call is there (`peer` with its offer, or a SIP call with its media
    /// and, once answered, codec), or could not be had.
    #[allow(clippy::type_complexity)]
    fn opened(
        &mut self,
        id: InteractionId,
        side: Side,
        result: Result<
            (
                Option<Id>,
                Option<(CallRef, SocketAddr, Option<Codec>)>,
                Option<String>,
            ),
            LegError,
        >,
    ) {
        let wanted = self
            .calls
            .get_mut(&id)
            .is_some_and(|c| matches!(c.end(side), End::Opening { .. }));
        let (peer, sip, offer) = match result {
            Ok(end) => end,
            Err(e) => {
                if wanted {
                    let who = match side {
                        Side::Customer => "the customer",
                        Side::Agent => "the agent",
                    };
                    // The other end, if opened, is closed with the call.
                    self.end_call(&id, &format!("{who} cannot be reached: {e}"));
                }
                return;
            }
        };
        if !wanted {
            // Released while it was being opened: it is not needed any more.
            if let Some(peer) = peer {
                self.ops.push_back(Op::ClosePeer(peer));
            }
            if let Some((call, ..)) = sip {
                self.ops.push_back(Op::Hangup(call));
            }
            return;
        }
        let call = self.calls.get_mut(&id).expect("wanted");
        let video = call.opens_video;
        match (peer, sip) {
            (Some(peer), _) => {
                *call.end(side) = End::peer(peer, video);
                self.by_peer.insert(peer, (id.clone(), side));
            }
            (None, Some((sip, media, codec))) => {
                *call.end(side) = End::Sip {
                    call: sip,
                    media,
                    codec,
                };
                self.by_sip_call.insert(sip, (id.clone(), side));
            }
            (None, None) => unreachable!("an opened end is a peer or a call"),
        }
        if let Some(offer) = offer {
            call.offers.push((side, offer));
        }
        if let Some((next, opening)) = call.to_open.pop_front() {
            self.open(&id, next, opening);
            return;
        }
        // Both ends are there: the offers go out, customer's first.
        let offers = std::mem::take(&mut call.offers);
        for (side, offer) in offers {
            self.offer(&id, side, offer, video);
        }
        self.progress(&id);
    }

    fn release(&mut self, id: InteractionId, leg: LegId) {
        let Some(call) = self.calls.get_mut(&id) else {
            self.released(&id, leg, "released");
            return;
        };
        if call.video == Some(leg) && call.voice.is_some() {
            // Video goes, the call stays.
            call.video = None;
            call.video_up = false;
            call.want_video = false;
            self.renegotiate(&id);
            self.released(&id, leg, "released");
        } else if call.voice == Some(leg) || call.video == Some(leg) {
            self.end_call(&id, "released");
        } else {
            self.released(&id, leg, "released");
        }
    }

    fn signal(&mut self, id: InteractionId, from: Party, data: Value) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let side = match &from {
            Party::Customer => Side::Customer,
            Party::Agent(a) if *a == call.agent => Side::Agent,
            _ => return,
        };
        match data.get("type").and_then(Value::as_str) {
            Some("ANSWER_CALL") => {}
            // ICE-lite: the gateway learns the client's address from its checks, so trickled
            // candidates add nothing.
            _ => return,
        }
        let Some(sdp) = data.get("sdp").and_then(Value::as_str) else {
            return;
        };
        let Some(peer) = call.end(side).as_peer() else {
            return;
        };
        if !peer.awaiting_answer {
            tracing::debug!(interaction = %id, "answer without an offer ignored");
            return;
        }
        let peer = peer.id;
        let sdp = sdp.to_string();
        self.ops.push_back(Op::ApplyAnswer {
            id,
            side,
            peer,
            sdp,
        });
    }

    /// Offers the wanted video state to each peer that has no offer outstanding and differs.
    fn renegotiate(&mut self, id: &InteractionId) {
        for side in [Side::Customer, Side::Agent] {
            let Some(call) = self.calls.get_mut(id) else {
                return;
            };
            let want = call.want_video;
            let Some(peer) = call.end(side).as_peer() else {
                continue;
            };
            if peer.awaiting_answer || peer.offered_video == want {
                continue;
            }
            peer.awaiting_answer = true;
            peer.offered_video = want;
            let peer = peer.id;
            self.ops.push_back(Op::SetVideo {
                id: id.clone(),
                side,
                peer,
                on: want,
            });
        }
    }

    /// Joins the media once both ends are ready and reports legs up as their media flows.
    fn progress(&mut self, id: &InteractionId) {
        let Some(call) = self.calls.get_mut(id) else {
            return;
        };
        if !(call.customer.ready() && call.staff.ready()) {
            return;
        }
        match call.join {
            Join::No => {
                call.join = Join::Asked;
                let op = match (&call.customer, &call.staff) {
                    (End::Peer(a), End::Peer(b)) => Op::Link {
                        id: id.clone(),
                        a: a.id,
                        b: b.id,
                    },
                    (End::Peer(p), End::Sip { media, codec, .. })
                    | (End::Sip { media, codec, .. }, End::Peer(p)) => Op::BridgeRtp {
                        id: id.clone(),
                        peer: p.id,
                        remote: *media,
                        codec: codec.expect("a ready SIP end has its codec"),
                    },
                    (End::Sip { call: customer, .. }, End::Sip { call: agent, .. }) => {
                        Op::BridgeCalls {
                            id: id.clone(),
                            customer: *customer,
                            agent: *agent,
                        }
                    }
                    _ => unreachable!("ready ends are open"),
                };
                self.ops.push_back(op);
                return;
            }
            Join::Asked => return,
            Join::Done => {}
        }
        let mut up = Vec::new();
        if let Some(leg) = call.voice
            && !call.voice_up
        {
            call.voice_up = true;
            up.push(leg);
        }
        let video_settled = call.want_video
            && call.customer.settled()
            && call.staff.settled()
            && call.customer.as_peer().is_some_and(|p| p.offered_video);
        if let Some(leg) = call.video
            && video_settled
            && !call.video_up
        {
            call.video_up = true;
            up.push(leg);
        }
        for leg in up {
            self.report(id, Party::System, Command::LegUp { leg });
        }
    }

    /// Records a joined voice call when its service records: the customer's side on the left,
    /// the agent's on the right, whichever engine legs carry them.
    fn start_recording(&mut self, id: &InteractionId) {
        let Some(call) = self.calls.get(id) else {
            return;
        };
        let Some(leg) = call.voice else {
            return;
        };
        let (customer, agent) = match (&call.customer, &call.staff) {
            (End::Sip { call: sip, .. }, End::Peer(_)) => (AppLeg::Far(*sip), AppLeg::Local(*sip)),
            (End::Peer(_), End::Sip { call: sip, .. }) => (AppLeg::Local(*sip), AppLeg::Far(*sip)),
            (End::Sip { call: c, .. }, End::Sip { call: a, .. }) => {
                (AppLeg::Far(*c), AppLeg::Far(*a))
            }
            // Two peers meet in the WebRTC service, where nothing records.
            _ => return,
        };
        self.ops.push_back(Op::Record {
            id: id.clone(),
            service: call.service.clone(),
            leg,
            customer,
            agent,
        });
    }

    /// Releases both ends (a SIP end that already ended is no longer mapped and is left alone;
    /// an end still being opened is closed when it arrives) and reports every leg of the call
    /// released: at once, or, when answered SIP ends were sent a BYE, once every BYE is
    /// answered or timed out (the SIP core always reports one). A recording is reported
    /// first, so the call's end lists it.
    fn end_call(&mut self, id: &InteractionId, reason: &str) {
        let Some(call) = self.calls.remove(id) else {
            return;
        };
        if let (Some(leg), Some(file)) = (call.voice, call.recording.clone()) {
            self.report(id, Party::System, Command::LegRecorded { leg, file });
        }
        let legs = call.legs();
        let mut byes = Vec::new();
        for end in [call.customer, call.staff] {
            match end {
                End::Peer(p) => {
                    self.by_peer.remove(&p.id);
                    self.ops.push_back(Op::ClosePeer(p.id));
                }
                End::Sip { call: sip, .. } => {
                    if self.by_sip_call.remove(&sip).is_some() {
                        // Answered: a BYE went out, and the call is gone once it is answered.
                        // Ringing: a CANCEL, and the call is gone with the INVITE's final
                        // answer (487, or a 2xx that crossed the CANCEL and was hung up).
                        self.ops.push_back(Op::Hangup(sip));
                        byes.push(sip);
                    }
                }
                End::Opening { .. } => {}
            }
        }
        if byes.is_empty() {
            for leg in legs {
                self.released(id, leg, reason);
            }
            return;
        }
        for sip in byes {
            let waiting = (id.clone(), legs.clone(), reason.to_string());
            self.releasing.insert(sip, waiting);
        }
    }

    fn offer(&mut self, id: &InteractionId, side: Side, sdp: String, video: bool) {
        let Some(call) = self.calls.get(id) else {
            return;
        };
        tracing::debug!(interaction = %id, ?side, video, "offer");
        let data = json!({"type": "OFFER_CALL", "offerVideo": video, "sdp": sdp,
                          "iceServers": self.ice_servers});
        let to = match side {
            Side::Customer => Party::Customer,
            Side::Agent => Party::Agent(call.agent.clone()),
        };
        self.report(id, Party::System, Command::SignalTo { to, data });
    }

    fn released(&mut self, id: &InteractionId, leg: LegId, reason: &str) {
        let reason = Some(reason.to_string());
        self.report(id, Party::System, Command::LegReleased { leg, reason });
    }

    fn report(&mut self, id: &InteractionId, by: Party, command: Command) {
        self.ops.push_back(Op::Report {
            id: id.clone(),
            by,
            command,
        });
    }

    fn reject(&mut self, incoming: ServerTxId, code: u16, reason: &str) {
        self.ops.push_back(Op::Reject {
            incoming,
            code,
            reason: reason.to_string(),
        });
    }
}
