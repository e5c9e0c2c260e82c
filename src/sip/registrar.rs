//! A sans-IO registrar and location service (RFC 3261 §10.3).
//!
//! [`Registrar::handle_register`] takes a REGISTER that the server transaction has already
//! delivered (retransmissions absorbed) and returns the final response; the bindings it keeps
//! answer [`Registrar::lookup`] when a call for an agent has to reach the agent's softphone.
//! Time is an argument: bindings expire at `now + expires`, [`Registrar::poll_timeout`] names the
//! next expiry and [`Registrar::handle_timeout`] purges what is due. The driver calls
//! `handle_timeout` whenever the instant from `poll_timeout` has passed.
//!
//! Each account registers only its own address of record, `sip:<user>@<any domain>`: the user
//! part of the To URI names the account, the domain is not checked (one domain per gateway).
//! Contacts are matched by their URI text; a UA refreshing its registration repeats its Contact
//! (RFC 3261 §10.2.4), and one that changes it merely leaves a binding behind that expires.
//!
//! Growth is bounded: at most [`MAX_BINDINGS_PER_AOR`] bindings per account, Contact URIs of at
//! most [`MAX_CONTACT_URI_LEN`] bytes, and nothing is stored before the request authenticated.
//!
//! Password guessing is slowed down by two [`Guard`]s, one keyed by the account a digest names
//! and one by the source address: past a few wrong digests the key is locked for longer and
//! longer, and while it is locked REGISTERs are refused unchecked, with no challenge minted and
//! nothing hashed. The refusal is `403 Too Many Failed Attempts` with `Retry-After`: 403
//! because the refusal is about this account or this address and retrying at once will not help
//! (RFC 3261 §21.4.4), not 503, which says the whole server is overloaded and sends RFC 3263
//! clients and proxies to another server (and a proxy turns it into 500, §16.7); SIP has no
//! 429 (that number is RFC 3892's "Provide Referrer Identity"). A phone that refreshes its own
//! binding (the same Call-ID from the same address) passes through a lock, so a guesser cannot
//! knock registered phones off.
//!
//! **Several nodes.** A registrar that shares ([`Registrar::sharing`]) records every change a
//! REGISTER makes ([`Registrar::take_changes`]) for the driver to write to the store, and
//! holds a copy of the store's bindings ([`Registrar::set_elsewhere`]: those other nodes took,
//! and its own from before a restart), which the driver keeps up to date. A lookup answers
//! with this node's own bindings of an address of record and, when it has none, with the
//! store's; the digest, the guards and the RFC 3261 §10.3 bookkeeping (Call-ID, CSeq) stay
//! with the node that took the REGISTER.
//!
//! Trunks with credentials ([`Registrar::with_trunks`]) share all of this: they may REGISTER
//! as their user name, and the core checks their INVITEs' `Proxy-Authorization` here
//! ([`Registrar::authenticate_trunk`]) with the same nonces and guards.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use rand::RngExt;
use rsipstack::sip::{Header, HeadersExt, Method, Request, Response, StatusCode, typed::To};
use sha2::Sha256;

use crate::config::{RegistrarConfig, TrunkConfig};
use crate::guard::{Guard, source_key};
use crate::sip::digest::{self, Algorithm, AuthError, DigestAuth};
use crate::sip::message::{response, status_with_reason, unsupported_requirements};
use crate::sip::wire::Meta;

/// Bindings one address of record may hold; more are refused with 403.
const MAX_BINDINGS_PER_AOR: usize = 10;

/// The longest Contact URI we store; longer ones are refused with 400.
const MAX_CONTACT_URI_LEN: usize = 512;

/// Where an address of record can be reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Binding {
    /// The Contact URI as the UA wrote it, without angle brackets or header parameters.
    pub contact: String,
    /// The address the REGISTER came from. Requests for this binding go here, not to the
    /// Contact's host, which behind a NAT is a private address.
    pub source: SocketAddr,
    /// The transport the REGISTER came over (`UDP`, `TCP`, …) as the driver named it.
    pub transport: String,
    pub expires_at: Instant,
    /// Preference in thousandths (RFC 3261 §20.10 `q`, 0 to 1); 1000 when the UA gave none.
    pub q: u16,
}

/// A change a REGISTER made to the bindings, for the other nodes (see [`Registrar::sharing`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BindingChange {
    /// `aor` is reachable at this binding (new or refreshed).
    Bound { aor: String, binding: Binding },
    /// The contact was removed (`Expires: 0`).
    Unbound { aor: String, contact: String },
    /// Every contact of `aor` was removed (`Contact: *`).
    UnboundAll { aor: String },
}

/// Why a REGISTER was refused. [`Registrar::handle_register`] maps each to its status in one
/// place; the reason phrase says what went wrong without revealing whether an account exists.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RegisterError {
    /// Not a REGISTER: the caller routed another method here (405).
    #[error("not a REGISTER")]
    NotRegister,
    /// `Require` names extensions we do not support (420, RFC 3261 §10.3 step 2, §8.2.2.3).
    #[error("unsupported extensions {0:?}")]
    BadExtension(Vec<String>),
    /// No credentials for our realm, or credentials that do not answer a challenge of ours (401).
    #[error("authentication required (stale: {stale})")]
    Challenge { stale: bool },
    /// An Authorization header we cannot read, or whose `uri` is another resource (400).
    #[error("malformed credentials: {0}")]
    BadAuthorization(AuthError),
    /// A wrong password, or a user without an account (403).
    #[error("wrong credentials")]
    WrongCredentials,
    /// The account or the source address failed too often and is locked for `retry_after`;
    /// nothing was checked (403 with Retry-After, see the module docs for why not 503).
    #[error("locked after failed attempts for {retry_after:?}")]
    Locked { retry_after: Duration },
    /// The authenticated user is not the one named in To (403, RFC 3261 §10.3 step 4).
    #[error("{user} may not register {aor}")]
    NotYourAor { user: String, aor: String },
    /// The To URI has no user part, so it names no account (400).
    #[error("To URI names no user")]
    NoUser,
    /// A Contact that is not a SIP URI, or with a malformed parameter (400).
    #[error("malformed Contact: {0}")]
    BadContact(&'static str),
    /// A Contact URI longer than [`MAX_CONTACT_URI_LEN`] (400).
    #[error("Contact URI too long")]
    ContactTooLong,
    /// `*` next to other Contacts or without `Expires: 0` (400, RFC 3261 §10.3 step 6).
    #[error("invalid wildcard Contact")]
    BadWildcard,
    /// A nonzero expiration below the minimum (423 with Min-Expires, RFC 3261 §10.3 step 7).
    #[error("expiration below the minimum")]
    IntervalTooBrief,
    /// The request would leave more than [`MAX_BINDINGS_PER_AOR`] bindings (403).
    #[error("too many bindings")]
    TooManyBindings,
    /// A binding from the same Call-ID already has this or a higher CSeq (500, RFC 3261 §10.3
    /// step 7: "the update MUST be aborted and the request fails").
    #[error("CSeq not above that of the binding")]
    OutOfOrder,
}

/// A binding with what RFC 3261 §10.3 step 7 compares updates against.
#[derive(Debug, Clone)]
struct Stored {
    binding: Binding,
    call_id: String,
    cseq: u32,
}

/// One value of a Contact header.
enum ContactValue {
    Wildcard,
    Uri {
        uri: String,
        /// The `expires` parameter; a malformed one counts as absent.
        expires: Option<u32>,
        q: u16,
    },
}

type HmacSha256 = Hmac<Sha256>;

/// What the registrar's guards did since it started, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct AuthCounts {
    /// Digests checked and found wrong (a wrong password or an unknown user).
    pub failures: u64,
    /// Locks imposed (or lengthened) on an account or a source address.
    pub lockouts: u64,
    /// REGISTERs refused unchecked because their account or source was locked.
    pub refused_locked: u64,
}

/// The registrar: accounts and their credentials, the Digest authenticator, and the bindings.
///
/// Status codes: a REGISTER without credentials gets 401 whoever it is for; a wrong password
/// gets 403. An address of record without an account also ends in 403, never 404: RFC 3261
/// §10.3 authenticates (step 3) and authorizes (step 4) before it checks the address of record
/// (step 5), and since each account may only register its own address, a request for an
/// address without an account fails at step 4. So 404 is never sent, and neither the answer
/// nor its timing (the response is hashed against a decoy password) tells a prober which
/// accounts exist.
pub struct Registrar {
    auth: DigestAuth,
    passwords: HashMap<String, String>,
    /// The algorithms of the accounts that do not use the registrar's own list.
    account_algorithms: HashMap<String, Vec<Algorithm>>,
    /// Checked against when the user is unknown, so that case costs the same hashing.
    decoy_password: String,
    min_expires: u32,
    max_expires: u32,
    default_expires: u32,
    aors: HashMap<String, Vec<Stored>>,
    /// The earliest expiry of each address of record: the timer table.
    deadlines: BTreeSet<(Instant, String)>,
    secret: [u8; 32],
    tags_issued: u64,
    /// Wrong digests by the account they named.
    by_account: Guard<String>,
    /// Wrong digests by source address (an IPv6 source is its /64).
    by_source: Guard<IpAddr>,
    counts: AuthCounts,
    /// Trunks with credentials, by user name.
    trunks: HashMap<String, TrunkConfig>,
    /// Whether changes are recorded for other nodes.
    sharing: bool,
    /// Changes not taken by the driver yet.
    changes: Vec<BindingChange>,
    /// The store's bindings, by address of record (accounts only, each bounded).
    elsewhere: HashMap<String, Vec<Binding>>,
}

