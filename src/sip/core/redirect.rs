//! A call that names an interaction another node owns is sent there with a redirect.
//!
//! In a cluster each interaction is owned by one node at a time (a lease in the shared store).
//! A call that names it (`X-Interaction-Id`, RFC 7433 `User-to-User`) may reach any node; one
//! that does not own it answers `302 Moved Temporarily` with the owner's SIP address in
//! Contact (RFC 3261 §21.3.3), and the proxy in front of the nodes (Kamailio, which follows
//! redirects) tries the owner. The owner is decided in the store and changes when a node dies
//! and another takes over; every node can ask the store, while a proxy routing on the header
//! would need its own database round trip and a copy of the lease rules.
//!
//! The core only answers: whether a held call goes to the application or to its owner is the
//! driver's question to [`crate::sip::owners::Owners`], which needs the store, so it is asked
//! outside the core.

use std::time::Instant;

use rsipstack::sip::{Header, Uri};

use super::SipCore;
use crate::sip::message::{insert_before_length, response, status_with_reason};
use crate::sip::transaction::ServerTxId;

impl SipCore {
    /// Answers the held INVITE `incoming` (one announced as [`super::CoreEvent::Incoming`])
    /// with 302 and `owner` as its Contact, and frees its RTP port. The ACK of the 302 is the
    /// server transaction's business (RFC 3261 §17.2.1): it stops the retransmissions. An
    /// INVITE no longer held (answered, refused, cancelled) is left alone.
    pub fn redirect_incoming(&mut self, now: Instant, incoming: ServerTxId, owner: &Uri) {
        let Some(pending) = self.pending.remove(&incoming) else {
            return;
        };
        self.release_leg(pending.held.media.rtp_port);
        let request = &pending.held.request;
        let contact = redirect_target(&request.uri, owner);
        let mut resp = response(
            request,
            status_with_reason(302, "Moved Temporarily"),
            Some(&pending.held.local_tag),
        );
        insert_before_length(
            &mut resp.headers,
            vec![Header::Contact(rsipstack::sip::Contact::new(format!(
                "<{contact}>"
            )))],
        );
        let resp = self.decorate(resp);
        self.reply(now, incoming, resp);
        self.drain_transactions(now);
    }
}

/// The owner's address, with the user part the caller dialled when the owner's has none, so
/// that the retried INVITE dials the same number at the owner.
pub fn redirect_target(dialled: &Uri, owner: &Uri) -> Uri {
    let mut target = owner.clone();
    if target.auth.is_none() {
        target.auth = dialled.auth.as_ref().map(|auth| rsipstack::sip::uri::Auth {
            user: auth.user.clone(),
            password: None,
        });
    }
    target
}
