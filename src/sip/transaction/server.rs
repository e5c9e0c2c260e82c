//! Server transactions: INVITE (RFC 3261 §17.2.1, figure 7, with RFC 6026's Accepted state) and
//! non-INVITE (§17.2.2, figure 8). Terminated is not a state: the layer drops the transaction.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{MergeKey, ServerKey, Timer, TimerConfig, TxError};
use crate::sip::peer::Peer;

#[derive(Debug)]
pub(super) enum ServerState {
    /// Non-INVITE: the TU has the request and nothing was sent yet.
    Trying,
    /// A provisional was sent (for INVITE, at least our 100); request retransmissions get it again.
    Proceeding { last: Bytes },
    /// A final was sent. INVITE: non-2xx, retransmitted on Timer G until the ACK or Timer H.
    /// Non-INVITE: any final, kept for request retransmissions until Timer J.
    Completed {
        response: Bytes,
        /// Timer G: when to retransmit next and the interval after that (unreliable INVITE only).
        retransmit: Option<(Instant, Duration)>,
        /// Timer H (INVITE) or J (non-INVITE).
        until: Instant,
    },
    /// INVITE: the ACK arrived; absorbing its retransmissions until Timer I.
    Confirmed { until: Instant },
    /// INVITE: a 2xx was sent (RFC 6026); INVITE retransmissions are absorbed until Timer L.
    Accepted { until: Instant },
}

#[derive(Debug)]
pub(super) struct ServerTx {
    pub key: ServerKey,
    pub invite: bool,
    /// Where responses go.
    pub to: Peer,
    /// The To tag of our responses, for the 200 to a CANCEL.
    pub to_tag: Option<String>,
    pub merge: Option<MergeKey>,
    pub state: ServerState,
}

/// What a response from the TU does to the transaction.
pub(super) enum Step {
    Stay,
    Schedule(Vec<(Instant, Timer)>),
    Terminate,
}

pub(super) enum TimerStep {
    Retransmit { bytes: Bytes, next: Instant },
    Terminate { ack_timeout: bool },
}

impl ServerTx {
    pub fn new(key: ServerKey, invite: bool, to: Peer, merge: Option<MergeKey>) -> ServerTx {
        ServerTx {
            key,
            invite,
            to,
            to_tag: None,
            merge,
            state: ServerState::Trying,
        }
    }

    pub fn deadline(&self, timer: Timer) -> Option<Instant> {
        match (&self.state, timer) {
            (ServerState::Completed { retransmit, .. }, Timer::G) => retransmit.map(|(at, _)| at),
            (ServerState::Completed { until, .. }, Timer::H | Timer::J) => Some(*until),
            (ServerState::Confirmed { until }, Timer::I) => Some(*until),
            (ServerState::Accepted { until }, Timer::L) => Some(*until),
            _ => None,
        }
    }

    /// The TU sends a response with status `code`.
    pub fn on_response(
        &mut self,
        now: Instant,
        code: u16,
        bytes: Bytes,
        config: &TimerConfig,
    ) -> Result<Step, TxError> {
        let reliable = self.to.is_reliable();
        match (&self.state, code) {
            (ServerState::Trying | ServerState::Proceeding { .. }, 100..=199) => {
                self.state = ServerState::Proceeding { last: bytes };
                Ok(Step::Stay)
            }
            (ServerState::Trying | ServerState::Proceeding { .. }, _)
                if self.invite && code < 300 =>
            {
                // RFC 6026 §8.5: 2xx moves to Accepted; its retransmission is the TU's job.
                let until = now + config.t1x64();
                self.state = ServerState::Accepted { until };
                Ok(Step::Schedule(vec![(until, Timer::L)]))
            }
            // RFC 6026 §8.7: 2xx retransmissions from the TU pass straight to the transport.
            (ServerState::Accepted { .. }, 200..=299) => Ok(Step::Stay),
            (ServerState::Trying | ServerState::Proceeding { .. }, _) if self.invite => {
                let until = now + config.t1x64();
                let retransmit = (!reliable).then(|| (now + config.t1, config.t1));
                self.state = ServerState::Completed {
                    response: bytes,
                    retransmit,
                    until,
                };
                let mut timers = vec![(until, Timer::H)];
                if let Some((at, _)) = retransmit {
                    timers.push((at, Timer::G));
                }
                Ok(Step::Schedule(timers))
            }
            (ServerState::Trying | ServerState::Proceeding { .. }, _) => {
                // RFC 3261 §17.2.2: Timer J is 64·T1 on UDP and zero on reliable transports.
                if reliable {
                    return Ok(Step::Terminate);
                }
                let until = now + config.t1x64();
                self.state = ServerState::Completed {
                    response: bytes,
                    retransmit: None,
                    until,
                };
                Ok(Step::Schedule(vec![(until, Timer::J)]))
            }
            _ => Err(TxError::AlreadyFinal),
        }
    }

    pub fn on_timer(&mut self, now: Instant, timer: Timer, config: &TimerConfig) -> TimerStep {
        match (&mut self.state, timer) {
            (
                ServerState::Completed {
                    response,
                    retransmit: Some((at, interval)),
                    ..
                },
                Timer::G,
            ) => {
                // RFC 3261 §17.2.1: G doubles up to T2.
                let next_interval = (*interval * 2).min(config.t2);
                *at = now + next_interval;
                *interval = next_interval;
                TimerStep::Retransmit {
                    bytes: response.clone(),
                    next: *at,
                }
            }
            (_, Timer::H) => TimerStep::Terminate { ack_timeout: true },
            _ => TimerStep::Terminate { ack_timeout: false },
        }
    }
}
