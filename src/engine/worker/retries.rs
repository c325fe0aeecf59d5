//! Heartbeats held between a failed attempt and their retry: when each
//! retry is due, and what it is. A held heartbeat's device stays busy with
//! it; if the run ends first, its outcome is unknown (retry pending).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use super::due::Due;

/// A heartbeat between a failed attempt and its retry.
#[derive(Debug, Clone, Copy)]
struct Held {
    /// The retry's number (1 for the first).
    attempt: u8,
    intended_ns: u64,
}

/// The held heartbeats of a worker's devices, by slot, and their retries'
/// times.
#[derive(Debug, Default)]
pub(super) struct Retries {
    timers: BinaryHeap<Reverse<(u64, u32)>>,
    held: HashMap<u32, Held>,
}

impl Retries {
    /// Holds device `slot`'s heartbeat intended at `intended_ns` for retry
    /// number `attempt`, due at `at_ns`.
    pub(super) fn hold(&mut self, slot: u32, attempt: u8, intended_ns: u64, at_ns: u64) {
        self.timers.push(Reverse((at_ns, slot)));
        self.held.insert(slot, Held { attempt, intended_ns });
    }

    /// When the next retry is due.
    pub(super) fn next_due(&self) -> Option<u64> {
        self.timers.peek().map(|Reverse((t, _))| *t)
    }

    /// The next retry due by `now_ns`, if any: the heartbeat to send again
    /// (it stays held until it is sent: [`Retries::sent`]).
    pub(super) fn pop_due(&mut self, now_ns: u64) -> Option<Due> {
        loop {
            let &Reverse((t, slot)) = self.timers.peek()?;
            if t > now_ns {
                return None;
            }
            self.timers.pop();
            if let Some(h) = self.held.get(&slot) {
                return Some(Due { slot, intended_ns: h.intended_ns, eligible_ns: t, attempt: h.attempt });
            }
        }
    }

    /// Device `slot`'s retry went (or its heartbeat ended): no longer held.
    /// Whether it was.
    pub(super) fn release(&mut self, slot: u32) -> bool {
        self.held.remove(&slot).is_some()
    }

    /// Every heartbeat still held, released (the run stopped): their slots.
    pub(super) fn release_all(&mut self) -> Vec<u32> {
        self.timers.clear();
        self.held.drain().map(|(slot, _)| slot).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_come_due_in_time_order_and_stay_held_until_released() {
        let mut r = Retries::default();
        r.hold(4, 1, 100, 2_000);
        r.hold(2, 2, 50, 1_000);
        assert_eq!(r.next_due(), Some(1_000));
        assert!(r.pop_due(999).is_none());
        let due = r.pop_due(1_500).unwrap();
        assert_eq!((due.slot, due.intended_ns, due.eligible_ns, due.attempt), (2, 50, 1_000, 2));
        assert!(r.pop_due(1_500).is_none(), "the other is not due yet");
        assert!(r.release(2) && !r.release(2));
        // A retry released before its time is skipped when its time comes.
        assert!(r.release(4));
        assert!(r.pop_due(5_000).is_none());
        r.hold(7, 1, 10, 3_000);
        assert_eq!(r.release_all(), [7]);
        assert_eq!(r.next_due(), None);
    }
}
