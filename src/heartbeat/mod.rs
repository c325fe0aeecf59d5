//! The SendHeartbeat contract: its wire types, its rules, the validator that
//! enforces them on raw bytes, and the generator whose every body meets them.

pub mod generate;
pub mod profile;
pub mod rules;
pub mod template;
pub mod validate;
pub mod wire;

pub use generate::{Device, FleetGenerator, Scratch};
pub use profile::{MetricSpec, ModelSpec, Profile, Weighted};
pub use template::NameTemplate;
pub use validate::{Reason, Violation, Violations, validate};
