//! What one source may make us hold with INVITEs.
//!
//! Every out-of-dialog INVITE that the core would answer costs an RTP port and a dialog, so a
//! single address sending INVITEs and never ACKing could hold the whole port pool (and deny
//! every other caller). Two budgets per source address stop that, both before anything is
//! allocated:
//!
//! - a **rate**: a token bucket per address ([`crate::guard::Rate`]);
//! - a cap on its **unconfirmed calls**: ringing, or answered and still waiting for the ACK.
//!   A real caller ACKs within a round trip, so a legitimate phone or proxy rarely has more
//!   than a few; a flood of INVITEs without ACK reaches the cap at once.
//!
//! Over either, the INVITE gets `503 Service Unavailable` with `Retry-After` (RFC 3261
//! §21.5.4): the server is unable to take this client's request *for now*, and a client that
//! receives it "SHOULD NOT forward any other requests to that server for the duration
//! specified in the Retry-After". That is the back-off we want from the source, and only from
//! it. `486 Busy Here` would say the callee is busy (§21.4.24), which a caller shows to its user
//! as a busy line and which says nothing about when to try again.
//!
//! Configured trunks are exempt: one carrier address carries every customer's calls, its
//! caller ids are vouched for, and the global `max_calls` bounds it. A trunk with credentials
//! is exempt only on INVITEs that proved them (or from where it registered): a wrong password
//! gets no exemption.
//!
//! An echo call answered but never confirmed also gives its RTP port back after
//! [`InviteLimits::release_media_after`], long before RFC 3261's 64·T1 wait for the ACK ends
//! (§13.3.1.4): by then the 2xx has been sent five times, and an ACK that still has not come is
//! not coming. The dialog itself waits the full 64·T1 (a UAS must not send BYE before the ACK
//! or that timeout, §15); a late ACK confirms a call without media, which gets a BYE at once.

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use rsipstack::sip::{Header, Request, StatusCode};

use super::{CallState, CoreTimer, SipCore};
use crate::sip::dialog::DialogId;
use crate::sip::message::response;
use crate::sip::message::status_with_reason;
use crate::sip::peer::Peer;
use crate::sip::transaction::ServerTxId;
use std::cmp::Reverse;

/// See the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InviteLimits {
    /// INVITEs per minute from one source, after `burst`.
    pub per_minute: u32,
    pub burst: u32,
    /// Calls from one source ringing or waiting for their ACK.
    pub max_unconfirmed: usize,
    /// How long an answered echo call keeps its RTP port without an ACK.
    pub release_media_after: Duration,
}

impl Default for InviteLimits {
    fn default() -> Self {
        InviteLimits {
            per_minute: 600,
            burst: 100,
            max_unconfirmed: 32,
            release_media_after: Duration::from_secs(8),
        }
    }
}

/// Why an INVITE from a source was refused (the `reason` label of `tandem_refusals_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SourceRefusal {
    /// The source sent INVITEs faster than its rate.
    InviteRate,
    /// The source has too many calls not confirmed by an ACK.
    Unconfirmed,
}

impl SourceRefusal {
    const ALL: [SourceRefusal; 2] = [SourceRefusal::InviteRate, SourceRefusal::Unconfirmed];

    /// The stable name counted in metrics.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            SourceRefusal::InviteRate => "sip_invite_rate",
            SourceRefusal::Unconfirmed => "sip_unconfirmed_calls",
        }
    }

    fn phrase(self) -> &'static str {
        match self {
            SourceRefusal::InviteRate => "Too Many Calls From This Address",
            SourceRefusal::Unconfirmed => "Too Many Unconfirmed Calls From This Address",
        }
    }
}

/// Remembered sources at most: a spray of addresses forgets the idlest (see `Rate`).
const SOURCES_REMEMBERED: usize = 100_000;

pub(super) fn invite_rate(limits: &InviteLimits) -> crate::guard::Rate<IpAddr> {
    crate::guard::Rate::new(limits.per_minute, limits.burst, SOURCES_REMEMBERED)
}

/// What sources may make us hold, and what was refused. Only this file changes it.
#[derive(Debug)]
pub(super) struct Admission {
    /// INVITEs per source address.
    invite_rate: crate::guard::Rate<IpAddr>,
    /// INVITEs refused per source, by [`SourceRefusal`], since the driver last took them.
    refusals: [u64; 2],
    /// INVITEs refused because the gateway had `max_calls` calls.
    over_limit: u64,
    /// Answered calls whose RTP port went back to the pool while their ACK was overdue.
    released: HashSet<DialogId>,
}

impl Admission {
    pub(super) fn new(limits: &InviteLimits) -> Admission {
        Admission {
            invite_rate: invite_rate(limits),
            refusals: [0; 2],
            over_limit: 0,
            released: HashSet::new(),
        }
    }

