//! The tokio side of routing: one task owns the [`Router`]; one watcher task per interaction
//! carries out the router's decisions on it and projects its events to agents.
//!
//! The interaction's event stream is the single source of what agents see: an `offer` is sent
//! when the interaction says `offered`, `withdrawn` when it says so, and so on. Every tab of an
//! agent listens to the same per-agent broadcast, so tabs stay consistent by construction.
//! Commands to one interaction go through its watcher in order (offer before withdraw before
//! accept), without making the router wait for the store.
//!
//! **Several nodes.** A cluster routes with one router, on the node that leads routing
//! ([`Routing::lead`]); it watches every open interaction, wherever it runs. Desks on any node
//! reach it with plain-data [`Ask`]s through a [`Fabric`], and everything agents are told goes
//! out through the fabric to the node their tabs are on ([`Heard`]). Each node says how many
//! tabs of each agent it holds (absolute counts, ordered by `seq`), so a new leader learns who
//! is at a desk by asking the nodes again ([`Routing::rejoin`]), and a dead node's tabs count
//! no more ([`Routing::nodes_alive`]).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::router::{
    MobileDuty, Output, Presence, Router, RoutingError, Staff, Via, WithdrawReason,
};
use super::settings::{MobileSettings, SettingsError};
use crate::bridge::{
    AgentId, Command, Customer, EventKind, InteractionId, LegKind, LegState, Party, Phase, Time,
};
use crate::chat::store::{Store, StoreError};
use crate::hub::{Handle, Hub, HubError};
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
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    pub presence: Presence,
    pub load: u32,
    pub offers: Vec<InteractionId>,
    pub chats: Vec<InteractionId>,
    /// The customer's first message of each of these chats, where there is one.
    pub first_messages: HashMap<InteractionId, String>,
}

/// What a desk asks of routing: plain data, so that it may travel to the node that routes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Ask {
    /// `node` holds `tabs` desktop connections of the agent now. A node's word on one agent
    /// is ordered by `seq`: an older one arriving late changes nothing.
    Tabs {
        agent: AgentId,
        node: String,
        tabs: u32,
        seq: u64,
    },
    Presence {
        agent: AgentId,
        presence: Presence,
    },
    /// Only a standing SMS offer may be taken `by_sms` (a claim from a link).
    Accept {
        chat: InteractionId,
        agent: AgentId,
        by_sms: bool,
    },
    Decline {
        chat: InteractionId,
        agent: AgentId,
    },
    Staff {
        department: String,
    },
}

/// Routing's answer to an [`Ask`].
#[derive(Debug)]
pub enum Answer {
    /// To `Tabs`: what the agent has now.
    Snapshot(Snapshot),
    Staff(Staff),
    Done,
    /// Routing refused.
    Refused(RoutingError),
    /// Routing granted an accept, and the interaction refused it.
    Failed(HubError),
}

/// What the desks of one agent hear, wherever their tabs are.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Heard {
    /// An event for every tab of the agent.
    Event { agent: AgentId, text: String },
    /// The agent's mobile chat settings changed.
    Settings {
        agent: AgentId,
        settings: MobileSettings,
    },
}

/// The other nodes of a cluster, as routing sees them.
pub trait Fabric: Send + Sync + 'static {
    /// This node's name.
    fn node(&self) -> &str;
    /// Asks the node that routes now.
    fn ask(&self, ask: Ask) -> BoxFuture<'static, Answer>;
    /// Tells every node (this one too, the same way) what an agent's desks hear.
    fn tell(&self, heard: Heard);
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
    MobileDuty {
        agent: AgentId,
        duty: MobileDuty,
    },
    /// The nodes alive now: the tabs of any other count no more.
    NodesAlive {
        nodes: HashSet<String>,
    },
    Ask(Ask, Reply<Answer>),
}

