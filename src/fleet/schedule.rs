//! A fleet's schedule as the scenario gives it: interval, jitter, start,
//! ramp-up and arrival process; [`super::DeviceClock`] turns it into each
//! device's send times.

use std::time::Duration;

use serde::Deserialize;

/// When devices send their first heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StartMode {
    /// Phases spread evenly over one interval.
    Staggered,
    /// Every device at once (a thundering herd).
    Synchronized,
}

/// How the gaps between a device's heartbeats are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Arrival {
    /// Every `interval`, give or take `jitter`.
    Periodic,
    /// Exponential gaps with mean `interval`.
    Poisson,
}

/// A fleet's schedule, resolved.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// Each device's mean heartbeat period.
    pub interval: Duration,
    /// Per-heartbeat random deviation of the period, as a share of it.
    pub jitter: f64,
    pub start: StartMode,
    /// Devices come online linearly over this time.
    pub ramp_up: Duration,
    pub arrival: Arrival,
}

impl Schedule {
    /// Every `interval`, phases staggered, no jitter, no ramp: the plainest schedule.
    pub fn every(interval: Duration) -> Schedule {
        Schedule {
            interval,
            jitter: 0.0,
            start: StartMode::Staggered,
            ramp_up: Duration::ZERO,
            arrival: Arrival::Periodic,
        }
    }

    /// The fleet's offered rate once every device is online.
    pub fn rate(&self, devices: u64) -> f64 {
        devices as f64 / self.interval.as_secs_f64()
    }
}
