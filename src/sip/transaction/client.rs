//! Client transactions: INVITE (RFC 3261 §17.1.1, figure 5, with RFC 6026's Accepted state) and
//! non-INVITE (§17.1.2, figure 6). Terminated is not a state: the layer drops the transaction.

use std::time::{Duration, Instant};

use bytes::Bytes;
use rsipstack::sip::{Header, Headers, Method, Request, Response};

use super::{ClientKey, Timer, TimerConfig};
use crate::sip::peer::Peer;

#[derive(Debug)]
pub(super) enum ClientState {
    /// Request sent, no response yet. INVITE: Timers A and B; non-INVITE ("Trying"): E and F.
    Calling {
        retransmit: Option<(Instant, Duration)>,
        until: Instant,
    },
    /// A provisional arrived. INVITE: no timers (the TU cancels); non-INVITE: E at T2 and F.
    Proceeding {
        retransmit: Option<(Instant, Duration)>,
        until: Option<Instant>,
    },
    /// A final arrived. INVITE non-2xx: the ACK is kept for response retransmissions until
    /// Timer D; non-INVITE: response retransmissions absorbed until Timer K.
    Completed { ack: Option<Bytes>, until: Instant },
    /// INVITE 2xx (RFC 6026 §8.4): further 2xx go to the TU until Timer M.
    Accepted { until: Instant },
}

#[derive(Debug)]
pub(super) struct ClientTx {
    pub key: ClientKey,
    pub to: Peer,
    /// The request as sent, for retransmission.
    pub bytes: Bytes,
    /// The request itself, to build the ACK for a non-2xx and a CANCEL (INVITE only).
    request: Option<Request>,
    pub cancel_pending: bool,
    pub state: ClientState,
}

/// What a response does to a client transaction.
#[derive(Default)]
pub(super) struct ResponseOutcome {
    pub deliver: bool,
    pub ack: Option<Bytes>,
    pub send_cancel: bool,
    pub timers: Vec<(Instant, Timer)>,
    pub terminate: bool,
}

pub(super) enum TimerStep {
    Retransmit { next: Instant },
    Terminate { timed_out: bool },
}

impl ClientTx {
    pub fn start(
        now: Instant,
        key: ClientKey,
        request: Request,
        bytes: Bytes,
        to: Peer,
        config: &TimerConfig,
    ) -> (ClientTx, Vec<(Instant, Timer)>) {
        let invite = key.method == Method::Invite;
        let (retransmit_timer, timeout_timer) = if invite {
            (Timer::A, Timer::B)
        } else {
            (Timer::E, Timer::F)
        };
        let until = now + config.t1x64();
        let retransmit = (!to.is_reliable()).then(|| (now + config.t1, config.t1));
        let mut timers = vec![(until, timeout_timer)];
        if let Some((at, _)) = retransmit {
            timers.push((at, retransmit_timer));
        }
        let tx = ClientTx {
            key,
            to,
            bytes,
            request: invite.then_some(request),
            cancel_pending: false,
            state: ClientState::Calling { retransmit, until },
        };
        (tx, timers)
    }

    fn invite(&self) -> bool {
        self.key.method == Method::Invite
    }

    pub fn deadline(&self, timer: Timer) -> Option<Instant> {
        let invite = self.invite();
        match (&self.state, timer) {
            (ClientState::Calling { retransmit, .. }, Timer::A) if invite => {
                retransmit.map(|(at, _)| at)
            }
            (ClientState::Calling { until, .. }, Timer::B) if invite => Some(*until),
            (
                ClientState::Calling { retransmit, .. }
                | ClientState::Proceeding { retransmit, .. },
                Timer::E,
            ) if !invite => retransmit.map(|(at, _)| at),
            (ClientState::Calling { until, .. }, Timer::F) if !invite => Some(*until),
            (ClientState::Proceeding { until, .. }, Timer::F) if !invite => *until,
            (ClientState::Completed { until, .. }, Timer::D | Timer::K) => Some(*until),
            (ClientState::Accepted { until }, Timer::M) => Some(*until),
            _ => None,
        }
    }

