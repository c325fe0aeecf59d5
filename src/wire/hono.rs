//! The `hono` profile: Eclipse Hono's HTTP protocol adapter
//! (`../shared/spec/device-profiles.md`). A device posts telemetry with
//! HTTP Basic credentials, its auth-id at its tenant and its password:
//!
//! ```text
//! POST /telemetry
//! Authorization: Basic base64("{auth-id}@{tenant}:{password}")
//! Content-Type: application/json
//! QoS-Level: 1
//! {"agent_version":"1.0","fleet_name":"f","device_name":"d-1","cpu-utilization":12.5,...,"ts":1700000000123}
//! ```
//!
//! The adapter answers 202 Accepted (200 when a command rides back on the
//! answer, which fleetstorm's devices do not wait for); 400 to a payload
//! it cannot take, 401 to credentials it does not know, 405 to another
//! method, 413, 429 (the tenant's message limit) and 503 (no consumer
//! downstream) under load.

use base64::Engine as _;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

use super::answer::{Accepted, Refused, header, json_object};
use super::known::Known;
use super::parts::{Credentials, Envelope, device_name, header_value, http_route};
use super::profile::ProfileName;
use crate::device::{Device, FleetGenerator};
use crate::transport::HttpRoute;

/// The identities columns of a device's tenant, auth-id and password.
pub const TENANT: &str = "tenant";
pub const AUTH_ID: &str = "auth_id";
pub const PASSWORD: &str = "password";

/// The tenant of devices with no identities file, as in Hono's sandbox.
pub const DEFAULT_TENANT: &str = "DEFAULT_TENANT";

/// `QoS-Level: 1`: the adapter answers once the message is accepted
/// downstream (at least once).
const QOS_LEVEL: HeaderName = HeaderName::from_static("qos-level");

/// The request of `device`'s next heartbeat, its body written to `body`.
pub(crate) fn request(
    credentials: &Credentials,
    generator: &FleetGenerator,
    device: &mut Device,
    now_ms: u64,
    body: &mut Vec<u8>,
) -> HttpRoute {
    Envelope::FLAT.write(generator, device, now_ms, body);
    let index = device.index();
    let user = match (credentials.listed(index, 0), credentials.listed(index, 1), credentials.listed(index, 2)) {
        (Some(tenant), Some(auth_id), Some(password)) => format!("{auth_id}@{tenant}:{password}"),
        _ => {
            let name = device_name(generator, index);
            format!("{name}@{DEFAULT_TENANT}:{name}")
        }
    };
    let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(user));
    http_route(
        "/telemetry".to_string(),
        vec![(AUTHORIZATION, header_value(&basic)), (QOS_LEVEL, HeaderValue::from_static("1"))],
    )
}

/// Device `index`'s (named `device`) login for a session: its user name
/// `{auth-id}@{tenant}` and its password, from its identities row or the
/// rule.
pub(crate) fn login(credentials: &Credentials, device: &str, index: u64) -> (String, String) {
    match (credentials.listed(index, 0), credentials.listed(index, 1), credentials.listed(index, 2)) {
        (Some(tenant), Some(auth_id), Some(password)) => (format!("{auth_id}@{tenant}"), password.to_string()),
        _ => (format!("{device}@{DEFAULT_TENANT}"), device.to_string()),
    }
}

/// Whether `path` is one of the adapter's device paths.
pub(crate) fn route(path: &str) -> bool {
    matches!(path, "/telemetry" | "/event")
}

/// The Basic credentials of a request: auth-id, tenant and password.
fn basic(headers: &HeaderMap) -> Option<(String, String, String)> {
    let encoded = header(headers, AUTHORIZATION.as_str())?.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    let (auth_id, tenant) = user.rsplit_once('@')?;
    (!auth_id.is_empty() && !tenant.is_empty()).then(|| (auth_id.into(), tenant.into(), password.into()))
}

