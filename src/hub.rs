//! The tokio side of interactions: one task owns each [`Interaction`]; everyone else holds a
//! [`Handle`] and sends it commands or subscribes to its events.
//!
//! The task's loop for every input is: feed the machine → drain its events → persist the
//! durable ones (group-committed by the store) → only then answer the caller and publish the
//! events. So nothing a client was told is accepted can be lost by a crash, and a subscriber
//! (long poll, WebSocket, later the agent desktop) that asks to resume after `seq = n` gets the
//! backlog and the live stream from the task itself, without gap or duplicate. Routing's offers
//! and withdrawals alone, which acknowledge nothing, are published while they are being stored
//! (`may_precede_its_write`): an agent sees an offer a commit sooner.
//!
//! Leg actions ([`Action::StartLeg`], [`Action::ReleaseLeg`]) go to the leg driver given to
//! [`Hub::open`] (SIP/WebRTC, later); it answers with [`Command::LegUp`]/[`Command::LegReleased`]
//! from [`Party::System`].
//!
//! **A slow or failing store stalls one interaction, never its callers.** A commit that does
//! not return within the hub's patience ([`STORE_PATIENCE`]) answers the commands it carried
//! with [`HubError::NotStored`]; the write goes on in the background (retried after a failure,
//! never dropped: the machine has moved on), and until it is stored the interaction refuses
//! new commands at once with [`HubError::StoreUnavailable`] and publishes nothing more. Once
//! the store takes the writes, their events are published, their actions handed out, and
//! commands are served again. Opening an interaction waits no longer than that
//! either: if its first commit is not confirmed in time, it is not opened.
//!
//! **Several nodes.** On a node of a cluster (`crate::cluster`) a [`Handle`] may also reach an
//! interaction that runs on another node ([`Hub::find`]); the hub stays the owner of its own
//! tasks and only tells the cluster ([`Peers`]) of the events it publishes. A task whose write
//! the store refuses because another node owns the interaction now stops serving it, and its
//! handles answer [`HubError::Moved`]; [`Hub::release_all`] stops them all for a handover.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde_json::Value;
use tokio::sync::{broadcast, mpsc, oneshot};
use tracing::Instrument;

use crate::bridge::{
    Accepted, Action, Command, Customer, Event, EventKind, HeldCall, Interaction, InteractionId,
    JoinSecret, Party, Phase, RuleError, Rules, Time,
};
use crate::chat::store::{InteractionRecord, Store, StoreError, Write};
use crate::config::Config;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::metrics::{Metrics, Part, registered};

/// The hub's metrics.
pub(crate) struct HubMetrics {
    /// Interactions not closed yet.
    open_interactions: Gauge,
    /// Chat messages accepted.
    messages: Counter,
}

impl Part for HubMetrics {
    fn register(r: &mut Registry) -> Self {
        HubMetrics {
            open_interactions: registered(
                r,
                "open_interactions",
                "Interactions not closed yet",
                Gauge::default(),
            ),
            messages: registered(r, "messages", "Chat messages accepted", Counter::default()),
        }
    }
}

/// Why the hub could not do something.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The interaction refused the command.
    #[error(transparent)]
    Rule(#[from] RuleError),
    /// No running interaction with this id.
    #[error("no such interaction")]
    NotFound,
    /// The interaction is over (its task has ended).
    #[error("the interaction is closed")]
    Closed,
    /// A configured limit on open interactions was reached.
    #[error("too many open interactions ({what})")]
    TooMany { what: &'static str },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The interaction's last writes are not stored yet, or a new interaction's first commit
    /// did not return in time (the store is slow or failing): the command was not carried out,
    /// the interaction not opened. Try again later.
    #[error("the store is not taking writes")]
    StoreUnavailable,
    /// The command was carried out, but the store did not confirm its events in time. They
    /// are stored (and published) once the store takes them; retry idempotently if in doubt.
    #[error("the store did not confirm the command in time")]
    NotStored,
    /// This node no longer owns the interaction (another node took it over, or this one is
    /// handing it over): nothing was done here. Look it up again and retry.
    #[error("the interaction moved to another node")]
    Moved,
    /// The node that owns the interaction does not answer (it died and no node has taken its
    /// interactions over yet, or it did not answer in time): retry idempotently.
    #[error("the interaction's node does not answer")]
    Unavailable,
}

/// How long a command waits for its events to be stored before it is answered
/// [`HubError::NotStored`]: long enough for a loaded disk, short enough that a stalled store
/// is reported rather than waited for.
pub(crate) const STORE_PATIENCE: Duration = Duration::from_secs(5);

/// Where the hub makes interactions' events durable: the [`Store`], or a test double that
/// stalls or fails it.
pub trait Journal: Send + Sync + 'static {
    /// Commits `writes` atomically; a write that returns an error was not stored.
    fn write(&self, writes: Vec<Write>) -> BoxFuture<'static, Result<(), StoreError>>;
}

impl Journal for Store {
    fn write(&self, writes: Vec<Write>) -> BoxFuture<'static, Result<(), StoreError>> {
        let store = self.clone();
        Box::pin(async move { Store::write(&store, writes).await })
    }
}

/// How much of an interaction's history its task keeps in memory for subscribers that resume:
/// at least [`LOG_MIN_EVENTS`] events, and beyond that no more than [`LOG_MAX_EVENTS`] or
/// [`LOG_MAX_BYTES`] (as stored). Older events are read from the store, which has them all.
pub const LOG_MAX_EVENTS: usize = 1024;
/// See [`LOG_MAX_EVENTS`].
const LOG_MAX_BYTES: usize = 512 * 1024;
/// See [`LOG_MAX_EVENTS`].
const LOG_MIN_EVENTS: usize = 16;

