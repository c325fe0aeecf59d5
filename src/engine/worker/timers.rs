//! When each of a worker's devices is due next: a min-heap of (instant,
//! slot). A device is in it once, at its next intended time; the worker
//! pops the devices due by now, plans each one's next heartbeat and puts
//! it back. `benches/hot_path.rs` measures this very structure.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Devices by their next intended time (ns since the run's start).
#[derive(Debug, Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(u64, u32)>>,
}

impl Timers {
    pub fn with_capacity(devices: usize) -> Timers {
        Timers { heap: BinaryHeap::with_capacity(devices) }
    }

    /// Device `slot` is due at `at_ns`.
    #[inline]
    pub fn push(&mut self, at_ns: u64, slot: u32) {
        self.heap.push(Reverse((at_ns, slot)));
    }

    /// When the earliest device is due.
    #[inline]
    pub fn next_due(&self) -> Option<u64> {
        self.heap.peek().map(|Reverse((t, _))| *t)
    }

    /// The earliest device due by `now_ns`, taken out: its intended time
    /// and slot.
    #[inline]
    pub fn pop_due(&mut self, now_ns: u64) -> Option<(u64, u32)> {
        match self.heap.peek() {
            Some(&Reverse((t, slot))) if t <= now_ns => {
                self.heap.pop();
                Some((t, slot))
            }
            _ => None,
        }
    }

    /// No device is due any more (scheduling stopped).
    pub fn clear(&mut self) {
        self.heap.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_come_due_earliest_first_and_only_when_due() {
        let mut t = Timers::with_capacity(3);
        t.push(30, 2);
        t.push(10, 0);
        t.push(20, 1);
        assert_eq!(t.next_due(), Some(10));
        assert_eq!(t.pop_due(5), None);
        assert_eq!(t.pop_due(25), Some((10, 0)));
        assert_eq!(t.pop_due(25), Some((20, 1)));
        assert_eq!(t.pop_due(25), None);
        t.clear();
        assert_eq!(t.next_due(), None);
    }
}
