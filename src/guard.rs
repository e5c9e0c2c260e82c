//! Back-off for guesses (failed logins and digests, per account and per source), and a rate
//! per source for what costs us to open (chats).
//!
//! Each key (an account name, a source address) may fail a few times freely; after that each
//! further failure locks it for twice as long as the last, up to a ceiling, and while it is
//! locked every attempt is refused without being checked (so a guesser spends no CPU of ours
//! either). A key that stops failing is forgotten after a while; a success clears it. The table
//! is bounded: when full, the keys idle longest are forgotten first, so a spray of new keys can
//! only make the guard forget stale ones.
//!
//! Like the protocol cores it is a plain struct: time is an argument.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// The key of a source address in per-source budgets: an IPv4 address, or the /64 of an IPv6
/// one (one host is handed a whole /64 and can pick any address in it).
pub fn source_key(addr: SocketAddr) -> IpAddr {
    match addr.ip() {
        IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        v4 => v4,
    }
}

/// How guesses are slowed down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Failures allowed before the first lock.
    pub free_failures: u32,
    /// The first lock; each further failure doubles it.
    pub first_lock: Duration,
    /// The longest lock.
    pub max_lock: Duration,
    /// A key that has not failed for this long starts afresh.
    pub forget_after: Duration,
    /// Keys remembered at most.
    pub capacity: usize,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            free_failures: 5,
            first_lock: Duration::from_secs(1),
            max_lock: Duration::from_secs(900),
            forget_after: Duration::from_secs(900),
            capacity: 100_000,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    last_failure: Instant,
    locked_until: Option<Instant>,
}

/// Failed attempts by key.
#[derive(Debug)]
pub struct Guard<K> {
    policy: Policy,
    keys: HashMap<K, Record>,
}

impl<K: Hash + Eq + Clone> Guard<K> {
    pub fn new(policy: Policy) -> Guard<K> {
        Guard {
            policy,
            keys: HashMap::new(),
        }
    }

    /// `Err(wait)` while `key` is locked: refuse without checking, and say when to retry.
    pub fn check(&self, key: &K, now: Instant) -> Result<(), Duration> {
        match self.keys.get(key).and_then(|r| r.locked_until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// A wrong guess for `key`; returns the lock it now has, if any.
    pub fn failed(&mut self, key: &K, now: Instant) -> Option<Duration> {
        if !self.keys.contains_key(key) && self.keys.len() >= self.policy.capacity {
            self.forget_idle(now);
        }
        let policy = self.policy;
        let record = self.keys.entry(key.clone()).or_insert(Record {
            failures: 0,
            last_failure: now,
            locked_until: None,
        });
        if now.saturating_duration_since(record.last_failure) >= policy.forget_after {
            record.failures = 0;
        }
        record.failures = record.failures.saturating_add(1);
        record.last_failure = now;
        let over = record.failures.checked_sub(policy.free_failures)?;
        if over == 0 {
            return None;
        }
        let lock = policy
            .first_lock
            .saturating_mul(1u32.checked_shl(over - 1).unwrap_or(u32::MAX))
            .min(policy.max_lock);
        record.locked_until = Some(now + lock);
        Some(lock)
    }

    /// A right answer for `key`: its failures are forgotten.
    pub fn succeeded(&mut self, key: &K) {
        self.keys.remove(key);
    }

    /// Keys remembered now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Forgets the keys that need no memory any more, and if that is not enough, the half
    /// that matters least: unlocked before locked, idlest first (amortised: this runs once
    /// per `capacity / 2` new keys at most).
    fn forget_idle(&mut self, now: Instant) {
        let policy = self.policy;
        let locked = |r: &Record| r.locked_until.is_some_and(|u| u > now);
        self.keys.retain(|_, r| {
            locked(r) || now.saturating_duration_since(r.last_failure) < policy.forget_after
        });
        if self.keys.len() >= policy.capacity {
            let mut ranks: Vec<(bool, Instant)> = self
                .keys
                .values()
                .map(|r| (locked(r), r.last_failure))
                .collect();
            let middle = ranks.len() / 2;
            let (_, cutoff, _) = ranks.select_nth_unstable(middle);
            let cutoff = *cutoff;
            self.keys
                .retain(|_, r| (locked(r), r.last_failure) > cutoff);
        }
    }
}

/// A token bucket per key: `burst` at once, then one more every `60 s / per_minute`.
///
/// Bounded like [`Guard`]: when the table is full, the buckets that have refilled carry no
/// state and are forgotten; if that is not enough, the half touched longest ago.
#[derive(Debug)]
pub struct Rate<K> {
    per_minute: u32,
    burst: u32,
    capacity: usize,
    keys: HashMap<K, Bucket>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl<K: Hash + Eq + Clone> Rate<K> {
    /// `per_minute` and `burst` of at least one each.
    pub fn new(per_minute: u32, burst: u32, capacity: usize) -> Rate<K> {
        Rate {
            per_minute: per_minute.max(1),
            burst: burst.max(1),
            capacity: capacity.max(2),
            keys: HashMap::new(),
        }
    }

    /// Spends one token of `key`; `Err(wait)` when there is none, with the time until one.
    pub fn take(&mut self, key: &K, now: Instant) -> Result<(), Duration> {
        if !self.keys.contains_key(key) && self.keys.len() >= self.capacity {
            self.forget_full(now);
        }
        let burst = f64::from(self.burst);
        let per_second = f64::from(self.per_minute) / 60.0;
        let bucket = self.keys.entry(key.clone()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_second).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / per_second))
        }
    }

