//! The run's timeline, bounded: one entry per second for the most recent
//! hour ([`FINE_SECONDS`]), older seconds folded into one-minute entries,
//! and those into wider ones when there are more than [`MAX_COARSE`], so a
//! run of any length keeps at most a few thousand entries.
//!
//! A folded entry adds its seconds' counts exactly; its latency p50 is the
//! count-weighted mean of theirs and its p99 their maximum (an upper
//! bound): their histograms are gone by then. Histograms kept for an
//! HdrHistogram log are added exactly.

use std::collections::VecDeque;

use hdrhistogram::Histogram;

use crate::stats::{self, ClassCounts};

/// Seconds kept at one-second resolution.
pub const FINE_SECONDS: usize = 3600;
/// The width of a folded entry, in seconds.
pub const FOLD_SECONDS: u64 = 60;
/// Folded entries beyond this many are merged in pairs.
pub const MAX_COARSE: usize = 1440;

/// One second of a run (or, far back in a long run, several: see
/// [`timeline`]).
#[derive(Debug, Clone)]
pub struct Second {
    /// The first second it covers, since the start.
    pub start_s: u64,
    /// How many seconds it covers (1, except for folded entries).
    pub width_s: u64,
    /// Heartbeats whose intended time came in this second.
    pub scheduled: u64,
    pub sent: u64,
    pub ok: u64,
    pub failed: u64,
    pub missed: u64,
    /// Retries sent in this second.
    pub retries: u64,
    /// Failures in this second by class (ok stays 0: that is `ok`).
    pub errors: ClassCounts,
    /// Devices' sessions opened, and ended, in this second (a session
    /// transport's).
    pub sessions_opened: u64,
    pub sessions_ended: u64,
    /// Latency percentiles of the heartbeats that ended in this second, in
    /// ms; set when the second is closed.
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// The second's latency histogram, V2 + DEFLATE encoded, when asked
    /// for ([`EngineSettings::keep_second_histograms`]).
    pub histogram: Option<Vec<u8>>,
    /// The second's latency histogram while flushes for it may still
    /// arrive, made on the first latency. Dropped on closing: a histogram
    /// is ~190 KB, and keeping one per second would cost ~680 MB over an
    /// hour's run.
    pub(crate) latency: Option<Histogram<u64>>,
    closed: bool,
}

impl Default for Second {
    fn default() -> Self {
        Second {
            start_s: 0,
            width_s: 1,
            scheduled: 0,
            sent: 0,
            ok: 0,
            failed: 0,
            missed: 0,
            retries: 0,
            errors: ClassCounts::default(),
            sessions_opened: 0,
            sessions_ended: 0,
            p50_ms: 0.0,
            p99_ms: 0.0,
            histogram: None,
            latency: None,
            closed: false,
        }
    }
}

impl Second {
    /// Adds what a worker recorded in this second.
    fn absorb(&mut self, part: &SecondPart) {
        self.scheduled += part.scheduled;
        self.sent += part.sent;
        self.retries += part.retries;
        self.missed += part.missed;
        self.sessions_opened += part.sessions_opened;
        self.sessions_ended += part.sessions_ended;
        self.ok += part.classes.ok();
        self.failed += part.classes.failed();
        for (class, n) in part.classes.failed_iter() {
            self.errors[class] += n;
        }
        // A late part for a closed second keeps its counts; only its
        // percentiles were fixed already.
        if !self.closed && !part.latency.is_empty() {
            let _ = self.latency.get_or_insert_with(stats::new_histogram).add(&part.latency);
        }
    }

    /// Fixes the percentiles and frees the histogram (keeping it
    /// compressed if `keep`).
    fn close(&mut self, keep: bool) {
        self.closed = true;
        if let Some(h) = self.latency.take() {
            if !h.is_empty() {
                self.p50_ms = h.value_at_quantile(0.5) as f64 / 1000.0;
                self.p99_ms = h.value_at_quantile(0.99) as f64 / 1000.0;
            }
            if keep {
                self.histogram = Some(stats::compress_histogram(&h));
            }
        }
    }
}

/// One second of the run, as one worker saw it between two flushes: a
/// heartbeat's intended time counts in the second it fell in, a send, a
/// miss or an outcome in the second it happened in.
pub struct SecondPart {
    pub second: u64,
    pub scheduled: u64,
    pub sent: u64,
    pub retries: u64,
    pub missed: u64,
    /// Outcomes by class.
    pub classes: ClassCounts,
    /// Devices' sessions opened, and ended, in it.
    pub sessions_opened: u64,
    pub sessions_ended: u64,
    /// Latency of the heartbeats that ended (or were missed) in it.
    pub latency: hdrhistogram::Histogram<u64>,
}

impl SecondPart {
    pub fn new(second: u64) -> SecondPart {
        SecondPart {
            second,
            scheduled: 0,
            sent: 0,
            retries: 0,
            missed: 0,
            classes: ClassCounts::default(),
            sessions_opened: 0,
            sessions_ended: 0,
            latency: stats::new_histogram(),
        }
    }
}

#[derive(Debug, Default)]
pub struct Timeline {
    /// Folded entries, oldest first, closed.
    coarse: Vec<Second>,
    /// One-second entries from `fine_start_s` on.
    fine: VecDeque<Second>,
    fine_start_s: u64,
    /// How many of `fine`, from the front, are closed.
    closed: usize,
    keep: bool,
}

impl Timeline {
    pub fn new(keep_histograms: bool) -> Self {
        Timeline { keep: keep_histograms, ..Timeline::default() }
    }

    /// The one-second entries (the recent hour), for the live display.
    pub fn recent(&mut self) -> &[Second] {
        self.fine.make_contiguous()
    }

