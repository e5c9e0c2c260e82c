//! The tokio side of routing: one task owns the [`Router`]; one watcher task per interaction
//! carries out the router's decisions on it and projects its events to agents.
//!
//! The interaction's event stream is the single source of what agents see: an `offer` is sent
//! when the interaction says `offered`, `withdrawn` when it says so, and so on. Every tab of an
//! agent listens to the same per-agent broadcast, so tabs stay consistent by construction.
//! Commands to one interaction go through its watcher in order (offer before withdraw before
//! accept), without making the router wait for the store.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::router::{
    MobileDuty, Output, Presence, Router, RoutingError, Staff, Via, WithdrawReason,
};
use super::settings::{MobileSettings, SettingsError};
use crate::bridge::{
    AgentId, Command, Customer, EventKind, InteractionId, LegKind, LegState, Party, Phase, Time,
};
use crate::chat::store::{Store, StoreError};
use crate::hub::{Handle, Hub};
use crate::presentation::agent::{self, Scene};

/// What an agent is told, as JSON text shared by all their tabs.
pub type AgentEvent = Arc<str>;

/// An SMS offer for the mobile-operator side: the chat, the operator, and whether it stands.
#[derive(Debug, Clone)]
pub enum MobileOffer {
    Offered {
        chat: InteractionId,
        agent: AgentId,
        service: String,
        customer: Customer,
        /// The operator's mobile number now (their own setting, else the configuration's).
        number: Option<String>,
    },
    Withdrawn {
        chat: InteractionId,
        agent: AgentId,
        reason: WithdrawReason,
    },
}

/// What the agent sees at connect time.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub presence: Presence,
    pub load: u32,
    pub offers: Vec<InteractionId>,
    pub chats: Vec<InteractionId>,
}

type Reply<T> = oneshot::Sender<T>;

enum Request {
    Watched {
        chat: InteractionId,
        service: String,
        agent: Option<AgentId>,
        commands: mpsc::UnboundedSender<WatchCommand>,
    },
    Assigned {
        chat: InteractionId,
        service: String,
        agent: AgentId,
    },
    Ended {
        chat: InteractionId,
    },
    Call {
        agent: AgentId,
        up: bool,
    },
    Connect {
        agent: AgentId,
        reply: Reply<Result<Snapshot, RoutingError>>,
    },
    Disconnect {
        agent: AgentId,
    },
    Presence {
        agent: AgentId,
        presence: Presence,
        reply: Reply<Result<(), RoutingError>>,
    },
    Accept {
        chat: InteractionId,
        agent: AgentId,
        /// Only a standing SMS offer may be taken (a claim from a link).
        by_sms: bool,
        reply: Reply<Result<(), crate::hub::HubError>>,
        routed: Reply<Result<(), RoutingError>>,
    },
    Decline {
        chat: InteractionId,
        agent: AgentId,
        reply: Reply<Result<(), RoutingError>>,
    },
    MobileDuty {
        agent: AgentId,
        duty: MobileDuty,
    },
    Staff {
        department: String,
        reply: Reply<Staff>,
    },
}

enum WatchCommand {
    Offer(AgentId, Via),
    Withdraw(AgentId, WithdrawReason),
    Accept(
        AgentId,
        String,
        Option<Reply<Result<(), crate::hub::HubError>>>,
    ),
    Requeue,
    Status(u32, u64),
    GiveUp,
    /// The agent's SMS offer stands on their desk now.
    ToDesk(AgentId),
}

struct AgentChannel {
    events: broadcast::Sender<AgentEvent>,
    display_name: String,
}

struct Inner {
    requests: mpsc::UnboundedSender<Request>,
    agents: HashMap<AgentId, AgentChannel>,
    /// Each agent's mobile chat settings now: the configuration's, or their own stored ones.
    mobile_settings: std::sync::Mutex<HashMap<AgentId, MobileSettings>>,
    /// The customer's first message of each chat being watched, for the offers a `hello` lists.
    first_messages: std::sync::Mutex<HashMap<InteractionId, String>>,
    store: Store,
    mobile: broadcast::Sender<MobileOffer>,
    /// Subscribed before the first watcher starts, so that the SMS sender misses no offer.
    first_mobile: std::sync::Mutex<Option<broadcast::Receiver<MobileOffer>>>,
    /// The interactions a watcher looks after now: one watcher each, however often one is
    /// named.
    watched: std::sync::Mutex<std::collections::HashSet<InteractionId>>,
}

