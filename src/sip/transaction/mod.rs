//! The SIP transaction layer (RFC 3261 §17, amended by RFC 6026), sans-IO.
//!
//! [`TransactionLayer`] holds every client and server transaction of one endpoint. It is driven
//! by the transaction user (TU):
//!
//! - `handle_request` / `handle_response` with each message the transport received, stamped
//!   with the time it arrived;
//! - `respond`, `send_request`, `cancel` and `send_stateless` with what the TU wants sent;
//! - `handle_timeout(now)` once `poll_timeout()` is reached.
//!
//! and drained with `poll_transmit` (datagrams and stream writes) and `poll_event` (what the TU
//! must act on) until both return `None`. Nothing here reads a clock or touches a socket.
//!
//! Each of the four machines of RFC 3261 figures 5–8 is a separate state type in `client` and
//! `server`; each state carries its own timer deadlines. Timers live in one table (a min-heap of
//! `(deadline, transaction, Timer)`); an entry whose transaction has moved on is recognised as
//! stale when popped, because the transaction's state no longer carries that deadline.

mod client;
mod server;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rsipstack::sip::{Header, Method, Request, Response, StatusCode};

use super::ids::Ids;
use super::message;
use super::peer::{Peer, Transmit};
use super::wire::Meta;
use client::{ClientState, ClientTx};
use server::{ServerState, ServerTx};

/// T1, T2 and T4 of RFC 3261 §17 (Table 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    pub t1: Duration,
    pub t2: Duration,
    pub t4: Duration,
    /// Server transactions kept at once; beyond it new requests get a stateless 503, so a
    /// flood cannot make us hold 64·T1 worth of state without bound.
    pub max_server_transactions: usize,
}

impl Default for TimerConfig {
    fn default() -> Self {
        TimerConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            max_server_transactions: 200_000,
        }
    }
}

impl TimerConfig {
    /// 64·T1: Timers B, F, H, J, L and M.
    fn t1x64(&self) -> Duration {
        self.t1 * 64
    }
}

/// The timers of RFC 3261 Table 4 and RFC 6026 (L, M).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Timer {
    /// INVITE request retransmission (client, unreliable).
    A,
    /// INVITE transaction timeout (client).
    B,
    /// Wait for response retransmissions after a non-2xx final (client INVITE).
    D,
    /// Non-INVITE request retransmission (client, unreliable).
    E,
    /// Non-INVITE transaction timeout (client).
    F,
    /// INVITE final response retransmission (server, unreliable).
    G,
    /// Wait for the ACK (server INVITE).
    H,
    /// Wait for ACK retransmissions (server INVITE).
    I,
    /// Wait for request retransmissions (server non-INVITE).
    J,
    /// Wait for response retransmissions (client non-INVITE).
    K,
    /// Wait for INVITE retransmissions after a 2xx (server, RFC 6026).
    L,
    /// Wait for 2xx retransmissions (client, RFC 6026).
    M,
}

/// A server transaction, as the TU names it when it responds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerTxId(pub(crate) u64);

/// A client transaction, as responses to it are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ClientTxId(u64);

/// What the TU must act on.
#[derive(Debug, Clone)]
pub(crate) enum TxEvent {
    /// A new request; the TU answers it with [`TransactionLayer::respond`].
    Request {
        tx: ServerTxId,
        request: Request,
        meta: Meta,
        peer: Peer,
    },
    /// An ACK that belongs to no transaction: the ACK for a 2xx, which is the dialog's.
    Ack { request: Request, meta: Meta },
    /// A CANCEL matched this INVITE before its final response. The layer already answered the
    /// CANCEL with 200; the TU should now answer the INVITE with 487 (RFC 3261 §9.2).
    Cancelled { tx: ServerTxId },
    /// A response to one of our requests. After a 2xx to an INVITE, further 2xx (retransmitted
    /// or from other forks) keep arriving here until Timer M (RFC 6026 §8.4).
    Response {
        tx: ClientTxId,
        response: Response,
        meta: Meta,
    },
    /// A 2xx to an INVITE whose transaction is gone; the TU re-sends its ACK if it knows the dialog.
    StrayResponse { meta: Meta },
    /// Timer B or F: no final response came (the TU treats it as a 408).
    Timeout { tx: ClientTxId },
    /// The transport could not carry the request (a connection refused, a TLS peer whose
    /// certificate did not verify): RFC 3261 §8.1.3.1, the TU treats it as a 503.
    TransportError { tx: ClientTxId },
    /// Timer H: our non-2xx final to an INVITE was never acknowledged.
    AckTimeout,
}

