//! What a fleet's devices speak: its device profile. A profile decides,
//! for each heartbeat, the body made from the device's state and where the
//! request goes (its target and per-device credentials, when they are not
//! the endpoint's), and, on `serve`'s side, how such a request is checked
//! and answered. Both sides of a profile live in its own module here, so
//! the rules they share have one owner; SendHeartbeat's contract alone
//! sits in a lower layer ([`crate::sagemaker_edge`]), because the device
//! and the engine's fake transport use it:
//!
//! | profile | module | request | success |
//! |---|---|---|---|
//! | `sagemaker-edge` (default) | [`sagemaker_edge`](crate::sagemaker_edge) (its contract; bodies from [`Device::write_next`]) | `POST /SendHeartbeat` (the target's path) | 200 |
//! | `thingsboard` | [`thingsboard`] | `POST /api/v1/{token}/telemetry` | 200 |
//! | `hono` | [`hono`] | `POST /telemetry`, HTTP Basic `{auth-id}@{tenant}` | 202 |
//! | `azure-iot-hub` | [`azure`] | `POST /devices/{id}/messages/events?api-version=2021-04-12`, a SAS token | 204 |
//! | `aws-iot-shadow` | [`aws_shadow`] | `POST /things/{thing}/shadow`, SigV4 (`iotdata`) or mTLS | 200 |
//! | `custom` | [`custom`] | the fleet's method, path, header and body templates | its statuses (any 2xx) |
//!
//! The engine asks the fleet's [`FleetWire`] once per heartbeat and hands
//! the transport the [`Outgoing`] it gets; the transport knows no profile.
//! The dispatch is one `match`, and a `sagemaker-edge` heartbeat is the
//! same bytes to the same path as before profiles existed.
//!
//! # Credentials
//!
//! A device's credential comes from its row of the fleet's identities
//! file ([`ProfileName::columns`] names the columns each profile needs).
//! A fleet without one uses the rule that `serve` also applies when it is
//! given no identities: every credential is the device's name (the
//! ThingsBoard token, the Hono auth-id and password, under the tenant
//! `DEFAULT_TENANT`), and an Azure device key is the base64 of its name.
//! The rule is for trying a profile out; a real backend's devices come
//! from a file.

mod answer;
pub mod aws_shadow;
pub mod azure;
pub mod custom;
pub mod hono;
mod known;
pub mod mqtt;
mod parts;
mod profile;
pub mod serve;
pub mod thingsboard;

pub use parts::Credentials;
use parts::device_name;
pub use profile::ProfileName;
use profile::check_plain_name;

use std::sync::Arc;

use bytes::Bytes;

use crate::device::{Device, DeviceNames, FleetGenerator, Scratch};
use crate::identities::Identities;
use crate::transport::{Identity, Outgoing, Route};

/// What each profile asks of its devices: dispatched here, into each
/// profile's module.
impl ProfileName {
    /// The credential columns an identities file for this profile needs,
    /// beside `name`.
    pub fn columns(self) -> &'static [&'static str] {
        match self {
            ProfileName::SagemakerEdge | ProfileName::AwsIotShadow | ProfileName::Custom | ProfileName::Mqtt => &[],
            ProfileName::Thingsboard => &[thingsboard::TOKEN],
            ProfileName::Hono => &[hono::TENANT, hono::AUTH_ID, hono::PASSWORD],
            ProfileName::AzureIotHub => &[azure::KEY],
        }
    }

    /// Refuses identities with a credential this profile cannot send (an
    /// Azure device key that is not base64), naming the device.
    pub fn check_credentials(self, ids: &Identities) -> Result<(), crate::identities::IdentitiesError> {
        match self {
            ProfileName::AzureIotHub => azure::check_keys(ids),
            _ => Ok(()),
        }
    }

    /// The profile's rule for device names.
    pub fn check_device_name(self, name: &str) -> Result<(), String> {
        match self {
            ProfileName::SagemakerEdge => {
                crate::sagemaker_edge::rules::ENTITY_NAME.check(name).map_err(|f| f.to_string())
            }
            ProfileName::AzureIotHub => azure::check_device_id(name),
            ProfileName::AwsIotShadow => aws_shadow::check_thing_name(name),
            ProfileName::Thingsboard | ProfileName::Hono | ProfileName::Custom | ProfileName::Mqtt => {
                check_plain_name(name)
            }
        }
    }
}

