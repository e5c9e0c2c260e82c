//! WebRTC legs end to end over loopback: str0m clients (full ICE, DTLS client, as browsers
//! are) against Tandem's `RtcService`.
//!
//! `cargo bench --bench webrtc` measures, in one process:
//! 1. Setup: 100 clients join at once; from `create_peer` to `RtcEvent::Connected` (ICE and
//!    DTLS), p50/p99, and Tandem's CPU per join.
//! 2. Audio legs bridged to SIP per core: N clients each talk 50 packets/s to a Tandem peer that
//!    is `bridge_rtp`'d, as the gateway does it, to a media-engine leg bridged to a second leg
//!    whose peer (the "phone") is a plain UDP echo, so each leg carries 50 packets/s both ways
//!    through the peer, both engine legs and the phone. Once with PCMU clients (pass-through)
//!    and once with Opus clients (Opus ↔ PCMU transcoding both ways), N = 100 and 300.
//!    legs per core = N / (Tandem's CPU seconds / wall seconds).
//! 3. Video: two peers `connect`ed; one client sends VP8 (12 kB frames, ~11 packets each, at
//!    250 frames/s, ~2750 packets/s); Tandem's CPU per packet forwarded to the other client.
//!
//! How Tandem's CPU is told apart: the service runs in its own tokio runtime (one worker
//! thread, threads named `tandem-rtc`) and the media engine on its own thread (`tandem-media`);
//! the clients run in another runtime (one worker, `rtc-client`) and the SIP echo on its own
//! thread. Tandem's CPU is its threads' time on CPU from
//! `/proc/self/task/TID/schedstat` over a measured window after a second of warm-up. On
//! loopback the kernel delivers a datagram in the sender's system call, so Tandem is charged
//! for delivering what it sends and not for what it receives; a leg sends as many datagrams as
//! it receives both ways, so this is close to the cost of a real leg's receive and send paths.
//! The machine has few cores and everything shares them; the run prints the CPU of each part.
//!
//! 4. Codec: the cost of one 20 ms frame transcoded each way (`codec`), and with
//!    `--features libopus` the system's libopus doing the same beside it.
//!
//! Without `--bench` (as under `cargo test`) it runs a small smoke pass.

#[path = "support/str0m_client.rs"]
mod str0m_client;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use str0m::format::Codec;
use str0m_client::{ClientStats, Plan, client};
use tandem::config;
use tandem::media::engine::{Forwarding, LegPort, MediaEngine, MediaSettings};
use tandem::media::latch::Learning;
use tandem::rtc::{G711, MediaSpec, PeerId, RtcEvent, RtcService};
use tokio::runtime::Runtime;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

