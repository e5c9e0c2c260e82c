//! A call request the agent declines, and one nobody answers in `[chat] call_request_timeout_s`:
//! the customer's app gets `CALL_REJECTED` with reason code `declined` or `expired` (and
//! `video: false`), nothing is offered to either peer, and the chat stays active.

use crate::desk;

use desk::{Session, call_state, is_offer, signal, signal_type};
use serde_json::Value;

/// The app's rejection, checked for `reason_code`; then the chat must still carry a message.
async fn rejected_and_chat_goes_on(s: &mut Session, reason_code: &str) {
    let rejected = s
        .app
        .until_keeping(|v| signal_type(v) == Some("CALL_REJECTED"))
        .await;
    let data = signal(&rejected).unwrap();
    assert_eq!(data["reason_code"], reason_code, "{rejected}");
    assert_eq!(data["video"], false, "{rejected}");
    assert!(data["reason"].as_str().is_some_and(|r| !r.is_empty()));
    let released = s
        .desk
        .until_keeping(|v| call_state(v, "voice", "released"))
        .await;
    assert_eq!(released["reason"], reason_code, "{released}");

    let ack = s.agent_command("accept_call").await;
    assert_eq!(ack["error"]["code"], "no_call_request", "{ack}");

    let ack = s.customer_says("m-after", "no call then").await;
    assert_eq!(ack["event"], "ack", "{ack}");
    s.desk
        .until_keeping(|v| v["event"] == "message" && v["msg"] == "no call then")
        .await;
    let ack = s
        .desk
        .command(
            serde_json::json!({"command": "send_message", "chat_id": s.chat,
                                 "msg": "I will call you later"}),
        )
        .await;
    assert_eq!(ack["event"], "ack", "{ack}");
    s.app
        .until_keeping(|v| {
            v["event"] == "chat_session_message" && v["msg"] == "I will call you later"
        })
        .await;

    let offered = |log: &[Value]| log.iter().any(is_offer);
    assert!(
        !offered(&s.app.log) && !offered(&s.desk.log),
        "nothing offered:\n{}",
        s.seen()
    );
    assert!(!s.app.saw(|v| v["event"] == "chat_session_ended"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_call_request_is_rejected_declined() {
    let mut s = Session::open("").await;
    s.request_call(false).await;
    let ack = s.agent_command("decline_call").await;
    assert_eq!(ack["event"], "ack", "decline_call: {ack}");
    rejected_and_chat_goes_on(&mut s, "declined").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_call_request_is_rejected_expired() {
    let mut s = Session::open("[chat]\ncall_request_timeout_s = 2\n").await;
    s.request_call(false).await;
    rejected_and_chat_goes_on(&mut s, "expired").await;
}
