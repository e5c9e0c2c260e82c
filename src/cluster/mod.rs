//! Several nodes as one contact centre.
//!
//! **Ownership** is decided in the shared PostgreSQL store: each node holds a lease (a row in
//! `nodes`, renewed every third of `cluster.lease_s`), and each open interaction names the node
//! that owns it (`interactions.owner`), written with its first commit. Only the owner runs the
//! interaction's task; the store fences every write, so a node that lost an interaction can
//! no longer add to its history ([`crate::chat::store::StoreError::NotOwner`]), and its task
//! stops serving (its handles answer [`HubError::Moved`]).
//!
//! **Takeover.** A node whose lease has run out is dead to the others: the first node whose
//! takeover deletes its row gets its open interactions in the same transaction and restores
//! them from their history, as a restart does. Interactions nobody owns (released by a node
//! that stopped, or opened before the store served a cluster) are adopted the same way. A
//! node that starts or comes back restores what it still owns and adopts orphans; it never
//! takes an interaction from a node whose lease runs.
//!
//! **Forwarding** goes over NATS ([`wire`]): the owner answers requests to an interaction and
//! publishes its events after they are stored; any other node reaches it through a remote
//! [`Handle`] ([`Hub::find`]), so the APIs serve any interaction from any node.
//!
//! **Routing** is led by one node at a time ([`leader`]): desks on every node ask it, and hear
//! what it tells them, over NATS.
//!
//! **Stopping** a node (SIGTERM, a rolling restart) hands its interactions over: its tasks
//! stop without ending them, its lease and ownership are released, and the others adopt them
//! at once.

mod leader;
pub mod lease;
pub mod merge;
mod remote;
pub mod wire;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::chat::store::{NodeRecord, Store, StoreError};
use crate::config::ClusterConfig;
use crate::hub::{Handle, Hub, HubError};
use crate::routing::driver::Routing;
use lease::Standing;
use remote::Nodes;

/// Why a node could not join its cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The NATS server could not be reached.
    #[error("cannot connect to NATS at {url}: {reason}")]
    Nats { url: String, reason: String },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Restoring interactions failed.
    #[error(transparent)]
    Hub(#[from] HubError),
}

/// This node's membership of the cluster: its lease, and the work that serves its
/// interactions to the other nodes.
pub struct Cluster {
    config: ClusterConfig,
    hub: Hub,
    store: Store,
    nats: async_nats::Client,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Routing on this node, once [`Cluster::routing`] started it.
    routing: Option<Routing>,
}

/// The next request on `requests` that wants an answer, with the subject to answer on;
/// `None` once `until` is done or the subscription ends.
async fn next_request(
    requests: &mut async_nats::Subscriber,
    until: impl std::future::Future<Output = ()>,
) -> Option<(async_nats::Message, async_nats::Subject)> {
    tokio::pin!(until);
    loop {
        let message = tokio::select! {
            _ = &mut until => return None,
            message = requests.next() => message?,
        };
        if let Some(reply_to) = message.reply.clone() {
            return Some((message, reply_to));
        }
    }
}