/// The events after some `seq`, then everything new.
pub struct Subscription {
    /// Durable events with `seq` greater than asked, in order.
    pub backlog: Vec<Arc<Event>>,
    /// Everything emitted from now on (durable and ephemeral), in order.
    pub live: broadcast::Receiver<Arc<Event>>,
    /// The phase at subscription time.
    pub phase: Phase,
}

/// A summary for listings.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    pub id: InteractionId,
    pub service: String,
    /// The customer's credential: never listed (a summary fetched from another node gets it
    /// from the store).
    #[serde(skip_serializing, default)]
    pub device: String,
    pub phase: Phase,
    pub last_seq: u64,
    pub agent: Option<String>,
    pub context: Value,
    pub customer: Customer,
    /// The legs not released yet: what a reconnecting agent's desk shows, and what an
    /// operator looks for when something seems left behind.
    pub legs: Vec<LiveLeg>,
}

/// One live leg in a [`Summary`].
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LiveLeg {
    pub leg: crate::bridge::LegId,
    pub kind: crate::bridge::LegKind,
    pub state: crate::bridge::LegState,
}

/// A served command waiting for its events to be stored: whom to answer, the outcome, and
/// whether it was a chat message (for the metrics).
type Answered = (
    oneshot::Sender<Result<Accepted, HubError>>,
    Result<Accepted, RuleError>,
    bool,
);

/// Commands served with one store write at most.
const MAX_BATCH: usize = 256;

enum Request {
    Command {
        by: Party,
        command: Command,
        reply: oneshot::Sender<Result<Accepted, HubError>>,
    },
    /// Answered with the kept backlog and the last seq no longer kept (0: all kept).
    Subscribe {
        after: u64,
        reply: oneshot::Sender<(Subscription, u64)>,
    },
    Summary {
        reply: oneshot::Sender<Summary>,
    },
    /// Stop serving: another node takes the interaction over (a node handing over).
    Release,
}

/// An interaction that runs on another node of the cluster, reached through it (see
/// `crate::cluster`): the same operations as a local task's, over the network.
pub(crate) trait Remote: Send + Sync + 'static {
    fn command(
        &self,
        id: &InteractionId,
        by: Party,
        command: Command,
    ) -> BoxFuture<'static, Result<Accepted, HubError>>;
    fn subscribe(
        &self,
        id: &InteractionId,
        after: u64,
    ) -> BoxFuture<'static, Result<Subscription, HubError>>;
    fn summary(&self, id: &InteractionId) -> BoxFuture<'static, Result<Summary, HubError>>;
}

/// How the hub of a cluster node reaches the others (none on a single node).
pub(crate) trait Peers: Send + Sync + 'static {
    /// An event this node's task published, after it was stored: for the other nodes'
    /// subscribers, in the same order.
    fn published(&self, id: &InteractionId, event: &Arc<Event>);
    /// A handle to an open interaction that does not run here, if it exists.
    fn find(&self, id: &InteractionId) -> BoxFuture<'static, Result<Option<Handle>, HubError>>;
}

/// Where a [`Handle`]'s requests go.
#[derive(Clone)]
enum Route {
    /// The task on this node.
    Local {
        tx: mpsc::Sender<Request>,
        store: Store,
        /// Set when the task stopped because another node owns the interaction now.
        moved: Arc<AtomicBool>,
    },
    /// The owner node, over the network.
    Remote(Arc<dyn Remote>),
}

/// How to reach one running interaction, here or on another node. Cheap to clone.
#[derive(Clone)]
pub struct Handle {
    pub id: InteractionId,
    pub service: String,
    pub device: String,
    route: Route,
}

impl Handle {
    /// A handle to an interaction that runs on another node, reached through `remote`.
    pub(crate) fn remote(
        id: InteractionId,
        service: String,
        device: String,
        remote: Arc<dyn Remote>,
    ) -> Handle {
        Handle {
            id,
            service,
            device,
            route: Route::Remote(remote),
        }
    }

    /// Whether the interaction runs on this node.
    pub(crate) fn is_local(&self) -> bool {
        matches!(self.route, Route::Local { .. })
    }

    /// Sends a request to the local task; a task that is gone answers [`HubError::Closed`],
    /// or [`HubError::Moved`] when it stopped for another node.
    async fn ask<T>(
        &self,
        request: impl FnOnce(oneshot::Sender<T>) -> Request,
    ) -> Result<T, HubError> {
        let Route::Local { tx, moved, .. } = &self.route else {
            return Err(HubError::NotFound);
        };
        let (reply, answer) = oneshot::channel();
        tx.send(request(reply)).await.map_err(|_| gone(moved))?;
        answer.await.map_err(|_| gone(moved))
    }

    /// Sends a command and waits until its events are persisted (or the store is found
    /// wanting: [`HubError::StoreUnavailable`], [`HubError::NotStored`]).
    pub async fn command(&self, by: Party, command: Command) -> Result<Accepted, HubError> {
        if let Route::Remote(remote) = &self.route {
            return remote.command(&self.id, by, command).await;
        }
        self.ask(|reply| Request::Command { by, command, reply })
            .await?
    }

    /// Queues a command without waiting for its outcome, where nothing needs the answer
    /// (routing's offers). Its events are published as the command's would be.
    pub(crate) async fn send(&self, by: Party, command: Command) -> Result<(), HubError> {
        match &self.route {
            Route::Local { tx, moved, .. } => {
                let (reply, _unheard) = oneshot::channel();
                tx.send(Request::Command { by, command, reply })
                    .await
                    .map_err(|_| gone(moved))
            }
            Route::Remote(remote) => {
                let sent = remote.command(&self.id, by, command);
                let id = self.id.clone();
                tokio::spawn(async move {
                    match sent.await {
                        // Heard and refused (an offer withdrawn once the chat was taken), or
                        // over meanwhile: as a command sent here would be, unremarked.
                        Ok(_) | Err(HubError::Rule(_) | HubError::Closed | HubError::NotFound) => {}
                        Err(e) => {
                            tracing::warn!(interaction = %id, "a command to its node failed: {e}")
                        }
                    }
                });
                Ok(())
            }
        }
    }

