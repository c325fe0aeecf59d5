//! MQTT's own settings of a target, as plain data read from a scenario
//! (`[target.mqtt]`): the protocol version, the keep-alive, whether a
//! session starts clean and how a lost one is reopened. Checked as read.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer};

use crate::transport::Reconnect;
use crate::units::{DurationValue, Rate};

/// The MQTT version a target is spoken to in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MqttVersion {
    /// MQTT 3.1.1: every broker and device backend here speaks it.
    #[default]
    V311,
    /// MQTT 5: reason codes on every refusal and acknowledgement, the
    /// broker's limits in its CONNACK, request/response.
    V5,
}

impl fmt::Display for MqttVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MqttVersion::V311 => "3.1.1",
            MqttVersion::V5 => "5",
        })
    }
}

impl<'de> Deserialize<'de> for MqttVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match String::deserialize(d)?.as_str() {
            "3.1.1" => Ok(MqttVersion::V311),
            "5" | "5.0" => Ok(MqttVersion::V5),
            other => Err(de::Error::custom(format!("version is {other:?}; write \"3.1.1\" or \"5\""))),
        }
    }
}

/// How a target's MQTT sessions are opened and kept.
#[derive(Debug, Clone, PartialEq)]
pub struct MqttSettings {
    pub version: MqttVersion,
    /// A session sends a PINGREQ when nothing else went on it for this
    /// long (the broker closes one silent for 1.5 times it).
    pub keep_alive: Duration,
    /// Start each session without the broker's state of a previous one
    /// (MQTT 3.1.1's Clean Session, MQTT 5's Clean Start).
    pub clean_start: bool,
    /// How long the broker keeps a session's state after it ends (MQTT
    /// 5's Session Expiry Interval; 0: it ends with the connection).
    pub session_expiry: Duration,
    /// How a device reopens a lost session (`reconnect_delay`, doubling
    /// up to `reconnect_max`; AWS's device SDKs start at 1 s), or not
    /// until its next heartbeat (`reconnect = false`).
    pub reconnect: Option<Reconnect>,
    /// The most sessions opened per second across the run
    /// (`connect_rate = "100/s"`), first openings and reopenings alike;
    /// `None`: as devices need them.
    pub connect_rate: Option<f64>,
    /// How many of a device's messages may await their acknowledgement
    /// (or answer) at once: its in-flight window, at most the broker's
    /// Receive Maximum (MQTT 5's CONNACK). A message that comes due while
    /// the window is full waits (late), as one held back by a busy device.
    pub in_flight: u16,
}

/// A device's in-flight window unless the scenario says otherwise: paho's
/// (the Eclipse clients' `max_inflight_messages`); AWS IoT Core and
/// ThingsBoard take up to 100 unacknowledged QoS 1 messages a connection.
pub const DEFAULT_IN_FLIGHT: u16 = 20;

