//! An agent's softphone registers with digest authentication and unregisters; a wrong password
//! is refused. SIPp computes the digest from `-au`/`-ap` through its `[authentication]` keyword.

mod common;

#[test]
fn sipp_registers_with_md5_digest_and_unregisters() {
    let gateway = common::Gateway::start(
        "[registrar]\nalgorithms = [\"MD5\"]\n[[registrar.accounts]]\nuser = \"alice\"\npassword = \"alice-secret\"\n",
    );
    let scenario = common::scenario("register_auth.xml");
    let stats = common::sipp(
        gateway.sip,
        &[
            "-sf",
            scenario.to_str().unwrap(),
            "-s",
            "alice",
            "-au",
            "alice",
            "-ap",
            "alice-secret",
            "-m",
            "5",
            "-l",
            "1",
        ],
    );
    assert_eq!(stats.exit_code, 0, "{stats:?}");
    assert_eq!((stats.successful, stats.failed), (5, 0), "{stats:?}");
}

#[test]
fn sipp_registers_when_md5_is_listed_before_sha256() {
    // SIPp 3.6.1 answers only the first challenge and knows only MD5, so a deployment with such
    // clients lists MD5 first; SHA-256 stays offered to the clients that can use it.
    let gateway = common::Gateway::start(
        "[registrar]\nalgorithms = [\"MD5\", \"SHA-256\"]\n[[registrar.accounts]]\nuser = \"alice\"\npassword = \"alice-secret\"\n",
    );
    let scenario = common::scenario("register_auth.xml");
    let stats = common::sipp(
        gateway.sip,
        &[
            "-sf",
            scenario.to_str().unwrap(),
            "-s",
            "alice",
            "-au",
            "alice",
            "-ap",
            "alice-secret",
            "-m",
            "2",
            "-l",
            "1",
        ],
    );
    assert_eq!(stats.exit_code, 0, "{stats:?}");
    assert_eq!((stats.successful, stats.failed), (2, 0), "{stats:?}");
}

#[test]
fn sipp_with_a_wrong_password_gets_403() {
    let gateway = common::Gateway::start(
        "[registrar]\nalgorithms = [\"MD5\"]\n[[registrar.accounts]]\nuser = \"alice\"\npassword = \"alice-secret\"\n",
    );
    let scenario = common::scenario("register_refused.xml");
    let stats = common::sipp(
        gateway.sip,
        &[
            "-sf",
            scenario.to_str().unwrap(),
            "-s",
            "alice",
            "-au",
            "alice",
            "-ap",
            "guess",
            "-m",
            "3",
            "-l",
            "1",
        ],
    );
    assert_eq!(stats.exit_code, 0, "{stats:?}");
    assert_eq!((stats.successful, stats.failed), (3, 0), "{stats:?}");
}