/// Routing for one node. Cheap to clone.
#[derive(Clone)]
pub struct Routing {
    inner: Arc<Inner>,
}

impl Routing {
    /// Starts the router task and watches every interaction already open.
    pub fn start(hub: Hub) -> Routing {
        let config = hub.config().clone();
        let agents = config
            .agents
            .iter()
            .map(|a| {
                let channel = AgentChannel {
                    events: broadcast::channel(1024).0,
                    display_name: a.display_name().to_string(),
                };
                (AgentId(a.name.clone()), channel)
            })
            .collect();
        let mobile_settings = config
            .agents
            .iter()
            .map(|a| (AgentId(a.name.clone()), MobileSettings::from_config(a)))
            .collect();
        let (requests, rx) = mpsc::unbounded_channel();
        let (mobile, first_mobile) = broadcast::channel(1024);
        let routing = Routing {
            inner: Arc::new(Inner {
                requests,
                agents,
                mobile_settings: std::sync::Mutex::new(mobile_settings),
                first_messages: std::sync::Mutex::new(HashMap::new()),
                store: hub.store().clone(),
                mobile,
                first_mobile: std::sync::Mutex::new(Some(first_mobile)),
                watched: std::sync::Mutex::new(std::collections::HashSet::new()),
            }),
        };
        let router = Router::from_config(&config, Time::now());
        tokio::spawn(run(router, rx, routing.clone()));
        // Whoever opens an interaction, the hub tells routing: no creator has to.
        let (running, mut created) = hub.subscribe_created();
        for handle in running {
            routing.watch(handle);
        }
        let watcher = routing.clone();
        tokio::spawn(async move {
            while let Some(handle) = created.recv().await {
                watcher.watch(handle);
            }
        });
        routing
    }

    /// Routes an interaction: it is offered to agents until one has it, and its events reach
    /// that agent. Every interaction the hub opens is watched already; naming one again does
    /// nothing while its watcher runs.
    pub fn watch(&self, handle: Handle) {
        let mut watched = self.inner.watched.lock().expect("watched");
        if watched.insert(handle.id.clone()) {
            tokio::spawn(watch(self.clone(), handle));
        }
    }

    /// The agent's event stream (every tab subscribes to the same one).
    pub fn subscribe(&self, agent: &AgentId) -> Option<broadcast::Receiver<AgentEvent>> {
        Some(self.inner.agents.get(agent)?.events.subscribe())
    }

    /// SMS offers to mobile operators, for the SMS sender. The first caller gets every offer
    /// since the start; later callers get those from now on.
    pub fn mobile_offers(&self) -> broadcast::Receiver<MobileOffer> {
        let first = self.inner.first_mobile.lock().expect("mobile").take();
        first.unwrap_or_else(|| self.inner.mobile.subscribe())
    }

    pub fn display_name(&self, agent: &AgentId) -> Option<&str> {
        Some(&self.inner.agents.get(agent)?.display_name)
    }

