//! Comparing secrets without telling an attacker how close a guess came.
//!
//! A plain `==` returns at the first differing byte, and on a length mismatch at once, so the
//! time a refusal takes leaks the secret's length and, byte by byte, its prefix. Both sides
//! are hashed first (SHA-256: fixed length, so the length is not compared), and the digests
//! are compared in full.

use sha2::{Digest, Sha256};

/// Whether `given` equals `expected`, in a time that depends on neither.
pub(crate) fn same(given: &[u8], expected: &[u8]) -> bool {
    let (a, b) = (Sha256::digest(given), Sha256::digest(expected));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |diff, (x, y)| diff | (x ^ y))
        == 0
}

#[cfg(test)]
mod tests {
    use super::same;

    #[test]
    fn equal_secrets_match_and_others_do_not() {
        assert!(same(b"correct horse", b"correct horse"));
        assert!(same(b"", b""));
        for other in [
            &b"correct hors"[..],
            b"correct horsf",
            b"",
            b"correct horse ",
        ] {
            assert!(!same(other, b"correct horse"), "{other:?}");
        }
    }
}
