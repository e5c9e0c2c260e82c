//! Mobile operators: SMS offers with one-time links, and who holds which link.
//!
//! Routing decides who is offered a chat by SMS and publishes it on
//! [`Routing::mobile_offers`]; [`start`] turns each offer into a link `…/m/{token}` texted to
//! the operator's mobile, and each withdrawal into a dead link. A link is claimed at most once:
//! the first claim takes the chat (through the same atomic accept as the desktop) and gets a
//! session key for the chat API on the token; later claims are told the chat is already taken,
//! and a link whose offer ended (timeout, the chat closed, the operator logged in to the
//! desktop) has expired. Claiming is a `POST` made by the page, never the `GET` of the link, so
//! link previews in messaging apps cannot take a chat.
//!
//! The link stays the operator's own: the page keeps the session key in the browser, so the
//! link opened again there resumes the chat. Opened on another device (a second phone, a
//! browser without that storage), a claim is answered `claimed_elsewhere`, and
//! [`Links::move_here`] hands that device a new key, which retires the old one. Whoever holds
//! the link holds the chat: it is the credential the SMS delivered, as for the first claim.
//!
//! A chat taken on a link is [`Links::attend`]ed while it runs: the page shows no video, so a
//! customer's video request is declined at once, saying video needs the desk, instead of
//! waiting for an answer that cannot come.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;

use super::gsm;
use super::provider::Provider;
use crate::bridge::{
    AgentId, Command, Customer, EventKind, InteractionId, LegKind, LegState, Party, Phase, Time,
    random_hex,
};
use crate::chat::store::{MobileLinkRecord, Store, StoreError, Write};
use crate::config::Config;
use crate::hub::Handle;
use crate::routing::driver::{MobileOffer, Routing};
use crate::routing::router::WithdrawReason;

/// Why a link cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MobileError {
    /// No such link (never sent, or forgotten long after its chat).
    #[error("no such link")]
    LinkNotFound,
    /// Someone claimed the chat first.
    #[error("already taken")]
    AlreadyTaken,
    /// The offer ended: it timed out, the chat closed, or the operator went to the desktop.
    #[error("this link has expired")]
    LinkExpired,
    /// The chat API was called without the session key the claim handed out.
    #[error("missing or wrong session")]
    SessionInvalid,
    /// This operator claimed the link already, on another device (another browser): the chat
    /// can be moved here with [`Links::move_here`].
    #[error("already taken by you on another device")]
    ClaimedElsewhere,
    /// A move asked for a link nobody has claimed: claim it instead.
    #[error("this link has not been claimed")]
    NotClaimed,
}

impl MobileError {
    pub fn code(&self) -> &'static str {
        match self {
            MobileError::LinkNotFound => "link_not_found",
            MobileError::AlreadyTaken => "already_taken",
            MobileError::LinkExpired => "link_expired",
            MobileError::SessionInvalid => "session_invalid",
            MobileError::ClaimedElsewhere => "claimed_elsewhere",
            MobileError::NotClaimed => "not_claimed",
        }
    }
}

/// Why a link operation failed: the link's own answer, or the store behind it.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error(transparent)]
    Mobile(#[from] MobileError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where one link stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LinkState {
    Offered,
    Claimed { session: String },
    Taken,
    Expired,
}

impl LinkState {
    fn name(&self) -> &'static str {
        match self {
            LinkState::Offered => "offered",
            LinkState::Claimed { .. } => "claimed",
            LinkState::Taken => "taken",
            LinkState::Expired => "expired",
        }
    }
}

#[derive(Debug, Clone)]
struct Link {
    chat: InteractionId,
    agent: AgentId,
    state: LinkState,
    since: Time,
}

impl Link {
    fn record(&self, token: &str) -> MobileLinkRecord {
        MobileLinkRecord {
            token: token.to_string(),
            chat: self.chat.clone(),
            agent: self.agent.0.clone(),
            state: self.state.name().to_string(),
            session: match &self.state {
                LinkState::Claimed { session } => Some(session.clone()),
                _ => None,
            },
            sent_at: self.since.millis(),
        }
    }

