//! What the mobile operator's page asks of a chat's calls, against the router in process with
//! the test as the leg driver: the Call button dials the chat's number with the operator on
//! their own mobile (`StartLeg {target: phone, device: mobile}`); End is refused while the
//! call is up (`release_call_before_chat`) and while a request waits, and accepted once the
//! call is gone; a phone-call request accepted dials the same way, one declined is declined;
//! a video request never waits: it is declined at once with `video_needs_desk`, which the
//! customer's app is told; a chat without a number cannot be called.

use crate::operator;

use operator::Gateway;
use serde_json::{Value, json};
use tandem::bridge::{Action, AgentDevice, LegId, LegKind, LegTarget};

const NUMBER: &str = "+15550123";

/// The customer's events from her long poll until one is `event` (bounded).
async fn customer_sees(
    gw: &Gateway,
    chat: &str,
    device: &str,
    pred: impl Fn(&Value) -> bool,
) -> Value {
    for _ in 0..30 {
        let page = gw
            .customer("GET", &format!("/chats/{chat}/events"), device, None)
            .await;
        assert_eq!(page.status, 200, "{:?}", page.json);
        if let Some(e) = page.json["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| pred(e))
        {
            return e.clone();
        }
    }
    panic!("the customer never saw the event");
}

/// Expects the action that starts a voice call to the customer's phone on Olga's mobile.
fn dials_on_the_mobile(action: Action) -> LegId {
    match action {
        Action::StartLeg {
            leg,
            kind: LegKind::Voice,
            target: LegTarget::Phone(number),
            service,
            device: AgentDevice::Mobile,
            ..
        } if number == NUMBER && service == "claims" => leg,
        other => panic!("not a call to {NUMBER} on the mobile: {other:?}"),
    }
}

#[tokio::test]
async fn the_call_button_dials_through_the_gateway_and_end_waits_for_the_call() {
    let mut gw = Gateway::start().await;
    let (chat, link) = gw.chat_texted_to_olga("dev-1", Some(NUMBER)).await;
    let session = gw.claim(&link).await;

    let called = gw.operator("POST", &link, "call", &session).await;
    assert_eq!(called.status, 200, "{:?}", called.json);
    let leg = dials_on_the_mobile(gw.next_action(&chat).await);
    // One call at a time.
    let again = gw.operator("POST", &link, "call", &session).await;
    assert_eq!((again.status, again.code()), (409, "call_in_progress"));
    // End is refused while the call is being set up and while it is up.
    let refused = gw.operator("POST", &link, "end", &session).await;
    assert_eq!(
        (refused.status, refused.code()),
        (409, "release_call_before_chat")
    );
    gw.leg(&chat, leg, true, "").await;
    let refused = gw.operator("POST", &link, "end", &session).await;
    assert_eq!(
        (refused.status, refused.code()),
        (409, "release_call_before_chat")
    );
    assert_eq!(
        refused.json["error"]["message"],
        "release the call before disconnecting the chat"
    );
    // The page shows the call's state as it goes.
    let events = gw
        .operator_events_until(&link, &session, |e| {
            e["event"] == "leg" && e["state"] == "up"
        })
        .await;
    let placed = events
        .iter()
        .find(|e| e["event"] == "leg" && e["state"] == "connecting")
        .unwrap();
    assert_eq!(placed["number"], NUMBER, "{placed}");
    assert_eq!(placed["kind"], "voice", "{placed}");

    // Hang up: the driver is asked to release the leg; once it is gone, End ends the chat.
    let released = gw.operator("POST", &link, "release", &session).await;
    assert_eq!(released.status, 200, "{:?}", released.json);
    assert_eq!(gw.next_action(&chat).await, Action::ReleaseLeg { leg });
    gw.leg(&chat, leg, false, "released").await;
    // A second call in the same chat, released again.
    gw.operator("POST", &link, "call", &session).await;
    let second = dials_on_the_mobile(gw.next_action(&chat).await);
    assert_ne!(second, leg);
    gw.leg(&chat, second, false, "the customer's phone hung up")
        .await;
    let ended = gw.operator("POST", &link, "end", &session).await;
    assert_eq!(ended.status, 200, "{:?}", ended.json);
    assert_eq!(ended.json["state"], "ending");
    let events = gw
        .operator_events_until(&link, &session, |e| e["event"] == "ended")
        .await;
    let calls: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "leg" && e["state"] == "released")
        .collect();
    assert_eq!(calls.len(), 2, "{events:#?}");
    assert_eq!(calls[1]["reason"], "the customer's phone hung up");
    // The chat is over: nothing more can be called.
    let late = gw.operator("POST", &link, "call", &session).await;
    assert_eq!((late.status, late.code()), (409, "interaction_closed"));
}

