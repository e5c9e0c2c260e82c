//! The router: who is offered which waiting chat, and when (sans-IO).
//!
//! Driving contract (as for the Interaction): feed it with `handle_*(now, …)`, drain
//! [`Router::poll_output`], and call [`Router::handle_timeout`] at [`Router::poll_timeout`].
//! It never reads a clock; its timers (offer timeouts, maximum waits, reconnect graces, the
//! queue-status tick) are derived from its state, so a test drives it on a virtual clock.
//!
//! Model. A chat waits in one queue in arrival order (a re-queued chat keeps its place). Each
//! service routes its chats in its mode:
//! - `ring_all` offers a chat to many eligible agents at once (its share, below); the first
//!   accept wins and the others see it withdrawn. Offers stay until then (or the maximum wait).
//! - `round_robin` offers to one agent at a time, taking turns over the department's agents in
//!   config order; a decline or the offer timeout moves the chat to the next one.
//! - `longest_idle` is one at a time as well, to the agent idle the longest.
//!
//! Capacity. An agent's load is its open chats and calls (a chat takes `chat_load`, a call
//! `call_load`); its *free slots* are the chats that still fit in its capacity. An offer is a
//! question, not a claim: it reserves nothing, and room is checked again when the agent accepts
//! (refused with `over_capacity` when full, and that offer withdrawn). But an agent holds at most
//! as many offers as it has free slots (and never more than [`MAX_OFFERS_PER_AGENT`]), so its
//! desk is never asked more than it could take at once; when an accept or a call fills it, the
//! offers that no longer fit are withdrawn (`no_room`).
//!
//! Ring-all shares the room out. Ringing the whole group for every chat would let the first few
//! chats of a burst take every agent's offer slots while the rest wait for accepts. Instead the
//! department's offer slots are divided among its waiting ring-all chats in queue order: each
//! rings about `slots / waiting chats` agents (older chats get the remainder), at least one, and
//! the whole group when the queue is short (the usual case). When the queue grows, chats over
//! their share give back offers (`reshared`) so that no chat waits while an agent has room.
//! Offers go to the agents with the fewest outstanding first.
//!
//! An agent is eligible when connected to the desktop, `available`, in the department, not yet
//! offered or refused this chat, and holding fewer offers than its free slots. When no agent of
//! the department is connected, mobile operators on duty are offered the chat instead, by SMS
//! ([`Via::Sms`]), one at a time or all at once by the same mode.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use crate::bridge::{AgentId, InteractionId, Time};
use crate::config::{Config, InitialPresence, MobileMode, RoutingMode, WeeklySchedule};

/// A refused agent action, with the stable code the agent API shows.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum RoutingError {
    /// The chat is not waiting any more (taken by someone else, ended) or was never offered.
    #[error("the offer is not available any more")]
    OfferNotAvailable,
    /// Accepting would put the agent over their capacity.
    #[error("no capacity left for another chat")]
    OverCapacity,
    /// The agent does not take this chat's department.
    #[error("not in this chat's department")]
    NotInDepartment,
    /// No such agent in the configuration.
    #[error("unknown agent")]
    UnknownAgent,
    /// The node that routes chats does not answer (on a cluster, while another node takes
    /// routing over): nothing was done; try again.
    #[error("routing does not answer; try again")]
    Unavailable,
}

impl RoutingError {
    pub fn code(&self) -> &'static str {
        match self {
            RoutingError::OfferNotAvailable => "offer_not_available",
            RoutingError::OverCapacity => "over_capacity",
            RoutingError::NotInDepartment => "not_in_department",
            RoutingError::UnknownAgent => "unknown_agent",
            RoutingError::Unavailable => "routing_unavailable",
        }
    }
}

/// An agent's presence. `Offline` is also what others see while no desktop is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Presence {
    Offline,
    Available,
    Away,
    Busy,
}

/// How an offer reaches the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    #[default]
    Desktop,
    /// A text with a one-time link to the mobile chat page.
    Sms,
}

/// Who would take a department's chat now, as [`Router::staff`] has it: the chat is offered
/// `via` the desk when an available desk agent has room, else by SMS to the operators on duty
/// away from a desk; the available desk agents take it anyway when one of their slots frees.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Staff {
    /// How the offer would go out now.
    pub via: Via,
    /// The available desk agents' chat slots.
    pub desk: Vec<Slots>,
    /// The chat slots of the operators on duty by SMS.
    pub sms: Vec<Slots>,
    /// The department's chats waiting now.
    pub waiting: usize,
}

/// One agent's chat slots: all of them, and those free now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Slots {
    pub total: u32,
    pub free: u32,
}

/// Why an offer was withdrawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WithdrawReason {
    /// Another agent accepted it first.
    Taken,
    Declined,
    Timeout,
    /// The agent logged out, went away or lost the desktop.
    AgentLeft,
    /// The chat ended or gave up waiting.
    Ended,
    /// The agent has no room for it any more (an accept or a call filled them).
    NoRoom,
    /// A burst: the chat's offers are shared out with other waiting chats.
    Reshared,
}

/// Work for the driver.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Offer {
        chat: InteractionId,
        agent: AgentId,
        via: Via,
    },
    Withdraw {
        chat: InteractionId,
        agent: AgentId,
        reason: WithdrawReason,
    },
    /// The agent won the chat: make them its party.
    Assign { chat: InteractionId, agent: AgentId },
    /// The agent did not come back in time: take the chat from them; it waits again.
    Requeue { chat: InteractionId, agent: AgentId },
    /// Tell the waiting customer where they stand.
    QueueStatus {
        chat: InteractionId,
        position: u32,
        ewt: Duration,
    },
    /// Nobody took the chat within the maximum wait: tell the customer and close it.
    NobodyAvailable { chat: InteractionId },
    /// The agent's SMS offer now stands on their desktop (they opened it while the chat
    /// waited): their link expires and the desk shows the offer.
    MovedToDesk { chat: InteractionId, agent: AgentId },
}

