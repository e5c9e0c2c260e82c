//! The RTP relay: media apart from control.
//!
//! The engine runs on its own tokio runtime and threads, so media load cannot starve SIP timers.
//! Each leg is one RTP socket (and its RTCP socket, port + 1) pumped by one task. The per-packet
//! path is a straight line over one packet buffer that belongs to the task:
//!
//! ```text
//! recv → RTP header → latch verdict → counters → route (Drop | Echo | Forward) → send
//! ```
//!
//! and it never awaits anything but the next datagram: sends use `try_send_to` (a full socket
//! buffer drops the packet, as the network would), events to control use `try_send`.
//!
//! Control ([`MediaEngine`], owned by the SIP driver) changes what a leg does by replacing its
//! [`Route`] atomically (`arc-swap`): the hot path only loads it, lock-free, per packet. Where a
//! leg's peer really is (after latching, RFC 7362 symmetric RTP) is published by that leg's task
//! the same way, for the task that forwards towards it.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use tokio::net::UdpSocket;

/// A leg is named by its RTP port, unique while the leg is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LegId(pub u16);

/// What a leg does with the packets it receives.
#[derive(Debug, Clone, Default)]
pub enum Route {
    /// Count and drop (a leg not bridged yet, or on hold).
    #[default]
    Drop,
    /// Send every packet back to where it came from (`sip:echo`).
    Echo,
    /// Send every packet to the peer of another leg, from that leg's socket.
    Forward(Arc<LegShared>),
}

/// Engine-wide settings.
#[derive(Debug, Clone)]
pub struct MediaSettings {
    /// Where legs bind.
    pub bind_ip: IpAddr,
    /// A leg that receives nothing for this long is reported by [`MediaEngine::sweep`].
    pub inactivity_timeout: Duration,
    /// A latched peer that has been silent this long may be replaced by a new source.
    pub relatch_after: Duration,
    /// Threads of the media runtime.
    pub threads: usize,
}

/// Per-leg counters, written by the leg's own task (one writer, relaxed atomics).
#[derive(Debug, Default)]
pub struct LegCounters {
    pub packets_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub packets_out: AtomicU64,
    pub bytes_out: AtomicU64,
    /// Packets from a source the latch refused (hijack attempts, strays).
    pub rejected: AtomicU64,
    /// Datagrams that are not RTP version 2.
    pub malformed: AtomicU64,
    /// Packets dropped because the outgoing socket buffer was full or the peer is unknown.
    pub dropped: AtomicU64,
    /// RTCP packets received.
    pub rtcp_in: AtomicU64,
    /// When the last accepted packet arrived, in ms since the engine started.
    last_rx_ms: AtomicU64,
}

/// A snapshot of [`LegCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LegStats {
    pub packets_in: u64,
    pub bytes_in: u64,
    pub packets_out: u64,
    pub bytes_out: u64,
    pub rejected: u64,
    pub malformed: u64,
    pub dropped: u64,
    pub rtcp_in: u64,
}

/// The part of a leg that its task and the tasks forwarding towards it share.
#[derive(Debug)]
pub struct LegShared {
    pub id: LegId,
    rtp: UdpSocket,
    route: ArcSwap<Route>,
    /// Where packets towards this leg's peer go: the latched source, else the SDP address.
    destination: ArcSwapOption<SocketAddr>,
    /// The address the peer's SDP named.
    signalled: ArcSwapOption<SocketAddr>,
    pub counters: LegCounters,
    /// Whether silence counts against the inactivity timeout.
    watched: AtomicBool,
    inactive_reported: AtomicBool,
}

impl LegShared {
    fn stats(&self) -> LegStats {
        let c = &self.counters;
        LegStats {
            packets_in: c.packets_in.load(Ordering::Relaxed),
            bytes_in: c.bytes_in.load(Ordering::Relaxed),
            packets_out: c.packets_out.load(Ordering::Relaxed),
            bytes_out: c.bytes_out.load(Ordering::Relaxed),
            rejected: c.rejected.load(Ordering::Relaxed),
            malformed: c.malformed.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            rtcp_in: c.rtcp_in.load(Ordering::Relaxed),
        }
    }

