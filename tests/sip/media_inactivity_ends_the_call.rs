//! A call whose media stops is ended by the gateway with BYE after the inactivity timeout.

use crate::common;

#[test]
fn silence_beyond_the_timeout_brings_a_bye() {
    let gateway = common::Gateway::start("[media]\ninactivity_timeout_s = 2\n");
    let mut phone = common::RawPhone::new(gateway.sip, "silent-1");
    let media = phone.call_echo();
    // A little audio, then nothing.
    for seq in 0..5u16 {
        phone
            .rtp
            .send_to(
                &common::rtp_packet(0, seq, 160 * seq as u32, &[0xff; 160]),
                media,
            )
            .unwrap();
    }
    let bye = loop {
        let message = phone.recv();
        if message.starts_with("BYE ") {
            break message;
        }
    };
    assert!(bye.contains("Call-ID: silent-1"), "{bye}");
    phone.answer_ok(&bye);
}