/// The router's settings, from `[routing]`.
#[derive(Debug, Clone)]
pub struct Settings {
    pub chat_load: u32,
    pub call_load: u32,
    pub offer_timeout: Duration,
    pub max_wait: Duration,
    pub reconnect_grace: Duration,
    pub status_interval: Duration,
    pub default_handle_time: Duration,
    /// The presence an agent starts in when their first desktop tab connects.
    pub initial_presence: Presence,
}

/// One agent as the router sees it.
#[derive(Debug, Clone)]
pub struct AgentSpec {
    pub id: AgentId,
    pub departments: Vec<String>,
    pub capacity: u32,
    pub mobile: MobileDuty,
}

/// When an agent takes offers by SMS.
#[derive(Debug, Clone, PartialEq)]
pub enum MobileDuty {
    Never,
    Always,
    Schedule(WeeklySchedule),
}

impl MobileDuty {
    fn on_duty(&self, now: Time) -> bool {
        match self {
            MobileDuty::Never => false,
            MobileDuty::Always => true,
            MobileDuty::Schedule(s) => s.is_open(now.millis()),
        }
    }
}

/// How one service routes.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    pub department: String,
    pub mode: RoutingMode,
}

impl Settings {
    pub(crate) fn from_config(config: &Config) -> Settings {
        let r = &config.routing;
        Settings {
            chat_load: r.chat_load_percent,
            call_load: r.call_load_percent,
            offer_timeout: Duration::from_secs(r.offer_timeout_s),
            max_wait: Duration::from_secs(r.max_wait_s),
            reconnect_grace: Duration::from_secs(r.reconnect_grace_s),
            status_interval: Duration::from_secs(r.queue_status_interval_s),
            default_handle_time: Duration::from_secs(r.default_handle_time_s),
            initial_presence: match r.initial_presence {
                InitialPresence::Available => Presence::Available,
                InitialPresence::Away => Presence::Away,
            },
        }
    }
}

struct Agent {
    spec: AgentSpec,
    presence: Presence,
    /// Desktop connections (tabs) open now.
    sessions: u32,
    /// Set while the desktop is gone and chats are kept for the agent.
    gone_until: Option<Time>,
    chats: HashSet<InteractionId>,
    calls: u32,
    offers: HashSet<InteractionId>,
    idle_since: Time,
}

/// The most offers one agent holds at once, whatever its capacity: its desk shows each of them.
pub const MAX_OFFERS_PER_AGENT: usize = 20;

