//! The four transaction machines on a virtual clock: no sockets, no sleeps.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rsipstack::sip::StatusCode;

use super::*;
use crate::sip::ids::Ids;
use crate::sip::peer::TransportKind;
use crate::sip::wire::{Incoming, parse_datagram};

const T1: Duration = Duration::from_millis(500);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn client_addr() -> SocketAddr {
    "127.0.0.1:5070".parse().unwrap()
}

fn request_text(method: &str, branch: &str, extra: &str) -> String {
    format!(
        "{method} sip:echo@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5070;branch={branch}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:a@127.0.0.1>;tag=from1\r\n\
         To: <sip:echo@127.0.0.1>{extra}\r\n\
         Call-ID: call-1\r\n\
         CSeq: 1 {method}\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

fn parse(text: &str) -> Incoming {
    parse_datagram(text.as_bytes()).expect("test message parses")
}

fn parse_req(text: &str) -> (Request, Meta) {
    match parse(text) {
        Incoming::Request(r, m) => (r, m),
        Incoming::Response(..) => panic!("expected a request"),
    }
}

fn parse_resp(bytes: &[u8]) -> (Response, Meta) {
    match parse_datagram(bytes).expect("response parses") {
        Incoming::Response(r, m) => (r, m),
        Incoming::Request(..) => panic!("expected a response"),
    }
}

struct Server {
    layer: TransactionLayer,
    now: Instant,
}

impl Server {
    fn new() -> Server {
        Server {
            layer: TransactionLayer::new(TimerConfig::default(), Ids::seeded(1)),
            now: Instant::now(),
        }
    }

    fn receive(&mut self, text: &str, peer: Peer) {
        let (req, meta) = parse_req(text);
        self.layer.handle_request(self.now, req, meta, peer);
    }

    fn transmits(&mut self) -> Vec<Transmit> {
        std::iter::from_fn(|| self.layer.poll_transmit()).collect()
    }

    fn events(&mut self) -> Vec<TxEvent> {
        std::iter::from_fn(|| self.layer.poll_event()).collect()
    }

    /// Advances the clock to `at`, firing timers on the way, and returns when each transmit left.
    fn run_until(&mut self, at: Instant) -> Vec<(Duration, Transmit)> {
        let start = self.now;
        let mut out = Vec::new();
        while let Some(deadline) = self.layer.poll_timeout() {
            if deadline > at {
                break;
            }
            self.now = deadline.max(self.now);
            self.layer.handle_timeout(self.now);
            while let Some(t) = self.layer.poll_transmit() {
                out.push((self.now - start, t));
            }
        }
        self.now = at;
        out
    }

    /// The status codes of what is due to leave, in order.
    fn statuses(&mut self) -> Vec<u16> {
        self.transmits().iter().map(status_of).collect()
    }

    /// The TU answers `request` (its text) on `tx` with `status`, To tag `t1`.
    fn answer(&mut self, tx: ServerTxId, request: &str, status: StatusCode) {
        let (req, _) = parse_req(request);
        self.layer
            .respond(self.now, tx, message::response(&req, status, Some("t1")))
            .unwrap();
    }

    fn new_request_tx(&mut self) -> ServerTxId {
        match self.events().as_slice() {
            [TxEvent::Request { tx, .. }] => *tx,
            other => panic!("expected one new request, got {other:?}"),
        }
    }
}

fn status_of(t: &Transmit) -> u16 {
    parse_resp(&t.payload).0.status_code.code()
}

#[test]
fn invite_gets_an_immediate_100_and_retransmissions_are_absorbed() {
    let mut s = Server::new();
    let invite = request_text("INVITE", "z9hG4bK-inv", "");
    s.receive(&invite, Peer::udp(client_addr()));
    let sent = s.transmits();
    assert_eq!(sent.len(), 1);
    assert_eq!(status_of(&sent[0]), 100);
    s.new_request_tx();

    // The retransmitted INVITE gets the 100 again and never reaches the TU.
    s.receive(&invite, Peer::udp(client_addr()));
    assert_eq!(s.statuses(), vec![100]);
    assert!(s.events().is_empty());
}

#[test]
fn an_invite_answered_before_the_drain_gets_no_100() {
    let mut s = Server::new();
    let invite = request_text("INVITE", "z9hG4bK-quick", "");
    s.receive(&invite, Peer::udp(client_addr()));
    let tx = s.new_request_tx();
    s.answer(tx, &invite, StatusCode::Ringing);
    // RFC 3261 §17.2.1: the TU answered at once, so the 100 would only repeat what the 180
    // already does.
    assert_eq!(s.statuses(), vec![180]);
    // A retransmission now gets the 180, the transaction's last response.
    s.receive(&invite, Peer::udp(client_addr()));
    assert_eq!(s.statuses(), vec![180]);
}

#[test]
fn a_retransmission_before_the_drain_sends_the_100_once() {
    let mut s = Server::new();
    let invite = request_text("INVITE", "z9hG4bK-twice", "");
    s.receive(&invite, Peer::udp(client_addr()));
    s.receive(&invite, Peer::udp(client_addr()));
    assert_eq!(s.statuses(), vec![100]);
    s.new_request_tx();
}

#[test]
fn a_non_2xx_final_is_retransmitted_on_timer_g_until_the_ack() {
    let mut s = Server::new();
    let invite = request_text("INVITE", "z9hG4bK-g", "");
    s.receive(&invite, Peer::udp(client_addr()));
    s.transmits();
    let tx = s.new_request_tx();
    s.answer(tx, &invite, StatusCode::BusyHere);
    assert_eq!(s.statuses(), vec![486]);

    // Timer G: T1, then doubling, capped at T2: at 0.5, 1.5, 3.5, 7.5, 11.5 s.
    let start = s.now;
    let retransmits = s.run_until(start + ms(12_000));
    let at: Vec<u128> = retransmits.iter().map(|(d, _)| d.as_millis()).collect();
    assert_eq!(at, vec![500, 1500, 3500, 7500, 11_500]);

    // The ACK (same branch) stops them; it goes to no one.
    s.receive(
        &request_text("ACK", "z9hG4bK-g", ";tag=t1"),
        Peer::udp(client_addr()),
    );
    assert!(s.events().is_empty());
    let later = s.run_until(start + ms(40_000));
    assert!(
        later.is_empty(),
        "no retransmission after the ACK: {later:?}"
    );
    assert!(s.layer.is_empty(), "Timer I ended the transaction");
}

#[test]
fn timer_h_reports_a_missing_ack() {
    let mut s = Server::new();
    let invite = request_text("INVITE", "z9hG4bK-h", "");
    s.receive(&invite, Peer::udp(client_addr()));
    let tx = s.new_request_tx();
    let (req, _) = parse_req(&invite);
    s.layer
        .respond(
            s.now,
            tx,
            message::response(&req, StatusCode::NotFound, Some("t")),
        )
        .unwrap();
    s.transmits();
    let start = s.now;
    s.run_until(start + 64 * T1 - ms(1));
    assert!(s.events().is_empty());
    s.run_until(start + 64 * T1);
    assert!(matches!(s.events().as_slice(), [TxEvent::AckTimeout]));
    assert!(s.layer.is_empty());
}

#[test]
fn after_a_2xx_invite_retransmissions_are_absorbed_and_the_ack_goes_to_the_tu() {
    let mut s = Server::new();
    let invite = request_text("INVITE", "z9hG4bK-ok", "");
    s.receive(&invite, Peer::udp(client_addr()));
    let tx = s.new_request_tx();
    s.transmits();
    let (req, _) = parse_req(&invite);
    let ok = message::response(&req, StatusCode::OK, Some("t2"));
    s.layer.respond(s.now, tx, ok.clone()).unwrap();
    assert_eq!(s.transmits().len(), 1);

    // RFC 6026: Accepted absorbs the INVITE; the TU's own 2xx retransmission still goes out.
    s.receive(&invite, Peer::udp(client_addr()));
    assert!(s.transmits().is_empty());
    assert!(s.events().is_empty());
    s.layer.respond(s.now, tx, ok).unwrap();
    assert_eq!(s.transmits().len(), 1);

    // The ACK for a 2xx has its own branch: it is the dialog's.
    s.receive(
        &request_text("ACK", "z9hG4bK-ack", ";tag=t2"),
        Peer::udp(client_addr()),
    );
    assert!(matches!(s.events().as_slice(), [TxEvent::Ack { .. }]));

    let start = s.now;
    s.run_until(start + 64 * T1);
    assert!(s.layer.is_empty(), "Timer L ended the transaction");
}

#[test]
fn a_second_final_response_is_refused() {
    let mut s = Server::new();
    let invite = request_text("INVITE", "z9hG4bK-2f", "");
    s.receive(&invite, Peer::udp(client_addr()));
    let tx = s.new_request_tx();
    let (req, _) = parse_req(&invite);
    s.layer
        .respond(
            s.now,
            tx,
            message::response(&req, StatusCode::BusyHere, Some("t")),
        )
        .unwrap();
    let again = s.layer.respond(
        s.now,
        tx,
        message::response(&req, StatusCode::OK, Some("t")),
    );
    assert_eq!(again, Err(TxError::AlreadyFinal));
}

#[test]
fn non_invite_retransmissions_get_the_final_response_until_timer_j() {
    let mut s = Server::new();
    let options = request_text("OPTIONS", "z9hG4bK-opt", "");
    s.receive(&options, Peer::udp(client_addr()));
    let tx = s.new_request_tx();
    assert!(s.transmits().is_empty(), "no 100 for non-INVITE");

    // Trying: a retransmission is absorbed.
    s.receive(&options, Peer::udp(client_addr()));
    assert!(s.transmits().is_empty());
    assert!(s.events().is_empty());

    let (req, _) = parse_req(&options);
    s.layer
        .respond(
            s.now,
            tx,
            message::response(&req, StatusCode::OK, Some("t")),
        )
        .unwrap();
    assert_eq!(s.transmits().len(), 1);
    s.receive(&options, Peer::udp(client_addr()));
    assert_eq!(s.statuses(), vec![200]);

    let start = s.now;
    s.run_until(start + 64 * T1);
    assert!(s.layer.is_empty());
    // After Timer J the same branch is a new request again.
    s.receive(&options, Peer::udp(client_addr()));
    assert_eq!(s.events().len(), 1);
}

#[test]
fn over_tcp_the_server_keeps_no_timers() {
    let mut s = Server::new();
    let peer = Peer::tcp(client_addr(), Some(crate::sip::peer::ConnId(7)));
    let options = request_text("OPTIONS", "z9hG4bK-tcp", "").replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    s.receive(&options, peer);
    let tx = s.new_request_tx();
    let (req, _) = parse_req(&options);
    s.layer
        .respond(
            s.now,
            tx,
            message::response(&req, StatusCode::OK, Some("t")),
        )
        .unwrap();
    let sent = s.transmits();
    assert_eq!(
        sent[0].to, peer,
        "the response goes back on the same connection"
    );
    assert!(
        s.layer.is_empty(),
        "Timer J is zero on a reliable transport"
    );

    let invite = request_text("INVITE", "z9hG4bK-tcpi", "").replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    s.receive(&invite, peer);
    let tx = s.new_request_tx();
    let (req, _) = parse_req(&invite);
    s.layer
        .respond(
            s.now,
            tx,
            message::response(&req, StatusCode::BusyHere, Some("t")),
        )
        .unwrap();
    s.transmits();
    let start = s.now;
    let retransmits = s.run_until(start + 64 * T1 - ms(1));
    assert!(retransmits.is_empty(), "no Timer G on TCP");
}

#[test]
fn cancel_before_the_final_response_is_answered_and_reported() {
    let mut s = Server::new();
    let invite = request_text("INVITE", "z9hG4bK-c", "");
    s.receive(&invite, Peer::udp(client_addr()));
    let tx = s.new_request_tx();
    s.transmits();
    let (req, _) = parse_req(&invite);
    s.layer
        .respond(
            s.now,
            tx,
            message::response(&req, StatusCode::Ringing, Some("ringtag")),
        )
        .unwrap();
    s.transmits();

    s.receive(
        &request_text("CANCEL", "z9hG4bK-c", ""),
        Peer::udp(client_addr()),
    );
    let sent = s.transmits();
    assert_eq!(sent.len(), 1);
    let (ok, meta) = parse_resp(&sent[0].payload);
    assert_eq!(ok.status_code.code(), 200);
    assert_eq!(meta.cseq_method, Method::Cancel);
    assert_eq!(
        meta.to_tag.as_deref(),
        Some("ringtag"),
        "same To tag as the INVITE's responses"
    );
    assert!(matches!(s.events().as_slice(), [TxEvent::Cancelled { tx: t }] if *t == tx));

    s.layer
        .respond(
            s.now,
            tx,
            message::response(&req, StatusCode::RequestTerminated, Some("ringtag")),
        )
        .unwrap();
    assert_eq!(s.statuses(), vec![487]);
}

#[test]
fn cancel_after_the_final_response_has_no_effect() {
    let mut s = Server::new();
    let invite = request_text("INVITE", "z9hG4bK-c2", "");
    s.receive(&invite, Peer::udp(client_addr()));
    let tx = s.new_request_tx();
    let (req, _) = parse_req(&invite);
    s.layer
        .respond(
            s.now,
            tx,
            message::response(&req, StatusCode::OK, Some("t")),
        )
        .unwrap();
    s.transmits();
    s.receive(
        &request_text("CANCEL", "z9hG4bK-c2", ""),
        Peer::udp(client_addr()),
    );
    assert_eq!(s.statuses(), vec![200]);
    assert!(s.events().is_empty(), "the TU is not told: the call stands");
}

#[test]
fn cancel_for_an_unknown_invite_gets_481() {
    let mut s = Server::new();
    s.receive(
        &request_text("CANCEL", "z9hG4bK-none", ""),
        Peer::udp(client_addr()),
    );
    assert_eq!(s.statuses(), vec![481]);
    assert!(s.events().is_empty());
}

#[test]
fn a_merged_request_gets_482() {
    let mut s = Server::new();
    s.receive(
        &request_text("INVITE", "z9hG4bK-path1", ""),
        Peer::udp(client_addr()),
    );
    s.new_request_tx();
    s.transmits();
    // Same From tag, Call-ID and CSeq, another branch: the request forked and came back.
    s.receive(
        &request_text("INVITE", "z9hG4bK-path2", ""),
        Peer::udp(client_addr()),
    );
    let statuses: Vec<u16> = s.transmits().iter().map(status_of).collect();
    assert_eq!(statuses, vec![482]);
    assert!(s.events().is_empty());
}

#[test]
fn responses_go_to_the_source_port_only_when_rport_asks() {
    let mut s = Server::new();
    let nat: SocketAddr = "127.0.0.9:40000".parse().unwrap();
    s.receive(&request_text("OPTIONS", "z9hG4bK-n1", ""), Peer::udp(nat));
    let tx = s.new_request_tx();
    let (req, _) = parse_req(&request_text("OPTIONS", "z9hG4bK-n1", ""));
    s.layer
        .respond(s.now, tx, message::response(&req, StatusCode::OK, None))
        .unwrap();
    let sent = s.transmits();
    assert_eq!(
        sent[0].to.addr,
        "127.0.0.9:5070".parse::<std::net::SocketAddr>().unwrap(),
        "Via port, source IP"
    );

    let with_rport = request_text("OPTIONS", "z9hG4bK-n2", "")
        .replace("branch=z9hG4bK-n2", "branch=z9hG4bK-n2;rport")
        .replace("call-1", "call-2");
    s.receive(&with_rport, Peer::udp(nat));
    let TxEvent::Request { tx, request, .. } = s.events().remove(0) else {
        panic!()
    };
    s.layer
        .respond(s.now, tx, message::response(&request, StatusCode::OK, None))
        .unwrap();
    let sent = s.transmits();
    assert_eq!(sent[0].to.addr, nat);
    let text = String::from_utf8(sent[0].payload.to_vec()).unwrap();
    assert!(text.contains(";rport=40000;received=127.0.0.9"), "{text}");
}

// ----- client side -----

struct Client {
    layer: TransactionLayer,
    now: Instant,
    to: Peer,
}

impl Client {
    fn new(to: Peer) -> Client {
        Client {
            layer: TransactionLayer::new(TimerConfig::default(), Ids::seeded(1)),
            now: Instant::now(),
            to,
        }
    }

    fn send(&mut self, text: &str) -> ClientTxId {
        let (req, _) = parse_req(text);
        let id = self.layer.send_request(self.now, req, self.to).unwrap();
        assert_eq!(std::iter::from_fn(|| self.layer.poll_transmit()).count(), 1);
        id
    }

    fn receive(&mut self, response: &str) {
        let (resp, meta) = match parse(response) {
            Incoming::Response(r, m) => (r, m),
            _ => panic!(),
        };
        self.layer.handle_response(self.now, resp, meta);
    }

    fn run_until(&mut self, at: Instant) -> Vec<Duration> {
        let start = self.now;
        let mut out = Vec::new();
        while let Some(deadline) = self.layer.poll_timeout() {
            if deadline > at {
                break;
            }
            self.now = deadline.max(self.now);
            self.layer.handle_timeout(self.now);
            while self.layer.poll_transmit().is_some() {
                out.push(self.now - start);
            }
        }
        self.now = at;
        out
    }

    fn events(&mut self) -> Vec<TxEvent> {
        std::iter::from_fn(|| self.layer.poll_event()).collect()
    }
}

fn response_text(code: u16, reason: &str, method: &str, branch: &str, to_tag: &str) -> String {
    format!(
        "SIP/2.0 {code} {reason}\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5070;branch={branch}\r\n\
         From: <sip:a@127.0.0.1>;tag=from1\r\n\
         To: <sip:echo@127.0.0.1>;tag={to_tag}\r\n\
         Call-ID: call-1\r\n\
         CSeq: 1 {method}\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

fn server_addr() -> SocketAddr {
    "127.0.0.1:5060".parse().unwrap()
}

#[test]
fn timer_a_doubles_without_cap_and_timer_b_times_out() {
    let mut c = Client::new(Peer::udp(server_addr()));
    let tx = c.send(&request_text("INVITE", "z9hG4bK-a", ""));
    let start = c.now;
    let at: Vec<u128> = c
        .run_until(start + 64 * T1)
        .iter()
        .map(|d| d.as_millis())
        .collect();
    assert_eq!(at, vec![500, 1500, 3500, 7500, 15_500, 31_500]);
    assert!(matches!(c.events().as_slice(), [TxEvent::Timeout { tx: t }] if *t == tx));
    assert!(c.layer.is_empty());
}

#[test]
fn timer_e_caps_at_t2_and_timer_f_times_out() {
    let mut c = Client::new(Peer::udp(server_addr()));
    let tx = c.send(&request_text("OPTIONS", "z9hG4bK-e", ""));
    let start = c.now;
    let at: Vec<u128> = c
        .run_until(start + 64 * T1)
        .iter()
        .map(|d| d.as_millis())
        .collect();
    assert_eq!(
        at,
        vec![
            500, 1500, 3500, 7500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500
        ]
    );
    assert!(matches!(c.events().as_slice(), [TxEvent::Timeout { tx: t }] if *t == tx));
}

#[test]
fn a_provisional_moves_timer_e_to_t2() {
    let mut c = Client::new(Peer::udp(server_addr()));
    c.send(&request_text("OPTIONS", "z9hG4bK-e2", ""));
    c.receive(&response_text(100, "Trying", "OPTIONS", "z9hG4bK-e2", "x"));
    let start = c.now;
    let at: Vec<u128> = c
        .run_until(start + ms(9000))
        .iter()
        .map(|d| d.as_millis())
        .collect();
    // The retransmission already scheduled at 0.5 s stays; after it, every T2.
    assert_eq!(at, vec![500, 4500, 8500]);
}

#[test]
fn over_tcp_the_client_does_not_retransmit_but_still_times_out() {
    let mut c = Client::new(Peer::tcp(server_addr(), None));
    let tx = c.send(&request_text("INVITE", "z9hG4bK-ta", ""));
    let start = c.now;
    assert!(c.run_until(start + 64 * T1).is_empty());
    assert!(matches!(c.events().as_slice(), [TxEvent::Timeout { tx: t }] if *t == tx));
}

#[test]
fn a_non_2xx_final_is_acked_inside_the_transaction() {
    let mut c = Client::new(Peer::udp(server_addr()));
    c.send(&request_text("INVITE", "z9hG4bK-busy", ""));
    c.receive(&response_text(
        180,
        "Ringing",
        "INVITE",
        "z9hG4bK-busy",
        "r1",
    ));
    let start = c.now;
    assert!(
        c.run_until(start + ms(5000)).is_empty(),
        "a provisional stops Timer A"
    );

    let busy = response_text(486, "Busy Here", "INVITE", "z9hG4bK-busy", "r1");
    c.receive(&busy);
    let ack = c.layer.poll_transmit().expect("ACK sent");
    let (ack_req, ack_meta) = parse_req(std::str::from_utf8(&ack.payload).unwrap());
    assert_eq!(ack_req.method, Method::Ack);
    assert_eq!(
        ack_meta.via.branch.as_deref(),
        Some("z9hG4bK-busy"),
        "same branch as the INVITE"
    );
    assert_eq!(
        ack_meta.to_tag.as_deref(),
        Some("r1"),
        "To from the response"
    );
    assert_eq!(ack_meta.cseq, 1);
    let events = c.events();
    assert_eq!(events.len(), 2, "180 and 486 delivered");

    // A retransmitted 486 is answered with the same ACK and not delivered again.
    c.receive(&busy);
    assert_eq!(
        c.layer.poll_transmit().map(|t| t.payload),
        Some(ack.payload)
    );
    assert!(c.events().is_empty());
    let start = c.now;
    c.run_until(start + Duration::from_secs(32));
    assert!(c.layer.is_empty(), "Timer D");
}

#[test]
fn forked_2xx_responses_all_reach_the_tu_until_timer_m() {
    let mut c = Client::new(Peer::udp(server_addr()));
    c.send(&request_text("INVITE", "z9hG4bK-fork", ""));
    c.receive(&response_text(200, "OK", "INVITE", "z9hG4bK-fork", "leg1"));
    c.receive(&response_text(200, "OK", "INVITE", "z9hG4bK-fork", "leg2"));
    c.receive(&response_text(200, "OK", "INVITE", "z9hG4bK-fork", "leg1"));
    let tags: Vec<String> = c
        .events()
        .into_iter()
        .map(|e| match e {
            TxEvent::Response { meta, .. } => meta.to_tag.unwrap(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(tags, vec!["leg1", "leg2", "leg1"]);
    assert!(
        c.layer.poll_transmit().is_none(),
        "the ACK for a 2xx is the TU's"
    );

    let start = c.now;
    c.run_until(start + 64 * T1);
    assert!(c.layer.is_empty());
    c.receive(&response_text(200, "OK", "INVITE", "z9hG4bK-fork", "leg1"));
    assert!(matches!(
        c.events().as_slice(),
        [TxEvent::StrayResponse { .. }]
    ));
}

#[test]
fn cancel_waits_for_a_provisional_response() {
    let mut c = Client::new(Peer::udp(server_addr()));
    let tx = c.send(&request_text("INVITE", "z9hG4bK-cx", ""));
    c.layer.cancel(c.now, tx).unwrap();
    assert!(
        c.layer.poll_transmit().is_none(),
        "no CANCEL before a provisional (RFC 3261 §9.1)"
    );
    c.receive(&response_text(180, "Ringing", "INVITE", "z9hG4bK-cx", "r"));
    let cancel = c
        .layer
        .poll_transmit()
        .expect("CANCEL sent on the provisional");
    let (req, meta) = parse_req(std::str::from_utf8(&cancel.payload).unwrap());
    assert_eq!(req.method, Method::Cancel);
    assert_eq!(meta.via.branch.as_deref(), Some("z9hG4bK-cx"));
    assert_eq!(meta.cseq_method, Method::Cancel);
    assert_eq!(meta.to_tag, None, "the CANCEL's To is the INVITE's");
}

#[test]
fn a_request_without_a_branch_cannot_start_a_client_transaction() {
    let mut c = Client::new(Peer::udp(server_addr()));
    let (req, _) = parse_req(&request_text("OPTIONS", "old-style", ""));
    assert_eq!(
        c.layer.send_request(c.now, req, c.to).unwrap_err(),
        TxError::NoBranch
    );
}

#[test]
fn a_client_and_a_server_complete_an_invite_over_a_lossy_link() {
    // The first two copies of the INVITE are lost; Timer A recovers.
    let mut c = Client::new(Peer::udp(server_addr()));
    let mut s = Server::new();
    s.now = c.now;
    let (req, _) = parse_req(&request_text("INVITE", "z9hG4bK-loss", ""));
    c.layer.send_request(c.now, req, c.to).unwrap();
    let mut delivered = 0;
    let mut dropped = 0;
    let end = c.now + Duration::from_secs(10);
    while c.now < end {
        while let Some(t) = c.layer.poll_transmit() {
            if dropped < 2 {
                dropped += 1;
                continue;
            }
            let (r, m) = parse_req(std::str::from_utf8(&t.payload).unwrap());
            s.layer
                .handle_request(s.now, r, m, Peer::udp(client_addr()));
            delivered += 1;
        }
        while let Some(e) = s.layer.poll_event() {
            if let TxEvent::Request { tx, request, .. } = e {
                s.layer
                    .respond(
                        s.now,
                        tx,
                        message::response(&request, StatusCode::OK, Some("srv")),
                    )
                    .unwrap();
            }
        }
        while let Some(t) = s.layer.poll_transmit() {
            let (r, m) = parse_resp(&t.payload);
            c.layer.handle_response(c.now, r, m);
        }
        let next = c.layer.poll_timeout().unwrap_or(end).min(end);
        c.now = next;
        s.now = next;
        c.layer.handle_timeout(c.now);
        s.layer.handle_timeout(s.now);
    }
    assert_eq!(
        delivered, 1,
        "one INVITE reached the server, after two were lost"
    );
    let codes: Vec<u16> = c
        .events()
        .iter()
        .filter_map(|e| match e {
            TxEvent::Response { response, .. } => Some(response.status_code.code()),
            _ => None,
        })
        .collect();
    assert_eq!(codes, vec![200]);
}

#[test]
fn beyond_the_transaction_limit_new_requests_get_a_stateless_503() {
    let mut s = Server::new();
    s.layer = TransactionLayer::new(
        TimerConfig {
            max_server_transactions: 2,
            ..TimerConfig::default()
        },
        Ids::seeded(1),
    );
    for branch in ["z9hG4bK-l1", "z9hG4bK-l2"] {
        let options = request_text("OPTIONS", branch, "").replace("call-1", branch);
        s.receive(&options, Peer::udp(client_addr()));
    }
    assert_eq!(s.events().len(), 2);
    let third = request_text("OPTIONS", "z9hG4bK-l3", "").replace("call-1", "l3");
    s.receive(&third, Peer::udp(client_addr()));
    assert!(s.events().is_empty(), "the TU never sees it");
    let sent = s.transmits();
    assert_eq!(sent.iter().map(status_of).collect::<Vec<_>>(), vec![503]);
    assert!(String::from_utf8_lossy(&sent[0].payload).contains("Retry-After: 5"));
    assert_eq!(s.layer.len(), (2, 0), "nothing kept for it");
}

#[test]
fn a_transport_error_ends_the_requests_waiting_for_that_peer_at_once() {
    let carrier = Peer::on(TransportKind::Tls, server_addr(), None);
    let mut c = Client::new(carrier);
    let failed = c.send(&request_text("INVITE", "z9hG4bK-t1", ""));
    // Another peer's request, and the same address over another transport, are not affected.
    let (options, _) = parse_req(&request_text("OPTIONS", "z9hG4bK-t2", ""));
    let elsewhere = Peer::on(TransportKind::Tls, client_addr(), None);
    let other = c.layer.send_request(c.now, options, elsewhere).unwrap();
    let (bye, _) = parse_req(&request_text("BYE", "z9hG4bK-t3", ""));
    let over_tcp = Peer::on(TransportKind::Tcp, server_addr(), None);
    let tcp = c.layer.send_request(c.now, bye, over_tcp).unwrap();
    while c.layer.poll_transmit().is_some() {}

    c.layer.transport_error(carrier);
    assert!(
        matches!(c.events().as_slice(), [TxEvent::TransportError { tx }] if *tx == failed),
        "only the carrier's INVITE fails"
    );
    // Timer B never fires for it; the other two time out in their own time.
    c.run_until(c.now + 64 * T1);
    let timeouts: Vec<ClientTxId> = c
        .events()
        .into_iter()
        .filter_map(|e| match e {
            TxEvent::Timeout { tx } => Some(tx),
            _ => None,
        })
        .collect();
    assert_eq!(timeouts.len(), 2, "{timeouts:?}");
    assert!(timeouts.contains(&other) && timeouts.contains(&tcp));
    assert!(!timeouts.contains(&failed));
}