    /// Sends `packet` to this leg's peer from this leg's socket (so the peer sees one address).
    fn send_to_peer(&self, packet: &[u8]) -> bool {
        let Some(to) = self.destination.load_full() else {
            return false;
        };
        match self.rtp.try_send_to(packet, *to) {
            Ok(_) => {
                self.counters.packets_out.fetch_add(1, Ordering::Relaxed);
                self.counters
                    .bytes_out
                    .fetch_add(packet.len() as u64, Ordering::Relaxed);
                true
            }
            Err(_) => false,
        }
    }
}

struct LegEntry {
    shared: Arc<LegShared>,
    tasks: [tokio::task::JoinHandle<()>; 2],
}

/// The control side of the relay. Owned by one task (the SIP driver); the hot path never sees it.
pub struct MediaEngine {
    settings: MediaSettings,
    runtime: Option<tokio::runtime::Runtime>,
    epoch: Instant,
    legs: HashMap<LegId, LegEntry>,
}

impl MediaEngine {
    /// Starts the media runtime on its own threads.
    pub fn start(settings: MediaSettings) -> io::Result<MediaEngine> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(settings.threads.max(1))
            .thread_name("tandem-media")
            .enable_all()
            .build()?;
        Ok(MediaEngine {
            settings,
            runtime: Some(runtime),
            epoch: Instant::now(),
            legs: HashMap::new(),
        })
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        self.runtime
            .as_ref()
            .expect("runtime lives until drop")
            .handle()
    }

    /// Binds `port` (RTP) and `port + 1` (RTCP) and starts pumping; packets are dropped until
    /// a route is set.
    pub fn open(&mut self, port: u16, signalled: Option<SocketAddr>) -> io::Result<LegId> {
        let id = LegId(port);
        if self.legs.contains_key(&id) {
            return Err(io::Error::new(io::ErrorKind::AddrInUse, "leg already open"));
        }
        let _guard = self.handle().enter();
        let rtp = bind(SocketAddr::new(self.settings.bind_ip, port))?;
        let rtcp = bind(SocketAddr::new(self.settings.bind_ip, port + 1))?;
        let shared = Arc::new(LegShared {
            id,
            rtp,
            route: ArcSwap::from_pointee(Route::Drop),
            destination: ArcSwapOption::from(signalled.map(Arc::new)),
            signalled: ArcSwapOption::from(signalled.map(Arc::new)),
            counters: LegCounters::default(),
            watched: AtomicBool::new(true),
            inactive_reported: AtomicBool::new(false),
        });
        shared
            .counters
            .last_rx_ms
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
        let pump = Pump {
            leg: shared.clone(),
            epoch: self.epoch,
            relatch_after: self.settings.relatch_after,
        };
        let rtp_task = self.handle().spawn(pump.run());
        let rtcp_task = self.handle().spawn(rtcp_sink(shared.clone(), rtcp));
        self.legs.insert(
            id,
            LegEntry {
                shared,
                tasks: [rtp_task, rtcp_task],
            },
        );
        Ok(id)
    }

    /// Replaces what `leg` does with the packets it receives.
    pub fn set_route(&mut self, leg: LegId, route: Route) {
        if let Some(entry) = self.legs.get(&leg) {
            entry.shared.route.store(Arc::new(route));
        }
    }

    /// Connects two legs both ways.
    pub fn bridge(&mut self, a: LegId, b: LegId) {
        let (Some(ea), Some(eb)) = (self.legs.get(&a), self.legs.get(&b)) else {
            return;
        };
        ea.shared
            .route
            .store(Arc::new(Route::Forward(eb.shared.clone())));
        eb.shared
            .route
            .store(Arc::new(Route::Forward(ea.shared.clone())));
    }

    /// The peer's SDP named a new address (re-INVITE); latching starts over from it.
    pub fn set_remote(&mut self, leg: LegId, remote: Option<SocketAddr>) {
        if let Some(entry) = self.legs.get(&leg) {
            let remote = remote.map(Arc::new);
            entry.shared.signalled.store(remote.clone());
            entry.shared.destination.store(remote);
        }
    }

    /// Whether silence on `leg` counts against the inactivity timeout. Turning it back on
    /// restarts the count.
    pub fn watch(&mut self, leg: LegId, enabled: bool) {
        if let Some(entry) = self.legs.get(&leg) {
            if enabled {
                let now_ms = self.epoch.elapsed().as_millis() as u64;
                entry
                    .shared
                    .counters
                    .last_rx_ms
                    .fetch_max(now_ms, Ordering::Relaxed);
            }
            entry.shared.watched.store(enabled, Ordering::Relaxed);
        }
    }

    /// Stops the leg, frees its ports, and returns its final counters.
    pub fn close(&mut self, leg: LegId) -> Option<LegStats> {
        let entry = self.legs.remove(&leg)?;
        for task in &entry.tasks {
            task.abort();
        }
        // A leg forwarding to this one must not keep it alive.
        for other in self.legs.values() {
            if let Route::Forward(to) = &**other.shared.route.load()
                && to.id == leg
            {
                other.shared.route.store(Arc::new(Route::Drop));
            }
        }
        Some(entry.shared.stats())
    }

    pub fn stats(&self, leg: LegId) -> Option<LegStats> {
        self.legs.get(&leg).map(|e| e.shared.stats())
    }

    pub fn open_legs(&self) -> usize {
        self.legs.len()
    }

    /// Legs that have received nothing for the inactivity timeout, each reported once; the
    /// driver calls this about once a second.
    pub fn sweep(&mut self, now: Instant) -> Vec<LegId> {
        let now_ms = now.saturating_duration_since(self.epoch).as_millis() as u64;
        let limit = self.settings.inactivity_timeout.as_millis() as u64;
        let mut inactive = Vec::new();
        for (id, entry) in &self.legs {
            if !entry.shared.watched.load(Ordering::Relaxed) {
                continue;
            }
            let last = entry.shared.counters.last_rx_ms.load(Ordering::Relaxed);
            if now_ms.saturating_sub(last) >= limit
                && !entry.shared.inactive_reported.swap(true, Ordering::Relaxed)
            {
                inactive.push(*id);
            }
        }
        inactive
    }
}

