//! One UDP datagram: never a panic, and a reply never carries a line break the input smuggled
//! in, nor is it read back as a request.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tandem::sip::wire::{Incoming, parse_datagram};

fuzz_target!(|data: &[u8]| {
    let Err(rejection) = parse_datagram(data) else {
        return;
    };
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
});
