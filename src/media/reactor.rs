//! The media reactor: one poll loop per media thread serves every leg of that thread.
//!
//! A leg is not a task. Its two sockets are registered, edge-triggered, with the thread's
//! `epoll` instance (through mio), and one loop does everything:
//!
//! ```text
//! loop {
//!     wait for readiness, a control command, or the next RTCP report due
//!     apply control commands                      (open, close, re-signal, DTMF, record)
//!     for each readable socket: recvmmsg a batch → the leg's hot path → one sendmmsg
//!     send the RTCP reports that are due
//! }
//! ```
//!
//! Control never waits for the loop and the loop never waits for control: the engine pushes
//! commands on a channel and the loop applies them between batches. While legs are open the
//! loop looks at the channel at least every [`TICK`], so a command costs control no system
//! call and the loop no extra wake-up (under load it wakes for packets far more often anyway);
//! only a loop with no leg sleeps without a deadline, and then the engine wakes it (once per
//! burst of commands). A socket that still has data after
//! [`ROUNDS`] batches waits for the next turn, so one flooded leg cannot starve the others.
//!
//! Datagrams another part of the process hands a leg in memory ([`super::local`]: a WebRTC
//! peer's bridge) wait in the reactor's [`Handover`] and are relayed as a batch read from the
//! leg's socket would be, right after the commands. While they keep coming (one within the
//! last [`HANDOVER_TICK`]), the loop looks at the handover every [`HANDOVER_TICK`] and their
//! senders do not wake it: a wake per datagram would cost the sender a system call and the
//! loop a trip through the scheduler, more than relaying the datagram. A datagram handed over
//! then waits at most that long; one handed to a loop that has not seen any for longer wakes
//! it at once, as a command does.
//!
//! Legs live in slots the engine assigns. A slot keeps its sockets registered after its leg
//! closes when the engine keeps them for reuse ([`super::sockets`]): what arrives there then
//! is read and counted as stray, as is what was still queued when the leg closed.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering, fence};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use super::batch::{self, BATCH, RecvBatch};
use super::leg::{Context, Control, EngineCounters, Leg, LegShared};
use super::local;
use super::sockets::LegSockets;

/// Batches read from one socket per turn before the other sockets get theirs.
const ROUNDS: usize = 4;

/// The longest a command waits while legs are open: well under one 20 ms packet interval.
const TICK: Duration = Duration::from_millis(5);

/// How often the loop looks at the handover, unwoken, while datagrams keep being handed over:
/// the most such a datagram waits, a twentieth of a 20 ms packet interval.
const HANDOVER_TICK: Duration = Duration::from_millis(1);

/// Readiness events taken per wait.
const EVENTS: usize = 1024;

/// Datagrams read and dropped from a closing leg's sockets at once; any more are read later
/// as strays (when the sockets are kept) or discarded with the sockets.
const DRAIN_AT_CLOSE: usize = 4096;

const WAKER: Token = Token(usize::MAX);

/// What the engine asks of a reactor; applied in order, between batches.
pub(crate) enum Command {
    /// Serve `leg` in `slot`: on the sockets already there (kept from a closed leg), or on new
    /// sockets, which are registered.
    Open { slot: u32, leg: Box<Leg> },
    /// A change to the leg in `slot`.
    Control { slot: u32, control: Control },
    /// The leg in `slot` closes; its sockets stay registered when `keep`.
    Close { slot: u32, keep: bool },
    /// End the loop.
    Stop,
}

/// Datagrams handed over in memory, waiting for one reactor, at most this many.
const HANDOVER: usize = 4096;

/// The engine's end of one reactor thread.
pub(crate) struct ReactorHandle {
    commands: mpsc::Sender<Command>,
    handover: Arc<Handover>,
    /// Set while the loop sleeps with no [`TICK`]: only a wake makes it see a command.
    asleep: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// What wakes a reactor, and the datagrams handed to its legs in memory meanwhile.
pub(crate) struct Handover {
    waker: Waker,
    /// Set when a wake is on its way, so a burst of commands or datagrams costs one wake-up.
    wake_pending: AtomicBool,
    queue: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    handed: Handed,
    /// Set while the loop looks at the handover every [`HANDOVER_TICK`]: a sender then need
    /// not wake it. Read and written under the queue's lock, so a sender that finds it unset
    /// wakes the loop, and a loop that unsets it sees what was queued before.
    watched: bool,
    /// Datagrams handed over while the loop was watching, whose senders did not wake it.
    unwoken: u64,
}

/// Datagrams in the order they were handed over: their bytes back to back, and for each, its
/// leg and where it came from.
#[derive(Default)]
struct Handed {
    bytes: Vec<u8>,
    items: Vec<HandedItem>,
}

struct HandedItem {
    slot: u32,
    /// The leg it was for: a leg opened later in the same slot must not take it.
    leg: Arc<LegShared>,
    source: SocketAddr,
    len: usize,
}

impl Handover {
    fn wake(&self) {
        if !self.wake_pending.swap(true, Ordering::AcqRel)
            && let Err(e) = self.waker.wake()
        {
            tracing::error!("cannot wake the media reactor: {e}");
        }
    }

