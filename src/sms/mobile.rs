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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;

use super::gsm;
use super::provider::Provider;
use crate::bridge::{AgentId, Customer, InteractionId, Time, random_hex};
use crate::config::Config;
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
}

impl MobileError {
    pub fn code(&self) -> &'static str {
        match self {
            MobileError::LinkNotFound => "link_not_found",
            MobileError::AlreadyTaken => "already_taken",
            MobileError::LinkExpired => "link_expired",
            MobileError::SessionInvalid => "session_invalid",
        }
    }
}

/// Where one link stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LinkState {
    Offered,
    Claimed { session: String },
    Taken,
    Expired,
}

#[derive(Debug, Clone)]
struct Link {
    chat: InteractionId,
    agent: AgentId,
    state: LinkState,
    since: Time,
}

#[derive(Default)]
struct Table {
    links: HashMap<String, Link>,
    by_offer: HashMap<(InteractionId, AgentId), String>,
}

/// Links are forgotten this long after they were sent.
const KEEP: Duration = Duration::from_secs(48 * 3600);

/// Every link of this node. Cheap to clone.
#[derive(Clone, Default)]
pub struct Links {
    table: Arc<Mutex<Table>>,
}

/// A claimed link: the chat, the operator, and the key for the chat API.
#[derive(Debug, Clone)]
pub struct Claim {
    pub chat: InteractionId,
    pub agent: AgentId,
    pub session: String,
}

impl Links {
    /// A new link for an SMS offer.
    pub fn offered(&self, now: Time, chat: &InteractionId, agent: &AgentId) -> String {
        // 96 random bits: unguessable, and short enough to leave room in one SMS.
        let token = random_hex(12);
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
        let link = Link {
            chat: chat.clone(),
            agent: agent.clone(),
            state: LinkState::Offered,
            since: now,
        };
        t.links.insert(token.clone(), link);
        t.by_offer
            .insert((chat.clone(), agent.clone()), token.clone());
        token
    }

    /// The offer behind a link ended: taken by someone else, or expired.
    pub fn withdrawn(&self, chat: &InteractionId, agent: &AgentId, reason: WithdrawReason) {
        let mut t = self.table.lock().expect("links");
        let Some(token) = t.by_offer.get(&(chat.clone(), agent.clone())).cloned() else {
            return;
        };
        if let Some(link) = t.links.get_mut(&token)
            && link.state == LinkState::Offered
        {
            link.state = match reason {
                WithdrawReason::Taken => LinkState::Taken,
                _ => LinkState::Expired,
            };
        }
    }

    /// Starts a claim: the first one for a standing offer gets a session, every other is
    /// refused. The caller then accepts the chat and reports a failure with [`Links::lost`].
    pub fn claim(&self, token: &str) -> Result<Claim, MobileError> {
        let mut t = self.table.lock().expect("links");
        let link = t.links.get_mut(token).ok_or(MobileError::LinkNotFound)?;
        match link.state {
            LinkState::Offered => {
                let session = random_hex(16);
                link.state = LinkState::Claimed {
                    session: session.clone(),
                };
                Ok(Claim {
                    chat: link.chat.clone(),
                    agent: link.agent.clone(),
                    session,
                })
            }
            LinkState::Claimed { .. } | LinkState::Taken => Err(MobileError::AlreadyTaken),
            LinkState::Expired => Err(MobileError::LinkExpired),
        }
    }

    /// The claim could not accept the chat: someone else was faster.
    pub fn lost(&self, token: &str) {
        self.ended(token, MobileError::AlreadyTaken);
    }

    /// The claim found the offer over: later claims get the same answer.
    pub fn ended(&self, token: &str, why: MobileError) {
        if let Some(link) = self.table.lock().expect("links").links.get_mut(token) {
            link.state = match why {
                MobileError::LinkExpired => LinkState::Expired,
                _ => LinkState::Taken,
            };
        }
    }

    /// The chat and operator of a claimed link, if `session` is its key.
    pub fn session(&self, token: &str, session: &str) -> Result<Claim, MobileError> {
        let t = self.table.lock().expect("links");
        let link = t.links.get(token).ok_or(MobileError::LinkNotFound)?;
        match &link.state {
            LinkState::Claimed { session: key } if constant_time_eq(key, session) => Ok(Claim {
                chat: link.chat.clone(),
                agent: link.agent.clone(),
                session: key.clone(),
            }),
            _ => Err(MobileError::SessionInvalid),
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
                }) => {
                    let Some(number) = config.agent(&agent.0).and_then(|a| a.mobile.clone()) else {
                        tracing::warn!(%agent, interaction = %chat, "SMS offer to an operator without a mobile number");
                        continue;
                    };
                    let token = links.offered(Time::now(), &chat, &agent);
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
                }) => links.withdrawn(&chat, &agent, reason),
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

    #[test]
    fn the_first_claim_wins_and_later_ones_are_told_it_is_taken() {
        let links = Links::default();
        let (chat, agent) = ids();
        let token = links.offered(Time(0), &chat, &agent);
        let claim = links.claim(&token).unwrap();
        assert_eq!(claim.chat, chat);
        assert_eq!(links.claim(&token).unwrap_err(), MobileError::AlreadyTaken);
        assert!(links.session(&token, &claim.session).is_ok());
        assert_eq!(
            links.session(&token, "guess").unwrap_err(),
            MobileError::SessionInvalid
        );
        assert_eq!(links.claim("nope").unwrap_err(), MobileError::LinkNotFound);
    }

    #[test]
    fn a_withdrawn_offer_leaves_a_taken_or_expired_link() {
        let links = Links::default();
        let (chat, agent) = ids();
        let taken = links.offered(Time(0), &chat, &agent);
        links.withdrawn(&chat, &agent, WithdrawReason::Taken);
        assert_eq!(links.claim(&taken).unwrap_err(), MobileError::AlreadyTaken);
        let lapsed = links.offered(Time(0), &chat, &agent);
        links.withdrawn(&chat, &agent, WithdrawReason::Timeout);
        assert_eq!(links.claim(&lapsed).unwrap_err(), MobileError::LinkExpired);
        // A claimed link stays claimed when the router later withdraws nothing for it.
        let won = links.offered(Time(0), &chat, &agent);
        let claim = links.claim(&won).unwrap();
        links.withdrawn(&chat, &agent, WithdrawReason::Ended);
        assert!(links.session(&won, &claim.session).is_ok());
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
