//! What a worker records between two flushes: per fleet, per cohort
//! (fleet and agent version, when results are broken down) and per second
//! of the run; handed over whole at each flush.

use crate::stats::timeline::SecondPart;
use crate::stats::{Outcome, Recorder};

/// A device's place in the records: its fleet and its agent version now.
#[derive(Debug, Clone, Copy)]
pub(super) struct Whose {
    pub fleet: usize,
    pub version: usize,
}

pub(super) struct Records {
    fleets: Vec<Recorder>,
    /// Per fleet, per agent version, when broken down.
    cohorts: Vec<Vec<Option<Recorder>>>,
    /// The seconds touched since the last flush.
    seconds: Vec<SecondPart>,
    /// Past the warm-up: what is recorded now is measured.
    pub(super) measuring: bool,
}

impl Records {
    /// Records for `fleets` fleets (`versions`: each one's agent versions,
    /// when broken down into cohorts).
    pub(super) fn new(fleets: usize, versions: Option<Vec<usize>>, measuring: bool) -> Records {
        Records {
            fleets: (0..fleets).map(|_| Recorder::default()).collect(),
            cohorts: versions.map_or_else(Vec::new, |v| v.iter().map(|n| (0..*n).map(|_| None).collect()).collect()),
            seconds: Vec::new(),
            measuring,
        }
    }

    /// Records `what` for a device: in its fleet's recorder, and its
    /// cohort's when broken down.
    pub(super) fn record(&mut self, who: Whose, what: impl Fn(&mut Recorder)) {
        what(&mut self.fleets[who.fleet]);
        if let Some(c) = self.cohorts.get_mut(who.fleet).and_then(|v| v.get_mut(who.version)) {
            what(c.get_or_insert_with(Recorder::default));
        }
    }

    /// The second of the run that `at_ns` falls in, as this flush period
    /// records it.
    pub(super) fn second(&mut self, at_ns: u64) -> &mut SecondPart {
        let second = at_ns / 1_000_000_000;
        match self.seconds.iter().position(|p| p.second == second) {
            Some(i) => &mut self.seconds[i],
            None => {
                self.seconds.push(SecondPart::new(second));
                self.seconds.last_mut().expect("just pushed")
            }
        }
    }

    /// A heartbeat missed at `at_ns`, at its corrected latency.
    pub(super) fn missed(&mut self, who: Whose, latency_us: u64, at_ns: u64) {
        self.record(who, |r| r.missed(latency_us));
        let s = self.second(at_ns);
        s.missed += 1;
        crate::stats::record(&mut s.latency, latency_us);
    }

    /// A heartbeat's final outcome, which came at `at_ns`.
    pub(super) fn ended(&mut self, who: Whose, outcome: Outcome, latency_us: u64, service_us: u64, at_ns: u64) {
        self.record(who, |r| r.completed(outcome, latency_us, service_us));
        let s = self.second(at_ns);
        s.classes[outcome.class()] += 1;
        if outcome != crate::stats::Outcome::Sent {
            crate::stats::record(&mut s.latency, latency_us);
        }
    }

    /// Hands over what was recorded (per fleet, per cohort, per second)
    /// and starts afresh.
    #[allow(clippy::type_complexity)]
    pub(super) fn take(&mut self) -> (Vec<Recorder>, Vec<Vec<Option<Recorder>>>, Vec<SecondPart>) {
        let fleets = self.fleets.iter_mut().map(Recorder::take).collect();
        let cohorts = self
            .cohorts
            .iter_mut()
            .map(|versions| versions.iter_mut().map(|c| c.as_mut().map(Recorder::take)).collect())
            .collect();
        (fleets, cohorts, std::mem::take(&mut self.seconds))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_s_records_go_to_its_fleet_its_cohort_and_the_second_they_happened_in() {
        let mut r = Records::new(2, Some(vec![1, 2]), true);
        let who = Whose { fleet: 1, version: 1 };
        r.record(who, Recorder::scheduled);
        r.ended(who, Outcome::Status(200), 1_500, 900, 2_100_000_000);
        r.missed(Whose { fleet: 0, version: 0 }, 4_000, 2_900_000_000);
        let (fleets, cohorts, seconds) = r.take();
        assert_eq!((fleets[1].counters.scheduled, fleets[1].counters.ok()), (1, 1));
        assert_eq!(fleets[0].counters.missed, 1);
        assert!(cohorts[1][0].is_none(), "no heartbeat of that cohort");
        assert_eq!(cohorts[1][1].as_ref().map(|c| c.counters.ok()), Some(1));
        assert_eq!(seconds.len(), 1, "both in second 2");
        assert_eq!(
            (seconds[0].second, seconds[0].classes[crate::stats::OutcomeClass::Ok], seconds[0].missed),
            (2, 1, 1)
        );
        let (fleets, _, seconds) = r.take();
        assert!(fleets[1].counters.scheduled == 0 && seconds.is_empty(), "taken: afresh");
    }
}
