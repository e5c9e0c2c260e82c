//! Agents' passwords: argon2id PHC strings in the config, never the password itself.

use std::mem::size_of;
use std::ptr::NonNull;

use argon2::password_hash::{self, Output, PasswordHash, PasswordHasher, Salt, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

/// A PHC string for `password` with a fresh random salt (argon2id, the crate's default cost).
pub fn hash(password: &str) -> String {
    let mut salt = [0u8; 16];
    rand::fill(&mut salt[..]);
    let salt = SaltString::encode_b64(&salt).expect("16 bytes is a valid salt");
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 with default parameters")
        .to_string()
}

/// Whether `password` matches the PHC string (false when the string does not parse).
/// Deliberately slow: call it off the async threads.
pub(crate) fn verify(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|hash| matches(password.as_bytes(), &hash) == Some(true))
}

/// What argon2's own `verify_password` does, with the working memory (19 MiB at the default
/// cost) mapped from the kernel for this check and unmapped after it. From the allocator, that
/// memory stayed resident after a burst of logins: freed, but kept for the thread that checked,
/// which may then sleep until it exits.
fn matches(password: &[u8], hash: &PasswordHash) -> Option<bool> {
    let algorithm = Algorithm::try_from(hash.algorithm).ok()?;
    let version = match hash.version {
        Some(v) => Version::try_from(v).ok()?,
        None => Version::default(),
    };
    let params = Params::try_from(hash).ok()?;
    let (salt, expected) = (hash.salt?, hash.hash?);
    let mut salt_bytes = [0u8; Salt::MAX_LENGTH];
    let salt = salt.decode_b64(&mut salt_bytes).ok()?;
    let mut memory = Mapped::blocks(params.block_count())?;
    let argon2 = Argon2::new(algorithm, version, params);
    let computed = Output::init_with(expected.len(), |out| {
        argon2
            .hash_password_into_with_memory(password, salt, out, memory.as_mut())
            .map_err(|_| password_hash::Error::Crypto)
    })
    .ok()?;
    // `Output`'s equality takes the same time wherever the outputs differ.
    Some(computed == expected)
}

/// Anonymous memory from the kernel, given back when dropped.
struct Mapped {
    start: NonNull<Block>,
    count: usize,
}

impl Mapped {
    /// `count` zeroed blocks, or `None` when the kernel has none to give.
    fn blocks(count: usize) -> Option<Mapped> {
        let len = count.checked_mul(size_of::<Block>())?;
        if len == 0 {
            return None;
        }
        // SAFETY: a fresh private anonymous mapping; nothing else refers to it.
        let start = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if start == libc::MAP_FAILED {
            return None;
        }
        Some(Mapped {
            start: NonNull::new(start.cast::<Block>())?,
            count,
        })
    }
}

impl AsMut<[Block]> for Mapped {
    fn as_mut(&mut self) -> &mut [Block] {
        // SAFETY: the mapping is page-aligned (a block needs 64 bytes), `count` blocks long,
        // zero-filled (a valid block: it is an array of integers), and borrowed through `self`.
        unsafe { std::slice::from_raw_parts_mut(self.start.as_ptr(), self.count) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `blocks` mapped, once; no borrow of it outlives `self`.
        unsafe {
            libc::munmap(self.start.as_ptr().cast(), self.count * size_of::<Block>());
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_hash_verifies_its_password_only() {
        let phc = super::hash("s3cret");
        assert!(phc.starts_with("$argon2id$"));
        assert!(super::verify("s3cret", &phc));
        assert!(!super::verify("s3cret ", &phc));
        assert!(!super::verify("s3cret", "not a hash"));
    }

    /// The same answers as the argon2 crate's own check, whatever the variant and cost.
    #[test]
    fn every_variant_and_cost_verifies_as_argon2_itself_would() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier, SaltString};
        use argon2::{Algorithm, Argon2, Params, Version};
        let salt = SaltString::encode_b64(b"a salt of sixteen").unwrap();
        for algorithm in [Algorithm::Argon2id, Algorithm::Argon2i, Algorithm::Argon2d] {
            for version in [Version::V0x13, Version::V0x10] {
                let params = Params::new(64, 2, 2, Some(24)).unwrap();
                let argon2 = Argon2::new(algorithm, version, params);
                let phc = argon2.hash_password(b"pa55", &salt).unwrap().to_string();
                let theirs = |p: &str| {
                    let hash = argon2::PasswordHash::new(&phc).unwrap();
                    Argon2::default()
                        .verify_password(p.as_bytes(), &hash)
                        .is_ok()
                };
                for attempt in ["pa55", "pa56", ""] {
                    assert_eq!(
                        super::verify(attempt, &phc),
                        theirs(attempt),
                        "{phc} {attempt:?}"
                    );
                }
                assert!(super::verify("pa55", &phc), "{phc}");
            }
        }
    }
}