/// Why the layer refused a TU call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TxError {
    /// The transaction has terminated or never existed.
    #[error("no such transaction")]
    NoSuchTransaction,
    /// The response is not allowed in the transaction's state (e.g. a second final).
    #[error("a final response was already sent")]
    AlreadyFinal,
    /// The request lacks the top Via with an RFC 3261 branch that names its transaction.
    #[error("request has no Via branch")]
    NoBranch,
}

/// How the server side names a transaction (RFC 3261 §17.2.3).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ServerKey {
    /// Branch with the magic cookie, sent-by, and method (ACK is matched as INVITE).
    Branch {
        branch: String,
        sent_by: String,
        method: Method,
    },
    /// RFC 2543 peers without a magic cookie: the request's identifying headers.
    Legacy {
        call_id: String,
        from_tag: Option<String>,
        cseq: u32,
        sent_by: String,
        method: Method,
    },
}

impl ServerKey {
    fn of(meta: &Meta, method: Method) -> ServerKey {
        let method = if method == Method::Ack {
            Method::Invite
        } else {
            method
        };
        match &meta.via.branch {
            Some(branch) if meta.via.is_rfc3261() => ServerKey::Branch {
                branch: branch.clone(),
                sent_by: meta.via.sent_by.clone(),
                method,
            },
            _ => ServerKey::Legacy {
                call_id: meta.call_id.clone(),
                from_tag: meta.from_tag.clone(),
                cseq: meta.cseq,
                sent_by: meta.via.sent_by.clone(),
                method,
            },
        }
    }

    fn with_method(&self, method: Method) -> ServerKey {
        let mut key = self.clone();
        match &mut key {
            ServerKey::Branch { method: m, .. } | ServerKey::Legacy { method: m, .. } => {
                *m = method
            }
        }
        key
    }
}

/// How the client side names a transaction (RFC 3261 §17.1.3): branch and CSeq method.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ClientKey {
    branch: String,
    method: Method,
}

/// A request that arrived without a To tag, named as RFC 3261 §8.2.2.2 does to spot a merged
/// (looped or forked-and-rejoined) copy of it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct MergeKey {
    call_id: String,
    from_tag: String,
    cseq: u32,
    method: Method,
}

/// Every transaction of one endpoint. See the module documentation for the driving contract.
#[derive(Debug)]
pub(crate) struct TransactionLayer {
    config: TimerConfig,
    next_id: u64,
    servers: HashMap<u64, ServerTx>,
    server_index: HashMap<ServerKey, u64>,
    merge_index: HashMap<MergeKey, u64>,
    clients: HashMap<u64, ClientTx>,
    client_index: HashMap<ClientKey, u64>,
    timers: BinaryHeap<Reverse<(Instant, u64, Timer)>>,
    transmits: VecDeque<Transmit>,
    /// INVITE transactions whose 100 (Trying) waits for the next [`Self::poll_transmit`]. A TU
    /// that answers in the same pass (an echo, an early error) makes it needless (RFC 3261
    /// §17.2.1: no 100 when the TU answers within 200 ms), and it is left out.
    trying: Vec<u64>,
    events: VecDeque<TxEvent>,
    /// The `Server` header of the responses the layer writes itself (100 Trying, 503, 482 …).
    server: Option<String>,
    /// The To tags of those responses.
    ids: Ids,
}

