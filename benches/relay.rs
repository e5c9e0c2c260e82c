//! CPU per relayed RTP packet and memory per relayed call, against a plain UDP echo.
//!
//! `cargo bench --bench relay` runs, in one process and on one engine thread:
//! 1. RSS: 2000 bridged leg pairs opened and latched (a few packets each); RSS delta / calls.
//! 2. For 50 and 100 kpps: a plain blocking `recv_from`/`send_to` echo thread, then the engine,
//!    each fed by one generator thread sending 172-byte RTP (G.711, 20 ms) from two sockets per
//!    call at 50 pps each. CPU is the echo thread's, or the engine threads', time on CPU from
//!    `/proc/self/task/TID/schedstat`, over the same measured window.
//!
//! Without `--bench` (as under `cargo test`) it runs a small smoke pass.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tandem::media::engine::{Forwarding, LegId, MediaEngine, MediaSettings};
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

    let rss_per_call = rss_per_call(rss_calls);
    println!(
        "RSS per relayed call: {:.1} KiB ({rss_calls} bridged pairs)",
        rss_per_call / 1024.0
    );
    for rate in rates {
        let calls = (rate / (2 * PPS_PER_STREAM)) as usize;
        let echo = run_echo(calls, rate, seconds);
        let relay = run_engine(calls, rate, seconds);
        let ratio = relay.ns_per_packet() / echo.ns_per_packet();
        let per_call = relay.cpu_fraction() / calls as f64;
        println!(
            "{rate:>6} pps offered ({calls} calls): echo {:.2} µs/pkt at {:.0} pps ({:.1}% CPU) | relay {:.2} µs/pkt at {:.0} pps ({:.1}% CPU) | ratio {ratio:.2} | {:.4}% CPU per call | {:.0} calls per core",
            echo.ns_per_packet() / 1000.0,
            echo.rate(),
            echo.cpu_fraction() * 100.0,
            relay.ns_per_packet() / 1000.0,
            relay.rate(),
            relay.cpu_fraction() * 100.0,
            per_call * 100.0,
            1.0 / per_call,
        );
    }
}

struct Measure {
    cpu_ns: u64,
    wall: Duration,
    packets: u64,
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
}

/// Time on CPU of the threads `filter` picks by id and name, in ns.
fn cpu_ns(filter: &dyn Fn(u64, &str) -> bool) -> u64 {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
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

fn gettid() -> u64 {
    std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| p.file_name()?.to_str()?.parse().ok())
        .expect("thread id")
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

fn phone() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_nonblocking(true).unwrap();
    s
}

fn rtp(seq: u16, ssrc: u32) -> [u8; PACKET] {
    let mut p = [0xd5u8; PACKET];
    p[0] = 0x80;
    p[1] = 8;
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
    p
}

/// Opens bridged pairs on the next free even ports; returns each phone with its leg address.
fn open_calls(
    engine: &mut MediaEngine,
    calls: usize,
    port: &mut u16,
) -> (Vec<(UdpSocket, SocketAddr)>, Vec<LegId>) {
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

fn rss_per_call(calls: usize) -> f64 {
    let (mut engine, _events) = MediaEngine::start(MediaSettings::default()).unwrap();
    // Warm the runtime and allocator with one call first.
    let mut port = 30000;
    let (warm, _) = open_calls(&mut engine, 1, &mut port);
    send_rounds(&warm, 3);
    std::thread::sleep(Duration::from_millis(200));
    let before = rss_bytes();
    let (phones, _legs) = open_calls(&mut engine, calls, &mut port);
    send_rounds(&phones, 5);
    std::thread::sleep(Duration::from_millis(500));
    let after = rss_bytes();
    (after - before) / calls as f64
}

fn send_rounds(phones: &[(UdpSocket, SocketAddr)], rounds: u16) {
    for seq in 0..rounds {
        for (i, (socket, to)) in phones.iter().enumerate() {
            let _ = socket.send_to(&rtp(seq, i as u32), *to);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends round-robin over `phones` at `rate` packets per second until `stop`.
fn generate(phones: Vec<(UdpSocket, SocketAddr)>, rate: u64, stop: Arc<AtomicBool>) {
    let start = Instant::now();
    let mut sent = 0u64;
    let mut i = 0usize;
    let mut seq = vec![0u16; phones.len()];
    while !stop.load(Ordering::Relaxed) {
        let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
        while sent < due {
            let (socket, to) = &phones[i];
            let _ = socket.send_to(&rtp(seq[i], i as u32), *to);
            seq[i] = seq[i].wrapping_add(1);
            i = (i + 1) % phones.len();
            sent += 1;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}

/// Warms up for a second, then measures `cpu` and `packets` over `seconds`.
fn measure(seconds: f64, cpu: impl Fn() -> u64, packets: impl Fn() -> u64) -> Measure {
    std::thread::sleep(Duration::from_secs(1));
    let (c0, p0, t0) = (cpu(), packets(), Instant::now());
    std::thread::sleep(Duration::from_secs_f64(seconds));
    Measure {
        cpu_ns: cpu() - c0,
        packets: packets() - p0,
        wall: t0.elapsed(),
    }
}

fn run_echo(calls: usize, rate: u64, seconds: f64) -> Measure {
    let echo = UdpSocket::bind("127.0.0.1:0").unwrap();
    echo.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let to = echo.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let echoed = Arc::new(AtomicU64::new(0));
    let tid = Arc::new(AtomicU64::new(0));
    let thread = {
        let (stop, echoed, tid) = (stop.clone(), echoed.clone(), tid.clone());
        std::thread::spawn(move || {
            tid.store(gettid(), Ordering::Relaxed);
            let mut buf = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                if let Ok((n, from)) = echo.recv_from(&mut buf)
                    && echo.send_to(&buf[..n], from).is_ok()
                {
                    echoed.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let phones = (0..2 * calls).map(|_| (phone(), to)).collect();
    let generator = {
        let stop = stop.clone();
        std::thread::spawn(move || generate(phones, rate, stop))
    };
    std::thread::sleep(Duration::from_millis(50));
    let echo_tid = tid.load(Ordering::Relaxed);
    let m = measure(
        seconds,
        || cpu_ns(&|t, _| t == echo_tid),
        || echoed.load(Ordering::Relaxed),
    );
    stop.store(true, Ordering::Relaxed);
    generator.join().unwrap();
    thread.join().unwrap();
    m
}

fn run_engine(calls: usize, rate: u64, seconds: f64) -> Measure {
    let (mut engine, _events) = MediaEngine::start(MediaSettings::default()).unwrap();
    let mut port = 20000 + (rate / 1000) as u16 * 40;
    let (phones, legs) = open_calls(&mut engine, calls, &mut port);
    let stop = Arc::new(AtomicBool::new(false));
    let generator = {
        let stop = stop.clone();
        std::thread::spawn(move || generate(phones, rate, stop))
    };
    let relayed = || {
        legs.iter()
            .map(|l| engine.stats(*l).map_or(0, |s| s.packets_out))
            .sum()
    };
    let m = measure(
        seconds,
        || cpu_ns(&|_, comm| comm.starts_with("tandem-media")),
        relayed,
    );
    stop.store(true, Ordering::Relaxed);
    generator.join().unwrap();
    for leg in &legs {
        engine.close(*leg);
    }
    m
}
