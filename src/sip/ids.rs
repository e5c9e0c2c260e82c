//! Fresh identifiers: tags, branches, Call-IDs and SDP session ids.
//!
//! RFC 3261 asks for cryptographically random tags (§19.3) and branches unique in space and
//! time (§8.1.1.7); 64 random bits printed in hex serve both. They come from an [`Ids`] that the
//! sans-IO cores are given when they are built: the driver seeds it from the operating system,
//! a test seeds it with a constant, and a run replayed from the same seed sends the same bytes.

use std::hash::{DefaultHasher, Hash, Hasher};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// The source of every random identifier of one core (a ChaCha-based CSPRNG).
#[derive(Debug)]
pub(crate) struct Ids {
    rng: StdRng,
}

impl Ids {
    /// A generator that gives the same identifiers every time for the same seed.
    #[cfg(test)]
    pub(crate) fn seeded(seed: u64) -> Ids {
        Ids {
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// A generator seeded from the operating system: for the IO shells that build the cores.
    pub(crate) fn from_os() -> Ids {
        Ids {
            rng: StdRng::from_rng(&mut rand::rng()),
        }
    }

    /// A generator for a part of the core (the transaction layer), seeded from this one.
    pub(crate) fn derive(&mut self) -> Ids {
        Ids {
            rng: StdRng::from_rng(&mut self.rng),
        }
    }

    /// 64 random bits (an SDP session id, a key's seed).
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.rng.random()
    }

    /// Random bytes (an SRTP master key or salt, a registrar secret).
    pub(crate) fn bytes<const N: usize>(&mut self) -> [u8; N] {
        self.rng.random()
    }

    fn hex(&mut self) -> String {
        format!("{:016x}", self.next_u64())
    }

    /// A From/To tag.
    pub(crate) fn tag(&mut self) -> String {
        self.hex()
    }

    /// A Via branch with the RFC 3261 magic cookie.
    pub(crate) fn branch(&mut self) -> String {
        format!("z9hG4bK{}", self.hex())
    }

    /// A Call-ID local to `host`.
    pub(crate) fn call_id(&mut self, host: &str) -> String {
        format!("{}@{host}", self.hex())
    }
}

/// The To tag of a stateless reply: derived from the request, so that every retransmission of
/// a request gets the same one (RFC 3261 §8.2.7). `parts` are what identifies the request (its
/// Call-ID, From tag, Via branch …).
pub(crate) fn stateless_tag(parts: &[&str]) -> String {
    // SipHash with fixed keys: the same input gives the same tag in every process.
    let mut hasher = DefaultHasher::new();
    parts.hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_identifiers() {
        let (mut a, mut b) = (Ids::seeded(7), Ids::seeded(7));
        assert_eq!(a.tag(), b.tag());
        assert_eq!(a.branch(), b.branch());
        assert_eq!(a.call_id("example.com"), b.call_id("example.com"));
        assert_ne!(Ids::seeded(8).tag(), Ids::seeded(7).tag());
    }

    #[test]
    fn branches_carry_the_magic_cookie() {
        let branch = Ids::seeded(1).branch();
        assert!(
            branch.starts_with("z9hG4bK") && branch.len() == 23,
            "{branch}"
        );
    }

    #[test]
    fn a_stateless_tag_depends_only_on_the_request() {
        let tag = stateless_tag(&["abc@host", "from-tag", "z9hG4bK1"]);
        assert_eq!(tag, stateless_tag(&["abc@host", "from-tag", "z9hG4bK1"]));
        assert_ne!(tag, stateless_tag(&["abc@host", "from-tag", "z9hG4bK2"]));
    }
}
