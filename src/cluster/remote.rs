//! Interactions that run on another node: reached by request/reply to their owner, watched
//! through their event subject joined with the store's backlog ([`super::merge`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use tokio::sync::{broadcast, mpsc};

use super::merge::{Merge, Step};
use super::wire::{self, Reply, Request, WireError};
use crate::bridge::{Accepted, Command, Event, EventKind, InteractionId, Party, Phase};
use crate::chat::store::Store;
use crate::hub::{Handle, HubError, Peers, Remote, STORE_PATIENCE, Subscription, Summary};

/// How long a node waits for an owner's answer: the owner's own patience with its store,
/// and a margin for the network.
const ANSWER_WITHIN: Duration = Duration::from_secs(STORE_PATIENCE.as_secs() + 3);

/// How many live events a remote subscriber may fall behind before it resubscribes.
const LIVE_CAPACITY: usize = 256;

/// How often a forwarder with no event to forward checks that its subscriber is still there.
const IDLE_CHECK: Duration = Duration::from_secs(5);

/// The other nodes, as the hub sees them: where its events go, where the interactions it does
/// not run are found.
pub struct Nodes {
    pub(super) nats: async_nats::Client,
    pub(super) store: Store,
    /// Events to publish, in the order the tasks published them.
    pub(super) outbox: mpsc::UnboundedSender<(InteractionId, Arc<Event>)>,
}

impl Peers for Nodes {
    fn published(&self, id: &InteractionId, event: &Arc<Event>) {
        let _ = self.outbox.send((id.clone(), event.clone()));
    }

    fn find(&self, id: &InteractionId) -> BoxFuture<'static, Result<Option<Handle>, HubError>> {
        let id = id.clone();
        let store = self.store.clone();
        let nats = self.nats.clone();
        Box::pin(async move {
            if !wire::subject_safe(&id) {
                return Ok(None);
            }
            let Some((record, _owner)) = store.open_interaction_owner(&id).await? else {
                return Ok(None);
            };
            let remote: Arc<dyn Remote> = Arc::new(Owner { nats, store });
            Ok(Some(Handle::remote(
                id,
                record.service,
                record.device,
                remote,
            )))
        })
    }
}

/// Publishes the events of this node's interactions, one at a time so their order holds.
pub(super) async fn publish_events(
    nats: async_nats::Client,
    mut outbox: mpsc::UnboundedReceiver<(InteractionId, Arc<Event>)>,
) {
    while let Some((id, event)) = outbox.recv().await {
        let Ok(body) = serde_json::to_vec(&*event) else {
            continue;
        };
        if let Err(e) = nats.publish(wire::events(&id), Bytes::from(body)).await {
            tracing::warn!(interaction = %id, "cannot publish an event to the cluster: {e}");
        }
    }
}

/// Whoever owns an interaction now, reached over NATS: its subject does not change when
/// another node takes it over, so a handle outlives a takeover.
struct Owner {
    nats: async_nats::Client,
    store: Store,
}

impl Owner {
    async fn ask(
        nats: &async_nats::Client,
        store: &Store,
        id: &InteractionId,
        request: &Request,
    ) -> Result<Reply, HubError> {
        let body = Bytes::from(serde_json::to_vec(request).map_err(|_| HubError::Unavailable)?);
        let ask = || {
            let request = async_nats::Request::new()
                .payload(body.clone())
                .timeout(Some(ANSWER_WITHIN));
            let asked = nats.send_request(wire::requests(id), request);
            async move {
                match asked.await {
                    Ok(message) => Asked::Answered(message),
                    Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
                        Asked::Unheard
                    }
                    Err(e) => {
                        tracing::debug!(interaction = %id, "no answer from its node: {e}");
                        Asked::Failed
                    }
                }
            }
        };
        let open = || async { Ok(store.open_interaction_owner(id).await?.is_some()) };
        let message = until_heard(ANSWER_WITHIN, ask, open, tokio::time::sleep).await?;
        serde_json::from_slice(&message.payload).map_err(|e| {
            tracing::warn!(interaction = %id, "an unreadable answer from its node: {e}");
            HubError::Unavailable
        })
    }
}

/// What one request to an interaction's owner came to.
enum Asked<T> {
    Answered(T),
    /// Nobody listens for it: nothing was done, and asking again is safe.
    Unheard,
    /// Sent, but not answered in time.
    Failed,
}

/// The first wait before asking an interaction nobody listens for again; it doubles up to
/// [`UNHEARD_WAIT_MAX`].
const UNHEARD_WAIT: Duration = Duration::from_millis(20);
const UNHEARD_WAIT_MAX: Duration = Duration::from_millis(500);