enum WatchCommand {
    Offer(AgentId, Via),
    Withdraw(AgentId, WithdrawReason),
    Accept(AgentId, String, Option<Reply<Answer>>),
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

/// One agent's desk on this node: how many tabs, and the presence last set from here.
#[derive(Debug, Clone, Copy, Default)]
struct Desk {
    tabs: u32,
    presence: Option<Presence>,
}

/// The router running here, for as long as this node routes.
struct Term {
    requests: mpsc::UnboundedSender<Request>,
    /// Ends the term's watchers.
    over: CancellationToken,
    /// The interactions a watcher of this term looks after: one watcher each, however often
    /// one is named.
    watched: Mutex<HashSet<InteractionId>>,
}

impl Term {
    fn send(&self, request: Request) {
        let _ = self.requests.send(request);
    }
}

struct Inner {
    hub: Hub,
    agents: HashMap<AgentId, AgentChannel>,
    /// Each agent's mobile chat settings now: the configuration's, or their own stored ones.
    mobile_settings: Mutex<HashMap<AgentId, MobileSettings>>,
    /// The customer's first message of each chat being watched, for the offers a `hello` lists.
    first_messages: Mutex<HashMap<InteractionId, String>>,
    store: Store,
    mobile: broadcast::Sender<MobileOffer>,
    /// Subscribed before the first watcher starts, so that the SMS sender misses no offer.
    first_mobile: Mutex<Option<broadcast::Receiver<MobileOffer>>>,
    /// The router, while it runs here.
    term: Mutex<Option<Arc<Term>>>,
    /// The other nodes, on a cluster.
    fabric: Option<Arc<dyn Fabric>>,
    /// The desks of agents on this node.
    desks: Mutex<HashMap<AgentId, Desk>>,
    /// Orders this node's word on its desks (see [`Ask::Tabs`]); starts from the clock, so a
    /// node that restarts speaks after its former self.
    seq: AtomicU64,
}

/// Routing for one node. Cheap to clone.
#[derive(Clone)]
pub struct Routing {
    inner: Arc<Inner>,
}

impl Routing {
    /// Starts routing on a single node: the router runs here and watches every interaction
    /// the hub opens (and those already open).
    pub fn start(hub: Hub) -> Routing {
        let routing = Routing::new(hub.clone(), None);
        let term = routing.lead();
        // Whoever opens an interaction, the hub tells routing: no creator has to.
        let (running, mut created) = hub.subscribe_created();
        for handle in running {
            routing.watch(handle);
        }
        let watcher = routing.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = term.cancelled() => return,
                    handle = created.recv() => match handle {
                        Some(handle) => watcher.watch(handle),
                        None => return,
                    },
                }
            }
        });
        routing
    }

    /// Routing on a node of a cluster: desks here ask the node that leads routing through
    /// `fabric`, until this node is made to lead ([`Routing::lead`]).
    pub fn clustered(hub: Hub, fabric: Arc<dyn Fabric>) -> Routing {
        Routing::new(hub, Some(fabric))
    }

    fn new(hub: Hub, fabric: Option<Arc<dyn Fabric>>) -> Routing {
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
        let (mobile, first_mobile) = broadcast::channel(1024);
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Routing {
            inner: Arc::new(Inner {
                store: hub.store().clone(),
                hub,
                agents,
                mobile_settings: Mutex::new(mobile_settings),
                first_messages: Mutex::new(HashMap::new()),
                mobile,
                first_mobile: Mutex::new(Some(first_mobile)),
                term: Mutex::new(None),
                fabric,
                desks: Mutex::new(HashMap::new()),
                seq: AtomicU64::new(since_epoch.as_micros() as u64),
            }),
        }
    }

    /// Starts the router here, with nobody at a desk yet (desks tell it: [`Routing::rejoin`]
    /// for this node's). Returns what ends this term; [`Routing::step_down`] does too.
    pub fn lead(&self) -> CancellationToken {
        let (requests, rx) = mpsc::unbounded_channel();
        let term = Arc::new(Term {
            requests,
            over: CancellationToken::new(),
            watched: Mutex::new(HashSet::new()),
        });
        let over = term.over.clone();
        let router = Router::from_config(self.inner.hub.config(), Time::now());
        tokio::spawn(run(router, rx, self.clone(), over.clone()));
        if let Some(old) = self.inner.term.lock().expect("term").replace(term) {
            old.over.cancel();
        }
        over
    }

    /// Stops routing here: the router and its watchers end; desks ask the fabric.
    pub fn step_down(&self) {
        if let Some(term) = self.inner.term.lock().expect("term").take() {
            term.over.cancel();
        }
    }

    /// Whether the router runs here.
    pub fn leads(&self) -> bool {
        self.term().is_some()
    }

    fn term(&self) -> Option<Arc<Term>> {
        self.inner.term.lock().expect("term").clone()
    }

    /// Routes an interaction: it is offered to agents until one has it, and its events reach
    /// that agent. Naming one again does nothing while its watcher runs; nothing happens on a
    /// node that does not route.
    pub fn watch(&self, handle: Handle) {
        drop(self.watch_ready(handle));
    }

    /// Whether a watcher follows the interaction in this term.
    pub fn watches(&self, id: &InteractionId) -> bool {
        self.term()
            .is_some_and(|term| term.watched.lock().expect("watched").contains(id))
    }

    /// [`Routing::watch`]; the answer comes once the watcher follows the interaction's events
    /// (or cannot, or another watcher does already).
    pub fn watch_ready(&self, handle: Handle) -> oneshot::Receiver<()> {
        let (ready, answer) = oneshot::channel();
        let Some(term) = self.term() else {
            return answer;
        };
        if term
            .watched
            .lock()
            .expect("watched")
            .insert(handle.id.clone())
        {
            tokio::spawn(watch(self.clone(), term, handle, ready));
        }
        answer
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
        if !self.inner.agents.contains_key(agent) {
            return Err(RoutingError::UnknownAgent);
        }
        match self.ask(self.count_tab(agent, true)).await {
            Answer::Snapshot(snapshot) => Ok(snapshot),
            other => {
                // Not counted where it was not heard: this tab never connected.
                let undo = self.count_tab(agent, false);
                tokio::spawn(self.ask(undo));
                Err(refusal(other))
            }
        }
    }

    pub fn disconnect(&self, agent: &AgentId) {
        if self.inner.agents.contains_key(agent) {
            tokio::spawn(self.ask(self.count_tab(agent, false)));
        }
    }

    /// One more (or one fewer) tab of `agent` here, as this node's next word on it.
    fn count_tab(&self, agent: &AgentId, up: bool) -> Ask {
        let mut desks = self.inner.desks.lock().expect("desks");
        let desk = desks.entry(agent.clone()).or_default();
        desk.tabs = if up {
            desk.tabs + 1
        } else {
            desk.tabs.saturating_sub(1)
        };
        let ask = self.tabs_ask(agent, desk.tabs);
        if desk.tabs == 0 {
            desks.remove(agent);
        }
        ask
    }

    fn tabs_ask(&self, agent: &AgentId, tabs: u32) -> Ask {
        Ask::Tabs {
            agent: agent.clone(),
            node: self.node().to_string(),
            tabs,
            seq: self.inner.seq.fetch_add(1, Ordering::Relaxed),
        }
    }

    fn node(&self) -> &str {
        self.inner.fabric.as_ref().map_or("", |f| f.node())
    }

    /// Tells the router (a new one, on a cluster) who is at a desk on this node, and the
    /// presence each set last.
    pub async fn rejoin(&self) {
        let desks: Vec<(AgentId, Desk)> = {
            let desks = self.inner.desks.lock().expect("desks");
            desks.iter().map(|(a, d)| (a.clone(), *d)).collect()
        };
        for (agent, desk) in desks {
            self.ask(self.tabs_ask(&agent, desk.tabs)).await;
            if let Some(presence) = desk.presence {
                self.ask(Ask::Presence { agent, presence }).await;
            }
        }
    }

    /// Tells every agent's tabs to load what they have afresh (`resync`): what a new leader
    /// says once it follows every chat's events, since what happened while nobody led was told
    /// to nobody (and what happens from then on is told).
    pub fn resync_all(&self) {
        for agent in self.inner.agents.keys() {
            self.tell(agent, json!({"event": "resync", "missed": 0}));
        }
    }

    /// The nodes of the cluster alive now: desks on any other count no more.
    pub fn nodes_alive(&self, nodes: HashSet<String>) {
        if let Some(term) = self.term() {
            term.send(Request::NodesAlive { nodes });
        }
    }

    pub async fn set_presence(
        &self,
        agent: &AgentId,
        presence: Presence,
    ) -> Result<(), RoutingError> {
        if let Some(desk) = self.inner.desks.lock().expect("desks").get_mut(agent) {
            desk.presence = Some(presence);
        }
        let ask = Ask::Presence {
            agent: agent.clone(),
            presence,
        };
        match self.ask(ask).await {
            Answer::Done => Ok(()),
            other => Err(refusal(other)),
        }
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
        let ask = Ask::Accept {
            chat: chat.clone(),
            agent: agent.clone(),
            by_sms,
        };
        match self.ask(ask).await {
            Answer::Done => Ok(()),
            Answer::Failed(e) => Err(AcceptError::Hub(e)),
            other => Err(AcceptError::Routing(refusal(other))),
        }
    }

    pub async fn decline(&self, chat: &InteractionId, agent: &AgentId) -> Result<(), RoutingError> {
        let ask = Ask::Decline {
            chat: chat.clone(),
            agent: agent.clone(),
        };
        match self.ask(ask).await {
            Answer::Done => Ok(()),
            other => Err(refusal(other)),
        }
    }

    /// Who would take a chat of `department` now, and its chats waiting ([`Router::staff`]).
    pub async fn staff(&self, department: &str) -> Staff {
        let ask = Ask::Staff {
            department: department.to_string(),
        };
        match self.ask(ask).await {
            Answer::Staff(staff) => staff,
            _ => Staff::default(),
        }
    }

    /// Asks the router, here or on the node that routes.
    fn ask(&self, ask: Ask) -> BoxFuture<'static, Answer> {
        if let Some(answer) = self.ask_here(ask.clone()) {
            return answer;
        }
        match &self.inner.fabric {
            Some(fabric) => fabric.ask(ask),
            None => Box::pin(async { Answer::Refused(RoutingError::Unavailable) }),
        }
    }

    /// Asks the router running here, if it does: the ask is queued before this returns, so
    /// asks queued one after the other are served in that order.
    pub fn ask_here(&self, ask: Ask) -> Option<BoxFuture<'static, Answer>> {
        let term = self.term()?;
        let (reply, answer) = oneshot::channel();
        term.send(Request::Ask(ask, reply));
        Some(Box::pin(async move {
            answer
                .await
                .unwrap_or(Answer::Refused(RoutingError::Unavailable))
        }))
    }

    fn send(&self, request: Request) {
        if let Some(term) = self.term() {
            term.send(request);
        }
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
        self.spread(Heard::Settings {
            agent: agent.clone(),
            settings: settings.clone(),
        });
        self.tell(
            agent,
            json!({"event": "settings", "mobile_settings": settings}),
        );
        Ok(settings)
    }

    /// What this node's desks hear: from this node, or (on a cluster) from any.
    pub fn hear(&self, heard: Heard) {
        match heard {
            Heard::Event { agent, text } => {
                if let Some(channel) = self.inner.agents.get(&agent) {
                    let _ = channel.events.send(Arc::from(text));
                }
            }
            Heard::Settings { agent, settings } => {
                if self.inner.agents.contains_key(&agent) {
                    self.apply_mobile_settings(&agent, settings)
                }
            }
        }
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

    /// Tells every tab of the agent, on whichever node it is.
    fn tell(&self, agent: &AgentId, event: Value) {
        self.spread(Heard::Event {
            agent: agent.clone(),
            text: event.to_string(),
        });
    }

    /// Makes every node's desks hear `heard`: this node's directly, a cluster's through the
    /// fabric.
    fn spread(&self, heard: Heard) {
        match &self.inner.fabric {
            Some(fabric) => fabric.tell(heard),
            None => self.hear(heard),
        }
    }
}

