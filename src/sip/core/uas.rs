//! The held INVITEs and the one way to answer them.
//!
//! Every INVITE the core takes (one to `echo`, one naming an interaction, one to a service
//! number, a trunk's call to an agent's softphone) is held as a [`HeldInvite`] until its user
//! decides; whoever answers it goes through [`SipCore::answer_held`], which makes the dialog,
//! sends the 200 with our Contact, capabilities and session-timer headers, retransmits it until
//! the ACK (RFC 3261 §13.3.1.4), opens the call's media leg and keeps the call. The users
//! differ only in what they do with the media afterwards: echo it, bridge it to a local leg, or
//! bridge it to the agent's leg.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use rsipstack::sip::Request;

use super::{Call, SipCore};
use crate::sip::dialog::{Dialog, DialogId};
use crate::sip::message::{response, status_with_reason};
use crate::sip::peer::Peer;
use crate::sip::sdp::{self, LocalMedia, SdpSession};
use crate::sip::transaction::ServerTxId;
use crate::sip::wire::Meta;

/// An INVITE we have not answered finally yet: what its answer and its dialog are made of.
#[derive(Debug)]
pub(super) struct HeldInvite {
    pub(super) request: Request,
    pub(super) meta: Meta,
    pub(super) peer: Peer,
    /// Our To tag, sent with every provisional response already.
    pub(super) local_tag: String,
    pub(super) sdp: SdpSession,
    /// Our side of the call's media; its RTP port is taken from the pool and goes back to it
    /// when the call ends, or at once when the INVITE is refused.
    pub(super) media: LocalMedia,
}

/// An INVITE held for `echo`'s ring or for the application.
#[derive(Debug)]
pub(super) struct PendingInvite {
    pub(super) held: HeldInvite,
    pub(super) answer_at: Instant,
    /// The SDP to send in the 200, prepared when the INVITE arrived.
    pub(super) answer: Option<Vec<u8>>,
    /// Where the offer says the caller receives RTP.
    pub(super) remote: Option<SocketAddr>,
    /// The telephone-event payload type both sides agreed on.
    pub(super) dtmf_pt: Option<u8>,
    /// The codec the answer chose (none for a delayed offer).
    pub(super) codec: Option<sdp::Codec>,
    /// Waiting for the application (an interaction's call, a service call, a call to an
    /// agent), not for the echo's ring.
    pub(super) incoming: bool,
}

/// The INVITEs held unanswered, by their server transaction. Only this file changes them.
#[derive(Debug, Default)]
pub(super) struct HeldInvites {
    by_tx: HashMap<ServerTxId, PendingInvite>,
}

impl HeldInvites {
    pub(super) fn insert(&mut self, tx: ServerTxId, pending: PendingInvite) {
        self.by_tx.insert(tx, pending);
    }

    pub(super) fn get(&self, tx: &ServerTxId) -> Option<&PendingInvite> {
        self.by_tx.get(tx)
    }

    /// Takes the INVITE out to answer or refuse it.
    pub(super) fn remove(&mut self, tx: &ServerTxId) -> Option<PendingInvite> {
        self.by_tx.remove(tx)
    }

    /// Takes the INVITE out if it waits for the application (not for echo's ring).
    pub(super) fn take_for_application(&mut self, tx: &ServerTxId) -> Option<PendingInvite> {
        match self.by_tx.get(tx) {
            Some(pending) if pending.incoming => self.by_tx.remove(tx),
            _ => None,
        }
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &PendingInvite> {
        self.by_tx.values()
    }

    pub(super) fn len(&self) -> usize {
        self.by_tx.len()
    }
}

impl SipCore {
    /// Answers a held INVITE with `body` (our SDP) and keeps the call it makes, with its media
    /// leg open towards `remote`. `None` when the INVITE cannot make a dialog (no Contact): it
    /// is answered 400 and its port freed.
    pub(super) fn answer_held(
        &mut self,
        now: Instant,
        tx: ServerTxId,
        held: HeldInvite,
        body: Vec<u8>,
        remote: Option<SocketAddr>,
    ) -> Option<DialogId> {
        let HeldInvite {
            request,
            meta,
            peer,
            local_tag,
            sdp,
            media,
        } = held;
        let Some(dialog) = Dialog::uas(&request, &meta, &local_tag, peer) else {
            self.release_leg(media.rtp_port);
            let resp = response(
                &request,
                status_with_reason(400, "Missing Contact"),
                Some(&local_tag),
            );
            self.reply(now, tx, resp);
            return None;
        };
        let id = dialog.id.clone();
        let ok = self.ok_with_sdp(&request, &local_tag, peer.transport, body);
        let state = self.await_ack(now, &id, &ok, meta.cseq);
        self.reply(now, tx, ok);
        self.open_leg(media.rtp_port, remote, peer.addr, &id);
        self.start_session_timer(now, &id, &request);
        self.keep_call(
            id.clone(),
            Call {
                dialog,
                state,
                sdp,
                media,
                outgoing: None,
            },
        );
        Some(id)
    }
}
