//! The WebRTC leg driver: the app's call and video, and the agent's side of them.
//!
//! A call from the app is one peer of the WebRTC service for the customer's app, and on the
//! agent's side either a second peer for the agent's browser or a SIP call to the softphone
//! registered under the agent's name. The gateway offers every peer (it is ICE-lite and always
//! the offerer): the app's offer goes out as `OFFER_CALL` in the chat, the browser's as a
//! `webrtc_signaling` event on the agent socket; the answers come back as [`Action::Signal`].
//! When both sides are ready the media is joined — two peers are linked (audio and video
//! forwarded between them), a softphone is bridged through the media engine (the app's audio
//! as plain RTP in the codec the softphone chose) — and the voice leg is up.
//!
//! Video rides on the same two peers: allowing it renegotiates both with a video section, and
//! dropping it renegotiates it away. A peer has at most one offer outstanding; a change wanted
//! meanwhile is offered when the answer arrives. A softphone has no video.
//!
//! Whatever side ends (ICE consent lost, DTLS failure, a contained panic, the softphone's BYE
//! or its refusal) ends the whole call: the other side is released too and every leg of the
//! call is reported released with the reason.

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
    Action, AgentDevice, AgentId, Command, InteractionId, LegId, LegKind, LegTarget, Party,
};
use crate::metrics::Metrics;
use crate::sip::core::CallRef;
use crate::sip::driver::SipCallEvent;
use crate::sip::sdp::Codec;

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

/// What the driver needs of SIP: calls to an agent's softphone, their audio on a local RTP
/// address, their progress as [`SipCallEvent`]s on the driver's channel.
pub trait Phones: Send + Sync + 'static {
    fn dial_agent(
        &self,
        agent: &AgentId,
        interaction: &InteractionId,
        service: &str,
    ) -> impl Future<Output = Result<(CallRef, SocketAddr), String>> + Send;
    fn hangup(&self, call: CallRef) -> impl Future<Output = ()> + Send;
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

/// Which side of a call a peer serves.
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

impl<Id> PeerState<Id> {
    fn new(id: Id, video: bool) -> Self {
        PeerState {
            id,
            connected: false,
            awaiting_answer: true,
            offered_video: video,
        }
    }
}

/// The agent's side of a call.
enum Staff<Id> {
    Browser(PeerState<Id>),
    Softphone {
        call: CallRef,
        /// Where the engine takes the call's audio.
        media: SocketAddr,
        /// What the softphone answered with; `None` while it rings.
        codec: Option<Codec>,
    },
}

/// One call from the app: its peers and the interaction's legs it carries.
struct Call<Id> {
    agent: AgentId,
    customer: PeerState<Id>,
    staff: Staff<Id>,
    voice: Option<LegId>,
    video: Option<LegId>,
    want_video: bool,
    joined: bool,
    voice_up: bool,
    video_up: bool,
}

impl<Id> Call<Id> {
    fn peer(&mut self, side: Side) -> Option<&mut PeerState<Id>> {
        match (side, &mut self.staff) {
            (Side::Customer, _) => Some(&mut self.customer),
            (Side::Agent, Staff::Browser(peer)) => Some(peer),
            (Side::Agent, Staff::Softphone { .. }) => None,
        }
    }

    fn settled(&self, side: Side) -> bool {
        match (side, &self.staff) {
            (Side::Customer, _) => !self.customer.awaiting_answer,
            (Side::Agent, Staff::Browser(p)) => !p.awaiting_answer,
            (Side::Agent, Staff::Softphone { .. }) => true,
        }
    }
}

/// The driver's state; [`Driver::run`] feeds it from the hub's actions, the peers' events and
/// the softphones' calls.
pub struct Driver<P: Peers, S: Phones, I: Interactions> {
    peers: P,
    phones: S,
    interactions: I,
    calls: HashMap<InteractionId, Call<P::Id>>,
    by_peer: HashMap<P::Id, (InteractionId, Side)>,
    by_sip_call: HashMap<CallRef, InteractionId>,
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