    fn from_record(r: MobileLinkRecord) -> Link {
        let state = match (r.state.as_str(), r.session) {
            ("offered", _) => LinkState::Offered,
            ("claimed", Some(session)) => LinkState::Claimed { session },
            ("taken", _) => LinkState::Taken,
            _ => LinkState::Expired,
        };
        Link {
            chat: r.chat,
            agent: AgentId(r.agent),
            state,
            since: Time(r.sent_at),
        }
    }
}

#[derive(Default)]
struct Table {
    links: HashMap<String, Link>,
    by_offer: HashMap<(InteractionId, AgentId), String>,
}

impl Table {
    fn insert(&mut self, token: &str, link: Link) {
        self.by_offer
            .insert((link.chat.clone(), link.agent.clone()), token.to_string());
        self.links.insert(token.to_string(), link);
    }
}

/// Links are forgotten this long after they were sent.
const KEEP: Duration = Duration::from_secs(48 * 3600);

/// Every link of this node. Cheap to clone.
///
/// With a store, every change is written through before it is acted on (a link is stored
/// before it is texted, a claim before its session is handed out), and a link this node does
/// not hold in memory (it was sent before a restart) is looked up there. So a link, and the
/// chat an operator claimed with it, survive a restart.
#[derive(Clone, Default)]
pub struct Links {
    table: Arc<Mutex<Table>>,
    store: Option<Store>,
    /// Chats taken on a link that this node watches (see [`Links::attend`]).
    attended: Arc<Mutex<HashSet<InteractionId>>>,
}

/// A claimed link: the chat, the operator, and the key for the chat API.
#[derive(Debug, Clone)]
pub struct Claim {
    pub chat: InteractionId,
    pub agent: AgentId,
    pub session: String,
}

impl Links {
    /// Links kept in `store`.
    pub fn new(store: Store) -> Links {
        Links {
            table: Arc::default(),
            store: Some(store),
            attended: Arc::default(),
        }
    }

    /// Stores the link as it is now in memory.
    async fn save(&self, token: &str, link: &Link) -> Result<(), StoreError> {
        match &self.store {
            Some(store) => {
                store
                    .write(vec![Write::MobileLink(link.record(token))])
                    .await
            }
            None => Ok(()),
        }
    }

    /// The link, from memory or else from the store (sent before a restart).
    async fn load(&self, token: &str) -> Result<Option<Link>, StoreError> {
        if let Some(link) = self.table.lock().expect("links").links.get(token) {
            return Ok(Some(link.clone()));
        }
        let Some(store) = &self.store else {
            return Ok(None);
        };
        let Some(record) = store.mobile_link(token).await? else {
            return Ok(None);
        };
        let mut t = self.table.lock().expect("links");
        // Someone else may have loaded (and changed) it meanwhile: theirs is newer.
        if !t.links.contains_key(token) {
            t.insert(token, Link::from_record(record));
        }
        Ok(t.links.get(token).cloned())
    }

    /// A new link for an SMS offer, stored before it is returned (and texted).
    pub async fn offered(
        &self,
        now: Time,
        chat: &InteractionId,
        agent: &AgentId,
    ) -> Result<String, StoreError> {
        // 96 random bits: unguessable, and short enough to leave room in one SMS.
        let token = random_hex(12);
        let link = Link {
            chat: chat.clone(),
            agent: agent.clone(),
            state: LinkState::Offered,
            since: now,
        };
        if let Some(store) = &self.store {
            let sent_before = now.millis().saturating_sub(KEEP.as_millis() as u64);
            store
                .write(vec![
                    Write::ForgetMobileLinks { sent_before },
                    Write::MobileLink(link.record(&token)),
                ])
                .await?;
        }
        let mut t = self.table.lock().expect("links");
        let stale: Vec<String> = t
            .links
            .iter()
            .filter(|(_, l)| now.since(l.since) > KEEP)
            .map(|(k, _)| k.clone())
            .collect();
        for k in stale {
            if let Some(l) = t.links.remove(&k) {
                t.by_offer.remove(&(l.chat, l.agent));
            }
        }
        t.insert(&token, link);
        Ok(token)
    }

