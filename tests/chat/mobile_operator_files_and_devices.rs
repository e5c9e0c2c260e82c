//! The mobile operator's page gets what the chat holds, authorised by the link's session alone:
//! the chat's opening (the customer's name, number and context, never her device id), pictures
//! and files (with the session, also once the chat is over; without it, or for another chat's
//! file, nothing), context updates. The link stays the operator's: claimed again from another
//! device it is `claimed_elsewhere`, and `move` brings the chat there, retiring the first key.

use crate::operator;
use crate::picture;

use operator::Gateway;
use serde_json::{Value, json};
use tower::ServiceExt;

/// Uploads `bytes` as `name` from `device` over the customer API; the file id.
async fn upload(gw: &Gateway, device: &str, name: &str, bytes: Vec<u8>) -> String {
    let boundary = "tandem-test-boundary";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(&bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let request = axum::http::Request::post("/clientweb/api/v1/files")
        .header(
            "authorization",
            format!(r#"MOBILE-API-140-327-PLAIN appId="claims-app", clientId="{device}""#),
        )
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(axum::body::Body::from(body))
        .unwrap();
    let response = gw.router.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    let answer: Value = serde_json::from_slice(&bytes).unwrap();
    answer["file_id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn pictures_files_and_context_reach_the_page_on_the_session_alone() {
    let mut gw = Gateway::start().await;
    let (chat, link) = gw.chat_texted_to_olga("dev-1", Some("+15550123")).await;
    let png = picture::png(24, 16);
    let photo = upload(&gw, "dev-1", "dent.png", png.clone()).await;
    let send =
        |file_id: &str| json!({"events": [{"event": "chat_session_file", "file_id": file_id}]});
    let events = format!("/chats/{chat}/events");
    gw.customer("POST", &events, "dev-1", Some(send(&photo)))
        .await;

    let claimed = gw
        .request("POST", &format!("{link}/claim"), None, None)
        .await;
    assert_eq!(claimed.status, 200);
    let session = claimed.json["session"].as_str().unwrap().to_string();
    assert_eq!(
        claimed.json["customer"],
        json!({"name": "Carol", "phone": "+15550123"}),
        "the customer's device id is her credential: never shown"
    );
    gw.customer(
        "POST",
        &events,
        "dev-1",
        Some(json!({"events": [{"event": "chat_session_location", "latitude": 48.86, "longitude": 2.29}]})),
    )
    .await;

    let seen = gw
        .operator_events_until(&link, &session, |e| e["event"] == "context")
        .await;
    let opened = &seen[0];
    assert_eq!(opened["event"], "created");
    assert_eq!(
        opened["customer"],
        json!({"name": "Carol", "phone": "+15550123"})
    );
    assert_eq!(opened["context"], json!({"policy_number": "P-7"}));
    let file = seen.iter().find(|e| e["event"] == "file").unwrap();
    assert_eq!(file["file_name"], "dent.png");
    assert_eq!(file["file_type"], "image/png");
    let url = file["url"].as_str().unwrap().to_string();
    assert_eq!(url, format!("{link}/files/{photo}"));
    let context = seen.iter().find(|e| e["event"] == "context").unwrap();
    assert_eq!(
        context["data"],
        json!({"location": {"latitude": 48.86, "longitude": 2.29}})
    );

    // The picture, with the session; nothing without it or with a wrong one.
    let bearer = format!("Bearer {session}");
    let got = gw.request("GET", &url, Some(&bearer), None).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.content_type, "image/png");
    assert_eq!(got.bytes, png);
    let anonymous = gw.request("GET", &url, None, None).await;
    assert_eq!(
        (anonymous.status, anonymous.code()),
        (401, "session_invalid")
    );
    let guessed = gw.request("GET", &url, Some("Bearer guess"), None).await;
    assert_eq!(guessed.status, 401);
    // A file of another chat is not this link's, even with a valid session.
    let other_chat = gw
        .customer("POST", "/chats", "dev-2", Some(json!({"from": "Dan"})))
        .await;
    let other_chat = other_chat.json["chat_id"].as_str().unwrap().to_string();
    let theirs = upload(&gw, "dev-2", "other.png", picture::png(4, 4)).await;
    let linked = gw
        .customer(
            "POST",
            &format!("/chats/{other_chat}/events"),
            "dev-2",
            Some(send(&theirs)),
        )
        .await;
    assert_eq!(linked.status, 200, "{:?}", linked.json);
    let other = gw
        .request(
            "GET",
            &format!("{link}/files/{theirs}"),
            Some(&bearer),
            None,
        )
        .await;
    assert_eq!((other.status, other.code()), (404, "file_not_found"));

    // Once the chat is over, the transcript on the page still shows the picture.
    let ended = gw.operator("POST", &link, "end", &session).await;
    assert_eq!(ended.status, 200, "{:?}", ended.json);
    gw.operator_events_until(&link, &session, |e| e["event"] == "ended")
        .await;
    let again = gw.request("GET", &url, Some(&bearer), None).await;
    assert_eq!(again.status, 200);
    assert_eq!(again.bytes, png);
    let replay = gw.operator("GET", &link, "events?after=0", &session).await;
    assert!(
        replay.json["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["event"] == "file" && e["file_id"] == photo.as_str()),
        "{:#}",
        replay.json
    );
}

#[tokio::test]
async fn the_link_moves_between_the_operators_devices() {
    let mut gw = Gateway::start().await;
    let (chat, link) = gw.chat_texted_to_olga("dev-1", Some("+15550123")).await;
    // A move before any claim has nothing to move.
    let early = gw
        .request("POST", &format!("{link}/move"), None, None)
        .await;
    assert_eq!((early.status, early.code()), (409, "not_claimed"));
    let first = gw.claim(&link).await;

    // Her other phone taps the link: the chat is hers, over there.
    let elsewhere = gw
        .request("POST", &format!("{link}/claim"), None, None)
        .await;
    assert_eq!(
        (elsewhere.status, elsewhere.code()),
        (409, "claimed_elsewhere")
    );
    assert_eq!(
        elsewhere.json["error"]["message"],
        "already taken by you on another device"
    );
    let moved = gw
        .request("POST", &format!("{link}/move"), None, None)
        .await;
    assert_eq!(moved.status, 200, "{:?}", moved.json);
    assert_eq!(moved.json["chat_id"], chat.as_str());
    let second = moved.json["session"].as_str().unwrap().to_string();
    assert_ne!(second, first);
    // The first device's key is retired; the second one carries the chat.
    let stale = gw.operator("GET", &link, "events?after=0", &first).await;
    assert_eq!((stale.status, stale.code()), (401, "session_invalid"));
    let said = gw
        .request(
            "POST",
            &format!("{link}/messages"),
            Some(&format!("Bearer {second}")),
            Some(json!({"msg": "Olga here, on my other phone."})),
        )
        .await;
    assert_eq!(said.status, 200, "{:?}", said.json);
    let history = gw
        .customer("GET", &format!("/chats/{chat}/history"), "dev-1", None)
        .await;
    assert!(
        history.json["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["msg"] == "Olga here, on my other phone." && e["party_id"] == "olga"),
        "{:#}",
        history.json
    );
}
