//! `serve`'s side of the device profiles other than SendHeartbeat: which
//! paths are whose, the devices it knows (from identities files, or the
//! rule of the module docs above when it has none), and the shapes its
//! answers take. Each profile's module checks its own requests; this one
//! holds what they share.

use std::sync::Arc;

use http::{HeaderValue, Method, StatusCode};
use serde_json::{Map, Value, json};

use super::{ProfileName, aws_shadow, azure, hono, thingsboard};
use crate::identities::{Identities, IdentitiesError};

/// A request `serve` took: the device, its fleet and agent version (from
/// the body, when it is a fleetstorm state object), and the status the
/// profile answers success with.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    pub device: String,
    pub fleet: String,
    pub agent_version: String,
    pub status: StatusCode,
    /// The state document to answer with (a shadow's), if the profile
    /// answers one.
    pub document: Option<Value>,
}

impl Accepted {
    /// The device's request, its fleet and agent version read from the
    /// state object if the body is one (`fleet_name`, `agent_version`),
    /// else `-`.
    pub(crate) fn from_state(device: String, state: &Map<String, Value>, status: StatusCode) -> Accepted {
        let text = |key: &str| state.get(key).and_then(Value::as_str).unwrap_or("-").to_string();
        Accepted { device, fleet: text("fleet_name"), agent_version: text("agent_version"), status, document: None }
    }
}

/// A request `serve` refused, with the status and body the real service
/// answers it with.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub body: String,
    /// `Allow`, for a 405.
    pub allow: Option<&'static str>,
    /// `x-amzn-ErrorType`, for the AWS APIs' errors.
    pub error_type: Option<&'static str>,
}

impl Refused {
    pub(crate) fn text(status: StatusCode, message: &str) -> Refused {
        Refused {
            status,
            content_type: "text/plain; charset=utf-8",
            body: message.to_string(),
            allow: None,
            error_type: None,
        }
    }

    pub(crate) fn json(status: StatusCode, body: Value) -> Refused {
        Refused { status, content_type: "application/json", body: body.to_string(), allow: None, error_type: None }
    }

    pub(crate) fn not_allowed(allow: &'static str) -> Refused {
        Refused { allow: Some(allow), ..Refused::text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed") }
    }

    /// Whether the refusal is for the credentials (401, or 403 for a
    /// signature).
    pub fn unauthorized(&self) -> bool {
        matches!(self.status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)
    }
}

/// A request on one of a profile's paths, with what the path says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Thingsboard { token: String },
    Hono,
    AzureIotHub { device: String },
    AwsIotShadow { thing: String },
}

impl Route {
    pub fn profile(&self) -> ProfileName {
        match self {
            Route::Thingsboard { .. } => ProfileName::Thingsboard,
            Route::Hono => ProfileName::Hono,
            Route::AzureIotHub { .. } => ProfileName::AzureIotHub,
            Route::AwsIotShadow { .. } => ProfileName::AwsIotShadow,
        }
    }
}

/// One identities file, indexed by one of its columns.
struct Index {
    ids: Arc<Identities>,
    /// The column looked up, and the profile's columns in the file.
    key: usize,
    columns: Vec<usize>,
    /// Row numbers sorted by the key column.
    order: Vec<u32>,
}

impl Index {
    fn find(&self, key: &str) -> Option<Found<'_>> {
        let at = self.order.binary_search_by(|&row| self.ids.get(row as usize, self.key).cmp(key)).ok()?;
        Some(Found { index: self, row: self.order[at] as usize })
    }
}

/// A device found in an identities file.
pub struct Found<'a> {
    index: &'a Index,
    row: usize,
}

impl Found<'_> {
    pub fn name(&self) -> &str {
        self.index.ids.name(self.row)
    }

    /// Its field `k` of the profile's [`ProfileName::columns`].
    pub fn field(&self, k: usize) -> &str {
        self.index.ids.get(self.row, self.index.columns[k])
    }
}

/// The profiles `serve` answers beside SendHeartbeat, and the devices it
/// knows for each.
#[derive(Default)]
pub struct ServeProfiles {
    enabled: Vec<ProfileName>,
    known: Vec<(ProfileName, Index)>,
    /// The credentials shadow requests' SigV4 signatures are checked with.
    sigv4: Option<crate::transport::sigv4::Signer>,
}

impl std::fmt::Debug for ServeProfiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let known: Vec<_> = self.known.iter().map(|(p, i)| (p, i.ids.len())).collect();
        f.debug_struct("ServeProfiles").field("enabled", &self.enabled).field("known", &known).finish()
    }
}

