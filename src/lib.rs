//! fleetstorm: a load generator and fleet simulator for heartbeat backends.
//!
//! A scenario file describes fleets of virtual edge devices; each device
//! sends randomized but valid AWS SageMaker Edge Manager `SendHeartbeat`
//! requests. This crate is the whole program behind a thin binary
//! (`src/main.rs` only parses flags and maps results to exit codes), so
//! tests and other tools can drive every command in-process.
//!
//! # Layout
//!
//! - [`heartbeat`]: the wire contract: serde types, the string rules, the
//!   single-pass validator and the randomized generator.
//! - [`scenario`]: scenario files (TOML or JSON), checked as they are read,
//!   with errors that name the file, line, column and key.
//! - [`fleet`]: each device's schedule (phases, ramp-up, jitter, Poisson).
//! - [`engine`]: the open-model engine: workers owning devices and their
//!   connections, an aggregator merging what they record.
//! - [`transport`]: one heartbeat exchange over HTTP/1.1 (hyper).
//! - [`stats`]: counters and HDR histograms, recorded per worker, merged.
//! - [`gate`]: the metric catalogue and thresholds (CI gates, early aborts).
//! - [`compare`]: the regression gate (`compare`): baseline runs against current
//!   runs, metric by metric, noise-aware when a side has several runs.
//! - [`report`]: the JSON report, the terminal summary, atomic writes.
//! - [`run`]: the `run` and `validate` commands: plan, resources, progress.
//! - [`server`]: the reference backend (`serve`).
//! - [`sample`]: the `sample` command, printing bodies as they would be sent.
//! - [`units`]: durations as people write them.

pub mod capacity;
pub mod cli;
pub mod compare;
pub mod engine;
pub mod fleet;
pub mod gate;
pub mod heartbeat;
pub mod live_metrics;

pub mod report;
pub mod run;
pub mod sample;
pub mod scenario;
pub mod server;
pub mod shard;
pub mod stats;
pub mod transport;
pub mod units;
