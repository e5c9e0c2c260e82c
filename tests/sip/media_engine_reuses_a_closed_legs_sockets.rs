//! Within its budget, the engine keeps a closed leg's sockets bound for the next leg on the same
//! port: meanwhile that port is as deaf as a closed one (what arrives is counted as stray, never
//! answered), and a new leg there works as on fresh sockets.

use crate::media_common;

use std::time::{Duration, Instant};

use media_common::*;
use tandem::media::engine::{MediaEngine, MediaSettings, Route};
use tandem::media::latch::Learning;

#[test]
fn a_kept_port_is_deaf_until_the_next_leg_opens_on_it() {
    let (mut engine, _events) = MediaEngine::start(MediaSettings {
        idle_sockets: 4,
        ..MediaSettings::default()
    })
    .unwrap();
    let phone = Peer::new();
    let (leg, addr) = open_leg_learning(&mut engine, Some(phone.addr()), Learning::Strict);
    engine.set_route(leg, Route::Echo);
    latch(&engine, leg, &phone, addr, 1);
    while phone.recv().is_some() {}
    engine.close(leg);
    assert_eq!(engine.idle_sockets(), 1);

    let stray = engine.stray_packets();
    for i in 0..5u16 {
        phone.send(&rtp(0, false, i, 0, 1, &[0x55; 160]), addr);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while engine.stray_packets() < stray + 5 {
        assert!(Instant::now() < deadline, "kept sockets read nothing");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        phone.recv().is_none(),
        "nothing answers on a closed leg's port"
    );

    // The next leg on the port takes the kept sockets over.
    let again = engine
        .open(addr.port(), Some(phone.addr()), Learning::Strict)
        .expect("the kept port opens again");
    assert_eq!(engine.idle_sockets(), 0);
    engine.set_route(again, Route::Echo);
    latch(&engine, again, &phone, addr, 2);
    let (echo, from) = phone.recv().expect("the new leg echoes");
    assert_eq!(from, addr);
    assert_eq!(&echo[12..], &[0xff; 160], "what the phone sent");
    assert_eq!(
        engine.stray_packets(),
        stray + 5,
        "the new leg's packets are its own"
    );
}