impl ServeProfiles {
    /// Answers `enabled`'s paths (SendHeartbeat's is always answered).
    pub fn new(enabled: Vec<ProfileName>) -> ServeProfiles {
        ServeProfiles { enabled, known: Vec::new(), sigv4: None }
    }

    /// Verifies the SigV4 signatures of shadow requests with `signer`'s
    /// credentials (else only their shape is checked).
    pub fn set_sigv4(&mut self, signer: crate::transport::sigv4::Signer) {
        self.sigv4 = Some(signer);
    }

    pub fn sigv4(&self) -> Option<&crate::transport::sigv4::Signer> {
        self.sigv4.as_ref()
    }

    /// Answers `profile`'s paths too.
    pub fn enable(&mut self, profile: ProfileName) {
        if !self.enabled.contains(&profile) {
            self.enabled.push(profile);
        }
    }

    pub fn enabled(&self) -> &[ProfileName] {
        &self.enabled
    }

    /// Knows `ids`' devices for `profile` (and answers its paths): only
    /// they are let in, once a profile has any.
    pub fn add_identities(&mut self, profile: ProfileName, ids: Arc<Identities>) -> Result<(), IdentitiesError> {
        ids.require(profile.columns(), &format!("the {profile} profile"))?;
        let columns: Vec<usize> = profile.columns().iter().filter_map(|c| ids.column(c)).collect();
        // Looked up by: the token; the Hono auth-id; the Azure device id.
        let key = match profile {
            ProfileName::Thingsboard => columns[0],
            ProfileName::Hono => columns[1],
            ProfileName::AzureIotHub | ProfileName::AwsIotShadow | ProfileName::SagemakerEdge => 0,
        };
        let mut order: Vec<u32> = (0..ids.len() as u32).collect();
        order.sort_unstable_by(|&a, &b| ids.get(a as usize, key).cmp(ids.get(b as usize, key)));
        self.enable(profile);
        self.known.push((profile, Index { ids, key, columns, order }));
        Ok(())
    }

    /// Whether any identities were given for `profile`.
    pub fn has_identities(&self, profile: ProfileName) -> bool {
        self.known.iter().any(|(p, _)| *p == profile)
    }

    /// The device of `profile` whose key (its token, Hono auth-id or
    /// Azure device id; see [`Self::add_identities`]) is `key`, in the
    /// first file that has it.
    pub fn find(&self, profile: ProfileName, key: &str) -> Option<Found<'_>> {
        self.known.iter().filter(|(p, _)| *p == profile).find_map(|(_, index)| index.find(key))
    }

    /// Whose path `path` is, among the enabled profiles.
    pub fn route(&self, path: &str) -> Option<Route> {
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
            Route::Thingsboard { token } => thingsboard::check(self, r.method, token, r.headers, r.body),
            Route::Hono => hono::check(self, r.method, r.headers, r.body),
            Route::AzureIotHub { device } => {
                azure::check(self, r.method, device, r.query, r.host, r.headers, r.body, r.now_s)
            }
            Route::AwsIotShadow { thing } => {
                let uri = http::Uri::try_from(format!("http://{}{}", r.authority, r.path_and_query))
                    .map_err(|_| Refused::text(StatusCode::BAD_REQUEST, "not a request target"))?;
                aws_shadow::check(self, r.method, thing, &uri, r.headers, r.body)
            }
        }
    }
}

/// A device's request as `serve` got it.
#[derive(Debug, Clone, Copy)]
pub struct DeviceRequest<'a> {
    pub method: &'a Method,
    /// The query string, if any.
    pub query: Option<&'a str>,
    /// The Host (or HTTP/2 authority), without the port.
    pub host: &'a str,
    /// The same with the port, as the request gave it.
    pub authority: &'a str,
    pub path_and_query: &'a str,
    pub headers: &'a http::HeaderMap,
    pub body: &'a [u8],
    /// When it came, in epoch seconds.
    pub now_s: u64,
}

/// A body that must be one JSON object.
pub(crate) fn json_object(body: &[u8]) -> Result<Map<String, Value>, String> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("the body is JSON, but not an object".into()),
        Err(e) => Err(format!("the body is not JSON: {e}")),
    }
}

/// The value of header `name` as text, if present and text.
pub(crate) fn header<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok())
}

/// An error object as Azure IoT Hub answers it.
pub(crate) fn azure_error(status: StatusCode, code: &str, message: &str) -> Refused {
    Refused::json(status, json!({"Message": format!("ErrorCode:{code};{message}"), "ExceptionMessage": ""}))
}
