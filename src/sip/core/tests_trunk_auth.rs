//! Trunks with credentials on the virtual clock: an INVITE claiming a trunk is challenged with
//! 407 and taken as the trunk's only with the right digest; a wrong one is refused and locks
//! out like a guessed REGISTER; a trunk that registered is a trunk from where it registered.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::tests::{OFFER, Phone, config};
use super::*;
use crate::config::{RegistrarConfig, TrunkConfig};
use crate::sip::digest::{self, QopAuth};
use crate::sip::wire::parse_datagram;

/// The trunk's configured address; the scripted phone sends from here.
const TRUNK_ADDR: &str = "127.0.0.1:5070";
const ELSEWHERE: &str = "10.0.0.9:5060";
const SERVICE: &str = "sip:+15550100@127.0.0.1";

/// A core with the service number +15550100 and the trunk `carrier` (user `carrier`,
/// password `trunk-secret`) at [`TRUNK_ADDR`], or with no address when `addressed` is false.
fn trunk_core(now: Instant, addressed: bool, registrar: RegistrarConfig) -> Phone {
    let mut config = config(10, Duration::ZERO);
    config.service_numbers = HashSet::from(["15550100".to_string()]);
    config.trunks = vec![TrunkConfig {
        name: "carrier".into(),
        addresses: if addressed {
            vec![TRUNK_ADDR.into()]
        } else {
            Vec::new()
        },
        username: Some("carrier".into()),
        password: Some("trunk-secret".into()),
        ..TrunkConfig::default()
    }];
    let registrar = Registrar::with_random_secret(&registrar, now).with_trunks(&config.trunks);
    Phone::new(
        SipCore::new(config, registrar, PortPool::new(30000, 30100)),
        now,
    )
}

/// A parameter of a challenge header value (quoted or not).
fn param(challenge: &str, name: &str) -> String {
    let start = challenge
        .find(&format!("{name}="))
        .unwrap_or_else(|| panic!("no {name} in {challenge}"))
        + name.len()
        + 1;
    let rest = &challenge[start..];
    match rest.strip_prefix('"') {
        Some(quoted) => quoted[..quoted.find('"').unwrap()].to_string(),
        None => rest[..rest.find([',', '\r']).unwrap_or(rest.len())].to_string(),
    }
}

/// The `Proxy-Authorization` line that answers the first `Proxy-Authenticate` of `challenge`
/// for an INVITE to `uri`.
fn answer(challenge: &str, user: &str, password: &str, uri: &str) -> String {
    let line = challenge
        .lines()
        .find_map(|l| l.strip_prefix("Proxy-Authenticate: "))
        .unwrap_or_else(|| panic!("no Proxy-Authenticate in {challenge}"));
    let (realm, nonce) = (param(line, "realm"), param(line, "nonce"));
    let algorithm = digest::Algorithm::from_name(&param(line, "algorithm")).unwrap();
    let qop = QopAuth {
        nc: "00000001",
        cnonce: "c0ffee",
    };
    let response = digest::request_digest(
        algorithm,
        user,
        &realm,
        password,
        "INVITE",
        uri,
        &nonce,
        Some(qop),
    );
    format!(
        "Proxy-Authorization: Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", \
         uri=\"{uri}\", response=\"{response}\", algorithm={}, qop=auth, nc=00000001, \
         cnonce=\"c0ffee\"\r\n",
        algorithm.name()
    )
}

/// Sends an INVITE to `uri` on the call `call_id` with `extra` headers from `from`; returns
/// what came back.
fn invite(phone: &mut Phone, from: &str, call_id: &str, uri: &str, extra: &str) -> Vec<String> {
    phone.call_id = call_id.into();
    let text = phone.request("INVITE", uri, call_id, 1, None, extra, OFFER);
    let from: SocketAddr = from.parse().unwrap();
    phone.core.handle_message(
        phone.now,
        parse_datagram(text.as_bytes()).unwrap(),
        Peer::udp(from),
    );
    phone.received()
}

fn events(phone: &mut Phone) -> Vec<CoreEvent> {
    std::iter::from_fn(|| phone.core.poll_event()).collect()
}

fn status(got: &[String]) -> &str {
    &got.last().expect("an answer")[8..11]
}

/// Challenged, then answered with `password`: what the second INVITE got.
fn authenticate(phone: &mut Phone, from: &str, call: &str, password: &str) -> Vec<String> {
    let challenged = invite(phone, from, &format!("{call}-a"), SERVICE, "");
    assert_eq!(status(&challenged), "407", "{challenged:?}");
    let credentials = answer(challenged.last().unwrap(), "carrier", password, SERVICE);
    invite(phone, from, &format!("{call}-b"), SERVICE, &credentials)
}

