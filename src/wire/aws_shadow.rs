//! The `aws-iot-shadow` profile: AWS IoT Device Shadow's REST API
//! (`UpdateThingShadow` of the `iot-data` service,
//! `../shared/spec/device-profiles.md`). A device reports its state to its
//! thing's shadow:
//!
//! ```text
//! POST /things/{thing name}/shadow
//! Authorization: AWS4-HMAC-SHA256 Credential=.../{region}/iotdata/aws4_request, ...
//! {"state":{"reported":{"agent_version":"1.0","fleet_name":"f","device_name":"pump-1",...,"ts":1700000000123}}}
//! ```
//!
//! Requests are signed with SigV4 under the signing name `iotdata` (the
//! target's `sigv4 = { region = "...", service = "iotdata" }`), or sent
//! over mutual TLS (the target's client certificate): the credential is
//! the target's, not the device's. The service answers 200 with the
//! accepted document; 400 to a document without a `state` object (or with
//! a `reported` or `desired` that is not one, or nested deeper than 6), 403
//! to a missing or wrong signature, 404 to a thing it does not know, 405
//! to another method, 409 to a version conflict, 413 above 8 KB.

use http::{HeaderMap, Method, StatusCode};
use serde_json::{Value, json};

use super::answer::{Accepted, Refused, json_object};
use super::known::Known;
use super::parts::{Envelope, device_name, http_route};
use super::profile::ProfileName;
use crate::device::{Device, FleetGenerator};
use crate::transport::HttpRoute;

/// The signing name of the `iot-data` service's REST API.
pub const SIGNING_NAME: &str = "iotdata";
/// The largest shadow document the service takes.
pub const MAX_DOCUMENT: usize = 8 * 1024;
/// How deep a shadow document may nest.
const MAX_DEPTH: usize = 6;

/// The request of `device`'s next heartbeat, its body written to `body`.
pub(crate) fn request(generator: &FleetGenerator, device: &mut Device, now_ms: u64, body: &mut Vec<u8>) -> HttpRoute {
    const REPORTED: Envelope = Envelope { open: b"{\"state\":{\"reported\":{", ts: b",\"ts\":", close: b"}}}" };
    REPORTED.write(generator, device, now_ms, body);
    http_route(format!("/things/{}/shadow", device_name(generator, device.index())), Vec::new())
}

/// The service's rule for thing names: 1 to 128 of `a-z A-Z 0-9 : _ -`.
pub(crate) fn check_thing_name(name: &str) -> Result<(), String> {
    super::profile::check_name(name, 128, "a thing name", |b| b.is_ascii_alphanumeric() || b":_-".contains(&b))
}

/// Shadow names: 1 to 64 of `$ a-z A-Z 0-9 : _ -`.
fn check_shadow_name(name: &str) -> Result<(), String> {
    super::profile::check_name(name, 64, "a shadow name", |b| b.is_ascii_alphanumeric() || b"$:_-".contains(&b))
}

/// The thing in a path of this profile's, if it is one:
/// `/things/{thing}/shadow`.
pub(crate) fn route(path: &str) -> Option<String> {
    let thing = path.strip_prefix("/things/")?.strip_suffix("/shadow")?;
    (!thing.is_empty() && !thing.contains('/')).then(|| thing.to_string())
}

/// An error as the `iot-data` REST API answers it (rest-json: the type in
/// `x-amzn-ErrorType`, which `serve` sends for every JSON error it gives
/// this profile, and the message in the body).
fn error(status: StatusCode, kind: &'static str, message: &str) -> Refused {
    Refused { error_type: Some(kind), ..Refused::json(status, json!({ "message": message })) }
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// `serve`'s answer to an `UpdateThingShadow` of `thing`. `uri` is the
/// request's absolute URI, for its signature.
pub(crate) fn check(
    profiles: &Known,
    method: &Method,
    thing: &str,
    uri: &http::Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Accepted, Refused> {
    if method != Method::POST {
        return Err(Refused {
            allow: Some("POST"),
            ..error(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowedException",
                "The specified combination of HTTP verb and URI is not supported.",
            )
        });
    }
    let invalid = |m: &str| error(StatusCode::BAD_REQUEST, "InvalidRequestException", m);
    check_thing_name(thing).map_err(|e| invalid(&format!("thingName: {e}")))?;
    if let Some(name) = uri.query().unwrap_or_default().split('&').find_map(|p| p.strip_prefix("name=")) {
        check_shadow_name(name).map_err(|e| invalid(&format!("shadowName: {e}")))?;
    }
    // The signature: verified with serve's credentials when it has them,
    // else at least a SigV4 header for this service.
    let forbidden = |m: &str| error(StatusCode::FORBIDDEN, "ForbiddenException", m);
    match profiles.sigv4() {
        Some(signer) => {
            signer.verify(SIGNING_NAME, method, uri, headers, body).map_err(|e| forbidden(&e.to_string()))?
        }
        None => {
            let auth = headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
            match auth.and_then(crate::transport::http::sigv4::Authorization::parse) {
                Some(a) if a.service == SIGNING_NAME => {}
                Some(a) => return Err(forbidden(&format!("the credential scope is for service {:?}", a.service))),
                None => return Err(forbidden("Missing Authentication Token")),
            }
        }
    }
    let device = match profiles.find(ProfileName::AwsIotShadow, thing) {
        Some(found) => found.name().to_string(),
        None if !profiles.has_identities(ProfileName::AwsIotShadow) => thing.to_string(),
        None => return Err(error(StatusCode::NOT_FOUND, "ResourceNotFoundException", "Thing not found")),
    };
    if body.len() > MAX_DOCUMENT {
        return Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLargeException",
            "The payload exceeds the maximum size allowed",
        ));
    }
    let document = json_object(body).map_err(|_| invalid("Invalid JSON"))?;
    let Some(state) = document.get("state") else { return Err(invalid("Missing required node: state")) };
    let Value::Object(state) = state else { return Err(invalid("State node must be an object")) };
    for (node, message) in
        [("reported", "Reported node must be an object"), ("desired", "Desired node must be an object")]
    {
        if state.get(node).is_some_and(|v| !v.is_object() && !v.is_null()) {
            return Err(invalid(message));
        }
    }
    if state.keys().any(|k| k != "reported" && k != "desired") {
        return Err(invalid("State contains an invalid node"));
    }
    if depth(&Value::Object(document.clone())) > MAX_DEPTH {
        return Err(invalid("JSON contains too many levels of nesting; maximum is 6"));
    }
    let reported = state.get("reported").and_then(Value::as_object).cloned().unwrap_or_default();
    let mut accepted = Accepted::from_state(device, &reported, StatusCode::OK);
    accepted.document = Some(Value::Object(state.clone()));
    Ok(accepted)
}