impl Registrar {
    /// A registrar for `config`'s realm and accounts. `now` is the epoch of nonce issue times;
    /// `secret` keys nonces and To tags, so registrars sharing it accept each other's nonces.
    ///
    /// # Panics
    /// When `config` names no algorithm we implement; [`crate::config::Config::parse`]
    /// refuses such a configuration.
    pub(crate) fn new(config: &RegistrarConfig, now: Instant, secret: [u8; 32]) -> Registrar {
        let algorithms: Vec<Algorithm> = config
            .algorithms
            .iter()
            .filter_map(|name| Algorithm::from_name(name))
            .collect();
        let account_algorithms = config
            .accounts
            .iter()
            .filter_map(|a| {
                let names = a.algorithms.as_ref()?;
                let list: Vec<Algorithm> = names
                    .iter()
                    .filter_map(|n| Algorithm::from_name(n))
                    .collect();
                (!list.is_empty()).then(|| (a.user.clone(), list))
            })
            .collect();
        Registrar {
            auth: DigestAuth::new(config.realm.clone(), &algorithms, secret, now),
            account_algorithms,
            passwords: config
                .accounts
                .iter()
                .map(|a| (a.user.clone(), a.password.clone()))
                .collect(),
            decoy_password: hex::encode(keyed(&secret, b"decoy-password", b"")),
            min_expires: config.min_expires_s,
            max_expires: config.max_expires_s,
            default_expires: config.default_expires_s,
            aors: HashMap::new(),
            deadlines: BTreeSet::new(),
            secret,
            tags_issued: 0,
            by_account: Guard::new(config.guard_policies().0),
            by_source: Guard::new(config.guard_policies().1),
            counts: AuthCounts::default(),
            trunks: HashMap::new(),
            sharing: false,
            changes: Vec::new(),
            elsewhere: HashMap::new(),
        }
    }

    /// Adds the trunks that have credentials: each may REGISTER as its user name (its
    /// binding says where it is, see [`Registrar::registered_trunk`]) and prove itself on
    /// INVITEs ([`Registrar::authenticate_trunk`]). Their user names are distinct from the
    /// accounts' ([`crate::config::Config::parse`] checks).
    pub(crate) fn with_trunks(mut self, trunks: &[TrunkConfig]) -> Registrar {
        self.trunks = trunks
            .iter()
            .filter_map(|t| Some((t.credentials()?.0.to_string(), t.clone())))
            .collect();
        self
    }

    /// [`Registrar::new`] with a secret from the operating system's random source.
    pub fn with_random_secret(config: &RegistrarConfig, now: Instant) -> Registrar {
        Registrar::new(config, now, rand::rng().random())
    }

    /// Processes a REGISTER received at `now` from `source` over `transport` and returns the
    /// final response: 200 listing every current binding of the address of record with its
    /// `expires`, or an error as mapped on [`RegisterError`].
    pub(crate) fn handle_register(
        &mut self,
        now: Instant,
        req: &Request,
        meta: &Meta,
        source: SocketAddr,
        transport: &str,
    ) -> Response {
        match self.register(now, req, meta, source, transport) {
            Ok(aor) => {
                let tag = self.new_tag();
                let mut resp = response(req, StatusCode::OK, Some(&tag));
                let contacts = self
                    .current(&aor, now)
                    .map(|b| Header::Contact(rsipstack::sip::Contact::new(contact_value(b, now))))
                    .collect();
                add_headers(&mut resp, contacts);
                resp
            }
            Err(err) => self.refuse(now, req, err),
        }
    }

    /// The unexpired bindings of `user`, most preferred (highest `q`) first, the most recently
    /// refreshed first among equals: this node's own, or when it has none, the store's (see
    /// [`Registrar::sharing`]).
    pub(crate) fn lookup(&self, now: Instant, user: &str) -> Vec<Binding> {
        let mut bindings: Vec<Binding> = self.current(user, now).cloned().collect();
        if bindings.is_empty() {
            bindings = self
                .elsewhere
                .get(user)
                .into_iter()
                .flatten()
                .filter(|b| b.expires_at > now)
                .cloned()
                .collect();
        }
        bindings.sort_by(|a, b| b.q.cmp(&a.q).then(b.expires_at.cmp(&a.expires_at)));
        bindings
    }

    /// Records from now on every change a REGISTER makes, for [`Registrar::take_changes`]:
    /// the registrar of one node among several, sharing its bindings through the store.
    pub(crate) fn sharing(mut self) -> Registrar {
        self.sharing = true;
        self
    }

    /// The changes made since the last call, in order.
    pub(crate) fn take_changes(&mut self) -> Vec<BindingChange> {
        std::mem::take(&mut self.changes)
    }

    /// Sets the bindings of `aor` that the store holds (replacing what was known). Only
    /// accounts' addresses of record are kept, at most [`MAX_BINDINGS_PER_AOR`] each.
    pub(crate) fn set_elsewhere(&mut self, aor: &str, mut bindings: Vec<Binding>) {
        if bindings.is_empty() || !self.passwords.contains_key(aor) {
            self.elsewhere.remove(aor);
            return;
        }
        bindings.truncate(MAX_BINDINGS_PER_AOR);
        self.elsewhere.insert(aor.to_string(), bindings);
    }

    /// Replaces everything known of the store's bindings.
    pub(crate) fn replace_elsewhere(&mut self, all: HashMap<String, Vec<Binding>>) {
        self.elsewhere.clear();
        for (aor, bindings) in all {
            self.set_elsewhere(&aor, bindings);
        }
    }

    /// Another node removed `contact` of `aor` (every contact, for `None`): this node's own
    /// binding of it goes too, so that the phone that unregistered is not called from here.
    pub(crate) fn forget(&mut self, aor: &str, contact: Option<&str>) {
        let Some(mut bindings) = self.aors.get(aor).cloned() else {
            return;
        };
        bindings.retain(|s| contact.is_some_and(|c| s.binding.contact != c));
        self.commit(aor, bindings);
    }

