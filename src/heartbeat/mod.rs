//! The SendHeartbeat contract: its wire types, its rules, the validator that
//! enforces them on raw bytes, and the generator whose every body meets
//! them. The generator's device state (metric walks, versions, rollouts)
//! is also what every other device profile's bodies are made from
//! ([`Device::write_state`]).

pub mod generate;
pub mod names;
pub mod profile;
pub mod rules;
pub mod template;
pub mod validate;
pub mod wire;

pub use generate::{Device, FleetGenerator, Scratch};
pub use names::DeviceNames;
pub use profile::{MetricSpec, ModelSpec, Profile, Weighted};
pub use template::NameTemplate;
pub use validate::{Reason, Violation, Violations, validate};

/// For tests elsewhere in the crate: the plainest fleet's generator (fleet
/// `f`, agent version 1.0, the default agent metrics, no models, devices
/// named `d-{index}`, seed 1).
#[cfg(test)]
pub(crate) fn plain_generator() -> FleetGenerator {
    let profile = Profile {
        fleet_name: "f".into(),
        agent_versions: Weighted::single("1.0"),
        agent_metrics: Profile::default_agent_metrics(),
        models: vec![],
    };
    FleetGenerator::new(profile, NameTemplate::parse("d-{index}").unwrap(), 1)
}
