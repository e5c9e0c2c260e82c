//! Joining a backlog read from the store with the live events that arrive over NATS, by
//! `seq`: the subscriber of an interaction that runs on another node sees every durable
//! event once, in order, with no gap.
//!
//! The subscriber subscribes to the events first, then reads the backlog, so every event is
//! in one or the other (or both). An owner that died after storing an event but before
//! publishing it leaves a hole in the live stream, which its successor's next event reveals:
//! the hole is read from the store.

/// What to do with a live event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// New and next (or ephemeral, without `seq`): deliver it.
    Deliver,
    /// Already delivered (from the backlog, or twice on the wire): drop it.
    Duplicate,
    /// Events `after < seq < before` are missing: read them from the store, deliver them,
    /// then this one.
    Gap { after: u64, before: u64 },
}

/// The position of one subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Merge {
    /// The last durable `seq` delivered.
    pub last: u64,
}

impl Merge {
    /// A subscriber that has everything up to `last`.
    pub fn after(last: u64) -> Merge {
        Merge { last }
    }

    /// Decides on a live event with `seq` (none: ephemeral) and moves the position on.
    pub fn offer(&mut self, seq: Option<u64>) -> Step {
        let Some(seq) = seq else {
            return Step::Deliver;
        };
        if seq <= self.last {
            return Step::Duplicate;
        }
        let after = self.last;
        self.last = seq;
        if seq == after + 1 {
            Step::Deliver
        } else {
            Step::Gap { after, before: seq }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_the_backlog_had_are_dropped() {
        let mut merge = Merge::after(5);
        assert_eq!(merge.offer(Some(4)), Step::Duplicate);
        assert_eq!(merge.offer(Some(5)), Step::Duplicate);
        assert_eq!(merge.offer(Some(6)), Step::Deliver);
        assert_eq!(merge.offer(Some(6)), Step::Duplicate);
        assert_eq!(merge.last, 6);
    }

    #[test]
    fn ephemeral_events_always_pass() {
        let mut merge = Merge::after(3);
        assert_eq!(merge.offer(None), Step::Deliver);
        assert_eq!(merge.last, 3);
    }

    #[test]
    fn a_hole_in_the_live_stream_is_read_from_the_store() {
        let mut merge = Merge::after(2);
        assert_eq!(
            merge.offer(Some(5)),
            Step::Gap {
                after: 2,
                before: 5
            }
        );
        assert_eq!(merge.last, 5);
        assert_eq!(merge.offer(Some(6)), Step::Deliver);
        assert_eq!(merge.offer(Some(4)), Step::Duplicate);
    }
}
