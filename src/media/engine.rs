//! The RTP relay: media apart from control.
//!
//! The engine runs its own threads, so media load cannot starve SIP timers. Each thread is a
//! reactor ([`super::reactor`]): one poll loop serving all its legs, each leg an RTP socket
//! and its RTCP socket (port + 1) read in `recvmmsg` batches and relayed with `sendmmsg`, with
//! no task, allocation or copy per packet; [`super::leg`] describes the hot path. It never waits
//! for anything but readiness and its report timers: a full socket buffer drops the packet, as
//! the network would, and events to control use `try_send` on a bounded channel (a full channel
//! drops the event, counted).
//!
//! Control ([`MediaEngine`], owned by the SIP driver) changes what a leg does in two ways:
//! - its [`Route`] is replaced atomically (`arc-swap`); the hot path only loads it, lock-free;
//! - what the reactor owns (latch, DTMF detector, recording feed) changes by a command on the
//!   reactor's channel, applied between batches.
//!
//! Opening a leg binds its sockets here, on the control side, so a taken port is an answer
//! at once; closing it hands them back to the reactor, which keeps them bound for the next leg
//! on the same port when [`MediaSettings::idle_sockets`] allows ([`super::sockets`]).
//!
//! Where a leg's peer really is (after latching, RFC 7362 symmetric RTP) is published by that
//! leg's reactor through an `arc-swap` too, for whichever reactor forwards towards it. What
//! legs report ([`MediaEvent`]) arrives on the receiver [`MediaEngine::start`] returns.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use tokio::sync::mpsc;

use super::latch::{Latch, LatchConfig, Learning};
use super::leg::{CLOCK_RATE, Control, EngineCounters, Leg};
pub(crate) use super::leg::{LegCounters, LegShared};
use super::local;
use super::reactor::{Command, LegInbox, ReactorHandle};
use super::recorder::{RecordError, RecorderCounters, RecordingSink, Side};
use super::rtcp::{RemoteReport, RtcpSession};
use super::sockets::LegSockets;
use crate::media::codec::Codec;

/// How many events the receiver may fall behind by before new ones are dropped.
const EVENTS_CAPACITY: usize = 1024;

/// A media leg, named by its RTP port (unique while the leg is open).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LegPort(pub u16);

/// What a leg does with the packets it receives.
#[derive(Debug, Clone, Default)]
pub enum Route {
    /// Count and drop (a leg not bridged yet, or on hold).
    #[default]
    Drop,
    /// Send every packet back to where it came from, unchanged but for the SSRC, which becomes
    /// the leg's own so that the echo and our RTCP reports describe one stream (`sip:echo`).
    Echo,
    /// Send every packet to the peer of another leg, from that leg's socket, rewritten so that
    /// peer sees one continuous stream; see [`MediaEngine::bridge`].
    Forward {
        to: Arc<LegShared>,
        forwarding: Forwarding,
    },
}

/// How one direction of a bridge changes the packets it forwards.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Forwarding {
    /// Convert G.711 audio of the first law (known by its static payload type) to the second,
    /// in place, payload type included. Other payload types pass unchanged.
    pub transcode: Option<(Codec, Codec)>,
    /// The telephone-event payload type on the receiving leg and on the sending leg. Events are
    /// mapped, never transcoded (RFC 4733 events are not audio).
    pub telephone_event: Option<(u8, u8)>,
}

/// What the media path tells control.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaEvent {
    /// A DTMF key press arrived as RFC 4733 telephone-events on `leg`.
    Dtmf {
        leg: LegPort,
        digit: char,
        duration_ms: u32,
    },
}

/// Engine-wide settings.
#[derive(Debug, Clone)]
pub struct MediaSettings {
    /// Where legs bind.
    pub bind_ip: IpAddr,
    /// A leg that receives nothing for this long is reported by [`MediaEngine::sweep`].
    pub inactivity_timeout: Duration,
    /// When another source may take over a leg's latched peer.
    pub latch: LatchConfig,
    /// Media threads, each a reactor serving its share of the legs.
    pub threads: usize,
    /// How many closed legs keep their two sockets bound for the next leg on the same port,
    /// which then opens and closes without a system call ([`super::sockets`]). Capped so that
    /// they hold at most half the process's descriptor limit; 0 closes the sockets with the leg.
    pub idle_sockets: usize,
}

