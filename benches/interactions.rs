//! Many interactions at once, each a chat with a bridged call carrying RTP both ways and chat
//! messages flowing both ways: what the gateway costs in CPU and memory, and how fast a chat
//! message crosses it while it carries that load.
//!
//! The gateway is the real `tandem` binary (`tandem run --config <generated>`) in its own
//! process, so its CPU (`utime + stime` of `/proc/PID/stat`) and memory (`VmRSS`, and `VmHWM`
//! for the peak, of `/proc/PID/status`) are its own and nobody else's. Everything else runs in
//! this process or in SIPp, on loopback:
//! - Agents (one per ten interactions, round robin) log in over the agent API and hold
//!   `/agent/v1/ws`; customers open chats with `POST /clientweb/api/v1/chats`, each from its own
//!   device and phone number, and hold the chat's WebSocket.
//! - Each agent accepts its offers, then places a click-to-call (`call_customer`): the gateway
//!   dials the customer's number through the service's trunk, where one SIPp answers every call
//!   (`benches/interactions_phone.xml`); its SDP names an RTP echo this process runs
//!   ([`Echo`]). The agent's browser leg is a str0m client (full ICE, DTLS client,
//!   `support/str0m_client.rs`) that answers the gateway's offer on the agent socket and sends
//!   PCMU at 50 packets/s; what it hears is its own audio back through the gateway, the
//!   phone's echo and the gateway again, so a leg that hears anything carried RTP both ways.
//!   Calls are set up a few at a time, as they would arrive, not all in the same instant.
//! - Once every call is up and a warm-up has passed, a measured window: every customer and
//!   every agent writes one chat message a second into each interaction (at random phases), and
//!   the gateway's CPU and memory are sampled. A message's latency is from just before its
//!   sender's socket write to its arrival on the other side's socket (customer → agent socket,
//!   agent → customer's chat socket); both clocks are this process's.
//! - Then every call is released and every session ended by its agent, SIPp must have seen
//!   every call complete, and `/metrics` must return to idle: no SIP call, media leg, WebRTC
//!   peer, app call or open interaction left.
//!
//! A failed call is one that never came up, ended by itself, or whose agent heard no RTP during
//! the window; the bench exits non-zero if any call failed, any message was lost, SIPp saw a
//! failure or anything leaked.
//!
//! Choices: fifty agents holding ten interactions each (round robin, capacity to spare) rather
//! than five hundred, since what is measured is the gateway's per-interaction cost, not the
//! desks; every agent logs in at once, as a shift starts, which is itself a load worth seeing
//! (each login is an argon2 check of 19 MiB); the phone answers PCMU, so each call is the
//! plain SIP ↔ WebRTC bridge (the `webrtc` bench measures transcoding).
//!
//! The machine is small and shared: the clients and the echo (this process) and SIPp use CPU
//! beside the gateway; the run prints their share and the load average so the numbers can be
//! read as the ranges they are. Recording is off (it would measure the disk).
//!
//! `cargo bench --bench interactions` runs 500 interactions with a 20 s window; a number after
//! the flags (`-- 200`) changes the count. Without `--bench` (as under `cargo test
//! --all-targets`) it runs 5 interactions for 3 s as a smoke test, with the same checks.

#[path = "support/agent_socket.rs"]
mod agent_socket;
#[path = "support/processes.rs"]
mod processes;
#[path = "support/str0m_client.rs"]
mod str0m_client;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use processes::{
    Gateway, Sipp, cpu_seconds, free_port, free_udp_run, load_average, machine_cpu, status_mib,
};
use serde_json::{Value, json};
use str0m_client::{ClientStats, Plan, client};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_util::sync::CancellationToken;

/// Interactions one agent holds; the capacity settings below leave room for more.
const PER_AGENT: usize = 10;
/// Calls being set up (or released) at once.
const AT_ONCE: usize = 20;
/// Chats being opened at once.
const OPENING_AT_ONCE: usize = 50;
/// The bound on any one step (an answer, a call coming up, a release).
const STEP: Duration = Duration::from_secs(60);
/// Calls run this long after they are all up before the window starts.
const WARM_UP: Duration = Duration::from_secs(2);
const PASSWORD: &str = "desk";

struct Size {
    interactions: usize,
    window: Duration,
}