#[test]
fn a_trunk_with_credentials_is_challenged_and_its_authenticated_call_reaches_the_service() {
    let now = Instant::now();
    let mut phone = trunk_core(now, true, RegistrarConfig::default());
    // From the trunk's own address, and still challenged: the address alone proves nothing.
    let challenged = invite(&mut phone, TRUNK_ADDR, "t1", SERVICE, "");
    let challenge = challenged.last().unwrap();
    assert!(
        challenge.starts_with("SIP/2.0 407 Proxy Authentication Required\r\n"),
        "{challenged:?}"
    );
    assert!(challenge.contains("Proxy-Authenticate: Digest realm="));
    assert!(!challenge.contains("WWW-Authenticate"));
    assert!(events(&mut phone).is_empty());
    assert_eq!(phone.core.ports.in_use(), 0);

    let credentials = answer(challenge, "carrier", "trunk-secret", SERVICE);
    let got = invite(&mut phone, TRUNK_ADDR, "t2", SERVICE, &credentials);
    let codes: Vec<&str> = got.iter().map(|m| &m[8..11]).collect();
    assert_eq!(codes, ["180"], "{got:?}");
    assert!(matches!(
        events(&mut phone).as_slice(),
        [CoreEvent::ServiceCall { number, caller, .. }] if number == "+15550100" && caller == "phone"
    ));
    // The nonce served once: the same credentials on a new INVITE are challenged afresh.
    let replayed = invite(&mut phone, TRUNK_ADDR, "t3", SERVICE, &credentials);
    assert_eq!(status(&replayed), "407", "{replayed:?}");
}

#[test]
fn a_trunk_without_addresses_authenticates_from_anywhere() {
    let now = Instant::now();
    let mut phone = trunk_core(now, false, RegistrarConfig::default());
    let got = authenticate(&mut phone, ELSEWHERE, "a", "trunk-secret");
    assert_eq!(status(&got), "180", "{got:?}");
    assert!(matches!(
        events(&mut phone).as_slice(),
        [CoreEvent::ServiceCall { .. }]
    ));
}

#[test]
fn a_wrong_password_gets_403_and_no_trunk_treatment() {
    let now = Instant::now();
    let mut phone = trunk_core(now, true, RegistrarConfig::default());
    let got = authenticate(&mut phone, TRUNK_ADDR, "w", "guess");
    assert!(
        got.last().unwrap().starts_with("SIP/2.0 403 Forbidden\r\n"),
        "{got:?}"
    );
    // A join by caller id with a wrong password is refused before the application hears of
    // it, so the caller id is never trusted.
    let challenged = invite(&mut phone, ELSEWHERE, "j1", SERVICE, "");
    let join = "X-Interaction-Id: i-42\r\n";
    let credentials = answer(challenged.last().unwrap(), "carrier", "guess", SERVICE);
    let got = invite(
        &mut phone,
        ELSEWHERE,
        "j2",
        SERVICE,
        &format!("{join}{credentials}"),
    );
    assert_eq!(status(&got), "403", "{got:?}");
    assert!(events(&mut phone).is_empty());
    assert_eq!(phone.core.ports.in_use(), 0);
    assert_eq!(phone.core.registrar().auth_counts().failures, 2);
}

#[test]
fn a_join_without_a_token_must_prove_the_trunk_and_then_is_vouched_for() {
    let now = Instant::now();
    let mut phone = trunk_core(now, true, RegistrarConfig::default());
    let join = "X-Interaction-Id: i-42\r\n";
    let challenged = invite(&mut phone, TRUNK_ADDR, "j1", SERVICE, join);
    assert_eq!(status(&challenged), "407", "{challenged:?}");
    assert!(events(&mut phone).is_empty());
    let credentials = answer(
        challenged.last().unwrap(),
        "carrier",
        "trunk-secret",
        SERVICE,
    );
    invite(
        &mut phone,
        TRUNK_ADDR,
        "j2",
        SERVICE,
        &format!("{join}{credentials}"),
    );
    assert!(matches!(
        events(&mut phone).as_slice(),
        [CoreEvent::Incoming { interaction, source: CallSource::Trunk, .. }] if interaction == "i-42"
    ));
    // A join token needs no trunk: the application checks it.
    invite(
        &mut phone,
        ELSEWHERE,
        "j3",
        SERVICE,
        &format!("{join}X-Interaction-Token: abc\r\n"),
    );
    assert!(matches!(
        events(&mut phone).as_slice(),
        [CoreEvent::Incoming {
            source: CallSource::Other,
            token: Some(_),
            ..
        }]
    ));
}

