//! What a fleet's devices speak: its device profile. A profile decides,
//! for each heartbeat, the body made from the device's state and where the
//! request goes (its target and per-device headers, when they are not the
//! endpoint's). The engine asks the fleet's [`FleetWire`] once per
//! heartbeat and hands the transport the [`Outgoing`] it gets; the
//! transport knows no profile.
//!
//! `sagemaker-edge` (SageMaker Edge Manager `SendHeartbeat`) is the
//! default and, for now, the only profile; `docs/design/device-profiles.md`
//! is the plan for the others (AWS IoT shadows, ThingsBoard, Eclipse Hono,
//! Azure IoT Hub, custom templates), each a variant here.

pub mod azure;

use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::heartbeat::{Device, FleetGenerator, Scratch};
use crate::transport::Outgoing;

/// A device profile's name, as a scenario writes it (`profile = "..."`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProfileName {
    /// SageMaker Edge Manager `SendHeartbeat`: `POST` to the target's path
    /// with the body of `../shared/spec/send-heartbeat.md`.
    #[default]
    SagemakerEdge,
}

impl fmt::Display for ProfileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProfileName::SagemakerEdge => "sagemaker-edge",
        })
    }
}

/// A fleet's profile as its heartbeats are made: whatever the profile
/// needs, compiled once per fleet.
#[derive(Debug, Clone, Default)]
pub enum FleetWire {
    #[default]
    SagemakerEdge,
}

impl FleetWire {
    pub fn new(profile: ProfileName) -> FleetWire {
        match profile {
            ProfileName::SagemakerEdge => FleetWire::SagemakerEdge,
        }
    }

    pub fn profile(&self) -> ProfileName {
        match self {
            FleetWire::SagemakerEdge => ProfileName::SagemakerEdge,
        }
    }

    /// `device`'s next heartbeat at `now_ms` (epoch milliseconds): its body
    /// built in `body` (cleared first), then copied into what the transport
    /// sends.
    #[inline]
    pub fn next_heartbeat(
        &self,
        generator: &FleetGenerator,
        device: &mut Device,
        now_ms: u64,
        scratch: &mut Scratch,
        body: &mut Vec<u8>,
    ) -> Outgoing {
        body.clear();
        match self {
            FleetWire::SagemakerEdge => {
                device.write_next(generator, now_ms, scratch, body);
                Bytes::copy_from_slice(body).into()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sagemaker_edge_heartbeat_is_the_device_s_body_sent_to_the_endpoint_s_path() {
        let generator = crate::heartbeat::plain_generator();
        let (mut a, mut b) = (generator.device(3), generator.device(3));
        let (mut scratch, mut body, mut direct) = (Scratch::default(), Vec::new(), Vec::new());
        let wire = FleetWire::new(ProfileName::default());
        assert_eq!(wire.profile().to_string(), "sagemaker-edge");
        let out = wire.next_heartbeat(&generator, &mut a, 1_700_000_000_000, &mut scratch, &mut body);
        b.write_next(&generator, 1_700_000_000_000, &mut Scratch::default(), &mut direct);
        assert_eq!(out.body.as_ref(), direct.as_slice());
        assert!(out.addressed.is_none());
        assert!(crate::heartbeat::validate(&out.body).is_ok());
    }
}