    /// Serves until `shutdown`, or until the hub's actions end.
    pub async fn run(
        mut self,
        mut actions: mpsc::UnboundedReceiver<(InteractionId, Action)>,
        mut events: mpsc::Receiver<PeerEvent<P::Id>>,
        mut sip: mpsc::UnboundedReceiver<SipCallEvent>,
        shutdown: CancellationToken,
    ) {
        loop {
            tokio::select! {
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
            self.end_call(&id, "gateway stopping", false).await;
        }
    }

    pub async fn handle_action(&mut self, id: InteractionId, action: Action) {
        match action {
            Action::StartLeg {
                leg,
                kind,
                target: LegTarget::App,
                service,
                device,
            } => self.start(id, leg, kind, &service, device).await,
            Action::StartLeg { leg, .. } => {
                // Calls to the customer's phone belong to the SIP leg driver.
                self.released(&id, leg, "no driver for this leg").await;
            }
            Action::ReleaseLeg { leg } => self.release(id, leg).await,
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
                if let Some(p) = self.calls.get_mut(&id).and_then(|c| c.peer(side)) {
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
                self.end_call(&id, &reason, false).await;
            }
        }
    }

    pub async fn handle_sip(&mut self, event: SipCallEvent) {
        let call = match &event {
            SipCallEvent::Progress { call, .. }
            | SipCallEvent::Answered { call, .. }
            | SipCallEvent::Failed { call, .. }
            | SipCallEvent::Ended { call, .. }
            | SipCallEvent::Dtmf { call, .. } => *call,
        };
        let Some(id) = self.by_sip_call.get(&call).cloned() else {
            return;
        };
        match event {
            SipCallEvent::Answered { codec, .. } => {
                if let Some(Call {
                    staff: Staff::Softphone { codec: c, .. },
                    ..
                }) = self.calls.get_mut(&id)
                {
                    *c = Some(codec);
                }
                self.progress(&id).await;
            }
            SipCallEvent::Failed { code, .. } => {
                self.by_sip_call.remove(&call);
                let reason = match code {
                    486 | 600 | 603 => "the agent's softphone is busy".to_string(),
                    408 | 480 => "the agent's softphone did not answer".to_string(),
                    code => format!("the agent's softphone refused ({code})"),
                };
                self.end_call(&id, &reason, true).await;
            }
            SipCallEvent::Ended { by_peer, .. } => {
                self.by_sip_call.remove(&call);
                let reason = if by_peer {
                    "the agent's softphone hung up"
                } else {
                    "released"
                };
                self.end_call(&id, reason, true).await;
            }
            SipCallEvent::Progress { .. } | SipCallEvent::Dtmf { .. } => {}
        }
    }

    async fn start(
        &mut self,
        id: InteractionId,
        leg: LegId,
        kind: LegKind,
        service: &str,
        device: AgentDevice,
    ) {
        tracing::debug!(interaction = %id, %leg, ?kind, ?device, "start leg");
        if let Some(call) = self.calls.get_mut(&id) {
            match kind {
                LegKind::Video if matches!(call.staff, Staff::Softphone { .. }) => {
                    self.released(&id, leg, "video needs the agent's browser")
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
        let customer = match self.peers.create(audio, video).await {
            Ok(p) => p,
            Err(e) => {
                self.released(&id, leg, &format!("media unavailable: {e}"))
                    .await;
                return;
            }
        };
        let staff = match device {
            AgentDevice::Browser => self
                .peers
                .create(audio, video)
                .await
                .map(|(peer, offer)| (Staff::Browser(PeerState::new(peer, video)), Some(offer))),
            AgentDevice::Softphone => {
                self.phones
                    .dial_agent(&agent, &id, service)
                    .await
                    .map(|(call, media)| {
                        let staff = Staff::Softphone {
                            call,
                            media,
                            codec: None,
                        };
                        (staff, None)
                    })
            }
        };
        let (staff, staff_offer) = match staff {
            Ok(s) => s,
            Err(e) => {
                self.peers.close(customer.0).await;
                self.released(&id, leg, &format!("agent side unavailable: {e}"))
                    .await;
                return;
            }
        };
        match &staff {
            Staff::Browser(peer) => {
                self.by_peer.insert(peer.id, (id.clone(), Side::Agent));
            }
            Staff::Softphone { call, .. } => {
                self.by_sip_call.insert(*call, id.clone());
            }
        }
        self.by_peer
            .insert(customer.0, (id.clone(), Side::Customer));
        let call = Call {
            agent,
            customer: PeerState::new(customer.0, video),
            staff,
            voice: audio.then_some(leg),
            video: video.then_some(leg),
            want_video: video,
            joined: false,
            voice_up: false,
            video_up: false,
        };
        self.calls.insert(id.clone(), call);
        self.offer(&id, Side::Customer, customer.1, video).await;
        if let Some(offer) = staff_offer {
            self.offer(&id, Side::Agent, offer, video).await;
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
            self.end_call(&id, "released", false).await;
        } else {
            self.released(&id, leg, "released").await;
        }
    }

    async fn signal(&mut self, id: InteractionId, from: Party, data: Value) {
        tracing::debug!(interaction = %id, ?from, kind = ?data.get("type"), "signal");
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
        let Some(peer) = call.peer(side) else {
            return;
        };
        if !peer.awaiting_answer {
            tracing::debug!(interaction = %id, "answer without an offer ignored");
            return;
        }
        let peer_id = peer.id;
        match self.peers.answer(peer_id, sdp.to_string()).await {
            Ok(()) => {
                if let Some(p) = self.calls.get_mut(&id).and_then(|c| c.peer(side)) {
                    p.awaiting_answer = false;
                }
                self.renegotiate(&id).await;
                self.progress(&id).await;
            }
            Err(e) => {
                tracing::info!(interaction = %id, "unusable SDP answer: {e}");
                self.end_call(&id, "unusable SDP answer", false).await;
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
            let Some(peer) = call.peer(side) else {
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
                    self.end_call(id, "renegotiation failed", false).await;
                    return;
                }
            }
        }
    }

    /// Joins the media once both sides are ready and reports legs up as their media flows.
    async fn progress(&mut self, id: &InteractionId) {
        let Some(call) = self.calls.get_mut(id) else {
            return;
        };
        let agent_ready = match &call.staff {
            Staff::Browser(peer) => peer.connected,
            Staff::Softphone { codec, .. } => codec.is_some(),
        };
        if !(call.customer.connected && agent_ready) {
            return;
        }
        if !call.joined {
            call.joined = true;
            let customer = call.customer.id;
            let joined = match &call.staff {
                Staff::Browser(peer) => self.peers.link(customer, peer.id).await,
                Staff::Softphone { media, codec, .. } => {
                    let codec = codec.expect("checked above");
                    self.peers.bridge_rtp(customer, *media, codec).await
                }
            };
            if let Err(e) = joined {
                tracing::warn!(interaction = %id, "cannot join the media: {e}");
                self.end_call(id, "media path failed", false).await;
                return;
            }
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
            && call.settled(Side::Customer)
            && call.settled(Side::Agent)
            && call.customer.offered_video;
        if let Some(leg) = call.video
            && video_settled
            && !call.video_up
        {
            call.video_up = true;
            up.push(leg);
        }
        for leg in up {
            if let Err(e) = self
                .interactions
                .command(id, Party::System, Command::LegUp { leg })
                .await
            {
                tracing::debug!(interaction = %id, "leg up not taken: {e}");
            }
        }
    }

    /// Releases both sides and reports every leg of the call released. `sip_gone` when the
    /// softphone's call has already ended by itself.
    async fn end_call(&mut self, id: &InteractionId, reason: &str, sip_gone: bool) {
        let Some(call) = self.calls.remove(id) else {
            return;
        };
        self.by_peer.remove(&call.customer.id);
        self.peers.close(call.customer.id).await;
        match call.staff {
            Staff::Browser(peer) => {
                self.by_peer.remove(&peer.id);
                self.peers.close(peer.id).await;
            }
            Staff::Softphone { call: sip, .. } => {
                self.by_sip_call.remove(&sip);
                if !sip_gone {
                    self.phones.hangup(sip).await;
                }
            }
        }
        for leg in [call.voice, call.video].into_iter().flatten() {
            self.released(id, leg, reason).await;
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
        if let Err(e) = self
            .interactions
            .command(id, Party::System, Command::SignalTo { to, data })
            .await
        {
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
        async fn hangup(&self, call: CallRef) {
            self.ops.lock().unwrap().push(Op::Hangup(call.0));
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
    async fn phone_legs_are_not_taken() {
        let mut r = rig();
        let action = Action::StartLeg {
            leg: LegId(1),
            kind: LegKind::Voice,
            target: LegTarget::Phone("+1555".into()),
            service: "claims".into(),
            device: AgentDevice::Browser,
        };
        r.act(action).await;
        assert_eq!(r.released().len(), 1);
        assert!(r.ops().is_empty());
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
        r.act(Action::Signal {
            from: Party::Customer,
            data: answer(),
        })
        .await;
        r.driver.handle_event(PeerEvent::Connected(1)).await;
        assert!(r.ups().is_empty(), "the softphone still rings");
        r.driver
            .handle_sip(SipCallEvent::Answered {
                call: CallRef(77),
                codec: Codec::Pcma,
            })
            .await;
        assert!(r.ops().contains(&Op::Bridge(1, Codec::Pcma)));
        assert_eq!(r.ups(), vec![1]);
        // Video cannot ride on a softphone.
        r.start(2, LegKind::Video).await;
        assert_eq!(
            r.released(),
            vec![(2, "video needs the agent's browser".into())]
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
        r.driver
            .handle_sip(SipCallEvent::Failed {
                call: CallRef(77),
                code: 486,
            })
            .await;
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
}