const AUDIO: MediaSpec = MediaSpec {
    audio: true,
    video: false,
    facing_g711: false,
};
/// A leg bridged to SIP, offered as the gateway offers one (PCMU first, no transport-wide
/// congestion control).
const BRIDGED: MediaSpec = MediaSpec {
    audio: true,
    video: false,
    facing_g711: true,
};
const VIDEO: MediaSpec = MediaSpec {
    audio: false,
    video: true,
    facing_g711: false,
};
/// Legs being opened at once while a load run starts.
const OPENING_AT_ONCE: usize = 20;
/// How long any wait for the service (connecting, answers) may take before the run fails.
const PATIENCE: Duration = Duration::from_secs(60);

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (joins, mut legs, seconds, video_seconds) = if full {
        (100, vec![100, 300], 5.0, 5.0)
    } else {
        (10, vec![4], 0.5, 0.5)
    };
    // Words after the flags pick runs: `setup`, `pcmu`, `opus`, `codec`, `video` (all by default);
    // numbers replace the audio runs' leg counts.
    let (numbers, picked): (Vec<String>, Vec<String>) = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .partition(|a| a.parse::<usize>().is_ok());
    if !numbers.is_empty() {
        legs = numbers.iter().map(|n| n.parse().unwrap()).collect();
    }
    let run = |name: &str| picked.is_empty() || picked.iter().any(|p| p == name);
    let rts = Runtimes::new();

    if run("setup") {
        let setup = rts.setup_time(joins);
        println!(
            "setup, {joins} clients at once: create_peer -> Connected p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, {} failed | Tandem CPU {:.2} ms per join",
            setup.p50.as_secs_f64() * 1e3,
            setup.p99.as_secs_f64() * 1e3,
            setup.max.as_secs_f64() * 1e3,
            setup.failed,
            setup.cpu.as_secs_f64() * 1e3 / joins as f64,
        );
    }

    for codec in [Codec::PCMU, Codec::Opus] {
        if !run(&codec_name(codec).to_lowercase()) {
            continue;
        }
        for &n in &legs {
            let m = rts.bridged_audio(n, codec, seconds);
            // A leg's 20 ms is one packet each way; count those carried, so that datagrams
            // lost to full socket buffers (a loaded machine) do not flatter the figure.
            let carried = (m.to_sip + m.from_sip) as f64 / 2.0;
            let per_leg_period = m.tandem_cpu.as_secs_f64() / carried.max(1.0);
            println!(
                "{n:>4} {} legs bridged to SIP: Tandem {:.1}% CPU, {:.1} µs per leg per 20 ms => {:.0} legs per core | carried {:.0}% of {}/s each way (to SIP {:.0}/s, from SIP {:.0}/s, clients heard {:.0}/s) | drops: Tandem socket {}, SIP socket {}, peer queues {} | failed to connect {} | clients {:.0}% CPU, SIP echo {:.0}% CPU",
                codec_name(codec),
                m.tandem_fraction() * 100.0,
                per_leg_period * 1e6,
                1.0 / (per_leg_period * 50.0),
                m.rate(carried as u64) * 100.0 / (n * 50) as f64,
                n * 50,
                m.rate(m.to_sip),
                m.rate(m.from_sip),
                m.rate(m.heard),
                m.tandem_socket_drops,
                m.sip_socket_drops,
                m.queue_drops,
                m.failed,
                m.fraction(m.client_cpu) * 100.0,
                m.fraction(m.echo_cpu) * 100.0,
            );
            assert!(m.heard > 0, "no bridged audio came back to the clients");
        }
    }

    if run("codec") {
        codec_cost(if full { 2000 } else { 50 });
    }

    if !run("video") {
        return;
    }
    let m = rts.video(video_seconds);
    println!(
        "video, one VP8 sender to one receiver: {:.0} packets/s forwarded, Tandem {:.1}% CPU => {:.2} µs per forwarded packet | clients {:.0}% CPU | drops: Tandem socket {}, peer queues {}",
        m.rate(m.heard),
        m.tandem_fraction() * 100.0,
        m.tandem_cpu.as_secs_f64() * 1e6 / m.heard.max(1) as f64,
        m.fraction(m.client_cpu) * 100.0,
        m.tandem_socket_drops,
        m.queue_drops,
    );
    assert!(m.heard > 0, "no video was forwarded");
}

/// What transcoding one 20 ms frame each way costs a bridged Opus leg: a browser's 48 kHz Opus
/// frame (fullband, or narrowband as asked) decoded to PCMU, and 20 ms of PCMU encoded to
/// Opus, timed over `frames` frames of a voice-like signal on this thread. With `--features
/// libopus` the system's libopus does the same work beside it, in the same run.
fn codec_cost(frames: usize) {
    use tandem::rtc::transcode::Transcoder;
    let Plan::Audio {
        frames: opus,
        narrowband: Some(narrowband),
        ..
    } = Plan::opus()
    else {
        unreachable!("an Opus plan")
    };
    // Decoding: a fullband frame, and a narrowband one (what a browser sends when the offer
    // asks for it, as the gateway's does for a peer bridged to G.711).
    let decode_cost = |opus: &[Arc<[u8]>], pcmu: &mut Vec<u8>| {
        let mut transcoder = Transcoder::new().unwrap();
        let started = Instant::now();
        for i in 0..frames {
            transcoder
                .opus_to_g711(&opus[i % opus.len()], G711::Pcmu, pcmu)
                .unwrap();
        }
        started.elapsed().as_secs_f64() / frames as f64
    };
    let mut pcmu = Vec::new();
    let decode_narrowband = decode_cost(&narrowband, &mut Vec::new());
    let decode = decode_cost(&opus, &mut pcmu);
    let mut transcoder = Transcoder::new().unwrap();
    let voice = pcmu.clone();
    let mut sent = 0usize;
    let started = Instant::now();
    for chunk in voice.chunks(160).cycle().take(frames) {
        transcoder
            .g711_to_opus(chunk, G711::Pcmu, |p| sent += p.len())
            .unwrap();
    }
    let encode = started.elapsed().as_secs_f64() / frames as f64;
    println!(
        "codec, per 20 ms frame: opus-rs decode 48k Opus -> PCMU {:.1} µs (narrowband Opus {:.1} µs), encode PCMU -> Opus {:.1} µs ({} B/frame) at complexity {}",
        decode * 1e6,
        decode_narrowband * 1e6,
        encode * 1e6,
        sent / frames,
        tandem::rtc::transcode::ENCODER_COMPLEXITY,
    );
    // The encoder's effort side by side: what each setting costs a bridged leg.
    let settings: Vec<String> = [0, 1, 2, 3, 5, 9]
        .into_iter()
        .map(|complexity| {
            let mut transcoder = Transcoder::with_complexity(complexity).unwrap();
            let mut sent = 0usize;
            let started = Instant::now();
            for chunk in voice.chunks(160).cycle().take(frames) {
                transcoder
                    .g711_to_opus(chunk, G711::Pcmu, |p| sent += p.len())
                    .unwrap();
            }
            let encode = started.elapsed().as_secs_f64() / frames as f64;
            format!("{complexity}: {:.1} µs {} B", encode * 1e6, sent / frames)
        })
        .collect();
    println!(
        "codec, opus-rs encode PCMU -> Opus per 20 ms frame by complexity: {}",
        settings.join(", ")
    );
    #[cfg(feature = "libopus")]
    libopus_cost(&opus, &voice, frames);
}

