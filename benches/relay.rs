//! CPU per relayed RTP packet and memory per relayed call, against a plain UDP echo and, when it
//! is installed, rtpengine, at the same offered load in the same run.
//!
//! `cargo bench --bench relay` runs, in one process:
//! 1. Memory: 2000 bridged leg pairs opened and latched (a few packets each); RSS delta / calls.
//!    Then the pairs are closed and opened again three times: the idle RSS must not grow.
//! 2. For 50 and 100 kpps: one generator thread sends 172-byte RTP (G.711, 20 ms) from two
//!    sockets per call at 50 pps each, and one sink thread reads every socket, counting what is
//!    delivered; the same sockets are pointed at
//!    - a plain `recv_from`/`send_to` echo thread (the cost of moving a datagram through the
//!      kernel twice, the floor for any relay),
//!    - Tandem's media engine (one reactor thread), the calls bridged pairwise,
//!    - rtpengine (`rtpengine-daemon`, userspace forwarding only, `table = -1`, 2 threads), the
//!      calls set up over its ng control protocol, if `rtpengine` is on the `PATH`.
//!
//!    CPU is the server's time on CPU from `/proc/…/schedstat` (its threads only), over the same
//!    window, divided by the packets delivered in it. After each engine run every packet sent
//!    must be delivered or in one of the engine's drop counters (asserted).
//!
//! Environment: `RELAY_PIN=1:0` pins the server to CPU 1 and the generator and sink to CPU 0;
//! `RELAY_RUNS=3` repeats the rate table; `RELAY_RTPENGINE=0` leaves rtpengine out.
//! Without `--bench` (as under `cargo test`) it runs a small smoke pass without rtpengine.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use tandem::media::batch::{self, RecvBatch};
use tandem::media::engine::{Forwarding, LegPort, MediaEngine, MediaSettings};
use tandem::media::latch::Learning;

const PACKET: usize = 172;
const PPS_PER_STREAM: u64 = 50;

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (rss_calls, rates, seconds) = if full {
        (2000, vec![50_000u64, 100_000], 5.0)
    } else {
        (20, vec![2_000u64], 0.3)
    };
    let pin = Pin::from_env();
    let runs = std::env::var("RELAY_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1);
    let rtpengine = full
        && std::env::var("RELAY_RTPENGINE").as_deref() != Ok("0")
        && Command::new("rtpengine")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if let Some(gen_cpus) = &pin.generator {
        set_affinity(0, gen_cpus);
    }

    let memory = memory(rss_calls);
    println!(
        "RSS per relayed call: {:.1} KiB ({rss_calls} bridged pairs); idle RSS after each of {} open/close cycles: {} KiB",
        memory.per_call / 1024.0,
        memory.idle.len(),
        memory
            .idle
            .iter()
            .map(|r| format!("{:.0}", r / 1024.0))
            .collect::<Vec<_>>()
            .join(" / ")
    );
    let growth = memory.idle.last().unwrap() - memory.idle[1];
    assert!(
        growth < 1024.0 * 1024.0,
        "idle RSS grew by {:.0} KiB over repeated cycles",
        growth / 1024.0
    );

    for run in 1..=runs {
        for &rate in &rates {
            let calls = (rate / (2 * PPS_PER_STREAM)) as usize;
            let echo = run_echo(calls, rate, seconds, &pin);
            let relay = run_engine(calls, rate, seconds, &pin);
            println!(
                "[run {run}] {rate:>6} pps offered ({calls} calls): echo {} | tandem {} | ratio {:.2} | {:.0} calls per core",
                echo.line(),
                relay.line(),
                relay.ns_per_packet() / echo.ns_per_packet(),
                relay.calls_per_core(),
            );
            if rtpengine {
                match run_rtpengine(calls, rate, seconds, &pin) {
                    Ok(r) => println!(
                        "[run {run}] {rate:>6} pps offered ({calls} calls): rtpengine {} | ratio {:.2} | {:.0} calls per core | tandem/rtpengine {:.2}",
                        r.line(),
                        r.ns_per_packet() / echo.ns_per_packet(),
                        r.calls_per_core(),
                        relay.ns_per_packet() / r.ns_per_packet(),
                    ),
                    Err(e) => println!("rtpengine could not be measured: {e}"),
                }
            }
        }
    }
}

