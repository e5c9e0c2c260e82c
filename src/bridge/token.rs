//! Join tokens: proof that a call naming an interaction comes from its customer's app.
//!
//! A call joins a chat when its caller is the chat's phone number. An app that calls over its
//! own SIP client, or a phone that withholds its number, cannot show that; instead it shows the
//! token the chat's `POST chats` answer carried: HMAC-SHA256 of the interaction id under the
//! gateway's key, in hex. Nothing is stored per chat, and any node with the same key checks it.
//!
//! Socket tickets: a browser cannot put `Authorization` on a WebSocket, so the customer's web
//! chat asks for a ticket over HTTP (where it can) and opens the socket with it. A ticket names
//! the chat, the app and the device it was issued to and when it expires, signed under the same
//! key with its own prefix (no join token is ever a ticket). It proves no more than the
//! `Authorization` header it was bought with, for a minute: the socket still sees only that
//! device's chat.

use std::fmt;
use std::sync::Arc;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::types::{InteractionId, Time};

type HmacSha256 = Hmac<Sha256>;

/// The key of the join tokens (never printed).
#[derive(Clone, PartialEq, Eq)]
pub struct JoinSecret(Arc<[u8]>);

impl fmt::Debug for JoinSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JoinSecret(..)")
    }
}

impl JoinSecret {
    pub fn new(key: &[u8]) -> JoinSecret {
        JoinSecret(key.into())
    }

    /// A fresh random key: tokens are good until the process ends.
    pub fn random() -> JoinSecret {
        let mut key = [0u8; 32];
        rand::fill(&mut key[..]);
        JoinSecret::new(&key)
    }

    /// The configured key, else a random one.
    pub fn from_config(secret: Option<&str>) -> JoinSecret {
        secret.map_or_else(JoinSecret::random, |s| JoinSecret::new(s.as_bytes()))
    }

    fn mac(&self, id: &InteractionId) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes keys of any size");
        mac.update(id.0.as_bytes());
        mac
    }

    /// The token of `id`: 64 hex digits.
    pub fn token(&self, id: &InteractionId) -> String {
        hex::encode(self.mac(id).finalize().into_bytes())
    }

    /// Whether `token` is the token of `id`, compared in constant time.
    pub fn verify(&self, id: &InteractionId, token: &str) -> bool {
        match hex::decode(token.trim()) {
            Ok(bytes) => self.mac(id).verify_slice(&bytes).is_ok(),
            Err(_) => false,
        }
    }
}

/// What a valid socket ticket vouches for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    pub app_id: String,
    pub device: String,
}

/// Tells socket tickets apart from join tokens under the same key.
const TICKET_PREFIX: &[u8] = b"tandem socket ticket\0";
/// The ids a ticket carries are bounded like the `Authorization` header's.
const MAX_TICKET: usize = 2048;

impl JoinSecret {
    fn ticket_mac(
        &self,
        id: &InteractionId,
        app_id: &str,
        device: &str,
        expires: u64,
    ) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes keys of any size");
        // Every field is length-prefixed, so no two field lists sign the same bytes.
        mac.update(TICKET_PREFIX);
        for field in [id.0.as_bytes(), app_id.as_bytes(), device.as_bytes()] {
            mac.update(&(field.len() as u64).to_be_bytes());
            mac.update(field);
        }
        mac.update(&expires.to_be_bytes());
        mac
    }

    /// A ticket for `device` of `app_id` to open the socket of chat `id` until `expires`:
    /// `<expiry ms>.<app hex>.<device hex>.<mac hex>`, safe in a URL query.
    pub fn ticket(&self, id: &InteractionId, app_id: &str, device: &str, expires: Time) -> String {
        let mac = self.ticket_mac(id, app_id, device, expires.millis());
        format!(
            "{}.{}.{}.{}",
            expires.millis(),
            hex::encode(app_id),
            hex::encode(device),
            hex::encode(mac.finalize().into_bytes())
        )
    }

    /// Whom `ticket` was issued to, if it is a ticket for chat `id` under this key that has
    /// not expired at `now`.
    pub fn check_ticket(&self, id: &InteractionId, ticket: &str, now: Time) -> Option<Ticket> {
        if ticket.len() > MAX_TICKET {
            return None;
        }
        let mut parts = ticket.split('.');
        let (expires, app, device, mac) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let expires: u64 = expires.parse().ok()?;
        let app_id = String::from_utf8(hex::decode(app).ok()?).ok()?;
        let device = String::from_utf8(hex::decode(device).ok()?).ok()?;
        let mac = hex::decode(mac).ok()?;
        self.ticket_mac(id, &app_id, &device, expires)
            .verify_slice(&mac)
            .ok()?;
        (now.millis() < expires).then_some(Ticket { app_id, device })
    }
}

