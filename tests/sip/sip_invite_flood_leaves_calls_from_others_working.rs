//! A flood of INVITEs that are answered and never ACKed, all from one address, cannot take the
//! RTP port pool: past its budget of unconfirmed calls that address gets `503` with
//! `Retry-After`, a caller from another address gets through with its audio echoed, the
//! refusals are counted in `/metrics`, and the flood's ports go back to the pool without
//! waiting for its dialogs to time out.
//!
//! Everything runs with the shipped defaults but for the echo service, which the harness turns
//! on. The gateway's pool (200 ports) is far smaller than the flood (300 INVITEs): without the
//! budget the flood takes every port and the other caller gets `503 No Media Ports`.

use crate::common;

const FLOOD: usize = 300;
/// `sip.max_unconfirmed_calls_per_source` by default.
const UNCONFIRMED_BUDGET: usize = 32;

fn refusals(metrics: &str, reason: &str) -> u64 {
    let series = format!("tandem_refusals_total{{reason=\"{reason}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_flood_of_unconfirmed_invites_from_one_address_does_not_deny_a_call_from_another() {
    let gateway = common::Gateway::start("");
    let logs = tempfile::tempdir().unwrap();
    let flood_log = logs.path().join("flood.log");
    let flood = common::scenario("invite_without_ack.xml");
    let count = FLOOD.to_string();
    let flooded = common::sipp_spawn(
        gateway.sip,
        &[
            "-i",
            "127.0.0.2",
            "-sf",
            flood.to_str().unwrap(),
            "-m",
            &count,
            "-r",
            "100",
            "-trace_logs",
            "-log_file",
            flood_log.to_str().unwrap(),
        ],
    )
    .wait();
    assert_eq!(
        (flooded.exit_code, flooded.failed),
        (0, 0),
        "{flooded:?}\n{}",
        gateway.log_text()
    );
    let logged = std::fs::read_to_string(&flood_log).unwrap();
    let answered = logged.lines().filter(|l| *l == "answered").count();
    let refused: Vec<&str> = logged
        .lines()
        .filter(|l| l.starts_with("refused retry-after="))
        .collect();
    assert_eq!(answered, UNCONFIRMED_BUDGET, "{logged}");
    assert_eq!(answered + refused.len(), FLOOD, "{logged}");
    assert!(
        refused.iter().all(|l| l != &"refused retry-after=0"),
        "every 503 says when to retry: {refused:?}"
    );

    // A caller from another address, while the flood's dialogs still wait for their ACKs.
    let dir = common::pcap_dir();
    let call = common::sipp_in(
        dir.path(),
        gateway.sip,
        &[
            "-i",
            "127.0.0.3",
            "-sn",
            "uac_pcap",
            "-s",
            "echo",
            "-m",
            "1",
        ],
    );
    assert_eq!(
        (call.exit_code, call.successful, call.failed),
        (0, 1, 0),
        "{call:?}\n{}",
        gateway.log_text()
    );
    // The refusals are counted, and the flood's ports went back without an ACK: every media
    // leg is closed, each flood call's by the early release.
    let metrics = gateway.wait_for_metric("tandem_media_legs 0");
    let counted =
        refusals(&metrics, "sip_unconfirmed_calls") + refusals(&metrics, "sip_invite_rate");
    assert_eq!(counted as usize, refused.len(), "{metrics}");
    let log = gateway.log_text();
    let released = log
        .lines()
        .filter(|l| l.contains("no ACK yet; media port released"))
        .count();
    assert_eq!(released, UNCONFIRMED_BUDGET, "{log}");
    let echoed: Vec<(u64, u64)> = gateway
        .closed_legs()
        .into_iter()
        .filter(|(inbound, _)| *inbound > 0)
        .collect();
    assert!(
        matches!(echoed.as_slice(), [(inbound, outbound)] if *inbound > 200 && inbound == outbound),
        "the call's audio came back packet for packet: {echoed:?}"
    );
}
