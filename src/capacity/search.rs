//! Which rate to try next, from what the steps so far showed: grow
//! geometrically from the start rate while the SLO holds, then bisect
//! between the last good and the first bad rate. If the start rate is
//! already bad, shrink geometrically (a few times) to find a good one.
//! A step on which the generator fell behind ends the search: it says
//! nothing about the backend.

use crate::scenario::capacity::{CapacitySettings, Strategy};

/// What one step showed (in reports: `good`, `bad`, `inconclusive`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepVerdict {
    /// The SLO held and the generator kept up.
    Good,
    /// The generator kept up and the SLO broke: the backend's doing.
    Bad,
    /// The generator fell behind: the step says nothing about the backend.
    Inconclusive,
}

impl std::fmt::Display for StepVerdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StepVerdict::Good => "good",
            StepVerdict::Bad => "bad",
            StepVerdict::Inconclusive => "inconclusive",
        })
    }
}

/// How a finished search ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conclusion {
    /// The SLO held up to a rate and broke just above it.
    Found,
    /// The SLO still held at `max_rate`.
    MaxRateReached,
    /// No rate tried met the SLO, down to the lowest one tried.
    BelowStart,
    /// The generator fell behind before the backend's limit was found.
    Inconclusive,
}

/// How many times the rate is divided by the growth factor when the start
/// rate is already bad.
const MAX_SHRINKS: u32 = 4;

#[derive(Debug, Clone)]
pub struct Search {
    start: f64,
    max: f64,
    growth: f64,
    precision: f64,
    bisect: bool,
    /// The highest good rate, and the lowest bad one.
    pub good: Option<f64>,
    pub bad: Option<f64>,
    shrinks: u32,
    inconclusive: bool,
}

impl Search {
    pub fn new(s: &CapacitySettings) -> Search {
        Search {
            start: s.start_rate,
            max: s.max_rate,
            growth: s.growth,
            precision: s.precision,
            bisect: s.strategy == Strategy::StepThenBisect,
            good: None,
            bad: None,
            shrinks: 0,
            inconclusive: false,
        }
    }

    /// The next rate to try, or `None` when the search is over.
    pub fn next(&self) -> Option<f64> {
        if self.inconclusive {
            return None;
        }
        match (self.good, self.bad) {
            (None, None) => Some(self.start),
            (Some(g), None) if g >= self.max => None,
            (Some(g), None) => Some((g * self.growth).min(self.max)),
            (None, Some(b)) if self.shrinks < MAX_SHRINKS => Some(b / self.growth),
            (None, Some(_)) => None,
            (Some(g), Some(b)) if !self.bisect || (b - g) <= g * self.precision => None,
            (Some(g), Some(b)) => Some((g + b) / 2.0),
        }
    }

    /// Takes in what the step at `rate` showed.
    pub fn record(&mut self, rate: f64, verdict: StepVerdict) {
        match verdict {
            StepVerdict::Good => self.good = Some(self.good.map_or(rate, |g| g.max(rate))),
            StepVerdict::Bad => {
                if self.good.is_none() && self.bad.is_some() {
                    self.shrinks += 1;
                }
                self.bad = Some(self.bad.map_or(rate, |b| b.min(rate)));
            }
            StepVerdict::Inconclusive => self.inconclusive = true,
        }
    }