    /// The entry that holds `second`, made if it is the newest.
    fn entry(&mut self, second: u64) -> &mut Second {
        if second >= self.fine_start_s {
            let i = (second - self.fine_start_s) as usize;
            if self.fine.len() <= i {
                let next = self.fine_start_s + self.fine.len() as u64;
                self.fine.extend((next..=second).map(Second::starting));
            }
            &mut self.fine[i]
        } else {
            // A late part for a folded second (a flush held up for an hour).
            let i = self.coarse.partition_point(|e| e.start_s + e.width_s <= second);
            let last = self.coarse.len() - 1;
            &mut self.coarse[i.min(last)]
        }
    }

    pub fn absorb(&mut self, part: &SecondPart) {
        self.entry(part.second).absorb(part);
    }

    /// Makes entries for every second before `second` (seconds in which
    /// nothing happened too).
    pub fn extend_to(&mut self, second: u64) {
        if second > self.fine_start_s + self.fine.len() as u64 {
            self.entry(second - 1);
        }
    }

    /// Closes the entries of seconds before `second`, then folds old ones.
    pub fn close_before(&mut self, second: u64) {
        while self.closed < self.fine.len() && self.fine[self.closed].start_s < second {
            self.fine[self.closed].close(self.keep);
            self.closed += 1;
        }
        self.fold();
    }

    /// Closes everything and hands the entries over, oldest first.
    pub fn finish(mut self) -> Vec<Second> {
        let keep = self.keep;
        self.fine.iter_mut().for_each(|s| s.close(keep));
        self.coarse.extend(self.fine);
        self.coarse
    }

    fn fold(&mut self) {
        let fold = FOLD_SECONDS as usize;
        // Closed one-second entries beyond the last hour, a minute at a time.
        while self.closed >= fold && self.fine.len() > FINE_SECONDS + fold {
            let keep = self.keep;
            let folded = self.fine.drain(..fold).reduce(|a, b| a.merged(b, keep)).expect("a minute of entries");
            self.coarse.push(folded);
            self.fine_start_s += FOLD_SECONDS;
            self.closed -= fold;
        }
        if self.coarse.len() > MAX_COARSE {
            let keep = self.keep;
            let mut merged = Vec::with_capacity(self.coarse.len() / 2 + 1);
            let mut it = std::mem::take(&mut self.coarse).into_iter();
            while let Some(a) = it.next() {
                merged.push(match it.next() {
                    Some(b) => a.merged(b, keep),
                    None => a,
                });
            }
            self.coarse = merged;
        }
    }
}

impl Second {
    /// An empty one-second entry for `second`.
    fn starting(second: u64) -> Second {
        Second { start_s: second, ..Second::default() }
    }

    /// This closed entry and the next one, as one.
    fn merged(mut self, b: Second, keep: bool) -> Second {
        let weight = |s: &Second| (s.ok + s.failed + s.missed) as f64;
        let (wa, wb) = (weight(&self), weight(&b));
        self.p50_ms = if wa + wb > 0.0 { (self.p50_ms * wa + b.p50_ms * wb) / (wa + wb) } else { 0.0 };
        self.p99_ms = self.p99_ms.max(b.p99_ms);
        self.width_s = b.start_s + b.width_s - self.start_s;
        self.scheduled += b.scheduled;
        self.sent += b.sent;
        self.ok += b.ok;
        self.failed += b.failed;
        self.missed += b.missed;
        self.retries += b.retries;
        self.sessions_opened += b.sessions_opened;
        self.sessions_ended += b.sessions_ended;
        self.errors.add(&b.errors);
        if keep {
            self.histogram = match (self.histogram.take(), b.histogram) {
                (Some(x), Some(y)) => match (stats::decompress_histogram(&x), stats::decompress_histogram(&y)) {
                    (Ok(mut hx), Ok(hy)) => {
                        let _ = hx.add(&hy);
                        Some(stats::compress_histogram(&hx))
                    }
                    _ => Some(x),
                },
                (x, y) => x.or(y),
            };
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(second: u64, ok: u64) -> SecondPart {
        let mut p = SecondPart::new(second);
        p.classes[crate::stats::OutcomeClass::Ok] = ok;
        p.sent = ok;
        p.scheduled = ok;
        for _ in 0..ok {
            stats::record(&mut p.latency, 1000 + second);
        }
        p
    }

    #[test]
    fn a_long_run_folds_into_a_bounded_timeline_that_adds_up() {
        let mut t = Timeline::new(false);
        let seconds = 10 * 24 * 3600; // 10 days
        let mut sent = 0;
        for s in 0..seconds {
            // A heartbeat part every 10 minutes; empty seconds between.
            if s % 600 == 0 {
                t.absorb(&part(s, 2));
                sent += 2;
            }
            t.extend_to(s + 1);
            if s % 97 == 0 {
                t.close_before(s.saturating_sub(1));
            }
        }
        let entries = t.finish();
        assert!(entries.len() <= FINE_SECONDS + MAX_COARSE + FOLD_SECONDS as usize, "{} entries", entries.len());
        assert_eq!(entries.iter().map(|e| e.ok).sum::<u64>(), sent, "every count kept");
        // Contiguous, in order, covering every second.
        let mut next = 0;
        for e in &entries {
            assert_eq!(e.start_s, next, "{e:?}");
            next += e.width_s;
        }
        assert_eq!(next, seconds);
        assert!(entries.iter().rev().take(FINE_SECONDS).all(|e| e.width_s == 1), "the last hour stays per second");
        assert!(entries.iter().any(|e| e.width_s > FOLD_SECONDS), "old minutes merged again");
        let with_latency: Vec<&Second> = entries.iter().filter(|e| e.ok > 0).collect();
        assert!(with_latency.iter().all(|e| e.p99_ms >= 1.0), "percentiles survive folding");
    }
}
