//! A trunk with credentials is a trunk only once it proves them: its INVITE to a service
//! number is challenged with `407 Proxy-Authenticate`, and with the right digest it reaches the
//! service (a phone call opens an interaction and rings until the queue gives up); with a
//! wrong one it is refused `403` at once, although it comes from the trunk's own address, and
//! the failure is counted in `/metrics` like a guessed REGISTER.
//!
//! A trunk without addresses that REGISTERs with its credentials is a trunk from where it
//! registered: its plain INVITE from there reaches the service without a challenge.
//!
//! SIPp is the carrier on the trunk's address and answers the challenge with `-au`/`-ap`
//! through `[authentication]` (MD5, the only algorithm it knows).

use crate::common;

use tandem::routing::password;

const SERVICE_NUMBER: &str = "+15559000";
const CALLER: &str = "+15550177";

/// `claims` answers the service number from the trunk `carrier` on `trunk_port`, which must
/// authenticate as carrier / trunk-secret; the queue gives up after two seconds.
fn config(trunk_port: u16) -> String {
    with_trunk(&format!(
        "addresses = [\"127.0.0.1:{trunk_port}\"]\n\
         [[services]]\ntrunk = \"carrier\"\ncaller_id = \"+15550100\"\n"
    ))
}

/// `claims` with the trunk `carrier` (carrier / trunk-secret) and `extra` lines closing the
/// trunk's entry and opening the service's.
fn with_trunk(extra: &str) -> String {
    let hash = password::hash("desk");
    format!(
        r#"
[registrar]
algorithms = ["MD5"]

[[sip.trunks]]
name = "carrier"
username = "carrier"
password = "trunk-secret"
{extra}
name = "claims"
entries = ["claims-app"]
department = "claims"
routing = "ring_all"
numbers = ["{SERVICE_NUMBER}"]

[routing]
max_wait_s = 2

[[agents]]
name = "alice"
display_name = "Alice"
password_hash = "{hash}"
departments = ["claims"]
"#
    )
}

/// SIPp on the trunk's port running `scenario` once as the carrier with `password`.
fn carrier(
    gateway: &common::Gateway,
    port: u16,
    scenario: &str,
    password: &str,
) -> common::SippStats {
    let scenario = common::scenario(scenario);
    common::sipp_spawn_on(
        port,
        gateway.sip,
        &[
            "-sf",
            scenario.to_str().unwrap(),
            "-m",
            "1",
            "-key",
            "caller",
            CALLER,
            "-au",
            "carrier",
            "-ap",
            password,
        ],
    )
    .wait()
}

#[test]
fn a_trunk_with_the_right_credentials_reaches_the_service_number() {
    let trunk = common::free_port();
    let gateway = common::Gateway::start(&config(trunk));
    // The scenario needs the 407, then a 180 on the authenticated INVITE, then the queue's
    // 480 with its Reason.
    let stats = carrier(
        &gateway,
        trunk,
        "trunk_auth_service_call.xml",
        "trunk-secret",
    );
    assert_eq!(
        (stats.exit_code, stats.successful, stats.failed),
        (0, 1, 0),
        "{stats:?}\ngateway log:\n{}",
        gateway.log_text()
    );
    let text = gateway.log_text();
    assert!(text.contains("phone call opened an interaction"), "{text}");
    let metrics = gateway.http_get("/metrics");
    assert!(!metrics.contains("sip_digest_failed"), "{metrics}");
}

#[test]
fn a_trunk_with_a_wrong_password_is_refused_from_its_own_address() {
    let trunk = common::free_port();
    let gateway = common::Gateway::start(&config(trunk));
    // The scenario needs the 407, then 403 on the answered INVITE and nothing in between.
    let stats = carrier(&gateway, trunk, "trunk_auth_refused.xml", "guess");
    assert_eq!(
        (stats.exit_code, stats.successful, stats.failed),
        (0, 1, 0),
        "{stats:?}\ngateway log:\n{}",
        gateway.log_text()
    );
    gateway.wait_for_metric("tandem_refusals_total{reason=\"sip_digest_failed\"} 1");
    let text = gateway.log_text();
    assert!(!text.contains("phone call opened an interaction"), "{text}");
}

#[test]
fn a_trunk_registered_with_its_credentials_calls_from_there_without_a_challenge() {
    let gateway = common::Gateway::start(&with_trunk("[[services]]\n"));
    let trunk = common::free_port();
    common::register_on(trunk, gateway.sip, "carrier", "trunk-secret");
    // The plain scenario knows nothing of 407: it must ring, then take the queue's 480.
    let scenario = common::scenario("phone_calls_service_number.xml");
    let stats = common::sipp_spawn_on(
        trunk,
        gateway.sip,
        &[
            "-sf",
            scenario.to_str().unwrap(),
            "-m",
            "1",
            "-key",
            "caller",
            CALLER,
        ],
    )
    .wait();
    assert_eq!(
        (stats.exit_code, stats.successful, stats.failed),
        (0, 1, 0),
        "{stats:?}\ngateway log:\n{}",
        gateway.log_text()
    );
    let text = gateway.log_text();
    assert!(text.contains("phone call opened an interaction"), "{text}");
}
