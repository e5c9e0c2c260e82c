//! Round robin by SMS, over real HTTP with a fake provider on 127.0.0.1: one operator is texted
//! at a time; when the offer times out the next one is texted and the first link expires.

use crate::api;
use crate::sms;

use std::time::Duration;

use serde_json::{Value, json};
use tandem::routing::password;

fn config(base: &str, provider: &str) -> String {
    let hash = password::hash("desk");
    let operator = |name: &str, number: &str| {
        format!(
            "[[agents]]\nname = \"{name}\"\npassword_hash = \"{hash}\"\n\
             departments = [\"claims\"]\nmobile = \"{number}\"\nmobile_mode = \"on\"\n"
        )
    };
    format!(
        r#"
[http]
public_url = "{base}"

[sms]
url = "{provider}"

[routing]
offer_timeout_s = 1

[[services]]
name = "claims"
entries = ["claims-app"]
department = "claims"
routing = "round_robin"

{}
{}
"#,
        operator("olga", "+15550101"),
        operator("omar", "+15550102"),
    )
}

#[tokio::test]
async fn one_operator_is_texted_at_a_time_and_the_next_after_the_timeout() {
    let mut provider = sms::FakeProvider::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let api = api::Api::with_config(&config(&base, &provider.url())).await;
    let router = api.router.clone();
    let server = tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let http = reqwest::Client::new();

    api.create_chat("dev-1").await;
    let first = provider.next(Duration::from_secs(5)).await;
    assert_eq!(first.to(), "+15550101");
    // Nobody else until the offer times out (1 s).
    let second = provider.next(Duration::from_secs(5)).await;
    assert_eq!(second.to(), "+15550102");
    assert!(second.at - first.at >= Duration::from_millis(900));

    let claim = |link: String| {
        let http = http.clone();
        async move {
            let r = http.post(format!("{link}/claim")).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, refused) = claim(first.link()).await;
    assert_eq!(status, 410, "{refused}");
    assert_eq!(refused["error"]["code"], "link_expired");
    let (status, won) = claim(second.link()).await;
    assert_eq!(status, 200, "{won}");
    assert_eq!(won["agent"], json!("omar"));
    server.abort();
}
