//! The Interaction: one conversation's state machine (sans-IO).
//!
//! Driving contract (the same as str0m's `Rtc` and quinn-proto's `Connection`):
//! 1. feed it with [`Interaction::handle_command`] and [`Interaction::handle_timeout`], passing
//!    the current time;
//! 2. drain [`Interaction::poll_event`] (persist the durable ones, then deliver) and
//!    [`Interaction::poll_action`] (work for the leg drivers and the store);
//! 3. call `handle_timeout` again at [`Interaction::poll_timeout`].
//!
//! The state is event-sourced: every change is an [`Event`], applied by one function, so an
//! interaction restored from its stored events after a restart is exactly the one that was lost.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use serde_json::Value;

use super::dial_plan::DialPlan;
use super::error::RuleError;
use super::event::{
    AgentDevice, EndReason, Event, EventKind, LegKind, LegState, LegTarget, Phase, ReceiptKind,
    TeardownStep,
};
use super::token::JoinSecret;
use super::types::{AgentId, Customer, HeldCall, InteractionId, LegId, Party, Time};

/// The service settings the rules depend on.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    pub service: String,
    pub video_allowed: bool,
    /// Dial the customer's phone once an agent accepts (rule 7)…
    pub auto_dial: bool,
    /// …this long after (zero: at once), unless a call was made meanwhile.
    pub auto_dial_delay: Duration,
    /// No message for this long closes the chat; a warning comes at half-time.
    pub inactivity_timeout: Duration,
    pub max_message_bytes: usize,
    /// How long the teardown waits for each group of legs to confirm their release
    /// (64·T1, the SIP transaction timeout, by default).
    pub teardown_timeout: Duration,
    /// Digits the customer keys in are recorded as `*` (card numbers, PINs).
    pub mask_dtmf: bool,
    /// How long a customer's call or video request waits for the agent's answer before it is
    /// rejected as expired.
    pub call_request_timeout: Duration,
    /// The key of the join tokens that let a call from another number join the chat.
    pub join_secret: JoinSecret,
    /// What the service may dial: every number a leg calls passes it first.
    pub dial_plan: DialPlan,
}

/// What a party asks of the interaction. Who may send which is checked against the [`Party`].
/// Serialized to reach an interaction's owner node (several nodes as one).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Command {
    /// Routing offers the chat to an agent (system).
    Offer {
        agent: AgentId,
    },
    /// Routing withdraws an offer (system).
    Withdraw {
        agent: AgentId,
    },
    /// Routing takes the chat back from its agent, who is gone; it waits again (system).
    /// The agent's legs are released first (rule 4's order): the chat is re-queued once the
    /// last of them is confirmed gone (or the teardown timeout passed).
    Requeue,
    /// Routing tells the waiting customer their place and estimated wait (system).
    QueueStatus {
        position: u32,
        ewt_s: u64,
    },
    /// Nobody accepted within the maximum wait: the chat closes (system).
    NoAgentAvailable,
    /// An agent accepts the chat (agent). Also picks up a waiting chat that was never offered.
    Accept {
        display_name: String,
    },
    /// A chat message; `msg_id` is the client's id, which makes retries idempotent.
    SendMessage {
        msg_id: Option<String>,
        text: String,
    },
    /// A file already stored; the chat only records it.
    SendFile {
        file_id: String,
        file_name: String,
        file_type: String,
        size: u64,
    },
    Typing(bool),
    /// The customer's position (customer).
    Location {
        latitude: f64,
        longitude: f64,
    },
    /// Free context from the app, merged into the interaction's context (customer).
    Context(Value),
    /// A filled-in form (customer).
    FormData(Value),
    /// Delivery/read receipt of a message of the other party.
    Receipt {
        ref_msg_id: String,
        receipt: ReceiptKind,
    },
    /// WebRTC signalling from a party (an answer, a candidate) for the leg driver: the gateway
    /// is the offerer of every leg, so parties never signal to each other.
    Signal(Value),
    /// WebRTC signalling from the leg driver to one party (an offer) (system).
    SignalTo {
        to: Party,
        data: Value,
    },
    /// The customer asks for a voice call from the app; it waits for the agent (rule 5 for
    /// voice too: nothing is offered to the app before the agent says yes).
    RequestCall,
    /// The agent accepts the pending voice request on one of its devices: the gateway offers
    /// the call to the app.
    AcceptCall {
        device: AgentDevice,
    },
    /// The agent declines the pending voice request.
    DeclineCall,
    /// The customer asks to be called on the phone: at `number`, else the chat's number.
    RequestPhoneCall {
        number: Option<String>,
    },
    /// The agent calls the customer's phone — again and again if needed (rule 3): the chat's
    /// number unless the agent gives another; the agent talks on `device`.
    CallCustomer {
        number: Option<String>,
        device: AgentDevice,
    },
    /// The customer called in for this chat (the INVITE named it) from `caller` (system): it
    /// joins as the chat's voice leg when a trunk vouches that the caller is the chat's phone
    /// number, or from anywhere with the chat's join token. The leg that starts answers
    /// `call`, the waiting INVITE.
    JoinCall {
        caller: CallerId,
        token: Option<String>,
        call: HeldCall,
    },
    /// The caller of the phone call that opened this interaction hung up before an agent
    /// accepted it (system): the interaction ends, abandoned by the customer.
    CallAbandoned,
    /// The customer keyed a digit on the call's leg (RFC 4733) (system).
    Dtmf {
        leg: LegId,
        digit: char,
    },
    /// A leg driver reports the call on `leg` recorded into `file` (system).
    LegRecorded {
        leg: LegId,
        file: String,
    },
    /// A leg driver reports progress of a leg being set up (`ringing`) (system).
    LegProgress {
        leg: LegId,
        note: String,
    },
    /// End the current call, keeping the chat (agent or customer).
    ReleaseCall,
    /// The customer asks for video (rule 5).
    RequestVideo,
    /// The agent allows the pending video request.
    AllowVideo,
    /// The agent declines the pending video request.
    DeclineVideo,
    /// The agent declines the pending video request because it answers where video cannot be
    /// shown (its mobile phone): the request ends with the reason `video_needs_desk`.
    DeclineVideoNeedsDesk,
    /// Drop video, keep chat and voice (customer only: rule 6).
    DropVideo,
    /// The agent disconnects the chat; refused while a leg is up (rule 4).
    DisconnectChat,
    /// End everything in order: calls, video, chat (agent, or the customer leaving).
    EndSession,
    /// The customer's app is gone (system).
    Vanished,
    /// An operator closes it (system).
    Close,
    /// A leg driver reports media up (system).
    LegUp {
        leg: LegId,
    },
    /// A leg driver reports the leg gone: released, failed or declined (system).
    LegReleased {
        leg: LegId,
        reason: Option<String>,
    },
}

