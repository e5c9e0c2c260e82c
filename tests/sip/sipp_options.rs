//! OPTIONS to the gateway is answered with what it supports.

use crate::common;

#[test]
fn sipp_options_gets_allow_accept_and_supported() {
    let gateway = common::Gateway::start("");
    let scenario = common::scenario("options_uac.xml");
    for transport in ["u1", "t1"] {
        let stats = common::sipp(
            gateway.sip,
            &[
                "-sf",
                scenario.to_str().unwrap(),
                "-t",
                transport,
                "-m",
                "5",
                "-l",
                "5",
            ],
        );
        assert_eq!(stats.exit_code, 0, "{transport}: {stats:?}");
        assert_eq!(
            (stats.successful, stats.failed),
            (5, 0),
            "{transport}: {stats:?}"
        );
    }
}