    /// When the next binding expires.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.deadlines.first().map(|(at, _)| *at)
    }

    /// Removes the bindings that have expired by `now`.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        while let Some((at, aor)) = self.deadlines.first().cloned() {
            if at > now {
                break;
            }
            let mut bindings = self.aors.get(&aor).cloned().unwrap_or_default();
            bindings.retain(|s| s.binding.expires_at > now);
            self.commit(&aor, bindings);
        }
    }

    /// How many bindings are stored, across all addresses of record.
    pub(crate) fn binding_count(&self) -> usize {
        self.aors.values().map(Vec::len).sum()
    }

    /// What the guards against password guessing did so far.
    pub(crate) fn auth_counts(&self) -> AuthCounts {
        self.counts
    }

    /// Whether any trunk has credentials to prove.
    pub(crate) fn has_trunk_credentials(&self) -> bool {
        !self.trunks.is_empty()
    }

    /// The name of the trunk registered from exactly `source` (IP and port), if any: a
    /// trunk that registered has proved its password, and its binding's source is where its
    /// requests come from.
    pub(crate) fn registered_trunk(&self, now: Instant, source: SocketAddr) -> Option<&str> {
        self.trunks.iter().find_map(|(user, trunk)| {
            self.current(user, now)
                .any(|b| b.source == source)
                .then_some(trunk.name.as_str())
        })
    }

    /// Where the trunk with user name `user` is registered, most preferred first.
    #[cfg(test)]
    pub(crate) fn trunk_bindings(&self, now: Instant, name: &str) -> Vec<Binding> {
        self.trunks
            .iter()
            .find(|(_, trunk)| trunk.name == name)
            .map(|(user, _)| self.lookup(now, user))
            .unwrap_or_default()
    }

    /// RFC 3261 §22.3: the trunk whose credentials the `Proxy-Authorization` of `req` (an
    /// INVITE) proves, by name; `Ok(None)` when it carries no credentials for our realm. The
    /// same nonces, replay table and back-off per account and source as REGISTER: a wrong
    /// password counts against the user name it named and against `source`, and while either
    /// is locked nothing is checked. As a phone refreshing its binding passes a lock on its
    /// account, a trunk at home (one of its `addresses`, or where it registered) passes a lock
    /// on its user name, so that guesses from elsewhere cannot lock the carrier out; the lock
    /// on the source still holds. Only trunks' passwords prove anything here; an agent's
    /// account answers like an unknown user (hashed against the decoy, so the timing is the
    /// same).
    pub(crate) fn authenticate_trunk(
        &mut self,
        now: Instant,
        req: &Request,
        source: SocketAddr,
    ) -> Result<Option<String>, RegisterError> {
        if self.trunks.is_empty() {
            return Ok(None);
        }
        let Some(credentials) =
            self.credentials_in(req, |h| matches!(h, Header::ProxyAuthorization(_)))?
        else {
            return Ok(None);
        };
        let trunk = self.trunks.get(&credentials.username).cloned();
        let at_home = trunk.as_ref().is_some_and(|t| {
            t.matches(source)
                || self
                    .current(&credentials.username, now)
                    .any(|b| b.source == source)
        });
        let by_account = self.by_account.check(&credentials.username, now).err();
        let by_source = self.by_source.check(&source_key(source), now).err();
        let through_lock = by_account.is_some() && at_home;
        let lock = if through_lock {
            by_source
        } else {
            by_account.max(by_source)
        };
        if let Some(retry_after) = lock {
            self.counts.refused_locked += 1;
            return Err(RegisterError::Locked { retry_after });
        }
        let password = trunk
            .as_ref()
            .and_then(|t| t.credentials())
            .map_or(self.decoy_password.as_str(), |(_, p)| p)
            .to_string();
        let method = req.method.to_string();
        let verdict = self
            .auth
            .verify(now, &method, &req.uri, &credentials, &password);
        match (verdict, trunk) {
            (Ok(()), Some(trunk)) => {
                // Passing a lock does not lift it for the guesser (as for REGISTER).
                if !through_lock {
                    self.by_account.succeeded(&credentials.username);
                }
                Ok(Some(trunk.name))
            }
            (verdict, _) => Err(self.failed_digest(now, verdict, &credentials.username, source)),
        }
    }

    /// Challenges for a trunk (the values of `Proxy-Authenticate` headers, RFC 3261 §22.3):
    /// the registrar's algorithms, one fresh nonce.
    pub(crate) fn trunk_challenges(&mut self, now: Instant, stale: bool) -> Vec<String> {
        self.auth.challenges(now, stale)
    }

    /// RFC 3261 §10.3 steps 2 to 7; returns the address of record whose bindings to list.
    fn register(
        &mut self,
        now: Instant,
        req: &Request,
        meta: &Meta,
        source: SocketAddr,
        transport: &str,
    ) -> Result<String, RegisterError> {
        if req.method != Method::Register {
            return Err(RegisterError::NotRegister);
        }
        // Step 2: the registrar supports no extension, so any Require is unsupported.
        let required = unsupported_requirements(&req.headers, &[]);
        if !required.is_empty() {
            return Err(RegisterError::BadExtension(required));
        }
        let aor = to_user(req)?;
        // Steps 3 and 4.
        let (user, algorithm) = self.authenticate(now, req, meta, source)?;
        if user != aor {
            return Err(RegisterError::NotYourAor { user, aor });
        }
        // Step 6.
        let contacts = contact_values(req)?;
        if contacts.is_empty() {
            // A query: the response lists the bindings (RFC 3261 §10.2.3).
            return Ok(aor);
        }
        let header_expires = req.headers.iter().find_map(|h| match h {
            Header::Expires(e) => Some(delta_seconds(e.value())),
            _ => None,
        });
        let before: Vec<Stored> = self
            .aors
            .get(&aor)
            .map(|v| {
                v.iter()
                    .filter(|s| s.binding.expires_at > now)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let out_of_order = |s: &Stored| s.call_id == meta.call_id && meta.cseq <= s.cseq;

        if contacts.iter().any(|c| matches!(c, ContactValue::Wildcard)) {
            if contacts.len() > 1 || header_expires != Some(Some(0)) {
                return Err(RegisterError::BadWildcard);
            }
            if before.iter().any(out_of_order) {
                return Err(RegisterError::OutOfOrder);
            }
            self.commit(&aor, Vec::new());
            self.record(vec![BindingChange::UnboundAll { aor: aor.clone() }]);
            return Ok(aor);
        }
        if contacts.len() > MAX_BINDINGS_PER_AOR {
            return Err(RegisterError::TooManyBindings);
        }
        // Step 7, on a copy committed only when every contact succeeded.
        let mut after = before.clone();
        let mut changes = Vec::new();
        for contact in contacts {
            let ContactValue::Uri { uri, expires, q } = contact else {
                continue;
            };
            let requested = expires
                .or(header_expires.flatten())
                .unwrap_or(self.default_expires);
            if requested != 0 && requested < self.min_expires {
                return Err(RegisterError::IntervalTooBrief);
            }
            if before
                .iter()
                .any(|s| s.binding.contact == uri && out_of_order(s))
            {
                return Err(RegisterError::OutOfOrder);
            }
            after.retain(|s| s.binding.contact != uri);
            if requested == 0 {
                changes.push(BindingChange::Unbound {
                    aor: aor.clone(),
                    contact: uri.clone(),
                });
            }
            if requested != 0 && !before.iter().any(|s| s.binding.contact == uri) {
                tracing::info!(
                    user = %aor,
                    contact = %uri,
                    %source,
                    transport,
                    algorithm = algorithm.name(),
                    "registered"
                );
            }
            if requested != 0 {
                // Longer than the maximum is shortened (RFC 3261 §10.3 step 7 "MAY shorten").
                let granted = requested.min(self.max_expires);
                let binding = Binding {
                    contact: uri,
                    source,
                    transport: transport.to_string(),
                    expires_at: now + Duration::from_secs(u64::from(granted)),
                    q,
                };
                changes.push(BindingChange::Bound {
                    aor: aor.clone(),
                    binding: binding.clone(),
                });
                after.push(Stored {
                    binding,
                    call_id: meta.call_id.clone(),
                    cseq: meta.cseq,
                });
            }
        }
        if after.len() > MAX_BINDINGS_PER_AOR {
            return Err(RegisterError::TooManyBindings);
        }
        self.commit(&aor, after);
        self.record(changes);
        Ok(aor)
    }

    /// RFC 3261 §10.3 step 3: the user whose password the request proves, and the digest
    /// algorithm that proved it.
    fn authenticate(
        &mut self,
        now: Instant,
        req: &Request,
        meta: &Meta,
        source: SocketAddr,
    ) -> Result<(String, Algorithm), RegisterError> {
        let credentials = self.credentials_in(req, |h| matches!(h, Header::Authorization(_)))?;
        // The account guessed at: the one the digest names, else the one To names.
        let account = match &credentials {
            Some(c) => c.username.clone(),
            None => to_user(req)?,
        };
        let through_lock = self.check_locks(now, &account, meta, source)?;
        let credentials = credentials.ok_or(RegisterError::Challenge { stale: false })?;
        // A trunk with credentials registers like an account (its binding says where it is).
        let known = self
            .passwords
            .get(&credentials.username)
            .map(String::as_str)
            .or_else(|| {
                let trunk = self.trunks.get(&credentials.username)?;
                trunk.credentials().map(|(_, p)| p)
            });
        let password = known.unwrap_or(&self.decoy_password);
        let algorithms = self.algorithms_of(&credentials.username).to_vec();
        match self.auth.verify_with(
            now,
            "REGISTER",
            &req.uri,
            &credentials,
            password,
            &algorithms,
        ) {
            Ok(()) if known.is_some() => {
                // A source's failures stay: an attacker with one account of its own must not
                // wipe its guesses at the others by registering in between. Nor does a phone
                // refreshing through a lock lift it for the guesser.
                if !through_lock {
                    self.by_account.succeeded(&credentials.username);
                }
                // `verify_with` accepts only the algorithms offered, so one is named.
                let algorithm = credentials.algorithm.unwrap_or(Algorithm::Md5);
                Ok((credentials.username, algorithm))
            }
            verdict => Err(self.failed_digest(now, verdict, &credentials.username, source)),
        }
    }

    /// The first Digest credentials for our realm among the headers `wanted` picks.
    fn credentials_in(
        &self,
        req: &Request,
        wanted: fn(&Header) -> bool,
    ) -> Result<Option<digest::Credentials>, RegisterError> {
        for header in req.headers.iter().filter(|h| wanted(h)) {
            match digest::parse_authorization(header.value()) {
                Ok(c) if c.realm == self.auth.realm() => return Ok(Some(c)),
                // Credentials for another realm or scheme are not for us (RFC 3261 §22.4).
                Ok(_) | Err(AuthError::NotDigest) => {}
                Err(e) => return Err(RegisterError::BadAuthorization(e)),
            }
        }
        Ok(None)
    }

    /// The error for a digest that did not prove a known user's password (`verdict` is
    /// `Ok` when it proved the decoy's): a wrong one is counted against the user name and
    /// the source, and may lock them.
    fn failed_digest(
        &mut self,
        now: Instant,
        verdict: Result<(), AuthError>,
        user: &str,
        source: SocketAddr,
    ) -> RegisterError {
        match verdict {
            Ok(()) | Err(AuthError::WrongResponse) => {
                self.counts.failures += 1;
                let locks = [
                    self.by_account.failed(&user.to_string(), now),
                    self.by_source.failed(&source_key(source), now),
                ];
                for lock in locks.into_iter().flatten() {
                    self.counts.lockouts += 1;
                    tracing::info!(
                        user = %user,
                        %source,
                        lock_ms = lock.as_millis() as u64,
                        "SIP digest guesses locked out"
                    );
                }
                RegisterError::WrongCredentials
            }
            Err(AuthError::Stale) => RegisterError::Challenge { stale: true },
            Err(AuthError::Unanswered) => RegisterError::Challenge { stale: false },
            Err(e) => RegisterError::BadAuthorization(e),
        }
    }

    /// Refuses a request whose account or source address is locked, unless it refreshes a
    /// binding of that account made from the same address with the same Call-ID (RFC 3261
    /// §10.2.4: a UA refreshes with the Call-ID it registered with), which a guesser elsewhere
    /// cannot know. `Ok(true)` when the request passes a lock that way.
    fn check_locks(
        &mut self,
        now: Instant,
        account: &str,
        meta: &Meta,
        source: SocketAddr,
    ) -> Result<bool, RegisterError> {
        let by_account = self.by_account.check(&account.to_string(), now).err();
        let by_source = self.by_source.check(&source_key(source), now).err();
        let Some(retry_after) = by_account.max(by_source) else {
            return Ok(false);
        };
        let refreshing = self.aors.get(account).is_some_and(|stored| {
            stored.iter().any(|s| {
                s.call_id == meta.call_id
                    && s.binding.source.ip() == source.ip()
                    && s.binding.expires_at > now
            })
        });
        if refreshing {
            return Ok(true);
        }
        self.counts.refused_locked += 1;
        Err(RegisterError::Locked { retry_after })
    }

    /// The one place a [`RegisterError`] becomes a response.
    fn refuse(&mut self, now: Instant, req: &Request, err: RegisterError) -> Response {
        let (status, extra) = match err {
            RegisterError::NotRegister => (
                StatusCode::MethodNotAllowed,
                vec![Header::Allow(rsipstack::sip::Allow::new("REGISTER"))],
            ),
            RegisterError::BadExtension(options) => (
                StatusCode::BadExtension,
                vec![Header::Unsupported(rsipstack::sip::Unsupported::new(
                    options.join(", "),
                ))],
            ),
            RegisterError::Challenge { stale } => {
                // The challenge offers what the account named in To may answer with.
                let user = to_user(req).unwrap_or_default();
                let algorithms = self.algorithms_of(&user).to_vec();
                (
                    StatusCode::Unauthorized,
                    self.auth
                        .challenges_with(now, stale, &algorithms)
                        .into_iter()
                        .map(|c| Header::WwwAuthenticate(rsipstack::sip::WwwAuthenticate::new(c)))
                        .collect(),
                )
            }
            RegisterError::BadAuthorization(AuthError::UriMismatch) => (
                status_with_reason(400, "Digest URI Does Not Match Request-URI"),
                vec![],
            ),
            RegisterError::BadAuthorization(_) => {
                (status_with_reason(400, "Malformed Authorization"), vec![])
            }
            RegisterError::WrongCredentials => (StatusCode::Forbidden, vec![]),
            RegisterError::Locked { retry_after } => {
                // Whole seconds, rounded up: a client retrying on time finds the lock gone.
                let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                (
                    status_with_reason(403, "Too Many Failed Attempts"),
                    vec![Header::RetryAfter(rsipstack::sip::RetryAfter::new(
                        secs.to_string(),
                    ))],
                )
            }
            RegisterError::NotYourAor { .. } => (
                status_with_reason(403, "Not Allowed To Register This Address"),
                vec![],
            ),
            RegisterError::NoUser => (status_with_reason(400, "To URI Names No User"), vec![]),
            RegisterError::BadContact(why) => (
                status_with_reason(400, &format!("Malformed Contact ({why})")),
                vec![],
            ),
            RegisterError::ContactTooLong => {
                (status_with_reason(400, "Contact URI Too Long"), vec![])
            }
            RegisterError::BadWildcard => {
                (status_with_reason(400, "Invalid Wildcard Contact"), vec![])
            }
            RegisterError::IntervalTooBrief => (
                StatusCode::IntervalTooBrief,
                vec![Header::MinExpires(rsipstack::sip::MinExpires::new(
                    self.min_expires.to_string(),
                ))],
            ),
            RegisterError::TooManyBindings => {
                (status_with_reason(403, "Too Many Bindings"), vec![])
            }
            RegisterError::OutOfOrder => (
                status_with_reason(500, "Out-Of-Order REGISTER For This Call-ID"),
                vec![],
            ),
        };
        let tag = self.new_tag();
        let mut resp = response(req, status, Some(&tag));
        add_headers(&mut resp, extra);
        resp
    }

    /// The algorithms `user` is challenged with and may answer with: the account's own list,
    /// else the registrar's. (An account with its own list is told apart by its challenge;
    /// the configuration note says so.)
    fn algorithms_of(&self, user: &str) -> &[Algorithm] {
        self.account_algorithms
            .get(user)
            .map_or(self.auth.algorithms(), |a| &a[..])
    }

    fn current<'a>(&'a self, aor: &str, now: Instant) -> impl Iterator<Item = &'a Binding> {
        self.aors
            .get(aor)
            .into_iter()
            .flatten()
            .map(|s| &s.binding)
            .filter(move |b| b.expires_at > now)
    }

    /// Keeps `changes` for [`Registrar::take_changes`] when sharing. Bounded: the driver takes
    /// them after every message, and one REGISTER makes at most [`MAX_BINDINGS_PER_AOR`].
    fn record(&mut self, changes: Vec<BindingChange>) {
        // A phone that unregisters here is not called from here as registered elsewhere.
        for change in &changes {
            match change {
                BindingChange::Bound { .. } => {}
                BindingChange::Unbound { aor, contact } => {
                    if let Some(bindings) = self.elsewhere.get_mut(aor) {
                        bindings.retain(|b| b.contact != *contact);
                    }
                }
                BindingChange::UnboundAll { aor } => {
                    self.elsewhere.remove(aor);
                }
            }
        }
        if self.sharing {
            self.changes.extend(changes);
        }
    }

    /// Replaces the bindings of `aor`, keeping the timer table in step.
    fn commit(&mut self, aor: &str, bindings: Vec<Stored>) {
        let earliest = |v: &[Stored]| v.iter().map(|s| s.binding.expires_at).min();
        if let Some(at) = self.aors.get(aor).and_then(|v| earliest(v)) {
            self.deadlines.remove(&(at, aor.to_string()));
        }
        match earliest(&bindings) {
            Some(at) => {
                self.deadlines.insert((at, aor.to_string()));
                self.aors.insert(aor.to_string(), bindings);
            }
            None => {
                self.aors.remove(aor);
            }
        }
    }

    /// A To tag: unpredictable (RFC 3261 §19.3) without drawing randomness per request.
    fn new_tag(&mut self) -> String {
        self.tags_issued += 1;
        let mac = keyed(&self.secret, b"to-tag", &self.tags_issued.to_be_bytes());
        hex::encode(&mac[..8])
    }
}

