//! A caller cancels while echo rings: 200 to the CANCEL, 487 to the INVITE, nothing left over.

use crate::common;

#[test]
fn sipp_cancels_a_ringing_call() {
    let gateway = common::Gateway::start("[sip]\necho_ring_ms = 3000\n");
    let scenario = common::scenario("cancel_uac.xml");
    let stats = common::sipp(
        gateway.sip,
        &[
            "-sf",
            scenario.to_str().unwrap(),
            "-m",
            "10",
            "-r",
            "10",
            "-l",
            "10",
        ],
    );
    assert_eq!(stats.exit_code, 0, "{stats:?}");
    assert_eq!((stats.successful, stats.failed), (10, 0), "{stats:?}");
}
