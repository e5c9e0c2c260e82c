//! Journey 3 of the Agent Desktop, in headless Chromium against the real binary: the Chat Panel
//! shows the conversation oldest first with the customer's and the agent's messages apart, a
//! message of 400 characters whole, the customer's typing, the customer's picture inline (it
//! decodes: `naturalWidth` > 0) and a PDF as a download link; the agent's message reaches the
//! customer and shows "Read" once the customer read it; the agent attaches a picture that the
//! customer receives. `/metrics` is idle afterwards.

use crate::common;
use crate::customer_files;
use crate::desk;
use crate::desk_browser;

use desk::{Customer, auth, config};
use desk_browser::{DeskBrowser, assert_idle};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chat_panel_shows_the_conversation_pictures_files_typing_and_receipts() {
    let gateway = common::Gateway::start(&config(""));
    let base = format!("http://{}", gateway.http);
    let http = reqwest::Client::new();
    let png = gateway.dir.path().join("damage.png");
    std::fs::write(&png, customer_files::red_png()).unwrap();
    let mut page = DeskBrowser::start("desk_chat_panel.mjs", &base, &[png.to_str().unwrap()]);

    page.step("open a chat").await;
    let mut customer =
        Customer::open(&http, gateway.http, "claims-app", desk::DEVICE, "+15550100").await;
    customer.say("First: my car was hit.").await;
    page.go("open a chat", json!({})).await;

    page.step("customer writes a long message and a picture and a pdf")
        .await;
    let long = format!("Second: {}end.", "the whole bumper is gone and ".repeat(14));
    assert!(long.len() > 160 * 2);
    customer.say(&long).await;
    let picture = customer_files::upload(
        &http,
        gateway.http,
        &auth(),
        customer_files::red_png(),
        "damage.png",
    )
    .await;
    customer.send(customer_files::file_event(&picture)).await;
    let report = customer_files::upload(
        &http,
        gateway.http,
        &auth(),
        customer_files::pdf(),
        "report.pdf",
    )
    .await;
    customer.send(customer_files::file_event(&report)).await;
    page.go(
        "customer writes a long message and a picture and a pdf",
        json!({"long": long}),
    )
    .await;

    page.step("customer types").await;
    customer
        .send(json!([{"event": "chat_session_typing"}]))
        .await;
    page.go("customer types", json!({})).await;

    page.step("customer reads it").await;
    let said = customer
        .until(|v| {
            v["event"] == "chat_session_message" && v["msg"] == "Thank you Carol, I see the photo."
        })
        .await;
    customer
        .send(json!([{"event": "chat_session_message_read", "ref_msg_id": said["msg_id"]}]))
        .await;
    page.go("customer reads it", json!({})).await;

    page.step("agent attached").await;
    let file = customer
        .until(|v| v["event"] == "chat_session_file" && v["party_id"] == "alice")
        .await;
    assert_eq!(file["file_type"], "image/png", "{file}");

    let done = page.finish().await;
    assert_eq!(done["naturalWidth"], 8, "{done}");
    assert!(
        done["pdfLink"].as_str().unwrap().contains(&report),
        "{done}"
    );
    let order: Vec<&str> = done["order"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(order[0], "First: my car was hit.", "{done}");
    assert_eq!(order[1], long, "a long message whole: {done}");
    assert_eq!(
        order.last().copied(),
        Some("Thank you Carol, I see the photo."),
        "{done}"
    );
    assert!(done["theirs"].as_u64().unwrap() >= 4, "{done}");
    assert_eq!(done["mine"], 2, "{done}");

    customer.send(json!([{"event": "chat_session_end"}])).await;
    assert_idle(&gateway);
}