fn keyed(secret: &[u8; 32], label: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any size");
    mac.update(label);
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Adds `extra` headers before the final Content-Length that [`response`] wrote.
fn add_headers(resp: &mut Response, extra: Vec<Header>) {
    if extra.is_empty() {
        return;
    }
    let length = resp
        .headers
        .pop_first(|h| matches!(h, Header::ContentLength(_)).then(|| h.clone()));
    resp.headers.extend(extra);
    if let Some(length) = length {
        resp.headers.push(length);
    }
}

/// `<uri>;expires=N[;q=0.xxx]` for a 200's Contact list (RFC 3261 §10.3 step 8).
fn contact_value(binding: &Binding, now: Instant) -> String {
    let left = binding.expires_at.saturating_duration_since(now);
    let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
    let mut value = format!("<{}>;expires={secs}", binding.contact);
    if binding.q < 1000 {
        let q = format!("{:03}", binding.q);
        value.push_str(&format!(";q=0.{}", q.trim_end_matches('0')));
        if binding.q == 0 {
            value.push('0');
        }
    }
    value
}

/// The user part of the To URI: the account whose bindings the request changes.
fn to_user(req: &Request) -> Result<String, RegisterError> {
    let value = req.to_header().map_err(|_| RegisterError::NoUser)?.value();
    let to = To::parse(value).map_err(|_| RegisterError::NoUser)?;
    match to.uri.auth {
        Some(auth) if !auth.user.is_empty() => Ok(auth.user),
        _ => Err(RegisterError::NoUser),
    }
}

/// RFC 3261 §25.1 `delta-seconds` (Expires header and `expires` parameter); values beyond
/// 2³²−1 saturate, anything else is `None`.
fn delta_seconds(s: &str) -> Option<u32> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = s.trim_start_matches('0');
    if digits.len() > 10 {
        return Some(u32::MAX);
    }
    Some(u32::try_from(s.parse::<u64>().ok()?).unwrap_or(u32::MAX))
}

/// RFC 3261 §25.1 `qvalue` in thousandths.
fn q_value(s: &str) -> Option<u16> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths: u16 = format!("{frac:0<3}").parse().ok()?;
    match int {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// Every value of every Contact header, in order.
fn contact_values(req: &Request) -> Result<Vec<ContactValue>, RegisterError> {
    let mut out = Vec::new();
    for header in req.headers.iter() {
        let Header::Contact(value) = header else {
            continue;
        };
        for item in split_outside(value.value(), ',', true) {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            out.push(parse_contact(item)?);
            // A bound on the work before the count is checked against the limit.
            if out.len() > MAX_BINDINGS_PER_AOR {
                return Err(RegisterError::TooManyBindings);
            }
        }
    }
    Ok(out)
}

/// Splits at `sep` outside quoted strings (and, with `brackets`, outside `<…>`).
fn split_outside(s: &str, sep: char, brackets: bool) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut quoted, mut escaped, mut angle) = (false, false, false);
    let mut start = 0;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if quoted {
            match c {
                '\\' => escaped = true,
                '"' => quoted = false,
                _ => {}
            }
        } else {
            match c {
                '"' => quoted = true,
                '<' if brackets => angle = true,
                '>' if brackets => angle = false,
                c if c == sep && !angle => {
                    parts.push(&s[start..i]);
                    start = i + c.len_utf8();
                }
                _ => {}
            }
        }
    }
    parts.push(&s[start..]);
    parts
}

