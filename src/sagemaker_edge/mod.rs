//! The `sagemaker-edge` device profile's contract: SageMaker Edge
//! Manager's `SendHeartbeat` request (`spec/send-heartbeat.md`) as serde
//! types ([`types`]), its string rules ([`rules`]) and the single-pass
//! validator that checks a body's raw bytes against them
//! ([`validate`](mod@validate)).
//!
//! It is one device profile among six; the other five live in
//! [`wire`](crate::wire), each in its own module. This one sits in the
//! lowest layer instead, depending on nothing of fleetstorm's, because
//! lower layers need it: the simulated [`device`](crate::device) holds its
//! names and versions to these rules (and writes `SendHeartbeat` bodies
//! from its state, without the serde types), fleet events check rollout
//! versions with them, and the engine's fake transport reads the device
//! of each body with [`validate::inspect`]. `wire` dispatches a
//! `sagemaker-edge` fleet's heartbeats to the device's writer, and
//! `serve` checks them here.

pub mod rules;
pub mod types;
pub mod validate;

pub use types::{
    DeploymentModel, DeploymentResult, DeploymentStatus, EdgeMetric, Model, ModelState, SendHeartbeat, Timestamp,
};
pub use validate::{Reason, Violation, Violations, validate};
