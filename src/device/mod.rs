//! The simulated device, which every device profile's bodies are made
//! from: a fleet's settings ([`Profile`]: agent versions, metrics,
//! models), its device names (a [`NameTemplate`] or an identities file:
//! [`DeviceNames`]), and each device's state ([`Device`]: its random
//! stream, metric walks, versions and rollouts), advanced one heartbeat at
//! a time. [`Device::write_state`] writes that state as the object the
//! other profiles wrap; [`Device::write_next`] writes it as a
//! `SendHeartbeat` body, straight from the state and without the serde
//! types.
//!
//! The device's strings (fleet, metric and model names, dimensions,
//! versions, device names from a template) are held to SendHeartbeat's
//! string rules whatever the fleet's profile, so this module uses
//! [`crate::sagemaker_edge::rules`], which is why that contract sits a
//! layer below it; what SendHeartbeat bodies are checked with (its serde
//! types and validator) lives there too, and the bodies this module writes
//! meet it (its tests check).

pub mod generate;
pub mod names;
pub mod profile;
pub mod template;

pub use generate::{Device, FleetGenerator, Scratch};
pub use names::DeviceNames;
pub use profile::{MetricSpec, ModelSpec, Profile, Weighted};
pub use template::NameTemplate;

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