    /// The offer behind a link ended: taken by someone else, or expired.
    pub async fn withdrawn(
        &self,
        chat: &InteractionId,
        agent: &AgentId,
        reason: WithdrawReason,
    ) -> Result<(), StoreError> {
        let offer = (chat.clone(), agent.clone());
        let known = self
            .table
            .lock()
            .expect("links")
            .by_offer
            .get(&offer)
            .cloned();
        let token = match (known, &self.store) {
            (Some(token), _) => token,
            (None, Some(store)) => match store.mobile_link_for_offer(chat, &agent.0).await? {
                Some(record) => record.token,
                None => return Ok(()),
            },
            (None, None) => return Ok(()),
        };
        let Some(mut link) = self.load(&token).await? else {
            return Ok(());
        };
        {
            let mut t = self.table.lock().expect("links");
            let Some(current) = t.links.get_mut(&token) else {
                return Ok(());
            };
            if current.state != LinkState::Offered {
                return Ok(());
            }
            current.state = match reason {
                WithdrawReason::Taken => LinkState::Taken,
                _ => LinkState::Expired,
            };
            link.state = current.state.clone();
        }
        self.save(&token, &link).await
    }

    /// Starts a claim: the first one for a standing offer gets a session, stored before it is
    /// returned; every other is refused. The caller then accepts the chat and reports a failure
    /// with [`Links::lost`].
    pub async fn claim(&self, token: &str) -> Result<Claim, LinkError> {
        let link = self.load(token).await?.ok_or(MobileError::LinkNotFound)?;
        let session = random_hex(16);
        {
            let mut t = self.table.lock().expect("links");
            let Some(current) = t.links.get_mut(token) else {
                return Err(MobileError::LinkNotFound.into());
            };
            match current.state {
                LinkState::Offered => {}
                LinkState::Claimed { .. } => return Err(MobileError::ClaimedElsewhere.into()),
                LinkState::Taken => return Err(MobileError::AlreadyTaken.into()),
                LinkState::Expired => return Err(MobileError::LinkExpired.into()),
            }
            current.state = LinkState::Claimed {
                session: session.clone(),
            };
        }
        let claimed = Link {
            state: LinkState::Claimed {
                session: session.clone(),
            },
            ..link
        };
        if let Err(e) = self.save(token, &claimed).await {
            // Not stored, so not handed out: the link stands for another try.
            if let Some(current) = self.table.lock().expect("links").links.get_mut(token) {
                current.state = LinkState::Offered;
            }
            return Err(e.into());
        }
        Ok(Claim {
            chat: claimed.chat,
            agent: claimed.agent,
            session,
        })
    }

    /// Moves a claimed link's chat to the device asking: a new session key, stored before it
    /// is returned, and the old one refused from then on. Refused as a claim would be for a
    /// link taken by someone else or expired, and with `not_claimed` for a standing offer.
    pub async fn move_here(&self, token: &str) -> Result<Claim, LinkError> {
        let link = self.load(token).await?.ok_or(MobileError::LinkNotFound)?;
        let session = random_hex(16);
        let before = {
            let mut t = self.table.lock().expect("links");
            let Some(current) = t.links.get_mut(token) else {
                return Err(MobileError::LinkNotFound.into());
            };
            let before = match &current.state {
                LinkState::Claimed { session } => session.clone(),
                LinkState::Offered => return Err(MobileError::NotClaimed.into()),
                LinkState::Taken => return Err(MobileError::AlreadyTaken.into()),
                LinkState::Expired => return Err(MobileError::LinkExpired.into()),
            };
            current.state = LinkState::Claimed {
                session: session.clone(),
            };
            before
        };
        let moved = Link {
            state: LinkState::Claimed {
                session: session.clone(),
            },
            ..link
        };
        if let Err(e) = self.save(token, &moved).await {
            // Not stored, so not handed out: the other device keeps the chat.
            if let Some(current) = self.table.lock().expect("links").links.get_mut(token) {
                current.state = LinkState::Claimed { session: before };
            }
            return Err(e.into());
        }
        Ok(Claim {
            chat: moved.chat,
            agent: moved.agent,
            session,
        })
    }

