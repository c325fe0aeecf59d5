//! Retry policies, as device agents retry a failed heartbeat.
//!
//! ```toml
//! retry = { max = 3, backoff = "exponential", base = "1s", cap = "30s", jitter = "full" }
//! ```
//!
//! A heartbeat is retried after a connect error, a timeout, a broken
//! connection, a server error (HTTP 5xx) or being throttled (HTTP 429), at
//! most `max` times: the decision is the outcome's class's, whatever the
//! protocol. The wait before retry
//! `n` (from 1) is `base · 2^(n-1)` (exponential) or `base` (constant),
//! capped at `cap`, then jittered: `full` draws uniformly in [0, wait],
//! `equal` in [wait/2, wait], `none` keeps it. A `Retry-After` header (in
//! seconds) on a 429 or 503 is honoured: the wait is at least that long.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use crate::stats::{Outcome, OutcomeClass};
use crate::units::DurationValue;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backoff {
    Exponential,
    Constant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Jitter {
    Full,
    Equal,
    None,
}

/// How a fleet's devices retry failed heartbeats.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    pub max: u8,
    pub backoff: Backoff,
    pub base: Duration,
    pub cap: Duration,
    pub jitter: Jitter,
}

/// The most retries a policy may ask for.
pub const MAX_RETRIES: u8 = 20;

impl RetryPolicy {
    /// Whether a heartbeat that ended so is retried: a failure that may
    /// pass (the backend failed or asked to slow down, the connection
    /// could not be made, broke or took too long), not one that would fail
    /// again the same way (a refused message or credentials, a bad answer,
    /// a TLS handshake that failed).
    pub fn retries(outcome: Outcome) -> bool {
        Self::retries_class(outcome.class())
    }

    /// Whether a heartbeat whose outcome is of `class` is retried.
    pub fn retries_class(class: OutcomeClass) -> bool {
        match class {
            OutcomeClass::Throttled
            | OutcomeClass::ServerError
            | OutcomeClass::Connect
            | OutcomeClass::Timeout
            | OutcomeClass::Io => true,
            OutcomeClass::Ok
            | OutcomeClass::Rejected
            | OutcomeClass::Auth
            | OutcomeClass::OtherStatus
            | OutcomeClass::Tls
            | OutcomeClass::Protocol => false,
        }
    }

    /// The wait before retry `attempt` (1 for the first), given a uniform
    /// draw `u` in [0, 1) and the answer's `Retry-After`, if any.
    pub fn delay(&self, attempt: u8, u: f64, retry_after: Option<Duration>) -> Duration {
        let wait = match self.backoff {
            Backoff::Constant => self.base,
            Backoff::Exponential => self.base.saturating_mul(1u32 << u32::from(attempt.saturating_sub(1)).min(30)),
        }
        .min(self.cap);
        let jittered = match self.jitter {
            Jitter::None => wait,
            Jitter::Full => wait.mul_f64(u),
            Jitter::Equal => wait / 2 + (wait / 2).mul_f64(u),
        };
        jittered.max(retry_after.unwrap_or(Duration::ZERO))
    }
}

impl fmt::Display for RetryPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = crate::units::format_duration;
        write!(
            f,
            "up to {} retries, {:?} backoff from {} capped at {}, {:?} jitter",
            self.max,
            self.backoff,
            d(self.base),
            d(self.cap),
            self.jitter
        )
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetry {
    max: u8,
    backoff: Option<Backoff>,
    base: Option<DurationValue>,
    cap: Option<DurationValue>,
    jitter: Option<Jitter>,
}

