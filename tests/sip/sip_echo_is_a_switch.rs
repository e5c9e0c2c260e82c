//! `sip:echo` answers only when `[sip] echo` is on (the shipped default is off): switched off,
//! an INVITE or OPTIONS to it gets `404` and takes no media port.

use crate::common;

use std::net::UdpSocket;
use std::time::Duration;

/// Sends `method` to `sip:echo@…` from a fresh socket; the first line of the final answer.
fn ask_echo(gateway: &common::Gateway, method: &str) -> String {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let local = socket.local_addr().unwrap();
    let body = "v=0\r\no=p 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    let body = if method == "INVITE" { body } else { "" };
    let content_type = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    let request = format!(
        "{method} sip:echo@{gw} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-echo-{method}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=e\r\nTo: <sip:echo@{gw}>\r\n\
         Call-ID: echo-switch-{method}\r\nCSeq: 1 {method}\r\nContact: <sip:probe@{local}>\r\n\
         {content_type}Content-Length: {}\r\n\r\n{body}",
        body.len(),
        gw = gateway.sip,
    );
    socket.send_to(request.as_bytes(), gateway.sip).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        let (n, _) = socket.recv_from(&mut buf).expect("an answer");
        let text = String::from_utf8_lossy(&buf[..n]).to_string();
        if !text.starts_with("SIP/2.0 1") {
            return text.lines().next().unwrap_or_default().to_string();
        }
    }
}

#[test]
fn switched_off_echo_is_an_unknown_user() {
    let gateway = common::Gateway::start("[sip]\necho = false\n");
    assert_eq!(ask_echo(&gateway, "INVITE"), "SIP/2.0 404 Not Found");
    assert_eq!(ask_echo(&gateway, "OPTIONS"), "SIP/2.0 404 Not Found");
    gateway.wait_for_metric("tandem_media_legs 0");
}

#[test]
fn switched_on_echo_answers() {
    let gateway = common::Gateway::start("[sip]\necho = true\n");
    assert_eq!(ask_echo(&gateway, "OPTIONS"), "SIP/2.0 200 OK");
}
