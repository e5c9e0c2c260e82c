//! SIPp's `uac_pcap` streams G.711 A-law and RFC 2833 DTMF from its pcaps to `sip:echo`; the
//! gateway returns every packet and decodes the digit.

use crate::common;

#[test]
fn sipp_uac_pcap_gets_its_rtp_and_dtmf_back() {
    let gateway = common::Gateway::start("");
    let dir = common::pcap_dir();
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
    let legs = gateway.closed_legs();
    assert_eq!(legs.len(), 2, "{log}");
    for (inbound, outbound) in legs {
        assert!(inbound > 200, "{inbound} packets in");
        assert_eq!(inbound, outbound, "every packet echoed");
    }
}
