//! One UDP datagram: never a panic; a message that parses, written out again, parses to the same
//! transaction and dialog keys; and a reply never carries a line break the input smuggled in,
//! nor is it read back as a request.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem::sip::wire::{Incoming, parse_datagram};

fuzz_target!(|data: &[u8]| {
    match parse_datagram(data) {
        Ok(message) => round_trips(message),
        Err(rejection) => {
            let Some(reply) = rejection.reply else {
                return;
            };
            let end = reply.windows(4).position(|w| w == b"\r\n\r\n");
            assert_eq!(end, Some(reply.len() - 4));
            let lf = reply.iter().filter(|&&b| b == b'\n').count();
            let cr = reply.iter().filter(|&&b| b == b'\r').count();
            let crlf = reply.windows(2).filter(|w| w == b"\r\n").count();
            assert_eq!((lf, cr), (crlf, crlf));
            assert!(!matches!(parse_datagram(&reply), Ok(Incoming::Request(..))));
        }
    }
});

/// What we forward or answer is what rsipstack writes from the parsed message: it must read
/// back as the same message.
fn round_trips(message: Incoming) {
    match message {
        Incoming::Request(req, meta) => {
            let bytes = req.to_bytes();
            let again = parse_datagram(&bytes);
            let Ok(Incoming::Request(again, again_meta)) = again else {
                panic!(
                    "request did not parse back: {again:?}\n{}",
                    String::from_utf8_lossy(&bytes)
                );
            };
            assert_eq!(again_meta, meta);
            assert_eq!(again.method, req.method);
            assert_eq!(again.uri, req.uri);
            assert_eq!(again.body, req.body);
        }
        Incoming::Response(resp, meta) => {
            let bytes = resp.to_bytes();
            let again = parse_datagram(&bytes);
            let Ok(Incoming::Response(again, again_meta)) = again else {
                panic!(
                    "response did not parse back: {again:?}\n{}",
                    String::from_utf8_lossy(&bytes)
                );
            };
            assert_eq!(again_meta, meta);
            assert_eq!(again.status_code.code(), resp.status_code.code());
            assert_eq!(again.body, resp.body);
        }
    }
}
