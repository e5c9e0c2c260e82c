//! The customer's phone for the desk's click-to-call journeys: the gateway's `claims` service
//! dials through a trunk whose next hop is SIPp (`phone_answer.xml`, echoing RTP with
//! `-rtp_echo`), and records its calls.
#![allow(dead_code)]

use std::path::Path;

use tandem::routing::password;

use crate::common;

/// The chat's phone number, which the phone's scenario checks in the request URI.
pub const NUMBER: &str = "+15550123";

/// `claims` dials through `carrier` (the phone on `phone_port`) and records into `recordings`.
pub fn config(phone_port: u16, recordings: &Path) -> String {
    let hash = password::hash("desk");
    format!(
        r#"
[sip]
recording_dir = "{}"

[[sip.trunks]]
name = "carrier"
addresses = ["127.0.0.1:{phone_port}"]

[[services]]
name = "claims"
entries = ["claims-app"]
department = "claims"
routing = "ring_all"
trunk = "carrier"
caller_id = "+15550100"
recording = true

[[agents]]
name = "alice"
display_name = "Alice"
password_hash = "{hash}"
departments = ["claims"]
"#,
        recordings.display()
    )
}

/// Alice's own mobile, where her calls on the device `mobile` ring.
pub const MOBILE: &str = "+15550177";

/// `claims` dials through `carrier` (the phone on `phone_port`) with no caller id of its own and
/// records into `recordings`; alice has a softphone account (alice / alice-secret, MD5) and her
/// mobile, for journeys whose calls reach the agent's own phones.
pub fn config_with_agent_phones(phone_port: u16, recordings: &Path) -> String {
    let hash = password::hash("desk");
    format!(
        r#"
[sip]
recording_dir = "{}"

[[sip.trunks]]
name = "carrier"
addresses = ["127.0.0.1:{phone_port}"]

[registrar]
algorithms = ["MD5"]

[[registrar.accounts]]
user = "alice"
password = "alice-secret"

[[services]]
name = "claims"
entries = ["claims-app"]
department = "claims"
routing = "ring_all"
trunk = "carrier"
recording = true

[[agents]]
name = "alice"
display_name = "Alice"
password_hash = "{hash}"
departments = ["claims"]
mobile = "{MOBILE}"
"#,
        recordings.display()
    )
}

/// SIPp answering `calls` calls on `port` and echoing their RTP, as the customer's phone.
pub fn phone(
    gateway: &common::Gateway,
    port: u16,
    calls: u32,
    log: &Path,
) -> tokio::task::JoinHandle<common::SippStats> {
    let scenario = common::scenario("phone_answer.xml");
    let calls = calls.to_string();
    let phone = common::sipp_spawn_on(
        port,
        gateway.sip,
        &[
            "-sf",
            scenario.to_str().unwrap(),
            "-rtp_echo",
            "-m",
            &calls,
            "-trace_logs",
            "-log_file",
            log.to_str().unwrap(),
        ],
    );
    tokio::task::spawn_blocking(move || phone.wait())
}
