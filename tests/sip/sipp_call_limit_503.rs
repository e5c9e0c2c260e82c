//! Over `max_calls`, new INVITEs get 503 with Retry-After while the admitted calls carry on.

use crate::common;

use std::time::Duration;

#[test]
fn a_burst_beyond_the_call_limit_sees_503_and_admitted_calls_complete() {
    let gateway = common::Gateway::start("[sip]\nmax_calls = 10\n");
    // Ten calls that each stay up for eight seconds fill the limit.
    let long = common::scenario("long_call_uac.xml");
    let admitted = common::sipp_spawn(
        gateway.sip,
        &[
            "-sf",
            long.to_str().unwrap(),
            "-s",
            "echo",
            "-m",
            "10",
            "-r",
            "100",
            "-l",
            "10",
        ],
    );
    std::thread::sleep(Duration::from_millis(1500));
    // The burst arrives while they are up: every one of its INVITEs must see 503.
    let busy = common::scenario("expect_503_uac.xml");
    let burst = common::sipp(
        gateway.sip,
        &[
            "-sf",
            busy.to_str().unwrap(),
            "-m",
            "40",
            "-r",
            "200",
            "-l",
            "40",
        ],
    );
    assert_eq!(burst.exit_code, 0, "{burst:?}");
    assert_eq!((burst.successful, burst.failed), (40, 0), "{burst:?}");
    let admitted = admitted.wait();
    assert_eq!(admitted.exit_code, 0, "{admitted:?}");
    assert_eq!(
        (admitted.successful, admitted.failed),
        (10, 0),
        "{admitted:?}"
    );
    // Once they ended, calls are admitted again.
    let after = common::sipp(
        gateway.sip,
        &["-sn", "uac", "-s", "echo", "-m", "5", "-l", "5"],
    );
    assert_eq!((after.successful, after.failed), (5, 0), "{after:?}");
}