    /// A desktop tab connected; answers with what the agent has now.
    pub async fn connect(&self, agent: &AgentId) -> Result<Snapshot, RoutingError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Connect {
            agent: agent.clone(),
            reply,
        });
        answer.await.unwrap_or(Err(RoutingError::UnknownAgent))
    }

    pub fn disconnect(&self, agent: &AgentId) {
        self.send(Request::Disconnect {
            agent: agent.clone(),
        });
    }

    pub async fn set_presence(
        &self,
        agent: &AgentId,
        presence: Presence,
    ) -> Result<(), RoutingError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Presence {
            agent: agent.clone(),
            presence,
            reply,
        });
        answer.await.unwrap_or(Err(RoutingError::UnknownAgent))
    }

    /// Accepts a chat: the router decides atomically, then the interaction makes it so.
    pub async fn accept(&self, chat: &InteractionId, agent: &AgentId) -> Result<(), AcceptError> {
        self.accept_as(chat, agent, false).await
    }

    /// Takes a chat from the link of an SMS offer: refused unless that offer still stands.
    pub async fn claim_by_sms(
        &self,
        chat: &InteractionId,
        agent: &AgentId,
    ) -> Result<(), AcceptError> {
        self.accept_as(chat, agent, true).await
    }

    async fn accept_as(
        &self,
        chat: &InteractionId,
        agent: &AgentId,
        by_sms: bool,
    ) -> Result<(), AcceptError> {
        let (reply, answer) = oneshot::channel();
        let (routed, decided) = oneshot::channel();
        self.send(Request::Accept {
            chat: chat.clone(),
            agent: agent.clone(),
            by_sms,
            reply,
            routed,
        });
        decided
            .await
            .unwrap_or(Err(RoutingError::OfferNotAvailable))
            .map_err(AcceptError::Routing)?;
        answer
            .await
            .unwrap_or(Err(crate::hub::HubError::Closed))
            .map_err(AcceptError::Hub)
    }

    pub async fn decline(&self, chat: &InteractionId, agent: &AgentId) -> Result<(), RoutingError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Decline {
            chat: chat.clone(),
            agent: agent.clone(),
            reply,
        });
        answer.await.unwrap_or(Err(RoutingError::OfferNotAvailable))
    }

    /// Who would take a chat of `department` now, and its chats waiting ([`Router::staff`]).
    pub async fn staff(&self, department: &str) -> Staff {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Staff {
            department: department.to_string(),
            reply,
        });
        answer.await.unwrap_or_default()
    }

    fn send(&self, request: Request) {
        let _ = self.inner.requests.send(request);
    }

    /// The customer's first message in a chat still routed (shown with its offer).
    pub fn first_message(&self, chat: &InteractionId) -> Option<String> {
        let firsts = self.inner.first_messages.lock().expect("first messages");
        firsts.get(chat).cloned()
    }

    fn set_first_message(&self, chat: &InteractionId, text: Option<String>) {
        let mut firsts = self.inner.first_messages.lock().expect("first messages");
        match text {
            Some(text) => firsts.insert(chat.clone(), text),
            None => firsts.remove(chat),
        };
    }

    /// The agent's mobile chat settings now.
    pub fn mobile_settings(&self, agent: &AgentId) -> Option<MobileSettings> {
        let settings = self.inner.mobile_settings.lock().expect("mobile settings");
        settings.get(agent).cloned()
    }

    /// The number that gets the agent's SMS offers and calls on the device `mobile`.
    pub fn mobile_number(&self, agent: &AgentId) -> Option<String> {
        self.mobile_settings(agent)?.mobile
    }

    /// Validates and stores the agent's new mobile chat settings, then applies them at once
    /// (routing texts them or stops) and tells every tab of the agent.
    pub async fn set_mobile_settings(
        &self,
        agent: &AgentId,
        settings: MobileSettings,
    ) -> Result<MobileSettings, SaveError> {
        if !self.inner.agents.contains_key(agent) {
            return Err(SaveError::Routing(RoutingError::UnknownAgent));
        }
        let settings = settings.validated()?;
        let record = settings.to_record(&agent.0, Time::now().millis());
        self.inner.store.put_agent_settings(&record).await?;
        self.apply_mobile_settings(agent, settings.clone());
        self.tell(
            agent,
            json!({"event": "settings", "mobile_settings": settings}),
        );
        Ok(settings)
    }

    fn apply_mobile_settings(&self, agent: &AgentId, settings: MobileSettings) {
        let duty = settings.duty();
        self.inner
            .mobile_settings
            .lock()
            .expect("mobile settings")
            .insert(agent.clone(), settings);
        self.send(Request::MobileDuty {
            agent: agent.clone(),
            duty,
        });
    }

    /// The settings agents stored before this start, now in force here; their duties for the
    /// router.
    async fn restore_mobile_settings(&self) -> Vec<(AgentId, MobileDuty)> {
        let records = match self.inner.store.agent_settings().await {
            Ok(records) => records,
            Err(e) => {
                tracing::error!(
                    "agents' stored settings cannot be read, the configuration's stand: {e}"
                );
                return Vec::new();
            }
        };
        let mut duties = Vec::new();
        let mut table = self.inner.mobile_settings.lock().expect("mobile settings");
        for record in records {
            let agent = AgentId(record.agent.clone());
            if !self.inner.agents.contains_key(&agent) {
                continue;
            }
            match MobileSettings::from_record(&record) {
                Some(settings) => {
                    duties.push((agent.clone(), settings.duty()));
                    table.insert(agent, settings);
                }
                None => tracing::warn!(%agent, "stored settings ignored: they do not validate"),
            }
        }
        duties
    }

    fn tell(&self, agent: &AgentId, event: Value) {
        if let Some(channel) = self.inner.agents.get(agent) {
            let _ = channel.events.send(Arc::from(event.to_string()));
        }
    }
}

