//! Server-side Digest authentication (RFC 3261 §22.4 with the hashing of RFC 7616; RFC 8760 brings
//! SHA-256 to SIP).
//!
//! [`DigestAuth`] issues challenges and checks the answers; it is sans-IO like the rest of the
//! stack, so time comes in as `now` and the only randomness is the secret handed to
//! [`DigestAuth::new`].
//!
//! * **Stateless nonces.** A nonce is `issued ‖ serial ‖ tag` in hex: the issue time in seconds
//!   since the epoch `Instant`, a serial number that makes every nonce unique, and a truncated
//!   HMAC-SHA-256 over both under the secret. A nonce we did not mint fails the HMAC; one older
//!   than [`NONCE_LIFETIME`] is *stale*, answered by a fresh
//!   challenge with `stale=true` so the client retries without asking its user again.
//! * **Replay protection.** Nonces that have been answered leave state: the highest `nc` seen
//!   for each, until the nonce expires. A request must carry a higher `nc` than the last one on
//!   its nonce (RFC 7616 §3.4, `nc`); an RFC 2069 request (no `qop`) counts as `nc=1`, so its
//!   nonce serves once. The table is capped at [`MAX_TRACKED_NONCES`]; when it overflows, the
//!   oldest entries are forgotten and every nonce with a serial up to theirs counts as used, which
//!   costs an honest client at worst one `stale=true` round trip.
//! * **One guess per nonce.** A wrong response spends its nonce: any later answer on it is
//!   [`AuthError::Unanswered`] before anything is hashed, so a guesser needs a fresh challenge
//!   (a round trip) per guess instead of hammering one reused nonce. Spent nonces share the
//!   bounded table above; how fast anyone can spend them is for the caller's back-off per
//!   account and source (see the registrar).
//! * **Parsing** is our own: rsipstack's typed `Authorization` knows neither the RFC 8760
//!   spelling `SHA-256` nor a nonce count above 255, and drops backslash escapes.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use md5::Md5;
use rsipstack::sip::Uri;
use sha2::{Digest, Sha256};

/// How long a nonce stays fresh.
pub(crate) const NONCE_LIFETIME: Duration = Duration::from_secs(300);

/// The nonce count recorded for a nonce a wrong response spent: no answer can go above it.
const SPENT: u32 = u32::MAX;

/// How many used nonces the replay table remembers at most.
const MAX_TRACKED_NONCES: usize = 4096;

/// More parameters than any real client sends; a bound on the work one header can cause.
const MAX_PARAMS: usize = 32;

type HmacSha256 = Hmac<Sha256>;

/// Why credentials were not accepted. Mapped to a SIP status by the code that owns the request
/// (the registrar); clients see the status, logs see the variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AuthError {
    /// The header carries another scheme than Digest.
    #[error("not Digest credentials")]
    NotDigest,
    /// The parameter list is not `name=token` / `name="quoted string"` separated by commas.
    #[error("malformed Digest parameters")]
    Syntax,
    /// A parameter appears twice (RFC 7235 §2.1 allows each name once).
    #[error("repeated Digest parameter {0}")]
    Repeated(String),
    /// A parameter that every answer (or an answer with `qop`) needs is absent.
    #[error("missing Digest parameter {0}")]
    Missing(&'static str),
    /// `nc` is not one to eight hex digits.
    #[error("malformed nonce count")]
    BadNonceCount,
    /// Not an answer to a challenge of ours: a nonce we did not mint, another realm, or an
    /// algorithm or qop we did not offer. The client should be challenged afresh.
    #[error("credentials do not answer our challenge")]
    Unanswered,
    /// The response is right but its nonce has expired or this nonce count was already used:
    /// challenge again with `stale=true`.
    #[error("stale nonce")]
    Stale,
    /// The response does not match: a wrong password or an unknown user.
    #[error("wrong response")]
    WrongResponse,
    /// The `uri` parameter names another resource than the Request-URI (RFC 7616 §3.4.6).
    #[error("digest uri does not match the Request-URI")]
    UriMismatch,
}

/// The Digest algorithms we implement, ordered from weakest to strongest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Algorithm {
    Md5,
    Sha256,
}