    /// The claim could not accept the chat: someone else was faster.
    pub async fn lost(&self, token: &str) -> Result<(), StoreError> {
        self.ended(token, MobileError::AlreadyTaken).await
    }

    /// The claim found the offer over: later claims get the same answer.
    pub async fn ended(&self, token: &str, why: MobileError) -> Result<(), StoreError> {
        let link = {
            let mut t = self.table.lock().expect("links");
            let Some(link) = t.links.get_mut(token) else {
                return Ok(());
            };
            link.state = match why {
                MobileError::LinkExpired => LinkState::Expired,
                _ => LinkState::Taken,
            };
            link.clone()
        };
        self.save(token, &link).await
    }

    /// The chat and operator of a claimed link, if `session` is its key.
    pub async fn session(&self, token: &str, session: &str) -> Result<Claim, LinkError> {
        let link = self.load(token).await?.ok_or(MobileError::LinkNotFound)?;
        match link.state {
            LinkState::Claimed { session: key } if constant_time_eq(&key, session) => Ok(Claim {
                chat: link.chat,
                agent: link.agent,
                session: key,
            }),
            _ => Err(MobileError::SessionInvalid.into()),
        }
    }
}

impl Links {
    /// Whether an operator's chat is attended already (see [`Links::attend`]).
    pub fn attends(&self, chat: &InteractionId) -> bool {
        self.attended.lock().expect("attended").contains(chat)
    }

    /// Watches `handle`, a chat `agent` took on a link, until it closes or the operator leaves
    /// it: a video request is declined at once, saying video needs the desk (the page has no
    /// video, and the request would otherwise wait for its expiry). One watcher per chat on
    /// this node, so calling it again (the page's every request does, which covers a chat
    /// restored after a restart) costs a set lookup.
    pub fn attend(&self, handle: Handle, agent: AgentId) {
        if !self
            .attended
            .lock()
            .expect("attended")
            .insert(handle.id.clone())
        {
            return;
        }
        let attended = self.attended.clone();
        tokio::spawn(async move {
            decline_video_while_attended(&handle, &agent).await;
            attended.lock().expect("attended").remove(&handle.id);
        });
    }
}

