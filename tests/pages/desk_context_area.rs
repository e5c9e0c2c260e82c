//! Journey 5 of the Agent Desktop, in headless Chromium against the real binary: the Context
//! Information Area lists the app's context, shows a Leaflet map with a marker at the
//! customer's position (tiles from `desk.map_tiles_url`; they cannot load here, and the marker,
//! the coordinates and a link still show), and refreshes live when the app sends more context.
//! `/metrics` is idle afterwards.

use crate::common;
use crate::desk;
use crate::desk_browser;

use desk::{Customer, config};
use desk_browser::{DeskBrowser, assert_idle};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_context_area_lists_the_context_and_maps_the_position_live() {
    // Tiles from a port where nothing listens: as on a desk without internet.
    let tiles = "\n[desk]\nmap_tiles_url = \"http://127.0.0.1:9/tiles/{z}/{x}/{y}.png\"\n";
    let gateway = common::Gateway::start(&config(tiles));
    let base = format!("http://{}", gateway.http);
    let http = reqwest::Client::new();
    let mut page = DeskBrowser::start("desk_context.mjs", &base, &[]);

    page.step("open a chat").await;
    let mut customer = Customer::open_with(
        &http,
        gateway.http,
        "claims-app",
        desk::DEVICE,
        json!({"from": "Carol", "phone_number": "+15550100",
               "parameters": {"policy": "P-77", "claim_type": "collision"}}),
    )
    .await;
    page.go("open a chat", json!({})).await;

    page.step("customer sends the accident's position").await;
    customer
        .send(json!([{"event": "chat_session_location", "latitude": 48.8566, "longitude": 2.3522}]))
        .await;
    page.go("customer sends the accident's position", json!({}))
        .await;

    page.step("app updates the context").await;
    customer
        .send(json!([
            {"event": "chat_session_context", "data": {"vehicle": "AB-123-CD"}},
            {"event": "chat_session_location", "latitude": 48.86, "longitude": 2.35}
        ]))
        .await;
    page.go("app updates the context", json!({})).await;

    let done = page.finish().await;
    let listed = done["listed"].as_str().unwrap();
    assert!(
        listed.contains("Policy") && listed.contains("P-77"),
        "{done}"
    );
    assert!(
        listed.contains("Claim type") && listed.contains("collision"),
        "{done}"
    );
    let link = done["link"].as_str().unwrap();
    assert!(
        link.contains("mlat=48.8566") && link.contains("mlon=2.3522"),
        "{done}"
    );
    assert!(
        done["tile"]
            .as_str()
            .unwrap_or_default()
            .starts_with("http://127.0.0.1:9/tiles/"),
        "tiles come from desk.map_tiles_url: {done}"
    );

    customer.send(json!([{"event": "chat_session_end"}])).await;
    assert_idle(&gateway);
}
