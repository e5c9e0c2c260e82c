//! A call that names an interaction reaches the node that owns it. The test writes the
//! ownership the cluster keeps in PostgreSQL (a live lease of node A, an interaction it owns;
//! the tables are created here as the cluster's migration makes them). Node B answers a call
//! for it with 302 and A's address; A keeps a call for it; and through Kamailio (whose
//! dispatcher knows only B here, so every call lands on the wrong node) the redirect is
//! followed and the call is answered by A.

use std::net::{SocketAddr, UdpSocket};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::kamailio::{Kamailio, Node};
use crate::postgres::Postgres;

const INTERACTION: &str = "ix-owned-by-a";

fn psql(postgres: &Postgres, sql: &str) {
    let out = Command::new("psql")
        .args(["-h", "127.0.0.1", "-p", &postgres.port.to_string()])
        .args([
            "-U",
            "tandem",
            "-d",
            "postgres",
            "-v",
            "ON_ERROR_STOP=1",
            "-Atc",
            sql,
        ])
        .output()
        .expect("psql is installed with PostgreSQL");
    assert!(out.status.success(), "{sql}: {out:?}");
}

/// Node A owns the interaction, its lease running for an hour.
fn owned_by(postgres: &Postgres, a: &Node) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    psql(
        postgres,
        "CREATE TABLE IF NOT EXISTS nodes (node TEXT PRIMARY KEY, http_url TEXT NOT NULL, \
         sip_uri TEXT NOT NULL, lease_until BIGINT NOT NULL); \
         ALTER TABLE interactions ADD COLUMN IF NOT EXISTS owner TEXT",
    );
    psql(
        postgres,
        &format!(
            "INSERT INTO nodes (node, http_url, sip_uri, lease_until) VALUES ('node-a', 'http://{}', 'sip:{}', {}); \
             INSERT INTO interactions (id, service, device, phase, created_at, closed_at, \
             last_seq, owner) VALUES ('{INTERACTION}', 'claims', 'device-1', 'active', {now}, \
             NULL, 0, 'node-a')",
            a.http,
            a.sip,
            now + 3_600_000
        ),
    );
}

/// Sends an INVITE naming the interaction to `to` on Call-ID `call_id`, acknowledges the
/// final answer and returns it.
fn call(to: SocketAddr, call_id: &str) -> String {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let local = socket.local_addr().unwrap();
    let sdp = "v=0\r\no=carrier 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
               m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    let via = format!("Via: SIP/2.0/UDP {local};branch=z9hG4bK-{call_id}");
    let head = format!(
        "sip:+15550100@{to} SIP/2.0\r\n{via}\r\nMax-Forwards: 70\r\n\
         From: <sip:+15551234@127.0.0.1>;tag=c-{call_id}\r\n"
    );
    let invite = format!(
        "INVITE {head}To: <sip:+15550100@{to}>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n\
         Contact: <sip:carrier@{local}>\r\nX-Interaction-Id: {INTERACTION}\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    socket.send_to(invite.as_bytes(), to).unwrap();
    let mut buf = [0u8; 8192];
    let last = loop {
        let (n, _) = socket.recv_from(&mut buf).expect("an answer to the INVITE");
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if !text.starts_with("SIP/2.0 1") {
            break text;
        }
    };
    let to_header = last.lines().find(|l| l.starts_with("To:")).unwrap();
    let ack = format!(
        "ACK {head}{to_header}\r\nCall-ID: {call_id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
    );
    socket.send_to(ack.as_bytes(), to).unwrap();
    last
}

#[test]
fn a_call_for_an_interaction_is_redirected_to_the_node_that_owns_it() {
    let postgres = Postgres::start();
    let proxy_addr = Kamailio::reserve();
    let a = Node::start("127.0.0.2", &postgres.url(), proxy_addr, "");
    let b = Node::start("127.0.0.3", &postgres.url(), proxy_addr, "");
    owned_by(&postgres, &a);
    let why = || format!("--- A\n{}\n--- B\n{}", a.log_text(), b.log_text());

    // B does not own it: 302, A's address dialling the same number (RFC 3261 §21.3.3).
    let moved = call(b.sip, "direct-b");
    assert!(
        moved.starts_with("SIP/2.0 302 Moved Temporarily\r\n"),
        "{moved}\n{}",
        why()
    );
    let contact = format!("Contact: <sip:+15550100@{}>\r\n", a.sip);
    assert!(moved.contains(&contact), "{moved}");

    // A owns it: the application decides, as on one node (this interaction has no chat
    // running on A, so it is refused there).
    let kept = call(a.sip, "direct-a");
    assert!(kept.starts_with("SIP/2.0 480 "), "{kept}\n{}", why());

    // Through the proxy, landing on B, redirected, answered by A.
    let proxy = Kamailio::start_dispatcher(proxy_addr, &[b.sip]);
    let answered = call(proxy.addr, "through-proxy");
    let why = format!("{answered}\n--- kamailio\n{}\n{}", proxy.log_text(), why());
    assert!(answered.starts_with("SIP/2.0 480 "), "{why}");
    assert_eq!(
        proxy
            .redirects()
            .iter()
            .filter(|r| r.starts_with(&format!("sip:+15550100@{} ", a.sip)))
            .count(),
        1,
        "{why}"
    );
    let refused_on_a = a
        .log_text()
        .lines()
        .filter(|l| l.contains("incoming call refused") && l.contains(INTERACTION))
        .count();
    assert_eq!(
        refused_on_a, 2,
        "A answered the direct call and the redirected one: {why}"
    );
}