impl Agent {
    /// What the agent carries: open chats and calls (offers reserve nothing).
    fn load(&self, s: &Settings) -> u32 {
        self.chats.len() as u32 * s.chat_load + self.calls * s.call_load
    }
    /// Chats that still fit in the agent's capacity.
    fn free_slots(&self, s: &Settings) -> usize {
        (self.spec.capacity.saturating_sub(self.load(s)) / s.chat_load.max(1)) as usize
    }
    /// Whether one more chat fits.
    fn has_room(&self, s: &Settings) -> bool {
        self.free_slots(s) > 0
    }
    /// How many offers the agent may hold now.
    fn offer_limit(&self, s: &Settings) -> usize {
        self.free_slots(s).min(MAX_OFFERS_PER_AGENT)
    }
    /// Whether the agent may be asked one more chat.
    fn may_be_offered(&self, s: &Settings) -> bool {
        self.offers.len() < self.offer_limit(s)
    }
    fn connected(&self) -> bool {
        self.sessions > 0
    }
    fn takes(&self, department: &str) -> bool {
        self.spec.departments.iter().any(|d| d == department)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Stage {
    /// Waiting; `offers` are the outstanding ones with their expiry (ring-all: none).
    Waiting {
        offers: BTreeMap<AgentId, (Via, Option<Time>)>,
        /// Agents who declined or let an offer lapse this round.
        tried: HashSet<AgentId>,
        /// Nobody was left to try: the next round starts here.
        retry_at: Option<Time>,
    },
    Assigned {
        agent: AgentId,
        since: Time,
    },
}

struct Chat {
    service: ServiceSpec,
    /// Queue order: arrival time, then a counter.
    order: (Time, u64),
    give_up_at: Time,
    stage: Stage,
    last_status: Option<(u32, u64)>,
}

impl Chat {
    /// Whether dispatching could offer this chat to anyone now: it waits, is not between two
    /// rounds, and (one at a time) has no offer out.
    fn may_get_offers(&self) -> bool {
        match &self.stage {
            Stage::Waiting {
                offers, retry_at, ..
            } => {
                retry_at.is_none()
                    && (self.service.mode == RoutingMode::RingAll || offers.is_empty())
            }
            Stage::Assigned { .. } => false,
        }
    }
}

/// Who gets which chat. See the module docs.
pub struct Router {
    settings: Settings,
    services: HashMap<String, ServiceSpec>,
    agents: BTreeMap<AgentId, Agent>,
    /// Agents of each department in config order (the round-robin ring) and the next turn.
    rings: HashMap<String, (Vec<AgentId>, usize)>,
    chats: HashMap<InteractionId, Chat>,
    /// Waiting chats in queue order.
    queue: BTreeMap<(Time, u64), InteractionId>,
    arrivals: u64,
    /// Chats new in the queue since the last dispatch.
    fresh: Vec<InteractionId>,
    next_status: Option<Time>,
    /// Moving average of how long an accepted chat lasts.
    handle_time: Duration,
    outputs: std::collections::VecDeque<Output>,
    /// Inside [`Router::batch`]: dispatching waits for the end of the batch.
    deferred: bool,
    dispatch_due: bool,
}

impl Router {
    pub fn new(
        settings: Settings,
        services: HashMap<String, ServiceSpec>,
        agents: Vec<AgentSpec>,
        now: Time,
    ) -> Router {
        let mut rings: HashMap<String, (Vec<AgentId>, usize)> = HashMap::new();
        for a in &agents {
            for d in &a.departments {
                rings.entry(d.clone()).or_default().0.push(a.id.clone());
            }
        }
        let agents = agents
            .into_iter()
            .map(|spec| {
                let agent = Agent {
                    spec,
                    presence: Presence::Offline,
                    sessions: 0,
                    gone_until: None,
                    chats: HashSet::new(),
                    calls: 0,
                    offers: HashSet::new(),
                    idle_since: now,
                };
                (agent.spec.id.clone(), agent)
            })
            .collect();
        Router {
            handle_time: settings.default_handle_time,
            settings,
            services,
            agents,
            rings,
            chats: HashMap::new(),
            queue: BTreeMap::new(),
            arrivals: 0,
            fresh: Vec::new(),
            next_status: None,
            outputs: Default::default(),
            deferred: false,
            dispatch_due: false,
        }
    }

    /// A router for a configuration.
    pub(crate) fn from_config(config: &Config, now: Time) -> Router {
        let services = config
            .services
            .iter()
            .map(|s| {
                let spec = ServiceSpec {
                    department: s.department.clone(),
                    mode: s.routing,
                };
                (s.name.clone(), spec)
            })
            .collect();
        let agents = config
            .agents
            .iter()
            .map(|a| AgentSpec {
                id: AgentId(a.name.clone()),
                departments: a.departments.clone(),
                capacity: a.capacity_percent,
                mobile: match (a.mobile_mode, &a.mobile_schedule) {
                    (MobileMode::On, _) => MobileDuty::Always,
                    (MobileMode::Schedule, Some(s)) => MobileDuty::Schedule(s.clone()),
                    _ => MobileDuty::Never,
                },
            })
            .collect();
        Router::new(Settings::from_config(config), services, agents, now)
    }

    /// Feeds several inputs (as `f` calls `handle_*` with `now`) and dispatches once at the
    /// end rather than after each: a burst of new chats or accepts costs one pass over the
    /// queue. Views read inside `f` may not show the offers the batch leads to yet.
    pub fn batch<R>(&mut self, now: Time, f: impl FnOnce(&mut Router) -> R) -> R {
        let outer = std::mem::replace(&mut self.deferred, true);
        let result = f(self);
        self.deferred = outer;
        if !outer && std::mem::take(&mut self.dispatch_due) {
            self.dispatch(now);
        }
        result
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    // ---- what agents do ----

    /// A desktop connection (one tab) opened.
    ///
    /// A fresh login starts in the configured presence (`routing.initial_presence`). Operators
    /// at the desktop take no SMS: an offer texted to them while the chat still waits moves to
    /// their desk at once (the link expires), whatever their presence, so a chat they were told
    /// about never vanishes from them.
    pub fn handle_connect(&mut self, now: Time, agent: &AgentId) -> Result<(), RoutingError> {
        let initial = self.settings.initial_presence;
        let a = self
            .agents
            .get_mut(agent)
            .ok_or(RoutingError::UnknownAgent)?;
        a.sessions += 1;
        a.gone_until = None;
        if a.presence == Presence::Offline {
            a.presence = initial;
            if initial == Presence::Available && a.chats.is_empty() {
                a.idle_since = now;
            }
        }
        let held: Vec<InteractionId> = a.offers.iter().cloned().collect();
        for chat in held {
            if let Some(Chat {
                stage: Stage::Waiting { offers, .. },
                ..
            }) = self.chats.get_mut(&chat)
                && let Some((via, _)) = offers.get_mut(agent)
                && *via == Via::Sms
            {
                *via = Via::Desktop;
                self.outputs.push_back(Output::MovedToDesk {
                    chat,
                    agent: agent.clone(),
                });
            }
        }
        self.dispatch(now);
        Ok(())
    }

    /// The agent changed when they take chats by SMS. Off duty now, their standing SMS offers
    /// are withdrawn; on duty, they may be texted at once.
    pub fn handle_mobile_duty(&mut self, now: Time, agent: &AgentId, duty: MobileDuty) {
        let Some(a) = self.agents.get_mut(agent) else {
            return;
        };
        a.spec.mobile = duty;
        if !a.spec.mobile.on_duty(now) {
            let texted: Vec<InteractionId> = a.offers.iter().cloned().collect();
            for chat in texted {
                if self.offer_via(&chat, agent) == Some(Via::Sms) {
                    self.withdraw(&chat, agent, WithdrawReason::AgentLeft);
                }
            }
        }
        self.dispatch(now);
    }

    /// A desktop connection closed. When it was the last one, the agent's offers go to others
    /// and their chats wait `reconnect_grace` for them to come back.
    pub fn handle_disconnect(&mut self, now: Time, agent: &AgentId) {
        let grace = self.settings.reconnect_grace;
        let Some(a) = self.agents.get_mut(agent) else {
            return;
        };
        a.sessions = a.sessions.saturating_sub(1);
        if a.sessions > 0 {
            return;
        }
        if !a.chats.is_empty() {
            a.gone_until = Some(now + grace);
        }
        self.withdraw_desktop_offers(agent, WithdrawReason::AgentLeft);
        self.dispatch(now);
    }

    /// The agent's presence. `Offline` is a logout: offers are withdrawn and chats re-queued now.
    pub fn handle_presence(
        &mut self,
        now: Time,
        agent: &AgentId,
        presence: Presence,
    ) -> Result<(), RoutingError> {
        let a = self
            .agents
            .get_mut(agent)
            .ok_or(RoutingError::UnknownAgent)?;
        let was = a.presence;
        a.presence = presence;
        if presence == Presence::Available && was != Presence::Available && a.chats.is_empty() {
            a.idle_since = now;
        }
        if presence != Presence::Available {
            self.withdraw_desktop_offers(agent, WithdrawReason::AgentLeft);
        }
        if presence == Presence::Offline {
            let chats: Vec<InteractionId> = self.agents[agent].chats.iter().cloned().collect();
            for chat in chats {
                self.requeue(now, &chat, agent);
            }
        }
        self.dispatch(now);
        Ok(())
    }

    /// A mobile operator claims the chat from the link of an SMS offer: as an accept, but only
    /// while that SMS offer stands (a link expires with its offer).
    pub(crate) fn handle_claim_by_sms(
        &mut self,
        now: Time,
        chat: &InteractionId,
        agent: &AgentId,
    ) -> Result<(), RoutingError> {
        if self.offer_via(chat, agent) != Some(Via::Sms) {
            return Err(RoutingError::OfferNotAvailable);
        }
        self.handle_accept(now, chat, agent)
    }

    /// The agent accepts a chat: atomically theirs, or refused.
    pub fn handle_accept(
        &mut self,
        now: Time,
        chat_id: &InteractionId,
        agent: &AgentId,
    ) -> Result<(), RoutingError> {
        let settings = self.settings.clone();
        let a = self.agents.get(agent).ok_or(RoutingError::UnknownAgent)?;
        let chat = self
            .chats
            .get(chat_id)
            .ok_or(RoutingError::OfferNotAvailable)?;
        let Stage::Waiting { offers, .. } = &chat.stage else {
            return Err(RoutingError::OfferNotAvailable);
        };
        let offered = offers.contains_key(agent);
        // Picking up a waiting chat that was not offered to them (e.g. an operator who just
        // logged in) is allowed within their departments.
        if !offered && !a.takes(&chat.service.department) {
            return Err(RoutingError::NotInDepartment);
        }
        // An offer reserved nothing: the room is checked now.
        if !a.has_room(&settings) {
            if offered {
                self.withdraw(chat_id, agent, WithdrawReason::NoRoom);
                self.dispatch(now);
            }
            return Err(RoutingError::OverCapacity);
        }
        let others: Vec<AgentId> = offers.keys().filter(|o| *o != agent).cloned().collect();
        for other in others {
            self.withdraw(chat_id, &other, WithdrawReason::Taken);
        }
        let a = self.agents.get_mut(agent).expect("checked");
        a.offers.remove(chat_id);
        a.chats.insert(chat_id.clone());
        self.assigned(now, chat_id, agent);
        self.outputs.push_back(Output::Assign {
            chat: chat_id.clone(),
            agent: agent.clone(),
        });
        self.fit_offers(agent);
        self.dispatch(now);
        Ok(())
    }

    /// The agent declines an offer: the chat moves on to the next agent.
    pub fn handle_decline(
        &mut self,
        now: Time,
        chat: &InteractionId,
        agent: &AgentId,
    ) -> Result<(), RoutingError> {
        if self.offer_via(chat, agent).is_none() {
            return Err(RoutingError::OfferNotAvailable);
        }
        self.withdraw(chat, agent, WithdrawReason::Declined);
        self.mark_tried(chat, agent);
        self.dispatch(now);
        Ok(())
    }

    /// A voice call of the agent started or ended (it takes `call_load`).
    pub fn handle_call(&mut self, now: Time, agent: &AgentId, up: bool) {
        if let Some(a) = self.agents.get_mut(agent) {
            if up {
                a.calls += 1;
            } else {
                a.calls = a.calls.saturating_sub(1);
            }
        }
        self.fit_offers(agent);
        self.dispatch(now);
    }

    // ---- what chats do ----

    /// A new chat for `service` waits for an agent.
    pub fn handle_new_chat(&mut self, now: Time, chat: InteractionId, service: &str) {
        if self.chats.contains_key(&chat) {
            return;
        }
        self.insert_chat(now, chat.clone(), service);
        self.fresh.push(chat);
        self.dispatch(now);
    }

    fn insert_chat(&mut self, now: Time, chat: InteractionId, service: &str) {
        let spec = self.services.get(service).cloned().unwrap_or(ServiceSpec {
            department: service.to_string(),
            mode: RoutingMode::RingAll,
        });
        self.arrivals += 1;
        let order = (now, self.arrivals);
        self.queue.insert(order, chat.clone());
        self.chats.insert(
            chat,
            Chat {
                service: spec,
                order,
                give_up_at: now + self.settings.max_wait,
                stage: Stage::Waiting {
                    offers: BTreeMap::new(),
                    tried: HashSet::new(),
                    retry_at: None,
                },
                last_status: None,
            },
        );
    }

    /// The chat was accepted outside the router (restored, or picked by an operator tool).
    pub(crate) fn handle_assigned(
        &mut self,
        now: Time,
        chat: &InteractionId,
        service: &str,
        agent: &AgentId,
    ) {
        if !self.chats.contains_key(chat) {
            self.insert_chat(now, chat.clone(), service);
        }
        let Some(c) = self.chats.get(chat) else {
            return;
        };
        if matches!(&c.stage, Stage::Assigned { agent: a, .. } if a == agent) {
            return;
        }
        if let Stage::Waiting { offers, .. } = &c.stage {
            let others: Vec<AgentId> = offers.keys().filter(|o| *o != agent).cloned().collect();
            for other in others {
                self.withdraw(chat, &other, WithdrawReason::Taken);
            }
        }
        if let Some(a) = self.agents.get_mut(agent) {
            a.offers.remove(chat);
            a.chats.insert(chat.clone());
        }
        self.assigned(now, chat, agent);
        self.fit_offers(agent);
        self.dispatch(now);
    }

    /// The chat is over (or gone): free its agent and its place.
    pub fn handle_chat_ended(&mut self, now: Time, chat: &InteractionId) {
        let Some(c) = self.chats.remove(chat) else {
            return;
        };
        self.queue.remove(&c.order);
        match c.stage {
            Stage::Waiting { offers, .. } => {
                for agent in offers.keys() {
                    if let Some(a) = self.agents.get_mut(agent) {
                        a.offers.remove(chat);
                    }
                    self.outputs.push_back(Output::Withdraw {
                        chat: chat.clone(),
                        agent: agent.clone(),
                        reason: WithdrawReason::Ended,
                    });
                }
            }
            Stage::Assigned { agent, since } => {
                if let Some(a) = self.agents.get_mut(&agent) {
                    a.chats.remove(chat);
                    if a.chats.is_empty() {
                        a.idle_since = now;
                    }
                }
                // An exponential moving average, weight 1/8 per chat.
                let took = now.since(since).as_millis() as u64;
                let avg = self.handle_time.as_millis() as u64;
                self.handle_time = Duration::from_millis((avg * 7 + took) / 8);
            }
        }
        self.dispatch(now);
    }

    // ---- timers ----

    /// When `handle_timeout` must be called next.
    pub fn poll_timeout(&self) -> Option<Time> {
        let mut next = self.next_status;
        let mut consider = |t: Time| next = Some(next.map_or(t, |n: Time| n.min(t)));
        for a in self.agents.values() {
            if let Some(t) = a.gone_until {
                consider(t);
            }
        }
        for c in self.chats.values() {
            if let Stage::Waiting {
                offers, retry_at, ..
            } = &c.stage
            {
                consider(c.give_up_at);
                for (_, expiry) in offers.values() {
                    if let Some(t) = expiry {
                        consider(*t);
                    }
                }
                if let Some(t) = retry_at {
                    consider(*t);
                }
            }
        }
        next
    }

    /// Fires everything due at `now`.
    pub fn handle_timeout(&mut self, now: Time) {
        // Agents who did not come back: their chats wait for someone else.
        let gone: Vec<AgentId> = self
            .agents
            .values()
            .filter(|a| a.gone_until.is_some_and(|t| t <= now))
            .map(|a| a.spec.id.clone())
            .collect();
        for agent in gone {
            let a = self.agents.get_mut(&agent).expect("listed");
            a.gone_until = None;
            let chats: Vec<InteractionId> = a.chats.iter().cloned().collect();
            for chat in chats {
                self.requeue(now, &chat, &agent);
            }
        }
        let mut expired = Vec::new();
        let mut given_up = Vec::new();
        for (id, c) in &mut self.chats {
            if let Stage::Waiting {
                offers, retry_at, ..
            } = &mut c.stage
            {
                if c.give_up_at <= now {
                    given_up.push(id.clone());
                    continue;
                }
                for (agent, (_, expiry)) in offers.iter() {
                    if expiry.is_some_and(|t| t <= now) {
                        expired.push((id.clone(), agent.clone()));
                    }
                }
                if retry_at.is_some_and(|t| t <= now) {
                    *retry_at = None;
                }
            }
        }
        for (chat, agent) in expired {
            self.withdraw(&chat, &agent, WithdrawReason::Timeout);
            self.mark_tried(&chat, &agent);
        }
        for chat in given_up {
            self.handle_chat_ended(now, &chat);
            self.outputs.push_back(Output::NobodyAvailable { chat });
        }
        self.dispatch(now);
        if self.next_status.is_some_and(|t| t <= now) {
            self.next_status = None;
            let waiting: Vec<InteractionId> = self.queue.values().cloned().collect();
            for chat in waiting {
                self.push_status(now, &chat);
            }
        }
    }

    // ---- views ----

    /// Who would take a chat of `department` opened now, by the rule dispatching follows
    /// ([`Staff`]), with the department's chats waiting: what a customer's expected wait is
    /// computed from.
    pub fn staff(&self, now: Time, department: &str) -> Staff {
        let settings = &self.settings;
        let slots = |a: &Agent| Slots {
            total: (a.spec.capacity / settings.chat_load.max(1)).max(1),
            free: a.free_slots(settings) as u32,
        };
        let members = || self.agents.values().filter(|a| a.takes(department));
        Staff {
            via: self.via(department, &mut HashMap::new()),
            desk: members()
                .filter(|a| a.connected() && a.presence == Presence::Available)
                .map(slots)
                .collect(),
            sms: members()
                .filter(|a| !a.connected() && a.spec.mobile.on_duty(now))
                .map(slots)
                .collect(),
            waiting: self
                .queue
                .values()
                .filter(|id| self.chats[*id].service.department == department)
                .count(),
        }
    }

    pub fn presence(&self, agent: &AgentId) -> Option<Presence> {
        let a = self.agents.get(agent)?;
        Some(if a.connected() {
            a.presence
        } else {
            Presence::Offline
        })
    }

    /// The agent's load in percent (open chats and calls; offers reserve nothing).
    pub fn load(&self, agent: &AgentId) -> Option<u32> {
        Some(self.agents.get(agent)?.load(&self.settings))
    }

    /// The chats the agent has been offered and has accepted.
    pub fn agent_chats(&self, agent: &AgentId) -> (Vec<InteractionId>, Vec<InteractionId>) {
        let Some(a) = self.agents.get(agent) else {
            return Default::default();
        };
        let mut offers: Vec<_> = a.offers.iter().cloned().collect();
        let mut chats: Vec<_> = a.chats.iter().cloned().collect();
        offers.sort();
        chats.sort();
        (offers, chats)
    }

    /// The chats waiting, in queue order.
    pub fn waiting(&self) -> Vec<InteractionId> {
        self.queue.values().cloned().collect()
    }

    // ---- internals ----

    fn offer_via(&self, chat: &InteractionId, agent: &AgentId) -> Option<Via> {
        match &self.chats.get(chat)?.stage {
            Stage::Waiting { offers, .. } => offers.get(agent).map(|(via, _)| *via),
            Stage::Assigned { .. } => None,
        }
    }

    fn assigned(&mut self, now: Time, chat: &InteractionId, agent: &AgentId) {
        let c = self.chats.get_mut(chat).expect("known chat");
        self.queue.remove(&c.order);
        c.stage = Stage::Assigned {
            agent: agent.clone(),
            since: now,
        };
    }

    fn withdraw(&mut self, chat: &InteractionId, agent: &AgentId, reason: WithdrawReason) {
        if let Some(Chat {
            stage: Stage::Waiting { offers, .. },
            ..
        }) = self.chats.get_mut(chat)
            && offers.remove(agent).is_some()
        {
            if let Some(a) = self.agents.get_mut(agent) {
                a.offers.remove(chat);
            }
            self.outputs.push_back(Output::Withdraw {
                chat: chat.clone(),
                agent: agent.clone(),
                reason,
            });
        }
    }

    fn withdraw_desktop_offers(&mut self, agent: &AgentId, reason: WithdrawReason) {
        let offers: Vec<InteractionId> = self.agents[agent].offers.iter().cloned().collect();
        for chat in offers {
            if self.offer_via(&chat, agent) == Some(Via::Desktop) {
                self.withdraw(&chat, agent, reason);
            }
        }
    }

    /// Withdraws the agent's offers that no longer fit in its free slots, the newest chats'
    /// first (they have waited the least).
    fn fit_offers(&mut self, agent: &AgentId) {
        let Some(a) = self.agents.get(agent) else {
            return;
        };
        let limit = a.offer_limit(&self.settings);
        if a.offers.len() <= limit {
            return;
        }
        let mut held: Vec<((Time, u64), InteractionId)> = a
            .offers
            .iter()
            .filter_map(|c| Some((self.chats.get(c)?.order, c.clone())))
            .collect();
        held.sort();
        for (_, chat) in held.into_iter().skip(limit) {
            self.withdraw(&chat, agent, WithdrawReason::NoRoom);
        }
    }

    fn mark_tried(&mut self, chat: &InteractionId, agent: &AgentId) {
        if let Some(Chat {
            stage: Stage::Waiting { tried, .. },
            ..
        }) = self.chats.get_mut(chat)
        {
            tried.insert(agent.clone());
        }
    }

    /// Takes the chat back from `agent`; it waits again in its old place.
    fn requeue(&mut self, now: Time, chat: &InteractionId, agent: &AgentId) {
        if let Some(a) = self.agents.get_mut(agent) {
            a.chats.remove(chat);
        }
        let Some(c) = self.chats.get_mut(chat) else {
            return;
        };
        c.stage = Stage::Waiting {
            offers: BTreeMap::new(),
            tried: HashSet::from([agent.clone()]),
            retry_at: None,
        };
        c.give_up_at = now + self.settings.max_wait;
        c.last_status = None;
        self.queue.insert(c.order, chat.clone());
        self.outputs.push_back(Output::Requeue {
            chat: chat.clone(),
            agent: agent.clone(),
        });
        self.fresh.push(chat.clone());
    }

    /// Offers waiting chats, in queue order, to whoever may take them now.
    ///
    /// Called after every input, so it must stay cheap with a long queue: chats that cannot get
    /// an offer now (one at a time with an offer out, between rounds, or ring-all with its share
    /// out) are passed over before any agent is looked at, and a department where no agent can
    /// hold another offer is not looked at again.
    fn dispatch(&mut self, now: Time) {
        if self.deferred {
            self.dispatch_due = true;
            return;
        }
        let mut exhausted: HashSet<String> = HashSet::new();
        let mut staffed: HashMap<String, Via> = HashMap::new();
        let (waiting, shares) = self.waiting_with_shares(now, &mut staffed);
        self.give_back_surplus(&waiting, &shares);
        for ((chat, offers_out), share) in waiting.into_iter().zip(shares) {
            // A ring-all chat with its share out: nothing to look at (the common case).
            if share > 0 && offers_out >= share {
                continue;
            }
            let c = &self.chats[&chat];
            if exhausted.contains(&c.service.department) {
                continue;
            }
            let department = c.service.department.clone();
            let mode = c.service.mode;
            let via = self.via(&department, &mut staffed);
            let picked: Vec<AgentId> = match mode {
                RoutingMode::RingAll => {
                    let want = share.saturating_sub(self.offers_out(&chat, via));
                    // Cheaper than looking for candidates when every agent is asked enough.
                    if !self.any_room(now, &department, via) {
                        exhausted.insert(department);
                        continue;
                    }
                    let mut picked = self.candidates(now, &chat, &department, via);
                    // Stable: agents with as many offers keep the ring order.
                    picked.sort_by_key(|(_, a)| a.offers.len());
                    picked
                        .into_iter()
                        .take(want)
                        .map(|(id, _)| id.clone())
                        .collect()
                }
                RoutingMode::RoundRobin => self
                    .next_in_ring(now, &chat, &department, via)
                    .into_iter()
                    .collect(),
                RoutingMode::LongestIdle => self
                    .candidates(now, &chat, &department, via)
                    .into_iter()
                    .min_by_key(|(id, a)| (a.idle_since, *id))
                    .map(|(id, _)| id.clone())
                    .into_iter()
                    .collect(),
            };
            if picked.is_empty() {
                if !self.any_room(now, &department, via) {
                    exhausted.insert(department);
                    continue;
                }
                self.start_new_round(now, &chat, &department, via);
                continue;
            }
            let one_at_a_time = mode != RoutingMode::RingAll;
            let expiry =
                (one_at_a_time || via == Via::Sms).then(|| now + self.settings.offer_timeout);
            for agent in picked {
                self.offer(&chat, &agent, via, expiry);
            }
        }
        // Chats that just started waiting and found nobody hear where they stand at once.
        for chat in std::mem::take(&mut self.fresh) {
            self.push_status(now, &chat);
        }
    }

    /// Desk agents when one of the department could take a chat now (connected, available,
    /// with room), else mobile operators by SMS. A desk agent who is away or full does not
    /// staff the department: a chat must not wait for someone who will not be asked.
    fn via(&self, department: &str, staffed: &mut HashMap<String, Via>) -> Via {
        *staffed.entry(department.to_string()).or_insert_with(|| {
            let desktop = self.agents.values().any(|a| {
                a.connected()
                    && a.presence == Presence::Available
                    && a.takes(department)
                    && a.has_room(&self.settings)
            });
            if desktop { Via::Desktop } else { Via::Sms }
        })
    }

    /// The chat's offers out by `via` (SMS offers left standing when a desk agent came do
    /// not count against the desk's share, nor the other way round).
    fn offers_out(&self, chat: &InteractionId, via: Via) -> usize {
        match &self.chats[chat].stage {
            Stage::Waiting { offers, .. } => offers.values().filter(|(v, _)| *v == via).count(),
            Stage::Assigned { .. } => 0,
        }
    }

    /// The chats dispatching could offer now (waiting, not between rounds, and one at a time
    /// with no offer out), in queue order with the offers they have out, and how many agents
    /// each rings if ring-all (zero for the other modes).
    ///
    /// A ring-all chat's share: its department's offer slots (the free slots of the agents who
    /// could take a chat, at most [`MAX_OFFERS_PER_AGENT`] each) divided among its waiting
    /// ring-all chats, the remainder to the oldest; at least one, at most the whole group.
    fn waiting_with_shares(
        &self,
        now: Time,
        staffed: &mut HashMap<String, Via>,
    ) -> (Vec<(InteractionId, usize)>, Vec<usize>) {
        let mut waiting = Vec::new();
        let mut by_department: HashMap<&str, Vec<usize>> = HashMap::new();
        for id in self.queue.values() {
            let c = &self.chats[id];
            if !c.may_get_offers() {
                continue;
            }
            let via = self.via(&c.service.department, staffed);
            if c.service.mode == RoutingMode::RingAll {
                by_department
                    .entry(&c.service.department)
                    .or_default()
                    .push(waiting.len());
            }
            waiting.push((id.clone(), self.offers_out(id, via)));
        }
        let mut shares = vec![0; waiting.len()];
        for (department, chats) in by_department {
            let via = self.via(department, staffed);
            let (group, slots) = self
                .agents
                .values()
                .filter(|a| self.in_group(now, a, department, via))
                .fold((0, 0), |(group, slots), a| {
                    (group + 1, slots + a.offer_limit(&self.settings))
                });
            let (base, extra) = (slots / chats.len(), slots % chats.len());
            for (n, i) in chats.into_iter().enumerate() {
                shares[i] = (base + usize::from(n < extra)).clamp(1, group.max(1));
            }
        }
        (waiting, shares)
    }

    /// Ring-all chats holding more offers than their share give the surplus back, taken from
    /// the agents with the most offers first.
    fn give_back_surplus(&mut self, waiting: &[(InteractionId, usize)], shares: &[usize]) {
        for ((chat, offers_out), &share) in waiting.iter().zip(shares) {
            if share == 0 || *offers_out <= share {
                continue;
            }
            let Stage::Waiting { offers, .. } = &self.chats[chat].stage else {
                continue;
            };
            // Only offers of the way the department is reached now count toward the share.
            let via = self.via_now(&self.chats[chat].service.department);
            let mut held: Vec<AgentId> = offers
                .iter()
                .filter(|(_, (v, _))| *v == via)
                .map(|(a, _)| a.clone())
                .collect();
            held.sort_by_key(|a| {
                std::cmp::Reverse(self.agents.get(a).map_or(0, |a| a.offers.len()))
            });
            let surplus = held.len() - share;
            for agent in held.into_iter().take(surplus) {
                self.withdraw(chat, &agent, WithdrawReason::Reshared);
            }
        }
    }

    /// When everyone eligible has declined or let the offer lapse, the chat waits one offer
    /// timeout and goes round again.
    fn start_new_round(&mut self, now: Time, chat: &InteractionId, department: &str, via: Via) {
        let timeout = self.settings.offer_timeout;
        let any = self.any_room(now, department, via);
        if let Some(Chat {
            stage:
                Stage::Waiting {
                    tried,
                    retry_at,
                    offers,
                },
            ..
        }) = self.chats.get_mut(chat)
            && offers.is_empty()
            && !tried.is_empty()
            && any
        {
            tried.clear();
            *retry_at = Some(now + timeout);
        }
    }

    /// How the department is reached now (see [`Router::via`]).
    fn via_now(&self, department: &str) -> Via {
        self.via(department, &mut HashMap::new())
    }

    /// Whether some agent of the department could take a chat at all (ignoring who tried).
    fn any_room(&self, now: Time, department: &str, via: Via) -> bool {
        self.agents
            .values()
            .any(|a| self.could_take(now, a, department, via))
    }

    /// Whether the agent may be offered one more chat of the department now.
    fn could_take(&self, now: Time, a: &Agent, department: &str, via: Via) -> bool {
        a.may_be_offered(&self.settings) && self.in_group(now, a, department, via)
    }

    /// Whether the agent is among those who take the department's chats now (by `via`), with
    /// room for one more chat, whatever offers they hold.
    fn in_group(&self, now: Time, a: &Agent, department: &str, via: Via) -> bool {
        if !a.takes(department) || !a.has_room(&self.settings) {
            return false;
        }
        match via {
            Via::Desktop => a.connected() && a.presence == Presence::Available,
            Via::Sms => !a.connected() && a.spec.mobile.on_duty(now),
        }
    }

    /// Whether `agent` may be offered `chat` now: not offered or tried this round, and able to
    /// take it.
    fn eligible(&self, now: Time, chat: &Chat, agent: &AgentId, via: Via) -> bool {
        self.agents
            .get(agent)
            .is_some_and(|a| self.may_offer(now, chat, agent, a, via))
    }

    /// [`Router::eligible`], for an agent already looked up.
    fn may_offer(&self, now: Time, chat: &Chat, id: &AgentId, a: &Agent, via: Via) -> bool {
        let Stage::Waiting { offers, tried, .. } = &chat.stage else {
            return false;
        };
        self.could_take(now, a, &chat.service.department, via)
            && !offers.contains_key(id)
            && !tried.contains(id)
    }

    /// Eligible agents for this chat, in the department's ring order. Borrowed: a ring-all chat
    /// looks at every agent of the department and offers to a few.
    fn candidates(
        &self,
        now: Time,
        chat: &InteractionId,
        department: &str,
        via: Via,
    ) -> Vec<(&AgentId, &Agent)> {
        let Some((ring, _)) = self.rings.get(department) else {
            return Vec::new();
        };
        let c = &self.chats[chat];
        ring.iter()
            .filter_map(|id| {
                let a = self.agents.get(id)?;
                self.may_offer(now, c, id, a, via).then_some((id, a))
            })
            .collect()
    }

    /// The first eligible agent at or after the department's turn; the turn moves past them.
    fn next_in_ring(
        &mut self,
        now: Time,
        chat: &InteractionId,
        department: &str,
        via: Via,
    ) -> Option<AgentId> {
        let (ring, turn) = self.rings.get(department)?;
        let c = &self.chats[chat];
        let n = ring.len();
        let i = (0..n)
            .map(|step| (turn + step) % n)
            .find(|&i| self.eligible(now, c, &ring[i], via))?;
        let agent = ring[i].clone();
        if let Some((_, turn)) = self.rings.get_mut(department) {
            *turn = (i + 1) % n;
        }
        Some(agent)
    }

    fn offer(&mut self, chat: &InteractionId, agent: &AgentId, via: Via, expiry: Option<Time>) {
        if let Some(Chat {
            stage: Stage::Waiting { offers, .. },
            ..
        }) = self.chats.get_mut(chat)
        {
            offers.insert(agent.clone(), (via, expiry));
        }
        self.agents
            .get_mut(agent)
            .expect("candidate")
            .offers
            .insert(chat.clone());
        self.outputs.push_back(Output::Offer {
            chat: chat.clone(),
            agent: agent.clone(),
            via,
        });
    }

    /// Pushes position and estimated wait to a waiting customer nobody is being offered to yet,
    /// when they changed, and arms the next tick.
    fn push_status(&mut self, now: Time, chat: &InteractionId) {
        let Some(c) = self.chats.get(chat) else {
            return;
        };
        let Stage::Waiting { offers, .. } = &c.stage else {
            return;
        };
        if !offers.is_empty() {
            return;
        }
        let department = c.service.department.clone();
        let position = 1 + self
            .queue
            .range(..c.order)
            .filter(|(_, id)| self.chats[*id].service.department == department)
            .count() as u32;
        let ewt = self.estimated_wait(&department, position);
        let key = (position, ewt.as_secs());
        let c = self.chats.get_mut(chat).expect("known");
        if c.last_status != Some(key) {
            c.last_status = Some(key);
            self.outputs.push_back(Output::QueueStatus {
                chat: chat.clone(),
                position,
                ewt,
            });
        }
        if self.next_status.is_none() {
            self.next_status = Some(now + self.settings.status_interval);
        }
    }

    /// Position × average handle time ÷ the chats the department's connected agents can hold.
    fn estimated_wait(&self, department: &str, position: u32) -> Duration {
        let slots: u32 = self
            .agents
            .values()
            .filter(|a| a.takes(department) && a.connected())
            .map(|a| (a.spec.capacity / self.settings.chat_load).max(1))
            .sum();
        let per = self.handle_time.as_millis() as u64 * position as u64 / slots.max(1) as u64;
        Duration::from_secs(per.div_ceil(1000))
    }
}
