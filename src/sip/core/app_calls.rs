//! Outgoing calls on behalf of the application: a leg driver dials a registered softphone (or
//! a URI) and gets the call's audio on a local RTP leg of the media engine.
//!
//! Each application call has two engine legs. The SIP leg faces the far end, as for any call
//! we place. The local leg faces a process-local endpoint (a WebRTC peer's plain-RTP side);
//! it opens with no remote address and latches to the first source that sends to it. When the
//! far end answers, the two are bridged in the engine, so recording, DTMF detection and
//! latching work for these calls exactly as for SIP-to-SIP bridges. The local endpoint sends
//! the codec the answer negotiated ([`SipCore::app_call_codec`]), so nothing is transcoded.
//! A call still unanswered after `sip.agent_answer_timeout_s` is cancelled.
//!
//! Two answered application calls (the customer's phone and the agent's softphone or mobile)
//! can instead be joined to each other ([`SipCore::bridge_app_calls`]): their SIP legs are
//! bridged directly, transcoding G.711 when the two answered different laws, and their local
//! legs are closed at once, since no local endpoint will ever use them. Calls that are meant
//! for such a bridge from the start (the B2BUA's, [`SipCore::dial_for_bridge`] and
//! [`SipCore::accept_for_bridge`]) have no local leg at all.

use rsipstack::sip::{Header, Uri};
use std::collections::HashMap;
use std::time::Instant;

use std::cmp::Reverse;

use super::{CoreEvent, CoreTimer, MediaCommand, OutgoingCall, SipCore, UacOutcome};
use crate::sip::core::CallRef;
use crate::sip::core::{ServerTxId, response, status_with_reason};
use crate::sip::dialog::DialogId;
use crate::sip::peer::Peer;
use crate::sip::sdp::{self, Codec, Direction, LocalMedia};

/// Where an application call goes.
#[derive(Debug, Clone)]
pub enum DialTarget {
    /// The most preferred live binding of a registered user (an agent's softphone).
    Registered(String),
    /// A URI, sent to this next hop.
    Uri { uri: Uri, via: Peer },
}

/// An application call to place.
#[derive(Debug, Clone)]
pub struct AppDial {
    pub target: DialTarget,
    /// The user part of our From (the caller id).
    pub from_user: String,
    /// Extra headers (name, value) carried by the INVITE.
    pub extra_headers: Vec<(String, String)>,
}

/// Why a call could not be placed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialError {
    #[error("{0} is not registered")]
    NotRegistered(String),
    #[error("the registered contact is not a SIP URI")]
    BadContact,
    #[error("no free RTP port")]
    NoPorts,
    #[error("the INVITE could not be sent")]
    NotSent,
    /// A call to bridge or record is unknown, not answered yet, or already bridged.
    #[error("the call is not answered")]
    NotAnswered,
    /// The caller offered no codec the call's answer may use; it was refused with 488.
    #[error("no common codec")]
    NoCommonCodec,
}

/// One of the two engine legs of an application call, for [`SipCore::record_app_calls`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppLeg {
    /// The SIP leg: what the far end sends.
    Far(CallRef),
    /// The local leg: what the local endpoint (a WebRTC peer) sends.
    Local(CallRef),
}

/// A placed application call: its reference, and the local RTP port its audio is bridged to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppCall {
    pub call: CallRef,
    pub local_port: u16,
}

/// The application calls, each found by its dialog once it has one. Only this file changes
/// them, so the index cannot drift from the calls.
#[derive(Debug, Default)]
pub(super) struct AppCalls {
    calls: HashMap<CallRef, AppCallState>,
    by_dialog: HashMap<DialogId, CallRef>,
}

impl AppCalls {
    fn insert(&mut self, call: CallRef, state: AppCallState) {
        if let Some(dialog) = &state.dialog {
            self.by_dialog.insert(dialog.clone(), call);
        }
        self.calls.insert(call, state);
    }

