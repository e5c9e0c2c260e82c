//! Small value types shared by the Interaction and its drivers: time, ids, parties.

use std::fmt;
use std::ops::Add;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Wall-clock time in milliseconds since the Unix epoch.
///
/// The Interaction never reads a clock: its driver passes `now` in, and tests pass a virtual
/// clock. Wall time rather than `Instant` because transcripts carry it and timers must survive
/// a restart (they are recomputed from the times stored with the events).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Time(pub u64);

impl Time {
    /// The system clock, for drivers (never called inside a core).
    pub(crate) fn now() -> Time {
        Time::from_system(SystemTime::now())
    }
    fn from_system(t: SystemTime) -> Time {
        Time(
            t.duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        )
    }
    pub(crate) fn millis(self) -> u64 {
        self.0
    }
    /// Time from `earlier` to `self`, zero when `earlier` is later.
    pub fn since(self, earlier: Time) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Time {
    type Output = Time;
    fn add(self, d: Duration) -> Time {
        Time(self.0.saturating_add(d.as_millis() as u64))
    }
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name(s.to_string())
            }
        }
    };
}

string_id!(
    /// The correlation id of one conversation: in every log span, header, file name and metric.
    InteractionId
);
string_id!(
    /// An agent (desktop user, softphone owner or mobile operator).
    AgentId
);

impl InteractionId {
    /// A fresh id: 128 bits in hex, the creation time in milliseconds (48 bits) and then 80
    /// random bits. Ids made later sort later, so a new interaction's rows (keyed by its id)
    /// land at the end of the store's indexes instead of all over them, and a commit rewrites
    /// a few pages rather than most of the table. 80 random bits stay unguessable.
    pub(crate) fn fresh() -> InteractionId {
        let millis = Time::now().millis() & 0xffff_ffff_ffff;
        InteractionId(format!("{millis:012x}{}", random_hex(10)))
    }
}

/// `n` random bytes as lowercase hex.
pub(crate) fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::fill(&mut bytes[..]);
    hex::encode(bytes)
}

/// A voice or video leg of one interaction, numbered from 1 in the order they were created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LegId(pub u32);

impl fmt::Display for LegId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "leg-{}", self.0)
    }
}

/// A customer's call that came in and waits to be answered: the leg driver's name for it,
/// opaque to the Interaction. The Interaction hands it back in the [`Action::StartLeg`] that
/// answers it, so which call a leg answers is said, never looked up.
///
/// [`Action::StartLeg`]: crate::bridge::Action::StartLeg
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct HeldCall(pub u64);

impl fmt::Display for HeldCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "held-{}", self.0)
    }
}

/// Who did something.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", content = "id", rename_all = "snake_case")]
pub enum Party {
    Customer,
    Agent(AgentId),
    /// The gateway itself: routing, timers, leg drivers.
    System,
}

impl Party {
    /// The `party_id` shown to clients.
    pub(crate) fn party_id(&self) -> String {
        match self {
            Party::Customer => "customer".into(),
            Party::Agent(id) => id.0.clone(),
            Party::System => "system".into(),
        }
    }
}

/// The customer of an interaction.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    /// The app's `clientId`: the only device that may see this chat.
    pub device: String,
    pub name: Option<String>,
    pub phone: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_interaction_ids_are_hex_unique_and_sort_by_creation() {
        let ids: Vec<InteractionId> = (0..2000).map(|_| InteractionId::fresh()).collect();
        assert!(
            ids.iter()
                .all(|id| { id.0.len() == 32 && id.0.bytes().all(|b| b.is_ascii_hexdigit()) })
        );
        let unique: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
        // Within one millisecond the order is random; across milliseconds it is the clock's.
        let stamp = |id: &InteractionId| id.0[..12].to_string();
        assert!(ids.windows(2).all(|w| stamp(&w[0]) <= stamp(&w[1])));
    }
}