impl Algorithm {
    /// The name as written in `algorithm=`.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// Parses an algorithm name, case-insensitively. `SHA256` without the dash is what some
    /// clients (rsipstack among them) write for SHA-256; the hash is the same.
    pub(crate) fn from_name(name: &str) -> Option<Algorithm> {
        if name.eq_ignore_ascii_case("MD5") {
            Some(Algorithm::Md5)
        } else if name.eq_ignore_ascii_case("SHA-256") || name.eq_ignore_ascii_case("SHA256") {
            Some(Algorithm::Sha256)
        } else {
            None
        }
    }

    /// `H(data)` in lower-case hex.
    fn hash_hex(self, data: &str) -> String {
        match self {
            Algorithm::Md5 => hex::encode(Md5::digest(data.as_bytes())),
            Algorithm::Sha256 => hex::encode(Sha256::digest(data.as_bytes())),
        }
    }
}

/// The `qop=auth` part of an answer: the nonce count exactly as the client wrote it, and its
/// client nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QopAuth<'a> {
    pub nc: &'a str,
    pub cnonce: &'a str,
}

/// The `response` value a client with `password` computes (RFC 7616 §3.4.1, RFC 2069 without
/// `qop`), in lower-case hex.
#[allow(clippy::too_many_arguments)]
pub(crate) fn request_digest(
    algorithm: Algorithm,
    username: &str,
    realm: &str,
    password: &str,
    method: &str,
    uri: &str,
    nonce: &str,
    qop: Option<QopAuth<'_>>,
) -> String {
    let ha1 = algorithm.hash_hex(&format!("{username}:{realm}:{password}"));
    let ha2 = algorithm.hash_hex(&format!("{method}:{uri}"));
    match qop {
        Some(QopAuth { nc, cnonce }) => {
            algorithm.hash_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"))
        }
        None => algorithm.hash_hex(&format!("{ha1}:{nonce}:{ha2}")),
    }
}

/// The parameters of a Digest `Authorization` header (RFC 3261 §25.1 `digest-response`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Credentials {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    pub response: String,
    /// `MD5` when the client names none (RFC 7616 §3.3); `None` when it names one we do not
    /// implement.
    pub algorithm: Option<Algorithm>,
    pub qop: Option<String>,
    /// The nonce count as written (one to eight hex digits); present whenever `qop` is.
    pub nc: Option<String>,
    /// Present whenever `qop` is.
    pub cnonce: Option<String>,
}

/// Parses the value of an `Authorization` header: the scheme and parameter names are
/// case-insensitive, values may be tokens or quoted strings with backslash escapes (so a comma
/// inside quotes is part of the value), unknown parameters are ignored, repeated ones refused.
pub(crate) fn parse_authorization(value: &str) -> Result<Credentials, AuthError> {
    let value = value.trim();
    let (scheme, rest) = value.split_once([' ', '\t']).unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("Digest") {
        return Err(AuthError::NotDigest);
    }
    let params = parse_params(rest)?;
    let find = |name: &str| {
        params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let require = |name: &'static str| find(name).ok_or(AuthError::Missing(name));
    let qop = find("qop");
    let (nc, cnonce) = if qop.is_some() {
        let nc = require("nc")?;
        if nc.is_empty() || nc.len() > 8 || !nc.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(AuthError::BadNonceCount);
        }
        (Some(nc), Some(require("cnonce")?))
    } else {
        (None, None)
    };
    Ok(Credentials {
        username: require("username")?,
        realm: require("realm")?,
        nonce: require("nonce")?,
        uri: require("uri")?,
        response: require("response")?,
        algorithm: match find("algorithm") {
            None => Some(Algorithm::Md5),
            Some(name) => Algorithm::from_name(&name),
        },
        qop,
        nc,
        cnonce,
    })
}

