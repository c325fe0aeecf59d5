//! The pace at which a worker opens sessions: a target's connect rate
//! (sessions opened per second, [`Transport::connect_rate`]), of which
//! each worker keeps its share for each fleet. Brokers admit new
//! connections at a rate (Azure IoT Hub about 100 a second per unit, AWS
//! IoT 500 a second per account); a fleet that opened faster would be
//! refused, or would measure a connect storm nobody asked for.
//!
//! Every session opening goes through its fleet's pace: a heartbeat that
//! needs one opens it when the pace allows (until then it waits, counted
//! as connection wait, as a heartbeat waits for a pooled connection),
//! and a device reopening a lost session does so at its reconnect delay
//! or at its turn, whichever is later. Without a rate, nothing here is
//! made.
//!
//! [`Transport::connect_rate`]: crate::transport::Transport::connect_rate

use std::collections::VecDeque;

use super::due::Waiter;

/// One fleet's pace of openings in one worker.
#[derive(Debug)]
pub(super) struct OpeningPace {
    /// The time between two openings.
    spacing_ns: u64,
    /// When the next opening may begin (ns since the start).
    next_ns: u64,
    /// Heartbeats waiting for their turn to open their device's session.
    pub(super) waiting: VecDeque<Waiter>,
}

impl OpeningPace {
    /// A pace of `per_second` openings (this worker's share for the fleet).
    pub(super) fn new(per_second: f64) -> OpeningPace {
        let spacing_ns = (1e9 / per_second.max(1e-9)).min(u64::MAX as f64 / 4.0) as u64;
        OpeningPace { spacing_ns, next_ns: 0, waiting: VecDeque::new() }
    }

    /// Whether an opening may begin at `now_ns`.
    pub(super) fn open_now(&self, now_ns: u64) -> bool {
        self.next_ns <= now_ns
    }

    /// Takes the first turn at or after `at_ns`: when the opening begins.
    pub(super) fn take(&mut self, at_ns: u64) -> u64 {
        let at = at_ns.max(self.next_ns);
        self.next_ns = at + self.spacing_ns;
        at
    }

    /// When the next opening may begin.
    pub(super) fn next_ns(&self) -> u64 {
        self.next_ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openings_are_spaced_by_the_rate_and_a_later_one_keeps_its_own_time() {
        let mut pace = OpeningPace::new(100.0);
        assert!(pace.open_now(0));
        assert_eq!(pace.take(0), 0);
        assert!(!pace.open_now(9_999_999) && pace.open_now(10_000_000));
        assert_eq!(pace.take(0), 10_000_000, "the next turn");
        assert_eq!(pace.take(500_000_000), 500_000_000, "a reopening due later goes at its time");
        assert_eq!(pace.next_ns(), 510_000_000);
    }
}
