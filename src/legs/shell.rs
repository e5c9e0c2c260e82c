//! The tokio shell around the call [`Driver`]: it feeds the driver its inputs, carries out the
//! [`Op`]s it asks for with the WebRTC service and the SIP task, and feeds their outcomes back.
//!
//! Peers and SIP calls answer quickly (they are other tasks on this node), so their operations
//! are carried out in order, one at a time, and an input is handled to its end before the next
//! is read. The interactions are different: a command waits for its interaction's store. So
//! reports go into one queue per interaction, delivered in order by at most one delivery in
//! flight per interaction; an interaction whose store is slow delays its own reports and no
//! one else's. A report the interaction cannot take now ([`Undelivered::NotNow`]: its store is
//! not taking writes) is delivered again later, since it is a fact the interaction must learn
//! (a leg went up, or away). Opening an interaction for a call waits for the store too, and is
//! run beside the loop as well.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::hash::Hash;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::driver::{DialTo, Driver, LegError, Op, Outcome, PeerEvent, ReportError};
use crate::bridge::{Action, AgentId, Command, HeldCall, InteractionId, LegId, Party};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::metrics::{Metrics, Part, registered};
use crate::rtc::MediaSpec;
use crate::sip::core::{AppLeg, CallRef};
use crate::sip::driver::{IncomingEvent, SipCallEvent};
use crate::sip::sdp::Codec;
use crate::sip::transaction::ServerTxId;

/// What the shell needs of the WebRTC service.
pub trait Peers: Send + Sync + 'static {
    type Id: Copy + Eq + Hash + std::fmt::Debug + Send + Sync + 'static;
    /// A new peer with these media sections, and the gateway's SDP offer for it.
    fn create(
        &self,
        media: MediaSpec,
    ) -> impl Future<Output = Result<(Self::Id, String), LegError>> + Send;
    /// Applies the remote answer to the outstanding offer.
    fn answer(
        &self,
        peer: Self::Id,
        sdp: String,
    ) -> impl Future<Output = Result<(), LegError>> + Send;
    /// Adds or removes video; returns the new offer.
    fn set_video(
        &self,
        peer: Self::Id,
        on: bool,
    ) -> impl Future<Output = Result<String, LegError>> + Send;
    /// Forwards media between two connected peers, both ways.
    fn link(&self, a: Self::Id, b: Self::Id) -> impl Future<Output = Result<(), LegError>> + Send;
    /// Sends the peer's audio as plain RTP in `codec` to `remote`, and plays what comes back.
    fn bridge_rtp(
        &self,
        peer: Self::Id,
        remote: SocketAddr,
        codec: Codec,
    ) -> impl Future<Output = Result<(), LegError>> + Send;
    fn close(&self, peer: Self::Id) -> impl Future<Output = ()> + Send;
    /// STUN/TURN URLs handed to clients with every offer.
    fn ice_servers(&self) -> Vec<String>;
}

/// What the shell needs of SIP: calls whose audio arrives on a local RTP address, and whose
/// progress comes back as [`SipCallEvent`]s on the shell's channel.
pub trait Phones: Send + Sync + 'static {
    /// Calls the softphone registered under the agent's name.
    fn dial_agent(
        &self,
        agent: &AgentId,
        interaction: &InteractionId,
        service: &str,
    ) -> impl Future<Output = Result<(CallRef, SocketAddr), LegError>> + Send;
    /// Calls the agent's own mobile number through the service's trunk.
    fn dial_mobile(
        &self,
        agent: &AgentId,
        interaction: &InteractionId,
        service: &str,
    ) -> impl Future<Output = Result<(CallRef, SocketAddr), LegError>> + Send;
    /// Calls a customer's number through the service's trunk.
    fn dial_number(
        &self,
        number: &str,
        interaction: &InteractionId,
        service: &str,
    ) -> impl Future<Output = Result<(CallRef, SocketAddr), LegError>> + Send;
    fn hangup(&self, call: CallRef) -> impl Future<Output = ()> + Send;
    /// Answers a call that came in for an interaction.
    fn accept_incoming(
        &self,
        incoming: ServerTxId,
    ) -> impl Future<Output = Result<(CallRef, SocketAddr, Codec), LegError>> + Send;
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
    ) -> impl Future<Output = Result<(), LegError>> + Send;
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

/// Why a report was not delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Undelivered {
    /// The interaction refused it (told to the driver).
    Refused(ReportError),
    /// The interaction cannot take commands now (its store is not taking writes): deliver it
    /// again later.
    NotNow,
}