/// `#auth-param` (RFC 7235 §2.1): lower-cased names with unescaped values.
fn parse_params(s: &str) -> Result<Vec<(String, String)>, AuthError> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut out: Vec<(String, String)> = Vec::new();
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && matches!(b[*i], b' ' | b'\t') {
            *i += 1;
        }
    };
    loop {
        // Empty list elements are allowed (RFC 7230 §7).
        while i < b.len() && matches!(b[i], b' ' | b'\t' | b',') {
            i += 1;
        }
        if i == b.len() {
            return Ok(out);
        }
        let start = i;
        while i < b.len() && is_tchar(b[i]) {
            i += 1;
        }
        if i == start {
            return Err(AuthError::Syntax);
        }
        let name = s[start..i].to_ascii_lowercase();
        skip_ws(&mut i);
        if b.get(i) != Some(&b'=') {
            return Err(AuthError::Syntax);
        }
        i += 1;
        skip_ws(&mut i);
        let value = if b.get(i) == Some(&b'"') {
            i += 1;
            let mut bytes = Vec::new();
            loop {
                match b.get(i) {
                    None => return Err(AuthError::Syntax),
                    Some(b'"') => break,
                    Some(b'\\') => {
                        let &escaped = b.get(i + 1).ok_or(AuthError::Syntax)?;
                        bytes.push(escaped);
                        i += 2;
                    }
                    Some(&c) => {
                        bytes.push(c);
                        i += 1;
                    }
                }
            }
            i += 1;
            String::from_utf8(bytes).map_err(|_| AuthError::Syntax)?
        } else {
            // Tokens, leniently: anything up to a separator (some clients leave `uri` unquoted).
            let start = i;
            while i < b.len() && !matches!(b[i], b',' | b' ' | b'\t' | b'"') {
                i += 1;
            }
            if i == start {
                return Err(AuthError::Syntax);
            }
            s[start..i].to_string()
        };
        skip_ws(&mut i);
        if i < b.len() && b[i] != b',' {
            return Err(AuthError::Syntax);
        }
        if out.iter().any(|(n, _)| *n == name) {
            return Err(AuthError::Repeated(name));
        }
        if out.len() == MAX_PARAMS {
            return Err(AuthError::Syntax);
        }
        out.push((name, value));
    }
}

/// RFC 7230 §3.2.6 `tchar`.
fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

/// Writes `s` as a quoted string (RFC 3261 §25.1 `quoted-pair` for `"` and `\`).
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Equal-length byte strings compared without an early exit, so the time taken does not tell
/// how many leading bytes of a guess were right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Whether the digest `uri` names the resource of the Request-URI. A registrar's resource is
/// its domain, so the user and host must agree while port, scheme and parameters may differ:
/// SIPp, for one, answers with `uri="sip:<remote ip>:<remote port>"` whatever its Request-URI.
fn same_resource(digest_uri: &str, request_uri: &Uri) -> bool {
    let Ok(uri) = rsipstack::sip::parse_uri(digest_uri) else {
        return false;
    };
    let user = |u: &Uri| u.auth.as_ref().map(|a| a.user.clone());
    user(&uri) == user(request_uri)
        && uri
            .host()
            .to_string()
            .eq_ignore_ascii_case(&request_uri.host().to_string())
}

/// What a nonce of ours says about itself.
struct Nonce {
    issued_s: u32,
    serial: u64,
}

/// Challenges and verifies Digest credentials for one realm. See the module docs for the model.
pub(crate) struct DigestAuth {
    realm: String,
    /// Strongest first: the server lists challenges in its order of preference and the client
    /// answers the topmost it supports (RFC 8760 §2.3, §2.4).
    algorithms: Vec<Algorithm>,
    key: [u8; 32],
    epoch: Instant,
    next_serial: u64,
    /// Used nonces by serial: issue time and the highest `nc` accepted.
    used: BTreeMap<u64, (u32, u32)>,
    /// Nonces with a serial up to this one may have been used and forgotten.
    forgotten_up_to: u64,
}

