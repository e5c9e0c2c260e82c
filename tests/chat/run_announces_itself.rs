//! `tandem run` tells a newcomer where everything is: each interface's address, the services
//! and agents it knows, and the pages to open; SIGHUP is answered in the log (the configuration
//! is read once), and the gateway keeps running until SIGTERM.

use crate::common;

use std::time::{Duration, Instant};

const EXTRA: &str = r#"
[[services]]
name = "claims"
entries = ["claims-app"]
department = "claims"

[[agents]]
name = "alice"
display_name = "Alice"
password_hash = "$argon2id$v=19$m=19456,t=2,p=1$ASwulphIuR6xSykcpKYTZA$T+NoHIVGJzSOJyqOd+6ALkaz2cTnWe2fOg1EstjoFHM"
departments = ["claims"]
"#;

fn wait_for_log(gateway: &common::Gateway, text: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let log = gateway.log_text();
        if log.contains(text) {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "the log never said {text:?}:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_start_lists_interfaces_services_agents_and_pages() {
    let gateway = common::Gateway::start(EXTRA);
    let log = wait_for_log(&gateway, "Tandem is running");
    let http = gateway.http;
    for line in [
        format!("SIP: udp {0}, tcp {0}", gateway.sip),
        format!("WebRTC: udp {}", gateway.rtc),
        "service claims: appId claims-app, department claims".to_string(),
        "agent alice (Alice): departments claims".to_string(),
        format!("Agent Desktop: http://{http}/desk/"),
        format!("customer web chat: http://{http}/chat/?app=claims-app"),
        format!("admin: http://{http}/admin/v1/interactions, metrics: http://{http}/metrics"),
    ] {
        assert!(log.contains(&line), "no {line:?} in\n{log}");
    }
    // The pages it names are there.
    assert!(gateway.http_get("/desk/").contains("<html"));

    let status = gateway.stop();
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn sighup_is_answered_in_the_log_and_the_gateway_keeps_running() {
    let gateway = common::Gateway::start("");
    wait_for_log(&gateway, "Tandem is running");
    let pid = gateway.pid().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    wait_for_log(&gateway, "SIGHUP: the configuration is not reloaded");
    assert_eq!(gateway.http_get("/healthz").trim(), "ok");
    let status = gateway.stop();
    assert!(status.success(), "exit status {status:?}");
}