/// The same work as [`codec_cost`] with the C libopus (`audiopus`), for the side-by-side figure.
#[cfg(feature = "libopus")]
fn libopus_cost(opus: &[Arc<[u8]>], pcmu: &[u8], frames: usize) {
    use audiopus::coder::{Decoder, Encoder};
    use audiopus::packet::Packet;
    use audiopus::{Application, Channels, MutSignals, SampleRate};
    let mut decoder = Decoder::new(SampleRate::Hz8000, Channels::Mono).unwrap();
    let mut encoder = Encoder::new(SampleRate::Hz8000, Channels::Mono, Application::Voip).unwrap();
    encoder
        .set_bitrate(audiopus::Bitrate::BitsPerSecond(24_000))
        .unwrap();
    let (mut pcm, mut out) = (vec![0i16; 960], Vec::new());
    let started = Instant::now();
    for i in 0..frames {
        let packet = Packet::try_from(&opus[i % opus.len()][..]).unwrap();
        let n = decoder
            .decode(
                Some(packet),
                MutSignals::try_from(&mut pcm[..]).unwrap(),
                false,
            )
            .unwrap();
        tandem::media::g711::encode(G711::Pcmu, &pcm[..n], &mut out);
    }
    let decode = started.elapsed().as_secs_f64() / frames as f64;
    let (mut linear, mut buf, mut sent) = (Vec::new(), [0u8; 1500], 0usize);
    let started = Instant::now();
    for chunk in pcmu.chunks(160).cycle().take(frames) {
        linear.clear();
        tandem::media::g711::decode(G711::Pcmu, chunk, &mut linear);
        sent += encoder.encode(&linear, &mut buf).unwrap();
    }
    let encode = started.elapsed().as_secs_f64() / frames as f64;
    println!(
        "codec, per 20 ms frame: libopus decode 48k Opus -> PCMU {:.1} µs, encode PCMU -> Opus {:.1} µs ({} B/frame)",
        decode * 1e6,
        encode * 1e6,
        sent / frames
    );
}

fn codec_name(codec: Codec) -> &'static str {
    match codec {
        Codec::PCMU => "PCMU",
        _ => "Opus",
    }
}

struct Runtimes {
    tandem: Runtime,
    clients: Runtime,
}

struct Setup {
    p50: Duration,
    p99: Duration,
    max: Duration,
    cpu: Duration,
    failed: usize,
}

/// What one measured window saw.
struct Window {
    wall: Duration,
    tandem_cpu: Duration,
    client_cpu: Duration,
    echo_cpu: Duration,
    to_sip: u64,
    from_sip: u64,
    /// Audio packets (or video RTP datagrams) the clients received.
    heard: u64,
    queue_drops: u64,
    /// Datagrams the kernel dropped because the receive buffer of Tandem's shared socket, or
    /// of the SIP echo's socket, was full.
    tandem_socket_drops: u64,
    sip_socket_drops: u64,
    /// Legs that never connected.
    failed: usize,
}

