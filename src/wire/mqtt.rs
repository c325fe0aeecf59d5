//! The generic MQTT profile (`profile = "mqtt"`): each device publishes
//! its heartbeat (the device's state as the SendHeartbeat JSON body) to
//! its own topic, from a template (`[fleets.mqtt] topic`, default
//! `devices/{device}/telemetry`), at the fleet's QoS (0 or 1) with its
//! retain flag. Its session is its own, opened with its name as the
//! client id and, when the fleet's identities file has them, its
//! `username` and `password` columns as its login. A fleet may give its
//! devices a Will (`[fleets.mqtt.will]`: a topic template, a payload, a
//! QoS, retain), which the broker publishes when a session ends without a
//! DISCONNECT, and say how a device that goes offline (an outage, a
//! restart) ends its session (`offline = "drop"`, the default: as a device
//! that lost its power or network, so the broker publishes its Will; or
//! `"disconnect"`: a goodbye first, and no Will).
//!
//! `serve`'s side ([`check_login`], [`check_publish`]): a session is let
//! in when its device is known with that login (or by anyone when serve
//! knows no devices for this profile); a message is accepted when it is
//! on its device's own topic and its body is a valid heartbeat of that
//! device.

use serde::Deserialize;

use crate::device::{Device, FleetGenerator, Scratch};
use crate::transport::{LastWill, MqttRoute, Qos};

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
    will: Option<WillSpec>,
    offline: Option<Offline>,
    response_topic: Option<String>,
    observe: Option<bool>,
    username: Option<String>,
    password: Option<String>,
}

/// `[fleets.mqtt.will]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WillSpec {
    topic: String,
    #[serde(default)]
    payload: String,
    qos: Option<u8>,
    #[serde(default)]
    retain: bool,
}

/// How a device that goes offline ends its session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Offline {
    /// Dropped with no goodbye (power or network lost): the broker
    /// publishes the device's Will.
    #[default]
    Drop,
    /// A DISCONNECT first: the broker discards the Will.
    Disconnect,
}

/// What is wrong with a `[fleets.mqtt]` table, and under which of its
/// keys (`topic`, `will.qos`, ...), for the error's place in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    pub key: &'static str,
    pub message: String,
}

impl std::fmt::Display for SpecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// A fleet's Will, checked: its topic split at each `{device}`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Will {
    topic: Vec<String>,
    payload: bytes::Bytes,
    qos: Qos,
    retain: bool,
}

/// A fleet's MQTT profile, checked: its topic template, QoS and retain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttWire {
    /// The topic, split at each `{device}`: the device's name goes
    /// between the parts.
    topic: Vec<String>,
    pub qos: Qos,
    pub retain: bool,
    /// Its devices' Will, if the fleet gives one.
    will: Option<Will>,
    /// A device that goes offline says goodbye first (DISCONNECT).
    pub goodbye_offline: bool,
    /// Where each message asks its answer to go (MQTT 5's Response
    /// Topic), split at each `{device}`: the device subscribes to it, and
    /// a message is timed to its answer there.
    response_topic: Option<Vec<String>>,
    /// fleetstorm subscribes to the fleet's topics and times each message
    /// from its intended time to its delivery (MQTT 5: the message carries
    /// its intended time in a user property).
    pub observe: bool,
    /// Every device's user name (`username`, split at each `{device}`),
    /// where its identities file gives none.
    username: Option<Vec<String>>,
    /// Every device's password, read from the environment
    /// (`password = "${env:NAME}"`), where its identities file gives none.
    password: Option<EnvSecret>,
}

/// A value read from the environment for a login: sent, never shown (its
/// `Debug` names the variable only).
#[derive(Clone, PartialEq, Eq)]
pub struct EnvSecret {
    name: String,
    value: String,
}

impl std::fmt::Debug for EnvSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "${{env:{}}} (***)", self.name)
    }
}

impl Default for MqttWire {
    fn default() -> Self {
        MqttWire::compile(&MqttSpec::default()).expect("the default topic is valid")
    }
}

impl MqttWire {
    /// Checks `spec`: its topic and its Will's ([`topic_template`]), QoS 0
    /// or 1, its response topic.
    pub fn compile(spec: &MqttSpec) -> Result<MqttWire, SpecError> {
        MqttWire::compile_with(spec, &|name| std::env::var(name).ok())
    }

