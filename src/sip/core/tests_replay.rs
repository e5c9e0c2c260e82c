//! Replaying a run: two cores built from the same seed and fed the same inputs on the same
//! virtual clock send the same bytes, because every tag, branch, Call-ID, SDP session id and
//! registrar secret comes from the [`Ids`] they were given.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::tests::config;
use super::*;
use crate::config::RegistrarConfig;
use crate::sip::wire::parse_datagram;

const A_ADDR: &str = "127.0.0.1:5060";
const B_ADDR: &str = "127.0.0.1:5080";

/// A core at `addr` whose every random choice comes from `seed`.
fn seeded_core(addr: &str, seed: u64, ports: u16, now: Instant) -> SipCore {
    let mut ids = Ids::seeded(seed);
    let registrar = Registrar::new(&RegistrarConfig::default(), now, ids.bytes());
    let mut config = config(10, Duration::from_secs(2));
    config.advertised = addr.parse().unwrap();
    SipCore::with_ids(config, registrar, PortPool::new(ports, ports + 100), ids)
}

/// Two cores on one virtual clock that log every datagram either sends, in order.
struct Replay {
    a: SipCore,
    b: SipCore,
    start: Instant,
    now: Instant,
    sent: Vec<(Duration, SocketAddr, Vec<u8>)>,
    /// What `a` reported, in order.
    events: Vec<CoreEvent>,
}

impl Replay {
    fn new(seed: u64) -> Replay {
        let now = Instant::now();
        Replay {
            a: seeded_core(A_ADDR, seed, 30000, now),
            b: seeded_core(B_ADDR, seed.wrapping_add(1), 31000, now),
            start: now,
            now,
            sent: Vec::new(),
            events: Vec::new(),
        }
    }

    /// Delivers datagrams both ways until the network is quiet, logging each.
    fn settle(&mut self) {
        let (a_addr, b_addr) = (A_ADDR.parse().unwrap(), B_ADDR.parse().unwrap());
        loop {
            let mut moved = false;
            for (from, to) in [(a_addr, b_addr), (b_addr, a_addr)] {
                let (sender, receiver) = if from == a_addr {
                    (&mut self.a, &mut self.b)
                } else {
                    (&mut self.b, &mut self.a)
                };
                while let Some(t) = sender.poll_transmit() {
                    assert_eq!(t.to.addr, to);
                    let at = self.now - self.start;
                    self.sent.push((at, t.to.addr, t.payload.to_vec()));
                    let message = parse_datagram(&t.payload).unwrap();
                    receiver.handle_message(self.now, message, Peer::udp(from));
                    moved = true;
                }
            }
            self.events
                .extend(std::iter::from_fn(|| self.a.poll_event()));
            while self.b.poll_event().is_some() {}
            while self.a.poll_media().is_some() || self.b.poll_media().is_some() {}
            if !moved {
                break;
            }
        }
    }

    /// Runs both cores' timers up to `until`, one deadline at a time.
    fn run_until(&mut self, until: Duration) {
        self.settle();
        for _ in 0..10_000 {
            let next = [self.a.poll_timeout(), self.b.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(at) if at <= self.start + until => {
                    self.now = self.now.max(at);
                    self.a.handle_timeout(self.now);
                    self.b.handle_timeout(self.now);
                    self.settle();
                }
                _ => break,
            }
        }
        self.now = self.start + until;
    }

    fn uri(text: &str) -> rsipstack::sip::Uri {
        rsipstack::sip::parse_uri(text).unwrap()
    }

    /// A call to the other core's echo (which rings first), an application call to it, a
    /// request to a user it does not know, then both calls hung up.
    fn scenario(seed: u64) -> Vec<(Duration, SocketAddr, Vec<u8>)> {
        let mut net = Replay::new(seed);
        let b = Peer::udp(B_ADDR.parse().unwrap());
        let echo = Replay::uri("sip:echo@127.0.0.1:5080");
        let plain = net.a.call(net.now, echo.clone(), b, "agent").unwrap();
        let dial = AppDial {
            target: DialTarget::Uri { uri: echo, via: b },
            from_user: "service".into(),
            extra_headers: vec![("X-Service".into(), "claims".into())],
        };
        let app = net.a.dial(net.now, dial).unwrap();
        let nobody = Replay::uri("sip:nobody@127.0.0.1:5080");
        let refused = net.a.call(net.now, nobody, b, "agent").unwrap();
        net.run_until(Duration::from_secs(5));
        assert!(net.events.contains(&CoreEvent::Failed {
            call: refused,
            code: 404
        }));
        let dialog = net.events.iter().find_map(|e| match e {
            CoreEvent::Answered { call, dialog } if *call == plain => Some(dialog.clone()),
            _ => None,
        });
        let dialog = dialog.expect("the echo answers after its ring");
        assert!(net.events.iter().any(|e| matches!(e,
            CoreEvent::Answered { call, .. } if *call == app.call)));

        net.a.hangup_app_call(net.now, app.call);
        net.run_until(Duration::from_secs(10));
        assert!(net.events.iter().any(|e| matches!(e,
            CoreEvent::Ended { call: Some(call), by_peer: false, .. } if *call == app.call)));
        net.a.hangup(net.now, &dialog);
        net.run_until(Duration::from_secs(60));
        assert_eq!((net.a.stats().calls, net.b.stats().calls), (0, 0));
        net.sent
    }
}

#[test]
fn the_same_seed_replays_the_same_datagrams() {
    let first = Replay::scenario(42);
    let second = Replay::scenario(42);
    assert!(first.len() > 10, "the scenario sends: {}", first.len());
    let text = |log: &[(Duration, SocketAddr, Vec<u8>)]| -> Vec<String> {
        log.iter()
            .map(|(at, to, bytes)| format!("{at:?} {to}\n{}", String::from_utf8_lossy(bytes)))
            .collect()
    };
    assert_eq!(text(&first), text(&second));
    assert_eq!(first, second, "byte for byte");

    // The seed is what makes them equal: another one gives other tags and branches.
    let other = Replay::scenario(43);
    assert_eq!(first.len(), other.len());
    assert_ne!(first, other);
}