impl Window {
    fn fraction(&self, cpu: Duration) -> f64 {
        cpu.as_secs_f64() / self.wall.as_secs_f64()
    }
    fn tandem_fraction(&self) -> f64 {
        self.fraction(self.tandem_cpu)
    }
    fn rate(&self, count: u64) -> f64 {
        count as f64 / self.wall.as_secs_f64()
    }
}

impl Runtimes {
    fn new() -> Runtimes {
        let runtime = |name: &str| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name(name)
                .enable_all()
                .build()
                .unwrap()
        };
        Runtimes {
            tandem: runtime("tandem-rtc"),
            clients: runtime("rtc-client"),
        }
    }

    /// Runs `f` as a task of Tandem's runtime, so its control calls are charged to Tandem.
    fn on_tandem<T: Send + 'static>(&self, f: impl Future<Output = T> + Send + 'static) -> T {
        self.tandem.block_on(self.tandem.spawn(f)).unwrap()
    }

    fn setup_time(&self, n: usize) -> Setup {
        let clients = self.clients.handle().clone();
        let stop = CancellationToken::new();
        let stats = Arc::new(ClientStats::default());
        let cpu0 = cpu_of("tandem-rtc");
        let (service, setup, failed) = {
            let (stop, stats) = (stop.clone(), stats.clone());
            self.on_tandem(async move {
                let (service, mut events) = RtcService::start(&service_config()).await.unwrap();
                let started = Arc::new(Mutex::new(HashMap::new()));
                for _ in 0..n {
                    let (service, started) = (service.clone(), started.clone());
                    let (clients, stop, stats) = (clients.clone(), stop.clone(), stats.clone());
                    tokio::spawn(async move {
                        let t0 = Instant::now();
                        let (peer, _) =
                            join(&service, &clients, AUDIO, Plan::pcmu(), stats, stop).await;
                        started.lock().unwrap().insert(peer, t0);
                    });
                }
                let (mut connected, mut failed) = (Vec::new(), 0);
                while connected.len() + failed < n {
                    match tokio::time::timeout(PATIENCE, events.recv()).await {
                        Ok(Some(RtcEvent::Connected { peer })) => {
                            connected.push((peer, Instant::now()))
                        }
                        Ok(Some(RtcEvent::Closed { .. })) => failed += 1,
                        Ok(Some(_)) => {}
                        _ => panic!("only {} of {n} peers connected", connected.len()),
                    }
                }
                assert!(!connected.is_empty(), "no peer connected");
                let started = started.lock().unwrap();
                let mut times: Vec<Duration> = connected
                    .iter()
                    .map(|(peer, at)| at.duration_since(started[peer]))
                    .collect();
                times.sort();
                (service, times, failed)
            })
        };
        let cpu = cpu_of("tandem-rtc") - cpu0;
        stop.cancel();
        self.on_tandem(async move { drop(service) });
        let pick = |q: f64| setup[((setup.len() - 1) as f64 * q).round() as usize];
        Setup {
            p50: pick(0.5),
            p99: pick(0.99),
            max: *setup.last().unwrap(),
            cpu: Duration::from_nanos(cpu),
            failed,
        }
    }

    fn bridged_audio(&self, n: usize, codec: Codec, seconds: f64) -> Window {
        let echo = Echo::start();
        let sip = echo.addr;
        // The gateway's path: the peer's bridge talks to a media-engine leg, bridged to the leg
        // facing the phone (here, the echo).
        let (engine, _events) = MediaEngine::start(MediaSettings::default()).unwrap();
        let engine = Arc::new(Mutex::new(engine));
        let plan = match codec {
            Codec::PCMU => Plan::pcmu(),
            _ => Plan::opus(),
        };
        let media = engine.clone();
        let window = self.run(
            seconds,
            Some(&echo),
            move |service, clients, stats, stop| {
                Box::pin(async move {
                    // Legs open a few at a time, as calls arrive; the setup run measures a crowd.
                    let opening = Arc::new(tokio::sync::Semaphore::new(OPENING_AT_ONCE));
                    let mut joins = Vec::new();
                    for _ in 0..n {
                        let (service, clients) = (service.clone(), clients.clone());
                        let (plan, stats, stop) = (plan.clone(), stats.clone(), stop.clone());
                        let (opening, media) = (opening.clone(), media.clone());
                        joins.push(tokio::spawn(async move {
                            let _turn = opening.acquire().await.unwrap();
                            let (peer, connected) =
                                join(&service, &clients, BRIDGED, plan, stats, stop).await;
                            let app = open_call(&media, sip);
                            let bridge = service
                                .bridge_rtp(
                                    peer,
                                    SocketAddr::from(([127, 0, 0, 1], app.0)),
                                    G711::Pcmu,
                                )
                                .await
                                .unwrap();
                            media.lock().unwrap().set_remote(app, Some(bridge));
                            let _ = tokio::time::timeout(PATIENCE, connected).await;
                        }));
                    }
                    for j in joins {
                        j.await.unwrap();
                    }
                    n
                })
            },
        );
        drop(engine);
        window
    }

    fn video(&self, seconds: f64) -> Window {
        self.run(seconds, None, |service, clients, stats, stop| {
            Box::pin(async move {
                let (a, _) = join(
                    &service,
                    &clients,
                    VIDEO,
                    Plan::vp8(),
                    stats.clone(),
                    stop.clone(),
                )
                .await;
                let (b, _) = join(&service, &clients, VIDEO, Plan::Listen, stats, stop).await;
                service.connect(a, b).await.unwrap();
                2
            })
        })
    }

    /// Starts a service, opens legs with `open` (which returns how many peers will connect),
    /// waits for them all to connect and for a second of warm-up, then measures.
    fn run(
        &self,
        seconds: f64,
        echo: Option<&Echo>,
        open: impl FnOnce(
            RtcService,
            tokio::runtime::Handle,
            Arc<ClientStats>,
            CancellationToken,
        ) -> std::pin::Pin<Box<dyn Future<Output = usize> + Send>>
        + Send
        + 'static,
    ) -> Window {
        let clients = self.clients.handle().clone();
        let stop = CancellationToken::new();
        let stats = Arc::new(ClientStats::default());
        let service = {
            let (stop, stats) = (stop.clone(), stats.clone());
            self.on_tandem(async move {
                let (service, mut events) = RtcService::start(&service_config()).await.unwrap();
                let n = open(service.clone(), clients, stats, stop.clone()).await;
                let (mut connected, mut failed) = (0, 0);
                while connected + failed < n {
                    match tokio::time::timeout(PATIENCE, events.recv()).await {
                        Ok(Some(RtcEvent::Connected { .. })) => connected += 1,
                        // On a loaded machine a handshake can lose every retry; it is reported.
                        Ok(Some(RtcEvent::Closed { .. })) => failed += 1,
                        Ok(Some(_)) => {}
                        _ => panic!("only {connected} of {n} peers connected"),
                    }
                }
                assert!(connected > 0, "no peer connected");
                // Keep draining, so that no peer ever waits on a full event queue.
                tokio::spawn(async move {
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        _ = async { while events.recv().await.is_some() {} } => {}
                    }
                });
                (service, failed)
            })
        };
        let (service, failed) = service;
        std::thread::sleep(Duration::from_secs(1));
        let echo_cpu = || echo.map_or(0, |e| cpu_of_tid(e.tid));
        let sample = || {
            let c = service.counters();
            (
                Instant::now(),
                cpu_of("tandem-"),
                cpu_of("rtc-client"),
                echo_cpu(),
                c.rtp_bridge_out,
                c.rtp_bridge_in,
                stats.audio_in.load(Ordering::Relaxed) + stats.video_in.load(Ordering::Relaxed),
                c.dropped_queue_full,
                socket_drops(service.local_addr().port()),
                echo.map_or(0, |e| socket_drops(e.addr.port())),
            )
        };
        let s0 = sample();
        std::thread::sleep(Duration::from_secs_f64(seconds));
        let s1 = sample();
        stop.cancel();
        self.on_tandem(async move { drop(service) });
        let ns = |a: u64, b: u64| Duration::from_nanos(b - a);
        Window {
            wall: s1.0 - s0.0,
            tandem_cpu: ns(s0.1, s1.1),
            client_cpu: ns(s0.2, s1.2),
            echo_cpu: ns(s0.3, s1.3),
            to_sip: s1.4 - s0.4,
            from_sip: s1.5 - s0.5,
            heard: s1.6 - s0.6,
            queue_drops: s1.7 - s0.7,
            tandem_socket_drops: s1.8 - s0.8,
            sip_socket_drops: s1.9 - s0.9,
            failed,
        }
    }
}