/// Why an agent's settings were not saved.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    #[error(transparent)]
    Invalid(#[from] SettingsError),
    #[error(transparent)]
    Routing(RoutingError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why an accept failed: routing refused it, or the interaction did.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error(transparent)]
    Routing(RoutingError),
    #[error(transparent)]
    Hub(crate::hub::HubError),
}

/// Requests served before the router's decisions go out and its next timer is computed.
const MAX_BATCH: usize = 256;

/// What the router's task keeps besides the router.
#[derive(Default)]
struct Desk {
    watchers: HashMap<InteractionId, mpsc::UnboundedSender<WatchCommand>>,
    accept_replies: HashMap<InteractionId, Reply<Result<(), crate::hub::HubError>>>,
}

/// The router's task: requests and timers in, decisions out.
///
/// The requests queued meanwhile are served together (one [`Router::batch`]) before the
/// decisions are carried out, so a burst of new chats or accepts costs one pass over the queue
/// and one look at the router's timers, not one per request.
async fn run(mut router: Router, mut rx: mpsc::UnboundedReceiver<Request>, routing: Routing) {
    let mut desk = Desk::default();
    let mut clock = Time(0);
    // Agents' own settings apply before any chat is routed (requests queue meanwhile).
    for (agent, duty) in routing.restore_mobile_settings().await {
        router.handle_mobile_duty(Time::now(), &agent, duty);
    }
    loop {
        let sleep = match router.poll_timeout() {
            Some(at) => tokio::time::Instant::now() + at.since(Time::now()),
            None => tokio::time::Instant::now() + Duration::from_secs(86_400),
        };
        let request = tokio::select! {
            request = rx.recv() => match request {
                Some(r) => Some(r),
                None => return,
            },
            _ = tokio::time::sleep_until(sleep) => None,
        };
        clock = clock.max(Time::now());
        let now = clock;
        match request {
            None => router.handle_timeout(now),
            Some(request) => router.batch(now, |router| {
                serve(router, &mut desk, &routing, now, request);
                for _ in 1..MAX_BATCH {
                    let Ok(request) = rx.try_recv() else { break };
                    serve(router, &mut desk, &routing, now, request);
                }
            }),
        }
        while let Some(output) = router.poll_output() {
            let (chat, command) = match output {
                Output::Offer { chat, agent, via } => (chat, WatchCommand::Offer(agent, via)),
                Output::Withdraw {
                    chat,
                    agent,
                    reason,
                } => (chat, WatchCommand::Withdraw(agent, reason)),
                Output::Assign { chat, agent } => {
                    let name = routing.display_name(&agent).unwrap_or(&agent.0).to_string();
                    let reply = desk.accept_replies.remove(&chat);
                    (chat, WatchCommand::Accept(agent, name, reply))
                }
                Output::Requeue { chat, .. } => (chat, WatchCommand::Requeue),
                Output::QueueStatus {
                    chat,
                    position,
                    ewt,
                } => (chat, WatchCommand::Status(position, ewt.as_secs())),
                Output::NobodyAvailable { chat } => (chat, WatchCommand::GiveUp),
                Output::MovedToDesk { chat, agent } => (chat, WatchCommand::ToDesk(agent)),
            };
            if let Some(watcher) = desk.watchers.get(&chat) {
                let _ = watcher.send(command);
            }
        }
    }
}

