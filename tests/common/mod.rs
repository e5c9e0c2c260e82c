//! Shared harness for tests against the real binary and real peers.
//!
//! [`Gateway`] runs `tandem run` on a private port with a config written for the test and
//! stops it (by PID) when dropped. [`sipp`] runs SIPp to completion and returns its statistics.
//! A missing peer fails the test: `scripts/test` installs them.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, AtomicU32, Ordering};
use std::time::Duration;

/// An HTTP client whose requests leave from `ip` (a loopback address of its own), to stand for
/// another source address.
pub fn client_from(ip: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(std::net::IpAddr::from(ip))
        .build()
        .unwrap()
}

/// A port free on both UDP and TCP right now.
pub fn free_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    // Spread tests running in parallel over different ranges, then check the OS agrees.
    let seed = (std::process::id() % 1000) as u16;
    loop {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 21000 + ((seed * 17 + offset * 7) % 9000);
        if UdpSocket::bind(("127.0.0.1", port)).is_ok()
            && TcpListener::bind(("127.0.0.1", port)).is_ok()
        {
            return port;
        }
    }
}

/// A base port for SIPp's media: it uses it and the three above (audio and video RTP/RTCP).
fn free_media_ports() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let seed = (std::process::id() % 500) as u16;
    loop {
        let offset = NEXT.fetch_add(4, Ordering::Relaxed);
        let base = 50000 + ((seed * 40 + offset) % 14000) / 4 * 4;
        if (base..base + 4).all(|p| UdpSocket::bind(("127.0.0.1", p)).is_ok()) {
            return base;
        }
    }
}

/// RTP ports of each test gateway, and how many such ranges fit below 20900.
const RTP_PORTS: u16 = 200;
const RTP_RANGES: u16 = (20900 - 1100) / RTP_PORTS;

/// The next of the [`RTP_RANGES`] ranges, in turn from where this process's id puts it.
fn next_rtp_range() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let turn = NEXT.fetch_add(1, Ordering::Relaxed) + std::process::id();
    (turn % u32::from(RTP_RANGES)) as u16
}

/// How long a test waits for the gateway to start or to stop. Generous: a loaded machine
/// starts a process slowly, and the ordered teardown on SIGTERM may wait for phones.
const PATIENCE: Duration = Duration::from_secs(60);

pub struct Gateway {
    child: Child,
    pub sip: SocketAddr,
    pub http: SocketAddr,
    /// The WebRTC socket (`[rtc] listen`), private to this instance like the others.
    pub rtc: SocketAddr,
    pub dir: tempfile::TempDir,
    pub log: PathBuf,
}