    fn set_dialog(&mut self, call: CallRef, dialog: &DialogId) {
        if let Some(state) = self.calls.get_mut(&call) {
            state.dialog = Some(dialog.clone());
            self.by_dialog.insert(dialog.clone(), call);
        }
    }

    fn remove(&mut self, call: CallRef) -> Option<AppCallState> {
        let state = self.calls.remove(&call)?;
        if let Some(dialog) = &state.dialog {
            self.by_dialog.remove(dialog);
        }
        Some(state)
    }

    fn of_dialog(&self, dialog: &DialogId) -> Option<CallRef> {
        self.by_dialog.get(dialog).copied()
    }

    pub(super) fn len(&self) -> usize {
        self.calls.len()
    }
}

#[derive(Debug)]
pub(super) struct AppCallState {
    /// `None` for a call meant for a bridge, and once the call is bridged to another one.
    local_port: Option<u16>,
    dialog: Option<DialogId>,
    /// Once answered: the SIP leg's port, codec and telephone-event payload type.
    answer: Option<(u16, Codec, Option<u8>)>,
    /// Hung up while ringing: a 2xx that crosses our CANCEL is answered with a BYE.
    cancelled: bool,
    /// Joined to another application call ([`SipCore::bridge_app_calls`]).
    bridged: bool,
}

/// An application call to place, as the core places it.
struct PlaceApp {
    target: DialTarget,
    /// Our From header, without its tag.
    from: String,
    /// Our codecs in order of preference.
    codecs: Vec<Codec>,
    extra_headers: Vec<(String, String)>,
    /// Whether the call's audio goes to a local leg (else it waits for a bridge).
    local: bool,
}

impl SipCore {
    /// Places `dial` and opens its local leg; its progress arrives as [`CoreEvent`]s naming
    /// the returned call.
    pub(crate) fn dial(&mut self, now: Instant, dial: AppDial) -> Result<AppCall, DialError> {
        let from = format!("<sip:{}@{}>", dial.from_user, self.config.domain);
        let place = PlaceApp {
            target: dial.target,
            from,
            codecs: vec![Codec::Pcmu, Codec::Pcma],
            extra_headers: dial.extra_headers,
            local: true,
        };
        let (call, local_port) = self.place_app_call(now, place)?;
        let local_port = local_port.expect("a local leg was asked for");
        Ok(AppCall { call, local_port })
    }

    /// Rings the registered softphone of `user` for a bridge: no local leg, `from` (a From
    /// value without tag) as the caller id, `codecs` offered in this order. Once answered, the
    /// call is joined to another with [`SipCore::bridge_app_calls`].
    pub(crate) fn dial_for_bridge(
        &mut self,
        now: Instant,
        user: &str,
        from: String,
        codecs: Vec<Codec>,
    ) -> Result<CallRef, DialError> {
        let place = PlaceApp {
            target: DialTarget::Registered(user.to_string()),
            from,
            codecs,
            extra_headers: Vec::new(),
            local: false,
        };
        self.place_app_call(now, place).map(|(call, _)| call)
    }