impl<'de> Deserialize<'de> for RetryPolicy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawRetry::deserialize(d)?;
        let err = |m: String| serde::de::Error::custom(m);
        if raw.max == 0 || raw.max > MAX_RETRIES {
            return Err(err(format!("retry.max is {}; it must be from 1 to {MAX_RETRIES}", raw.max)));
        }
        let base = raw.base.map_or(Duration::from_secs(1), |d| d.0);
        let cap = raw.cap.map_or(Duration::from_secs(30), |d| d.0);
        if base.is_zero() {
            return Err(err("retry.base must be above 0".into()));
        }
        if cap < base {
            return Err(err(format!(
                "retry.cap ({}) is below retry.base ({})",
                crate::units::format_duration(cap),
                crate::units::format_duration(base)
            )));
        }
        Ok(RetryPolicy {
            max: raw.max,
            backoff: raw.backoff.unwrap_or(Backoff::Exponential),
            base,
            cap,
            jitter: raw.jitter.unwrap_or(Jitter::Full),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(jitter: Jitter) -> RetryPolicy {
        RetryPolicy {
            max: 5,
            backoff: Backoff::Exponential,
            base: Duration::from_secs(1),
            cap: Duration::from_secs(5),
            jitter,
        }
    }

    #[test]
    fn exponential_backoff_doubles_up_to_the_cap_and_jitters_within_it() {
        let p = policy(Jitter::None);
        let waits: Vec<u64> = (1..=5).map(|a| p.delay(a, 0.5, None).as_millis() as u64).collect();
        assert_eq!(waits, [1000, 2000, 4000, 5000, 5000]);
        let full = policy(Jitter::Full);
        assert_eq!(full.delay(3, 0.25, None), Duration::from_secs(1));
        let equal = policy(Jitter::Equal);
        assert_eq!(equal.delay(2, 0.0, None), Duration::from_secs(1));
        assert_eq!(equal.delay(2, 0.5, None), Duration::from_millis(1500));
        assert_eq!(full.delay(1, 0.0, Some(Duration::from_secs(3))), Duration::from_secs(3), "Retry-After honoured");
    }

    use crate::stats::Failure;

    #[test]
    fn what_is_retried() {
        for (o, retried) in [
            (Outcome::Status(503), true),
            (Outcome::Status(500), true),
            (Outcome::Status(599), true),
            (Outcome::Status(429), true),
            (Outcome::Status(400), false),
            (Outcome::Status(401), false),
            (Outcome::Status(403), false),
            (Outcome::Status(404), false),
            (Outcome::Status(200), false),
            (Outcome::Status(302), false),
            (Outcome::Status(600), false),
            (Outcome::Judged { status: 503, ok: false }, true),
            (Outcome::Judged { status: 429, ok: false }, true),
            (Outcome::Judged { status: 503, ok: true }, false),
            (Outcome::Judged { status: 401, ok: false }, false),
            (Outcome::Judged { status: 204, ok: false }, false),
            (Outcome::Failed(Failure::Connect), true),
            (Outcome::Failed(Failure::Timeout), true),
            (Outcome::Failed(Failure::Io), true),
            (Outcome::Failed(Failure::Protocol), false),
            (Outcome::Failed(Failure::Tls), false),
            // Another protocol's answers, by their class.
            (Outcome::Answered { class: OutcomeClass::Throttled, code: None }, true),
            (Outcome::Answered { class: OutcomeClass::ServerError, code: None }, true),
            (Outcome::Answered { class: OutcomeClass::Auth, code: None }, false),
            (Outcome::Answered { class: OutcomeClass::Ok, code: None }, false),
            (Outcome::Sent, false),
        ] {
            assert_eq!(RetryPolicy::retries(o), retried, "{o:?}");
        }
    }

    /// The rule as it was written for HTTP before outcomes had classes.
    fn retried_by_status(outcome: Outcome) -> bool {
        match outcome {
            Outcome::Status(429 | 500..=599) | Outcome::Judged { status: 429 | 500..=599, ok: false } => true,
            Outcome::Status(_) | Outcome::Judged { .. } => false,
            Outcome::Failed(Failure::Connect | Failure::Timeout | Failure::Io) => true,
            Outcome::Failed(Failure::Protocol | Failure::Tls) => false,
            Outcome::Answered { .. } | Outcome::Sent => unreachable!("HTTP's answers only"),
        }
    }

    #[test]
    fn every_http_answer_is_retried_as_before_classes() {
        for status in 0..=1000u16 {
            for o in
                [Outcome::Status(status), Outcome::Judged { status, ok: false }, Outcome::Judged { status, ok: true }]
            {
                assert_eq!(RetryPolicy::retries(o), retried_by_status(o), "{o:?}");
            }
        }
    }

    #[test]
    fn policies_are_checked_as_read() {
        let p: RetryPolicy = toml::from_str("max = 3\nbase = \"500ms\"").unwrap();
        assert_eq!(
            (p.max, p.base, p.cap, p.jitter),
            (3, Duration::from_millis(500), Duration::from_secs(30), Jitter::Full)
        );
        for (text, message) in [
            ("max = 0", "from 1 to 20"),
            ("max = 2\nbase = \"10s\"\ncap = \"1s\"", "below retry.base"),
            ("max = 2\njitter = \"some\"", "unknown variant"),
            ("max = 2\nbackof = \"exponential\"", "unknown field"),
        ] {
            let e = toml::from_str::<RetryPolicy>(text).unwrap_err().to_string();
            assert!(e.contains(message), "{text}: {e}");
        }
    }
}
