//! Bridged calls (a back-to-back user agent), sans-IO: a trunk's INVITE to an agent's own number
//! becomes a second call, with its own Call-ID and tags, to the agent's registered softphone;
//! the media of both legs is anchored in the relay.
//!
//! The bridge is a user of the SIP core like the call driver: it reads the core's events and
//! answers with the core's application-call operations, and owns nothing but which call is
//! whose. The core holds the caller's INVITE without ringing ([`CoreEvent::AgentCall`]); the
//! bridge rings the softphone ([`SipCore::dial_for_bridge`], the caller's codec offered first so
//! that nothing needs transcoding) and relays its progress to the caller. The softphone's answer
//! answers the caller ([`SipCore::accept_for_bridge`]), joins the two calls in the media engine
//! ([`SipCore::bridge_app_calls`]) and records them when recording is on; its failure is mapped to
//! a status a caller understands. The caller's CANCEL, or the caller's hold running out, cancels
//! the softphone's INVITE. Once both are up the calls are partners: the end of one (a BYE either
//! way, a session not refreshed, dead media) ends the other, and a hold or resume on one is
//! offered to the other.
//!
//! Driving contract: hand every event of [`SipCore::poll_event`] to [`B2bua::handle`] first;
//! those it returns `false` for are someone else's.

use std::collections::HashMap;
use std::time::Instant;

use super::core::{AppLeg, CallRef, CoreEvent, DialError, SipCore};
use super::sdp::Codec;
use super::transaction::ServerTxId;

/// The bridges, from the caller's INVITE to the end of both calls.
#[derive(Debug, Default)]
pub(crate) struct B2bua {
    /// Whether answered bridges are recorded.
    record: bool,
    /// The softphone's calls still ringing, each with its caller's INVITE.
    ringing: HashMap<CallRef, Ringing>,
    /// The ringing call of each caller's INVITE still held.
    by_caller: HashMap<ServerTxId, CallRef>,
    /// The calls of answered bridges, each with its partner while that one is up.
    answered: HashMap<CallRef, Option<CallRef>>,
}

#[derive(Debug)]
struct Ringing {
    caller: ServerTxId,
    /// The caller's Call-ID, which names the recording.
    call_id: String,
}

impl B2bua {
    pub(crate) fn new(record: bool) -> B2bua {
        B2bua {
            record,
            ..B2bua::default()
        }
    }

    /// Trunk calls waiting for the agent's softphone.
    pub(crate) fn waiting(&self) -> usize {
        self.ringing.len()
    }

    /// Acts on `event` if it concerns a bridge; `false` when it is someone else's.
    pub(crate) fn handle(&mut self, core: &mut SipCore, now: Instant, event: &CoreEvent) -> bool {
        match event {
            CoreEvent::AgentCall {
                incoming,
                user,
                from,
                call_id,
                codec,
            } => {
                self.ring_agent(core, now, *incoming, user, from, call_id, *codec);
                true
            }
            CoreEvent::IncomingCancelled { incoming } | CoreEvent::IncomingExpired { incoming } => {
                // The caller has its answer already; the softphone stops ringing.
                let Some(agent) = self.by_caller.remove(incoming) else {
                    return false;
                };
                core.hangup_app_call(now, agent);
                true
            }
            CoreEvent::Progress { call, code } => {
                let Some(ringing) = self.ringing.get(call) else {
                    return false;
                };
                core.ring_incoming(now, ringing.caller, *code);
                true
            }
            CoreEvent::Answered { call, .. } => {
                let Some(ringing) = self.ringing.remove(call) else {
                    return false;
                };
                self.by_caller.remove(&ringing.caller);
                self.connect(core, now, *call, ringing);
                true
            }
            CoreEvent::Failed { call, code } => {
                let Some(ringing) = self.ringing.remove(call) else {
                    return false;
                };
                self.by_caller.remove(&ringing.caller);
                let (code, why) = caller_status(*code);
                core.reject_incoming(now, ringing.caller, code, why);
                true
            }
            CoreEvent::Hangup {
                call: Some(call), ..
            } => self.release_partner(core, now, *call),
            CoreEvent::Ended {
                call: Some(call), ..
            } => {
                let ours = self.release_partner(core, now, *call);
                self.answered.remove(call);
                // A softphone that answered after its CANCEL went out ends here too.
                ours | self.ringing.remove(call).is_some()
            }
            CoreEvent::Offered {
                call: Some(call),
                direction,
                ..
            } => {
                let Some(partner) = self.answered.get(call) else {
                    return false;
                };
                // A hold or resume on one half is offered to the other (RFC 3264 §8.4).
                if let Some(partner) = *partner {
                    core.offer_direction(now, partner, *direction);
                }
                true
            }
            CoreEvent::Dtmf {
                call: Some(call), ..
            } => self.answered.contains_key(call),
            _ => false,
        }
    }