    /// The durable events after `after`, then the live stream. What the task no longer keeps
    /// in memory comes from the store (those events are immutable, so nothing is missed).
    pub async fn subscribe(&self, after: u64) -> Result<Subscription, HubError> {
        let store = match &self.route {
            Route::Remote(remote) => return remote.subscribe(&self.id, after).await,
            Route::Local { store, .. } => store.clone(),
        };
        let (mut subscription, forgotten) = self
            .ask(|reply| Request::Subscribe { after, reply })
            .await?;
        if after < forgotten {
            let older = store
                .events_between(&self.id, after, forgotten + 1, u32::MAX)
                .await?;
            let kept = std::mem::take(&mut subscription.backlog);
            subscription.backlog = older.into_iter().map(Arc::new).chain(kept).collect();
        }
        Ok(subscription)
    }

    pub async fn summary(&self) -> Result<Summary, HubError> {
        if let Route::Remote(remote) = &self.route {
            let mut summary = remote.summary(&self.id).await?;
            summary.device = self.device.clone();
            return Ok(summary);
        }
        self.ask(|reply| Request::Summary { reply }).await
    }

    /// Resolves when the local task has stopped (closed, or moved to another node); never for
    /// a remote handle.
    pub(crate) async fn ended(&self) {
        match &self.route {
            Route::Local { tx, .. } => tx.closed().await,
            Route::Remote(_) => std::future::pending().await,
        }
    }

    /// Whether the local task stopped because another node owns the interaction now.
    pub fn moved(&self) -> bool {
        matches!(&self.route, Route::Local { moved, .. } if moved.load(Ordering::Acquire))
    }
}

/// Why a local task no longer answers: it ended, or it stopped for another node.
fn gone(moved: &AtomicBool) -> HubError {
    if moved.load(Ordering::Acquire) {
        HubError::Moved
    } else {
        HubError::Closed
    }
}

/// Leg work for the SIP/WebRTC drivers.
type LegActions = mpsc::UnboundedSender<(InteractionId, Action)>;

struct Inner {
    config: Arc<Config>,
    store: Store,
    /// Where events are written (the store, or a test double).
    journal: Arc<dyn Journal>,
    /// See [`STORE_PATIENCE`].
    patience: Duration,
    metrics: Arc<Metrics>,
    /// The hub's own metrics, registered in `metrics`.
    counts: Arc<HubMetrics>,
    live: Mutex<Live>,
    /// Interactions being opened (their first commit under way), by device: counted against
    /// the limits with the live ones, so parallel creates cannot all pass the check. Locked
    /// after `live`, never before.
    opening: Mutex<HashMap<String, usize>>,
    legs: Option<LegActions>,
    join_secret: JoinSecret,
    /// Told of every interaction that goes live ([`Hub::subscribe_created`]). Locked after
    /// `live`, never before.
    created: Mutex<Vec<mpsc::UnboundedSender<Handle>>>,
    /// The other nodes of the cluster, once it is joined ([`Hub::join`]).
    peers: OnceLock<Arc<dyn Peers>>,
}

/// The interactions running on this node, and how many of them each device has: the
/// per-device limit is checked on every create, without a pass over every interaction.
#[derive(Default)]
struct Live {
    by_id: HashMap<InteractionId, Handle>,
    per_device: HashMap<String, usize>,
}

impl Live {
    fn insert(&mut self, handle: Handle) {
        *self.per_device.entry(handle.device.clone()).or_default() += 1;
        if let Some(old) = self.by_id.insert(handle.id.clone(), handle) {
            self.forget_device(&old.device);
        }
    }

    fn remove(&mut self, id: &InteractionId) {
        if let Some(old) = self.by_id.remove(id) {
            self.forget_device(&old.device);
        }
    }

    fn forget_device(&mut self, device: &str) {
        if let Some(count) = self.per_device.get_mut(device) {
            *count -= 1;
            if *count == 0 {
                self.per_device.remove(device);
            }
        }
    }

    fn of_device(&self, device: &str) -> usize {
        self.per_device.get(device).copied().unwrap_or(0)
    }

    fn len(&self) -> usize {
        self.by_id.len()
    }

    fn get(&self, id: &InteractionId) -> Option<&Handle> {
        self.by_id.get(id)
    }

    fn handles(&self) -> Vec<Handle> {
        self.by_id.values().cloned().collect()
    }
}

/// A place held for an interaction being opened ([`Hub::reserve`]); given back when it is
/// live, or when dropped.
struct Reservation {
    hub: Hub,
    device: String,
}

impl Reservation {
    fn release(self) {
        drop(self);
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut opening = self.hub.inner.opening.lock().expect("hub lock");
        if let Some(count) = opening.get_mut(&self.device) {
            *count -= 1;
            if *count == 0 {
                opening.remove(&self.device);
            }
        }
    }
}

/// All running interactions of this node.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

