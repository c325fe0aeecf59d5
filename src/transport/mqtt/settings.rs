//! MQTT's own settings of a target, as plain data read from a scenario
//! (`[target.mqtt]`): the protocol version, the keep-alive and whether a
//! session starts clean. Checked as read.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer};

use crate::units::DurationValue;

/// The MQTT version a target is spoken to in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MqttVersion {
    /// MQTT 3.1.1: every broker and device backend here speaks it.
    #[default]
    V311,
}

impl fmt::Display for MqttVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MqttVersion::V311 => "3.1.1",
        })
    }
}

impl<'de> Deserialize<'de> for MqttVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match String::deserialize(d)?.as_str() {
            "3.1.1" => Ok(MqttVersion::V311),
            "5" | "5.0" => Err(de::Error::custom(
                "MQTT 5 is not spoken yet (it comes with MQTT 5's reason codes and properties); write \"3.1.1\"",
            )),
            other => Err(de::Error::custom(format!("version is {other:?}; write \"3.1.1\""))),
        }
    }
}

/// How a target's MQTT sessions are opened and kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttSettings {
    pub version: MqttVersion,
    /// A session sends a PINGREQ when nothing else went on it for this
    /// long (the broker closes one silent for 1.5 times it).
    pub keep_alive: Duration,
    /// Start each session without the broker's state of a previous one
    /// (MQTT 3.1.1's Clean Session).
    pub clean_start: bool,
}

impl Default for MqttSettings {
    fn default() -> Self {
        MqttSettings { version: MqttVersion::V311, keep_alive: Duration::from_secs(60), clean_start: true }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMqttSettings {
    version: Option<MqttVersion>,
    keep_alive: Option<DurationValue>,
    clean_start: Option<bool>,
}

impl<'de> Deserialize<'de> for MqttSettings {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = RawMqttSettings::deserialize(d)?;
        let defaults = MqttSettings::default();
        let keep_alive = raw.keep_alive.map_or(defaults.keep_alive, |k| k.0);
        // Whole seconds, 1 to 65,535 (MQTT's field; 0 would turn keep-alives off).
        if keep_alive < Duration::from_secs(1) || keep_alive > Duration::from_secs(u64::from(u16::MAX)) {
            return Err(de::Error::custom("keep_alive must be from 1s to 65535s"));
        }
        if keep_alive.subsec_nanos() != 0 {
            return Err(de::Error::custom("keep_alive is whole seconds in MQTT: write e.g. \"30s\""));
        }
        Ok(MqttSettings {
            version: raw.version.unwrap_or_default(),
            keep_alive,
            clean_start: raw.clean_start.unwrap_or(defaults.clean_start),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked_as_read() {
        let s: MqttSettings = toml::from_str("keep_alive = \"30s\"").unwrap();
        assert_eq!(s, MqttSettings { keep_alive: Duration::from_secs(30), ..MqttSettings::default() });
        for (text, says) in [
            ("keep_alive = \"0s\"", "from 1s"),
            ("keep_alive = \"1500ms\"", "whole seconds"),
            ("keep_alive = \"20h\"", "65535s"),
            ("version = \"5\"", "not spoken yet"),
            ("version = \"3\"", "write \"3.1.1\""),
            ("keepalive = \"30s\"", "unknown field"),
        ] {
            let e = toml::from_str::<MqttSettings>(text).unwrap_err().to_string();
            assert!(e.contains(says), "{text}: {e}");
        }
    }
}