/// One Contact value: `*`, `name-addr` or `addr-spec` with header parameters (RFC 3261 §20.10;
/// in an `addr-spec` everything after the first `;` is a header parameter).
fn parse_contact(item: &str) -> Result<ContactValue, RegisterError> {
    if item == "*" {
        return Ok(ContactValue::Wildcard);
    }
    let before_bracket = split_outside(item, '<', false)[0];
    let (uri, params) = if before_bracket.len() < item.len() {
        let rest = &item[before_bracket.len() + 1..];
        let (uri, params) = rest
            .split_once('>')
            .ok_or(RegisterError::BadContact("missing '>'"))?;
        (uri, params.trim())
    } else {
        let uri = item.split(';').next().unwrap_or(item);
        (uri, &item[uri.len()..])
    };
    let uri = uri.trim();
    if uri.len() > MAX_CONTACT_URI_LEN {
        return Err(RegisterError::ContactTooLong);
    }
    let scheme = uri.split_once(':').map(|(s, _)| s.to_ascii_lowercase());
    if !matches!(scheme.as_deref(), Some("sip" | "sips"))
        || uri.contains(|c: char| c.is_whitespace() || c.is_control() || "\"<>".contains(c))
        || rsipstack::sip::parse_uri(uri).is_err()
    {
        return Err(RegisterError::BadContact("not a SIP URI"));
    }
    if !params.is_empty() && !params.starts_with(';') {
        return Err(RegisterError::BadContact("junk after the URI"));
    }
    let (mut expires, mut q) = (None, 1000);
    for param in split_outside(params, ';', false).into_iter().skip(1) {
        let (name, value) = param.split_once('=').unwrap_or((param, ""));
        let name = name.trim();
        if name.eq_ignore_ascii_case("expires") {
            expires = delta_seconds(value);
        } else if name.eq_ignore_ascii_case("q") {
            q = q_value(value.trim()).ok_or(RegisterError::BadContact("bad q-value"))?;
        }
    }
    Ok(ContactValue::Uri {
        uri: uri.to_string(),
        expires,
        q,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SipAccount;
    use crate::sip::wire::{Incoming, parse_datagram};
    use md5::{Digest as _, Md5};

    const SOURCE: &str = "198.51.100.7:40123";

    fn config() -> RegistrarConfig {
        RegistrarConfig {
            accounts: vec![
                SipAccount {
                    user: "alice".into(),
                    password: "alice-secret".into(),
                    ..SipAccount::default()
                },
                SipAccount {
                    user: "bob".into(),
                    password: "bob-secret".into(),
                    ..SipAccount::default()
                },
            ],
            ..RegistrarConfig::default()
        }
    }

    fn source() -> SocketAddr {
        SOURCE.parse().unwrap()
    }

    fn parse(text: &str) -> (Request, Meta) {
        match parse_datagram(text.as_bytes()) {
            Ok(Incoming::Request(req, meta)) => (req, meta),
            other => panic!("not a request: {other:?}\n{text}"),
        }
    }

    fn text(resp: &Response) -> String {
        String::from_utf8(resp.to_bytes()).unwrap()
    }

    fn code(resp: &Response) -> u16 {
        resp.status_code.code()
    }

    /// The values of the `name` headers of a response.
    fn values(resp: &Response, name: &str) -> Vec<String> {
        text(resp)
            .split("\r\n")
            .filter_map(|l| l.strip_prefix(&format!("{name}: ")).map(String::from))
            .collect()
    }

    fn param<'a>(challenge: &'a str, name: &str) -> &'a str {
        let rest = challenge.split(&format!("{name}=")).nth(1).unwrap();
        match rest.strip_prefix('"') {
            Some(quoted) => quoted.split('"').next().unwrap(),
            None => rest.split(',').next().unwrap(),
        }
    }

    /// A softphone, with its own Digest computation (not the module's), that answers the
    /// challenge of its chosen algorithm and counts its uses of a nonce.
    struct Phone {
        to_user: String,
        user: String,
        password: String,
        algorithm: &'static str,
        call_id: String,
        cseq: u32,
        nonce: Option<String>,
        nc: u32,
    }

    impl Phone {
        fn new(user: &str, password: &str, algorithm: &'static str) -> Phone {
            Phone {
                to_user: user.into(),
                user: user.into(),
                password: password.into(),
                algorithm,
                call_id: format!("{user}-reg@192.0.2.1"),
                cseq: 0,
                nonce: None,
                nc: 0,
            }
        }

        fn hash(&self, s: &str) -> String {
            match self.algorithm {
                "MD5" => hex::encode(Md5::digest(s.as_bytes())),
                _ => hex::encode(sha2::Sha256::digest(s.as_bytes())),
            }
        }

        fn authorization(&mut self) -> Option<String> {
            let nonce = self.nonce.clone()?;
            self.nc += 1;
            let nc = format!("{:08x}", self.nc);
            let uri = "sip:tandem.example";
            let ha1 = self.hash(&format!("{}:tandem:{}", self.user, self.password));
            let ha2 = self.hash(&format!("REGISTER:{uri}"));
            let response = self.hash(&format!("{ha1}:{nonce}:{nc}:c0ffee:auth:{ha2}"));
            Some(format!(
                "Authorization: Digest username=\"{}\", realm=\"tandem\", nonce=\"{nonce}\", \
                 uri=\"{uri}\", response=\"{response}\", algorithm={}, qop=auth, nc={nc}, \
                 cnonce=\"c0ffee\"",
                self.user, self.algorithm
            ))
        }

        /// The next REGISTER with `extra` header lines, with credentials once challenged.
        fn request(&mut self, extra: &[&str]) -> (Request, Meta) {
            parse(&self.request_text(extra))
        }

        fn request_text(&mut self, extra: &[&str]) -> String {
            self.cseq += 1;
            let mut text = format!(
                "REGISTER sip:tandem.example SIP/2.0\r\n\
                 Via: SIP/2.0/UDP 192.0.2.1:5062;branch=z9hG4bK-{cseq};rport\r\n\
                 Max-Forwards: 70\r\n\
                 From: <sip:{to}@tandem.example>;tag=ph1\r\n\
                 To: <sip:{to}@tandem.example>\r\n\
                 Call-ID: {call_id}\r\n\
                 CSeq: {cseq} REGISTER\r\n",
                to = self.to_user,
                call_id = self.call_id,
                cseq = self.cseq,
            );
            for line in extra
                .iter()
                .map(|l| l.to_string())
                .chain(self.authorization())
            {
                text.push_str(&line);
                text.push_str("\r\n");
            }
            text.push_str("Content-Length: 0\r\n\r\n");
            text
        }

        /// Takes the nonce of our algorithm's challenge from a 401.
        fn learn(&mut self, resp: &Response) {
            let challenge = values(resp, "WWW-Authenticate")
                .into_iter()
                .find(|c| param(c, "algorithm") == self.algorithm)
                .expect("a challenge for our algorithm");
            self.nonce = Some(param(&challenge, "nonce").to_string());
            self.nc = 0;
        }

        /// Sends a REGISTER, answering one challenge if there is one; returns the final answer.
        fn register(&mut self, reg: &mut Registrar, now: Instant, extra: &[&str]) -> Response {
            let (req, meta) = self.request(extra);
            let resp = reg.handle_register(now, &req, &meta, source(), "UDP");
            if code(&resp) != 401 {
                return resp;
            }
            self.learn(&resp);
            let (req, meta) = self.request(extra);
            reg.handle_register(now, &req, &meta, source(), "UDP")
        }
    }

    fn setup() -> (Registrar, Instant) {
        let t0 = Instant::now();
        (Registrar::new(&config(), t0, [42; 32]), t0)
    }

    const CONTACT: &str = "Contact: <sip:alice@10.0.0.5:5062;transport=udp>";

    #[test]
    fn a_challenge_then_credentials_create_a_binding() {
        let (mut reg, t0) = setup();
        let mut phone = Phone::new("alice", "alice-secret", "SHA-256");
        let (req, meta) = phone.request(&[CONTACT]);
        let challenge = reg.handle_register(t0, &req, &meta, source(), "UDP");
        assert_eq!(code(&challenge), 401);
        let offered = values(&challenge, "WWW-Authenticate");
        assert_eq!(offered.len(), 2, "{offered:?}");
        assert!(offered[0].contains("algorithm=SHA-256"));
        assert!(offered[1].contains("algorithm=MD5"));
        assert!(values(&challenge, "To")[0].contains(";tag="));
        assert_eq!(
            reg.binding_count(),
            0,
            "nothing stored before authentication"
        );

        phone.learn(&challenge);
        let (req, meta) = phone.request(&[CONTACT]);
        let ok = reg.handle_register(t0, &req, &meta, source(), "UDP");
        assert_eq!(code(&ok), 200, "{}", text(&ok));
        assert_eq!(
            values(&ok, "Contact"),
            ["<sip:alice@10.0.0.5:5062;transport=udp>;expires=3600"]
        );
        assert_eq!(
            reg.lookup(t0, "alice"),
            [Binding {
                contact: "sip:alice@10.0.0.5:5062;transport=udp".into(),
                source: source(),
                transport: "UDP".into(),
                expires_at: t0 + Duration::from_secs(3600),
                q: 1000,
            }]
        );
        assert!(reg.lookup(t0, "bob").is_empty());
        assert_eq!(reg.binding_count(), 1);
        assert_eq!(reg.poll_timeout(), Some(t0 + Duration::from_secs(3600)));
    }

    #[test]
    fn a_wrong_password_is_forbidden() {
        let (mut reg, t0) = setup();
        let mut phone = Phone::new("alice", "guess", "SHA-256");
        assert_eq!(code(&phone.register(&mut reg, t0, &[CONTACT])), 403);
        assert_eq!(reg.binding_count(), 0);
    }

    #[test]
    fn md5_and_sha256_are_both_accepted() {
        let (mut reg, t0) = setup();
        let mut alice = Phone::new("alice", "alice-secret", "SHA-256");
        let mut bob = Phone::new("bob", "bob-secret", "MD5");
        assert_eq!(code(&alice.register(&mut reg, t0, &[CONTACT])), 200);
        let bob_contact = "Contact: <sip:bob@10.0.0.6>";
        assert_eq!(code(&bob.register(&mut reg, t0, &[bob_contact])), 200);
        assert_eq!(reg.binding_count(), 2);
    }

    #[test]
    fn an_account_with_its_own_algorithms_is_challenged_with_those_alone() {
        let t0 = Instant::now();
        let mut config = config();
        config.accounts.push(SipAccount {
            user: "baresip".into(),
            password: "old-secret".into(),
            algorithms: Some(vec!["MD5".into()]),
        });
        let mut reg = Registrar::new(&config, t0, [42; 32]);

        // The old client sees MD5 only; everyone else still gets SHA-256 first.
        let mut old = Phone::new("baresip", "old-secret", "MD5");
        let (req, meta) = old.request(&["Contact: <sip:baresip@10.0.0.7>"]);
        let challenge = reg.handle_register(t0, &req, &meta, source(), "UDP");
        let offered = values(&challenge, "WWW-Authenticate");
        assert_eq!(offered.len(), 1, "{offered:?}");
        assert!(offered[0].contains("algorithm=MD5"));
        let mut alice = Phone::new("alice", "alice-secret", "SHA-256");
        let (req, meta) = alice.request(&[CONTACT]);
        let challenge = reg.handle_register(t0, &req, &meta, source(), "UDP");
        let offered = values(&challenge, "WWW-Authenticate");
        assert_eq!(offered.len(), 2, "{offered:?}");
        assert!(offered[0].contains("algorithm=SHA-256"));

        assert_eq!(
            code(&old.register(&mut reg, t0, &["Contact: <sip:baresip@10.0.0.7>"])),
            200
        );
        assert_eq!(code(&alice.register(&mut reg, t0, &[CONTACT])), 200);

        // An answer with an algorithm the account was not offered is challenged afresh.
        let mut sneaky = Phone::new("baresip", "old-secret", "SHA-256");
        sneaky.nonce = Some(param(&offered[0], "nonce").to_string());
        let (req, meta) = sneaky.request(&["Contact: <sip:baresip@10.0.0.8>"]);
        let resp = reg.handle_register(t0, &req, &meta, source(), "UDP");
        assert_eq!(code(&resp), 401, "{}", text(&resp));
        assert_eq!(reg.lookup(t0, "baresip").len(), 1);
    }

    #[test]
    fn a_binding_expires_and_the_timer_purges_it() {
        let (mut reg, t0) = setup();
        let mut phone = Phone::new("alice", "alice-secret", "SHA-256");
        let resp = phone.register(&mut reg, t0, &[CONTACT, "Expires: 120"]);
        assert!(values(&resp, "Contact")[0].ends_with(";expires=120"));
        let due = t0 + Duration::from_secs(120);
        assert_eq!(reg.poll_timeout(), Some(due));

        reg.handle_timeout(due - Duration::from_secs(1));
        assert_eq!(reg.lookup(due - Duration::from_secs(1), "alice").len(), 1);
        reg.handle_timeout(due);
        assert!(reg.lookup(due, "alice").is_empty());
        assert_eq!(reg.binding_count(), 0);
        assert_eq!(reg.poll_timeout(), None);
    }

    #[test]
    fn a_refresh_moves_the_deadline_and_keeps_one_binding() {
        let (mut reg, t0) = setup();
        let mut phone = Phone::new("alice", "alice-secret", "SHA-256");
        phone.register(&mut reg, t0, &[CONTACT, "Expires: 120"]);
        let t1 = t0 + Duration::from_secs(100);
        // Within the nonce lifetime the phone reuses its nonce with the next nonce count.
        let (req, meta) = phone.request(&[CONTACT, "Expires: 120"]);
        let resp = reg.handle_register(t1, &req, &meta, source(), "UDP");
        assert_eq!(code(&resp), 200, "{}", text(&resp));
        assert_eq!(reg.binding_count(), 1);
        assert_eq!(reg.poll_timeout(), Some(t1 + Duration::from_secs(120)));
    }

    #[test]
    fn too_brief_an_interval_gets_423_and_too_long_is_shortened() {
        let (mut reg, t0) = setup();
        let mut phone = Phone::new("alice", "alice-secret", "SHA-256");
        let resp = phone.register(&mut reg, t0, &[CONTACT, "Expires: 30"]);
        assert_eq!(code(&resp), 423);
        assert_eq!(values(&resp, "Min-Expires"), ["60"]);
        assert_eq!(reg.binding_count(), 0);

        // The per-contact parameter overrides the header.
        let contact = "Contact: <sip:alice@10.0.0.5>;expires=7200";
        let (req, meta) = phone.request(&[contact, "Expires: 30"]);
        let resp = reg.handle_register(t0, &req, &meta, source(), "UDP");
        assert_eq!(code(&resp), 200, "{}", text(&resp));
        assert_eq!(
            values(&resp, "Contact"),
            ["<sip:alice@10.0.0.5>;expires=3600"]
        );
    }

    #[test]
    fn expires_zero_removes_one_contact_and_the_wildcard_removes_all() {
        let (mut reg, t0) = setup();
        let mut phone = Phone::new("alice", "alice-secret", "SHA-256");
        let two = "Contact: <sip:alice@10.0.0.5>;q=0.5, <sip:alice@10.0.0.6>";
        let resp = phone.register(&mut reg, t0, &[two]);
        assert_eq!(values(&resp, "Contact").len(), 2);
        let found = reg.lookup(t0, "alice");
        assert_eq!(found[0].contact, "sip:alice@10.0.0.6", "q=1 before q=0.5");
        assert_eq!(found[1].q, 500);

        let (req, meta) = phone.request(&["Contact: <sip:alice@10.0.0.6>;expires=0"]);
        let resp = reg.handle_register(t0, &req, &meta, source(), "UDP");
        assert_eq!(
            values(&resp, "Contact"),
            ["<sip:alice@10.0.0.5>;expires=3600;q=0.5"]
        );

        let (req, meta) = phone.request(&["Contact: *"]);
        let resp = reg.handle_register(t0, &req, &meta, source(), "UDP");
        assert_eq!(code(&resp), 400, "* needs Expires: 0");
        let (req, meta) = phone.request(&["Contact: *", "Expires: 0"]);
        let resp = reg.handle_register(t0, &req, &meta, source(), "UDP");
        assert_eq!(code(&resp), 200);
        assert!(values(&resp, "Contact").is_empty());
        assert_eq!(reg.binding_count(), 0);
        assert_eq!(reg.poll_timeout(), None);
    }

    #[test]
    fn a_sharing_registrar_reports_its_changes_and_falls_back_to_other_nodes() {
        let (reg, t0) = setup();
        let mut reg = reg.sharing();
        let mut phone = Phone::new("alice", "alice-secret", "SHA-256");
        let two = "Contact: <sip:alice@10.0.0.5>, <sip:alice@10.0.0.6>;expires=0";
        assert_eq!(code(&phone.register(&mut reg, t0, &[two])), 200);
        let bound = reg.lookup(t0, "alice");
        assert_eq!(
            reg.take_changes(),
            [
                BindingChange::Bound {
                    aor: "alice".into(),
                    binding: bound[0].clone(),
                },
                BindingChange::Unbound {
                    aor: "alice".into(),
                    contact: "sip:alice@10.0.0.6".into(),
                },
            ]
        );
        assert!(reg.take_changes().is_empty(), "taken once");
        // A refused REGISTER changes nothing.
        let mut guess = Phone::new("alice", "guess", "SHA-256");
        assert_eq!(code(&guess.register(&mut reg, t0, &[CONTACT])), 403);
        assert!(reg.take_changes().is_empty());

        // Bob registered through another node: found there, until that binding expires.
        let elsewhere = Binding {
            contact: "sip:bob@10.0.0.9".into(),
            source: "10.0.0.1:5060".parse().unwrap(),
            transport: "UDP".into(),
            expires_at: t0 + Duration::from_secs(60),
            q: 1000,
        };
        reg.set_elsewhere("bob", vec![elsewhere.clone()]);
        reg.set_elsewhere("mallory", vec![elsewhere.clone()]);
        assert_eq!(reg.lookup(t0, "bob"), std::slice::from_ref(&elsewhere));
        assert!(reg.lookup(t0, "mallory").is_empty(), "accounts only");
        assert!(reg.lookup(t0 + Duration::from_secs(60), "bob").is_empty());
        assert_eq!(reg.binding_count(), 1, "only this node's own count");
        // This node's own bindings come first; another node's unbinding removes them.
        reg.set_elsewhere("alice", vec![elsewhere.clone()]);
        assert_eq!(reg.lookup(t0, "alice"), bound);
        reg.forget("alice", Some("sip:alice@10.0.0.5"));
        assert_eq!(reg.lookup(t0, "alice"), [elsewhere]);
        assert_eq!(reg.binding_count(), 0);

        // Unregistering here a contact taken elsewhere: not found here any more either.
        let (req, meta) = phone.request(&["Contact: <sip:bob@10.0.0.9>;expires=0"]);
        reg.set_elsewhere(
            "alice",
            vec![Binding {
                contact: "sip:bob@10.0.0.9".into(),
                ..bound[0].clone()
            }],
        );
        reg.handle_register(t0, &req, &meta, source(), "UDP");
        assert!(reg.lookup(t0, "alice").is_empty());
        reg.take_changes();

        // The wildcard removes every contact, here and in the store.
        phone.register(&mut reg, t0, &[CONTACT]);
        reg.take_changes();
        let (req, meta) = phone.request(&["Contact: *", "Expires: 0"]);
        reg.handle_register(t0, &req, &meta, source(), "UDP");
        assert_eq!(
            reg.take_changes(),
            [BindingChange::UnboundAll {
                aor: "alice".into()
            }]
        );
    }

    #[test]
    fn a_registrar_that_does_not_share_keeps_no_changes() {
        let (mut reg, t0) = setup();
        let mut phone = Phone::new("alice", "alice-secret", "SHA-256");
        phone.register(&mut reg, t0, &[CONTACT]);
        assert!(reg.take_changes().is_empty());
    }

    #[test]
    fn an_expired_nonce_gets_a_stale_challenge() {
        let (mut reg, t0) = setup();
        let mut phone = Phone::new("alice", "alice-secret", "SHA-256");
        phone.register(&mut reg, t0, &[CONTACT]);
        let later = t0 + digest::NONCE_LIFETIME + Duration::from_secs(1);
        let (req, meta) = phone.request(&[CONTACT]);
        let resp = reg.handle_register(later, &req, &meta, source(), "UDP");
        assert_eq!(code(&resp), 401);
        assert!(values(&resp, "WWW-Authenticate")[0].ends_with(", stale=true"));
        phone.learn(&resp);
        let (req, meta) = phone.request(&[CONTACT]);
        let resp = reg.handle_register(later, &req, &meta, source(), "UDP");
        assert_eq!(code(&resp), 200);
    }

    #[test]
    fn a_replayed_register_is_challenged() {
        let (mut reg, t0) = setup();
        let mut phone = Phone::new("alice", "alice-secret", "SHA-256");
        let resp = phone.register(&mut reg, t0, &[CONTACT]);
        assert_eq!(code(&resp), 200);
        // An eavesdropper resends the same request (same nonce count) after it was removed.
        phone.cseq -= 1;
        phone.nc -= 1;
        let (replay, meta) = phone.request(&[CONTACT]);
        let (req, unregister) = {
            let mut p = Phone::new("alice", "alice-secret", "SHA-256");
            p.call_id = "other@192.0.2.1".into();
            p.nonce = phone.nonce.clone();
            p.nc = 100;
            p.request(&["Contact: *", "Expires: 0"])
        };
        assert_eq!(
            code(&reg.handle_register(t0, &req, &unregister, source(), "UDP")),
            200
        );
        let resp = reg.handle_register(t0, &replay, &meta, source(), "UDP");
        assert_eq!(code(&resp), 401);
        assert!(values(&resp, "WWW-Authenticate")[0].ends_with(", stale=true"));
        assert_eq!(reg.binding_count(), 0);
    }

    #[test]
    fn an_out_of_order_cseq_on_the_same_call_id_fails() {
        let (mut reg, t0) = setup();
        let mut phone = Phone::new("alice", "alice-secret", "SHA-256");
        phone.cseq = 10;
        phone.register(&mut reg, t0, &[CONTACT]);
        phone.cseq = 5;
        let (req, meta) = phone.request(&[CONTACT, "Expires: 0"]);
        let resp = reg.handle_register(t0, &req, &meta, source(), "UDP");
        assert_eq!(code(&resp), 500, "{}", text(&resp));
        assert_eq!(reg.binding_count(), 1, "the update was aborted");
        // Another Call-ID may change the binding whatever its CSeq.
        phone.call_id = "second@192.0.2.1".into();
        let (req, meta) = phone.request(&[CONTACT, "Expires: 0"]);
        let resp = reg.handle_register(t0, &req, &meta, source(), "UDP");
        assert_eq!(code(&resp), 200);
        assert_eq!(reg.binding_count(), 0);
    }

    #[test]
    fn an_address_of_record_holds_a_bounded_number_of_bindings() {
        let (mut reg, t0) = setup();
        let mut phone = Phone::new("alice", "alice-secret", "SHA-256");
        for i in 0..MAX_BINDINGS_PER_AOR {
            let contact = format!("Contact: <sip:alice@10.0.1.{i}>");
            let resp = phone.register(&mut reg, t0, &[&contact]);
            assert_eq!(code(&resp), 200);
        }
        let resp = phone.register(&mut reg, t0, &["Contact: <sip:alice@10.0.2.1>"]);
        assert_eq!(code(&resp), 403);
        assert_eq!(resp.status_code.text(), "Too Many Bindings");
        assert_eq!(reg.binding_count(), MAX_BINDINGS_PER_AOR);
        // One request with many contacts is refused before any is parsed in full.
        let many: Vec<String> = (0..50).map(|i| format!("<sip:a@10.0.3.{i}>")).collect();
        let contact = format!("Contact: {}", many.join(", "));
        assert_eq!(code(&phone.register(&mut reg, t0, &[&contact])), 403);
    }

    #[test]
    fn malformed_contacts_are_refused_with_400() {
        let (mut reg, t0) = setup();
        let mut phone = Phone::new("alice", "alice-secret", "SHA-256");
        let long = format!("Contact: <sip:alice@10.0.0.5;x={}>", "a".repeat(600));
        for (contact, reason) in [
            (long.as_str(), "Contact URI Too Long"),
            (
                "Contact: <mailto:alice@example.com>",
                "Malformed Contact (not a SIP URI)",
            ),
            (
                "Contact: <sip:alice@10.0.0.5>;q=2",
                "Malformed Contact (bad q-value)",
            ),
            (
                "Contact: <sip:alice@10.0.0.5",
                "Malformed Contact (missing '>')",
            ),
            (
                "Contact: <sip:alice@10.0.0.5>, *",
                "Invalid Wildcard Contact",
            ),
            (
                "Contact: sip:al>ice@10.0.0.5",
                "Malformed Contact (not a SIP URI)",
            ),
        ] {
            // Contacts that are not even well-formed SIP are refused by the wire layer with
            // the same status before the registrar sees them.
            let raw = phone.request_text(&[contact, "Expires: 0"]);
            if let Err(rejection) = parse_datagram(raw.as_bytes()) {
                assert_eq!(rejection.status(), Some(400), "{contact}");
                continue;
            }
            let resp = phone.register(&mut reg, t0, &[contact, "Expires: 0"]);
            assert_eq!(code(&resp), 400, "{contact}: {}", text(&resp));
            assert_eq!(resp.status_code.text(), reason);
        }
        assert_eq!(reg.binding_count(), 0);
    }

    #[test]
    fn an_unknown_user_is_challenged_then_forbidden() {
        let (mut reg, t0) = setup();
        // No account: challenged like anyone, then refused like a wrong password.
        let mut mallory = Phone::new("mallory", "anything", "SHA-256");
        let (req, meta) = mallory.request(&[CONTACT]);
        assert_eq!(
            code(&reg.handle_register(t0, &req, &meta, source(), "UDP")),
            401
        );
        let resp = mallory.register(&mut reg, t0, &[CONTACT]);
        assert_eq!(code(&resp), 403);
        assert_eq!(resp.status_code.text(), "Forbidden");
        // A real account may not register someone else's address.
        let mut alice = Phone::new("alice", "alice-secret", "SHA-256");
        alice.to_user = "bob".into();
        assert_eq!(code(&alice.register(&mut reg, t0, &[CONTACT])), 403);
        assert!(reg.lookup(t0, "bob").is_empty());
    }

    #[test]
    fn a_required_extension_gets_420() {
        let (mut reg, t0) = setup();
        let mut phone = Phone::new("alice", "alice-secret", "SHA-256");
        let (req, meta) = phone.request(&[CONTACT, "Require: path, gruu"]);
        let resp = reg.handle_register(t0, &req, &meta, source(), "UDP");
        assert_eq!(code(&resp), 420);
        assert_eq!(values(&resp, "Unsupported"), ["path, gruu"]);
    }

    /// A REGISTER as SIPp's `-au alice -ap alice-secret` sends it against an MD5 challenge:
    /// parameters without spaces, `qop` and `nc` unquoted, and `uri` built from the remote
    /// address and port rather than copied from the Request-URI.
    #[test]
    fn a_register_authenticated_the_sipp_way_is_accepted() {
        let t0 = Instant::now();
        let mut config = config();
        config.algorithms = vec!["MD5".into()];
        let mut reg = Registrar::new(&config, t0, [42; 32]);
        let register = |authorization: &str| {
            format!(
                "REGISTER sip:127.0.0.1 SIP/2.0\r\n\
                 Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-4242-1-{n}\r\n\
                 From: <sip:alice@127.0.0.1>;tag=4242SIPpTag001\r\n\
                 To: <sip:alice@127.0.0.1>\r\n\
                 Call-ID: 1-4242@127.0.0.1\r\n\
                 CSeq: {n} REGISTER\r\n\
                 Contact: sip:alice@127.0.0.1:5061\r\n\
                 {authorization}\
                 Max-Forwards: 70\r\n\
                 Expires: 3600\r\n\
                 Content-Length: 0\r\n\r\n",
                n = if authorization.is_empty() { 1 } else { 2 },
            )
        };
        let (req, meta) = parse(&register(""));
        let challenge = reg.handle_register(t0, &req, &meta, source(), "UDP");
        let www = values(&challenge, "WWW-Authenticate").remove(0);
        let nonce = param(&www, "nonce");
        let md5 = |s: String| hex::encode(Md5::digest(s.as_bytes()));
        let ha1 = md5("alice:tandem:alice-secret".into());
        let ha2 = md5("REGISTER:sip:127.0.0.1:5060".into());
        let response = md5(format!(
            "{ha1}:{nonce}:00000001:6b8b45674ae4f2c1:auth:{ha2}"
        ));
        let authorization = format!(
            "Authorization: Digest username=\"alice\",realm=\"tandem\",\
             cnonce=\"6b8b45674ae4f2c1\",nc=00000001,qop=auth,uri=\"sip:127.0.0.1:5060\",\
             nonce=\"{nonce}\",response=\"{response}\",algorithm=MD5\r\n"
        );
        let (req, meta) = parse(&register(&authorization));
        let resp = reg.handle_register(t0, &req, &meta, source(), "UDP");
        assert_eq!(code(&resp), 200, "{}", text(&resp));
        assert_eq!(
            values(&resp, "Contact"),
            ["<sip:alice@127.0.0.1:5061>;expires=3600"]
        );
    }

    #[test]
    fn contact_parameters_and_delta_seconds_parse_strictly() {
        assert_eq!(q_value("0.5"), Some(500));
        assert_eq!(q_value("1"), Some(1000));
        assert_eq!(q_value("1.000"), Some(1000));
        assert_eq!(q_value("0.125"), Some(125));
        assert_eq!(q_value("1.5"), None);
        assert_eq!(q_value("0.1234"), None);
        assert_eq!(q_value(""), None);
        assert_eq!(delta_seconds("3600"), Some(3600));
        assert_eq!(delta_seconds("99999999999999999999"), Some(u32::MAX));
        assert_eq!(delta_seconds("-1"), None);
        let Ok(ContactValue::Uri { uri, expires, q }) =
            parse_contact("\"Al <i> ce\" <sip:alice@10.0.0.5;lr>;expires=60;q=0.7")
        else {
            panic!()
        };
        assert_eq!(
            (uri.as_str(), expires, q),
            ("sip:alice@10.0.0.5;lr", Some(60), 700)
        );
        let Ok(ContactValue::Uri { uri, expires, .. }) =
            parse_contact("sip:alice@10.0.0.5;expires=60")
        else {
            panic!()
        };
        assert_eq!((uri.as_str(), expires), ("sip:alice@10.0.0.5", Some(60)));
    }

    /// Alice and Bob, with guards that lock an account after three wrong digests and a source
    /// after `source_failures`, for 2 s doubling up to 8 s.
    fn guarded(source_failures: u32) -> (Registrar, Instant) {
        let config = RegistrarConfig {
            failures_before_lockout: 3,
            source_failures_before_lockout: source_failures,
            first_lockout_ms: 2000,
            max_lockout_s: 8,
            ..config()
        };
        let t0 = Instant::now();
        (Registrar::new(&config, t0, [42; 32]), t0)
    }

    fn from(addr: &str) -> SocketAddr {
        addr.parse().unwrap()
    }

    /// A REGISTER from `addr`, answering the challenge if there is one.
    fn attempt(reg: &mut Registrar, phone: &mut Phone, now: Instant, addr: SocketAddr) -> Response {
        let (req, meta) = phone.request(&[CONTACT]);
        let resp = reg.handle_register(now, &req, &meta, addr, "UDP");
        if code(&resp) != 401 {
            return resp;
        }
        phone.learn(&resp);
        let (req, meta) = phone.request(&[CONTACT]);
        reg.handle_register(now, &req, &meta, addr, "UDP")
    }

    #[test]
    fn wrong_digests_lock_the_account_until_the_lock_expires() {
        let (mut reg, t0) = guarded(100);
        let guesser = from("203.0.113.9:5060");
        let mut mallory = Phone::new("alice", "guess", "SHA-256");
        let answers: Vec<String> = (0..5)
            .map(|_| {
                let resp = attempt(&mut reg, &mut mallory, t0, guesser);
                format!("{} {}", code(&resp), resp.status_code.text())
            })
            .collect();
        assert_eq!(
            answers,
            [
                "403 Forbidden",
                "403 Forbidden",
                "403 Forbidden",
                // The fourth wrong digest locks the account for 2 s …
                "403 Forbidden",
                // … so the fifth is refused unchecked, without a challenge.
                "403 Too Many Failed Attempts",
            ]
        );
        // The right password from elsewhere waits for the lock too, and is told how long.
        let mut alice = Phone::new("alice", "alice-secret", "SHA-256");
        let resp = attempt(&mut reg, &mut alice, t0, source());
        assert_eq!(code(&resp), 403, "{}", text(&resp));
        assert_eq!(values(&resp, "Retry-After"), ["2"]);
        assert!(values(&resp, "WWW-Authenticate").is_empty());
        // Another account is not affected.
        let mut bob = Phone::new("bob", "bob-secret", "SHA-256");
        assert_eq!(code(&attempt(&mut reg, &mut bob, t0, source())), 200);
        assert_eq!(reg.lookup(t0, "alice"), []);

        let lifted = t0 + Duration::from_secs(2);
        let resp = attempt(&mut reg, &mut alice, lifted, source());
        assert_eq!(code(&resp), 200, "{}", text(&resp));
        assert_eq!(reg.lookup(lifted, "alice").len(), 1);
        assert_eq!(
            reg.auth_counts(),
            AuthCounts {
                failures: 4,
                lockouts: 1,
                refused_locked: 2,
            }
        );
    }

    #[test]
    fn further_failures_after_a_lock_double_it_up_to_the_ceiling() {
        let (mut reg, t0) = guarded(100);
        let guesser = from("203.0.113.9:5060");
        let mut mallory = Phone::new("alice", "guess", "SHA-256");
        let mut now = t0;
        let mut locks = Vec::new();
        for _ in 0..7 {
            let resp = attempt(&mut reg, &mut mallory, now, guesser);
            assert_eq!(resp.status_code.text(), "Forbidden", "checked, not locked");
            let wait = reg.by_account.check(&"alice".to_string(), now).err();
            let wait = wait.map_or(0, |w| w.as_secs());
            locks.push(wait);
            // Still locked a moment before it lifts; the next guess waits it out.
            if wait > 0 {
                let almost = now + Duration::from_secs(wait) - Duration::from_millis(1);
                let resp = attempt(&mut reg, &mut mallory, almost, guesser);
                assert_eq!(resp.status_code.text(), "Too Many Failed Attempts");
            }
            now += Duration::from_secs(wait);
        }
        assert_eq!(locks, [0, 0, 0, 2, 4, 8, 8]);
    }

    #[test]
    fn a_guessing_source_is_locked_for_every_account() {
        let (mut reg, t0) = guarded(3);
        let guesser = from("203.0.113.9:5060");
        // One wrong digest each for many names: no account reaches its limit …
        for name in ["alice", "bob", "carol", "dave"] {
            let mut phone = Phone::new(name, "guess", "SHA-256");
            let resp = attempt(&mut reg, &mut phone, t0, guesser);
            assert_eq!(resp.status_code.text(), "Forbidden");
        }
        // … but the source did: even a right password from it is refused unchecked.
        let mut bob = Phone::new("bob", "bob-secret", "SHA-256");
        let resp = attempt(&mut reg, &mut bob, t0, guesser);
        assert_eq!(resp.status_code.text(), "Too Many Failed Attempts");
        // Another port of the same host is the same source; another host is not.
        let resp = attempt(&mut reg, &mut bob, t0, from("203.0.113.9:6000"));
        assert_eq!(code(&resp), 403);
        assert_eq!(code(&attempt(&mut reg, &mut bob, t0, source())), 200);
        // An IPv6 host is its /64.
        let (mut reg, t0) = guarded(3);
        for n in 1..=4 {
            let mut phone = Phone::new("alice", "guess", "SHA-256");
            attempt(
                &mut reg,
                &mut phone,
                t0,
                from(&format!("[2001:db8::{n}]:5060")),
            );
        }
        let mut alice = Phone::new("alice", "alice-secret", "SHA-256");
        let resp = attempt(&mut reg, &mut alice, t0, from("[2001:db8::99]:5060"));
        assert_eq!(resp.status_code.text(), "Too Many Failed Attempts");
    }

    #[test]
    fn a_registered_phone_refreshes_through_a_lock_on_its_account() {
        let (mut reg, t0) = guarded(100);
        let mut alice = Phone::new("alice", "alice-secret", "SHA-256");
        assert_eq!(code(&attempt(&mut reg, &mut alice, t0, source())), 200);
        let mut mallory = Phone::new("alice", "guess", "SHA-256");
        for _ in 0..5 {
            attempt(&mut reg, &mut mallory, t0, from("203.0.113.9:5060"));
        }
        // The phone's refresh: same Call-ID, same address, the next nonce count.
        let (req, meta) = alice.request(&[CONTACT]);
        let resp = reg.handle_register(t0, &req, &meta, source(), "UDP");
        assert_eq!(code(&resp), 200, "{}", text(&resp));
        // A new registration of the account, from the same address, waits for the lock.
        let mut second = Phone::new("alice", "alice-secret", "SHA-256");
        second.call_id = "another@192.0.2.1".into();
        let resp = attempt(&mut reg, &mut second, t0, source());
        assert_eq!(resp.status_code.text(), "Too Many Failed Attempts");
    }

    /// The reproduction: wrong digests fired at one reused nonce. Only the first is hashed;
    /// the rest are challenged afresh, so each guess costs the guesser a round trip.
    #[test]
    fn one_nonce_takes_one_guess() {
        let (mut reg, t0) = guarded(1000);
        let guesser = from("203.0.113.9:5060");
        let mut mallory = Phone::new("alice", "guess", "SHA-256");
        let resp = attempt(&mut reg, &mut mallory, t0, guesser);
        assert_eq!(code(&resp), 403);
        for _ in 0..3 {
            let (req, meta) = mallory.request(&[CONTACT]);
            let resp = reg.handle_register(t0, &req, &meta, guesser, "UDP");
            assert_eq!(code(&resp), 401, "{}", text(&resp));
            assert!(!values(&resp, "WWW-Authenticate")[0].contains("stale"));
        }
        assert_eq!(reg.auth_counts().failures, 1);
    }
}
