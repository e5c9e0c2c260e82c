//! A TCP byte stream, framed and parsed the way a connection driver does it: every frame is
//! inside the buffer and makes progress, and nothing panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem::sip::wire::{Frame, frame_stream, parse_stream_message};

const MAX_MESSAGE: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let mut buf = data;
    loop {
        match frame_stream(buf, MAX_MESSAGE) {
            Ok(Frame::Message { len }) => {
                assert!(len > 0 && len <= buf.len().min(MAX_MESSAGE));
                let _ = parse_stream_message(&buf[..len]);
                buf = &buf[len..];
            }
            Ok(Frame::KeepAlive { skip, .. }) => {
                assert!(skip > 0 && skip <= buf.len());
                buf = &buf[skip..];
            }
            Ok(Frame::Incomplete) => {
                assert!(buf.len() <= MAX_MESSAGE || !buf.windows(4).any(|w| w == b"\r\n\r\n"));
                break;
            }
            Err(_) => break,
        }
    }
});
