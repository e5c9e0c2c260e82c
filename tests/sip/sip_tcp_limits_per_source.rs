//! One source cannot take every SIP stream connection: over its share, its new connections are
//! closed while other sources connect and are served. A message trickled in a byte at a time
//! is cut off at the message deadline, however short the gaps between the bytes.

use crate::common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

fn options(n: u32) -> String {
    format!(
        "OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bK-src{n}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:t@127.0.0.1>;tag=t{n}\r\nTo: <sip:127.0.0.1>\r\n\
         Call-ID: per-source-{n}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
}

/// A connection to `to` from the loopback address `from`.
fn connect_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::from((from, 0)).into()).unwrap();
    socket.connect(&to.into()).unwrap();
    socket.into()
}

/// Sends an OPTIONS and returns the status line of the answer, or `None` if the connection
/// was closed instead.
fn ask(stream: &mut TcpStream, n: u32) -> Option<String> {
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream.write_all(options(n).as_bytes()).ok()?;
    let mut buf = [0u8; 2048];
    match stream.read(&mut buf) {
        Ok(0) | Err(_) => None,
        Ok(n) => String::from_utf8_lossy(&buf[..n])
            .lines()
            .next()
            .map(String::from),
    }
}

/// Whether the gateway closed `stream` (end of stream or reset) within `within`.
fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        Ok(_) => false,
    }
}

#[test]
fn a_source_over_its_share_is_refused_while_another_is_served() {
    let gateway = common::Gateway::start("[sip]\nmax_tcp_connections_per_source = 3\n");
    let hog = [127, 0, 0, 2];
    // Each of the hog's connections is served once accepted (the answer proves it was).
    let mut held: Vec<TcpStream> = (0..3)
        .map(|n| {
            let mut stream = connect_from(hog, gateway.sip);
            assert_eq!(ask(&mut stream, n).as_deref(), Some("SIP/2.0 200 OK"));
            stream
        })
        .collect();
    let mut over = connect_from(hog, gateway.sip);
    assert!(
        closed_within(&mut over, Duration::from_secs(30)),
        "the hog's fourth connection was kept"
    );
    // Another source connects and is answered.
    let mut other = connect_from([127, 0, 0, 3], gateway.sip);
    assert_eq!(ask(&mut other, 10).as_deref(), Some("SIP/2.0 200 OK"));
    // The hog's connections still work, and closing one frees a place for it.
    assert_eq!(ask(&mut held[0], 11).as_deref(), Some("SIP/2.0 200 OK"));
    drop(held.pop());
    // The gateway may see the new connection before the closed one's task has ended: each
    // attempt refused meanwhile is one more refusal to count.
    let mut refused = 1;
    let deadline = Instant::now() + Duration::from_secs(30);
    let served = loop {
        let mut again = connect_from(hog, gateway.sip);
        if ask(&mut again, 12).as_deref() == Some("SIP/2.0 200 OK") {
            break true;
        }
        refused += 1;
        if Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(served, "the freed place was never given back");
    gateway.wait_for_metric(&format!(
        "tandem_refusals_total{{reason=\"sip_connections_per_source\"}} {refused}"
    ));
}

#[test]
fn a_trickled_message_is_cut_off_at_its_deadline() {
    // The idle timeout alone would keep the connection: a byte comes far more often.
    let gateway =
        common::Gateway::start("[sip]\ntcp_message_deadline_s = 2\ntcp_idle_timeout_s = 600\n");
    let mut stream = TcpStream::connect(gateway.sip).unwrap();
    // A whole message is answered, and a keep-alive between messages is no message.
    assert_eq!(ask(&mut stream, 1).as_deref(), Some("SIP/2.0 200 OK"));
    stream.write_all(b"\r\n\r\n").unwrap();
    let message = options(2);
    let started = Instant::now();
    let mut closed = false;
    for byte in message.as_bytes() {
        if stream.write_all(&[*byte]).is_err() {
            closed = true;
            break;
        }
        // A close shows as end of stream on a short read.
        if closed_within(&mut stream, Duration::from_millis(200)) {
            closed = true;
            break;
        }
        // Bounded well below the idle timeout, whatever the machine's load.
        if started.elapsed() > Duration::from_secs(120) {
            break;
        }
    }
    assert!(
        closed,
        "a message trickled for 2 minutes was still being read"
    );
    gateway.wait_for_metric("tandem_refusals_total{reason=\"sip_message_deadline\"} 1");
}