impl Default for MediaSettings {
    fn default() -> Self {
        MediaSettings {
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            inactivity_timeout: Duration::from_secs(30),
            latch: LatchConfig::default(),
            threads: 1,
            idle_sockets: 0,
        }
    }
}

/// A snapshot of a leg's counters and, once RTCP has run, its reception quality.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LegStats {
    pub packets_in: u64,
    pub bytes_in: u64,
    pub packets_out: u64,
    pub bytes_out: u64,
    pub rejected: u64,
    pub malformed: u64,
    pub dropped: u64,
    /// Datagrams the kernel dropped because the leg's receive queue was full.
    pub overflowed: u64,
    pub rtcp_in: u64,
    /// RTCP reports sent.
    pub rtcp_out: u64,
    /// Packets lost on the way to us (RFC 3550 A.3); negative when duplicates outnumber losses.
    pub lost: i64,
    /// The fraction lost on the way to us in the last report interval, 0.0 to 1.0.
    pub fraction_lost: f64,
    /// Interarrival jitter of what we receive, in milliseconds (RFC 3550 A.8).
    pub jitter_ms: f64,
    /// Round-trip time to the peer, once its report has echoed one of our SRs.
    pub rtt_ms: Option<f64>,
    /// The peer's view of what we send, once it has reported.
    pub remote: Option<RemoteReport>,
}

impl LegShared {
    fn stats(&self) -> LegStats {
        let c = &self.counters;
        let quality = self.quality.load_full().map(|q| *q).unwrap_or_default();
        LegStats {
            packets_in: c.packets_in.load(Ordering::Relaxed),
            bytes_in: c.bytes_in.load(Ordering::Relaxed),
            packets_out: c.packets_out.load(Ordering::Relaxed),
            bytes_out: c.bytes_out.load(Ordering::Relaxed),
            rejected: c.rejected.load(Ordering::Relaxed),
            malformed: c.malformed.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            overflowed: c.overflowed.load(Ordering::Relaxed),
            rtcp_in: c.rtcp_in.load(Ordering::Relaxed),
            rtcp_out: c.rtcp_out.load(Ordering::Relaxed),
            lost: quality.lost,
            fraction_lost: quality.fraction_lost,
            jitter_ms: quality.jitter_ms,
            rtt_ms: quality.rtt_ms,
            remote: quality.remote,
        }
    }

    fn set_route(&self, route: Route) {
        self.route.store(Arc::new(route));
        self.route_generation.fetch_add(1, Ordering::Release);
    }
}

struct LegEntry {
    shared: Arc<LegShared>,
    reactor: usize,
    slot: u32,
    /// The leg this one's route forwards to, and the legs whose routes forward to this one:
    /// a closing leg must not stay anyone's destination.
    forwards_to: Option<LegPort>,
    forwarded_from: Vec<LegPort>,
    /// The leg's RTP address in the process's table, while it is open: our own sockets hand
    /// it datagrams in memory ([`super::local`]).
    _local: Option<local::Binding>,
}

/// The sockets of a closed leg, kept bound and registered in their reactor's slot.
struct IdleSockets {
    sockets: Arc<LegSockets>,
    reactor: usize,
    slot: u32,
}

/// The slots of one reactor, handed out by the engine so that commands can name them.
#[derive(Default)]
struct Slots {
    next: u32,
    free: Vec<u32>,
    /// Open legs served by the reactor.
    open: usize,
}

impl Slots {
    fn take(&mut self) -> u32 {
        self.free.pop().unwrap_or_else(|| {
            self.next += 1;
            self.next - 1
        })
    }
}

/// A call being recorded: its two legs and the sink both feed.
struct ActiveRecording {
    customer: LegPort,
    agent: LegPort,
    sink: RecordingSink,
}

