//! `fleetstorm sample`: print heartbeats exactly as devices would send them.
//!
//! Bodies come out as NDJSON, one compact body per line, byte for byte what
//! the generator would put on the wire, in the fleet's device profile
//! (the request's path and credential headers are not shown; a value a
//! custom template reads from the environment shows as its `${env:NAME}`).
//! Devices go in index order, fleet by
//! fleet; once every device has sent one heartbeat, the listing wraps round
//! to each device's next one. Device state is created lazily, so sampling a
//! few lines of a million-device fleet stays cheap.
//!
//! Each device's `n`-th line is its `n`-th heartbeat of a run: it follows
//! the device's schedule with the fleet's events, as the engine does, so a
//! rollout that has reached the device by then has switched its versions,
//! and the heartbeat after a model version changed carries the
//! `DeploymentResult`. The listing does not stop at the run's end: later
//! lines are the heartbeats of a longer run. Timestamps are the wall
//! clock's, as when sending.
//!
//! An MQTT fleet's message is two lines: `PUBLISH topic qos=Q retain=R
//! client_id=ID username=U password=***` (its session's CONNECT login;
//! the password never shown), then its payload.

use std::io::{self, Write};

use crate::device::{Device, FleetGenerator, Scratch};
use crate::fleet::{DeviceClock, FleetEvents};
use crate::scenario::{Fleet, Scenario};
use crate::transport::{Identity, MqttRoute, Route};
use crate::units::now_ms;
use crate::wire::FleetWire;
use crate::wire::custom::mask_secrets;

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
    let host = scenario.target.credential_host();
    let mut sampled: Vec<SampledFleet> = fleets.iter().map(|f| SampledFleet::new(f, seed, host)).collect();
    let mut scratch = Scratch::default();
    let mut line = Vec::with_capacity(1024);
    let mut written = 0;
    'rounds: for round in 0u64.. {
        for (fleet, s) in fleets.iter().zip(&mut sampled) {
            for index in 0..fleet.devices {
                if written == opts.count {
                    break 'rounds;
                }
                let at_ns = if round == 0 {
                    let mut clock = DeviceClock::new(seed, s.generator.key(), index);
                    let first = s.events.first(&mut clock, &fleet.schedule, fleet.devices, index);
                    s.devices.push(SampledDevice { device: s.generator.device(index), clock, at_ns: first.at_ns });
                    first.at_ns
                } else {
                    let d = &mut s.devices[index as usize];
                    d.at_ns = s.events.advance(&mut d.clock, &fleet.schedule, index, d.at_ns).at_ns;
                    d.at_ns
                };
                let d = &mut s.devices[index as usize];
                if !s.events.is_empty() {
                    s.events.apply_rollouts(&s.generator.profile, &mut d.device, at_ns);
                }
                let outgoing = s.wire.next_heartbeat(&s.generator, &mut d.device, now_ms(), &mut scratch, &mut line);
                match (&s.wire, &outgoing.route) {
                    (FleetWire::Custom(custom), _) => {
                        out.write_all(&mask_secrets(&outgoing.body, &custom.secrets()))?
                    }
                    (FleetWire::Mqtt(_), Route::Mqtt(route)) => {
                        let identity = s.wire.identity(&s.generator, index);
                        write_publish(out, route, &identity, &outgoing.body)?
                    }
                    _ => out.write_all(&outgoing.body)?,
                }
                out.write_all(b"\n")?;
                written += 1;
            }
        }
    }
    out.flush()?;
    Ok(())
}

/// An MQTT message as it goes: a `PUBLISH` line with its topic, QoS,
/// retain flag and its session's client id and login (the password shown
/// as `***`, never its value), then its payload (the password masked in
/// it too, should it appear).
fn write_publish(out: &mut impl Write, route: &MqttRoute, identity: &Identity, payload: &[u8]) -> io::Result<()> {
    let username = identity.username.as_deref().unwrap_or("(none)");
    let password = if identity.password.is_some() { "***" } else { "(none)" };
    writeln!(
        out,
        "PUBLISH {} qos={} retain={} client_id={} username={username} password={password}",
        route.topic,
        route.qos.level(),
        route.retain,
        identity.device
    )?;
    if route.observed.is_some() {
        writeln!(
            out,
            "  user_property fleetstorm-intended=(this run's instance/the message's intended time, ns since the epoch)"
        )?;
    }
    if let Some(answers) = &identity.response_topic {
        // The Correlation Data is the session's count of its messages.
        writeln!(out, "  response_topic={answers} correlation_data=(the message's number in its session, 8 bytes)")?;
    }
    match identity.password.as_deref().filter(|p| !p.is_empty()) {
        Some(secret) => out.write_all(&mask_secrets(payload, &[("password", secret)]))?,
        None => out.write_all(payload)?,
    }
    Ok(())
}

/// A fleet being sampled: its generator, its events, and the devices
/// sampled so far.
struct SampledFleet {
    generator: FleetGenerator,
    wire: FleetWire,
    events: FleetEvents,
    devices: Vec<SampledDevice>,
}

impl SampledFleet {
    /// Built as the engine builds it under `seed`, so that schedules and
    /// rollouts match a run's.
    fn new(fleet: &Fleet, seed: u64, host: &str) -> Self {
        let generator = fleet.generator(seed);
        let events = FleetEvents::new(&fleet.events, fleet.devices, fleet.schedule.interval, generator.key());
        let wire = fleet.wire(&generator.names, host);
        SampledFleet { generator, wire, events, devices: Vec::new() }
    }
}

/// A device's state, its schedule's, and its latest heartbeat's intended
/// time (ns since the start of the run).
struct SampledDevice {
    device: Device,
    clock: DeviceClock,
    at_ns: u64,
}