/// Which CPUs the server under test and the load generator run on (`RELAY_PIN=SUT:GEN`).
#[derive(Default)]
struct Pin {
    server: Option<Vec<usize>>,
    generator: Option<Vec<usize>>,
}

impl Pin {
    fn from_env() -> Pin {
        let Ok(spec) = std::env::var("RELAY_PIN") else {
            return Pin::default();
        };
        let cpus =
            |s: &str| -> Vec<usize> { s.split(',').filter_map(|c| c.parse().ok()).collect() };
        match spec.split_once(':') {
            Some((server, generator)) => Pin {
                server: Some(cpus(server)),
                generator: Some(cpus(generator)),
            },
            None => Pin::default(),
        }
    }

    fn server_list(&self) -> Option<String> {
        self.server.as_ref().map(|c| {
            c.iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(",")
        })
    }
}

/// Pins thread `tid` (0: the calling thread) to `cpus`.
fn set_affinity(tid: u64, cpus: &[usize]) {
    // SAFETY: a zeroed cpu_set_t is empty; CPU_SET writes within it; sched_setaffinity reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &cpu in cpus {
            libc::CPU_SET(cpu, &mut set);
        }
        libc::sched_setaffinity(
            tid as libc::pid_t,
            std::mem::size_of::<libc::cpu_set_t>(),
            &set,
        );
    }
}

struct Measure {
    cpu_ns: u64,
    wall: Duration,
    /// Packets delivered to the phones in the window.
    packets: u64,
    /// Packets sent by the phones in the window.
    offered: u64,
}

impl Measure {
    fn ns_per_packet(&self) -> f64 {
        self.cpu_ns as f64 / self.packets.max(1) as f64
    }
    fn rate(&self) -> f64 {
        self.packets as f64 / self.wall.as_secs_f64()
    }
    fn cpu_fraction(&self) -> f64 {
        self.cpu_ns as f64 / self.wall.as_nanos() as f64
    }
    /// Calls (two streams of 50 pps) one core relays at this cost per packet: from the cost,
    /// not the load, so that a generator falling short of its rate does not inflate it.
    fn calls_per_core(&self) -> f64 {
        1e9 / (self.ns_per_packet() * (2 * PPS_PER_STREAM) as f64)
    }
    fn line(&self) -> String {
        let lost = 1.0 - self.packets as f64 / self.offered.max(1) as f64;
        format!(
            "{:.2} µs/pkt at {:.0} pps ({:.1}% CPU, {:.2}% not delivered in the window)",
            self.ns_per_packet() / 1000.0,
            self.rate(),
            self.cpu_fraction() * 100.0,
            lost.max(0.0) * 100.0
        )
    }
}

/// Time on CPU, in ns, of the threads of process `pid` (`self` or a number) that `filter`
/// picks by id and name.
fn cpu_ns(pid: &str, filter: &dyn Fn(u64, &str) -> bool) -> u64 {
    let mut total = 0;
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    for task in tasks.flatten() {
        let Ok(tid) = task.file_name().to_string_lossy().parse::<u64>() else {
            continue;
        };
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !filter(tid, comm.trim()) {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
        total += stat
            .split_whitespace()
            .next()
            .and_then(|ns| ns.parse::<u64>().ok())
            .unwrap_or(0);
    }
    total
}

/// Pins the threads of this process whose name starts with `prefix`.
fn pin_threads(prefix: &str, cpus: &[usize]) {
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let Ok(tid) = task.file_name().to_string_lossy().parse::<u64>() else {
            continue;
        };
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim().starts_with(prefix) {
            set_affinity(tid, cpus);
        }
    }
}

