//! Agents' passwords: argon2id PHC strings in the config, never the password itself.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

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
    let ok = PasswordHash::new(phc).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    });
    give_back_freed_memory();
    ok
}

/// Argon2's working memory (19 MiB at the default cost) is freed when a check ends, but the
/// allocator keeps a thread's freed pages until that thread allocates again, and the blocking
/// thread that checked may then sleep until it exits: fifty logins left some 100 MiB resident.
fn give_back_freed_memory() {
    // SAFETY: mi_collect only walks and trims the calling thread's own heap.
    unsafe { libmimalloc_sys::mi_collect(true) }
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
}
