//! The SMS provider client against a real HTTP server on 127.0.0.1: temporary failures (5xx,
//! 429, no listener) are retried with a doubling wait up to the configured attempts; any other
//! refusal is final; the configured header and sender go with every request.

use crate::sms;

use std::time::Duration;

use tandem::config::SmsConfig;
use tandem::sms::gsm::Encoding;
use tandem::sms::provider::{Provider, SmsError};

fn settings(url: String, max_attempts: u32) -> SmsConfig {
    SmsConfig {
        url: Some(url),
        auth_header: Some("X-Api-Key: k-123".into()),
        from: Some("Tandem".into()),
        max_attempts,
        backoff_ms: 100,
        max_backoff_ms: 150,
        timeout_ms: 2000,
        ..SmsConfig::default()
    }
}

#[tokio::test]
async fn temporary_failures_are_retried_with_a_growing_wait() {
    let mut fake = sms::FakeProvider::start().await;
    fake.answer_with(&[503, 429]);
    let provider = Provider::new(&settings(fake.url(), 4));
    let sent = provider.send("+15550101", "hello").await.unwrap();
    assert_eq!(sent.attempts, 3);
    assert_eq!((sent.segments, sent.encoding), (1, Encoding::Gsm7));
    let tries = [
        fake.next(Duration::from_secs(1)).await,
        fake.next(Duration::from_secs(1)).await,
        fake.next(Duration::from_secs(1)).await,
    ];
    for t in &tries {
        assert_eq!(t.headers["x-api-key"], "k-123");
        assert_eq!(t.body["from"], "Tandem");
        assert_eq!(t.text(), "hello");
    }
    // 100 ms, then 150 (doubled, bounded).
    assert!(tries[1].at - tries[0].at >= Duration::from_millis(100));
    assert!(tries[2].at - tries[1].at >= Duration::from_millis(150));
}

#[tokio::test]
async fn attempts_are_bounded_and_refusals_are_final() {
    let mut fake = sms::FakeProvider::start().await;
    fake.answer_with(&[500, 500, 500]);
    let provider = Provider::new(&settings(fake.url(), 3));
    let err = provider.send("+15550101", "hello").await.unwrap_err();
    assert!(matches!(err, SmsError::GaveUp { attempts: 3, .. }), "{err}");
    for _ in 0..3 {
        fake.next(Duration::from_secs(1)).await;
    }
    fake.answer_with(&[400]);
    let err = provider.send("+15550101", "hello").await.unwrap_err();
    assert!(matches!(err, SmsError::Refused { status: 400 }), "{err}");
    fake.next(Duration::from_secs(1)).await;
    assert!(fake.none_for(Duration::from_millis(300)).await.is_none());

    // Nobody listening is a temporary failure too.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/sms", closed.local_addr().unwrap());
    drop(closed);
    let err = Provider::new(&settings(url, 2))
        .send("+15550101", "hello")
        .await
        .unwrap_err();
    assert!(matches!(err, SmsError::GaveUp { attempts: 2, .. }), "{err}");
}

#[tokio::test]
async fn without_a_provider_nothing_leaves() {
    let provider = Provider::new(&SmsConfig::default());
    assert!(!provider.enabled());
    let err = provider.send("+15550101", "hello").await.unwrap_err();
    assert!(matches!(err, SmsError::Disabled));
}
