//! SIPp's built-in `uac` calls `sip:echo` over one TCP connection (`-t t1`).

use crate::common;

#[test]
fn sipp_uac_calls_echo_over_tcp() {
    let gateway = common::Gateway::start("");
    let stats = common::sipp(
        gateway.sip,
        &[
            "-sn", "uac", "-s", "echo", "-t", "t1", "-m", "50", "-r", "50", "-l", "50",
        ],
    );
    assert_eq!(stats.exit_code, 0, "{stats:?}");
    assert_eq!((stats.successful, stats.failed), (50, 0), "{stats:?}");
}