impl DigestAuth {
    /// An authenticator for `realm` offering `algorithms` (duplicates ignored) in that order of
    /// preference. `secret` keys the nonce HMAC; `epoch` is the
    /// instant nonce issue times count from.
    ///
    /// # Panics
    /// When `algorithms` is empty: a server that offers nothing cannot authenticate anyone.
    pub(crate) fn new(
        realm: impl Into<String>,
        algorithms: &[Algorithm],
        secret: [u8; 32],
        epoch: Instant,
    ) -> DigestAuth {
        // The configured order is the preference order of the challenges (RFC 8760 §2.4).
        let mut algorithms = algorithms.to_vec();
        let mut seen = Vec::new();
        algorithms.retain(|a| {
            let first = !seen.contains(a);
            seen.push(*a);
            first
        });
        assert!(!algorithms.is_empty(), "no Digest algorithm to offer");
        DigestAuth {
            realm: realm.into(),
            algorithms,
            key: secret,
            epoch,
            next_serial: 1,
            used: BTreeMap::new(),
            forgotten_up_to: 0,
        }
    }

    /// The algorithms offered, strongest first.
    pub(crate) fn algorithms(&self) -> &[Algorithm] {
        &self.algorithms
    }

    pub(crate) fn realm(&self) -> &str {
        &self.realm
    }

    /// The values of the `WWW-Authenticate` headers of a 401: one challenge per algorithm,
    /// strongest first (RFC 8760 §2.3), all with the same fresh nonce.
    pub(crate) fn challenges(&mut self, now: Instant, stale: bool) -> Vec<String> {
        let algorithms = self.algorithms.clone();
        self.challenges_with(now, stale, &algorithms)
    }

    /// [`DigestAuth::challenges`] offering `algorithms` instead of ours, in that order: an
    /// account may be held to its own list (an old phone that fails whenever SHA-256 is
    /// offered gets MD5 alone, while everyone else keeps SHA-256).
    pub(crate) fn challenges_with(
        &mut self,
        now: Instant,
        stale: bool,
        algorithms: &[Algorithm],
    ) -> Vec<String> {
        let nonce = self.mint(now);
        let realm = quote(&self.realm);
        algorithms
            .iter()
            .map(|alg| {
                let mut value = format!(
                    "Digest realm={realm}, nonce=\"{nonce}\", algorithm={}, qop=\"auth\"",
                    alg.name()
                );
                if stale {
                    value.push_str(", stale=true");
                }
                value
            })
            .collect()
    }

    /// Checks `credentials` for a request with `method` and `request_uri` against `password`.
    /// The order of the checks decides the answer: a nonce we did not mint is [`Unanswered`]
    /// before anything is hashed; a wrong response is [`WrongResponse`] even on an expired
    /// nonce; only a right response on an expired or replayed nonce is [`Stale`] (RFC 7616
    /// §3.3: `stale=true` only when the digest was valid).
    ///
    /// [`Unanswered`]: AuthError::Unanswered
    /// [`WrongResponse`]: AuthError::WrongResponse
    /// [`Stale`]: AuthError::Stale
    pub(crate) fn verify(
        &mut self,
        now: Instant,
        method: &str,
        request_uri: &Uri,
        credentials: &Credentials,
        password: &str,
    ) -> Result<(), AuthError> {
        let algorithms = self.algorithms.clone();
        self.verify_with(now, method, request_uri, credentials, password, &algorithms)
    }