impl Default for MqttSettings {
    fn default() -> Self {
        MqttSettings {
            version: MqttVersion::V311,
            keep_alive: Duration::from_secs(60),
            clean_start: true,
            session_expiry: Duration::ZERO,
            reconnect: Some(Reconnect { first: Duration::from_secs(1), max: Duration::from_secs(60) }),
            connect_rate: None,
            in_flight: DEFAULT_IN_FLIGHT,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMqttSettings {
    version: Option<MqttVersion>,
    keep_alive: Option<DurationValue>,
    clean_start: Option<bool>,
    session_expiry: Option<DurationValue>,
    reconnect: Option<bool>,
    reconnect_delay: Option<DurationValue>,
    reconnect_max: Option<DurationValue>,
    connect_rate: Option<Rate>,
    in_flight: Option<u16>,
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
        let reconnect = match (raw.reconnect, defaults.reconnect) {
            (Some(false), _) => {
                if raw.reconnect_delay.is_some() || raw.reconnect_max.is_some() {
                    return Err(de::Error::custom(
                        "reconnect = false: a device reopens its session at its next heartbeat; drop \
                         reconnect_delay and reconnect_max, or reconnect = false",
                    ));
                }
                None
            }
            (_, Some(d)) => {
                let first = raw.reconnect_delay.map_or(d.first, |v| v.0);
                let max = raw.reconnect_max.map_or(d.max.max(first), |v| v.0);
                if first < Duration::from_millis(10) {
                    return Err(de::Error::custom(
                        "reconnect_delay must be at least 10ms (a device that reconnects at once, again and again, \
                         is a connect flood, not a fleet)",
                    ));
                }
                if max < first {
                    return Err(de::Error::custom(format!(
                        "reconnect_max ({max:?}) is below reconnect_delay ({first:?}): the delay doubles from the \
                         one up to the other"
                    )));
                }
                Some(Reconnect { first, max })
            }
            (_, None) => None,
        };
        let version = raw.version.unwrap_or_default();
        let session_expiry = match raw.session_expiry {
            None => Duration::ZERO,
            Some(_) if version == MqttVersion::V311 => {
                return Err(de::Error::custom(
                    "session_expiry is MQTT 5's (3.1.1 has clean_start alone): write version = \"5\", or drop it",
                ));
            }
            Some(e) if e.0.subsec_nanos() != 0 || e.0 > Duration::from_secs(u64::from(u32::MAX)) => {
                return Err(de::Error::custom("session_expiry is whole seconds, at most 4294967295s"));
            }
            Some(e) => e.0,
        };
        Ok(MqttSettings {
            version,
            session_expiry,
            keep_alive,
            clean_start: raw.clean_start.unwrap_or(defaults.clean_start),
            reconnect,
            connect_rate: raw.connect_rate.map(|r| r.0),
            in_flight: match raw.in_flight {
                None => defaults.in_flight,
                Some(0) => {
                    return Err(de::Error::custom(
                        "in_flight is how many of a device's messages may await their PUBACK at once: at least 1",
                    ));
                }
                Some(n) => n,
            },
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
        let s: MqttSettings = toml::from_str("reconnect_delay = \"2s\"\nreconnect_max = \"1m\"").unwrap();
        let r = Reconnect { first: Duration::from_secs(2), max: Duration::from_secs(60) };
        assert_eq!(s.reconnect, Some(r));
        let s: MqttSettings = toml::from_str("reconnect = false").unwrap();
        assert_eq!(s.reconnect, None);
        let s: MqttSettings = toml::from_str("connect_rate = \"6000/m\"").unwrap();
        assert_eq!(s.connect_rate, Some(100.0));
        let s: MqttSettings = toml::from_str("version = \"5\"\nsession_expiry = \"1h\"").unwrap();
        assert_eq!((s.version, s.session_expiry), (MqttVersion::V5, Duration::from_secs(3600)));
        let s: MqttSettings = toml::from_str("in_flight = 100").unwrap();
        assert_eq!((s.in_flight, MqttSettings::default().in_flight), (100, DEFAULT_IN_FLIGHT));
        for (text, says) in [
            ("keep_alive = \"0s\"", "from 1s"),
            ("keep_alive = \"1500ms\"", "whole seconds"),
            ("keep_alive = \"20h\"", "65535s"),
            ("version = \"3\"", "write \"3.1.1\" or \"5\""),
            ("session_expiry = \"1h\"", "MQTT 5's"),
            ("version = \"5\"\nsession_expiry = \"1.5s\"", "whole seconds"),
            ("keepalive = \"30s\"", "unknown field"),
            ("reconnect_delay = \"1ms\"", "at least 10ms"),
            ("connect_rate = \"0/s\"", "connect_rate"),
            ("connect_rate = 100", "connect_rate"),
            ("in_flight = 0", "at least 1"),
            ("in_flight = 70000", "in_flight"),
            ("reconnect_delay = \"5s\"\nreconnect_max = \"2s\"", "below reconnect_delay"),
            ("reconnect = false\nreconnect_max = \"2s\"", "drop reconnect_delay"),
        ] {
            let e = toml::from_str::<MqttSettings>(text).unwrap_err().to_string();
            assert!(e.contains(says), "{text}: {e}");
        }
    }
}
