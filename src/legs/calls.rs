//! The call driver: the media ends of every call of an interaction, and how they are joined.
//!
//! A call has two ends. The customer's end is the app (a WebRTC peer) or the customer's phone
//! (a SIP call through the service's trunk); the agent's end is the agent's browser (a second
//! WebRTC peer) or the SIP softphone registered under the agent's name. The gateway offers every
//! peer (it is ICE-lite and always the offerer): the app's offer goes out as `OFFER_CALL` in the
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

use std::collections::HashMap;
use std::fmt::Debug;
use std::future::Future;
use std::hash::Hash;
use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Interactions;
use crate::bridge::{
    Action, AgentDevice, AgentId, CallerId, Command, InteractionId, LegId, LegKind, LegTarget,
    Party,
};
use crate::metrics::Metrics;
use crate::sip::core::{AppLeg, CallRef, CallSource};
use crate::sip::driver::{IncomingCall, IncomingEvent, SipCallEvent};
use crate::sip::sdp::Codec;
use crate::sip::transaction::ServerTxId;

/// What the driver needs of the WebRTC service.
pub trait Peers: Send + Sync + 'static {
    type Id: Copy + Eq + Hash + Debug + Send + Sync + 'static;
    /// A new peer with these media sections, and the gateway's SDP offer for it.
    fn create(
        &self,
        audio: bool,
        video: bool,
    ) -> impl Future<Output = Result<(Self::Id, String), String>> + Send;
    /// Applies the remote answer to the outstanding offer.
    fn answer(
        &self,
        peer: Self::Id,
        sdp: String,
    ) -> impl Future<Output = Result<(), String>> + Send;
    /// Adds or removes video; returns the new offer.
    fn set_video(
        &self,
        peer: Self::Id,
        on: bool,
    ) -> impl Future<Output = Result<String, String>> + Send;
    /// Forwards media between two connected peers, both ways.
    fn link(&self, a: Self::Id, b: Self::Id) -> impl Future<Output = Result<(), String>> + Send;
    /// Sends the peer's audio as plain RTP in `codec` to `remote`, and plays what comes back.
    fn bridge_rtp(
        &self,
        peer: Self::Id,
        remote: SocketAddr,
        codec: Codec,
    ) -> impl Future<Output = Result<(), String>> + Send;
    fn close(&self, peer: Self::Id) -> impl Future<Output = ()> + Send;
    /// STUN/TURN URLs handed to clients with every offer.
    fn ice_servers(&self) -> Vec<String>;
}

/// What the driver needs of SIP: calls whose audio arrives on a local RTP address, and whose
/// progress comes back as [`SipCallEvent`]s on the driver's channel.
pub trait Phones: Send + Sync + 'static {
    /// Calls the softphone registered under the agent's name.
    fn dial_agent(
        &self,
        agent: &AgentId,
        interaction: &InteractionId,
        service: &str,
    ) -> impl Future<Output = Result<(CallRef, SocketAddr), String>> + Send;
    /// Calls the agent's own mobile number through the service's trunk.
    fn dial_mobile(
        &self,
        agent: &AgentId,
        interaction: &InteractionId,
        service: &str,
    ) -> impl Future<Output = Result<(CallRef, SocketAddr), String>> + Send;
    /// Calls a customer's number through the service's trunk.
    fn dial_number(
        &self,
        number: &str,
        interaction: &InteractionId,
        service: &str,
    ) -> impl Future<Output = Result<(CallRef, SocketAddr), String>> + Send;
    fn hangup(&self, call: CallRef) -> impl Future<Output = ()> + Send;
    /// Answers a call that came in for an interaction.
    fn accept_incoming(
        &self,
        incoming: ServerTxId,
    ) -> impl Future<Output = Result<(CallRef, SocketAddr, Codec), String>> + Send;
    /// Refuses a call that came in for an interaction.
    fn reject_incoming(
        &self,
        incoming: ServerTxId,
        code: u16,
        why: &str,
    ) -> impl Future<Output = ()> + Send;
    /// Joins two answered calls to each other in the media engine.
    fn bridge(
        &self,
        customer: CallRef,
        agent: CallRef,
    ) -> impl Future<Output = Result<(), String>> + Send;
    /// Records call `leg` of the interaction when its service records: `customer` on the
    /// left, `agent` on the right. Returns the recording's file name.
    fn record(
        &self,
        interaction: &InteractionId,
        service: &str,
        leg: LegId,
        customer: AppLeg,
        agent: AppLeg,
    ) -> impl Future<Output = Option<String>> + Send;
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

/// Which end of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Customer,
    Agent,
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
            End::Sip { .. } => None,
        }
    }

    /// Media can flow: the peer is connected, or the SIP call answered.
    fn ready(&self) -> bool {
        match self {
            End::Peer(p) => p.connected,
            End::Sip { codec, .. } => codec.is_some(),
        }
    }

    /// No offer is outstanding.
    fn settled(&self) -> bool {
        match self {
            End::Peer(p) => !p.awaiting_answer,
            End::Sip { .. } => true,
        }
    }
}

/// One call: its two ends and the interaction's legs it carries.
struct Call<Id> {
    agent: AgentId,
    /// Where the agent talks.
    device: AgentDevice,
    service: String,
    /// The recording's file name, once recording.
    recording: Option<String>,
    customer: End<Id>,
    staff: End<Id>,
    voice: Option<LegId>,
    video: Option<LegId>,
    want_video: bool,
    joined: bool,
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
}

/// The driver's state; [`Driver::run`] feeds it from the hub's actions, the peers' events and
/// the SIP calls' events.
pub struct Driver<P: Peers, S: Phones, I: Interactions> {
    peers: P,
    phones: S,
    interactions: I,
    calls: HashMap<InteractionId, Call<P::Id>>,
    by_peer: HashMap<P::Id, (InteractionId, Side)>,
    by_sip_call: HashMap<CallRef, (InteractionId, Side)>,
    /// Answered SIP ends hung up and waiting for the answer to their BYE (or its timeout):
    /// the legs to report released then, and why.
    releasing: HashMap<CallRef, (InteractionId, Vec<LegId>, String)>,
    /// Calls that came in for an interaction (or opened one), waiting for it to start their
    /// leg or refuse them.
    inbound: HashMap<InteractionId, ServerTxId>,
    metrics: Option<Arc<Metrics>>,
}

