//! Datagrams between our own sockets, handed over in memory.
//!
//! A WebRTC peer bridged to a SIP call talks plain RTP to a media-engine leg of the same
//! process: two of our sockets, on loopback. Through the kernel, each packet costs a send, a
//! receive and the loopback delivery the sender is charged for, twice per direction. Here a
//! socket that wants in-process datagrams binds its address to an [`Inbox`]; a sender looks
//! its destination up before sending, and when the destination is ours the datagram goes
//! straight into its inbox, with the source address the kernel would have reported.
//!
//! Nothing else changes: both sockets stay bound, so anything from outside, RTCP, or a send
//! that finds no inbox takes the kernel path as before; the receiver sees the same source and
//! bytes either way. An inbox is bounded like a socket buffer: a full one refuses the datagram,
//! and the sender counts it where it counts a full socket.
//!
//! The table is one per process, as the kernel's is: addresses are unique among bound sockets,
//! so bindings of unrelated parts (or of tests running side by side) never collide. Senders
//! keep what they looked up in a [`Lookup`], checked against the table's generation, so the
//! hot path takes no lock while nothing is bound or unbound.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, RwLock};

/// Where in-process datagrams for one bound address go.
pub trait Inbox: Send + Sync {
    /// Takes a datagram `source` sent; `false` when the inbox is full (the datagram is lost,
    /// as with a full socket buffer).
    fn deliver(&self, source: SocketAddr, data: &[u8]) -> bool;
}

struct Table {
    inboxes: RwLock<HashMap<SocketAddr, Arc<dyn Inbox>>>,
    /// Bumped by every bind and unbind.
    generation: AtomicU64,
    /// Datagrams handed over in memory, and those an inbox refused.
    delivered: AtomicU64,
    refused: AtomicU64,
}

static TABLE: LazyLock<Table> = LazyLock::new(|| Table {
    inboxes: RwLock::new(HashMap::new()),
    generation: AtomicU64::new(1),
    delivered: AtomicU64::new(0),
    refused: AtomicU64::new(0),
});

/// Datagrams handed over in memory so far, and those refused by a full inbox.
pub fn totals() -> (u64, u64) {
    (
        TABLE.delivered.load(Ordering::Relaxed),
        TABLE.refused.load(Ordering::Relaxed),
    )
}

/// An address bound to an inbox, until this is dropped.
#[must_use = "the address is unbound when this is dropped"]
pub struct Binding {
    addr: SocketAddr,
}

/// Binds `addr` (a socket's own bound address) to `inbox`. `None` if it is bound already.
pub fn bind(addr: SocketAddr, inbox: Arc<dyn Inbox>) -> Option<Binding> {
    let mut inboxes = TABLE.inboxes.write().expect("local table lock");
    if inboxes.contains_key(&addr) {
        return None;
    }
    inboxes.insert(addr, inbox);
    TABLE.generation.fetch_add(1, Ordering::Release);
    Some(Binding { addr })
}

impl Drop for Binding {
    fn drop(&mut self) {
        let mut inboxes = TABLE.inboxes.write().expect("local table lock");
        inboxes.remove(&self.addr);
        TABLE.generation.fetch_add(1, Ordering::Release);
    }
}

