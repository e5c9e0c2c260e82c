//! Routing on a cluster: one router for every node, so that "first accept wins, once" and
//! round-robin's turn hold cluster-wide.
//!
//! **Who routes** is a role held by lease in PostgreSQL (`leaders`, role `routing`): every
//! node claims it every third of `cluster.lease_s`; the holder keeps it by renewing, and when
//! its lease runs out (it died, or lost the store) the next claim takes it. The leader runs
//! the [`Routing`] router and watches every open interaction, wherever it runs; it answers
//! the desks' [`Ask`]s from every node (`tandem.routing.ask`), and what it tells agents goes to
//! every node (`tandem.agent.heard`), where the agent's tabs hear it. SMS offers go out from
//! the leader only: once per offer, not once per node.
//!
//! **A new leader** starts with nobody at a desk: it says so (`tandem.routing.leader`), and
//! every node tells it again how many tabs of each agent it holds, and their presence
//! ([`Routing::rejoin`]); chats still waiting are offered anew. Nodes whose lease ran out
//! count no more ([`Routing::nodes_alive`]): their agents reconnect elsewhere, and a node that
//! comes back is asked again, with the others.

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::wire::{self, RoutingAnswer};
use super::{lease, now_ms};
use crate::bridge::{InteractionId, Phase};
use crate::chat::store::Store;
use crate::config::ClusterConfig;
use crate::hub::Hub;
use crate::routing::driver::{Answer, Ask, Fabric, Heard, Routing};
use crate::routing::router::RoutingError;

/// The role routing's leader holds.
pub const ROUTING: &str = "routing";

/// How long a desk's ask waits for the leader: an accept waits for the interaction's store.
const ANSWER_WITHIN: Duration = Duration::from_secs(crate::hub::STORE_PATIENCE.as_secs() + 3);

/// The other nodes, as routing sees them: NATS.
pub(super) struct NatsFabric {
    node: String,
    nats: async_nats::Client,
    /// What desks hear, published in the order routing told it.
    heard: mpsc::UnboundedSender<Heard>,
}

impl NatsFabric {
    /// The fabric, and the task that publishes what desks hear.
    pub(super) fn new(
        node: String,
        nats: async_nats::Client,
    ) -> (NatsFabric, tokio::task::JoinHandle<()>) {
        let (heard, mut outbox) = mpsc::unbounded_channel::<Heard>();
        let publisher = nats.clone();
        let task = tokio::spawn(async move {
            while let Some(heard) = outbox.recv().await {
                let Ok(body) = serde_json::to_vec(&heard) else {
                    continue;
                };
                if let Err(e) = publisher.publish(wire::HEARD, Bytes::from(body)).await {
                    tracing::warn!("cannot tell the desks of the cluster: {e}");
                }
            }
        });
        (NatsFabric { node, nats, heard }, task)
    }
}

impl Fabric for NatsFabric {
    fn node(&self) -> &str {
        &self.node
    }

    fn ask(&self, ask: Ask) -> BoxFuture<'static, Answer> {
        let nats = self.nats.clone();
        Box::pin(async move {
            let Ok(body) = serde_json::to_vec(&ask) else {
                return Answer::Refused(RoutingError::Unavailable);
            };
            let request = async_nats::Request::new()
                .payload(Bytes::from(body))
                .timeout(Some(ANSWER_WITHIN));
            match nats.send_request(wire::ROUTING_ASK, request).await {
                Ok(message) => match serde_json::from_slice::<RoutingAnswer>(&message.payload) {
                    Ok(answer) => answer.into(),
                    Err(e) => {
                        tracing::warn!("an unreadable answer from routing's leader: {e}");
                        Answer::Refused(RoutingError::Unavailable)
                    }
                },
                Err(e) => {
                    // Nobody leads right now (a leader died, the next is not in yet).
                    tracing::debug!("routing's leader does not answer: {e}");
                    Answer::Refused(RoutingError::Unavailable)
                }
            }
        })
    }

    fn tell(&self, heard: Heard) {
        let _ = self.heard.send(heard);
    }
}

/// Delivers to this node's desks what routing tells agents, from whichever node leads.
pub(super) async fn hear(nats: async_nats::Client, routing: Routing) {
    let mut heard = match nats.subscribe(wire::HEARD).await {
        Ok(heard) => heard,
        Err(e) => {
            tracing::error!("desks here cannot hear routing: {e}");
            return;
        }
    };
    while let Some(message) = heard.next().await {
        match serde_json::from_slice::<Heard>(&message.payload) {
            Ok(heard) => routing.hear(heard),
            Err(e) => tracing::warn!("an unreadable word for the desks: {e}"),
        }
    }
}