/// Asks until the interaction's owner answers. An open interaction has nobody listening for a
/// moment while another node takes it over, and a request nobody heard did nothing, so it is
/// asked again, `pause`s between asks adding up to at most `patience`; once the store says it
/// is over, it is [`HubError::Closed`].
async fn until_heard<T, A, F, O, G, P, Q>(
    patience: Duration,
    mut ask: A,
    open: O,
    mut pause: P,
) -> Result<T, HubError>
where
    A: FnMut() -> F,
    F: Future<Output = Asked<T>>,
    O: Fn() -> G,
    G: Future<Output = Result<bool, HubError>>,
    P: FnMut(Duration) -> Q,
    Q: Future<Output = ()>,
{
    let (mut wait, mut waited) = (UNHEARD_WAIT, Duration::ZERO);
    loop {
        match ask().await {
            Asked::Answered(answer) => return Ok(answer),
            Asked::Failed => return Err(HubError::Unavailable),
            Asked::Unheard => {}
        }
        if !open().await? {
            return Err(HubError::Closed);
        }
        waited += wait;
        if waited > patience {
            return Err(HubError::Unavailable);
        }
        pause(wait).await;
        wait = (wait * 2).min(UNHEARD_WAIT_MAX);
    }
}

impl Remote for Owner {
    fn command(
        &self,
        id: &InteractionId,
        by: Party,
        command: Command,
    ) -> BoxFuture<'static, Result<Accepted, HubError>> {
        let (nats, store, id) = (self.nats.clone(), self.store.clone(), id.clone());
        Box::pin(async move {
            match Owner::ask(&nats, &store, &id, &Request::Command { by, command }).await? {
                Reply::Accepted(accepted) => Ok(accepted),
                Reply::Error(e) => Err(e.into()),
                Reply::Summary(_) => Err(HubError::Unavailable),
            }
        })
    }

    fn summary(&self, id: &InteractionId) -> BoxFuture<'static, Result<Summary, HubError>> {
        let (nats, store, id) = (self.nats.clone(), self.store.clone(), id.clone());
        Box::pin(async move {
            match Owner::ask(&nats, &store, &id, &Request::Summary).await? {
                Reply::Summary(summary) => Ok(*summary),
                Reply::Error(e) => Err(e.into()),
                Reply::Accepted(_) => Err(HubError::Unavailable),
            }
        })
    }

    fn subscribe(
        &self,
        id: &InteractionId,
        after: u64,
    ) -> BoxFuture<'static, Result<Subscription, HubError>> {
        let (nats, store, id) = (self.nats.clone(), self.store.clone(), id.clone());
        Box::pin(async move {
            // Live first (and confirmed by the server), then the backlog: nothing falls between.
            let mut live = nats
                .subscribe(wire::events(&id))
                .await
                .map_err(|_| HubError::Unavailable)?;
            nats.flush().await.map_err(|_| HubError::Unavailable)?;
            let phase = match store.open_interaction_owner(&id).await? {
                Some((record, _)) => record.phase,
                None => Phase::Closed,
            };
            let backlog: Vec<Arc<Event>> = store
                .events(&id, after)
                .await?
                .into_iter()
                .map(Arc::new)
                .collect();
            let last = backlog.last().and_then(|e| e.seq).unwrap_or(after);
            let over = phase == Phase::Closed || backlog.iter().any(|e| is_last(e));
            let (tx, rx) = broadcast::channel(LIVE_CAPACITY);
            if !over {
                tokio::spawn(async move {
                    let mut merge = Merge::after(last);
                    loop {
                        let message = tokio::select! {
                            message = live.next() => message,
                            _ = tokio::time::sleep(IDLE_CHECK) => {
                                if tx.receiver_count() == 0 { return; }
                                continue;
                            }
                        };
                        let Some(message) = message else { return };
                        let Ok(event) = serde_json::from_slice::<Event>(&message.payload) else {
                            continue;
                        };
                        let mut deliver = Vec::new();
                        match merge.offer(event.seq) {
                            Step::Duplicate => continue,
                            Step::Deliver => {}
                            Step::Gap { after, before } => {
                                match store.events_between(&id, after, before, u32::MAX).await {
                                    Ok(missing) => deliver.extend(missing),
                                    // The subscriber resumes from what it has.
                                    Err(_) => return,
                                }
                            }
                        }
                        deliver.push(event);
                        for event in deliver {
                            let end = is_last(&event);
                            if tx.send(Arc::new(event)).is_err() || end {
                                return;
                            }
                        }
                    }
                });
            }
            Ok(Subscription {
                backlog,
                live: rx,
                phase,
            })
        })
    }
}

/// The interaction's last event: nothing follows it.
fn is_last(event: &Event) -> bool {
    matches!(
        event.kind,
        EventKind::Status {
            phase: Phase::Closed
        }
    )
}

