//! The scenario's fleets as the engine runs them: each fleet's generator,
//! events, retry policy and wire, built from the checked scenario.

use crate::engine::FleetRuntime;
use crate::fleet::FleetEvents;
use crate::scenario::Scenario;

/// The fleets of a scenario as the engine runs them under `seed`.
pub(super) fn fleet_runtimes(scenario: &Scenario, seed: u64) -> Vec<FleetRuntime> {
    let host = scenario.target.credential_host();
    scenario
        .fleets
        .iter()
        .map(|f| {
            let generator = f.generator(seed);
            let key = generator.key();
            FleetRuntime {
                events: FleetEvents::new(&f.events, f.devices, f.schedule.interval, key),
                retry: f.retry,
                wire: f.wire(&generator.names, host),
                ..FleetRuntime::new(generator, f.schedule, f.devices, f.stale_after())
            }
        })
        .collect()
}
