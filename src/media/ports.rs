//! The RTP port budget: even ports of the configured range, RTCP on the odd port above each
//! (RFC 3550 §11). Exhaustion is an answer (`None`), never a panic, so the caller can refuse the
//! call cleanly.
//!
//! The gateway hands ports out at random ([`PortPool::shuffled`]): a port taken in order tells
//! a stranger which port the next call gets, and the first packets on a learning leg decide
//! whose media it carries. Released ports wait at the back of the queue and the pick is among
//! the older half, so a port is not reused while packets of its last call may still arrive.
//! The randomness is a seeded generator owned by the pool, so a run can be replayed.

use std::collections::VecDeque;

#[derive(Debug)]
pub struct PortPool {
    free: VecDeque<u16>,
    capacity: usize,
    /// `None` hands ports out in order (tests that name ports); else a xorshift state.
    random: Option<u64>,
}

impl PortPool {
    /// Every even port `p` in `min..=max` whose RTCP port `p + 1` is in range too, handed out
    /// in order.
    pub fn new(min: u16, max: u16) -> PortPool {
        let first = min + (min % 2);
        let free: VecDeque<u16> = (first..max).step_by(2).collect();
        PortPool {
            capacity: free.len(),
            free,
            random: None,
        }
    }

    /// The same ports, handed out at random from `seed`.
    pub(crate) fn shuffled(min: u16, max: u16, seed: u64) -> PortPool {
        PortPool {
            // xorshift's state must not be zero.
            random: Some(seed | 1),
            ..PortPool::new(min, max)
        }
    }

    /// A free port: the least recently released one in order, or one at random among the
    /// less recently released half.
    pub(crate) fn allocate(&mut self) -> Option<u16> {
        let Some(state) = &mut self.random else {
            return self.free.pop_front();
        };
        if self.free.is_empty() {
            return None;
        }
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        let older = self.free.len().div_ceil(2);
        let pick = (*state % older as u64) as usize;
        self.free.swap_remove_front(pick)
    }

    pub(crate) fn release(&mut self, port: u16) {
        debug_assert!(!self.free.contains(&port), "port {port} released twice");
        self.free.push_back(port);
    }

    pub(crate) fn in_use(&self) -> usize {
        self.capacity - self.free.len()
    }

    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn ports_are_even_with_room_for_rtcp_and_run_out_cleanly() {
        let mut pool = PortPool::new(20001, 20006);
        assert_eq!(pool.capacity(), 2);
        assert_eq!(pool.allocate(), Some(20002));
        assert_eq!(pool.allocate(), Some(20004));
        assert_eq!(pool.allocate(), None);
        assert_eq!(pool.in_use(), 2);
        pool.release(20002);
        assert_eq!(pool.allocate(), Some(20002));
    }

    #[test]
    fn shuffled_ports_are_unpredictable_but_each_given_once() {
        let mut pool = PortPool::shuffled(20000, 20999, 0x5eed);
        let taken: Vec<u16> = std::iter::from_fn(|| pool.allocate()).collect();
        assert_eq!(taken.len(), 500);
        assert_eq!(taken.iter().collect::<HashSet<_>>().len(), 500);
        assert!(
            taken
                .iter()
                .all(|p| p % 2 == 0 && (20000..20999).contains(p))
        );
        // Not in order: far fewer than half of the steps go to the next port.
        let in_order = taken.windows(2).filter(|w| w[1] == w[0] + 2).count();
        assert!(in_order < 50, "{in_order} of 499 steps in order");
        // The same seed gives the same ports (a run can be replayed); another does not.
        let replay: Vec<u16> = {
            let mut again = PortPool::shuffled(20000, 20999, 0x5eed);
            std::iter::from_fn(|| again.allocate()).collect()
        };
        assert_eq!(replay, taken);
        let mut other = PortPool::shuffled(20000, 20999, 0xfeed);
        assert_ne!(other.allocate(), Some(taken[0]));
    }

    #[test]
    fn a_released_port_is_not_handed_out_again_at_once() {
        let mut pool = PortPool::shuffled(20000, 20199, 7);
        for _ in 0..20 {
            let port = pool.allocate().unwrap();
            pool.release(port);
            // It waits in the recently released half.
            for _ in 0..10 {
                let next = pool.allocate().unwrap();
                assert_ne!(next, port);
                pool.release(next);
            }
        }
    }
}