fn gettid() -> u64 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() as u64 }
}

fn rss_bytes() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap();
    kb * 1024.0
}

fn rss_of(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .unwrap_or(0.0)
        * 1024.0
}

fn phone() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_nonblocking(true).unwrap();
    // Losses on the phone's side are counted too.
    batch::count_overflows(s.as_raw_fd()).unwrap();
    s
}

fn rtp(seq: u16, ssrc: u32) -> [u8; PACKET] {
    let mut p = [0xffu8; PACKET];
    p[0] = 0x80;
    p[1] = 0;
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
    p
}

/// One phone: its socket and where it sends.
type Phones = Vec<(UdpSocket, SocketAddr)>;

/// Opens bridged pairs on the next free even ports; returns each phone with its leg address.
fn open_calls(engine: &mut MediaEngine, calls: usize, port: &mut u16) -> (Phones, Vec<LegPort>) {
    let mut phones = Vec::with_capacity(2 * calls);
    let mut legs = Vec::with_capacity(2 * calls);
    for _ in 0..2 * calls {
        let p = phone();
        let leg = loop {
            *port += 2;
            if let Ok(leg) = engine.open(*port, Some(p.local_addr().unwrap()), Learning::Strict) {
                break leg;
            }
        };
        phones.push((p, SocketAddr::from(([127, 0, 0, 1], leg.0))));
        legs.push(leg);
    }
    for pair in legs.chunks(2) {
        engine.bridge(
            pair[0],
            pair[1],
            Forwarding::default(),
            Forwarding::default(),
        );
    }
    (phones, legs)
}

struct Memory {
    per_call: f64,
    /// RSS with no leg open, after each open/close cycle.
    idle: Vec<f64>,
}

fn memory(calls: usize) -> Memory {
    let (mut engine, _events) = MediaEngine::start(MediaSettings::default()).unwrap();
    // Warm the allocator with one call first.
    let mut port = 30000;
    let (warm, warm_legs) = open_calls(&mut engine, 1, &mut port);
    send_rounds(&warm, 3);
    std::thread::sleep(Duration::from_millis(200));
    let mut per_call = 0.0;
    let mut idle = Vec::new();
    for cycle in 0..4 {
        let before = rss_bytes();
        let mut first = 30000;
        let (phones, legs) = open_calls(&mut engine, calls, &mut first);
        send_rounds(&phones, 5);
        std::thread::sleep(Duration::from_millis(300));
        if cycle == 0 {
            per_call = (rss_bytes() - before) / calls as f64;
        }
        for leg in legs {
            engine.close(leg);
        }
        drop(phones);
        std::thread::sleep(Duration::from_millis(300));
        idle.push(rss_bytes());
    }
    for leg in warm_legs {
        engine.close(leg);
    }
    Memory { per_call, idle }
}