impl TransactionLayer {
    /// A layer with `config`'s timers whose own responses take their To tags from `ids`.
    pub(crate) fn new(config: TimerConfig, ids: Ids) -> TransactionLayer {
        TransactionLayer {
            ids,
            config,
            next_id: 1,
            servers: HashMap::new(),
            server_index: HashMap::new(),
            merge_index: HashMap::new(),
            clients: HashMap::new(),
            client_index: HashMap::new(),
            timers: BinaryHeap::new(),
            transmits: VecDeque::new(),
            trying: Vec::new(),
            events: VecDeque::new(),
            server: None,
        }
    }

    /// Names us in a `Server` header on the responses the layer writes itself, as the TU does
    /// on its own (RFC 3261 §20.35).
    pub(crate) fn with_server_header(mut self, server: impl Into<String>) -> TransactionLayer {
        self.server = Some(server.into());
        self
    }

    /// A response the layer writes itself, with our `Server` header.
    fn own_response(&self, request: &Request, status: StatusCode, tag: Option<&str>) -> Response {
        let mut response = message::response(request, status, tag);
        if let Some(server) = &self.server {
            message::insert_before_length(
                &mut response.headers,
                vec![Header::Server(rsipstack::sip::Server::new(server.clone()))],
            );
        }
        response
    }

    /// Live server and client transactions (for metrics and leak checks).
    pub(crate) fn len(&self) -> (usize, usize) {
        (self.servers.len(), self.clients.len())
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.servers.is_empty() && self.clients.is_empty()
    }

    pub(crate) fn poll_transmit(&mut self) -> Option<Transmit> {
        for id in self.trying.drain(..) {
            if let Some(tx) = self.servers.get(&id)
                && let ServerState::Proceeding { last } = &tx.state
            {
                self.transmits.push_back(Transmit {
                    to: tx.to,
                    payload: last.clone(),
                });
            }
        }
        self.transmits.pop_front()
    }

    /// The transaction answers or resends on its own: its pending 100 is not needed.
    fn forget_trying(&mut self, id: u64) {
        if let Some(at) = self.trying.iter().position(|&t| t == id) {
            self.trying.swap_remove(at);
        }
    }

    pub(crate) fn poll_event(&mut self) -> Option<TxEvent> {
        self.events.pop_front()
    }