impl<P: Peers, S: Phones, I: Interactions> Driver<P, S, I> {
    pub fn new(peers: P, phones: S, interactions: I) -> Self {
        Driver {
            peers,
            phones,
            interactions,
            calls: HashMap::new(),
            by_peer: HashMap::new(),
            by_sip_call: HashMap::new(),
            releasing: HashMap::new(),
            inbound: HashMap::new(),
            metrics: None,
        }
    }

    /// Publishes the number of calls in progress as `app_calls`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Calls in progress (for metrics and leak checks).
    pub fn calls(&self) -> usize {
        self.calls.len()
    }

    /// Serves until `shutdown`, or until the hub's actions end; then releases every call.
    pub async fn run(
        mut self,
        mut actions: mpsc::UnboundedReceiver<(InteractionId, Action)>,
        mut events: mpsc::Receiver<PeerEvent<P::Id>>,
        mut sip: mpsc::UnboundedReceiver<SipCallEvent>,
        mut incoming: mpsc::UnboundedReceiver<IncomingEvent>,
        shutdown: CancellationToken,
    ) {
        loop {
            tokio::select! {
                Some(call) = incoming.recv() => match call {
                    IncomingEvent::Call(call) => self.handle_incoming(call).await,
                    IncomingEvent::ServiceCall { incoming, number, caller } => {
                        self.handle_service_call(incoming, &number, &caller).await
                    }
                    IncomingEvent::Cancelled(incoming) => self.handle_cancelled(incoming).await,
                },
                action = actions.recv() => match action {
                    Some((id, action)) => self.handle_action(id, action).await,
                    None => break,
                },
                Some(event) = events.recv() => self.handle_event(event).await,
                Some(event) = sip.recv() => self.handle_sip(event).await,
                _ = shutdown.cancelled() => break,
            }
            if let Some(metrics) = &self.metrics {
                metrics.app_calls.set(self.calls.len() as i64);
            }
        }
        let ids: Vec<InteractionId> = self.calls.keys().cloned().collect();
        for id in ids {
            self.end_call(&id, "gateway stopping").await;
        }
        // Nobody is left to deliver the answers to the BYEs (both ends of a call may wait).
        let mut releasing: HashMap<InteractionId, (Vec<LegId>, String)> = HashMap::new();
        for (_, (id, legs, reason)) in self.releasing.drain() {
            releasing.insert(id, (legs, reason));
        }
        for (id, (legs, reason)) in releasing {
            for leg in legs {
                self.released(&id, leg, &reason).await;
            }
        }
    }

    pub async fn handle_action(&mut self, id: InteractionId, action: Action) {
        match action {
            Action::StartLeg {
                leg,
                kind,
                target,
                service,
                device,
            } => self.start(id, leg, kind, target, &service, device).await,
            Action::ReleaseLeg { leg } => self.release(id, leg).await,
            Action::RefuseCall { leg, reason } => self.refuse(id, leg, &reason).await,
            Action::Signal { from, data } => self.signal(id, from, data).await,
            Action::PersistTranscript => {}
        }
    }

    pub async fn handle_event(&mut self, event: PeerEvent<P::Id>) {
        match event {
            PeerEvent::Connected(peer) => {
                let Some((id, side)) = self.by_peer.get(&peer).cloned() else {
                    return;
                };
                if let Some(p) = self.calls.get_mut(&id).and_then(|c| c.end(side).as_peer()) {
                    p.connected = true;
                }
                self.progress(&id).await;
            }
            PeerEvent::VideoDropped(peer) => {
                let Some((id, Side::Customer)) = self.by_peer.get(&peer).cloned() else {
                    return;
                };
                // The customer may drop video alone (rule 6); their client did so by its answer.
                let command = Command::DropVideo;
                if let Err(e) = self
                    .interactions
                    .command(&id, Party::Customer, command)
                    .await
                {
                    tracing::debug!(interaction = %id, "video drop not taken: {e}");
                }
            }
            PeerEvent::Closed { peer, reason } => {
                let Some((id, _)) = self.by_peer.remove(&peer) else {
                    return;
                };
                tracing::info!(interaction = %id, %reason, "WebRTC peer closed");
                self.end_call(&id, &reason).await;
            }
        }
    }

    /// A call came in naming an interaction: the interaction decides whether it joins (a
    /// trunk must vouch that the caller is the chat's customer, or the call carries the chat's
    /// join token; the chat active and without a call); if it does, its leg starts with this
    /// call as the customer's end.
    pub async fn handle_incoming(&mut self, call: IncomingCall) {
        let id = InteractionId(call.interaction.clone());
        if self.calls.contains_key(&id) || self.inbound.contains_key(&id) {
            self.phones
                .reject_incoming(call.incoming, 486, "Call In Progress")
                .await;
            return;
        }
        self.inbound.insert(id.clone(), call.incoming);
        let caller = match call.source {
            CallSource::Trunk => CallerId::Trunk(call.caller.clone()),
            CallSource::Other => CallerId::Claimed(call.caller.clone()),
        };
        let command = Command::JoinCall {
            caller,
            token: call.token.clone(),
        };
        if let Err(code) = self.interactions.command(&id, Party::System, command).await {
            self.inbound.remove(&id);
            let (status, why) = match code.as_str() {
                "not_permitted" => (403, "Not The Customer Of This Interaction"),
                "bad_join_token" => (403, "Bad Join Token"),
                "caller_not_vouched" => (403, "Join Token Required Outside A Trunk"),
                "call_in_progress" => (486, "Call In Progress"),
                _ => (480, "Interaction Not Active"),
            };
            tracing::info!(interaction = %id, caller = %call.caller, %code, "incoming call refused");
            self.phones
                .reject_incoming(call.incoming, status, why)
                .await;
        }
    }

    /// A trunk call to a service number: it opens an interaction (the interaction routes it,
    /// and starts its leg once an agent accepts, or refuses it); meanwhile it keeps ringing.
    pub async fn handle_service_call(&mut self, incoming: ServerTxId, number: &str, caller: &str) {
        match self.interactions.open_for_call(number, caller).await {
            Ok(id) => {
                self.inbound.insert(id, incoming);
            }
            Err(e) => {
                tracing::warn!(%number, %caller, "cannot open an interaction for a call: {e}");
                self.phones
                    .reject_incoming(incoming, 480, "Cannot Open An Interaction")
                    .await;
            }
        }
    }