/// The number an incoming call shows, and who vouches for it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CallerId {
    /// The call came from a configured trunk, whose carrier vouches for the number.
    Trunk(String),
    /// The call came from anywhere else: the number is whatever the caller wrote.
    Claimed(String),
}

impl CallerId {
    /// The number shown, vouched for or not.
    pub(crate) fn number(&self) -> &str {
        match self {
            CallerId::Trunk(n) | CallerId::Claimed(n) => n,
        }
    }
}

/// Work for the drivers.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Set up a leg (SIP call to the phone, WebRTC offer to the app, …) carrying the service.
    StartLeg {
        leg: LegId,
        kind: LegKind,
        target: LegTarget,
        service: String,
        /// Where the agent's side of the leg goes.
        device: AgentDevice,
        /// The agent who talks on it (the one who accepted the interaction).
        agent: Option<AgentId>,
        /// The customer's call waiting to be answered as the customer's end: when set, that
        /// call is answered (it comes from `target`'s number) and nothing is dialled.
        answer: Option<HeldCall>,
    },
    /// Release a leg (BYE/CANCEL, close the peer) and report `LegReleased`.
    ReleaseLeg { leg: LegId },
    /// Refuse the phone call waiting on this leg, never answered (a SIP 480 saying `reason`),
    /// and report `LegReleased`. `call` is the waiting call (none after a restart lost it).
    RefuseCall {
        leg: LegId,
        reason: String,
        call: Option<HeldCall>,
    },
    /// Signalling from a party for the legs it has (an SDP answer, an ICE candidate).
    Signal { from: Party, data: Value },
    /// The transcript is complete: mark it closed in the store and retire the interaction.
    PersistTranscript,
}

/// A command that was carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Accepted {
    /// The `seq` of the event it produced (for a message: its server id), if durable.
    pub seq: Option<u64>,
    /// A retried message already known by its `msg_id`: nothing new happened.
    pub duplicate: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Leg {
    pub kind: LegKind,
    pub state: LegState,
    pub target: Option<LegTarget>,
    /// When it entered its current state (a request expires from here).
    pub since: Time,
    /// When it went up, if it did.
    pub up_since: Option<Time>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    ReleasingCalls,
    ReleasingVideo,
}

#[derive(Debug, Clone, PartialEq)]
enum State {
    Queued,
    Offered {
        agents: Vec<AgentId>,
    },
    Active {
        agent: AgentId,
        display_name: String,
    },
    Closing {
        reason: EndReason,
        stage: Stage,
        deadline: Time,
    },
    Closed {
        reason: EndReason,
    },
}

/// The timers of an interaction (derived from its state, never stored separately).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    InactivityWarning,
    Inactivity,
    Teardown,
    /// The oldest call or video request the agent has not answered expires.
    RequestExpiry,
    /// The delayed auto-dial after the agent accepted.
    AutoDial,
    /// The legs of a gone agent did not confirm their release in time.
    Requeue,
}

/// A re-queue waiting for the gone agent's legs to be released.
#[derive(Debug, Clone, PartialEq)]
struct PendingRequeue {
    /// Legs that have not confirmed by then are considered gone.
    deadline: Time,
    /// Offers routing made meanwhile, made once the chat waits again.
    offers: Vec<AgentId>,
}

struct MessageRecord {
    seq: u64,
    receipt: Option<ReceiptKind>,
}

pub struct Interaction {
    id: InteractionId,
    rules: Rules,
    customer: Customer,
    context: Value,
    state: State,
    /// The agent who accepted, kept after close for the transcript.
    agent: Option<(AgentId, String)>,
    legs: BTreeMap<LegId, Leg>,
    seq: u64,
    /// Messages by msg_id, per side: idempotent retries and receipts.
    customer_messages: HashMap<String, MessageRecord>,
    staff_messages: HashMap<String, MessageRecord>,
    last_activity: Time,
    /// When the agent joined (the delayed auto-dial counts from here).
    joined_at: Option<Time>,
    warned: bool,
    /// Not durable: after a restart the legs are gone anyway and routing decides again.
    requeue: Option<PendingRequeue>,
    /// The customer's call waiting on a voice leg to be answered, until its leg starts. Not
    /// durable either: a restart loses the call with its leg.
    waiting: Option<(LegId, HeldCall)>,
    events: VecDeque<Event>,
    actions: VecDeque<Action>,
}

impl Interaction {
    /// A new chat, queued for routing.
    pub fn new(
        now: Time,
        id: InteractionId,
        rules: Rules,
        customer: Customer,
        context: Value,
    ) -> Interaction {
        let mut it = Interaction::empty(id, rules, now);
        it.emit(
            now,
            EventKind::Created {
                service: it.rules.service.clone(),
                customer,
                context,
            },
        );
        it.emit(
            now,
            EventKind::Status {
                phase: Phase::Queued,
            },
        );
        it
    }

    /// A new interaction opened by a phone call from `caller` to a service number: queued for
    /// routing like a chat, with the call waiting on a voice leg; the agent who accepts gets
    /// the call on the browser, and if nobody does the call is refused.
    pub fn new_call(
        now: Time,
        id: InteractionId,
        rules: Rules,
        customer: Customer,
        context: Value,
        caller: String,
        call: HeldCall,
    ) -> Interaction {
        let mut it = Interaction::new(now, id, rules, customer, context);
        let leg = it.next_leg_id();
        it.emit(
            now,
            EventKind::Leg {
                leg,
                kind: LegKind::Voice,
                state: LegState::Connecting,
                target: Some(LegTarget::Phone(caller)),
                reason: Some("waiting for an agent".into()),
                duration_s: None,
            },
        );
        it.waiting = Some((leg, call));
        it
    }

    /// Rebuilds an interaction from its stored events (in `seq` order). Legs cannot survive a
    /// restart (their SIP and WebRTC state is gone), so live ones are reported released, and a
    /// teardown that was running goes on. Returns `None` when the first event is not `Created`.
    pub fn restore(
        now: Time,
        id: InteractionId,
        rules: Rules,
        stored: impl IntoIterator<Item = Event>,
    ) -> Option<Interaction> {
        let mut it = Interaction::empty(id, rules, now);
        let mut stored = stored.into_iter().peekable();
        if !matches!(stored.peek()?.kind, EventKind::Created { .. }) {
            return None;
        }
        for event in stored {
            if let Some(seq) = event.seq {
                it.seq = seq;
            }
            it.apply(&event);
        }
        let live: Vec<LegId> = it.live_legs(None);
        for leg in live {
            it.emit_leg(now, leg, LegState::Released, Some("restart".into()));
        }
        if matches!(it.state, State::Closing { .. }) {
            it.advance_teardown(now);
        }
        Some(it)
    }

