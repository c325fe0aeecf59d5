//! The device profiles by name: what a scenario writes, the identities
//! columns and protocols each needs, and the device-name rules each
//! backend holds its devices to. A leaf: every profile's module reads it.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::transport::Protocol;

/// A device profile's name, as a scenario writes it (`profile = "..."`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProfileName {
    /// SageMaker Edge Manager `SendHeartbeat`: `POST` to the target's path
    /// with the body of `../shared/spec/send-heartbeat.md`.
    #[default]
    SagemakerEdge,
    /// ThingsBoard's device HTTP API: telemetry under the access token.
    Thingsboard,
    /// Eclipse Hono's HTTP protocol adapter: telemetry with Basic auth.
    Hono,
    /// Azure IoT Hub's device-to-cloud messages, with a SAS token.
    AzureIotHub,
    /// AWS IoT Device Shadow's REST API: each device's reported state.
    AwsIotShadow,
    /// The fleet's own templates (`[fleets.custom]`).
    Custom,
    /// Generic MQTT: the heartbeat published to the device's own topic
    /// (`[fleets.mqtt]`).
    Mqtt,
}

impl ProfileName {
    pub const ALL: [ProfileName; 7] = [
        ProfileName::SagemakerEdge,
        ProfileName::Thingsboard,
        ProfileName::Hono,
        ProfileName::AzureIotHub,
        ProfileName::AwsIotShadow,
        ProfileName::Custom,
        ProfileName::Mqtt,
    ];

    /// The protocols this profile has routes for: a fleet of it can be
    /// run against a target of one of them.
    pub fn protocols(self) -> &'static [Protocol] {
        match self {
            ProfileName::SagemakerEdge
            | ProfileName::Thingsboard
            | ProfileName::Hono
            | ProfileName::AzureIotHub
            | ProfileName::AwsIotShadow
            | ProfileName::Custom => &[Protocol::Http],
            ProfileName::Mqtt => &[Protocol::Mqtt],
        }
    }
}

/// Names for the profiles whose backends take any device name: 1 to 128
/// printable ASCII characters without spaces, quotes or backslashes (so a
/// name is the same text in a path, a header and a JSON string).
pub(crate) fn check_plain_name(name: &str) -> Result<(), String> {
    check_name(name, 128, "a device name", |b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
}

/// The rule shape every profile's names share: 1 to `max` bytes, each one
/// `allowed` lets in; `what` names the kind of name in the message.
pub(crate) fn check_name(name: &str, max: usize, what: &str, allowed: impl Fn(u8) -> bool) -> Result<(), String> {
    if name.is_empty() || name.len() > max {
        return Err(format!("{} characters; {what} has 1 to {max}", name.len()));
    }
    match name.bytes().find(|&b| !allowed(b)) {
        Some(b) => Err(format!("{:?} is not allowed in {what}", b as char)),
        None => Ok(()),
    }
}

impl fmt::Display for ProfileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProfileName::SagemakerEdge => "sagemaker-edge",
            ProfileName::Thingsboard => "thingsboard",
            ProfileName::Hono => "hono",
            ProfileName::AzureIotHub => "azure-iot-hub",
            ProfileName::AwsIotShadow => "aws-iot-shadow",
            ProfileName::Custom => "custom",
            ProfileName::Mqtt => "mqtt",
        })
    }
}
