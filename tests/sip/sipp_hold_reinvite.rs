//! A hold re-INVITE (sendonly) is answered recvonly, never sendrecv.

use crate::common;

#[test]
fn sipp_hold_reinvite_gets_recvonly() {
    let gateway = common::Gateway::start("");
    let scenario = common::scenario("hold_uac.xml");
    let stats = common::sipp(
        gateway.sip,
        &[
            "-sf",
            scenario.to_str().unwrap(),
            "-s",
            "echo",
            "-m",
            "5",
            "-l",
            "5",
        ],
    );
    assert_eq!(stats.exit_code, 0, "{stats:?}");
    assert_eq!((stats.successful, stats.failed), (5, 0), "{stats:?}");
}