/// The body of [`Links::attend`]: returns once the chat is over or no longer `agent`'s.
async fn decline_video_while_attended(handle: &Handle, agent: &AgentId) {
    let decline = || async {
        let by = Party::Agent(agent.clone());
        match handle.command(by, Command::DeclineVideoNeedsDesk).await {
            Ok(_) => {
                tracing::info!(%agent, interaction = %handle.id, "video declined: the operator is on a mobile")
            }
            // Withdrawn or answered meanwhile.
            Err(e) => tracing::debug!(%agent, interaction = %handle.id, "video not declined: {e}"),
        }
    };
    loop {
        // What is pending now, then every event after it (resubscribing when behind).
        let Ok(summary) = handle.summary().await else {
            return;
        };
        if matches!(summary.phase, Phase::Closing | Phase::Closed)
            || summary.agent.as_deref() != Some(agent.0.as_str())
        {
            return;
        }
        let Ok(mut sub) = handle.subscribe(summary.last_seq).await else {
            return;
        };
        let pending = summary
            .legs
            .iter()
            .any(|l| l.kind == LegKind::Video && l.state == LegState::AwaitingApproval);
        if pending {
            decline().await;
        }
        let mut backlog = std::mem::take(&mut sub.backlog).into_iter();
        loop {
            let event = match backlog.next() {
                Some(event) => event,
                None => match sub.live.recv().await {
                    Ok(event) => event,
                    Err(RecvError::Lagged(_)) => break,
                    Err(RecvError::Closed) => return,
                },
            };
            match &event.kind {
                EventKind::Leg {
                    kind: LegKind::Video,
                    state: LegState::AwaitingApproval,
                    ..
                } => decline().await,
                EventKind::PartyLeft {
                    party: Party::Agent(left),
                    ..
                } if left == agent => return,
                EventKind::TeardownStarted { .. } | EventKind::ChatClosed { .. } => return,
                _ => {}
            }
        }
    }
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The base of links sent by SMS: `http.public_url`, else `http://<listen>`.
pub fn link_base(config: &Config) -> String {
    match &config.http.public_url {
        Some(url) => url.trim_end_matches('/').to_string(),
        None => format!("http://{}", config.http.listen),
    }
}

/// The offer text: who is waiting, then the link, in one GSM-7 segment.
pub fn offer_text(service: &str, customer: &Customer, link: &str) -> String {
    let who = customer
        .name
        .as_deref()
        .or(customer.phone.as_deref())
        .unwrap_or("a customer");
    gsm::one_segment(
        &format!("Tandem: {service} chat waiting from {who}."),
        &format!(" Open: {link}"),
    )
}

/// Texts every SMS offer to the operator's mobile and keeps the links up to date.
pub fn start(routing: &Routing, config: Arc<Config>, links: Links, provider: Provider) {
    let mut offers = routing.mobile_offers();
    let base = link_base(&config);
    tokio::spawn(async move {
        loop {
            match offers.recv().await {
                Ok(MobileOffer::Offered {
                    chat,
                    agent,
                    service,
                    customer,
                    number,
                }) => {
                    let Some(number) = number else {
                        tracing::warn!(%agent, interaction = %chat, "SMS offer to an operator without a mobile number");
                        continue;
                    };
                    let token = match links.offered(Time::now(), &chat, &agent).await {
                        Ok(token) => token,
                        Err(e) => {
                            tracing::error!(%agent, interaction = %chat, "SMS offer not sent, its link cannot be stored: {e}");
                            continue;
                        }
                    };
                    let text = offer_text(&service, &customer, &format!("{base}/m/{token}"));
                    let provider = provider.clone();
                    tracing::info!(%agent, interaction = %chat, "texting an offer");
                    tokio::spawn(async move {
                        if let Err(e) = provider.send(&number, &text).await {
                            tracing::warn!(%agent, interaction = %chat, "SMS offer not sent: {e}");
                        }
                    });
                }
                Ok(MobileOffer::Withdrawn {
                    chat,
                    agent,
                    reason,
                }) => {
                    if let Err(e) = links.withdrawn(&chat, &agent, reason).await {
                        // The link stays `offered` in the store; a claim still asks routing,
                        // which refuses it.
                        tracing::warn!(%agent, interaction = %chat, "withdrawn link not stored: {e}");
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    tracing::error!("the SMS sender missed {n} mobile offers");
                }
                Err(RecvError::Closed) => return,
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> (InteractionId, AgentId) {
        (InteractionId::from("c1"), AgentId::from("olga"))
    }

    /// The link's own refusal, if that is why `result` failed.
    fn refusal<T>(result: Result<T, LinkError>) -> Option<MobileError> {
        match result {
            Err(LinkError::Mobile(e)) => Some(e),
            _ => None,
        }
    }

    #[tokio::test]
    async fn the_first_claim_wins_and_later_ones_are_told_it_is_taken() {
        let links = Links::default();
        let (chat, agent) = ids();
        let token = links.offered(Time(0), &chat, &agent).await.unwrap();
        let claim = links.claim(&token).await.unwrap();
        assert_eq!(claim.chat, chat);
        // The same link again, from a device without the key: it is this operator's already.
        assert_eq!(
            refusal(links.claim(&token).await),
            Some(MobileError::ClaimedElsewhere)
        );
        assert!(links.session(&token, &claim.session).await.is_ok());
        assert_eq!(
            refusal(links.session(&token, "guess").await),
            Some(MobileError::SessionInvalid)
        );
        assert_eq!(
            refusal(links.claim("nope").await),
            Some(MobileError::LinkNotFound)
        );
    }

    #[tokio::test]
    async fn a_claimed_link_moves_to_another_device_and_retires_the_old_key() {
        let links = Links::default();
        let (chat, agent) = ids();
        let token = links.offered(Time(0), &chat, &agent).await.unwrap();
        assert_eq!(
            refusal(links.move_here(&token).await),
            Some(MobileError::NotClaimed)
        );
        let first = links.claim(&token).await.unwrap();
        let moved = links.move_here(&token).await.unwrap();
        assert_eq!((&moved.chat, &moved.agent), (&chat, &agent));
        assert_ne!(moved.session, first.session);
        assert_eq!(
            refusal(links.session(&token, &first.session).await),
            Some(MobileError::SessionInvalid)
        );
        assert!(links.session(&token, &moved.session).await.is_ok());
        // Taken or expired links move nowhere, as they claim nothing.
        let lost = links
            .offered(Time(0), &chat, &AgentId::from("omar"))
            .await
            .unwrap();
        links
            .withdrawn(&chat, &AgentId::from("omar"), WithdrawReason::Taken)
            .await
            .unwrap();
        assert_eq!(
            refusal(links.move_here(&lost).await),
            Some(MobileError::AlreadyTaken)
        );
        assert_eq!(
            refusal(links.move_here("nope").await),
            Some(MobileError::LinkNotFound)
        );
    }

    #[tokio::test]
    async fn a_withdrawn_offer_leaves_a_taken_or_expired_link() {
        let links = Links::default();
        let (chat, agent) = ids();
        let taken = links.offered(Time(0), &chat, &agent).await.unwrap();
        links
            .withdrawn(&chat, &agent, WithdrawReason::Taken)
            .await
            .unwrap();
        assert_eq!(
            refusal(links.claim(&taken).await),
            Some(MobileError::AlreadyTaken)
        );
        let lapsed = links.offered(Time(0), &chat, &agent).await.unwrap();
        links
            .withdrawn(&chat, &agent, WithdrawReason::Timeout)
            .await
            .unwrap();
        assert_eq!(
            refusal(links.claim(&lapsed).await),
            Some(MobileError::LinkExpired)
        );
        // A claimed link stays claimed when the router later withdraws nothing for it.
        let won = links.offered(Time(0), &chat, &agent).await.unwrap();
        let claim = links.claim(&won).await.unwrap();
        links
            .withdrawn(&chat, &agent, WithdrawReason::Ended)
            .await
            .unwrap();
        assert!(links.session(&won, &claim.session).await.is_ok());
    }

    #[test]
    fn the_offer_text_fits_one_gsm7_segment_with_the_link_whole() {
        let link = "https://contact.example.com/m/0123456789abcdef01234567";
        let customer = Customer {
            name: Some("Zoë “Żaneta” Łukasiewicz-Nowak ".repeat(5)),
            ..Customer::default()
        };
        let text = offer_text("claims", &customer, link);
        assert_eq!(gsm::split(&text).count(), 1, "{text}");
        assert_eq!(gsm::encoding(&text), gsm::Encoding::Gsm7);
        assert!(text.starts_with("Tandem: claims chat waiting from Zoe \"Zaneta\""));
        assert!(text.ends_with(link), "{text}");
    }
}
