//! RFC 4028 session timers, as the answering side.
//!
//! When an INVITE asks for a session interval (`Session-Expires`), our 2xx confirms it with
//! the caller as refresher, and the call ends (BYE) if no refresh — a re-INVITE or UPDATE —
//! arrives in time (§10: the non-refresher sends BYE at `interval - min(32, interval / 3)`).
//! An interval below our `Min-SE` gets 422 (§5).

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
    pub(super) fn start_session_timer(
        &mut self,
        now: Instant,
        id: &DialogId,
        req: &Request,
    ) -> Option<(Duration, Instant)> {
        let interval = Duration::from_secs(requested_interval(&req.headers)?.into());
        let deadline = now + interval - (interval / 3).min(Duration::from_secs(32));
        self.timers
            .push(Reverse((deadline, CoreTimer::SessionExpired(id.clone()))));
        Some((interval, deadline))
    }

    /// A re-INVITE or UPDATE refreshes the session (§10). One without `Session-Expires` turns
    /// the timer off: its 2xx confirms no interval either, so nobody refreshes any more (§9).
    pub(super) fn refresh_session_timer(&mut self, now: Instant, id: &DialogId, req: &Request) {
        let asked = requested_interval(&req.headers).map(|s| Duration::from_secs(s.into()));
        let Some(call) = self.calls.get_mut(id) else {
            return;
        };
        let Some(interval) = asked else {
            call.session_expires = None;
            return;
        };
        let deadline = now + interval - (interval / 3).min(Duration::from_secs(32));
        call.session_expires = Some((interval, deadline));
        self.timers
            .push(Reverse((deadline, CoreTimer::SessionExpired(id.clone()))));
    }

    pub(super) fn session_expired(&mut self, now: Instant, at: Instant, id: &DialogId) {
        let due = self
            .calls
            .get(id)
            .and_then(|c| c.session_expires)
            .is_some_and(|(_, deadline)| deadline == at);
        if due {
            tracing::info!(call_id = %id.call_id, "session not refreshed; ending the call");
            self.end_on_our_own(now, id);
        }
    }
}