    /// Sends an application call's INVITE, with a local leg when asked for.
    fn place_app_call(
        &mut self,
        now: Instant,
        place: PlaceApp,
    ) -> Result<(CallRef, Option<u16>), DialError> {
        let mut route = None;
        let (target, to_uri, to) = match place.target {
            DialTarget::Registered(user) => {
                let binding = self
                    .registrar
                    .lookup(now, &user)
                    .into_iter()
                    .next()
                    .ok_or_else(|| DialError::NotRegistered(user.clone()))?;
                let uri = rsipstack::sip::parse_uri(&binding.contact)
                    .map_err(|_| DialError::BadContact)?;
                let aor = self.aor(&user);
                (uri, Some(aor), super::binding_peer(&binding))
            }
            DialTarget::Uri { uri, via } => {
                let steered = self.steer(uri, via);
                route = steered.route;
                (steered.uri, None, steered.next_hop)
            }
        };
        let rtp_port = self.ports.allocate().ok_or(DialError::NoPorts)?;
        let local_port = match place.local {
            true => match self.ports.allocate() {
                Some(port) => Some(port),
                None => {
                    self.ports.release(rtp_port);
                    return Err(DialError::NoPorts);
                }
            },
            false => None,
        };
        let extra_headers = route
            .into_iter()
            .chain(
                place
                    .extra_headers
                    .into_iter()
                    .map(|(name, value)| Header::Other(name, value)),
            )
            .collect();
        let placed = self.place_call(
            now,
            OutgoingCall {
                target,
                to_uri,
                to,
                from: place.from,
                rtp_port,
                codecs: place.codecs,
                extra_headers,
            },
        );
        let Some(call) = placed else {
            self.ports.release(rtp_port);
            if let Some(port) = local_port {
                self.ports.release(port);
            }
            return Err(DialError::NotSent);
        };
        if let Some(port) = local_port {
            self.media.push_back(MediaCommand::Open {
                port,
                remote: None,
                signalling: None,
            });
        }
        // Nobody rings forever: unanswered, the INVITE is cancelled (and fails with 487).
        let deadline = now + self.config.agent_answer_timeout;
        self.timers
            .push(Reverse((deadline, CoreTimer::NoAnswer(call))));
        self.app_calls.insert(
            call,
            AppCallState {
                local_port,
                dialog: None,
                answer: None,
                cancelled: false,
                bridged: false,
            },
        );
        Ok((call, local_port))
    }

    /// Ends an application call: BYE once answered, CANCEL before. Its end arrives as
    /// [`CoreEvent::Ended`] or [`CoreEvent::Failed`].
    pub(crate) fn hangup_app_call(&mut self, now: Instant, call: CallRef) {
        let Some(state) = self.app_calls.calls.get_mut(&call) else {
            return;
        };
        match state.dialog.clone() {
            Some(dialog) => self.hangup(now, &dialog),
            // One CANCEL is enough (a second would be sent as a new request).
            None if state.cancelled => {}
            None => {
                state.cancelled = true;
                if let Some(tx) = self.outgoing.get(&call).map(|o| o.tx) {
                    let _ = self.tx.cancel(now, tx);
                }
            }
        }
        self.drain_transactions(now);
    }

    /// The ring timer of an application call fired: cancel it if still unanswered.
    pub(super) fn app_call_no_answer(&mut self, now: Instant, call: CallRef) {
        if self
            .app_calls
            .calls
            .get(&call)
            .is_some_and(|s| s.dialog.is_none())
        {
            tracing::info!(?call, "no answer; cancelling");
            self.hangup_app_call(now, call);
        }
    }

    /// The codec the far end chose, once answered: what the local endpoint must send.
    pub(crate) fn app_call_codec(&self, call: CallRef) -> Option<Codec> {
        self.outgoing
            .get(&call)
            .and_then(|o| o.negotiated.as_ref())
            .map(|n| n.codec)
    }

    /// Application calls in progress.
    #[cfg(test)]
    pub(crate) fn app_calls(&self) -> usize {
        self.app_calls.len()
    }

    /// What became of an application call's INVITE, when `call` is one: true when handled
    /// here (the event, if any, is queued for the application).
    ///
    /// An answered call is bridged to its local leg; a failed one is forgotten. A 2xx for a
    /// call we already cancelled means the CANCEL crossed it (RFC 3261 §9.1): the call is up
    /// at the far end, so it is ended with a BYE at once and never reported answered; its
    /// [`CoreEvent::Ended`] follows once the BYE is answered.
    pub(super) fn app_call_outcome(
        &mut self,
        now: Instant,
        call: CallRef,
        outcome: &UacOutcome,
    ) -> bool {
        let Some(state) = self.app_calls.calls.get_mut(&call) else {
            return false;
        };
        match outcome {
            UacOutcome::Progress(code) => {
                self.events
                    .push_back(CoreEvent::Progress { call, code: *code });
            }
            UacOutcome::Answered(dialog) if state.cancelled => {
                tracing::info!(?call, "answered after our CANCEL; hanging up");
                self.app_calls.set_dialog(call, dialog);
                self.hangup(now, dialog);
            }
            UacOutcome::Answered(dialog) => {
                self.app_call_answered(call, dialog);
                self.events.push_back(CoreEvent::Answered {
                    call,
                    dialog: dialog.clone(),
                });
            }
            UacOutcome::Failed(code) => {
                self.forget_app_call(call);
                self.events
                    .push_back(CoreEvent::Failed { call, code: *code });
            }
        }
        true
    }

