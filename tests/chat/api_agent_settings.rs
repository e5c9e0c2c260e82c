//! The agent's own mobile chat settings on the agent API: `GET/PUT /agent/v1/settings` validate
//! the number, the hours and the time zone with stable codes, every tab hears the change, and
//! the stored settings outlive the process (a new gateway on the same store has them, not the
//! configuration's); `hello` carries them with the desk's map tiles.

use crate::agent_desk as agent;
use crate::api;

use serde_json::{Value, json};
use tandem::routing::password;

fn config() -> String {
    let hash = password::hash("desk");
    format!(
        r#"
[desk]
map_tiles_url = "https://tiles.example.net/{{z}}/{{x}}/{{y}}.png"

[[services]]
name = "claims"
entries = ["claims-app"]
department = "claims"

[[agents]]
name = "alice"
password_hash = "{hash}"
departments = ["claims"]
mobile = "+15550100"
mobile_mode = "off"
"#
    )
}

async fn put(http: &reqwest::Client, base: &str, token: &str, settings: Value) -> (u16, Value) {
    let response = http
        .put(format!("{base}/agent/v1/settings"))
        .bearer_auth(token)
        .json(&json!({ "mobile_settings": settings }))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn settings_are_validated_told_to_every_tab_and_stored() {
    let api = api::Api::with_config(&config()).await;
    let (addr, server) = agent::serve(api.router.clone()).await;
    let base = format!("http://{addr}");
    let http = reqwest::Client::new();
    let token = agent::login(&http, addr, "alice", "desk").await;
    let (mut tab, hello) = agent::Desk::open(addr, &token).await;
    assert_eq!(hello["mobile_settings"]["mobile"], "+15550100", "{hello}");
    assert_eq!(hello["mobile_settings"]["mobile_mode"], "off", "{hello}");
    assert_eq!(
        hello["desk"]["map_tiles_url"], "https://tiles.example.net/{z}/{x}/{y}.png",
        "{hello}"
    );

    let schedule = |from: &str, tz: &str| json!({"time_zone": tz, "hours": [{"days": ["mon", "fri"], "from": from, "to": "08:00"}]});
    for (settings, code) in [
        (
            json!({"mobile": "call me", "mobile_mode": "on", "mobile_schedule": null}),
            "invalid_number",
        ),
        (
            json!({"mobile": null, "mobile_mode": "on", "mobile_schedule": null}),
            "number_required",
        ),
        (
            json!({"mobile": "+15550199", "mobile_mode": "schedule", "mobile_schedule": null}),
            "invalid_hours",
        ),
        (
            json!({"mobile": "+15550199", "mobile_mode": "schedule",
                "mobile_schedule": schedule("7pm", "Europe/Paris")}),
            "invalid_hours",
        ),
        (
            json!({"mobile": "+15550199", "mobile_mode": "schedule",
                "mobile_schedule": schedule("19:00", "Europe/Atlantis")}),
            "invalid_time_zone",
        ),
    ] {
        let (status, body) = put(&http, &base, &token, settings.clone()).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some(code)),
            "{settings}: {body}"
        );
    }
    let (status, body) = put(&http, &base, "not-a-token", json!({})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("token_invalid"))
    );

    let good = json!({"mobile": "+1 555 0199", "mobile_mode": "schedule",
                      "mobile_schedule": schedule("19:00", "Europe/Paris")});
    let (status, body) = put(&http, &base, &token, good).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["mobile_settings"]["mobile"], "+15550199",
        "tidied: {body}"
    );
    let told = tab.until(|v| v["event"] == "settings").await;
    assert_eq!(told["mobile_settings"], body["mobile_settings"]);
    let read: Value = http
        .get(format!("{base}/agent/v1/settings"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read["mobile_settings"], body["mobile_settings"]);
    server.abort();

    // The same store under a new gateway: her settings, not the configuration's.
    let store = api.dir.path().display().to_string();
    drop(api.router);
    let mut again = tandem::config::Config::parse(&config()).unwrap();
    again.store.url = format!("sqlite://{store}/tandem.db");
    again.files.dir = format!("{store}/files");
    let metrics = std::sync::Arc::new(tandem::metrics::Metrics::default());
    let store = tandem::chat::store::Store::open(&again.store.url, 2, metrics.clone())
        .await
        .unwrap();
    let hub = tandem::hub::Hub::open(std::sync::Arc::new(again.clone()), store, metrics, None)
        .await
        .unwrap();
    let files = tandem::chat::files::FileStore::new(&again.files.dir);
    let state = tandem::api::AppState::new(tandem::server::parts(hub, files));
    let (addr, server) = agent::serve(tandem::api::app(state)).await;
    let token = agent::login(&http, addr, "alice", "desk").await;
    let (_, hello) = agent::Desk::open(addr, &token).await;
    assert_eq!(hello["mobile_settings"]["mobile"], "+15550199", "{hello}");
    assert_eq!(
        hello["mobile_settings"]["mobile_mode"], "schedule",
        "{hello}"
    );
    server.abort();
}
