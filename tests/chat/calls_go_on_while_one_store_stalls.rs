//! One interaction's commits stall (a locked row, a slow disk); calls on the other
//! interactions are set up and released meanwhile, while the stalled interaction answers its
//! commands with `store_unavailable` at once, and recovers when the store takes its writes.
//!
//! The real hub and leg driver shell run with fake WebRTC peers (the test connects them) and a
//! journal that holds back the writes of one interaction until it is let go.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tandem::bridge::{
    AgentDevice, AgentId, Command, Customer, InteractionId, LegId, LegState, Party,
};
use tandem::config::Config;
use tandem::hub::{Hub, HubError};
use tandem::legs::driver::{LegError, PeerEvent};
use tandem::legs::shell::{Inputs, Peers, Phones, Shell};
use tandem::media::codec::Codec;
use tandem::rtc::MediaSpec;
use tandem::sip::core::{AppLeg, CallRef};
use tandem::sip::transaction::ServerTxId;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::stalling::{StallingJournal, stalling_hub};

/// How long a command waits for its commit here (the hub's patience).
const PATIENCE: Duration = Duration::from_millis(200);
/// How long any condition may take to come true on a loaded machine.
const DEADLINE: Duration = Duration::from_secs(30);

/// Peers that exist only as numbers; each new one is announced to the test.
#[derive(Clone)]
struct FakePeers {
    next: Arc<Mutex<u64>>,
    created: mpsc::UnboundedSender<u64>,
}

impl Peers for FakePeers {
    type Id = u64;
    async fn create(&self, _media: MediaSpec) -> Result<(u64, String), LegError> {
        let peer = {
            let mut next = self.next.lock().unwrap();
            *next += 1;
            *next
        };
        let _ = self.created.send(peer);
        Ok((peer, format!("offer-{peer}")))
    }
    async fn answer(&self, _peer: u64, _sdp: String) -> Result<(), LegError> {
        Ok(())
    }
    async fn set_video(&self, peer: u64, _on: bool) -> Result<String, LegError> {
        Ok(format!("reoffer-{peer}"))
    }
    async fn link(&self, _a: u64, _b: u64) -> Result<(), LegError> {
        Ok(())
    }
    async fn bridge_rtp(&self, _: u64, _: SocketAddr, _: Codec) -> Result<(), LegError> {
        Ok(())
    }
    async fn close(&self, _peer: u64) {}
    fn ice_servers(&self) -> Vec<String> {
        Vec::new()
    }
}

/// No SIP in this test: every call is between the app and the agent's browser.
struct NoPhones;

impl Phones for NoPhones {
    async fn dial_agent(
        &self,
        _: &AgentId,
        _: &InteractionId,
        service: &str,
    ) -> Result<(CallRef, SocketAddr), LegError> {
        Err(LegError::NoTrunk(service.into()))
    }
    async fn dial_mobile(
        &self,
        _: &AgentId,
        _: &InteractionId,
        service: &str,
    ) -> Result<(CallRef, SocketAddr), LegError> {
        Err(LegError::NoTrunk(service.into()))
    }
    async fn dial_number(
        &self,
        _: &str,
        _: &InteractionId,
        service: &str,
    ) -> Result<(CallRef, SocketAddr), LegError> {
        Err(LegError::NoTrunk(service.into()))
    }
    async fn hangup(&self, _: CallRef) {}
    async fn accept_incoming(
        &self,
        _: ServerTxId,
    ) -> Result<(CallRef, SocketAddr, Codec), LegError> {
        Err(LegError::CallGone)
    }
    async fn reject_incoming(&self, _: ServerTxId, _: u16, _: &str) {}
    async fn bridge(&self, _: CallRef, _: CallRef) -> Result<(), LegError> {
        Ok(())
    }
    async fn record(
        &self,
        _: &InteractionId,
        _: &str,
        _: LegId,
        _: AppLeg,
        _: AppLeg,
    ) -> Option<String> {
        None
    }
}

fn config() -> String {
    r#"
[[services]]
name = "claims"
entries = ["claims-app"]
department = "claims"
"#
    .to_string()
}

struct Rig {
    hub: Hub,
    journal: Arc<StallingJournal>,
    created: mpsc::UnboundedReceiver<u64>,
    peer_events: mpsc::Sender<PeerEvent<u64>>,
    /// No SIP events nor calls come in; their channels stay open.
    _sip: (
        mpsc::UnboundedSender<tandem::sip::driver::SipCallEvent>,
        mpsc::UnboundedSender<tandem::sip::driver::IncomingEvent>,
    ),
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

fn alice() -> Party {
    Party::Agent(AgentId::from("alice"))
}

impl Rig {
    async fn new() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let (legs, actions) = mpsc::unbounded_channel();
        let config = Config::parse(&config()).unwrap();
        let (hub, journal) = stalling_hub(config, dir.path(), PATIENCE, Some(legs)).await;
        let (created_tx, created) = mpsc::unbounded_channel();
        let peers = FakePeers {
            next: Arc::new(Mutex::new(0)),
            created: created_tx,
        };
        let (peer_events, peer_rx) = mpsc::channel(64);
        let (sip_events, sip) = mpsc::unbounded_channel();
        let (incoming_calls, incoming) = mpsc::unbounded_channel();
        let shutdown = CancellationToken::new();
        let shell = Shell::new(peers, NoPhones, hub.clone());
        let inputs = Inputs {
            actions,
            peers: peer_rx,
            sip,
            incoming,
        };
        tokio::spawn(shell.run(inputs, shutdown.clone()));
        Rig {
            hub,
            journal,
            created,
            peer_events,
            _sip: (sip_events, incoming_calls),
            shutdown,
            _dir: dir,
        }
    }

