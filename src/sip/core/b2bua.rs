//! Bridged calls (a back-to-back user agent): an INVITE from a trunk to an agent's number
//! becomes a second call, with its own Call-ID and tags, to the agent's registered softphone;
//! media of both legs is anchored in the relay.
//!
//! The caller's INVITE stays unanswered while the softphone rings: its provisional responses
//! are relayed, its answer completes both dialogs and bridges the media, its failure is mapped
//! to a status for the caller, and the caller's CANCEL (or the agent's no-answer timeout)
//! cancels it. Once both dialogs are up they are partners: a BYE on one ends the other, and a
//! hold or resume on one is offered to the other.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use rsipstack::sip::{Header, Method, Request, StatusCode};

use super::uas::HeldInvite;
use super::{CallRef, Reverse};
use super::{CallState, ClientPurpose, CoreTimer, MediaCommand, OutgoingCall, SipCore, UacOutcome};
use crate::sip::dialog::{DialogId, addr_spec};
use crate::sip::message::{response, status_with_reason};
use crate::sip::peer::Peer;
use crate::sip::sdp::{self, Codec, Direction, LocalMedia, SdpSession};
use crate::sip::transaction::ServerTxId;
use crate::sip::wire::Meta;

/// A caller's INVITE waiting for the agent's softphone.
#[derive(Debug)]
pub(super) struct PendingBridge {
    tx: ServerTxId,
    /// The caller's INVITE; its media is our RTP port towards the caller.
    held: HeldInvite,
    offer: String,
    /// Where the caller receives RTP.
    remote: SocketAddr,
    /// The codec we would answer the caller with on our own: its first one we support.
    codec: Codec,
    deadline: Instant,
    /// Set once the caller has its final answer (CANCEL, no answer); the agent's leg is being
    /// cancelled and its final response only cleans up.
    finished: bool,
}

/// The bridges waiting for their agent, each found by the caller's INVITE transaction too.
/// Only this file changes them.
#[derive(Debug, Default)]
pub(super) struct Bridges {
    pending: HashMap<CallRef, PendingBridge>,
    by_tx: HashMap<ServerTxId, CallRef>,
}

impl Bridges {
    fn insert(&mut self, call: CallRef, bridge: PendingBridge) {
        self.by_tx.insert(bridge.tx, call);
        self.pending.insert(call, bridge);
    }

    fn remove(&mut self, call: CallRef) -> Option<PendingBridge> {
        let bridge = self.pending.remove(&call)?;
        self.by_tx.remove(&bridge.tx);
        Some(bridge)
    }

    /// The bridge whose caller's INVITE is `tx`.
    pub(super) fn of_tx(&self, tx: ServerTxId) -> Option<CallRef> {
        self.by_tx.get(&tx).copied()
    }

    pub(super) fn len(&self) -> usize {
        self.pending.len()
    }
}

impl SipCore {
    pub(super) fn reply_no_ports(&mut self, now: Instant, tx: ServerTxId, req: &Request) {
        let tag = self.ids.tag();
        let resp = response(req, status_with_reason(503, "No Media Ports"), Some(&tag));
        let resp = self.decorate(resp);
        self.reply(now, tx, resp);
    }

    /// An INVITE to an agent's number: only trunks (`trunk`, see `trunk_auth`) may call
    /// agents directly.
    pub(super) fn bridge_to_agent(
        &mut self,
        now: Instant,
        tx: ServerTxId,
        req: Request,
        meta: Meta,
        peer: Peer,
        trunk: bool,
    ) {
        let user = req
            .uri
            .auth
            .as_ref()
            .map(|a| a.user.clone())
            .unwrap_or_default();
        if !trunk {
            return self.not_a_trunk(now, tx, &req, peer, "Not From A Trunk");
        }
        let Some(binding) = self.registrar.lookup(now, &user).into_iter().next() else {
            let status = status_with_reason(480, "Agent Not Registered");
            return self.reply_status(now, tx, &req, status);
        };
        if req.body.is_empty() {
            // Without the caller's offer we could not offer the agent a matching codec.
            let status = status_with_reason(488, "Offer Required");
            return self.reply_status(now, tx, &req, status);
        }
        let Some(port) = self.ports.allocate() else {
            return self.reply_no_ports(now, tx, &req);
        };
        let offer = String::from_utf8_lossy(&req.body).into_owned();
        let probe_media = LocalMedia {
            addr: self.config.advertised.ip(),
            rtp_port: port,
            codecs: Vec::new(),
            telephone_event: true,
        };
        let session = SdpSession::new(self.ids.next_u64());
        let probe = match sdp::answer(&offer, &probe_media, &mut session.clone()) {
            Ok(answer) => answer.media,
            Err(e) => {
                self.ports.release(port);
                let status = status_with_reason(e.sip_status(), &e.to_string());
                return self.reply_status(now, tx, &req, status);
            }
        };
        let (Some(agent_port), Ok(target)) = (
            self.ports.allocate(),
            rsipstack::sip::parse_uri(&binding.contact),
        ) else {
            self.ports.release(port);
            return self.reply_no_ports(now, tx, &req);
        };
        let agent_peer = super::binding_peer(&binding);
        // The agent is offered the caller's codec first, so that no transcoding is needed.
        let other = if probe.codec == Codec::Pcmu {
            Codec::Pcma
        } else {
            Codec::Pcmu
        };
        let from = caller_id(&req);
        let call = self.place_call(
            now,
            OutgoingCall {
                target,
                to_uri: Some(self.aor(&user)),
                to: agent_peer,
                from,
                rtp_port: agent_port,
                codecs: vec![probe.codec, other],
                extra_headers: Vec::new(),
            },
        );
        let Some(call) = call else {
            self.ports.release(port);
            self.ports.release(agent_port);
            let status = status_with_reason(500, "Cannot Reach Agent");
            return self.reply_status(now, tx, &req, status);
        };
        let deadline = now + self.config.agent_answer_timeout;
        self.timers
            .push(Reverse((deadline, CoreTimer::NoAnswer(call))));
        self.bridges.insert(
            call,
            PendingBridge {
                tx,
                held: HeldInvite {
                    request: req,
                    meta,
                    peer,
                    local_tag: self.ids.tag(),
                    sdp: session,
                    media: probe_media,
                },
                offer,
                remote: probe.remote_rtp,
                codec: probe.codec,
                deadline,
                finished: false,
            },
        );
    }