/// Feeds one request to the router.
fn serve(router: &mut Router, desk: &mut Desk, routing: &Routing, now: Time, request: Request) {
    match request {
        Request::Watched {
            chat,
            service,
            agent,
            commands,
        } => {
            desk.watchers.insert(chat.clone(), commands);
            match agent {
                Some(agent) => router.handle_assigned(now, &chat, &service, &agent),
                None => router.handle_new_chat(now, chat, &service),
            }
        }
        Request::Assigned {
            chat,
            service,
            agent,
        } => router.handle_assigned(now, &chat, &service, &agent),
        Request::Ended { chat } => {
            desk.watchers.remove(&chat);
            router.handle_chat_ended(now, &chat);
        }
        Request::Call { agent, up } => router.handle_call(now, &agent, up),
        Request::Connect { agent, reply } => {
            let result = router.handle_connect(now, &agent).map(|()| {
                let (offers, chats) = router.agent_chats(&agent);
                Snapshot {
                    presence: router.presence(&agent).unwrap_or(Presence::Offline),
                    load: router.load(&agent).unwrap_or(0),
                    offers,
                    chats,
                }
            });
            let _ = reply.send(result);
        }
        Request::Disconnect { agent } => router.handle_disconnect(now, &agent),
        Request::Presence {
            agent,
            presence,
            reply,
        } => {
            let result = router.handle_presence(now, &agent, presence);
            if result.is_ok() {
                let load = router.load(&agent).unwrap_or(0);
                let presence = router.presence(&agent).unwrap_or(presence);
                routing.tell(
                    &agent,
                    json!({"event": "state", "state": presence, "load": load}),
                );
            }
            let _ = reply.send(result);
        }
        Request::Accept {
            chat,
            agent,
            by_sms,
            reply,
            routed,
        } => {
            let result = if by_sms {
                router.handle_claim_by_sms(now, &chat, &agent)
            } else {
                router.handle_accept(now, &chat, &agent)
            };
            if result.is_ok() {
                desk.accept_replies.insert(chat.clone(), reply);
            }
            let _ = routed.send(result);
        }
        Request::Decline { chat, agent, reply } => {
            let _ = reply.send(router.handle_decline(now, &chat, &agent));
        }
        Request::MobileDuty { agent, duty } => router.handle_mobile_duty(now, &agent, duty),
        Request::Staff { department, reply } => {
            let _ = reply.send(router.staff(now, &department));
        }
    }
}

/// What a watcher knows about its interaction.
struct Watched {
    /// What the events so far told the desk (customer, context, recordings).
    scene: Scene,
    agent: Option<AgentId>,
    offered_via: HashMap<AgentId, Via>,
    withdraw_reasons: HashMap<AgentId, WithdrawReason>,
    live_calls: HashMap<u32, bool>,
    /// The customer's first message, shown with the offer.
    first_message: Option<String>,
    closing: bool,
}

/// One interaction's watcher: carries out routing's commands in order and tells agents what
/// happens in it.
async fn watch(routing: Routing, handle: Handle) {
    let id = handle.id.clone();
    follow(&routing, handle).await;
    routing.inner.watched.lock().expect("watched").remove(&id);
}