    fn empty(id: InteractionId, rules: Rules, now: Time) -> Interaction {
        Interaction {
            id,
            rules,
            customer: Customer::default(),
            context: Value::Null,
            state: State::Queued,
            agent: None,
            legs: BTreeMap::new(),
            seq: 0,
            customer_messages: HashMap::new(),
            staff_messages: HashMap::new(),
            last_activity: now,
            joined_at: None,
            warned: false,
            requeue: None,
            waiting: None,
            events: VecDeque::new(),
            actions: VecDeque::new(),
        }
    }

    pub fn id(&self) -> &InteractionId {
        &self.id
    }
    pub(crate) fn rules(&self) -> &Rules {
        &self.rules
    }
    pub fn customer(&self) -> &Customer {
        &self.customer
    }
    pub fn context(&self) -> &Value {
        &self.context
    }
    /// The `seq` of the last durable event.
    pub fn last_seq(&self) -> u64 {
        self.seq
    }
    pub fn phase(&self) -> Phase {
        match self.state {
            State::Queued => Phase::Queued,
            State::Offered { .. } => Phase::Offered,
            State::Active { .. } => Phase::Active,
            State::Closing { .. } => Phase::Closing,
            State::Closed { .. } => Phase::Closed,
        }
    }
    /// The agent who accepted the chat.
    pub fn agent(&self) -> Option<&AgentId> {
        self.agent.as_ref().map(|(id, _)| id)
    }
    pub fn legs(&self) -> &BTreeMap<LegId, Leg> {
        &self.legs
    }

    /// The next event to persist (if it has a `seq`) and deliver.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The next piece of work for a driver.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Every armed timer.
    pub(crate) fn timers(&self) -> Vec<(Timer, Time)> {
        let mut timers = Vec::new();
        match &self.state {
            State::Active { .. } => {
                let timeout = self.rules.inactivity_timeout;
                if self.warned {
                    timers.push((Timer::Inactivity, self.last_activity + timeout));
                } else {
                    timers.push((Timer::InactivityWarning, self.last_activity + timeout / 2));
                }
            }
            State::Closing { deadline, .. } => timers.push((Timer::Teardown, *deadline)),
            _ => {}
        }
        if let (State::Active { .. }, Some(pending)) = (&self.state, &self.requeue) {
            timers.push((Timer::Requeue, pending.deadline));
        }
        if let (State::Active { .. }, Some(joined)) = (&self.state, self.joined_at)
            && self.auto_dial_pending()
        {
            timers.push((Timer::AutoDial, joined + self.rules.auto_dial_delay));
        }
        let oldest_request = self
            .legs
            .values()
            .filter(|l| l.state == LegState::AwaitingApproval)
            .map(|l| l.since)
            .min();
        if let (State::Active { .. }, Some(since)) = (&self.state, oldest_request) {
            timers.push((
                Timer::RequestExpiry,
                since + self.rules.call_request_timeout,
            ));
        }
        timers
    }

