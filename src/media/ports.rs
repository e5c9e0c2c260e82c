//! The RTP port budget: even ports of the configured range, RTCP on the odd port above each
//! (RFC 3550 §11). Exhaustion is an answer (`None`), never a panic, so the caller can refuse the
//! call cleanly.

use std::collections::VecDeque;

#[derive(Debug)]
pub struct PortPool {
    free: VecDeque<u16>,
    capacity: usize,
}

impl PortPool {
    /// Every even port `p` in `min..=max` whose RTCP port `p + 1` is in range too.
    pub fn new(min: u16, max: u16) -> PortPool {
        let first = min + (min % 2);
        let free: VecDeque<u16> = (first..max).step_by(2).collect();
        PortPool {
            capacity: free.len(),
            free,
        }
    }

    /// The least recently released port, so a port is reused as late as possible.
    pub fn allocate(&mut self) -> Option<u16> {
        self.free.pop_front()
    }

    pub fn release(&mut self, port: u16) {
        debug_assert!(!self.free.contains(&port), "port {port} released twice");
        self.free.push_back(port);
    }

    pub fn in_use(&self) -> usize {
        self.capacity - self.free.len()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
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
}