/// What the shell needs of the interactions.
pub trait Interactions: Clone + Send + Sync + 'static {
    /// Sends `command` as `by` (the system, or the customer whose client acted through its
    /// media, as in a renegotiation).
    fn command(
        &self,
        id: &InteractionId,
        by: Party,
        command: Command,
    ) -> impl Future<Output = Result<(), Undelivered>> + Send;
    /// Opens an interaction for a phone call from `caller` to the service number `number`,
    /// routed to agents like a new chat, with the call (`held`) waiting on its voice leg.
    fn open_for_call(
        &self,
        number: &str,
        caller: &str,
        held: HeldCall,
    ) -> impl Future<Output = Result<InteractionId, LegError>> + Send;
}

/// The call driver's metrics.
pub(crate) struct LegsMetrics {
    /// Calls from the app in progress, a customer peer and its agent side.
    app_calls: Gauge,
}

impl Part for LegsMetrics {
    fn register(r: &mut Registry) -> Self {
        LegsMetrics {
            app_calls: registered(
                r,
                "app_calls",
                "Calls from the app in progress",
                Gauge::default(),
            ),
        }
    }
}

/// The driver's input channels.
pub struct Inputs<Id> {
    /// The interactions' leg actions.
    pub actions: mpsc::UnboundedReceiver<(InteractionId, Action)>,
    pub peers: mpsc::Receiver<PeerEvent<Id>>,
    pub sip: mpsc::UnboundedReceiver<SipCallEvent>,
    pub incoming: mpsc::UnboundedReceiver<IncomingEvent>,
}

/// Reports queued for one interaction beyond this are dropped (with a warning): a flood of
/// digits into an interaction that cannot take them must not grow without bound.
const MAX_QUEUED_REPORTS: usize = 1024;
/// The first wait before a report is delivered again; it doubles up to [`REDELIVER_MAX`].
const REDELIVER_FIRST: Duration = Duration::from_millis(50);
const REDELIVER_MAX: Duration = Duration::from_secs(5);
/// How long the reports still queued at shutdown are given.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Work finished beside the loop.
enum Done {
    Delivered {
        id: InteractionId,
        refused: Option<(Command, ReportError)>,
    },
    Opened {
        held: HeldCall,
        result: Result<InteractionId, LegError>,
    },
}

/// The driver with what carries out its operations.
pub struct Shell<P: Peers, S: Phones, I: Interactions> {
    peers: P,
    phones: S,
    interactions: I,
    driver: Driver<P::Id>,
    /// Reports waiting for the delivery in flight to their interaction.
    queues: HashMap<InteractionId, VecDeque<(Party, Command)>>,
    beside: JoinSet<Done>,
    metrics: Option<Arc<LegsMetrics>>,
}

impl<P: Peers, S: Phones, I: Interactions> Shell<P, S, I> {
    pub fn new(peers: P, phones: S, interactions: I) -> Self {
        let driver = Driver::new(peers.ice_servers());
        Shell {
            peers,
            phones,
            interactions,
            driver,
            queues: HashMap::new(),
            beside: JoinSet::new(),
            metrics: None,
        }
    }