    /// Queues one datagram for `slot`'s `leg`; `None` when the queue is full, else whether the
    /// loop must be woken to see it.
    fn push(
        &self,
        slot: u32,
        leg: Arc<LegShared>,
        source: SocketAddr,
        data: &[u8],
    ) -> Option<bool> {
        let mut queue = self.queue.lock().expect("handover lock");
        let handed = &mut queue.handed;
        if handed.items.len() >= HANDOVER {
            return None;
        }
        handed.bytes.extend_from_slice(data);
        handed.items.push(HandedItem {
            slot,
            leg,
            source,
            len: data.len(),
        });
        if queue.watched {
            queue.unwoken += 1;
        }
        Some(!queue.watched)
    }

    /// The loop's promise to look every [`HANDOVER_TICK`] (`true`) or its end (`false`);
    /// returns whether datagrams are waiting, which a loop ending its watch must relay
    /// before it sleeps longer, since their senders did not wake it.
    fn watch(&self, watched: bool) -> bool {
        let mut queue = self.queue.lock().expect("handover lock");
        queue.watched = watched;
        !queue.handed.items.is_empty()
    }
}

/// The address of one open leg in the process's table of sockets ([`super::local`]).
pub(crate) struct LegInbox {
    pub handover: Arc<Handover>,
    pub slot: u32,
    /// Weak: a sender that looked the leg up and went quiet must not keep its sockets open
    /// after it closed.
    pub leg: Weak<LegShared>,
}

impl local::Inbox for LegInbox {
    fn deliver(&self, source: SocketAddr, data: &[u8]) -> bool {
        let Some(leg) = self.leg.upgrade() else {
            return false;
        };
        match self.handover.push(self.slot, leg, source, data) {
            None => false,
            Some(wake) => {
                if wake {
                    self.handover.wake();
                }
                true
            }
        }
    }
}

impl ReactorHandle {
    /// Starts a reactor thread named `name`.
    pub fn spawn(
        name: String,
        epoch: Instant,
        events: tokio::sync::mpsc::Sender<super::engine::MediaEvent>,
        engine: Arc<EngineCounters>,
    ) -> io::Result<ReactorHandle> {
        let poll = Poll::new()?;
        let handover = Arc::new(Handover {
            waker: Waker::new(poll.registry(), WAKER)?,
            wake_pending: AtomicBool::new(false),
            queue: Mutex::new(Queue::default()),
        });
        let (commands, receiver) = mpsc::channel();
        let asleep = Arc::new(AtomicBool::new(false));
        let reactor = Reactor {
            poll,
            commands: receiver,
            handover: handover.clone(),
            handed: Handed::default(),
            asleep: asleep.clone(),
            legs: 0,
            last_handed: None,
            watching: false,
            slots: Vec::new(),
            timers: BinaryHeap::new(),
            again: Vec::new(),
            turn: Vec::new(),
            batch: RecvBatch::default(),
            buf: vec![0; batch::PACKET].into_boxed_slice(),
            cx: Context::new(epoch, events, engine),
            stopping: false,
        };
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || reactor.run())?;
        Ok(ReactorHandle {
            commands,
            handover,
            asleep,
            thread: Some(thread),
        })
    }

    /// Where datagrams for this reactor's legs are handed over in memory.
    pub fn handover(&self) -> &Arc<Handover> {
        &self.handover
    }

    /// Datagrams handed over to this reactor without waking it.
    pub fn handed_unwoken(&self) -> u64 {
        self.handover.queue.lock().expect("handover lock").unwoken
    }

