//! The `thingsboard` profile: ThingsBoard's device HTTP API
//! (`../shared/spec/device-profiles.md`). A device posts its telemetry
//! under its access token, which is its credential:
//!
//! ```text
//! POST /api/v1/{access token}/telemetry
//! {"values":{"agent_version":"1.0","fleet_name":"f","device_name":"d-1","cpu-utilization":12.5,...},"ts":1700000000123}
//! ```
//!
//! ThingsBoard takes a flat object of keys and values, or `{"ts": ms,
//! "values": {...}}` with the device's own timestamp (what fleetstorm
//! sends), or an array of either. It answers 200 with an empty body; 400 to
//! a body that is none of those; 401 to a token it does not know.

use http::{HeaderMap, Method, StatusCode};
use percent_encoding::utf8_percent_encode;
use serde_json::Value;

use super::answer::{Accepted, Refused};
use super::known::Known;
use super::parts::Credentials;
use super::parts::{Envelope, SEGMENT, device_name, http_route};
use super::profile::ProfileName;
use crate::device::{Device, FleetGenerator};
use crate::transport::HttpRoute;

/// The identities column of a device's access token.
pub const TOKEN: &str = "token";

/// The request of `device`'s next heartbeat, its body written to `body`.
pub(crate) fn request(
    credentials: &Credentials,
    generator: &FleetGenerator,
    device: &mut Device,
    now_ms: u64,
    body: &mut Vec<u8>,
) -> HttpRoute {
    const TELEMETRY: Envelope = Envelope { open: b"{\"values\":{", ts: b"},\"ts\":", close: b"}" };
    TELEMETRY.write(generator, device, now_ms, body);
    let token = match credentials.listed(device.index(), 0) {
        Some(token) => utf8_percent_encode(token, SEGMENT).to_string(),
        None => utf8_percent_encode(&device_name(generator, device.index()), SEGMENT).to_string(),
    };
    http_route(format!("/api/v1/{token}/telemetry"), Vec::new())
}

/// The access token in a path of this profile's, if it is one:
/// `/api/v1/{token}/telemetry` (or `/attributes`).
pub(crate) fn route(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/api/v1/")?;
    let (token, kind) = rest.split_once('/')?;
    if token.is_empty() || !matches!(kind, "telemetry" | "attributes") {
        return None;
    }
    Some(percent_encoding::percent_decode_str(token).decode_utf8_lossy().into_owned())
}

