//! Journey 4 of the Agent Desktop on the agent's phones, in headless Chromium against the real
//! binary: in the Contact Info panel the agent chooses to talk on her registered SIP softphone,
//! or on her own mobile, and clicks the customer's number. Tandem places both SIP calls and
//! bridges them in its media engine; the panel shows the call connected with its running
//! duration (and no Mute: the browser is not on the call), Release call hangs up both phones,
//! and the panel shows the call ended. The customer's call-me request, accepted from the desk,
//! is taken on the phone chosen too.
//!
//! The phones behind the trunk are one SIPp UAS (`trunk_phone_plays.xml`): the customer's
//! phone plays SIPp's A-law capture, the agent's mobile stays silent. The softphone is SIPp
//! registered as alice, echoing RTP (`softphone_answer_app_call.xml`). Both scenarios fail a
//! call whose INVITE lacks the interaction's headers. Every wait is bounded.

use crate::common;
use crate::desk;
use crate::desk_browser;
use crate::desk_phone::{self, MOBILE, NUMBER};

use std::path::Path;
use std::time::Duration;

use desk::Customer;
use desk_browser::{DeskBrowser, assert_idle};
use serde_json::{Value, json};

/// What the journey saw: the page's last line and each SIPp's statistics and log.
struct Seen {
    done: Value,
    phones: common::SippStats,
    phones_log: String,
    softphone: Option<(common::SippStats, String)>,
    /// Packets in and out of each media leg the engine closed.
    legs: Vec<(u64, u64)>,
    gateway_log: String,
}

/// Runs `desk_devices.mjs` with the agent talking on `label`; `calls` customer calls (the
/// clicked number, then the accepted call-me request when `calls` is 2).
async fn journey(label: &str, prefix: &str, calls: u32, softphone: bool) -> Seen {
    let phone_port = common::free_port();
    let recordings = tempfile::tempdir().unwrap();
    let gateway = common::Gateway::start(&desk_phone::config_with_agent_phones(
        phone_port,
        recordings.path(),
    ));
    let base = format!("http://{}", gateway.http);
    let http = reqwest::Client::new();
    let logs = tempfile::tempdir().unwrap();
    let pcap = common::pcap_dir();

    // The mobile is behind the trunk too: one more call there for each of the customer's.
    let trunk_calls = if softphone { calls } else { 2 * calls };
    let phones_log = logs.path().join("phones.log");
    let scenario = common::scenario("trunk_phone_plays.xml");
    let phones = common::sipp_spawn_in_dir(
        pcap.path(),
        gateway.sip,
        &[
            "-p",
            &phone_port.to_string(),
            "-sf",
            scenario.to_str().unwrap(),
            "-m",
            &trunk_calls.to_string(),
            "-trace_logs",
            "-log_file",
            phones_log.to_str().unwrap(),
        ],
    );
    let softphone_log = logs.path().join("softphone.log");
    let softphone = softphone.then(|| {
        let port = common::free_port();
        common::register_on(port, gateway.sip, "alice", "alice-secret");
        let scenario = common::scenario("softphone_answer_app_call.xml");
        common::sipp_spawn_on(
            port,
            gateway.sip,
            &[
                "-sf",
                scenario.to_str().unwrap(),
                "-rtp_echo",
                "-m",
                &calls.to_string(),
                "-trace_logs",
                "-log_file",
                softphone_log.to_str().unwrap(),
            ],
        )
    });

    let mut args = vec![NUMBER, label, prefix];
    if calls == 2 {
        args.push("accept");
    }
    let mut page = DeskBrowser::start("desk_devices.mjs", &base, &args);
    page.step("open a chat").await;
    let mut customer =
        Customer::open(&http, gateway.http, "claims-app", desk::DEVICE, NUMBER).await;
    page.go("open a chat", json!({})).await;
    page.step("talking").await;
    wait_played(&phones_log, 1).await;
    page.go("talking", json!({})).await;
    if calls == 2 {
        page.step("customer asks to be called").await;
        customer
            .signal(json!({"type": "REQUEST_PHONE_CALL", "number": NUMBER}))
            .await;
        page.go("customer asks to be called", json!({})).await;
        page.step("talking again").await;
        wait_played(&phones_log, 2).await;
        page.go("talking again", json!({})).await;
    }
    page.step("calls made").await;
    let done = page.finish().await;
    customer.send(json!([{"event": "chat_session_end"}])).await;

    let phones = sipp_result(phones).await;
    let softphone = match softphone {
        Some(sipp) => Some((
            sipp_result(sipp).await,
            std::fs::read_to_string(&softphone_log).unwrap_or_default(),
        )),
        None => None,
    };
    assert_idle(&gateway);
    Seen {
        done,
        phones,
        phones_log: std::fs::read_to_string(&phones_log).unwrap_or_default(),
        softphone,
        legs: gateway.closed_legs(),
        gateway_log: gateway.log_text(),
    }
}