    /// [`DigestAuth::verify`] accepting answers with one of `algorithms` only (those the
    /// account was challenged with, see [`DigestAuth::challenges_with`]).
    pub(crate) fn verify_with(
        &mut self,
        now: Instant,
        method: &str,
        request_uri: &Uri,
        credentials: &Credentials,
        password: &str,
        algorithms: &[Algorithm],
    ) -> Result<(), AuthError> {
        self.forget_expired(now);
        if credentials.realm != self.realm {
            return Err(AuthError::Unanswered);
        }
        let algorithm = credentials
            .algorithm
            .filter(|a| algorithms.contains(a))
            .ok_or(AuthError::Unanswered)?;
        let qop = match (
            credentials.qop.as_deref(),
            credentials.nc.as_deref(),
            credentials.cnonce.as_deref(),
        ) {
            (Some(q), Some(nc), Some(cnonce)) if q.eq_ignore_ascii_case("auth") => {
                Some(QopAuth { nc, cnonce })
            }
            // RFC 2069 answers exist for MD5 only; RFC 7616 requires qop for the rest.
            (None, _, _) if algorithm == Algorithm::Md5 => None,
            _ => return Err(AuthError::Unanswered),
        };
        let nonce = self.open(&credentials.nonce).ok_or(AuthError::Unanswered)?;
        if self
            .used
            .get(&nonce.serial)
            .is_some_and(|&(_, nc)| nc == SPENT)
        {
            return Err(AuthError::Unanswered);
        }
        if !same_resource(&credentials.uri, request_uri) {
            return Err(AuthError::UriMismatch);
        }
        let expected = request_digest(
            algorithm,
            &credentials.username,
            &self.realm,
            password,
            method,
            &credentials.uri,
            &credentials.nonce,
            qop,
        );
        let given = credentials.response.to_ascii_lowercase();
        if !constant_time_eq(expected.as_bytes(), given.as_bytes()) {
            self.spend(nonce);
            return Err(AuthError::WrongResponse);
        }
        if self.is_expired(nonce.issued_s, now) {
            return Err(AuthError::Stale);
        }
        let nc = match qop {
            // Validated as one to eight hex digits by the parser.
            Some(q) => u32::from_str_radix(q.nc, 16).map_err(|_| AuthError::BadNonceCount)?,
            None => 1,
        };
        self.record_use(nonce, nc)
    }

    /// How many used nonces the replay table holds.
    #[cfg(test)]
    fn tracked_nonces(&self) -> usize {
        self.used.len()
    }

    fn seconds(&self, now: Instant) -> u32 {
        let secs = now.saturating_duration_since(self.epoch).as_secs();
        u32::try_from(secs).unwrap_or(u32::MAX)
    }

    fn is_expired(&self, issued_s: u32, now: Instant) -> bool {
        u64::from(self.seconds(now).saturating_sub(issued_s)) > NONCE_LIFETIME.as_secs()
    }

    fn mac(&self, body: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes keys of any size");
        mac.update(b"digest-nonce");
        mac.update(body);
        mac
    }

    fn mint(&mut self, now: Instant) -> String {
        let serial = self.next_serial;
        self.next_serial += 1;
        let mut body = [0u8; 12];
        body[..4].copy_from_slice(&self.seconds(now).to_be_bytes());
        body[4..].copy_from_slice(&serial.to_be_bytes());
        let tag = self.mac(&body).finalize().into_bytes();
        let mut nonce = hex::encode(body);
        for byte in &tag[..16] {
            let _ = write!(nonce, "{byte:02x}");
        }
        nonce
    }

    /// The issue time and serial of a nonce we minted; `None` for anything else.
    fn open(&self, nonce: &str) -> Option<Nonce> {
        if nonce.len() != 56 {
            return None;
        }
        let bytes = hex::decode(nonce).ok()?;
        let (body, tag) = bytes.split_at(12);
        self.mac(body).verify_truncated_left(tag).ok()?;
        Some(Nonce {
            issued_s: u32::from_be_bytes(body[..4].try_into().ok()?),
            serial: u64::from_be_bytes(body[4..].try_into().ok()?),
        })
    }

    fn record_use(&mut self, nonce: Nonce, nc: u32) -> Result<(), AuthError> {
        match self.used.get_mut(&nonce.serial) {
            Some((_, last)) if nc <= *last => Err(AuthError::Stale),
            Some((_, last)) => {
                *last = nc;
                Ok(())
            }
            None if nonce.serial <= self.forgotten_up_to => Err(AuthError::Stale),
            None => {
                self.remember(nonce, nc);
                Ok(())
            }
        }
    }

    /// Marks `nonce` as spent by a wrong response (see the module docs).
    fn spend(&mut self, nonce: Nonce) {
        match self.used.get_mut(&nonce.serial) {
            Some((_, last)) => *last = SPENT,
            None => self.remember(nonce, SPENT),
        }
    }

    fn remember(&mut self, nonce: Nonce, nc: u32) {
        self.used.insert(nonce.serial, (nonce.issued_s, nc));
        while self.used.len() > MAX_TRACKED_NONCES {
            if let Some((serial, _)) = self.used.pop_first() {
                self.forgotten_up_to = self.forgotten_up_to.max(serial);
            }
        }
    }

