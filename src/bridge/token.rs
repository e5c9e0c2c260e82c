//! Join tokens: proof that a call naming an interaction comes from its customer's app.
//!
//! A call joins a chat when its caller is the chat's phone number. An app that calls over its
//! own SIP client, or a phone that withholds its number, cannot show that; instead it shows the
//! token the chat's `POST chats` answer carried: HMAC-SHA256 of the interaction id under the
//! gateway's key, in hex. Nothing is stored per chat, and any node with the same key checks it.
//!
//! Socket tickets: a browser cannot put `Authorization` on a WebSocket, so the customer's web
//! chat asks for a ticket over HTTP (where it can) and opens the socket with it. A ticket is
//! its expiry, the app's id and a MAC over the chat, the app, the device and the expiry, under
//! the same key with its own prefix (no join token is ever a ticket). The device id, the
//! customer's lasting credential, is not in it: the gateway takes it from the chat itself, so a
//! ticket found in a URL or a log opens that one chat for a minute and reveals nothing more.

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
    pub(crate) fn random() -> JoinSecret {
        let mut key = [0u8; 32];
        rand::fill(&mut key[..]);
        JoinSecret::new(&key)
    }

    /// The configured key, else a random one.
    pub(crate) fn from_config(secret: Option<&str>) -> JoinSecret {
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
    pub(crate) fn verify(&self, id: &InteractionId, token: &str) -> bool {
        match hex::decode(token.trim()) {
            Ok(bytes) => self.mac(id).verify_slice(&bytes).is_ok(),
            Err(_) => false,
        }
    }
}

/// Tells socket tickets apart from join tokens under the same key.
const TICKET_PREFIX: &[u8] = b"tandem socket ticket\0";
/// A ticket is short: its expiry, an app id (bounded like the `Authorization` header's) and a
/// MAC.
const MAX_TICKET: usize = 1024;

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
    /// `<expiry ms>.<app hex>.<mac hex>`, safe in a URL query.
    pub(crate) fn ticket(
        &self,
        id: &InteractionId,
        app_id: &str,
        device: &str,
        expires: Time,
    ) -> String {
        let mac = self.ticket_mac(id, app_id, device, expires.millis());
        format!(
            "{}.{}.{}",
            expires.millis(),
            hex::encode(app_id),
            hex::encode(mac.finalize().into_bytes())
        )
    }

    /// The app id `ticket` was issued to, if it is a ticket for chat `id` and the chat's
    /// `device` under this key that has not expired at `now`.
    pub(crate) fn check_ticket(
        &self,
        id: &InteractionId,
        device: &str,
        ticket: &str,
        now: Time,
    ) -> Option<String> {
        if ticket.len() > MAX_TICKET {
            return None;
        }
        let mut parts = ticket.split('.');
        let (expires, app, mac) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let expires: u64 = expires.parse().ok()?;
        let app_id = String::from_utf8(hex::decode(app).ok()?).ok()?;
        let mac = hex::decode(mac).ok()?;
        self.ticket_mac(id, &app_id, device, expires)
            .verify_slice(&mac)
            .ok()?;
        (now.millis() < expires).then_some(app_id)
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
        let device = "web-7d1c0a52";
        let now = Time(1_700_000_000_000);
        let expires = Time(now.0 + 60_000);
        let ticket = key.ticket(&id, "claims-app", device, expires);
        let check = |id: &InteractionId, device: &str, ticket: &str, now: Time| {
            key.check_ticket(id, device, ticket, now)
        };
        assert_eq!(check(&id, device, &ticket, now), Some("claims-app".into()));
        assert!(
            ticket
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.')
        );
        assert!(
            !ticket.contains(&hex::encode(device)),
            "the device id stays out of URLs"
        );
        // Expired, for another chat or device, under another key.
        assert_eq!(check(&id, device, &ticket, expires), None);
        assert_eq!(check(&"i-2".into(), device, &ticket, now), None);
        assert_eq!(check(&id, "web-other", &ticket, now), None);
        let other = JoinSecret::new(b"another key entirely");
        assert_eq!(other.check_ticket(&id, device, &ticket, now), None);
        // A later expiry or another app does not keep the signature.
        let (_, mac) = ticket.rsplit_once('.').unwrap();
        let app = hex::encode("claims-app");
        let forged = format!("{}.{app}.{mac}", expires.0 + 1);
        assert_eq!(check(&id, device, &forged, now), None);
        let forged = format!("{}.{}.{mac}", expires.0, hex::encode("other-app"));
        assert_eq!(check(&id, device, &forged, now), None);
        // Neither a join token nor garbage is a ticket.
        assert_eq!(check(&id, device, &key.token(&id), now), None);
        for junk in ["", "..", "1.2.3.4", "x.61.00", &"9".repeat(5000)] {
            assert_eq!(check(&id, device, junk, now), None, "{junk}");
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