    async fn command(&self, id: &InteractionId, by: Party, command: Command) {
        self.hub.command(id, by, command).await.unwrap();
    }

    /// A chat accepted by alice, in which the customer asks for a call.
    async fn chat_asking_for_a_call(&self, n: u32) -> InteractionId {
        let customer = Customer {
            device: format!("device-{n}"),
            name: None,
            phone: None,
        };
        let (id, _) = self
            .hub
            .create("claims", customer, json!({}))
            .await
            .unwrap();
        let offer = Command::Offer {
            agent: AgentId::from("alice"),
        };
        self.command(&id, Party::System, offer).await;
        let accept = Command::Accept {
            display_name: "Alice".into(),
        };
        self.command(&id, alice(), accept).await;
        self.command(&id, Party::Customer, Command::RequestCall)
            .await;
        id
    }

    /// Alice takes the call on her browser: the app's and the browser's peers are created.
    async fn take_call(&mut self, id: &InteractionId) -> [u64; 2] {
        let take = Command::AcceptCall {
            device: AgentDevice::Browser,
        };
        self.command(id, alice(), take).await;
        let mut peers = [0; 2];
        for peer in &mut peers {
            *peer = tokio::time::timeout(DEADLINE, self.created.recv())
                .await
                .expect("a peer is created")
                .unwrap();
        }
        peers
    }

    async fn connect(&self, peers: [u64; 2]) {
        for peer in peers {
            self.peer_events
                .send(PeerEvent::Connected(peer))
                .await
                .unwrap();
        }
    }

    /// The state of the call's leg, `None` once it is released.
    async fn leg(&self, id: &InteractionId) -> Option<LegState> {
        let summary = self.hub.get(id)?.summary().await.ok()?;
        summary
            .legs
            .iter()
            .find(|l| l.leg == LegId(1))
            .map(|l| l.state)
    }

    async fn wait_for_leg(&self, id: &InteractionId, want: Option<LegState>, what: &str) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while self.leg(id).await != want {
            assert!(tokio::time::Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn stall(&self, id: &InteractionId) {
        self.journal.stall(id);
    }

    /// The store takes the stalled writes, and those that come after.
    fn recover(&self) {
        self.journal.recover();
    }
}

fn message(n: u32) -> Command {
    Command::SendMessage {
        msg_id: Some(format!("m-{n}")),
        text: format!("message {n}"),
    }
}

#[tokio::test]
async fn calls_go_on_while_one_interactions_store_stalls() {
    let mut r = Rig::new().await;
    let stalled = r.chat_asking_for_a_call(0).await;
    let others = [
        r.chat_asking_for_a_call(1).await,
        r.chat_asking_for_a_call(2).await,
    ];
    // The stalled interaction's call is being set up when its store stalls.
    let stalled_peers = r.take_call(&stalled).await;
    r.stall(&stalled);

    // The first command waits for its commit no longer than the hub's patience, and says so.
    let first = r.hub.command(&stalled, Party::Customer, message(1)).await;
    assert!(matches!(first, Err(HubError::NotStored)), "{first:?}");
    // The call's media comes up meanwhile: the leg driver's report waits for the store.
    r.connect(stalled_peers).await;
    // Further commands are refused at once: nothing moves while the last commit waits.
    let refused = r.hub.command(&stalled, Party::Customer, message(2)).await;
    assert!(
        matches!(refused, Err(HubError::StoreUnavailable)),
        "{refused:?}"
    );

    // Calls on the other interactions connect and release as if nothing happened.
    for id in &others {
        let peers = r.take_call(id).await;
        r.connect(peers).await;
        r.wait_for_leg(id, Some(LegState::Up), "the call connects")
            .await;
        r.command(id, alice(), Command::ReleaseCall).await;
        r.wait_for_leg(id, None, "the call is released").await;
    }
    assert_eq!(
        r.leg(&stalled).await,
        Some(LegState::Connecting),
        "the stalled interaction has not moved on"
    );
    let still = r.hub.command(&stalled, Party::Customer, message(3)).await;
    assert!(
        matches!(still, Err(HubError::StoreUnavailable)),
        "{still:?}"
    );

    // The store returns: what waited is stored and published, the leg driver's report gets
    // through, and the interaction takes commands again.
    r.recover();
    r.wait_for_leg(&stalled, Some(LegState::Up), "the stalled call connects")
        .await;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        match r.hub.command(&stalled, Party::Customer, message(4)).await {
            Ok(_) => break,
            Err(HubError::StoreUnavailable) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => panic!("the interaction does not recover: {other:?}"),
        }
    }
    // The message whose commit was not confirmed was carried out and is stored.
    let events = r.hub.store().events(&stalled, 0).await.unwrap();
    let texts: Vec<String> = events
        .iter()
        .filter_map(|e| match &e.kind {
            tandem::bridge::EventKind::Message { text, .. } => Some(text.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(texts, vec!["message 1", "message 4"]);
    r.command(&stalled, alice(), Command::ReleaseCall).await;
    r.wait_for_leg(&stalled, None, "the stalled call is released")
        .await;
    r.shutdown.cancel();
}