    /// What became of a bridge's agent leg, when `call` is one: true when handled here.
    pub(super) fn bridge_outcome(
        &mut self,
        now: Instant,
        call: CallRef,
        outcome: &UacOutcome,
    ) -> bool {
        if !self.bridges.pending.contains_key(&call) {
            return false;
        }
        match outcome {
            UacOutcome::Progress(code) => self.relay_progress(now, call, *code),
            UacOutcome::Answered(dialog) => self.complete_bridge(now, call, dialog.clone()),
            UacOutcome::Failed(code) => self.fail_bridge(now, call, *code),
        }
        true
    }

    /// The agent's phone rings: so does the caller's (the 100 went out already).
    fn relay_progress(&mut self, now: Instant, call: CallRef, code: u16) {
        let Some(bridge) = self.bridges.pending.get(&call) else {
            return;
        };
        if code == 100 || bridge.finished {
            return;
        }
        let held = &bridge.held;
        let mut ringing = response(&held.request, code.into(), Some(&held.local_tag));
        ringing
            .headers
            .push(Header::Contact(rsipstack::sip::Contact::new(
                self.contact(held.peer.transport),
            )));
        crate::sip::message::copy_record_route(&held.request, &mut ringing);
        let (tx, ringing) = (bridge.tx, self.decorate(ringing));
        self.reply(now, tx, ringing);
    }

    /// The agent answered: answer the caller, bridge the media, make the dialogs partners.
    fn complete_bridge(&mut self, now: Instant, call: CallRef, agent: DialogId) {
        let Some(mut bridge) = self.bridges.remove(call) else {
            return;
        };
        let port = bridge.held.media.rtp_port;
        if bridge.finished {
            // The caller gave up as the agent answered: the agent's leg ends at once.
            self.ports.release(port);
            return self.hangup(now, &agent);
        }
        let negotiated = self.outgoing.get(&call).and_then(|o| o.negotiated.clone());
        let Some(agent_media) = negotiated else {
            self.ports.release(port);
            return self.hangup(now, &agent);
        };
        // Answer the caller with the agent's codec when the caller offered it; otherwise with
        // the caller's own and transcode between the two.
        let held = &mut bridge.held;
        let preferred = LocalMedia {
            codecs: vec![agent_media.codec],
            ..held.media.clone()
        };
        let answer = sdp::answer(&bridge.offer, &preferred, &mut held.sdp).or_else(|_| {
            let own = LocalMedia {
                codecs: vec![bridge.codec],
                ..preferred.clone()
            };
            sdp::answer(&bridge.offer, &own, &mut held.sdp)
        });
        let Ok(answer) = answer else {
            self.ports.release(port);
            let resp = response(
                &held.request,
                status_with_reason(488, "No Common Codec"),
                Some(&held.local_tag),
            );
            self.reply(now, bridge.tx, resp);
            return self.hangup(now, &agent);
        };
        held.media.codecs = vec![answer.media.codec];
        let caller_call_id = held.meta.call_id.clone();
        let body = answer.sdp.into_bytes();
        let answered = self.answer_held(now, bridge.tx, bridge.held, body, Some(bridge.remote));
        let Some(caller) = answered else {
            return self.hangup(now, &agent);
        };
        let agent_port = match self.calls.get_mut(&agent) {
            Some(call) => {
                call.partner = Some(caller.clone());
                call.media.rtp_port
            }
            None => return self.hangup(now, &caller),
        };
        if let Some(call) = self.calls.get_mut(&caller) {
            call.partner = Some(agent.clone());
        }
        let transcode = (answer.media.codec != agent_media.codec)
            .then_some((answer.media.codec, agent_media.codec));
        self.media.push_back(MediaCommand::Bridge {
            a: port,
            b: agent_port,
            transcode,
            telephone_event: (
                answer.media.telephone_event_pt,
                agent_media.telephone_event_pt,
            ),
        });
        self.media.push_back(MediaCommand::DetectDtmf {
            port,
            payload_type: answer.media.telephone_event_pt,
        });
        if self.config.record {
            self.media.push_back(MediaCommand::Record {
                customer: port,
                agent: agent_port,
                call_id: caller_call_id.clone(),
            });
        }
        tracing::info!(
            caller = %caller_call_id,
            agent = %agent.call_id,
            ?transcode,
            "bridged call answered"
        );
    }