    pub(super) fn over_limit(&self) -> u64 {
        self.over_limit
    }

    /// Whether the call's RTP port went back to the pool before its ACK came.
    pub(super) fn media_released(&self, id: &DialogId) -> bool {
        self.released.contains(id)
    }

    /// The call ended: forgets it, saying whether its port went back to the pool already.
    pub(super) fn forget_released(&mut self, id: &DialogId) -> bool {
        self.released.remove(id)
    }
}

impl SipCore {
    /// Whether the gateway is at `max_calls`: then the INVITE is answered `503` with
    /// `Retry-After` here and counted. New calls wait, existing calls carry on (RFC 3261
    /// §21.5.4).
    pub(super) fn over_call_limit(&mut self, now: Instant, tx: ServerTxId, req: &Request) -> bool {
        if self.calls.len() + self.pending.len() < self.config.max_calls {
            return false;
        }
        self.admission.over_limit += 1;
        let tag = self.ids.tag();
        let mut resp = response(req, StatusCode::ServiceUnavailable, Some(&tag));
        resp.headers
            .push(Header::RetryAfter(rsipstack::sip::RetryAfter::new(
                self.config.retry_after_s.to_string(),
            )));
        let resp = self.decorate(resp);
        self.reply(now, tx, resp);
        true
    }

    /// Whether an out-of-dialog INVITE from `peer` may take a call; when not, it is answered
    /// `503` with `Retry-After` here and counted. A `trunk`'s INVITE (see `trunk_auth`) is
    /// exempt.
    pub(super) fn admit_invite(
        &mut self,
        now: Instant,
        tx: ServerTxId,
        req: &Request,
        peer: Peer,
        trunk: bool,
    ) -> bool {
        if trunk {
            return true;
        }
        let source = peer.addr.ip();
        let refusal = if self.unconfirmed_from(source) >= self.config.invites.max_unconfirmed {
            let wait = self
                .config
                .invites
                .release_media_after
                .max(Duration::from_secs(u64::from(self.config.retry_after_s)));
            Some((SourceRefusal::Unconfirmed, wait))
        } else {
            self.admission
                .invite_rate
                .take(&source, now)
                .err()
                .map(|wait| (SourceRefusal::InviteRate, wait))
        };
        let Some((refusal, wait)) = refusal else {
            return true;
        };
        let slot = SourceRefusal::ALL
            .iter()
            .position(|r| *r == refusal)
            .expect("listed");
        self.admission.refusals[slot] += 1;
        tracing::debug!(%source, reason = refusal.reason(), "INVITE refused");
        let tag = self.ids.tag();
        let mut resp = response(req, status_with_reason(503, refusal.phrase()), Some(&tag));
        // Whole seconds, rounded up (RFC 3261 §20.33), and at least one.
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        resp.headers
            .push(Header::RetryAfter(rsipstack::sip::RetryAfter::new(
                seconds.max(1).to_string(),
            )));
        let resp = self.decorate(resp);
        self.reply(now, tx, resp);
        false
    }

    /// Calls from `source` that are ringing or answered without an ACK yet.
    fn unconfirmed_from(&self, source: IpAddr) -> usize {
        let pending = self
            .pending
            .values()
            .filter(|p| p.held.peer.addr.ip() == source)
            .count();
        let unacked = self
            .calls
            .values()
            .filter(|c| {
                matches!(c.state, CallState::AwaitingAck { .. })
                    && c.dialog.peer.addr.ip() == source
            })
            .count();
        pending + unacked
    }

    /// Refusals by reason since the last call (for `tandem_refusals_total`).
    pub(crate) fn take_source_refusals(&mut self) -> [(SourceRefusal, u64); 2] {
        let counts = std::mem::take(&mut self.admission.refusals);
        [
            (SourceRefusal::ALL[0], counts[0]),
            (SourceRefusal::ALL[1], counts[1]),
        ]
    }

    /// Arms the early release of an answered call's RTP port, should its ACK not come.
    pub(super) fn release_media_unless_acked(&mut self, now: Instant, id: &super::DialogId) {
        let at = now + self.config.invites.release_media_after;
        self.timers
            .push(Reverse((at, CoreTimer::ReleaseUnackedMedia(id.clone()))));
    }

    /// The ACK is overdue: the call gives its port back (its dialog waits on, see the module
    /// docs).
    pub(super) fn release_unacked_media(&mut self, id: &super::DialogId) {
        let Some(call) = self.calls.get(id) else {
            return;
        };
        if !matches!(call.state, CallState::AwaitingAck { .. })
            || self.admission.released.contains(id)
        {
            return;
        }
        let port = call.media.rtp_port;
        self.admission.released.insert(id.clone());
        tracing::info!(call_id = %id.call_id, port, "no ACK yet; media port released");
        self.release_leg(port);
    }
}
