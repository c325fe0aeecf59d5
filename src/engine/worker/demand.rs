//! How much of the time a worker's thread wanted a CPU, read from Linux's
//! scheduler statistics: what says a generator that always had work fell
//! behind, whatever its schedule lag.

/// How much of the time a worker's thread wanted a CPU: running, or
/// runnable and waiting for one (Linux's `/proc/thread-self/schedstat`).
/// An open-model generator needs idle time to be on time: a thread that
/// always has work takes answers late, so the service times, connection
/// waits and latencies it measures include its own queueing, whatever its
/// schedule lag says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Demand {
    /// Nanoseconds the thread ran or waited to run.
    pub wanted_ns: u64,
    /// Nanoseconds of wall-clock time they are out of.
    pub wall_ns: u64,
}

impl Demand {
    pub fn add(&mut self, other: Demand) {
        self.wanted_ns += other.wanted_ns;
        self.wall_ns += other.wall_ns;
    }

    /// The share of the time the thread wanted a CPU (0 with no time).
    pub fn share(&self) -> f64 {
        if self.wall_ns == 0 { 0.0 } else { self.wanted_ns as f64 / self.wall_ns as f64 }
    }

    /// This thread's time on and waiting for a CPU so far, in ns.
    pub(super) fn read_thread() -> Option<u64> {
        let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
        let mut fields = text.split_whitespace().map(|f| f.parse::<u64>().ok());
        let (running, waiting) = (fields.next()??, fields.next()??);
        Some(running + waiting)
    }
}