/// The control side of the relay. Owned by one task (the SIP driver); the hot path never sees it.
pub struct MediaEngine {
    settings: MediaSettings,
    reactors: Vec<ReactorHandle>,
    slots: Vec<Slots>,
    epoch: Instant,
    legs: HashMap<LegPort, LegEntry>,
    /// Sockets of closed legs kept for reuse, by RTP port.
    idle: HashMap<u16, IdleSockets>,
    idle_budget: usize,
    counters: Arc<EngineCounters>,
    recordings: Vec<ActiveRecording>,
    recorder_counters: Arc<RecorderCounters>,
    /// Our RTCP CNAME (RFC 7022: random, so it reveals nothing and does not collide).
    cname: String,
}

impl MediaEngine {
    /// Starts the media threads. The receiver carries what the legs report; if it is dropped or
    /// falls behind, events are lost (counted in [`MediaEngine::events_dropped`]) and media goes
    /// on.
    pub fn start(settings: MediaSettings) -> io::Result<(MediaEngine, mpsc::Receiver<MediaEvent>)> {
        let (events, receiver) = mpsc::channel(EVENTS_CAPACITY);
        let epoch = Instant::now();
        let counters = Arc::<EngineCounters>::default();
        let threads = settings.threads.max(1);
        let reactors = (0..threads)
            .map(|_| {
                ReactorHandle::spawn(
                    "tandem-media".into(),
                    epoch,
                    events.clone(),
                    counters.clone(),
                )
            })
            .collect::<io::Result<Vec<_>>>()?;
        let idle_budget = settings
            .idle_sockets
            .min(usize::try_from(descriptor_limit() / 4).unwrap_or(usize::MAX));
        let engine = MediaEngine {
            settings,
            slots: (0..threads).map(|_| Slots::default()).collect(),
            reactors,
            epoch,
            legs: HashMap::new(),
            idle: HashMap::new(),
            idle_budget,
            counters,
            recordings: Vec::new(),
            recorder_counters: Arc::default(),
            cname: format!("tandem-{:016x}", rand::random::<u64>()),
        };
        Ok((engine, receiver))
    }

    /// Binds `port` (RTP) and `port + 1` (RTCP), or takes them over from a closed leg that
    /// kept them, and starts relaying; packets are dropped until a route is set. `signalled`
    /// is where the peer's SDP says its RTP is, if known yet.
    pub fn open(
        &mut self,
        port: u16,
        signalled: Option<SocketAddr>,
        learning: Learning,
    ) -> io::Result<LegPort> {
        let id = LegPort(port);
        if self.legs.contains_key(&id) {
            return Err(io::Error::new(io::ErrorKind::AddrInUse, "leg already open"));
        }
        let ssrc = rand::random::<u32>();
        let session = RtcpSession::new(ssrc, &self.cname, CLOCK_RATE)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let (sockets, reactor, slot) = match self.idle.remove(&port) {
            Some(kept) => (kept.sockets, kept.reactor, kept.slot),
            None => {
                let sockets = Arc::new(LegSockets::bind(self.settings.bind_ip, port)?);
                // The least busy reactor takes the leg.
                let reactor = (0..self.slots.len())
                    .min_by_key(|&r| self.slots[r].open)
                    .unwrap_or(0);
                (sockets, reactor, self.slots[reactor].take())
            }
        };
        let shared = Arc::new(LegShared {
            id,
            sockets,
            ssrc,
            route: ArcSwap::from_pointee(Route::Drop),
            route_generation: AtomicU64::new(0),
            destination: ArcSwapOption::from(signalled.map(Arc::new)),
            counters: LegCounters::default(),
            quality: ArcSwapOption::empty(),
            watched: AtomicBool::new(true),
            inactive_reported: AtomicBool::new(false),
        });
        shared
            .counters
            .last_rx_ms
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
        let latch = Latch::new(signalled, learning, self.settings.latch);
        let leg = Box::new(Leg::new(shared.clone(), latch, session));
        self.reactors[reactor].send(Command::Open { slot, leg });
        // Bound once the open is queued: the reactor applies its commands before it relays what
        // was handed over, so the leg is there for the first datagram.
        let inbox = LegInbox {
            handover: self.reactors[reactor].handover().clone(),
            slot,
            leg: Arc::downgrade(&shared),
        };
        let local = local::bind(shared.sockets.rtp_addr, Arc::new(inbox));
        self.slots[reactor].open += 1;
        self.legs.insert(
            id,
            LegEntry {
                shared,
                reactor,
                slot,
                forwards_to: None,
                forwarded_from: Vec::new(),
                _local: local,
            },
        );
        Ok(id)
    }