    /// The caller of a waiting call hung up (the SIP side answered the CANCEL already).
    pub async fn handle_cancelled(&mut self, incoming: ServerTxId) {
        let Some(id) = self
            .inbound
            .iter()
            .find(|(_, tx)| **tx == incoming)
            .map(|(id, _)| id.clone())
        else {
            return;
        };
        match self
            .interactions
            .command(&id, Party::System, Command::CallAbandoned)
            .await
        {
            Ok(()) => {
                self.inbound.remove(&id);
            }
            // An agent accepted just before: the leg's start is on its way, and answering the
            // call it finds gone releases the leg.
            Err(code) => tracing::info!(interaction = %id, %code, "hang-up after the accept"),
        }
    }

    /// The interaction refuses the call that opened it (nobody accepted it).
    async fn refuse(&mut self, id: InteractionId, leg: LegId, reason: &str) {
        if let Some(incoming) = self.inbound.remove(&id) {
            self.phones.reject_incoming(incoming, 480, reason).await;
        }
        self.released(&id, leg, reason).await;
    }

    pub async fn handle_sip(&mut self, event: SipCallEvent) {
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
                    self.released(&id, leg, &reason).await;
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
                let command = Command::LegProgress {
                    leg,
                    note: note.to_string(),
                };
                if let Err(e) = self.interactions.command(&id, Party::System, command).await {
                    tracing::debug!(interaction = %id, "progress not taken: {e}");
                }
            }
            SipCallEvent::Answered { codec, .. } => {
                if let Some(End::Sip { codec: c, .. }) =
                    self.calls.get_mut(&id).map(|call| call.end(side))
                {
                    *c = Some(codec);
                }
                self.progress(&id).await;
            }
            SipCallEvent::Failed { code, .. } => {
                self.by_sip_call.remove(&call);
                let reason = match code {
                    486 | 600 | 603 => format!("{who} is busy"),
                    408 | 480 | 487 => format!("{who} did not answer"),
                    code => format!("{who} refused the call ({code})"),
                };
                self.end_call(&id, &reason).await;
            }
            SipCallEvent::Ended { by_peer, .. } => {
                self.by_sip_call.remove(&call);
                let reason = if by_peer {
                    format!("{who} hung up")
                } else {
                    "released".to_string()
                };
                self.end_call(&id, &reason).await;
            }
            SipCallEvent::Dtmf { digit, .. } => {
                // Only what the customer keys belongs in the chat's record.
                let leg = self.calls.get(&id).and_then(|c| c.voice);
                if let (Side::Customer, Some(leg)) = (side, leg) {
                    let command = Command::Dtmf { leg, digit };
                    if let Err(e) = self.interactions.command(&id, Party::System, command).await {
                        tracing::debug!(interaction = %id, "digit not taken: {e}");
                    }
                }
            }
        }
    }

    async fn start(
        &mut self,
        id: InteractionId,
        leg: LegId,
        kind: LegKind,
        target: LegTarget,
        service: &str,
        device: AgentDevice,
    ) {
        tracing::debug!(interaction = %id, %leg, ?kind, ?target, ?device, "start leg");
        if let Some(call) = self.calls.get_mut(&id) {
            let peers = matches!(call.customer, End::Peer(_)) && matches!(call.staff, End::Peer(_));
            match kind {
                LegKind::Video if !peers => {
                    self.released(&id, leg, "video needs the app and the agent's browser")
                        .await;
                }
                LegKind::Video if call.video.is_none() => {
                    call.video = Some(leg);
                    call.want_video = true;
                    self.renegotiate(&id).await;
                }
                // One call, one video at a time: the interaction never asks for a second.
                _ => self.released(&id, leg, "busy").await,
            }
            return;
        }
        let Some(agent) = self.interactions.agent(&id).await else {
            self.released(&id, leg, "no agent").await;
            return;
        };
        let (audio, video) = (kind == LegKind::Voice, kind == LegKind::Video);
        let device = if video { AgentDevice::Browser } else { device };
        let customer = match (&target, self.inbound.remove(&id)) {
            (LegTarget::App, _) => self.open_peer(audio, video).await,
            // The customer called in: answer that call.
            (LegTarget::Phone(_), Some(incoming)) => self
                .phones
                .accept_incoming(incoming)
                .await
                .map(|(call, media, codec)| {
                    let end = End::Sip {
                        call,
                        media,
                        codec: Some(codec),
                    };
                    (end, None)
                }),
            (LegTarget::Phone(number), None) => self
                .phones
                .dial_number(number, &id, service)
                .await
                .map(|(call, media)| (sip_end(call, media), None)),
        };
        let (customer, customer_offer) = match customer {
            Ok(end) => end,
            Err(e) => {
                self.released(&id, leg, &format!("the customer cannot be reached: {e}"))
                    .await;
                return;
            }
        };
        let staff = match device {
            AgentDevice::Browser => self.open_peer(audio, video).await,
            AgentDevice::Softphone => self
                .phones
                .dial_agent(&agent, &id, service)
                .await
                .map(|(call, media)| (sip_end(call, media), None)),
            AgentDevice::Mobile => self
                .phones
                .dial_mobile(&agent, &id, service)
                .await
                .map(|(call, media)| (sip_end(call, media), None)),
        };
        let (staff, staff_offer) = match staff {
            Ok(end) => end,
            Err(e) => {
                self.close_end(customer).await;
                self.released(&id, leg, &format!("the agent cannot be reached: {e}"))
                    .await;
                return;
            }
        };
        for (end, side) in [(&customer, Side::Customer), (&staff, Side::Agent)] {
            match end {
                End::Peer(p) => {
                    self.by_peer.insert(p.id, (id.clone(), side));
                }
                End::Sip { call, .. } => {
                    self.by_sip_call.insert(*call, (id.clone(), side));
                }
            }
        }
        let call = Call {
            agent,
            device,
            service: service.to_string(),
            recording: None,
            customer,
            staff,
            voice: audio.then_some(leg),
            video: video.then_some(leg),
            want_video: video,
            joined: false,
            voice_up: false,
            video_up: false,
        };
        self.calls.insert(id.clone(), call);
        if let Some(offer) = customer_offer {
            self.offer(&id, Side::Customer, offer, video).await;
        }
        if let Some(offer) = staff_offer {
            self.offer(&id, Side::Agent, offer, video).await;
        }
    }

    /// A new peer as one end of a call, with the offer to send.
    async fn open_peer(
        &self,
        audio: bool,
        video: bool,
    ) -> Result<(End<P::Id>, Option<String>), String> {
        let (peer, offer) = self.peers.create(audio, video).await?;
        Ok((End::peer(peer, video), Some(offer)))
    }

    async fn close_end(&self, end: End<P::Id>) {
        match end {
            End::Peer(p) => self.peers.close(p.id).await,
            End::Sip { call, .. } => self.phones.hangup(call).await,
        }
    }

    async fn release(&mut self, id: InteractionId, leg: LegId) {
        let Some(call) = self.calls.get_mut(&id) else {
            self.released(&id, leg, "released").await;
            return;
        };
        if call.video == Some(leg) && call.voice.is_some() {
            // Video goes, the call stays.
            call.video = None;
            call.video_up = false;
            call.want_video = false;
            self.renegotiate(&id).await;
            self.released(&id, leg, "released").await;
        } else if call.voice == Some(leg) || call.video == Some(leg) {
            self.end_call(&id, "released").await;
        } else {
            self.released(&id, leg, "released").await;
        }
    }

    async fn signal(&mut self, id: InteractionId, from: Party, data: Value) {
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
        let peer_id = peer.id;
        match self.peers.answer(peer_id, sdp.to_string()).await {
            Ok(()) => {
                if let Some(p) = self.calls.get_mut(&id).and_then(|c| c.end(side).as_peer()) {
                    p.awaiting_answer = false;
                }
                self.renegotiate(&id).await;
                self.progress(&id).await;
            }
            Err(e) => {
                tracing::info!(interaction = %id, "unusable SDP answer: {e}");
                self.end_call(&id, "unusable SDP answer").await;
            }
        }
    }

    /// Offers the wanted video state to each peer that has no offer outstanding and differs.
    async fn renegotiate(&mut self, id: &InteractionId) {
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
            let peer_id = peer.id;
            match self.peers.set_video(peer_id, want).await {
                Ok(sdp) => self.offer(id, side, sdp, want).await,
                Err(e) => {
                    tracing::warn!(interaction = %id, "cannot renegotiate video: {e}");
                    self.end_call(id, "renegotiation failed").await;
                    return;
                }
            }
        }
    }

    /// Joins the media once both ends are ready and reports legs up as their media flows.
    async fn progress(&mut self, id: &InteractionId) {
        let Some(call) = self.calls.get_mut(id) else {
            return;
        };
        if !(call.customer.ready() && call.staff.ready()) {
            return;
        }
        if !call.joined {
            call.joined = true;
            let joined = match (&call.customer, &call.staff) {
                (End::Peer(a), End::Peer(b)) => self.peers.link(a.id, b.id).await,
                (End::Peer(p), End::Sip { media, codec, .. })
                | (End::Sip { media, codec, .. }, End::Peer(p)) => {
                    let codec = codec.expect("a ready SIP end has its codec");
                    self.peers.bridge_rtp(p.id, *media, codec).await
                }
                (End::Sip { call: customer, .. }, End::Sip { call: agent, .. }) => {
                    self.phones.bridge(*customer, *agent).await
                }
            };
            if let Err(e) = joined {
                tracing::warn!(interaction = %id, "cannot join the media: {e}");
                self.end_call(id, "media path failed").await;
                return;
            }
            self.start_recording(id).await;
        }
        let call = self.calls.get_mut(id).expect("call");
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
            let command = Command::LegUp { leg };
            if let Err(e) = self.interactions.command(id, Party::System, command).await {
                tracing::debug!(interaction = %id, "leg up not taken: {e}");
            }
        }
    }

    /// Records a joined voice call when its service records: the customer's side on the left,
    /// the agent's on the right, whichever engine legs carry them.
    async fn start_recording(&mut self, id: &InteractionId) {
        let Some(call) = self.calls.get(id) else {
            return;
        };
        let Some(leg) = call.voice else {
            return;
        };
        let (customer, agent) = match (&call.customer, &call.staff) {
            (End::Peer(_), End::Peer(_)) => return,
            (End::Sip { call: sip, .. }, End::Peer(_)) => (AppLeg::Far(*sip), AppLeg::Local(*sip)),
            (End::Peer(_), End::Sip { call: sip, .. }) => (AppLeg::Local(*sip), AppLeg::Far(*sip)),
            (End::Sip { call: c, .. }, End::Sip { call: a, .. }) => {
                (AppLeg::Far(*c), AppLeg::Far(*a))
            }
        };
        let service = call.service.clone();
        let file = self.phones.record(id, &service, leg, customer, agent).await;
        if let Some(call) = self.calls.get_mut(id) {
            call.recording = file;
        }
    }

    /// Releases both ends (a SIP end that already ended is no longer mapped and is left alone)
    /// and reports every leg of the call released: at once, or, when answered SIP ends were
    /// sent a BYE, once every BYE is answered or timed out (the SIP core always reports one).
    /// A recording is reported first, so the call's end lists it.
    async fn end_call(&mut self, id: &InteractionId, reason: &str) {
        let Some(call) = self.calls.remove(id) else {
            return;
        };
        if let (Some(leg), Some(file)) = (call.voice, call.recording.clone()) {
            let command = Command::LegRecorded { leg, file };
            if let Err(e) = self.interactions.command(id, Party::System, command).await {
                tracing::debug!(interaction = %id, "recording not taken: {e}");
            }
        }
        let legs: Vec<LegId> = [call.voice, call.video].into_iter().flatten().collect();
        let mut byes = Vec::new();
        for end in [call.customer, call.staff] {
            match end {
                End::Peer(p) => {
                    self.by_peer.remove(&p.id);
                    self.peers.close(p.id).await;
                }
                End::Sip { call: sip, .. } => {
                    if self.by_sip_call.remove(&sip).is_some() {
                        // Answered: a BYE went out, and the call is gone once it is answered.
                        // Ringing: a CANCEL, and the call is gone with the INVITE's final
                        // answer (487, or a 2xx that crossed the CANCEL and was hung up).
                        self.phones.hangup(sip).await;
                        byes.push(sip);
                    }
                }
            }
        }
        if byes.is_empty() {
            for leg in legs {
                self.released(id, leg, reason).await;
            }
            return;
        }
        for sip in byes {
            let waiting = (id.clone(), legs.clone(), reason.to_string());
            self.releasing.insert(sip, waiting);
        }
    }

    async fn offer(&mut self, id: &InteractionId, side: Side, sdp: String, video: bool) {
        let Some(call) = self.calls.get(id) else {
            return;
        };
        tracing::debug!(interaction = %id, ?side, video, "offer");
        let data = json!({"type": "OFFER_CALL", "offerVideo": video, "sdp": sdp,
                          "iceServers": self.peers.ice_servers()});
        let to = match side {
            Side::Customer => Party::Customer,
            Side::Agent => Party::Agent(call.agent.clone()),
        };
        let command = Command::SignalTo { to, data };
        if let Err(e) = self.interactions.command(id, Party::System, command).await {
            tracing::debug!(interaction = %id, "offer not delivered: {e}");
        }
    }

    async fn released(&self, id: &InteractionId, leg: LegId, reason: &str) {
        let command = Command::LegReleased {
            leg,
            reason: Some(reason.to_string()),
        };
        if let Err(e) = self.interactions.command(id, Party::System, command).await {
            tracing::debug!(interaction = %id, "leg release not taken: {e}");
        }
    }
}