/// `serve`'s answer to a request on a token's path.
pub(crate) fn check(
    profiles: &Known,
    method: &Method,
    token: &str,
    _headers: &HeaderMap,
    body: &[u8],
) -> Result<Accepted, Refused> {
    if method != Method::POST {
        return Err(Refused::not_allowed("POST"));
    }
    // The token names the device: its row, or by the rule the token is
    // the device's name.
    let device = match profiles.find(ProfileName::Thingsboard, token) {
        Some(found) => found.name().to_string(),
        None if !profiles.has_identities(ProfileName::Thingsboard)
            && ProfileName::Thingsboard.check_device_name(token).is_ok() =>
        {
            token.to_string()
        }
        None => return Err(Refused::text(StatusCode::UNAUTHORIZED, "Invalid device access token")),
    };
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| Refused::text(StatusCode::BAD_REQUEST, &format!("Invalid JSON: {e}")))?;
    let entries = match &value {
        Value::Array(items) if !items.is_empty() => items.iter().collect(),
        Value::Array(_) => return Err(Refused::text(StatusCode::BAD_REQUEST, "empty telemetry array")),
        one => vec![one],
    };
    let mut values = None;
    for entry in entries {
        let Value::Object(object) = entry else {
            return Err(Refused::text(StatusCode::BAD_REQUEST, "telemetry must be a JSON object or an array of them"));
        };
        values = Some(if object.contains_key("ts") {
            match (object.get("ts"), object.get("values")) {
                (Some(ts), Some(Value::Object(v))) if ts.is_u64() && object.len() == 2 => v,
                _ => {
                    return Err(Refused::text(
                        StatusCode::BAD_REQUEST,
                        "a telemetry object with \"ts\" must be {\"ts\": epoch ms, \"values\": {...}}",
                    ));
                }
            }
        } else {
            object
        });
    }
    let Some(values) = values else {
        return Err(Refused::text(StatusCode::BAD_REQUEST, "no telemetry"));
    };
    Ok(Accepted::from_state(device, values, StatusCode::OK))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{first, identities};
    use super::*;
    use crate::wire::serve::ServeProfiles;

    #[test]
    fn a_device_posts_its_state_under_its_token() {
        let out = first(ProfileName::Thingsboard, None, 4);
        let addressed = out.route.http().unwrap();
        assert_eq!(addressed.target.as_str(), "/api/v1/d-4/telemetry", "the rule: the token is the name");
        assert!(addressed.headers.is_empty());
        let body: Value = serde_json::from_slice(&out.body).unwrap();
        assert_eq!(body["ts"], 1_700_000_000_123u64);
        assert_eq!(body["values"]["device_name"], "d-4");
        assert_eq!(body["values"]["fleet_name"], "f");
        assert!(body["values"]["cpu-utilization"].is_f64());

        let names = identities("name,token\ncam-1,A1_b2\ncam-2,x/y#z%\n");
        let out = first(ProfileName::Thingsboard, Some(names.clone()), 0);
        assert_eq!(out.route.http().unwrap().target.as_str(), "/api/v1/A1_b2/telemetry");
        let out = first(ProfileName::Thingsboard, Some(names), 1);
        assert_eq!(out.route.http().unwrap().target.as_str(), "/api/v1/x%2Fy%23z%25/telemetry", "escaped");
        assert_eq!(route("/api/v1/x%2Fy%23z%25/telemetry").as_deref(), Some("x/y#z%"));
    }

    #[test]
    fn serve_takes_the_documented_request_and_refuses_a_bad_token_or_body() {
        // ThingsBoard's own example (its HTTP device API page):
        //   curl -v -X POST --data "{"temperature":42,"humidity":73}" \
        //     http://localhost:8080/api/v1/$ACCESS_TOKEN/telemetry --header "Content-Type:application/json"
        // and the same with the device's timestamp:
        //   {"ts":1451649600512, "values":{"key1":"value1", "key2":"value2"}}
        let open = ServeProfiles::new(vec![ProfileName::Thingsboard]);
        let headers = HeaderMap::new();
        let post = |p: &ServeProfiles, token: &str, body: &str| {
            let token = route(&format!("/api/v1/{token}/telemetry")).unwrap();
            check(p.known(), &Method::POST, &token, &headers, body.as_bytes())
        };
        let ok = post(&open, "ACCESS_TOKEN", r#"{"temperature":42,"humidity":73}"#).unwrap();
        assert_eq!((ok.status, ok.device.as_str()), (StatusCode::OK, "ACCESS_TOKEN"));
        let ok = post(&open, "A1", r#"{"ts":1451649600512, "values":{"key1":"value1", "key2":"value2"}}"#).unwrap();
        assert_eq!(ok.device, "A1");
        assert!(post(&open, "A1", r#"[{"ts":1,"values":{"a":1}},{"ts":2,"values":{"a":2}}]"#).is_ok());
        for bad in ["{", "42", "[]", r#"{"ts":1}"#, r#"{"ts":"x","values":{}}"#] {
            assert_eq!(post(&open, "A1", bad).unwrap_err().status, StatusCode::BAD_REQUEST, "{bad}");
        }
        // With identities, only their tokens; the device is the row's name.
        let mut known = ServeProfiles::new(vec![ProfileName::Thingsboard]);
        let ids = identities("name,token\ncam-1,A1_b2\n");
        known.add_identities(ProfileName::Thingsboard, ids.identities().unwrap().clone()).unwrap();
        assert_eq!(post(&known, "A1_b2", "{}").unwrap().device, "cam-1");
        assert_eq!(post(&known, "cam-1", "{}").unwrap_err().status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            check(known.known(), &Method::GET, "A1_b2", &headers, b"{}").unwrap_err().status,
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(route("/api/v1//telemetry"), None);
        assert_eq!(route("/api/v1/t/rpc"), None);
    }
}