    fn control(&self, leg: LegPort, control: Control) {
        if let Some(entry) = self.legs.get(&leg) {
            self.reactors[entry.reactor].send(Command::Control {
                slot: entry.slot,
                control,
            });
        }
    }

    /// Sets `leg`'s route, keeping track of who forwards to whom.
    fn route(&mut self, leg: LegPort, route: Route) {
        let to = match &route {
            Route::Forward { to, .. } => Some(to.id),
            _ => None,
        };
        let Some(entry) = self.legs.get_mut(&leg) else {
            return;
        };
        entry.shared.set_route(route);
        let before = std::mem::replace(&mut entry.forwards_to, to);
        if let Some(before) = before.and_then(|b| self.legs.get_mut(&b)) {
            before.forwarded_from.retain(|&l| l != leg);
        }
        if let Some(after) = to.and_then(|t| self.legs.get_mut(&t)) {
            after.forwarded_from.push(leg);
        }
    }

    /// Replaces what `leg` does with the packets it receives.
    pub fn set_route(&mut self, leg: LegPort, route: Route) {
        self.route(leg, route);
    }

    /// Connects two legs both ways: what `a` receives goes to `b`'s peer changed as `a_to_b`
    /// says, and the other way round. Each direction gets a fresh SSRC/sequence/timestamp space.
    pub fn bridge(&mut self, a: LegPort, b: LegPort, a_to_b: Forwarding, b_to_a: Forwarding) {
        let (Some(ea), Some(eb)) = (self.legs.get(&a), self.legs.get(&b)) else {
            return;
        };
        let (to_b, to_a) = (eb.shared.clone(), ea.shared.clone());
        self.route(
            a,
            Route::Forward {
                to: to_b,
                forwarding: a_to_b,
            },
        );
        self.route(
            b,
            Route::Forward {
                to: to_a,
                forwarding: b_to_a,
            },
        );
    }

    /// The peer's SDP named a new address (re-INVITE); the leg's latch is told, and packets
    /// from that address are accepted at once (see [`super::latch`]).
    pub fn set_remote(&mut self, leg: LegPort, remote: Option<SocketAddr>) {
        self.control(leg, Control::Resignal(remote));
    }

    /// Reports the RFC 4733 digits received on `leg` with this telephone-event payload type as
    /// [`MediaEvent::Dtmf`]; `None` stops (reporting a digit still held).
    pub fn detect_dtmf(&mut self, leg: LegPort, payload_type: Option<u8>) {
        self.control(leg, Control::DetectDtmf(payload_type));
    }

    /// Records the call into `dir` as a stereo WAV file named after `call_id`: what `customer`
    /// receives on the left, what `agent` receives on the right (G.711 only). The file is
    /// finished when either leg closes or [`MediaEngine::stop_recording`] is called.
    pub fn record(
        &mut self,
        customer: LegPort,
        agent: LegPort,
        call_id: &str,
        dir: &Path,
    ) -> Result<(), RecordError> {
        for leg in [customer, agent] {
            if !self.legs.contains_key(&leg) {
                return Err(RecordError::NoSuchLeg(leg.0));
            }
        }
        if let Some(thread) = self.stop_recording(customer) {
            drop(thread);
        }
        let sink =
            RecordingSink::start(dir, call_id, Instant::now(), self.recorder_counters.clone())?;
        for (leg, side) in [(customer, Side::Customer), (agent, Side::Agent)] {
            self.control(leg, Control::Record(Some((sink.feed(), side))));
        }
        self.recordings.push(ActiveRecording {
            customer,
            agent,
            sink,
        });
        Ok(())
    }