/// Waits until the customer's phone has played its four seconds for the `nth` time.
async fn wait_played(log: &Path, nth: usize) {
    let played = format!("number={NUMBER} played");
    for _ in 0..300 {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.matches(&played).count() >= nth {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "the customer's phone never played {nth} times: {}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

async fn sipp_result(sipp: common::Sipp) -> common::SippStats {
    tokio::time::timeout(
        Duration::from_secs(90),
        tokio::task::spawn_blocking(move || sipp.wait()),
    )
    .await
    .expect("SIPp ends within its own timeout")
    .unwrap()
}

/// The numbers the phones behind the trunk were called on, in order.
fn numbers_called(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("X-Interaction-Id="))
        .filter_map(|l| l.split("number=").nth(1)?.split(' ').next())
        .collect()
}

/// What the panel showed: connected with a duration and no Mute, then ended.
fn assert_panel(done: &Value, talking: &str, ended: &str) {
    let talking = done[talking].as_str().unwrap_or_default();
    assert!(talking.contains("Connected"), "{done:#}");
    assert!(talking.contains("Release call"), "{done:#}");
    assert!(!talking.contains("Mute"), "{done:#}");
    let ended = done[ended].as_str().unwrap_or_default();
    assert!(ended.contains("Call ended after 0:"), "{done:#}");
}

fn count_lines(done: &Value, pred: impl Fn(&str) -> bool) -> usize {
    done["lines"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| pred(l.as_str().unwrap()))
        .count()
}

/// The conversation lists both calls (the clicked number, then the accepted request).
fn assert_calls_listed(done: &Value) {
    assert_eq!(count_lines(done, |l| l == "Call started"), 2, "{done:#}");
    assert_eq!(
        count_lines(done, |l| l.starts_with("Call ended")),
        2,
        "{done:#}"
    );
    let requested = format!("Call to {NUMBER} requested by the customer");
    assert_eq!(count_lines(done, |l| l == requested), 1, "{done:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_phone_number_calls_the_customer_with_the_agent_on_her_softphone() {
    let seen = journey("Softphone", "softphone", 2, true).await;
    let done = &seen.done;
    assert_panel(done, "talking", "ended");
    assert_panel(done, "accepted", "acceptedEnded");
    assert_eq!(done["mute"], 0, "{done:#}");
    assert_calls_listed(done);

    let (softphone, softphone_log) = seen.softphone.unwrap();
    for (who, stats) in [("phones", &seen.phones), ("softphone", &softphone)] {
        assert_eq!(
            (stats.exit_code, stats.successful, stats.failed),
            (0, 2, 0),
            "{who}: {stats:?}\ngateway log:\n{}",
            seen.gateway_log
        );
    }
    assert_eq!(numbers_called(&seen.phones_log), [NUMBER, NUMBER]);
    // Audio went both ways through the bridge: the customer's phone's leg took its audio in
    // and sent the softphone's echo out, and the softphone's leg the other way round.
    let talking = seen
        .legs
        .iter()
        .filter(|(i, o)| *i > 100 && *o > 100)
        .count();
    assert_eq!(talking, 4, "{:?}", seen.legs);
    assert_eq!(
        softphone_log.matches("X-Interaction-Id=").count(),
        2,
        "{softphone_log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_phone_number_calls_the_customer_with_the_agent_on_her_own_mobile() {
    let seen = journey("My mobile", "mobile", 2, false).await;
    let done = &seen.done;
    assert_panel(done, "talking", "ended");
    assert_panel(done, "accepted", "acceptedEnded");
    assert_eq!(done["mute"], 0, "{done:#}");
    assert_calls_listed(done);

    let stats = &seen.phones;
    assert_eq!(
        (stats.exit_code, stats.successful, stats.failed),
        (0, 4, 0),
        "{stats:?}\ngateway log:\n{}",
        seen.gateway_log
    );
    // Each time both SIP calls went through the trunk: the customer's number and alice's
    // mobile; so the accepted request was taken on the mobile, not in the browser.
    let mut numbers = numbers_called(&seen.phones_log);
    numbers.sort();
    assert_eq!(numbers, [NUMBER, NUMBER, MOBILE, MOBILE]);
    // The customer's audio reached the mobile through the bridge.
    assert!(
        seen.legs.iter().any(|(i, _)| *i > 100) && seen.legs.iter().any(|(_, o)| *o > 100),
        "{:?}",
        seen.legs
    );
}