    pub fn on_response(
        &mut self,
        now: Instant,
        response: &Response,
        config: &TimerConfig,
    ) -> ResponseOutcome {
        let code = response.status_code.code();
        let mut out = ResponseOutcome::default();
        let reliable = self.to.is_reliable();
        let live = matches!(
            self.state,
            ClientState::Calling { .. } | ClientState::Proceeding { .. }
        );
        if self.invite() {
            match (live, code) {
                (true, 100..=199) => {
                    self.state = ClientState::Proceeding {
                        retransmit: None,
                        until: None,
                    };
                    out.deliver = true;
                    out.send_cancel = std::mem::take(&mut self.cancel_pending);
                }
                (true, 200..=299) => {
                    let until = now + config.t1x64();
                    self.state = ClientState::Accepted { until };
                    out.timers.push((until, Timer::M));
                    out.deliver = true;
                }
                (true, _) => {
                    // RFC 3261 §17.1.1.3: the ACK for a non-2xx belongs to the transaction.
                    let ack = Bytes::from(self.ack_for(response).to_bytes());
                    let until = if reliable {
                        now
                    } else {
                        now + Duration::from_secs(32)
                    };
                    self.state = ClientState::Completed {
                        ack: Some(ack.clone()),
                        until,
                    };
                    out.ack = Some(ack);
                    out.deliver = true;
                    if reliable {
                        out.terminate = true;
                    } else {
                        out.timers.push((until, Timer::D));
                    }
                }
                // RFC 6026 §8.4: retransmitted or forked 2xx go to the TU.
                (false, 200..=299) => {
                    out.deliver = matches!(self.state, ClientState::Accepted { .. })
                }
                (false, 300..) => {
                    if let ClientState::Completed { ack: Some(ack), .. } = &self.state {
                        out.ack = Some(ack.clone());
                    }
                }
                (false, _) => {}
            }
        } else {
            match (live, code) {
                (true, 100..=199) => {
                    // RFC 3261 §17.1.2.2: in Proceeding, E retransmits every T2.
                    let until = match self.state {
                        ClientState::Calling { until, .. } => Some(until),
                        ClientState::Proceeding { until, .. } => until,
                        _ => None,
                    };
                    let retransmit = match self.state {
                        ClientState::Calling { retransmit, .. }
                        | ClientState::Proceeding { retransmit, .. } => {
                            retransmit.map(|(at, _)| (at, config.t2))
                        }
                        _ => None,
                    };
                    self.state = ClientState::Proceeding { retransmit, until };
                    out.deliver = true;
                }
                (true, _) => {
                    out.deliver = true;
                    if reliable {
                        out.terminate = true;
                    } else {
                        let until = now + config.t4;
                        self.state = ClientState::Completed { ack: None, until };
                        out.timers.push((until, Timer::K));
                    }
                }
                (false, _) => {}
            }
        }
        out
    }

    pub fn on_timer(&mut self, now: Instant, timer: Timer, config: &TimerConfig) -> TimerStep {
        match (&mut self.state, timer) {
            (
                ClientState::Calling {
                    retransmit: Some((at, interval)),
                    ..
                },
                Timer::A,
            ) => {
                // RFC 3261 §17.1.1.2: A doubles each time, without the T2 cap.
                *interval *= 2;
                *at = now + *interval;
                TimerStep::Retransmit { next: *at }
            }
            (
                ClientState::Calling {
                    retransmit: Some((at, interval)),
                    ..
                },
                Timer::E,
            ) => {
                *interval = (*interval * 2).min(config.t2);
                *at = now + *interval;
                TimerStep::Retransmit { next: *at }
            }
            (
                ClientState::Proceeding {
                    retransmit: Some((at, _)),
                    ..
                },
                Timer::E,
            ) => {
                *at = now + config.t2;
                TimerStep::Retransmit { next: *at }
            }
            (_, Timer::B | Timer::F) => TimerStep::Terminate { timed_out: true },
            _ => TimerStep::Terminate { timed_out: false },
        }
    }

    /// The ACK for a non-2xx final (RFC 3261 §17.1.1.3): the INVITE's Request-URI, Call-ID,
    /// From, top Via and Route, the response's To, CSeq number with method ACK.
    fn ack_for(&self, response: &Response) -> Request {
        let to = response.headers.iter().find(|h| matches!(h, Header::To(_)));
        self.derived_request(Method::Ack, to)
    }

    /// The CANCEL for this INVITE (RFC 3261 §9.1): same Request-URI, Call-ID, To, From, CSeq
    /// number, top Via and Route.
    pub fn cancel_request(&self) -> Request {
        self.derived_request(Method::Cancel, None)
    }

    /// A request that reuses the INVITE's identity: its Request-URI, top Via (so it matches the
    /// same transaction at the far end), From, Call-ID, Route and CSeq number. `to` replaces the
    /// INVITE's To when given.
    fn derived_request(&self, method: Method, to: Option<&Header>) -> Request {
        let invite = self
            .request
            .as_ref()
            .expect("INVITE transactions keep their request");
        let mut headers = Headers::default();
        let mut seen_via = false;
        for header in invite.headers.iter() {
            match header {
                Header::Via(_) if !seen_via => {
                    seen_via = true;
                    headers.push(header.clone());
                }
                Header::To(_) if to.is_none() => headers.push(header.clone()),
                Header::From(_) | Header::CallId(_) | Header::Route(_) | Header::MaxForwards(_) => {
                    headers.push(header.clone())
                }
                Header::CSeq(cseq) => headers.push(with_cseq_method(cseq, method)),
                _ => {}
            }
        }
        if let Some(to) = to {
            headers.push(to.clone());
        }
        headers.push(Header::ContentLength(rsipstack::sip::ContentLength::new(
            "0",
        )));
        Request {
            method,
            uri: invite.uri.clone(),
            version: invite.version,
            headers,
            body: Vec::new(),
        }
    }
}

/// The same CSeq number with another method (ACK and CANCEL reuse the INVITE's number).
fn with_cseq_method(cseq: &rsipstack::sip::CSeq, method: Method) -> Header {
    let number = cseq.value().split_whitespace().next().unwrap_or("1");
    Header::CSeq(rsipstack::sip::CSeq::new(format!("{number} {method}")))
}