    /// Finishes the recording `leg` takes part in, if any. The file is completed on the
    /// recording's thread; join the handle to wait for it.
    pub fn stop_recording(&mut self, leg: LegPort) -> Option<JoinHandle<()>> {
        let i = self
            .recordings
            .iter()
            .position(|r| r.customer == leg || r.agent == leg)?;
        let recording = self.recordings.swap_remove(i);
        for leg in [recording.customer, recording.agent] {
            self.control(leg, Control::Record(None));
        }
        Some(recording.sink.close(Instant::now()))
    }

    /// Failures and lost audio of all recordings, for `/metrics`.
    pub fn recorder_counters(&self) -> &Arc<RecorderCounters> {
        &self.recorder_counters
    }

    /// Media events lost because the receiver was full or gone.
    pub fn events_dropped(&self) -> u64 {
        self.counters.events_dropped.load(Ordering::Relaxed)
    }

    /// Datagrams that arrived for no open leg: queued on a leg's ports when it closed, or sent
    /// later to ports kept bound for reuse. Read and dropped.
    pub fn stray_packets(&self) -> u64 {
        self.counters.stray.load(Ordering::Relaxed)
    }

    /// Datagrams handed to legs in memory ([`super::local`]) while their reactor was looking
    /// at the handover on its own, so their senders did not wake it.
    pub fn handed_unwoken(&self) -> u64 {
        self.reactors
            .iter()
            .map(ReactorHandle::handed_unwoken)
            .sum()
    }

    /// Closed legs whose sockets are kept bound for reuse.
    pub fn idle_sockets(&self) -> usize {
        self.idle.len()
    }

    /// Whether silence on `leg` counts against the inactivity timeout. Turning it back on
    /// restarts the count.
    pub(crate) fn watch(&mut self, leg: LegPort, enabled: bool) {
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

    /// Stops the leg, finishes a recording it takes part in, and returns its counters. Nothing
    /// is forwarded towards it from now on; its reactor stops it between two batches, at the
    /// latest a tick later. Its sockets are kept for the next leg on the port while the budget
    /// allows, else closed by the reactor; datagrams still queued for it are counted as strays.
    pub fn close(&mut self, leg: LegPort) -> Option<LegStats> {
        drop(self.stop_recording(leg));
        let entry = self.legs.remove(&leg)?;
        // A leg forwarding to this one must not keep it alive.
        for from in &entry.forwarded_from {
            if let Some(other) = self.legs.get_mut(from) {
                other.shared.set_route(Route::Drop);
                other.forwards_to = None;
            }
        }
        if let Some(to) = entry.forwards_to.and_then(|t| self.legs.get_mut(&t)) {
            to.forwarded_from.retain(|&l| l != leg);
        }
        let keep = self.idle.len() < self.idle_budget;
        self.reactors[entry.reactor].send(Command::Close {
            slot: entry.slot,
            keep,
        });
        let slots = &mut self.slots[entry.reactor];
        slots.open -= 1;
        if keep {
            self.idle.insert(
                leg.0,
                IdleSockets {
                    sockets: entry.shared.sockets.clone(),
                    reactor: entry.reactor,
                    slot: entry.slot,
                },
            );
        } else {
            slots.free.push(entry.slot);
        }
        // The leg's own route stays until its reactor closes it, so that what arrives until then
        // is relayed as before (or, once it closed, counted as stray), never silently swallowed.
        Some(entry.shared.stats())
    }

    /// The leg's counters and reception quality.
    pub fn stats(&self, leg: LegPort) -> Option<LegStats> {
        self.legs.get(&leg).map(|e| e.shared.stats())
    }

    pub(crate) fn open_legs(&self) -> usize {
        self.legs.len()
    }

    /// Legs that have received nothing for the inactivity timeout, each reported once; the
    /// driver calls this about once a second.
    pub(crate) fn sweep(&mut self, now: Instant) -> Vec<LegPort> {
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
        for recording in self.recordings.drain(..) {
            drop(recording.sink.close(Instant::now()));
        }
        for reactor in &mut self.reactors {
            reactor.stop();
        }
    }
}

/// The process's soft limit on open descriptors.
fn descriptor_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        limit.rlim_cur
    } else {
        1024
    }
}