/// Everything the leadership loop works with.
pub(super) struct Seat {
    pub(super) config: ClusterConfig,
    pub(super) nats: async_nats::Client,
    pub(super) store: Store,
    pub(super) hub: Hub,
    pub(super) routing: Routing,
}

/// Claims routing's lead every third of the lease: leads while it holds it, follows
/// otherwise, and tells each new leader who is at a desk here. Gives the lead up on `stop`.
pub(super) async fn claim(seat: Seat, stop: CancellationToken) {
    let me = seat.config.node.clone();
    let lease = Duration::from_secs(seat.config.lease_s);
    let mut tick = tokio::time::interval(lease::renew_every(lease));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut announced = match seat.nats.subscribe(wire::ROUTING_LEADER).await {
        Ok(announced) => Some(announced),
        Err(e) => {
            tracing::error!("cannot hear routing's new leaders: {e}");
            None
        }
    };
    let mut leader: Option<String> = None;
    let mut held_until = 0;
    // The nodes alive at the last look, while leading.
    let mut alive: HashSet<String> = HashSet::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => {
                seat.routing.step_down();
                return;
            }
            _ = tick.tick() => {}
            Some(message) = next(&mut announced) => {
                // A leader that just started: it knows nobody yet.
                if message.payload.as_ref() != me.as_bytes() {
                    tokio::spawn(rejoin(seat.routing.clone()));
                }
                continue;
            }
        }
        let now = now_ms();
        let claimed = seat
            .store
            .claim_role(ROUTING, &me, now + lease.as_millis() as u64, now)
            .await;
        let holder = match claimed {
            Ok((holder, until)) => {
                if holder == me {
                    held_until = until;
                }
                holder
            }
            Err(e) => {
                tracing::warn!("cannot claim routing's lead: {e}");
                if seat.routing.leads() && now >= held_until {
                    tracing::error!("routing's lead is lost with the store; stepping down");
                    seat.routing.step_down();
                }
                continue;
            }
        };
        let leads = seat.routing.leads();
        if holder == me && !leads {
            tracing::info!(node = %me, "leading routing");
            start_term(&seat).await;
        } else if holder != me && leads {
            tracing::warn!(node = %me, leader = %holder, "routing is led elsewhere now");
            seat.routing.step_down();
        }
        if leader.as_deref() != Some(holder.as_str()) {
            if holder != me {
                tokio::spawn(rejoin(seat.routing.clone()));
            }
            leader = Some(holder);
        }
        if !seat.routing.leads() {
            alive.clear();
        } else if let Ok(nodes) = seat.store.nodes().await {
            let now_alive: HashSet<String> = nodes
                .into_iter()
                .filter(|n| n.lease_until > now)
                .map(|n| n.node)
                .collect();
            // A node back from the dead (its desks were forgotten) or new: ask again.
            if !alive.is_empty() && !now_alive.is_subset(&alive) {
                announce(&seat).await;
            }
            seat.routing.nodes_alive(now_alive.clone());
            alive = now_alive;
        }
    }
}

async fn next(subscriber: &mut Option<async_nats::Subscriber>) -> Option<async_nats::Message> {
    match subscriber {
        Some(subscriber) => subscriber.next().await,
        None => std::future::pending().await,
    }
}

async fn rejoin(routing: Routing) {
    routing.rejoin().await;
}

/// Starts leading: the router runs here, answers every node's desks, and watches every open
/// interaction; then this node's desks and the others' say who is there.
async fn start_term(seat: &Seat) {
    let over = seat.routing.lead();
    let (asks, created) = match (
        seat.nats.subscribe(wire::ROUTING_ASK).await,
        seat.nats.subscribe(wire::CREATED).await,
    ) {
        (Ok(asks), Ok(created)) => (asks, created),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!("cannot lead routing without NATS: {e}");
            seat.routing.step_down();
            return;
        }
    };
    let _ = seat.nats.flush().await;
    tokio::spawn(answer_asks(
        seat.nats.clone(),
        seat.routing.clone(),
        asks,
        over.clone(),
    ));
    tokio::spawn(watch_all(
        seat.store.clone(),
        seat.hub.clone(),
        seat.routing.clone(),
        created,
        over.clone(),
    ));
    tokio::spawn(rejoin(seat.routing.clone()));
    announce(seat).await;
}