/// The machine rules of a service, from config (and the node's join-token key).
fn rules_for(config: &Config, service: &str, join_secret: &JoinSecret) -> Rules {
    let s = config.service(service);
    Rules {
        service: service.to_string(),
        video_allowed: s.is_some_and(|s| s.video_allowed),
        auto_dial: s.is_some_and(|s| s.auto_dial),
        auto_dial_delay: Duration::from_secs(s.map_or(0, |s| s.auto_dial_delay_s)),
        inactivity_timeout: Duration::from_secs(s.map_or(600, |s| s.inactivity_timeout_s)),
        max_message_bytes: config.chat.max_message_bytes,
        teardown_timeout: Duration::from_secs(config.chat.teardown_timeout_s),
        call_request_timeout: Duration::from_secs(config.chat.call_request_timeout_s),
        mask_dtmf: s.is_some_and(|s| s.sensitive_dtmf),
        join_secret: join_secret.clone(),
        dial_plan: s.map(|s| s.dial_plan.clone()).unwrap_or_default(),
    }
}

impl Hub {
    /// Starts the hub and brings back every interaction that was open, with its history.
    pub async fn open(
        config: Arc<Config>,
        store: Store,
        metrics: Arc<Metrics>,
        legs: Option<LegActions>,
    ) -> Result<Hub, HubError> {
        let journal = Arc::new(store.clone());
        Hub::open_with_journal(config, store, journal, STORE_PATIENCE, metrics, legs).await
    }

    /// [`Hub::open`], with events written to `journal` and commands answered
    /// [`HubError::NotStored`] after `patience`.
    pub async fn open_with_journal(
        config: Arc<Config>,
        store: Store,
        journal: Arc<dyn Journal>,
        patience: Duration,
        metrics: Arc<Metrics>,
        legs: Option<LegActions>,
    ) -> Result<Hub, HubError> {
        let join_secret = JoinSecret::from_config(config.chat.join_token_secret.as_deref());
        let hub = Hub {
            inner: Arc::new(Inner {
                join_secret,
                config,
                store,
                journal,
                patience,
                counts: metrics.part::<HubMetrics>(),
                metrics,
                live: Mutex::new(Live::default()),
                opening: Mutex::new(HashMap::new()),
                legs,
                created: Mutex::new(Vec::new()),
                peers: OnceLock::new(),
            }),
        };
        if hub.inner.config.cluster.is_none() {
            let open = hub.inner.store.open_interactions().await?;
            hub.restore(open).await?;
        }
        Ok(hub)
    }

    /// Makes this hub one node of a cluster: events it publishes go to `peers` too, and
    /// interactions that run elsewhere are found through them. Once, before it serves.
    pub(crate) fn join(&self, peers: Arc<dyn Peers>) {
        if self.inner.peers.set(peers).is_err() {
            tracing::warn!("the hub joined a cluster twice; the first stays");
        }
    }

    /// Brings back interactions from their history, as they were: at start, and on a cluster
    /// node when it takes over another node's. Those already running here are left alone.
    pub(crate) async fn restore(&self, records: Vec<InteractionRecord>) -> Result<usize, HubError> {
        let hub = self;
        let mut restored = 0;
        for record in records {
            if hub.get(&record.id).is_some() {
                continue;
            }
            let events = hub.inner.store.events(&record.id, 0).await?;
            let rules = rules_for(&hub.inner.config, &record.service, &hub.inner.join_secret);
            let now = Time::now();
            let Some(mut it) = Interaction::restore(now, record.id.clone(), rules, events.clone())
            else {
                tracing::error!(interaction = %record.id, "cannot restore: no created event");
                continue;
            };
            let log = events.into_iter().map(Arc::new).collect();
            let mut task = Task::new(hub, &it, log);
            task.flush(&mut it).await;
            tracing::info!(interaction = %record.id, seq = it.last_seq(), "restored");
            hub.spawn(task, it, record.device, None);
            restored += 1;
        }
        Ok(restored)
    }