/// The customers' phones' audio: every packet that reaches `port` (RTP) or the port after it
/// (RTCP) goes back to where it came from, from a thread of its own each, until dropped.
///
/// Not SIPp's own echo (`-rtp_echo`): that is one socket for every call with the system's
/// default buffer, which overflowed under the gateway's bursts, so the phones lost 1–7 % of
/// the audio the gateway had carried.
struct Echo {
    port: u16,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Echo {
    fn start(port: u16) -> Echo {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = [port, port + 1]
            .into_iter()
            .map(|port| {
                let socket = socket2::Socket::new(
                    socket2::Domain::IPV4,
                    socket2::Type::DGRAM,
                    Some(socket2::Protocol::UDP),
                )
                .unwrap();
                socket.set_recv_buffer_size(4 << 20).unwrap();
                socket.set_send_buffer_size(4 << 20).unwrap();
                let addr: SocketAddr = ([127, 0, 0, 1], port).into();
                socket
                    .bind(&addr.into())
                    .unwrap_or_else(|e| panic!("the phones' echo cannot bind {addr}: {e}"));
                let socket = std::net::UdpSocket::from(socket);
                // Wakes now and then to see whether the bench is done.
                socket
                    .set_read_timeout(Some(Duration::from_millis(200)))
                    .unwrap();
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 2048];
                    while !stop.load(Ordering::Relaxed) {
                        if let Ok((n, from)) = socket.recv_from(&mut buf) {
                            let _ = socket.send_to(&buf[..n], from);
                        }
                    }
                })
            })
            .collect();
        Echo {
            port,
            stop,
            threads,
        }
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let count = std::env::args()
        .skip(1)
        .find_map(|a| a.parse::<usize>().ok());
    let size = if full {
        Size {
            interactions: count.unwrap_or(500),
            window: Duration::from_secs(20),
        }
    } else {
        Size {
            interactions: count.unwrap_or(5),
            window: Duration::from_secs(3),
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let failures = runtime.block_on(run(size));
    runtime.shutdown_timeout(Duration::from_secs(5));
    if !failures.is_empty() {
        eprintln!("FAILED: {}", failures.join("; "));
        std::process::exit(1);
    }
}

/// Nanoseconds since the bench started: the timestamp a chat message carries.
fn now_ns() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// A message's latency from the timestamp in its text (`c|<ns>|…` or `a|<ns>|…`).
fn latency_of(msg: &str, from: &str) -> Option<Duration> {
    let mut parts = msg.split('|');
    (parts.next()? == from).then_some(())?;
    let sent: u64 = parts.next()?.parse().ok()?;
    Some(Duration::from_nanos(now_ns().saturating_sub(sent)))
}

/// Where one interaction's call is.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Call {
    Idle,
    Up,
    Released,
}

/// One interaction as both sides see it.
struct Interaction {
    chat: String,
    connected: watch::Sender<bool>,
    call: watch::Sender<Call>,
    /// The release reason, when the call ended.
    released: Mutex<Option<String>>,
    ended: watch::Sender<bool>,
    /// What the agent's browser leg sent and heard.
    media: Arc<ClientStats>,
    /// Whether the browser leg's ICE and DTLS came up.
    browser_connected: AtomicBool,
    /// Stops the browser leg.
    stop: CancellationToken,
}

/// What every socket reader shares: interactions by chat id, latencies, problems.
#[derive(Default)]
struct Shared {
    chats: Mutex<HashMap<String, Arc<Interaction>>>,
    /// The agent whose accept of each chat was acknowledged (possibly before the customer's
    /// `POST` returned).
    owners: Mutex<HashMap<String, usize>>,
    to_agent: Mutex<Vec<Duration>>,
    to_customer: Mutex<Vec<Duration>>,
    /// Error events and anything else unexpected, as text.
    problems: Mutex<Vec<String>>,
    /// Whether the window is on: messages are counted only then.
    measuring: AtomicBool,
    sent_to_agent: AtomicU64,
    sent_to_customer: AtomicU64,
}

impl Shared {
    fn chat(&self, chat: &str) -> Option<Arc<Interaction>> {
        self.chats.lock().unwrap().get(chat).cloned()
    }

    fn owner(&self, chat: &str) -> Option<usize> {
        self.owners.lock().unwrap().get(chat).copied()
    }

