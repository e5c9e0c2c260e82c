//! Journey 2 of the Agent Desktop, in headless Chromium against the real binary: offers show
//! the service, the customer's name and the first message, with a browser notification; a
//! ring-all offer that a colleague (another agent on the agent API) takes goes with "taken by
//! another agent"; several chats at once each have their tab and unread count; a declined
//! offer goes. `/metrics` is idle afterwards.

use crate::common;
use crate::desk;
use crate::desk_browser;

use desk::{Customer, Desk, config};
use desk_browser::{DeskBrowser, assert_idle};
use serde_json::json;
use tandem::routing::password;

async fn customer(
    http: &reqwest::Client,
    gw: &common::Gateway,
    device: &str,
    name: &str,
) -> Customer {
    Customer::open_with(
        http,
        gw.http,
        "claims-app",
        device,
        json!({"from": name, "phone_number": "+15550100"}),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offers_show_who_and_what_and_go_when_taken_and_chats_count_unread() {
    let bob = format!(
        "\n[[agents]]\nname = \"bob\"\ndisplay_name = \"Bob\"\npassword_hash = \"{}\"\ndepartments = [\"claims\"]\n",
        password::hash("desk")
    );
    let gateway = common::Gateway::start(&config(&bob));
    let base = format!("http://{}", gateway.http);
    let http = reqwest::Client::new();
    let mut page = DeskBrowser::start("desk_offers.mjs", &base, &[]);

    page.step("first chat").await;
    let mut colleague = Desk::login(&http, gateway.http, "bob", "desk").await;
    let mut carol = customer(&http, &gateway, "dev-carol", "Carol").await;
    carol.say("My car was hit on the A6").await;
    page.go("first chat", json!({})).await;

    page.step("colleague takes it").await;
    colleague.accept(&mut carol).await;
    page.go("colleague takes it", json!({})).await;

    page.step("two more chats").await;
    // Bob is offered them too (ring-all) but takes none.
    let mut dan = customer(&http, &gateway, "dev-dan", "Dan").await;
    let mut eve = customer(&http, &gateway, "dev-eve", "Eve").await;
    page.go("two more chats", json!({})).await;
    page.step("Dan writes twice").await;
    dan.say("First message from Dan").await;
    dan.say("Second message from Dan").await;
    page.go("Dan writes twice", json!({})).await;

    page.step("a fourth chat").await;
    let mut fay = customer(&http, &gateway, "dev-fay", "Fay").await;
    page.go("a fourth chat", json!({})).await;
    page.step("declined").await;

    let done = page.finish().await;
    assert_eq!(done["notification"]["title"], "New chat", "{done}");
    assert!(
        done["notification"]["body"]
            .as_str()
            .unwrap()
            .contains("Carol"),
        "{done}"
    );
    assert_eq!(done["offersLeft"], 0, "{done}");
    assert_eq!(done["tabs"], 2, "{done}");

    for c in [&mut carol, &mut dan, &mut eve, &mut fay] {
        c.send(json!([{"event": "chat_session_end"}])).await;
    }
    drop(colleague);
    assert_idle(&gateway);
}
