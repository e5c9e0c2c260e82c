//! Malformed requests from the network get a 4xx/5xx whose reason says what is wrong (or are
//! dropped when nothing can be answered), over UDP and TCP, and the gateway keeps serving.

use crate::common;

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::time::Duration;

fn request(method: &str, call_id: &str, extra: &str, content_length: Option<&str>) -> String {
    let length = content_length
        .map(|l| format!("Content-Length: {l}\r\n"))
        .unwrap_or_default();
    format!(
        "{method} sip:echo@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK-{call_id};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:t@127.0.0.1>;tag=t\r\nTo: <sip:echo@127.0.0.1>\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 {method}\r\n{extra}{length}\r\n"
    )
}

fn udp_exchange(gateway: &common::Gateway, message: &str) -> Option<String> {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    socket.send_to(message.as_bytes(), gateway.sip).unwrap();
    let mut buf = [0u8; 8192];
    let (n, _) = socket.recv_from(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[test]
fn malformed_udp_requests_get_4xx_with_a_reason_and_the_gateway_carries_on() {
    let gateway = common::Gateway::start("");
    let cases = [
        (
            request("INVITE", "m1", "", Some("50")),
            "SIP/2.0 400 Content-Length larger than message",
        ),
        (
            request("OPTIONS", "m2", "", Some("0")).replace("CSeq: 1 OPTIONS", "CSeq: 1 INVITE"),
            "SIP/2.0 400 CSeq method does not match",
        ),
        (request("FOO", "m3", "", Some("0")), "SIP/2.0 501 "),
        (
            request("OPTIONS", "m4", "", Some("0")).replacen("SIP/2.0\r\n", "SIP/3.0\r\n", 1),
            "SIP/2.0 505 ",
        ),
        (
            request("SUBSCRIBE", "m5", "Event: presence\r\n", Some("0")),
            "SIP/2.0 405 ",
        ),
    ];
    for (message, expected) in cases {
        let reply =
            udp_exchange(&gateway, &message).unwrap_or_else(|| panic!("no reply to {message}"));
        assert!(
            reply.starts_with(expected),
            "expected {expected:?}, got {reply}"
        );
        assert!(reply.contains("Call-ID: m"), "{reply}");
    }
    // Garbage is dropped silently, and the gateway still answers afterwards.
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    for junk in [
        &b"\x00\xff\xfe garbage"[..],
        b"INVITE\r\n\r\n",
        b"SIP/2.0 200 OK\r\n\r\n",
    ] {
        socket.send_to(junk, gateway.sip).unwrap();
    }
    let ok = udp_exchange(&gateway, &request("OPTIONS", "m6", "", Some("0"))).unwrap();
    assert!(ok.starts_with("SIP/2.0 200 OK"), "{ok}");
}

#[test]
fn a_tcp_message_without_content_length_is_refused_and_the_connection_closed() {
    let gateway = common::Gateway::start("");
    let mut stream = TcpStream::connect(gateway.sip).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let message = request("OPTIONS", "t1", "", None).replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    stream.write_all(message.as_bytes()).unwrap();
    let mut reply = String::new();
    // The reply arrives, then the gateway closes the stream it can no longer frame.
    stream.read_to_string(&mut reply).unwrap();
    assert!(
        reply.starts_with("SIP/2.0 400 Missing Content-Length"),
        "{reply}"
    );
}

#[test]
fn tcp_messages_split_and_joined_across_reads_are_framed() {
    let gateway = common::Gateway::start("");
    let mut stream = TcpStream::connect(gateway.sip).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let one = request("OPTIONS", "s1", "", Some("0")).replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    let two = request("OPTIONS", "s2", "", Some("0")).replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    let joined = format!("\r\n\r\n{one}{two}");
    let (a, b) = joined.split_at(40);
    stream.write_all(a.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    stream.write_all(b.as_bytes()).unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while !(seen.contains("Call-ID: s1") && seen.contains("Call-ID: s2")) {
        let n = stream.read(&mut buf).expect("replies before the timeout");
        assert!(n > 0, "connection closed early: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert_eq!(seen.matches("SIP/2.0 200 OK").count(), 2, "{seen}");
    assert!(
        seen.starts_with("\r\n"),
        "the double-CRLF ping gets a pong (RFC 5626)"
    );
}