    /// The agent's leg failed: tell the caller, in terms a caller understands.
    fn fail_bridge(&mut self, now: Instant, call: CallRef, code: u16) {
        let Some(bridge) = self.bridges.remove(call) else {
            return;
        };
        self.ports.release(bridge.held.media.rtp_port);
        if bridge.finished {
            return;
        }
        let status = match code {
            486 | 600 | 603 => StatusCode::BusyHere,
            408 => status_with_reason(480, "No Answer"),
            _ => StatusCode::TemporarilyUnavailable,
        };
        let held = &bridge.held;
        let resp = self.decorate(response(&held.request, status, Some(&held.local_tag)));
        self.reply(now, bridge.tx, resp);
    }

    /// The caller hangs up before the agent answered, or the agent took too long: the caller
    /// gets `status` now, the agent's INVITE is cancelled (RFC 3261 §9.1).
    pub(super) fn cancel_bridge(&mut self, now: Instant, call: CallRef, status: StatusCode) {
        let Some(bridge) = self.bridges.pending.get_mut(&call) else {
            return;
        };
        if bridge.finished {
            return;
        }
        bridge.finished = true;
        let resp = response(&bridge.held.request, status, Some(&bridge.held.local_tag));
        let tx = bridge.tx;
        let resp = self.decorate(resp);
        self.reply(now, tx, resp);
        if let Some(agent_tx) = self.outgoing.get(&call).map(|o| o.tx) {
            let _ = self.tx.cancel(now, agent_tx);
        }
    }

    pub(super) fn agent_no_answer(&mut self, now: Instant, call: CallRef) {
        let due = self
            .bridges
            .pending
            .get(&call)
            .is_some_and(|b| b.deadline <= now);
        if due {
            self.cancel_bridge(now, call, status_with_reason(480, "No Answer"));
        }
    }

    /// The caller put the call on hold or resumed it: offer the partner the same direction
    /// (RFC 3264 §8.4), so neither side sends into a held call.
    pub(super) fn pass_direction_to_partner(
        &mut self,
        now: Instant,
        id: &DialogId,
        direction: Direction,
    ) {
        let Some(partner) = self.calls.get(id).and_then(|c| c.partner.clone()) else {
            return;
        };
        let Some(call) = self.calls.get_mut(&partner) else {
            return;
        };
        if !matches!(call.state, CallState::Confirmed) {
            return;
        }
        let offer = sdp::offer(&call.media, direction, &mut call.sdp);
        let mut reinvite = Self::dialog_request(
            &self.config,
            &mut self.ids,
            &mut call.dialog,
            Method::Invite,
            None,
        );
        let mut body = Vec::new();
        crate::sip::message::set_body(
            &mut reinvite.headers,
            &mut body,
            "application/sdp",
            offer.into_bytes(),
        );
        reinvite.body = body;
        let to = call.dialog.next_hop();
        if let Ok(tx) = self.tx.send_request(now, reinvite, to) {
            self.client_purpose
                .insert(tx, ClientPurpose::Reinvite(partner));
        }
    }

    /// The ACK for the 2xx to our re-INVITE (RFC 3261 §13.2.2.4).
    pub(super) fn ack_reinvite(&mut self, id: &DialogId, cseq: u32) {
        if let Some(call) = self.calls.get_mut(id) {
            let ack = Self::dialog_request(
                &self.config,
                &mut self.ids,
                &mut call.dialog,
                Method::Ack,
                Some(cseq),
            );
            let to = call.dialog.next_hop();
            self.tx
                .send_stateless(to, bytes::Bytes::from(ack.to_bytes()));
        }
    }
}

/// The caller's From (display name and URI) without its tag: the agent sees who calls.
fn caller_id(req: &Request) -> String {
    let from = req
        .headers
        .iter()
        .find_map(|h| match h {
            Header::From(f) => Some(f.value()),
            _ => None,
        })
        .unwrap_or("<sip:anonymous@anonymous.invalid>");
    let (name, uri) = match from.find('<') {
        Some(i) => (from[..i].trim(), addr_spec(from)),
        None => ("", addr_spec(from)),
    };
    if name.is_empty() {
        format!("<{uri}>")
    } else {
        format!("{name} <{uri}>")
    }
}
