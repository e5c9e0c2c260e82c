//! SIPp's `uac_pcap` streams G.711 A-law and RFC 2833 DTMF from its pcaps to `sip:echo`; the
//! gateway returns every packet and decodes the digit.

mod common;

#[test]
fn sipp_uac_pcap_gets_its_rtp_and_dtmf_back() {
    let gateway = common::Gateway::start("");
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/usr/share/sip-tester", dir.path().join("pcap")).unwrap();
    let stats = common::sipp_in(
        dir.path(),
        gateway.sip,
        &["-sn", "uac_pcap", "-s", "echo", "-m", "2", "-l", "2"],
    );
    assert_eq!(stats.exit_code, 0, "{stats:?}");
    assert_eq!((stats.successful, stats.failed), (2, 0), "{stats:?}");
    // Each leg echoed everything it received, and the DTMF pcap's digit was decoded once per call.
    let log = gateway.log_text();
    let digits: Vec<&str> = log.lines().filter(|l| l.contains("DTMF digit")).collect();
    assert_eq!(digits.len(), 2, "{log}");
    assert!(digits.iter().all(|l| l.contains("digit=1")), "{digits:?}");
    let closed: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("media leg closed"))
        .collect();
    assert_eq!(closed.len(), 2, "{log}");
    for line in closed {
        let number = |key: &str| -> u64 {
            let at = line.find(key).unwrap() + key.len();
            line[at..]
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap()
                .parse()
                .unwrap()
        };
        let (inbound, outbound) = (number("packets_in: "), number("packets_out: "));
        assert!(inbound > 200, "{line}");
        assert_eq!(inbound, outbound, "{line}");
    }
}
