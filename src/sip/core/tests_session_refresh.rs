//! RFC 4028 session timers refreshed by UPDATE, on a virtual clock: the caller refreshes every
//! half interval, each 2xx confirms the interval (so a real caller keeps refreshing), and the
//! call outlives several intervals.

use std::time::Duration;

use super::tests::{OFFER, Phone, core, to_tag};
use super::*;

const TIMER: &str = "Supported: timer\r\nSession-Expires: 90;refresher=uac\r\n";

#[test]
fn a_session_refreshed_by_update_every_half_interval_stays_up() {
    let now = Instant::now();
    let mut phone = Phone::new(core(10, Duration::ZERO, now), now);
    let invite = phone.request("INVITE", "sip:echo@127.0.0.1", "st1", 1, None, TIMER, OFFER);
    phone.send(&invite);
    let ok = phone.received().remove(0);
    assert!(ok.contains("Session-Expires: 90;refresher=uac\r\n"), "{ok}");
    let tag = to_tag(&ok);
    let ack = phone.in_dialog("ACK", "st1a", 1, &tag, "", "");
    phone.send(&ack);

    // Three intervals, refreshed by an SDP-less UPDATE every 45 s.
    for (i, cseq) in (2..=7).enumerate() {
        let sent = phone.advance(Duration::from_secs(45));
        assert!(
            sent.iter().all(|m| !m.starts_with("BYE ")),
            "ended before refresh {i}: {sent:?}"
        );
        let update = phone.in_dialog("UPDATE", &format!("st1u{cseq}"), cseq, &tag, TIMER, "");
        phone.send(&update);
        let answer = phone.received().remove(0);
        assert!(answer.starts_with("SIP/2.0 200"), "{answer}");
        // Without these the caller takes the timer as off and stops refreshing (§9, §10).
        assert!(
            answer.contains("Session-Expires: 90;refresher=uac\r\n"),
            "refresh {i}: {answer}"
        );
        assert!(
            answer.contains("Require: timer\r\n"),
            "refresh {i}: {answer}"
        );
        assert!(
            answer.contains("Contact: <sip:tandem@127.0.0.1:5060>\r\n"),
            "{answer}"
        );
    }
    let sent = phone.advance(Duration::from_secs(30));
    assert!(sent.iter().all(|m| !m.starts_with("BYE ")), "{sent:?}");
    assert_eq!(phone.core.stats().calls, 1, "the call is still up");
}

#[test]
fn a_session_nobody_refreshes_is_ended() {
    let now = Instant::now();
    let mut phone = Phone::new(core(10, Duration::ZERO, now), now);
    let invite = phone.request("INVITE", "sip:echo@127.0.0.1", "st2", 1, None, TIMER, OFFER);
    phone.send(&invite);
    let tag = to_tag(&phone.received().remove(0));
    let ack = phone.in_dialog("ACK", "st2a", 1, &tag, "", "");
    phone.send(&ack);
    // §10: the one who does not refresh ends it at interval − min(32, interval / 3).
    let sent = phone.advance(Duration::from_secs(59));
    assert!(sent.iter().all(|m| !m.starts_with("BYE ")), "{sent:?}");
    let sent = phone.advance(Duration::from_secs(2));
    assert!(sent.iter().any(|m| m.starts_with("BYE ")), "{sent:?}");
}

#[test]
fn a_refresh_without_session_expires_turns_the_timer_off() {
    let now = Instant::now();
    let mut phone = Phone::new(core(10, Duration::ZERO, now), now);
    let invite = phone.request("INVITE", "sip:echo@127.0.0.1", "st3", 1, None, TIMER, OFFER);
    phone.send(&invite);
    let tag = to_tag(&phone.received().remove(0));
    let ack = phone.in_dialog("ACK", "st3a", 1, &tag, "", "");
    phone.send(&ack);
    let update = phone.in_dialog("UPDATE", "st3u", 2, &tag, "", "");
    phone.send(&update);
    let answer = phone.received().remove(0);
    assert!(!answer.contains("Session-Expires"), "{answer}");
    let sent = phone.advance(Duration::from_secs(600));
    assert!(sent.iter().all(|m| !m.starts_with("BYE ")), "{sent:?}");
}