/// What an answer other than the one hoped for means to the asker.
fn refusal(answer: Answer) -> RoutingError {
    match answer {
        Answer::Refused(e) => e,
        _ => RoutingError::Unavailable,
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
    Hub(HubError),
}

/// Requests served before the router's decisions go out and its next timer is computed.
const MAX_BATCH: usize = 256;

/// What the router's task keeps besides the router.
#[derive(Default)]
struct Books {
    watchers: HashMap<InteractionId, mpsc::UnboundedSender<WatchCommand>>,
    accept_replies: HashMap<InteractionId, Reply<Answer>>,
    /// Each agent's tabs on each node, with the `seq` of that node's last word on them.
    tabs: HashMap<AgentId, HashMap<String, (u32, u64)>>,
}

/// The router's task: requests and timers in, decisions out, until the term is over.
///
/// The requests queued meanwhile are served together (one [`Router::batch`]) before the
/// decisions are carried out, so a burst of new chats or accepts costs one pass over the queue
/// and one look at the router's timers, not one per request.
async fn run(
    mut router: Router,
    mut rx: mpsc::UnboundedReceiver<Request>,
    routing: Routing,
    over: CancellationToken,
) {
    let mut books = Books::default();
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
            _ = over.cancelled() => return,
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
                serve(router, &mut books, &routing, now, request);
                for _ in 1..MAX_BATCH {
                    let Ok(request) = rx.try_recv() else { break };
                    serve(router, &mut books, &routing, now, request);
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
                    let reply = books.accept_replies.remove(&chat);
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
            if let Some(watcher) = books.watchers.get(&chat) {
                let _ = watcher.send(command);
            }
        }
    }
}

