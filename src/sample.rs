//! `fleetstorm sample`: print heartbeats exactly as devices would send them.
//!
//! Bodies come out as NDJSON, one compact body per line, byte for byte what
//! the generator would put on the wire. Devices go in index order, fleet by
//! fleet; once every device has sent one heartbeat, the listing wraps round
//! to each device's next one. Device state is created lazily, so sampling a
//! few lines of a million-device fleet stays cheap.

use std::io::{self, Write};

use crate::heartbeat::{Device, FleetGenerator, Scratch};
use crate::scenario::Scenario;
use crate::units::now_ms;

/// What to sample.
#[derive(Debug, Clone)]
pub struct SampleOptions {
    /// How many heartbeats to print.
    pub count: u64,
    /// Only this fleet, by name.
    pub fleet: Option<String>,
    /// The seed, overriding the scenario's.
    pub seed: Option<u64>,
}

/// Why sampling failed.
#[derive(Debug, thiserror::Error)]
pub enum SampleError {
    #[error("no fleet named {0:?}; the scenario has: {1}")]
    UnknownFleet(String, String),
    #[error("cannot write the samples: {0}")]
    Io(#[from] io::Error),
}

/// Writes `opts.count` heartbeats of `scenario` to `out`; `seed` is the
/// seed to use when neither the options nor the scenario give one.
pub fn write_samples(
    scenario: &Scenario,
    opts: &SampleOptions,
    seed: u64,
    out: &mut impl Write,
) -> Result<(), SampleError> {
    let fleets: Vec<_> =
        scenario.fleets.iter().filter(|f| opts.fleet.as_deref().is_none_or(|name| f.name() == name)).collect();
    if let Some(name) = &opts.fleet
        && fleets.is_empty()
    {
        let names: Vec<_> = scenario.fleets.iter().map(|f| f.name()).collect();
        return Err(SampleError::UnknownFleet(name.clone(), names.join(", ")));
    }
    let generators: Vec<FleetGenerator> = fleets.iter().map(|f| f.generator(seed)).collect();
    let mut devices: Vec<Vec<Device>> = fleets.iter().map(|_| Vec::new()).collect();
    let mut scratch = Scratch::default();
    let mut line = Vec::with_capacity(1024);
    let mut written = 0;
    'rounds: for round in 0u64.. {
        for ((fleet, generator), fleet_devices) in fleets.iter().zip(&generators).zip(&mut devices) {
            for index in 0..fleet.devices {
                if written == opts.count {
                    break 'rounds;
                }
                if round == 0 {
                    fleet_devices.push(generator.device(index));
                }
                line.clear();
                fleet_devices[index as usize].write_next(generator, now_ms(), &mut scratch, &mut line);
                line.push(b'\n');
                out.write_all(&line)?;
                written += 1;
            }
        }
    }
    out.flush()?;
    Ok(())
}
