//! An agent's softphone registers with digest authentication and unregisters; a wrong password
//! is refused. SIPp computes the digest from `-au`/`-ap` through its `[authentication]` keyword.

use crate::common;

/// A gateway offering `algorithms` with the account alice / alice-secret.
fn gateway(algorithms: &str) -> common::Gateway {
    common::Gateway::start(&format!(
        "[registrar]\nalgorithms = {algorithms}\n\
         [[registrar.accounts]]\nuser = \"alice\"\npassword = \"alice-secret\"\n"
    ))
}

#[test]
fn sipp_registers_with_md5_digest_and_unregisters() {
    let gateway = gateway("[\"MD5\"]");
    let stats = common::sipp_register_alice(&gateway, "register_auth.xml", "alice-secret", "5");
    assert_eq!(stats.exit_code, 0, "{stats:?}");
    assert_eq!((stats.successful, stats.failed), (5, 0), "{stats:?}");
}

#[test]
fn sipp_registers_when_md5_is_listed_before_sha256() {
    // SIPp 3.6.1 answers only the first challenge and knows only MD5, so a deployment with such
    // clients lists MD5 first; SHA-256 stays offered to the clients that can use it.
    let gateway = gateway("[\"MD5\", \"SHA-256\"]");
    let stats = common::sipp_register_alice(&gateway, "register_auth.xml", "alice-secret", "2");
    assert_eq!(stats.exit_code, 0, "{stats:?}");
    assert_eq!((stats.successful, stats.failed), (2, 0), "{stats:?}");
}

#[test]
fn sipp_with_a_wrong_password_gets_403() {
    let gateway = gateway("[\"MD5\"]");
    let stats = common::sipp_register_alice(&gateway, "register_refused.xml", "guess", "3");
    assert_eq!(stats.exit_code, 0, "{stats:?}");
    assert_eq!((stats.successful, stats.failed), (3, 0), "{stats:?}");
}
