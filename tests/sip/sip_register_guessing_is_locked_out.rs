//! Guessing a softphone's password over SIP does not pay: after a few wrong digests the account
//! is locked (`403 Too Many Failed Attempts` with `Retry-After`, the right password refused
//! unchecked meanwhile), the lock lifts by itself, and the failures and locks are counted in
//! `/metrics`. SIPp computes the digests from `-au`/`-ap`.

use crate::common;

use std::time::{Duration, Instant};

#[test]
fn wrong_digests_lock_the_account_until_the_lock_lifts() {
    let gateway = common::Gateway::start(
        "[registrar]\nalgorithms = [\"MD5\"]\nfailures_before_lockout = 2\n\
         first_lockout_ms = 3000\nmax_lockout_s = 3\n\
         [[registrar.accounts]]\nuser = \"alice\"\npassword = \"alice-secret\"\n",
    );
    // Three wrong passwords, each challenged and refused with 403: the third locks alice.
    let guesses = common::sipp_register_alice(&gateway, "register_refused.xml", "guess", "3");
    assert_eq!((guesses.successful, guesses.failed), (3, 0), "{guesses:?}");
    // The right password is now refused without a challenge, so the scenario fails.
    let locked = common::sipp_register_alice(&gateway, "register_auth.xml", "alice-secret", "1");
    assert_eq!((locked.successful, locked.failed), (0, 1), "{locked:?}");
    gateway.wait_for_metric("tandem_refusals_total{reason=\"sip_digest_locked\"} 1");
    // The lock lifts by itself: retry until alice registers (generously bounded).
    let deadline = Instant::now() + Duration::from_secs(60);
    let registered = loop {
        let stats = common::sipp_register_alice(&gateway, "register_auth.xml", "alice-secret", "1");
        if stats.successful == 1 {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(registered, "alice never registered after the lock");
    let metrics = gateway.wait_for_metric("tandem_refusals_total{reason=\"sip_digest_failed\"} 3");
    assert!(
        metrics.contains("tandem_refusals_total{reason=\"sip_digest_lockout\"} 1"),
        "{metrics}"
    );
}

/// The reproduction: a stream of wrong digests on one reused nonce. Each is answered, but only
/// the first is checked; the others get a fresh challenge.
#[test]
fn a_reused_nonce_is_not_checked_twice() {
    let gateway = common::Gateway::start(
        "[registrar]\nalgorithms = [\"MD5\"]\n\
         [[registrar.accounts]]\nuser = \"alice\"\npassword = \"alice-secret\"\n",
    );
    let stats = common::sipp_register_alice(&gateway, "register_reused_nonce.xml", "guess", "1");
    assert_eq!((stats.successful, stats.failed), (1, 0), "{stats:?}");
    let metrics = gateway.wait_for_metric("tandem_refusals_total{reason=\"sip_digest_failed\"} 1");
    assert!(!metrics.contains("sip_digest_lockout"), "{metrics}");
}
