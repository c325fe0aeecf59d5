//! Azure IoT Hub's device credential: the shared access signature (SAS)
//! token a device sends as `Authorization` with each device-to-cloud
//! message. From the device's key (base64), the resource URI
//! (`{hub}.azure-devices.net/devices/{id}`) and an expiry (epoch seconds):
//!
//! ```text
//! sr  = percent-encode(resource URI)           (all but A-Z a-z 0-9 - . _ ~)
//! sig = percent-encode(base64(HMAC-SHA256(base64-decode(key), sr + "\n" + expiry)))
//! SharedAccessSignature sr={sr}&sig={sig}&se={expiry}[&skn={key name}]
//! ```
//!
//! This is what the Azure IoT device SDK for Python builds
//! (`azure.iot.device.common.auth.sastoken`); its tokens for fixed inputs
//! are this module's test vectors.
//!
//! The `azure-iot-hub` profile sends each device's telemetry as a
//! device-to-cloud message with such a token, good for an hour from the
//! heartbeat (so never an expired one), and the fleet's name as the
//! application property `iothub-app-fleet`:
//!
//! ```text
//! POST /devices/{device id}/messages/events?api-version=2021-04-12
//! Authorization: SharedAccessSignature sr={host}%2Fdevices%2F{device id}&sig=...&se=...
//! {"agent_version":"1.0","fleet_name":"f","device_name":"d-1","cpu-utilization":12.5,...,"ts":1700000000123}
//! ```
//!
//! IoT Hub answers 204 No Content; 401 to a missing, wrong or expired
//! token; 400 without `api-version`. `serve` recomputes the signature from
//! the device's key and checks the resource and the expiry.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName, Method, StatusCode};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use sha2::Sha256;

use super::answer::{Accepted, Refused, azure_error, header, json_object};
use super::known::Known;
use super::parts::{Credentials, Envelope, device_name, header_value, http_route};
use super::profile::ProfileName;
use crate::device::{Device, FleetGenerator};
use crate::transport::HttpRoute;

/// The identities column of a device's key (base64).
pub const KEY: &str = "key";
/// The API version the messages are sent with.
pub const API_VERSION: &str = "2021-04-12";
/// How long a token the devices send is good for.
pub const TOKEN_LIFETIME_S: u64 = 3600;
const FLEET_PROPERTY: HeaderName = HeaderName::from_static("iothub-app-fleet");

/// What stays as it is in a SAS token's parts: the unreserved characters,
/// as Python's `urllib.parse.quote(s, safe="")` keeps them.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// A device key that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SasError {
    #[error("the device key is not base64")]
    KeyNotBase64,
    #[error("the device key is empty")]
    EmptyKey,
}

/// The `Authorization` value for `resource_uri` until `expiry` (epoch
/// seconds), signed with the base64 `key`; `key_name` for a shared access
/// policy's key rather than the device's own.
pub fn sas_token(resource_uri: &str, key: &str, expiry: u64, key_name: Option<&str>) -> Result<String, SasError> {
    let resource = utf8_percent_encode(resource_uri, UNRESERVED).to_string();
    let signature = signature(&resource, key, expiry)?;
    let signature = utf8_percent_encode(&signature, UNRESERVED);
    let mut token = format!("SharedAccessSignature sr={resource}&sig={signature}&se={expiry}");
    if let Some(name) = key_name {
        token.push_str("&skn=");
        token.extend(utf8_percent_encode(name, UNRESERVED));
    }
    Ok(token)
}

