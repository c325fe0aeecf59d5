//! `serve`'s side of the device profiles other than SendHeartbeat: which
//! paths are whose, the devices it knows for each ([`Known`]), and the
//! dispatch of a request to its profile's check; for the `mqtt` profile,
//! the topic templates its sessions' messages are held to.

use std::sync::Arc;

use http::{Method, StatusCode};

pub use super::answer::{Accepted, DeviceRequest, Refused};
pub use super::known::{Found, Known};
use super::{ProfileName, aws_shadow, azure, hono, thingsboard};
use crate::identities::{Identities, IdentitiesError};

/// A request on one of a profile's paths, with what the path says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Thingsboard {
        token: String,
    },
    Hono,
    AzureIotHub {
        device: String,
    },
    AwsIotShadow {
        thing: String,
    },
    /// The custom wire of index `wire`.
    Custom {
        wire: usize,
    },
}

/// The profiles `serve` answers beside SendHeartbeat, and the devices it
/// knows for each.
#[derive(Default)]
pub struct ServeProfiles {
    enabled: Vec<ProfileName>,
    known: Known,
    /// Custom fleets' wires (the built-in backend's: they come from the
    /// scenario).
    custom: Vec<Arc<super::custom::CustomWire>>,
    /// The `mqtt` profile's topic templates (the built-in backend's come
    /// from the scenario's fleets; `serve --mqtt-topic` gives one).
    mqtt: Vec<Arc<super::mqtt::MqttWire>>,
}

impl std::fmt::Debug for ServeProfiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeProfiles")
            .field("enabled", &self.enabled)
            .field("known", &self.known)
            .field("custom", &self.custom.len())
            .field("mqtt", &self.mqtt.iter().map(|w| w.template()).collect::<Vec<_>>())
            .finish()
    }
}

impl ServeProfiles {
    /// Answers `enabled`'s paths (SendHeartbeat's is always answered).
    pub fn new(enabled: Vec<ProfileName>) -> ServeProfiles {
        ServeProfiles { enabled, known: Known::default(), custom: Vec::new(), mqtt: Vec::new() }
    }

    /// The devices known, for the profiles' checks.
    pub fn known(&self) -> &Known {
        &self.known
    }

    /// Verifies the SigV4 signatures of shadow requests with `signer`'s
    /// credentials (else only their shape is checked).
    pub fn set_sigv4(&mut self, signer: crate::transport::http::sigv4::Signer) {
        self.known.set_sigv4(signer);
    }

    /// Answers a custom fleet's requests (by its method and path template).
    pub fn add_custom(&mut self, wire: Arc<super::custom::CustomWire>) {
        self.enable(ProfileName::Custom);
        self.custom.push(wire);
    }

    /// Holds the `mqtt` profile's messages to `wire`'s topic (as well as
    /// to those already added).
    pub fn add_mqtt(&mut self, wire: Arc<super::mqtt::MqttWire>) {
        self.enable(ProfileName::Mqtt);
        if !self.mqtt.contains(&wire) {
            self.mqtt.push(wire);
        }
    }

    /// Whether serve listens for MQTT sessions (an `mqtt` fleet, or
    /// `--profile mqtt`).
    pub fn speaks_mqtt(&self) -> bool {
        self.enabled.contains(&ProfileName::Mqtt)
    }

    /// The `mqtt` profile's topic templates: the default one when none was
    /// added.
    pub fn mqtt_wires(&self) -> std::borrow::Cow<'_, [Arc<super::mqtt::MqttWire>]> {
        if self.mqtt.is_empty() {
            std::borrow::Cow::Owned(vec![Arc::default()])
        } else {
            std::borrow::Cow::Borrowed(&self.mqtt)
        }
    }

    /// Answers `profile`'s paths too.
    pub fn enable(&mut self, profile: ProfileName) {
        if !self.enabled.contains(&profile) {
            self.enabled.push(profile);
        }
    }

    /// Answers `profile`'s paths, letting in only `ids`' devices there.
    pub fn add_identities(&mut self, profile: ProfileName, ids: Arc<Identities>) -> Result<(), IdentitiesError> {
        self.known.add_identities(profile, ids)?;
        self.enable(profile);
        Ok(())
    }

    /// Whose request `method` on `path` is, among the enabled profiles.
    pub fn route(&self, method: &Method, path: &str) -> Option<Route> {
        if let Some(wire) = self.custom.iter().position(|c| c.matches(method, path)) {
            return Some(Route::Custom { wire });
        }
        let on = |p| self.enabled.contains(&p);
        if on(ProfileName::Thingsboard)
            && let Some(token) = thingsboard::route(path)
        {
            return Some(Route::Thingsboard { token });
        }
        if on(ProfileName::Hono) && hono::route(path) {
            return Some(Route::Hono);
        }
        if on(ProfileName::AzureIotHub)
            && let Some(device) = azure::route(path)
        {
            return Some(Route::AzureIotHub { device });
        }
        if on(ProfileName::AwsIotShadow)
            && let Some(thing) = aws_shadow::route(path)
        {
            return Some(Route::AwsIotShadow { thing });
        }
        None
    }

    /// `serve`'s answer to a request on `route`: whom it came from, or
    /// why it is refused.
    pub fn check(&self, route: &Route, r: &DeviceRequest<'_>) -> Result<Accepted, Refused> {
        match route {
            Route::Thingsboard { token } => thingsboard::check(&self.known, r.method, token, r.headers, r.body),
            Route::Hono => hono::check(&self.known, r.method, r.headers, r.body),
            Route::AzureIotHub { device } => {
                azure::check(&self.known, r.method, device, r.query, r.host, r.headers, r.body, r.now_s)
            }
            Route::AwsIotShadow { thing } => {
                let uri = http::Uri::try_from(format!("http://{}{}", r.authority, r.path_and_query))
                    .map_err(|_| Refused::text(StatusCode::BAD_REQUEST, "not a request target"))?;
                aws_shadow::check(&self.known, r.method, thing, &uri, r.headers, r.body)
            }
            Route::Custom { wire } => {
                let path = r.path_and_query.split('?').next().unwrap_or_default();
                self.custom[*wire].check(&self.known, path, r.headers, r.body)
            }
        }
    }
}
