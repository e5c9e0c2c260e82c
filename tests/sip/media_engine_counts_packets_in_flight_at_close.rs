//! A leg closed while packets are in flight: each packet queued for it is either relayed before
//! the close or read and counted as stray, whether the leg's sockets close with it or are kept
//! for the next leg on the port.

use crate::media_common;

use std::time::{Duration, Instant};

use media_common::*;
use tandem::media::engine::{MediaEngine, MediaSettings, Route};
use tandem::media::latch::Learning;

const BURST: u64 = 100;

#[test]
fn each_packet_queued_at_close_is_relayed_or_counted_as_stray() {
    for idle_sockets in [0, 8] {
        let (mut engine, _events) = MediaEngine::start(MediaSettings {
            idle_sockets,
            ..MediaSettings::default()
        })
        .unwrap();
        let phone = Peer::new();
        let (leg, addr) = open_leg_learning(&mut engine, Some(phone.addr()), Learning::Strict);
        engine.set_route(leg, Route::Echo);
        latch(&engine, leg, &phone, addr, 1);
        while phone.recv().is_some() {}

        // Loopback queues each datagram before `send_to` returns: all of them are on the
        // leg's socket, or already echoed, when the leg closes.
        for i in 0..BURST as u16 {
            phone.send(&rtp(0, false, i, 160 * u32::from(i), 1, &[0x55; 160]), addr);
        }
        engine.close(leg);

        let mut echoed = 0;
        while phone.recv().is_some() {
            echoed += 1;
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while echoed + engine.stray_packets() < BURST {
            assert!(Instant::now() < deadline, "packets unaccounted for");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(
            echoed + engine.stray_packets(),
            BURST,
            "each once (kept sockets: {idle_sockets}, echoed {echoed})"
        );
    }
}
