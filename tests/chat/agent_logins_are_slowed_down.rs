//! Guessing agents' passwords does not pay: past a few wrong passwords an agent's name, and
//! the address guessing, are locked for longer and longer (`429 login_locked` with
//! `Retry-After`, the right password refused unchecked meanwhile), the lock expires by itself,
//! and the refusals are counted in `/metrics`. Logout closes the sockets its tokens opened.
//! Tokens are stored: they outlive a restart, and so does a logout.

use crate::agent_desk;
use crate::common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use agent_desk::Desk;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tandem::routing::password;

fn config() -> String {
    let hash = password::hash("desk");
    format!(
        r#"
[security]
failures_before_lockout = 3
first_lockout_ms = 2000
max_lockout_s = 4

[[services]]
name = "claims"
entries = ["claims-app"]
department = "claims"

[[agents]]
name = "alice"
password_hash = "{hash}"
departments = ["claims"]

[[agents]]
name = "bob"
password_hash = "{hash}"
departments = ["claims"]
"#
    )
}

async fn login(
    http: &reqwest::Client,
    at: SocketAddr,
    name: &str,
    password: &str,
) -> (StatusCode, Option<String>, Value) {
    let response = http
        .post(format!("http://{at}/agent/v1/login"))
        .json(&json!({"name": name, "password": password}))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let retry = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (status, retry, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_lock_the_name_until_the_lock_expires() {
    let gateway = common::Gateway::start(&config());
    let guesser = common::client_from([127, 0, 0, 2]);
    let mut answers = Vec::new();
    for _ in 0..6 {
        answers.push(login(&guesser, gateway.http, "alice", "guess").await);
    }
    let codes: Vec<&str> = answers
        .iter()
        .map(|(_, _, body)| body["error"]["code"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        codes,
        [
            "bad_credentials",
            "bad_credentials",
            "bad_credentials",
            "bad_credentials",
            "login_locked",
            "login_locked"
        ]
    );
    let (status, retry, _) = &answers[5];
    assert_eq!(*status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        retry
            .as_deref()
            .is_some_and(|s| s.parse::<u64>().unwrap() >= 1)
    );

    // Alice herself, from her own desk, is refused while her name is locked ...
    let desk = common::client_from([127, 0, 0, 3]);
    let (status, _, body) = login(&desk, gateway.http, "alice", "desk").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    // ... and gets in once it expires.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, _, body) = login(&desk, gateway.http, "alice", "desk").await;
        if status == StatusCode::OK {
            assert!(body["token"].is_string());
            break;
        }
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
        assert!(Instant::now() < deadline, "the lock never expired");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let metrics = tokio::task::block_in_place(|| gateway.http_get("/metrics"));
    assert!(
        metrics.contains("tandem_refusals_total{reason=\"login_failed\"} 4"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tandem_refusals_total{reason=\"login_locked\"}"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_guessing_many_names_is_locked_and_others_are_not() {
    let gateway = common::Gateway::start(&config());
    let guesser = common::client_from([127, 0, 0, 4]);
    for name in ["carol", "dave", "erin", "frank"] {
        let (status, _, _) = login(&guesser, gateway.http, name, "guess").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    // Bob's right password from the guessing address waits for the lock ...
    let (status, _, body) = login(&guesser, gateway.http, "bob", "desk").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"]["code"], "login_locked");
    // ... while from anywhere else he logs in at once.
    let (status, _, body) = login(
        &common::client_from([127, 0, 0, 5]),
        gateway.http,
        "bob",
        "desk",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_closes_the_agents_open_sockets() {
    let gateway = common::Gateway::start(&config());
    let http = reqwest::Client::new();
    let mut first = Desk::login(&http, gateway.http, "alice", "desk").await;
    let (mut second, _) = Desk::open(gateway.http, &first.token.clone()).await;
    let out = http
        .post(format!("http://{}/agent/v1/logout", gateway.http))
        .bearer_auth(&first.token)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::OK);
    for desk in [&mut first, &mut second] {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !desk.closed {
            assert!(
                Instant::now() < deadline,
                "the socket stayed open after logout"
            );
            desk.frame(Duration::from_millis(500)).await;
        }
    }
    // The token is dead: a new socket or request with it is refused.
    let status = http
        .get(format!("http://{}/agent/v1/settings", gateway.http))
        .bearer_auth(&first.token)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// A token outlives a restart of the gateway (the store keeps it), and a logout before the
/// restart still holds after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_outlives_a_restart_and_a_logout_does_too() {
    let mut gateway = common::Gateway::start(&config());
    let http = reqwest::Client::new();
    let kept = agent_desk::login(&http, gateway.http, "alice", "desk").await;
    let ended = agent_desk::login(&http, gateway.http, "bob", "desk").await;
    let out = http
        .post(format!("http://{}/agent/v1/logout", gateway.http))
        .bearer_auth(&ended)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::OK);

    assert!(gateway.terminate().success());
    gateway.restart();
    let status = |token: String| {
        let http = http.clone();
        let url = format!("http://{}/agent/v1/settings", gateway.http);
        async move {
            let answer = http.get(url).bearer_auth(token).send().await.unwrap();
            answer.status()
        }
    };
    assert_eq!(status(kept.clone()).await, StatusCode::OK);
    assert_eq!(status(ended).await, StatusCode::UNAUTHORIZED);
    let (_, hello) = Desk::open(gateway.http, &kept).await;
    assert_eq!(hello["agent"], "alice", "{hello}");
}
