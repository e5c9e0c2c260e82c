//! Join tokens: proof that a call naming an interaction comes from its customer's app.
//!
//! A call joins a chat when its caller is the chat's phone number. An app that calls over its
//! own SIP client, or a phone that withholds its number, cannot show that; instead it shows the
//! token the chat's `POST chats` answer carried: HMAC-SHA256 of the interaction id under the
//! gateway's key, in hex. Nothing is stored per chat, and any node with the same key checks it.

use std::fmt;
use std::sync::Arc;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::types::InteractionId;

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
    fn the_key_is_not_printed_and_a_missing_one_is_random() {
        let key = JoinSecret::from_config(Some("configured secret value"));
        assert_eq!(format!("{key:?}"), "JoinSecret(..)");
        assert_eq!(key, JoinSecret::new(b"configured secret value"));
        assert_ne!(JoinSecret::from_config(None), JoinSecret::from_config(None));
    }
}