    /// Keys remembered now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    fn forget_full(&mut self, now: Instant) {
        let (burst, per_second) = (f64::from(self.burst), f64::from(self.per_minute) / 60.0);
        self.keys.retain(|_, b| {
            b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * per_second < burst
        });
        if self.keys.len() >= self.capacity {
            let mut times: Vec<Instant> = self.keys.values().map(|b| b.at).collect();
            let middle = times.len() / 2;
            let (_, cutoff, _) = times.select_nth_unstable(middle);
            let cutoff = *cutoff;
            self.keys.retain(|_, b| b.at > cutoff);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            free_failures: 3,
            first_lock: Duration::from_secs(1),
            max_lock: Duration::from_secs(8),
            forget_after: Duration::from_secs(60),
            capacity: 10,
        }
    }

    #[test]
    fn failures_beyond_the_free_ones_lock_for_longer_and_longer() {
        let mut guard = Guard::new(policy());
        let t0 = Instant::now();
        let locks: Vec<Option<Duration>> = (0..8).map(|_| guard.failed(&"eve", t0)).collect();
        let secs = |s| Some(Duration::from_secs(s));
        assert_eq!(
            locks,
            vec![
                None,
                None,
                None,
                secs(1),
                secs(2),
                secs(4),
                secs(8),
                secs(8)
            ]
        );
        assert_eq!(guard.check(&"eve", t0), Err(Duration::from_secs(8)));
        assert_eq!(guard.check(&"eve", t0 + Duration::from_secs(8)), Ok(()));
        // Another key is not affected.
        assert_eq!(guard.check(&"alice", t0), Ok(()));
    }

    #[test]
    fn a_success_or_a_quiet_while_forgets_the_failures() {
        let mut guard = Guard::new(policy());
        let t0 = Instant::now();
        for _ in 0..4 {
            guard.failed(&"alice", t0);
        }
        assert!(guard.check(&"alice", t0).is_err());
        guard.succeeded(&"alice");
        assert_eq!(guard.check(&"alice", t0), Ok(()));
        assert_eq!(guard.failed(&"alice", t0), None);

        for _ in 0..3 {
            guard.failed(&"bob", t0);
        }
        // A minute later the count starts afresh: one more failure is free again.
        assert_eq!(guard.failed(&"bob", t0 + Duration::from_secs(61)), None);
    }

    #[test]
    fn a_spray_of_keys_stays_within_capacity_and_keeps_the_locked_ones() {
        let mut guard = Guard::new(policy());
        let t0 = Instant::now();
        for _ in 0..5 {
            guard.failed(&0u32, t0);
        }
        for key in 1..1000u32 {
            guard.failed(&key, t0 + Duration::from_millis(u64::from(key)));
            assert!(guard.len() <= 10, "{}", guard.len());
        }
        // Key 0 idled longest, but it was locked, so it was kept while others went.
        assert!(guard.check(&0, t0 + Duration::from_millis(500)).is_err());
    }

    #[test]
    fn a_rate_allows_its_burst_then_one_per_interval() {
        let start = Instant::now();
        let mut rate = Rate::new(6, 3, 100); // one every 10 s, three at once
        for _ in 0..3 {
            assert_eq!(rate.take(&"a", start), Ok(()));
        }
        assert_eq!(rate.take(&"a", start), Err(Duration::from_secs(10)));
        // Another key has its own bucket.
        assert_eq!(rate.take(&"b", start), Ok(()));
        let later = start + Duration::from_secs(10);
        assert_eq!(rate.take(&"a", later), Ok(()));
        assert!(rate.take(&"a", later).is_err());
        // Idle long enough, the whole burst is back, never more.
        let much_later = start + Duration::from_secs(3600);
        for _ in 0..3 {
            assert_eq!(rate.take(&"a", much_later), Ok(()));
        }
        assert!(rate.take(&"a", much_later).is_err());
    }

    #[test]
    fn a_spray_of_sources_cannot_grow_the_rate_table() {
        let start = Instant::now();
        let mut rate = Rate::new(60, 2, 1000);
        for n in 0..100_000u32 {
            let now = start + Duration::from_millis(u64::from(n));
            let _ = rate.take(&n, now);
            assert!(rate.len() <= 1000);
        }
        // A source that is spending is remembered through the spray.
        let now = start + Duration::from_secs(200);
        assert_eq!(rate.take(&u32::MAX, now), Ok(()));
        assert_eq!(rate.take(&u32::MAX, now), Ok(()));
        assert!(rate.take(&u32::MAX, now).is_err());
    }
}