/// Says this node leads routing: every other node tells it who is at its desks.
async fn announce(seat: &Seat) {
    let _ = seat
        .nats
        .publish(wire::ROUTING_LEADER, seat.config.node.clone().into())
        .await;
}

/// Answers the desks' asks, in the order they arrive, while the term lasts.
async fn answer_asks(
    nats: async_nats::Client,
    routing: Routing,
    mut asks: async_nats::Subscriber,
    over: CancellationToken,
) {
    while let Some((message, reply_to)) = super::next_request(&mut asks, over.cancelled()).await {
        let answer = match serde_json::from_slice::<Ask>(&message.payload) {
            // Queued here, in arrival order; answered whenever the router is done.
            Ok(ask) => routing.ask_here(ask),
            Err(e) => {
                tracing::warn!("an unreadable ask for routing: {e}");
                None
            }
        };
        let nats = nats.clone();
        tokio::spawn(async move {
            let answer = match answer {
                Some(answer) => answer.await,
                None => Answer::Refused(RoutingError::Unavailable),
            };
            if let Ok(body) = serde_json::to_vec(&RoutingAnswer::from(answer)) {
                let _ = nats.publish(reply_to, Bytes::from(body)).await;
            }
        });
    }
    let _ = asks.unsubscribe().await;
}

/// Watches every open interaction of the cluster, and each new one, while the term lasts.
async fn watch_all(
    store: Store,
    hub: Hub,
    routing: Routing,
    mut created: async_nats::Subscriber,
    over: CancellationToken,
) {
    // Subscribed first, so nothing created meanwhile is missed; a chat named twice is
    // watched once.
    let mut following = Vec::new();
    match store.open_interactions().await {
        Ok(open) => {
            for record in open {
                if let Ok(Some(handle)) = hub.find(&record.id).await {
                    following.push(routing.watch_ready(handle));
                }
            }
        }
        Err(e) => tracing::error!("cannot list the open interactions to route: {e}"),
    }
    // Desks reload once every chat is followed: what happened before is in what they load,
    // what happens after is told to them.
    let all_followed = futures_util::future::join_all(following);
    if tokio::time::timeout(ANSWER_WITHIN, all_followed)
        .await
        .is_err()
    {
        tracing::warn!("not every chat is followed yet; desks reload anyway");
    }
    routing.resync_all();
    let mut sweep =
        tokio::time::interval_at(tokio::time::Instant::now() + SWEEP_EVERY, SWEEP_EVERY);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let message = tokio::select! {
            _ = over.cancelled() => break,
            message = created.next() => message,
            _ = sweep.tick() => {
                watch_unwatched(&store, &hub, &routing).await;
                continue;
            }
        };
        let Some(message) = message else { break };
        let Ok(created) = serde_json::from_slice::<wire::Created>(&message.payload) else {
            continue;
        };
        watch_named(&hub, &routing, &created.id).await;
    }
    let _ = created.unsubscribe().await;
}

/// How often the leader looks for open interactions nobody routes: an announcement NATS lost
/// (it delivers at most once, and nothing while a node reconnects), or a watcher that could
/// not reach its interaction's node or the store.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// Watches every open interaction of the cluster that no watcher follows.
async fn watch_unwatched(store: &Store, hub: &Hub, routing: &Routing) {
    let open = match store.open_interactions().await {
        Ok(open) => open,
        Err(e) => {
            tracing::warn!("cannot list the open interactions to route: {e}");
            return;
        }
    };
    for record in open {
        // A closing chat's watcher has ended: there is nothing left to route.
        if record.phase != Phase::Closing && !routing.watches(&record.id) {
            tracing::info!(interaction = %record.id, "routing an open chat nobody routed");
            watch_named(hub, routing, &record.id).await;
        }
    }
}

async fn watch_named(hub: &Hub, routing: &Routing, id: &InteractionId) {
    match hub.find(id).await {
        Ok(Some(handle)) => routing.watch(handle),
        Ok(None) => {}
        Err(e) => tracing::warn!(interaction = %id, "cannot find it to route it: {e}"),
    }
}

/// Gives routing's lead up at once (a node that stops), so the next claim takes it.
pub(super) async fn resign(store: &Store, routing: &Routing, node: &str) {
    routing.step_down();
    if let Err(e) = store.resign_role(ROUTING, node).await {
        tracing::warn!("cannot give routing's lead up: {e}");
    }
}
