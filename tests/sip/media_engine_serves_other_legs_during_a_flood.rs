//! A leg flooded with more than its reactor reads from one socket per turn does not starve the
//! other legs of the same reactor, and every datagram of the flood is relayed or counted: read
//! and echoed, or dropped by the kernel on the full queue and reported with the next one.

use crate::media_common;

use std::time::{Duration, Instant};

use media_common::*;
use tandem::media::engine::{LegStats, Route};
use tandem::media::latch::Learning;

/// More than four receive batches of 32: the flooded socket is served over several turns.
const FLOOD: u64 = 400;

#[test]
fn a_flood_on_one_leg_leaves_the_others_served_and_is_accounted_for() {
    let (mut engine, _events) = engine();
    let (flooder, quiet) = (Peer::new(), Peer::new());
    let (a, a_addr) = open_leg_learning(&mut engine, Some(flooder.addr()), Learning::Strict);
    let (b, b_addr) = open_leg_learning(&mut engine, Some(quiet.addr()), Learning::Strict);
    engine.set_route(a, Route::Echo);
    engine.set_route(b, Route::Echo);
    latch(&engine, a, &flooder, a_addr, 1);
    latch(&engine, b, &quiet, b_addr, 2);
    while quiet.recv().is_some() {}
    let before = engine.stats(a).unwrap();

    for i in 0..FLOOD as u16 {
        flooder.send(
            &rtp(0, false, i, 160 * u32::from(i), 1, &[0x11; 160]),
            a_addr,
        );
    }
    quiet.send(&rtp(0, false, 1, 160, 2, &[0x22; 160]), b_addr);
    let (echo, _) = quiet.recv().expect("the quiet leg is answered");
    assert_eq!(&echo[12..], &[0x22; 160]);

    // A last packet once the flood is over carries the count of what the kernel dropped.
    let settled = |s: &LegStats| s.packets_in + s.overflowed - before.packets_in;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut probes = 0;
    while settled(&engine.stats(a).unwrap()) < FLOOD + probes {
        assert!(Instant::now() < deadline, "{:?}", engine.stats(a));
        flooder.send(&rtp(0, false, 5000, 0, 1, &[0x11; 160]), a_addr);
        probes += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    let after = engine.stats(a).unwrap();
    assert_eq!(
        settled(&after),
        FLOOD + probes,
        "each datagram read or counted as overflowed, once"
    );
    assert_eq!(
        after.packets_out + after.dropped,
        after.packets_in,
        "each datagram read is echoed or counted as dropped"
    );
}