/// Follows one interaction until it is over.
async fn follow(routing: &Routing, handle: Handle) {
    let Ok(mut sub) = handle.subscribe(0).await else {
        return;
    };
    let mut w = Watched {
        scene: Scene::new(handle.id.clone(), handle.service.clone()),
        agent: None,
        offered_via: HashMap::new(),
        withdraw_reasons: HashMap::new(),
        live_calls: HashMap::new(),
        first_message: None,
        closing: false,
    };
    // The history sets the scene; agents are only told what happens from now on.
    for event in &sub.backlog {
        agent::view(&mut w.scene, &event.kind);
        match &event.kind {
            EventKind::PartyJoined {
                party: Party::Agent(a),
                ..
            } => w.agent = Some(a.clone()),
            EventKind::PartyLeft {
                party: Party::Agent(_),
                ..
            } => w.agent = None,
            EventKind::Message {
                from: Party::Customer,
                text,
                ..
            } if w.first_message.is_none() => w.first_message = Some(first_words(text)),
            _ => {}
        }
    }
    if matches!(sub.phase, Phase::Closing | Phase::Closed) {
        return;
    }
    let id = w.scene.id.clone();
    routing.set_first_message(&id, w.first_message.clone());
    let (commands, mut queue) = mpsc::unbounded_channel();
    routing.send(Request::Watched {
        chat: id.clone(),
        service: w.scene.service.clone(),
        agent: w.agent.clone().filter(|_| sub.phase == Phase::Active),
        commands,
    });
    loop {
        tokio::select! {
            event = sub.live.recv() => match event {
                Ok(event) => {
                    if !project(routing, &mut w, &event.kind, event.seq, event.at) {
                        break;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(interaction = %id, "agent projection lagged by {n} events");
                }
                Err(broadcast::error::RecvError::Closed) => break,
            },
            command = queue.recv() => {
                match command {
                    None => break,
                    Some(WatchCommand::ToDesk(agent)) => to_desk(routing, &mut w, agent),
                    Some(command) => carry_out(&handle, &mut w, command).await,
                }
            }
        }
    }
    routing.set_first_message(&id, None);
    routing.send(Request::Ended { chat: id });
}

/// An operator texted about the chat opened the desktop: the link expires and the desk shows
/// the offer instead.
fn to_desk(routing: &Routing, w: &mut Watched, agent: AgentId) {
    if w.offered_via.insert(agent.clone(), Via::Desktop) != Some(Via::Sms) {
        return;
    }
    let _ = routing.inner.mobile.send(MobileOffer::Withdrawn {
        chat: w.scene.id.clone(),
        agent: agent.clone(),
        reason: WithdrawReason::AgentLeft,
    });
    let offer = agent::offer(
        &w.scene,
        &w.scene.context,
        Via::Desktop,
        w.first_message.as_deref(),
    );
    routing.tell(&agent, agent::stamp(offer, &w.scene.id, None, Time::now()));
}

async fn carry_out(handle: &Handle, w: &mut Watched, command: WatchCommand) {
    let command = match command {
        WatchCommand::Offer(agent, via) => {
            w.offered_via.insert(agent.clone(), via);
            Command::Offer { agent }
        }
        WatchCommand::Withdraw(agent, reason) => {
            w.withdraw_reasons.insert(agent.clone(), reason);
            Command::Withdraw { agent }
        }
        WatchCommand::Accept(agent, display_name, reply) => {
            let result = handle
                .command(Party::Agent(agent), Command::Accept { display_name })
                .await
                .map(|_| ());
            if let Err(e) = &result {
                tracing::info!(interaction = %w.scene.id, "accept refused: {e}");
            }
            if let Some(reply) = reply {
                let _ = reply.send(result);
            }
            return;
        }
        WatchCommand::Requeue => Command::Requeue,
        WatchCommand::Status(position, ewt_s) => Command::QueueStatus { position, ewt_s },
        WatchCommand::GiveUp => Command::NoAgentAvailable,
        WatchCommand::ToDesk(_) => return,
    };
    // Nothing waits for an offer's outcome, so offers to many agents are queued back to back
    // and the interaction stores them with one write.
    if let Err(e) = handle.send(Party::System, command).await {
        tracing::debug!(interaction = %w.scene.id, "routing command not delivered: {e}");
    }
}

/// Carries out what one event means for routing and tells agents about it; `false` once the
/// interaction is over. What an agent sees of it is [`agent`]'s.
fn project(
    routing: &Routing,
    w: &mut Watched,
    kind: &EventKind,
    seq: Option<u64>,
    at: Time,
) -> bool {
    let chat = w.scene.id.clone();
    let to_agent = |agent: &AgentId, view: Value| {
        routing.tell(agent, agent::stamp(view, &chat, seq, at));
    };
    let withdrawn_by_sms = |agent: AgentId, reason: WithdrawReason| {
        let _ = routing.inner.mobile.send(MobileOffer::Withdrawn {
            chat: chat.clone(),
            agent,
            reason,
        });
    };
    match kind {
        EventKind::Offered { agent, context } => {
            let via = w.offered_via.get(agent).copied().unwrap_or(Via::Desktop);
            if via == Via::Sms {
                let _ = routing.inner.mobile.send(MobileOffer::Offered {
                    chat: chat.clone(),
                    agent: agent.clone(),
                    service: w.scene.service.clone(),
                    customer: w.scene.customer.clone(),
                    number: routing.mobile_number(agent),
                });
            }
            let offer = agent::offer(&w.scene, context, via, w.first_message.as_deref());
            to_agent(agent, offer);
        }
        EventKind::Withdrawn { agent } => {
            let reason = w
                .withdraw_reasons
                .remove(agent)
                .unwrap_or(WithdrawReason::Taken);
            if w.offered_via.remove(agent) == Some(Via::Sms) {
                withdrawn_by_sms(agent.clone(), reason);
            }
            to_agent(agent, agent::withdrawn(reason));
        }
        EventKind::PartyJoined {
            party: Party::Agent(agent),
            ..
        } => {
            w.agent = Some(agent.clone());
            for (other, via) in w.offered_via.drain() {
                if via == Via::Sms && other != *agent {
                    withdrawn_by_sms(other, WithdrawReason::Taken);
                }
            }
            routing.send(Request::Assigned {
                chat: chat.clone(),
                service: w.scene.service.clone(),
                agent: agent.clone(),
            });
            if let Some(view) = agent::view(&mut w.scene, kind) {
                to_agent(agent, view);
            }
        }
        EventKind::PartyLeft {
            party: Party::Agent(agent),
            ..
        } => {
            // Leaving outside the teardown is a re-queue.
            if w.agent.as_ref() == Some(agent) && !w.closing {
                to_agent(agent, agent::removed());
                w.agent = None;
            }
        }
        EventKind::Leg {
            leg,
            kind: leg_kind,
            state,
            ..
        } => {
            if *leg_kind == LegKind::Voice
                && let Some(agent) = &w.agent
            {
                let live = state.is_live() && *state != LegState::AwaitingApproval;
                let was = w.live_calls.insert(leg.0, live).unwrap_or(false);
                if live != was {
                    routing.send(Request::Call {
                        agent: agent.clone(),
                        up: live,
                    });
                }
            }
            tell_assigned(w, kind, to_agent);
        }
        // The gateway's offers to the agent's own WebRTC leg.
        EventKind::Signaling {
            to: Party::Agent(agent),
            data,
            ..
        } => to_agent(agent, agent::webrtc_signaling(data)),
        EventKind::TeardownStarted { .. } => {
            w.closing = true;
            // Offers still standing go with the chat (the caller hung up, the customer left):
            // the router forgets them without a word to the interaction, so agents hear it here.
            for (agent, via) in std::mem::take(&mut w.offered_via) {
                let reason = WithdrawReason::Ended;
                if via == Via::Sms {
                    withdrawn_by_sms(agent.clone(), reason);
                }
                to_agent(&agent, agent::withdrawn(reason));
            }
        }
        EventKind::Status {
            phase: Phase::Closed,
        } => return false,
        EventKind::Message {
            from: Party::Customer,
            text,
            ..
        } if w.first_message.is_none() => {
            w.first_message = Some(first_words(text));
            routing.set_first_message(&chat, w.first_message.clone());
            if w.agent.is_some() {
                tell_assigned(w, kind, to_agent);
            } else {
                // Desks holding the offer show the first message with it.
                for (agent, via) in &w.offered_via {
                    if *via == Via::Desktop {
                        let offer = agent::offer(
                            &w.scene,
                            &w.scene.context,
                            *via,
                            w.first_message.as_deref(),
                        );
                        routing.tell(agent, agent::stamp(offer, &chat, None, at));
                    }
                }
            }
        }
        other => tell_assigned(w, other, to_agent),
    }
    true
}

/// Reads an event into the scene and shows it to the agent who has the chat, if any.
fn tell_assigned(w: &mut Watched, kind: &EventKind, to_agent: impl Fn(&AgentId, Value)) {
    let view = agent::view(&mut w.scene, kind);
    if let (Some(agent), Some(view)) = (&w.agent, view) {
        to_agent(agent, view);
    }
}

/// The start of a message, as an offer shows it (at most 200 characters).
fn first_words(text: &str) -> String {
    const SHOWN: usize = 200;
    match text.char_indices().nth(SHOWN) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}