    /// How the search ended (or would, if it ended now).
    pub fn conclusion(&self) -> Conclusion {
        match (self.inconclusive, self.good, self.bad) {
            (true, _, _) => Conclusion::Inconclusive,
            (false, Some(_), Some(_)) => Conclusion::Found,
            (false, Some(_), None) => Conclusion::MaxRateReached,
            (false, None, _) => Conclusion::BelowStart,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::capacity::Strategy;

    fn settings(start: f64, max: f64, strategy: Strategy) -> CapacitySettings {
        CapacitySettings {
            slo: vec![],
            start_rate: start,
            max_rate: max,
            step_duration: std::time::Duration::from_secs(1),
            warmup: std::time::Duration::ZERO,
            strategy,
            scale: crate::scenario::capacity::Scale::Devices,
            precision: 0.05,
            growth: 2.0,
            headroom: 0.3,
        }
    }

    /// Runs a search against a backend that is good up to `limit` (and a
    /// generator that keeps up to `generator`): the rates tried, and the end.
    fn search(s: &CapacitySettings, limit: f64, generator: f64) -> (Vec<f64>, Search) {
        let mut search = Search::new(s);
        let mut tried = vec![];
        while let Some(rate) = search.next() {
            assert!(tried.len() < 50, "the search must end: {tried:?}");
            tried.push(rate);
            let verdict = if rate > generator {
                StepVerdict::Inconclusive
            } else if rate <= limit {
                StepVerdict::Good
            } else {
                StepVerdict::Bad
            };
            search.record(rate, verdict);
        }
        (tried, search)
    }

    #[test]
    fn grows_then_bisects_to_the_precision() {
        let s = settings(500.0, 100_000.0, Strategy::StepThenBisect);
        let (tried, end) = search(&s, 2_000.0, f64::INFINITY);
        assert_eq!(tried[..4], [500.0, 1_000.0, 2_000.0, 4_000.0]);
        assert_eq!(end.conclusion(), Conclusion::Found);
        let (good, bad) = (end.good.unwrap(), end.bad.unwrap());
        assert_eq!(good, 2_000.0);
        assert!(bad > good && bad - good <= good * 0.05, "{good} {bad}: {tried:?}");
        // Between the limit and 4,000, bisection halves the gap each step.
        assert!(tried.len() <= 4 + 6, "{tried:?}");
    }

    #[test]
    fn an_unreached_limit_stops_at_max_rate() {
        let s = settings(500.0, 3_000.0, Strategy::StepThenBisect);
        let (tried, end) = search(&s, 1e9, f64::INFINITY);
        assert_eq!(tried, [500.0, 1_000.0, 2_000.0, 3_000.0]);
        assert_eq!((end.conclusion(), end.good), (Conclusion::MaxRateReached, Some(3_000.0)));
    }

    #[test]
    fn a_bad_start_shrinks_then_bisects_and_gives_up_far_below() {
        let s = settings(8_000.0, 100_000.0, Strategy::StepThenBisect);
        let (tried, end) = search(&s, 1_500.0, f64::INFINITY);
        assert_eq!(tried[..4], [8_000.0, 4_000.0, 2_000.0, 1_000.0]);
        assert_eq!(end.conclusion(), Conclusion::Found);
        assert!((1_425.0..=1_500.0).contains(&end.good.unwrap()), "{tried:?}");
        let (tried, end) = search(&s, 10.0, f64::INFINITY);
        assert_eq!(tried, [8_000.0, 4_000.0, 2_000.0, 1_000.0, 500.0]);
        assert_eq!((end.conclusion(), end.good), (Conclusion::BelowStart, None));
    }

    #[test]
    fn a_generator_that_falls_behind_ends_the_search_inconclusive() {
        let s = settings(500.0, 100_000.0, Strategy::StepThenBisect);
        let (tried, end) = search(&s, 50_000.0, 3_000.0);
        assert_eq!(tried, [500.0, 1_000.0, 2_000.0, 4_000.0]);
        assert_eq!(end.conclusion(), Conclusion::Inconclusive);
        // What was learned stays: the backend carried 2,000/s.
        assert_eq!(end.good, Some(2_000.0));
    }

    #[test]
    fn steps_alone_stop_at_the_first_bad_rate() {
        let s = settings(500.0, 100_000.0, Strategy::Steps);
        let (tried, end) = search(&s, 2_500.0, f64::INFINITY);
        assert_eq!(tried, [500.0, 1_000.0, 2_000.0, 4_000.0]);
        assert_eq!((end.conclusion(), end.good, end.bad), (Conclusion::Found, Some(2_000.0), Some(4_000.0)));
    }
}