    /// Bridges an answered application call's SIP leg to its local leg, if it has one.
    fn app_call_answered(&mut self, call: CallRef, dialog: &DialogId) {
        self.app_calls.set_dialog(call, dialog);
        let Some(sip_port) = self.calls.get(dialog).map(|c| c.media.rtp_port) else {
            return;
        };
        let negotiated = self.outgoing.get(&call).and_then(|o| o.negotiated.as_ref());
        let telephone_event = negotiated.and_then(|n| n.telephone_event_pt);
        let codec = negotiated.map_or(Codec::Pcmu, |n| n.codec);
        let Some(state) = self.app_calls.calls.get_mut(&call) else {
            return;
        };
        state.answer = Some((sip_port, codec, telephone_event));
        if let Some(local_port) = state.local_port {
            self.bridge_to_local(local_port, sip_port, telephone_event);
        }
    }

    /// Joins an application call's SIP leg to its local port, where the application's side
    /// (a WebRTC peer's plain RTP, or another call) meets it, and listens for the caller's
    /// key presses on the SIP leg.
    fn bridge_to_local(&mut self, local_port: u16, sip_port: u16, telephone_event: Option<u8>) {
        self.media.push_back(MediaCommand::Bridge {
            a: local_port,
            b: sip_port,
            transcode: None,
            telephone_event: (None, telephone_event),
        });
        self.media.push_back(MediaCommand::DetectDtmf {
            port: sip_port,
            payload_type: telephone_event,
        });
    }

    /// Offers the far end of an answered application call `direction` in a re-INVITE
    /// (RFC 3264 §8.4): a bridge passes a hold or resume on to the other half, so neither side
    /// sends into a held call.
    pub(crate) fn offer_direction(&mut self, now: Instant, call: CallRef, direction: Direction) {
        let dialog = self
            .app_calls
            .calls
            .get(&call)
            .and_then(|s| s.dialog.clone());
        if let Some(dialog) = dialog {
            self.reoffer(now, &dialog, direction);
            self.drain_transactions(now);
        }
    }

    /// The application call a dialog carries.
    pub(super) fn app_call_of(&self, dialog: &DialogId) -> Option<CallRef> {
        self.app_calls.of_dialog(dialog)
    }

    /// A dialog ended: the application call it carried (if any) is forgotten and named.
    pub(super) fn forget_app_dialog(&mut self, dialog: &DialogId) -> Option<CallRef> {
        let call = self.app_calls.of_dialog(dialog)?;
        self.forget_app_call(call);
        Some(call)
    }

    fn forget_app_call(&mut self, call: CallRef) {
        if let Some(port) = self.app_calls.remove(call).and_then(|s| s.local_port) {
            self.media.push_back(MediaCommand::Close { port });
            self.ports.release(port);
        }
    }