fn send_rounds(phones: &[(UdpSocket, SocketAddr)], rounds: u16) {
    for seq in 0..rounds {
        for (i, (socket, to)) in phones.iter().enumerate() {
            let _ = socket.send_to(&rtp(seq, i as u32), *to);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What the phones sent and received.
#[derive(Default)]
struct Traffic {
    sent: AtomicU64,
    delivered: AtomicU64,
    /// RTCP from the server (its own reports), not counted as delivered.
    rtcp: AtomicU64,
    /// Datagrams the kernel dropped at the phones because their queue was full.
    overflowed: AtomicU64,
}

/// The load: a generator thread sending round-robin over the phones at `rate`, and a sink
/// thread reading them all. Both stop with [`Load::stop`].
struct Load {
    traffic: Arc<Traffic>,
    stop: Arc<AtomicBool>,
    stop_sink: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    phones: Arc<Phones>,
}

impl Load {
    fn start(phones: Phones, rate: u64, pin: &Pin) -> Load {
        let traffic = Arc::new(Traffic::default());
        let stop = Arc::new(AtomicBool::new(false));
        let stop_sink = Arc::new(AtomicBool::new(false));
        let phones = Arc::new(phones);
        let generator = {
            let (phones, traffic, stop) = (phones.clone(), traffic.clone(), stop.clone());
            let cpus = pin.generator.clone();
            std::thread::Builder::new()
                .name("relay-gen".into())
                .spawn(move || {
                    if let Some(cpus) = cpus {
                        set_affinity(0, &cpus);
                    }
                    generate(&phones, rate, &traffic, &stop)
                })
                .unwrap()
        };
        let sink = {
            let (phones, traffic, stop) = (phones.clone(), traffic.clone(), stop_sink.clone());
            let cpus = pin.generator.clone();
            std::thread::Builder::new()
                .name("relay-sink".into())
                .spawn(move || {
                    if let Some(cpus) = cpus {
                        set_affinity(0, &cpus);
                    }
                    sink(&phones, &traffic, &stop)
                })
                .unwrap()
        };
        Load {
            traffic,
            stop,
            stop_sink,
            threads: vec![generator, sink],
            phones,
        }
    }

    /// Stops sending, waits until nothing more arrives, then stops the sink.
    fn stop(mut self) -> (Arc<Traffic>, Arc<Phones>) {
        self.stop.store(true, Ordering::Relaxed);
        self.threads.remove(0).join().unwrap();
        settle(&self.traffic);
        // One more packet from each phone: the kernel reports drops with the next datagram
        // (`SO_RXQ_OVFL`), so these carry the count of any drop at the end of the run.
        for (i, (socket, to)) in self.phones.iter().enumerate() {
            if socket.send_to(&rtp(u16::MAX, i as u32), *to).is_ok() {
                self.traffic.sent.fetch_add(1, Ordering::Relaxed);
            }
        }
        settle(&self.traffic);
        self.stop_sink.store(true, Ordering::Relaxed);
        // The sink stops when told and idle.
        self.threads.remove(0).join().unwrap();
        (self.traffic, self.phones)
    }
}

/// Waits until deliveries stop for a while (bounded).
fn settle(traffic: &Traffic) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = u64::MAX;
    while Instant::now() < deadline {
        let now = traffic.delivered.load(Ordering::Relaxed);
        if now == last {
            return;
        }
        last = now;
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn generate(phones: &[(UdpSocket, SocketAddr)], rate: u64, traffic: &Traffic, stop: &AtomicBool) {
    let start = Instant::now();
    let mut due_sent = 0u64;
    let mut i = 0usize;
    let mut seq = vec![0u16; phones.len()];
    while !stop.load(Ordering::Relaxed) {
        let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
        let mut sent = 0;
        while due_sent < due {
            let (socket, to) = &phones[i];
            if socket.send_to(&rtp(seq[i], i as u32), *to).is_ok() {
                sent += 1;
            }
            seq[i] = seq[i].wrapping_add(1);
            i = (i + 1) % phones.len();
            due_sent += 1;
        }
        traffic.sent.fetch_add(sent, Ordering::Relaxed);
        std::thread::sleep(Duration::from_micros(500));
    }
}

fn sink(phones: &[(UdpSocket, SocketAddr)], traffic: &Traffic, stop: &AtomicBool) {
    let mut poll = Poll::new().unwrap();
    for (i, (socket, _)) in phones.iter().enumerate() {
        poll.registry()
            .register(
                &mut SourceFd(&socket.as_raw_fd()),
                Token(i),
                Interest::READABLE,
            )
            .unwrap();
    }
    let mut events = Events::with_capacity(1024);
    let mut batch = RecvBatch::default();
    let mut overflows = vec![0u32; phones.len()];
    loop {
        poll.poll(&mut events, Some(Duration::from_millis(50)))
            .unwrap();
        if events.is_empty() && stop.load(Ordering::Relaxed) {
            return;
        }
        for event in events.iter() {
            let i = event.token().0;
            let fd = phones[i].0.as_raw_fd();
            while let Ok(n) = batch.recv(fd) {
                let (mut rtp, mut rtcp) = (0, 0);
                for j in 0..n {
                    if let Some(total) = batch.overflows(j) {
                        traffic.overflowed.fetch_add(
                            u64::from(total.wrapping_sub(overflows[i])),
                            Ordering::Relaxed,
                        );
                        overflows[i] = total;
                    }
                    match batch.packet(j) {
                        Some((p, _)) if p.len() > 1 && (200..=204).contains(&p[1]) => rtcp += 1,
                        _ => rtp += 1,
                    }
                }
                traffic.delivered.fetch_add(rtp, Ordering::Relaxed);
                traffic.rtcp.fetch_add(rtcp, Ordering::Relaxed);
                if n < batch::BATCH {
                    break;
                }
            }
        }
    }
}

/// Warms up for a second, then measures `cpu` and deliveries over `seconds`.
fn measure(seconds: f64, traffic: &Traffic, cpu: impl Fn() -> u64) -> Measure {
    std::thread::sleep(Duration::from_secs(1));
    let (c0, p0, s0, t0) = (
        cpu(),
        traffic.delivered.load(Ordering::Relaxed),
        traffic.sent.load(Ordering::Relaxed),
        Instant::now(),
    );
    std::thread::sleep(Duration::from_secs_f64(seconds));
    Measure {
        cpu_ns: cpu() - c0,
        packets: traffic.delivered.load(Ordering::Relaxed) - p0,
        offered: traffic.sent.load(Ordering::Relaxed) - s0,
        wall: t0.elapsed(),
    }
}

fn run_echo(calls: usize, rate: u64, seconds: f64, pin: &Pin) -> Measure {
    let echo = UdpSocket::bind("127.0.0.1:0").unwrap();
    echo.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let to = echo.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let tid = Arc::new(AtomicU64::new(0));
    let thread = {
        let (stop, tid) = (stop.clone(), tid.clone());
        let cpus = pin.server.clone();
        std::thread::spawn(move || {
            if let Some(cpus) = cpus {
                set_affinity(0, &cpus);
            }
            tid.store(gettid(), Ordering::Relaxed);
            let mut buf = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                if let Ok((n, from)) = echo.recv_from(&mut buf) {
                    let _ = echo.send_to(&buf[..n], from);
                }
            }
        })
    };
    let load = Load::start((0..2 * calls).map(|_| (phone(), to)).collect(), rate, pin);
    let echo_tid = loop {
        match tid.load(Ordering::Relaxed) {
            0 => std::thread::sleep(Duration::from_millis(10)),
            tid => break tid,
        }
    };
    let m = measure(seconds, &load.traffic, || {
        cpu_ns("self", &|t, _| t == echo_tid)
    });
    load.stop();
    stop.store(true, Ordering::Relaxed);
    thread.join().unwrap();
    m
}

fn run_engine(calls: usize, rate: u64, seconds: f64, pin: &Pin) -> Measure {
    let (mut engine, _events) = MediaEngine::start(MediaSettings::default()).unwrap();
    if let Some(cpus) = &pin.server {
        pin_threads("tandem-media", cpus);
    }
    let mut port = 20000 + (rate / 1000) as u16 * 40;
    let (phones, legs) = open_calls(&mut engine, calls, &mut port);
    let load = Load::start(phones, rate, pin);
    let m = measure(seconds, &load.traffic, || {
        cpu_ns("self", &|_, comm| comm.starts_with("tandem-media"))
    });
    let (traffic, _phones) = load.stop();

    // Every packet sent is delivered or counted where it was lost.
    let mut lost = 0;
    let mut by_counter = [0u64; 4];
    for leg in &legs {
        let s = engine.stats(*leg).unwrap();
        for (total, n) in
            by_counter
                .iter_mut()
                .zip([s.dropped, s.rejected, s.malformed, s.overflowed])
        {
            *total += n;
            lost += n;
        }
    }
    let stray = engine.stray_packets();
    let at_phones = traffic.overflowed.load(Ordering::Relaxed);
    let (sent, delivered) = (
        traffic.sent.load(Ordering::Relaxed),
        traffic.delivered.load(Ordering::Relaxed),
    );
    let accounted = delivered + lost + stray + at_phones;
    let [dropped, rejected, malformed, overflowed] = by_counter;
    println!(
        "  tandem accounting: sent {sent} = delivered {delivered} + dropped {dropped} + rejected {rejected} + malformed {malformed} + overflowed {overflowed} + stray {stray} + overflowed at the phones {at_phones}"
    );
    assert_eq!(sent, accounted, "every relayed packet is accounted for");
    for leg in &legs {
        engine.close(*leg);
    }
    m
}

/// rtpengine in a child process; stopped by PID when dropped.
struct Rtpengine {
    child: Child,
    dir: std::path::PathBuf,
    control: UdpSocket,
    ng: SocketAddr,
}

impl Drop for Rtpengine {
    fn drop(&mut self) {
        // SAFETY: a signal to the child we started, by its PID.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                let _ = std::fs::remove_dir_all(&self.dir);
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Rtpengine {
    fn start(pin: &Pin, ports: (u16, u16)) -> Result<Rtpengine, String> {
        let control = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        // A free port for its ng control socket: bind one, let it go, hand it over.
        let ng = UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .map_err(|e| e.to_string())?;
        let dir =
            std::env::temp_dir().join(format!("tandem-relay-rtpengine-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        // Userspace forwarding only (no kernel table), on loopback, two worker threads.
        let config = format!(
            "[rtpengine]\ntable = -1\ninterface = 127.0.0.1\nlisten-ng = {ng}\nport-min = {}\nport-max = {}\nforeground = true\nlog-stderr = true\nlog-level = 4\nnum-threads = 2\ntimeout = 60\n",
            ports.0, ports.1
        );
        let file = dir.join("rtpengine.conf");
        std::fs::write(&file, config).map_err(|e| e.to_string())?;
        let mut command = match pin.server_list() {
            Some(cpus) => {
                let mut c = Command::new("taskset");
                c.args(["-c", &cpus, "rtpengine"]);
                c
            }
            None => Command::new("rtpengine"),
        };
        let child = command
            .arg(format!("--config-file={}", file.display()))
            .arg("--config-section=rtpengine")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("rtpengine.log")).map_err(|e| e.to_string())?)
            .spawn()
            .map_err(|e| e.to_string())?;
        let mut engine = Rtpengine {
            child,
            dir,
            control,
            ng,
        };
        for _ in 0..50 {
            if engine
                .ng(&[("command", "ping")], Duration::from_millis(200))
                .is_ok_and(|r| contains(&r, b"4:pong"))
            {
                return Ok(engine);
            }
            if let Ok(Some(status)) = engine.child.try_wait() {
                return Err(format!("rtpengine exited: {status}"));
            }
        }
        Err("rtpengine did not answer its ng ping".into())
    }

    /// One ng request (a bencoded dictionary after a cookie, over UDP) and its answer.
    fn ng(&self, fields: &[(&str, &str)], timeout: Duration) -> Result<Vec<u8>, String> {
        let cookie = format!("{:012x}", rand_u64() & 0xffff_ffff_ffff);
        let mut sorted = fields.to_vec();
        sorted.sort();
        let mut message = format!("{cookie} d").into_bytes();
        for (key, value) in sorted {
            for s in [key, value] {
                message.extend_from_slice(format!("{}:{s}", s.len()).as_bytes());
            }
        }
        message.push(b'e');
        self.control
            .set_read_timeout(Some(timeout))
            .map_err(|e| e.to_string())?;
        self.control
            .send_to(&message, self.ng)
            .map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; 65536];
        loop {
            let n = self.control.recv(&mut buf).map_err(|e| e.to_string())?;
            if buf[..n].starts_with(cookie.as_bytes()) {
                buf.truncate(n);
                return Ok(buf);
            }
        }
    }

    /// Sets up a call from `a` to `b`; returns the ports at rtpengine that `a` and `b` send to.
    fn call(&self, id: usize, a: SocketAddr, b: SocketAddr) -> Result<(u16, u16), String> {
        let call_id = format!("relay-bench-{id}");
        let (from, to) = (format!("a{id}"), format!("b{id}"));
        let offer = self.ng(
            &[
                ("command", "offer"),
                ("call-id", &call_id),
                ("from-tag", &from),
                ("sdp", &sdp(a.port())),
            ],
            Duration::from_secs(2),
        )?;
        let answer = self.ng(
            &[
                ("command", "answer"),
                ("call-id", &call_id),
                ("from-tag", &from),
                ("to-tag", &to),
                ("sdp", &sdp(b.port())),
            ],
            Duration::from_secs(2),
        )?;
        // B sends to the port of the offer rtpengine forwarded to it, A to the answer's.
        match (audio_port(&answer), audio_port(&offer)) {
            (Some(for_a), Some(for_b)) => Ok((for_a, for_b)),
            _ => Err(format!(
                "no media port in rtpengine's answer: {}",
                String::from_utf8_lossy(&answer)
            )),
        }
    }
}

fn sdp(port: u16) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n"
    )
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn audio_port(reply: &[u8]) -> Option<u16> {
    let at = reply.windows(8).position(|w| w == b"m=audio ")? + 8;
    let digits: String = reply[at..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .map(|&b| b as char)
        .collect();
    digits.parse().ok()
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now())
}

fn run_rtpengine(calls: usize, rate: u64, seconds: f64, pin: &Pin) -> Result<Measure, String> {
    let engine = Rtpengine::start(pin, (40000, 40000 + (8 * calls as u16).max(400)))?;
    std::thread::sleep(Duration::from_millis(300));
    let rss_before = rss_of(engine.child.id());
    let mut phones = Vec::with_capacity(2 * calls);
    for id in 0..calls {
        let (a, b) = (phone(), phone());
        let (to_a, to_b) = engine.call(id, a.local_addr().unwrap(), b.local_addr().unwrap())?;
        phones.push((a, SocketAddr::from(([127, 0, 0, 1], to_a))));
        phones.push((b, SocketAddr::from(([127, 0, 0, 1], to_b))));
    }
    // taskset execs rtpengine in place: the PID is rtpengine's either way.
    let rtpengine_pid = engine.child.id().to_string();
    let load = Load::start(phones, rate, pin);
    let m = measure(seconds, &load.traffic, || {
        cpu_ns(&rtpengine_pid, &|_, _| true)
    });
    let rss_after = rss_of(engine.child.id());
    let (traffic, phones) = load.stop();
    let sent = traffic.sent.load(Ordering::Relaxed);
    let delivered = traffic.delivered.load(Ordering::Relaxed);
    println!(
        "  rtpengine: sent {sent}, delivered {delivered}, overflowed at the phones {}; RSS {:.1} KiB per call",
        traffic.overflowed.load(Ordering::Relaxed),
        (rss_after - rss_before) / calls as f64 / 1024.0
    );
    for id in 0..calls {
        let (call_id, from) = (format!("relay-bench-{id}"), format!("a{id}"));
        let _ = engine.ng(
            &[
                ("command", "delete"),
                ("call-id", &call_id),
                ("from-tag", &from),
            ],
            Duration::from_secs(1),
        );
    }
    drop(phones);
    Ok(m)
}
