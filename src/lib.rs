//! fleetstorm: a load generator and fleet simulator for heartbeat backends.
//!
//! A scenario file describes fleets of virtual edge devices; each device
//! sends randomized but valid messages on its own open-model schedule, in
//! its fleet's device profile ([`wire`]): AWS SageMaker Edge Manager
//! `SendHeartbeat` by default, or AWS IoT shadows, ThingsBoard, Eclipse
//! Hono, Azure IoT Hub or the user's own templates. This crate is the whole
//! program: `src/main.rs` only calls [`cli::main`], so tests and other
//! tools drive every command in-process ([`cli::execute`]).
//!
//! # Layers
//!
//! Each module uses only modules of lower layers (`.ci/layers.py` checks
//! this list against the code's imports, and that nothing imports in a
//! circle, inside a module either). Read bottom-up:
//!
//! 1. [`units`], [`stats`], [`shard`], [`identities`], [`pages`], [`sagemaker_edge`]:
//!    what depends on nothing of fleetstorm's: durations, shares and rates
//!    as people write them; outcome classes and protocol codes, counters,
//!    HDR histograms and the per-second timeline; which devices a shard
//!    owns; device identities read from a file; the small server of
//!    fleetstorm's own pages (dashboard, `/metrics`), loopback-guarded and
//!    closing gracefully; the `sagemaker-edge` profile's `SendHeartbeat`
//!    contract (serde types, string rules, the single-pass validator), this
//!    low because the device's strings are held to its rules and the
//!    engine's fake transport reads bodies with its validator.
//! 2. [`device`]: the simulated device every profile's bodies are made
//!    from: a fleet's settings, its device names (from a template or
//!    identities), each device's randomized state (metric walks, versions,
//!    rollouts) and the body generator.
//! 3. [`transport`], [`gate`], [`fleet`]: one message's exchange behind
//!    a seam every protocol plugs into (routes, a device's identity and
//!    session, idle work, outcomes), each protocol a folder of its own
//!    ([`transport::http`]: the lean HTTP/1.1 client, TLS and HTTP/2
//!    through hyper, SigV4), with what they share (TLS, source addresses,
//!    connection modes); the metric catalogue and thresholds as data;
//!    each device's schedule, fleet events, retries and devices online.
//! 4. [`wire`]: what a fleet's devices speak (its device profile): each
//!    heartbeat's request from the device's state and credentials, and how
//!    `serve` checks it (for `sagemaker-edge`, with [`sagemaker_edge`]).
//! 5. [`scenario`], [`engine`], [`server`]: scenario files, checked as read,
//!    with errors naming file, line, column and key; the open-model engine
//!    (workers owning devices, connections, sessions, timers and retries,
//!    each fleet over its own target's transport, and the aggregator of
//!    their flushes; it knows fleets and transports, not files or
//!    protocols); the reference backend (`serve`).
//! 6. [`report`], [`sample`], [`live_metrics`]: a run's output made into the
//!    JSON report, its summary, verdicts, gates, HTML, Markdown, JUnit and
//!    hlog, and merged from shards; heartbeats as they would be sent;
//!    `/metrics` while a run goes.
//! 7. [`run`], [`compare`], [`dashboard`]: a scenario run end to end
//!    (overrides; the plan, built once; the target opened, its scheme
//!    choosing its transport; the resources check; the run over the
//!    transports, generic; the report built whole; progress); baseline
//!    against current reports; the live web dashboard of a run or a
//!    capacity search.
//! 8. [`capacity`]: the search for the highest rate that meets an SLO, one
//!    run per step.
//! 9. [`cli`]: the command line: flags, one module per command, the live
//!    outputs a run or a search feeds (one trait: progress, `/metrics`,
//!    OTLP, the dashboard, capacity's steps), the output policy, signals
//!    and exit codes.

pub mod capacity;
pub mod cli;
pub mod compare;
pub mod dashboard;
pub mod device;
pub mod engine;
pub mod fleet;
pub mod gate;
pub mod identities;
pub mod live_metrics;
pub mod pages;
pub mod report;
pub mod run;
pub mod sagemaker_edge;
pub mod sample;
pub mod scenario;
pub mod server;
pub mod shard;
pub mod stats;
pub mod transport;
pub mod units;
pub mod wire;