#[cfg(test)]
mod tests {
    use super::super::tests::first;
    use super::*;
    use crate::transport::http::sigv4::Signer;
    use crate::wire::serve::ServeProfiles;

    #[test]
    fn a_device_reports_its_state_to_its_thing_s_shadow() {
        let out = first(ProfileName::AwsIotShadow, None, 7);
        let a = out.route.http().unwrap();
        assert_eq!(a.target.as_str(), "/things/d-7/shadow");
        assert!(a.headers.is_empty(), "the target signs it");
        let body: Value = serde_json::from_slice(&out.body).unwrap();
        let reported = &body["state"]["reported"];
        assert_eq!((reported["device_name"].as_str(), reported["ts"].as_u64()), (Some("d-7"), Some(1_700_000_000_123)));
        assert!(out.body.len() < MAX_DOCUMENT);
    }

    #[test]
    fn serve_verifies_the_signature_and_the_document_as_the_service_does() {
        // The developer guide's example: {"state": {"reported": {"color": "red"}}}
        let signer = Signer::with_keys("AKIDSHADOW", "shadow/secret", "us-east-1", SIGNING_NAME);
        let mut profiles = ServeProfiles::new(vec![ProfileName::AwsIotShadow]);
        profiles.set_sigv4(signer.clone());
        let uri: http::Uri = "http://127.0.0.1:9000/things/pump-7/shadow".parse().unwrap();
        let signed = |signer: &Signer, body: &[u8]| {
            let mut req = http::Request::builder()
                .method("POST")
                .uri(uri.clone())
                .header("host", "127.0.0.1:9000")
                .body(())
                .unwrap();
            signer.sign(&mut req, body, std::time::SystemTime::now()).unwrap();
            req.headers().clone()
        };
        let post =
            |headers: &HeaderMap, body: &[u8]| check(profiles.known(), &Method::POST, "pump-7", &uri, headers, body);
        let example = br#"{"state": {"reported": {"color": "red"}}}"#;
        let ok = post(&signed(&signer, example), example).unwrap();
        assert_eq!((ok.status, ok.device.as_str()), (StatusCode::OK, "pump-7"));
        assert_eq!(ok.document.unwrap()["reported"]["color"], "red");
        let other = Signer::with_keys("AKIDSHADOW", "not the secret", "us-east-1", SIGNING_NAME);
        assert_eq!(post(&signed(&other, example), example).unwrap_err().status, StatusCode::FORBIDDEN);
        assert_eq!(post(&HeaderMap::new(), example).unwrap_err().status, StatusCode::FORBIDDEN);
        let sagemaker = Signer::with_keys("AKIDSHADOW", "shadow/secret", "us-east-1", "sagemaker");
        assert_eq!(post(&signed(&sagemaker, example), example).unwrap_err().status, StatusCode::FORBIDDEN);
        for (bad, message) in [
            (&b"{}"[..], "Missing required node: state"),
            (br#"{"state": 1}"#, "State node must be an object"),
            (br#"{"state": {"reported": [1]}}"#, "Reported node must be an object"),
            (br#"{"state": {"other": {}}}"#, "State contains an invalid node"),
            (br#"{"state": {"reported": {"a": {"b": {"c": {"d": {"e": 1}}}}}}}"#, "too many levels of nesting"),
            (b"{", "Invalid JSON"),
        ] {
            let e = post(&signed(&signer, bad), bad).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{message}");
            assert!(e.body.contains(message) && e.error_type == Some("InvalidRequestException"), "{e:?}");
        }
        let big = format!(r#"{{"state": {{"reported": {{"a": "{}"}}}}}}"#, "x".repeat(MAX_DOCUMENT));
        assert_eq!(
            post(&signed(&signer, big.as_bytes()), big.as_bytes()).unwrap_err().status,
            StatusCode::PAYLOAD_TOO_LARGE
        );
        let e = check(profiles.known(), &Method::GET, "pump-7", &uri, &HeaderMap::new(), b"").unwrap_err();
        assert_eq!((e.status, e.allow), (StatusCode::METHOD_NOT_ALLOWED, Some("POST")));
        // Without credentials, serve asks for a SigV4 header of the service.
        let open = ServeProfiles::new(vec![ProfileName::AwsIotShadow]);
        assert!(check(open.known(), &Method::POST, "pump-7", &uri, &signed(&other, example), example).is_ok());
        assert!(check(open.known(), &Method::POST, "pump-7", &uri, &HeaderMap::new(), example).is_err());
        assert_eq!(route("/things/pump-7/shadow").as_deref(), Some("pump-7"));
        assert_eq!(route("/things//shadow"), None);
        assert!(check_thing_name("pump:7_a-b").is_ok() && check_thing_name("pump 7").is_err());
    }
}