/// The base64 HMAC-SHA256 of `"{encoded resource}\n{expiry}"` under the
/// base64 `key`.
fn signature(encoded_resource: &str, key: &str, expiry: u64) -> Result<String, SasError> {
    let key = base64::engine::general_purpose::STANDARD.decode(key.trim()).map_err(|_| SasError::KeyNotBase64)?;
    if key.is_empty() {
        return Err(SasError::EmptyKey);
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|_| SasError::EmptyKey)?;
    mac.update(format!("{encoded_resource}\n{expiry}").as_bytes());
    Ok(base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
}

/// Refuses identities whose `key` is not a base64 key.
pub(crate) fn check_keys(ids: &crate::identities::Identities) -> Result<(), crate::identities::IdentitiesError> {
    let Some(column) = ids.column(KEY) else { return Ok(()) };
    for row in 0..ids.len() {
        if let Err(e) = signature("", ids.get(row, column), 0) {
            return Err(ids.credential_error(row, column, e.to_string()));
        }
    }
    Ok(())
}

/// The key of a device with no identities file: the base64 of its id.
fn rule_key(device: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(device)
}

/// IoT Hub's rule for device ids: 1 to 128 ASCII letters, digits and
/// `- . + % _ # * ? ! ( ) , : = @ $ '`.
pub(crate) fn check_device_id(id: &str) -> Result<(), String> {
    super::profile::check_name(id, 128, "an IoT Hub device id", |b| {
        b.is_ascii_alphanumeric() || b"-.+%_#*?!(),:=@$'".contains(&b)
    })
}

/// A fleet's credentials on its IoT hub: its devices' keys and the hub's
/// host name, the two that each device's SAS token is signed from.
#[derive(Debug, Clone)]
pub struct HubCredentials {
    credentials: Credentials,
    host: String,
}

impl HubCredentials {
    pub(crate) fn new(credentials: Credentials, host: &str) -> HubCredentials {
        HubCredentials { credentials, host: host.to_string() }
    }

    /// The request of `device`'s next heartbeat, its body written to `body`.
    pub(crate) fn request(
        &self,
        generator: &FleetGenerator,
        device: &mut Device,
        now_ms: u64,
        body: &mut Vec<u8>,
    ) -> HttpRoute {
        let ts = Envelope::FLAT.write(generator, device, now_ms, body);
        let id = device_name(generator, device.index());
        let key = match self.credentials.listed(device.index(), 0) {
            Some(key) => key.to_string(),
            None => rule_key(&id),
        };
        let expiry = ts / 1000 + TOKEN_LIFETIME_S;
        // The scenario checked every key is base64; one that still is not
        // sends no credential, which the hub refuses.
        let token = sas_token(&format!("{}/devices/{id}", self.host), &key, expiry, None).unwrap_or_default();
        let segment = utf8_percent_encode(&id, super::parts::SEGMENT);
        http_route(
            format!("/devices/{segment}/messages/events?api-version={API_VERSION}"),
            vec![(AUTHORIZATION, header_value(&token)), (FLEET_PROPERTY, header_value(&generator.profile.fleet_name))],
        )
    }
}

impl HubCredentials {
    /// Device `index`'s (id `device`) login for a session at `now_ms`: the
    /// hub's user name `{hub}/{device}/?api-version=...` and a SAS token
    /// for the device, good for [`TOKEN_LIFETIME_S`] from then.
    pub(crate) fn login(&self, device: &str, index: u64, now_ms: u64) -> (String, String) {
        let key = match self.credentials.listed(index, 0) {
            Some(key) => key.to_string(),
            None => rule_key(device),
        };
        let expiry = now_ms / 1000 + TOKEN_LIFETIME_S;
        let token = sas_token(&format!("{}/devices/{device}", self.host), &key, expiry, None).unwrap_or_default();
        (format!("{}/{device}/?api-version={API_VERSION}", self.host), token)
    }
}

/// The device id in a path of this profile's, if it is one:
/// `/devices/{id}/messages/events`.
pub(crate) fn route(path: &str) -> Option<String> {
    let id = path.strip_prefix("/devices/")?.strip_suffix("/messages/events")?;
    (!id.is_empty() && !id.contains('/')).then(|| percent_decode_str(id).decode_utf8_lossy().into_owned())
}

/// A SAS token's parts: the encoded resource, the signature (decoded) and
/// the expiry.
fn token_parts(token: &str) -> Option<(&str, String, u64)> {
    let fields = token.strip_prefix("SharedAccessSignature ")?;
    let (mut sr, mut sig, mut se) = (None, None, None);
    for pair in fields.split('&') {
        match pair.split_once('=')? {
            ("sr", v) => sr = Some(v),
            ("sig", v) => sig = Some(percent_decode_str(v).decode_utf8().ok()?.into_owned()),
            ("se", v) => se = Some(v.parse().ok()?),
            ("skn", _) => {}
            _ => return None,
        }
    }
    Some((sr?, sig?, se?))
}

/// `serve`'s answer to a device-to-cloud message from `device`, sent to
/// `host` at `now_s` (epoch seconds).
#[allow(clippy::too_many_arguments)]
pub(crate) fn check(
    profiles: &Known,
    method: &Method,
    device: &str,
    query: Option<&str>,
    host: &str,
    headers: &HeaderMap,
    body: &[u8],
    now_s: u64,
) -> Result<Accepted, Refused> {
    if method != Method::POST {
        return Err(Refused::not_allowed("POST"));
    }
    if !query.unwrap_or_default().split('&').any(|p| p.starts_with("api-version=") && p.len() > 12) {
        return Err(azure_error(StatusCode::BAD_REQUEST, "InvalidProtocolVersion", "api-version is missing"));
    }
    let unauthorized = |why: &str| azure_error(StatusCode::UNAUTHORIZED, "IotHubUnauthorizedAccess", why);
    let token = header(headers, AUTHORIZATION.as_str()).ok_or_else(|| unauthorized("no SharedAccessSignature"))?;
    let (sr, sig, se) = token_parts(token).ok_or_else(|| unauthorized("not a SharedAccessSignature"))?;
    if se <= now_s {
        return Err(unauthorized("the token has expired"));
    }
    let resource = utf8_percent_encode(&format!("{host}/devices/{device}"), UNRESERVED).to_string();
    if !sr.eq_ignore_ascii_case(&resource) {
        return Err(unauthorized("the token is for another resource"));
    }
    let (name, key) = match profiles.find(ProfileName::AzureIotHub, device) {
        Some(found) => (found.name().to_string(), found.field(0).to_string()),
        None if !profiles.has_identities(ProfileName::AzureIotHub) => (device.to_string(), rule_key(device)),
        None => return Err(unauthorized("no such device")),
    };
    if signature(sr, &key, se).ok().as_deref() != Some(sig.as_str()) {
        return Err(unauthorized("the signature does not match the device's key"));
    }
    let state = json_object(body).map_err(|e| azure_error(StatusCode::BAD_REQUEST, "ArgumentInvalid", &e))?;
    Ok(Accepted::from_state(name, &state, StatusCode::NO_CONTENT))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{first, identities};
    use super::*;
    use crate::wire::serve::ServeProfiles;

    /// Tokens the Azure IoT device SDK for Python (azure-iot-device 2.x)
    /// builds for the same inputs:
    ///
    /// ```text
    /// from azure.iot.device.common.auth.sastoken import RenewableSasToken
    /// from azure.iot.device.common.auth.signing_mechanism import SymmetricKeySigningMechanism
    /// t = RenewableSasToken(uri, SymmetricKeySigningMechanism(KEY), key_name=..., ttl=3600)
    /// t._expiry_time = 1767225600; print(t._build_token())
    /// ```
    #[test]
    fn tokens_equal_the_azure_sdk_s_for_the_same_key_resource_and_expiry() {
        const KEY: &str = "ZmxlZXRzdG9ybSB0ZXN0IGRldmljZSBrZXkgMDEyMzQ1Njc4OQ==";
        assert_eq!(
            sas_token("myhub.azure-devices.net/devices/cam-00042", KEY, 1767225600, None).unwrap(),
            "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fcam-00042\
             &sig=Xh6QGLwAw%2FpQpvMo0vDJnhXpweglLdeVlAAVmw2Z%2BOA%3D&se=1767225600"
        );
        assert_eq!(
            sas_token("myhub.azure-devices.net/devices/cam 42+x", KEY, 1767225600, Some("device")).unwrap(),
            "SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fcam%2042%2Bx\
             &sig=9sw5ctIWHp79JuVUXSBr9fySTMhPl8NNuc6yrCUr7AA%3D&se=1767225600&skn=device"
        );
    }

    #[test]
    fn a_key_that_is_not_one_is_refused_without_showing_it() {
        let e = sas_token("h/devices/d", "not base64!", 1, None).unwrap_err();
        assert_eq!(e, SasError::KeyNotBase64);
        assert!(!e.to_string().contains("not base64!"));
        assert_eq!(sas_token("h/devices/d", "", 1, None).unwrap_err(), SasError::EmptyKey);
    }

    fn auth(out: &crate::transport::Outgoing) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in &out.route.http().unwrap().headers {
            h.insert(n.clone(), v.clone());
        }
        h
    }

    #[test]
    fn a_device_sends_a_message_with_a_token_serve_recomputes() {
        let now_s = 1_700_000_000;
        let out = first(ProfileName::AzureIotHub, None, 5);
        let a = out.route.http().unwrap();
        assert_eq!(a.target.as_str(), "/devices/d-5/messages/events?api-version=2021-04-12");
        let token = auth(&out)[AUTHORIZATION].to_str().unwrap().to_string();
        let expiry = now_s + TOKEN_LIFETIME_S;
        assert_eq!(token, sas_token("127.0.0.1/devices/d-5", &rule_key("d-5"), expiry, None).unwrap());
        assert_eq!(auth(&out)["iothub-app-fleet"], "f");

        let open = ServeProfiles::new(vec![ProfileName::AzureIotHub]);
        let q = Some("api-version=2021-04-12");
        let device = route(a.target.path()).unwrap();
        let ok = check(open.known(), &Method::POST, &device, q, "127.0.0.1", &auth(&out), &out.body, now_s).unwrap();
        assert_eq!((ok.status, ok.device.as_str(), ok.fleet.as_str()), (StatusCode::NO_CONTENT, "d-5", "f"));
        let refused = |host: &str, query, now, headers: &HeaderMap| {
            check(open.known(), &Method::POST, &device, query, host, headers, &out.body, now).unwrap_err()
        };
        assert!(refused("otherhub", q, now_s, &auth(&out)).unauthorized(), "another resource");
        assert!(refused("127.0.0.1", q, expiry, &auth(&out)).unauthorized(), "expired");
        assert!(refused("127.0.0.1", q, now_s, &HeaderMap::new()).unauthorized(), "no token");
        assert_eq!(refused("127.0.0.1", None, now_s, &auth(&out)).status, StatusCode::BAD_REQUEST);
        // A device key from a file: the token verifies with that key only.
        let names = identities("name,key\ncam-1,ZmxlZXRzdG9ybSB0ZXN0IGRldmljZSBrZXkgMDEyMzQ1Njc4OQ==\n");
        let out = first(ProfileName::AzureIotHub, Some(names.clone()), 0);
        let mut known = ServeProfiles::new(vec![]);
        known.add_identities(ProfileName::AzureIotHub, names.identities().unwrap().clone()).unwrap();
        assert!(check(known.known(), &Method::POST, "cam-1", q, "127.0.0.1", &auth(&out), &out.body, now_s).is_ok());
        let other = identities("name,key\ncam-1,b3RoZXIga2V5\n");
        let mut wrong = ServeProfiles::new(vec![]);
        wrong.add_identities(ProfileName::AzureIotHub, other.identities().unwrap().clone()).unwrap();
        let e =
            check(wrong.known(), &Method::POST, "cam-1", q, "127.0.0.1", &auth(&out), &out.body, now_s).unwrap_err();
        assert!(e.unauthorized() && e.body.contains("IotHubUnauthorizedAccess"), "{e:?}");
        assert!(check_device_id("cam-1:a.b").is_ok() && check_device_id("cam 1").is_err());
    }
}