    /// [`Self::compile`] reading the environment through `env`.
    pub fn compile_with(spec: &MqttSpec, env: &dyn Fn(&str) -> Option<String>) -> Result<MqttWire, SpecError> {
        let at = |key: &'static str| move |message: String| SpecError { key, message };
        let text = spec.topic.as_deref().unwrap_or(DEFAULT_TOPIC);
        let topic = topic_template(text).map_err(at("topic"))?;
        let qos = qos_of(spec.qos.unwrap_or(1)).map_err(at("qos"))?;
        let will = match &spec.will {
            None => None,
            Some(w) => Some(Will {
                topic: topic_template(&w.topic)
                    .map_err(|e| SpecError { key: "will.topic", message: format!("will: {e}") })?,
                payload: bytes::Bytes::from(w.payload.clone().into_bytes()),
                qos: qos_of(w.qos.unwrap_or(0))
                    .map_err(|e| SpecError { key: "will.qos", message: format!("will: {e}") })?,
                retain: w.retain,
            }),
        };
        let response_topic = match &spec.response_topic {
            None => None,
            Some(t) => {
                Some(topic_template(t).map_err(|e| format!("response_topic: {e}")).map_err(at("response_topic"))?)
            }
        };
        if response_topic.as_ref().is_some_and(|r| *r == topic) {
            return Err(SpecError {
                key: "response_topic",
                message: "response_topic is the topic messages go to: a device would read its own messages as \
                          answers; give answers a topic of their own"
                    .into(),
            });
        }
        let username = match &spec.username {
            None => None,
            Some(u) if u.is_empty() || u.len() > usize::from(u16::MAX) => {
                return Err(SpecError { key: "username", message: "username is 1 to 65535 bytes".into() });
            }
            Some(u) => {
                let parts: Vec<String> = u.split("{device}").map(str::to_string).collect();
                if parts.iter().any(|p| p.contains('{') || p.contains('}')) {
                    return Err(SpecError {
                        key: "username",
                        message: format!("username {u:?}: the one placeholder is {{device}}"),
                    });
                }
                Some(parts)
            }
        };
        let password = match &spec.password {
            None => None,
            Some(p) => {
                let name = p
                    .strip_prefix("${env:")
                    .and_then(|r| r.strip_suffix('}'))
                    .filter(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
                let Some(name) = name else {
                    return Err(SpecError {
                        key: "password",
                        message: "password is read from the environment, never written in a scenario file: write \
                                  password = \"${env:NAME}\" (or give each device's in its identities file's \
                                  password column)"
                            .into(),
                    });
                };
                let Some(value) = env(name) else {
                    return Err(SpecError {
                        key: "password",
                        message: format!("password: {name} is not set; set it before running (export {name}=...)"),
                    });
                };
                Some(EnvSecret { name: name.to_string(), value })
            }
        };
        Ok(MqttWire {
            topic,
            qos,
            retain: spec.retain.unwrap_or(false),
            will,
            goodbye_offline: spec.offline.unwrap_or_default() == Offline::Disconnect,
            response_topic,
            observe: spec.observe.unwrap_or(false),
            username,
            password,
        })
    }

    /// Device `index`'s user name and password from the fleet's
    /// `username` and `password`, if it gives them.
    pub fn login_of(&self, generator: &FleetGenerator, index: u64) -> (Option<String>, Option<String>) {
        let username = self.username.as_ref().map(|parts| render(parts, generator, index));
        (username, self.password.as_ref().map(|p| p.value.clone()))
    }

    /// Whether each message asks for an answer (a response topic).
    pub fn asks_answers(&self) -> bool {
        self.response_topic.is_some()
    }

    /// Device `index`'s response topic, if its fleet has one.
    pub fn response_topic_of(&self, generator: &FleetGenerator, index: u64) -> Option<String> {
        self.response_topic.as_ref().map(|parts| render(parts, generator, index))
    }

    /// The topic filter an observer subscribes to for every device's
    /// messages: each level of the topic that holds the device's name is
    /// `+` (device names have no `/`).
    pub fn observe_filter(&self) -> String {
        let template = self.template();
        template
            .split('/')
            .map(|level| if level.contains("{device}") { "+" } else { level })
            .collect::<Vec<_>>()
            .join("/")
    }

    /// The response topic's template as written, if any.
    pub fn response_template(&self) -> Option<String> {
        self.response_topic.as_ref().map(|parts| parts.join("{device}"))
    }

    /// Device `index`'s Will, its name rendered into its topic.
    pub fn will_of(&self, generator: &FleetGenerator, index: u64) -> Option<LastWill> {
        let w = self.will.as_ref()?;
        Some(LastWill {
            topic: render(&w.topic, generator, index),
            payload: w.payload.clone(),
            qos: w.qos,
            retain: w.retain,
        })
    }
}

/// A topic template, checked: 1 to 65,535 bytes, no wildcard (`+`, `#`: a
/// device publishes to one topic), not one of the broker's own (`$...`),
/// no NUL, and no placeholder but `{device}`; split at each `{device}`.
fn topic_template(text: &str) -> Result<Vec<String>, String> {
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
    Ok(topic)
}

/// A QoS as written: 0 or 1.
fn qos_of(n: u8) -> Result<Qos, String> {
    match n {
        0 => Ok(Qos::AtMostOnce),
        1 => Ok(Qos::AtLeastOnce),
        2 => Err("qos 2 is not sent (AWS IoT and Azure IoT Hub refuse it, and no device backend here asks for it): \
                  write qos = 1 or 0"
            .into()),
        n => Err(format!("qos is {n}; MQTT's are 0, 1 and 2 (0 or 1 here)")),
    }
}

/// A topic template's text with device `index`'s name between its parts.
fn render(parts: &[String], generator: &FleetGenerator, index: u64) -> String {
    let mut topic = String::with_capacity(parts.iter().map(String::len).sum::<usize>() + 32);
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            generator.names.render(index, &mut topic);
        }
        topic.push_str(part);
    }
    topic
}

