//! Which INVITEs come from a trunk, and the digest authentication of trunks with credentials.
//!
//! A trunk is trusted for what a carrier vouches for: its caller ids (a call joining a chat by
//! its number), its calls to service numbers and to agents, and its exemption from the
//! per-source INVITE budgets. A `[[sip.trunks]]` entry without credentials is recognised by its
//! source address alone. One with `username` and `password` must prove them on every INVITE
//! (its addresses then only say where calls to it go), or have registered them from the
//! address the INVITE comes from (the registrar's binding says where the trunk is).
//!
//! The challenge is `407 Proxy Authentication Required` with `Proxy-Authenticate`, answered
//! with `Proxy-Authorization` (RFC 3261 §22.3), not the `401`/`WWW-Authenticate` of
//! user-to-user authentication (§22.2). What is asked is whether this carrier may have calls
//! carried through the gateway (to an agent's softphone, into a service's queue) — admission
//! to a hop, which is what §22.3 gives servers that forward requests — not who the caller is
//! at an endpoint; `Authorization` stays an end-to-end credential that a B2BUA neither
//! consumes nor asks for on behalf of the phone it rings. It is also what carriers' equipment
//! expects of a SIP gateway or SBC, and a UAC answers either challenge the same way
//! (RFC 3261 §8.1.3.5). REGISTER keeps its `401` (§10.3).
//!
//! Nonces, replay protection and the back-off per user name and source are the registrar's
//! ([`Registrar::authenticate_trunk`](crate::sip::registrar::Registrar::authenticate_trunk)):
//! a trunk's password guessed over INVITEs locks the same way as an agent's over REGISTER, and
//! a locked source gets `403` with `Retry-After` before anything is hashed. A wrong password
//! never yields trunk treatment: the INVITE is refused `403` outright.

use std::time::{Duration, Instant};

use rsipstack::sip::{Header, Request};

use super::SipCore;
use crate::sip::digest::AuthError;
use crate::sip::message::{insert_before_length, response, status_with_reason};
use crate::sip::peer::Peer;
use crate::sip::registrar::RegisterError;
use crate::sip::transaction::ServerTxId;

/// Why an INVITE that claims to come from a trunk was not taken as the trunk's. Mapped to a
/// status in [`SipCore::refuse_trunk`] alone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TrunkAuthError {
    /// The request needs a trunk and proves none, or its credentials answer no challenge of
    /// ours: `407` with fresh challenges (`stale=true` when only the nonce had expired).
    #[error("trunk authentication required (stale: {stale})")]
    Challenge { stale: bool },
    /// A `Proxy-Authorization` we cannot read, or whose `uri` names another resource (`400`).
    #[error("malformed trunk credentials: {0}")]
    BadCredentials(AuthError),
    /// A wrong password, or a user name that is no trunk's (`403`).
    #[error("wrong trunk credentials")]
    WrongCredentials,
    /// The user name or the source failed too often and is locked for `retry_after`; nothing
    /// was checked (`403` with `Retry-After`, as the registrar answers).
    #[error("locked after failed attempts for {retry_after:?}")]
    Locked { retry_after: Duration },
}

impl From<RegisterError> for TrunkAuthError {
    fn from(err: RegisterError) -> TrunkAuthError {
        match err {
            RegisterError::Challenge { stale } => TrunkAuthError::Challenge { stale },
            RegisterError::BadAuthorization(e) => TrunkAuthError::BadCredentials(e),
            RegisterError::Locked { retry_after } => TrunkAuthError::Locked { retry_after },
            // Nothing else comes out of a digest check; refuse rather than trust.
            _ => TrunkAuthError::WrongCredentials,
        }
    }
}

impl SipCore {
    /// Whether the INVITE `req` from `peer` is a trunk's: it proves a trunk's credentials, or
    /// comes from the address of a trunk without credentials, or from where a trunk with
    /// credentials registered. Credentials that are present and wrong are an error even from a
    /// trunk's address.
    pub(super) fn trunk_claim(
        &mut self,
        now: Instant,
        req: &Request,
        peer: Peer,
    ) -> Result<bool, TrunkAuthError> {
        if let Some(name) = self.registrar.authenticate_trunk(now, req, peer.addr)? {
            tracing::debug!(trunk = %name, source = %peer.addr, "trunk authenticated");
            return Ok(true);
        }
        let by_address = self
            .config
            .trunks
            .iter()
            .any(|t| t.credentials().is_none() && t.matches(peer.addr));
        Ok(by_address || self.registrar.registered_trunk(now, peer.addr).is_some())
    }

    /// An INVITE that needs a trunk and does not come from one: challenged when some trunk
    /// could prove itself with credentials (after the source's INVITE budget, like any
    /// stranger's), else refused `403` with `why`.
    pub(super) fn not_a_trunk(
        &mut self,
        now: Instant,
        tx: ServerTxId,
        req: &Request,
        peer: Peer,
        why: &str,
    ) {
        if !self.registrar.has_trunk_credentials() {
            let tag = self.ids.tag();
            return self.refuse(now, tx, req, &tag, 403, why);
        }
        if self.admit_invite(now, tx, req, peer, false) {
            self.refuse_trunk(now, tx, req, TrunkAuthError::Challenge { stale: false });
        }
    }

    /// The one place a [`TrunkAuthError`] becomes a response.
    pub(super) fn refuse_trunk(
        &mut self,
        now: Instant,
        tx: ServerTxId,
        req: &Request,
        err: TrunkAuthError,
    ) {
        tracing::debug!(error = %err, "trunk INVITE refused");
        let (status, extra) = match err {
            TrunkAuthError::Challenge { stale } => (
                status_with_reason(407, "Proxy Authentication Required"),
                self.registrar
                    .trunk_challenges(now, stale)
                    .into_iter()
                    .map(|c| Header::ProxyAuthenticate(rsipstack::sip::ProxyAuthenticate::new(c)))
                    .collect(),
            ),
            TrunkAuthError::BadCredentials(AuthError::UriMismatch) => (
                status_with_reason(400, "Digest URI Does Not Match Request-URI"),
                vec![],
            ),
            TrunkAuthError::BadCredentials(_) => (
                status_with_reason(400, "Malformed Proxy-Authorization"),
                vec![],
            ),
            TrunkAuthError::WrongCredentials => (status_with_reason(403, "Forbidden"), vec![]),
            TrunkAuthError::Locked { retry_after } => {
                // Whole seconds, rounded up: a client retrying on time finds the lock gone.
                let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                (
                    status_with_reason(403, "Too Many Failed Attempts"),
                    vec![Header::RetryAfter(rsipstack::sip::RetryAfter::new(
                        secs.to_string(),
                    ))],
                )
            }
        };
        let tag = self.ids.tag();
        let mut resp = response(req, status, Some(&tag));
        insert_before_length(&mut resp.headers, extra);
        let resp = self.decorate(resp);
        self.reply(now, tx, resp);
    }
}
