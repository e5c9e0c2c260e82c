//! SIGTERM stops the gateway with a clean exit, even with a call up.

use crate::common;

#[test]
fn sigterm_ends_the_process_cleanly() {
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
            "1",
            "-l",
            "1",
        ],
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    let status = gateway.stop();
    assert!(status.success(), "exit status {status:?}");
    drop(caller);
}