/// Subscribes to the other nodes' requests for one interaction of this node. Done before the
/// interaction is announced: whoever hears of it may ask at once, and a request that finds
/// nobody listening is refused by NATS rather than queued.
pub(super) async fn listen(
    nats: &async_nats::Client,
    id: &InteractionId,
) -> Option<async_nats::Subscriber> {
    if !wire::subject_safe(id) {
        return None;
    }
    match nats.subscribe(wire::requests(id)).await {
        Ok(requests) => Some(requests),
        Err(e) => {
            tracing::error!(interaction = %id, "cannot serve it to the cluster: {e}");
            None
        }
    }
}

/// Answers the other nodes' requests for one interaction of this node until it ends, from the
/// subscription [`listen`] made.
pub(super) async fn serve(
    nats: async_nats::Client,
    handle: Handle,
    mut requests: async_nats::Subscriber,
) {
    while let Some((message, reply_to)) = super::next_request(&mut requests, handle.ended()).await {
        let (nats, handle) = (nats.clone(), handle.clone());
        tokio::spawn(async move {
            let reply = match serde_json::from_slice::<Request>(&message.payload) {
                Err(_) => Reply::Error(WireError::NotFound),
                Ok(Request::Command { by, command }) => match handle.command(by, command).await {
                    Ok(accepted) => Reply::Accepted(accepted),
                    Err(e) => Reply::Error(e.into()),
                },
                Ok(Request::Summary) => match handle.summary().await {
                    Ok(summary) => Reply::Summary(Box::new(summary)),
                    Err(e) => Reply::Error(e.into()),
                },
            };
            if let Ok(body) = serde_json::to_vec(&reply) {
                let _ = nats.publish(reply_to, Bytes::from(body)).await;
            }
        });
    }
    let _ = requests.unsubscribe().await;
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};

    use super::*;

    /// An owner that starts listening after `unheard` asks, and the pauses taken meanwhile.
    struct World {
        unheard: u32,
        open: bool,
        asks: Cell<u32>,
        pauses: RefCell<Vec<Duration>>,
    }

    impl World {
        fn new(unheard: u32, open: bool) -> World {
            World {
                unheard,
                open,
                asks: Cell::new(0),
                pauses: RefCell::default(),
            }
        }

        async fn ask(&self) -> Result<u32, HubError> {
            until_heard(
                ANSWER_WITHIN,
                || {
                    self.asks.set(self.asks.get() + 1);
                    std::future::ready(if self.asks.get() <= self.unheard {
                        Asked::Unheard
                    } else {
                        Asked::Answered(self.asks.get())
                    })
                },
                || std::future::ready(Ok(self.open)),
                |wait| {
                    self.pauses.borrow_mut().push(wait);
                    std::future::ready(())
                },
            )
            .await
        }
    }

    #[tokio::test]
    async fn a_request_nobody_heard_is_asked_again_until_the_owner_listens() {
        let world = World::new(4, true);
        assert_eq!(world.ask().await.unwrap(), 5);
        // Each pause twice the one before.
        let pauses = world.pauses.borrow();
        assert_eq!(pauses.len(), 4);
        assert!(pauses.windows(2).all(|w| w[1] == w[0] * 2), "{pauses:?}");
    }

    #[tokio::test]
    async fn an_interaction_nobody_serves_any_more_is_closed() {
        let world = World::new(u32::MAX, false);
        assert!(matches!(world.ask().await, Err(HubError::Closed)));
        assert_eq!(world.asks.get(), 1);
        assert!(world.pauses.borrow().is_empty());
    }

    #[tokio::test]
    async fn an_open_interaction_nobody_serves_is_unavailable_once_patience_is_spent() {
        let world = World::new(u32::MAX, true);
        assert!(matches!(world.ask().await, Err(HubError::Unavailable)));
        let pauses = world.pauses.borrow();
        let waited: Duration = pauses.iter().sum();
        assert!(waited <= ANSWER_WITHIN, "waited {waited:?}");
        assert!(
            waited + UNHEARD_WAIT_MAX > ANSWER_WITHIN,
            "gave up early: {waited:?}"
        );
        assert!(pauses.iter().all(|p| *p <= UNHEARD_WAIT_MAX), "{pauses:?}");
    }

    #[tokio::test]
    async fn a_request_sent_but_not_answered_is_not_sent_twice() {
        let asks = Cell::new(0);
        let answer: Result<u32, _> = until_heard(
            ANSWER_WITHIN,
            || {
                asks.set(asks.get() + 1);
                std::future::ready(Asked::Failed)
            },
            || std::future::ready(Ok(true)),
            |_| std::future::ready(()),
        )
        .await;
        assert!(matches!(answer, Err(HubError::Unavailable)), "{answer:?}");
        assert_eq!(asks.get(), 1);
    }
}
