//! A flood of half-sent HTTP requests from one source does not take the gateway down: the
//! source gets its own budget of connections (the rest are closed at once), a request whose
//! headers never finish is dropped after `http.header_timeout_s`, and meanwhile another client's
//! `/healthz` answers and a SIP call to echo completes. Before these budgets, 20 000 such
//! connections used up the process's descriptors and SIP calls failed with "Too many open files".

use crate::common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// The flood: connections opened from 127.0.0.2, each sending a request line and no more.
const FLOOD: usize = 5000;
const PER_SOURCE: usize = 200;

fn half_open(gateway: SocketAddr) -> Option<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
    socket
        .bind(&SocketAddr::from(([127, 0, 0, 2], 0)).into())
        .ok()?;
    socket
        .connect_timeout(&gateway.into(), Duration::from_secs(5))
        .ok()?;
    let mut stream: TcpStream = socket.into();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .ok()?;
    Some(stream)
}

/// Descriptors the gateway process holds now.
fn descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn half_open_requests_do_not_starve_sip_or_other_clients() {
    let gateway = common::Gateway::start(&format!(
        "[http]\nmax_connections_per_source = {PER_SOURCE}\nheader_timeout_s = 3\n"
    ));
    let idle = descriptors(gateway.pid());
    let flood: Vec<TcpStream> = (0..FLOOD).filter_map(|_| half_open(gateway.http)).collect();
    assert!(flood.len() > PER_SOURCE, "the flood opened {}", flood.len());

    // The gateway holds at most the source's budget of them.
    let held = descriptors(gateway.pid());
    assert!(
        held <= idle + PER_SOURCE + 50,
        "the gateway holds {held} descriptors ({idle} idle)"
    );

    // Another client is served, and SIP works.
    assert_eq!(gateway.http_get("/healthz").trim(), "ok");
    let stats = common::sipp(
        gateway.sip,
        &["-sn", "uac", "-s", "echo", "-m", "5", "-r", "5"],
    );
    assert_eq!(
        (stats.successful, stats.failed),
        (5, 0),
        "{stats:?}\n{}",
        gateway.log_text()
    );

    // The half-sent requests are dropped once their header time is up: each admitted one
    // reads an end (or a 408) instead of hanging.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut closed = 0;
    for mut stream in flood {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        stream.set_read_timeout(Some(left)).unwrap();
        let mut buf = [0u8; 256];
        match stream.read(&mut buf) {
            Ok(_) => closed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => closed += 1,
            Err(e) => panic!("a half-sent request was still open after the header timeout: {e}"),
        }
    }
    assert!(closed > PER_SOURCE);
    let deadline = Instant::now() + Duration::from_secs(60);
    while descriptors(gateway.pid()) > idle + 50 {
        assert!(Instant::now() < deadline, "descriptors never went back");
        std::thread::sleep(Duration::from_millis(100));
    }
}