impl MqttWire {
    /// The wire of topic template `topic` (checked as [`Self::compile`]
    /// does), at the default QoS: serve's `--mqtt-topic`.
    pub fn for_topic(topic: &str) -> Result<MqttWire, String> {
        MqttWire::compile(&MqttSpec { topic: Some(topic.to_string()), ..MqttSpec::default() }).map_err(|e| e.message)
    }

    /// `device`'s topic.
    pub fn topic(&self, device: &str) -> String {
        self.topic.join(device)
    }

    /// The template as written (`devices/{device}/telemetry`).
    pub fn template(&self) -> String {
        self.topic.join("{device}")
    }

    /// Whether `topic` is `device`'s topic (read in place: no topic is
    /// rendered).
    pub fn is_topic_of(&self, device: &str, topic: &str) -> bool {
        let mut rest = topic;
        for (i, part) in self.topic.iter().enumerate() {
            if i > 0 {
                let Some(after) = rest.strip_prefix(device) else { return false };
                rest = after;
            }
            let Some(after) = rest.strip_prefix(part.as_str()) else { return false };
            rest = after;
        }
        rest.is_empty()
    }

    /// Device `index`'s topic, its name rendered straight into it.
    fn topic_of(&self, generator: &FleetGenerator, index: u64) -> String {
        render(&self.topic, generator, index)
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
        MqttRoute {
            topic: self.topic_of(generator, device.index()),
            qos: self.qos,
            retain: self.retain,
            observed: self.observe.then_some(0),
        }
    }
}

/// What serve makes of a session's CONNECT login: its CONNACK return
/// code, as a broker gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Login {
    Accepted,
    /// A known device with another user name or password (4).
    BadUserNamePassword,
    /// A device serve does not know (5).
    NotAuthorized,
}

/// Checks `client_id`'s login against the devices `known` for this
/// profile: with none known, anyone is let in; otherwise the device must
/// be known, and give its file's `username` and `password` where the file
/// has them (compared in constant time).
pub fn check_login(
    known: &super::known::Known,
    client_id: &str,
    username: Option<&str>,
    password: Option<&str>,
) -> Login {
    use subtle::ConstantTimeEq;
    let profile = super::profile::ProfileName::Mqtt;
    if !known.has_identities(profile) {
        return Login::Accepted;
    }
    let Some(found) = known.find(profile, client_id) else { return Login::NotAuthorized };
    let same = |given: Option<&str>, column: &str| match found.column(column) {
        Some(expected) => bool::from(given.unwrap_or_default().as_bytes().ct_eq(expected.as_bytes())),
        None => true,
    };
    // Both compared, whatever the first gave.
    let (user, pass) = (same(username, USERNAME), same(password, PASSWORD));
    if user && pass { Login::Accepted } else { Login::BadUserNamePassword }
}