impl Drop for MediaEngine {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = std::net::UdpSocket::bind(addr)?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket)
}

/// The per-packet path of one leg. Its mutable state (latch) is its own; nothing is locked.
struct Pump {
    leg: Arc<LegShared>,
    epoch: Instant,
    relatch_after: Duration,
}

/// RTP version 2 with a full fixed header (RFC 3550 §5.1).
fn is_rtp(packet: &[u8]) -> bool {
    packet.len() >= 12 && packet[0] >> 6 == 2
}

impl Pump {
    async fn run(self) {
        let leg = &self.leg;
        let mut buf = [0u8; 2048];
        let mut latched: Option<(SocketAddr, Instant)> = None;
        loop {
            let Ok((len, source)) = leg.rtp.recv_from(&mut buf).await else {
                continue;
            };
            let now = Instant::now();
            let packet = &mut buf[..len];
            if !is_rtp(packet) {
                leg.counters.malformed.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            // Symmetric RTP: the first source wins; another may take over only after the
            // latched one has been silent for `relatch_after` (no hijack mid-call).
            match latched {
                Some((addr, _)) if addr == source => latched = Some((addr, now)),
                Some((_, last)) if now.duration_since(last) < self.relatch_after => {
                    leg.counters.rejected.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                _ => {
                    latched = Some((source, now));
                    leg.destination.store(Some(Arc::new(source)));
                }
            }
            leg.counters.packets_in.fetch_add(1, Ordering::Relaxed);
            leg.counters
                .bytes_in
                .fetch_add(len as u64, Ordering::Relaxed);
            leg.counters.last_rx_ms.store(
                now.duration_since(self.epoch).as_millis() as u64,
                Ordering::Relaxed,
            );
            let route = leg.route.load();
            let sent = match &**route {
                Route::Drop => true,
                Route::Echo => leg.send_to_peer(packet),
                Route::Forward(to) => to.send_to_peer(packet),
            };
            if !sent {
                leg.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Counts RTCP until reports are generated; keeps the port bound so nobody else takes it.
async fn rtcp_sink(leg: Arc<LegShared>, socket: UdpSocket) {
    let mut buf = [0u8; 1500];
    loop {
        if socket.recv_from(&mut buf).await.is_ok() {
            leg.counters.rtcp_in.fetch_add(1, Ordering::Relaxed);
        }
    }
}
