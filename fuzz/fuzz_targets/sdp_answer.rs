//! A remote SDP offer, answered as a SIP leg answers an INVITE, and a remote SDP answer read as
//! the answer to our offer: never a panic. An answer of one stream we write must be one we
//! would accept ourselves, naming the codec, payload type and address we chose.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use libfuzzer_sys::fuzz_target;
use tandem::sip::sdp::{Direction, LocalMedia, SdpSession, accept_answer, answer};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let local = LocalMedia {
        addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
        rtp_port: 40000,
        codecs: Vec::new(),
        telephone_event: true,
    };
    let _ = accept_answer(&local, Direction::SendRecv, text);

    let mut session = SdpSession::new(7);
    let Ok(ours) = answer(text, &local, &mut session) else {
        return;
    };
    if ours.sdp.matches("\r\nm=").count() != 1 {
        // An answer to an offer of several streams; ours offer one.
        return;
    }
    let read = accept_answer(&local, Direction::SendRecv, &ours.sdp)
        .unwrap_or_else(|e| panic!("our answer is refused ({e}):\n{}", ours.sdp));
    assert_eq!(read.codec, ours.media.codec);
    assert_eq!(read.payload_type, ours.media.payload_type);
    assert_eq!(read.remote_rtp, SocketAddr::new(local.addr, local.rtp_port));
    assert_eq!(read.telephone_event_pt, ours.media.telephone_event_pt);
    assert_eq!(read.remote_direction, ours.media.local_direction);
});
