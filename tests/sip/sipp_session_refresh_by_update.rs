//! RFC 4028 with SIPp refreshing by UPDATE: a 90 s session refreshed every half interval for an
//! interval and a half is still up at the end (unrefreshed, the gateway sends BYE after 60 s,
//! RFC 4028 §10), and every 200 to an UPDATE confirms the interval. (It runs for two and a
//! quarter minutes: the smallest interval RFC 4028 allows is 90 s.)

use crate::common;

#[test]
fn a_session_refreshed_by_update_outlives_its_interval() {
    // No RTP flows in this call; media inactivity must not end it first.
    let gateway = common::Gateway::start("[media]\ninactivity_timeout_s = 600\n");
    let scenario = common::scenario("session_refresh_update_uac.xml");
    let stats = common::sipp(
        gateway.sip,
        &[
            "-sf",
            scenario.to_str().unwrap(),
            "-s",
            "echo",
            "-m",
            "1",
            "-timeout",
            "400s",
        ],
    );
    assert_eq!(stats.exit_code, 0, "{stats:?}");
    assert_eq!((stats.successful, stats.failed), (1, 0), "{stats:?}");
    assert!(
        !gateway.log_text().contains("session not refreshed"),
        "{}",
        gateway.log_text()
    );
}
