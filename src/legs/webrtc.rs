//! The WebRTC leg driver: the app's call and video, and the agent browser's own leg.
//!
//! A call from the app is two peers of the WebRTC service: one for the customer's app, one for
//! the agent's browser. The gateway offers both (it is ICE-lite and always the offerer): the
//! app's offer goes out as `OFFER_CALL` in the chat, the agent's as a `webrtc_signaling` event
//! on the agent socket; the answers come back as [`Action::Signal`]. When both peers are
//! connected they are linked (audio and video forwarded between them) and the voice leg is up.
//!
//! Video rides on the same two peers: allowing it renegotiates both with a video section, and
//! dropping it renegotiates it away. A peer has at most one offer outstanding; a change wanted
//! meanwhile is offered when the answer arrives.
//!
//! A peer that closes (ICE consent lost, DTLS failure, a contained panic) ends the whole call:
//! both peers are closed and every leg of the call is reported released with the reason.

use std::collections::HashMap;
use std::fmt::Debug;
use std::future::Future;
use std::hash::Hash;

use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Interactions;
use crate::bridge::{Action, AgentId, Command, InteractionId, LegId, LegKind, LegTarget, Party};

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
    fn close(&self, peer: Self::Id) -> impl Future<Output = ()> + Send;
    /// STUN/TURN URLs handed to clients with every offer.
    fn ice_servers(&self) -> Vec<String>;
}

/// What happens to peers on their own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerEvent<Id> {
    Connected(Id),
    Closed { peer: Id, reason: String },
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

/// One call from the app: its two peers and the interaction's legs it carries.
struct Call<Id> {
    agent: AgentId,
    customer: PeerState<Id>,
    staff: PeerState<Id>,
    voice: Option<LegId>,
    video: Option<LegId>,
    want_video: bool,
    linked: bool,
    voice_up: bool,
    video_up: bool,
}

impl<Id> Call<Id> {
    fn side(&mut self, side: Side) -> &mut PeerState<Id> {
        match side {
            Side::Customer => &mut self.customer,
            Side::Agent => &mut self.staff,
        }
    }
}

/// The driver's state; [`Driver::run`] feeds it from the hub's actions and the peers' events.
pub struct Driver<P: Peers, I: Interactions> {
    peers: P,
    interactions: I,
    calls: HashMap<InteractionId, Call<P::Id>>,
    by_peer: HashMap<P::Id, (InteractionId, Side)>,
}

impl<P: Peers, I: Interactions> Driver<P, I> {
    pub fn new(peers: P, interactions: I) -> Self {
        Driver {
            peers,
            interactions,
            calls: HashMap::new(),
            by_peer: HashMap::new(),
        }
    }

    /// Calls in progress (for metrics and leak checks).
    pub fn calls(&self) -> usize {
        self.calls.len()
    }

    /// Serves until `shutdown`, or until both inputs are gone.
    pub async fn run(
        mut self,
        mut actions: mpsc::UnboundedReceiver<(InteractionId, Action)>,
        mut events: mpsc::Receiver<PeerEvent<P::Id>>,
        shutdown: CancellationToken,
    ) {
        loop {
            tokio::select! {
                action = actions.recv() => match action {
                    Some((id, action)) => self.handle_action(id, action).await,
                    None => break,
                },
                event = events.recv() => match event {
                    Some(event) => self.handle_event(event).await,
                    None => break,
                },
                _ = shutdown.cancelled() => break,
            }
        }
        for (_, call) in self.calls.drain() {
            self.peers.close(call.customer.id).await;
            self.peers.close(call.staff.id).await;
        }
    }