impl Gateway {
    /// Starts the gateway with `[sip] listen` on a free port, the echo service on unless `extra`
    /// says otherwise (many tests call it; it is off by default), plus `extra` TOML, and waits
    /// until it answers OPTIONS.
    pub fn start(extra: &str) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let sip: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        // Disjoint from SIPp's signalling (21000–29999) and media (50000–63999) ports, and
        // below Linux's ephemeral range (32768–60999), where the tests' own clients bind.
        // 200 ports: room for 50 calls of two legs at once, far more than a test keeps up even
        // when a loaded machine ends its calls late. The gateways of one test binary take the
        // ranges in turn, so two running at once never share one: a port another process
        // holds is not skipped, its call ends.
        let rtp = 1100 + next_rtp_range() * RTP_PORTS;
        let data = dir.path().display();
        let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let rtc: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        // A test that sets `echo` itself keeps its own value.
        let sets_echo = extra
            .lines()
            .any(|l| l.split('=').next().is_some_and(|k| k.trim() == "echo"));
        let echo = if sets_echo { "" } else { "echo = true\n" };
        let config = format!(
            "[sip]\nlisten = \"{sip}\"\n{echo}{extra}\n[media]\nrtp_port_min = {rtp}\nrtp_port_max = {}\n\
             [http]\nlisten = \"{http}\"\n[rtc]\nlisten = \"{rtc}\"\n[store]\nurl = \"sqlite://{data}/tandem.db\"\n\
             [files]\ndir = \"{data}/files\"\n",
            rtp + RTP_PORTS - 1
        );
        let config = merge_sections(&config);
        let path = dir.path().join("tandem.toml");
        std::fs::write(&path, config).unwrap();
        let log = dir.path().join("tandem.log");
        let child = spawn_binary(&path, std::fs::File::create(&log).unwrap());
        let gateway = Gateway {
            child,
            sip,
            http,
            rtc,
            dir,
            log,
        };
        gateway.wait_ready();
        gateway
    }

    fn wait_ready(&self) {
        if !answers_options(self.sip, PATIENCE) {
            panic!("gateway did not answer OPTIONS; log:\n{}", self.log_text());
        }
    }

    /// `GET path` on the HTTP side; the body.
    pub fn http_get(&self, path: &str) -> String {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(self.http).expect("HTTP side listening");
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.http
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_string())
            .unwrap_or_default()
    }

    /// Waits (the SIP side publishes once a second; a loaded machine may take far longer)
    /// until `/metrics` has `line`.
    pub fn wait_for_metric(&self, line: &str) -> String {
        let mut metrics = String::new();
        let deadline = std::time::Instant::now() + PATIENCE;
        while std::time::Instant::now() < deadline {
            metrics = self.http_get("/metrics");
            if metrics.lines().any(|l| l == line) {
                return metrics;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("/metrics never showed {line:?}:\n{metrics}");
    }

    /// `(packets_in, packets_out)` of every media leg the gateway closed, from its log.
    pub fn closed_legs(&self) -> Vec<(u64, u64)> {
        let log = self.log_text();
        log.lines()
            .filter(|l| l.contains("media leg closed"))
            .map(|line| {
                let number = |key: &str| -> u64 {
                    let at = line.find(key).expect("leg stats in the log") + key.len();
                    line[at..]
                        .split(|c: char| !c.is_ascii_digit())
                        .next()
                        .and_then(|n| n.parse().ok())
                        .expect("a number")
                };
                (number("packets_in: "), number("packets_out: "))
            })
            .collect()
    }

    /// The gateway process's id (for signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills the process with SIGKILL, as a crash would.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = std::time::Instant::now() + PATIENCE;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("gateway did not stop on SIGTERM");
    }
}

/// `tandem run` on the config at `path`, logging to `log`.
fn spawn_binary(path: &Path, log: std::fs::File) -> Child {
    Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(["run", "--config"])
        .arg(path)
        .env(
            "RUST_LOG",
            std::env::var("TANDEM_TEST_LOG")
                .unwrap_or_else(|_| "info,tandem::sip::driver=debug".into()),
        )
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("tandem starts")
}

impl Gateway {
    /// Sends SIGTERM and waits (up to a minute: the ordered teardown may wait for phones)
    /// for the exit, keeping the data directory for [`Gateway::restart`].
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        for _ in 0..600 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("gateway did not stop on SIGTERM; log:\n{}", self.log_text());
    }

    /// Starts the binary again on the same config and data (after [`Gateway::terminate`]);
    /// its log goes on in the same file.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.log)
            .unwrap();
        self.child = spawn_binary(&self.dir.path().join("tandem.toml"), log);
        self.wait_ready();
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Keeps the first `[section]` header of each name, so a test's extra TOML can add keys to
/// `[sip]` and `[media]` without repeating the header.
fn merge_sections(config: &str) -> String {
    let mut sections: Vec<(String, Vec<String>)> = vec![(String::new(), Vec::new())];
    for line in config.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') && !trimmed.starts_with("[[") {
            if let Some(i) = sections.iter().position(|(name, _)| name == trimmed) {
                let section = sections.remove(i);
                sections.push(section);
            } else {
                sections.push((trimmed.to_string(), Vec::new()));
            }
            continue;
        }
        if trimmed.starts_with("[[") {
            sections.push((trimmed.to_string(), Vec::new()));
            continue;
        }
        sections.last_mut().unwrap().1.push(line.to_string());
    }
    let mut out = String::new();
    for (name, lines) in sections {
        if !name.is_empty() {
            out.push_str(&name);
            out.push('\n');
        }
        for line in lines {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

/// The outcome of one SIPp run, from its `-trace_stat` file and exit code.
#[derive(Debug)]
pub struct SippStats {
    pub exit_code: i32,
    pub successful: u64,
    pub failed: u64,
    pub retransmissions: u64,
    pub output: String,
}

/// A directory with `pcap/` pointing at SIPp's shipped captures, for `uac_pcap` to run from.
pub fn pcap_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/usr/share/sip-tester", dir.path().join("pcap")).unwrap();
    dir
}

/// Where the scenario files live.
pub fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/scenarios")
        .join(name)
}