/// Unix milliseconds now.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Cluster {
    /// Joins the cluster: connects to NATS, takes this node's lease, restores what it owns and
    /// adopts what nobody owns, then keeps the lease and serves its interactions to the others.
    /// The hub must have been opened for this node (it restores nothing by itself).
    pub async fn join(
        config: &ClusterConfig,
        hub: Hub,
        store: Store,
    ) -> Result<Cluster, ClusterError> {
        let nats_error = |reason: String| ClusterError::Nats {
            url: crate::config::without_password(&config.nats_url),
            reason,
        };
        let mut options = async_nats::ConnectOptions::new().name(format!("tandem-{}", config.node));
        // The client takes only the address from the URL; a user and password in it are ours
        // to hand over.
        let server: async_nats::ServerAddr = config
            .nats_url
            .parse()
            .map_err(|e: std::io::Error| nats_error(e.to_string()))?;
        if let Some(user) = server.username() {
            let decoded = |part: &str| -> Result<String, ClusterError> {
                percent_encoding::percent_decode_str(part)
                    .decode_utf8()
                    .map(|part| part.into_owned())
                    .map_err(|_| nats_error("its user or password is not UTF-8".into()))
            };
            let password = decoded(server.password().unwrap_or_default())?;
            options = options.user_and_password(decoded(user)?, password);
        }
        let nats = options
            .connect(server)
            .await
            .map_err(|e| nats_error(e.to_string()))?;
        let (outbox, outgoing) = mpsc::unbounded_channel();
        hub.join(Arc::new(Nodes {
            nats: nats.clone(),
            store: store.clone(),
            outbox,
        }));
        let mut cluster = Cluster {
            config: config.clone(),
            hub,
            store,
            nats,
            stop: CancellationToken::new(),
            tasks: Vec::new(),
            routing: None,
        };
        cluster.tasks.push(tokio::spawn(remote::publish_events(
            cluster.nats.clone(),
            outgoing,
        )));
        // Serve every interaction that goes live here, from the first restored on.
        let (running, created) = cluster.hub.subscribe_created();
        cluster.tasks.push(tokio::spawn(serve_all(
            cluster.nats.clone(),
            cluster.config.node.clone(),
            running,
            created,
        )));
        let lease = Duration::from_secs(config.lease_s);
        let held_until = now_ms() + lease.as_millis() as u64;
        cluster
            .store
            .register_node(&cluster.record(held_until))
            .await?;
        let adopted = look_around(&cluster.hub, &cluster.store, &cluster.config.node, true).await?;
        tracing::info!(
            node = %config.node,
            adopted,
            "joined the cluster"
        );
        let released = cluster
            .nats
            .subscribe(wire::RELEASED)
            .await
            .map_err(|e| nats_error(e.to_string()))?;
        cluster.tasks.push(tokio::spawn(keep_lease(
            cluster.hub.clone(),
            cluster.store.clone(),
            cluster.config.clone(),
            held_until,
            released,
            cluster.stop.clone(),
        )));
        Ok(cluster)
    }

    /// Routing on this node: desks here ask the node that leads routing, and this node claims
    /// the lead with the others ([`leader`]).
    pub fn routing(&mut self) -> Routing {
        let (fabric, publisher) =
            leader::NatsFabric::new(self.config.node.clone(), self.nats.clone());
        let routing = Routing::clustered(self.hub.clone(), Arc::new(fabric));
        self.tasks.push(publisher);
        self.tasks.push(tokio::spawn(leader::hear(
            self.nats.clone(),
            routing.clone(),
        )));
        let seat = leader::Seat {
            config: self.config.clone(),
            nats: self.nats.clone(),
            store: self.store.clone(),
            hub: self.hub.clone(),
            routing: routing.clone(),
        };
        self.tasks
            .push(tokio::spawn(leader::claim(seat, self.stop.clone())));
        self.routing = Some(routing.clone());
        routing
    }

    fn record(&self, lease_until: u64) -> NodeRecord {
        NodeRecord {
            node: self.config.node.clone(),
            http_url: self.config.http_url.clone(),
            sip_uri: self.config.sip_uri.clone(),
            lease_until,
        }
    }

    /// Hands this node's interactions over to the others and leaves the cluster: the tasks
    /// stop without ending their interactions, then ownership and the lease are released and
    /// the others are told to adopt them now. Waits at most `within` for the tasks, and
    /// [`AT_STOP`] for each answer of the store and of NATS.
    pub async fn hand_over(self, within: Duration) {
        use tokio::time::timeout;
        self.stop.cancel();
        if let Some(routing) = &self.routing {
            let resigned = timeout(
                AT_STOP,
                leader::resign(&self.store, routing, &self.config.node),
            );
            if resigned.await.is_err() {
                tracing::warn!("cannot give routing's lead up: the store did not answer");
            }
        }
        let left = self.hub.release_all(within).await;
        if left > 0 {
            tracing::warn!(left, "interactions still running at handover");
        }
        match timeout(AT_STOP, self.store.release_node(&self.config.node)).await {
            Ok(Ok(released)) => tracing::info!(released, "handed the interactions over"),
            Ok(Err(e)) => tracing::error!("cannot release the interactions: {e}"),
            Err(_) => tracing::error!("cannot release the interactions: the store did not answer"),
        }
        let told = timeout(AT_STOP, async {
            let _ = self
                .nats
                .publish(wire::RELEASED, self.config.node.clone().into())
                .await;
            self.nats.flush().await
        });
        if !matches!(told.await, Ok(Ok(()))) {
            tracing::warn!("cannot tell the other nodes: NATS did not answer");
        }
        for task in self.tasks {
            task.abort();
        }
    }
}