    fn problem(&self, what: String) {
        self.problems.lock().unwrap().push(what);
    }
}

fn config(agents: usize, interactions: usize, phone: u16, rtp_min: u16, rtp_max: u16) -> String {
    let hash = tandem::routing::password::hash(PASSWORD);
    let mut text = format!(
        r#"
[media]
rtp_port_min = {rtp_min}
rtp_port_max = {rtp_max}

[chat]
# Every customer opens its chat from this one address.
creates_per_minute_per_source = 1000000
creates_burst_per_source = 1000000

[routing]
chat_load_percent = 10
call_load_percent = 10
max_wait_s = 600

[[sip.trunks]]
name = "carrier"
addresses = ["127.0.0.1:{phone}"]

[[services]]
name = "claims"
entries = ["claims-app"]
department = "claims"
routing = "round_robin"
trunk = "carrier"
caller_id = "+15550100"
recording = false
video_allowed = false
"#
    );
    // A chat and its call take 20 % of an agent's 1000 %: room for 50, five times PER_AGENT.
    for a in 0..agents {
        text.push_str(&format!(
            "\n[[agents]]\nname = \"agent-{a}\"\npassword_hash = \"{hash}\"\n\
             departments = [\"claims\"]\ncapacity_percent = 1000\n"
        ));
    }
    let _ = interactions;
    text
}

