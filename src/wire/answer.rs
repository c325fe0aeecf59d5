//! The shapes of `serve`'s answers to device profiles' requests: what it
//! took (the device, and the status to answer with), what it refused
//! (the status and error body the real service gives), and the request as
//! it got it. Each profile's module makes these; `serve` sends them.

use http::{HeaderValue, Method, StatusCode};
use serde_json::{Map, Value, json};

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