/// A fleet's profile as its heartbeats are made: whatever the profile
/// needs, compiled once per fleet.
#[derive(Debug, Clone, Default)]
pub enum FleetWire {
    #[default]
    SagemakerEdge,
    Thingsboard(Credentials),
    Hono(Credentials),
    AzureIotHub(azure::HubCredentials),
    AwsIotShadow,
    Custom(Arc<custom::CustomWire>),
    Mqtt(Arc<mqtt::MqttWire>),
}

impl FleetWire {
    /// The wire of a fleet of `profile` whose devices are `names`, sending
    /// to `host` (the target's host name, which an Azure SAS token names);
    /// `custom` is a custom fleet's compiled templates (which the
    /// scenario checked it has).
    pub fn new(
        profile: ProfileName,
        names: &DeviceNames,
        host: &str,
        custom: Option<&Arc<custom::CustomWire>>,
    ) -> FleetWire {
        let credentials = Credentials::new(profile.columns(), names);
        if let (ProfileName::Custom, Some(wire)) = (profile, custom) {
            return FleetWire::Custom(wire.clone());
        }
        match profile {
            ProfileName::SagemakerEdge => FleetWire::SagemakerEdge,
            ProfileName::Thingsboard => FleetWire::Thingsboard(credentials),
            ProfileName::Hono => FleetWire::Hono(credentials),
            ProfileName::AzureIotHub => FleetWire::AzureIotHub(azure::HubCredentials::new(credentials, host)),
            ProfileName::AwsIotShadow => FleetWire::AwsIotShadow,
            // Without templates a custom fleet could send nothing valid.
            ProfileName::Custom => FleetWire::SagemakerEdge,
            ProfileName::Mqtt => FleetWire::Mqtt(Arc::default()),
        }
    }

    pub fn profile(&self) -> ProfileName {
        match self {
            FleetWire::SagemakerEdge => ProfileName::SagemakerEdge,
            FleetWire::Thingsboard(_) => ProfileName::Thingsboard,
            FleetWire::Hono(_) => ProfileName::Hono,
            FleetWire::AzureIotHub(_) => ProfileName::AzureIotHub,
            FleetWire::AwsIotShadow => ProfileName::AwsIotShadow,
            FleetWire::Custom(_) => ProfileName::Custom,
            FleetWire::Mqtt(_) => ProfileName::Mqtt,
        }
    }

    /// `device`'s next heartbeat at `now_ms` (epoch milliseconds): its body
    /// built in `body` (cleared first), then copied into what the transport
    /// sends, with the request's own target and headers if the profile
    /// has them.
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
        let route = match self {
            FleetWire::SagemakerEdge => {
                device.write_next(generator, now_ms, scratch, body);
                return Bytes::copy_from_slice(body).into();
            }
            FleetWire::Thingsboard(c) => thingsboard::request(c, generator, device, now_ms, body),
            FleetWire::Hono(c) => hono::request(c, generator, device, now_ms, body),
            FleetWire::AzureIotHub(hub) => hub.request(generator, device, now_ms, body),
            FleetWire::AwsIotShadow => aws_shadow::request(generator, device, now_ms, body),
            FleetWire::Custom(c) => c.request(generator, device, now_ms, body),
            FleetWire::Mqtt(m) => {
                let route = m.message(generator, device, now_ms, scratch, body);
                return Outgoing { body: Bytes::copy_from_slice(body), route: route.into() };
            }
        };
        Outgoing { body: Bytes::copy_from_slice(body), route: Route::Http(Box::new(route)) }
    }
}