    /// The earliest timer deadline; it may belong to a transaction that has moved on, in which
    /// case `handle_timeout` discards it.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _, _))| *at)
    }

    fn allocate_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn schedule(&mut self, at: Instant, id: u64, timer: Timer) {
        self.timers.push(Reverse((at, id, timer)));
    }

    fn send(&mut self, to: Peer, payload: Bytes) {
        self.transmits.push_back(Transmit { to, payload });
    }

    /// Sends bytes outside any transaction: the ACK for a 2xx, a stateless error reply.
    pub(crate) fn send_stateless(&mut self, to: Peer, payload: Bytes) {
        self.send(to, payload);
    }

    // ----- server side -----

    /// A request from the transport. Retransmissions are absorbed or answered here; new
    /// requests become [`TxEvent::Request`], ACKs for 2xx become [`TxEvent::Ack`].
    pub(crate) fn handle_request(
        &mut self,
        now: Instant,
        mut request: Request,
        meta: Meta,
        peer: Peer,
    ) {
        stamp_via(&mut request, &meta, &peer);
        let key = ServerKey::of(&meta, request.method);
        match request.method {
            Method::Ack => self.server_ack(now, request, meta, &key),
            Method::Cancel => self.server_cancel(now, request, meta, peer, key),
            _ => {
                if let Some(&id) = self.server_index.get(&key) {
                    self.server_retransmission(id);
                } else if self.servers.len() >= self.config.max_server_transactions {
                    self.refuse_overload(&request, &meta, peer);
                } else if self.is_merged(&meta, request.method, &key) {
                    // RFC 3261 §8.2.2.2: the same request reached us twice by different paths.
                    let id = self.new_server_tx(&request, &meta, peer, key);
                    let tag = self.ids.tag();
                    let reply = self.own_response(&request, StatusCode::LoopDetected, Some(&tag));
                    let _ = self.respond(now, ServerTxId(id), reply);
                } else {
                    let id = self.new_server_tx(&request, &meta, peer, key);
                    self.events.push_back(TxEvent::Request {
                        tx: ServerTxId(id),
                        request,
                        meta,
                        peer,
                    });
                }
            }
        }
    }

    /// A stateless 503 (RFC 3261 §21.5.4) for a request we have no room to keep.
    fn refuse_overload(&mut self, request: &Request, meta: &Meta, peer: Peer) {
        let tag = self.ids.tag();
        let mut reply = self.own_response(request, StatusCode::ServiceUnavailable, Some(&tag));
        reply
            .headers
            .push(Header::RetryAfter(rsipstack::sip::RetryAfter::new("5")));
        let to = response_destination(meta, peer);
        self.send(to, Bytes::from(reply.to_bytes()));
    }

    fn is_merged(&self, meta: &Meta, method: Method, key: &ServerKey) -> bool {
        let (None, Some(from_tag)) = (&meta.to_tag, &meta.from_tag) else {
            return false;
        };
        let merge = MergeKey {
            call_id: meta.call_id.clone(),
            from_tag: from_tag.clone(),
            cseq: meta.cseq,
            method,
        };
        self.merge_index
            .get(&merge)
            .and_then(|id| self.servers.get(id))
            .is_some_and(|tx| tx.key != *key)
    }

    fn new_server_tx(&mut self, request: &Request, meta: &Meta, peer: Peer, key: ServerKey) -> u64 {
        let id = self.allocate_id();
        let invite = request.method == Method::Invite;
        let merge = match (&meta.to_tag, &meta.from_tag) {
            (None, Some(from_tag)) => {
                let merge = MergeKey {
                    call_id: meta.call_id.clone(),
                    from_tag: from_tag.clone(),
                    cseq: meta.cseq,
                    method: request.method,
                };
                self.merge_index.entry(merge.clone()).or_insert(id);
                Some(merge)
            }
            _ => None,
        };
        let to = response_destination(meta, peer);
        let mut tx = ServerTx::new(key.clone(), invite, to, merge);
        if invite {
            // RFC 3261 §17.2.1: a 100 quenches INVITE retransmissions; its To gets no tag. It
            // leaves with the next drain unless the TU has answered by then.
            let trying = Bytes::from(
                self.own_response(request, StatusCode::Trying, None)
                    .to_bytes(),
            );
            tx.state = ServerState::Proceeding { last: trying };
            self.trying.push(id);
        }
        self.server_index.insert(key, id);
        self.servers.insert(id, tx);
        id
    }

    fn server_retransmission(&mut self, id: u64) {
        let tx = &self.servers[&id];
        let resend = match &tx.state {
            ServerState::Proceeding { last } => Some(last.clone()),
            ServerState::Completed { response, .. } => Some(response.clone()),
            // Trying: the TU has not answered yet; Confirmed/Accepted absorb (RFC 6026 §8.7).
            ServerState::Trying | ServerState::Confirmed { .. } | ServerState::Accepted { .. } => {
                None
            }
        };
        if let Some(bytes) = resend {
            let to = tx.to;
            self.forget_trying(id);
            self.send(to, bytes);
        }
    }

    fn server_ack(&mut self, now: Instant, request: Request, meta: Meta, key: &ServerKey) {
        let Some(&id) = self.server_index.get(key) else {
            self.events.push_back(TxEvent::Ack { request, meta });
            return;
        };
        let tx = self
            .servers
            .get_mut(&id)
            .expect("indexed transaction exists");
        match tx.state {
            ServerState::Completed { .. } => {
                // RFC 3261 §17.2.1: the ACK for our non-2xx; wait out its retransmissions (Timer I).
                if tx.to.is_reliable() {
                    self.remove_server(id);
                } else {
                    let until = now + self.config.t4;
                    self.servers.get_mut(&id).expect("present").state =
                        ServerState::Confirmed { until };
                    self.schedule(until, id, Timer::I);
                }
            }
            // RFC 6026 §8.7: an ACK in Accepted goes to the TU (RFC 2543 peers reuse the branch).
            ServerState::Accepted { .. } => self.events.push_back(TxEvent::Ack { request, meta }),
            _ => {}
        }
    }

    fn server_cancel(
        &mut self,
        now: Instant,
        request: Request,
        meta: Meta,
        peer: Peer,
        key: ServerKey,
    ) {
        if let Some(&id) = self.server_index.get(&key) {
            self.server_retransmission(id);
            return;
        }
        let invite = self
            .server_index
            .get(&key.with_method(Method::Invite))
            .copied();
        let cancel_id = self.new_server_tx(&request, &meta, peer, key);
        let Some(invite_id) = invite else {
            let tag = self.ids.tag();
            let reply = self.own_response(
                &request,
                StatusCode::CallTransactionDoesNotExist,
                Some(&tag),
            );
            let _ = self.respond(now, ServerTxId(cancel_id), reply);
            return;
        };
        let invite_tx = &self.servers[&invite_id];
        // RFC 3261 §9.2: the CANCEL's 200 carries the To tag of the INVITE's responses.
        let tag = invite_tx.to_tag.clone().unwrap_or_else(|| self.ids.tag());
        let pending = matches!(invite_tx.state, ServerState::Proceeding { .. });
        let _ = self.respond(
            now,
            ServerTxId(cancel_id),
            self.own_response(&request, StatusCode::OK, Some(&tag)),
        );
        if pending {
            self.events.push_back(TxEvent::Cancelled {
                tx: ServerTxId(invite_id),
            });
        }
    }

    /// Sends the TU's response on a server transaction and moves its machine.
    pub(crate) fn respond(
        &mut self,
        now: Instant,
        tx: ServerTxId,
        response: Response,
    ) -> Result<(), TxError> {
        let id = tx.0;
        let config = self.config;
        let server = self
            .servers
            .get_mut(&id)
            .ok_or(TxError::NoSuchTransaction)?;
        let code = response.status_code.code();
        if server.to_tag.is_none() {
            server.to_tag = to_tag_of(&response);
        }
        let bytes = Bytes::from(response.to_bytes());
        let to = server.to;
        let step = server.on_response(now, code, bytes.clone(), &config)?;
        self.forget_trying(id);
        self.send(to, bytes);
        match step {
            server::Step::Stay => {}
            server::Step::Schedule(timers) => {
                for (at, timer) in timers {
                    self.schedule(at, id, timer);
                }
            }
            server::Step::Terminate => self.remove_server(id),
        }
        Ok(())
    }

    fn remove_server(&mut self, id: u64) {
        if let Some(tx) = self.servers.remove(&id) {
            self.server_index.remove(&tx.key);
            if let Some(merge) = tx.merge
                && self.merge_index.get(&merge) == Some(&id)
            {
                self.merge_index.remove(&merge);
            }
        }
    }

    // ----- client side -----

    /// Starts a client transaction for `request`, whose top Via must carry an RFC 3261 branch.
    /// ACK is never sent this way: see [`send_stateless`](Self::send_stateless).
    pub(crate) fn send_request(
        &mut self,
        now: Instant,
        request: Request,
        to: Peer,
    ) -> Result<ClientTxId, TxError> {
        let branch = top_branch(&request).ok_or(TxError::NoBranch)?;
        let key = ClientKey {
            branch,
            method: request.method,
        };
        let id = self.allocate_id();
        let bytes = Bytes::from(request.to_bytes());
        let (tx, timers) =
            ClientTx::start(now, key.clone(), request, bytes.clone(), to, &self.config);
        self.send(to, bytes);
        for (at, timer) in timers {
            self.schedule(at, id, timer);
        }
        self.client_index.insert(key, id);
        self.clients.insert(id, tx);
        Ok(ClientTxId(id))
    }

    /// Cancels an INVITE client transaction (RFC 3261 §9.1). The CANCEL goes out once a
    /// provisional response has arrived; it does nothing after a final response.
    pub(crate) fn cancel(&mut self, now: Instant, tx: ClientTxId) -> Result<(), TxError> {
        let client = self
            .clients
            .get_mut(&tx.0)
            .ok_or(TxError::NoSuchTransaction)?;
        match client.state {
            ClientState::Calling { .. } => {
                client.cancel_pending = true;
                Ok(())
            }
            ClientState::Proceeding { .. } => {
                let cancel = client.cancel_request();
                let to = client.to;
                self.send_request(now, cancel, to).map(|_| ())
            }
            _ => Err(TxError::AlreadyFinal),
        }
    }

    /// A response from the transport.
    pub(crate) fn handle_response(&mut self, now: Instant, response: Response, meta: Meta) {
        let Some(branch) = meta.via.branch.clone() else {
            return;
        };
        let key = ClientKey {
            branch,
            method: meta.cseq_method,
        };
        let Some(&id) = self.client_index.get(&key) else {
            if meta.cseq_method == Method::Invite && response.status_code.code() / 100 == 2 {
                self.events.push_back(TxEvent::StrayResponse { meta });
            }
            return;
        };
        let config = self.config;
        let client = self
            .clients
            .get_mut(&id)
            .expect("indexed transaction exists");
        let outcome = client.on_response(now, &response, &config);
        let to = client.to;
        let cancel = outcome.send_cancel.then(|| client.cancel_request());
        if let Some(ack) = outcome.ack {
            self.send(to, ack);
        }
        if let Some(cancel) = cancel {
            let _ = self.send_request(now, cancel, to);
        }
        for (at, timer) in outcome.timers {
            self.schedule(at, id, timer);
        }
        if outcome.deliver {
            self.events.push_back(TxEvent::Response {
                tx: ClientTxId(id),
                response,
                meta,
            });
        }
        if outcome.terminate {
            self.remove_client(id);
        }
    }

    fn remove_client(&mut self, id: u64) {
        if let Some(tx) = self.clients.remove(&id) {
            self.client_index.remove(&tx.key);
        }
    }

    /// The transport could not reach `to` (RFC 3261 §17.1.4): every client transaction
    /// waiting for its first answer from there ends at once with a
    /// [`TxEvent::TransportError`], instead of after Timer B or F.
    pub(crate) fn transport_error(&mut self, to: Peer) {
        let failed: Vec<u64> = self
            .clients
            .iter()
            .filter(|(_, c)| {
                c.to.transport == to.transport
                    && c.to.addr == to.addr
                    && matches!(c.state, ClientState::Calling { .. })
            })
            .map(|(id, _)| *id)
            .collect();
        for id in failed {
            self.remove_client(id);
            self.events
                .push_back(TxEvent::TransportError { tx: ClientTxId(id) });
        }
    }

    // ----- timers -----

    /// Fires every timer due at `now`.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse((at, id, timer))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            if let Some(server) = self.servers.get_mut(&id) {
                if server.deadline(timer) != Some(at) {
                    continue;
                }
                match server.on_timer(now, timer, &self.config) {
                    server::TimerStep::Retransmit { bytes, next } => {
                        let to = server.to;
                        self.send(to, bytes);
                        self.schedule(next, id, timer);
                    }
                    server::TimerStep::Terminate { ack_timeout } => {
                        self.remove_server(id);
                        if ack_timeout {
                            self.events.push_back(TxEvent::AckTimeout);
                        }
                    }
                }
            } else if let Some(client) = self.clients.get_mut(&id) {
                if client.deadline(timer) != Some(at) {
                    continue;
                }
                match client.on_timer(now, timer, &self.config) {
                    client::TimerStep::Retransmit { next } => {
                        let (to, bytes) = (client.to, client.bytes.clone());
                        self.send(to, bytes);
                        self.schedule(next, id, timer);
                    }
                    client::TimerStep::Terminate { timed_out } => {
                        self.remove_client(id);
                        if timed_out {
                            self.events
                                .push_back(TxEvent::Timeout { tx: ClientTxId(id) });
                        }
                    }
                }
            }
        }
    }
}