impl Default for JoinSecret {
    fn default() -> Self {
        JoinSecret::random()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_good_for_its_interaction_under_its_key_only() {
        let key = JoinSecret::new(b"a key of sixteen bytes or more");
        let id = InteractionId::from("i-1");
        let token = key.token(&id);
        assert_eq!(token.len(), 64);
        assert!(key.verify(&id, &token));
        assert!(key.verify(&id, &token.to_uppercase()), "hex in any case");
        assert!(!key.verify(&InteractionId::from("i-2"), &token));
        assert!(!JoinSecret::new(b"another key entirely").verify(&id, &token));
        // Truncated, altered or not hex at all.
        assert!(!key.verify(&id, &token[..62]));
        let mut altered = token.clone().into_bytes();
        altered[0] = if altered[0] == b'0' { b'1' } else { b'0' };
        assert!(!key.verify(&id, std::str::from_utf8(&altered).unwrap()));
        assert!(!key.verify(&id, "not a token"));
        assert!(!key.verify(&id, ""));
    }

    #[test]
    fn a_ticket_opens_its_chat_for_its_device_until_it_expires() {
        let key = JoinSecret::new(b"a key of sixteen bytes or more");
        let id = InteractionId::from("i-1");
        let now = Time(1_700_000_000_000);
        let expires = Time(now.0 + 60_000);
        let ticket = key.ticket(&id, "claims-app", "device \"1\"", expires);
        let holder = Ticket {
            app_id: "claims-app".into(),
            device: "device \"1\"".into(),
        };
        assert_eq!(key.check_ticket(&id, &ticket, now), Some(holder));
        assert!(
            ticket
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.')
        );
        // Expired, for another chat, under another key.
        assert_eq!(key.check_ticket(&id, &ticket, expires), None);
        assert_eq!(key.check_ticket(&"i-2".into(), &ticket, now), None);
        let other = JoinSecret::new(b"another key entirely");
        assert_eq!(other.check_ticket(&id, &ticket, now), None);
        // A later expiry or another device does not keep the signature.
        let (_, mac) = ticket.rsplit_once('.').unwrap();
        let forged = format!(
            "{}.{}.{}.{mac}",
            expires.0 + 1,
            hex::encode("claims-app"),
            hex::encode("device \"1\"")
        );
        assert_eq!(key.check_ticket(&id, &forged, now), None);
        let forged = format!(
            "{}.{}.{}.{mac}",
            expires.0,
            hex::encode("claims-app"),
            hex::encode("d2")
        );
        assert_eq!(key.check_ticket(&id, &forged, now), None);
        // Neither a join token nor garbage is a ticket.
        assert_eq!(key.check_ticket(&id, &key.token(&id), now), None);
        for junk in ["", "...", "1.2.3.4.5", "x.61.62.00", &"9".repeat(5000)] {
            assert_eq!(key.check_ticket(&id, junk, now), None, "{junk}");
        }
    }

    #[test]
    fn the_key_is_not_printed_and_a_missing_one_is_random() {
        let key = JoinSecret::from_config(Some("configured secret value"));
        assert_eq!(format!("{key:?}"), "JoinSecret(..)");
        assert_eq!(key, JoinSecret::new(b"configured secret value"));
        assert_ne!(JoinSecret::from_config(None), JoinSecret::from_config(None));
    }
}