impl FleetWire {
    /// Device `index`'s identity, for a transport that opens a session per
    /// device (its name, and its credentials as its session's login rather
    /// than each request's); built when the session opens, never for HTTP.
    /// The certificate columns (`cert`, `key_file`) are read from the
    /// fleet's identities file whatever the profile.
    pub fn identity(&self, generator: &FleetGenerator, index: u64) -> Identity {
        let device = device_name(generator, index);
        let (username, password) = match self {
            FleetWire::Thingsboard(c) => {
                (Some(c.listed(index, 0).map_or_else(|| device.clone(), str::to_string)), None)
            }
            FleetWire::Hono(c) => {
                let (user, password) = hono::login(c, &device, index);
                (Some(user), Some(password))
            }
            FleetWire::AzureIotHub(hub) => {
                let (user, token) = hub.login(&device, index, crate::units::now_ms());
                (Some(user), Some(token))
            }
            FleetWire::Mqtt(m) => {
                // The login: the fleet's identities file's, device by
                // device, or the fleet's `username` and `password`.
                let column = |name: &str| {
                    let ids = generator.names.identities()?;
                    let at = ids.column(name)?;
                    Some(ids.get(index as usize, at).to_string())
                };
                let (username, password) = m.login_of(generator, index);
                (column(mqtt::USERNAME).or(username), column(mqtt::PASSWORD).or(password))
            }
            FleetWire::SagemakerEdge | FleetWire::AwsIotShadow | FleetWire::Custom(_) => (None, None),
        };
        let ids = generator.names.identities();
        let file = |column: &str| {
            let ids = ids?;
            let at = ids.column(column)?;
            Some(std::path::PathBuf::from(ids.get(index as usize, at)))
        };
        let (will, response_topic) = match self {
            FleetWire::Mqtt(m) => (m.will_of(generator, index), m.response_topic_of(generator, index)),
            _ => (None, None),
        };
        Identity { device, username, password, cert: file("cert"), key_file: file("key_file"), will, response_topic }
    }
}

/// Where a run sends, for its headers: the target's URL and the
/// SendHeartbeat path when a fleet sends there, and the other device
/// profiles its fleets speak (each to its own paths).
pub fn destination(url: &str, path: &str, profiles: impl Iterator<Item = ProfileName>) -> String {
    let mut profiles: Vec<ProfileName> = profiles.collect();
    let edge = profiles.contains(&ProfileName::SagemakerEdge);
    profiles.retain(|p| *p != ProfileName::SagemakerEdge);
    let mut others: Vec<String> = profiles.iter().map(ToString::to_string).collect();
    others.sort();
    others.dedup();
    // An MQTT profile's messages go to topics; the others' to paths.
    let places =
        if profiles.iter().all(|p| p.protocols() == [crate::transport::Protocol::Mqtt]) { "topics" } else { "paths" };
    match (edge, others.join(", ")) {
        (true, o) if o.is_empty() => format!("{url}{path}"),
        (true, o) => format!("{url}{path} and the {o} profile {places}"),
        (false, o) => format!("{url} ({o} profile {places})"),
    }
}

impl FleetWire {
    /// The outcome of an exchange as the profile judges it: a 2xx is
    /// success, but for a `custom` profile, whose statuses are its own.
    #[inline]
    /// Whether a device of this wire that goes offline (an outage, a
    /// restart) ends its session with the protocol's goodbye (MQTT's
    /// DISCONNECT, `[fleets.mqtt] offline = "disconnect"`) rather than
    /// dropping it.
    pub fn says_goodbye_offline(&self) -> bool {
        match self {
            FleetWire::Mqtt(m) => m.goodbye_offline,
            _ => false,
        }
    }