fn sip_end<Id>(call: CallRef, media: SocketAddr) -> End<Id> {
    End::Sip {
        call,
        media,
        codec: None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Debug, Clone, PartialEq)]
    enum Op {
        Create { peer: u32, video: bool },
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

    #[derive(Clone, Default)]
    struct FakePeers {
        ops: Arc<Mutex<Vec<Op>>>,
        next: Arc<Mutex<u32>>,
        refuse_answers: bool,
    }

    impl Peers for FakePeers {
        type Id = u32;
        async fn create(&self, _audio: bool, video: bool) -> Result<(u32, String), String> {
            let mut next = self.next.lock().unwrap();
            *next += 1;
            self.ops
                .lock()
                .unwrap()
                .push(Op::Create { peer: *next, video });
            Ok((*next, format!("offer-{next}")))
        }
        async fn answer(&self, peer: u32, _sdp: String) -> Result<(), String> {
            self.ops.lock().unwrap().push(Op::Answer(peer));
            if self.refuse_answers {
                Err("bad".into())
            } else {
                Ok(())
            }
        }
        async fn set_video(&self, peer: u32, on: bool) -> Result<String, String> {
            self.ops.lock().unwrap().push(Op::SetVideo(peer, on));
            Ok(format!("reoffer-{peer}"))
        }
        async fn link(&self, a: u32, b: u32) -> Result<(), String> {
            self.ops.lock().unwrap().push(Op::Link(a, b));
            Ok(())
        }
        async fn bridge_rtp(
            &self,
            peer: u32,
            _remote: SocketAddr,
            codec: Codec,
        ) -> Result<(), String> {
            self.ops.lock().unwrap().push(Op::Bridge(peer, codec));
            Ok(())
        }
        async fn close(&self, peer: u32) {
            self.ops.lock().unwrap().push(Op::Close(peer));
        }
        fn ice_servers(&self) -> Vec<String> {
            vec!["stun:stun.example.net".into()]
        }
    }

    impl Phones for FakePeers {
        async fn dial_agent(
            &self,
            agent: &AgentId,
            _interaction: &InteractionId,
            service: &str,
        ) -> Result<(CallRef, SocketAddr), String> {
            self.ops
                .lock()
                .unwrap()
                .push(Op::Dial(agent.0.clone(), service.to_string()));
            Ok((CallRef(77), "127.0.0.1:30000".parse().unwrap()))
        }
        async fn dial_mobile(
            &self,
            agent: &AgentId,
            _interaction: &InteractionId,
            service: &str,
        ) -> Result<(CallRef, SocketAddr), String> {
            self.ops
                .lock()
                .unwrap()
                .push(Op::Dial(format!("mobile of {agent}"), service.to_string()));
            Ok((CallRef(55), "127.0.0.1:30006".parse().unwrap()))
        }
        async fn dial_number(
            &self,
            number: &str,
            _interaction: &InteractionId,
            service: &str,
        ) -> Result<(CallRef, SocketAddr), String> {
            self.ops
                .lock()
                .unwrap()
                .push(Op::Dial(number.to_string(), service.to_string()));
            Ok((CallRef(88), "127.0.0.1:30002".parse().unwrap()))
        }
        async fn hangup(&self, call: CallRef) {
            self.ops.lock().unwrap().push(Op::Hangup(call.0));
        }
        async fn accept_incoming(
            &self,
            incoming: ServerTxId,
        ) -> Result<(CallRef, SocketAddr, Codec), String> {
            self.ops.lock().unwrap().push(Op::Accept(incoming.0));
            Ok((CallRef(66), "127.0.0.1:30004".parse().unwrap(), Codec::Pcma))
        }
        async fn reject_incoming(&self, incoming: ServerTxId, code: u16, _why: &str) {
            self.ops.lock().unwrap().push(Op::Reject(incoming.0, code));
        }
        async fn bridge(&self, customer: CallRef, agent: CallRef) -> Result<(), String> {
            let op = Op::BridgeCalls(customer.0, agent.0);
            self.ops.lock().unwrap().push(op);
            Ok(())
        }
        /// Only the `claims` service records.
        async fn record(
            &self,
            interaction: &InteractionId,
            service: &str,
            leg: LegId,
            customer: AppLeg,
            agent: AppLeg,
        ) -> Option<String> {
            if service != "claims" {
                return None;
            }
            self.ops.lock().unwrap().push(Op::Record(customer, agent));
            Some(format!("{interaction}-{}.wav", leg.0))
        }
    }

    #[derive(Clone, Default)]
    struct FakeInteractions {
        commands: Arc<Mutex<Vec<Command>>>,
        by_customer: Arc<Mutex<Vec<Command>>>,
    }

    impl Interactions for FakeInteractions {
        async fn command(
            &self,
            _id: &InteractionId,
            by: Party,
            command: Command,
        ) -> Result<(), String> {
            if by == Party::Customer {
                self.by_customer.lock().unwrap().push(command);
            } else {
                self.commands.lock().unwrap().push(command);
            }
            Ok(())
        }
        async fn agent(&self, _id: &InteractionId) -> Option<AgentId> {
            Some(AgentId::from("alice"))
        }
        async fn open_for_call(
            &self,
            number: &str,
            _caller: &str,
        ) -> Result<InteractionId, String> {
            match number {
                "+15550100" => Ok(InteractionId::from("i-1")),
                _ => Err("no such number".into()),
            }
        }
    }

    struct Rig {
        driver: Driver<FakePeers, FakePeers, FakeInteractions>,
        peers: FakePeers,
        it: FakeInteractions,
        id: InteractionId,
    }

    fn rig() -> Rig {
        let peers = FakePeers::default();
        let it = FakeInteractions::default();
        Rig {
            driver: Driver::new(peers.clone(), peers.clone(), it.clone()),
            peers,
            it,
            id: InteractionId::from("i-1"),
        }
    }

    fn alice() -> Party {
        Party::Agent(AgentId::from("alice"))
    }

    fn answer() -> Value {
        json!({"type": "ANSWER_CALL", "sdp": "v=0"})
    }

    impl Rig {
        async fn act(&mut self, action: Action) {
            self.driver.handle_action(self.id.clone(), action).await;
        }
        async fn start(&mut self, leg: u32, kind: LegKind) {
            self.start_on(leg, kind, AgentDevice::Browser).await;
        }
        /// The interaction asks for a call to the customer's phone, +15550100.
        async fn start_phone(&mut self, leg: u32, device: AgentDevice) {
            let action = Action::StartLeg {
                leg: LegId(leg),
                kind: LegKind::Voice,
                target: LegTarget::Phone("+15550100".into()),
                service: "claims".into(),
                device,
            };
            self.act(action).await;
        }
        async fn start_on(&mut self, leg: u32, kind: LegKind, device: AgentDevice) {
            let action = Action::StartLeg {
                leg: LegId(leg),
                kind,
                target: LegTarget::App,
                service: "claims".into(),
                device,
            };
            self.act(action).await;
        }
        async fn answer_both(&mut self) {
            for from in [Party::Customer, alice()] {
                let data = answer();
                self.act(Action::Signal { from, data }).await;
            }
        }
        async fn connect_both(&mut self) {
            for peer in [1, 2] {
                self.driver.handle_event(PeerEvent::Connected(peer)).await;
            }
        }
        fn ops(&self) -> Vec<Op> {
            self.peers.ops.lock().unwrap().clone()
        }
        fn commands(&self) -> Vec<Command> {
            self.it.commands.lock().unwrap().clone()
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
        async fn up_once_sip_answers(
            &mut self,
            from: Party,
            ringing: &str,
            call: u64,
            codec: Codec,
        ) {
            self.act(Action::Signal {
                from,
                data: answer(),
            })
            .await;
            self.driver.handle_event(PeerEvent::Connected(1)).await;
            assert!(self.ups().is_empty(), "{ringing}");
            self.driver
                .handle_sip(SipCallEvent::Answered {
                    call: CallRef(call),
                    codec,
                })
                .await;
            assert!(self.ops().contains(&Op::Bridge(1, codec)));
            assert_eq!(self.ups(), vec![1]);
        }
    }

    #[tokio::test]
    async fn a_voice_call_offers_both_sides_and_is_up_once_both_connect() {
        let mut r = rig();
        r.start(1, LegKind::Voice).await;
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
        r.answer_both().await;
        r.driver.handle_event(PeerEvent::Connected(1)).await;
        assert!(r.ups().is_empty(), "the agent's side is not connected yet");
        r.driver.handle_event(PeerEvent::Connected(2)).await;
        assert!(r.ops().contains(&Op::Link(1, 2)));
        assert_eq!(r.ups(), vec![1]);
        assert_eq!(r.driver.calls(), 1);
    }

    #[tokio::test]
    async fn video_allowed_while_offers_are_out_waits_for_the_answers() {
        let mut r = rig();
        r.start(1, LegKind::Voice).await;
        r.start(2, LegKind::Video).await;
        assert!(
            !r.ops().iter().any(|o| matches!(o, Op::SetVideo(..))),
            "no second offer while the first is unanswered"
        );
        r.answer_both().await;
        assert!(r.ops().contains(&Op::SetVideo(1, true)));
        assert!(r.ops().contains(&Op::SetVideo(2, true)));
        let video_offers: Vec<_> = r.offers().into_iter().filter(|o| o.1).collect();
        assert_eq!(video_offers.len(), 2);
        r.connect_both().await;
        assert_eq!(
            r.ups(),
            vec![1],
            "video is up only once its offers are answered"
        );
        r.answer_both().await;
        assert_eq!(r.ups(), vec![1, 2]);
    }

    #[tokio::test]
    async fn dropping_video_renegotiates_and_keeps_the_call() {
        let mut r = rig();
        r.start(1, LegKind::Voice).await;
        r.answer_both().await;
        r.connect_both().await;
        r.start(2, LegKind::Video).await;
        r.answer_both().await;
        assert_eq!(r.ups(), vec![1, 2]);
        r.act(Action::ReleaseLeg { leg: LegId(2) }).await;
        assert!(r.ops().contains(&Op::SetVideo(1, false)));
        assert!(r.ops().contains(&Op::SetVideo(2, false)));
        assert_eq!(r.released(), vec![(2, "released".into())]);
        assert!(!r.ops().iter().any(|o| matches!(o, Op::Close(_))));
        assert_eq!(r.driver.calls(), 1);
    }

    #[tokio::test]
    async fn a_closed_peer_ends_the_whole_call_with_its_reason() {
        let mut r = rig();
        r.start(1, LegKind::Voice).await;
        r.answer_both().await;
        r.connect_both().await;
        r.start(2, LegKind::Video).await;
        let reason = "ICE consent lost".to_string();
        r.driver
            .handle_event(PeerEvent::Closed { peer: 1, reason })
            .await;
        assert!(r.ops().contains(&Op::Close(1)) && r.ops().contains(&Op::Close(2)));
        assert_eq!(
            r.released(),
            vec![
                (1, "ICE consent lost".into()),
                (2, "ICE consent lost".into())
            ]
        );
        assert_eq!(r.driver.calls(), 0);
        // A late event for a peer already gone changes nothing.
        r.driver.handle_event(PeerEvent::Connected(2)).await;
        assert_eq!(r.ups(), vec![1]);
    }

    #[tokio::test]
    async fn every_release_is_answered_even_for_unknown_legs() {
        let mut r = rig();
        r.act(Action::ReleaseLeg { leg: LegId(7) }).await;
        assert_eq!(r.released(), vec![(7, "released".into())]);
        r.start(1, LegKind::Voice).await;
        r.act(Action::ReleaseLeg { leg: LegId(1) }).await;
        assert!(r.ops().contains(&Op::Close(1)) && r.ops().contains(&Op::Close(2)));
        assert_eq!(r.released().len(), 2);
        assert_eq!(r.driver.calls(), 0);
    }

    #[tokio::test]
    async fn answers_from_strangers_are_ignored_and_bad_answers_end_the_call() {
        let mut r = rig();
        r.start(1, LegKind::Voice).await;
        let mallory = Party::Agent(AgentId::from("mallory"));
        r.act(Action::Signal {
            from: mallory,
            data: answer(),
        })
        .await;
        assert!(!r.ops().iter().any(|o| matches!(o, Op::Answer(_))));

        let mut r = rig();
        r.peers.refuse_answers = true;
        r.driver = Driver::new(r.peers.clone(), r.peers.clone(), r.it.clone());
        r.start(1, LegKind::Voice).await;
        r.act(Action::Signal {
            from: Party::Customer,
            data: answer(),
        })
        .await;
        assert_eq!(r.released(), vec![(1, "unusable SDP answer".into())]);
        assert_eq!(r.driver.calls(), 0);
    }

    #[tokio::test]
    async fn a_call_to_the_customers_phone_rings_and_joins_the_agents_browser() {
        let mut r = rig();
        r.start_phone(1, AgentDevice::Browser).await;
        assert!(
            r.ops()
                .contains(&Op::Dial("+15550100".into(), "claims".into()))
        );
        assert_eq!(
            r.offers(),
            vec![(alice(), false, "offer-1".into())],
            "only the agent's browser gets an offer"
        );
        r.driver
            .handle_sip(SipCallEvent::Progress {
                call: CallRef(88),
                code: 180,
            })
            .await;
        assert!(r.commands().contains(&Command::LegProgress {
            leg: LegId(1),
            note: "ringing".into()
        }));
        r.up_once_sip_answers(alice(), "the phone still rings", 88, Codec::Pcmu)
            .await;
        // The agent releases: the phone gets its BYE, and the call is released once the
        // phone answered it.
        r.act(Action::ReleaseLeg { leg: LegId(1) }).await;
        assert!(r.ops().contains(&Op::Hangup(88)) && r.ops().contains(&Op::Close(1)));
        assert!(r.released().is_empty(), "the BYE is not answered yet");
        assert_eq!(r.driver.calls(), 0);
        r.driver
            .handle_sip(SipCallEvent::Ended {
                call: CallRef(88),
                by_peer: false,
            })
            .await;
        assert_eq!(r.released(), vec![(1, "released".into())]);
    }

    #[tokio::test]
    async fn a_busy_phone_is_reported() {
        let mut r = rig();
        r.start_phone(1, AgentDevice::Browser).await;
        r.driver.handle_sip(failed(88, 486)).await;
        assert_eq!(
            r.released(),
            vec![(1, "the customer's phone is busy".into())]
        );
        assert!(
            !r.ops().contains(&Op::Hangup(88)),
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

    #[tokio::test]
    async fn a_phone_and_a_softphone_are_bridged_once_both_answer_and_recorded() {
        let mut r = rig();
        r.start_phone(1, AgentDevice::Softphone).await;
        assert!(
            r.ops()
                .contains(&Op::Dial("+15550100".into(), "claims".into()))
        );
        assert!(r.ops().contains(&Op::Dial("alice".into(), "claims".into())));
        assert!(r.offers().is_empty(), "no WebRTC peer takes part");
        r.driver.handle_sip(answered(77, Codec::Pcmu)).await;
        assert!(r.ups().is_empty(), "the customer's phone still rings");
        r.driver.handle_sip(answered(88, Codec::Pcma)).await;
        assert!(r.ops().contains(&Op::BridgeCalls(88, 77)));
        assert!(
            r.ops().contains(&Op::Record(
                AppLeg::Far(CallRef(88)),
                AppLeg::Far(CallRef(77))
            )),
            "customer left, agent right"
        );
        assert_eq!(r.ups(), vec![1]);
        assert!(!r.ops().iter().any(|o| matches!(o, Op::Create { .. })));

        // The agent releases: both phones get a BYE, and the call is released once both
        // BYEs are answered; the recording is reported before the end.
        r.act(Action::ReleaseLeg { leg: LegId(1) }).await;
        assert!(r.ops().contains(&Op::Hangup(88)) && r.ops().contains(&Op::Hangup(77)));
        assert_eq!(recorded(&r), vec![(1, "i-1-1.wav".into())]);
        r.driver.handle_sip(ended(88, false)).await;
        assert!(
            r.released().is_empty(),
            "the softphone's BYE is not answered yet"
        );
        r.driver.handle_sip(ended(77, false)).await;
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

    #[tokio::test]
    async fn either_phone_hanging_up_ends_the_call_saying_who() {
        for (gone, other, reason) in [
            (88, 77, "the customer's phone hung up"),
            (77, 88, "the agent's softphone hung up"),
        ] {
            let mut r = rig();
            r.start_phone(1, AgentDevice::Softphone).await;
            r.driver.handle_sip(answered(77, Codec::Pcmu)).await;
            r.driver.handle_sip(answered(88, Codec::Pcmu)).await;
            r.driver.handle_sip(ended(gone, true)).await;
            assert!(r.ops().contains(&Op::Hangup(other)));
            assert!(!r.ops().contains(&Op::Hangup(gone)), "nothing to hang up");
            assert!(r.released().is_empty(), "the other BYE is not answered yet");
            r.driver.handle_sip(ended(other, false)).await;
            assert_eq!(r.released(), vec![(1, reason.into())]);
            assert_eq!(r.driver.calls(), 0);
        }
    }

    #[tokio::test]
    async fn the_agents_mobile_is_dialled_and_a_busy_one_ends_the_call() {
        let mut r = rig();
        r.start_phone(1, AgentDevice::Mobile).await;
        assert!(
            r.ops()
                .contains(&Op::Dial("mobile of alice".into(), "claims".into()))
        );
        r.driver.handle_sip(answered(88, Codec::Pcmu)).await;
        r.driver.handle_sip(failed(55, 486)).await;
        assert!(r.ops().contains(&Op::Hangup(88)), "the customer gets a BYE");
        assert!(!r.ops().iter().any(|o| matches!(o, Op::BridgeCalls(..))));
        assert!(recorded(&r).is_empty(), "nothing was recorded");
        r.driver.handle_sip(ended(88, false)).await;
        assert_eq!(r.released(), vec![(1, "the agent's mobile is busy".into())]);

        // An app call request the agent takes on the mobile: the app's peer is bridged to it.
        let mut r = rig();
        r.start_on(1, LegKind::Voice, AgentDevice::Mobile).await;
        r.up_once_sip_answers(Party::Customer, "the mobile still rings", 55, Codec::Pcma)
            .await;
        assert!(
            r.ops().contains(&Op::Record(
                AppLeg::Local(CallRef(55)),
                AppLeg::Far(CallRef(55))
            )),
            "the app's audio is on the local leg"
        );
    }

    #[tokio::test]
    async fn a_ringing_agent_phone_is_cancelled_when_the_call_is_released() {
        let mut r = rig();
        r.start_phone(1, AgentDevice::Softphone).await;
        r.driver.handle_sip(answered(88, Codec::Pcmu)).await;
        r.act(Action::ReleaseLeg { leg: LegId(1) }).await;
        assert!(r.ops().contains(&Op::Hangup(88)) && r.ops().contains(&Op::Hangup(77)));
        assert!(
            r.released().is_empty(),
            "the customer's BYE is not answered yet"
        );
        // The CANCELled softphone's failure comes later and changes nothing.
        r.driver.handle_sip(failed(77, 487)).await;
        assert!(r.released().is_empty());
        r.driver.handle_sip(ended(88, false)).await;
        assert_eq!(r.released(), vec![(1, "released".into())]);
    }

    #[tokio::test]
    async fn a_softphone_call_bridges_the_app_once_both_answer() {
        let mut r = rig();
        r.start_on(1, LegKind::Voice, AgentDevice::Softphone).await;
        assert!(r.ops().contains(&Op::Dial("alice".into(), "claims".into())));
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
        )
        .await;
        // Video cannot ride on a softphone.
        r.start(2, LegKind::Video).await;
        assert_eq!(
            r.released(),
            vec![(2, "video needs the app and the agent's browser".into())]
        );
        // The softphone hangs up: the app's peer goes and the call is released.
        r.driver
            .handle_sip(SipCallEvent::Ended {
                call: CallRef(77),
                by_peer: true,
            })
            .await;
        assert!(r.ops().contains(&Op::Close(1)));
        assert!(!r.ops().contains(&Op::Hangup(77)), "nothing to hang up");
        assert_eq!(r.released()[1], (1, "the agent's softphone hung up".into()));
        assert_eq!(r.driver.calls(), 0);
    }

    #[tokio::test]
    async fn a_busy_softphone_ends_the_call_and_a_release_hangs_it_up() {
        let mut r = rig();
        r.start_on(1, LegKind::Voice, AgentDevice::Softphone).await;
        r.driver.handle_sip(failed(77, 486)).await;
        assert_eq!(
            r.released(),
            vec![(1, "the agent's softphone is busy".into())]
        );
        assert!(r.ops().contains(&Op::Close(1)));

        let mut r = rig();
        r.start_on(1, LegKind::Voice, AgentDevice::Softphone).await;
        r.act(Action::ReleaseLeg { leg: LegId(1) }).await;
        assert!(r.ops().contains(&Op::Hangup(77)));
        assert!(r.ops().contains(&Op::Close(1)));
        assert!(
            r.released().is_empty(),
            "the CANCELled INVITE has no final answer yet"
        );
        r.driver.handle_sip(failed(77, 487)).await;
        assert_eq!(r.released(), vec![(1, "released".into())]);
    }

    #[tokio::test]
    async fn a_client_that_answers_video_away_drops_it_as_the_customer() {
        let mut r = rig();
        r.start(1, LegKind::Voice).await;
        r.driver.handle_event(PeerEvent::VideoDropped(2)).await;
        assert!(
            r.it.by_customer.lock().unwrap().is_empty(),
            "only the customer's client can drop video"
        );
        r.driver.handle_event(PeerEvent::VideoDropped(1)).await;
        assert_eq!(*r.it.by_customer.lock().unwrap(), vec![Command::DropVideo]);
    }

    #[tokio::test]
    async fn only_the_customers_digits_are_recorded() {
        let mut r = rig();
        r.start_phone(1, AgentDevice::Browser).await;
        let dtmf = |call| SipCallEvent::Dtmf {
            call: CallRef(call),
            digit: '5',
            duration_ms: 100,
        };
        r.driver.handle_sip(dtmf(88)).await;
        r.driver.handle_sip(dtmf(99)).await;
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

    #[tokio::test]
    async fn a_customer_calling_in_is_answered_once_the_interaction_starts_the_leg() {
        let mut r = rig();
        let call = |n| IncomingCall {
            incoming: ServerTxId(n),
            interaction: "i-1".into(),
            caller: "+15550100".into(),
            source: CallSource::Trunk,
            token: None,
        };
        r.driver.handle_incoming(call(5)).await;
        assert!(r.commands().contains(&Command::JoinCall {
            caller: CallerId::Trunk("+15550100".into()),
            token: None,
        }));
        // A second call for the same chat meanwhile is busy.
        r.driver.handle_incoming(call(6)).await;
        assert!(r.ops().contains(&Op::Reject(6, 486)));
        // The interaction starts the leg: the waiting call is answered, not a new one dialled.
        r.start_phone(1, AgentDevice::Browser).await;
        assert!(r.ops().contains(&Op::Accept(5)));
        assert!(!r.ops().iter().any(|o| matches!(o, Op::Dial(..))));
        r.act(Action::Signal {
            from: alice(),
            data: answer(),
        })
        .await;
        r.driver.handle_event(PeerEvent::Connected(1)).await;
        assert!(r.ops().contains(&Op::Bridge(1, Codec::Pcma)));
        assert_eq!(r.ups(), vec![1]);
    }

    #[tokio::test]
    async fn a_call_to_a_service_number_waits_for_the_accept_or_is_refused() {
        let mut r = rig();
        r.driver
            .handle_service_call(ServerTxId(7), "+15550100", "+15550199")
            .await;
        // Opened and held: nothing answered, nothing refused yet.
        assert!(r.ops().is_empty(), "{:?}", r.ops());
        // The interaction starts its leg once an agent accepts: the held call is answered.
        r.start_phone(1, AgentDevice::Browser).await;
        assert!(r.ops().contains(&Op::Accept(7)));
        assert!(!r.ops().iter().any(|o| matches!(o, Op::Dial(..))));

        // A number no service has is refused at once.
        let mut r = rig();
        r.driver
            .handle_service_call(ServerTxId(8), "+15550999", "+15550199")
            .await;
        assert_eq!(r.ops(), vec![Op::Reject(8, 480)]);

        // Nobody accepts: the interaction refuses the call, and its leg is reported released.
        let mut r = rig();
        r.driver
            .handle_service_call(ServerTxId(9), "+15550100", "+15550199")
            .await;
        r.act(Action::RefuseCall {
            leg: LegId(1),
            reason: "No Agent Available".into(),
        })
        .await;
        assert_eq!(r.ops(), vec![Op::Reject(9, 480)]);
        assert_eq!(r.released(), vec![(1, "No Agent Available".to_string())]);

        // The caller hangs up while waiting: the interaction hears it, nothing is left held.
        let mut r = rig();
        r.driver
            .handle_service_call(ServerTxId(10), "+15550100", "+15550199")
            .await;
        r.driver.handle_cancelled(ServerTxId(10)).await;
        assert!(r.commands().contains(&Command::CallAbandoned));
        assert!(r.driver.inbound.is_empty());
    }
}