    pub async fn handle_action(&mut self, id: InteractionId, action: Action) {
        match action {
            Action::StartLeg {
                leg,
                kind,
                target: LegTarget::App,
                ..
            } => self.start(id, leg, kind).await,
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
                if let Some(call) = self.calls.get_mut(&id) {
                    call.side(side).connected = true;
                }
                self.progress(&id).await;
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

    async fn start(&mut self, id: InteractionId, leg: LegId, kind: LegKind) {
        if let Some(call) = self.calls.get_mut(&id) {
            match kind {
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
        let customer = match self.peers.create(audio, video).await {
            Ok(p) => p,
            Err(e) => {
                self.released(&id, leg, &format!("media unavailable: {e}"))
                    .await;
                return;
            }
        };
        let staff = match self.peers.create(audio, video).await {
            Ok(p) => p,
            Err(e) => {
                self.peers.close(customer.0).await;
                self.released(&id, leg, &format!("media unavailable: {e}"))
                    .await;
                return;
            }
        };
        let peer = |id| PeerState {
            id,
            connected: false,
            awaiting_answer: true,
            offered_video: video,
        };
        let call = Call {
            agent,
            customer: peer(customer.0),
            staff: peer(staff.0),
            voice: audio.then_some(leg),
            video: video.then_some(leg),
            want_video: video,
            linked: false,
            voice_up: false,
            video_up: false,
        };
        self.by_peer
            .insert(customer.0, (id.clone(), Side::Customer));
        self.by_peer.insert(staff.0, (id.clone(), Side::Agent));
        self.calls.insert(id.clone(), call);
        self.offer(&id, Side::Customer, customer.1, video).await;
        self.offer(&id, Side::Agent, staff.1, video).await;
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
        let Some(call) = self.calls.get(&id) else {
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
        let call = self.calls.get_mut(&id).expect("call");
        let peer = call.side(side);
        if !peer.awaiting_answer {
            tracing::debug!(interaction = %id, "answer without an offer ignored");
            return;
        }
        let peer_id = peer.id;
        match self.peers.answer(peer_id, sdp.to_string()).await {
            Ok(()) => {
                if let Some(call) = self.calls.get_mut(&id) {
                    call.side(side).awaiting_answer = false;
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
            let peer = call.side(side);
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

    /// Links the peers once both are connected and reports legs up as their media flows.
    async fn progress(&mut self, id: &InteractionId) {
        let Some(call) = self.calls.get_mut(id) else {
            return;
        };
        if !(call.customer.connected && call.staff.connected) {
            return;
        }
        if !call.linked {
            call.linked = true;
            let (a, b) = (call.customer.id, call.staff.id);
            if let Err(e) = self.peers.link(a, b).await {
                tracing::warn!(interaction = %id, "cannot link peers: {e}");
                self.end_call(id, "media path failed").await;
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
            && !call.customer.awaiting_answer
            && !call.staff.awaiting_answer
            && call.customer.offered_video
            && call.staff.offered_video;
        if let Some(leg) = call.video
            && video_settled
            && !call.video_up
        {
            call.video_up = true;
            up.push(leg);
        }
        for leg in up {
            if let Err(e) = self.interactions.command(id, Command::LegUp { leg }).await {
                tracing::debug!(interaction = %id, "leg up not taken: {e}");
            }
        }
    }

    /// Closes both peers and reports every leg of the call released.
    async fn end_call(&mut self, id: &InteractionId, reason: &str) {
        let Some(call) = self.calls.remove(id) else {
            return;
        };
        for peer in [call.customer.id, call.staff.id] {
            self.by_peer.remove(&peer);
            self.peers.close(peer).await;
        }
        for leg in [call.voice, call.video].into_iter().flatten() {
            self.released(id, leg, reason).await;
        }
    }

    async fn offer(&mut self, id: &InteractionId, side: Side, sdp: String, video: bool) {
        let Some(call) = self.calls.get(id) else {
            return;
        };
        let data = json!({"type": "OFFER_CALL", "offerVideo": video, "sdp": sdp,
                          "iceServers": self.peers.ice_servers()});
        let to = match side {
            Side::Customer => Party::Customer,
            Side::Agent => Party::Agent(call.agent.clone()),
        };
        if let Err(e) = self
            .interactions
            .command(id, Command::SignalTo { to, data })
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
        if let Err(e) = self.interactions.command(id, command).await {
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
        Close(u32),
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
        async fn close(&self, peer: u32) {
            self.ops.lock().unwrap().push(Op::Close(peer));
        }
        fn ice_servers(&self) -> Vec<String> {
            vec!["stun:stun.example.net".into()]
        }
    }

    #[derive(Clone, Default)]
    struct FakeInteractions {
        commands: Arc<Mutex<Vec<Command>>>,
    }

    impl Interactions for FakeInteractions {
        async fn command(&self, _id: &InteractionId, command: Command) -> Result<(), String> {
            self.commands.lock().unwrap().push(command);
            Ok(())
        }
        async fn agent(&self, _id: &InteractionId) -> Option<AgentId> {
            Some(AgentId::from("alice"))
        }
    }

    struct Rig {
        driver: Driver<FakePeers, FakeInteractions>,
        peers: FakePeers,
        it: FakeInteractions,
        id: InteractionId,
    }

    fn rig() -> Rig {
        let peers = FakePeers::default();
        let it = FakeInteractions::default();
        Rig {
            driver: Driver::new(peers.clone(), it.clone()),
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
            let action = Action::StartLeg {
                leg: LegId(leg),
                kind,
                target: LegTarget::App,
                service: "claims".into(),
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
        r.driver = Driver::new(r.peers.clone(), r.it.clone());
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
        };
        r.act(action).await;
        assert_eq!(r.released().len(), 1);
        assert!(r.ops().is_empty());
    }
}