    pub fn judge(&self, outcome: crate::stats::Outcome) -> crate::stats::Outcome {
        match (self, outcome) {
            (FleetWire::Custom(c), crate::stats::Outcome::Status(status)) => {
                crate::stats::Outcome::Judged { status, ok: c.accepts(status) }
            }
            _ => outcome,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::transport::Protocol;

    #[test]
    fn a_sagemaker_edge_heartbeat_is_the_device_s_body_sent_to_the_endpoint_s_path() {
        let generator = crate::device::plain_generator();
        let (mut a, mut b) = (generator.device(3), generator.device(3));
        let (mut scratch, mut body, mut direct) = (Scratch::default(), Vec::new(), Vec::new());
        let wire = FleetWire::new(ProfileName::default(), &generator.names, "127.0.0.1", None);
        assert_eq!(wire.profile().to_string(), "sagemaker-edge");
        let out = wire.next_heartbeat(&generator, &mut a, 1_700_000_000_000, &mut scratch, &mut body);
        b.write_next(&generator, 1_700_000_000_000, &mut Scratch::default(), &mut direct);
        assert_eq!(out.body.as_ref(), direct.as_slice());
        assert!(out.route.http().is_none());
        assert!(crate::sagemaker_edge::validate(&out.body).is_ok());
    }

    #[test]
    fn a_device_s_identity_is_its_name_and_its_profile_s_login_from_its_row_or_the_rule() {
        let generator = crate::device::plain_generator();
        let plain = FleetWire::new(ProfileName::SagemakerEdge, &generator.names, "127.0.0.1", None);
        assert_eq!(plain.identity(&generator, 4), Identity { device: "d-4".into(), ..Identity::default() });
        let tb = FleetWire::new(ProfileName::Thingsboard, &generator.names, "127.0.0.1", None);
        assert_eq!(tb.identity(&generator, 4).username.as_deref(), Some("d-4"), "the rule: the token is the name");
        let hono = FleetWire::new(ProfileName::Hono, &generator.names, "127.0.0.1", None);
        let id = hono.identity(&generator, 2);
        assert_eq!((id.username.as_deref(), id.password.as_deref()), (Some("d-2@DEFAULT_TENANT"), Some("d-2")));
        let azure = FleetWire::new(ProfileName::AzureIotHub, &generator.names, "hub.example", None);
        let id = azure.identity(&generator, 1);
        assert_eq!(id.username.as_deref(), Some("hub.example/d-1/?api-version=2021-04-12"));
        assert!(id.password.is_some_and(|t| t.starts_with("SharedAccessSignature sr=hub.example%2Fdevices%2Fd-1&")));

        let mut listed = crate::device::plain_generator();
        listed.names = identities(
            "name,tenant,auth_id,password,cert,key_file\nm-1,t1,a1,pw1,/c/m-1.pem,/k/m-1.pem\nm-2,t2,a2,pw2,/c/m-2.pem,/k/m-2.pem\n",
        );
        let hono = FleetWire::new(ProfileName::Hono, &listed.names, "127.0.0.1", None);
        let id = hono.identity(&listed, 0);
        assert_eq!(id.device, "m-1");
        assert_eq!((id.username.as_deref(), id.password.as_deref()), (Some("a1@t1"), Some("pw1")));
        assert_eq!(id.cert.as_deref(), Some(std::path::Path::new("/c/m-1.pem")));
        assert_eq!(id.key_file.as_deref(), Some(std::path::Path::new("/k/m-1.pem")));
        let id = hono.identity(&listed, 1);
        assert_eq!((id.device.as_str(), id.username.as_deref()), ("m-2", Some("a2@t2")), "its own row");
        assert_eq!(id.cert.as_deref(), Some(std::path::Path::new("/c/m-2.pem")));
    }

    #[test]
    fn every_profile_has_http_routes_but_mqtt_s() {
        for p in ProfileName::ALL {
            let expected = if p == ProfileName::Mqtt { Protocol::Mqtt } else { Protocol::Http };
            assert_eq!(p.protocols(), [expected], "{p}");
        }
    }

    #[test]
    fn a_destination_names_paths_or_topics() {
        let d =
            destination("http://h:1", "/SendHeartbeat", [ProfileName::SagemakerEdge, ProfileName::Hono].into_iter());
        assert_eq!(d, "http://h:1/SendHeartbeat and the hono profile paths");
        assert_eq!(
            destination("mqtt://b:1883", "/x", [ProfileName::Mqtt].into_iter()),
            "mqtt://b:1883 (mqtt profile topics)"
        );
    }

    #[test]
    fn every_profile_name_reads_as_it_prints() {
        for p in ProfileName::ALL {
            let read: ProfileName = serde_json::from_value(serde_json::json!(p.to_string())).unwrap();
            assert_eq!(read, p);
        }
        assert!(check_plain_name("cam 1").is_err() && check_plain_name("cam\"1").is_err());
        assert!(check_plain_name("plant-3/cam_1.a").is_ok());
    }

    /// The first heartbeat of device `index` of the plain fleet under
    /// `profile`, with its own identities if given.
    pub(crate) fn first(profile: ProfileName, names: Option<DeviceNames>, index: u64) -> Outgoing {
        let mut generator = crate::device::plain_generator();
        if let Some(names) = names {
            generator.names = names;
        }
        let wire = FleetWire::new(profile, &generator.names, "127.0.0.1", None);
        let mut device = generator.device(index);
        wire.next_heartbeat(&generator, &mut device, 1_700_000_000_123, &mut Scratch::default(), &mut Vec::new())
    }

    /// Identities from `text` (a CSV file's contents).
    pub(crate) fn identities(text: &str) -> DeviceNames {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "fleetstorm-wire-{}-{}.csv",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, text).unwrap();
        let ids = Identities::load(&path, |_| Ok(())).unwrap();
        std::fs::remove_file(&path).unwrap();
        DeviceNames::Listed(Arc::new(ids))
    }
}