/// A running SIPp; [`Sipp::wait`] collects its statistics.
pub struct Sipp {
    child: Child,
    dir: tempfile::TempDir,
}

/// Starts SIPp against `target` with `args` (plus a local port, stats and a global timeout).
pub fn sipp_spawn(target: SocketAddr, args: &[&str]) -> Sipp {
    sipp_spawn_in(None, target, args)
}

/// Starts SIPp on local port `port` (e.g. the port an agent registered from).
/// Registers `user` with digest authentication from local `port` (SIPp, `register_only.xml`),
/// so calls to that user reach whatever listens on `port` next.
pub fn register_on(port: u16, target: SocketAddr, user: &str, password: &str) {
    let register = scenario("register_only.xml");
    let registered = sipp_on(
        port,
        target,
        &[
            "-sf",
            register.to_str().unwrap(),
            "-s",
            user,
            "-au",
            user,
            "-ap",
            password,
            "-m",
            "1",
        ],
    )
    .wait();
    assert_eq!(
        (
            registered.exit_code,
            registered.successful,
            registered.failed
        ),
        (0, 1, 0),
        "registration of {user}: {registered:?}"
    );
}

pub fn sipp_spawn_on(port: u16, target: SocketAddr, args: &[&str]) -> Sipp {
    let port = port.to_string();
    let mut all = vec!["-p", port.as_str()];
    all.extend_from_slice(args);
    sipp_spawn_in(None, target, &all)
}

/// Runs SIPp on local port `port` to completion.
pub fn sipp_on(port: u16, target: SocketAddr, args: &[&str]) -> Sipp {
    sipp_spawn_on(port, target, args)
}

/// Starts SIPp from `cwd` (where built-in scenarios look for `./pcap/`).
pub fn sipp_spawn_in_dir(cwd: &Path, target: SocketAddr, args: &[&str]) -> Sipp {
    sipp_spawn_in(Some(cwd), target, args)
}

/// Runs SIPp to completion from `cwd` (where built-in scenarios look for `./pcap/`).
pub fn sipp_in(cwd: &Path, target: SocketAddr, args: &[&str]) -> SippStats {
    sipp_spawn_in(Some(cwd), target, args).wait()
}