#[test]
fn guessing_a_trunk_password_locks_it_out_until_the_lock_expires() {
    let now = Instant::now();
    let guarded = RegistrarConfig {
        failures_before_lockout: 2,
        source_failures_before_lockout: 100,
        first_lockout_ms: 2000,
        max_lockout_s: 8,
        ..RegistrarConfig::default()
    };
    let mut phone = trunk_core(now, false, guarded);
    for n in 0..3 {
        let got = authenticate(&mut phone, ELSEWHERE, &format!("g{n}"), "guess");
        assert_eq!(status(&got), "403", "{got:?}");
    }
    // Locked: even the right password is refused unchecked, with the time to wait.
    let got = authenticate(&mut phone, ELSEWHERE, "locked", "trunk-secret");
    let refused = got.last().unwrap();
    assert!(
        refused.starts_with("SIP/2.0 403 Too Many Failed Attempts\r\n"),
        "{refused}"
    );
    assert!(refused.contains("Retry-After: 2\r\n"), "{refused}");
    assert!(events(&mut phone).is_empty());
    let counts = phone.core.registrar().auth_counts();
    assert_eq!(
        (counts.failures, counts.refused_locked),
        (3, 1),
        "{counts:?}"
    );
    // Once the lock has expired the trunk gets in.
    phone.advance(Duration::from_secs(3));
    let got = authenticate(&mut phone, ELSEWHERE, "after", "trunk-secret");
    assert_eq!(status(&got), "180", "{got:?}");
}

#[test]
fn a_registered_trunk_is_a_trunk_from_where_it_registered_only() {
    let now = Instant::now();
    let mut phone = trunk_core(now, false, RegistrarConfig::default());
    let register = |phone: &Phone, cseq: u32, extra: &str| {
        phone
            .request(
                "REGISTER",
                "sip:127.0.0.1",
                &format!("r{cseq}"),
                cseq,
                None,
                extra,
                "",
            )
            .replace("To: <sip:echo@127.0.0.1>", "To: <sip:carrier@127.0.0.1>")
            .replace("Content-Length: 0", "Expires: 300\r\nContent-Length: 0")
    };
    phone.call_id = "reg".into();
    let first = register(&phone, 1, "");
    phone.send(&first);
    let challenged = phone.received();
    assert_eq!(status(&challenged), "401", "{challenged:?}");
    let line = challenged[0]
        .lines()
        .find_map(|l| l.strip_prefix("WWW-Authenticate: "))
        .unwrap();
    let (realm, nonce) = (param(line, "realm"), param(line, "nonce"));
    let algorithm = digest::Algorithm::from_name(&param(line, "algorithm")).unwrap();
    let uri = "sip:127.0.0.1";
    let qop = QopAuth {
        nc: "00000001",
        cnonce: "r1",
    };
    let response = digest::request_digest(
        algorithm,
        "carrier",
        &realm,
        "trunk-secret",
        "REGISTER",
        uri,
        &nonce,
        Some(qop),
    );
    let credentials = format!(
        "Authorization: Digest username=\"carrier\", realm=\"{realm}\", nonce=\"{nonce}\", \
         uri=\"{uri}\", response=\"{response}\", algorithm={}, qop=auth, nc=00000001, \
         cnonce=\"r1\"\r\n",
        algorithm.name()
    );
    let second = register(&phone, 2, &credentials);
    phone.send(&second);
    assert_eq!(status(&phone.received()), "200");
    assert_eq!(
        phone.core.registrar().trunk_bindings(phone.now, "carrier")[0].source,
        TRUNK_ADDR.parse::<SocketAddr>().unwrap()
    );

    // From where it registered, its INVITEs are the trunk's without a challenge.
    let got = invite(&mut phone, TRUNK_ADDR, "r-call", SERVICE, "");
    assert_eq!(status(&got), "180", "{got:?}");
    assert!(matches!(
        events(&mut phone).as_slice(),
        [CoreEvent::ServiceCall { .. }]
    ));
    // From another port of the same host, they are not.
    let got = invite(&mut phone, "127.0.0.1:5071", "r-other", SERVICE, "");
    assert_eq!(status(&got), "407", "{got:?}");
    // Once the registration expires, neither is the registered address.
    phone.advance(Duration::from_secs(301));
    let got = invite(&mut phone, TRUNK_ADDR, "r-late", SERVICE, "");
    assert_eq!(status(&got), "407", "{got:?}");
}

#[test]
fn guesses_from_elsewhere_do_not_lock_the_trunk_out_of_its_own_address() {
    let now = Instant::now();
    let guarded = RegistrarConfig {
        failures_before_lockout: 2,
        source_failures_before_lockout: 100,
        first_lockout_ms: 60_000,
        max_lockout_s: 600,
        ..RegistrarConfig::default()
    };
    let mut phone = trunk_core(now, true, guarded);
    for n in 0..3 {
        let got = authenticate(&mut phone, ELSEWHERE, &format!("g{n}"), "guess");
        assert_eq!(status(&got), "403", "{got:?}");
    }
    let got = authenticate(&mut phone, ELSEWHERE, "locked", "trunk-secret");
    assert!(got.last().unwrap().contains("Too Many Failed Attempts"));
    // The carrier at its configured address passes the lock on its user name …
    let got = authenticate(&mut phone, TRUNK_ADDR, "home", "trunk-secret");
    assert_eq!(status(&got), "180", "{got:?}");
    // … without lifting it for the guesser.
    let got = authenticate(&mut phone, ELSEWHERE, "still", "trunk-secret");
    assert!(got.last().unwrap().contains("Too Many Failed Attempts"));
}
