//! The held INVITEs and the one way to answer them.
//!
//! Every INVITE the core takes (one to `echo`, one naming an interaction, one to a service
//! number, a trunk's call to an agent's softphone) is held as a [`HeldInvite`] until its user
//! decides; whoever answers it goes through [`SipCore::answer_held`], which makes the dialog,
//! sends the 200 with our Contact, capabilities and session-timer headers, retransmits it until
//! the ACK (RFC 3261 §13.3.1.4), opens the call's media leg and keeps the call. The users
//! differ only in what they do with the media afterwards: echo it, bridge it to a local leg, or
//! bridge it to the agent's leg.

use std::net::SocketAddr;
use std::time::Instant;

use rsipstack::sip::Request;

use super::{Call, SipCore};
use crate::sip::dialog::{Dialog, DialogId};
use crate::sip::message::{response, status_with_reason};
use crate::sip::peer::Peer;
use crate::sip::sdp::{LocalMedia, SdpSession};
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
        let session_expires = self.start_session_timer(now, &id, &request);
        self.calls.insert(
            id.clone(),
            Call {
                dialog,
                state,
                sdp,
                media,
                outgoing: None,
                session_expires,
                media_released: false,
            },
        );
        Some(id)
    }
}
