//! How long serve itself took over each device request, from its headers
//! to its answer (injected faults included), as an HDR histogram for `GET
//! /stats`: the backend's own account of the latency it gave, which a load
//! generator's figures can be held against (`benches/accuracy.sh`). The
//! Prometheus histogram beside it has buckets a factor of two apart, too
//! coarse for that.
//!
//! Requests are answered on every runtime thread, so the histogram is
//! sharded: each thread records into its own shard's mutex (uncontended
//! but for `/stats` reading them), and a read adds the shards up exactly.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::stats::{new_histogram, record};

/// Shards: more than the runtime has threads on any machine this runs on
/// at its scale, so that two threads rarely share one.
const SHARDS: usize = 16;

pub struct ServedTimes {
    shards: Box<[Mutex<Histogram<u64>>]>,
}

impl Default for ServedTimes {
    fn default() -> Self {
        ServedTimes { shards: (0..SHARDS).map(|_| Mutex::new(new_histogram())).collect() }
    }
}

/// This thread's shard: threads take the next one as they first record.
fn shard_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    INDEX.with(|i| *i)
}

/// Percentiles of what was served, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ServedSummary {
    pub count: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl ServedTimes {
    /// Records one request that took `took` in serve.
    pub fn served(&self, took: Duration) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        // A shard poisoned by a panic elsewhere still holds good counts.
        let mut h = self.shards[shard_index()].lock().unwrap_or_else(|e| e.into_inner());
        record(&mut h, micros);
    }

    /// Every shard added up.
    pub fn merged(&self) -> Histogram<u64> {
        let mut all = new_histogram();
        for shard in self.shards.iter() {
            let h = shard.lock().unwrap_or_else(|e| e.into_inner());
            // Same bounds everywhere: adding cannot fail.
            let _ = all.add(&*h);
        }
        all
    }

    pub fn summary(&self) -> ServedSummary {
        let h = self.merged();
        ServedSummary {
            count: h.len(),
            p50_us: h.value_at_quantile(0.5),
            p90_us: h.value_at_quantile(0.9),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }

    pub fn reset(&self) {
        for shard in self.shards.iter() {
            shard.lock().unwrap_or_else(|e| e.into_inner()).reset();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_from_every_thread_add_up_exactly() {
        let t = ServedTimes::default();
        std::thread::scope(|s| {
            for k in 0..4u64 {
                let t = &t;
                s.spawn(move || (1..=1000).for_each(|i| t.served(Duration::from_micros(i * 10 + k))));
            }
        });
        let sum = t.summary();
        assert_eq!(sum.count, 4000, "none lost between threads");
        // 1,000 values 10 µs apart per thread: the median near 5 ms.
        assert!((4_990..=5_020).contains(&sum.p50_us), "{sum:?}");
        assert!((9_890..=9_920).contains(&sum.p99_us), "{sum:?}");
        assert!(sum.max_us >= 10_003 && sum.max_us <= 10_020, "{sum:?}");
        t.reset();
        assert_eq!(t.summary().count, 0);
    }
}