/// Opens a call in the media engine: a leg for the peer's bridge (returned), bridged to a leg
/// whose peer is the phone at `phone`.
fn open_call(engine: &Mutex<MediaEngine>, phone: SocketAddr) -> LegPort {
    static NEXT_PORT: AtomicU16 = AtomicU16::new(30_000);
    let mut engine = engine.lock().unwrap();
    let mut open = |peer: Option<SocketAddr>, learning| loop {
        let port = NEXT_PORT.fetch_add(2, Ordering::Relaxed);
        assert!(port < 60_000, "no media ports left");
        if let Ok(leg) = engine.open(port, peer, learning) {
            return leg;
        }
    };
    let app = open(None, Learning::Nat);
    let phone = open(Some(phone), Learning::Strict);
    engine.bridge(app, phone, Forwarding::default(), Forwarding::default());
    app
}

fn service_config() -> config::RtcConfig {
    config::RtcConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        max_peers: 2000,
        ..Default::default()
    }
}

/// Creates a peer, has a client on the clients' runtime answer it, and applies the answer;
/// the receiver tells when the client is connected.
async fn join(
    service: &RtcService,
    clients: &tokio::runtime::Handle,
    spec: MediaSpec,
    plan: Plan,
    stats: Arc<ClientStats>,
    stop: CancellationToken,
) -> (PeerId, oneshot::Receiver<()>) {
    let (peer, offer) = service.create_peer(spec).await.unwrap();
    let (answer_tx, answer) = oneshot::channel();
    let (connected_tx, connected) = oneshot::channel();
    clients.spawn(client(offer, answer_tx, connected_tx, plan, stats, stop));
    let answer = tokio::time::timeout(PATIENCE, answer)
        .await
        .expect("an answer")
        .unwrap();
    service.accept_answer(peer, answer).await.unwrap();
    (peer, connected)
}

