//! TCP connections are limited in number and closed when idle.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Whether the gateway closed `stream` (a read returns end-of-stream) within `within`.
fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 64];
    matches!(stream.read(&mut buf), Ok(0))
}

#[test]
fn an_idle_connection_is_closed() {
    let gateway = common::Gateway::start("[sip]\ntcp_idle_timeout_s = 1\n");
    let mut stream = TcpStream::connect(gateway.sip).unwrap();
    // A connection in use is served…
    stream.write_all(OPTIONS.as_bytes()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = stream.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"SIP/2.0 200"));
    // …and closed once nothing more happens on it.
    assert!(
        closed_within(&mut stream, Duration::from_secs(10)),
        "idle connection left open"
    );
}

const OPTIONS: &str = "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bK-lim\r\n\
    Max-Forwards: 70\r\nFrom: <sip:t@127.0.0.1>;tag=t\r\nTo: <sip:127.0.0.1>\r\nCall-ID: lim-1\r\n\
    CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";

#[test]
fn connections_over_the_limit_are_refused() {
    let gateway = common::Gateway::start("[sip]\nmax_tcp_connections = 2\n");
    let mut kept: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(gateway.sip).unwrap())
        .collect();
    // Let the gateway accept both before the third arrives.
    std::thread::sleep(Duration::from_millis(200));
    let mut third = TcpStream::connect(gateway.sip).unwrap();
    assert!(
        closed_within(&mut third, Duration::from_secs(5)),
        "the third connection was served"
    );
    // The first two still work.
    kept[0].write_all(OPTIONS.as_bytes()).unwrap();
    kept[0]
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = kept[0].read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"SIP/2.0 200"));
}