    /// Publishes the number of calls in progress as `app_calls`.
    pub(crate) fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics.part::<LegsMetrics>());
        self
    }

    /// Serves until `shutdown`, or until the hub's actions end; then releases every call.
    pub async fn run(mut self, mut inputs: Inputs<P::Id>, shutdown: CancellationToken) {
        loop {
            self.carry_out().await;
            if let Some(metrics) = &self.metrics {
                metrics.app_calls.set(self.driver.calls() as i64);
            }
            tokio::select! {
                Some(call) = inputs.incoming.recv() => match call {
                    IncomingEvent::Call(call) => self.driver.handle_incoming(call),
                    IncomingEvent::ServiceCall { incoming, number, caller } => {
                        self.driver.handle_service_call(incoming, &number, &caller)
                    }
                    IncomingEvent::Cancelled(incoming) => self.driver.handle_cancelled(incoming),
                },
                action = inputs.actions.recv() => match action {
                    Some((id, action)) => self.driver.handle_action(id, action),
                    None => break,
                },
                Some(event) = inputs.peers.recv() => self.driver.handle_peer_event(event),
                Some(event) = inputs.sip.recv() => self.driver.handle_sip(event),
                Some(done) = self.beside.join_next() => match done {
                    Ok(done) => self.done(done),
                    Err(e) => tracing::error!("a leg driver delivery failed: {e}"),
                },
                _ = shutdown.cancelled() => break,
            }
        }
        self.driver.shut_down();
        self.carry_out().await;
        // Nobody is left to answer later: the last reports get a moment to arrive.
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while let Some(done) = self.beside.join_next().await {
                if let Ok(done) = done {
                    self.done(done);
                }
            }
        })
        .await;
    }

    fn done(&mut self, done: Done) {
        match done {
            Done::Delivered { id, refused } => {
                if let Some((command, error)) = refused {
                    let outcome = Outcome::ReportRefused {
                        id: id.clone(),
                        command,
                        error,
                    };
                    self.driver.handle_outcome(outcome);
                }
                self.deliver_next(id);
            }
            Done::Opened { held, result } => {
                self.driver.handle_outcome(Outcome::Opened { held, result });
            }
        }
    }

    /// Carries out every operation the driver asks for, feeding the outcomes back, until it
    /// has nothing more to do.
    async fn carry_out(&mut self) {
        while let Some(op) = self.driver.poll_op() {
            if let Some(outcome) = self.op(op).await {
                self.driver.handle_outcome(outcome);
            }
        }
    }

    async fn op(&mut self, op: Op<P::Id>) -> Option<Outcome<P::Id>> {
        let outcome = match op {
            Op::CreatePeer { id, side, media } => {
                let result = self.peers.create(media).await;
                Outcome::PeerCreated { id, side, result }
            }
            Op::ApplyAnswer {
                id,
                side,
                peer,
                sdp,
            } => {
                let result = self.peers.answer(peer, sdp).await;
                Outcome::AnswerApplied { id, side, result }
            }
            Op::SetVideo { id, side, peer, on } => {
                let result = self.peers.set_video(peer, on).await;
                Outcome::VideoOffered { id, side, result }
            }
            Op::Link { id, a, b } => {
                let result = self.peers.link(a, b).await;
                Outcome::Joined { id, result }
            }
            Op::BridgeRtp {
                id,
                peer,
                remote,
                codec,
            } => {
                let result = self.peers.bridge_rtp(peer, remote, codec).await;
                Outcome::Joined { id, result }
            }
            Op::BridgeCalls {
                id,
                customer,
                agent,
            } => {
                let result = self.phones.bridge(customer, agent).await;
                Outcome::Joined { id, result }
            }
            Op::ClosePeer(peer) => {
                self.peers.close(peer).await;
                return None;
            }
            Op::Dial {
                id,
                side,
                to,
                service,
            } => {
                let result = match &to {
                    DialTo::Number(number) => self.phones.dial_number(number, &id, &service).await,
                    DialTo::Softphone(agent) => self.phones.dial_agent(agent, &id, &service).await,
                    DialTo::Mobile(agent) => self.phones.dial_mobile(agent, &id, &service).await,
                };
                Outcome::Dialled { id, side, result }
            }
            Op::Hangup(call) => {
                self.phones.hangup(call).await;
                return None;
            }
            Op::Answer { id, incoming } => {
                let result = self.phones.accept_incoming(incoming).await;
                Outcome::Answered { id, result }
            }
            Op::Reject {
                incoming,
                code,
                reason,
            } => {
                self.phones.reject_incoming(incoming, code, &reason).await;
                return None;
            }
            Op::Record {
                id,
                service,
                leg,
                customer,
                agent,
            } => {
                let file = self
                    .phones
                    .record(&id, &service, leg, customer, agent)
                    .await;
                Outcome::Recorded { id, file }
            }
            Op::Report { id, by, command } => {
                self.queue(id, by, command);
                return None;
            }
            Op::Open {
                held,
                number,
                caller,
            } => {
                let interactions = self.interactions.clone();
                self.beside.spawn(async move {
                    let result = interactions.open_for_call(&number, &caller, held).await;
                    Done::Opened { held, result }
                });
                return None;
            }
        };
        Some(outcome)
    }

    /// Queues a report behind those to the same interaction; delivers it now if none is in
    /// flight.
    fn queue(&mut self, id: InteractionId, by: Party, command: Command) {
        match self.queues.get_mut(&id) {
            Some(queue) if queue.len() >= MAX_QUEUED_REPORTS => {
                tracing::warn!(interaction = %id, ?command, "report dropped: too many queued");
            }
            // A delivery is in flight: this one follows it.
            Some(queue) => queue.push_back((by, command)),
            None => {
                self.queues.insert(id.clone(), VecDeque::new());
                self.deliver(id, by, command);
            }
        }
    }

    /// The delivery to `id` is done: the next report follows, or the queue is gone.
    fn deliver_next(&mut self, id: InteractionId) {
        let next = self.queues.get_mut(&id).and_then(VecDeque::pop_front);
        match next {
            Some((by, command)) => self.deliver(id, by, command),
            None => {
                self.queues.remove(&id);
            }
        }
    }

    fn deliver(&mut self, id: InteractionId, by: Party, command: Command) {
        let interactions = self.interactions.clone();
        self.beside.spawn(async move {
            let mut wait = REDELIVER_FIRST;
            loop {
                match interactions.command(&id, by.clone(), command.clone()).await {
                    Ok(()) => return Done::Delivered { id, refused: None },
                    Err(Undelivered::Refused(error)) => {
                        let refused = Some((command, error));
                        return Done::Delivered { id, refused };
                    }
                    Err(Undelivered::NotNow) => {
                        tracing::debug!(interaction = %id, "report waits for the store");
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(REDELIVER_MAX);
                    }
                }
            }
        });
    }
}