fn sipp_spawn_in(cwd: Option<&Path>, target: SocketAddr, args: &[&str]) -> Sipp {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port().to_string();
    let media_port = free_media_ports().to_string();
    let stats = dir.path().join("stats.csv");
    let mut command = Command::new("sipp");
    command
        .arg(target.to_string())
        .args(["-i", "127.0.0.1", "-mp", &media_port])
        .args(if args.contains(&"-p") {
            vec![]
        } else {
            vec!["-p", port.as_str()]
        })
        .args([
            "-buff_size",
            "4194304",
            "-nostdin",
            "-timeout",
            "60s",
            "-timeout_error",
        ])
        .args(["-trace_stat", "-fd", "1", "-stf"])
        .arg(&stats)
        .args(args)
        .current_dir(cwd.unwrap_or(dir.path()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = command
        .spawn()
        .expect("sipp is installed (scripts/test installs Debian's sip-tester)");
    Sipp { child, dir }
}

impl Sipp {
    pub fn wait(mut self) -> SippStats {
        let mut output = String::new();
        if let Some(stderr) = self.child.stderr.take() {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                output.push_str(&line);
                output.push('\n');
            }
        }
        let status = self.child.wait().unwrap();
        let stats = std::fs::read_to_string(self.dir.path().join("stats.csv")).unwrap_or_default();
        let last = stats.lines().last().unwrap_or("");
        let columns: Vec<&str> = last.split(';').collect();
        let column = |i: usize| columns.get(i).and_then(|v| v.parse().ok()).unwrap_or(0);
        SippStats {
            exit_code: status.code().unwrap_or(-1),
            // Columns are 0-based here: 16th is "SuccessfulCall(C)", 18th "FailedCall(C)", 58th retransmissions.
            successful: column(15),
            failed: column(17),
            retransmissions: column(57),
            output,
        }
    }
}

impl Drop for Sipp {
    /// A SIPp the test no longer waits for is stopped, not left to its own timeout.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs SIPp to completion.
pub fn sipp(target: SocketAddr, args: &[&str]) -> SippStats {
    sipp_spawn(target, args).wait()
}

/// Runs SIPp's REGISTER `scenario` as the softphone alice, answering digest challenges with
/// `password`, `count` times one after the other.
pub fn sipp_register_alice(
    gateway: &Gateway,
    scenario: &str,
    password: &str,
    count: &str,
) -> SippStats {
    let scenario = self::scenario(scenario);
    sipp(
        gateway.sip,
        &[
            "-sf",
            scenario.to_str().unwrap(),
            "-s",
            "alice",
            "-au",
            "alice",
            "-ap",
            password,
            "-m",
            count,
            "-l",
            "1",
        ],
    )
}

/// A minimal SIP phone on a UDP socket, for tests that need exact control over RTP.
pub struct RawPhone {
    pub sip: UdpSocket,
    pub rtp: UdpSocket,
    pub gateway: SocketAddr,
    pub call_id: String,
    pub to_tag: Option<String>,
    cseq: u32,
}

impl RawPhone {
    pub fn new(gateway: SocketAddr, call_id: &str) -> RawPhone {
        let sip = UdpSocket::bind("127.0.0.1:0").unwrap();
        sip.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
        rtp.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        RawPhone {
            sip,
            rtp,
            gateway,
            call_id: call_id.to_string(),
            to_tag: None,
            cseq: 0,
        }
    }

    fn headers(&mut self, method: &str, uri: &str) -> String {
        self.cseq += 1;
        let local = self.sip.local_addr().unwrap();
        let to_tag = self
            .to_tag
            .as_ref()
            .map(|t| format!(";tag={t}"))
            .unwrap_or_default();
        format!(
            "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-{}-{}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:phone@127.0.0.1>;tag=raw\r\nTo: <sip:echo@127.0.0.1>{to_tag}\r\n\
             Call-ID: {}\r\nCSeq: {} {method}\r\nContact: <sip:phone@{local}>\r\n",
            self.call_id, self.cseq, self.call_id, self.cseq
        )
    }

    /// INVITE to echo offering PCMU and telephone-event on our RTP socket; returns where the
    /// gateway receives RTP. Sends the ACK.
    pub fn call_echo(&mut self) -> SocketAddr {
        let rtp_port = self.rtp.local_addr().unwrap().port();
        let sdp = format!(
            "v=0\r\no=raw 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {rtp_port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n\
             a=fmtp:101 0-16\r\n"
        );
        let uri = format!("sip:echo@{}", self.gateway);
        let invite = format!(
            "{}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            self.headers("INVITE", &uri),
            sdp.len()
        );
        self.sip.send_to(invite.as_bytes(), self.gateway).unwrap();
        let ok = loop {
            let message = self.recv();
            if message.starts_with("SIP/2.0 200") {
                break message;
            }
            assert!(
                message.starts_with("SIP/2.0 1"),
                "unexpected answer: {message}"
            );
        };
        let to = ok.lines().find(|l| l.starts_with("To:")).unwrap();
        self.to_tag = Some(to.split(";tag=").nth(1).unwrap().trim().to_string());
        let body = &ok[ok.find("\r\n\r\n").unwrap() + 4..];
        let port: u16 = body
            .lines()
            .find_map(|l| l.strip_prefix("m=audio "))
            .and_then(|rest| rest.split(' ').next())
            .unwrap()
            .parse()
            .unwrap();
        let ack = format!("{}Content-Length: 0\r\n\r\n", self.headers_ack(&uri));
        self.sip.send_to(ack.as_bytes(), self.gateway).unwrap();
        SocketAddr::new(self.gateway.ip(), port)
    }

    fn headers_ack(&mut self, uri: &str) -> String {
        let cseq = self.cseq;
        let headers = self.headers("ACK", uri);
        self.cseq = cseq;
        headers.replace(
            &format!("CSeq: {} ACK", cseq + 1),
            &format!("CSeq: {cseq} ACK"),
        )
    }

    pub fn recv(&self) -> String {
        let mut buf = [0u8; 8192];
        let (n, _) = self
            .sip
            .recv_from(&mut buf)
            .expect("a SIP message from the gateway");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    pub fn hangup(&mut self) -> String {
        let uri = format!("sip:tandem@{}", self.gateway);
        let bye = format!("{}Content-Length: 0\r\n\r\n", self.headers("BYE", &uri));
        self.sip.send_to(bye.as_bytes(), self.gateway).unwrap();
        self.recv()
    }

    /// Answers a request from the gateway (e.g. its BYE) with 200.
    pub fn answer_ok(&self, request: &str) {
        let keep: Vec<&str> = request
            .lines()
            .filter(|l| {
                ["Via:", "From:", "To:", "Call-ID:", "CSeq:"]
                    .iter()
                    .any(|h| l.starts_with(h))
            })
            .collect();
        let ok = format!(
            "SIP/2.0 200 OK\r\n{}\r\nContent-Length: 0\r\n\r\n",
            keep.join("\r\n")
        );
        let via = request.lines().find(|l| l.starts_with("Via:")).unwrap();
        let sent_by = via
            .split_whitespace()
            .nth(2)
            .unwrap()
            .split(';')
            .next()
            .unwrap();
        self.sip.send_to(ok.as_bytes(), sent_by).unwrap();
    }
}

/// An RTP packet: version 2, `pt`, `seq`, `ts`, SSRC 0x1234 and `payload`.
pub fn rtp_packet(pt: u8, seq: u16, ts: u32, payload: &[u8]) -> Vec<u8> {
    let mut packet = vec![0x80, pt, 0, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34];
    packet[2..4].copy_from_slice(&seq.to_be_bytes());
    packet[4..8].copy_from_slice(&ts.to_be_bytes());
    packet.extend_from_slice(payload);
    packet
}

/// Whether the SIP server at `target` answers an OPTIONS with 200 within `within`, asking
/// again every 100 ms: how a test waits until a gateway or a proxy is up.
pub fn answers_options(target: SocketAddr, within: Duration) -> bool {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let local = socket.local_addr().unwrap();
    let deadline = std::time::Instant::now() + within;
    let mut i = 0;
    while std::time::Instant::now() < deadline {
        i += 1;
        let options = format!(
            "OPTIONS sip:{0} SIP/2.0\r\nVia: SIP/2.0/UDP {1};branch=z9hG4bK-ready{i}-{2};rport\r\n\
             Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=p\r\nTo: <sip:{0}>\r\n\
             Call-ID: ready-{i}-{2}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
            target,
            local,
            local.port()
        );
        socket.send_to(options.as_bytes(), target).unwrap();
        let mut buf = [0u8; 4096];
        if let Ok((n, _)) = socket.recv_from(&mut buf)
            && buf[..n].starts_with(b"SIP/2.0 200")
        {
            return true;
        }
    }
    false
}