    /// Rings the agent's softphone for the caller's held INVITE `caller`.
    #[allow(clippy::too_many_arguments)]
    fn ring_agent(
        &mut self,
        core: &mut SipCore,
        now: Instant,
        caller: ServerTxId,
        user: &str,
        from: &str,
        call_id: &str,
        codec: Codec,
    ) {
        let other = if codec == Codec::Pcmu {
            Codec::Pcma
        } else {
            Codec::Pcmu
        };
        match core.dial_for_bridge(now, user, from.to_string(), vec![codec, other]) {
            Ok(agent) => {
                self.by_caller.insert(caller, agent);
                let call_id = call_id.to_string();
                self.ringing.insert(agent, Ringing { caller, call_id });
            }
            Err(e) => {
                let (code, why) = match e {
                    DialError::NotRegistered(_) => (480, "Agent Not Registered"),
                    DialError::NotSent => (500, "Cannot Reach Agent"),
                    _ => (503, "No Media Ports"),
                };
                core.reject_incoming(now, caller, code, why);
            }
        }
    }

    /// The softphone answered `agent`: answer the caller in the agent's codec when it offered
    /// it, bridge the two, record them.
    fn connect(&mut self, core: &mut SipCore, now: Instant, agent: CallRef, ringing: Ringing) {
        let prefer = core.app_call_codec(agent).unwrap_or(Codec::Pcmu);
        let customer = match core.accept_for_bridge(now, ringing.caller, prefer) {
            Ok(customer) => customer,
            // The caller gave up as the agent answered, or cannot take any codec we could
            // answer: the agent's leg ends at once.
            Err(_) => return core.hangup_app_call(now, agent),
        };
        if core.bridge_app_calls(customer, agent).is_err() {
            core.hangup_app_call(now, customer);
            return core.hangup_app_call(now, agent);
        }
        if self.record {
            let (c, a) = (AppLeg::Far(customer), AppLeg::Far(agent));
            let _ = core.record_app_calls(c, a, &ringing.call_id);
        }
        self.answered.insert(customer, Some(agent));
        self.answered.insert(agent, Some(customer));
        tracing::info!(caller = %ringing.call_id, ?customer, ?agent, "bridged call answered");
    }

    /// One half of an answered bridge is going: the other goes with it. `false` when `call`
    /// is no bridge's.
    fn release_partner(&mut self, core: &mut SipCore, now: Instant, call: CallRef) -> bool {
        let Some(partner) = self.answered.get_mut(&call) else {
            return false;
        };
        if let Some(partner) = partner.take() {
            if let Some(back) = self.answered.get_mut(&partner) {
                *back = None;
            }
            core.hangup_app_call(now, partner);
        }
        true
    }
}

/// What the caller hears when the softphone's INVITE fails.
fn caller_status(code: u16) -> (u16, &'static str) {
    match code {
        486 | 600 | 603 => (486, "Busy Here"),
        408 => (480, "No Answer"),
        _ => (480, "Temporarily Unavailable"),
    }
}