/// Why serve refused a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unfit {
    /// Not on the device's own topic (of any of the profile's templates).
    Topic,
    /// The body is not a valid heartbeat: the validator's words.
    Body(String),
    /// A valid heartbeat, of another device than the session's.
    Device,
}

impl std::fmt::Display for Unfit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unfit::Topic => f.write_str("not on the device's own topic"),
            Unfit::Body(why) => write!(f, "not a valid heartbeat: {why}"),
            Unfit::Device => f.write_str("a heartbeat of another device than the session's client id"),
        }
    }
}

/// Checks a message of `client_id`'s session: on its topic by one of
/// `wires`' templates, its body a valid heartbeat naming that device. The
/// heartbeat's summary, for the registry.
pub fn check_publish<'a>(
    wires: &[std::sync::Arc<MqttWire>],
    client_id: &str,
    topic: &str,
    body: &'a [u8],
) -> Result<crate::sagemaker_edge::validate::Summary<'a>, Unfit> {
    if !wires.iter().any(|w| w.is_topic_of(client_id, topic)) {
        return Err(Unfit::Topic);
    }
    let summary = crate::sagemaker_edge::validate::inspect(body).map_err(|v| Unfit::Body(v.to_string()))?;
    if summary.device_name != client_id {
        return Err(Unfit::Device);
    }
    Ok(summary)
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
            ("response_topic = \"a/+\"", "response_topic: topic \"a/+\" has '+'"),
            ("response_topic = \"devices/{device}/telemetry\"", "answers a topic of their own"),
        ] {
            let e = MqttWire::compile(&spec(text)).unwrap_err();
            assert!(e.message.contains(says), "{text}: {e}");
            assert_eq!(e.key, text.split(' ').next().unwrap(), "{text}: the key it is under");
        }
        assert!(toml::from_str::<MqttSpec>("topik = \"x\"").unwrap_err().to_string().contains("unknown field"));
    }

    /// A fleet's login for every device: a user name template, a password
    /// from the environment only (a scenario file holds no secret), never
    /// shown by `Debug`.
    #[test]
    fn a_fleet_s_login_is_a_user_name_template_and_a_password_from_the_environment() {
        let env = |name: &str| (name == "MQTT_PW").then(|| "s3cr3t".to_string());
        let login = spec("username = \"user-{device}\"\npassword = \"${env:MQTT_PW}\"");
        let wire = MqttWire::compile_with(&login, &env).unwrap();
        let shown = format!("{wire:?}");
        assert!(shown.contains("MQTT_PW") && !shown.contains("s3cr3t"), "{shown}");
        for (text, says) in [
            ("password = \"hunter2\"", "never written in a scenario file"),
            ("password = \"${env:UNSET_ONE}\"", "UNSET_ONE is not set"),
            ("username = \"u-{name}\"", "the one placeholder is {device}"),
        ] {
            let e = MqttWire::compile_with(&spec(text), &env).unwrap_err();
            assert!(e.message.contains(says) && text.starts_with(e.key), "{text}: {e:?}");
        }
    }

    #[test]
    fn serve_reads_a_topic_in_place_as_the_device_s_own() {
        let wire = MqttWire::compile(&spec("topic = \"plant/{device}/hb/{device}\"")).unwrap();
        assert_eq!(wire.template(), "plant/{device}/hb/{device}");
        assert!(wire.is_topic_of("d-1", "plant/d-1/hb/d-1"));
        for other in ["plant/d-1/hb/d-2", "plant/d-1/hb/d-1/", "plant/d-1/hb", "plant/d-12/hb/d-1", ""] {
            assert!(!wire.is_topic_of("d-1", other), "{other}");
        }
        let fixed = MqttWire::compile(&spec("topic = \"fixed\"")).unwrap();
        assert!(fixed.is_topic_of("anyone", "fixed") && !fixed.is_topic_of("anyone", "fixe"));
    }
}