/// How long a stopping node waits for the store, and for NATS, at each step of its handover.
/// Both answer in milliseconds when they are up. When they are gone, the node stops all the
/// same: its lease runs out and the others take its interactions over as a dead node's, and
/// they look for released ones now and then in case the word was lost.
const AT_STOP: Duration = Duration::from_secs(3);

/// Takes over the interactions of dead nodes (and, with `orphans`, those nobody owns), and
/// restores every interaction this node owns that does not run here yet. Returns how many it
/// restored. With `orphans` (at start, when a node released its interactions, and now and
/// then in case that word was lost) it also restores what it owned before a restart.
async fn look_around(
    hub: &Hub,
    store: &Store,
    me: &str,
    orphans: bool,
) -> Result<usize, ClusterError> {
    let now = now_ms();
    let nodes = store.nodes().await?;
    let mut taken = 0;
    for dead in lease::expired(now, me, &nodes) {
        let ids = store.take_over(me, dead, now).await?;
        if !ids.is_empty() {
            tracing::warn!(
                node = dead,
                interactions = ids.len(),
                "took over a dead node's interactions"
            );
        }
        taken += ids.len();
    }
    if orphans {
        store.adopt_orphans(me).await?;
    } else if taken == 0 {
        // The usual tick: one small query, nothing to restore.
        return Ok(0);
    }
    let owned = store.owned_interactions(me).await?;
    Ok(hub.restore(owned).await?)
}

/// Every how many renewals a node also looks for interactions nobody owns, in case a node's
/// word that it released its own was lost.
const ORPHANS_EVERY: u64 = 10;

/// Renews the lease every third of it and looks for interactions to take over; at once when
/// another node says it released its own.
async fn keep_lease(
    hub: Hub,
    store: Store,
    config: ClusterConfig,
    mut held_until: u64,
    mut released: async_nats::Subscriber,
    stop: CancellationToken,
) {
    let lease = Duration::from_secs(config.lease_s);
    let mut tick = tokio::time::interval(lease::renew_every(lease));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks: u64 = 0;
    loop {
        let orphans = tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {
                ticks += 1;
                ticks.is_multiple_of(ORPHANS_EVERY)
            }
            Some(_) = released.next() => true,
        };
        let now = now_ms();
        let until = now + lease.as_millis() as u64;
        let renewed = store.renew_lease(&config.node, until).await.ok();
        match lease::standing(now, held_until, renewed) {
            Standing::Renewed => held_until = until,
            Standing::Holding => {
                tracing::warn!("cannot renew the node's lease; still held");
                continue;
            }
            Standing::Lost => {
                tracing::error!("the node's lease is lost: its interactions go to other nodes");
                hub.release_all(Duration::from_secs(5)).await;
                let record = NodeRecord {
                    node: config.node.clone(),
                    http_url: config.http_url.clone(),
                    sip_uri: config.sip_uri.clone(),
                    lease_until: until,
                };
                if store.register_node(&record).await.is_err() {
                    continue;
                }
                held_until = until;
            }
        }
        if let Err(e) = look_around(&hub, &store, &config.node, orphans).await {
            tracing::warn!("cannot look for interactions to take over: {e}");
        }
    }
}

/// Serves each interaction running here to the other nodes, and announces the new ones.
async fn serve_all(
    nats: async_nats::Client,
    node: String,
    running: Vec<Handle>,
    mut created: mpsc::UnboundedReceiver<Handle>,
) {
    for handle in running {
        if let Some(requests) = remote::listen(&nats, &handle.id).await {
            tokio::spawn(remote::serve(nats.clone(), handle, requests));
        }
    }
    while let Some(handle) = created.recv().await {
        // Listening first: the subscription and the announcement leave on one connection in
        // this order, so the server routes a request made on hearing it to us.
        let requests = remote::listen(&nats, &handle.id).await;
        let announce = wire::Created {
            id: handle.id.clone(),
            service: handle.service.clone(),
            node: node.clone(),
        };
        if let Ok(body) = serde_json::to_vec(&announce) {
            let _ = nats.publish(wire::CREATED, body.into()).await;
        }
        if let Some(requests) = requests {
            tokio::spawn(remote::serve(nats.clone(), handle, requests));
        }
    }
}