/// `serve`'s answer to a request on the adapter's paths.
pub(crate) fn check(profiles: &Known, method: &Method, headers: &HeaderMap, body: &[u8]) -> Result<Accepted, Refused> {
    if method != Method::POST {
        return Err(Refused::not_allowed("POST"));
    }
    let unauthorized = || Refused::text(StatusCode::UNAUTHORIZED, "Bad credentials");
    let (auth_id, tenant, password) = basic(headers).ok_or_else(unauthorized)?;
    // A device in the identities with this tenant and password; without
    // any, the rule: the password is the auth-id.
    let device = match profiles.find(ProfileName::Hono, &auth_id) {
        Some(found) if found.field(0) == tenant && found.field(2) == password => found.name().to_string(),
        None if !profiles.has_identities(ProfileName::Hono) && password == auth_id => auth_id,
        _ => return Err(unauthorized()),
    };
    let json = header(headers, CONTENT_TYPE.as_str()).is_some_and(|t| t.starts_with("application/json"));
    if !json {
        return Err(Refused::text(StatusCode::BAD_REQUEST, "the payload's content type must be application/json"));
    }
    let state = json_object(body).map_err(|e| Refused::text(StatusCode::BAD_REQUEST, &e))?;
    Ok(Accepted::from_state(device, &state, StatusCode::ACCEPTED))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{first, identities};
    use super::*;
    use crate::wire::serve::ServeProfiles;

    fn user(out: &crate::transport::Outgoing) -> String {
        let a = out.route.http().unwrap();
        let auth = a.headers.iter().find(|(n, _)| n == AUTHORIZATION).unwrap().1.to_str().unwrap();
        let encoded = auth.strip_prefix("Basic ").unwrap();
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(encoded).unwrap()).unwrap()
    }

    #[test]
    fn a_device_posts_its_state_with_its_basic_credentials() {
        let out = first(ProfileName::Hono, None, 2);
        let a = out.route.http().unwrap();
        assert_eq!(a.target.as_str(), "/telemetry");
        assert!(a.headers.iter().any(|(n, v)| n == "qos-level" && v == "1"));
        assert_eq!(user(&out), "d-2@DEFAULT_TENANT:d-2", "the rule");
        let body: serde_json::Value = serde_json::from_slice(&out.body).unwrap();
        assert_eq!((body["device_name"].as_str(), body["ts"].as_u64()), (Some("d-2"), Some(1_700_000_000_123)));

        let names = identities("name,tenant,auth_id,password\ncam-1,plant-7,sensor-1,hono-secret\n");
        assert_eq!(user(&first(ProfileName::Hono, Some(names), 0)), "sensor-1@plant-7:hono-secret");
    }

    #[test]
    fn serve_takes_the_documented_request_and_refuses_other_credentials() {
        // Hono's HTTP adapter user guide:
        //   curl -i -u sensor1@DEFAULT_TENANT:hono-secret -H 'Content-Type: application/json' \
        //     --data-binary '{"temp": 5}' http://127.0.0.1:8080/telemetry
        let request = |user: &str, content_type: &str| {
            let mut h = HeaderMap::new();
            let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(user));
            h.insert(AUTHORIZATION, HeaderValue::try_from(basic).unwrap());
            h.insert(CONTENT_TYPE, HeaderValue::try_from(content_type).unwrap());
            h
        };
        let mut known = ServeProfiles::new(vec![ProfileName::Hono]);
        let ids = identities("name,tenant,auth_id,password\nsensor-1,DEFAULT_TENANT,sensor1,hono-secret\n");
        known.add_identities(ProfileName::Hono, ids.identities().unwrap().clone()).unwrap();
        let json = "application/json";
        let ok = check(
            known.known(),
            &Method::POST,
            &request("sensor1@DEFAULT_TENANT:hono-secret", json),
            br#"{"temp": 5}"#,
        )
        .unwrap();
        assert_eq!((ok.status, ok.device.as_str()), (StatusCode::ACCEPTED, "sensor-1"));
        for wrong in ["sensor1@DEFAULT_TENANT:other", "sensor1@OTHER:hono-secret", "nobody@DEFAULT_TENANT:x", "x"] {
            let e = check(known.known(), &Method::POST, &request(wrong, json), b"{}").unwrap_err();
            assert!(e.unauthorized(), "{wrong}: {e:?}");
        }
        assert!(check(known.known(), &Method::POST, &HeaderMap::new(), b"{}").unwrap_err().unauthorized());
        let good = request("sensor1@DEFAULT_TENANT:hono-secret", json);
        assert_eq!(check(known.known(), &Method::POST, &good, b"[1]").unwrap_err().status, StatusCode::BAD_REQUEST);
        let text = request("sensor1@DEFAULT_TENANT:hono-secret", "text/plain");
        assert_eq!(check(known.known(), &Method::POST, &text, b"{}").unwrap_err().status, StatusCode::BAD_REQUEST);
        assert_eq!(
            check(known.known(), &Method::PUT, &good, b"{}").unwrap_err().status,
            StatusCode::METHOD_NOT_ALLOWED
        );
        // Without identities, the rule.
        let open = ServeProfiles::new(vec![ProfileName::Hono]);
        assert!(check(open.known(), &Method::POST, &request("d-1@DEFAULT_TENANT:d-1", json), b"{}").is_ok());
        assert!(check(open.known(), &Method::POST, &request("d-1@DEFAULT_TENANT:d-2", json), b"{}").is_err());
    }
}
