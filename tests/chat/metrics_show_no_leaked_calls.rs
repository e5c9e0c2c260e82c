//! `/metrics` counts SIP calls and media legs while they are up, and shows none left after.

use crate::common;

#[test]
fn calls_and_media_legs_are_counted_and_released() {
    let gateway = common::Gateway::start("");
    let long = common::scenario("long_call_uac.xml");
    let caller = common::sipp_spawn(
        gateway.sip,
        &[
            "-sf",
            long.to_str().unwrap(),
            "-s",
            "echo",
            "-m",
            "3",
            "-l",
            "3",
            "-r",
            "10",
        ],
    );
    gateway.wait_for_metric("tandem_sip_calls 3");
    gateway.wait_for_metric("tandem_media_legs 3");
    let stats = caller.wait();
    assert_eq!((stats.successful, stats.failed), (3, 0), "{stats:?}");
    gateway.wait_for_metric("tandem_sip_calls 0");
    gateway.wait_for_metric("tandem_media_legs 0");
}