    /// Drops used nonces that have expired: their age alone now refuses them. Serials grow with
    /// issue time, so the expired ones are at the front.
    fn forget_expired(&mut self, now: Instant) {
        while let Some((_, &(issued_s, _))) = self.used.first_key_value() {
            if !self.is_expired(issued_s, now) {
                break;
            }
            self.used.pop_first();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7616 §3.9.1.
    const USER: &str = "Mufasa";
    const PASSWORD: &str = "Circle of Life";
    const REALM: &str = "http-auth@example.org";
    const NONCE: &str = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v";
    const CNONCE: &str = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";

    fn qop() -> Option<QopAuth<'static>> {
        Some(QopAuth {
            nc: "00000001",
            cnonce: CNONCE,
        })
    }

    #[test]
    fn the_rfc_7616_example_responses_are_reproduced() {
        let digest = |alg| {
            request_digest(
                alg,
                USER,
                REALM,
                PASSWORD,
                "GET",
                "/dir/index.html",
                NONCE,
                qop(),
            )
        };
        assert_eq!(digest(Algorithm::Md5), "8ca523f5e9506fed4657c9700eebdbec");
        assert_eq!(
            digest(Algorithm::Sha256),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
    }

    #[test]
    fn the_rfc_7616_example_adapted_to_register() {
        // Values computed with Python's hashlib for method REGISTER and uri sip:example.org.
        let digest = |alg, qop| {
            request_digest(
                alg,
                USER,
                REALM,
                PASSWORD,
                "REGISTER",
                "sip:example.org",
                NONCE,
                qop,
            )
        };
        assert_eq!(
            digest(Algorithm::Md5, qop()),
            "4d0bd2cf2b438b4c66115656036bd58e"
        );
        assert_eq!(
            digest(Algorithm::Sha256, qop()),
            "d57413410d78b292532cea78ea9f61d570d2a1f061edfb96af7836c329503c9d"
        );
        assert_eq!(
            digest(Algorithm::Md5, None),
            "ff2b4f0717f824b7cca1a6c41bb98dac"
        );
    }

    #[test]
    fn authorization_parsing_handles_quotes_escapes_case_and_defaults() {
        let creds = parse_authorization(
            "digest USERNAME=\"Mu\\\"fa,sa\" ,realm=\"a, b\",nonce=\"n\", uri=\"sip:x\",\
             response=\"r\",qop=auth,NC=0000000a,cnonce=\"c\",opaque=\"o\"",
        )
        .unwrap();
        assert_eq!(creds.username, "Mu\"fa,sa");
        assert_eq!(creds.realm, "a, b");
        assert_eq!(creds.algorithm, Some(Algorithm::Md5), "missing means MD5");
        assert_eq!(creds.nc.as_deref(), Some("0000000a"));
        let sha = parse_authorization(
            "Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"sip:x\", response=\"r\", \
             algorithm=sha-256",
        )
        .unwrap();
        assert_eq!(sha.algorithm, Some(Algorithm::Sha256));
        assert_eq!(sha.qop, None);
    }

    #[test]
    fn malformed_authorization_is_refused() {
        let base = "username=\"u\", realm=\"r\", nonce=\"n\", uri=\"sip:x\", response=\"r\"";
        let parse = |s: &str| parse_authorization(s).unwrap_err();
        assert_eq!(parse(&format!("Basic {base}")), AuthError::NotDigest);
        assert_eq!(parse("Digest username=\"u"), AuthError::Syntax);
        assert_eq!(
            parse("Digest username=\"u\" realm=\"r\""),
            AuthError::Syntax
        );
        assert_eq!(
            parse(&format!("Digest {base}, username=\"v\"")),
            AuthError::Repeated("username".into())
        );
        assert_eq!(
            parse("Digest realm=\"r\", nonce=\"n\", uri=\"sip:x\", response=\"r\""),
            AuthError::Missing("username")
        );
        assert_eq!(
            parse(&format!("Digest {base}, qop=auth, cnonce=\"c\"")),
            AuthError::Missing("nc")
        );
        assert_eq!(
            parse(&format!(
                "Digest {base}, qop=auth, nc=123456789, cnonce=\"c\""
            )),
            AuthError::BadNonceCount
        );
        let many: String = (0..40).map(|i| format!(", x{i}=1")).collect();
        assert_eq!(parse(&format!("Digest {base}{many}")), AuthError::Syntax);
        let unknown = parse_authorization(&format!("Digest {base}, algorithm=SHA-512-256"));
        assert_eq!(unknown.unwrap().algorithm, None);
    }

    /// A client computing its answer from a challenge with its own hashing, independent of
    /// [`request_digest`].
    fn answer(challenge: &str, alg: &str, nc: &str, password: &str) -> Credentials {
        let nonce = challenge
            .split("nonce=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap();
        let h = |s: String| match alg {
            "MD5" => hex::encode(Md5::digest(s.as_bytes())),
            _ => hex::encode(Sha256::digest(s.as_bytes())),
        };
        let ha1 = h(format!("alice:tandem:{password}"));
        let ha2 = h("REGISTER:sip:tandem.example".to_string());
        let response = h(format!("{ha1}:{nonce}:{nc}:0a4f113b:auth:{ha2}"));
        parse_authorization(&format!(
            "Digest username=\"alice\", realm=\"tandem\", nonce=\"{nonce}\", \
             uri=\"sip:tandem.example\", response=\"{response}\", algorithm={alg}, \
             qop=auth, nc={nc}, cnonce=\"0a4f113b\""
        ))
        .unwrap()
    }

    fn setup() -> (DigestAuth, Instant, Uri) {
        let t0 = Instant::now();
        let auth = DigestAuth::new("tandem", &[Algorithm::Sha256, Algorithm::Md5], [7; 32], t0);
        (auth, t0, Uri::try_from("sip:tandem.example").unwrap())
    }

    #[test]
    fn challenges_follow_the_configured_order_and_answers_round_trip() {
        let (mut auth, t0, uri) = setup();
        let challenges = auth.challenges(t0, false);
        assert_eq!(challenges.len(), 2);
        assert!(
            challenges[0].contains("algorithm=SHA-256"),
            "{challenges:?}"
        );
        assert!(challenges[1].contains("algorithm=MD5"));
        assert!(challenges[0].starts_with("Digest realm=\"tandem\", nonce=\""));
        assert!(challenges[0].ends_with("qop=\"auth\""));
        for (alg, challenge) in [("SHA-256", &challenges[0]), ("MD5", &challenges[1])] {
            let creds = answer(challenge, alg, "00000001", "secret");
            let result = auth.verify(t0, "REGISTER", &uri, &creds, "secret");
            // Both challenges share one nonce, so the second answer with nc=1 is a replay.
            if alg == "SHA-256" {
                assert_eq!(result, Ok(()));
            } else {
                assert_eq!(result, Err(AuthError::Stale));
            }
        }
        let creds = answer(&challenges[1], "MD5", "00000002", "secret");
        assert_eq!(auth.verify(t0, "REGISTER", &uri, &creds, "secret"), Ok(()));
        let wrong = answer(&challenges[1], "MD5", "00000003", "guess");
        assert_eq!(
            auth.verify(t0, "REGISTER", &uri, &wrong, "secret"),
            Err(AuthError::WrongResponse)
        );
    }

    #[test]
    fn an_expired_nonce_is_stale_only_with_the_right_password() {
        let (mut auth, t0, uri) = setup();
        let auth_lifetime = NONCE_LIFETIME;
        let challenge = auth.challenges(t0, false).remove(0);
        let later = t0 + auth_lifetime + Duration::from_secs(1);
        let right = answer(&challenge, "SHA-256", "00000001", "secret");
        assert_eq!(
            auth.verify(later, "REGISTER", &uri, &right, "secret"),
            Err(AuthError::Stale)
        );
        let wrong = answer(&challenge, "SHA-256", "00000001", "guess");
        assert_eq!(
            auth.verify(later, "REGISTER", &uri, &wrong, "secret"),
            Err(AuthError::WrongResponse)
        );
        assert!(auth.challenges(later, true)[0].ends_with(", stale=true"));
    }

    #[test]
    fn forged_nonces_other_realms_and_unoffered_algorithms_are_unanswered() {
        let (mut auth, t0, uri) = setup();
        let challenge = auth.challenges(t0, false).remove(0);
        let good = answer(&challenge, "SHA-256", "00000001", "secret");
        let mut forged = good.clone();
        let flipped = if forged.nonce.ends_with('0') {
            "1"
        } else {
            "0"
        };
        forged.nonce.replace_range(55.., flipped);
        let mut other_realm = good.clone();
        other_realm.realm = "elsewhere".into();
        let mut other_uri = good.clone();
        other_uri.uri = "sip:elsewhere.example".into();
        for (creds, err) in [
            (&forged, AuthError::Unanswered),
            (&other_realm, AuthError::Unanswered),
            (&other_uri, AuthError::UriMismatch),
        ] {
            assert_eq!(auth.verify(t0, "REGISTER", &uri, creds, "secret"), Err(err));
        }
        let mut md5_only = DigestAuth::new("tandem", &[Algorithm::Md5], [7; 32], t0);
        assert_eq!(
            md5_only.verify(t0, "REGISTER", &uri, &good, "secret"),
            Err(AuthError::Unanswered)
        );
        assert_eq!(auth.tracked_nonces(), 0);
    }

    #[test]
    fn the_replay_table_forgets_expired_nonces_and_stays_bounded() {
        let (mut auth, t0, uri) = setup();
        let first = auth.challenges(t0, false).remove(0);
        let creds = answer(&first, "SHA-256", "00000001", "secret");
        auth.verify(t0, "REGISTER", &uri, &creds, "secret").unwrap();
        assert_eq!(auth.tracked_nonces(), 1);
        let later = t0 + NONCE_LIFETIME + Duration::from_secs(1);
        let second = auth.challenges(later, false).remove(0);
        let creds = answer(&second, "SHA-256", "00000001", "secret");
        auth.verify(later, "REGISTER", &uri, &creds, "secret")
            .unwrap();
        assert_eq!(auth.tracked_nonces(), 1, "the first nonce is forgotten");

        let oldest = auth.challenges(later, false).remove(0);
        // One more than the table holds: `second` and the first of these are forgotten.
        for _ in 0..=MAX_TRACKED_NONCES {
            let challenge = auth.challenges(later, false).remove(0);
            let creds = answer(&challenge, "SHA-256", "00000001", "secret");
            auth.verify(later, "REGISTER", &uri, &creds, "secret")
                .unwrap();
        }
        assert_eq!(auth.tracked_nonces(), MAX_TRACKED_NONCES);
        // Never used, but older than what was forgotten: it may have been, so it is stale.
        let creds = answer(&oldest, "SHA-256", "00000001", "secret");
        assert_eq!(
            auth.verify(later, "REGISTER", &uri, &creds, "secret"),
            Err(AuthError::Stale)
        );
    }

    #[test]
    fn a_wrong_response_spends_its_nonce() {
        let (mut auth, t0, uri) = setup();
        let challenge = auth.challenges(t0, false).remove(0);
        let wrong = answer(&challenge, "SHA-256", "00000001", "guess");
        assert_eq!(
            auth.verify(t0, "REGISTER", &uri, &wrong, "secret"),
            Err(AuthError::WrongResponse)
        );
        // Neither another guess nor the right password is checked on it any more.
        for (nc, password) in [("00000002", "guess2"), ("00000003", "secret")] {
            let creds = answer(&challenge, "SHA-256", nc, password);
            assert_eq!(
                auth.verify(t0, "REGISTER", &uri, &creds, "secret"),
                Err(AuthError::Unanswered)
            );
        }
        // A fresh challenge works.
        let fresh = auth.challenges(t0, false).remove(0);
        let right = answer(&fresh, "SHA-256", "00000001", "secret");
        assert_eq!(auth.verify(t0, "REGISTER", &uri, &right, "secret"), Ok(()));
        // Spent nonces are forgotten when they expire, like used ones.
        let later = t0 + NONCE_LIFETIME + Duration::from_secs(1);
        let _ = auth.verify(later, "REGISTER", &uri, &right, "secret");
        assert_eq!(auth.tracked_nonces(), 0);
    }
}
