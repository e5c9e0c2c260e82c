//! RFC 4028 session timers, as the answering side.
//!
//! When an INVITE asks for a session interval (`Session-Expires`), our 2xx confirms it with
//! the caller as refresher, and the call ends (BYE) if no refresh — a re-INVITE or UPDATE —
//! arrives in time (§10: the non-refresher sends BYE at `interval - min(32, interval / 3)`).
//! An interval below our `Min-SE` gets 422 (§5).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rsipstack::sip::{Header, Headers, Request};

use super::{CoreTimer, Reverse, SipCore};
use crate::sip::dialog::DialogId;
use crate::sip::message::{response, status_with_reason};
use crate::sip::transaction::ServerTxId;

/// The interval a request asks for (`Session-Expires: 1800;refresher=uac`, compact `x`).
fn requested_interval(headers: &Headers) -> Option<u32> {
    headers.iter().find_map(|h| match h {
        Header::SessionExpires(v) => v.value().split(';').next()?.trim().parse().ok(),
        _ => None,
    })
}

/// When each session ends unless refreshed, by dialog. Only this file changes it.
#[derive(Debug, Default)]
pub(super) struct SessionTimers {
    deadlines: HashMap<DialogId, Instant>,
}

impl SessionTimers {
    /// The dialog ended: its deadline goes with it.
    pub(super) fn forget(&mut self, id: &DialogId) {
        self.deadlines.remove(id);
    }
}

/// The non-refresher's BYE time for `interval` from `now` (§10).
fn deadline(now: Instant, interval: Duration) -> Instant {
    now + interval - (interval / 3).min(Duration::from_secs(32))
}

impl SipCore {
    /// An interval below Min-SE, if the request asks for one.
    pub(super) fn too_small_session_interval(&self, req: &Request) -> Option<u32> {
        requested_interval(&req.headers).filter(|&s| s < self.config.min_session_expires)
    }

    pub(super) fn reply_session_interval_too_small(
        &mut self,
        now: Instant,
        tx: ServerTxId,
        req: &Request,
        _asked: u32,
    ) {
        let tag = self.ids.tag();
        let mut resp = response(
            req,
            status_with_reason(422, "Session Interval Too Small"),
            Some(&tag),
        );
        resp.headers.push(Header::MinSE(rsipstack::sip::MinSE::new(
            self.config.min_session_expires.to_string(),
        )));
        let resp = self.decorate(resp);
        self.reply(now, tx, resp);
    }

    /// Confirms the interval in our 2xx: the caller refreshes (§9).
    pub(super) fn add_session_timer_headers(&self, req: &Request, headers: &mut Headers) {
        if let Some(interval) = requested_interval(&req.headers) {
            headers.push(Header::SessionExpires(rsipstack::sip::SessionExpires::new(
                format!("{interval};refresher=uac"),
            )));
            headers.push(Header::Require(rsipstack::sip::Require::new("timer")));
        }
    }

    /// Starts the timer for a new dialog whose INVITE asked for one.
    pub(super) fn start_session_timer(&mut self, now: Instant, id: &DialogId, req: &Request) {
        if let Some(asked) = requested_interval(&req.headers) {
            self.arm_session_timer(now, id, Duration::from_secs(asked.into()));
        }
    }

    /// A re-INVITE or UPDATE refreshes the session (§10). One without `Session-Expires` turns
    /// the timer off: its 2xx confirms no interval either, so nobody refreshes any more (§9).
    pub(super) fn refresh_session_timer(&mut self, now: Instant, id: &DialogId, req: &Request) {
        if !self.calls.contains_key(id) {
            return;
        }
        match requested_interval(&req.headers) {
            Some(asked) => self.arm_session_timer(now, id, Duration::from_secs(asked.into())),
            None => self.sessions.forget(id),
        }
    }

    fn arm_session_timer(&mut self, now: Instant, id: &DialogId, interval: Duration) {
        let deadline = deadline(now, interval);
        self.sessions.deadlines.insert(id.clone(), deadline);
        self.timers
            .push(Reverse((deadline, CoreTimer::SessionExpired(id.clone()))));
    }

    pub(super) fn session_expired(&mut self, now: Instant, at: Instant, id: &DialogId) {
        let due = self.sessions.deadlines.get(id) == Some(&at);
        if due {
            tracing::info!(call_id = %id.call_id, "session not refreshed; ending the call");
            self.end_on_our_own(now, id);
        }
    }
}