/// The inbox a datagram to `to` reaches: the one bound to `to` itself, or, for a loopback
/// destination, the one bound to the wildcard address on that port (which the kernel would
/// deliver it to as well).
fn find(to: SocketAddr) -> Option<Arc<dyn Inbox>> {
    let inboxes = TABLE.inboxes.read().expect("local table lock");
    if inboxes.is_empty() {
        return None;
    }
    if let Some(inbox) = inboxes.get(&to) {
        return Some(inbox.clone());
    }
    if !to.ip().is_loopback() {
        return None;
    }
    let any = match to.ip() {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    inboxes.get(&SocketAddr::new(any, to.port())).cloned()
}

/// The source address the kernel would report for a datagram from a socket bound to `from`
/// to `to`: a wildcard socket sends from the destination's own address when that is ours.
pub fn source(from: SocketAddr, to: SocketAddr) -> SocketAddr {
    if from.ip().is_unspecified() {
        SocketAddr::new(to.ip(), from.port())
    } else {
        from
    }
}

/// One sender's view of where its destination is: looked up again only when the destination
/// or the table changed.
#[derive(Default)]
pub struct Lookup {
    generation: u64,
    to: Option<SocketAddr>,
    found: Option<Arc<dyn Inbox>>,
}

impl Lookup {
    /// The inbox bound to `to`, if it is one of ours.
    pub fn inbox(&mut self, to: SocketAddr) -> Option<&dyn Inbox> {
        let generation = TABLE.generation.load(Ordering::Acquire);
        if generation != self.generation || self.to != Some(to) {
            self.found = find(to);
            self.generation = generation;
            self.to = Some(to);
        }
        self.found.as_deref()
    }

    /// Hands `data` from `source` to the inbox bound to `to`: `None` if there is none (the
    /// datagram should take the kernel's path), else whether the inbox took it.
    pub fn send(&mut self, source: SocketAddr, to: SocketAddr, data: &[u8]) -> Option<bool> {
        Some(hand(self.inbox(to)?, source, data))
    }
}

/// Hands `data` from `source` to `inbox`, counted in [`totals`]; whether it was taken.
pub fn hand(inbox: &dyn Inbox, source: SocketAddr, data: &[u8]) -> bool {
    let taken = inbox.deliver(source, data);
    let counter = if taken {
        &TABLE.delivered
    } else {
        &TABLE.refused
    };
    counter.fetch_add(1, Ordering::Relaxed);
    taken
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::Mutex;

    /// An inbox that keeps what it is given, up to `room` datagrams.
    pub(crate) struct Kept {
        pub got: Mutex<Vec<(SocketAddr, Vec<u8>)>>,
        pub room: usize,
    }

    impl Kept {
        pub(crate) fn new(room: usize) -> Arc<Kept> {
            Arc::new(Kept {
                got: Mutex::new(Vec::new()),
                room,
            })
        }

        pub(crate) fn taken(&self) -> Vec<(SocketAddr, Vec<u8>)> {
            std::mem::take(&mut *self.got.lock().unwrap())
        }
    }

    impl Inbox for Kept {
        fn deliver(&self, source: SocketAddr, data: &[u8]) -> bool {
            let mut got = self.got.lock().unwrap();
            if got.len() >= self.room {
                return false;
            }
            got.push((source, data.to_vec()));
            true
        }
    }

    /// An address of its own for each test, held for the test's length: the table is the
    /// process's, and a test running beside this one must not be handed an address bound here.
    struct Held(Vec<std::net::UdpSocket>);

    impl Held {
        fn new() -> Held {
            Held(Vec::new())
        }

        fn addr(&mut self) -> SocketAddr {
            self.on(IpAddr::V4(Ipv4Addr::LOCALHOST))
        }

        fn on(&mut self, ip: IpAddr) -> SocketAddr {
            let socket = std::net::UdpSocket::bind((ip, 0)).unwrap();
            let addr = socket.local_addr().unwrap();
            self.0.push(socket);
            addr
        }
    }

    #[test]
    fn a_datagram_to_a_bound_address_lands_in_its_inbox_with_the_senders_address() {
        let mut held = Held::new();
        let (to, from) = (held.addr(), held.addr());
        let kept = Kept::new(8);
        let _binding = bind(to, kept.clone()).unwrap();
        let mut lookup = Lookup::default();
        assert_eq!(lookup.send(from, to, b"rtp"), Some(true));
        assert_eq!(kept.taken(), vec![(from, b"rtp".to_vec())]);
    }

    #[test]
    fn an_address_nobody_bound_takes_the_kernels_path() {
        let mut held = Held::new();
        let mut lookup = Lookup::default();
        assert_eq!(lookup.send(held.addr(), held.addr(), b"rtp"), None);
    }

    #[test]
    fn unbinding_is_seen_by_a_sender_that_looked_the_address_up_before() {
        let mut held = Held::new();
        let (to, from) = (held.addr(), held.addr());
        let kept = Kept::new(8);
        let binding = bind(to, kept.clone()).unwrap();
        let mut lookup = Lookup::default();
        assert_eq!(lookup.send(from, to, b"1"), Some(true));
        drop(binding);
        assert_eq!(lookup.send(from, to, b"2"), None);
        assert_eq!(kept.taken().len(), 1);
    }

    #[test]
    fn an_address_binds_once() {
        let mut held = Held::new();
        let to = held.addr();
        let _first = bind(to, Kept::new(1)).unwrap();
        assert!(bind(to, Kept::new(1)).is_none());
    }

    #[test]
    fn a_full_inbox_refuses_and_is_counted() {
        let mut held = Held::new();
        let (to, from) = (held.addr(), held.addr());
        let kept = Kept::new(1);
        let _binding = bind(to, kept.clone()).unwrap();
        let mut lookup = Lookup::default();
        let (_, refused) = totals();
        assert_eq!(lookup.send(from, to, b"1"), Some(true));
        assert_eq!(lookup.send(from, to, b"2"), Some(false));
        assert!(totals().1 > refused);
        assert_eq!(kept.taken().len(), 1);
    }

    #[test]
    fn a_wildcard_binding_takes_loopback_datagrams_for_its_port_only() {
        let mut held = Held::new();
        let wildcard = held.on(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        let from = held.addr();
        let kept = Kept::new(8);
        let _binding = bind(wildcard, kept.clone()).unwrap();
        let mut lookup = Lookup::default();
        let loopback = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), wildcard.port());
        assert_eq!(lookup.send(from, loopback, b"1"), Some(true));
        // Another host's address on the same port is not ours.
        let elsewhere = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), wildcard.port());
        assert_eq!(lookup.send(from, elsewhere, b"2"), None);
        assert_eq!(kept.taken().len(), 1);
    }

    #[test]
    fn a_wildcard_sender_speaks_from_the_address_it_sends_to() {
        let any = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 4000);
        let to: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        assert_eq!(
            source(any, to),
            "127.0.0.1:4000".parse::<SocketAddr>().unwrap()
        );
        let bound: SocketAddr = "127.0.0.2:4000".parse().unwrap();
        assert_eq!(source(bound, to), bound);
    }
}
