//! The SMS provider: a generic JSON webhook.
//!
//! Each SMS is one `POST url` with `{to, body, from, encoding, segments, parts}`: `body` is the
//! whole text (providers that concatenate do so themselves), `parts` is how it splits
//! ([`super::gsm::split`]) for providers that want the segments. Network errors, timeouts,
//! 5xx and 429 are retried up to `max_attempts` times with a doubling wait, bounded by
//! `max_backoff_ms`; any other answer is final. The segment count is logged with every SMS.

use std::time::Duration;

use serde_json::json;

use super::gsm::{self, Encoding};
use crate::config::SmsConfig;

/// Why an SMS did not go out.
#[derive(Debug, thiserror::Error)]
pub enum SmsError {
    /// No provider is configured (`sms.url` unset).
    #[error("no SMS provider is configured")]
    Disabled,
    /// The provider answered with a final refusal (a 4xx other than 429).
    #[error("the provider refused the SMS: HTTP {status}")]
    Refused { status: u16 },
    /// Every attempt failed with a temporary error.
    #[error("no attempt of {attempts} succeeded; last: {last}")]
    GaveUp { attempts: u32, last: String },
}

/// What went out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    pub attempts: u32,
    pub segments: usize,
    pub encoding: Encoding,
}

/// The configured provider. Cheap to clone.
#[derive(Clone)]
pub struct Provider {
    client: Option<reqwest::Client>,
    config: SmsConfig,
}

/// The wait after the `failures`-th failed attempt: `backoff`, doubling, at most `max`.
pub fn backoff(config: &SmsConfig, failures: u32) -> Duration {
    let factor = 1u64 << failures.saturating_sub(1).min(30);
    Duration::from_millis(
        config
            .backoff_ms
            .saturating_mul(factor)
            .min(config.max_backoff_ms),
    )
}

impl Provider {
    pub fn new(config: &SmsConfig) -> Provider {
        let client = config.url.as_ref().and_then(|_| {
            reqwest::Client::builder()
                .timeout(Duration::from_millis(config.timeout_ms))
                .build()
                .inspect_err(|e| tracing::error!("SMS provider client: {e}"))
                .ok()
        });
        Provider {
            client,
            config: config.clone(),
        }
    }

    /// Whether SMS actually leave.
    pub fn enabled(&self) -> bool {
        self.client.is_some()
    }

    /// Sends one text (in as many segments as it takes), retrying temporary failures.
    pub async fn send(&self, to: &str, body: &str) -> Result<Sent, SmsError> {
        let segments = gsm::split(body);
        let (count, encoding) = (segments.count(), segments.encoding);
        let (Some(client), Some(url)) = (&self.client, &self.config.url) else {
            tracing::warn!(to, segments = count, %encoding, body, "no SMS provider: not sent");
            return Err(SmsError::Disabled);
        };
        let mut payload = json!({
            "to": to,
            "body": body,
            "encoding": encoding,
            "segments": count,
            "parts": segments.parts,
        });
        if let Some(from) = &self.config.from {
            payload["from"] = json!(from);
        }
        let mut last = String::new();
        for attempt in 1..=self.config.max_attempts {
            let mut request = client.post(url).json(&payload);
            if let Some((name, value)) = self.config.auth() {
                request = request.header(name, value);
            }
            match request.send().await {
                Ok(r) if r.status().is_success() => {
                    tracing::info!(to, segments = count, %encoding, attempt, "SMS sent");
                    return Ok(Sent {
                        attempts: attempt,
                        segments: count,
                        encoding,
                    });
                }
                Ok(r) if r.status().is_server_error() || r.status().as_u16() == 429 => {
                    last = format!("HTTP {}", r.status().as_u16());
                }
                Ok(r) => {
                    let status = r.status().as_u16();
                    tracing::warn!(to, segments = count, status, "SMS refused by the provider");
                    return Err(SmsError::Refused { status });
                }
                Err(e) => last = e.to_string(),
            }
            if attempt < self.config.max_attempts {
                let wait = backoff(&self.config, attempt);
                tracing::info!(to, attempt, ?wait, "SMS attempt failed ({last}); retrying");
                tokio::time::sleep(wait).await;
            }
        }
        tracing::warn!(to, segments = count, "SMS not sent: {last}");
        Err(SmsError::GaveUp {
            attempts: self.config.max_attempts,
            last,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_doubles_up_to_its_bound() {
        let config = SmsConfig {
            backoff_ms: 500,
            max_backoff_ms: 3000,
            ..SmsConfig::default()
        };
        let waits: Vec<u64> = (1..=5)
            .map(|n| backoff(&config, n).as_millis() as u64)
            .collect();
        assert_eq!(waits, vec![500, 1000, 2000, 3000, 3000]);
        assert_eq!(backoff(&config, 200), Duration::from_millis(3000));
    }
}