/// Where responses to a request go (RFC 3261 §18.2.2, RFC 3581 §4): back on the connection for
/// a stream; on UDP to the source address when `rport` was asked for, else to the source IP and
/// the port the Via names.
fn response_destination(meta: &Meta, peer: Peer) -> Peer {
    if peer.is_reliable() || meta.via.rport.is_some() {
        return peer;
    }
    let port = via_port(&meta.via.sent_by).unwrap_or(5060);
    Peer::udp(std::net::SocketAddr::new(peer.addr.ip(), port))
}

fn via_port(sent_by: &str) -> Option<u16> {
    let after_host = match sent_by.rfind(']') {
        Some(i) => &sent_by[i + 1..],
        None => sent_by,
    };
    after_host.rsplit_once(':')?.1.parse().ok()
}

/// Adds `received` (and fills a bare `rport`) to the top Via so responses copy them
/// (RFC 3261 §18.2.1, RFC 3581 §4).
fn stamp_via(request: &mut Request, meta: &Meta, peer: &Peer) {
    let ip = peer.addr.ip().to_string();
    let host = meta.via.sent_by.trim_start_matches('[');
    let host = host.split([']', ':']).next().unwrap_or("");
    let needs_received = host != ip || meta.via.rport.is_some();
    let fill_rport = meta.via.rport == Some(None);
    if !needs_received && !fill_rport {
        return;
    }
    let Some(Header::Via(via)) = request
        .headers
        .iter_mut()
        .find(|h| matches!(h, Header::Via(_)))
    else {
        return;
    };
    let value = via.value();
    let (first, rest) = match value.find(',') {
        Some(i) => (&value[..i], &value[i..]),
        None => (value, ""),
    };
    let mut first = first.trim_end().to_string();
    if fill_rport {
        first = replace_bare_rport(&first, peer.addr.port());
    }
    if needs_received && !first.to_ascii_lowercase().contains(";received=") {
        first.push_str(";received=");
        first.push_str(&ip);
    }
    via.replace(format!("{first}{rest}"));
}

fn replace_bare_rport(via: &str, port: u16) -> String {
    let mut out = String::with_capacity(via.len() + 6);
    for (i, param) in via.split(';').enumerate() {
        if i > 0 {
            out.push(';');
        }
        if param.trim().eq_ignore_ascii_case("rport") {
            out.push_str(&format!("rport={port}"));
        } else {
            out.push_str(param);
        }
    }
    out
}

fn top_branch(request: &Request) -> Option<String> {
    let via = request.headers.iter().find_map(|h| match h {
        Header::Via(v) => Some(v.value()),
        _ => None,
    })?;
    let first = via.split(',').next()?;
    first
        .split(';')
        .skip(1)
        .find_map(|p| {
            let (name, value) = p.split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("branch")
                .then(|| value.trim().to_string())
        })
        .filter(|b| b.starts_with("z9hG4bK"))
}

fn to_tag_of(response: &Response) -> Option<String> {
    response.headers.iter().find_map(|h| match h {
        Header::To(to) => to.tag().ok().flatten().map(|t| t.to_string()),
        _ => None,
    })
}

#[cfg(test)]
mod tests;