    /// Joins two answered application calls to each other in the media engine: what the
    /// customer's far end sends goes to the agent's and back, transcoded when they answered
    /// different G.711 laws, telephone-events mapped between their payload types. Only the
    /// customer's digits are reported. The local legs are closed and their ports freed; each
    /// call still ends on its own (a BYE on one is for the application to act on).
    pub(crate) fn bridge_app_calls(
        &mut self,
        customer: CallRef,
        agent: CallRef,
    ) -> Result<(), DialError> {
        let answered = |call| {
            self.app_calls
                .calls
                .get(&call)
                .filter(|s| !s.bridged)
                .and_then(|s| s.answer)
        };
        let (Some(c), Some(a)) = (answered(customer), answered(agent)) else {
            return Err(DialError::NotAnswered);
        };
        if customer == agent {
            return Err(DialError::NotAnswered);
        }
        for call in [customer, agent] {
            let port = self.app_calls.calls.get_mut(&call).and_then(|s| {
                s.bridged = true;
                s.local_port.take()
            });
            if let Some(port) = port {
                // Closing it also stops the SIP leg forwarding to it.
                self.media.push_back(MediaCommand::Close { port });
                self.ports.release(port);
            }
        }
        let (customer_port, customer_codec, customer_te) = c;
        let (agent_port, agent_codec, agent_te) = a;
        let transcode = (customer_codec != agent_codec).then_some((customer_codec, agent_codec));
        self.media.push_back(MediaCommand::Bridge {
            a: customer_port,
            b: agent_port,
            transcode,
            telephone_event: (customer_te, agent_te),
        });
        self.media.push_back(MediaCommand::DetectDtmf {
            port: agent_port,
            payload_type: None,
        });
        tracing::info!(?customer, ?agent, ?transcode, "application calls bridged");
        Ok(())
    }

    /// Records an answered call as a two-channel WAV file named after `name` (see
    /// [`MediaCommand::Record`]): what `customer` receives on the left, `agent` on the right.
    pub(crate) fn record_app_calls(
        &mut self,
        customer: AppLeg,
        agent: AppLeg,
        name: &str,
    ) -> Result<(), DialError> {
        let port = |leg| {
            let (call, local) = match leg {
                AppLeg::Far(call) => (call, false),
                AppLeg::Local(call) => (call, true),
            };
            let state = self.app_calls.calls.get(&call)?;
            if local {
                state.local_port.filter(|_| state.answer.is_some())
            } else {
                state.answer.map(|(port, ..)| port)
            }
        };
        let (Some(customer), Some(agent)) = (port(customer), port(agent)) else {
            return Err(DialError::NotAnswered);
        };
        self.media.push_back(MediaCommand::Record {
            customer,
            agent,
            call_id: name.to_string(),
        });
        Ok(())
    }
}

impl SipCore {
    /// Answers an [`CoreEvent::Incoming`] call: its audio is bridged to a new local leg, as
    /// for a call we placed; from now on it is an application call like the others.
    pub(crate) fn accept_incoming(
        &mut self,
        now: Instant,
        incoming: ServerTxId,
    ) -> Result<(AppCall, Codec), DialError> {
        match self.pending.get(&incoming) {
            Some(pending) if pending.incoming && pending.answer.is_some() => {}
            // The caller gave up meanwhile, or it is no call for the application.
            _ => return Err(DialError::NotSent),
        }
        let local_port = self.ports.allocate().ok_or(DialError::NoPorts)?;
        let mut pending = self
            .pending
            .take_for_application(&incoming)
            .expect("checked above");
        let codec = pending.codec.unwrap_or(Codec::Pcmu);
        let dtmf_pt = pending.dtmf_pt;
        pending.held.media.codecs = vec![codec];
        let body = pending.answer.take().unwrap_or_default();
        let answer = (codec, dtmf_pt);
        let Some(call) =
            self.answer_app_call(now, incoming, pending, body, answer, Some(local_port))
        else {
            self.ports.release(local_port);
            return Err(DialError::NotSent);
        };
        Ok((AppCall { call, local_port }, codec))
    }