#[tokio::test]
async fn requests_are_answered_from_the_page_and_video_is_declined_at_once() {
    let mut gw = Gateway::start().await;
    let (chat, link) = gw.chat_texted_to_olga("dev-1", Some(NUMBER)).await;
    let session = gw.claim(&link).await;
    let signal =
        |data: Value| json!({"events": [{"event": "chat_session_signaling", "data": data}]});
    let events = format!("/chats/{chat}/events");
    // The customer's first poll, so her long poll follows the chat from here.
    gw.customer("GET", &events, "dev-1", None).await;

    // A call with video from the app: video is declined at once, saying why; voice waits.
    let asked = gw
        .customer(
            "POST",
            &events,
            "dev-1",
            Some(signal(json!({"type": "REQUEST_CALL", "offerVideo": true}))),
        )
        .await;
    assert_eq!(asked.status, 200, "{:?}", asked.json);
    let rejected = customer_sees(&gw, &chat, "dev-1", |e| {
        e["data"]["type"] == "CALL_REJECTED"
    })
    .await;
    assert_eq!(
        rejected["data"]["reason_code"], "video_needs_desk",
        "{rejected}"
    );
    assert_eq!(rejected["data"]["video"], true);
    assert_eq!(
        rejected["data"]["reason"],
        "video needs an agent at a desk: this agent answers from a mobile phone"
    );
    let seen = gw
        .operator_events_until(&link, &session, |e| {
            e["event"] == "leg" && e["kind"] == "video" && e["state"] == "released"
        })
        .await;
    let video = seen
        .iter()
        .find(|e| e["kind"] == "video" && e["state"] == "released")
        .unwrap();
    assert_eq!(video["reason"], "video_needs_desk");
    let voice = seen
        .iter()
        .find(|e| e["kind"] == "voice" && e["state"] == "awaiting_approval")
        .expect("the voice request waits");
    assert_eq!(voice["app"], true, "{voice}");
    // A waiting request holds the chat open too.
    let refused = gw.operator("POST", &link, "end", &session).await;
    assert_eq!(refused.code(), "release_call_before_chat");
    // Declined from the page: the customer is told.
    let declined = gw.operator("POST", &link, "decline_call", &session).await;
    assert_eq!(declined.status, 200, "{:?}", declined.json);
    let rejected = customer_sees(&gw, &chat, "dev-1", |e| {
        e["data"]["type"] == "CALL_REJECTED"
    })
    .await;
    assert_eq!(rejected["data"]["reason_code"], "declined", "{rejected}");
    let nothing = gw.operator("POST", &link, "accept_call", &session).await;
    assert_eq!((nothing.status, nothing.code()), (409, "no_call_request"));

    // The customer asks to be called on her phone: Accept dials it, Olga on her mobile.
    gw.customer(
        "POST",
        &events,
        "dev-1",
        Some(signal(json!({"type": "REQUEST_PHONE_CALL"}))),
    )
    .await;
    gw.operator_events_until(&link, &session, |e| {
        e["event"] == "leg" && e["state"] == "awaiting_approval" && e["number"] == NUMBER
    })
    .await;
    let accepted = gw.operator("POST", &link, "accept_call", &session).await;
    assert_eq!(accepted.status, 200, "{:?}", accepted.json);
    let leg = dials_on_the_mobile(gw.next_action(&chat).await);
    gw.leg(&chat, leg, true, "").await;
    let up = customer_sees(&gw, &chat, "dev-1", |e| {
        e["event"] == "chat_session_call_state" && e["state"] == "up"
    })
    .await;
    assert_eq!(up["call"], leg.0);
}

#[tokio::test]
async fn a_chat_without_a_number_cannot_be_called() {
    let mut gw = Gateway::start().await;
    let (_chat, link) = gw.chat_texted_to_olga("dev-1", None).await;
    let session = gw.claim(&link).await;
    let refused = gw.operator("POST", &link, "call", &session).await;
    assert_eq!((refused.status, refused.code()), (409, "no_phone_number"));
    // Without the session nothing is done at all.
    let stranger = gw.operator("POST", &link, "call", "guess").await;
    assert_eq!((stranger.status, stranger.code()), (401, "session_invalid"));
}
