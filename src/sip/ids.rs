//! Fresh identifiers: tags, branches and Call-IDs.
//!
//! RFC 3261 asks for cryptographically random tags (§19.3) and branches unique in space and
//! time (§8.1.1.7); 64 random bits printed in hex serve both.

use rand::RngExt;

fn random_hex() -> String {
    format!("{:016x}", rand::rng().random::<u64>())
}

/// A From/To tag.
pub fn new_tag() -> String {
    random_hex()
}

/// A Via branch with the RFC 3261 magic cookie.
pub fn new_branch() -> String {
    format!("z9hG4bK{}", random_hex())
}

/// A Call-ID local to `host`.
pub fn new_call_id(host: &str) -> String {
    format!("{}@{host}", random_hex())
}