/// The SIP side: one plain UDP socket that sends every RTP packet back where it came from.
struct Echo {
    addr: SocketAddr,
    tid: u64,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Echo {
    fn start() -> Echo {
        // A media engine's sockets get large buffers; so does this stand-in for one.
        let socket = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )
        .unwrap();
        let _ = socket.set_recv_buffer_size(4 << 20);
        socket
            .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        let socket = std::net::UdpSocket::from(socket);
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("sip-echo".into())
                .spawn(move || {
                    tid_tx.send(gettid()).unwrap();
                    let mut buf = [0u8; 2048];
                    while !stop.load(Ordering::Relaxed) {
                        if let Ok((n, from)) = socket.recv_from(&mut buf) {
                            let _ = socket.send_to(&buf[..n], from);
                        }
                    }
                })
                .unwrap()
        };
        Echo {
            addr,
            tid: tid_rx.recv().unwrap(),
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Time on CPU, in ns, of this process's threads whose name starts with `prefix`.
fn cpu_of(prefix: &str) -> u64 {
    threads()
        .filter(|(_, comm)| comm.starts_with(prefix))
        .map(|(tid, _)| cpu_of_tid(tid))
        .sum()
}

fn threads() -> impl Iterator<Item = (u64, String)> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter_map(|task| {
            let tid = task.file_name().to_string_lossy().parse().ok()?;
            let comm = std::fs::read_to_string(task.path().join("comm")).ok()?;
            Some((tid, comm.trim().to_string()))
        })
}

fn cpu_of_tid(tid: u64) -> u64 {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Datagrams dropped so far at the loopback UDP socket bound to `port` (`/proc/net/udp`).
fn socket_drops(port: u16) -> u64 {
    let table = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    let local = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .find(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|a| a.ends_with(&local))
        })
        .and_then(|l| l.split_whitespace().last()?.parse().ok())
        .unwrap_or(0)
}

fn gettid() -> u64 {
    std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| p.file_name()?.to_str()?.parse().ok())
        .expect("thread id")
}
