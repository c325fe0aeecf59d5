//! Virtual devices' schedules: when each device sends its heartbeats.
//!
//! A schedule is pure arithmetic on nanoseconds since the start of the run,
//! driven by a small random stream per device (seeded from the scenario
//! seed, the fleet and the device index, separate from the stream that
//! draws its heartbeats' values), so it is reproducible and testable
//! without a clock.
//!
//! - **first heartbeat**: with no ramp-up, `staggered` spreads devices'
//!   phases evenly over one interval (device `i` of `n` at `i/n` of it) and
//!   `synchronized` puts every device at 0. With `ramp_up = R`, device `i`
//!   comes online at `R·i/n` and sends its first heartbeat then, as a
//!   booting agent does; the ramp itself spreads the phases.
//! - **gaps**: `periodic` gaps are the interval, each stretched or shrunk
//!   by up to `jitter` (so phases drift as real agents' do); `poisson` gaps
//!   are exponential with the interval as mean (the first one too, so the
//!   process is stationary from the start).

pub mod clock;
pub mod events;
pub mod online;
pub mod retry;
pub mod schedule;

pub use clock::{DeviceClock, online_ns};
pub use events::{Event, EventKind, FleetEvents, Recovery, RolloutTarget, Step};
pub use online::Online;
pub use retry::RetryPolicy;
pub use schedule::{Arrival, Schedule, StartMode};