    /// When `handle_timeout` must be called next; `None` when nothing is armed.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.timers().into_iter().map(|(_, at)| at).min()
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Time) {
        for (timer, at) in self.timers() {
            if at > now {
                continue;
            }
            match timer {
                Timer::InactivityWarning => {
                    let remaining =
                        self.rules.inactivity_timeout - self.rules.inactivity_timeout / 2;
                    self.emit(
                        now,
                        EventKind::TimeoutWarning {
                            remaining_s: remaining.as_secs(),
                        },
                    );
                }
                Timer::Inactivity => {
                    self.emit(now, EventKind::InactivityTimeout);
                    self.start_teardown(now, EndReason::Inactivity);
                }
                Timer::Teardown => {
                    // The legs of this stage did not answer in time: consider them gone.
                    let kind = match self.state {
                        State::Closing {
                            stage: Stage::ReleasingCalls,
                            ..
                        } => LegKind::Voice,
                        _ => LegKind::Video,
                    };
                    for leg in self.live_legs(Some(kind)) {
                        self.emit_leg(now, leg, LegState::Released, Some("timeout".into()));
                    }
                    self.advance_teardown(now);
                }
                Timer::AutoDial => self.auto_dial(now),
                Timer::Requeue => {
                    for leg in self.live_legs(None) {
                        self.emit_leg(now, leg, LegState::Released, Some("timeout".into()));
                    }
                    self.finish_requeue(now);
                }
                Timer::RequestExpiry => {
                    let expired: Vec<LegId> = self
                        .legs
                        .iter()
                        .filter(|(_, l)| {
                            l.state == LegState::AwaitingApproval
                                && l.since + self.rules.call_request_timeout <= now
                        })
                        .map(|(id, _)| *id)
                        .collect();
                    for leg in expired {
                        self.emit_leg(now, leg, LegState::Released, Some("expired".into()));
                    }
                }
            }
        }
    }

    /// Carries out `command` from `by`, or refuses it with the rule it breaks.
    pub fn handle_command(
        &mut self,
        now: Time,
        by: &Party,
        command: Command,
    ) -> Result<Accepted, RuleError> {
        if matches!(self.state, State::Closing { .. } | State::Closed { .. }) {
            // Leg drivers still answer releases during the teardown.
            if let (Party::System, Command::LegReleased { leg, reason }) = (by, &command) {
                return self.leg_released(now, *leg, reason.clone());
            }
            return Err(RuleError::InteractionClosed);
        }
        match command {
            Command::Offer { agent } => {
                self.require_system(by)?;
                if let Some(pending) = &mut self.requeue {
                    // Routing already counts the chat as waiting; the offer is made once it is.
                    if !pending.offers.contains(&agent) {
                        pending.offers.push(agent);
                    }
                    return Ok(done(None));
                }
                match &self.state {
                    State::Queued | State::Offered { .. } => {}
                    _ => return Err(RuleError::AlreadyAccepted),
                }
                Ok(done(self.offer(now, agent)))
            }
            Command::Withdraw { agent } => {
                self.require_system(by)?;
                if let Some(pending) = &mut self.requeue
                    && pending.offers.contains(&agent)
                {
                    pending.offers.retain(|a| *a != agent);
                    return Ok(done(None));
                }
                match &self.state {
                    State::Offered { agents } if agents.contains(&agent) => {}
                    _ => return Err(RuleError::NotPermitted),
                }
                let seq = self.emit(now, EventKind::Withdrawn { agent });
                if self.phase() == Phase::Queued {
                    self.emit(
                        now,
                        EventKind::Status {
                            phase: Phase::Queued,
                        },
                    );
                }
                Ok(done(seq))
            }
            Command::Requeue => {
                self.require_system(by)?;
                if !matches!(self.state, State::Active { .. }) {
                    return Err(RuleError::NotActive);
                }
                if self.requeue.is_some() {
                    return Ok(Accepted {
                        seq: None,
                        duplicate: true,
                    });
                }
                // No leg outlives its agent: calls and video are released first, and the chat
                // waits again only once they are gone.
                self.requeue = Some(PendingRequeue {
                    deadline: now + self.rules.teardown_timeout,
                    offers: Vec::new(),
                });
                let mut seq = None;
                for leg in self.live_legs(None) {
                    seq = self
                        .release_leg(now, leg, Some("the agent is gone".into()))
                        .or(seq);
                }
                let requeued = self.finish_requeue(now);
                Ok(done(seq.or(requeued)))
            }
            Command::QueueStatus { position, ewt_s } => {
                self.require_system(by)?;
                if !matches!(self.state, State::Queued | State::Offered { .. }) {
                    return Err(RuleError::AlreadyAccepted);
                }
                Ok(done(self.emit(now, EventKind::Queue { position, ewt_s })))
            }
            Command::NoAgentAvailable => {
                self.require_system(by)?;
                if !matches!(self.state, State::Queued | State::Offered { .. }) {
                    return Err(RuleError::AlreadyAccepted);
                }
                Ok(done(self.start_teardown(now, EndReason::NoAgentAvailable)))
            }
            Command::Accept { display_name } => {
                let Party::Agent(agent) = by else {
                    return Err(RuleError::NotPermitted);
                };
                let others = match &self.state {
                    State::Queued => Vec::new(),
                    State::Offered { agents } => {
                        agents.iter().filter(|a| *a != agent).cloned().collect()
                    }
                    _ => return Err(RuleError::AlreadyAccepted),
                };
                let held = self.held_call();
                // Ring-all: the first to accept wins, the others see the offer withdrawn.
                for other in others {
                    self.emit(now, EventKind::Withdrawn { agent: other });
                }
                let seq = self.emit(
                    now,
                    EventKind::PartyJoined {
                        party: by.clone(),
                        display_name,
                    },
                );
                self.emit(
                    now,
                    EventKind::Status {
                        phase: Phase::Active,
                    },
                );
                if let Some(leg) = held {
                    // The call that opened the interaction is answered on the agent's browser.
                    let target = self.legs[&leg].target.clone();
                    let target = target.unwrap_or(LegTarget::App);
                    let start =
                        self.start_action(leg, LegKind::Voice, target, AgentDevice::Browser);
                    self.actions.push_back(start);
                } else if self.rules.auto_dial_delay.is_zero() {
                    self.auto_dial(now);
                }
                Ok(done(seq))
            }
            Command::SendMessage { msg_id, text } => {
                self.require_party(by)?;
                if text.len() > self.rules.max_message_bytes {
                    return Err(RuleError::MessageTooLong {
                        max: self.rules.max_message_bytes,
                    });
                }
                if text.trim().is_empty() {
                    return Err(RuleError::EmptyMessage);
                }
                if let Some(id) = &msg_id
                    && let Some(known) = self.messages_of(by).get(id)
                {
                    return Ok(Accepted {
                        seq: Some(known.seq),
                        duplicate: true,
                    });
                }
                let msg_id = msg_id.unwrap_or_else(|| format!("s{}", self.seq + 1));
                let from = by.clone();
                Ok(done(
                    self.emit(now, EventKind::Message { msg_id, from, text }),
                ))
            }
            Command::SendFile {
                file_id,
                file_name,
                file_type,
                size,
            } => {
                self.require_party(by)?;
                let from = by.clone();
                let kind = EventKind::File {
                    file_id,
                    file_name,
                    file_type,
                    size,
                    from,
                };
                Ok(done(self.emit(now, kind)))
            }
            Command::Typing(typing) => {
                self.require_party(by)?;
                let from = by.clone();
                Ok(done(self.emit(now, EventKind::Typing { from, typing })))
            }
            Command::Location {
                latitude,
                longitude,
            } => {
                self.require_customer(by)?;
                let kind = EventKind::Location {
                    latitude,
                    longitude,
                };
                Ok(done(self.emit(now, kind)))
            }
            Command::Context(data) => {
                self.require_customer(by)?;
                Ok(done(self.emit(now, EventKind::Context { data })))
            }
            Command::FormData(data) => {
                self.require_customer(by)?;
                Ok(done(self.emit(now, EventKind::FormData { data })))
            }
            Command::Receipt {
                ref_msg_id,
                receipt,
            } => {
                self.require_party(by)?;
                // A receipt is for a message of the other side.
                let theirs = if *by == Party::Customer {
                    &self.staff_messages
                } else {
                    &self.customer_messages
                };
                let known = theirs.get(&ref_msg_id).ok_or(RuleError::UnknownMessage)?;
                // Receipts only move forward: a late "delivered" after "read" changes nothing.
                if known.receipt >= Some(receipt) {
                    return Ok(Accepted {
                        seq: None,
                        duplicate: true,
                    });
                }
                let by = by.clone();
                let kind = EventKind::Receipt {
                    ref_msg_id,
                    receipt,
                    by,
                };
                Ok(done(self.emit(now, kind)))
            }
            Command::Signal(data) => {
                self.require_party(by)?;
                // The agent's browser has a peer on every call; the customer only on a call
                // from the app (a phone call has no WebRTC side for the customer).
                let answerable = self.legs.values().any(|l| {
                    matches!(l.state, LegState::Connecting | LegState::Up)
                        && (l.target == Some(LegTarget::App) || matches!(by, Party::Agent(_)))
                });
                if !answerable {
                    return Err(RuleError::NoCall);
                }
                let from = by.clone();
                self.actions.push_back(Action::Signal { from, data });
                Ok(done(None))
            }
            Command::SignalTo { to, data } => {
                self.require_system(by)?;
                let from = Party::System;
                Ok(done(
                    self.emit(now, EventKind::Signaling { from, to, data }),
                ))
            }
            Command::RequestCall => {
                self.require_customer(by)?;
                self.require_active()?;
                self.require_no_call()?;
                let leg = self.next_leg_id();
                let kind = EventKind::Leg {
                    leg,
                    kind: LegKind::Voice,
                    state: LegState::AwaitingApproval,
                    target: Some(LegTarget::App),
                    reason: None,
                    duration_s: None,
                };
                Ok(done(self.emit(now, kind)))
            }
            Command::AcceptCall { .. } | Command::DeclineCall => {
                self.require_agent(by)?;
                let leg = self
                    .awaiting(LegKind::Voice)
                    .ok_or(RuleError::NoCallRequest)?;
                if command == Command::DeclineCall {
                    let reason = Some("declined".to_string());
                    let seq = self.emit_leg(now, leg, LegState::Released, reason.clone());
                    // The video asked for with the app's call has nothing to ride on.
                    if self.legs[&leg].target == Some(LegTarget::App)
                        && let Some(video) = self.awaiting(LegKind::Video)
                    {
                        self.emit_leg(now, video, LegState::Released, reason);
                    }
                    return Ok(done(seq));
                }
                let Command::AcceptCall { device } = command else {
                    unreachable!("matched above")
                };
                // The app's own call, or the phone call the customer asked for.
                let target = self.legs[&leg].target.clone().unwrap_or(LegTarget::App);
                let seq = self.emit_leg(now, leg, LegState::Connecting, None);
                let start = self.start_action(leg, LegKind::Voice, target, device);
                self.actions.push_back(start);
                Ok(done(seq))
            }
            Command::RequestPhoneCall { number } => {
                // The agent is told and dials by accepting, like any call request.
                self.require_customer(by)?;
                self.require_active()?;
                self.require_no_call()?;
                let phone = self.phone_to_call(number)?;
                let leg = self.next_leg_id();
                let kind = EventKind::Leg {
                    leg,
                    kind: LegKind::Voice,
                    state: LegState::AwaitingApproval,
                    target: Some(LegTarget::Phone(phone)),
                    reason: None,
                    duration_s: None,
                };
                Ok(done(self.emit(now, kind)))
            }
            Command::CallCustomer { number, device } => {
                self.require_agent(by)?;
                self.require_active()?;
                self.require_no_call()?;
                let phone = self.phone_to_call(number)?;
                let target = LegTarget::Phone(phone);
                Ok(done(self.start_leg(now, LegKind::Voice, target, device)))
            }
            Command::JoinCall {
                caller,
                token,
                call,
            } => {
                self.require_system(by)?;
                self.require_active()?;
                self.require_no_call()?;
                let digits = |n: &str| n.trim_start_matches('+').to_string();
                match (&token, &caller, &self.customer.phone) {
                    // The token vouches for the caller, whatever number it shows and wherever
                    // the call comes from.
                    (Some(token), _, _) if self.rules.join_secret.verify(&self.id, token) => {}
                    (Some(_), _, _) => return Err(RuleError::BadJoinToken),
                    // Caller id is only as good as whoever vouches for it: a trunk's carrier.
                    (None, CallerId::Claimed(_), _) => return Err(RuleError::CallerNotVouched),
                    (None, CallerId::Trunk(number), Some(phone))
                        if !number.is_empty() && digits(phone) == digits(number) => {}
                    (None, CallerId::Trunk(_), _) => return Err(RuleError::NotPermitted),
                }
                let target = LegTarget::Phone(caller.number().to_string());
                let device = AgentDevice::default();
                self.waiting = Some((self.next_leg_id(), call));
                Ok(done(self.start_leg(now, LegKind::Voice, target, device)))
            }
            Command::CallAbandoned => {
                self.require_system(by)?;
                let leg = self.held_call().ok_or(RuleError::NoCall)?;
                self.waiting = None;
                self.emit_leg(now, leg, LegState::Released, Some("caller hung up".into()));
                Ok(done(self.start_teardown(now, EndReason::Abandoned)))
            }
            Command::Dtmf { leg, digit } => {
                self.require_system(by)?;
                match self.legs.get(&leg).map(|l| l.state) {
                    Some(LegState::Up) => {}
                    _ => return Err(RuleError::UnknownLeg),
                }
                let digit = if self.rules.mask_dtmf { '•' } else { digit };
                Ok(done(self.emit(now, EventKind::Dtmf { leg, digit })))
            }
            Command::LegRecorded { leg, file } => {
                self.require_system(by)?;
                match self.legs.get(&leg) {
                    Some(l) if l.state.is_live() => {}
                    _ => return Err(RuleError::UnknownLeg),
                }
                Ok(done(self.emit(now, EventKind::Recording { leg, file })))
            }
            Command::LegProgress { leg, note } => {
                self.require_system(by)?;
                match self.legs.get(&leg).map(|l| l.state) {
                    Some(LegState::Connecting) => {}
                    _ => return Err(RuleError::UnknownLeg),
                }
                let seq = self.emit_leg(now, leg, LegState::Connecting, Some(note));
                Ok(done(seq))
            }
            Command::ReleaseCall => {
                // The call is its voice and the video that rides with it; dropping video
                // alone is `DropVideo`.
                self.require_party(by)?;
                let voice = self.live_legs(Some(LegKind::Voice));
                let leg = *voice.first().ok_or(RuleError::NoCall)?;
                let why = ended_by(by);
                let mut seq = self.release_leg(now, leg, why.clone());
                for video in self.live_legs(Some(LegKind::Video)) {
                    seq = self.release_leg(now, video, why.clone()).or(seq);
                }
                Ok(done(seq))
            }
            Command::RequestVideo => {
                self.require_customer(by)?;
                self.require_active()?;
                if !self.rules.video_allowed {
                    return Err(RuleError::VideoNotAllowed);
                }
                if !self.live_legs(Some(LegKind::Video)).is_empty() {
                    return Err(RuleError::CallInProgress);
                }
                let leg = self.next_leg_id();
                Ok(done(self.emit_leg(
                    now,
                    leg,
                    LegState::AwaitingApproval,
                    None,
                )))
            }
            Command::AllowVideo | Command::DeclineVideo => {
                self.require_agent(by)?;
                let leg = self
                    .awaiting(LegKind::Video)
                    .ok_or(RuleError::NoVideoRequest)?;
                if command == Command::DeclineVideo {
                    let reason = Some("declined".to_string());
                    return Ok(done(self.emit_leg(now, leg, LegState::Released, reason)));
                }
                // Video rides on the app's call. Allowed while that call still waits for the
                // agent, it accepts the call first, on the agent's browser (where video is
                // shown): the call is set up, then video joins it — never video alone with the
                // call left waiting.
                let mut seq = None;
                if let Some(call) = self.awaiting(LegKind::Voice)
                    && self.legs[&call].target == Some(LegTarget::App)
                {
                    seq = self.emit_leg(now, call, LegState::Connecting, None);
                    let start = self.start_action(
                        call,
                        LegKind::Voice,
                        LegTarget::App,
                        AgentDevice::Browser,
                    );
                    self.actions.push_back(start);
                }
                let kind = EventKind::Leg {
                    leg,
                    kind: LegKind::Video,
                    state: LegState::Connecting,
                    target: Some(LegTarget::App),
                    reason: None,
                    duration_s: None,
                };
                let seq = seq.or(self.emit(now, kind));
                // Video is shown on the agent's desktop.
                let start =
                    self.start_action(leg, LegKind::Video, LegTarget::App, AgentDevice::Browser);
                self.actions.push_back(start);
                Ok(done(seq))
            }
            Command::DeclineVideoNeedsDesk => {
                self.require_agent(by)?;
                let leg = self
                    .awaiting(LegKind::Video)
                    .ok_or(RuleError::NoVideoRequest)?;
                let reason = Some("video_needs_desk".to_string());
                Ok(done(self.emit_leg(now, leg, LegState::Released, reason)))
            }
            Command::DropVideo => {
                if matches!(by, Party::Agent(_)) {
                    return Err(RuleError::OnlyCustomerMayDropVideo);
                }
                self.require_customer(by)?;
                let video = self.live_legs(Some(LegKind::Video));
                let leg = *video.first().ok_or(RuleError::UnknownLeg)?;
                Ok(done(self.release_leg(now, leg, ended_by(by))))
            }
            Command::DisconnectChat => {
                self.require_agent(by)?;
                if !self.live_legs(None).is_empty() {
                    return Err(RuleError::ReleaseCallBeforeChat);
                }
                Ok(done(self.start_teardown(now, EndReason::AgentDisconnected)))
            }
            Command::EndSession => {
                let reason = match by {
                    Party::Customer => EndReason::CustomerEnded,
                    Party::Agent(_) => {
                        self.require_agent(by)?;
                        EndReason::AgentEndedSession
                    }
                    Party::System => EndReason::Administrative,
                };
                Ok(done(self.start_teardown(now, reason)))
            }
            Command::Vanished => {
                self.require_system(by)?;
                Ok(done(self.start_teardown(now, EndReason::CustomerVanished)))
            }
            Command::Close => {
                self.require_system(by)?;
                Ok(done(self.start_teardown(now, EndReason::Administrative)))
            }
            Command::LegUp { leg } => {
                self.require_system(by)?;
                let state = self.legs.get(&leg).map(|l| l.state);
                match state {
                    None | Some(LegState::Released) | Some(LegState::Releasing) => {
                        Err(RuleError::UnknownLeg)
                    }
                    Some(LegState::AwaitingApproval) => {
                        if self.legs[&leg].kind == LegKind::Voice {
                            Err(RuleError::CallRequiresAgentApproval)
                        } else {
                            Err(RuleError::VideoRequiresAgentApproval)
                        }
                    }
                    Some(LegState::Up) => Ok(Accepted {
                        seq: None,
                        duplicate: true,
                    }),
                    Some(LegState::Connecting) => {
                        Ok(done(self.emit_leg(now, leg, LegState::Up, None)))
                    }
                }
            }
            Command::LegReleased { leg, reason } => {
                self.require_system(by)?;
                self.leg_released(now, leg, reason)
            }
        }
    }

    fn leg_released(
        &mut self,
        now: Time,
        leg: LegId,
        reason: Option<String>,
    ) -> Result<Accepted, RuleError> {
        match self.legs.get(&leg) {
            Some(l) if l.state.is_live() => {}
            _ => return Err(RuleError::UnknownLeg),
        }
        let seq = self.emit_leg(now, leg, LegState::Released, reason);
        if matches!(self.state, State::Closing { .. }) {
            self.advance_teardown(now);
        } else {
            self.finish_requeue(now);
        }
        Ok(done(seq))
    }

    /// Re-queues the chat of a gone agent once none of its legs is live: the agent leaves, the
    /// chat waits again, and the offers routing made meanwhile are made. Returns the `seq` of
    /// the agent's leaving.
    fn finish_requeue(&mut self, now: Time) -> Option<u64> {
        if self.requeue.is_none() || !self.live_legs(None).is_empty() {
            return None;
        }
        let pending = self.requeue.take()?;
        let State::Active {
            agent,
            display_name,
        } = self.state.clone()
        else {
            return None;
        };
        let party = Party::Agent(agent);
        let seq = self.emit(
            now,
            EventKind::PartyLeft {
                party,
                display_name,
            },
        );
        self.emit(
            now,
            EventKind::Status {
                phase: Phase::Queued,
            },
        );
        for agent in pending.offers {
            self.offer(now, agent);
        }
        seq
    }

    fn start_leg(
        &mut self,
        now: Time,
        kind: LegKind,
        target: LegTarget,
        device: AgentDevice,
    ) -> Option<u64> {
        let leg = self.next_leg_id();
        let seq = self.emit(
            now,
            EventKind::Leg {
                leg,
                kind,
                state: LegState::Connecting,
                target: Some(target.clone()),
                reason: None,
                duration_s: None,
            },
        );
        let start = self.start_action(leg, kind, target, device);
        self.actions.push_back(start);
        seq
    }

    /// The action that starts `leg`: with the service, the agent, and the waiting call it
    /// answers when it is that call's leg.
    fn start_action(
        &mut self,
        leg: LegId,
        kind: LegKind,
        target: LegTarget,
        device: AgentDevice,
    ) -> Action {
        let answer = match self.waiting {
            Some((waiting, call)) if waiting == leg => {
                self.waiting = None;
                Some(call)
            }
            _ => None,
        };
        Action::StartLeg {
            leg,
            kind,
            target,
            service: self.rules.service.clone(),
            device,
            agent: self.agent.as_ref().map(|(id, _)| id.clone()),
            answer,
        }
    }

    /// Asks the driver to release `leg`; `why` (who ended it) goes into the transcript.
    fn release_leg(&mut self, now: Time, leg: LegId, why: Option<String>) -> Option<u64> {
        if self.legs[&leg].state == LegState::AwaitingApproval {
            // Nothing was set up yet: the request is simply withdrawn.
            return self.emit_leg(now, leg, LegState::Released, Some("withdrawn".into()));
        }
        if self.legs[&leg].state == LegState::Releasing {
            return None;
        }
        if self.held_call() == Some(leg) {
            // Nobody answered the call that opened the interaction: it is refused, saying why.
            let reason = match self.state {
                State::Closing {
                    reason: EndReason::NoAgentAvailable,
                    ..
                } => "No Agent Available",
                State::Closing {
                    reason: EndReason::Administrative,
                    ..
                } => "Service Closing",
                _ => "Interaction Ended",
            };
            let seq = self.emit_leg(now, leg, LegState::Releasing, why);
            let reason = reason.to_string();
            let call = self.waiting.take().map(|(_, call)| call);
            self.actions
                .push_back(Action::RefuseCall { leg, reason, call });
            return seq;
        }
        let seq = self.emit_leg(now, leg, LegState::Releasing, why);
        self.actions.push_back(Action::ReleaseLeg { leg });
        seq
    }

    /// Begins the ordered teardown: one plan, then its steps as the legs answer.
    fn start_teardown(&mut self, now: Time, reason: EndReason) -> Option<u64> {
        // A re-queue in progress gives way: the teardown releases the same legs.
        self.requeue = None;
        let plan = vec![
            TeardownStep::ReleaseCalls {
                legs: self.live_legs(Some(LegKind::Voice)),
            },
            TeardownStep::ReleaseVideo {
                legs: self.live_legs(Some(LegKind::Video)),
            },
            TeardownStep::CloseChat,
            TeardownStep::Persist,
        ];
        let seq = self.emit(now, EventKind::TeardownStarted { reason, plan });
        self.emit(
            now,
            EventKind::Status {
                phase: Phase::Closing,
            },
        );
        self.advance_teardown(now);
        seq
    }

    /// Runs the teardown as far as it can go without waiting for a leg.
    fn advance_teardown(&mut self, now: Time) {
        loop {
            let State::Closing { stage, reason, .. } = self.state else {
                return;
            };
            let kind = match stage {
                Stage::ReleasingCalls => LegKind::Voice,
                Stage::ReleasingVideo => LegKind::Video,
            };
            let live = self.live_legs(Some(kind));
            if !live.is_empty() {
                for leg in live {
                    self.release_leg(now, leg, Some("session ending".into()));
                }
                return;
            }
            match stage {
                Stage::ReleasingCalls => {
                    self.state = State::Closing {
                        reason,
                        stage: Stage::ReleasingVideo,
                        deadline: now + self.rules.teardown_timeout,
                    };
                }
                Stage::ReleasingVideo => {
                    if let Some((agent, display_name)) = self.agent.clone() {
                        let party = Party::Agent(agent);
                        self.emit(
                            now,
                            EventKind::PartyLeft {
                                party,
                                display_name,
                            },
                        );
                    }
                    self.emit(now, EventKind::ChatClosed { reason });
                    self.emit(
                        now,
                        EventKind::Status {
                            phase: Phase::Closed,
                        },
                    );
                    self.actions.push_back(Action::PersistTranscript);
                    return;
                }
            }
        }
    }

    /// A delayed auto-dial is still to come: no leg was made since the agent joined.
    fn auto_dial_pending(&self) -> bool {
        self.rules.auto_dial
            && !self.rules.auto_dial_delay.is_zero()
            && self.legs.is_empty()
            && self.customer.phone.is_some()
    }

    /// Calls the customer's phone for a service that dials on accept (rule 7), when the
    /// service's dial plan allows the number (the customer API refuses others at the chat's
    /// start; one stored before the plan changed is simply not dialled).
    fn auto_dial(&mut self, now: Time) {
        if !self.rules.auto_dial || !self.legs.is_empty() {
            return;
        }
        let Some(phone) = self.customer.phone.clone() else {
            return;
        };
        if let Ok(phone) = self.dialable(&phone) {
            let target = LegTarget::Phone(phone);
            self.start_leg(now, LegKind::Voice, target, AgentDevice::default());
        }
    }

    /// Offers the chat to `agent` (the first offer moves a queued chat to `offered`); what
    /// [`Interaction::emit`] gives for the offer.
    fn offer(&mut self, now: Time, agent: AgentId) -> Option<u64> {
        if self.phase() == Phase::Queued {
            self.emit(
                now,
                EventKind::Status {
                    phase: Phase::Offered,
                },
            );
        }
        let context = self.context.clone();
        self.emit(now, EventKind::Offered { agent, context })
    }

    /// `number` in E.164 if it is a number the service's dial plan allows: the one gate of
    /// every number a leg dials (typed by the agent, given by the customer, or the chat's).
    fn dialable(&self, number: &str) -> Result<String, RuleError> {
        Ok(self.rules.dial_plan.check(number)?.into_string())
    }

    /// The number a call to the customer dials: `number` if given, else the chat's, through
    /// the dial plan.
    fn phone_to_call(&self, number: Option<String>) -> Result<String, RuleError> {
        let number = match number {
            Some(number) => number,
            None => self
                .customer
                .phone
                .clone()
                .ok_or(RuleError::NoPhoneNumber)?,
        };
        self.dialable(&number)
    }

    /// The phone call that opened the interaction, still waiting for an agent: a voice leg
    /// being set up before any agent joined (nothing else makes a leg before that).
    fn held_call(&self) -> Option<LegId> {
        if self.agent.is_some() {
            return None;
        }
        self.legs
            .iter()
            .find(|(_, l)| l.kind == LegKind::Voice && l.state == LegState::Connecting)
            .map(|(id, _)| *id)
    }

    /// The pending request of a kind, if any.
    fn awaiting(&self, kind: LegKind) -> Option<LegId> {
        self.legs
            .iter()
            .find(|(_, l)| l.kind == kind && l.state == LegState::AwaitingApproval)
            .map(|(id, _)| *id)
    }

    fn next_leg_id(&self) -> LegId {
        LegId(self.legs.keys().last().map_or(1, |l| l.0 + 1))
    }

    /// Live legs of a kind (or all), in creation order.
    fn live_legs(&self, kind: Option<LegKind>) -> Vec<LegId> {
        self.legs
            .iter()
            .filter(|(_, l)| l.state.is_live() && kind.is_none_or(|k| l.kind == k))
            .map(|(id, _)| *id)
            .collect()
    }

    fn emit_leg(
        &mut self,
        now: Time,
        leg: LegId,
        state: LegState,
        reason: Option<String>,
    ) -> Option<u64> {
        // Every leg event names the target, so each one reads alone (the app's views).
        let (kind, target, up_since) = self
            .legs
            .get(&leg)
            .map_or((LegKind::Video, None, None), |l| {
                (l.kind, l.target.clone(), l.up_since)
            });
        let duration_s = match state {
            LegState::Released => up_since.map(|t| now.since(t).as_secs()),
            _ => None,
        };
        self.emit(
            now,
            EventKind::Leg {
                leg,
                kind,
                state,
                target,
                reason,
                duration_s,
            },
        )
    }

    fn messages_of(&self, by: &Party) -> &HashMap<String, MessageRecord> {
        if *by == Party::Customer {
            &self.customer_messages
        } else {
            &self.staff_messages
        }
    }

    fn require_system(&self, by: &Party) -> Result<(), RuleError> {
        match by {
            Party::System => Ok(()),
            _ => Err(RuleError::NotPermitted),
        }
    }
    fn require_customer(&self, by: &Party) -> Result<(), RuleError> {
        match by {
            Party::Customer => Ok(()),
            _ => Err(RuleError::NotPermitted),
        }
    }
    /// The agent who accepted this chat.
    fn require_agent(&self, by: &Party) -> Result<(), RuleError> {
        if self.requeue.is_some() && matches!(by, Party::Agent(_)) {
            // Routing took the chat from its gone agent; it only waits for the legs.
            return Err(RuleError::NotPermitted);
        }
        match (by, &self.state) {
            (Party::Agent(a), State::Active { agent, .. }) if a == agent => Ok(()),
            (Party::Agent(_), State::Queued | State::Offered { .. }) => Err(RuleError::NotActive),
            _ => Err(RuleError::NotPermitted),
        }
    }
    /// The customer, or the agent who accepted.
    fn require_party(&self, by: &Party) -> Result<(), RuleError> {
        match by {
            Party::Customer => Ok(()),
            _ => self.require_agent(by),
        }
    }
    fn require_active(&self) -> Result<(), RuleError> {
        match self.state {
            State::Active { .. } => Ok(()),
            _ => Err(RuleError::NotActive),
        }
    }
    fn require_no_call(&self) -> Result<(), RuleError> {
        if self.live_legs(Some(LegKind::Voice)).is_empty() {
            Ok(())
        } else {
            Err(RuleError::CallInProgress)
        }
    }

    /// Numbers (if durable), applies and queues one event; returns its `seq`.
    fn emit(&mut self, now: Time, kind: EventKind) -> Option<u64> {
        let seq = if kind.is_ephemeral() {
            None
        } else {
            self.seq += 1;
            Some(self.seq)
        };
        let event = Event { seq, at: now, kind };
        self.apply(&event);
        self.events.push_back(event);
        seq
    }

    /// The one place where events change the state (also used to restore).
    fn apply(&mut self, event: &Event) {
        match &event.kind {
            EventKind::Created {
                customer, context, ..
            } => {
                self.customer = customer.clone();
                self.context = context.clone();
            }
            EventKind::Offered { agent, .. } => match &mut self.state {
                State::Offered { agents } => agents.push(agent.clone()),
                _ => {
                    self.state = State::Offered {
                        agents: vec![agent.clone()],
                    }
                }
            },
            EventKind::Withdrawn { agent } => {
                if let State::Offered { agents } = &mut self.state {
                    agents.retain(|a| a != agent);
                    if agents.is_empty() {
                        self.state = State::Queued;
                    }
                }
            }
            EventKind::PartyJoined {
                party: Party::Agent(agent),
                display_name,
            } => {
                self.agent = Some((agent.clone(), display_name.clone()));
                self.joined_at = Some(event.at);
                self.state = State::Active {
                    agent: agent.clone(),
                    display_name: display_name.clone(),
                };
                self.last_activity = event.at;
                self.warned = false;
            }
            EventKind::PartyLeft {
                party: Party::Agent(left),
                ..
            } => {
                // Only a re-queue takes an agent from an active chat (the teardown leaves it
                // closing).
                if matches!(&self.state, State::Active { agent, .. } if agent == left) {
                    self.state = State::Queued;
                    self.agent = None;
                }
            }
            EventKind::Message { msg_id, from, .. } => {
                if let Some(seq) = event.seq {
                    let record = MessageRecord { seq, receipt: None };
                    if *from == Party::Customer {
                        self.customer_messages.insert(msg_id.clone(), record);
                    } else {
                        self.staff_messages.insert(msg_id.clone(), record);
                    }
                }
                self.last_activity = event.at;
                self.warned = false;
            }
            EventKind::File { .. } => {
                self.last_activity = event.at;
                self.warned = false;
            }
            EventKind::Context { data } => merge_context(&mut self.context, data),
            EventKind::Location {
                latitude,
                longitude,
            } => merge_context(&mut self.context, &location_context(*latitude, *longitude)),
            EventKind::Receipt {
                ref_msg_id,
                receipt,
                by,
            } => {
                let theirs = if *by == Party::Customer {
                    &mut self.staff_messages
                } else {
                    &mut self.customer_messages
                };
                if let Some(record) = theirs.get_mut(ref_msg_id) {
                    record.receipt = record.receipt.max(Some(*receipt));
                }
            }
            EventKind::Leg {
                leg,
                kind,
                state,
                target,
                ..
            } => {
                let entry = self.legs.entry(*leg).or_insert(Leg {
                    kind: *kind,
                    state: *state,
                    target: None,
                    since: event.at,
                    up_since: None,
                });
                if entry.state != *state {
                    entry.since = event.at;
                }
                if *state == LegState::Up && entry.up_since.is_none() {
                    entry.up_since = Some(event.at);
                }
                entry.state = *state;
                if target.is_some() {
                    entry.target = target.clone();
                }
            }
            EventKind::TimeoutWarning { .. } => self.warned = true,
            EventKind::TeardownStarted { reason, .. } => {
                self.state = State::Closing {
                    reason: *reason,
                    stage: Stage::ReleasingCalls,
                    deadline: event.at + self.rules.teardown_timeout,
                };
            }
            EventKind::ChatClosed { reason } => self.state = State::Closed { reason: *reason },
            EventKind::Status { .. }
            | EventKind::PartyJoined { .. }
            | EventKind::PartyLeft { .. }
            | EventKind::Typing { .. }
            | EventKind::FormData { .. }
            | EventKind::Signaling { .. }
            | EventKind::Dtmf { .. }
            | EventKind::Recording { .. }
            | EventKind::Queue { .. }
            | EventKind::InactivityTimeout => {}
        }
    }
}

/// Shallow merge of a JSON object into the context (a non-object replaces it). Every view that
/// rebuilds the context from the events merges with this too.
pub(crate) fn merge_context(context: &mut Value, data: &Value) {
    match (context, data) {
        (Value::Object(into), Value::Object(from)) => {
            for (k, v) in from {
                into.insert(k.clone(), v.clone());
            }
        }
        (context, data) => *context = data.clone(),
    }
}

/// The context a location update adds.
pub(crate) fn location_context(latitude: f64, longitude: f64) -> Value {
    serde_json::json!({"location": {"latitude": latitude, "longitude": longitude}})
}

/// Who released a leg, as the transcript says it.
fn ended_by(by: &Party) -> Option<String> {
    Some(match by {
        Party::Customer => "ended by the customer".into(),
        Party::Agent(_) => "ended by the agent".into(),
        Party::System => "ended by the gateway".into(),
    })
}

fn done(seq: Option<u64>) -> Accepted {
    Accepted {
        seq,
        duplicate: false,
    }
}