    /// Queues `command`; wakes the loop only if it sleeps without a [`TICK`] and no wake is
    /// on its way already.
    pub fn send(&self, command: Command) {
        if self.commands.send(command).is_err() {
            return;
        }
        // Pairs with the loop's fence between announcing its sleep and its last look at the
        // channel: either it sees this command, or this sees it asleep.
        fence(Ordering::SeqCst);
        if self.asleep.load(Ordering::Relaxed) {
            self.handover.wake();
        }
    }

    /// Stops the loop and waits for the thread to end.
    pub fn stop(&mut self) {
        self.send(Command::Stop);
        self.handover.wake();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A leg's place in its reactor.
struct Slot {
    sockets: Arc<LegSockets>,
    /// The kernel's count of datagrams dropped on the RTP socket, as last reported: it runs
    /// over the socket's whole life, across the legs that use it.
    rtp_overflows: u32,
    /// `None` while the sockets are kept for the next leg.
    leg: Option<Box<Leg>>,
    /// Bumped at each open, so that a report timer of an earlier leg finds nothing.
    generation: u32,
}

struct Reactor {
    poll: Poll,
    commands: mpsc::Receiver<Command>,
    handover: Arc<Handover>,
    /// The datagrams taken from the handover, kept to reuse their memory.
    handed: Handed,
    asleep: Arc<AtomicBool>,
    /// Open legs: while there are any, the loop looks at its commands every [`TICK`].
    legs: usize,
    /// When the loop last found datagrams handed over.
    last_handed: Option<Instant>,
    /// Whether the loop last promised the handover to look every [`HANDOVER_TICK`].
    watching: bool,
    slots: Vec<Option<Slot>>,
    /// RTCP reports due: when, slot, generation.
    timers: BinaryHeap<Reverse<(Instant, u32, u32)>>,
    /// Sockets with more to read than a turn allows, served next turn without waiting.
    again: Vec<usize>,
    /// The sockets served this turn (`again` of the previous one), kept to reuse its memory.
    turn: Vec<usize>,
    batch: RecvBatch,
    /// One datagram, for RTCP sockets and for draining.
    buf: Box<[u8]>,
    cx: Context,
    stopping: bool,
}

fn rtp_token(slot: usize) -> Token {
    Token(slot << 1)
}

fn rtcp_token(slot: usize) -> Token {
    Token(slot << 1 | 1)
}

impl Reactor {
    fn run(mut self) {
        let mut events = Events::with_capacity(EVENTS);
        while !self.stopping {
            let before = Instant::now();
            let timer = self
                .timers
                .peek()
                .map(|Reverse((at, ..))| at.saturating_duration_since(before));
            let busy = self.legs > 0
                && self
                    .last_handed
                    .is_some_and(|at| before.saturating_duration_since(at) <= HANDOVER_TICK);
            let handed_waiting = self.watch_handover(busy);
            let tick = if busy { HANDOVER_TICK } else { TICK };
            let timeout = if !self.again.is_empty() || handed_waiting {
                Some(Duration::ZERO)
            } else if self.legs > 0 {
                Some(timer.map_or(tick, |t| t.min(tick)))
            } else {
                self.asleep.store(true, Ordering::Relaxed);
                fence(Ordering::SeqCst);
                // A command sent before the engine could see the flag is applied now.
                if self.apply_commands() {
                    Some(Duration::ZERO)
                } else {
                    timer
                }
            };
            if let Err(e) = self.poll.poll(&mut events, timeout)
                && e.kind() != io::ErrorKind::Interrupted
            {
                tracing::error!("media reactor cannot wait for readiness: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
            self.asleep.store(false, Ordering::Relaxed);
            self.apply_commands();
            let now = Instant::now();
            self.relay_handed(now);
            std::mem::swap(&mut self.again, &mut self.turn);
            let mut turn = std::mem::take(&mut self.turn);
            for token in turn.drain(..) {
                self.ready(token, now);
            }
            self.turn = turn;
            for event in events.iter() {
                if event.token() != WAKER {
                    self.ready(event.token().0, now);
                }
            }
            self.fire_timers(now);
        }
    }

    /// Tells the handover whether the loop is about to look at it every [`HANDOVER_TICK`];
    /// returns whether datagrams its senders did not wake it for are waiting.
    fn watch_handover(&mut self, busy: bool) -> bool {
        if busy == self.watching {
            return false;
        }
        self.watching = busy;
        self.handover.watch(busy) && !busy
    }

    /// Applies the commands queued so far; returns whether there were any.
    fn apply_commands(&mut self) -> bool {
        self.handover.wake_pending.store(false, Ordering::Release);
        let mut any = false;
        loop {
            match self.commands.try_recv() {
                Ok(command) => {
                    self.apply(command);
                    any = true;
                }
                Err(mpsc::TryRecvError::Empty) => return any,
                Err(mpsc::TryRecvError::Disconnected) => {
                    self.stopping = true;
                    return true;
                }
            }
        }
    }

    fn apply(&mut self, command: Command) {
        match command {
            Command::Open { slot, leg } => self.open(slot as usize, leg),
            Command::Control { slot, control } => {
                if let Some(Some(Slot { leg: Some(leg), .. })) = self.slots.get_mut(slot as usize) {
                    leg.apply(control, &mut self.cx);
                }
            }
            Command::Close { slot, keep } => self.close(slot as usize, keep),
            Command::Stop => self.stopping = true,
        }
    }

    fn open(&mut self, slot: usize, leg: Box<Leg>) {
        if self.slots.len() <= slot {
            self.slots.resize_with(slot + 1, || None);
        }
        let sockets = leg.shared.sockets.clone();
        let first_report = Instant::now() + leg.next_report_in();
        self.legs += 1;
        let entry = &mut self.slots[slot];
        let generation = match entry {
            Some(kept) if Arc::ptr_eq(&kept.sockets, &sockets) => {
                kept.generation = kept.generation.wrapping_add(1);
                kept.leg = Some(leg);
                kept.generation
            }
            _ => {
                if let Some(old) = entry.take() {
                    deregister(&self.poll, &old.sockets);
                }
                let registry = self.poll.registry();
                let registered = registry
                    .register(
                        &mut SourceFd(&sockets.rtp_fd()),
                        rtp_token(slot),
                        Interest::READABLE,
                    )
                    .and_then(|()| {
                        registry.register(
                            &mut SourceFd(&sockets.rtcp_fd()),
                            rtcp_token(slot),
                            Interest::READABLE,
                        )
                    });
                // The leg then hears nothing, and its call ends as inactive.
                if let Err(e) = registered {
                    tracing::error!(port = leg.shared.id.0, "cannot watch a media leg: {e}");
                }
                *entry = Some(Slot {
                    sockets,
                    rtp_overflows: 0,
                    leg: Some(leg),
                    generation: 0,
                });
                0
            }
        };
        self.timers
            .push(Reverse((first_report, slot as u32, generation)));
    }

    fn close(&mut self, slot: usize, keep: bool) {
        let Some(Some(entry)) = self.slots.get_mut(slot) else {
            return;
        };
        if let Some(leg) = entry.leg.take() {
            leg.close(&mut self.cx);
            self.legs -= 1;
        }
        // What was queued for the leg arrived too late for it: in flight when it closed.
        let mut stray = 0;
        for socket in [&entry.sockets.rtp, &entry.sockets.rtcp] {
            while stray < DRAIN_AT_CLOSE && socket.recv_from(&mut self.buf).is_ok() {
                stray += 1;
            }
        }
        count_stray(&self.cx, stray);
        if !keep {
            deregister(&self.poll, &entry.sockets);
            self.slots[slot] = None;
        }
    }

    fn ready(&mut self, token: usize, now: Instant) {
        let slot = token >> 1;
        if token & 1 == 0 {
            self.drain_rtp(slot, now);
        } else {
            self.drain_rtcp(slot, now);
        }
    }

    /// Packets read on kept sockets may belong to a leg control has just opened there: its
    /// commands are applied before they are called strays. Returns whether the slot still
    /// holds the same sockets.
    fn catch_up(&mut self, slot: usize, sockets: *const LegSockets) -> bool {
        self.apply_commands();
        matches!(self.slots.get(slot), Some(Some(s)) if Arc::as_ptr(&s.sockets) == sockets)
    }

    fn drain_rtp(&mut self, slot: usize, now: Instant) {
        for _ in 0..ROUNDS {
            let Some(Some(entry)) = self.slots.get(slot) else {
                return;
            };
            let (sockets, idle) = (Arc::as_ptr(&entry.sockets), entry.leg.is_none());
            let Ok(received) = self.batch.recv(entry.sockets.rtp_fd()) else {
                return;
            };
            if idle && !self.catch_up(slot, sockets) {
                count_stray(&self.cx, received);
                return;
            }
            let Some(Some(entry)) = self.slots.get_mut(slot) else {
                return;
            };
            let mut overflowed = 0;
            for i in 0..received {
                if let Some(total) = self.batch.overflows(i) {
                    overflowed += total.wrapping_sub(entry.rtp_overflows);
                    entry.rtp_overflows = total;
                }
            }
            match &mut entry.leg {
                Some(leg) => {
                    if overflowed > 0 {
                        leg.shared
                            .counters
                            .overflowed
                            .fetch_add(u64::from(overflowed), Ordering::Relaxed);
                    }
                    leg.relay(&mut self.batch, received, now, &mut self.cx);
                }
                None => count_stray(&self.cx, received + overflowed as usize),
            }
            if received < BATCH {
                return;
            }
        }
        self.again.push(slot << 1);
    }

    /// Relays the datagrams handed over since the last turn, in order: each run of datagrams
    /// for one leg as one batch, as if read from its socket. Those for a leg closed meanwhile
    /// are strays, as they would be on its socket.
    fn relay_handed(&mut self, now: Instant) {
        {
            let mut queue = self.handover.queue.lock().expect("handover lock");
            if queue.handed.items.is_empty() {
                return;
            }
            std::mem::swap(&mut queue.handed, &mut self.handed);
        }
        self.last_handed = Some(now);
        let mut handed = std::mem::take(&mut self.handed);
        let mut items = handed.items.iter().peekable();
        let mut offset = 0;
        while let Some(first) = items.next() {
            let mut take = |batch: &mut RecvBatch, i: usize, item: &HandedItem| {
                batch.load(i, item.source, &handed.bytes[offset..offset + item.len]);
                offset += item.len;
            };
            take(&mut self.batch, 0, first);
            let mut n = 1;
            while n < BATCH
                && let Some(next) =
                    items.next_if(|i| i.slot == first.slot && Arc::ptr_eq(&i.leg, &first.leg))
            {
                take(&mut self.batch, n, next);
                n += 1;
            }
            match self.slots.get_mut(first.slot as usize) {
                Some(Some(Slot { leg: Some(leg), .. })) if Arc::ptr_eq(&leg.shared, &first.leg) => {
                    leg.relay(&mut self.batch, n, now, &mut self.cx);
                }
                _ => count_stray(&self.cx, n),
            }
        }
        handed.items.clear();
        handed.bytes.clear();
        // A burst's memory is given back once it is over.
        if handed.bytes.capacity() > 1 << 20 {
            handed.bytes.shrink_to(64 << 10);
            handed.items.shrink_to(256);
        }
        self.handed = handed;
    }

    fn drain_rtcp(&mut self, slot: usize, now: Instant) {
        for _ in 0..ROUNDS * BATCH {
            let Some(Some(entry)) = self.slots.get(slot) else {
                return;
            };
            let (sockets, idle) = (Arc::as_ptr(&entry.sockets), entry.leg.is_none());
            let Ok((len, source)) = entry.sockets.rtcp.recv_from(&mut self.buf) else {
                return;
            };
            if idle && !self.catch_up(slot, sockets) {
                count_stray(&self.cx, 1);
                return;
            }
            match self.slots.get_mut(slot) {
                Some(Some(Slot { leg: Some(leg), .. })) => {
                    leg.on_rtcp_datagram(now, source, &self.buf[..len]);
                }
                _ => count_stray(&self.cx, 1),
            }
        }
        self.again.push(slot << 1 | 1);
    }

    fn fire_timers(&mut self, now: Instant) {
        while let Some(&Reverse((at, slot, generation))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            if let Some(Some(Slot {
                leg: Some(leg),
                generation: current,
                ..
            })) = self.slots.get_mut(slot as usize)
                && *current == generation
            {
                leg.send_report(now, &mut self.cx);
                let next = now + leg.next_report_in();
                self.timers.push(Reverse((next, slot, generation)));
            }
        }
        if self.timers.is_empty() && self.timers.capacity() > 1024 {
            // After a busy hour, an idle reactor gives the memory back.
            self.timers.shrink_to(1024);
        }
    }
}

fn count_stray(cx: &Context, n: usize) {
    if n > 0 {
        cx.engine.stray.fetch_add(n as u64, Ordering::Relaxed);
    }
}

fn deregister(poll: &Poll, sockets: &LegSockets) {
    let registry = poll.registry();
    let _ = registry.deregister(&mut SourceFd(&sockets.rtp_fd()));
    let _ = registry.deregister(&mut SourceFd(&sockets.rtcp_fd()));
}
