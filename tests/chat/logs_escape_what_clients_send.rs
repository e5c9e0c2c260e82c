//! What a client sends cannot forge a line of the gateway's log: a login name carrying a line
//! break is logged on the refusal's own line, escaped.

use crate::common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

#[test]
fn a_line_break_in_a_login_name_stays_on_its_line() {
    let gateway = common::Gateway::start("");
    let body = r#"{"name": "eve\nINFO tandem: agent logged in agent=admin", "password": "x"}"#;
    let mut stream = std::net::TcpStream::connect(gateway.http).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        stream,
        "POST /agent/v1/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");

    let deadline = Instant::now() + Duration::from_secs(60);
    let log = loop {
        let log = gateway.log_text();
        if log.contains("login refused") {
            break log;
        }
        assert!(Instant::now() < deadline, "no refusal logged:\n{log}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let forged: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("INFO tandem: agent logged in"))
        .collect();
    assert!(forged.is_empty(), "a forged line: {forged:?}\n{log}");
    let refusal = log.lines().find(|l| l.contains("login refused")).unwrap();
    assert!(
        refusal.contains(r"eve\nINFO tandem: agent logged in agent=admin"),
        "{refusal}"
    );
}