async fn run(size: Size) -> Vec<String> {
    let n = size.interactions;
    let agents = n.div_ceil(PER_AGENT);
    let mut failures = Vec::new();
    now_ns();
    println!(
        "{n} interactions, {agents} agents, window {} s; load average before: {}",
        size.window.as_secs(),
        load_average()
    );

    // Two UDP ports (RTP, RTCP) for each of a call's two media legs, the trunk's and the one
    // the browser leg is bridged to; SIPp's media port and its neighbours after them, then the
    // bench's echo (RTP, RTCP).
    let ports = (4 * n + 64) as u16;
    let rtp_min = free_udp_run(ports + 6);
    let rtp_max = rtp_min + ports - 1;
    let media_port = rtp_max + 1;
    let phone_port = free_port();
    let limits = format!("max_calls = {}", 2 * n + 100);
    let mut gateway = Gateway::start(
        &limits,
        &format!("max_websockets = {}", 2 * (n + agents) + 100),
        &format!("max_peers = {}", n + 100),
        &config(agents, n, phone_port, rtp_min, rtp_max),
    );
    let bound = STEP * 4 + size.window * 2;
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/interactions_phone.xml");
    let echo = Echo::start(media_port + 4);
    let sipp = Sipp::answer(&scenario, phone_port, media_port, echo.port, n, bound);
    let pid = gateway.pid().to_string();
    let http = reqwest::Client::new();
    gateway.ready(&http).await;
    let idle_rss = status_mib(&pid, "VmRSS");

    let shared = Arc::new(Shared::default());
    let clients_stop = CancellationToken::new();
    let setup = Instant::now();
    let mut desks = Vec::new();
    for a in 0..agents {
        desks.push(Agent::login(
            &http,
            gateway.http,
            a,
            shared.clone(),
            clients_stop.clone(),
        ));
    }
    let desks: Vec<Agent> = futures_util::future::join_all(desks).await;
    let desks = Arc::new(desks);
    let logins = setup.elapsed();
    let logged_in_rss = status_mib(&pid, "VmRSS");

    // Customers open their chats; agents accept them as they are offered.
    let opening = Arc::new(Semaphore::new(OPENING_AT_ONCE));
    let mut opened = Vec::new();
    for i in 0..n {
        let (http, shared, opening) = (http.clone(), shared.clone(), opening.clone());
        let addr = gateway.http;
        opened.push(tokio::spawn(async move {
            let _turn = opening.acquire().await.unwrap();
            Customer::open(&http, addr, i, shared).await
        }));
    }
    let mut customers = Vec::new();
    for o in opened {
        customers.push(o.await.unwrap());
    }
    let all: Vec<Arc<Interaction>> = customers.iter().map(|c| c.interaction.clone()).collect();
    // Connected for the customer, and the accept acknowledged to the agent: the two sockets
    // tell in either order.
    let mut not_connected = 0;
    for i in &all {
        let mut connected = i.connected.subscribe();
        let both = async {
            let _ = connected.wait_for(|c| *c).await;
            while shared.owner(&i.chat).is_none() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        if tokio::time::timeout(STEP, both).await.is_err() {
            not_connected += 1;
        }
    }
    let chats_up = setup.elapsed();
    let chats_rss = status_mib(&pid, "VmRSS");

    // Calls, a few at a time.
    let calls_start = Instant::now();
    let turns = Arc::new(Semaphore::new(AT_ONCE));
    let mut placing = Vec::new();
    for i in &all {
        let (i, desks, turns) = (i.clone(), desks.clone(), turns.clone());
        let shared = shared.clone();
        placing.push(tokio::spawn(async move {
            let _turn = turns.acquire().await.unwrap();
            let Some(agent) = shared.owner(&i.chat) else {
                return false;
            };
            desks[agent].command(json!({"command": "call_customer", "chat_id": i.chat}));
            let mut call = i.call.subscribe();
            matches!(
                tokio::time::timeout(STEP, call.wait_for(|c| *c != Call::Idle)).await,
                Ok(Ok(c)) if *c == Call::Up
            )
        }));
    }
    let mut came_up = Vec::new();
    for p in placing {
        came_up.push(p.await.unwrap());
    }
    let up = came_up.iter().filter(|u| **u).count();
    for (i, _) in all.iter().zip(&came_up).filter(|(_, up)| !**up).take(5) {
        println!(
            "  call not up: chat {} in state {:?} ({:?}), browser leg connected: {}",
            i.chat,
            *i.call.borrow(),
            i.released.lock().unwrap(),
            i.browser_connected.load(Ordering::Relaxed),
        );
    }
    let calls_up = calls_start.elapsed();
    println!(
        "setup: {agents} agent logins {:.1} s; {n} chats accepted after {:.1} s ({not_connected} not); \
         {up} of {n} calls up in {:.1} s ({:.0} calls/s, {AT_ONCE} at a time)",
        logins.as_secs_f64(),
        chats_up.as_secs_f64(),
        calls_up.as_secs_f64(),
        up as f64 / calls_up.as_secs_f64(),
    );

    // The measured window.
    tokio::time::sleep(WARM_UP).await;
    let heard0: Vec<u64> = all
        .iter()
        .map(|i| i.media.audio_in.load(Ordering::Relaxed))
        .collect();
    let sent0: u64 = all
        .iter()
        .map(|i| i.media.audio_out.load(Ordering::Relaxed))
        .sum();
    let window_stop = CancellationToken::new();
    shared.measuring.store(true, Ordering::Relaxed);
    let mut talkers = Vec::new();
    for c in customers.iter() {
        let (i, desks, shared) = (c.interaction.clone(), desks.clone(), shared.clone());
        let (to_gateway, stop) = (c.tx.clone(), window_stop.clone());
        talkers.push(tokio::spawn(talk(i, to_gateway, desks, shared, stop)));
    }
    let machine0 = machine_cpu();
    let (t0, cpu0, self0, sipp0) = (
        Instant::now(),
        cpu_seconds(&pid),
        cpu_seconds("self"),
        cpu_seconds(&sipp.pid().to_string()),
    );
    let mut rss = Vec::new();
    while t0.elapsed() < size.window {
        tokio::time::sleep(Duration::from_millis(250)).await;
        rss.push(status_mib(&pid, "VmRSS"));
    }
    let wall = t0.elapsed().as_secs_f64();
    let cores = (cpu_seconds(&pid) - cpu0) / wall;
    let client_cores = (cpu_seconds("self") - self0) / wall;
    let sipp_cores = (cpu_seconds(&sipp.pid().to_string()) - sipp0) / wall;
    let load = load_average();
    let machine1 = machine_cpu();
    let machine_cores = (machine1.0 - machine0.0) / wall;
    let machine_idle = (machine1.1 - machine0.1 - (machine1.0 - machine0.0)) / wall;
    window_stop.cancel();
    for t in talkers {
        let _ = t.await;
    }
    let heard: Vec<u64> = all
        .iter()
        .zip(&heard0)
        .map(|(i, h0)| i.media.audio_in.load(Ordering::Relaxed) - h0)
        .collect();
    let sent: u64 = all
        .iter()
        .map(|i| i.media.audio_out.load(Ordering::Relaxed))
        .sum::<u64>()
        - sent0;
    // The last messages of the window may still be on their way.
    let expected = |s: &Shared| {
        (
            s.sent_to_agent.load(Ordering::Relaxed),
            s.sent_to_customer.load(Ordering::Relaxed),
        )
    };
    for _ in 0..100 {
        let (a, c) = expected(&shared);
        if shared.to_agent.lock().unwrap().len() as u64 >= a
            && shared.to_customer.lock().unwrap().len() as u64 >= c
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shared.measuring.store(false, Ordering::Relaxed);
    let peak_rss = status_mib(&pid, "VmHWM");
    let steady_rss = rss.iter().sum::<f64>() / rss.len().max(1) as f64;
    let window_peak = rss.iter().copied().fold(0.0, f64::max);

    // Failed calls: never up, or up and then ended by themselves or silent in the window.
    let dropped: Vec<bool> = all
        .iter()
        .zip(&came_up)
        .map(|(i, up)| *up && *i.call.borrow() == Call::Released)
        .collect();
    let silent: Vec<bool> = heard
        .iter()
        .zip(&came_up)
        .map(|(h, up)| *up && *h == 0)
        .collect();
    let failed = (0..n)
        .filter(|k| !came_up[*k] || dropped[*k] || silent[*k])
        .count();
    let (dropped, silent) = (
        dropped.iter().filter(|d| **d).count(),
        silent.iter().filter(|s| **s).count(),
    );
    let heard_total: u64 = heard.iter().sum();

    let (sent_a, sent_c) = expected(&shared);
    let mut to_agent = std::mem::take(&mut *shared.to_agent.lock().unwrap());
    let mut to_customer = std::mem::take(&mut *shared.to_customer.lock().unwrap());
    let lost = (sent_a + sent_c).saturating_sub((to_agent.len() + to_customer.len()) as u64);

    println!(
        "tandem CPU: {:.2} cores ({:.2} ms CPU per second per interaction) | RSS: idle {idle_rss:.0} MiB, \
         {logged_in_rss:.0} MiB after the logins, {chats_rss:.0} MiB with the chats, {steady_rss:.0} MiB \
         with the calls in the window (at most {window_peak:.0} MiB; {:.0} KiB per interaction over the \
         logins), peak of the whole run (VmHWM) {peak_rss:.0} MiB",
        cores,
        cores * 1e3 / n as f64,
        (steady_rss - logged_in_rss) * 1024.0 / n as f64,
    );
    println!(
        "chat latency customer → agent: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} messages) | \
         agent → customer: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} messages) | lost {lost}",
        pct(&mut to_agent, 0.50),
        pct(&mut to_agent, 0.99),
        pct(&mut to_agent, 1.0),
        to_agent.len(),
        pct(&mut to_customer, 0.50),
        pct(&mut to_customer, 0.99),
        pct(&mut to_customer, 1.0),
        to_customer.len(),
    );
    println!(
        "RTP: browser legs sent {:.0}/s and heard back {:.0}/s ({:.1}% of what they sent; each \
         packet crosses the gateway twice each way) | failed calls: {failed} ({} not up, {dropped} \
         ended by themselves, {silent} silent in the window)",
        sent as f64 / wall,
        heard_total as f64 / wall,
        heard_total as f64 * 100.0 / sent.max(1) as f64,
        n - up,
    );
    println!(
        "beside the gateway: clients and the phones' echo (this process) {client_cores:.2} cores, SIPp {sipp_cores:.2} cores; \
         the whole machine {machine_cores:.2} cores busy, {machine_idle:.2} idle; load average at the \
         window's end: {load}"
    );
    if failed > 0 {
        failures.push(format!("{failed} failed calls"));
    }
    if lost > 0 {
        failures.push(format!("{lost} chat messages lost"));
    }

    // Release every call, then end every session, a few at a time.
    let mut releasing = Vec::new();
    for i in &all {
        let (i, desks, turns) = (i.clone(), desks.clone(), turns.clone());
        let shared = shared.clone();
        releasing.push(tokio::spawn(async move {
            let _turn = turns.acquire().await.unwrap();
            let Some(agent) = shared.owner(&i.chat) else {
                return;
            };
            if *i.call.borrow() == Call::Up {
                desks[agent].command(json!({"command": "release_call", "chat_id": i.chat}));
                let mut call = i.call.subscribe();
                let _ = tokio::time::timeout(STEP, call.wait_for(|c| *c == Call::Released)).await;
            }
            i.stop.cancel();
            desks[agent].command(json!({"command": "end_session", "chat_id": i.chat}));
            let mut ended = i.ended.subscribe();
            let _ = tokio::time::timeout(STEP, ended.wait_for(|e| *e)).await;
        }));
    }
    for r in releasing {
        r.await.unwrap();
    }
    let not_ended = all.iter().filter(|i| !*i.ended.borrow()).count();
    if not_ended > 0 {
        failures.push(format!("{not_ended} sessions did not end"));
    }
    let phone = sipp.finish(STEP).await;
    if (phone.exit_code, phone.successful, phone.failed) != (Some(0), n as u64, 0) {
        failures.push(format!("the phones (SIPp) saw {phone:?}"));
    }
    // The gateway publishes some gauges once a second.
    let mut left = Vec::new();
    for _ in 0..100 {
        left.clear();
        for gauge in [
            "tandem_sip_calls",
            "tandem_media_legs",
            "tandem_webrtc_peers",
            "tandem_app_calls",
            "tandem_open_interactions",
        ] {
            let value = gateway.gauge(&http, gauge).await;
            if value != Some(0.0) {
                left.push(format!("{gauge} {value:?}"));
            }
        }
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !left.is_empty() {
        failures.push(format!("not idle after the run: {}", left.join(", ")));
    }
    let legs = gateway.closed_legs();
    let deaf = legs.iter().filter(|(i, o)| *i == 0 || *o == 0).count();
    let handed = |outcome: &str| format!("tandem_media_handed_over{{outcome=\"{outcome}\"}}");
    let handed_over = gateway
        .gauge(&http, &handed("delivered"))
        .await
        .unwrap_or(0.0);
    let refused = gateway
        .gauge(&http, &handed("refused"))
        .await
        .unwrap_or(0.0);
    println!(
        "after: phones {} calls ok, {} failed, {} retransmissions; gateway closed {} media legs, \
         {deaf} of them without packets both ways; idle: {}; RTP handed between the gateway's \
         own sockets in memory: {handed_over:.0} ({refused:.0} refused by a full queue)",
        phone.successful,
        phone.failed,
        phone.retransmissions,
        legs.len(),
        if left.is_empty() { "yes" } else { "no" },
    );
    if up > 0 && handed_over == 0.0 {
        failures.push(
            "the browsers' RTP crossed the kernel between the gateway's own sockets".to_string(),
        );
    }
    // Each call that came up closes two legs with packets both ways; the others may not.
    if legs.len() < 2 * up || deaf > 2 * (n - up) {
        failures.push(format!(
            "{} media legs closed for {up} calls, {deaf} without packets both ways",
            legs.len()
        ));
    }
    let problems = shared.problems.lock().unwrap();
    if !problems.is_empty() {
        println!(
            "{} unexpected events, the first: {}",
            problems.len(),
            problems[0]
        );
        failures.push(format!("{} unexpected events", problems.len()));
    }
    clients_stop.cancel();
    if !failures.is_empty() {
        let log = gateway.log_text();
        let warnings: Vec<&str> = log
            .lines()
            .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
            .collect();
        eprintln!(
            "gateway log: {} warnings and errors, the last ones:\n{}",
            warnings.len(),
            warnings[warnings.len().saturating_sub(20)..].join("\n")
        );
    }
    failures
}

fn pct(samples: &mut [Duration], p: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    samples.sort();
    let at = ((samples.len() - 1) as f64 * p).round() as usize;
    samples[at].as_secs_f64() * 1e3
}

/// One interaction's chat during the window: the customer and the agent each write a message
/// a second, half a second apart, starting at a random phase.
async fn talk(
    i: Arc<Interaction>,
    customer: mpsc::UnboundedSender<String>,
    desks: Arc<Vec<Agent>>,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    let Some(agent) = shared.owner(&i.chat) else {
        return;
    };
    let phase = Duration::from_secs_f64(rand::random::<f64>());
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + phase,
        Duration::from_millis(500),
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for n in 0u64.. {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if n % 2 == 0 {
            let msg = format!("c|{}|{n}", now_ns());
            let event = json!({"events": [{"event": "chat_session_message", "msg": msg}]});
            if customer.send(event.to_string()).is_ok() {
                shared.sent_to_agent.fetch_add(1, Ordering::Relaxed);
            }
        } else {
            let msg = format!("a|{}|{n}", now_ns());
            desks[agent].command(json!({"command": "send_message", "chat_id": i.chat, "msg": msg}));
            shared.sent_to_customer.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// An agent's desktop: the agent socket, written through a queue and read by a task that
/// accepts offers, answers the gateway's WebRTC offers with str0m clients and keeps each
/// interaction's call state.
struct Agent {
    tx: mpsc::UnboundedSender<String>,
}

impl Agent {
    async fn login(
        http: &reqwest::Client,
        addr: SocketAddr,
        index: usize,
        shared: Arc<Shared>,
        stop: CancellationToken,
    ) -> Agent {
        let ws = agent_socket::open(http, addr, &format!("agent-{index}"), PASSWORD).await;
        let (mut sink, mut stream) = ws.split();
        let ready = json!({"command": "set_state", "state": "available", "ref": "ready"});
        sink.send(Message::Text(ready.to_string().into()))
            .await
            .unwrap();
        loop {
            let frame = tokio::time::timeout(STEP, stream.next())
                .await
                .expect("the agent socket answers")
                .expect("the agent socket stays open")
                .unwrap();
            let Message::Text(text) = frame else { continue };
            let v: Value = serde_json::from_str(&text).unwrap();
            if v["ref"] == "ready" {
                assert_eq!(v["event"], "ack", "{v}");
                break;
            }
        }
        let (tx, mut queue) = mpsc::unbounded_channel::<String>();
        tokio::spawn(async move {
            while let Some(text) = queue.recv().await {
                if sink.send(Message::Text(text.into())).await.is_err() {
                    break;
                }
            }
        });
        let agent = Agent { tx };
        let me = agent.tx.clone();
        tokio::spawn(async move {
            loop {
                let frame = tokio::select! {
                    _ = stop.cancelled() => return,
                    frame = stream.next() => frame,
                };
                let Some(Ok(frame)) = frame else { return };
                let Message::Text(text) = frame else { continue };
                let Ok(v) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                on_agent_event(index, &v, &me, &shared);
            }
        });
        agent
    }

    /// Queues a command; its answer is checked by the reader (errors are problems).
    fn command(&self, command: Value) {
        let _ = self.tx.send(command.to_string());
    }
}

fn on_agent_event(
    index: usize,
    v: &Value,
    me: &mpsc::UnboundedSender<String>,
    shared: &Arc<Shared>,
) {
    let chat = v["chat_id"].as_str().unwrap_or_default();
    match v["event"].as_str().unwrap_or_default() {
        "offer" => {
            let accept = json!({"command": "accept", "chat_id": chat, "ref": ["accept", chat]});
            let _ = me.send(accept.to_string());
        }
        "ack" if v["ref"][0] == "accept" => {
            if let Some(chat) = v["ref"][1].as_str() {
                shared
                    .owners
                    .lock()
                    .unwrap()
                    .insert(chat.to_string(), index);
            }
        }
        "webrtc_signaling" if v["data"]["type"] == "OFFER_CALL" => {
            let Some(i) = shared.chat(chat) else { return };
            let offer = v["data"]["sdp"].as_str().unwrap_or_default().to_string();
            let (me, shared) = (me.clone(), shared.clone());
            tokio::spawn(answer_call(i, offer, me, shared));
        }
        "call_state" => {
            let Some(i) = shared.chat(chat) else { return };
            match v["state"].as_str() {
                Some("up") => {
                    i.call.send_replace(Call::Up);
                }
                Some("released") => {
                    *i.released.lock().unwrap() = v["reason"].as_str().map(str::to_string);
                    i.call.send_replace(Call::Released);
                }
                _ => {}
            }
        }
        "message" if shared.measuring.load(Ordering::Relaxed) => {
            if let Some(latency) = v["msg"].as_str().and_then(|m| latency_of(m, "c")) {
                shared.to_agent.lock().unwrap().push(latency);
            }
        }
        "error" | "resync" => shared.problem(format!("agent-{index}: {v}")),
        _ => {}
    }
}

/// The agent's browser leg: a str0m client answers the gateway's offer, and the answer goes
/// back on the agent socket.
async fn answer_call(
    i: Arc<Interaction>,
    offer: String,
    me: mpsc::UnboundedSender<String>,
    shared: Arc<Shared>,
) {
    let (answer_tx, answer) = oneshot::channel();
    let (connected, on_connected) = oneshot::channel();
    tokio::spawn(client(
        offer,
        answer_tx,
        connected,
        Plan::pcmu(),
        i.media.clone(),
        i.stop.clone(),
    ));
    let leg = i.clone();
    tokio::spawn(async move {
        if on_connected.await.is_ok() {
            leg.browser_connected.store(true, Ordering::Relaxed);
        }
    });
    match tokio::time::timeout(STEP, answer).await {
        Ok(Ok(sdp)) => {
            let command = json!({"command": "webrtc_signaling", "chat_id": i.chat,
                                 "data": {"type": "ANSWER_CALL", "sdp": sdp}, "ref": "answer"});
            let _ = me.send(command.to_string());
        }
        _ => shared.problem(format!("{}: the browser leg did not answer", i.chat)),
    }
}

/// A customer's app: the chat and its WebSocket, written through a queue and read by a task
/// that keeps the chat's state and the agent's messages' latencies.
struct Customer {
    interaction: Arc<Interaction>,
    tx: mpsc::UnboundedSender<String>,
}

impl Customer {
    async fn open(
        http: &reqwest::Client,
        addr: SocketAddr,
        index: usize,
        shared: Arc<Shared>,
    ) -> Customer {
        let auth =
            format!(r#"MOBILE-API-140-327-PLAIN appId="claims-app", clientId="bench-{index}""#);
        let created: Value = http
            .post(format!("http://{addr}/clientweb/api/v1/chats"))
            .header("authorization", &auth)
            .json(&json!({"from": format!("Customer {index}"),
                          "phone_number": format!("+1555{index:07}")}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let chat = created["chat_id"]
            .as_str()
            .unwrap_or_else(|| panic!("a chat id: {created}"))
            .to_string();
        let interaction = Arc::new(Interaction {
            chat: chat.clone(),
            connected: watch::channel(false).0,
            call: watch::channel(Call::Idle).0,
            released: Mutex::new(None),
            ended: watch::channel(false).0,
            media: Arc::new(ClientStats::default()),
            browser_connected: AtomicBool::new(false),
            stop: CancellationToken::new(),
        });
        shared
            .chats
            .lock()
            .unwrap()
            .insert(chat.clone(), interaction.clone());
        let mut request = format!("ws://{addr}/clientweb/api/v1/chats/{chat}/ws")
            .into_client_request()
            .unwrap();
        request
            .headers_mut()
            .insert("authorization", auth.parse().unwrap());
        let (ws, _) = tokio_tungstenite::connect_async_with_config(request, None, true)
            .await
            .unwrap();
        let (mut sink, mut stream) = ws.split();
        let (tx, mut queue) = mpsc::unbounded_channel::<String>();
        tokio::spawn(async move {
            while let Some(text) = queue.recv().await {
                if sink.send(Message::Text(text.into())).await.is_err() {
                    break;
                }
            }
        });
        let me = interaction.clone();
        tokio::spawn(async move {
            while let Some(Ok(frame)) = stream.next().await {
                let Message::Text(text) = frame else { continue };
                let Ok(v) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                match v["event"].as_str().unwrap_or_default() {
                    "chat_session_status" if v["state"] == "connected" => {
                        me.connected.send_replace(true);
                    }
                    "chat_session_message" if shared.measuring.load(Ordering::Relaxed) => {
                        if let Some(latency) = v["msg"].as_str().and_then(|m| latency_of(m, "a")) {
                            shared.to_customer.lock().unwrap().push(latency);
                        }
                    }
                    "chat_session_ended" => {
                        me.ended.send_replace(true);
                        return;
                    }
                    "error" => shared.problem(format!("customer {}: {v}", me.chat)),
                    _ => {}
                }
            }
        });
        Customer { interaction, tx }
    }
}