/// Feeds one request to the router.
fn serve(router: &mut Router, books: &mut Books, routing: &Routing, now: Time, request: Request) {
    match request {
        Request::Watched {
            chat,
            service,
            agent,
            commands,
        } => {
            books.watchers.insert(chat.clone(), commands);
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
            books.watchers.remove(&chat);
            router.handle_chat_ended(now, &chat);
        }
        Request::Call { agent, up } => router.handle_call(now, &agent, up),
        Request::MobileDuty { agent, duty } => router.handle_mobile_duty(now, &agent, duty),
        Request::NodesAlive { nodes } => {
            for (agent, per_node) in &mut books.tabs {
                per_node.retain(|node, (tabs, _)| {
                    let alive = nodes.contains(node);
                    if !alive {
                        for _ in 0..*tabs {
                            router.handle_disconnect(now, agent);
                        }
                    }
                    alive
                });
            }
        }
        Request::Ask(ask, reply) => {
            if let Some((reply, answer)) = respond(router, books, routing, now, ask, reply) {
                let _ = reply.send(answer);
            }
        }
    }
}

/// Serves one ask; the reply and its answer, unless the answer comes later (an accept the
/// interaction has yet to make so).
fn respond(
    router: &mut Router,
    books: &mut Books,
    routing: &Routing,
    now: Time,
    ask: Ask,
    reply: Reply<Answer>,
) -> Option<(Reply<Answer>, Answer)> {
    let answer = match ask {
        Ask::Tabs {
            agent,
            node,
            tabs,
            seq,
        } => {
            if router.presence(&agent).is_none() {
                return Some((reply, Answer::Refused(RoutingError::UnknownAgent)));
            }
            let known = books.tabs.entry(agent.clone()).or_default();
            let (was, last) = known.get(&node).copied().unwrap_or((0, 0));
            if seq >= last {
                known.insert(node, (tabs, seq));
                for _ in was..tabs {
                    let _ = router.handle_connect(now, &agent);
                }
                for _ in tabs..was {
                    router.handle_disconnect(now, &agent);
                }
            }
            let (offers, chats) = router.agent_chats(&agent);
            let first_messages = {
                let firsts = routing.inner.first_messages.lock().expect("first messages");
                offers
                    .iter()
                    .chain(&chats)
                    .filter_map(|id| Some((id.clone(), firsts.get(id)?.clone())))
                    .collect()
            };
            Answer::Snapshot(Snapshot {
                presence: router.presence(&agent).unwrap_or(Presence::Offline),
                load: router.load(&agent).unwrap_or(0),
                offers,
                chats,
                first_messages,
            })
        }
        Ask::Presence { agent, presence } => match router.handle_presence(now, &agent, presence) {
            Ok(()) => {
                let load = router.load(&agent).unwrap_or(0);
                let presence = router.presence(&agent).unwrap_or(presence);
                routing.tell(
                    &agent,
                    json!({"event": "state", "state": presence, "load": load}),
                );
                Answer::Done
            }
            Err(e) => Answer::Refused(e),
        },
        Ask::Accept {
            chat,
            agent,
            by_sms,
        } => {
            let result = if by_sms {
                router.handle_claim_by_sms(now, &chat, &agent)
            } else {
                router.handle_accept(now, &chat, &agent)
            };
            match result {
                Ok(()) => {
                    books.accept_replies.insert(chat, reply);
                    return None;
                }
                Err(e) => Answer::Refused(e),
            }
        }
        Ask::Decline { chat, agent } => match router.handle_decline(now, &chat, &agent) {
            Ok(()) => Answer::Done,
            Err(e) => Answer::Refused(e),
        },
        Ask::Staff { department } => Answer::Staff(router.staff(now, &department)),
    };
    Some((reply, answer))
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
/// happens in it, until it is over or the term is.
async fn watch(routing: Routing, term: Arc<Term>, handle: Handle, ready: oneshot::Sender<()>) {
    let id = handle.id.clone();
    tokio::select! {
        _ = term.over.cancelled() => {}
        _ = follow(&routing, &term, handle, ready) => {}
    }
    term.watched.lock().expect("watched").remove(&id);
}

/// Follows one interaction until it is over.
async fn follow(routing: &Routing, term: &Term, handle: Handle, ready: oneshot::Sender<()>) {
    let subscribed = handle.subscribe(0).await;
    let _ = ready.send(());
    let mut sub = match subscribed {
        Ok(sub) => sub,
        Err(HubError::Closed | HubError::NotFound) => return,
        Err(e) => {
            // Not routed until it is named again (a cluster's leader looks for such chats).
            tracing::warn!(interaction = %handle.id, "cannot follow it to route it: {e}");
            return;
        }
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
    term.send(Request::Watched {
        chat: id.clone(),
        service: w.scene.service.clone(),
        agent: w.agent.clone().filter(|_| sub.phase == Phase::Active),
        commands,
    });
    loop {
        tokio::select! {
            event = sub.live.recv() => match event {
                Ok(event) => {
                    if !project(routing, term, &mut w, &event.kind, event.seq, event.at) {
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
    term.send(Request::Ended { chat: id });
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
                let _ = reply.send(match result {
                    Ok(()) => Answer::Done,
                    Err(e) => Answer::Failed(e),
                });
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
        tracing::warn!(interaction = %w.scene.id, "routing command not delivered: {e}");
    }
}

/// Carries out what one event means for routing and tells agents about it; `false` once the
/// interaction is over. What an agent sees of it is [`agent`]'s.
fn project(
    routing: &Routing,
    term: &Term,
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
            term.send(Request::Assigned {
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
                    term.send(Request::Call {
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