    /// Stops serving every running interaction without ending it, for another node to take
    /// over (a cluster node that stops), and waits until they are all stopped or `within` has
    /// passed. What was acknowledged is stored; their handles answer [`HubError::Moved`].
    pub(crate) async fn release_all(&self, within: Duration) -> usize {
        let handles = self.handles();
        for handle in &handles {
            if let Route::Local { tx, .. } = &handle.route {
                let _ = tx.send(Request::Release).await;
            }
        }
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = self.inner.live.lock().expect("hub lock").len();
            if left == 0 || tokio::time::Instant::now() >= deadline {
                return left;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Ends every running interaction with its ordered teardown (calls released, then video,
    /// then the chat, then the transcript), and waits until they are all closed or `within` has
    /// passed. Returns how many were still running at the deadline.
    pub(crate) async fn close_all(&self, within: Duration) -> usize {
        let handles: Vec<Handle> = self.inner.live.lock().expect("hub lock").handles();
        let deadline = tokio::time::Instant::now() + within;
        let closing = handles.into_iter().map(|handle| async move {
            // A refusal means it is closing already.
            let _ = handle.command(Party::System, Command::Close).await;
        });
        let _ = tokio::time::timeout_at(deadline, futures_util::future::join_all(closing)).await;
        loop {
            let left = self.inner.live.lock().expect("hub lock").len();
            if left == 0 || tokio::time::Instant::now() >= deadline {
                return left;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The token with which a call from any number joins this interaction.
    pub(crate) fn join_token(&self, id: &InteractionId) -> String {
        self.inner.join_secret.token(id)
    }

    /// A ticket with which `device` of `app_id` opens the WebSocket of chat `id` until
    /// `expires`, where it cannot send `Authorization` (a browser).
    pub(crate) fn socket_ticket(
        &self,
        id: &InteractionId,
        app_id: &str,
        device: &str,
        expires: Time,
    ) -> String {
        self.inner.join_secret.ticket(id, app_id, device, expires)
    }

    /// The app a socket ticket for chat `id` of `device` was issued to, if it is good at `now`.
    pub(crate) fn check_socket_ticket(
        &self,
        id: &InteractionId,
        device: &str,
        ticket: &str,
        now: Time,
    ) -> Option<String> {
        self.inner.join_secret.check_ticket(id, device, ticket, now)
    }

    /// Opens a new interaction, persisted before this returns. A store that does not confirm
    /// within the hub's patience opens nothing: [`HubError::StoreUnavailable`].
    pub async fn create(
        &self,
        service: &str,
        customer: Customer,
        context: Value,
    ) -> Result<(InteractionId, Phase), HubError> {
        self.open_new(service, customer, |now, id, rules, customer| {
            Interaction::new(now, id, rules, customer, context)
        })
        .await
    }

    /// Opens a new interaction for a phone call from `caller` to a service number, with the
    /// call (`held`) waiting for the agent who accepts ([`Interaction::new_call`]).
    pub(crate) async fn create_for_call(
        &self,
        service: &str,
        customer: Customer,
        context: Value,
        caller: String,
        held: HeldCall,
    ) -> Result<(InteractionId, Phase), HubError> {
        self.open_new(service, customer, |now, id, rules, customer| {
            Interaction::new_call(now, id, rules, customer, context, caller, held)
        })
        .await
    }

    async fn open_new(
        &self,
        service: &str,
        customer: Customer,
        new: impl FnOnce(Time, InteractionId, Rules, Customer) -> Interaction,
    ) -> Result<(InteractionId, Phase), HubError> {
        let reservation = self.reserve(&customer.device)?;
        let id = InteractionId::fresh();
        let now = Time::now();
        let rules = rules_for(&self.inner.config, service, &self.inner.join_secret);
        let device = customer.device.clone();
        let mut it = new(now, id.clone(), rules, customer);
        let mut task = Task::new(self, &it, Vec::new());
        // The row is written as the first events leave it, in the same commit as them: a new
        // chat costs one commit, and a failed one leaves nothing behind to clean up.
        task.stored_phase = Some(it.phase());
        let (emitted, mut writes) = task.stage(&mut it);
        let record = InteractionRecord {
            id: id.clone(),
            service: service.to_string(),
            device: device.clone(),
            phase: it.phase(),
            created_at: now.millis(),
            closed_at: None,
            last_seq: it.last_seq(),
        };
        writes.insert(0, Write::NewInteraction(record));
        let mut writing = self.inner.journal.write(writes);
        let patience = self.inner.patience;
        match tokio::time::timeout(patience, &mut writing).await {
            Ok(written) => written?,
            Err(_) => {
                tracing::warn!(?patience, interaction = %id, "the store is slow: not opened");
                self.abandon(writing, id, it.last_seq());
                return Err(HubError::StoreUnavailable);
            }
        }
        task.publish(&mut it, emitted);
        let phase = it.phase();
        self.spawn(task, it, device, Some(reservation));
        Ok((id, phase))
    }

    /// Gives up a new interaction whose first commit did not return within the hub's
    /// patience: its creator was told it failed, so if the commit lands later its row is
    /// closed at once, and no restart brings back a chat that nobody knows of.
    fn abandon(
        &self,
        writing: BoxFuture<'static, Result<(), StoreError>>,
        id: InteractionId,
        last_seq: u64,
    ) {
        let journal = self.inner.journal.clone();
        tokio::spawn(async move {
            if writing.await.is_err() {
                return; // Not stored: nothing to undo.
            }
            let closed = Write::Progress {
                id: id.clone(),
                phase: Phase::Closed,
                last_seq,
                closed_at: Some(Time::now().millis()),
            };
            match journal.write(vec![closed]).await {
                Ok(()) => tracing::info!(interaction = %id, "closed the chat that was not opened"),
                Err(e) => {
                    tracing::error!(interaction = %id, "cannot close the chat that was not opened: {e}")
                }
            }
        });
    }

    /// Holds a place for one more interaction of `device` within the node's and the device's
    /// limits, until it is live (or dropped on failure).
    fn reserve(&self, device: &str) -> Result<Reservation, HubError> {
        let live = self.inner.live.lock().expect("hub lock");
        let mut opening = self.inner.opening.lock().expect("hub lock");
        let chat = &self.inner.config.chat;
        let all_opening: usize = opening.values().sum();
        if live.len() + all_opening >= chat.max_open_interactions {
            return Err(HubError::TooMany { what: "node" });
        }
        let mine = live.of_device(device) + opening.get(device).copied().unwrap_or(0);
        if mine >= chat.max_chats_per_device {
            return Err(HubError::TooMany { what: "device" });
        }
        *opening.entry(device.to_string()).or_default() += 1;
        Ok(Reservation {
            hub: self.clone(),
            device: device.to_string(),
        })
    }

    fn spawn(&self, task: Task, it: Interaction, device: String, reservation: Option<Reservation>) {
        let (tx, rx) = mpsc::channel(256);
        let handle = Handle {
            id: it.id().clone(),
            service: it.rules().service.clone(),
            device,
            route: Route::Local {
                tx,
                store: self.inner.store.clone(),
                moved: task.moved.clone(),
            },
        };
        {
            let mut live = self.inner.live.lock().expect("hub lock");
            let mut created = self.inner.created.lock().expect("hub lock");
            created.retain(|subscriber| subscriber.send(handle.clone()).is_ok());
            live.insert(handle);
            // Live now: the place it held is given back in the same breath.
            if let Some(reservation) = reservation {
                reservation.release();
            }
        }
        self.inner.counts.open_interactions.inc();
        let span = tracing::info_span!("interaction", id = %handle_id(&it));
        tokio::spawn(task.run(it, rx).instrument(span));
    }

    /// Every running interaction now, then each one that goes live from now on, exactly once
    /// between the two: how a part that looks after all interactions (routing) learns of new
    /// ones, whoever opens them (the customer API, SMS, a call to a service number).
    pub fn subscribe_created(&self) -> (Vec<Handle>, mpsc::UnboundedReceiver<Handle>) {
        let live = self.inner.live.lock().expect("hub lock");
        let (subscriber, created) = mpsc::unbounded_channel();
        self.inner
            .created
            .lock()
            .expect("hub lock")
            .push(subscriber);
        (live.handles(), created)
    }

    /// The interaction with this id running on this node.
    pub fn get(&self, id: &InteractionId) -> Option<Handle> {
        self.inner.live.lock().expect("hub lock").get(id).cloned()
    }

    /// The open interaction with this id, here or (on a cluster node) on the node that owns
    /// it: what every entry point that names an interaction uses.
    pub(crate) async fn find(&self, id: &InteractionId) -> Result<Option<Handle>, HubError> {
        if let Some(handle) = self.get(id) {
            return Ok(Some(handle));
        }
        match self.inner.peers.get() {
            Some(peers) => peers.find(id).await,
            None => Ok(None),
        }
    }

    /// Sends a command to an open interaction, wherever it runs.
    pub async fn command(
        &self,
        id: &InteractionId,
        by: Party,
        command: Command,
    ) -> Result<Accepted, HubError> {
        self.find(id)
            .await?
            .ok_or(HubError::NotFound)?
            .command(by, command)
            .await
    }

    /// Every running interaction.
    pub fn handles(&self) -> Vec<Handle> {
        self.inner.live.lock().expect("hub lock").handles()
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }
    pub(crate) fn config(&self) -> &Arc<Config> {
        &self.inner.config
    }
    pub(crate) fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }
}

fn handle_id(it: &Interaction) -> InteractionId {
    it.id().clone()
}

/// The state of one interaction's task besides the machine itself.
struct Task {
    hub: Hub,
    id: InteractionId,
    /// The latest durable events, for subscribers that resume (see [`LOG_MAX_EVENTS`]).
    log: VecDeque<(Arc<Event>, usize)>,
    /// The stored size of the events in `log`.
    log_bytes: usize,
    /// The last seq dropped from `log` (0: none).
    forgotten: u64,
    events: broadcast::Sender<Arc<Event>>,
    /// The driver's clock never goes backwards, even if the system clock does.
    clock: Time,
    finished: bool,
    /// The phase last written to the interaction's row (the row changes only with it).
    stored_phase: Option<Phase>,
    /// Writes the store has not confirmed yet, with what waits for them.
    unstored: Option<Unstored>,
    /// Set when the task stops because another node owns the interaction now (shared with
    /// its handles, which then answer [`HubError::Moved`]).
    moved: Arc<AtomicBool>,
}

/// Writes the store did not confirm within the hub's patience, and what waits for them.
struct Unstored {
    /// The write under way; `None` while waiting to retry a failed one.
    writing: Option<BoxFuture<'static, Result<(), StoreError>>>,
    /// The writes of `writing`, to retry them if it fails.
    sent: Vec<Write>,
    /// Writes staged after `writing` was sent.
    later: Vec<Write>,
    /// Events held back until every write is stored.
    emitted: Vec<Arc<Event>>,
    /// When to retry a failed write.
    retry_at: tokio::time::Instant,
    backoff: Duration,
}

impl Task {
    fn new(hub: &Hub, it: &Interaction, log: Vec<Arc<Event>>) -> Task {
        let mut task = Task {
            hub: hub.clone(),
            id: it.id().clone(),
            log: VecDeque::new(),
            log_bytes: 0,
            forgotten: 0,
            // Small: tokio preallocates every slot, and a subscriber that falls behind
            // resubscribes from its last seq (the backlog comes from `log`).
            events: broadcast::channel(64).0,
            clock: Time(0),
            finished: false,
            stored_phase: None,
            unstored: None,
            moved: Arc::new(AtomicBool::new(false)),
        };
        for event in log {
            task.remember(event);
        }
        task
    }

    /// Keeps a durable event for subscribers, forgetting the oldest beyond the bounds.
    fn remember(&mut self, event: Arc<Event>) {
        let size = serde_json::to_vec(&*event).map_or(0, |b| b.len());
        self.log.push_back((event, size));
        self.log_bytes += size;
        while self.log.len() > LOG_MIN_EVENTS
            && (self.log.len() > LOG_MAX_EVENTS || self.log_bytes > LOG_MAX_BYTES)
        {
            let Some((old, size)) = self.log.pop_front() else {
                break;
            };
            self.log_bytes -= size;
            self.forgotten = old.seq.unwrap_or(self.forgotten);
        }
    }

    fn now(&mut self) -> Time {
        self.clock = self.clock.max(Time::now());
        self.clock
    }

    async fn run(mut self, mut it: Interaction, mut rx: mpsc::Receiver<Request>) {
        while !self.finished {
            let sleep = match it.poll_timeout() {
                Some(at) => {
                    let wait = at.since(Time::now());
                    tokio::time::Instant::now() + wait
                }
                None => tokio::time::Instant::now() + Duration::from_secs(86_400),
            };
            // A failed write waits to be retried; one under way is waited for.
            let retry_at = match &self.unstored {
                Some(u) if u.writing.is_none() => Some(u.retry_at),
                _ => None,
            };
            let writing = self.unstored.as_mut().and_then(|u| u.writing.as_mut());
            tokio::select! {
                request = rx.recv() => {
                    let Some(request) = request else { break };
                    self.serve_batch(&mut it, request, &mut rx).await;
                }
                _ = tokio::time::sleep_until(sleep) => {
                    let now = self.now();
                    it.handle_timeout(now);
                    self.flush(&mut it).await;
                }
                written = async { writing.expect("guarded").await }, if writing.is_some() => {
                    self.written(&mut it, written);
                }
                _ = tokio::time::sleep_until(retry_at.unwrap_or(sleep)), if retry_at.is_some() => {
                    self.retry();
                }
            }
        }
        self.hub
            .inner
            .live
            .lock()
            .expect("hub lock")
            .remove(&self.id);
        self.hub.inner.counts.open_interactions.dec();
    }

    /// Serves `first` and the commands already queued behind it with one store write: their
    /// events are persisted together, then each command is acknowledged. A burst (a chat
    /// offered to many agents) thus costs one commit, not one per command.
    async fn serve_batch(
        &mut self,
        it: &mut Interaction,
        first: Request,
        rx: &mut mpsc::Receiver<Request>,
    ) {
        let mut answered = Vec::new();
        let mut next = Some(first);
        while let Some(request) = next.take() {
            let Request::Command { by, command, reply } = request else {
                // A read sees everything acknowledged before it.
                self.acknowledge(it, &mut answered).await;
                return self.serve(it, request).await;
            };
            if self.moved.load(Ordering::Acquire) {
                let _ = reply.send(Err(HubError::Moved));
                if answered.len() < MAX_BATCH {
                    next = rx.try_recv().ok();
                }
                continue;
            }
            if self.unstored.is_some() {
                // The machine does not move on while what it did is not stored.
                let _ = reply.send(Err(HubError::StoreUnavailable));
                if answered.len() < MAX_BATCH {
                    next = rx.try_recv().ok();
                }
                continue;
            }
            answered.push(self.handle(it, by, command, reply));
            if answered.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        self.acknowledge(it, &mut answered).await;
    }

    fn handle(
        &mut self,
        it: &mut Interaction,
        by: Party,
        command: Command,
        reply: oneshot::Sender<Result<Accepted, HubError>>,
    ) -> Answered {
        let now = self.now();
        let is_message = matches!(command, Command::SendMessage { .. });
        (reply, it.handle_command(now, &by, command), is_message)
    }

    /// Persists the events of the commands served, then answers each.
    async fn acknowledge(&mut self, it: &mut Interaction, answered: &mut Vec<Answered>) {
        if answered.is_empty() {
            return;
        }
        let stored = self.flush(it).await;
        for (reply, result, is_message) in answered.drain(..) {
            if is_message && matches!(result, Ok(a) if !a.duplicate) {
                self.hub.inner.counts.messages.inc();
            }
            let result = match result {
                Ok(_) if self.moved.load(Ordering::Acquire) => Err(HubError::Moved),
                Ok(_) if !stored => Err(HubError::NotStored),
                other => other.map_err(HubError::Rule),
            };
            let _ = reply.send(result);
        }
    }

    async fn serve(&mut self, it: &mut Interaction, request: Request) {
        match request {
            Request::Release => {
                tracing::info!("handed over to another node");
                self.stop_serving();
            }
            Request::Command { by, command, reply } => {
                if self.unstored.is_some() {
                    let _ = reply.send(Err(HubError::StoreUnavailable));
                    return;
                }
                let mut answered = vec![self.handle(it, by, command, reply)];
                self.acknowledge(it, &mut answered).await;
            }
            Request::Subscribe { after, reply } => {
                let start = self
                    .log
                    .partition_point(|(e, _)| e.seq.unwrap_or(0) <= after);
                let subscription = Subscription {
                    backlog: self.log.range(start..).map(|(e, _)| e.clone()).collect(),
                    live: self.events.subscribe(),
                    phase: it.phase(),
                };
                let _ = reply.send((subscription, self.forgotten));
            }
            Request::Summary { reply } => {
                let _ = reply.send(Summary {
                    id: self.id.clone(),
                    service: it.rules().service.clone(),
                    device: it.customer().device.clone(),
                    phase: it.phase(),
                    last_seq: it.last_seq(),
                    agent: it.agent().map(|a| a.0.clone()),
                    context: it.context().clone(),
                    customer: it.customer().clone(),
                    legs: it
                        .legs()
                        .iter()
                        .filter(|(_, l)| l.state.is_live())
                        .map(|(leg, l)| LiveLeg {
                            leg: *leg,
                            kind: l.kind,
                            state: l.state,
                        })
                        .collect(),
                });
            }
        }
    }

    /// Persists what the machine emitted, then publishes it (routing's news while it is being
    /// persisted) and hands out its actions.
    /// Returns whether it is stored: if the store does not confirm within the hub's patience,
    /// the write goes on in the background and what it carries waits for it.
    async fn flush(&mut self, it: &mut Interaction) -> bool {
        let (mut emitted, writes) = self.stage(it);
        if let Some(unstored) = &mut self.unstored {
            // Behind writes not yet stored: stored (and published) after them.
            unstored.later.extend(writes);
            unstored.emitted.extend(emitted);
            return false;
        }
        if writes.is_empty() {
            self.publish(it, emitted);
            return true;
        }
        // Nobody is told by an offer that something they asked for was done: agents see it
        // while it is being stored, a commit sooner.
        if emitted.iter().all(|e| may_precede_its_write(&e.kind)) {
            self.announce(std::mem::take(&mut emitted));
        }
        let mut writing = self.hub.inner.journal.write(writes.clone());
        let patience = self.hub.inner.patience;
        match tokio::time::timeout(patience, &mut writing).await {
            Ok(Ok(())) => {
                self.publish(it, emitted);
                return true;
            }
            Ok(Err(StoreError::NotOwner)) => self.stop_moved(),
            Ok(Err(e)) => {
                tracing::error!("cannot persist events, retrying: {e}");
                self.unstored = Some(Unstored::failed(writes, emitted));
            }
            Err(_) => {
                tracing::warn!(?patience, "the store is slow: events wait for it");
                self.unstored = Some(Unstored {
                    writing: Some(writing),
                    sent: writes,
                    later: Vec::new(),
                    emitted,
                    retry_at: tokio::time::Instant::now(),
                    backoff: RETRY_FIRST,
                });
            }
        }
        false
    }

    /// Stops serving because another node owns the interaction now, which this node learns
    /// (a refused write) rather than decided: said once, as a warning.
    fn stop_moved(&mut self) {
        if !self.moved.load(Ordering::Acquire) {
            tracing::warn!("another node owns the interaction now: stopped serving it");
        }
        self.stop_serving();
    }

    /// Stops serving: what the machine did since its last stored write is dropped (nobody was
    /// told of it), and the handles answer [`HubError::Moved`] from now on.
    fn stop_serving(&mut self) {
        self.moved.store(true, Ordering::Release);
        self.unstored = None;
        self.finished = true;
    }

    /// The background write finished: once everything is stored, what waited is published.
    fn written(&mut self, it: &mut Interaction, result: Result<(), StoreError>) {
        if matches!(result, Err(StoreError::NotOwner)) {
            return self.stop_moved();
        }
        let Some(mut unstored) = self.unstored.take() else {
            return;
        };
        unstored.writing = None;
        match result {
            Ok(()) if unstored.later.is_empty() => {
                tracing::info!("the store took the waiting events");
                self.publish(it, unstored.emitted);
                return;
            }
            Ok(()) => {
                unstored.sent = std::mem::take(&mut unstored.later);
                unstored.writing = Some(self.hub.inner.journal.write(unstored.sent.clone()));
            }
            Err(e) => {
                tracing::error!("cannot persist events, retrying: {e}");
                unstored.retry_at = tokio::time::Instant::now() + unstored.backoff;
                unstored.backoff = (unstored.backoff * 2).min(RETRY_MAX);
            }
        }
        self.unstored = Some(unstored);
    }

    /// Sends the failed writes again, with those staged since.
    fn retry(&mut self) {
        let Some(unstored) = &mut self.unstored else {
            return;
        };
        let later = std::mem::take(&mut unstored.later);
        unstored.sent.extend(later);
        unstored.writing = Some(self.hub.inner.journal.write(unstored.sent.clone()));
    }

    /// Drains what the machine emitted and the writes that make it durable.
    fn stage(&mut self, it: &mut Interaction) -> (Vec<Arc<Event>>, Vec<Write>) {
        let mut emitted = Vec::new();
        while let Some(event) = it.poll_event() {
            emitted.push(Arc::new(event));
        }
        let mut writes: Vec<Write> = Vec::new();
        for event in emitted.iter().filter(|e| e.seq.is_some()) {
            if let EventKind::File { file_id, .. } = &event.kind {
                writes.push(Write::Link {
                    file_id: file_id.clone(),
                    id: self.id.clone(),
                });
            }
            writes.push(Write::Event(self.id.clone(), (**event).clone()));
        }
        // The row is updated on phase changes only: a message is then one INSERT.
        if !writes.is_empty() && self.stored_phase != Some(it.phase()) {
            self.stored_phase = Some(it.phase());
            let closed = it.phase() == Phase::Closed;
            writes.push(Write::Progress {
                id: self.id.clone(),
                phase: it.phase(),
                last_seq: it.last_seq(),
                closed_at: closed.then(|| self.clock.millis()),
            });
        }
        (emitted, writes)
    }

    /// Publishes stored events and hands out the machine's actions.
    fn publish(&mut self, it: &mut Interaction, emitted: Vec<Arc<Event>>) {
        self.announce(emitted);
        while let Some(action) = it.poll_action() {
            match action {
                Action::PersistTranscript => self.finished = true,
                other => {
                    if let Some(legs) = &self.hub.inner.legs {
                        let _ = legs.send((self.id.clone(), other));
                    } else {
                        tracing::debug!(?other, "no leg driver");
                    }
                }
            }
        }
    }

    /// Sends events to the subscribers here and on the other nodes, and keeps them for those
    /// that resume.
    fn announce(&mut self, events: Vec<Arc<Event>>) {
        let peers = self.hub.inner.peers.get().cloned();
        for event in events {
            if event.seq.is_some() {
                self.remember(event.clone());
            }
            if let Some(peers) = &peers {
                peers.published(&self.id, &event);
            }
            let _ = self.events.send(event);
        }
    }
}

/// Whether an event may be published while the write that stores it is under way: routing's
/// offers, their withdrawals and the phases they move the chat between. They acknowledge
/// nothing (an accept, and everything said in the chat, stay stored before anyone hears of
/// them), and the write goes on until it is stored. Only a takeover by another node meanwhile
/// can lose one: the chat is then still queued there, and a queued chat may be accepted.
fn may_precede_its_write(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Offered { .. }
            | EventKind::Withdrawn { .. }
            | EventKind::Status {
                phase: Phase::Offered | Phase::Queued
            }
    )
}

/// The first wait before a failed write is retried; it doubles up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MAX: Duration = Duration::from_secs(5);

impl Unstored {
    /// Writes that failed, to be retried after the first wait.
    fn failed(writes: Vec<Write>, emitted: Vec<Arc<Event>>) -> Unstored {
        Unstored {
            writing: None,
            sent: writes,
            later: Vec::new(),
            emitted,
            retry_at: tokio::time::Instant::now() + RETRY_FIRST,
            backoff: RETRY_FIRST * 2,
        }
    }
}