    /// Answers a held call for a bridge ([`CoreEvent::AgentCall`]): in `prefer` (the other
    /// half's codec) when the caller offered it, so that nothing is transcoded, else in the
    /// caller's own first codec. The call has no local leg; join it to the other half with
    /// [`SipCore::bridge_app_calls`].
    pub(crate) fn accept_for_bridge(
        &mut self,
        now: Instant,
        incoming: ServerTxId,
        prefer: Codec,
    ) -> Result<CallRef, DialError> {
        let Some(mut pending) = self.pending.take_for_application(&incoming) else {
            return Err(DialError::NotSent);
        };
        let offer = String::from_utf8_lossy(&pending.held.request.body).into_owned();
        let own = pending.codec.unwrap_or(Codec::Pcmu);
        let held = &mut pending.held;
        let answer = [prefer, own].into_iter().find_map(|codec| {
            let media = LocalMedia {
                codecs: vec![codec],
                ..held.media.clone()
            };
            sdp::answer(&offer, &media, &mut held.sdp).ok()
        });
        let Some(answer) = answer else {
            self.release_leg(held.media.rtp_port);
            let (request, tag) = (&held.request, &held.local_tag);
            self.refuse(now, incoming, request, tag, 488, "No Common Codec");
            self.drain_transactions(now);
            return Err(DialError::NoCommonCodec);
        };
        held.media.codecs = vec![answer.media.codec];
        let negotiated = (answer.media.codec, answer.media.telephone_event_pt);
        let body = answer.sdp.into_bytes();
        self.answer_app_call(now, incoming, pending, body, negotiated, None)
            .ok_or(DialError::NotSent)
    }

    /// The one way a held call becomes an application call: answered with `body`
    /// ([`SipCore::answer_held`]) in the `(codec, telephone-event)` it negotiated, its SIP leg
    /// bridged to `local_port` when it has one, and listened to for the caller's digits.
    fn answer_app_call(
        &mut self,
        now: Instant,
        incoming: ServerTxId,
        pending: super::uas::PendingInvite,
        body: Vec<u8>,
        (codec, dtmf_pt): (Codec, Option<u8>),
        local_port: Option<u16>,
    ) -> Option<CallRef> {
        let sip_port = pending.held.media.rtp_port;
        let dialog = self.answer_held(now, incoming, pending.held, body, pending.remote)?;
        match local_port {
            Some(port) => {
                self.media.push_back(MediaCommand::Open {
                    port,
                    remote: None,
                    signalling: None,
                });
                self.bridge_to_local(port, sip_port, dtmf_pt);
            }
            None => self.media.push_back(MediaCommand::DetectDtmf {
                port: sip_port,
                payload_type: dtmf_pt,
            }),
        }
        let call = self.next_call_ref();
        self.app_calls.insert(
            call,
            AppCallState {
                local_port,
                dialog: Some(dialog),
                answer: Some((sip_port, codec, dtmf_pt)),
                cancelled: false,
                bridged: false,
            },
        );
        self.drain_transactions(now);
        Some(call)
    }

    /// Refuses an [`CoreEvent::Incoming`] call with `code`, saying why in the reason phrase and
    /// in an RFC 3326 Reason header.
    pub(crate) fn reject_incoming(
        &mut self,
        now: Instant,
        incoming: ServerTxId,
        code: u16,
        why: &str,
    ) {
        let Some(pending) = self.pending.remove(&incoming) else {
            return;
        };
        self.release_leg(pending.held.media.rtp_port);
        self.refuse(
            now,
            incoming,
            &pending.held.request,
            &pending.held.local_tag,
            code,
            why,
        );
        self.drain_transactions(now);
    }

    /// Answers `request` with `code`, saying why in the reason phrase and in an RFC 3326
    /// Reason header.
    pub(super) fn refuse(
        &mut self,
        now: Instant,
        tx: ServerTxId,
        request: &rsipstack::sip::Request,
        tag: &str,
        code: u16,
        why: &str,
    ) {
        let mut resp = response(request, status_with_reason(code, why), Some(tag));
        let text = why.replace(['"', '\\', '\r', '\n'], " ");
        resp.headers.push(Header::Other(
            "Reason".into(),
            format!("SIP;cause={code};text=\"{text}\""),
        ));
        let resp = self.decorate(resp);
        self.reply(now, tx, resp);
    }
}
