//! The generic MQTT profile (`profile = "mqtt"`): each device publishes
//! its heartbeat (the device's state as the SendHeartbeat JSON body) to
//! its own topic, from a template (`[fleets.mqtt] topic`, default
//! `devices/{device}/telemetry`), at the fleet's QoS (0 or 1) with its
//! retain flag. Its session is its own, opened with its name as the
//! client id and, when the fleet's identities file has them, its
//! `username` and `password` columns as its login.

use serde::Deserialize;

use crate::device::{Device, FleetGenerator, Scratch};
use crate::transport::{MqttRoute, Qos};

/// The identities columns this profile reads when a file has them.
pub const USERNAME: &str = "username";
pub const PASSWORD: &str = "password";

/// The topic template when a fleet gives none.
pub const DEFAULT_TOPIC: &str = "devices/{device}/telemetry";

/// `[fleets.mqtt]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttSpec {
    topic: Option<String>,
    qos: Option<u8>,
    retain: Option<bool>,
}

/// A fleet's MQTT profile, checked: its topic template, QoS and retain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttWire {
    /// The topic, split at each `{device}`: the device's name goes
    /// between the parts.
    topic: Vec<String>,
    pub qos: Qos,
    pub retain: bool,
}

impl Default for MqttWire {
    fn default() -> Self {
        MqttWire::compile(&MqttSpec::default()).expect("the default topic is valid")
    }
}

impl MqttWire {
    /// Checks `spec`: a topic of 1 to 65,535 bytes with no wildcard (`+`,
    /// `#`: a device publishes to one topic), not one of the broker's own
    /// (`$...`), no NUL, and no placeholder but `{device}`; QoS 0 or 1.
    pub fn compile(spec: &MqttSpec) -> Result<MqttWire, String> {
        let text = spec.topic.as_deref().unwrap_or(DEFAULT_TOPIC);
        if text.is_empty() || text.len() > usize::from(u16::MAX) {
            return Err(format!("topic is {} bytes; a topic has 1 to 65535", text.len()));
        }
        if let Some(c) = text.chars().find(|c| matches!(c, '+' | '#' | '\0')) {
            return Err(format!(
                "topic {text:?} has {c:?}: a device publishes to one topic, without wildcards (+, #) or NUL"
            ));
        }
        if text.starts_with('$') {
            return Err(format!("topic {text:?} starts with $: such topics are the broker's own"));
        }
        let topic: Vec<String> = text.split("{device}").map(str::to_string).collect();
        if let Some(part) = topic.iter().find(|p| p.contains('{') || p.contains('}')) {
            return Err(format!("topic {text:?}: {part:?} has a brace; the one placeholder is {{device}}"));
        }
        let qos = match spec.qos.unwrap_or(1) {
            0 => Qos::AtMostOnce,
            1 => Qos::AtLeastOnce,
            2 => {
                return Err(
                    "qos 2 is not sent (AWS IoT and Azure IoT Hub refuse it, and no device backend here asks for it): \
                     write qos = 1 or 0"
                        .into(),
                );
            }
            n => return Err(format!("qos is {n}; MQTT's are 0, 1 and 2 (0 or 1 here)")),
        };
        Ok(MqttWire { topic, qos, retain: spec.retain.unwrap_or(false) })
    }

    /// `device`'s topic.
    pub fn topic(&self, device: &str) -> String {
        self.topic.join(device)
    }

    /// Device `index`'s topic, its name rendered straight into it.
    fn topic_of(&self, generator: &FleetGenerator, index: u64) -> String {
        let mut topic = String::with_capacity(self.topic.iter().map(String::len).sum::<usize>() + 32);
        for (i, part) in self.topic.iter().enumerate() {
            if i > 0 {
                generator.names.render(index, &mut topic);
            }
            topic.push_str(part);
        }
        topic
    }

    /// `device`'s next heartbeat at `now_ms`: its body built in `body`,
    /// and where it goes.
    pub fn message(
        &self,
        generator: &FleetGenerator,
        device: &mut Device,
        now_ms: u64,
        scratch: &mut Scratch,
        body: &mut Vec<u8>,
    ) -> MqttRoute {
        device.write_next(generator, now_ms, scratch, body);
        MqttRoute { topic: self.topic_of(generator, device.index()), qos: self.qos, retain: self.retain }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> MqttSpec {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn topics_are_one_device_s_own_and_checked_as_read() {
        let wire = MqttWire::default();
        assert_eq!(
            (wire.topic("cam-7").as_str(), wire.qos, wire.retain),
            ("devices/cam-7/telemetry", Qos::AtLeastOnce, false)
        );
        let wire = MqttWire::compile(&spec("topic = \"plant/{device}/hb/{device}\"\nqos = 0\nretain = true")).unwrap();
        assert_eq!((wire.topic("d-1").as_str(), wire.qos, wire.retain), ("plant/d-1/hb/d-1", Qos::AtMostOnce, true));
        // A device's own topic, its name rendered into it, is the same text.
        let generator = crate::device::plain_generator();
        assert_eq!(wire.topic_of(&generator, 4), "plant/d-4/hb/d-4");
        assert_eq!(MqttWire::default().topic_of(&generator, 0), "devices/d-0/telemetry");
        assert_eq!(MqttWire::compile(&spec("topic = \"fixed\"")).unwrap().topic("x"), "fixed");
        for (text, says) in [
            ("topic = \"devices/+/t\"", "without wildcards"),
            ("topic = \"devices/#\"", "without wildcards"),
            ("topic = \"$aws/things/{device}\"", "the broker's own"),
            ("topic = \"\"", "1 to 65535"),
            ("topic = \"d/{name}\"", "the one placeholder is {device}"),
            ("qos = 2", "qos 2 is not sent"),
            ("qos = 3", "0 or 1 here"),
        ] {
            let e = MqttWire::compile(&spec(text)).unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
        assert!(toml::from_str::<MqttSpec>("topik = \"x\"").unwrap_err().to_string().contains("unknown field"));
    }
}
