//! Parse + transaction handling cost of one echo call as the UAS sees it (INVITE, ACK, BYE),
//! without sockets: `cargo bench --bench sip_core`.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use tandem::config::RegistrarConfig;
use tandem::media::ports::PortPool;
use tandem::sip::core::{CoreConfig, InviteLimits, SipCore};
use tandem::sip::peer::Peer;
use tandem::sip::registrar::Registrar;
use tandem::sip::transaction::TimerConfig;
use tandem::sip::wire::parse_datagram;

const OFFER: &str = "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n\
    t=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

fn invite(n: u64) -> String {
    format!(
        "INVITE sip:echo@127.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-{n}-0\r\n\
         From: sipp <sip:sipp@127.0.0.1:5061>;tag={n}SIPpTag00\r\n\
         To: <sip:echo@127.0.0.1:5060>\r\nCall-ID: {n}-bench@127.0.0.1\r\nCSeq: 1 INVITE\r\n\
         Contact: sip:sipp@127.0.0.1:5061\r\nMax-Forwards: 70\r\nSubject: Performance Test\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{OFFER}",
        OFFER.len()
    )
}

fn in_dialog(method: &str, n: u64, cseq: u32, to_tag: &str) -> String {
    format!(
        "{method} sip:echo@127.0.0.1:5060 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-{n}-{cseq}{method}\r\n\
         From: sipp <sip:sipp@127.0.0.1:5061>;tag={n}SIPpTag00\r\n\
         To: <sip:echo@127.0.0.1:5060>;tag={to_tag}\r\nCall-ID: {n}-bench@127.0.0.1\r\n\
         CSeq: {cseq} {method}\r\nContact: sip:sipp@127.0.0.1:5061\r\nMax-Forwards: 70\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

fn bench(c: &mut Criterion) {
    let invite_text = invite(1);
    c.bench_function("parse INVITE", |b| {
        b.iter(|| parse_datagram(std::hint::black_box(invite_text.as_bytes())).unwrap())
    });

    let now = Instant::now();
    let config = CoreConfig {
        timers: TimerConfig::default(),
        advertised: "127.0.0.1:5060".parse().unwrap(),
        net: Default::default(),
        domain: "127.0.0.1".into(),
        user_agent: "Tandem".into(),
        max_calls: usize::MAX,
        retry_after_s: 5,
        echo_ring: Duration::ZERO,
        echo: true,
        // One source sends every call here: no per-source budget.
        invites: InviteLimits {
            per_minute: u32::MAX,
            burst: u32::MAX,
            max_unconfirmed: usize::MAX,
            release_media_after: Duration::from_secs(8),
        },
        accounts: HashSet::new(),
        trunks: Vec::new(),
        agent_answer_timeout: Duration::from_secs(30),
        min_session_expires: 90,
        record: false,
        service_numbers: HashSet::new(),
        service_call_hold: Duration::from_secs(330),
    };
    let registrar = Registrar::with_random_secret(&RegistrarConfig::default(), now);
    let mut core = SipCore::new(config, registrar, PortPool::new(20000, 65000));
    let peer = Peer::udp("127.0.0.1:5061".parse().unwrap());
    let mut n = 0u64;
    c.bench_function("echo call as UAS (INVITE, ACK, BYE)", |b| {
        b.iter(|| {
            n += 1;
            let invite = invite(n);
            core.handle_message(now, parse_datagram(invite.as_bytes()).unwrap(), peer);
            let mut tag = String::new();
            while let Some(t) = core.poll_transmit() {
                if t.payload.starts_with(b"SIP/2.0 200") {
                    let text = std::str::from_utf8(&t.payload).unwrap();
                    let to = text.lines().find(|l| l.starts_with("To:")).unwrap();
                    tag = to.split(";tag=").nth(1).unwrap().to_string();
                }
            }
            let ack = in_dialog("ACK", n, 1, &tag);
            core.handle_message(now, parse_datagram(ack.as_bytes()).unwrap(), peer);
            let bye = in_dialog("BYE", n, 2, &tag);
            core.handle_message(now, parse_datagram(bye.as_bytes()).unwrap(), peer);
            while core.poll_transmit().is_some() {}
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
